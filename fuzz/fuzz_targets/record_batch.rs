//! rskafka's record-batch and decompression decoders, as a fetch meets them
//! (issues 13 and 17): the record section of a fetch response from any
//! broker or topic writer, read batch by batch (`RawRecords`), each batch
//! decoded with every codec Kafka has, under a decode limit, through the
//! read_committed filter the consumer uses (`committed_records`).
//!
//! Input: `[mode, limit, aborted..., payload...]`.
//! - `mode & 1 == 0`: `payload` is the record section as the broker sends
//!   it (the CRC check rejects most of it, so this covers the framing).
//! - `mode & 1 == 1`: `payload` is `[attributes (2), records count (2),
//!   producer id (1), records...]`, made into one batch with a correct
//!   length and CRC, so decompression and record parsing are reached. The
//!   records section is raw codec output: zstd, gzip, lz4 frames or snappy
//!   (raw or Java-framed) as the fuzzer builds them.
//! - `limit`: the decode limit is 1 KiB << (limit % 13), up to 4 MiB, so a
//!   decompression bomb among the inputs costs at most that.
//! - `mode >> 1 & 3` aborted transactions, `(producer id, first offset)`
//!   one byte each; the fetch starts at offset `mode >> 3`.
//!
//! Seeds (fuzz/seeds/record_batch): the log segments of one topic per
//! writer and codec as `consumer/tests/transactions.rs` leaves them on the
//! broker (Java's producer and librdkafka; committed, aborted and plain
//! batches and transaction markers), each whole in the first mode with its
//! aborted transactions, and one transactional batch of each in the second.
//!
//! Properties: no panic; no decode past its limit (a bomb fails with
//! `DecodedSizeExceeded` / `DecodedBatchTooLarge`, never by running out of
//! memory); every record returned is at or after the requested offset and
//! the next offset never goes backwards; a batch that decodes encodes back
//! to one that decodes to the same records.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use rskafka::{
    client::{error::Error, fetched::committed_records},
    protocol::{
        messages::FetchResponseAbortedTransaction,
        primitives::{Int64, NullableBytes, RawRecords},
        record::RawRecordBatch,
        traits::{ReadError, ReadType, WriteType},
    },
};

/// `payload` as a record section: bytes on the wire after the section's length.
fn section(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    NullableBytes(Some(payload.to_vec()))
        .write(&mut out)
        .expect("in-memory write");
    out
}

/// One batch with a correct length and CRC around `[attributes, count,
/// producer, records...]`.
fn batch(payload: &[u8]) -> Option<Vec<u8>> {
    let (head, records) = payload.split_at_checked(5)?;
    let mut body = vec![];
    body.extend_from_slice(&head[0..2]); // attributes
    let count = u16::from_be_bytes([head[2], head[3]]);
    body.extend_from_slice(&(i32::from(count) - 1).to_be_bytes()); // lastOffsetDelta
    body.extend_from_slice(&[0; 16]); // first and max timestamp
    body.extend_from_slice(&i64::from(head[4]).to_be_bytes()); // producerId
    body.extend_from_slice(&[0; 6]); // producerEpoch, baseSequence
    body.extend_from_slice(&i32::from(count).to_be_bytes());
    body.extend_from_slice(records);
    let mut out = vec![];
    out.extend_from_slice(&10i64.to_be_bytes()); // baseOffset
    out.extend_from_slice(&i32::try_from(body.len() + 9).ok()?.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // partitionLeaderEpoch
    out.push(2); // magic
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let [mode, limit, rest @ ..] = data else {
        return;
    };
    let limit = 1024usize << (limit % 13);
    let n_aborted = usize::from(mode >> 1 & 3);
    let Some((aborted, payload)) = rest.split_at_checked(2 * n_aborted) else {
        return;
    };
    let aborted: Vec<FetchResponseAbortedTransaction> = aborted
        .chunks(2)
        .map(|c| FetchResponseAbortedTransaction {
            producer_id: Int64(i64::from(c[0])),
            first_offset: Int64(i64::from(c[1])),
        })
        .collect();
    let records = if mode & 1 == 0 {
        section(payload)
    } else {
        match batch(payload) {
            Some(b) => section(&b),
            None => return,
        }
    };
    let Ok(RawRecords(batches)) = RawRecords::read(&mut Cursor::new(records)) else {
        return;
    };

    for b in &batches {
        match b.decode(limit) {
            Ok((decoded, size)) => {
                assert!(size <= limit, "decoded {size} bytes past the limit {limit}");
                // What decodes encodes back to what decodes the same.
                let mut again = vec![];
                if decoded.write(&mut again).is_ok() {
                    let raw = RawRecordBatch::read(&mut Cursor::new(again)).expect("re-read");
                    let (decoded2, _) = raw.decode(usize::MAX).expect("re-decode");
                    assert_eq!(decoded.records, decoded2.records);
                }
            }
            Err(ReadError::DecodedSizeExceeded { limit: l }) => assert!(l <= limit),
            Err(_) => {}
        }
    }

    let request_offset = i64::from(mode >> 3);
    match committed_records(&batches, &aborted, request_offset, limit) {
        Ok((records, next_offset)) => {
            assert!(next_offset >= request_offset, "next offset went backwards");
            assert!(records.iter().all(|r| r.offset >= request_offset));
        }
        Err(Error::DecodedBatchTooLarge { limit: l, .. }) => assert_eq!(l, limit),
        Err(_) => {}
    }
});
