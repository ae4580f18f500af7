//! `CONSUMER_ASSIGNORS=cooperative-sticky` (KIP-429's incremental
//! rebalance): the `consumer` binary as real group members against the real
//! broker, and in one group with Kafka's own Java consumer using
//! `CooperativeStickyAssignor`.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use testkit::{broker::*, process::*, services, unique};

const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");
const COOPERATIVE: (&str, &str) = ("CONSUMER_ASSIGNORS", "cooperative-sticky");

/// Every `/readyz` status of `members` sampled every 100 ms until `stop`.
fn sample_readiness(
    members: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(String, u16, String)>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            for addr in &members {
                let (status, body) =
                    testkit::scrape::http_probe_blocking(addr, "/readyz", Duration::from_secs(2));
                samples.push((addr.clone(), status, body));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        samples
    })
}

/// Two members own six partitions; a third joins while records flow. The
/// two give up only the partitions the newcomer gets (the rest keep
/// flowing), stay ready throughout, and no record is lost or handled twice
/// (each revoked partition's handled offsets are committed before it moves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_member_moves_only_its_partitions_and_the_others_stay_ready() {
    joining_member_moves_only_its_partitions(&[COOPERATIVE], true).await;
}

/// The same with KIP-848's consumer protocol: the broker takes only the
/// newcomer's partitions from their owners, whose `/readyz` stays 200 while
/// they revoke them and the rest keep flowing (issue 15: readiness reflects
/// this member's progress, not the group's state, in both protocols).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_consumer_protocol_too_the_others_stay_ready() {
    // Member epochs are per member there: no common generation to wait for.
    joining_member_moves_only_its_partitions(&[("CONSUMER_GROUP_PROTOCOL", "consumer")], false)
        .await;
}

/// `one_generation`: the classic protocol's members all end in the same
/// generation once a rebalance is over.
async fn joining_member_moves_only_its_partitions(settings: &[(&str, &str)], one_generation: bool) {
    let bootstrap = bootstrap();
    let topic = unique("coop-members");
    let group = unique("g-coop-members");
    create_topic(&topic, 6).await;

    let a = Member::start(CONSUMER, &topic, &group, &bootstrap, settings);
    let b = Member::start(CONSUMER, &topic, &group, &bootstrap, settings);
    let sizes = |ms: &[&Member], n: usize| {
        let held: Vec<_> = ms.iter().filter_map(|m| m.assignment()).collect();
        let distinct: BTreeSet<&String> = held.iter().flat_map(|(_, p)| p.iter()).collect();
        (if one_generation {
            balanced(ms, 6)
        } else {
            held.len() == ms.len() && distinct.len() == 6
        }) && ms
            .iter()
            .all(|m| m.assignment().is_some_and(|(_, p)| p.len() == n))
    };
    assert!(
        wait_until(Duration::from_secs(40), || sizes(&[&a, &b], 3)),
        "three partitions each: {:?} {:?}\n{}",
        a.assignment(),
        b.assignment(),
        a.log_tail(20)
    );
    let before = [a.assignment().expect("a").1, b.assignment().expect("b").1];
    services::produce(&topic, 300, "run-coop-1", "key-{seq}").await;
    assert!(wait_until(Duration::from_secs(30), || {
        a.records().len() + b.records().len() >= 300
    }));
    assert!(
        wait_until(Duration::from_secs(10), || a.get("/readyz").0 == 200
            && b.get("/readyz").0 == 200),
        "both ready before the rebalance"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_readiness(vec![a.http.clone(), b.http.clone()], Arc::clone(&stop));
    let c = Member::start(CONSUMER, &topic, &group, &bootstrap, settings);
    for i in 0..6 {
        services::produce(&topic, 50, &format!("run-coop-2-{i}"), "key-{seq}").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        wait_until(Duration::from_secs(40), || sizes(&[&a, &b, &c], 2)),
        "two partitions each: {:?} {:?} {:?}",
        a.assignment(),
        b.assignment(),
        c.assignment()
    );
    let all = [&a, &b, &c];
    assert!(
        wait_until(Duration::from_secs(30), || deliveries(&all).len() >= 600),
        "{} of 600 handled",
        deliveries(&all).len()
    );
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");

    // The old members kept what they did not give to the newcomer.
    let moved = c.assignment().expect("c").1;
    for (m, before) in [&a, &b].into_iter().zip(&before) {
        let after = m.assignment().expect("assigned").1;
        assert!(after.is_subset(before), "{before:?} -> {after:?}");
        assert!(
            before.difference(&after).all(|p| moved.contains(p)),
            "gave up only what the newcomer got: {before:?} -> {after:?}, newcomer {moved:?}"
        );
        assert!(!m.log_text().contains("\"lost\":true"));
    }
    // Ready on every sample: their partitions kept flowing.
    let not_ready: Vec<_> = samples.iter().filter(|(_, s, _)| *s != 200).collect();
    assert!(
        !samples.is_empty() && not_ready.is_empty(),
        "{} of {} /readyz samples not 200: {:?}",
        not_ready.len(),
        samples.len(),
        not_ready.first()
    );
    // Nothing lost, nothing twice.
    let delivered = deliveries(&all);
    let twice: BTreeMap<_, _> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(delivered.len(), 600, "every record handled");
    assert!(twice.is_empty(), "handled twice: {twice:?}");
    eprintln!(
        "{} readiness samples, all 200; moved {moved:?}",
        samples.len()
    );
    drop((a, b, c));
    delete_topic(&topic);
}

/// Kafka's Java consumer with `CooperativeStickyAssignor` leads the group;
/// ours joins: Java's leader takes partitions from its own member in a
/// first rebalance and gives them to ours in the second, which ours follows.
/// Together they consume every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_a_cooperative_group_with_the_java_consumer() {
    let bootstrap = bootstrap();
    let topic = unique("coop-interop");
    let group = unique("g-coop-interop");
    create_topic(&topic, 4).await;

    let java = JavaConsumer::start(
        &bootstrap,
        &topic,
        &group,
        "CooperativeStickyAssignor",
        &["session.timeout.ms=10000"],
    );
    let members = || describe_members(&bootstrap, &group);
    assert!(
        wait_until(Duration::from_secs(60), || members_hold(
            &members(),
            &group,
            1,
            4
        )),
        "the Java consumer alone holds the four partitions:\n{}",
        members()
    );

    let ours = Member::start(CONSUMER, &topic, &group, &bootstrap, &[COOPERATIVE]);
    assert!(
        wait_until(Duration::from_secs(60), || {
            ours.assignment().is_some_and(|(_, p)| p.len() == 2)
                && members_hold(&members(), &group, 2, 2)
        }),
        "two partitions each:\n{}\n{}",
        members(),
        ours.log_tail(20)
    );

    services::produce(&topic, 200, "run-coop-interop", "key-{seq}").await;
    let java_records = || java.records();
    assert!(
        wait_until(Duration::from_secs(30), || ours.records().len()
            + java_records().len()
            >= 200),
        "ours {} + java {}",
        ours.records().len(),
        java_records().len()
    );
    let ours_records = ours.records();
    let java_seen = java_records();
    let distinct: BTreeSet<(i64, i64)> = ours_records.iter().chain(&java_seen).copied().collect();
    assert_eq!(distinct.len(), 200, "every record");
    assert_eq!(ours_records.len() + java_seen.len(), 200, "once");
    assert!(
        !ours_records.is_empty() && !java_seen.is_empty(),
        "both consumed"
    );
    drop((java, ours));
    delete_topic(&topic);
}

/// The upgrade from an eager assignor to `cooperative-sticky` by rolling
/// restarts, as Java documents it: first every member offers both (the
/// rebalance protocol stays EAGER while an eager assignor is listed), then
/// only `cooperative-sticky`. Records flow between the steps; none is lost
/// or handled twice, and the group ends on `cooperative-sticky`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_from_range_to_cooperative_sticky() {
    let bootstrap = bootstrap();
    let topic = unique("coop-upgrade");
    let group = unique("g-coop-upgrade");
    create_topic(&topic, 4).await;
    let start = |assignors: &str| {
        Member::start(
            CONSUMER,
            &topic,
            &group,
            &bootstrap,
            &[("CONSUMER_ASSIGNORS", assignors)],
        )
    };
    let two_each = |ms: [&Member; 2]| {
        balanced(&ms, 4)
            && ms
                .iter()
                .all(|m| m.assignment().is_some_and(|(_, p)| p.len() == 2))
    };
    let mut slots = [start("range"), start("range")];
    let mut retired: Vec<Member> = Vec::new();
    assert!(
        wait_until(Duration::from_secs(40), || two_each([&slots[0], &slots[1]])),
        "range: two partitions each"
    );
    services::produce(&topic, 100, "run-upgrade-0", "key-{seq}").await;
    let mut produced = 100;
    for (step, assignors) in ["range,cooperative-sticky", "cooperative-sticky"]
        .into_iter()
        .enumerate()
    {
        for slot in 0..2 {
            let mut old = std::mem::replace(&mut slots[slot], start(assignors));
            old.sigterm();
            assert_eq!(
                old.wait_exit(Duration::from_secs(8)),
                Some(0),
                "clean exit:\n{}",
                old.log_tail(10)
            );
            retired.push(old);
            assert!(
                wait_until(Duration::from_secs(40), || two_each([&slots[0], &slots[1]])),
                "{assignors}: two partitions each: {:?} {:?}\n{}",
                slots[0].assignment(),
                slots[1].assignment(),
                slots[slot].log_tail(10)
            );
            services::produce(
                &topic,
                100,
                &format!("run-upgrade-{step}-{slot}"),
                "key-{seq}",
            )
            .await;
            produced += 100;
        }
    }
    let all: Vec<&Member> = slots.iter().chain(&retired).collect();
    assert!(
        wait_until(Duration::from_secs(30), || deliveries(&all).len()
            >= produced),
        "{} of {produced} handled",
        deliveries(&all).len()
    );
    let delivered = deliveries(&all);
    let twice: BTreeMap<_, _> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(delivered.len(), produced, "every record handled");
    assert!(twice.is_empty(), "handled twice: {twice:?}");
    for m in &slots {
        let protocol = m
            .lines()
            .into_iter()
            .rfind(|v| v["message"] == "joined group")
            .map(|v| v["protocol"].as_str().unwrap_or_default().to_owned());
        assert_eq!(protocol.as_deref(), Some("cooperative-sticky"));
    }
    drop(all);
    drop((slots, retired));
    delete_topic(&topic);
}

/// `kill -SIG pid`.
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// SIGTERM while a cooperative rebalance cannot finish (a frozen member
/// holds it up): the member still owns its partitions and keeps consuming,
/// its periodic commit waits for the rebalance, and the shutdown does not
/// wait for that: it commits what was handled with the generation it holds,
/// leaves and exits 0 within the drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_cooperative_rebalance_commits_and_exits_cleanly() {
    let bootstrap = bootstrap();
    let topic = unique("coop-sigterm");
    let group = unique("g-coop-sigterm");
    create_topic(&topic, 4).await;
    // A long session and rebalance timeout: the rebalance stays stuck on
    // the frozen member for as long as the test needs, even on a busy machine.
    let env = [
        COOPERATIVE,
        ("CONSUMER_MAX_POLL_INTERVAL_MS", "60000"),
        ("CONSUMER_SESSION_TIMEOUT_MS", "30000"),
    ];
    let mut a = Member::start(CONSUMER, &topic, &group, &bootstrap, &env);
    let mut b = Member::start(CONSUMER, &topic, &group, &bootstrap, &env);
    assert!(
        wait_until(Duration::from_secs(40), || balanced(&[&a, &b], 4)),
        "two members: {:?} {:?}",
        a.assignment(),
        b.assignment()
    );
    // b stops answering: the next rebalance waits for it.
    signal(b.child.id(), "-STOP");
    let c = Member::start(CONSUMER, &topic, &group, &bootstrap, &env);
    tokio::time::sleep(Duration::from_secs(2)).await;
    services::produce(&topic, 100, "run-coop-sigterm", "key-{seq}").await;
    assert!(
        wait_until(Duration::from_secs(5), || !a.records().is_empty()),
        "a keeps consuming its partitions during the rebalance"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        c.assignment().is_none(),
        "the rebalance is still under way:\n{}",
        c.log_tail(10)
    );
    a.sigterm();
    let code = a.wait_exit(Duration::from_secs(8));
    let log = a.log_text();
    assert_eq!(code, Some(0), "clean exit:\n{}", a.log_tail(15));
    assert!(
        log.contains("final offsets committed"),
        "{}",
        a.log_tail(15)
    );
    signal(b.child.id(), "-CONT");
    b.kill9();
    drop(c);
    delete_topic(&topic);
}
