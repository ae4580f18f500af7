//! The KIP-848 member state: join, reconcile, acknowledge, fenced, fatal.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{Machine, Outcome, Reconciliation, Tp};
use crate::{
    coordinator::{ConsumerHeartbeat, ConsumerHeartbeatResult},
    error::{GroupError, KafkaCode},
};

const T: Uuid = Uuid::from_u128(1);
const U: Uuid = Uuid::from_u128(2);

fn machine() -> Machine {
    Machine::new(
        "g".to_owned(),
        "m-1".to_owned(),
        false,
        Duration::from_secs(5),
    )
}

fn template() -> ConsumerHeartbeat {
    ConsumerHeartbeat {
        member_id: String::new(),
        member_epoch: 99,
        topics: vec!["t".to_owned()],
        rebalance_timeout: Duration::from_secs(300),
        server_assignor: Some("uniform".to_owned()),
        owned: BTreeMap::new(),
        instance_id: None,
    }
}

fn ok(epoch: i32, assignment: Option<&[Tp]>) -> ConsumerHeartbeatResult {
    ConsumerHeartbeatResult {
        error: KafkaCode::NONE,
        message: None,
        member_id: Some("m-1".to_owned()),
        member_epoch: epoch,
        heartbeat_interval: Duration::from_millis(700),
        assignment: assignment.map(|tps| {
            let mut by: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
            for (id, p) in tps {
                by.entry(*id).or_default().push(*p);
            }
            by
        }),
    }
}

fn error(e: ResponseError) -> ConsumerHeartbeatResult {
    ConsumerHeartbeatResult {
        error: KafkaCode::of(e),
        member_epoch: -1,
        ..ok(0, None)
    }
}

fn set(tps: &[Tp]) -> BTreeSet<Tp> {
    tps.iter().copied().collect()
}

#[test]
fn joins_with_epoch_zero_and_takes_the_first_assignment() {
    let mut m = machine();
    let beat = m.heartbeat(&template());
    assert_eq!((beat.member_id.as_str(), beat.member_epoch), ("m-1", 0));
    assert!(beat.owned.is_empty());

    assert_eq!(
        m.on_response(&ok(1, Some(&[(T, 0), (T, 1)]))),
        Outcome::Member
    );
    assert_eq!(
        m.interval(),
        Duration::from_millis(700),
        "the broker's interval"
    );
    let step = m.reconciliation(|_| true).expect("something to take");
    assert_eq!(step.assign, set(&[(T, 0), (T, 1)]));
    assert!(step.revoke.is_empty());
    m.reconciled(&step);
    assert!(m.reconciliation(|_| true).is_none(), "target reached");
    let beat = m.heartbeat(&template());
    assert_eq!(beat.member_epoch, 1);
    assert_eq!(
        beat.owned,
        BTreeMap::from([(T, vec![0, 1])]),
        "acknowledged"
    );
}

#[test]
fn revokes_only_what_the_coordinator_took_away() {
    let mut m = machine();
    m.on_response(&ok(1, Some(&[(T, 0), (T, 1), (T, 2)])));
    m.reconciled(&m.reconciliation(|_| true).expect("step"));
    // A second member joined: partition 2 moves, the rest stays.
    m.on_response(&ok(1, Some(&[(T, 0), (T, 1)])));
    let step = m.reconciliation(|_| true).expect("step");
    assert_eq!(
        step,
        Reconciliation {
            revoke: set(&[(T, 2)]),
            assign: BTreeSet::new()
        }
    );
    m.reconciled(&step);
    assert_eq!(m.owned(), &set(&[(T, 0), (T, 1)]));
    // An answer without an assignment changes nothing.
    m.on_response(&ok(2, None));
    assert!(m.reconciliation(|_| true).is_none());
    assert_eq!(m.epoch(), 2);
}

#[test]
fn partitions_of_unknown_topics_wait_for_their_names() {
    let mut m = machine();
    m.on_response(&ok(1, Some(&[(T, 0), (U, 0)])));
    let step = m.reconciliation(|id| *id == T).expect("step");
    assert_eq!(step.assign, set(&[(T, 0)]));
    m.reconciled(&step);
    assert!(m.behind_target(), "U's partition is still to take");
    let step = m.reconciliation(|_| true).expect("U once known");
    assert_eq!(step.assign, set(&[(U, 0)]));
    m.reconciled(&step);
    assert!(!m.behind_target());
    assert_eq!(m.target_ids(), BTreeSet::new(), "no target left");
}

#[test]
fn fenced_loses_everything_and_rejoins_at_epoch_zero() {
    for e in [
        ResponseError::FencedMemberEpoch,
        ResponseError::UnknownMemberId,
    ] {
        let mut m = machine();
        m.on_response(&ok(3, Some(&[(T, 0)])));
        m.reconciled(&m.reconciliation(|_| true).expect("step"));
        assert_eq!(m.on_response(&error(e)), Outcome::Fenced(set(&[(T, 0)])));
        let beat = m.heartbeat(&template());
        assert_eq!(beat.member_epoch, 0, "{e:?}: rejoins");
        assert_eq!(beat.member_id, "m-1", "{e:?}: with the same member id");
        assert!(beat.owned.is_empty());
    }
}

#[test]
fn coordinator_moves_are_retried() {
    for e in [
        ResponseError::NotCoordinator,
        ResponseError::CoordinatorNotAvailable,
        ResponseError::CoordinatorLoadInProgress,
    ] {
        let mut m = machine();
        m.on_response(&ok(2, Some(&[(T, 0)])));
        assert_eq!(m.on_response(&error(e)), Outcome::Retry(KafkaCode::of(e)));
        assert_eq!(m.epoch(), 2, "{e:?}: the membership stays");
    }
}

#[test]
fn unreleased_instance_and_full_group_are_fatal_with_a_clear_line() {
    for (e, says) in [
        (
            ResponseError::UnreleasedInstanceId,
            "has not left the group yet",
        ),
        (
            ResponseError::GroupMaxSizeReached,
            "group.consumer.max.size",
        ),
        (ResponseError::UnsupportedAssignor, "uniform and range"),
    ] {
        let Outcome::Fatal(fatal) = machine().on_response(&error(e)) else {
            panic!("{e:?} is fatal");
        };
        assert!(matches!(fatal, GroupError::MemberRejected { .. }));
        let line = fatal.to_string();
        assert!(line.contains("consumer group 'g'"), "{line}");
        assert!(line.contains(&KafkaCode::of(e).to_string()), "{line}");
        assert!(line.contains(says), "{line}");
    }
}

#[test]
fn leaving_uses_epoch_minus_one_or_minus_two_for_static_members() {
    let dynamic = machine();
    assert_eq!(dynamic.leave(&template()).member_epoch, -1);
    let fixed = Machine::new("g".to_owned(), "m".to_owned(), true, Duration::from_secs(5));
    assert_eq!(fixed.leave(&template()).member_epoch, -2);
}
