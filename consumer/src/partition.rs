//! One assigned partition: a fetch task reads batches with rskafka into a
//! small bounded channel (backpressure: at most `buffer_batches` batches
//! wait), a handler task handles them in order and publishes how far it got.
//!
//! Memory: a fetched batch holds a share of the member's buffer budget
//! ([`Budget`], decoded bytes) from its decoding until it is handled, and
//! the fetch size adapts so that one fetch decodes to about that share. The
//! broker's fetch limit counts compressed bytes: with well-compressing data
//! a fixed fetch size decoded to many times the budget.
//!
//! Only the handler's position is ever committed, so a record is committed
//! only after it was handled (at-least-once).
//!
//! Transactions: fetches read committed data, as Kafka's Java consumer does
//! (the patched rskafka leaves out aborted records and transaction markers).
//! A fetch says where the next one starts, past markers and aborted records
//! too, and that position goes through the handler like a batch, so the
//! committed offset moves past them in order. An open transaction holds the
//! partition at its last stable offset, which is no stall.
//!
//! Decompression bombs: a fetch decodes at most `CONSUMER_DECODED_BATCH_MAX_BYTES`.
//! A batch that alone decodes to more stalls its partition (retried with
//! backoff, logged with its offsets, counted, shown on /readyz): skipping
//! it would lose whatever records it holds, so the operator decides.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use common::metrics as m;
use kafka_base::backoff::Backoff;
use rskafka::{
    client::{
        error::{Error as ClientError, ProtocolError},
        partition::{OffsetAt, PartitionClient, UnknownTopicHandling},
        Client,
    },
    record::RecordAndOffset,
};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::{
    config::{OffsetReset, MIN_FETCH_BYTES},
    handler::{record_span, RecordHandler},
    progress::Progress,
};

/// Records handled since the last commit, over all of a member's
/// partitions: wakes the member's loop when `CONSUMER_COMMIT_MAX_RECORDS`
/// is reached, so a crash re-delivers about that many records at most
/// however fast they are handled (the commit interval alone bounds time,
/// not records).
#[derive(Debug)]
pub struct HandledSinceCommit {
    count: AtomicU64,
    /// 0 = off.
    threshold: u64,
    reached: Notify,
}

impl HandledSinceCommit {
    /// A counter that wakes [`reached`](Self::reached) at `threshold`
    /// records (never when 0).
    pub fn new(threshold: u64) -> Arc<Self> {
        Arc::new(Self {
            count: AtomicU64::new(0),
            threshold,
            reached: Notify::new(),
        })
    }

    fn add(&self, n: u64) {
        if self.threshold == 0 || n == 0 {
            return;
        }
        let before = self.count.fetch_add(n, Ordering::Relaxed);
        if before < self.threshold && before + n >= self.threshold {
            self.reached.notify_one();
        }
    }

    /// Starts counting again; call before reading the positions to commit,
    /// so records handled meanwhile count towards the next commit.
    pub fn restart(&self) {
        self.count.store(0, Ordering::Relaxed);
    }

    /// Resolves once the threshold is reached (at once if it was reached
    /// while nobody waited). Never resolves when the threshold is 0.
    pub async fn reached(&self) {
        if self.threshold == 0 {
            std::future::pending::<()>().await;
        }
        self.reached.notified().await;
    }
}

/// Bytes per fetch for each of `partitions` partitions, so that what a member
/// holds fetched but not handled — per partition `buffer_batches` queued
/// batches, one being handled and one being decoded — stays within `budget`
/// (`CONSUMER_BUFFER_MAX_BYTES`): `budget / partitions / (buffer_batches +
/// 2)`, at least [`MIN_FETCH_BYTES`] and at most `fetch_max_bytes`
/// (`CONSUMER_FETCH_MAX_BYTES`, which wins when set below the floor). A
/// one-partition member keeps full-size fetches, a member with many
/// partitions fetches less from each.
pub fn fetch_bytes_per_partition(
    budget: u64,
    partitions: usize,
    buffer_batches: usize,
    fetch_max_bytes: i32,
) -> i32 {
    let batches_held = buffer_batches.saturating_add(2) as u64;
    let share = budget / (partitions.max(1) as u64) / batches_held;
    let share = i32::try_from(share).unwrap_or(i32::MAX);
    share.max(MIN_FETCH_BYTES).min(fetch_max_bytes)
}

/// The member's buffer budget (`CONSUMER_BUFFER_MAX_BYTES`): decoded bytes
/// of fetched records not yet handled, over all its partitions. Counted in
/// KiB, so that a budget up to 4 TiB fits the semaphore's `u32` permits.
#[derive(Debug, Clone)]
pub struct Budget {
    kib: Arc<Semaphore>,
    total_kib: u32,
}

/// What a decoded record is counted as beyond its key, value and headers:
/// `RecordAndOffset`, its allocations and the header map.
const RECORD_OVERHEAD: usize = 96;

impl Budget {
    /// A budget of `bytes` (at least 1 KiB).
    pub fn new(bytes: u64) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let total_kib = total_kib.min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Decoded size of `records`, in bytes.
    fn size_of(records: &[RecordAndOffset]) -> usize {
        records
            .iter()
            .map(|r| r.record.approximate_size() + RECORD_OVERHEAD)
            .sum()
    }

    /// Waits until `bytes` fit the budget (a batch larger than the whole
    /// budget waits for all of it, so it still goes through, alone).
    async fn acquire(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib);
        Arc::clone(&self.kib).acquire_many_owned(kib).await.ok()
    }
}

/// The smallest fetch size the adaptation goes down to. The broker returns
/// at least one whole record batch whatever the size, so a small size only
/// means "one batch at a time" for data that compresses well.
const MIN_ADAPTED_FETCH_BYTES: i32 = 1024;

/// The next fetch size: scaled so the next fetch decodes to about `target`
/// bytes, given that asking for `asked` decoded to `decoded`; within
/// [`MIN_ADAPTED_FETCH_BYTES`] (or `max` when lower) and `max`. Shrinks or
/// grows by at most 4× at a time, so one odd batch does not swing it.
pub fn next_fetch_size(asked: i32, decoded: usize, target: usize, max: i32) -> i32 {
    let floor = MIN_ADAPTED_FETCH_BYTES.min(max);
    if decoded == 0 {
        return asked.clamp(floor, max);
    }
    let scaled = asked as f64 * (target as f64 / decoded as f64).clamp(0.25, 4.0);
    (scaled.min(f64::from(i32::MAX)) as i32).clamp(floor, max)
}

/// Settings a partition worker needs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Bytes per fetch: [`fetch_bytes_per_partition`] of the assignment,
    /// also the decoded size a fetch aims at; never exceeded.
    pub fetch_max_bytes: i32,
    /// The member's buffer budget, shared by its partitions.
    pub budget: Budget,
    /// Broker-side wait.
    pub fetch_max_wait: Duration,
    /// Batches buffered ahead of the handler.
    pub buffer_batches: usize,
    /// Most bytes one fetch may decode to (`CONSUMER_DECODED_BATCH_MAX_BYTES`).
    pub decoded_batch_max_bytes: usize,
    /// Start policy without a commit.
    pub reset: OffsetReset,
    /// Backoff bounds after errors.
    pub backoff_initial: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// The bootstrap host, for the `server.address` span attribute.
    pub server_address: String,
    /// The group id, for the `messaging.consumer.group.name` span attribute.
    pub group: String,
    /// Counts handled records towards the next commit.
    pub handled: Arc<HandledSinceCommit>,
}

/// A running partition worker.
#[derive(Debug)]
pub struct Worker {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Its progress.
    pub progress: Arc<Progress>,
    stop: CancellationToken,
    fetch: tokio::task::JoinHandle<()>,
    handle: tokio::task::JoinHandle<()>,
    watch: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Starts fetching `topic`/`partition` at `committed` (or per the reset
    /// policy when -1), handling records with `handler`.
    pub fn start(
        client: Arc<Client>,
        topic: String,
        partition: i32,
        committed: i64,
        handler: Arc<dyn RecordHandler>,
        settings: WorkerSettings,
        parent: &CancellationToken,
    ) -> Self {
        let stop = parent.child_token();
        let progress = Arc::new(Progress::new(
            if committed >= 0 { committed } else { -1 },
            committed,
        ));
        progress.touch();
        let (tx, rx) = mpsc::channel::<Fetched>(settings.buffer_batches.max(1));
        let server_address = settings.server_address.clone();
        let group = settings.group.clone();
        handler.assigned(&topic, partition);
        let watch = tokio::spawn(crate::lag::watch(
            (group.clone(), topic.clone(), partition),
            Arc::clone(&progress),
            Arc::clone(&handler),
            stop.clone(),
        ));
        let handled = Arc::clone(&settings.handled);
        let fetch = tokio::spawn(fetch_loop(
            client,
            topic.clone(),
            partition,
            Arc::clone(&progress),
            settings,
            tx,
            stop.clone(),
        ));
        let handle = tokio::spawn(handle_loop(
            topic.clone(),
            partition,
            (group, server_address),
            (Arc::clone(&progress), handled),
            handler,
            rx,
            stop.clone(),
        ));
        Self {
            topic,
            partition,
            progress,
            stop,
            fetch,
            handle,
            watch,
        }
    }

    /// Stops fetching, lets the handler finish the record it is on, and
    /// waits up to `within`. Returns the position to commit (-1 if none).
    pub async fn stop(self, within: Duration) -> i64 {
        self.stop.cancel();
        let fetch_abort = self.fetch.abort_handle();
        let handle_abort = self.handle.abort_handle();
        let (fetch, handle) = (self.fetch, self.handle);
        let finished = tokio::time::timeout(within, async {
            let _ = handle.await;
            let _ = fetch.await;
        })
        .await;
        if finished.is_err() {
            // A handler stuck on a record: stop it rather than leave it
            // running detached. Its record was not handled, so the position
            // (and what gets committed) stays before it.
            warn!(topic = %self.topic, partition = self.partition, "handler did not stop in time; aborting it");
            handle_abort.abort();
            fetch_abort.abort();
        }
        // Ends at once on the stop: zeroes the partition's lag seconds.
        let _ = self.watch.await;
        self.progress.position.load(Ordering::Acquire)
    }
}

/// A fetched batch and its share of the [`Budget`].
#[derive(Debug)]
struct Fetched {
    records: Vec<RecordAndOffset>,
    /// The position once `records` are handled: past the transaction
    /// markers and aborted records the fetch passed over too.
    next_offset: i64,
    /// None for a fetch with no record to hold.
    _permit: Option<OwnedSemaphorePermit>,
}

async fn fetch_loop(
    client: Arc<Client>,
    topic: String,
    partition: i32,
    progress: Arc<Progress>,
    settings: WorkerSettings,
    tx: mpsc::Sender<Fetched>,
    stop: CancellationToken,
) {
    let mut retries = Backoff::new(settings.backoff_initial, settings.backoff_max).retries();
    let pc = loop {
        let attempt = tokio::select! {
            () = stop.cancelled() => return,
            r = client.partition_client(topic.as_str(), partition, UnknownTopicHandling::Retry) => r,
        };
        match attempt {
            Ok(pc) => break pc,
            Err(e) => {
                note_error(&progress, &topic, partition, "fetch", &e);
                if !retries.sleep(&stop).await {
                    return;
                }
            }
        }
    };
    let mut next = progress.position.load(Ordering::Acquire);
    if next < 0 {
        match reset_offset(&pc, settings.reset, &stop, &progress, &settings).await {
            Some(o) => {
                info!(topic = %topic, partition, offset = o, policy = ?settings.reset, "no committed offset; starting per auto.offset.reset");
                next = o;
                progress.position.store(o, Ordering::Release);
            }
            None => return,
        }
    }
    retries.reset();
    let max_wait_ms = i32::try_from(settings.fetch_max_wait.as_millis()).unwrap_or(i32::MAX);
    let target = usize::try_from(settings.fetch_max_bytes).unwrap_or(usize::MAX);
    let share = target.saturating_mul(settings.buffer_batches.saturating_add(2));
    // Start small and let the adaptation grow it: the first fetch cannot
    // know how well the data compresses.
    let mut ask = MIN_FETCH_BYTES.min(settings.fetch_max_bytes);
    loop {
        let asked_at = next;
        let fetched = tokio::select! {
            () = stop.cancelled() => return,
            r = pc.fetch_records_bounded(next, 1..ask, max_wait_ms, settings.decoded_batch_max_bytes) => r,
        };
        match fetched {
            Ok(fetched) => {
                retries.reset();
                progress
                    .high_watermark
                    .fetch_max(fetched.high_watermark, Ordering::Relaxed);
                if let Some(lso) = fetched.last_stable_offset {
                    progress
                        .last_stable_offset
                        .fetch_max(lso, Ordering::Relaxed);
                }
                if let Ok(mut e) = progress.last_error.lock() {
                    *e = None;
                }
                let records = fetched.records;
                // The handler has handled everything before this fetch, so
                // its first record is the oldest unhandled one, also while
                // it waits for buffer budget.
                if progress.position.load(Ordering::Acquire) >= asked_at {
                    if let Some(first) = records.first() {
                        progress.set_head(first);
                    }
                }
                let decoded = Budget::size_of(&records);
                // A short fetch (caught up) grows the size back towards the
                // share, which is harmless: the next full one shrinks it.
                ask = next_fetch_size(ask, decoded, target, settings.fetch_max_bytes);
                if fetched.next_offset <= next {
                    continue;
                }
                next = fetched.next_offset;
                // Charged at most this partition's part of the budget, so a
                // partition whose handler is stuck can never hold the budget
                // the others need (a batch over it, before the fetch size
                // has adapted, is let through over budget instead). Only
                // markers or aborted records: nothing to hold, but the
                // position goes through the handler, after what it has.
                let permit = if records.is_empty() {
                    None
                } else {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        p = settings.budget.acquire(decoded.min(share)) => match p { Some(p) => Some(p), None => return },
                    }
                };
                let batch = Fetched {
                    records,
                    next_offset: next,
                    _permit: permit,
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    sent = tx.send(batch) => if sent.is_err() { return },
                }
            }
            Err(ClientError::DecodedBatchTooLarge {
                base_offset,
                last_offset,
                limit,
            }) => {
                // Stall, visibly: the records in it are not lost, and the
                // operator raises the limit or moves the group past it.
                warn!(
                    topic = %topic,
                    partition,
                    base_offset,
                    last_offset,
                    limit,
                    "record batch decodes to more than CONSUMER_DECODED_BATCH_MAX_BYTES; partition stalled"
                );
                metrics::counter!(m::CONSUMER_ERRORS, "kind" => "oversized_batch").increment(1);
                if let Ok(mut e) = progress.last_error.lock() {
                    *e = Some(format!(
                        "record batch at offsets {base_offset}..={last_offset} decodes to more than {limit} bytes (CONSUMER_DECODED_BATCH_MAX_BYTES)"
                    ));
                }
                if !retries.sleep(&stop).await {
                    return;
                }
            }
            Err(ClientError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }) => {
                warn!(topic = %topic, partition, offset = next, policy = ?settings.reset, "offset out of range (retention or deleted records); resetting");
                metrics::counter!(m::CONSUMER_ERRORS, "kind" => "offset_out_of_range").increment(1);
                match reset_offset(&pc, settings.reset, &stop, &progress, &settings).await {
                    Some(o) => {
                        next = o;
                        progress.position.store(o, Ordering::Release);
                    }
                    None => return,
                }
            }
            Err(e) => {
                note_error(&progress, &topic, partition, "fetch", &e);
                if !retries.sleep(&stop).await {
                    return;
                }
            }
        }
    }
}

async fn reset_offset(
    pc: &PartitionClient,
    reset: OffsetReset,
    stop: &CancellationToken,
    progress: &Progress,
    settings: &WorkerSettings,
) -> Option<i64> {
    let at = match reset {
        OffsetReset::Earliest => OffsetAt::Earliest,
        OffsetReset::Latest => OffsetAt::Latest,
    };
    let mut retries = Backoff::new(settings.backoff_initial, settings.backoff_max).retries();
    loop {
        let r = tokio::select! {
            () = stop.cancelled() => return None,
            r = pc.get_offset(at) => r,
        };
        match r {
            Ok(o) => return Some(o),
            Err(e) => {
                note_error(progress, pc.topic(), pc.partition(), "list_offsets", &e);
                if !retries.sleep(stop).await {
                    return None;
                }
            }
        }
    }
}

fn note_error(
    progress: &Progress,
    topic: &str,
    partition: i32,
    kind: &'static str,
    e: &ClientError,
) {
    warn!(topic, partition, kind, error = %e, "fetch failed; retrying with backoff");
    metrics::counter!(m::CONSUMER_ERRORS, "kind" => kind).increment(1);
    if let Ok(mut last) = progress.last_error.lock() {
        *last = Some(format!("{kind}: {e}"));
    }
}

/// How a failing handler is retried on the same record.
const HANDLER_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));

/// Records handled between two yields to the runtime.
const YIELD_EVERY: usize = 64;

async fn handle_loop(
    topic: String,
    partition: i32,
    (group, server_address): (String, String),
    (progress, handled): (Arc<Progress>, Arc<HandledSinceCommit>),
    handler: Arc<dyn RecordHandler>,
    mut rx: mpsc::Receiver<Fetched>,
    stop: CancellationToken,
) {
    let part = partition.to_string();
    let records = metrics::counter!(m::CONSUMER_RECORDS, "topic" => topic.clone(), "partition" => part.clone());
    let bytes = metrics::counter!(m::CONSUMER_BYTES, "topic" => topic.clone(), "partition" => part);
    loop {
        let batch = tokio::select! {
            // Stop takes priority: buffered batches are left for the next
            // owner of the partition, who fetches them from the commit.
            biased;
            () = stop.cancelled() => return,
            b = rx.recv() => match b { Some(b) => b, None => return },
        };
        // The batch's budget share is given back when `batch` drops.
        if let Some(first) = batch.records.first() {
            progress.set_head(first);
        }
        for (i, r) in batch.records.iter().enumerate() {
            if stop.is_cancelled() {
                return;
            }
            // A fetched batch can hold thousands of records and a handler
            // that never waits gives no await point: yield now and then so
            // /healthz, /readyz and /metrics on the same runtime are not held
            // up for a whole batch (scripts/load-test.sh: probe p99 was
            // ~250 ms behind 1 MiB batches, ~6 ms with this).
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                handled.add(YIELD_EVERY as u64);
                tokio::task::yield_now().await;
            }
            let mut retries = HANDLER_RETRY.retries();
            loop {
                let span = record_span(&group, &topic, partition, r, &server_address);
                let outcome = tokio::select! {
                    // A record abandoned here is not committed: the next
                    // owner of the partition handles it again.
                    biased;
                    o = handler.handle(&topic, partition, r).instrument(span) => o,
                    () = stop.cancelled() => return,
                };
                match outcome {
                    Ok(()) => break,
                    Err(e) => {
                        metrics::counter!(m::CONSUMER_ERRORS, "kind" => "handler").increment(1);
                        let wait = retries.next_delay();
                        warn!(topic = %topic, partition, offset = r.offset, error = %e, retry_in_ms = wait.as_millis() as u64, "handler failed; retrying the record");
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            records.increment(1);
            bytes.increment(r.record.approximate_size() as u64);
            if let Some(next) = batch.records.get(i + 1) {
                progress.set_head(next);
            }
            progress.position.store(r.offset + 1, Ordering::Release);
            progress.touch();
        }
        // Past the markers and aborted records the fetch passed over too.
        progress
            .position
            .fetch_max(batch.next_offset, Ordering::AcqRel);
        progress.touch();
        handled.add((batch.records.len() % YIELD_EVERY) as u64);
        debug!(topic = %topic, partition, n = batch.records.len(), "batch handled");
        // A handler that never waits would keep this worker thread to
        // itself; let other partitions' tasks run between batches.
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1_048_576;

    #[test]
    fn the_buffer_budget_is_split_over_the_assigned_partitions() {
        // The defaults: 8 MiB, 2 buffered batches, 1 MiB fetches.
        let split = |partitions| fetch_bytes_per_partition(8 * MIB, partitions, 2, 1_048_576);
        // One partition: 8 MiB / 4 batches = 2 MiB, capped at the fetch size.
        assert_eq!(split(1), 1_048_576);
        assert_eq!(split(0), 1_048_576, "no partitions counts as one");
        // Six: 8 MiB / 6 / 4 = 349 525 bytes each.
        assert_eq!(split(6), 349_525);
        assert!(6 * 4 * split(6) as u64 <= 8 * MIB);
        // A hundred would be 20 971 bytes each: the floor.
        assert_eq!(split(100), MIN_FETCH_BYTES);
        // A budget below the floor still fetches the floor.
        assert_eq!(
            fetch_bytes_per_partition(1_000, 1, 2, 1_048_576),
            MIN_FETCH_BYTES
        );
        // A fetch size set below the floor wins over it.
        assert_eq!(fetch_bytes_per_partition(8 * MIB, 100, 2, 4_096), 4_096);
        // More buffered batches, smaller fetches.
        assert_eq!(fetch_bytes_per_partition(8 * MIB, 2, 6, 1_048_576), 524_288);
        // A huge budget does not overflow the i32 fetch size.
        assert_eq!(
            fetch_bytes_per_partition(u64::MAX, 1, 1, i32::MAX),
            i32::MAX
        );
    }

    #[test]
    fn the_fetch_size_follows_how_the_data_decodes() {
        let target = 349_525;
        let max = 349_525;
        // Data that decodes to 40× its wire size: shrink, at most 4× a step.
        assert_eq!(next_fetch_size(65_536, 65_536 * 40, target, max), 16_384);
        // 20×: shrink to where the next fetch decodes to about the target.
        assert_eq!(next_fetch_size(65_536, 65_536 * 20, target, max), 17_476);
        // Close to the target: scaled proportionally.
        assert_eq!(next_fetch_size(100_000, 200_000, 200_000, max), 100_000);
        assert_eq!(next_fetch_size(100_000, 100_000, 200_000, max), 200_000);
        // Incompressible data grows back to the share, never beyond it.
        assert_eq!(next_fetch_size(262_144, 100, target, max), max);
        // Never below the floor (the broker still returns one whole batch).
        assert_eq!(next_fetch_size(1_024, 10_000_000, target, max), 1_024);
        // A lower CONSUMER_FETCH_MAX_BYTES wins over the floor.
        assert_eq!(next_fetch_size(1_024, 10_000_000, 512, 512), 512);
        // Nothing decoded (an empty fetch): unchanged.
        assert_eq!(next_fetch_size(65_536, 0, target, max), 65_536);
    }

    #[tokio::test]
    async fn the_budget_blocks_until_batches_are_handled_and_lets_an_oversized_one_through() {
        let budget = Budget::new(64 * 1024);
        let a = budget.acquire(48 * 1024).await.expect("fits");
        // 32 KiB more does not fit while `a` is held.
        let pending = tokio::time::timeout(Duration::from_millis(50), budget.acquire(32 * 1024));
        assert!(pending.await.is_err(), "acquired over the budget");
        drop(a);
        let b = tokio::time::timeout(Duration::from_millis(50), budget.acquire(32 * 1024))
            .await
            .expect("fits once the first batch is handled");
        drop(b);
        // Larger than the whole budget: waits for all of it, then passes.
        let huge = tokio::time::timeout(Duration::from_millis(50), budget.acquire(1 << 30))
            .await
            .expect("an oversized batch is not stuck forever");
        assert!(huge.is_some());
    }

    #[test]
    fn lag_runs_to_the_last_stable_offset_when_known() {
        let p = Progress::new(10, 10);
        assert_eq!(p.lag(), None);
        p.high_watermark.store(20, Ordering::Relaxed);
        assert_eq!(p.lag(), Some(10));
        // An open transaction from offset 10: nothing to read yet, no lag
        // to stall on; kafka_exporter's lag still counts it.
        p.last_stable_offset.store(10, Ordering::Relaxed);
        assert_eq!(p.lag(), Some(0));
        assert_eq!(p.committed_lag(), Some(10));
        p.last_stable_offset.store(15, Ordering::Relaxed);
        assert_eq!(p.lag(), Some(5));
    }

    #[test]
    fn decoded_size_counts_the_per_record_overhead() {
        let record = RecordAndOffset {
            record: rskafka::record::Record {
                key: None,
                value: Some(vec![0; 1000]),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            },
            offset: 0,
        };
        assert_eq!(Budget::size_of(&[record]), 1000 + RECORD_OVERHEAD);
    }
}
