//! Transactional data (issue 13): the `consumer` binary reads with
//! read_committed semantics, as Kafka's Java consumer does, topics written by
//! Kafka's own Java producer and by librdkafka, against the real broker.
//!
//! Each writer (`tests/fixtures/transactions/`) runs the same script on one
//! topic per compression codec: committed and aborted transactions
//! interleaved with non-transactional records, then a transaction left open
//! with plain records behind it. The consumer must handle every `keep-*`
//! value exactly once and no `drop-*` value, stop at the last stable offset
//! while the transaction is open (committing exactly that offset, and ready:
//! waiting there is no stall), go on once it commits, and end with its
//! committed offsets past the last marker (`kafka_consumergroup_lag` 0).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use testkit::{
    bootstrap,
    broker::{client, create_topic},
    process::{wait_until, Member},
    scrape::metric,
    unique,
};

const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// Values a read_committed consumer handles before the open transaction
/// commits, per topic (the script in the fixtures).
fn committed_before_open() -> Vec<String> {
    let mut out = Vec::new();
    for (label, n) in [
        ("keep-p1", 3),
        ("keep-c1", 5),
        ("keep-p2", 2),
        ("keep-c2a", 20),
        ("keep-p3", 1),
        ("keep-c2b", 20),
        ("keep-c3", 3),
    ] {
        out.extend((0..n).map(|i| format!("{label}-{i}")));
    }
    out
}

/// ... and what the open transaction and the plain records behind it add.
fn released_by_commit() -> Vec<String> {
    let mut out: Vec<String> = (0..4).map(|i| format!("keep-o-{i}")).collect();
    out.extend((0..3).map(|i| format!("keep-late-{i}")));
    out
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/transactions")
}

/// The broker's own classpath (the jars `scripts/kafka-local.sh` resolves).
fn kafka_classpath() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/kafka-local.sh"))
        .arg("tool-jvm-args")
        .output()
        .expect("scripts/kafka-local.sh tool-jvm-args");
    assert!(out.status.success(), "tool-jvm-args failed");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| *l == "-cp")
        .expect("a -cp line from tool-jvm-args");
    lines.next().expect("the classpath").to_owned()
}

/// The Python with confluent-kafka that `.ci/run` installs (the benchmark's venv).
fn rdkafka_python() -> PathBuf {
    let tools = std::env::var("KIND_KAFKA_TOOLS").map_or_else(
        |_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/kind-kafka-rs"),
        PathBuf::from,
    );
    let python = tools.join("bench-venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import confluent_kafka"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import confluent_kafka: run .ci/run (it installs bench/requirements.txt)",
        python.display()
    );
    python
}

/// A running writer: its stdin (a line commits the open transactions) and
/// its stdout lines.
struct Writer {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Writer {
    fn start(name: &'static str, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} writer: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name,
            child,
            stdin,
            lines,
        }
    }

    /// Lines up to and including `last`.
    fn until(&mut self, last: &str, within: Duration) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match self.lines.recv_timeout(within) {
                Ok(l) if l == last => return out,
                Ok(l) => out.push(l),
                Err(e) => panic!(
                    "{} writer: no `{last}` line within {within:?} ({e}); status {:?}; got {out:?}",
                    self.name,
                    self.child.try_wait()
                ),
            }
        }
    }

    /// `open TOPIC OFFSET` lines, once the open transactions are written.
    fn open_offsets(&mut self) -> BTreeMap<String, i64> {
        self.until("open-done", Duration::from_secs(120))
            .iter()
            .filter_map(|l| {
                let mut w = l.strip_prefix("open ")?.split(' ');
                Some((w.next()?.to_owned(), w.next()?.parse().ok()?))
            })
            .collect()
    }

    fn commit(&mut self) {
        let mut stdin = self.stdin.take().expect("stdin");
        writeln!(stdin).expect("tell the writer to commit");
        self.until("committed", Duration::from_secs(60));
        let status = self.child.wait().expect("writer exit");
        assert!(status.success(), "{} writer: {status}", self.name);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// topic → values the member handled, in the order it handled them.
fn handled(member: &Member) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in member.lines() {
        if v["message"] != "record" {
            continue;
        }
        if let (Some(t), Some(value)) = (v["topic"].as_str(), v["value"].as_str()) {
            out.entry(t.to_owned()).or_default().push(value.to_owned());
        }
    }
    out
}

/// Whether every topic's handled values are `want` (as a multiset: any
/// order, each once).
fn all_match(got: &BTreeMap<String, Vec<String>>, topics: &[String], want: &[String]) -> bool {
    let mut want = want.to_vec();
    want.sort();
    topics.iter().all(|t| {
        let mut have = got.get(t).cloned().unwrap_or_default();
        have.sort();
        have == want
    })
}

fn describe(got: &BTreeMap<String, Vec<String>>, topics: &[String]) -> String {
    topics
        .iter()
        .map(|t| {
            let v = got.get(t).map(Vec::as_slice).unwrap_or_default();
            let dropped = v.iter().filter(|x| x.starts_with("drop-")).count();
            format!("{t}: {} handled, {dropped} aborted ones", v.len())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn read_committed_over_java_and_librdkafka_transactions_in_every_codec() {
    let bootstrap = bootstrap();
    let run = unique("txn");
    let topic = |writer: &str, codec: &str| format!("{run}-{writer}-{codec}");
    let java_topics: Vec<String> = CODECS.iter().map(|c| topic("java", c)).collect();
    let rdkafka_topics: Vec<String> = CODECS.iter().map(|c| topic("rdkafka", c)).collect();
    let topics: Vec<String> = java_topics.iter().chain(&rdkafka_topics).cloned().collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for t in &topics {
        rt.block_on(create_topic(t, 1));
    }
    let specs = |ts: &[String]| -> Vec<String> {
        ts.iter()
            .zip(CODECS)
            .map(|(t, c)| format!("{t}:{c}"))
            .collect()
    };

    // The consumer runs while the transactions are written, so its fetches
    // meet transactions in progress, not only a finished log.
    let topic_list = topics.join(",");
    let group = unique("g-txn");
    let member = Member::start(
        CONSUMER,
        &topic_list,
        &group,
        &bootstrap,
        &[
            ("CONSUMER_STALL_SECS", "1"),
            ("CONSUMER_COMMIT_INTERVAL_MS", "200"),
        ],
    );

    let mut java = Command::new("java");
    java.args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .args(["-cp", &kafka_classpath()])
        .arg(fixtures().join("TxnProducer.java"))
        .arg(&bootstrap)
        .args(specs(&java_topics));
    let mut rdkafka = Command::new(rdkafka_python());
    rdkafka
        .arg(fixtures().join("txn_producer.py"))
        .arg(&bootstrap)
        .args(specs(&rdkafka_topics));
    let mut writers = [
        Writer::start("java", java),
        Writer::start("librdkafka", rdkafka),
    ];
    let mut open: BTreeMap<String, i64> = BTreeMap::new();
    for w in &mut writers {
        open.extend(w.open_offsets());
    }
    assert_eq!(
        open.len(),
        topics.len(),
        "an open offset per topic: {open:?}"
    );

    // Everything committed so far, exactly once; nothing aborted; nothing at
    // or behind the open transaction.
    let before = committed_before_open();
    let caught_up = wait_until(Duration::from_secs(90), || {
        all_match(&handled(&member), &topics, &before)
    });
    assert!(
        caught_up,
        "committed records not handled exactly once: {}\n{}",
        describe(&handled(&member), &topics),
        member.log_tail(20)
    );
    // Waiting at the last stable offset: it commits exactly that offset and
    // stays there (a few more fetch rounds and commits), and that is no stall.
    let at_lso = |body: &str| {
        topics.iter().all(|t| {
            metric(
                body,
                "kafka_consumer_committed_offset",
                &[&format!("topic=\"{t}\"")],
            ) == Some(open[t] as f64)
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), || at_lso(&member.metrics())),
        "committed offsets are not the open transactions' first offsets {open:?}:\n{}",
        member.metrics()
    );
    std::thread::sleep(Duration::from_secs(3));
    let body = member.metrics();
    assert!(at_lso(&body), "moved past the last stable offset:\n{body}");
    assert!(
        all_match(&handled(&member), &topics, &before),
        "records behind the open transaction were handled: {}",
        describe(&handled(&member), &topics)
    );
    let (code, readyz) = member.get("/readyz");
    assert_eq!(
        code, 200,
        "waiting at the last stable offset is no stall: {readyz}"
    );

    // The transaction commits: its records and the plain ones behind it come.
    for w in &mut writers {
        w.commit();
    }
    let mut all = before.clone();
    all.extend(released_by_commit());
    assert!(
        wait_until(Duration::from_secs(60), || all_match(
            &handled(&member),
            &topics,
            &all
        )),
        "after the commit: {}",
        describe(&handled(&member), &topics)
    );

    // Committed offsets pass the last markers: lag 0, committed = log end.
    let ends: BTreeMap<String, i64> = topics
        .iter()
        .map(|t| (t.clone(), rt.block_on(log_end(t))))
        .collect();
    let settled = |body: &str| {
        topics.iter().all(|t| {
            let l = format!("topic=\"{t}\"");
            metric(body, "kafka_consumergroup_lag", &[&l]) == Some(0.0)
                && metric(body, "kafka_consumer_committed_offset", &[&l]) == Some(ends[t] as f64)
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), || settled(&member.metrics())),
        "lag not 0 or committed offsets not at the log ends {ends:?}:\n{}",
        member.metrics()
    );
    assert!(
        all_match(&handled(&member), &topics, &all),
        "{}",
        describe(&handled(&member), &topics)
    );
    member.sigterm();
    let mut member = member;
    assert_eq!(member.wait_exit(Duration::from_secs(15)), Some(0));
}

/// The partition's log end offset (past the last marker).
async fn log_end(topic: &str) -> i64 {
    use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
    client()
        .await
        .partition_client(topic, 0, UnknownTopicHandling::Retry)
        .await
        .expect("partition client")
        .get_offset(OffsetAt::Latest)
        .await
        .expect("log end offset")
}
