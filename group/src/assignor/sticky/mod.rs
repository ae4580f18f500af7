//! Java-identical `cooperative-sticky` and `sticky` assignors (Kafka's
//! `CooperativeStickyAssignor` and `StickyAssignor`, both built on
//! `AbstractStickyAssignor`).
//!
//! Both keep every member's partitions where they are as far as balance
//! allows. `cooperative-sticky` is the assignor of KIP-429's incremental
//! rebalance protocol: members keep consuming what they own through a
//! rebalance, and a partition that has to move from one member to another is
//! left out of this assignment — its owner sees it missing, revokes it and
//! rejoins — and given to its new member in the follow-up rebalance. `sticky`
//! is the older eager variant: everyone gives up everything before joining
//! and says in its userData what it had.
//!
//! Both can be chosen by name
//! ([`assignor_by_name`](crate::assignor::assignor_by_name)). For `sticky`
//! our member remembers its last assignment and generation for the
//! userData; for `cooperative-sticky` it follows the COOPERATIVE rebalance
//! protocol when every assignor it offers supports it, as Java does (it
//! keeps its partitions through the JoinGroup, sends them as owned
//! partitions, revokes what the leader left out, and rejoins).
//!
//! Any member of a group may be its leader, Java or ours, so the result must
//! be Kafka's for the same input, or partitions would move back and forth as
//! leadership changes hands. We follow Kafka 4.x's algorithm step for step
//! (`constrained` when every member subscribes to the same topics, `general`
//! otherwise), including the places where its result depends on the
//! iteration order of Java's `HashMap`s ([`java`]). Conformance is checked
//! against vectors computed by Kafka's own classes
//! (`group/tests/data/sticky-vectors.jsonl`, `make sticky-vectors`).
//!
//! Where Kafka's own result is not a valid assignment — a partition given to
//! a member not subscribed to its topic, or twice, or one that does not
//! exist — or where Kafka throws, we differ on purpose. We run Kafka's
//! algorithm as is first; only if its result would be invalid do we run it
//! again with these corrected:
//! - a member subscribed to nothing (a pattern matching no topic) is not
//!   "subscribed to the same topics" as the others: Kafka's check is fooled
//!   when such a member comes first in `HashMap` order, and then gives it
//!   partitions of topics it did not ask for;
//! - a partition goes back to its owner of an older generation only if that
//!   member still subscribes to its topic.
//!
//! Two inputs are always corrected, as the result is the same whenever
//! Kafka's is valid: an owned partition beyond its topic's partition count (a
//! topic deleted and re-created smaller) is not counted as owned — Kafka
//! would hand out the nonexistent partition, or fail the rebalance; and a
//! topic listed twice in one subscription counts once (Java clients never
//! send that). Where Kafka throws (no members at all; an internal
//! `NullPointerException` when an older owner sits out the balancing) we
//! return a valid assignment. The vectors check each of these.
//!
//! Like our `range`, we ignore `client.rack`: the leader knows partition
//! counts, not replica racks, which is what Kafka does when brokers have no
//! racks.
//!
//! Unlike Kafka's, our assignor keeps no state between rebalances. Kafka's
//! instance remembers the highest generation it has seen; that only changes a
//! result when no current member reports a generation as high as one seen in
//! an earlier rebalance led by the same member.

mod constrained;
mod general;
mod java;
mod user_data;

#[cfg(test)]
mod vectors;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use self::java::{string_hash, topic_partition_hash, JavaHashOrder};
pub use self::user_data::cooperative_sticky_user_data;
pub use self::user_data::sticky_user_data;
use crate::assignor::{Assignor, GroupAssignment, MemberSubscription, ResultBuilder};
use crate::payload::java_string_cmp;

/// Name of the cooperative sticky assignor in JoinGroup protocols.
pub const COOPERATIVE_STICKY: &str = "cooperative-sticky";

/// Name of the eager sticky assignor in JoinGroup protocols.
pub const STICKY: &str = "sticky";

/// Kafka's `CooperativeStickyAssignor`: sticky and balanced, and a partition
/// moving between two members is left unassigned until its owner has revoked
/// it (KIP-429).
///
/// Members' owned partitions and generation come from their subscriptions
/// ([`MemberSubscription::owned_partitions`], `generation_id`, and for
/// subscriptions older than version 2 the userData of
/// [`cooperative_sticky_user_data`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CooperativeStickyAssignor;

impl Assignor for CooperativeStickyAssignor {
    #[cfg(any(test, feature = "unstable-fuzzing"))]
    fn name(&self) -> &'static str {
        COOPERATIVE_STICKY
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions_per_topic: &BTreeMap<String, i32>,
    ) -> GroupAssignment {
        assign(Variant::Cooperative, members, partitions_per_topic)
    }
}

/// Kafka's eager `StickyAssignor`: sticky and balanced; a member's previous
/// partitions come from its userData ([`sticky_user_data`]), since an eager
/// member owns nothing when it joins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StickyAssignor;

impl Assignor for StickyAssignor {
    #[cfg(any(test, feature = "unstable-fuzzing"))]
    fn name(&self) -> &'static str {
        STICKY
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions_per_topic: &BTreeMap<String, i32>,
    ) -> GroupAssignment {
        assign(Variant::Eager, members, partitions_per_topic)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Cooperative,
    Eager,
}

/// A partition: an index into [`Group::topics`] (sorted like Java's
/// `String.compareTo`) and its number, so the derived order is Kafka's
/// `(topic, partition)` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Tp {
    topic: usize,
    partition: i32,
}

#[derive(Debug)]
struct Topic {
    name: String,
    partitions: i32,
    hash: i32,
}

/// One member as the builders see it. Partitions are only those of
/// [`Group::topics`] and within their counts.
#[derive(Debug)]
struct Member {
    id: String,
    /// Its distinct subscribed topic names, sorted: what "all members
    /// subscribe to the same topics" compares.
    topic_names: Vec<String>,
    /// Its subscribed topics that have partitions, in subscription order
    /// (Kafka's `consumer2AllPotentialTopics`).
    topics: Vec<usize>,
    /// The subscription's `ownedPartitions`.
    owned: Vec<Tp>,
    /// The sticky-assignor view of what it owned (Kafka's `MemberData`).
    claimed: Vec<Tp>,
    /// `MemberData.generation`: from the subscription, or else its userData.
    generation: Option<i32>,
    /// The subscription's own generation field, −1 when absent: Kafka judges
    /// a *rival* claim by this one.
    subscription_generation: i32,
}

impl Member {
    fn subscribes(&self, topic: usize) -> bool {
        self.topics.contains(&topic)
    }
}

/// The leader's input, ordered the way Kafka's assignor sees it.
#[derive(Debug)]
struct Group {
    topics: Vec<Topic>,
    /// In the iteration order of Kafka's `HashMap<memberId, Subscription>`.
    members: Vec<Member>,
    /// `rank[i]`: position of `members[i]`'s id in Java string order.
    rank: Vec<usize>,
    /// The inverse of `rank`.
    by_rank: Vec<usize>,
}

impl Group {
    fn new(
        variant: Variant,
        subscriptions: &[MemberSubscription],
        partitions_per_topic: &BTreeMap<String, i32>,
    ) -> Self {
        // JoinGroup order, first entry per member id; then Java's HashMap order.
        let mut seen = BTreeSet::new();
        let mut order = JavaHashOrder::default();
        for s in subscriptions {
            if seen.insert(s.member_id.as_str()) {
                order.insert(s, string_hash(&s.member_id));
            }
        }
        let subscriptions = order.into_ordered();

        // Kafka's partitionsPerTopic: subscribed topics with partitions.
        let mut names: Vec<&str> = subscriptions
            .iter()
            .flat_map(|s| s.topics.iter().map(String::as_str))
            .filter(|t| partitions_per_topic.get(*t).is_some_and(|&n| n > 0))
            .collect();
        names.sort_unstable_by(|a, b| java_string_cmp(a, b));
        names.dedup();
        let topics: Vec<Topic> = names
            .iter()
            .map(|&name| Topic {
                name: name.to_owned(),
                partitions: partitions_per_topic.get(name).copied().unwrap_or(0),
                hash: string_hash(name),
            })
            .collect();
        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let tp = |topic: &str, partition: i32| {
            let t = *index.get(topic)?;
            let count = topics.get(t)?.partitions;
            (0..count).contains(&partition).then_some(Tp {
                topic: t,
                partition,
            })
        };

        let members: Vec<Member> = subscriptions
            .iter()
            .map(|s| {
                let mut topic_names = s.topics.clone();
                topic_names.sort_unstable();
                topic_names.dedup();
                let mut topics = Vec::new();
                for t in &s.topics {
                    if let Some(&i) = index.get(t.as_str()) {
                        if !topics.contains(&i) {
                            topics.push(i);
                        }
                    }
                }
                let owned: Vec<Tp> = s
                    .owned_partitions
                    .iter()
                    .flat_map(|g| g.partitions.iter().filter_map(|&p| tp(&g.topic, p)))
                    .collect();
                // Java: Optional.empty() for a negative generation field.
                let subscription_generation = s.generation_id.filter(|&g| g >= 0);
                let (claimed, generation) = match variant {
                    Variant::Cooperative => (
                        owned.clone(),
                        subscription_generation
                            .or_else(|| user_data::cooperative_generation(s.user_data.as_deref())),
                    ),
                    Variant::Eager => {
                        let data = user_data::sticky_member_data(s.user_data.as_deref());
                        let claimed = data
                            .partitions
                            .iter()
                            .filter_map(|(t, p)| tp(t, *p))
                            .collect();
                        (claimed, data.generation)
                    }
                };
                Member {
                    id: s.member_id.clone(),
                    topic_names,
                    topics,
                    owned,
                    claimed,
                    generation,
                    subscription_generation: subscription_generation.unwrap_or(-1),
                }
            })
            .collect();

        let mut by_rank: Vec<usize> = (0..members.len()).collect();
        by_rank.sort_by(|&a, &b| java_string_cmp(&members[a].id, &members[b].id));
        let mut rank = vec![0; members.len()];
        for (r, &m) in by_rank.iter().enumerate() {
            rank[m] = r;
        }
        Self {
            topics,
            members,
            rank,
            by_rank,
        }
    }

    fn tp_hash(&self, tp: Tp) -> i32 {
        let topic_hash = self.topics.get(tp.topic).map_or(0, |t| t.hash);
        topic_partition_hash(topic_hash, tp.partition)
    }

    fn topic_partitions(&self, topic: usize) -> impl Iterator<Item = Tp> {
        let count = self.topics.get(topic).map_or(0, |t| t.partitions);
        (0..count).map(move |partition| Tp { topic, partition })
    }

    fn total_partitions(&self) -> usize {
        self.topics
            .iter()
            .map(|t| usize::try_from(t.partitions).unwrap_or(0))
            .sum()
    }

    /// Kafka's `allSubscriptionsEqual`: who keeps which claim when claims
    /// conflict, and whether the constrained algorithm applies.
    fn claims(&self, mode: Mode) -> Claims {
        let mut all_equal = true;
        let mut max_generation = -1;
        let mut owned: Vec<Vec<Tp>> = vec![Vec::new(); self.members.len()];
        let mut owner: HashMap<Tp, usize> = HashMap::new();
        let mut disputed = BTreeSet::new();
        let mut first: Option<&Vec<String>> = None;
        for (i, m) in self.members.iter().enumerate() {
            match first {
                // Kafka takes the first *non-empty* subscription as the
                // reference, so leading members subscribed to nothing pass.
                Some(f) if !(mode == Mode::Kafka && f.is_empty()) => {
                    if *f != m.topic_names {
                        all_equal = false;
                    }
                }
                _ => first = Some(&m.topic_names),
            }
            let generation = m.generation.unwrap_or(-1);
            max_generation = max_generation.max(generation);
            for &tp in &m.claimed {
                let Some(other) = owner.get(&tp).copied() else {
                    owned[i].push(tp);
                    owner.insert(tp, i);
                    continue;
                };
                let other_generation = self.members[other].subscription_generation;
                if generation == other_generation {
                    // Two owners in one generation: neither keeps it.
                    disputed.insert(tp);
                    remove_first(&mut owned[other], tp);
                    owner.insert(tp, i);
                } else if generation > other_generation {
                    owned[i].push(tp);
                    remove_first(&mut owned[other], tp);
                    owner.insert(tp, i);
                }
            }
        }
        Claims {
            all_equal,
            owned,
            disputed,
            max_generation,
        }
    }
}

/// Who owns what after conflicting claims are settled.
#[derive(Debug)]
struct Claims {
    /// Every member subscribes to the same topics.
    all_equal: bool,
    /// Per member: its claims that stand.
    owned: Vec<Vec<Tp>>,
    /// Claimed by two members of one generation (Kafka's
    /// `partitionsWithMultiplePreviousOwners`).
    disputed: BTreeSet<Tp>,
    /// The highest generation any member reported.
    max_generation: i32,
}

/// Partitions changing owner, and the member they go to: the cooperative
/// assignor leaves them out of this assignment.
type Moving = BTreeMap<Tp, usize>;

/// `List.remove(Object)`.
fn remove_first(list: &mut Vec<Tp>, tp: Tp) {
    if let Some(i) = list.iter().position(|&x| x == tp) {
        list.remove(i);
    }
}

/// How closely to follow Kafka where its result can be invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Exactly as Kafka.
    Kafka,
    /// With the two corrections of the [module docs](self).
    Corrected,
}

fn assign(
    variant: Variant,
    members: &[MemberSubscription],
    partitions_per_topic: &BTreeMap<String, i32>,
) -> GroupAssignment {
    let group = Group::new(variant, members, partitions_per_topic);
    let mut assignment = group.assign(variant, Mode::Kafka);
    if !assignment.as_ref().is_some_and(|a| group.is_valid(a)) {
        assignment = group.assign(variant, Mode::Corrected);
    }
    let mut result = ResultBuilder::new(group.members.iter().map(|m| m.id.as_str()));
    for (m, partitions) in group.members.iter().zip(assignment.iter().flatten()) {
        for tp in partitions {
            if let Some(topic) = group.topics.get(tp.topic) {
                result.add(&m.id, &topic.name, [tp.partition]);
            }
        }
    }
    result.finish()
}

impl Group {
    /// The assignment per member, or `None` where Kafka throws.
    fn assign(&self, variant: Variant, mode: Mode) -> Option<Vec<Vec<Tp>>> {
        let claims = self.claims(mode);
        let (mut assignment, moving) = if claims.all_equal {
            constrained::assign(self, claims)?
        } else {
            let assignment = general::assign(self, claims, mode);
            let moving = match variant {
                Variant::Cooperative => changing_owner(self, &assignment),
                Variant::Eager => Moving::new(),
            };
            (assignment, moving)
        };
        if variant == Variant::Cooperative {
            // KIP-429: what changes owner is revoked first, assigned next time.
            for (tp, member) in moving {
                if let Some(list) = assignment.get_mut(member) {
                    remove_first(list, tp);
                }
            }
        }
        Some(assignment)
    }

    /// Every partition at most once, and only to a member subscribed to it.
    fn is_valid(&self, assignment: &[Vec<Tp>]) -> bool {
        let mut seen = BTreeSet::new();
        self.members.iter().zip(assignment).all(|(m, partitions)| {
            partitions
                .iter()
                .all(|tp| m.subscribes(tp.topic) && seen.insert(*tp))
        })
    }
}

/// Kafka's `computePartitionsTransferringOwnership`: partitions assigned to a
/// member that did not own them while another member that did loses them.
fn changing_owner(group: &Group, assignment: &[Vec<Tp>]) -> Moving {
    let mut added = BTreeMap::new();
    let mut revoked = BTreeSet::new();
    for (i, (m, assigned)) in group.members.iter().zip(assignment).enumerate() {
        let owned: BTreeSet<Tp> = m.owned.iter().copied().collect();
        let assigned_set: BTreeSet<Tp> = assigned.iter().copied().collect();
        added.extend(
            assigned
                .iter()
                .filter(|tp| !owned.contains(tp))
                .map(|&tp| (tp, i)),
        );
        revoked.extend(owned.difference(&assigned_set).copied());
    }
    added.retain(|tp, _| revoked.contains(tp));
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assignor::assignor_by_name;
    use crate::payload::TopicPartitions;

    fn member(
        id: &str,
        topics: &[&str],
        generation: i32,
        owned: &[(&str, i32)],
    ) -> MemberSubscription {
        let mut m = MemberSubscription::new(id, None, topics.iter().copied());
        let mut grouped: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for &(t, p) in owned {
            grouped.entry(t).or_default().push(p);
        }
        m.owned_partitions = grouped
            .into_iter()
            .map(|(t, ps)| TopicPartitions::new(t, ps))
            .collect();
        m.generation_id = (generation >= 0).then_some(generation);
        m
    }

    fn counts(c: &[(&str, i32)]) -> BTreeMap<String, i32> {
        c.iter().map(|&(t, n)| (t.to_owned(), n)).collect()
    }

    fn flat(a: &GroupAssignment, id: &str) -> Vec<(String, i32)> {
        a.get(id)
            .into_iter()
            .flatten()
            .flat_map(|tp| tp.partitions.iter().map(|&p| (tp.topic.clone(), p)))
            .collect()
    }

    fn tps(list: &[(&str, i32)]) -> Vec<(String, i32)> {
        list.iter().map(|&(t, p)| (t.to_owned(), p)).collect()
    }

    #[test]
    fn looked_up_by_name() {
        let a = assignor_by_name(STICKY).expect("registered");
        assert_eq!(a.name(), "sticky");
        let a = assignor_by_name(COOPERATIVE_STICKY).expect("registered");
        assert_eq!(a.name(), "cooperative-sticky");
        assert_eq!(CooperativeStickyAssignor.name(), "cooperative-sticky");
    }

    #[test]
    fn kip_429_revoke_first_then_assign() {
        // Two members own all six partitions; a third joins.
        let c = counts(&[("t", 6)]);
        let round1 = CooperativeStickyAssignor.assign(
            &[
                member("c1", &["t"], 3, &[("t", 0), ("t", 1), ("t", 2)]),
                member("c2", &["t"], 3, &[("t", 3), ("t", 4), ("t", 5)]),
                member("c3", &["t"], -1, &[]),
            ],
            &c,
        );
        // c1 and c2 keep two each; the partition each gives up is assigned to
        // nobody yet, so c3 gets nothing in this rebalance.
        assert_eq!(flat(&round1, "c1"), tps(&[("t", 0), ("t", 1)]));
        assert_eq!(flat(&round1, "c2"), tps(&[("t", 3), ("t", 4)]));
        assert_eq!(flat(&round1, "c3"), tps(&[]));

        // They revoke t-2 and t-5 and rejoin: now c3 gets them.
        let round2 = CooperativeStickyAssignor.assign(
            &[
                member("c1", &["t"], 4, &[("t", 0), ("t", 1)]),
                member("c2", &["t"], 4, &[("t", 3), ("t", 4)]),
                member("c3", &["t"], 4, &[]),
            ],
            &c,
        );
        assert_eq!(flat(&round2, "c1"), tps(&[("t", 0), ("t", 1)]));
        assert_eq!(flat(&round2, "c2"), tps(&[("t", 3), ("t", 4)]));
        assert_eq!(flat(&round2, "c3"), tps(&[("t", 2), ("t", 5)]));

        // The eager sticky assignor hands them over at once.
        let eager = StickyAssignor.assign(
            &[
                member("c1", &["t"], 3, &[]),
                member("c2", &["t"], 3, &[]),
                member("c3", &["t"], -1, &[]),
            ],
            &c,
        );
        assert_eq!(eager.values().map(|v| v.len()).sum::<usize>(), 3);
    }

    #[test]
    fn newer_generation_wins_a_conflicting_claim() {
        let c = counts(&[("t", 2)]);
        let result = CooperativeStickyAssignor.assign(
            &[
                member("old", &["t"], 4, &[("t", 0), ("t", 1)]),
                member("new", &["t"], 5, &[("t", 1)]),
            ],
            &c,
        );
        assert_eq!(flat(&result, "old"), tps(&[("t", 0)]));
        assert_eq!(flat(&result, "new"), tps(&[("t", 1)]));
    }

    #[test]
    fn no_members_and_no_topics() {
        let c = counts(&[("t", 3)]);
        assert!(CooperativeStickyAssignor.assign(&[], &c).is_empty());
        let result = CooperativeStickyAssignor.assign(&[member("a", &[], -1, &[])], &c);
        assert_eq!(result.len(), 1);
        assert!(flat(&result, "a").is_empty());
    }
}
