//! Faults of a 3-broker cluster (KRaft, replication factor 3,
//! min.insync.replicas 2; `scripts/kafka-cluster.sh`) while the producer
//! and two consumers of one group run, as binaries, on a 6-partition
//! topic: kill -9 of a partition leader and of the group coordinator, a
//! rolling restart, two brokers down (`NOT_ENOUGH_REPLICAS`), and leader
//! moves by reassignment. `make test-cluster` starts the cluster once for
//! all of them and runs them one at a time (each takes brokers down, each
//! leaves the cluster healthy).
//!
//! Each test prints a `FAULT cluster-…` line (docs/reliability.md) and
//! asserts the goals: the producer acknowledged every record, and Kafka's
//! console consumer reads each back once, in order; the consumers handled
//! every offset, at most one commit interval's records twice, committed to
//! the end of every partition, and paused no partition longer than the
//! session timeout (except while two brokers are down: there the producer
//! waits, by design).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use testkit::{
    broker::{console_read_back, offsets_in_log},
    cluster::Cluster,
    process::{balanced, deliveries, free_addr, service_bin, Member, Running},
    scrape::http_get,
    unique,
};

/// The canary's topic placement as brokers come and go.
mod placement;

/// Faults take brokers down: one test at a time, whatever the test threads.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PARTITIONS: i32 = 6;
const RATE: u64 = 200;
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// The consumers' session timeout (Kafka's default is 45 s). A kill -9
/// costs the cluster itself about 8 s before a new leader serves (the
/// brokers' 6 s session timeout, plus a KRaft election when the node was the
/// active controller), so 10 s would leave the clients 2 s.
const SESSION_TIMEOUT: Duration = Duration::from_secs(15);

/// The producer and the consumers on a fresh topic of the shared cluster.
struct Load {
    cluster: Cluster,
    name: &'static str,
    topic: String,
    group: String,
    records: u64,
    producer: Running,
    producer_http: SocketAddr,
    consumers: Vec<Member>,
}

/// What a fault did, for the FAULT line and the goals.
#[derive(Debug)]
struct Figures {
    sent: u64,
    acked: u64,
    read_back: usize,
    lost: usize,
    duplicated: usize,
    out_of_order: usize,
    retries: u64,
    retry_reasons: String,
    epoch_bumps: u64,
    ack_max: f64,
    handled: usize,
    unhandled: usize,
    handled_twice: usize,
    uncommitted_partitions: Vec<i32>,
    rebalances: usize,
    longest_pause: f64,
    caught_up: f64,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

impl Load {
    /// A new topic and group, both consumers assigned, then the producer
    /// at `RATE` records/s for `seconds`.
    async fn start(name: &'static str, seconds: u64) -> Self {
        let cluster = Cluster::shared();
        {
            let c = cluster.clone();
            blocking(move || c.wait_healthy()).await;
        }
        let topic = unique(&format!("cluster-{name}"));
        let group = unique(&format!("g-cluster-{name}"));
        cluster.create_topic(&topic, PARTITIONS).await;
        let consumer = service_bin("consumer");
        let consumers: Vec<Member> = (0..2)
            .map(|_| {
                Member::start(
                    &consumer,
                    &topic,
                    &group,
                    cluster.bootstrap(),
                    &[
                        ("CONSUMER_COMMIT_INTERVAL_MS", "1000"),
                        ("CONSUMER_SESSION_TIMEOUT_MS", "15000"),
                        ("CONSUMER_HEARTBEAT_INTERVAL_MS", "1000"),
                        ("CONSUMER_AUTO_OFFSET_RESET", "earliest"),
                    ],
                )
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !balanced(&consumers.iter().collect::<Vec<_>>(), PARTITIONS as usize) {
            assert!(
                Instant::now() < deadline,
                "consumers not assigned within 60 s:\n{}",
                consumers[0].log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let records = RATE * seconds;
        let producer_http = free_addr();
        let producer = Running::start(
            service_bin("producer"),
            &[],
            &[
                ("KAFKA_BOOTSTRAP_SERVER", cluster.bootstrap().to_owned()),
                ("KAFKA_TOPIC", topic.clone()),
                ("HTTP_ADDR", producer_http.to_string()),
                ("PRODUCER_MESSAGES", records.to_string()),
                ("PRODUCER_RATE", RATE.to_string()),
                ("PRODUCER_KEY_TEMPLATE", "key-{seq}".to_owned()),
                ("PRODUCER_RUN_ID", topic.clone()),
                ("PRODUCER_TIMEOUT_SECS", (seconds + 120).to_string()),
                ("PRODUCER_PROGRESS_SECS", "1".to_owned()),
            ],
        );
        Self {
            cluster,
            name,
            topic,
            group,
            records,
            producer,
            producer_http,
            consumers,
        }
    }

    /// Runs `f` on the cluster (Kafka's tools, the script) off the runtime.
    async fn on_cluster<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Cluster) -> T + Send + 'static,
    ) -> T {
        let c = self.cluster.clone();
        blocking(move || f(&c)).await
    }

    /// The end of every test: waits for the producer and the consumers,
    /// prints the FAULT line (`what` the fault was), asserts the goals (no
    /// pause bound without `pause_bound`), and leaves the cluster healthy.
    async fn conclude(
        self,
        fault_at: DateTime<Utc>,
        what: &str,
        pause_bound: Option<Duration>,
    ) -> Figures {
        let (cluster, name) = (self.cluster.clone(), self.name);
        let f = self.finish(fault_at).await;
        f.report(name, what);
        f.assert_goals(name, pause_bound);
        blocking(move || cluster.wait_healthy()).await;
        f
    }

    /// Waits until every partition of the topic has all three replicas in
    /// sync again.
    async fn wait_replicated(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (c, t) = (self.cluster.clone(), self.topic.clone());
            let d = blocking(move || c.describe(&t)).await;
            if d.len() == PARTITIONS as usize && d.iter().all(|p| p.isr.len() == 3 && p.leader >= 0)
            {
                return;
            }
            assert!(Instant::now() < deadline, "not fully replicated: {d:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits for the producer, the consumers catching up and committing,
    /// reads the topic back; `fault_at` is when the fault began.
    async fn finish(self, fault_at: DateTime<Utc>) -> Figures {
        let out = self.producer.finish(Duration::from_secs(600)).await;
        let done = Instant::now();
        let summary = out
            .lines()
            .into_iter()
            .rfind(|v| v["message"] == "summary")
            .unwrap_or_default();
        assert_eq!(
            out.code,
            Some(0),
            "{}: producer failed: {}",
            self.name,
            out.last_line()
        );
        let bootstrap = self.cluster.bootstrap().to_owned();
        let in_log = offsets_in_log(&bootstrap, &self.topic).await;

        // The consumers handle every offset and commit to the end.
        let members: Vec<&Member> = self.consumers.iter().collect();
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut caught_up = None;
        let mut uncommitted: Vec<i32>;
        loop {
            let seen = deliveries(&members);
            if caught_up.is_none() && in_log.iter().all(|k| seen.contains_key(k)) {
                caught_up = Some(done.elapsed());
            }
            let (c, g) = (self.cluster.clone(), self.group.clone());
            let offsets = blocking(move || c.offsets(&g)).await;
            uncommitted = (0..PARTITIONS)
                .filter(|p| {
                    !offsets
                        .iter()
                        .any(|(q, committed, end)| q == p && committed == end)
                })
                .collect();
            if (caught_up.is_some() && uncommitted.is_empty()) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let seen = deliveries(&members);
        let back = console_read_back(&bootstrap, &self.topic).await;
        Figures {
            sent: summary["records"].as_u64().unwrap_or(0),
            acked: summary["acked"].as_u64().unwrap_or(0),
            read_back: back.records,
            lost: back.lost(self.records),
            duplicated: back.duplicates(),
            out_of_order: back.out_of_order.len(),
            retries: summary["retries"].as_u64().unwrap_or(0),
            retry_reasons: summary["retry_reasons"].as_str().unwrap_or("").to_owned(),
            epoch_bumps: summary["epoch_bumps"].as_u64().unwrap_or(0),
            ack_max: summary["ack_max_ms"]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1e3,
            handled: in_log.iter().filter(|k| seen.contains_key(k)).count(),
            unhandled: in_log.iter().filter(|k| !seen.contains_key(k)).count(),
            handled_twice: seen.values().map(|n| n - 1).sum(),
            uncommitted_partitions: uncommitted,
            rebalances: members
                .iter()
                .map(|m| {
                    m.lines()
                        .iter()
                        .filter(|v| v["message"] == "assignment received")
                        .count()
                        .saturating_sub(1)
                })
                .sum(),
            longest_pause: longest_pause(&members, fault_at),
            caught_up: caught_up.map_or(f64::NAN, |d| d.as_secs_f64()),
        }
    }
}

/// The longest time a partition went without a record handled, from a
/// second before `fault_at` on (log time of the `record` lines). At 200
/// records/s over 6 partitions a partition normally sees one every 30 ms.
fn longest_pause(members: &[&Member], fault_at: DateTime<Utc>) -> f64 {
    let from = fault_at - chrono::Duration::seconds(1);
    let mut times: BTreeMap<i64, Vec<DateTime<Utc>>> = BTreeMap::new();
    for m in members {
        for v in m.lines() {
            if v["message"] != "record" {
                continue;
            }
            let (Some(p), Some(t)) = (
                v["partition"].as_i64(),
                v["timestamp"]
                    .as_str()
                    .and_then(|t| t.parse::<DateTime<Utc>>().ok()),
            ) else {
                continue;
            };
            if t >= from {
                times.entry(p).or_default().push(t);
            }
        }
    }
    times
        .values_mut()
        .flat_map(|ts| {
            ts.sort();
            ts.windows(2)
                .map(|w| (w[1] - w[0]).num_milliseconds() as f64 / 1e3)
                .collect::<Vec<_>>()
        })
        .fold(0.0, f64::max)
}

impl Figures {
    fn report(&self, name: &str, what: &str) {
        eprintln!(
            "FAULT cluster-{name}: {what}; producer: sent {}, acknowledged {}, read back {}, lost {}, duplicated {}, out of order {}, records retried {} ({}), epoch bumps {}, longest ack wait {:.1} s; consumers: handled {} of {} offsets, handled twice {}, partitions not committed to the end {:?}, rebalances {}, longest partition pause {:.1} s, caught up {:.1} s after the producer finished",
            self.sent,
            self.acked,
            self.read_back,
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.retries,
            if self.retry_reasons.is_empty() { "-" } else { &self.retry_reasons },
            self.epoch_bumps,
            self.ack_max,
            self.handled,
            self.handled + self.unhandled,
            self.handled_twice,
            self.uncommitted_partitions,
            self.rebalances,
            self.longest_pause,
            self.caught_up,
        );
    }

    /// The goals: producer 0 lost, 0 duplicated, in order; consumers 0
    /// lost, duplicates within one commit interval, every partition
    /// committed to its end; with `pause_bound`, no partition paused longer.
    fn assert_goals(&self, name: &str, pause_bound: Option<Duration>) {
        assert_eq!(self.acked, self.sent, "{name}: every record acknowledged");
        assert_eq!(self.lost, 0, "{name}: records lost");
        assert_eq!(self.duplicated, 0, "{name}: records written twice");
        assert_eq!(self.out_of_order, 0, "{name}: partitions out of order");
        assert_eq!(self.unhandled, 0, "{name}: offsets never handled");
        let bound = (RATE as f64 * COMMIT_INTERVAL.as_secs_f64()) as usize;
        assert!(
            self.handled_twice <= bound,
            "{name}: {} handled twice, more than one commit interval ({bound})",
            self.handled_twice
        );
        assert!(
            self.uncommitted_partitions.is_empty(),
            "{name}: partitions not committed to their end: {:?}",
            self.uncommitted_partitions
        );
        if let Some(bound) = pause_bound {
            assert!(
                self.longest_pause < bound.as_secs_f64(),
                "{name}: a partition paused {:.1} s, longer than {bound:?}",
                self.longest_pause
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_partition_leader_while_producing_and_consuming() {
    let _one = ONE_AT_A_TIME.lock().await;
    let load = Load::start("leader-kill", 40).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let topic = load.topic.clone();
    let leader = {
        let t = topic.clone();
        load.on_cluster(move |c| c.leader(&t, 0)).await
    };
    let fault_at = Utc::now();
    load.on_cluster(move |c| c.kill9(leader)).await;
    let moved = Instant::now();
    loop {
        let t = topic.clone();
        let now = load.on_cluster(move |c| c.leader(&t, 0)).await;
        if now >= 0 && now != leader {
            break;
        }
        assert!(moved.elapsed() < Duration::from_secs(60), "no new leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let election = moved.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    load.on_cluster(move |c| c.start_node(leader)).await;
    let what = format!(
        "kill -9 of node {leader}, leader of partition 0; new leader in {:.1} s; node back 10 s later",
        election.as_secs_f64()
    );
    load.conclude(fault_at, &what, Some(SESSION_TIMEOUT)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_group_coordinator_keeps_every_commit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let load = Load::start("coordinator-kill", 40).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let group = load.group.clone();
    let coordinator = {
        let g = group.clone();
        load.on_cluster(move |c| c.coordinator(&g)).await
    }
    .expect("the group's coordinator");
    let fault_at = Utc::now();
    load.on_cluster(move |c| c.kill9(coordinator)).await;
    let moved = Instant::now();
    let new = loop {
        let g = group.clone();
        if let Some(n) = load
            .on_cluster(move |c| c.coordinator(&g))
            .await
            .filter(|n| *n != coordinator)
        {
            break n;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(60),
            "no new coordinator"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let election = moved.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    load.on_cluster(move |c| c.start_node(coordinator)).await;
    let what = format!(
        "kill -9 of node {coordinator}, the group's coordinator; node {new} coordinator within {:.1} s",
        election.as_secs_f64()
    );
    load.conclude(fault_at, &what, Some(SESSION_TIMEOUT)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_all_three_brokers_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let load = Load::start("rolling-restart", 90).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let fault_at = Utc::now();
    let started = Instant::now();
    for n in 1..=3 {
        load.on_cluster(move |c| {
            c.stop_node(n);
            c.start_node(n);
        })
        .await;
        load.wait_replicated().await;
    }
    let took = started.elapsed();
    let what = format!(
        "nodes 1, 2, 3 each stopped (controlled shutdown), started, back in sync; {:.0} s in all",
        took.as_secs_f64()
    );
    load.conclude(fault_at, &what, Some(SESSION_TIMEOUT)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_down_the_producer_waits_for_enough_replicas_and_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let load = Load::start("not-enough-replicas", 40).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let fault_at = Utc::now();
    load.on_cluster(|c| {
        c.stop_node(1);
        c.stop_node(2);
    })
    .await;
    // Node 3 alone leads every partition with itself the only replica in
    // sync, fewer than min.insync.replicas: NOT_ENOUGH_REPLICAS.
    let down = Instant::now();
    let mut readyz = String::new();
    while down.elapsed() < Duration::from_secs(30) {
        let (status, body) = http_get(load.producer_http, "/readyz").await;
        if status == 503 && body.contains("NotEnoughReplicas") {
            readyz = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !readyz.is_empty(),
        "the producer's /readyz named NotEnoughReplicas"
    );
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(down.elapsed())).await;
    let back = Instant::now();
    load.on_cluster(move |c| c.start_node(2)).await;
    let one_back = back.elapsed();
    load.on_cluster(move |c| c.start_node(1)).await;
    let what = format!(
        "nodes 1 and 2 stopped for {:.0} s (node 3 alone: NOT_ENOUGH_REPLICAS); producer /readyz: {}; node 2 back after {:.1} s",
        back.duration_since(down).as_secs_f64(),
        readyz.trim(),
        one_back.as_secs_f64()
    );
    // Nothing to consume while nothing is written: no pause bound here.
    let f = load.conclude(fault_at, &what, None).await;
    assert!(
        f.retry_reasons.contains("NotEnoughReplicas"),
        "the summary names the reason: {}",
        f.retry_reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_leader_moved_by_reassignment_while_consuming() {
    let _one = ONE_AT_A_TIME.lock().await;
    let load = Load::start("leader-move", 40).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Each partition's replica list rotated by one, then a preferred
    // leader election: every partition gets a new leader.
    let before = load.cluster.describe(&load.topic);
    let plan = serde_json::json!({
        "version": 1,
        "partitions": before.iter().map(|p| {
            let mut r = p.replicas.clone();
            r.rotate_left(1);
            serde_json::json!({"topic": load.topic, "partition": p.partition, "replicas": r})
        }).collect::<Vec<_>>(),
    });
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("reassign.json");
    std::fs::write(&file, plan.to_string()).expect("plan");
    let fault_at = Utc::now();
    let file_arg = file.display().to_string();
    load.on_cluster(move |c| {
        c.tool(
            "reassign-partitions",
            &["--reassignment-json-file", &file_arg, "--execute"],
        );
        c.tool(
            "leader-election",
            &["--election-type", "PREFERRED", "--all-topic-partitions"],
        );
    })
    .await;
    let after = load.cluster.describe(&load.topic);
    let moved = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b.leader != a.leader)
        .count();
    let what = format!(
        "replicas of all {PARTITIONS} partitions rotated (kafka-reassign-partitions), preferred leader election: {moved} leaders moved"
    );
    load.conclude(fault_at, &what, Some(SESSION_TIMEOUT)).await;
    assert_eq!(moved, PARTITIONS as usize, "every leader moved: {after:?}");
}
