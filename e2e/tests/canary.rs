//! The continuous canary end to end, for tens of seconds on the shared
//! broker: `producer --continuous` and a consumer group that verifies its
//! records, through a member joining (rebalance), a member leaving (the
//! other resumes from committed offsets: redeliveries) and a producer
//! restart (a new run). Nothing may be counted lost or duplicated; then
//! records written with a real gap and a real duplicate must be counted
//! exactly. The README's canary metric table must match the scrape.

use std::time::Duration;

use testkit::{
    broker::{create_topic, produce_canary},
    scrape::{families, http_get, metric, readme_metric_table, sum},
    services::{borrowed, quick_group, source, spawn_consumer_with, spawn_producer, InProcess},
    unique,
};

const PARTITIONS: i32 = 3;

async fn consumer(topic: &str, group: &str) -> InProcess<testkit::services::ConsumerOutcome> {
    let mut pairs = quick_group(topic, group);
    pairs.push(("CANARY_LOSS_WINDOW_SECS", "2".to_owned()));
    spawn_consumer_with(source(&borrowed(&pairs))).await
}

/// Runs the canary producer for `secs` with `extra` keys, stops it as
/// SIGTERM would, and returns how many records it had acknowledged.
async fn canary_run(topic: &str, secs: u64, extra: &[(&str, &str)]) -> u64 {
    let mut keys = vec![
        ("KAFKA_TOPIC", topic),
        ("PRODUCER_CONTINUOUS", "true"),
        ("PRODUCER_RATE", "60"),
    ];
    keys.extend_from_slice(extra);
    let p = spawn_producer(&keys).await;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    p.shutdown.cancel();
    let s = p
        .handle
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("canary producer: {e}"));
    assert_eq!(s.failed, 0, "{s:?}");
    assert!(s.acked > 0 && s.acked == s.records, "{s:?}");
    s.acked
}

/// Polls `addr`'s /metrics until `pred` holds (30 s at most).
async fn metrics_until(
    addr: std::net::SocketAddr,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let mut body = String::new();
    for _ in 0..300 {
        body = http_get(addr, "/metrics").await.1;
        if pred(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} not reached within 30 s:\n{body}");
}

#[tokio::test]
async fn the_canary_counts_nothing_lost_or_duplicated_through_rebalances_and_restarts_and_counts_real_ones_exactly(
) {
    let topic = unique("canary");
    let group = unique("g-canary");
    let t = format!("topic=\"{topic}\"");
    create_topic(&topic, PARTITIONS).await;
    let a = consumer(&topic, &group).await;

    // Run 1, with a second member joining halfway.
    let run1 = tokio::spawn({
        let topic = topic.clone();
        async move { canary_run(&topic, 10, &[]).await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let b = consumer(&topic, &group).await;
    let acked1 = run1.await.expect("join");
    // Run 2 (a producer restart), with the first member leaving halfway:
    // the second one takes its partitions from the committed offsets. It
    // places the topic too: on one broker that is already done (every
    // replica on it, it leads all), so nothing moves, and the placement
    // metrics show no action and no error.
    let run2 = tokio::spawn({
        let topic = topic.clone();
        async move {
            canary_run(
                &topic,
                8,
                &[
                    ("CANARY_TOPIC_BALANCE", "true"),
                    ("CANARY_RECONCILE_INTERVAL_MS", "1000"),
                ],
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    a.shutdown.cancel();
    a.handle.await.expect("join").expect("clean stop");
    let acked2 = run2.await.expect("join");
    let acked = acked1 + acked2;

    // Everything read at least once, and the loss windows passed.
    metrics_until(b.addr, "every canary record received", |m| {
        sum(m, "kafka_canary_records_received_total", &[&t]) >= acked as f64
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let body = http_get(b.addr, "/metrics").await.1;
    let lost = sum(&body, "kafka_canary_records_lost_total", &[&t]);
    let duplicated = sum(&body, "kafka_canary_records_duplicated_total", &[&t]);
    let missing = sum(&body, "kafka_canary_records_missing", &[&t]);
    assert_eq!(
        (lost, duplicated, missing),
        (0.0, 0.0, 0.0),
        "lost, duplicated, missing after {acked} acked records:\n{body}"
    );
    assert_eq!(
        sum(&body, "kafka_canary_produce_acks_total", &[&t]),
        acked as f64
    );
    // Leadership as the producer's metadata reads saw it: one broker,
    // leading every partition, never changing; placement did nothing.
    assert_eq!(
        metric(&body, "kafka_canary_brokers", &[]),
        Some(1.0),
        "{body}"
    );
    let leaders: Vec<Option<f64>> = (0..PARTITIONS)
        .map(|p| {
            let part = format!("partition=\"{p}\"");
            metric(&body, "kafka_canary_partition_leader", &[&t, &part])
        })
        .collect();
    assert!(
        leaders
            .iter()
            .all(|l| l.is_some_and(|l| l >= 0.0) && *l == leaders[0]),
        "{leaders:?}"
    );
    assert_eq!(sum(&body, "kafka_canary_leader_changes_total", &[&t]), 0.0);
    assert_eq!(sum(&body, "kafka_canary_reassignments_total", &[&t]), 0.0);
    assert_eq!(
        sum(&body, "kafka_canary_placement_errors_total", &[&t]),
        0.0
    );
    // Caught up: every partition's oldest unhandled record is none.
    for p in 0..PARTITIONS {
        let part = format!("partition=\"{p}\"");
        assert_eq!(
            metric(&body, "kafka_consumergroup_lag_seconds", &[&t, &part]),
            Some(0.0),
            "lag seconds of partition {p}:\n{body}"
        );
    }

    // A real gap (pseq 3 and 4 never written) and a real duplicate (pseq 1
    // twice in the log) must be counted exactly: 2 lost, 1 duplicated.
    produce_canary(&topic, 0, "injected", &[0, 1, 2, 5, 6, 1]).await;
    let body = metrics_until(b.addr, "the injected gap counted lost", |m| {
        sum(m, "kafka_canary_records_lost_total", &[&t]) >= 2.0
    })
    .await;
    assert_eq!(
        (
            sum(&body, "kafka_canary_records_lost_total", &[&t]),
            sum(&body, "kafka_canary_records_duplicated_total", &[&t])
        ),
        (2.0, 1.0),
        "{body}"
    );

    // The README's canary table against this scrape (producer and consumer
    // share the process, so both sides' metrics are in it).
    let table = readme_metric_table("## Canary metrics");
    assert!(table.len() >= 10, "README canary table parsed: {table:?}");
    let scraped = families(&body);
    for (name, (kind, labels)) in &table {
        let (got_kind, got_labels) = scraped
            .get(name)
            .unwrap_or_else(|| panic!("{name} is in the README canary table but not exported"));
        assert_eq!((got_kind, got_labels), (kind, labels), "{name}");
    }
    for name in scraped.keys().filter(|n| n.starts_with("kafka_canary_")) {
        assert!(
            table.contains_key(name),
            "{name} is exported but missing from the README canary table"
        );
    }

    b.shutdown.cancel();
    b.handle.await.expect("join").expect("clean stop");
}
