//! The `consumer` binary as real group members (separate processes, real
//! signals) against the real broker, next to Kafka's own Java tools.

use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};

use testkit::{
    broker::*,
    process::*,
    scrape::http_get,
    services::{self, spawn_producer},
    unique,
};

const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");

/// Sends `n` demo records of run `run_id`, keyed by `seq`.
async fn produce(topic: &str, n: u64, run_id: &str) {
    services::produce(topic, n, run_id, "key-{seq}").await;
}

/// What `members` handled: (partition, offset), once per time handled.
fn seen(members: &[&Member]) -> Vec<(i64, i64)> {
    members.iter().flat_map(|m| m.records()).collect()
}

/// Whether `member` holds `n` partitions now.
fn owns(member: &Member, n: usize) -> bool {
    member.owned().is_some_and(|o| o.len() == n)
}

/// `records` (partition, offset) are `n` distinct ones, none twice: nothing
/// lost, a clean hand-over.
fn assert_each_once(records: &[(i64, i64)], n: usize) {
    let distinct: BTreeSet<(i64, i64)> = records.iter().copied().collect();
    assert_eq!(distinct.len(), n, "nothing lost");
    assert_eq!(records.len(), n, "clean hand-over: nothing handled twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_split_six_partitions_and_sigterm_hands_over_at_once() {
    let bootstrap = bootstrap();
    let topic = unique("members");
    let group = unique("g-members");
    create_topic(&topic, 6).await;

    let a = Member::start(CONSUMER, &topic, &group, &bootstrap, &[]);
    let b = Member::start(CONSUMER, &topic, &group, &bootstrap, &[]);
    let mut c = Member::start(CONSUMER, &topic, &group, &bootstrap, &[]);
    assert!(
        wait_until(Duration::from_secs(30), || balanced(&[&a, &b, &c], 6)
            && [&a, &b, &c]
                .iter()
                .all(|m| m.assignment().is_some_and(|(_, p)| p.len() == 2))),
        "three members with two partitions each: {:?} {:?} {:?}",
        a.assignment(),
        b.assignment(),
        c.assignment()
    );
    assert!(
        !a.log_text()
            .contains("apply to the classic group protocol only"),
        "on the classic protocol its keys apply, no warning:\n{}",
        a.log_text()
    );

    produce(&topic, 600, "run-members-1").await;
    assert!(wait_until(Duration::from_secs(30), || seen(&[&a, &b, &c])
        .len()
        >= 600));
    let first: BTreeSet<(i64, i64)> = seen(&[&a, &b, &c]).into_iter().collect();
    assert_eq!(first.len(), 600, "every record once");
    assert_eq!(seen(&[&a, &b, &c]).len(), 600, "no record twice");
    // Each partition is handled in offset order.
    for m in [&a, &b, &c] {
        let mut last: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
        for (p, o) in m.records() {
            if let Some(prev) = last.insert(p, o) {
                assert!(o > prev, "partition {p}: offset {o} after {prev}");
            }
        }
    }
    for m in [&a, &b, &c] {
        let addr = m.http.parse().expect("addr");
        let mut status = 0;
        for _ in 0..30 {
            status = http_get(addr, "/readyz").await.0;
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, 200, "stable member with partitions is ready");
    }

    // SIGTERM one member: it commits and sends LeaveGroup, so the other two
    // get its partitions at once, not after the 10 s session timeout.
    let stopped = Instant::now();
    c.sigterm();
    assert_eq!(
        c.wait_exit(Duration::from_secs(8)),
        Some(0),
        "clean exit:\n{}",
        c.log_text()
    );
    assert!(c.log_text().contains("\"message\":\"left group\""));
    assert!(
        wait_until(Duration::from_secs(9), || balanced(&[&a, &b], 6)),
        "survivors took over"
    );
    let handover = stopped.elapsed();
    assert!(
        handover < Duration::from_secs(9),
        "rebalance took {handover:?}, not bounded by the session timeout"
    );
    eprintln!("handover after SIGTERM took {handover:?}");

    produce(&topic, 300, "run-members-2").await;
    assert!(wait_until(Duration::from_secs(30), || seen(&[&a, &b, &c])
        .len()
        >= 900));
    assert_each_once(&seen(&[&a, &b, &c]), 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_a_group_with_the_java_console_consumer_and_shows_in_kafka_tools() {
    let bootstrap = bootstrap();
    let topic = unique("interop");
    let group = unique("g-interop");
    create_topic(&topic, 4).await;

    let ours = Member::start(CONSUMER, &topic, &group, &bootstrap, &[]);
    // Kafka's own Java consumer, classic protocol, range assignor (which we offer too).
    let java = JavaConsumer::start(&bootstrap, &topic, &group, "RangeAssignor", &[]);

    // Both members in one generation, partitions split between them.
    let members_line = || describe_members(&bootstrap, &group);
    assert!(
        wait_until(Duration::from_secs(60), || {
            members_hold(&members_line(), &group, 2, 2)
                && ours.assignment().is_some_and(|(_, p)| p.len() == 2)
        }),
        "two members with two partitions each:\n{}",
        members_line()
    );
    let described = members_line();
    assert!(
        described.contains("kafka-consumer"),
        "our client id is listed:\n{described}"
    );

    produce(&topic, 200, "run-interop").await;
    let java_records = || java.records().len();
    assert!(
        wait_until(Duration::from_secs(30), || ours.records().len()
            + java_records()
            >= 200),
        "ours {} + java {}",
        ours.records().len(),
        java_records()
    );
    assert_eq!(ours.records().len() + java_records(), 200);
    assert!(
        !ours.records().is_empty() && java_records() > 0,
        "both consumed"
    );

    // After catch-up Kafka's tool shows our committed offsets with lag 0.
    let describe = || {
        kafka_tool(&[
            "consumer-groups",
            "--bootstrap-server",
            &bootstrap,
            "--describe",
            "--group",
            &group,
        ])
    };
    assert!(
        wait_until(Duration::from_secs(20), || {
            let out = describe();
            let rows: Vec<Vec<String>> = out
                .lines()
                .filter(|l| l.starts_with(&group))
                .map(|l| l.split_whitespace().map(str::to_owned).collect())
                .collect();
            rows.len() == 4
                && rows
                    .iter()
                    .all(|r| r.get(5).map(String::as_str) == Some("0"))
        }),
        "lag 0 everywhere:\n{}",
        describe()
    );
    drop(java);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_broker_gone_exits_1_within_the_drain_timeout() {
    let broker = PrivateBroker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique("gone");
    let group = unique("g-gone");
    let settings = common::kafka::KafkaSettings::plaintext(bootstrap.clone(), "test");
    let client = settings
        .connect(Duration::from_secs(30))
        .await
        .expect("connect private broker");
    client
        .controller_client()
        .expect("controller")
        .create_topic(&topic, 2, 1, 10_000)
        .await
        .expect("topic");

    // Commits only at shutdown, so the final commit has work that needs the broker.
    let mut m = Member::start(
        CONSUMER,
        &topic,
        &group,
        &bootstrap,
        &[
            ("CONSUMER_DRAIN_TIMEOUT_MS", "3000"),
            ("CONSUMER_COMMIT_INTERVAL_MS", "600000"),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(30), || m
            .assignment()
            .is_some_and(|(_, p)| p.len() == 2)),
        "{}",
        m.log_text()
    );
    let p = spawn_producer(&[
        ("KAFKA_BOOTSTRAP_SERVER", &bootstrap),
        ("KAFKA_TOPIC", &topic),
        ("PRODUCER_MESSAGES", "20"),
    ])
    .await;
    assert_eq!(p.handle.await.expect("join").expect("produced").acked, 20);
    assert!(
        wait_until(Duration::from_secs(20), || m.records().len() == 20),
        "{}",
        m.log_text()
    );

    let stop = broker.script("stop", &[]);
    assert!(stop.status.success());
    let t = Instant::now();
    m.sigterm();
    let code = m.wait_exit(Duration::from_secs(10));
    let took = t.elapsed();
    let log = m.log_text();
    assert_eq!(code, Some(1), "the final commit cannot succeed:\n{log}");
    assert!(
        took < Duration::from_secs(5),
        "drain bounded by its 3 s timeout, took {took:?}"
    );
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("\"level\":\"ERROR\"") && last.contains("drain timeout"),
        "clear last line: {last}"
    );
    assert!(!log.contains("panicked"));
}

#[test]
fn bad_configuration_exits_2_with_one_line() {
    for (key, value, allowed) in [
        (
            "KAFKA_CONSUMER_GROUP",
            "",
            "KAFKA_CONSUMER_GROUP is required",
        ),
        ("CONSUMER_AUTO_OFFSET_RESET", "none", "earliest, latest"),
        ("CONSUMER_SESSION_TIMEOUT_MS", "5s", "whole number"),
        (
            "CONSUMER_ASSIGNORS",
            "cooperative",
            "range, roundrobin, sticky, cooperative-sticky",
        ),
    ] {
        let mut cmd = Command::new(CONSUMER);
        cmd.env_clear()
            .env("KAFKA_CONSUMER_GROUP", "g")
            .env(key, value);
        let out = cmd.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}={value}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(allowed), "{stderr}");
    }
    let out = Command::new(CONSUMER).arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&out.stdout);
    for s in [
        "--group",
        "KAFKA_CONSUMER_GROUP",
        "CONSUMER_DRAIN_TIMEOUT_MS",
        "healthcheck",
    ] {
        assert!(help.contains(s), "--help lacks {s}");
    }
}

/// `CONSUMER_ASSIGNORS=sticky` (Java's eager `StickyAssignor`): when a
/// member leaves, the others keep every partition they had and split only
/// its partitions. (With `range` a survivor usually gives one up.) Our
/// members send their previous assignment in the userData, the leader —
/// ours — reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_survivors_keep_their_partitions_when_a_member_leaves() {
    let bootstrap = bootstrap();
    let topic = unique("sticky");
    let group = unique("g-sticky");
    create_topic(&topic, 6).await;
    let sticky = [("CONSUMER_ASSIGNORS", "sticky")];
    let a = Member::start(CONSUMER, &topic, &group, &bootstrap, &sticky);
    let b = Member::start(CONSUMER, &topic, &group, &bootstrap, &sticky);
    let mut c = Member::start(CONSUMER, &topic, &group, &bootstrap, &sticky);
    let two_each = |ms: &[&Member]| {
        balanced(ms, 6)
            && ms
                .iter()
                .all(|m| m.assignment().is_some_and(|(_, p)| p.len() == 6 / ms.len()))
    };
    assert!(
        wait_until(Duration::from_secs(30), || two_each(&[&a, &b, &c])),
        "three members with two partitions each: {:?} {:?} {:?}",
        a.assignment(),
        b.assignment(),
        c.assignment()
    );
    let (generation, before_a) = a.assignment().expect("assigned");
    let (_, before_b) = b.assignment().expect("assigned");

    c.sigterm();
    assert_eq!(c.wait_exit(Duration::from_secs(8)), Some(0), "clean exit");
    assert!(
        wait_until(Duration::from_secs(15), || two_each(&[&a, &b])
            && a.assignment().is_some_and(|(g, _)| g > generation)),
        "two members with three partitions each: {:?} {:?}",
        a.assignment(),
        b.assignment()
    );
    let (_, after_a) = a.assignment().expect("assigned");
    let (_, after_b) = b.assignment().expect("assigned");
    assert!(
        after_a.is_superset(&before_a) && after_b.is_superset(&before_b),
        "survivors kept their partitions: a {before_a:?} -> {after_a:?}, b {before_b:?} -> {after_b:?}"
    );
}

/// The consumer protocol (KIP-848), chosen by default on this Kafka 4.x
/// broker: a second member takes half the partitions from the first, which
/// gives up only those (committing them first) and goes on with the rest;
/// SIGTERM hands the first one's partitions to the second; no record is
/// lost or handled twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_members_revoke_only_what_moves_and_lose_nothing() {
    let bootstrap = bootstrap();
    let topic = unique("kip848");
    let group = unique("g-kip848");
    create_topic(&topic, 6).await;
    // "": unset, the default: the protocol the coordinator offers.
    let default = [("CONSUMER_GROUP_PROTOCOL", "")];

    let mut a = Member::start(CONSUMER, &topic, &group, &bootstrap, &default);
    assert!(
        wait_until(Duration::from_secs(30), || owns(&a, 6)),
        "the first member takes every partition: {:?}\n{}",
        a.owned(),
        a.log_text()
    );
    assert!(
        a.log_text().contains("\"protocol\":\"consumer\""),
        "the consumer protocol chosen, with the reason:\n{}",
        a.log_text()
    );
    // Member::start sets the classic protocol's session and heartbeat
    // keys: named once, once the consumer protocol was chosen.
    let lines = a.lines();
    let at = |message: &str| {
        lines.iter().position(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
    };
    let chosen = at("group protocol chosen").expect("the choice is logged");
    let warned = at("these settings apply to the classic group protocol only")
        .unwrap_or_else(|| panic!("the classic-only keys are named:\n{}", a.log_text()));
    assert!(warned > chosen, "named after the choice:\n{}", a.log_text());
    let keys = lines[warned]["keys"].as_str().unwrap_or_default();
    assert!(
        keys.contains("CONSUMER_SESSION_TIMEOUT_MS")
            && keys.contains("CONSUMER_HEARTBEAT_INTERVAL_MS"),
        "{keys}"
    );
    produce(&topic, 300, "run-kip848-1").await;
    assert!(wait_until(Duration::from_secs(30), || seen(&[&a]).len() >= 300));

    let b = Member::start(CONSUMER, &topic, &group, &bootstrap, &default);
    assert!(
        wait_until(Duration::from_secs(30), || owns(&a, 3) && owns(&b, 3)),
        "three partitions each: {:?} {:?}",
        a.owned(),
        b.owned()
    );
    let (owned_a, owned_b) = (a.owned().expect("a"), b.owned().expect("b"));
    assert!(owned_a.is_disjoint(&owned_b), "{owned_a:?} {owned_b:?}");
    let revocations: Vec<serde_json::Value> = a
        .lines()
        .into_iter()
        .filter(|v| v["message"] == "partitions revoked")
        .collect();
    assert_eq!(revocations.len(), 1, "one revocation: {revocations:?}");
    assert_eq!(revocations[0]["revoked"], 3, "only the moved partitions");
    assert_eq!(revocations[0]["lost"], false);

    produce(&topic, 300, "run-kip848-2").await;
    assert!(wait_until(Duration::from_secs(30), || seen(&[&a, &b])
        .len()
        >= 600));

    let stopped = Instant::now();
    a.sigterm();
    assert_eq!(
        a.wait_exit(Duration::from_secs(8)),
        Some(0),
        "clean exit:\n{}",
        a.log_text()
    );
    assert!(
        a.log_text().contains("left the consumer group"),
        "left with epoch -1:\n{}",
        a.log_text()
    );
    // B hears of it at its next heartbeat (the broker's interval, 5 s).
    assert!(
        wait_until(Duration::from_secs(15), || owns(&b, 6)),
        "b took over: {:?}",
        b.owned()
    );
    eprintln!("hand-over after SIGTERM took {:?}", stopped.elapsed());

    produce(&topic, 300, "run-kip848-3").await;
    assert!(wait_until(Duration::from_secs(30), || seen(&[&a, &b])
        .len()
        >= 900));
    assert_each_once(&seen(&[&a, &b]), 900);
}

/// Our member and Kafka's Java console consumer with
/// `group.protocol=consumer` in one KIP-848 group: the coordinator splits
/// the partitions between them and every record is consumed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_group_with_the_java_consumer() {
    let bootstrap = bootstrap();
    let topic = unique("kip848-java");
    let group = unique("g-kip848-java");
    create_topic(&topic, 4).await;

    let ours = Member::start(
        CONSUMER,
        &topic,
        &group,
        &bootstrap,
        &[("CONSUMER_GROUP_PROTOCOL", "consumer")],
    );
    let java = JavaConsumer::start_consumer_protocol(&bootstrap, &topic, &group);

    let describe = || describe_members(&bootstrap, &group);
    assert!(
        wait_until(Duration::from_secs(60), || {
            describe().lines().filter(|l| l.starts_with(&group)).count() == 2
                && ours.owned().is_some_and(|o| o.len() == 2)
        }),
        "two members, two partitions each:\n{}\nours: {:?}",
        describe(),
        ours.owned()
    );

    produce(&topic, 200, "run-kip848-java").await;
    let java_records = || java.records().len();
    assert!(
        wait_until(Duration::from_secs(30), || ours.records().len()
            + java_records()
            >= 200),
        "ours {} + java {}",
        ours.records().len(),
        java_records()
    );
    assert_eq!(
        ours.records().len() + java_records(),
        200,
        "each record once"
    );
    assert!(
        !ours.records().is_empty() && java_records() > 0,
        "both consumed"
    );
}

/// The broker's upgrade path: a running classic group gets a
/// consumer-protocol member (a rolling restart half done), so Kafka
/// converts it online to a consumer group with a classic member in it; the
/// classic member leaves and the new one takes everything. Then the
/// downgrade path, the same way back. No record lost or handled twice
/// through either conversion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_group_converts_online_to_the_consumer_protocol_and_back() {
    let bootstrap = bootstrap();
    let topic = unique("kip848-upgrade");
    let group = unique("g-kip848-upgrade");
    create_topic(&topic, 4).await;

    let mut old = Member::start(CONSUMER, &topic, &group, &bootstrap, &[]);
    assert!(wait_until(Duration::from_secs(30), || owns(&old, 4)));
    produce(&topic, 200, "run-upgrade-1").await;
    assert!(wait_until(Duration::from_secs(30), || seen(&[&old]).len() >= 200));

    let new = Member::start(
        CONSUMER,
        &topic,
        &group,
        &bootstrap,
        &[("CONSUMER_GROUP_PROTOCOL", "consumer")],
    );
    assert!(
        wait_until(Duration::from_secs(40), || owns(&old, 2) && owns(&new, 2)),
        "split across the protocols: {:?} {:?}\n{}",
        old.owned(),
        new.owned(),
        new.log_text()
    );
    let listed = kafka_tool(&[
        "consumer-groups",
        "--bootstrap-server",
        &bootstrap,
        "--list",
        "--type",
        "consumer",
    ]);
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(group.as_str())),
        "converted to a consumer group:\n{listed}"
    );
    produce(&topic, 200, "run-upgrade-2").await;
    assert!(wait_until(Duration::from_secs(30), || seen(&[&old, &new])
        .len()
        >= 400));

    old.sigterm();
    assert_eq!(old.wait_exit(Duration::from_secs(8)), Some(0), "clean exit");
    assert!(
        wait_until(Duration::from_secs(15), || owns(&new, 4)),
        "the consumer-protocol member took over: {:?}",
        new.owned()
    );
    produce(&topic, 200, "run-upgrade-3").await;
    assert!(wait_until(Duration::from_secs(30), || seen(&[&old, &new])
        .len()
        >= 600));

    // And back (a rollback): a classic member joins the consumer group, the
    // consumer-protocol member leaves, the group is classic again.
    let mut new = new;
    let back = Member::start(CONSUMER, &topic, &group, &bootstrap, &[]);
    assert!(
        wait_until(Duration::from_secs(40), || owns(&back, 2) && owns(&new, 2)),
        "split across the protocols again: {:?} {:?}",
        back.owned(),
        new.owned()
    );
    new.sigterm();
    assert_eq!(new.wait_exit(Duration::from_secs(8)), Some(0), "clean exit");
    assert!(
        wait_until(Duration::from_secs(15), || owns(&back, 4)),
        "the classic member took over: {:?}",
        back.owned()
    );
    let classic = kafka_tool(&[
        "consumer-groups",
        "--bootstrap-server",
        &bootstrap,
        "--list",
        "--type",
        "classic",
    ]);
    assert!(
        classic
            .lines()
            .any(|l| l.split_whitespace().next() == Some(group.as_str())),
        "converted back to a classic group:\n{classic}"
    );
    produce(&topic, 200, "run-upgrade-4").await;
    assert!(wait_until(Duration::from_secs(30), || seen(&[
        &old, &new, &back
    ])
    .len()
        >= 800));
    assert_each_once(&seen(&[&old, &new, &back]), 800);
}
