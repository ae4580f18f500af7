//! Kafka's `GeneralAssignmentBuilder`: members subscribe to different topics.
//!
//! 1. Members keep the claims that stand, except partitions of topics they
//!    no longer subscribe to (which then count as a required revocation).
//! 2. Every partition left goes to the member with the fewest partitions
//!    (ties by member id) among those subscribed to its topic.
//! 3. Then, until the assignment is balanced, partitions of topics with two
//!    or more possible members move from a member that has at least two more
//!    than another possible member — back to a previous owner of an older
//!    generation when that one has room, else to the least loaded. A move
//!    that would reverse an earlier move of the same topic between the same
//!    two members moves that earlier partition back instead (Kafka's
//!    `PartitionMovements`), so partitions do not swap places needlessly.
//! 4. If all that did not improve the balance score (the sum of size
//!    differences over all pairs of members), the assignment from before
//!    step 3 stands.
//!
//! Members whose share cannot change (they have all the partitions they
//! could get and none of their topics has another member) stay out of steps
//! 3 and 4, as in Kafka.

use std::collections::{BTreeSet, HashMap};

use super::java::JavaHashOrder;
use super::{remove_first, Claims, Group, Mode, Tp};

/// The assignment per member, in [`Group::members`] order.
pub(super) fn assign(group: &Group, claims: Claims, mode: Mode) -> Vec<Vec<Tp>> {
    let mut b = Builder::new(group, claims.owned, mode);
    b.prepopulate_previous(claims.max_generation);
    let assigned = b.keep_owned();
    let unassigned: Vec<Tp> = b
        .sorted_all
        .iter()
        .filter(|tp| !assigned.contains(tp))
        .copied()
        .collect();
    for m in 0..group.members.len() {
        b.insert_sorted(m);
    }
    b.balance(unassigned);
    b.current
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

#[derive(Debug)]
struct Builder<'a> {
    group: &'a Group,
    mode: Mode,
    /// Members subscribed to each topic (Kafka's `topic2AllPotentialConsumers`).
    topic_members: Vec<Vec<usize>>,
    /// Each member's partitions; `None` while it sits out the balancing.
    current: Vec<Option<Vec<Tp>>>,
    /// Kafka's `currentPartitionConsumer`.
    partition_member: HashMap<Tp, usize>,
    /// All partitions, topics with fewer possible members first.
    sorted_all: Vec<Tp>,
    /// Kafka's `sortedCurrentSubscriptions`: `(partition count, member rank)`.
    sorted: BTreeSet<(usize, usize)>,
    revocation_required: bool,
    /// The most recent previous owner of a partition in an older generation
    /// than the newest, and that generation.
    previous: HashMap<Tp, (usize, i32)>,
    movements: Movements,
    /// Moves left before we stop balancing. Kafka has no limit; its loop is
    /// not obviously finite (see [`Movements::partition_to_move`]), and ours
    /// must end on any input. Far above what any real input needs.
    moves_left: usize,
}

impl<'a> Builder<'a> {
    fn new(group: &'a Group, owned: Vec<Vec<Tp>>, mode: Mode) -> Self {
        let mut topic_members = vec![Vec::new(); group.topics.len()];
        for (i, m) in group.members.iter().enumerate() {
            for &t in &m.topics {
                if let Some(list) = topic_members.get_mut(t) {
                    list.push(i);
                }
            }
        }
        let mut partition_member = HashMap::new();
        for (i, list) in owned.iter().enumerate() {
            for &tp in list {
                partition_member.insert(tp, i);
            }
        }
        let mut topics: Vec<usize> = (0..group.topics.len()).collect();
        topics.sort_by_key(|&t| (topic_members[t].len(), t));
        let sorted_all: Vec<Tp> = topics
            .into_iter()
            .flat_map(|t| group.topic_partitions(t))
            .collect();
        let partitions = sorted_all.len();
        Self {
            group,
            mode,
            topic_members,
            current: owned.into_iter().map(Some).collect(),
            partition_member,
            sorted_all,
            sorted: BTreeSet::new(),
            revocation_required: false,
            previous: HashMap::new(),
            movements: Movements::default(),
            moves_left: partitions.saturating_mul(partitions).saturating_add(10_000),
        }
    }

    /// Kafka's `prepopulateCurrentAssignments`: claims of members behind the
    /// newest generation, the newest of them per partition (first one wins a
    /// tie). Claims without a generation count as −1 once anyone has one.
    fn prepopulate_previous(&mut self, max_generation: i32) {
        for (i, m) in self.group.members.iter().enumerate() {
            let generation = match m.generation {
                Some(g) if g < max_generation => g,
                None if max_generation > -1 => -1,
                _ => continue,
            };
            for &tp in &m.claimed {
                match self.previous.get(&tp) {
                    Some(&(_, g)) if generation <= g => {}
                    _ => {
                        self.previous.insert(tp, (i, generation));
                    }
                }
            }
        }
    }

    /// Kafka's `assignOwnedPartitions`: drops partitions of topics a member
    /// no longer subscribes to, returns the rest.
    fn keep_owned(&mut self) -> BTreeSet<Tp> {
        let mut assigned = BTreeSet::new();
        for (m, list) in self.group.members.iter().zip(&mut self.current) {
            let Some(list) = list else { continue };
            list.retain(|tp| {
                let keep = m.subscribes(tp.topic);
                if keep {
                    assigned.insert(*tp);
                } else {
                    // Kafka leaves it in currentPartitionConsumer too.
                    self.revocation_required = true;
                }
                keep
            });
        }
        assigned
    }

    fn size(&self, member: usize) -> Option<usize> {
        self.current.get(member)?.as_ref().map(Vec::len)
    }

    fn sort_key(&self, member: usize) -> Option<(usize, usize)> {
        Some((self.size(member)?, *self.group.rank.get(member)?))
    }

    fn insert_sorted(&mut self, member: usize) {
        if let Some(key) = self.sort_key(member) {
            self.sorted.insert(key);
        }
    }

    fn remove_sorted(&mut self, member: usize) {
        if let Some(key) = self.sort_key(member) {
            self.sorted.remove(&key);
        }
    }

    fn sorted_members(&self) -> impl Iterator<Item = usize> + '_ {
        self.sorted
            .iter()
            .filter_map(|&(_, rank)| self.group.by_rank.get(rank).copied())
    }

    /// The most partitions `member` could have: all of its topics'.
    fn max_size(&self, member: usize) -> usize {
        self.group.members.get(member).map_or(0, |m| {
            m.topics
                .iter()
                .map(|&t| self.group.topic_partitions(t).count())
                .sum()
        })
    }

    fn topic_can_move(&self, topic: usize) -> bool {
        self.topic_members.get(topic).is_some_and(|m| m.len() >= 2)
    }

    fn member_can_change(&self, member: usize) -> bool {
        let Some(Some(list)) = self.current.get(member) else {
            return false;
        };
        list.len() < self.max_size(member) || list.iter().any(|tp| self.topic_can_move(tp.topic))
    }

    fn balance(&mut self, mut unassigned: Vec<Tp>) {
        let initializing = self.sorted.last().is_none_or(|&(size, _)| size == 0);

        for &tp in &unassigned {
            if self.topic_members[tp.topic].is_empty() {
                continue;
            }
            let target = self
                .sorted_members()
                .find(|&m| self.group.members[m].subscribes(tp.topic));
            if let Some(m) = target {
                self.remove_sorted(m);
                if let Some(Some(list)) = self.current.get_mut(m) {
                    list.push(tp);
                }
                self.partition_member.insert(tp, m);
                self.insert_sorted(m);
            }
        }

        // Only what can actually move takes part in the balancing.
        let fixed_topics: Vec<bool> = (0..self.group.topics.len())
            .map(|t| !self.topic_can_move(t))
            .collect();
        self.sorted_all.retain(|tp| !fixed_topics[tp.topic]);
        unassigned.retain(|tp| !fixed_topics[tp.topic]);
        let mut fixed_members = Vec::new();
        for m in 0..self.group.members.len() {
            if !self.member_can_change(m) {
                self.remove_sorted(m);
                fixed_members.push((m, self.current[m].take()));
            }
        }

        let before = (self.current.clone(), self.partition_member.clone());
        if !self.revocation_required {
            // First try moving only what is new.
            self.reassign_until_balanced(&unassigned);
        }
        let sorted_all = std::mem::take(&mut self.sorted_all);
        let moved = self.reassign_until_balanced(&sorted_all);
        if !initializing && moved && balance_score(&self.current) >= balance_score(&before.0) {
            (self.current, self.partition_member) = before;
        }
        for (m, list) in fixed_members {
            self.current[m] = list;
        }
    }

    /// Kafka's `performReassignments`; whether anything moved.
    fn reassign_until_balanced(&mut self, partitions: &[Tp]) -> bool {
        let mut moved = false;
        loop {
            let mut modified = false;
            for &tp in partitions {
                if self.moves_left == 0 || self.is_balanced() {
                    break;
                }
                let Some(&owner) = self.partition_member.get(&tp) else {
                    continue;
                };
                let Some(owner_size) = self.size(owner) else {
                    continue;
                };
                // Back to its previous owner if that one has room. (Kafka
                // throws when that owner sits out the balancing; we go on.
                // Kafka does not check that it still subscribes to the topic.)
                if let Some(&(previous, _)) = self.previous.get(&tp) {
                    let subscribed = self.mode == Mode::Kafka
                        || self.group.members[previous].subscribes(tp.topic);
                    if subscribed && self.size(previous).is_some_and(|s| owner_size > s + 1) {
                        self.reassign(tp, previous);
                        moved = true;
                        modified = true;
                        continue;
                    }
                }
                let has_room = self.topic_members[tp.topic]
                    .iter()
                    .any(|&other| self.size(other).is_some_and(|s| owner_size > s + 1));
                if has_room {
                    let target = self
                        .sorted_members()
                        .find(|&m| self.group.members[m].subscribes(tp.topic));
                    if let Some(target) = target {
                        self.reassign(tp, target);
                        moved = true;
                        modified = true;
                    }
                }
            }
            if !modified || self.moves_left == 0 {
                return moved;
            }
        }
    }

    /// Kafka's `isBalanced`: the sizes differ by at most one, or no member
    /// could take a partition of its topics from a member with two more.
    fn is_balanced(&self) -> bool {
        let (Some(&(min, _)), Some(&(max, _))) = (self.sorted.first(), self.sorted.last()) else {
            return true;
        };
        if min + 1 >= max {
            return true;
        }
        let mut owner: HashMap<Tp, usize> = HashMap::new();
        for (m, list) in self.current.iter().enumerate() {
            for &tp in list.iter().flatten() {
                owner.insert(tp, m);
            }
        }
        for m in self.sorted_members() {
            let Some(count) = self.size(m) else { continue };
            if count == self.max_size(m) {
                continue;
            }
            for &t in &self.group.members[m].topics {
                for tp in self.group.topic_partitions(t) {
                    // A member with two more has one this member could take.
                    let movable = owner.get(&tp).is_some_and(|&o| {
                        o != m && self.size(o).is_some_and(|other| count + 1 < other)
                    });
                    if movable {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Kafka's `reassignPartition(partition, newConsumer)`.
    fn reassign(&mut self, tp: Tp, to: usize) {
        let Some(&from) = self.partition_member.get(&tp) else {
            return;
        };
        let tp = self.movements.partition_to_move(tp, from, to);
        let Some(&from) = self.partition_member.get(&tp) else {
            return;
        };
        if self.size(from).is_none() || self.size(to).is_none() {
            return;
        }
        self.moves_left = self.moves_left.saturating_sub(1);
        self.remove_sorted(from);
        self.remove_sorted(to);
        self.movements.record(self.group, tp, from, to);
        if let Some(Some(list)) = self.current.get_mut(from) {
            remove_first(list, tp);
        }
        if let Some(Some(list)) = self.current.get_mut(to) {
            list.push(tp);
        }
        self.partition_member.insert(tp, to);
        self.insert_sorted(to);
        self.insert_sorted(from);
    }
}

/// Kafka's `getBalanceScore`: the sum over all pairs of members (those taking
/// part) of the difference in their partition counts.
fn balance_score(current: &[Option<Vec<Tp>>]) -> usize {
    let sizes: Vec<usize> = current.iter().flatten().map(Vec::len).collect();
    sizes
        .iter()
        .enumerate()
        .flat_map(|(i, a)| sizes[i + 1..].iter().map(move |b| a.abs_diff(*b)))
        .sum()
}

/// Kafka's `PartitionMovements`: where each moved partition came from, and
/// per topic which partitions moved between which two members.
#[derive(Debug, Default)]
struct Movements {
    /// Partition → (first owner in this rebalance, current owner).
    moves: HashMap<Tp, (usize, usize)>,
    /// Topic → (from, to) → the partitions, as Kafka's `HashSet` orders them.
    by_topic: HashMap<usize, HashMap<(usize, usize), JavaHashOrder<Tp>>>,
}

impl Movements {
    /// Kafka's `getTheActualPartitionToBeMoved`: to move `tp` from `from` to
    /// `to`, when a partition of its topic earlier moved from `to` to `tp`'s
    /// first owner, move that one back instead ("first" in `HashSet` order).
    fn partition_to_move(&self, tp: Tp, from: usize, to: usize) -> Tp {
        let Some(topic_moves) = self.by_topic.get(&tp.topic) else {
            return tp;
        };
        let from = self.moves.get(&tp).map_or(from, |&(src, _)| src);
        topic_moves
            .get(&(to, from))
            .and_then(JavaHashOrder::first)
            .copied()
            .unwrap_or(tp)
    }

    /// Kafka's `movePartition`.
    fn record(&mut self, group: &Group, tp: Tp, from: usize, to: usize) {
        match self.remove(tp) {
            Some((src, _)) if src == to => {} // back where it started
            Some((src, _)) => self.add(group, tp, (src, to)),
            None => self.add(group, tp, (from, to)),
        }
    }

    fn remove(&mut self, tp: Tp) -> Option<(usize, usize)> {
        let pair = self.moves.remove(&tp)?;
        if let Some(topic_moves) = self.by_topic.get_mut(&tp.topic) {
            if let Some(set) = topic_moves.get_mut(&pair) {
                set.remove(&tp);
                if set.is_empty() {
                    topic_moves.remove(&pair);
                }
            }
            if topic_moves.is_empty() {
                self.by_topic.remove(&tp.topic);
            }
        }
        Some(pair)
    }

    fn add(&mut self, group: &Group, tp: Tp, pair: (usize, usize)) {
        self.moves.insert(tp, pair);
        self.by_topic
            .entry(tp.topic)
            .or_default()
            .entry(pair)
            .or_default()
            .insert(tp, group.tp_hash(tp));
    }
}
