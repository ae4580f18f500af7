//! Continuous canary mode (`--continuous`): canary records to every
//! partition of the topic at `PRODUCER_RATE` (records per second over all
//! partitions), until the shutdown signal; then the record in flight on
//! each partition gets [`DRAIN_ON_SIGNAL`] to be acknowledged, and the
//! summary is logged.
//!
//! A canary record names its run and its place in it, so the consumer
//! group counts exactly what was lost or duplicated (`consumer::canary`):
//! `{"run_id":"…","pseq":7,"run_start_ms":…,"sent_at":"…","payload":"…"}`.
//! `run_id` is new at every start (the configured run id with the start
//! time appended, so a restarted Deployment pod with a fixed
//! `PRODUCER_RUN_ID` still starts a new run), `pseq` counts 0, 1, 2, … per
//! partition within the run.
//!
//! Each partition has one record on the wire at a time, and a record is
//! resent (same `pseq`, same `sent_at`) until acknowledged: so the log
//! holds a run's records in `pseq` order, a resend after a lost
//! acknowledgement shows as a duplicate (it is one, in the log), and a
//! record the broker lost after acknowledging it shows as a gap. At the
//! canary's low rates one record per request costs nothing worth batching.
//! The canary sends without idempotence (`PRODUCER_IDEMPOTENCE` does not
//! apply): a duplicate a resend makes is what it is there to see.

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, Utc};
use common::{metrics as m, window::WindowRatio};
use metrics::{Counter, Gauge};
use rskafka::{
    client::partition::{Compression, PartitionClient},
    record::Record,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::summary::Summary;

/// How long the record in flight may still be acknowledged after SIGTERM.
const DRAIN_ON_SIGNAL: Duration = Duration::from_secs(10);
/// The window of `kafka_canary_produce_availability`.
const AVAILABILITY_WINDOW: Duration = Duration::from_secs(300);

/// Renders a canary record's JSON value, padded to `size` bytes (or the
/// smallest possible when the fixed fields are longer).
pub fn canary_value(
    run_id: &str,
    pseq: u64,
    run_start_ms: i64,
    sent_at: DateTime<Utc>,
    size: usize,
) -> Vec<u8> {
    let sent_at = sent_at.to_rfc3339_opts(SecondsFormat::Nanos, true);
    let mut out = String::with_capacity(size.max(160));
    // run_id was validated to need no JSON escaping.
    let _ = write!(
        out,
        r#"{{"run_id":"{run_id}","pseq":{pseq},"run_start_ms":{run_start_ms},"sent_at":"{sent_at}","payload":""#
    );
    let pad = size.saturating_sub(out.len() + 2);
    out.extend(std::iter::repeat_n('c', pad));
    out.push_str("\"}");
    out.into_bytes()
}

/// What the partition tasks count together, for the summary.
#[derive(Debug, Default)]
struct Totals {
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    bytes: AtomicU64,
}

/// Metric handles of one partition.
struct PartitionMetrics {
    attempts: Counter,
    acks: Counter,
    errors: Counter,
    ack_latency: m::RecordHistogram,
    availability: Gauge,
}

impl PartitionMetrics {
    fn new(topic: &str, partition: i32) -> Self {
        let c = |name: &'static str| m::partition_counter(name, topic, partition);
        Self {
            attempts: c(m::CANARY_PRODUCE_ATTEMPTS),
            acks: c(m::CANARY_PRODUCE_ACKS),
            errors: c(m::CANARY_PRODUCE_ERRORS),
            ack_latency: m::partition_histogram(m::CANARY_ACK_LATENCY, topic, partition),
            availability: m::partition_gauge(m::CANARY_PRODUCE_AVAILABILITY, topic, partition),
        }
    }
}

/// What every partition task shares.
struct Shared {
    run_id: String,
    run_start_ms: i64,
    record_size: usize,
    compression: Compression,
    /// Pause between records of one partition.
    interval: Duration,
    backoff: (Duration, Duration),
    totals: Totals,
}

/// Sends canary records to every partition in `producers` until `shutdown`,
/// then drains and returns the summary.
pub(crate) async fn produce_forever(
    config: &crate::Config,
    producers: std::collections::BTreeMap<i32, Arc<PartitionClient>>,
    rate: f64,
    record_size: usize,
    shutdown: &CancellationToken,
) -> Summary {
    let started = Instant::now();
    let now = Utc::now();
    let run_start_ms = now.timestamp_millis();
    let partitions = producers.len().max(1) as f64;
    let shared = Arc::new(Shared {
        run_id: format!("{}@{run_start_ms}", config.run_id),
        run_start_ms,
        record_size,
        compression: config.compression,
        interval: Duration::from_secs_f64(partitions / rate),
        backoff: (config.kafka.backoff_initial, config.kafka.backoff_max),
        totals: Totals::default(),
    });
    info!(topic = %config.topic, run_id = %shared.run_id, partitions = producers.len(), rate, "canary: sending until stopped");
    let tasks: Vec<_> = producers
        .into_iter()
        .map(|(p, pc)| {
            tokio::spawn(partition_loop(
                pc,
                PartitionMetrics::new(&config.topic, p),
                Arc::clone(&shared),
                shutdown.clone(),
            ))
        })
        .collect();
    for t in tasks {
        if let Err(e) = t.await {
            warn!(error = %e, "canary partition task failed");
        }
    }
    let t = &shared.totals;
    let sent = t.sent.load(Ordering::Relaxed);
    let acked = t.acked.load(Ordering::Relaxed);
    Summary {
        topic: config.topic.clone(),
        run_id: shared.run_id.clone(),
        records: sent,
        acked,
        failed: t.failed.load(Ordering::Relaxed),
        retries: t.retries.load(Ordering::Relaxed),
        bytes: t.bytes.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        ..Summary::default()
    }
}

/// One partition: a record every `interval`, each sent until acknowledged.
async fn partition_loop(
    pc: Arc<PartitionClient>,
    metrics: PartitionMetrics,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(shared.interval);
    // Behind schedule (a slow broker) the canary sends slower, not in a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut availability = WindowRatio::new(AVAILABILITY_WINDOW);
    let totals = &shared.totals;
    let mut pseq: u64 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sent_at = Utc::now();
        let first_send = Instant::now();
        let value = canary_value(
            &shared.run_id,
            pseq,
            shared.run_start_ms,
            sent_at,
            shared.record_size,
        );
        let bytes = value.len() as u64;
        totals.sent.fetch_add(1, Ordering::Relaxed);
        let mut delay = shared.backoff.0;
        let mut attempt = 0u32;
        loop {
            let record = Record {
                key: None,
                value: Some(value.clone()),
                headers: Default::default(),
                timestamp: sent_at,
            };
            metrics.attempts.increment(1);
            if attempt > 0 {
                totals.retries.fetch_add(1, Ordering::Relaxed);
            }
            attempt += 1;
            // On the signal the request on the wire still gets its answer,
            // for DRAIN_ON_SIGNAL; no resend starts after it.
            let produce = pc.produce(vec![record], shared.compression);
            let result = tokio::select! {
                r = produce => Some(r),
                () = async {
                    shutdown.cancelled().await;
                    tokio::time::sleep(DRAIN_ON_SIGNAL).await;
                } => None,
            };
            match result {
                Some(Ok(_)) => {
                    metrics.acks.increment(1);
                    metrics
                        .ack_latency
                        .record(first_send.elapsed().as_secs_f64());
                    availability.add(Instant::now(), 1, 0);
                    totals.acked.fetch_add(1, Ordering::Relaxed);
                    totals.bytes.fetch_add(bytes, Ordering::Relaxed);
                    break;
                }
                Some(Err(e)) => {
                    metrics.errors.increment(1);
                    availability.add(Instant::now(), 0, 1);
                    metrics
                        .availability
                        .set(availability.gauge_value(Instant::now()));
                    warn!(topic = pc.topic(), partition = pc.partition(), pseq, attempt, error = %e, "canary record not acknowledged; sending it again");
                    if shutdown.is_cancelled() {
                        totals.failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            totals.failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(shared.backoff.1);
                }
                None => {
                    totals.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        metrics
            .availability
            .set(availability.gauge_value(Instant::now()));
        pseq += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_padded_and_parses() {
        let at = DateTime::parse_from_rfc3339("2026-11-29T06:00:00.123456789Z")
            .expect("time")
            .with_timezone(&Utc);
        let v = canary_value("r@1", 7, 1_800_000_000_000, at, 300);
        assert_eq!(v.len(), 300);
        let j: serde_json::Value = serde_json::from_slice(&v).expect("json");
        assert_eq!(j["run_id"], "r@1");
        assert_eq!(j["pseq"], 7);
        assert_eq!(j["run_start_ms"], 1_800_000_000_000i64);
        assert_eq!(j["sent_at"], "2026-11-29T06:00:00.123456789Z");
        // Shorter than the fixed fields: the smallest possible value.
        let small = canary_value("r@1", 7, 1, at, 10);
        assert!(serde_json::from_slice::<serde_json::Value>(&small).is_ok());
    }
}
