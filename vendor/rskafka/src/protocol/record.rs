//! The actual payload message which is also the on-disk format for Kafka.
//!
//! The format evolved twice in [KIP-32] and [KIP-98]. We only support the latest generation (message version 2).
//!
//!
//! # CRC
//! The CRC used to check payload data is `CRC-32C` / iSCSI as documented by the following sources:
//!
//! - <https://kafka.apache.org/documentation/#recordbatch>
//! - <https://docs.oracle.com/javase/9/docs/api/java/util/zip/CRC32C.html>
//! - <https://reveng.sourceforge.io/crc-catalogue/all.htm>
//!
//!
//! # References
//! - [KIP-32]
//! - [KIP-98]
//! - <https://kafka.apache.org/documentation/#messageformat>
//!
//!
//! [KIP-32]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-32+-+Add+timestamps+to+Kafka+message
//! [KIP-98]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-98+-+Exactly+Once+Delivery+and+Transactional+Messaging
use std::io::{Cursor, Read, Write};

#[cfg(test)]
use proptest::prelude::*;

use super::{
    primitives::{Int8, Int16, Int32, Int64, Varint, Varlong},
    traits::{ReadError, ReadType, WriteError, WriteType},
    vec_builder::VecBuilder,
};

/// Record Header
///
/// # References
/// - <https://kafka.apache.org/documentation/#recordheader>
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RecordHeader {
    pub key: String,
    pub value: Vec<u8>,
}

impl<R> ReadType<R> for RecordHeader
where
    R: Read,
{
    fn read(reader: &mut R) -> Result<Self, ReadError> {
        // key
        let len = Varint::read(reader)?;
        let len = usize::try_from(len.0).map_err(|e| ReadError::Malformed(Box::new(e)))?;
        let mut buf = VecBuilder::new(len);
        buf = buf.read_exact(reader)?;
        // PATCH(kafka-rs): Kafka does not validate header names, so a producer
        // can write bytes that are not UTF-8. Failing the decode here failed the
        // whole fetch, and the partition could never move past that batch. Keep
        // the record and replace the invalid bytes with U+FFFD instead.
        let key = match String::from_utf8(buf.into()) {
            Ok(key) => key,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };

        // value
        let len = Varint::read(reader)?;
        let len = usize::try_from(len.0).map_err(|e| ReadError::Malformed(Box::new(e)))?;
        let mut value = VecBuilder::new(len);
        value = value.read_exact(reader)?;
        let value = value.into();

        Ok(Self { key, value })
    }
}

impl<W> WriteType<W> for RecordHeader
where
    W: Write,
{
    fn write(&self, writer: &mut W) -> Result<(), WriteError> {
        // key
        let l = i32::try_from(self.key.len()).map_err(|e| WriteError::Malformed(Box::new(e)))?;
        Varint(l).write(writer)?;
        writer.write_all(self.key.as_bytes())?;

        // value
        let l = i32::try_from(self.value.len()).map_err(|e| WriteError::Malformed(Box::new(e)))?;
        Varint(l).write(writer)?;
        writer.write_all(&self.value)?;

        Ok(())
    }
}

/// Record
///
/// # References
/// - <https://kafka.apache.org/documentation/#record>
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Record {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<RecordHeader>,
}

impl<R> ReadType<R> for Record
where
    R: Read,
{
    fn read(reader: &mut R) -> Result<Self, ReadError> {
        // length
        let len = Varint::read(reader)?;
        let len = u64::try_from(len.0).map_err(|e| ReadError::Malformed(Box::new(e)))?;
        let reader = &mut reader.take(len);

        // attributes
        Int8::read(reader)?;

        // timestampDelta
        let timestamp_delta = Varlong::read(reader)?.0;

        // offsetDelta
        let offset_delta = Varint::read(reader)?.0;

        // key
        let len = Varint::read(reader)?.0;
        let key = if len == -1 {
            None
        } else {
            let len = usize::try_from(len).map_err(|e| ReadError::Malformed(Box::new(e)))?;
            let mut key = VecBuilder::new(len);
            key = key.read_exact(reader)?;
            Some(key.into())
        };

        // value
        let len = Varint::read(reader)?.0;
        let value = if len == -1 {
            None
        } else {
            let len = usize::try_from(len).map_err(|e| ReadError::Malformed(Box::new(e)))?;
            let mut value = VecBuilder::new(len);
            value = value.read_exact(reader)?;
            Some(value.into())
        };

        // headers
        // Note: This is NOT a normal array but uses a Varint instead.
        let n_headers = Varint::read(reader)?;
        let n_headers =
            usize::try_from(n_headers.0).map_err(|e| ReadError::Malformed(Box::new(e)))?;
        let mut headers = VecBuilder::new(n_headers);
        for _ in 0..n_headers {
            headers.push(RecordHeader::read(reader)?);
        }

        // check if there is any trailing data because this is likely a bug
        if reader.limit() != 0 {
            return Err(ReadError::Malformed(
                format!("Found {} trailing bytes after Record", reader.limit()).into(),
            ));
        }

        Ok(Self {
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers: headers.into(),
        })
    }
}

impl<W> WriteType<W> for Record
where
    W: Write,
{
    fn write(&self, writer: &mut W) -> Result<(), WriteError> {
        // ============================================================================================
        // ======================================== inner data ========================================
        // write data to buffer because we need to prepend the length
        // PATCH(kafka-rs): size the buffer once instead of growing it per field
        // (attributes 1 + two varlongs/varints <= 15 + length varints 5 each).
        let mut data = Vec::with_capacity(
            21 + self.key.as_ref().map_or(0, Vec::len)
                + self.value.as_ref().map_or(0, Vec::len)
                + self
                    .headers
                    .iter()
                    .map(|h| h.key.len() + h.value.len() + 10)
                    .sum::<usize>(),
        );

        // attributes
        Int8(0).write(&mut data)?;

        // timestampDelta
        Varlong(self.timestamp_delta).write(&mut data)?;

        // offsetDelta
        Varint(self.offset_delta).write(&mut data)?;

        // key
        match &self.key {
            Some(key) => {
                let l = i32::try_from(key.len()).map_err(|e| WriteError::Malformed(Box::new(e)))?;
                Varint(l).write(&mut data)?;
                data.write_all(key)?;
            }
            None => {
                Varint(-1).write(&mut data)?;
            }
        }

        // value
        match &self.value {
            Some(value) => {
                let l =
                    i32::try_from(value.len()).map_err(|e| WriteError::Malformed(Box::new(e)))?;
                Varint(l).write(&mut data)?;
                data.write_all(value)?;
            }
            None => {
                Varint(-1).write(&mut data)?;
            }
        }

        // headers
        // Note: This is NOT a normal array but uses a Varint instead.
        let l =
            i32::try_from(self.headers.len()).map_err(|e| WriteError::Malformed(Box::new(e)))?;
        Varint(l).write(&mut data)?;
        for header in &self.headers {
            header.write(&mut data)?;
        }

        // ============================================================================================
        // ============================================================================================

        // now write accumulated data
        let l = i32::try_from(data.len()).map_err(|e| WriteError::Malformed(Box::new(e)))?;
        Varint(l).write(writer)?;
        writer.write_all(&data)?;

        Ok(())
    }
}

/// Control Batch Record
///
/// # References
/// - <https://kafka.apache.org/documentation/#controlbatch>
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ControlBatchRecord {
    Abort,
    Commit,
    /// PATCH(kafka-rs): a control record of another type (KRaft writes leader
    /// changes, snapshot and voter records). Consumers pass over it, as the
    /// Java client does, instead of failing the fetch.
    Other(#[cfg_attr(test, proptest(strategy = "2i16.."))] i16),
}

impl ControlBatchRecord {
    /// Parses a control record's key: version (int16), then type (int16).
    fn from_key(key: Option<&[u8]>) -> Result<Self, ReadError> {
        let key = key.unwrap_or_default();
        let &[v0, v1, t0, t1, ..] = key else {
            return Err(ReadError::Malformed(
                format!(
                    "Control record key has {} bytes, expected at least 4",
                    key.len()
                )
                .into(),
            ));
        };
        let version = i16::from_be_bytes([v0, v1]);
        if version < 0 {
            return Err(ReadError::Malformed(
                format!("Unknown control batch record version: {}", version).into(),
            ));
        }
        // Like the Java client, a later version is read as version 0: the
        // fields it knows come first.
        Ok(match i16::from_be_bytes([t0, t1]) {
            0 => Self::Abort,
            1 => Self::Commit,
            other => Self::Other(other),
        })
    }
}

impl<R> ReadType<R> for ControlBatchRecord
where
    R: Read,
{
    fn read(reader: &mut R) -> Result<Self, ReadError> {
        // PATCH(kafka-rs): a control batch holds an ordinary record (length,
        // attributes, deltas, key, value, headers) whose key carries version
        // and type. Reading version and type straight from the batch's bytes
        // read the record's framing instead ("Unknown control batch record
        // version: 8192") and failed every fetch that met a transaction marker.
        let record = Record::read(reader)?;
        Self::from_key(record.key.as_deref())
    }
}

impl<W> WriteType<W> for ControlBatchRecord
where
    W: Write,
{
    fn write(&self, writer: &mut W) -> Result<(), WriteError> {
        let (t, value) = match self {
            // An end transaction marker's value: version 0, coordinator epoch.
            Self::Abort => (0, Some(vec![0; 6])),
            Self::Commit => (1, Some(vec![0; 6])),
            Self::Other(t) => (*t, None),
        };
        let mut key = Vec::with_capacity(4);
        Int16(0).write(&mut key)?;
        Int16(t).write(&mut key)?;
        Record {
            timestamp_delta: 0,
            offset_delta: 0,
            key: Some(key),
            value,
            headers: vec![],
        }
        .write(writer)
    }
}

#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ControlBatchOrRecords {
    ControlBatch(ControlBatchRecord),

    // tell proptest to only generate small vectors, otherwise tests take forever
    #[cfg_attr(
        test,
        proptest(
            strategy = "prop::collection::vec(any::<Record>(), 0..2).prop_map(ControlBatchOrRecords::Records)"
        )
    )]
    Records(Vec<Record>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum RecordBatchCompression {
    NoCompression,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Record batch timestamp type.
///
/// # References
/// - <https://kafka.apache.org/documentation/#messageset> (this is the old message format, but the flag is the same)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum RecordBatchTimestampType {
    CreateTime,
    LogAppendTime,
}

/// Record Batch
///
/// # References
/// - <https://kafka.apache.org/documentation/#recordbatch>
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RecordBatch {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub last_offset_delta: i32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: ControlBatchOrRecords,
    pub compression: RecordBatchCompression,
    pub is_transactional: bool,
    pub timestamp_type: RecordBatchTimestampType,
}

impl<R> ReadType<R> for RecordBatch
where
    R: Read,
{
    fn read(reader: &mut R) -> Result<Self, ReadError> {
        Ok(RawRecordBatch::read(reader)?.decode(usize::MAX)?.0)
    }
}

/// PATCH(kafka-rs): a [`RecordBatch`] read and CRC-checked, its records not
/// decoded yet (they may be compressed). A fetch decodes what it needs: a
/// batch of an aborted transaction is passed over without decompressing it,
/// and [`decode`](Self::decode) bounds what one batch may decode to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecordBatch {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub last_offset_delta: i32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub compression: RecordBatchCompression,
    pub is_transactional: bool,
    pub is_control: bool,
    pub timestamp_type: RecordBatchTimestampType,
    /// How many records the batch says it holds.
    pub n_records: usize,
    /// The records as sent, compressed as `compression` says.
    pub records: Vec<u8>,
}

impl RawRecordBatch {
    /// The offset of the batch's last record. Kept even when compaction
    /// removed that record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after the batch: where the next fetch starts.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// The batch with its records decoded, and the decoded size they were
    /// counted as (bytes after decompression plus a fixed overhead per
    /// record and header). Fails with [`ReadError::DecodedSizeExceeded`]
    /// as soon as that passes `max_decoded`, before the rest is decoded.
    pub fn decode(&self, max_decoded: usize) -> Result<(RecordBatch, usize), ReadError> {
        let mut data = Cursor::new(self.records.as_slice());
        let (records, decoded) = decode_records(
            &mut data,
            self.compression,
            self.is_control,
            self.n_records,
            max_decoded,
        )?;

        // check if there is any trailing data because this is likely a bug
        let bytes_left = self.records.len() as u64 - data.position();
        if bytes_left != 0 {
            return Err(ReadError::Malformed(
                format!("Found {} trailing bytes after RecordBatch", bytes_left).into(),
            ));
        }

        let batch = RecordBatch {
            base_offset: self.base_offset,
            partition_leader_epoch: self.partition_leader_epoch,
            last_offset_delta: self.last_offset_delta,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            compression: self.compression,
            timestamp_type: self.timestamp_type,
            is_transactional: self.is_transactional,
            records,
        };
        Ok((batch, decoded))
    }
}

impl<R> ReadType<R> for RawRecordBatch
where
    R: Read,
{
    fn read(reader: &mut R) -> Result<Self, ReadError> {
        // baseOffset
        let base_offset = Int64::read(reader)?.0;

        // batchLength
        //
        // Contains all fields AFTER the length field (so excluding `baseOffset` and `batchLength`). To determine the
        // size of the CRC-checked part we must substract all sized from this field to and including the CRC field.
        let len = Int32::read(reader)?;
        let len = usize::try_from(len.0).map_err(|e| ReadError::Malformed(Box::new(e)))?;
        let len = len
            .checked_sub(
                4 // partitionLeaderEpoch
            + 1 // magic
            + 4, // crc
            )
            .ok_or_else(|| {
                ReadError::Malformed(format!("Record batch len too small: {}", len).into())
            })?;

        // partitionLeaderEpoch
        let partition_leader_epoch = Int32::read(reader)?.0;

        // magic
        let magic = Int8::read(reader)?.0;
        if magic != 2 {
            return Err(ReadError::Malformed(
                format!("Invalid magic number in record batch: {}", magic).into(),
            ));
        }

        // crc
        let crc = Int32::read(reader)?.0;
        let crc = u32::from_be_bytes(crc.to_be_bytes());

        // data
        let mut data = VecBuilder::new(len);
        data = data.read_exact(reader)?;
        let mut data: Vec<u8> = data.into();
        let actual_crc = crc32c::crc32c(&data);
        if crc != actual_crc {
            return Err(ReadError::Malformed(
                format!("CRC error, got 0x{:x}, expected 0x{:x}", actual_crc, crc).into(),
            ));
        }

        // ==========================================================================================
        // ======================================== CRC data ========================================
        // The whole batch is here and intact: a header cut short is malformed,
        // not a batch cut off by the fetch size.
        let mut cursor = Cursor::new(data.as_slice());
        let header = BodyHeader::read(&mut cursor).map_err(|e| match e {
            ReadError::IO(io) => ReadError::Malformed(
                format!("Record batch of {len} bytes ends inside its header: {io}").into(),
            ),
            e => e,
        })?;
        let header_len = cursor.position() as usize;
        data.drain(..header_len);

        Ok(Self {
            base_offset,
            partition_leader_epoch,
            last_offset_delta: header.last_offset_delta,
            first_timestamp: header.first_timestamp,
            max_timestamp: header.max_timestamp,
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            compression: header.compression,
            is_transactional: header.is_transactional,
            is_control: header.is_control,
            timestamp_type: header.timestamp_type,
            n_records: header.n_records,
            records: data,
        })
    }
}

impl<W> WriteType<W> for RecordBatch
where
    W: Write,
{
    fn write(&self, writer: &mut W) -> Result<(), WriteError> {
        // ==========================================================================================
        // ======================================== CRC data ========================================
        // collect everything that should be part of the CRC calculation
        let mut data = vec![];
        let body_ref = RecordBatchBodyRef {
            last_offset_delta: self.last_offset_delta,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            records: &self.records,
            compression: self.compression,
            is_transactional: self.is_transactional,
            timestamp_type: self.timestamp_type,
        };
        body_ref.write(&mut data)?;

        // ==========================================================================================
        // ==========================================================================================

        // baseOffset
        Int64(self.base_offset).write(writer)?;

        // batchLength
        //
        // Contains all fields AFTER the length field (so excluding `baseOffset` and `batchLength`, but including
        // `partitionLeaderEpoch`, `magic`, and `crc).
        //
        // See
        // https://github.com/kafka-rust/kafka-rust/blob/657202832806cda77d0a1801d618dc6c382b4d79/src/protocol/produce.rs#L224-L226
        let l = i32::try_from(
            data.len()
            + 4 // partitionLeaderEpoch
            + 1 // magic
            + 4, // crc
        )
        .map_err(|e| WriteError::Malformed(Box::new(e)))?;
        Int32(l).write(writer)?;

        // partitionLeaderEpoch
        Int32(self.partition_leader_epoch).write(writer)?;

        // magic
        Int8(2).write(writer)?;

        // crc
        // See
        // https://github.com/kafka-rust/kafka-rust/blob/a551b6231a7adc9b715552b635a69ac2856ec8a1/src/protocol/mod.rs#L161-L163
        // WARNING: the range in the code linked above is correct but the polynomial is wrong!
        let crc = crc32c::crc32c(&data);
        let crc = i32::from_be_bytes(crc.to_be_bytes());
        Int32(crc).write(writer)?;

        // the actual CRC-checked data
        writer.write_all(&data)?;

        Ok(())
    }
}

/// Inner part of a [`RecordBatch`] that is protected by a header containing its length and a CRC checksum.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RecordBatchBody {
    pub last_offset_delta: i32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: ControlBatchOrRecords,
    pub compression: RecordBatchCompression,
    pub is_transactional: bool,
    pub timestamp_type: RecordBatchTimestampType,
}

/// The fields of a [`RecordBatchBody`] before its records.
#[derive(Debug)]
struct BodyHeader {
    last_offset_delta: i32,
    first_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    compression: RecordBatchCompression,
    timestamp_type: RecordBatchTimestampType,
    is_transactional: bool,
    is_control: bool,
    n_records: usize,
}

impl<R> ReadType<R> for BodyHeader
where
    R: Read,
{
    fn read(reader: &mut R) -> Result<Self, ReadError> {
        // attributes
        let attributes = Int16::read(reader)?.0;
        let compression = match attributes & 0x7 {
            0 => RecordBatchCompression::NoCompression,
            1 => RecordBatchCompression::Gzip,
            2 => RecordBatchCompression::Snappy,
            3 => RecordBatchCompression::Lz4,
            4 => RecordBatchCompression::Zstd,
            other => {
                return Err(ReadError::Malformed(
                    format!("Invalid compression type: {}", other).into(),
                ));
            }
        };
        let timestamp_type = if ((attributes >> 3) & 0x1) == 0 {
            RecordBatchTimestampType::CreateTime
        } else {
            RecordBatchTimestampType::LogAppendTime
        };
        let is_transactional = ((attributes >> 4) & 0x1) == 1;
        let is_control = ((attributes >> 5) & 0x1) == 1;

        // lastOffsetDelta
        let last_offset_delta = Int32::read(reader)?.0;

        // firstTimestamp
        let first_timestamp = Int64::read(reader)?.0;

        // maxTimestamp
        let max_timestamp = Int64::read(reader)?.0;

        // producerId
        let producer_id = Int64::read(reader)?.0;

        // producerEpoch
        let producer_epoch = Int16::read(reader)?.0;

        // baseSequence
        let base_sequence = Int32::read(reader)?.0;

        // records
        let n_records = match Int32::read(reader)?.0 {
            -1 => 0,
            n => usize::try_from(n)?,
        };

        Ok(Self {
            last_offset_delta,
            first_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            compression,
            timestamp_type,
            is_transactional,
            is_control,
            n_records,
        })
    }
}

/// What a decoded record is counted as beyond its bytes on the wire: its
/// struct and the allocations of key, value and header list.
const RECORD_OVERHEAD: usize = std::mem::size_of::<Record>();

/// What a decoded header is counted as beyond its bytes on the wire.
const HEADER_OVERHEAD: usize = std::mem::size_of::<RecordHeader>();

/// PATCH(kafka-rs): the records of one batch as they decode, counted against
/// a limit: the bytes the decompressor yields plus [`RECORD_OVERHEAD`] per
/// record and [`HEADER_OVERHEAD`] per header. A compressed batch of a few
/// kilobytes (a "decompression bomb") otherwise decodes to gigabytes, and a
/// consumer that reaches it runs out of memory on every restart.
#[derive(Debug)]
struct DecodeLimit<R> {
    inner: R,
    limit: usize,
    used: usize,
    exceeded: bool,
}

impl<R> DecodeLimit<R> {
    fn new(inner: R, limit: usize) -> Self {
        Self {
            inner,
            limit,
            used: 0,
            exceeded: false,
        }
    }

    /// Counts `n` more decoded bytes.
    fn charge(&mut self, n: usize) -> Result<(), ReadError> {
        match self.used.checked_add(n).filter(|u| *u <= self.limit) {
            Some(used) => {
                self.used = used;
                Ok(())
            }
            None => {
                self.exceeded = true;
                Err(ReadError::DecodedSizeExceeded { limit: self.limit })
            }
        }
    }

    /// `result`, unless the limit was passed on the way: the decoders wrap
    /// the error of [`Read::read`] in their own.
    fn check<T>(&self, result: Result<T, ReadError>) -> Result<T, ReadError> {
        if self.exceeded {
            Err(ReadError::DecodedSizeExceeded { limit: self.limit })
        } else {
            result
        }
    }
}

impl<R: Read> Read for DecodeLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte more than is left, to see whether the data goes on.
        let left = self.limit - self.used;
        let want = buf.len().min(left.saturating_add(1));
        let n = self.inner.read(&mut buf[..want])?;
        if n > left {
            self.exceeded = true;
            return Err(std::io::Error::other("decoded size limit reached"));
        }
        self.used += n;
        Ok(n)
    }
}

fn read_records<R>(
    reader: &mut DecodeLimit<R>,
    is_control: bool,
    n_records: usize,
) -> Result<ControlBatchOrRecords, ReadError>
where
    R: Read,
{
    if is_control {
        // PATCH(kafka-rs): compaction can leave a control batch without its
        // record; Kafka writes one record per control batch, and like the
        // Java client the first one is what counts.
        let mut control = None;
        for _ in 0..n_records {
            let record = ControlBatchRecord::read(reader)?;
            reader.charge(RECORD_OVERHEAD)?;
            control.get_or_insert(record);
        }
        return Ok(match control {
            Some(c) => ControlBatchOrRecords::ControlBatch(c),
            None => ControlBatchOrRecords::Records(vec![]),
        });
    }
    // Never more room than the limit can hold records (the count is the
    // sender's word).
    let expected = n_records.min((reader.limit - reader.used) / RECORD_OVERHEAD + 1);
    let mut records = VecBuilder::new(expected);
    for _ in 0..n_records {
        let record = Record::read(reader)?;
        reader.charge(RECORD_OVERHEAD + record.headers.len() * HEADER_OVERHEAD)?;
        records.push(record);
    }
    Ok(ControlBatchOrRecords::Records(records.into()))
}

/// The base-2 logarithm of the largest zstd window a batch decoding to at
/// most `limit` bytes may ask for, or `None` for zstd's own default.
#[allow(dead_code)] // only used with compression-zstd
fn zstd_window_log_max(limit: usize) -> Option<u32> {
    // zstd's own bounds: ZSTD_WINDOWLOG_MIN 10, ZSTD_WINDOWLOG_MAX_64 31.
    (limit < 1 << 31).then(|| limit.next_power_of_two().trailing_zeros().clamp(10, 31))
}

/// PATCH(kafka-rs): decodes the `n_records` records that follow a batch's
/// header in `reader`, stopping with [`ReadError::DecodedSizeExceeded`] once
/// they decode to more than `limit` bytes (see [`DecodeLimit`]). Returns
/// the records and what they were counted as.
fn decode_records<R>(
    reader: &mut R,
    compression: RecordBatchCompression,
    is_control: bool,
    n_records: usize,
    limit: usize,
) -> Result<(ControlBatchOrRecords, usize), ReadError>
where
    R: Read,
{
    match compression {
        RecordBatchCompression::NoCompression => {
            let mut limited = DecodeLimit::new(reader, limit);
            let records = read_records(&mut limited, is_control, n_records);
            Ok((limited.check(records)?, limited.used))
        }
        #[cfg(feature = "compression-gzip")]
        RecordBatchCompression::Gzip => {
            use flate2::read::GzDecoder;

            let mut limited = DecodeLimit::new(GzDecoder::new(reader), limit);
            let records = read_records(&mut limited, is_control, n_records);
            let records = limited.check(records)?;

            let eof = ensure_eof(&mut limited, "Data left in gzip block");
            limited.check(eof)?;

            Ok((records, limited.used))
        }
        #[cfg(feature = "compression-lz4")]
        RecordBatchCompression::Lz4 => {
            use lz4::Decoder;

            let mut limited = DecodeLimit::new(Decoder::new(reader)?, limit);
            let records = read_records(&mut limited, is_control, n_records);
            let records = limited.check(records)?;

            // the lz4 decoder requires us to consume the whole inner stream until we reach EOF
            let eof = ensure_eof(&mut limited, "Data left in LZ4 block");
            limited.check(eof)?;

            let used = limited.used;
            let (_reader, res) = limited.inner.finish();
            res?;

            Ok((records, used))
        }
        #[cfg(feature = "compression-snappy")]
        RecordBatchCompression::Snappy => {
            use crate::protocol::vec_builder::DEFAULT_BLOCK_SIZE;

            // Construct the input for the raw decoder.
            let mut input = vec![];
            reader.read_to_end(&mut input)?;

            const JAVA_MAGIC: &[u8] = &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

            // There are "normal" compression libs, and there is Java
            // See https://github.com/edenhill/librdkafka/blob/2b76b65212e5efda213961d5f84e565038036270/src/rdkafka_msgset_reader.c#L307-L318
            let output = if input.starts_with(JAVA_MAGIC) {
                let cursor_content = &input[JAVA_MAGIC.len()..];
                let mut cursor = Cursor::new(cursor_content);

                let mut buf_version = [0u8; 4];
                cursor.read_exact(&mut buf_version)?;
                if buf_version != [0, 0, 0, 1] {
                    return Err(ReadError::Malformed(
                        format!("Detected Java-specific Snappy compression, but got unknown version: {buf_version:?}").into(),
                    ));
                }

                let mut buf_compatible = [0u8; 4];
                cursor.read_exact(&mut buf_compatible)?;
                if buf_compatible != [0, 0, 0, 1] {
                    return Err(ReadError::Malformed(
                        format!("Detected Java-specific Snappy compression, but got unknown compat flags: {buf_compatible:?}").into(),
                    ));
                }

                let mut output = vec![];
                while cursor.position() < cursor.get_ref().len() as u64 {
                    let mut buf_chunk_length = [0u8; 4];
                    cursor.read_exact(&mut buf_chunk_length)?;
                    let chunk_length = u32::from_be_bytes(buf_chunk_length) as usize;
                    let bytes_left = cursor_content.len() - (cursor.position() as usize);
                    if chunk_length > bytes_left {
                        // do NOT try to allocate massive buffer for `chunk_data` but instead fail early
                        return Err(ReadError::Malformed(format!("Java-specific Snappy-compressed data has illegal chunk length, got {chunk_length} bytes but only {bytes_left} bytes are left.").into()));
                    }

                    let mut chunk_data = vec![0u8; chunk_length];
                    cursor.read_exact(&mut chunk_data)?;

                    let mut buf = carefully_decompress_snappy(
                        &chunk_data,
                        DEFAULT_BLOCK_SIZE,
                        limit - output.len(),
                    )
                    .map_err(|e| match e {
                        ReadError::DecodedSizeExceeded { .. } => {
                            ReadError::DecodedSizeExceeded { limit }
                        }
                        e => e,
                    })?;
                    output.append(&mut buf);
                }

                output
            } else {
                carefully_decompress_snappy(&input, DEFAULT_BLOCK_SIZE, limit)?
            };

            // Read uncompressed records.
            let mut limited = DecodeLimit::new(Cursor::new(output), limit);
            let records = read_records(&mut limited, is_control, n_records);
            let records = limited.check(records)?;

            // Check that there's no data left within the uncompressed block.
            let eof = ensure_eof(&mut limited, "Data left in Snappy block");
            limited.check(eof)?;

            Ok((records, limited.used))
        }
        #[cfg(feature = "compression-zstd")]
        RecordBatchCompression::Zstd => {
            use zstd::Decoder;

            let mut decoder = Decoder::new(reader)?;
            // The window is allocated before anything is decoded: never more
            // than the limit allows.
            if let Some(log) = zstd_window_log_max(limit) {
                decoder.window_log_max(log)?;
            }
            let mut limited = DecodeLimit::new(decoder, limit);
            let records = read_records(&mut limited, is_control, n_records);
            let records = limited
                .check(records)
                .map_err(|e| zstd_window_error(e, limit))?;

            let eof = ensure_eof(&mut limited, "Data left in zstd block");
            limited
                .check(eof)
                .map_err(|e| zstd_window_error(e, limit))?;

            Ok((records, limited.used))
        }
        #[allow(unreachable_patterns)]
        _ => Err(ReadError::Malformed(
            format!("Unimplemented compression: {:?}", compression).into(),
        )),
    }
}

/// zstd refuses a frame whose window is over `window_log_max` with this
/// error ("Frame requires too much memory for decoding"): that batch
/// decodes to too much.
#[cfg(feature = "compression-zstd")]
fn zstd_window_error(e: ReadError, limit: usize) -> ReadError {
    let too_large = |e: &std::io::Error| e.to_string().contains("too much memory");
    match e {
        ReadError::IO(ref io) if too_large(io) => ReadError::DecodedSizeExceeded { limit },
        e => e,
    }
}

impl<R> ReadType<R> for RecordBatchBody
where
    R: Read,
{
    fn read(reader: &mut R) -> Result<Self, ReadError> {
        let header = BodyHeader::read(reader)?;
        let (records, _) = decode_records(
            reader,
            header.compression,
            header.is_control,
            header.n_records,
            usize::MAX,
        )?;

        Ok(Self {
            last_offset_delta: header.last_offset_delta,
            first_timestamp: header.first_timestamp,
            max_timestamp: header.max_timestamp,
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            compression: header.compression,
            timestamp_type: header.timestamp_type,
            is_transactional: header.is_transactional,
            records,
        })
    }
}

impl<W> WriteType<W> for RecordBatchBody
where
    W: Write,
{
    fn write(&self, writer: &mut W) -> Result<(), WriteError> {
        let body_ref = RecordBatchBodyRef {
            last_offset_delta: self.last_offset_delta,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            records: &self.records,
            compression: self.compression,
            is_transactional: self.is_transactional,
            timestamp_type: self.timestamp_type,
        };
        body_ref.write(writer)
    }
}

/// Same as [`RecordBatchBody`] but contains referenced data.
///
/// This only supports writing.
#[derive(Debug)]
struct RecordBatchBodyRef<'a> {
    pub last_offset_delta: i32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: &'a ControlBatchOrRecords,
    pub compression: RecordBatchCompression,
    pub is_transactional: bool,
    pub timestamp_type: RecordBatchTimestampType,
}

impl RecordBatchBodyRef<'_> {
    fn write_records<W>(writer: &mut W, records: &ControlBatchOrRecords) -> Result<(), WriteError>
    where
        W: Write,
    {
        match records {
            ControlBatchOrRecords::ControlBatch(control_batch) => control_batch.write(writer),
            ControlBatchOrRecords::Records(records) => {
                for record in records {
                    record.write(writer)?;
                }
                Ok(())
            }
        }
    }
}

impl<W> WriteType<W> for RecordBatchBodyRef<'_>
where
    W: Write,
{
    fn write(&self, writer: &mut W) -> Result<(), WriteError> {
        // attributes
        let mut attributes: i16 = match self.compression {
            RecordBatchCompression::NoCompression => 0,
            RecordBatchCompression::Gzip => 1,
            RecordBatchCompression::Snappy => 2,
            RecordBatchCompression::Lz4 => 3,
            RecordBatchCompression::Zstd => 4,
        };
        match self.timestamp_type {
            RecordBatchTimestampType::CreateTime => (),
            RecordBatchTimestampType::LogAppendTime => {
                attributes |= 1 << 3;
            }
        }
        if self.is_transactional {
            attributes |= 1 << 4;
        }
        if matches!(self.records, ControlBatchOrRecords::ControlBatch(_)) {
            attributes |= 1 << 5;
        }
        Int16(attributes).write(writer)?;

        // lastOffsetDelta
        Int32(self.last_offset_delta).write(writer)?;

        // firstTimestamp
        Int64(self.first_timestamp).write(writer)?;

        // maxTimestamp
        Int64(self.max_timestamp).write(writer)?;

        // producerId
        Int64(self.producer_id).write(writer)?;

        // producerEpoch
        Int16(self.producer_epoch).write(writer)?;

        // baseSequence
        Int32(self.base_sequence).write(writer)?;

        // records
        let n_records = match &self.records {
            ControlBatchOrRecords::ControlBatch(_) => 1,
            ControlBatchOrRecords::Records(records) => records.len(),
        };
        Int32(i32::try_from(n_records)?).write(writer)?;
        match self.compression {
            RecordBatchCompression::NoCompression => {
                Self::write_records(writer, self.records)?;
            }
            #[cfg(feature = "compression-gzip")]
            RecordBatchCompression::Gzip => {
                use flate2::{Compression, write::GzEncoder};

                let mut encoder = GzEncoder::new(writer, Compression::default());
                Self::write_records(&mut encoder, self.records)?;
                encoder.finish()?;
            }
            #[cfg(feature = "compression-lz4")]
            RecordBatchCompression::Lz4 => {
                use lz4::{EncoderBuilder, liblz4::BlockMode};

                let mut encoder = EncoderBuilder::new()
                    .block_mode(
                        // the only one supported by Kafka
                        BlockMode::Independent,
                    )
                    .build(writer)?;
                Self::write_records(&mut encoder, self.records)?;
                let (_writer, res) = encoder.finish();
                res?;
            }
            #[cfg(feature = "compression-snappy")]
            RecordBatchCompression::Snappy => {
                use snap::raw::{Encoder, max_compress_len};

                let mut input = vec![];
                Self::write_records(&mut input, self.records)?;

                let mut encoder = Encoder::new();
                let mut output = vec![0; max_compress_len(input.len())];
                let len = encoder
                    .compress(&input, &mut output)
                    .map_err(|e| WriteError::Malformed(Box::new(e)))?;

                writer.write_all(&output[..len])?;
            }
            #[cfg(feature = "compression-zstd")]
            RecordBatchCompression::Zstd => {
                use zstd::Encoder;

                let mut encoder = Encoder::new(writer, 0)?;
                Self::write_records(&mut encoder, self.records)?;
                encoder.finish()?;
            }
            #[allow(unreachable_patterns)]
            _ => {
                return Err(WriteError::Malformed(
                    format!("Unimplemented compression: {:?}", self.compression).into(),
                ));
            }
        }

        Ok(())
    }
}

/// Ensure that given reader is at EOF.
#[allow(dead_code)] // only use by some features
fn ensure_eof<R>(reader: &mut R, msg: &str) -> Result<(), ReadError>
where
    R: Read,
{
    let mut buf = [0u8; 1];
    match reader.read(&mut buf) {
        Ok(0) => Ok(()),
        Ok(_) => Err(ReadError::Malformed(msg.to_string().into())),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
        Err(e) => Err(ReadError::IO(e)),
    }
}

/// Try to decompress a snappy message without blindly believing the uncompressed size encoded at the start of the
/// message (and therefore potentially OOMing).
#[cfg(feature = "compression-snappy")]
fn carefully_decompress_snappy(
    input: &[u8],
    start_block_size: usize,
    max_uncompressed_size: usize,
) -> Result<Vec<u8>, ReadError> {
    use crate::protocol::primitives::UnsignedVarint;
    use snap::raw::{Decoder, decompress_len};

    // early exit, otherwise `uncompressed_size_encoded_length` will be 1 even though there was no input
    if input.is_empty() {
        return Err(ReadError::Malformed(Box::new(snap::Error::Empty)));
    }

    // The snappy compression used here is unframed aka "raw". So we first need to figure out the
    // uncompressed length. See
    //
    // - https://github.com/edenhill/librdkafka/blob/2b76b65212e5efda213961d5f84e565038036270/src/rdkafka_msgset_reader.c#L345-L348
    // - https://github.com/edenhill/librdkafka/blob/747f77c98fbddf7dc6508f76398e0fc9ee91450f/src/snappy.c#L779
    let uncompressed_size = decompress_len(input).map_err(|e| ReadError::Malformed(Box::new(e)))?;
    // PATCH(kafka-rs): the header states the size; more than the caller
    // allows is refused before anything is allocated.
    if uncompressed_size > max_uncompressed_size {
        return Err(ReadError::DecodedSizeExceeded {
            limit: max_uncompressed_size,
        });
    }

    // figure out how long the encoded size was
    let uncompressed_size_encoded_length = {
        let mut buf = Vec::with_capacity(100);
        UnsignedVarint(uncompressed_size as u64)
            .write(&mut buf)
            .expect("this write should never fail");
        buf.len()
    };

    // Decode snappy payload.
    // The uncompressed length is unchecked and can be up to 2^32-1 bytes. To avoid a DDoS vector we try to
    // limit it to a small size and if that fails we double that size;
    let mut max_uncompressed_size = start_block_size;

    // Try to decode the message with growing output buffers.
    loop {
        let try_uncompressed_size = uncompressed_size.min(max_uncompressed_size);

        // We need to lie to the snap decoder about the target length, otherwise it will reject our shortened test
        // straight away. Luckily that's rather easy and we just need fake the length stored right at the beginning of
        // the message.
        let try_input = {
            let mut buf = Cursor::new(Vec::with_capacity(input.len()));
            UnsignedVarint(try_uncompressed_size as u64)
                .write(&mut buf)
                .expect("this write should never fail");
            buf.write_all(&input[uncompressed_size_encoded_length..])
                .expect("this write should never fail");
            buf.into_inner()
        };

        let mut decoder = Decoder::new();
        let mut output = vec![0; try_uncompressed_size];
        let actual_uncompressed_size = match decoder.decompress(&try_input, &mut output) {
            Ok(size) => size,
            Err(e) => {
                let looks_like_dst_too_small = match e {
                    // `CopyWrite` only occurs when the dst buffer is too small.
                    snap::Error::CopyWrite { .. } => true,

                    // `Literal` may occur due to src or dst errors, so need to check
                    snap::Error::Literal {
                        len,
                        dst_len,
                        src_len,
                    } => (dst_len < len) && (src_len >= len),

                    // `HeaderMismatch` may also occur when the output was smaller than we predicted, in which case the
                    // header would actually be broken
                    snap::Error::HeaderMismatch {
                        expected_len,
                        got_len,
                    } => expected_len < got_len,

                    // `BufferTooSmall` cannot happed by construction, because we just allocated the right buffer
                    snap::Error::BufferTooSmall { .. } => {
                        unreachable!("Just allocated a correctly-sized output buffer.")
                    }

                    // `Offset` does NOT occur due undersized dst but due to invalid offset calculations. Instead
                    // `CopyWrite` would be used.
                    snap::Error::Offset { .. } => false,

                    // All other errors are real errors
                    _ => false,
                };
                let used_smaller_dst = max_uncompressed_size < uncompressed_size;

                if looks_like_dst_too_small && used_smaller_dst {
                    // try larger buffer
                    max_uncompressed_size *= 2;
                    continue;
                } else {
                    return Err(ReadError::Malformed(Box::new(e)));
                }
            }
        };
        if actual_uncompressed_size != uncompressed_size {
            return Err(ReadError::Malformed(
                "broken snappy data".to_string().into(),
            ));
        }

        break Ok(output);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use crate::protocol::test_utils::test_roundtrip;

    use super::*;

    use assert_matches::assert_matches;

    test_roundtrip!(RecordHeader, test_record_header_roundtrip);

    test_roundtrip!(Record, test_record_roundtrip);

    test_roundtrip!(ControlBatchRecord, test_control_batch_record_roundtrip);

    /// A control record as Kafka writes it: `key` version and type, an end
    /// transaction marker's value.
    fn control_record(key: &[u8]) -> Vec<u8> {
        let mut buf = vec![];
        Record {
            timestamp_delta: 0,
            offset_delta: 0,
            key: Some(key.to_vec()),
            value: Some(vec![0; 6]),
            headers: vec![],
        }
        .write(&mut buf)
        .unwrap();
        buf
    }

    #[test]
    fn test_control_batch_record_reads_the_record_framing() {
        for (key, expected) in [
            ([0, 0, 0, 0], ControlBatchRecord::Abort),
            ([0, 0, 0, 1], ControlBatchRecord::Commit),
            // KRaft's control records (leader change, snapshot header, …)
            ([0, 0, 0, 2], ControlBatchRecord::Other(2)),
            ([0, 0, 0, 6], ControlBatchRecord::Other(6)),
            // like the Java client, a later version is read as version 0
            ([0, 1, 0, 1], ControlBatchRecord::Commit),
        ] {
            let data = control_record(&key);
            let mut buf = Cursor::new(data.clone());
            assert_eq!(ControlBatchRecord::read(&mut buf).unwrap(), expected);
            assert_eq!(
                buf.position(),
                data.len() as u64,
                "the whole record is read"
            );
        }
    }

    #[test]
    fn test_control_batch_record_malformed_key() {
        let err = ControlBatchRecord::read(&mut Cursor::new(control_record(&[0xff, 0xff, 0, 0])))
            .unwrap_err();
        assert_matches!(err, ReadError::Malformed(_));
        assert_eq!(
            err.to_string(),
            "Malformed data: Unknown control batch record version: -1",
        );

        let err =
            ControlBatchRecord::read(&mut Cursor::new(control_record(&[0, 0, 0]))).unwrap_err();
        assert_matches!(err, ReadError::Malformed(_));
        assert_eq!(
            err.to_string(),
            "Malformed data: Control record key has 3 bytes, expected at least 4",
        );
    }

    #[test]
    fn test_decode_fixture_transaction_markers() {
        // A commit marker (offset 8) and an abort marker (offset 16) from the log segment of a Kafka 4.4 broker,
        // written for transactions of the Java producer (the bytes rskafka 0.6 read as "version 8192").
        let commit = hex(
            "0000000000000008000000420000000002b89c0a9d003000000000000001a225531a12000001a225531a1200000000000000060001ffffffff000000012000000008000000010c00000000000000",
        );
        let abort = hex(
            "0000000000000010000000420000000002254f1eb4003000000000000001a225531a29000001a225531a2900000000000000060002ffffffff000000012000000008000000000c00000000000000",
        );

        let batch = RecordBatch::read(&mut Cursor::new(commit.clone())).unwrap();
        assert_eq!(batch.base_offset, 8);
        assert_eq!(batch.producer_id, 6);
        assert!(batch.is_transactional);
        assert_eq!(
            batch.records,
            ControlBatchOrRecords::ControlBatch(ControlBatchRecord::Commit)
        );
        let mut again = vec![];
        batch.write(&mut again).unwrap();
        assert_eq!(again, commit, "written back byte for byte");

        let raw = RawRecordBatch::read(&mut Cursor::new(abort)).unwrap();
        assert!(raw.is_control && raw.is_transactional);
        assert_eq!(
            (raw.base_offset, raw.last_offset(), raw.next_offset()),
            (16, 16, 17)
        );
        assert_eq!(
            raw.decode(usize::MAX).unwrap().0.records,
            ControlBatchOrRecords::ControlBatch(ControlBatchRecord::Abort)
        );
    }

    /// A batch with `body` (attributes onwards) and a correct length and CRC.
    fn framed_batch(base_offset: i64, body: &[u8]) -> Vec<u8> {
        let mut out = vec![];
        Int64(base_offset).write(&mut out).unwrap();
        Int32(body.len() as i32 + 9).write(&mut out).unwrap();
        Int32(0).write(&mut out).unwrap();
        Int8(2).write(&mut out).unwrap();
        out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// The body of a batch: header fields, then `n_records` and `records` as they are.
    fn batch_body(
        attributes: i16,
        last_offset_delta: i32,
        n_records: i32,
        records: &[u8],
    ) -> Vec<u8> {
        let mut body = vec![];
        Int16(attributes).write(&mut body).unwrap();
        Int32(last_offset_delta).write(&mut body).unwrap();
        Int64(0).write(&mut body).unwrap();
        Int64(0).write(&mut body).unwrap();
        Int64(7).write(&mut body).unwrap();
        Int16(0).write(&mut body).unwrap();
        Int32(0).write(&mut body).unwrap();
        Int32(n_records).write(&mut body).unwrap();
        body.extend_from_slice(records);
        body
    }

    #[test]
    fn test_control_batch_without_record() {
        // Compaction can keep a transactional control batch's header without its record.
        let data = framed_batch(40, &batch_body(0x30, 0, 0, &[]));
        let raw = RawRecordBatch::read(&mut Cursor::new(data)).unwrap();
        assert!(raw.is_control);
        assert_eq!(raw.next_offset(), 41);
        let (batch, size) = raw.decode(usize::MAX).unwrap();
        assert_eq!(batch.records, ControlBatchOrRecords::Records(vec![]));
        assert_eq!(size, 0);
    }

    #[test]
    fn test_batch_header_cut_short_is_malformed() {
        // CRC-valid, but the body ends inside the header: not a batch cut off by the fetch size, which a fetch
        // leaves out silently.
        let body = batch_body(0, 0, 1, &[]);
        let data = framed_batch(0, &body[..20]);
        let err = RawRecordBatch::read(&mut Cursor::new(data)).unwrap_err();
        assert_matches!(err, ReadError::Malformed(_));
    }

    /// A batch of `n` records with `value_len` zero bytes each, compressed with `compression`.
    fn zeros_batch(compression: RecordBatchCompression, n: usize, value_len: usize) -> Vec<u8> {
        let batch = RecordBatch {
            base_offset: 0,
            partition_leader_epoch: 0,
            last_offset_delta: n as i32 - 1,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: ControlBatchOrRecords::Records(
                (0..n)
                    .map(|i| Record {
                        timestamp_delta: 0,
                        offset_delta: i as i32,
                        key: None,
                        value: Some(vec![0; value_len]),
                        headers: vec![],
                    })
                    .collect(),
            ),
            compression,
            is_transactional: false,
            timestamp_type: RecordBatchTimestampType::CreateTime,
        };
        let mut data = vec![];
        batch.write(&mut data).unwrap();
        data
    }

    const MIB: usize = 1 << 20;

    fn codecs() -> Vec<RecordBatchCompression> {
        let mut out = vec![RecordBatchCompression::NoCompression];
        #[cfg(feature = "compression-gzip")]
        out.push(RecordBatchCompression::Gzip);
        #[cfg(feature = "compression-lz4")]
        out.push(RecordBatchCompression::Lz4);
        #[cfg(feature = "compression-snappy")]
        out.push(RecordBatchCompression::Snappy);
        #[cfg(feature = "compression-zstd")]
        out.push(RecordBatchCompression::Zstd);
        out
    }

    #[test]
    fn test_decode_stops_at_the_limit_in_every_codec() {
        for compression in codecs() {
            let data = zeros_batch(compression, 1, 4 * MIB);
            let raw = RawRecordBatch::read(&mut Cursor::new(data)).unwrap();
            if compression != RecordBatchCompression::NoCompression {
                assert!(raw.records.len() < MIB / 4, "{compression:?} compresses");
            }

            let err = raw.decode(MIB).unwrap_err();
            assert_matches!(err, ReadError::DecodedSizeExceeded { limit } if limit == MIB, "{compression:?}");
            assert_eq!(
                err.to_string(),
                "Record batch decodes to more than 1048576 bytes"
            );

            let (batch, size) = raw.decode(5 * MIB).unwrap();
            assert!(
                (4 * MIB..4 * MIB + 100).contains(&(size - RECORD_OVERHEAD)),
                "{compression:?}: {size}"
            );
            let ControlBatchOrRecords::Records(records) = batch.records else {
                panic!("records expected");
            };
            assert_eq!(records[0].value.as_ref().map(Vec::len), Some(4 * MIB));

            // exactly what it decodes to is enough
            assert!(raw.decode(size).is_ok(), "{compression:?}");
            assert_matches!(
                raw.decode(size - 1),
                Err(ReadError::DecodedSizeExceeded { .. })
            );
        }
    }

    #[test]
    fn test_decode_limit_counts_records_not_only_bytes() {
        // 200 000 empty records: 1.4 MB on the wire, many times that in memory.
        for compression in codecs() {
            let data = zeros_batch(compression, 200_000, 0);
            let raw = RawRecordBatch::read(&mut Cursor::new(data)).unwrap();
            assert_matches!(
                raw.decode(4 * MIB),
                Err(ReadError::DecodedSizeExceeded { .. }),
                "{compression:?}"
            );
            let (_, size) = raw.decode(usize::MAX).unwrap();
            assert!(size >= 200_000 * RECORD_OVERHEAD, "{compression:?}: {size}");
        }
    }

    #[cfg(feature = "compression-zstd")]
    #[test]
    fn test_decode_refuses_a_zstd_window_over_the_limit() {
        // A frame that asks for a 128 MiB window: the decoder would allocate it before decoding a byte.
        let mut records = vec![];
        let mut encoder = zstd::Encoder::new(&mut records, 1).unwrap();
        encoder.window_log(27).unwrap();
        encoder.include_contentsize(false).unwrap();
        Record {
            timestamp_delta: 0,
            offset_delta: 0,
            key: None,
            value: Some(vec![1; 1000]),
            headers: vec![],
        }
        .write(&mut encoder)
        .unwrap();
        encoder.finish().unwrap();
        let data = framed_batch(0, &batch_body(4, 0, 1, &records));
        let raw = RawRecordBatch::read(&mut Cursor::new(data)).unwrap();

        assert_matches!(
            raw.decode(MIB),
            Err(ReadError::DecodedSizeExceeded { limit }) if limit == MIB
        );
        assert!(
            raw.decode(usize::MAX).is_ok(),
            "zstd's default maximum allows it"
        );
    }

    #[test]
    fn test_zstd_window_log_max() {
        assert_eq!(zstd_window_log_max(0), Some(10));
        assert_eq!(zstd_window_log_max(MIB), Some(20));
        assert_eq!(zstd_window_log_max(MIB + 1), Some(21));
        assert_eq!(zstd_window_log_max(32 * MIB), Some(25));
        assert_eq!(zstd_window_log_max((1 << 31) - 1), Some(31));
        assert_eq!(zstd_window_log_max(1 << 31), None);
        assert_eq!(zstd_window_log_max(usize::MAX), None);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    test_roundtrip!(RecordBatchBody, test_record_batch_body_roundtrip);

    test_roundtrip!(RecordBatch, test_record_batch_roundtrip);

    #[test]
    fn test_decode_fixture_nocompression() {
        // This data was obtained by watching rdkafka.
        let data = [
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x4b\x00\x00\x00\x00".to_vec(),
            b"\x02\x27\x24\xfe\xcd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x61".to_vec(),
            b"\xd5\x9b\x77\x00\x00\x00\x00\x61\xd5\x9b\x77\xff\xff\xff\xff\xff".to_vec(),
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x01\x32\x00\x00".to_vec(),
            b"\x00\x00\x16\x68\x65\x6c\x6c\x6f\x20\x6b\x61\x66\x6b\x61\x02\x06".to_vec(),
            b"\x66\x6f\x6f\x06\x62\x61\x72".to_vec(),
        ]
        .concat();

        let actual = RecordBatch::read(&mut Cursor::new(data.clone())).unwrap();
        let expected = RecordBatch {
            base_offset: 0,
            partition_leader_epoch: 0,
            last_offset_delta: 0,
            first_timestamp: 1641388919,
            max_timestamp: 1641388919,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: ControlBatchOrRecords::Records(vec![Record {
                timestamp_delta: 0,
                offset_delta: 0,
                key: Some(vec![]),
                value: Some(b"hello kafka".to_vec()),
                headers: vec![RecordHeader {
                    key: "foo".to_owned(),
                    value: b"bar".to_vec(),
                }],
            }]),
            compression: RecordBatchCompression::NoCompression,
            is_transactional: false,
            timestamp_type: RecordBatchTimestampType::CreateTime,
        };
        assert_eq!(actual, expected);

        let mut data2 = vec![];
        actual.write(&mut data2).unwrap();
        assert_eq!(data, data2);
    }

    #[cfg(feature = "compression-gzip")]
    #[test]
    fn test_decode_fixture_gzip() {
        // This data was obtained by watching rdkafka.
        let data = [
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x64\x00\x00\x00\x00".to_vec(),
            b"\x02\xba\x41\x46\x65\x00\x01\x00\x00\x00\x00\x00\x00\x01\x7e\x90".to_vec(),
            b"\xb3\x34\x67\x00\x00\x01\x7e\x90\xb3\x34\x67\xff\xff\xff\xff\xff".to_vec(),
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x01\x1f\x8b\x08".to_vec(),
            b"\x00\x00\x00\x00\x00\x00\x03\xfb\xc3\xc8\xc0\xc0\x70\x82\xb1\x82".to_vec(),
            b"\x0e\x40\x2c\x23\x35\x27\x27\x5f\x21\x3b\x31\x2d\x3b\x91\x89\x2d".to_vec(),
            b"\x2d\x3f\x9f\x2d\x29\xb1\x08\x00\xe4\xcd\xba\x1f\x80\x00\x00\x00".to_vec(),
        ]
        .concat();

        let actual = RecordBatch::read(&mut Cursor::new(data)).unwrap();
        let expected = RecordBatch {
            base_offset: 0,
            partition_leader_epoch: 0,
            last_offset_delta: 0,
            first_timestamp: 1643105170535,
            max_timestamp: 1643105170535,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: ControlBatchOrRecords::Records(vec![Record {
                timestamp_delta: 0,
                offset_delta: 0,
                key: Some(vec![b'x'; 100]),
                value: Some(b"hello kafka".to_vec()),
                headers: vec![RecordHeader {
                    key: "foo".to_owned(),
                    value: b"bar".to_vec(),
                }],
            }]),
            compression: RecordBatchCompression::Gzip,
            is_transactional: false,
            timestamp_type: RecordBatchTimestampType::CreateTime,
        };
        assert_eq!(actual, expected);

        let mut data2 = vec![];
        actual.write(&mut data2).unwrap();

        // don't compare if the data is equal because compression encoder might work slightly differently, use another
        // roundtrip instead
        let actual2 = RecordBatch::read(&mut Cursor::new(data2)).unwrap();
        assert_eq!(actual2, expected);
    }

    #[cfg(feature = "compression-lz4")]
    #[test]
    fn test_decode_fixture_lz4() {
        // This data was obtained by watching rdkafka.
        let data = [
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x63\x00\x00\x00\x00".to_vec(),
            b"\x02\x1b\xa5\x92\x35\x00\x03\x00\x00\x00\x00\x00\x00\x01\x7e\xb1".to_vec(),
            b"\x1f\xc7\x24\x00\x00\x01\x7e\xb1\x1f\xc7\x24\xff\xff\xff\xff\xff".to_vec(),
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x01\x04\x22\x4d".to_vec(),
            b"\x18\x60\x40\x82\x23\x00\x00\x00\x8f\xfc\x01\x00\x00\x00\xc8\x01".to_vec(),
            b"\x78\x01\x00\x50\xf0\x06\x16\x68\x65\x6c\x6c\x6f\x20\x6b\x61\x66".to_vec(),
            b"\x6b\x61\x02\x06\x66\x6f\x6f\x06\x62\x61\x72\x00\x00\x00\x00".to_vec(),
        ]
        .concat();

        let actual = RecordBatch::read(&mut Cursor::new(data)).unwrap();
        let expected = RecordBatch {
            base_offset: 0,
            partition_leader_epoch: 0,
            last_offset_delta: 0,
            first_timestamp: 1643649156900,
            max_timestamp: 1643649156900,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: ControlBatchOrRecords::Records(vec![Record {
                timestamp_delta: 0,
                offset_delta: 0,
                key: Some(vec![b'x'; 100]),
                value: Some(b"hello kafka".to_vec()),
                headers: vec![RecordHeader {
                    key: "foo".to_owned(),
                    value: b"bar".to_vec(),
                }],
            }]),
            compression: RecordBatchCompression::Lz4,
            is_transactional: false,
            timestamp_type: RecordBatchTimestampType::CreateTime,
        };
        assert_eq!(actual, expected);

        let mut data2 = vec![];
        actual.write(&mut data2).unwrap();

        // don't compare if the data is equal because compression encoder might work slightly differently, use another
        // roundtrip instead
        let actual2 = RecordBatch::read(&mut Cursor::new(data2)).unwrap();
        assert_eq!(actual2, expected);
    }

    #[cfg(feature = "compression-snappy")]
    mod snappy {
        use super::*;

        #[test]
        fn test_decode_fixture_snappy() {
            // This data was obtained by watching rdkafka.
            let data = [
                b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x58\x00\x00\x00\x00".to_vec(),
                b"\x02\xad\x86\xf4\xf4\x00\x02\x00\x00\x00\x00\x00\x00\x01\x7e\xb6".to_vec(),
                b"\x45\x0e\x52\x00\x00\x01\x7e\xb6\x45\x0e\x52\xff\xff\xff\xff\xff".to_vec(),
                b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x01\x80\x01\x1c".to_vec(),
                b"\xfc\x01\x00\x00\x00\xc8\x01\x78\xfe\x01\x00\x8a\x01\x00\x50\x16".to_vec(),
                b"\x68\x65\x6c\x6c\x6f\x20\x6b\x61\x66\x6b\x61\x02\x06\x66\x6f\x6f".to_vec(),
                b"\x06\x62\x61\x72".to_vec(),
            ]
            .concat();

            let actual = RecordBatch::read(&mut Cursor::new(data)).unwrap();
            let expected = RecordBatch {
                base_offset: 0,
                partition_leader_epoch: 0,
                last_offset_delta: 0,
                first_timestamp: 1643735486034,
                max_timestamp: 1643735486034,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                records: ControlBatchOrRecords::Records(vec![Record {
                    timestamp_delta: 0,
                    offset_delta: 0,
                    key: Some(vec![b'x'; 100]),
                    value: Some(b"hello kafka".to_vec()),
                    headers: vec![RecordHeader {
                        key: "foo".to_owned(),
                        value: b"bar".to_vec(),
                    }],
                }]),
                compression: RecordBatchCompression::Snappy,
                is_transactional: false,
                timestamp_type: RecordBatchTimestampType::CreateTime,
            };
            assert_eq!(actual, expected);

            let mut data2 = vec![];
            actual.write(&mut data2).unwrap();

            // don't compare if the data is equal because compression encoder might work slightly differently, use another
            // roundtrip instead
            let actual2 = RecordBatch::read(&mut Cursor::new(data2)).unwrap();
            assert_eq!(actual2, expected);
        }

        #[test]
        fn test_decode_fixture_snappy_java() {
            // This data was obtained by watching Kafka returning a recording to rskafka that was produced by the official
            // Java client.
            let data = [
                b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x00\x00\x00\x00".to_vec(),
                b"\x02\x79\x1e\x2d\xce\x00\x02\x00\x00\x00\x01\x00\x00\x01\x7f\x07".to_vec(),
                b"\x25\x7a\xb1\x00\x00\x01\x7f\x07\x25\x7a\xb1\xff\xff\xff\xff\xff".to_vec(),
                b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x02\x82\x53\x4e".to_vec(),
                b"\x41\x50\x50\x59\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00".to_vec(),
                b"\x47\xff\x01\x1c\xfc\x01\x00\x00\x00\xc8\x01\x78\xfe\x01\x00\x8a".to_vec(),
                b"\x01\x00\x64\x16\x68\x65\x6c\x6c\x6f\x20\x6b\x61\x66\x6b\x61\x02".to_vec(),
                b"\x06\x66\x6f\x6f\x06\x62\x61\x72\xfa\x01\x00\x00\x02\xfe\x80\x00".to_vec(),
                b"\x96\x80\x00\x4c\x14\x73\x6f\x6d\x65\x20\x76\x61\x6c\x75\x65\x02".to_vec(),
                b"\x06\x66\x6f\x6f\x06\x62\x61\x72".to_vec(),
            ]
            .concat();

            let actual = RecordBatch::read(&mut Cursor::new(data)).unwrap();
            let expected = RecordBatch {
                base_offset: 0,
                partition_leader_epoch: 0,
                last_offset_delta: 1,
                first_timestamp: 1645092371121,
                max_timestamp: 1645092371121,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                records: ControlBatchOrRecords::Records(vec![
                    Record {
                        timestamp_delta: 0,
                        offset_delta: 0,
                        key: Some(vec![b'x'; 100]),
                        value: Some(b"hello kafka".to_vec()),
                        headers: vec![RecordHeader {
                            key: "foo".to_owned(),
                            value: b"bar".to_vec(),
                        }],
                    },
                    Record {
                        timestamp_delta: 0,
                        offset_delta: 1,
                        key: Some(vec![b'x'; 100]),
                        value: Some(b"some value".to_vec()),
                        headers: vec![RecordHeader {
                            key: "foo".to_owned(),
                            value: b"bar".to_vec(),
                        }],
                    },
                ]),
                compression: RecordBatchCompression::Snappy,
                is_transactional: false,
                timestamp_type: RecordBatchTimestampType::CreateTime,
            };
            assert_eq!(actual, expected);

            let mut data2 = vec![];
            actual.write(&mut data2).unwrap();

            // don't compare if the data is equal because compression encoder might work slightly differently, use another
            // roundtrip instead
            let actual2 = RecordBatch::read(&mut Cursor::new(data2)).unwrap();
            assert_eq!(actual2, expected);
        }

        #[test]
        fn test_decode_java_specific_oom() {
            // Found by the fuzzer, this should return an error instead of OOM.
            let data = [
                0x0a, 0x0a, 0x83, 0x00, 0xd4, 0x00, 0x00, 0x22, 0x00, 0x4b, 0x08, 0xd2, 0x22, 0xfb,
                0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x9b, 0x00, 0x9b, 0x0a, 0x40,
                0x00, 0x00, 0x4b, 0x00, 0x00, 0x00, 0x40, 0x30, 0x00, 0x57, 0x00, 0xd3, 0x82, 0x53,
                0x4e, 0x41, 0x50, 0x50, 0x59, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
                0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0xfc, 0x00, 0x09, 0x09, 0x09, 0x09, 0x09,
                0x09, 0x50, 0x50, 0x59, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x30, 0x00, 0x57, 0x00, 0x00, 0x80,
                0x00, 0x00, 0x00, 0x00, 0xb0, 0x9b, 0x00,
            ]
            .to_vec();

            let err = RecordBatchBody::read(&mut Cursor::new(data)).unwrap_err();
            assert_matches!(err, ReadError::Malformed(_));
            assert_eq!(
                err.to_string(),
                "Malformed data: Java-specific Snappy-compressed data has illegal chunk length, got 4227860745 bytes but only 38 bytes are left."
            );
        }

        #[test]
        fn test_carefully_decompress_snappy_empty_input() {
            let err = carefully_decompress_snappy(&[], 1, usize::MAX).unwrap_err();
            assert_matches!(err, ReadError::Malformed(_));
        }

        #[test]
        fn test_carefully_decompress_snappy_refuses_a_declared_size_over_the_limit() {
            let compressed = compress(&[0; 1_000_000]);
            assert!(compressed.len() < 100_000);
            let err = carefully_decompress_snappy(&compressed, 1, 999_999).unwrap_err();
            assert_matches!(err, ReadError::DecodedSizeExceeded { limit: 999_999 });
            assert_eq!(
                carefully_decompress_snappy(&compressed, 1, 1_000_000)
                    .unwrap()
                    .len(),
                1_000_000
            );
        }

        #[test]
        fn test_decode_java_snappy_chunks_stop_at_the_limit() {
            // Java's framing: magic, version, compat, then length-prefixed raw snappy chunks that together
            // hold the records; here one record of 1.2 MB in two chunks.
            let mut records = vec![];
            Record {
                timestamp_delta: 0,
                offset_delta: 0,
                key: None,
                value: Some(vec![0; 1_200_000]),
                headers: vec![],
            }
            .write(&mut records)
            .unwrap();
            let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            for chunk in records.chunks(600_000) {
                let compressed = compress(chunk);
                framed.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                framed.extend_from_slice(&compressed);
            }
            let data = framed_batch(0, &batch_body(2, 0, 1, &framed));
            let raw = RawRecordBatch::read(&mut Cursor::new(data)).unwrap();

            // the second chunk passes the limit
            assert_matches!(
                raw.decode(1 << 20),
                Err(ReadError::DecodedSizeExceeded { limit }) if limit == 1 << 20
            );
            let (batch, _) = raw.decode(2 << 20).unwrap();
            let ControlBatchOrRecords::Records(decoded) = batch.records else {
                panic!("records expected");
            };
            assert_eq!(decoded[0].value.as_ref().map(Vec::len), Some(1_200_000));
        }

        #[test]
        fn test_carefully_decompress_snappy_empty_payload() {
            let compressed = compress(&[]);
            let data = carefully_decompress_snappy(&compressed, 1, usize::MAX).unwrap();
            assert!(data.is_empty());
        }

        proptest! {
            #![proptest_config(ProptestConfig{cases: 200, ..Default::default()})]
            #[test]
            fn test_carefully_decompress_snappy(input in prop::collection::vec(any::<u8>(), 0..10_000)) {
                let compressed = compress(&input);
                let input2 = carefully_decompress_snappy(&compressed, 1, usize::MAX).unwrap();
                assert_eq!(input, input2);
            }
        }

        fn compress(data: &[u8]) -> Vec<u8> {
            use snap::raw::{Encoder, max_compress_len};

            let mut encoder = Encoder::new();
            let mut output = vec![0; max_compress_len(data.len())];
            let l = encoder.compress(data, &mut output).unwrap();

            output[..l].to_vec()
        }
    }

    #[cfg(feature = "compression-zstd")]
    #[test]
    fn test_decode_fixture_zstd() {
        // This data was obtained by watching rdkafka.
        let data = [
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x5d\x00\x00\x00\x00".to_vec(),
            b"\x02\xa1\x6e\x4e\x95\x00\x04\x00\x00\x00\x00\x00\x00\x01\x7e\xbf".to_vec(),
            b"\x78\xf3\xad\x00\x00\x01\x7e\xbf\x78\xf3\xad\xff\xff\xff\xff\xff".to_vec(),
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x01\x28\xb5\x2f".to_vec(),
            b"\xfd\x00\x58\x1d\x01\x00\xe8\xfc\x01\x00\x00\x00\xc8\x01\x78\x16".to_vec(),
            b"\x68\x65\x6c\x6c\x6f\x20\x6b\x61\x66\x6b\x61\x02\x06\x66\x6f\x6f".to_vec(),
            b"\x06\x62\x61\x72\x01\x00\x20\x05\x5c".to_vec(),
        ]
        .concat();

        let actual = RecordBatch::read(&mut Cursor::new(data)).unwrap();
        let expected = RecordBatch {
            base_offset: 0,
            partition_leader_epoch: 0,
            last_offset_delta: 0,
            first_timestamp: 1643889882029,
            max_timestamp: 1643889882029,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: ControlBatchOrRecords::Records(vec![Record {
                timestamp_delta: 0,
                offset_delta: 0,
                key: Some(vec![b'x'; 100]),
                value: Some(b"hello kafka".to_vec()),
                headers: vec![RecordHeader {
                    key: "foo".to_owned(),
                    value: b"bar".to_vec(),
                }],
            }]),
            compression: RecordBatchCompression::Zstd,
            is_transactional: false,
            timestamp_type: RecordBatchTimestampType::CreateTime,
        };
        assert_eq!(actual, expected);

        let mut data2 = vec![];
        actual.write(&mut data2).unwrap();

        // don't compare if the data is equal because compression encoder might work slightly differently, use another
        // roundtrip instead
        let actual2 = RecordBatch::read(&mut Cursor::new(data2)).unwrap();
        assert_eq!(actual2, expected);
    }

    #[test]
    fn test_decode_fixture_null_key() {
        // This data was obtained by watching rdkafka driven by IOx.
        let data = [
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\x00\x00\x00\x00".to_vec(),
            b"\x02\x67\x98\xb9\x54\x00\x00\x00\x00\x00\x00\x00\x00\x01\x7e\xbe".to_vec(),
            b"\xdc\x91\xf6\x00\x00\x01\x7e\xbe\xdc\x91\xf6\xff\xff\xff\xff\xff".to_vec(),
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x01\xce\x03\x00".to_vec(),
            b"\x00\x00\x01\xce\x01\x0a\x65\x0a\x2f\x74\x65\x73\x74\x5f\x74\x6f".to_vec(),
            b"\x70\x69\x63\x5f\x33\x37\x33\x39\x38\x66\x38\x64\x2d\x39\x35\x66".to_vec(),
            b"\x38\x2d\x34\x34\x65\x65\x2d\x38\x33\x61\x34\x2d\x34\x64\x30\x63".to_vec(),
            b"\x35\x39\x32\x62\x34\x34\x36\x64\x12\x32\x0a\x03\x75\x70\x63\x12".to_vec(),
            b"\x17\x0a\x04\x75\x73\x65\x72\x10\x03\x1a\x0a\x12\x08\x00\x00\x00".to_vec(),
            b"\x00\x00\x00\xf0\x3f\x22\x01\x00\x12\x10\x0a\x04\x74\x69\x6d\x65".to_vec(),
            b"\x10\x04\x1a\x03\x0a\x01\x64\x22\x01\x00\x18\x01\x04\x18\x63\x6f".to_vec(),
            b"\x6e\x74\x65\x6e\x74\x2d\x74\x79\x70\x65\xa4\x01\x61\x70\x70\x6c".to_vec(),
            b"\x69\x63\x61\x74\x69\x6f\x6e\x2f\x78\x2d\x70\x72\x6f\x74\x6f\x62".to_vec(),
            b"\x75\x66\x3b\x20\x73\x63\x68\x65\x6d\x61\x3d\x22\x69\x6e\x66\x6c".to_vec(),
            b"\x75\x78\x64\x61\x74\x61\x2e\x69\x6f\x78\x2e\x77\x72\x69\x74\x65".to_vec(),
            b"\x5f\x62\x75\x66\x66\x65\x72\x2e\x76\x31\x2e\x57\x72\x69\x74\x65".to_vec(),
            b"\x42\x75\x66\x66\x65\x72\x50\x61\x79\x6c\x6f\x61\x64\x22\x1a\x69".to_vec(),
            b"\x6f\x78\x2d\x6e\x61\x6d\x65\x73\x70\x61\x63\x65\x12\x6e\x61\x6d".to_vec(),
            b"\x65\x73\x70\x61\x63\x65".to_vec(),
        ]
        .concat();

        let actual = RecordBatch::read(&mut Cursor::new(data.clone())).unwrap();
        let expected = RecordBatch {
            base_offset: 0,
            partition_leader_epoch: 0,
            last_offset_delta: 0,
            first_timestamp: 1643879633398,
            max_timestamp: 1643879633398,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: ControlBatchOrRecords::Records(vec![Record {
                timestamp_delta: 0,
                offset_delta: 0,
                key: None,
                value: Some(vec![
                    10, 101, 10, 47, 116, 101, 115, 116, 95, 116, 111, 112, 105, 99, 95, 51, 55,
                    51, 57, 56, 102, 56, 100, 45, 57, 53, 102, 56, 45, 52, 52, 101, 101, 45, 56,
                    51, 97, 52, 45, 52, 100, 48, 99, 53, 57, 50, 98, 52, 52, 54, 100, 18, 50, 10,
                    3, 117, 112, 99, 18, 23, 10, 4, 117, 115, 101, 114, 16, 3, 26, 10, 18, 8, 0, 0,
                    0, 0, 0, 0, 240, 63, 34, 1, 0, 18, 16, 10, 4, 116, 105, 109, 101, 16, 4, 26, 3,
                    10, 1, 100, 34, 1, 0, 24, 1,
                ]),
                headers: vec![
                    RecordHeader {
                        key: "content-type".to_owned(),
                        value: br#"application/x-protobuf; schema="influxdata.iox.write_buffer.v1.WriteBufferPayload""#.to_vec(),
                    },
                    RecordHeader {
                        key: "iox-namespace".to_owned(),
                        value: b"namespace".to_vec(),
                    },
                ],
            }]),
            compression: RecordBatchCompression::NoCompression,
            is_transactional: false,
            timestamp_type: RecordBatchTimestampType::CreateTime,
        };
        assert_eq!(actual, expected);

        let mut data2 = vec![];
        actual.write(&mut data2).unwrap();
        assert_eq!(data, data2);
    }
}
