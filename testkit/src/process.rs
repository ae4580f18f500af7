//! Service binaries as child processes, the way Kubernetes runs them: an
//! exact environment (nothing inherited), JSON logs captured, real signals.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// An unused local address for a binary's `HTTP_ADDR`.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// An unused local port.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// Polls `f` every 100 ms until it holds or `within` passes; its last answer.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// The workspace binary `name` (`producer`, `consumer`) built from the
/// current sources: built once per test process with `cargo build`, so a
/// test outside the binary's own package never runs a stale one.
///
/// With `SKIP_BUILD=1` the binary next to the test's own directory is used
/// as it is: `make test` sets it for `cargo test --workspace --all-targets`,
/// which builds both binaries before it runs any test. A `cargo build -p`
/// here would build them a second time with fewer features unified (the
/// dev-dependencies' `figment/test`, `reqwest/json`…), and with them every
/// crate in between.
pub fn service_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let prebuilt = std::env::var("SKIP_BUILD").is_ok_and(|v| v == "1");
    if !prebuilt && built.insert(name.to_owned()) {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", name, "--bin", name])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the {name} binary failed");
    }
    assert!(
        path.is_file(),
        "{} missing after cargo build{}",
        path.display(),
        if prebuilt {
            " (SKIP_BUILD=1: build it first)"
        } else {
            ""
        }
    );
    path
}

/// A consumer process whose JSON log goes to a file.
#[derive(Debug)]
pub struct Member {
    /// The process.
    pub child: Child,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
    /// Its sidecar, `IP:PORT`.
    pub http: String,
    _dir: tempfile::TempDir,
}

impl Member {
    /// A consumer binary `bin` in `group` on `topic` with quick test
    /// timeouts, a free sidecar port, and `extra` keys on top.
    pub fn start(
        bin: impl AsRef<Path>,
        topic: &str,
        group: &str,
        bootstrap: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let http = format!("127.0.0.1:{}", free_port());
        let mut env: BTreeMap<String, String> = [
            ("KAFKA_BOOTSTRAP_SERVER", bootstrap),
            ("KAFKA_TOPIC", topic),
            ("KAFKA_CONSUMER_GROUP", group),
            ("LOG_FORMAT", "json"),
            ("CONSUMER_SESSION_TIMEOUT_MS", "10000"),
            ("CONSUMER_HEARTBEAT_INTERVAL_MS", "500"),
            ("CONSUMER_COMMIT_INTERVAL_MS", "500"),
            ("CONSUMER_DRAIN_TIMEOUT_MS", "4000"),
            ("CONSUMER_FETCH_MAX_WAIT_MS", "100"),
            ("CONSUMER_METADATA_REFRESH_MS", "1000"),
            // The timeouts above are the classic protocol's (the consumer
            // protocol's are the broker's); `extra` may choose another
            // protocol, or "" for the default (chosen from the broker).
            ("CONSUMER_GROUP_PROTOCOL", "classic"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.insert("HTTP_ADDR".to_owned(), http);
        Self::with_env(bin, &env)
    }

    /// The consumer binary `bin` with exactly `env` (nothing inherited); its
    /// sidecar is expected at `HTTP_ADDR` (the service default when unset).
    pub fn with_env(bin: impl AsRef<Path>, env: &BTreeMap<String, String>) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("consumer.log");
        let http = env
            .get("HTTP_ADDR")
            .cloned()
            .unwrap_or_else(|| "0.0.0.0:8080".to_owned());
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("dup");
        let child = Command::new(bin.as_ref())
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn consumer");
        Self {
            child,
            log,
            http,
            _dir: dir,
        }
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Every JSON line of its log.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The last `n` lines of its log, newest first (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        text.lines().rev().take(n).collect::<Vec<_>>().join("\n")
    }

    /// The body of its `/metrics`.
    pub fn metrics(&self) -> String {
        self.get("/metrics").1
    }

    /// (status, body) of a GET of `path` on its sidecar.
    pub fn get(&self, path: &str) -> (u16, String) {
        crate::scrape::http_get_blocking(&self.http, path)
    }

    /// (status, body) of a GET of `path` bounded by 2 s, for a sidecar that
    /// may be busy: status 0 when it did not answer in time.
    pub fn probe(&self, path: &str) -> (u16, String) {
        crate::scrape::http_probe_blocking(&self.http, path, Duration::from_secs(2))
    }

    /// (partition, offset) of every record this member logged.
    pub fn records(&self) -> Vec<(i64, i64)> {
        self.lines()
            .into_iter()
            .filter(|v| v["message"] == "record")
            .filter_map(|v| Some((v["partition"].as_i64()?, v["offset"].as_i64()?)))
            .collect()
    }

    /// The partitions of the last assignment this member logged, with its generation.
    pub fn assignment(&self) -> Option<(i64, BTreeSet<String>)> {
        self.lines()
            .into_iter()
            .rfind(|v| v["message"] == "assignment received")
            .map(|v| {
                let parts = v["partitions"].as_str().unwrap_or_default();
                let set = parts
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                (v["generation"].as_i64().unwrap_or(-1), set)
            })
    }

    /// The partitions it holds after its last assignment or revocation
    /// (the consumer protocol assigns and revokes incrementally).
    pub fn owned(&self) -> Option<BTreeSet<String>> {
        self.lines()
            .into_iter()
            .rfind(|v| {
                v["message"] == "assignment received" || v["message"] == "partitions revoked"
            })
            .map(|v| {
                v["partitions"]
                    .as_str()
                    .unwrap_or_default()
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
    }

    /// SIGKILL: no drain, no commit, no LeaveGroup.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, what Kubernetes sends.
    pub fn sigterm(&self) {
        sigterm(self.child.id());
    }

    /// Its exit code once it exits within `within`; else it is killed and
    /// the answer is `None`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to `pid`; fails the test when `kill` does.
pub fn sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -TERM {pid} failed");
}

/// Every assignment is from one generation and the members split `n` partitions.
pub fn balanced(members: &[&Member], n: usize) -> bool {
    let assignments: Vec<_> = members.iter().filter_map(|m| m.assignment()).collect();
    if assignments.len() != members.len() {
        return false;
    }
    let generations: BTreeSet<i64> = assignments.iter().map(|(g, _)| *g).collect();
    let all: BTreeSet<&String> = assignments.iter().flat_map(|(_, p)| p.iter()).collect();
    let total: usize = assignments.iter().map(|(_, p)| p.len()).sum();
    generations.len() == 1 && all.len() == n && total == n
}

/// (partition, offset) → times handled, over all `members`.
pub fn deliveries(members: &[&Member]) -> BTreeMap<(i64, i64), usize> {
    let mut out = BTreeMap::new();
    for m in members {
        for r in m.records() {
            *out.entry(r).or_insert(0) += 1;
        }
    }
    out
}

/// A finished binary run.
#[derive(Debug)]
pub struct Finished {
    /// The exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout (the JSON log lines).
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
    /// From spawn to exit.
    pub elapsed: Duration,
}

impl Finished {
    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// stdout's log lines, parsed.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The last non-empty line of stdout.
    pub fn last_line(&self) -> &str {
        self.stdout.trim().lines().last().unwrap_or_default()
    }
}

/// A service binary running with exactly `env` (nothing inherited). Its
/// stdout and stderr are read as it writes them (a full pipe would block
/// the service's logging, and with it the service).
#[derive(Debug)]
pub struct Running {
    child: tokio::process::Child,
    stdout: tokio::task::JoinHandle<Vec<u8>>,
    stderr: tokio::task::JoinHandle<Vec<u8>>,
    started: Instant,
}

fn drain(
    pipe: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut buf).await;
        }
        buf
    })
}

impl Running {
    /// Starts `bin args…` with `env` and JSON logs.
    pub fn start(bin: impl AsRef<Path>, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut cmd = tokio::process::Command::new(bin.as_ref());
        cmd.env_clear()
            .env("LOG_FORMAT", "json")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn the service binary");
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Self {
            child,
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    /// Its process id (for `/proc/PID/…`).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// Sends SIGTERM (what Kubernetes sends).
    pub fn terminate(&self) {
        sigterm(self.child.id().expect("still running"));
    }

    /// Waits for the exit (at most `limit`, then kills it and fails).
    pub async fn finish(mut self, limit: Duration) -> Finished {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => {
                let _ = self.child.kill().await;
                let stdout = self.stdout.await.unwrap_or_default();
                panic!(
                    "the binary did not exit within {limit:?}: it hangs. Its output:\n{}",
                    String::from_utf8_lossy(&stdout)
                );
            }
        };
        let elapsed = self.started.elapsed();
        let stdout = self.stdout.await.expect("stdout reader");
        let stderr = self.stderr.await.expect("stderr reader");
        Finished {
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed,
        }
    }
}
