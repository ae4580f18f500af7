//! The session API against the crate's fake coordinator: the events a
//! service sees and what the session sends for it, through a whole
//! membership — assignment with committed offsets, commits, a rebalance
//! (revoked, committed, rejoined), lost partitions, close.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use kafka_base::{backoff::Backoff, security::SecurityProtocol};
use kafka_group::{
    error::KafkaCode,
    payload::{Assignment, TopicPartitions},
    session::{Offsets, Session, SessionEvent, SessionSettings, TopicMetadata},
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

    let commits: Vec<_> = fake
        .sent(Api::Commit)
        .into_iter()
        .map(|s| (s.generation_id, s.offsets))
        .collect();
    assert_eq!(
        commits,
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

fn code_none() -> Reply {
    Reply::Code(KafkaCode::NONE)
}
