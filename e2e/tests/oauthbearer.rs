//! SASL OAUTHBEARER with a token file, on a private broker whose SASL
//! listeners enable OAUTHBEARER with Kafka's unsecured JWS validator (the
//! shared broker picks up `scripts/kafka-local.sh`'s OAUTHBEARER only on
//! its next start; this test must not depend on when that is). The
//! validator checks the claims (`exp`, `sub`) but no signature: the flow
//! is the one a platform's OIDC validator sees.
//!
//! One broker for all cases (its start costs ~20 s of JVM), run in order:
//! - success: the producer sends N records and a consumer group (rskafka's
//!   connections and the group coordinator connection) receives and
//!   commits all N, over OAUTHBEARER only, on SASL_PLAINTEXT and SASL_SSL;
//! - an expired token, a malformed token, a token the broker refuses: the
//!   producer binary exits 1 with one line saying what is wrong, and
//!   prints nothing of the token, in DEBUG;
//! - rotation: the consumer binary runs on a token that lives 20 s; the
//!   file is replaced meanwhile (as the kubelet or a sidecar does); the
//!   broker (KIP-368, `connections.max.reauth.ms`) would close every
//!   connection still on the old token at its `exp`, so the consumer must
//!   have replaced them all — rskafka's per partition and the coordinator's
//!   — with connections on the new token before then: records produced
//!   after the old token's expiry arrive, nothing is logged above INFO, and
//!   neither token is printed.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{config::ConfigSource, kafka::KafkaSettings};
use testkit::{
    broker::PrivateBroker,
    oauth::{now_secs, unsecured_jws, unsecured_jwt, write_token},
    process::{free_addr, service_bin, Finished, Running},
    scrape::{consumed, http_get},
    security::{merged, Pairs},
    services::{borrowed, produce_with, quick_group, spawn_consumer_with},
    unique,
};

/// OAUTHBEARER over `broker`'s SASL_PLAINTEXT listener with the token file `file`.
fn oauth(broker: &PrivateBroker, file: &std::path::Path) -> Pairs {
    vec![
        ("KAFKA_BOOTSTRAP_SERVER", broker.sasl_plaintext()),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".to_owned()),
        ("KAFKA_SASL_MECHANISM", "OAUTHBEARER".to_owned()),
        (
            "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE",
            file.display().to_string(),
        ),
    ]
}

/// Producer settings: `n` records to `topic`, created with 2 partitions.
fn producing(topic: &str, n: u64, timeout_secs: u64) -> Pairs {
    vec![
        ("KAFKA_TOPIC", topic.to_owned()),
        ("PRODUCER_MESSAGES", n.to_string()),
        ("PRODUCER_CREATE_TOPIC", "true".to_owned()),
        ("PRODUCER_TOPIC_PARTITIONS", "2".to_owned()),
        ("PRODUCER_TIMEOUT_SECS", timeout_secs.to_string()),
    ]
}

/// Producer sends `n`, a consumer group receives all `n` and commits them.
async fn roundtrip(settings: &Pairs, n: u64) {
    let topic = unique("oauth");
    let group = unique("g-oauth");
    let pairs = merged(settings.clone(), producing(&topic, n, 30));
    produce_with(ConfigSource::from_pairs(borrowed(&pairs)), n).await;

    let pairs = merged(settings.clone(), quick_group(&topic, &group));
    let c = spawn_consumer_with(ConfigSource::from_pairs(borrowed(&pairs))).await;
    let got = consumed_by(c.addr, &topic, n, Instant::now() + Duration::from_secs(40)).await;
    let (status, reason) = http_get(c.addr, "/readyz").await;
    assert_eq!(got, n, "consumed {got} of {n}; /readyz {status} {reason}");
    c.shutdown.cancel();
    c.handle.await.expect("join").expect("consumer");
    let kafka = KafkaSettings::from_source(&ConfigSource::from_pairs(borrowed(settings)), "reader")
        .expect("settings");
    let committed: i64 = testkit::services::committed(&kafka, &group, &topic, 2)
        .await
        .into_iter()
        .map(|o| o.max(0))
        .sum();
    assert_eq!(committed, n as i64, "committed offsets");
}

/// How many records of `topic` the consumer at `addr` handled, once it has
/// handled `n` or at `until`.
async fn consumed_by(addr: SocketAddr, topic: &str, n: u64, until: Instant) -> u64 {
    let mut got = 0;
    while Instant::now() < until {
        got = consumed(addr, topic).await;
        if got >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    got
}

/// The producer binary, in DEBUG, with `settings`, to its end.
async fn run_producer(settings: Pairs, timeout_secs: u64) -> Finished {
    let env = merged(
        settings,
        merged(
            producing(&unique("oauth-bad"), 5, timeout_secs),
            vec![
                ("HTTP_ADDR", free_addr().to_string()),
                ("DEBUG", "true".to_owned()),
            ],
        ),
    );
    Running::start(service_bin("producer"), &[], &env)
        .finish(Duration::from_secs(timeout_secs + 20))
        .await
}

/// Exit 1, the last line an ERROR with every one of `expected`, nothing of
/// `token` (or of its payload) anywhere in the output.
fn assert_refused(case: &str, out: &Finished, expected: &[&str], token: &str) {
    let last = out.last_line();
    assert_eq!(out.code, Some(1), "{case}: {}", out.all());
    assert!(last.contains("\"level\":\"ERROR\""), "{case}: {last}");
    for e in expected {
        assert!(last.contains(e), "{case}: last line lacks {e:?}: {last}");
    }
    assert!(!out.all().contains("panicked"), "{case}: {}", out.all());
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(
            !out.all().contains(part),
            "{case}: the output holds part of the token"
        );
    }
    eprintln!("{case}: exit 1 after {:?}: {last}", out.elapsed);
}

#[tokio::test]
async fn oauthbearer_token_file_success_expired_malformed_refused() {
    let broker = PrivateBroker::start();
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("token");
    let settings = oauth(&broker, &file);

    // Success, both kinds of connection.
    write_token(&file, &unsecured_jwt("oauth-e2e", 600));
    let started = Instant::now();
    roundtrip(&settings, 40).await;
    eprintln!(
        "success: 40 produced, consumed and committed over OAUTHBEARER in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // The same over SASL_SSL.
    let over_tls = merged(
        settings.clone(),
        vec![
            ("KAFKA_BOOTSTRAP_SERVER", broker.sasl_ssl()),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
            ("KAFKA_SSL_CA_FILE", broker.ca().display().to_string()),
        ],
    );
    roundtrip(&over_tls, 20).await;

    // Expired: refused before it is sent, saying so.
    let expired = unsecured_jwt("oauth-e2e", -120);
    write_token(&file, &expired);
    let out = run_producer(settings.clone(), 4).await;
    assert_refused(
        "expired",
        &out,
        &["OAUTHBEARER token in", "expired", "has not replaced it"],
        &expired,
    );

    // Malformed: not a JWT.
    let malformed = format!("Bearer {}", unsecured_jwt("oauth-e2e", 600));
    write_token(&file, &malformed);
    let out = run_producer(settings.clone(), 4).await;
    assert_refused(
        "malformed",
        &out,
        &["OAUTHBEARER token in", "is malformed", "allowed: a JWT"],
        &malformed,
    );

    // Well-formed and unexpired, but the broker's validator refuses it (no
    // `sub`): the broker's answer, in one line.
    let no_sub = unsecured_jws(&serde_json::json!({
        "exp": now_secs() + 600,
        "jti": unique("jti"),
    }));
    write_token(&file, &no_sub);
    let out = run_producer(settings.clone(), 4).await;
    assert_refused(
        "refused by the broker",
        &out,
        &[
            "authentication failed for the token in",
            "with OAUTHBEARER",
            "SASL_AUTHENTICATION_FAILED",
        ],
        &no_sub,
    );

    rotation(&settings, &file).await;
}

/// The one warning at start a token over SASL_PLAINTEXT gets.
fn in_clear_warning(line: &serde_json::Value) -> bool {
    line["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("SASL OAUTHBEARER over SASL_PLAINTEXT: the token crosses"))
}

/// The consumer binary across a token rotation (see the module's doc).
async fn rotation(settings: &Pairs, file: &std::path::Path) {
    const LIFETIME: i64 = 20;
    let consumer_bin = service_bin("consumer");
    let topic = unique("oauth-rotate");
    let old = unsecured_jwt("oauth-e2e", LIFETIME);
    write_token(file, &old);
    let expires = Instant::now() + Duration::from_secs(LIFETIME as u64);
    let pairs = merged(settings.clone(), producing(&topic, 20, 15));
    produce_with(ConfigSource::from_pairs(borrowed(&pairs)), 20).await;

    let http = free_addr();
    let env = merged(
        merged(
            settings.clone(),
            quick_group(&topic, &unique("g-oauth-rotate")),
        ),
        vec![
            ("HTTP_ADDR", http.to_string()),
            ("DEBUG", "true".to_owned()),
        ],
    );
    let run = Running::start(&consumer_bin, &[], &env);
    let got = consumed_by(http, &topic, 20, expires - Duration::from_secs(8)).await;
    assert_eq!(got, 20, "consumed before the rotation");

    // The sidecar replaces the token while the consumer runs, well before
    // the old one expires.
    let new = unsecured_jwt("oauth-e2e", 600);
    write_token(file, &new);
    tokio::time::sleep(expires.saturating_duration_since(Instant::now()) + Duration::from_secs(3))
        .await;

    // After the old token's expiry: the consumer still fetches, in its group.
    let pairs = merged(settings.clone(), producing(&topic, 20, 15));
    produce_with(ConfigSource::from_pairs(borrowed(&pairs)), 20).await;
    let got = consumed_by(http, &topic, 40, Instant::now() + Duration::from_secs(20)).await;
    run.terminate();
    let out = run.finish(Duration::from_secs(20)).await;
    assert_eq!(
        got,
        40,
        "consumed after the old token expired:\n{}",
        out.all()
    );
    assert_eq!(out.code, Some(0), "{}", out.all());

    let lines = out.lines();
    let loud: Vec<_> = lines
        .iter()
        .filter(|l| l["level"] == "WARN" || l["level"] == "ERROR")
        .filter(|l| !in_clear_warning(l))
        .collect();
    assert!(
        loud.is_empty(),
        "warnings or errors across the rotation: {loud:#?}"
    );
    // Renewed, not merely reconnected after a failure: the coordinator
    // connection authenticated again, and each partition's fetch connection
    // was created again, with no connection invalidated by an error (what
    // rskafka logs, at INFO, when the broker closed one on it).
    let count = |needle: &str| out.all().matches(needle).count();
    for failure in [
        "Invaliding cached leader",
        "Invalidating cached arbitrary broker",
        "request encountered non-fatal error",
    ] {
        assert_eq!(
            count(failure),
            0,
            "a connection failed instead of being renewed ({failure}):\n{}",
            out.all()
        );
    }
    assert!(
        count("SASL authenticated") >= 2,
        "the coordinator connection was not renewed:\n{}",
        out.all()
    );
    assert!(
        count("Creating new partition-specific broker connection") >= 4,
        "the partitions' connections were not renewed (2 partitions):\n{}",
        out.all()
    );
    for token in [&old, &new] {
        for part in token.split('.').filter(|p| p.len() >= 8) {
            assert!(
                !out.all().contains(part),
                "the output holds part of a token"
            );
        }
    }
    eprintln!(
        "rotation: 40 of 40 consumed across a {LIFETIME}s token's expiry, {} SASL authentications",
        count("SASL authenticated")
    );
}
