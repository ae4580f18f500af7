//! Idempotence (KIP-98) without I/O: the producer id and epoch, each
//! partition's sequence numbers, and what a broker's answer to a sequenced
//! batch means for them.
//!
//! The rules are those of Kafka's Java producer (`TransactionManager`,
//! `RecordAccumulator`, `Sender`, with the epoch bumps of KIP-360), each
//! unit-tested below:
//! - a batch gets its sequence numbers when it is first sent and keeps them
//!   (and its records) across retries: the broker writes a repeat of one of
//!   the producer's last five batches once and answers the repeat with the
//!   first write's offsets;
//! - a batch sent before is sent again only when it is the partition's
//!   earliest batch not yet settled, so after an error the retries of a
//!   partition go one at a time, in sequence order;
//! - `OUT_OF_ORDER_SEQUENCE_NUMBER` for a batch that is not the next one
//!   expected is only the echo of an earlier batch's failure: retried as it
//!   is. For the next expected batch it means the broker lost what it had
//!   acknowledged (e.g. an unclean leader election): the epoch is bumped;
//! - `UNKNOWN_PRODUCER_ID` (the broker no longer knows the producer, e.g.
//!   its records were deleted) bumps the epoch unless the broker did not
//!   say its log start offset or the batch was renumbered already;
//! - a bump restarts the partition's numbering at 0 under the new epoch for
//!   the batches not yet settled, once none of them is on the wire (Java
//!   rewrites them at once; waiting keeps an old-epoch batch from following
//!   a new-epoch one). Other partitions keep their epoch until they have
//!   nothing outstanding, then start at 0 under the new one;
//! - `DUPLICATE_SEQUENCE_NUMBER` means written before: acknowledged;
//! - `INVALID_PRODUCER_EPOCH` and errors that reject the batch for what it
//!   is fail it, and bump the epoch so the partition's later batches do not
//!   wait for the sequence numbers it leaves out;
//! - at epoch 32767 a bump asks for a new producer id instead.

use std::collections::{BTreeMap, BTreeSet};

use rskafka::client::error::{Error as ClientError, ProtocolError, ServerErrorResponse};
pub(crate) use rskafka::client::partition::{BatchSequence, ProducerIdAndEpoch};

/// A broker's answer to a batch, reduced to what the rules need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Acknowledged, or `DUPLICATE_SEQUENCE_NUMBER`.
    Written,
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`.
    OutOfOrder,
    /// `UNKNOWN_PRODUCER_ID`, with the log start offset the broker gave.
    UnknownProducerId { log_start_offset: Option<i64> },
    /// `INVALID_PRODUCER_EPOCH`: a newer epoch wrote to the partition.
    InvalidEpoch,
    /// Worth sending again: no answer (connection, timeout) or a transient
    /// broker error (not leader, not enough replicas, ...).
    Transient,
    /// Rejected for what it is (too large, not authorised, ...).
    Rejected,
}

impl Answer {
    /// What an error means for the batch. Without an answer (connection,
    /// timeout) the batch may or may not have been written: sent again, which
    /// only idempotence keeps from writing it twice. Records that the broker
    /// rejects for what they are (too large, corrupt, not authorised) are not
    /// sent again.
    pub(crate) fn of(e: &ClientError) -> Self {
        let ClientError::ServerError {
            protocol_error,
            response,
            ..
        } = e
        else {
            return Self::Transient;
        };
        match protocol_error {
            ProtocolError::DuplicateSequenceNumber => Self::Written,
            ProtocolError::OutOfOrderSequenceNumber => Self::OutOfOrder,
            ProtocolError::UnknownProducerId => Self::UnknownProducerId {
                log_start_offset: match response {
                    Some(ServerErrorResponse::PartitionProduceState { log_start_offset }) => {
                        *log_start_offset
                    }
                    _ => None,
                },
            },
            ProtocolError::InvalidProducerEpoch => Self::InvalidEpoch,
            ProtocolError::MessageTooLarge
            | ProtocolError::RecordListTooLarge
            | ProtocolError::CorruptMessage
            | ProtocolError::InvalidRecord
            | ProtocolError::TopicAuthorizationFailed
            | ProtocolError::ClusterAuthorizationFailed
            | ProtocolError::TransactionalIdAuthorizationFailed
            | ProtocolError::ProducerFenced
            | ProtocolError::InvalidProducerIdMapping
            | ProtocolError::UnsupportedVersion
            | ProtocolError::UnsupportedForMessageFormat
            | ProtocolError::UnsupportedCompressionType => Self::Rejected,
            _ => Self::Transient,
        }
    }
}

/// A broker's produce answer with `protocol_error` and the log start
/// offset it gave, as rskafka reports it: for the tests of the answers.
#[cfg(test)]
pub(crate) fn broker_error(
    protocol_error: ProtocolError,
    log_start_offset: Option<i64>,
) -> ClientError {
    ClientError::ServerError {
        protocol_error,
        error_message: None,
        request: rskafka::client::error::RequestContext::Partition("t".to_owned(), 0),
        response: Some(ServerErrorResponse::PartitionProduceState { log_start_offset }),
        is_virtual: false,
    }
}

/// What to do with the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its records are acknowledged.
    Acked,
    /// Send it again, with the same records and sequence numbers.
    Retry,
    /// Give its records up.
    Fail,
}

/// No record acknowledged yet under the partition's numbering.
const NONE_ACKED: i32 = -1;

/// Kafka's sequence arithmetic (`DefaultRecordBatch.incrementSequence`):
/// after `i32::MAX` comes 0.
fn add(sequence: i32, n: usize) -> i32 {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    if sequence > i32::MAX - n {
        n - (i32::MAX - sequence) - 1
    } else {
        sequence + n
    }
}

/// One partition's numbering. Sequence numbers only wrap after 2^31
/// records of one partition, more than a run can send
/// (`PRODUCER_MESSAGES` ≤ 10^9), so "earliest" is numeric order.
#[derive(Debug)]
struct Partition {
    /// The producer id and epoch its numbering runs under.
    producer: ProducerIdAndEpoch,
    /// The next batch's base sequence.
    next: i32,
    /// The last sequence acknowledged under this numbering.
    last_acked: i32,
    /// Base sequences of the batches sent at least once and not settled
    /// (on the wire or waiting to be sent again).
    outstanding: BTreeSet<i32>,
    /// A bump asked for new numbering under the current epoch.
    renumber: bool,
}

/// The idempotence state of one run.
#[derive(Debug)]
pub(crate) struct Sequences {
    /// `None` while a new producer id is needed.
    producer: Option<ProducerIdAndEpoch>,
    partitions: BTreeMap<i32, Partition>,
    /// Partitions that asked for an epoch bump since the last one.
    bump_for: BTreeSet<i32>,
    /// Epoch bumps and new producer ids so far.
    bumps: u64,
}

impl Sequences {
    pub(crate) fn new(producer: ProducerIdAndEpoch) -> Self {
        Self {
            producer: Some(producer),
            partitions: BTreeMap::new(),
            bump_for: BTreeSet::new(),
            bumps: 0,
        }
    }

    /// The current producer id and epoch, `None` while a new id is needed.
    pub(crate) fn producer(&self) -> Option<ProducerIdAndEpoch> {
        self.producer
    }

    /// Epoch bumps (and new producer ids) so far.
    pub(crate) fn bumps(&self) -> u64 {
        self.bumps
    }

    /// A new producer id from `InitProducerId`, after [`producer`](Self::producer)
    /// turned `None`. Every partition starts at 0 under it once it has
    /// nothing outstanding.
    pub(crate) fn set_producer(&mut self, producer: ProducerIdAndEpoch) {
        self.producer = Some(producer);
    }

    /// Applies the epoch bump the answers since the last call asked for, if
    /// any (several partitions asking at once get one bump, as in Java).
    pub(crate) fn bump_if_requested(&mut self) {
        if self.bump_for.is_empty() {
            return;
        }
        self.bumps += 1;
        self.producer = match self.producer {
            Some(p) if p.epoch < i16::MAX => Some(ProducerIdAndEpoch {
                id: p.id,
                epoch: p.epoch + 1,
            }),
            // Epoch exhausted (or no id yet): a new producer id.
            _ => None,
        };
        for p in std::mem::take(&mut self.bump_for) {
            if let Some(part) = self.partitions.get_mut(&p) {
                part.renumber = true;
            }
        }
    }

    /// Whether `partition` waits for its batches on the wire to come back
    /// before it is renumbered: nothing of it may be sent meanwhile.
    pub(crate) fn must_renumber(&self, partition: i32) -> bool {
        self.partitions.get(&partition).is_some_and(|p| p.renumber)
    }

    /// Numbers `partition`'s outstanding batches again from 0 under the
    /// current producer, in their order, of `records` records each; returns
    /// their new sequences. Only when none of them is on the wire, and not
    /// while a new producer id is needed.
    pub(crate) fn renumber(&mut self, partition: i32, records: &[usize]) -> Vec<BatchSequence> {
        let (Some(producer), Some(part)) = (self.producer, self.partitions.get_mut(&partition))
        else {
            return Vec::new();
        };
        let mut next = 0;
        let mut out = Vec::with_capacity(records.len());
        for &n in records {
            out.push(BatchSequence {
                producer,
                base_sequence: next,
            });
            next = add(next, n);
        }
        *part = Partition {
            producer,
            next,
            last_acked: NONE_ACKED,
            outstanding: out.iter().map(|s| s.base_sequence).collect(),
            renumber: false,
        };
        out
    }

    /// Sequence numbers for a batch of `records` records of `partition`
    /// sent for the first time; `None` while it must wait: no producer id,
    /// or the partition still has batches outstanding under an older epoch.
    pub(crate) fn assign(&mut self, partition: i32, records: usize) -> Option<BatchSequence> {
        let producer = self.producer?;
        let part = self.partitions.entry(partition).or_insert(Partition {
            producer,
            next: 0,
            last_acked: NONE_ACKED,
            outstanding: BTreeSet::new(),
            renumber: false,
        });
        if part.renumber {
            return None;
        }
        if part.producer != producer {
            if !part.outstanding.is_empty() {
                return None;
            }
            part.producer = producer;
            part.next = 0;
            part.last_acked = NONE_ACKED;
        }
        let seq = BatchSequence {
            producer,
            base_sequence: part.next,
        };
        part.next = add(part.next, records);
        part.outstanding.insert(seq.base_sequence);
        Some(seq)
    }

    /// Whether the batch sent before with `seq` may go again: it is the
    /// earliest of its partition not settled, and no renumbering is due.
    pub(crate) fn may_resend(&self, partition: i32, seq: &BatchSequence) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|p| !p.renumber && p.outstanding.first() == Some(&seq.base_sequence))
    }

    /// What `answer` to the batch `seq` of `records` records means;
    /// `renumbered` if its numbers were given again after a bump.
    /// `may_retry` is false once the run stops retrying (deadline, shutdown).
    pub(crate) fn settle(
        &mut self,
        partition: i32,
        seq: &BatchSequence,
        records: usize,
        renumbered: bool,
        answer: Answer,
        may_retry: bool,
    ) -> Verdict {
        let Some(part) = self.partitions.get_mut(&partition) else {
            return Verdict::Fail;
        };
        let is_next = seq.base_sequence == add(part.last_acked, 1);
        let (verdict, bump) = match answer {
            Answer::Written => (Verdict::Acked, false),
            Answer::Transient => (Verdict::Retry, false),
            Answer::OutOfOrder => (Verdict::Retry, !renumbered && is_next),
            Answer::UnknownProducerId { log_start_offset } => (
                Verdict::Retry,
                !renumbered && log_start_offset.is_some_and(|o| o >= 0),
            ),
            Answer::InvalidEpoch | Answer::Rejected => (Verdict::Fail, true),
        };
        let verdict = match verdict {
            Verdict::Retry if !may_retry => Verdict::Fail,
            v => v,
        };
        let current = seq.producer == part.producer;
        if verdict == Verdict::Acked && current {
            let last = add(seq.base_sequence, records.saturating_sub(1));
            if last > part.last_acked || part.last_acked == NONE_ACKED {
                part.last_acked = last;
            }
        }
        if verdict != Verdict::Retry && current {
            part.outstanding.remove(&seq.base_sequence);
        }
        // Giving up at the end of the run needs no bump: nothing follows.
        if bump && may_retry {
            self.bump_for.insert(partition);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: i32 = 0;
    const PID: ProducerIdAndEpoch = ProducerIdAndEpoch { id: 7, epoch: 0 };

    fn seqs() -> Sequences {
        Sequences::new(PID)
    }

    fn at(epoch: i16, base: i32) -> BatchSequence {
        BatchSequence {
            producer: ProducerIdAndEpoch { id: 7, epoch },
            base_sequence: base,
        }
    }

    #[test]
    fn broker_errors_map_to_the_answers_the_sequence_rules_know() {
        for (e, answer) in [
            (ProtocolError::DuplicateSequenceNumber, Answer::Written),
            (ProtocolError::OutOfOrderSequenceNumber, Answer::OutOfOrder),
            (ProtocolError::InvalidProducerEpoch, Answer::InvalidEpoch),
            (ProtocolError::NotEnoughReplicas, Answer::Transient),
            (
                ProtocolError::NotEnoughReplicasAfterAppend,
                Answer::Transient,
            ),
            (ProtocolError::NotLeaderOrFollower, Answer::Transient),
            (ProtocolError::MessageTooLarge, Answer::Rejected),
            (ProtocolError::ClusterAuthorizationFailed, Answer::Rejected),
        ] {
            assert_eq!(Answer::of(&broker_error(e, Some(0))), answer, "{e}");
        }
        assert_eq!(
            Answer::of(&broker_error(ProtocolError::UnknownProducerId, Some(42))),
            Answer::UnknownProducerId {
                log_start_offset: Some(42)
            }
        );
        assert_eq!(Answer::of(&ClientError::Timeout), Answer::Transient);
    }

    #[test]
    fn batches_are_numbered_per_partition_by_record() {
        let mut s = seqs();
        assert_eq!(s.assign(P, 3), Some(at(0, 0)));
        assert_eq!(s.assign(P, 2), Some(at(0, 3)));
        assert_eq!(s.assign(1, 4), Some(at(0, 0)), "own numbering");
        assert_eq!(s.assign(P, 1), Some(at(0, 5)));
    }

    #[test]
    fn sequence_arithmetic_wraps_as_kafkas() {
        assert_eq!(add(0, 5), 5);
        assert_eq!(add(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(add(i32::MAX, 1), 0);
        assert_eq!(add(i32::MAX - 2, 5), 2);
        assert_eq!(add(NONE_ACKED, 1), 0);
    }

    #[test]
    fn only_the_earliest_unsettled_batch_is_sent_again() {
        let mut s = seqs();
        let a = s.assign(P, 2).expect("a");
        let b = s.assign(P, 2).expect("b");
        let c = s.assign(P, 2).expect("c");
        // The connection broke: all three come back for a retry.
        for x in [&a, &b, &c] {
            assert_eq!(
                s.settle(P, x, 2, false, Answer::Transient, true),
                Verdict::Retry
            );
        }
        assert!(s.may_resend(P, &a));
        assert!(!s.may_resend(P, &b), "b waits for a");
        assert_eq!(
            s.settle(P, &a, 2, false, Answer::Written, true),
            Verdict::Acked
        );
        assert!(s.may_resend(P, &b));
        assert!(!s.may_resend(P, &c));
    }

    #[test]
    fn out_of_order_behind_a_failed_batch_is_retried_without_a_bump() {
        let mut s = seqs();
        let a = s.assign(P, 2).expect("a");
        let b = s.assign(P, 2).expect("b");
        // a's request was lost; b reached the broker first.
        assert_eq!(
            s.settle(P, &b, 2, false, Answer::OutOfOrder, true),
            Verdict::Retry
        );
        s.bump_if_requested();
        assert_eq!(s.producer(), Some(PID), "no bump");
        assert_eq!(
            s.settle(P, &a, 2, false, Answer::Transient, true),
            Verdict::Retry
        );
        assert!(s.may_resend(P, &a) && !s.may_resend(P, &b));
    }

    #[test]
    fn out_of_order_for_the_next_batch_bumps_and_renumbers_from_zero() {
        let mut s = seqs();
        let a = s.assign(P, 2).expect("a");
        assert_eq!(
            s.settle(P, &a, 2, false, Answer::Written, true),
            Verdict::Acked
        );
        let b = s.assign(P, 3).expect("b");
        let c = s.assign(P, 1).expect("c");
        // The broker lost a (unclean election): b, the next one, is out of order.
        assert_eq!(
            s.settle(P, &b, 3, false, Answer::OutOfOrder, true),
            Verdict::Retry
        );
        assert_eq!(
            s.settle(P, &c, 1, false, Answer::OutOfOrder, true),
            Verdict::Retry
        );
        s.bump_if_requested();
        assert_eq!(s.producer(), Some(ProducerIdAndEpoch { id: 7, epoch: 1 }));
        assert!(s.must_renumber(P));
        assert!(!s.may_resend(P, &b), "not before the renumbering");
        assert_eq!(s.assign(P, 1), None, "nor anything new");
        let renumbered = s.renumber(P, &[3, 1]);
        assert_eq!(renumbered, [at(1, 0), at(1, 3)]);
        assert!(s.may_resend(P, &renumbered[0]));
        assert_eq!(s.assign(P, 2), Some(at(1, 4)), "new batches follow them");
        // A renumbered batch out of order again does not bump again.
        assert_eq!(
            s.settle(P, &renumbered[0], 3, true, Answer::OutOfOrder, true),
            Verdict::Retry
        );
        s.bump_if_requested();
        assert_eq!(s.producer(), Some(ProducerIdAndEpoch { id: 7, epoch: 1 }));
    }

    #[test]
    fn unknown_producer_id_bumps_unless_the_log_start_is_unknown_or_already_renumbered() {
        let mut s = seqs();
        let a = s.assign(P, 1).expect("a");
        let unknown = |o| Answer::UnknownProducerId {
            log_start_offset: o,
        };
        assert_eq!(
            s.settle(P, &a, 1, false, unknown(None), true),
            Verdict::Retry
        );
        assert_eq!(
            s.settle(P, &a, 1, false, unknown(Some(-1)), true),
            Verdict::Retry
        );
        assert_eq!(
            s.settle(P, &a, 1, true, unknown(Some(10)), true),
            Verdict::Retry
        );
        s.bump_if_requested();
        assert_eq!(s.producer(), Some(PID));
        assert_eq!(
            s.settle(P, &a, 1, false, unknown(Some(10)), true),
            Verdict::Retry
        );
        s.bump_if_requested();
        assert_eq!(s.producer().map(|p| p.epoch), Some(1));
        assert_eq!(s.renumber(P, &[1]), [at(1, 0)]);
    }

    #[test]
    fn duplicate_is_acknowledged_and_rejection_fails_with_a_bump() {
        let mut s = seqs();
        let a = s.assign(P, 1).expect("a");
        let b = s.assign(P, 1).expect("b");
        // DUPLICATE_SEQUENCE_NUMBER arrives as Written.
        assert_eq!(
            s.settle(P, &a, 1, false, Answer::Written, true),
            Verdict::Acked
        );
        assert_eq!(
            s.settle(P, &b, 1, false, Answer::Rejected, true),
            Verdict::Fail
        );
        s.bump_if_requested();
        assert_eq!(s.producer().map(|p| p.epoch), Some(1));
        // Nothing outstanding: renumbering leaves the partition at 0.
        assert!(s.renumber(P, &[]).is_empty());
        assert_eq!(s.assign(P, 1), Some(at(1, 0)));

        let c = s.assign(1, 1).expect("c");
        assert_eq!(
            s.settle(1, &c, 1, false, Answer::InvalidEpoch, true),
            Verdict::Fail
        );
        s.bump_if_requested();
        assert_eq!(s.producer().map(|p| p.epoch), Some(2));
    }

    #[test]
    fn other_partitions_keep_their_epoch_until_nothing_is_outstanding() {
        let mut s = seqs();
        let a = s.assign(P, 1).expect("a");
        let x = s.assign(1, 1).expect("x");
        assert_eq!(
            s.settle(P, &a, 1, false, Answer::Rejected, true),
            Verdict::Fail
        );
        s.bump_if_requested();
        // Partition 1 still has x outstanding under epoch 0: new batches wait.
        assert_eq!(s.assign(1, 1), None);
        assert!(!s.must_renumber(1));
        assert_eq!(
            s.settle(1, &x, 1, false, Answer::Transient, true),
            Verdict::Retry
        );
        assert!(s.may_resend(1, &x), "retries keep their old epoch");
        assert_eq!(
            s.settle(1, &x, 1, false, Answer::Written, true),
            Verdict::Acked
        );
        assert_eq!(s.assign(1, 1), Some(at(1, 0)), "then epoch 1 from 0");
    }

    #[test]
    fn one_bump_for_several_partitions_asking_at_once() {
        let mut s = seqs();
        let a = s.assign(P, 1).expect("a");
        let b = s.assign(1, 1).expect("b");
        s.settle(P, &a, 1, false, Answer::Rejected, true);
        s.settle(1, &b, 1, false, Answer::Rejected, true);
        s.bump_if_requested();
        assert_eq!(s.producer().map(|p| p.epoch), Some(1));
        assert_eq!(s.bumps(), 1);
        assert!(s.must_renumber(P) && s.must_renumber(1));
    }

    #[test]
    fn an_exhausted_epoch_asks_for_a_new_producer_id() {
        let mut s = Sequences::new(ProducerIdAndEpoch {
            id: 7,
            epoch: i16::MAX,
        });
        let a = s.assign(P, 1).expect("a");
        s.settle(P, &a, 1, false, Answer::Rejected, true);
        s.bump_if_requested();
        assert_eq!(s.producer(), None);
        assert_eq!(s.assign(1, 1), None, "nothing goes without an id");
        assert!(s.renumber(P, &[]).is_empty());
        let new = ProducerIdAndEpoch { id: 8, epoch: 0 };
        s.set_producer(new);
        assert_eq!(s.renumber(P, &[]), []);
        assert_eq!(
            s.assign(P, 1),
            Some(BatchSequence {
                producer: new,
                base_sequence: 0
            })
        );
    }

    #[test]
    fn at_the_end_of_the_run_retries_turn_into_failures_without_a_bump() {
        let mut s = seqs();
        let a = s.assign(P, 1).expect("a");
        assert_eq!(
            s.settle(P, &a, 1, false, Answer::Transient, false),
            Verdict::Fail
        );
        assert_eq!(
            s.settle(P, &a, 1, false, Answer::OutOfOrder, false),
            Verdict::Fail
        );
        s.bump_if_requested();
        assert_eq!(s.producer(), Some(PID));
    }
}
