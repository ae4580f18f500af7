//! Kafka's `ConstrainedAssignmentBuilder`: the fast path when every member
//! subscribes to the same topics.
//!
//! With `P` partitions over `M` members everyone gets `⌊P/M⌋` ("min quota")
//! or `⌈P/M⌉` ("max quota"), and exactly `P mod M` members get the max:
//! 1. Members keep what they owned, up to their quota, walking members in
//!    Java `HashMap` order: one owning at least the max keeps the max while
//!    fewer than `P mod M` members have been given the max so far, otherwise
//!    the min; the rest of what it owned is given up ("maybe revoked").
//! 2. The partitions nobody kept, in `(topic, partition)` order, go round-robin
//!    to the members below the min quota (by member id), then one each to
//!    members at the min while more may get the max.
//!
//! A partition given to someone other than the member that gave it up, or
//! one claimed by two members of one generation, is "transferring
//! ownership": the cooperative assignor leaves it out this time.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::{Claims, Group, Moving, Tp};

/// The assignment per member (in [`Group::members`] order) and the
/// partitions changing owner; `None` where Kafka throws.
pub(super) fn assign(group: &Group, claims: Claims) -> Option<(Vec<Vec<Tp>>, Moving)> {
    let members = group.members.len();
    let mut assignment = vec![Vec::new(); members];
    if members == 0 {
        // Kafka divides by zero here; with nobody to assign to, nothing is.
        return Some((assignment, Moving::new()));
    }
    let total = group.total_partitions();
    let mut b = Builder {
        min_quota: total / members,
        max_quota: total.div_ceil(members),
        expected_over_min: total % members,
        over_min: 0,
        disputed: claims.disputed,
        maybe_revoked: HashMap::new(),
        under_min: Vec::new(),
        at_min: VecDeque::new(),
        moving: Moving::new(),
    };

    let kept = b.keep_owned(claims.owned, &mut assignment);
    let unassigned: Vec<Tp> = (0..group.topics.len())
        .flat_map(|t| group.topic_partitions(t))
        .filter(|tp| !kept.contains(tp))
        .collect();
    b.under_min.sort_by_key(|&m| group.rank[m]);
    b.at_min.make_contiguous().sort_by_key(|&m| group.rank[m]);
    b.round_robin(&unassigned, &mut assignment)?;
    Some((assignment, b.moving))
}

#[derive(Debug)]
struct Builder {
    min_quota: usize,
    max_quota: usize,
    /// Members that must end with the max quota.
    expected_over_min: usize,
    /// Members given the max quota so far.
    over_min: usize,
    disputed: BTreeSet<Tp>,
    /// Partitions an owner gave up, and who.
    maybe_revoked: HashMap<Tp, usize>,
    /// Members below the min quota (Kafka's
    /// `unfilledMembersWithUnderMinQuotaPartitions`).
    under_min: Vec<usize>,
    /// Members at the min quota that may still get one more (Kafka's
    /// `unfilledMembersWithExactlyMinQuotaPartitions`).
    at_min: VecDeque<usize>,
    moving: Moving,
}

impl Builder {
    /// Kafka's `assignOwnedPartitions`; returns every partition kept.
    fn keep_owned(&mut self, owned: Vec<Vec<Tp>>, assignment: &mut [Vec<Tp>]) -> BTreeSet<Tp> {
        let mut kept = BTreeSet::new();
        for (member, mut owned) in owned.into_iter().enumerate() {
            owned.sort_by_key(|tp| (tp.partition, tp.topic));
            owned.retain(|tp| !self.disputed.contains(tp));
            let keep = if owned.len() < self.min_quota {
                self.under_min.push(member);
                owned.len()
            } else if owned.len() >= self.max_quota && self.over_min < self.expected_over_min {
                self.over_min += 1;
                if self.over_min == self.expected_over_min {
                    self.at_min.clear();
                }
                self.max_quota
            } else {
                if self.over_min < self.expected_over_min {
                    self.at_min.push_back(member);
                }
                self.min_quota
            };
            for &tp in &owned[keep..] {
                self.maybe_revoked.insert(tp, member);
            }
            owned.truncate(keep);
            kept.extend(owned.iter().copied());
            if let Some(a) = assignment.get_mut(member) {
                a.extend(owned);
            }
        }
        kept
    }

    /// Kafka's `assignRoundRobin`: a cursor over the members below the min
    /// quota, restarted at the front when it runs out; once nobody is below
    /// the min, members at the min take one more each, in order.
    /// `None` where Kafka throws: partitions left but nobody to take them,
    /// which consistent quotas rule out.
    fn round_robin(&mut self, unassigned: &[Tp], assignment: &mut [Vec<Tp>]) -> Option<()> {
        let mut cursor = 0;
        for &tp in unassigned {
            let (member, from_cursor) = if let Some(&m) = self.under_min.get(cursor) {
                cursor += 1;
                (m, true)
            } else if let Some(&m) = self.under_min.first() {
                cursor = 1;
                (m, true)
            } else {
                (self.at_min.pop_front()?, false)
            };
            let count = self.assign_new(tp, member, assignment);
            if count == self.min_quota && from_cursor {
                cursor -= 1;
                self.under_min.remove(cursor);
                self.at_min.push_back(member);
            } else if count == self.max_quota {
                self.over_min += 1;
            }
        }
        Some(())
    }

    fn assign_new(&mut self, tp: Tp, member: usize, assignment: &mut [Vec<Tp>]) -> usize {
        let Some(list) = assignment.get_mut(member) else {
            return 0;
        };
        list.push(tp);
        let given_up_by_other = self.maybe_revoked.get(&tp).is_some_and(|&m| m != member);
        if given_up_by_other || self.disputed.contains(&tp) {
            self.moving.insert(tp, member);
        }
        list.len()
    }
}
