//! [`Subscription`]: the JoinGroup member metadata of the consumer protocol.

use bytes::Bytes;
use kafka_protocol::messages::{consumer_protocol_subscription, ConsumerProtocolSubscription};

use super::{
    clamp_version, decode_with_header, encode_with_header, java_string_cmp, str_bytes, topic_name,
    PayloadKind, ProtocolError, TopicPartitions,
};

/// What a member sends as JoinGroup metadata for each offered assignor
/// (Java's `ConsumerPartitionAssignor.Subscription`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// Topics the member wants to consume (v0+).
    pub topics: Vec<String>,
    /// Assignor-specific data; `None` for range and round-robin (v0+).
    pub user_data: Option<Bytes>,
    /// Partitions the member owns now, for cooperative/sticky assignors (v1+).
    pub owned_partitions: Vec<TopicPartitions>,
    /// The member's current generation; `None` is `-1` on the wire (v2+).
    pub generation_id: Option<i32>,
    /// The member's `client.rack`; `None` is null on the wire, and an empty
    /// rack decodes as `None` like Java (v3+).
    pub rack_id: Option<String>,
}

impl Subscription {
    /// A subscription to `topics` with nothing else set.
    pub fn new<I, T>(topics: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self {
            topics: topics.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Serialize as `version` (header included), the way Java does: topics
    /// sorted, owned partitions sorted by (topic, partition) and grouped per
    /// topic (so a topic listed with no partitions is not written).
    /// Versions above [`MAX_KNOWN_VERSION`] are written as it, like
    /// Java; fields the version lacks are dropped.
    pub fn encode(&self, version: i16) -> Result<Bytes, ProtocolError> {
        let kind = PayloadKind::Subscription;
        let version = clamp_version(kind, version)?;

        let mut topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        topics.sort_unstable_by(|a, b| java_string_cmp(a, b));

        let mut owned: Vec<(&str, i32)> = self
            .owned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(move |&p| (tp.topic.as_str(), p)))
            .collect();
        owned.sort_unstable_by(|a, b| java_string_cmp(a.0, b.0).then(a.1.cmp(&b.1)));
        let mut owned_partitions: Vec<consumer_protocol_subscription::TopicPartition> = Vec::new();
        for (topic, partition) in owned {
            match owned_partitions.last_mut() {
                Some(last) if last.topic.as_str() == topic => last.partitions.push(partition),
                _ => owned_partitions.push(
                    consumer_protocol_subscription::TopicPartition::default()
                        .with_topic(topic_name(topic))
                        .with_partitions(vec![partition]),
                ),
            }
        }

        let message = ConsumerProtocolSubscription::default()
            .with_topics(topics.into_iter().map(str_bytes).collect())
            .with_user_data(self.user_data.clone())
            .with_owned_partitions(owned_partitions)
            .with_generation_id(self.generation_id.unwrap_or(-1))
            .with_rack_id(self.rack_id.as_deref().map(str_bytes));
        encode_with_header(kind, version, &message)
    }

    /// Parse a JoinGroup member metadata payload (header included).
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let message: ConsumerProtocolSubscription =
            decode_with_header(PayloadKind::Subscription, payload)?;
        Ok(Self {
            topics: message
                .topics
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            user_data: message.user_data,
            owned_partitions: message
                .owned_partitions
                .into_iter()
                .map(|tp| TopicPartitions::new(tp.topic.as_str(), tp.partitions))
                .collect(),
            generation_id: (message.generation_id != -1).then_some(message.generation_id),
            rack_id: message
                .rack_id
                .filter(|rack| !rack.is_empty())
                .map(|rack| rack.as_str().to_owned()),
        })
    }
}
