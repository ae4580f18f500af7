//! [`Assignment`]: what the leader hands each member in SyncGroup, and the
//! [`TopicPartitions`] both payloads group partitions by.

use bytes::Bytes;
use kafka_protocol::messages::{consumer_protocol_assignment, ConsumerProtocolAssignment};

use super::{
    clamp_version, decode_with_header, encode_with_header, topic_name, PayloadKind, ProtocolError,
};

/// One topic and some of its partitions, as grouped on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TopicPartitions {
    /// The topic name.
    pub topic: String,
    /// Partition ids, in wire order.
    pub partitions: Vec<i32>,
}

impl TopicPartitions {
    /// A topic with the given partitions.
    pub fn new(topic: impl Into<String>, partitions: impl Into<Vec<i32>>) -> Self {
        Self {
            topic: topic.into(),
            partitions: partitions.into(),
        }
    }
}

/// What the leader hands each member in SyncGroup (Java's
/// `ConsumerPartitionAssignor.Assignment`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// The partitions assigned, grouped per topic.
    pub partitions: Vec<TopicPartitions>,
    /// Assignor-specific data; `None` for range and round-robin.
    pub user_data: Option<Bytes>,
}

impl Assignment {
    /// An assignment of `partitions` without user data.
    pub fn new(partitions: Vec<TopicPartitions>) -> Self {
        Self {
            partitions,
            user_data: None,
        }
    }

    /// Every assigned `(topic, partition)`, in wire order.
    pub fn topic_partitions(&self) -> impl Iterator<Item = (&str, i32)> + '_ {
        self.partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(move |&p| (tp.topic.as_str(), p)))
    }

    #[cfg(any(test, feature = "unstable-fuzzing"))]
    /// Whether no partition is assigned.
    pub fn is_empty(&self) -> bool {
        self.partitions.iter().all(|tp| tp.partitions.is_empty())
    }

    /// Serialize as `version` (header included). Topic groups are written in
    /// the order given, like Java. Versions above [`MAX_KNOWN_VERSION`] are
    /// written as it.
    pub fn encode(&self, version: i16) -> Result<Bytes, ProtocolError> {
        let kind = PayloadKind::Assignment;
        let version = clamp_version(kind, version)?;
        let message = ConsumerProtocolAssignment::default()
            .with_assigned_partitions(
                self.partitions
                    .iter()
                    .map(|tp| {
                        consumer_protocol_assignment::TopicPartition::default()
                            .with_topic(topic_name(&tp.topic))
                            .with_partitions(tp.partitions.clone())
                    })
                    .collect(),
            )
            .with_user_data(self.user_data.clone());
        encode_with_header(kind, version, &message)
    }

    /// Parse a SyncGroup assignment payload (header included).
    ///
    /// An empty payload is an error here; callers decide whether an empty
    /// SyncGroup assignment means "nothing assigned" (it does in Java when
    /// the leader assigned nothing to this member).
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let message: ConsumerProtocolAssignment =
            decode_with_header(PayloadKind::Assignment, payload)?;
        Ok(Self {
            partitions: message
                .assigned_partitions
                .into_iter()
                .map(|tp| TopicPartitions::new(tp.topic.as_str(), tp.partitions))
                .collect(),
            user_data: message.user_data,
        })
    }
}
