//! The README's metric table and a live scrape of running services agree:
//! same names, types and label keys, nothing missing on either side.

#[path = "../../producer/tests/support/mod.rs"]
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use common::config::ConfigSource;
use support::*;
use tokio_util::sync::CancellationToken;

/// name → (type, label keys), from the README's `## Metrics` table.
fn readme_table() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .expect("a ## Metrics section");
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            let kind = cells[2].to_owned();
            let labels = cells[3]
                .split(',')
                .map(|x| x.trim().trim_matches('`').to_owned())
                .filter(|x| !x.is_empty())
                .collect();
            (name, (kind, labels))
        })
        .collect()
}

/// name → (type, label keys of its samples), from Prometheus text output.
fn scrape_families(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut out: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                out.entry(name.to_owned()).or_default().0 = kind.to_owned();
            }
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, _) = line.rsplit_once(' ').unwrap_or((line, ""));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| out.get(*f).is_some_and(|(k, _)| k == "histogram"))
            })
            .unwrap_or(name);
        let keys: BTreeSet<String> = labels
            .split("\",")
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.trim().to_owned()))
            .filter(|k| k != "le" && !k.is_empty())
            .collect();
        out.entry(family.to_owned()).or_default().1.extend(keys);
    }
    out
}

#[tokio::test]
async fn readme_table_matches_a_live_scrape() {
    let topic = unique("metrics-table");
    let group = unique("g-metrics-table");
    create_topic(&topic, 2).await;
    let bootstrap = bootstrap();
    let config = consumer::config::validate(&ConfigSource::from_pairs([
        ("KAFKA_BOOTSTRAP_SERVER", bootstrap.as_str()),
        ("KAFKA_TOPIC", topic.as_str()),
        ("KAFKA_CONSUMER_GROUP", group.as_str()),
        ("CONSUMER_SESSION_TIMEOUT_MS", "6000"),
        ("CONSUMER_DRAIN_TIMEOUT_MS", "3000"),
        ("CONSUMER_COMMIT_INTERVAL_MS", "200"),
    ]))
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(consumer::run(config, listener, shutdown.clone()));

    let p = spawn_producer(&[("KAFKA_TOPIC", &topic), ("PRODUCER_MESSAGES", "40")]).await;
    assert_eq!(p.handle.await.expect("join").expect("produced").acked, 40);

    // Until records were handled, committed and the lag computed.
    let mut text = String::new();
    for _ in 0..100 {
        text = get(addr, "/metrics").await.1;
        if text.contains("kafka_consumergroup_lag{")
            && text.contains("kafka_consumer_commit_latency_seconds_count")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    consumer.await.expect("join").expect("clean stop");

    let table = readme_table();
    assert!(table.len() >= 15, "README table parsed: {table:?}");
    let scraped: BTreeMap<String, (String, BTreeSet<String>)> = scrape_families(&text)
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
