//! The handshakes after TCP: TLS (its failure hints) and SASL
//! (`SaslHandshake`, then `SaslAuthenticate` rounds driven by rsasl).

use std::{io, time::Duration};

use bytes::Bytes;
use kafka_base::{
    oauth::TokenFile,
    scram,
    security::{SaslCredentials, SaslMechanism, SaslSettings, Secret},
};
use kafka_protocol::{
    messages::{SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest},
    protocol::StrBytes,
    ResponseError,
};
use rsasl::prelude::{Mechname, SASLClient, SASLConfig};
use tokio::time::Instant;
use tracing::debug;

use super::{
    is_closed, BrokerConnection, ConnectionConfig, ConnectionError, KnownRequest, SendOptions,
};
use crate::error::KafkaCode;

/// A SASL exchange that has not finished after this many rounds is broken
/// (SCRAM needs two, PLAIN one; OAUTHBEARER, sent by hand, one or two).
const MAX_SASL_ROUNDS: usize = 8;

impl BrokerConnection {
    /// `SaslHandshake` then `SaslAuthenticate` rounds, as rskafka does.
    pub(super) async fn authenticate(
        &mut self,
        sasl: &SaslSettings,
        deadline: Instant,
    ) -> Result<(), ConnectionError> {
        let mechanism = sasl.mechanism;
        let version = self.version::<SaslHandshakeRequest>()?;
        let request = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(mechanism.name()));
        let (body, version) = self
            .exchange(&request, version, deadline, self.request_timeout)
            .await?;
        let response = self.decode::<SaslHandshakeRequest>(body, version)?;
        let code = KafkaCode::from_wire(response.error_code);
        match code.error() {
            None => {}
            Some(ResponseError::UnsupportedSaslMechanism) => {
                return Err(ConnectionError::SaslMechanismNotEnabled {
                    broker: self.broker.clone(),
                    mechanism,
                    offered: response.mechanisms.iter().map(|m| m.to_string()).collect(),
                })
            }
            // What a broker answers on a listener that does not use SASL.
            Some(ResponseError::IllegalSaslState) => {
                return Err(ConnectionError::SaslNotExpected {
                    broker: self.broker.clone(),
                })
            }
            Some(_) => {
                return Err(ConnectionError::Api {
                    broker: self.broker.clone(),
                    api: SaslHandshakeRequest::NAME,
                    code,
                })
            }
        }

        let version = self.version::<SaslAuthenticateRequest>()?;
        let lifetime = match &sasl.credentials {
            SaslCredentials::Password { username, password } => {
                self.authenticate_password(sasl, username, password, version, deadline)
                    .await?
            }
            SaslCredentials::Token(file) => {
                self.authenticate_token(sasl, file, version, deadline)
                    .await?
            }
        };
        self.renew_at = lifetime.map(|l| Instant::now() + renewal_after(l));
        debug!(
            broker = %self.broker,
            %mechanism,
            principal = %sasl.principal(),
            renew_in_s = lifetime.map(|l| renewal_after(l).as_secs()),
            "SASL authenticated"
        );
        Ok(())
    }

    /// PLAIN and SCRAM, driven by rsasl. Returns the broker's session
    /// lifetime, if it set one.
    async fn authenticate_password(
        &mut self,
        sasl: &SaslSettings,
        username: &str,
        password: &Secret,
        version: i16,
        deadline: Instant,
    ) -> Result<Option<Duration>, ConnectionError> {
        let mechanism = sasl.mechanism;
        let sasl_err = |broker: &str, reason: String| ConnectionError::Sasl {
            broker: broker.to_owned(),
            mechanism,
            reason,
        };
        // The one place the password leaves its `Secret`.
        let config =
            SASLConfig::with_credentials(None, username.to_owned(), password.expose().to_owned())
                .map_err(|e| sasl_err(&self.broker, e.to_string()))?;
        let name = Mechname::parse(mechanism.name().as_bytes())
            .map_err(|e| sasl_err(&self.broker, e.to_string()))?;
        let mut session = SASLClient::new(config)
            .start_suggested(&[name])
            .map_err(|e| sasl_err(&self.broker, e.to_string()))?;
        let scram = mechanism.is_scram();
        let mut received: Option<Bytes> = None;
        let mut lifetime = None;
        for round in 0..MAX_SASL_ROUNDS {
            // A server message the SCRAM parser would panic on (see
            // `scram::malformed`) never reaches it.
            if let (true, Some(message)) = (scram, received.as_deref()) {
                if scram::malformed(message) {
                    return Err(sasl_err(
                        &self.broker,
                        "the broker's SCRAM message has an attribute shorter than RFC 5802's `x=`"
                            .to_owned(),
                    ));
                }
            }
            // SCRAM's first server message sets the key derivation's
            // iteration count: bounded before the derivation runs.
            if let (true, 1, Some(first)) = (scram, round, received.as_deref()) {
                if let Some(iterations) = scram::iterations_out_of_bounds(first) {
                    return Err(sasl_err(
                        &self.broker,
                        format!(
                            "the broker asked for {iterations} SCRAM iterations; allowed: {} to {} \
                             (a broker impersonator lowers it to crack the proof offline, or \
                             raises it to pin a core)",
                            scram::SCRAM_ITERATIONS.start(),
                            scram::SCRAM_ITERATIONS.end()
                        ),
                    ));
                }
            }
            // The derivation (PBKDF2) runs on a blocking thread, so the
            // deadline, other tasks and shutdown go on meanwhile.
            let input = received.clone();
            let (returned, stepped, out) = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                let stepped = session.step(input.as_deref(), &mut out);
                (session, stepped, out)
            })
            .await
            .map_err(|e| sasl_err(&self.broker, format!("SASL step stopped: {e}")))?;
            session = returned;
            let state = stepped.map_err(|e| sasl_err(&self.broker, e.to_string()))?;
            if state.has_sent_message() {
                let response = self
                    .sasl_authenticate(sasl, Bytes::from(out), version, deadline)
                    .await?;
                lifetime = session_lifetime(&response);
                received = Some(response.auth_bytes);
            }
            if state.is_finished() {
                return Ok(lifetime);
            }
        }
        Err(sasl_err(
            &self.broker,
            format!("no outcome after {MAX_SASL_ROUNDS} rounds"),
        ))
    }

    /// OAUTHBEARER (RFC 7628) with the token the file holds now. Returns
    /// how long the session may last: until the token expires, or the
    /// broker's session lifetime ends if that is sooner.
    async fn authenticate_token(
        &mut self,
        sasl: &SaslSettings,
        file: &TokenFile,
        version: i16,
        deadline: Instant,
    ) -> Result<Option<Duration>, ConnectionError> {
        let token = file.read().map_err(|source| ConnectionError::Token {
            broker: self.broker.clone(),
            source,
        })?;
        // The one place the token leaves its `Secret`: the initial client
        // response, without an authorization identity (RFC 7628 section 3.1).
        let message = format!("n,,\x01auth=Bearer {}\x01\x01", token.value.expose());
        let response = self
            .sasl_authenticate(sasl, Bytes::from(message), version, deadline)
            .await?;
        if !response.auth_bytes.is_empty() {
            // The broker refused the token with an error challenge (a JSON
            // status); RFC 7628 has the client answer with a single %x01,
            // after which the broker fails the exchange with its reason.
            let status = String::from_utf8_lossy(&response.auth_bytes).into_owned();
            let response = self
                .sasl_authenticate(sasl, Bytes::from_static(b"\x01"), version, deadline)
                .await;
            return Err(match response {
                Err(ConnectionError::AuthenticationFailed {
                    broker,
                    user,
                    mechanism,
                    code,
                    message,
                }) => ConnectionError::AuthenticationFailed {
                    broker,
                    user,
                    mechanism,
                    code,
                    message: Some(message.filter(|m| !m.is_empty()).unwrap_or(status)),
                },
                Err(e) => e,
                Ok(_) => ConnectionError::Sasl {
                    broker: self.broker.clone(),
                    mechanism: sasl.mechanism,
                    reason: format!(
                        "the broker refused the token ({status}) but did not fail the exchange"
                    ),
                },
            });
        }
        let lifetime = token.remaining();
        Ok(Some(
            session_lifetime(&response).map_or(lifetime, |l| l.min(lifetime)),
        ))
    }

    /// One `SaslAuthenticate` round; a Kafka error code fails it.
    async fn sasl_authenticate(
        &mut self,
        sasl: &SaslSettings,
        auth_bytes: Bytes,
        version: i16,
        deadline: Instant,
    ) -> Result<SaslAuthenticateResponse, ConnectionError> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(auth_bytes);
        let (body, body_version) = self
            .exchange(&request, version, deadline, self.request_timeout)
            .await?;
        let response = self.decode::<SaslAuthenticateRequest>(body, body_version)?;
        let code = KafkaCode::from_wire(response.error_code);
        if !code.is_none() {
            return Err(ConnectionError::AuthenticationFailed {
                broker: self.broker.clone(),
                user: sasl.principal(),
                mechanism: sasl.mechanism,
                code,
                message: response.error_message.map(|m| m.to_string()),
            });
        }
        Ok(response)
    }
}

/// The session lifetime the broker set (KIP-368, `SaslAuthenticate` v1+):
/// positive when `connections.max.reauth.ms` is set, and then no longer
/// than the OAUTHBEARER token's.
fn session_lifetime(response: &SaslAuthenticateResponse) -> Option<Duration> {
    u64::try_from(response.session_lifetime_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// When to replace a session that may last `lifetime`: at 85 %, the
/// earliest point at which Kafka's Java client re-authenticates (KIP-368
/// picks one between 85 and 95 %), so the new connection is up well before
/// the broker would close the old one.
pub(super) fn renewal_after(lifetime: Duration) -> Duration {
    lifetime.mul_f64(0.85)
}

/// A hint for a failed TLS handshake, when its cause is likely a port that
/// does not speak TLS: a Kafka plaintext listener reads the ClientHello as
/// an oversized request and closes the connection.
pub(super) fn tls_failure_hint(e: &io::Error) -> &'static str {
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

/// What a pre-flight connection to one broker found ([`preflight`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    /// Connected (TCP, TLS, `ApiVersions`, SASL as configured).
    Ready,
    /// SASL is not configured but the listener requires it.
    SaslRequired {
        /// The mechanisms it enables.
        offered: Vec<String>,
    },
}

/// Connects to `broker` as `config` says — TCP, TLS, `ApiVersions`, SASL —
/// within `within`, to report what is wrong in one clear line before a
/// client that explains failures vaguely (rskafka) tries.
///
/// Without SASL configured, a SASL listener accepts `ApiVersions` and then
/// drops the connection at the first real request, which rskafka reports
/// as "Connection is poisoned … early eof". A `SaslHandshake` tells the two
/// apart: a PLAINTEXT or SSL listener answers `ILLEGAL_SASL_STATE`, a SASL
/// listener lists its mechanisms. Any other outcome is left to the client.
pub async fn preflight(
    config: &ConnectionConfig,
    broker: &str,
    within: Duration,
) -> Result<Preflight, ConnectionError> {
    let mut conn =
        match tokio::time::timeout(within, BrokerConnection::connect(config, broker)).await {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(ConnectionError::Timeout {
                    broker: broker.to_owned(),
                    during: "connect",
                    after: within,
                })
            }
        };
    if config.sasl.is_some() {
        return Ok(Preflight::Ready);
    }
    let request = SaslHandshakeRequest::default()
        .with_mechanism(StrBytes::from_static_str(SaslMechanism::Plain.name()));
    let options = SendOptions::new().timeout(within.max(Duration::from_millis(1)));
    match conn.send_with(request, options).await {
        Ok(r) if !KafkaCode::from_wire(r.error_code).is(ResponseError::IllegalSaslState) => {
            Ok(Preflight::SaslRequired {
                offered: r.mechanisms.iter().map(|m| m.to_string()).collect(),
            })
        }
        _ => Ok(Preflight::Ready),
    }
}
