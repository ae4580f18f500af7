//! The group coordinator of one consumer group: discovery and typed requests.
//!
//! A [`CoordinatorClient`] finds its group's coordinator with
//! `FindCoordinator` (asking the bootstrap brokers in turn), connects to it
//! and offers one typed method per group API: [`join_group`], [`sync_group`],
//! [`heartbeat`], [`leave_group`], [`offset_fetch`], [`offset_commit`].
//!
//! The methods do not judge Kafka error codes: every result carries the raw
//! code(s) as [`KafkaCode`] for the state machine
//! ([`crate::state`]) to classify, because the same code means
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

use std::{fmt, sync::Arc, time::Duration};

use kafka_protocol::messages::{
    find_coordinator_response::FindCoordinatorResponse, FindCoordinatorRequest,
};
use tracing::debug;

pub(crate) use requests::non_empty;
use requests::str_bytes;

use crate::{
    error::{GroupApi, KafkaCode},
    wire::{BrokerConnection, ConnectionConfig, ConnectionError, KnownRequest, SendOptions},
};

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
        crate::wire::address(&self.host, self.port)
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
            Self::FindCoordinator { code, .. } => code.is_coordinator_moving(),
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

    #[cfg(any(test, feature = "unstable-fuzzing"))]
    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    #[cfg(any(test, feature = "unstable-fuzzing"))]
    /// The `group.instance.id`, for static members.
    pub fn group_instance_id(&self) -> Option<&str> {
        self.group_instance_id.as_deref()
    }

    #[cfg(any(test, feature = "unstable-fuzzing"))]
    /// The coordinator, when known.
    pub fn coordinator(&self) -> Option<&Coordinator> {
        self.coordinator.as_ref()
    }

    #[cfg(any(test, feature = "unstable-fuzzing"))]
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

    #[cfg(any(test, feature = "unstable-fuzzing"))]
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
    let code = KafkaCode::from_wire(error_code);
    if !code.is_none() {
        return Err(CoordinatorError::FindCoordinator {
            group: group_id.to_owned(),
            broker: broker.to_owned(),
            code,
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

mod consumer;
mod requests;

pub use consumer::{ConsumerHeartbeat, ConsumerHeartbeatResult};

/// The offsets `group` has committed for `partitions` (`(topic,
/// partition)`), `-1` where it has committed none, as the broker answers
/// OffsetFetch: what Kafka's `kafka-consumer-groups --describe` shows.
pub async fn committed_offsets(
    connection: ConnectionConfig,
    bootstrap: Vec<String>,
    group: &str,
    partitions: &[(String, i32)],
) -> Result<std::collections::BTreeMap<(String, i32), i64>, CoordinatorError> {
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let topics: Vec<crate::payload::TopicPartitions> = by_topic
        .into_iter()
        .map(|(t, p)| crate::payload::TopicPartitions::new(t, p))
        .collect();
    let mut client = CoordinatorClient::new(connection, bootstrap, group, None);
    let fetched = client.offset_fetch(&topics).await?;
    Ok(partitions
        .iter()
        .map(|key| {
            let offset = fetched.offsets.get(key).map_or(-1, |o| o.offset);
            (key.clone(), offset)
        })
        .collect())
}

#[cfg_attr(not(feature = "unstable-fuzzing"), allow(unused_imports))]
pub use requests::{
    CommittedOffset, JoinGroupParams, JoinGroupResult, JoinProtocol, JoinedMember,
    OffsetFetchResult, OffsetToCommit, SyncGroupResult,
};

#[cfg(test)]
mod tests;
