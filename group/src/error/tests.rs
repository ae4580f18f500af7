use super::*;

#[test]
fn kafka_code_displays_java_names() {
    assert_eq!(KafkaCode(16).to_string(), "NOT_COORDINATOR (16)");
    assert_eq!(KafkaCode(82).to_string(), "FENCED_INSTANCE_ID (82)");
    assert_eq!(KafkaCode(3).to_string(), "UNKNOWN_TOPIC_OR_PARTITION (3)");
    assert_eq!(KafkaCode(-1).to_string(), "UNKNOWN_SERVER_ERROR (-1)");
    assert_eq!(KafkaCode(0).to_string(), "NONE (0)");
    assert_eq!(KafkaCode(9999).to_string(), "UNKNOWN_ERROR_CODE (9999)");
    assert_eq!(
        KafkaCode::from(ResponseError::MemberIdRequired),
        KafkaCode(79)
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
            code: KafkaCode(25),
        },
        GroupError::RebalanceInProgress {
            group: "g1".into(),
            api: GroupApi::OffsetCommit,
            code: KafkaCode(27),
        },
        GroupError::TopicAuthorizationFailed {
            group: "g1".into(),
            api: GroupApi::OffsetCommit,
        },
        GroupError::OffsetCommitRejected {
            group: "g1".into(),
            code: KafkaCode(12),
        },
        GroupError::UnknownTopicOrPartition {
            group: "g1".into(),
            code: KafkaCode(3),
        },
        GroupError::Unexpected {
            group: "g1".into(),
            api: GroupApi::SyncGroup,
            code: KafkaCode(-1),
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
        code: KafkaCode(22),
    }
    .to_string();
    assert!(msg.contains("ILLEGAL_GENERATION (22)"), "{msg}");
}
