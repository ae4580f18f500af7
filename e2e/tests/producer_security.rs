//! The `producer` binary against the local broker's TLS and SASL listeners:
//! what a user sees when the password, the CA, the host name or the security
//! protocol is wrong, the explicit opt-out of hostname verification, and that
//! the password is nowhere in what the process prints or serves.
//!
//! The happy paths (every protocol × mechanism, producer and consumer group)
//! are in `consumer_security.rs`, which has both services.

use std::time::Duration;

use testkit::{
    process::{free_addr, service_bin, Finished, Running},
    scrape::{poll_until, Scraper},
    security::*,
    unique,
};

fn base(timeout_secs: u64, http: std::net::SocketAddr) -> Pairs {
    vec![
        ("HTTP_ADDR", http.to_string()),
        ("KAFKA_TOPIC", unique("sec-producer")),
        ("PRODUCER_CREATE_TOPIC", "true".to_owned()),
        ("PRODUCER_MESSAGES", "30".to_owned()),
        ("PRODUCER_TIMEOUT_SECS", timeout_secs.to_string()),
    ]
}

/// Runs the producer to its end with `settings` and a `timeout_secs` deadline.
async fn run_producer(settings: Pairs, timeout_secs: u64) -> Finished {
    let env = merged(base(timeout_secs, free_addr()), settings);
    Running::start(service_bin("producer"), &[], &env)
        .finish(Duration::from_secs(timeout_secs + 15))
        .await
}

/// Exit 1 within the timeout (plus start-up slack), the last line an ERROR
/// carrying `expected`, nothing panicked.
fn assert_failed_with(case: &str, out: &Finished, timeout_secs: u64, expected: &[String]) {
    let last = out.last_line();
    assert_eq!(out.code, Some(1), "{case}: exit code; last line: {last}");
    assert!(
        out.elapsed < Duration::from_secs(timeout_secs + 3),
        "{case}: took {:?} with a {timeout_secs}s timeout",
        out.elapsed
    );
    assert!(last.contains("\"level\":\"ERROR\""), "{case}: {last}");
    for e in expected {
        assert!(
            last.contains(e.as_str()),
            "{case}: last line lacks {e:?}: {last}"
        );
    }
    assert!(
        !out.all().contains("panicked"),
        "{case}: panic: {}",
        out.all()
    );
    eprintln!("{case}: exit 1 after {:?}: {last}", out.elapsed);
}

#[tokio::test]
async fn wrong_password_is_one_clear_line_retried_with_backoff_then_exit_1_after_the_timeout() {
    let password = random_secret();
    let http = free_addr();
    let timeout = 5;
    let mistake = wrong_password(&password);
    let env = merged(base(timeout, http), mistake.settings.clone());
    let run = Running::start(service_bin("producer"), &[], &env);
    let scraper = Scraper::start(http);

    // While it retries: not ready, with the reason.
    let ((status, body), ok) = poll_until(http, "/readyz", Duration::from_secs(4), |s, body| {
        s == 503 && mistake.reported_in(body)
    })
    .await;
    assert!(ok, "/readyz while failing: {status} {body}");
    assert!(body.starts_with("not ready: "), "{body}");

    let out = run.finish(Duration::from_secs(timeout + 15)).await;
    let served = scraper.finish().await;
    assert_failed_with(mistake.case, &out, timeout, &mistake.says);
    // It gave up because the timeout was up, not at the first refusal.
    assert!(
        out.elapsed >= Duration::from_secs(timeout - 1),
        "exited after {:?}, before its {timeout}s timeout",
        out.elapsed
    );
    assert!(
        out.last_line()
            .contains("producer failed: 0 of 30 records acknowledged, 30 not acknowledged"),
        "{}",
        out.last_line()
    );

    // Retries with growing backoff, not a tight loop.
    let retries = retries(&out.lines(), "cannot connect to Kafka; retrying");
    let waits: Vec<u64> = retries.iter().map(|(_, ms)| *ms).collect();
    assert!(
        (3..=12).contains(&retries.len()),
        "{} retries in {timeout}s: {waits:?}",
        retries.len()
    );
    // Jittered within [b/2, b) with b doubling: strictly increasing, except
    // the last, which is cut to the deadline.
    let grown = &waits[..waits.len() - 1];
    assert!(
        grown.windows(2).all(|w| w[0] < w[1]),
        "backoff does not grow: {waits:?}"
    );
    let span = seconds_between(&retries[0].0, &retries[retries.len() - 1].0);
    eprintln!(
        "wrong password: {} retries over {span:.2}s, waits {waits:?} ms",
        retries.len()
    );
    assert_run_kept_secret(&password, &out, &served);
}

#[tokio::test]
async fn certificate_errors_name_the_broker_and_fail_within_the_timeout() {
    let b = broker();
    let dir = tempfile::tempdir().expect("tmp");
    let timeout = 3;
    let mut cases = tls_mistakes(dir.path());
    let unknown_ca = cases[0].clone();
    cases.extend([
        Mistake {
            // A certificate from the broker's dir that is not its CA.
            case: "client certificate as the CA",
            settings: with(
                Security::Ssl.pairs(),
                "KAFKA_SSL_CA_FILE",
                b.client_cert.display().to_string(),
            ),
            says: unknown_ca.says.clone(),
        },
        Mistake {
            // Turning the name check off does not turn the CA check off.
            case: "unknown CA, hostname verification off",
            settings: with(unknown_ca.settings, "KAFKA_SSL_VERIFY_HOSTNAME", "false"),
            says: unknown_ca.says,
        },
    ]);
    let runs = cases.into_iter().map(|mistake| async move {
        let out = run_producer(mistake.settings, timeout).await;
        assert_failed_with(mistake.case, &out, timeout, &mistake.says);
    });
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn security_protocol_mismatch_fails_clearly_within_the_timeout() {
    let b = broker();
    let timeout = 3;
    let mut cases = protocol_mistakes();
    cases.extend([
        Mistake {
            case: "PLAINTEXT to the SASL_PLAINTEXT port",
            settings: with(
                Security::Plaintext.pairs(),
                "KAFKA_BOOTSTRAP_SERVER",
                b.sasl_plaintext.clone(),
            ),
            says: vec![format!(
                "Kafka broker {} requires SASL authentication (it offers ",
                b.sasl_plaintext
            )],
        },
        Mistake {
            case: "SASL_PLAINTEXT to the PLAINTEXT port",
            settings: with(
                Security::SaslPlaintext("SCRAM-SHA-512").pairs(),
                "KAFKA_BOOTSTRAP_SERVER",
                b.plaintext.clone(),
            ),
            says: vec![format!(
                "Kafka broker {} does not expect SASL authentication",
                b.plaintext
            )],
        },
    ]);
    let runs = cases.into_iter().map(|mistake| async move {
        let out = run_producer(mistake.settings, timeout).await;
        assert_failed_with(mistake.case, &out, timeout, &mistake.says);
    });
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn hostname_verification_off_must_be_explicit_and_is_logged_as_a_warning() {
    let warning = HOSTNAME_VERIFICATION_OFF;

    // Default: verified, no warning.
    let out = run_producer(Security::Ssl.pairs(), 20).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(!out.stdout.contains(warning), "{}", out.stdout);

    // Explicitly off: works against a name the certificate does not cover,
    // and says so at start.
    let (settings, bootstrap) = hostname_verification_off();
    let out = run_producer(settings, 20).await;
    assert_eq!(out.code, Some(0), "{bootstrap}: {}", out.all());
    let lines = out.lines();
    let at = lines
        .iter()
        .position(|l| {
            l["level"] == "WARN" && l["message"].as_str().is_some_and(|m| m.contains(warning))
        })
        .unwrap_or_else(|| panic!("no warning: {}", out.stdout));
    let summary = lines
        .iter()
        .position(|l| l["message"] == "summary")
        .expect("summary");
    assert!(
        at < 3 && at < summary,
        "warning is line {at}: {}",
        out.stdout
    );
    eprintln!(
        "verify off ({bootstrap}): {}",
        out.stdout.lines().nth(at).unwrap_or_default()
    );
}

#[tokio::test]
async fn the_password_is_nowhere_in_logs_at_debug_and_trace_errors_metrics_or_help() {
    let b = broker();
    let secret = SecretUser::create("sec-user");
    let (user, password) = (&secret.user, &secret.password);
    let key_pem = std::fs::read_to_string(&b.client_key).expect("client key");
    let key_body: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .collect();

    let mut runs: Vec<(&str, Pairs, Option<i32>)> = secret
        .verbose_runs()
        .into_iter()
        .map(|(case, settings, succeeds)| (case, settings, Some(if succeeds { 0 } else { 1 })))
        .collect();
    runs.push((
        "SSL with a client certificate, RUST_LOG=trace",
        with(Security::SslMutual.pairs(), "RUST_LOG", "trace"),
        Some(0),
    ));
    for (case, settings, code) in runs {
        let http = free_addr();
        let env = merged(
            with(
                base(if code == Some(0) { 30 } else { 3 }, http),
                "PRODUCER_METRICS_GRACE_SECS",
                "1",
            ),
            settings,
        );
        let run = Running::start(service_bin("producer"), &[], &env);
        let scraper = Scraper::start(http);
        let out = run.finish(Duration::from_secs(45)).await;
        let served = scraper.finish().await;
        assert_eq!(out.code, code, "{case}: {}", out.last_line());
        // The logs really were verbose.
        assert_verbose_run_kept_secret(case, &out, &served, password);
        for line in &key_body {
            assert_absent(line, &[("stdout", &out.stdout), ("stderr", &out.stderr)]);
        }
    }

    // --help and a configuration error with the password in the environment.
    assert_password_not_printed(
        &service_bin("producer"),
        &[&["--help"][..], &["--messages", "lots"][..]],
        user,
        password,
    )
    .await;
    let out = Running::start(
        service_bin("producer"),
        &["--help"],
        &[(
            "KAFKA_PASSWORD_FILE",
            secret.password_file.display().to_string(),
        )],
    )
    .finish(Duration::from_secs(10))
    .await;
    assert_absent(password, &[("--help with KAFKA_PASSWORD_FILE", &out.all())]);
}
