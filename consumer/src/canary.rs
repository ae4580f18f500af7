//! Verification of the continuous producer's canary records: exact counts
//! of records lost and duplicated, per partition, that survive producer
//! restarts and consumer rebalances without false reports.
//!
//! A canary record names its producer run (`run_id`, new at every producer
//! start, with the run's start time) and its sequence number in that run
//! on its partition (`pseq`, 0, 1, 2, …). The producer keeps one produce
//! request per partition on the wire, so a partition's log holds each run's
//! records in `pseq` order unless something went wrong. What this member
//! concludes, per partition:
//!
//! - **Offsets decide what is new.** A record at an offset this member has
//!   already read (a rebalance gave the partition back, a restart began at
//!   the committed offset) is a *redelivery*: counted apart, never a
//!   duplicate, because the log holds it once.
//! - **Sequence numbers decide the rest.** At a new offset, `pseq` equal to
//!   the run's next is in order; higher leaves a *gap*; lower fills a gap
//!   (a resent record landing late) or, when it fills none, is a
//!   **duplicate**: the same record twice in the log at two offsets.
//! - **A gap is lost** when it is not filled within the loss window
//!   (`CANARY_LOSS_WINDOW_SECS`) counted in producer time: once this member
//!   read records of that run sent a window after the gap showed (a resend
//!   that fills it would be in the log before them), or, when no more come
//!   (the run ended), once it is caught up and the window has passed.
//! - **A member sees only what it read.** The first record of a run seen on
//!   a partition is its *baseline*: records below it are not judged (read
//!   by another member or before a restart). The exception is a run that
//!   began more than a loss window after this member started reading the
//!   partition: its records from 0 must all be here, so a first `pseq`
//!   above 0 is a gap. When the partition comes back after another member
//!   read part of it (its first offset is past the highest read here + 1),
//!   what this member tracked is dropped, open gaps included: the records
//!   between were not seen here, so nothing can be concluded about them.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{metrics as m, window::WindowRatio};
use metrics::{Counter, Gauge};
use tokio::time::Instant;
use tracing::{info, warn};

/// Settings of the verification (consumer keys `CANARY_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanarySettings {
    /// How long, in producer time, a gap may wait to be filled.
    pub loss_window: Duration,
    /// A record handled later than this after its `sent_at` is late.
    pub latency_slo: Duration,
    /// The window of `kafka_canary_e2e_availability`.
    pub availability_window: Duration,
}

impl Default for CanarySettings {
    fn default() -> Self {
        Self {
            loss_window: Duration::from_secs(120),
            latency_slo: Duration::from_secs(5),
            availability_window: Duration::from_secs(300),
        }
    }
}

/// The fields of a canary record the verification uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CanaryFields<'a> {
    /// The producer run.
    pub run_id: &'a str,
    /// Sequence number of the record in its run on its partition.
    pub pseq: u64,
    /// When the run started (unix ms, producer clock).
    pub run_start_ms: Option<i64>,
    /// When the record was sent (unix ms, producer clock).
    pub sent_ms: Option<i64>,
}

/// What the verification concluded about one canary record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryVerdict {
    /// New in the log, in order or leaving a gap before it.
    InOrder,
    /// New in the log, filling a gap (a resent record landing late).
    Filled,
    /// Below what this member can judge (read before by another member).
    Unjudged,
    /// Its sequence number was in the log before, at an earlier offset.
    Duplicate,
    /// An offset this member had read before.
    Redelivered,
}

/// Runs remembered per partition; the least recently seen one without
/// open gaps makes room.
const MAX_RUNS: usize = 16;
/// Open gaps per run; past it the oldest is counted lost at once (a
/// partition missing that many separate ranges within one window is lost
/// either way), which keeps the memory bounded.
const MAX_GAPS: usize = 1024;
/// Gaps already counted lost that are remembered, so that a record landing
/// after its loss was declared is not taken for a duplicate.
const MAX_EXPIRED: usize = 64;
/// A run without open gaps and without records for this long is forgotten
/// (also when it is shorter than the loss window).
const RUN_IDLE: Duration = Duration::from_secs(600);

/// Sequence numbers `from..to` of a run, missing since `noticed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    from: u64,
    to: u64,
    /// `sent_at` of the record that showed the gap (producer clock, ms).
    noticed_sent_ms: i64,
    noticed: Instant,
}

impl Gap {
    fn len(&self) -> u64 {
        self.to - self.from
    }
}

/// One producer run on one partition.
#[derive(Debug)]
struct RunTrack {
    run_id: Box<str>,
    /// The next `pseq` in order.
    next: u64,
    /// The first `pseq` this member saw: below it nothing is judged.
    baseline: u64,
    /// Highest `sent_at` of the run's records read (producer clock, ms).
    max_sent_ms: i64,
    /// Open gaps in `pseq` order (and so in the order they were noticed).
    gaps: VecDeque<Gap>,
    /// Gaps counted lost, most recent last.
    expired: VecDeque<(u64, u64)>,
    last_seen: Instant,
}

impl RunTrack {
    fn new(run_id: &str, first: u64, now: Instant) -> Self {
        Self {
            run_id: run_id.into(),
            next: first + 1,
            baseline: first,
            max_sent_ms: i64::MIN,
            gaps: VecDeque::new(),
            expired: VecDeque::new(),
            last_seen: now,
        }
    }

    fn missing(&self) -> u64 {
        self.gaps.iter().map(Gap::len).sum()
    }

    /// Opens a gap; returns records counted lost to keep [`MAX_GAPS`].
    fn open_gap(&mut self, gap: Gap) -> u64 {
        self.gaps.push_back(gap);
        let mut lost = 0;
        while self.gaps.len() > MAX_GAPS {
            if let Some(old) = self.gaps.pop_front() {
                lost += old.len();
                self.remember_expired(old);
            }
        }
        lost
    }

    fn remember_expired(&mut self, gap: Gap) {
        self.expired.push_back((gap.from, gap.to));
        if self.expired.len() > MAX_EXPIRED {
            self.expired.pop_front();
        }
    }

    /// Takes `pseq` out of an open gap; false when it is in none.
    fn fill(&mut self, pseq: u64) -> bool {
        let Some(i) = self.gaps.iter().position(|g| g.from <= pseq && pseq < g.to) else {
            return false;
        };
        let Some(g) = self.gaps.get(i).copied() else {
            return false;
        };
        let before = Gap { to: pseq, ..g };
        let after = Gap {
            from: pseq + 1,
            ..g
        };
        match (before.len() > 0, after.len() > 0) {
            (true, true) => {
                if let Some(slot) = self.gaps.get_mut(i) {
                    *slot = before;
                }
                self.gaps.insert(i + 1, after);
            }
            (true, false) => {
                if let Some(slot) = self.gaps.get_mut(i) {
                    *slot = before;
                }
            }
            (false, true) => {
                if let Some(slot) = self.gaps.get_mut(i) {
                    *slot = after;
                }
            }
            (false, false) => {
                self.gaps.remove(i);
            }
        }
        true
    }

    /// A record of this run at a new offset; returns the verdict and the
    /// records counted lost on the way.
    fn observe(&mut self, pseq: u64, sent_ms: Option<i64>, now: Instant) -> (CanaryVerdict, u64) {
        self.last_seen = now;
        if let Some(s) = sent_ms {
            self.max_sent_ms = self.max_sent_ms.max(s);
        }
        if pseq >= self.next {
            let mut lost = 0;
            if pseq > self.next {
                lost = self.open_gap(Gap {
                    from: self.next,
                    to: pseq,
                    noticed_sent_ms: sent_ms.unwrap_or(self.max_sent_ms),
                    noticed: now,
                });
            }
            self.next = pseq + 1;
            (CanaryVerdict::InOrder, lost)
        } else if self.fill(pseq) {
            (CanaryVerdict::Filled, 0)
        } else if pseq < self.baseline || self.expired.iter().any(|&(f, t)| f <= pseq && pseq < t) {
            (CanaryVerdict::Unjudged, 0)
        } else {
            (CanaryVerdict::Duplicate, 0)
        }
    }

    /// Counts the gaps whose loss window ended; `caught_up` allows the
    /// wall-clock rule (nothing of the run left to read).
    fn expire(&mut self, window: Duration, caught_up: bool, now: Instant) -> u64 {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let mut lost = 0;
        while let Some(g) = self.gaps.front().copied() {
            let by_producer_time = self.max_sent_ms >= g.noticed_sent_ms.saturating_add(window_ms);
            let by_wall_clock = caught_up && now.saturating_duration_since(g.noticed) >= window;
            if !(by_producer_time || by_wall_clock) {
                break;
            }
            self.gaps.pop_front();
            lost += g.len();
            self.remember_expired(g);
        }
        lost
    }
}

/// Metric handles of one partition.
#[derive(Debug)]
struct PartitionMetrics {
    received: Counter,
    redelivered: Counter,
    lost: Counter,
    duplicated: Counter,
    late: Counter,
    missing: Gauge,
    availability: Gauge,
    latency: m::RecordHistogram,
}

impl PartitionMetrics {
    fn new(topic: &str, partition: i32) -> Self {
        let c = |name: &'static str| m::partition_counter(name, topic, partition);
        let g = |name: &'static str| m::partition_gauge(name, topic, partition);
        Self {
            received: c(m::CANARY_RECEIVED),
            redelivered: c(m::CANARY_REDELIVERED),
            lost: c(m::CANARY_LOST),
            duplicated: c(m::CANARY_DUPLICATED),
            late: c(m::CANARY_LATE),
            missing: g(m::CANARY_MISSING),
            availability: g(m::CANARY_E2E_AVAILABILITY),
            latency: m::partition_histogram(m::CANARY_E2E_LATENCY, topic, partition),
        }
    }
}

/// What a partition's track counted, as its counters did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub received: u64,
    pub redelivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub late: u64,
}

/// Everything this member knows about one partition's canary records.
#[derive(Debug)]
struct PartitionTrack {
    metrics: PartitionMetrics,
    totals: Totals,
    /// Highest offset read; -1 before the first.
    highest_offset: i64,
    /// The partition was assigned again: check at its first record that
    /// nothing was read elsewhere in between.
    resumed: bool,
    /// `sent_at` of the first record read since tracking (re)started.
    since_sent_ms: Option<i64>,
    runs: Vec<RunTrack>,
    availability: WindowRatio,
}

impl PartitionTrack {
    fn new(topic: &str, partition: i32, settings: &CanarySettings) -> Self {
        Self {
            metrics: PartitionMetrics::new(topic, partition),
            totals: Totals::default(),
            highest_offset: -1,
            resumed: false,
            since_sent_ms: None,
            runs: Vec::new(),
            availability: WindowRatio::new(settings.availability_window),
        }
    }

    fn missing(&self) -> u64 {
        self.runs.iter().map(RunTrack::missing).sum()
    }

    fn lose(&mut self, n: u64, now: Instant) {
        if n > 0 {
            self.totals.lost += n;
            self.metrics.lost.increment(n);
            self.availability.add(now, 0, n);
        }
    }

    /// Forgets the least recently seen run without open gaps, or the least
    /// recently seen one, to stay within [`MAX_RUNS`].
    fn make_room(&mut self) {
        if self.runs.len() < MAX_RUNS {
            return;
        }
        let victim = self
            .runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.gaps.is_empty())
            .min_by_key(|(_, r)| r.last_seen)
            .or_else(|| {
                self.runs
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, r)| r.last_seen)
            })
            .map(|(i, _)| i);
        if let Some(i) = victim {
            let run = self.runs.swap_remove(i);
            if !run.gaps.is_empty() {
                warn!(run_id = %run.run_id, missing = run.missing(), "more canary runs than remembered; forgetting an old one with open gaps (not counted)");
            }
        }
    }

    fn record(
        &mut self,
        (topic, partition, offset): (&str, i32, i64),
        rec: CanaryFields<'_>,
        latency: Option<Duration>,
        settings: &CanarySettings,
        now: Instant,
    ) -> CanaryVerdict {
        if std::mem::take(&mut self.resumed)
            && self.highest_offset >= 0
            && offset > self.highest_offset + 1
        {
            let missing = self.missing();
            info!(
                topic,
                partition,
                offset,
                highest_read = self.highest_offset,
                open_gap_records = missing,
                "canary: the partition was read elsewhere in between; tracking starts again here (open gaps not counted)"
            );
            self.runs.clear();
            self.since_sent_ms = None;
        }
        if offset <= self.highest_offset {
            self.totals.redelivered += 1;
            self.metrics.redelivered.increment(1);
            return CanaryVerdict::Redelivered;
        }
        self.highest_offset = offset;
        self.totals.received += 1;
        self.metrics.received.increment(1);
        if self.since_sent_ms.is_none() {
            self.since_sent_ms = rec.sent_ms;
        }

        let (verdict, lost) = match self.runs.iter().position(|r| *r.run_id == *rec.run_id) {
            Some(i) => match self.runs.get_mut(i) {
                Some(run) => run.observe(rec.pseq, rec.sent_ms, now),
                None => (CanaryVerdict::Unjudged, 0),
            },
            None => {
                self.make_room();
                let mut run = RunTrack::new(rec.run_id, rec.pseq, now);
                if let Some(s) = rec.sent_ms {
                    run.max_sent_ms = s;
                }
                // This member read the partition since well before the run
                // began, so the run's records from 0 on came after that and
                // must all have been read here.
                let window_ms = i64::try_from(settings.loss_window.as_millis()).unwrap_or(i64::MAX);
                let began_after_tracking = matches!(
                    (self.since_sent_ms, rec.run_start_ms),
                    (Some(since), Some(start)) if since.saturating_add(window_ms) < start
                );
                if rec.pseq > 0 && began_after_tracking {
                    run.baseline = 0;
                    run.open_gap(Gap {
                        from: 0,
                        to: rec.pseq,
                        noticed_sent_ms: rec.sent_ms.unwrap_or(i64::MIN),
                        noticed: now,
                    });
                }
                self.runs.push(run);
                (CanaryVerdict::InOrder, 0)
            }
        };
        self.lose(lost, now);

        match verdict {
            CanaryVerdict::Duplicate => {
                self.totals.duplicated += 1;
                self.metrics.duplicated.increment(1);
                warn!(
                    topic,
                    partition,
                    offset,
                    run_id = rec.run_id,
                    pseq = rec.pseq,
                    "canary record duplicated in the log"
                );
            }
            CanaryVerdict::InOrder | CanaryVerdict::Filled | CanaryVerdict::Unjudged => {
                if let Some(l) = latency {
                    self.metrics.latency.record(l.as_secs_f64());
                    if l <= settings.latency_slo {
                        self.availability.add(now, 1, 0);
                    } else {
                        self.totals.late += 1;
                        self.metrics.late.increment(1);
                        self.availability.add(now, 0, 1);
                    }
                }
            }
            CanaryVerdict::Redelivered => {}
        }
        // Gaps whose window ended in producer time: cheap, oldest first.
        let mut lost = 0;
        for run in &mut self.runs {
            lost += run.expire(settings.loss_window, false, now);
        }
        self.lose(lost, now);
        verdict
    }

    /// Periodic work: expire gaps, forget idle runs, update the gauges.
    fn tick(&mut self, caught_up: bool, settings: &CanarySettings, now: Instant) {
        let mut lost = 0;
        for run in &mut self.runs {
            lost += run.expire(settings.loss_window, caught_up, now);
        }
        self.lose(lost, now);
        let idle = RUN_IDLE.max(settings.loss_window);
        self.runs
            .retain(|r| !r.gaps.is_empty() || now.saturating_duration_since(r.last_seen) < idle);
        self.metrics.missing.set(self.missing() as f64);
        self.metrics
            .availability
            .set(self.availability.gauge_value(now));
    }
}

/// One partition's track, shared by its tick and its records.
type SharedTrack = Arc<Mutex<PartitionTrack>>;

/// The verification state of a member: one track per partition that had
/// canary records.
#[derive(Debug, Default)]
pub(crate) struct Canary {
    settings: CanarySettings,
    partitions: Mutex<HashMap<(String, i32), SharedTrack>>,
}

impl Canary {
    pub(crate) fn new(settings: CanarySettings) -> Self {
        Self {
            settings,
            partitions: Mutex::default(),
        }
    }

    fn existing(&self, topic: &str, partition: i32) -> Option<SharedTrack> {
        let map = self.partitions.lock().ok()?;
        map.get(&(topic.to_owned(), partition)).cloned()
    }

    fn track(&self, topic: &str, partition: i32) -> Option<SharedTrack> {
        let mut map = self.partitions.lock().ok()?;
        Some(Arc::clone(
            map.entry((topic.to_owned(), partition)).or_insert_with(|| {
                Arc::new(Mutex::new(PartitionTrack::new(
                    topic,
                    partition,
                    &self.settings,
                )))
            }),
        ))
    }

    /// Verifies one canary record read at `offset`.
    pub(crate) fn record(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        rec: CanaryFields<'_>,
        latency: Option<Duration>,
    ) -> CanaryVerdict {
        let Some(track) = self.track(topic, partition) else {
            return CanaryVerdict::Unjudged;
        };
        let Ok(mut t) = track.lock() else {
            return CanaryVerdict::Unjudged;
        };
        t.record(
            (topic, partition, offset),
            rec,
            latency,
            &self.settings,
            Instant::now(),
        )
    }

    /// The partition was assigned to this member (again).
    pub(crate) fn assigned(&self, topic: &str, partition: i32) {
        if let Some(track) = self.existing(topic, partition) {
            if let Ok(mut t) = track.lock() {
                t.resumed = true;
                // Open gaps wait a whole window again: records that fill
                // them may be among those not read while it was elsewhere.
                let now = Instant::now();
                for run in &mut t.runs {
                    for g in &mut run.gaps {
                        g.noticed = now;
                    }
                }
            }
        }
    }

    /// Periodic work for an assigned partition; `caught_up` when this
    /// member has handled everything the partition holds.
    pub(crate) fn tick(&self, topic: &str, partition: i32, caught_up: bool) {
        if let Some(track) = self.existing(topic, partition) {
            if let Ok(mut t) = track.lock() {
                t.tick(caught_up, &self.settings, Instant::now());
            }
        }
    }

    /// The partition left this member: its gauges stop reporting here.
    pub(crate) fn revoked(&self, topic: &str, partition: i32) {
        if let Some(track) = self.existing(topic, partition) {
            if let Ok(t) = track.lock() {
                t.metrics.missing.set(0.0);
                t.metrics.availability.set(f64::NAN);
            }
        }
    }
}

#[cfg(test)]
mod tests;
