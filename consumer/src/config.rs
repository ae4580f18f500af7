//! The consumer's configuration: flags over environment over TOML file over
//! defaults, validated in one place ([`validate`]).

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand};
use common::{
    config::{ConfigError, ConfigSource, LogConfig},
    kafka::{KafkaSettings, KAFKA_KEYS},
};

use crate::partition::MIN_FETCH_BYTES;

/// A Kafka consumer-group member: replicas with the same KAFKA_CONSUMER_GROUP
/// split the topic's partitions, log every record as one JSON line, commit
/// offsets of handled records, and rebalance when a replica comes or goes.
///
/// Every option can also be set by the environment variable shown, or in the
/// TOML file named by CONFIG_FILE under the variable's lower-case name. Kafka
/// connection settings (KAFKA_BOOTSTRAP_SERVER, KAFKA_SECURITY_PROTOCOL,
/// KAFKA_SASL_MECHANISM, KAFKA_USERNAME, KAFKA_PASSWORD[_FILE], …) are read
/// from the environment only; see the README.
#[derive(Debug, Parser)]
#[command(name = "consumer", version)]
pub struct Cli {
    /// Subcommand; none means "consume".
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Consume options.
    #[command(flatten)]
    pub opts: ConsumeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe this service's own /healthz (for HEALTHCHECK in a scratch image) and exit 0 if it answers 200.
    Healthcheck {
        /// Address of the sidecar [env: HTTP_ADDR; 0.0.0.0 is probed as 127.0.0.1] [default: 127.0.0.1:8080]
        #[arg(long)]
        addr: Option<String>,
    },
}

/// Flags that override configuration keys; parsed by [`validate`].
#[derive(Debug, Default, Args)]
pub struct ConsumeArgs {
    /// Topic(s) to consume, comma-separated [env: KAFKA_TOPIC] [default: test]
    #[arg(short, long, value_name = "NAME[,NAME…]")]
    pub topic: Option<String>,
    /// Consumer group id (required) [env: KAFKA_CONSUMER_GROUP]
    #[arg(short, long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Static membership id, e.g. the pod name; empty = dynamic membership [env: CONSUMER_GROUP_INSTANCE_ID]
    #[arg(long, value_name = "ID")]
    pub group_instance_id: Option<String>,
    /// Partition assignors offered, in preference order: range, roundrobin [env: CONSUMER_ASSIGNORS] [default: range,roundrobin]
    #[arg(long, value_name = "LIST")]
    pub assignors: Option<String>,
    /// Where to start when the group has no committed offset: earliest or latest [env: CONSUMER_AUTO_OFFSET_RESET] [default: earliest]
    #[arg(long, value_name = "earliest|latest")]
    pub auto_offset_reset: Option<String>,
    /// Session timeout: the coordinator evicts a member silent this long [env: CONSUMER_SESSION_TIMEOUT_MS] [default: 45000]
    #[arg(long, value_name = "MS")]
    pub session_timeout_ms: Option<String>,
    /// Heartbeat interval; must be below the session timeout [env: CONSUMER_HEARTBEAT_INTERVAL_MS] [default: 3000]
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval_ms: Option<String>,
    /// Processing deadline per batch (like max.poll.interval.ms); also the rebalance timeout [env: CONSUMER_MAX_POLL_INTERVAL_MS] [default: 300000]
    #[arg(long, value_name = "MS")]
    pub max_poll_interval_ms: Option<String>,
    /// How often handled offsets are committed [env: CONSUMER_COMMIT_INTERVAL_MS] [default: 5000]
    #[arg(long, value_name = "MS")]
    pub commit_interval_ms: Option<String>,
    /// Time allowed on SIGTERM to finish records in flight, commit and leave; must be below the session timeout [env: CONSUMER_DRAIN_TIMEOUT_MS] [default: 10000]
    #[arg(long, value_name = "MS")]
    pub drain_timeout_ms: Option<String>,
    /// Most bytes fetched per partition and request [env: CONSUMER_FETCH_MAX_BYTES] [default: 1048576]
    #[arg(long, value_name = "BYTES")]
    pub fetch_max_bytes: Option<String>,
    /// How long the broker may hold a fetch waiting for data [env: CONSUMER_FETCH_MAX_WAIT_MS] [default: 500]
    #[arg(long, value_name = "MS")]
    pub fetch_max_wait_ms: Option<String>,
    /// Fetched batches buffered per partition ahead of the handler [env: CONSUMER_BUFFER_BATCHES] [default: 2]
    #[arg(long, value_name = "N")]
    pub buffer_batches: Option<String>,
    /// Memory budget for fetched records not yet handled, split over the assigned partitions: each fetches at most budget / partitions / (buffer batches + 2) bytes, at least 64 KiB, at most --fetch-max-bytes [env: CONSUMER_BUFFER_MAX_BYTES] [default: 8388608]
    #[arg(long, value_name = "BYTES")]
    pub buffer_max_bytes: Option<String>,
    /// Most bytes one fetch may decode (decompress) to per partition, a fixed overhead per record included; a record batch that alone decodes to more stalls its partition (a decompression bomb, or data that needs a higher limit) [env: CONSUMER_DECODED_BATCH_MAX_BYTES] [default: 33554432]
    #[arg(long, value_name = "BYTES")]
    pub decoded_batch_max_bytes: Option<String>,
    /// Longest value logged per record, in bytes; longer values are cut [env: CONSUMER_LOG_VALUE_MAX_BYTES] [default: 1024]
    #[arg(long, value_name = "BYTES")]
    pub log_value_max_bytes: Option<String>,
    /// A partition with lag that makes no progress this long makes /readyz fail [env: CONSUMER_STALL_SECS] [default: 60]
    #[arg(long, value_name = "SECS")]
    pub stall_secs: Option<String>,
    /// How often subscribed topics' partition counts are checked; a new topic or partition triggers a rebalance (like metadata.max.age.ms) [env: CONSUMER_METADATA_REFRESH_MS] [default: 10000]
    #[arg(long, value_name = "MS")]
    pub metadata_refresh_ms: Option<String>,
    /// Address of the /healthz, /readyz, /metrics server [env: HTTP_ADDR] [default: 0.0.0.0:8080]
    #[arg(long, value_name = "IP:PORT")]
    pub http_addr: Option<String>,
}

impl ConsumeArgs {
    /// `(KEY, --flag, value)` for every flag given.
    pub fn flags(&self) -> Vec<(&'static str, &'static str, String)> {
        let pairs: [(&'static str, &'static str, &Option<String>); 19] = [
            ("KAFKA_TOPIC", "--topic", &self.topic),
            ("KAFKA_CONSUMER_GROUP", "--group", &self.group),
            (
                "CONSUMER_GROUP_INSTANCE_ID",
                "--group-instance-id",
                &self.group_instance_id,
            ),
            ("CONSUMER_ASSIGNORS", "--assignors", &self.assignors),
            (
                "CONSUMER_AUTO_OFFSET_RESET",
                "--auto-offset-reset",
                &self.auto_offset_reset,
            ),
            (
                "CONSUMER_SESSION_TIMEOUT_MS",
                "--session-timeout-ms",
                &self.session_timeout_ms,
            ),
            (
                "CONSUMER_HEARTBEAT_INTERVAL_MS",
                "--heartbeat-interval-ms",
                &self.heartbeat_interval_ms,
            ),
            (
                "CONSUMER_MAX_POLL_INTERVAL_MS",
                "--max-poll-interval-ms",
                &self.max_poll_interval_ms,
            ),
            (
                "CONSUMER_COMMIT_INTERVAL_MS",
                "--commit-interval-ms",
                &self.commit_interval_ms,
            ),
            (
                "CONSUMER_DRAIN_TIMEOUT_MS",
                "--drain-timeout-ms",
                &self.drain_timeout_ms,
            ),
            (
                "CONSUMER_FETCH_MAX_BYTES",
                "--fetch-max-bytes",
                &self.fetch_max_bytes,
            ),
            (
                "CONSUMER_FETCH_MAX_WAIT_MS",
                "--fetch-max-wait-ms",
                &self.fetch_max_wait_ms,
            ),
            (
                "CONSUMER_BUFFER_BATCHES",
                "--buffer-batches",
                &self.buffer_batches,
            ),
            (
                "CONSUMER_BUFFER_MAX_BYTES",
                "--buffer-max-bytes",
                &self.buffer_max_bytes,
            ),
            (
                "CONSUMER_DECODED_BATCH_MAX_BYTES",
                "--decoded-batch-max-bytes",
                &self.decoded_batch_max_bytes,
            ),
            (
                "CONSUMER_LOG_VALUE_MAX_BYTES",
                "--log-value-max-bytes",
                &self.log_value_max_bytes,
            ),
            ("CONSUMER_STALL_SECS", "--stall-secs", &self.stall_secs),
            (
                "CONSUMER_METADATA_REFRESH_MS",
                "--metadata-refresh-ms",
                &self.metadata_refresh_ms,
            ),
            ("HTTP_ADDR", "--http-addr", &self.http_addr),
        ];
        pairs
            .into_iter()
            .filter_map(|(k, f, v)| v.as_ref().map(|v| (k, f, v.clone())))
            .collect()
    }
}

/// Default of `CONSUMER_DECODED_BATCH_MAX_BYTES`: 32 MiB, the broker's
/// default largest batch (`message.max.bytes`, 1 MiB) decoding to 32 times
/// its size. Real data compresses 2–20× (the demo records 20× with lz4); a
/// decompression bomb compresses 1 000× (gzip) to beyond 10 000× (zstd). A
/// decoding holds at most about twice this (zstd's window included) per
/// runtime thread, which keeps the Deployment within its 128 MiB limit.
pub const DEFAULT_DECODED_BATCH_MAX_BYTES: u64 = 32 * 1_048_576;

/// Keys of the consumer (besides [`KAFKA_KEYS`]).
pub const CONSUMER_KEYS: &[&str] = &[
    "KAFKA_TOPIC",
    "KAFKA_CONSUMER_GROUP",
    "CONSUMER_GROUP_INSTANCE_ID",
    "CONSUMER_ASSIGNORS",
    "CONSUMER_AUTO_OFFSET_RESET",
    "CONSUMER_SESSION_TIMEOUT_MS",
    "CONSUMER_HEARTBEAT_INTERVAL_MS",
    "CONSUMER_MAX_POLL_INTERVAL_MS",
    "CONSUMER_COMMIT_INTERVAL_MS",
    "CONSUMER_DRAIN_TIMEOUT_MS",
    "CONSUMER_FETCH_MAX_BYTES",
    "CONSUMER_FETCH_MAX_WAIT_MS",
    "CONSUMER_BUFFER_BATCHES",
    "CONSUMER_BUFFER_MAX_BYTES",
    "CONSUMER_DECODED_BATCH_MAX_BYTES",
    "CONSUMER_LOG_VALUE_MAX_BYTES",
    "CONSUMER_STALL_SECS",
    "CONSUMER_METADATA_REFRESH_MS",
    "HTTP_ADDR",
    "LOG_FORMAT",
    "RUST_LOG",
    "DEBUG",
];

/// Every key the consumer reads.
pub fn all_keys() -> Vec<&'static str> {
    KAFKA_KEYS.iter().chain(CONSUMER_KEYS).copied().collect()
}

/// Where to start without a committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The oldest record still kept.
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// The validated consumer configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connection settings.
    pub kafka: KafkaSettings,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// `KAFKA_CONSUMER_GROUP`.
    pub group: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Assignor names in preference order.
    pub assignors: Vec<String>,
    /// Start position without a commit.
    pub auto_offset_reset: OffsetReset,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Processing deadline and rebalance timeout.
    pub max_poll_interval: Duration,
    /// Commit interval.
    pub commit_interval: Duration,
    /// Drain timeout on shutdown.
    pub drain_timeout: Duration,
    /// Fetch size per partition request.
    pub fetch_max_bytes: i32,
    /// Fetch wait.
    pub fetch_max_wait: Duration,
    /// Batches buffered per partition.
    pub buffer_batches: usize,
    /// Budget for fetched, not yet handled records over all partitions; see
    /// [`crate::partition::fetch_bytes_per_partition`].
    pub buffer_max_bytes: u64,
    /// Most bytes one fetch of a partition may decode to; see
    /// [`DEFAULT_DECODED_BATCH_MAX_BYTES`].
    pub decoded_batch_max_bytes: usize,
    /// Longest logged value.
    pub log_value_max_bytes: usize,
    /// Readiness stall window.
    pub stall_after: Duration,
    /// Partition-count check interval.
    pub metadata_refresh: Duration,
    /// Sidecar address.
    pub http_addr: SocketAddr,
    /// Logging.
    pub log: LogConfig,
}

/// Validates every key; the first problem is returned as one line.
pub fn validate(src: &ConfigSource) -> Result<Config, ConfigError> {
    let kafka = KafkaSettings::from_source(src, "kafka-consumer")?;
    let topics: Vec<String> = src
        .string("KAFKA_TOPIC", "test")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let topic_ok = |t: &str| {
        t.len() <= 249
            && t != "."
            && t != ".."
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    if topics.is_empty() || !topics.iter().all(|t| topic_ok(t)) {
        return Err(src.invalid(
            "KAFKA_TOPIC",
            "not a comma-separated list of valid Kafka topic names",
            "names of 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-'",
        ));
    }
    let group = src.required(
        "KAFKA_CONSUMER_GROUP",
        "replicas that share a group id split the partitions; set KAFKA_CONSUMER_GROUP (or --group)",
    )?;
    let group_instance_id = src.optional("CONSUMER_GROUP_INSTANCE_ID");
    if group_instance_id.as_ref().is_some_and(|id| id.len() > 249) {
        return Err(src.invalid(
            "CONSUMER_GROUP_INSTANCE_ID",
            "too long",
            "up to 249 characters, e.g. the pod name",
        ));
    }
    let assignors: Vec<String> = src
        .string("CONSUMER_ASSIGNORS", "range,roundrobin")
        .split(',')
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect();
    if assignors.is_empty()
        || assignors
            .iter()
            .any(|a| common::group::assignor::assignor_by_name(a).is_none())
    {
        return Err(src.invalid(
            "CONSUMER_ASSIGNORS",
            "unknown assignor",
            "a comma-separated list of range, roundrobin",
        ));
    }
    let auto_offset_reset = src.choice(
        "CONSUMER_AUTO_OFFSET_RESET",
        OffsetReset::Earliest,
        &[
            ("earliest", OffsetReset::Earliest),
            ("latest", OffsetReset::Latest),
        ],
    )?;
    // The broker's default group.min/max.session.timeout.ms are 6 s and 30 min;
    // the local test broker allows 1 s.
    let session_timeout = src.millis("CONSUMER_SESSION_TIMEOUT_MS", 45_000, 1_000..=1_800_000)?;
    let heartbeat_interval = src.millis("CONSUMER_HEARTBEAT_INTERVAL_MS", 3_000, 100..=600_000)?;
    if heartbeat_interval >= session_timeout {
        return Err(src.invalid(
            "CONSUMER_HEARTBEAT_INTERVAL_MS",
            format!(
                "not below the session timeout ({} ms)",
                session_timeout.as_millis()
            ),
            "a value below CONSUMER_SESSION_TIMEOUT_MS, typically a third of it",
        ));
    }
    let drain_timeout = src.millis("CONSUMER_DRAIN_TIMEOUT_MS", 10_000, 100..=600_000)?;
    if drain_timeout >= session_timeout {
        return Err(src.invalid(
            "CONSUMER_DRAIN_TIMEOUT_MS",
            format!("not below the session timeout ({} ms)", session_timeout.as_millis()),
            "a value below CONSUMER_SESSION_TIMEOUT_MS, so the group has not evicted us before we commit",
        ));
    }
    Ok(Config {
        kafka,
        topics,
        group,
        group_instance_id,
        assignors,
        auto_offset_reset,
        session_timeout,
        heartbeat_interval,
        max_poll_interval: src.millis(
            "CONSUMER_MAX_POLL_INTERVAL_MS",
            300_000,
            1_000..=3_600_000,
        )?,
        commit_interval: src.millis("CONSUMER_COMMIT_INTERVAL_MS", 5_000, 10..=3_600_000)?,
        drain_timeout,
        fetch_max_bytes: src.number(
            "CONSUMER_FETCH_MAX_BYTES",
            1_048_576i32,
            1_024..=104_857_600,
        )?,
        fetch_max_wait: src.millis("CONSUMER_FETCH_MAX_WAIT_MS", 500, 0..=30_000)?,
        buffer_batches: src.number("CONSUMER_BUFFER_BATCHES", 2u64, 1..=64)? as usize,
        buffer_max_bytes: src.number(
            "CONSUMER_BUFFER_MAX_BYTES",
            8_388_608u64,
            MIN_FETCH_BYTES as u64..=17_179_869_184,
        )?,
        decoded_batch_max_bytes: src.number(
            "CONSUMER_DECODED_BATCH_MAX_BYTES",
            DEFAULT_DECODED_BATCH_MAX_BYTES,
            1_048_576..=17_179_869_184,
        )? as usize,
        log_value_max_bytes: src.number("CONSUMER_LOG_VALUE_MAX_BYTES", 1_024u64, 0..=10_485_760)?
            as usize,
        stall_after: Duration::from_secs(src.number("CONSUMER_STALL_SECS", 60u64, 1..=86_400)?),
        metadata_refresh: src.millis("CONSUMER_METADATA_REFRESH_MS", 10_000, 100..=3_600_000)?,
        http_addr: src.socket_addr("HTTP_ADDR", "0.0.0.0:8080")?,
        log: LogConfig::from_source(src)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        validate(&ConfigSource::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn the_prototype_configmap_works() {
        let c = cfg(&[
            ("DEBUG", "False"),
            ("KAFKA_TOPIC", "test"),
            ("KAFKA_BOOTSTRAP_SERVER", "kafka:9092"),
            ("KAFKA_CONSUMER_GROUP", "admin"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_USERNAME", "admin"),
            ("KAFKA_PASSWORD", "admin"),
        ])
        .expect("valid");
        assert_eq!(c.topics, vec!["test"]);
        assert_eq!(c.group, "admin");
        assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(c.assignors, vec!["range", "roundrobin"]);
    }

    #[test]
    fn the_buffer_budget_defaults_to_8_mib_and_has_a_floor() {
        let c = cfg(&[("KAFKA_CONSUMER_GROUP", "g")]).expect("valid");
        assert_eq!(c.buffer_max_bytes, 8_388_608);
        let c = cfg(&[
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("CONSUMER_BUFFER_MAX_BYTES", "16_777_216"),
        ])
        .expect("valid");
        assert_eq!(c.buffer_max_bytes, 16_777_216);
        for bad in ["65535", "0", "8M", "-1"] {
            let e = cfg(&[
                ("KAFKA_CONSUMER_GROUP", "g"),
                ("CONSUMER_BUFFER_MAX_BYTES", bad),
            ])
            .expect_err(bad)
            .to_string();
            assert!(
                e.contains("CONSUMER_BUFFER_MAX_BYTES")
                    && e.contains("a whole number from 65536")
                    && !e.contains('\n'),
                "{e}"
            );
        }
        let flags = ConsumeArgs {
            buffer_max_bytes: Some("1".into()),
            ..ConsumeArgs::default()
        }
        .flags();
        assert_eq!(
            flags,
            vec![(
                "CONSUMER_BUFFER_MAX_BYTES",
                "--buffer-max-bytes",
                "1".into()
            )]
        );
        assert!(CONSUMER_KEYS.contains(&"CONSUMER_BUFFER_MAX_BYTES"));
    }

    #[test]
    fn the_decoded_batch_limit_defaults_to_32_mib_and_is_bounded() {
        let c = cfg(&[("KAFKA_CONSUMER_GROUP", "g")]).expect("valid");
        assert_eq!(c.decoded_batch_max_bytes, 33_554_432);
        let c = cfg(&[
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("CONSUMER_DECODED_BATCH_MAX_BYTES", "268435456"),
        ])
        .expect("valid");
        assert_eq!(c.decoded_batch_max_bytes, 268_435_456);
        for bad in ["1048575", "0", "17179869185", "32M"] {
            let e = cfg(&[
                ("KAFKA_CONSUMER_GROUP", "g"),
                ("CONSUMER_DECODED_BATCH_MAX_BYTES", bad),
            ])
            .expect_err(bad)
            .to_string();
            assert!(
                e.contains("CONSUMER_DECODED_BATCH_MAX_BYTES")
                    && e.contains("a whole number from 1048576")
                    && !e.contains('\n'),
                "{e}"
            );
        }
        let flags = ConsumeArgs {
            decoded_batch_max_bytes: Some("1".into()),
            ..ConsumeArgs::default()
        }
        .flags();
        assert_eq!(
            flags,
            vec![(
                "CONSUMER_DECODED_BATCH_MAX_BYTES",
                "--decoded-batch-max-bytes",
                "1".into()
            )]
        );
        assert!(CONSUMER_KEYS.contains(&"CONSUMER_DECODED_BATCH_MAX_BYTES"));
    }

    #[test]
    fn group_is_required_and_timeouts_are_consistent() {
        let e = cfg(&[]).expect_err("no group").to_string();
        assert!(e.contains("KAFKA_CONSUMER_GROUP is required"), "{e}");
        let e = cfg(&[
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("CONSUMER_SESSION_TIMEOUT_MS", "10000"),
            ("CONSUMER_DRAIN_TIMEOUT_MS", "10000"),
        ])
        .expect_err("drain >= session")
        .to_string();
        assert!(
            e.contains("CONSUMER_DRAIN_TIMEOUT_MS")
                && e.contains("below CONSUMER_SESSION_TIMEOUT_MS"),
            "{e}"
        );
        let e = cfg(&[
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("CONSUMER_SESSION_TIMEOUT_MS", "6000"),
            ("CONSUMER_HEARTBEAT_INTERVAL_MS", "6000"),
            ("CONSUMER_DRAIN_TIMEOUT_MS", "1000"),
        ])
        .expect_err("heartbeat >= session")
        .to_string();
        assert!(e.contains("CONSUMER_HEARTBEAT_INTERVAL_MS"), "{e}");
        let e = cfg(&[
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("CONSUMER_ASSIGNORS", "sticky"),
        ])
        .expect_err("assignor")
        .to_string();
        assert!(e.contains("range, roundrobin"), "{e}");
        let e = cfg(&[
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("CONSUMER_AUTO_OFFSET_RESET", "none"),
        ])
        .expect_err("reset")
        .to_string();
        assert!(e.contains("earliest, latest"), "{e}");
    }
}
