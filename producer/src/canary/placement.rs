//! Where the canary topic's replicas belong (`CANARY_TOPIC_BALANCE`), as
//! pure functions of the live brokers and the topic's partitions: the
//! decisions of [`super::reconcile`], tested here without a cluster.
//!
//! The layout follows Strimzi Canary's: brokers sorted by id, partition `p`
//! on brokers `p, p+1, …` (modulo the broker count), so broker `i` is the
//! preferred leader of partition `i`, and with as many partitions as
//! brokers each broker leads exactly one. The replication factor is the
//! smaller of the broker count and the configured maximum. Partitions are
//! never removed (Kafka cannot): with fewer brokers than partitions, the
//! extra partitions wrap around onto the brokers left.

use std::collections::BTreeMap;

use kafka_group::admin::PartitionMetadata;

/// The replica lists of partitions `0..partitions` on `brokers` (sorted),
/// at most `max_replication` replicas each; none without brokers.
pub(crate) fn layout(brokers: &[i32], partitions: usize, max_replication: usize) -> Vec<Vec<i32>> {
    let n = brokers.len();
    if n == 0 {
        return Vec::new();
    }
    let rf = n.min(max_replication.max(1));
    (0..partitions)
        .map(|p| (0..rf).map(|r| brokers[(p + r) % n]).collect())
        .collect()
}

/// `min.insync.replicas` of a topic created with `replication` replicas:
/// one less, at least 1 (Strimzi's choice), so the canary keeps
/// producing while one replica is down or being moved.
pub(crate) fn min_insync(replication: usize) -> usize {
    replication.saturating_sub(1).max(1)
}

/// What the topic needs next, in the order it must happen: replicas moved
/// first (a partition added later must have the replication factor the
/// existing ones have), then partitions added, then leaders elected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Move these partitions to these replica lists.
    Reassign(BTreeMap<i32, Vec<i32>>),
    /// Grow the topic to `count` partitions, the new ones on these brokers.
    AddPartitions {
        /// The new partition count.
        count: i32,
        /// Replica lists of the new partitions, in order.
        new: Vec<Vec<i32>>,
    },
    /// Elect the preferred leader of these partitions.
    Elect(Vec<i32>),
}

/// The next step for `partitions` on the live `brokers` (sorted); `None`
/// when the topic is placed as it should be, or no broker is live.
pub(crate) fn next_step(
    brokers: &[i32],
    partitions: &BTreeMap<i32, PartitionMetadata>,
    max_replication: usize,
) -> Option<Step> {
    if brokers.is_empty() {
        return None;
    }
    let count = partitions.len();
    let target = layout(brokers, count.max(brokers.len()), max_replication);
    let moves: BTreeMap<i32, Vec<i32>> = partitions
        .iter()
        .filter_map(|(&p, m)| {
            let want = target.get(usize::try_from(p).ok()?)?;
            (m.replicas != *want).then(|| (p, want.clone()))
        })
        .collect();
    if !moves.is_empty() {
        return Some(Step::Reassign(moves));
    }
    if brokers.len() > count {
        return Some(Step::AddPartitions {
            count: brokers.len() as i32,
            new: target[count..].to_vec(),
        });
    }
    // Only where the preferred replica can take over: live and in sync.
    let elect: Vec<i32> = partitions
        .iter()
        .filter(|(_, m)| {
            m.replicas
                .first()
                .is_some_and(|&pref| m.leader != pref && m.isr.contains(&pref))
        })
        .map(|(&p, _)| p)
        .collect();
    (!elect.is_empty()).then_some(Step::Elect(elect))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionMetadata {
        PartitionMetadata {
            leader,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
        }
    }

    fn placed(brokers: &[i32], partitions: usize, rf: usize) -> BTreeMap<i32, PartitionMetadata> {
        layout(brokers, partitions, rf)
            .into_iter()
            .zip(0..)
            .map(|(r, p)| (p, part(r[0], &r, &r)))
            .collect()
    }

    #[test]
    fn each_broker_is_the_preferred_leader_of_one_partition() {
        assert_eq!(
            layout(&[1, 2, 3], 3, 3),
            vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]
        );
        // Fewer brokers than the maximum: as many replicas as brokers.
        assert_eq!(layout(&[1, 2], 2, 3), vec![vec![1, 2], vec![2, 1]]);
        // A gap in the ids (node 2 gone) and more partitions than brokers.
        assert_eq!(
            layout(&[1, 3], 3, 3),
            vec![vec![1, 3], vec![3, 1], vec![1, 3]]
        );
        assert_eq!(layout(&[4, 7, 9, 12], 4, 2)[3], vec![12, 4]);
        assert_eq!((min_insync(1), min_insync(2), min_insync(3)), (1, 1, 2));
        assert!(layout(&[], 3, 3).is_empty());
        assert_eq!(next_step(&[], &placed(&[1], 1, 3), 3), None);
    }

    #[test]
    fn a_new_broker_first_gets_replicas_then_a_partition() {
        // Created on brokers 1 and 2; broker 3 joins.
        let now = placed(&[1, 2], 2, 3);
        assert_eq!(
            next_step(&[1, 2, 3], &now, 3),
            Some(Step::Reassign(BTreeMap::from([
                (0, vec![1, 2, 3]),
                (1, vec![2, 3, 1])
            ])))
        );
        let moved: BTreeMap<_, _> = BTreeMap::from([
            (0, part(1, &[1, 2, 3], &[1, 2, 3])),
            (1, part(2, &[2, 3, 1], &[2, 3, 1])),
        ]);
        assert_eq!(
            next_step(&[1, 2, 3], &moved, 3),
            Some(Step::AddPartitions {
                count: 3,
                new: vec![vec![3, 1, 2]]
            })
        );
        assert_eq!(next_step(&[1, 2, 3], &placed(&[1, 2, 3], 3, 3), 3), None);
    }

    #[test]
    fn a_gone_broker_loses_its_replicas_and_leaders_are_elected_back() {
        let mut now = placed(&[1, 2, 3], 3, 3);
        // Node 2 stopped: Kafka moved its leadership to the next replica.
        now.insert(1, part(3, &[2, 3, 1], &[3, 1]));
        let Some(Step::Reassign(moves)) = next_step(&[1, 3], &now, 3) else {
            panic!("no reassignment");
        };
        assert_eq!(
            moves,
            BTreeMap::from([(0, vec![1, 3]), (1, vec![3, 1]), (2, vec![1, 3])])
        );
        assert!(moves.values().all(|r| !r.contains(&2)));
        // Moved, but partition 2 is still led by 3 (its old preferred).
        let moved = BTreeMap::from([
            (0, part(1, &[1, 3], &[1, 3])),
            (1, part(3, &[3, 1], &[3, 1])),
            (2, part(3, &[1, 3], &[1, 3])),
        ]);
        assert_eq!(next_step(&[1, 3], &moved, 3), Some(Step::Elect(vec![2])));
        // Preferred replica out of sync: no election yet.
        let lagging = BTreeMap::from([
            (0, part(1, &[1, 3], &[1, 3])),
            (1, part(3, &[3, 1], &[3, 1])),
            (2, part(3, &[1, 3], &[3])),
        ]);
        assert_eq!(next_step(&[1, 3], &lagging, 3), None);
    }
}
