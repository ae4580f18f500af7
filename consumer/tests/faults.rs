//! Faults against the real broker, with nothing lost: broker restarts under
//! the producer and under consumers, kill -9, scaling 1 → 3 → 1, a stuck
//! handler, and a topic deleted and recreated. Each test prints what it saw
//! (`FAULT …` lines) for docs/reliability.md.

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use common::config::ConfigSource;
use futures::future::BoxFuture;
use rskafka::record::RecordAndOffset;
use testkit::{broker::*, process::*, scrape::http_get, services::*, unique};

const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");

fn producer_cmd(bootstrap: &str, topic: &str, n: u64, rate: u64, timeout_secs: u64) -> Command {
    let mut c = Command::new(service_bin("producer"));
    c.env_clear().envs([
        ("KAFKA_BOOTSTRAP_SERVER", bootstrap),
        ("KAFKA_TOPIC", topic),
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("LOG_FORMAT", "json"),
    ]);
    c.args([
        "--messages",
        &n.to_string(),
        "--rate",
        &rate.to_string(),
        "--timeout",
        &timeout_secs.to_string(),
        "--key-template",
        "key-{seq}",
        "--run-id",
        topic,
    ]);
    c
}

fn summary_of(stdout: &[u8]) -> serde_json::Value {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["message"] == "summary")
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_the_producer_loses_nothing() {
    let broker = PrivateBroker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique("fault-prod-restart");
    create_topic_at(&bootstrap, &topic, 3).await;

    // 3000 records at 300/s: about 10 s, with the broker down from 3 s to ~8 s.
    let child = producer_cmd(&bootstrap, &topic, 3000, 300, 90)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("producer");
    std::thread::sleep(Duration::from_secs(3));
    let down = Instant::now();
    broker.stop_keep();
    std::thread::sleep(Duration::from_secs(2));
    broker.start_again();
    let outage = down.elapsed();
    let out = child.wait_with_output().expect("producer output");
    let summary = summary_of(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "every record acknowledged:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(summary["acked"], 3000);

    // Read back with Kafka's console consumer: the idempotent producer
    // wrote every record once, in order, although it sent batches again.
    let back = console_read_back(&bootstrap, &topic).await;
    assert_eq!(back.lost(3000), 0, "no record lost");
    assert_eq!(back.duplicates(), 0, "no record written twice");
    assert!(back.out_of_order.is_empty(), "in send order per partition");
    assert_eq!(summary["idempotent"], true);
    eprintln!(
        "FAULT broker-restart-producer: outage {:.1}s, 3000/3000 acknowledged, {} read back, {} duplicates, retries {}, epoch bumps {}, producer {}s",
        outage.as_secs_f64(),
        back.records,
        back.duplicates(),
        summary["retries"],
        summary["epoch_bumps"],
        summary["seconds"].as_str().unwrap_or("?")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_consumers_loses_nothing() {
    let broker = PrivateBroker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique("fault-cons-restart");
    let group = unique("g-fault-cons-restart");
    create_topic_at(&bootstrap, &topic, 4).await;
    let a = Member::start(CONSUMER, &topic, &group, &bootstrap, &[]);
    let b = Member::start(CONSUMER, &topic, &group, &bootstrap, &[]);
    assert!(
        wait_until(Duration::from_secs(30), || balanced(&[&a, &b], 4)),
        "{}",
        a.log_text()
    );

    let producer = producer_cmd(&bootstrap, &topic, 2000, 250, 90)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("producer");
    std::thread::sleep(Duration::from_secs(3));
    broker.stop_keep();
    std::thread::sleep(Duration::from_secs(2));
    let restarted = Instant::now();
    broker.start_again();
    let out = producer.wait_with_output().expect("producer");
    assert_eq!(out.status.code(), Some(0));

    let expected = offsets_in_log(&bootstrap, &topic).await;
    let ok = wait_until(Duration::from_secs(60), || {
        let d = deliveries(&[&a, &b]);
        expected.iter().all(|k| d.contains_key(k))
    });
    let d = deliveries(&[&a, &b]);
    let missing: Vec<_> = expected
        .iter()
        .filter(|k| !d.contains_key(k))
        .take(5)
        .collect();
    assert!(
        ok,
        "every record handled after the restart; missing e.g. {missing:?}\n{}",
        a.log_text()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let dups: usize = d.values().map(|n| n - 1).sum();
    eprintln!(
        "FAULT broker-restart-consumers: {} records in the log, all handled; {dups} handled twice; caught up {:.1}s after the broker came back",
        expected.len(),
        restarted.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_then_restart_resumes_from_the_last_commit() {
    let bootstrap = bootstrap();
    let topic = unique("fault-kill9");
    let group = unique("g-fault-kill9");
    create_topic(&topic, 2).await;
    let extra = [
        ("CONSUMER_COMMIT_INTERVAL_MS", "1000"),
        ("CONSUMER_SESSION_TIMEOUT_MS", "6000"),
        ("CONSUMER_DRAIN_TIMEOUT_MS", "3000"),
    ];
    let mut first = Member::start(CONSUMER, &topic, &group, &bootstrap, &extra);
    assert!(wait_until(Duration::from_secs(30), || first
        .assignment()
        .is_some_and(|(_, p)| p.len() == 2)));

    let producer = producer_cmd(&bootstrap, &topic, 1500, 300, 60)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("producer");
    std::thread::sleep(Duration::from_millis(2500));
    first.kill9();
    let before_kill = first.records().len();
    let killed = Instant::now();
    let second = Member::start(CONSUMER, &topic, &group, &bootstrap, &extra);
    let out = producer.wait_with_output().expect("producer");
    assert_eq!(out.status.code(), Some(0));
    let expected = offsets_in_log(&bootstrap, &topic).await;
    assert!(
        wait_until(Duration::from_secs(60), || {
            let d = deliveries(&[&first, &second]);
            expected.iter().all(|k| d.contains_key(k))
        }),
        "every record handled by one of the two processes"
    );
    let d = deliveries(&[&first, &second]);
    let dups: usize = d.values().map(|n| n - 1).sum();
    // At most what one commit interval can hold: 300 records/s for 1 s plus
    // the batch in hand.
    assert!(
        dups <= 450,
        "{dups} duplicates exceed one commit interval's worth"
    );
    let resumed = second.records().first().copied();
    eprintln!(
        "FAULT kill-9: first process handled {before_kill} before SIGKILL; replacement resumed at {resumed:?}; {dups} records handled twice (≤ 1 commit interval at 300/s); all {} handled {:.1}s after the kill",
        expected.len(),
        killed.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_1_3_1_during_a_steady_stream_handles_every_record() {
    let bootstrap = bootstrap();
    let topic = unique("fault-scale");
    let group = unique("g-fault-scale");
    create_topic(&topic, 6).await;
    let a = Member::start(CONSUMER, &topic, &group, &bootstrap, &[]);
    assert!(wait_until(Duration::from_secs(30), || a
        .assignment()
        .is_some_and(|(_, p)| p.len() == 6)));
    let producer = producer_cmd(&bootstrap, &topic, 3000, 250, 60)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("producer");

    std::thread::sleep(Duration::from_secs(2));
    let up = Instant::now();
    let b = Member::start(CONSUMER, &topic, &group, &bootstrap, &[]);
    let c = Member::start(CONSUMER, &topic, &group, &bootstrap, &[]);
    assert!(
        wait_until(Duration::from_secs(30), || balanced(&[&a, &b, &c], 6)),
        "scaled to 3"
    );
    let scale_up = up.elapsed();

    std::thread::sleep(Duration::from_secs(3));
    let down = Instant::now();
    b.sigterm();
    c.sigterm();
    assert!(
        wait_until(Duration::from_secs(30), || a
            .assignment()
            .is_some_and(|(_, p)| p.len() == 6)),
        "back to 1"
    );
    let scale_down = down.elapsed();
    let out = producer.wait_with_output().expect("producer");
    assert_eq!(out.status.code(), Some(0));

    let expected = offsets_in_log(&bootstrap, &topic).await;
    assert!(wait_until(Duration::from_secs(60), || {
        let d = deliveries(&[&a, &b, &c]);
        expected.iter().all(|k| d.contains_key(k))
    }));
    let d = deliveries(&[&a, &b, &c]);
    let dups: usize = d.values().map(|n| n - 1).sum();
    assert_eq!(dups, 0, "clean rebalances commit before handing over");
    eprintln!(
        "FAULT scale-1-3-1: {} records, all handled once; 1→3 balanced after {:.1}s, 3→1 after {:.1}s",
        expected.len(),
        scale_up.as_secs_f64(),
        scale_down.as_secs_f64()
    );
}

/// Handles every record at once, except partition 0 after its first record:
/// there it hangs, as a handler stuck on a remote call would.
#[derive(Debug)]
struct StuckOnPartition0 {
    inner: consumer::Handler,
}

impl consumer::RecordHandler for StuckOnPartition0 {
    fn handle<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        record: &'a RecordAndOffset,
    ) -> BoxFuture<'a, Result<(), consumer::HandlerError>> {
        Box::pin(async move {
            if partition == 0 && record.offset >= 1 {
                std::future::pending::<()>().await;
            }
            self.inner.handle(topic, partition, record);
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_handler_shows_on_readyz_and_metrics_without_eviction() {
    let bootstrap = bootstrap();
    let topic = unique("fault-stuck");
    let group = unique("g-fault-stuck");
    create_topic(&topic, 3).await;
    let config = consumer::config::validate(&ConfigSource::from_pairs([
        ("KAFKA_BOOTSTRAP_SERVER", bootstrap.as_str()),
        ("KAFKA_TOPIC", topic.as_str()),
        ("KAFKA_CONSUMER_GROUP", group.as_str()),
        ("CONSUMER_SESSION_TIMEOUT_MS", "3000"),
        ("CONSUMER_HEARTBEAT_INTERVAL_MS", "500"),
        ("CONSUMER_DRAIN_TIMEOUT_MS", "2000"),
        ("CONSUMER_COMMIT_INTERVAL_MS", "300"),
        ("CONSUMER_STALL_SECS", "2"),
        // The 3 s session timeout above is the classic protocol's (the
        // consumer protocol's is the broker's).
        ("CONSUMER_GROUP_PROTOCOL", "classic"),
    ]))
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handler = Arc::new(StuckOnPartition0 {
        inner: consumer::Handler::new(group.clone(), 64),
    });
    let task = tokio::spawn(consumer::run_with_handler(
        config,
        listener,
        shutdown.clone(),
        handler,
    ));

    // 90 records, keyless: 30 per partition, round robin.
    let sent_from = std::time::SystemTime::now();
    let p = spawn_producer(&[("KAFKA_TOPIC", &topic), ("PRODUCER_MESSAGES", "90")]).await;
    assert_eq!(p.handle.await.expect("join").expect("produced").acked, 90);
    let sent_until = std::time::SystemTime::now();

    // Wait past the stall window and well past the 3 s session timeout.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (status, reason) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "{reason}");
    assert!(
        reason.contains(&format!("{topic}-0")) && reason.contains("stalled"),
        "{reason}"
    );
    let (_, metrics) = http_get(addr, "/metrics").await;
    let line = |name: &str, p: i32| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(name)
                    && l.contains(&format!("topic=\"{topic}\""))
                    && l.contains(&format!("partition=\"{p}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(
        line("kafka_consumer_partition_stalled{", 0),
        1.0,
        "{metrics}"
    );
    assert_eq!(line("kafka_consumer_partition_stalled{", 1), 0.0);
    // The other partitions flowed; partition 0 stopped after one record.
    assert_eq!(line("kafka_consumer_records_consumed_total{", 1), 30.0);
    assert_eq!(line("kafka_consumer_records_consumed_total{", 2), 30.0);
    assert_eq!(line("kafka_consumer_records_consumed_total{", 0), 1.0);
    // Lag in seconds: the stuck record's age, from its own timestamp (the
    // gauge is at most a second old); 0 on the partitions that caught up.
    let age = |t: std::time::SystemTime| t.elapsed().expect("clock").as_secs_f64();
    let (oldest, newest) = (age(sent_from), age(sent_until));
    let waited = line("kafka_consumergroup_lag_seconds{", 0);
    assert!(
        waited >= newest - 1.5 && waited <= oldest + 0.1,
        "lag seconds {waited}, the record was sent {newest:.1}-{oldest:.1} s ago:\n{metrics}"
    );
    assert_eq!(line("kafka_consumergroup_lag_seconds{", 1), 0.0);
    assert_eq!(line("kafka_consumergroup_lag_seconds{", 2), 0.0);
    // Heartbeats kept the member in its generation: one rebalance only.
    assert!(
        metrics
            .lines()
            .any(|l| l == "kafka_consumer_rebalances_total 1"),
        "not evicted:\n{metrics}"
    );

    // Shutdown aborts the stuck handler within the drain timeout and
    // commits only what was handled.
    let t = Instant::now();
    shutdown.cancel();
    task.await
        .expect("join")
        .expect("clean shutdown despite the stuck handler");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    eprintln!("FAULT stuck-handler: partition 0 stuck after 1 record (lag seconds {waited:.1}, sent {newest:.1}-{oldest:.1} s ago); /readyz 503 \"{}\"; partitions 1,2 handled 30+30; 1 rebalance in 7 s (session timeout 3 s); shutdown in {:.1}s", reason.trim(), t.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_deleted_and_recreated_gives_a_clear_state_and_recovers() {
    topic_deleted_and_recreated("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_deleted_and_recreated_gives_a_clear_state_and_recovers_on_kip_848() {
    topic_deleted_and_recreated("consumer").await;
}

/// A member of `protocol` reads a topic that is deleted (readiness names
/// it) and created again (its new records are handled).
async fn topic_deleted_and_recreated(protocol: &str) {
    let bootstrap = bootstrap();
    let topic = unique("fault-delete");
    let group = unique("g-fault-delete");
    create_topic(&topic, 2).await;
    let m = Member::start(
        CONSUMER,
        &topic,
        &group,
        &bootstrap,
        &[("CONSUMER_GROUP_PROTOCOL", protocol)],
    );
    let p = spawn_producer(&[("KAFKA_TOPIC", &topic), ("PRODUCER_MESSAGES", "40")]).await;
    assert_eq!(p.handle.await.expect("join").expect("produced").acked, 40);
    assert!(wait_until(Duration::from_secs(30), || m.records().len() == 40));

    let c = client().await;
    c.controller_client()
        .expect("controller")
        .delete_topic(topic.as_str(), 10_000)
        .await
        .expect("delete");
    let addr = m.http.parse().expect("addr");
    let mut seen_reason = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let (status, reason) = http_get(addr, "/readyz").await;
        if status == 503 {
            seen_reason = reason;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen_reason.contains("not ready"),
        "not ready while the topic is gone"
    );
    // Once the group has rebalanced without the topic, the reason names it.
    let named = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, reason) = http_get(addr, "/readyz").await;
            if reason.contains(&topic) && reason.contains("do not exist") {
                seen_reason = reason;
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert!(
        named,
        "clear reason naming the missing topic: {seen_reason}"
    );

    create_topic(&topic, 2).await;
    let p = spawn_producer(&[
        ("KAFKA_TOPIC", &topic),
        ("PRODUCER_MESSAGES", "20"),
        ("PRODUCER_RUN_ID", "after-recreate"),
    ])
    .await;
    assert_eq!(p.handle.await.expect("join").expect("produced").acked, 20);
    let recovered = wait_until(Duration::from_secs(60), || {
        m.log_text()
            .lines()
            .filter(|l| l.contains("\"message\":\"record\"") && l.contains("after-recreate"))
            .count()
            == 20
    });
    assert!(
        recovered,
        "records of the recreated topic handled:\n{}",
        m.log_text()
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (status, _) = http_get(addr, "/readyz").await;
    eprintln!("FAULT topic-deleted ({protocol}): /readyz 503 \"{}\" while gone; after recreation 20/20 new records handled, /readyz {status}", seen_reason.trim());
}

/// Issue 18, part 3: with a backlog a member handles thousands of records
/// per commit interval, so a crash re-delivered all of them. With
/// `CONSUMER_COMMIT_MAX_RECORDS` it also commits every that many records:
/// a kill -9 re-delivers about that many, however fast the member was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_a_backlog_redelivers_about_commit_max_records() {
    const BACKLOG: u64 = 40_000;
    // BACKLOG_MAX_RECORDS / BACKLOG_INTERVAL_MS measure other settings (the
    // defaults, 10000 and 5000, for docs/reliability.md).
    let setting = |key: &str, default: usize| {
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let max_records = setting("BACKLOG_MAX_RECORDS", 1_000);
    let interval_ms = setting("BACKLOG_INTERVAL_MS", 600_000);
    let bootstrap = bootstrap();
    let topic = unique("fault-backlog");
    let group = unique("g-fault-backlog");
    create_topic(&topic, 2).await;
    let count = BACKLOG.to_string();
    let p = spawn_producer(&[
        ("KAFKA_TOPIC", topic.as_str()),
        ("PRODUCER_MESSAGES", count.as_str()),
    ])
    .await;
    assert_eq!(
        p.handle.await.expect("join").expect("produced").acked,
        BACKLOG
    );

    // A commit interval far longer than the test: only the count commits.
    let (max_text, interval_text) = (max_records.to_string(), interval_ms.to_string());
    let extra = [
        ("CONSUMER_COMMIT_INTERVAL_MS", interval_text.as_str()),
        ("CONSUMER_COMMIT_MAX_RECORDS", max_text.as_str()),
        ("CONSUMER_SESSION_TIMEOUT_MS", "6000"),
        ("CONSUMER_DRAIN_TIMEOUT_MS", "3000"),
    ];
    let mut first = Member::start(CONSUMER, &topic, &group, &bootstrap, &extra);
    assert!(
        wait_until(Duration::from_secs(60), || first.records().len() >= 10_000),
        "the first member works through the backlog:\n{}",
        first.log_text()
    );
    first.kill9();
    let handled_before_kill = first.records().len();
    let second = Member::start(CONSUMER, &topic, &group, &bootstrap, &extra);
    let expected = offsets_in_log(&bootstrap, &topic).await;
    assert_eq!(expected.len() as u64, BACKLOG);
    assert!(
        wait_until(Duration::from_secs(120), || {
            let d = deliveries(&[&first, &second]);
            expected.iter().all(|k| d.contains_key(k))
        }),
        "every record handled by one of the two processes"
    );
    let d = deliveries(&[&first, &second]);
    let dups: usize = d.values().map(|n| n - 1).sum();
    // The bound: the count, plus what is handled while a commit is on its
    // way (and the 64-record steps the workers report in).
    assert!(
        dups <= 3 * max_records,
        "{dups} records handled twice after kill -9; CONSUMER_COMMIT_MAX_RECORDS is {max_records}"
    );
    eprintln!(
        "FAULT kill-9-backlog: {BACKLOG} records in the backlog, {handled_before_kill} handled before SIGKILL, {dups} handled twice with CONSUMER_COMMIT_MAX_RECORDS={max_records}, commit interval {interval_ms} ms"
    );
}

/// Issue 13, defect 2: a consumer whose broker cannot be reached is alive
/// (`/healthz` 200, beyond the 30 s staleness limit) and not ready, with the
/// reason on `/readyz` from the first failure; it retries with the
/// documented backoff (100 ms doubling to 30 s) and logs one line per
/// attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_healthy_not_ready_and_retried_with_backoff() {
    let started = Instant::now();
    let member = Member::start(CONSUMER, "unreachable", "g-unreachable", "127.0.0.1:1", &[]);
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (status, why) = member.probe("/readyz");
            status == 503 && why.contains("127.0.0.1:1")
        }),
        "/readyz names the broker from the first failure: {:?}\n{}",
        member.probe("/readyz"),
        member.log_text()
    );
    let reason_after = started.elapsed();
    let mut probes = Vec::new();
    while started.elapsed() < Duration::from_secs(35) {
        probes.push((
            started.elapsed(),
            member.probe("/healthz"),
            member.probe("/readyz"),
        ));
        std::thread::sleep(Duration::from_millis(500));
    }
    let unhealthy: Vec<_> = probes.iter().filter(|p| (p.1).0 != 200).take(3).collect();
    assert!(
        unhealthy.is_empty(),
        "/healthz failed while waiting: {unhealthy:?}"
    );
    let off: Vec<_> = probes
        .iter()
        .filter(|p| (p.2).0 != 503 || !(p.2).1.contains("127.0.0.1:1"))
        .take(3)
        .collect();
    assert!(off.is_empty(), "/readyz without the reason: {off:?}");

    let lines = member.lines();
    let failures: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["level"] == "WARN")
        .filter(|v| v["message"].as_str().is_some_and(|m| m.contains("connect")))
        .collect();
    let attempts: Vec<u64> = failures
        .iter()
        .map(|v| {
            v["attempt"]
                .as_u64()
                .expect("every line numbers its attempt")
        })
        .collect();
    assert_eq!(
        attempts,
        (1..=attempts.len() as u64).collect::<Vec<_>>(),
        "one line per attempt: {failures:#?}"
    );
    for (i, v) in failures.iter().enumerate() {
        let base = (100u64 << i.min(20)).min(30_000) as f64;
        let wait = v["retry_in_ms"].as_u64().expect("retry_in_ms") as f64;
        assert!(
            wait >= base * 0.5 && wait <= (base * 1.25).min(30_000.0),
            "attempt {}: retry in {wait} ms, the documented backoff is about {base} ms",
            i + 1
        );
    }
    // 100 ms doubling: about 9 attempts in 35 s, not a tight loop.
    assert!(
        (6..=12).contains(&attempts.len()),
        "{} attempts in 35 s",
        attempts.len()
    );
    eprintln!(
        "FAULT unreachable: reason on /readyz {:.1}s after the start; /healthz 200 in all {} probes over 35 s; {} attempts, one line each, waits {:?} ms",
        reason_after.as_secs_f64(),
        probes.len(),
        attempts.len(),
        failures.iter().map(|v| v["retry_in_ms"].as_u64().unwrap_or(0)).collect::<Vec<_>>()
    );
}
