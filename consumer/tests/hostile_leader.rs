//! A hostile group leader (issue 17, finding 6), through the real broker.
//!
//! Any client that knows the group id can join it and, by joining first,
//! become its leader: the coordinator then hands the assignment that client
//! computes to every member. The test drives such a client by hand with the
//! group crate's coordinator client (raw JoinGroup / SyncGroup / Heartbeat)
//! and gives the `consumer` binary an assignment with a topic it did not
//! subscribe to, partitions 9999 and -1, duplicates and a list of 5 000
//! partitions that do not exist, next to the topic's three real ones. The
//! consumer must start nothing for the bad entries (no worker, no metric
//! series), log them once naming the leader, count them, rejoin by itself
//! (the leader sees the rebalance it asks for) and consume the valid
//! partitions.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_base::security::SecurityProtocol;
use kafka_group::{
    coordinator::{CoordinatorClient, JoinGroupParams, JoinGroupResult, JoinProtocol},
    payload::{
        Assignment, Subscription, TopicPartitions, ASSIGNMENT_VERSION, SUBSCRIPTION_VERSION,
    },
    ConnectionConfig,
};
use testkit::{broker::*, process::*, services, unique};

const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");

/// `MEMBER_ID_REQUIRED`: the first JoinGroup of a new member.
const MEMBER_ID_REQUIRED: i16 = 79;
/// `REBALANCE_IN_PROGRESS`: another member (re)joined.
const REBALANCE_IN_PROGRESS: i16 = 27;

/// A group member the test drives request by request.
struct Hostile {
    client: CoordinatorClient,
    topic: String,
    member_id: String,
}

impl Hostile {
    fn new(group: &str, topic: &str) -> Self {
        let connection = ConnectionConfig::new(
            "hostile-leader",
            SecurityProtocol::Plaintext,
            None,
            None,
            Duration::from_secs(30),
        )
        .expect("connection");
        Self {
            client: CoordinatorClient::new(connection, vec![bootstrap()], group.to_owned(), None),
            topic: topic.to_owned(),
            member_id: String::new(),
        }
    }

    /// JoinGroup (with the member id the coordinator asks for) until it
    /// answers without an error.
    async fn join(&mut self) -> JoinGroupResult {
        let metadata = Subscription::new([self.topic.as_str()])
            .encode(SUBSCRIPTION_VERSION)
            .expect("subscription");
        loop {
            let params = JoinGroupParams {
                member_id: self.member_id.clone(),
                session_timeout: Duration::from_secs(30),
                rebalance_timeout: Duration::from_secs(20),
                protocols: vec![JoinProtocol {
                    name: "range".to_owned(),
                    metadata: metadata.clone(),
                }],
                reason: None,
            };
            let r = self.client.join_group(&params).await.expect("JoinGroup");
            match r.error.code() {
                0 => {
                    self.member_id = r.member_id.clone();
                    return r;
                }
                MEMBER_ID_REQUIRED => self.member_id = r.member_id.clone(),
                code => panic!("JoinGroup failed with error code {code}"),
            }
        }
    }

    async fn sync(&mut self, generation: i32, assignments: &[(String, Bytes)]) {
        let r = self
            .client
            .sync_group(generation, &self.member_id, "range", assignments)
            .await
            .expect("SyncGroup");
        assert_eq!(r.error.code(), 0, "SyncGroup error code");
    }

    /// Heartbeats until the coordinator says a rebalance began; `false`
    /// when none did within `within`.
    async fn until_rebalance(&mut self, generation: i32, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let code = self
                .client
                .heartbeat(generation, &self.member_id)
                .await
                .expect("Heartbeat");
            match code.code() {
                0 => tokio::time::sleep(Duration::from_millis(300)).await,
                REBALANCE_IN_PROGRESS => return true,
                other => panic!("Heartbeat failed with error code {other}"),
            }
        }
        false
    }
}

fn encode(assignment: &Assignment) -> Bytes {
    assignment.encode(ASSIGNMENT_VERSION).expect("assignment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_leaders_bad_entries_are_dropped_logged_and_rejoined_over() {
    let topic = unique("hostile");
    let other = unique("hostile-other");
    let group = unique("g-hostile");
    create_topic(&topic, 3).await;
    create_topic(&other, 2).await;
    services::produce(&topic, 90, "run-hostile", "key-{seq}").await;

    // The hostile client joins first: it leads every generation it is in.
    let mut hostile = Hostile::new(&group, &topic);
    let first = hostile.join().await;
    assert!(first.is_leader(), "the first member leads");
    let generation = first.generation_id;
    hostile
        .sync(
            generation,
            &[(hostile.member_id.clone(), encode(&Assignment::default()))],
        )
        .await;

    // Our consumer joins; it waits 3 s on the valid partitions before it
    // rejoins (its first rejoin backoff).
    let consumer = Member::start(
        CONSUMER,
        &topic,
        &group,
        &bootstrap(),
        &[("KAFKA_BACKOFF_INITIAL_MS", "3000")],
    );
    assert!(
        hostile
            .until_rebalance(generation, Duration::from_secs(30))
            .await,
        "the consumer never joined: {}",
        consumer.log_tail(20)
    );
    let second = hostile.join().await;
    assert!(second.is_leader(), "still the leader");
    let victim = second
        .members
        .iter()
        .map(|m| m.member_id.clone())
        .find(|id| *id != hostile.member_id)
        .expect("the consumer is a member");
    let huge: Vec<i32> = (10_000..15_000).collect();
    let bad = Assignment::new(vec![
        TopicPartitions::new(topic.as_str(), vec![0, 1, 2, 9999, -1, 0, 1]),
        TopicPartitions::new(other.as_str(), vec![0, 1]),
        TopicPartitions::new(topic.as_str(), huge),
        TopicPartitions::new(topic.as_str(), vec![2]),
    ]);
    hostile
        .sync(
            second.generation_id,
            &[
                (victim.clone(), encode(&bad)),
                (hostile.member_id.clone(), encode(&Assignment::default())),
            ],
        )
        .await;

    // The consumer rejoins by itself: the leader sees a rebalance although
    // nobody else joined or left.
    let rejoined = hostile
        .until_rebalance(second.generation_id, Duration::from_secs(30))
        .await;
    // Then the hostile client leaves, and the consumer assigns itself.
    let _ = hostile.client.leave_group(&hostile.member_id, None).await;
    assert!(
        rejoined,
        "the consumer did not rejoin after the invalid assignment: {}",
        consumer.log_tail(30)
    );

    assert!(
        wait_until(Duration::from_secs(60), || consumer.records().len() >= 90),
        "not every record consumed: {} of 90; {}",
        consumer.records().len(),
        consumer.log_tail(30)
    );
    let records = consumer.records();
    assert!(
        records.iter().all(|(p, _)| (0..3).contains(p)),
        "records only from the topic's own partitions"
    );

    // One warning naming the leader and what was wrong.
    let warnings: Vec<serde_json::Value> = consumer
        .lines()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("the group leader's assignment has entries"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {warnings:?}");
    let w = &warnings[0];
    assert_eq!(w["level"], "WARN");
    assert_eq!(w["leader"].as_str(), Some(hostile.member_id.as_str()));
    // 9999, -1, the two duplicates, the two unsubscribed, the 5 000, and
    // the repeated 2: 5 007 dropped, 3 kept.
    assert_eq!(w["dropped"].as_u64(), Some(5_007), "{w}");
    assert_eq!(w["kept"].as_u64(), Some(3), "{w}");
    let problems = w["problems"].as_str().expect("problems");
    for expected in [
        format!("2 of topics not subscribed to ({other}-0, {other}-1)"),
        format!("{topic}-9999"),
        format!("{topic}--1"),
        "3 duplicates".to_owned(),
    ] {
        assert!(problems.contains(&expected), "{expected} in {problems}");
    }

    // Every assignment the consumer acted on held only the valid partitions.
    for line in consumer
        .lines()
        .into_iter()
        .filter(|l| l["message"] == "assignment received")
    {
        let parts = line["partitions"].as_str().unwrap_or_default();
        for p in parts.split(',').filter(|p| !p.is_empty()) {
            assert!(
                (0..3).any(|n| p == format!("{topic}-{n}")),
                "a worker for {p}: {line}"
            );
        }
    }
    // No metric series for a dropped entry; the invalid assignment counted.
    let metrics = consumer.metrics();
    for bad_label in [
        format!("topic=\"{other}\""),
        "partition=\"9999\"".to_owned(),
        "partition=\"-1\"".to_owned(),
        "partition=\"10000\"".to_owned(),
    ] {
        assert!(
            !metrics.lines().any(|l| l.contains(&bad_label)),
            "a series with {bad_label}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l == "kafka_consumer_errors_total{kind=\"assignment\"} 1"),
        "the invalid assignment counted once"
    );

    let mut consumer = consumer;
    consumer.sigterm();
    assert_eq!(consumer.wait_exit(Duration::from_secs(20)), Some(0));
    delete_topic(&topic);
    delete_topic(&other);
}
