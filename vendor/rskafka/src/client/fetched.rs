//! PATCH(kafka-rs): what a fetched partition holds for a `read_committed`
//! consumer, the way Kafka's Java consumer reads it (`CompletedFetch`):
//!
//! - records of aborted transactions are left out: a transactional batch of
//!   a producer whose aborted transaction (from the response's
//!   `aborted_transactions`) began at or before the batch's last offset is
//!   passed over, without decompressing it, until that producer's abort
//!   marker;
//! - control batches (transaction markers) are never returned, but their
//!   offsets are passed: [`FetchedRecords::next_offset`] is the offset after
//!   the last batch the fetch held, so a fetch of only markers or aborted
//!   records still moves the consumer on (and so does a batch whose records
//!   compaction removed);
//! - what one fetch decodes is bounded (see [`FetchedRecords`]).
//!
//! The broker returns nothing at or past the last stable offset to a
//! `read_committed` fetch, so an open transaction holds the consumer there.

use std::collections::HashSet;

use chrono::{LocalResult, TimeZone, Utc};
use tracing::debug;

use crate::{
    client::error::{Error, Result},
    messenger::RequestError,
    protocol::{
        messages::{FetchResponseAbortedTransaction, FetchResponsePartition},
        record::{ControlBatchOrRecords, ControlBatchRecord, RawRecordBatch, RecordBatch},
        traits::ReadError,
    },
    record::{Record, RecordAndOffset},
};

/// What one fetch of a partition returned.
///
/// Decoding stops before the batch that would take the decoded size of the
/// fetch past its limit; that batch comes first in the next fetch. A batch
/// that alone decodes to more fails the fetch with
/// [`Error::DecodedBatchTooLarge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecords {
    /// Committed and non-transactional records at or after the requested
    /// offset, in offset order.
    pub records: Vec<RecordAndOffset>,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// The partition's last stable offset, when the broker sent one.
    pub last_stable_offset: Option<i64>,
    /// Where the next fetch starts: after the last batch this one returned
    /// or passed over (the requested offset when there was none).
    pub next_offset: i64,
}

/// The `read_committed` view of `partition`, fetched at `request_offset`,
/// decoding at most `max_decoded` bytes.
pub(crate) fn extract(
    partition: FetchResponsePartition,
    request_offset: i64,
    max_decoded: usize,
) -> Result<FetchedRecords> {
    let (records, next_offset) = committed_records(
        &partition.records.0,
        &partition.aborted_transactions,
        request_offset,
        max_decoded,
    )?;
    Ok(FetchedRecords {
        records,
        high_watermark: partition.high_watermark.0,
        last_stable_offset: partition
            .last_stable_offset
            .map(|o| o.0)
            .filter(|o| *o >= 0),
        next_offset,
    })
}

/// Records of `batches` a `read_committed` consumer sees from
/// `request_offset` on, and the offset after the last batch taken in.
pub fn committed_records(
    batches: &[RawRecordBatch],
    aborted_transactions: &[FetchResponseAbortedTransaction],
    request_offset: i64,
    max_decoded: usize,
) -> Result<(Vec<RecordAndOffset>, i64)> {
    let mut aborted: Vec<(i64, i64)> = aborted_transactions
        .iter()
        .map(|t| (t.first_offset.0, t.producer_id.0))
        .collect();
    aborted.sort_unstable();
    let mut aborted = aborted.into_iter().peekable();
    let mut aborted_producers = HashSet::new();

    let mut records = vec![];
    let mut next_offset = request_offset;
    let mut decoded = 0usize;
    for batch in batches {
        // Kafka returns whole batches, starting with the one that holds the
        // requested offset.
        if batch.next_offset() <= request_offset {
            continue;
        }
        let has_producer = batch.producer_id >= 0;
        if has_producer {
            while let Some((_, producer)) =
                aborted.next_if(|(first, _)| *first <= batch.last_offset())
            {
                aborted_producers.insert(producer);
            }
            if !batch.is_control
                && batch.is_transactional
                && aborted_producers.contains(&batch.producer_id)
            {
                debug!(
                    producer_id = batch.producer_id,
                    base_offset = batch.base_offset,
                    last_offset = batch.last_offset(),
                    "Skipping record batch of an aborted transaction"
                );
                next_offset = batch.next_offset();
                continue;
            }
        }

        let (decoded_batch, size) = match batch.decode(max_decoded - decoded) {
            Ok(d) => d,
            // What was taken in so far is returned; the next fetch starts
            // with this batch and the whole limit.
            Err(ReadError::DecodedSizeExceeded { .. }) if next_offset > request_offset => break,
            Err(ReadError::DecodedSizeExceeded { .. }) => {
                return Err(Error::DecodedBatchTooLarge {
                    base_offset: batch.base_offset,
                    last_offset: batch.last_offset(),
                    limit: max_decoded,
                });
            }
            Err(e) => return Err(Error::Request(RequestError::ReadError(e))),
        };
        decoded += size;
        next_offset = batch.next_offset();
        match decoded_batch.records {
            ControlBatchOrRecords::ControlBatch(ControlBatchRecord::Abort) if has_producer => {
                aborted_producers.remove(&batch.producer_id);
            }
            // Markers are never returned; their offsets are passed.
            ControlBatchOrRecords::ControlBatch(_) => {}
            ControlBatchOrRecords::Records(_) => {
                append_records(&mut records, decoded_batch, request_offset)?
            }
        }
    }
    Ok((records, next_offset))
}

/// Appends the records of `batch` at or after `request_offset`.
fn append_records(
    records: &mut Vec<RecordAndOffset>,
    batch: RecordBatch,
    request_offset: i64,
) -> Result<()> {
    let ControlBatchOrRecords::Records(protocol_records) = batch.records else {
        return Ok(());
    };
    records.reserve(protocol_records.len());

    for record in protocol_records {
        let offset = batch
            .base_offset
            .saturating_add(i64::from(record.offset_delta));
        if offset < request_offset {
            // Kafka does not split record batches on the server side, so we need to do this filtering on
            // the client side
            continue;
        }

        let timestamp_millis = match batch.first_timestamp.checked_add(record.timestamp_delta) {
            Some(ts) => ts,
            None => {
                return Err(Error::InvalidResponse(format!(
                    "Timestamp overflow (first_timestamp={}, delta={}",
                    batch.first_timestamp, record.timestamp_delta
                )));
            }
        };
        let timestamp = match Utc.timestamp_millis_opt(timestamp_millis) {
            LocalResult::None => {
                return Err(Error::InvalidResponse(format!(
                    "Not a valid timestamp ({timestamp_millis})"
                )));
            }
            LocalResult::Single(ts) => ts,
            LocalResult::Ambiguous(a, b) => {
                return Err(Error::InvalidResponse(format!(
                    "Ambiguous timestamp ({timestamp_millis}): {a} or {b}"
                )));
            }
        };

        records.push(RecordAndOffset {
            record: Record {
                key: record.key,
                value: record.value,
                headers: record
                    .headers
                    .into_iter()
                    .map(|header| (header.key, header.value))
                    .collect(),
                timestamp,
            },
            offset,
        })
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use assert_matches::assert_matches;

    use super::*;
    use crate::protocol::{
        primitives::Int64,
        record::{Record as ProtocolRecord, RecordBatchCompression, RecordBatchTimestampType},
        traits::{ReadType, WriteType},
    };

    /// The batches of a log segment (its format is the fetch response's).
    fn batches(segment: &[u8]) -> Vec<RawRecordBatch> {
        let mut cursor = Cursor::new(segment);
        let mut out = vec![];
        while (cursor.position() as usize) < segment.len() {
            out.push(RawRecordBatch::read(&mut cursor).unwrap());
        }
        out
    }

    fn aborted(list: &[(i64, i64)]) -> Vec<FetchResponseAbortedTransaction> {
        list.iter()
            .map(
                |(producer_id, first_offset)| FetchResponseAbortedTransaction {
                    producer_id: Int64(*producer_id),
                    first_offset: Int64(*first_offset),
                },
            )
            .collect()
    }

    fn values(records: &[RecordAndOffset]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8(r.record.value.clone().unwrap()).unwrap())
            .collect()
    }

    /// What the fixtures' writers wrote (consumer/tests/fixtures/transactions
    /// in kafka-rs): values, in offset order, of the records `keep`s.
    fn script(keep: impl Fn(&str) -> bool) -> Vec<String> {
        [
            ("keep-p1", 3),
            ("keep-c1", 5),
            ("drop-a1", 5),
            ("keep-p2", 2),
            ("keep-c2a", 20),
            ("keep-p3", 1),
            ("keep-c2b", 20),
            ("drop-a2a", 30),
            ("drop-a2b", 30),
            ("keep-c3", 3),
            ("keep-o", 4),
            ("keep-late", 3),
        ]
        .into_iter()
        .filter(|(label, _)| keep(label))
        .flat_map(|(label, n)| (0..n).map(move |i| format!("{label}-{i}")))
        .collect()
    }

    /// Java's producers (zstd) on a Kafka 4.4 broker: commit, abort and commit with plain records in between, an
    /// aborted transaction over two batches, and a last transaction that committed. Its producer 44 aborted the
    /// transactions that began at offsets 9 and 59 (the segment's transaction index).
    const JAVA_ZSTD: &[u8] = include_bytes!("testdata/java-zstd.log");

    /// librdkafka's (lz4), the same script, but the writer was killed with its last transaction open (offset 124):
    /// the coordinator aborted it when it timed out, and the plain records written behind it stay.
    const RDKAFKA_LZ4_TIMED_OUT: &[u8] = include_bytes!("testdata/rdkafka-lz4-timed-out.log");

    #[test]
    fn committed_records_of_the_java_producer() {
        let (records, next) = committed_records(
            &batches(JAVA_ZSTD),
            &aborted(&[(44, 9), (44, 59)]),
            0,
            usize::MAX,
        )
        .unwrap();
        assert_eq!(values(&records), script(|l| l.starts_with("keep")));
        assert_eq!(next, 132, "past the last commit marker");
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_transaction_aborted_by_its_timeout() {
        let (records, next) = committed_records(
            &batches(RDKAFKA_LZ4_TIMED_OUT),
            &aborted(&[(3, 9), (3, 59), (3, 124)]),
            0,
            usize::MAX,
        )
        .unwrap();
        assert_eq!(
            values(&records),
            script(|l| l.starts_with("keep") && l != "keep-o")
        );
        assert_eq!(next, 132);
    }

    #[test]
    fn a_fetch_of_only_markers_and_aborted_records_moves_on() {
        // Offsets 8 (commit marker), 9-13 (aborted), 14-15 (plain), 16 (abort marker): from 8 with the plain batch
        // left out, as a fetch that ends before it would be.
        let all = batches(JAVA_ZSTD);
        let only = [all[2].clone(), all[3].clone()];
        let (records, next) =
            committed_records(&only, &aborted(&[(44, 9)]), 8, usize::MAX).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 14);

        // just the abort marker
        let (records, next) = committed_records(&all[5..6], &aborted(&[]), 16, usize::MAX).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 17);

        // nothing at all: stay
        let (records, next) = committed_records(&[], &aborted(&[]), 16, usize::MAX).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 16);
    }

    #[test]
    fn a_fetch_from_inside_a_batch_or_a_transaction() {
        let all = batches(JAVA_ZSTD);
        // From offset 5 the broker returns the batch 3..=7 whole.
        let (records, next) =
            committed_records(&all[1..], &aborted(&[(44, 9), (44, 59)]), 5, usize::MAX).unwrap();
        assert_eq!(records[0].offset, 5);
        assert_eq!(
            values(&records)[..3],
            ["keep-c1-2", "keep-c1-3", "keep-c1-4"]
        );
        assert_eq!(next, 132);

        // From inside the aborted transaction (offset 11): the broker lists it, its rest is left out.
        let (records, _) =
            committed_records(&all[3..], &aborted(&[(44, 9), (44, 59)]), 11, usize::MAX).unwrap();
        assert_eq!(values(&records)[0], "keep-p2-0");
        assert!(values(&records).iter().all(|v| !v.starts_with("drop")));
    }

    /// An uncompressed batch at `base_offset` of one record with `value_len` bytes.
    fn batch_of(base_offset: i64, value_len: usize) -> RawRecordBatch {
        let batch = RecordBatch {
            base_offset,
            partition_leader_epoch: 0,
            last_offset_delta: 0,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: ControlBatchOrRecords::Records(vec![ProtocolRecord {
                timestamp_delta: 0,
                offset_delta: 0,
                key: None,
                value: Some(vec![b'x'; value_len]),
                headers: vec![],
            }]),
            compression: RecordBatchCompression::NoCompression,
            is_transactional: false,
            timestamp_type: RecordBatchTimestampType::CreateTime,
        };
        let mut data = vec![];
        batch.write(&mut data).unwrap();
        RawRecordBatch::read(&mut Cursor::new(data)).unwrap()
    }

    #[test]
    fn what_a_fetch_decodes_is_bounded() {
        let three = [
            batch_of(0, 100_000),
            batch_of(1, 100_000),
            batch_of(2, 100_000),
        ];
        // Room for two: the third waits for the next fetch.
        let (records, next) = committed_records(&three, &[], 0, 250_000).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(next, 2);
        let (records, next) = committed_records(&three[2..], &[], 2, 250_000).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(next, 3);

        // A first batch over the limit alone: an error that names it.
        let err = committed_records(&three, &[], 0, 50_000).unwrap_err();
        assert_matches!(
            err,
            Error::DecodedBatchTooLarge {
                base_offset: 0,
                last_offset: 0,
                limit: 50_000
            }
        );
        assert_eq!(
            err.to_string(),
            "Record batch at offsets 0..=0 decodes to more than 50000 bytes"
        );

        // After a marker was passed, the batch waits for the next fetch instead.
        let all = batches(JAVA_ZSTD);
        let mut big = batch_of(9, 100_000);
        big.base_offset = 9;
        let (records, next) = committed_records(&[all[2].clone(), big], &[], 8, 50_000).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 9);
    }

    #[test]
    fn an_emptied_batch_still_moves_on() {
        // Compaction can remove every record of a batch and keep its header (and last offset).
        let mut empty = batch_of(10, 0);
        empty.last_offset_delta = 4;
        empty.n_records = 0;
        empty.records.clear();
        let (records, next) = committed_records(&[empty], &[], 10, usize::MAX).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 15);
    }
}
