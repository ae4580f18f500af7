//! What both binaries' `main` does: load and validate the configuration,
//! initialise telemetry, build the runtime, bind the sidecar port, wire
//! SIGTERM/SIGINT to one cancellation token, run, flush traces, and map the
//! outcome to an exit code ([`crate::exit`]). Also the `healthcheck`
//! subcommand for a scratch image's `HEALTHCHECK`.

use std::{future::Future, net::SocketAddr, process::ExitCode, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{ConfigError, LogConfig},
    exit,
};

/// Converts one of [`crate::exit`]'s codes.
pub(crate) fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Runs a service binary. `load` reads and validates the configuration (a
/// failure is one line on stderr and exit 2); `body` gets the configuration,
/// the bound sidecar listener and the shutdown token, and returns the exit
/// code. Buffered spans are exported before the process exits.
pub fn main<C, L, F, Fut>(
    name: &'static str,
    load: L,
    log: fn(&C) -> &LogConfig,
    http_addr: fn(&C) -> SocketAddr,
    body: F,
) -> ExitCode
where
    L: FnOnce() -> Result<C, ConfigError>,
    F: FnOnce(C, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = i32>,
{
    let config = match load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return exit_code(exit::USAGE);
        }
    };
    let telemetry = match crate::telemetry::init(log(&config), name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e}");
            return exit_code(exit::USAGE);
        }
    };
    match raise_open_file_limit() {
        Ok((from, to)) if from < to => {
            tracing::info!(from, to, "raised the soft open-file limit");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the soft open-file limit"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return exit_code(exit::FAILURE);
        }
    };
    let addr = http_addr(&config);
    let code = runtime.block_on(async move {
        let listener = match crate::http::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return exit::FAILURE;
            }
        };
        let shutdown = CancellationToken::new();
        crate::shutdown::cancel_on_signal(shutdown.clone());
        body(config, listener, shutdown).await
    });
    // The exporter's HTTP client must not run inside the runtime; and a Job
    // must not lose its last spans.
    drop(runtime);
    telemetry.shutdown();
    exit_code(code)
}

/// Raises the soft open-file limit to the hard one; the soft limit before
/// and after. Container runtimes often start processes at a soft limit of
/// 1024 with a far higher hard one; the sidecar's connection cap keeps
/// within 1024, but the Kafka connections should not have to share what is
/// left.
pub fn raise_open_file_limit() -> std::io::Result<(u64, u64)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // RLIM_INFINITY (None) is refused for NOFILE on Linux (above nr_open)
    // and macOS (above OPEN_MAX); 1 M is Linux's default nr_open.
    const CEILING: u64 = 1 << 20;
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    let target = limit.maximum.unwrap_or(u64::MAX).min(CEILING);
    if soft >= target {
        return Ok((soft, soft));
    }
    let raised = Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised)?;
    Ok((soft, target))
}

/// `healthcheck [--addr IP:PORT]`: probes the service's own `/healthz` and
/// exits 0 on 200. `HTTP_ADDR` is the default; `0.0.0.0` is probed on
/// 127.0.0.1.
pub fn healthcheck(addr: Option<&str>) -> ExitCode {
    let raw = addr
        .map(str::to_owned)
        .or_else(|| std::env::var("HTTP_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let Ok(mut addr) = raw.parse::<SocketAddr>() else {
        eprintln!("healthcheck: {raw:?} is not IP:PORT");
        return exit_code(exit::USAGE);
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("healthcheck: {e}");
            return exit_code(exit::FAILURE);
        }
    };
    match rt.block_on(crate::http::probe(addr, "/healthz", Duration::from_secs(3))) {
        Ok(200) => exit_code(exit::OK),
        Ok(status) => {
            eprintln!("healthcheck: http://{addr}/healthz answered {status}");
            exit_code(exit::FAILURE)
        }
        Err(e) => {
            eprintln!("healthcheck: {e}");
            exit_code(exit::FAILURE)
        }
    }
}
