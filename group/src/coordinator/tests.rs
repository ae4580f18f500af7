use tokio::net::TcpListener;

use kafka_base::security::SecurityProtocol;
use kafka_protocol::{
    messages::find_coordinator_response::Coordinator as WireCoordinator, protocol::StrBytes,
    ResponseError,
};

use super::*;
use crate::testing::{Api, FakeCoordinator, Reply};

const COORDINATOR_NOT_AVAILABLE: KafkaCode = KafkaCode::of(ResponseError::CoordinatorNotAvailable);
const NOT_COORDINATOR: KafkaCode = KafkaCode::of(ResponseError::NotCoordinator);

/// A one-broker cluster that is group `g`'s coordinator, answering
/// Heartbeats with `replies` in turn.
async fn fake_coordinator(replies: Vec<Reply>) -> (String, Arc<FakeCoordinator>) {
    let fake = FakeCoordinator::start().await;
    fake.script(Api::Heartbeat, replies);
    (fake.addr(), fake)
}

fn client(bootstrap: Vec<String>) -> CoordinatorClient {
    let config = ConnectionConfig::new(
        "unit-test",
        SecurityProtocol::Plaintext,
        None,
        None,
        Duration::from_millis(500),
    )
    .expect("config");
    CoordinatorClient::new(config, bootstrap, "g", None)
}

#[tokio::test]
async fn rediscovers_after_not_coordinator_and_broken_connections() {
    let (addr, fake) = fake_coordinator(vec![
        Reply::Code(NOT_COORDINATOR),
        Reply::Code(KafkaCode::NONE),
        Reply::Close,
        Reply::Code(KafkaCode::NONE),
        Reply::Code(KafkaCode::NONE),
    ])
    .await;
    // A dead bootstrap broker first: discovery moves on to the next.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string();
    let mut client = client(vec![dead, addr.clone()]);

    // NOT_COORDINATOR is returned, and the coordinator forgotten.
    assert_eq!(
        client.heartbeat(1, "m").await.expect("answer"),
        NOT_COORDINATOR
    );
    assert!(client.coordinator().is_none() && !client.is_connected());
    assert_eq!(fake.finds(), 1);

    // The next call rediscovers.
    assert_eq!(
        client.heartbeat(1, "m").await.expect("answer"),
        KafkaCode::NONE
    );
    assert_eq!(fake.finds(), 2);
    assert_eq!(
        client.coordinator().map(Coordinator::address),
        Some(addr.clone())
    );

    // A connection the coordinator drops is an error that says so...
    let e = client.heartbeat(1, "m").await.expect_err("closed");
    assert!(e.is_retriable(), "{e}");
    assert!(
        matches!(
            &e,
            CoordinatorError::Request {
                api: GroupApi::Heartbeat,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("closed the connection"), "{e}");
    assert!(client.coordinator().is_none());
    // ...and the next call rediscovers.
    assert_eq!(
        client.heartbeat(1, "m").await.expect("answer"),
        KafkaCode::NONE
    );
    assert_eq!(fake.finds(), 3);

    // A clone shares the known coordinator but opens its own connection.
    let connections = fake.connections();
    let mut heartbeat = client.clone();
    assert!(!heartbeat.is_connected());
    assert_eq!(heartbeat.coordinator(), client.coordinator());
    assert_eq!(
        heartbeat.heartbeat(1, "m").await.expect("answer"),
        KafkaCode::NONE
    );
    assert_eq!(fake.finds(), 3, "no rediscovery");
    assert_eq!(fake.connections(), connections + 1);
    assert!(client.is_connected() && heartbeat.is_connected());
}

#[tokio::test]
async fn discovery_failure_names_the_bootstrap_list() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string();
    let mut client = client(vec![dead.clone()]);
    let e = client.ensure_coordinator().await.expect_err("nobody there");
    assert!(matches!(e, CoordinatorError::Discovery { .. }), "{e:?}");
    assert!(e.is_retriable());
    assert!(e.to_string().contains(&dead), "{e}");
    let e = self::client(vec![])
        .ensure_coordinator()
        .await
        .expect_err("empty");
    assert!(matches!(e, CoordinatorError::NoBootstrap { .. }), "{e:?}");
}

#[test]
fn find_coordinator_request_forms() {
    let v3 = find_coordinator_request("g", 3);
    assert_eq!(v3.key.as_str(), "g");
    assert!(v3.coordinator_keys.is_empty());
    let v4 = find_coordinator_request("g", 4);
    assert!(v4.key.is_empty());
    assert_eq!(v4.coordinator_keys, vec![StrBytes::from_static_str("g")]);
    assert_eq!(v4.key_type, 0);
}

#[test]
fn find_coordinator_answers_in_both_forms() {
    let single = FindCoordinatorResponse::default()
        .with_node_id(3.into())
        .with_host(StrBytes::from_static_str("kafka-3"))
        .with_port(9092);
    let expected = Coordinator {
        node_id: 3,
        host: "kafka-3".to_owned(),
        port: 9092,
    };
    assert_eq!(
        parse_find_coordinator("g", "b:1", single, 3).expect("v3"),
        expected
    );

    let entry = |key: &'static str| {
        WireCoordinator::default()
            .with_key(StrBytes::from_static_str(key))
            .with_node_id(3.into())
            .with_host(StrBytes::from_static_str("kafka-3"))
            .with_port(9092)
    };
    let batch =
        FindCoordinatorResponse::default().with_coordinators(vec![entry("other"), entry("g")]);
    assert_eq!(
        parse_find_coordinator("g", "b:1", batch, 4).expect("v4"),
        expected
    );

    let missing = FindCoordinatorResponse::default().with_coordinators(vec![entry("other")]);
    let e = parse_find_coordinator("g", "b:1", missing, 4).expect_err("not our group");
    assert!(
        matches!(e, CoordinatorError::InvalidCoordinator { .. }),
        "{e:?}"
    );

    let failed = FindCoordinatorResponse::default().with_coordinators(vec![entry("g")
        .with_error_code(COORDINATOR_NOT_AVAILABLE.code())
        .with_error_message(Some(StrBytes::from_static_str(
            "The coordinator is not available.",
        )))]);
    let e = parse_find_coordinator("g", "b:1", failed, 6).expect_err("error code");
    assert_eq!(e.kafka_code(), Some(COORDINATOR_NOT_AVAILABLE));
    assert!(e.is_retriable());
    assert_eq!(
        e.to_string(),
        "consumer group 'g': FindCoordinator via b:1 failed with COORDINATOR_NOT_AVAILABLE (15): The coordinator is not available."
    );

    let denied = FindCoordinatorResponse::default().with_error_code(30);
    let e = parse_find_coordinator("g", "b:1", denied, 2).expect_err("denied");
    assert!(
        !e.is_retriable(),
        "GROUP_AUTHORIZATION_FAILED is not retriable"
    );

    let bad_port = FindCoordinatorResponse::default()
        .with_host(StrBytes::from_static_str("h"))
        .with_port(70_000);
    let e = parse_find_coordinator("g", "b:1", bad_port, 3).expect_err("bad port");
    assert!(e.to_string().contains("port 70000"), "{e}");
}

#[test]
fn coordinator_addresses() {
    let c = |host: &str| Coordinator {
        node_id: 1,
        host: host.to_owned(),
        port: 9092,
    };
    assert_eq!(c("kafka-1").address(), "kafka-1:9092");
    assert_eq!(c("::1").address(), "[::1]:9092");
    assert_eq!(c("kafka-1").to_string(), "kafka-1:9092 (node 1)");
}

#[test]
fn leader_needs_a_member_id() {
    let r = JoinGroupResult {
        error: KafkaCode::of(ResponseError::MemberIdRequired),
        generation_id: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id: String::new(),
        skip_assignment: false,
        members: vec![],
    };
    assert!(!r.is_leader());
}
