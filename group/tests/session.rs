//! The session API against the crate's fake coordinator: the events a
//! service sees and what the session sends for it, through a whole
//! membership — assignment with committed offsets, commits, a rebalance
//! (revoked, committed, rejoined), lost partitions, close.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use kafka_base::{backoff::Backoff, security::SecurityProtocol};
use kafka_group::{
    error::{GroupError, KafkaCode},
    payload::{Assignment, TopicPartitions},
    session::{GroupProtocol, Offsets, Session, SessionEvent, SessionSettings, TopicMetadata},
    testing::{Api, FakeCoordinator, Reply},
    ConnectionConfig,
};
use kafka_protocol::ResponseError;
use tokio::time::timeout;

/// Bounds every wait: a hang fails the test instead of CI.
const LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct TwoPartitions;

impl TopicMetadata for TwoPartitions {
    fn partition_counts(
        &self,
        topics: Vec<String>,
    ) -> BoxFuture<'static, Result<BTreeMap<String, i32>, String>> {
        Box::pin(async move { Ok(topics.into_iter().map(|t| (t, 2)).collect()) })
    }
}

fn start(fake: &FakeCoordinator) -> Session {
    start_with(fake, "range")
}

fn start_with(fake: &FakeCoordinator, assignors: &str) -> Session {
    start_as(fake, assignors, GroupProtocol::Classic)
}

fn start_as(fake: &FakeCoordinator, assignors: &str, protocol: GroupProtocol) -> Session {
    let connection = ConnectionConfig::new(
        "session-test",
        SecurityProtocol::Plaintext,
        None,
        None,
        Duration::from_secs(2),
    )
    .expect("config");
    let mut settings = SessionSettings::new("orders", vec!["t".to_owned()]);
    settings.session_timeout = Duration::from_millis(500);
    settings.heartbeat_interval = Duration::from_millis(50);
    settings.rebalance_timeout = Duration::from_secs(1);
    settings.retry_backoff = Backoff::new(Duration::from_millis(2), Duration::from_millis(10));
    settings.rejoin_backoff = settings.retry_backoff;
    settings.metadata_refresh = Duration::from_secs(60);
    settings.assignors = assignors.split(',').map(str::to_owned).collect();
    settings.protocol = protocol;
    Session::start(
        settings,
        connection,
        vec![fake.addr()],
        Arc::new(TwoPartitions),
    )
}

fn joined(generation_id: i32) -> Reply {
    Reply::Joined {
        generation_id,
        member_id: "m-1",
        leader: "m-1",
        members: vec![("m-1", vec!["t"])],
    }
}

fn both() -> Assignment {
    Assignment::new(vec![TopicPartitions::new("t", vec![0, 1])])
}

fn code(e: ResponseError) -> Reply {
    Reply::Code(e.into())
}

async fn next(session: &mut Session) -> SessionEvent {
    timeout(LIMIT, session.next_event())
        .await
        .expect("an event in time")
        .expect("the session goes on")
}

/// (generation, offsets) of every OffsetCommit the fake received.
fn commits(fake: &FakeCoordinator) -> Vec<(i32, Offsets)> {
    fake.sent(Api::Commit)
        .into_iter()
        .map(|s| (s.generation_id, s.offsets))
        .collect()
}

fn offsets(pairs: &[(i32, i64)]) -> Offsets {
    pairs
        .iter()
        .map(|(p, o)| (("t".to_owned(), *p), *o))
        .collect()
}

#[tokio::test]
async fn a_rebalance_revokes_commits_what_was_handled_and_assigns_again() {
    let fake = FakeCoordinator::start().await;
    fake.script(
        Api::Join,
        [Reply::MemberIdRequired("m-1"), joined(1), joined(2)],
    );
    fake.script(
        Api::Sync,
        [Reply::Assigned(both()), Reply::Assigned(both())],
    );
    fake.script(
        Api::Fetch,
        [
            Reply::Offsets(vec![(("t", 0), 7)]),
            Reply::Offsets(vec![(("t", 0), 12), (("t", 1), 3)]),
        ],
    );
    fake.script(Api::Commit, [code_none(), code_none(), code_none()]);
    fake.script(
        Api::Heartbeat,
        [code_none(), code(ResponseError::RebalanceInProgress)],
    );
    fake.script(Api::Leave, [code_none()]);
    let mut session = start(&fake);

    let SessionEvent::Assigned(first) = next(&mut session).await else {
        panic!("assigned first");
    };
    assert_eq!(first.generation, 1);
    let starts: Vec<_> = first.partitions.iter().map(|p| p.committed).collect();
    assert_eq!(
        starts,
        [Some(7), None],
        "committed offsets, none for partition 1"
    );

    // A periodic commit, on the session's own connection.
    timeout(LIMIT, session.commit(offsets(&[(0, 10)]), LIMIT))
        .await
        .expect("in time")
        .expect("committed");

    // The coordinator starts a rebalance: revoke, not lost.
    let SessionEvent::Revoke(revocation) = next(&mut session).await else {
        panic!("revoke");
    };
    assert!(!revocation.lost);
    assert_eq!(
        revocation.partitions,
        [("t".to_owned(), 0), ("t".to_owned(), 1)]
    );
    timeout(LIMIT, session.revoked(offsets(&[(0, 12), (1, 3)])))
        .await
        .expect("in time")
        .expect("committed before giving up");

    let SessionEvent::Assigned(second) = next(&mut session).await else {
        panic!("assigned again");
    };
    assert_eq!(second.generation, 2);
    let starts: Vec<_> = second.partitions.iter().map(|p| p.committed).collect();
    assert_eq!(starts, [Some(12), Some(3)]);

    timeout(LIMIT, session.close(offsets(&[(1, 5)]), LIMIT))
        .await
        .expect("in time")
        .expect("closed");

    assert_eq!(
        commits(&fake),
        [
            (1, offsets(&[(0, 10)])),
            (1, offsets(&[(0, 12), (1, 3)])),
            (2, offsets(&[(1, 5)])),
        ]
    );
    assert_eq!(
        fake.join_ids(),
        ["", "m-1", "m-1"],
        "rejoined with its member id"
    );
    assert_eq!(fake.sent(Api::Leave).len(), 1, "a dynamic member leaves");
    fake.assert_fully_scripted();
}

/// The commit before partitions are given up survives a coordinator move:
/// NOT_COORDINATOR (then COORDINATOR_LOAD_IN_PROGRESS) is answered, the
/// member finds the coordinator again and sends the same offsets until one
/// is accepted, within the revocation's deadline; before, the partitions
/// went to the next owner uncommitted (handled twice).
#[tokio::test]
async fn the_revocation_commit_is_sent_again_when_the_coordinator_moved() {
    let fake = FakeCoordinator::start().await;
    fake.script(Api::Join, [joined(1), joined(2)]);
    fake.script(
        Api::Sync,
        [Reply::Assigned(both()), Reply::Assigned(both())],
    );
    fake.script(Api::Fetch, [Reply::Offsets(vec![]), Reply::Offsets(vec![])]);
    fake.script(
        Api::Commit,
        [
            code(ResponseError::NotCoordinator),
            code(ResponseError::CoordinatorLoadInProgress),
            code_none(),
        ],
    );
    fake.script(Api::Heartbeat, one_rebalance());
    fake.script(Api::Leave, [code_none()]);
    let mut session = start(&fake);

    assert!(matches!(
        next(&mut session).await,
        SessionEvent::Assigned(_)
    ));
    let SessionEvent::Revoke(revocation) = next(&mut session).await else {
        panic!("revoke");
    };
    assert!(!revocation.lost);
    let finds = fake.finds();
    timeout(LIMIT, session.revoked(offsets(&[(0, 8), (1, 4)])))
        .await
        .expect("in time")
        .expect("committed on the third attempt");
    assert_eq!(
        commits(&fake),
        [
            (1, offsets(&[(0, 8), (1, 4)])),
            (1, offsets(&[(0, 8), (1, 4)])),
            (1, offsets(&[(0, 8), (1, 4)])),
        ],
        "the same offsets, for the generation giving them up"
    );
    assert!(fake.finds() > finds, "the coordinator was looked up again");
    assert!(matches!(
        next(&mut session).await,
        SessionEvent::Assigned(_)
    ));
    timeout(LIMIT, session.close(Offsets::new(), LIMIT))
        .await
        .expect("in time")
        .expect("closed");
}

#[tokio::test]
async fn lost_partitions_are_not_committed() {
    let fake = FakeCoordinator::start().await;
    fake.script(Api::Join, [joined(1), joined(2)]);
    fake.script(
        Api::Sync,
        [Reply::Assigned(both()), Reply::Assigned(both())],
    );
    fake.script(Api::Fetch, [Reply::Offsets(vec![]), Reply::Offsets(vec![])]);
    fake.script(Api::Heartbeat, [code(ResponseError::UnknownMemberId)]);
    let mut session = start(&fake);

    assert!(matches!(
        next(&mut session).await,
        SessionEvent::Assigned(_)
    ));
    let SessionEvent::Revoke(revocation) = next(&mut session).await else {
        panic!("revoke");
    };
    assert!(
        revocation.lost,
        "UNKNOWN_MEMBER_ID: another member may own them"
    );
    timeout(LIMIT, session.revoked(offsets(&[(0, 99)])))
        .await
        .expect("in time")
        .expect("nothing to commit");
    assert!(matches!(
        next(&mut session).await,
        SessionEvent::Assigned(_)
    ));
    assert!(
        fake.sent(Api::Commit).is_empty(),
        "lost partitions are not committed"
    );
    assert_eq!(fake.join_ids(), ["", ""], "rejoined as a new member");
}

/// `cooperative-sticky` (KIP-429): the rebalance revokes nothing up front;
/// the new assignment leaves `t-1` out, so only `t-1` is revoked (its
/// handled offset committed in the new generation), nothing new is
/// assigned, and the member rejoins at once for the second phase.
#[tokio::test]
async fn a_cooperative_rebalance_revokes_only_what_the_assignment_leaves_out() {
    let fake = FakeCoordinator::start().await;
    let first = Assignment::new(vec![TopicPartitions::new("t", vec![0])]);
    fake.script(Api::Join, [joined(1), joined(2), joined(3)]);
    fake.script(
        Api::Sync,
        [
            Reply::Assigned(both()),
            Reply::Assigned(first.clone()),
            Reply::Assigned(first),
        ],
    );
    fake.script(Api::Fetch, [Reply::Offsets(vec![(("t", 0), 7)])]);
    fake.script(Api::Commit, [code_none(), code_none()]);
    fake.script(Api::Heartbeat, one_rebalance());
    fake.script(Api::Leave, [code_none()]);
    let mut session = start_with(&fake, "cooperative-sticky");

    let SessionEvent::Assigned(assigned) = next(&mut session).await else {
        panic!("assigned first");
    };
    assert_eq!(assigned.partitions.len(), 2);
    let SessionEvent::Revoke(revocation) = next(&mut session).await else {
        panic!("revoke what the assignment left out");
    };
    assert!(!revocation.lost);
    assert_eq!(revocation.partitions, [("t".to_owned(), 1)], "only t-1");
    timeout(LIMIT, session.revoked(offsets(&[(1, 5)])))
        .await
        .expect("in time")
        .expect("committed before giving up");
    for generation in [2, 3] {
        let SessionEvent::Assigned(assigned) = next(&mut session).await else {
            panic!("assigned in generation {generation}");
        };
        assert_eq!(assigned.generation, generation);
        assert!(assigned.partitions.is_empty(), "t-0 kept, nothing new");
    }
    timeout(LIMIT, session.close(offsets(&[(0, 9)]), LIMIT))
        .await
        .expect("in time")
        .expect("closed");

    assert_eq!(
        commits(&fake),
        [(2, offsets(&[(1, 5)])), (3, offsets(&[(0, 9)]))],
        "the revoked partition committed in the generation that took it away"
    );
    assert_eq!(
        fake.sent(Api::Fetch).len(),
        1,
        "no offsets read for kept partitions"
    );
    assert_eq!(fake.join_ids(), ["", "m-1", "m-1"]);
}

/// A cooperative member keeps its partitions into the JoinGroup; when the
/// coordinator answers that it forgot the member, those partitions are
/// lost (another member may own them): revoked as lost, nothing committed,
/// before it joins again as a new member.
#[tokio::test]
async fn a_cooperative_member_forgotten_mid_join_revokes_its_partitions_as_lost() {
    let fake = FakeCoordinator::start().await;
    fake.script(
        Api::Join,
        [joined(1), code(ResponseError::UnknownMemberId), joined(2)],
    );
    fake.script(
        Api::Sync,
        [Reply::Assigned(both()), Reply::Assigned(both())],
    );
    fake.script(Api::Fetch, [Reply::Offsets(vec![]), Reply::Offsets(vec![])]);
    fake.script(Api::Heartbeat, one_rebalance());
    let mut session = start_with(&fake, "cooperative-sticky");

    assert!(matches!(
        next(&mut session).await,
        SessionEvent::Assigned(_)
    ));
    let SessionEvent::Revoke(revocation) = next(&mut session).await else {
        panic!("revoke");
    };
    assert!(revocation.lost, "UNKNOWN_MEMBER_ID mid-join: lost");
    assert_eq!(revocation.partitions.len(), 2);
    timeout(LIMIT, session.revoked(offsets(&[(0, 99)])))
        .await
        .expect("in time")
        .expect("nothing to commit");
    let SessionEvent::Assigned(again) = next(&mut session).await else {
        panic!("assigned again");
    };
    assert_eq!(again.generation, 2);
    assert_eq!(again.partitions.len(), 2, "started afresh");
    assert!(fake.sent(Api::Commit).is_empty(), "nothing committed");
    assert_eq!(fake.join_ids(), ["", "m-1", ""], "rejoined as a new member");
}

/// A cooperative member that kept partitions and gains more reads the new
/// ones' committed offsets after SyncGroup; its service goes on consuming
/// what it kept and may ask for a commit right then: the commit waits for
/// the new generation and goes out with it (the session used to end).
#[tokio::test]
async fn a_cooperative_commit_while_the_gained_partitions_offsets_are_read_waits_for_the_generation(
) {
    let fake = FakeCoordinator::start().await;
    let first = Assignment::new(vec![TopicPartitions::new("t", vec![0])]);
    fake.script(Api::Join, [joined(1), joined(2)]);
    fake.script(Api::Sync, [Reply::Assigned(first), Reply::Assigned(both())]);
    // Generation 2's read of t-1 gets no answer: the member retries it
    // after its request timeout, the commit arrives meanwhile.
    fake.script(
        Api::Fetch,
        [
            Reply::Offsets(vec![]),
            Reply::Hang,
            Reply::Offsets(vec![(("t", 1), 3)]),
        ],
    );
    fake.script(Api::Commit, [code_none(), code_none()]);
    fake.script(Api::Heartbeat, one_rebalance());
    fake.script(Api::Leave, [code_none()]);
    let mut session = start_with(&fake, "cooperative-sticky");

    let SessionEvent::Assigned(assigned) = next(&mut session).await else {
        panic!("assigned first");
    };
    assert_eq!(assigned.partitions.len(), 1, "t-0");
    // The rebalance: generation 2's JoinGroup, SyncGroup, then the hung read.
    assert!(
        tokio::time::timeout(LIMIT, async {
            while fake.sent(Api::Fetch).len() < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .is_ok(),
        "the gained partition's offsets are read"
    );
    let commit = session.commit(offsets(&[(0, 11)]), LIMIT);
    let SessionEvent::Assigned(gained) = next(&mut session).await else {
        panic!("the gained partition is assigned, the session goes on");
    };
    assert_eq!(gained.generation, 2);
    assert_eq!(gained.partitions.len(), 1, "t-1");
    assert_eq!(gained.partitions[0].committed, Some(3));
    timeout(LIMIT, commit)
        .await
        .expect("in time")
        .expect("committed in the new generation");
    assert_eq!(
        commits(&fake),
        [(2, offsets(&[(0, 11)]))],
        "with the generation that followed"
    );
    timeout(LIMIT, session.close(Offsets::new(), LIMIT))
        .await
        .expect("in time")
        .expect("closed");
}

/// A cooperative member keeps consuming while its JoinGroup is pending: a
/// commit asked for meanwhile waits, and a close then commits it and the
/// final offsets with the generation the member still holds, and leaves.
#[tokio::test]
async fn a_cooperative_member_closed_mid_join_commits_what_it_kept() {
    let fake = FakeCoordinator::start().await;
    fake.script(Api::Join, [joined(1), Reply::Hang]);
    fake.script(Api::Sync, [Reply::Assigned(both())]);
    fake.script(Api::Fetch, [Reply::Offsets(vec![])]);
    fake.script(Api::Commit, [code_none(), code_none()]);
    fake.script(Api::Heartbeat, [code(ResponseError::RebalanceInProgress)]);
    fake.script(Api::Leave, [code_none()]);
    let mut session = start_with(&fake, "cooperative-sticky");
    assert!(matches!(
        next(&mut session).await,
        SessionEvent::Assigned(_)
    ));
    timeout(LIMIT, async {
        while fake.join_ids().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the second JoinGroup went out");
    let pending = session.commit(offsets(&[(0, 4)]), LIMIT);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        fake.sent(Api::Commit).is_empty(),
        "the commit waits for the rebalance"
    );
    timeout(LIMIT, session.close(offsets(&[(0, 5), (1, 6)]), LIMIT))
        .await
        .expect("in time")
        .expect("closed");
    timeout(LIMIT, pending)
        .await
        .expect("in time")
        .expect("the waiting commit went out");
    assert_eq!(
        commits(&fake),
        [(1, offsets(&[(0, 4)])), (1, offsets(&[(0, 5), (1, 6)]))]
    );
    assert_eq!(fake.sent(Api::Leave).len(), 1);
}

#[tokio::test]
async fn an_invalid_assignment_is_trimmed_reported_and_followed_by_a_fresh_join() {
    let fake = FakeCoordinator::start().await;
    let follower = |generation_id, member_id| Reply::Joined {
        generation_id,
        member_id,
        leader: "m-0",
        members: Vec::new(),
    };
    fake.script(Api::Join, [follower(1, "m-1"), follower(3, "m-2")]);
    let bad = Assignment::new(vec![
        TopicPartitions::new("t", vec![0, 7, -1, 0]),
        TopicPartitions::new("x", vec![0]),
        TopicPartitions::new("t", vec![1]),
    ]);
    fake.script(Api::Sync, [Reply::Assigned(bad), Reply::Assigned(both())]);
    fake.script(Api::Fetch, [Reply::Offsets(vec![]), Reply::Offsets(vec![])]);
    fake.script(Api::Heartbeat, (0..20).map(|_| code_none()));
    fake.script(Api::Commit, [code_none()]);
    fake.script(Api::Leave, [code_none(), code_none()]);
    let mut session = start(&fake);

    let SessionEvent::InvalidAssignment(invalid) = next(&mut session).await else {
        panic!("the invalid assignment reported first");
    };
    assert_eq!(
        (invalid.leader.as_str(), invalid.generation, invalid.dropped),
        ("m-0", 1, 4),
        "7, -1, the second 0 and x-0 dropped"
    );
    assert!(invalid.rejoin_in.is_some(), "a dynamic member rejoins");
    let SessionEvent::Assigned(first) = next(&mut session).await else {
        panic!("assigned");
    };
    let held: Vec<_> = first.partitions.iter().map(|p| p.partition).collect();
    assert_eq!(
        (first.generation, held),
        (1, vec![0, 1]),
        "only the valid ones"
    );

    // The member gives them up by itself and leaves, to join anew.
    let SessionEvent::Revoke(revocation) = next(&mut session).await else {
        panic!("revoke");
    };
    assert!(!revocation.lost);
    assert_eq!(
        revocation.partitions,
        [("t".to_owned(), 0), ("t".to_owned(), 1)],
        "what it held, nothing dropped"
    );
    timeout(LIMIT, session.revoked(offsets(&[(0, 4)])))
        .await
        .expect("in time")
        .expect("committed");
    let SessionEvent::Assigned(second) = next(&mut session).await else {
        panic!("assigned again");
    };
    assert_eq!(second.generation, 3);

    assert_eq!(fake.join_ids(), ["", ""], "joined again as a new member");
    let leaves: Vec<_> = fake
        .sent(Api::Leave)
        .into_iter()
        .map(|s| s.member_id)
        .collect();
    assert_eq!(leaves, ["m-1"], "after leaving with the old member id");
    assert_eq!(
        commits(&fake),
        [(1, offsets(&[(0, 4)]))],
        "handled offsets kept"
    );
    timeout(LIMIT, session.close(Offsets::new(), LIMIT))
        .await
        .expect("in time")
        .expect("closed");
}

fn code_none() -> Reply {
    Reply::Code(KafkaCode::NONE)
}

/// Heartbeat answers: a rebalance at the first, then success.
fn one_rebalance() -> impl Iterator<Item = Reply> {
    std::iter::once(code(ResponseError::RebalanceInProgress))
        .chain(std::iter::repeat_with(code_none).take(200))
}

/// The consumer protocol asked for by name from a coordinator without it
/// (this fake offers what Kafka 3.x does: no ConsumerGroupHeartbeat): one
/// fatal error naming the setting and what to do, no retries; unset, the
/// same coordinator gets the classic protocol.
#[tokio::test]
async fn the_consumer_protocol_asked_for_from_a_coordinator_without_it_is_fatal_at_once() {
    let fake = FakeCoordinator::start().await;
    let mut session = start_as(&fake, "range", GroupProtocol::Consumer);
    let SessionEvent::Fatal(e) = next(&mut session).await else {
        panic!("fatal at once");
    };
    assert!(
        matches!(
            &e,
            kafka_group::session::SessionError::Fatal(GroupError::ConsumerProtocolUnsupported { group }) if group == "orders"
        ),
        "{e:?}"
    );
    let text = e.to_string();
    for part in [
        "CONSUMER_GROUP_PROTOCOL=classic",
        "ConsumerGroupHeartbeat",
        "Kafka before 4.0",
    ] {
        assert!(text.contains(part), "{text}");
    }
    assert!(
        timeout(LIMIT, session.next_event())
            .await
            .expect("in time")
            .is_none(),
        "no event follows a fatal one"
    );
    assert!(
        fake.apis().is_empty(),
        "no group request sent: {:?}",
        fake.apis()
    );

    fake.script(Api::Join, [joined(1)]);
    fake.script(Api::Sync, [Reply::Assigned(both())]);
    fake.script(Api::Fetch, [Reply::Offsets(vec![])]);
    fake.script(Api::Heartbeat, std::iter::repeat_with(code_none).take(100));
    fake.script(Api::Leave, [code_none()]);
    let mut auto = start_as(&fake, "range", GroupProtocol::Auto);
    let SessionEvent::Assigned(assigned) = next(&mut auto).await else {
        panic!("unset: the classic protocol");
    };
    assert_eq!(assigned.partitions.len(), 2);
    timeout(LIMIT, auto.close(Offsets::new(), LIMIT))
        .await
        .expect("in time")
        .expect("closed");
}
