//! `consumer::handler::Handler::handle`: every record the consumer sees, any
//! key, value and headers, demo record or not. Properties: no panic; each
//! record gives exactly one log line, valid JSON, with `"message":"record"`,
//! the record's offset and the value's length; a demo record seen twice in
//! one run is a duplicate.
//!
//! Values are either raw fuzz bytes or a demo-record-shaped JSON object built
//! from fuzz parts, so the run-tracking path (run ids, seq bitmaps, gaps) is
//! reached too.
#![no_main]

use std::{
    collections::BTreeMap,
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use arbitrary::Arbitrary;
use consumer::handler::{Handler, Verdict};
use libfuzzer_sys::fuzz_target;
use rskafka::record::{Record, RecordAndOffset};

#[derive(Debug, Arbitrary)]
enum Value {
    Null,
    Raw(Vec<u8>),
    Demo {
        run_id: String,
        /// Kept small most of the time so runs fill up and repeat.
        seq: u32,
        big_seq: Option<u64>,
        sent_at: String,
        valid_time: bool,
        extra: Option<String>,
    },
}

#[derive(Debug, Arbitrary)]
struct Rec {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Value,
    headers: Vec<(String, Vec<u8>)>,
    timestamp_ms: i64,
}

#[derive(Debug, Arbitrary)]
struct Input {
    topic: String,
    value_max: u16,
    records: Vec<Rec>,
}

/// Log lines written by the handler, captured per input.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c = Capture::default();
        let writer = c.clone();
        // The consumer's own JSON log format.
        let _ = tracing_subscriber::fmt()
            .event_format(common::telemetry::JsonWithTrace)
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .try_init();
        c
    })
}

fn value_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::Raw(b) => Some(b.clone()),
        Value::Demo {
            run_id,
            seq,
            big_seq,
            sent_at,
            valid_time,
            extra,
        } => {
            let mut obj = serde_json::Map::new();
            obj.insert("run_id".into(), run_id.as_str().into());
            obj.insert(
                "seq".into(),
                big_seq.unwrap_or(u64::from(*seq % 4096)).into(),
            );
            let sent_at = if *valid_time {
                chrono::Utc::now().to_rfc3339()
            } else {
                sent_at.clone()
            };
            obj.insert("sent_at".into(), sent_at.into());
            obj.insert("payload".into(), "x".into());
            if let Some(e) = extra.as_deref() {
                if !matches!(e, "run_id" | "seq" | "sent_at") {
                    obj.insert(e.to_owned(), serde_json::Value::Null);
                }
            }
            Some(serde_json::to_vec(&obj).expect("json"))
        }
    }
}

fuzz_target!(|input: Input| {
    let cap = capture();
    let handler = Handler::new("fuzz-group", usize::from(input.value_max));
    let mut seen = std::collections::HashSet::new();
    let mut runs = std::collections::HashSet::new();
    for rec in input.records.iter().take(64) {
        let value = value_bytes(&rec.value);
        let headers: BTreeMap<String, Vec<u8>> = rec.headers.iter().cloned().collect();
        let timestamp =
            chrono::DateTime::from_timestamp_millis(rec.timestamp_ms).unwrap_or_default();
        let r = RecordAndOffset {
            record: Record {
                key: rec.key.clone(),
                value: value.clone(),
                headers,
                timestamp,
            },
            offset: rec.offset,
        };
        cap.0.lock().expect("capture").clear();
        let verdict = handler.handle(&input.topic, rec.partition, &r);

        let out = std::mem::take(&mut *cap.0.lock().expect("capture"));
        let text = String::from_utf8(out).expect("log output is UTF-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
            .collect();
        let records: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["message"] == "record").collect();
        assert_eq!(records.len(), 1, "one record line per record: {text}");
        assert_eq!(records[0]["offset"], rec.offset);
        assert_eq!(
            records[0]["value_len"].as_u64(),
            Some(value.as_ref().map_or(0, Vec::len) as u64)
        );

        if let Value::Demo {
            run_id,
            seq,
            big_seq,
            sent_at,
            valid_time,
            ..
        } = &rec.value
        {
            // The handler borrows run_id and sent_at from the JSON, so a
            // string that needs escaping is not taken for a demo record (the
            // producer never writes one: it rejects such run ids).
            let plain = |s: &str| !s.chars().any(|c| c == '"' || c == '\\' || c.is_control());
            if plain(run_id) && (*valid_time || plain(sent_at)) {
                assert_ne!(verdict, Verdict::Plain, "a demo record is recognised");
                let seq = big_seq.unwrap_or(u64::from(*seq % 4096));
                if seq < 1 << 24 {
                    let fresh = seen.insert((run_id.clone(), seq));
                    runs.insert(run_id.clone());
                    // Beyond 16 runs the oldest are forgotten.
                    if fresh {
                        assert_eq!(verdict, Verdict::Fresh, "first sighting is fresh");
                    } else if runs.len() <= 16 {
                        assert_eq!(verdict, Verdict::Duplicate, "a repeat is a duplicate");
                    }
                }
            }
        }
    }
});
