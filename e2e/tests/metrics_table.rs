//! The README's metric table and a live scrape of running services agree:
//! same names, types and label keys, nothing missing on either side.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use testkit::{
    broker::create_topic,
    scrape::{families, http_get, readme_metric_table},
    services::{source, spawn_consumer_with, spawn_producer},
    unique,
};

#[tokio::test]
async fn readme_table_matches_a_live_scrape() {
    let topic = unique("metrics-table");
    let group = unique("g-metrics-table");
    create_topic(&topic, 2).await;
    let consumer = spawn_consumer_with(source(&[
        ("KAFKA_TOPIC", topic.as_str()),
        ("KAFKA_CONSUMER_GROUP", group.as_str()),
        ("CONSUMER_SESSION_TIMEOUT_MS", "6000"),
        ("CONSUMER_DRAIN_TIMEOUT_MS", "3000"),
        ("CONSUMER_COMMIT_INTERVAL_MS", "200"),
    ]))
    .await;

    let p = spawn_producer(&[("KAFKA_TOPIC", &topic), ("PRODUCER_MESSAGES", "40")]).await;
    assert_eq!(p.handle.await.expect("join").expect("produced").acked, 40);

    // Until records were handled, committed and the lag computed.
    let mut text = String::new();
    for _ in 0..100 {
        text = http_get(consumer.addr, "/metrics").await.1;
        if text.contains("kafka_consumergroup_lag{")
            && text.contains("kafka_consumer_commit_latency_seconds_count")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.shutdown.cancel();
    consumer.handle.await.expect("join").expect("clean stop");

    let table = readme_metric_table("## Metrics");
    assert!(table.len() >= 15, "README table parsed: {table:?}");
    let scraped: BTreeMap<String, (String, BTreeSet<String>)> = families(&text)
        .into_iter()
        .filter(|(name, _)| name.starts_with("kafka_"))
        .collect();
    for (name, (kind, labels)) in &table {
        let (got_kind, got_labels) = scraped
            .get(name)
            .unwrap_or_else(|| panic!("{name} is in the README table but not exported:\n{text}"));
        assert_eq!(got_kind, kind, "{name}: type");
        assert_eq!(got_labels, labels, "{name}: label keys");
    }
    for name in scraped.keys() {
        assert!(
            table.contains_key(name),
            "{name} is exported but missing from the README table"
        );
    }
}
