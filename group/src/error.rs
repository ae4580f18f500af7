//! Errors of the classic consumer-group protocol.
//!
//! Every [`GroupError`] renders as one line that names the group, the request
//! that failed and the Kafka error (as Java spells it, e.g.
//! `FENCED_INSTANCE_ID (82)`), followed by what it means for an operator.
//! Which Kafka error becomes which [`GroupError`] is decided in
//! [`crate::state::classify`].

use std::fmt;

use kafka_protocol::ResponseError;

use crate::payload::ProtocolError;

/// The group-related requests a classic consumer sends to its coordinator.
///
/// Error codes mean different things depending on the request they answer
/// (e.g. `REBALANCE_IN_PROGRESS` is routine for a heartbeat but fails a
/// commit), so classification is always per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupApi {
    /// `FindCoordinator` (key type group).
    FindCoordinator,
    /// `JoinGroup`.
    JoinGroup,
    /// `SyncGroup`.
    SyncGroup,
    /// `Heartbeat`.
    Heartbeat,
    /// `OffsetCommit`.
    OffsetCommit,
    /// `OffsetFetch`.
    OffsetFetch,
    /// `LeaveGroup`.
    LeaveGroup,
    /// `ConsumerGroupHeartbeat` (KIP-848).
    ConsumerGroupHeartbeat,
    /// `Metadata` (topic ids of a KIP-848 assignment).
    Metadata,
}

impl fmt::Display for GroupApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FindCoordinator => "FindCoordinator",
            Self::JoinGroup => "JoinGroup",
            Self::SyncGroup => "SyncGroup",
            Self::Heartbeat => "Heartbeat",
            Self::OffsetCommit => "OffsetCommit",
            Self::OffsetFetch => "OffsetFetch",
            Self::LeaveGroup => "LeaveGroup",
            Self::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
            Self::Metadata => "Metadata",
        })
    }
}

/// A Kafka error code as a response carries it — `NONE` or an error, codes
/// this version of `kafka-protocol` does not know included — displayed the
/// way Kafka's documentation and Java logs spell it: `NOT_COORDINATOR (16)`.
///
/// The crate's one type for error codes: a response's `error_code` becomes
/// one where it is decoded ([`KafkaCode::from_wire`]) and stays one through
/// the state machine's events and [`classify`](crate::state::classify) to
/// the error and the log line. Matching is on [`ResponseError`]
/// ([`KafkaCode::error`], [`KafkaCode::is`]); the number comes back only to
/// be written ([`KafkaCode::code`], and in [`Display`](fmt::Display)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaCode(Option<ResponseError>);

impl KafkaCode {
    /// No error (`0`).
    pub const NONE: Self = Self(None);

    /// The code of `error`.
    pub const fn of(error: ResponseError) -> Self {
        Self(Some(error))
    }

    /// The code a response carries; an unknown one is kept as
    /// [`ResponseError::Unknown`].
    pub const fn from_wire(code: i16) -> Self {
        Self(ResponseError::try_from_code(code))
    }

    /// The number, for the wire, logs and metric labels.
    pub const fn code(self) -> i16 {
        match self.0 {
            Some(error) => error.code(),
            None => 0,
        }
    }

    /// The error; `None` for `NONE` (no error).
    pub const fn error(self) -> Option<ResponseError> {
        self.0
    }

    /// Whether this is `NONE` (no error).
    pub const fn is_none(self) -> bool {
        self.0.is_none()
    }

    /// Whether this is `error`.
    pub fn is(self, error: ResponseError) -> bool {
        self.0 == Some(error)
    }

    /// NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or
    /// COORDINATOR_LOAD_IN_PROGRESS: the group's coordinator moved or is
    /// still loading, so the same request may succeed once it is found again.
    pub fn is_coordinator_moving(self) -> bool {
        matches!(
            self.0,
            Some(
                ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::CoordinatorLoadInProgress
            )
        )
    }

    /// The Java constant name, e.g. `GROUP_AUTHORIZATION_FAILED`; `NONE` for 0.
    pub fn name(self) -> String {
        match self.0 {
            None => "NONE".to_owned(),
            Some(ResponseError::Unknown(_)) => "UNKNOWN_ERROR_CODE".to_owned(),
            // `ResponseError`'s Debug is the CamelCase variant name, which maps
            // one-to-one onto Java's SCREAMING_SNAKE constant names.
            Some(known) => screaming_snake(&format!("{known:?}")),
        }
    }
}

impl std::hash::Hash for KafkaCode {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.code().hash(state);
    }
}

impl From<ResponseError> for KafkaCode {
    fn from(error: ResponseError) -> Self {
        Self::of(error)
    }
}

impl fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// `FencedInstanceId` → `FENCED_INSTANCE_ID`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Why the consumer cannot (or must not) carry on with the group, or why a
/// single group request failed for good.
///
/// Which of these stop the consumer ([`Action::Fatal`]) and which only fail
/// one request ([`Action::Fail`]) is decided by
/// [`classify`](crate::state::classify), not by the variant.
///
/// [`Action::Fatal`]: crate::state::Action::Fatal
/// [`Action::Fail`]: crate::state::Action::Fail
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// Another consumer registered with the same `group.instance.id`.
    #[error(
        "consumer group '{group}': {api} failed with FENCED_INSTANCE_ID (82): another consumer \
         with the same group.instance.id has joined; this instance has been fenced"
    )]
    FencedInstanceId {
        /// The group id.
        group: String,
        /// The request that was answered with the error.
        api: GroupApi,
    },

    /// The principal may not use the group (missing READ ACL on the group).
    #[error(
        "consumer group '{group}': {api} failed with GROUP_AUTHORIZATION_FAILED (30): this \
         principal is not authorized to use the group (needs READ on the group)"
    )]
    GroupAuthorizationFailed {
        /// The group id.
        group: String,
        /// The request that was answered with the error.
        api: GroupApi,
    },

    /// The group already has the broker's `group.max.size` members.
    #[error(
        "consumer group '{group}': JoinGroup failed with GROUP_MAX_SIZE_REACHED (81): the group \
         already has the broker's group.max.size members"
    )]
    GroupMaxSizeReached {
        /// The group id.
        group: String,
    },

    /// The group's members disagree on the protocol type or name.
    #[error(
        "consumer group '{group}': {api} failed with INCONSISTENT_GROUP_PROTOCOL (23): {detail}"
    )]
    InconsistentGroupProtocol {
        /// The group id.
        group: String,
        /// The request that was answered with the error.
        api: GroupApi,
        /// What was inconsistent.
        detail: String,
    },

    /// `session.timeout.ms` is outside the broker's allowed range.
    #[error(
        "consumer group '{group}': JoinGroup failed with INVALID_SESSION_TIMEOUT (26): \
         session.timeout.ms is outside the broker's \
         group.min.session.timeout.ms..group.max.session.timeout.ms"
    )]
    InvalidSessionTimeout {
        /// The group id.
        group: String,
    },

    /// The group id is empty or otherwise rejected by the broker.
    #[error("consumer group '{group}': {api} failed with INVALID_GROUP_ID (24): the group id is invalid")]
    InvalidGroupId {
        /// The group id.
        group: String,
        /// The request that was answered with the error.
        api: GroupApi,
    },

    /// The broker does not support the request version we sent.
    #[error(
        "consumer group '{group}': {api} failed with UNSUPPORTED_VERSION (35): the broker does \
         not support this request version (static membership needs Kafka 2.3 or later)"
    )]
    UnsupportedVersion {
        /// The group id.
        group: String,
        /// The request that was answered with the error.
        api: GroupApi,
    },

    /// The consumer protocol was asked for, and the coordinator does not
    /// offer it (Java: `UnsupportedVersionException`).
    #[error(
        "consumer group '{group}': the consumer group protocol (KIP-848) was asked for \
         (CONSUMER_GROUP_PROTOCOL=consumer), and the group coordinator does not offer \
         ConsumerGroupHeartbeat (Kafka before 4.0, or group.version=0 on the brokers): set \
         CONSUMER_GROUP_PROTOCOL=classic, or leave it unset to use what the broker offers"
    )]
    ConsumerProtocolUnsupported {
        /// The group id.
        group: String,
    },

    /// The commit can never succeed: the member left the group or its
    /// generation is stale, so its partitions may already belong to another
    /// member (Java's `CommitFailedException`).
    #[error(
        "consumer group '{group}': offset commit failed with {code}: this member is no longer \
         part of the group's current generation and its partitions may have been reassigned"
    )]
    CommitFailed {
        /// The group id.
        group: String,
        /// The Kafka error that failed the commit.
        code: KafkaCode,
    },

    /// The request cannot complete while the group is rebalancing.
    #[error(
        "consumer group '{group}': {api} failed with {code}: the group is rebalancing; finish \
         the rebalance and retry"
    )]
    RebalanceInProgress {
        /// The group id.
        group: String,
        /// The request that was answered with the error.
        api: GroupApi,
        /// The Kafka error (`REBALANCE_IN_PROGRESS`, or a stale-generation
        /// error Java reports as a rebalance in progress).
        code: KafkaCode,
    },

    /// The principal may not read a topic it commits or fetches offsets for.
    #[error(
        "consumer group '{group}': {api} failed with TOPIC_AUTHORIZATION_FAILED (29): this \
         principal is not authorized for one of the topics"
    )]
    TopicAuthorizationFailed {
        /// The group id.
        group: String,
        /// The request that was answered with the error.
        api: GroupApi,
    },

    /// The broker refused the commit itself (metadata too large, bad size).
    #[error("consumer group '{group}': offset commit rejected with {code}")]
    OffsetCommitRejected {
        /// The group id.
        group: String,
        /// `OFFSET_METADATA_TOO_LARGE` or `INVALID_COMMIT_OFFSET_SIZE`.
        code: KafkaCode,
    },

    /// OffsetFetch named a topic or partition the broker does not know.
    #[error("consumer group '{group}': OffsetFetch failed with {code}: a topic or partition does not exist")]
    UnknownTopicOrPartition {
        /// The group id.
        group: String,
        /// The Kafka error.
        code: KafkaCode,
    },

    /// An error Java's classic consumer does not expect for this request.
    #[error("consumer group '{group}': {api} failed with unexpected error {code}")]
    Unexpected {
        /// The group id.
        group: String,
        /// The request that was answered with the error.
        api: GroupApi,
        /// The Kafka error.
        code: KafkaCode,
    },

    /// The coordinator refused a KIP-848 member for good
    /// (`UNRELEASED_INSTANCE_ID`, `GROUP_MAX_SIZE_REACHED`, authorization…).
    #[error(
        "consumer group '{group}': ConsumerGroupHeartbeat failed with {code}: {meaning}{}",
        message.as_deref().map(|m| format!(" (broker: {m})")).unwrap_or_default()
    )]
    MemberRejected {
        /// The group id.
        group: String,
        /// The Kafka error.
        code: KafkaCode,
        /// What it means for an operator.
        meaning: &'static str,
        /// The coordinator's explanation.
        message: Option<String>,
    },

    /// The coordinator sent an embedded consumer-protocol payload we cannot decode.
    #[error("consumer group '{group}': {api} carried an undecodable payload: {source}")]
    Protocol {
        /// The group id.
        group: String,
        /// The response that carried the payload.
        api: GroupApi,
        /// What was wrong with it.
        #[source]
        source: ProtocolError,
    },
}

impl GroupError {
    /// The group this error is about.
    pub fn group(&self) -> &str {
        match self {
            Self::FencedInstanceId { group, .. }
            | Self::GroupAuthorizationFailed { group, .. }
            | Self::GroupMaxSizeReached { group }
            | Self::InconsistentGroupProtocol { group, .. }
            | Self::InvalidSessionTimeout { group }
            | Self::InvalidGroupId { group, .. }
            | Self::UnsupportedVersion { group, .. }
            | Self::ConsumerProtocolUnsupported { group }
            | Self::CommitFailed { group, .. }
            | Self::RebalanceInProgress { group, .. }
            | Self::TopicAuthorizationFailed { group, .. }
            | Self::OffsetCommitRejected { group, .. }
            | Self::UnknownTopicOrPartition { group, .. }
            | Self::Unexpected { group, .. }
            | Self::MemberRejected { group, .. }
            | Self::Protocol { group, .. } => group,
        }
    }
}

#[cfg(test)]
mod tests;
