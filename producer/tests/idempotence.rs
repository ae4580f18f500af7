//! The idempotent producer against the real broker, with the produce faults
//! a broker cannot be made to show on cue injected by a proxy in front of
//! it (`testkit::fault_proxy`: the broker's answer lost after it wrote the
//! batch, a request lost on the way, an error code in place of the answer).
//! Every out-of-order answer here is the broker's own. Each test reads the
//! topic back with Kafka's console consumer: every record once, in order.
//! The continuous canary (`--continuous`) keeps the same rules, one record
//! per partition on the wire. Last, the ACLs idempotence needs, on a
//! private broker that enforces them.

use std::time::Duration;

use common::config::ConfigSource;
use testkit::{
    broker::{
        bootstrap, console_read_back, create_topic, create_topic_at, kafka_tool, PrivateBroker,
        ReadBack,
    },
    fault_proxy::{Fault, FaultProxy, SeenProduce},
    process::wait_until,
    services::{spawn_producer_with, ProducerOutcome},
    unique,
};

const RECORDS: u64 = 300;
const UNKNOWN_PRODUCER_ID: i16 = 59;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const MESSAGE_TOO_LARGE: i16 = 10;

/// A one-partition topic and a proxy in front of the shared broker with
/// `faults` on partition 0: (number of the produce request, fault).
async fn setup(name: &str, faults: &[(usize, Fault)]) -> (String, FaultProxy) {
    let topic = unique(name);
    create_topic(&topic, 1).await;
    let proxy = FaultProxy::start(&bootstrap()).await;
    for &(nth, fault) in faults {
        proxy.inject(0, nth, fault);
    }
    (topic, proxy)
}

/// Runs the producer through `proxy`: `RECORDS` demo records of 256 bytes
/// in batches of about three (several batches on the wire at once), with
/// `extra` keys.
async fn produce(topic: &str, proxy: &FaultProxy, extra: &[(&str, &str)]) -> ProducerOutcome {
    let records = RECORDS.to_string();
    let mut keys = vec![
        ("PRODUCER_MESSAGES", records.as_str()),
        ("PRODUCER_MAX_BATCH_BYTES", "1024"),
        ("PRODUCER_LINGER_MS", "1"),
    ];
    keys.extend_from_slice(extra);
    spawn_through(topic, proxy, &keys)
        .await
        .handle
        .await
        .expect("join")
}

/// The producer in-process through `proxy` to `topic`, retrying quickly
/// (50–500 ms backoff, 2 s request timeout), with `keys`.
async fn spawn_through(
    topic: &str,
    proxy: &FaultProxy,
    keys: &[(&str, &str)],
) -> testkit::services::InProcess<ProducerOutcome> {
    let bootstrap = proxy.bootstrap();
    let mut pairs = vec![
        ("KAFKA_BOOTSTRAP_SERVER", bootstrap.as_str()),
        ("KAFKA_TOPIC", topic),
        ("PRODUCER_TIMEOUT_SECS", "60"),
        ("KAFKA_BACKOFF_INITIAL_MS", "50"),
        ("KAFKA_BACKOFF_MAX_MS", "500"),
        ("KAFKA_REQUEST_TIMEOUT_MS", "2000"),
    ];
    pairs.extend_from_slice(keys);
    spawn_producer_with(ConfigSource::from_pairs(pairs)).await
}

/// The topic read back directly from the broker: nothing lost, nothing
/// twice, in order.
async fn assert_each_record_once_in_order(topic: &str) -> ReadBack {
    let back = console_read_back(&bootstrap(), topic).await;
    assert_eq!(back.lost(RECORDS), 0, "no record lost: {back:?}");
    assert_eq!(back.duplicates(), 0, "no record written twice");
    assert!(back.out_of_order.is_empty(), "records in send order");
    back
}

fn faulted(seen: &[SeenProduce]) -> &SeenProduce {
    seen.iter()
        .find(|s| s.fault.is_some())
        .expect("the fault was applied")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_retried_with_the_same_sequence_and_written_once() {
    let (topic, proxy) = setup("idem-lost-answer", &[(3, Fault::LoseAnswer)]).await;
    let summary = produce(&topic, &proxy, &[])
        .await
        .expect("all acknowledged");
    assert_eq!(summary.acked, RECORDS);
    assert!(summary.retries > 0, "the lost answer was retried");
    assert_eq!(summary.epoch_bumps, 0);

    let seen = proxy.seen();
    let lost = faulted(&seen);
    assert!(lost.producer_id >= 0, "idempotent batches: {lost:?}");
    let resent: Vec<&SeenProduce> = seen
        .iter()
        .filter(|s| s.base_sequence == lost.base_sequence && s.fault.is_none())
        .collect();
    assert!(!resent.is_empty(), "sent again");
    for again in resent {
        assert_eq!(
            (again.producer_id, again.epoch, again.records),
            (lost.producer_id, lost.epoch, lost.records),
            "same producer, epoch and record boundaries"
        );
    }
    assert_each_record_once_in_order(&topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idempotence_the_same_lost_answer_writes_records_twice() {
    let (topic, proxy) = setup("idem-off-lost-answer", &[(3, Fault::LoseAnswer)]).await;
    let summary = produce(&topic, &proxy, &[("PRODUCER_IDEMPOTENCE", "false")])
        .await
        .expect("all acknowledged");
    assert_eq!((summary.acked, summary.producer_id), (RECORDS, None));
    assert!(faulted(&proxy.seen()).producer_id < 0, "no producer id");
    let back = console_read_back(&bootstrap(), &topic).await;
    assert_eq!(back.lost(RECORDS), 0);
    assert!(
        back.duplicates() >= faulted(&proxy.seen()).records as usize,
        "the batch whose answer was lost is in the topic twice: {back:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_request_makes_the_broker_answer_out_of_order_and_all_lands_once_in_order() {
    let (topic, proxy) = setup("idem-lost-request", &[(2, Fault::LoseRequest)]).await;
    let summary = produce(&topic, &proxy, &[])
        .await
        .expect("all acknowledged");
    assert_eq!(summary.acked, RECORDS);
    assert_eq!(summary.epoch_bumps, 0, "an echo of a lost batch is no gap");
    let seen = proxy.seen();
    assert!(
        seen.iter()
            .any(|s| s.answer == Some(OUT_OF_ORDER_SEQUENCE_NUMBER)),
        "the batches behind the lost one reached the broker first: {seen:?}"
    );
    assert_each_record_once_in_order(&topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_producer_id_bumps_the_epoch_and_renumbers_from_zero() {
    let (topic, proxy) = setup(
        "idem-unknown-pid",
        &[(4, Fault::Refuse(UNKNOWN_PRODUCER_ID))],
    )
    .await;
    let summary = produce(&topic, &proxy, &[])
        .await
        .expect("all acknowledged");
    assert_eq!(summary.acked, RECORDS);
    assert_eq!((summary.epoch_bumps, summary.producer_epoch), (1, Some(1)));
    let seen = proxy.seen();
    let refused = faulted(&seen);
    let first_new = seen
        .iter()
        .find(|s| s.epoch == 1)
        .expect("a batch under the new epoch");
    assert_eq!(
        (first_new.base_sequence, first_new.records),
        (0, refused.records),
        "the refused batch first, from 0"
    );
    assert_each_record_once_in_order(&topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_for_the_next_expected_batch_bumps_the_epoch() {
    // As after an unclean leader election: the broker no longer has what it
    // acknowledged. At 200 records/s each batch goes after the previous
    // one's acknowledgement, so the refused one is the next expected.
    let (topic, proxy) = setup(
        "idem-gap",
        &[(4, Fault::Refuse(OUT_OF_ORDER_SEQUENCE_NUMBER))],
    )
    .await;
    let summary = produce(&topic, &proxy, &[("PRODUCER_RATE", "200")])
        .await
        .expect("all acknowledged");
    assert_eq!((summary.acked, summary.epoch_bumps), (RECORDS, 1));
    assert_each_record_once_in_order(&topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_sequence_number_is_an_acknowledgement() {
    let (topic, proxy) = setup(
        "idem-duplicate",
        &[(3, Fault::Replace(DUPLICATE_SEQUENCE_NUMBER))],
    )
    .await;
    let summary = produce(&topic, &proxy, &[])
        .await
        .expect("all acknowledged");
    assert_eq!((summary.acked, summary.retries), (RECORDS, 0));
    let seen = proxy.seen();
    let dup = faulted(&seen);
    assert_eq!(
        seen.iter()
            .filter(|s| s.base_sequence == dup.base_sequence)
            .count(),
        1,
        "not sent again"
    );
    assert_each_record_once_in_order(&topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_producer_epoch_fails_its_batch_as_java_does_and_the_rest_continues() {
    let (topic, proxy) = setup("idem-fenced", &[(3, Fault::Refuse(INVALID_PRODUCER_EPOCH))]).await;
    let e = produce(&topic, &proxy, &[])
        .await
        .expect_err("the refused batch is not acknowledged");
    let producer::ProducerError::Incomplete {
        summary, reason, ..
    } = e
    else {
        panic!("incomplete, not {e}");
    };
    let refused = faulted(&proxy.seen()).records as u64;
    assert_eq!(
        (summary.acked, summary.failed),
        (RECORDS - refused, refused)
    );
    assert!(reason.contains("InvalidProducerEpoch"), "{reason}");
    assert_eq!(summary.epoch_bumps, 1);
    let back = console_read_back(&bootstrap(), &topic).await;
    assert_eq!(
        back.lost(RECORDS) as u64,
        refused,
        "exactly the refused batch"
    );
    assert_eq!(back.duplicates(), 0);
    assert!(back.out_of_order.is_empty());
}

/// Runs the canary (`--continuous`, 100 records/s) through `proxy` until it
/// has had `answered` produce requests answered, then stops it as SIGTERM
/// would; its summary.
async fn canary(
    topic: &str,
    proxy: &FaultProxy,
    extra: &[(&str, &str)],
    answered: usize,
) -> producer::Summary {
    let mut keys = vec![("PRODUCER_CONTINUOUS", "true"), ("PRODUCER_RATE", "100")];
    keys.extend_from_slice(extra);
    let p = spawn_through(topic, proxy, &keys).await;
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while proxy.seen().iter().filter(|s| s.answer.is_some()).count() < answered {
        assert!(
            std::time::Instant::now() < until,
            "{answered} canary produce requests answered within 60 s: {:?}",
            proxy.seen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.shutdown.cancel();
    p.handle
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("canary: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_resends_with_the_same_sequence_renumbers_after_a_bump_and_writes_each_record_once(
) {
    // A lost answer (resent as it was), UNKNOWN_PRODUCER_ID (bump, the
    // record again from 0), INVALID_PRODUCER_EPOCH (which fails a Job's
    // batch: the canary bumps and sends the same record again) and a
    // refusal of the record itself (resent as it was, no bump).
    let (topic, proxy) = setup(
        "idem-canary",
        &[
            (3, Fault::LoseAnswer),
            (6, Fault::Refuse(UNKNOWN_PRODUCER_ID)),
            (9, Fault::Refuse(INVALID_PRODUCER_EPOCH)),
            (12, Fault::Refuse(MESSAGE_TOO_LARGE)),
        ],
    )
    .await;
    let summary = canary(&topic, &proxy, &[], 16).await;
    assert_eq!((summary.failed, summary.acked), (0, summary.records));
    assert_eq!(
        (summary.epoch_bumps, summary.producer_epoch),
        (2, Some(2)),
        "{summary:?}"
    );
    let seen = proxy.seen();
    let lost = seen
        .iter()
        .find(|s| s.fault == Some(Fault::LoseAnswer))
        .expect("the answer was lost");
    assert!(lost.producer_id >= 0, "idempotent: {lost:?}");
    // (epoch, base sequence) of the faulted request and of the next one.
    let around = |fault: Fault| {
        let at = seen
            .iter()
            .position(|s| s.fault == Some(fault))
            .expect("faulted");
        let numbers = |s: &SeenProduce| (s.epoch, s.base_sequence);
        (numbers(&seen[at]), numbers(&seen[at + 1]))
    };
    for again in [Fault::LoseAnswer, Fault::Refuse(MESSAGE_TOO_LARGE)] {
        let (faulted, next) = around(again);
        assert_eq!(
            next, faulted,
            "after {again:?}: resent with the same numbers"
        );
    }
    for (fault, epoch) in [
        (Fault::Refuse(UNKNOWN_PRODUCER_ID), 1),
        (Fault::Refuse(INVALID_PRODUCER_EPOCH), 2),
    ] {
        assert_eq!(
            around(fault).1,
            (epoch, 0),
            "after {fault:?}: the same record under the next epoch, from 0"
        );
    }
    let back = console_read_back(&bootstrap(), &topic).await;
    assert_eq!(back.lost(summary.acked), 0, "{back:?}");
    assert_eq!(back.duplicates(), 0, "no record written twice: {back:?}");
    assert!(back.out_of_order.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_without_idempotence_writes_a_record_twice_after_a_lost_answer() {
    let (topic, proxy) = setup("idem-off-canary", &[(3, Fault::LoseAnswer)]).await;
    let summary = canary(&topic, &proxy, &[("PRODUCER_IDEMPOTENCE", "false")], 8).await;
    assert_eq!((summary.failed, summary.producer_id), (0, None));
    assert!(faulted(&proxy.seen()).producer_id < 0, "no producer id");
    let back = console_read_back(&bootstrap(), &topic).await;
    assert_eq!(back.lost(summary.acked), 0);
    assert_eq!(
        back.duplicates(),
        1,
        "the record whose answer was lost: {back:?}"
    );
}

/// Runs Kafka's ACL tool against `bootstrap` with `args` and waits until
/// the broker lists what was added for `User:demo`.
fn acl(bootstrap: &str, args: &[&str], expect_listed: &str) {
    let mut all = vec!["acls", "--bootstrap-server", bootstrap];
    all.extend_from_slice(args);
    kafka_tool(&all);
    let listed = wait_until(Duration::from_secs(30), || {
        kafka_tool(&[
            "acls",
            "--bootstrap-server",
            bootstrap,
            "--list",
            "--principal",
            "User:demo",
        ])
        .contains(expect_listed)
    });
    assert!(listed, "ACL {args:?} not listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_idempotent_write_gets_one_clear_error_and_with_write_on_the_topic_it_works()
{
    // The shared broker enforces no ACLs: a private one with the authorizer.
    let broker = PrivateBroker::start_with(&[("KAFKA_LOCAL_AUTHORIZER", "1")]);
    let admin = broker.bootstrap();
    let topic = unique("idem-acl");
    create_topic_at(&admin, &topic, 1).await;
    acl(
        &admin,
        &[
            "--add",
            "--allow-principal",
            "User:demo",
            "--operation",
            "Describe",
            "--topic",
            &topic,
        ],
        "DESCRIBE",
    );
    let sasl = broker.sasl_plaintext();
    let run = || {
        let pairs = [
            ("KAFKA_BOOTSTRAP_SERVER", sasl.as_str()),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
            ("KAFKA_USERNAME", "demo"),
            ("KAFKA_PASSWORD", "demo-secret"),
            ("KAFKA_TOPIC", topic.as_str()),
            ("PRODUCER_MESSAGES", "50"),
            ("PRODUCER_TIMEOUT_SECS", "20"),
        ];
        async move {
            spawn_producer_with(ConfigSource::from_pairs(pairs))
                .await
                .handle
                .await
                .expect("join")
        }
    };

    // Describe only: the broker refuses InitProducerId.
    let e = run().await.expect_err("refused");
    let text = e.to_string();
    assert!(
        matches!(e, producer::ProducerError::Idempotence { .. }),
        "{text}"
    );
    for needed in [
        "ClusterAuthorizationFailed",
        "IDEMPOTENT_WRITE",
        "WRITE on the topic",
        "PRODUCER_IDEMPOTENCE=false",
    ] {
        assert!(text.contains(needed), "error lacks {needed:?}: {text}");
    }
    assert!(!text.contains('\n'), "one line: {text}");
    eprintln!("ACL refusal: {text}");

    // WRITE on the topic is enough since Kafka 2.8 (KIP-679).
    acl(
        &admin,
        &[
            "--add",
            "--allow-principal",
            "User:demo",
            "--operation",
            "Write",
            "--topic",
            &topic,
        ],
        "WRITE",
    );
    let summary = run().await.expect("idempotent with WRITE on the topic");
    assert_eq!(summary.acked, 50);
    assert!(summary.producer_id.is_some());
}
