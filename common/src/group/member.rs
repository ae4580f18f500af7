//! The member driver: does the I/O that the pure state machine
//! ([`super::state::GroupMember`]) asks for, over a [`CoordinatorClient`].
//!
//! The driver is owned by one task (the consumer's main loop). Heartbeats run
//! on their own task with their own coordinator connection
//! ([`spawn_heartbeat`]) and report back through a channel, so the state
//! machine has exactly one owner, as Java's coordinator has one lock.

use std::{collections::BTreeMap, time::Duration};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    assignor::{assignor_by_name, encode_group_assignment, MemberSubscription},
    coordinator::{
        CoordinatorClient, CoordinatorError, JoinGroupParams, JoinProtocol, OffsetToCommit,
    },
    error::GroupError,
    protocol::{
        Assignment, Subscription, TopicPartitions, ASSIGNMENT_VERSION, SUBSCRIPTION_VERSION,
    },
    state::{
        first_commit_error, Action, Event, Generation, GroupMember, MemberState, RetryBackoff,
    },
};

/// What the member needs to know about itself.
#[derive(Debug, Clone)]
pub struct MemberSettings {
    /// The group id.
    pub group: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Assignors offered, preferred first.
    pub assignors: Vec<String>,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Rebalance timeout (Java's max.poll.interval.ms).
    pub rebalance_timeout: Duration,
    /// Retry backoff bounds.
    pub backoff: RetryBackoff,
}

/// Errors the driver reports.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
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

impl MemberError {
    /// Whether the consumer should give up.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Fatal(_))
    }
}

/// What a heartbeat task reports.
#[derive(Debug)]
pub enum HeartbeatReport {
    /// The coordinator answered with an error code.
    Error {
        /// The generation the heartbeat carried.
        sent: Generation,
        /// The code.
        code: i16,
    },
    /// No successful heartbeat for a whole session timeout: the coordinator
    /// has evicted us or is unreachable.
    SessionExpired {
        /// The last connection error.
        detail: String,
    },
}

/// The member driver.
#[derive(Debug)]
pub struct Member {
    settings: MemberSettings,
    machine: GroupMember,
    client: CoordinatorClient,
    /// Members and their subscriptions, when we lead the current join.
    members: Vec<super::coordinator::GroupMember>,
    skip_assignment: bool,
}

impl Member {
    /// A member that has not joined yet.
    pub fn new(client: CoordinatorClient, settings: MemberSettings) -> Self {
        let machine = GroupMember::new(
            settings.group.clone(),
            settings.group_instance_id.clone(),
            settings.backoff,
        );
        Self {
            settings,
            machine,
            client,
            members: Vec::new(),
            skip_assignment: false,
        }
    }

    /// The state machine (read-only).
    pub fn machine(&self) -> &GroupMember {
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
    /// counts when this member leads the generation.
    pub async fn join<F, Fut>(
        &mut self,
        partition_counts: F,
        cancel: &CancellationToken,
    ) -> Result<Assignment, MemberError>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<BTreeMap<String, i32>, String>>,
    {
        let mut coordinator_failures: u32 = 0;
        loop {
            if cancel.is_cancelled() {
                return Err(MemberError::Cancelled);
            }
            let state = self.machine.state().clone();
            match state {
                MemberState::Stable { assignment } => return Ok(assignment),
                MemberState::Fatal(e) => return Err(MemberError::Fatal(e)),
                MemberState::Left | MemberState::Leaving => return Err(MemberError::Cancelled),
                MemberState::Revoking { .. } => {
                    // The caller revoked before calling join.
                    self.machine.handle(Event::RevocationDone);
                }
                MemberState::Unjoined | MemberState::Joining => {
                    self.machine.handle(Event::JoinSent);
                    let params = self.join_params()?;
                    let result = tokio::select! {
                        () = cancel.cancelled() => return Err(MemberError::Cancelled),
                        r = self.client.join_group(&params) => r,
                    };
                    match result {
                        Err(e) => {
                            coordinator_failures += 1;
                            self.coordinator_lost(&e, coordinator_failures, cancel)
                                .await?;
                        }
                        Ok(r) if r.error.0 != 0 => {
                            coordinator_failures = 0;
                            let action = self.machine.handle(Event::JoinGroupError {
                                code: r.error.0,
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
                        () = cancel.cancelled() => return Err(MemberError::Cancelled),
                        r = self.client.sync_group(generation.generation_id, &generation.member_id, &protocol, &assignments) => r,
                    };
                    match result {
                        Err(e) => {
                            coordinator_failures += 1;
                            self.coordinator_lost(&e, coordinator_failures, cancel)
                                .await?;
                        }
                        Ok(r) if r.error.0 != 0 => {
                            let action = self.machine.handle(Event::SyncGroupError {
                                sent: generation,
                                code: r.error.0,
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

    fn join_params(&self) -> Result<JoinGroupParams, MemberError> {
        let subscription = Subscription::new(self.settings.topics.iter().cloned())
            .encode(SUBSCRIPTION_VERSION)
            .map_err(|e| GroupError::Protocol {
                group: self.settings.group.clone(),
                api: super::error::GroupApi::JoinGroup,
                source: e,
            })?;
        Ok(JoinGroupParams {
            member_id: self.machine.generation().member_id.clone(),
            session_timeout: self.settings.session_timeout,
            rebalance_timeout: self.settings.rebalance_timeout,
            protocols: self
                .settings
                .assignors
                .iter()
                .map(|name| JoinProtocol {
                    name: name.clone(),
                    metadata: subscription.clone(),
                })
                .collect(),
            reason: None,
        })
    }

    async fn compute_assignment<F, Fut>(
        &self,
        protocol: &str,
        partition_counts: &F,
    ) -> Result<Vec<(String, bytes::Bytes)>, MemberError>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<BTreeMap<String, i32>, String>>,
    {
        let group = self.settings.group.clone();
        let assignor = assignor_by_name(protocol).ok_or_else(|| MemberError::Metadata {
            group: group.clone(),
            detail: format!(
                "the coordinator chose assignor '{protocol}', which this member does not implement"
            ),
        })?;
        let mut subs = Vec::with_capacity(self.members.len());
        for m in &self.members {
            // A member whose subscription we cannot read gets nothing rather
            // than failing the whole group.
            let topics = match Subscription::decode(&m.metadata) {
                Ok(s) => s.topics,
                Err(e) => {
                    warn!(group = %group, member = %m.member_id, error = %e, "unreadable subscription; member gets no partitions");
                    Vec::new()
                }
            };
            subs.push(MemberSubscription::new(
                m.member_id.clone(),
                m.group_instance_id.clone(),
                topics,
            ));
        }
        let topics: Vec<String> = super::assignor::subscribed_topics(&subs)
            .into_iter()
            .collect();
        let counts = partition_counts(topics)
            .await
            .map_err(|detail| MemberError::Metadata {
                group: group.clone(),
                detail,
            })?;
        let assignment = assignor.assign(&subs, &counts);
        debug!(group = %group, ?assignment, "leader computed the assignment");
        let encoded = encode_group_assignment(&assignment, ASSIGNMENT_VERSION).map_err(|e| {
            GroupError::Protocol {
                group,
                api: super::error::GroupApi::SyncGroup,
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
    ) -> Result<(), MemberError> {
        warn!(group = %self.settings.group, error = %e, "group coordinator request failed; finding the coordinator again");
        self.client.mark_coordinator_dead();
        let action = self.machine.handle(Event::CoordinatorLost);
        if !e.is_retriable() {
            // Authentication, TLS or configuration: the caller reports it and
            // retries with its own, longer backoff.
            return Err(MemberError::Unreachable {
                group: self.settings.group.clone(),
                detail: e.to_string(),
            });
        }
        let backoff = match action {
            Action::RediscoverCoordinator { backoff } | Action::Retry { backoff } => backoff,
            _ => self.settings.backoff.delay(failures),
        };
        sleep_jittered(backoff.max(self.settings.backoff.delay(failures)), cancel).await
    }

    async fn apply(
        &mut self,
        action: Action,
        cancel: &CancellationToken,
    ) -> Result<(), MemberError> {
        match action {
            Action::Continue | Action::Rejoin { .. } | Action::RejoinWithMemberId(_) => Ok(()),
            Action::Retry { backoff } => sleep_jittered(backoff, cancel).await,
            Action::RediscoverCoordinator { backoff } => {
                self.client.mark_coordinator_dead();
                sleep_jittered(backoff, cancel).await
            }
            Action::Fail(e) | Action::Fatal(e) => Err(MemberError::Fatal(e)),
        }
    }

    /// The group's committed offsets for `assignment` (-1 = none).
    pub async fn committed(
        &mut self,
        assignment: &Assignment,
    ) -> Result<BTreeMap<(String, i32), i64>, MemberError> {
        let mut failures = 0u32;
        loop {
            match self.client.offset_fetch(&assignment.partitions).await {
                Ok(r) => {
                    let code = if r.error.0 != 0 {
                        Some(r.error.0)
                    } else {
                        r.offsets.values().map(|o| o.error.0).find(|c| *c != 0)
                    };
                    match code {
                        None => {
                            self.machine.handle(Event::OffsetFetchOk);
                            return Ok(r.offsets.into_iter().map(|(k, v)| (k, v.offset)).collect());
                        }
                        Some(code) => {
                            let action = self.machine.handle(Event::OffsetFetchError { code });
                            self.apply(action, &CancellationToken::new()).await?;
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    if !e.is_retriable() || failures > 10 {
                        return Err(MemberError::Coordinator(e));
                    }
                    self.client.mark_coordinator_dead();
                    tokio::time::sleep(self.settings.backoff.delay(failures)).await;
                }
            }
        }
    }

    /// Commits `offsets` for the current generation.
    pub async fn commit(&mut self, offsets: &[OffsetToCommit]) -> Result<(), MemberError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let Some(generation) = self.machine.commit_generation().cloned() else {
            return Err(MemberError::Commit {
                group: self.settings.group.clone(),
                detail: "not a member of a generation (partitions lost)".to_owned(),
            });
        };
        match self
            .client
            .offset_commit(generation.generation_id, &generation.member_id, offsets)
            .await
        {
            Err(e) => {
                self.client.mark_coordinator_dead();
                Err(MemberError::Commit {
                    group: self.settings.group.clone(),
                    detail: e.to_string(),
                })
            }
            Ok(codes) => match first_commit_error(codes.values().map(|c| c.0)) {
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
                        self.client.mark_coordinator_dead();
                    }
                    match action {
                        Action::Fatal(e) => Err(MemberError::Fatal(e)),
                        _ => Err(MemberError::Commit {
                            group: self.settings.group.clone(),
                            detail: super::error::KafkaCode(code).to_string(),
                        }),
                    }
                }
            },
        }
    }

    /// Feeds a heartbeat report into the state machine.
    pub fn on_heartbeat(&mut self, report: HeartbeatReport) -> Action {
        match report {
            HeartbeatReport::Error { sent, code } => {
                let action = self.machine.handle(Event::HeartbeatError { sent, code });
                if let Action::RediscoverCoordinator { .. } = action {
                    self.client.mark_coordinator_dead();
                }
                action
            }
            HeartbeatReport::SessionExpired { detail } => {
                warn!(group = %self.settings.group, %detail, "no heartbeat got through for a session timeout; rejoining");
                self.client.mark_coordinator_dead();
                // Like Java after a session timeout: our membership is gone.
                self.machine.handle(Event::HeartbeatError {
                    sent: self.machine.generation().clone(),
                    code: kafka_protocol::ResponseError::UnknownMemberId.code(),
                })
            }
        }
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

    /// The caller finished revoking (committed unless lost).
    pub fn revocation_done(&mut self) {
        self.machine.handle(Event::RevocationDone);
    }

    /// Starts leaving: the machine moves to Revoking (then Leaving).
    pub fn request_leave(&mut self) {
        self.machine.handle(Event::LeaveRequested);
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

    /// Subscribed topics as `TopicPartitions` lists are built by the caller;
    /// this is the subscription.
    pub fn topics(&self) -> &[String] {
        &self.settings.topics
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

/// Runs heartbeats for `generation` on `client` every `interval` until
/// `stop`, reporting errors on `tx`. Connection errors are retried; a whole
/// session timeout without a successful heartbeat is reported once.
pub fn spawn_heartbeat(
    mut client: CoordinatorClient,
    generation: Generation,
    settings: &MemberSettings,
    tx: mpsc::Sender<HeartbeatReport>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let interval = settings.heartbeat_interval;
    let session = settings.session_timeout;
    tokio::spawn(async move {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let result = tokio::select! {
                () = stop.cancelled() => return,
                r = tokio::time::timeout(interval.max(Duration::from_secs(1)) * 2, client.heartbeat(generation.generation_id, &generation.member_id)) => r,
            };
            match result {
                Ok(Ok(code)) if code.0 == 0 => last_ok = tokio::time::Instant::now(),
                Ok(Ok(code)) => {
                    if tx
                        .send(HeartbeatReport::Error {
                            sent: generation.clone(),
                            code: code.0,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // The owner decides; this generation's heartbeats are over
                    // unless it was only a transient coordinator error.
                    if code.0 != kafka_protocol::ResponseError::NotCoordinator.code()
                        && code.0 != kafka_protocol::ResponseError::CoordinatorNotAvailable.code()
                        && code.0 != kafka_protocol::ResponseError::CoordinatorLoadInProgress.code()
                    {
                        return;
                    }
                    client.mark_coordinator_dead();
                }
                Ok(Err(e)) => {
                    debug!(error = %e, "heartbeat failed");
                    client.mark_coordinator_dead();
                    if last_ok.elapsed() >= session {
                        let _ = tx
                            .send(HeartbeatReport::SessionExpired {
                                detail: e.to_string(),
                            })
                            .await;
                        return;
                    }
                }
                Err(_) => {
                    client.mark_coordinator_dead();
                    if last_ok.elapsed() >= session {
                        let _ = tx
                            .send(HeartbeatReport::SessionExpired {
                                detail: "heartbeat timed out".to_owned(),
                            })
                            .await;
                        return;
                    }
                }
            }
        }
    })
}

async fn sleep_jittered(d: Duration, cancel: &CancellationToken) -> Result<(), MemberError> {
    let d = d.mul_f64(0.8 + rand::random::<f64>() * 0.4);
    tokio::select! {
        () = cancel.cancelled() => Err(MemberError::Cancelled),
        () = tokio::time::sleep(d) => Ok(()),
    }
}

/// Partition lists per topic from `(topic, partition)` pairs.
pub fn by_topic(pairs: impl IntoIterator<Item = (String, i32)>) -> Vec<TopicPartitions> {
    let mut map: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in pairs {
        map.entry(t).or_default().push(p);
    }
    map.into_iter()
        .map(|(t, p)| TopicPartitions::new(t, p))
        .collect()
}
