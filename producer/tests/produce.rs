//! The producer against the real broker, in-process.

use std::{collections::BTreeSet, time::Duration};

use producer::{partitioner::partition_for_key, payload::DemoRecord, ProducerError};
use testkit::{
    broker::{create_topic, read_all},
    scrape::http_get,
    services::spawn_producer,
    unique,
};

#[tokio::test]
async fn sends_exactly_n_keyed_records_to_the_partitions_java_would_pick() {
    let topic = unique("produce-keyed");
    let n = 300u64;
    let p = spawn_producer(&[
        ("KAFKA_TOPIC", &topic),
        ("PRODUCER_MESSAGES", &n.to_string()),
        ("PRODUCER_KEY_TEMPLATE", "key-{seq % 8}"),
        ("PRODUCER_CREATE_TOPIC", "true"),
        ("PRODUCER_TOPIC_PARTITIONS", "3"),
        ("PRODUCER_RUN_ID", "run-keyed"),
        ("PRODUCER_TIMEOUT_SECS", "60"),
    ])
    .await;
    let summary = p.handle.await.expect("join").expect("all acknowledged");
    assert_eq!((summary.records, summary.acked, summary.failed), (n, n, 0));
    assert!(summary.ack_p50 <= summary.ack_p99 && summary.ack_p99 <= summary.ack_max);

    let by_partition = read_all(&topic).await;
    assert_eq!(by_partition.len(), 3);
    let mut seqs = BTreeSet::new();
    let mut total = 0;
    for (partition, records) in &by_partition {
        for r in records {
            total += 1;
            let key = r.record.key.clone().expect("keyed");
            assert_eq!(
                partition_for_key(&key, 3),
                *partition,
                "key {:?}",
                String::from_utf8_lossy(&key)
            );
            let demo: DemoRecord =
                serde_json::from_slice(r.record.value.as_deref().expect("value"))
                    .expect("demo record");
            assert_eq!(demo.run_id, "run-keyed");
            assert_eq!(key, format!("key-{}", demo.seq % 8).into_bytes());
            assert_eq!(r.record.value.as_ref().map(Vec::len), Some(256));
            assert!(seqs.insert(demo.seq), "duplicate seq {}", demo.seq);
        }
        // Within a partition, seq increases with the offset (order preserved).
        let in_order: Vec<u64> = records
            .iter()
            .map(|r| {
                serde_json::from_slice::<DemoRecord>(r.record.value.as_deref().unwrap_or_default())
                    .map(|d| d.seq)
                    .unwrap_or(0)
            })
            .collect();
        assert!(
            in_order.windows(2).all(|w| w[0] < w[1]),
            "partition {partition} out of order"
        );
    }
    assert_eq!(total, n);
    assert_eq!(seqs, (0..n).collect::<BTreeSet<_>>());
}

#[tokio::test]
async fn keyless_records_spread_over_all_partitions_with_compression() {
    let topic = unique("produce-spread");
    create_topic(&topic, 4).await;
    let p = spawn_producer(&[
        ("KAFKA_TOPIC", &topic),
        ("PRODUCER_MESSAGES", "400"),
        ("PRODUCER_COMPRESSION", "zstd"),
        ("PRODUCER_RECORD_SIZE", "1024"),
    ])
    .await;
    let summary = p.handle.await.expect("join").expect("all acknowledged");
    assert_eq!(summary.acked, 400);
    let by_partition = read_all(&topic).await;
    let counts: Vec<usize> = by_partition.values().map(Vec::len).collect();
    assert_eq!(counts, vec![100, 100, 100, 100]);
}

#[tokio::test]
async fn sidecar_answers_during_the_run_with_the_expected_counters() {
    let topic = unique("produce-sidecar");
    create_topic(&topic, 2).await;
    // 60 records at 40/s take 1.5 s; the grace period keeps /metrics up after.
    let p = spawn_producer(&[
        ("KAFKA_TOPIC", &topic),
        ("PRODUCER_MESSAGES", "60"),
        ("PRODUCER_RATE", "40"),
        ("PRODUCER_METRICS_GRACE_SECS", "3"),
    ])
    .await;

    let mut saw_ready = false;
    for _ in 0..100 {
        assert_eq!(http_get(p.addr, "/healthz").await.0, 200);
        if http_get(p.addr, "/readyz").await.0 == 200 {
            saw_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_ready, "/readyz never became 200 while sending");

    // After the last ack, during the grace period, the counters are complete.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = http_get(p.addr, "/metrics").await.1;
        if metrics.contains(&format!(
            "kafka_producer_records_sent_total{{topic=\"{topic}\"}} 60"
        )) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.contains(&format!(
            "kafka_producer_records_sent_total{{topic=\"{topic}\"}} 60"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "kafka_producer_bytes_sent_total{{topic=\"{topic}\"}} {}",
            60 * 256
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "kafka_producer_ack_latency_seconds_count{{topic=\"{topic}\"}} 60"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("kafka_producer_ack_latency_seconds_bucket{"),
        "histogram with buckets: {metrics}"
    );
    assert!(
        metrics.contains("# TYPE kafka_producer_ack_latency_seconds histogram"),
        "{metrics}"
    );

    let summary = p.handle.await.expect("join").expect("all acknowledged");
    assert_eq!(summary.acked, 60);
    // Rate limited: 60 records at 40/s cannot finish in under ~1.4 s.
    assert!(
        summary.elapsed >= Duration::from_millis(1400),
        "{:?}",
        summary.elapsed
    );
}

#[tokio::test]
async fn unknown_topic_is_a_clear_error_without_create_topic() {
    let topic = unique("produce-missing");
    let p = spawn_producer(&[("KAFKA_TOPIC", &topic), ("PRODUCER_TIMEOUT_SECS", "20")]).await;
    let err = p.handle.await.expect("join").expect_err("must fail");
    assert!(matches!(err, ProducerError::TopicMissing { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&topic) && msg.contains("--create-topic"),
        "{msg}"
    );
}

#[tokio::test]
async fn sigterm_equivalent_stops_sending_and_reports_counts() {
    let topic = unique("produce-cancel");
    create_topic(&topic, 1).await;
    let p = spawn_producer(&[
        ("KAFKA_TOPIC", &topic),
        ("PRODUCER_MESSAGES", "1000"),
        ("PRODUCER_RATE", "100"),
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.shutdown.cancel();
    let started = std::time::Instant::now();
    let err = p.handle.await.expect("join").expect_err("stopped early");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "drain is bounded"
    );
    match err {
        ProducerError::Incomplete {
            acked,
            not_acked,
            summary,
            ..
        } => {
            assert!(acked > 0 && acked < 1000, "acked {acked}");
            assert_eq!(acked + not_acked, 1000);
            // What was acknowledged is really in the topic.
            let in_topic: usize = read_all(&topic).await.values().map(Vec::len).sum();
            assert_eq!(in_topic as u64, summary.acked);
        }
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn input_file_records_are_sent_with_keys_from_a_field() {
    let topic = unique("produce-input");
    create_topic(&topic, 3).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("in.jsonl");
    let lines: Vec<String> = (0..30)
        .map(|i| format!("{{\"id\": {i}, \"user\": \"u{}\"}}", i % 5))
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n\n").expect("write");
    let p = spawn_producer(&[
        ("KAFKA_TOPIC", &topic),
        ("PRODUCER_INPUT", path.to_str().expect("utf8")),
        ("PRODUCER_KEY_FIELD", "user"),
    ])
    .await;
    let summary = p.handle.await.expect("join").expect("all acknowledged");
    assert_eq!(summary.acked, 30);
    let mut ids = BTreeSet::new();
    for (partition, records) in read_all(&topic).await {
        for r in records {
            let key = r.record.key.expect("key");
            assert_eq!(partition_for_key(&key, 3), partition);
            let v: serde_json::Value =
                serde_json::from_slice(&r.record.value.expect("value")).expect("json");
            assert_eq!(
                key,
                format!("u{}", v["id"].as_u64().expect("id") % 5).into_bytes()
            );
            ids.insert(v["id"].as_u64().expect("id"));
        }
    }
    assert_eq!(ids, (0..30).collect());
}
