//! Both services against the local broker's four listeners.
//!
//! - Every security protocol × mechanism: the producer (in-process) sends N
//!   records and our consumer group (in-process) receives all N and commits
//!   them; rskafka's connections and the group-coordinator connection get
//!   only the secure listener, so both use the settings.
//! - The `consumer` binary with a wrong password: `/readyz` 503 with the
//!   reason, retries with growing backoff, a clean SIGTERM.
//! - Certificate and protocol errors on the consumer's `/readyz`.
//! - Hostname verification off: explicit, warned about at start.
//! - A known password nowhere in the consumer's logs (DEBUG, trace),
//!   errors, `/metrics` or `--help`; `KAFKA_PASSWORD_FILE` end to end.
//!
//! The producer binary's failure cases are in `producer_security.rs`.

use std::time::Duration;

use common::{config::ConfigSource, kafka::KafkaSettings};
use testkit::{
    process::{free_addr, service_bin, Running},
    scrape::{consumed, http_get, poll_until, Scraper},
    security::*,
    services::{
        borrowed, produce_with, quick_group, spawn_consumer_with, ConsumerOutcome, InProcess,
    },
    unique,
};

/// Sends `n` demo records to `topic` (created with 2 partitions) in-process.
async fn produce(settings: &[(&'static str, String)], topic: &str, n: u64) {
    let pairs = merged(
        settings.to_vec(),
        vec![
            ("KAFKA_TOPIC", topic.to_owned()),
            ("PRODUCER_MESSAGES", n.to_string()),
            ("PRODUCER_KEY_TEMPLATE", "key-{seq % 8}".to_owned()),
            ("PRODUCER_CREATE_TOPIC", "true".to_owned()),
            ("PRODUCER_TOPIC_PARTITIONS", "2".to_owned()),
            ("PRODUCER_TIMEOUT_SECS", "30".to_owned()),
        ],
    );
    produce_with(ConfigSource::from_pairs(borrowed(&pairs)), n).await;
}

/// The consumer in-process with exactly `pairs`.
async fn spawn_consumer(pairs: &[(&'static str, String)]) -> InProcess<ConsumerOutcome> {
    spawn_consumer_with(ConfigSource::from_pairs(borrowed(pairs))).await
}

/// Committed offsets of `group` for `topic`'s two partitions, summed, read
/// over the same secure listener with our coordinator client.
async fn committed(settings: &[(&'static str, String)], topic: &str, group: &str) -> i64 {
    let kafka = KafkaSettings::from_source(
        &ConfigSource::from_pairs(borrowed(settings)),
        "security-test-reader",
    )
    .expect("settings");
    testkit::services::committed(&kafka, group, topic, 2)
        .await
        .into_iter()
        .map(|o| o.max(0))
        .sum()
}

/// Producer sends N, a consumer group receives all N and commits them, all
/// over `security` only.
async fn roundtrip(security: Security) {
    let started = std::time::Instant::now();
    let settings = security.pairs();
    let topic = unique(&format!("sec-{}", security.slug()));
    let group = unique(&format!("g-sec-{}", security.slug()));
    let n = 60;
    produce(&settings, &topic, n).await;

    let c = spawn_consumer(&merged(settings.clone(), quick_group(&topic, &group))).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut got = 0;
    while tokio::time::Instant::now() < deadline {
        got = consumed(c.addr, &topic).await;
        if got >= n || c.handle.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, reason) = http_get(c.addr, "/readyz").await;
    assert_eq!(
        got, n,
        "{security:?}: consumed {got} of {n}; /readyz {status} {reason}"
    );
    // Let a periodic commit land, then leave cleanly (final commit).
    c.shutdown.cancel();
    c.handle
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{security:?}: consumer failed: {e}"));
    assert_eq!(
        committed(&settings, &topic, &group).await,
        n as i64,
        "{security:?}: committed offsets"
    );
    eprintln!(
        "{security:?}: {n} produced, {n} consumed and committed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn roundtrip_plaintext() {
    roundtrip(Security::Plaintext).await;
}

#[tokio::test]
async fn roundtrip_ssl_with_ca() {
    roundtrip(Security::Ssl).await;
}

#[tokio::test]
async fn roundtrip_ssl_with_client_certificate() {
    roundtrip(Security::SslMutual).await;
}

#[tokio::test]
async fn roundtrip_sasl_plaintext_plain() {
    roundtrip(Security::SaslPlaintext("PLAIN")).await;
}

#[tokio::test]
async fn roundtrip_sasl_plaintext_scram_sha_256() {
    roundtrip(Security::SaslPlaintext("SCRAM-SHA-256")).await;
}

#[tokio::test]
async fn roundtrip_sasl_plaintext_scram_sha_512() {
    roundtrip(Security::SaslPlaintext("SCRAM-SHA-512")).await;
}

#[tokio::test]
async fn roundtrip_sasl_ssl_plain() {
    roundtrip(Security::SaslSsl("PLAIN")).await;
}

#[tokio::test]
async fn roundtrip_sasl_ssl_scram_sha_256() {
    roundtrip(Security::SaslSsl("SCRAM-SHA-256")).await;
}

#[tokio::test]
async fn roundtrip_sasl_ssl_scram_sha_512() {
    roundtrip(Security::SaslSsl("SCRAM-SHA-512")).await;
}

#[tokio::test]
async fn a_client_certificate_the_broker_does_not_trust_is_refused() {
    // The SSL listener requests a client certificate: ours is really sent,
    // and one from another CA is refused.
    let dir = tempfile::tempdir().expect("tmp");
    let (cert, key) = self_signed(dir.path(), "rogue", "/CN=rogue client");
    let settings = with(
        with(
            Security::SslMutual.pairs(),
            "KAFKA_SSL_CERT_FILE",
            cert.display().to_string(),
        ),
        "KAFKA_SSL_KEY_FILE",
        key.display().to_string(),
    );
    let kafka = KafkaSettings::from_source(&ConfigSource::from_pairs(borrowed(&settings)), "t")
        .expect("settings");
    let e = kafka
        .connect(Duration::from_secs(3))
        .await
        .expect_err("a rogue client certificate is refused")
        .to_string();
    eprintln!("rogue client certificate: {e}");
    assert!(
        e.contains(&broker().ssl) && e.contains("CertificateUnknown"),
        "{e}"
    );
}

#[tokio::test]
async fn consumer_wrong_password_is_not_ready_with_the_reason_and_backs_off() {
    let password = random_secret();
    let http = free_addr();
    let topic = unique("sec-cons-pw");
    let mistake = wrong_password(&password);
    let expected = &mistake.says[0];
    let env = merged(
        merged(
            mistake.settings.clone(),
            quick_group(&topic, &unique("g-sec-pw")),
        ),
        vec![("HTTP_ADDR", http.to_string())],
    );
    let run = Running::start(service_bin("consumer"), &[], &env);
    let scraper = Scraper::start(http);
    let ((status, body), ok) = poll_until(http, "/readyz", Duration::from_secs(5), |s, body| {
        s == 503 && mistake.reported_in(body)
    })
    .await;
    assert!(ok, "/readyz: {status} {body}");
    eprintln!("consumer /readyz: {status} {}", body.trim());
    // Watch it retry for a few seconds, alive all along.
    let watch = Duration::from_secs(6);
    tokio::time::sleep(watch).await;
    assert_eq!(http_get(http, "/healthz").await.0, 200);
    assert_eq!(http_get(http, "/readyz").await.0, 503);
    run.terminate();
    let out = run.finish(Duration::from_secs(10)).await;
    let served = scraper.finish().await;
    assert_eq!(out.code, Some(0), "SIGTERM while retrying: {}", out.all());

    let lines = out.lines();
    let attempts: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["level"] == "WARN"
                && l["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with(expected.as_str()))
        })
        .collect();
    let waits: Vec<u64> = attempts
        .iter()
        .map(|l| l["retry_in_ms"].as_u64().unwrap_or(0))
        .collect();
    let times: Vec<&str> = attempts
        .iter()
        .map(|l| l["timestamp"].as_str().unwrap_or_default())
        .collect();
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| seconds_between(w[0], w[1]))
        .collect();
    eprintln!(
        "consumer wrong password: {} attempts in {:.1}s, backoff {waits:?} ms, gaps {gaps:.2?} s",
        attempts.len(),
        watch.as_secs_f64()
    );
    // A tight loop would make hundreds; 100 ms doubling makes six or seven.
    assert!(
        (3..=12).contains(&attempts.len()),
        "{} attempts: {waits:?}",
        attempts.len()
    );
    assert!(
        waits.windows(2).all(|w| w[0] < w[1]),
        "backoff does not grow: {waits:?}"
    );
    // Each logged backoff b is really waited (at least b/2 with jitter)
    // before the next attempt, however long an attempt itself takes.
    for (gap, wait) in gaps.iter().zip(&waits) {
        assert!(
            *gap >= *wait as f64 / 2000.0,
            "attempts closer than their backoff: gaps {gaps:?} s, backoff {waits:?} ms"
        );
    }
    assert_run_kept_secret(&password, &out, &served);
}

#[tokio::test]
async fn consumer_reports_certificate_and_protocol_errors_on_readyz() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cases = tls_mistakes(dir.path());
    cases.extend(protocol_mistakes());
    let runs = cases.into_iter().map(|mistake| async move {
        let case = mistake.case;
        let topic = unique("sec-cons-err");
        let c = spawn_consumer(&merged(
            mistake.settings.clone(),
            quick_group(&topic, &unique("g-sec-err")),
        ))
        .await;
        let ((status, body), ok) =
            poll_until(c.addr, "/readyz", Duration::from_secs(5), |s, body| {
                s == 503 && mistake.reported_in(body)
            })
            .await;
        assert!(ok, "{case}: /readyz {status} {body}");
        eprintln!("{case}: /readyz {status} {}", body.trim());
        c.shutdown.cancel();
        c.handle
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("{case}: stopping while retrying: {e}"));
    });
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn consumer_warns_at_start_when_hostname_verification_is_off() {
    let topic = unique("sec-cons-noverify");
    produce(&Security::Plaintext.pairs(), &topic, 10).await;
    let (settings, bootstrap) = hostname_verification_off();
    let http = free_addr();
    let env = merged(
        merged(settings, quick_group(&topic, &unique("g-sec-noverify"))),
        vec![("HTTP_ADDR", http.to_string())],
    );
    let run = Running::start(service_bin("consumer"), &[], &env);
    let ((status, body), ok) =
        poll_until(http, "/readyz", Duration::from_secs(30), |s, _| s == 200).await;
    run.terminate();
    let out = run.finish(Duration::from_secs(15)).await;
    assert!(
        ok,
        "{bootstrap}: never ready: {status} {body}\n{}",
        out.stdout
    );
    assert_eq!(out.code, Some(0), "{}", out.all());
    let lines = out.lines();
    let at = lines
        .iter()
        .position(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(HOSTNAME_VERIFICATION_OFF))
        })
        .unwrap_or_else(|| panic!("no warning: {}", out.stdout));
    assert!(at < 3, "the warning is line {at}: {}", out.stdout);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["message"]
                .as_str()
                .is_some_and(|m| m.contains("TLS hostname verification is OFF")))
            .count(),
        1,
        "warned once"
    );
}

#[tokio::test]
async fn consumer_password_is_nowhere_in_logs_errors_metrics_or_help() {
    let secret = SecretUser::create("sec-cons-user");
    let topic = unique("sec-cons-secret");
    let n = 25;
    produce(&Security::Plaintext.pairs(), &topic, n).await;

    let runs = secret.verbose_runs();
    for (case, settings, succeeds) in runs {
        let http = free_addr();
        let env = merged(
            merged(settings, quick_group(&topic, &unique("g-sec-secret"))),
            vec![("HTTP_ADDR", http.to_string())],
        );
        let run = Running::start(service_bin("consumer"), &[], &env);
        let scraper = Scraper::start(http);
        let (got, ok) = if succeeds {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let mut got = 0;
            while tokio::time::Instant::now() < deadline {
                got = consumed(http, &topic).await;
                if got >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (format!("consumed {got} of {n}"), got == n)
        } else {
            let (got, ok) = poll_until(http, "/readyz", Duration::from_secs(5), |s, body| {
                s == 503 && body.contains("authentication failed for user")
            })
            .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            (format!("/readyz {got:?}"), ok)
        };
        run.terminate();
        let out = run.finish(Duration::from_secs(15)).await;
        let served = scraper.finish().await;
        assert!(ok, "{case}: {got}\n{}", out.all());
        assert_eq!(out.code, Some(0), "{case}: {}", out.all());
        assert_verbose_run_kept_secret(case, &out, &served, &secret.password);
    }

    assert_password_not_printed(
        &service_bin("consumer"),
        &[&["--help"][..], &["--group", ""][..]],
        &secret.user,
        &secret.password,
    )
    .await;
}
