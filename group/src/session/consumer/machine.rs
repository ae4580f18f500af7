//! KIP-848's member state with no I/O: what the next
//! `ConsumerGroupHeartbeat` says, what an answer means, and which
//! partitions to give up and take to reach the coordinator's target
//! assignment. The task in [`super`] does the requests and talks to the
//! service.

use std::{collections::BTreeSet, time::Duration};

use kafka_protocol::ResponseError as E;
use uuid::Uuid;

use crate::{
    coordinator::{ConsumerHeartbeat, ConsumerHeartbeatResult},
    error::{GroupError, KafkaCode},
};

/// A partition as KIP-848 names it: topic id and index.
pub(super) type Tp = (Uuid, i32);

/// The epoch a member joins (and rejoins after being fenced) with.
const JOIN_EPOCH: i32 = 0;
/// The epoch of a dynamic member's leave heartbeat.
const LEAVE_EPOCH: i32 = -1;
/// The epoch of a static member's leave heartbeat: it comes back under the
/// same instance id and keeps its partitions meanwhile.
const STATIC_LEAVE_EPOCH: i32 = -2;

/// What a heartbeat's answer asks of the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// In the group; reconcile if [`Machine::reconciliation`] says so.
    Member,
    /// Fenced (`FENCED_MEMBER_EPOCH`, `UNKNOWN_MEMBER_ID`): the owned
    /// partitions are lost; rejoin at epoch 0 at once.
    Fenced(BTreeSet<Tp>),
    /// The coordinator moved or is loading: find it again after the backoff.
    Retry(KafkaCode),
    /// The member cannot stay in the group.
    Fatal(GroupError),
}

/// A step towards the target assignment: give up `revoke` first (committing
/// what was handled), then take `assign`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Reconciliation {
    pub(super) revoke: BTreeSet<Tp>,
    pub(super) assign: BTreeSet<Tp>,
}

/// One member of a consumer-protocol group.
#[derive(Debug)]
pub(super) struct Machine {
    group: String,
    member_id: String,
    static_member: bool,
    epoch: i32,
    owned: BTreeSet<Tp>,
    /// The coordinator's latest assignment, until reached.
    target: Option<BTreeSet<Tp>>,
    interval: Duration,
}

impl Machine {
    /// A member about to join `group` as `member_id`, heartbeating every
    /// `interval` until the coordinator says otherwise.
    pub(super) fn new(
        group: String,
        member_id: String,
        static_member: bool,
        interval: Duration,
    ) -> Self {
        Self {
            group,
            member_id,
            static_member,
            epoch: JOIN_EPOCH,
            owned: BTreeSet::new(),
            target: None,
            interval,
        }
    }

    pub(super) fn member_id(&self) -> &str {
        &self.member_id
    }

    pub(super) fn epoch(&self) -> i32 {
        self.epoch
    }

    #[cfg(test)]
    pub(super) fn owned(&self) -> &BTreeSet<Tp> {
        &self.owned
    }

    /// When the next heartbeat is due after a successful one.
    pub(super) fn interval(&self) -> Duration {
        self.interval
    }

    /// The next heartbeat: the member's epoch and what it owns, with the
    /// subscription fields the task fills in.
    pub(super) fn heartbeat(&self, template: &ConsumerHeartbeat) -> ConsumerHeartbeat {
        let mut beat = template.clone();
        beat.member_id.clone_from(&self.member_id);
        beat.member_epoch = self.epoch;
        beat.owned = by_topic(&self.owned);
        beat
    }

    /// The heartbeat that leaves the group (after the final commit).
    pub(super) fn leave(&self, template: &ConsumerHeartbeat) -> ConsumerHeartbeat {
        let mut beat = self.heartbeat(template);
        beat.member_epoch = if self.static_member {
            STATIC_LEAVE_EPOCH
        } else {
            LEAVE_EPOCH
        };
        beat
    }

    /// Applies an answer.
    pub(super) fn on_response(&mut self, r: &ConsumerHeartbeatResult) -> Outcome {
        let Some(error) = r.error.error() else {
            if let Some(id) = r.member_id.as_ref().filter(|id| !id.is_empty()) {
                self.member_id.clone_from(id);
            }
            self.epoch = r.member_epoch;
            if !r.heartbeat_interval.is_zero() {
                self.interval = r.heartbeat_interval;
            }
            if let Some(assignment) = &r.assignment {
                self.target = Some(
                    assignment
                        .iter()
                        .flat_map(|(id, ps)| ps.iter().map(|p| (*id, *p)))
                        .collect(),
                );
            }
            return Outcome::Member;
        };
        let rejected = |meaning: &'static str| {
            Outcome::Fatal(GroupError::MemberRejected {
                group: self.group.clone(),
                code: r.error,
                meaning,
                message: r.message.clone(),
            })
        };
        match error {
            E::FencedMemberEpoch | E::UnknownMemberId => {
                self.epoch = JOIN_EPOCH;
                self.target = None;
                Outcome::Fenced(std::mem::take(&mut self.owned))
            }
            _ if r.error.is_coordinator_moving() => Outcome::Retry(r.error),
            E::UnreleasedInstanceId => rejected(
                "the previous member with this group.instance.id has not left the group yet; \
                 start this one after the old one is gone",
            ),
            E::GroupMaxSizeReached => {
                rejected("the group already has the broker's group.consumer.max.size members")
            }
            E::FencedInstanceId => rejected(
                "another consumer with the same group.instance.id has joined; this one is fenced",
            ),
            E::GroupAuthorizationFailed => rejected(
                "this principal is not authorized to use the group (needs READ on the group)",
            ),
            E::TopicAuthorizationFailed => {
                rejected("this principal is not authorized to read a subscribed topic")
            }
            E::UnsupportedAssignor => rejected(
                "the broker offers no such server-side assignor \
                 (group.consumer.assignors; Kafka's are uniform and range)",
            ),
            E::GroupIdNotFound | E::InconsistentGroupProtocol => rejected(
                "the group exists with the classic protocol and members; use \
                 CONSUMER_GROUP_PROTOCOL=classic or let the broker convert it",
            ),
            _ => rejected("the coordinator rejected the heartbeat (Java gives up too)"),
        }
    }

    /// The next step towards the target, with `known` telling which topic
    /// ids have a name yet (others wait for a later heartbeat); `None` when
    /// there is nothing to do.
    pub(super) fn reconciliation(&self, known: impl Fn(&Uuid) -> bool) -> Option<Reconciliation> {
        let target = self.target.as_ref()?;
        let step = Reconciliation {
            revoke: self.owned.difference(target).copied().collect(),
            assign: target
                .difference(&self.owned)
                .filter(|(id, _)| known(id))
                .copied()
                .collect(),
        };
        (!step.revoke.is_empty() || !step.assign.is_empty()).then_some(step)
    }

    /// The topic ids of the target assignment.
    pub(super) fn target_ids(&self) -> BTreeSet<Uuid> {
        self.target.iter().flatten().map(|(id, _)| *id).collect()
    }

    /// Whether the target assignment is not reached yet (some ids unknown).
    pub(super) fn behind_target(&self) -> bool {
        self.target.as_ref().is_some_and(|t| t != &self.owned)
    }

    /// The service gave up `revoked` and took `assigned`: the next
    /// heartbeat reports the new owned set (the acknowledgement).
    pub(super) fn reconciled(&mut self, step: &Reconciliation) {
        for tp in &step.revoke {
            self.owned.remove(tp);
        }
        self.owned.extend(step.assign.iter().copied());
        if self.target.as_ref() == Some(&self.owned) {
            self.target = None;
        }
    }
}

/// `(topic id, partition)`s grouped by topic id, as the request lists them.
fn by_topic(tps: &BTreeSet<Tp>) -> std::collections::BTreeMap<Uuid, Vec<i32>> {
    let mut out: std::collections::BTreeMap<Uuid, Vec<i32>> = Default::default();
    for (id, p) in tps {
        out.entry(*id).or_default().push(*p);
    }
    out
}

#[cfg(test)]
mod tests;
