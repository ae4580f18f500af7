//! One trace from producer to consumer: both binaries export OTLP/HTTP to a
//! receiver in this test, which decodes the protobuf and checks that every
//! consumer `process` span is a child of the producer `send` span of the same
//! record, and that the consumer's log line carries that trace id.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, routing::post, Router};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::any_value::Value,
};
use prost::Message;
use testkit::{
    broker::{bootstrap, create_topic},
    process::{service_bin, sigterm},
    services::spawn_producer,
    unique,
};

#[derive(Debug, Clone)]
struct SpanSeen {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attrs: BTreeMap<String, String>,
}

type Spans = Arc<Mutex<Vec<SpanSeen>>>;

async fn receive(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
    if let Ok(req) = ExportTraceServiceRequest::decode(body) {
        let mut out = spans.lock().expect("lock");
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref().map(text))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(SpanSeen {
                        service: service.clone(),
                        name: s.name,
                        kind: s.kind,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        attrs: s
                            .attributes
                            .iter()
                            .filter_map(|kv| {
                                Some((kv.key.clone(), text(kv.value.as_ref()?.value.as_ref()?)))
                            })
                            .collect(),
                    });
                }
            }
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

fn text(v: &Value) -> String {
    match v {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const SPAN_KIND_PRODUCER: i32 = 4;
const SPAN_KIND_CONSUMER: i32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_span_is_a_child_of_its_send_span() {
    let bootstrap = bootstrap();
    let topic = unique("traced");
    let group = unique("g-traced");
    create_topic(&topic, 3).await;

    let spans: Spans = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(Arc::clone(&spans));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tmp");
    let consumer_log = dir.path().join("consumer.log");
    let out = std::fs::File::create(&consumer_log).expect("log");
    let mut consumer = Command::new(service_bin("consumer"))
        .env_clear()
        .envs([
            ("KAFKA_BOOTSTRAP_SERVER", bootstrap.as_str()),
            ("KAFKA_TOPIC", topic.as_str()),
            ("KAFKA_CONSUMER_GROUP", group.as_str()),
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("LOG_FORMAT", "json"),
            ("CONSUMER_SESSION_TIMEOUT_MS", "10000"),
            ("CONSUMER_DRAIN_TIMEOUT_MS", "4000"),
            ("CONSUMER_COMMIT_INTERVAL_MS", "500"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "test-consumer"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ])
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("consumer");
    let read_log = || std::fs::read_to_string(&consumer_log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !read_log().contains("assignment received") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The producer Job exits right after the last ack: its spans must still arrive.
    let produced = Command::new(service_bin("producer"))
        .env_clear()
        .envs([
            ("KAFKA_BOOTSTRAP_SERVER", bootstrap.as_str()),
            ("KAFKA_TOPIC", topic.as_str()),
            ("PRODUCER_MESSAGES", "30"),
            ("PRODUCER_KEY_TEMPLATE", "key-{seq}"),
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("LOG_FORMAT", "json"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ])
        .output()
        .expect("producer");
    assert_eq!(
        produced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&produced.stdout)
    );
    // Records from a producer that does not trace (in-process, no telemetry).
    let p = spawn_producer(&[("KAFKA_TOPIC", &topic), ("PRODUCER_MESSAGES", "5")]).await;
    assert_eq!(p.handle.await.expect("join").expect("produced").acked, 5);

    let records = || {
        read_log()
            .lines()
            .filter(|l| l.contains("\"message\":\"record\""))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while records() < 35 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(records(), 35);
    sigterm(consumer.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while consumer.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = consumer.kill();

    let spans = spans.lock().expect("lock").clone();
    let sends: Vec<&SpanSeen> = spans
        .iter()
        .filter(|s| s.name == format!("send {topic}"))
        .collect();
    let processes: Vec<&SpanSeen> = spans
        .iter()
        .filter(|s| s.name == format!("process {topic}"))
        .collect();
    assert_eq!(
        sends.len(),
        30,
        "every send span exported before the Job exited"
    );
    assert_eq!(processes.len(), 35, "every record got a process span");

    let by_record: BTreeMap<(String, String), &SpanSeen> = processes
        .iter()
        .map(|s| {
            let k = (
                s.attrs["messaging.destination.partition.id"].clone(),
                s.attrs["messaging.kafka.offset"].clone(),
            );
            (k, *s)
        })
        .collect();
    for send in &sends {
        assert_eq!(send.kind, SPAN_KIND_PRODUCER);
        assert_eq!(send.service, "producer");
        assert_eq!(send.attrs["messaging.system"], "kafka");
        assert_eq!(send.attrs["messaging.destination.name"], topic);
        assert_eq!(send.attrs["messaging.operation.type"], "send");
        assert_eq!(send.attrs["server.address"], "127.0.0.1");
        assert!(send.attrs["messaging.kafka.message.key"].starts_with("key-"));
        let key = (
            send.attrs["messaging.destination.partition.id"].clone(),
            send.attrs["messaging.kafka.offset"].clone(),
        );
        let process = by_record
            .get(&key)
            .unwrap_or_else(|| panic!("no process span for {key:?}"));
        assert_eq!(process.trace_id, send.trace_id, "same trace");
        assert_eq!(
            process.parent_span_id, send.span_id,
            "child of the send span"
        );
        assert_eq!(process.kind, SPAN_KIND_CONSUMER);
        assert_eq!(process.service, "test-consumer");
        assert_eq!(process.attrs["messaging.consumer.group.name"], group);
        assert_eq!(process.attrs["messaging.operation.type"], "process");
    }
    let send_traces: std::collections::BTreeSet<&str> =
        sends.iter().map(|s| s.trace_id.as_str()).collect();
    let untraced: Vec<&&SpanSeen> = processes
        .iter()
        .filter(|p| !send_traces.contains(p.trace_id.as_str()))
        .collect();
    assert_eq!(untraced.len(), 5, "records without headers still get spans");
    assert!(
        untraced.iter().all(|p| p.parent_span_id.is_empty()),
        "as roots"
    );

    // The log line of each record carries its process span's ids (Loki → Tempo).
    let ids: std::collections::BTreeSet<(String, String)> = processes
        .iter()
        .map(|p| (p.trace_id.clone(), p.span_id.clone()))
        .collect();
    for line in read_log()
        .lines()
        .filter(|l| l.contains("\"message\":\"record\""))
    {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        let pair = (
            v["trace_id"].as_str().unwrap_or_default().to_owned(),
            v["span_id"].as_str().unwrap_or_default().to_owned(),
        );
        assert!(
            ids.contains(&pair),
            "log line ids {pair:?} match a process span"
        );
    }
}
