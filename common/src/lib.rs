//! Shared foundation of the `producer` and `consumer` services.
//!
//! - [`config`]: layered configuration (defaults < TOML file < environment <
//!   flags), one-line validation errors, [`config::Secret`].
//! - [`keys`]: every configuration key declared once (env, flag, default,
//!   allowed values, help); `--help` and the README tables come from it.
//! - [`kafka`]: connection settings (bootstrap, client id, timeouts; the
//!   security types come from `kafka-base`) and rskafka's client.
//! - [`http`]: the `/healthz`, `/readyz`, `/metrics` sidecar and a probe client.
//! - [`telemetry`]: JSON or pretty logs with trace ids; OTLP trace export.
//! - [`trace`]: messaging spans and W3C trace context in record headers.
//! - [`metrics`]: the Prometheus recorder and every metric name.
//! - `shutdown`: SIGTERM/SIGINT → one cancellation token.
//! - [`service`]: the shared `main` (config, telemetry, runtime, exit codes) and `healthcheck`.
//! - [`exit`]: process exit codes shared by both binaries.
//! - [`window`]: a good/bad ratio over a sliding time window (the canary's
//!   availability gauges).

pub mod config;
pub mod exit;
pub mod http;
pub mod kafka;
pub mod keys;
pub mod metrics;
pub mod service;
mod shutdown;
pub mod telemetry;
pub mod trace;
pub mod window;
