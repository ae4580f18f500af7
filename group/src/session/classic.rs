//! The classic protocol's session task: joins, heartbeats, commits and
//! revokes for one member, in the order Java's classic consumer does, and
//! tells the service only what it must act on.
//!
//! With the EAGER rebalance protocol (`range`, `roundrobin`, `sticky`)
//! every rebalance revokes everything before the JoinGroup. With KIP-429's
//! COOPERATIVE one (`cooperative-sticky` alone, as Java decides) the
//! service keeps consuming through the JoinGroup, and commits asked for
//! meanwhile wait for the rebalance; after the SyncGroup only the
//! partitions the new assignment leaves out are revoked (their handled
//! offsets committed first), then the new ones are assigned, and a member
//! that revoked something rejoins at once so that the leader can hand
//! those partitions to their new owner (Java's `onJoinComplete`).

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use kafka_base::backoff::Retries;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    Assigned, AssignedPartition, Command, Offsets, Revocation, SessionError, SessionEvent,
    SessionSettings, Shared, TopicMetadata,
};
use crate::{
    coordinator::OffsetToCommit,
    member::{spawn_heartbeat, CommitDone, HeartbeatReport, Member},
    payload::{Assignment, TopicPartitions},
    state::{Action, MemberState},
};

/// How long a partition-count check may take before it counts as
/// unanswered (rskafka retries a metadata request until its deadline).
const METADATA_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

type Reply = oneshot::Sender<Result<(), SessionError>>;

/// The session task's state.
pub(super) struct Task {
    member: Member,
    settings: SessionSettings,
    metadata: Arc<dyn TopicMetadata>,
    events: mpsc::Sender<SessionEvent>,
    commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    /// Commits asked for and not answered yet.
    commits: Commits,
    /// The partitions the service was told to start and not yet to stop.
    held: BTreeSet<(String, i32)>,
}

/// Why a generation ended.
enum Ended {
    /// A rebalance: give the partitions up, then rejoin.
    Rebalance,
    /// The service closes the session.
    Close {
        handled: Offsets,
        within: Duration,
        reply: Reply,
    },
    /// Closed: committed and left.
    Closed,
    /// The member cannot stay in the group.
    Fatal(SessionError),
}

/// Commits asked for, sent one at a time in order on the member's commit
/// connection.
#[derive(Default)]
struct Commits {
    queue: VecDeque<(Vec<OffsetToCommit>, Duration, Reply)>,
    in_flight: Option<(JoinHandle<CommitDone>, Reply)>,
}

impl Commits {
    fn push(&mut self, offsets: &Offsets, within: Duration, reply: Reply) {
        self.queue
            .push_back((crate::member::offsets_to_commit(offsets), within, reply));
    }

    /// Starts the next queued commit when none is on its way.
    fn start_next(&mut self, member: &mut Member) {
        while self.in_flight.is_none() {
            let Some((offsets, within, reply)) = self.queue.pop_front() else {
                return;
            };
            match member.start_commit(offsets, Some(within)) {
                Ok(Some(job)) => self.in_flight = Some((tokio::spawn(job.run()), reply)),
                Ok(None) => {
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }

    /// Applies a finished commit; a fatal outcome is returned for the
    /// session to end on.
    fn finish(
        &mut self,
        member: &mut Member,
        done: Result<CommitDone, tokio::task::JoinError>,
    ) -> Option<SessionError> {
        let (_, reply) = self.in_flight.take()?;
        let result = match done {
            Ok(done) => member.finish_commit(done),
            Err(e) => {
                // The task went with its connection; the next commit opens one.
                member.reset_connection();
                Err(SessionError::Commit {
                    group: member.machine().group_id().to_owned(),
                    detail: e.to_string(),
                })
            }
        };
        let fatal = match &result {
            Err(SessionError::Fatal(e)) => Some(SessionError::Fatal(e.clone())),
            _ => None,
        };
        let _ = reply.send(result);
        fatal
    }

    /// Waits for every commit asked for (each within its own deadline).
    async fn drain(&mut self, member: &mut Member) -> Option<SessionError> {
        let mut fatal = None;
        loop {
            self.start_next(member);
            let Some((task, _)) = self.in_flight.as_mut() else {
                return fatal;
            };
            let done = task.await;
            fatal = fatal.or(self.finish(member, done));
        }
    }

    /// Refuses everything still queued (the member is leaving its generation).
    fn refuse_queued(&mut self, why: impl Fn() -> SessionError) {
        for (_, _, reply) in self.queue.drain(..) {
            let _ = reply.send(Err(why()));
        }
    }
}

impl Task {
    pub(super) fn new(
        member: Member,
        settings: SessionSettings,
        metadata: Arc<dyn TopicMetadata>,
        events: mpsc::Sender<SessionEvent>,
        commands: mpsc::UnboundedReceiver<Command>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            member,
            settings,
            metadata,
            events,
            commands,
            shared,
            commits: Commits::default(),
            held: BTreeSet::new(),
        }
    }

    pub(super) async fn run(mut self) {
        let mut rejoin = self.settings.rejoin_backoff.retries();
        loop {
            if !self.join(&mut rejoin).await {
                return;
            }
            // A cooperative member that revoked something rejoins at once.
            if !matches!(self.member.machine().state(), MemberState::Stable { .. }) {
                continue;
            }
            let ended = self.generation().await;
            match ended {
                // Cooperative members keep their partitions into the
                // JoinGroup unless the membership is gone.
                Ended::Rebalance
                    if self.member.machine().is_cooperative()
                        && !matches!(
                            self.member.machine().state(),
                            MemberState::Revoking { .. }
                        ) => {}
                Ended::Rebalance => {
                    if !self.revoke().await {
                        return;
                    }
                }
                Ended::Close { .. } | Ended::Closed => return,
                Ended::Fatal(e) => {
                    let _ = self.events.send(SessionEvent::Fatal(e)).await;
                    return;
                }
            }
        }
    }

    /// Joins, gives up what a cooperative assignment left out, reads the
    /// committed offsets of the new partitions and announces them; `false`
    /// when the session ends instead.
    async fn join(&mut self, rejoin: &mut Retries) -> bool {
        loop {
            let cancel = CancellationToken::new();
            let metadata = Arc::clone(&self.metadata);
            let cooperative = self.member.machine().is_cooperative();
            let joined = {
                // Bounded as the generation's checks: no heartbeat goes
                // out until the assignment is checked.
                let join = self.member.join(
                    move |topics| bounded_counts(Arc::clone(&metadata), topics),
                    &cancel,
                );
                tokio::pin!(join);
                let mut closing = None;
                loop {
                    tokio::select! {
                        r = &mut join => break match closing {
                            Some(close) => Err(close),
                            None => Ok(r),
                        },
                        Some(command) = self.commands.recv(), if closing.is_none() => {
                            closing = between_generations(command, &mut self.commits, cooperative, &self.settings.group);
                            if closing.is_some() {
                                cancel.cancel();
                            }
                        }
                    }
                }
            };
            let assignment = match joined {
                Err((handled, within, reply)) => {
                    // Eager members hold nothing here; cooperative ones
                    // commit with the generation they still have.
                    self.finish_and_close(handled, within, reply).await;
                    return false;
                }
                Ok(Ok(Some(a))) => a,
                Ok(Ok(None)) => {
                    // Cooperative: the coordinator ended the membership while
                    // the partitions were kept through the rejoin.
                    self.commits.refuse_queued(|| SessionError::Commit {
                        group: self.settings.group.clone(),
                        detail: "the membership ended during the rebalance (partitions lost)"
                            .to_owned(),
                    });
                    let partitions = self.held.iter().cloned().collect();
                    if self.hand_back(partitions, true).await.is_none() {
                        return false;
                    }
                    self.member.revocation_done();
                    continue;
                }
                Ok(Err(e @ SessionError::Fatal(_))) => {
                    self.commits.refuse_queued(|| SessionError::Cancelled);
                    let _ = self.events.send(SessionEvent::Fatal(e)).await;
                    return false;
                }
                Ok(Err(SessionError::Cancelled)) => return false,
                Ok(Err(e)) => {
                    warn!(error = %e, "joining the group failed; retrying");
                    super::report_retrying(&self.events, e);
                    if !self.pause(rejoin).await {
                        return false;
                    }
                    continue;
                }
            };
            rejoin.reset();
            // Commits asked for during the rebalance go out before anything
            // is given up, in the order asked.
            if let Some(fatal) = self.commits.drain(&mut self.member).await {
                let _ = self.events.send(SessionEvent::Fatal(fatal)).await;
                return false;
            }
            let now: BTreeSet<(String, i32)> = assignment
                .topic_partitions()
                .map(|(t, p)| (t.to_owned(), p))
                .collect();
            let revoked: Vec<(String, i32)> = self.held.difference(&now).cloned().collect();
            let second_phase = !revoked.is_empty();
            if second_phase {
                info!(group = %self.settings.group, ?revoked, "the new assignment leaves these partitions out: revoking them, then rejoining");
                if self.hand_back(revoked, false).await.is_none() {
                    return false;
                }
            }
            let added: Vec<(String, i32)> = now.difference(&self.held).cloned().collect();
            let committed = if added.is_empty() {
                Ok(Ok(BTreeMap::new()))
            } else {
                let wanted = assignment_of(&added);
                let cooperative = self.member.machine().is_cooperative();
                let fetch = self.member.committed(&wanted);
                tokio::pin!(fetch);
                // A cooperative member keeps its partitions through the
                // rebalance, so its service may ask for a commit now: it
                // waits for the generation about to start (as during the
                // join); only a close abandons the read.
                loop {
                    tokio::select! {
                        r = &mut fetch => break Ok(r),
                        Some(command) = self.commands.recv() => {
                            if let Some(close) = between_generations(command, &mut self.commits, cooperative, &self.settings.group) {
                                break Err(close);
                            }
                        }
                    }
                }
            };
            let committed = match committed {
                Ok(Ok(c)) => c,
                Err((handled, within, reply)) => {
                    // Abandoned mid-request: leave on a fresh connection,
                    // after the commits queued meanwhile.
                    self.member.reset_connection();
                    self.finish_and_close(handled, within, reply).await;
                    return false;
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "reading committed offsets failed; rejoining");
                    super::report_retrying(&self.events, e);
                    self.member.request_rejoin();
                    if matches!(self.member.machine().state(), MemberState::Revoking { .. }) {
                        // Eager: nothing of this assignment was started.
                        self.member.revocation_done();
                    }
                    if !self.pause(rejoin).await {
                        return false;
                    }
                    continue;
                }
            };
            let partitions = added
                .into_iter()
                .map(|(topic, partition)| {
                    let committed = committed
                        .get(&(topic.clone(), partition))
                        .copied()
                        .filter(|o| *o >= 0);
                    self.held.insert((topic.clone(), partition));
                    AssignedPartition {
                        topic,
                        partition,
                        committed,
                    }
                })
                .collect();
            let assigned = Assigned {
                generation: self.member.generation().generation_id,
                partitions,
            };
            if let Some(invalid) = self.member.invalid_assignment().cloned() {
                if self
                    .events
                    .send(SessionEvent::InvalidAssignment(invalid))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            if self
                .events
                .send(SessionEvent::Assigned(assigned))
                .await
                .is_err()
            {
                return false;
            }
            if self.member.take_rejoin_after_sync() || second_phase {
                self.member.request_rejoin();
            }
            return true;
        }
    }

    /// Sleeps the next rejoin backoff; `false` when closed meanwhile.
    async fn pause(&mut self, rejoin: &mut Retries) -> bool {
        let wait = tokio::time::sleep(rejoin.next_delay());
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => return true,
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        return false;
                    };
                    let cooperative = self.member.machine().is_cooperative();
                    if let Some((handled, within, reply)) =
                        between_generations(command, &mut self.commits, cooperative, &self.settings.group)
                    {
                        self.finish_and_close(handled, within, reply).await;
                        return false;
                    }
                }
            }
        }
    }

    /// Stable in a generation: heartbeats, commits, the partition-count
    /// watch, until a rebalance, a close or a fatal error.
    async fn generation(&mut self) -> Ended {
        let stop = CancellationToken::new();
        let (hb_tx, mut hb_rx) = mpsc::channel::<HeartbeatReport>(4);
        let heartbeat = spawn_heartbeat(
            self.member.heartbeat_client(),
            self.member.generation().clone(),
            &self.settings,
            hb_tx,
            stop.clone(),
        );
        if let Ok(mut h) = self.shared.heartbeat.lock() {
            *h = Some(heartbeat.last_ok.clone());
        }
        // Partition counts this generation was assigned with; a change (a
        // topic created or grown) needs a new assignment, as in Java where
        // the metadata refresh triggers a rejoin.
        let at_join = check_counts(Arc::clone(&self.metadata), self.settings.topics.clone()).await;
        if let (Ok(mut missing), Some(counts)) = (self.shared.missing_topics.lock(), &at_join) {
            *missing = self
                .settings
                .topics
                .iter()
                .filter(|t| !counts.contains_key(t.as_str()))
                .cloned()
                .collect();
        }
        let mut refresh = tokio::time::interval_at(
            Instant::now() + self.settings.metadata_refresh,
            self.settings.metadata_refresh,
        );
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut check: Option<JoinHandle<Option<BTreeMap<String, i32>>>> = None;
        // Held here while the generation runs (the select below borrows it
        // beside the member), back in `self` for the rebalance.
        let mut commits = std::mem::take(&mut self.commits);
        // The leader's assignment had invalid entries: consume the valid
        // ones for a while, then ask for a new assignment.
        let mut invalid_rejoin = self
            .member
            .invalid_assignment()
            .and_then(|invalid| invalid.rejoin_in);
        let rejoin_at = tokio::time::sleep(invalid_rejoin.unwrap_or_default());
        tokio::pin!(rejoin_at);

        let ended = loop {
            commits.start_next(&mut self.member);
            tokio::select! {
                Some(report) = hb_rx.recv() => {
                    match self.member.on_heartbeat(report) {
                        Action::Fatal(e) => break Ended::Fatal(SessionError::Fatal(e)),
                        _ if self.member.revocation_pending().is_some() => break Ended::Rebalance,
                        _ => {}
                    }
                }
                done = async { (&mut commits.in_flight.as_mut().expect("guarded").0).await }, if commits.in_flight.is_some() => {
                    if let Some(fatal) = commits.finish(&mut self.member, done) {
                        break Ended::Fatal(fatal);
                    }
                    if self.member.revocation_pending().is_some() {
                        break Ended::Rebalance;
                    }
                }
                command = self.commands.recv() => match command {
                    None => break Ended::Fatal(SessionError::Cancelled),
                    Some(Command::Commit { offsets, within, reply }) => commits.push(&offsets, within, reply),
                    Some(Command::Close { handled, within, reply }) => break Ended::Close { handled, within, reply },
                    // Nothing is being revoked.
                    Some(Command::Revoked { reply, .. }) => { let _ = reply.send(Ok(())); }
                },
                () = &mut rejoin_at, if invalid_rejoin.is_some() => {
                    invalid_rejoin = None;
                    info!(group = %self.settings.group, "leaving and joining as a new member for a valid assignment");
                    self.member.rejoin_as_new_member();
                    if self.member.revocation_pending().is_some() {
                        break Ended::Rebalance;
                    }
                }
                _ = refresh.tick(), if check.is_none() => {
                    check = Some(tokio::spawn(check_counts(Arc::clone(&self.metadata), self.settings.topics.clone())));
                }
                now = async { (&mut check.as_mut().expect("guarded")).await }, if check.is_some() => {
                    check = None;
                    if let (Some(before), Ok(Some(now))) = (&at_join, now) {
                        if before != &now {
                            info!(group = %self.settings.group, ?before, ?now, "subscribed topics changed; asking for a rebalance");
                            self.member.request_rejoin();
                            if self.member.revocation_pending().is_some() {
                                break Ended::Rebalance;
                            }
                        }
                    }
                }
            }
        };
        if let Some(check) = check {
            check.abort();
        }
        // Commits asked for before the end finish (each within its own
        // deadline) before the partitions are given up or the final commit
        // goes out: one member's commits never overtake each other.
        let ended = match ended {
            Ended::Rebalance => match commits.drain(&mut self.member).await {
                Some(fatal) => Ended::Fatal(fatal),
                None => Ended::Rebalance,
            },
            Ended::Fatal(e) => {
                commits.refuse_queued(|| SessionError::Cancelled);
                Ended::Fatal(e)
            }
            other @ (Ended::Close { .. } | Ended::Closed) => other,
        };
        stop.cancel();
        let _ = heartbeat.task.await;
        if let Ok(mut h) = self.shared.heartbeat.lock() {
            *h = None;
        }
        self.commits = commits;
        if let Ended::Close {
            handled,
            within,
            reply,
        } = ended
        {
            self.finish_and_close(handled, within, reply).await;
            return Ended::Closed;
        }
        ended
    }

    /// Within the close's own deadline: the commits asked for first, then
    /// the final commit and LeaveGroup.
    async fn finish_and_close(&mut self, handled: Offsets, within: Duration, reply: Reply) {
        let deadline = Instant::now() + within;
        if tokio::time::timeout(within, self.commits.drain(&mut self.member))
            .await
            .is_err()
        {
            self.member.reset_connection();
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.close(handled, remaining, reply).await;
    }

    /// The eager revocation (and a lost membership's): everything held
    /// goes. `false` when the session ends instead.
    async fn revoke(&mut self) -> bool {
        let lost = self.member.revocation_pending().unwrap_or(true);
        let partitions = self
            .member
            .machine()
            .assignment()
            .map(|a| {
                a.topic_partitions()
                    .map(|(t, p)| (t.to_owned(), p))
                    .collect()
            })
            .unwrap_or_default();
        if self.hand_back(partitions, lost).await.is_none() {
            return false;
        }
        self.member.revocation_done();
        info!(group = %self.settings.group, lost, "partitions revoked; rejoining");
        true
    }

    /// Announces the revocation of `partitions` and waits for the
    /// service's [`Session::revoked`](super::Session::revoked); commits what
    /// it handled unless the partitions were lost. `None` when the session
    /// ends instead.
    async fn hand_back(&mut self, partitions: Vec<(String, i32)>, lost: bool) -> Option<()> {
        for tp in &partitions {
            self.held.remove(tp);
        }
        self.events
            .send(SessionEvent::Revoke(Revocation { partitions, lost }))
            .await
            .ok()?;
        loop {
            match self.commands.recv().await? {
                Command::Revoked { handled, reply } => {
                    let result = if lost {
                        Ok(())
                    } else {
                        let offsets = crate::member::offsets_to_commit(&handled);
                        self.member
                            .commit_within(&offsets, Some(self.settings.revocation_commit_timeout))
                            .await
                    };
                    let _ = reply.send(result);
                    return Some(());
                }
                Command::Close {
                    handled,
                    within,
                    reply,
                } => {
                    self.close(if lost { Offsets::new() } else { handled }, within, reply)
                        .await;
                    return None;
                }
                other => refuse(other, self.settings.group.as_str()),
            }
        }
    }

    /// The final commit, then LeaveGroup, within `within`.
    async fn close(&mut self, handled: Offsets, within: Duration, reply: Reply) {
        let deadline = Instant::now() + within;
        let offsets = crate::member::offsets_to_commit(&handled);
        let committed = self.member.commit_within(&offsets, Some(within)).await;
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.member.leave(remaining).await;
        let _ = reply.send(committed);
    }
}

/// `partitions` as an assignment, grouped per topic.
fn assignment_of(partitions: &[(String, i32)]) -> Assignment {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    Assignment::new(
        by_topic
            .into_iter()
            .map(|(topic, ps)| TopicPartitions::new(topic, ps))
            .collect(),
    )
}

/// A command while no generation runs (joining, or waiting to join again):
/// a cooperative member still owns its partitions, so its commits wait for
/// the next generation; a close is handed back to the caller.
fn between_generations(
    command: Command,
    commits: &mut Commits,
    cooperative: bool,
    group: &str,
) -> Option<(Offsets, Duration, Reply)> {
    match command {
        Command::Close {
            handled,
            within,
            reply,
        } => Some((handled, within, reply)),
        Command::Commit {
            offsets,
            within,
            reply,
        } if cooperative => {
            commits.push(&offsets, within, reply);
            None
        }
        other => {
            refuse(other, group);
            None
        }
    }
}

/// Answers a request that makes no sense now: a commit outside a
/// generation it may commit for, a revocation nobody asked for.
pub(super) fn refuse(command: Command, group: &str) {
    let refused = || SessionError::Commit {
        group: group.to_owned(),
        detail: "not a member of a generation (partitions lost)".to_owned(),
    };
    match command {
        Command::Commit { reply, .. } => {
            let _ = reply.send(Err(refused()));
        }
        Command::Revoked { reply, .. } => {
            let _ = reply.send(Ok(()));
        }
        Command::Close { reply, .. } => {
            let _ = reply.send(Ok(()));
        }
    }
}

/// The subscribed topics' partition counts, or `None` when the cluster
/// does not answer within [`METADATA_CHECK_TIMEOUT`].
async fn check_counts(
    metadata: Arc<dyn TopicMetadata>,
    topics: Vec<String>,
) -> Option<BTreeMap<String, i32>> {
    bounded_counts(metadata, topics).await.ok()
}

/// The subscribed topics' partition counts within
/// [`METADATA_CHECK_TIMEOUT`], or why not.
async fn bounded_counts(
    metadata: Arc<dyn TopicMetadata>,
    topics: Vec<String>,
) -> Result<BTreeMap<String, i32>, String> {
    tokio::time::timeout(METADATA_CHECK_TIMEOUT, metadata.partition_counts(topics))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {METADATA_CHECK_TIMEOUT:?}")))
}
