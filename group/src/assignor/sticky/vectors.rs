//! Conformance with Kafka's own assignor classes: the vectors in
//! `group/tests/data/sticky-vectors.jsonl` were computed by
//! `scripts/sticky-vectors/StickyVectors.java` on the kafka-clients jar of
//! `scripts/kafka/pom.xml` (regenerate with `make sticky-vectors`).
//!
//! For every member the userData and the whole subscription we would send
//! must be Kafka's bytes; the leader decodes those bytes like ours does, and
//! the assignment must be Kafka's (`expected`, or `java` when that is null),
//! as sets per member — the order within a member's list carries no meaning
//! in Kafka. Where even the corrected Kafka result is not a valid assignment,
//! or Kafka throws, ours must be valid.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde_json::Value;

use super::{
    cooperative_sticky_user_data, sticky_user_data, CooperativeStickyAssignor, StickyAssignor,
};
use crate::assignor::{Assignor, GroupAssignment, MemberSubscription};
use crate::payload::{Subscription, TopicPartitions};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/sticky-vectors.jsonl"
);

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn str_of(v: &Value) -> &str {
    v.as_str().expect("string")
}

fn int(v: &Value) -> i32 {
    i32::try_from(v.as_i64().expect("integer")).expect("i32")
}

fn partitions(v: &Value) -> Vec<(String, i32)> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|tp| (str_of(&tp[0]).to_owned(), int(&tp[1])))
        .collect()
}

fn grouped(list: &[(String, i32)]) -> Vec<TopicPartitions> {
    list.iter()
        .map(|(t, p)| TopicPartitions::new(t.clone(), vec![*p]))
        .collect()
}

/// One member's bytes, as we would send them, checked against Kafka's;
/// returns the member as the leader decodes it from Kafka's bytes.
fn member(case: &str, assignor: &str, m: &Value) -> MemberSubscription {
    let id = str_of(&m["id"]);
    let owned = partitions(&m["owned"]);
    let user_data = if m["raw_user_data"].as_bool().expect("bool") {
        m["user_data"].as_str().map(|h| Bytes::from(hex(h)))
    } else {
        let generation = m["assignor_generation"]
            .as_i64()
            .map(|g| i32::try_from(g).expect("i32"));
        let ours = if assignor == super::COOPERATIVE_STICKY {
            Some(cooperative_sticky_user_data(generation.unwrap_or(-1)))
        } else {
            generation.map(|g| {
                let previous = match &m["previous"] {
                    Value::Null => owned.clone(),
                    v => partitions(v),
                };
                sticky_user_data(previous.iter().map(|(t, p)| (t.as_str(), *p)), g)
                    .expect("encodes")
            })
        };
        assert_eq!(
            ours.as_deref().map(to_hex),
            m["user_data"].as_str().map(str::to_owned),
            "{case}: userData of {id}"
        );
        ours
    };
    let generation = int(&m["generation"]);
    let subscription = Subscription {
        topics: m["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .map(|t| str_of(t).to_owned())
            .collect(),
        user_data,
        owned_partitions: grouped(&owned),
        generation_id: (generation >= 0).then_some(generation),
        rack_id: m["rack"].as_str().map(str::to_owned),
    };
    let version = i16::try_from(m["version"].as_i64().expect("version")).expect("i16");
    let kafka_bytes = hex(str_of(&m["subscription"]));
    assert_eq!(
        to_hex(&subscription.encode(version).expect("encodes")),
        to_hex(&kafka_bytes),
        "{case}: subscription of {id}"
    );
    let decoded = Subscription::decode(&kafka_bytes).expect("decodes Kafka's bytes");
    MemberSubscription::from_subscription(id, m["instance"].as_str().map(str::to_owned), decoded)
}

type Sets = BTreeMap<String, BTreeSet<(String, i32)>>;

fn sets(a: &GroupAssignment) -> Sets {
    a.iter()
        .map(|(member, tps)| {
            let set = tps
                .iter()
                .flat_map(|tp| tp.partitions.iter().map(|&p| (tp.topic.clone(), p)))
                .collect();
            (member.clone(), set)
        })
        .collect()
}

fn kafka_sets(v: &Value) -> Sets {
    v.as_object()
        .expect("assignment")
        .iter()
        .map(|(member, tps)| (member.clone(), partitions(tps).into_iter().collect()))
        .collect()
}

/// Each partition exists, goes to one member at most, and only to a member
/// subscribed to its topic; every member has an entry.
fn check_valid(case: &str, v: &Value, members: &[MemberSubscription], ours: &Sets) {
    let counts = v["partitions"].as_object().expect("partitions");
    let mut seen = BTreeSet::new();
    for m in members {
        let got = ours.get(&m.member_id);
        assert!(got.is_some(), "{case}: no entry for {}", m.member_id);
        for (topic, p) in got.into_iter().flatten() {
            let count = counts.get(topic).and_then(Value::as_i64).unwrap_or(0);
            assert!(
                (0..count).contains(&i64::from(*p)),
                "{case}: {topic}-{p} does not exist"
            );
            assert!(
                seen.insert((topic, p)),
                "{case}: {topic}-{p} assigned twice"
            );
            assert!(
                m.topics.contains(topic),
                "{case}: {topic}-{p} to {}, not subscribed",
                m.member_id
            );
        }
    }
}

#[test]
fn same_bytes_and_assignments_as_kafka() {
    let text = std::fs::read_to_string(VECTORS).expect("vectors (make sticky-vectors)");
    let mut figures: BTreeMap<&str, usize> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("json");
        let case = str_of(&v["name"]);
        let assignor_name = str_of(&v["assignor"]);
        let assignor: &dyn Assignor = match assignor_name {
            super::COOPERATIVE_STICKY => &CooperativeStickyAssignor,
            super::STICKY => &StickyAssignor,
            other => panic!("{case}: unknown assignor {other}"),
        };
        let assignor_name = assignor.name();
        let members: Vec<MemberSubscription> = v["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| member(case, assignor_name, m))
            .collect();
        let counts: BTreeMap<String, i32> = v["partitions"]
            .as_object()
            .expect("partitions")
            .iter()
            .map(|(t, n)| (t.clone(), int(n)))
            .collect();

        let ours = sets(&assignor.assign(&members, &counts));
        check_valid(case, &v, &members, &ours);

        let (expected, expected_invalid) = match &v["expected"] {
            Value::Null => (&v["java"], &v["java_invalid"]),
            e => (e, &v["expected_invalid"]),
        };
        *figures.entry(assignor_name).or_default() += 1;
        if !v["corrected"].is_null() {
            *figures.entry("input corrected").or_default() += 1;
        }
        if expected.get("error").is_some() || !expected_invalid.is_null() {
            *figures.entry("validity only").or_default() += 1;
            continue;
        }
        let kafka = kafka_sets(&expected["assignment"]);
        if kafka != ours {
            for (member, theirs) in &kafka {
                let mine = ours.get(member);
                if mine != Some(theirs) {
                    eprintln!("{member}: kafka {theirs:?}\n{member}: ours  {mine:?}");
                }
            }
            panic!("{case}: assignment differs from Kafka's");
        }
        *figures.entry("identical").or_default() += 1;
    }
    eprintln!("sticky vectors: {figures:?}");
    assert!(
        figures.get("identical").copied().unwrap_or(0) > 1000,
        "{figures:?}"
    );
}
