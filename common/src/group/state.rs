//! The classic consumer-group member as a pure state machine, and the error
//! classification that drives it.
//!
//! No I/O happens here. The connection layer sends requests, feeds each
//! outcome in as an [`Event`] and does what the returned [`Action`] says; the
//! current [`MemberState`] says which request comes next:
//!
//! | state                  | the connection layer…                                          |
//! |------------------------|----------------------------------------------------------------|
//! | [`Unjoined`], [`Joining`] | sends JoinGroup with [`GroupMember::generation`]'s member id (after the last action's backoff), then [`Event::JoinSent`] |
//! | [`AwaitingSync`]       | runs the assignor if leader, sends SyncGroup                   |
//! | [`Stable`]             | heartbeats, fetches, commits with [`GroupMember::commit_generation`] |
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

use std::time::Duration;

use bytes::Bytes;
use kafka_base::backoff::Backoff;
use kafka_protocol::ResponseError;

use crate::group::error::{GroupApi, GroupError, KafkaCode};
use crate::group::protocol::{Assignment, PROTOCOL_TYPE};

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

/// What the connection layer must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing special: success, or an error Java deliberately ignores (a
    /// heartbeat error about a generation we already left).
    Continue,
    /// Retry the same request on the same coordinator after `backoff`.
    Retry {
        /// How long to wait first.
        backoff: Duration,
    },
    /// Forget the coordinator (close the connection), wait `backoff`, find it
    /// again with FindCoordinator, then retry. Requests that were part of a
    /// rebalance restart from JoinGroup.
    RediscoverCoordinator {
        /// How long to wait before FindCoordinator.
        backoff: Duration,
    },
    /// Go through the rebalance again, right away: revoke (state
    /// [`MemberState::Revoking`]) if partitions are held, then JoinGroup. The
    /// flags say what the machine has already reset. For OffsetCommit this
    /// also means the commit failed for good; [`commit_failure`] names why.
    Rejoin {
        /// The member id was cleared: the next JoinGroup joins as a new member.
        reset_member_id: bool,
        /// The generation was cleared: held partitions are lost, not revoked.
        reset_generation: bool,
    },
    /// JoinGroup answered `MEMBER_ID_REQUIRED`: join again right away with
    /// this member id (already stored in the machine).
    RejoinWithMemberId(String),
    /// This request failed and must not be retried, but the membership is
    /// fine (e.g. `OFFSET_METADATA_TOO_LARGE` on a commit).
    Fail(GroupError),
    /// The consumer cannot continue in this group: stop it. The machine is
    /// now in [`MemberState::Fatal`].
    Fatal(GroupError),
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
        code: i16,
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
        code: i16,
    },
    /// Heartbeat answered with no error.
    HeartbeatOk,
    /// Heartbeat answered with an error.
    HeartbeatError {
        /// The generation the request carried.
        sent: Generation,
        /// The response's error code.
        code: i16,
    },
    /// OffsetCommit succeeded for every partition.
    CommitOk,
    /// OffsetCommit failed; `code` is the deciding partition error (see
    /// [`first_commit_error`]).
    CommitError {
        /// The generation the request carried.
        sent: Generation,
        /// The error code.
        code: i16,
    },
    /// OffsetFetch succeeded.
    OffsetFetchOk,
    /// OffsetFetch failed with this top-level or partition error.
    OffsetFetchError {
        /// The error code.
        code: i16,
    },
    /// FindCoordinator found the coordinator.
    CoordinatorFound,
    /// FindCoordinator answered with an error.
    FindCoordinatorError {
        /// The error code.
        code: i16,
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

/// What [`classify`] needs to know besides the error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorContext<'a> {
    /// The group id, for error messages.
    pub group_id: &'a str,
    /// The request's generation is still ours (Java `generationUnchanged()`):
    /// errors about a generation we already left are ignored or softened.
    pub generation_unchanged: bool,
    /// We are `STABLE` in Java's terms ([`MemberState::Stable`] or
    /// [`MemberState::Revoking`]): heartbeat `REBALANCE_IN_PROGRESS` only
    /// triggers a rejoin then.
    pub stable: bool,
    /// A JoinGroup is in flight (Java `PREPARING_REBALANCE`): stale commit
    /// errors are reported as "rebalance in progress" instead of resetting.
    pub rebalancing: bool,
    /// The member id in the JoinGroup response (`MEMBER_ID_REQUIRED`).
    pub returned_member_id: &'a str,
    /// The backoff to put in `Retry`/`RediscoverCoordinator`.
    pub backoff: Duration,
}

/// Decide what Java's classic consumer does when `api` is answered with
/// `code`. Code 0 is [`Action::Continue`].
///
/// The per-request rules, as in Java:
/// - **Coordinator gone** (`NOT_COORDINATOR`, `COORDINATOR_NOT_AVAILABLE`,
///   and `REQUEST_TIMED_OUT` on commit): rediscover, then retry.
/// - **`COORDINATOR_LOAD_IN_PROGRESS`**: retry on the same coordinator after
///   a backoff (JoinGroup, OffsetCommit, OffsetFetch, FindCoordinator).
/// - **`REBALANCE_IN_PROGRESS`**: rejoin keeping member id and generation
///   (heartbeat: only when stable, ignored mid-rebalance; commit: the commit
///   fails, then rejoin).
/// - **`ILLEGAL_GENERATION`**: reset the generation but keep the member id
///   (Java 3.2+, KAFKA-13419), rejoin. **`UNKNOWN_MEMBER_ID`**: reset both,
///   rejoin as a new member. On heartbeat, commit and sync only if the
///   request's generation is still ours; Java ignores stale heartbeat errors.
/// - **`MEMBER_ID_REQUIRED`** (JoinGroup): rejoin at once with the returned id.
/// - **Fatal**: `FENCED_INSTANCE_ID` (unless about an old generation on
///   commit/heartbeat), `GROUP_AUTHORIZATION_FAILED`, and on JoinGroup
///   `INVALID_SESSION_TIMEOUT`, `INCONSISTENT_GROUP_PROTOCOL`,
///   `GROUP_MAX_SIZE_REACHED`, `INVALID_GROUP_ID`, `UNSUPPORTED_VERSION`, plus
///   any unexpected JoinGroup/SyncGroup error (Java throws `KafkaException`).
/// - **Commit-only failures**: `OFFSET_METADATA_TOO_LARGE`,
///   `INVALID_COMMIT_OFFSET_SIZE`, `TOPIC_AUTHORIZATION_FAILED` and unknown
///   errors fail that commit; `UNKNOWN_TOPIC_OR_PARTITION` is retried.
/// - **Heartbeat**: any other error just retries the heartbeat after backoff.
/// - **LeaveGroup**: best effort, errors are ignored.
///
/// *Deviations*: heartbeat `GROUP_AUTHORIZATION_FAILED` is fatal here (Java
/// retries the heartbeat and fails on the next JoinGroup/commit instead);
/// OffsetFetch `COORDINATOR_NOT_AVAILABLE` rediscovers (Java reports it as
/// unexpected).
pub fn classify(api: GroupApi, code: i16, ctx: &ErrorContext<'_>) -> Action {
    use ResponseError as E;

    let Some(error) = ResponseError::try_from_code(code) else {
        return Action::Continue;
    };
    let group = || ctx.group_id.to_owned();
    let kafka = KafkaCode(code);
    let retry = Action::Retry {
        backoff: ctx.backoff,
    };
    let rediscover = Action::RediscoverCoordinator {
        backoff: ctx.backoff,
    };
    let rejoin_keep = Action::Rejoin {
        reset_member_id: false,
        reset_generation: false,
    };
    // ILLEGAL_GENERATION keeps the member id, UNKNOWN_MEMBER_ID does not.
    let rejoin_reset = Action::Rejoin {
        reset_member_id: error == E::UnknownMemberId,
        reset_generation: true,
    };
    let fatal = |e: GroupError| Action::Fatal(e);
    let group_auth = || {
        fatal(GroupError::GroupAuthorizationFailed {
            group: group(),
            api,
        })
    };
    let fenced = || {
        fatal(GroupError::FencedInstanceId {
            group: group(),
            api,
        })
    };
    let unexpected = || GroupError::Unexpected {
        group: group(),
        api,
        code: kafka,
    };

    match api {
        GroupApi::FindCoordinator => match error {
            E::GroupAuthorizationFailed => group_auth(),
            // COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, …
            e if e.is_retriable() => retry,
            _ => fatal(unexpected()),
        },

        GroupApi::JoinGroup => match error {
            E::CoordinatorLoadInProgress => retry,
            E::UnknownMemberId => rejoin_reset,
            E::CoordinatorNotAvailable | E::NotCoordinator => rediscover,
            // Even for a new generation the instance id cannot be fenced on
            // join, so Java always treats this as fatal.
            E::FencedInstanceId => fenced(),
            E::InconsistentGroupProtocol => fatal(GroupError::InconsistentGroupProtocol {
                group: group(),
                api,
                detail: "the group's members use another protocol type or share no assignor \
                         with this member"
                    .to_owned(),
            }),
            E::InvalidSessionTimeout => fatal(GroupError::InvalidSessionTimeout { group: group() }),
            E::InvalidGroupId => fatal(GroupError::InvalidGroupId {
                group: group(),
                api,
            }),
            E::GroupAuthorizationFailed => group_auth(),
            E::GroupMaxSizeReached => fatal(GroupError::GroupMaxSizeReached { group: group() }),
            E::UnsupportedVersion => fatal(GroupError::UnsupportedVersion {
                group: group(),
                api,
            }),
            E::MemberIdRequired => Action::RejoinWithMemberId(ctx.returned_member_id.to_owned()),
            // Can mean a replication timeout on the broker; Java rejoins at once.
            E::RebalanceInProgress => rejoin_keep,
            _ => fatal(unexpected()),
        },

        GroupApi::SyncGroup => match error {
            E::GroupAuthorizationFailed => group_auth(),
            E::RebalanceInProgress => rejoin_keep,
            E::FencedInstanceId => fenced(),
            E::UnknownMemberId | E::IllegalGeneration if ctx.generation_unchanged => rejoin_reset,
            E::UnknownMemberId | E::IllegalGeneration => rejoin_keep,
            E::CoordinatorNotAvailable | E::NotCoordinator => rediscover,
            // Java: "Unexpected error from SyncGroup" (includes
            // COORDINATOR_LOAD_IN_PROGRESS, which the broker does not send here).
            _ => fatal(unexpected()),
        },

        GroupApi::Heartbeat => match error {
            E::CoordinatorNotAvailable | E::NotCoordinator => rediscover,
            E::RebalanceInProgress if ctx.stable => rejoin_keep,
            // Heartbeats continue during a rebalance; the rebalance is
            // already under way, nothing to do.
            E::RebalanceInProgress => Action::Continue,
            E::IllegalGeneration | E::UnknownMemberId | E::FencedInstanceId
                if !ctx.generation_unchanged =>
            {
                // About a generation we already left: Java ignores it.
                Action::Continue
            }
            E::FencedInstanceId => fenced(),
            E::IllegalGeneration | E::UnknownMemberId => rejoin_reset,
            E::GroupAuthorizationFailed => group_auth(),
            // Java's heartbeat thread just fails this heartbeat and retries.
            _ => retry,
        },

        GroupApi::OffsetCommit => match error {
            E::GroupAuthorizationFailed => group_auth(),
            E::TopicAuthorizationFailed => Action::Fail(GroupError::TopicAuthorizationFailed {
                group: group(),
                api,
            }),
            E::OffsetMetadataTooLarge | E::InvalidCommitOffsetSize => {
                Action::Fail(GroupError::OffsetCommitRejected {
                    group: group(),
                    code: kafka,
                })
            }
            E::CoordinatorLoadInProgress | E::UnknownTopicOrPartition => retry,
            E::CoordinatorNotAvailable | E::NotCoordinator | E::RequestTimedOut => rediscover,
            E::FencedInstanceId if ctx.generation_unchanged => fenced(),
            // Fenced in a generation we already left: not fatal.
            E::FencedInstanceId if ctx.rebalancing => {
                Action::Fail(GroupError::RebalanceInProgress {
                    group: group(),
                    api,
                    code: kafka,
                })
            }
            E::FencedInstanceId => Action::Fail(GroupError::CommitFailed {
                group: group(),
                code: kafka,
            }),
            E::RebalanceInProgress => rejoin_keep,
            // Stale generation while we are already rejoining: just fail the
            // commit, the rejoin under way fixes the rest.
            E::UnknownMemberId | E::IllegalGeneration
                if !ctx.generation_unchanged && ctx.rebalancing =>
            {
                Action::Fail(GroupError::RebalanceInProgress {
                    group: group(),
                    api,
                    code: kafka,
                })
            }
            E::UnknownMemberId | E::IllegalGeneration => rejoin_reset,
            _ => Action::Fail(unexpected()),
        },

        GroupApi::OffsetFetch => match error {
            E::CoordinatorLoadInProgress | E::UnstableOffsetCommit => retry,
            E::NotCoordinator | E::CoordinatorNotAvailable => rediscover,
            E::GroupAuthorizationFailed => group_auth(),
            E::TopicAuthorizationFailed => Action::Fail(GroupError::TopicAuthorizationFailed {
                group: group(),
                api,
            }),
            E::UnknownTopicOrPartition => Action::Fail(GroupError::UnknownTopicOrPartition {
                group: group(),
                code: kafka,
            }),
            _ => Action::Fail(unexpected()),
        },

        // Leaving is best effort: Java logs the error and resets anyway.
        GroupApi::LeaveGroup => Action::Continue,
    }
}

/// Pick the error that decides an OffsetCommit response from its per-partition
/// codes, the way Java walks them: the first error other than
/// `TOPIC_AUTHORIZATION_FAILED` wins; otherwise `TOPIC_AUTHORIZATION_FAILED`
/// if any partition had it; otherwise `None` (success).
pub fn first_commit_error(codes: impl IntoIterator<Item = i16>) -> Option<i16> {
    let topic_auth = ResponseError::TopicAuthorizationFailed.code();
    let mut saw_topic_auth = false;
    for code in codes {
        if code == topic_auth {
            saw_topic_auth = true;
        } else if code != 0 {
            return Some(code);
        }
    }
    saw_topic_auth.then_some(topic_auth)
}

/// The error a caller of a failed commit should see when [`classify`]
/// answered an OffsetCommit error with [`Action::Rejoin`]:
/// `REBALANCE_IN_PROGRESS` → [`GroupError::RebalanceInProgress`], anything
/// else (`UNKNOWN_MEMBER_ID`, `ILLEGAL_GENERATION`) → Java's
/// `CommitFailedException`, [`GroupError::CommitFailed`].
pub fn commit_failure(group_id: &str, code: i16) -> GroupError {
    if code == ResponseError::RebalanceInProgress.code() {
        GroupError::RebalanceInProgress {
            group: group_id.to_owned(),
            api: GroupApi::OffsetCommit,
            code: KafkaCode(code),
        }
    } else {
        GroupError::CommitFailed {
            group: group_id.to_owned(),
            code: KafkaCode(code),
        }
    }
}

/// One consumer's membership in one group.
#[derive(Debug, Clone)]
pub struct GroupMember {
    group_id: String,
    group_instance_id: Option<String>,
    backoff: Backoff,
    generation: Generation,
    state: MemberState,
    /// A rejoin was requested mid-rebalance; honour it once synced (Java
    /// re-checks subscription and metadata after every rebalance).
    rejoin_after_sync: bool,
    /// Consecutive retries per request type, for the backoff.
    attempts: Attempts,
}

impl GroupMember {
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
            attempts: Attempts::default(),
        }
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

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

    /// The generation to commit offsets with, or `None` if offsets must not
    /// be committed now (Java's `generationIfStable`, plus the commit Java
    /// makes in `onJoinPrepare` before revoking). Never a reset generation:
    /// Java fails such commits before sending them.
    pub fn commit_generation(&self) -> Option<&Generation> {
        match &self.state {
            MemberState::Stable { .. } | MemberState::Revoking { lost: false, .. }
                if !self.generation.is_lost() =>
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
            Event::CoordinatorFound => {
                self.reset_attempts(GroupApi::FindCoordinator);
                Action::Continue
            }
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

    fn on_join_error(&mut self, code: i16, returned_member_id: &str) -> Action {
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
        if std::mem::take(&mut self.rejoin_after_sync) {
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
            MemberState::Stable { assignment } => {
                let assignment = std::mem::take(assignment);
                self.state = MemberState::Revoking {
                    assignment,
                    lost: self.generation.is_lost(),
                    then: AfterRevoke::Rejoin,
                };
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
        code: i16,
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
            MemberState::Stable { assignment } => {
                let assignment = std::mem::take(assignment);
                self.state = MemberState::Revoking {
                    assignment,
                    lost: self.generation.is_lost(),
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
mod tests {
    use super::*;
    use crate::group::protocol::TopicPartitions;

    // Kafka error codes, named as in Java's `Errors`.
    const NONE: i16 = 0;
    const UNKNOWN_SERVER_ERROR: i16 = -1;
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    const REQUEST_TIMED_OUT: i16 = 7;
    const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    const NOT_COORDINATOR: i16 = 16;
    const ILLEGAL_GENERATION: i16 = 22;
    const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    const INVALID_GROUP_ID: i16 = 24;
    const UNKNOWN_MEMBER_ID: i16 = 25;
    const INVALID_SESSION_TIMEOUT: i16 = 26;
    const REBALANCE_IN_PROGRESS: i16 = 27;
    const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
    const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    const UNSUPPORTED_VERSION: i16 = 35;
    const MEMBER_ID_REQUIRED: i16 = 79;
    const GROUP_MAX_SIZE_REACHED: i16 = 81;
    const FENCED_INSTANCE_ID: i16 = 82;
    const UNSTABLE_OFFSET_COMMIT: i16 = 88;

    const GROUP: &str = "orders";
    const BACKOFF: Duration = Duration::from_millis(100);

    const ALL_APIS: [GroupApi; 7] = [
        GroupApi::FindCoordinator,
        GroupApi::JoinGroup,
        GroupApi::SyncGroup,
        GroupApi::Heartbeat,
        GroupApi::OffsetCommit,
        GroupApi::OffsetFetch,
        GroupApi::LeaveGroup,
    ];

    fn ctx(unchanged: bool, stable: bool, rebalancing: bool) -> ErrorContext<'static> {
        ErrorContext {
            group_id: GROUP,
            generation_unchanged: unchanged,
            stable,
            rebalancing,
            returned_member_id: "member-from-broker",
            backoff: BACKOFF,
        }
    }

    /// Current generation, stable, not rebalancing: the common case.
    fn current() -> ErrorContext<'static> {
        ctx(true, true, false)
    }

    fn retry() -> Action {
        Action::Retry { backoff: BACKOFF }
    }

    fn rediscover() -> Action {
        Action::RediscoverCoordinator { backoff: BACKOFF }
    }

    fn rejoin(reset_member_id: bool, reset_generation: bool) -> Action {
        Action::Rejoin {
            reset_member_id,
            reset_generation,
        }
    }

    fn group() -> String {
        GROUP.to_owned()
    }

    fn unexpected(api: GroupApi, code: i16) -> GroupError {
        GroupError::Unexpected {
            group: group(),
            api,
            code: KafkaCode(code),
        }
    }

    // ---------------------------------------------------------------------
    // classify: every listed error code for every request
    // ---------------------------------------------------------------------

    #[test]
    fn no_error_is_continue_everywhere() {
        for api in ALL_APIS {
            for c in [current(), ctx(false, false, true)] {
                assert_eq!(classify(api, NONE, &c), Action::Continue, "{api}");
            }
        }
    }

    #[test]
    fn classify_join_group() {
        let api = GroupApi::JoinGroup;
        let c = ctx(true, false, true);
        let cases: Vec<(i16, Action)> = vec![
            (COORDINATOR_LOAD_IN_PROGRESS, retry()),
            (UNKNOWN_MEMBER_ID, rejoin(true, true)),
            (COORDINATOR_NOT_AVAILABLE, rediscover()),
            (NOT_COORDINATOR, rediscover()),
            (
                FENCED_INSTANCE_ID,
                Action::Fatal(GroupError::FencedInstanceId {
                    group: group(),
                    api,
                }),
            ),
            (
                INVALID_SESSION_TIMEOUT,
                Action::Fatal(GroupError::InvalidSessionTimeout { group: group() }),
            ),
            (
                INVALID_GROUP_ID,
                Action::Fatal(GroupError::InvalidGroupId {
                    group: group(),
                    api,
                }),
            ),
            (
                GROUP_AUTHORIZATION_FAILED,
                Action::Fatal(GroupError::GroupAuthorizationFailed {
                    group: group(),
                    api,
                }),
            ),
            (
                GROUP_MAX_SIZE_REACHED,
                Action::Fatal(GroupError::GroupMaxSizeReached { group: group() }),
            ),
            (
                UNSUPPORTED_VERSION,
                Action::Fatal(GroupError::UnsupportedVersion {
                    group: group(),
                    api,
                }),
            ),
            (
                MEMBER_ID_REQUIRED,
                Action::RejoinWithMemberId("member-from-broker".to_owned()),
            ),
            (REBALANCE_IN_PROGRESS, rejoin(false, false)),
            (
                UNKNOWN_SERVER_ERROR,
                Action::Fatal(unexpected(api, UNKNOWN_SERVER_ERROR)),
            ),
            (
                ILLEGAL_GENERATION,
                Action::Fatal(unexpected(api, ILLEGAL_GENERATION)),
            ),
        ];
        for (code, expected) in cases {
            assert_eq!(
                classify(api, code, &c),
                expected,
                "JoinGroup {}",
                KafkaCode(code)
            );
        }
        assert!(matches!(
            classify(api, INCONSISTENT_GROUP_PROTOCOL, &c),
            Action::Fatal(GroupError::InconsistentGroupProtocol { .. })
        ));
    }

    #[test]
    fn classify_sync_group() {
        let api = GroupApi::SyncGroup;
        let now = ctx(true, false, false);
        let stale = ctx(false, false, false);
        let cases: Vec<(i16, ErrorContext<'_>, Action)> = vec![
            (
                GROUP_AUTHORIZATION_FAILED,
                now,
                Action::Fatal(GroupError::GroupAuthorizationFailed {
                    group: group(),
                    api,
                }),
            ),
            (REBALANCE_IN_PROGRESS, now, rejoin(false, false)),
            (
                FENCED_INSTANCE_ID,
                now,
                Action::Fatal(GroupError::FencedInstanceId {
                    group: group(),
                    api,
                }),
            ),
            (
                FENCED_INSTANCE_ID,
                stale,
                Action::Fatal(GroupError::FencedInstanceId {
                    group: group(),
                    api,
                }),
            ),
            (UNKNOWN_MEMBER_ID, now, rejoin(true, true)),
            (ILLEGAL_GENERATION, now, rejoin(false, true)),
            // Generation already changed: rejoin without resetting the new one.
            (UNKNOWN_MEMBER_ID, stale, rejoin(false, false)),
            (ILLEGAL_GENERATION, stale, rejoin(false, false)),
            (COORDINATOR_NOT_AVAILABLE, now, rediscover()),
            (NOT_COORDINATOR, now, rediscover()),
            (
                COORDINATOR_LOAD_IN_PROGRESS,
                now,
                Action::Fatal(unexpected(api, COORDINATOR_LOAD_IN_PROGRESS)),
            ),
            (
                UNKNOWN_SERVER_ERROR,
                now,
                Action::Fatal(unexpected(api, UNKNOWN_SERVER_ERROR)),
            ),
        ];
        for (code, c, expected) in cases {
            assert_eq!(
                classify(api, code, &c),
                expected,
                "SyncGroup {}",
                KafkaCode(code)
            );
        }
    }

    #[test]
    fn classify_heartbeat() {
        let api = GroupApi::Heartbeat;
        let stable = current();
        let mid_rebalance = ctx(true, false, false);
        let stale = ctx(false, true, false);
        let cases: Vec<(i16, ErrorContext<'_>, Action)> = vec![
            (COORDINATOR_NOT_AVAILABLE, stable, rediscover()),
            (NOT_COORDINATOR, stable, rediscover()),
            (REBALANCE_IN_PROGRESS, stable, rejoin(false, false)),
            (REBALANCE_IN_PROGRESS, mid_rebalance, Action::Continue),
            (ILLEGAL_GENERATION, stable, rejoin(false, true)),
            (UNKNOWN_MEMBER_ID, stable, rejoin(true, true)),
            (
                FENCED_INSTANCE_ID,
                stable,
                Action::Fatal(GroupError::FencedInstanceId {
                    group: group(),
                    api,
                }),
            ),
            // About an old generation: ignored.
            (ILLEGAL_GENERATION, stale, Action::Continue),
            (UNKNOWN_MEMBER_ID, stale, Action::Continue),
            (FENCED_INSTANCE_ID, stale, Action::Continue),
            (
                GROUP_AUTHORIZATION_FAILED,
                stable,
                Action::Fatal(GroupError::GroupAuthorizationFailed {
                    group: group(),
                    api,
                }),
            ),
            (COORDINATOR_LOAD_IN_PROGRESS, stable, retry()),
            (UNKNOWN_SERVER_ERROR, stable, retry()),
        ];
        for (code, c, expected) in cases {
            assert_eq!(
                classify(api, code, &c),
                expected,
                "Heartbeat {}",
                KafkaCode(code)
            );
        }
    }

    #[test]
    fn classify_offset_commit() {
        let api = GroupApi::OffsetCommit;
        let stable = current();
        let stale_stable = ctx(false, true, false);
        let stale_joining = ctx(false, false, true);
        let rip = |code| {
            Action::Fail(GroupError::RebalanceInProgress {
                group: group(),
                api,
                code: KafkaCode(code),
            })
        };
        let cases: Vec<(i16, ErrorContext<'_>, Action)> = vec![
            (
                GROUP_AUTHORIZATION_FAILED,
                stable,
                Action::Fatal(GroupError::GroupAuthorizationFailed {
                    group: group(),
                    api,
                }),
            ),
            (
                TOPIC_AUTHORIZATION_FAILED,
                stable,
                Action::Fail(GroupError::TopicAuthorizationFailed {
                    group: group(),
                    api,
                }),
            ),
            (
                OFFSET_METADATA_TOO_LARGE,
                stable,
                Action::Fail(GroupError::OffsetCommitRejected {
                    group: group(),
                    code: KafkaCode(OFFSET_METADATA_TOO_LARGE),
                }),
            ),
            (
                INVALID_COMMIT_OFFSET_SIZE,
                stable,
                Action::Fail(GroupError::OffsetCommitRejected {
                    group: group(),
                    code: KafkaCode(INVALID_COMMIT_OFFSET_SIZE),
                }),
            ),
            (COORDINATOR_LOAD_IN_PROGRESS, stable, retry()),
            (UNKNOWN_TOPIC_OR_PARTITION, stable, retry()),
            (COORDINATOR_NOT_AVAILABLE, stable, rediscover()),
            (NOT_COORDINATOR, stable, rediscover()),
            (REQUEST_TIMED_OUT, stable, rediscover()),
            (
                FENCED_INSTANCE_ID,
                stable,
                Action::Fatal(GroupError::FencedInstanceId {
                    group: group(),
                    api,
                }),
            ),
            (FENCED_INSTANCE_ID, stale_joining, rip(FENCED_INSTANCE_ID)),
            (
                FENCED_INSTANCE_ID,
                stale_stable,
                Action::Fail(GroupError::CommitFailed {
                    group: group(),
                    code: KafkaCode(FENCED_INSTANCE_ID),
                }),
            ),
            (REBALANCE_IN_PROGRESS, stable, rejoin(false, false)),
            (UNKNOWN_MEMBER_ID, stable, rejoin(true, true)),
            (ILLEGAL_GENERATION, stable, rejoin(false, true)),
            (UNKNOWN_MEMBER_ID, stale_joining, rip(UNKNOWN_MEMBER_ID)),
            (ILLEGAL_GENERATION, stale_joining, rip(ILLEGAL_GENERATION)),
            // Stale but not rebalancing: Java still resets (and so do we).
            (ILLEGAL_GENERATION, stale_stable, rejoin(false, true)),
            (
                UNKNOWN_SERVER_ERROR,
                stable,
                Action::Fail(unexpected(api, UNKNOWN_SERVER_ERROR)),
            ),
        ];
        for (code, c, expected) in cases {
            assert_eq!(
                classify(api, code, &c),
                expected,
                "OffsetCommit {}",
                KafkaCode(code)
            );
        }
    }

    #[test]
    fn classify_offset_fetch_find_coordinator_and_leave() {
        let c = ctx(false, false, false);
        let fetch = GroupApi::OffsetFetch;
        assert_eq!(classify(fetch, COORDINATOR_LOAD_IN_PROGRESS, &c), retry());
        assert_eq!(classify(fetch, UNSTABLE_OFFSET_COMMIT, &c), retry());
        assert_eq!(classify(fetch, NOT_COORDINATOR, &c), rediscover());
        assert_eq!(classify(fetch, COORDINATOR_NOT_AVAILABLE, &c), rediscover());
        assert_eq!(
            classify(fetch, GROUP_AUTHORIZATION_FAILED, &c),
            Action::Fatal(GroupError::GroupAuthorizationFailed {
                group: group(),
                api: fetch
            })
        );
        assert_eq!(
            classify(fetch, TOPIC_AUTHORIZATION_FAILED, &c),
            Action::Fail(GroupError::TopicAuthorizationFailed {
                group: group(),
                api: fetch
            })
        );
        assert_eq!(
            classify(fetch, UNKNOWN_TOPIC_OR_PARTITION, &c),
            Action::Fail(GroupError::UnknownTopicOrPartition {
                group: group(),
                code: KafkaCode(UNKNOWN_TOPIC_OR_PARTITION)
            })
        );
        assert_eq!(
            classify(fetch, UNKNOWN_SERVER_ERROR, &c),
            Action::Fail(unexpected(fetch, UNKNOWN_SERVER_ERROR))
        );

        let find = GroupApi::FindCoordinator;
        for code in [
            COORDINATOR_NOT_AVAILABLE,
            NOT_COORDINATOR,
            COORDINATOR_LOAD_IN_PROGRESS,
        ] {
            assert_eq!(classify(find, code, &c), retry(), "{}", KafkaCode(code));
        }
        assert_eq!(
            classify(find, GROUP_AUTHORIZATION_FAILED, &c),
            Action::Fatal(GroupError::GroupAuthorizationFailed {
                group: group(),
                api: find
            })
        );
        assert_eq!(
            classify(find, INVALID_GROUP_ID, &c),
            Action::Fatal(unexpected(find, INVALID_GROUP_ID))
        );

        for code in [
            UNKNOWN_MEMBER_ID,
            FENCED_INSTANCE_ID,
            GROUP_AUTHORIZATION_FAILED,
            -1,
        ] {
            assert_eq!(classify(GroupApi::LeaveGroup, code, &c), Action::Continue);
        }
    }

    #[test]
    fn classify_is_total() {
        // Every code Kafka defines (and some it does not), every request,
        // every context: an answer, never a panic.
        for api in ALL_APIS {
            for code in (-5..=140).chain([i16::MIN, i16::MAX]) {
                for bits in 0..8u8 {
                    let c = ctx(bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
                    let _ = classify(api, code, &c);
                }
            }
        }
    }

    #[test]
    fn commit_helpers() {
        assert_eq!(first_commit_error([]), None);
        assert_eq!(first_commit_error([0, 0]), None);
        assert_eq!(
            first_commit_error([0, TOPIC_AUTHORIZATION_FAILED, 0]),
            Some(29)
        );
        assert_eq!(
            first_commit_error([
                TOPIC_AUTHORIZATION_FAILED,
                ILLEGAL_GENERATION,
                UNKNOWN_MEMBER_ID
            ]),
            Some(ILLEGAL_GENERATION)
        );
        assert_eq!(
            commit_failure(GROUP, REBALANCE_IN_PROGRESS),
            GroupError::RebalanceInProgress {
                group: group(),
                api: GroupApi::OffsetCommit,
                code: KafkaCode(REBALANCE_IN_PROGRESS)
            }
        );
        assert_eq!(
            commit_failure(GROUP, UNKNOWN_MEMBER_ID),
            GroupError::CommitFailed {
                group: group(),
                code: KafkaCode(UNKNOWN_MEMBER_ID)
            }
        );
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        let b = Backoff::default();
        let delays: Vec<u64> = (0..6)
            .map(|n| u64::try_from(b.delay(n).as_millis()).unwrap_or(u64::MAX))
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX), b.max);
        let huge = Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
        };
        assert_eq!(huge.delay(40), Duration::MAX);
    }

    // ---------------------------------------------------------------------
    // GroupMember: transitions
    // ---------------------------------------------------------------------

    fn assignment() -> Assignment {
        Assignment::new(vec![TopicPartitions::new("t", [0, 1])])
    }

    fn assignment_bytes() -> Bytes {
        assignment().encode(3).unwrap_or_default()
    }

    fn dynamic_member() -> GroupMember {
        GroupMember::new(GROUP, None, Backoff::default())
    }

    fn join_ok(member_id: &str, generation_id: i32) -> Event {
        Event::JoinGroupOk {
            generation_id,
            member_id: member_id.to_owned(),
            protocol_type: Some("consumer".to_owned()),
            protocol_name: Some("range".to_owned()),
            leader: true,
        }
    }

    fn sync_ok() -> Event {
        Event::SyncGroupOk {
            protocol_type: Some("consumer".to_owned()),
            protocol_name: Some("range".to_owned()),
            assignment: assignment_bytes(),
        }
    }

    fn joining() -> GroupMember {
        let mut m = dynamic_member();
        assert_eq!(m.handle(Event::JoinSent), Action::Continue);
        assert_eq!(m.state(), &MemberState::Joining);
        m
    }

    fn awaiting_sync() -> GroupMember {
        let mut m = joining();
        assert_eq!(m.handle(join_ok("m-1", 7)), Action::Continue);
        assert_eq!(m.state(), &MemberState::AwaitingSync { leader: true });
        m
    }

    fn stable() -> GroupMember {
        let mut m = awaiting_sync();
        assert_eq!(m.handle(sync_ok()), Action::Continue);
        assert_eq!(
            m.state(),
            &MemberState::Stable {
                assignment: assignment()
            }
        );
        m
    }

    fn generation(id: i32, member: &str, protocol: Option<&str>) -> Generation {
        Generation {
            generation_id: id,
            member_id: member.to_owned(),
            protocol_name: protocol.map(str::to_owned),
        }
    }

    fn revoking(lost: bool, then: AfterRevoke) -> MemberState {
        MemberState::Revoking {
            assignment: assignment(),
            lost,
            then,
        }
    }

    #[test]
    fn happy_path_join_sync_stable() {
        let m = stable();
        assert_eq!(m.generation(), &generation(7, "m-1", Some("range")));
        assert_eq!(m.commit_generation(), Some(m.generation()));
        assert_eq!(m.assignment(), Some(&assignment()));
        assert!(!m.is_terminal());
        assert_eq!(m.group_id(), GROUP);
        assert_eq!(m.group_instance_id(), None);
    }

    #[test]
    fn join_member_id_required_stores_id_and_rejoins() {
        let mut m = joining();
        let action = m.handle(Event::JoinGroupError {
            code: MEMBER_ID_REQUIRED,
            member_id: "m-given".to_owned(),
        });
        assert_eq!(action, Action::RejoinWithMemberId("m-given".to_owned()));
        assert_eq!(m.state(), &MemberState::Joining);
        assert_eq!(m.generation(), &generation(-1, "m-given", None));
        m.handle(Event::JoinSent);
        assert_eq!(m.handle(join_ok("m-given", 1)), Action::Continue);
    }

    #[test]
    fn join_unknown_member_id_resets_and_rejoins_as_new_member() {
        let mut m = joining();
        m.handle(Event::JoinGroupError {
            code: MEMBER_ID_REQUIRED,
            member_id: "m-old".to_owned(),
        });
        let action = m.handle(Event::JoinGroupError {
            code: UNKNOWN_MEMBER_ID,
            member_id: String::new(),
        });
        assert_eq!(action, rejoin(true, true));
        assert_eq!(m.state(), &MemberState::Unjoined);
        assert_eq!(m.generation(), &Generation::none());
    }

    #[test]
    fn join_retriable_errors_keep_joining_with_growing_backoff() {
        let mut m = joining();
        let mut backoffs = Vec::new();
        for _ in 0..5 {
            match m.handle(Event::JoinGroupError {
                code: COORDINATOR_LOAD_IN_PROGRESS,
                member_id: String::new(),
            }) {
                Action::Retry { backoff } => backoffs.push(backoff.as_millis()),
                other => panic!("expected Retry, got {other:?}"),
            }
            assert_eq!(m.state(), &MemberState::Joining);
        }
        assert_eq!(backoffs, [100, 200, 400, 800, 1000]);
        for code in [NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE] {
            assert!(matches!(
                m.handle(Event::JoinGroupError {
                    code,
                    member_id: String::new()
                }),
                Action::RediscoverCoordinator { .. }
            ));
            assert_eq!(m.state(), &MemberState::Joining);
        }
        assert_eq!(
            m.handle(Event::JoinGroupError {
                code: REBALANCE_IN_PROGRESS,
                member_id: String::new()
            }),
            rejoin(false, false)
        );
        assert_eq!(m.state(), &MemberState::Joining);
        // Success resets the backoff.
        m.handle(join_ok("m-1", 1));
        let mut m2 = m.clone();
        m2.handle(Event::SyncGroupError {
            sent: m.generation().clone(),
            code: REBALANCE_IN_PROGRESS,
        });
        m2.handle(Event::JoinSent);
        assert_eq!(
            m2.handle(Event::JoinGroupError {
                code: COORDINATOR_LOAD_IN_PROGRESS,
                member_id: String::new()
            }),
            Action::Retry {
                backoff: Duration::from_millis(100)
            }
        );
    }

    #[test]
    fn join_fatal_errors_stop_the_member() {
        for code in [
            FENCED_INSTANCE_ID,
            GROUP_AUTHORIZATION_FAILED,
            INVALID_SESSION_TIMEOUT,
            INCONSISTENT_GROUP_PROTOCOL,
            GROUP_MAX_SIZE_REACHED,
            INVALID_GROUP_ID,
            UNSUPPORTED_VERSION,
            UNKNOWN_SERVER_ERROR,
        ] {
            let mut m = joining();
            let action = m.handle(Event::JoinGroupError {
                code,
                member_id: String::new(),
            });
            let Action::Fatal(error) = action else {
                panic!("{}: expected Fatal, got {action:?}", KafkaCode(code));
            };
            assert_eq!(m.state(), &MemberState::Fatal(error.clone()));
            assert!(m.is_terminal());
            assert!(error.to_string().contains(GROUP));
            // Terminal: everything else is ignored.
            assert_eq!(m.handle(join_ok("m", 1)), Action::Continue);
            assert_eq!(m.handle(Event::LeaveRequested), Action::Continue);
            assert_eq!(m.state(), &MemberState::Fatal(error));
        }
    }

    #[test]
    fn join_ok_with_foreign_protocol_type_is_fatal() {
        let mut m = joining();
        let action = m.handle(Event::JoinGroupOk {
            generation_id: 1,
            member_id: "m".to_owned(),
            protocol_type: Some("connect".to_owned()),
            protocol_name: Some("range".to_owned()),
            leader: false,
        });
        assert!(matches!(
            action,
            Action::Fatal(GroupError::InconsistentGroupProtocol {
                api: GroupApi::JoinGroup,
                ..
            })
        ));
        assert!(m.is_terminal());
    }

    #[test]
    fn join_ok_after_reset_mid_flight_backs_off_and_rejoins() {
        let mut m = dynamic_member();
        // Never sent JoinSent (or was reset to Unjoined meanwhile).
        assert_eq!(m.handle(join_ok("m", 1)), retry());
        assert_eq!(m.state(), &MemberState::Unjoined);
        // A JoinGroup error for a superseded request is ignored.
        let mut s = stable();
        assert_eq!(
            s.handle(Event::JoinGroupError {
                code: UNKNOWN_MEMBER_ID,
                member_id: String::new()
            }),
            Action::Continue
        );
        assert!(matches!(s.state(), MemberState::Stable { .. }));
    }

    #[test]
    fn sync_errors() {
        let sent = generation(7, "m-1", Some("range"));
        let stale = generation(6, "m-1", Some("range"));
        // (code, sent, action, state, generation afterwards)
        let cases: Vec<(i16, &Generation, Action, MemberState, Generation)> = vec![
            (
                REBALANCE_IN_PROGRESS,
                &sent,
                rejoin(false, false),
                MemberState::Joining,
                sent.clone(),
            ),
            (
                UNKNOWN_MEMBER_ID,
                &sent,
                rejoin(true, true),
                MemberState::Unjoined,
                Generation::none(),
            ),
            (
                ILLEGAL_GENERATION,
                &sent,
                rejoin(false, true),
                MemberState::Unjoined,
                generation(-1, "m-1", None),
            ),
            (
                ILLEGAL_GENERATION,
                &stale,
                rejoin(false, false),
                MemberState::Joining,
                sent.clone(),
            ),
            (
                UNKNOWN_MEMBER_ID,
                &stale,
                rejoin(false, false),
                MemberState::Joining,
                sent.clone(),
            ),
            (
                NOT_COORDINATOR,
                &sent,
                rediscover(),
                MemberState::Joining,
                sent.clone(),
            ),
            (
                COORDINATOR_NOT_AVAILABLE,
                &sent,
                rediscover(),
                MemberState::Joining,
                sent.clone(),
            ),
        ];
        for (code, sent_generation, action, state, after) in cases {
            let mut m = awaiting_sync();
            let got = m.handle(Event::SyncGroupError {
                sent: sent_generation.clone(),
                code,
            });
            assert_eq!(got, action, "SyncGroup {}", KafkaCode(code));
            assert_eq!(m.state(), &state, "SyncGroup {}", KafkaCode(code));
            assert_eq!(m.generation(), &after, "SyncGroup {}", KafkaCode(code));
        }
        for code in [
            FENCED_INSTANCE_ID,
            GROUP_AUTHORIZATION_FAILED,
            COORDINATOR_LOAD_IN_PROGRESS,
            UNKNOWN_SERVER_ERROR,
        ] {
            let mut m = awaiting_sync();
            let got = m.handle(Event::SyncGroupError {
                sent: sent.clone(),
                code,
            });
            assert!(
                matches!(got, Action::Fatal(_)),
                "SyncGroup {}: {got:?}",
                KafkaCode(code)
            );
            assert!(m.is_terminal());
        }
    }

    #[test]
    fn sync_ok_checks_protocol_and_payload() {
        let mut m = awaiting_sync();
        let action = m.handle(Event::SyncGroupOk {
            protocol_type: Some("consumer".to_owned()),
            protocol_name: Some("roundrobin".to_owned()),
            assignment: assignment_bytes(),
        });
        assert!(matches!(
            action,
            Action::Fatal(GroupError::InconsistentGroupProtocol {
                api: GroupApi::SyncGroup,
                ..
            })
        ));

        let mut m = awaiting_sync();
        let action = m.handle(Event::SyncGroupOk {
            protocol_type: Some("other".to_owned()),
            protocol_name: None,
            assignment: assignment_bytes(),
        });
        assert!(matches!(
            action,
            Action::Fatal(GroupError::InconsistentGroupProtocol { .. })
        ));

        let mut m = awaiting_sync();
        let action = m.handle(Event::SyncGroupOk {
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::from_static(&[0x00, 0x03, 0x7f]),
        });
        assert!(matches!(
            action,
            Action::Fatal(GroupError::Protocol {
                api: GroupApi::SyncGroup,
                ..
            })
        ));

        // Empty payload: nothing assigned.
        let mut m = awaiting_sync();
        let action = m.handle(Event::SyncGroupOk {
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        });
        assert_eq!(action, Action::Continue);
        assert_eq!(
            m.state(),
            &MemberState::Stable {
                assignment: Assignment::default()
            }
        );
    }

    #[test]
    fn sync_ok_after_generation_reset_by_heartbeat_rejoins() {
        let mut m = awaiting_sync();
        let sent = m.generation().clone();
        // The heartbeat thread hears ILLEGAL_GENERATION while SyncGroup is in flight.
        assert_eq!(
            m.handle(Event::HeartbeatError {
                sent,
                code: ILLEGAL_GENERATION
            }),
            rejoin(false, true)
        );
        assert_eq!(m.state(), &MemberState::Unjoined);
        assert_eq!(m.handle(sync_ok()), rejoin(false, false));
        assert_eq!(m.state(), &MemberState::Unjoined);
        assert_eq!(m.generation(), &generation(-1, "m-1", None));
    }

    #[test]
    fn heartbeat_errors_while_stable() {
        let current = generation(7, "m-1", Some("range"));
        let stale = generation(6, "m-1", Some("range"));
        // (code, sent, action, state, generation afterwards, commit allowed)
        let cases: Vec<(i16, &Generation, Action, MemberState, Generation, bool)> = vec![
            (
                REBALANCE_IN_PROGRESS,
                &current,
                rejoin(false, false),
                revoking(false, AfterRevoke::Rejoin),
                current.clone(),
                true,
            ),
            (
                ILLEGAL_GENERATION,
                &current,
                rejoin(false, true),
                revoking(true, AfterRevoke::Rejoin),
                generation(-1, "m-1", None),
                false,
            ),
            (
                UNKNOWN_MEMBER_ID,
                &current,
                rejoin(true, true),
                revoking(true, AfterRevoke::Rejoin),
                Generation::none(),
                false,
            ),
            (
                ILLEGAL_GENERATION,
                &stale,
                Action::Continue,
                MemberState::Stable {
                    assignment: assignment(),
                },
                current.clone(),
                true,
            ),
            (
                UNKNOWN_MEMBER_ID,
                &stale,
                Action::Continue,
                MemberState::Stable {
                    assignment: assignment(),
                },
                current.clone(),
                true,
            ),
            (
                FENCED_INSTANCE_ID,
                &stale,
                Action::Continue,
                MemberState::Stable {
                    assignment: assignment(),
                },
                current.clone(),
                true,
            ),
            (
                NOT_COORDINATOR,
                &current,
                rediscover(),
                MemberState::Stable {
                    assignment: assignment(),
                },
                current.clone(),
                true,
            ),
            (
                COORDINATOR_NOT_AVAILABLE,
                &current,
                rediscover(),
                MemberState::Stable {
                    assignment: assignment(),
                },
                current.clone(),
                true,
            ),
            (
                COORDINATOR_LOAD_IN_PROGRESS,
                &current,
                retry(),
                MemberState::Stable {
                    assignment: assignment(),
                },
                current.clone(),
                true,
            ),
            (
                UNKNOWN_SERVER_ERROR,
                &current,
                retry(),
                MemberState::Stable {
                    assignment: assignment(),
                },
                current.clone(),
                true,
            ),
        ];
        for (code, sent, action, state, after, can_commit) in cases {
            let mut m = stable();
            let got = m.handle(Event::HeartbeatError {
                sent: sent.clone(),
                code,
            });
            assert_eq!(got, action, "Heartbeat {}", KafkaCode(code));
            assert_eq!(m.state(), &state, "Heartbeat {}", KafkaCode(code));
            assert_eq!(m.generation(), &after, "Heartbeat {}", KafkaCode(code));
            assert_eq!(
                m.commit_generation().is_some(),
                can_commit,
                "Heartbeat {}",
                KafkaCode(code)
            );
        }
        for code in [FENCED_INSTANCE_ID, GROUP_AUTHORIZATION_FAILED] {
            let mut m = stable();
            let got = m.handle(Event::HeartbeatError {
                sent: current.clone(),
                code,
            });
            assert!(
                matches!(got, Action::Fatal(_)),
                "Heartbeat {}: {got:?}",
                KafkaCode(code)
            );
            assert!(m.is_terminal());
        }
        assert_eq!(stable().handle(Event::HeartbeatOk), Action::Continue);
    }

    #[test]
    fn heartbeat_rebalance_in_progress_is_ignored_mid_rebalance() {
        let mut m = awaiting_sync();
        let sent = m.generation().clone();
        assert_eq!(
            m.handle(Event::HeartbeatError {
                sent,
                code: REBALANCE_IN_PROGRESS
            }),
            Action::Continue
        );
        assert_eq!(m.state(), &MemberState::AwaitingSync { leader: true });
    }

    #[test]
    fn revocation_then_rejoin_keeps_member_id() {
        let mut m = stable();
        let sent = m.generation().clone();
        m.handle(Event::HeartbeatError {
            sent: sent.clone(),
            code: REBALANCE_IN_PROGRESS,
        });
        assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));
        // Commits for the revoked partitions still use the old generation.
        assert_eq!(m.commit_generation(), Some(&sent));
        // More heartbeat errors during revocation do not restart it.
        assert_eq!(
            m.handle(Event::HeartbeatError {
                sent: sent.clone(),
                code: REBALANCE_IN_PROGRESS
            }),
            rejoin(false, false)
        );
        assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));
        assert_eq!(m.handle(Event::RevocationDone), Action::Continue);
        assert_eq!(m.state(), &MemberState::Unjoined);
        assert_eq!(m.generation().member_id, "m-1");
        m.handle(Event::JoinSent);
        assert_eq!(m.state(), &MemberState::Joining);
    }

    #[test]
    fn commit_errors_while_stable() {
        let current = generation(7, "m-1", Some("range"));
        let stable_state = || MemberState::Stable {
            assignment: assignment(),
        };
        // (code, action, state, generation afterwards)
        let cases: Vec<(i16, Action, MemberState, Generation)> = vec![
            (
                COORDINATOR_LOAD_IN_PROGRESS,
                retry(),
                stable_state(),
                current.clone(),
            ),
            (
                UNKNOWN_TOPIC_OR_PARTITION,
                retry(),
                stable_state(),
                current.clone(),
            ),
            (
                NOT_COORDINATOR,
                rediscover(),
                stable_state(),
                current.clone(),
            ),
            (
                COORDINATOR_NOT_AVAILABLE,
                rediscover(),
                stable_state(),
                current.clone(),
            ),
            (
                REQUEST_TIMED_OUT,
                rediscover(),
                stable_state(),
                current.clone(),
            ),
            (
                REBALANCE_IN_PROGRESS,
                rejoin(false, false),
                revoking(false, AfterRevoke::Rejoin),
                current.clone(),
            ),
            (
                ILLEGAL_GENERATION,
                rejoin(false, true),
                revoking(true, AfterRevoke::Rejoin),
                generation(-1, "m-1", None),
            ),
            (
                UNKNOWN_MEMBER_ID,
                rejoin(true, true),
                revoking(true, AfterRevoke::Rejoin),
                Generation::none(),
            ),
            (
                OFFSET_METADATA_TOO_LARGE,
                Action::Fail(GroupError::OffsetCommitRejected {
                    group: group(),
                    code: KafkaCode(OFFSET_METADATA_TOO_LARGE),
                }),
                stable_state(),
                current.clone(),
            ),
            (
                INVALID_COMMIT_OFFSET_SIZE,
                Action::Fail(GroupError::OffsetCommitRejected {
                    group: group(),
                    code: KafkaCode(INVALID_COMMIT_OFFSET_SIZE),
                }),
                stable_state(),
                current.clone(),
            ),
            (
                TOPIC_AUTHORIZATION_FAILED,
                Action::Fail(GroupError::TopicAuthorizationFailed {
                    group: group(),
                    api: GroupApi::OffsetCommit,
                }),
                stable_state(),
                current.clone(),
            ),
            (
                UNKNOWN_SERVER_ERROR,
                Action::Fail(unexpected(GroupApi::OffsetCommit, UNKNOWN_SERVER_ERROR)),
                stable_state(),
                current.clone(),
            ),
        ];
        for (code, action, state, after) in cases {
            let mut m = stable();
            let got = m.handle(Event::CommitError {
                sent: current.clone(),
                code,
            });
            assert_eq!(got, action, "OffsetCommit {}", KafkaCode(code));
            assert_eq!(m.state(), &state, "OffsetCommit {}", KafkaCode(code));
            assert_eq!(m.generation(), &after, "OffsetCommit {}", KafkaCode(code));
        }
        for code in [FENCED_INSTANCE_ID, GROUP_AUTHORIZATION_FAILED] {
            let mut m = stable();
            let got = m.handle(Event::CommitError {
                sent: current.clone(),
                code,
            });
            assert!(
                matches!(got, Action::Fatal(_)),
                "OffsetCommit {}: {got:?}",
                KafkaCode(code)
            );
            assert!(m.is_terminal());
        }
        assert_eq!(stable().handle(Event::CommitOk), Action::Continue);
    }

    #[test]
    fn stale_commit_errors() {
        let old = generation(6, "m-0", Some("range"));
        // While a JoinGroup is in flight: the commit fails, nothing is reset.
        for code in [UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID] {
            let mut m = joining();
            let got = m.handle(Event::CommitError {
                sent: old.clone(),
                code,
            });
            assert!(
                matches!(got, Action::Fail(GroupError::RebalanceInProgress { .. })),
                "{}: {got:?}",
                KafkaCode(code)
            );
            assert_eq!(m.state(), &MemberState::Joining);
            assert_eq!(m.generation(), &Generation::none());
        }
        // While stable in a newer generation: fenced is not fatal.
        let mut m = stable();
        let got = m.handle(Event::CommitError {
            sent: old,
            code: FENCED_INSTANCE_ID,
        });
        assert!(
            matches!(got, Action::Fail(GroupError::CommitFailed { .. })),
            "{got:?}"
        );
        assert!(matches!(m.state(), MemberState::Stable { .. }));
    }

    #[test]
    fn commit_errors_during_revocation_do_not_restart_it() {
        let mut m = stable();
        let sent = m.generation().clone();
        m.handle(Event::RejoinRequested);
        assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));
        assert_eq!(
            m.handle(Event::CommitError {
                sent,
                code: ILLEGAL_GENERATION
            }),
            rejoin(false, true)
        );
        // The revoke already began as a revoke (not lost); only the
        // generation is reset for the next join.
        assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));
        assert_eq!(m.generation(), &generation(-1, "m-1", None));
        // No more commits with a reset generation.
        assert_eq!(m.commit_generation(), None);
        m.handle(Event::RevocationDone);
        assert_eq!(m.state(), &MemberState::Unjoined);
    }

    #[test]
    fn offset_fetch_and_find_coordinator_events() {
        let mut m = stable();
        assert_eq!(
            m.handle(Event::OffsetFetchError {
                code: COORDINATOR_LOAD_IN_PROGRESS
            }),
            retry()
        );
        assert_eq!(
            m.handle(Event::OffsetFetchError {
                code: COORDINATOR_LOAD_IN_PROGRESS
            }),
            Action::Retry {
                backoff: Duration::from_millis(200)
            }
        );
        assert_eq!(m.handle(Event::OffsetFetchOk), Action::Continue);
        assert_eq!(
            m.handle(Event::OffsetFetchError {
                code: UNSTABLE_OFFSET_COMMIT
            }),
            retry()
        );
        assert!(matches!(
            m.handle(Event::OffsetFetchError {
                code: UNKNOWN_TOPIC_OR_PARTITION
            }),
            Action::Fail(_)
        ));
        assert!(matches!(m.state(), MemberState::Stable { .. }));

        assert_eq!(
            m.handle(Event::FindCoordinatorError {
                code: COORDINATOR_NOT_AVAILABLE
            }),
            retry()
        );
        assert_eq!(m.handle(Event::CoordinatorFound), Action::Continue);
        assert_eq!(
            m.handle(Event::FindCoordinatorError {
                code: COORDINATOR_NOT_AVAILABLE
            }),
            retry()
        );
        assert!(matches!(
            m.handle(Event::FindCoordinatorError {
                code: GROUP_AUTHORIZATION_FAILED
            }),
            Action::Fatal(GroupError::GroupAuthorizationFailed {
                api: GroupApi::FindCoordinator,
                ..
            })
        ));
        assert!(m.is_terminal());

        let mut m = stable();
        assert!(matches!(
            m.handle(Event::OffsetFetchError {
                code: GROUP_AUTHORIZATION_FAILED
            }),
            Action::Fatal(_)
        ));
        assert!(m.is_terminal());
    }

    #[test]
    fn coordinator_lost() {
        let mut m = stable();
        assert_eq!(m.handle(Event::CoordinatorLost), rediscover());
        assert!(matches!(m.state(), MemberState::Stable { .. }));
        // Backoff grows until the coordinator is found again.
        assert_eq!(
            m.handle(Event::CoordinatorLost),
            Action::RediscoverCoordinator {
                backoff: Duration::from_millis(200)
            }
        );
        m.handle(Event::CoordinatorFound);
        assert_eq!(m.handle(Event::CoordinatorLost), rediscover());

        let mut m = awaiting_sync();
        assert_eq!(m.handle(Event::CoordinatorLost), rediscover());
        assert_eq!(m.state(), &MemberState::Joining);
        assert_eq!(m.generation(), &generation(7, "m-1", Some("range")));

        let mut m = joining();
        assert_eq!(m.handle(Event::CoordinatorLost), rediscover());
        assert_eq!(m.state(), &MemberState::Joining);
    }

    #[test]
    fn rejoin_requested() {
        let mut m = stable();
        assert_eq!(m.handle(Event::RejoinRequested), rejoin(false, false));
        assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));

        // Mid-rebalance: remembered and honoured after SyncGroup.
        let mut m = joining();
        assert_eq!(m.handle(Event::RejoinRequested), Action::Continue);
        m.handle(join_ok("m-1", 7));
        assert_eq!(m.handle(sync_ok()), rejoin(false, false));
        assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));
        m.handle(Event::RevocationDone);
        m.handle(Event::JoinSent);
        m.handle(join_ok("m-1", 8));
        assert_eq!(
            m.handle(sync_ok()),
            Action::Continue,
            "request honoured once"
        );

        let mut m = dynamic_member();
        assert_eq!(m.handle(Event::RejoinRequested), Action::Continue);
        assert_eq!(m.state(), &MemberState::Unjoined);
    }

    #[test]
    fn dynamic_member_leaves_with_leave_group() {
        let mut m = stable();
        assert_eq!(m.handle(Event::LeaveRequested), Action::Continue);
        assert_eq!(m.state(), &revoking(false, AfterRevoke::Leave));
        assert_eq!(m.handle(Event::RevocationDone), Action::Continue);
        assert_eq!(m.state(), &MemberState::Leaving);
        // The LeaveGroup request needs the member id.
        assert_eq!(m.generation().member_id, "m-1");
        assert_eq!(m.handle(Event::LeaveGroupDone), Action::Continue);
        assert_eq!(m.state(), &MemberState::Left);
        assert_eq!(m.generation(), &Generation::none());
        assert!(m.is_terminal());
        assert_eq!(m.handle(Event::JoinSent), Action::Continue);
        assert_eq!(m.state(), &MemberState::Left);
    }

    #[test]
    fn static_member_leaves_without_leave_group() {
        let mut m = GroupMember::new(GROUP, Some("instance-1".to_owned()), Backoff::default());
        assert_eq!(m.group_instance_id(), Some("instance-1"));
        m.handle(Event::JoinSent);
        m.handle(join_ok("m-1", 3));
        m.handle(sync_ok());
        m.handle(Event::LeaveRequested);
        assert_eq!(m.state(), &revoking(false, AfterRevoke::Leave));
        m.handle(Event::RevocationDone);
        assert_eq!(m.state(), &MemberState::Left);
    }

    #[test]
    fn leave_from_other_states() {
        // Never joined: nothing to tell the coordinator.
        let mut m = dynamic_member();
        m.handle(Event::LeaveRequested);
        assert_eq!(m.state(), &MemberState::Left);

        // Joining with a member id: LeaveGroup so the coordinator need not wait.
        let mut m = joining();
        m.handle(Event::JoinGroupError {
            code: MEMBER_ID_REQUIRED,
            member_id: "m-9".to_owned(),
        });
        m.handle(Event::LeaveRequested);
        assert_eq!(m.state(), &MemberState::Leaving);
        assert_eq!(m.handle(Event::CoordinatorLost), Action::Continue);
        assert_eq!(m.state(), &MemberState::Left);

        // Joining without a member id yet: just stop.
        let mut m = joining();
        m.handle(Event::LeaveRequested);
        assert_eq!(m.state(), &MemberState::Left);

        // Leave requested while revoking for a rejoin: leave instead; lost
        // partitions stay lost.
        let mut m = stable();
        let sent = m.generation().clone();
        m.handle(Event::HeartbeatError {
            sent,
            code: UNKNOWN_MEMBER_ID,
        });
        assert_eq!(m.state(), &revoking(true, AfterRevoke::Rejoin));
        m.handle(Event::LeaveRequested);
        assert_eq!(m.state(), &revoking(true, AfterRevoke::Leave));
        m.handle(Event::RevocationDone);
        // Member id was reset, so there is nobody to remove.
        assert_eq!(m.state(), &MemberState::Left);
    }

    #[test]
    fn superseded_responses_are_ignored() {
        let mut m = stable();
        let before = m.clone();
        for event in [
            Event::SyncGroupError {
                sent: m.generation().clone(),
                code: UNKNOWN_MEMBER_ID,
            },
            sync_ok(),
            join_ok("other", 99),
            Event::JoinSent,
            Event::RevocationDone,
            Event::LeaveGroupDone,
        ] {
            assert_eq!(m.handle(event.clone()), Action::Continue, "{event:?}");
            assert_eq!(m.state(), before.state(), "{event:?}");
            assert_eq!(m.generation(), before.generation(), "{event:?}");
        }
    }

    #[test]
    fn every_event_in_every_state_is_handled_without_panic() {
        let starts: Vec<GroupMember> = {
            let mut leaving = stable();
            leaving.handle(Event::LeaveRequested);
            leaving.handle(Event::RevocationDone);
            let mut revoking = stable();
            revoking.handle(Event::RejoinRequested);
            let mut left = dynamic_member();
            left.handle(Event::LeaveRequested);
            vec![
                dynamic_member(),
                joining(),
                awaiting_sync(),
                stable(),
                revoking,
                leaving,
                left,
            ]
        };
        let codes = (-2..=130).chain([i16::MIN, i16::MAX]);
        for start in &starts {
            for code in codes.clone() {
                let sent = start.generation().clone();
                let events = [
                    Event::JoinGroupError {
                        code,
                        member_id: "x".to_owned(),
                    },
                    Event::SyncGroupError {
                        sent: sent.clone(),
                        code,
                    },
                    Event::HeartbeatError {
                        sent: sent.clone(),
                        code,
                    },
                    Event::CommitError {
                        sent: sent.clone(),
                        code,
                    },
                    Event::OffsetFetchError { code },
                    Event::FindCoordinatorError { code },
                ];
                for event in events {
                    let mut m = start.clone();
                    let action = m.handle(event);
                    // Fatal actions and the Fatal state go together.
                    assert_eq!(
                        matches!(action, Action::Fatal(_)),
                        matches!(m.state(), MemberState::Fatal(_)) && !start.is_terminal()
                    );
                }
            }
            for event in [
                Event::JoinSent,
                join_ok("m", 1),
                sync_ok(),
                Event::HeartbeatOk,
                Event::CommitOk,
                Event::OffsetFetchOk,
                Event::CoordinatorFound,
                Event::CoordinatorLost,
                Event::RejoinRequested,
                Event::RevocationDone,
                Event::LeaveRequested,
                Event::LeaveGroupDone,
            ] {
                let _ = start.clone().handle(event);
            }
        }
    }
}
