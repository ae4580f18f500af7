//! Handling one record: one JSON log line, and, when the value is the
//! producer's demo record, per-run verification (duplicates, gaps,
//! end-to-end latency); a canary record of `producer --continuous` (it has
//! a per-partition `pseq`) goes to [`crate::canary`] instead.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Mutex,
};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use metrics::{counter, gauge, histogram};
use rskafka::record::RecordAndOffset;
use serde::Deserialize;

use common::metrics as m;

use crate::canary::{Canary, CanaryFields, CanarySettings, CanaryVerdict};

/// Demo runs remembered at once; older runs are forgotten (bounded memory).
const MAX_RUNS: usize = 16;
/// Highest seq tracked per run (1 bit each: 16 Mi records = 2 MiB).
const MAX_SEQ: u64 = 1 << 24;

/// The fields of the producer's demo and canary records we verify: a
/// demo record has `seq`, a canary record `pseq` and `run_start_ms`.
#[derive(Debug, Deserialize)]
struct Demo<'a> {
    run_id: &'a str,
    seq: Option<u64>,
    sent_at: &'a str,
    pseq: Option<u64>,
    run_start_ms: Option<i64>,
}

/// What the handler concluded about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not a demo record.
    Plain,
    /// A demo record seen for the first time.
    Fresh,
    /// A demo record this member already handled (redelivery); a canary
    /// record whose sequence number was in the log before.
    Duplicate,
    /// A canary record at an offset this member had read before.
    Redelivered,
}

/// Verification state of one demo run.
#[derive(Debug, Default)]
struct RunState {
    seen: Vec<u64>,
    distinct: u64,
    highest: Option<u64>,
}

impl RunState {
    /// Marks `seq`; true when it was new.
    fn mark(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        let Some(w) = self.seen.get_mut(word) else {
            return false;
        };
        let fresh = *w & (1 << bit) == 0;
        *w |= 1 << bit;
        if fresh {
            self.distinct += 1;
            self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        }
        fresh
    }

    /// Sequence numbers below the highest seen that this member has not seen.
    fn gaps(&self) -> u64 {
        self.highest
            .map_or(0, |h| (h + 1).saturating_sub(self.distinct))
    }
}

/// Metric handles of one topic, resolved once: looking a handle up by name
/// and labels per record cost 15 % of the consumer's CPU.
#[derive(Debug, Clone)]
struct TopicMetrics {
    latency: m::RecordHistogram,
    demo: metrics::Counter,
    duplicates: metrics::Counter,
    gaps: metrics::Gauge,
}

impl TopicMetrics {
    fn new(topic: &str) -> Self {
        Self {
            latency: m::RecordHistogram::new(histogram!(
                m::CONSUMER_E2E_LATENCY,
                "topic" => topic.to_owned()
            )),
            demo: counter!(m::DEMO_RECORDS, "topic" => topic.to_owned()),
            duplicates: counter!(m::DEMO_DUPLICATES, "topic" => topic.to_owned()),
            gaps: gauge!(m::DEMO_GAPS, "topic" => topic.to_owned()),
        }
    }
}

/// Demo runs in first-seen order and their state, plus the metric handles.
#[derive(Debug, Default)]
struct State {
    order: VecDeque<String>,
    runs: BTreeMap<String, RunState>,
    topics: HashMap<String, TopicMetrics>,
}

/// Handles records; shared by all partition workers of a member.
#[derive(Debug)]
pub struct Handler {
    group: String,
    value_max: usize,
    state: Mutex<State>,
    canary: Canary,
}

impl Handler {
    /// A handler that cuts logged values at `value_max` bytes.
    pub fn new(group: impl Into<String>, value_max: usize) -> Self {
        Self {
            group: group.into(),
            value_max,
            state: Mutex::new(State::default()),
            canary: Canary::new(CanarySettings::default()),
        }
    }

    /// Verifies canary records with `settings` (`CANARY_*` keys).
    pub fn with_canary(mut self, settings: CanarySettings) -> Self {
        self.canary = Canary::new(settings);
        self
    }

    /// Logs the record and verifies it when it is a demo record.
    pub fn handle(&self, topic: &str, partition: i32, r: &RecordAndOffset) -> Verdict {
        // Rendering the line copies and checks every value; skip it when the
        // record log is filtered out (RUST_LOG=…,consumer::record=off).
        if tracing::enabled!(target: "consumer::record", tracing::Level::INFO) {
            self.log(topic, partition, r);
        }

        let Some(bytes) = r.record.value.as_deref() else {
            return Verdict::Plain;
        };
        let Ok(demo) = serde_json::from_slice::<Demo<'_>>(bytes) else {
            return Verdict::Plain;
        };
        if demo.seq.is_none() && demo.pseq.is_none() {
            return Verdict::Plain;
        }
        let sent_at = DateTime::parse_from_rfc3339(demo.sent_at).ok();
        let latency = sent_at.and_then(|sent_at| {
            Utc::now()
                .signed_duration_since(sent_at.with_timezone(&Utc))
                .to_std()
                .ok()
        });
        self.topic_metrics(topic, latency);
        let seq = match (demo.seq, demo.pseq) {
            (_, Some(pseq)) => {
                let fields = CanaryFields {
                    run_id: demo.run_id,
                    pseq,
                    run_start_ms: demo.run_start_ms,
                    sent_ms: sent_at.map(|t| t.timestamp_millis()),
                };
                return match self
                    .canary
                    .record(topic, partition, r.offset, fields, latency)
                {
                    CanaryVerdict::Duplicate => Verdict::Duplicate,
                    CanaryVerdict::Redelivered => Verdict::Redelivered,
                    CanaryVerdict::InOrder | CanaryVerdict::Filled | CanaryVerdict::Unjudged => {
                        Verdict::Fresh
                    }
                };
            }
            (Some(seq), None) => seq,
            (None, None) => return Verdict::Plain,
        };
        // Demo records: which seqs of the run this member has seen.
        let Ok(mut guard) = self.state.lock() else {
            return Verdict::Fresh;
        };
        let state = &mut *guard;
        let Some(metrics) = state.topics.get(topic) else {
            return Verdict::Fresh;
        };
        if seq >= MAX_SEQ {
            return Verdict::Fresh;
        }
        if !state.runs.contains_key(demo.run_id) {
            if state.order.len() >= MAX_RUNS {
                if let Some(old) = state.order.pop_front() {
                    state.runs.remove(&old);
                }
            }
            state.order.push_back(demo.run_id.to_owned());
            state
                .runs
                .insert(demo.run_id.to_owned(), RunState::default());
        }
        let Some(run) = state.runs.get_mut(demo.run_id) else {
            return Verdict::Fresh;
        };
        let fresh = run.mark(seq);
        let gaps: u64 = state.runs.values().map(RunState::gaps).sum();
        metrics.gaps.set(gaps as f64);
        if fresh {
            Verdict::Fresh
        } else {
            metrics.duplicates.increment(1);
            tracing::warn!(group = %self.group, topic, partition, offset = r.offset, run_id = demo.run_id, seq, "duplicate demo record");
            Verdict::Duplicate
        }
    }

    /// A demo or canary record's topic-level metrics: counted, and its
    /// end-to-end latency.
    fn topic_metrics(&self, topic: &str, latency: Option<std::time::Duration>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let metrics = state
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| TopicMetrics::new(topic));
        if let Some(l) = latency {
            metrics.latency.record(l.as_secs_f64());
        }
        metrics.demo.increment(1);
    }

    /// The record's JSON log line (target `consumer::record`).
    fn log(&self, topic: &str, partition: i32, r: &RecordAndOffset) {
        let record = &r.record;
        let (value, value_encoding, value_truncated) = match &record.value {
            None => (Cow::Borrowed(""), "null", false),
            Some(v) => render(v, self.value_max),
        };
        let key = record.key.as_deref().map(|k| render(k, 256).0);
        let headers: BTreeMap<&str, Cow<'_, str>> = record
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), render(v, 256).0))
            .collect();
        let headers = serde_json::to_string(&headers).unwrap_or_default();
        tracing::info!(
            target: "consumer::record",
            topic,
            partition,
            offset = r.offset,
            key = key.as_deref(),
            // Not `timestamp`: that is the log line's own time.
            record_timestamp = %record.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            headers = %headers,
            value_len = record.value.as_ref().map_or(0, Vec::len),
            value_encoding,
            value_truncated,
            value = %value,
            "record"
        );
    }

    /// `(distinct, duplicates-free highest seq + 1 − distinct)` of a run.
    #[cfg(test)]
    fn run_stats(&self, run_id: &str) -> Option<(u64, u64)> {
        let guard = self.state.lock().ok()?;
        guard.runs.get(run_id).map(|r| (r.distinct, r.gaps()))
    }
}

/// What the consumer does with each record.
///
/// The service uses [`Handler`] (one JSON log line per record plus demo
/// verification). Embedders of the library pass their own to
/// [`crate::run::run_with_handler`]. A record counts as handled, and its
/// offset may be committed, only once the future resolves to `Ok`; an `Err`
/// is counted and the same record retried with backoff, so a failing record
/// never gets committed (at-least-once) and shows as a stalled partition.
pub trait RecordHandler: Send + Sync + std::fmt::Debug {
    /// Handles one record of `topic`/`partition`.
    fn handle<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        record: &'a RecordAndOffset,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;

    /// `topic`/`partition` was assigned to this member; called before its
    /// first record.
    fn assigned(&self, _topic: &str, _partition: i32) {}

    /// About once a second while `topic`/`partition` is assigned;
    /// `caught_up` when every record it holds was handled.
    fn tick(&self, _topic: &str, _partition: i32, _caught_up: bool) {}

    /// `topic`/`partition` left this member.
    fn revoked(&self, _topic: &str, _partition: i32) {}
}

/// A handler's failure, counted in `kafka_consumer_errors_total{kind="handler"}`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

impl RecordHandler for Handler {
    fn handle<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        record: &'a RecordAndOffset,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        // The work happens when the future is polled, i.e. inside the span
        // the caller instruments it with.
        Box::pin(async move {
            Handler::handle(self, topic, partition, record);
            Ok(())
        })
    }

    fn assigned(&self, topic: &str, partition: i32) {
        self.canary.assigned(topic, partition);
    }

    fn tick(&self, topic: &str, partition: i32, caught_up: bool) {
        self.canary.tick(topic, partition, caught_up);
    }

    fn revoked(&self, topic: &str, partition: i32) {
        self.canary.revoked(topic, partition);
    }
}

/// The OpenTelemetry `process {topic}` span for one record, child of the
/// producer's `send` span when the record carries a `traceparent`
/// header; a disabled span when tracing is off.
pub(crate) fn record_span(
    group: &str,
    topic: &str,
    partition: i32,
    r: &RecordAndOffset,
    server_address: &str,
) -> tracing::Span {
    if !common::trace::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: common::trace::SPAN_TARGET,
        "process",
        "otel.name" = %format_args!("process {topic}"),
        "otel.kind" = "consumer",
        "messaging.system" = "kafka",
        "messaging.operation.type" = "process",
        "messaging.operation.name" = "process",
        "messaging.destination.name" = topic,
        "messaging.consumer.group.name" = group,
        "messaging.destination.partition.id" = %partition,
        "messaging.kafka.offset" = r.offset,
        "messaging.kafka.message.key" = common::trace::printable_key(r.record.key.as_deref()),
        "server.address" = server_address,
    );
    let parent = common::trace::extract(&r.record.headers);
    // Without a valid traceparent the span stays a root span.
    let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, parent);
    span
}

/// UTF-8 text as is, anything else base64; cut at `max` bytes (on a char
/// boundary for text). Returns (text, encoding, truncated).
fn render(bytes: &[u8], max: usize) -> (Cow<'_, str>, &'static str, bool) {
    let cut = bytes.len() > max;
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            let mut end = s.len().min(max);
            while end > 0 && !s.is_char_boundary(end) {
                end -= 1;
            }
            // Borrowed: copying every value only to log it showed in profiles.
            (Cow::Borrowed(s.get(..end).unwrap_or_default()), "utf8", cut)
        }
        Err(_) => {
            let shown = bytes.get(..bytes.len().min(max)).unwrap_or_default();
            (
                Cow::Owned(base64::engine::general_purpose::STANDARD.encode(shown)),
                "base64",
                cut,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rskafka::record::Record;

    fn rec(offset: i64, value: Option<&[u8]>) -> RecordAndOffset {
        RecordAndOffset {
            record: Record {
                key: Some(b"k".to_vec()),
                value: value.map(<[u8]>::to_vec),
                headers: [("h".to_owned(), vec![0xff, 0x00])].into_iter().collect(),
                timestamp: Utc::now(),
            },
            offset,
        }
    }

    #[test]
    fn renders_text_binary_and_cuts_on_char_boundaries() {
        assert_eq!(render(b"hello", 10), ("hello".into(), "utf8", false));
        assert_eq!(render("héllo".as_bytes(), 2), ("h".into(), "utf8", true));
        assert_eq!(
            render(&[0xff, 0xfe, 0x00], 10),
            ("//4A".into(), "base64", false)
        );
        assert!(render(&[0xff; 10], 3).2);
    }

    #[test]
    fn demo_records_are_verified_per_run() {
        let h = Handler::new("g", 64);
        let demo = |seq: u64| {
            format!(
                r#"{{"run_id":"r1","seq":{seq},"sent_at":"{}","payload":""}}"#,
                Utc::now().to_rfc3339()
            )
        };
        for seq in [0u64, 1, 3] {
            assert_eq!(
                h.handle("t", 0, &rec(seq as i64, Some(demo(seq).as_bytes()))),
                Verdict::Fresh
            );
        }
        assert_eq!(
            h.handle("t", 0, &rec(9, Some(demo(1).as_bytes()))),
            Verdict::Duplicate
        );
        assert_eq!(h.run_stats("r1"), Some((3, 1)), "seq 2 missing");
        assert_eq!(
            h.handle("t", 0, &rec(10, Some(demo(2).as_bytes()))),
            Verdict::Fresh
        );
        assert_eq!(h.run_stats("r1"), Some((4, 0)));
    }

    #[test]
    fn odd_records_are_handled_not_rejected() {
        let h = Handler::new("g", 16);
        assert_eq!(h.handle("t", 0, &rec(0, None)), Verdict::Plain);
        assert_eq!(
            h.handle("t", 0, &rec(1, Some(&[0, 159, 146, 150]))),
            Verdict::Plain
        );
        assert_eq!(
            h.handle("t", 0, &rec(2, Some(b"{\"run_id\": 5"))),
            Verdict::Plain
        );
        assert_eq!(
            h.handle("t", 0, &rec(3, Some(&vec![b'x'; 1 << 20]))),
            Verdict::Plain
        );
        // A demo-looking record with an absurd seq is counted, not tracked.
        let v = format!(r#"{{"run_id":"r","seq":{},"sent_at":"x"}}"#, u64::MAX);
        assert_eq!(
            h.handle("t", 0, &rec(4, Some(v.as_bytes()))),
            Verdict::Fresh
        );
    }

    #[test]
    fn runs_are_bounded() {
        let h = Handler::new("g", 16);
        for i in 0..(MAX_RUNS + 5) {
            let v = format!(r#"{{"run_id":"run{i}","seq":0,"sent_at":"x"}}"#);
            h.handle("t", 0, &rec(0, Some(v.as_bytes())));
        }
        assert!(h.run_stats("run0").is_none());
        assert!(h.run_stats(&format!("run{}", MAX_RUNS + 4)).is_some());
    }
}
