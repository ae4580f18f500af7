use super::*;

/// A v3 subscription exactly as Java's `ConsumerProtocol.serializeSubscription`
/// writes it for topics [t1, t2], no user data, owning t1-0 and t1-1,
/// generation 5, rack "r1" — spelled out byte by byte from the schema.
const JAVA_SUBSCRIPTION_V3: &[u8] = &[
    0x00, 0x03, // version 3
    0x00, 0x00, 0x00, 0x02, // topics: 2 entries
    0x00, 0x02, b't', b'1', // "t1"
    0x00, 0x02, b't', b'2', // "t2"
    0xff, 0xff, 0xff, 0xff, // user_data: null
    0x00, 0x00, 0x00, 0x01, // owned_partitions: 1 entry
    0x00, 0x02, b't', b'1', //   topic "t1"
    0x00, 0x00, 0x00, 0x02, //   partitions: 2 entries
    0x00, 0x00, 0x00, 0x00, //     0
    0x00, 0x00, 0x00, 0x01, //     1
    0x00, 0x00, 0x00, 0x05, // generation_id 5
    0x00, 0x02, b'r', b'1', // rack_id "r1"
];

/// A v3 assignment as Java writes it: t1 partitions 0 and 2, t2 partition 1,
/// no user data.
const JAVA_ASSIGNMENT_V3: &[u8] = &[
    0x00, 0x03, // version 3
    0x00, 0x00, 0x00, 0x02, // assigned_partitions: 2 entries
    0x00, 0x02, b't', b'1', //   topic "t1"
    0x00, 0x00, 0x00, 0x02, //   partitions: 2 entries
    0x00, 0x00, 0x00, 0x00, //     0
    0x00, 0x00, 0x00, 0x02, //     2
    0x00, 0x02, b't', b'2', //   topic "t2"
    0x00, 0x00, 0x00, 0x01, //   partitions: 1 entry
    0x00, 0x00, 0x00, 0x01, //     1
    0xff, 0xff, 0xff, 0xff, // user_data: null
];

fn java_subscription() -> Subscription {
    Subscription {
        topics: vec!["t1".into(), "t2".into()],
        user_data: None,
        owned_partitions: vec![TopicPartitions::new("t1", [0, 1])],
        generation_id: Some(5),
        rack_id: Some("r1".into()),
    }
}

fn java_assignment() -> Assignment {
    Assignment::new(vec![
        TopicPartitions::new("t1", [0, 2]),
        TopicPartitions::new("t2", [1]),
    ])
}

#[test]
fn subscription_v3_matches_java_bytes_both_ways() {
    assert_eq!(
        Subscription::decode(JAVA_SUBSCRIPTION_V3),
        Ok(java_subscription())
    );
    let encoded = java_subscription()
        .encode(SUBSCRIPTION_VERSION)
        .expect("encodes");
    assert_eq!(&encoded[..], JAVA_SUBSCRIPTION_V3);
}

#[test]
fn assignment_v3_matches_java_bytes_both_ways() {
    assert_eq!(
        Assignment::decode(JAVA_ASSIGNMENT_V3),
        Ok(java_assignment())
    );
    let encoded = java_assignment()
        .encode(ASSIGNMENT_VERSION)
        .expect("encodes");
    assert_eq!(&encoded[..], JAVA_ASSIGNMENT_V3);
}

#[test]
fn subscription_v0_has_only_topics_and_user_data() {
    let bytes: &[u8] = &[
        0x00, 0x00, // version 0
        0x00, 0x00, 0x00, 0x01, // topics: 1
        0x00, 0x03, b'a', b'b', b'c', // "abc"
        0x00, 0x00, 0x00, 0x02, 0xca, 0xfe, // user_data: 2 bytes
    ];
    let expected = Subscription {
        topics: vec!["abc".into()],
        user_data: Some(Bytes::from_static(&[0xca, 0xfe])),
        ..Subscription::default()
    };
    assert_eq!(Subscription::decode(bytes), Ok(expected.clone()));
    assert_eq!(&expected.encode(0).expect("encodes")[..], bytes);

    // Fields a version lacks are dropped on encode, as in Java.
    let richer = Subscription {
        generation_id: Some(9),
        rack_id: Some("r".into()),
        owned_partitions: vec![TopicPartitions::new("abc", [0])],
        ..expected
    };
    assert_eq!(&richer.encode(0).expect("encodes")[..], bytes);
}

#[test]
fn subscription_v1_and_v2_layouts() {
    let v1: &[u8] = &[
        0x00, 0x01, // version 1
        0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b'x', // topics ["x"]
        0xff, 0xff, 0xff, 0xff, // user_data null
        0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b'x', // owned: topic "x"
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, //   partitions [7]
    ];
    let expected_v1 = Subscription {
        topics: vec!["x".into()],
        owned_partitions: vec![TopicPartitions::new("x", [7])],
        ..Subscription::default()
    };
    assert_eq!(Subscription::decode(v1), Ok(expected_v1.clone()));
    assert_eq!(&expected_v1.encode(1).expect("encodes")[..], v1);

    let mut v2 = v1.to_vec();
    v2[1] = 2;
    v2.extend_from_slice(&[0x00, 0x00, 0x00, 0x2a]); // generation 42
    let expected_v2 = Subscription {
        generation_id: Some(42),
        ..expected_v1
    };
    assert_eq!(Subscription::decode(&v2), Ok(expected_v2.clone()));
    assert_eq!(&expected_v2.encode(2).expect("encodes")[..], &v2[..]);
}

#[test]
fn generation_minus_one_and_empty_rack_decode_as_none() {
    let mut bytes = java_subscription().encode(3).expect("encodes").to_vec();
    // Replace generation 5 / rack "r1" with -1 / "".
    let tail = bytes.len() - 8;
    bytes.truncate(tail);
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x00, 0x00]);
    let decoded = Subscription::decode(&bytes).expect("decodes");
    assert_eq!(decoded.generation_id, None);
    assert_eq!(decoded.rack_id, None);

    // A null rack is fine too.
    let tail = bytes.len() - 2;
    bytes.truncate(tail);
    bytes.extend_from_slice(&[0xff, 0xff]);
    assert_eq!(Subscription::decode(&bytes).expect("decodes").rack_id, None);
}

#[test]
fn newer_versions_are_read_as_v3_and_trailing_bytes_ignored() {
    let mut future = JAVA_SUBSCRIPTION_V3.to_vec();
    future[1] = 9; // version 9
    future.extend_from_slice(&[0x00, 0x00, 0x00, 0x01, 0xde, 0xad]); // unknown v9 fields
    assert_eq!(Subscription::decode(&future), Ok(java_subscription()));

    let mut future = JAVA_ASSIGNMENT_V3.to_vec();
    future[0] = 0x7f; // version 32512
    future.push(0x42);
    assert_eq!(Assignment::decode(&future), Ok(java_assignment()));

    // Encoding at a newer version writes what we know, as v3 (Java clamps too).
    let encoded = java_subscription().encode(9).expect("encodes");
    assert_eq!(&encoded[..], JAVA_SUBSCRIPTION_V3);
}

#[test]
fn assignment_versions_share_one_layout() {
    for version in 0..=3i16 {
        let mut bytes = JAVA_ASSIGNMENT_V3.to_vec();
        bytes[..2].copy_from_slice(&version.to_be_bytes());
        assert_eq!(
            Assignment::decode(&bytes),
            Ok(java_assignment()),
            "v{version}"
        );
        assert_eq!(
            &java_assignment().encode(version).expect("encodes")[..],
            &bytes[..]
        );
    }
}

#[test]
fn encode_sorts_like_java() {
    let sub = Subscription {
        topics: vec!["b".into(), "a".into(), "c".into()],
        owned_partitions: vec![
            TopicPartitions::new("b", [3, 1]),
            TopicPartitions::new("a", [2]),
            TopicPartitions::new("b", [0]),
        ],
        ..Subscription::default()
    };
    let decoded = Subscription::decode(&sub.encode(3).expect("encodes")).expect("decodes");
    assert_eq!(decoded.topics, ["a", "b", "c"]);
    assert_eq!(
        decoded.owned_partitions,
        [
            TopicPartitions::new("a", [2]),
            TopicPartitions::new("b", [0, 1, 3])
        ]
    );

    // Java rebuilds the groups from flat (topic, partition) pairs, so a
    // topic listed without partitions is not written at all.
    let sub = Subscription {
        owned_partitions: vec![TopicPartitions::new("empty", [])],
        ..Subscription::new(["empty"])
    };
    let decoded = Subscription::decode(&sub.encode(3).expect("encodes")).expect("decodes");
    assert!(decoded.owned_partitions.is_empty());
}

#[test]
fn round_trips() {
    let subs = [
        Subscription::default(),
        Subscription::new(["orders"]),
        Subscription {
            topics: vec!["a".into(), "b".into()],
            user_data: Some(Bytes::from_static(b"\x00\x01user")),
            owned_partitions: vec![
                TopicPartitions::new("a", [0, 5]),
                TopicPartitions::new("b", [1]),
            ],
            generation_id: Some(i32::MAX),
            rack_id: Some("eu-west-1a".into()),
        },
        Subscription {
            user_data: Some(Bytes::new()),
            generation_id: Some(0),
            ..Subscription::new(["ünïcödé-topic"])
        },
    ];
    for sub in subs {
        let bytes = sub.encode(SUBSCRIPTION_VERSION).expect("encodes");
        assert_eq!(Subscription::decode(&bytes), Ok(sub));
    }

    let assignments = [
        Assignment::default(),
        java_assignment(),
        Assignment {
            partitions: vec![
                TopicPartitions::new("z", [9, 1]),
                TopicPartitions::new("a", [0]),
            ],
            user_data: Some(Bytes::from_static(b"sticky")),
        },
    ];
    for assignment in assignments {
        for version in 0..=3 {
            let bytes = assignment.encode(version).expect("encodes");
            assert_eq!(Assignment::decode(&bytes), Ok(assignment.clone()));
        }
    }
}

#[test]
fn assignment_helpers() {
    let a = java_assignment();
    assert!(!a.is_empty());
    assert_eq!(
        a.topic_partitions().collect::<Vec<_>>(),
        [("t1", 0), ("t1", 2), ("t2", 1)]
    );
    assert!(Assignment::default().is_empty());
    assert!(Assignment::new(vec![TopicPartitions::new("t", [])]).is_empty());
}

#[test]
fn missing_or_negative_version_is_an_error() {
    for payload in [&[][..], &[0x00][..]] {
        assert_eq!(
            Subscription::decode(payload),
            Err(ProtocolError::MissingVersion {
                kind: PayloadKind::Subscription,
                len: payload.len()
            })
        );
        assert!(matches!(
            Assignment::decode(payload),
            Err(ProtocolError::MissingVersion { .. })
        ));
    }
    assert_eq!(
        Subscription::decode(&[0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
        Err(ProtocolError::UnsupportedVersion {
            kind: PayloadKind::Subscription,
            version: -1
        })
    );
    assert!(matches!(
        java_assignment().encode(-2),
        Err(ProtocolError::UnsupportedVersion { version: -2, .. })
    ));
}

#[test]
fn every_truncation_is_an_error() {
    for len in 0..JAVA_SUBSCRIPTION_V3.len() {
        let result = Subscription::decode(&JAVA_SUBSCRIPTION_V3[..len]);
        assert!(result.is_err(), "prefix of {len} bytes decoded: {result:?}");
    }
    for len in 0..JAVA_ASSIGNMENT_V3.len() {
        let result = Assignment::decode(&JAVA_ASSIGNMENT_V3[..len]);
        assert!(result.is_err(), "prefix of {len} bytes decoded: {result:?}");
    }
    assert_eq!(
        Subscription::decode(&JAVA_SUBSCRIPTION_V3[..9]),
        Err(ProtocolError::Truncated {
            kind: PayloadKind::Subscription,
            version: 3,
            field: "topics[]",
            offset: 8,
            needed: 2,
            remaining: 1,
        })
    );
}

#[test]
fn absurd_lengths_are_rejected_without_allocating() {
    // 2^31-1 topics in a 10-byte payload.
    let huge = [0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        Subscription::decode(&huge),
        Err(ProtocolError::InvalidLength {
            kind: PayloadKind::Subscription,
            version: 0,
            field: "topics",
            offset: 2,
            length: i32::MAX,
        })
    );
    // 2^31-1 partitions for one topic.
    let huge = [
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b't', 0x7f, 0xff, 0xff, 0xff,
    ];
    assert!(matches!(
        Assignment::decode(&huge),
        Err(ProtocolError::InvalidLength {
            field: "assigned_partitions[].partitions",
            ..
        })
    ));
    // Negative (non-null) lengths.
    let negative_topic = [0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0xfe];
    assert!(matches!(
        Subscription::decode(&negative_topic),
        Err(ProtocolError::InvalidLength {
            field: "topics[]",
            length: -2,
            ..
        })
    ));
    let null_topic = [0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0xff];
    assert!(matches!(
        Subscription::decode(&null_topic),
        Err(ProtocolError::InvalidLength {
            field: "topics[]",
            length: -1,
            ..
        })
    ));
    let null_array = [0x00, 0x00, 0xff, 0xff, 0xff, 0xff];
    assert!(matches!(
        Assignment::decode(&null_array),
        Err(ProtocolError::InvalidLength {
            field: "assigned_partitions",
            length: -1,
            ..
        })
    ));
    let negative_user_data = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xfe];
    assert!(matches!(
        Subscription::decode(&negative_user_data),
        Err(ProtocolError::InvalidLength {
            field: "user_data",
            length: -2,
            ..
        })
    ));
}

#[test]
fn invalid_utf8_is_malformed() {
    let bytes = [
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0xc3, 0x28, 0xff, 0xff, 0xff, 0xff,
    ];
    assert!(matches!(
        Subscription::decode(&bytes),
        Err(ProtocolError::Malformed { version: 0, .. })
    ));
}

#[test]
fn oversized_topic_name_fails_to_encode() {
    let sub = Subscription::new(["x".repeat(40_000)]);
    assert!(matches!(sub.encode(3), Err(ProtocolError::Encode { .. })));
}

/// What any input gives: a value whose own encoding decodes to the same
/// (a fixed point, as the fuzz target checks), or an error naming the
/// payload. Says which decoded.
fn decodes_to_a_fixed_point_or_names_the_payload(bytes: &[u8]) -> [bool; 2] {
    let sub = Subscription::decode(bytes);
    match &sub {
        Ok(sub) => {
            let first = sub.encode(3).expect("a decoded subscription re-encodes");
            let again = Subscription::decode(&first).expect("our own encoding decodes");
            assert_eq!(again.encode(3).expect("re-encodes"), first, "{bytes:?}");
        }
        Err(e) => assert!(e.to_string().contains("subscription"), "{bytes:?}: {e}"),
    }
    let asg = Assignment::decode(bytes);
    match &asg {
        Ok(asg) => {
            let first = asg.encode(3).expect("a decoded assignment re-encodes");
            let again = Assignment::decode(&first).expect("our own encoding decodes");
            assert_eq!(&again, asg, "{bytes:?}");
        }
        Err(e) => assert!(e.to_string().contains("assignment"), "{bytes:?}: {e}"),
    }
    [sub.is_ok(), asg.is_ok()]
}

#[test]
fn random_and_mutated_input_never_panics() {
    // How many inputs decoded as [subscription, assignment], and how many
    // did not: both paths must have been taken for the test to mean much.
    let mut decoded = [0usize; 2];
    let mut tried = 0usize;
    let mut tally = |bytes: &[u8]| {
        tried += 1;
        let ok = decodes_to_a_fixed_point_or_names_the_payload(bytes);
        for (count, ok) in decoded.iter_mut().zip(ok) {
            *count += usize::from(ok);
        }
    };
    // Deterministic xorshift so failures reproduce.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = usize::try_from(next() % 48).unwrap_or(0);
        let mut bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        if let Some(b) = bytes.get_mut(0) {
            *b = 0; // keep the version plausible so the body gets parsed
        }
        tally(&bytes);
    }
    for seed in [JAVA_SUBSCRIPTION_V3, JAVA_ASSIGNMENT_V3] {
        for _ in 0..5_000 {
            let mut bytes = seed.to_vec();
            let flips = next() % 4 + 1;
            for _ in 0..flips {
                let at = usize::try_from(next()).unwrap_or(0) % bytes.len();
                if let Some(b) = bytes.get_mut(at) {
                    *b = next().to_le_bytes()[0];
                }
            }
            tally(&bytes);
        }
    }
    for (kind, count) in ["subscription", "assignment"].iter().zip(decoded) {
        assert!(
            count > 0 && count < tried,
            "{kind}: {count} of {tried} inputs decoded"
        );
    }
}

#[test]
fn java_string_order_is_utf16() {
    use std::cmp::Ordering;
    assert_eq!(java_string_cmp("a", "b"), Ordering::Less);
    assert_eq!(java_string_cmp("a", "aa"), Ordering::Less);
    assert_eq!(java_string_cmp("B", "a"), Ordering::Less);
    // U+FFFD sorts after U+1F600 in UTF-8 byte order but before it in UTF-16.
    assert_eq!("\u{FFFD}".cmp("\u{1F600}"), Ordering::Less);
    assert_eq!(java_string_cmp("\u{FFFD}", "\u{1F600}"), Ordering::Greater);
}
