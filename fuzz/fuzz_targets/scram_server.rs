//! SCRAM server messages (issue 17, finding 2) as a broker, or a broker
//! impersonator, sends them to our clients: the server-first message
//! (nonce, salt, iteration count, extensions) and the server-final one
//! (signature or error), through the SCRAM client both of our SASL paths
//! use (rsasl), behind the iteration bounds each path checks first.
//!
//! Never a panic (it found one: rsasl's parser on an attribute shorter
//! than `x=`, now refused before it by `kafka_base::scram::malformed` and
//! rskafka's `check_scram_message`, which must agree). The two copies of the bound — ours
//! (`kafka_base::scram`, the group connection) and the vendored rskafka's
//! (`messenger::check_scram_iterations`, the data path) — agree on every
//! message; a count they let through is within 4 096..=16 384, so the key
//! derivation never runs with another; and a server-final message the
//! fuzzer made up (it cannot know the password) never completes the
//! exchange: the server's signature is checked.
#![no_main]

use arbitrary::Arbitrary;
use kafka_base::scram::{iterations_out_of_bounds, malformed, SCRAM_ITERATIONS};
use libfuzzer_sys::fuzz_target;
use rsasl::prelude::{Mechname, SASLClient, SASLConfig};

#[derive(Debug, Arbitrary)]
struct Input {
    sha512: bool,
    first: First,
    server_final: Final,
}

#[derive(Debug, Arbitrary)]
enum First {
    /// Any bytes.
    Raw(Vec<u8>),
    /// Shaped like RFC 5802's `r=<client nonce><server part>,s=<salt>,i=<count>[,<ext>]`.
    Shaped {
        keep_nonce: bool,
        server_nonce: String,
        salt: Vec<u8>,
        count: Count,
        ext: Option<String>,
    },
}

#[derive(Debug, Arbitrary)]
enum Count {
    /// Near the bounds, where an off-by-one would show.
    Near(i8, bool),
    Any(u64),
    Text(String),
}

#[derive(Debug, Arbitrary)]
enum Final {
    Raw(Vec<u8>),
    Verifier(Vec<u8>),
    Error(String),
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `bytes` mapped onto the base64 alphabet, padded like base64.
fn b64ish(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().take(64).map(|b| B64[usize::from(*b % 64)] as char).collect();
    while s.len() % 4 != 0 {
        s.push('=');
    }
    s
}

fn count_text(count: &Count) -> String {
    match count {
        Count::Near(delta, upper) => {
            let base = if *upper { *SCRAM_ITERATIONS.end() } else { *SCRAM_ITERATIONS.start() };
            (base as i64 + i64::from(*delta)).to_string()
        }
        Count::Any(n) => n.to_string(),
        Count::Text(t) => t.chars().take(40).collect(),
    }
}

fuzz_target!(|input: Input| {
    let mechanism: &[u8] = if input.sha512 { b"SCRAM-SHA-512" } else { b"SCRAM-SHA-256" };
    let config = SASLConfig::with_credentials(None, "user".to_owned(), "secret".to_owned())
        .expect("credentials");
    let name = Mechname::parse(mechanism).expect("mechanism name");
    let mut session = SASLClient::new(config).start_suggested(&[name]).expect("SCRAM client");
    let mut client_first = Vec::new();
    session.step(None, &mut client_first).expect("client-first");
    let client_first = String::from_utf8(client_first).expect("client-first is text");
    let client_nonce = client_first.rsplit("r=").next().expect("a nonce").to_owned();

    let server_first: Vec<u8> = match &input.first {
        First::Raw(bytes) => bytes.clone(),
        First::Shaped { keep_nonce, server_nonce, salt, count, ext } => {
            let nonce = if *keep_nonce { client_nonce.as_str() } else { "" };
            let server_nonce: String = server_nonce.chars().take(64).collect();
            let mut m = format!("r={nonce}{server_nonce},s={},i={}", b64ish(salt), count_text(count));
            if let Some(ext) = ext {
                m.push(',');
                m.extend(ext.chars().take(64));
            }
            m.into_bytes()
        }
    };

    // A message rsasl's parser would panic on is refused first, by both.
    assert_eq!(
        malformed(&server_first),
        rskafka::messenger::check_scram_message(&server_first).is_err(),
        "the two malformed checks disagree"
    );
    if malformed(&server_first) {
        return;
    }
    let ours = iterations_out_of_bounds(&server_first);
    let theirs = rskafka::messenger::check_scram_iterations(&server_first).is_err();
    assert_eq!(ours.is_some(), theirs, "the two bounds disagree");
    if let Some(n) = ours {
        assert!(!SCRAM_ITERATIONS.contains(&n), "refused a count within the bounds: {n}");
        // Both clients stop here, before the key derivation.
        return;
    }
    // Let through: the count the SCRAM client would read is within bounds.
    if let Ok(text) = std::str::from_utf8(&server_first) {
        if let Some(Ok(n)) = text.split(',').find_map(|a| a.strip_prefix("i=")).map(|c| c.trim().parse::<u64>()) {
            assert!(SCRAM_ITERATIONS.contains(&n), "let through {n} iterations");
        }
    }

    let mut client_final = Vec::new();
    match session.step(Some(&server_first), &mut client_final) {
        Err(_) => return,
        Ok(state) => assert!(
            !state.is_finished(),
            "the exchange finished on the server-first message"
        ),
    }
    let server_final: Vec<u8> = match &input.server_final {
        Final::Raw(bytes) => bytes.clone(),
        Final::Verifier(bytes) => format!("v={}", b64ish(bytes)).into_bytes(),
        Final::Error(e) => format!("e={}", e.chars().take(64).collect::<String>()).into_bytes(),
    };
    assert_eq!(
        malformed(&server_final),
        rskafka::messenger::check_scram_message(&server_final).is_err(),
        "the two malformed checks disagree"
    );
    if malformed(&server_final) {
        return;
    }
    let mut out = Vec::new();
    if let Ok(state) = session.step(Some(&server_final), &mut out) {
        assert!(
            !state.is_finished(),
            "a made-up server signature completed the exchange: {:?}",
            String::from_utf8_lossy(&server_final)
        );
    }
});
