//! One fake coordinator for this crate's unit tests, integration tests and
//! fuzz targets: a broker on 127.0.0.1 that answers from a script and
//! records what it was sent.
//!
//! [`FakeCoordinator::start`] is every group's coordinator: ApiVersions and
//! FindCoordinator answer by themselves, group requests from a script per
//! API ([`Reply`]); [`FakeCoordinator::strict`] answers every request,
//! ApiVersions included, with the next reply in line (raw frames, garbage,
//! silence), for the connection layer and the fuzz targets. Behind
//! `cfg(test)` or feature `unstable-fuzzing`.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use bytes::{Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        api_versions_response::ApiVersion,
        find_coordinator_response::Coordinator as WireCoordinator,
        join_group_response::JoinGroupResponseMember,
        leave_group_response::MemberResponse,
        offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
        offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
            OffsetFetchResponseTopic, OffsetFetchResponseTopics,
        },
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest,
        FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
        JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest,
        OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SaslAuthenticateRequest,
        SaslHandshakeRequest, SyncGroupRequest, SyncGroupResponse, TopicName,
    },
    protocol::{decode_request_header_from_buffer, Decodable, Encodable, Message, StrBytes},
    ResponseError,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::AbortHandle,
    time::Instant,
};

use crate::error::KafkaCode;
use crate::payload::{
    Assignment, Subscription, ASSIGNMENT_VERSION, PROTOCOL_TYPE, SUBSCRIPTION_VERSION,
};

/// `message` encoded at `version`.
pub fn encode<M: Encodable>(message: &M, version: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    message.encode(&mut buf, version).expect("encodable");
    buf.to_vec()
}

/// An ApiVersions body advertising every API the connection uses at
/// `kafka-protocol`'s full range, minus `without`.
pub fn api_versions_body(version: i16, without: &[ApiKey]) -> Vec<u8> {
    let ranges = [
        (ApiKey::ApiVersions, ApiVersionsRequest::VERSIONS),
        (ApiKey::SaslHandshake, SaslHandshakeRequest::VERSIONS),
        (ApiKey::SaslAuthenticate, SaslAuthenticateRequest::VERSIONS),
        (ApiKey::FindCoordinator, FindCoordinatorRequest::VERSIONS),
        (ApiKey::JoinGroup, JoinGroupRequest::VERSIONS),
        (ApiKey::SyncGroup, SyncGroupRequest::VERSIONS),
        (ApiKey::Heartbeat, HeartbeatRequest::VERSIONS),
        (ApiKey::LeaveGroup, LeaveGroupRequest::VERSIONS),
        (ApiKey::OffsetCommit, OffsetCommitRequest::VERSIONS),
        (ApiKey::OffsetFetch, OffsetFetchRequest::VERSIONS),
    ];
    let keys = ranges
        .iter()
        .filter(|(key, _)| !without.contains(key))
        .map(|(key, range)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(range.min)
                .with_max_version(range.max)
        })
        .collect();
    encode(&ApiVersionsResponse::default().with_api_keys(keys), version)
}

/// The header of a request the fake read.
#[derive(Debug, Clone, Copy)]
pub struct FakeRequest {
    /// The API key.
    pub key: i16,
    /// The request version.
    pub version: i16,
    /// Its correlation id.
    pub correlation_id: i32,
}

/// Writes `body` as the answer to `req`, with `correlation_id`.
async fn answer(sock: &mut TcpStream, req: &FakeRequest, correlation_id: i32, body: &[u8]) {
    let header_version = ApiKey::try_from(req.key)
        .expect("known key")
        .response_header_version(req.version);
    let mut frame = correlation_id.to_be_bytes().to_vec();
    if header_version >= 1 {
        frame.push(0); // no tagged fields
    }
    frame.extend_from_slice(body);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    let _ = sock.write_all(&out).await;
}

/// The group requests the fake answers from a script of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// JoinGroup.
    Join,
    /// SyncGroup.
    Sync,
    /// Heartbeat.
    Heartbeat,
    /// OffsetCommit.
    Commit,
    /// OffsetFetch.
    Fetch,
    /// LeaveGroup.
    Leave,
}

/// What the fake does with the next request of an API.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answers with this error code ([`KafkaCode::NONE`] = success for
    /// Heartbeat, OffsetCommit — every partition — and LeaveGroup); nothing
    /// else set.
    Code(KafkaCode),
    /// JoinGroup: `MEMBER_ID_REQUIRED` carrying this member id.
    MemberIdRequired(&'static str),
    /// JoinGroup succeeded. The leader gets `members` (member id,
    /// subscribed topics); the protocol is the first one offered.
    Joined {
        generation_id: i32,
        member_id: &'static str,
        leader: &'static str,
        members: Vec<(&'static str, Vec<&'static str>)>,
    },
    /// SyncGroup succeeded with this assignment.
    Assigned(Assignment),
    /// OffsetFetch succeeded: these offsets, `-1` for the other
    /// partitions asked for (as the broker does).
    Offsets(Vec<((&'static str, i32), i64)>),
    /// Closes the connection without answering.
    Close,
    /// Reads the request and never answers.
    Hang,
    /// Goes away: drops the listener and every connection, unanswered.
    Vanish,
    /// ApiVersions advertising every API the connection uses at
    /// `kafka-protocol`'s full range, minus these.
    ApiVersions(&'static [ApiKey]),
    /// ApiVersions answered with UNSUPPORTED_VERSION in the v0 layout,
    /// advertising ApiVersions up to this version.
    ApiVersionsUnsupported(i16),
    /// This body, framed with the request's correlation id.
    Body(Vec<u8>),
    /// This body with a wrong correlation id.
    WrongCorrelation(Vec<u8>),
    /// These bytes, written as they are (no framing); then the connection
    /// is closed.
    Raw(Vec<u8>),
    /// These bytes after the correlation id (the header's tagged fields,
    /// if any, and the body), framed; `wrong` shifts the correlation id.
    AfterCorrelation {
        /// Everything after the correlation id.
        bytes: Vec<u8>,
        /// Answer with another request's correlation id.
        wrong: bool,
    },
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Sent {
    pub api: Api,
    pub member_id: String,
    /// `-1` where the request has none (JoinGroup, OffsetFetch, LeaveGroup).
    pub generation_id: i32,
    pub group_instance_id: Option<String>,
    pub at: Instant,
    /// SyncGroup: the leader's assignments, decoded.
    pub assignments: BTreeMap<String, Assignment>,
    /// OffsetCommit: the offsets.
    pub offsets: BTreeMap<(String, i32), i64>,
}

#[derive(Debug, Default)]
pub struct FakeCoordinator {
    addr: Mutex<String>,
    /// Every request answers the next of these, in order, whatever its API
    /// (a connection's whole conversation); an empty queue closes.
    strict: bool,
    next: Mutex<VecDeque<Reply>>,
    /// (API key, version) of every request received, in order.
    requests: Mutex<Vec<(i16, i16)>>,
    script: Mutex<HashMap<Api, VecDeque<Reply>>>,
    sent: Mutex<Vec<Sent>>,
    /// Requests that found their script empty (answered by closing).
    unscripted: Mutex<Vec<Api>>,
    finds: AtomicUsize,
    connections: AtomicUsize,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl FakeCoordinator {
    /// A one-broker cluster that is every group's coordinator: ApiVersions
    /// and FindCoordinator are answered by themselves, the group requests
    /// from [`script`](Self::script).
    pub async fn start() -> Arc<Self> {
        Self::listen(false, Vec::new()).await
    }

    /// A broker that answers every request, ApiVersions included, with the
    /// next of `replies` (then [`script_next`](Self::script_next)); an
    /// empty queue closes the connection.
    pub async fn strict(replies: Vec<Reply>) -> Arc<Self> {
        Self::listen(true, replies).await
    }

    async fn listen(strict: bool, replies: Vec<Reply>) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let fake = Arc::new(Self {
            addr: Mutex::new(addr.to_string()),
            strict,
            next: Mutex::new(replies.into()),
            ..Self::default()
        });
        let shared = Arc::clone(&fake);
        let accept = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let _ = sock.set_nodelay(true);
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let conn = tokio::spawn(serve(sock, Arc::clone(&shared), addr.port()));
                shared.tasks.lock().expect("lock").push(conn.abort_handle());
            }
        });
        fake.tasks.lock().expect("lock").push(accept.abort_handle());
        fake
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        self.addr.lock().expect("lock").clone()
    }

    /// Replies for whatever requests come next, before any script.
    pub fn script_next(&self, replies: impl IntoIterator<Item = Reply>) {
        self.next.lock().expect("lock").extend(replies);
    }

    /// Like [`script_next`](Self::script_next), dropping what was left.
    pub fn replace_next(&self, replies: impl IntoIterator<Item = Reply>) {
        let mut next = self.next.lock().expect("lock");
        next.clear();
        next.extend(replies);
    }

    /// (API key, version) of every request received, in order.
    pub fn requests(&self) -> Vec<(i16, i16)> {
        self.requests.lock().expect("lock").clone()
    }

    /// Connections accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn script(&self, api: Api, replies: impl IntoIterator<Item = Reply>) {
        self.script
            .lock()
            .expect("lock")
            .entry(api)
            .or_default()
            .extend(replies);
    }

    fn next(&self, api: Api) -> Option<Reply> {
        self.script
            .lock()
            .expect("lock")
            .get_mut(&api)
            .and_then(VecDeque::pop_front)
    }

    pub fn sent(&self, api: Api) -> Vec<Sent> {
        let sent = self.sent.lock().expect("lock");
        sent.iter().filter(|s| s.api == api).cloned().collect()
    }

    /// The APIs of every request, in order.
    pub fn apis(&self) -> Vec<Api> {
        let sent = self.sent.lock().expect("lock");
        sent.iter().map(|s| s.api).collect()
    }

    /// Member ids of the JoinGroups received, in order.
    pub fn join_ids(&self) -> Vec<String> {
        self.sent(Api::Join)
            .into_iter()
            .map(|s| s.member_id)
            .collect()
    }

    pub fn finds(&self) -> usize {
        self.finds.load(Ordering::SeqCst)
    }

    pub fn assert_fully_scripted(&self) {
        assert!(
            self.unscripted.lock().expect("lock").is_empty(),
            "requests without a scripted reply: {:?}",
            self.unscripted.lock().expect("lock")
        );
    }

    /// Drops the listener and every open connection.
    pub fn shutdown(&self) {
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }
}

/// Reads one request: its header, and its body still encoded.
async fn read_frame(sock: &mut TcpStream) -> Option<(FakeRequest, Bytes)> {
    let len = sock.read_i32().await.ok()?;
    let mut buf = vec![0; usize::try_from(len).ok()?];
    sock.read_exact(&mut buf).await.ok()?;
    let mut buf = Bytes::from(buf);
    let header = decode_request_header_from_buffer(&mut buf).expect("request header");
    let req = FakeRequest {
        key: header.request_api_key,
        version: header.request_api_version,
        correlation_id: header.correlation_id,
    };
    Some((req, buf))
}

enum Outcome {
    /// A body, framed with the request's correlation id and header.
    Answer(Vec<u8>),
    /// Bytes after a correlation id, framed.
    Frame {
        bytes: Vec<u8>,
        correlation_id: i32,
    },
    /// Bytes as they are.
    Raw(Vec<u8>),
    Close,
    Hang,
    Vanish,
}

async fn serve(mut sock: TcpStream, fake: Arc<FakeCoordinator>, port: u16) {
    while let Some((req, body)) = read_frame(&mut sock).await {
        fake.requests
            .lock()
            .expect("lock")
            .push((req.key, req.version));
        let next = fake.next.lock().expect("lock").pop_front();
        let outcome = match next {
            Some(reply) if reply.is_raw() => raw(reply, &req),
            Some(reply) => respond_with(&fake, &req, body, Some(reply)),
            None if fake.strict => Outcome::Close,
            None => match ApiKey::try_from(req.key).expect("known api key") {
                ApiKey::ApiVersions => Outcome::Answer(api_versions_body(req.version, &[])),
                ApiKey::FindCoordinator => {
                    fake.finds.fetch_add(1, Ordering::SeqCst);
                    Outcome::Answer(find_coordinator(body, req.version, port))
                }
                _ => respond(&fake, &req, body),
            },
        };
        match outcome {
            Outcome::Answer(out) => answer(&mut sock, &req, req.correlation_id, &out).await,
            Outcome::Frame {
                bytes,
                correlation_id,
            } => {
                let mut frame = correlation_id.to_be_bytes().to_vec();
                frame.extend_from_slice(&bytes);
                let mut out = (frame.len() as i32).to_be_bytes().to_vec();
                out.extend_from_slice(&frame);
                if sock.write_all(&out).await.is_err() {
                    return;
                }
            }
            // Raw bytes may be a partial frame: the end of the
            // connection shows it.
            Outcome::Raw(bytes) => {
                let _ = sock.write_all(&bytes).await;
                return;
            }
            Outcome::Close => return,
            Outcome::Hang => std::future::pending().await,
            Outcome::Vanish => {
                fake.shutdown();
                return;
            }
        }
    }
}

impl Reply {
    /// Answered as it is, whatever the request.
    fn is_raw(&self) -> bool {
        matches!(
            self,
            Reply::ApiVersions(_)
                | Reply::ApiVersionsUnsupported(_)
                | Reply::Body(_)
                | Reply::WrongCorrelation(_)
                | Reply::Raw(_)
                | Reply::AfterCorrelation { .. }
                | Reply::Close
                | Reply::Hang
                | Reply::Vanish
        )
    }
}

/// The outcome of a reply that does not depend on the request's content.
fn raw(reply: Reply, req: &FakeRequest) -> Outcome {
    match reply {
        Reply::ApiVersions(without) => Outcome::Answer(api_versions_body(req.version, without)),
        Reply::ApiVersionsUnsupported(max) => {
            let body = ApiVersionsResponse::default()
                .with_error_code(ResponseError::UnsupportedVersion.code())
                .with_api_keys(vec![ApiVersion::default()
                    .with_api_key(ApiKey::ApiVersions as i16)
                    .with_min_version(0)
                    .with_max_version(max)]);
            Outcome::Answer(encode(&body, 0))
        }
        Reply::Body(body) => Outcome::Answer(body),
        Reply::WrongCorrelation(body) => {
            let mut bytes = Vec::new();
            let header_version = ApiKey::try_from(req.key)
                .expect("known key")
                .response_header_version(req.version);
            if header_version >= 1 {
                bytes.push(0);
            }
            bytes.extend_from_slice(&body);
            Outcome::Frame {
                bytes,
                correlation_id: req.correlation_id + 7,
            }
        }
        Reply::Raw(bytes) => Outcome::Raw(bytes),
        Reply::AfterCorrelation { bytes, wrong } => Outcome::Frame {
            bytes,
            correlation_id: req.correlation_id.wrapping_add(if wrong { 1 } else { 0 }),
        },
        Reply::Hang => Outcome::Hang,
        Reply::Vanish => Outcome::Vanish,
        _ => Outcome::Close,
    }
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn decode<T: Decodable>(mut body: Bytes, version: i16) -> T {
    T::decode(&mut body, version).expect("decodable request")
}

/// Names this broker as the coordinator of whatever group is asked.
fn find_coordinator(body: Bytes, version: i16, port: u16) -> Vec<u8> {
    let r: FindCoordinatorRequest = decode(body, version);
    let host = StrBytes::from_static_str("127.0.0.1");
    let response = if version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(
            r.coordinator_keys
                .into_iter()
                .map(|key| {
                    WireCoordinator::default()
                        .with_key(key)
                        .with_node_id(1.into())
                        .with_host(host.clone())
                        .with_port(i32::from(port))
                })
                .collect(),
        )
    } else {
        FindCoordinatorResponse::default()
            .with_node_id(1.into())
            .with_host(host)
            .with_port(i32::from(port))
    };
    encode(&response, version)
}

/// Records a group request and answers it from its API's script.
fn respond(fake: &FakeCoordinator, req: &FakeRequest, body: Bytes) -> Outcome {
    respond_with(fake, req, body, None)
}

/// Records a group request and answers it with `reply`, or from its API's
/// script.
fn respond_with(
    fake: &FakeCoordinator,
    req: &FakeRequest,
    body: Bytes,
    reply: Option<Reply>,
) -> Outcome {
    let key = ApiKey::try_from(req.key).expect("known api key");
    let v = req.version;
    let api = match key {
        ApiKey::JoinGroup => Api::Join,
        ApiKey::SyncGroup => Api::Sync,
        ApiKey::Heartbeat => Api::Heartbeat,
        ApiKey::OffsetCommit => Api::Commit,
        ApiKey::OffsetFetch => Api::Fetch,
        ApiKey::LeaveGroup => Api::Leave,
        // SASL on a broker that does not expect it, and anything else.
        _ => return Outcome::Close,
    };
    let mut sent = Sent {
        api,
        member_id: String::new(),
        generation_id: -1,
        group_instance_id: None,
        at: Instant::now(),
        assignments: BTreeMap::new(),
        offsets: BTreeMap::new(),
    };
    let reply = reply.or_else(|| fake.next(api));
    let code = |reply: &Option<Reply>| match reply {
        Some(Reply::Code(c)) => c.code(),
        _ => 0,
    };
    let answer = match api {
        Api::Join => {
            let r: JoinGroupRequest = decode(body, v);
            sent.member_id = r.member_id.to_string();
            sent.group_instance_id = r.group_instance_id.map(|i| i.to_string());
            let protocol = r.protocols.first().map(|p| p.name.clone());
            match &reply {
                Some(Reply::MemberIdRequired(id)) => JoinGroupResponse::default()
                    .with_error_code(ResponseError::MemberIdRequired.code())
                    .with_generation_id(-1)
                    .with_member_id(s(id)),
                Some(Reply::Joined {
                    generation_id,
                    member_id,
                    leader,
                    members,
                }) => JoinGroupResponse::default()
                    .with_generation_id(*generation_id)
                    .with_protocol_type((v >= 7).then(|| s(PROTOCOL_TYPE)))
                    .with_protocol_name(protocol)
                    .with_leader(s(leader))
                    .with_member_id(s(member_id))
                    .with_members(
                        members
                            .iter()
                            .map(|(id, topics)| {
                                JoinGroupResponseMember::default()
                                    .with_member_id(s(id))
                                    .with_metadata(
                                        Subscription::new(topics.iter().copied())
                                            .encode(SUBSCRIPTION_VERSION)
                                            .expect("subscription"),
                                    )
                            })
                            .collect(),
                    ),
                _ => JoinGroupResponse::default()
                    .with_error_code(code(&reply))
                    .with_generation_id(-1),
            }
            .pipe(|r| encode(&r, v))
        }
        Api::Sync => {
            let r: SyncGroupRequest = decode(body, v);
            sent.member_id = r.member_id.to_string();
            sent.generation_id = r.generation_id;
            sent.group_instance_id = r.group_instance_id.map(|i| i.to_string());
            sent.assignments = r
                .assignments
                .iter()
                .map(|a| {
                    let assignment = Assignment::decode(&a.assignment).expect("assignment");
                    (a.member_id.to_string(), assignment)
                })
                .collect();
            let response = match &reply {
                Some(Reply::Assigned(a)) => SyncGroupResponse::default()
                    .with_protocol_type((v >= 5).then(|| s(PROTOCOL_TYPE)))
                    .with_protocol_name(r.protocol_name)
                    .with_assignment(a.encode(ASSIGNMENT_VERSION).expect("assignment")),
                _ => SyncGroupResponse::default().with_error_code(code(&reply)),
            };
            encode(&response, v)
        }
        Api::Heartbeat => {
            let r: HeartbeatRequest = decode(body, v);
            sent.member_id = r.member_id.to_string();
            sent.generation_id = r.generation_id;
            sent.group_instance_id = r.group_instance_id.map(|i| i.to_string());
            encode(
                &HeartbeatResponse::default().with_error_code(code(&reply)),
                v,
            )
        }
        Api::Commit => {
            let r: OffsetCommitRequest = decode(body, v);
            sent.member_id = r.member_id.to_string();
            sent.generation_id = r.generation_id_or_member_epoch;
            sent.group_instance_id = r.group_instance_id.map(|i| i.to_string());
            let code = code(&reply);
            let mut topics = Vec::new();
            for t in &r.topics {
                let mut partitions = Vec::new();
                for p in &t.partitions {
                    sent.offsets.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                    partitions.push(
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code),
                    );
                }
                topics.push(
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions),
                );
            }
            encode(&OffsetCommitResponse::default().with_topics(topics), v)
        }
        Api::Fetch => {
            let r: OffsetFetchRequest = decode(body, v);
            let group = r
                .groups
                .first()
                .map_or_else(|| r.group_id.clone(), |g| g.group_id.clone());
            let asked: Vec<(String, Vec<i32>)> = if v >= 8 {
                r.groups
                    .iter()
                    .flat_map(|g| g.topics.iter().flatten())
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            } else {
                r.topics
                    .iter()
                    .flatten()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            };
            let committed: BTreeMap<(String, i32), i64> = match &reply {
                Some(Reply::Offsets(o)) => o
                    .iter()
                    .map(|((t, p), o)| ((t.to_string(), *p), *o))
                    .collect(),
                _ => BTreeMap::new(),
            };
            let (code, asked) = match &reply {
                Some(Reply::Offsets(_)) => (0, asked),
                _ => (code(&reply), Vec::new()),
            };
            let offset = |t: &str, p: i32| *committed.get(&(t.to_owned(), p)).unwrap_or(&-1);
            let response = if v >= 8 {
                let topics = asked
                    .iter()
                    .map(|(t, ps)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(
                                ps.iter()
                                    .map(|&p| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset(t, p))
                                            .with_committed_leader_epoch(-1)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponse::default().with_groups(vec![OffsetFetchResponseGroup::default(
                )
                .with_group_id(group.clone())
                .with_error_code(code)
                .with_topics(topics)])
            } else {
                let topics = asked
                    .iter()
                    .map(|(t, ps)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(
                                ps.iter()
                                    .map(|&p| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset(t, p))
                                            .with_committed_leader_epoch(-1)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponse::default()
                    .with_error_code(code)
                    .with_topics(topics)
            };
            encode(&response, v)
        }
        Api::Leave => {
            let r: LeaveGroupRequest = decode(body, v);
            match r.members.first() {
                Some(m) => {
                    sent.member_id = m.member_id.to_string();
                    sent.group_instance_id = m.group_instance_id.as_ref().map(|i| i.to_string());
                }
                None => sent.member_id = r.member_id.to_string(),
            }
            let code = code(&reply);
            let members = r
                .members
                .iter()
                .map(|m| {
                    MemberResponse::default()
                        .with_member_id(m.member_id.clone())
                        .with_group_instance_id(m.group_instance_id.clone())
                        .with_error_code(code)
                })
                .collect();
            let response = if v >= 3 {
                LeaveGroupResponse::default().with_members(members)
            } else {
                LeaveGroupResponse::default().with_error_code(code)
            };
            encode(&response, v)
        }
    };
    fake.sent.lock().expect("lock").push(sent);
    match reply {
        None => {
            fake.unscripted.lock().expect("lock").push(api);
            Outcome::Close
        }
        Some(Reply::Close) => Outcome::Close,
        Some(Reply::Hang) => Outcome::Hang,
        Some(Reply::Vanish) => Outcome::Vanish,
        Some(_) => Outcome::Answer(answer),
    }
}

/// `value.pipe(f)`: keeps the builder chains above readable.
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}
