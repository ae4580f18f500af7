//! The leader's assignment, checked before this member acts on it.
//!
//! Any member of the group can become its leader and compute the
//! assignment, so what SyncGroup hands us is another client's word: it may
//! name topics we did not subscribe to, partitions that do not exist
//! (negative, or beyond the topic's count), the same partition twice, or a
//! list long enough to start a worker and a metric series per entry until
//! the process falls over. Java's consumer refuses an assignment that does
//! not match its subscription and rejoins (`ConsumerCoordinator.onJoinComplete`,
//! "received assignment does not match the current subscription"); it does
//! not look at partition numbers. [`check`] keeps what this member may
//! consume — subscribed, existing, once — and says what it dropped, so the
//! member can log it once, keep consuming the valid part and rejoin.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use crate::payload::{Assignment, TopicPartitions};

/// The most assignment entries looked at: no consumer is ever assigned this
/// many partitions (a Kafka cluster's recommended ceiling is a few hundred
/// thousand in all, shared by every group). Entries past it are dropped
/// unexamined; what is kept is bounded by the partitions that exist anyway.
pub const MAX_ASSIGNMENT_ENTRIES: usize = 100_000;

/// How many dropped entries of each kind the log line shows.
const EXAMPLES: usize = 5;

/// How much of a topic name the log line shows: names come from the leader.
const NAME_CHARS: usize = 64;

/// Dropped entries of one kind: how many, and the first few as
/// `topic-partition`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many entries.
    pub count: usize,
    /// The first [`EXAMPLES`] of them.
    pub examples: Vec<String>,
}

impl Tally {
    fn add(&mut self, topic: &str, partition: i32) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            let name: String = topic.chars().take(NAME_CHARS).collect();
            let cut = if name.len() < topic.len() { "…" } else { "" };
            self.examples.push(format!("{name}{cut}-{partition}"));
        }
    }
}

/// What [`check`] dropped from an assignment, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    /// Partitions of topics this member did not subscribe to.
    pub unsubscribed: Tally,
    /// Partitions of subscribed topics the cluster does not know.
    pub unknown_topic: Tally,
    /// Negative partitions, or partitions at or beyond the topic's count.
    pub out_of_range: Tally,
    /// A partition named again after its first time.
    pub duplicates: Tally,
    /// Entries past [`MAX_ASSIGNMENT_ENTRIES`], not looked at.
    pub over_cap: usize,
}

impl Problems {
    /// How many entries were dropped.
    pub fn total(&self) -> usize {
        self.unsubscribed.count
            + self.unknown_topic.count
            + self.out_of_range.count
            + self.duplicates.count
            + self.over_cap
    }

    /// Whether the assignment was valid as it came.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = [
            ("of topics not subscribed to", &self.unsubscribed),
            ("of topics the cluster does not know", &self.unknown_topic),
            (
                "negative or beyond the topic's partition count",
                &self.out_of_range,
            ),
            ("duplicates", &self.duplicates),
        ];
        let mut first = true;
        for (what, tally) in kinds.into_iter().filter(|(_, t)| t.count > 0) {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{} {what} ({}", tally.count, tally.examples.join(", "))?;
            if tally.count > tally.examples.len() {
                f.write_str(", …")?;
            }
            f.write_str(")")?;
        }
        if self.over_cap > 0 {
            if !first {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{} beyond the {MAX_ASSIGNMENT_ENTRIES} entries a member is ever assigned",
                self.over_cap
            )?;
        }
        Ok(())
    }
}

/// An assignment split into what this member keeps and what it dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The valid entries, grouped per topic in the order they came; the
    /// user data as it came.
    pub kept: Assignment,
    /// What was dropped, and why.
    pub problems: Problems,
}

/// Checks `assignment` against this member's `subscribed` topics and the
/// cluster's partition `counts` (topics missing from it do not exist).
/// Never panics; work and memory are linear in the entries looked at,
/// which are at most [`MAX_ASSIGNMENT_ENTRIES`].
pub fn check(
    assignment: &Assignment,
    subscribed: &[String],
    counts: &BTreeMap<String, i32>,
) -> Checked {
    let subscribed: BTreeSet<&str> = subscribed.iter().map(String::as_str).collect();
    let mut problems = Problems::default();
    let mut seen: BTreeSet<(&str, i32)> = BTreeSet::new();
    // Topic → its index in `kept`, so a topic sent in two groups stays one.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kept: Vec<TopicPartitions> = Vec::new();
    let mut looked_at = 0usize;
    for group in &assignment.partitions {
        let topic = group.topic.as_str();
        for &partition in &group.partitions {
            if looked_at == MAX_ASSIGNMENT_ENTRIES {
                problems.over_cap += 1;
                continue;
            }
            looked_at += 1;
            if !subscribed.contains(topic) {
                problems.unsubscribed.add(topic, partition);
                continue;
            }
            let Some(&count) = counts.get(topic) else {
                problems.unknown_topic.add(topic, partition);
                continue;
            };
            if !(0..count).contains(&partition) {
                problems.out_of_range.add(topic, partition);
                continue;
            }
            if !seen.insert((topic, partition)) {
                problems.duplicates.add(topic, partition);
                continue;
            }
            let at = *index.entry(topic).or_insert_with(|| {
                kept.push(TopicPartitions::new(topic, Vec::new()));
                kept.len() - 1
            });
            kept[at].partitions.push(partition);
        }
    }
    Checked {
        kept: Assignment {
            partitions: kept,
            user_data: assignment.user_data.clone(),
        },
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
        pairs.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    fn subscribed(topics: &[&str]) -> Vec<String> {
        topics.iter().map(|t| (*t).to_owned()).collect()
    }

    fn assignment(groups: &[(&str, &[i32])]) -> Assignment {
        Assignment::new(
            groups
                .iter()
                .map(|(t, ps)| TopicPartitions::new(*t, ps.to_vec()))
                .collect(),
        )
    }

    #[test]
    fn a_valid_assignment_is_kept_as_it_came() {
        let a = assignment(&[("orders", &[2, 0]), ("audit", &[1])]);
        let checked = check(
            &a,
            &subscribed(&["orders", "audit"]),
            &counts(&[("orders", 3), ("audit", 2)]),
        );
        assert_eq!(checked.kept, a);
        assert!(checked.problems.is_empty());
        assert_eq!(checked.problems.to_string(), "");
    }

    #[test]
    fn each_kind_of_bad_entry_is_dropped_and_named() {
        let a = assignment(&[
            ("orders", &[0, 9999, -1, 1, 0]),
            ("payroll", &[0, 1]),
            ("gone", &[0]),
            ("orders", &[1, 2]),
        ]);
        let checked = check(
            &a,
            &subscribed(&["orders", "gone"]),
            &counts(&[("orders", 3)]),
        );
        assert_eq!(checked.kept, assignment(&[("orders", &[0, 1, 2])]));
        let p = &checked.problems;
        assert_eq!(p.unsubscribed.count, 2);
        assert_eq!(p.unknown_topic.count, 1);
        assert_eq!(p.out_of_range.count, 2);
        assert_eq!(p.duplicates.count, 2);
        assert_eq!(p.total(), 7);
        assert_eq!(
            p.to_string(),
            "2 of topics not subscribed to (payroll-0, payroll-1); \
             1 of topics the cluster does not know (gone-0); \
             2 negative or beyond the topic's partition count (orders-9999, orders--1); \
             2 duplicates (orders-0, orders-1)"
        );
    }

    #[test]
    fn a_huge_list_is_capped_and_its_log_line_stays_short() {
        let many: Vec<i32> = (0..(MAX_ASSIGNMENT_ENTRIES as i32 + 50)).collect();
        let a = Assignment::new(vec![TopicPartitions::new("orders", many)]);
        let checked = check(&a, &subscribed(&["orders"]), &counts(&[("orders", 4)]));
        assert_eq!(checked.kept, assignment(&[("orders", &[0, 1, 2, 3])]));
        let p = &checked.problems;
        assert_eq!(p.out_of_range.count, MAX_ASSIGNMENT_ENTRIES - 4);
        assert_eq!(p.over_cap, 50);
        assert_eq!(p.out_of_range.examples.len(), EXAMPLES);
        let line = p.to_string();
        assert!(line.len() < 300, "{line}");
        assert!(line.ends_with("50 beyond the 100000 entries a member is ever assigned"));
    }

    #[test]
    fn a_long_topic_name_is_cut_in_the_examples() {
        let long = "x".repeat(5_000);
        let a = Assignment::new(vec![TopicPartitions::new(long.as_str(), vec![0])]);
        let checked = check(&a, &subscribed(&["orders"]), &counts(&[("orders", 1)]));
        assert!(checked.kept.partitions.is_empty());
        let example = &checked.problems.unsubscribed.examples[0];
        assert_eq!(example, &format!("{}…-0", "x".repeat(NAME_CHARS)));
    }

    #[test]
    fn user_data_is_kept_and_an_empty_assignment_is_valid() {
        let mut a = assignment(&[("orders", &[0])]);
        a.user_data = Some(bytes::Bytes::from_static(b"sticky"));
        let checked = check(&a, &subscribed(&["orders"]), &counts(&[("orders", 1)]));
        assert_eq!(checked.kept, a);
        let empty = check(
            &Assignment::default(),
            &subscribed(&["orders"]),
            &counts(&[]),
        );
        assert!(empty.problems.is_empty() && empty.kept.partitions.is_empty());
    }
}
