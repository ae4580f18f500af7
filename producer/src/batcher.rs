//! The producer's batching, with no I/O: records go in per partition,
//! closed batches come out to be sent, outcomes come back.
//!
//! We batch ourselves rather than through rskafka's `BatchProducer`: that
//! one hands every record its own future and broadcast wake-up, which
//! profiling showed as most of the producer's CPU. Here a batch costs one
//! future, and a record a `Vec` push.
//!
//! Rules, each unit-tested below:
//! - a partition has at most one open batch; it closes when the next record
//!   would take it over `max_batch_bytes` (full), when it has waited
//!   `linger` (lingered out), or when [`Batcher::close`] flushes it (no
//!   more records coming, or the in-flight bounds are reached with nothing
//!   on the wire);
//! - records are taken only while fewer than `max_in_flight` records and
//!   `max_in_flight_bytes` bytes are handed over and not yet settled;
//! - batches of one partition go out in the order they closed, at most
//!   `max_requests_per_partition` at a time; a failed batch is sent again
//!   before any later batch of its partition still waiting, with the same
//!   records, rebuilt from its slots;
//! - with idempotence, a batch gets its producer id, epoch and sequence
//!   numbers when it first goes and keeps them; the rules of
//!   [`crate::sequence`] decide when a batch may go and what an answer
//!   means.

use std::collections::{BTreeMap, VecDeque};

use rskafka::record::Record;
use tokio::time::{Duration, Instant};

use crate::sequence::{Answer, BatchSequence, ProducerIdAndEpoch, Sequences, Verdict};

/// Kafka's default `max.in.flight.requests.per.connection`: produce requests
/// of one partition on the wire at once.
pub(crate) const MAX_REQUESTS_PER_PARTITION: usize = 5;

/// The bounds a [`Batcher`] keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long an open batch waits for more records.
    pub(crate) linger: Duration,
    /// Largest batch (approximate record bytes); a single larger record
    /// still goes, alone.
    pub(crate) max_batch_bytes: usize,
    /// Records handed over and not yet acknowledged or given up.
    pub(crate) max_in_flight: usize,
    /// Their bytes.
    pub(crate) max_in_flight_bytes: usize,
    /// Requests of one partition on the wire at once.
    pub(crate) max_requests_per_partition: usize,
}

/// One record's bookkeeping from hand-over to acknowledgement; the record
/// itself lives in its batch until the batch is sent.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The record's sequence number in the run (demo `seq`, input line).
    pub(crate) seq: u64,
    /// When it was handed to the batcher (ack latency starts here).
    pub(crate) handed_over: Instant,
    /// The `send {topic}` span (disabled when tracing is off); it covers
    /// retries and ends with the acknowledgement.
    pub(crate) span: tracing::Span,
}

/// Records of one partition that go out in one produce request.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) partition: i32,
    pub(crate) slots: Vec<Slot>,
    /// The records to send; empty after a failed send, until the batch is
    /// rebuilt from its slots for the retry.
    pub(crate) records: Vec<Record>,
    /// Approximate bytes of its records.
    pub(crate) bytes: usize,
    /// Failed sends so far.
    pub(crate) attempts: u32,
    /// With idempotence, once first sent: producer and first sequence.
    pub(crate) sequence: Option<BatchSequence>,
    /// Its sequence numbers were given again after an epoch bump.
    renumbered: bool,
    /// While open: its linger deadline. Once closed: when it may be sent
    /// (at once, or after the backoff of a failed send).
    not_before: Instant,
}

impl Batch {
    fn new(partition: i32, not_before: Instant) -> Self {
        Self {
            partition,
            slots: Vec::new(),
            records: Vec::new(),
            bytes: 0,
            attempts: 0,
            sequence: None,
            renumbered: false,
            not_before,
        }
    }

    fn first_seq(&self) -> u64 {
        self.slots.first().map_or(0, |s| s.seq)
    }
}

/// The batching state of one run. See the module documentation for its
/// rules.
#[derive(Debug)]
pub(crate) struct Batcher {
    limits: Limits,
    /// Batches still taking records, one per partition.
    open: BTreeMap<i32, Batch>,
    /// Closed batches waiting for a request slot of their partition or, after
    /// a failure, for their backoff; in sending order per partition.
    ready: VecDeque<Batch>,
    /// Requests on the wire per partition.
    requests: BTreeMap<i32, usize>,
    /// Records (and their bytes) handed over and not yet acknowledged or
    /// given up.
    records: usize,
    bytes: usize,
    /// With idempotence: producer id, epoch and sequence numbers.
    sequences: Option<Sequences>,
}

impl Batcher {
    /// A batcher; idempotent when given the producer id and epoch.
    pub(crate) fn new(limits: Limits, idempotent: Option<ProducerIdAndEpoch>) -> Self {
        Self {
            limits,
            open: BTreeMap::new(),
            ready: VecDeque::new(),
            requests: BTreeMap::new(),
            records: 0,
            bytes: 0,
            sequences: idempotent.map(Sequences::new),
        }
    }

    /// With idempotence: the current producer id and epoch (`None` while a
    /// new id is needed: see [`set_producer`](Self::set_producer)), and how
    /// many epoch bumps there were.
    pub(crate) fn producer(&self) -> Option<(Option<ProducerIdAndEpoch>, u64)> {
        self.sequences.as_ref().map(|s| (s.producer(), s.bumps()))
    }

    /// A new producer id, after the epoch ran out.
    pub(crate) fn set_producer(&mut self, producer: ProducerIdAndEpoch) {
        if let Some(s) = &mut self.sequences {
            s.set_producer(producer);
        }
    }

    /// Whether another record may be handed over.
    pub(crate) fn has_room(&self) -> bool {
        self.records < self.limits.max_in_flight && self.bytes < self.limits.max_in_flight_bytes
    }

    /// Records handed over and not yet settled.
    pub(crate) fn outstanding(&self) -> usize {
        self.records
    }

    /// Requests on the wire, over all partitions.
    #[cfg(test)]
    fn requests_in_flight(&self) -> usize {
        self.requests.values().sum()
    }

    /// Hands one record over, of `bytes` approximate size. Closes the
    /// partition's open batch first when the record would not fit in it.
    pub(crate) fn add(&mut self, partition: i32, slot: Slot, record: Record, bytes: usize) {
        let now = slot.handed_over;
        let linger_until = now + self.limits.linger;
        let batch = self
            .open
            .entry(partition)
            .or_insert_with(|| Batch::new(partition, linger_until));
        if !batch.records.is_empty() && batch.bytes + bytes > self.limits.max_batch_bytes {
            let mut full = std::mem::replace(batch, Batch::new(partition, linger_until));
            // Full: it goes now, not at its linger deadline.
            full.not_before = now;
            self.ready.push_back(full);
        }
        batch.records.push(record);
        batch.slots.push(slot);
        batch.bytes += bytes;
        self.records += 1;
        self.bytes += bytes;
    }

    /// Closes the open batches that lingered out by `now`, or all of them
    /// with `flush`; they may be sent at once.
    pub(crate) fn close(&mut self, now: Instant, flush: bool) {
        let due: Vec<i32> = self
            .open
            .iter()
            .filter(|(_, b)| flush || b.not_before <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            if let Some(mut b) = self.open.remove(&p) {
                b.not_before = now;
                self.ready.push_back(b);
            }
        }
    }

    /// Takes every batch that may go now — its backoff over, a request
    /// slot of its partition free, no earlier batch of its partition
    /// waiting — and counts it as on the wire. A batch whose records were
    /// dropped after a failed send gets them back from `rebuild`, slot by
    /// slot, in order.
    pub(crate) fn take_sendable(
        &mut self,
        now: Instant,
        mut rebuild: impl FnMut(&Slot) -> Record,
    ) -> Vec<Batch> {
        self.renumber_after_bump();
        let mut out = Vec::new();
        let mut waiting = VecDeque::with_capacity(self.ready.len());
        while let Some(mut batch) = self.ready.pop_front() {
            let busy = self.requests.get(&batch.partition).copied().unwrap_or(0);
            let held_back = waiting
                .iter()
                .any(|b: &Batch| b.partition == batch.partition);
            if batch.not_before > now
                || busy >= self.limits.max_requests_per_partition
                || held_back
                || !self.sequenced(&mut batch)
            {
                waiting.push_back(batch);
                continue;
            }
            if batch.records.is_empty() {
                batch.records = batch.slots.iter().map(&mut rebuild).collect();
            }
            *self.requests.entry(batch.partition).or_default() += 1;
            out.push(batch);
        }
        self.ready = waiting;
        out
    }

    /// With idempotence, whether `batch` may go now, giving it its
    /// sequence numbers when it goes for the first time.
    fn sequenced(&mut self, batch: &mut Batch) -> bool {
        let Some(seqs) = &mut self.sequences else {
            return true;
        };
        match &batch.sequence {
            Some(seq) => seqs.may_resend(batch.partition, seq),
            None => match seqs.assign(batch.partition, batch.slots.len()) {
                Some(seq) => {
                    batch.sequence = Some(seq);
                    true
                }
                None => false,
            },
        }
    }

    /// Applies a requested epoch bump; a partition it concerns is numbered
    /// again from 0 once none of its batches is on the wire.
    fn renumber_after_bump(&mut self) {
        let Some(seqs) = &mut self.sequences else {
            return;
        };
        seqs.bump_if_requested();
        let due: Vec<i32> = self
            .ready
            .iter()
            .map(|b| b.partition)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|p| seqs.must_renumber(*p) && self.requests.get(p).copied().unwrap_or(0) == 0)
            .collect();
        for p in due {
            let mine = |b: &&mut Batch| b.partition == p && b.sequence.is_some();
            let records: Vec<usize> = self
                .ready
                .iter_mut()
                .filter(mine)
                .map(|b| b.slots.len())
                .collect();
            let fresh = seqs.renumber(p, &records);
            for (b, seq) in self.ready.iter_mut().filter(mine).zip(fresh) {
                b.sequence = Some(seq);
                b.renumbered = true;
            }
        }
    }

    /// What the broker's `answer` to a sent batch means for it (always
    /// [`Verdict::Acked`] for [`Answer::Written`]); `may_retry` is false
    /// once the run stops retrying. With idempotence this is where the
    /// sequence rules apply; the caller then calls [`settled`](Self::settled)
    /// or [`retry`](Self::retry).
    pub(crate) fn judge(&mut self, batch: &Batch, answer: Answer, may_retry: bool) -> Verdict {
        match (&mut self.sequences, &batch.sequence) {
            (Some(seqs), Some(seq)) => seqs.settle(
                batch.partition,
                seq,
                batch.slots.len(),
                batch.renumbered,
                answer,
                may_retry,
            ),
            _ => match answer {
                Answer::Written => Verdict::Acked,
                Answer::Rejected | Answer::InvalidEpoch => Verdict::Fail,
                _ if may_retry => Verdict::Retry,
                _ => Verdict::Fail,
            },
        }
    }

    /// A sent batch was acknowledged (or given up on): its request slot and
    /// its records' share of the in-flight bounds are free again.
    pub(crate) fn settled(&mut self, batch: &Batch) {
        self.request_done(batch.partition);
        self.forget(batch);
    }

    /// A sent batch failed and is to be sent again from `not_before` on,
    /// ahead of the later batches of its partition still waiting. Its
    /// records are dropped now (they are rebuilt when it goes), so a retry
    /// does not keep them twice.
    pub(crate) fn retry(&mut self, mut batch: Batch, not_before: Instant) {
        self.request_done(batch.partition);
        batch.attempts += 1;
        batch.not_before = not_before;
        batch.records.clear();
        let first = batch.first_seq();
        let at = self
            .ready
            .iter()
            .position(|b| b.partition == batch.partition && b.first_seq() > first)
            .unwrap_or(self.ready.len());
        self.ready.insert(at, batch);
    }

    /// Gives up every batch waiting for a retry (shutdown: no new attempts);
    /// returns how many records that was.
    pub(crate) fn drop_retries(&mut self) -> usize {
        let (retrying, fresh): (VecDeque<Batch>, VecDeque<Batch>) =
            self.ready.drain(..).partition(|b| b.attempts > 0);
        self.ready = fresh;
        let mut n = 0;
        for b in retrying {
            n += b.slots.len();
            self.judge(&b, Answer::Transient, false);
            self.forget(&b);
        }
        n
    }

    /// The earliest instant at which [`close`](Self::close) or
    /// [`take_sendable`](Self::take_sendable) could do something new without
    /// an outcome arriving: a linger deadline or the end of a backoff.
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let linger = self.open.values().map(|b| b.not_before).min();
        let retry = self
            .ready
            .iter()
            .map(|b| b.not_before)
            .filter(|t| *t > now)
            .min();
        linger.into_iter().chain(retry).min()
    }

    fn request_done(&mut self, partition: i32) {
        if let Some(n) = self.requests.get_mut(&partition) {
            *n = n.saturating_sub(1);
        }
    }

    fn forget(&mut self, batch: &Batch) {
        self.records -= batch.slots.len();
        self.bytes -= batch.bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PART: i32 = 0;

    fn limits() -> Limits {
        Limits {
            linger: Duration::from_millis(5),
            max_batch_bytes: 100,
            max_in_flight: 1_000,
            max_in_flight_bytes: 10_000,
            max_requests_per_partition: MAX_REQUESTS_PER_PARTITION,
        }
    }

    fn batcher(limits: Limits) -> Batcher {
        Batcher::new(limits, None)
    }

    fn record(seq: u64) -> Record {
        Record {
            key: None,
            value: Some(seq.to_be_bytes().to_vec()),
            headers: BTreeMap::new(),
            timestamp: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn seq_of(r: &Record) -> u64 {
        let v: [u8; 8] = r
            .value
            .as_deref()
            .unwrap_or_default()
            .try_into()
            .expect("8 bytes");
        u64::from_be_bytes(v)
    }

    fn slot(seq: u64, now: Instant) -> Slot {
        Slot {
            seq,
            handed_over: now,
            span: tracing::Span::none(),
        }
    }

    /// Adds records `seqs` of `bytes` each to `partition` at `now`.
    fn add(
        b: &mut Batcher,
        partition: i32,
        seqs: std::ops::Range<u64>,
        bytes: usize,
        now: Instant,
    ) {
        for s in seqs {
            b.add(partition, slot(s, now), record(s), bytes);
        }
    }

    fn seqs(batch: &Batch) -> Vec<u64> {
        batch.slots.iter().map(|s| s.seq).collect()
    }

    fn take(b: &mut Batcher, now: Instant) -> Vec<Batch> {
        b.take_sendable(now, |s| record(s.seq))
    }

    #[test]
    fn a_full_batch_closes_and_goes_at_once() {
        let now = Instant::now();
        let mut b = batcher(limits());
        // 10 records of 30 bytes, 100 per batch: 3 + 3 + 3 close full, 1 stays open.
        add(&mut b, PART, 0..10, 30, now);
        let sent = take(&mut b, now);
        assert_eq!(
            sent.iter().map(seqs).collect::<Vec<_>>(),
            [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8]]
        );
        assert!(sent.iter().all(|s| s.bytes == 90 && s.records.len() == 3));
        assert_eq!(b.outstanding(), 10);
        assert_eq!(b.next_deadline(now), Some(now + Duration::from_millis(5)));
    }

    #[test]
    fn a_record_larger_than_a_batch_goes_alone() {
        let now = Instant::now();
        let mut b = batcher(limits());
        add(&mut b, PART, 0..1, 30, now);
        add(&mut b, PART, 1..2, 500, now);
        add(&mut b, PART, 2..3, 30, now);
        b.close(now, true);
        let sent = take(&mut b, now);
        assert_eq!(
            sent.iter().map(seqs).collect::<Vec<_>>(),
            [vec![0], vec![1], vec![2]]
        );
    }

    #[test]
    fn an_open_batch_goes_when_it_lingered_out_not_before() {
        let start = Instant::now();
        let mut b = batcher(limits());
        add(&mut b, PART, 0..2, 10, start);
        add(&mut b, 1, 2..3, 10, start + Duration::from_millis(3));
        b.close(start + Duration::from_millis(4), false);
        assert!(
            take(&mut b, start + Duration::from_millis(4)).is_empty(),
            "lingering"
        );
        // Partition 0 opened at `start`: due at 5 ms; partition 1 at 8 ms.
        let at = start + Duration::from_millis(5);
        b.close(at, false);
        let sent = take(&mut b, at);
        assert_eq!(
            sent.iter()
                .map(|s| (s.partition, seqs(s)))
                .collect::<Vec<_>>(),
            [(0, vec![0, 1])]
        );
        assert_eq!(b.next_deadline(at), Some(start + Duration::from_millis(8)));
    }

    #[test]
    fn a_flush_closes_every_open_batch_at_once() {
        let now = Instant::now();
        let mut b = batcher(limits());
        for (p, seq) in [(0, 0), (1, 1), (2, 2)] {
            add(&mut b, p, seq..seq + 1, 10, now);
        }
        b.close(now, true);
        let sent = take(&mut b, now);
        assert_eq!(
            sent.iter().map(|s| s.partition).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(b.next_deadline(now), None);
    }

    #[test]
    fn room_ends_at_the_record_bound_and_at_the_byte_bound() {
        let now = Instant::now();
        let mut b = batcher(Limits {
            max_in_flight: 4,
            ..limits()
        });
        add(&mut b, PART, 0..3, 1, now);
        assert!(b.has_room());
        add(&mut b, PART, 3..4, 1, now);
        assert!(!b.has_room(), "4 records handed over");

        let mut b = batcher(Limits {
            max_in_flight_bytes: 100,
            ..limits()
        });
        add(&mut b, PART, 0..3, 30, now);
        assert!(b.has_room(), "90 bytes");
        add(&mut b, PART, 3..4, 30, now);
        assert!(!b.has_room(), "120 bytes");

        // Acknowledged records free their share.
        b.close(now, true);
        for batch in take(&mut b, now) {
            b.settled(&batch);
        }
        assert!(b.has_room());
        assert_eq!(b.outstanding(), 0);
        assert_eq!(b.requests_in_flight(), 0);
    }

    #[test]
    fn a_partition_has_at_most_five_requests_and_sends_in_order() {
        let now = Instant::now();
        let mut b = batcher(Limits {
            max_batch_bytes: 10,
            ..limits()
        });
        // 8 one-record batches on partition 0, 1 on partition 1.
        add(&mut b, PART, 0..8, 10, now);
        add(&mut b, 1, 100..101, 10, now);
        b.close(now, true);
        let sent = take(&mut b, now);
        let on_wire: Vec<(i32, u64)> = sent.iter().map(|s| (s.partition, s.first_seq())).collect();
        assert_eq!(on_wire, [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 100)]);
        assert!(
            take(&mut b, now).is_empty(),
            "partition 0 has 5 on the wire"
        );
        // One comes back: exactly one more goes, the next in order.
        b.settled(&sent[0]);
        let next = take(&mut b, now);
        assert_eq!(next.iter().map(Batch::first_seq).collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn a_failed_batch_is_rebuilt_and_sent_before_later_batches_of_its_partition() {
        let start = Instant::now();
        let mut b = batcher(Limits {
            max_batch_bytes: 20,
            max_requests_per_partition: 1,
            ..limits()
        });
        add(&mut b, PART, 0..6, 10, start);
        b.close(start, true);
        let mut first = take(&mut b, start);
        assert_eq!(first.iter().map(seqs).collect::<Vec<_>>(), [vec![0, 1]]);
        let failed = first.remove(0);
        let backoff = start + Duration::from_millis(100);
        b.retry(failed, backoff);
        assert_eq!(b.outstanding(), 6, "a retry keeps its records counted");
        assert_eq!(b.next_deadline(start), Some(backoff));
        // During the backoff nothing of partition 0 overtakes it.
        assert!(take(&mut b, start + Duration::from_millis(50)).is_empty());

        let mut rebuilt = Vec::new();
        let again = b.take_sendable(backoff, |s| {
            rebuilt.push(s.seq);
            record(s.seq)
        });
        assert_eq!(rebuilt, [0, 1], "rebuilt from its slots, in order");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        assert_eq!(
            again[0].records.iter().map(seq_of).collect::<Vec<_>>(),
            [0, 1]
        );
        b.settled(&again[0]);
        let rest: Vec<Vec<u64>> = (0..2)
            .map(|_| {
                let batch = take(&mut b, backoff).remove(0);
                b.settled(&batch);
                seqs(&batch)
            })
            .collect();
        assert_eq!(rest, [vec![2, 3], vec![4, 5]]);
        assert_eq!(b.outstanding(), 0);
    }

    #[test]
    fn shutdown_gives_up_batches_waiting_for_a_retry_only() {
        let now = Instant::now();
        let mut b = batcher(Limits {
            max_batch_bytes: 10,
            max_requests_per_partition: 1,
            ..limits()
        });
        add(&mut b, PART, 0..3, 10, now);
        b.close(now, true);
        let failed = take(&mut b, now).remove(0);
        b.retry(failed, now + Duration::from_secs(1));
        assert_eq!(b.drop_retries(), 1);
        assert_eq!(b.outstanding(), 2);
        let rest = take(&mut b, now);
        assert_eq!(rest.iter().map(Batch::first_seq).collect::<Vec<_>>(), [1]);
    }

    const PID: ProducerIdAndEpoch = ProducerIdAndEpoch { id: 9, epoch: 0 };

    fn idempotent(limits: Limits) -> Batcher {
        Batcher::new(limits, Some(PID))
    }

    fn bases(batches: &[Batch]) -> Vec<(i16, i32)> {
        batches
            .iter()
            .map(|b| {
                let s = b.sequence.expect("sequenced");
                (s.producer.epoch, s.base_sequence)
            })
            .collect()
    }

    /// Two 10-byte records per batch, `max_requests` on the wire.
    fn two_per_batch(max_requests: usize) -> Limits {
        Limits {
            max_batch_bytes: 20,
            max_requests_per_partition: max_requests,
            ..limits()
        }
    }

    #[test]
    fn idempotent_batches_are_numbered_when_first_sent_and_keep_their_numbers() {
        let now = Instant::now();
        let mut b = idempotent(two_per_batch(5));
        add(&mut b, PART, 0..6, 10, now);
        add(&mut b, 1, 10..11, 10, now);
        b.close(now, true);
        let mut sent = take(&mut b, now);
        assert_eq!(bases(&sent), [(0, 0), (0, 2), (0, 4), (0, 0)]);
        let failed = sent.remove(1);
        assert_eq!(b.judge(&failed, Answer::Transient, true), Verdict::Retry);
        b.retry(failed, now);
        // Not the earliest unsettled batch of its partition: it waits.
        assert!(take(&mut b, now).is_empty());
        let first = sent.remove(0);
        assert_eq!(b.judge(&first, Answer::Written, true), Verdict::Acked);
        b.settled(&first);
        let again = take(&mut b, now);
        assert_eq!(bases(&again), [(0, 2)], "same numbers");
        assert_eq!(
            again[0].records.iter().map(seq_of).collect::<Vec<_>>(),
            [2, 3],
            "same record boundaries"
        );
    }

    #[test]
    fn after_an_error_a_partition_sends_its_retries_one_at_a_time_in_order() {
        let now = Instant::now();
        let mut b = idempotent(two_per_batch(5));
        add(&mut b, PART, 0..8, 10, now);
        b.close(now, true);
        let sent = take(&mut b, now);
        assert_eq!(sent.len(), 4);
        // The connection broke; the answers come back in any order.
        for batch in sent.into_iter().rev() {
            assert_eq!(b.judge(&batch, Answer::Transient, true), Verdict::Retry);
            b.retry(batch, now);
        }
        for expected in [0, 2, 4, 6] {
            let one = take(&mut b, now);
            assert_eq!(bases(&one), [(0, expected)]);
            assert!(take(&mut b, now).is_empty(), "one at a time");
            assert_eq!(b.judge(&one[0], Answer::Written, true), Verdict::Acked);
            b.settled(&one[0]);
        }
        assert_eq!(b.outstanding(), 0);
    }

    #[test]
    fn a_bump_renumbers_a_partition_from_zero_once_nothing_of_it_is_on_the_wire() {
        let now = Instant::now();
        let mut b = idempotent(two_per_batch(5));
        add(&mut b, PART, 0..6, 10, now);
        b.close(now, true);
        let mut sent = take(&mut b, now);
        let a = sent.remove(0);
        b.judge(&a, Answer::Written, true);
        b.settled(&a);
        // The broker lost `a` (unclean election): the next batch is out of order.
        let next = sent.remove(0);
        assert_eq!(b.judge(&next, Answer::OutOfOrder, true), Verdict::Retry);
        b.retry(next, now);
        // The bump waits for the last batch on the wire.
        assert!(take(&mut b, now).is_empty());
        let last = sent.remove(0);
        assert_eq!(b.judge(&last, Answer::OutOfOrder, true), Verdict::Retry);
        b.retry(last, now);
        let renumbered = take(&mut b, now);
        assert_eq!(bases(&renumbered), [(1, 0)], "epoch 1 from 0");
        assert_eq!(
            b.producer(),
            Some((Some(ProducerIdAndEpoch { id: 9, epoch: 1 }), 1))
        );
        b.judge(&renumbered[0], Answer::Written, true);
        b.settled(&renumbered[0]);
        let rest = take(&mut b, now);
        assert_eq!(bases(&rest), [(1, 2)]);
        assert_eq!(
            rest[0].records.iter().map(seq_of).collect::<Vec<_>>(),
            [4, 5]
        );
    }

    #[test]
    fn without_idempotence_batches_carry_no_sequence() {
        let now = Instant::now();
        let mut b = batcher(two_per_batch(5));
        add(&mut b, PART, 0..4, 10, now);
        b.close(now, true);
        let sent = take(&mut b, now);
        assert!(sent.iter().all(|s| s.sequence.is_none()));
        assert_eq!(b.judge(&sent[0], Answer::Transient, true), Verdict::Retry);
        assert_eq!(b.judge(&sent[0], Answer::Transient, false), Verdict::Fail);
        assert_eq!(b.judge(&sent[1], Answer::Rejected, true), Verdict::Fail);
        assert_eq!(b.producer(), None);
    }
}
