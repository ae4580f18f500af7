//! The Prometheus recorder and every metric name, described once.
//!
//! Names follow Prometheus conventions: base units, `_total` for counters,
//! `_seconds`/`_bytes` suffixes. Labels stay small (topic, partition, kind),
//! never offsets or keys. Histograms use explicit buckets chosen for what
//! they measure; no summaries.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    OnceLock,
};

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Records handed to the broker and acknowledged (`topic`).
pub const PRODUCER_RECORDS_SENT: &str = "kafka_producer_records_sent_total";
/// Value+key+header bytes of acknowledged records (`topic`).
pub const PRODUCER_BYTES_SENT: &str = "kafka_producer_bytes_sent_total";
/// Errors while producing (`topic`, `kind`).
pub const PRODUCER_ERRORS: &str = "kafka_producer_errors_total";
/// Time from handing a record to the batcher until the broker acknowledged it.
pub const PRODUCER_ACK_LATENCY: &str = "kafka_producer_ack_latency_seconds";
/// Records not yet acknowledged (`topic`).
pub const PRODUCER_RECORDS_PENDING: &str = "kafka_producer_records_pending";

/// Process start time, unix seconds (also `/readyz` start-up measurements).
pub(crate) const BUILD_INFO: &str = "kafka_service_build_info";

/// Sidecar connections the server closed to protect itself (`reason`:
/// `header_timeout`, `idle_timeout`, `shed`).
pub(crate) const HTTP_CONNECTIONS_CLOSED: &str = "kafka_service_http_connections_closed_total";

/// Buckets for acknowledgement and commit latencies: 0.5 ms … 30 s.
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for end-to-end latency (producer `sent_at` → consumer handled): 1 ms … 5 min.
pub(crate) const E2E_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Errors installing the recorder.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Another recorder was installed first.
    #[error("cannot install the Prometheus recorder: {0}")]
    Install(String),
}

/// Installs the process-wide Prometheus recorder once and returns its handle.
///
/// Calling it again (tests run several services in one process) returns the
/// same handle.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_latency_seconds".to_owned()),
            LATENCY_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(crate::metrics::CONSUMER_E2E_LATENCY.to_owned()),
                E2E_LATENCY_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(crate::metrics::CANARY_E2E_LATENCY.to_owned()),
                E2E_LATENCY_BUCKETS,
            )
        })
        .map_err(|e| MetricsError::Install(e.to_string()))?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    // Whoever wins the race installs; the loser's recorder is dropped.
    match HANDLE.set(handle.clone()) {
        Ok(()) => {
            metrics::set_global_recorder(recorder)
                .map_err(|e| MetricsError::Install(e.to_string()))?;
            describe();
            spawn_upkeep(handle.clone());
            Ok(handle)
        }
        Err(_) => HANDLE
            .get()
            .cloned()
            .ok_or_else(|| MetricsError::Install("recorder race".to_owned())),
    }
}

/// Per-record histogram samples between two drains.
///
/// The exporter keeps every histogram sample (value and timestamp, about
/// 20 bytes) until a scrape or an upkeep folds them into the buckets. With
/// one sample per record, a producer sending a million records a second
/// between two upkeeps held 16-20 bytes per record sent (issue 13: 114 MB
/// peak for 6 M records). Draining every this many samples bounds that to
/// about 1 MB whatever the rate and the count.
const DRAIN_EVERY: u64 = 1 << 15;

/// A histogram observed once per record (acknowledgement or end-to-end
/// latency): like [`metrics::Histogram`], but its buffered samples are
/// folded into the buckets every [`DRAIN_EVERY`] observations (over all
/// such histograms), so memory stays flat however many records go by.
#[derive(Debug, Clone)]
pub struct RecordHistogram(metrics::Histogram);

impl RecordHistogram {
    /// Wraps a histogram handle (`metrics::histogram!(…)`).
    pub fn new(histogram: metrics::Histogram) -> Self {
        Self(histogram)
    }

    /// Records one observation.
    pub fn record(&self, value: f64) {
        static SINCE_DRAIN: AtomicU64 = AtomicU64::new(0);
        self.0.record(value);
        if SINCE_DRAIN.fetch_add(1, Ordering::Relaxed) % DRAIN_EVERY == DRAIN_EVERY - 1 {
            drain();
        }
    }
}

/// Folds buffered histogram samples into their buckets now.
fn drain() {
    if let Some(handle) = HANDLE.get() {
        handle.run_upkeep();
    }
}

/// Histograms are drained into buckets on render; upkeep keeps memory flat
/// when nothing scrapes for a long time.
fn spawn_upkeep(handle: PrometheusHandle) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
    }
}

/// Time from the producer's `sent_at` to the consumer handling the record (`topic`).
pub const CONSUMER_E2E_LATENCY: &str = "kafka_consumer_e2e_latency_seconds";
/// Records handled (`topic`, `partition`).
pub const CONSUMER_RECORDS: &str = "kafka_consumer_records_consumed_total";
/// Key+value+header bytes handled (`topic`, `partition`).
pub const CONSUMER_BYTES: &str = "kafka_consumer_bytes_consumed_total";
/// High watermark minus committed offset, as kafka_exporter names it (`consumergroup`, `topic`, `partition`).
pub const CONSUMER_LAG: &str = "kafka_consumergroup_lag";
/// Last committed offset (`topic`, `partition`).
pub const CONSUMER_COMMITTED_OFFSET: &str = "kafka_consumer_committed_offset";
/// Unix time of the last successful commit.
pub const CONSUMER_LAST_COMMIT: &str = "kafka_consumer_last_commit_timestamp_seconds";
/// Rebalances this member took part in.
pub const CONSUMER_REBALANCES: &str = "kafka_consumer_rebalances_total";
/// OffsetCommit round trip.
pub const CONSUMER_COMMIT_LATENCY: &str = "kafka_consumer_commit_latency_seconds";
/// Errors by kind: handler, fetch, commit, group (`kind`).
pub const CONSUMER_ERRORS: &str = "kafka_consumer_errors_total";
/// 1 while a partition has lag but made no progress for the stall window (`topic`, `partition`).
pub const CONSUMER_PARTITION_STALLED: &str = "kafka_consumer_partition_stalled";
/// Partitions currently assigned to this member.
pub const CONSUMER_ASSIGNED_PARTITIONS: &str = "kafka_consumer_assigned_partitions";
/// Demo records (from the producer) handled (`topic`).
pub const DEMO_RECORDS: &str = "kafka_consumer_demo_records_total";
/// Demo records this member had already handled (`topic`).
pub const DEMO_DUPLICATES: &str = "kafka_consumer_demo_duplicates_total";
/// Demo sequence numbers below the highest seen that this member has not seen (`topic`).
pub const DEMO_GAPS: &str = "kafka_consumer_demo_gaps";
/// How long the oldest record not yet handled has waited, from its
/// timestamp (`consumergroup`, `topic`, `partition`).
pub const CONSUMER_LAG_SECONDS: &str = "kafka_consumergroup_lag_seconds";

// The continuous canary (`producer --continuous` and the consumer group
// that verifies its records); every one has `topic` and `partition`.

/// Canary records put in produce requests, each resend counted again.
pub const CANARY_PRODUCE_ATTEMPTS: &str = "kafka_canary_produce_attempts_total";
/// Canary records the broker acknowledged.
pub const CANARY_PRODUCE_ACKS: &str = "kafka_canary_produce_acks_total";
/// Canary records in produce requests that failed (each resend counted again).
pub const CANARY_PRODUCE_ERRORS: &str = "kafka_canary_produce_errors_total";
/// First send of a canary record → its acknowledgement.
pub const CANARY_ACK_LATENCY: &str = "kafka_canary_produce_ack_latency_seconds";
/// Acknowledged ÷ (acknowledged + failed sends) over the availability window.
pub const CANARY_PRODUCE_AVAILABILITY: &str = "kafka_canary_produce_availability";
/// Canary records read at an offset this member had not read before.
pub const CANARY_RECEIVED: &str = "kafka_canary_records_received_total";
/// Canary records read again at an offset already read (after a rebalance
/// or a restart from the committed offset): not duplicates in the log.
pub const CANARY_REDELIVERED: &str = "kafka_canary_records_redelivered_total";
/// Canary sequence numbers missing and not filled within the loss window.
pub const CANARY_LOST: &str = "kafka_canary_records_lost_total";
/// Canary records whose sequence number was already in the log at an earlier offset.
pub const CANARY_DUPLICATED: &str = "kafka_canary_records_duplicated_total";
/// Canary records handled later than the latency objective after their `sent_at`.
pub const CANARY_LATE: &str = "kafka_canary_records_late_total";
/// Canary sequence numbers missing now, still within the loss window.
pub const CANARY_MISSING: &str = "kafka_canary_records_missing";
/// Canary record `sent_at` → handled.
pub const CANARY_E2E_LATENCY: &str = "kafka_canary_e2e_latency_seconds";
/// Delivered within the latency objective ÷ (delivered + lost) over the availability window.
pub const CANARY_E2E_AVAILABILITY: &str = "kafka_canary_e2e_availability";
/// The node id leading a canary partition as the last metadata showed it
/// (-1: none) (`topic`, `partition`).
pub const CANARY_PARTITION_LEADER: &str = "kafka_canary_partition_leader";
/// Changes of a canary partition's leader seen between two metadata reads
/// (`topic`, `partition`).
pub const CANARY_LEADER_CHANGES: &str = "kafka_canary_leader_changes_total";
/// Live brokers in the last metadata.
pub const CANARY_BROKERS: &str = "kafka_canary_brokers";
/// Placement changes the canary made to its topic (`topic`, `action`:
/// `create_topic`, `create_partitions`, `reassign`, `elect_leaders`,
/// `set_min_insync`).
pub const CANARY_REASSIGNMENTS: &str = "kafka_canary_reassignments_total";
/// Placement requests the broker refused or that failed (`topic`; the log
/// line names the Kafka error code, or `connection`).
pub const CANARY_PLACEMENT_ERRORS: &str = "kafka_canary_placement_errors_total";

fn describe() {
    describe_counter!(
        PRODUCER_RECORDS_SENT,
        Unit::Count,
        "Records acknowledged by the broker."
    );
    describe_counter!(
        PRODUCER_BYTES_SENT,
        Unit::Bytes,
        "Key, value and header bytes of acknowledged records."
    );
    describe_counter!(
        PRODUCER_ERRORS,
        Unit::Count,
        "Produce errors by kind (retried or final)."
    );
    describe_histogram!(
        PRODUCER_ACK_LATENCY,
        Unit::Seconds,
        "Time from enqueueing a record until the broker acknowledged it (acks=all)."
    );
    describe_gauge!(
        PRODUCER_RECORDS_PENDING,
        Unit::Count,
        "Records sent but not yet acknowledged."
    );
    describe_gauge!(
        BUILD_INFO,
        Unit::Count,
        "Always 1; labels carry the service name and version."
    );
    describe_counter!(
        HTTP_CONNECTIONS_CLOSED,
        Unit::Count,
        "Sidecar connections closed by the server: request head too slow, idle, or shed at the connection cap."
    );
    describe_histogram!(
        CONSUMER_E2E_LATENCY,
        Unit::Seconds,
        "Time from the producer's sent_at to the consumer handling the record."
    );
    describe_counter!(CONSUMER_RECORDS, Unit::Count, "Records handled.");
    describe_counter!(
        CONSUMER_BYTES,
        Unit::Bytes,
        "Key, value and header bytes of handled records."
    );
    describe_gauge!(
        CONSUMER_LAG,
        Unit::Count,
        "High watermark minus the group's committed offset."
    );
    describe_gauge!(
        CONSUMER_COMMITTED_OFFSET,
        Unit::Count,
        "Last offset committed by this member."
    );
    describe_gauge!(
        CONSUMER_LAST_COMMIT,
        Unit::Seconds,
        "Unix time of the last successful offset commit."
    );
    describe_counter!(
        CONSUMER_REBALANCES,
        Unit::Count,
        "Group rebalances this member took part in."
    );
    describe_histogram!(
        CONSUMER_COMMIT_LATENCY,
        Unit::Seconds,
        "OffsetCommit round-trip time."
    );
    describe_counter!(
        CONSUMER_ERRORS,
        Unit::Count,
        "Errors by kind (fetch, commit, group, handler)."
    );
    describe_gauge!(
        CONSUMER_ASSIGNED_PARTITIONS,
        Unit::Count,
        "Partitions assigned to this member."
    );
    describe_counter!(
        DEMO_RECORDS,
        Unit::Count,
        "Demo records from the producer handled."
    );
    describe_counter!(
        DEMO_DUPLICATES,
        Unit::Count,
        "Demo records handled again (redelivered)."
    );
    describe_gauge!(
        DEMO_GAPS,
        Unit::Count,
        "Demo sequence numbers below the highest seen that this member has not seen."
    );
    describe_gauge!(
        CONSUMER_LAG_SECONDS,
        Unit::Seconds,
        "How long the oldest record not yet handled has waited (now minus its timestamp); 0 when caught up."
    );
    describe_counter!(
        CANARY_PRODUCE_ATTEMPTS,
        Unit::Count,
        "Canary records put in produce requests (a resend counts again)."
    );
    describe_counter!(
        CANARY_PRODUCE_ACKS,
        Unit::Count,
        "Canary records acknowledged by the broker."
    );
    describe_counter!(
        CANARY_PRODUCE_ERRORS,
        Unit::Count,
        "Canary records in produce requests that failed (a resend counts again)."
    );
    describe_histogram!(
        CANARY_ACK_LATENCY,
        Unit::Seconds,
        "First send of a canary record until its acknowledgement."
    );
    describe_gauge!(
        CANARY_PRODUCE_AVAILABILITY,
        Unit::Count,
        "Acknowledged / (acknowledged + failed sends) over the availability window; NaN without sends."
    );
    describe_counter!(
        CANARY_RECEIVED,
        Unit::Count,
        "Canary records read at an offset this member had not read."
    );
    describe_counter!(
        CANARY_REDELIVERED,
        Unit::Count,
        "Canary records read again at an offset already read (rebalance, restart): not log duplicates."
    );
    describe_counter!(
        CANARY_LOST,
        Unit::Count,
        "Canary sequence numbers missing and not filled within the loss window."
    );
    describe_counter!(
        CANARY_DUPLICATED,
        Unit::Count,
        "Canary records whose sequence number was already in the log at an earlier offset."
    );
    describe_counter!(
        CANARY_LATE,
        Unit::Count,
        "Canary records handled later than the latency objective (CANARY_LATENCY_SLO_MS) after their sent_at."
    );
    describe_gauge!(
        CANARY_MISSING,
        Unit::Count,
        "Canary sequence numbers missing now and still within the loss window."
    );
    describe_histogram!(
        CANARY_E2E_LATENCY,
        Unit::Seconds,
        "Time from a canary record's sent_at to the consumer handling it."
    );
    describe_gauge!(
        CANARY_E2E_AVAILABILITY,
        Unit::Count,
        "Canary records delivered within the latency objective / (delivered + lost) over the availability window; NaN without records."
    );
    describe_gauge!(
        CANARY_PARTITION_LEADER,
        Unit::Count,
        "Node id of the canary partition's leader in the last metadata; -1 without a leader."
    );
    describe_counter!(
        CANARY_LEADER_CHANGES,
        Unit::Count,
        "Changes of the canary partition's leader seen between two metadata reads."
    );
    describe_gauge!(
        CANARY_BROKERS,
        Unit::Count,
        "Live brokers in the last metadata the canary read."
    );
    describe_counter!(
        CANARY_REASSIGNMENTS,
        Unit::Count,
        "Placement changes the canary made to its topic (CANARY_TOPIC_BALANCE), by action."
    );
    describe_counter!(
        CANARY_PLACEMENT_ERRORS,
        Unit::Count,
        "Placement requests that failed (CANARY_TOPIC_BALANCE); the log line names the Kafka error code."
    );
}

/// Records the `kafka_service_build_info` gauge for `service`.
pub(crate) fn record_build_info(service: &'static str) {
    metrics::gauge!(BUILD_INFO, "service" => service, "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
}

/// Every `kind` of [`PRODUCER_ERRORS`].
pub(crate) const PRODUCER_ERROR_KINDS: &[&str] = &[
    "connection",
    "request",
    "broker",
    "retries_exhausted",
    "timeout",
    "other",
];

/// Every `kind` of [`CONSUMER_ERRORS`].
pub(crate) const CONSUMER_ERROR_KINDS: &[&str] = &[
    "fetch",
    "list_offsets",
    "offset_out_of_range",
    "oversized_batch",
    "commit",
    "group",
];

/// Creates the producer's counters at zero, so `rate()` and alerts work from
/// the first scrape instead of from the first error.
pub fn init_producer(topic: &str) {
    metrics::counter!(PRODUCER_RECORDS_SENT, "topic" => topic.to_owned()).absolute(0);
    metrics::counter!(PRODUCER_BYTES_SENT, "topic" => topic.to_owned()).absolute(0);
    metrics::gauge!(PRODUCER_RECORDS_PENDING, "topic" => topic.to_owned()).set(0.0);
    for kind in PRODUCER_ERROR_KINDS {
        metrics::counter!(PRODUCER_ERRORS, "topic" => topic.to_owned(), "kind" => *kind)
            .absolute(0);
    }
}

/// A counter of one `topic`/`partition`, created at 0 so that `rate()` and
/// alerts work before its first event.
pub fn partition_counter(name: &'static str, topic: &str, partition: i32) -> metrics::Counter {
    let c =
        metrics::counter!(name, "topic" => topic.to_owned(), "partition" => partition.to_string());
    c.absolute(0);
    c
}

/// A gauge of one `topic`/`partition`.
pub fn partition_gauge(name: &'static str, topic: &str, partition: i32) -> metrics::Gauge {
    metrics::gauge!(name, "topic" => topic.to_owned(), "partition" => partition.to_string())
}

/// A latency histogram of one `topic`/`partition`, drained as
/// [`RecordHistogram`] does.
pub fn partition_histogram(name: &'static str, topic: &str, partition: i32) -> RecordHistogram {
    RecordHistogram::new(metrics::histogram!(
        name,
        "topic" => topic.to_owned(),
        "partition" => partition.to_string()
    ))
}

/// Creates the consumer's counters at zero (see [`init_producer`]).
pub fn init_consumer(topics: &[String]) {
    metrics::counter!(CONSUMER_REBALANCES).absolute(0);
    metrics::gauge!(CONSUMER_ASSIGNED_PARTITIONS).set(0.0);
    for kind in CONSUMER_ERROR_KINDS {
        metrics::counter!(CONSUMER_ERRORS, "kind" => *kind).absolute(0);
    }
    for topic in topics {
        metrics::counter!(DEMO_RECORDS, "topic" => topic.clone()).absolute(0);
        metrics::counter!(DEMO_DUPLICATES, "topic" => topic.clone()).absolute(0);
        metrics::gauge!(DEMO_GAPS, "topic" => topic.clone()).set(0.0);
    }
}
