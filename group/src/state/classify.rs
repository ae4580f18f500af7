//! What Java's classic consumer does with each Kafka error code of each
//! group request ([`classify`]), and what the caller is to do next
//! ([`Action`]).

use std::time::Duration;

use kafka_protocol::ResponseError;

use crate::error::{GroupApi, GroupError, KafkaCode};

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
/// `code`. [`KafkaCode::NONE`] is [`Action::Continue`].
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
pub fn classify(api: GroupApi, code: KafkaCode, ctx: &ErrorContext<'_>) -> Action {
    use ResponseError as E;

    let Some(error) = code.error() else {
        return Action::Continue;
    };
    let group = || ctx.group_id.to_owned();
    let kafka = code;
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

        // KIP-848's requests: the consumer-protocol session judges their
        // codes itself (`session::consumer`); a classic member never sends them.
        GroupApi::ConsumerGroupHeartbeat | GroupApi::Metadata => fatal(unexpected()),
    }
}

/// Pick the error that decides an OffsetCommit response from its per-partition
/// codes, the way Java walks them: the first error other than
/// `TOPIC_AUTHORIZATION_FAILED` wins; otherwise `TOPIC_AUTHORIZATION_FAILED`
/// if any partition had it; otherwise `None` (success).
pub fn first_commit_error(codes: impl IntoIterator<Item = KafkaCode>) -> Option<KafkaCode> {
    let topic_auth = KafkaCode::of(ResponseError::TopicAuthorizationFailed);
    let mut saw_topic_auth = false;
    for code in codes {
        if code == topic_auth {
            saw_topic_auth = true;
        } else if !code.is_none() {
            return Some(code);
        }
    }
    saw_topic_auth.then_some(topic_auth)
}

#[cfg(any(test, feature = "unstable-fuzzing"))]
/// The error a caller of a failed commit should see when [`classify`]
/// answered an OffsetCommit error with [`Action::Rejoin`]:
/// `REBALANCE_IN_PROGRESS` → [`GroupError::RebalanceInProgress`], anything
/// else (`UNKNOWN_MEMBER_ID`, `ILLEGAL_GENERATION`) → Java's
/// `CommitFailedException`, [`GroupError::CommitFailed`].
pub fn commit_failure(group_id: &str, code: KafkaCode) -> GroupError {
    if code.is(ResponseError::RebalanceInProgress) {
        GroupError::RebalanceInProgress {
            group: group_id.to_owned(),
            api: GroupApi::OffsetCommit,
            code,
        }
    } else {
        GroupError::CommitFailed {
            group: group_id.to_owned(),
            code,
        }
    }
}
