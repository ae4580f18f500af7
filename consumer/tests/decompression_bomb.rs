//! Decompression bombs (issue 17, finding 7): a topic writer sends record
//! batches of a few kilobytes that decompress to 128 MiB (zstd on one
//! partition, gzip on the other), between ordinary records, to the real
//! broker, which takes them (it validates compressed batches without
//! keeping what they decode to).
//!
//! The `consumer` binary must not decode them past
//! `CONSUMER_DECODED_BATCH_MAX_BYTES` (32 MiB by default): it handles the
//! records before each bomb, then stalls there, alive and within its
//! Deployment's memory limit, says so in a log line with the batch's
//! offsets, in `kafka_consumer_errors_total{kind="oversized_batch"}` and on
//! /readyz, and never commits past the bomb. The two documented ways on
//! work: moving the group's offset past the batch with Kafka's
//! consumer-groups tool, and raising the limit (legitimate data).
//!
//! The bombs are written with our own produce request (kafka-protocol over
//! a socket), because no Kafka client sends a batch that it did not
//! compress itself; everything after the socket is the real broker.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use testkit::{
    bootstrap,
    broker::{client, create_topic, kafka_tool},
    process::{wait_until, Member},
    scrape::metric,
    unique,
};

const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");
use kafka_protocol::{
    messages::{
        produce_request::{PartitionProduceData, TopicProduceData},
        ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
    },
    protocol::{Decodable, Encodable, StrBytes},
};
use rskafka::{
    client::partition::{Compression, UnknownTopicHandling},
    record::Record,
};

/// What each bomb decodes to: four times the default limit, and more than
/// the consumer Deployment's memory limit (128 MiB) with its copies.
const BOMB_BYTES: usize = 128 << 20;

/// Kafka's codec ids (record batch attributes, bits 0-2).
const GZIP: i16 = 1;
const ZSTD: i16 = 4;

fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// One record with a null key and a value of `len` zero bytes, compressed
/// with `codec` as it is written (nothing of its size is ever held).
fn compressed_zeros(codec: i16, len: usize) -> Vec<u8> {
    let mut head = Vec::new();
    head.push(0); // attributes
    varint(&mut head, 0); // timestamp delta
    varint(&mut head, 0); // offset delta
    varint(&mut head, -1); // key: null
    varint(&mut head, len as i64); // value length
    let mut framed = Vec::new();
    varint(&mut framed, (head.len() + len + 1) as i64); // record length
    framed.extend_from_slice(&head);

    fn fill(w: &mut impl Write, framed: &[u8], len: usize) {
        w.write_all(framed).expect("compress");
        let zeros = vec![0u8; 1 << 16];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len());
            w.write_all(&zeros[..n]).expect("compress");
            left -= n;
        }
        w.write_all(&[0]).expect("compress"); // no headers
    }
    match codec {
        GZIP => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            fill(&mut e, &framed, len);
            e.finish().expect("gzip")
        }
        ZSTD => {
            let mut e = zstd::Encoder::new(Vec::new(), 3).expect("zstd");
            fill(&mut e, &framed, len);
            e.finish().expect("zstd")
        }
        _ => unreachable!("codec {codec}"),
    }
}

/// A v2 record batch of one record whose records section is `records`.
fn batch(codec: i16, records: &[u8]) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut body = Vec::new();
    body.extend_from_slice(&codec.to_be_bytes()); // attributes
    body.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    body.extend_from_slice(&now.to_be_bytes()); // first timestamp
    body.extend_from_slice(&now.to_be_bytes()); // max timestamp
    body.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    body.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    body.extend_from_slice(&1i32.to_be_bytes()); // records
    body.extend_from_slice(records);
    let mut out = Vec::new();
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset (the broker assigns it)
    out.extend_from_slice(&((body.len() + 9) as i32).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    out.push(2); // magic
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Produces `batch` as it is to `topic`/`partition` (Produce v7, acks=all)
/// and returns its offset.
fn produce_raw(bootstrap: &str, topic: &str, partition: i32, batch: Vec<u8>) -> i64 {
    const VERSION: i16 = 7;
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(batch)))])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("bomb-writer")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, 1).expect("header");
    request.encode(&mut buf, VERSION).expect("request");

    let mut s = TcpStream::connect(bootstrap).expect("connect to the broker");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    s.write_all(&(buf.len() as i32).to_be_bytes())
        .expect("send");
    s.write_all(&buf).expect("send");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("response length");
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).expect("response");
    let mut resp = Bytes::from(resp);
    ResponseHeader::decode(&mut resp, 0).expect("response header");
    let r = ProduceResponse::decode(&mut resp, VERSION).expect("produce response");
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "the broker refused the batch: {p:?}");
    p.base_offset
}

fn produce_plain(topic: &str, partition: i32, label: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let pc = client()
            .await
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
            .expect("partition client");
        let records = (0..3)
            .map(|i| Record {
                key: None,
                value: Some(format!("{label}-{i}").into_bytes()),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            })
            .collect();
        pc.produce(records, Compression::NoCompression)
            .await
            .expect("produce");
    });
}

/// Peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Values the member handled, per partition.
fn handled(m: &Member) -> [Vec<String>; 2] {
    let mut out = [Vec::new(), Vec::new()];
    for v in m.lines() {
        if v["message"] != "record" {
            continue;
        }
        if let (Some(p), Some(value)) = (v["partition"].as_u64(), v["value"].as_str()) {
            // The bomb's value is logged cut to CONSUMER_LOG_VALUE_MAX_BYTES.
            let value = if value.starts_with('\0') || value.starts_with("AAAA") {
                "bomb"
            } else {
                value
            };
            out[p as usize].push(value.to_owned());
        }
    }
    out
}

#[test]
fn a_decompression_bomb_stalls_its_partition_visibly_and_never_kills_the_consumer() {
    let bootstrap = bootstrap();
    let topic = unique("bomb");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(create_topic(&topic, 2));
    let mut bomb_offsets = Vec::new();
    for (partition, codec) in [(0, ZSTD), (1, GZIP)] {
        produce_plain(&topic, partition, "before");
        let compressed = compressed_zeros(codec, BOMB_BYTES);
        assert!(compressed.len() < 512 << 10, "{} bytes", compressed.len());
        bomb_offsets.push(produce_raw(
            &bootstrap,
            &topic,
            partition,
            batch(codec, &compressed),
        ));
        produce_plain(&topic, partition, "after");
    }
    assert_eq!(bomb_offsets, [3, 3]);
    let before: Vec<String> = (0..3).map(|i| format!("before-{i}")).collect();

    let group = unique("g-bomb");
    let mut member = Member::start(
        CONSUMER,
        &topic,
        &group,
        &bootstrap,
        &[
            ("CONSUMER_STALL_SECS", "1"),
            ("CONSUMER_COMMIT_INTERVAL_MS", "200"),
        ],
    );
    let refused = |m: &Member, p: i64| {
        m.lines().iter().any(|v| {
            v["message"] == "record batch decodes to more than CONSUMER_DECODED_BATCH_MAX_BYTES; partition stalled"
                && v["partition"].as_i64() == Some(p)
                && v["base_offset"].as_i64() == Some(3)
                && v["last_offset"].as_i64() == Some(3)
        })
    };
    assert!(
        wait_until(Duration::from_secs(60), || refused(&member, 0)
            && refused(&member, 1)),
        "no log line naming both bombs' offsets; handled {:?}\n{}",
        handled(&member),
        member.log_tail(20)
    );
    assert_eq!(handled(&member), [before.clone(), before.clone()]);

    // It stays there: alive, not past the bomb, committed at it, counted,
    // not ready with the reason.
    let names_both = |body: &str| {
        [0, 1]
            .iter()
            .all(|p| body.contains(&format!("{topic}-{p} (lag 4, no progress for")))
            && body
                .matches("at offsets 3..=3 decodes to more than 33554432 bytes")
                .count()
                == 2
    };
    let stalled = wait_until(Duration::from_secs(20), || {
        let (code, body) = member.get("/readyz");
        code == 503 && names_both(&body)
    });
    let (code, body) = member.get("/readyz");
    assert!(stalled, "/readyz: {code} {body}");
    let metrics = member.metrics();
    assert!(
        metric(
            &metrics,
            "kafka_consumer_errors_total",
            &["kind=\"oversized_batch\""]
        )
        .is_some_and(|n| n >= 2.0),
        "{metrics}"
    );
    for p in 0..2 {
        let labels = [format!("topic=\"{topic}\""), format!("partition=\"{p}\"")];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        assert_eq!(
            metric(&metrics, "kafka_consumer_committed_offset", &labels),
            Some(3.0),
            "{metrics}"
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        member.child.try_wait().expect("wait").is_none(),
        "the consumer exited"
    );
    assert_eq!(handled(&member), [before.clone(), before.clone()]);
    // A consumer that decoded a bomb would hold its 128 MiB at least once;
    // this one stays within the Deployment's limit.
    let peak = peak_rss(member.child.id());
    assert!(peak > 0 && peak < 128 << 20, "peak RSS {peak} bytes");
    member.sigterm();
    assert_eq!(member.wait_exit(Duration::from_secs(15)), Some(0));
    drop(member);

    // The two documented ways on. Partition 0: skip the batch, as for any
    // poison record, by moving the group's offset past it (the group is
    // empty now). Partition 1: legitimate data that large, so raise the
    // limit; it goes through.
    let reset = kafka_tool(&[
        "consumer-groups",
        "--bootstrap-server",
        &bootstrap,
        "--group",
        &group,
        "--reset-offsets",
        "--topic",
        &format!("{topic}:0"),
        "--to-offset",
        "4",
        "--execute",
    ]);
    assert!(reset.contains(&topic), "reset-offsets said: {reset}");
    let member = Member::start(
        CONSUMER,
        &topic,
        &group,
        &bootstrap,
        &[("CONSUMER_DECODED_BATCH_MAX_BYTES", "268435456")],
    );
    let after = ["after-0", "after-1", "after-2"]
        .map(str::to_owned)
        .to_vec();
    let mut bomb_and_after = vec!["bomb".to_owned()];
    bomb_and_after.extend(after.clone());
    assert!(
        wait_until(Duration::from_secs(60), || handled(&member)
            == [after.clone(), bomb_and_after.clone()]),
        "after skipping partition 0's bomb and raising the limit: {:?}",
        handled(&member)
    );
}
