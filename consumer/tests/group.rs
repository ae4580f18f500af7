//! The consumer as a group member against the real broker, in-process.

#[path = "../../producer/tests/support/mod.rs"]
mod support;

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use common::config::ConfigSource;
use support::*;
use tokio_util::sync::CancellationToken;

struct Consumer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), consumer::ConsumerError>>,
}

async fn spawn_consumer(topic: &str, group: &str) -> Consumer {
    let bootstrap = bootstrap();
    let config = consumer::config::validate(&ConfigSource::from_pairs([
        ("KAFKA_BOOTSTRAP_SERVER", bootstrap.as_str()),
        ("KAFKA_TOPIC", topic),
        ("KAFKA_CONSUMER_GROUP", group),
        ("CONSUMER_SESSION_TIMEOUT_MS", "6000"),
        ("CONSUMER_HEARTBEAT_INTERVAL_MS", "500"),
        ("CONSUMER_COMMIT_INTERVAL_MS", "300"),
        ("CONSUMER_DRAIN_TIMEOUT_MS", "4000"),
        ("CONSUMER_FETCH_MAX_WAIT_MS", "100"),
    ]))
    .expect("valid consumer config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(consumer::run(config, listener, shutdown.clone()));
    Consumer {
        addr,
        shutdown,
        handle,
    }
}

/// The consumer's `kafka_consumer_records_consumed_total` for `topic`, summed.
async fn consumed(addr: SocketAddr, topic: &str) -> u64 {
    let (_, body) = get(addr, "/metrics").await;
    body.lines()
        .filter(|l| {
            l.starts_with("kafka_consumer_records_consumed_total{")
                && l.contains(&format!("topic=\"{topic}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn wait_consumed(addr: SocketAddr, topic: &str, want: u64, within: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n = consumed(addr, topic).await;
        if n >= want || tokio::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn produce(topic: &str, n: u64, run_id: &str) {
    let p = spawn_producer(&[
        ("KAFKA_TOPIC", topic),
        ("PRODUCER_MESSAGES", &n.to_string()),
        ("PRODUCER_KEY_TEMPLATE", "key-{seq % 8}"),
        ("PRODUCER_RUN_ID", run_id),
    ])
    .await;
    let s = p.handle.await.expect("join").expect("produced");
    assert_eq!(s.acked, n);
}

/// Committed offsets per partition, read with our coordinator client (the
/// same numbers Kafka's consumer-groups tool shows).
async fn committed(topic: &str, group: &str, partitions: i32) -> Vec<i64> {
    let settings = common::kafka::KafkaSettings::plaintext(bootstrap(), "test-reader");
    let mut client =
        common::group::coordinator::CoordinatorClient::from_settings(&settings, group, None)
            .expect("client");
    let tps = vec![common::group::protocol::TopicPartitions::new(
        topic,
        (0..partitions).collect::<Vec<_>>(),
    )];
    let r = client.offset_fetch(&tps).await.expect("offset fetch");
    (0..partitions)
        .map(|p| {
            r.offsets
                .get(&(topic.to_owned(), p))
                .map_or(-1, |o| o.offset)
        })
        .collect()
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
        if get(c.addr, "/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/readyz never 200");
    let (_, metrics) = get(c.addr, "/metrics").await;
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
