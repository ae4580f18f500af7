//! Bad input to the `consumer` binary (issue 8), against the real broker:
//! every configuration key with a wrong value (exit 2, one line naming the
//! key and what is allowed), and odd records — null, binary, 1 MB, malformed
//! JSON where a demo record is expected, odd headers — each logged and
//! counted while consumption goes on.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rskafka::{
    client::partition::{Compression, UnknownTopicHandling},
    record::Record,
};
use testkit::{
    broker::{bootstrap, client, create_topic},
    process::{free_port, Member},
    scrape::sum,
    services::isolate_bootstrap_key,
    unique,
};

const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");

const BAD: &str = "not-a-valid-value-!!";

/// Keys that take any text (or, like the SASL credentials, are unused
/// without SASL): `BAD` is a valid value for them.
const ANY_TEXT: &[&str] = &[
    "KAFKA_CLIENT_ID",
    "KAFKA_USERNAME",
    "KAFKA_PASSWORD",
    "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE", // a path, read for every connection (it may appear later)
    "KAFKA_CONSUMER_GROUP",
    "CONSUMER_GROUP_INSTANCE_ID",
    "RUST_LOG", // a bare word is a target name to the log filter
];

/// What the keys in [`ANY_TEXT`] do reject.
const ANY_TEXT_BAD: &[(&str, &str)] = &[
    ("KAFKA_CLIENT_ID", "has a space"),
    ("KAFKA_CONSUMER_GROUP", "   "),
    ("RUST_LOG", "consumer=loudest"),
];

/// Keys whose empty value is not a usable default (an empty bootstrap list
/// is not "localhost").
const EMPTY_FAILS: &[&str] = &[
    "KAFKA_BOOTSTRAP_SERVER",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_TOPIC",
    "KAFKA_CONSUMER_GROUP",
    "KAFKA_CLIENT_ID",
    "CONSUMER_ASSIGNORS",
    "HTTP_ADDR",
];

fn base_env(bootstrap: &str, topic: &str) -> BTreeMap<String, String> {
    [
        ("KAFKA_BOOTSTRAP_SERVER", bootstrap.to_owned()),
        ("KAFKA_TOPIC", topic.to_owned()),
        ("KAFKA_CONSUMER_GROUP", unique("g-bad")),
        ("HTTP_ADDR", format!("127.0.0.1:{}", free_port())),
        ("LOG_FORMAT", "json".to_owned()),
        ("CONSUMER_SESSION_TIMEOUT_MS", "6000".to_owned()),
        ("CONSUMER_HEARTBEAT_INTERVAL_MS", "500".to_owned()),
        ("CONSUMER_COMMIT_INTERVAL_MS", "500".to_owned()),
        ("CONSUMER_DRAIN_TIMEOUT_MS", "3000".to_owned()),
        ("CONSUMER_FETCH_MAX_WAIT_MS", "100".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn env_for(key: &str, value: &str, bootstrap: &str, topic: &str) -> BTreeMap<String, String> {
    let mut env = base_env(bootstrap, topic);
    isolate_bootstrap_key(&mut env, key);
    // Timeouts checked against each other: keep the others at defaults that
    // fit any single value we try.
    if key.starts_with("CONSUMER_") && key.ends_with("_MS") {
        for k in [
            "CONSUMER_SESSION_TIMEOUT_MS",
            "CONSUMER_HEARTBEAT_INTERVAL_MS",
            "CONSUMER_DRAIN_TIMEOUT_MS",
        ] {
            if k != key {
                env.remove(k);
            }
        }
    }
    env.insert(key.to_owned(), value.to_owned());
    env
}

/// How one run ended.
enum Outcome {
    /// Exited by itself: (code, everything it printed).
    Exited(Option<i32>, String),
    /// Started (logged "starting"), then exited with this code on SIGTERM.
    RanThenStopped(Option<i32>, String),
}

fn run_one(env: &BTreeMap<String, String>) -> Outcome {
    let mut p = Member::with_env(CONSUMER, env);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = p.child.try_wait() {
            return Outcome::Exited(status.code(), p.log_text());
        }
        // A RUST_LOG that filters our lines out leaves only the process.
        let started = p.log_text().contains("\"message\":\"starting\"")
            || deadline - Instant::now() < Duration::from_secs(12);
        if started {
            // Let it connect and join for a moment, then stop it.
            std::thread::sleep(Duration::from_millis(300));
            p.sigterm();
            let code = p.wait_exit(Duration::from_secs(15));
            return Outcome::RanThenStopped(code, p.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "no outcome within 15 s: {}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs every case, a few processes at a time.
fn run_all(cases: Vec<(String, BTreeMap<String, String>)>) -> Vec<(String, Outcome)> {
    let mut results = Vec::new();
    for chunk in cases.chunks(6) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(what, env)| (what.clone(), s.spawn(|| run_one(env))))
                .collect();
            for (what, h) in handles {
                results.push((what, h.join().expect("runner thread")));
            }
        });
    }
    results
}

fn assert_usage_error(key: &str, what: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Exited(code, out) => {
            assert_eq!(*code, Some(2), "{what}: {out}");
            assert_eq!(out.trim().lines().count(), 1, "{what}: one line: {out}");
            assert!(
                out.starts_with("consumer: invalid configuration: "),
                "{what}: {out}"
            );
            assert!(out.contains(key), "{what}: names {key}: {out}");
            assert!(
                out.contains("allowed:")
                    || out.contains("is required")
                    || out.contains("set only one")
                    || out.contains("set both or neither"),
                "{what}: says what would do: {out}"
            );
            assert!(!out.contains("panicked"), "{what}: {out}");
        }
        Outcome::RanThenStopped(_, out) => panic!("{what}: accepted, expected exit 2: {out}"),
    }
}

fn assert_ran(what: &str, outcome: &Outcome) {
    match outcome {
        Outcome::RanThenStopped(code, out) => {
            assert_eq!(*code, Some(0), "{what}: SIGTERM → exit 0: {out}");
            assert!(!out.contains("panicked"), "{what}: {out}");
            let filtered = what.starts_with("RUST_LOG=") && !what.ends_with("=\"\"");
            assert!(
                filtered || out.contains("\"message\":\"stopped cleanly\""),
                "{what}: {out}"
            );
        }
        Outcome::Exited(code, out) => panic!("{what}: exited by itself ({code:?}): {out}"),
    }
}

fn keys() -> Vec<&'static str> {
    let mut keys = consumer::config::all_keys();
    keys.push("KAFKA_PASSWORD_FILE");
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_with_a_wrong_value_exits_2_naming_the_key() {
    let bootstrap = bootstrap();
    let topic = unique("cbad-config");
    create_topic(&topic, 1).await;

    let long_id = "x".repeat(250);
    let mut cases: Vec<(String, BTreeMap<String, String>)> = keys()
        .into_iter()
        .map(|k| (k.to_owned(), env_for(k, BAD, &bootstrap, &topic)))
        .collect();
    let rejected: Vec<(&str, &str)> = ANY_TEXT_BAD
        .iter()
        .copied()
        .chain([("CONSUMER_GROUP_INSTANCE_ID", long_id.as_str())])
        .collect();
    cases.extend(
        rejected
            .iter()
            .map(|(k, v)| (format!("{k} (rejected)"), env_for(k, v, &bootstrap, &topic))),
    );
    let results = tokio::task::spawn_blocking(move || run_all(cases))
        .await
        .expect("runner");
    let mut accepted = 0;
    for (key, outcome) in &results {
        if let Some(key) = key.strip_suffix(" (rejected)") {
            assert_usage_error(key, &format!("{key}: a value it rejects"), outcome);
            continue;
        }
        let what = format!("{key}={BAD:?}");
        if ANY_TEXT.contains(&key.as_str()) {
            assert_ran(&what, outcome);
            accepted += 1;
        } else {
            assert_usage_error(key, &what, outcome);
        }
    }
    assert_eq!(accepted, ANY_TEXT.len(), "ANY_TEXT lists only known keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_set_empty_is_a_default_or_one_clear_line() {
    let bootstrap = bootstrap();
    let topic = unique("cempty-config");
    create_topic(&topic, 1).await;

    let cases = keys()
        .into_iter()
        .map(|k| (k.to_owned(), env_for(k, "", &bootstrap, &topic)))
        .collect();
    let results = tokio::task::spawn_blocking(move || run_all(cases))
        .await
        .expect("runner");
    for (key, outcome) in &results {
        let what = format!("{key}=\"\"");
        if EMPTY_FAILS.contains(&key.as_str()) {
            assert_usage_error(key, &what, outcome);
        } else {
            assert_ran(&what, outcome);
        }
    }
}

/// What each odd record must look like in the consumer's log line.
struct Expect {
    encoding: &'static str,
    truncated: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_records_are_logged_and_counted_and_consumption_goes_on() {
    let bootstrap = bootstrap();
    let topic = unique("odd-records");
    create_topic(&topic, 1).await;
    let run_id = unique("odd-run");
    let now = chrono::Utc::now();
    let demo = |seq| producer::payload::demo_value(&run_id, seq, chrono::Utc::now(), 256);
    let rec =
        |key: Option<&[u8]>, value: Option<Vec<u8>>, headers: BTreeMap<String, Vec<u8>>| Record {
            key: key.map(<[u8]>::to_vec),
            value,
            headers,
            timestamp: now,
        };
    let none = BTreeMap::new;
    let text = |s: &str| Some(s.as_bytes().to_vec());

    let many_headers: BTreeMap<String, Vec<u8>> = (0..1000)
        .map(|i| (format!("h{i:04}"), vec![i as u8; 8]))
        .collect();
    let odd_headers: BTreeMap<String, Vec<u8>> = [
        (String::new(), b"empty name".to_vec()),
        ("binary".to_owned(), vec![0xff, 0x00, 0xfe, 0x80]),
        ("empty value".to_owned(), Vec::new()),
        ("ünïcødé ✓".to_owned(), "välue".as_bytes().to_vec()),
        ("big".to_owned(), vec![b'h'; 64 * 1024]),
        ("traceparent".to_owned(), b"00-garbage-not-a-trace".to_vec()),
    ]
    .into_iter()
    .collect();
    let megabyte: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();

    // (record, what its log line must show); offsets follow this order.
    let first: Vec<(Record, Expect)> = vec![
        (
            rec(Some(b"k0"), Some(demo(0)), none()),
            Expect {
                encoding: "utf8",
                truncated: false,
            },
        ),
        (
            rec(Some(b"k1"), None, none()),
            Expect {
                encoding: "null",
                truncated: false,
            },
        ),
        (
            rec(None, None, none()),
            Expect {
                encoding: "null",
                truncated: false,
            },
        ),
        (
            rec(None, Some(vec![0x00, 0xff, 0xfe, 0x80, 0x01]), none()),
            Expect {
                encoding: "base64",
                truncated: false,
            },
        ),
        (
            rec(Some(&[0xff, 0xfe]), Some(b"caf\xc3".to_vec()), none()),
            Expect {
                encoding: "base64",
                truncated: false,
            },
        ),
        (
            rec(None, text(r#"{"run_id":"r","seq":"#), none()),
            Expect {
                encoding: "utf8",
                truncated: false,
            },
        ),
        (
            rec(
                None,
                text(r#"{"run_id":5,"seq":"x","sent_at":null}"#),
                none(),
            ),
            Expect {
                encoding: "utf8",
                truncated: false,
            },
        ),
        (
            rec(None, text("[1,2,3]"), none()),
            Expect {
                encoding: "utf8",
                truncated: false,
            },
        ),
        (
            rec(
                None,
                text(r#"{"run_id":"odd","seq":18446744073709551615,"sent_at":"not a time"}"#),
                none(),
            ),
            Expect {
                encoding: "utf8",
                truncated: false,
            },
        ),
        (
            rec(None, Some(Vec::new()), none()),
            Expect {
                encoding: "utf8",
                truncated: false,
            },
        ),
        (
            rec(Some(b"h"), text("odd headers"), odd_headers),
            Expect {
                encoding: "utf8",
                truncated: false,
            },
        ),
        (
            rec(Some(b"h"), text("many headers"), many_headers),
            Expect {
                encoding: "utf8",
                truncated: false,
            },
        ),
    ];
    let big = (
        rec(Some(b"big"), Some(megabyte), none()),
        Expect {
            encoding: "base64",
            truncated: true,
        },
    );
    let last = (
        rec(Some(b"k1"), Some(demo(1)), none()),
        Expect {
            encoding: "utf8",
            truncated: false,
        },
    );

    // The consumer first, so it is seen to keep going after each kind.
    let env = base_env(&bootstrap, &topic);
    let mut p = Member::with_env(CONSUMER, &env);

    let client = client().await;
    let pc = client
        .partition_client(topic.as_str(), 0, UnknownTopicHandling::Retry)
        .await
        .expect("partition client");
    let mut expects = Vec::new();
    let len = |r: &Record| r.value.as_ref().map_or(0, Vec::len);
    expects.extend(
        first
            .iter()
            .map(|(r, _)| len(r))
            .zip(first.iter().map(|(_, e)| (e.encoding, e.truncated))),
    );
    let records: Vec<Record> = first.into_iter().map(|(r, _)| r).collect();
    pc.produce(records, Compression::NoCompression)
        .await
        .expect("produce odd records");
    for (r, e) in [big, last] {
        expects.push((len(&r), (e.encoding, e.truncated)));
        pc.produce(vec![r], Compression::NoCompression)
            .await
            .expect("produce");
    }
    let total = expects.len();

    // Every record logged, in order, once.
    let deadline = Instant::now() + Duration::from_secs(45);
    let logged = loop {
        let logged: Vec<serde_json::Value> = p
            .lines()
            .into_iter()
            .filter(|l| l["message"] == "record")
            .collect();
        if logged.len() >= total || Instant::now() > deadline {
            break logged;
        }
        assert!(
            p.child.try_wait().expect("wait").is_none(),
            "consumer exited: {}",
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let offsets: Vec<i64> = logged.iter().filter_map(|l| l["offset"].as_i64()).collect();
    assert_eq!(
        offsets,
        (0..total as i64).collect::<Vec<_>>(),
        "{}",
        p.log_text()
    );
    for (i, (line, (value_len, (encoding, truncated)))) in logged.iter().zip(&expects).enumerate() {
        assert_eq!(line["value_encoding"], *encoding, "offset {i}: {line}");
        assert_eq!(
            line["value_len"].as_u64(),
            Some(*value_len as u64),
            "offset {i}: {line}"
        );
        assert_eq!(line["value_truncated"], *truncated, "offset {i}: {line}");
        // Values are cut at CONSUMER_LOG_VALUE_MAX_BYTES (1024) before encoding.
        assert!(
            line["value"].as_str().is_some_and(|v| v.len() <= 1400),
            "offset {i}"
        );
    }
    // Odd headers: each one shown, binary as base64, big ones cut.
    let headers: BTreeMap<String, String> =
        serde_json::from_str(logged[10]["headers"].as_str().expect("headers"))
            .expect("headers JSON");
    assert_eq!(headers.get("").map(String::as_str), Some("empty name"));
    assert_eq!(headers.get("binary").map(String::as_str), Some("/wD+gA=="));
    assert_eq!(headers.get("empty value").map(String::as_str), Some(""));
    assert_eq!(headers.get("ünïcødé ✓").map(String::as_str), Some("välue"));
    assert!(
        headers.get("big").is_some_and(|v| v.len() == 256),
        "{headers:?}"
    );
    let many: BTreeMap<String, String> =
        serde_json::from_str(logged[11]["headers"].as_str().expect("headers"))
            .expect("headers JSON");
    assert_eq!(many.len(), 1000);

    // Counted: every record, the two real demo records plus the absurd one.
    let wait_metrics = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = p.metrics();
        if sum(&body, "kafka_consumer_records_consumed_total", &[&topic]) >= total as f64
            || Instant::now() > wait_metrics
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let t = format!("topic=\"{topic}\"");
    assert_eq!(
        sum(&body, "kafka_consumer_records_consumed_total", &[&t]),
        total as f64,
        "{body}"
    );
    assert_eq!(
        sum(&body, "kafka_consumer_demo_records_total", &[&t]),
        3.0,
        "{body}"
    );
    assert_eq!(
        sum(&body, "kafka_consumer_demo_duplicates_total", &[&t]),
        0.0,
        "{body}"
    );
    // No record was an error. A group retry (kind="group": a coordinator
    // still loading right after a broker start answers the first
    // heartbeats so) is not about the records and is left out.
    assert_eq!(
        sum(&body, "kafka_consumer_errors_total", &[])
            - sum(&body, "kafka_consumer_errors_total", &["kind=\"group\""]),
        0.0,
        "{body}"
    );
    assert!(
        sum(&body, "kafka_consumer_bytes_consumed_total", &[&t]) > 1_000_000.0,
        "{body}"
    );

    let log = p.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("\"level\":\"ERROR\""), "{log}");

    // Still a healthy member: a clean stop.
    p.sigterm();
    assert_eq!(
        p.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        p.log_text()
    );
}

/// A record whose header *name* is not UTF-8 (librdkafka, Go and kcat can
/// write one; Java cannot). Upstream rskafka 0.6 failed the whole fetch on
/// it, so the partition stopped there for good; our patched copy
/// (`vendor/rskafka/PATCHES.md`) decodes the name lossily, so the record is
/// logged with U+FFFD in place of the bad bytes and the partition goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_utf8_header_name_does_not_stop_the_partition() {
    let bootstrap = bootstrap();
    let topic = unique("poison-header");
    create_topic(&topic, 1).await;
    for (value, poison) in [("before", false), ("poison", true), ("after", false)] {
        let mut cmd = Command::new("kcat");
        cmd.args(["-P", "-b", &bootstrap, "-t", &topic, "-p", "0"]);
        if poison {
            // kcat passes the bytes through: 0xff 0xfe are not UTF-8.
            use std::os::unix::ffi::OsStrExt;
            cmd.arg("-H")
                .arg(std::ffi::OsStr::from_bytes(b"\xff\xfebad=v"));
        }
        let mut child = cmd.stdin(Stdio::piped()).spawn().expect("kcat");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), value.as_bytes())
            .expect("write");
        drop(child.stdin.take());
        assert!(child.wait().expect("kcat").success());
    }
    let p = Member::with_env(CONSUMER, &base_env(&bootstrap, &topic));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut offsets = Vec::new();
    while Instant::now() < deadline {
        offsets = p
            .lines()
            .into_iter()
            .filter(|l| l["message"] == "record")
            .filter_map(|l| l["offset"].as_i64())
            .collect();
        if offsets.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(offsets, vec![0, 1, 2], "{}", p.log_text());
    let poison = p
        .lines()
        .into_iter()
        .find(|l| l["message"] == "record" && l["offset"] == 1)
        .expect("offset 1 logged");
    assert_eq!(poison["value"], "poison");
    let headers: serde_json::Value =
        serde_json::from_str(poison["headers"].as_str().expect("headers")).expect("headers JSON");
    assert_eq!(headers["\u{fffd}\u{fffd}bad"], "v", "{poison}");
}
