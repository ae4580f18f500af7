//! SASL OAUTHBEARER tokens read from a file (`KAFKA_SASL_OAUTHBEARER_TOKEN_FILE`).
//!
//! Kubernetes' projected service-account tokens and token sidecars replace
//! the file before the token in it expires, so the file is read again for
//! every new connection; nothing is cached. Only the JWT's `exp` claim is
//! read, without verifying the signature (clients never verify: the broker
//! does), to refuse an expired token with a clear line before the broker
//! refuses it vaguely, and to know when a connection must authenticate
//! again.
//!
//! The token is a bearer credential: it is held in a [`Secret`] and no error
//! here quotes any part of it.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine;

use crate::secret::Secret;

/// A token file, read anew for every connection.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenFile {
    path: PathBuf,
}

impl fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenFile").field(&self.path).finish()
    }
}

/// A token read from its file, with its expiry.
#[derive(Debug, Clone)]
pub struct Token {
    /// The compact JWS, for the SASL message (never printed).
    pub value: Secret,
    /// The `exp` claim.
    pub expires_at: SystemTime,
}

impl Token {
    /// How long until it expires (zero once it has).
    pub fn remaining(&self) -> Duration {
        self.expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }
}

/// Why no token could be used. Never holds any part of the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("cannot read the OAUTHBEARER token file {path}: {problem}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error's kind.
        problem: String,
    },
    /// The file does not hold a JWT with an `exp` claim.
    #[error(
        "the OAUTHBEARER token in {path} is malformed: {problem}; allowed: a JWT in compact \
         form (header.payload.signature, base64url) whose payload has a numeric `exp` claim"
    )]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong with it (never its content).
        problem: &'static str,
    },
    /// The token's `exp` has passed: whatever writes the file has not
    /// replaced it in time.
    #[error(
        "the OAUTHBEARER token in {path} expired {ago}s ago (its `exp` claim is {exp}); the \
         broker refuses it: whatever writes the file (a projected service-account token, a \
         token sidecar) has not replaced it"
    )]
    Expired {
        /// The file.
        path: String,
        /// The `exp` claim, seconds since the epoch.
        exp: u64,
        /// Seconds since then.
        ago: u64,
    },
}

impl TokenFile {
    /// The file at `path` (not read yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the token now, refusing a malformed or expired one.
    pub fn read(&self) -> Result<Token, TokenError> {
        let path = self.path.display().to_string();
        let text = std::fs::read_to_string(&self.path).map_err(|e| TokenError::Read {
            path: path.clone(),
            problem: e.kind().to_string(),
        })?;
        let text = text.trim();
        let malformed = |problem| TokenError::Malformed {
            path: path.clone(),
            problem,
        };
        let exp = jwt_exp(text).map_err(malformed)?;
        let expires_at = UNIX_EPOCH + Duration::from_secs(exp);
        let now = SystemTime::now();
        if expires_at <= now {
            let ago = now.duration_since(expires_at).unwrap_or_default().as_secs();
            return Err(TokenError::Expired { path, exp, ago });
        }
        Ok(Token {
            value: Secret::new(text),
            expires_at,
        })
    }
}

/// The `exp` claim of a compact JWS, in whole seconds, unverified.
fn jwt_exp(token: &str) -> Result<u64, &'static str> {
    if token.is_empty() {
        return Err("the file is empty");
    }
    // RFC 7628's bearer token is RFC 6750's b64token; a JWS has no spaces.
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~+/=".contains(&b))
    {
        return Err("it contains characters a JWT cannot hold (spaces, line breaks, non-ASCII)");
    }
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("it is not three parts separated by dots");
    };
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "its payload is not base64url")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|_| "its payload is not JSON")?;
    let exp = claims
        .as_object()
        .ok_or("its payload is not a JSON object")?
        .get("exp")
        .ok_or("its payload has no `exp` claim")?;
    // NumericDate: seconds, possibly fractional (RFC 7519 section 2).
    match exp.as_f64() {
        Some(secs) if (0.0..1e15).contains(&secs) => Ok(secs as u64),
        _ => Err("its `exp` claim is not a number of seconds since the epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    fn jwt(claims: &str) -> String {
        format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(claims))
    }

    fn file(name: &str, content: &str) -> TokenFile {
        let path = std::env::temp_dir().join(format!("token-{}-{name}", std::process::id()));
        std::fs::write(&path, content).expect("write");
        TokenFile::new(path)
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    }

    #[test]
    fn a_valid_token_is_read_with_its_expiry() {
        let token = jwt(&format!(r#"{{"sub":"a","exp":{}}}"#, now() + 600));
        let t = file("valid", &format!("{token}\n")).read().expect("valid");
        assert_eq!(t.value.expose(), token);
        assert!((590..=600).contains(&t.remaining().as_secs()));
        // Fractional NumericDate.
        let t = file("frac", &jwt(&format!(r#"{{"exp":{}.5}}"#, now() + 60)))
            .read()
            .expect("valid");
        assert!(t.remaining() > Duration::from_secs(50));
    }

    #[test]
    fn malformed_and_expired_tokens_are_refused_without_quoting_them() {
        let secret_claims = r#"{"sub":"topsecret"}"#;
        let cases = [
            ("", "empty"),
            ("not a jwt", "characters"),
            ("topsecret", "three parts"),
            ("a.topsecret!.c", "characters"),
            ("a.@@@.c", "characters"),
            ("a.dG9wc2VjcmV0.c", "not JSON"),
            (&jwt("[1]") as &str, "not a JSON object"),
            (&jwt(secret_claims), "no `exp`"),
            (&jwt(r#"{"exp":"soon"}"#), "not a number"),
            (&jwt(r#"{"exp":-1}"#), "not a number"),
        ];
        for (i, (content, problem)) in cases.iter().enumerate() {
            let e = file(&format!("bad{i}"), content)
                .read()
                .expect_err(content)
                .to_string();
            assert!(e.contains(problem), "{content:?}: {e}");
            assert!(e.contains("allowed: a JWT"), "{e}");
            assert!(!e.contains("topsecret") && !e.contains("dG9w"), "{e}");
        }
        let expired = jwt(&format!(r#"{{"sub":"topsecret","exp":{}}}"#, now() - 90));
        let e = file("expired", &expired).read().expect_err("expired");
        assert!(
            matches!(e, TokenError::Expired { ago, .. } if (90..=95).contains(&ago)),
            "{e:?}"
        );
        assert!(!e.to_string().contains(&expired[..10]), "{e}");
        let e = TokenFile::new("/nonexistent/token")
            .read()
            .expect_err("missing");
        assert_eq!(
            e.to_string(),
            "cannot read the OAUTHBEARER token file /nonexistent/token: entity not found"
        );
    }

    #[test]
    fn the_file_is_read_again_each_time() {
        let f = file("rotated", &jwt(&format!(r#"{{"exp":{}}}"#, now() + 60)));
        let first = f.read().expect("first");
        std::fs::write(f.path(), jwt(&format!(r#"{{"exp":{}}}"#, now() + 3600))).expect("rotate");
        let second = f.read().expect("second");
        assert_ne!(first.value, second.value);
        assert!(second.expires_at > first.expires_at);
    }
}
