//! Distributed tracing of records: OpenTelemetry messaging spans and W3C
//! trace context in Kafka record headers.
//!
//! The producer opens a `send {topic}` span (kind PRODUCER) per record and
//! injects its context as `traceparent`/`tracestate` headers; the consumer
//! opens a `process {topic}` span (kind CONSUMER) whose parent is extracted
//! from those headers, so one trace runs producer → broker → consumer.
//! Records without the headers still get a (root) span.
//!
//! Spans use their own target ([`SPAN_TARGET`]): only the OpenTelemetry
//! layer listens to it, so with tracing off they are disabled at the callsite.

use std::{
    collections::{BTreeMap, HashMap},
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of messaging spans.
pub const SPAN_TARGET: &str = "kafka_otel";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported (set by [`crate::telemetry::init`]).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns tracing on or off (telemetry init; tests).
pub(crate) fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

struct HeaderInjector<'a>(&'a mut BTreeMap<String, Vec<u8>>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value.into_bytes());
    }
}

struct HeaderExtractor<'a>(HashMap<&'a str, &'a str>);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).copied()
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().copied().collect()
    }
}

/// Writes `span`'s W3C trace context into record headers.
pub fn inject(span: &tracing::Span, headers: &mut BTreeMap<String, Vec<u8>>) {
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Reads a W3C trace context from record headers (an empty context when
/// there is none or it is malformed).
pub fn extract(headers: &BTreeMap<String, Vec<u8>>) -> opentelemetry::Context {
    let map = headers
        .iter()
        .filter(|(k, _)| {
            k.eq_ignore_ascii_case("traceparent") || k.eq_ignore_ascii_case("tracestate")
        })
        .filter_map(|(k, v)| Some((k.as_str(), std::str::from_utf8(v).ok()?)))
        .collect();
    TraceContextPropagator::new().extract(&HeaderExtractor(map))
}

/// A key as a span attribute, only when it is printable text.
pub fn printable_key(key: Option<&[u8]>) -> Option<&str> {
    let s = std::str::from_utf8(key?).ok()?;
    (!s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    #[test]
    fn malformed_or_missing_headers_give_an_empty_context() {
        let mut h = BTreeMap::new();
        assert!(!extract(&h).span().span_context().is_valid());
        h.insert("traceparent".to_owned(), b"garbage".to_vec());
        assert!(!extract(&h).span().span_context().is_valid());
        h.insert("traceparent".to_owned(), vec![0xff, 0xfe]);
        assert!(!extract(&h).span().span_context().is_valid());
    }

    #[test]
    fn a_valid_traceparent_is_extracted() {
        let mut h = BTreeMap::new();
        h.insert(
            "traceparent".to_owned(),
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec(),
        );
        let cx = extract(&h);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn printable_keys_only() {
        assert_eq!(printable_key(Some(b"key-1")), Some("key-1"));
        assert_eq!(printable_key(Some(&[0, 1, 2])), None);
        assert_eq!(printable_key(Some(&[0xff])), None);
        assert_eq!(printable_key(None), None);
    }
}
