//! How we talk to Kafka: bootstrap list, client id, security protocol, TLS
//! and SASL — defined once here, used both for rskafka's client and for our
//! own group-coordinator connection ([`crate::group`]).

use std::{
    path::PathBuf,
    sync::{Arc, Once},
    time::Duration,
};

use rskafka::{
    client::{
        Client, ClientBuilder, Credentials, OauthBearerCredentials, OauthCallback, SaslConfig,
    },
    BackoffConfig,
};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use kafka_base::backoff::Backoff;
pub use kafka_base::oauth::TokenFile;
pub use kafka_base::security::{
    tls_client_config, SaslCredentials, SaslMechanism, SaslSettings, Secret, SecurityProtocol,
    TlsError, TlsSettings,
};
use kafka_group::{preflight, ConnectionConfig, ConnectionError, Preflight};

use crate::{
    config::{ConfigError, ConfigSource},
    keys::kafka as keys,
};

/// Everything needed to connect to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port` of one or more brokers.
    pub bootstrap: Vec<String>,
    /// `KAFKA_CLIENT_ID`, sent with every request (shows in broker logs and quotas).
    pub client_id: String,
    /// `KAFKA_SECURITY_PROTOCOL`.
    pub security_protocol: SecurityProtocol,
    /// Present when the protocol uses SASL.
    pub sasl: Option<SaslSettings>,
    /// Used when the protocol uses TLS.
    pub tls: TlsSettings,
    /// `KAFKA_BACKOFF_INITIAL_MS`: first retry delay after a transient error.
    pub backoff_initial: Duration,
    /// `KAFKA_BACKOFF_MAX_MS`: longest retry delay.
    pub backoff_max: Duration,
    /// `KAFKA_REQUEST_TIMEOUT_MS`: how long to wait for one broker response.
    pub request_timeout: Duration,
}

impl KafkaSettings {
    /// Reads and validates the Kafka keys. `default_client_id` is the
    /// service's name.
    pub fn from_source(src: &ConfigSource, default_client_id: &str) -> Result<Self, ConfigError> {
        let bootstrap = bootstrap_list(src)?;
        let client_id = src.string("KAFKA_CLIENT_ID", default_client_id);
        if client_id.is_empty() || !client_id.chars().all(|c| c.is_ascii_graphic()) {
            return Err(src.invalid(
                "KAFKA_CLIENT_ID",
                "empty or contains spaces or non-ASCII characters",
                "printable ASCII without spaces",
            ));
        }
        let security_protocol = src.pick(
            &keys::SECURITY_PROTOCOL,
            &[
                SecurityProtocol::Plaintext,
                SecurityProtocol::Ssl,
                SecurityProtocol::SaslPlaintext,
                SecurityProtocol::SaslSsl,
            ],
        )?;
        let mechanism = match src.optional(keys::SASL_MECHANISM.env) {
            None => None,
            Some(_) => Some(src.pick(
                &keys::SASL_MECHANISM,
                &[
                    SaslMechanism::Plain,
                    SaslMechanism::ScramSha256,
                    SaslMechanism::ScramSha512,
                    SaslMechanism::OAuthBearer,
                ],
            )?),
        };
        let password = src.secret("KAFKA_PASSWORD")?;
        let token_file = src.optional(keys::SASL_OAUTHBEARER_TOKEN_FILE.env);
        let sasl = if security_protocol.uses_sasl() {
            let mechanism = mechanism.ok_or_else(|| {
                src.invalid(
                    "KAFKA_SASL_MECHANISM",
                    format!("must be set when KAFKA_SECURITY_PROTOCOL is {security_protocol}"),
                    "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER",
                )
            })?;
            Some(sasl_settings(src, mechanism, password, token_file)?)
        } else {
            // The prototype's ConfigMaps set a mechanism next to PLAINTEXT;
            // that stays valid and is simply unused.
            None
        };

        let path = |key: &str| -> Result<Option<PathBuf>, ConfigError> {
            match src.optional(key) {
                None => Ok(None),
                Some(p) => {
                    let p = PathBuf::from(p);
                    if p.is_file() {
                        Ok(Some(p))
                    } else {
                        Err(src.invalid(key, "no such file", "the path of a readable PEM file"))
                    }
                }
            }
        };
        let tls = TlsSettings {
            ca_file: path("KAFKA_SSL_CA_FILE")?,
            webpki_roots: src.flag(&keys::SSL_WEBPKI_ROOTS)?,
            cert_file: path("KAFKA_SSL_CERT_FILE")?,
            key_file: path("KAFKA_SSL_KEY_FILE")?,
            verify_hostname: src.flag(&keys::SSL_VERIFY_HOSTNAME)?,
        };
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(ConfigError::Conflict {
                keys: "KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE".to_owned(),
                problem: "mutual TLS needs both the certificate and its key; set both or neither"
                    .to_owned(),
            });
        }
        if security_protocol.uses_tls() && tls.webpki_roots && !tls.verify_hostname {
            return Err(ConfigError::Conflict {
                keys: "KAFKA_SSL_WEBPKI_ROOTS and KAFKA_SSL_VERIFY_HOSTNAME".to_owned(),
                problem: "public CA roots without the hostname check would accept any publicly issued certificate for any name, so anyone could impersonate the broker; keep KAFKA_SSL_VERIFY_HOSTNAME=true, or use KAFKA_SSL_CA_FILE with the private CA that signed the broker".to_owned(),
            });
        }
        if security_protocol.uses_tls() && tls.ca_file.is_none() && !tls.webpki_roots {
            return Err(ConfigError::Conflict {
                keys: "KAFKA_SSL_CA_FILE and KAFKA_SSL_WEBPKI_ROOTS".to_owned(),
                problem: format!(
                    "{security_protocol} needs a CA to verify the broker (a scratch image has no system CA store); set KAFKA_SSL_CA_FILE to a PEM file, or KAFKA_SSL_WEBPKI_ROOTS=true for a broker with a public certificate"
                ),
            });
        }

        let backoff_initial = src.ms(&keys::BACKOFF_INITIAL_MS)?;
        let backoff_max = src.ms(&keys::BACKOFF_MAX_MS)?;
        if backoff_max < backoff_initial {
            return Err(ConfigError::Conflict {
                keys: "KAFKA_BACKOFF_INITIAL_MS and KAFKA_BACKOFF_MAX_MS".to_owned(),
                problem: "the maximum backoff is shorter than the initial one".to_owned(),
            });
        }
        Ok(Self {
            bootstrap,
            client_id,
            security_protocol,
            sasl,
            tls,
            backoff_initial,
            backoff_max,
            request_timeout: src.ms(&keys::REQUEST_TIMEOUT_MS)?,
        })
    }

    /// Settings for a local PLAINTEXT broker (tests, demos).
    pub fn plaintext(bootstrap: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            bootstrap: vec![bootstrap.into()],
            client_id: client_id.into(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl: None,
            tls: TlsSettings {
                verify_hostname: true,
                ..TlsSettings::default()
            },
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// The host of the first bootstrap broker, for the `server.address`
    /// span attribute.
    pub fn server_address(&self) -> String {
        self.bootstrap
            .first()
            .and_then(|b| {
                b.rsplit_once(':')
                    .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
            })
            .unwrap_or_default()
    }

    /// The project's backoff from `KAFKA_BACKOFF_INITIAL_MS` doubling to
    /// `KAFKA_BACKOFF_MAX_MS`, for our own retry loops.
    pub fn retry_backoff(&self) -> Backoff {
        Backoff::new(self.backoff_initial, self.backoff_max)
    }

    /// rskafka's backoff, bounded by `deadline` so no call retries forever.
    pub fn backoff(&self, deadline: Option<Duration>) -> BackoffConfig {
        BackoffConfig {
            init_backoff: self.backoff_initial,
            max_backoff: self.backoff_max,
            base: 2.0,
            deadline,
        }
    }

    /// rskafka's SASL configuration, when SASL is on.
    ///
    /// Crate-private on purpose: rskafka's `Credentials` derives `Debug`
    /// with the password in it, so the value must never reach a `{:?}`.
    /// For OAUTHBEARER rskafka calls back for the token on every new
    /// connection, and the file is read then.
    pub(crate) fn rskafka_sasl(&self) -> Option<SaslConfig> {
        self.sasl.as_ref().map(|s| match &s.credentials {
            SaslCredentials::Token(file) => SaslConfig::Oauthbearer(OauthBearerCredentials {
                callback: token_callback(file.clone()),
                authz_id: None,
                bearer_kvs: Vec::new(),
            }),
            SaslCredentials::Password { username, password } => {
                let creds = Credentials::new(username.clone(), password.expose().to_owned());
                match s.mechanism {
                    SaslMechanism::Plain => SaslConfig::Plain(creds),
                    SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(creds),
                    // OAUTHBEARER comes with a token file (`sasl_settings`),
                    // never with a password.
                    SaslMechanism::ScramSha512 | SaslMechanism::OAuthBearer => {
                        SaslConfig::ScramSha512(creds)
                    }
                }
            }
        })
    }

    /// The rustls configuration, when TLS is on, read from the PEM files.
    /// [`connect`](Self::connect) builds it once per attempt and gives the
    /// same one to the probe and to rskafka; the group connection builds its
    /// own from the same settings.
    ///
    /// With `KAFKA_SSL_VERIFY_HOSTNAME=false` the first call in a process
    /// logs a warning: it happens when a service first connects, at start.
    pub fn rustls_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, KafkaError> {
        if !self.security_protocol.uses_tls() {
            return Ok(None);
        }
        if !self.tls.verify_hostname {
            static WARNED: Once = Once::new();
            WARNED.call_once(|| {
                warn!(
                    security_protocol = %self.security_protocol,
                    bootstrap = %self.bootstrap.join(","),
                    "TLS hostname verification is OFF (KAFKA_SSL_VERIFY_HOSTNAME=false): broker \
                     certificates are checked against the CA but not against the broker's name, \
                     so any certificate that CA issued is accepted for any broker"
                );
            });
        }
        Ok(Some(tls_client_config(&self.tls)?))
    }

    /// SASL PLAIN over SASL_PLAINTEXT sends the password as it is over an
    /// unencrypted connection: anyone on the path reads it; OAUTHBEARER
    /// sends its token so, which anyone can use until it expires. Allowed
    /// (a test cluster may want it), but said once, when a service first
    /// connects, as for the hostname check.
    pub(crate) fn warn_if_password_in_clear(&self) {
        if self.password_in_clear() {
            static WARNED: Once = Once::new();
            WARNED.call_once(|| {
                warn!(
                    security_protocol = %self.security_protocol,
                    bootstrap = %self.bootstrap.join(","),
                    "SASL PLAIN over SASL_PLAINTEXT: the password crosses the network unencrypted; \
                     use SASL_SSL, or SCRAM-SHA-256/512, which never sends it"
                );
            });
        }
        if self.token_in_clear() {
            static WARNED: Once = Once::new();
            WARNED.call_once(|| {
                warn!(
                    security_protocol = %self.security_protocol,
                    bootstrap = %self.bootstrap.join(","),
                    "SASL OAUTHBEARER over SASL_PLAINTEXT: the token crosses the network \
                     unencrypted, and whoever reads it can use it until it expires; use SASL_SSL"
                );
            });
        }
    }

    /// PLAIN without TLS: the password itself goes over the wire in clear.
    fn password_in_clear(&self) -> bool {
        self.mechanism_in_clear(SaslMechanism::Plain)
    }

    /// OAUTHBEARER without TLS: the bearer token goes over the wire in clear.
    fn token_in_clear(&self) -> bool {
        self.mechanism_in_clear(SaslMechanism::OAuthBearer)
    }

    fn mechanism_in_clear(&self, mechanism: SaslMechanism) -> bool {
        let used = self.sasl.as_ref().is_some_and(|s| s.mechanism == mechanism);
        used && !self.security_protocol.uses_tls()
    }

    /// Connects rskafka's client within `deadline`.
    ///
    /// rskafka reports TLS and SASL failures vaguely ("Connection error",
    /// "Sasl handshake failed: API error"), so first the bootstrap brokers
    /// are probed, in order, with the group protocol's own connection — TCP, TLS,
    /// `ApiVersions`, SASL, with the very same TLS configuration — until one
    /// succeeds. A failure a retry cannot fix (certificate, authentication,
    /// security-protocol mismatch, TLS files) is returned at once as one
    /// clear line naming the broker ([`KafkaError::Broker`],
    /// [`KafkaError::SaslRequired`]); network trouble is retried with
    /// growing backoff until `deadline` ([`KafkaError::Unreachable`]).
    /// Callers that must keep trying those too use
    /// [`connect_retrying`](Self::connect_retrying).
    pub async fn connect(&self, deadline: Duration) -> Result<Client, KafkaError> {
        self.connect_loop(deadline, false, |_| {}).await
    }

    /// Like [`connect`](Self::connect), but retries *every* failure except
    /// unusable TLS files — wrong password, unknown CA and protocol mismatch
    /// included, since operators provision users and certificates
    /// asynchronously — with growing backoff until `deadline`. Each failure
    /// is passed to `on_failure` (e.g. to set `/readyz`) and each retry
    /// logged as a warning; the last failure is returned.
    pub async fn connect_retrying(
        &self,
        deadline: Duration,
        on_failure: impl FnMut(&KafkaError),
    ) -> Result<Client, KafkaError> {
        self.connect_loop(deadline, true, on_failure).await
    }

    /// Connects rskafka's client, retrying *every* failure (as
    /// [`connect_retrying`](Self::connect_retrying) does) with `backoff`
    /// until it succeeds or `cancel` fires (`None`). Each attempt is
    /// bounded by the request timeout; each failure is passed to
    /// `on_failure` (e.g. to set `/readyz`) and logged as one warning
    /// naming the attempt and the wait before the next.
    pub async fn connect_until_cancelled(
        &self,
        backoff: Backoff,
        cancel: &CancellationToken,
        mut on_failure: impl FnMut(&KafkaError),
    ) -> Option<Client> {
        self.warn_if_password_in_clear();
        let mut retries = backoff.retries();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let until = Instant::now() + self.request_timeout;
            let result = tokio::select! {
                () = cancel.cancelled() => return None,
                r = self.attempt(until) => r,
            };
            let e = match result {
                Ok(client) => return Some(client),
                Err(e) => e,
            };
            on_failure(&e);
            let wait = retries.next_delay();
            self.warn_retry(&e, attempt, wait);
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One connection attempt: the TLS configuration, the probe, rskafka's
    /// client, all before `until`.
    async fn attempt(&self, until: Instant) -> Result<Client, KafkaError> {
        let tls = self.rustls_config()?;
        let broker = self.probe(tls.clone(), until).await?;
        debug!(
            broker,
            "bootstrap broker reachable; connecting the Kafka client"
        );
        self.build_client(tls, until).await
    }

    async fn connect_loop(
        &self,
        deadline: Duration,
        retry_all: bool,
        mut on_failure: impl FnMut(&KafkaError),
    ) -> Result<Client, KafkaError> {
        let until = Instant::now() + deadline;
        self.warn_if_password_in_clear();
        let tls = match self.rustls_config() {
            Ok(tls) => tls,
            Err(e) => {
                on_failure(&e);
                return Err(e);
            }
        };
        // The last attempt starts at least this long before the deadline, so
        // the error reported is the broker's answer, not a cut-off attempt.
        let last_attempt = FINAL_ATTEMPT_BUDGET.min(deadline / 4);
        let mut retries = self.retry_backoff().retries();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let e = match self.probe(tls.clone(), until).await {
                Ok(broker) => {
                    debug!(
                        broker,
                        "bootstrap broker reachable; connecting the Kafka client"
                    );
                    match self.build_client(tls.clone(), until).await {
                        Ok(client) => return Ok(client),
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            on_failure(&e);
            let remaining = until.saturating_duration_since(Instant::now());
            if !(e.is_retriable() || retry_all) || remaining <= last_attempt {
                return Err(e);
            }
            let wait = retries.next_delay().min(remaining - last_attempt);
            self.warn_retry(&e, attempt, wait);
            tokio::time::sleep(wait).await;
        }
    }

    /// The one warning per failed connection attempt, with the wait before
    /// the next.
    fn warn_retry(&self, e: &KafkaError, attempt: u32, wait: Duration) {
        warn!(
            bootstrap = %self.bootstrap.join(","),
            error = %e,
            attempt,
            retry_in_ms = wait.as_millis() as u64,
            "cannot connect to Kafka; retrying"
        );
    }

    /// rskafka's client, after a successful probe.
    async fn build_client(
        &self,
        tls: Option<Arc<rustls::ClientConfig>>,
        until: Instant,
    ) -> Result<Client, KafkaError> {
        let remaining = until.saturating_duration_since(Instant::now());
        let mut builder = ClientBuilder::new(self.bootstrap.clone())
            .client_id(self.client_id.as_str())
            .backoff_config(self.backoff(Some(remaining)));
        if let Some(tls) = tls {
            builder = builder.tls_config(tls);
        }
        if let Some(sasl) = self.rskafka_sasl() {
            builder = builder.sasl_config(sasl);
        }
        // rskafka's own deadline covers retries; the outer timeout also
        // covers a single attempt that hangs.
        match tokio::time::timeout(remaining + Duration::from_secs(1), builder.build()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(KafkaError::Connect {
                bootstrap: self.bootstrap.join(","),
                source: Box::new(e),
            }),
            Err(_) => Err(KafkaError::ConnectTimeout {
                bootstrap: self.bootstrap.join(","),
                after: remaining,
            }),
        }
    }

    /// The group protocol's connection settings, the TLS configuration
    /// built from the PEM files.
    pub fn connection_config(&self) -> Result<ConnectionConfig, KafkaError> {
        self.connection_config_with(self.rustls_config()?)
    }

    /// Like [`connection_config`](Self::connection_config), reusing a
    /// rustls configuration built from these settings.
    fn connection_config_with(
        &self,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<ConnectionConfig, KafkaError> {
        ConnectionConfig::new(
            &self.client_id,
            self.security_protocol,
            self.sasl.clone(),
            tls,
            self.request_timeout,
        )
        .map_err(|e| KafkaError::Broker(Box::new(e)))
    }

    /// One pass over the bootstrap brokers: the first that connects (TCP,
    /// TLS, `ApiVersions`, SASL) ends it. A failure retrying cannot fix ends
    /// it at once (the next broker has the same CA and users); otherwise the
    /// last broker's failure is returned.
    async fn probe(
        &self,
        tls: Option<Arc<rustls::ClientConfig>>,
        until: Instant,
    ) -> Result<&str, KafkaError> {
        let config = self.connection_config_with(tls)?;
        let mut last = None;
        for broker in &self.bootstrap {
            let remaining = until.saturating_duration_since(Instant::now());
            let e = match preflight(&config, broker, remaining).await {
                Ok(Preflight::Ready) => return Ok(broker),
                Ok(Preflight::SaslRequired { offered }) => {
                    return Err(KafkaError::SaslRequired {
                        broker: broker.clone(),
                        protocol: self.security_protocol,
                        offered,
                    })
                }
                Err(e) => e,
            };
            if !e.is_retriable() {
                return Err(KafkaError::Broker(Box::new(e)));
            }
            last = Some(e);
        }
        let last = last.unwrap_or_else(|| ConnectionError::Timeout {
            broker: self.bootstrap.join(","),
            during: "connect",
            after: Duration::ZERO,
        });
        Err(KafkaError::Unreachable {
            bootstrap: self.bootstrap.join(","),
            last: Box::new(last),
        })
    }
}

/// rskafka's token callback: the file as it is now, for each new connection.
fn token_callback(file: TokenFile) -> OauthCallback {
    Arc::new(move || {
        let file = file.clone();
        Box::pin(async move {
            file.read()
                .map(|token| token.value.expose().to_owned())
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
    })
}

/// The credentials `mechanism` needs: a user and password, or (OAUTHBEARER)
/// a token file. The token file is not read here: it is read for every
/// connection, so it may appear or be replaced after the start.
fn sasl_settings(
    src: &ConfigSource,
    mechanism: SaslMechanism,
    password: Option<Secret>,
    token_file: Option<String>,
) -> Result<SaslSettings, ConfigError> {
    let token_key = keys::SASL_OAUTHBEARER_TOKEN_FILE.env;
    if mechanism == SaslMechanism::OAuthBearer {
        let path = token_file.ok_or_else(|| ConfigError::Missing {
            key: token_key.to_owned(),
            hint: "SASL (OAUTHBEARER) needs the path of the file holding the token (a projected \
                   service-account token, a token sidecar's output)"
                .to_owned(),
        })?;
        return Ok(SaslSettings {
            mechanism,
            credentials: SaslCredentials::Token(TokenFile::new(path)),
        });
    }
    if token_file.is_some() {
        return Err(ConfigError::Conflict {
            keys: format!("{token_key} and KAFKA_SASL_MECHANISM"),
            problem: format!(
                "a token file is only used with KAFKA_SASL_MECHANISM=OAUTHBEARER, not {mechanism}; \
                 set the mechanism to OAUTHBEARER or remove {token_key}"
            ),
        });
    }
    let username = src.required(
        "KAFKA_USERNAME",
        &format!("SASL ({mechanism}) needs a user name"),
    )?;
    let password = password.ok_or_else(|| ConfigError::Missing {
        key: "KAFKA_PASSWORD".to_owned(),
        hint: format!(
            "SASL ({mechanism}) needs a password: set KAFKA_PASSWORD or KAFKA_PASSWORD_FILE"
        ),
    })?;
    Ok(SaslSettings::password(mechanism, username, password))
}

/// See `connect_loop`.
const FINAL_ATTEMPT_BUDGET: Duration = Duration::from_millis(500);

fn bootstrap_list(src: &ConfigSource) -> Result<Vec<String>, ConfigError> {
    // The prototype used KAFKA_BOOTSTRAP_SERVER (one address); the plural is
    // the usual spelling elsewhere. Both may hold a comma-separated list.
    // Only an unset key takes the default: an empty one (a ConfigMap
    // rendered from an empty variable) is an error below, not localhost.
    let key = if src.raw("KAFKA_BOOTSTRAP_SERVER").is_some() {
        "KAFKA_BOOTSTRAP_SERVER"
    } else {
        "KAFKA_BOOTSTRAP_SERVERS"
    };
    let raw = src
        .raw(key)
        .or(keys::BOOTSTRAP_SERVER.default)
        .unwrap_or_default();
    let mut out = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // Accept the scheme prefixes other clients use.
        let addr = part
            .strip_prefix("PLAINTEXT://")
            .or_else(|| part.strip_prefix("SSL://"))
            .or_else(|| part.strip_prefix("SASL_PLAINTEXT://"))
            .or_else(|| part.strip_prefix("SASL_SSL://"))
            .unwrap_or(part);
        let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(src.invalid(
                key,
                format!("`{part}` is not host:port"),
                "comma-separated host:port pairs, e.g. kafka:9092,kafka-2:9092",
            ));
        }
        out.push(addr.to_owned());
    }
    if out.is_empty() {
        return Err(src.invalid(
            key,
            "no broker address",
            "comma-separated host:port pairs, e.g. kafka:9092",
        ));
    }
    Ok(out)
}

/// Errors while setting up or using a Kafka connection.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The TLS configuration could not be built (files, rustls).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A bootstrap broker refused us for a reason retrying will not fix
    /// soon (certificate, authentication, security-protocol mismatch): our
    /// own connection's one-line explanation, naming the broker.
    #[error("{0}")]
    Broker(Box<ConnectionError>),
    /// No bootstrap broker could be reached (network trouble, timeouts).
    #[error("cannot connect to Kafka at {bootstrap}: {last}")]
    Unreachable {
        /// The bootstrap list.
        bootstrap: String,
        /// The last broker's failure.
        last: Box<ConnectionError>,
    },
    /// SASL is not configured but the listener requires it.
    #[error(
        "Kafka broker {broker} requires SASL authentication (it offers {}) but \
         KAFKA_SECURITY_PROTOCOL is {protocol}: set it to {} and KAFKA_SASL_MECHANISM, \
         KAFKA_USERNAME, KAFKA_PASSWORD",
        if offered.is_empty() { "no mechanism".to_owned() } else { offered.join(", ") },
        if protocol.uses_tls() { "SASL_SSL" } else { "SASL_PLAINTEXT" }
    )]
    SaslRequired {
        /// `host:port`.
        broker: String,
        /// The configured protocol (PLAINTEXT or SSL).
        protocol: SecurityProtocol,
        /// The mechanisms the listener enables.
        offered: Vec<String>,
    },
    /// rskafka's client could not reach the cluster (after a successful probe).
    #[error("cannot connect to Kafka at {bootstrap}: {source}")]
    Connect {
        /// The bootstrap list.
        bootstrap: String,
        /// rskafka's error.
        source: Box<rskafka::client::error::Error>,
    },
    /// No answer within the deadline.
    #[error("cannot connect to Kafka at {bootstrap}: no usable answer within {after:?}")]
    ConnectTimeout {
        /// The bootstrap list.
        bootstrap: String,
        /// The deadline.
        after: Duration,
    },
}

impl KafkaError {
    /// Whether trying again later may succeed without changing anything:
    /// network trouble and timeouts, not bad files, certificates or passwords.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Tls(_) | Self::SaslRequired { .. } => false,
            Self::Broker(e) => e.is_retriable(),
            Self::Unreachable { .. } | Self::Connect { .. } | Self::ConnectTimeout { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<KafkaSettings, ConfigError> {
        KafkaSettings::from_source(&ConfigSource::from_pairs(pairs.iter().copied()), "test")
    }

    #[test]
    fn prototype_configmaps_are_accepted() {
        // kafka-producer/deploy/configmap.yaml plus the Job's overrides.
        let s = settings(&[
            (
                "KAFKA_BOOTSTRAP_SERVER",
                "kafka.default.svc.cluster.local:9092",
            ),
            ("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", ""),
            ("KAFKA_USERNAME", "admin"),
            ("KAFKA_PASSWORD", "admin"),
        ])
        .expect("valid");
        assert_eq!(s.bootstrap, vec!["kafka.default.svc.cluster.local:9092"]);
        assert_eq!(s.sasl, None);

        let s = settings(&[
            ("KAFKA_BOOTSTRAP_SERVER", "kafka:9092"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_USERNAME", "admin"),
            ("KAFKA_PASSWORD", "admin"),
        ])
        .expect("valid");
        let sasl = s.sasl.clone().expect("sasl");
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        assert_eq!(sasl.principal(), "user admin");
        assert!(matches!(s.rskafka_sasl(), Some(SaslConfig::ScramSha512(_))));
    }

    #[test]
    fn bootstrap_lists_and_plural_key() {
        let s = settings(&[("KAFKA_BOOTSTRAP_SERVERS", "a:1, PLAINTEXT://b:2 ,")]).expect("valid");
        assert_eq!(s.bootstrap, vec!["a:1", "b:2"]);
        assert_eq!(
            settings(&[]).expect("default").bootstrap,
            vec!["localhost:9092"]
        );
        for key in ["KAFKA_BOOTSTRAP_SERVER", "KAFKA_BOOTSTRAP_SERVERS"] {
            for empty in ["", " ", ","] {
                let e = settings(&[(key, empty)])
                    .expect_err("set but empty is not the default")
                    .to_string();
                assert!(
                    e.starts_with(&format!("invalid configuration: {key}=")),
                    "{e}"
                );
            }
        }
        let e = settings(&[("KAFKA_BOOTSTRAP_SERVER", "kafka")])
            .expect_err("no port")
            .to_string();
        assert!(
            e.contains("KAFKA_BOOTSTRAP_SERVER=\"kafka\"") && e.contains("host:port"),
            "{e}"
        );
    }

    #[test]
    fn sasl_needs_mechanism_user_and_password() {
        let e = settings(&[("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")])
            .expect_err("x")
            .to_string();
        assert!(
            e.contains("KAFKA_SASL_MECHANISM") && e.contains("SCRAM-SHA-512"),
            "{e}"
        );
        let e = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
        ])
        .expect_err("x")
        .to_string();
        assert!(e.contains("KAFKA_USERNAME is required"), "{e}");
        let e = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "GSSAPI"),
        ])
        .expect_err("x")
        .to_string();
        assert!(
            e.contains("GSSAPI") && e.contains("PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER"),
            "{e}"
        );
        let e = settings(&[("KAFKA_SECURITY_PROTOCOL", "TLS")])
            .expect_err("x")
            .to_string();
        assert!(
            e.contains("PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
            "{e}"
        );
    }

    #[test]
    fn oauthbearer_needs_a_token_file_and_only_it() {
        let s = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "oauthbearer"),
            (
                "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE",
                "/var/run/secrets/tokens/kafka",
            ),
            ("KAFKA_SSL_WEBPKI_ROOTS", "true"),
        ])
        .expect("valid: the file is read when connecting, not at start");
        let sasl = s.sasl.clone().expect("sasl");
        assert_eq!(sasl.mechanism, SaslMechanism::OAuthBearer);
        assert_eq!(
            sasl.principal(),
            "the token in /var/run/secrets/tokens/kafka"
        );
        assert!(matches!(s.rskafka_sasl(), Some(SaslConfig::Oauthbearer(_))));
        assert!(!s.password_in_clear() && !s.token_in_clear());

        let e = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "OAUTHBEARER"),
        ])
        .expect_err("no token file")
        .to_string();
        assert!(
            e.contains("KAFKA_SASL_OAUTHBEARER_TOKEN_FILE is required"),
            "{e}"
        );
        let e = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_USERNAME", "u"),
            ("KAFKA_PASSWORD", "p"),
            ("KAFKA_SASL_OAUTHBEARER_TOKEN_FILE", "/t"),
        ])
        .expect_err("token file with SCRAM")
        .to_string();
        assert!(
            e.contains("KAFKA_SASL_OAUTHBEARER_TOKEN_FILE and KAFKA_SASL_MECHANISM")
                && e.contains("only used with KAFKA_SASL_MECHANISM=OAUTHBEARER, not SCRAM-SHA-512"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn rskafka_token_callback_reads_the_file_each_time() {
        let path = std::env::temp_dir().join(format!("kafka-token-{}", std::process::id()));
        let s = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "OAUTHBEARER"),
            (
                "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE",
                path.to_str().expect("utf-8"),
            ),
        ])
        .expect("valid");
        let Some(SaslConfig::Oauthbearer(creds)) = s.rskafka_sasl() else {
            panic!("OAUTHBEARER");
        };
        let e = (creds.callback)()
            .await
            .expect_err("no file yet")
            .to_string();
        assert!(
            e.starts_with("cannot read the OAUTHBEARER token file"),
            "{e}"
        );
        let jwt = |exp: u64| {
            use base64::Engine;
            let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
            format!(
                "{}.{}.",
                b64("{}".to_owned()),
                b64(format!(r#"{{"exp":{exp}}}"#))
            )
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        for exp in [now + 60, now + 3600] {
            std::fs::write(&path, jwt(exp)).expect("write");
            assert_eq!((creds.callback)().await.expect("token"), jwt(exp));
        }
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn plain_over_sasl_plaintext_is_the_one_case_warned_about() {
        let sasl = |protocol: &str, mechanism: &str| {
            settings(&[
                ("KAFKA_SECURITY_PROTOCOL", protocol),
                ("KAFKA_SASL_MECHANISM", mechanism),
                ("KAFKA_USERNAME", "u"),
                ("KAFKA_PASSWORD", "p"),
                ("KAFKA_SSL_WEBPKI_ROOTS", "true"),
            ])
            .expect("valid")
            .password_in_clear()
        };
        assert!(sasl("SASL_PLAINTEXT", "PLAIN"));
        assert!(!sasl("SASL_PLAINTEXT", "SCRAM-SHA-256"));
        assert!(!sasl("SASL_PLAINTEXT", "SCRAM-SHA-512"));
        assert!(!sasl("SASL_SSL", "PLAIN"));
        // A mechanism left next to PLAINTEXT is unused.
        assert!(!sasl("PLAINTEXT", "PLAIN"));
    }

    #[test]
    fn public_roots_without_the_hostname_check_are_refused() {
        // Issue 17: any publicly issued certificate for any name would do.
        for protocol in ["SSL", "SASL_SSL"] {
            let e = settings(&[
                ("KAFKA_SECURITY_PROTOCOL", protocol),
                ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
                ("KAFKA_USERNAME", "u"),
                ("KAFKA_PASSWORD", "p"),
                ("KAFKA_SSL_WEBPKI_ROOTS", "true"),
                ("KAFKA_SSL_VERIFY_HOSTNAME", "false"),
            ])
            .expect_err("refused")
            .to_string();
            assert!(
                e.contains("KAFKA_SSL_WEBPKI_ROOTS and KAFKA_SSL_VERIFY_HOSTNAME")
                    && e.contains("any publicly issued certificate"),
                "{e}"
            );
        }
        // With a private CA the opt-out stays possible, and without TLS
        // neither key matters.
        let ca = std::env::temp_dir().join(format!("ca-{}.pem", std::process::id()));
        std::fs::write(&ca, "").expect("write");
        let ca_path = ca.to_str().expect("utf-8").to_owned();
        settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("KAFKA_SSL_CA_FILE", &ca_path),
            ("KAFKA_SSL_VERIFY_HOSTNAME", "false"),
        ])
        .expect("private CA, hostname check off");
        settings(&[
            ("KAFKA_SSL_WEBPKI_ROOTS", "true"),
            ("KAFKA_SSL_VERIFY_HOSTNAME", "false"),
        ])
        .expect("PLAINTEXT");
        let _ = std::fs::remove_file(ca);
    }

    #[test]
    fn tls_needs_a_ca() {
        let e = settings(&[("KAFKA_SECURITY_PROTOCOL", "SSL")])
            .expect_err("x")
            .to_string();
        assert!(e.contains("KAFKA_SSL_CA_FILE"), "{e}");
        let s = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("KAFKA_SSL_WEBPKI_ROOTS", "true"),
        ])
        .expect("ok");
        assert!(s.rustls_config().expect("tls").is_some());
        let e = settings(&[("KAFKA_SSL_CA_FILE", "/nonexistent/ca.pem")])
            .expect_err("x")
            .to_string();
        assert!(e.contains("no such file"), "{e}");
    }

    #[tokio::test]
    async fn connect_gives_up_on_an_unreachable_broker_at_the_deadline() {
        let s = KafkaSettings::plaintext("127.0.0.1:1", "t");
        let started = std::time::Instant::now();
        let e = s
            .connect(Duration::from_millis(800))
            .await
            .expect_err("nothing listens on port 1");
        assert!(started.elapsed() < Duration::from_secs(2), "{e}");
        assert!(e.is_retriable(), "{e}");
        assert!(
            e.to_string().starts_with(
                "cannot connect to Kafka at 127.0.0.1:1: cannot connect to Kafka broker 127.0.0.1:1: "
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn connect_retrying_reports_every_failure_with_growing_waits() {
        let s = KafkaSettings::plaintext("127.0.0.1:1", "t");
        let mut failures = 0;
        let started = std::time::Instant::now();
        let e = s
            .connect_retrying(Duration::from_millis(1200), |_| failures += 1)
            .await
            .expect_err("nothing listens on port 1");
        // 100 ms doubling, jittered, within 1.2 s: a handful, not a tight loop.
        assert!((2..=8).contains(&failures), "{failures} failures: {e}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn error_lines_say_what_to_do() {
        let e = KafkaError::SaslRequired {
            broker: "b:9093".to_owned(),
            protocol: SecurityProtocol::Ssl,
            offered: vec!["PLAIN".to_owned(), "SCRAM-SHA-512".to_owned()],
        };
        assert_eq!(
            e.to_string(),
            "Kafka broker b:9093 requires SASL authentication (it offers PLAIN, SCRAM-SHA-512) but \
             KAFKA_SECURITY_PROTOCOL is SSL: set it to SASL_SSL and KAFKA_SASL_MECHANISM, \
             KAFKA_USERNAME, KAFKA_PASSWORD"
        );
        assert!(!e.is_retriable());
        let tls = KafkaError::Tls(TlsError::File {
            what: "CA file",
            path: "/x".to_owned(),
            problem: "no usable certificate in it".to_owned(),
        });
        assert!(!tls.is_retriable());
    }

    #[test]
    fn secrets_never_in_debug_output() {
        let s = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
            ("KAFKA_USERNAME", "u"),
            ("KAFKA_PASSWORD", "hunter2"),
        ])
        .expect("ok");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
