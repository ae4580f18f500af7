//! PATCH(kafka-rs): `InitProducerId`, which gives a producer the id and epoch its idempotent (and transactional)
//! batches carry ([KIP-98], epoch bumps by [KIP-360]).
//!
//! [KIP-98]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-98+-+Exactly+Once+Delivery+and+Transactional+Messaging
//! [KIP-360]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-360%3A+Improve+reliability+of+idempotent%2Ftransactional+producer
use std::io::{Read, Write};

use crate::protocol::{
    api_key::ApiKey,
    api_version::{ApiVersion, ApiVersionRange},
    error::Error,
    primitives::{
        CompactNullableStringRef, Int16, Int32, Int64, NullableString, TaggedFields,
    },
    traits::{ReadType, WriteType},
};

use super::{
    ReadVersionedError, ReadVersionedType, RequestBody, WriteVersionedError, WriteVersionedType,
};

#[derive(Debug, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    /// The transactional id, or null for an idempotent producer without transactions.
    pub transactional_id: NullableString,

    /// How long a transaction may stay open, in ms (ignored without a transactional id).
    pub transaction_timeout_ms: Int32,

    /// The producer id the caller has, to have its epoch bumped, or -1.
    ///
    /// Added in version 3.
    pub producer_id: Int64,

    /// The epoch of `producer_id`, or -1.
    ///
    /// Added in version 3.
    pub producer_epoch: Int16,
}

impl<W> WriteVersionedType<W> for InitProducerIdRequest
where
    W: Write,
{
    fn write_versioned(
        &self,
        writer: &mut W,
        version: ApiVersion,
    ) -> Result<(), WriteVersionedError> {
        let v = version.0.0;
        assert!(v <= 4);

        if v >= 2 {
            CompactNullableStringRef(self.transactional_id.0.as_deref()).write(writer)?;
        } else {
            self.transactional_id.write(writer)?;
        }
        self.transaction_timeout_ms.write(writer)?;
        if v >= 3 {
            self.producer_id.write(writer)?;
            self.producer_epoch.write(writer)?;
        } else if self.producer_id.0 != -1 {
            return Err(WriteVersionedError::FieldNotAvailable {
                version,
                field: "producer_id".to_owned(),
            });
        }
        if v >= 2 {
            TaggedFields::default().write(writer)?;
        }
        Ok(())
    }
}

impl RequestBody for InitProducerIdRequest {
    type ResponseBody = InitProducerIdResponse;

    const API_KEY: ApiKey = ApiKey::InitProducerId;

    /// Versions 5 and later change what the transaction coordinator does (KIP-890), not the message.
    const API_VERSION_RANGE: ApiVersionRange =
        ApiVersionRange::new(ApiVersion(Int16(0)), ApiVersion(Int16(4)));

    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion = ApiVersion(Int16(2));
}

#[derive(Debug, PartialEq, Eq)]
pub struct InitProducerIdResponse {
    /// The duration in milliseconds for which the request was throttled due to a quota violation, or zero.
    pub throttle_time_ms: Int32,

    /// The error code, or 0 if there was no error.
    pub error: Option<Error>,

    /// The producer id.
    pub producer_id: Int64,

    /// The producer epoch.
    pub producer_epoch: Int16,
}

impl<R> ReadVersionedType<R> for InitProducerIdResponse
where
    R: Read,
{
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        let v = version.0.0;
        assert!(v <= 4);

        let response = Self {
            throttle_time_ms: Int32::read(reader)?,
            error: Error::new(Int16::read(reader)?.0),
            producer_id: Int64::read(reader)?,
            producer_epoch: Int16::read(reader)?,
        };
        if v >= 2 {
            TaggedFields::read(reader)?;
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn request(producer_id: i64) -> InitProducerIdRequest {
        InitProducerIdRequest {
            transactional_id: NullableString(None),
            transaction_timeout_ms: Int32(i32::MAX),
            producer_id: Int64(producer_id),
            producer_epoch: Int16(-1),
        }
    }

    fn written(r: &InitProducerIdRequest, v: i16) -> Vec<u8> {
        let mut buf = Vec::new();
        r.write_versioned(&mut buf, ApiVersion(Int16(v)))
            .expect("write");
        buf
    }

    /// Byte layouts from the message definition (InitProducerIdRequest.json).
    #[test]
    fn request_layout_per_version() {
        let timeout = [0x7f, 0xff, 0xff, 0xff];
        for v in 0..=1 {
            // null STRING (-1), timeout
            assert_eq!(
                written(&request(-1), v),
                [&[0xff, 0xff][..], &timeout].concat()
            );
        }
        // null COMPACT_NULLABLE_STRING (0), timeout, no tagged fields
        assert_eq!(written(&request(-1), 2), [&[0][..], &timeout, &[0]].concat());
        for v in 3..=4 {
            assert_eq!(
                written(&request(-1), v),
                [&[0][..], &timeout, &[0xff; 8], &[0xff, 0xff], &[0]].concat()
            );
        }
        let named = InitProducerIdRequest {
            transactional_id: NullableString(Some("t".to_owned())),
            ..request(-1)
        };
        assert_eq!(written(&named, 0)[..3], [0, 1, b't']);
        assert_eq!(written(&named, 4)[..2], [2, b't']);
    }

    #[test]
    fn a_producer_id_to_bump_needs_version_3() {
        let mut buf = Vec::new();
        assert!(request(7)
            .write_versioned(&mut buf, ApiVersion(Int16(2)))
            .is_err());
        assert_eq!(written(&request(7), 3)[5..13], 7i64.to_be_bytes());
    }

    #[test]
    fn response_per_version() {
        let body = [
            &0i32.to_be_bytes()[..],
            &0i16.to_be_bytes(),
            &4242i64.to_be_bytes(),
            &3i16.to_be_bytes(),
        ]
        .concat();
        for v in 0..=4 {
            let mut bytes = body.clone();
            if v >= 2 {
                bytes.push(0);
            }
            let mut cursor = Cursor::new(bytes.as_slice());
            let r = InitProducerIdResponse::read_versioned(&mut cursor, ApiVersion(Int16(v)))
                .expect("read");
            assert_eq!(cursor.position() as usize, bytes.len(), "v{v} read whole");
            assert_eq!(
                r,
                InitProducerIdResponse {
                    throttle_time_ms: Int32(0),
                    error: None,
                    producer_id: Int64(4242),
                    producer_epoch: Int16(3),
                }
            );
        }
        let refused = [
            &0i32.to_be_bytes()[..],
            &31i16.to_be_bytes(),
            &(-1i64).to_be_bytes(),
            &(-1i16).to_be_bytes(),
        ]
        .concat();
        let r = InitProducerIdResponse::read_versioned(
            &mut Cursor::new(refused.as_slice()),
            ApiVersion(Int16(1)),
        )
        .expect("read");
        assert_eq!(r.error, Some(Error::ClusterAuthorizationFailed));
    }
}
