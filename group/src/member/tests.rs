//! The driver against a scripted fake coordinator: every error code of
//! the issue, handled the way Java's classic consumer does, checked on
//! what the driver *sent*.

use std::{
    future::{ready, Ready},
    sync::{Arc, Mutex},
};

use tokio::time::{timeout, Instant};

use kafka_base::security::SecurityProtocol;
use kafka_protocol::ResponseError;
use tokio::sync::mpsc;

use super::*;
use crate::{
    error::{GroupApi, KafkaCode},
    payload::TopicPartitions,
    testing::{Api, FakeCoordinator, Reply},
    wire::ConnectionConfig,
};

// Kafka error codes, named as in Java's `Errors`.
const NONE: KafkaCode = KafkaCode::NONE;
const UNKNOWN_SERVER_ERROR: KafkaCode = KafkaCode::of(ResponseError::UnknownServerError);
const COORDINATOR_LOAD_IN_PROGRESS: KafkaCode =
    KafkaCode::of(ResponseError::CoordinatorLoadInProgress);
const COORDINATOR_NOT_AVAILABLE: KafkaCode = KafkaCode::of(ResponseError::CoordinatorNotAvailable);
const NOT_COORDINATOR: KafkaCode = KafkaCode::of(ResponseError::NotCoordinator);
const ILLEGAL_GENERATION: KafkaCode = KafkaCode::of(ResponseError::IllegalGeneration);
const UNKNOWN_MEMBER_ID: KafkaCode = KafkaCode::of(ResponseError::UnknownMemberId);
const REBALANCE_IN_PROGRESS: KafkaCode = KafkaCode::of(ResponseError::RebalanceInProgress);
const FENCED_INSTANCE_ID: KafkaCode = KafkaCode::of(ResponseError::FencedInstanceId);

const GROUP: &str = "payments";
const INSTANCE: &str = "payments-0";
/// Bounds every driver call: a hang fails the test instead of CI.
const LIMIT: Duration = Duration::from_secs(10);
const SESSION: Duration = Duration::from_millis(500);
const HEARTBEAT: Duration = Duration::from_millis(50);

// ---- the member ------------------------------------------------------

fn settings(group_instance_id: Option<&str>) -> SessionSettings {
    SessionSettings {
        group_instance_id: group_instance_id.map(str::to_owned),
        assignors: vec!["range".to_owned()],
        session_timeout: SESSION,
        heartbeat_interval: HEARTBEAT,
        rebalance_timeout: Duration::from_secs(1),
        retry_backoff: Backoff::new(Duration::from_millis(2), Duration::from_millis(10)),
        ..SessionSettings::new(GROUP, vec!["t1".to_owned(), "t2".to_owned()])
    }
}

fn member(addr: &str, group_instance_id: Option<&str>) -> Member {
    let config = ConnectionConfig::new(
        "unit-test",
        SecurityProtocol::Plaintext,
        None,
        None,
        Duration::from_secs(2),
    )
    .expect("config");
    let settings = settings(group_instance_id);
    let client = CoordinatorClient::new(
        config,
        vec![addr.to_owned()],
        settings.group.clone(),
        settings.group_instance_id.clone(),
    );
    Member::new(client, settings)
}

type Counts = Ready<Result<BTreeMap<String, i32>, String>>;
/// The topic lists the leader asked partition counts for.
type Asked = Arc<Mutex<Vec<Vec<String>>>>;

/// For followers, who only check the leader's assignment against the
/// partition counts: every topic asked for has 64 partitions.
fn no_metadata(topics: Vec<String>) -> Counts {
    ready(Ok(topics.into_iter().map(|t| (t, 64)).collect()))
}

/// Partition counts for the leader; records what it was asked for.
fn metadata(counts: &[(&str, i32)]) -> (impl Fn(Vec<String>) -> Counts, Asked) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let counts: BTreeMap<String, i32> = counts.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect();
    let record = Arc::clone(&asked);
    let f = move |topics: Vec<String>| {
        record.lock().expect("lock").push(topics);
        ready(Ok(counts.clone()))
    };
    (f, asked)
}

async fn join<F>(member: &mut Member, counts: F) -> Result<Assignment, SessionError>
where
    F: Fn(Vec<String>) -> Counts,
{
    timeout(LIMIT, member.join(counts, &CancellationToken::new()))
        .await
        .expect("join finished in time")
        .map(|a| a.expect("an eager member loses nothing mid-join"))
}

fn assignment(partitions: &[(&str, &[i32])]) -> Assignment {
    Assignment::new(
        partitions
            .iter()
            .map(|(t, ps)| TopicPartitions::new(*t, ps.to_vec()))
            .collect(),
    )
}

fn held() -> Assignment {
    assignment(&[("t1", &[0, 1]), ("t2", &[0])])
}

fn joined_follower(generation_id: i32, member_id: &'static str) -> Reply {
    Reply::Joined {
        generation_id,
        member_id,
        leader: "leader-0",
        members: Vec::new(),
    }
}

/// A member that joined generation 1 as `m-1`, a follower holding [`held`].
async fn stable_member(group_instance_id: Option<&str>) -> (Member, Arc<FakeCoordinator>) {
    let fake = FakeCoordinator::start().await;
    let addr = fake.addr();
    fake.script(Api::Join, [joined_follower(1, "m-1")]);
    fake.script(Api::Sync, [Reply::Assigned(held())]);
    let mut member = member(&addr, group_instance_id);
    assert_eq!(
        join(&mut member, no_metadata).await.expect("joined"),
        held()
    );
    assert_eq!(member.generation().generation_id, 1);
    assert_eq!(member.revocation_pending(), None);
    (member, fake)
}

fn offsets(positions: &[((&str, i32), i64)]) -> Vec<OffsetToCommit> {
    offsets_to_commit(
        &positions
            .iter()
            .map(|((t, p), o)| (((*t).to_owned(), *p), *o))
            .collect(),
    )
}

fn report(member: &Member, code: KafkaCode) -> HeartbeatReport {
    HeartbeatReport::Error {
        sent: member.generation().clone(),
        code,
    }
}

// ---- joining ---------------------------------------------------------

#[tokio::test]
async fn first_join_member_id_required_then_leads_with_range() {
    let fake = FakeCoordinator::start().await;
    let addr = fake.addr();
    fake.script(
        Api::Join,
        [
            Reply::MemberIdRequired("m-1"),
            Reply::Joined {
                generation_id: 1,
                member_id: "m-1",
                leader: "m-1",
                members: vec![("m-1", vec!["t1", "t2"]), ("m-2", vec!["t1"])],
            },
        ],
    );
    let ours = assignment(&[("t1", &[0, 1]), ("t2", &[0, 1])]);
    fake.script(Api::Sync, [Reply::Assigned(ours.clone())]);
    let mut member = member(&addr, None);
    let (counts, asked) = metadata(&[("t1", 3), ("t2", 2)]);

    assert_eq!(join(&mut member, counts).await.expect("joined"), ours);

    // The first join has no id; the second carries exactly the one
    // MEMBER_ID_REQUIRED returned.
    assert_eq!(fake.join_ids(), ["", "m-1"]);
    assert_eq!(
        fake.apis(),
        [Api::Join, Api::Join, Api::Sync],
        "nothing else was sent"
    );
    // The leader asked for the subscribed topics of the whole group, then
    // for its own to check the assignment it got...
    assert_eq!(
        *asked.lock().expect("lock"),
        [vec!["t1", "t2"], vec!["t1", "t2"]]
    );
    // ...and sent the range assignment for every member.
    let sync = &fake.sent(Api::Sync)[0];
    assert_eq!((sync.member_id.as_str(), sync.generation_id), ("m-1", 1));
    assert_eq!(
        sync.assignments,
        BTreeMap::from([
            ("m-1".to_owned(), ours),
            ("m-2".to_owned(), assignment(&[("t1", &[2])])),
        ])
    );
    assert_eq!(member.generation().member_id, "m-1");
    assert_eq!(member.generation().generation_id, 1);
    assert_eq!(fake.finds(), 1);
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn join_not_coordinator_and_coordinator_not_available_rediscover() {
    let fake = FakeCoordinator::start().await;
    let addr = fake.addr();
    fake.script(
        Api::Join,
        [
            Reply::MemberIdRequired("m-1"),
            Reply::Code(NOT_COORDINATOR),
            Reply::Code(COORDINATOR_NOT_AVAILABLE),
            joined_follower(1, "m-1"),
        ],
    );
    fake.script(Api::Sync, [Reply::Assigned(held())]);
    let mut member = member(&addr, None);

    assert_eq!(
        join(&mut member, no_metadata).await.expect("joined"),
        held()
    );

    assert_eq!(fake.join_ids(), ["", "m-1", "m-1", "m-1"]);
    assert_eq!(fake.finds(), 3, "one FindCoordinator per coordinator error");
    assert_eq!(fake.connections(), 3);
    let sync = &fake.sent(Api::Sync)[0];
    assert!(sync.assignments.is_empty(), "a follower assigns nothing");
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn join_coordinator_load_in_progress_retries_on_the_same_coordinator() {
    let fake = FakeCoordinator::start().await;
    let addr = fake.addr();
    fake.script(
        Api::Join,
        [
            Reply::MemberIdRequired("m-1"),
            Reply::Code(COORDINATOR_LOAD_IN_PROGRESS),
            Reply::Code(COORDINATOR_LOAD_IN_PROGRESS),
            joined_follower(1, "m-1"),
        ],
    );
    fake.script(Api::Sync, [Reply::Assigned(held())]);
    let mut member = member(&addr, None);

    assert_eq!(
        join(&mut member, no_metadata).await.expect("joined"),
        held()
    );

    assert_eq!(fake.join_ids(), ["", "m-1", "m-1", "m-1"]);
    assert_eq!(fake.finds(), 1, "no rediscovery");
    assert_eq!(fake.connections(), 1);
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn sync_rebalance_in_progress_rejoins_with_the_same_member_id() {
    let fake = FakeCoordinator::start().await;
    let addr = fake.addr();
    let leader = |generation_id| Reply::Joined {
        generation_id,
        member_id: "m-1",
        leader: "m-1",
        members: vec![("m-1", vec!["t1", "t2"])],
    };
    fake.script(Api::Join, [leader(1), leader(2)]);
    let ours = assignment(&[("t1", &[0]), ("t2", &[0])]);
    fake.script(
        Api::Sync,
        [
            Reply::Code(REBALANCE_IN_PROGRESS),
            Reply::Assigned(ours.clone()),
        ],
    );
    let mut member = member(&addr, None);
    let (counts, asked) = metadata(&[("t1", 1), ("t2", 1)]);

    assert_eq!(join(&mut member, counts).await.expect("joined"), ours);

    assert_eq!(fake.apis(), [Api::Join, Api::Sync, Api::Join, Api::Sync]);
    assert_eq!(fake.join_ids(), ["", "m-1"]);
    let syncs: Vec<_> = fake
        .sent(Api::Sync)
        .into_iter()
        .map(|s| (s.member_id, s.generation_id, s.assignments.len()))
        .collect();
    assert_eq!(syncs, [("m-1".into(), 1, 1), ("m-1".into(), 2, 1)]);
    assert_eq!(
        asked.lock().expect("lock").len(),
        3,
        "assigned per generation, the assignment checked once"
    );
    assert_eq!(member.generation().generation_id, 2);
    assert_eq!(fake.finds(), 1);
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn join_unknown_member_id_rejoins_as_a_new_member() {
    let fake = FakeCoordinator::start().await;
    let addr = fake.addr();
    fake.script(
        Api::Join,
        [
            Reply::MemberIdRequired("m-1"),
            Reply::Code(UNKNOWN_MEMBER_ID),
            Reply::MemberIdRequired("m-2"),
            joined_follower(1, "m-2"),
        ],
    );
    fake.script(Api::Sync, [Reply::Assigned(held())]);
    let mut member = member(&addr, None);

    assert_eq!(
        join(&mut member, no_metadata).await.expect("joined"),
        held()
    );

    assert_eq!(fake.join_ids(), ["", "m-1", "", "m-2"]);
    assert_eq!(fake.sent(Api::Sync)[0].member_id, "m-2");
    assert_eq!(member.generation().member_id, "m-2");
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn join_fenced_instance_id_is_fatal() {
    let fake = FakeCoordinator::start().await;
    let addr = fake.addr();
    fake.script(Api::Join, [Reply::Code(FENCED_INSTANCE_ID)]);
    let mut member = member(&addr, Some(INSTANCE));

    let e = join(&mut member, no_metadata).await.expect_err("fenced");

    assert!(e.is_fatal(), "{e:?}");
    assert!(
        matches!(
            &e,
            SessionError::Fatal(GroupError::FencedInstanceId {
                api: GroupApi::JoinGroup,
                ..
            })
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains(&format!("'{GROUP}'")), "{text}");
    assert!(text.contains("FENCED_INSTANCE_ID (82)"), "{text}");
    let joins = fake.sent(Api::Join);
    assert_eq!(joins.len(), 1, "no retry after a fatal error");
    assert_eq!(joins[0].group_instance_id.as_deref(), Some(INSTANCE));
    // It stays fatal: a second join sends nothing.
    assert!(join(&mut member, no_metadata)
        .await
        .expect_err("fatal")
        .is_fatal());
    assert_eq!(fake.apis(), [Api::Join]);
}

#[tokio::test]
async fn connections_closed_mid_join_and_mid_sync_rediscover() {
    let fake = FakeCoordinator::start().await;
    let addr = fake.addr();
    fake.script(
        Api::Join,
        [
            Reply::Close,
            joined_follower(1, "m-1"),
            joined_follower(2, "m-1"),
        ],
    );
    fake.script(Api::Sync, [Reply::Close, Reply::Assigned(held())]);
    let mut member = member(&addr, None);

    assert_eq!(
        join(&mut member, no_metadata).await.expect("joined"),
        held()
    );

    // A SyncGroup that fails on the connection restarts from JoinGroup,
    // keeping the member id.
    assert_eq!(
        fake.apis(),
        [Api::Join, Api::Join, Api::Sync, Api::Join, Api::Sync]
    );
    assert_eq!(fake.join_ids(), ["", "", "m-1"]);
    assert_eq!(fake.finds(), 3, "rediscovered after each closed connection");
    assert_eq!(member.generation().generation_id, 2);
    fake.assert_fully_scripted();
}

// ---- a stable member's heartbeat reports -----------------------------

#[tokio::test]
async fn heartbeat_rebalance_in_progress_revokes_commits_and_rejoins() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(Api::Commit, [Reply::Code(NONE)]);
    fake.script(Api::Join, [joined_follower(2, "m-1")]);
    fake.script(Api::Sync, [Reply::Assigned(held())]);

    let action = member.on_heartbeat(report(&member, REBALANCE_IN_PROGRESS));
    assert!(matches!(action, Action::Rejoin { .. }), "{action:?}");
    assert_eq!(
        member.revocation_pending(),
        Some(false),
        "revoke, may commit"
    );

    // The revocation commit goes out with the generation being left.
    timeout(
        LIMIT,
        member.commit(&offsets(&[(("t1", 0), 10), (("t2", 0), 7)])),
    )
    .await
    .expect("in time")
    .expect("committed");
    let commit = &fake.sent(Api::Commit)[0];
    assert_eq!(
        (commit.member_id.as_str(), commit.generation_id),
        ("m-1", 1)
    );
    assert_eq!(
        commit.offsets,
        BTreeMap::from([(("t1".to_owned(), 0), 10), (("t2".to_owned(), 0), 7)])
    );

    member.revocation_done();
    assert_eq!(
        join(&mut member, no_metadata).await.expect("rejoined"),
        held()
    );
    assert_eq!(fake.join_ids(), ["", "m-1"]);
    assert_eq!(member.generation().generation_id, 2);
    assert_eq!(member.revocation_pending(), None);
    fake.assert_fully_scripted();
}

/// ILLEGAL_GENERATION keeps the member id (Java 3.2+), UNKNOWN_MEMBER_ID
/// does not; both lose the partitions.
#[tokio::test]
async fn heartbeat_illegal_generation_and_unknown_member_id_lose_partitions() {
    for (code, rejoin_id) in [(ILLEGAL_GENERATION, "m-1"), (UNKNOWN_MEMBER_ID, "")] {
        let (mut member, fake) = stable_member(None).await;
        fake.script(Api::Join, [joined_follower(2, "m-1")]);
        fake.script(Api::Sync, [Reply::Assigned(held())]);

        let action = member.on_heartbeat(report(&member, code));
        assert!(
            matches!(
                action,
                Action::Rejoin {
                    reset_generation: true,
                    ..
                }
            ),
            "{code}: {action:?}"
        );
        assert_eq!(member.revocation_pending(), Some(true), "{code}: lost");
        // Lost partitions are not committed: refused before sending.
        let e = member
            .commit(&offsets(&[(("t1", 0), 10)]))
            .await
            .expect_err("no commit generation");
        assert!(matches!(e, SessionError::Commit { .. }), "{code}: {e:?}");

        member.revocation_done();
        join(&mut member, no_metadata).await.expect("rejoined");
        assert_eq!(fake.join_ids(), ["", rejoin_id], "{code}");
        assert!(fake.sent(Api::Commit).is_empty(), "{code}");
        fake.assert_fully_scripted();
    }
}

#[tokio::test]
async fn heartbeat_fenced_instance_id_is_fatal() {
    let (mut member, fake) = stable_member(Some(INSTANCE)).await;
    let action = member.on_heartbeat(report(&member, FENCED_INSTANCE_ID));
    assert!(
        matches!(
            &action,
            Action::Fatal(GroupError::FencedInstanceId {
                api: GroupApi::Heartbeat,
                ..
            })
        ),
        "{action:?}"
    );
    assert!(join(&mut member, no_metadata)
        .await
        .expect_err("fatal")
        .is_fatal());
    assert_eq!(fake.apis(), [Api::Join, Api::Sync], "nothing sent after");
}

// ---- commits -----------------------------------------------------------

#[tokio::test]
async fn commit_rebalance_in_progress_fails_and_asks_for_revocation() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(
        Api::Commit,
        [Reply::Code(REBALANCE_IN_PROGRESS), Reply::Code(NONE)],
    );

    let e = member
        .commit(&offsets(&[(("t1", 0), 10)]))
        .await
        .expect_err("rebalancing");
    assert!(matches!(e, SessionError::Commit { .. }), "{e:?}");
    assert!(e.to_string().contains("REBALANCE_IN_PROGRESS (27)"), "{e}");
    assert_eq!(member.revocation_pending(), Some(false));
    // The revocation commit may still go out, for the same generation.
    member
        .commit(&offsets(&[(("t1", 0), 11)]))
        .await
        .expect("revocation commit");
    let generations: Vec<_> = fake
        .sent(Api::Commit)
        .into_iter()
        .map(|s| (s.member_id, s.generation_id))
        .collect();
    assert_eq!(generations, [("m-1".into(), 1), ("m-1".into(), 1)]);
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn commit_illegal_generation_and_unknown_member_id_refuse_the_next_commit() {
    for code in [ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID] {
        let (mut member, fake) = stable_member(None).await;
        fake.script(Api::Commit, [Reply::Code(code)]);

        let e = member
            .commit(&offsets(&[(("t1", 0), 10)]))
            .await
            .expect_err("stale");
        assert!(matches!(e, SessionError::Commit { .. }), "{code}: {e:?}");
        assert_eq!(member.revocation_pending(), Some(true), "{code}: lost");

        let e = member
            .commit(&offsets(&[(("t1", 0), 11)]))
            .await
            .expect_err("refused locally");
        assert!(
            e.to_string().contains("not a member of a generation"),
            "{e}"
        );
        assert_eq!(fake.sent(Api::Commit).len(), 1, "{code}: nothing sent");
        fake.assert_fully_scripted();
    }
}

#[tokio::test]
async fn commit_not_coordinator_rediscovers_on_the_next_commit() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(
        Api::Commit,
        [Reply::Code(NOT_COORDINATOR), Reply::Code(NONE)],
    );

    let e = member
        .commit(&offsets(&[(("t1", 0), 10)]))
        .await
        .expect_err("moved");
    assert!(e.to_string().contains("NOT_COORDINATOR (16)"), "{e}");
    assert_eq!(member.revocation_pending(), None, "still stable");
    assert_eq!(fake.finds(), 1);

    member
        .commit(&offsets(&[(("t1", 0), 10)]))
        .await
        .expect("committed");
    assert_eq!(fake.finds(), 2, "rediscovered");
    assert!(fake
        .sent(Api::Commit)
        .iter()
        .all(|s| s.member_id == "m-1" && s.generation_id == 1));
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn committed_retries_load_in_progress_and_reports_missing_as_minus_one() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(
        Api::Fetch,
        [
            Reply::Code(COORDINATOR_LOAD_IN_PROGRESS),
            Reply::Offsets(vec![(("t1", 0), 42)]),
        ],
    );

    let committed = timeout(LIMIT, member.committed(&held()))
        .await
        .expect("in time")
        .expect("offsets");

    assert_eq!(
        committed,
        BTreeMap::from([
            (("t1".to_owned(), 0), 42),
            (("t1".to_owned(), 1), -1),
            (("t2".to_owned(), 0), -1),
        ])
    );
    assert_eq!(fake.sent(Api::Fetch).len(), 2);
    assert_eq!(fake.finds(), 1, "retried on the same coordinator");
    fake.assert_fully_scripted();
}

// ---- leaving -----------------------------------------------------------

#[tokio::test]
async fn dynamic_member_leaves_with_its_member_id() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(Api::Leave, [Reply::Code(NONE)]);

    timeout(LIMIT, member.leave(Duration::from_secs(2)))
        .await
        .expect("in time");

    let leaves = fake.sent(Api::Leave);
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0].member_id, "m-1");
    assert_eq!(leaves[0].group_instance_id, None);
    assert_eq!(member.machine().state(), &MemberState::Left);
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn static_member_does_not_send_leave_group() {
    let (mut member, fake) = stable_member(Some(INSTANCE)).await;
    assert_eq!(
        fake.sent(Api::Join)[0].group_instance_id.as_deref(),
        Some(INSTANCE)
    );

    timeout(LIMIT, member.leave(Duration::from_secs(2)))
        .await
        .expect("in time");

    assert_eq!(fake.apis(), [Api::Join, Api::Sync], "no LeaveGroup");
    assert_eq!(member.machine().state(), &MemberState::Left);
}

#[tokio::test]
async fn leave_is_bounded_when_the_coordinator_never_answers() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(Api::Leave, [Reply::Hang]);
    let within = Duration::from_millis(200);

    let started = Instant::now();
    timeout(LIMIT, member.leave(within)).await.expect("in time");
    let took = started.elapsed();

    assert!(took >= within, "{took:?}");
    assert!(took < within + Duration::from_secs(1), "{took:?}");
    assert_eq!(fake.sent(Api::Leave).len(), 1);
    assert_eq!(member.machine().state(), &MemberState::Left);
}

// ---- the heartbeat task ----------------------------------------------

async fn next_report(rx: &mut mpsc::Receiver<HeartbeatReport>) -> HeartbeatReport {
    timeout(LIMIT, rx.recv())
        .await
        .expect("a report in time")
        .expect("the task is alive")
}

#[tokio::test]
async fn heartbeat_task_reports_errors_and_keeps_going_on_transient_ones() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(
        Api::Heartbeat,
        [
            Reply::Code(NONE),
            Reply::Code(NONE),
            Reply::Code(NOT_COORDINATOR),
            Reply::Code(NONE),
            Reply::Code(UNKNOWN_SERVER_ERROR),
            Reply::Code(NONE),
            Reply::Code(REBALANCE_IN_PROGRESS),
        ],
    );
    let (tx, mut rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let task = spawn_heartbeat(
        member.heartbeat_client(),
        member.generation().clone(),
        &member.settings,
        tx,
        stop.clone(),
    );

    // NOT_COORDINATOR: reported, then the task rediscovers and goes on.
    let first = next_report(&mut rx).await;
    assert!(
        matches!(&first, HeartbeatReport::Error { code: NOT_COORDINATOR, sent } if sent == member.generation()),
        "{first:?}"
    );
    assert!(matches!(
        member.on_heartbeat(first),
        Action::RediscoverCoordinator { .. }
    ));
    assert_eq!(member.revocation_pending(), None);

    // Any other error: Java's heartbeat thread retries; so does the task.
    let second = next_report(&mut rx).await;
    assert!(
        matches!(
            &second,
            HeartbeatReport::Error {
                code: UNKNOWN_SERVER_ERROR,
                ..
            }
        ),
        "{second:?}"
    );
    assert!(matches!(member.on_heartbeat(second), Action::Retry { .. }));
    assert_eq!(member.revocation_pending(), None);

    let third = next_report(&mut rx).await;
    assert!(
        matches!(
            &third,
            HeartbeatReport::Error {
                code: REBALANCE_IN_PROGRESS,
                ..
            }
        ),
        "{third:?}"
    );
    assert!(matches!(member.on_heartbeat(third), Action::Rejoin { .. }));
    assert_eq!(member.revocation_pending(), Some(false));

    // This generation's heartbeats are over.
    timeout(LIMIT, task.task)
        .await
        .expect("task ended")
        .expect("no panic");
    let beats = fake.sent(Api::Heartbeat);
    assert_eq!(beats.len(), 7);
    assert!(beats
        .iter()
        .all(|b| b.member_id == "m-1" && b.generation_id == 1));
    // Heartbeats are paced by the interval after a success, by the
    // retry backoff after a failure (NOT_COORDINATOR, UNKNOWN_SERVER_ERROR).
    let gaps: Vec<Duration> = beats.windows(2).map(|w| w[1].at - w[0].at).collect();
    let slack = Duration::from_millis(5);
    for (i, g) in gaps.iter().enumerate() {
        let after_failure = matches!(i, 2 | 4);
        let least = if after_failure {
            member.settings.retry_backoff.initial
        } else {
            HEARTBEAT
        };
        assert!(*g + slack >= least, "gap {i}: {gaps:?}");
        if after_failure {
            assert!(
                *g < HEARTBEAT,
                "gap {i} is a retry, not an interval: {gaps:?}"
            );
        }
    }
    assert_eq!(fake.finds(), 2, "rediscovered once, after NOT_COORDINATOR");
    fake.assert_fully_scripted();
    stop.cancel();
}

/// A coordinator that answers, but never successfully, for a whole
/// session: every code is reported, then the session expiry once; the
/// heartbeats go on with the same member id and generation, and the
/// first one that gets through is reported.
#[tokio::test]
async fn heartbeat_task_reports_session_expiry_when_only_errors_come_back() {
    let (member, fake) = stable_member(None).await;
    fake.script(Api::Heartbeat, [Reply::Code(NONE)]);
    // Failures are retried every 10 ms at most (the retry backoff):
    // a hundred errors outlast the session.
    fake.script(
        Api::Heartbeat,
        std::iter::repeat_n(Reply::Code(COORDINATOR_NOT_AVAILABLE), 100),
    );
    fake.script(Api::Heartbeat, [Reply::Code(NONE), Reply::Code(NONE)]);
    let (tx, mut rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    // The session clock starts with the task (no heartbeat got through
    // yet), a little before the fake sees the first heartbeat.
    let started = Instant::now();
    let task = spawn_heartbeat(
        member.heartbeat_client(),
        member.generation().clone(),
        &member.settings,
        tx,
        stop.clone(),
    );

    let mut errors = 0;
    let detail = loop {
        match next_report(&mut rx).await {
            HeartbeatReport::Error {
                code: COORDINATOR_NOT_AVAILABLE,
                ..
            } => errors += 1,
            HeartbeatReport::SessionExpired { detail } => break detail,
            other => panic!("unexpected {other:?}"),
        }
    };
    let reported = Instant::now();
    let beats = fake.sent(Api::Heartbeat);
    // Every error code reported, except one whose heartbeat may have
    // been on its way when the session ran out (abandoned then).
    let answered = beats.len() - 1;
    assert!(
        errors == answered || errors + 1 == answered,
        "{errors} errors reported, {answered} heartbeats failed"
    );
    assert!(
        detail.contains("COORDINATOR_NOT_AVAILABLE (15)"),
        "{detail}"
    );
    let waited = reported - started;
    assert!(waited >= SESSION, "reported after only {waited:?}");
    assert!(
        waited < SESSION + Duration::from_secs(1),
        "reported late: {waited:?}"
    );
    // The join's discovery, then one after each error but the last.
    assert!(
        fake.finds() == errors || fake.finds() == errors + 1,
        "{} discoveries for {errors} errors",
        fake.finds()
    );
    assert!(task.last_ok.elapsed() >= SESSION);

    // The membership is not given up: the heartbeats go on.
    let after = loop {
        match next_report(&mut rx).await {
            HeartbeatReport::Error {
                code: COORDINATOR_NOT_AVAILABLE,
                ..
            } => errors += 1,
            HeartbeatReport::Recovered { after } => break after,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(errors >= 99, "{errors}");
    assert!(after >= SESSION, "{after:?}");
    assert!(task.last_ok.elapsed() < SESSION);
    let beats = fake.sent(Api::Heartbeat);
    assert!(beats.len() >= 102, "{}", beats.len());
    assert!(
        beats
            .iter()
            .all(|b| b.member_id == "m-1" && b.generation_id == 1),
        "same member id and generation throughout"
    );
    assert!(!task.task.is_finished());
    stop.cancel();
    timeout(LIMIT, task.task)
        .await
        .expect("task ended")
        .expect("no panic");
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn heartbeat_task_reports_session_expiry_after_the_session_timeout() {
    let (member, fake) = stable_member(None).await;
    // Three good heartbeats, then the coordinator is gone for good:
    // listener dropped, connections closed.
    fake.script(
        Api::Heartbeat,
        [
            Reply::Code(NONE),
            Reply::Code(NONE),
            Reply::Code(NONE),
            Reply::Vanish,
        ],
    );
    let (tx, mut rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let task = spawn_heartbeat(
        member.heartbeat_client(),
        member.generation().clone(),
        &member.settings,
        tx,
        stop.clone(),
    );

    let report = next_report(&mut rx).await;
    let reported = Instant::now();
    assert!(
        matches!(report, HeartbeatReport::SessionExpired { .. }),
        "{report:?}"
    );
    let beats = fake.sent(Api::Heartbeat);
    assert_eq!(beats.len(), 4);
    // The last answered heartbeat was read at `last_ok`; the task heard
    // the answer after that, so a whole session must have passed since.
    let last_ok = beats[2].at;
    let waited = reported - last_ok;
    assert!(waited >= SESSION, "reported after only {waited:?}");
    assert!(
        waited < SESSION + Duration::from_secs(1),
        "reported late: {waited:?}"
    );
    // Still trying (to reach a coordinator that is gone), not reported twice.
    tokio::time::sleep(HEARTBEAT * 4).await;
    assert!(!task.task.is_finished());
    assert!(rx.try_recv().is_err(), "one report per expiry");
    stop.cancel();
    timeout(LIMIT, task.task)
        .await
        .expect("task ended")
        .expect("no panic");
}

/// Issue 18: a session timeout seen only by this member (no heartbeat
/// got through) keeps the member id and generation and the partitions'
/// commits; the coordinator's answer decides.
#[tokio::test]
async fn session_expiry_seen_by_the_client_keeps_the_membership() {
    let (mut member, fake) = stable_member(None).await;
    let generation = member.generation().clone();
    let action = member.on_heartbeat(HeartbeatReport::SessionExpired {
        detail: "heartbeat timed out".to_owned(),
    });
    assert!(
        matches!(action, Action::RediscoverCoordinator { .. }),
        "{action:?}"
    );
    assert_eq!(member.generation(), &generation);
    assert_eq!(member.revocation_pending(), None, "still stable");
    // Handled offsets stay committable, with the same generation, on a
    // coordinator found again.
    fake.script(Api::Commit, [Reply::Code(NONE)]);
    member
        .commit(&offsets(&[(("t1", 0), 10)]))
        .await
        .expect("committed");
    assert_eq!(fake.finds(), 2, "the coordinator was found again");
    let commits = fake.sent(Api::Commit);
    assert_eq!(
        (commits[0].member_id.as_str(), commits[0].generation_id),
        ("m-1", 1)
    );
    // Until the coordinator says the member is gone.
    let action = member.on_heartbeat(report(&member, UNKNOWN_MEMBER_ID));
    assert!(matches!(action, Action::Rejoin { .. }), "{action:?}");
    assert_eq!(member.revocation_pending(), Some(true), "lost");
    fake.assert_fully_scripted();
}

/// Java's eager `StickyAssignor` is told what a member had through its
/// userData; without it a sticky leader would move our partitions freely.
#[tokio::test]
async fn the_sticky_protocol_carries_the_previous_assignment() {
    let mut m = member("127.0.0.1:9", None);
    m.settings.assignors = vec!["sticky".to_owned(), "range".to_owned()];
    let user_data = |params: &JoinGroupParams, i: usize| {
        Subscription::decode(&params.protocols[i].metadata)
            .expect("our subscription decodes")
            .user_data
    };
    // Before the first assignment there is nothing to claim, as in Java.
    let first = m.join_params().expect("params");
    assert_eq!(user_data(&first, 0), None);

    m.previous = Some((
        Assignment::new(vec![
            TopicPartitions::new("t1", vec![0, 2]),
            TopicPartitions::new("t2", vec![1]),
        ]),
        7,
    ));
    let params = m.join_params().expect("params");
    assert_eq!(params.protocols[0].name, "sticky");
    let want = crate::assignor::sticky::sticky_user_data([("t1", 0), ("t1", 2), ("t2", 1)], 7)
        .expect("encodable");
    assert_eq!(user_data(&params, 0), Some(want));
    assert_eq!(user_data(&params, 1), None, "range sends no userData");
}
