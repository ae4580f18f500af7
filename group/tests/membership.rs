//! Rebalances seen through the session API, against the real local
//! broker: KIP-429's incremental cooperative rebalance (members with
//! `cooperative-sticky` give up only the partitions that move, the others
//! see no revocation at all) and static membership (a member restarted
//! within the session timeout causes no rebalance; a second one with the
//! same `group.instance.id` fences the first). No broker is a failure,
//! never a skip.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use kafka_base::security::SecurityProtocol;
use kafka_group::{
    session::{Session, SessionEvent, SessionSettings, TopicMetadata},
    ConnectionConfig,
};
use testkit::{
    broker::{bootstrap, create_topic, delete_topic},
    unique,
};

type Tp = (String, i32);

/// The test topic's partition count, known in advance.
#[derive(Debug)]
struct Fixed(i32);

impl TopicMetadata for Fixed {
    fn partition_counts(
        &self,
        topics: Vec<String>,
    ) -> BoxFuture<'static, Result<BTreeMap<String, i32>, String>> {
        let n = self.0;
        Box::pin(async move { Ok(topics.into_iter().map(|t| (t, n)).collect()) })
    }
}

/// What one member was told, in order, and what it holds now.
#[derive(Debug, Default)]
struct Seen {
    held: BTreeSet<Tp>,
    revoked: Vec<Vec<Tp>>,
    lost: bool,
    /// The generation of every Assigned.
    generations: Vec<i32>,
    fatal: Option<String>,
}

/// A member whose "service" starts and stops nothing: it only records the
/// events and answers revocations at once.
struct Member {
    seen: Arc<Mutex<Seen>>,
    /// Ends the event loop, which hands the session back.
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<Option<Session>>,
}

impl Member {
    /// A `cooperative-sticky` member.
    fn start(group: &str, topic: &str, partitions: i32) -> Self {
        Self::start_with(group, topic, partitions, "cooperative-sticky", None)
    }

    fn start_with(
        group: &str,
        topic: &str,
        partitions: i32,
        assignors: &str,
        instance: Option<&str>,
    ) -> Self {
        let mut settings = SessionSettings::new(group, vec![topic.to_owned()]);
        settings.assignors = vec![assignors.to_owned()];
        settings.group_instance_id = instance.map(str::to_owned);
        settings.session_timeout = Duration::from_secs(10);
        settings.heartbeat_interval = Duration::from_millis(300);
        settings.rebalance_timeout = Duration::from_secs(20);
        settings.metadata_refresh = Duration::from_secs(60);
        let connection = ConnectionConfig::new(
            "coop-test",
            SecurityProtocol::Plaintext,
            None,
            None,
            Duration::from_secs(10),
        )
        .expect("connection config");
        let mut session = Session::start(
            settings,
            connection,
            vec![bootstrap()],
            Arc::new(Fixed(partitions)),
        );
        let seen = Arc::new(Mutex::new(Seen::default()));
        let record = Arc::clone(&seen);
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = stopped.notified() => return Some(session),
                    event = session.next_event() => event?,
                };
                match event {
                    SessionEvent::Assigned(a) => {
                        let mut s = record.lock().expect("lock");
                        s.generations.push(a.generation);
                        for p in a.partitions {
                            assert!(
                                s.held.insert((p.topic, p.partition)),
                                "assigned a partition it already holds"
                            );
                        }
                    }
                    SessionEvent::Revoke(r) => {
                        {
                            let mut s = record.lock().expect("lock");
                            s.lost |= r.lost;
                            for tp in &r.partitions {
                                s.held.remove(tp);
                            }
                            s.revoked.push(r.partitions.clone());
                        }
                        session.revoked(BTreeMap::new()).await.expect("revoked");
                    }
                    SessionEvent::Retrying(e) => eprintln!("retrying: {e}"),
                    SessionEvent::Fatal(e) => {
                        record.lock().expect("lock").fatal = Some(e.to_string());
                        return None;
                    }
                    _ => {}
                }
            }
        });
        Self { seen, stop, task }
    }

    fn held(&self) -> BTreeSet<Tp> {
        self.seen.lock().expect("lock").held.clone()
    }

    fn revoked(&self) -> Vec<Vec<Tp>> {
        self.seen.lock().expect("lock").revoked.clone()
    }

    fn generations(&self) -> Vec<i32> {
        self.seen.lock().expect("lock").generations.clone()
    }

    fn fatal(&self) -> Option<String> {
        self.seen.lock().expect("lock").fatal.clone()
    }
}

/// Every partition held by exactly one member, sizes as given (any order).
fn split(members: &[&Member], partitions: usize, mut sizes: Vec<usize>) -> bool {
    let helds: Vec<BTreeSet<Tp>> = members.iter().map(|m| m.held()).collect();
    let all: BTreeSet<&Tp> = helds.iter().flatten().collect();
    let total: usize = helds.iter().map(BTreeSet::len).sum();
    let mut got: Vec<usize> = helds.iter().map(BTreeSet::len).collect();
    got.sort_unstable();
    sizes.sort_unstable();
    all.len() == partitions && total == partitions && got == sizes
}

/// Polls `f` every 100 ms for up to `within`.
async fn eventually(within: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_takes_partitions_from_their_owners_only() {
    let topic = unique("coop");
    let group = unique("g-coop");
    create_topic(&topic, 4).await;

    let a = Member::start(&group, &topic, 4);
    let b = Member::start(&group, &topic, 4);
    assert!(
        eventually(Duration::from_secs(40), || split(&[&a, &b], 4, vec![2, 2])).await,
        "two members with two partitions each: {:?} {:?}",
        a.held(),
        b.held()
    );
    let before = [a.held(), b.held()];
    let revocations_before = [a.revoked().len(), b.revoked().len()];

    let c = Member::start(&group, &topic, 4);
    let balanced = || split(&[&a, &b, &c], 4, vec![1, 1, 2]);
    assert!(
        eventually(Duration::from_secs(40), balanced).await,
        "split 2/1/1: a {:?} b {:?} c {:?}",
        a.held(),
        b.held(),
        c.held()
    );
    // Settled: nothing moves within a few more heartbeats.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(balanced());

    // Only the partition that moved was revoked, once, by its owner; the
    // member that kept both saw no Revoke at all; nothing was lost.
    let moved = c.held();
    assert_eq!(moved.len(), 1, "the newcomer got one partition: {moved:?}");
    let since = |m: &Member, i: usize| -> Vec<Vec<Tp>> {
        m.revoked()
            .into_iter()
            .skip(revocations_before[i])
            .collect()
    };
    let (from_a, from_b) = (since(&a, 0), since(&b, 1));
    let (giver, keeper) = if from_a.is_empty() { (1, 0) } else { (0, 1) };
    let revocations = [&from_a, &from_b];
    assert!(
        revocations[keeper].is_empty(),
        "the member that keeps its partitions sees no Revoke: {:?}",
        revocations[keeper]
    );
    assert_eq!(
        revocations[giver].len(),
        1,
        "one Revoke: {:?}",
        revocations[giver]
    );
    let revoked: BTreeSet<Tp> = revocations[giver][0].iter().cloned().collect();
    assert_eq!(revoked, moved, "revoked exactly what moved");
    let members = [&a, &b];
    assert_eq!(
        members[keeper].held(),
        before[keeper],
        "the keeper kept both"
    );
    assert!(
        members[giver].held().is_subset(&before[giver]),
        "the giver kept the rest"
    );
    assert!(c.revoked().is_empty(), "the newcomer revoked nothing");
    for m in [&a, &b, &c] {
        assert!(!m.seen.lock().expect("lock").lost, "nothing lost");
        m.task.abort();
    }
    delete_topic(&topic);
}

/// Static membership (`group.instance.id`, KIP-345) with the eager `range`
/// assignor, where any rebalance would revoke everything: a member that
/// closes (no LeaveGroup, as Java's static members) and comes back within
/// the session timeout gets its partitions back in the same generation,
/// and the other member sees no Revoke. A second process with the same
/// instance id then fences the first, which ends with FENCED_INSTANCE_ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarted_within_the_session_timeout_causes_no_rebalance() {
    let topic = unique("static");
    let group = unique("g-static");
    let (id_a, id_b) = (unique("pod-a"), unique("pod-b"));
    create_topic(&topic, 4).await;
    let a = Member::start_with(&group, &topic, 4, "range", Some(&id_a));
    let b = Member::start_with(&group, &topic, 4, "range", Some(&id_b));
    let stable = |a: &Member, b: &Member| {
        split(&[a, b], 4, vec![2, 2])
            && a.generations().last().is_some()
            && a.generations().last() == b.generations().last()
    };
    assert!(
        eventually(Duration::from_secs(40), || stable(&a, &b)).await,
        "two partitions each: {:?} {:?}",
        a.held(),
        b.held()
    );
    let generation = *b.generations().last().expect("assigned");
    let held_a = a.held();
    let revocations_b = b.revoked().len();

    // Close: nothing to commit here, and no LeaveGroup (a static member).
    a.stop.notify_one();
    let session = a.task.await.expect("event loop").expect("session");
    session
        .close(BTreeMap::new(), Duration::from_secs(5))
        .await
        .expect("close");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = Member::start_with(&group, &topic, 4, "range", Some(&id_a));
    assert!(
        eventually(Duration::from_secs(20), || again.held() == held_a).await,
        "the restarted member got its partitions back: {:?}, had {held_a:?}",
        again.held()
    );
    assert_eq!(
        again.generations(),
        vec![generation],
        "no new generation: the coordinator handed back the assignment"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        b.revoked().len(),
        revocations_b,
        "the other member saw no Revoke"
    );
    assert_eq!(b.generations().last(), Some(&generation));

    // The same instance id twice: the newer one replaces the older, which
    // is fenced on its next heartbeat and stops with a clear error.
    let twin = Member::start_with(&group, &topic, 4, "range", Some(&id_a));
    assert!(
        eventually(Duration::from_secs(20), || again.fatal().is_some()).await,
        "the older instance was fenced"
    );
    let fatal = again.fatal().expect("fatal");
    assert!(
        fatal.contains("FENCED_INSTANCE_ID") && fatal.contains(&group),
        "{fatal}"
    );
    assert!(twin.fatal().is_none());
    for m in [&b, &again, &twin] {
        m.task.abort();
    }
    delete_topic(&topic);
}
