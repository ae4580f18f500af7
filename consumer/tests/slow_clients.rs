//! The consumer's sidecar under hostile clients (issue 17, finding 1).
//!
//! The `consumer` binary runs as a container runtime starts it, with a soft
//! open-file limit of 1024 under a hard one of 4096, in a group on the
//! shared broker. From this test process, 2 000 connections send a request
//! head a couple of kilobytes at a time (400 KB each, never finished) and
//! 1 000 send nothing; each is opened again a second after the server drops
//! it. While they press:
//! - `/healthz` and `/readyz` answer 200 within 1 s (the kubelet's default
//!   probe timeout), each probe on a new connection as the kubelet's are;
//! - the process's peak RSS stays under half the Deployment's memory limit
//!   (read from `k8s/base/consumer-deployment.yaml`);
//! - records produced meanwhile are all consumed (Kafka work continues);
//! - the soft open-file limit was raised to the hard one.
//!
//! A correctness bound, not a speed target. What stands in for the cluster:
//! the loopback interface for the pod network, `prlimit` for the runtime's
//! limits.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use testkit::{
    broker::{bootstrap, create_topic, repo_root},
    process::{free_addr, service_bin, Running},
    scrape::{http_get, poll_until, sum, wait_consumed},
    services::{produce, quick_group},
    unique,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

const SLOW_HEADERS: usize = 2_000;
const IDLE: usize = 1_000;
/// How long the clients press at least.
const ATTACK: Duration = Duration::from_secs(20);
/// Pause before a dropped client connects again: no tight loop.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// The kubelet's default probe timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `name` on this process's `PATH`.
fn on_path(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .unwrap_or_else(|| panic!("{name} not found on PATH (util-linux)"))
}

/// The consumer Deployment's memory limit, in bytes.
fn deployment_memory_limit() -> u64 {
    let yaml = std::fs::read_to_string(repo_root().join("k8s/base/consumer-deployment.yaml"))
        .expect("consumer Deployment");
    let limits = yaml.split_once("limits:").expect("resources.limits").1;
    let value = limits
        .lines()
        .find_map(|l| l.trim().strip_prefix("memory:"))
        .expect("limits.memory")
        .trim();
    let mib: u64 = value
        .strip_suffix("Mi")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("limits.memory {value:?} is not in Mi"));
    mib << 20
}

/// A `/proc/PID/status` field in bytes (`VmRSS`, `VmHWM`).
fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .strip_suffix(" kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The soft "Max open files" of `pid`.
fn soft_open_files(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Sleeps `d` or until `stop`; false when stopped.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// One client sending an unfinished request head of 400 KB, 2 KB every
/// 250 ms, reconnecting when the server drops it.
async fn slow_header(addr: SocketAddr, stop: CancellationToken, opened: Arc<AtomicU64>) {
    let pad = "a".repeat(2_000);
    while !stop.is_cancelled() {
        if let Ok(mut s) = TcpStream::connect(addr).await {
            opened.fetch_add(1, Ordering::Relaxed);
            let mut sent = 0usize;
            let mut ok = s
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: sidecar\r\n")
                .await
                .is_ok();
            while ok && sent < 400_000 {
                if !pause(&stop, Duration::from_millis(250)).await {
                    return;
                }
                let line = format!("X-Pad-{sent}: {pad}\r\n");
                ok = s.write_all(line.as_bytes()).await.is_ok();
                sent += line.len();
            }
            if ok {
                // All sent, never finished: hold it until the server lets go.
                hold(&mut s, &stop).await;
            }
        }
        if !pause(&stop, RECONNECT_AFTER).await {
            return;
        }
    }
}

/// One client that connects and sends nothing, reconnecting when dropped.
async fn idle(addr: SocketAddr, stop: CancellationToken, opened: Arc<AtomicU64>) {
    while !stop.is_cancelled() {
        if let Ok(mut s) = TcpStream::connect(addr).await {
            opened.fetch_add(1, Ordering::Relaxed);
            hold(&mut s, &stop).await;
        }
        if !pause(&stop, RECONNECT_AFTER).await {
            return;
        }
    }
}

/// Reads until the server closes the connection (or `stop`).
async fn hold(s: &mut TcpStream, stop: &CancellationToken) {
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            r = s.read(&mut buf) => if !matches!(r, Ok(n) if n > 0) { return },
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_memory_and_consumption_hold_under_slow_and_idle_connections() {
    // This process holds 3 000 sockets of its own.
    let (_, ours) = common::service::raise_open_file_limit().expect("raise our file limit");
    assert!(
        ours > 4_000 + (SLOW_HEADERS + IDLE) as u64,
        "this test needs a hard open-file limit above 7 000 (ulimit -Hn is {ours})"
    );
    let topic = unique("slow-clients");
    let group = unique("g-slow-clients");
    create_topic(&topic, 3).await;
    let http = free_addr();
    let consumer = service_bin("consumer");
    let consumer = consumer.to_str().expect("utf-8 path");
    let mut env = quick_group(&topic, &group);
    env.extend([
        ("KAFKA_BOOTSTRAP_SERVER", bootstrap()),
        ("HTTP_ADDR", http.to_string()),
    ]);
    let service = Running::start(
        on_path("prlimit"),
        &["--nofile=1024:4096", "--", consumer],
        &env,
    );
    let pid = service.pid();
    let (got, ready) = poll_until(http, "/readyz", Duration::from_secs(60), |s, _| s == 200).await;
    assert!(ready, "consumer never ready: {got:?}");
    assert_eq!(
        soft_open_files(pid),
        Some(4096),
        "the soft open-file limit was not raised to the hard one"
    );

    let stop = CancellationToken::new();
    let opened = Arc::new(AtomicU64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..SLOW_HEADERS {
        clients.spawn(slow_header(http, stop.clone(), Arc::clone(&opened)));
    }
    for _ in 0..IDLE {
        clients.spawn(idle(http, stop.clone(), Arc::clone(&opened)));
    }
    let started = Instant::now();

    // The kubelet: a probe of each kind every 200 ms on a new connection.
    // It is another process, not a task queued behind 3 000 clients: its
    // own thread and runtime, so what is timed is the server's answer.
    let probes = std::thread::spawn({
        let stop = stop.clone();
        move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("probe runtime")
                .block_on(async move {
                    let mut failures = Vec::new();
                    let (mut count, mut slowest) = (0u32, Duration::ZERO);
                    while pause(&stop, Duration::from_millis(200)).await {
                        for path in ["/healthz", "/readyz"] {
                            let t0 = Instant::now();
                            let got = common::http::probe(http, path, PROBE_TIMEOUT).await;
                            let took = t0.elapsed();
                            count += 1;
                            slowest = slowest.max(took);
                            if !matches!(got, Ok(200)) || took > PROBE_TIMEOUT {
                                failures.push(format!(
                                    "{path} at {:.1}s: {got:?} after {took:?}",
                                    started.elapsed().as_secs_f64()
                                ));
                            }
                        }
                    }
                    (count, slowest, failures)
                })
        }
    });
    let rss = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut highest = 0;
            while pause(&stop, Duration::from_millis(100)).await {
                highest = highest.max(proc_status_bytes(pid, "VmRSS").unwrap_or(0));
            }
            highest
        }
    });

    // Kafka work while they press.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = 500;
    produce(&topic, n, "slow-clients", "k-{seq % 8}").await;
    let consumed = wait_consumed(http, &topic, n, Duration::from_secs(60)).await;
    if let Some(rest) = ATTACK.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let pressed = started.elapsed();
    let peak = proc_status_bytes(pid, "VmHWM").expect("VmHWM");
    let (_, metrics) = http_get(http, "/metrics").await;
    stop.cancel();
    let (count, slowest, failures) = probes.join().expect("probes");
    let highest_rss = rss.await.expect("rss");
    while clients.join_next().await.is_some() {}

    let closed = |reason: &str| {
        sum(
            &metrics,
            "kafka_service_http_connections_closed_total",
            &[&format!("reason=\"{reason}\"")],
        ) as u64
    };
    let limit = deployment_memory_limit();
    eprintln!(
        "{SLOW_HEADERS} slow-header + {IDLE} idle clients for {:.1}s: {} connections opened; \
         server closed {} shed, {} header timeouts, {} idle; {count} probes, slowest {slowest:?}; \
         peak RSS {:.1} MiB (sampled {:.1} MiB, limit/2 {} MiB); {consumed} of {n} records consumed",
        pressed.as_secs_f64(),
        opened.load(Ordering::Relaxed),
        closed("shed"),
        closed("header_timeout"),
        closed("idle_timeout"),
        peak as f64 / f64::from(1 << 20),
        highest_rss as f64 / f64::from(1 << 20),
        limit >> 21,
    );
    // The pressure was real: every client connected, the server had to
    // drop connections to keep going.
    assert!(
        opened.load(Ordering::Relaxed) >= (SLOW_HEADERS + IDLE) as u64,
        "not every client connected"
    );
    assert!(
        closed("shed") + closed("header_timeout") > 0,
        "the server never had to drop a connection"
    );
    assert!(
        failures.is_empty(),
        "{} of {count} probes failed or took over {PROBE_TIMEOUT:?}: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    assert!(
        peak < limit / 2,
        "peak RSS {peak} B is not under half the Deployment's memory limit ({limit} B)"
    );
    assert_eq!(consumed, n, "Kafka work stopped under the load");

    service.terminate();
    let out = service.finish(Duration::from_secs(20)).await;
    assert_eq!(
        out.code,
        Some(0),
        "clean exit after the load: {}",
        out.stderr
    );
}
