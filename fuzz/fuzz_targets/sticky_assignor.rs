//! The `cooperative-sticky` and `sticky` assignors on hostile groups: members
//! claiming partitions they cannot own (nonexistent, duplicated, claimed by
//! others in the same or another generation), huge and negative
//! generations, broken userData, duplicate member ids and topics, members
//! subscribed to nothing, and member metadata straight from the wire.
//!
//! Never a panic; the result is always a valid assignment: an entry for every
//! member, each partition of a subscribed topic at most once, only to a
//! member subscribed to its topic. For `cooperative-sticky` also what Java's
//! leader checks (`ConsumerCoordinator.validateCooperativeAssignment`): no
//! partition is given to a member that does not own it while a member that
//! owns it loses it — that one must be revoked first.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use bytes::Bytes;
use kafka_group::assignor::{Assignor, MemberSubscription};
use kafka_group::payload::{Subscription, TopicPartitions};
use kafka_group::assignor::sticky::{CooperativeStickyAssignor, StickyAssignor};
use libfuzzer_sys::fuzz_target;

/// Few names, so that topics and member ids collide (including Java
/// hashCode collisions: "Aa" and "BB").
const NAMES: [&str; 8] = ["t", "u", "Aa", "BB", "AaAa", "BBBB", "AaBB", ""];

#[derive(Debug, Arbitrary)]
struct Input {
    cooperative: bool,
    /// Topic name index and partition count (some zero or negative).
    topics: Vec<(u8, i8)>,
    members: Vec<Member>,
}

#[derive(Debug, Arbitrary)]
enum Member {
    Built {
        id: u8,
        instance: Option<u8>,
        topics: Vec<u8>,
        owned: Vec<(u8, i32)>,
        generation: Option<i32>,
        user_data: Option<Vec<u8>>,
    },
    /// JoinGroup member metadata as sent: decoded like the leader does.
    Wire { id: u8, metadata: Vec<u8> },
}

fn name(i: u8) -> String {
    NAMES[usize::from(i) % NAMES.len()].to_owned()
}

fn id(i: u8) -> String {
    // A member id is never empty in a real group, but nothing relies on it.
    format!("{}{}", name(i), i / 8)
}

impl Member {
    fn build(self) -> MemberSubscription {
        match self {
            Member::Built {
                id: i,
                instance,
                topics,
                owned,
                generation,
                user_data,
            } => {
                let mut m = MemberSubscription::new(
                    id(i),
                    instance.map(|x| format!("pod-{x}")),
                    topics.into_iter().take(16).map(name),
                );
                m.owned_partitions = owned
                    .into_iter()
                    .take(64)
                    .map(|(t, p)| TopicPartitions::new(name(t), vec![p]))
                    .collect();
                m.generation_id = generation;
                m.user_data = user_data.map(Bytes::from);
                m
            }
            Member::Wire { id: i, metadata } => {
                let sub = Subscription::decode(&metadata).unwrap_or_default();
                MemberSubscription::from_subscription(id(i), None, sub)
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let counts: BTreeMap<String, i32> = input
        .topics
        .into_iter()
        .take(6)
        .map(|(t, n)| (name(t), i32::from(n).min(40)))
        .collect();
    let members: Vec<MemberSubscription> =
        input.members.into_iter().take(24).map(Member::build).collect();
    let assignor: &dyn Assignor = if input.cooperative {
        &CooperativeStickyAssignor
    } else {
        &StickyAssignor
    };
    let result = assignor.assign(&members, &counts);

    // The first entry per member id is the member.
    let mut by_id: BTreeMap<&str, &MemberSubscription> = BTreeMap::new();
    for m in &members {
        by_id.entry(m.member_id.as_str()).or_insert(m);
    }
    assert_eq!(
        result.keys().map(String::as_str).collect::<Vec<_>>(),
        by_id.keys().copied().collect::<Vec<_>>(),
        "one entry per member"
    );
    let mut seen = BTreeSet::new();
    for (member, partitions) in &result {
        let m = by_id[member.as_str()];
        for tp in partitions {
            assert!(m.topics.contains(&tp.topic), "{member} got {} unsubscribed", tp.topic);
            let count = counts.get(&tp.topic).copied().unwrap_or(0);
            for &p in &tp.partitions {
                assert!((0..count).contains(&p), "{}-{p} does not exist", tp.topic);
                assert!(seen.insert((tp.topic.clone(), p)), "{}-{p} twice", tp.topic);
            }
        }
    }

    if input.cooperative {
        let owned = |m: &MemberSubscription| -> BTreeSet<(String, i32)> {
            m.owned_partitions
                .iter()
                .flat_map(|tp| tp.partitions.iter().map(move |&p| (tp.topic.clone(), p)))
                .collect()
        };
        let mut added = BTreeSet::new();
        let mut revoked = BTreeSet::new();
        for (member, partitions) in &result {
            let mine = owned(by_id[member.as_str()]);
            let assigned: BTreeSet<(String, i32)> = partitions
                .iter()
                .flat_map(|tp| tp.partitions.iter().map(move |&p| (tp.topic.clone(), p)))
                .collect();
            added.extend(assigned.difference(&mine).cloned());
            revoked.extend(mine.difference(&assigned).cloned());
        }
        let both: Vec<_> = added.intersection(&revoked).collect();
        assert!(both.is_empty(), "given away before being revoked: {both:?}");
    }
});
