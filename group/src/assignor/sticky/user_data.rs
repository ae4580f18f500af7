//! The `userData` the two Java sticky assignors put in a member's
//! subscription, written and read byte for byte like Kafka.
//!
//! - `cooperative-sticky` (`CooperativeStickyAssignor`): one big-endian
//!   `int32`, the generation of the last assignment the member received
//!   (−1 before the first). Subscriptions of version 2+ carry the generation
//!   in their own field, which the leader prefers; the userData is what
//!   clients sending version 0/1 are judged by.
//! - `sticky` (`StickyAssignor`, eager): the member's previous assignment and
//!   its generation, Kafka's `STICKY_ASSIGNOR_USER_DATA_V1` struct:
//!   `[topic: string, partitions: [int32]]`, `generation: int32`. Version 0
//!   lacks the generation. No userData at all before the first assignment.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::java::{string_hash, JavaHashOrder};
use crate::payload::{PayloadKind, ProtocolError, SUBSCRIPTION_VERSION};

/// The `cooperative-sticky` userData: the generation of the last assignment
/// this member received, −1 before the first (Java's `DEFAULT_GENERATION`).
pub fn cooperative_sticky_user_data(generation: i32) -> Bytes {
    Bytes::copy_from_slice(&generation.to_be_bytes())
}

/// The `sticky` userData: `previous` — the partitions of the last assignment,
/// in the order it listed them — and its `generation`.
///
/// Topics are written in the order Java's `HashMap` iterates them (Kafka
/// groups the list with `CollectionUtils.groupPartitionsByTopic`, a
/// `computeIfAbsent` per partition), partitions in list order. Fails only for a topic name longer than 32 767 bytes, which
/// Kafka cannot write either.
pub fn sticky_user_data<'a, I>(previous: I, generation: i32) -> Result<Bytes, ProtocolError>
where
    I: IntoIterator<Item = (&'a str, i32)>,
{
    let mut order = JavaHashOrder::default();
    let mut by_topic: HashMap<&str, Vec<i32>> = HashMap::new();
    for (topic, partition) in previous {
        order.compute_if_absent(topic, string_hash(topic));
        by_topic.entry(topic).or_default().push(partition);
    }
    let topics = order.into_ordered();
    let too_long = |what: String| ProtocolError::Encode {
        kind: PayloadKind::Subscription,
        version: SUBSCRIPTION_VERSION,
        reason: format!("sticky assignor userData: {what}"),
    };
    let mut buf = BytesMut::new();
    buf.put_i32(
        i32::try_from(topics.len()).map_err(|_| too_long(format!("{} topics", topics.len())))?,
    );
    for topic in topics {
        let name_len = i16::try_from(topic.len())
            .map_err(|_| too_long(format!("topic name of {} bytes", topic.len())))?;
        buf.put_i16(name_len);
        buf.put_slice(topic.as_bytes());
        let partitions = by_topic.get(topic).map(Vec::as_slice).unwrap_or_default();
        buf.put_i32(
            i32::try_from(partitions.len())
                .map_err(|_| too_long(format!("{} partitions", partitions.len())))?,
        );
        for &p in partitions {
            buf.put_i32(p);
        }
    }
    buf.put_i32(generation);
    Ok(buf.freeze())
}

/// What a member's sticky-assignor data says it owned, and in which
/// generation (Java's `AbstractStickyAssignor.MemberData`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct MemberData {
    /// Claimed partitions, in the order given.
    pub(crate) partitions: Vec<(String, i32)>,
    /// `None` is Java's `Optional.empty()`, which is not the same as `Some(-1)`.
    pub(crate) generation: Option<i32>,
}

/// The generation in a `cooperative-sticky` userData, as
/// `CooperativeStickyAssignor.memberData` reads it when the subscription has
/// no generation field: none without userData, −1 if it is not 4 bytes long
/// (trailing bytes are ignored).
pub(crate) fn cooperative_generation(user_data: Option<&[u8]>) -> Option<i32> {
    let bytes = user_data?;
    Some(match bytes.first_chunk::<4>() {
        Some(b) => i32::from_be_bytes(*b),
        None => -1,
    })
}

/// `StickyAssignor.memberData`: the v1 layout, else the v0 layout, else
/// nothing with generation −1. Empty or absent userData claims nothing, with
/// no generation. Names that are not UTF-8 decode lossily, as in Java.
pub(crate) fn sticky_member_data(user_data: Option<&[u8]>) -> MemberData {
    let Some(bytes) = user_data.filter(|b| !b.is_empty()) else {
        return MemberData::default();
    };
    let mut reader = Reader(bytes);
    match reader.assignment() {
        // v1 when a generation follows, v0 (no generation) otherwise.
        Some(partitions) => MemberData {
            partitions,
            generation: reader.int32(),
        },
        None => MemberData {
            partitions: Vec::new(),
            generation: Some(-1),
        },
    }
}

/// Reads Kafka's (non-flexible) struct types; `None` wherever Java's reader
/// throws.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn int32(&mut self) -> Option<i32> {
        self.take::<4>().map(i32::from_be_bytes)
    }

    /// An array's element count: never negative (the arrays are not
    /// nullable) and, like Java, no more than the bytes left.
    fn array_len(&mut self) -> Option<usize> {
        let n = usize::try_from(self.int32()?).ok()?;
        (n <= self.0.len()).then_some(n)
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(i16::from_be_bytes(self.take::<2>()?)).ok()?;
        let (s, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(String::from_utf8_lossy(s).into_owned())
    }

    fn assignment(&mut self) -> Option<Vec<(String, i32)>> {
        let topics = self.array_len()?;
        let mut out = Vec::new();
        for _ in 0..topics {
            let topic = self.string()?;
            let partitions = self.array_len()?;
            for _ in 0..partitions {
                out.push((topic.clone(), self.int32()?));
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooperative_round_trip() {
        assert_eq!(&cooperative_sticky_user_data(-1)[..], [0xff; 4]);
        assert_eq!(&cooperative_sticky_user_data(7)[..], [0, 0, 0, 7]);
        assert_eq!(cooperative_generation(None), None);
        assert_eq!(cooperative_generation(Some(&[0, 0, 0, 7, 9])), Some(7));
        assert_eq!(cooperative_generation(Some(&[0, 7])), Some(-1));
        assert_eq!(cooperative_generation(Some(&[])), Some(-1));
    }

    #[test]
    fn sticky_layout_and_round_trip() {
        let bytes = sticky_user_data([("t", 3), ("t", 1)], 5).expect("encodes");
        assert_eq!(
            &bytes[..],
            [
                0, 0, 0, 1, // one topic
                0, 1, b't', // "t"
                0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 1, // [3, 1] in list order
                0, 0, 0, 5, // generation
            ]
        );
        assert_eq!(
            sticky_member_data(Some(&bytes)),
            MemberData {
                partitions: vec![("t".into(), 3), ("t".into(), 1)],
                generation: Some(5),
            }
        );
        // Topics in Java HashMap order: "b" (98) before "c" (99), "BB" and
        // "Aa" (same hash) last-seen first (computeIfAbsent prepends).
        let bytes = sticky_user_data([("c", 0), ("Aa", 0), ("b", 0), ("BB", 0)], 1).expect("ok");
        let topics: Vec<String> = sticky_member_data(Some(&bytes))
            .partitions
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(topics, ["BB", "Aa", "b", "c"]);
        let e = sticky_user_data([("x".repeat(40_000).as_str(), 0)], 1).expect_err("too long");
        assert!(
            e.to_string()
                .contains("sticky assignor userData: topic name of 40000 bytes"),
            "{e}"
        );
    }

    #[test]
    fn sticky_reads_like_java() {
        // v0: no generation.
        let v0 = [0, 0, 0, 1, 0, 1, b'u', 0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(
            sticky_member_data(Some(&v0)),
            MemberData {
                partitions: vec![("u".into(), 2)],
                generation: None
            }
        );
        // Nothing, or nothing readable.
        assert_eq!(sticky_member_data(None), MemberData::default());
        assert_eq!(sticky_member_data(Some(&[])), MemberData::default());
        let unreadable = MemberData {
            partitions: vec![],
            generation: Some(-1),
        };
        for bad in [
            &[0, 0, 0, 1, 0, 1][..],               // truncated
            &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], // negative count
            &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0], // count beyond the bytes
            &[0, 0, 0, 1, 0xff, 0xff, 0, 0],       // negative name length
            &[0, 0, 0, 1, 0, 9, b'a', 0, 0, 0, 0], // name beyond the bytes
        ] {
            assert_eq!(sticky_member_data(Some(bad)), unreadable, "{bad:?}");
        }
        // Invalid UTF-8 is replaced, not rejected.
        let lossy = [0, 0, 0, 1, 0, 1, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4];
        assert_eq!(
            sticky_member_data(Some(&lossy)),
            MemberData {
                partitions: vec![("\u{fffd}".into(), 0)],
                generation: Some(4),
            }
        );
    }
}
