//! The producer and the consumer in-process, each on an ephemeral sidecar
//! port with its own shutdown token, as `main` would run them; and the
//! configuration sources they are given.

use std::{collections::BTreeMap, future::Future, net::SocketAddr};

use common::{config::ConfigSource, kafka::KafkaSettings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::bootstrap;

/// A service running in-process: its sidecar address, its shutdown token
/// (cancelling it is SIGTERM) and its outcome.
#[derive(Debug)]
pub struct InProcess<T> {
    /// The sidecar's address.
    pub addr: SocketAddr,
    /// Cancel to stop the service as SIGTERM would.
    pub shutdown: CancellationToken,
    /// What `run` returned.
    pub handle: tokio::task::JoinHandle<T>,
}

/// Binds an ephemeral port and spawns `run(listener, shutdown)`.
pub async fn in_process<F, Fut>(run: F) -> InProcess<Fut::Output>
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run(listener, shutdown.clone()));
    InProcess {
        addr,
        shutdown,
        handle,
    }
}

/// A configuration source with the shared broker as bootstrap, then `pairs`.
pub fn source(pairs: &[(&str, &str)]) -> ConfigSource {
    let bootstrap = bootstrap();
    let mut all: Vec<(&str, &str)> = vec![("KAFKA_BOOTSTRAP_SERVER", bootstrap.as_str())];
    all.extend_from_slice(pairs);
    ConfigSource::from_pairs(all)
}

/// `pairs` as `from_pairs` takes them.
pub fn borrowed<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
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

/// The producer's outcome.
pub type ProducerOutcome = Result<producer::Summary, producer::ProducerError>;

/// The producer in-process with `config`.
pub async fn spawn_producer_with(config: ConfigSource) -> InProcess<ProducerOutcome> {
    let config = producer::config::validate(&config).expect("valid producer config");
    in_process(|listener, shutdown| producer::run(config, listener, shutdown)).await
}

/// The producer in-process against the shared broker, with `pairs`.
pub async fn spawn_producer(pairs: &[(&str, &str)]) -> InProcess<ProducerOutcome> {
    spawn_producer_with(source(pairs)).await
}

/// Runs the producer in-process with `config` to its end; fails unless
/// all `n` records are acknowledged.
pub async fn produce_with(config: ConfigSource, n: u64) {
    let p = spawn_producer_with(config).await;
    let summary = p
        .handle
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("produce: {e}"));
    assert_eq!((summary.acked, summary.failed), (n, 0));
}

/// Sends `n` demo records of run `run_id` keyed by `key_template` to an
/// existing `topic` on the shared broker; fails unless all are acknowledged.
pub async fn produce(topic: &str, n: u64, run_id: &str, key_template: &str) {
    let n_text = n.to_string();
    let config = source(&[
        ("KAFKA_TOPIC", topic),
        ("PRODUCER_MESSAGES", &n_text),
        ("PRODUCER_KEY_TEMPLATE", key_template),
        ("PRODUCER_RUN_ID", run_id),
    ]);
    produce_with(config, n).await;
}

/// The consumer's outcome.
pub type ConsumerOutcome = Result<(), consumer::ConsumerError>;

/// The consumer in-process with `config`.
pub async fn spawn_consumer_with(config: ConfigSource) -> InProcess<ConsumerOutcome> {
    let config = consumer::config::validate(&config).expect("valid consumer config");
    in_process(|listener, shutdown| consumer::run(config, listener, shutdown)).await
}

/// Consumer keys that make a test group quick: short session, frequent
/// heartbeats and commits, short fetch waits.
pub fn quick_group(topic: &str, group: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_TOPIC", topic.to_owned()),
        ("KAFKA_CONSUMER_GROUP", group.to_owned()),
        ("CONSUMER_SESSION_TIMEOUT_MS", "6000".to_owned()),
        ("CONSUMER_HEARTBEAT_INTERVAL_MS", "500".to_owned()),
        ("CONSUMER_COMMIT_INTERVAL_MS", "300".to_owned()),
        ("CONSUMER_DRAIN_TIMEOUT_MS", "4000".to_owned()),
        ("CONSUMER_FETCH_MAX_WAIT_MS", "100".to_owned()),
        // These timeouts are the classic protocol's; the consumer
        // protocol's are the broker's.
        ("CONSUMER_GROUP_PROTOCOL", "classic".to_owned()),
    ]
}

/// A consumer in-process on the shared broker, in `group` on `topic`, with
/// [`quick_group`] settings.
pub async fn spawn_consumer(topic: &str, group: &str) -> InProcess<ConsumerOutcome> {
    let pairs = quick_group(topic, group);
    spawn_consumer_with(source(&borrowed(&pairs))).await
}

/// Committed offsets of `group` for partitions `0..partitions` of `topic`
/// (-1 where none), read with our coordinator client over `settings` (the
/// numbers Kafka's consumer-groups tool shows).
pub async fn committed(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<i64> {
    let keys: Vec<(String, i32)> = (0..partitions).map(|p| (topic.to_owned(), p)).collect();
    let r = kafka_group::committed_offsets(
        settings.connection_config().expect("connection"),
        settings.bootstrap.clone(),
        group,
        &keys,
    )
    .await
    .expect("offset fetch");
    keys.iter().map(|k| r[k]).collect()
}
