//! The consumer's configuration: flags over environment over TOML file over
//! defaults, validated in one place ([`validate`]).

use std::{net::SocketAddr, time::Duration};

use crate::canary::CanarySettings;
use common::{
    config::{ConfigError, ConfigSource, LogConfig},
    kafka::KafkaSettings,
    keys::{self as common_keys, Key, ServiceKeys},
};
use kafka_group::session::GroupProtocol;

/// What `consumer --help` says first.
const ABOUT: &str = "A Kafka consumer-group member: replicas with the same \
KAFKA_CONSUMER_GROUP split the topic's partitions, log every record as one JSON line, commit \
offsets of handled records, and rebalance when a replica comes or goes.";

/// The consumer's own keys, each declared once; [`KEYS`] lists them.
mod keys {
    use common::keys::{number, Allowed, Key};

    /// `KAFKA_TOPIC`.
    pub const TOPIC: Key = Key::new(
        "KAFKA_TOPIC",
        Allowed::Text,
        "topic(s) to consume, comma-separated; names of 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-'",
    )
    .flag("--topic", "NAME[,NAME…]")
    .short('t')
    .default("test");
    /// `KAFKA_CONSUMER_GROUP`.
    pub const GROUP: Key = Key::new(
        "KAFKA_CONSUMER_GROUP",
        Allowed::Text,
        "consumer group id; replicas that share it split the partitions",
    )
    .flag("--group", "GROUP")
    .short('g')
    .default_doc("required");
    /// `CONSUMER_GROUP_INSTANCE_ID`.
    pub const GROUP_INSTANCE_ID: Key = Key::new(
        "CONSUMER_GROUP_INSTANCE_ID",
        Allowed::Text,
        "static membership id, e.g. the pod name, up to 249 characters; empty = dynamic membership",
    )
    .flag("--group-instance-id", "ID")
    .default_doc("none");
    /// `CONSUMER_ASSIGNORS`.
    pub const ASSIGNORS: Key = Key::new(
        "CONSUMER_ASSIGNORS",
        Allowed::Text,
        "partition assignors offered, in preference order: a comma-separated list of range, roundrobin, sticky, cooperative-sticky (alone: incremental rebalances, KIP-429; listed with others: eager, the first step of a rolling upgrade)",
    )
    .flag("--assignors", "LIST")
    .default("range,roundrobin");
    /// `CONSUMER_GROUP_PROTOCOL`.
    pub const GROUP_PROTOCOL: Key = Key::new(
        "CONSUMER_GROUP_PROTOCOL",
        Allowed::Choice(&["classic", "consumer"]),
        "group protocol (Java's group.protocol): classic (JoinGroup, every broker) or consumer (KIP-848, Kafka 4.0+)",
    )
    .flag("--group-protocol", "classic|consumer")
    .default_doc("consumer when the coordinator offers ConsumerGroupHeartbeat, else classic");
    /// `CONSUMER_GROUP_REMOTE_ASSIGNOR`.
    pub const GROUP_REMOTE_ASSIGNOR: Key = Key::new(
        "CONSUMER_GROUP_REMOTE_ASSIGNOR",
        Allowed::Choice(&["uniform", "range"]),
        "the broker-side assignor of the consumer protocol (Java's group.remote.assignor)",
    )
    .flag("--group-remote-assignor", "uniform|range")
    .default_doc("the broker's default");
    /// `CONSUMER_AUTO_OFFSET_RESET`.
    pub const AUTO_OFFSET_RESET: Key = Key::new(
        "CONSUMER_AUTO_OFFSET_RESET",
        Allowed::Choice(&["earliest", "latest"]),
        "where to start when the group has no committed offset",
    )
    .flag("--auto-offset-reset", "earliest|latest")
    .default("earliest");
    /// `CONSUMER_SESSION_TIMEOUT_MS`.
    pub const SESSION_TIMEOUT_MS: Key = Key::new(
        "CONSUMER_SESSION_TIMEOUT_MS",
        // The broker's default group.min/max.session.timeout.ms are 6 s and
        // 30 min; the local test broker allows 1 s.
        number(1_000, 1_800_000),
        "session timeout: the coordinator evicts a member silent this long, in ms",
    )
    .flag("--session-timeout-ms", "MS")
    .default("45000");
    /// `CONSUMER_HEARTBEAT_INTERVAL_MS`.
    pub const HEARTBEAT_INTERVAL_MS: Key = Key::new(
        "CONSUMER_HEARTBEAT_INTERVAL_MS",
        number(100, 600_000),
        "heartbeat interval, in ms; below the session timeout",
    )
    .flag("--heartbeat-interval-ms", "MS")
    .default("3000");
    /// `CONSUMER_MAX_POLL_INTERVAL_MS`.
    pub const MAX_POLL_INTERVAL_MS: Key = Key::new(
        "CONSUMER_MAX_POLL_INTERVAL_MS",
        number(1_000, 3_600_000),
        "processing deadline per batch (like max.poll.interval.ms), also the rebalance timeout, in ms",
    )
    .flag("--max-poll-interval-ms", "MS")
    .default("300000");
    /// `CONSUMER_COMMIT_INTERVAL_MS`.
    pub const COMMIT_INTERVAL_MS: Key = Key::new(
        "CONSUMER_COMMIT_INTERVAL_MS",
        number(10, 3_600_000),
        "how often handled offsets are committed, in ms",
    )
    .flag("--commit-interval-ms", "MS")
    .default("5000");
    /// `CONSUMER_COMMIT_MAX_RECORDS`.
    pub const COMMIT_MAX_RECORDS: Key = Key::new(
        "CONSUMER_COMMIT_MAX_RECORDS",
        number(0, 1_000_000_000),
        "also commit once this many records were handled since the last commit, so a crash re-delivers about that many at most; 0 = by interval only",
    )
    .flag("--commit-max-records", "N")
    .default("10000");
    /// `CONSUMER_DRAIN_TIMEOUT_MS`.
    pub const DRAIN_TIMEOUT_MS: Key = Key::new(
        "CONSUMER_DRAIN_TIMEOUT_MS",
        number(100, 600_000),
        "time allowed on SIGTERM to finish records in flight, commit and leave, in ms; below the session timeout",
    )
    .flag("--drain-timeout-ms", "MS")
    .default("10000");
    /// `CONSUMER_FETCH_MAX_BYTES`.
    pub const FETCH_MAX_BYTES: Key = Key::new(
        "CONSUMER_FETCH_MAX_BYTES",
        number(1_024, 104_857_600),
        "most bytes fetched per partition and request",
    )
    .flag("--fetch-max-bytes", "BYTES")
    .default("1048576");
    /// `CONSUMER_FETCH_MAX_WAIT_MS`.
    pub const FETCH_MAX_WAIT_MS: Key = Key::new(
        "CONSUMER_FETCH_MAX_WAIT_MS",
        number(0, 30_000),
        "how long the broker may hold a fetch waiting for data, in ms",
    )
    .flag("--fetch-max-wait-ms", "MS")
    .default("500");
    /// `CONSUMER_BUFFER_BATCHES`.
    pub const BUFFER_BATCHES: Key = Key::new(
        "CONSUMER_BUFFER_BATCHES",
        number(1, 64),
        "fetched batches buffered per partition ahead of the handler",
    )
    .flag("--buffer-batches", "N")
    .default("2");
    /// `CONSUMER_BUFFER_MAX_BYTES`.
    pub const BUFFER_MAX_BYTES: Key = Key::new(
        "CONSUMER_BUFFER_MAX_BYTES",
        number(super::MIN_FETCH_BYTES as i64, 17_179_869_184),
        "memory budget for fetched records not yet handled (decoded size), split over the assigned partitions: each fetches at most budget / partitions / (buffer batches + 2) bytes, at least 64 KiB, at most the fetch size",
    )
    .flag("--buffer-max-bytes", "BYTES")
    .default("8388608");
    /// `CONSUMER_DECODED_BATCH_MAX_BYTES`. The default, 32 MiB, is the
    /// broker's default largest batch (`message.max.bytes`, 1 MiB) decoding
    /// to 32 times its size. Real data compresses 2–20× (the demo records 20×
    /// with lz4); a decompression bomb compresses 1 000× (gzip) to beyond
    /// 10 000× (zstd). A decoding holds at most about twice this (zstd's
    /// window included) per runtime thread, which keeps the Deployment within
    /// its 128 MiB limit.
    pub const DECODED_BATCH_MAX_BYTES: Key = Key::new(
        "CONSUMER_DECODED_BATCH_MAX_BYTES",
        number(1_048_576, 17_179_869_184),
        "most bytes one fetch of a partition may decode (decompress) to, about 100 bytes per record included; a record batch that alone decodes to more stalls its partition (a decompression bomb, or data that needs a higher limit)",
    )
    .flag("--decoded-batch-max-bytes", "BYTES")
    .default("33554432");
    /// `CONSUMER_LOG_VALUE_MAX_BYTES`.
    pub const LOG_VALUE_MAX_BYTES: Key = Key::new(
        "CONSUMER_LOG_VALUE_MAX_BYTES",
        number(0, 10_485_760),
        "longest value logged per record, in bytes; longer values are cut",
    )
    .flag("--log-value-max-bytes", "BYTES")
    .default("1024");
    /// `CONSUMER_STALL_SECS`.
    pub const STALL_SECS: Key = Key::new(
        "CONSUMER_STALL_SECS",
        number(1, 86_400),
        "a partition with lag that makes no progress this many seconds makes /readyz fail",
    )
    .flag("--stall-secs", "SECS")
    .default("60");
    /// `CONSUMER_METADATA_REFRESH_MS`.
    pub const METADATA_REFRESH_MS: Key = Key::new(
        "CONSUMER_METADATA_REFRESH_MS",
        number(100, 3_600_000),
        "how often the subscribed topics' partition counts are checked (like metadata.max.age.ms), in ms; a new topic or partition triggers a rebalance",
    )
    .flag("--metadata-refresh-ms", "MS")
    .default("10000");
    /// `CANARY_LOSS_WINDOW_SECS`.
    pub const CANARY_LOSS_WINDOW_SECS: Key = Key::new(
        "CANARY_LOSS_WINDOW_SECS",
        number(1, 86_400),
        "canary records (producer --continuous): a sequence gap not filled within this many seconds of producer time counts as lost",
    )
    .flag("--canary-loss-window-secs", "SECS")
    .default("120");
    /// `CANARY_LATENCY_SLO_MS`.
    pub const CANARY_LATENCY_SLO_MS: Key = Key::new(
        "CANARY_LATENCY_SLO_MS",
        number(1, 3_600_000),
        "a canary record handled later than this many ms after its sent_at counts as late, against kafka_canary_e2e_availability",
    )
    .flag("--canary-latency-slo-ms", "MS")
    .default("5000");
    /// `CANARY_AVAILABILITY_WINDOW_SECS`.
    pub const CANARY_AVAILABILITY_WINDOW_SECS: Key = Key::new(
        "CANARY_AVAILABILITY_WINDOW_SECS",
        number(60, 86_400),
        "window of the kafka_canary_e2e_availability gauge, in seconds",
    )
    .flag("--canary-availability-window-secs", "SECS")
    .default("300");
}

/// The smallest fetch size the partition workers choose (also the smallest
/// `CONSUMER_BUFFER_MAX_BYTES`): smaller fetches would mostly cost round
/// trips. Declared here, with the key it bounds, so `partition` depends on
/// `config` and not the other way round.
pub const MIN_FETCH_BYTES: i32 = 65_536;

/// The consumer's own keys (besides [`common_keys::KAFKA`] and
/// [`common_keys::SERVICE`]), in `--help` and README order.
pub const KEYS: &[Key] = &[
    keys::TOPIC,
    keys::GROUP,
    keys::GROUP_INSTANCE_ID,
    keys::ASSIGNORS,
    keys::GROUP_PROTOCOL,
    keys::GROUP_REMOTE_ASSIGNOR,
    keys::AUTO_OFFSET_RESET,
    keys::SESSION_TIMEOUT_MS,
    keys::HEARTBEAT_INTERVAL_MS,
    keys::MAX_POLL_INTERVAL_MS,
    keys::COMMIT_INTERVAL_MS,
    keys::COMMIT_MAX_RECORDS,
    keys::DRAIN_TIMEOUT_MS,
    keys::FETCH_MAX_BYTES,
    keys::FETCH_MAX_WAIT_MS,
    keys::BUFFER_BATCHES,
    keys::BUFFER_MAX_BYTES,
    keys::DECODED_BATCH_MAX_BYTES,
    keys::LOG_VALUE_MAX_BYTES,
    keys::STALL_SECS,
    keys::METADATA_REFRESH_MS,
    keys::CANARY_LOSS_WINDOW_SECS,
    keys::CANARY_LATENCY_SLO_MS,
    keys::CANARY_AVAILABILITY_WINDOW_SECS,
];

/// The consumer's keys and command line.
pub const SERVICE: ServiceKeys = ServiceKeys::new("consumer", ABOUT, KEYS);

/// Every key the consumer reads: the Kafka keys, its own, the service keys.
pub fn all_keys() -> Vec<&'static str> {
    SERVICE.names()
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
    /// The group protocol (`Auto` when unset).
    pub group_protocol: GroupProtocol,
    /// The consumer protocol's server-side assignor; `None`: the broker's.
    pub remote_assignor: Option<String>,
    /// The keys set here that only the classic protocol uses (the consumer
    /// protocol takes them from the broker): the group session warns once,
    /// naming them, when the protocol it runs is the consumer protocol.
    pub classic_only_keys: Vec<&'static str>,
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
    /// Commit after this many handled records too (0 = off).
    pub commit_max_records: u64,
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
    /// Most bytes one fetch of a partition may decode to
    /// (`CONSUMER_DECODED_BATCH_MAX_BYTES`).
    pub decoded_batch_max_bytes: usize,
    /// Longest logged value.
    pub log_value_max_bytes: usize,
    /// Readiness stall window.
    pub stall_after: Duration,
    /// Partition-count check interval.
    pub metadata_refresh: Duration,
    /// Verification of the continuous producer's canary records.
    pub canary: CanarySettings,
    /// Sidecar address.
    pub http_addr: SocketAddr,
    /// Logging.
    pub log: LogConfig,
}

/// Validates every key; the first problem is returned as one line.
pub fn validate(src: &ConfigSource) -> Result<Config, ConfigError> {
    let kafka = KafkaSettings::from_source(src, "kafka-consumer")?;
    let topics: Vec<String> = src
        .text(&keys::TOPIC)
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
            keys::TOPIC.env,
            "not a comma-separated list of valid Kafka topic names",
            "names of 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-'",
        ));
    }
    let group = src.required(
        keys::GROUP.env,
        "replicas that share a group id split the partitions; set KAFKA_CONSUMER_GROUP (or --group)",
    )?;
    let group_instance_id = src.optional(keys::GROUP_INSTANCE_ID.env);
    if group_instance_id.as_ref().is_some_and(|id| id.len() > 249) {
        return Err(src.invalid(
            keys::GROUP_INSTANCE_ID.env,
            "too long",
            "up to 249 characters, e.g. the pod name",
        ));
    }
    let assignors: Vec<String> = src
        .text(&keys::ASSIGNORS)
        .split(',')
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect();
    if assignors.is_empty() || assignors.iter().any(|a| !kafka_group::is_known_assignor(a)) {
        return Err(src.invalid(
            keys::ASSIGNORS.env,
            "unknown assignor",
            "a comma-separated list of range, roundrobin, sticky, cooperative-sticky",
        ));
    }
    let group_protocol = src.choice(
        keys::GROUP_PROTOCOL.env,
        GroupProtocol::Auto,
        &[
            ("classic", GroupProtocol::Classic),
            ("consumer", GroupProtocol::Consumer),
        ],
    )?;
    let remote_assignor = src
        .choice(
            keys::GROUP_REMOTE_ASSIGNOR.env,
            None,
            &[("uniform", Some("uniform")), ("range", Some("range"))],
        )?
        .map(str::to_owned);
    // As Java's group.protocol=consumer: the session timeout, heartbeat
    // interval and assignors are the broker's (group.consumer.*) and
    // CONSUMER_GROUP_REMOTE_ASSIGNOR's there.
    let classic_only_keys: Vec<&'static str> = [
        &keys::SESSION_TIMEOUT_MS,
        &keys::HEARTBEAT_INTERVAL_MS,
        &keys::ASSIGNORS,
    ]
    .into_iter()
    .filter(|k| src.raw(k.env).is_some())
    .map(|k| k.env)
    .collect();
    let auto_offset_reset = src.pick(
        &keys::AUTO_OFFSET_RESET,
        &[OffsetReset::Earliest, OffsetReset::Latest],
    )?;
    let session_timeout = src.ms(&keys::SESSION_TIMEOUT_MS)?;
    let heartbeat_interval = src.ms(&keys::HEARTBEAT_INTERVAL_MS)?;
    if heartbeat_interval >= session_timeout {
        return Err(src.invalid(
            keys::HEARTBEAT_INTERVAL_MS.env,
            format!(
                "not below the session timeout ({} ms)",
                session_timeout.as_millis()
            ),
            "a value below CONSUMER_SESSION_TIMEOUT_MS, typically a third of it",
        ));
    }
    let drain_timeout = src.ms(&keys::DRAIN_TIMEOUT_MS)?;
    if drain_timeout >= session_timeout {
        return Err(src.invalid(
            keys::DRAIN_TIMEOUT_MS.env,
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
        group_protocol,
        remote_assignor,
        classic_only_keys,
        auto_offset_reset,
        session_timeout,
        heartbeat_interval,
        max_poll_interval: src.ms(&keys::MAX_POLL_INTERVAL_MS)?,
        commit_interval: src.ms(&keys::COMMIT_INTERVAL_MS)?,
        commit_max_records: src.num(&keys::COMMIT_MAX_RECORDS)?,
        drain_timeout,
        fetch_max_bytes: src.num(&keys::FETCH_MAX_BYTES)?,
        fetch_max_wait: src.ms(&keys::FETCH_MAX_WAIT_MS)?,
        buffer_batches: src.num(&keys::BUFFER_BATCHES)?,
        buffer_max_bytes: src.num(&keys::BUFFER_MAX_BYTES)?,
        decoded_batch_max_bytes: src.num(&keys::DECODED_BATCH_MAX_BYTES)?,
        log_value_max_bytes: src.num(&keys::LOG_VALUE_MAX_BYTES)?,
        stall_after: src.secs(&keys::STALL_SECS)?,
        metadata_refresh: src.ms(&keys::METADATA_REFRESH_MS)?,
        canary: CanarySettings {
            loss_window: src.secs(&keys::CANARY_LOSS_WINDOW_SECS)?,
            latency_slo: src.ms(&keys::CANARY_LATENCY_SLO_MS)?,
            availability_window: src.secs(&keys::CANARY_AVAILABILITY_WINDOW_SECS)?,
        },
        http_addr: src.addr(&common_keys::HTTP_ADDR)?,
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
        let matches = SERVICE
            .command()
            .try_get_matches_from(["consumer", "--buffer-max-bytes", "1"])
            .expect("parse");
        assert_eq!(
            common_keys::Invocation::from_matches(&matches, &SERVICE.keys()),
            common_keys::Invocation::Run(vec![(
                "CONSUMER_BUFFER_MAX_BYTES",
                "--buffer-max-bytes",
                "1".into()
            )])
        );
        assert!(all_keys().contains(&"CONSUMER_BUFFER_MAX_BYTES"));
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
        let matches = SERVICE
            .command()
            .try_get_matches_from(["consumer", "--decoded-batch-max-bytes", "1"])
            .expect("parse");
        assert_eq!(
            common_keys::Invocation::from_matches(&matches, &SERVICE.keys()),
            common_keys::Invocation::Run(vec![(
                "CONSUMER_DECODED_BATCH_MAX_BYTES",
                "--decoded-batch-max-bytes",
                "1".into()
            )])
        );
        assert!(all_keys().contains(&"CONSUMER_DECODED_BATCH_MAX_BYTES"));
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
            ("CONSUMER_ASSIGNORS", "range,cooperative"),
        ])
        .expect_err("assignor")
        .to_string();
        assert!(
            e.contains("range, roundrobin, sticky, cooperative-sticky"),
            "{e}"
        );
        let e = cfg(&[
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("CONSUMER_AUTO_OFFSET_RESET", "none"),
        ])
        .expect_err("reset")
        .to_string();
        assert!(e.contains("earliest, latest"), "{e}");
    }

    #[test]
    fn group_protocol_defaults_to_what_the_broker_offers() {
        let c = cfg(&[("KAFKA_CONSUMER_GROUP", "g")]).expect("valid");
        assert_eq!(c.group_protocol, GroupProtocol::Auto);
        assert_eq!(c.remote_assignor, None, "the broker's default assignor");
        let c = cfg(&[
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("CONSUMER_GROUP_PROTOCOL", "Consumer"),
            ("CONSUMER_GROUP_REMOTE_ASSIGNOR", "range"),
        ])
        .expect("valid");
        assert_eq!(c.group_protocol, GroupProtocol::Consumer);
        assert_eq!(c.remote_assignor.as_deref(), Some("range"));
        let c = cfg(&[
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("CONSUMER_GROUP_PROTOCOL", "classic"),
        ])
        .expect("valid");
        assert_eq!(c.group_protocol, GroupProtocol::Classic);
        assert!(c.classic_only_keys.is_empty(), "{:?}", c.classic_only_keys);
        let c = cfg(&[
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("CONSUMER_SESSION_TIMEOUT_MS", "20000"),
            ("CONSUMER_ASSIGNORS", "range"),
            ("CONSUMER_COMMIT_INTERVAL_MS", "1000"),
        ])
        .expect("valid");
        assert_eq!(
            c.classic_only_keys,
            ["CONSUMER_SESSION_TIMEOUT_MS", "CONSUMER_ASSIGNORS"],
            "set keys the consumer protocol does not use, and only those"
        );
        for (key, value, allowed) in [
            ("CONSUMER_GROUP_PROTOCOL", "eager", "classic, consumer"),
            ("CONSUMER_GROUP_REMOTE_ASSIGNOR", "sticky", "uniform, range"),
        ] {
            let e = cfg(&[("KAFKA_CONSUMER_GROUP", "g"), (key, value)])
                .expect_err("unknown value")
                .to_string();
            assert!(e.contains(key) && e.contains(allowed), "{e}");
        }
    }
}
