//! Helpers for the security tests of both services: the local broker's four
//! listeners (read from its env file, never guessed), the settings for each
//! security protocol × mechanism, foreign certificates made with openssl,
//! SCRAM users with random passwords, and running a service binary while
//! watching its sidecar.
//!
//! Used by `producer/tests/security.rs` and (by path)
//! `consumer/tests/security.rs`.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// Configuration keys and values, as the services read them.
pub type Pairs = Vec<(&'static str, String)>;

/// The local broker (`scripts/kafka-local.sh start`), as its env file says.
#[derive(Debug)]
pub struct Broker {
    /// The state dir holding `env` and `tls/`.
    pub dir: PathBuf,
    /// `127.0.0.1:19092`.
    pub plaintext: String,
    /// `127.0.0.1:19093`.
    pub sasl_plaintext: String,
    /// `127.0.0.1:19094`: client certificate requested, not required.
    pub ssl: String,
    /// `127.0.0.1:19095`.
    pub sasl_ssl: String,
    /// The CA that signed the broker's (and the client's) certificate.
    pub ca: PathBuf,
    /// A client certificate signed by that CA, and its key.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
    /// The SASL user (PLAIN and both SCRAM mechanisms).
    pub user: String,
    /// Its password.
    pub password: String,
}

/// The running local broker. Panics — the test fails, it is never skipped —
/// when the env file is missing or a listener does not accept connections.
pub fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(load_broker)
}

fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KAFKA_LOCAL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    // The same default as scripts/kafka-local.sh: ${TMPDIR:-/tmp}/kafka-local-$(id -u).
    let tmp = std::env::var_os("TMPDIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .expect("`id -u` failed: cannot find the local broker's state dir; set KAFKA_LOCAL_DIR");
    tmp.join(format!("kafka-local-{uid}"))
}

fn load_broker() -> Broker {
    let dir = state_dir();
    let env_file = dir.join("env");
    let text = std::fs::read_to_string(&env_file).unwrap_or_else(|e| {
        panic!(
            "the local Kafka broker is not running: cannot read {} ({e}). The security tests \
             need its four listeners; start it with `scripts/kafka-local.sh start` (make test \
             does this), or point KAFKA_LOCAL_DIR at its state dir",
            env_file.display()
        )
    });
    let vars: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect();
    let var = |k: &str| -> String {
        vars.get(k).cloned().unwrap_or_else(|| {
            panic!(
                "{} lacks {k}: restart the broker with scripts/kafka-local.sh",
                env_file.display()
            )
        })
    };
    let b = Broker {
        dir: dir.clone(),
        plaintext: var("KAFKA_LOCAL_PLAINTEXT"),
        sasl_plaintext: var("KAFKA_LOCAL_SASL_PLAINTEXT"),
        ssl: var("KAFKA_LOCAL_SSL"),
        sasl_ssl: var("KAFKA_LOCAL_SASL_SSL"),
        ca: var("KAFKA_LOCAL_CA").into(),
        client_cert: var("KAFKA_LOCAL_CLIENT_CERT").into(),
        client_key: var("KAFKA_LOCAL_CLIENT_KEY").into(),
        user: var("KAFKA_LOCAL_USER"),
        password: var("KAFKA_LOCAL_PASSWORD"),
    };
    for (name, addr) in [
        ("PLAINTEXT", &b.plaintext),
        ("SASL_PLAINTEXT", &b.sasl_plaintext),
        ("SSL", &b.ssl),
        ("SASL_SSL", &b.sasl_ssl),
    ] {
        let sock: SocketAddr = addr.parse().unwrap_or_else(|_| {
            panic!(
                "{name} listener {addr:?} in {} is not IP:PORT",
                env_file.display()
            )
        });
        if TcpStream::connect_timeout(&sock, Duration::from_secs(2)).is_err() {
            panic!(
                "the local Kafka broker is down: its {name} listener {addr} (from {}) refuses \
                 connections; start it with `scripts/kafka-local.sh start`",
                env_file.display()
            );
        }
    }
    for f in [&b.ca, &b.client_cert, &b.client_key] {
        assert!(
            f.is_file(),
            "{} (from {}) is missing",
            f.display(),
            env_file.display()
        );
    }
    b
}

/// The settings of one security protocol × mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No TLS, no SASL.
    Plaintext,
    /// TLS, broker verified with the CA file.
    Ssl,
    /// TLS with our client certificate too.
    SslMutual,
    /// SASL over TCP with this mechanism.
    SaslPlaintext(&'static str),
    /// SASL over TLS with this mechanism.
    SaslSsl(&'static str),
}

/// Every combination issue 4 asks for.
pub const ALL: [Security; 9] = [
    Security::Plaintext,
    Security::Ssl,
    Security::SslMutual,
    Security::SaslPlaintext("PLAIN"),
    Security::SaslPlaintext("SCRAM-SHA-256"),
    Security::SaslPlaintext("SCRAM-SHA-512"),
    Security::SaslSsl("PLAIN"),
    Security::SaslSsl("SCRAM-SHA-256"),
    Security::SaslSsl("SCRAM-SHA-512"),
];

impl Security {
    /// A short name for topics and groups.
    pub fn slug(self) -> String {
        match self {
            Self::Plaintext => "plaintext".to_owned(),
            Self::Ssl => "ssl".to_owned(),
            Self::SslMutual => "mtls".to_owned(),
            Self::SaslPlaintext(m) => format!("sasl-{}", m.to_ascii_lowercase()),
            Self::SaslSsl(m) => format!("saslssl-{}", m.to_ascii_lowercase()),
        }
    }

    /// The configuration keys for the broker's matching listener, with the
    /// broker's user and password.
    pub fn pairs(self) -> Pairs {
        let b = broker();
        let path = |p: &Path| p.display().to_string();
        let sasl = |m: &str| {
            vec![
                ("KAFKA_SASL_MECHANISM", m.to_owned()),
                ("KAFKA_USERNAME", b.user.clone()),
                ("KAFKA_PASSWORD", b.password.clone()),
            ]
        };
        let mut v = match self {
            Self::Plaintext => vec![
                ("KAFKA_BOOTSTRAP_SERVER", b.plaintext.clone()),
                ("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT".to_owned()),
            ],
            Self::Ssl | Self::SslMutual => vec![
                ("KAFKA_BOOTSTRAP_SERVER", b.ssl.clone()),
                ("KAFKA_SECURITY_PROTOCOL", "SSL".to_owned()),
                ("KAFKA_SSL_CA_FILE", path(&b.ca)),
            ],
            Self::SaslPlaintext(m) => {
                let mut v = vec![
                    ("KAFKA_BOOTSTRAP_SERVER", b.sasl_plaintext.clone()),
                    ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".to_owned()),
                ];
                v.extend(sasl(m));
                v
            }
            Self::SaslSsl(m) => {
                let mut v = vec![
                    ("KAFKA_BOOTSTRAP_SERVER", b.sasl_ssl.clone()),
                    ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
                    ("KAFKA_SSL_CA_FILE", path(&b.ca)),
                ];
                v.extend(sasl(m));
                v
            }
        };
        if self == Self::SslMutual {
            v.push(("KAFKA_SSL_CERT_FILE", path(&b.client_cert)));
            v.push(("KAFKA_SSL_KEY_FILE", path(&b.client_key)));
        }
        v
    }
}

/// `pairs` with `key` replaced (or added).
pub fn with(mut pairs: Pairs, key: &'static str, value: impl Into<String>) -> Pairs {
    pairs.retain(|(k, _)| *k != key);
    pairs.push((key, value.into()));
    pairs
}

/// `pairs` without `key`.
pub fn without(mut pairs: Pairs, key: &str) -> Pairs {
    pairs.retain(|(k, _)| *k != key);
    pairs
}

/// Borrowed view for `ConfigSource::from_pairs`.
pub fn borrowed<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A self-signed certificate and key made with openssl in `dir`: a CA the
/// broker does not know, or a client certificate it will not accept.
/// Returns (certificate, key).
pub fn self_signed(dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", subject])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/kafka-local.sh needs it too) must be installed");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// A name that reaches the SSL listener but is not in the broker's
/// certificate (which covers `localhost` and `127.0.0.1`): this machine's
/// host name when it resolves to 127.0.0.1, else the IPv4-mapped IPv6
/// address `[::ffff:127.0.0.1]`. The bool says whether it is a DNS name
/// (rskafka cannot use bracketed IPv6 addresses with TLS: it splits the
/// address at the first ':').
pub fn wrong_name() -> (String, bool) {
    let port = broker()
        .ssl
        .rsplit_once(':')
        .map(|(_, p)| p.to_owned())
        .expect("port");
    let hostname = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            Command::new("hostname")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        })
        .filter(|h| !h.is_empty() && h != "localhost" && !h.contains(':'));
    if let Some(h) = hostname {
        let addr = format!("{h}:{port}");
        let loopback = addr
            .to_socket_addrs()
            .map(|mut a| a.all(|s| s.ip() == std::net::Ipv4Addr::LOCALHOST))
            .unwrap_or(false);
        if loopback && reaches(&addr) {
            return (addr, true);
        }
    }
    let mapped = format!("[::ffff:127.0.0.1]:{port}");
    assert!(
        reaches(&mapped),
        "no name other than localhost/127.0.0.1 reaches the SSL listener: neither this host's \
         name resolves to 127.0.0.1 nor does [::ffff:127.0.0.1] connect (IPv6 off?)"
    );
    (mapped, false)
}

fn reaches(addr: &str) -> bool {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|s| TcpStream::connect_timeout(&s, Duration::from_secs(2)).is_ok())
}

/// A random password-like string that appears nowhere else.
pub fn random_secret() -> String {
    format!("pw{}", uuid::Uuid::new_v4().simple())
}

/// Creates (or updates) a SCRAM-SHA-256 and SCRAM-SHA-512 user on the broker
/// with Kafka's own `kafka-configs` tool.
pub fn create_scram_user(user: &str, password: &str) {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-tool.sh");
    let b = broker();
    // One mechanism per request: the broker refuses two for one user at once.
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let out = Command::new(&tool)
            .args(["configs", "--bootstrap-server", &b.plaintext, "--alter"])
            .args(["--entity-type", "users", "--entity-name", user])
            .arg("--add-config")
            .arg(format!("{mechanism}=[iterations=4096,password={password}]"))
            .env("KAFKA_LOCAL_DIR", &b.dir)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/kafka-tool.sh");
        assert!(
            out.status.success(),
            "kafka-configs failed for {mechanism}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// An unused local port for a binary's `HTTP_ADDR`.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
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
    pub fn start(bin: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut cmd = tokio::process::Command::new(bin);
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

    /// Sends SIGTERM (what Kubernetes sends).
    pub fn terminate(&self) {
        let pid = self.child.id().expect("still running");
        let ok = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -TERM {pid} failed");
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

/// GET a sidecar path: (status, body); (0, error) while nothing answers.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    match reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Polls `path` until `pred(status, body)` holds; returns the last answer
/// and whether it held.
pub async fn poll_until(
    addr: SocketAddr,
    path: &str,
    within: Duration,
    pred: impl Fn(u16, &str) -> bool,
) -> ((u16, String), bool) {
    let deadline = Instant::now() + within;
    loop {
        let got = http_get(addr, path).await;
        if pred(got.0, &got.1) {
            return (got, true);
        }
        if Instant::now() > deadline {
            return (got, false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The WARN lines with `message`, as (timestamp, retry_in_ms).
pub fn retries(lines: &[serde_json::Value], message: &str) -> Vec<(String, u64)> {
    lines
        .iter()
        .filter(|l| l["level"] == "WARN" && l["message"] == message)
        .map(|l| {
            (
                l["timestamp"].as_str().unwrap_or_default().to_owned(),
                l["retry_in_ms"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Seconds between two RFC 3339 timestamps of the log.
pub fn seconds_between(a: &str, b: &str) -> f64 {
    let p = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("timestamp {s:?}: {e}"))
    };
    (p(b) - p(a)).num_microseconds().unwrap_or_default() as f64 / 1e6
}

/// Asserts `secret` appears in none of `texts` (named for the message).
pub fn assert_absent(secret: &str, texts: &[(&str, &str)]) {
    for (what, text) in texts {
        assert!(
            !text.contains(secret),
            "the secret leaked into {what}:\n{}",
            text.lines()
                .filter(|l| l.contains(secret))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Collects every `/metrics`, `/readyz` and `/healthz` body a sidecar serves
/// until stopped: what a scraper or a probe would ever see.
pub struct Scraper {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<String>,
}

impl Scraper {
    /// Starts scraping `addr` every 100 ms.
    pub fn start(addr: SocketAddr) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut seen = String::new();
            loop {
                for path in ["/metrics", "/readyz", "/healthz"] {
                    let (status, body) = http_get(addr, path).await;
                    if status != 0 {
                        seen.push_str(&format!("--- {path} {status}\n{body}\n"));
                    }
                }
                tokio::select! {
                    () = token.cancelled() => return seen,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
        Self { stop, task }
    }

    /// Stops and returns everything seen.
    pub async fn finish(self) -> String {
        self.stop.cancel();
        self.task.await.expect("scraper")
    }
}
