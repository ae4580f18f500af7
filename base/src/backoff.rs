//! Retry backoff: exponential, with jitter, bounded — the one every retry
//! loop of the workspace uses (connecting, fetching, producing, the group
//! protocol).
//!
//! The delay before retry `n` (0-based) is `initial × 2ⁿ`, capped at `max`,
//! then spread by ±20 % (Java's `retry.backoff` jitter) so that many clients
//! failing at once do not retry in step; the spread never exceeds `max`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How far a delay is spread either way.
const JITTER: f64 = 0.2;

/// Exponential backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound of every delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// Java's `retry.backoff.ms` (100 ms) and `retry.backoff.max.ms` (1 s).
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(1))
    }
}

impl Backoff {
    /// Backoff from `initial` doubling up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The delay before retry `attempt` (0-based), without jitter:
    /// `initial × 2^attempt`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// [`delay`](Self::delay) spread by ±20 %, at most `max`.
    pub fn jittered(&self, attempt: u32) -> Duration {
        jitter(self.delay(attempt)).min(self.max)
    }

    /// The delays of one retry loop, starting at the first.
    pub fn retries(self) -> Retries {
        Retries {
            backoff: self,
            attempt: 0,
        }
    }
}

/// `d` spread by ±20 %.
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(1.0 - JITTER + rand::random::<f64>() * 2.0 * JITTER)
}

/// Sleeps `d` spread by ±20 %; `false` when `cancel` fired first.
pub async fn sleep_jittered(d: Duration, cancel: &CancellationToken) -> bool {
    let d = jitter(d);
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// One retry loop's position in its [`Backoff`].
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    attempt: u32,
}

impl Retries {
    /// The (jittered) delay before the next retry; the one after is longer.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.backoff.jittered(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Sleeps the next delay; `false` when `cancel` fired first.
    pub async fn sleep(&mut self, cancel: &CancellationToken) -> bool {
        let d = self.next_delay();
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }

    /// The bounds.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delay_doubles_up_to_max() {
        let b = Backoff::new(100 * MS, 1000 * MS);
        let delays: Vec<_> = (0..6).map(|a| b.delay(a)).collect();
        assert_eq!(
            delays,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(b.delay(u32::MAX), 1000 * MS, "no overflow");
    }

    #[test]
    fn jitter_stays_within_a_fifth_and_below_max() {
        let b = Backoff::new(100 * MS, 30_000 * MS);
        for attempt in 0..20 {
            let base = b.delay(attempt);
            for _ in 0..50 {
                let d = b.jittered(attempt);
                assert!(
                    d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2),
                    "{d:?} for {base:?}"
                );
                assert!(d <= b.max);
            }
        }
    }

    #[test]
    fn retries_grow_and_reset() {
        let mut r = Backoff::new(10 * MS, 80 * MS).retries();
        let first = r.next_delay();
        let second = r.next_delay();
        assert!(
            first <= 12 * MS && second >= 16 * MS,
            "{first:?} {second:?}"
        );
        r.reset();
        assert!(r.next_delay() <= 12 * MS);
    }

    #[tokio::test]
    async fn sleep_ends_early_on_cancel() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut r = Backoff::new(Duration::from_secs(60), Duration::from_secs(60)).retries();
        let started = std::time::Instant::now();
        assert!(!r.sleep(&cancel).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
