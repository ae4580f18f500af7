//! Configuration layering and validation shared by both services.
//!
//! Values come from, lowest to highest precedence: built-in defaults, a TOML
//! file named by `CONFIG_FILE`, environment variables, command-line flags.
//! Every key has one name: the environment variable (`KAFKA_TOPIC`); in the
//! TOML file the same name is written in lower case (`kafka_topic = "test"`).
//!
//! Layering is figment's job; typing is ours. Figment hands over every value
//! as text ([`RawValue`]), and the services' `validate()` functions parse each
//! key with [`ConfigSource`], so that every bad value produces the same kind of
//! one-line error: the key, where it came from, what is wrong, what is allowed.
//! Secrets are never echoed back in those errors.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use serde::{de, Deserialize, Deserializer};

use crate::keys::{self, Allowed, Key};
pub use kafka_base::security::Secret;

/// Name of the environment variable that points at the optional TOML file.
pub(crate) const CONFIG_FILE_ENV: &str = "CONFIG_FILE";

/// A configuration error: one line naming the key, its problem and what is allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A key has a value that cannot be used.
    #[error("invalid configuration: {key}{shown} (from {origin}): {problem}; allowed: {allowed}")]
    Invalid {
        /// The key (environment variable name).
        key: String,
        /// `="value"`, or empty for secrets and absent values.
        shown: String,
        /// Where the value came from (default, file, environment, flag).
        origin: String,
        /// What is wrong with it.
        problem: String,
        /// What would be accepted.
        allowed: String,
    },
    /// A required key is not set anywhere.
    #[error("invalid configuration: {key} is required but not set; {hint}")]
    Missing {
        /// The key (environment variable name).
        key: String,
        /// How to set it.
        hint: String,
    },
    /// The configuration file cannot be read or parsed.
    #[error("invalid configuration: {CONFIG_FILE_ENV}={path:?}: {problem}")]
    File {
        /// The file named by `CONFIG_FILE`.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// Two keys contradict each other.
    #[error("invalid configuration: {keys}: {problem}")]
    Conflict {
        /// The keys involved.
        keys: String,
        /// Why they cannot be combined.
        problem: String,
    },
}

/// A configuration value as text, whatever type the layer gave it.
///
/// The environment gives strings (figment may have guessed a number or a bool
/// from them); a TOML file gives typed values. Keeping every value as text
/// until `validate()` means a password `12345` stays a string and a wrong
/// type is reported by our validation with the key's own name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RawValue(String);

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean or list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
                Ok(RawValue(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
                Ok(RawValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
                Ok(RawValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue(v.to_string()))
            }
            fn visit_char<E: de::Error>(self, v: char) -> Result<RawValue, E> {
                Ok(RawValue(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
                Ok(RawValue(String::new()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
                let mut parts = Vec::new();
                while let Some(RawValue(v)) = seq.next_element::<RawValue>()? {
                    parts.push(v);
                }
                Ok(RawValue(parts.join(",")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Where a value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    /// The built-in default.
    Default,
    /// The TOML file.
    File(PathBuf),
    /// An environment variable.
    Env,
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(p) => write!(f, "file {}", p.display()),
            Self::Env => f.write_str("environment"),
            Self::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// The layered configuration of one process, before validation.
///
/// Keys are the environment-variable names (`KAFKA_TOPIC`).
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    values: BTreeMap<String, (String, Origin)>,
}

impl ConfigSource {
    /// Layers the TOML file named by `CONFIG_FILE` (if set), the environment,
    /// and `flags` (command-line values as `(KEY, "--flag", value)`).
    ///
    /// `keys` lists every key the service knows; `KEY_FILE` variants of
    /// secrets are accepted too. Defaults are not layered here: each
    /// `validate()` passes its default next to the key, so `--help`, the
    /// README and the code read the same table.
    pub fn load(keys: &[&str], flags: &[(&str, &str, String)]) -> Result<Self, ConfigError> {
        let file = std::env::var_os(CONFIG_FILE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Self::layer(keys, file.as_deref(), Env::raw(), flags)
    }

    /// Layers an explicit file, an environment provider and flags with
    /// figment. Used by [`ConfigSource::load`] and by tests.
    pub fn layer(
        keys: &[&str],
        file: Option<&Path>,
        env: Env,
        flags: &[(&str, &str, String)],
    ) -> Result<Self, ConfigError> {
        let known: Vec<String> = keys
            .iter()
            .flat_map(|k| {
                [
                    k.to_ascii_lowercase(),
                    format!("{}_file", k.to_ascii_lowercase()),
                ]
            })
            .collect();
        let mut figment = Figment::new();

        if let Some(path) = file {
            let file_err = |problem: String| ConfigError::File {
                path: path.to_owned(),
                problem: one_line(problem),
            };
            let text = std::fs::read_to_string(path)
                .map_err(|e| file_err(format!("cannot read it: {e}")))?;
            // A syntax error first, by position only: the TOML parser's own
            // message quotes the offending line, which may hold a password.
            if let Err(e) = text.parse::<toml::Table>() {
                return Err(file_err(toml_syntax_error(&text, &e)));
            }
            // Parse the file alone first, so a typo in it is reported against
            // the file rather than silently ignored.
            let table: BTreeMap<String, RawValue> =
                Figment::from(Toml::string(&text)).extract().map_err(|e| {
                    // Name the key when the value is the problem (a table, a date).
                    let key = match e.path.join(".") {
                        k if k.is_empty() => String::new(),
                        k => format!("`{k}`: "),
                    };
                    file_err(format!(
                        "not a flat TOML table of `key = value` lines: {key}{}",
                        e.kind
                    ))
                })?;
            if let Some(unknown) = table
                .keys()
                .find(|k| !known.contains(&k.to_ascii_lowercase()))
            {
                return Err(file_err(format!(
                    "unknown key `{unknown}`; known keys (lower case): {}",
                    keys.iter()
                        .map(|k| k.to_ascii_lowercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }

        let only: Vec<&str> = known.iter().map(String::as_str).collect();
        figment = figment.merge(env.only(&only));

        let flag_map: BTreeMap<String, String> = flags
            .iter()
            .map(|(key, _, v)| (key.to_ascii_lowercase(), v.clone()))
            .collect();
        figment = figment.merge(Serialized::globals(flag_map));

        let merged: BTreeMap<String, RawValue> =
            figment.extract().map_err(|e| ConfigError::Invalid {
                key: e.path.join(".").to_ascii_uppercase(),
                shown: String::new(),
                origin: e
                    .metadata
                    .as_ref()
                    .map(|m| m.name.to_string())
                    .unwrap_or_default(),
                problem: "not a single value".to_owned(),
                allowed: "a string, number, boolean or list of strings".to_owned(),
            })?;

        let values = merged
            .into_iter()
            .map(|(key, RawValue(v))| {
                let upper = key.to_ascii_uppercase();
                let origin = if let Some((_, flag, _)) = flags.iter().find(|(k, _, _)| *k == upper)
                {
                    Origin::Flag((*flag).to_owned())
                } else {
                    match figment.find_metadata(&key).and_then(|m| m.source.as_ref()) {
                        Some(figment::Source::File(p)) => Origin::File(p.clone()),
                        _ => Origin::Env,
                    }
                };
                (upper, (v, origin))
            })
            .collect();
        Ok(Self { values })
    }

    /// Builds a source from explicit pairs (tests, embedding).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), (v.to_owned(), Origin::Env)))
                .collect(),
        }
    }

    /// The raw value of `key`, if set in any layer. An empty string counts as
    /// set (`KAFKA_SASL_MECHANISM=` means "none" in the prototype).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    fn origin(&self, key: &str) -> Origin {
        self.values
            .get(key)
            .map(|(_, o)| o.clone())
            .unwrap_or(Origin::Default)
    }

    /// Builds the error for `key`, showing its value unless `secret`.
    pub fn invalid(
        &self,
        key: &str,
        problem: impl Into<String>,
        allowed: impl Into<String>,
    ) -> ConfigError {
        let shown = match self.raw(key) {
            Some(v) if !is_secret_key(key) => format!("={v:?}"),
            _ => String::new(),
        };
        ConfigError::Invalid {
            key: key.to_owned(),
            shown,
            origin: self.origin(key).to_string(),
            problem: one_line(problem),
            allowed: one_line(allowed),
        }
    }

    /// A string value with a default; empty strings are kept.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or(default).trim().to_owned()
    }

    /// A non-empty string, or a "required" error.
    pub fn required(&self, key: &str, hint: &str) -> Result<String, ConfigError> {
        match self.raw(key).map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v.to_owned()),
            _ => Err(ConfigError::Missing {
                key: key.to_owned(),
                hint: hint.to_owned(),
            }),
        }
    }

    /// An optional non-empty string (empty counts as unset).
    pub fn optional(&self, key: &str) -> Option<String> {
        self.raw(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// A number within `range`, or the default when unset or empty.
    pub fn number<T>(
        &self,
        key: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Copy + fmt::Display,
    {
        let allowed = || format!("a whole number from {} to {}", range.start(), range.end());
        let value = match self.raw(key).map(str::trim) {
            None | Some("") => default,
            Some(v) => v
                .replace('_', "")
                .parse::<T>()
                .map_err(|_| self.invalid(key, "not a whole number in range", allowed()))?,
        };
        if !range.contains(&value) {
            return Err(self.invalid(key, "out of range", allowed()));
        }
        Ok(value)
    }

    /// A boolean: true/false, 1/0, t/f, yes/no, on/off, any case (the
    /// prototype read `DEBUG` as `true`, `1` or `t`, anything else false; we
    /// accept its false spellings too but reject typos instead of guessing).
    pub fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "" => Ok(default),
                "true" | "1" | "t" | "yes" | "y" | "on" => Ok(true),
                "false" | "0" | "f" | "no" | "n" | "off" => Ok(false),
                _ => Err(self.invalid(key, "not a boolean", "true, false, 1, 0, yes, no, on, off")),
            },
        }
    }

    /// One of a fixed set of words, matched case-insensitively.
    pub fn choice<T: Copy>(
        &self,
        key: &str,
        default: T,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let Some(v) = self.raw(key).map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(default);
        };
        choices
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(v))
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.invalid(key, "unknown value", names.join(", "))
            })
    }

    /// A socket address `IP:PORT`.
    fn socket_addr(&self, key: &str, default: &str) -> Result<SocketAddr, ConfigError> {
        let v = self.string(key, default);
        v.parse().map_err(|_| {
            self.invalid(
                key,
                "not an IP:PORT socket address",
                "for example 0.0.0.0:8080 or 127.0.0.1:9000",
            )
        })
    }

    /// A number within `key`'s declared range, or its declared default
    /// when unset or empty.
    pub fn num<T>(&self, key: &Key) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Copy + fmt::Display + TryFrom<i64>,
    {
        let range = key.range::<T>().unwrap_or_else(|| {
            unreachable!("{} is declared as a number that fits the type", key.env)
        });
        self.num_in(key, range)
    }

    /// Like [`num`](Self::num), with a range narrower than the declared
    /// one (a bound that depends on another key).
    pub fn num_in<T>(&self, key: &Key, range: std::ops::RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Copy + fmt::Display,
    {
        let default = key
            .default
            .and_then(|d| d.replace('_', "").parse::<T>().ok())
            .unwrap_or(*range.start());
        self.number(key.env, default, range)
    }

    /// A duration `key` gives in milliseconds.
    pub fn ms(&self, key: &Key) -> Result<Duration, ConfigError> {
        self.num::<u64>(key).map(Duration::from_millis)
    }

    /// A duration `key` gives in seconds.
    pub fn secs(&self, key: &Key) -> Result<Duration, ConfigError> {
        self.num::<u64>(key).map(Duration::from_secs)
    }

    /// A boolean key, its declared default when unset or empty.
    pub fn flag(&self, key: &Key) -> Result<bool, ConfigError> {
        self.boolean(key.env, key.default == Some("true"))
    }

    /// One of `key`'s declared words, mapped to `values` in the same order;
    /// its declared default when unset or empty.
    pub fn pick<T: Copy>(&self, key: &Key, values: &[T]) -> Result<T, ConfigError> {
        let Allowed::Choice(names) = key.allowed else {
            unreachable!("{} is declared as a choice", key.env)
        };
        let choices: Vec<(&str, T)> = names.iter().copied().zip(values.iter().copied()).collect();
        let default = key
            .default
            .and_then(|d| choices.iter().find(|(n, _)| n.eq_ignore_ascii_case(d)))
            .or(choices.first())
            .map(|(_, v)| *v)
            .unwrap_or_else(|| unreachable!("{} declares its choices", key.env));
        self.choice(key.env, default, &choices)
    }

    /// A text key, its declared default when unset.
    pub fn text(&self, key: &Key) -> String {
        self.string(key.env, key.default.unwrap_or_default())
    }

    /// A socket address key, its declared default when unset.
    pub fn addr(&self, key: &Key) -> Result<SocketAddr, ConfigError> {
        self.socket_addr(key.env, key.default.unwrap_or_default())
    }

    /// A secret from `KEY` or from the file named by `KEY_FILE` (as Kubernetes
    /// mounts Secrets). Setting both is an error; a trailing newline in the
    /// file is dropped.
    pub fn secret(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        let file_key = format!("{key}_FILE");
        match (self.optional(key), self.optional(&file_key)) {
            (Some(_), Some(_)) => Err(ConfigError::Conflict {
                keys: format!("{key} and {file_key}"),
                problem: "both are set; set only one of them".to_owned(),
            }),
            (Some(v), None) => Ok(Some(Secret::new(v))),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.invalid(
                        &file_key,
                        format!("cannot read the file: {}", e.kind()),
                        "a readable file holding the secret",
                    )
                })?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                Ok(Some(Secret::new(text)))
            }
            (None, None) => Ok(None),
        }
    }
}

/// Error text kept on one line: control characters (a newline inside a
/// value, a multi-line TOML parser message) are escaped.
/// A TOML syntax error as "line L, column C" and the parser's short
/// description ("invalid string", "expected `=`": fixed texts, never the
/// document's), without the quoted source line the parser's `Display` adds.
fn toml_syntax_error(text: &str, e: &toml::de::Error) -> String {
    let position = e.span().map_or_else(String::new, |span| {
        let before = &text.as_bytes()[..span.start.min(text.len())];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        format!(" at line {line}, column {column}")
    });
    let what = e.message().lines().next().unwrap_or_default();
    format!("TOML syntax error{position}: {what} (the line is not shown: it may hold a secret)")
}

fn one_line(text: impl Into<String>) -> String {
    let text = text.into();
    if !text.contains(char::is_control) {
        return text;
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Keys whose values are never echoed back.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    (k.contains("PASSWORD") || k.contains("SECRET") || k.contains("TOKEN")) && !k.ends_with("_FILE")
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default, for Loki and friends).
    Json,
    /// Human-readable lines with colours.
    Pretty,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `LOG_FORMAT`; `None` means JSON unless stdout is a terminal.
    pub format: Option<LogFormat>,
    /// `RUST_LOG` filter directives, if set.
    pub filter: Option<String>,
    /// `DEBUG`: raise the default level to debug.
    pub debug: bool,
}

impl LogConfig {
    /// Reads `LOG_FORMAT`, `RUST_LOG` and `DEBUG`.
    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let format = match src.optional(keys::LOG_FORMAT.env) {
            None => None,
            Some(_) => Some(src.pick(
                &keys::LOG_FORMAT,
                &[LogFormat::Json, LogFormat::Pretty, LogFormat::Pretty],
            )?),
        };
        let filter = src.optional(keys::RUST_LOG.env);
        if let Some(f) = &filter {
            tracing_subscriber::EnvFilter::try_new(f).map_err(|e| {
                src.invalid(
                    keys::RUST_LOG.env,
                    format!("not a valid filter ({e})"),
                    "tracing directives such as info or consumer=debug,rskafka=warn",
                )
            })?;
        }
        Ok(Self {
            format,
            filter,
            debug: src.flag(&keys::DEBUG)?,
        })
    }
}

#[cfg(test)]
// figment's Jail closures return its (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    const KEYS: &[&str] = &[
        "KAFKA_TOPIC",
        "KAFKA_CLIENT_ID",
        "PRODUCER_MESSAGES",
        "KAFKA_PASSWORD",
    ];

    fn env_source(flags: &[(&str, &str, String)]) -> ConfigSource {
        ConfigSource::load(KEYS, flags).expect("layer")
    }

    #[test]
    fn layers_file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "kafka_topic = \"from-file\"\nproducer_messages = 7\nkafka_client_id = \"file-id\"\n")?;
            jail.set_env(CONFIG_FILE_ENV, "c.toml");
            jail.set_env("KAFKA_CLIENT_ID", "env-id");
            jail.set_env("PRODUCER_MESSAGES", "9");
            let src = env_source(&[("PRODUCER_MESSAGES", "--messages", "11".into())]);
            assert_eq!(src.raw("KAFKA_TOPIC"), Some("from-file"));
            assert!(
                src.invalid("KAFKA_TOPIC", "x", "y")
                    .to_string()
                    .contains("(from file"),
                "origin"
            );
            assert!(src
                .invalid("PRODUCER_MESSAGES", "x", "y")
                .to_string()
                .contains("(from flag --messages)"));
            assert_eq!(src.raw("KAFKA_CLIENT_ID"), Some("env-id"));
            assert_eq!(src.number("PRODUCER_MESSAGES", 20u64, 1..=10).ok(), None);
            assert_eq!(src.number("PRODUCER_MESSAGES", 20u64, 1..=100), Ok(11));
            assert_eq!(src.string("MISSING_KEY", "dflt"), "dflt");
            Ok(())
        });
    }

    #[test]
    fn numeric_looking_secrets_stay_text() {
        Jail::expect_with(|jail| {
            jail.set_env("KAFKA_PASSWORD", "12345");
            let src = env_source(&[]);
            assert_eq!(
                src.secret("KAFKA_PASSWORD")
                    .expect("secret")
                    .map(|s| s.expose().to_owned()),
                Some("12345".to_owned())
            );
            Ok(())
        });
    }

    #[test]
    fn secret_from_file_and_conflict() {
        Jail::expect_with(|jail| {
            jail.create_file("pw", "s3cret\n")?;
            jail.set_env("KAFKA_PASSWORD_FILE", "pw");
            let src = env_source(&[]);
            let s = src.secret("KAFKA_PASSWORD").expect("ok").expect("some");
            assert_eq!(s.expose(), "s3cret");
            assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
            jail.set_env("KAFKA_PASSWORD", "x");
            let err = env_source(&[])
                .secret("KAFKA_PASSWORD")
                .expect_err("conflict");
            assert!(
                err.to_string()
                    .contains("KAFKA_PASSWORD and KAFKA_PASSWORD_FILE"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn errors_name_key_value_and_allowed_but_never_secrets() {
        let src = ConfigSource::from_pairs([
            ("PRODUCER_MESSAGES", "lots"),
            ("KAFKA_PASSWORD", "hunter2"),
            ("DEBUG", "maybe"),
        ]);
        let e = src
            .number("PRODUCER_MESSAGES", 1u64, 1..=5)
            .expect_err("bad")
            .to_string();
        assert_eq!(
            e,
            "invalid configuration: PRODUCER_MESSAGES=\"lots\" (from environment): not a whole number in range; allowed: a whole number from 1 to 5"
        );
        let e = src
            .invalid("KAFKA_PASSWORD", "too short", "anything")
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let e = src.boolean("DEBUG", false).expect_err("bad").to_string();
        assert!(
            e.contains("DEBUG=\"maybe\"") && e.contains("true, false"),
            "{e}"
        );
    }

    #[test]
    fn prototype_debug_spellings() {
        for (v, want) in [
            ("False", false),
            ("True", true),
            ("t", true),
            ("1", true),
            ("0", false),
            ("", false),
        ] {
            let src = ConfigSource::from_pairs([("DEBUG", v)]);
            assert_eq!(src.boolean("DEBUG", false), Ok(want), "{v}");
        }
    }

    #[test]
    fn unreadable_or_malformed_file_is_one_error() {
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "kafka_topic = [\n")?;
            jail.create_file("typo.toml", "kafka_topik = \"x\"\n")?;
            let e = ConfigSource::layer(KEYS, Some(Path::new("bad.toml")), Env::raw(), &[])
                .expect_err("bad");
            assert!(e.to_string().contains("CONFIG_FILE"), "{e}");
            // The TOML parser's message spans lines; the error does not.
            assert!(!e.to_string().contains('\n'), "{e}");
            let e = ConfigSource::layer(KEYS, Some(Path::new("nope.toml")), Env::raw(), &[])
                .expect_err("missing");
            assert!(e.to_string().contains("cannot read"), "{e}");
            let e = ConfigSource::layer(KEYS, Some(Path::new("typo.toml")), Env::raw(), &[])
                .expect_err("typo");
            assert!(e.to_string().contains("unknown key `kafka_topik`"), "{e}");
            // A value of the wrong type names its key (found by the bad-input tests).
            jail.create_file("table.toml", "kafka_topic = { nested = 1 }\n")?;
            let e = ConfigSource::layer(KEYS, Some(Path::new("table.toml")), Env::raw(), &[])
                .expect_err("table");
            assert!(
                e.to_string()
                    .contains("`kafka_topic`: invalid type: found map"),
                "{e}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_syntax_error_names_line_and_column_never_the_text() {
        // Issue 17: the TOML parser's message quoted the offending line,
        // an unquoted password included.
        const SECRET: &str = "Hunter2-s3cret";
        let lines = [
            format!("kafka_password = {SECRET}"),
            format!("kafka_password = \"{SECRET}"),
            format!("kafka_password = '{SECRET}"),
            format!("kafka_password = \"\"\"{SECRET}"),
            format!("kafka_password = {SECRET} # note"),
            format!("kafka_password == \"{SECRET}\""),
            format!("kafka_password = [\"{SECRET}\""),
            format!("kafka_password = {{ v = {SECRET} }}"),
            format!("kafka_username = {SECRET}"),
            format!("kafka_topic = {SECRET}"),
            format!("[{SECRET}"),
            format!("kafka_password = \"a\"\nkafka_password = \"{SECRET}\""),
        ];
        Jail::expect_with(|jail| {
            for (i, line) in lines.iter().enumerate() {
                let text = format!("# a comment\nkafka_topic = \"t\"\n{line}\n");
                jail.create_file("secret.toml", &text)?;
                let e = ConfigSource::layer(KEYS, Some(Path::new("secret.toml")), Env::raw(), &[])
                    .expect_err(line)
                    .to_string();
                assert!(
                    !e.contains("Hunter2") && !e.contains("s3cret"),
                    "case {i}: {e}"
                );
                assert!(!e.contains('\n'), "case {i}: {e}");
                assert!(e.contains("secret.toml"), "case {i}: {e}");
                assert!(
                    e.contains("line 3, column ") || e.contains("line 4, column "),
                    "case {i}: {e}"
                );
            }
            Ok(())
        });
    }

    #[test]
    fn errors_stay_on_one_line_whatever_the_value() {
        // Found by fuzz/fuzz_targets/config.rs: a value with a newline made
        // the "one line" error span lines (and could forge a log line).
        let src = ConfigSource::from_pairs([("KAFKA_BOOTSTRAP_SERVER", "\t\0\n\0")]);
        let e = crate::kafka::KafkaSettings::from_source(&src, "t")
            .expect_err("not host:port")
            .to_string();
        assert!(
            !e.contains('\n') && e.contains("KAFKA_BOOTSTRAP_SERVER"),
            "{e}"
        );
        assert!(e.contains("`\\u{0}\\n\\u{0}` is not host:port"), "{e}");
        assert_eq!(one_line("a\nb\u{7f}"), "a\\nb\\u{7f}");
        assert_eq!(one_line("plain ✓"), "plain ✓");
    }

    #[test]
    fn choices_are_case_insensitive_and_list_allowed() {
        let src = ConfigSource::from_pairs([("LOG_FORMAT", "PRETTY"), ("X", "nope")]);
        assert_eq!(
            LogConfig::from_source(&src).expect("ok").format,
            Some(LogFormat::Pretty)
        );
        let e = src
            .choice("X", 1, &[("a", 1), ("b", 2)])
            .expect_err("bad")
            .to_string();
        assert!(e.ends_with("allowed: a, b"), "{e}");
    }
}
