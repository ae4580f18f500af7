//! [`ConnectionError`]: why talking to one broker failed.

use std::{io, time::Duration};

use kafka_base::{oauth::TokenError, security::SaslMechanism};
use kafka_protocol::protocol::VersionRange;

use crate::error::KafkaCode;

/// Why talking to one broker failed. Every variant names the broker; none
/// ever contains the SASL password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
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

    /// The OAUTHBEARER token could not be used (unreadable file, not a
    /// JWT, expired): found before it was sent.
    #[error("cannot authenticate to Kafka broker {broker}: {source}")]
    Token {
        /// `host:port`.
        broker: String,
        /// What is wrong with the token (never any part of it).
        #[source]
        source: TokenError,
    },

    /// The broker rejected the credentials.
    #[error(
        "authentication failed for {user} with {mechanism} at Kafka broker {broker}: {code}{}",
        message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
    )]
    AuthenticationFailed {
        /// `host:port`.
        broker: String,
        /// `user NAME`, or the token's file (never the password or token).
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
