//! The heartbeat task: one per generation, on its own connection to the
//! coordinator, reporting to the member's owner what it must act on.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::SessionSettings;
use crate::{
    coordinator::CoordinatorClient,
    error::{GroupApi, KafkaCode},
    state::{classify, Action, ErrorContext, Generation},
};

/// What a heartbeat task reports.
#[derive(Debug)]
pub enum HeartbeatReport {
    /// The coordinator answered with an error code.
    Error {
        /// The generation the heartbeat carried.
        sent: Generation,
        /// The code (never `NONE`).
        code: KafkaCode,
    },
    /// No successful heartbeat for a whole session timeout: the coordinator
    /// may have evicted us, or is unreachable. Reported once; the task goes
    /// on with the same member id and generation (finding the coordinator
    /// again), as Java's heartbeat thread does: only the coordinator's
    /// answer ends a membership.
    SessionExpired {
        /// The last connection error.
        detail: String,
    },
    /// A heartbeat got through again after [`SessionExpired`](Self::SessionExpired).
    Recovered {
        /// How long no heartbeat had got through.
        after: Duration,
    },
}

/// When a heartbeat last got through, shared by the heartbeat task and its
/// owner (readiness: after a session timeout without one, this member
/// cannot know whether it still owns its partitions).
#[derive(Debug, Clone)]
pub struct LastHeartbeat {
    origin: Instant,
    /// Milliseconds since `origin` of the last successful heartbeat (or of
    /// the start, which follows a successful SyncGroup).
    ms: Arc<AtomicU64>,
}

impl LastHeartbeat {
    /// Counts from now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ms.store(ms, Ordering::Relaxed);
    }

    /// Time since a heartbeat last got through.
    pub fn elapsed(&self) -> Duration {
        let last = Duration::from_millis(self.ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

impl Default for LastHeartbeat {
    fn default() -> Self {
        Self::new()
    }
}

/// A running heartbeat task ([`spawn_heartbeat`]).
#[derive(Debug)]
pub struct Heartbeat {
    /// The task; it ends when stopped, or when its generation's heartbeats
    /// are over (the member must rejoin or stop).
    pub task: tokio::task::JoinHandle<()>,
    /// When a heartbeat last got through.
    pub last_ok: LastHeartbeat,
}

/// Runs heartbeats for `generation` on `client` every heartbeat interval
/// until `stop`, reporting errors on `tx`. Failures are retried after the
/// retry backoff (at most an interval);
/// a whole session timeout without a successful heartbeat is reported once
/// ([`HeartbeatReport::SessionExpired`]) and the heartbeats go on, with the
/// same member id and generation, until the coordinator answers.
pub fn spawn_heartbeat(
    mut client: CoordinatorClient,
    generation: Generation,
    settings: &SessionSettings,
    tx: mpsc::Sender<HeartbeatReport>,
    stop: CancellationToken,
) -> Heartbeat {
    let interval = settings.heartbeat_interval;
    let session = settings.session_timeout;
    let backoff = settings.retry_backoff;
    let group = settings.group.clone();
    let last_ok = LastHeartbeat::new();
    let shared = last_ok.clone();
    let task = tokio::spawn(async move {
        let mut expired = false;
        // Like Java's heartbeat thread: the next heartbeat one interval
        // after a success, one retry backoff after a failure, so that a
        // coordinator that is back hears from us at once.
        let mut failures: u32 = 0;
        let mut last_failure = String::new();
        loop {
            let wait = match failures {
                0 => interval,
                n => backoff.delay(n - 1).min(interval),
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            failures = failures.saturating_add(1);
            // A heartbeat waits for its answer as long as any request may
            // (a broker that is only slow, or frozen, answers it when it is
            // back), but once no heartbeat got through for a whole session
            // it is abandoned: the coordinator is found again, as Java's
            // heartbeat thread does.
            let result = {
                let attempt = client.heartbeat(generation.generation_id, &generation.member_id);
                tokio::pin!(attempt);
                tokio::select! {
                    () = stop.cancelled() => return,
                    r = &mut attempt => Some(r),
                    () = tokio::time::sleep(session.saturating_sub(shared.elapsed())), if !expired => None,
                }
            };
            let failure = match result {
                None => {
                    client.mark_coordinator_dead();
                    if last_failure.is_empty() {
                        "a heartbeat was on its way, unanswered".to_owned()
                    } else {
                        std::mem::take(&mut last_failure)
                    }
                }
                Some(Ok(code)) if code.is_none() => {
                    failures = 0;
                    last_failure.clear();
                    let silent = shared.elapsed();
                    shared.touch();
                    if std::mem::take(&mut expired)
                        && tx
                            .send(HeartbeatReport::Recovered { after: silent })
                            .await
                            .is_err()
                    {
                        return;
                    }
                    continue;
                }
                Some(Ok(code)) => {
                    if tx
                        .send(HeartbeatReport::Error {
                            sent: generation.clone(),
                            code,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // The owner decides what the code means for the member.
                    // This generation's heartbeats go on while the machine
                    // keeps the member Stable, as Java's heartbeat thread
                    // does: after coordinator errors (found again) and
                    // unexpected ones (retried). They end once it must
                    // rejoin or stop.
                    let ctx = ErrorContext {
                        group_id: &group,
                        generation_unchanged: true,
                        stable: true,
                        rebalancing: false,
                        returned_member_id: "",
                        backoff: Duration::ZERO,
                    };
                    match classify(GroupApi::Heartbeat, code, &ctx) {
                        Action::RediscoverCoordinator { .. } => client.mark_coordinator_dead(),
                        Action::Retry { .. } | Action::Continue => {}
                        _ => return,
                    }
                    format!("the coordinator answered {code}")
                }
                Some(Err(e)) => {
                    debug!(error = %e, "heartbeat failed");
                    client.mark_coordinator_dead();
                    e.to_string()
                }
            };
            if !expired && shared.elapsed() >= session {
                expired = true;
                // Start over at once, on a coordinator found again.
                failures = 0;
                if tx
                    .send(HeartbeatReport::SessionExpired { detail: failure })
                    .await
                    .is_err()
                {
                    return;
                }
            } else {
                last_failure = failure;
            }
        }
    });
    Heartbeat { task, last_ok }
}
