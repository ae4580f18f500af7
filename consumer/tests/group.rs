//! The consumer as a group member against the real broker, in-process.

use std::{collections::BTreeSet, time::Duration};

use common::kafka::KafkaSettings;
use testkit::{
    broker::{bootstrap, create_topic, read_all},
    scrape::{consumed, http_get, wait_consumed},
    services::{self, spawn_consumer},
    unique,
};

/// Sends `n` demo records of run `run_id`, keyed by `seq % 8`.
async fn produce(topic: &str, n: u64, run_id: &str) {
    services::produce(topic, n, run_id, "key-{seq % 8}").await;
}

/// Committed offsets per partition on the shared broker.
async fn committed(topic: &str, group: &str, partitions: i32) -> Vec<i64> {
    let settings = KafkaSettings::plaintext(bootstrap(), "test-reader");
    services::committed(&settings, group, topic, partitions).await
}

#[tokio::test]
async fn one_consumer_receives_exactly_what_was_produced_and_commits_it() {
    let topic = unique("cons-one");
    let group = unique("g-one");
    create_topic(&topic, 3).await;
    produce(&topic, 120, "run-one").await;

    let c = spawn_consumer(&topic, &group).await;
    assert_eq!(
        wait_consumed(c.addr, &topic, 120, Duration::from_secs(30)).await,
        120
    );
    // Ready once stable with partitions and caught up.
    let mut ready = false;
    for _ in 0..50 {
        if http_get(c.addr, "/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/readyz never 200");
    let (_, metrics) = http_get(c.addr, "/metrics").await;
    assert!(
        metrics.contains(&format!(
            "kafka_consumer_demo_duplicates_total{{topic=\"{topic}\"}} 0"
        )),
        "no demo record was seen twice"
    );

    // SIGTERM equivalent: commit and leave, cleanly.
    c.shutdown.cancel();
    c.handle.await.expect("join").expect("clean shutdown");
    let offsets = committed(&topic, &group, 3).await;
    let by_partition = read_all(&topic).await;
    let ends: Vec<i64> = (0..3)
        .map(|p| by_partition.get(&p).map_or(0, |r| r.len() as i64))
        .collect();
    assert_eq!(offsets, ends, "committed offsets = log end offsets (lag 0)");
}

#[tokio::test]
async fn restart_resumes_at_the_committed_offset_without_redelivery() {
    let topic = unique("cons-restart");
    let group = unique("g-restart");
    create_topic(&topic, 2).await;
    produce(&topic, 50, "run-a").await;

    let c = spawn_consumer(&topic, &group).await;
    assert_eq!(
        wait_consumed(c.addr, &topic, 50, Duration::from_secs(30)).await,
        50
    );
    c.shutdown.cancel();
    c.handle.await.expect("join").expect("clean shutdown");

    produce(&topic, 30, "run-b").await;
    // The metrics registry is process-wide: count from the current total.
    let c2 = spawn_consumer(&topic, &group).await;
    let before = 50;
    let n = wait_consumed(c2.addr, &topic, before + 30, Duration::from_secs(30)).await;
    // Give a redelivery (if any) time to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let n_after = consumed(c2.addr, &topic).await;
    assert_eq!(
        (n, n_after),
        (80, 80),
        "only the 30 new records were delivered again"
    );
    c2.shutdown.cancel();
    c2.handle.await.expect("join").expect("clean shutdown");
    assert_eq!(committed(&topic, &group, 2).await.iter().sum::<i64>(), 80);
}

#[tokio::test]
async fn two_consumers_split_partitions_and_survive_one_leaving() {
    let topic = unique("cons-split");
    let group = unique("g-split");
    create_topic(&topic, 4).await;
    let a = spawn_consumer(&topic, &group).await;
    let b = spawn_consumer(&topic, &group).await;
    // Let both join one generation before producing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    produce(&topic, 200, "run-split").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let total = consumed(a.addr, &topic).await; // same registry: covers both
        if total >= 200 || tokio::time::Instant::now() > deadline {
            assert_eq!(total, 200);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One leaves (LeaveGroup); the other takes over all partitions at once.
    b.shutdown.cancel();
    b.handle.await.expect("join").expect("clean shutdown");
    produce(&topic, 100, "run-split-2").await;
    assert_eq!(
        wait_consumed(a.addr, &topic, 300, Duration::from_secs(20)).await,
        300
    );
    a.shutdown.cancel();
    a.handle.await.expect("join").expect("clean shutdown");
    let offsets: BTreeSet<i64> = committed(&topic, &group, 4).await.into_iter().collect();
    assert!(
        !offsets.contains(&-1),
        "every partition committed: {offsets:?}"
    );
}
