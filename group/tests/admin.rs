//! The admin requests (`kafka_group::admin`, the canary's topic placement)
//! against the shared broker: metadata, topic and partition creation with
//! replica assignments, reassignments, preferred elections, and the
//! broker's own error codes for assignments it refuses, a topic config set
//! (read back with Kafka's own `kafka-configs`); over SASL_SSL too,
//! through the same connection layer as the group coordinator's.

use std::{collections::BTreeMap, time::Duration};

use common::kafka::KafkaSettings;
use kafka_base::security::{SaslMechanism, SaslSettings, Secret, SecurityProtocol};
use kafka_group::{admin::AdminClient, error::KafkaCode};
use kafka_protocol::ResponseError;
use testkit::{
    broker::{bootstrap, delete_topic, kafka_tool},
    security::broker,
    unique,
};

fn admin(s: &KafkaSettings) -> AdminClient {
    AdminClient::new(
        s.connection_config().expect("connection config"),
        s.bootstrap.clone(),
    )
}

fn plaintext() -> KafkaSettings {
    let mut s = KafkaSettings::plaintext(bootstrap(), "admin-test");
    s.request_timeout = Duration::from_secs(10);
    s
}

/// `topic`'s config `key` as `DescribeConfigs` reads it.
async fn topic_config(admin: &mut AdminClient, topic: &str, key: &str) -> Option<String> {
    admin.topic_config(topic, key).await.expect("describe")
}

/// Polls the metadata until `topic` has `n` partitions, each led.
async fn partitions_led(admin: &mut AdminClient, topic: &str, n: usize) -> BTreeMap<i32, i32> {
    for _ in 0..100 {
        let meta = admin.metadata(topic).await.expect("metadata");
        if let Some(p) = meta.partitions.filter(|p| p.len() == n) {
            if p.values().all(|p| p.leader >= 0) {
                return p.into_iter().map(|(id, p)| (id, p.leader)).collect();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{topic}: not {n} partitions with leaders within 10 s");
}

#[tokio::test]
async fn placement_requests_work_and_refusals_carry_the_brokers_code() {
    let topic = unique("admin");
    let mut a = admin(&plaintext());
    let meta = a.metadata(&topic).await.expect("metadata");
    assert_eq!(meta.brokers.len(), 1, "{meta:?}");
    assert_eq!(meta.partitions, None, "no such topic yet");
    let id = *meta.brokers.keys().next().expect("a broker");

    let config = [("min.insync.replicas", "1".to_owned())];
    assert!(a
        .create_topic(&topic, &[vec![id], vec![id]], &config)
        .await
        .expect("create"));
    assert!(
        !a.create_topic(&topic, &[vec![id]], &config)
            .await
            .expect("exists: no error"),
        "TOPIC_ALREADY_EXISTS is Ok(false)"
    );
    assert_eq!(
        partitions_led(&mut a, &topic, 2).await,
        BTreeMap::from([(0, id), (1, id)])
    );
    a.create_partitions(&topic, 3, &[vec![id]])
        .await
        .expect("grow");
    partitions_led(&mut a, &topic, 3).await;

    // What the broker refuses comes back with its code, named.
    let nobody = id + 100;
    let e = a
        .create_partitions(&topic, 4, &[vec![nobody]])
        .await
        .expect_err("no such broker");
    assert_eq!(
        e.code(),
        Some(KafkaCode::of(ResponseError::InvalidReplicaAssignment)),
        "{e}"
    );
    assert!(
        e.to_string().contains("INVALID_REPLICA_ASSIGNMENT (39)")
            && e.reason() == "INVALID_REPLICA_ASSIGNMENT",
        "{e}"
    );
    let e = a
        .alter_reassignments(&topic, &BTreeMap::from([(1, vec![nobody])]))
        .await
        .expect_err("no such broker");
    assert!(
        e.code().is_some() && e.to_string().contains("partition 1"),
        "{e}"
    );

    // A reassignment onto where the partition is, then its (finished)
    // state; a preferred election where the leader is preferred already.
    a.alter_reassignments(&topic, &BTreeMap::from([(0, vec![id])]))
        .await
        .expect("reassign");
    let mut ongoing = a
        .ongoing_reassignments(&topic, &[0, 1, 2])
        .await
        .expect("list");
    for _ in 0..50 {
        if ongoing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        ongoing = a
            .ongoing_reassignments(&topic, &[0, 1, 2])
            .await
            .expect("list");
    }
    assert!(ongoing.is_empty(), "{ongoing:?}");
    a.elect_preferred_leaders(&topic, &[0, 1, 2])
        .await
        .expect("ELECTION_NOT_NEEDED is no error");

    // A topic config read and set, the others kept; a value the broker
    // refuses.
    assert_eq!(
        topic_config(&mut a, &topic, "min.insync.replicas")
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(topic_config(&mut a, &topic, "no.such.config").await, None);
    a.set_topic_config(&topic, "retention.ms", "3600000")
        .await
        .expect("set retention.ms");
    a.set_topic_config(&topic, "min.insync.replicas", "1")
        .await
        .expect("set min.insync.replicas");
    let described = kafka_tool(&[
        "configs",
        "--bootstrap-server",
        &bootstrap(),
        "--entity-type",
        "topics",
        "--entity-name",
        &topic,
        "--describe",
    ]);
    assert!(
        described.contains("retention.ms=3600000") && described.contains("min.insync.replicas=1"),
        "{described}"
    );
    assert_eq!(
        topic_config(&mut a, &topic, "retention.ms")
            .await
            .as_deref(),
        Some("3600000")
    );
    let e = a
        .set_topic_config(&topic, "min.insync.replicas", "0")
        .await
        .expect_err("below 1");
    assert_eq!(e.reason(), "INVALID_CONFIG", "{e}");
    delete_topic(&topic);
}

#[tokio::test]
async fn metadata_over_sasl_ssl() {
    let b = broker();
    let mut s = KafkaSettings::plaintext(b.sasl_ssl.clone(), "admin-test");
    s.security_protocol = SecurityProtocol::SaslSsl;
    s.request_timeout = Duration::from_secs(10);
    s.tls.ca_file = Some(b.ca.clone());
    s.sasl = Some(SaslSettings::password(
        SaslMechanism::ScramSha512,
        b.user.clone(),
        Secret::new(&b.password),
    ));
    let meta = admin(&s)
        .metadata(&unique("admin-sasl"))
        .await
        .expect("metadata over SASL_SSL");
    assert_eq!(meta.brokers.len(), 1, "{meta:?}");
}
