//! The handshakes after TCP: TLS (its failure hints) and SASL
//! (`SaslHandshake`, then `SaslAuthenticate` rounds driven by rsasl).

use std::{io, time::Duration};

use bytes::Bytes;
use kafka_base::{
    scram,
    security::{SaslMechanism, SaslSettings},
};
use kafka_protocol::{
    messages::{SaslAuthenticateRequest, SaslHandshakeRequest},
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
/// (SCRAM needs two, PLAIN one).
const MAX_SASL_ROUNDS: usize = 8;

impl BrokerConnection {
    /// `SaslHandshake` then `SaslAuthenticate` rounds, as rskafka does.
    pub(super) async fn authenticate(
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
        let scram = mechanism != SaslMechanism::Plain;
        let mut received: Option<Bytes> = None;
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
                let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(out));
                let (body, body_version) = self
                    .exchange(&request, version, deadline, self.request_timeout)
                    .await?;
                let response = self.decode::<SaslAuthenticateRequest>(body, body_version)?;
                let code = KafkaCode::from_wire(response.error_code);
                if !code.is_none() {
                    return Err(ConnectionError::AuthenticationFailed {
                        broker: self.broker.clone(),
                        user: sasl.username.clone(),
                        mechanism,
                        code,
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
