//! What the producer sends: the demo record, key templates, and JSON-lines input.
//!
//! The demo record is what the consumer verifies per `run_id` (duplicates,
//! gaps, end-to-end latency):
//! `{"run_id":"…","seq":0,"sent_at":"2026-11-26T10:00:00.123456789Z","payload":"xxxx"}`,
//! padded with `payload` so that the whole value is exactly `record_size` bytes.

use std::{fmt::Write as _, io::BufRead};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The smallest `--record-size`: the demo record's fixed fields with a
/// 36-character run id and a 10-digit seq still fit.
pub const MIN_RECORD_SIZE: usize = 128;

/// The demo record, as the consumer parses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoRecord {
    /// Identifies one producer run.
    pub run_id: String,
    /// 0-based sequence number within the run.
    pub seq: u64,
    /// When the record was handed to the client (RFC 3339, nanoseconds, UTC).
    pub sent_at: String,
    /// Padding up to the configured record size.
    pub payload: String,
}

/// Renders a demo record's JSON value of exactly `size` bytes (or the
/// smallest possible when `size` is smaller than the fixed fields).
pub fn demo_value(run_id: &str, seq: u64, sent_at: DateTime<Utc>, size: usize) -> Vec<u8> {
    let sent_at = sent_at.to_rfc3339_opts(SecondsFormat::Nanos, true);
    // run_id was validated to need no JSON escaping.
    let mut out = String::with_capacity(size.max(96));
    let _ = write!(
        out,
        r#"{{"run_id":"{run_id}","seq":{seq},"sent_at":"{sent_at}","payload":""#
    );
    let fixed = out.len() + 2; // the closing `"}`
    let pad = size.saturating_sub(fixed);
    // A repeating, compressible-but-not-trivial pattern, so compression
    // benchmarks are not flattered by a run of one byte.
    const PATTERN: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    out.extend(PATTERN.iter().cycle().take(pad).map(|&b| b as char));
    out.push_str("\"}");
    out.into_bytes()
}

/// A key template such as `key-{seq % 8}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Seq,
    SeqMod(u64),
    RunId,
}

impl KeyTemplate {
    /// Parses a template; the error names the offending placeholder.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` at `{}`", &rest[open..]))?;
            let inner: String = after[..close]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            parts.push(match inner.as_str() {
                "seq" => Part::Seq,
                "run_id" => Part::RunId,
                other => match other.strip_prefix("seq%").map(str::parse::<u64>) {
                    Some(Ok(n)) if n > 0 => Part::SeqMod(n),
                    _ => return Err(format!("unknown placeholder `{{{}}}`", &after[..close])),
                },
            });
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err("unmatched `}`".to_owned());
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The key for record `seq`.
    pub fn render(&self, seq: u64, run_id: &str) -> Vec<u8> {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => s.push_str(t),
                Part::Seq => {
                    let _ = write!(s, "{seq}");
                }
                Part::SeqMod(n) => {
                    let _ = write!(s, "{}", seq % n);
                }
                Part::RunId => s.push_str(run_id),
            }
        }
        s.into_bytes()
    }
}

/// One record read from `--input`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// The key, when `--key-field` names a field present in the line.
    pub key: Option<Vec<u8>>,
    /// The line itself (the JSON value as given, trimmed).
    pub value: Vec<u8>,
}

/// Errors reading `--input`.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be read.
    #[error("cannot read input {path}: {source}")]
    Read {
        /// Path or `-`.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// One or more lines are not valid; nothing is sent.
    #[error("input {path}: {count} invalid line(s), nothing sent: {details}")]
    BadLines {
        /// Path or `-`.
        path: String,
        /// How many bad lines.
        count: usize,
        /// The first few, as `line N: problem`.
        details: String,
    },
    /// No records at all.
    #[error("input {path} holds no records (blank lines are skipped)")]
    Empty {
        /// Path or `-`.
        path: String,
    },
}

/// Reads JSON lines. All-or-nothing: when any line is invalid, the error
/// lists the bad line numbers (the first ten) and nothing is sent, so a Job
/// never half-publishes a file. Blank lines are skipped.
pub fn read_input(
    reader: impl BufRead,
    path: &str,
    key_field: Option<&str>,
) -> Result<Vec<InputRecord>, InputError> {
    let mut records = Vec::new();
    let mut bad = Vec::new();
    let mut bad_count = 0usize;
    for (idx, line) in reader.split(b'\n').enumerate() {
        let line_no = idx + 1;
        let line = line.map_err(|source| InputError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = match std::str::from_utf8(&line) {
            Ok(t) => t.trim(),
            Err(_) => {
                bad_count += 1;
                if bad.len() < 10 {
                    bad.push(format!("line {line_no}: not UTF-8"));
                }
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        match parse_line(text, key_field) {
            Ok(r) => records.push(r),
            Err(problem) => {
                bad_count += 1;
                if bad.len() < 10 {
                    bad.push(format!("line {line_no}: {problem}"));
                }
            }
        }
    }
    if bad_count > 0 {
        return Err(InputError::BadLines {
            path: path.to_owned(),
            count: bad_count,
            details: bad.join("; "),
        });
    }
    if records.is_empty() {
        return Err(InputError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(records)
}

fn parse_line(text: &str, key_field: Option<&str>) -> Result<InputRecord, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let key = match key_field {
        None => None,
        Some(field) => match value.get(field) {
            Some(serde_json::Value::String(s)) => Some(s.clone().into_bytes()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string().into_bytes()),
            Some(serde_json::Value::Null) | None => None,
            Some(_) => return Err(format!("key field `{field}` is not a string or number")),
        },
    };
    Ok(InputRecord {
        key,
        value: text.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn demo_value_has_exact_size_and_parses_back() {
        let t = Utc
            .with_ymd_and_hms(2026, 11, 26, 10, 0, 0)
            .single()
            .expect("time");
        for size in [MIN_RECORD_SIZE, 256, 1000, 1024, 10_000] {
            for seq in [0u64, 7, 9_999_999_999] {
                let v = demo_value("2b1f0c1e-5f5e-4a57-9f4a-6b8f2a3c4d5e", seq, t, size);
                assert_eq!(v.len(), size, "size {size} seq {seq}");
                let r: DemoRecord = serde_json::from_slice(&v).expect("json");
                assert_eq!(r.seq, seq);
                assert_eq!(r.sent_at, "2026-11-26T10:00:00.000000000Z");
                assert_eq!(
                    DateTime::parse_from_rfc3339(&r.sent_at)
                        .expect("rfc3339")
                        .timestamp(),
                    t.timestamp()
                );
            }
        }
    }

    #[test]
    fn key_templates() {
        let t = KeyTemplate::parse("key-{seq % 8}").expect("ok");
        assert_eq!(t.render(13, "r"), b"key-5");
        let t = KeyTemplate::parse("{run_id}/{seq}/x").expect("ok");
        assert_eq!(t.render(3, "abc"), b"abc/3/x");
        assert_eq!(
            KeyTemplate::parse("plain").expect("ok").render(1, "r"),
            b"plain"
        );
        for bad in ["{seq % 0}", "{seq % x}", "{foo}", "a{seq", "a}"] {
            assert!(KeyTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn input_is_all_or_nothing_with_line_numbers() {
        let good = b"{\"id\": 1, \"k\": \"a\"}\n\n\"just a string\"\n{\"k\": 7}\n";
        let recs = read_input(&good[..], "in.jsonl", Some("k")).expect("ok");
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].key.as_deref(), Some(&b"a"[..]));
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[2].key.as_deref(), Some(&b"7"[..]));

        let bad = b"{\"ok\": 1}\n{not json\n\xff\xfe\n{\"k\": [1]}\n";
        let e = read_input(&bad[..], "in.jsonl", Some("k"))
            .expect_err("bad")
            .to_string();
        assert!(e.contains("3 invalid line(s), nothing sent"), "{e}");
        assert!(
            e.contains("line 2: not JSON")
                && e.contains("line 3: not UTF-8")
                && e.contains("line 4: key field"),
            "{e}"
        );
        assert!(matches!(
            read_input(&b"\n \n"[..], "-", None),
            Err(InputError::Empty { .. })
        ));
    }
}
