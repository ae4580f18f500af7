//! The producer's configuration: command-line flags over environment over
//! TOML file over defaults, validated in one place ([`validate`]).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use common::{
    config::{ConfigError, ConfigSource, LogConfig},
    kafka::{KafkaSettings, KAFKA_KEYS},
};
use rskafka::client::partition::Compression;

use crate::payload::KeyTemplate;

/// Publishes N records to a Kafka topic, waits until the broker has
/// acknowledged every one (acks=all), prints a summary and exits: 0 when all
/// were acknowledged, 1 when not, 2 for a configuration error.
///
/// Every option can also be set by the environment variable shown, or in the
/// TOML file named by CONFIG_FILE under the variable's lower-case name.
/// Kafka connection settings (KAFKA_BOOTSTRAP_SERVER, KAFKA_SECURITY_PROTOCOL,
/// KAFKA_SASL_MECHANISM, KAFKA_USERNAME, KAFKA_PASSWORD[_FILE], …) are read
/// from the environment only; see the README.
#[derive(Debug, Parser)]
#[command(name = "producer", version)]
pub struct Cli {
    /// Subcommand; none means "produce".
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Produce options.
    #[command(flatten)]
    pub opts: ProduceArgs,
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

/// Flags that override configuration keys. Values are parsed by
/// [`validate`] so that a bad flag and a bad environment variable produce the
/// same error.
#[derive(Debug, Default, Args)]
pub struct ProduceArgs {
    /// Number of records to publish [env: PRODUCER_MESSAGES] [default: 20]
    #[arg(short = 'n', long, value_name = "N")]
    pub messages: Option<String>,
    /// Topic to publish to [env: KAFKA_TOPIC] [default: test]
    #[arg(short, long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Size in bytes of each demo record's JSON value [env: PRODUCER_RECORD_SIZE] [default: 256]
    #[arg(long, value_name = "BYTES")]
    pub record_size: Option<String>,
    /// Key per record; placeholders {seq}, {seq % N}, {run_id}; empty = no key [env: PRODUCER_KEY_TEMPLATE] [default: none]
    #[arg(long, value_name = "TEMPLATE")]
    pub key_template: Option<String>,
    /// Read records from FILE (or - for stdin): one JSON value per line instead of demo records [env: PRODUCER_INPUT]
    #[arg(long, value_name = "FILE|-")]
    pub input: Option<String>,
    /// With --input: take each record's key from this top-level field of the JSON object [env: PRODUCER_KEY_FIELD]
    #[arg(long, value_name = "FIELD")]
    pub key_field: Option<String>,
    /// Run id written into demo records (default: a random UUID) [env: PRODUCER_RUN_ID]
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// How long a partition's batch waits for more records before it is sent [env: PRODUCER_LINGER_MS] [default: 5]
    #[arg(long, value_name = "MS")]
    pub linger_ms: Option<String>,
    /// Largest batch per produce request, in bytes [env: PRODUCER_MAX_BATCH_BYTES] [default: 524288]
    #[arg(long, value_name = "BYTES")]
    pub max_batch_bytes: Option<String>,
    /// Most records sent but not yet acknowledged at once [env: PRODUCER_MAX_IN_FLIGHT] [default: 100000]
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<String>,
    /// Most key+value+header bytes sent but not yet acknowledged at once [env: PRODUCER_MAX_IN_FLIGHT_BYTES] [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    pub max_in_flight_bytes: Option<String>,
    /// none, gzip, snappy, lz4 or zstd [env: PRODUCER_COMPRESSION] [default: none]
    #[arg(long, value_name = "CODEC")]
    pub compression: Option<String>,
    /// Records per second; 0 = as fast as possible [env: PRODUCER_RATE] [default: 0]
    #[arg(long, value_name = "PER_SEC")]
    pub rate: Option<String>,
    /// Create the topic if it does not exist [env: PRODUCER_CREATE_TOPIC] [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub create_topic: Option<String>,
    /// Partitions of a topic created by --create-topic [env: PRODUCER_TOPIC_PARTITIONS] [default: 3]
    #[arg(long, value_name = "N")]
    pub partitions: Option<String>,
    /// Replication factor of a topic created by --create-topic [env: PRODUCER_TOPIC_REPLICATION] [default: 1]
    #[arg(long, value_name = "N")]
    pub replication_factor: Option<String>,
    /// Give up after this many seconds: exit 1 with the counts of acknowledged and unacknowledged records [env: PRODUCER_TIMEOUT_SECS] [default: 60]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<String>,
    /// Log progress every SECS seconds while running [env: PRODUCER_PROGRESS_SECS] [default: 5]
    #[arg(long, value_name = "SECS")]
    pub progress_secs: Option<String>,
    /// After finishing, keep serving /metrics this many seconds so Prometheus can scrape the Job [env: PRODUCER_METRICS_GRACE_SECS] [default: 0]
    #[arg(long, value_name = "SECS")]
    pub metrics_grace_secs: Option<String>,
    /// Address of the /healthz, /readyz, /metrics server [env: HTTP_ADDR] [default: 0.0.0.0:8080]
    #[arg(long, value_name = "IP:PORT")]
    pub http_addr: Option<String>,
}

impl ProduceArgs {
    /// `(KEY, --flag, value)` for every flag given.
    pub fn flags(&self) -> Vec<(&'static str, &'static str, String)> {
        let pairs: [(&'static str, &'static str, &Option<String>); 20] = [
            ("PRODUCER_MESSAGES", "--messages", &self.messages),
            ("KAFKA_TOPIC", "--topic", &self.topic),
            ("PRODUCER_RECORD_SIZE", "--record-size", &self.record_size),
            (
                "PRODUCER_KEY_TEMPLATE",
                "--key-template",
                &self.key_template,
            ),
            ("PRODUCER_INPUT", "--input", &self.input),
            ("PRODUCER_KEY_FIELD", "--key-field", &self.key_field),
            ("PRODUCER_RUN_ID", "--run-id", &self.run_id),
            ("PRODUCER_LINGER_MS", "--linger-ms", &self.linger_ms),
            (
                "PRODUCER_MAX_BATCH_BYTES",
                "--max-batch-bytes",
                &self.max_batch_bytes,
            ),
            (
                "PRODUCER_MAX_IN_FLIGHT",
                "--max-in-flight",
                &self.max_in_flight,
            ),
            (
                "PRODUCER_MAX_IN_FLIGHT_BYTES",
                "--max-in-flight-bytes",
                &self.max_in_flight_bytes,
            ),
            ("PRODUCER_COMPRESSION", "--compression", &self.compression),
            ("PRODUCER_RATE", "--rate", &self.rate),
            (
                "PRODUCER_CREATE_TOPIC",
                "--create-topic",
                &self.create_topic,
            ),
            (
                "PRODUCER_TOPIC_PARTITIONS",
                "--partitions",
                &self.partitions,
            ),
            (
                "PRODUCER_TOPIC_REPLICATION",
                "--replication-factor",
                &self.replication_factor,
            ),
            ("PRODUCER_TIMEOUT_SECS", "--timeout", &self.timeout),
            (
                "PRODUCER_PROGRESS_SECS",
                "--progress-secs",
                &self.progress_secs,
            ),
            (
                "PRODUCER_METRICS_GRACE_SECS",
                "--metrics-grace-secs",
                &self.metrics_grace_secs,
            ),
            ("HTTP_ADDR", "--http-addr", &self.http_addr),
        ];
        pairs
            .into_iter()
            .filter_map(|(k, f, v)| v.as_ref().map(|v| (k, f, v.clone())))
            .collect()
    }
}

/// Keys of the producer (besides [`KAFKA_KEYS`]).
pub const PRODUCER_KEYS: &[&str] = &[
    "KAFKA_TOPIC",
    "KAFKA_CONSUMER_GROUP",
    "PRODUCER_MESSAGES",
    "PRODUCER_RECORD_SIZE",
    "PRODUCER_KEY_TEMPLATE",
    "PRODUCER_INPUT",
    "PRODUCER_KEY_FIELD",
    "PRODUCER_RUN_ID",
    "PRODUCER_LINGER_MS",
    "PRODUCER_MAX_BATCH_BYTES",
    "PRODUCER_MAX_IN_FLIGHT",
    "PRODUCER_MAX_IN_FLIGHT_BYTES",
    "PRODUCER_COMPRESSION",
    "PRODUCER_RATE",
    "PRODUCER_CREATE_TOPIC",
    "PRODUCER_TOPIC_PARTITIONS",
    "PRODUCER_TOPIC_REPLICATION",
    "PRODUCER_TIMEOUT_SECS",
    "PRODUCER_PROGRESS_SECS",
    "PRODUCER_METRICS_GRACE_SECS",
    "HTTP_ADDR",
    "LOG_FORMAT",
    "RUST_LOG",
    "DEBUG",
];

/// Every key the producer reads.
pub fn all_keys() -> Vec<&'static str> {
    KAFKA_KEYS.iter().chain(PRODUCER_KEYS).copied().collect()
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
    /// Records per second, if limited.
    pub rate: Option<f64>,
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

/// Kafka's default `message.max.bytes` is 1 MiB + 12; a batch must fit.
const MAX_BATCH_BYTES: u64 = 1_048_576;

/// Validates every key; the first problem is returned as one line.
pub fn validate(src: &ConfigSource) -> Result<Config, ConfigError> {
    let kafka = KafkaSettings::from_source(src, "kafka-producer")?;
    let topic = src.string("KAFKA_TOPIC", "test");
    validate_topic(src, &topic)?;

    let max_batch_bytes = src.number(
        "PRODUCER_MAX_BATCH_BYTES",
        524_288u64,
        1024..=MAX_BATCH_BYTES,
    )?;
    let source = match src.optional("PRODUCER_INPUT") {
        Some(path) => {
            let path = PathBuf::from(path);
            if path.as_os_str() != "-" && !path.is_file() {
                return Err(src.invalid(
                    "PRODUCER_INPUT",
                    "no such file",
                    "a readable file of JSON lines, or - for stdin",
                ));
            }
            Source::Input {
                path,
                key_field: src.optional("PRODUCER_KEY_FIELD"),
            }
        }
        None => {
            let record_size = src.number(
                "PRODUCER_RECORD_SIZE",
                256u64,
                crate::payload::MIN_RECORD_SIZE as u64..=max_batch_bytes,
            )?;
            let key = match src.optional("PRODUCER_KEY_TEMPLATE") {
                None => None,
                Some(t) => Some(KeyTemplate::parse(&t).map_err(|problem| {
                    src.invalid(
                        "PRODUCER_KEY_TEMPLATE",
                        problem,
                        "text with {seq}, {seq % N} (N > 0) or {run_id}, e.g. key-{seq % 8}",
                    )
                })?),
            };
            Source::Demo {
                count: src.number("PRODUCER_MESSAGES", 20u64, 1..=1_000_000_000)?,
                record_size: record_size as usize,
                key,
            }
        }
    };

    let compression = src.choice(
        "PRODUCER_COMPRESSION",
        Compression::NoCompression,
        &[
            ("none", Compression::NoCompression),
            ("gzip", Compression::Gzip),
            ("snappy", Compression::Snappy),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
        ],
    )?;
    let rate = src.number("PRODUCER_RATE", 0u64, 0..=10_000_000)?;
    let create_topic = if src.boolean("PRODUCER_CREATE_TOPIC", false)? {
        Some(CreateTopic {
            partitions: src.number("PRODUCER_TOPIC_PARTITIONS", 3i32, 1..=10_000)?,
            replication_factor: src.number("PRODUCER_TOPIC_REPLICATION", 1i16, 1..=32)?,
        })
    } else {
        None
    };
    let run_id = src
        .optional("PRODUCER_RUN_ID")
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if run_id.len() > 128 || run_id.contains(['"', '\\']) || run_id.chars().any(char::is_control) {
        return Err(src.invalid(
            "PRODUCER_RUN_ID",
            "too long or contains quotes, backslashes or control characters",
            "up to 128 printable characters",
        ));
    }

    Ok(Config {
        kafka,
        topic,
        source,
        run_id,
        linger: src.millis("PRODUCER_LINGER_MS", 5, 0..=60_000)?,
        max_batch_bytes: max_batch_bytes as usize,
        max_in_flight: src.number("PRODUCER_MAX_IN_FLIGHT", 100_000u64, 1..=1_000_000)? as usize,
        max_in_flight_bytes: src.number(
            "PRODUCER_MAX_IN_FLIGHT_BYTES",
            4u64 << 20,
            65_536..=1u64 << 30,
        )? as usize,
        compression,
        rate: (rate > 0).then_some(rate as f64),
        create_topic,
        timeout: Duration::from_secs(src.number("PRODUCER_TIMEOUT_SECS", 60u64, 1..=86_400)?),
        progress_every: Duration::from_secs(src.number(
            "PRODUCER_PROGRESS_SECS",
            5u64,
            1..=3_600,
        )?),
        metrics_grace: Duration::from_secs(src.number(
            "PRODUCER_METRICS_GRACE_SECS",
            0u64,
            0..=3_600,
        )?),
        http_addr: src.socket_addr("HTTP_ADDR", "0.0.0.0:8080")?,
        log: LogConfig::from_source(src)?,
    })
}

/// Kafka's topic-name rule: 1–249 characters of `[a-zA-Z0-9._-]`.
pub fn validate_topic(src: &ConfigSource, topic: &str) -> Result<(), ConfigError> {
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
            "KAFKA_TOPIC",
            "not a valid Kafka topic name",
            "1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
        let help = Cli::command().render_long_help().to_string();
        // Undo line wrapping before searching.
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let all = ProduceArgs {
            messages: Some(String::new()),
            topic: Some(String::new()),
            record_size: Some(String::new()),
            key_template: Some(String::new()),
            input: Some(String::new()),
            key_field: Some(String::new()),
            run_id: Some(String::new()),
            linger_ms: Some(String::new()),
            max_batch_bytes: Some(String::new()),
            max_in_flight: Some(String::new()),
            max_in_flight_bytes: Some(String::new()),
            compression: Some(String::new()),
            rate: Some(String::new()),
            create_topic: Some(String::new()),
            partitions: Some(String::new()),
            replication_factor: Some(String::new()),
            timeout: Some(String::new()),
            progress_secs: Some(String::new()),
            metrics_grace_secs: Some(String::new()),
            http_addr: Some(String::new()),
        };
        for (key, flag, _) in all.flags() {
            assert!(help.contains(flag), "--help lacks {flag}");
            assert!(
                help.contains(&format!("env: {key}")),
                "--help lacks env {key}"
            );
            assert!(PRODUCER_KEYS.contains(&key), "{key} not in PRODUCER_KEYS");
        }
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
}
