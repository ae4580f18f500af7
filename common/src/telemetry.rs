//! Logging: JSON lines by default, human-readable when `LOG_FORMAT=pretty` or
//! stdout is a terminal; level from `RUST_LOG`, else `DEBUG`, else info.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::{LogConfig, LogFormat};

/// Errors setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter did not parse (validated earlier, so rare).
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(String),
    /// A global subscriber already exists.
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
}

/// The filter in effect for `cfg`.
pub fn filter(cfg: &LogConfig) -> Result<EnvFilter, TelemetryError> {
    let directives = match &cfg.filter {
        Some(f) => f.clone(),
        // Our crates at the chosen level; the Kafka client one step quieter,
        // since its retries are reported by us with context. rskafka's batcher
        // warns "BroadcastOnce dropped without producing" whenever a
        // BatchProducer is dropped, even after every record was acknowledged.
        None if cfg.debug => "debug,rskafka=info,rskafka::client::producer::broadcast=error,hyper=info".to_owned(),
        None => "info,rskafka=warn,rskafka::client::producer::broadcast=error".to_owned(),
    };
    EnvFilter::try_new(directives).map_err(|e| TelemetryError::Filter(e.to_string()))
}

/// Installs the global subscriber. Logs go to stdout (Kubernetes collects it).
pub fn init(cfg: &LogConfig) -> Result<(), TelemetryError> {
    let filter = filter(cfg)?;
    let format = cfg.format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_target(true),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().with_target(true)).try_init(),
    };
    result.map_err(|e| TelemetryError::Install(e.to_string()))
}
