//! OAUTHBEARER tokens for tests: unsecured JWS (`"alg":"none"`, no
//! signature), which Kafka's default validator on the local broker's SASL
//! listeners accepts, written to a token file the way the kubelet and
//! token sidecars replace it (a new file renamed over the old one).

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::Engine;

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// An unsecured JWS for `sub` that expires `exp_in_secs` from now (in the
/// past when negative), with a random `jti` so that every token differs
/// and a test can look for it in output.
pub fn unsecured_jwt(sub: &str, exp_in_secs: i64) -> String {
    let now = now_secs();
    unsecured_jws(&serde_json::json!({
        "sub": sub,
        "iat": now,
        "exp": now + exp_in_secs,
        "jti": format!("{:032x}", rand::random::<u128>()),
    }))
}

/// An unsecured JWS with exactly `claims`.
pub fn unsecured_jws(claims: &serde_json::Value) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&claims.to_string()))
}

/// Replaces the token in `path` atomically (write a sibling, rename).
pub fn write_token(path: &Path, token: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, token).expect("write token");
    std::fs::rename(&tmp, path).expect("rename token into place");
}
