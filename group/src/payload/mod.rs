//! The embedded `ConsumerProtocol` payloads of the classic group protocol:
//! [`Subscription`] (JoinGroup member metadata, in `subscription.rs`) and
//! [`Assignment`] (SyncGroup, in `assignment.rs`).
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
//! `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment`. Another
//! member's JoinGroup metadata is untrusted input for the group leader, so
//! before decoding it we walk it once (`Walker`) against the schema: a bad
//! payload is reported as which field, at which byte, was wrong (the leader
//! logs it and gives that member nothing), and every length is checked
//! against the bytes present. The vendored `kafka-protocol` bounds its own
//! pre-allocation too (`vendor/kafka-protocol/PATCHES.md`).

use std::fmt;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

mod assignment;
mod subscription;

pub use assignment::{Assignment, TopicPartitions};
pub use subscription::Subscription;

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

/// A payload (header included) checked by the [`Walker`] for its `kind`,
/// then decoded: every error names the payload, its version and the field.
fn decode_with_header<M: Decodable>(kind: PayloadKind, payload: &[u8]) -> Result<M, ProtocolError> {
    let (version, body) = split_header(kind, payload)?;
    let mut walker = Walker::new(kind, version, payload);
    match kind {
        PayloadKind::Subscription => walker.subscription()?,
        PayloadKind::Assignment => walker.assignment()?,
    }
    let mut buf = body;
    M::decode(&mut buf, version).map_err(|e| ProtocolError::Malformed {
        kind,
        version,
        reason: e.to_string(),
    })
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
/// the generated decoder: errors name the field and the byte.
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
mod tests;
