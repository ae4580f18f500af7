//! Version negotiation: the requests a connection knows ([`KnownRequest`],
//! with the versions we send) and `ApiVersions`, which picks for each the
//! highest version both sides support.

use kafka_protocol::{
    messages::{
        AlterPartitionReassignmentsRequest, ApiKey, ApiVersionsRequest, ApiVersionsResponse,
        ConsumerGroupHeartbeatRequest, CreatePartitionsRequest, CreateTopicsRequest,
        DescribeConfigsRequest, ElectLeadersRequest, FindCoordinatorRequest, HeartbeatRequest,
        IncrementalAlterConfigsRequest, JoinGroupRequest, LeaveGroupRequest,
        ListPartitionReassignmentsRequest, MetadataRequest, OffsetCommitRequest,
        OffsetFetchRequest, SaslAuthenticateRequest, SaslHandshakeRequest, SyncGroupRequest,
    },
    protocol::{Message, Request, StrBytes, VersionRange},
    ResponseError,
};
use tokio::time::Instant;
use tracing::debug;

use super::{BrokerConnection, ConnectionError};
use crate::error::KafkaCode;

/// Sent in `ApiVersions` v3+ (brokers show it in their client metrics).
const CLIENT_SOFTWARE_NAME: &str = "kind-kafka-rs";

/// A request this connection can negotiate. Sealed: implemented for the
/// group-protocol APIs, the admin APIs of [`crate::admin`] and the
/// connection's own handshake APIs.
pub trait KnownRequest: Request + sealed::Sealed {
    /// The API's name, for errors and logs.
    const NAME: &'static str;
    /// The oldest version we can send.
    const MIN_VERSION: i16;
    /// The newest version we send: `kafka-protocol`'s newest unless a newer
    /// version changes semantics we do not implement.
    const MAX_VERSION: i16;

    /// The versions we can send.
    fn our_versions() -> VersionRange {
        VersionRange {
            min: Self::MIN_VERSION,
            max: Self::MAX_VERSION,
        }
    }
}

mod sealed {
    /// Implemented for the requests below only.
    pub trait Sealed {}
}

macro_rules! known_request {
    ($req:ty, $name:literal, $min:expr, $max:expr) => {
        impl KnownRequest for $req {
            const NAME: &'static str = $name;
            const MIN_VERSION: i16 = $min;
            const MAX_VERSION: i16 = $max;
        }
        impl sealed::Sealed for $req {}
    };
}

known_request!(
    ApiVersionsRequest,
    "ApiVersions",
    ApiVersionsRequest::VERSIONS.min,
    ApiVersionsRequest::VERSIONS.max
);
// v0 sends raw SASL tokens without Kafka framing afterwards; every broker
// since 1.0 supports v1.
known_request!(
    SaslHandshakeRequest,
    "SaslHandshake",
    1,
    SaslHandshakeRequest::VERSIONS.max
);
known_request!(
    SaslAuthenticateRequest,
    "SaslAuthenticate",
    SaslAuthenticateRequest::VERSIONS.min,
    SaslAuthenticateRequest::VERSIONS.max
);
known_request!(
    FindCoordinatorRequest,
    "FindCoordinator",
    FindCoordinatorRequest::VERSIONS.min,
    FindCoordinatorRequest::VERSIONS.max
);
known_request!(
    JoinGroupRequest,
    "JoinGroup",
    JoinGroupRequest::VERSIONS.min,
    JoinGroupRequest::VERSIONS.max
);
known_request!(
    SyncGroupRequest,
    "SyncGroup",
    SyncGroupRequest::VERSIONS.min,
    SyncGroupRequest::VERSIONS.max
);
known_request!(
    HeartbeatRequest,
    "Heartbeat",
    HeartbeatRequest::VERSIONS.min,
    HeartbeatRequest::VERSIONS.max
);
known_request!(
    LeaveGroupRequest,
    "LeaveGroup",
    LeaveGroupRequest::VERSIONS.min,
    LeaveGroupRequest::VERSIONS.max
);
// v10 identifies topics by id instead of name; we commit by name.
known_request!(
    OffsetCommitRequest,
    "OffsetCommit",
    OffsetCommitRequest::VERSIONS.min,
    9
);
// Same for v10 of OffsetFetch.
known_request!(
    OffsetFetchRequest,
    "OffsetFetch",
    OffsetFetchRequest::VERSIONS.min,
    9
);
// KIP-848's member loop: v0 has the coordinator name the member, v1 has
// the member name itself (a UUID it generates).
known_request!(
    ConsumerGroupHeartbeatRequest,
    "ConsumerGroupHeartbeat",
    ConsumerGroupHeartbeatRequest::VERSIONS.min,
    ConsumerGroupHeartbeatRequest::VERSIONS.max
);
// v10 is the first with topic ids, which KIP-848 assignments are made of.
known_request!(
    MetadataRequest,
    "Metadata",
    10,
    MetadataRequest::VERSIONS.max
);

// The admin requests of `crate::admin` (the canary's topic placement).
// CreateTopics v2 is the oldest a 4.x broker accepts.
known_request!(
    CreateTopicsRequest,
    "CreateTopics",
    CreateTopicsRequest::VERSIONS.min,
    CreateTopicsRequest::VERSIONS.max
);
known_request!(
    CreatePartitionsRequest,
    "CreatePartitions",
    CreatePartitionsRequest::VERSIONS.min,
    CreatePartitionsRequest::VERSIONS.max
);
// KIP-455. v1 adds `allow_replication_factor_change` (KIP-860), which
// defaults to true, what the canary needs when brokers come and go.
known_request!(
    AlterPartitionReassignmentsRequest,
    "AlterPartitionReassignments",
    AlterPartitionReassignmentsRequest::VERSIONS.min,
    AlterPartitionReassignmentsRequest::VERSIONS.max
);
known_request!(
    ListPartitionReassignmentsRequest,
    "ListPartitionReassignments",
    ListPartitionReassignmentsRequest::VERSIONS.min,
    ListPartitionReassignmentsRequest::VERSIONS.max
);
// v1 is the first with an election type (KIP-460); v0 is preferred only.
known_request!(
    ElectLeadersRequest,
    "ElectLeaders",
    1,
    ElectLeadersRequest::VERSIONS.max
);
known_request!(
    DescribeConfigsRequest,
    "DescribeConfigs",
    DescribeConfigsRequest::VERSIONS.min,
    DescribeConfigsRequest::VERSIONS.max
);
// KIP-339: one config changed, the others left as they are (AlterConfigs
// would reset every config it does not name).
known_request!(
    IncrementalAlterConfigsRequest,
    "IncrementalAlterConfigs",
    IncrementalAlterConfigsRequest::VERSIONS.min,
    IncrementalAlterConfigsRequest::VERSIONS.max
);

impl BrokerConnection {
    #[cfg(any(test, feature = "unstable-fuzzing"))]
    /// The versions the broker advertised for an API, if it offers it.
    pub fn broker_versions(&self, api: ApiKey) -> Option<VersionRange> {
        self.broker_versions.get(&(api as i16)).copied()
    }

    /// The version [`send`](Self::send) uses for `R`: the highest both sides
    /// support.
    pub fn version<R: KnownRequest>(&self) -> Result<i16, ConnectionError> {
        let ours = R::our_versions();
        let theirs = self.broker_versions.get(&R::KEY).copied();
        match theirs.map(|t| ours.intersect(&t)) {
            Some(both) if !both.is_empty() => Ok(both.max),
            _ => Err(ConnectionError::UnsupportedVersion {
                broker: self.broker.clone(),
                api: R::NAME,
                ours,
                theirs,
            }),
        }
    }

    /// `ApiVersions`: records what the broker supports.
    pub(super) async fn negotiate_versions(
        &mut self,
        deadline: Instant,
    ) -> Result<(), ConnectionError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_SOFTWARE_NAME))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = ApiVersionsRequest::MAX_VERSION;
        // At most two tries: ours, then the broker's newest.
        for _ in 0..2 {
            let (body, body_version) = self
                .exchange(&request, version, deadline, self.request_timeout)
                .await?;
            let response: ApiVersionsResponse =
                self.decode::<ApiVersionsRequest>(body, body_version)?;
            self.broker_versions = response
                .api_keys
                .iter()
                .map(|k| {
                    (
                        k.api_key,
                        VersionRange {
                            min: k.min_version,
                            max: k.max_version,
                        },
                    )
                })
                .collect();
            let code = KafkaCode::from_wire(response.error_code);
            match code.error() {
                None => {
                    debug!(broker = %self.broker, version, "ApiVersions negotiated");
                    return Ok(());
                }
                Some(ResponseError::UnsupportedVersion) => {
                    let theirs = self
                        .broker_versions
                        .get(&(ApiKey::ApiVersions as i16))
                        .copied();
                    match theirs.map(|t| ApiVersionsRequest::our_versions().intersect(&t)) {
                        Some(both) if !both.is_empty() && both.max < version => version = both.max,
                        _ => {
                            return Err(ConnectionError::UnsupportedVersion {
                                broker: self.broker.clone(),
                                api: ApiVersionsRequest::NAME,
                                ours: ApiVersionsRequest::our_versions(),
                                theirs,
                            })
                        }
                    }
                }
                Some(_) => {
                    return Err(ConnectionError::Api {
                        broker: self.broker.clone(),
                        api: ApiVersionsRequest::NAME,
                        code,
                    })
                }
            }
        }
        Err(ConnectionError::UnsupportedVersion {
            broker: self.broker.clone(),
            api: ApiVersionsRequest::NAME,
            ours: ApiVersionsRequest::our_versions(),
            theirs: self
                .broker_versions
                .get(&(ApiKey::ApiVersions as i16))
                .copied(),
        })
    }
}
