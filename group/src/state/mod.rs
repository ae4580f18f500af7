//! The classic consumer-group member as a pure state machine, and the error
//! classification that drives it.
//!
//! No I/O happens here. The connection layer sends requests, feeds each
//! outcome in as an [`Event`] and does what the returned [`Action`] says; the
//! current [`MemberState`] says which request comes next:
//!
//! | state                  | the connection layer…                                          |
//! |------------------------|----------------------------------------------------------------|
//! | [`Unjoined`], [`Joining`] | sends JoinGroup with [`Membership::generation`]'s member id (after the last action's backoff), then [`Event::JoinSent`] |
//! | [`AwaitingSync`]       | runs the assignor if leader, sends SyncGroup                   |
//! | [`Stable`]             | heartbeats, fetches, commits with [`Membership::commit_generation`] |
//! | [`Revoking`]           | commits (unless `lost`), revokes the partitions, then [`Event::RevocationDone`] |
//! | [`Leaving`]            | sends LeaveGroup, then [`Event::LeaveGroupDone`]               |
//! | [`Left`], [`Fatal`]    | stops                                                          |
//!
//! The transitions and [`classify`] reproduce Java's classic consumer
//! (`AbstractCoordinator` / `ConsumerCoordinator` in Kafka 3.7–4.x) with the
//! eager rebalance protocol that `range` and `roundrobin` use: everything is
//! revoked before rejoining. Deliberate differences are marked *Deviation*.
//!
//! [`Unjoined`]: MemberState::Unjoined
//! [`Joining`]: MemberState::Joining
//! [`AwaitingSync`]: MemberState::AwaitingSync
//! [`Stable`]: MemberState::Stable
//! [`Revoking`]: MemberState::Revoking
//! [`Leaving`]: MemberState::Leaving
//! [`Left`]: MemberState::Left
//! [`Fatal`]: MemberState::Fatal

use bytes::Bytes;
use kafka_base::backoff::Backoff;

use crate::error::{GroupApi, GroupError, KafkaCode};
use crate::payload::{Assignment, PROTOCOL_TYPE};

mod classify;

#[cfg(any(test, feature = "unstable-fuzzing"))]
pub use classify::commit_failure;
pub use classify::{classify, first_commit_error, Action, ErrorContext};

/// The generation id of a member that is not in a generation.
pub const NO_GENERATION_ID: i32 = -1;

/// Java's `AbstractCoordinator.Generation`: who we are in which generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generation id from JoinGroup, or [`NO_GENERATION_ID`].
    pub generation_id: i32,
    /// The member id the coordinator gave us; empty before the first join.
    pub member_id: String,
    /// The assignor the coordinator chose (JoinGroup `protocol_name`).
    pub protocol_name: Option<String>,
}

impl Generation {
    /// Java's `Generation.NO_GENERATION`: no generation, no member id.
    pub fn none() -> Self {
        Self {
            generation_id: NO_GENERATION_ID,
            member_id: String::new(),
            protocol_name: None,
        }
    }

    /// Whether the coordinator has given us a member id.
    pub fn has_member_id(&self) -> bool {
        !self.member_id.is_empty()
    }

    /// Java's `hasGenerationReset`: the generation was cleared (the member id
    /// may survive an `ILLEGAL_GENERATION`, so it is not checked).
    fn is_reset(&self) -> bool {
        self.generation_id == NO_GENERATION_ID && self.protocol_name.is_none()
    }

    /// Java's `onJoinPrepare` test for "partitions are lost, not revoked":
    /// once the generation or member id is gone, other members may already
    /// own our partitions, so we must not commit for them.
    fn is_lost(&self) -> bool {
        self.generation_id == NO_GENERATION_ID || self.member_id.is_empty()
    }
}

impl Default for Generation {
    fn default() -> Self {
        Self::none()
    }
}

/// What happens once revocation finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRevoke {
    /// Join the group again.
    Rejoin,
    /// Leave the group.
    Leave,
}

/// Where the member is in the group protocol (Java's `MemberState`, plus the
/// revocation step Java runs in `onJoinPrepare` and the end states).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberState {
    /// Not in the group (Java `UNJOINED`): a JoinGroup is due.
    Unjoined,
    /// A JoinGroup is in flight or is being retried (Java `PREPARING_REBALANCE`).
    Joining,
    /// JoinGroup succeeded; SyncGroup is due or in flight (Java
    /// `COMPLETING_REBALANCE`). The leader computes the assignment first.
    AwaitingSync {
        /// Whether the coordinator chose us as leader.
        leader: bool,
    },
    /// In the group with an assignment (Java `STABLE`).
    Stable {
        /// Our partitions for this generation.
        assignment: Assignment,
    },
    /// Giving up the assignment before rejoining or leaving: commit (unless
    /// `lost`) and revoke, then report [`Event::RevocationDone`].
    Revoking {
        /// The partitions to give up.
        assignment: Assignment,
        /// The generation or member id is already gone, so other members may
        /// own these partitions: do not commit, treat them as lost (Java's
        /// `onPartitionsLost`).
        lost: bool,
        /// What comes after.
        then: AfterRevoke,
    },
    /// LeaveGroup is due or in flight.
    Leaving,
    /// Out of the group for good (closed).
    Left,
    /// Stopped on an unrecoverable error.
    Fatal(GroupError),
}

/// Something that happened to the member: a response, or a local decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A JoinGroup request was sent.
    JoinSent,
    /// JoinGroup answered with no error.
    JoinGroupOk {
        /// The new generation id.
        generation_id: i32,
        /// Our member id.
        member_id: String,
        /// The group's protocol type (v7+; `None` before).
        protocol_type: Option<String>,
        /// The assignor the coordinator picked.
        protocol_name: Option<String>,
        /// Whether `leader == member_id` in the response.
        leader: bool,
    },
    /// JoinGroup answered with an error.
    JoinGroupError {
        /// The response's error code.
        code: KafkaCode,
        /// The response's member id (set with `MEMBER_ID_REQUIRED`).
        member_id: String,
    },
    /// SyncGroup answered with no error.
    SyncGroupOk {
        /// The group's protocol type (v5+; `None` before).
        protocol_type: Option<String>,
        /// The group's assignor (v5+; `None` before).
        protocol_name: Option<String>,
        /// Our assignment payload, still encoded.
        assignment: Bytes,
    },
    /// SyncGroup answered with an error.
    SyncGroupError {
        /// The generation the request carried.
        sent: Generation,
        /// The response's error code.
        code: KafkaCode,
    },
    /// Heartbeat answered with no error.
    HeartbeatOk,
    /// Heartbeat answered with an error.
    HeartbeatError {
        /// The generation the request carried.
        sent: Generation,
        /// The response's error code.
        code: KafkaCode,
    },
    /// OffsetCommit succeeded for every partition.
    CommitOk,
    /// OffsetCommit failed; `code` is the deciding partition error (see
    /// [`first_commit_error`]).
    CommitError {
        /// The generation the request carried.
        sent: Generation,
        /// The error code.
        code: KafkaCode,
    },
    /// OffsetFetch succeeded.
    OffsetFetchOk,
    /// OffsetFetch failed with this top-level or partition error.
    OffsetFetchError {
        /// The error code.
        code: KafkaCode,
    },
    /// FindCoordinator found the coordinator. (The coordinator client
    /// finds it by itself; the events keep the machine complete for tests.)
    #[cfg(any(test, feature = "unstable-fuzzing"))]
    CoordinatorFound,
    /// FindCoordinator answered with an error.
    #[cfg(any(test, feature = "unstable-fuzzing"))]
    FindCoordinatorError {
        /// The error code.
        code: KafkaCode,
    },
    /// The coordinator connection broke or a request to it timed out.
    CoordinatorLost,
    /// Something requires a new rebalance: the subscription changed, or the
    /// leader saw partition counts change.
    RejoinRequested,
    /// Revocation (commit + revoke, or marking lost) finished.
    RevocationDone,
    /// The consumer is closing.
    LeaveRequested,
    /// LeaveGroup was answered (any error: leaving is best effort), failed,
    /// or was skipped because the coordinator is unknown.
    LeaveGroupDone,
}

/// One consumer's membership in one group.
#[derive(Debug, Clone)]
pub struct Membership {
    group_id: String,
    group_instance_id: Option<String>,
    backoff: Backoff,
    generation: Generation,
    state: MemberState,
    /// A rejoin was requested mid-rebalance; honour it once synced (Java
    /// re-checks subscription and metadata after every rebalance).
    rejoin_after_sync: bool,
    /// KIP-429's COOPERATIVE rebalance protocol: a rejoin keeps the
    /// partitions (see [`Membership::owned`]) instead of revoking them all.
    cooperative: bool,
    /// The partitions kept through a cooperative rejoin, while not
    /// [`Stable`](MemberState::Stable): they go into the subscription.
    owned: Assignment,
    /// Consecutive retries per request type, for the backoff.
    attempts: Attempts,
}

impl Membership {
    /// A member of `group_id` that has not joined yet; `group_instance_id`
    /// makes it a static member.
    pub fn new(
        group_id: impl Into<String>,
        group_instance_id: Option<String>,
        backoff: Backoff,
    ) -> Self {
        Self {
            group_id: group_id.into(),
            group_instance_id,
            backoff,
            generation: Generation::none(),
            state: MemberState::Unjoined,
            rejoin_after_sync: false,
            cooperative: false,
            owned: Assignment::default(),
            attempts: Attempts::default(),
        }
    }

    /// The same member with KIP-429's COOPERATIVE rebalance protocol (Java
    /// chooses it when every configured assignor supports it): a rejoin
    /// keeps the assignment; partitions are given up only when the new
    /// assignment leaves them out, or lost when the membership is.
    pub fn with_cooperative(mut self, cooperative: bool) -> Self {
        self.cooperative = cooperative;
        self
    }

    /// Whether the member follows the COOPERATIVE rebalance protocol.
    pub fn is_cooperative(&self) -> bool {
        self.cooperative
    }

    /// The partitions held through a cooperative rejoin (empty when eager,
    /// and once the new assignment arrived): Java's `ownedPartitions`.
    pub fn owned(&self) -> &Assignment {
        &self.owned
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    #[cfg(any(test, feature = "unstable-fuzzing"))]
    /// The `group.instance.id`, for static members.
    pub fn group_instance_id(&self) -> Option<&str> {
        self.group_instance_id.as_deref()
    }

    /// The current state.
    pub fn state(&self) -> &MemberState {
        &self.state
    }

    /// The current generation: its member id goes into JoinGroup, all of it
    /// into SyncGroup and Heartbeat.
    pub fn generation(&self) -> &Generation {
        &self.generation
    }

    /// The partitions we hold, while [`Stable`](MemberState::Stable) or
    /// [`Revoking`](MemberState::Revoking).
    pub fn assignment(&self) -> Option<&Assignment> {
        match &self.state {
            MemberState::Stable { assignment } | MemberState::Revoking { assignment, .. } => {
                Some(assignment)
            }
            _ => None,
        }
    }

    /// Keeps only `kept` of the assignment while
    /// [`Stable`](MemberState::Stable): the member dropped entries of the
    /// leader's assignment it may not consume, so they are never revoked,
    /// committed or fetched.
    pub fn restrict_assignment(&mut self, kept: Assignment) {
        if let MemberState::Stable { assignment } = &mut self.state {
            *assignment = kept;
        }
    }

    /// Gives up the whole assignment before rejoining, cooperative or not:
    /// the member leaves and joins as a new one, so it keeps nothing.
    pub fn revoke_all_and_rejoin(&mut self) {
        if let MemberState::Stable { assignment } = &mut self.state {
            let assignment = std::mem::take(assignment);
            self.owned = Assignment::default();
            self.state = MemberState::Revoking {
                assignment,
                lost: self.generation.is_lost(),
                then: AfterRevoke::Rejoin,
            };
        }
    }

    /// Drops the generation and member id while
    /// [`Unjoined`](MemberState::Unjoined), after a LeaveGroup the member
    /// sent itself: the next JoinGroup is a new member's.
    pub fn forget_member_id(&mut self) {
        if self.state == MemberState::Unjoined {
            self.generation = Generation::none();
        }
    }

    /// The generation to commit offsets with, or `None` if offsets must not
    /// be committed now (Java's `generationIfStable`, plus the commit Java
    /// makes in `onJoinPrepare` before revoking). Never a reset generation:
    /// Java fails such commits before sending them.
    ///
    /// *Deviation*: a cooperative member that still holds its partitions
    /// before its JoinGroup is answered commits with the generation it has
    /// (the coordinator accepts it while preparing the rebalance); Java
    /// fails commits until the rebalance completes.
    pub fn commit_generation(&self) -> Option<&Generation> {
        match &self.state {
            MemberState::Stable { .. } | MemberState::Revoking { lost: false, .. }
                if !self.generation.is_lost() =>
            {
                Some(&self.generation)
            }
            MemberState::Unjoined | MemberState::Joining
                if !self.owned.partitions.is_empty() && !self.generation.is_lost() =>
            {
                Some(&self.generation)
            }
            _ => None,
        }
    }

    /// Whether the member has stopped ([`Left`](MemberState::Left) or
    /// [`Fatal`](MemberState::Fatal)); every further event is ignored.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state, MemberState::Left | MemberState::Fatal(_))
    }

    /// Apply `event` and say what to do next.
    ///
    /// Events that make no sense in the current state (e.g. a SyncGroup
    /// answer while stable, from a request that was superseded) are ignored
    /// with [`Action::Continue`], as Java ignores superseded responses.
    pub fn handle(&mut self, event: Event) -> Action {
        if self.is_terminal() {
            return Action::Continue;
        }
        match event {
            Event::JoinSent => {
                if matches!(
                    self.state,
                    MemberState::Unjoined | MemberState::Joining | MemberState::AwaitingSync { .. }
                ) {
                    self.state = MemberState::Joining;
                }
                Action::Continue
            }
            Event::JoinGroupOk {
                generation_id,
                member_id,
                protocol_type,
                protocol_name,
                leader,
            } => self.on_join_ok(
                generation_id,
                member_id,
                protocol_type,
                protocol_name,
                leader,
            ),
            Event::JoinGroupError { code, member_id } => self.on_join_error(code, &member_id),
            Event::SyncGroupOk {
                protocol_type,
                protocol_name,
                assignment,
            } => self.on_sync_ok(protocol_type, protocol_name, &assignment),
            Event::SyncGroupError { sent, code } => {
                if !matches!(self.state, MemberState::AwaitingSync { .. }) {
                    return Action::Continue;
                }
                let unchanged = sent == self.generation;
                let action = self.classify_and_apply(GroupApi::SyncGroup, code, unchanged, "");
                // Every non-fatal SyncGroup failure restarts from JoinGroup.
                if matches!(self.state, MemberState::AwaitingSync { .. }) {
                    self.state = MemberState::Joining;
                }
                action
            }
            Event::HeartbeatOk => {
                self.reset_attempts(GroupApi::Heartbeat);
                Action::Continue
            }
            Event::HeartbeatError { sent, code } => {
                let unchanged = sent == self.generation;
                self.classify_and_apply(GroupApi::Heartbeat, code, unchanged, "")
            }
            Event::CommitOk => {
                self.reset_attempts(GroupApi::OffsetCommit);
                Action::Continue
            }
            Event::CommitError { sent, code } => {
                let unchanged = sent == self.generation;
                self.classify_and_apply(GroupApi::OffsetCommit, code, unchanged, "")
            }
            Event::OffsetFetchOk => {
                self.reset_attempts(GroupApi::OffsetFetch);
                Action::Continue
            }
            Event::OffsetFetchError { code } => {
                self.classify_and_apply(GroupApi::OffsetFetch, code, false, "")
            }
            #[cfg(any(test, feature = "unstable-fuzzing"))]
            Event::CoordinatorFound => {
                self.reset_attempts(GroupApi::FindCoordinator);
                Action::Continue
            }
            #[cfg(any(test, feature = "unstable-fuzzing"))]
            Event::FindCoordinatorError { code } => {
                self.classify_and_apply(GroupApi::FindCoordinator, code, false, "")
            }
            Event::CoordinatorLost => self.on_coordinator_lost(),
            Event::RejoinRequested => self.on_rejoin_requested(),
            Event::RevocationDone => self.on_revocation_done(),
            Event::LeaveRequested => self.on_leave_requested(),
            Event::LeaveGroupDone => {
                if self.state == MemberState::Leaving {
                    self.leave_now();
                }
                Action::Continue
            }
        }
    }

    fn on_join_ok(
        &mut self,
        generation_id: i32,
        member_id: String,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        leader: bool,
    ) -> Action {
        match self.state {
            MemberState::Joining => {}
            // Java: the member was reset while the JoinGroup was in flight
            // (`UnjoinedGroupException`, retriable): back off and join again.
            MemberState::Unjoined => return self.retry_action(GroupApi::JoinGroup),
            _ => return Action::Continue,
        }
        if let Some(found) = protocol_type.filter(|t| t != PROTOCOL_TYPE) {
            return self.fatal(GroupError::InconsistentGroupProtocol {
                group: self.group_id.clone(),
                api: GroupApi::JoinGroup,
                detail: format!("the group's protocol type is '{found}', not '{PROTOCOL_TYPE}'"),
            });
        }
        self.generation = Generation {
            generation_id,
            member_id,
            protocol_name,
        };
        self.state = MemberState::AwaitingSync { leader };
        self.reset_attempts(GroupApi::JoinGroup);
        Action::Continue
    }

    fn on_join_error(&mut self, code: KafkaCode, returned_member_id: &str) -> Action {
        if self.state != MemberState::Joining {
            return Action::Continue;
        }
        // During a JoinGroup nothing else changes our generation (Java's
        // heartbeat thread is paused), so the error is always about ours.
        let action = self.classify_and_apply(GroupApi::JoinGroup, code, true, returned_member_id);
        if let Action::RejoinWithMemberId(member_id) = &action {
            self.generation = Generation {
                generation_id: NO_GENERATION_ID,
                member_id: member_id.clone(),
                protocol_name: None,
            };
        }
        action
    }

    fn on_sync_ok(
        &mut self,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        payload: &Bytes,
    ) -> Action {
        let rejoin_keep = Action::Rejoin {
            reset_member_id: false,
            reset_generation: false,
        };
        match self.state {
            MemberState::AwaitingSync { .. } if !self.generation.is_reset() => {}
            // Java: the generation was cleared (by a heartbeat error) while the
            // SyncGroup was in flight; it fails the round with
            // ILLEGAL_GENERATION to rejoin at once.
            MemberState::AwaitingSync { .. } => {
                self.state = MemberState::Unjoined;
                return rejoin_keep;
            }
            MemberState::Unjoined => return rejoin_keep,
            _ => return Action::Continue,
        }
        if let Some(found) = protocol_type.filter(|t| t != PROTOCOL_TYPE) {
            return self.fatal(GroupError::InconsistentGroupProtocol {
                group: self.group_id.clone(),
                api: GroupApi::SyncGroup,
                detail: format!("the group's protocol type is '{found}', not '{PROTOCOL_TYPE}'"),
            });
        }
        if let Some(found) =
            protocol_name.filter(|n| Some(n) != self.generation.protocol_name.as_ref())
        {
            let joined = self.generation.protocol_name.as_deref().unwrap_or("none");
            return self.fatal(GroupError::InconsistentGroupProtocol {
                group: self.group_id.clone(),
                api: GroupApi::SyncGroup,
                detail: format!(
                    "SyncGroup names assignor '{found}' but JoinGroup chose '{joined}'"
                ),
            });
        }
        // Deviation: an empty payload is "nothing assigned" (the coordinator
        // sends one when the leader left us out); Java fails to parse it.
        let assignment = if payload.is_empty() {
            Assignment::default()
        } else {
            match Assignment::decode(payload) {
                Ok(assignment) => assignment,
                Err(source) => {
                    return self.fatal(GroupError::Protocol {
                        group: self.group_id.clone(),
                        api: GroupApi::SyncGroup,
                        source,
                    })
                }
            }
        };
        self.reset_attempts(GroupApi::SyncGroup);
        self.owned = Assignment::default();
        // Cooperative: the caller gives up what the assignment left out and
        // rejoins ([`Membership::take_rejoin_after_sync`]).
        if !self.cooperative && std::mem::take(&mut self.rejoin_after_sync) {
            self.state = MemberState::Revoking {
                assignment,
                lost: false,
                then: AfterRevoke::Rejoin,
            };
            return rejoin_keep;
        }
        self.state = MemberState::Stable { assignment };
        Action::Continue
    }

    /// Whether a rejoin was requested while the last rebalance ran (a
    /// cooperative member is Stable first and rejoins once it has revoked);
    /// cleared by asking.
    pub fn take_rejoin_after_sync(&mut self) -> bool {
        std::mem::take(&mut self.rejoin_after_sync)
    }

    fn on_coordinator_lost(&mut self) -> Action {
        match self.state {
            // Leaving is best effort: a lost coordinator means we are done.
            MemberState::Leaving => {
                self.leave_now();
                Action::Continue
            }
            // Java: the in-flight JoinGroup/SyncGroup fails as retriable and
            // the whole rebalance restarts from JoinGroup.
            MemberState::AwaitingSync { .. } => {
                self.state = MemberState::Joining;
                self.rediscover_action(GroupApi::FindCoordinator)
            }
            _ => self.rediscover_action(GroupApi::FindCoordinator),
        }
    }

    fn on_rejoin_requested(&mut self) -> Action {
        match &mut self.state {
            MemberState::Stable { .. } => {
                self.give_up_or_keep();
                Action::Rejoin {
                    reset_member_id: false,
                    reset_generation: false,
                }
            }
            MemberState::Joining | MemberState::AwaitingSync { .. } => {
                self.rejoin_after_sync = true;
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_revocation_done(&mut self) -> Action {
        let MemberState::Revoking { then, .. } = self.state else {
            return Action::Continue;
        };
        match then {
            AfterRevoke::Rejoin => self.state = MemberState::Unjoined,
            AfterRevoke::Leave if self.should_send_leave() => self.state = MemberState::Leaving,
            AfterRevoke::Leave => self.leave_now(),
        }
        Action::Continue
    }

    fn on_leave_requested(&mut self) -> Action {
        let send_leave = self.should_send_leave();
        match &mut self.state {
            MemberState::Stable { assignment } => {
                let assignment = std::mem::take(assignment);
                self.state = MemberState::Revoking {
                    assignment,
                    lost: self.generation.is_lost(),
                    then: AfterRevoke::Leave,
                };
            }
            MemberState::Revoking { then, .. } => *then = AfterRevoke::Leave,
            MemberState::Leaving => {}
            _ if send_leave => self.state = MemberState::Leaving,
            _ => self.leave_now(),
        }
        Action::Continue
    }

    /// Leaves Stable for a rejoin, as Java's `onJoinPrepare`: eager, or with
    /// the membership gone, everything is given up (revoked, or lost);
    /// cooperative, everything is kept.
    fn give_up_or_keep(&mut self) {
        let MemberState::Stable { assignment } = &mut self.state else {
            return;
        };
        let assignment = std::mem::take(assignment);
        let lost = self.generation.is_lost();
        self.state = if self.cooperative && !lost {
            self.owned = assignment;
            MemberState::Unjoined
        } else {
            MemberState::Revoking {
                assignment,
                lost,
                then: AfterRevoke::Rejoin,
            }
        };
    }

    /// Java's `maybeLeaveGroup`: only dynamic members that are in (or
    /// joining) the group with a member id send LeaveGroup; static members
    /// leave by session timeout.
    fn should_send_leave(&self) -> bool {
        self.group_instance_id.is_none()
            && self.state != MemberState::Unjoined
            && self.generation.has_member_id()
    }

    /// Java's `resetGenerationOnLeaveGroup`.
    fn leave_now(&mut self) {
        self.generation = Generation::none();
        self.owned = Assignment::default();
        self.rejoin_after_sync = false;
        self.state = MemberState::Left;
    }

    fn fatal(&mut self, error: GroupError) -> Action {
        self.state = MemberState::Fatal(error.clone());
        Action::Fatal(error)
    }

    fn classify_and_apply(
        &mut self,
        api: GroupApi,
        code: KafkaCode,
        generation_unchanged: bool,
        returned_member_id: &str,
    ) -> Action {
        let ctx = ErrorContext {
            group_id: &self.group_id,
            generation_unchanged,
            stable: matches!(
                self.state,
                MemberState::Stable { .. } | MemberState::Revoking { .. }
            ),
            rebalancing: self.state == MemberState::Joining,
            returned_member_id,
            backoff: self.backoff.delay(*self.attempts.get_mut(api)),
        };
        let action = classify(api, code, &ctx);
        match &action {
            Action::Continue | Action::Fail(_) => {}
            Action::Retry { .. } | Action::RediscoverCoordinator { .. } => {
                self.attempts.bump(api);
            }
            Action::Rejoin {
                reset_member_id,
                reset_generation,
            } => self.rejoin(*reset_member_id, *reset_generation),
            Action::RejoinWithMemberId(_) => self.state = MemberState::Joining,
            Action::Fatal(error) => self.state = MemberState::Fatal(error.clone()),
        }
        action
    }

    /// Java's `resetStateOnResponseError` / `requestRejoin`.
    fn rejoin(&mut self, reset_member_id: bool, reset_generation: bool) {
        if reset_generation {
            self.generation.generation_id = NO_GENERATION_ID;
            self.generation.protocol_name = None;
        }
        if reset_member_id {
            self.generation.member_id.clear();
        }
        let reset = reset_generation || reset_member_id;
        match &mut self.state {
            MemberState::Stable { .. } => self.give_up_or_keep(),
            // Java's next onJoinPrepare: what a cooperative member kept
            // through the rejoin is lost with the generation.
            MemberState::Unjoined | MemberState::Joining | MemberState::AwaitingSync { .. }
                if self.generation.is_lost() && !self.owned.partitions.is_empty() =>
            {
                self.state = MemberState::Revoking {
                    assignment: std::mem::take(&mut self.owned),
                    lost: true,
                    then: AfterRevoke::Rejoin,
                };
            }
            // Revocation already started with the generation it had then
            // (Java's onJoinPrepare runs on a snapshot); a leave stays a leave.
            MemberState::Revoking { .. } | MemberState::Leaving => {}
            // Java's resetStateAndGeneration sets UNJOINED.
            _ if reset => self.state = MemberState::Unjoined,
            MemberState::AwaitingSync { .. } => self.state = MemberState::Joining,
            _ => {}
        }
    }

    fn retry_action(&mut self, api: GroupApi) -> Action {
        Action::Retry {
            backoff: self.backoff.delay(self.attempts.bump(api)),
        }
    }

    fn rediscover_action(&mut self, api: GroupApi) -> Action {
        Action::RediscoverCoordinator {
            backoff: self.backoff.delay(self.attempts.bump(api)),
        }
    }

    fn reset_attempts(&mut self, api: GroupApi) {
        *self.attempts.get_mut(api) = 0;
    }
}

/// Consecutive retries per request type, so a failing commit does not slow
/// down heartbeats and vice versa.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Attempts {
    find_coordinator: u32,
    join_group: u32,
    sync_group: u32,
    heartbeat: u32,
    offset_commit: u32,
    offset_fetch: u32,
    leave_group: u32,
    /// Requests of the consumer protocol; never sent by this machine.
    other: u32,
}

impl Attempts {
    fn get_mut(&mut self, api: GroupApi) -> &mut u32 {
        match api {
            GroupApi::FindCoordinator => &mut self.find_coordinator,
            GroupApi::JoinGroup => &mut self.join_group,
            GroupApi::SyncGroup => &mut self.sync_group,
            GroupApi::Heartbeat => &mut self.heartbeat,
            GroupApi::OffsetCommit => &mut self.offset_commit,
            GroupApi::OffsetFetch => &mut self.offset_fetch,
            GroupApi::LeaveGroup => &mut self.leave_group,
            GroupApi::ConsumerGroupHeartbeat | GroupApi::Metadata => &mut self.other,
        }
    }

    /// Counts one more retry and returns the count before it.
    fn bump(&mut self, api: GroupApi) -> u32 {
        let count = self.get_mut(api);
        let before = *count;
        *count = before.saturating_add(1);
        before
    }
}

#[cfg(test)]
mod tests;
