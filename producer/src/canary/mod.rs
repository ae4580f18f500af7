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
//! holds a run's records in `pseq` order, a record the broker lost after
//! acknowledging it shows as a gap and one written twice as a duplicate.
//! At the canary's low rates one record per request costs nothing worth
//! batching.
//! The canary is idempotent as the Job is (`PRODUCER_IDEMPOTENCE`, on by
//! default, as in Kafka's Java producer since 3.0): a record keeps its
//! sequence numbers across resends and the broker writes it once, so a
//! duplicate the consumer counts is one the platform made despite
//! idempotence, not the expected echo of a lost acknowledgement after a
//! broker restart. With `PRODUCER_IDEMPOTENCE=false` such resends show as
//! duplicates. The numbering rules are the Job's ([`crate::sequence`]).
//!
//! Beside the senders, [`reconcile`] reads the cluster metadata every
//! `CANARY_RECONCILE_INTERVAL_MS`: leadership metrics, and partitions that
//! appeared (a loop starts sending to each; `PRODUCER_RATE` is then shared
//! by more partitions); with `CANARY_TOPIC_BALANCE` it also places the
//! topic, one partition led by each live broker ([`placement`]).

mod placement;
pub(crate) mod reconcile;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, Utc};
use common::{metrics as m, window::WindowRatio};
use kafka_base::backoff::Backoff;
use metrics::{Counter, Gauge};
use rskafka::{
    client::{
        partition::{Compression, PartitionClient, UnknownTopicHandling},
        Client,
    },
    record::Record,
};
use tokio::{sync::watch, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    sequence::{Answer, BatchSequence, ProducerIdAndEpoch, Sequences, Verdict},
    summary::Summary,
};

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
    client: Arc<Client>,
    topic: String,
    run_id: String,
    run_start_ms: i64,
    record_size: usize,
    compression: Compression,
    /// Records per second over all partitions.
    rate: f64,
    /// Pause between records of one partition, in nanoseconds: the
    /// partition count over the rate, updated when partitions appear.
    interval_ns: AtomicU64,
    backoff: Backoff,
    /// How long a produce request may wait for its answer.
    request_timeout: Duration,
    /// `None` with `PRODUCER_IDEMPOTENCE=false`.
    idempotence: Option<Idempotence>,
    totals: Totals,
}

/// The run's producer id and every partition's sequence numbers.
struct Idempotence {
    sequences: std::sync::Mutex<Sequences>,
    /// One `InitProducerId` at a time, after the epoch ran out.
    renewing: tokio::sync::Mutex<()>,
}

/// A record's sequence numbers, and whether they were given again after
/// an epoch bump (the rules then bump no more for it).
#[derive(Debug, Clone, Copy)]
struct Numbered {
    sequence: BatchSequence,
    renumbered: bool,
}

impl Idempotence {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sequences> {
        // The rules never panic while holding the lock; a poisoned one
        // still holds consistent numbers.
        self.sequences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sequence numbers for the record `partition` is about to send, for
    /// the first time or after a bump; `None` on shutdown.
    async fn number(
        &self,
        partition: i32,
        shared: &Shared,
        shutdown: &CancellationToken,
    ) -> Option<Numbered> {
        let mut retries = shared.backoff.retries();
        loop {
            let needs_id = {
                let mut s = self.lock();
                if s.producer().is_some() {
                    if s.must_renumber(partition) {
                        if let Some(sequence) = s.renumber(partition, &[1]).pop() {
                            return Some(Numbered {
                                sequence,
                                renumbered: true,
                            });
                        }
                    } else if let Some(sequence) = s.assign(partition, 1) {
                        return Some(Numbered {
                            sequence,
                            renumbered: false,
                        });
                    }
                }
                s.producer().is_none()
            };
            if needs_id {
                self.renew(shared, shutdown).await?;
                continue;
            }
            // The partition's last record still outstanding under an older
            // epoch: its own task settles every record before numbering the
            // next, so this is not expected; said, not waited for silently.
            warn!(
                partition,
                "canary: the partition's previous record is not settled yet; waiting"
            );
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(retries.next_delay()) => {}
            }
        }
    }

    /// After 32767 epoch bumps: a new producer id, asked for until given
    /// or until `shutdown`.
    async fn renew(&self, shared: &Shared, shutdown: &CancellationToken) -> Option<()> {
        let _one = self.renewing.lock().await;
        let mut retries = shared.backoff.retries();
        while self.lock().producer().is_none() {
            info!("canary: producer epoch exhausted, asking for a new producer id");
            let e = tokio::select! {
                () = shutdown.cancelled() => return None,
                r = shared.client.init_producer_id() => match r {
                    Ok(id) => {
                        info!(producer_id = id.id, producer_epoch = id.epoch, "canary: new producer id");
                        self.lock().set_producer(id);
                        break;
                    }
                    Err(e) => e,
                },
            };
            warn!(error = %e, "canary: no new producer id yet");
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(retries.next_delay()) => {}
            }
        }
        Some(())
    }

    /// What the broker's answer means for the record; whether a resend
    /// keeps its numbers (otherwise [`number`](Self::number) gives new ones).
    fn settle(
        &self,
        partition: i32,
        numbered: Numbered,
        answer: Answer,
        may_retry: bool,
    ) -> (Verdict, bool) {
        let mut s = self.lock();
        let verdict = s.settle(
            partition,
            &numbered.sequence,
            1,
            numbered.renumbered,
            answer,
            may_retry,
        );
        s.bump_if_requested();
        let keep = verdict == Verdict::Retry && !s.must_renumber(partition);
        (verdict, keep)
    }
}

impl Shared {
    fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns.load(Ordering::Relaxed))
    }

    fn set_partitions(&self, n: usize) {
        let d = Duration::from_secs_f64(n.max(1) as f64 / self.rate);
        self.interval_ns.store(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// What the run's start set up for the canary.
pub(crate) struct Connected {
    pub(crate) client: Arc<Client>,
    /// The clients of the partitions known at the start.
    pub(crate) producers: BTreeMap<i32, Arc<PartitionClient>>,
    /// With idempotence: the producer id from `InitProducerId`.
    pub(crate) idempotent: Option<ProducerIdAndEpoch>,
}

/// Sends canary records to every partition in `connected`, and to each
/// partition `partitions` announces later, until `shutdown`; then drains
/// and returns the summary.
pub(crate) async fn produce_forever(
    config: &crate::Config,
    connected: Connected,
    mut partitions: watch::Receiver<BTreeSet<i32>>,
    rate: f64,
    record_size: usize,
    shutdown: &CancellationToken,
) -> Summary {
    let Connected {
        client,
        producers,
        idempotent,
    } = connected;
    let started = Instant::now();
    let now = Utc::now();
    let run_start_ms = now.timestamp_millis();
    let shared = Arc::new(Shared {
        client,
        topic: config.topic.clone(),
        run_id: format!("{}@{run_start_ms}", config.run_id),
        run_start_ms,
        record_size,
        compression: config.compression,
        rate,
        interval_ns: AtomicU64::new(0),
        backoff: config.kafka.retry_backoff(),
        request_timeout: config.kafka.request_timeout,
        idempotence: idempotent.map(|id| Idempotence {
            sequences: std::sync::Mutex::new(Sequences::new(id)),
            renewing: tokio::sync::Mutex::new(()),
        }),
        totals: Totals::default(),
    });
    shared.set_partitions(producers.len());
    info!(topic = %config.topic, run_id = %shared.run_id, partitions = producers.len(), rate, "canary: sending until stopped");
    let mut sending: BTreeSet<i32> = producers.keys().copied().collect();
    let mut tasks = JoinSet::new();
    for (p, pc) in producers {
        tasks.spawn(partition_loop(
            p,
            Some(pc),
            Arc::clone(&shared),
            shutdown.clone(),
        ));
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = partitions.changed() => {
                if changed.is_err() {
                    // The metadata loop ended: no partition appears any more.
                    shutdown.cancelled().await;
                    break;
                }
                let new: Vec<i32> = partitions
                    .borrow_and_update()
                    .difference(&sending)
                    .copied()
                    .collect();
                if new.is_empty() {
                    continue;
                }
                sending.extend(&new);
                shared.set_partitions(sending.len());
                info!(topic = %config.topic, ?new, partitions = sending.len(), "canary: sending to new partitions too");
                for p in new {
                    tasks.spawn(partition_loop(p, None, Arc::clone(&shared), shutdown.clone()));
                }
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            warn!(error = %e, "canary partition task failed");
        }
    }
    let t = &shared.totals;
    let sent = t.sent.load(Ordering::Relaxed);
    let acked = t.acked.load(Ordering::Relaxed);
    let (producer, epoch_bumps) = shared.idempotence.as_ref().map_or((None, 0), |i| {
        let s = i.lock();
        (s.producer(), s.bumps())
    });
    Summary {
        topic: config.topic.clone(),
        run_id: shared.run_id.clone(),
        records: sent,
        acked,
        failed: t.failed.load(Ordering::Relaxed),
        retries: t.retries.load(Ordering::Relaxed),
        bytes: t.bytes.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        producer_id: producer.or(idempotent).map(|p| p.id),
        producer_epoch: producer.map(|p| p.epoch),
        epoch_bumps,
        ..Summary::default()
    }
}

/// The client of a partition that appeared while running: looked up (its
/// leader found) until it is, or until `shutdown`.
async fn partition_client(
    shared: &Shared,
    partition: i32,
    shutdown: &CancellationToken,
) -> Option<Arc<PartitionClient>> {
    let mut retries = shared.backoff.retries();
    loop {
        let lookup = shared.client.partition_client(
            shared.topic.as_str(),
            partition,
            UnknownTopicHandling::Retry,
        );
        let e = tokio::select! {
            () = shutdown.cancelled() => return None,
            r = lookup => match r {
                Ok(pc) => return Some(Arc::new(pc)),
                Err(e) => e,
            },
        };
        warn!(topic = %shared.topic, partition, error = %e, "canary: cannot reach the new partition's leader yet");
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(retries.next_delay()) => {}
        }
    }
}

/// One partition: a record every interval, each sent until acknowledged.
/// `pc` is `None` for a partition that appeared while running.
async fn partition_loop(
    partition: i32,
    pc: Option<Arc<PartitionClient>>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let metrics = PartitionMetrics::new(&shared.topic, partition);
    let pc = match pc {
        Some(pc) => pc,
        None => match partition_client(&shared, partition, &shutdown).await {
            Some(pc) => pc,
            None => return,
        },
    };
    let mut next = Instant::now();
    let mut availability = WindowRatio::new(AVAILABILITY_WINDOW);
    let totals = &shared.totals;
    let mut pseq: u64 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        // Behind schedule (a slow broker) the canary sends slower, not in a
        // burst.
        next = (next + shared.interval()).max(Instant::now());
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
        let mut retries = shared.backoff.retries();
        let mut attempt = 0u32;
        // With idempotence: the record's numbers, kept across resends
        // unless an epoch bump gives it new ones.
        let mut numbered: Option<Numbered> = None;
        loop {
            if let (Some(idem), None) = (&shared.idempotence, numbered) {
                numbered = idem.number(partition, &shared, &shutdown).await;
                if numbered.is_none() {
                    totals.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
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
            // One attempt per request: resends are this loop's, in order
            // (rskafka's `produce` would resend inside, beyond idempotence's
            // numbering). On the signal the request on the wire still gets
            // its answer, for DRAIN_ON_SIGNAL; no resend starts after it.
            let produce = pc.produce_once(
                vec![record],
                shared.compression,
                numbered.map(|n| n.sequence),
                shared.request_timeout,
            );
            let result = tokio::select! {
                r = produce => Some(r),
                () = async {
                    shutdown.cancelled().await;
                    tokio::time::sleep(DRAIN_ON_SIGNAL).await;
                } => None,
            };
            let Some(result) = result else {
                totals.failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let error = match (result, &shared.idempotence, numbered) {
                (Ok(_), Some(idem), Some(n)) => {
                    idem.settle(partition, n, Answer::Written, true);
                    None
                }
                (Ok(_), ..) => None,
                (Err(e), Some(idem), Some(n)) => {
                    // A record refused for what it is (too large, not
                    // authorised) was not written and the broker's sequence
                    // did not move: the canary sends it again as it is,
                    // where the Job gives it up and bumps the epoch over the
                    // gap. Bumping at every resend of a lasting refusal
                    // would only churn epochs.
                    let answer = match Answer::of(&e) {
                        Answer::Rejected => Answer::Transient,
                        a => a,
                    };
                    let (verdict, keep) =
                        idem.settle(partition, n, answer, !shutdown.is_cancelled());
                    if !keep {
                        numbered = None;
                    }
                    // DUPLICATE_SEQUENCE_NUMBER: written by an earlier send.
                    (verdict != Verdict::Acked).then_some(e)
                }
                (Err(e), ..) => Some(e),
            };
            match error {
                None => {
                    metrics.acks.increment(1);
                    metrics
                        .ack_latency
                        .record(first_send.elapsed().as_secs_f64());
                    availability.add(Instant::now(), 1, 0);
                    totals.acked.fetch_add(1, Ordering::Relaxed);
                    totals.bytes.fetch_add(bytes, Ordering::Relaxed);
                    break;
                }
                Some(e) => {
                    metrics.errors.increment(1);
                    availability.add(Instant::now(), 0, 1);
                    metrics
                        .availability
                        .set(availability.gauge_value(Instant::now()));
                    warn!(topic = pc.topic(), partition = pc.partition(), pseq, attempt, error = %e, "canary record not acknowledged; sending it again");
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            totals.failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        () = tokio::time::sleep(retries.next_delay()) => {}
                    }
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
