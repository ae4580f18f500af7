//! `producer`: parse, then [`common::service::main`] (config, telemetry,
//! runtime, sidecar port, signals) around [`producer::run`]; exit 0 when
//! every record was acknowledged, 1 when not, 2 for bad configuration or input.

use std::process::ExitCode;

use common::{config::ConfigSource, exit, keys::Invocation, service};
use producer::{
    config::{self, Source},
    ProducerError,
};

// The static musl build (the image) allocates with mimalloc: musl's own
// allocator made these services 2-3x slower, most of it in system time
// (BENCHMARKS.md, the "static musl" rows).
#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let flags = match config::SERVICE.parse_args() {
        Invocation::Healthcheck(addr) => return service::healthcheck(addr.as_deref()),
        Invocation::Run(flags) => flags,
    };
    service::main(
        "producer",
        || ConfigSource::load(&config::all_keys(), &flags).and_then(|src| config::validate(&src)),
        |c| &c.log,
        |c| c.http_addr,
        |config, listener, shutdown| async move {
            let expected = match &config.source {
                Source::Demo { count, .. } => Some(*count),
                Source::Input { .. } => None,
            };
            match producer::run(config, listener, shutdown).await {
                Ok(summary) => {
                    summary.log();
                    exit::OK
                }
                Err(ProducerError::Incomplete {
                    summary, reason, ..
                }) if summary.records > 0 => {
                    summary.log();
                    let not_acked = summary.records.saturating_sub(summary.acked);
                    tracing::error!(
                        acked = summary.acked,
                        not_acked,
                        "producer failed: {} of {} records acknowledged, {not_acked} not acknowledged: {reason}",
                        summary.acked,
                        summary.records
                    );
                    exit::FAILURE
                }
                Err(e @ ProducerError::Input(_)) => {
                    tracing::error!(error = %e, "producer: bad input");
                    exit::USAGE
                }
                Err(e) => {
                    match expected {
                        Some(n) => tracing::error!(
                            acked = 0,
                            not_acked = n,
                            error = %e,
                            "producer failed: 0 of {n} records acknowledged, {n} not acknowledged"
                        ),
                        None => {
                            tracing::error!(acked = 0, error = %e, "producer failed: no record acknowledged")
                        }
                    }
                    exit::FAILURE
                }
            }
        },
    )
}
