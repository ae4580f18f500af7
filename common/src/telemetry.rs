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

use std::{fmt, io::IsTerminal};

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};
use tracing::{field::Field, Event, Subscriber};
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
pub enum TelemetryError {
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
pub fn filter(cfg: &LogConfig) -> Result<EnvFilter, TelemetryError> {
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
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn tracing_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter. A Job calls
    /// this before exiting so its last spans are not lost.
    pub fn shutdown(self) {
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
pub fn init(cfg: &LogConfig, service: &'static str) -> Result<Telemetry, TelemetryError> {
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
        let mut fields = JsonFields::default();
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
        if crate::trace::enabled() {
            let span = tracing::Span::current();
            if !span.is_none() {
                let cx = span.context();
                let sc = cx.span().span_context().clone();
                if sc.is_valid() {
                    line.insert("trace_id".into(), sc.trace_id().to_string().into());
                    line.insert("span_id".into(), sc.span_id().to_string().into());
                }
            }
        }
        let text =
            serde_json::to_string(&serde_json::Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's fields as JSON values, keeping their order.
#[derive(Default)]
struct JsonFields {
    message: Option<String>,
    fields: Vec<(String, serde_json::Value)>,
}

impl JsonFields {
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

impl tracing::field::Visit for JsonFields {
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
