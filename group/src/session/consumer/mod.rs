//! KIP-848's consumer group protocol: the session task of a
//! `ConsumerGroupHeartbeat` member, in the order Java's
//! `ConsumerMembershipManager` reconciles. It heartbeats at the interval the
//! coordinator gives, and when the target assignment changes it revokes
//! only what the coordinator took away (the service commits those
//! partitions' handled offsets first), then announces what was added, and
//! acknowledges with its owned partitions in the next heartbeat, sent at
//! once. Heartbeats go on while the service revokes.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use kafka_base::backoff::{Backoff, Retries};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};
use tracing::{info, warn};
use uuid::Uuid;

use super::{
    Assigned, AssignedPartition, Command, Offsets, Revocation, SessionError, SessionEvent,
    SessionSettings, Shared,
};
use crate::{
    coordinator::{ConsumerHeartbeat, CoordinatorClient, OffsetToCommit},
    member::{offsets_to_commit, LastHeartbeat},
    payload::TopicPartitions,
    state::first_commit_error,
};

use machine::{Machine, Outcome, Reconciliation, Tp};

mod machine;

type Reply = oneshot::Sender<Result<(), SessionError>>;

/// A commit on its way: the client comes back with the result.
type CommitTask = JoinHandle<(CoordinatorClient, Result<(), SessionError>)>;

/// Who waits for a commit.
enum Waiter {
    /// [`Session::commit`](super::Session::commit).
    Periodic(Reply),
    /// [`Session::revoked`](super::Session::revoked): the revocation goes
    /// on when it is done.
    Revocation(Reply),
}

/// A revocation the service is working on.
struct Revoking {
    step: Reconciliation,
    lost: bool,
    /// Fenced meanwhile: these are lost too, revoked next.
    then_lost: BTreeSet<Tp>,
}

/// The session task's state.
pub(super) struct Task {
    pub(super) client: CoordinatorClient,
    pub(super) settings: SessionSettings,
    pub(super) events: mpsc::Sender<SessionEvent>,
    pub(super) commands: mpsc::UnboundedReceiver<Command>,
    pub(super) shared: Arc<Shared>,
}

/// The loop's state besides the task's.
struct Member {
    machine: Machine,
    template: ConsumerHeartbeat,
    names: BTreeMap<Uuid, String>,
    /// When `names` was last read: it also tells which subscribed topics
    /// do not exist (readiness), so it is read again now and then.
    names_at: Option<Instant>,
    commit_client: Option<CoordinatorClient>,
    queue: VecDeque<(Vec<OffsetToCommit>, Duration, Waiter)>,
    in_flight: Option<(CommitTask, Waiter)>,
    revoking: Option<Revoking>,
    /// The service has been told this member is in the group with what it
    /// owns (an `Assigned` since the last `Revoke`).
    announced: bool,
    last_ok: LastHeartbeat,
}

impl Task {
    pub(super) async fn run(mut self) {
        let member_id = Uuid::new_v4().to_string();
        let template = ConsumerHeartbeat {
            member_id: member_id.clone(),
            member_epoch: 0,
            topics: self.settings.topics.clone(),
            rebalance_timeout: self.settings.rebalance_timeout,
            server_assignor: self.settings.remote_assignor.clone(),
            owned: BTreeMap::new(),
            instance_id: self.settings.group_instance_id.clone(),
        };
        let mut m = Member {
            machine: Machine::new(
                self.settings.group.clone(),
                member_id,
                self.settings.group_instance_id.is_some(),
                self.settings.heartbeat_interval,
            ),
            template,
            names: BTreeMap::new(),
            names_at: None,
            commit_client: Some(self.client.clone()),
            queue: VecDeque::new(),
            in_flight: None,
            revoking: None,
            announced: false,
            last_ok: LastHeartbeat::new(),
        };
        info!(group = %self.settings.group, member_id = %m.machine.member_id(), "joining with the consumer group protocol (KIP-848)");
        let mut retries = self.settings.rejoin_backoff.retries();
        let mut next_beat = Instant::now();
        loop {
            m.start_next_commit(&self.settings.group, self.settings.retry_backoff);
            tokio::select! {
                () = tokio::time::sleep_until(next_beat) => {
                    match self.heartbeat(&mut m, &mut retries).await {
                        Some(next) => next_beat = next,
                        None => return,
                    }
                }
                done = async { (&mut m.in_flight.as_mut().expect("guarded").0).await }, if m.in_flight.is_some() => {
                    let (_, waiter) = m.in_flight.take().expect("guarded");
                    let result = match done {
                        Ok((client, result)) => {
                            m.commit_client = Some(client);
                            result
                        }
                        Err(e) => {
                            m.commit_client = Some(self.client.clone());
                            Err(self.commit_error(e.to_string()))
                        }
                    };
                    match waiter {
                        Waiter::Periodic(reply) => { let _ = reply.send(result); }
                        Waiter::Revocation(reply) => {
                            let _ = reply.send(result);
                            if !self.finish_revocation(&mut m).await {
                                return;
                            }
                            next_beat = self.rejoin_at(&m);
                        }
                    }
                }
                command = self.commands.recv() => match command {
                    None => return,
                    Some(Command::Commit { offsets, within, reply }) => {
                        if m.machine.epoch() > 0 {
                            m.queue.push_back((offsets_to_commit(&offsets), within, Waiter::Periodic(reply)));
                        } else {
                            let _ = reply.send(Err(self.commit_error("not a member of the group (partitions lost)".to_owned())));
                        }
                    }
                    Some(Command::Revoked { handled, reply }) => match m.revoking.as_ref() {
                        Some(r) if !r.lost => {
                            m.queue.push_back((
                                offsets_to_commit(&handled),
                                self.settings.revocation_commit_timeout,
                                Waiter::Revocation(reply),
                            ));
                        }
                        Some(_) => {
                            let _ = reply.send(Ok(()));
                            if !self.finish_revocation(&mut m).await {
                                return;
                            }
                            next_beat = self.rejoin_at(&m);
                        }
                        None => { let _ = reply.send(Ok(())); }
                    },
                    Some(Command::Close { handled, within, reply }) => {
                        self.close(&mut m, handled, within, reply).await;
                        return;
                    }
                },
            }
        }
    }

    /// When to send the next heartbeat after fencing or a finished
    /// revocation: at once, unless lost partitions are still being stopped.
    /// Then the rejoin waits for the service (as Java waits for
    /// onPartitionsLost): a commit of theirs made after the rejoin would
    /// carry a valid epoch, and the broker checks only the epoch, not who
    /// owns the partition now. Bounded, should the service never answer.
    fn rejoin_at(&self, m: &Member) -> Instant {
        if m.revoking.as_ref().is_some_and(|r| r.lost) {
            Instant::now() + self.settings.revocation_commit_timeout
        } else {
            Instant::now()
        }
    }

    fn commit_error(&self, detail: String) -> SessionError {
        SessionError::Commit {
            group: self.settings.group.clone(),
            detail,
        }
    }

    /// One heartbeat and what its answer asks for; the time of the next
    /// one, or `None` when the session ends.
    async fn heartbeat(&mut self, m: &mut Member, retries: &mut Retries) -> Option<Instant> {
        let beat = m.machine.heartbeat(&m.template);
        let answer = match self.client.consumer_group_heartbeat(&beat).await {
            Ok(answer) => answer,
            Err(e) => {
                warn!(group = %self.settings.group, error = %e, "ConsumerGroupHeartbeat failed; retrying");
                if !super::report_retrying(&self.events, e.into()) {
                    return None;
                }
                // Never longer than the broker's heartbeat interval: a
                // coordinator back after a long outage must hear from us
                // before the session timeout (Java: retry.backoff.max.ms).
                return Some(Instant::now() + retries.next_delay().min(m.machine.interval()));
            }
        };
        match m.machine.on_response(&answer) {
            Outcome::Member => {
                retries.reset();
                m.last_ok.touch();
                if let Ok(mut h) = self.shared.heartbeat.lock() {
                    if h.is_none() {
                        *h = Some(m.last_ok.clone());
                    }
                }
                let mut next = Instant::now() + m.machine.interval();
                if m.revoking.is_none() && self.reconcile(m).await? {
                    // Acknowledge what the service holds now at once.
                    next = Instant::now();
                }
                Some(next)
            }
            Outcome::Fenced(lost) => {
                warn!(group = %self.settings.group, code = %answer.error, lost = lost.len(), "fenced by the coordinator; partitions lost, rejoining with epoch 0");
                if let Ok(mut h) = self.shared.heartbeat.lock() {
                    *h = None;
                }
                match m.revoking.as_mut() {
                    Some(r) => {
                        r.lost = true;
                        r.then_lost = lost.difference(&r.step.revoke).copied().collect();
                    }
                    None if lost.is_empty() => {}
                    None => {
                        self.start_revocation(
                            m,
                            Reconciliation {
                                revoke: lost,
                                assign: BTreeSet::new(),
                            },
                            true,
                        )
                        .await?
                    }
                }
                Some(self.rejoin_at(m))
            }
            Outcome::Retry(code) => {
                info!(group = %self.settings.group, %code, "coordinator moved or loading; finding it again");
                Some(Instant::now() + retries.next_delay().min(m.machine.interval()))
            }
            Outcome::Fatal(e) => {
                warn!(group = %self.settings.group, error = %e, "cannot stay in the consumer group");
                let _ = self.events.send(SessionEvent::Fatal(e.into())).await;
                None
            }
        }
    }

    /// Starts the next step towards the target assignment, if any:
    /// `Some(true)` when the owned partitions changed (acknowledge now).
    async fn reconcile(&mut self, m: &mut Member) -> Option<bool> {
        let unknown = m
            .machine
            .target_ids()
            .into_iter()
            .any(|id| !m.names.contains_key(&id));
        let stale = m
            .names_at
            .is_none_or(|at| at.elapsed() >= self.settings.metadata_refresh);
        if unknown || stale {
            match self.client.topic_ids(&self.settings.topics).await {
                Ok(ids) => {
                    m.names_at = Some(Instant::now());
                    // From this answer, not from every name seen: a topic
                    // deleted since is missing, though its old id still
                    // names the partitions it leaves behind.
                    if let Ok(mut missing) = self.shared.missing_topics.lock() {
                        *missing = self
                            .settings
                            .topics
                            .iter()
                            .filter(|t| !ids.values().any(|n| n == *t))
                            .cloned()
                            .collect();
                    }
                    m.names.extend(ids);
                }
                Err(e) => {
                    warn!(group = %self.settings.group, error = %e, "cannot resolve the assignment's topic ids; retrying at the next heartbeat")
                }
            }
        }
        let Some(step) = m.machine.reconciliation(|id| m.names.contains_key(id)) else {
            if !m.announced && m.machine.epoch() > 0 && !m.machine.behind_target() {
                // In the group with nothing (more members than partitions).
                self.assign(m, BTreeSet::new()).await?;
            }
            return Some(false);
        };
        if step.revoke.is_empty() {
            // Not assigned (offsets unreadable): the normal heartbeat
            // interval before the next try, not at once.
            return self.assign(m, step.assign).await;
        }
        self.start_revocation(m, step, false).await?;
        Some(false)
    }

    /// Tells the service to stop `step.revoke`; the rest follows its
    /// [`Session::revoked`](super::Session::revoked).
    async fn start_revocation(
        &mut self,
        m: &mut Member,
        step: Reconciliation,
        lost: bool,
    ) -> Option<()> {
        let partitions = named(&m.names, &step.revoke);
        info!(group = %self.settings.group, lost, partitions = ?partitions, "revoking");
        m.announced = false;
        m.revoking = Some(Revoking {
            step,
            lost,
            then_lost: BTreeSet::new(),
        });
        self.events
            .send(SessionEvent::Revoke(Revocation { partitions, lost }))
            .await
            .ok()
    }

    /// The service gave the revoked partitions up (and they are committed):
    /// on to the partitions gained. `false` when the session ends.
    async fn finish_revocation(&mut self, m: &mut Member) -> bool {
        let Some(revoking) = m.revoking.take() else {
            return true;
        };
        let gave_up = Reconciliation {
            revoke: revoking.step.revoke,
            assign: BTreeSet::new(),
        };
        m.machine.reconciled(&gave_up);
        if !revoking.then_lost.is_empty() {
            let lost = Reconciliation {
                revoke: revoking.then_lost,
                assign: BTreeSet::new(),
            };
            return self.start_revocation(m, lost, true).await.is_some();
        }
        if revoking.lost {
            // Rejoining: the next assignment is announced when it comes.
            return true;
        }
        self.assign(m, revoking.step.assign).await.is_some()
    }

    /// Announces `assign` with the committed offsets, then owns it:
    /// `Some(false)` when the offsets could not be read (the next
    /// heartbeat's reconciliation tries again), `None` when the service is
    /// gone.
    async fn assign(&mut self, m: &mut Member, assign: BTreeSet<Tp>) -> Option<bool> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (id, p) in &assign {
            if let Some(name) = m.names.get(id) {
                by_topic.entry(name).or_default().push(*p);
            }
        }
        let wanted: Vec<TopicPartitions> = by_topic
            .iter()
            .map(|(t, ps)| TopicPartitions::new(*t, ps.clone()))
            .collect();
        let committed = match self.client.offset_fetch(&wanted).await {
            Ok(c) => {
                // A partition's own error counts too: taken as "no
                // offset", it would start at auto.offset.reset.
                if let Some(code) = c.first_error() {
                    warn!(group = %self.settings.group, %code, "reading committed offsets failed; retrying at the next heartbeat");
                    return Some(false);
                }
                c.offsets
            }
            Err(e) => {
                warn!(group = %self.settings.group, error = %e, "reading committed offsets failed; retrying at the next heartbeat");
                if !super::report_retrying(&self.events, e.into()) {
                    return None;
                }
                return Some(false);
            }
        };
        let partitions = named(&m.names, &assign)
            .into_iter()
            .map(|(topic, partition)| AssignedPartition {
                committed: committed
                    .get(&(topic.clone(), partition))
                    .map(|o| o.offset)
                    .filter(|o| *o >= 0),
                topic,
                partition,
            })
            .collect();
        m.machine.reconciled(&Reconciliation {
            revoke: BTreeSet::new(),
            assign,
        });
        m.announced = true;
        self.events
            .send(SessionEvent::Assigned(Assigned {
                generation: m.machine.epoch(),
                partitions,
            }))
            .await
            .ok()?;
        Some(true)
    }

    /// Commits asked for first, then the final commit, then the heartbeat
    /// with epoch -1 (-2 for a static member), all within `within`.
    async fn close(&mut self, m: &mut Member, handled: Offsets, within: Duration, reply: Reply) {
        let deadline = Instant::now() + within;
        let drained = tokio::time::timeout(within, async {
            loop {
                m.start_next_commit(&self.settings.group, self.settings.retry_backoff);
                let Some((task, waiter)) = m.in_flight.take() else {
                    return;
                };
                let result = match task.await {
                    Ok((client, result)) => {
                        m.commit_client = Some(client);
                        result
                    }
                    Err(e) => Err(self.commit_error(e.to_string())),
                };
                match waiter {
                    Waiter::Periodic(r) | Waiter::Revocation(r) => {
                        let _ = r.send(result);
                    }
                }
            }
        })
        .await;
        let lost = m.revoking.as_ref().is_some_and(|r| r.lost) || m.machine.epoch() <= 0;
        let committed = if drained.is_err() || lost {
            Ok(())
        } else {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut client = m
                .commit_client
                .take()
                .unwrap_or_else(|| self.client.clone());
            commit_as(
                &mut client,
                &self.settings.group,
                (m.machine.epoch(), m.machine.member_id()),
                offsets_to_commit(&handled),
                remaining,
                self.settings.retry_backoff,
            )
            .await
        };
        if m.machine.epoch() == 0 {
            // Not in the group (never joined, or fenced): nothing to leave.
            let _ = reply.send(committed);
            return;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let leave = m.machine.leave(&m.template);
        match tokio::time::timeout(remaining, self.client.consumer_group_heartbeat(&leave)).await {
            Ok(Ok(r)) if !r.error.is_none() => {
                warn!(group = %self.settings.group, code = %r.error, "leaving the group answered an error")
            }
            Ok(Ok(_)) => {
                info!(group = %self.settings.group, epoch = leave.member_epoch, "left the consumer group")
            }
            Ok(Err(e)) => {
                warn!(group = %self.settings.group, error = %e, "leaving the group failed; the coordinator drops this member after the session timeout")
            }
            Err(_) => {
                warn!(group = %self.settings.group, "leaving the group did not finish within the close deadline")
            }
        }
        let _ = reply.send(committed);
    }
}

impl Member {
    /// Starts the next queued commit when none is on its way.
    fn start_next_commit(&mut self, group: &str, backoff: Backoff) {
        if self.in_flight.is_some() {
            return;
        }
        let Some((offsets, within, waiter)) = self.queue.pop_front() else {
            return;
        };
        let Some(mut client) = self.commit_client.take() else {
            self.queue.push_front((offsets, within, waiter));
            return;
        };
        let group = group.to_owned();
        let epoch = self.machine.epoch();
        let member_id = self.machine.member_id().to_owned();
        let task = tokio::spawn(async move {
            let result = commit_as(
                &mut client,
                &group,
                (epoch, &member_id),
                offsets,
                within,
                backoff,
            )
            .await;
            (client, result)
        });
        self.in_flight = Some((task, waiter));
    }
}

/// OffsetCommit as `(epoch, member id)` (v9+ checks the epoch for
/// consumer-protocol groups: `STALE_MEMBER_EPOCH` when it moved on) within
/// `within`, again after `backoff` while the coordinator moves.
async fn commit_as(
    client: &mut CoordinatorClient,
    group: &str,
    (epoch, member_id): (i32, &str),
    offsets: Vec<OffsetToCommit>,
    within: Duration,
    backoff: Backoff,
) -> Result<(), SessionError> {
    let failed = |detail: String| SessionError::Commit {
        group: group.to_owned(),
        detail,
    };
    match client
        .offset_commit_within(epoch, member_id, &offsets, Some(within), backoff)
        .await
    {
        Err(detail) => Err(failed(detail)),
        Ok(codes) => match first_commit_error(codes.into_values()) {
            None => Ok(()),
            Some(code) => Err(failed(format!(
                "OffsetCommit (member epoch {epoch}) answered {}",
                code
            ))),
        },
    }
}

/// `(topic, partition)` names of `tps` whose topic id is known.
fn named(names: &BTreeMap<Uuid, String>, tps: &BTreeSet<Tp>) -> Vec<(String, i32)> {
    let mut out: Vec<(String, i32)> = tps
        .iter()
        .filter_map(|(id, p)| Some((names.get(id)?.clone(), *p)))
        .collect();
    out.sort();
    out
}
