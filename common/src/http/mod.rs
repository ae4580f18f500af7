//! The sidecar HTTP server: `/healthz`, `/readyz`, `/metrics` on one port.
//!
//! Liveness and readiness are separate on purpose: `/healthz` fails only
//! when the service's main loop stops beating (restart me), `/readyz` fails
//! while the service cannot do its job (do not count me), with a short reason.
//! The server itself ([`server`]) bounds what each client can hold.

mod server;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_util::sync::CancellationToken;

/// Shared liveness and readiness state, cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    started: Instant,
    /// Milliseconds since `started` at the main loop's last beat.
    last_beat_ms: AtomicU64,
    /// How long the main loop may go without a beat before `/healthz` fails.
    stall_after: Duration,
    /// `None` when ready, otherwise why not.
    not_ready: RwLock<Option<String>>,
}

impl Health {
    /// New state: alive, not ready ("starting").
    pub fn new(stall_after: Duration) -> Self {
        Self {
            inner: Arc::new(HealthInner {
                started: Instant::now(),
                last_beat_ms: AtomicU64::new(0),
                stall_after,
                not_ready: RwLock::new(Some("starting".to_owned())),
            }),
        }
    }

    /// The main loop is alive.
    pub fn beat(&self) {
        let ms = u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// Ready to do the job.
    pub fn set_ready(&self) {
        self.beat();
        if let Ok(mut g) = self.inner.not_ready.write() {
            *g = None;
        }
    }

    /// Not ready, for `reason` (one short line).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        if let Ok(mut g) = self.inner.not_ready.write() {
            *g = Some(reason.into());
        }
    }

    /// `Ok` while the main loop beat recently.
    pub(crate) fn liveness(&self) -> Result<(), String> {
        let now = self.inner.started.elapsed();
        let last = Duration::from_millis(self.inner.last_beat_ms.load(Ordering::Relaxed));
        let silent = now.saturating_sub(last);
        if silent > self.inner.stall_after {
            Err(format!("main loop silent for {:.1}s", silent.as_secs_f64()))
        } else {
            Ok(())
        }
    }

    /// `Ok` when ready, else the reason.
    pub fn readiness(&self) -> Result<(), String> {
        match self.inner.not_ready.read() {
            Ok(g) => g.clone().map_or(Ok(()), Err),
            Err(_) => Err("readiness state poisoned".to_owned()),
        }
    }
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: PrometheusHandle,
}

/// The sidecar's routes.
pub(crate) fn router(health: Health, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { health, metrics })
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.liveness() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// Serves `router` on an already-bound listener until `shutdown` is
/// cancelled, within the sidecar's connection limits.
async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    server::serve(listener, router, shutdown, server::Limits::SIDECAR).await
}

/// Binds the sidecar address with a clear error.
///
/// The accept queue is as long as the kernel allows (`somaxconn`, 4096 on
/// Linux since 5.4) rather than tokio's 1024: when thousands of clients
/// connect at once, a full queue drops the kubelet's SYN, and its retry a
/// second later is already past the probe's timeout.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    const BACKLOG: u32 = 4096;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    };
    socket
        .and_then(|s| {
            // As TcpListener::bind does: a restarted service rebinds at once.
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(BACKLOG)
        })
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Errors of the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The port is taken or not ours to bind.
    #[error("cannot listen on HTTP_ADDR={addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The probe could not talk to the server.
    #[error("probe of http://{addr}{path} failed: {problem}")]
    Probe {
        /// The address probed.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// What happened.
        problem: String,
    },
}

/// A minimal HTTP/1.0 GET, for the binaries' `healthcheck` subcommand: a
/// scratch image has no curl. Returns the status code.
pub async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, HttpError> {
    let err = |problem: String| HttpError::Probe {
        addr,
        path: path.to_owned(),
        problem,
    };
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| err(e.to_string()))?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| err(e.to_string()))?;
        let mut buf = Vec::with_capacity(256);
        // The status line is all we need; cap what we read.
        let mut chunk = [0u8; 256];
        while buf.len() < 4096 {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| err(e.to_string()))?;
            if n == 0 || buf.windows(2).any(|w| w == b"\r\n") {
                break;
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        let line = String::from_utf8_lossy(&buf);
        line.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| {
                err(format!(
                    "not an HTTP response: {:?}",
                    line.lines().next().unwrap_or_default()
                ))
            })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| err(format!("no answer within {timeout:?}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probes_report_liveness_and_readiness() {
        let health = Health::new(Duration::from_secs(60));
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let token = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            router(health.clone(), handle),
            token.clone(),
        ));

        let t = Duration::from_secs(5);
        assert_eq!(probe(addr, "/healthz", t).await.expect("probe"), 200);
        assert_eq!(probe(addr, "/readyz", t).await.expect("probe"), 503);
        health.set_ready();
        assert_eq!(probe(addr, "/readyz", t).await.expect("probe"), 200);
        health.set_not_ready("partition 3 stalled");
        assert_eq!(probe(addr, "/readyz", t).await.expect("probe"), 503);
        assert_eq!(probe(addr, "/metrics", t).await.expect("probe"), 200);
        assert_eq!(probe(addr, "/nope", t).await.expect("probe"), 404);

        token.cancel();
        server.await.expect("join").expect("serve");
        assert!(probe(addr, "/healthz", Duration::from_secs(1))
            .await
            .is_err());
    }

    #[test]
    fn liveness_fails_when_the_loop_goes_silent() {
        let health = Health::new(Duration::from_millis(0));
        std::thread::sleep(Duration::from_millis(5));
        let why = health.liveness().expect_err("silent past stall_after");
        assert!(why.starts_with("main loop silent for "), "{why}");
    }
}

/// The running sidecar of one service: its health state and server task.
#[derive(Debug)]
pub struct Sidecar {
    /// Liveness and readiness, shared with the service's loops.
    pub health: Health,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Sidecar {
    /// Installs the metrics recorder, records `kafka_service_build_info` for
    /// `service`, and serves `/healthz`, `/readyz`, `/metrics` on `listener`.
    pub fn start(
        listener: TcpListener,
        service: &'static str,
    ) -> Result<Self, crate::metrics::MetricsError> {
        let metrics = crate::metrics::install()?;
        crate::metrics::record_build_info(service);
        server::init_metrics();
        let health = Health::new(Duration::from_secs(30));
        health.beat();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            router(health.clone(), metrics),
            stop.clone(),
        ));
        Ok(Self {
            health,
            stop,
            server,
        })
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(self) {
        self.stop.cancel();
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP sidecar stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "HTTP sidecar task failed"),
        }
    }
}
