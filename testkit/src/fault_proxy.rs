//! A fault-injecting proxy between a client and the real broker, for the
//! produce faults a real broker cannot be made to show on cue: an answer
//! lost after the broker wrote the batch, a request lost on the way, an
//! error code the broker only sends in rare states (`UNKNOWN_PRODUCER_ID`,
//! `DUPLICATE_SEQUENCE_NUMBER`, `INVALID_PRODUCER_EPOCH`). Everything else
//! is the broker's own doing: the proxy forwards each request and answer
//! as it is, rewriting only the broker addresses in `Metadata` answers so
//! the client stays behind the proxy.
//!
//! Faults are keyed by partition and by the number of the produce request
//! to that partition the proxy has seen (0 = the first), so a test names
//! exactly which batch meets which fault.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::{Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        produce_response::{PartitionProduceResponse, TopicProduceResponse},
        ApiKey, MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
    },
    protocol::{Decodable, Encodable, StrBytes},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    task::JoinHandle,
};

/// What happens to one produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded and written by the broker; its answer is dropped and the
    /// client's connection closed (a broker or network failure after the
    /// write).
    LoseAnswer,
    /// Never forwarded, never answered; the connection stays open (a
    /// request lost on the way; the client's request timeout ends it).
    LoseRequest,
    /// Not forwarded; answered with this error code (log start offset 0)
    /// once the requests before it on the connection are answered, as a
    /// broker answers a connection's requests in order. Later requests wait
    /// in the proxy meanwhile.
    Refuse(i16),
    /// Forwarded; the broker's answer gets this error code instead.
    Replace(i16),
}

/// A produce request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenProduce {
    /// Partition.
    pub partition: i32,
    /// Number of the request to this partition, from 0.
    pub nth: usize,
    /// The batch's producer id, epoch and base sequence (-1 without idempotence).
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Base sequence.
    pub base_sequence: i32,
    /// Records in the batch.
    pub records: i32,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
    /// The error code the client got (0 = written), once answered.
    pub answer: Option<i16>,
}

#[derive(Debug, Default)]
struct State {
    faults: BTreeMap<(i32, usize), Fault>,
    produced: BTreeMap<i32, usize>,
    seen: Vec<SeenProduce>,
}

/// The proxy; stops accepting on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on an ephemeral port of 127.0.0.1 in front of `upstream`,
    /// a single broker's `host:port`.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let state = Arc::new(Mutex::new(State::default()));
        let upstream = upstream.to_owned();
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(connection(client, broker, addr, Arc::clone(&shared)));
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    /// The address clients bootstrap from.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Applies `fault` to the `nth` produce request (from 0) to `partition`.
    pub fn inject(&self, partition: i32, nth: usize, fault: Fault) {
        lock(&self.state).faults.insert((partition, nth), fault);
    }

    /// Every produce request seen so far, in arrival order.
    pub fn seen(&self) -> Vec<SeenProduce> {
        lock(&self.state).seen.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the proxy remembers of a request until its answer.
#[derive(Debug, Clone, Copy)]
struct Pending {
    api_key: ApiKey,
    version: i16,
    fault: Option<Fault>,
    /// Its index in [`State::seen`], for a produce request.
    seen: Option<usize>,
}

type PendingMap = Arc<Mutex<HashMap<i32, Pending>>>;

async fn read_frame(r: &mut OwnedReadHalf) -> Option<Bytes> {
    let len = r.read_i32().await.ok()?;
    let mut buf = vec![0; usize::try_from(len).ok()?];
    r.read_exact(&mut buf).await.ok()?;
    Some(buf.into())
}

async fn write_frame(w: &tokio::sync::Mutex<OwnedWriteHalf>, body: &[u8]) -> bool {
    let mut w = w.lock().await;
    let len = i32::try_from(body.len()).expect("frame size");
    w.write_all(&len.to_be_bytes()).await.is_ok() && w.write_all(body).await.is_ok()
}

/// One client connection and its own broker connection.
async fn connection(
    client: TcpStream,
    broker: TcpStream,
    proxy: SocketAddr,
    state: Arc<Mutex<State>>,
) {
    let answered = Arc::clone(&state);
    let (mut client_r, client_w) = client.into_split();
    let (mut broker_r, mut broker_w) = broker.into_split();
    let client_w = Arc::new(tokio::sync::Mutex::new(client_w));
    let pending: PendingMap = Arc::default();

    let answers = {
        let client_w = Arc::clone(&client_w);
        let pending = Arc::clone(&pending);
        tokio::spawn(async move {
            while let Some(frame) = read_frame(&mut broker_r).await {
                let Some(corr) = frame
                    .get(..4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                else {
                    return;
                };
                let p = pending.lock().expect("pending").remove(&corr);
                let out = match p {
                    Some(Pending {
                        fault: Some(Fault::LoseAnswer),
                        ..
                    }) => {
                        // Written, but the client never hears of it.
                        let _ = client_w.lock().await.shutdown().await;
                        return;
                    }
                    Some(Pending {
                        api_key: ApiKey::Produce,
                        version,
                        fault: Some(Fault::Replace(code)),
                        seen,
                    }) => {
                        note_answer(&answered, seen, code);
                        replace_produce_error(frame, version, code)
                    }
                    Some(Pending {
                        api_key: ApiKey::Produce,
                        version,
                        seen,
                        ..
                    }) => {
                        note_answer(&answered, seen, produce_error(&frame, version));
                        frame
                    }
                    Some(Pending {
                        api_key: ApiKey::Metadata,
                        version,
                        ..
                    }) => rewrite_metadata(frame, version, proxy),
                    _ => frame,
                };
                if !write_frame(&client_w, &out).await {
                    return;
                }
            }
            let _ = client_w.lock().await.shutdown().await;
        })
    };

    while let Some(frame) = read_frame(&mut client_r).await {
        let Some((api_key, version, corr)) = header_of(&frame) else {
            break;
        };
        let (fault, seen) = if api_key == ApiKey::Produce {
            produce_fault(&frame, version, &state)
        } else {
            (None, None)
        };
        match fault {
            Some(Fault::LoseRequest) => continue,
            Some(Fault::Refuse(code)) => {
                let earlier = || pending.lock().expect("pending").keys().any(|&c| c < corr);
                let until = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
                while earlier() && tokio::time::Instant::now() < until {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                note_answer(&state, seen, code);
                let answer = refusal(&frame, version, corr, code);
                if !write_frame(&client_w, &answer).await {
                    break;
                }
                continue;
            }
            _ => {}
        }
        pending.lock().expect("pending").insert(
            corr,
            Pending {
                api_key,
                version,
                fault,
                seen,
            },
        );
        let len = i32::try_from(frame.len()).expect("frame size");
        if broker_w.write_all(&len.to_be_bytes()).await.is_err()
            || broker_w.write_all(&frame).await.is_err()
        {
            break;
        }
    }
    let _ = broker_w.shutdown().await;
    answers.abort();
}

/// API key, version and correlation id of a request frame.
fn header_of(frame: &[u8]) -> Option<(ApiKey, i16, i32)> {
    let b = frame.get(..8)?;
    let key = ApiKey::try_from(i16::from_be_bytes([b[0], b[1]])).ok()?;
    Some((
        key,
        i16::from_be_bytes([b[2], b[3]]),
        i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
    ))
}

fn decode_produce(frame: &Bytes, version: i16) -> Option<ProduceRequest> {
    let mut buf = frame.clone();
    RequestHeader::decode(&mut buf, ApiKey::Produce.request_header_version(version)).ok()?;
    ProduceRequest::decode(&mut buf, version).ok()
}

fn note_answer(state: &Mutex<State>, seen: Option<usize>, code: i16) {
    if let Some(i) = seen {
        if let Some(s) = lock(state).seen.get_mut(i) {
            s.answer = Some(code);
        }
    }
}

/// The error code of a produce answer's (first) partition.
fn produce_error(frame: &Bytes, version: i16) -> i16 {
    split_answer(frame.clone(), ApiKey::Produce, version)
        .and_then(|(_, mut body)| ProduceResponse::decode(&mut body, version).ok())
        .and_then(|r| {
            r.responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .map(|p| p.error_code)
        })
        .unwrap_or(-1)
}

/// Counts the request against its partition; returns its fault and its
/// index in [`State::seen`].
fn produce_fault(
    frame: &Bytes,
    version: i16,
    state: &Mutex<State>,
) -> (Option<Fault>, Option<usize>) {
    let Some(request) = decode_produce(frame, version) else {
        return (None, None);
    };
    let Some(data) = request
        .topic_data
        .first()
        .and_then(|t| t.partition_data.first())
    else {
        return (None, None);
    };
    let batch = data.records.as_deref().unwrap_or_default();
    let at = |i: usize, n: usize| batch.get(i..i + n);
    let producer_id = at(43, 8).map_or(-1, |b| i64::from_be_bytes(b.try_into().expect("8")));
    let epoch = at(51, 2).map_or(-1, |b| i16::from_be_bytes(b.try_into().expect("2")));
    let base_sequence = at(53, 4).map_or(-1, |b| i32::from_be_bytes(b.try_into().expect("4")));
    let records = at(57, 4).map_or(0, |b| i32::from_be_bytes(b.try_into().expect("4")));
    let mut s = lock(state);
    let nth = {
        let n = s.produced.entry(data.index).or_default();
        *n += 1;
        *n - 1
    };
    let fault = s.faults.remove(&(data.index, nth));
    s.seen.push(SeenProduce {
        partition: data.index,
        nth,
        producer_id,
        epoch,
        base_sequence,
        records,
        fault,
        answer: None,
    });
    (fault, Some(s.seen.len() - 1))
}

fn encode_answer(corr: i32, api_key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
    let mut out = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(corr)
        .encode(&mut out, api_key.response_header_version(version))
        .expect("encode header");
    body.encode(&mut out, version).expect("encode answer");
    out.freeze()
}

/// A produce answer with `code` for the request's partition, as if the
/// broker had sent it.
fn refusal(frame: &Bytes, version: i16, corr: i32, code: i16) -> Bytes {
    let request = decode_produce(frame, version).expect("a produce request");
    let topic = request.topic_data.first().expect("one topic");
    let partition = topic.partition_data.first().expect("one partition");
    let response = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(topic.name.clone())
        .with_partition_responses(vec![PartitionProduceResponse::default()
            .with_index(partition.index)
            .with_error_code(code)
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(0)])]);
    encode_answer(corr, ApiKey::Produce, version, &response)
}

fn split_answer(frame: Bytes, key: ApiKey, version: i16) -> Option<(ResponseHeader, Bytes)> {
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, key.response_header_version(version)).ok()?;
    Some((header, buf))
}

fn replace_produce_error(frame: Bytes, version: i16, code: i16) -> Bytes {
    let Some((header, mut body)) = split_answer(frame.clone(), ApiKey::Produce, version) else {
        return frame;
    };
    let Ok(mut response) = ProduceResponse::decode(&mut body, version) else {
        return frame;
    };
    for p in response
        .responses
        .iter_mut()
        .flat_map(|t| t.partition_responses.iter_mut())
    {
        p.error_code = code;
    }
    encode_answer(header.correlation_id, ApiKey::Produce, version, &response)
}

/// The broker's `Metadata` answer with every broker at the proxy's address.
fn rewrite_metadata(frame: Bytes, version: i16, proxy: SocketAddr) -> Bytes {
    let Some((header, mut body)) = split_answer(frame.clone(), ApiKey::Metadata, version) else {
        return frame;
    };
    let Ok(mut response) = MetadataResponse::decode(&mut body, version) else {
        return frame;
    };
    for b in &mut response.brokers {
        b.host = StrBytes::from_string(proxy.ip().to_string());
        b.port = i32::from(proxy.port());
    }
    encode_answer(header.correlation_id, ApiKey::Metadata, version, &response)
}
