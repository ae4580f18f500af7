//! Logs and traces.
//!
//! - Logs: JSON lines by default (timestamp, level, message, fields, target
//!   and, inside a traced span, `trace_id` and `span_id` so Grafana can jump
//!   from a Loki line to its Tempo trace); human-readable with
//!   `LOG_FORMAT=pretty` or on a terminal. Level from `RUST_LOG`, else
//!   `DEBUG`, else info.
//! - Traces: OpenTelemetry over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, with batch export;
//!   `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` are honoured. Off
//!   otherwise: the messaging spans ([`crate::trace`]) then have no
//!   subscriber interested in them and cost next to nothing.

use std::{
    fmt::{self, Write as _},
    io::IsTerminal,
};

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};
use tracing::{
    field::{Field, FieldSet},
    Event, Subscriber,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    filter::Targets,
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields},
    prelude::*,
    registry::LookupSpan,
    EnvFilter,
};

use crate::{
    config::{LogConfig, LogFormat},
    trace::SPAN_TARGET,
};

/// Errors setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TelemetryError {
    /// The filter did not parse (validated earlier, so rare).
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(String),
    /// A global subscriber already exists.
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
    /// The OTLP exporter could not be built.
    #[error("cannot set up OTLP trace export to OTEL_EXPORTER_OTLP_ENDPOINT: {0}")]
    Otlp(String),
}

/// The filter in effect for `cfg`. Messaging spans are for traces only and
/// never reach the log output.
pub(crate) fn filter(cfg: &LogConfig) -> Result<EnvFilter, TelemetryError> {
    let directives = match &cfg.filter {
        Some(f) => f.clone(),
        // Our crates at the chosen level; the Kafka client one step quieter,
        // since its retries are reported by us with context. rskafka's batcher
        // warns "BroadcastOnce dropped without producing" whenever a
        // BatchProducer is dropped, even after every record was acknowledged.
        None if cfg.debug => {
            "debug,rskafka=info,rskafka::client::producer::broadcast=error,hyper=info".to_owned()
        }
        None => "info,rskafka=warn,rskafka::client::producer::broadcast=error".to_owned(),
    };
    EnvFilter::try_new(format!("{directives},{SPAN_TARGET}=off"))
        .map_err(|e| TelemetryError::Filter(e.to_string()))
}

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes it.
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter. A Job calls
    /// this before exiting so its last spans are not lost.
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.force_flush() {
                eprintln!("telemetry: flushing spans failed: {e}");
            }
            if let Err(e) = provider.shutdown() {
                eprintln!("telemetry: stopping the span exporter failed: {e}");
            }
        }
    }
}

fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

/// Installs the global subscriber (and the OTLP exporter when configured).
/// Logs go to stdout (Kubernetes collects it). `service` is the default
/// `service.name` when `OTEL_SERVICE_NAME` is not set.
pub(crate) fn init(cfg: &LogConfig, service: &'static str) -> Result<Telemetry, TelemetryError> {
    let format = cfg.format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let fmt_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(JsonWithTrace)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_target(true).boxed(),
    }
    .with_filter(filter(cfg)?);

    let (otel_layer, telemetry) = if otlp_configured() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
        // Resource::builder() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
        let mut resource = Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").map_or(true, |v| v.trim().is_empty()) {
            resource = resource.with_service_name(service);
        }
        let provider = SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer(service);
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        crate::trace::set_enabled(true);
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(Targets::new().with_target(SPAN_TARGET, tracing::Level::TRACE));
        (
            Some(layer),
            Telemetry {
                provider: Some(provider),
            },
        )
    } else {
        (None, Telemetry::default())
    };

    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|e| TelemetryError::Install(e.to_string()))?;
    Ok(telemetry)
}

/// JSON lines like tracing-subscriber's flattened JSON, plus the OpenTelemetry
/// `trace_id` and `span_id` of the current span when it is traced.
///
/// Keys in order: `timestamp`, `level`, `message` (when there is one, always
/// as a string), the event's fields in their order, `target`, then
/// `trace_id` and `span_id`. A field named like an earlier key (or twice)
/// keeps the first position and takes the last value. The line is streamed
/// into the writer: no map or JSON value is built per event (it used to cost
/// about half of the consumer's CPU with the record log on).
#[derive(Debug, Clone, Copy)]
pub struct JsonWithTrace;

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let trace = trace_ids();
        let now = chrono::Utc::now();
        match layout(meta.fields()) {
            Layout::Stream { message_first } => {
                writer.write_str("{\"timestamp\":\"")?;
                write_timestamp(&mut writer, &now)?;
                writer.write_str("\",\"level\":\"")?;
                write_escaped(&mut writer, meta.level().as_str())?;
                writer.write_char('"')?;
                if message_first {
                    visit(event, &mut writer, Only::All)?;
                } else {
                    visit(event, &mut writer, Only::Message)?;
                    visit(event, &mut writer, Only::NotMessage)?;
                }
                writer.write_str(",\"target\":\"")?;
                write_escaped(&mut writer, meta.target())?;
                writer.write_char('"')?;
                if let Some((trace_id, span_id)) = trace {
                    write!(
                        writer,
                        ",\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\""
                    )?;
                }
                writer.write_str("}\n")
            }
            Layout::Merge => write_merged(&mut writer, event, &now, trace),
        }
    }
}

/// The current span's OpenTelemetry ids, when traces are on and it is traced.
fn trace_ids() -> Option<(TraceId, SpanId)> {
    if !crate::trace::enabled() {
        return None;
    }
    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let cx = span.context();
    let otel_span = cx.span();
    let sc = otel_span.span_context();
    sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
}

/// Keys every line has besides the event's fields (`message` apart).
const OWN_KEYS: [&str; 5] = ["timestamp", "level", "target", "trace_id", "span_id"];

/// How an event's fields can be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Field names are distinct and none is one of [`OWN_KEYS`]: write each
    /// field as it is visited (`message` first, in a pass of its own when it
    /// is not the first field; tracing's macros put it first).
    Stream { message_first: bool },
    /// Duplicate or clashing names: collect, merge, then write.
    Merge,
}

fn layout(fields: &FieldSet) -> Layout {
    let mut message_first = true;
    for (i, f) in fields.iter().enumerate() {
        let name = f.name();
        if OWN_KEYS.contains(&name) || fields.iter().take(i).any(|g| g.name() == name) {
            return Layout::Merge;
        }
        if name == "message" && i > 0 {
            message_first = false;
        }
    }
    Layout::Stream { message_first }
}

/// Which fields a [`FieldWriter`] pass writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    All,
    Message,
    NotMessage,
}

fn visit<W: fmt::Write + ?Sized>(event: &Event<'_>, out: &mut W, only: Only) -> fmt::Result {
    let mut v = FieldWriter {
        out,
        only,
        result: Ok(()),
    };
    event.record(&mut v);
    v.result
}

/// The rare event [`layout`] cannot stream: the old map semantics (insert
/// keeps a key's first position, the last value wins), on rendered values.
fn write_merged<W: fmt::Write + ?Sized>(
    out: &mut W,
    event: &Event<'_>,
    now: &chrono::DateTime<chrono::Utc>,
    trace: Option<(TraceId, SpanId)>,
) -> fmt::Result {
    let meta = event.metadata();
    let mut collected = FieldCollector::default();
    event.record(&mut collected);
    if collected.failed {
        return Err(fmt::Error);
    }

    let mut line: Vec<(&str, String)> = Vec::with_capacity(collected.fields.len() + 6);
    let mut timestamp = String::from("\"");
    write_timestamp(&mut timestamp, now)?;
    timestamp.push('"');
    line.push(("timestamp", timestamp));
    line.push(("level", quoted(meta.level().as_str())?));
    if let Some(message) = collected.message {
        line.push(("message", message));
    }
    let mut insert =
        |key: &'static str, value: String| match line.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => line.push((key, value)),
        };
    for (k, v) in collected.fields {
        insert(k, v);
    }
    insert("target", quoted(meta.target())?);
    if let Some((trace_id, span_id)) = trace {
        insert("trace_id", format!("\"{trace_id}\""));
        insert("span_id", format!("\"{span_id}\""));
    }
    let mut sep = '{';
    for (k, v) in &line {
        out.write_char(sep)?;
        sep = ',';
        out.write_char('"')?;
        write_escaped(out, k)?;
        out.write_str("\":")?;
        out.write_str(v)?;
    }
    out.write_str("}\n")
}

fn quoted(s: &str) -> Result<String, fmt::Error> {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    write_escaped(&mut q, s)?;
    q.push('"');
    Ok(q)
}

/// `2026-11-26T10:00:00.123456Z`, as `to_rfc3339_opts(Micros, true)` writes
/// it, without the `String`.
fn write_timestamp<W: fmt::Write + ?Sized>(
    out: &mut W,
    t: &chrono::DateTime<chrono::Utc>,
) -> fmt::Result {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    if (0..=9999).contains(&year) {
        write!(out, "{year:04}")?;
    } else {
        write!(out, "{year:+05}")?;
    }
    let (mut sec, mut nano) = (t.second(), t.nanosecond());
    if nano >= 1_000_000_000 {
        // A leap second.
        sec += 1;
        nano -= 1_000_000_000;
    }
    write!(
        out,
        "-{:02}-{:02}T{:02}:{:02}:{sec:02}.{:06}Z",
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        nano / 1000
    )
}

/// One event field's value.
#[derive(Clone, Copy)]
enum Value<'a> {
    Str(&'a str),
    I64(i64),
    U64(u64),
    Bool(bool),
    F64(f64),
    Error(&'a (dyn std::error::Error + 'static)),
    Debug(&'a dyn fmt::Debug),
}

/// Writes `v` as JSON: strings escaped, integers and booleans bare, a finite
/// float as serde_json writes it and a non-finite one as `null`, `Debug` and
/// errors as strings. With `as_string` (the message) every value becomes a
/// JSON string of that text (`5` → `"5"`, NaN → `"null"`).
fn write_value<W: fmt::Write + ?Sized>(out: &mut W, v: Value<'_>, as_string: bool) -> fmt::Result {
    let q = if as_string { "\"" } else { "" };
    match v {
        Value::Str(s) => {
            out.write_char('"')?;
            write_escaped(out, s)?;
            out.write_char('"')
        }
        Value::Error(e) => {
            out.write_char('"')?;
            write!(Escaped(out), "{e}")?;
            out.write_char('"')
        }
        Value::Debug(d) => {
            out.write_char('"')?;
            write!(Escaped(out), "{d:?}")?;
            out.write_char('"')
        }
        Value::I64(i) => write!(out, "{q}{i}{q}"),
        Value::U64(u) => write!(out, "{q}{u}{q}"),
        Value::Bool(b) => write!(out, "{q}{b}{q}"),
        Value::F64(f) => match serde_json::Number::from_f64(f) {
            Some(n) => write!(out, "{q}{n}{q}"),
            None => write!(out, "{q}null{q}"),
        },
    }
}

/// Writes the inside of a JSON string: `"` and `\` escaped, control
/// characters as `\n`, `\t`, … or `\u00XX`, everything else (any valid
/// UTF-8, DEL included) as it is — the escapes serde_json uses.
fn write_escaped<W: fmt::Write + ?Sized>(out: &mut W, s: &str) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Most text needs no escape: skip it 8 bytes at a time (the per-byte
        // loop alone was a quarter of the consumer's CPU with the record log
        // on), and look at single bytes only around what needs escaping.
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if !needs_escape(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let end = (i + 8).min(bytes.len());
        for (j, &b) in bytes.iter().enumerate().take(end).skip(i) {
            let short = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            // `j` is at an ASCII byte, so on a char boundary.
            out.write_str(s.get(start..j).unwrap_or_default())?;
            if short.is_empty() {
                out.write_str("\\u00")?;
                out.write_char(char::from(HEX[usize::from(b >> 4)]))?;
                out.write_char(char::from(HEX[usize::from(b & 0xf)]))?;
            } else {
                out.write_str(short)?;
            }
            start = j + 1;
        }
        i = end;
    }
    out.write_str(s.get(start..).unwrap_or_default())
}

/// Whether any of the 8 bytes in `x` is a control character (< 0x20), `"`
/// or `\\` (the classic "has a byte less than n / equal to c" bit tricks).
fn needs_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    below_space | zero_byte(x ^ (ONES * u64::from(b'"'))) | zero_byte(x ^ (ONES * u64::from(b'\\')))
        != 0
}

/// A `fmt::Write` that JSON-escapes what is written through it, so `Debug`
/// and `Display` output goes into a JSON string without a `String` between.
struct Escaped<'a, W: ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(self.0, s)
    }
}

/// Writes each visited field as `,"name":value`.
struct FieldWriter<'a, W: ?Sized> {
    out: &'a mut W,
    only: Only,
    result: fmt::Result,
}

impl<W: fmt::Write + ?Sized> FieldWriter<'_, W> {
    fn put(&mut self, field: &Field, value: Value<'_>) {
        let is_message = field.name() == "message";
        let wanted = match self.only {
            Only::All => true,
            Only::Message => is_message,
            Only::NotMessage => !is_message,
        };
        if !wanted || self.result.is_err() {
            return;
        }
        self.result = write_field(self.out, field.name(), value, is_message);
    }
}

fn write_field<W: fmt::Write + ?Sized>(
    out: &mut W,
    name: &str,
    value: Value<'_>,
    is_message: bool,
) -> fmt::Result {
    out.write_str(",\"")?;
    write_escaped(out, name)?;
    out.write_str("\":")?;
    write_value(out, value, is_message)
}

/// Collects rendered field values, for [`write_merged`].
#[derive(Default)]
struct FieldCollector {
    message: Option<String>,
    fields: Vec<(&'static str, String)>,
    failed: bool,
}

impl FieldCollector {
    fn put(&mut self, field: &Field, value: Value<'_>) {
        let is_message = field.name() == "message";
        let mut rendered = String::new();
        if write_value(&mut rendered, value, is_message).is_err() {
            self.failed = true;
        } else if is_message {
            self.message = Some(rendered);
        } else {
            self.fields.push((field.name(), rendered));
        }
    }
}

/// The `Visit` methods of both visitors, mapping each kind to a [`Value`];
/// kinds not listed (i128, u128, bytes) arrive through `record_debug`.
macro_rules! visit_values {
    () => {
        fn record_f64(&mut self, field: &Field, value: f64) {
            self.put(field, Value::F64(value));
        }
        fn record_i64(&mut self, field: &Field, value: i64) {
            self.put(field, Value::I64(value));
        }
        fn record_u64(&mut self, field: &Field, value: u64) {
            self.put(field, Value::U64(value));
        }
        fn record_bool(&mut self, field: &Field, value: bool) {
            self.put(field, Value::Bool(value));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.put(field, Value::Str(value));
        }
        fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
            self.put(field, Value::Error(value));
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.put(field, Value::Debug(value));
        }
    };
}

impl<W: fmt::Write + ?Sized> tracing::field::Visit for FieldWriter<'_, W> {
    visit_values!();
}

impl tracing::field::Visit for FieldCollector {
    visit_values!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_have_the_fields_in_order_and_valid_json() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(JsonWithTrace)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                topic = "t",
                partition = 3,
                ok = true,
                ratio = 0.5,
                quote = "a\"b",
                "record"
            );
            tracing::warn!(error = %"boom", "failed");
        });
        let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "record");
        assert_eq!(v["partition"], 3);
        assert_eq!(v["ok"], true);
        assert_eq!(v["quote"], "a\"b");
        assert!(lines[0].starts_with("{\"timestamp\":"), "{}", lines[0]);
        assert!(
            lines[0].contains("\"level\":\"INFO\",\"message\":\"record\""),
            "{}",
            lines[0]
        );
        let w: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
        assert_eq!(w["error"], "boom");
        assert_eq!(w["level"], "WARN");
    }

    /// Lines written by `format` for the events `emit` logs.
    fn lines_with<F>(format: F, emit: impl FnOnce()) -> String
    where
        F: FormatEvent<
                tracing_subscriber::Registry,
                tracing_subscriber::fmt::format::DefaultFields,
            > + Send
            + Sync
            + 'static,
    {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(format)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, emit);
        let out = buf.0.lock().expect("lock").clone();
        String::from_utf8(out).expect("utf8")
    }

    /// The formatter as it was before streaming (a `serde_json::Map` with
    /// `preserve_order` per event): the reference the streamed lines must
    /// match byte for byte, the timestamp aside.
    struct MapJson;

    impl<S, N> FormatEvent<S, N> for MapJson
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        fn format_event(
            &self,
            _ctx: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            let meta = event.metadata();
            let mut fields = MapFields::default();
            event.record(&mut fields);
            let mut line = serde_json::Map::new();
            line.insert(
                "timestamp".into(),
                chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    .into(),
            );
            line.insert("level".into(), meta.level().as_str().into());
            if let Some(message) = fields.message {
                line.insert("message".into(), message.into());
            }
            for (k, v) in fields.fields {
                line.insert(k, v);
            }
            line.insert("target".into(), meta.target().into());
            let text =
                serde_json::to_string(&serde_json::Value::Object(line)).map_err(|_| fmt::Error)?;
            writeln!(writer, "{text}")
        }
    }

    #[derive(Default)]
    struct MapFields {
        message: Option<String>,
        fields: Vec<(String, serde_json::Value)>,
    }

    impl MapFields {
        fn put(&mut self, field: &Field, value: serde_json::Value) {
            if field.name() == "message" {
                self.message = Some(match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                });
            } else {
                self.fields.push((field.name().to_owned(), value));
            }
        }
    }

    impl tracing::field::Visit for MapFields {
        fn record_f64(&mut self, field: &Field, value: f64) {
            self.put(
                field,
                serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into),
            );
        }
        fn record_i64(&mut self, field: &Field, value: i64) {
            self.put(field, value.into());
        }
        fn record_u64(&mut self, field: &Field, value: u64) {
            self.put(field, value.into());
        }
        fn record_bool(&mut self, field: &Field, value: bool) {
            self.put(field, value.into());
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.put(field, value.into());
        }
        fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
            self.put(field, value.to_string().into());
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.put(field, format!("{value:?}").into());
        }
    }

    /// Strings JSON escaping gets wrong most often.
    const NASTY: &[&str] = &[
        "",
        "plain",
        "a\"b",
        "back\\slash\\",
        "\\\"",
        "line\nbreak\r\n",
        "tab\there",
        "\u{0}nul",
        "\u{1f}unit sep",
        "\u{7f}del",
        "\u{8}\u{c}\u{b}\u{1b}[31m",
        "emoji 🦀👍🏽",
        "replacement \u{fffd} char",
        "\u{2028}\u{2029} separators",
        "</script>",
        "ünïcödé ℵ 中文",
    ];

    #[derive(Debug)]
    #[allow(dead_code)] // read through Debug only
    struct Thing {
        name: &'static str,
        n: i32,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("bad \"thing\"\n{0}")]
    struct Oops(&'static str);

    fn sample_events() {
        for s in NASTY {
            tracing::info!(s = *s, shown = %s, dbg = ?s, "nasty {s}");
            tracing::warn!(message = *s, n = 1);
        }
        tracing::info!(
            i = -7i64,
            imin = i64::MIN,
            umax = u64::MAX,
            zero = 0u64,
            t = true,
            f = false,
            half = 0.5,
            tenth = 0.1,
            big = 1e300,
            tiny = 5e-324,
            neg_zero = -0.0,
            whole = 3.0,
            nan = f64::NAN,
            inf = f64::INFINITY,
            ninf = f64::NEG_INFINITY,
            wide = 170_141_183_460_469_231_731_687_303_715_884_105_727i128,
            thing = ?Thing { name: "x\"y", n: -1 },
            pretty = ?Some("q\n"),
            err = &Oops("\u{0}") as &(dyn std::error::Error + 'static),
            "numbers"
        );
        tracing::debug!(no_message = 1);
        tracing::info!(message = 5, x = 1);
        tracing::info!(message = f64::NAN);
        tracing::info!(message = 2.5);
        tracing::info!(message = true);
        tracing::info!(message = ?Thing { name: "m", n: 2 });
        tracing::info!(a = 1, message = "not first", b = "two");
        tracing::info!(a = 1, b = 2, a = "again", "duplicate");
        tracing::info!(timestamp = "mine", level = 3, target = "t", "clashing keys");
        tracing::info!(trace_id = "x", span_id = "y", z = 1, "trace clash");
        tracing::info!(message = "one", message = "two", z = 1);
        tracing::info!(target: "weird\"target", "odd target");
        tracing::info!("quote\"key" = 1, "nl\nkey" = 2, "ok");
        tracing::error!(
            a = "x",
            b = 1,
            c = 2,
            d = 3,
            e = 4,
            f = 5,
            g = 6,
            h = 7,
            i = 8,
            j = 9,
            k = 10,
            l = 11,
            m = 12,
            n = 13,
            "many fields"
        );
    }

    /// The line without its timestamp value, which differs between runs.
    fn untimed(line: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let ts = v["timestamp"].as_str().expect("timestamp");
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok() || ts == "mine",
            "{line}"
        );
        line.replacen(ts, "T", 1)
    }

    #[test]
    fn streamed_lines_equal_the_map_formatter_byte_for_byte() {
        let streamed = lines_with(JsonWithTrace, sample_events);
        let mapped = lines_with(MapJson, sample_events);
        assert_eq!(streamed.lines().count(), mapped.lines().count());
        for (s, m) in streamed.lines().zip(mapped.lines()) {
            assert_eq!(untimed(s), untimed(m));
        }
    }

    #[test]
    fn every_event_is_exactly_one_line_ending_in_a_newline() {
        let writer = Buf::default();
        let writes = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = Arc::clone(&writes);
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(JsonWithTrace)
                .with_writer(move || {
                    // One writer per event: record what each event wrote.
                    let before = writer.0.lock().map(|b| b.len()).unwrap_or(0);
                    PerEvent {
                        all: writer.clone(),
                        before,
                        seen: Arc::clone(&seen),
                    }
                }),
        );
        tracing::subscriber::with_default(subscriber, sample_events);
        let writes = writes.lock().expect("lock");
        assert!(writes.len() > NASTY.len() * 2, "{}", writes.len());
        for w in writes.iter() {
            assert!(w.ends_with('\n'), "{w:?}");
            assert_eq!(w.matches('\n').count(), 1, "{w:?}");
            assert!(!w.contains('\r'), "{w:?}");
            let v: serde_json::Value = serde_json::from_str(w).expect("json");
            assert!(v.is_object(), "{w}");
        }
    }

    /// A writer that, when dropped (after its event), records the event's bytes.
    struct PerEvent {
        all: Buf,
        before: usize,
        seen: Arc<Mutex<Vec<String>>>,
    }
    impl std::io::Write for PerEvent {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.all.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Drop for PerEvent {
        fn drop(&mut self) {
            if let (Ok(all), Ok(mut seen)) = (self.all.0.lock(), self.seen.lock()) {
                seen.push(String::from_utf8_lossy(&all[self.before..]).into_owned());
            }
        }
    }

    #[test]
    fn strings_round_trip_through_serde_json() {
        let out = lines_with(JsonWithTrace, || {
            for s in NASTY {
                tracing::info!(s = *s, shown = %s, dbg = ?s, "{s}");
            }
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), NASTY.len(), "{out}");
        for (line, s) in lines.iter().zip(NASTY) {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            assert_eq!(v["s"], *s, "{line}");
            assert_eq!(v["shown"], *s, "{line}");
            assert_eq!(v["dbg"], format!("{s:?}"), "{line}");
            assert_eq!(v["message"], *s, "{line}");
        }
    }

    #[test]
    fn escaping_matches_serde_json_for_every_ascii_char_and_nasty_strings() {
        let all_ascii: String = (0u8..=0x7f).map(char::from).collect();
        for s in NASTY.iter().copied().chain([all_ascii.as_str()]) {
            let mut ours = String::from("\"");
            write_escaped(&mut ours, s).expect("write");
            ours.push('"');
            assert_eq!(ours, serde_json::to_string(s).expect("json"), "{s:?}");
            // The same through the `Debug`/`Display` adapter, in pieces.
            let mut pieces = String::from("\"");
            for c in s.chars() {
                write!(Escaped(&mut pieces), "{c}").expect("write");
            }
            pieces.push('"');
            assert_eq!(pieces, ours);
        }
    }

    #[test]
    fn the_8_byte_fast_path_finds_every_escape_at_every_position() {
        // Every ASCII byte and a few multi-byte chars, at each position of
        // strings long enough for one and two 8-byte words and a tail.
        let specials: Vec<char> = (0u8..=0x7f)
            .map(char::from)
            .chain(['é', '€', '\u{fffd}', '😀', '\u{7f}'])
            .collect();
        for len in [1usize, 7, 8, 9, 16, 17, 23] {
            for pos in 0..len {
                for &c in &specials {
                    let s: String = (0..len).map(|i| if i == pos { c } else { 'a' }).collect();
                    let mut ours = String::from("\"");
                    write_escaped(&mut ours, &s).expect("write");
                    ours.push('"');
                    assert_eq!(ours, serde_json::to_string(&s).expect("json"), "{s:?}");
                }
            }
        }
        for x in [0u64, u64::MAX, 0x8080_8080_8080_8080, 0x2020_2020_2020_2020] {
            let bytes = x.to_le_bytes();
            let expected = bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            assert_eq!(needs_escape(x), expected, "{x:#x}");
        }
    }

    #[test]
    fn numbers_bools_and_debug_values_are_typed() {
        let out = lines_with(JsonWithTrace, sample_events);
        let v: serde_json::Value = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .find(|v| v["message"] == "numbers")
            .expect("numbers line");
        assert_eq!(v["i"], -7);
        assert_eq!(v["imin"], i64::MIN);
        assert_eq!(v["umax"], u64::MAX);
        assert_eq!(v["t"], true);
        assert_eq!(v["f"], false);
        assert_eq!(v["half"], 0.5);
        assert_eq!(v["tenth"], 0.1);
        assert_eq!(v["big"], 1e300);
        assert_eq!(v["tiny"], 5e-324);
        assert_eq!(v["whole"], 3.0);
        assert!(v["nan"].is_null() && v["inf"].is_null() && v["ninf"].is_null());
        assert_eq!(v["wide"], i128::MAX.to_string());
        assert_eq!(v["thing"], "Thing { name: \"x\\\"y\", n: -1 }");
        assert_eq!(v["pretty"], "Some(\"q\\n\")");
        assert_eq!(v["err"], "bad \"thing\"\n\u{0}");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(&keys[..3], ["timestamp", "level", "message"]);
        assert_eq!(keys[keys.len() - 1], "target");
    }

    #[test]
    fn timestamps_are_written_as_rfc3339_with_micros() {
        use chrono::{NaiveDate, TimeZone, Utc};
        let at = |y, mo, d, h, mi, s, nano| {
            let naive = NaiveDate::from_ymd_opt(y, mo, d)
                .and_then(|d| d.and_hms_nano_opt(h, mi, s, nano))
                .expect("date");
            Utc.from_utc_datetime(&naive)
        };
        for t in [
            at(2026, 11, 26, 10, 0, 0, 123_456_789),
            at(1970, 1, 1, 0, 0, 0, 0),
            at(1969, 12, 31, 23, 59, 59, 999_999_999),
            at(2016, 12, 31, 23, 59, 59, 1_500_000_000),
            at(9999, 12, 31, 23, 59, 59, 999),
            at(12345, 1, 2, 3, 4, 5, 6_000),
            at(-44, 3, 15, 12, 0, 0, 0),
            Utc::now(),
        ] {
            let mut ours = String::new();
            write_timestamp(&mut ours, &t).expect("write");
            assert_eq!(
                ours,
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "{t:?}"
            );
        }
    }

    #[test]
    fn messaging_spans_never_reach_the_log_filter() {
        let f = filter(&LogConfig {
            format: None,
            filter: Some("trace".to_owned()),
            debug: false,
        })
        .expect("filter");
        assert!(f.to_string().contains("kafka_otel=off"), "{f}");
    }
}
