//! The sidecar's HTTP/1 server, built to stay up when clients misbehave.
//!
//! Any pod that can reach the port can open connections and hold them:
//! send a header a byte at a time, send nothing at all, never read the
//! response. `axum::serve` has no timer, so hyper's header-read timeout is
//! off, and it has no idle timeout and no connection cap: a few hundred
//! slow clients took the consumer past its memory limit and a thousand took
//! every file descriptor, the Kafka connections' included (issue 17).
//!
//! Here every connection is bounded:
//! - the request head must arrive within [`Limits::header_read_timeout`]
//!   (hyper's timer; it runs again while a kept-alive connection waits for
//!   its next request, so it is the keep-alive timeout too);
//! - the head may not exceed [`Limits::max_header_bytes`] (hyper answers
//!   431) and hyper's read buffer stays at its minimum of 8 KiB;
//! - a connection that starts no request for [`Limits::idle_timeout`] after
//!   its last response (a client that never reads it, a trickled body) is
//!   closed;
//! - at most [`Limits::max_connections`] are open: one more sheds the
//!   oldest that is not in the middle of a request, so a probe, which sends
//!   its request as soon as it connects, always gets a slot.
//!
//! Every close for one of these reasons counts in
//! `kafka_service_http_connections_closed_total{reason}`.

use std::{
    collections::BTreeMap,
    io,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::Router;
use hyper::{body::Incoming, server::conn::http1, Request};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::metrics as m;

/// The bounds every connection is held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Time for a request head to arrive, from the connection's start or
    /// the previous response.
    pub header_read_timeout: Duration,
    /// Time without starting a request after the last one ended.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// Open connections at most; one more sheds the oldest idle one.
    pub max_connections: usize,
}

impl Limits {
    /// What the services run with. A probe or a scrape sends a few hundred
    /// bytes at once and needs one connection; the kubelet's probe timeout
    /// is 1 s by default. 512 connections of at most 8 KiB of buffer each
    /// stay far below the Deployment's memory limit and, with the Kafka
    /// connections, below a soft file limit of 1024.
    pub(crate) const SIDECAR: Self = Self {
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(10),
        max_header_bytes: 8 * 1024,
        max_connections: 512,
    };
}

/// Why the server closed a connection (the `reason` label).
#[derive(Debug, Clone, Copy)]
enum Closed {
    HeaderTimeout,
    IdleTimeout,
    Shed,
}

impl Closed {
    const ALL: [Self; 3] = [Self::HeaderTimeout, Self::IdleTimeout, Self::Shed];

    fn label(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::Shed => "shed",
        }
    }

    fn count(self) {
        metrics::counter!(m::HTTP_CONNECTIONS_CLOSED, "reason" => self.label()).increment(1);
    }
}

/// Creates the close counters at zero (so a scrape lists every reason).
pub(crate) fn init_metrics() {
    for reason in Closed::ALL {
        metrics::counter!(m::HTTP_CONNECTIONS_CLOSED, "reason" => reason.label()).absolute(0);
    }
}

/// One open connection, as the accept loop sees it.
#[derive(Debug)]
struct Conn {
    /// Between a request head arriving and its response being ready.
    busy: AtomicBool,
    /// Milliseconds since the server started, at the last request's end
    /// (or the accept).
    last_active_ms: AtomicU64,
    /// Cancelled to shed the connection.
    shed: CancellationToken,
}

/// The open connections by accept order, oldest first.
#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    open: BTreeMap<u64, Arc<Conn>>,
}

impl Registry {
    /// Registers a new connection; when `max` are open, sheds the oldest
    /// that is not busy (the oldest of all if every one is).
    fn admit(&mut self, max: usize, now_ms: u64) -> (u64, Arc<Conn>) {
        while self.open.len() >= max.max(1) {
            let victim = self
                .open
                .iter()
                .find(|(_, c)| !c.busy.load(Ordering::Relaxed))
                .or_else(|| self.open.iter().next())
                .map(|(id, _)| *id);
            let Some(id) = victim else { break };
            if let Some(conn) = self.open.remove(&id) {
                conn.shed.cancel();
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let conn = Arc::new(Conn {
            busy: AtomicBool::new(false),
            last_active_ms: AtomicU64::new(now_ms),
            shed: CancellationToken::new(),
        });
        self.open.insert(id, Arc::clone(&conn));
        (id, conn)
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` is
/// cancelled; then stops accepting, lets requests in progress finish and
/// closes every connection within a second.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: Limits,
) -> io::Result<()> {
    let started = Instant::now();
    let registry = Arc::new(Mutex::new(Registry::default()));
    let tracker = TaskTracker::new();
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true);
    let h1 = Arc::new(h1);
    let service = TowerToHyperService::new(router);

    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors (or a connection reset before we
                // took it): wait a little rather than spin on the error.
                tracing::warn!(error = %e, "HTTP sidecar cannot accept a connection");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (id, conn) = registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(limits.max_connections, millis(started));
        let registry = Arc::clone(&registry);
        let task = connection(
            stream,
            Arc::clone(&h1),
            service.clone(),
            Arc::clone(&conn),
            started,
            limits.idle_timeout,
            shutdown.clone(),
        );
        tracker.spawn(async move {
            task.await;
            registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .open
                .remove(&id);
        });
    }
    drop(listener);
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    // Whatever is still open is dropped with the runtime's tasks.
    for conn in registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .open
        .values()
    {
        conn.shed.cancel();
    }
    Ok(())
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One connection until it ends, times out, is shed or the server stops.
async fn connection(
    stream: tokio::net::TcpStream,
    h1: Arc<http1::Builder>,
    service: TowerToHyperService<Router>,
    conn: Arc<Conn>,
    started: Instant,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) {
    let state = Arc::clone(&conn);
    let tracked = hyper::service::service_fn(move |req: Request<Incoming>| {
        state.busy.store(true, Ordering::Relaxed);
        let response = hyper::service::Service::call(&service, req);
        let state = Arc::clone(&state);
        async move {
            let r = response.await;
            state
                .last_active_ms
                .store(millis(started), Ordering::Relaxed);
            state.busy.store(false, Ordering::Relaxed);
            r
        }
    });
    let served = h1.serve_connection(TokioIo::new(stream), tracked);
    tokio::pin!(served);
    let mut stopping = false;
    loop {
        let idle_since = conn.last_active_ms.load(Ordering::Relaxed);
        let idle_deadline = started + Duration::from_millis(idle_since) + idle_timeout;
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        Closed::HeaderTimeout.count();
                    }
                }
                return;
            }
            () = conn.shed.cancelled() => {
                if !shutdown.is_cancelled() {
                    Closed::Shed.count();
                }
                return;
            }
            () = shutdown.cancelled(), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(idle_deadline) => {
                let quiet = millis(started).saturating_sub(conn.last_active_ms.load(Ordering::Relaxed));
                if !conn.busy.load(Ordering::Relaxed) && quiet >= millis_of(idle_timeout) {
                    Closed::IdleTimeout.count();
                    return;
                }
            }
        }
    }
}

fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_registry_sheds_the_oldest_idle_connection() {
        let mut r = Registry::default();
        let (a, ca) = r.admit(3, 0);
        let (_, cb) = r.admit(3, 0);
        let (_, cc) = r.admit(3, 0);
        // The oldest is in the middle of a request: the next oldest goes.
        ca.busy.store(true, Ordering::Relaxed);
        let (d, _) = r.admit(3, 0);
        assert!(!ca.shed.is_cancelled());
        assert!(cb.shed.is_cancelled());
        assert!(!cc.shed.is_cancelled());
        assert_eq!(r.open.keys().copied().collect::<Vec<_>>(), [a, 2, d]);
        // All busy: the oldest of all.
        for c in r.open.values() {
            c.busy.store(true, Ordering::Relaxed);
        }
        r.admit(3, 0);
        assert!(ca.shed.is_cancelled());
        assert_eq!(r.open.len(), 3);
    }
}
