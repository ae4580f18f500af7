//! The group connection and coordinator client against the real local
//! broker (`scripts/kafka-local.sh start`): PLAINTEXT, SASL_PLAINTEXT, SSL
//! and SASL_SSL listeners, as `testkit` finds them. No broker is a
//! failure, never a skip.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::kafka::KafkaSettings;
use kafka_base::security::{SaslMechanism, SaslSettings, Secret, SecurityProtocol};
use kafka_group::{
    assignor::{Assignor, MemberSubscription, RangeAssignor, RANGE},
    coordinator::{
        Coordinator, CoordinatorClient, JoinGroupParams, JoinGroupResult, JoinProtocol,
        OffsetToCommit,
    },
    error::KafkaCode,
    payload::{
        Assignment, Subscription, TopicPartitions, ASSIGNMENT_VERSION, SUBSCRIPTION_VERSION,
    },
    wire::{BrokerConnection, ConnectionConfig, ConnectionError},
};
use kafka_protocol::{
    messages::{
        ApiKey, FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest, OffsetCommitRequest,
        SyncGroupRequest,
    },
    protocol::Message,
    ResponseError,
};
use testkit::{
    broker::{bootstrap, create_topic},
    security::broker,
    unique,
};

const NONE: KafkaCode = KafkaCode::NONE;
const MEMBER_ID_REQUIRED: KafkaCode = KafkaCode::of(ResponseError::MemberIdRequired);
const REBALANCE_IN_PROGRESS: KafkaCode = KafkaCode::of(ResponseError::RebalanceInProgress);
const UNKNOWN_MEMBER_ID: KafkaCode = KafkaCode::of(ResponseError::UnknownMemberId);

fn plaintext_addr() -> String {
    bootstrap()
}

fn sasl_addr() -> String {
    broker().sasl_plaintext.clone()
}

fn ssl_addr() -> String {
    broker().ssl.clone()
}

fn sasl_ssl_addr() -> String {
    broker().sasl_ssl.clone()
}

/// Settings for one listener; `password` `None` is the right one.
fn settings(
    addr: &str,
    protocol: SecurityProtocol,
    mechanism: Option<SaslMechanism>,
    password: Option<&str>,
) -> KafkaSettings {
    let b = broker();
    let mut s = KafkaSettings::plaintext(addr, "group-coordinator-test");
    s.security_protocol = protocol;
    s.request_timeout = Duration::from_secs(10);
    if protocol.uses_tls() {
        s.tls.ca_file = Some(b.ca.clone());
    }
    s.sasl = mechanism.map(|mechanism| {
        SaslSettings::password(
            mechanism,
            b.user.clone(),
            Secret::new(password.unwrap_or(&b.password)),
        )
    });
    s
}

fn config(s: &KafkaSettings) -> ConnectionConfig {
    s.connection_config().expect("connection config")
}

/// A coordinator client for `group` on `s`'s listener.
fn client(s: &KafkaSettings, group: &str, instance: Option<String>) -> CoordinatorClient {
    CoordinatorClient::new(config(s), s.bootstrap.clone(), group, instance)
}

/// How long a freshly started broker may answer COORDINATOR_NOT_AVAILABLE
/// or COORDINATOR_LOAD_IN_PROGRESS (while it creates `__consumer_offsets`).
const WARMUP: Duration = Duration::from_secs(60);

/// FindCoordinator, retried while the error is retriable (as the state
/// machine does).
async fn find(conn: &mut BrokerConnection, group: &str, version: Option<i16>) -> Coordinator {
    let deadline = Instant::now() + WARMUP;
    loop {
        match CoordinatorClient::find_coordinator_via(conn, group, version).await {
            Ok(c) => return c,
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("FindCoordinator: {e}"),
        }
    }
}

/// JoinGroup, retried while the coordinator is loading or moving.
async fn join(client: &mut CoordinatorClient, params: &JoinGroupParams) -> JoinGroupResult {
    let deadline = Instant::now() + WARMUP;
    loop {
        let retry = match client.join_group(params).await {
            Ok(r)
                if matches!(
                    r.error.error(),
                    Some(
                        ResponseError::CoordinatorLoadInProgress
                            | ResponseError::CoordinatorNotAvailable
                            | ResponseError::NotCoordinator
                    )
                ) =>
            {
                format!("{}", r.error)
            }
            Ok(r) => return r,
            Err(e) if e.is_retriable() => e.to_string(),
            Err(e) => panic!("JoinGroup: {e}"),
        };
        assert!(Instant::now() < deadline, "JoinGroup kept failing: {retry}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Connects to `addr` and asks it for a fresh group's coordinator.
async fn connect_and_find(s: &KafkaSettings, addr: &str) -> (BrokerConnection, String) {
    let mut conn = BrokerConnection::connect(&config(s), addr)
        .await
        .expect("connect");
    let group = unique("find");
    let coordinator = find(&mut conn, &group, None).await;
    (conn, coordinator.address())
}

#[tokio::test]
async fn api_versions_negotiates_every_group_api() {
    let addr = plaintext_addr();
    let conn = BrokerConnection::connect(&config(&KafkaSettings::plaintext(&addr, "t")), &addr)
        .await
        .expect("connect");
    let join = conn.version::<JoinGroupRequest>().expect("JoinGroup");
    let theirs = conn
        .broker_versions(ApiKey::JoinGroup)
        .expect("broker offers JoinGroup");
    assert_eq!(join, theirs.max.min(JoinGroupRequest::VERSIONS.max));
    // Static membership and MEMBER_ID_REQUIRED need v5+.
    assert!(join >= 5, "JoinGroup v{join}");
    assert!(conn.version::<SyncGroupRequest>().is_ok());
    assert!(conn.version::<HeartbeatRequest>().is_ok());
    // We stop at v9 (v10 commits by topic id) even if the broker has more.
    assert_eq!(
        conn.version::<OffsetCommitRequest>().expect("OffsetCommit"),
        9
    );
    assert!(
        conn.version::<FindCoordinatorRequest>()
            .expect("FindCoordinator")
            >= 4
    );
}

#[tokio::test]
async fn find_coordinator_in_both_forms_then_connect() {
    let addr = plaintext_addr();
    let s = KafkaSettings::plaintext(&addr, "t");
    let mut conn = BrokerConnection::connect(&config(&s), &addr)
        .await
        .expect("connect");
    let group = unique("find");
    let batch = find(&mut conn, &group, None).await;
    let theirs = conn
        .broker_versions(ApiKey::FindCoordinator)
        .expect("offered");
    if theirs.min <= 3 {
        let single = find(&mut conn, &group, Some(3)).await;
        assert_eq!(single, batch);
    }
    // The answer is for the listener we asked on.
    assert_eq!(batch.address(), addr);
    let coordinator = BrokerConnection::connect(&config(&s), &batch.address())
        .await
        .expect("connect to coordinator");
    assert!(coordinator.is_usable());
}

#[tokio::test]
async fn single_member_round_trip() {
    let addr = plaintext_addr();
    let topic = unique("grp-topic");
    create_topic(&topic, 3).await;
    let group = unique("grp");
    let mut client = client(&KafkaSettings::plaintext(&addr, "t"), &group, None);

    let subscription = Subscription::new([topic.clone()])
        .encode(SUBSCRIPTION_VERSION)
        .expect("subscription");
    let mut params = JoinGroupParams {
        member_id: String::new(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
        protocols: vec![JoinProtocol {
            name: RANGE.to_owned(),
            metadata: subscription,
        }],
        reason: Some("test join".to_owned()),
    };

    // A dynamic member's first join gets an id to rejoin with.
    let first = join(&mut client, &params).await;
    assert_eq!(first.error, MEMBER_ID_REQUIRED);
    assert!(!first.member_id.is_empty());
    params.member_id = first.member_id.clone();
    let joined = join(&mut client, &params).await;
    assert_eq!(joined.error, NONE, "{joined:?}");
    assert!(joined.is_leader());
    assert_eq!(joined.member_id, first.member_id);
    assert_eq!(joined.protocol_name.as_deref(), Some(RANGE));
    assert_eq!(joined.members.len(), 1);
    let theirs = Subscription::decode(&joined.members[0].metadata).expect("member subscription");
    assert_eq!(theirs.topics, vec![topic.clone()]);

    // As leader: assign with the range assignor and encode the shares.
    let members = [MemberSubscription::new(
        &joined.member_id,
        None,
        [topic.clone()],
    )];
    let counts = BTreeMap::from([(topic.clone(), 3)]);
    let plan = RangeAssignor.assign(&members, &counts);
    let ours = plan.get(&joined.member_id).cloned().expect("our share");
    let assignments: Vec<(String, Bytes)> = plan
        .iter()
        .map(|(m, tps)| {
            (
                m.clone(),
                Assignment::new(tps.clone())
                    .encode(ASSIGNMENT_VERSION)
                    .expect("encode"),
            )
        })
        .collect();
    let synced = client
        .sync_group(joined.generation_id, &joined.member_id, RANGE, &assignments)
        .await
        .expect("sync");
    assert_eq!(synced.error, NONE);
    let assignment = Assignment::decode(&synced.assignment).expect("assignment");
    assert_eq!(assignment.partitions, ours);
    assert_eq!(assignment.topic_partitions().count(), 3);

    // The heartbeat runs on its own connection (a clone).
    let mut heartbeat = client.clone();
    assert!(!heartbeat.is_connected());
    assert_eq!(
        heartbeat
            .heartbeat(joined.generation_id, &joined.member_id)
            .await
            .expect("heartbeat"),
        NONE
    );
    assert!(heartbeat.is_connected() && client.is_connected());

    let commits = [
        OffsetToCommit {
            topic: topic.clone(),
            partition: 0,
            offset: 42,
            leader_epoch: Some(0),
            metadata: Some("m".to_owned()),
        },
        OffsetToCommit {
            topic: topic.clone(),
            partition: 2,
            offset: 7,
            leader_epoch: None,
            metadata: None,
        },
    ];
    let committed = client
        .offset_commit(joined.generation_id, &joined.member_id, &commits)
        .await
        .expect("commit");
    assert_eq!(committed.len(), 2);
    assert!(committed.values().all(|c| *c == NONE), "{committed:?}");

    let fetched = client
        .offset_fetch(&[TopicPartitions::new(topic.clone(), [0, 1, 2])])
        .await
        .expect("fetch");
    assert_eq!(fetched.error, NONE);
    let offset = |p: i32| {
        fetched
            .offsets
            .get(&(topic.clone(), p))
            .expect("partition answered")
    };
    assert_eq!(offset(0).offset, 42);
    assert_eq!(offset(0).leader_epoch, Some(0));
    assert_eq!(offset(0).metadata.as_deref(), Some("m"));
    assert_eq!(offset(1).offset, -1, "never committed");
    assert_eq!(offset(2).offset, 7);
    assert!(fetched.offsets.values().all(|o| o.error == NONE));

    assert_eq!(
        client
            .leave_group(&joined.member_id, Some("test done"))
            .await
            .expect("leave"),
        NONE
    );
    assert_eq!(
        heartbeat
            .heartbeat(joined.generation_id, &joined.member_id)
            .await
            .expect("heartbeat after leave"),
        UNKNOWN_MEMBER_ID
    );
}

#[tokio::test]
async fn heartbeat_answers_while_another_join_blocks() {
    let addr = plaintext_addr();
    let topic = unique("grp-topic");
    create_topic(&topic, 2).await;
    let group = unique("grp");
    let s = KafkaSettings::plaintext(&addr, "t");
    let protocols = vec![JoinProtocol {
        name: RANGE.to_owned(),
        metadata: Subscription::new([topic.clone()])
            .encode(SUBSCRIPTION_VERSION)
            .expect("subscription"),
    }];
    // Member A, static (no MEMBER_ID_REQUIRED round), joins and syncs alone.
    let mut a = client(&s, &group, Some("instance-a".to_owned()));
    let joined = join(&mut a, &join_params(&protocols, "")).await;
    assert_eq!(joined.error, NONE, "static members get an id at once");
    let synced = a
        .sync_group(
            joined.generation_id,
            &joined.member_id,
            RANGE,
            &[(joined.member_id.clone(), Bytes::new())],
        )
        .await
        .expect("a syncs");
    assert_eq!(synced.error, NONE);

    // Member B's JoinGroup blocks until A rejoins...
    let mut b = client(&s, &group, Some("instance-b".to_owned()));
    let b_params = join_params(&protocols, "");
    let b_join = tokio::spawn(async move { join(&mut b, &b_params).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b_join.is_finished(), "B's join should wait for A");

    // ...while A's heartbeat, on its own connection, answers at once.
    let mut heartbeat = a.clone();
    let started = Instant::now();
    let code = heartbeat
        .heartbeat(joined.generation_id, &joined.member_id)
        .await
        .expect("heartbeat");
    assert_eq!(code, REBALANCE_IN_PROGRESS);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A rejoins; both joins complete in generation 2.
    let rejoined = a
        .join_group(&join_params(&protocols, &joined.member_id))
        .await
        .expect("a rejoins");
    let b_joined = b_join.await.expect("task");
    assert_eq!(rejoined.error, NONE);
    assert_eq!(b_joined.error, NONE);
    assert_eq!(rejoined.generation_id, joined.generation_id + 1);
    assert_eq!(b_joined.generation_id, rejoined.generation_id);
    let leaders = [&rejoined, &b_joined]
        .iter()
        .filter(|r| r.is_leader())
        .count();
    assert_eq!(leaders, 1);
    let leader = if rejoined.is_leader() {
        &rejoined
    } else {
        &b_joined
    };
    let mut ids: Vec<_> = leader
        .members
        .iter()
        .map(|m| m.group_instance_id.clone())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![Some("instance-a".to_owned()), Some("instance-b".to_owned())]
    );
}

fn join_params(protocols: &[JoinProtocol], member_id: &str) -> JoinGroupParams {
    JoinGroupParams {
        member_id: member_id.to_owned(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
        protocols: protocols.to_vec(),
        reason: None,
    }
}

#[tokio::test]
async fn sasl_plain_and_scram_authenticate() {
    let addr = sasl_addr();
    for mechanism in [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ] {
        let s = settings(
            &addr,
            SecurityProtocol::SaslPlaintext,
            Some(mechanism),
            None,
        );
        let (conn, coordinator) = connect_and_find(&s, &addr).await;
        assert!(conn.version::<JoinGroupRequest>().is_ok(), "{mechanism}");
        assert_eq!(coordinator, addr, "{mechanism}");
    }
}

#[tokio::test]
async fn wrong_password_is_a_clear_error() {
    let addr = sasl_addr();
    for mechanism in [SaslMechanism::Plain, SaslMechanism::ScramSha512] {
        let s = settings(
            &addr,
            SecurityProtocol::SaslPlaintext,
            Some(mechanism),
            Some("not-the-password"),
        );
        let e = BrokerConnection::connect(&config(&s), &addr)
            .await
            .expect_err("wrong password");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "authentication failed for user demo with {mechanism} at Kafka broker {addr}"
            )),
            "{msg}"
        );
        assert!(!msg.contains("not-the-password"), "{msg}");
        assert!(!e.is_retriable());
    }
}

#[tokio::test]
async fn sasl_against_a_plaintext_listener_is_explained() {
    let addr = plaintext_addr();
    let s = settings(
        &addr,
        SecurityProtocol::SaslPlaintext,
        Some(SaslMechanism::ScramSha512),
        None,
    );
    let e = BrokerConnection::connect(&config(&s), &addr)
        .await
        .expect_err("no SASL there");
    assert!(
        matches!(e, ConnectionError::SaslNotExpected { .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn plaintext_against_a_sasl_listener_is_explained() {
    let addr = sasl_addr();
    let s = KafkaSettings::plaintext(&addr, "t");
    // ApiVersions is allowed before authentication; the next request is not.
    let mut conn = BrokerConnection::connect(&config(&s), &addr)
        .await
        .expect("ApiVersions works");
    let e = CoordinatorClient::find_coordinator_via(&mut conn, "g", None)
        .await
        .expect_err("closed");
    let msg = e.to_string();
    assert!(
        msg.contains("closed the connection") && msg.contains("SASL_PLAINTEXT or SASL_SSL"),
        "{msg}"
    );
}

#[tokio::test]
async fn tls_with_the_ca() {
    let addr = ssl_addr();
    let s = settings(&addr, SecurityProtocol::Ssl, None, None);
    let (_conn, coordinator) = connect_and_find(&s, &addr).await;
    assert_eq!(coordinator, addr);
    // The coordinator client goes through TLS as well.
    let mut client = client(&s, &unique("tls"), None);
    let deadline = Instant::now() + WARMUP;
    let found = loop {
        match client.ensure_coordinator().await {
            Ok(c) => break c,
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("coordinator over TLS: {e}"),
        }
    };
    assert_eq!(found.address(), addr);
    assert!(client.is_connected());
}

#[tokio::test]
async fn sasl_over_tls() {
    let addr = sasl_ssl_addr();
    let s = settings(
        &addr,
        SecurityProtocol::SaslSsl,
        Some(SaslMechanism::ScramSha512),
        None,
    );
    let (_conn, coordinator) = connect_and_find(&s, &addr).await;
    assert_eq!(coordinator, addr);
}

#[tokio::test]
async fn tls_to_the_plaintext_port_fails_fast_and_clearly() {
    let addr = plaintext_addr();
    let mut s = settings(&addr, SecurityProtocol::Ssl, None, None);
    s.request_timeout = Duration::from_secs(5);
    let started = Instant::now();
    let e = BrokerConnection::connect(&config(&s), &addr)
        .await
        .expect_err("not TLS");
    let took = started.elapsed();
    assert!(took <= Duration::from_secs(6), "{took:?}");
    let msg = e.to_string();
    assert!(msg.contains("TLS") && msg.contains(&addr), "{msg}");
    eprintln!("TLS to plaintext after {took:?}: {msg}");
}

#[tokio::test]
async fn plaintext_to_the_tls_port_fails_fast_and_clearly() {
    let addr = ssl_addr();
    let mut s = KafkaSettings::plaintext(&addr, "t");
    s.request_timeout = Duration::from_secs(5);
    let started = Instant::now();
    let e = BrokerConnection::connect(&config(&s), &addr)
        .await
        .expect_err("TLS port");
    let took = started.elapsed();
    assert!(took <= Duration::from_secs(6), "{took:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("SSL or SASL_SSL") && msg.contains(&addr),
        "{msg}"
    );
    eprintln!("plaintext to TLS after {took:?}: {msg}");
}
