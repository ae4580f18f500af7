//! Bad input to the `producer` binary (issue 8): every configuration key with
//! a wrong value, a wrong type in the TOML file, and bad `--input` lines. A
//! clear error (exit 2, one line naming the key and what is allowed), never
//! a crash. Against the real broker: keys that accept the value really run.
//!
//! `producer/tests/cli.rs` covers a few hand-picked keys, flags, secrets and
//! the first bad-input case; this file covers every key.

use std::{
    collections::BTreeMap,
    process::{Command, Output},
};

use testkit::{
    broker::{bootstrap, create_topic, read_all},
    services::isolate_bootstrap_key,
    unique,
};

/// A value no typed key accepts: not a number, boolean, choice, address,
/// file, topic name or host:port.
const BAD: &str = "not-a-valid-value-!!";

/// Keys that take any text, so `BAD` is a valid value for them (or, for
/// keys that only matter with another setting, ignored).
const ANY_TEXT: &[&str] = &[
    "KAFKA_CLIENT_ID",                   // printable ASCII without spaces
    "KAFKA_USERNAME",                    // only used with SASL
    "KAFKA_PASSWORD",                    // only used with SASL
    "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE", // a path, read for every connection (it may appear later)
    "KAFKA_CONSUMER_GROUP",              // the consumer's key; the producer ignores it
    "PRODUCER_KEY_TEMPLATE",             // text without placeholders
    "PRODUCER_KEY_FIELD",                // any field name
    "PRODUCER_RUN_ID",                   // up to 128 printable characters
    "RUST_LOG",                          // a bare word is a target name to the log filter
];

/// What the keys in [`ANY_TEXT`] do reject.
const ANY_TEXT_BAD: &[(&str, &str)] = &[
    ("KAFKA_CLIENT_ID", "has a space"),
    ("PRODUCER_KEY_TEMPLATE", "key-{seq % 0}"),
    ("PRODUCER_RUN_ID", "say \"hi\""),
    ("RUST_LOG", "producer=loudest"),
];

fn producer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_producer"));
    c.env_clear()
        .env("LOG_FORMAT", "json")
        .env("HTTP_ADDR", "127.0.0.1:0");
    c
}

/// Everything the process printed.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The environment of one run: a working configuration (one record to a
/// real topic) with `key` set to `value`, plus what `key` needs to be read
/// at all.
fn env_for(key: &str, value: &str, bootstrap: &str, topic: &str) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("KAFKA_BOOTSTRAP_SERVER", bootstrap),
        ("KAFKA_TOPIC", topic),
        ("PRODUCER_MESSAGES", "1"),
        ("PRODUCER_TIMEOUT_SECS", "20"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    isolate_bootstrap_key(&mut env, key);
    // Only read when the topic is to be created.
    if matches!(
        key,
        "PRODUCER_TOPIC_PARTITIONS" | "PRODUCER_TOPIC_REPLICATION"
    ) {
        env.insert("PRODUCER_CREATE_TOPIC".to_owned(), "true".to_owned());
    }
    env.insert(key.to_owned(), value.to_owned());
    env
}

fn run(env: &BTreeMap<String, String>) -> Output {
    producer().envs(env).output().expect("run producer")
}

/// Exit 2 with exactly one line on stderr that names `key` and says what is
/// allowed; nothing on stdout (nothing was started).
fn assert_usage_error(out: &Output, key: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = text(out);
    assert_eq!(out.status.code(), Some(2), "{what}: {all}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "{what}: one line: {stderr}"
    );
    assert!(
        stderr.starts_with("producer: invalid configuration: "),
        "{what}: {stderr}"
    );
    assert!(
        stderr.contains(key),
        "{what}: the line names {key}: {stderr}"
    );
    assert!(
        stderr.contains("allowed:")
            || stderr.contains("is required")
            || stderr.contains("set only one")
            || stderr.contains("set both or neither"),
        "{what}: the line says what would do: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{what}: nothing logged: {all}");
    assert!(!all.contains("panicked"), "{what}: {all}");
}

/// Exit 0 after sending the one record (the summary line is missing only
/// when `RUST_LOG` filters it out).
fn assert_ran(out: &Output, what: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(0), "{what}: {all}");
    let filtered = what.starts_with("RUST_LOG=") && !what.ends_with("=\"\"");
    assert!(
        filtered || all.contains("\"message\":\"summary\""),
        "{what}: {all}"
    );
    assert!(!all.contains("panicked"), "{what}: {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_with_a_wrong_value_exits_2_naming_the_key() {
    let bootstrap = bootstrap();
    let topic = unique("bad-config");
    create_topic(&topic, 1).await;

    let mut keys = producer::config::all_keys();
    keys.push("KAFKA_PASSWORD_FILE");
    let mut accepted = Vec::new();
    for key in keys {
        let out = run(&env_for(key, BAD, &bootstrap, &topic));
        let what = format!("{key}={BAD:?}");
        if ANY_TEXT.contains(&key) {
            assert_ran(&out, &what);
            accepted.push(key);
        } else {
            assert_usage_error(&out, key, &what);
        }
    }
    assert_eq!(
        accepted.len(),
        ANY_TEXT.len(),
        "ANY_TEXT lists only known keys"
    );

    for (key, value) in ANY_TEXT_BAD {
        let out = run(&env_for(key, value, &bootstrap, &topic));
        assert_usage_error(&out, key, &format!("{key}={value:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_set_empty_is_a_default_or_one_clear_line() {
    let bootstrap = bootstrap();
    let topic = unique("empty-config");
    create_topic(&topic, 1).await;

    // Empty means "unset" for every optional key; these have no usable
    // empty value (an empty bootstrap list is not "localhost").
    let must_fail = [
        "KAFKA_BOOTSTRAP_SERVER",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_TOPIC",
        "KAFKA_CLIENT_ID",
        "HTTP_ADDR",
    ];
    let mut keys = producer::config::all_keys();
    keys.push("KAFKA_PASSWORD_FILE");
    for key in keys {
        let out = run(&env_for(key, "", &bootstrap, &topic));
        let what = format!("{key}=\"\"");
        if must_fail.contains(&key) {
            assert_usage_error(&out, key, &what);
        } else {
            assert_ran(&out, &what);
        }
    }
}

#[test]
fn wrong_types_in_the_config_file_name_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("producer.toml");
    for key in producer::config::all_keys() {
        let lower = key.to_ascii_lowercase();
        for (value, what) in [
            ("{ nested = 1 }", "a table"),
            ("1979-05-27T07:32:00Z", "a date"),
        ] {
            std::fs::write(&file, format!("{lower} = {value}\n")).expect("write");
            let out = producer()
                .env("CONFIG_FILE", &file)
                .output()
                .expect("run producer");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!("{lower} = {what} in the file");
            assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
            assert_eq!(stderr.trim().lines().count(), 1, "{what}: {stderr}");
            assert!(
                stderr.contains(key) || stderr.contains(&lower),
                "{what}: the line names the key: {stderr}"
            );
            assert!(!text(&out).contains("panicked"), "{what}");
        }
    }
}

#[test]
fn an_unknown_key_in_the_config_file_is_named_with_the_known_ones() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("producer.toml");
    std::fs::write(&file, "kafka_topik = \"orders\"\n").expect("write");
    let out = producer()
        .env("CONFIG_FILE", &file)
        .output()
        .expect("run producer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("kafka_topik") && stderr.contains("kafka_topic"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_lines_are_all_reported_and_nothing_is_sent() {
    let bootstrap = bootstrap();
    // The topic exists, so "nothing sent" is checked, not assumed.
    let topic = unique("bad-lines");
    create_topic(&topic, 1).await;

    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("input.jsonl");
    let mut lines: Vec<Vec<u8>> = vec![
        br#"{"id":1,"k":"a"}"#.to_vec(),          // 1 ok
        b"not json".to_vec(),                     // 2
        b"".to_vec(),                             // 3 blank: skipped
        vec![0xff, 0xfe, b'{', b'}'],             // 4 not UTF-8
        br#"{"id":2,"k":{"x":1}}"#.to_vec(),      // 5 key field is an object
        br#"{"id":3,"k":7}"#.to_vec(),            // 6 ok: numeric key
        b"   \t ".to_vec(),                       // 7 blank
        br#"{"id":4,"k":"b"} trailing"#.to_vec(), // 8
        b"\"just a string\"".to_vec(),            // 9 ok: any JSON value
    ];
    // Twelve more bad lines: only the first ten are listed, all are counted.
    lines.extend((0..12).map(|i| format!("{{broken {i}").into_bytes()));
    let mut file = lines.join(&b'\n');
    file.push(b'\n');
    std::fs::write(&path, file).expect("write");

    let out = producer()
        .env("KAFKA_BOOTSTRAP_SERVER", &bootstrap)
        .env("KAFKA_TOPIC", &topic)
        .args(["--input", path.to_str().expect("utf8"), "--key-field", "k"])
        .output()
        .expect("run producer");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    let last = String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    for expected in [
        "16 invalid line(s), nothing sent",
        "line 2: not JSON",
        "line 4: not UTF-8",
        "line 5: key field `k` is not a string or number",
        "line 8: not JSON",
        "line 10: not JSON",
        "line 15: not JSON",
    ] {
        assert!(last.contains(expected), "{expected:?} in {last}");
    }
    for not_listed in [
        "line 1:", "line 3:", "line 6:", "line 7:", "line 9:", "line 16:",
    ] {
        assert!(!last.contains(not_listed), "{not_listed:?} in {last}");
    }
    // Not a single record reached the topic.
    let records = read_all(&topic).await;
    assert_eq!(records.values().map(Vec::len).sum::<usize>(), 0);
}

#[test]
fn an_input_of_blank_lines_only_is_an_error_too() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("blank.jsonl");
    std::fs::write(&path, "\n  \n\t\n").expect("write");
    let out = producer()
        .env("KAFKA_BOOTSTRAP_SERVER", bootstrap())
        .args(["--input", path.to_str().expect("utf8")])
        .output()
        .expect("run producer");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("holds no records"), "{all}");
}
