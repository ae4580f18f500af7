//! One connection to one Kafka broker, speaking the group-protocol APIs.
//!
//! rskafka has no consumer groups and keeps its protocol layer private, so
//! the group coordinator is reached over a [`BrokerConnection`] of our own,
//! built on `kafka-protocol`'s message types:
//!
//! 1. TCP connect, then TLS when the security protocol asks for it — with
//!    the very rustls configuration rskafka gets
//!    ([`KafkaSettings::rustls_config`]), server name = the address's host;
//! 2. `ApiVersions`, to pick for every API we use the highest version both
//!    sides support (within what `kafka-protocol` implements and what we
//!    cap it at, see [`KnownRequest`]);
//! 3. SASL when configured: `SaslHandshake` v1 naming the mechanism, then
//!    `SaslAuthenticate` rounds driven by rsasl (PLAIN, SCRAM-SHA-256,
//!    SCRAM-SHA-512), the way rskafka does it.
//!
//! All of that happens within one `request_timeout`; afterwards every
//! request is bounded by it too. Requests are sent one at a time (no
//! pipelining): the group protocol never needs more, and a connection that
//! is free of in-flight state cannot mix up answers.
//!
//! # Untrusted bytes
//!
//! Nothing a broker (or whatever listens on the port) sends can panic or hang
//! us: frames are length-checked against [`MAX_FRAME_BYTES`], a short read is
//! an error, and every response is *walked* before `kafka-protocol` decodes
//! it. The walk (module `wire`) mirrors the generated decoders and checks
//! every length prefix against the bytes actually present, because those
//! decoders call `Vec::with_capacity` with the declared element count: a
//! 20-byte frame declaring 2^31 group members would otherwise abort the
//! process on allocation failure.
//!
//! After a failed or cancelled request the connection is unusable (its
//! stream may be mid-frame) and says so; the owner opens a new one.

use std::{collections::HashMap, fmt, io, sync::Arc, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest, HeartbeatRequest,
        JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
        RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
        SyncGroupRequest,
    },
    protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange},
};
use rsasl::prelude::{Mechname, SASLClient, SASLConfig};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::{timeout_at, Instant},
};
use tokio_rustls::TlsConnector;
use tracing::debug;

use crate::{
    group::error::KafkaCode,
    kafka::{KafkaError, KafkaSettings, SaslMechanism, SaslSettings},
};

/// The largest response frame we accept (100 MiB, the broker's own default
/// `socket.request.max.bytes`). Group responses are tiny; a larger length
/// prefix means the peer is not a Kafka broker or the stream is out of sync.
pub const MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// Sent in `ApiVersions` v3+ (brokers show it in their client metrics).
const CLIENT_SOFTWARE_NAME: &str = "kind-kafka-rs";

/// A SASL exchange that has not finished after this many rounds is broken
/// (SCRAM needs two, PLAIN one).
const MAX_SASL_ROUNDS: usize = 8;

/// `UNSUPPORTED_VERSION`: the broker answers an `ApiVersions` request of a
/// version it does not know with this code, in the v0 layout.
const UNSUPPORTED_VERSION: i16 = 35;
/// `UNSUPPORTED_SASL_MECHANISM`.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// `ILLEGAL_SASL_STATE`: what a broker answers `SaslHandshake` with on a
/// listener that does not use SASL.
const ILLEGAL_SASL_STATE: i16 = 34;

/// Why talking to one broker failed. Every variant names the broker; none
/// ever contains the SASL password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The settings cannot produce a connection (TLS files, missing SASL).
    #[error("Kafka connection settings: {0}")]
    Config(#[from] KafkaError),

    /// The settings are inconsistent (e.g. a SASL protocol without credentials).
    #[error("Kafka connection settings: {problem}")]
    Settings {
        /// What is wrong.
        problem: String,
    },

    /// The broker address is not `host:port`.
    #[error("broker address `{broker}` is not host:port")]
    InvalidAddress {
        /// The address as given.
        broker: String,
    },

    /// The TCP connection could not be opened.
    #[error("cannot connect to Kafka broker {broker}: {source}")]
    Connect {
        /// `host:port`.
        broker: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },

    /// The TLS handshake failed.
    #[error("TLS handshake with Kafka broker {broker} failed: {source}{hint}")]
    Tls {
        /// `host:port`.
        broker: String,
        /// rustls' error, as tokio-rustls reports it.
        #[source]
        source: io::Error,
        /// A likely cause, when we can tell (e.g. the port is not a TLS listener).
        hint: &'static str,
    },

    /// The broker sent TLS records to our plaintext request.
    #[error(
        "Kafka broker {broker} answered with TLS: it is a TLS listener, set the security \
         protocol to SSL or SASL_SSL"
    )]
    UnexpectedTls {
        /// `host:port`.
        broker: String,
    },

    /// No answer within the timeout.
    #[error("no answer from Kafka broker {broker} within {after:?} (during {during})")]
    Timeout {
        /// `host:port`.
        broker: String,
        /// The step or API: `TCP connect`, `TLS handshake`, `JoinGroup`, …
        during: &'static str,
        /// The timeout that expired.
        after: Duration,
    },

    /// The broker closed the connection.
    #[error("Kafka broker {broker} closed the connection (during {during}){hint}")]
    Closed {
        /// `host:port`.
        broker: String,
        /// The step or API.
        during: &'static str,
        /// A likely cause, when we can tell.
        hint: &'static str,
    },

    /// Reading or writing the socket failed.
    #[error("I/O error talking to Kafka broker {broker} (during {during}): {source}")]
    Io {
        /// `host:port`.
        broker: String,
        /// The step or API.
        during: &'static str,
        /// The socket error.
        #[source]
        source: io::Error,
    },

    /// A response frame's length prefix is negative or absurdly large.
    #[error(
        "Kafka broker {broker} sent a {length}-byte frame (during {during}), limit {max}: not \
         a Kafka broker, or the stream is out of sync"
    )]
    InvalidFrame {
        /// `host:port`.
        broker: String,
        /// The API whose response was expected.
        during: &'static str,
        /// The length prefix.
        length: i64,
        /// [`MAX_FRAME_BYTES`].
        max: usize,
    },

    /// The connection ended in the middle of a response frame.
    #[error(
        "Kafka broker {broker} closed the connection after {received} of {expected} response \
         bytes (during {during})"
    )]
    Truncated {
        /// `host:port`.
        broker: String,
        /// The API whose response was being read.
        during: &'static str,
        /// The frame's declared length.
        expected: usize,
        /// Bytes received before the end.
        received: usize,
    },

    /// A response frame is not a valid response of the expected type.
    #[error("cannot decode {api} v{version} response from Kafka broker {broker}: {reason}")]
    Decode {
        /// `host:port`.
        broker: String,
        /// The API.
        api: &'static str,
        /// The version we asked for.
        version: i16,
        /// What was wrong.
        reason: String,
    },

    /// The response answers a different request.
    #[error(
        "Kafka broker {broker} answered {api} with correlation id {got}, expected {expected}: \
         the stream is out of sync"
    )]
    CorrelationMismatch {
        /// `host:port`.
        broker: String,
        /// The API.
        api: &'static str,
        /// Our request's correlation id.
        expected: i32,
        /// The response's.
        got: i32,
    },

    /// The request could not be encoded (e.g. a field this version lacks).
    #[error("cannot encode {api} v{version} request for Kafka broker {broker}: {reason}")]
    Encode {
        /// `host:port`.
        broker: String,
        /// The API.
        api: &'static str,
        /// The version.
        version: i16,
        /// `kafka-protocol`'s message.
        reason: String,
    },

    /// No version of an API is supported by both sides (or the one asked for is not).
    #[error(
        "Kafka broker {broker} does not support a usable {api} version: we support {ours}, \
         the broker {}", theirs.map_or_else(|| "does not offer it".to_owned(), |r| format!("supports {r}"))
    )]
    UnsupportedVersion {
        /// `host:port`.
        broker: String,
        /// The API.
        api: &'static str,
        /// The versions we can use (or the one version asked for).
        ours: VersionRange,
        /// What the broker advertised, if anything.
        theirs: Option<VersionRange>,
    },

    /// `ApiVersions` or `SaslHandshake` failed with a Kafka error code.
    #[error("Kafka broker {broker} answered {api} with {code}")]
    Api {
        /// `host:port`.
        broker: String,
        /// The API.
        api: &'static str,
        /// The error code.
        code: KafkaCode,
    },

    /// The broker's listener does not enable the configured SASL mechanism.
    #[error(
        "Kafka broker {broker} does not enable SASL mechanism {mechanism}; it offers: {}",
        if offered.is_empty() { "none".to_owned() } else { offered.join(", ") }
    )]
    SaslMechanismNotEnabled {
        /// `host:port`.
        broker: String,
        /// What we asked for.
        mechanism: SaslMechanism,
        /// What the broker offers.
        offered: Vec<String>,
    },

    /// SASL is configured but the listener does not use it.
    #[error(
        "Kafka broker {broker} does not expect SASL authentication (ILLEGAL_SASL_STATE (34)): \
         the listener is PLAINTEXT or SSL, not SASL_PLAINTEXT or SASL_SSL"
    )]
    SaslNotExpected {
        /// `host:port`.
        broker: String,
    },

    /// The broker rejected the credentials.
    #[error(
        "authentication failed for user {user} with {mechanism} at Kafka broker {broker}: {code}{}",
        message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
    )]
    AuthenticationFailed {
        /// `host:port`.
        broker: String,
        /// The user name (never the password).
        user: String,
        /// The mechanism.
        mechanism: SaslMechanism,
        /// Usually `SASL_AUTHENTICATION_FAILED (58)`.
        code: KafkaCode,
        /// The broker's explanation.
        message: Option<String>,
    },

    /// The SASL exchange itself failed on our side (e.g. the server's SCRAM
    /// signature does not verify).
    #[error("SASL {mechanism} exchange with Kafka broker {broker} failed: {reason}")]
    Sasl {
        /// `host:port`.
        broker: String,
        /// The mechanism.
        mechanism: SaslMechanism,
        /// rsasl's message.
        reason: String,
    },

    /// An earlier request on this connection failed or was cancelled midway.
    #[error(
        "connection to Kafka broker {broker} is unusable after an earlier failed or cancelled \
         request; open a new one"
    )]
    Unusable {
        /// `host:port`.
        broker: String,
    },
}

impl ConnectionError {
    /// Whether trying again later (on a new connection, possibly to another
    /// broker) may succeed: network trouble, timeouts, a broker going away.
    /// Settings, TLS verification and authentication errors are not retriable.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Timeout { .. }
                | Self::Closed { .. }
                | Self::Io { .. }
                | Self::Truncated { .. }
                | Self::Unusable { .. }
        )
    }
}

/// Connection settings prepared once (TLS configuration built, SASL
/// checked) and shared by every [`BrokerConnection`]; cheap to clone.
#[derive(Clone)]
pub struct ConnectionConfig {
    client_id: StrBytes,
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<SaslSettings>,
    request_timeout: Duration,
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // rustls' configuration is long and says nothing useful here; the
        // SASL settings redact the password themselves.
        f.debug_struct("ConnectionConfig")
            .field("client_id", &self.client_id)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl ConnectionConfig {
    /// Prepares the settings, building the rustls configuration with
    /// [`KafkaSettings::rustls_config`].
    pub fn from_settings(settings: &KafkaSettings) -> Result<Self, ConnectionError> {
        Self::with_tls(settings, settings.rustls_config()?)
    }

    /// Like [`from_settings`](Self::from_settings), reusing a rustls
    /// configuration already built from the same settings (e.g. the one
    /// given to rskafka). `tls` must be `Some` exactly when the security
    /// protocol uses TLS.
    pub fn with_tls(
        settings: &KafkaSettings,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, ConnectionError> {
        let protocol = settings.security_protocol;
        if protocol.uses_tls() != tls.is_some() {
            return Err(ConnectionError::Settings {
                problem: format!(
                    "security protocol {protocol} {} TLS but a TLS configuration was {}given",
                    if protocol.uses_tls() {
                        "uses"
                    } else {
                        "does not use"
                    },
                    if tls.is_some() { "" } else { "not " },
                ),
            });
        }
        // A manually built KafkaSettings could say SASL_* without credentials;
        // connecting would then fail later with a confusing closed connection.
        let sasl = if protocol.uses_sasl() {
            match &settings.sasl {
                Some(sasl) => Some(sasl.clone()),
                None => {
                    return Err(ConnectionError::Settings {
                        problem: format!("security protocol {protocol} needs SASL settings (mechanism, user, password)"),
                    })
                }
            }
        } else {
            None
        };
        Ok(Self {
            client_id: StrBytes::from_string(settings.client_id.clone()),
            tls,
            sasl,
            request_timeout: settings.request_timeout,
        })
    }

    /// The per-request (and per-connect) timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The client id sent with every request.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

/// Options for one request; the defaults are the negotiated version and the
/// connection's `request_timeout`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendOptions {
    version: Option<i16>,
    timeout: Option<Duration>,
}

impl SendOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends this version instead of the negotiated one; it must be one both
    /// sides support.
    pub fn version(mut self, version: i16) -> Self {
        self.version = Some(version);
        self
    }

    /// Waits this long instead of `request_timeout` (JoinGroup legitimately
    /// waits for the whole rebalance).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A request this connection can negotiate and whose responses it can
/// validate before decoding. Sealed: implemented for the group-protocol
/// APIs and the connection's own handshake APIs.
pub trait KnownRequest: Request + sealed::Sealed {
    /// The API's name, for errors and logs.
    const NAME: &'static str;
    /// The oldest version we can send.
    const MIN_VERSION: i16;
    /// The newest version we send: `kafka-protocol`'s newest unless a newer
    /// version changes semantics we do not implement.
    const MAX_VERSION: i16;

    /// The versions we can send.
    fn our_versions() -> VersionRange {
        VersionRange {
            min: Self::MIN_VERSION,
            max: Self::MAX_VERSION,
        }
    }
}

mod sealed {
    /// Checks a response body's structure; see the module docs.
    pub trait Sealed {
        fn check_response(
            w: &mut super::wire::Walker<'_>,
            version: i16,
        ) -> Result<(), super::wire::WireError>;
    }
}

macro_rules! known_request {
    ($req:ty, $name:literal, $min:expr, $max:expr, $check:path) => {
        impl KnownRequest for $req {
            const NAME: &'static str = $name;
            const MIN_VERSION: i16 = $min;
            const MAX_VERSION: i16 = $max;
        }
        impl sealed::Sealed for $req {
            fn check_response(
                w: &mut wire::Walker<'_>,
                version: i16,
            ) -> Result<(), wire::WireError> {
                $check(w, version)
            }
        }
    };
}

known_request!(
    ApiVersionsRequest,
    "ApiVersions",
    ApiVersionsRequest::VERSIONS.min,
    ApiVersionsRequest::VERSIONS.max,
    wire::api_versions
);
// v0 sends raw SASL tokens without Kafka framing afterwards; every broker
// since 1.0 supports v1.
known_request!(
    SaslHandshakeRequest,
    "SaslHandshake",
    1,
    SaslHandshakeRequest::VERSIONS.max,
    wire::sasl_handshake
);
known_request!(
    SaslAuthenticateRequest,
    "SaslAuthenticate",
    SaslAuthenticateRequest::VERSIONS.min,
    SaslAuthenticateRequest::VERSIONS.max,
    wire::sasl_authenticate
);
known_request!(
    FindCoordinatorRequest,
    "FindCoordinator",
    FindCoordinatorRequest::VERSIONS.min,
    FindCoordinatorRequest::VERSIONS.max,
    wire::find_coordinator
);
known_request!(
    JoinGroupRequest,
    "JoinGroup",
    JoinGroupRequest::VERSIONS.min,
    JoinGroupRequest::VERSIONS.max,
    wire::join_group
);
known_request!(
    SyncGroupRequest,
    "SyncGroup",
    SyncGroupRequest::VERSIONS.min,
    SyncGroupRequest::VERSIONS.max,
    wire::sync_group
);
known_request!(
    HeartbeatRequest,
    "Heartbeat",
    HeartbeatRequest::VERSIONS.min,
    HeartbeatRequest::VERSIONS.max,
    wire::heartbeat
);
known_request!(
    LeaveGroupRequest,
    "LeaveGroup",
    LeaveGroupRequest::VERSIONS.min,
    LeaveGroupRequest::VERSIONS.max,
    wire::leave_group
);
// v10 identifies topics by id instead of name; we commit by name.
known_request!(
    OffsetCommitRequest,
    "OffsetCommit",
    OffsetCommitRequest::VERSIONS.min,
    9,
    wire::offset_commit
);
// Same for v10 of OffsetFetch.
known_request!(
    OffsetFetchRequest,
    "OffsetFetch",
    OffsetFetchRequest::VERSIONS.min,
    9,
    wire::offset_fetch
);

/// The byte stream under a connection: TCP or TLS over TCP.
trait Transport: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Transport for T {}

/// One connection to one broker: connected, versions negotiated and (with
/// SASL) authenticated. Send requests with [`send`](Self::send).
pub struct BrokerConnection {
    broker: String,
    stream: Box<dyn Transport>,
    tls: bool,
    sasl: bool,
    client_id: StrBytes,
    request_timeout: Duration,
    next_correlation_id: i32,
    /// What the broker advertised in `ApiVersions`, by API key.
    broker_versions: HashMap<i16, VersionRange>,
    /// False while a request is in flight and after one failed: the stream
    /// may then hold half a frame.
    usable: bool,
    /// Requests completed since connecting (for error hints).
    completed: u64,
}

impl fmt::Debug for BrokerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConnection")
            .field("broker", &self.broker)
            .field("tls", &self.tls)
            .field("sasl", &self.sasl)
            .field("usable", &self.usable)
            .finish_non_exhaustive()
    }
}

impl BrokerConnection {
    /// Connects to `broker` (`host:port`): TCP, TLS if configured,
    /// `ApiVersions`, SASL if configured — all within the configured
    /// `request_timeout`.
    pub async fn connect(config: &ConnectionConfig, broker: &str) -> Result<Self, ConnectionError> {
        let deadline = Instant::now() + config.request_timeout;
        let timeout = |during| ConnectionError::Timeout {
            broker: broker.to_owned(),
            during,
            after: config.request_timeout,
        };
        let host = split_host(broker).ok_or_else(|| ConnectionError::InvalidAddress {
            broker: broker.to_owned(),
        })?;

        let tcp = timeout_at(deadline, TcpStream::connect(broker))
            .await
            .map_err(|_| timeout("TCP connect"))?
            .map_err(|source| ConnectionError::Connect {
                broker: broker.to_owned(),
                source,
            })?;
        // Requests are small and latency-bound (heartbeats).
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(broker, error = %e, "cannot set TCP_NODELAY");
        }

        let stream: Box<dyn Transport> = match &config.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name =
                    rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| {
                        ConnectionError::InvalidAddress {
                            broker: broker.to_owned(),
                        }
                    })?;
                let stream = timeout_at(
                    deadline,
                    TlsConnector::from(Arc::clone(tls)).connect(name, tcp),
                )
                .await
                .map_err(|_| timeout("TLS handshake"))?
                .map_err(|source| {
                    let hint = tls_failure_hint(&source);
                    ConnectionError::Tls {
                        broker: broker.to_owned(),
                        source,
                        hint,
                    }
                })?;
                Box::new(stream)
            }
        };

        let mut conn = Self {
            broker: broker.to_owned(),
            stream,
            tls: config.tls.is_some(),
            sasl: config.sasl.is_some(),
            client_id: config.client_id.clone(),
            request_timeout: config.request_timeout,
            next_correlation_id: 0,
            broker_versions: HashMap::new(),
            usable: true,
            completed: 0,
        };
        conn.negotiate_versions(deadline).await?;
        if let Some(sasl) = &config.sasl {
            conn.authenticate(sasl, deadline).await?;
        }
        debug!(broker, tls = conn.tls, sasl = conn.sasl, "connected");
        Ok(conn)
    }

    /// The broker's `host:port`.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// False once a request failed or was cancelled midway; every further
    /// request then fails with [`ConnectionError::Unusable`].
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// The versions the broker advertised for an API, if it offers it.
    pub fn broker_versions(&self, api: ApiKey) -> Option<VersionRange> {
        self.broker_versions.get(&(api as i16)).copied()
    }

    /// The version [`send`](Self::send) uses for `R`: the highest both sides
    /// support.
    pub fn version<R: KnownRequest>(&self) -> Result<i16, ConnectionError> {
        let ours = R::our_versions();
        let theirs = self.broker_versions.get(&R::KEY).copied();
        match theirs.map(|t| ours.intersect(&t)) {
            Some(both) if !both.is_empty() => Ok(both.max),
            _ => Err(ConnectionError::UnsupportedVersion {
                broker: self.broker.clone(),
                api: R::NAME,
                ours,
                theirs,
            }),
        }
    }

    /// Sends `req` at the negotiated version and returns the decoded
    /// response, within `request_timeout`.
    pub async fn send<R: KnownRequest>(&mut self, req: R) -> Result<R::Response, ConnectionError> {
        self.send_with(req, SendOptions::default()).await
    }

    /// Like [`send`](Self::send), with an explicit version or timeout.
    pub async fn send_with<R: KnownRequest>(
        &mut self,
        req: R,
        options: SendOptions,
    ) -> Result<R::Response, ConnectionError> {
        let version = match options.version {
            None => self.version::<R>()?,
            Some(v) => {
                let theirs = self.broker_versions.get(&R::KEY).copied();
                let both = theirs.map(|t| R::our_versions().intersect(&t));
                if !both.is_some_and(|b| b.min <= v && v <= b.max) {
                    return Err(ConnectionError::UnsupportedVersion {
                        broker: self.broker.clone(),
                        api: R::NAME,
                        ours: VersionRange { min: v, max: v },
                        theirs,
                    });
                }
                v
            }
        };
        let timeout = options.timeout.unwrap_or(self.request_timeout);
        let (body, body_version) = self
            .exchange(&req, version, Instant::now() + timeout, timeout)
            .await?;
        self.decode::<R>(body, body_version)
    }

    /// Writes one request and reads its response; returns the response body
    /// (after the header), validated against `R`'s response layout, and the
    /// version to decode it at.
    async fn exchange<R: KnownRequest>(
        &mut self,
        req: &R,
        version: i16,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(Bytes, i16), ConnectionError> {
        if !self.usable {
            return Err(ConnectionError::Unusable {
                broker: self.broker.clone(),
            });
        }
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = self.encode(req, version, correlation_id)?;

        // From here until the response is read the stream may hold half a
        // frame: if this future is dropped, the connection stays unusable.
        self.usable = false;
        let result = timeout_at(deadline, self.roundtrip(&frame, R::NAME)).await;
        let frame = match result {
            Err(_) => {
                return Err(ConnectionError::Timeout {
                    broker: self.broker.clone(),
                    during: R::NAME,
                    after: timeout,
                })
            }
            Ok(result) => result?,
        };
        let body = self.check_frame::<R>(frame, version, correlation_id)?;
        self.usable = true;
        self.completed += 1;
        Ok(body)
    }

    fn encode<R: KnownRequest>(
        &self,
        req: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<BytesMut, ConnectionError> {
        let err = |reason: String| ConnectionError::Encode {
            broker: self.broker.clone(),
            api: R::NAME,
            version,
            reason,
        };
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut payload = BytesMut::with_capacity(128);
        header
            .encode(&mut payload, R::header_version(version))
            .map_err(|e| err(e.to_string()))?;
        req.encode(&mut payload, version)
            .map_err(|e| err(e.to_string()))?;
        let len = i32::try_from(payload.len())
            .map_err(|_| err(format!("{} bytes is too large for a frame", payload.len())))?;
        let mut frame = BytesMut::with_capacity(4 + payload.len());
        frame.put_i32(len);
        frame.extend_from_slice(&payload);
        Ok(frame)
    }

    async fn roundtrip(
        &mut self,
        frame: &[u8],
        during: &'static str,
    ) -> Result<Bytes, ConnectionError> {
        let io_err = |broker: &str, source: io::Error| ConnectionError::Io {
            broker: broker.to_owned(),
            during,
            source,
        };
        if let Err(e) = async {
            self.stream.write_all(frame).await?;
            self.stream.flush().await
        }
        .await
        {
            return Err(if is_closed(&e) {
                self.closed(during)
            } else {
                io_err(&self.broker, e)
            });
        }

        let mut prefix = [0u8; 4];
        if let Err(e) = self.stream.read_exact(&mut prefix).await {
            return Err(if is_closed(&e) {
                self.closed(during)
            } else {
                io_err(&self.broker, e)
            });
        }
        if !self.tls && looks_like_tls(prefix) {
            return Err(ConnectionError::UnexpectedTls {
                broker: self.broker.clone(),
            });
        }
        let length = i32::from_be_bytes(prefix);
        let expected = match usize::try_from(length) {
            Ok(n) if n <= MAX_FRAME_BYTES => n,
            _ => {
                return Err(ConnectionError::InvalidFrame {
                    broker: self.broker.clone(),
                    during,
                    length: i64::from(length),
                    max: MAX_FRAME_BYTES,
                })
            }
        };
        // Grow with what actually arrives: a lying length prefix must not
        // make us allocate 100 MiB up front.
        let mut body = Vec::with_capacity(expected.min(64 * 1024));
        let read = (&mut self.stream)
            .take(expected as u64)
            .read_to_end(&mut body)
            .await;
        match read {
            Ok(n) if n == expected => Ok(Bytes::from(body)),
            Ok(received) => Err(ConnectionError::Truncated {
                broker: self.broker.clone(),
                during,
                expected,
                received,
            }),
            Err(e) if is_closed(&e) => Err(ConnectionError::Truncated {
                broker: self.broker.clone(),
                during,
                expected,
                received: body.len(),
            }),
            Err(e) => Err(io_err(&self.broker, e)),
        }
    }

    /// The error for a connection the broker closed, with a hint when the
    /// likely cause is a security-protocol mismatch.
    fn closed(&self, during: &'static str) -> ConnectionError {
        let hint = if self.completed == 0 && !self.tls {
            // A TLS listener drops a plaintext ApiVersions request.
            "; if this is a TLS listener, set the security protocol to SSL or SASL_SSL"
        } else if self.completed == 1 && !self.sasl {
            // A SASL listener drops the first request after ApiVersions that
            // is not SaslHandshake.
            "; if this listener requires SASL, set the security protocol to SASL_PLAINTEXT or SASL_SSL"
        } else {
            ""
        };
        ConnectionError::Closed {
            broker: self.broker.clone(),
            during,
            hint,
        }
    }

    /// Validates the whole frame (header and body), checks the correlation
    /// id and returns the body with the version to decode it at.
    fn check_frame<R: KnownRequest>(
        &self,
        frame: Bytes,
        version: i16,
        correlation_id: i32,
    ) -> Result<(Bytes, i16), ConnectionError> {
        let decode_err = |reason: String| ConnectionError::Decode {
            broker: self.broker.clone(),
            api: R::NAME,
            version,
            reason,
        };
        let header_version = R::Response::header_version(version);
        let mut w = wire::Walker::new(&frame);
        wire::response_header(&mut w, header_version).map_err(|e| decode_err(e.to_string()))?;
        // Every ApiVersions version starts with the error code, and a broker
        // answers a version it does not know with UNSUPPORTED_VERSION in the
        // v0 layout (the header is v0 for every ApiVersions version).
        let body_version =
            if R::KEY == ApiKey::ApiVersions as i16 && w.peek_i16() == Some(UNSUPPORTED_VERSION) {
                0
            } else {
                version
            };
        R::check_response(&mut w, body_version).map_err(|e| decode_err(e.to_string()))?;
        let mut buf = frame;
        let header = ResponseHeader::decode(&mut buf, header_version)
            .map_err(|e| decode_err(e.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(ConnectionError::CorrelationMismatch {
                broker: self.broker.clone(),
                api: R::NAME,
                expected: correlation_id,
                got: header.correlation_id,
            });
        }
        Ok((buf, body_version))
    }

    fn decode<R: KnownRequest>(
        &mut self,
        mut body: Bytes,
        version: i16,
    ) -> Result<R::Response, ConnectionError> {
        match R::Response::decode(&mut body, version) {
            Ok(response) => Ok(response),
            Err(e) => {
                // A broker that sends undecodable responses cannot be trusted
                // with the next request either.
                self.usable = false;
                Err(ConnectionError::Decode {
                    broker: self.broker.clone(),
                    api: R::NAME,
                    version,
                    reason: e.to_string(),
                })
            }
        }
    }

    /// `ApiVersions`: records what the broker supports.
    async fn negotiate_versions(&mut self, deadline: Instant) -> Result<(), ConnectionError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_SOFTWARE_NAME))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = ApiVersionsRequest::MAX_VERSION;
        // At most two tries: ours, then the broker's newest.
        for _ in 0..2 {
            let (body, body_version) = self
                .exchange(&request, version, deadline, self.request_timeout)
                .await?;
            let response: ApiVersionsResponse =
                self.decode::<ApiVersionsRequest>(body, body_version)?;
            self.broker_versions = response
                .api_keys
                .iter()
                .map(|k| {
                    (
                        k.api_key,
                        VersionRange {
                            min: k.min_version,
                            max: k.max_version,
                        },
                    )
                })
                .collect();
            match response.error_code {
                0 => {
                    debug!(broker = %self.broker, version, "ApiVersions negotiated");
                    return Ok(());
                }
                UNSUPPORTED_VERSION => {
                    let theirs = self
                        .broker_versions
                        .get(&(ApiKey::ApiVersions as i16))
                        .copied();
                    match theirs.map(|t| ApiVersionsRequest::our_versions().intersect(&t)) {
                        Some(both) if !both.is_empty() && both.max < version => version = both.max,
                        _ => {
                            return Err(ConnectionError::UnsupportedVersion {
                                broker: self.broker.clone(),
                                api: ApiVersionsRequest::NAME,
                                ours: ApiVersionsRequest::our_versions(),
                                theirs,
                            })
                        }
                    }
                }
                code => {
                    return Err(ConnectionError::Api {
                        broker: self.broker.clone(),
                        api: ApiVersionsRequest::NAME,
                        code: KafkaCode(code),
                    })
                }
            }
        }
        Err(ConnectionError::UnsupportedVersion {
            broker: self.broker.clone(),
            api: ApiVersionsRequest::NAME,
            ours: ApiVersionsRequest::our_versions(),
            theirs: self
                .broker_versions
                .get(&(ApiKey::ApiVersions as i16))
                .copied(),
        })
    }

    /// `SaslHandshake` then `SaslAuthenticate` rounds, as rskafka does.
    async fn authenticate(
        &mut self,
        sasl: &SaslSettings,
        deadline: Instant,
    ) -> Result<(), ConnectionError> {
        let mechanism = sasl.mechanism;
        let sasl_err = |broker: &str, reason: String| ConnectionError::Sasl {
            broker: broker.to_owned(),
            mechanism,
            reason,
        };

        let version = self.version::<SaslHandshakeRequest>()?;
        let request = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(mechanism.name()));
        let (body, version) = self
            .exchange(&request, version, deadline, self.request_timeout)
            .await?;
        let response = self.decode::<SaslHandshakeRequest>(body, version)?;
        match response.error_code {
            0 => {}
            UNSUPPORTED_SASL_MECHANISM => {
                return Err(ConnectionError::SaslMechanismNotEnabled {
                    broker: self.broker.clone(),
                    mechanism,
                    offered: response.mechanisms.iter().map(|m| m.to_string()).collect(),
                })
            }
            ILLEGAL_SASL_STATE => {
                return Err(ConnectionError::SaslNotExpected {
                    broker: self.broker.clone(),
                })
            }
            code => {
                return Err(ConnectionError::Api {
                    broker: self.broker.clone(),
                    api: SaslHandshakeRequest::NAME,
                    code: KafkaCode(code),
                })
            }
        }

        // The one place the password leaves its `Secret`.
        let config = SASLConfig::with_credentials(
            None,
            sasl.username.clone(),
            sasl.password.expose().to_owned(),
        )
        .map_err(|e| sasl_err(&self.broker, e.to_string()))?;
        let name = Mechname::parse(mechanism.name().as_bytes())
            .map_err(|e| sasl_err(&self.broker, e.to_string()))?;
        let mut session = SASLClient::new(config)
            .start_suggested(&[name])
            .map_err(|e| sasl_err(&self.broker, e.to_string()))?;
        let version = self.version::<SaslAuthenticateRequest>()?;
        let mut received: Option<Bytes> = None;
        for _ in 0..MAX_SASL_ROUNDS {
            let mut out = Vec::new();
            let state = session
                .step(received.as_deref(), &mut out)
                .map_err(|e| sasl_err(&self.broker, e.to_string()))?;
            if state.has_sent_message() {
                let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(out));
                let (body, body_version) = self
                    .exchange(&request, version, deadline, self.request_timeout)
                    .await?;
                let response = self.decode::<SaslAuthenticateRequest>(body, body_version)?;
                if response.error_code != 0 {
                    return Err(ConnectionError::AuthenticationFailed {
                        broker: self.broker.clone(),
                        user: sasl.username.clone(),
                        mechanism,
                        code: KafkaCode(response.error_code),
                        message: response.error_message.map(|m| m.to_string()),
                    });
                }
                received = Some(response.auth_bytes);
            }
            if state.is_finished() {
                debug!(broker = %self.broker, %mechanism, user = %sasl.username, "SASL authenticated");
                return Ok(());
            }
        }
        Err(sasl_err(
            &self.broker,
            format!("no outcome after {MAX_SASL_ROUNDS} rounds"),
        ))
    }
}

/// The host part of `host:port` or `[v6]:port`, if the port is a number.
fn split_host(broker: &str) -> Option<&str> {
    let (host, port) = broker.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Whether four bytes read as a frame length are really the start of a TLS
/// record (content type 20–23, protocol major version 3). As a length that
/// is over 300 MB, so no valid frame is mistaken for TLS.
fn looks_like_tls(prefix: [u8; 4]) -> bool {
    let [content_type, major, minor, _] = prefix;
    (0x14..=0x17).contains(&content_type) && major == 0x03 && minor <= 0x04
}

/// A hint for a failed TLS handshake, when its cause is likely a port that
/// does not speak TLS: a Kafka plaintext listener reads the ClientHello as
/// an oversized request and closes the connection.
fn tls_failure_hint(e: &io::Error) -> &'static str {
    let corrupt = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidMessage(_)));
    if is_closed(e) || corrupt {
        " (the broker does not speak TLS on this port: is it a PLAINTEXT or SASL_PLAINTEXT listener?)"
    } else {
        ""
    }
}

/// Structural validation of response frames, mirroring `kafka-protocol`'s
/// generated decoders field by field (see the module docs for why).
///
/// Only lengths matter here: strings are skipped, integers are skipped, and
/// every array's elements are walked so that the element count the decoder
/// pre-allocates is backed by bytes actually present. Tagged fields are
/// skipped by their size, except known tags the decoder parses itself.
mod wire {
    use std::fmt;

    /// What is wrong with a frame, and where.
    #[derive(Debug)]
    pub struct WireError {
        offset: usize,
        problem: String,
    }

    impl fmt::Display for WireError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "at byte {}: {}", self.offset, self.problem)
        }
    }

    /// A cursor over a frame.
    #[derive(Debug)]
    pub struct Walker<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    type R = Result<(), WireError>;

    impl<'a> Walker<'a> {
        pub fn new(buf: &'a [u8]) -> Self {
            Self { buf, pos: 0 }
        }

        /// Bytes not walked yet.
        pub fn remaining(&self) -> usize {
            self.buf.len().saturating_sub(self.pos)
        }

        /// The next two bytes as an `i16`, without moving.
        pub fn peek_i16(&self) -> Option<i16> {
            let b = self.buf.get(self.pos..self.pos.saturating_add(2))?;
            <[u8; 2]>::try_from(b).ok().map(i16::from_be_bytes)
        }

        fn fail(&self, problem: String) -> WireError {
            WireError {
                offset: self.pos,
                problem,
            }
        }

        /// Skips `n` bytes of fixed-size fields.
        pub fn fixed(&mut self, n: usize, what: &str) -> R {
            if n > self.remaining() {
                return Err(self.fail(format!("{what} needs {n} bytes, {} left", self.remaining())));
            }
            self.pos += n;
            Ok(())
        }

        fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N], WireError> {
            let bytes = self
                .buf
                .get(self.pos..self.pos.saturating_add(N))
                .and_then(|s| <[u8; N]>::try_from(s).ok())
                .ok_or_else(|| {
                    self.fail(format!("{what} needs {N} bytes, {} left", self.remaining()))
                })?;
            self.pos += N;
            Ok(bytes)
        }

        fn varint(&mut self, what: &str) -> Result<u32, WireError> {
            let mut value: u32 = 0;
            for i in 0..5 {
                let [b] = self.take::<1>(what)?;
                value |= u32::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    return Ok(value);
                }
            }
            Err(self.fail(format!("{what}: varint longer than 5 bytes")))
        }

        /// Skips `len` bytes of a string or byte array's content.
        fn skip(&mut self, len: usize, what: &str) -> R {
            if len > self.remaining() {
                return Err(self.fail(format!(
                    "{what} declares {len} bytes, {} left",
                    self.remaining()
                )));
            }
            self.pos += len;
            Ok(())
        }

        /// A (nullable) string: i16 length, or varint length+1 when flexible.
        pub fn string(&mut self, flexible: bool, what: &str) -> R {
            if flexible {
                let n = self.varint(what)?;
                if n == 0 {
                    return Ok(());
                }
                self.skip((n - 1) as usize, what)
            } else {
                let n = i16::from_be_bytes(self.take::<2>(what)?);
                match n {
                    -1 => Ok(()),
                    n if n >= 0 => self.skip(n as usize, what),
                    n => Err(self.fail(format!("{what} has invalid length {n}"))),
                }
            }
        }

        /// (Nullable) bytes: i32 length, or varint length+1 when flexible.
        pub fn bytes(&mut self, flexible: bool, what: &str) -> R {
            if flexible {
                let n = self.varint(what)?;
                if n == 0 {
                    return Ok(());
                }
                self.skip((n - 1) as usize, what)
            } else {
                let n = i32::from_be_bytes(self.take::<4>(what)?);
                match n {
                    -1 => Ok(()),
                    n if n >= 0 => self.skip(n as usize, what),
                    n => Err(self.fail(format!("{what} has invalid length {n}"))),
                }
            }
        }

        /// A (nullable) array: i32 count, or varint count+1 when flexible;
        /// each element walked by `element`.
        pub fn array(
            &mut self,
            flexible: bool,
            what: &str,
            mut element: impl FnMut(&mut Self) -> R,
        ) -> R {
            let count: u64 = if flexible {
                match self.varint(what)? {
                    0 => return Ok(()),
                    n => u64::from(n - 1),
                }
            } else {
                match i32::from_be_bytes(self.take::<4>(what)?) {
                    -1 => return Ok(()),
                    n if n >= 0 => n as u64,
                    n => return Err(self.fail(format!("{what} has invalid element count {n}"))),
                }
            };
            // Every element of the arrays we walk takes at least one byte.
            if count > self.remaining() as u64 {
                return Err(self.fail(format!(
                    "{what} declares {count} elements but only {} bytes are left",
                    self.remaining()
                )));
            }
            for _ in 0..count {
                element(self)?;
            }
            Ok(())
        }

        /// A tagged-field section whose tags are all skipped by size.
        pub fn tags(&mut self) -> R {
            self.tags_with(|_, _| Ok(false))
        }

        /// A tagged-field section; `known(tag, sub)` walks the tags the
        /// decoder parses itself (returning `true`), which must fill their
        /// declared size exactly so the decoder stays where we are.
        pub fn tags_with(
            &mut self,
            mut known: impl FnMut(u32, &mut Walker<'a>) -> Result<bool, WireError>,
        ) -> R {
            let count = self.varint("tagged field count")?;
            if count as usize > self.remaining() {
                return Err(self.fail(format!(
                    "{count} tagged fields but only {} bytes left",
                    self.remaining()
                )));
            }
            for _ in 0..count {
                let tag = self.varint("tag")?;
                let size = self.varint("tagged field size")? as usize;
                if size > self.remaining() {
                    return Err(self.fail(format!(
                        "tagged field {tag} declares {size} bytes, {} left",
                        self.remaining()
                    )));
                }
                let start = self.pos;
                let end = start + size;
                let mut sub = Walker {
                    buf: self.buf.get(..end).unwrap_or_default(),
                    pos: start,
                };
                if known(tag, &mut sub)? && sub.pos != start + size {
                    return Err(self.fail(format!(
                        "tagged field {tag} declares {size} bytes but holds {}",
                        sub.pos - start
                    )));
                }
                self.pos = end;
            }
            Ok(())
        }
    }

    /// `ResponseHeader` v0 (correlation id) or v1 (+ tagged fields).
    pub fn response_header(w: &mut Walker<'_>, header_version: i16) -> R {
        w.fixed(4, "correlation_id")?;
        if header_version >= 1 {
            w.tags()?;
        }
        Ok(())
    }

    pub fn api_versions(w: &mut Walker<'_>, v: i16) -> R {
        let flex = v >= 3;
        w.fixed(2, "error_code")?;
        w.array(flex, "api_keys", |w| {
            w.fixed(6, "api_key")?;
            if flex {
                w.tags()?;
            }
            Ok(())
        })?;
        if v >= 1 {
            w.fixed(4, "throttle_time_ms")?;
        }
        if flex {
            w.tags_with(|tag, w| {
                let feature = |w: &mut Walker<'_>| {
                    w.string(true, "feature name")?;
                    w.fixed(4, "feature versions")?;
                    w.tags()
                };
                match tag {
                    0 => w.array(true, "supported_features", feature)?,
                    1 => w.fixed(8, "finalized_features_epoch")?,
                    2 => w.array(true, "finalized_features", feature)?,
                    3 => w.fixed(1, "zk_migration_ready")?,
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
        }
        Ok(())
    }

    pub fn sasl_handshake(w: &mut Walker<'_>, _v: i16) -> R {
        w.fixed(2, "error_code")?;
        w.array(false, "mechanisms", |w| w.string(false, "mechanism"))
    }

    pub fn sasl_authenticate(w: &mut Walker<'_>, v: i16) -> R {
        let flex = v >= 2;
        w.fixed(2, "error_code")?;
        w.string(flex, "error_message")?;
        w.bytes(flex, "auth_bytes")?;
        if v >= 1 {
            w.fixed(8, "session_lifetime_ms")?;
        }
        if flex {
            w.tags()?;
        }
        Ok(())
    }

    pub fn find_coordinator(w: &mut Walker<'_>, v: i16) -> R {
        let flex = v >= 3;
        if v >= 1 {
            w.fixed(4, "throttle_time_ms")?;
        }
        if v <= 3 {
            w.fixed(2, "error_code")?;
            if v >= 1 {
                w.string(flex, "error_message")?;
            }
            w.fixed(4, "node_id")?;
            w.string(flex, "host")?;
            w.fixed(4, "port")?;
        } else {
            w.array(true, "coordinators", |w| {
                w.string(true, "key")?;
                w.fixed(4, "node_id")?;
                w.string(true, "host")?;
                w.fixed(4 + 2, "port and error_code")?;
                w.string(true, "error_message")?;
                w.tags()
            })?;
        }
        if flex {
            w.tags()?;
        }
        Ok(())
    }

    pub fn join_group(w: &mut Walker<'_>, v: i16) -> R {
        let flex = v >= 6;
        if v >= 2 {
            w.fixed(4, "throttle_time_ms")?;
        }
        w.fixed(2 + 4, "error_code and generation_id")?;
        if v >= 7 {
            w.string(true, "protocol_type")?;
        }
        w.string(flex, "protocol_name")?;
        w.string(flex, "leader")?;
        if v >= 9 {
            w.fixed(1, "skip_assignment")?;
        }
        w.string(flex, "member_id")?;
        w.array(flex, "members", |w| {
            w.string(flex, "member_id")?;
            if v >= 5 {
                w.string(flex, "group_instance_id")?;
            }
            w.bytes(flex, "metadata")?;
            if flex {
                w.tags()?;
            }
            Ok(())
        })?;
        if flex {
            w.tags()?;
        }
        Ok(())
    }

    pub fn sync_group(w: &mut Walker<'_>, v: i16) -> R {
        let flex = v >= 4;
        if v >= 1 {
            w.fixed(4, "throttle_time_ms")?;
        }
        w.fixed(2, "error_code")?;
        if v >= 5 {
            w.string(true, "protocol_type")?;
            w.string(true, "protocol_name")?;
        }
        w.bytes(flex, "assignment")?;
        if flex {
            w.tags()?;
        }
        Ok(())
    }

    pub fn heartbeat(w: &mut Walker<'_>, v: i16) -> R {
        if v >= 1 {
            w.fixed(4, "throttle_time_ms")?;
        }
        w.fixed(2, "error_code")?;
        if v >= 4 {
            w.tags()?;
        }
        Ok(())
    }

    pub fn leave_group(w: &mut Walker<'_>, v: i16) -> R {
        let flex = v >= 4;
        if v >= 1 {
            w.fixed(4, "throttle_time_ms")?;
        }
        w.fixed(2, "error_code")?;
        if v >= 3 {
            w.array(flex, "members", |w| {
                w.string(flex, "member_id")?;
                w.string(flex, "group_instance_id")?;
                w.fixed(2, "error_code")?;
                if flex {
                    w.tags()?;
                }
                Ok(())
            })?;
        }
        if flex {
            w.tags()?;
        }
        Ok(())
    }

    pub fn offset_commit(w: &mut Walker<'_>, v: i16) -> R {
        let flex = v >= 8;
        if v >= 3 {
            w.fixed(4, "throttle_time_ms")?;
        }
        w.array(flex, "topics", |w| {
            if v <= 9 {
                w.string(flex, "topic name")?;
            } else {
                w.fixed(16, "topic_id")?;
            }
            w.array(flex, "partitions", |w| {
                w.fixed(4 + 2, "partition_index and error_code")?;
                if flex {
                    w.tags()?;
                }
                Ok(())
            })?;
            if flex {
                w.tags()?;
            }
            Ok(())
        })?;
        if flex {
            w.tags()?;
        }
        Ok(())
    }

    pub fn offset_fetch(w: &mut Walker<'_>, v: i16) -> R {
        let flex = v >= 6;
        if v >= 3 {
            w.fixed(4, "throttle_time_ms")?;
        }
        if v <= 7 {
            w.array(flex, "topics", |w| {
                w.string(flex, "topic name")?;
                w.array(flex, "partitions", |w| {
                    w.fixed(4 + 8, "partition_index and committed_offset")?;
                    if v >= 5 {
                        w.fixed(4, "committed_leader_epoch")?;
                    }
                    w.string(flex, "metadata")?;
                    w.fixed(2, "error_code")?;
                    if flex {
                        w.tags()?;
                    }
                    Ok(())
                })?;
                if flex {
                    w.tags()?;
                }
                Ok(())
            })?;
            if v >= 2 {
                w.fixed(2, "error_code")?;
            }
        } else {
            w.array(true, "groups", |w| {
                w.string(true, "group_id")?;
                w.array(true, "topics", |w| {
                    if v <= 9 {
                        w.string(true, "topic name")?;
                    } else {
                        w.fixed(16, "topic_id")?;
                    }
                    w.array(true, "partitions", |w| {
                        w.fixed(
                            4 + 8 + 4,
                            "partition_index, committed_offset, committed_leader_epoch",
                        )?;
                        w.string(true, "metadata")?;
                        w.fixed(2, "error_code")?;
                        w.tags()
                    })?;
                    w.tags()
                })?;
                w.fixed(2, "error_code")?;
                w.tags()
            })?;
        }
        if flex {
            w.tags()?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use kafka_protocol::messages::{
        api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey},
        find_coordinator_response::Coordinator,
        join_group_response::JoinGroupResponseMember,
        leave_group_response::MemberResponse,
        offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
        offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
            OffsetFetchResponseTopic, OffsetFetchResponseTopics,
        },
        FindCoordinatorResponse, GroupId, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse,
        OffsetCommitResponse, OffsetFetchResponse, SaslAuthenticateResponse, SaslHandshakeResponse,
        SyncGroupResponse, TopicName,
    };
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
        task::JoinHandle,
    };

    use super::*;
    use crate::{config::Secret, kafka::SecurityProtocol};

    // ---- the fake broker -------------------------------------------------

    /// What the fake broker does with the next request.
    enum Step {
        /// Answers ApiVersions advertising every API we use at
        /// `kafka-protocol`'s full range, minus these keys.
        ApiVersions(&'static [ApiKey]),
        /// Answers ApiVersions with UNSUPPORTED_VERSION in the v0 layout,
        /// advertising ApiVersions up to this version.
        ApiVersionsUnsupported(i16),
        /// Answers with this body, framed with the request's correlation id.
        Body(Vec<u8>),
        /// Answers with this body and a wrong correlation id.
        WrongCorrelation(Vec<u8>),
        /// Writes these bytes as they are.
        Raw(Vec<u8>),
        /// Reads the request and never answers.
        Hang,
    }

    const ALL: &[ApiKey] = &[];

    pub(crate) fn encode<M: Encodable>(message: &M, version: i16) -> Vec<u8> {
        let mut buf = BytesMut::new();
        message.encode(&mut buf, version).expect("encodable");
        buf.to_vec()
    }

    pub(crate) fn api_versions_body(version: i16, without: &[ApiKey]) -> Vec<u8> {
        let ranges = [
            (ApiKey::ApiVersions, ApiVersionsRequest::VERSIONS),
            (ApiKey::SaslHandshake, SaslHandshakeRequest::VERSIONS),
            (ApiKey::SaslAuthenticate, SaslAuthenticateRequest::VERSIONS),
            (ApiKey::FindCoordinator, FindCoordinatorRequest::VERSIONS),
            (ApiKey::JoinGroup, JoinGroupRequest::VERSIONS),
            (ApiKey::SyncGroup, SyncGroupRequest::VERSIONS),
            (ApiKey::Heartbeat, HeartbeatRequest::VERSIONS),
            (ApiKey::LeaveGroup, LeaveGroupRequest::VERSIONS),
            (ApiKey::OffsetCommit, OffsetCommitRequest::VERSIONS),
            (ApiKey::OffsetFetch, OffsetFetchRequest::VERSIONS),
        ];
        let keys = ranges
            .iter()
            .filter(|(key, _)| !without.contains(key))
            .map(|(key, range)| {
                ApiVersion::default()
                    .with_api_key(*key as i16)
                    .with_min_version(range.min)
                    .with_max_version(range.max)
            })
            .collect();
        encode(&ApiVersionsResponse::default().with_api_keys(keys), version)
    }

    /// The header of a request the fake broker read.
    pub(crate) struct FakeRequest {
        pub(crate) key: i16,
        pub(crate) version: i16,
        pub(crate) correlation_id: i32,
    }

    pub(crate) async fn read_request(sock: &mut TcpStream) -> Option<FakeRequest> {
        let len = sock.read_i32().await.ok()?;
        let mut buf = vec![0; usize::try_from(len).ok()?];
        sock.read_exact(&mut buf).await.ok()?;
        Some(FakeRequest {
            key: i16::from_be_bytes([buf[0], buf[1]]),
            version: i16::from_be_bytes([buf[2], buf[3]]),
            correlation_id: i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        })
    }

    pub(crate) async fn answer(
        sock: &mut TcpStream,
        req: &FakeRequest,
        correlation_id: i32,
        body: &[u8],
    ) {
        let header_version = ApiKey::try_from(req.key)
            .expect("known key")
            .response_header_version(req.version);
        let mut frame = correlation_id.to_be_bytes().to_vec();
        if header_version >= 1 {
            frame.push(0); // no tagged fields
        }
        frame.extend_from_slice(body);
        let mut out = (frame.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&frame);
        sock.write_all(&out).await.expect("write");
    }

    /// A one-connection fake broker playing `steps`, then closing. The task
    /// returns the (api key, version) of every request it read.
    async fn fake_broker(steps: Vec<Step>) -> (String, JoinHandle<Vec<(i16, i16)>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            for step in steps {
                let Some(req) = read_request(&mut sock).await else {
                    break;
                };
                seen.push((req.key, req.version));
                match step {
                    Step::ApiVersions(without) => {
                        answer(
                            &mut sock,
                            &req,
                            req.correlation_id,
                            &api_versions_body(req.version, without),
                        )
                        .await
                    }
                    Step::ApiVersionsUnsupported(max) => {
                        let body = ApiVersionsResponse::default()
                            .with_error_code(UNSUPPORTED_VERSION)
                            .with_api_keys(vec![ApiVersion::default()
                                .with_api_key(ApiKey::ApiVersions as i16)
                                .with_min_version(0)
                                .with_max_version(max)]);
                        answer(&mut sock, &req, req.correlation_id, &encode(&body, 0)).await
                    }
                    Step::Body(body) => answer(&mut sock, &req, req.correlation_id, &body).await,
                    Step::WrongCorrelation(body) => {
                        answer(&mut sock, &req, req.correlation_id + 7, &body).await
                    }
                    Step::Raw(bytes) => sock.write_all(&bytes).await.expect("write"),
                    Step::Hang => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                }
            }
            seen
        });
        (addr, task)
    }

    fn config(addr: &str) -> ConnectionConfig {
        let mut settings = KafkaSettings::plaintext(addr, "unit-test");
        settings.request_timeout = Duration::from_millis(500);
        ConnectionConfig::from_settings(&settings).expect("config")
    }

    fn sasl_config(addr: &str, mechanism: SaslMechanism) -> ConnectionConfig {
        let mut settings = KafkaSettings::plaintext(addr, "unit-test");
        settings.request_timeout = Duration::from_millis(500);
        settings.security_protocol = SecurityProtocol::SaslPlaintext;
        settings.sasl = Some(SaslSettings {
            mechanism,
            username: "demo".to_owned(),
            password: Secret::new("hunter2-secret"),
        });
        ConnectionConfig::from_settings(&settings).expect("config")
    }

    fn heartbeat() -> HeartbeatRequest {
        HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id(1)
            .with_member_id(StrBytes::from_static_str("m"))
    }

    async fn connected(steps: Vec<Step>) -> (BrokerConnection, JoinHandle<Vec<(i16, i16)>>) {
        let mut all = vec![Step::ApiVersions(ALL)];
        all.extend(steps);
        let (addr, task) = fake_broker(all).await;
        let conn = BrokerConnection::connect(&config(&addr), &addr)
            .await
            .expect("connect");
        (conn, task)
    }

    // ---- connecting and negotiating ---------------------------------------

    #[tokio::test]
    async fn negotiates_the_highest_common_version() {
        let (mut conn, task) =
            connected(vec![Step::Body(encode(&HeartbeatResponse::default(), 4))]).await;
        assert_eq!(conn.version::<JoinGroupRequest>().expect("join"), 9);
        // Capped below kafka-protocol's 10: v10 commits by topic id.
        assert_eq!(conn.version::<OffsetCommitRequest>().expect("commit"), 9);
        assert_eq!(conn.version::<OffsetFetchRequest>().expect("fetch"), 9);
        assert_eq!(
            conn.broker_versions(ApiKey::JoinGroup),
            Some(JoinGroupRequest::VERSIONS)
        );
        let response = conn.send(heartbeat()).await.expect("heartbeat");
        assert_eq!(response.error_code, 0);
        assert!(conn.is_usable());
        let seen = task.await.expect("task");
        assert_eq!(
            seen,
            vec![
                (ApiKey::ApiVersions as i16, 4),
                (ApiKey::Heartbeat as i16, 4)
            ]
        );
    }

    #[tokio::test]
    async fn api_versions_falls_back_to_the_brokers_version() {
        let (addr, task) = fake_broker(vec![
            Step::ApiVersionsUnsupported(2),
            Step::ApiVersions(ALL),
        ])
        .await;
        let conn = BrokerConnection::connect(&config(&addr), &addr)
            .await
            .expect("connect");
        assert!(conn.version::<HeartbeatRequest>().is_ok());
        drop(conn);
        let seen = task.await.expect("task");
        assert_eq!(
            seen,
            vec![
                (ApiKey::ApiVersions as i16, 4),
                (ApiKey::ApiVersions as i16, 2)
            ]
        );
    }

    #[tokio::test]
    async fn an_api_the_broker_lacks_is_a_clear_error() {
        let (addr, _task) = fake_broker(vec![Step::ApiVersions(&[ApiKey::JoinGroup])]).await;
        let mut conn = BrokerConnection::connect(&config(&addr), &addr)
            .await
            .expect("connect");
        let e = conn
            .send(JoinGroupRequest::default())
            .await
            .expect_err("unsupported");
        assert!(
            matches!(e, ConnectionError::UnsupportedVersion { .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("JoinGroup") && msg.contains("does not offer it"),
            "{msg}"
        );
        // Nothing was sent: the connection is still fine.
        assert!(conn.is_usable());
        let e = conn
            .send_with(heartbeat(), SendOptions::new().version(9))
            .await
            .expect_err("version out of range")
            .to_string();
        assert!(
            e.contains("we support 9..9") && e.contains("supports 0..4"),
            "{e}"
        );
    }

    // ---- framing and garbage ----------------------------------------------

    #[tokio::test]
    async fn garbage_body_is_a_decode_error_and_poisons_the_connection() {
        let (mut conn, _task) = connected(vec![Step::Body(vec![0xff; 3])]).await;
        let e = conn.send(heartbeat()).await.expect_err("garbage");
        assert!(
            matches!(
                e,
                ConnectionError::Decode {
                    api: "Heartbeat",
                    version: 4,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(!conn.is_usable());
        let e = conn.send(heartbeat()).await.expect_err("unusable");
        assert!(matches!(e, ConnectionError::Unusable { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn garbage_instead_of_api_versions_fails_the_connect() {
        let (addr, _task) = fake_broker(vec![Step::Raw(b"\x00\x00\x00\x05hello".to_vec())]).await;
        let e = BrokerConnection::connect(&config(&addr), &addr)
            .await
            .expect_err("garbage");
        // Correlation id "hell" does not match 0.
        assert!(
            matches!(
                e,
                ConnectionError::CorrelationMismatch { .. } | ConnectionError::Decode { .. }
            ),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_truncated_frame_is_an_error_not_a_hang() {
        let mut raw = 100i32.to_be_bytes().to_vec();
        raw.extend_from_slice(&[0; 10]);
        let (mut conn, _task) = connected(vec![Step::Raw(raw)]).await;
        let e = conn.send(heartbeat()).await.expect_err("truncated");
        assert!(
            matches!(
                e,
                ConnectionError::Truncated {
                    expected: 100,
                    received: 10,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn oversize_and_negative_lengths_are_refused() {
        for length in [i32::MAX, (MAX_FRAME_BYTES + 1) as i32, -5] {
            let (mut conn, _task) = connected(vec![Step::Raw(length.to_be_bytes().to_vec())]).await;
            let e = conn.send(heartbeat()).await.expect_err("bad length");
            assert!(
                matches!(e, ConnectionError::InvalidFrame { length: l, .. } if l == i64::from(length)),
                "{e:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_wrong_correlation_id_is_an_error() {
        let (mut conn, _task) = connected(vec![Step::WrongCorrelation(encode(
            &HeartbeatResponse::default(),
            4,
        ))])
        .await;
        let e = conn.send(heartbeat()).await.expect_err("mismatch");
        assert!(
            matches!(
                e,
                ConnectionError::CorrelationMismatch {
                    expected: 1,
                    got: 8,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(!conn.is_usable());
    }

    #[tokio::test]
    async fn a_silent_broker_times_out() {
        let (mut conn, _task) = connected(vec![Step::Hang]).await;
        let started = std::time::Instant::now();
        let e = conn.send(heartbeat()).await.expect_err("timeout");
        assert!(
            matches!(
                e,
                ConnectionError::Timeout {
                    during: "Heartbeat",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(
            conn.send(heartbeat()).await,
            Err(ConnectionError::Unusable { .. })
        ));
    }

    #[tokio::test]
    async fn a_closed_connection_is_an_error_with_a_hint() {
        // Closed before answering ApiVersions: maybe a TLS port.
        let (addr, _task) = fake_broker(vec![]).await;
        let e = BrokerConnection::connect(&config(&addr), &addr)
            .await
            .expect_err("closed");
        assert!(
            matches!(
                e,
                ConnectionError::Closed {
                    during: "ApiVersions",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("SSL or SASL_SSL"), "{e}");
        // Closed on the first request after ApiVersions: maybe a SASL port.
        let (mut conn, _task) = connected(vec![]).await;
        let e = conn.send(heartbeat()).await.expect_err("closed");
        assert!(
            matches!(
                e,
                ConnectionError::Closed {
                    during: "Heartbeat",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("SASL_PLAINTEXT or SASL_SSL"), "{e}");
    }

    #[tokio::test]
    async fn a_tls_answer_to_plaintext_is_recognised() {
        // A TLS alert record: handshake_failure.
        let (addr, _task) = fake_broker(vec![Step::Raw(vec![
            0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28,
        ])])
        .await;
        let e = BrokerConnection::connect(&config(&addr), &addr)
            .await
            .expect_err("tls");
        assert!(matches!(e, ConnectionError::UnexpectedTls { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("set the security protocol to SSL or SASL_SSL"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn hostile_array_counts_are_rejected_before_decoding() {
        // JoinGroup v9: throttle, error, generation, protocol_type null,
        // protocol_name null, leader "", skip_assignment, member_id "",
        // then 2^32-2 members in a 22-byte frame.
        let mut v9 = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1];
        v9.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        // JoinGroup v5 (not flexible): i32::MAX members.
        let mut v5 = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 0, 0, 0];
        v5.extend_from_slice(&i32::MAX.to_be_bytes());
        for (version, body) in [(9, v9), (5, v5)] {
            let (mut conn, _task) = connected(vec![Step::Body(body)]).await;
            let e = conn
                .send_with(
                    JoinGroupRequest::default(),
                    SendOptions::new().version(version),
                )
                .await
                .expect_err("hostile");
            assert!(
                matches!(
                    e,
                    ConnectionError::Decode {
                        api: "JoinGroup",
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("members declares"), "{e}");
        }
    }

    #[tokio::test]
    async fn unreachable_and_invalid_addresses() {
        let e = BrokerConnection::connect(&config("x"), "no-port")
            .await
            .expect_err("invalid");
        assert!(matches!(e, ConnectionError::InvalidAddress { .. }), "{e:?}");
        // Bind then drop: nothing listens on that port any more.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr")
            .to_string();
        let e = BrokerConnection::connect(&config(&addr), &addr)
            .await
            .expect_err("refused");
        assert!(matches!(e, ConnectionError::Connect { .. }), "{e:?}");
        assert!(e.is_retriable());
    }

    // ---- SASL ---------------------------------------------------------------

    #[tokio::test]
    async fn sasl_mechanism_not_enabled_names_the_offered_ones() {
        let handshake = SaslHandshakeResponse::default()
            .with_error_code(UNSUPPORTED_SASL_MECHANISM)
            .with_mechanisms(vec![
                StrBytes::from_static_str("PLAIN"),
                StrBytes::from_static_str("SCRAM-SHA-256"),
            ]);
        let (addr, task) = fake_broker(vec![
            Step::ApiVersions(ALL),
            Step::Body(encode(&handshake, 1)),
        ])
        .await;
        let e = BrokerConnection::connect(&sasl_config(&addr, SaslMechanism::ScramSha512), &addr)
            .await
            .expect_err("not enabled");
        assert_eq!(
            e.to_string(),
            format!("Kafka broker {addr} does not enable SASL mechanism SCRAM-SHA-512; it offers: PLAIN, SCRAM-SHA-256")
        );
        assert!(!e.is_retriable());
        assert_eq!(
            task.await.expect("task")[1],
            (ApiKey::SaslHandshake as i16, 1)
        );
    }

    #[tokio::test]
    async fn sasl_on_a_listener_without_sasl_is_explained() {
        let handshake = SaslHandshakeResponse::default().with_error_code(ILLEGAL_SASL_STATE);
        let (addr, _task) = fake_broker(vec![
            Step::ApiVersions(ALL),
            Step::Body(encode(&handshake, 1)),
        ])
        .await;
        let e = BrokerConnection::connect(&sasl_config(&addr, SaslMechanism::Plain), &addr)
            .await
            .expect_err("illegal state");
        assert!(
            matches!(e, ConnectionError::SaslNotExpected { .. }),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn wrong_password_names_user_and_mechanism_never_the_password() {
        let handshake = SaslHandshakeResponse::default()
            .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
        let auth = SaslAuthenticateResponse::default()
            .with_error_code(58)
            .with_error_message(Some(StrBytes::from_static_str(
                "Authentication failed: Invalid username or password",
            )));
        let (addr, task) = fake_broker(vec![
            Step::ApiVersions(ALL),
            Step::Body(encode(&handshake, 1)),
            Step::Body(encode(&auth, 2)),
        ])
        .await;
        let e = BrokerConnection::connect(&sasl_config(&addr, SaslMechanism::Plain), &addr)
            .await
            .expect_err("auth failed");
        let msg = e.to_string();
        assert!(
            msg.starts_with("authentication failed for user demo with PLAIN at Kafka broker"),
            "{msg}"
        );
        assert!(msg.contains("SASL_AUTHENTICATION_FAILED (58)"), "{msg}");
        assert!(
            !msg.contains("hunter2") && !format!("{e:?}").contains("hunter2"),
            "{msg}"
        );
        let config = sasl_config(&addr, SaslMechanism::Plain);
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            task.await.expect("task")[2],
            (ApiKey::SaslAuthenticate as i16, 2)
        );
    }

    #[test]
    fn settings_must_match_the_security_protocol() {
        let mut settings = KafkaSettings::plaintext("a:1", "t");
        settings.security_protocol = SecurityProtocol::SaslPlaintext;
        let e = ConnectionConfig::from_settings(&settings)
            .expect_err("no sasl")
            .to_string();
        assert!(e.contains("SASL_PLAINTEXT needs SASL settings"), "{e}");
        let e = ConnectionConfig::with_tls(
            &KafkaSettings::plaintext("a:1", "t"),
            Some(Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            )),
        )
        .expect_err("tls on plaintext")
        .to_string();
        assert!(e.contains("PLAINTEXT does not use TLS"), "{e}");
    }

    #[test]
    fn hosts_and_tls_records() {
        assert_eq!(split_host("kafka:9092"), Some("kafka"));
        assert_eq!(split_host("[::1]:9092"), Some("::1"));
        assert_eq!(split_host("127.0.0.1:19094"), Some("127.0.0.1"));
        assert_eq!(split_host("kafka"), None);
        assert_eq!(split_host(":9092"), None);
        assert_eq!(split_host("kafka:http"), None);
        assert!(looks_like_tls([0x15, 0x03, 0x03, 0x00]));
        assert!(looks_like_tls([0x16, 0x03, 0x01, 0x02]));
        assert!(!looks_like_tls([0x00, 0x00, 0x01, 0x00]));
        assert!(!looks_like_tls(*b"HTTP"));
    }

    // ---- the walker agrees with kafka-protocol ------------------------------

    /// Encodes `message` at every version, walks it with `check`, and checks
    /// the walk ends exactly at the end and the decoder agrees.
    fn round_trip<M, F>(
        range: VersionRange,
        check: fn(&mut wire::Walker<'_>, i16) -> Result<(), wire::WireError>,
        make: F,
    ) where
        M: Encodable + Decodable + PartialEq + fmt::Debug,
        F: Fn(i16) -> M,
    {
        for v in range.min..=range.max {
            let message = make(v);
            let bytes = encode(&message, v);
            let mut w = wire::Walker::new(&bytes);
            check(&mut w, v).unwrap_or_else(|e| panic!("v{v}: {e}"));
            assert_eq!(w.remaining(), 0, "v{v}: walk stopped early");
            let decoded = M::decode(&mut Bytes::from(bytes.clone()), v).expect("decode");
            assert_eq!(decoded, message, "v{v}");
            // Every proper prefix is rejected (never accepted, never a panic).
            for cut in 0..bytes.len() {
                let mut w = wire::Walker::new(&bytes[..cut]);
                assert!(
                    check(&mut w, v).is_err(),
                    "v{v}: prefix of {cut} bytes accepted"
                );
            }
        }
    }

    fn s(x: &'static str) -> StrBytes {
        StrBytes::from_static_str(x)
    }

    fn tags(flexible: bool) -> std::collections::BTreeMap<i32, Bytes> {
        let mut t = std::collections::BTreeMap::new();
        if flexible {
            t.insert(99, Bytes::from_static(b"xyz"));
        }
        t
    }

    #[test]
    fn walker_matches_api_versions() {
        round_trip(ApiVersionsResponse::VERSIONS, wire::api_versions, |v| {
            let flex = v >= 3;
            let key = |k: i16| {
                ApiVersion::default()
                    .with_api_key(k)
                    .with_min_version(0)
                    .with_max_version(3)
            };
            let mut r = ApiVersionsResponse::default()
                .with_error_code(0)
                .with_api_keys(vec![key(1), key(18)])
                .with_throttle_time_ms(if v >= 1 { 5 } else { 0 })
                .with_unknown_tagged_fields(tags(flex));
            if flex {
                r = r
                    .with_supported_features(vec![
                        SupportedFeatureKey::default()
                            .with_name(s("metadata.version"))
                            .with_min_version(1)
                            .with_max_version(9),
                        SupportedFeatureKey::default().with_name(s("kraft.version")),
                    ])
                    .with_finalized_features_epoch(42)
                    .with_finalized_features(vec![
                        FinalizedFeatureKey::default().with_name(s("metadata.version"))
                    ])
                    .with_zk_migration_ready(true);
            }
            r
        });
    }

    #[test]
    fn walker_matches_sasl() {
        round_trip(
            SaslHandshakeResponse::VERSIONS,
            wire::sasl_handshake,
            |_| {
                SaslHandshakeResponse::default()
                    .with_mechanisms(vec![s("PLAIN"), s("SCRAM-SHA-512")])
            },
        );
        round_trip(
            SaslAuthenticateResponse::VERSIONS,
            wire::sasl_authenticate,
            |v| {
                SaslAuthenticateResponse::default()
                    .with_error_code(58)
                    .with_error_message(Some(s("nope")))
                    .with_auth_bytes(Bytes::from_static(b"r=abc,s=def,i=4096"))
                    .with_session_lifetime_ms(if v >= 1 { 1000 } else { 0 })
                    .with_unknown_tagged_fields(tags(v >= 2))
            },
        );
    }

    #[test]
    fn walker_matches_find_coordinator() {
        round_trip(
            FindCoordinatorResponse::VERSIONS,
            wire::find_coordinator,
            |v| {
                let r = FindCoordinatorResponse::default()
                    .with_throttle_time_ms(if v >= 1 { 3 } else { 0 })
                    .with_unknown_tagged_fields(tags(v >= 3));
                if v >= 4 {
                    let c = |k| {
                        Coordinator::default()
                            .with_key(s(k))
                            .with_node_id(1.into())
                            .with_host(s("h"))
                            .with_port(9092)
                    };
                    r.with_coordinators(vec![c("g1"), c("g2").with_error_message(None)])
                } else {
                    r.with_node_id(1.into())
                        .with_host(s("broker-1"))
                        .with_port(9092)
                        .with_error_message(if v >= 1 {
                            Some(s("msg"))
                        } else {
                            Some(StrBytes::default())
                        })
                }
            },
        );
    }

    #[test]
    fn walker_matches_join_and_sync() {
        round_trip(JoinGroupResponse::VERSIONS, wire::join_group, |v| {
            let member = |id| {
                JoinGroupResponseMember::default()
                    .with_member_id(s(id))
                    .with_group_instance_id(if v >= 5 { Some(s("static-1")) } else { None })
                    .with_metadata(Bytes::from_static(b"\x00\x03meta"))
                    .with_unknown_tagged_fields(tags(v >= 6))
            };
            JoinGroupResponse::default()
                .with_throttle_time_ms(if v >= 2 { 1 } else { 0 })
                .with_generation_id(7)
                .with_protocol_type(if v >= 7 { Some(s("consumer")) } else { None })
                .with_protocol_name(Some(s("range")))
                .with_leader(s("m-1"))
                .with_skip_assignment(v >= 9)
                .with_member_id(s("m-1"))
                .with_members(vec![member("m-1"), member("m-2")])
                .with_unknown_tagged_fields(tags(v >= 6))
        });
        round_trip(SyncGroupResponse::VERSIONS, wire::sync_group, |v| {
            SyncGroupResponse::default()
                .with_throttle_time_ms(if v >= 1 { 1 } else { 0 })
                .with_protocol_type(if v >= 5 { Some(s("consumer")) } else { None })
                .with_protocol_name(if v >= 5 { Some(s("range")) } else { None })
                .with_assignment(Bytes::from_static(b"\x00\x03assignment"))
                .with_unknown_tagged_fields(tags(v >= 4))
        });
    }

    #[test]
    fn walker_matches_heartbeat_and_leave() {
        round_trip(HeartbeatResponse::VERSIONS, wire::heartbeat, |v| {
            HeartbeatResponse::default()
                .with_throttle_time_ms(if v >= 1 { 1 } else { 0 })
                .with_error_code(27)
                .with_unknown_tagged_fields(tags(v >= 4))
        });
        round_trip(LeaveGroupResponse::VERSIONS, wire::leave_group, |v| {
            let member = MemberResponse::default()
                .with_member_id(s("m-1"))
                .with_group_instance_id(Some(s("i-1")))
                .with_error_code(25)
                .with_unknown_tagged_fields(tags(v >= 4));
            LeaveGroupResponse::default()
                .with_throttle_time_ms(if v >= 1 { 1 } else { 0 })
                .with_members(if v >= 3 {
                    vec![member.clone(), member]
                } else {
                    vec![]
                })
                .with_unknown_tagged_fields(tags(v >= 4))
        });
    }

    #[test]
    fn walker_matches_offset_commit_and_fetch() {
        round_trip(OffsetCommitResponse::VERSIONS, wire::offset_commit, |v| {
            let flex = v >= 8;
            let partition = |p| {
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p)
                    .with_error_code(0)
                    .with_unknown_tagged_fields(tags(flex))
            };
            let topic = OffsetCommitResponseTopic::default()
                .with_partitions(vec![partition(0), partition(1)])
                .with_unknown_tagged_fields(tags(flex));
            let topic = if v >= 10 {
                topic // identified by topic_id (nil by default)
            } else {
                topic.with_name(TopicName(s("orders")))
            };
            OffsetCommitResponse::default()
                .with_throttle_time_ms(if v >= 3 { 1 } else { 0 })
                .with_topics(vec![topic.clone(), topic])
                .with_unknown_tagged_fields(tags(flex))
        });
        round_trip(OffsetFetchResponse::VERSIONS, wire::offset_fetch, |v| {
            let flex = v >= 6;
            let r = OffsetFetchResponse::default()
                .with_throttle_time_ms(if v >= 3 { 1 } else { 0 })
                .with_unknown_tagged_fields(tags(flex));
            if v >= 8 {
                let partition = |p| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p)
                        .with_committed_offset(42)
                        .with_committed_leader_epoch(3)
                        .with_metadata(Some(s("meta")))
                        .with_unknown_tagged_fields(tags(true))
                };
                let topic = OffsetFetchResponseTopics::default()
                    .with_partitions(vec![partition(0), partition(1)])
                    .with_unknown_tagged_fields(tags(true));
                let topic = if v >= 10 {
                    topic // identified by topic_id (nil by default)
                } else {
                    topic.with_name(TopicName(s("orders")))
                };
                r.with_groups(vec![OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(vec![topic])
                    .with_unknown_tagged_fields(tags(true))])
            } else {
                let partition = |p| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(-1)
                        .with_committed_leader_epoch(if v >= 5 { 3 } else { -1 })
                        .with_metadata(None)
                        .with_unknown_tagged_fields(tags(flex))
                };
                let topic = OffsetFetchResponseTopic::default()
                    .with_name(TopicName(s("orders")))
                    .with_partitions(vec![partition(0), partition(1)])
                    .with_unknown_tagged_fields(tags(flex));
                r.with_topics(vec![topic.clone(), topic])
                    .with_error_code(if v >= 2 { 16 } else { 0 })
            }
        });
    }

    #[test]
    fn walker_rejects_tags_that_lie_about_their_size() {
        // ApiVersions v3: error, empty api_keys, throttle, then tag 1
        // (finalized_features_epoch, an i64 the decoder reads whatever the
        // declared size) declared as 2 bytes, then as 10.
        let short = [0, 0, 1, 0, 0, 0, 0, 1, 1, 2, 0, 0];
        let e = wire::api_versions(&mut wire::Walker::new(&short), 3).expect_err("short tag");
        assert!(
            e.to_string()
                .contains("finalized_features_epoch needs 8 bytes"),
            "{e}"
        );
        let mut long = vec![0, 0, 1, 0, 0, 0, 0, 1, 1, 10];
        long.extend_from_slice(&[0; 10]);
        let e = wire::api_versions(&mut wire::Walker::new(&long), 3).expect_err("long tag");
        assert!(
            e.to_string()
                .contains("tagged field 1 declares 10 bytes but holds 8"),
            "{e}"
        );
    }
}
