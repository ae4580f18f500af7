//! Shared helpers for the producer's integration tests: the real broker,
//! unique names, an in-process producer, an independent reader.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use common::{config::ConfigSource, kafka::KafkaSettings};
use rskafka::{
    client::{
        partition::{OffsetAt, UnknownTopicHandling},
        Client,
    },
    record::RecordAndOffset,
};
use tokio_util::sync::CancellationToken;

/// The test broker's PLAINTEXT address (`make test` starts it).
pub fn bootstrap() -> String {
    let addr =
        std::env::var("KAFKA_TEST_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".to_owned());
    let sock: SocketAddr = addr.parse().expect("KAFKA_TEST_BOOTSTRAP must be IP:PORT");
    if std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)).is_err() {
        panic!(
            "no Kafka broker at {addr}: integration tests need the real broker; \
             start it with `scripts/kafka-local.sh start` (make test does this)"
        );
    }
    addr
}

/// For a bad-input case on one of the two bootstrap spellings
/// (`KAFKA_BOOTSTRAP_SERVER`, `KAFKA_BOOTSTRAP_SERVERS`): takes the singular
/// out of `env`, since it wins whenever it is set, so the value under test is
/// the one read. Other keys are left alone.
pub fn isolate_bootstrap_key(env: &mut BTreeMap<String, String>, key: &str) {
    if key == "KAFKA_BOOTSTRAP_SERVER" || key == "KAFKA_BOOTSTRAP_SERVERS" {
        env.remove("KAFKA_BOOTSTRAP_SERVER");
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A connected rskafka client for checks.
pub async fn client() -> Client {
    KafkaSettings::plaintext(bootstrap(), "producer-tests")
        .connect(Duration::from_secs(20))
        .await
        .expect("connect to the test broker")
}

/// Creates `topic` with `partitions` partitions and waits until it is visible.
pub async fn create_topic(topic: &str, partitions: i32) {
    let c = client().await;
    c.controller_client()
        .expect("controller")
        .create_topic(topic, partitions, 1, 10_000)
        .await
        .expect("create topic");
    for _ in 0..100 {
        let topics = c.list_topics().await.expect("list");
        if topics
            .iter()
            .any(|t| t.name == topic && t.partitions.len() == partitions as usize)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("topic {topic} did not appear");
}

/// Every record of every partition, read directly with rskafka (not through
/// our consumer), by partition.
pub async fn read_all(topic: &str) -> BTreeMap<i32, Vec<RecordAndOffset>> {
    let c = client().await;
    let topics = c.list_topics().await.expect("list");
    let parts = topics
        .into_iter()
        .find(|t| t.name == topic)
        .expect("topic exists")
        .partitions;
    let mut out = BTreeMap::new();
    for p in parts {
        let pc = c
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .expect("partition client");
        let high = pc
            .get_offset(OffsetAt::Latest)
            .await
            .expect("high watermark");
        let mut offset = pc
            .get_offset(OffsetAt::Earliest)
            .await
            .expect("low watermark");
        let mut records = Vec::new();
        while offset < high {
            let (batch, _) = pc
                .fetch_records(offset, 1..10_000_000, 1_000)
                .await
                .expect("fetch");
            for r in batch {
                if r.offset >= offset {
                    offset = r.offset + 1;
                    records.push(r);
                }
            }
        }
        out.insert(p, records);
    }
    out
}

/// A config source for the producer against the test broker.
pub fn source(pairs: &[(&str, &str)]) -> ConfigSource {
    let bootstrap = bootstrap();
    let mut all: Vec<(&str, &str)> = vec![("KAFKA_BOOTSTRAP_SERVER", bootstrap.as_str())];
    all.extend_from_slice(pairs);
    // from_pairs copies the strings, so the borrow of `bootstrap` ends here.
    ConfigSource::from_pairs(all)
}

/// A producer running in-process on an ephemeral port.
pub struct Spawned {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<Result<producer::Summary, producer::ProducerError>>,
}

pub async fn spawn_producer(pairs: &[(&str, &str)]) -> Spawned {
    let config = producer::config::validate(&source(pairs)).expect("valid test config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(producer::run(config, listener, shutdown.clone()));
    Spawned {
        addr,
        shutdown,
        handle,
    }
}

/// GET a path of the sidecar: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("http get");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}
