//! The producer's configuration: command-line flags over environment over
//! TOML file over defaults, validated in one place ([`validate`]).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use common::{
    config::{ConfigError, ConfigSource, LogConfig},
    kafka::KafkaSettings,
    keys::{self as common_keys, Key, ServiceKeys},
};
use rskafka::client::partition::Compression;

use crate::payload::KeyTemplate;

/// What `producer --help` says first.
const ABOUT: &str = "Publishes N records to a Kafka topic, waits until the broker has \
acknowledged every one (acks=all), prints a summary and exits: 0 when all were acknowledged, \
1 when not, 2 for a configuration error.";

/// The producer's own keys, each declared once; [`KEYS`] lists them.
mod keys {
    use common::keys::{number, Allowed, Key};

    /// `KAFKA_TOPIC`.
    pub const TOPIC: Key = Key::new(
        "KAFKA_TOPIC",
        Allowed::Text,
        "topic to publish to: 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-'",
    )
    .flag("--topic", "NAME")
    .short('t')
    .default("test");
    /// `KAFKA_CONSUMER_GROUP`: the consumer's key.
    pub const CONSUMER_GROUP: Key = Key::new(
        "KAFKA_CONSUMER_GROUP",
        Allowed::Text,
        "the consumer's group id, ignored by the producer; accepted so one file or ConfigMap serves both",
    );
    /// `PRODUCER_MESSAGES`.
    pub const MESSAGES: Key = Key::new(
        "PRODUCER_MESSAGES",
        number(1, 1_000_000_000),
        "number of demo records to publish",
    )
    .flag("--messages", "N")
    .short('n')
    .default("20");
    /// `PRODUCER_RECORD_SIZE`.
    pub const RECORD_SIZE: Key = Key::new(
        "PRODUCER_RECORD_SIZE",
        number(crate::payload::MIN_RECORD_SIZE as i64, MAX_BATCH),
        "size in bytes of each demo record's JSON value, at most the batch size",
    )
    .flag("--record-size", "BYTES")
    .default("256");
    /// `PRODUCER_KEY_TEMPLATE`.
    pub const KEY_TEMPLATE: Key = Key::new(
        "PRODUCER_KEY_TEMPLATE",
        Allowed::Text,
        "key per record: text with the placeholders {seq}, {seq % N} and {run_id}; empty = no key",
    )
    .flag("--key-template", "TEMPLATE")
    .default_doc("none");
    /// `PRODUCER_INPUT`.
    pub const INPUT: Key = Key::new(
        "PRODUCER_INPUT",
        Allowed::Text,
        "read records from FILE (or - for stdin), one JSON value per line, instead of demo records",
    )
    .flag("--input", "FILE|-");
    /// `PRODUCER_KEY_FIELD`.
    pub const KEY_FIELD: Key = Key::new(
        "PRODUCER_KEY_FIELD",
        Allowed::Text,
        "with --input: take each record's key from this top-level field of the JSON object",
    )
    .flag("--key-field", "FIELD");
    /// `PRODUCER_RUN_ID`.
    pub const RUN_ID: Key = Key::new(
        "PRODUCER_RUN_ID",
        Allowed::Text,
        "run id written into demo records: up to 128 printable characters",
    )
    .flag("--run-id", "ID")
    .default_doc("a random UUID");
    /// `PRODUCER_LINGER_MS`.
    pub const LINGER_MS: Key = Key::new(
        "PRODUCER_LINGER_MS",
        number(0, 60_000),
        "how long a partition's batch waits for more records before it is sent, in ms",
    )
    .flag("--linger-ms", "MS")
    .default("5");
    /// `PRODUCER_MAX_BATCH_BYTES`.
    pub const MAX_BATCH_BYTES: Key = Key::new(
        "PRODUCER_MAX_BATCH_BYTES",
        number(1024, MAX_BATCH),
        "largest batch per produce request, in bytes (at most the broker's default message.max.bytes)",
    )
    .flag("--max-batch-bytes", "BYTES")
    .default("524288");
    /// `PRODUCER_MAX_IN_FLIGHT`.
    pub const MAX_IN_FLIGHT: Key = Key::new(
        "PRODUCER_MAX_IN_FLIGHT",
        number(1, 1_000_000),
        "most records handed over and not yet acknowledged at once (librdkafka's default too; for small records the byte bound binds first)",
    )
    .flag("--max-in-flight", "N")
    .default("100000");
    /// `PRODUCER_MAX_IN_FLIGHT_BYTES`.
    pub const MAX_IN_FLIGHT_BYTES: Key = Key::new(
        "PRODUCER_MAX_IN_FLIGHT_BYTES",
        number(65_536, 1 << 30),
        "most key+value+header bytes handed over and not yet acknowledged at once; with the record bound it caps the producer's memory",
    )
    .flag("--max-in-flight-bytes", "BYTES")
    .default("4194304");
    /// `PRODUCER_COMPRESSION`.
    pub const COMPRESSION: Key = Key::new(
        "PRODUCER_COMPRESSION",
        Allowed::Choice(&["none", "gzip", "snappy", "lz4", "zstd"]),
        "compression codec of the batches",
    )
    .flag("--compression", "CODEC")
    .default("none");
    /// `PRODUCER_IDEMPOTENCE`.
    pub const IDEMPOTENCE: Key = Key::new(
        "PRODUCER_IDEMPOTENCE",
        Allowed::Bool,
        "idempotent producer (KIP-98, Kafka's default since 3.0): a batch sent again is written once; \
         with SASL the user needs IDEMPOTENT_WRITE on the cluster or WRITE on the topic (Kafka 2.8+)",
    )
    .flag("--idempotence", "BOOL")
    .default("true");
    /// `PRODUCER_RATE`.
    pub const RATE: Key = Key::new(
        "PRODUCER_RATE",
        number(0, 10_000_000),
        "records per second; 0 = as fast as possible",
    )
    .flag("--rate", "PER_SEC")
    .default("0");
    /// `PRODUCER_CONTINUOUS`.
    pub const CONTINUOUS: Key = Key::new(
        "PRODUCER_CONTINUOUS",
        Allowed::Bool,
        "canary mode: send canary records to every partition at PRODUCER_RATE until SIGTERM (a Deployment, not a Job); PRODUCER_MESSAGES does not apply, PRODUCER_TIMEOUT_SECS bounds only the start (connect, metadata)",
    )
    .flag("--continuous", "BOOL")
    .default("false");
    /// `CANARY_TOPIC_BALANCE`.
    pub const CANARY_TOPIC_BALANCE: Key = Key::new(
        "CANARY_TOPIC_BALANCE",
        Allowed::Bool,
        "with --continuous: create the topic if missing with one partition led by each live broker (replication factor: the smaller of the broker count and PRODUCER_TOPIC_REPLICATION if set, else 3), and at every reconcile add partitions for new brokers and reassign replicas off gone ones, then elect the preferred leaders, as Strimzi Canary does, and keep min.insync.replicas one below the replication factor; partitions are never removed",
    )
    .flag("--canary-topic-balance", "BOOL")
    .default("false");
    /// `CANARY_RECONCILE_INTERVAL_MS`.
    pub const CANARY_RECONCILE_INTERVAL_MS: Key = Key::new(
        "CANARY_RECONCILE_INTERVAL_MS",
        number(100, 3_600_000),
        "with --continuous: how often the canary reads the cluster metadata (leadership metrics, new partitions to send to) and, with CANARY_TOPIC_BALANCE, reconciles the topic's placement",
    )
    .flag("--canary-reconcile-interval-ms", "MS")
    .default("30000");
    /// `PRODUCER_CREATE_TOPIC`.
    pub const CREATE_TOPIC: Key = Key::new(
        "PRODUCER_CREATE_TOPIC",
        Allowed::Bool,
        "create the topic if it does not exist (else a missing topic is an error)",
    )
    .flag("--create-topic", "BOOL")
    .default("false");
    /// `PRODUCER_TOPIC_PARTITIONS`.
    pub const TOPIC_PARTITIONS: Key = Key::new(
        "PRODUCER_TOPIC_PARTITIONS",
        number(1, 10_000),
        "partitions of a topic created by --create-topic",
    )
    .flag("--partitions", "N")
    .default("3");
    /// `PRODUCER_TOPIC_REPLICATION`.
    pub const TOPIC_REPLICATION: Key = Key::new(
        "PRODUCER_TOPIC_REPLICATION",
        number(1, 32),
        "replication factor of a topic created by --create-topic; with CANARY_TOPIC_BALANCE the largest replication factor of the canary topic (3 when unset)",
    )
    .flag("--replication-factor", "N")
    .default("1");
    /// `PRODUCER_TIMEOUT_SECS`.
    pub const TIMEOUT_SECS: Key = Key::new(
        "PRODUCER_TIMEOUT_SECS",
        number(1, 86_400),
        "give up after this many seconds: exit 1 with the counts of acknowledged and unacknowledged records",
    )
    .flag("--timeout", "SECS")
    .default("60");
    /// `PRODUCER_PROGRESS_SECS`.
    pub const PROGRESS_SECS: Key = Key::new(
        "PRODUCER_PROGRESS_SECS",
        number(1, 3_600),
        "log progress every this many seconds while running",
    )
    .flag("--progress-secs", "SECS")
    .default("5");
    /// `PRODUCER_METRICS_GRACE_SECS`.
    pub const METRICS_GRACE_SECS: Key = Key::new(
        "PRODUCER_METRICS_GRACE_SECS",
        number(0, 3_600),
        "after finishing, keep serving /metrics this many seconds so Prometheus can scrape the Job",
    )
    .flag("--metrics-grace-secs", "SECS")
    .default("0");

    /// Kafka's default `message.max.bytes` is 1 MiB + 12; a batch must fit.
    const MAX_BATCH: i64 = 1_048_576;
}

/// The producer's own keys (besides [`common_keys::KAFKA`] and
/// [`common_keys::SERVICE`]), in `--help` and README order.
pub const KEYS: &[Key] = &[
    keys::MESSAGES,
    keys::TOPIC,
    keys::RECORD_SIZE,
    keys::KEY_TEMPLATE,
    keys::INPUT,
    keys::KEY_FIELD,
    keys::RUN_ID,
    keys::LINGER_MS,
    keys::MAX_BATCH_BYTES,
    keys::MAX_IN_FLIGHT,
    keys::MAX_IN_FLIGHT_BYTES,
    keys::COMPRESSION,
    keys::IDEMPOTENCE,
    keys::RATE,
    keys::CONTINUOUS,
    keys::CANARY_TOPIC_BALANCE,
    keys::CANARY_RECONCILE_INTERVAL_MS,
    keys::CREATE_TOPIC,
    keys::TOPIC_PARTITIONS,
    keys::TOPIC_REPLICATION,
    keys::TIMEOUT_SECS,
    keys::PROGRESS_SECS,
    keys::METRICS_GRACE_SECS,
    keys::CONSUMER_GROUP,
];

/// The producer's keys and command line.
pub const SERVICE: ServiceKeys = ServiceKeys::new("producer", ABOUT, KEYS);

/// Every key the producer reads: the Kafka keys, its own, the service keys.
pub fn all_keys() -> Vec<&'static str> {
    SERVICE.names()
}

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Generated demo records.
    Demo {
        /// How many.
        count: u64,
        /// Target size of each JSON value.
        record_size: usize,
        /// Key per record, if any.
        key: Option<KeyTemplate>,
    },
    /// JSON lines from a file or stdin (`-`).
    Input {
        /// The path, or `-`.
        path: PathBuf,
        /// Field holding the key, if any.
        key_field: Option<String>,
    },
}

/// Topic creation settings for `--create-topic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateTopic {
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i16,
}

/// What the canary does with the cluster metadata (`--continuous` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanaryPlacement {
    /// `CANARY_TOPIC_BALANCE`: one partition led by each live broker.
    pub balance: bool,
    /// `CANARY_RECONCILE_INTERVAL_MS`.
    pub interval: Duration,
    /// The largest replication factor of a balanced topic:
    /// `PRODUCER_TOPIC_REPLICATION` when set, else 3.
    pub max_replication: i16,
}

/// The validated producer configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connection settings.
    pub kafka: KafkaSettings,
    /// `KAFKA_TOPIC`.
    pub topic: String,
    /// What to send.
    pub source: Source,
    /// Demo-record run id.
    pub run_id: String,
    /// Linger per partition batch.
    pub linger: Duration,
    /// Batch size limit.
    pub max_batch_bytes: usize,
    /// In-flight limit in records.
    pub max_in_flight: usize,
    /// In-flight limit in key+value+header bytes; with `max_in_flight` it
    /// bounds the memory the records waiting for their ack take.
    pub max_in_flight_bytes: usize,
    /// Codec.
    pub compression: Compression,
    /// Idempotent batches (producer id, epoch, sequence numbers).
    pub idempotence: bool,
    /// Records per second, if limited.
    pub rate: Option<f64>,
    /// Canary mode (`--continuous`): send until stopped.
    pub continuous: bool,
    /// Canary mode's metadata reads and topic placement.
    pub canary: CanaryPlacement,
    /// Create the topic when missing.
    pub create_topic: Option<CreateTopic>,
    /// Overall deadline.
    pub timeout: Duration,
    /// Progress log interval.
    pub progress_every: Duration,
    /// Keep serving metrics this long after finishing.
    pub metrics_grace: Duration,
    /// Sidecar address.
    pub http_addr: SocketAddr,
    /// Logging.
    pub log: LogConfig,
}

/// Validates every key; the first problem is returned as one line.
pub fn validate(src: &ConfigSource) -> Result<Config, ConfigError> {
    let kafka = KafkaSettings::from_source(src, "kafka-producer")?;
    let topic = src.text(&keys::TOPIC);
    validate_topic(src, &topic)?;

    let max_batch_bytes = src.num::<u64>(&keys::MAX_BATCH_BYTES)?;
    let source = match src.optional(keys::INPUT.env) {
        Some(path) => {
            let path = PathBuf::from(path);
            if path.as_os_str() != "-" && !path.is_file() {
                return Err(src.invalid(
                    keys::INPUT.env,
                    "no such file",
                    "a readable file of JSON lines, or - for stdin",
                ));
            }
            Source::Input {
                path,
                key_field: src.optional(keys::KEY_FIELD.env),
            }
        }
        None => {
            let record_size = src.num_in(
                &keys::RECORD_SIZE,
                crate::payload::MIN_RECORD_SIZE as u64..=max_batch_bytes,
            )?;
            let key = match src.optional(keys::KEY_TEMPLATE.env) {
                None => None,
                Some(t) => Some(KeyTemplate::parse(&t).map_err(|problem| {
                    src.invalid(
                        keys::KEY_TEMPLATE.env,
                        problem,
                        "text with {seq}, {seq % N} (N > 0) or {run_id}, e.g. key-{seq % 8}",
                    )
                })?),
            };
            Source::Demo {
                count: src.num(&keys::MESSAGES)?,
                record_size: record_size as usize,
                key,
            }
        }
    };

    let compression = src.pick(
        &keys::COMPRESSION,
        &[
            Compression::NoCompression,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ],
    )?;
    let rate = src.num::<u64>(&keys::RATE)?;
    let continuous = src.flag(&keys::CONTINUOUS)?;
    if continuous {
        if rate == 0 {
            return Err(src.invalid(
                keys::RATE.env,
                "0 (as fast as possible) with PRODUCER_CONTINUOUS=true",
                "records per second over all partitions, 1 or more, e.g. 10",
            ));
        }
        if matches!(source, Source::Input { .. }) {
            return Err(src.invalid(
                keys::INPUT.env,
                "set with PRODUCER_CONTINUOUS=true",
                "unset: the canary sends its own records",
            ));
        }
    }
    let balance = src.flag(&keys::CANARY_TOPIC_BALANCE)?;
    if balance && !continuous {
        return Err(src.invalid(
            keys::CANARY_TOPIC_BALANCE.env,
            "true without PRODUCER_CONTINUOUS=true",
            "false, or set PRODUCER_CONTINUOUS=true: only the canary places its topic",
        ));
    }
    let canary = CanaryPlacement {
        balance,
        interval: src.ms(&keys::CANARY_RECONCILE_INTERVAL_MS)?,
        max_replication: match src.optional(keys::TOPIC_REPLICATION.env) {
            Some(_) => src.num(&keys::TOPIC_REPLICATION)?,
            None => 3,
        },
    };
    let create_topic = if src.flag(&keys::CREATE_TOPIC)? {
        Some(CreateTopic {
            partitions: src.num(&keys::TOPIC_PARTITIONS)?,
            replication_factor: src.num(&keys::TOPIC_REPLICATION)?,
        })
    } else {
        None
    };
    let run_id = src
        .optional(keys::RUN_ID.env)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if run_id.len() > 128 || run_id.contains(['"', '\\']) || run_id.chars().any(char::is_control) {
        return Err(src.invalid(
            keys::RUN_ID.env,
            "too long or contains quotes, backslashes or control characters",
            "up to 128 printable characters",
        ));
    }

    Ok(Config {
        kafka,
        topic,
        source,
        run_id,
        linger: src.ms(&keys::LINGER_MS)?,
        max_batch_bytes: max_batch_bytes as usize,
        max_in_flight: src.num(&keys::MAX_IN_FLIGHT)?,
        max_in_flight_bytes: src.num(&keys::MAX_IN_FLIGHT_BYTES)?,
        compression,
        idempotence: src.flag(&keys::IDEMPOTENCE)?,
        rate: (rate > 0).then_some(rate as f64),
        continuous,
        canary,
        create_topic,
        timeout: src.secs(&keys::TIMEOUT_SECS)?,
        progress_every: src.secs(&keys::PROGRESS_SECS)?,
        metrics_grace: src.secs(&keys::METRICS_GRACE_SECS)?,
        http_addr: src.addr(&common_keys::HTTP_ADDR)?,
        log: LogConfig::from_source(src)?,
    })
}

/// Kafka's topic-name rule: 1–249 characters of `[a-zA-Z0-9._-]`.
fn validate_topic(src: &ConfigSource, topic: &str) -> Result<(), ConfigError> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(src.invalid(
            keys::TOPIC.env,
            "not a valid Kafka topic name",
            "1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        validate(&ConfigSource::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_match_the_prototype() {
        let c = cfg(&[]).expect("defaults are valid");
        assert_eq!(c.topic, "test");
        assert_eq!(c.kafka.bootstrap, vec!["localhost:9092"]);
        assert!(matches!(
            c.source,
            Source::Demo {
                count: 20,
                record_size: 256,
                key: None
            }
        ));
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.create_topic, None);
        assert!(!c.log.debug);
    }

    #[test]
    fn bad_values_name_the_key_and_what_is_allowed() {
        for (pairs, key, allowed) in [
            (
                vec![("PRODUCER_MESSAGES", "0")],
                "PRODUCER_MESSAGES",
                "from 1 to",
            ),
            (
                vec![("PRODUCER_MESSAGES", "ten")],
                "PRODUCER_MESSAGES",
                "whole number",
            ),
            (vec![("KAFKA_TOPIC", "bad topic!")], "KAFKA_TOPIC", "a-z"),
            (
                vec![("PRODUCER_COMPRESSION", "brotli")],
                "PRODUCER_COMPRESSION",
                "none, gzip, snappy, lz4, zstd",
            ),
            (
                vec![("PRODUCER_KEY_TEMPLATE", "k-{seq % 0}")],
                "PRODUCER_KEY_TEMPLATE",
                "{seq % N}",
            ),
            (
                vec![("PRODUCER_KEY_TEMPLATE", "k-{nope}")],
                "PRODUCER_KEY_TEMPLATE",
                "{run_id}",
            ),
            (vec![("HTTP_ADDR", "8080")], "HTTP_ADDR", "IP:PORT"),
            (
                vec![("PRODUCER_RECORD_SIZE", "10")],
                "PRODUCER_RECORD_SIZE",
                "from",
            ),
            (
                vec![("PRODUCER_INPUT", "/does/not/exist")],
                "PRODUCER_INPUT",
                "JSON lines",
            ),
            (
                vec![
                    ("PRODUCER_CREATE_TOPIC", "yes"),
                    ("PRODUCER_TOPIC_PARTITIONS", "-1"),
                ],
                "PRODUCER_TOPIC_PARTITIONS",
                "from 1",
            ),
            (vec![("DEBUG", "verbose")], "DEBUG", "true, false"),
            (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT", "json, pretty"),
            (vec![("RUST_LOG", "info,[[[")], "RUST_LOG", "directives"),
        ] {
            let e = cfg(&pairs).expect_err(key).to_string();
            assert!(
                e.starts_with(&format!("invalid configuration: {key}")),
                "{e}"
            );
            assert!(e.contains(allowed), "{e} lacks {allowed}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn help_lists_every_option_with_its_env_var() {
        let help = SERVICE.command().render_long_help().to_string();
        // Undo line wrapping before searching.
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut flags = 0;
        for key in SERVICE.keys() {
            if let Some(flag) = key.flag {
                flags += 1;
                assert!(help.contains(flag), "--help lacks {flag}");
                assert!(
                    help.contains(&format!("env: {}", key.env)),
                    "--help lacks env {}",
                    key.env
                );
            }
        }
        assert_eq!(flags, 24, "every flag of the table is an argument");
    }

    #[test]
    fn every_default_is_valid_and_is_what_validate_uses() {
        let c = cfg(&[]).expect("defaults are valid");
        assert_eq!(c.linger, Duration::from_millis(5));
        assert_eq!(c.max_batch_bytes, 524_288);
        assert_eq!((c.max_in_flight, c.max_in_flight_bytes), (100_000, 4 << 20));
        assert_eq!(c.compression, Compression::NoCompression);
        assert!(
            c.idempotence,
            "on by default, as in Kafka's clients since 3.0"
        );
        assert!(
            !cfg(&[("PRODUCER_IDEMPOTENCE", "false")])
                .expect("valid")
                .idempotence
        );
        assert_eq!(c.rate, None);
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.progress_every, Duration::from_secs(5));
        assert_eq!(c.metrics_grace, Duration::ZERO);
        let c = cfg(&[("PRODUCER_CREATE_TOPIC", "true")]).expect("valid");
        assert_eq!(
            c.create_topic,
            Some(CreateTopic {
                partitions: 3,
                replication_factor: 1
            })
        );
    }

    #[test]
    fn flags_override_environment() {
        let src = ConfigSource::layer(
            &all_keys(),
            None,
            figment::providers::Env::raw().only(&["NO_SUCH_VAR"]),
            &[("PRODUCER_MESSAGES", "--messages", "5".into())],
        )
        .expect("layer");
        assert!(matches!(
            validate(&src).expect("ok").source,
            Source::Demo { count: 5, .. }
        ));
    }

    #[test]
    fn continuous_needs_a_rate_and_its_own_records() {
        assert!(!cfg(&[]).expect("defaults").continuous);
        let e = cfg(&[("PRODUCER_CONTINUOUS", "true")]).expect_err("no rate");
        assert!(e.to_string().contains("PRODUCER_RATE"), "{e}");
        let c = cfg(&[("PRODUCER_CONTINUOUS", "true"), ("PRODUCER_RATE", "20")]).expect("valid");
        assert!(c.continuous);
        assert_eq!(c.rate, Some(20.0));
        let e = cfg(&[
            ("PRODUCER_CONTINUOUS", "true"),
            ("PRODUCER_RATE", "20"),
            ("PRODUCER_INPUT", "-"),
        ])
        .expect_err("input");
        assert!(e.to_string().contains("PRODUCER_INPUT"), "{e}");
    }

    #[test]
    fn topic_balance_is_for_the_canary_and_takes_the_replication_factor_when_set() {
        let c = cfg(&[]).expect("defaults");
        assert_eq!(
            c.canary,
            CanaryPlacement {
                balance: false,
                interval: Duration::from_secs(30),
                max_replication: 3
            }
        );
        let e = cfg(&[("CANARY_TOPIC_BALANCE", "true")]).expect_err("not continuous");
        assert!(
            e.to_string().contains("CANARY_TOPIC_BALANCE")
                && e.to_string().contains("PRODUCER_CONTINUOUS"),
            "{e}"
        );
        let c = cfg(&[
            ("PRODUCER_CONTINUOUS", "true"),
            ("PRODUCER_RATE", "20"),
            ("CANARY_TOPIC_BALANCE", "yes"),
            ("CANARY_RECONCILE_INTERVAL_MS", "2000"),
            ("PRODUCER_TOPIC_REPLICATION", "2"),
        ])
        .expect("valid");
        assert_eq!(
            c.canary,
            CanaryPlacement {
                balance: true,
                interval: Duration::from_secs(2),
                max_replication: 2
            }
        );
        let e = cfg(&[("CANARY_RECONCILE_INTERVAL_MS", "50")]).expect_err("too short");
        assert!(
            e.to_string().contains("CANARY_RECONCILE_INTERVAL_MS"),
            "{e}"
        );
    }
}
