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
//! an error, and `kafka-protocol` decodes the rest. Its decoders read array
//! lengths off the wire; the vendored copy (`vendor/kafka-protocol`, see
//! its PATCHES.md) rejects a count larger than the bytes left and
//! pre-allocates at most 1024 elements, so memory follows the bytes
//! received: a 20-byte frame declaring 2^31 group members is a decode
//! error, not an abort on a failed 257 GB allocation. The `group_responses`
//! fuzz target checks that bound.
//!
//! After a failed or cancelled request the connection is unusable (its
//! stream may be mid-frame) and says so; the owner opens a new one.

use std::{collections::HashMap, fmt, io, sync::Arc, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_base::security::{SaslSettings, SecurityProtocol};
use kafka_protocol::{
    messages::{ApiKey, RequestHeader, ResponseHeader},
    protocol::{Decodable, Encodable, HeaderVersion, StrBytes, VersionRange},
    ResponseError,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::{timeout_at, Instant},
};
use tokio_rustls::TlsConnector;
use tracing::debug;

mod error;
mod handshake;
mod versions;

pub use error::ConnectionError;
pub use handshake::{preflight, Preflight};
pub use versions::KnownRequest;

/// The largest response frame we accept (100 MiB, the broker's own default
/// `socket.request.max.bytes`). Group responses are tiny; a larger length
/// prefix means the peer is not a Kafka broker or the stream is out of sync.
pub const MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

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
    /// Settings for every connection: the client id sent with each request,
    /// the security protocol with its SASL credentials and rustls
    /// configuration (`tls` must be `Some` exactly when the protocol uses
    /// TLS, `sasl` when it uses SASL), and the timeout of each request and
    /// of connecting.
    pub fn new(
        client_id: &str,
        protocol: SecurityProtocol,
        sasl: Option<SaslSettings>,
        tls: Option<Arc<rustls::ClientConfig>>,
        request_timeout: Duration,
    ) -> Result<Self, ConnectionError> {
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
        // Settings built by hand could say SASL_* without credentials;
        // connecting would then fail later with a confusing closed connection.
        let sasl = if protocol.uses_sasl() {
            match sasl {
                Some(sasl) => Some(sasl),
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
            client_id: StrBytes::from_string(client_id.to_owned()),
            tls,
            sasl,
            request_timeout,
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
    /// When the authenticated session must be replaced: before the
    /// OAUTHBEARER token expires or the broker's session lifetime
    /// (KIP-368) ends. `None` without an end.
    renew_at: Option<Instant>,
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
                    let hint = handshake::tls_failure_hint(&source);
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
            renew_at: None,
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
    /// request then fails with [`ConnectionError::Unusable`]. False too
    /// once its SASL session is due for renewal (the OAUTHBEARER token
    /// nears its expiry, or the broker's session lifetime its end): callers
    /// then connect again, authenticating with the token the file holds by
    /// then, before the broker would close the connection.
    pub fn is_usable(&self) -> bool {
        self.usable && self.renew_at.is_none_or(|at| Instant::now() < at)
    }

    #[cfg(any(test, feature = "unstable-fuzzing"))]
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

    /// Decodes the response header, checks the correlation id and returns
    /// the body with the version to decode it at.
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
        // Every ApiVersions version starts with the error code, and a broker
        // answers a version it does not know with UNSUPPORTED_VERSION in the
        // v0 layout (the header is v0 for every ApiVersions version).
        let body_version = if R::KEY == ApiKey::ApiVersions as i16
            && buf.get(..2) == Some(&ResponseError::UnsupportedVersion.code().to_be_bytes()[..])
        {
            0
        } else {
            version
        };
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
}

/// `host:port`, with brackets around an IPv6 host.
pub(crate) fn address(host: &str, port: impl fmt::Display) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
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

#[cfg(test)]
pub(crate) mod tests;
