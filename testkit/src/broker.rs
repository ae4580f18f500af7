//! The real broker: the shared local one (`scripts/kafka-local.sh start`,
//! which `make test` runs) and private ones a test may stop. A broker that
//! is not there fails the test with what to do; no test skips.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicBool, AtomicU16, Ordering},
    time::Duration,
};

use common::kafka::KafkaSettings;
use rskafka::{
    client::{
        partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling},
        Client,
    },
    record::RecordAndOffset,
};

/// The repository root (scripts live there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shared broker's PLAINTEXT address (`KAFKA_TEST_BOOTSTRAP`, default
/// `127.0.0.1:19092`). Panics, naming the fix, when nothing listens there.
pub fn bootstrap() -> String {
    let addr =
        std::env::var("KAFKA_TEST_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".to_owned());
    let sock: SocketAddr = addr.parse().expect("KAFKA_TEST_BOOTSTRAP must be IP:PORT");
    if std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)).is_err() {
        panic!(
            "no Kafka broker at {addr}: integration tests need the real broker; \
             start it with `scripts/kafka-local.sh start` (make test does this)"
        );
    }
    addr
}

/// A connected rskafka client for checks, on `bootstrap` (one `host:port`
/// or several, comma-separated).
pub async fn client_at(bootstrap: &str) -> Client {
    let mut settings = KafkaSettings::plaintext(bootstrap, "workspace-tests");
    settings.bootstrap = bootstrap.split(',').map(str::to_owned).collect();
    settings
        .connect(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("connect to the test broker at {bootstrap}: {e}"))
}

/// A connected rskafka client on the shared broker.
pub async fn client() -> Client {
    client_at(&bootstrap()).await
}

/// Creates `topic` with `partitions` partitions on the shared broker and
/// waits until it is visible.
pub async fn create_topic(topic: &str, partitions: i32) {
    create_topic_at(&bootstrap(), topic, partitions).await;
}

/// Creates `topic` with `partitions` partitions on `bootstrap` and waits
/// until every partition is visible.
pub async fn create_topic_at(bootstrap: &str, topic: &str, partitions: i32) {
    let c = client_at(bootstrap).await;
    c.controller_client()
        .expect("controller")
        .create_topic(topic, partitions, 1, 10_000)
        .await
        .unwrap_or_else(|e| panic!("create topic {topic}: {e}"));
    for _ in 0..100 {
        if partition_ids(&c, topic).await.len() == partitions as usize {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("topic {topic} did not appear");
}

/// The partition ids of `topic` (empty while it does not exist).
async fn partition_ids(c: &Client, topic: &str) -> BTreeSet<i32> {
    c.list_topics()
        .await
        .expect("list topics")
        .into_iter()
        .find(|t| t.name == topic)
        .map(|t| t.partitions)
        .unwrap_or_default()
}

/// Each partition of an existing `topic`, with its client.
async fn partitions(c: &Client, topic: &str) -> Vec<(i32, PartitionClient)> {
    let ids = partition_ids(c, topic).await;
    assert!(!ids.is_empty(), "topic {topic} does not exist");
    let mut out = Vec::new();
    for p in ids {
        let pc = c
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .expect("partition client");
        out.push((p, pc));
    }
    out
}

/// Every record of every partition of `topic` on the shared broker, read
/// directly with rskafka (not through our consumer), by partition.
pub async fn read_all(topic: &str) -> BTreeMap<i32, Vec<RecordAndOffset>> {
    let c = client().await;
    let mut out = BTreeMap::new();
    for (p, pc) in partitions(&c, topic).await {
        let high = pc
            .get_offset(OffsetAt::Latest)
            .await
            .expect("high watermark");
        let mut offset = pc
            .get_offset(OffsetAt::Earliest)
            .await
            .expect("low watermark");
        let mut records = Vec::new();
        while offset < high {
            let (batch, _) = pc
                .fetch_records(offset, 1..10_000_000, 1_000)
                .await
                .expect("fetch");
            for r in batch {
                if r.offset >= offset {
                    offset = r.offset + 1;
                    records.push(r);
                }
            }
        }
        out.insert(p, records);
    }
    out
}

/// Writes canary records of run `run_id` with sequence numbers `pseqs`,
/// in that order, to `partition` of `topic` on the shared broker, one
/// produce request each (what `producer --continuous` writes, with
/// whatever gaps and repeats a test needs).
pub async fn produce_canary(topic: &str, partition: i32, run_id: &str, pseqs: &[u64]) {
    let c = client().await;
    let pc = c
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .expect("partition client");
    let start = chrono::Utc::now();
    for &pseq in pseqs {
        let now = chrono::Utc::now();
        let value =
            producer::canary::canary_value(run_id, pseq, start.timestamp_millis(), now, 128);
        let record = rskafka::record::Record {
            key: None,
            value: Some(value),
            headers: BTreeMap::new(),
            timestamp: now,
        };
        pc.produce(vec![record], Compression::NoCompression)
            .await
            .expect("produce a canary record");
    }
}

/// (partition, offset) of every record in `topic` at `bootstrap`, from the
/// partitions' watermarks.
pub async fn offsets_in_log(bootstrap: &str, topic: &str) -> BTreeSet<(i64, i64)> {
    let c = client_at(bootstrap).await;
    let mut out = BTreeSet::new();
    for (p, pc) in partitions(&c, topic).await {
        let lo = pc
            .get_offset(OffsetAt::Earliest)
            .await
            .expect("low watermark");
        let hi = pc
            .get_offset(OffsetAt::Latest)
            .await
            .expect("high watermark");
        out.extend((lo..hi).map(|o| (i64::from(p), o)));
    }
    out
}

/// Runs Kafka's own command-line tool `args` (`scripts/kafka-tool.sh`);
/// returns its stdout.
pub fn kafka_tool(args: &[&str]) -> String {
    let out = Command::new(repo_root().join("scripts/kafka-tool.sh"))
        .args(args)
        .output()
        .expect("kafka-tool.sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes `topic` on the shared broker (Kafka's own tool), so a test leaves
/// no topic behind.
pub fn delete_topic(topic: &str) {
    kafka_tool(&[
        "topics",
        "--bootstrap-server",
        &bootstrap(),
        "--delete",
        "--topic",
        topic,
    ]);
}

/// `kafka-consumer-groups --describe --members` of `group`: one row per
/// member, its column 5 the number of partitions it holds.
pub fn describe_members(bootstrap: &str, group: &str) -> String {
    kafka_tool(&[
        "consumer-groups",
        "--bootstrap-server",
        bootstrap,
        "--describe",
        "--group",
        group,
        "--members",
    ])
}

/// Whether [`describe_members`]' answer lists `n` members of `group`,
/// each holding `each` partitions.
pub fn members_hold(described: &str, group: &str, n: usize, each: usize) -> bool {
    let each = each.to_string();
    let rows: Vec<&str> = described.lines().filter(|l| l.starts_with(group)).collect();
    rows.len() == n
        && rows
            .iter()
            .all(|r| r.split_whitespace().nth(4) == Some(each.as_str()))
}

/// Kafka's own Java consumer (`kafka-console-consumer`, classic protocol)
/// as a member of `group` with the assignor class `assignor`, printing
/// partition and offset of each record to a file. Killed on drop.
#[derive(Debug)]
pub struct JavaConsumer {
    child: std::process::Child,
    out: tempfile::NamedTempFile,
}

impl JavaConsumer {
    /// Starts it from the earliest offset (when the group has none), with
    /// `extra` consumer properties (`key=value`).
    pub fn start(
        bootstrap: &str,
        topic: &str,
        group: &str,
        assignor: &str,
        extra: &[&str],
    ) -> Self {
        let strategy =
            format!("partition.assignment.strategy=org.apache.kafka.clients.consumer.{assignor}");
        let mut properties = vec!["group.protocol=classic", strategy.as_str()];
        properties.extend(extra);
        Self::spawn(bootstrap, topic, group, &properties)
    }

    /// The same with KIP-848's consumer protocol (`group.protocol=consumer`;
    /// the broker assigns, so no assignor class).
    pub fn start_consumer_protocol(bootstrap: &str, topic: &str, group: &str) -> Self {
        Self::spawn(bootstrap, topic, group, &["group.protocol=consumer"])
    }

    fn spawn(bootstrap: &str, topic: &str, group: &str, properties: &[&str]) -> Self {
        let out = tempfile::NamedTempFile::new().expect("tmp");
        let mut args = vec![
            "console-consumer",
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--consumer-property",
            "auto.offset.reset=earliest",
            "--property",
            "print.partition=true",
            "--property",
            "print.offset=true",
        ];
        for property in properties {
            args.extend(["--consumer-property", property]);
        }
        let child = Command::new(repo_root().join("scripts/kafka-tool.sh"))
            .args(&args)
            .stdout(out.reopen().expect("reopen"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("java console consumer");
        Self { child, out }
    }

    /// (partition, offset) of every record it printed so far.
    pub fn records(&self) -> Vec<(i64, i64)> {
        std::fs::read_to_string(self.out.path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut fields = l.split('\t');
                let p = fields.next()?.strip_prefix("Partition:")?.parse().ok()?;
                let o = fields.next()?.strip_prefix("Offset:")?.parse().ok()?;
                Some((p, o))
            })
            .collect()
    }
}

impl Drop for JavaConsumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A topic of demo records as Kafka's own console consumer reads it back.
#[derive(Debug, Default)]
pub struct ReadBack {
    /// Records read.
    pub records: usize,
    /// Demo `seq` (or canary `pseq`, unique on a one-partition topic) →
    /// how often it was read.
    pub seqs: BTreeMap<u64, usize>,
    /// Partitions where a `seq` follows a larger one (in offset order).
    pub out_of_order: BTreeSet<i32>,
}

impl ReadBack {
    /// Records read more than once.
    pub fn duplicates(&self) -> usize {
        self.seqs.values().map(|n| n - 1).sum()
    }

    /// Demo records `0..n` not read.
    pub fn lost(&self, n: u64) -> usize {
        (0..n).filter(|s| !self.seqs.contains_key(s)).count()
    }
}

/// Reads every record of `topic` at `bootstrap` with Kafka's console
/// consumer (`scripts/kafka-tool.sh console-consumer`, from the beginning,
/// as many as the partitions' offsets hold, within 60 s) and counts the
/// demo records' `seq`s (canary records': `pseq`s).
pub async fn console_read_back(bootstrap: &str, topic: &str) -> ReadBack {
    let in_log = offsets_in_log(bootstrap, topic).await.len().to_string();
    let out = tokio::process::Command::new(repo_root().join("scripts/kafka-tool.sh"))
        .args([
            "console-consumer",
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            &in_log,
            "--timeout-ms",
            "60000",
            "--formatter-property",
            "print.partition=true",
        ])
        .output()
        .await
        .expect("kafka-tool.sh console-consumer");
    let mut back = ReadBack::default();
    let mut last: BTreeMap<i32, u64> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((partition, value)) = line
            .strip_prefix("Partition:")
            .and_then(|l| l.split_once('\t'))
        else {
            continue;
        };
        back.records += 1;
        let partition: i32 = partition.parse().expect("partition number");
        let Some(seq) = serde_json::from_str::<serde_json::Value>(value)
            .ok()
            .and_then(|v| v["seq"].as_u64().or_else(|| v["pseq"].as_u64()))
        else {
            continue;
        };
        *back.seqs.entry(seq).or_default() += 1;
        if last
            .insert(partition, seq)
            .is_some_and(|before| before > seq)
        {
            back.out_of_order.insert(partition);
        }
    }
    back
}

/// A broker of its own (other ports and state dir), so stopping it does not
/// disturb the other tests. Stopped, and its data removed, on drop.
#[derive(Debug)]
pub struct PrivateBroker {
    env: Vec<(String, String)>,
    plaintext_port: u16,
    frozen: AtomicBool,
}

impl PrivateBroker {
    /// Starts one; panics with the script's output when it cannot.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts one with `scripts/kafka-local.sh` settings `extra` (e.g.
    /// `KAFKA_LOCAL_AUTHORIZER=1`), kept for its restarts.
    pub fn start_with(extra: &[(&str, &str)]) -> Self {
        // Unique per instance: tests of one binary run in parallel.
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Below the kernel's ephemeral range (32768 and up): a stopped broker
        // must get its ports back on restart, and an outgoing connection of
        // another test could otherwise take one as its local port meanwhile
        // (seen: "Address already in use" on restart).
        let base = 20000 + ((std::process::id() % 400) as u16 * 30 + n * 5) % 12000;
        let dir = std::env::temp_dir().join(format!("kafka-private-{}-{n}", std::process::id()));
        let port = |i: u16| (base + i).to_string();
        let env: Vec<(String, String)> = vec![
            ("KAFKA_LOCAL_DIR".to_owned(), dir.display().to_string()),
            ("KAFKA_LOCAL_PLAINTEXT_PORT".to_owned(), port(0)),
            ("KAFKA_LOCAL_SASL_PLAINTEXT_PORT".to_owned(), port(1)),
            ("KAFKA_LOCAL_SSL_PORT".to_owned(), port(2)),
            ("KAFKA_LOCAL_SASL_SSL_PORT".to_owned(), port(3)),
            ("KAFKA_LOCAL_CONTROLLER_PORT".to_owned(), port(4)),
        ]
        .into_iter()
        .chain(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
        .collect();
        let b = Self {
            env,
            plaintext_port: base,
            frozen: AtomicBool::new(false),
        };
        b.start_again();
        b
    }

    /// Its state directory (`KAFKA_LOCAL_DIR`).
    pub fn state_dir(&self) -> String {
        self.env[0].1.clone()
    }

    /// Its PLAINTEXT address.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.plaintext_port)
    }

    /// Its SASL_PLAINTEXT address (users as on the shared broker).
    pub fn sasl_plaintext(&self) -> String {
        format!("127.0.0.1:{}", self.plaintext_port + 1)
    }

    /// Its SASL_SSL address (users as on the shared broker).
    pub fn sasl_ssl(&self) -> String {
        format!("127.0.0.1:{}", self.plaintext_port + 3)
    }

    /// The CA that signed its certificate.
    pub fn ca(&self) -> PathBuf {
        Path::new(&self.state_dir()).join("tls/ca.pem")
    }

    /// Runs `scripts/kafka-local.sh cmd` for this broker, with `extra` set.
    pub fn script(&self, cmd: &str, extra: &[(&str, &str)]) -> Output {
        Command::new(repo_root().join("scripts/kafka-local.sh"))
            .arg(cmd)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .output()
            .expect("kafka-local.sh")
    }

    /// Stops the broker, keeping its data (a broker restart, not a new cluster).
    pub fn stop_keep(&self) {
        let out = self.script("stop", &[("KAFKA_LOCAL_KEEP", "1")]);
        assert!(
            out.status.success(),
            "stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it (again, on its old data).
    pub fn start_again(&self) {
        let out = self.script("start", &[]);
        assert!(
            out.status.success(),
            "private broker: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl PrivateBroker {
    /// The broker's process id, from `kafka-local.sh`'s pid file in this
    /// broker's own state directory (never the shared broker's).
    pub fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(Path::new(&self.state_dir()).join("kafka.pid"))
            .expect("private broker pid file");
        text.trim().parse().expect("pid")
    }

    /// SIGSTOP: the broker keeps its sockets open but answers nothing, as
    /// in a long GC pause or a frozen VM. Connections are accepted by the
    /// kernel and requests queue until [`thaw`](Self::thaw).
    pub fn freeze(&self) {
        self.signal("-STOP");
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// SIGCONT: the broker answers what queued up and carries on.
    pub fn thaw(&self) {
        self.signal("-CONT");
        self.frozen.store(false, Ordering::SeqCst);
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {sig} the private broker");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        // A stopped JVM would ignore the SIGTERM of `stop` until SIGKILL.
        if self.frozen.load(Ordering::SeqCst) {
            self.thaw();
        }
        let _ = self.script("stop", &[]);
    }
}
