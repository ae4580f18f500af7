//! How to reach Kafka securely: the security protocol, the TLS and SASL
//! settings, and the rustls configuration built from them ([`Secret`], which
//! holds their passwords and tokens, is re-exported from [`crate::secret`]).
//!
//! Defined once for both kinds of connection a service opens — rskafka's
//! (metadata, produce, fetch) and the group protocol's own (join,
//! heartbeat, commit) — so one configuration covers both.

use std::{fmt, path::PathBuf, sync::Arc};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    DigitallySignedStruct, RootCertStore,
};

use crate::oauth::TokenFile;
pub use crate::secret::Secret;

/// `KAFKA_SECURITY_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS, no SASL.
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether connections are wrapped in TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        })
    }
}

/// `KAFKA_SASL_MECHANISM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// RFC 4616 PLAIN.
    Plain,
    /// SCRAM with SHA-256.
    ScramSha256,
    /// SCRAM with SHA-512.
    ScramSha512,
    /// RFC 7628 OAUTHBEARER with a token from a file.
    OAuthBearer,
}

impl SaslMechanism {
    /// The mechanism's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Whether it is one of the SCRAM mechanisms.
    pub fn is_scram(self) -> bool {
        matches!(self, Self::ScramSha256 | Self::ScramSha512)
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// SASL mechanism and credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// What it authenticates with.
    pub credentials: SaslCredentials,
}

/// What a SASL mechanism authenticates with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslCredentials {
    /// PLAIN and SCRAM.
    Password {
        /// `KAFKA_USERNAME`.
        username: String,
        /// `KAFKA_PASSWORD` or the file named by `KAFKA_PASSWORD_FILE`.
        password: Secret,
    },
    /// OAUTHBEARER: `KAFKA_SASL_OAUTHBEARER_TOKEN_FILE`.
    Token(TokenFile),
}

impl SaslSettings {
    /// PLAIN or SCRAM with a user and password.
    pub fn password(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: Secret,
    ) -> Self {
        Self {
            mechanism,
            credentials: SaslCredentials::Password {
                username: username.into(),
                password,
            },
        }
    }

    /// Who authenticates, for logs and errors: `user NAME`, or the token
    /// file (the token's subject is not read).
    pub fn principal(&self) -> String {
        match &self.credentials {
            SaslCredentials::Password { username, .. } => format!("user {username}"),
            SaslCredentials::Token(file) => format!("the token in {}", file.path().display()),
        }
    }
}

/// TLS settings, used when the security protocol is SSL or SASL_SSL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// `KAFKA_SSL_CA_FILE`: PEM bundle of CAs to trust.
    pub ca_file: Option<PathBuf>,
    /// `KAFKA_SSL_WEBPKI_ROOTS`: also trust the bundled public web PKI roots.
    pub webpki_roots: bool,
    /// `KAFKA_SSL_CERT_FILE`: client certificate chain (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// `KAFKA_SSL_KEY_FILE`: client private key (PEM) for mutual TLS.
    pub key_file: Option<PathBuf>,
    /// `KAFKA_SSL_VERIFY_HOSTNAME`: check the broker's name against its certificate.
    pub verify_hostname: bool,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A TLS file could not be read or holds nothing usable.
    #[error("TLS setup: {what} {path}: {problem}")]
    File {
        /// Which file (CA, certificate, key).
        what: &'static str,
        /// Its path.
        path: String,
        /// What went wrong.
        problem: String,
    },
    /// rustls rejected the configuration.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds a rustls client configuration from PEM files.
pub fn tls_client_config(tls: &TlsSettings) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    if tls.webpki_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = &tls.ca_file {
        let certs = read_certs(path, "CA file")?;
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsError::File {
                what: "CA file",
                path: path.display().to_string(),
                problem: "no usable certificate in it".to_owned(),
            });
        }
    }
    let roots = Arc::new(roots);
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = if tls.verify_hostname {
        builder.with_root_certificates(roots)
    } else {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoHostnameVerifier { inner }))
    };
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "client certificate")?;
            let key = read_key(key)?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn read_certs(
    path: &std::path::Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |problem: String| TlsError::File {
        what,
        path: path.display().to_string(),
        problem,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

fn read_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // Never include the key's bytes in an error.
    let err = |problem: String| TlsError::File {
        what: "client key",
        path: path.display().to_string(),
        problem,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.kind().to_string()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|_| err("not a PEM private key".to_owned()))?
        .ok_or_else(|| err("no unencrypted PKCS#8, PKCS#1 or SEC1 private key in it".to_owned()))
}

/// Verifies the chain but not the name: for brokers whose certificates do not
/// carry the address clients use. Only when `KAFKA_SSL_VERIFY_HOSTNAME=false`.
#[derive(Debug)]
struct NoHostnameVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for NoHostnameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
