//! The group coordinator of one consumer group: discovery and typed requests.
//!
//! A [`CoordinatorClient`] finds its group's coordinator with
//! `FindCoordinator` (asking the bootstrap brokers in turn), connects to it
//! and offers one typed method per group API: [`join_group`], [`sync_group`],
//! [`heartbeat`], [`leave_group`], [`offset_fetch`], [`offset_commit`].
//!
//! The methods do not judge Kafka error codes: every result carries the raw
//! code(s) as [`KafkaCode`] for the state machine
//! ([`crate::group::state`]) to classify, because the same code means
//! different things for different requests. Two things are handled here,
//! because they are about the connection rather than the group:
//!
//! - `NOT_COORDINATOR` and `COORDINATOR_NOT_AVAILABLE` in any answer mark the
//!   coordinator unknown (the code is still returned);
//! - a request that fails on the connection (I/O, timeout, garbage) drops
//!   the connection and marks the coordinator unknown.
//!
//! Either way the next call rediscovers the coordinator, like Java's
//! `markCoordinatorUnknown`.
//!
//! # One connection per task
//!
//! A client holds one connection and sends one request at a time. JoinGroup
//! can block for the whole rebalance, so the heartbeat must not share that
//! connection: [`Clone`] gives a client for the same group that shares the
//! settings and the known coordinator address but opens **its own**
//! connection on first use. Give the heartbeat task a clone, as Java's
//! heartbeat thread effectively has its own in-flight slot.
//!
//! [`join_group`]: CoordinatorClient::join_group
//! [`sync_group`]: CoordinatorClient::sync_group
//! [`heartbeat`]: CoordinatorClient::heartbeat
//! [`leave_group`]: CoordinatorClient::leave_group
//! [`offset_fetch`]: CoordinatorClient::offset_fetch
//! [`offset_commit`]: CoordinatorClient::offset_commit

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        find_coordinator_response::FindCoordinatorResponse,
        join_group_request::JoinGroupRequestProtocol, leave_group_request::MemberIdentity,
        offset_commit_request::OffsetCommitRequestPartition,
        offset_commit_request::OffsetCommitRequestTopic,
        offset_fetch_request::OffsetFetchRequestGroup,
        offset_fetch_request::OffsetFetchRequestTopic,
        offset_fetch_request::OffsetFetchRequestTopics,
        sync_group_request::SyncGroupRequestAssignment, FindCoordinatorRequest, GroupId,
        HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
        OffsetFetchRequest, SyncGroupRequest, TopicName,
    },
    protocol::StrBytes,
};
use tracing::debug;

use crate::{
    group::{
        connection::{
            BrokerConnection, ConnectionConfig, ConnectionError, KnownRequest, SendOptions,
        },
        error::{GroupApi, KafkaCode},
        protocol::{TopicPartitions, PROTOCOL_TYPE},
    },
    kafka::KafkaSettings,
};

/// `COORDINATOR_LOAD_IN_PROGRESS`.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
/// `COORDINATOR_NOT_AVAILABLE`.
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// `NOT_COORDINATOR`.
const NOT_COORDINATOR: i16 = 16;

/// JoinGroup may wait for the whole rebalance; Java gives it the rebalance
/// timeout plus this much (`JOIN_GROUP_TIMEOUT_LAPSE`).
const JOIN_GROUP_TIMEOUT_LAPSE: Duration = Duration::from_secs(5);

/// The broker acting as coordinator of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    /// Its node id.
    pub node_id: i32,
    /// Its advertised host (for the listener the question was asked on).
    pub host: String,
    /// Its advertised port.
    pub port: u16,
}

impl Coordinator {
    /// `host:port`, with brackets around an IPv6 host.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (node {})", self.address(), self.node_id)
    }
}

/// Why a coordinator request could not be made or answered. Kafka error
/// codes *in* an answer are not errors here: they are returned for the state
/// machine to classify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The bootstrap list is empty.
    #[error("consumer group '{group}': no bootstrap broker to ask for the coordinator")]
    NoBootstrap {
        /// The group id.
        group: String,
    },

    /// No bootstrap broker could be asked `FindCoordinator`.
    #[error("consumer group '{group}': no bootstrap broker ({bootstrap}) answered FindCoordinator; last error: {source}")]
    Discovery {
        /// The group id.
        group: String,
        /// The bootstrap list.
        bootstrap: String,
        /// The last broker's error.
        #[source]
        source: Box<ConnectionError>,
    },

    /// `FindCoordinator` answered with an error code.
    #[error(
        "consumer group '{group}': FindCoordinator via {broker} failed with {code}{}",
        message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
    )]
    FindCoordinator {
        /// The group id.
        group: String,
        /// The broker asked.
        broker: String,
        /// The error code (e.g. `COORDINATOR_NOT_AVAILABLE (15)` while the
        /// offsets topic is being created).
        code: KafkaCode,
        /// The broker's explanation.
        message: Option<String>,
    },

    /// `FindCoordinator` named an unusable address or not our group.
    #[error(
        "consumer group '{group}': FindCoordinator via {broker} gave an unusable answer: {detail}"
    )]
    InvalidCoordinator {
        /// The group id.
        group: String,
        /// The broker asked.
        broker: String,
        /// What is wrong with it.
        detail: String,
    },

    /// Sending a request or reading its answer failed. If the connection
    /// broke, it was dropped and the coordinator marked unknown: the next
    /// call rediscovers it.
    #[error("consumer group '{group}': {api} to {broker} failed: {source}")]
    Request {
        /// The group id.
        group: String,
        /// The request.
        api: GroupApi,
        /// The broker it went to.
        broker: String,
        /// What went wrong.
        #[source]
        source: Box<ConnectionError>,
    },
}

impl CoordinatorError {
    /// Whether retrying after a backoff may succeed: the network, a broker
    /// restarting, a coordinator moving or still loading. Authentication,
    /// TLS, settings and authorization failures are not retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::NoBootstrap { .. } | Self::InvalidCoordinator { .. } => false,
            Self::Discovery { source, .. } | Self::Request { source, .. } => source.is_retriable(),
            Self::FindCoordinator { code, .. } => {
                matches!(
                    code.0,
                    COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
                )
            }
        }
    }

    /// The Kafka error code of a failed `FindCoordinator`, if that is what failed.
    pub fn kafka_code(&self) -> Option<KafkaCode> {
        match self {
            Self::FindCoordinator { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// One assignment strategy offered in JoinGroup, with the member's
/// subscription encoded for it ([`crate::group::protocol::Subscription::encode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinProtocol {
    /// The assignor's name (`range`, `roundrobin`, …).
    pub name: String,
    /// The encoded subscription.
    pub metadata: Bytes,
}

/// What to send in JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupParams {
    /// Empty on the first join; then the id the coordinator gave us
    /// (including the one that comes with `MEMBER_ID_REQUIRED`).
    pub member_id: String,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms` in Java: how long the coordinator waits for
    /// members to rejoin. JoinGroup's own timeout is this plus 5 s.
    pub rebalance_timeout: Duration,
    /// The assignors offered, preferred first.
    pub protocols: Vec<JoinProtocol>,
    /// Why we (re)join, shown in broker logs (JoinGroup v8+; dropped before).
    pub reason: Option<String>,
}

/// A member of the group as the leader sees it in JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Its member id.
    pub member_id: String,
    /// Its `group.instance.id`, for static members.
    pub group_instance_id: Option<String>,
    /// Its subscription for the chosen protocol.
    pub metadata: Bytes,
}

/// The JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResult {
    /// The error code; `MEMBER_ID_REQUIRED (79)` comes with
    /// [`member_id`](Self::member_id) set: rejoin with it.
    pub error: KafkaCode,
    /// The new generation.
    pub generation_id: i32,
    /// The protocol type (v7+), `consumer`.
    pub protocol_type: Option<String>,
    /// The chosen assignor.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// Our member id.
    pub member_id: String,
    /// v9+: the leader must not compute an assignment (the broker does).
    pub skip_assignment: bool,
    /// All members with their subscriptions; only the leader gets them.
    pub members: Vec<GroupMember>,
}

impl JoinGroupResult {
    /// Whether we lead this generation (and must send the assignment).
    pub fn is_leader(&self) -> bool {
        !self.member_id.is_empty() && self.leader == self.member_id
    }
}

/// The SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResult {
    /// The error code.
    pub error: KafkaCode,
    /// The chosen assignor (v5+).
    pub protocol_name: Option<String>,
    /// Our encoded assignment ([`crate::group::protocol::Assignment::decode`]).
    pub assignment: Bytes,
}

/// A committed offset as OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The offset; `-1` when the group has committed none.
    pub offset: i64,
    /// The leader epoch committed with it, when known.
    pub leader_epoch: Option<i32>,
    /// The metadata committed with it.
    pub metadata: Option<String>,
    /// The partition's error code.
    pub error: KafkaCode,
}

/// The OffsetFetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchResult {
    /// The group-level error code (v2+; `NONE` before).
    pub error: KafkaCode,
    /// Per (topic, partition).
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl Default for OffsetFetchResult {
    fn default() -> Self {
        Self {
            error: KafkaCode(0),
            offsets: BTreeMap::new(),
        }
    }
}

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetToCommit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record (v6+), when known.
    pub leader_epoch: Option<i32>,
    /// Free-form metadata.
    pub metadata: Option<String>,
}

/// The classic group protocol's requests for one group, to its coordinator.
///
/// Cloning is cheap and gives a client with its **own** connection (opened
/// on first use) to the same coordinator: see the module docs.
#[derive(Debug)]
pub struct CoordinatorClient {
    group_id: String,
    group_instance_id: Option<String>,
    config: ConnectionConfig,
    bootstrap: Arc<[String]>,
    coordinator: Option<Coordinator>,
    conn: Option<BrokerConnection>,
    /// Where the next discovery starts, so a dead first broker is not
    /// always asked first.
    next_bootstrap: usize,
}

impl Clone for CoordinatorClient {
    /// A client for the same group and coordinator, without a connection.
    fn clone(&self) -> Self {
        Self {
            group_id: self.group_id.clone(),
            group_instance_id: self.group_instance_id.clone(),
            config: self.config.clone(),
            bootstrap: Arc::clone(&self.bootstrap),
            coordinator: self.coordinator.clone(),
            conn: None,
            next_bootstrap: self.next_bootstrap,
        }
    }
}

fn millis_i32(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// `Some` for a non-empty string: Kafka sends "" and null interchangeably
/// for "no message".
fn non_empty(s: Option<StrBytes>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(|s| s.to_string())
}

impl CoordinatorClient {
    /// A client for `group_id`. `group_instance_id` turns on static
    /// membership (sent with every request that has the field).
    pub fn new(
        config: ConnectionConfig,
        bootstrap: Vec<String>,
        group_id: impl Into<String>,
        group_instance_id: Option<String>,
    ) -> Self {
        Self {
            group_id: group_id.into(),
            group_instance_id,
            config,
            bootstrap: bootstrap.into(),
            coordinator: None,
            conn: None,
            next_bootstrap: 0,
        }
    }

    /// A client from the shared Kafka settings (builds the TLS configuration).
    pub fn from_settings(
        settings: &KafkaSettings,
        group_id: impl Into<String>,
        group_instance_id: Option<String>,
    ) -> Result<Self, ConnectionError> {
        Ok(Self::new(
            ConnectionConfig::from_settings(settings)?,
            settings.bootstrap.clone(),
            group_id,
            group_instance_id,
        ))
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The `group.instance.id`, for static members.
    pub fn group_instance_id(&self) -> Option<&str> {
        self.group_instance_id.as_deref()
    }

    /// The coordinator, when known.
    pub fn coordinator(&self) -> Option<&Coordinator> {
        self.coordinator.as_ref()
    }

    /// Whether a usable connection to the coordinator is open.
    pub fn is_connected(&self) -> bool {
        self.conn.as_ref().is_some_and(BrokerConnection::is_usable)
    }

    /// Forgets the coordinator and closes the connection: the next call
    /// rediscovers. Done automatically on `NOT_COORDINATOR`,
    /// `COORDINATOR_NOT_AVAILABLE` and broken connections.
    pub fn mark_coordinator_dead(&mut self) {
        if let Some(c) = self.coordinator.take() {
            debug!(group = %self.group_id, coordinator = %c, "coordinator marked unknown");
        }
        self.conn = None;
    }

    /// Discovers the coordinator (if unknown) and connects to it (if not
    /// connected).
    pub async fn ensure_coordinator(&mut self) -> Result<Coordinator, CoordinatorError> {
        let conn = match self.conn.take() {
            Some(c) if c.is_usable() => c,
            _ => self.connect_coordinator(GroupApi::FindCoordinator).await?,
        };
        self.conn = Some(conn);
        self.coordinator
            .clone()
            .ok_or_else(|| CoordinatorError::NoBootstrap {
                group: self.group_id.clone(),
            })
    }

    /// Asks `conn`'s broker for `group_id`'s coordinator, at `version` or the
    /// negotiated one. Versions 0–3 ask for one key, 4+ for a batch of keys.
    pub async fn find_coordinator_via(
        conn: &mut BrokerConnection,
        group_id: &str,
        version: Option<i16>,
    ) -> Result<Coordinator, CoordinatorError> {
        let request_err = |broker: &str, source| CoordinatorError::Request {
            group: group_id.to_owned(),
            api: GroupApi::FindCoordinator,
            broker: broker.to_owned(),
            source: Box::new(source),
        };
        let version = match version {
            Some(v) => v,
            None => conn
                .version::<FindCoordinatorRequest>()
                .map_err(|e| request_err(conn.broker(), e))?,
        };
        let response = conn
            .send_with(
                find_coordinator_request(group_id, version),
                SendOptions::new().version(version),
            )
            .await
            .map_err(|e| request_err(conn.broker(), e))?;
        parse_find_coordinator(group_id, conn.broker(), response, version)
    }

    /// JoinGroup with protocol type `consumer`. Waits up to the rebalance
    /// timeout plus 5 s (or `request_timeout` if longer).
    pub async fn join_group(
        &mut self,
        params: &JoinGroupParams,
    ) -> Result<JoinGroupResult, CoordinatorError> {
        let timeout = (params.rebalance_timeout + JOIN_GROUP_TIMEOUT_LAPSE)
            .max(self.config.request_timeout());
        let group_id = self.group_id.clone();
        let instance = self.group_instance_id.clone();
        let (r, _) = self
            .call(GroupApi::JoinGroup, Some(timeout), |v| {
                JoinGroupRequest::default()
                    .with_group_id(GroupId(str_bytes(&group_id)))
                    .with_session_timeout_ms(millis_i32(params.session_timeout))
                    .with_rebalance_timeout_ms(if v >= 1 {
                        millis_i32(params.rebalance_timeout)
                    } else {
                        -1
                    })
                    .with_member_id(str_bytes(&params.member_id))
                    .with_group_instance_id(instance.as_deref().map(str_bytes))
                    .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
                    .with_protocols(
                        params
                            .protocols
                            .iter()
                            .map(|p| {
                                JoinGroupRequestProtocol::default()
                                    .with_name(str_bytes(&p.name))
                                    .with_metadata(p.metadata.clone())
                            })
                            .collect(),
                    )
                    .with_reason(if v >= 8 {
                        params.reason.as_deref().map(str_bytes)
                    } else {
                        None
                    })
            })
            .await?;
        self.check_code(r.error_code);
        Ok(JoinGroupResult {
            error: KafkaCode(r.error_code),
            generation_id: r.generation_id,
            protocol_type: r.protocol_type.map(|s| s.to_string()),
            protocol_name: r.protocol_name.map(|s| s.to_string()),
            leader: r.leader.to_string(),
            member_id: r.member_id.to_string(),
            skip_assignment: r.skip_assignment,
            members: r
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                    metadata: m.metadata,
                })
                .collect(),
        })
    }

    /// SyncGroup. The leader sends every member's encoded assignment
    /// (`(member_id, assignment)`); followers send none.
    pub async fn sync_group(
        &mut self,
        generation_id: i32,
        member_id: &str,
        protocol_name: &str,
        assignments: &[(String, Bytes)],
    ) -> Result<SyncGroupResult, CoordinatorError> {
        let group_id = self.group_id.clone();
        let instance = self.group_instance_id.clone();
        let (r, _) = self
            .call(GroupApi::SyncGroup, None, |v| {
                SyncGroupRequest::default()
                    .with_group_id(GroupId(str_bytes(&group_id)))
                    .with_generation_id(generation_id)
                    .with_member_id(str_bytes(member_id))
                    .with_group_instance_id(instance.as_deref().map(str_bytes))
                    // v5+ lets the broker check these against the join.
                    .with_protocol_type((v >= 5).then(|| StrBytes::from_static_str(PROTOCOL_TYPE)))
                    .with_protocol_name((v >= 5).then(|| str_bytes(protocol_name)))
                    .with_assignments(
                        assignments
                            .iter()
                            .map(|(member, assignment)| {
                                SyncGroupRequestAssignment::default()
                                    .with_member_id(str_bytes(member))
                                    .with_assignment(assignment.clone())
                            })
                            .collect(),
                    )
            })
            .await?;
        self.check_code(r.error_code);
        Ok(SyncGroupResult {
            error: KafkaCode(r.error_code),
            protocol_name: r.protocol_name.map(|s| s.to_string()),
            assignment: r.assignment,
        })
    }

    /// Heartbeat; returns the error code (`REBALANCE_IN_PROGRESS (27)` means rejoin).
    pub async fn heartbeat(
        &mut self,
        generation_id: i32,
        member_id: &str,
    ) -> Result<KafkaCode, CoordinatorError> {
        let group_id = self.group_id.clone();
        let instance = self.group_instance_id.clone();
        let (r, _) = self
            .call(GroupApi::Heartbeat, None, |_| {
                HeartbeatRequest::default()
                    .with_group_id(GroupId(str_bytes(&group_id)))
                    .with_generation_id(generation_id)
                    .with_member_id(str_bytes(member_id))
                    .with_group_instance_id(instance.as_deref().map(str_bytes))
            })
            .await?;
        self.check_code(r.error_code);
        Ok(KafkaCode(r.error_code))
    }

    /// LeaveGroup for this member; returns the group-level error code, or
    /// the member's own when the group-level one is `NONE`.
    ///
    /// Java's static members do not leave on close (their session timeout
    /// keeps their partitions through a restart); that is the caller's call.
    pub async fn leave_group(
        &mut self,
        member_id: &str,
        reason: Option<&str>,
    ) -> Result<KafkaCode, CoordinatorError> {
        let group_id = self.group_id.clone();
        let instance = self.group_instance_id.clone();
        let (r, _) = self
            .call(GroupApi::LeaveGroup, None, |v| {
                let request =
                    LeaveGroupRequest::default().with_group_id(GroupId(str_bytes(&group_id)));
                if v >= 3 {
                    request.with_members(vec![MemberIdentity::default()
                        .with_member_id(str_bytes(member_id))
                        .with_group_instance_id(instance.as_deref().map(str_bytes))
                        .with_reason(if v >= 5 { reason.map(str_bytes) } else { None })])
                } else {
                    request.with_member_id(str_bytes(member_id))
                }
            })
            .await?;
        let code = match r.error_code {
            0 => r.members.first().map_or(0, |m| m.error_code),
            code => code,
        };
        self.check_code(code);
        Ok(KafkaCode(code))
    }

    /// OffsetFetch for `partitions`: the committed offset of each (`-1` when
    /// none). Asks for stable offsets (v7+), like Java: partitions with
    /// pending transactional commits answer `UNSTABLE_OFFSET_COMMIT (88)`,
    /// which is retriable.
    pub async fn offset_fetch(
        &mut self,
        partitions: &[TopicPartitions],
    ) -> Result<OffsetFetchResult, CoordinatorError> {
        if partitions.is_empty() {
            return Ok(OffsetFetchResult::default());
        }
        let group_id = self.group_id.clone();
        let (r, version) = self
            .call(GroupApi::OffsetFetch, None, |v| {
                let request = OffsetFetchRequest::default().with_require_stable(v >= 7);
                if v >= 8 {
                    let topics = partitions
                        .iter()
                        .map(|tp| {
                            OffsetFetchRequestTopics::default()
                                .with_name(TopicName(str_bytes(&tp.topic)))
                                .with_partition_indexes(tp.partitions.clone())
                        })
                        .collect();
                    request.with_groups(vec![OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(str_bytes(&group_id)))
                        .with_topics(Some(topics))])
                } else {
                    let topics = partitions
                        .iter()
                        .map(|tp| {
                            OffsetFetchRequestTopic::default()
                                .with_name(TopicName(str_bytes(&tp.topic)))
                                .with_partition_indexes(tp.partitions.clone())
                        })
                        .collect();
                    request
                        .with_group_id(GroupId(str_bytes(&group_id)))
                        .with_topics(Some(topics))
                }
            })
            .await?;

        let mut result = OffsetFetchResult::default();
        let epoch = |e: i32| (e >= 0).then_some(e);
        if version >= 8 {
            // One group asked, one group answered; match by id all the same.
            for group in r
                .groups
                .into_iter()
                .filter(|g| g.group_id.0.as_str() == self.group_id)
            {
                result.error = KafkaCode(group.error_code);
                for topic in group.topics {
                    for p in topic.partitions {
                        result.offsets.insert(
                            (topic.name.0.to_string(), p.partition_index),
                            CommittedOffset {
                                offset: p.committed_offset,
                                leader_epoch: epoch(p.committed_leader_epoch),
                                metadata: non_empty(p.metadata),
                                error: KafkaCode(p.error_code),
                            },
                        );
                    }
                }
            }
        } else {
            result.error = KafkaCode(r.error_code);
            for topic in r.topics {
                for p in topic.partitions {
                    result.offsets.insert(
                        (topic.name.0.to_string(), p.partition_index),
                        CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: if version >= 5 {
                                epoch(p.committed_leader_epoch)
                            } else {
                                None
                            },
                            metadata: non_empty(p.metadata),
                            error: KafkaCode(p.error_code),
                        },
                    );
                }
            }
        }
        self.check_code(result.error.0);
        for o in result.offsets.values() {
            self.check_code(o.error.0);
        }
        Ok(result)
    }

    /// OffsetCommit for this member's generation (`-1` and `""` when not in
    /// a group); returns the error code of each (topic, partition).
    pub async fn offset_commit(
        &mut self,
        generation_id: i32,
        member_id: &str,
        offsets: &[OffsetToCommit],
    ) -> Result<BTreeMap<(String, i32), KafkaCode>, CoordinatorError> {
        if offsets.is_empty() {
            return Ok(BTreeMap::new());
        }
        let group_id = self.group_id.clone();
        let instance = self.group_instance_id.clone();
        let (r, _) = self
            .call(GroupApi::OffsetCommit, None, |v| {
                let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> =
                    BTreeMap::new();
                for o in offsets {
                    let partition = OffsetCommitRequestPartition::default()
                        .with_partition_index(o.partition)
                        .with_committed_offset(o.offset)
                        .with_committed_leader_epoch(if v >= 6 {
                            o.leader_epoch.unwrap_or(-1)
                        } else {
                            -1
                        })
                        .with_committed_metadata(Some(str_bytes(
                            o.metadata.as_deref().unwrap_or(""),
                        )));
                    by_topic
                        .entry(o.topic.as_str())
                        .or_default()
                        .push(partition);
                }
                OffsetCommitRequest::default()
                    .with_group_id(GroupId(str_bytes(&group_id)))
                    .with_generation_id_or_member_epoch(generation_id)
                    .with_member_id(str_bytes(member_id))
                    .with_group_instance_id(instance.as_deref().map(str_bytes))
                    .with_topics(
                        by_topic
                            .into_iter()
                            .map(|(topic, partitions)| {
                                OffsetCommitRequestTopic::default()
                                    .with_name(TopicName(str_bytes(topic)))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    )
            })
            .await?;
        let mut result = BTreeMap::new();
        for topic in r.topics {
            for p in topic.partitions {
                result.insert(
                    (topic.name.0.to_string(), p.partition_index),
                    KafkaCode(p.error_code),
                );
            }
        }
        for code in result.values() {
            self.check_code(code.0);
        }
        Ok(result)
    }

    /// Marks the coordinator unknown on the codes that say it moved.
    fn check_code(&mut self, code: i16) {
        if matches!(code, NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE) {
            self.mark_coordinator_dead();
        }
    }

    /// Sends one request to the coordinator, connecting (and discovering)
    /// first if needed; returns the response and the version used.
    async fn call<R: KnownRequest>(
        &mut self,
        api: GroupApi,
        timeout: Option<Duration>,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(R::Response, i16), CoordinatorError> {
        // Taken out while in use: if this future is dropped midway, the
        // half-used connection goes with it and the next call reconnects.
        let mut conn = match self.conn.take() {
            Some(c) if c.is_usable() => c,
            _ => self.connect_coordinator(api).await?,
        };
        let result = async {
            let version = conn.version::<R>()?;
            let mut options = SendOptions::new().version(version);
            if let Some(t) = timeout {
                options = options.timeout(t);
            }
            conn.send_with(build(version), options)
                .await
                .map(|r| (r, version))
        }
        .await;
        match result {
            Ok(r) => {
                self.conn = Some(conn);
                Ok(r)
            }
            Err(source) => {
                let broker = conn.broker().to_owned();
                if conn.is_usable() {
                    // e.g. an unsupported version: the connection is fine.
                    self.conn = Some(conn);
                } else {
                    self.mark_coordinator_dead();
                }
                Err(CoordinatorError::Request {
                    group: self.group_id.clone(),
                    api,
                    broker,
                    source: Box::new(source),
                })
            }
        }
    }

    /// Connects to the known coordinator, or discovers it first.
    async fn connect_coordinator(
        &mut self,
        api: GroupApi,
    ) -> Result<BrokerConnection, CoordinatorError> {
        let (coordinator, reuse) = match self.coordinator.clone() {
            Some(c) => (c, None),
            None => self.discover().await?,
        };
        let conn = match reuse {
            Some(conn) => conn,
            None => {
                let address = coordinator.address();
                match BrokerConnection::connect(&self.config, &address).await {
                    Ok(conn) => conn,
                    Err(source) => {
                        self.coordinator = None;
                        return Err(CoordinatorError::Request {
                            group: self.group_id.clone(),
                            api,
                            broker: address,
                            source: Box::new(source),
                        });
                    }
                }
            }
        };
        self.coordinator = Some(coordinator);
        Ok(conn)
    }

    /// Asks the bootstrap brokers in turn for the coordinator. Returns the
    /// connection too when the coordinator is the broker asked.
    async fn discover(
        &mut self,
    ) -> Result<(Coordinator, Option<BrokerConnection>), CoordinatorError> {
        let n = self.bootstrap.len();
        let mut last: Option<ConnectionError> = None;
        let start = self.next_bootstrap;
        for i in 0..n {
            let index = (start + i) % n;
            let Some(address) = self.bootstrap.get(index).cloned() else {
                continue;
            };
            // The next discovery starts after the broker asked last.
            self.next_bootstrap = (index + 1) % n;
            let mut conn = match BrokerConnection::connect(&self.config, &address).await {
                Ok(conn) => conn,
                Err(e) if e.is_retriable() => {
                    debug!(group = %self.group_id, broker = %address, error = %e, "bootstrap broker unavailable");
                    last = Some(e);
                    continue;
                }
                // TLS, SASL or settings errors: every broker will say the same.
                Err(e) => {
                    return Err(CoordinatorError::Request {
                        group: self.group_id.clone(),
                        api: GroupApi::FindCoordinator,
                        broker: address,
                        source: Box::new(e),
                    })
                }
            };
            match Self::find_coordinator_via(&mut conn, &self.group_id, None).await {
                Ok(coordinator) => {
                    debug!(group = %self.group_id, %coordinator, via = %address, "found coordinator");
                    let reuse =
                        (coordinator.address() == address && conn.is_usable()).then_some(conn);
                    return Ok((coordinator, reuse));
                }
                Err(CoordinatorError::Request { source, .. }) if source.is_retriable() => {
                    last = Some(*source);
                }
                Err(e) => return Err(e),
            }
        }
        match last {
            Some(e) => Err(CoordinatorError::Discovery {
                group: self.group_id.clone(),
                bootstrap: self.bootstrap.join(","),
                source: Box::new(e),
            }),
            None => Err(CoordinatorError::NoBootstrap {
                group: self.group_id.clone(),
            }),
        }
    }
}

/// FindCoordinator for a group key: `key` in v0–3, `coordinator_keys` in v4+.
fn find_coordinator_request(group_id: &str, version: i16) -> FindCoordinatorRequest {
    // key_type 0 = group (the default, and absent in v0).
    if version >= 4 {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![str_bytes(group_id)])
    } else {
        FindCoordinatorRequest::default().with_key(str_bytes(group_id))
    }
}

/// The coordinator from either form of the answer.
fn parse_find_coordinator(
    group_id: &str,
    broker: &str,
    response: FindCoordinatorResponse,
    version: i16,
) -> Result<Coordinator, CoordinatorError> {
    let invalid = |detail: String| CoordinatorError::InvalidCoordinator {
        group: group_id.to_owned(),
        broker: broker.to_owned(),
        detail,
    };
    let (error_code, message, node_id, host, port) = if version >= 4 {
        match response
            .coordinators
            .into_iter()
            .find(|c| c.key.as_str() == group_id)
        {
            Some(c) => (c.error_code, c.error_message, c.node_id.0, c.host, c.port),
            None => return Err(invalid("the answer does not name the group".to_owned())),
        }
    } else {
        (
            response.error_code,
            response.error_message,
            response.node_id.0,
            response.host,
            response.port,
        )
    };
    if error_code != 0 {
        return Err(CoordinatorError::FindCoordinator {
            group: group_id.to_owned(),
            broker: broker.to_owned(),
            code: KafkaCode(error_code),
            message: non_empty(message),
        });
    }
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid(format!("port {port}")))?;
    if host.is_empty() {
        return Err(invalid("empty host".to_owned()));
    }
    Ok(Coordinator {
        node_id,
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        sync::{
            atomic::{AtomicUsize, Ordering},
            Mutex,
        },
    };

    use kafka_protocol::messages::{
        find_coordinator_response::Coordinator as WireCoordinator, ApiKey, HeartbeatResponse,
    };
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::group::connection::tests::{answer, api_versions_body, encode, read_request};

    /// What the fake coordinator answers the next Heartbeat with.
    #[derive(Debug, Clone, Copy)]
    enum Reply {
        Code(i16),
        Close,
    }

    #[derive(Debug, Default)]
    struct Fake {
        replies: Mutex<VecDeque<Reply>>,
        finds: AtomicUsize,
        connections: AtomicUsize,
    }

    /// A one-broker cluster that is group `g`'s coordinator: every
    /// connection answers ApiVersions, FindCoordinator (naming itself) and
    /// Heartbeats from the shared `replies`.
    async fn fake_coordinator(replies: Vec<Reply>) -> (String, Arc<Fake>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let fake = Arc::new(Fake {
            replies: Mutex::new(replies.into()),
            ..Fake::default()
        });
        let shared = Arc::clone(&fake);
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(sock, Arc::clone(&shared), addr.port()));
            }
        });
        (addr.to_string(), fake)
    }

    async fn serve(mut sock: TcpStream, fake: Arc<Fake>, port: u16) {
        while let Some(req) = read_request(&mut sock).await {
            let body = match ApiKey::try_from(req.key) {
                Ok(ApiKey::ApiVersions) => api_versions_body(req.version, &[]),
                Ok(ApiKey::FindCoordinator) => {
                    fake.finds.fetch_add(1, Ordering::SeqCst);
                    let host = StrBytes::from_static_str("127.0.0.1");
                    let response = if req.version >= 4 {
                        FindCoordinatorResponse::default().with_coordinators(vec![
                            WireCoordinator::default()
                                .with_key(StrBytes::from_static_str("g"))
                                .with_node_id(1.into())
                                .with_host(host)
                                .with_port(i32::from(port)),
                        ])
                    } else {
                        FindCoordinatorResponse::default()
                            .with_node_id(1.into())
                            .with_host(host)
                            .with_port(i32::from(port))
                    };
                    encode(&response, req.version)
                }
                Ok(ApiKey::Heartbeat) => {
                    let reply = fake.replies.lock().expect("lock").pop_front();
                    match reply {
                        Some(Reply::Code(code)) => encode(
                            &HeartbeatResponse::default().with_error_code(code),
                            req.version,
                        ),
                        Some(Reply::Close) | None => return,
                    }
                }
                _ => return,
            };
            answer(&mut sock, &req, req.correlation_id, &body).await;
        }
    }

    fn client(bootstrap: Vec<String>) -> CoordinatorClient {
        let mut settings = KafkaSettings::plaintext("unused:1", "unit-test");
        settings.request_timeout = Duration::from_millis(500);
        let config = ConnectionConfig::from_settings(&settings).expect("config");
        CoordinatorClient::new(config, bootstrap, "g", None)
    }

    #[tokio::test]
    async fn rediscovers_after_not_coordinator_and_broken_connections() {
        let (addr, fake) = fake_coordinator(vec![
            Reply::Code(NOT_COORDINATOR),
            Reply::Code(0),
            Reply::Close,
            Reply::Code(0),
            Reply::Code(0),
        ])
        .await;
        // A dead bootstrap broker first: discovery moves on to the next.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr")
            .to_string();
        let mut client = client(vec![dead, addr.clone()]);

        // NOT_COORDINATOR is returned, and the coordinator forgotten.
        assert_eq!(
            client.heartbeat(1, "m").await.expect("answer"),
            KafkaCode(NOT_COORDINATOR)
        );
        assert!(client.coordinator().is_none() && !client.is_connected());
        assert_eq!(fake.finds.load(Ordering::SeqCst), 1);

        // The next call rediscovers.
        assert_eq!(
            client.heartbeat(1, "m").await.expect("answer"),
            KafkaCode(0)
        );
        assert_eq!(fake.finds.load(Ordering::SeqCst), 2);
        assert_eq!(
            client.coordinator().map(Coordinator::address),
            Some(addr.clone())
        );

        // A connection the coordinator drops is an error that says so...
        let e = client.heartbeat(1, "m").await.expect_err("closed");
        assert!(e.is_retriable(), "{e}");
        assert!(
            matches!(
                &e,
                CoordinatorError::Request {
                    api: GroupApi::Heartbeat,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("closed the connection"), "{e}");
        assert!(client.coordinator().is_none());
        // ...and the next call rediscovers.
        assert_eq!(
            client.heartbeat(1, "m").await.expect("answer"),
            KafkaCode(0)
        );
        assert_eq!(fake.finds.load(Ordering::SeqCst), 3);

        // A clone shares the known coordinator but opens its own connection.
        let connections = fake.connections.load(Ordering::SeqCst);
        let mut heartbeat = client.clone();
        assert!(!heartbeat.is_connected());
        assert_eq!(heartbeat.coordinator(), client.coordinator());
        assert_eq!(
            heartbeat.heartbeat(1, "m").await.expect("answer"),
            KafkaCode(0)
        );
        assert_eq!(fake.finds.load(Ordering::SeqCst), 3, "no rediscovery");
        assert_eq!(fake.connections.load(Ordering::SeqCst), connections + 1);
        assert!(client.is_connected() && heartbeat.is_connected());
    }

    #[tokio::test]
    async fn discovery_failure_names_the_bootstrap_list() {
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr")
            .to_string();
        let mut client = client(vec![dead.clone()]);
        let e = client.ensure_coordinator().await.expect_err("nobody there");
        assert!(matches!(e, CoordinatorError::Discovery { .. }), "{e:?}");
        assert!(e.is_retriable());
        assert!(e.to_string().contains(&dead), "{e}");
        let e = self::client(vec![])
            .ensure_coordinator()
            .await
            .expect_err("empty");
        assert!(matches!(e, CoordinatorError::NoBootstrap { .. }), "{e:?}");
    }

    #[test]
    fn find_coordinator_request_forms() {
        let v3 = find_coordinator_request("g", 3);
        assert_eq!(v3.key.as_str(), "g");
        assert!(v3.coordinator_keys.is_empty());
        let v4 = find_coordinator_request("g", 4);
        assert!(v4.key.is_empty());
        assert_eq!(v4.coordinator_keys, vec![StrBytes::from_static_str("g")]);
        assert_eq!(v4.key_type, 0);
    }

    #[test]
    fn find_coordinator_answers_in_both_forms() {
        let single = FindCoordinatorResponse::default()
            .with_node_id(3.into())
            .with_host(StrBytes::from_static_str("kafka-3"))
            .with_port(9092);
        let expected = Coordinator {
            node_id: 3,
            host: "kafka-3".to_owned(),
            port: 9092,
        };
        assert_eq!(
            parse_find_coordinator("g", "b:1", single, 3).expect("v3"),
            expected
        );

        let entry = |key: &'static str| {
            WireCoordinator::default()
                .with_key(StrBytes::from_static_str(key))
                .with_node_id(3.into())
                .with_host(StrBytes::from_static_str("kafka-3"))
                .with_port(9092)
        };
        let batch =
            FindCoordinatorResponse::default().with_coordinators(vec![entry("other"), entry("g")]);
        assert_eq!(
            parse_find_coordinator("g", "b:1", batch, 4).expect("v4"),
            expected
        );

        let missing = FindCoordinatorResponse::default().with_coordinators(vec![entry("other")]);
        let e = parse_find_coordinator("g", "b:1", missing, 4).expect_err("not our group");
        assert!(
            matches!(e, CoordinatorError::InvalidCoordinator { .. }),
            "{e:?}"
        );

        let failed = FindCoordinatorResponse::default().with_coordinators(vec![entry("g")
            .with_error_code(COORDINATOR_NOT_AVAILABLE)
            .with_error_message(Some(StrBytes::from_static_str(
                "The coordinator is not available.",
            )))]);
        let e = parse_find_coordinator("g", "b:1", failed, 6).expect_err("error code");
        assert_eq!(e.kafka_code(), Some(KafkaCode(COORDINATOR_NOT_AVAILABLE)));
        assert!(e.is_retriable());
        assert_eq!(
            e.to_string(),
            "consumer group 'g': FindCoordinator via b:1 failed with COORDINATOR_NOT_AVAILABLE (15): The coordinator is not available."
        );

        let denied = FindCoordinatorResponse::default().with_error_code(30);
        let e = parse_find_coordinator("g", "b:1", denied, 2).expect_err("denied");
        assert!(
            !e.is_retriable(),
            "GROUP_AUTHORIZATION_FAILED is not retriable"
        );

        let bad_port = FindCoordinatorResponse::default()
            .with_host(StrBytes::from_static_str("h"))
            .with_port(70_000);
        let e = parse_find_coordinator("g", "b:1", bad_port, 3).expect_err("bad port");
        assert!(e.to_string().contains("port 70000"), "{e}");
    }

    #[test]
    fn coordinator_addresses() {
        let c = |host: &str| Coordinator {
            node_id: 1,
            host: host.to_owned(),
            port: 9092,
        };
        assert_eq!(c("kafka-1").address(), "kafka-1:9092");
        assert_eq!(c("::1").address(), "[::1]:9092");
        assert_eq!(c("kafka-1").to_string(), "kafka-1:9092 (node 1)");
    }

    #[test]
    fn leader_needs_a_member_id() {
        let r = JoinGroupResult {
            error: KafkaCode(79),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: String::new(),
            skip_assignment: false,
            members: vec![],
        };
        assert!(!r.is_leader());
    }
}
