//! Lag in seconds, `kafka_consumergroup_lag_seconds`: how long the oldest
//! record of a partition that this member has not handled yet has waited,
//! now minus its timestamp; 0 when caught up. And the per-partition tick
//! of the [`RecordHandler`] (canary loss windows run on it).
//!
//! The timestamp is the record's own (CreateTime, the producer's clock,
//! unless the topic sets LogAppendTime), read, not estimated: the
//! partition's fetch task runs ahead of its handler (fetched batches wait
//! in a small buffer), so the record at the handler's position is almost
//! always in memory already — the next one in the batch being handled, the
//! first of the next batch, or the first of a fetch waiting for buffer
//! budget. Both tasks publish its offset and timestamp
//! ([`Progress::set_head`]); a known timestamp stays exact for as long as
//! the position does not move. No extra fetch is made for it: the record
//! at the position is missing from memory only while the fetch of it is
//! on the wire (the next tick has it) or failing (a broker down, a batch
//! over `CONSUMER_DECODED_BATCH_MAX_BYTES`), and then a second fetch at
//! the same offset fails the same way. In that case the gauge shows a
//! lower bound instead: the time since this member first saw the record
//! exist (the high watermark past the position) without being able to
//! read it. The position is the handler's, not the committed offset, so a
//! caught-up member shows 0 while `kafka_consumergroup_lag` still counts
//! the records handled since the last commit.

use std::{sync::Arc, time::Duration};

use common::metrics as m;
use tokio_util::sync::CancellationToken;

use crate::{handler::RecordHandler, progress::Progress};

/// How often the gauge and the handler's tick are updated.
const TICK: Duration = Duration::from_secs(1);

/// What the clock remembers between ticks of one partition.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LagClock {
    /// (position, timestamp ms) of the record at a position once seen.
    known: Option<(i64, i64)>,
    /// (position, wall ms) since when a record at the position was known
    /// to exist without its timestamp being known.
    waiting_since: Option<(i64, i64)>,
}

impl LagClock {
    /// Seconds the record at `position` has waited at `now_ms` (unix ms),
    /// given the lag in records and the head the tasks published; `None`
    /// while the lag is unknown (no fetch answered yet).
    pub(crate) fn seconds(
        &mut self,
        position: i64,
        lag: Option<i64>,
        head: Option<(i64, i64)>,
        now_ms: i64,
    ) -> Option<f64> {
        let lag = lag?;
        if lag <= 0 {
            *self = Self::default();
            return Some(0.0);
        }
        // The head is the first unhandled record when it is at or past the
        // position (offsets between are transaction markers).
        if let Some((offset, ts)) = head {
            if offset >= position {
                self.known = Some((position, ts));
            }
        }
        let waited_ms = match self.known {
            Some((p, ts)) if p == position => now_ms.saturating_sub(ts),
            _ => {
                let since = match self.waiting_since {
                    Some((p, since)) if p == position => since,
                    _ => {
                        self.waiting_since = Some((position, now_ms));
                        now_ms
                    }
                };
                now_ms.saturating_sub(since)
            }
        };
        Some(waited_ms.max(0) as f64 / 1000.0)
    }
}

/// Updates `topic`/`partition`'s lag seconds and ticks `handler` every
/// second until `stop`; then zeroes the gauge (another member owns the
/// partition now) and tells the handler.
pub(crate) async fn watch(
    (group, topic, partition): (String, String, i32),
    progress: Arc<Progress>,
    handler: Arc<dyn RecordHandler>,
    stop: CancellationToken,
) {
    let gauge = metrics::gauge!(m::CONSUMER_LAG_SECONDS, "consumergroup" => group, "topic" => topic.clone(), "partition" => partition.to_string());
    let mut clock = LagClock::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let position = progress.position.load(std::sync::atomic::Ordering::Acquire);
        let lag = progress.lag();
        let now_ms = chrono::Utc::now().timestamp_millis();
        if let Some(s) = clock.seconds(position, lag, progress.head(), now_ms) {
            gauge.set(s);
        }
        handler.tick(&topic, partition, lag == Some(0));
    }
    gauge.set(0.0);
    handler.revoked(&topic, partition);
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn caught_up_is_zero_and_unknown_is_none() {
        let mut c = LagClock::default();
        assert_eq!(c.seconds(10, None, None, NOW), None);
        assert_eq!(
            c.seconds(10, Some(0), Some((3, NOW - 5_000)), NOW),
            Some(0.0)
        );
    }

    #[test]
    fn the_oldest_unhandled_records_timestamp_gives_the_seconds() {
        let mut c = LagClock::default();
        // The record at position 10 was written 90 s ago.
        assert_eq!(
            c.seconds(10, Some(500), Some((10, NOW - 90_000)), NOW),
            Some(90.0)
        );
        // The position has not moved: still exact a minute on, even if the
        // head is not published again.
        assert_eq!(c.seconds(10, Some(500), None, NOW + 60_000), Some(150.0));
        // Markers between the position and the next record: the record's.
        assert_eq!(
            c.seconds(11, Some(499), Some((13, NOW - 1_000)), NOW),
            Some(1.0)
        );
        // A timestamp in the future (clock skew) is 0, not negative.
        assert_eq!(
            c.seconds(14, Some(1), Some((14, NOW + 5_000)), NOW),
            Some(0.0)
        );
    }

    #[test]
    fn a_stale_head_is_not_used() {
        let mut c = LagClock::default();
        c.seconds(10, Some(5), Some((10, NOW - 90_000)), NOW);
        // Handled up to 20; the head still names offset 10, long handled.
        assert_eq!(
            c.seconds(20, Some(5), Some((10, NOW - 90_000)), NOW + 1_000),
            Some(0.0),
            "unknown yet: the lower bound starts at 0"
        );
    }

    #[test]
    fn without_the_record_the_time_it_was_known_to_exist_is_a_lower_bound() {
        let mut c = LagClock::default();
        assert_eq!(c.seconds(7, Some(3), None, NOW), Some(0.0));
        assert_eq!(c.seconds(7, Some(3), None, NOW + 30_000), Some(30.0));
        // Once its timestamp is read, the exact value replaces the bound.
        assert_eq!(
            c.seconds(7, Some(3), Some((7, NOW - 600_000)), NOW + 31_000),
            Some(631.0)
        );
        // Caught up: everything forgotten.
        assert_eq!(c.seconds(10, Some(0), None, NOW + 32_000), Some(0.0));
        assert_eq!(c, LagClock::default());
    }
}
