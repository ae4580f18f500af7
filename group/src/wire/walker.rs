//! Structural validation of response frames, mirroring `kafka-protocol`'s
//! generated decoders field by field (see the module docs for why).
//!
//! Only lengths matter here: strings are skipped, integers are skipped, and
//! every array's elements are walked so that the element count the decoder
//! pre-allocates is backed by bytes actually present. Tagged fields are
//! skipped by their size, except known tags the decoder parses itself.

use std::fmt;

/// What is wrong with a frame, and where.
#[derive(Debug)]
pub struct WireError {
    offset: usize,
    problem: String,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.problem)
    }
}

/// A cursor over a frame.
#[derive(Debug)]
pub struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
}

type R = Result<(), WireError>;

impl<'a> Walker<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not walked yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next two bytes as an `i16`, without moving.
    pub fn peek_i16(&self) -> Option<i16> {
        let b = self.buf.get(self.pos..self.pos.saturating_add(2))?;
        <[u8; 2]>::try_from(b).ok().map(i16::from_be_bytes)
    }

    fn fail(&self, problem: String) -> WireError {
        WireError {
            offset: self.pos,
            problem,
        }
    }

    /// Skips `n` bytes of fixed-size fields.
    pub fn fixed(&mut self, n: usize, what: &str) -> R {
        if n > self.remaining() {
            return Err(self.fail(format!("{what} needs {n} bytes, {} left", self.remaining())));
        }
        self.pos += n;
        Ok(())
    }

    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N], WireError> {
        let bytes = self
            .buf
            .get(self.pos..self.pos.saturating_add(N))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| {
                self.fail(format!("{what} needs {N} bytes, {} left", self.remaining()))
            })?;
        self.pos += N;
        Ok(bytes)
    }

    fn varint(&mut self, what: &str) -> Result<u32, WireError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.take::<1>(what)?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.fail(format!("{what}: varint longer than 5 bytes")))
    }

    /// Skips `len` bytes of a string or byte array's content.
    fn skip(&mut self, len: usize, what: &str) -> R {
        if len > self.remaining() {
            return Err(self.fail(format!(
                "{what} declares {len} bytes, {} left",
                self.remaining()
            )));
        }
        self.pos += len;
        Ok(())
    }

    /// A (nullable) string: i16 length, or varint length+1 when flexible.
    pub fn string(&mut self, flexible: bool, what: &str) -> R {
        if flexible {
            let n = self.varint(what)?;
            if n == 0 {
                return Ok(());
            }
            self.skip((n - 1) as usize, what)
        } else {
            let n = i16::from_be_bytes(self.take::<2>(what)?);
            match n {
                -1 => Ok(()),
                n if n >= 0 => self.skip(n as usize, what),
                n => Err(self.fail(format!("{what} has invalid length {n}"))),
            }
        }
    }

    /// (Nullable) bytes: i32 length, or varint length+1 when flexible.
    pub fn bytes(&mut self, flexible: bool, what: &str) -> R {
        if flexible {
            let n = self.varint(what)?;
            if n == 0 {
                return Ok(());
            }
            self.skip((n - 1) as usize, what)
        } else {
            let n = i32::from_be_bytes(self.take::<4>(what)?);
            match n {
                -1 => Ok(()),
                n if n >= 0 => self.skip(n as usize, what),
                n => Err(self.fail(format!("{what} has invalid length {n}"))),
            }
        }
    }

    /// A (nullable) array: i32 count, or varint count+1 when flexible;
    /// each element walked by `element`.
    pub fn array(
        &mut self,
        flexible: bool,
        what: &str,
        mut element: impl FnMut(&mut Self) -> R,
    ) -> R {
        let count: u64 = if flexible {
            match self.varint(what)? {
                0 => return Ok(()),
                n => u64::from(n - 1),
            }
        } else {
            match i32::from_be_bytes(self.take::<4>(what)?) {
                -1 => return Ok(()),
                n if n >= 0 => n as u64,
                n => return Err(self.fail(format!("{what} has invalid element count {n}"))),
            }
        };
        // Every element of the arrays we walk takes at least one byte.
        if count > self.remaining() as u64 {
            return Err(self.fail(format!(
                "{what} declares {count} elements but only {} bytes are left",
                self.remaining()
            )));
        }
        for _ in 0..count {
            element(self)?;
        }
        Ok(())
    }

    /// A tagged-field section whose tags are all skipped by size.
    pub fn tags(&mut self) -> R {
        self.tags_with(|_, _| Ok(false))
    }

    /// A tagged-field section; `known(tag, sub)` walks the tags the
    /// decoder parses itself (returning `true`), which must fill their
    /// declared size exactly so the decoder stays where we are.
    pub fn tags_with(
        &mut self,
        mut known: impl FnMut(u32, &mut Walker<'a>) -> Result<bool, WireError>,
    ) -> R {
        let count = self.varint("tagged field count")?;
        if count as usize > self.remaining() {
            return Err(self.fail(format!(
                "{count} tagged fields but only {} bytes left",
                self.remaining()
            )));
        }
        for _ in 0..count {
            let tag = self.varint("tag")?;
            let size = self.varint("tagged field size")? as usize;
            if size > self.remaining() {
                return Err(self.fail(format!(
                    "tagged field {tag} declares {size} bytes, {} left",
                    self.remaining()
                )));
            }
            let start = self.pos;
            let end = start + size;
            let mut sub = Walker {
                buf: self.buf.get(..end).unwrap_or_default(),
                pos: start,
            };
            if known(tag, &mut sub)? && sub.pos != start + size {
                return Err(self.fail(format!(
                    "tagged field {tag} declares {size} bytes but holds {}",
                    sub.pos - start
                )));
            }
            self.pos = end;
        }
        Ok(())
    }
}

/// `ResponseHeader` v0 (correlation id) or v1 (+ tagged fields).
pub fn response_header(w: &mut Walker<'_>, header_version: i16) -> R {
    w.fixed(4, "correlation_id")?;
    if header_version >= 1 {
        w.tags()?;
    }
    Ok(())
}

pub fn api_versions(w: &mut Walker<'_>, v: i16) -> R {
    let flex = v >= 3;
    w.fixed(2, "error_code")?;
    w.array(flex, "api_keys", |w| {
        w.fixed(6, "api_key")?;
        if flex {
            w.tags()?;
        }
        Ok(())
    })?;
    if v >= 1 {
        w.fixed(4, "throttle_time_ms")?;
    }
    if flex {
        w.tags_with(|tag, w| {
            let feature = |w: &mut Walker<'_>| {
                w.string(true, "feature name")?;
                w.fixed(4, "feature versions")?;
                w.tags()
            };
            match tag {
                0 => w.array(true, "supported_features", feature)?,
                1 => w.fixed(8, "finalized_features_epoch")?,
                2 => w.array(true, "finalized_features", feature)?,
                3 => w.fixed(1, "zk_migration_ready")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
    }
    Ok(())
}

pub fn sasl_handshake(w: &mut Walker<'_>, _v: i16) -> R {
    w.fixed(2, "error_code")?;
    w.array(false, "mechanisms", |w| w.string(false, "mechanism"))
}

pub fn sasl_authenticate(w: &mut Walker<'_>, v: i16) -> R {
    let flex = v >= 2;
    w.fixed(2, "error_code")?;
    w.string(flex, "error_message")?;
    w.bytes(flex, "auth_bytes")?;
    if v >= 1 {
        w.fixed(8, "session_lifetime_ms")?;
    }
    if flex {
        w.tags()?;
    }
    Ok(())
}

pub fn find_coordinator(w: &mut Walker<'_>, v: i16) -> R {
    let flex = v >= 3;
    if v >= 1 {
        w.fixed(4, "throttle_time_ms")?;
    }
    if v <= 3 {
        w.fixed(2, "error_code")?;
        if v >= 1 {
            w.string(flex, "error_message")?;
        }
        w.fixed(4, "node_id")?;
        w.string(flex, "host")?;
        w.fixed(4, "port")?;
    } else {
        w.array(true, "coordinators", |w| {
            w.string(true, "key")?;
            w.fixed(4, "node_id")?;
            w.string(true, "host")?;
            w.fixed(4 + 2, "port and error_code")?;
            w.string(true, "error_message")?;
            w.tags()
        })?;
    }
    if flex {
        w.tags()?;
    }
    Ok(())
}

pub fn join_group(w: &mut Walker<'_>, v: i16) -> R {
    let flex = v >= 6;
    if v >= 2 {
        w.fixed(4, "throttle_time_ms")?;
    }
    w.fixed(2 + 4, "error_code and generation_id")?;
    if v >= 7 {
        w.string(true, "protocol_type")?;
    }
    w.string(flex, "protocol_name")?;
    w.string(flex, "leader")?;
    if v >= 9 {
        w.fixed(1, "skip_assignment")?;
    }
    w.string(flex, "member_id")?;
    w.array(flex, "members", |w| {
        w.string(flex, "member_id")?;
        if v >= 5 {
            w.string(flex, "group_instance_id")?;
        }
        w.bytes(flex, "metadata")?;
        if flex {
            w.tags()?;
        }
        Ok(())
    })?;
    if flex {
        w.tags()?;
    }
    Ok(())
}

pub fn sync_group(w: &mut Walker<'_>, v: i16) -> R {
    let flex = v >= 4;
    if v >= 1 {
        w.fixed(4, "throttle_time_ms")?;
    }
    w.fixed(2, "error_code")?;
    if v >= 5 {
        w.string(true, "protocol_type")?;
        w.string(true, "protocol_name")?;
    }
    w.bytes(flex, "assignment")?;
    if flex {
        w.tags()?;
    }
    Ok(())
}

pub fn heartbeat(w: &mut Walker<'_>, v: i16) -> R {
    if v >= 1 {
        w.fixed(4, "throttle_time_ms")?;
    }
    w.fixed(2, "error_code")?;
    if v >= 4 {
        w.tags()?;
    }
    Ok(())
}

pub fn leave_group(w: &mut Walker<'_>, v: i16) -> R {
    let flex = v >= 4;
    if v >= 1 {
        w.fixed(4, "throttle_time_ms")?;
    }
    w.fixed(2, "error_code")?;
    if v >= 3 {
        w.array(flex, "members", |w| {
            w.string(flex, "member_id")?;
            w.string(flex, "group_instance_id")?;
            w.fixed(2, "error_code")?;
            if flex {
                w.tags()?;
            }
            Ok(())
        })?;
    }
    if flex {
        w.tags()?;
    }
    Ok(())
}

pub fn offset_commit(w: &mut Walker<'_>, v: i16) -> R {
    let flex = v >= 8;
    if v >= 3 {
        w.fixed(4, "throttle_time_ms")?;
    }
    w.array(flex, "topics", |w| {
        if v <= 9 {
            w.string(flex, "topic name")?;
        } else {
            w.fixed(16, "topic_id")?;
        }
        w.array(flex, "partitions", |w| {
            w.fixed(4 + 2, "partition_index and error_code")?;
            if flex {
                w.tags()?;
            }
            Ok(())
        })?;
        if flex {
            w.tags()?;
        }
        Ok(())
    })?;
    if flex {
        w.tags()?;
    }
    Ok(())
}

pub fn offset_fetch(w: &mut Walker<'_>, v: i16) -> R {
    let flex = v >= 6;
    if v >= 3 {
        w.fixed(4, "throttle_time_ms")?;
    }
    if v <= 7 {
        w.array(flex, "topics", |w| {
            w.string(flex, "topic name")?;
            w.array(flex, "partitions", |w| {
                w.fixed(4 + 8, "partition_index and committed_offset")?;
                if v >= 5 {
                    w.fixed(4, "committed_leader_epoch")?;
                }
                w.string(flex, "metadata")?;
                w.fixed(2, "error_code")?;
                if flex {
                    w.tags()?;
                }
                Ok(())
            })?;
            if flex {
                w.tags()?;
            }
            Ok(())
        })?;
        if v >= 2 {
            w.fixed(2, "error_code")?;
        }
    } else {
        w.array(true, "groups", |w| {
            w.string(true, "group_id")?;
            w.array(true, "topics", |w| {
                if v <= 9 {
                    w.string(true, "topic name")?;
                } else {
                    w.fixed(16, "topic_id")?;
                }
                w.array(true, "partitions", |w| {
                    w.fixed(
                        4 + 8 + 4,
                        "partition_index, committed_offset, committed_leader_epoch",
                    )?;
                    w.string(true, "metadata")?;
                    w.fixed(2, "error_code")?;
                    w.tags()
                })?;
                w.tags()
            })?;
            w.fixed(2, "error_code")?;
            w.tags()
        })?;
    }
    if flex {
        w.tags()?;
    }
    Ok(())
}
