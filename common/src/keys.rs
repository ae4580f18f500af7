//! Configuration keys, each declared once: its environment variable, its
//! flag, its default, what it allows and its help text. From these tables
//! come the services' command-line arguments (and `--help`), the key lists
//! [`ConfigSource::load`](crate::config::ConfigSource::load) accepts, the
//! defaults and ranges `validate()` applies, and the README's key tables
//! (checked by a test that fails on drift).
//!
//! This module holds the type, the keys both services read ([`KAFKA`],
//! [`SERVICE`]) and the renderings; each service declares its own table
//! next to its `validate()`.

use clap::{Arg, ArgAction, ArgMatches, Command};

/// What a key accepts (for errors, `--help` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Text; the help says which.
    Text,
    /// A whole number from `min` to `max`.
    Number {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// `true`, `false` and the prototype's spellings (`1`, `t`, `yes`, …).
    Bool,
    /// One of these words, in any case.
    Choice(&'static [&'static str]),
}

/// One configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The environment variable; written in lower case in the TOML file.
    pub env: &'static str,
    /// The long flag (`--messages`), if the key has one.
    pub flag: Option<&'static str>,
    /// A short flag.
    pub short: Option<char>,
    /// The flag's value placeholder in `--help`.
    pub value_name: &'static str,
    /// The value used when the key is unset (or empty, for the keys whose
    /// empty value means unset), as the text a user would write.
    pub default: Option<&'static str>,
    /// The default in words, where it is not a literal value ("a random
    /// UUID", "required").
    pub default_doc: Option<&'static str>,
    /// What it accepts.
    pub allowed: Allowed,
    /// What it does, one sentence.
    pub help: &'static str,
}

impl Key {
    /// A key read from the environment or the file only.
    pub const fn new(env: &'static str, allowed: Allowed, help: &'static str) -> Self {
        Self {
            env,
            flag: None,
            short: None,
            value_name: "VALUE",
            default: None,
            default_doc: None,
            allowed,
            help,
        }
    }

    /// With a long flag (`"--messages"`) and its value placeholder.
    pub const fn flag(mut self, flag: &'static str, value_name: &'static str) -> Self {
        self.flag = Some(flag);
        self.value_name = value_name;
        self
    }

    /// With a short flag too.
    pub const fn short(mut self, short: char) -> Self {
        self.short = Some(short);
        self
    }

    /// With a default value.
    pub const fn default(mut self, default: &'static str) -> Self {
        self.default = Some(default);
        self
    }

    /// With the default described in words.
    pub const fn default_doc(mut self, doc: &'static str) -> Self {
        self.default_doc = Some(doc);
        self
    }

    /// The range of a [`Allowed::Number`] key in `T`; `None` for other keys
    /// or bounds `T` cannot hold.
    pub fn range<T: TryFrom<i64>>(&self) -> Option<std::ops::RangeInclusive<T>> {
        match self.allowed {
            Allowed::Number { min, max } => Some(T::try_from(min).ok()?..=T::try_from(max).ok()?),
            _ => None,
        }
    }

    /// The default as it reads in `--help` and the README.
    fn default_text(&self) -> Option<&'static str> {
        self.default_doc.or(self.default)
    }

    /// What it allows, in words (empty for free text).
    fn allowed_text(&self) -> String {
        match self.allowed {
            Allowed::Text => String::new(),
            Allowed::Number { min, max } => format!("{min} … {max}"),
            Allowed::Bool => "true, false".to_owned(),
            Allowed::Choice(names) => names.join(", "),
        }
    }
}

/// [`Allowed::Number`] from `min` to `max`, for the tables.
pub const fn number(min: i64, max: i64) -> Allowed {
    Allowed::Number { min, max }
}

/// What every service's `--help` says after its own introduction.
const ABOUT_KEYS: &str = "Every option can also be set by the environment variable shown, or in \
the TOML file named by CONFIG_FILE under the variable's lower-case name. Kafka connection \
settings (KAFKA_BOOTSTRAP_SERVER, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_USERNAME, \
KAFKA_PASSWORD[_FILE], …) are read from the environment only; see the README.";

/// Kafka connection keys, read by
/// [`KafkaSettings::from_source`](crate::kafka::KafkaSettings::from_source);
/// environment and file only.
pub(crate) mod kafka {
    use super::{number, Allowed, Key};

    /// `KAFKA_BOOTSTRAP_SERVER`.
    pub const BOOTSTRAP_SERVER: Key = Key::new(
        "KAFKA_BOOTSTRAP_SERVER",
        Allowed::Text,
        "broker host:port, or a comma-separated list (the prototype's key); set but empty is an error",
    )
    .default("localhost:9092");
    /// `KAFKA_BOOTSTRAP_SERVERS`.
    pub const BOOTSTRAP_SERVERS: Key = Key::new(
        "KAFKA_BOOTSTRAP_SERVERS",
        Allowed::Text,
        "the same; read when KAFKA_BOOTSTRAP_SERVER is unset",
    );
    /// `KAFKA_CLIENT_ID`.
    pub const CLIENT_ID: Key = Key::new(
        "KAFKA_CLIENT_ID",
        Allowed::Text,
        "client id sent to the broker: printable ASCII without spaces",
    )
    .default_doc("kafka-producer / kafka-consumer");
    /// `KAFKA_SECURITY_PROTOCOL`.
    pub const SECURITY_PROTOCOL: Key = Key::new(
        "KAFKA_SECURITY_PROTOCOL",
        Allowed::Choice(&["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]),
        "TLS and/or SASL on the broker connections",
    )
    .default("PLAINTEXT");
    /// `KAFKA_SASL_MECHANISM`.
    pub const SASL_MECHANISM: Key = Key::new(
        "KAFKA_SASL_MECHANISM",
        Allowed::Choice(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]),
        "required with the SASL protocols, ignored otherwise",
    )
    .default_doc("none");
    /// `KAFKA_SASL_OAUTHBEARER_TOKEN_FILE`.
    pub const SASL_OAUTHBEARER_TOKEN_FILE: Key = Key::new(
        "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE",
        Allowed::Text,
        "OAUTHBEARER only (required then): file holding the token, a JWT (a projected service-account token, a token sidecar's output); read again for every connection, and connections are renewed before the token expires; never printed",
    );
    /// `KAFKA_USERNAME`.
    pub const USERNAME: Key = Key::new("KAFKA_USERNAME", Allowed::Text, "SASL user (PLAIN, SCRAM)");
    /// `KAFKA_PASSWORD` (or, through its `_FILE` variant, a file holding it).
    pub const PASSWORD: Key = Key::new(
        "KAFKA_PASSWORD",
        Allowed::Text,
        "SASL password; KAFKA_PASSWORD_FILE names a file holding it instead (a mounted Secret), not both; never printed",
    );
    /// `KAFKA_SSL_CA_FILE`.
    pub const SSL_CA_FILE: Key = Key::new(
        "KAFKA_SSL_CA_FILE",
        Allowed::Text,
        "PEM CA bundle to verify brokers (a scratch image has no system CA store)",
    );
    /// `KAFKA_SSL_WEBPKI_ROOTS`.
    pub const SSL_WEBPKI_ROOTS: Key = Key::new(
        "KAFKA_SSL_WEBPKI_ROOTS",
        Allowed::Bool,
        "also trust the bundled public web PKI roots",
    )
    .default("false");
    /// `KAFKA_SSL_CERT_FILE`.
    pub const SSL_CERT_FILE: Key = Key::new(
        "KAFKA_SSL_CERT_FILE",
        Allowed::Text,
        "client certificate chain (PEM) for mutual TLS; with KAFKA_SSL_KEY_FILE",
    );
    /// `KAFKA_SSL_KEY_FILE`.
    pub const SSL_KEY_FILE: Key = Key::new(
        "KAFKA_SSL_KEY_FILE",
        Allowed::Text,
        "the client certificate's private key (PEM)",
    );
    /// `KAFKA_SSL_VERIFY_HOSTNAME`.
    pub const SSL_VERIFY_HOSTNAME: Key = Key::new(
        "KAFKA_SSL_VERIFY_HOSTNAME",
        Allowed::Bool,
        "check the broker's name against its certificate; false is logged as a warning at start, and refused with KAFKA_SSL_WEBPKI_ROOTS=true",
    )
    .default("true");
    /// `KAFKA_BACKOFF_INITIAL_MS`.
    pub const BACKOFF_INITIAL_MS: Key = Key::new(
        "KAFKA_BACKOFF_INITIAL_MS",
        number(1, 60_000),
        "first retry delay after a transient error, in ms",
    )
    .default("100");
    /// `KAFKA_BACKOFF_MAX_MS`.
    pub const BACKOFF_MAX_MS: Key = Key::new(
        "KAFKA_BACKOFF_MAX_MS",
        number(1, 600_000),
        "longest retry delay, in ms",
    )
    .default("5000");
    /// `KAFKA_REQUEST_TIMEOUT_MS`.
    pub const REQUEST_TIMEOUT_MS: Key = Key::new(
        "KAFKA_REQUEST_TIMEOUT_MS",
        number(100, 600_000),
        "how long to wait for one broker response, in ms",
    )
    .default("30000");
}

/// Every Kafka connection key.
pub const KAFKA: &[Key] = &[
    kafka::BOOTSTRAP_SERVER,
    kafka::BOOTSTRAP_SERVERS,
    kafka::CLIENT_ID,
    kafka::SECURITY_PROTOCOL,
    kafka::SASL_MECHANISM,
    kafka::SASL_OAUTHBEARER_TOKEN_FILE,
    kafka::USERNAME,
    kafka::PASSWORD,
    kafka::SSL_CA_FILE,
    kafka::SSL_WEBPKI_ROOTS,
    kafka::SSL_CERT_FILE,
    kafka::SSL_KEY_FILE,
    kafka::SSL_VERIFY_HOSTNAME,
    kafka::BACKOFF_INITIAL_MS,
    kafka::BACKOFF_MAX_MS,
    kafka::REQUEST_TIMEOUT_MS,
];

/// `HTTP_ADDR`.
pub const HTTP_ADDR: Key = Key::new(
    "HTTP_ADDR",
    Allowed::Text,
    "address of the /healthz, /readyz, /metrics server: IP:PORT",
)
.flag("--http-addr", "IP:PORT")
.default("0.0.0.0:8080");
/// `LOG_FORMAT`.
pub const LOG_FORMAT: Key = Key::new(
    "LOG_FORMAT",
    Allowed::Choice(&["json", "pretty", "text"]),
    "one JSON object per line, or human-readable lines (text is pretty)",
)
.default_doc("json (pretty on a terminal)");
/// `RUST_LOG`.
pub const RUST_LOG: Key = Key::new(
    "RUST_LOG",
    Allowed::Text,
    "log filter directives, e.g. info,rskafka=warn; overrides DEBUG",
);
/// `DEBUG`.
pub const DEBUG: Key = Key::new(
    "DEBUG",
    Allowed::Bool,
    "raise the log level to debug (the prototype's key; also 1, t, yes)",
)
.default("false");

/// Keys every service reads besides [`KAFKA`].
pub const SERVICE: &[Key] = &[HTTP_ADDR, LOG_FORMAT, RUST_LOG, DEBUG];

/// A service's keys: the Kafka keys, its own, the service keys; and its
/// command line built from them.
#[derive(Debug, Clone, Copy)]
pub struct ServiceKeys {
    name: &'static str,
    about: &'static str,
    own: &'static [Key],
}

impl ServiceKeys {
    /// The service `name` (`--help` starts with `about`) with its `own` keys.
    pub const fn new(name: &'static str, about: &'static str, own: &'static [Key]) -> Self {
        Self { name, about, own }
    }

    /// Every key it reads, in `--help` order.
    pub fn keys(&self) -> Vec<Key> {
        KAFKA
            .iter()
            .chain(self.own)
            .chain(SERVICE)
            .copied()
            .collect()
    }

    /// Every key's environment variable, for [`ConfigSource::load`](crate::config::ConfigSource::load).
    pub fn names(&self) -> Vec<&'static str> {
        self.keys().iter().map(|k| k.env).collect()
    }

    /// The command line.
    pub fn command(&self) -> Command {
        command(self.name, self.about, &self.keys())
    }

    /// Parses the process's arguments (`--help`, `--version` and a bad flag
    /// exit here, as clap does).
    pub fn parse_args(&self) -> Invocation {
        Invocation::from_matches(&self.command().get_matches(), &self.keys())
    }
}

/// Builds a service's command line: an argument for every key of `keys`
/// with a flag, values kept as text (parsed by `validate()`, so a bad flag
/// and a bad variable give the same error), and the `healthcheck`
/// subcommand.
pub fn command(name: &'static str, about: &'static str, keys: &[Key]) -> Command {
    let mut cmd = Command::new(name)
        .version(env!("CARGO_PKG_VERSION"))
        .about(format!("{about}\n\n{ABOUT_KEYS}"))
        .subcommand(
            Command::new("healthcheck")
                .about("Probe this service's own /healthz (for HEALTHCHECK in a scratch image) and exit 0 if it answers 200.")
                .arg(
                    Arg::new("addr")
                        .long("addr")
                        .value_name("IP:PORT")
                        .help("Address of the sidecar [env: HTTP_ADDR; 0.0.0.0 is probed as 127.0.0.1] [default: 127.0.0.1:8080]"),
                ),
        );
    for key in keys {
        let Some(flag) = key.flag else { continue };
        let mut help = key.help.to_owned();
        if let Some(first) = help.get(..1) {
            help.replace_range(..1, &first.to_ascii_uppercase());
        }
        help.push_str(&format!(" [env: {}]", key.env));
        if let Some(d) = key.default_text() {
            help.push_str(&format!(" [default: {d}]"));
        }
        let allowed = key.allowed_text();
        if !allowed.is_empty() {
            help.push_str(&format!(" [allowed: {allowed}]"));
        }
        let mut arg = Arg::new(key.env)
            .long(flag.trim_start_matches('-'))
            .value_name(key.value_name)
            .action(ArgAction::Set)
            .help(help);
        if let Some(c) = key.short {
            arg = arg.short(c);
        }
        if key.allowed == Allowed::Bool {
            // A bare `--create-topic` means true.
            arg = arg.num_args(0..=1).default_missing_value("true");
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// `healthcheck [--addr IP:PORT]`.
    Healthcheck(Option<String>),
    /// Run the service with these `(KEY, --flag, value)` overrides.
    Run(Vec<(&'static str, &'static str, String)>),
}

impl Invocation {
    /// Reads parsed `matches` of [`command`] built from `keys`.
    pub fn from_matches(matches: &ArgMatches, keys: &[Key]) -> Self {
        if let Some(("healthcheck", sub)) = matches.subcommand() {
            return Self::Healthcheck(sub.get_one::<String>("addr").cloned());
        }
        Self::Run(
            keys.iter()
                .filter_map(|k| {
                    let flag = k.flag?;
                    let value = matches.get_one::<String>(k.env)?;
                    Some((k.env, flag, value.clone()))
                })
                .collect(),
        )
    }
}

/// A Markdown table of `keys` (key, flag, default, allowed, meaning), as
/// the README shows them.
pub fn markdown_table(keys: &[Key]) -> String {
    let code = |s: &str| format!("`{s}`");
    let mut out =
        String::from("| key | flag | default | allowed | meaning |\n|---|---|---|---|---|\n");
    for k in keys {
        let flag = match (k.short, k.flag) {
            (Some(s), Some(f)) => format!("`-{s}`, `{f}`"),
            (None, Some(f)) => code(f),
            _ => "—".to_owned(),
        };
        let default = match (k.default_doc, k.default) {
            (Some(doc), _) => doc.to_owned(),
            (None, Some(d)) => code(d),
            (None, None) => "—".to_owned(),
        };
        let allowed = match k.allowed {
            Allowed::Text => "text".to_owned(),
            Allowed::Number { min, max } => format!("{min} … {max}"),
            Allowed::Bool => "`true`, `false`".to_owned(),
            Allowed::Choice(names) => names.iter().map(|n| code(n)).collect::<Vec<_>>().join(", "),
        };
        out.push_str(&format!(
            "| {} | {flag} | {default} | {allowed} | {} |\n",
            code(k.env),
            k.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigSource;

    #[test]
    fn every_default_passes_its_own_rule() {
        for k in KAFKA.iter().chain(SERVICE) {
            let Some(d) = k.default else { continue };
            let src = ConfigSource::from_pairs([(k.env, d)]);
            let ok = match k.allowed {
                Allowed::Number { .. } => src.num::<i64>(k).is_ok(),
                Allowed::Bool => src.boolean(k.env, false).is_ok(),
                Allowed::Choice(names) => names.iter().any(|n| n.eq_ignore_ascii_case(d)),
                Allowed::Text => true,
            };
            assert!(ok, "{}: default {d:?} not allowed", k.env);
        }
    }

    #[test]
    fn flags_become_arguments_and_come_back_with_their_keys() {
        const KEYS: &[Key] = &[
            Key::new("A_NUMBER", number(1, 9), "a number")
                .flag("--number", "N")
                .short('n')
                .default("3"),
            Key::new("A_BOOL", Allowed::Bool, "a switch").flag("--switch", "BOOL"),
            Key::new("ENV_ONLY", Allowed::Text, "no flag"),
        ];
        let cmd = command("svc", "about", KEYS);
        let m = cmd
            .clone()
            .try_get_matches_from(["svc", "-n", "7", "--switch"])
            .expect("parse");
        assert_eq!(
            Invocation::from_matches(&m, KEYS),
            Invocation::Run(vec![
                ("A_NUMBER", "--number", "7".to_owned()),
                ("A_BOOL", "--switch", "true".to_owned()),
            ])
        );
        let m = cmd
            .clone()
            .try_get_matches_from(["svc", "healthcheck", "--addr", "1.2.3.4:5"])
            .expect("parse");
        assert_eq!(
            Invocation::from_matches(&m, KEYS),
            Invocation::Healthcheck(Some("1.2.3.4:5".to_owned()))
        );
        let help = cmd.clone().render_long_help().to_string();
        assert!(
            help.contains("A number [env: A_NUMBER] [default: 3] [allowed: 1 … 9]"),
            "{help}"
        );
        assert!(!help.contains("ENV_ONLY"), "{help}");
        assert!(cmd
            .try_get_matches_from(["svc", "--env-only", "x"])
            .is_err());
    }

    #[test]
    fn the_markdown_table_has_a_row_per_key() {
        let t = markdown_table(SERVICE);
        assert_eq!(t.lines().count(), 2 + SERVICE.len());
        assert!(
            t.contains("| `HTTP_ADDR` | `--http-addr` | `0.0.0.0:8080` | text | address of"),
            "{t}"
        );
        assert!(
            t.contains(
                "| `LOG_FORMAT` | — | json (pretty on a terminal) | `json`, `pretty`, `text` |"
            ),
            "{t}"
        );
    }
}
