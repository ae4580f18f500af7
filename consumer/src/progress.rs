//! One partition's progress, shared lock-free between its fetch task, its
//! handler, the commit path, readiness and the lag gauges ([`crate::lag`]).

use std::{
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use rskafka::record::RecordAndOffset;

/// Shared, lock-free view of one partition's progress.
#[derive(Debug)]
pub struct Progress {
    /// Next offset to consume, i.e. last handled + 1 (what we commit). -1 until known.
    pub position: AtomicI64,
    /// Highest high watermark seen in fetch responses. -1 until known.
    pub high_watermark: AtomicI64,
    /// Highest last stable offset seen in fetch responses: a read_committed
    /// consumer gets nothing at or past it. -1 until known.
    pub last_stable_offset: AtomicI64,
    /// Last offset committed to the group. -1 = none yet.
    pub committed: AtomicI64,
    /// Milliseconds since `origin` of the last handled record (or of the start).
    last_progress_ms: AtomicU64,
    /// Offset and timestamp (unix ms) of the first record not yet handled,
    /// once fetched ([`crate::lag`]); stale once the position passed it.
    head_offset: AtomicI64,
    head_ts_ms: AtomicI64,
    origin: Instant,
    /// The most recent fetch error, for readiness.
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl Progress {
    /// Fresh progress for a partition starting at `position` (-1 = unknown).
    pub fn new(position: i64, committed: i64) -> Self {
        Self {
            position: AtomicI64::new(position),
            high_watermark: AtomicI64::new(-1),
            last_stable_offset: AtomicI64::new(-1),
            committed: AtomicI64::new(committed),
            last_progress_ms: AtomicU64::new(0),
            head_offset: AtomicI64::new(-1),
            head_ts_ms: AtomicI64::new(0),
            origin: Instant::now(),
            last_error: std::sync::Mutex::new(None),
        }
    }

    /// Publishes the first record not yet handled (see [`crate::lag`]).
    pub(crate) fn set_head(&self, r: &RecordAndOffset) {
        self.head_ts_ms
            .store(r.record.timestamp.timestamp_millis(), Ordering::Relaxed);
        self.head_offset.store(r.offset, Ordering::Release);
    }

    /// The last published (offset, timestamp ms) of the first record not
    /// yet handled; `None` before the first or when read mid-update.
    pub(crate) fn head(&self) -> Option<(i64, i64)> {
        let offset = self.head_offset.load(Ordering::Acquire);
        let ts = self.head_ts_ms.load(Ordering::Relaxed);
        // Offsets only grow, so an unchanged offset means a matching pair.
        (offset >= 0 && self.head_offset.load(Ordering::Acquire) == offset).then_some((offset, ts))
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_progress_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last handled record (or since the start).
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// Offsets between our position and what we may read: the last stable
    /// offset when known (as the Java consumer's lag under read_committed:
    /// records of an open transaction are not ours to read yet), else the
    /// high watermark.
    pub fn lag(&self) -> Option<i64> {
        let lso = self.last_stable_offset.load(Ordering::Relaxed);
        let end = if lso >= 0 {
            lso
        } else {
            self.high_watermark.load(Ordering::Relaxed)
        };
        let pos = self.position.load(Ordering::Relaxed);
        (end >= 0 && pos >= 0).then(|| (end - pos).max(0))
    }

    /// High watermark minus committed offset (kafka_exporter's lag; an open
    /// transaction counts until it ends).
    pub fn committed_lag(&self) -> Option<i64> {
        let hw = self.high_watermark.load(Ordering::Relaxed);
        let c = self.committed.load(Ordering::Relaxed);
        (hw >= 0 && c >= 0).then(|| (hw - c).max(0))
    }
}
