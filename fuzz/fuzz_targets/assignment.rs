//! The assignment logic against hostile group members (issue 17): the
//! `range` and `roundrobin` assignors (and the eager `sticky`) as the
//! leader runs them, on subscriptions that name colliding, empty or absent
//! topics, duplicate member ids, negative and zero partition counts and
//! member metadata straight from the wire; and the check every member makes
//! of the assignment the leader sends it (`member::validate::check`), on
//! arbitrary assignments, wire bytes included.
//!
//! Never a panic; every assignor result is valid (an entry per member, each
//! partition at most once, only existing partitions, only to a member
//! subscribed to the topic) and passes the member's check unchanged; the
//! check keeps only subscribed, existing partitions, each once, accounts
//! for every entry it dropped, and its log line stays short.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use kafka_group::assignor::{assignor_by_name, MemberSubscription, RANGE, ROUND_ROBIN};
use kafka_group::member::validate::{check, MAX_ASSIGNMENT_ENTRIES};
use kafka_group::payload::{Assignment, Subscription, TopicPartitions};
use libfuzzer_sys::fuzz_target;

/// Few names, so that topics and member ids collide ("" and a long one too).
const NAMES: [&str; 6] = ["t", "u", "Aa", "BB", "", "a-topic-name-of-some-length"];

#[derive(Debug, Arbitrary)]
struct Input {
    assignor: u8,
    /// Topic name index and partition count (some zero or negative).
    topics: Vec<(u8, i16)>,
    members: Vec<Member>,
    /// What a (hostile) leader sends one member.
    sent: Sent,
}

#[derive(Debug, Arbitrary)]
enum Member {
    Built { id: u8, topics: Vec<u8> },
    /// JoinGroup member metadata as sent: decoded like the leader does.
    Wire { id: u8, metadata: Vec<u8> },
}

#[derive(Debug, Arbitrary)]
enum Sent {
    /// Topic index and partitions, repeated `times` (a huge list).
    Built {
        groups: Vec<(u8, Vec<i32>)>,
        times: u16,
    },
    /// SyncGroup assignment bytes.
    Wire(Vec<u8>),
}

fn name(i: u8) -> String {
    NAMES[usize::from(i) % NAMES.len()].to_owned()
}

impl Member {
    fn build(self) -> MemberSubscription {
        match self {
            Member::Built { id, topics } => MemberSubscription::new(
                format!("m{}", id % 12),
                None,
                topics.into_iter().take(16).map(name),
            ),
            Member::Wire { id, metadata } => MemberSubscription::from_subscription(
                format!("m{}", id % 12),
                None,
                Subscription::decode(&metadata).unwrap_or_default(),
            ),
        }
    }
}

fn entries(a: &Assignment) -> BTreeSet<(String, i32)> {
    a.topic_partitions().map(|(t, p)| (t.to_owned(), p)).collect()
}

/// The member's check of `sent`: what it keeps is valid, and every entry
/// is either kept or counted as dropped.
fn check_member(sent: &Assignment, subscribed: &[String], counts: &BTreeMap<String, i32>) {
    let checked = check(sent, subscribed, counts);
    let mut seen = BTreeSet::new();
    for (topic, p) in checked.kept.topic_partitions() {
        assert!(subscribed.iter().any(|s| s == topic), "kept {topic} unsubscribed");
        let count = counts.get(topic).copied().unwrap_or(0);
        assert!((0..count).contains(&p), "kept {topic}-{p}, which does not exist");
        assert!(seen.insert((topic.to_owned(), p)), "kept {topic}-{p} twice");
    }
    let groups: BTreeSet<&str> = checked.kept.partitions.iter().map(|g| g.topic.as_str()).collect();
    assert_eq!(groups.len(), checked.kept.partitions.len(), "a topic in two groups");
    let total = sent.topic_partitions().count();
    assert_eq!(seen.len() + checked.problems.total(), total, "entries unaccounted for");
    assert!(seen.len() <= MAX_ASSIGNMENT_ENTRIES);
    assert_eq!(checked.problems.is_empty(), seen.len() == total);
    assert!(checked.problems.to_string().len() < 2_000, "a long log line");
    assert_eq!(checked.kept.user_data, sent.user_data);
}

fuzz_target!(|input: Input| {
    let counts: BTreeMap<String, i32> = input
        .topics
        .into_iter()
        .take(6)
        .map(|(t, n)| (name(t), i32::from(n).min(200)))
        .collect();
    let members: Vec<MemberSubscription> =
        input.members.into_iter().take(24).map(Member::build).collect();
    let protocol = [RANGE, ROUND_ROBIN, "sticky"][usize::from(input.assignor) % 3];
    let assignor = assignor_by_name(protocol).expect("a known assignor");
    let result = assignor.assign(&members, &counts);

    // The first entry per member id is the member.
    let mut by_id: BTreeMap<&str, &MemberSubscription> = BTreeMap::new();
    for m in &members {
        by_id.entry(m.member_id.as_str()).or_insert(m);
    }
    assert_eq!(
        result.keys().map(String::as_str).collect::<Vec<_>>(),
        by_id.keys().copied().collect::<Vec<_>>(),
        "{protocol}: one entry per member"
    );
    let mut seen = BTreeSet::new();
    for (member, partitions) in &result {
        let m = by_id[member.as_str()];
        for tp in partitions {
            assert!(m.topics.contains(&tp.topic), "{protocol}: {member} got {} unsubscribed", tp.topic);
            let count = counts.get(&tp.topic).copied().unwrap_or(0);
            for &p in &tp.partitions {
                assert!((0..count).contains(&p), "{protocol}: {}-{p} does not exist", tp.topic);
                assert!(seen.insert((tp.topic.clone(), p)), "{protocol}: {}-{p} twice", tp.topic);
            }
        }
        // What an honest leader sends passes the member's check whole.
        let sent = Assignment::new(partitions.clone());
        let checked = check(&sent, &m.topics, &counts);
        assert!(checked.problems.is_empty(), "{protocol}: {member}: {}", checked.problems);
        assert_eq!(entries(&checked.kept), entries(&sent));
    }

    // A hostile leader's assignment to the first member.
    let subscribed = members.first().map(|m| m.topics.clone()).unwrap_or_default();
    let sent = match input.sent {
        Sent::Built { groups, times } => {
            let groups: Vec<TopicPartitions> = groups
                .into_iter()
                .take(8)
                .map(|(t, ps)| TopicPartitions::new(name(t), ps.into_iter().take(64).collect::<Vec<_>>()))
                .collect();
            // Up to 2 000 repetitions of up to 512 entries: past the cap.
            let times = usize::from(times % 2_000) + 1;
            Assignment::new(groups.iter().cycle().take(groups.len() * times).cloned().collect())
        }
        Sent::Wire(bytes) => match Assignment::decode(&bytes) {
            Ok(a) => a,
            Err(_) => return,
        },
    };
    check_member(&sent, &subscribed, &counts);
});
