//! The few cluster-administration requests the canary's topic placement
//! needs (`producer --continuous` with `CANARY_TOPIC_BALANCE`), over the
//! crate's own broker connection ([`crate::wire`]: TLS, SASL and version
//! negotiation as for the group coordinator), since rskafka offers none of
//! them but topic creation without replica assignments:
//!
//! | method | request |
//! |---|---|
//! | [`AdminClient::metadata`] | `Metadata` v10+: live brokers, one topic's partitions |
//! | [`AdminClient::create_topic`] | `CreateTopics` with explicit replica assignments |
//! | [`AdminClient::create_partitions`] | `CreatePartitions` with explicit assignments |
//! | [`AdminClient::alter_reassignments`] | `AlterPartitionReassignments` (KIP-455) |
//! | [`AdminClient::ongoing_reassignments`] | `ListPartitionReassignments` (KIP-455) |
//! | [`AdminClient::elect_preferred_leaders`] | `ElectLeaders`, preferred election (KIP-460) |
//! | [`AdminClient::topic_config`] | `DescribeConfigs`, one topic config read |
//! | [`AdminClient::set_topic_config`] | `IncrementalAlterConfigs` (KIP-339), one topic config set |
//!
//! Any broker takes them (KRaft brokers forward the controller's requests
//! to the active controller). The client keeps one connection; a request
//! that fails on it drops it, and the next request connects again, to the
//! brokers of the last metadata first and then to the bootstrap list. It
//! does not retry: the caller decides when (the canary at its next
//! reconcile). Error codes come back typed ([`KafkaCode`]), with the
//! partition they are about.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use kafka_protocol::{
    messages::{
        alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic},
        create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic},
        create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig},
        describe_configs_request::DescribeConfigsResource,
        elect_leaders_request::TopicPartitions,
        incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
        list_partition_reassignments_request::ListPartitionReassignmentsTopics,
        metadata_request::MetadataRequestTopic,
        AlterPartitionReassignmentsRequest, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
        DescribeConfigsRequest, ElectLeadersRequest, IncrementalAlterConfigsRequest,
        ListPartitionReassignmentsRequest, MetadataRequest, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use tracing::debug;

use crate::{
    coordinator::non_empty,
    error::KafkaCode,
    wire::{
        address, BrokerConnection, ConnectionConfig, ConnectionError, KnownRequest, SendOptions,
    },
};

/// Kafka's `ConfigResource.Type` of a topic.
const RESOURCE_TOPIC: i8 = 2;

/// How much longer than the broker-side timeout of a request we wait for
/// its answer: the broker answers `REQUEST_TIMED_OUT` itself first.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No broker of the bootstrap list or the last metadata could be
    /// connected to.
    #[error("{api}: no Kafka broker reachable ({tried}); last error: {source}")]
    Unreachable {
        /// The request.
        api: &'static str,
        /// The addresses tried.
        tried: String,
        /// The last connection error.
        #[source]
        source: Box<ConnectionError>,
    },

    /// Sending the request or reading its answer failed (the connection
    /// was dropped; the next request connects again).
    #[error("{api} to {broker} failed: {source}")]
    Request {
        /// The request.
        api: &'static str,
        /// `host:port`.
        broker: String,
        /// What went wrong.
        #[source]
        source: Box<ConnectionError>,
    },

    /// The broker answered with an error code.
    #[error(
        "{api} for topic {topic:?}{} via {broker} failed with {code}{}",
        partition.map(|p| format!(" partition {p}")).unwrap_or_default(),
        message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
    )]
    Api {
        /// The request.
        api: &'static str,
        /// The topic.
        topic: String,
        /// The partition the code is about, when it is about one.
        partition: Option<i32>,
        /// `host:port` of the broker that answered.
        broker: String,
        /// The code, e.g. `REASSIGNMENT_IN_PROGRESS (60)`.
        code: KafkaCode,
        /// The broker's explanation.
        message: Option<String>,
    },
}

impl AdminError {
    /// The broker's error code, when it answered with one.
    pub fn code(&self) -> Option<KafkaCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// What failed, for a metric label or a log field: the Kafka error
    /// code's name (`NOT_CONTROLLER`), or `connection`.
    pub fn reason(&self) -> String {
        self.code()
            .map_or_else(|| "connection".to_owned(), KafkaCode::name)
    }
}

/// One partition as the metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// The leader's node id; -1 without a leader.
    pub leader: i32,
    /// The replicas, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

/// The live brokers and one topic, as one `Metadata` answer shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Live brokers (KRaft lists only unfenced ones): node id → `host:port`.
    pub brokers: BTreeMap<i32, String>,
    /// The topic's partitions by id; `None` when the topic does not exist.
    pub partitions: Option<BTreeMap<i32, PartitionMetadata>>,
}

/// Admin requests for one cluster; see the module docs.
#[derive(Debug)]
pub struct AdminClient {
    config: ConnectionConfig,
    bootstrap: Arc<[String]>,
    /// Broker addresses of the last metadata, tried before the bootstrap
    /// list (a bootstrap broker may be the one that is gone).
    known: Vec<String>,
    conn: Option<BrokerConnection>,
    /// Where the next connection attempt starts.
    next: usize,
}

impl AdminClient {
    /// A client for the cluster behind `bootstrap`; connects on first use.
    pub fn new(config: ConnectionConfig, bootstrap: Vec<String>) -> Self {
        Self {
            config,
            bootstrap: bootstrap.into(),
            known: Vec::new(),
            conn: None,
            next: 0,
        }
    }

    /// The live brokers and `topic`'s partitions.
    pub async fn metadata(&mut self, topic: &str) -> Result<ClusterMetadata, AdminError> {
        let req = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ]));
        let (r, at) = self.call(topic, req).await?;
        let brokers: BTreeMap<i32, String> = r
            .brokers
            .iter()
            .map(|b| (b.node_id.0, address(&b.host, b.port)))
            .collect();
        self.known = brokers.values().cloned().collect();
        let mut partitions = None;
        for t in r.topics {
            if t.name.as_ref().is_some_and(|n| n.0.as_str() != topic) {
                continue;
            }
            if KafkaCode::from_wire(t.error_code).is(ResponseError::UnknownTopicOrPartition) {
                continue;
            }
            at.check(t.error_code, None)?;
            partitions = Some(
                t.partitions
                    .into_iter()
                    .map(|p| {
                        (
                            p.partition_index,
                            PartitionMetadata {
                                leader: p.leader_id.0,
                                replicas: ids(p.replica_nodes),
                                isr: ids(p.isr_nodes),
                            },
                        )
                    })
                    .collect(),
            );
        }
        Ok(ClusterMetadata {
            brokers,
            partitions,
        })
    }

    /// Creates `topic` with partition `i` on the brokers `assignments[i]`
    /// (the first of them its preferred leader) and the topic `configs`.
    /// `Ok(false)`: it existed already.
    pub async fn create_topic(
        &mut self,
        topic: &str,
        assignments: &[Vec<i32>],
        configs: &[(&str, String)],
    ) -> Result<bool, AdminError> {
        let timeout = self.broker_timeout_ms();
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(timeout)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(
                    assignments
                        .iter()
                        .zip(0..)
                        .map(|(replicas, p)| {
                            CreatableReplicaAssignment::default()
                                .with_partition_index(p)
                                .with_broker_ids(broker_ids(replicas))
                        })
                        .collect(),
                )
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string((*k).to_owned()))
                                .with_value(Some(StrBytes::from_string(v.clone())))
                        })
                        .collect(),
                )]);
        let (r, at) = self.call(topic, req).await?;
        for t in r.topics {
            if KafkaCode::from_wire(t.error_code).is(ResponseError::TopicAlreadyExists) {
                return Ok(false);
            }
            at.check(t.error_code, t.error_message)?;
        }
        Ok(true)
    }

    /// Grows `topic` to `count` partitions, the new ones (in order) on the
    /// brokers `new_assignments`.
    pub async fn create_partitions(
        &mut self,
        topic: &str,
        count: i32,
        new_assignments: &[Vec<i32>],
    ) -> Result<(), AdminError> {
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(self.broker_timeout_ms())
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(count)
                .with_assignments(Some(
                    new_assignments
                        .iter()
                        .map(|r| {
                            CreatePartitionsAssignment::default().with_broker_ids(broker_ids(r))
                        })
                        .collect(),
                ))]);
        let (r, at) = self.call(topic, req).await?;
        for t in r.results {
            at.check(t.error_code, t.error_message)?;
        }
        Ok(())
    }

    /// Starts moving each partition of `targets` to its replica list (the
    /// first its preferred leader); the replication factor may change.
    pub async fn alter_reassignments(
        &mut self,
        topic: &str,
        targets: &BTreeMap<i32, Vec<i32>>,
    ) -> Result<(), AdminError> {
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.broker_timeout_ms())
            .with_allow_replication_factor_change(true)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    targets
                        .iter()
                        .map(|(p, r)| {
                            ReassignablePartition::default()
                                .with_partition_index(*p)
                                .with_replicas(Some(broker_ids(r)))
                        })
                        .collect(),
                )]);
        let (r, at) = self.call(topic, req).await?;
        at.check(r.error_code, r.error_message)?;
        for p in r.responses.into_iter().flat_map(|t| t.partitions) {
            at.check_partition(p.partition_index, p.error_code, p.error_message)?;
        }
        Ok(())
    }

    /// Those of `partitions` whose reassignment is still adding or removing
    /// replicas.
    pub async fn ongoing_reassignments(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeSet<i32>, AdminError> {
        let req = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.broker_timeout_ms())
            .with_topics(Some(vec![ListPartitionReassignmentsTopics::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(partitions.to_vec())]));
        let (r, at) = self.call(topic, req).await?;
        at.check(r.error_code, r.error_message)?;
        Ok(r.topics
            .into_iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions)
            .filter(|p| !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty())
            .map(|p| p.partition_index)
            .collect())
    }

    /// Moves the leadership of each of `partitions` to its preferred
    /// replica (the first); a partition already led by it is no error.
    pub async fn elect_preferred_leaders(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<(), AdminError> {
        let req = ElectLeadersRequest::default()
            // 0: preferred, 1: unclean.
            .with_election_type(0)
            .with_timeout_ms(self.broker_timeout_ms())
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions.to_vec())]));
        let (r, at) = self.call(topic, req).await?;
        at.check(r.error_code, None)?;
        for p in r
            .replica_election_results
            .into_iter()
            .flat_map(|t| t.partition_result)
        {
            if KafkaCode::from_wire(p.error_code).is(ResponseError::ElectionNotNeeded) {
                continue;
            }
            at.check_partition(p.partition_id, p.error_code, p.error_message)?;
        }
        Ok(())
    }

    /// The value of `topic`'s config `name` (set on the topic or the
    /// broker's default); `None` when the broker has no such config.
    pub async fn topic_config(
        &mut self,
        topic: &str,
        name: &str,
    ) -> Result<Option<String>, AdminError> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configuration_keys(Some(vec![StrBytes::from_string(name.to_owned())])),
        ]);
        let (r, at) = self.call(topic, req).await?;
        let mut value = None;
        for t in r.results {
            at.check(t.error_code, t.error_message)?;
            value = t
                .configs
                .into_iter()
                .find(|c| c.name.as_str() == name)
                .and_then(|c| c.value)
                .map(|v| v.as_str().to_owned())
                .or(value);
        }
        Ok(value)
    }

    /// Sets `topic`'s config `name` to `value`; its other configs stay as
    /// they are.
    pub async fn set_topic_config(
        &mut self,
        topic: &str,
        name: &str,
        value: &str,
    ) -> Result<(), AdminError> {
        // Kafka's AlterConfigOp.OpType SET.
        const SET: i8 = 0;
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_string(name.to_owned()))
                    .with_config_operation(SET)
                    .with_value(Some(StrBytes::from_string(value.to_owned())))]),
        ]);
        let (r, at) = self.call(topic, req).await?;
        for t in r.responses {
            at.check(t.error_code, t.error_message)?;
        }
        Ok(())
    }

    /// The broker-side timeout of the requests that wait for the
    /// controller: the connection's request timeout.
    fn broker_timeout_ms(&self) -> i32 {
        i32::try_from(self.config.request_timeout().as_millis()).unwrap_or(i32::MAX)
    }

    /// Sends `req` about `topic` on the connection (connecting first when
    /// there is none) and returns the answer, with what its error codes are
    /// checked against.
    async fn call<'t, R: KnownRequest>(
        &mut self,
        topic: &'t str,
        req: R,
    ) -> Result<(R::Response, Answered<'t>), AdminError> {
        let mut conn = match self.conn.take().filter(BrokerConnection::is_usable) {
            Some(conn) => conn,
            None => self.connect(R::NAME).await?,
        };
        let options = SendOptions::new().timeout(self.config.request_timeout() + ANSWER_MARGIN);
        match conn.send_with(req, options).await {
            Ok(r) => {
                let at = Answered {
                    api: R::NAME,
                    topic,
                    broker: conn.broker().to_owned(),
                };
                self.conn = Some(conn);
                Ok((r, at))
            }
            Err(e) => {
                // The connection may be mid-frame: dropped, and the next
                // request starts at the next broker.
                self.next += 1;
                Err(AdminError::Request {
                    api: R::NAME,
                    broker: conn.broker().to_owned(),
                    source: Box::new(e),
                })
            }
        }
    }

    /// Connects to the first broker that answers: those of the last
    /// metadata, then the bootstrap list, starting where the last attempt
    /// left off.
    async fn connect(&mut self, api: &'static str) -> Result<BrokerConnection, AdminError> {
        let mut addresses: Vec<String> = self.known.clone();
        for b in self.bootstrap.iter() {
            if !addresses.contains(b) {
                addresses.push(b.clone());
            }
        }
        let mut last = None;
        for i in 0..addresses.len() {
            let at = &addresses[(self.next + i) % addresses.len()];
            match BrokerConnection::connect(&self.config, at).await {
                Ok(conn) => {
                    self.next = (self.next + i) % addresses.len();
                    return Ok(conn);
                }
                Err(e) => {
                    debug!(broker = %at, error = %e, "admin connection failed");
                    last = Some(e);
                }
            }
        }
        Err(AdminError::Unreachable {
            api,
            tried: addresses.join(","),
            source: Box::new(last.unwrap_or_else(|| ConnectionError::Settings {
                problem: "no bootstrap broker configured".to_owned(),
            })),
        })
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn broker_ids(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|&id| BrokerId(id)).collect()
}

fn ids(ids: Vec<BrokerId>) -> Vec<i32> {
    ids.into_iter().map(|id| id.0).collect()
}

/// What an answer's error codes are checked against: the request, its
/// topic and the broker that answered, all of which an error names.
struct Answered<'t> {
    api: &'static str,
    topic: &'t str,
    broker: String,
}

impl Answered<'_> {
    /// `Err` with the broker's code and message unless `code` is `NONE`.
    fn check(&self, code: i16, message: Option<StrBytes>) -> Result<(), AdminError> {
        self.judge(None, code, message)
    }

    /// As [`check`](Self::check), for a code about one partition.
    fn check_partition(
        &self,
        partition: i32,
        code: i16,
        message: Option<StrBytes>,
    ) -> Result<(), AdminError> {
        self.judge(Some(partition), code, message)
    }

    fn judge(
        &self,
        partition: Option<i32>,
        code: i16,
        message: Option<StrBytes>,
    ) -> Result<(), AdminError> {
        let code = KafkaCode::from_wire(code);
        if code.is_none() {
            return Ok(());
        }
        Err(AdminError::Api {
            api: self.api,
            topic: self.topic.to_owned(),
            partition,
            broker: self.broker.clone(),
            code,
            message: non_empty(message),
        })
    }
}
