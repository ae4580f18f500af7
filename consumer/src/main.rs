//! `consumer`: parse, then [`common::service::main`] (config, telemetry,
//! runtime, sidecar port, signals) around [`consumer::run`]; exit 0 after a
//! clean shutdown, 1 on failure, 2 for bad configuration.

use std::process::ExitCode;

use common::{config::ConfigSource, exit, keys::Invocation, service};
use consumer::config;

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
        "consumer",
        || ConfigSource::load(&config::all_keys(), &flags).and_then(|src| config::validate(&src)),
        |c| &c.log,
        |c| c.http_addr,
        |config, listener, shutdown| async move {
            match consumer::run(config, listener, shutdown).await {
                Ok(()) => exit::OK,
                Err(e) => {
                    tracing::error!(error = %e, "consumer failed");
                    exit::FAILURE
                }
            }
        },
    )
}
