//! The typed group requests of [`CoordinatorClient`]: what each one sends
//! and what its answer holds (error codes are returned as they came, for the
//! state machine to judge).

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        join_group_request::JoinGroupRequestProtocol, leave_group_request::MemberIdentity,
        offset_commit_request::OffsetCommitRequestPartition,
        offset_commit_request::OffsetCommitRequestTopic,
        offset_fetch_request::OffsetFetchRequestGroup,
        offset_fetch_request::OffsetFetchRequestTopic,
        offset_fetch_request::OffsetFetchRequestTopics,
        sync_group_request::SyncGroupRequestAssignment, GroupId, HeartbeatRequest,
        JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
        SyncGroupRequest, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};

use kafka_base::backoff::Backoff;

use super::{CoordinatorClient, CoordinatorError};
use crate::{
    error::{GroupApi, KafkaCode},
    payload::{TopicPartitions, PROTOCOL_TYPE},
};

/// JoinGroup may wait for the whole rebalance; Java gives it the rebalance
/// timeout plus this much (`JOIN_GROUP_TIMEOUT_LAPSE`).
const JOIN_GROUP_TIMEOUT_LAPSE: Duration = Duration::from_secs(5);

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
pub struct JoinedMember {
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
    pub members: Vec<JoinedMember>,
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

impl OffsetFetchResult {
    /// The group-level error, else the first partition's own error
    /// (UNSTABLE_OFFSET_COMMIT comes per partition, with offset -1 that
    /// must not be read as "no committed offset"); `None` on success.
    pub fn first_error(&self) -> Option<KafkaCode> {
        Some(self.error).filter(|e| !e.is_none()).or_else(|| {
            self.offsets
                .values()
                .map(|o| o.error)
                .find(|e| !e.is_none())
        })
    }
}

impl Default for OffsetFetchResult {
    fn default() -> Self {
        Self {
            error: KafkaCode::NONE,
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

fn millis_i32(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

pub(super) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// `Some` for a non-empty string: Kafka sends "" and null interchangeably
/// for "no message".
pub(crate) fn non_empty(s: Option<StrBytes>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(|s| s.to_string())
}

impl CoordinatorClient {
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
        let error = KafkaCode::from_wire(r.error_code);
        self.check_code(error);
        Ok(JoinGroupResult {
            error,
            generation_id: r.generation_id,
            protocol_type: r.protocol_type.map(|s| s.to_string()),
            protocol_name: r.protocol_name.map(|s| s.to_string()),
            leader: r.leader.to_string(),
            member_id: r.member_id.to_string(),
            skip_assignment: r.skip_assignment,
            members: r
                .members
                .into_iter()
                .map(|m| JoinedMember {
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
        let error = KafkaCode::from_wire(r.error_code);
        self.check_code(error);
        Ok(SyncGroupResult {
            error,
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
        let code = KafkaCode::from_wire(r.error_code);
        self.check_code(code);
        Ok(code)
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
        let code = match KafkaCode::from_wire(r.error_code) {
            KafkaCode::NONE => r
                .members
                .first()
                .map_or(KafkaCode::NONE, |m| KafkaCode::from_wire(m.error_code)),
            code => code,
        };
        self.check_code(code);
        Ok(code)
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
                result.error = KafkaCode::from_wire(group.error_code);
                for topic in group.topics {
                    for p in topic.partitions {
                        result.offsets.insert(
                            (topic.name.0.to_string(), p.partition_index),
                            CommittedOffset {
                                offset: p.committed_offset,
                                leader_epoch: epoch(p.committed_leader_epoch),
                                metadata: non_empty(p.metadata),
                                error: KafkaCode::from_wire(p.error_code),
                            },
                        );
                    }
                }
            }
        } else {
            result.error = KafkaCode::from_wire(r.error_code);
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
                            error: KafkaCode::from_wire(p.error_code),
                        },
                    );
                }
            }
        }
        self.check_code(result.error);
        for o in result.offsets.values() {
            self.check_code(o.error);
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
                    KafkaCode::from_wire(p.error_code),
                );
            }
        }
        for code in result.values() {
            self.check_code(*code);
        }
        Ok(result)
    }

    /// [`Self::offset_commit`] within `within`, sent again after `backoff`
    /// while no answer came or the answer says the coordinator moved, is
    /// loading or timed out, as long as the deadline leaves time: the commit
    /// before partitions are given up must survive a coordinator move (Java
    /// retries its synchronous commits the same way). `None`: one attempt,
    /// no deadline. The error is the last attempt's, as text.
    pub async fn offset_commit_within(
        &mut self,
        generation_id: i32,
        member_id: &str,
        offsets: &[OffsetToCommit],
        within: Option<Duration>,
        backoff: Backoff,
    ) -> Result<BTreeMap<(String, i32), KafkaCode>, String> {
        let deadline = within.map(|w| (tokio::time::Instant::now() + w, w));
        let mut retries = backoff.retries();
        loop {
            let request = self.offset_commit(generation_id, member_id, offsets);
            let result = match deadline {
                Some((deadline, within)) => {
                    match tokio::time::timeout_at(deadline, request).await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => {
                            self.mark_coordinator_dead();
                            return Err(format!(
                                "OffsetCommit not answered within its deadline of {within:?}"
                            ));
                        }
                    }
                }
                None => request.await.map_err(|e| e.to_string()),
            };
            let again = match &result {
                Err(_) => {
                    self.mark_coordinator_dead();
                    true
                }
                Ok(codes) => codes
                    .values()
                    .any(|c| c.is_coordinator_moving() || c.is(ResponseError::RequestTimedOut)),
            };
            let delay = retries.next_delay();
            match deadline {
                Some((deadline, _)) if again && tokio::time::Instant::now() + delay < deadline => {
                    tokio::time::sleep(delay).await;
                }
                _ => return result,
            }
        }
    }

    /// Marks the coordinator unknown on the codes that say it moved.
    pub(super) fn check_code(&mut self, code: KafkaCode) {
        if matches!(
            code.error(),
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable)
        ) {
            self.mark_coordinator_dead();
        }
    }
}
