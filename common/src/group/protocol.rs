//! The embedded `ConsumerProtocol` payloads of the classic group protocol.
//!
//! A classic consumer joins with protocol type [`PROTOCOL_TYPE`] (`consumer`).
//! The group coordinator treats the JoinGroup member metadata and the
//! SyncGroup assignment as opaque bytes; consumers agree on their layout,
//! which is Java's `ConsumerProtocol`: a big-endian `i16` version header
//! followed by the `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment`
//! message body of that version (non-flexible, so no tagged fields).
//!
//! | version | subscription adds          | assignment             |
//! |---------|----------------------------|------------------------|
//! | 0       | topics, user data          | partitions, user data  |
//! | 1       | owned partitions           | same as 0              |
//! | 2       | generation id              | same as 0              |
//! | 3       | rack id                    | same as 0              |
//!
//! Java 3.5+ (including 4.x) sends version 3 of both
//! (`ConsumerProtocol.serializeSubscription/serializeAssignment` use the
//! highest supported version), so that is what we send too
//! ([`SUBSCRIPTION_VERSION`], [`ASSIGNMENT_VERSION`]).
//!
//! Decoding is as tolerant as Java's: a version newer than 3 is read as
//! version 3 (later versions may only append fields), and bytes after the
//! known fields are ignored. A negative version, a truncated payload or
//! nonsensical lengths are errors, never panics.
//!
//! The byte layout itself is `kafka-protocol`'s generated
//! [`ConsumerProtocolSubscription`] / [`ConsumerProtocolAssignment`]. Before
//! handing untrusted bytes to the generated decoder we walk them once
//! (`Walker`) to check every length against the bytes actually present:
//! the generated decoder pre-allocates arrays from the declared element count,
//! so a 10-byte payload declaring 2^31 topics would otherwise abort the
//! process on allocation failure. Another member's JoinGroup metadata is
//! exactly such untrusted input for the group leader.

use std::fmt;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    consumer_protocol_assignment, consumer_protocol_subscription, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// The JoinGroup protocol type of Kafka consumers.
pub const PROTOCOL_TYPE: &str = "consumer";

/// The subscription version we send (what Java 3.5+ sends).
pub const SUBSCRIPTION_VERSION: i16 = 3;

/// The assignment version we send (what Java 3.5+ sends).
pub const ASSIGNMENT_VERSION: i16 = 3;

/// The newest version whose layout we know; newer ones are read as this.
pub const MAX_KNOWN_VERSION: i16 = 3;

/// Which of the two embedded payloads an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadKind {
    /// JoinGroup member metadata (`ConsumerProtocolSubscription`).
    Subscription,
    /// SyncGroup member assignment (`ConsumerProtocolAssignment`).
    Assignment,
}

impl fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Subscription => "subscription",
            Self::Assignment => "assignment",
        })
    }
}

/// Why an embedded consumer-protocol payload could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Fewer than two bytes: not even the version header is there.
    #[error("consumer protocol {kind}: {len} byte(s) is too short for the 2-byte version header")]
    MissingVersion {
        /// Which payload.
        kind: PayloadKind,
        /// How many bytes there were.
        len: usize,
    },

    /// A negative version (Java rejects these too).
    #[error("consumer protocol {kind}: unsupported version {version}")]
    UnsupportedVersion {
        /// Which payload.
        kind: PayloadKind,
        /// The version found (or asked for, when encoding).
        version: i16,
    },

    /// The payload ends before a field does.
    #[error(
        "consumer protocol {kind} v{version}: truncated at byte {offset}: {field} needs {needed} \
         byte(s), {remaining} left"
    )]
    Truncated {
        /// Which payload.
        kind: PayloadKind,
        /// The version the body was read as.
        version: i16,
        /// The field being read.
        field: &'static str,
        /// Offset of the field from the start of the payload (header included).
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the payload.
        remaining: usize,
    },

    /// A length prefix is negative where null is not allowed, or larger than
    /// the payload could possibly hold.
    #[error(
        "consumer protocol {kind} v{version}: {field} at byte {offset} has invalid length {length}"
    )]
    InvalidLength {
        /// Which payload.
        kind: PayloadKind,
        /// The version the body was read as.
        version: i16,
        /// The field being read.
        field: &'static str,
        /// Offset of the length prefix from the start of the payload.
        offset: usize,
        /// The length found.
        length: i32,
    },

    /// The structure is sound but a value is not (e.g. a string that is not UTF-8).
    #[error("consumer protocol {kind} v{version}: {reason}")]
    Malformed {
        /// Which payload.
        kind: PayloadKind,
        /// The version the body was read as.
        version: i16,
        /// What the decoder reported.
        reason: String,
    },

    /// A value does not fit the wire format (e.g. a topic name over 32767 bytes).
    #[error("cannot encode consumer protocol {kind} v{version}: {reason}")]
    Encode {
        /// Which payload.
        kind: PayloadKind,
        /// The version being written.
        version: i16,
        /// What the encoder reported.
        reason: String,
    },
}

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
        let kind = PayloadKind::Subscription;
        let (version, body) = split_header(kind, payload)?;
        Walker::new(kind, version, payload).subscription()?;

        let mut buf = body;
        let message = ConsumerProtocolSubscription::decode(&mut buf, version).map_err(|e| {
            ProtocolError::Malformed {
                kind,
                version,
                reason: e.to_string(),
            }
        })?;
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
        let kind = PayloadKind::Assignment;
        let (version, body) = split_header(kind, payload)?;
        Walker::new(kind, version, payload).assignment()?;

        let mut buf = body;
        let message = ConsumerProtocolAssignment::decode(&mut buf, version).map_err(|e| {
            ProtocolError::Malformed {
                kind,
                version,
                reason: e.to_string(),
            }
        })?;
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

/// Compare like Java's `String.compareTo` (UTF-16 code units), which is the
/// order Java assignors sort member ids, instance ids and topics by. It only
/// differs from Rust's byte order for characters above U+FFFF vs U+E000..=U+FFFF.
pub fn java_string_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// Java's `checkSubscriptionVersion`/`checkAssignmentVersion`: negative is an
/// error, newer than we know is treated as the newest we know.
fn clamp_version(kind: PayloadKind, version: i16) -> Result<i16, ProtocolError> {
    if version < 0 {
        Err(ProtocolError::UnsupportedVersion { kind, version })
    } else {
        Ok(version.min(MAX_KNOWN_VERSION))
    }
}

fn split_header(kind: PayloadKind, payload: &[u8]) -> Result<(i16, &[u8]), ProtocolError> {
    let Some((&[hi, lo], body)) = payload.split_first_chunk::<2>() else {
        return Err(ProtocolError::MissingVersion {
            kind,
            len: payload.len(),
        });
    };
    let version = clamp_version(kind, i16::from_be_bytes([hi, lo]))?;
    Ok((version, body))
}

fn encode_with_header<M: Encodable>(
    kind: PayloadKind,
    version: i16,
    message: &M,
) -> Result<Bytes, ProtocolError> {
    let size = message
        .compute_size(version)
        .map_err(encode_error(kind, version))?;
    let mut buf = BytesMut::with_capacity(size.saturating_add(2));
    buf.extend_from_slice(&version.to_be_bytes());
    message
        .encode(&mut buf, version)
        .map_err(encode_error(kind, version))?;
    Ok(buf.freeze())
}

/// Generic over the error so we need not name `kafka-protocol`'s error type
/// (`anyhow::Error`, not a dependency of ours).
fn encode_error<E: fmt::Display>(kind: PayloadKind, version: i16) -> impl Fn(E) -> ProtocolError {
    move |e| ProtocolError::Encode {
        kind,
        version,
        reason: e.to_string(),
    }
}

/// A bounds-checking pass over a payload that mirrors the schema, run before
/// the generated decoder so that every length it trusts is known to fit.
///
/// Offsets in errors count from the start of the payload, header included.
struct Walker<'a> {
    kind: PayloadKind,
    version: i16,
    payload: &'a [u8],
    pos: usize,
}

impl<'a> Walker<'a> {
    /// Starts right after the 2-byte version header.
    fn new(kind: PayloadKind, version: i16, payload: &'a [u8]) -> Self {
        Self {
            kind,
            version,
            payload,
            pos: 2,
        }
    }

    /// `ConsumerProtocolSubscription` of `self.version`.
    fn subscription(&mut self) -> Result<(), ProtocolError> {
        self.array("topics", |w| w.string("topics[]", false))?;
        self.bytes("user_data")?;
        if self.version >= 1 {
            self.array("owned_partitions", |w| {
                w.string("owned_partitions[].topic", false)?;
                w.array("owned_partitions[].partitions", |w| {
                    w.skip("owned_partitions[].partitions[]", 4)
                })
            })?;
        }
        if self.version >= 2 {
            self.skip("generation_id", 4)?;
        }
        if self.version >= 3 {
            self.string("rack_id", true)?;
        }
        Ok(())
    }

    /// `ConsumerProtocolAssignment` (same layout in every version).
    fn assignment(&mut self) -> Result<(), ProtocolError> {
        self.array("assigned_partitions", |w| {
            w.string("assigned_partitions[].topic", false)?;
            w.array("assigned_partitions[].partitions", |w| {
                w.skip("assigned_partitions[].partitions[]", 4)
            })
        })?;
        self.bytes("user_data")
    }

    fn remaining(&self) -> usize {
        self.payload.len().saturating_sub(self.pos)
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.payload.get(self.pos..end)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(ProtocolError::Truncated {
                kind: self.kind,
                version: self.version,
                field,
                offset: self.pos,
                needed: n,
                remaining: self.remaining(),
            }),
        }
    }

    fn skip(&mut self, field: &'static str, n: usize) -> Result<(), ProtocolError> {
        self.take(field, n).map(|_| ())
    }

    fn int16(&mut self, field: &'static str) -> Result<i16, ProtocolError> {
        let bytes = self.take(field, 2)?;
        let array: [u8; 2] = bytes.try_into().map_err(|_| self.truncated(field, 2))?;
        Ok(i16::from_be_bytes(array))
    }

    fn int32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        let bytes = self.take(field, 4)?;
        let array: [u8; 4] = bytes.try_into().map_err(|_| self.truncated(field, 4))?;
        Ok(i32::from_be_bytes(array))
    }

    // Unreachable in practice (`take` returned exactly `n` bytes) but keeps
    // the conversion panic-free without an `unwrap`.
    fn truncated(&self, field: &'static str, needed: usize) -> ProtocolError {
        ProtocolError::Truncated {
            kind: self.kind,
            version: self.version,
            field,
            offset: self.pos,
            needed,
            remaining: self.remaining(),
        }
    }

    fn invalid_length(&self, field: &'static str, offset: usize, length: i32) -> ProtocolError {
        ProtocolError::InvalidLength {
            kind: self.kind,
            version: self.version,
            field,
            offset,
            length,
        }
    }

    /// `STRING` (i16 length) or `NULLABLE_STRING` (-1 = null).
    fn string(&mut self, field: &'static str, nullable: bool) -> Result<(), ProtocolError> {
        let offset = self.pos;
        let len = self.int16(field)?;
        match usize::try_from(len) {
            Ok(n) => self.skip(field, n),
            Err(_) if len == -1 && nullable => Ok(()),
            Err(_) => Err(self.invalid_length(field, offset, i32::from(len))),
        }
    }

    /// `NULLABLE_BYTES` (i32 length, -1 = null); `user_data` is the only one.
    fn bytes(&mut self, field: &'static str) -> Result<(), ProtocolError> {
        let offset = self.pos;
        let len = self.int32(field)?;
        match usize::try_from(len) {
            Ok(n) => self.skip(field, n),
            Err(_) if len == -1 => Ok(()),
            Err(_) => Err(self.invalid_length(field, offset, len)),
        }
    }

    /// Non-nullable `ARRAY` (i32 count) whose elements `each` walks.
    fn array(
        &mut self,
        field: &'static str,
        mut each: impl FnMut(&mut Self) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let offset = self.pos;
        let count = self.int32(field)?;
        // Every element takes at least two bytes, so a count above the bytes
        // left is a lie; rejecting it up front also bounds this loop.
        let n = usize::try_from(count)
            .ok()
            .filter(|&n| n <= self.remaining())
            .ok_or_else(|| self.invalid_length(field, offset, count))?;
        for _ in 0..n {
            each(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v3 subscription exactly as Java's `ConsumerProtocol.serializeSubscription`
    /// writes it for topics [t1, t2], no user data, owning t1-0 and t1-1,
    /// generation 5, rack "r1" — spelled out byte by byte from the schema.
    const JAVA_SUBSCRIPTION_V3: &[u8] = &[
        0x00, 0x03, // version 3
        0x00, 0x00, 0x00, 0x02, // topics: 2 entries
        0x00, 0x02, b't', b'1', // "t1"
        0x00, 0x02, b't', b'2', // "t2"
        0xff, 0xff, 0xff, 0xff, // user_data: null
        0x00, 0x00, 0x00, 0x01, // owned_partitions: 1 entry
        0x00, 0x02, b't', b'1', //   topic "t1"
        0x00, 0x00, 0x00, 0x02, //   partitions: 2 entries
        0x00, 0x00, 0x00, 0x00, //     0
        0x00, 0x00, 0x00, 0x01, //     1
        0x00, 0x00, 0x00, 0x05, // generation_id 5
        0x00, 0x02, b'r', b'1', // rack_id "r1"
    ];

    /// A v3 assignment as Java writes it: t1 partitions 0 and 2, t2 partition 1,
    /// no user data.
    const JAVA_ASSIGNMENT_V3: &[u8] = &[
        0x00, 0x03, // version 3
        0x00, 0x00, 0x00, 0x02, // assigned_partitions: 2 entries
        0x00, 0x02, b't', b'1', //   topic "t1"
        0x00, 0x00, 0x00, 0x02, //   partitions: 2 entries
        0x00, 0x00, 0x00, 0x00, //     0
        0x00, 0x00, 0x00, 0x02, //     2
        0x00, 0x02, b't', b'2', //   topic "t2"
        0x00, 0x00, 0x00, 0x01, //   partitions: 1 entry
        0x00, 0x00, 0x00, 0x01, //     1
        0xff, 0xff, 0xff, 0xff, // user_data: null
    ];

    fn java_subscription() -> Subscription {
        Subscription {
            topics: vec!["t1".into(), "t2".into()],
            user_data: None,
            owned_partitions: vec![TopicPartitions::new("t1", [0, 1])],
            generation_id: Some(5),
            rack_id: Some("r1".into()),
        }
    }

    fn java_assignment() -> Assignment {
        Assignment::new(vec![
            TopicPartitions::new("t1", [0, 2]),
            TopicPartitions::new("t2", [1]),
        ])
    }

    #[test]
    fn subscription_v3_matches_java_bytes_both_ways() {
        assert_eq!(
            Subscription::decode(JAVA_SUBSCRIPTION_V3),
            Ok(java_subscription())
        );
        let encoded = java_subscription()
            .encode(SUBSCRIPTION_VERSION)
            .expect("encodes");
        assert_eq!(&encoded[..], JAVA_SUBSCRIPTION_V3);
    }

    #[test]
    fn assignment_v3_matches_java_bytes_both_ways() {
        assert_eq!(
            Assignment::decode(JAVA_ASSIGNMENT_V3),
            Ok(java_assignment())
        );
        let encoded = java_assignment()
            .encode(ASSIGNMENT_VERSION)
            .expect("encodes");
        assert_eq!(&encoded[..], JAVA_ASSIGNMENT_V3);
    }

    #[test]
    fn subscription_v0_has_only_topics_and_user_data() {
        let bytes: &[u8] = &[
            0x00, 0x00, // version 0
            0x00, 0x00, 0x00, 0x01, // topics: 1
            0x00, 0x03, b'a', b'b', b'c', // "abc"
            0x00, 0x00, 0x00, 0x02, 0xca, 0xfe, // user_data: 2 bytes
        ];
        let expected = Subscription {
            topics: vec!["abc".into()],
            user_data: Some(Bytes::from_static(&[0xca, 0xfe])),
            ..Subscription::default()
        };
        assert_eq!(Subscription::decode(bytes), Ok(expected.clone()));
        assert_eq!(&expected.encode(0).expect("encodes")[..], bytes);

        // Fields a version lacks are dropped on encode, as in Java.
        let richer = Subscription {
            generation_id: Some(9),
            rack_id: Some("r".into()),
            owned_partitions: vec![TopicPartitions::new("abc", [0])],
            ..expected
        };
        assert_eq!(&richer.encode(0).expect("encodes")[..], bytes);
    }

    #[test]
    fn subscription_v1_and_v2_layouts() {
        let v1: &[u8] = &[
            0x00, 0x01, // version 1
            0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b'x', // topics ["x"]
            0xff, 0xff, 0xff, 0xff, // user_data null
            0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b'x', // owned: topic "x"
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, //   partitions [7]
        ];
        let expected_v1 = Subscription {
            topics: vec!["x".into()],
            owned_partitions: vec![TopicPartitions::new("x", [7])],
            ..Subscription::default()
        };
        assert_eq!(Subscription::decode(v1), Ok(expected_v1.clone()));
        assert_eq!(&expected_v1.encode(1).expect("encodes")[..], v1);

        let mut v2 = v1.to_vec();
        v2[1] = 2;
        v2.extend_from_slice(&[0x00, 0x00, 0x00, 0x2a]); // generation 42
        let expected_v2 = Subscription {
            generation_id: Some(42),
            ..expected_v1
        };
        assert_eq!(Subscription::decode(&v2), Ok(expected_v2.clone()));
        assert_eq!(&expected_v2.encode(2).expect("encodes")[..], &v2[..]);
    }

    #[test]
    fn generation_minus_one_and_empty_rack_decode_as_none() {
        let mut bytes = java_subscription().encode(3).expect("encodes").to_vec();
        // Replace generation 5 / rack "r1" with -1 / "".
        let tail = bytes.len() - 8;
        bytes.truncate(tail);
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x00, 0x00]);
        let decoded = Subscription::decode(&bytes).expect("decodes");
        assert_eq!(decoded.generation_id, None);
        assert_eq!(decoded.rack_id, None);

        // A null rack is fine too.
        let tail = bytes.len() - 2;
        bytes.truncate(tail);
        bytes.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(Subscription::decode(&bytes).expect("decodes").rack_id, None);
    }

    #[test]
    fn newer_versions_are_read_as_v3_and_trailing_bytes_ignored() {
        let mut future = JAVA_SUBSCRIPTION_V3.to_vec();
        future[1] = 9; // version 9
        future.extend_from_slice(&[0x00, 0x00, 0x00, 0x01, 0xde, 0xad]); // unknown v9 fields
        assert_eq!(Subscription::decode(&future), Ok(java_subscription()));

        let mut future = JAVA_ASSIGNMENT_V3.to_vec();
        future[0] = 0x7f; // version 32512
        future.push(0x42);
        assert_eq!(Assignment::decode(&future), Ok(java_assignment()));

        // Encoding at a newer version writes what we know, as v3 (Java clamps too).
        let encoded = java_subscription().encode(9).expect("encodes");
        assert_eq!(&encoded[..], JAVA_SUBSCRIPTION_V3);
    }

    #[test]
    fn assignment_versions_share_one_layout() {
        for version in 0..=3i16 {
            let mut bytes = JAVA_ASSIGNMENT_V3.to_vec();
            bytes[..2].copy_from_slice(&version.to_be_bytes());
            assert_eq!(
                Assignment::decode(&bytes),
                Ok(java_assignment()),
                "v{version}"
            );
            assert_eq!(
                &java_assignment().encode(version).expect("encodes")[..],
                &bytes[..]
            );
        }
    }

    #[test]
    fn encode_sorts_like_java() {
        let sub = Subscription {
            topics: vec!["b".into(), "a".into(), "c".into()],
            owned_partitions: vec![
                TopicPartitions::new("b", [3, 1]),
                TopicPartitions::new("a", [2]),
                TopicPartitions::new("b", [0]),
            ],
            ..Subscription::default()
        };
        let decoded = Subscription::decode(&sub.encode(3).expect("encodes")).expect("decodes");
        assert_eq!(decoded.topics, ["a", "b", "c"]);
        assert_eq!(
            decoded.owned_partitions,
            [
                TopicPartitions::new("a", [2]),
                TopicPartitions::new("b", [0, 1, 3])
            ]
        );

        // Java rebuilds the groups from flat (topic, partition) pairs, so a
        // topic listed without partitions is not written at all.
        let sub = Subscription {
            owned_partitions: vec![TopicPartitions::new("empty", [])],
            ..Subscription::new(["empty"])
        };
        let decoded = Subscription::decode(&sub.encode(3).expect("encodes")).expect("decodes");
        assert!(decoded.owned_partitions.is_empty());
    }

    #[test]
    fn round_trips() {
        let subs = [
            Subscription::default(),
            Subscription::new(["orders"]),
            Subscription {
                topics: vec!["a".into(), "b".into()],
                user_data: Some(Bytes::from_static(b"\x00\x01user")),
                owned_partitions: vec![
                    TopicPartitions::new("a", [0, 5]),
                    TopicPartitions::new("b", [1]),
                ],
                generation_id: Some(i32::MAX),
                rack_id: Some("eu-west-1a".into()),
            },
            Subscription {
                user_data: Some(Bytes::new()),
                generation_id: Some(0),
                ..Subscription::new(["ünïcödé-topic"])
            },
        ];
        for sub in subs {
            let bytes = sub.encode(SUBSCRIPTION_VERSION).expect("encodes");
            assert_eq!(Subscription::decode(&bytes), Ok(sub));
        }

        let assignments = [
            Assignment::default(),
            java_assignment(),
            Assignment {
                partitions: vec![
                    TopicPartitions::new("z", [9, 1]),
                    TopicPartitions::new("a", [0]),
                ],
                user_data: Some(Bytes::from_static(b"sticky")),
            },
        ];
        for assignment in assignments {
            for version in 0..=3 {
                let bytes = assignment.encode(version).expect("encodes");
                assert_eq!(Assignment::decode(&bytes), Ok(assignment.clone()));
            }
        }
    }

    #[test]
    fn assignment_helpers() {
        let a = java_assignment();
        assert!(!a.is_empty());
        assert_eq!(
            a.topic_partitions().collect::<Vec<_>>(),
            [("t1", 0), ("t1", 2), ("t2", 1)]
        );
        assert!(Assignment::default().is_empty());
        assert!(Assignment::new(vec![TopicPartitions::new("t", [])]).is_empty());
    }

    #[test]
    fn missing_or_negative_version_is_an_error() {
        for payload in [&[][..], &[0x00][..]] {
            assert_eq!(
                Subscription::decode(payload),
                Err(ProtocolError::MissingVersion {
                    kind: PayloadKind::Subscription,
                    len: payload.len()
                })
            );
            assert!(matches!(
                Assignment::decode(payload),
                Err(ProtocolError::MissingVersion { .. })
            ));
        }
        assert_eq!(
            Subscription::decode(&[0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            Err(ProtocolError::UnsupportedVersion {
                kind: PayloadKind::Subscription,
                version: -1
            })
        );
        assert!(matches!(
            java_assignment().encode(-2),
            Err(ProtocolError::UnsupportedVersion { version: -2, .. })
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..JAVA_SUBSCRIPTION_V3.len() {
            let result = Subscription::decode(&JAVA_SUBSCRIPTION_V3[..len]);
            assert!(result.is_err(), "prefix of {len} bytes decoded: {result:?}");
        }
        for len in 0..JAVA_ASSIGNMENT_V3.len() {
            let result = Assignment::decode(&JAVA_ASSIGNMENT_V3[..len]);
            assert!(result.is_err(), "prefix of {len} bytes decoded: {result:?}");
        }
        assert_eq!(
            Subscription::decode(&JAVA_SUBSCRIPTION_V3[..9]),
            Err(ProtocolError::Truncated {
                kind: PayloadKind::Subscription,
                version: 3,
                field: "topics[]",
                offset: 8,
                needed: 2,
                remaining: 1,
            })
        );
    }

    #[test]
    fn absurd_lengths_are_rejected_without_allocating() {
        // 2^31-1 topics in a 10-byte payload.
        let huge = [0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            Subscription::decode(&huge),
            Err(ProtocolError::InvalidLength {
                kind: PayloadKind::Subscription,
                version: 0,
                field: "topics",
                offset: 2,
                length: i32::MAX,
            })
        );
        // 2^31-1 partitions for one topic.
        let huge = [
            0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b't', 0x7f, 0xff, 0xff, 0xff,
        ];
        assert!(matches!(
            Assignment::decode(&huge),
            Err(ProtocolError::InvalidLength {
                field: "assigned_partitions[].partitions",
                ..
            })
        ));
        // Negative (non-null) lengths.
        let negative_topic = [0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0xfe];
        assert!(matches!(
            Subscription::decode(&negative_topic),
            Err(ProtocolError::InvalidLength {
                field: "topics[]",
                length: -2,
                ..
            })
        ));
        let null_topic = [0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0xff];
        assert!(matches!(
            Subscription::decode(&null_topic),
            Err(ProtocolError::InvalidLength {
                field: "topics[]",
                length: -1,
                ..
            })
        ));
        let null_array = [0x00, 0x00, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Assignment::decode(&null_array),
            Err(ProtocolError::InvalidLength {
                field: "assigned_partitions",
                length: -1,
                ..
            })
        ));
        let negative_user_data = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(
            Subscription::decode(&negative_user_data),
            Err(ProtocolError::InvalidLength {
                field: "user_data",
                length: -2,
                ..
            })
        ));
    }

    #[test]
    fn invalid_utf8_is_malformed() {
        let bytes = [
            0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0xc3, 0x28, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(matches!(
            Subscription::decode(&bytes),
            Err(ProtocolError::Malformed { version: 0, .. })
        ));
    }

    #[test]
    fn oversized_topic_name_fails_to_encode() {
        let sub = Subscription::new(["x".repeat(40_000)]);
        assert!(matches!(sub.encode(3), Err(ProtocolError::Encode { .. })));
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        // Deterministic xorshift so failures reproduce.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = usize::try_from(next() % 48).unwrap_or(0);
            let mut bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
            if let Some(b) = bytes.get_mut(0) {
                *b = 0; // keep the version plausible so the body gets parsed
            }
            let _ = Subscription::decode(&bytes);
            let _ = Assignment::decode(&bytes);
        }
        for seed in [JAVA_SUBSCRIPTION_V3, JAVA_ASSIGNMENT_V3] {
            for _ in 0..5_000 {
                let mut bytes = seed.to_vec();
                let flips = next() % 4 + 1;
                for _ in 0..flips {
                    let at = usize::try_from(next()).unwrap_or(0) % bytes.len();
                    if let Some(b) = bytes.get_mut(at) {
                        *b = next().to_le_bytes()[0];
                    }
                }
                let _ = Subscription::decode(&bytes);
                let _ = Assignment::decode(&bytes);
            }
        }
    }

    #[test]
    fn java_string_order_is_utf16() {
        use std::cmp::Ordering;
        assert_eq!(java_string_cmp("a", "b"), Ordering::Less);
        assert_eq!(java_string_cmp("a", "aa"), Ordering::Less);
        assert_eq!(java_string_cmp("B", "a"), Ordering::Less);
        // U+FFFD sorts after U+1F600 in UTF-8 byte order but before it in UTF-16.
        assert_eq!("\u{FFFD}".cmp("\u{1F600}"), Ordering::Less);
        assert_eq!(java_string_cmp("\u{FFFD}", "\u{1F600}"), Ordering::Greater);
    }
}
