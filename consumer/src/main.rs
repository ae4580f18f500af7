//! `consumer`: load config, init telemetry, bind, run, exit 0/1/2.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::Parser;
use common::{config::ConfigSource, exit};
use consumer::config::{self, Cli, Command};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { addr }) = &cli.command {
        return healthcheck(addr.as_deref());
    }
    let config = match ConfigSource::load(&config::all_keys(), &cli.opts.flags())
        .and_then(|src| config::validate(&src))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("consumer: {e}");
            return code(exit::USAGE);
        }
    };
    let telemetry = match common::telemetry::init(&config.log, "consumer") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("consumer: {e}");
            return code(exit::USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return code(exit::FAILURE);
        }
    };
    let exit_code = runtime.block_on(async move {
        let listener = match common::http::bind(config.http_addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return code(exit::FAILURE);
            }
        };
        let shutdown = CancellationToken::new();
        common::shutdown::cancel_on_signal(shutdown.clone());
        match consumer::run(config, listener, shutdown).await {
            Ok(()) => code(exit::OK),
            Err(e) => {
                tracing::error!(error = %e, "consumer failed");
                code(exit::FAILURE)
            }
        }
    });
    // Spans still buffered are exported before the process exits (a Job
    // must not lose its last spans).
    drop(runtime);
    telemetry.shutdown();
    exit_code
}

fn healthcheck(addr: Option<&str>) -> ExitCode {
    let raw = addr
        .map(str::to_owned)
        .or_else(|| std::env::var("HTTP_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let Ok(mut addr) = raw.parse::<SocketAddr>() else {
        eprintln!("healthcheck: {raw:?} is not IP:PORT");
        return code(exit::USAGE);
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
            return code(exit::FAILURE);
        }
    };
    match rt.block_on(common::http::probe(
        addr,
        "/healthz",
        Duration::from_secs(3),
    )) {
        Ok(200) => code(exit::OK),
        Ok(status) => {
            eprintln!("healthcheck: http://{addr}/healthz answered {status}");
            code(exit::FAILURE)
        }
        Err(e) => {
            eprintln!("healthcheck: {e}");
            code(exit::FAILURE)
        }
    }
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}
