use std::time::Duration;

use super::*;
use crate::{error::KafkaCode, payload::TopicPartitions};
use kafka_protocol::ResponseError;

// Kafka error codes, named as in Java's `Errors`.
const NONE: KafkaCode = KafkaCode::NONE;
const UNKNOWN_SERVER_ERROR: KafkaCode = KafkaCode::of(ResponseError::UnknownServerError);
const UNKNOWN_TOPIC_OR_PARTITION: KafkaCode = KafkaCode::of(ResponseError::UnknownTopicOrPartition);
const REQUEST_TIMED_OUT: KafkaCode = KafkaCode::of(ResponseError::RequestTimedOut);
const OFFSET_METADATA_TOO_LARGE: KafkaCode = KafkaCode::of(ResponseError::OffsetMetadataTooLarge);
const COORDINATOR_LOAD_IN_PROGRESS: KafkaCode =
    KafkaCode::of(ResponseError::CoordinatorLoadInProgress);
const COORDINATOR_NOT_AVAILABLE: KafkaCode = KafkaCode::of(ResponseError::CoordinatorNotAvailable);
const NOT_COORDINATOR: KafkaCode = KafkaCode::of(ResponseError::NotCoordinator);
const ILLEGAL_GENERATION: KafkaCode = KafkaCode::of(ResponseError::IllegalGeneration);
const INCONSISTENT_GROUP_PROTOCOL: KafkaCode =
    KafkaCode::of(ResponseError::InconsistentGroupProtocol);
const INVALID_GROUP_ID: KafkaCode = KafkaCode::of(ResponseError::InvalidGroupId);
const UNKNOWN_MEMBER_ID: KafkaCode = KafkaCode::of(ResponseError::UnknownMemberId);
const INVALID_SESSION_TIMEOUT: KafkaCode = KafkaCode::of(ResponseError::InvalidSessionTimeout);
const REBALANCE_IN_PROGRESS: KafkaCode = KafkaCode::of(ResponseError::RebalanceInProgress);
const INVALID_COMMIT_OFFSET_SIZE: KafkaCode = KafkaCode::of(ResponseError::InvalidCommitOffsetSize);
const TOPIC_AUTHORIZATION_FAILED: KafkaCode =
    KafkaCode::of(ResponseError::TopicAuthorizationFailed);
const GROUP_AUTHORIZATION_FAILED: KafkaCode =
    KafkaCode::of(ResponseError::GroupAuthorizationFailed);
const UNSUPPORTED_VERSION: KafkaCode = KafkaCode::of(ResponseError::UnsupportedVersion);
const MEMBER_ID_REQUIRED: KafkaCode = KafkaCode::of(ResponseError::MemberIdRequired);
const GROUP_MAX_SIZE_REACHED: KafkaCode = KafkaCode::of(ResponseError::GroupMaxSizeReached);
const FENCED_INSTANCE_ID: KafkaCode = KafkaCode::of(ResponseError::FencedInstanceId);
const UNSTABLE_OFFSET_COMMIT: KafkaCode = KafkaCode::of(ResponseError::UnstableOffsetCommit);

const GROUP: &str = "orders";
const BACKOFF: Duration = Duration::from_millis(100);

const ALL_APIS: [GroupApi; 7] = [
    GroupApi::FindCoordinator,
    GroupApi::JoinGroup,
    GroupApi::SyncGroup,
    GroupApi::Heartbeat,
    GroupApi::OffsetCommit,
    GroupApi::OffsetFetch,
    GroupApi::LeaveGroup,
];

fn ctx(unchanged: bool, stable: bool, rebalancing: bool) -> ErrorContext<'static> {
    ErrorContext {
        group_id: GROUP,
        generation_unchanged: unchanged,
        stable,
        rebalancing,
        returned_member_id: "member-from-broker",
        backoff: BACKOFF,
    }
}

/// Current generation, stable, not rebalancing: the common case.
fn current() -> ErrorContext<'static> {
    ctx(true, true, false)
}

fn retry() -> Action {
    Action::Retry { backoff: BACKOFF }
}

fn rediscover() -> Action {
    Action::RediscoverCoordinator { backoff: BACKOFF }
}

fn rejoin(reset_member_id: bool, reset_generation: bool) -> Action {
    Action::Rejoin {
        reset_member_id,
        reset_generation,
    }
}

fn group() -> String {
    GROUP.to_owned()
}

fn unexpected(api: GroupApi, code: KafkaCode) -> GroupError {
    GroupError::Unexpected {
        group: group(),
        api,
        code,
    }
}

// ---------------------------------------------------------------------
// classify: every listed error code for every request
// ---------------------------------------------------------------------

#[test]
fn no_error_is_continue_everywhere() {
    for api in ALL_APIS {
        for c in [current(), ctx(false, false, true)] {
            assert_eq!(classify(api, NONE, &c), Action::Continue, "{api}");
        }
    }
}

#[test]
fn classify_join_group() {
    let api = GroupApi::JoinGroup;
    let c = ctx(true, false, true);
    let cases: Vec<(KafkaCode, Action)> = vec![
        (COORDINATOR_LOAD_IN_PROGRESS, retry()),
        (UNKNOWN_MEMBER_ID, rejoin(true, true)),
        (COORDINATOR_NOT_AVAILABLE, rediscover()),
        (NOT_COORDINATOR, rediscover()),
        (
            FENCED_INSTANCE_ID,
            Action::Fatal(GroupError::FencedInstanceId {
                group: group(),
                api,
            }),
        ),
        (
            INVALID_SESSION_TIMEOUT,
            Action::Fatal(GroupError::InvalidSessionTimeout { group: group() }),
        ),
        (
            INVALID_GROUP_ID,
            Action::Fatal(GroupError::InvalidGroupId {
                group: group(),
                api,
            }),
        ),
        (
            GROUP_AUTHORIZATION_FAILED,
            Action::Fatal(GroupError::GroupAuthorizationFailed {
                group: group(),
                api,
            }),
        ),
        (
            GROUP_MAX_SIZE_REACHED,
            Action::Fatal(GroupError::GroupMaxSizeReached { group: group() }),
        ),
        (
            UNSUPPORTED_VERSION,
            Action::Fatal(GroupError::UnsupportedVersion {
                group: group(),
                api,
            }),
        ),
        (
            MEMBER_ID_REQUIRED,
            Action::RejoinWithMemberId("member-from-broker".to_owned()),
        ),
        (REBALANCE_IN_PROGRESS, rejoin(false, false)),
        (
            UNKNOWN_SERVER_ERROR,
            Action::Fatal(unexpected(api, UNKNOWN_SERVER_ERROR)),
        ),
        (
            ILLEGAL_GENERATION,
            Action::Fatal(unexpected(api, ILLEGAL_GENERATION)),
        ),
    ];
    for (code, expected) in cases {
        assert_eq!(classify(api, code, &c), expected, "JoinGroup {}", code);
    }
    assert!(matches!(
        classify(api, INCONSISTENT_GROUP_PROTOCOL, &c),
        Action::Fatal(GroupError::InconsistentGroupProtocol { .. })
    ));
}

#[test]
fn classify_sync_group() {
    let api = GroupApi::SyncGroup;
    let now = ctx(true, false, false);
    let stale = ctx(false, false, false);
    let cases: Vec<(KafkaCode, ErrorContext<'_>, Action)> = vec![
        (
            GROUP_AUTHORIZATION_FAILED,
            now,
            Action::Fatal(GroupError::GroupAuthorizationFailed {
                group: group(),
                api,
            }),
        ),
        (REBALANCE_IN_PROGRESS, now, rejoin(false, false)),
        (
            FENCED_INSTANCE_ID,
            now,
            Action::Fatal(GroupError::FencedInstanceId {
                group: group(),
                api,
            }),
        ),
        (
            FENCED_INSTANCE_ID,
            stale,
            Action::Fatal(GroupError::FencedInstanceId {
                group: group(),
                api,
            }),
        ),
        (UNKNOWN_MEMBER_ID, now, rejoin(true, true)),
        (ILLEGAL_GENERATION, now, rejoin(false, true)),
        // Generation already changed: rejoin without resetting the new one.
        (UNKNOWN_MEMBER_ID, stale, rejoin(false, false)),
        (ILLEGAL_GENERATION, stale, rejoin(false, false)),
        (COORDINATOR_NOT_AVAILABLE, now, rediscover()),
        (NOT_COORDINATOR, now, rediscover()),
        (
            COORDINATOR_LOAD_IN_PROGRESS,
            now,
            Action::Fatal(unexpected(api, COORDINATOR_LOAD_IN_PROGRESS)),
        ),
        (
            UNKNOWN_SERVER_ERROR,
            now,
            Action::Fatal(unexpected(api, UNKNOWN_SERVER_ERROR)),
        ),
    ];
    for (code, c, expected) in cases {
        assert_eq!(classify(api, code, &c), expected, "SyncGroup {}", code);
    }
}

#[test]
fn classify_heartbeat() {
    let api = GroupApi::Heartbeat;
    let stable = current();
    let mid_rebalance = ctx(true, false, false);
    let stale = ctx(false, true, false);
    let cases: Vec<(KafkaCode, ErrorContext<'_>, Action)> = vec![
        (COORDINATOR_NOT_AVAILABLE, stable, rediscover()),
        (NOT_COORDINATOR, stable, rediscover()),
        (REBALANCE_IN_PROGRESS, stable, rejoin(false, false)),
        (REBALANCE_IN_PROGRESS, mid_rebalance, Action::Continue),
        (ILLEGAL_GENERATION, stable, rejoin(false, true)),
        (UNKNOWN_MEMBER_ID, stable, rejoin(true, true)),
        (
            FENCED_INSTANCE_ID,
            stable,
            Action::Fatal(GroupError::FencedInstanceId {
                group: group(),
                api,
            }),
        ),
        // About an old generation: ignored.
        (ILLEGAL_GENERATION, stale, Action::Continue),
        (UNKNOWN_MEMBER_ID, stale, Action::Continue),
        (FENCED_INSTANCE_ID, stale, Action::Continue),
        (
            GROUP_AUTHORIZATION_FAILED,
            stable,
            Action::Fatal(GroupError::GroupAuthorizationFailed {
                group: group(),
                api,
            }),
        ),
        (COORDINATOR_LOAD_IN_PROGRESS, stable, retry()),
        (UNKNOWN_SERVER_ERROR, stable, retry()),
    ];
    for (code, c, expected) in cases {
        assert_eq!(classify(api, code, &c), expected, "Heartbeat {}", code);
    }
}

#[test]
fn classify_offset_commit() {
    let api = GroupApi::OffsetCommit;
    let stable = current();
    let stale_stable = ctx(false, true, false);
    let stale_joining = ctx(false, false, true);
    let rip = |code| {
        Action::Fail(GroupError::RebalanceInProgress {
            group: group(),
            api,
            code,
        })
    };
    let cases: Vec<(KafkaCode, ErrorContext<'_>, Action)> = vec![
        (
            GROUP_AUTHORIZATION_FAILED,
            stable,
            Action::Fatal(GroupError::GroupAuthorizationFailed {
                group: group(),
                api,
            }),
        ),
        (
            TOPIC_AUTHORIZATION_FAILED,
            stable,
            Action::Fail(GroupError::TopicAuthorizationFailed {
                group: group(),
                api,
            }),
        ),
        (
            OFFSET_METADATA_TOO_LARGE,
            stable,
            Action::Fail(GroupError::OffsetCommitRejected {
                group: group(),
                code: OFFSET_METADATA_TOO_LARGE,
            }),
        ),
        (
            INVALID_COMMIT_OFFSET_SIZE,
            stable,
            Action::Fail(GroupError::OffsetCommitRejected {
                group: group(),
                code: INVALID_COMMIT_OFFSET_SIZE,
            }),
        ),
        (COORDINATOR_LOAD_IN_PROGRESS, stable, retry()),
        (UNKNOWN_TOPIC_OR_PARTITION, stable, retry()),
        (COORDINATOR_NOT_AVAILABLE, stable, rediscover()),
        (NOT_COORDINATOR, stable, rediscover()),
        (REQUEST_TIMED_OUT, stable, rediscover()),
        (
            FENCED_INSTANCE_ID,
            stable,
            Action::Fatal(GroupError::FencedInstanceId {
                group: group(),
                api,
            }),
        ),
        (FENCED_INSTANCE_ID, stale_joining, rip(FENCED_INSTANCE_ID)),
        (
            FENCED_INSTANCE_ID,
            stale_stable,
            Action::Fail(GroupError::CommitFailed {
                group: group(),
                code: FENCED_INSTANCE_ID,
            }),
        ),
        (REBALANCE_IN_PROGRESS, stable, rejoin(false, false)),
        (UNKNOWN_MEMBER_ID, stable, rejoin(true, true)),
        (ILLEGAL_GENERATION, stable, rejoin(false, true)),
        (UNKNOWN_MEMBER_ID, stale_joining, rip(UNKNOWN_MEMBER_ID)),
        (ILLEGAL_GENERATION, stale_joining, rip(ILLEGAL_GENERATION)),
        // Stale but not rebalancing: Java still resets (and so do we).
        (ILLEGAL_GENERATION, stale_stable, rejoin(false, true)),
        (
            UNKNOWN_SERVER_ERROR,
            stable,
            Action::Fail(unexpected(api, UNKNOWN_SERVER_ERROR)),
        ),
    ];
    for (code, c, expected) in cases {
        assert_eq!(classify(api, code, &c), expected, "OffsetCommit {}", code);
    }
}

#[test]
fn classify_offset_fetch_find_coordinator_and_leave() {
    let c = ctx(false, false, false);
    let fetch = GroupApi::OffsetFetch;
    assert_eq!(classify(fetch, COORDINATOR_LOAD_IN_PROGRESS, &c), retry());
    assert_eq!(classify(fetch, UNSTABLE_OFFSET_COMMIT, &c), retry());
    assert_eq!(classify(fetch, NOT_COORDINATOR, &c), rediscover());
    assert_eq!(classify(fetch, COORDINATOR_NOT_AVAILABLE, &c), rediscover());
    assert_eq!(
        classify(fetch, GROUP_AUTHORIZATION_FAILED, &c),
        Action::Fatal(GroupError::GroupAuthorizationFailed {
            group: group(),
            api: fetch
        })
    );
    assert_eq!(
        classify(fetch, TOPIC_AUTHORIZATION_FAILED, &c),
        Action::Fail(GroupError::TopicAuthorizationFailed {
            group: group(),
            api: fetch
        })
    );
    assert_eq!(
        classify(fetch, UNKNOWN_TOPIC_OR_PARTITION, &c),
        Action::Fail(GroupError::UnknownTopicOrPartition {
            group: group(),
            code: UNKNOWN_TOPIC_OR_PARTITION
        })
    );
    assert_eq!(
        classify(fetch, UNKNOWN_SERVER_ERROR, &c),
        Action::Fail(unexpected(fetch, UNKNOWN_SERVER_ERROR))
    );

    let find = GroupApi::FindCoordinator;
    for code in [
        COORDINATOR_NOT_AVAILABLE,
        NOT_COORDINATOR,
        COORDINATOR_LOAD_IN_PROGRESS,
    ] {
        assert_eq!(classify(find, code, &c), retry(), "{}", code);
    }
    assert_eq!(
        classify(find, GROUP_AUTHORIZATION_FAILED, &c),
        Action::Fatal(GroupError::GroupAuthorizationFailed {
            group: group(),
            api: find
        })
    );
    assert_eq!(
        classify(find, INVALID_GROUP_ID, &c),
        Action::Fatal(unexpected(find, INVALID_GROUP_ID))
    );

    for code in [
        UNKNOWN_MEMBER_ID,
        FENCED_INSTANCE_ID,
        GROUP_AUTHORIZATION_FAILED,
        UNKNOWN_SERVER_ERROR,
    ] {
        assert_eq!(classify(GroupApi::LeaveGroup, code, &c), Action::Continue);
    }
}

#[test]
fn classify_is_total() {
    // Every code Kafka defines (and some it does not), every request,
    // every context: an answer, never a panic; an error that names the
    // group and the code that caused it; the context's backoff; leaving is
    // best effort.
    for api in ALL_APIS {
        for code in (-5..=140)
            .chain([i16::MIN, i16::MAX])
            .map(KafkaCode::from_wire)
        {
            for bits in 0..8u8 {
                let c = ctx(bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
                let action = classify(api, code, &c);
                let what = format!("{api} {code} {c:?}: {action:?}");
                match &action {
                    Action::Fail(e) | Action::Fatal(e) => {
                        assert_eq!(e.group(), GROUP, "{what}");
                        let shown = e.to_string();
                        assert!(shown.contains(&format!("({})", code.code())), "{what}");
                    }
                    Action::Retry { backoff } | Action::RediscoverCoordinator { backoff } => {
                        assert_eq!(*backoff, BACKOFF, "{what}");
                    }
                    Action::RejoinWithMemberId(id) => {
                        assert_eq!((api, code), (GroupApi::JoinGroup, MEMBER_ID_REQUIRED));
                        assert_eq!(id, "member-from-broker", "{what}");
                    }
                    Action::Continue | Action::Rejoin { .. } => {}
                }
                if api == GroupApi::LeaveGroup || code.is_none() {
                    assert_eq!(action, Action::Continue, "{what}");
                }
            }
        }
    }
}

#[test]
fn commit_helpers() {
    assert_eq!(first_commit_error([]), None);
    assert_eq!(first_commit_error([NONE, NONE]), None);
    assert_eq!(
        first_commit_error([NONE, TOPIC_AUTHORIZATION_FAILED, NONE]),
        Some(TOPIC_AUTHORIZATION_FAILED)
    );
    assert_eq!(
        first_commit_error([
            TOPIC_AUTHORIZATION_FAILED,
            ILLEGAL_GENERATION,
            UNKNOWN_MEMBER_ID
        ]),
        Some(ILLEGAL_GENERATION)
    );
    assert_eq!(
        commit_failure(GROUP, REBALANCE_IN_PROGRESS),
        GroupError::RebalanceInProgress {
            group: group(),
            api: GroupApi::OffsetCommit,
            code: REBALANCE_IN_PROGRESS
        }
    );
    assert_eq!(
        commit_failure(GROUP, UNKNOWN_MEMBER_ID),
        GroupError::CommitFailed {
            group: group(),
            code: UNKNOWN_MEMBER_ID
        }
    );
}

#[test]
fn backoff_doubles_up_to_max() {
    let b = Backoff::default();
    let delays: Vec<u64> = (0..6)
        .map(|n| u64::try_from(b.delay(n).as_millis()).unwrap_or(u64::MAX))
        .collect();
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(b.delay(u32::MAX), b.max);
    let huge = Backoff {
        initial: Duration::MAX,
        max: Duration::MAX,
    };
    assert_eq!(huge.delay(40), Duration::MAX);
}

// ---------------------------------------------------------------------
// Membership: transitions
// ---------------------------------------------------------------------

fn assignment() -> Assignment {
    Assignment::new(vec![TopicPartitions::new("t", [0, 1])])
}

fn assignment_bytes() -> Bytes {
    assignment().encode(3).unwrap_or_default()
}

fn dynamic_member() -> Membership {
    Membership::new(GROUP, None, Backoff::default())
}

fn join_ok(member_id: &str, generation_id: i32) -> Event {
    Event::JoinGroupOk {
        generation_id,
        member_id: member_id.to_owned(),
        protocol_type: Some("consumer".to_owned()),
        protocol_name: Some("range".to_owned()),
        leader: true,
    }
}

fn sync_ok() -> Event {
    Event::SyncGroupOk {
        protocol_type: Some("consumer".to_owned()),
        protocol_name: Some("range".to_owned()),
        assignment: assignment_bytes(),
    }
}

fn joining() -> Membership {
    let mut m = dynamic_member();
    assert_eq!(m.handle(Event::JoinSent), Action::Continue);
    assert_eq!(m.state(), &MemberState::Joining);
    m
}

fn awaiting_sync() -> Membership {
    let mut m = joining();
    assert_eq!(m.handle(join_ok("m-1", 7)), Action::Continue);
    assert_eq!(m.state(), &MemberState::AwaitingSync { leader: true });
    m
}

fn stable() -> Membership {
    let mut m = awaiting_sync();
    assert_eq!(m.handle(sync_ok()), Action::Continue);
    assert_eq!(
        m.state(),
        &MemberState::Stable {
            assignment: assignment()
        }
    );
    m
}

fn generation(id: i32, member: &str, protocol: Option<&str>) -> Generation {
    Generation {
        generation_id: id,
        member_id: member.to_owned(),
        protocol_name: protocol.map(str::to_owned),
    }
}

fn revoking(lost: bool, then: AfterRevoke) -> MemberState {
    MemberState::Revoking {
        assignment: assignment(),
        lost,
        then,
    }
}

#[test]
fn happy_path_join_sync_stable() {
    let m = stable();
    assert_eq!(m.generation(), &generation(7, "m-1", Some("range")));
    assert_eq!(m.commit_generation(), Some(m.generation()));
    assert_eq!(m.assignment(), Some(&assignment()));
    assert!(!m.is_terminal());
    assert_eq!(m.group_id(), GROUP);
    assert_eq!(m.group_instance_id(), None);
}

#[test]
fn join_member_id_required_stores_id_and_rejoins() {
    let mut m = joining();
    let action = m.handle(Event::JoinGroupError {
        code: MEMBER_ID_REQUIRED,
        member_id: "m-given".to_owned(),
    });
    assert_eq!(action, Action::RejoinWithMemberId("m-given".to_owned()));
    assert_eq!(m.state(), &MemberState::Joining);
    assert_eq!(m.generation(), &generation(-1, "m-given", None));
    m.handle(Event::JoinSent);
    assert_eq!(m.handle(join_ok("m-given", 1)), Action::Continue);
}

#[test]
fn join_unknown_member_id_resets_and_rejoins_as_new_member() {
    let mut m = joining();
    m.handle(Event::JoinGroupError {
        code: MEMBER_ID_REQUIRED,
        member_id: "m-old".to_owned(),
    });
    let action = m.handle(Event::JoinGroupError {
        code: UNKNOWN_MEMBER_ID,
        member_id: String::new(),
    });
    assert_eq!(action, rejoin(true, true));
    assert_eq!(m.state(), &MemberState::Unjoined);
    assert_eq!(m.generation(), &Generation::none());
}

#[test]
fn join_retriable_errors_keep_joining_with_growing_backoff() {
    let mut m = joining();
    let mut backoffs = Vec::new();
    for _ in 0..5 {
        match m.handle(Event::JoinGroupError {
            code: COORDINATOR_LOAD_IN_PROGRESS,
            member_id: String::new(),
        }) {
            Action::Retry { backoff } => backoffs.push(backoff.as_millis()),
            other => panic!("expected Retry, got {other:?}"),
        }
        assert_eq!(m.state(), &MemberState::Joining);
    }
    assert_eq!(backoffs, [100, 200, 400, 800, 1000]);
    for code in [NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE] {
        assert!(matches!(
            m.handle(Event::JoinGroupError {
                code,
                member_id: String::new()
            }),
            Action::RediscoverCoordinator { .. }
        ));
        assert_eq!(m.state(), &MemberState::Joining);
    }
    assert_eq!(
        m.handle(Event::JoinGroupError {
            code: REBALANCE_IN_PROGRESS,
            member_id: String::new()
        }),
        rejoin(false, false)
    );
    assert_eq!(m.state(), &MemberState::Joining);
    // Success resets the backoff.
    m.handle(join_ok("m-1", 1));
    let mut m2 = m.clone();
    m2.handle(Event::SyncGroupError {
        sent: m.generation().clone(),
        code: REBALANCE_IN_PROGRESS,
    });
    m2.handle(Event::JoinSent);
    assert_eq!(
        m2.handle(Event::JoinGroupError {
            code: COORDINATOR_LOAD_IN_PROGRESS,
            member_id: String::new()
        }),
        Action::Retry {
            backoff: Duration::from_millis(100)
        }
    );
}

#[test]
fn join_fatal_errors_stop_the_member() {
    for code in [
        FENCED_INSTANCE_ID,
        GROUP_AUTHORIZATION_FAILED,
        INVALID_SESSION_TIMEOUT,
        INCONSISTENT_GROUP_PROTOCOL,
        GROUP_MAX_SIZE_REACHED,
        INVALID_GROUP_ID,
        UNSUPPORTED_VERSION,
        UNKNOWN_SERVER_ERROR,
    ] {
        let mut m = joining();
        let action = m.handle(Event::JoinGroupError {
            code,
            member_id: String::new(),
        });
        let Action::Fatal(error) = action else {
            panic!("{}: expected Fatal, got {action:?}", code);
        };
        assert_eq!(m.state(), &MemberState::Fatal(error.clone()));
        assert!(m.is_terminal());
        assert!(error.to_string().contains(GROUP));
        // Terminal: everything else is ignored.
        assert_eq!(m.handle(join_ok("m", 1)), Action::Continue);
        assert_eq!(m.handle(Event::LeaveRequested), Action::Continue);
        assert_eq!(m.state(), &MemberState::Fatal(error));
    }
}

#[test]
fn join_ok_with_foreign_protocol_type_is_fatal() {
    let mut m = joining();
    let action = m.handle(Event::JoinGroupOk {
        generation_id: 1,
        member_id: "m".to_owned(),
        protocol_type: Some("connect".to_owned()),
        protocol_name: Some("range".to_owned()),
        leader: false,
    });
    assert!(matches!(
        action,
        Action::Fatal(GroupError::InconsistentGroupProtocol {
            api: GroupApi::JoinGroup,
            ..
        })
    ));
    assert!(m.is_terminal());
}

#[test]
fn join_ok_after_reset_mid_flight_backs_off_and_rejoins() {
    let mut m = dynamic_member();
    // Never sent JoinSent (or was reset to Unjoined meanwhile).
    assert_eq!(m.handle(join_ok("m", 1)), retry());
    assert_eq!(m.state(), &MemberState::Unjoined);
    // A JoinGroup error for a superseded request is ignored.
    let mut s = stable();
    assert_eq!(
        s.handle(Event::JoinGroupError {
            code: UNKNOWN_MEMBER_ID,
            member_id: String::new()
        }),
        Action::Continue
    );
    assert!(matches!(s.state(), MemberState::Stable { .. }));
}

#[test]
fn sync_errors() {
    let sent = generation(7, "m-1", Some("range"));
    let stale = generation(6, "m-1", Some("range"));
    // (code, sent, action, state, generation afterwards)
    let cases: Vec<(KafkaCode, &Generation, Action, MemberState, Generation)> = vec![
        (
            REBALANCE_IN_PROGRESS,
            &sent,
            rejoin(false, false),
            MemberState::Joining,
            sent.clone(),
        ),
        (
            UNKNOWN_MEMBER_ID,
            &sent,
            rejoin(true, true),
            MemberState::Unjoined,
            Generation::none(),
        ),
        (
            ILLEGAL_GENERATION,
            &sent,
            rejoin(false, true),
            MemberState::Unjoined,
            generation(-1, "m-1", None),
        ),
        (
            ILLEGAL_GENERATION,
            &stale,
            rejoin(false, false),
            MemberState::Joining,
            sent.clone(),
        ),
        (
            UNKNOWN_MEMBER_ID,
            &stale,
            rejoin(false, false),
            MemberState::Joining,
            sent.clone(),
        ),
        (
            NOT_COORDINATOR,
            &sent,
            rediscover(),
            MemberState::Joining,
            sent.clone(),
        ),
        (
            COORDINATOR_NOT_AVAILABLE,
            &sent,
            rediscover(),
            MemberState::Joining,
            sent.clone(),
        ),
    ];
    for (code, sent_generation, action, state, after) in cases {
        let mut m = awaiting_sync();
        let got = m.handle(Event::SyncGroupError {
            sent: sent_generation.clone(),
            code,
        });
        assert_eq!(got, action, "SyncGroup {}", code);
        assert_eq!(m.state(), &state, "SyncGroup {}", code);
        assert_eq!(m.generation(), &after, "SyncGroup {}", code);
    }
    for code in [
        FENCED_INSTANCE_ID,
        GROUP_AUTHORIZATION_FAILED,
        COORDINATOR_LOAD_IN_PROGRESS,
        UNKNOWN_SERVER_ERROR,
    ] {
        let mut m = awaiting_sync();
        let got = m.handle(Event::SyncGroupError {
            sent: sent.clone(),
            code,
        });
        assert!(
            matches!(got, Action::Fatal(_)),
            "SyncGroup {}: {got:?}",
            code
        );
        assert!(m.is_terminal());
    }
}

#[test]
fn sync_ok_checks_protocol_and_payload() {
    let mut m = awaiting_sync();
    let action = m.handle(Event::SyncGroupOk {
        protocol_type: Some("consumer".to_owned()),
        protocol_name: Some("roundrobin".to_owned()),
        assignment: assignment_bytes(),
    });
    assert!(matches!(
        action,
        Action::Fatal(GroupError::InconsistentGroupProtocol {
            api: GroupApi::SyncGroup,
            ..
        })
    ));

    let mut m = awaiting_sync();
    let action = m.handle(Event::SyncGroupOk {
        protocol_type: Some("other".to_owned()),
        protocol_name: None,
        assignment: assignment_bytes(),
    });
    assert!(matches!(
        action,
        Action::Fatal(GroupError::InconsistentGroupProtocol { .. })
    ));

    let mut m = awaiting_sync();
    let action = m.handle(Event::SyncGroupOk {
        protocol_type: None,
        protocol_name: None,
        assignment: Bytes::from_static(&[0x00, 0x03, 0x7f]),
    });
    assert!(matches!(
        action,
        Action::Fatal(GroupError::Protocol {
            api: GroupApi::SyncGroup,
            ..
        })
    ));

    // Empty payload: nothing assigned.
    let mut m = awaiting_sync();
    let action = m.handle(Event::SyncGroupOk {
        protocol_type: None,
        protocol_name: None,
        assignment: Bytes::new(),
    });
    assert_eq!(action, Action::Continue);
    assert_eq!(
        m.state(),
        &MemberState::Stable {
            assignment: Assignment::default()
        }
    );
}

#[test]
fn sync_ok_after_generation_reset_by_heartbeat_rejoins() {
    let mut m = awaiting_sync();
    let sent = m.generation().clone();
    // The heartbeat thread hears ILLEGAL_GENERATION while SyncGroup is in flight.
    assert_eq!(
        m.handle(Event::HeartbeatError {
            sent,
            code: ILLEGAL_GENERATION
        }),
        rejoin(false, true)
    );
    assert_eq!(m.state(), &MemberState::Unjoined);
    assert_eq!(m.handle(sync_ok()), rejoin(false, false));
    assert_eq!(m.state(), &MemberState::Unjoined);
    assert_eq!(m.generation(), &generation(-1, "m-1", None));
}

#[test]
fn heartbeat_errors_while_stable() {
    let current = generation(7, "m-1", Some("range"));
    let stale = generation(6, "m-1", Some("range"));
    // (code, sent, action, state, generation afterwards, commit allowed)
    let cases: Vec<(
        KafkaCode,
        &Generation,
        Action,
        MemberState,
        Generation,
        bool,
    )> = vec![
        (
            REBALANCE_IN_PROGRESS,
            &current,
            rejoin(false, false),
            revoking(false, AfterRevoke::Rejoin),
            current.clone(),
            true,
        ),
        (
            ILLEGAL_GENERATION,
            &current,
            rejoin(false, true),
            revoking(true, AfterRevoke::Rejoin),
            generation(-1, "m-1", None),
            false,
        ),
        (
            UNKNOWN_MEMBER_ID,
            &current,
            rejoin(true, true),
            revoking(true, AfterRevoke::Rejoin),
            Generation::none(),
            false,
        ),
        (
            ILLEGAL_GENERATION,
            &stale,
            Action::Continue,
            MemberState::Stable {
                assignment: assignment(),
            },
            current.clone(),
            true,
        ),
        (
            UNKNOWN_MEMBER_ID,
            &stale,
            Action::Continue,
            MemberState::Stable {
                assignment: assignment(),
            },
            current.clone(),
            true,
        ),
        (
            FENCED_INSTANCE_ID,
            &stale,
            Action::Continue,
            MemberState::Stable {
                assignment: assignment(),
            },
            current.clone(),
            true,
        ),
        (
            NOT_COORDINATOR,
            &current,
            rediscover(),
            MemberState::Stable {
                assignment: assignment(),
            },
            current.clone(),
            true,
        ),
        (
            COORDINATOR_NOT_AVAILABLE,
            &current,
            rediscover(),
            MemberState::Stable {
                assignment: assignment(),
            },
            current.clone(),
            true,
        ),
        (
            COORDINATOR_LOAD_IN_PROGRESS,
            &current,
            retry(),
            MemberState::Stable {
                assignment: assignment(),
            },
            current.clone(),
            true,
        ),
        (
            UNKNOWN_SERVER_ERROR,
            &current,
            retry(),
            MemberState::Stable {
                assignment: assignment(),
            },
            current.clone(),
            true,
        ),
    ];
    for (code, sent, action, state, after, can_commit) in cases {
        let mut m = stable();
        let got = m.handle(Event::HeartbeatError {
            sent: sent.clone(),
            code,
        });
        assert_eq!(got, action, "Heartbeat {}", code);
        assert_eq!(m.state(), &state, "Heartbeat {}", code);
        assert_eq!(m.generation(), &after, "Heartbeat {}", code);
        assert_eq!(
            m.commit_generation().is_some(),
            can_commit,
            "Heartbeat {}",
            code
        );
    }
    for code in [FENCED_INSTANCE_ID, GROUP_AUTHORIZATION_FAILED] {
        let mut m = stable();
        let got = m.handle(Event::HeartbeatError {
            sent: current.clone(),
            code,
        });
        assert!(
            matches!(got, Action::Fatal(_)),
            "Heartbeat {}: {got:?}",
            code
        );
        assert!(m.is_terminal());
    }
    assert_eq!(stable().handle(Event::HeartbeatOk), Action::Continue);
}

#[test]
fn heartbeat_rebalance_in_progress_is_ignored_mid_rebalance() {
    let mut m = awaiting_sync();
    let sent = m.generation().clone();
    assert_eq!(
        m.handle(Event::HeartbeatError {
            sent,
            code: REBALANCE_IN_PROGRESS
        }),
        Action::Continue
    );
    assert_eq!(m.state(), &MemberState::AwaitingSync { leader: true });
}

#[test]
fn revocation_then_rejoin_keeps_member_id() {
    let mut m = stable();
    let sent = m.generation().clone();
    m.handle(Event::HeartbeatError {
        sent: sent.clone(),
        code: REBALANCE_IN_PROGRESS,
    });
    assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));
    // Commits for the revoked partitions still use the old generation.
    assert_eq!(m.commit_generation(), Some(&sent));
    // More heartbeat errors during revocation do not restart it.
    assert_eq!(
        m.handle(Event::HeartbeatError {
            sent: sent.clone(),
            code: REBALANCE_IN_PROGRESS
        }),
        rejoin(false, false)
    );
    assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));
    assert_eq!(m.handle(Event::RevocationDone), Action::Continue);
    assert_eq!(m.state(), &MemberState::Unjoined);
    assert_eq!(m.generation().member_id, "m-1");
    m.handle(Event::JoinSent);
    assert_eq!(m.state(), &MemberState::Joining);
}

#[test]
fn commit_errors_while_stable() {
    let current = generation(7, "m-1", Some("range"));
    let stable_state = || MemberState::Stable {
        assignment: assignment(),
    };
    // (code, action, state, generation afterwards)
    let cases: Vec<(KafkaCode, Action, MemberState, Generation)> = vec![
        (
            COORDINATOR_LOAD_IN_PROGRESS,
            retry(),
            stable_state(),
            current.clone(),
        ),
        (
            UNKNOWN_TOPIC_OR_PARTITION,
            retry(),
            stable_state(),
            current.clone(),
        ),
        (
            NOT_COORDINATOR,
            rediscover(),
            stable_state(),
            current.clone(),
        ),
        (
            COORDINATOR_NOT_AVAILABLE,
            rediscover(),
            stable_state(),
            current.clone(),
        ),
        (
            REQUEST_TIMED_OUT,
            rediscover(),
            stable_state(),
            current.clone(),
        ),
        (
            REBALANCE_IN_PROGRESS,
            rejoin(false, false),
            revoking(false, AfterRevoke::Rejoin),
            current.clone(),
        ),
        (
            ILLEGAL_GENERATION,
            rejoin(false, true),
            revoking(true, AfterRevoke::Rejoin),
            generation(-1, "m-1", None),
        ),
        (
            UNKNOWN_MEMBER_ID,
            rejoin(true, true),
            revoking(true, AfterRevoke::Rejoin),
            Generation::none(),
        ),
        (
            OFFSET_METADATA_TOO_LARGE,
            Action::Fail(GroupError::OffsetCommitRejected {
                group: group(),
                code: OFFSET_METADATA_TOO_LARGE,
            }),
            stable_state(),
            current.clone(),
        ),
        (
            INVALID_COMMIT_OFFSET_SIZE,
            Action::Fail(GroupError::OffsetCommitRejected {
                group: group(),
                code: INVALID_COMMIT_OFFSET_SIZE,
            }),
            stable_state(),
            current.clone(),
        ),
        (
            TOPIC_AUTHORIZATION_FAILED,
            Action::Fail(GroupError::TopicAuthorizationFailed {
                group: group(),
                api: GroupApi::OffsetCommit,
            }),
            stable_state(),
            current.clone(),
        ),
        (
            UNKNOWN_SERVER_ERROR,
            Action::Fail(unexpected(GroupApi::OffsetCommit, UNKNOWN_SERVER_ERROR)),
            stable_state(),
            current.clone(),
        ),
    ];
    for (code, action, state, after) in cases {
        let mut m = stable();
        let got = m.handle(Event::CommitError {
            sent: current.clone(),
            code,
        });
        assert_eq!(got, action, "OffsetCommit {}", code);
        assert_eq!(m.state(), &state, "OffsetCommit {}", code);
        assert_eq!(m.generation(), &after, "OffsetCommit {}", code);
    }
    for code in [FENCED_INSTANCE_ID, GROUP_AUTHORIZATION_FAILED] {
        let mut m = stable();
        let got = m.handle(Event::CommitError {
            sent: current.clone(),
            code,
        });
        assert!(
            matches!(got, Action::Fatal(_)),
            "OffsetCommit {}: {got:?}",
            code
        );
        assert!(m.is_terminal());
    }
    assert_eq!(stable().handle(Event::CommitOk), Action::Continue);
}

#[test]
fn stale_commit_errors() {
    let old = generation(6, "m-0", Some("range"));
    // While a JoinGroup is in flight: the commit fails, nothing is reset.
    for code in [UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID] {
        let mut m = joining();
        let got = m.handle(Event::CommitError {
            sent: old.clone(),
            code,
        });
        assert!(
            matches!(got, Action::Fail(GroupError::RebalanceInProgress { .. })),
            "{}: {got:?}",
            code
        );
        assert_eq!(m.state(), &MemberState::Joining);
        assert_eq!(m.generation(), &Generation::none());
    }
    // While stable in a newer generation: fenced is not fatal.
    let mut m = stable();
    let got = m.handle(Event::CommitError {
        sent: old,
        code: FENCED_INSTANCE_ID,
    });
    assert!(
        matches!(got, Action::Fail(GroupError::CommitFailed { .. })),
        "{got:?}"
    );
    assert!(matches!(m.state(), MemberState::Stable { .. }));
}

#[test]
fn commit_errors_during_revocation_do_not_restart_it() {
    let mut m = stable();
    let sent = m.generation().clone();
    m.handle(Event::RejoinRequested);
    assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));
    assert_eq!(
        m.handle(Event::CommitError {
            sent,
            code: ILLEGAL_GENERATION
        }),
        rejoin(false, true)
    );
    // The revoke already began as a revoke (not lost); only the
    // generation is reset for the next join.
    assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));
    assert_eq!(m.generation(), &generation(-1, "m-1", None));
    // No more commits with a reset generation.
    assert_eq!(m.commit_generation(), None);
    m.handle(Event::RevocationDone);
    assert_eq!(m.state(), &MemberState::Unjoined);
}

#[test]
fn offset_fetch_and_find_coordinator_events() {
    let mut m = stable();
    assert_eq!(
        m.handle(Event::OffsetFetchError {
            code: COORDINATOR_LOAD_IN_PROGRESS
        }),
        retry()
    );
    assert_eq!(
        m.handle(Event::OffsetFetchError {
            code: COORDINATOR_LOAD_IN_PROGRESS
        }),
        Action::Retry {
            backoff: Duration::from_millis(200)
        }
    );
    assert_eq!(m.handle(Event::OffsetFetchOk), Action::Continue);
    assert_eq!(
        m.handle(Event::OffsetFetchError {
            code: UNSTABLE_OFFSET_COMMIT
        }),
        retry()
    );
    assert!(matches!(
        m.handle(Event::OffsetFetchError {
            code: UNKNOWN_TOPIC_OR_PARTITION
        }),
        Action::Fail(_)
    ));
    assert!(matches!(m.state(), MemberState::Stable { .. }));

    assert_eq!(
        m.handle(Event::FindCoordinatorError {
            code: COORDINATOR_NOT_AVAILABLE
        }),
        retry()
    );
    assert_eq!(m.handle(Event::CoordinatorFound), Action::Continue);
    assert_eq!(
        m.handle(Event::FindCoordinatorError {
            code: COORDINATOR_NOT_AVAILABLE
        }),
        retry()
    );
    assert!(matches!(
        m.handle(Event::FindCoordinatorError {
            code: GROUP_AUTHORIZATION_FAILED
        }),
        Action::Fatal(GroupError::GroupAuthorizationFailed {
            api: GroupApi::FindCoordinator,
            ..
        })
    ));
    assert!(m.is_terminal());

    let mut m = stable();
    assert!(matches!(
        m.handle(Event::OffsetFetchError {
            code: GROUP_AUTHORIZATION_FAILED
        }),
        Action::Fatal(_)
    ));
    assert!(m.is_terminal());
}

#[test]
fn coordinator_lost() {
    let mut m = stable();
    assert_eq!(m.handle(Event::CoordinatorLost), rediscover());
    assert!(matches!(m.state(), MemberState::Stable { .. }));
    // Backoff grows until the coordinator is found again.
    assert_eq!(
        m.handle(Event::CoordinatorLost),
        Action::RediscoverCoordinator {
            backoff: Duration::from_millis(200)
        }
    );
    m.handle(Event::CoordinatorFound);
    assert_eq!(m.handle(Event::CoordinatorLost), rediscover());

    let mut m = awaiting_sync();
    assert_eq!(m.handle(Event::CoordinatorLost), rediscover());
    assert_eq!(m.state(), &MemberState::Joining);
    assert_eq!(m.generation(), &generation(7, "m-1", Some("range")));

    let mut m = joining();
    assert_eq!(m.handle(Event::CoordinatorLost), rediscover());
    assert_eq!(m.state(), &MemberState::Joining);
}

#[test]
fn rejoin_requested() {
    let mut m = stable();
    assert_eq!(m.handle(Event::RejoinRequested), rejoin(false, false));
    assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));

    // Mid-rebalance: remembered and honoured after SyncGroup.
    let mut m = joining();
    assert_eq!(m.handle(Event::RejoinRequested), Action::Continue);
    m.handle(join_ok("m-1", 7));
    assert_eq!(m.handle(sync_ok()), rejoin(false, false));
    assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));
    m.handle(Event::RevocationDone);
    m.handle(Event::JoinSent);
    m.handle(join_ok("m-1", 8));
    assert_eq!(
        m.handle(sync_ok()),
        Action::Continue,
        "request honoured once"
    );

    let mut m = dynamic_member();
    assert_eq!(m.handle(Event::RejoinRequested), Action::Continue);
    assert_eq!(m.state(), &MemberState::Unjoined);
}

#[test]
fn dynamic_member_leaves_with_leave_group() {
    let mut m = stable();
    assert_eq!(m.handle(Event::LeaveRequested), Action::Continue);
    assert_eq!(m.state(), &revoking(false, AfterRevoke::Leave));
    assert_eq!(m.handle(Event::RevocationDone), Action::Continue);
    assert_eq!(m.state(), &MemberState::Leaving);
    // The LeaveGroup request needs the member id.
    assert_eq!(m.generation().member_id, "m-1");
    assert_eq!(m.handle(Event::LeaveGroupDone), Action::Continue);
    assert_eq!(m.state(), &MemberState::Left);
    assert_eq!(m.generation(), &Generation::none());
    assert!(m.is_terminal());
    assert_eq!(m.handle(Event::JoinSent), Action::Continue);
    assert_eq!(m.state(), &MemberState::Left);
}

#[test]
fn static_member_leaves_without_leave_group() {
    let mut m = Membership::new(GROUP, Some("instance-1".to_owned()), Backoff::default());
    assert_eq!(m.group_instance_id(), Some("instance-1"));
    m.handle(Event::JoinSent);
    m.handle(join_ok("m-1", 3));
    m.handle(sync_ok());
    m.handle(Event::LeaveRequested);
    assert_eq!(m.state(), &revoking(false, AfterRevoke::Leave));
    m.handle(Event::RevocationDone);
    assert_eq!(m.state(), &MemberState::Left);
}

#[test]
fn leave_from_other_states() {
    // Never joined: nothing to tell the coordinator.
    let mut m = dynamic_member();
    m.handle(Event::LeaveRequested);
    assert_eq!(m.state(), &MemberState::Left);

    // Joining with a member id: LeaveGroup so the coordinator need not wait.
    let mut m = joining();
    m.handle(Event::JoinGroupError {
        code: MEMBER_ID_REQUIRED,
        member_id: "m-9".to_owned(),
    });
    m.handle(Event::LeaveRequested);
    assert_eq!(m.state(), &MemberState::Leaving);
    assert_eq!(m.handle(Event::CoordinatorLost), Action::Continue);
    assert_eq!(m.state(), &MemberState::Left);

    // Joining without a member id yet: just stop.
    let mut m = joining();
    m.handle(Event::LeaveRequested);
    assert_eq!(m.state(), &MemberState::Left);

    // Leave requested while revoking for a rejoin: leave instead; lost
    // partitions stay lost.
    let mut m = stable();
    let sent = m.generation().clone();
    m.handle(Event::HeartbeatError {
        sent,
        code: UNKNOWN_MEMBER_ID,
    });
    assert_eq!(m.state(), &revoking(true, AfterRevoke::Rejoin));
    m.handle(Event::LeaveRequested);
    assert_eq!(m.state(), &revoking(true, AfterRevoke::Leave));
    m.handle(Event::RevocationDone);
    // Member id was reset, so there is nobody to remove.
    assert_eq!(m.state(), &MemberState::Left);
}

#[test]
fn superseded_responses_are_ignored() {
    let mut m = stable();
    let before = m.clone();
    for event in [
        Event::SyncGroupError {
            sent: m.generation().clone(),
            code: UNKNOWN_MEMBER_ID,
        },
        sync_ok(),
        join_ok("other", 99),
        Event::JoinSent,
        Event::RevocationDone,
        Event::LeaveGroupDone,
    ] {
        assert_eq!(m.handle(event.clone()), Action::Continue, "{event:?}");
        assert_eq!(m.state(), before.state(), "{event:?}");
        assert_eq!(m.generation(), before.generation(), "{event:?}");
    }
}

#[test]
fn every_event_in_every_state_is_handled_without_panic() {
    let starts: Vec<Membership> = {
        let mut leaving = stable();
        leaving.handle(Event::LeaveRequested);
        leaving.handle(Event::RevocationDone);
        let mut revoking = stable();
        revoking.handle(Event::RejoinRequested);
        let mut left = dynamic_member();
        left.handle(Event::LeaveRequested);
        vec![
            dynamic_member(),
            joining(),
            awaiting_sync(),
            stable(),
            revoking,
            leaving,
            left,
        ]
    };
    let codes = (-2..=130)
        .chain([i16::MIN, i16::MAX])
        .map(KafkaCode::from_wire);
    for start in &starts {
        for code in codes.clone() {
            let sent = start.generation().clone();
            let events = [
                Event::JoinGroupError {
                    code,
                    member_id: "x".to_owned(),
                },
                Event::SyncGroupError {
                    sent: sent.clone(),
                    code,
                },
                Event::HeartbeatError {
                    sent: sent.clone(),
                    code,
                },
                Event::CommitError {
                    sent: sent.clone(),
                    code,
                },
                Event::OffsetFetchError { code },
                Event::FindCoordinatorError { code },
            ];
            for event in events {
                let mut m = start.clone();
                let action = m.handle(event);
                // Fatal actions and the Fatal state go together.
                assert_eq!(
                    matches!(action, Action::Fatal(_)),
                    matches!(m.state(), MemberState::Fatal(_)) && !start.is_terminal()
                );
            }
        }
        for event in [
            Event::JoinSent,
            join_ok("m", 1),
            sync_ok(),
            Event::HeartbeatOk,
            Event::CommitOk,
            Event::OffsetFetchOk,
            Event::CoordinatorFound,
            Event::CoordinatorLost,
            Event::RejoinRequested,
            Event::RevocationDone,
            Event::LeaveRequested,
            Event::LeaveGroupDone,
        ] {
            let mut m = start.clone();
            let action = m.handle(event.clone());
            // Success never ends a membership, and nothing revives one
            // that has ended.
            assert!(
                !matches!(action, Action::Fatal(_)) && !matches!(m.state(), MemberState::Fatal(_))
                    || start.is_terminal(),
                "{event:?} from {:?}: {action:?}",
                start.state()
            );
            if start.is_terminal() {
                assert_eq!(m.state(), start.state(), "{event:?}");
            }
        }
    }
}

/// A cooperative member, Stable in generation 7 with `t-0`, `t-1`.
fn cooperative_stable() -> Membership {
    let mut m = stable().with_cooperative(true);
    assert!(m.is_cooperative());
    assert!(m.owned().partitions.is_empty());
    m.handle(Event::HeartbeatOk);
    m
}

#[test]
fn cooperative_rejoin_keeps_the_partitions_and_may_commit_until_answered() {
    let mut m = cooperative_stable();
    assert_eq!(
        m.handle(Event::HeartbeatError {
            sent: m.generation().clone(),
            code: REBALANCE_IN_PROGRESS,
        }),
        rejoin(false, false)
    );
    // No revocation: straight to JoinGroup, owning what it had.
    assert_eq!(m.state(), &MemberState::Unjoined);
    assert_eq!(m.owned(), &assignment());
    assert_eq!(
        m.commit_generation(),
        Some(&generation(7, "m-1", Some("range")))
    );
    m.handle(Event::JoinSent);
    assert_eq!(
        m.commit_generation(),
        Some(&generation(7, "m-1", Some("range")))
    );
    m.handle(join_ok("m-1", 8));
    // Between JoinGroup and SyncGroup the coordinator refuses commits.
    assert_eq!(m.commit_generation(), None);
    assert_eq!(m.owned(), &assignment());
    // A rejoin asked for meanwhile waits for the caller, who is Stable
    // first (it revokes what the assignment left out, then rejoins).
    m.handle(Event::RejoinRequested);
    assert_eq!(m.handle(sync_ok()), Action::Continue);
    assert_eq!(
        m.state(),
        &MemberState::Stable {
            assignment: assignment()
        }
    );
    assert!(m.owned().partitions.is_empty());
    assert!(m.take_rejoin_after_sync());
    assert!(!m.take_rejoin_after_sync());
}

#[test]
fn cooperative_partitions_kept_through_a_rejoin_are_lost_with_the_generation() {
    let mut m = cooperative_stable();
    m.handle(Event::RejoinRequested);
    m.handle(Event::JoinSent);
    // The coordinator forgot us while we joined: other members may own our
    // partitions now (Java's next onJoinPrepare: onPartitionsLost).
    assert_eq!(
        m.handle(Event::JoinGroupError {
            code: UNKNOWN_MEMBER_ID,
            member_id: String::new(),
        }),
        rejoin(true, true)
    );
    assert_eq!(m.state(), &revoking(true, AfterRevoke::Rejoin));
    assert!(m.owned().partitions.is_empty());
    assert_eq!(m.commit_generation(), None);
    m.handle(Event::RevocationDone);
    assert_eq!(m.state(), &MemberState::Unjoined);
}

#[test]
fn cooperative_member_with_the_membership_gone_revokes_as_lost() {
    let mut m = cooperative_stable();
    m.handle(Event::HeartbeatError {
        sent: m.generation().clone(),
        code: UNKNOWN_MEMBER_ID,
    });
    assert_eq!(m.state(), &revoking(true, AfterRevoke::Rejoin));
    assert!(m.owned().partitions.is_empty());
}

#[test]
fn eager_member_still_revokes_everything_before_joining() {
    let mut m = stable();
    m.handle(Event::RejoinRequested);
    assert_eq!(m.state(), &revoking(false, AfterRevoke::Rejoin));
    assert!(m.owned().partitions.is_empty());
}

#[test]
fn a_restricted_assignment_is_what_is_revoked_and_a_forgotten_member_joins_anew() {
    let mut m = stable();
    let kept = Assignment::new(vec![TopicPartitions::new("t", [1])]);
    m.restrict_assignment(kept.clone());
    assert_eq!(m.assignment(), Some(&kept));
    // Not forgotten mid-generation: only once unjoined.
    m.forget_member_id();
    assert_eq!(m.generation(), &generation(7, "m-1", Some("range")));
    assert_eq!(m.handle(Event::RejoinRequested), rejoin(false, false));
    assert_eq!(
        m.state(),
        &MemberState::Revoking {
            assignment: kept,
            lost: false,
            then: AfterRevoke::Rejoin,
        }
    );
    m.handle(Event::RevocationDone);
    assert_eq!(m.state(), &MemberState::Unjoined);
    m.forget_member_id();
    assert_eq!(m.generation(), &Generation::none());
    // Outside Stable there is nothing to restrict.
    m.restrict_assignment(assignment());
    assert_eq!(m.assignment(), None);
}
