//! A good/bad ratio over a sliding time window, in fixed memory: the
//! canary's availability gauges (produce: records acknowledged against
//! record sends that failed; end to end: records delivered within the
//! latency objective against late and lost ones).
//!
//! The window is cut into [`SLOTS`] slots; an event counts in the slot of
//! its time, and a slot older than the window is forgotten. So the ratio
//! covers between `window - window / SLOTS` and `window` of history, and a
//! window of any length costs the same 60 slots.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

/// Slots per window.
pub const SLOTS: u32 = 60;

/// One slot: its index since the origin, and its counts.
#[derive(Debug, Clone, Copy)]
struct Slot {
    index: u64,
    good: u64,
    bad: u64,
}

/// Good and bad events over the last `window`.
#[derive(Debug, Clone)]
pub struct WindowRatio {
    origin: Instant,
    slot: Duration,
    slots: VecDeque<Slot>,
}

impl WindowRatio {
    /// A ratio over `window` (at least [`SLOTS`] ms), starting empty now.
    pub fn new(window: Duration) -> Self {
        let slot = (window / SLOTS).max(Duration::from_millis(1));
        Self {
            origin: Instant::now(),
            slot,
            slots: VecDeque::with_capacity(SLOTS as usize + 1),
        }
    }

    fn index(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        u64::try_from(since.as_nanos() / self.slot.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    /// Drops the slots that fell out of the window ending at `now`.
    fn expire(&mut self, now: u64) {
        let oldest_kept = now.saturating_sub(u64::from(SLOTS) - 1);
        while self.slots.front().is_some_and(|s| s.index < oldest_kept) {
            self.slots.pop_front();
        }
    }

    /// Counts `good` and `bad` events at `at`.
    pub fn add(&mut self, at: Instant, good: u64, bad: u64) {
        if good == 0 && bad == 0 {
            return;
        }
        let index = self.index(at);
        self.expire(index);
        match self.slots.back_mut() {
            Some(last) if last.index == index => {
                last.good += good;
                last.bad += bad;
            }
            // An event stamped earlier than the newest slot (a caller's
            // clock read before another's) counts in the newest one.
            Some(last) if last.index > index => {
                last.good += good;
                last.bad += bad;
            }
            _ => self.slots.push_back(Slot { index, good, bad }),
        }
    }

    /// Good ÷ (good + bad) over the window ending at `now`; `None` when the
    /// window holds no event (nothing to judge by).
    pub fn ratio(&mut self, now: Instant) -> Option<f64> {
        self.expire(self.index(now));
        let (good, bad) = self
            .slots
            .iter()
            .fold((0u64, 0u64), |(g, b), s| (g + s.good, b + s.bad));
        let total = good + bad;
        (total > 0).then(|| good as f64 / total as f64)
    }

    /// The ratio as a gauge value: NaN when there is nothing to judge by,
    /// which Prometheus keeps and alert comparisons treat as false.
    pub fn gauge_value(&mut self, now: Instant) -> f64 {
        self.ratio(now).unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_window_has_no_ratio() {
        let mut w = WindowRatio::new(Duration::from_secs(60));
        assert_eq!(w.ratio(Instant::now()), None);
        assert!(w.gauge_value(Instant::now()).is_nan());
        w.add(Instant::now(), 0, 0);
        assert_eq!(w.ratio(Instant::now()), None);
    }

    #[test]
    fn counts_within_the_window_and_forgets_older_slots() {
        let mut w = WindowRatio::new(Duration::from_secs(60));
        let t0 = w.origin;
        w.add(t0, 9, 1);
        assert_eq!(w.ratio(t0), Some(0.9));
        w.add(t0 + Duration::from_secs(30), 0, 10);
        assert_eq!(w.ratio(t0 + Duration::from_secs(30)), Some(0.45));
        // 61 s on, the first slot is out of the window, the second is not.
        assert_eq!(w.ratio(t0 + Duration::from_secs(61)), Some(0.0));
        // 91 s on, nothing is left.
        assert_eq!(w.ratio(t0 + Duration::from_secs(91)), None);
    }

    #[test]
    fn memory_stays_at_the_slot_count_however_many_events() {
        let mut w = WindowRatio::new(Duration::from_secs(60));
        let t0 = w.origin;
        for ms in 0..600_000u64 {
            w.add(t0 + Duration::from_millis(ms), 1, 0);
        }
        assert!(w.slots.len() <= SLOTS as usize, "{}", w.slots.len());
        assert_eq!(w.ratio(t0 + Duration::from_secs(600)), Some(1.0));
    }

    #[test]
    fn an_event_stamped_before_the_newest_slot_still_counts() {
        let mut w = WindowRatio::new(Duration::from_secs(60));
        let t0 = w.origin;
        w.add(t0 + Duration::from_secs(10), 1, 0);
        w.add(t0 + Duration::from_secs(5), 0, 1);
        assert_eq!(w.ratio(t0 + Duration::from_secs(10)), Some(0.5));
    }
}
