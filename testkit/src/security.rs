//! The local broker's four listeners (read from its env file, never
//! guessed), the settings for each security protocol × mechanism, foreign
//! certificates made with openssl, SCRAM users with random passwords, and
//! what to look for in a run's log lines.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
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

/// A setting gone wrong, and the texts of the one line that must report
/// it: the producer's last log line, the consumer's `/readyz`.
#[derive(Debug, Clone)]
pub struct Mistake {
    /// What is wrong, for messages.
    pub case: &'static str,
    /// The settings with the mistake.
    pub settings: Pairs,
    /// Each of these is in the line.
    pub says: Vec<String>,
}

impl Mistake {
    /// Whether `text` holds everything the line must say.
    pub fn reported_in(&self, text: &str) -> bool {
        self.says.iter().all(|s| text.contains(s.as_str()))
    }
}

/// SCRAM-SHA-512 on the SASL_PLAINTEXT listener as the broker's user with
/// `password`, which is not theirs.
pub fn wrong_password(password: &str) -> Mistake {
    let b = broker();
    Mistake {
        case: "wrong password",
        settings: with(
            Security::SaslPlaintext("SCRAM-SHA-512").pairs(),
            "KAFKA_PASSWORD",
            password,
        ),
        says: vec![format!(
            "authentication failed for user {} with SCRAM-SHA-512 at Kafka broker {}",
            b.user, b.sasl_plaintext
        )],
    }
}

/// TLS set up wrong: a CA (made in `dir`) that did not sign the broker's
/// certificate, and a host name the certificate does not cover.
pub fn tls_mistakes(dir: &Path) -> Vec<Mistake> {
    let b = broker();
    let (other_ca, _) = self_signed(dir, "other-ca", "/CN=not the broker's CA");
    let (name, _) = wrong_name();
    vec![
        Mistake {
            case: "unknown CA",
            settings: with(
                Security::Ssl.pairs(),
                "KAFKA_SSL_CA_FILE",
                other_ca.display().to_string(),
            ),
            says: vec![format!(
                "TLS handshake with Kafka broker {} failed: invalid peer certificate: UnknownIssuer",
                b.ssl
            )],
        },
        Mistake {
            case: "wrong host name",
            settings: with(Security::Ssl.pairs(), "KAFKA_BOOTSTRAP_SERVER", name.clone()),
            says: vec![format!(
                "TLS handshake with Kafka broker {name} failed: invalid peer certificate: \
                 certificate not valid for name"
            )],
        },
    ]
}

/// A security protocol that does not match the port: SSL to the PLAINTEXT
/// port, PLAINTEXT to the SSL port.
pub fn protocol_mistakes() -> Vec<Mistake> {
    let b = broker();
    vec![
        Mistake {
            case: "SSL to the PLAINTEXT port",
            settings: with(
                Security::Ssl.pairs(),
                "KAFKA_BOOTSTRAP_SERVER",
                b.plaintext.clone(),
            ),
            says: vec![format!(
                "TLS handshake with Kafka broker {} failed: tls handshake eof (the broker does \
                 not speak TLS on this port",
                b.plaintext
            )],
        },
        Mistake {
            case: "PLAINTEXT to the SSL port",
            settings: with(
                Security::Plaintext.pairs(),
                "KAFKA_BOOTSTRAP_SERVER",
                b.ssl.clone(),
            ),
            says: vec![format!(
                "Kafka broker {} answered with TLS: it is a TLS listener, set the security \
                 protocol to SSL or SASL_SSL",
                b.ssl
            )],
        },
    ]
}

/// The warning a service logs at start when hostname verification is off.
pub const HOSTNAME_VERIFICATION_OFF: &str =
    "TLS hostname verification is OFF (KAFKA_SSL_VERIFY_HOSTNAME=false)";

/// SSL with hostname verification off, to a name the broker's certificate
/// does not cover (or, where that name is a bracketed IPv6 address rskafka
/// cannot use with TLS, the broker's own address). Returns the settings and
/// the bootstrap address.
pub fn hostname_verification_off() -> (Pairs, String) {
    let (name, dns) = wrong_name();
    let bootstrap = if dns { name } else { broker().ssl.clone() };
    let settings = with(
        with(Security::Ssl.pairs(), "KAFKA_SSL_VERIFY_HOSTNAME", "false"),
        "KAFKA_BOOTSTRAP_SERVER",
        bootstrap.clone(),
    );
    (settings, bootstrap)
}

/// A SCRAM user made for one test, with a random password, also in a file
/// as a mounted Secret has it (with a trailing newline).
#[derive(Debug)]
pub struct SecretUser {
    /// The user name.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The file holding the password.
    pub password_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl SecretUser {
    /// Creates the user on the broker.
    pub fn create(prefix: &str) -> Self {
        let user = crate::unique(prefix);
        let password = random_secret();
        create_scram_user(&user, &password);
        let dir = tempfile::tempdir().expect("tmp");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{password}\n")).expect("write");
        Self {
            user,
            password,
            password_file,
            _dir: dir,
        }
    }

    /// Verbose runs that must keep the password secret, as (case, settings,
    /// whether they succeed): `KAFKA_PASSWORD_FILE` with `DEBUG=true`,
    /// `RUST_LOG=trace`, and the password sent as a wrong one in the clear
    /// (PLAIN).
    pub fn verbose_runs(&self) -> Vec<(&'static str, Pairs, bool)> {
        let as_user = |security: Security| {
            with(
                with(security.pairs(), "KAFKA_USERNAME", self.user.clone()),
                "KAFKA_PASSWORD",
                self.password.clone(),
            )
        };
        vec![
            (
                "SASL_SSL SCRAM-SHA-512, KAFKA_PASSWORD_FILE, DEBUG=true",
                with(
                    with(
                        without(
                            as_user(Security::SaslSsl("SCRAM-SHA-512")),
                            "KAFKA_PASSWORD",
                        ),
                        "KAFKA_PASSWORD_FILE",
                        self.password_file.display().to_string(),
                    ),
                    "DEBUG",
                    "true",
                ),
                true,
            ),
            (
                "SASL_SSL SCRAM-SHA-256, RUST_LOG=trace",
                with(
                    as_user(Security::SaslSsl("SCRAM-SHA-256")),
                    "RUST_LOG",
                    "trace",
                ),
                true,
            ),
            (
                // PLAIN sends the password itself; a wrong one is refused.
                "SASL_SSL PLAIN, that string as a wrong password, RUST_LOG=trace and DEBUG=true",
                with(
                    with(
                        with(
                            Security::SaslSsl("PLAIN").pairs(),
                            "KAFKA_PASSWORD",
                            self.password.clone(),
                        ),
                        "RUST_LOG",
                        "trace",
                    ),
                    "DEBUG",
                    "true",
                ),
                false,
            ),
        ]
    }
}

/// A random password-like string that appears nowhere else.
pub fn random_secret() -> String {
    format!("pw{:032x}", rand::random::<u128>())
}

/// Creates (or updates) a SCRAM-SHA-256 and SCRAM-SHA-512 user on the broker
/// with Kafka's own `kafka-configs` tool.
pub fn create_scram_user(user: &str, password: &str) {
    let tool = crate::broker::repo_root().join("scripts/kafka-tool.sh");
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

/// `a` with every key of `b` set to `b`'s value (replaced or added).
pub fn merged(mut a: Pairs, b: Pairs) -> Pairs {
    for (k, v) in b {
        a = with(a, k, v);
    }
    a
}

/// Runs the service binary `bin` once with each of `runs` as its arguments
/// (`--help`, a bad flag) and SASL settings for `user` and `password` in
/// its environment: it prints something, and never the password.
pub async fn assert_password_not_printed(bin: &Path, runs: &[&[&str]], user: &str, password: &str) {
    for args in runs {
        let env = vec![
            ("KAFKA_PASSWORD", password.to_owned()),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".to_owned()),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
            ("KAFKA_USERNAME", user.to_owned()),
        ];
        let out = crate::process::Running::start(bin, args, &env)
            .finish(Duration::from_secs(10))
            .await;
        assert!(!out.all().trim().is_empty(), "{args:?}: no output");
        assert_absent(password, &[(&format!("{args:?}"), &out.all())]);
    }
}

/// A verbose run (`DEBUG=true`, `RUST_LOG=trace` when `case` says trace)
/// printed its debug (and trace) lines, its sidecar was scraped
/// (`served`), and `secret` is in none of stdout, stderr and what the
/// sidecar served.
pub fn assert_verbose_run_kept_secret(
    case: &str,
    out: &crate::process::Finished,
    served: &str,
    secret: &str,
) {
    assert!(
        out.stdout.contains("\"level\":\"DEBUG\""),
        "{case}: no debug output"
    );
    if case.contains("trace") {
        assert!(
            out.stdout.contains("\"level\":\"TRACE\""),
            "{case}: no trace output"
        );
    }
    assert!(
        served.contains("kafka_service_build_info"),
        "{case}: /metrics not scraped"
    );
    assert_run_kept_secret(secret, out, served);
    eprintln!(
        "{case}: exit {:?} after {:?}, {} log lines, {} sidecar bytes, no secret",
        out.code,
        out.elapsed,
        out.stdout.lines().count(),
        served.len()
    );
}

/// `secret` is in none of a run's stdout, stderr and what its sidecar
/// served.
pub fn assert_run_kept_secret(secret: &str, out: &crate::process::Finished, served: &str) {
    assert_absent(
        secret,
        &[
            ("stdout", &out.stdout),
            ("stderr", &out.stderr),
            ("the sidecar", served),
        ],
    );
}
