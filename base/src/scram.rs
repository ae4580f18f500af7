//! Bounds on what a SCRAM server may ask of a client (issue 17, finding 2).
//!
//! The server's first message sets the iteration count of the client's key
//! derivation (PBKDF2). A broker impersonator lowers it to crack the client
//! proof offline, or raises it to pin a core; so the count is checked before
//! the derivation runs. The vendored rskafka carries the same check in its
//! own SASL path (an upstream patch has to stand alone).

use std::ops::RangeInclusive;

/// The iteration counts a client accepts: Kafka's own minimum
/// (`ScramMechanism.minIterations`, which the Java client enforces too) to
/// the largest count Kafka lets an operator store
/// (`kafka-configs --add-config 'SCRAM-SHA-256=[iterations=...]'`).
pub const SCRAM_ITERATIONS: RangeInclusive<u64> = 4_096..=16_384;

/// The iteration count of a SCRAM server-first message (RFC 5802 §7:
/// `r=...,s=...,i=...[,ext]`) when it is outside [`SCRAM_ITERATIONS`]
/// (`u64::MAX` for a count too large to read); `None` when it is inside, or
/// when the message has no readable count (the SCRAM implementation rejects
/// such a message itself).
pub fn iterations_out_of_bounds(server_first: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(server_first).ok()?;
    let count = text.split(',').find_map(|a| a.strip_prefix("i="))?;
    let iterations = match count.trim().parse::<u64>() {
        Ok(n) => n,
        Err(_) if !count.is_empty() && count.bytes().all(|b| b.is_ascii_digit()) => u64::MAX,
        Err(_) => return None,
    };
    (!SCRAM_ITERATIONS.contains(&iterations)).then_some(iterations)
}

/// Whether a SCRAM server message (server-first or server-final) has an
/// attribute shorter than RFC 5802's `x=`: the SCRAM implementation both
/// SASL paths use (rsasl 2.3) reads the first two bytes of each attribute
/// it parses without checking the length, and panics on such a message
/// (found by the `scram_server` fuzz target) — in a release build, which
/// aborts on panic, that would let a broker impersonator stop the process.
/// So the clients refuse it before it reaches the parser.
pub fn malformed(server_message: &[u8]) -> bool {
    server_message
        .split(|b| *b == b',')
        .any(|attribute| attribute.len() < 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(i: &str) -> Vec<u8> {
        format!("r=abc123,s=c2FsdA==,i={i}").into_bytes()
    }

    #[test]
    fn counts_kafka_stores_are_accepted() {
        for i in ["4096", "8192", "16384"] {
            assert_eq!(iterations_out_of_bounds(&first(i)), None, "i={i}");
        }
    }

    #[test]
    fn counts_outside_the_bounds_are_named() {
        assert_eq!(iterations_out_of_bounds(&first("1")), Some(1));
        assert_eq!(iterations_out_of_bounds(&first("4095")), Some(4095));
        assert_eq!(iterations_out_of_bounds(&first("16385")), Some(16385));
        assert_eq!(iterations_out_of_bounds(&first("0")), Some(0));
        assert_eq!(
            iterations_out_of_bounds(&first("99999999999999999999999")),
            Some(u64::MAX)
        );
    }

    #[test]
    fn messages_without_a_readable_count_are_left_to_scram() {
        assert_eq!(iterations_out_of_bounds(b"r=abc,s=c2FsdA=="), None);
        assert_eq!(iterations_out_of_bounds(&first("-5")), None);
        assert_eq!(iterations_out_of_bounds(&[0xff, 0xfe]), None);
        assert_eq!(iterations_out_of_bounds(b"e=other-error"), None);
    }

    #[test]
    fn attributes_shorter_than_their_name_are_malformed() {
        for bad in [
            &b""[..],
            b"v",
            b"e",
            b"v=abc,x",
            b"r=abc,s,i=4096",
            b"r=a,,i=4096",
            b",",
        ] {
            assert!(malformed(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        for good in [
            &b"v=abc"[..],
            b"e=invalid-proof",
            b"r=abc,s=c2FsdA==,i=4096",
            b"v=,x=",
        ] {
            assert!(!malformed(good), "{:?}", String::from_utf8_lossy(good));
        }
    }
}
