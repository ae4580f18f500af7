//! Partition assignors run by the group leader: Java-identical `range` and
//! `roundrobin` here, `sticky` in [`sticky`].
//!
//! With the classic protocol the coordinator picks one member as leader and
//! that member computes everyone's assignment. A group can mix our consumers
//! with Java (or librdkafka) ones, and any of them may be leader, so our
//! assignors must produce exactly what Java's
//! `org.apache.kafka.clients.consumer.RangeAssignor` / `RoundRobinAssignor`
//! produce for the same input — otherwise partitions could move every time
//! leadership changes hands.
//!
//! Java details reproduced here:
//! - Members are ordered like Java's `AbstractPartitionAssignor.MemberInfo`:
//!   members with a `group.instance.id` (static members) first, by instance
//!   id; then dynamic members by member id. Strings compare like Java's
//!   `String.compareTo` (UTF-16 code units), see [`java_string_cmp`].
//!   Two members with the same instance id cannot coexist in a group (the
//!   broker fences one); if it happens anyway we break the tie by member id,
//!   where Java would keep its `HashMap` order.
//! - Topics the leader has no partition count for, or a count ≤ 0 for, are
//!   skipped (Java's `AbstractPartitionAssignor` drops them before assigning).
//! - Every member appears in the result, with an empty list if it got nothing.
//!
//! Not reproduced: Java 3.5+'s rack-aware range assignment (KIP-881). It only
//! kicks in when members send a `client.rack` *and* partitions have replicas
//! on a subset of racks; we never send a rack id, so a group with our members
//! as leader assigns exactly as Java does without racks. If Java members with
//! racks join a group we lead, we ignore their racks (still a valid, balanced
//! assignment, just not rack-aligned).
//!
//! The order of partitions within a member's list is not significant to
//! Kafka (Java's own order depends on `HashMap` iteration); we return topics
//! in byte order and partitions ascending, so results are deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;

use self::sticky::{CooperativeStickyAssignor, StickyAssignor, COOPERATIVE_STICKY, STICKY};
use crate::payload::{java_string_cmp, Assignment, ProtocolError, Subscription, TopicPartitions};

#[cfg(feature = "unstable-fuzzing")]
pub mod sticky;
#[cfg(not(feature = "unstable-fuzzing"))]
pub(crate) mod sticky;

/// Name of the range assignor in JoinGroup protocols.
pub const RANGE: &str = "range";

/// Name of the round-robin assignor in JoinGroup protocols.
pub const ROUND_ROBIN: &str = "roundrobin";

/// The leader's result: member id → its partitions, grouped per topic.
pub type GroupAssignment = BTreeMap<String, Vec<TopicPartitions>>;

/// One group member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberSubscription {
    /// The member id the coordinator gave the member.
    pub member_id: String,
    /// Its `group.instance.id`, for static members. Comes from the JoinGroup
    /// response's member entry, not from the subscription payload.
    pub group_instance_id: Option<String>,
    /// The topics from its decoded subscription.
    pub topics: Vec<String>,
    /// The partitions it owns now (subscription v1+); only the sticky
    /// assignors look at these.
    pub owned_partitions: Vec<TopicPartitions>,
    /// Its generation from the subscription (v2+), if any.
    pub generation_id: Option<i32>,
    /// The assignor-specific userData of its subscription.
    pub user_data: Option<Bytes>,
}

impl MemberSubscription {
    /// A member with the given identity and topics.
    #[cfg(any(test, feature = "unstable-fuzzing"))]
    pub fn new<I, T>(
        member_id: impl Into<String>,
        group_instance_id: Option<String>,
        topics: I,
    ) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self {
            member_id: member_id.into(),
            group_instance_id,
            topics: topics.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// A member from its decoded JoinGroup metadata, with everything the
    /// assignors use. The rack id is not kept: no assignor here is rack-aware.
    pub fn from_subscription(
        member_id: impl Into<String>,
        group_instance_id: Option<String>,
        subscription: Subscription,
    ) -> Self {
        Self {
            member_id: member_id.into(),
            group_instance_id,
            topics: subscription.topics,
            owned_partitions: subscription.owned_partitions,
            generation_id: subscription.generation_id,
            user_data: subscription.user_data,
        }
    }
}

/// A partition assignment strategy, as offered in JoinGroup and run by the leader.
pub trait Assignor: Send + Sync + fmt::Debug {
    #[cfg(any(test, feature = "unstable-fuzzing"))]
    /// The protocol name sent in JoinGroup (`range`, `roundrobin`).
    fn name(&self) -> &'static str;

    /// Assign the partitions of the subscribed topics to `members`.
    ///
    /// `partitions_per_topic` holds the partition count of every topic the
    /// leader has metadata for; partitions are `0..count`. Members are keyed
    /// by member id; if an id appears twice, the first entry wins. The result
    /// has an entry for every member.
    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions_per_topic: &BTreeMap<String, i32>,
    ) -> GroupAssignment;
}

/// Whether this crate implements the assignor of that protocol name
/// (`range`, `roundrobin`, `sticky`, `cooperative-sticky`; exact match, as
/// in Java).
pub fn is_known_assignor(name: &str) -> bool {
    assignor_by_name(name).is_some()
}

/// Look an assignor up by its protocol name (exact match, as in Java).
pub fn assignor_by_name(name: &str) -> Option<Box<dyn Assignor>> {
    match name {
        RANGE => Some(Box::new(RangeAssignor)),
        ROUND_ROBIN => Some(Box::new(RoundRobinAssignor)),
        STICKY => Some(Box::new(StickyAssignor)),
        COOPERATIVE_STICKY => Some(Box::new(CooperativeStickyAssignor)),
        _ => None,
    }
}

/// Whether a member offering `assignors` follows KIP-429's COOPERATIVE
/// rebalance protocol. Java's `ConsumerCoordinator` picks the most advanced
/// protocol that *every* configured assignor supports, and only
/// `cooperative-sticky` supports COOPERATIVE: a list that also names an
/// eager assignor (`range,cooperative-sticky`, the first step of the
/// rolling upgrade) stays EAGER whichever assignor the group selects.
pub fn is_cooperative(assignors: &[String]) -> bool {
    !assignors.is_empty() && assignors.iter().all(|a| a == COOPERATIVE_STICKY)
}

/// Every topic any member subscribes to: what the leader needs metadata for
/// before it can assign.
pub fn subscribed_topics(members: &[MemberSubscription]) -> BTreeSet<String> {
    members
        .iter()
        .flat_map(|m| m.topics.iter().cloned())
        .collect()
}

/// Encode each member's share as the SyncGroup assignment payload.
pub fn encode_group_assignment(
    assignment: &GroupAssignment,
    version: i16,
) -> Result<BTreeMap<String, Bytes>, ProtocolError> {
    assignment
        .iter()
        .map(|(member_id, partitions)| {
            Assignment::new(partitions.clone())
                .encode(version)
                .map(|bytes| (member_id.clone(), bytes))
        })
        .collect()
}

/// Java's `RangeAssignor` (without racks): per topic, the subscribed members
/// in [member order](self) each get a contiguous range of partitions; the
/// first `partitions % members` of them get one extra.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    #[cfg(any(test, feature = "unstable-fuzzing"))]
    fn name(&self) -> &'static str {
        RANGE
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions_per_topic: &BTreeMap<String, i32>,
    ) -> GroupAssignment {
        let members = unique_sorted_members(members);
        let mut result = ResultBuilder::new(members.iter().map(|m| m.member_id.as_str()));

        for (topic, &count) in partitions_per_topic {
            let Ok(count) = u32::try_from(count) else {
                continue;
            };
            // Java builds this list from each member's subscription and
            // de-duplicates it per member (`Collectors.toMap` by member id).
            let consumers: Vec<&MemberSubscription> = members
                .iter()
                .copied()
                .filter(|m| m.topics.iter().any(|t| t == topic))
                .collect();
            let Ok(n_consumers) = u32::try_from(consumers.len()) else {
                continue;
            };
            if count == 0 || n_consumers == 0 {
                continue;
            }
            let per_consumer = count / n_consumers;
            let with_extra = count % n_consumers;
            let mut next = 0u32;
            for (i, consumer) in (0u32..).zip(&consumers) {
                let len = per_consumer + u32::from(i < with_extra);
                // Both bounds stay ≤ count ≤ i32::MAX: no overflow, and the
                // conversion to i32 below always holds.
                let end = next + len;
                result.add(
                    &consumer.member_id,
                    topic,
                    (next..end).filter_map(|p| i32::try_from(p).ok()),
                );
                next = end;
            }
        }
        result.finish()
    }
}

/// Java's `RoundRobinAssignor`: all partitions of all subscribed topics,
/// sorted by (topic, partition), dealt in turn to the members in
/// [member order](self), skipping members not subscribed to the partition's
/// topic. The turn carries over from one topic to the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    #[cfg(any(test, feature = "unstable-fuzzing"))]
    fn name(&self) -> &'static str {
        ROUND_ROBIN
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions_per_topic: &BTreeMap<String, i32>,
    ) -> GroupAssignment {
        let members = unique_sorted_members(members);
        let mut result = ResultBuilder::new(members.iter().map(|m| m.member_id.as_str()));
        if members.is_empty() {
            return result.finish();
        }
        let subscribed: Vec<BTreeSet<&str>> = members
            .iter()
            .map(|m| m.topics.iter().map(String::as_str).collect())
            .collect();

        // Java: a TreeSet<String> of every member's topics.
        let mut topics: Vec<&str> = subscribed.iter().flatten().copied().collect();
        topics.sort_unstable_by(|a, b| java_string_cmp(a, b));
        topics.dedup();

        // Java's CircularIterator over the sorted members: `turn` is its cursor.
        let mut turn = 0usize;
        for topic in topics {
            let count = partitions_per_topic.get(topic).copied().unwrap_or(0);
            for partition in 0..count.max(0) {
                // Advance to the next member subscribed to `topic`. Some member
                // is (the topic came from a subscription), so this finds one
                // within one lap; bounding it to a lap keeps that obvious.
                let Some(offset) = (0..members.len()).find(|offset| {
                    subscribed
                        .get((turn + offset) % members.len())
                        .is_some_and(|s| s.contains(topic))
                }) else {
                    break;
                };
                let owner = (turn + offset) % members.len();
                if let Some(member) = members.get(owner) {
                    result.add(&member.member_id, topic, [partition]);
                }
                turn = (owner + 1) % members.len();
            }
        }
        result.finish()
    }
}

/// Members de-duplicated by member id (first wins) in Java's `MemberInfo` order.
fn unique_sorted_members(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut seen = BTreeSet::new();
    let mut unique: Vec<&MemberSubscription> = members
        .iter()
        .filter(|m| seen.insert(m.member_id.as_str()))
        .collect();
    unique.sort_by(|a, b| member_order(a, b));
    unique
}

/// Java's `MemberInfo.compareTo`, with a member-id tie-break for the
/// impossible duplicate-instance-id case.
fn member_order(a: &MemberSubscription, b: &MemberSubscription) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => {
            java_string_cmp(x, y).then_with(|| java_string_cmp(&a.member_id, &b.member_id))
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => java_string_cmp(&a.member_id, &b.member_id),
    }
}

/// Accumulates partitions per member and topic, then groups them for the wire.
pub(crate) struct ResultBuilder {
    members: BTreeMap<String, BTreeMap<String, Vec<i32>>>,
}

impl ResultBuilder {
    /// Every member gets an entry, even if it gets nothing.
    pub(crate) fn new<'a>(member_ids: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            members: member_ids
                .into_iter()
                .map(|id| (id.to_owned(), BTreeMap::new()))
                .collect(),
        }
    }

    /// Adds `partitions` of `topic` to `member_id`; a topic only gets an
    /// entry once it has a partition.
    pub(crate) fn add(
        &mut self,
        member_id: &str,
        topic: &str,
        partitions: impl IntoIterator<Item = i32>,
    ) {
        let mut partitions = partitions.into_iter().peekable();
        if partitions.peek().is_none() {
            return;
        }
        if let Some(topics) = self.members.get_mut(member_id) {
            topics
                .entry(topic.to_owned())
                .or_default()
                .extend(partitions);
        }
    }

    pub(crate) fn finish(self) -> GroupAssignment {
        self.members
            .into_iter()
            .map(|(member_id, topics)| {
                let mut grouped: Vec<TopicPartitions> = topics
                    .into_iter()
                    .map(|(topic, partitions)| TopicPartitions { topic, partitions })
                    .collect();
                for tp in &mut grouped {
                    tp.partitions.sort_unstable();
                }
                (member_id, grouped)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription::new(id, None, topics.iter().copied())
    }

    fn static_member(id: &str, instance: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription::new(id, Some(instance.to_owned()), topics.iter().copied())
    }

    fn partitions(counts: &[(&str, i32)]) -> BTreeMap<String, i32> {
        counts.iter().map(|&(t, n)| (t.to_owned(), n)).collect()
    }

    /// One member's expected share: `(topic, partitions)` pairs.
    type Share<'a> = &'a [(&'a str, &'a [i32])];

    /// `expected` as `(member, [(topic, [partitions])])`.
    fn expect(expected: &[(&str, Share<'_>)]) -> GroupAssignment {
        expected
            .iter()
            .map(|(member, topics)| {
                (
                    (*member).to_owned(),
                    topics
                        .iter()
                        .map(|(t, ps)| TopicPartitions::new(*t, ps.to_vec()))
                        .collect(),
                )
            })
            .collect()
    }

    fn range(members: &[MemberSubscription], counts: &[(&str, i32)]) -> GroupAssignment {
        RangeAssignor.assign(members, &partitions(counts))
    }

    fn round_robin(members: &[MemberSubscription], counts: &[(&str, i32)]) -> GroupAssignment {
        RoundRobinAssignor.assign(members, &partitions(counts))
    }

    #[test]
    fn lookup_by_name() {
        assert_eq!(assignor_by_name("range").map(|a| a.name()), Some("range"));
        assert_eq!(
            assignor_by_name("roundrobin").map(|a| a.name()),
            Some("roundrobin")
        );
        assert_eq!(assignor_by_name("sticky").map(|a| a.name()), Some("sticky"));
        assert!(assignor_by_name("Range").is_none());
        assert_eq!(
            assignor_by_name("cooperative-sticky").map(|a| a.name()),
            Some("cooperative-sticky")
        );
        assert!(assignor_by_name("").is_none());
    }

    #[test]
    fn cooperative_only_when_every_assignor_is() {
        let list = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        assert!(is_cooperative(&list("cooperative-sticky")));
        // Java: the most advanced protocol *all* assignors support.
        assert!(!is_cooperative(&list("range,cooperative-sticky")));
        assert!(!is_cooperative(&list("cooperative-sticky,range")));
        assert!(!is_cooperative(&list("sticky")));
        assert!(!is_cooperative(&[]));
    }

    // --- RangeAssignorTest ---

    #[test]
    fn range_one_consumer_no_topic() {
        assert_eq!(range(&[member("c", &[])], &[]), expect(&[("c", &[])]));
    }

    #[test]
    fn range_one_consumer_nonexistent_topic() {
        assert_eq!(range(&[member("c", &["t"])], &[]), expect(&[("c", &[])]));
        assert_eq!(
            range(&[member("c", &["t"])], &[("t", 0)]),
            expect(&[("c", &[])])
        );
    }

    #[test]
    fn range_one_consumer_one_topic() {
        assert_eq!(
            range(&[member("c", &["t"])], &[("t", 3)]),
            expect(&[("c", &[("t", &[0, 1, 2])])])
        );
    }

    #[test]
    fn range_only_assigns_partitions_from_subscribed_topics() {
        assert_eq!(
            range(&[member("c", &["t"])], &[("t", 3), ("other", 3)]),
            expect(&[("c", &[("t", &[0, 1, 2])])])
        );
    }

    #[test]
    fn range_one_consumer_multiple_topics() {
        assert_eq!(
            range(&[member("c", &["t1", "t2"])], &[("t1", 1), ("t2", 2)]),
            expect(&[("c", &[("t1", &[0]), ("t2", &[0, 1])])])
        );
    }

    #[test]
    fn range_two_consumers_one_topic_one_partition() {
        assert_eq!(
            range(&[member("c1", &["t"]), member("c2", &["t"])], &[("t", 1)]),
            expect(&[("c1", &[("t", &[0])]), ("c2", &[])])
        );
    }

    #[test]
    fn range_two_consumers_one_topic_two_partitions() {
        assert_eq!(
            range(&[member("c1", &["t"]), member("c2", &["t"])], &[("t", 2)]),
            expect(&[("c1", &[("t", &[0])]), ("c2", &[("t", &[1])])])
        );
    }

    #[test]
    fn range_multiple_consumers_mixed_topics() {
        // RangeAssignorTest.testMultipleConsumersMixedTopics
        let members = [
            member("consumer1", &["t1"]),
            member("consumer2", &["t1", "t2"]),
            member("consumer3", &["t1"]),
        ];
        assert_eq!(
            range(&members, &[("t1", 3), ("t2", 2)]),
            expect(&[
                ("consumer1", &[("t1", &[0])]),
                ("consumer2", &[("t1", &[1]), ("t2", &[0, 1])]),
                ("consumer3", &[("t1", &[2])]),
            ])
        );
    }

    #[test]
    fn range_two_consumers_two_topics_six_partitions() {
        // The example in RangeAssignor's Javadoc, and
        // RangeAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
        let members = [member("c0", &["t0", "t1"]), member("c1", &["t0", "t1"])];
        assert_eq!(
            range(&members, &[("t0", 3), ("t1", 3)]),
            expect(&[
                ("c0", &[("t0", &[0, 1]), ("t1", &[0, 1])]),
                ("c1", &[("t0", &[2]), ("t1", &[2])]),
            ])
        );
    }

    #[test]
    fn range_uneven_partition_counts() {
        // 7 partitions over 3 consumers: 3, 2, 2; 2 over 3: 1, 1, 0.
        let members = [
            member("a", &["big", "small"]),
            member("b", &["big", "small"]),
            member("c", &["big", "small"]),
        ];
        assert_eq!(
            range(&members, &[("big", 7), ("small", 2)]),
            expect(&[
                ("a", &[("big", &[0, 1, 2]), ("small", &[0])]),
                ("b", &[("big", &[3, 4]), ("small", &[1])]),
                ("c", &[("big", &[5, 6])]),
            ])
        );
    }

    #[test]
    fn range_orders_members_by_member_id_not_input_order() {
        let members = [
            member("c2", &["t"]),
            member("c10", &["t"]),
            member("c1", &["t"]),
        ];
        // Lexicographic: c1 < c10 < c2.
        assert_eq!(
            range(&members, &[("t", 4)]),
            expect(&[
                ("c1", &[("t", &[0, 1])]),
                ("c10", &[("t", &[2])]),
                ("c2", &[("t", &[3])]),
            ])
        );
    }

    #[test]
    fn range_static_members_sort_by_instance_id_first() {
        // RangeAssignorTest.testStaticMemberRangeAssignmentPersistent: member
        // ids change across restarts, instance ids do not, so the assignment
        // follows the instance ids.
        let before = [
            static_member("consumer-b-1", "instance-1", &["t1", "t2"]),
            static_member("consumer-a-2", "instance-2", &["t1", "t2"]),
        ];
        let after_restart = [
            static_member("consumer-z-3", "instance-1", &["t1", "t2"]),
            static_member("consumer-a-4", "instance-2", &["t1", "t2"]),
        ];
        assert_eq!(
            range(&before, &[("t1", 5), ("t2", 5)]),
            expect(&[
                ("consumer-a-2", &[("t1", &[3, 4]), ("t2", &[3, 4])]),
                ("consumer-b-1", &[("t1", &[0, 1, 2]), ("t2", &[0, 1, 2])]),
            ])
        );
        assert_eq!(
            range(&after_restart, &[("t1", 5), ("t2", 5)]),
            expect(&[
                ("consumer-a-4", &[("t1", &[3, 4]), ("t2", &[3, 4])]),
                ("consumer-z-3", &[("t1", &[0, 1, 2]), ("t2", &[0, 1, 2])]),
            ])
        );
    }

    #[test]
    fn range_static_members_come_before_dynamic_ones() {
        // "a-dynamic" sorts before everything by member id, but static
        // members go first regardless.
        let members = [
            member("a-dynamic", &["t"]),
            static_member("z-static", "instance-b", &["t"]),
            static_member("y-static", "instance-a", &["t"]),
        ];
        assert_eq!(
            range(&members, &[("t", 4)]),
            expect(&[
                ("a-dynamic", &[("t", &[3])]),
                ("y-static", &[("t", &[0, 1])]),
                ("z-static", &[("t", &[2])]),
            ])
        );
    }

    #[test]
    fn range_ignores_duplicate_topics_and_members() {
        let members = [
            member("c1", &["t", "t"]),
            member("c2", &["t"]),
            member("c1", &["other"]), // duplicate id: first entry wins
        ];
        assert_eq!(
            range(&members, &[("t", 4), ("other", 1)]),
            expect(&[("c1", &[("t", &[0, 1])]), ("c2", &[("t", &[2, 3])])])
        );
    }

    #[test]
    fn range_no_members() {
        assert_eq!(range(&[], &[("t", 3)]), GroupAssignment::new());
    }

    // --- RoundRobinAssignorTest ---

    #[test]
    fn round_robin_one_consumer_no_topic() {
        assert_eq!(round_robin(&[member("c", &[])], &[]), expect(&[("c", &[])]));
    }

    #[test]
    fn round_robin_one_consumer_nonexistent_topic() {
        assert_eq!(
            round_robin(&[member("c", &["t"])], &[]),
            expect(&[("c", &[])])
        );
    }

    #[test]
    fn round_robin_one_consumer_one_topic() {
        assert_eq!(
            round_robin(&[member("c", &["t"])], &[("t", 3)]),
            expect(&[("c", &[("t", &[0, 1, 2])])])
        );
    }

    #[test]
    fn round_robin_only_assigns_partitions_from_subscribed_topics() {
        assert_eq!(
            round_robin(&[member("c", &["t"])], &[("t", 3), ("other", 3)]),
            expect(&[("c", &[("t", &[0, 1, 2])])])
        );
    }

    #[test]
    fn round_robin_one_consumer_multiple_topics() {
        assert_eq!(
            round_robin(&[member("c", &["t1", "t2"])], &[("t1", 1), ("t2", 2)]),
            expect(&[("c", &[("t1", &[0]), ("t2", &[0, 1])])])
        );
    }

    #[test]
    fn round_robin_two_consumers_one_topic_one_partition() {
        assert_eq!(
            round_robin(&[member("c1", &["t"]), member("c2", &["t"])], &[("t", 1)]),
            expect(&[("c1", &[("t", &[0])]), ("c2", &[])])
        );
    }

    #[test]
    fn round_robin_two_consumers_one_topic_two_partitions() {
        assert_eq!(
            round_robin(&[member("c1", &["t"]), member("c2", &["t"])], &[("t", 2)]),
            expect(&[("c1", &[("t", &[0])]), ("c2", &[("t", &[1])])])
        );
    }

    #[test]
    fn round_robin_multiple_consumers_mixed_topics() {
        // RoundRobinAssignorTest.testMultipleConsumersMixedTopics
        let members = [
            member("consumer1", &["t1"]),
            member("consumer2", &["t1", "t2"]),
            member("consumer3", &["t1"]),
        ];
        assert_eq!(
            round_robin(&members, &[("t1", 3), ("t2", 2)]),
            expect(&[
                ("consumer1", &[("t1", &[0])]),
                ("consumer2", &[("t1", &[1]), ("t2", &[0, 1])]),
                ("consumer3", &[("t1", &[2])]),
            ])
        );
    }

    #[test]
    fn round_robin_two_consumers_two_topics_six_partitions() {
        // The example in RoundRobinAssignor's Javadoc.
        let members = [member("c0", &["t0", "t1"]), member("c1", &["t0", "t1"])];
        assert_eq!(
            round_robin(&members, &[("t0", 3), ("t1", 3)]),
            expect(&[
                ("c0", &[("t0", &[0, 2]), ("t1", &[1])]),
                ("c1", &[("t0", &[1]), ("t1", &[0, 2])]),
            ])
        );
    }

    #[test]
    fn round_robin_different_subscriptions_javadoc_example() {
        // RoundRobinAssignor's Javadoc: C0 subscribes to t0; C1 to t0, t1;
        // C2 to t0, t1, t2; topics have 1, 2 and 3 partitions.
        let members = [
            member("C0", &["t0"]),
            member("C1", &["t0", "t1"]),
            member("C2", &["t0", "t1", "t2"]),
        ];
        assert_eq!(
            round_robin(&members, &[("t0", 1), ("t1", 2), ("t2", 3)]),
            expect(&[
                ("C0", &[("t0", &[0])]),
                ("C1", &[("t1", &[0])]),
                ("C2", &[("t1", &[1]), ("t2", &[0, 1, 2])]),
            ])
        );
    }

    #[test]
    fn round_robin_turn_carries_over_between_topics() {
        // 3 members, t1 has 2 partitions: c1, c2; then t2 continues at c3.
        let members = [
            member("c1", &["t1", "t2"]),
            member("c2", &["t1", "t2"]),
            member("c3", &["t1", "t2"]),
        ];
        assert_eq!(
            round_robin(&members, &[("t1", 2), ("t2", 4)]),
            expect(&[
                ("c1", &[("t1", &[0]), ("t2", &[1])]),
                ("c2", &[("t1", &[1]), ("t2", &[2])]),
                ("c3", &[("t2", &[0, 3])]),
            ])
        );
    }

    #[test]
    fn round_robin_static_members_ordering() {
        // RoundRobinAssignorTest.testStaticMemberRoundRobinAssignmentPersistent
        // in spirit: instance ids decide the order, member ids do not.
        let members = [
            static_member("consumer-z", "instance-1", &["t1", "t2"]),
            static_member("consumer-a", "instance-2", &["t1", "t2"]),
            member("consumer-0", &["t1", "t2"]),
        ];
        assert_eq!(
            round_robin(&members, &[("t1", 3), ("t2", 3)]),
            expect(&[
                ("consumer-0", &[("t1", &[2]), ("t2", &[2])]),
                ("consumer-a", &[("t1", &[1]), ("t2", &[1])]),
                ("consumer-z", &[("t1", &[0]), ("t2", &[0])]),
            ])
        );
    }

    #[test]
    fn round_robin_topics_sorted_not_input_order() {
        let members = [
            member("c1", &["zeta", "alpha"]),
            member("c2", &["zeta", "alpha"]),
        ];
        assert_eq!(
            round_robin(&members, &[("zeta", 1), ("alpha", 3)]),
            expect(&[
                ("c1", &[("alpha", &[0, 2])]),
                ("c2", &[("alpha", &[1]), ("zeta", &[0])]),
            ])
        );
    }

    #[test]
    fn round_robin_no_members_and_negative_counts() {
        assert_eq!(round_robin(&[], &[("t", 3)]), GroupAssignment::new());
        assert_eq!(
            round_robin(&[member("c", &["t"])], &[("t", -5)]),
            expect(&[("c", &[])])
        );
        assert_eq!(
            range(&[member("c", &["t"])], &[("t", -5)]),
            expect(&[("c", &[])])
        );
    }

    #[test]
    fn every_partition_assigned_exactly_once() {
        let members: Vec<MemberSubscription> = (0..7)
            .map(|i| {
                let topics: Vec<&str> = ["a", "b", "c"].into_iter().take(1 + i % 3).collect();
                if i % 2 == 0 {
                    static_member(&format!("m{i}"), &format!("i{}", 7 - i), &topics)
                } else {
                    member(&format!("m{i}"), &topics)
                }
            })
            .collect();
        let counts = partitions(&[("a", 13), ("b", 5), ("c", 1), ("unsubscribed", 4)]);
        for assignor in [&RangeAssignor as &dyn Assignor, &RoundRobinAssignor] {
            let result = assignor.assign(&members, &counts);
            assert_eq!(result.len(), members.len(), "{}", assignor.name());
            let mut seen: Vec<(String, i32)> = result
                .values()
                .flatten()
                .flat_map(|tp| tp.partitions.iter().map(move |&p| (tp.topic.clone(), p)))
                .collect();
            seen.sort();
            let mut all: Vec<(String, i32)> = [("a", 13), ("b", 5), ("c", 1)]
                .into_iter()
                .flat_map(|(t, n)| (0..n).map(move |p| (t.to_owned(), p)))
                .collect();
            all.sort();
            assert_eq!(seen, all, "{}", assignor.name());
            // Nobody gets a topic they did not subscribe to.
            for m in &members {
                for tp in result.get(&m.member_id).into_iter().flatten() {
                    assert!(
                        m.topics.contains(&tp.topic),
                        "{}: {} got {}",
                        assignor.name(),
                        m.member_id,
                        tp.topic
                    );
                }
            }
        }
    }

    #[test]
    fn helpers_for_the_leader() {
        let members = [member("c1", &["b", "a"]), member("c2", &["a", "c"])];
        assert_eq!(
            subscribed_topics(&members).into_iter().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let assignment = range(&members, &[("a", 2), ("b", 1)]);
        let encoded = encode_group_assignment(&assignment, 3).expect("encodes");
        assert_eq!(encoded.len(), 2);
        for (member_id, bytes) in encoded {
            let decoded = Assignment::decode(&bytes).expect("decodes");
            assert_eq!(Some(&decoded.partitions), assignment.get(&member_id));
        }
    }
}
