//! The canary's topic placement (`CANARY_TOPIC_BALANCE`) as brokers come
//! and go: the `producer --continuous` binary with a 1 s reconcile
//! interval and a consumer group verifying its records, while node 3
//! starts (a partition is added for it and it leads it; the classic
//! group and a KIP-848 group both read it), node 2 stops (every replica
//! leaves it) and starts again (each broker leads one partition). Leaders are followed on the producer's
//! `kafka_canary_partition_leader`; replica lists are checked with
//! Kafka's own `kafka-topics --describe`. Throughout, the consumer counts
//! no canary record lost or duplicated.
//!
//! `min.insync.replicas` follows the replication factor (2 with three
//! replicas, 1 with two), read with Kafka's own `kafka-topics`.
//!
//! The canary producer is idempotent: a record resent after its
//! acknowledgement was lost (node 2 stopping while a request to it is on
//! the wire) is written once, so 0 duplicates is asserted. (When the
//! canary sent without idempotence, CI once saw 1.)

use std::{collections::BTreeMap, time::Duration};

use testkit::{
    cluster::{Cluster, PartitionState},
    process::{free_addr, service_bin, Member, Running},
    scrape::{http_get, metric, sum},
    unique,
};

use super::{blocking, ONE_AT_A_TIME};

/// The reconcile interval the canary runs with here (30 s by default).
const RECONCILE_MS: &str = "1000";
const LOSS_WINDOW_SECS: u64 = 5;

/// Partition → leader, from the canary's `kafka_canary_partition_leader`.
async fn leaders(addr: std::net::SocketAddr, topic: &str) -> BTreeMap<i32, i32> {
    let body = http_get(addr, "/metrics").await.1;
    let t = format!("topic=\"{topic}\"");
    (0..8)
        .filter_map(|p| {
            let part = format!("partition=\"{p}\"");
            metric(&body, "kafka_canary_partition_leader", &[&t, &part]).map(|l| (p, l as i32))
        })
        .collect()
}

/// Polls the canary's leaders until `want` holds (`within` at most).
async fn leaders_until(
    addr: std::net::SocketAddr,
    topic: &str,
    what: &str,
    within: Duration,
    want: impl Fn(&BTreeMap<i32, i32>) -> bool,
) {
    let until = std::time::Instant::now() + within;
    loop {
        let now = leaders(addr, topic).await;
        if want(&now) {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "{what}: not within {within:?}; leaders now {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls `kafka-topics --describe` until `want` holds (`within` at most).
async fn describe_until(
    cluster: &Cluster,
    topic: &str,
    what: &str,
    within: Duration,
    want: impl Fn(&[PartitionState]) -> bool,
) -> Vec<PartitionState> {
    let until = std::time::Instant::now() + within;
    loop {
        let (c, t) = (cluster.clone(), topic.to_owned());
        let now = blocking(move || c.describe(&t)).await;
        if want(&now) {
            return now;
        }
        assert!(
            std::time::Instant::now() < until,
            "{what}: not within {within:?}; the topic now: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls the topic's `min.insync.replicas` until it is `want` (30 s at
/// most): the canary sets it once the topic is placed.
async fn min_insync_until(cluster: &Cluster, topic: &str, want: &str) {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (c, t) = (cluster.clone(), topic.to_owned());
        let now = blocking(move || c.topic_config(&t, "min.insync.replicas")).await;
        if now.as_deref() == Some(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "min.insync.replicas {want} within 30 s; now {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn replicas(d: &[PartitionState]) -> Vec<Vec<i32>> {
    d.iter().map(|p| p.replicas.clone()).collect()
}

/// The canary's received records on `partition` as the consumer counts them.
fn received(consumer: &Member, topic: &str, partition: Option<i32>) -> f64 {
    let t = format!("topic=\"{topic}\"");
    let part = partition.map(|p| format!("partition=\"{p}\""));
    let mut labels = vec![t.as_str()];
    labels.extend(part.as_deref());
    sum(
        &consumer.metrics(),
        "kafka_canary_records_received_total",
        &labels,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_topic_follows_the_brokers_one_partition_led_by_each() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::shared();
    {
        let c = cluster.clone();
        blocking(move || {
            c.wait_healthy();
            c.stop_node(3);
        })
        .await;
    }
    let topic = unique("cluster-placement");
    let group = unique("g-cluster-placement");
    let t = format!("topic=\"{topic}\"");

    // Nodes 1 and 2 live: two partitions, led by 1 and 2.
    let http = free_addr();
    let producer = Running::start(
        service_bin("producer"),
        &[],
        &[
            ("KAFKA_BOOTSTRAP_SERVER", cluster.bootstrap().to_owned()),
            ("KAFKA_TOPIC", topic.clone()),
            ("HTTP_ADDR", http.to_string()),
            ("PRODUCER_CONTINUOUS", "true".to_owned()),
            ("PRODUCER_RATE", "40".to_owned()),
            ("PRODUCER_RUN_ID", topic.clone()),
            ("CANARY_TOPIC_BALANCE", "true".to_owned()),
            ("CANARY_RECONCILE_INTERVAL_MS", RECONCILE_MS.to_owned()),
            ("PRODUCER_TIMEOUT_SECS", "60".to_owned()),
        ],
    );
    let two = BTreeMap::from([(0, 1), (1, 2)]);
    leaders_until(
        http,
        &topic,
        "created on nodes 1 and 2",
        Duration::from_secs(60),
        |l| *l == two,
    )
    .await;
    let d = describe_until(&cluster, &topic, "created", Duration::from_secs(30), |d| {
        d.len() == 2
    })
    .await;
    assert_eq!(replicas(&d), vec![vec![1, 2], vec![2, 1]], "{d:?}");
    min_insync_until(&cluster, &topic, "1").await;

    // Two groups verify the records: a classic one (its leader sees the
    // partition count change at its metadata refresh and rejoins) and a
    // KIP-848 one (the broker assigns the new partition).
    let mut consumers: Vec<(&str, Member)> = ["classic", "consumer"]
        .into_iter()
        .map(|protocol| {
            let member = Member::start(
                service_bin("consumer"),
                &topic,
                &format!("{group}-{protocol}"),
                cluster.bootstrap(),
                &[
                    ("CONSUMER_AUTO_OFFSET_RESET", "earliest"),
                    ("CANARY_LOSS_WINDOW_SECS", "5"),
                    ("CONSUMER_GROUP_PROTOCOL", protocol),
                ],
            );
            (protocol, member)
        })
        .collect();

    // Node 3 starts: its replicas are added, then a third partition it
    // leads; records flow to it and the group reads them.
    {
        let c = cluster.clone();
        blocking(move || c.start_node(3)).await;
    }
    let three = BTreeMap::from([(0, 1), (1, 2), (2, 3)]);
    leaders_until(
        http,
        &topic,
        "a partition led by node 3",
        Duration::from_secs(90),
        |l| *l == three,
    )
    .await;
    let d = describe_until(
        &cluster,
        &topic,
        "three replicas each",
        Duration::from_secs(60),
        |d| replicas(d) == vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]],
    )
    .await;
    assert!(d.iter().all(|p| p.leader == p.replicas[0]), "{d:?}");
    min_insync_until(&cluster, &topic, "2").await;
    let until = std::time::Instant::now() + Duration::from_secs(60);
    for (protocol, consumer) in &consumers {
        while received(consumer, &topic, Some(2)) < 5.0 {
            if std::time::Instant::now() > until {
                let acks = sum(
                    &http_get(http, "/metrics").await.1,
                    "kafka_canary_produce_acks_total",
                    &[&t, "partition=\"2\""],
                );
                let not_records: Vec<String> = consumer
                    .lines()
                    .into_iter()
                    .filter(|v| v["message"] != "record")
                    .map(|v| v.to_string())
                    .collect();
                panic!(
                    "the {protocol} group read no canary record of partition 2 within 60 s; the producer had {acks} acknowledged; the consumer's log without records:\n{}",
                    not_records.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // Node 2 stops: within a few intervals no replica is on it, and nodes
    // 1 and 3 lead.
    {
        let c = cluster.clone();
        blocking(move || c.stop_node(2)).await;
    }
    let d = describe_until(
        &cluster,
        &topic,
        "no replica on node 2",
        Duration::from_secs(60),
        |d| {
            d.len() == 3
                && d.iter()
                    .all(|p| !p.replicas.contains(&2) && [1, 3].contains(&p.leader))
        },
    )
    .await;
    assert_eq!(
        replicas(&d),
        vec![vec![1, 3], vec![3, 1], vec![1, 3]],
        "{d:?}"
    );
    min_insync_until(&cluster, &topic, "1").await;

    // Node 2 back: each broker leads one partition again.
    {
        let c = cluster.clone();
        blocking(move || c.start_node(2)).await;
    }
    leaders_until(
        http,
        &topic,
        "each broker leading one partition again",
        Duration::from_secs(90),
        |l| *l == three,
    )
    .await;
    describe_until(
        &cluster,
        &topic,
        "three replicas each again",
        Duration::from_secs(60),
        |d| replicas(d) == vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]],
    )
    .await;
    min_insync_until(&cluster, &topic, "2").await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The producer's figures, then its summary.
    let body = http_get(http, "/metrics").await.1;
    let changes = sum(&body, "kafka_canary_leader_changes_total", &[&t]);
    let reassigned = sum(
        &body,
        "kafka_canary_reassignments_total",
        &[&t, "action=\"reassign\""],
    );
    let added = sum(
        &body,
        "kafka_canary_reassignments_total",
        &[&t, "action=\"create_partitions\""],
    );
    assert_eq!(
        metric(&body, "kafka_canary_brokers", &[]),
        Some(3.0),
        "{body}"
    );
    // min.insync.replicas 1 → 2 → 1 → 2: at least three changes after
    // creation.
    let min_insync_set = sum(
        &body,
        "kafka_canary_reassignments_total",
        &[&t, "action=\"set_min_insync\""],
    );
    assert!(
        changes >= 2.0 && reassigned >= 2.0 && added >= 1.0 && min_insync_set >= 3.0,
        "{body}"
    );
    producer.terminate();
    let out = producer.finish(Duration::from_secs(60)).await;
    assert_eq!(out.code, Some(0), "canary producer: {}", out.last_line());
    let summary = out
        .lines()
        .into_iter()
        .rfind(|v| v["message"] == "summary")
        .unwrap_or_default();
    let acked = summary["acked"].as_u64().unwrap_or(0);
    assert!(acked > 0 && summary["not_acked"] == 0, "{summary}");

    // Everything read, the loss window passed: nothing lost or duplicated.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    for (protocol, consumer) in &consumers {
        while received(consumer, &topic, None) < acked as f64 {
            assert!(
                std::time::Instant::now() < until,
                "the {protocol} group read {} of {acked} canary records within 60 s",
                received(consumer, &topic, None)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(LOSS_WINDOW_SECS + 2)).await;
    for (protocol, consumer) in &mut consumers {
        let m = consumer.metrics();
        let lost = sum(&m, "kafka_canary_records_lost_total", &[&t]);
        let duplicated = sum(&m, "kafka_canary_records_duplicated_total", &[&t]);
        let missing = sum(&m, "kafka_canary_records_missing", &[&t]);
        eprintln!(
            "FAULT cluster-placement ({protocol} group): canary with CANARY_TOPIC_BALANCE through node 3 started, node 2 stopped and started; acknowledged {acked}, received {}, lost {lost}, duplicated {duplicated}, leader changes seen {changes}, reassignments {reassigned}, partitions added {added}, min.insync.replicas set {min_insync_set} times",
            received(consumer, &topic, None)
        );
        assert_eq!(
            (lost, duplicated, missing),
            (0.0, 0.0, 0.0),
            "{protocol}: {m}"
        );
        consumer.sigterm();
        assert_eq!(
            consumer.wait_exit(Duration::from_secs(20)),
            Some(0),
            "{protocol} consumer stop"
        );
    }
    let c = cluster.clone();
    blocking(move || c.wait_healthy()).await;
}
