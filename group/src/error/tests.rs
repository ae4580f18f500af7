use super::*;

#[test]
fn kafka_code_displays_java_names() {
    assert_eq!(KafkaCode::from_wire(16).to_string(), "NOT_COORDINATOR (16)");
    assert_eq!(
        KafkaCode::from_wire(82).to_string(),
        "FENCED_INSTANCE_ID (82)"
    );
    assert_eq!(
        KafkaCode::from_wire(3).to_string(),
        "UNKNOWN_TOPIC_OR_PARTITION (3)"
    );
    assert_eq!(
        KafkaCode::from_wire(-1).to_string(),
        "UNKNOWN_SERVER_ERROR (-1)"
    );
    assert_eq!(KafkaCode::from_wire(0).to_string(), "NONE (0)");
    assert_eq!(
        KafkaCode::from_wire(9999).to_string(),
        "UNKNOWN_ERROR_CODE (9999)"
    );
    assert_eq!(
        KafkaCode::from(ResponseError::MemberIdRequired),
        KafkaCode::from_wire(79)
    );
}

#[test]
fn kafka_code_keeps_the_number_and_types_it() {
    for code in (-5..=140).chain([i16::MIN, i16::MAX]) {
        assert_eq!(KafkaCode::from_wire(code).code(), code);
    }
    assert!(KafkaCode::from_wire(0).is_none());
    assert_eq!(KafkaCode::from_wire(0), KafkaCode::NONE);
    assert_eq!(
        KafkaCode::from_wire(16).error(),
        Some(ResponseError::NotCoordinator)
    );
    assert!(KafkaCode::from_wire(16).is(ResponseError::NotCoordinator));
    assert_eq!(
        KafkaCode::from_wire(9999).error(),
        Some(ResponseError::Unknown(9999))
    );
}

#[test]
fn messages_are_one_line_and_name_group_and_error() {
    let errors = [
        GroupError::FencedInstanceId {
            group: "g1".into(),
            api: GroupApi::Heartbeat,
        },
        GroupError::GroupAuthorizationFailed {
            group: "g1".into(),
            api: GroupApi::JoinGroup,
        },
        GroupError::GroupMaxSizeReached { group: "g1".into() },
        GroupError::InconsistentGroupProtocol {
            group: "g1".into(),
            api: GroupApi::JoinGroup,
            detail: "protocol type 'connect' is not 'consumer'".into(),
        },
        GroupError::InvalidSessionTimeout { group: "g1".into() },
        GroupError::InvalidGroupId {
            group: "g1".into(),
            api: GroupApi::JoinGroup,
        },
        GroupError::UnsupportedVersion {
            group: "g1".into(),
            api: GroupApi::JoinGroup,
        },
        GroupError::CommitFailed {
            group: "g1".into(),
            code: KafkaCode::from_wire(25),
        },
        GroupError::RebalanceInProgress {
            group: "g1".into(),
            api: GroupApi::OffsetCommit,
            code: KafkaCode::from_wire(27),
        },
        GroupError::TopicAuthorizationFailed {
            group: "g1".into(),
            api: GroupApi::OffsetCommit,
        },
        GroupError::OffsetCommitRejected {
            group: "g1".into(),
            code: KafkaCode::from_wire(12),
        },
        GroupError::UnknownTopicOrPartition {
            group: "g1".into(),
            code: KafkaCode::from_wire(3),
        },
        GroupError::Unexpected {
            group: "g1".into(),
            api: GroupApi::SyncGroup,
            code: KafkaCode::from_wire(-1),
        },
        GroupError::Protocol {
            group: "g1".into(),
            api: GroupApi::SyncGroup,
            source: ProtocolError::MissingVersion {
                kind: crate::payload::PayloadKind::Assignment,
                len: 1,
            },
        },
    ];
    for e in errors {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("'g1'"), "{msg}");
        assert_eq!(e.group(), "g1");
    }
    let msg = GroupError::CommitFailed {
        group: "orders".into(),
        code: KafkaCode::from_wire(22),
    }
    .to_string();
    assert!(msg.contains("ILLEGAL_GENERATION (22)"), "{msg}");
}
