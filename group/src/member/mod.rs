//! The member driver: does the I/O that the pure state machine
//! ([`super::state::Membership`]) asks for, over a [`CoordinatorClient`].
//!
//! The driver is owned by one task (the consumer's main loop). Heartbeats run
//! on their own task with their own coordinator connection
//! ([`spawn_heartbeat`]) and report back through a channel, so the state
//! machine has exactly one owner, as Java's coordinator has one lock.

use std::{collections::BTreeMap, time::Duration};

use kafka_base::backoff::{sleep_jittered, Backoff};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    assignor::{
        assignor_by_name, encode_group_assignment, is_cooperative,
        sticky::{cooperative_sticky_user_data, sticky_user_data, COOPERATIVE_STICKY, STICKY},
        MemberSubscription,
    },
    coordinator::{
        CoordinatorClient, CoordinatorError, JoinGroupParams, JoinProtocol, JoinedMember,
        OffsetToCommit,
    },
    error::{GroupError, KafkaCode},
    payload::{Assignment, Subscription, ASSIGNMENT_VERSION, SUBSCRIPTION_VERSION},
    state::{first_commit_error, Action, Event, Generation, MemberState, Membership},
};

/// Which consumer group protocol a member speaks (Java's `group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup with a client-side assignor (every broker).
    #[default]
    Classic,
    /// KIP-848's `ConsumerGroupHeartbeat` (Kafka 4.0+).
    Consumer,
    /// `Consumer` when the coordinator offers `ConsumerGroupHeartbeat`,
    /// else `Classic`.
    Auto,
}

/// What a member of the group is and how it paces itself.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The group id.
    pub group: String,
    /// Static membership id (`group.instance.id`).
    pub group_instance_id: Option<String>,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Assignors offered, preferred first.
    pub assignors: Vec<String>,
    /// The coordinator evicts a member silent this long.
    pub session_timeout: Duration,
    /// How often heartbeats go out.
    pub heartbeat_interval: Duration,
    /// How long the coordinator waits for members to rejoin (Java's
    /// `max.poll.interval.ms`).
    pub rebalance_timeout: Duration,
    /// Retries of group requests (Java's `retry.backoff.ms` / `.max.ms`).
    pub retry_backoff: Backoff,
    /// Waits between attempts to join after a failure.
    pub rejoin_backoff: Backoff,
    /// How often the subscribed topics' partition counts are checked.
    pub metadata_refresh: Duration,
    /// The deadline of the commit before partitions are given up.
    pub revocation_commit_timeout: Duration,
    /// The group protocol.
    pub protocol: GroupProtocol,
    /// The consumer protocol's server-side assignor (`uniform`, `range`);
    /// `None`: the broker's default.
    pub remote_assignor: Option<String>,
    /// The settings the user gave that only the classic protocol uses
    /// (named as the user set them, e.g. `CONSUMER_SESSION_TIMEOUT_MS`):
    /// the session warns once, naming them, when it runs the consumer
    /// protocol, where the broker's group settings apply instead.
    pub classic_only: Vec<String>,
}

impl SessionSettings {
    /// Java's defaults for `group` subscribed to `topics`: `range` then
    /// `roundrobin`, 45 s session, 3 s heartbeat, 5 min rebalance timeout.
    pub fn new(group: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            group: group.into(),
            group_instance_id: None,
            topics,
            assignors: vec!["range".to_owned(), "roundrobin".to_owned()],
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            rebalance_timeout: Duration::from_secs(300),
            retry_backoff: Backoff::default(),
            rejoin_backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(30)),
            metadata_refresh: Duration::from_secs(10),
            revocation_commit_timeout: Duration::from_secs(10),
            protocol: GroupProtocol::Classic,
            remote_assignor: None,
            classic_only: Vec::new(),
        }
    }
}

/// Errors the driver reports.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The group protocol says stop (fenced, not authorised, …).
    #[error(transparent)]
    Fatal(#[from] GroupError),
    /// The coordinator could not be reached or answered nonsense; retried
    /// by the caller with backoff.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// Partition metadata for the leader's assignment could not be read.
    #[error("consumer group '{group}': cannot read topic metadata for the assignment: {detail}")]
    Metadata {
        /// The group id.
        group: String,
        /// What failed.
        detail: String,
    },
    /// A commit failed; the offsets stay uncommitted and are retried.
    #[error("consumer group '{group}': offset commit failed: {detail}")]
    Commit {
        /// The group id.
        group: String,
        /// Why.
        detail: String,
    },
    /// The coordinator refused us for a reason a retry will not fix soon
    /// (authentication, TLS); the caller keeps retrying with a long backoff.
    #[error("consumer group '{group}': {detail}")]
    Unreachable {
        /// The group id.
        group: String,
        /// The coordinator error, as text.
        detail: String,
    },
    /// Shutdown was requested while joining.
    #[error("cancelled")]
    Cancelled,
}

impl SessionError {
    /// Whether the consumer should give up.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Fatal(_))
    }
}

/// A commit prepared by [`Member::start_commit`]: it runs on its own
/// connection to the coordinator, with its own deadline, so the member's
/// owner can go on watching heartbeats and readiness while it is on its way.
/// Hand what [`run`](Self::run) returns to [`Member::finish_commit`].
#[derive(Debug)]
pub struct CommitJob {
    client: CoordinatorClient,
    generation: Generation,
    offsets: Vec<OffsetToCommit>,
    within: Option<Duration>,
    /// Between attempts when the coordinator moved (settings' retry backoff).
    backoff: Backoff,
}

/// How a [`CommitJob`] ended.
#[derive(Debug)]
pub struct CommitDone {
    client: CoordinatorClient,
    generation: Generation,
    result: Result<BTreeMap<(String, i32), KafkaCode>, String>,
}

impl CommitJob {
    /// Sends the OffsetCommit, again while the coordinator moves, until the
    /// job's deadline (the connection is then dropped and the coordinator
    /// found again next time).
    pub async fn run(mut self) -> CommitDone {
        let result = self
            .client
            .offset_commit_within(
                self.generation.generation_id,
                &self.generation.member_id,
                &self.offsets,
                self.within,
                self.backoff,
            )
            .await;
        CommitDone {
            client: self.client,
            generation: self.generation,
            result,
        }
    }
}

/// The member driver.
#[derive(Debug)]
pub struct Member {
    settings: SessionSettings,
    machine: Membership,
    client: CoordinatorClient,
    /// Members and their subscriptions, when we lead the current join.
    members: Vec<JoinedMember>,
    skip_assignment: bool,
    /// The connection commits go out on, apart from JoinGroup's; taken by a
    /// [`CommitJob`] while it runs.
    commit_client: Option<CoordinatorClient>,
    /// The last assignment received and its generation: the eager `sticky`
    /// assignor's userData (Java's `StickyAssignor` remembers the same in
    /// `onAssignment`), so a leader keeps our partitions with us.
    previous: Option<(Assignment, i32)>,
    /// The member id of the current generation's leader (JoinGroup).
    leader: String,
    /// What the current generation's assignment had that this member
    /// dropped, while it holds the rest until its rejoin.
    invalid: Option<InvalidAssignment>,
    /// Invalid assignments in a row: the rejoin after each waits longer.
    invalid_streak: u32,
    /// Join the next time as a new member (after a LeaveGroup): the way a
    /// follower gets the leader to assign again.
    fresh_join: bool,
}

/// An assignment from the leader with entries this member dropped
/// ([`validate::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidAssignment {
    /// The leader's member id.
    pub leader: String,
    /// The generation.
    pub generation: i32,
    /// How many entries were dropped.
    pub dropped: usize,
    /// How long the member consumes what was valid before it rejoins
    /// (the rejoin backoff, growing while assignments stay invalid);
    /// `None` for a static member, which cannot make the leader assign
    /// again (see [`Member::rejoin_as_new_member`]).
    pub rejoin_in: Option<Duration>,
}

impl Member {
    /// A member that has not joined yet.
    pub fn new(client: CoordinatorClient, settings: SessionSettings) -> Self {
        let machine = Membership::new(
            settings.group.clone(),
            settings.group_instance_id.clone(),
            settings.retry_backoff,
        )
        .with_cooperative(is_cooperative(&settings.assignors));
        Self {
            settings,
            machine,
            client,
            members: Vec::new(),
            skip_assignment: false,
            commit_client: None,
            previous: None,
            leader: String::new(),
            invalid: None,
            invalid_streak: 0,
            fresh_join: false,
        }
    }

    /// The state machine (read-only).
    pub fn machine(&self) -> &Membership {
        &self.machine
    }

    /// The current generation.
    pub fn generation(&self) -> &Generation {
        self.machine.generation()
    }

    /// Drops the coordinator connection (e.g. after a request was abandoned
    /// mid-flight); the next request finds the coordinator again.
    pub fn reset_connection(&mut self) {
        self.client.mark_coordinator_dead();
    }

    /// A client with its own connection to the same coordinator, for heartbeats.
    pub fn heartbeat_client(&self) -> CoordinatorClient {
        self.client.clone()
    }

    /// Joins until Stable and returns this member's assignment.
    /// `partition_counts` is asked for the subscribed topics' partition
    /// counts when this member leads the generation. `None`: a cooperative
    /// member lost the partitions it kept through the rejoin (the
    /// coordinator reset its generation); the caller revokes them as lost,
    /// then joins again.
    pub async fn join<F, Fut>(
        &mut self,
        partition_counts: F,
        cancel: &CancellationToken,
    ) -> Result<Option<Assignment>, SessionError>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<BTreeMap<String, i32>, String>>,
    {
        let mut coordinator_failures: u32 = 0;
        loop {
            if cancel.is_cancelled() {
                return Err(SessionError::Cancelled);
            }
            let state = self.machine.state().clone();
            match state {
                MemberState::Stable { assignment } => {
                    let assignment = self.checked(assignment, &partition_counts).await?;
                    self.previous =
                        Some((assignment.clone(), self.machine.generation().generation_id));
                    return Ok(Some(assignment));
                }
                MemberState::Fatal(e) => return Err(SessionError::Fatal(e)),
                MemberState::Left | MemberState::Leaving => return Err(SessionError::Cancelled),
                MemberState::Revoking { .. } if self.machine.is_cooperative() => return Ok(None),
                MemberState::Revoking { .. } => {
                    // The caller revoked before calling join.
                    self.machine.handle(Event::RevocationDone);
                }
                MemberState::Unjoined | MemberState::Joining => {
                    if std::mem::take(&mut self.fresh_join) {
                        self.leave_for_fresh_join(cancel).await?;
                    }
                    self.machine.handle(Event::JoinSent);
                    let params = self.join_params()?;
                    let result = tokio::select! {
                        () = cancel.cancelled() => return Err(SessionError::Cancelled),
                        r = self.client.join_group(&params) => r,
                    };
                    match result {
                        Err(e) => {
                            coordinator_failures += 1;
                            self.coordinator_lost(&e, coordinator_failures, cancel)
                                .await?;
                        }
                        Ok(r) if !r.error.is_none() => {
                            coordinator_failures = 0;
                            let action = self.machine.handle(Event::JoinGroupError {
                                code: r.error,
                                member_id: r.member_id.clone(),
                            });
                            self.apply(action, cancel).await?;
                        }
                        Ok(r) => {
                            coordinator_failures = 0;
                            let leader = r.is_leader();
                            info!(
                                group = %self.settings.group,
                                generation = r.generation_id,
                                member_id = %r.member_id,
                                leader,
                                protocol = r.protocol_name.as_deref().unwrap_or(""),
                                members = r.members.len(),
                                "joined group"
                            );
                            self.members = r.members;
                            self.skip_assignment = r.skip_assignment;
                            self.leader = r.leader;
                            let action = self.machine.handle(Event::JoinGroupOk {
                                generation_id: r.generation_id,
                                member_id: r.member_id,
                                protocol_type: r.protocol_type,
                                protocol_name: r.protocol_name,
                                leader,
                            });
                            self.apply(action, cancel).await?;
                        }
                    }
                }
                MemberState::AwaitingSync { leader } => {
                    let generation = self.machine.generation().clone();
                    let protocol = generation.protocol_name.clone().unwrap_or_default();
                    let assignments = if leader && !self.skip_assignment {
                        self.compute_assignment(&protocol, &partition_counts)
                            .await?
                    } else {
                        Vec::new()
                    };
                    let result = tokio::select! {
                        () = cancel.cancelled() => return Err(SessionError::Cancelled),
                        r = self.client.sync_group(generation.generation_id, &generation.member_id, &protocol, &assignments) => r,
                    };
                    match result {
                        Err(e) => {
                            coordinator_failures += 1;
                            self.coordinator_lost(&e, coordinator_failures, cancel)
                                .await?;
                        }
                        Ok(r) if !r.error.is_none() => {
                            let action = self.machine.handle(Event::SyncGroupError {
                                sent: generation,
                                code: r.error,
                            });
                            self.apply(action, cancel).await?;
                        }
                        Ok(r) => {
                            let action = self.machine.handle(Event::SyncGroupOk {
                                protocol_type: None,
                                protocol_name: r.protocol_name,
                                assignment: r.assignment,
                            });
                            self.apply(action, cancel).await?;
                        }
                    }
                }
            }
        }
    }

    fn join_params(&self) -> Result<JoinGroupParams, SessionError> {
        let protocol_error = |e| GroupError::Protocol {
            group: self.settings.group.clone(),
            api: crate::error::GroupApi::JoinGroup,
            source: e,
        };
        // As Java: every assignor's subscription carries the partitions kept
        // through the rejoin (none when eager: they were revoked) and the
        // current generation.
        let generation = self.machine.generation().generation_id;
        let subscription = Subscription {
            owned_partitions: self.machine.owned().partitions.clone(),
            generation_id: (generation >= 0).then_some(generation),
            ..Subscription::new(self.settings.topics.iter().cloned())
        };
        let plain = subscription
            .encode(SUBSCRIPTION_VERSION)
            .map_err(protocol_error)?;
        let mut protocols = Vec::with_capacity(self.settings.assignors.len());
        for name in &self.settings.assignors {
            let user_data = match (name.as_str(), &self.previous) {
                // What we had, for the sticky leader (none before the first
                // assignment, as in Java).
                (STICKY, Some((assignment, generation))) => {
                    let previous = assignment
                        .partitions
                        .iter()
                        .flat_map(|tp| tp.partitions.iter().map(move |&p| (tp.topic.as_str(), p)));
                    Some(sticky_user_data(previous, *generation).map_err(protocol_error)?)
                }
                // The generation of the last assignment received, −1 before.
                (COOPERATIVE_STICKY, previous) => Some(cooperative_sticky_user_data(
                    previous.as_ref().map_or(-1, |(_, g)| *g),
                )),
                _ => None,
            };
            let metadata = match user_data {
                Some(user_data) => Subscription {
                    user_data: Some(user_data),
                    ..subscription.clone()
                }
                .encode(SUBSCRIPTION_VERSION)
                .map_err(protocol_error)?,
                None => plain.clone(),
            };
            protocols.push(JoinProtocol {
                name: name.clone(),
                metadata,
            });
        }
        Ok(JoinGroupParams {
            member_id: self.machine.generation().member_id.clone(),
            session_timeout: self.settings.session_timeout,
            rebalance_timeout: self.settings.rebalance_timeout,
            protocols,
            reason: None,
        })
    }

    /// The leader's `assignment` without what this member may not consume
    /// (unsubscribed topics, partitions that do not exist, duplicates, past
    /// [`validate::MAX_ASSIGNMENT_ENTRIES`]); what was dropped is logged
    /// once and kept for [`invalid_assignment`](Self::invalid_assignment).
    async fn checked<F, Fut>(
        &mut self,
        assignment: Assignment,
        partition_counts: &F,
    ) -> Result<Assignment, SessionError>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<BTreeMap<String, i32>, String>>,
    {
        let counts = partition_counts(self.settings.topics.clone())
            .await
            .map_err(|detail| SessionError::Metadata {
                group: self.settings.group.clone(),
                detail,
            })?;
        let checked = validate::check(&assignment, &self.settings.topics, &counts);
        if checked.problems.is_empty() {
            self.invalid = None;
            self.invalid_streak = 0;
            return Ok(assignment);
        }
        let generation = self.machine.generation().generation_id;
        let rejoin_in = self
            .settings
            .group_instance_id
            .is_none()
            .then(|| self.settings.rejoin_backoff.delay(self.invalid_streak));
        self.invalid_streak = self.invalid_streak.saturating_add(1);
        warn!(
            group = %self.settings.group,
            generation,
            leader = %self.leader,
            dropped = checked.problems.total(),
            kept = checked.kept.topic_partitions().count(),
            problems = %checked.problems,
            rejoin_in_ms = rejoin_in.map(|d| d.as_millis() as u64),
            "the group leader's assignment has entries this member may not consume: dropped them, consuming the rest until it rejoins (a static member: until the next rebalance)"
        );
        self.machine.restrict_assignment(checked.kept.clone());
        self.invalid = Some(InvalidAssignment {
            leader: self.leader.clone(),
            generation,
            dropped: checked.problems.total(),
            rejoin_in,
        });
        Ok(checked.kept)
    }

    /// What the current generation's assignment had that this member
    /// dropped; `None` when it was valid.
    pub fn invalid_assignment(&self) -> Option<&InvalidAssignment> {
        self.invalid.as_ref()
    }

    async fn compute_assignment<F, Fut>(
        &self,
        protocol: &str,
        partition_counts: &F,
    ) -> Result<Vec<(String, bytes::Bytes)>, SessionError>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<BTreeMap<String, i32>, String>>,
    {
        let group = self.settings.group.clone();
        let assignor = assignor_by_name(protocol).ok_or_else(|| SessionError::Metadata {
            group: group.clone(),
            detail: format!(
                "the coordinator chose assignor '{protocol}', which this member does not implement"
            ),
        })?;
        let mut subs = Vec::with_capacity(self.members.len());
        for m in &self.members {
            // A member whose subscription we cannot read gets nothing rather
            // than failing the whole group.
            let subscription = Subscription::decode(&m.metadata).unwrap_or_else(|e| {
                warn!(group = %group, member = %m.member_id, error = %e, "unreadable subscription; member gets no partitions");
                Subscription::default()
            });
            // Owned partitions, generation and userData too: the sticky
            // assignor needs them.
            subs.push(MemberSubscription::from_subscription(
                m.member_id.clone(),
                m.group_instance_id.clone(),
                subscription,
            ));
        }
        let topics: Vec<String> = crate::assignor::subscribed_topics(&subs)
            .into_iter()
            .collect();
        let counts = partition_counts(topics)
            .await
            .map_err(|detail| SessionError::Metadata {
                group: group.clone(),
                detail,
            })?;
        let assignment = assignor.assign(&subs, &counts);
        debug!(group = %group, ?assignment, "leader computed the assignment");
        let encoded = encode_group_assignment(&assignment, ASSIGNMENT_VERSION).map_err(|e| {
            GroupError::Protocol {
                group,
                api: crate::error::GroupApi::SyncGroup,
                source: e,
            }
        })?;
        Ok(encoded.into_iter().collect())
    }

    async fn coordinator_lost(
        &mut self,
        e: &CoordinatorError,
        failures: u32,
        cancel: &CancellationToken,
    ) -> Result<(), SessionError> {
        warn!(group = %self.settings.group, error = %e, "group coordinator request failed; finding the coordinator again");
        self.client.mark_coordinator_dead();
        let action = self.machine.handle(Event::CoordinatorLost);
        if !e.is_retriable() {
            // Authentication, TLS or configuration: the caller reports it and
            // retries with its own, longer backoff.
            return Err(SessionError::Unreachable {
                group: self.settings.group.clone(),
                detail: e.to_string(),
            });
        }
        let backoff = match action {
            Action::RediscoverCoordinator { backoff } | Action::Retry { backoff } => backoff,
            _ => self.settings.retry_backoff.delay(failures),
        };
        pause(
            backoff.max(self.settings.retry_backoff.delay(failures)),
            cancel,
        )
        .await
    }

    async fn apply(
        &mut self,
        action: Action,
        cancel: &CancellationToken,
    ) -> Result<(), SessionError> {
        match action {
            Action::Continue | Action::Rejoin { .. } | Action::RejoinWithMemberId(_) => Ok(()),
            Action::Retry { backoff } => pause(backoff, cancel).await,
            Action::RediscoverCoordinator { backoff } => {
                self.client.mark_coordinator_dead();
                pause(backoff, cancel).await
            }
            Action::Fail(e) | Action::Fatal(e) => Err(SessionError::Fatal(e)),
        }
    }

    /// The group's committed offsets for `assignment` (-1 = none).
    pub async fn committed(
        &mut self,
        assignment: &Assignment,
    ) -> Result<BTreeMap<(String, i32), i64>, SessionError> {
        let mut failures = 0u32;
        loop {
            match self.client.offset_fetch(&assignment.partitions).await {
                Ok(r) => match r.first_error() {
                    None => {
                        self.machine.handle(Event::OffsetFetchOk);
                        return Ok(r.offsets.into_iter().map(|(k, v)| (k, v.offset)).collect());
                    }
                    Some(code) => {
                        let action = self.machine.handle(Event::OffsetFetchError { code });
                        self.apply(action, &CancellationToken::new()).await?;
                    }
                },
                Err(e) => {
                    failures += 1;
                    if !e.is_retriable() || failures > 10 {
                        return Err(SessionError::Coordinator(e));
                    }
                    self.client.mark_coordinator_dead();
                    tokio::time::sleep(self.settings.retry_backoff.delay(failures)).await;
                }
            }
        }
    }

    #[cfg(any(test, feature = "unstable-fuzzing"))]
    /// Commits `offsets` for the current generation.
    pub async fn commit(&mut self, offsets: &[OffsetToCommit]) -> Result<(), SessionError> {
        self.commit_within(offsets, None).await
    }

    /// Commits `offsets`, giving up after `within` (when given).
    pub async fn commit_within(
        &mut self,
        offsets: &[OffsetToCommit],
        within: Option<Duration>,
    ) -> Result<(), SessionError> {
        match self.start_commit(offsets.to_vec(), within)? {
            None => Ok(()),
            Some(job) => {
                let done = job.run().await;
                self.finish_commit(done)
            }
        }
    }

    /// Prepares a commit of `offsets` for the current generation, to run
    /// off this member's owner ([`CommitJob`]); `None` when there is nothing
    /// to commit. Refused when the member is in no generation it may commit
    /// for (its partitions are lost).
    pub fn start_commit(
        &mut self,
        offsets: Vec<OffsetToCommit>,
        within: Option<Duration>,
    ) -> Result<Option<CommitJob>, SessionError> {
        if offsets.is_empty() {
            return Ok(None);
        }
        let Some(generation) = self.machine.commit_generation().cloned() else {
            return Err(SessionError::Commit {
                group: self.settings.group.clone(),
                detail: "not a member of a generation (partitions lost)".to_owned(),
            });
        };
        let client = self
            .commit_client
            .take()
            .unwrap_or_else(|| self.client.clone());
        Ok(Some(CommitJob {
            client,
            generation,
            offsets,
            within,
            backoff: self.settings.retry_backoff,
        }))
    }

    /// Feeds how a [`CommitJob`] ended into the state machine.
    pub fn finish_commit(&mut self, done: CommitDone) -> Result<(), SessionError> {
        let CommitDone {
            mut client,
            generation,
            result,
        } = done;
        let outcome = match result {
            Err(detail) => Err(SessionError::Commit {
                group: self.settings.group.clone(),
                detail,
            }),
            Ok(codes) => match first_commit_error(codes.values().copied()) {
                None => {
                    self.machine.handle(Event::CommitOk);
                    Ok(())
                }
                Some(code) => {
                    let action = self.machine.handle(Event::CommitError {
                        sent: generation,
                        code,
                    });
                    if let Action::RediscoverCoordinator { .. } = action {
                        client.mark_coordinator_dead();
                    }
                    match action {
                        Action::Fatal(e) => Err(SessionError::Fatal(e)),
                        _ => Err(SessionError::Commit {
                            group: self.settings.group.clone(),
                            detail: code.to_string(),
                        }),
                    }
                }
            },
        };
        self.commit_client = Some(client);
        outcome
    }

    /// Feeds a heartbeat report into the state machine.
    pub fn on_heartbeat(&mut self, report: HeartbeatReport) -> Action {
        match report {
            HeartbeatReport::Error { sent, code } => {
                let action = self.machine.handle(Event::HeartbeatError { sent, code });
                match &action {
                    Action::RediscoverCoordinator { .. } => self.client.mark_coordinator_dead(),
                    Action::Rejoin {
                        reset_member_id,
                        reset_generation,
                    } if *reset_member_id || *reset_generation => {
                        warn!(group = %self.settings.group, code = %code, reset_member_id, "the coordinator ended this membership; rejoining");
                    }
                    _ => {}
                }
                action
            }
            HeartbeatReport::SessionExpired { detail } => {
                // Like Java's heartbeat thread: the membership is not ours to
                // end. Find the coordinator again and keep the member id and
                // generation; its answer (UNKNOWN_MEMBER_ID,
                // ILLEGAL_GENERATION, FENCED_INSTANCE_ID) decides.
                let generation = self.machine.generation();
                warn!(
                    group = %self.settings.group,
                    member_id = %generation.member_id,
                    generation = generation.generation_id,
                    %detail,
                    "no heartbeat got through for a session timeout; keeping the membership and finding the coordinator again"
                );
                self.client.mark_coordinator_dead();
                if let Some(c) = self.commit_client.as_mut() {
                    c.mark_coordinator_dead();
                }
                Action::RediscoverCoordinator {
                    backoff: Duration::ZERO,
                }
            }
            HeartbeatReport::Recovered { after } => {
                info!(group = %self.settings.group, after_ms = after.as_millis() as u64, "heartbeats get through again");
                self.machine.handle(Event::HeartbeatOk)
            }
        }
    }

    /// Gives up the partitions, then leaves and joins as a new member: the
    /// way a follower makes the leader assign again after an invalid
    /// assignment. Rejoining with the same member id would not do: the
    /// coordinator answers a follower that rejoins a stable group with
    /// unchanged metadata with the current generation, and the same
    /// assignment. (A static member keeps its partitions across such a
    /// rejoin by design, so it waits for the next rebalance instead.)
    pub fn rejoin_as_new_member(&mut self) {
        if self.settings.group_instance_id.is_none() {
            // Cooperative members too: after LeaveGroup nothing is ours.
            self.fresh_join = true;
            self.machine.revoke_all_and_rejoin();
        }
    }

    /// LeaveGroup (best effort, within the request timeout), then forget
    /// the member id so that the next JoinGroup is a new member's.
    async fn leave_for_fresh_join(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<(), SessionError> {
        let member_id = self.machine.generation().member_id.clone();
        if !member_id.is_empty() {
            let leave = self
                .client
                .leave_group(&member_id, Some("the leader's assignment was invalid"));
            tokio::select! {
                () = cancel.cancelled() => return Err(SessionError::Cancelled),
                r = leave => if let Err(e) = r {
                    warn!(group = %self.settings.group, error = %e, "LeaveGroup before joining as a new member failed; the old member expires after the session timeout");
                },
            }
        }
        self.machine.forget_member_id();
        Ok(())
    }

    /// Asks for a rebalance (e.g. partitions were added to a topic).
    pub fn request_rejoin(&mut self) -> Action {
        self.machine.handle(Event::RejoinRequested)
    }

    /// Whether the machine wants the caller to give up its partitions now.
    pub fn revocation_pending(&self) -> Option<bool> {
        match self.machine.state() {
            MemberState::Revoking { lost, .. } => Some(*lost),
            MemberState::Unjoined | MemberState::Joining | MemberState::AwaitingSync { .. } => {
                Some(true)
            }
            _ => None,
        }
    }

    /// Whether a rejoin was asked for while the last rebalance ran (asked
    /// once: see [`Membership::take_rejoin_after_sync`]).
    pub fn take_rejoin_after_sync(&mut self) -> bool {
        self.machine.take_rejoin_after_sync()
    }

    /// The caller finished revoking (committed unless lost).
    pub fn revocation_done(&mut self) {
        self.machine.handle(Event::RevocationDone);
    }

    /// Sends LeaveGroup when the machine says so (dynamic members), best effort.
    pub async fn leave(&mut self, within: Duration) {
        self.machine.handle(Event::LeaveRequested);
        if matches!(self.machine.state(), MemberState::Revoking { .. }) {
            self.machine.handle(Event::RevocationDone);
        }
        if self.machine.state() == &MemberState::Leaving {
            let member_id = self.machine.generation().member_id.clone();
            match tokio::time::timeout(
                within,
                self.client
                    .leave_group(&member_id, Some("consumer shutting down")),
            )
            .await
            {
                Ok(Ok(code)) => {
                    info!(group = %self.settings.group, %member_id, result = %code, "left group")
                }
                Ok(Err(e)) => {
                    warn!(group = %self.settings.group, error = %e, "LeaveGroup failed; the coordinator will expire us after the session timeout")
                }
                Err(_) => {
                    warn!(group = %self.settings.group, "LeaveGroup timed out; the coordinator will expire us after the session timeout")
                }
            }
            self.machine.handle(Event::LeaveGroupDone);
        }
    }
}

/// Offsets to commit from `(topic, partition) → next offset`.
pub fn offsets_to_commit(positions: &BTreeMap<(String, i32), i64>) -> Vec<OffsetToCommit> {
    positions
        .iter()
        .filter(|(_, o)| **o >= 0)
        .map(|((topic, partition), offset)| OffsetToCommit {
            topic: topic.clone(),
            partition: *partition,
            offset: *offset,
            leader_epoch: None,
            metadata: None,
        })
        .collect()
}

/// Sleeps `d` (jittered); `Cancelled` when `cancel` fired first.
async fn pause(d: Duration, cancel: &CancellationToken) -> Result<(), SessionError> {
    if sleep_jittered(d, cancel).await {
        Ok(())
    } else {
        Err(SessionError::Cancelled)
    }
}

mod heartbeat;
pub mod validate;

#[cfg_attr(not(feature = "unstable-fuzzing"), allow(unused_imports))]
pub use heartbeat::{spawn_heartbeat, Heartbeat, HeartbeatReport, LastHeartbeat};

#[cfg(test)]
mod tests;
