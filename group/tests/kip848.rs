//! The KIP-848 consumer group protocol against the real local broker
//! (Kafka 4.x, `scripts/kafka-local.sh start`): one member takes every
//! partition and commits; a second member takes only the partitions the
//! first gives up, starting at the offsets the first committed while
//! giving them up; closing a member hands its partitions over. No broker
//! is a failure, never a skip.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use kafka_base::security::SecurityProtocol;
use kafka_group::{
    committed_offsets,
    session::{
        Assigned, GroupProtocol, Offsets, Session, SessionEvent, SessionSettings, TopicMetadata,
    },
    ConnectionConfig,
};
use testkit::{
    bootstrap,
    broker::{create_topic, delete_topic, kafka_tool},
    unique,
};
use tokio::time::{timeout, Instant};

/// Bounds every wait: the coordinator hands partitions over at members'
/// heartbeats (5 s apart by the broker's default), so a few of them.
const LIMIT: Duration = Duration::from_secs(30);

const PARTITIONS: i32 = 4;

/// Unused by the consumer protocol (the coordinator assigns); the session
/// API asks for it.
#[derive(Debug)]
struct Unused;

impl TopicMetadata for Unused {
    fn partition_counts(
        &self,
        _topics: Vec<String>,
    ) -> BoxFuture<'static, Result<BTreeMap<String, i32>, String>> {
        Box::pin(async { Err("not asked by the consumer protocol".to_owned()) })
    }
}

fn connection() -> ConnectionConfig {
    ConnectionConfig::new(
        "kip848-test",
        SecurityProtocol::Plaintext,
        None,
        None,
        Duration::from_secs(10),
    )
    .expect("config")
}

fn start(group: &str, topic: &str, protocol: GroupProtocol) -> Session {
    let mut settings = SessionSettings::new(group, vec![topic.to_owned()]);
    settings.protocol = protocol;
    settings.remote_assignor = Some("uniform".to_owned());
    Session::start(settings, connection(), vec![bootstrap()], Arc::new(Unused))
}

async fn next(session: &mut Session, who: &str) -> SessionEvent {
    loop {
        match timeout(LIMIT, session.next_event()).await {
            Err(_) => panic!("{who}: no event within {LIMIT:?}"),
            Ok(None) => panic!("{who}: the session ended"),
            // Retried by the session itself; not what these tests wait for.
            Ok(Some(SessionEvent::Retrying(e))) => eprintln!("{who}: retrying: {e}"),
            Ok(Some(event)) => return event,
        }
    }
}

async fn assigned(session: &mut Session, who: &str) -> Assigned {
    match next(session, who).await {
        SessionEvent::Assigned(a) => a,
        other => panic!("{who}: expected an assignment, got {other:?}"),
    }
}

/// The next assignment with partitions: a member joining is in the group
/// with none until the coordinator's target gives it some (or another
/// member frees them), and the session says so.
async fn gains(session: &mut Session, who: &str) -> Assigned {
    loop {
        let a = assigned(session, who).await;
        if !a.partitions.is_empty() {
            return a;
        }
    }
}

fn keys(a: &Assigned) -> Vec<(String, i32)> {
    a.partitions
        .iter()
        .map(|p| (p.topic.clone(), p.partition))
        .collect()
}

#[tokio::test]
async fn one_member_takes_every_partition_commits_and_the_group_is_a_consumer_group() {
    let topic = unique("kip848-one");
    let group = unique("kip848-one-g");
    create_topic(&topic, PARTITIONS).await;
    // Auto: the shared broker is Kafka 4.x, so the consumer protocol.
    let mut member = start(&group, &topic, GroupProtocol::Auto);

    let started = Instant::now();
    let first = gains(&mut member, "member").await;
    eprintln!("first partitions after {:?}", started.elapsed());
    let all: Vec<(String, i32)> = (0..PARTITIONS).map(|p| (topic.clone(), p)).collect();
    assert_eq!(keys(&first), all, "every partition");
    assert!(first.generation > 0, "a member epoch: {}", first.generation);
    assert!(first.partitions.iter().all(|p| p.committed.is_none()));

    let handled: Offsets = all.iter().map(|k| (k.clone(), 3)).collect();
    timeout(LIMIT, member.commit(handled.clone(), LIMIT))
        .await
        .expect("in time")
        .expect("committed with the member epoch");
    let listed = kafka_tool(&[
        "consumer-groups",
        "--bootstrap-server",
        &bootstrap(),
        "--list",
        "--type",
        "consumer",
    ]);
    assert!(
        listed.lines().any(|l| {
            let mut columns = l.split_whitespace();
            columns.next() == Some(group.as_str())
                && columns
                    .next()
                    .is_some_and(|t| t.eq_ignore_ascii_case("consumer"))
        }),
        "listed as a consumer-protocol group:\n{listed}"
    );

    let last: Offsets = all.iter().map(|k| (k.clone(), 5)).collect();
    timeout(LIMIT, member.close(last, LIMIT))
        .await
        .expect("in time")
        .expect("final commit");
    let committed = committed_offsets(connection(), vec![bootstrap()], &group, &all)
        .await
        .expect("offsets");
    assert!(
        committed.values().all(|o| *o == 5),
        "the final commit: {committed:?}"
    );
    delete_topic(&topic);
}

#[tokio::test]
async fn a_second_member_takes_only_what_the_first_gives_up_and_closing_hands_the_rest_over() {
    let topic = unique("kip848-two");
    let group = unique("kip848-two-g");
    create_topic(&topic, PARTITIONS).await;
    let all: Vec<(String, i32)> = (0..PARTITIONS).map(|p| (topic.clone(), p)).collect();

    let mut a = start(&group, &topic, GroupProtocol::Consumer);
    assert_eq!(keys(&gains(&mut a, "a").await), all);

    let mut b = start(&group, &topic, GroupProtocol::Consumer);
    // A gives up some partitions, not lost, and keeps the rest.
    let SessionEvent::Revoke(revocation) = next(&mut a, "a").await else {
        panic!("a: a revocation once b joins");
    };
    assert!(!revocation.lost, "an incremental revocation");
    assert!(
        !revocation.partitions.is_empty() && revocation.partitions.len() < all.len(),
        "only some partitions move: {:?}",
        revocation.partitions
    );
    // What A handled on the moving partitions, committed before they go.
    let handed: Offsets = revocation
        .partitions
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), 10 + i as i64))
        .collect();
    timeout(LIMIT, a.revoked(handed.clone()))
        .await
        .expect("in time")
        .expect("committed before giving up");
    let after = assigned(&mut a, "a").await;
    assert!(after.partitions.is_empty(), "a gains nothing: {after:?}");

    // B gets exactly those, at the offsets A committed: nothing lost.
    let got = gains(&mut b, "b").await;
    assert_eq!(keys(&got), revocation.partitions);
    let starts: Offsets = got
        .partitions
        .iter()
        .map(|p| ((p.topic.clone(), p.partition), p.committed.unwrap_or(-1)))
        .collect();
    assert_eq!(starts, handed, "b starts where a stopped");

    // Closing A hands its partitions to B at the next heartbeat.
    let kept: Vec<(String, i32)> = all
        .iter()
        .filter(|k| !revocation.partitions.contains(k))
        .cloned()
        .collect();
    let closed = Instant::now();
    let last: Offsets = kept.iter().map(|k| (k.clone(), 7)).collect();
    timeout(LIMIT, a.close(last, LIMIT))
        .await
        .expect("in time")
        .expect("final commit");
    let rest = gains(&mut b, "b").await;
    let handover = closed.elapsed();
    assert_eq!(keys(&rest), kept, "b takes a's partitions");
    assert!(
        rest.partitions.iter().all(|p| p.committed == Some(7)),
        "at a's final commit: {rest:?}"
    );
    eprintln!("handover after close: {handover:?}");
    timeout(LIMIT, b.close(Offsets::new(), LIMIT))
        .await
        .expect("in time")
        .expect("closed");
    delete_topic(&topic);
}

fn start_static(group: &str, topic: &str, instance: &str) -> Session {
    let mut settings = SessionSettings::new(group, vec![topic.to_owned()]);
    settings.protocol = GroupProtocol::Consumer;
    settings.group_instance_id = Some(instance.to_owned());
    Session::start(settings, connection(), vec![bootstrap()], Arc::new(Unused))
}

#[tokio::test]
async fn a_static_member_leaves_with_epoch_minus_two_and_comes_back_to_its_partitions() {
    let topic = unique("kip848-static");
    let group = unique("kip848-static-g");
    create_topic(&topic, PARTITIONS).await;

    let mut a = start_static(&group, &topic, "pod-a");
    assert_eq!(
        gains(&mut a, "a").await.partitions.len(),
        PARTITIONS as usize
    );
    let mut b = start(&group, &topic, GroupProtocol::Consumer);
    let SessionEvent::Revoke(revocation) = next(&mut a, "a").await else {
        panic!("a: a revocation once b joins");
    };
    a.revoked(Offsets::new()).await.expect("revoked");
    let kept: Vec<(String, i32)> = (0..PARTITIONS)
        .map(|p| (topic.clone(), p))
        .filter(|k| !revocation.partitions.contains(k))
        .collect();
    assert_eq!(keys(&gains(&mut b, "b").await), revocation.partitions);

    // A restart (a rollout): epoch -2 keeps a's partitions for it.
    a.close(Offsets::new(), LIMIT).await.expect("closed");
    let mut a = start_static(&group, &topic, "pod-a");
    assert_eq!(
        keys(&gains(&mut a, "a again").await),
        kept,
        "the same partitions back"
    );
    assert!(
        timeout(Duration::from_secs(1), b.next_event())
            .await
            .is_err(),
        "b was not disturbed"
    );

    // A second consumer with the same instance id while the first is in
    // the group: refused for good, with a clear line.
    let mut twin = start_static(&group, &topic, "pod-a");
    match next(&mut twin, "twin").await {
        SessionEvent::Fatal(e) => {
            let line = e.to_string();
            assert!(
                line.contains("UNRELEASED_INSTANCE_ID") && line.contains(&group),
                "{line}"
            );
        }
        other => panic!("twin: expected a fatal error, got {other:?}"),
    }
    a.close(Offsets::new(), LIMIT).await.expect("closed");
    b.close(Offsets::new(), LIMIT).await.expect("closed");
    delete_topic(&topic);
}

/// The codes the member's state machine is written against, as the real
/// broker sends them: a heartbeat with an epoch the coordinator did not
/// give is `FENCED_MEMBER_EPOCH`, an unknown member id `UNKNOWN_MEMBER_ID`;
/// both mean "lost, rejoin at epoch 0" to the session. The assignment
/// names topics by the ids Metadata gives.
#[tokio::test]
async fn the_broker_fences_a_wrong_epoch_and_an_unknown_member() {
    use kafka_group::{
        coordinator::{ConsumerHeartbeat, CoordinatorClient},
        error::KafkaCode,
    };
    use kafka_protocol::ResponseError;

    let topic = unique("kip848-codes");
    let group = unique("kip848-codes-g");
    create_topic(&topic, PARTITIONS).await;
    let mut client = CoordinatorClient::new(connection(), vec![bootstrap()], group.clone(), None);
    assert!(client.supports_consumer_protocol().await.expect("asked"));
    let mut beat = ConsumerHeartbeat {
        member_id: uuid::Uuid::new_v4().to_string(),
        member_epoch: 0,
        topics: vec![topic.clone()],
        rebalance_timeout: Duration::from_secs(30),
        server_assignor: None,
        owned: BTreeMap::new(),
        instance_id: None,
    };
    let joined = client
        .consumer_group_heartbeat(&beat)
        .await
        .expect("answered");
    assert_eq!(joined.error, KafkaCode::NONE, "{joined:?}");
    assert!(joined.member_epoch > 0);
    let ids = client
        .topic_ids(std::slice::from_ref(&topic))
        .await
        .expect("metadata");
    let (id, name) = ids.iter().next().expect("the topic's id");
    assert_eq!(name, &topic);
    if let Some(assignment) = &joined.assignment {
        assert!(assignment.keys().all(|k| k == id), "{assignment:?} by {id}");
    }

    beat.member_epoch = joined.member_epoch + 5;
    let fenced = client
        .consumer_group_heartbeat(&beat)
        .await
        .expect("answered");
    assert_eq!(fenced.error, ResponseError::FencedMemberEpoch.into());
    let stranger = ConsumerHeartbeat {
        member_id: uuid::Uuid::new_v4().to_string(),
        member_epoch: 3,
        ..beat.clone()
    };
    let unknown = client
        .consumer_group_heartbeat(&stranger)
        .await
        .expect("answered");
    assert_eq!(unknown.error, ResponseError::UnknownMemberId.into());

    beat.member_epoch = -1;
    let left = client
        .consumer_group_heartbeat(&beat)
        .await
        .expect("answered");
    assert_eq!(left.error, KafkaCode::NONE, "left: {left:?}");
    assert_eq!(left.member_epoch, -1);
    delete_topic(&topic);
}
