//! The `producer` binary: exit codes and the lines a user sees.

use std::{
    process::Command,
    time::{Duration, Instant},
};

fn producer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_producer"));
    c.env_clear()
        .env("LOG_FORMAT", "json")
        .env("HTTP_ADDR", "127.0.0.1:0");
    c
}

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_key() {
    for (key, value, allowed) in [
        ("PRODUCER_MESSAGES", "-3", "whole number"),
        (
            "KAFKA_SECURITY_PROTOCOL",
            "TLS",
            "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        ),
        (
            "KAFKA_SASL_MECHANISM",
            "KERBEROS",
            "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        ),
        ("KAFKA_BOOTSTRAP_SERVER", "no-port", "host:port"),
        ("PRODUCER_TIMEOUT_SECS", "soon", "whole number"),
        ("HTTP_ADDR", "everywhere", "IP:PORT"),
        ("DEBUG", "sometimes", "true, false"),
    ] {
        let out = producer().env(key, value).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}={value}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(key) && stderr.contains(allowed), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn bad_flag_values_exit_2_too() {
    let out = producer()
        .args(["--messages", "many"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PRODUCER_MESSAGES") && stderr.contains("flag --messages"),
        "{stderr}"
    );
    let out = producer().args(["--no-such-flag"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn password_never_appears_in_errors() {
    let out = producer()
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
        .env("KAFKA_PASSWORD", "sup3r-s3cret")
        .output()
        .expect("run");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("KAFKA_USERNAME is required"), "{all}");
    assert!(!all.contains("sup3r-s3cret"), "{all}");
}

#[test]
fn help_lists_options_and_env_vars() {
    let out = producer().arg("--help").output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for s in [
        "--messages",
        "PRODUCER_MESSAGES",
        "--create-topic",
        "--timeout",
        "healthcheck",
        "KAFKA_BOOTSTRAP_SERVER",
    ] {
        assert!(help.contains(s), "--help lacks {s}");
    }
}

#[test]
fn unreachable_broker_exits_1_within_the_timeout() {
    // Port 1 on loopback: nothing listens, connections are refused at once.
    let started = Instant::now();
    let out = producer()
        .env("KAFKA_BOOTSTRAP_SERVER", "127.0.0.1:1")
        .env("PRODUCER_TIMEOUT_SECS", "3")
        .output()
        .expect("run");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    let last = stdout.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains("cannot connect to Kafka at 127.0.0.1:1"),
        "last line: {last}"
    );
    assert!(last.contains("\"level\":\"ERROR\""), "{last}");
    assert!(!stdout.contains("panicked"));
}

#[test]
fn bad_input_lines_are_reported_with_line_numbers_and_nothing_is_sent() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, "{\"ok\":1}\n{broken\n{\"ok\":2}\n").expect("write");
    let out = producer()
        .env("KAFKA_BOOTSTRAP_SERVER", testkit::bootstrap())
        .env("KAFKA_TOPIC", testkit::unique("never-created"))
        .args(["--input", path.to_str().expect("utf8")])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("line 2: not JSON") && stdout.contains("nothing sent"),
        "{stdout}"
    );
}

#[test]
fn healthcheck_subcommand_fails_cleanly_when_nothing_listens() {
    let out = producer()
        .args(["healthcheck", "--addr", "127.0.0.1:1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("healthcheck"));
}
