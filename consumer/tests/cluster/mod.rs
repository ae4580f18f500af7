//! Shared helpers for multi-process tests: consumer processes with their
//! JSON logs, a private broker that can be stopped and restarted, waits.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

/// A consumer process whose JSON log goes to a file.
pub struct Member {
    pub child: Child,
    pub log: PathBuf,
    pub http: String,
    pub _dir: tempfile::TempDir,
}

impl Member {
    pub fn start(topic: &str, group: &str, bootstrap: &str, extra: &[(&str, &str)]) -> Self {
        let http = format!("127.0.0.1:{}", free_port());
        let mut env: BTreeMap<String, String> = [
            ("KAFKA_BOOTSTRAP_SERVER", bootstrap),
            ("KAFKA_TOPIC", topic),
            ("KAFKA_CONSUMER_GROUP", group),
            ("HTTP_ADDR", &http),
            ("LOG_FORMAT", "json"),
            ("CONSUMER_SESSION_TIMEOUT_MS", "10000"),
            ("CONSUMER_HEARTBEAT_INTERVAL_MS", "500"),
            ("CONSUMER_COMMIT_INTERVAL_MS", "500"),
            ("CONSUMER_DRAIN_TIMEOUT_MS", "4000"),
            ("CONSUMER_FETCH_MAX_WAIT_MS", "100"),
            ("CONSUMER_METADATA_REFRESH_MS", "1000"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.insert("HTTP_ADDR".to_owned(), http);
        Self::with_env(&env)
    }

    /// A consumer with exactly `env` (nothing inherited); its sidecar is
    /// expected at `HTTP_ADDR` (the service default when unset).
    pub fn with_env(env: &BTreeMap<String, String>) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("consumer.log");
        let http = env
            .get("HTTP_ADDR")
            .cloned()
            .unwrap_or_else(|| "0.0.0.0:8080".to_owned());
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("dup");
        let child = Command::new(env!("CARGO_BIN_EXE_consumer"))
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

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The last `n` lines of its log, newest first (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        text.lines().rev().take(n).collect::<Vec<_>>().join("\n")
    }

    /// Every JSON line of its log.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The body of its `/metrics`.
    pub fn metrics(&self) -> String {
        self.get("/metrics").1
    }

    /// (status, body) of a GET of `path` on its sidecar.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(&self.http).expect("connect to the sidecar");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        std::io::Write::write_all(
            &mut s,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("request");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (code, body.to_owned())
    }

    /// (partition, offset) of every record this member logged.
    pub fn records(&self) -> Vec<(i64, i64)> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "record")
            .filter_map(|v| Some((v["partition"].as_i64()?, v["offset"].as_i64()?)))
            .collect()
    }

    /// The partitions of the last assignment this member logged, with its generation.
    pub fn assignment(&self) -> Option<(i64, BTreeSet<String>)> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
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

    /// SIGKILL: no drain, no commit, no LeaveGroup.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

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

/// The sum of a metric's samples in a Prometheus text `body` whose labels
/// contain all of `labels`; None when there is no such sample.
pub fn metric(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let samples: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

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

pub fn kafka_tool(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/kafka-tool.sh"))
        .args(args)
        .output()
        .expect("kafka-tool.sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A broker of its own (other ports and state dir), so stopping it does not
/// disturb the other tests.
pub struct PrivateBroker {
    env: Vec<(String, String)>,
    root: PathBuf,
}

impl PrivateBroker {
    pub fn start() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        // Unique per instance: tests of one binary run in parallel.
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Below the kernel's ephemeral range (32768 and up): a stopped broker
        // must get its ports back on restart, and an outgoing connection of
        // another test could otherwise take one as its local port meanwhile
        // (seen: "Address already in use" on restart).
        let base = 20000 + ((std::process::id() % 400) as u16 * 30 + n * 5) % 12000;
        let dir = std::env::temp_dir().join(format!("kafka-private-{}-{n}", std::process::id()));
        let env = vec![
            ("KAFKA_LOCAL_DIR".to_owned(), dir.display().to_string()),
            ("KAFKA_LOCAL_PLAINTEXT_PORT".to_owned(), base.to_string()),
            (
                "KAFKA_LOCAL_SASL_PLAINTEXT_PORT".to_owned(),
                (base + 1).to_string(),
            ),
            ("KAFKA_LOCAL_SSL_PORT".to_owned(), (base + 2).to_string()),
            (
                "KAFKA_LOCAL_SASL_SSL_PORT".to_owned(),
                (base + 3).to_string(),
            ),
            (
                "KAFKA_LOCAL_CONTROLLER_PORT".to_owned(),
                (base + 4).to_string(),
            ),
        ];
        let b = Self { env, root };
        let out = b.script("start");
        assert!(
            out.status.success(),
            "private broker: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        b
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.env[1].1)
    }

    pub fn script(&self, cmd: &str) -> std::process::Output {
        Command::new(self.root.join("scripts/kafka-local.sh"))
            .arg(cmd)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("kafka-local.sh")
    }
}

impl PrivateBroker {
    /// Stops the broker, keeping its data (a broker restart, not a new cluster).
    pub fn stop_keep(&self) {
        let out = Command::new(self.root.join("scripts/kafka-local.sh"))
            .arg("stop")
            .env("KAFKA_LOCAL_KEEP", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("kafka-local.sh stop");
        assert!(
            out.status.success(),
            "stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it again on its old data.
    pub fn start_again(&self) {
        let out = self.script("start");
        assert!(
            out.status.success(),
            "start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.script("stop");
    }
}

/// The producer binary next to ours (cargo test --workspace builds it);
/// built on demand when this crate's tests run alone.
pub fn producer_bin() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_consumer")).with_file_name("producer");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "producer", "--bin", "producer"])
            .status()
            .expect("cargo build producer");
        assert!(status.success(), "building the producer binary failed");
    }
    path
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

/// (partition, offset) of every record in `topic` at `bootstrap`, read with rskafka.
pub async fn log_contents(bootstrap: &str, topic: &str) -> BTreeSet<(i64, i64)> {
    use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
    let c = common::kafka::KafkaSettings::plaintext(bootstrap, "fault-tests")
        .connect(Duration::from_secs(30))
        .await
        .expect("connect");
    let parts = c
        .list_topics()
        .await
        .expect("list")
        .into_iter()
        .find(|t| t.name == topic)
        .expect("topic")
        .partitions;
    let mut out = BTreeSet::new();
    for p in parts {
        let pc = c
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .expect("pc");
        let lo = pc.get_offset(OffsetAt::Earliest).await.expect("lo");
        let hi = pc.get_offset(OffsetAt::Latest).await.expect("hi");
        for o in lo..hi {
            out.insert((i64::from(p), o));
        }
    }
    out
}
