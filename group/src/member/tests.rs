//! The driver against a scripted fake coordinator: every error code of
//! the issue, handled the way Java's classic consumer does, checked on
//! what the driver *sent*.

use std::{
    collections::{HashMap, VecDeque},
    future::{ready, Ready},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        find_coordinator_response::Coordinator as WireCoordinator,
        join_group_response::JoinGroupResponseMember,
        leave_group_response::MemberResponse,
        offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
        offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
            OffsetFetchResponseTopic, OffsetFetchResponseTopics,
        },
        ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest,
        HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
        LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
        OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
    },
    protocol::{decode_request_header_from_buffer, Decodable, StrBytes},
};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    task::AbortHandle,
    time::{timeout, Instant},
};

use kafka_base::security::SecurityProtocol;
use tokio::sync::mpsc;

use super::*;
use crate::{
    error::GroupApi,
    payload::PROTOCOL_TYPE,
    wire::{
        tests::{answer, api_versions_body, encode, FakeRequest},
        ConnectionConfig,
    },
};

// Kafka error codes, named as in Java's `Errors`.
const NONE: i16 = 0;
const UNKNOWN_SERVER_ERROR: i16 = -1;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;

const GROUP: &str = "payments";
const INSTANCE: &str = "payments-0";
/// Bounds every driver call: a hang fails the test instead of CI.
const LIMIT: Duration = Duration::from_secs(10);
const SESSION: Duration = Duration::from_millis(500);
const HEARTBEAT: Duration = Duration::from_millis(50);

// ---- the fake coordinator --------------------------------------------

/// The group APIs the fake answers from its script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Api {
    Join,
    Sync,
    Heartbeat,
    Commit,
    Fetch,
    Leave,
}

/// What the fake does with the next request of an API.
#[derive(Debug, Clone)]
enum Reply {
    /// Answers with this error code (0 = success for Heartbeat,
    /// OffsetCommit — every partition — and LeaveGroup); nothing else set.
    Code(i16),
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
}

/// One request the fake received.
#[derive(Debug, Clone)]
struct Sent {
    api: Api,
    member_id: String,
    /// `-1` where the request has none (JoinGroup, OffsetFetch, LeaveGroup).
    generation_id: i32,
    group_instance_id: Option<String>,
    at: Instant,
    /// SyncGroup: the leader's assignments, decoded.
    assignments: BTreeMap<String, Assignment>,
    /// OffsetCommit: the offsets.
    offsets: BTreeMap<(String, i32), i64>,
}

#[derive(Debug, Default)]
struct Fake {
    script: Mutex<HashMap<Api, VecDeque<Reply>>>,
    sent: Mutex<Vec<Sent>>,
    /// Requests that found their script empty (answered by closing).
    unscripted: Mutex<Vec<Api>>,
    finds: AtomicUsize,
    connections: AtomicUsize,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Fake {
    fn script(&self, api: Api, replies: impl IntoIterator<Item = Reply>) {
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

    fn sent(&self, api: Api) -> Vec<Sent> {
        let sent = self.sent.lock().expect("lock");
        sent.iter().filter(|s| s.api == api).cloned().collect()
    }

    /// The APIs of every request, in order.
    fn apis(&self) -> Vec<Api> {
        let sent = self.sent.lock().expect("lock");
        sent.iter().map(|s| s.api).collect()
    }

    /// Member ids of the JoinGroups received, in order.
    fn join_ids(&self) -> Vec<String> {
        self.sent(Api::Join)
            .into_iter()
            .map(|s| s.member_id)
            .collect()
    }

    fn finds(&self) -> usize {
        self.finds.load(Ordering::SeqCst)
    }

    fn assert_fully_scripted(&self) {
        assert!(
            self.unscripted.lock().expect("lock").is_empty(),
            "requests without a scripted reply: {:?}",
            self.unscripted.lock().expect("lock")
        );
    }

    /// Drops the listener and every open connection.
    fn shutdown(&self) {
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }
}

/// A one-broker cluster that is `GROUP`'s coordinator.
async fn fake_coordinator() -> (String, Arc<Fake>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fake = Arc::new(Fake::default());
    let shared = Arc::clone(&fake);
    let accept = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let conn = tokio::spawn(serve(sock, Arc::clone(&shared), addr.port()));
            shared.tasks.lock().expect("lock").push(conn.abort_handle());
        }
    });
    fake.tasks.lock().expect("lock").push(accept.abort_handle());
    (addr.to_string(), fake)
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
    Answer(Vec<u8>),
    Close,
    Hang,
    Vanish,
}

async fn serve(mut sock: TcpStream, fake: Arc<Fake>, port: u16) {
    while let Some((req, body)) = read_frame(&mut sock).await {
        let key = ApiKey::try_from(req.key).expect("known api key");
        let outcome = match key {
            ApiKey::ApiVersions => Outcome::Answer(api_versions_body(req.version, &[])),
            ApiKey::FindCoordinator => {
                fake.finds.fetch_add(1, Ordering::SeqCst);
                Outcome::Answer(find_coordinator(body, req.version, port))
            }
            _ => respond(&fake, key, req.version, body),
        };
        match outcome {
            Outcome::Answer(out) => answer(&mut sock, &req, req.correlation_id, &out).await,
            Outcome::Close => return,
            Outcome::Hang => std::future::pending().await,
            Outcome::Vanish => {
                fake.shutdown();
                return;
            }
        }
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

/// Records a group request and answers it from the script.
fn respond(fake: &Fake, key: ApiKey, v: i16, body: Bytes) -> Outcome {
    let api = match key {
        ApiKey::JoinGroup => Api::Join,
        ApiKey::SyncGroup => Api::Sync,
        ApiKey::Heartbeat => Api::Heartbeat,
        ApiKey::OffsetCommit => Api::Commit,
        ApiKey::OffsetFetch => Api::Fetch,
        ApiKey::LeaveGroup => Api::Leave,
        other => panic!("the driver sent an unexpected {other:?}"),
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
    let reply = fake.next(api);
    let code = |reply: &Option<Reply>| match reply {
        Some(Reply::Code(c)) => *c,
        _ => NONE,
    };
    let answer = match api {
        Api::Join => {
            let r: JoinGroupRequest = decode(body, v);
            sent.member_id = r.member_id.to_string();
            sent.group_instance_id = r.group_instance_id.map(|i| i.to_string());
            let protocol = r.protocols.first().map(|p| p.name.clone());
            match &reply {
                Some(Reply::MemberIdRequired(id)) => JoinGroupResponse::default()
                    .with_error_code(MEMBER_ID_REQUIRED)
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
                Some(Reply::Offsets(_)) => (NONE, asked),
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
                .with_group_id(GroupId(s(GROUP)))
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

// ---- the member ------------------------------------------------------

fn settings(group_instance_id: Option<&str>) -> MemberSettings {
    MemberSettings {
        group: GROUP.to_owned(),
        group_instance_id: group_instance_id.map(str::to_owned),
        topics: vec!["t1".to_owned(), "t2".to_owned()],
        assignors: vec!["range".to_owned()],
        session_timeout: SESSION,
        heartbeat_interval: HEARTBEAT,
        rebalance_timeout: Duration::from_secs(1),
        backoff: Backoff::new(Duration::from_millis(2), Duration::from_millis(10)),
    }
}

fn member(addr: &str, group_instance_id: Option<&str>) -> Member {
    let config = ConnectionConfig::new(
        "unit-test",
        SecurityProtocol::Plaintext,
        None,
        None,
        Duration::from_secs(2),
    )
    .expect("config");
    let settings = settings(group_instance_id);
    let client = CoordinatorClient::new(
        config,
        vec![addr.to_owned()],
        settings.group.clone(),
        settings.group_instance_id.clone(),
    );
    Member::new(client, settings)
}

type Counts = Ready<Result<BTreeMap<String, i32>, String>>;
/// The topic lists the leader asked partition counts for.
type Asked = Arc<Mutex<Vec<Vec<String>>>>;

/// For followers, who never compute an assignment.
fn no_metadata(topics: Vec<String>) -> Counts {
    ready(Err(format!("a follower asked for metadata of {topics:?}")))
}

/// Partition counts for the leader; records what it was asked for.
fn metadata(counts: &[(&str, i32)]) -> (impl Fn(Vec<String>) -> Counts, Asked) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let counts: BTreeMap<String, i32> = counts.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect();
    let record = Arc::clone(&asked);
    let f = move |topics: Vec<String>| {
        record.lock().expect("lock").push(topics);
        ready(Ok(counts.clone()))
    };
    (f, asked)
}

async fn join<F>(member: &mut Member, counts: F) -> Result<Assignment, SessionError>
where
    F: Fn(Vec<String>) -> Counts,
{
    timeout(LIMIT, member.join(counts, &CancellationToken::new()))
        .await
        .expect("join finished in time")
}

fn assignment(partitions: &[(&str, &[i32])]) -> Assignment {
    Assignment::new(
        partitions
            .iter()
            .map(|(t, ps)| TopicPartitions::new(*t, ps.to_vec()))
            .collect(),
    )
}

fn held() -> Assignment {
    assignment(&[("t1", &[0, 1]), ("t2", &[0])])
}

fn joined_follower(generation_id: i32, member_id: &'static str) -> Reply {
    Reply::Joined {
        generation_id,
        member_id,
        leader: "leader-0",
        members: Vec::new(),
    }
}

/// A member that joined generation 1 as `m-1`, a follower holding [`held`].
async fn stable_member(group_instance_id: Option<&str>) -> (Member, Arc<Fake>) {
    let (addr, fake) = fake_coordinator().await;
    fake.script(Api::Join, [joined_follower(1, "m-1")]);
    fake.script(Api::Sync, [Reply::Assigned(held())]);
    let mut member = member(&addr, group_instance_id);
    assert_eq!(
        join(&mut member, no_metadata).await.expect("joined"),
        held()
    );
    assert_eq!(member.generation().generation_id, 1);
    assert_eq!(member.revocation_pending(), None);
    (member, fake)
}

fn offsets(positions: &[((&str, i32), i64)]) -> Vec<OffsetToCommit> {
    offsets_to_commit(
        &positions
            .iter()
            .map(|((t, p), o)| (((*t).to_owned(), *p), *o))
            .collect(),
    )
}

fn report(member: &Member, code: i16) -> HeartbeatReport {
    HeartbeatReport::Error {
        sent: member.generation().clone(),
        code,
    }
}

// ---- joining ---------------------------------------------------------

#[tokio::test]
async fn first_join_member_id_required_then_leads_with_range() {
    let (addr, fake) = fake_coordinator().await;
    fake.script(
        Api::Join,
        [
            Reply::MemberIdRequired("m-1"),
            Reply::Joined {
                generation_id: 1,
                member_id: "m-1",
                leader: "m-1",
                members: vec![("m-1", vec!["t1", "t2"]), ("m-2", vec!["t1"])],
            },
        ],
    );
    let ours = assignment(&[("t1", &[0, 1]), ("t2", &[0, 1])]);
    fake.script(Api::Sync, [Reply::Assigned(ours.clone())]);
    let mut member = member(&addr, None);
    let (counts, asked) = metadata(&[("t1", 3), ("t2", 2)]);

    assert_eq!(join(&mut member, counts).await.expect("joined"), ours);

    // The first join has no id; the second carries exactly the one
    // MEMBER_ID_REQUIRED returned.
    assert_eq!(fake.join_ids(), ["", "m-1"]);
    assert_eq!(
        fake.apis(),
        [Api::Join, Api::Join, Api::Sync],
        "nothing else was sent"
    );
    // The leader asked for the subscribed topics of the whole group...
    assert_eq!(*asked.lock().expect("lock"), [vec!["t1", "t2"]]);
    // ...and sent the range assignment for every member.
    let sync = &fake.sent(Api::Sync)[0];
    assert_eq!((sync.member_id.as_str(), sync.generation_id), ("m-1", 1));
    assert_eq!(
        sync.assignments,
        BTreeMap::from([
            ("m-1".to_owned(), ours),
            ("m-2".to_owned(), assignment(&[("t1", &[2])])),
        ])
    );
    assert_eq!(member.generation().member_id, "m-1");
    assert_eq!(member.generation().generation_id, 1);
    assert_eq!(fake.finds(), 1);
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn join_not_coordinator_and_coordinator_not_available_rediscover() {
    let (addr, fake) = fake_coordinator().await;
    fake.script(
        Api::Join,
        [
            Reply::MemberIdRequired("m-1"),
            Reply::Code(NOT_COORDINATOR),
            Reply::Code(COORDINATOR_NOT_AVAILABLE),
            joined_follower(1, "m-1"),
        ],
    );
    fake.script(Api::Sync, [Reply::Assigned(held())]);
    let mut member = member(&addr, None);

    assert_eq!(
        join(&mut member, no_metadata).await.expect("joined"),
        held()
    );

    assert_eq!(fake.join_ids(), ["", "m-1", "m-1", "m-1"]);
    assert_eq!(fake.finds(), 3, "one FindCoordinator per coordinator error");
    assert_eq!(fake.connections.load(Ordering::SeqCst), 3);
    let sync = &fake.sent(Api::Sync)[0];
    assert!(sync.assignments.is_empty(), "a follower assigns nothing");
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn join_coordinator_load_in_progress_retries_on_the_same_coordinator() {
    let (addr, fake) = fake_coordinator().await;
    fake.script(
        Api::Join,
        [
            Reply::MemberIdRequired("m-1"),
            Reply::Code(COORDINATOR_LOAD_IN_PROGRESS),
            Reply::Code(COORDINATOR_LOAD_IN_PROGRESS),
            joined_follower(1, "m-1"),
        ],
    );
    fake.script(Api::Sync, [Reply::Assigned(held())]);
    let mut member = member(&addr, None);

    assert_eq!(
        join(&mut member, no_metadata).await.expect("joined"),
        held()
    );

    assert_eq!(fake.join_ids(), ["", "m-1", "m-1", "m-1"]);
    assert_eq!(fake.finds(), 1, "no rediscovery");
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn sync_rebalance_in_progress_rejoins_with_the_same_member_id() {
    let (addr, fake) = fake_coordinator().await;
    let leader = |generation_id| Reply::Joined {
        generation_id,
        member_id: "m-1",
        leader: "m-1",
        members: vec![("m-1", vec!["t1", "t2"])],
    };
    fake.script(Api::Join, [leader(1), leader(2)]);
    let ours = assignment(&[("t1", &[0]), ("t2", &[0])]);
    fake.script(
        Api::Sync,
        [
            Reply::Code(REBALANCE_IN_PROGRESS),
            Reply::Assigned(ours.clone()),
        ],
    );
    let mut member = member(&addr, None);
    let (counts, asked) = metadata(&[("t1", 1), ("t2", 1)]);

    assert_eq!(join(&mut member, counts).await.expect("joined"), ours);

    assert_eq!(fake.apis(), [Api::Join, Api::Sync, Api::Join, Api::Sync]);
    assert_eq!(fake.join_ids(), ["", "m-1"]);
    let syncs: Vec<_> = fake
        .sent(Api::Sync)
        .into_iter()
        .map(|s| (s.member_id, s.generation_id, s.assignments.len()))
        .collect();
    assert_eq!(syncs, [("m-1".into(), 1, 1), ("m-1".into(), 2, 1)]);
    assert_eq!(
        asked.lock().expect("lock").len(),
        2,
        "assigned per generation"
    );
    assert_eq!(member.generation().generation_id, 2);
    assert_eq!(fake.finds(), 1);
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn join_unknown_member_id_rejoins_as_a_new_member() {
    let (addr, fake) = fake_coordinator().await;
    fake.script(
        Api::Join,
        [
            Reply::MemberIdRequired("m-1"),
            Reply::Code(UNKNOWN_MEMBER_ID),
            Reply::MemberIdRequired("m-2"),
            joined_follower(1, "m-2"),
        ],
    );
    fake.script(Api::Sync, [Reply::Assigned(held())]);
    let mut member = member(&addr, None);

    assert_eq!(
        join(&mut member, no_metadata).await.expect("joined"),
        held()
    );

    assert_eq!(fake.join_ids(), ["", "m-1", "", "m-2"]);
    assert_eq!(fake.sent(Api::Sync)[0].member_id, "m-2");
    assert_eq!(member.generation().member_id, "m-2");
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn join_fenced_instance_id_is_fatal() {
    let (addr, fake) = fake_coordinator().await;
    fake.script(Api::Join, [Reply::Code(FENCED_INSTANCE_ID)]);
    let mut member = member(&addr, Some(INSTANCE));

    let e = join(&mut member, no_metadata).await.expect_err("fenced");

    assert!(e.is_fatal(), "{e:?}");
    assert!(
        matches!(
            &e,
            SessionError::Fatal(GroupError::FencedInstanceId {
                api: GroupApi::JoinGroup,
                ..
            })
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains(&format!("'{GROUP}'")), "{text}");
    assert!(text.contains("FENCED_INSTANCE_ID (82)"), "{text}");
    let joins = fake.sent(Api::Join);
    assert_eq!(joins.len(), 1, "no retry after a fatal error");
    assert_eq!(joins[0].group_instance_id.as_deref(), Some(INSTANCE));
    // It stays fatal: a second join sends nothing.
    assert!(join(&mut member, no_metadata)
        .await
        .expect_err("fatal")
        .is_fatal());
    assert_eq!(fake.apis(), [Api::Join]);
}

#[tokio::test]
async fn connections_closed_mid_join_and_mid_sync_rediscover() {
    let (addr, fake) = fake_coordinator().await;
    fake.script(
        Api::Join,
        [
            Reply::Close,
            joined_follower(1, "m-1"),
            joined_follower(2, "m-1"),
        ],
    );
    fake.script(Api::Sync, [Reply::Close, Reply::Assigned(held())]);
    let mut member = member(&addr, None);

    assert_eq!(
        join(&mut member, no_metadata).await.expect("joined"),
        held()
    );

    // A SyncGroup that fails on the connection restarts from JoinGroup,
    // keeping the member id.
    assert_eq!(
        fake.apis(),
        [Api::Join, Api::Join, Api::Sync, Api::Join, Api::Sync]
    );
    assert_eq!(fake.join_ids(), ["", "", "m-1"]);
    assert_eq!(fake.finds(), 3, "rediscovered after each closed connection");
    assert_eq!(member.generation().generation_id, 2);
    fake.assert_fully_scripted();
}

// ---- a stable member's heartbeat reports -----------------------------

#[tokio::test]
async fn heartbeat_rebalance_in_progress_revokes_commits_and_rejoins() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(Api::Commit, [Reply::Code(NONE)]);
    fake.script(Api::Join, [joined_follower(2, "m-1")]);
    fake.script(Api::Sync, [Reply::Assigned(held())]);

    let action = member.on_heartbeat(report(&member, REBALANCE_IN_PROGRESS));
    assert!(matches!(action, Action::Rejoin { .. }), "{action:?}");
    assert_eq!(
        member.revocation_pending(),
        Some(false),
        "revoke, may commit"
    );

    // The revocation commit goes out with the generation being left.
    timeout(
        LIMIT,
        member.commit(&offsets(&[(("t1", 0), 10), (("t2", 0), 7)])),
    )
    .await
    .expect("in time")
    .expect("committed");
    let commit = &fake.sent(Api::Commit)[0];
    assert_eq!(
        (commit.member_id.as_str(), commit.generation_id),
        ("m-1", 1)
    );
    assert_eq!(
        commit.offsets,
        BTreeMap::from([(("t1".to_owned(), 0), 10), (("t2".to_owned(), 0), 7)])
    );

    member.revocation_done();
    assert_eq!(
        join(&mut member, no_metadata).await.expect("rejoined"),
        held()
    );
    assert_eq!(fake.join_ids(), ["", "m-1"]);
    assert_eq!(member.generation().generation_id, 2);
    assert_eq!(member.revocation_pending(), None);
    fake.assert_fully_scripted();
}

/// ILLEGAL_GENERATION keeps the member id (Java 3.2+), UNKNOWN_MEMBER_ID
/// does not; both lose the partitions.
#[tokio::test]
async fn heartbeat_illegal_generation_and_unknown_member_id_lose_partitions() {
    for (code, rejoin_id) in [(ILLEGAL_GENERATION, "m-1"), (UNKNOWN_MEMBER_ID, "")] {
        let (mut member, fake) = stable_member(None).await;
        fake.script(Api::Join, [joined_follower(2, "m-1")]);
        fake.script(Api::Sync, [Reply::Assigned(held())]);

        let action = member.on_heartbeat(report(&member, code));
        assert!(
            matches!(
                action,
                Action::Rejoin {
                    reset_generation: true,
                    ..
                }
            ),
            "{code}: {action:?}"
        );
        assert_eq!(member.revocation_pending(), Some(true), "{code}: lost");
        // Lost partitions are not committed: refused before sending.
        let e = member
            .commit(&offsets(&[(("t1", 0), 10)]))
            .await
            .expect_err("no commit generation");
        assert!(matches!(e, SessionError::Commit { .. }), "{code}: {e:?}");

        member.revocation_done();
        join(&mut member, no_metadata).await.expect("rejoined");
        assert_eq!(fake.join_ids(), ["", rejoin_id], "{code}");
        assert!(fake.sent(Api::Commit).is_empty(), "{code}");
        fake.assert_fully_scripted();
    }
}

#[tokio::test]
async fn heartbeat_fenced_instance_id_is_fatal() {
    let (mut member, fake) = stable_member(Some(INSTANCE)).await;
    let action = member.on_heartbeat(report(&member, FENCED_INSTANCE_ID));
    assert!(
        matches!(
            &action,
            Action::Fatal(GroupError::FencedInstanceId {
                api: GroupApi::Heartbeat,
                ..
            })
        ),
        "{action:?}"
    );
    assert!(join(&mut member, no_metadata)
        .await
        .expect_err("fatal")
        .is_fatal());
    assert_eq!(fake.apis(), [Api::Join, Api::Sync], "nothing sent after");
}

// ---- commits -----------------------------------------------------------

#[tokio::test]
async fn commit_rebalance_in_progress_fails_and_asks_for_revocation() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(
        Api::Commit,
        [Reply::Code(REBALANCE_IN_PROGRESS), Reply::Code(NONE)],
    );

    let e = member
        .commit(&offsets(&[(("t1", 0), 10)]))
        .await
        .expect_err("rebalancing");
    assert!(matches!(e, SessionError::Commit { .. }), "{e:?}");
    assert!(e.to_string().contains("REBALANCE_IN_PROGRESS (27)"), "{e}");
    assert_eq!(member.revocation_pending(), Some(false));
    // The revocation commit may still go out, for the same generation.
    member
        .commit(&offsets(&[(("t1", 0), 11)]))
        .await
        .expect("revocation commit");
    let generations: Vec<_> = fake
        .sent(Api::Commit)
        .into_iter()
        .map(|s| (s.member_id, s.generation_id))
        .collect();
    assert_eq!(generations, [("m-1".into(), 1), ("m-1".into(), 1)]);
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn commit_illegal_generation_and_unknown_member_id_refuse_the_next_commit() {
    for code in [ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID] {
        let (mut member, fake) = stable_member(None).await;
        fake.script(Api::Commit, [Reply::Code(code)]);

        let e = member
            .commit(&offsets(&[(("t1", 0), 10)]))
            .await
            .expect_err("stale");
        assert!(matches!(e, SessionError::Commit { .. }), "{code}: {e:?}");
        assert_eq!(member.revocation_pending(), Some(true), "{code}: lost");

        let e = member
            .commit(&offsets(&[(("t1", 0), 11)]))
            .await
            .expect_err("refused locally");
        assert!(
            e.to_string().contains("not a member of a generation"),
            "{e}"
        );
        assert_eq!(fake.sent(Api::Commit).len(), 1, "{code}: nothing sent");
        fake.assert_fully_scripted();
    }
}

#[tokio::test]
async fn commit_not_coordinator_rediscovers_on_the_next_commit() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(
        Api::Commit,
        [Reply::Code(NOT_COORDINATOR), Reply::Code(NONE)],
    );

    let e = member
        .commit(&offsets(&[(("t1", 0), 10)]))
        .await
        .expect_err("moved");
    assert!(e.to_string().contains("NOT_COORDINATOR (16)"), "{e}");
    assert_eq!(member.revocation_pending(), None, "still stable");
    assert_eq!(fake.finds(), 1);

    member
        .commit(&offsets(&[(("t1", 0), 10)]))
        .await
        .expect("committed");
    assert_eq!(fake.finds(), 2, "rediscovered");
    assert!(fake
        .sent(Api::Commit)
        .iter()
        .all(|s| s.member_id == "m-1" && s.generation_id == 1));
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn committed_retries_load_in_progress_and_reports_missing_as_minus_one() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(
        Api::Fetch,
        [
            Reply::Code(COORDINATOR_LOAD_IN_PROGRESS),
            Reply::Offsets(vec![(("t1", 0), 42)]),
        ],
    );

    let committed = timeout(LIMIT, member.committed(&held()))
        .await
        .expect("in time")
        .expect("offsets");

    assert_eq!(
        committed,
        BTreeMap::from([
            (("t1".to_owned(), 0), 42),
            (("t1".to_owned(), 1), -1),
            (("t2".to_owned(), 0), -1),
        ])
    );
    assert_eq!(fake.sent(Api::Fetch).len(), 2);
    assert_eq!(fake.finds(), 1, "retried on the same coordinator");
    fake.assert_fully_scripted();
}

// ---- leaving -----------------------------------------------------------

#[tokio::test]
async fn dynamic_member_leaves_with_its_member_id() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(Api::Leave, [Reply::Code(NONE)]);

    timeout(LIMIT, member.leave(Duration::from_secs(2)))
        .await
        .expect("in time");

    let leaves = fake.sent(Api::Leave);
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0].member_id, "m-1");
    assert_eq!(leaves[0].group_instance_id, None);
    assert_eq!(member.machine().state(), &MemberState::Left);
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn static_member_does_not_send_leave_group() {
    let (mut member, fake) = stable_member(Some(INSTANCE)).await;
    assert_eq!(
        fake.sent(Api::Join)[0].group_instance_id.as_deref(),
        Some(INSTANCE)
    );

    timeout(LIMIT, member.leave(Duration::from_secs(2)))
        .await
        .expect("in time");

    assert_eq!(fake.apis(), [Api::Join, Api::Sync], "no LeaveGroup");
    assert_eq!(member.machine().state(), &MemberState::Left);
}

#[tokio::test]
async fn leave_is_bounded_when_the_coordinator_never_answers() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(Api::Leave, [Reply::Hang]);
    let within = Duration::from_millis(200);

    let started = Instant::now();
    timeout(LIMIT, member.leave(within)).await.expect("in time");
    let took = started.elapsed();

    assert!(took >= within, "{took:?}");
    assert!(took < within + Duration::from_secs(1), "{took:?}");
    assert_eq!(fake.sent(Api::Leave).len(), 1);
    assert_eq!(member.machine().state(), &MemberState::Left);
}

// ---- the heartbeat task ----------------------------------------------

async fn next_report(rx: &mut mpsc::Receiver<HeartbeatReport>) -> HeartbeatReport {
    timeout(LIMIT, rx.recv())
        .await
        .expect("a report in time")
        .expect("the task is alive")
}

#[tokio::test]
async fn heartbeat_task_reports_errors_and_keeps_going_on_transient_ones() {
    let (mut member, fake) = stable_member(None).await;
    fake.script(
        Api::Heartbeat,
        [
            Reply::Code(NONE),
            Reply::Code(NONE),
            Reply::Code(NOT_COORDINATOR),
            Reply::Code(NONE),
            Reply::Code(UNKNOWN_SERVER_ERROR),
            Reply::Code(NONE),
            Reply::Code(REBALANCE_IN_PROGRESS),
        ],
    );
    let (tx, mut rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let task = spawn_heartbeat(
        member.heartbeat_client(),
        member.generation().clone(),
        &member.settings,
        tx,
        stop.clone(),
    );

    // NOT_COORDINATOR: reported, then the task rediscovers and goes on.
    let first = next_report(&mut rx).await;
    assert!(
        matches!(&first, HeartbeatReport::Error { code: NOT_COORDINATOR, sent } if sent == member.generation()),
        "{first:?}"
    );
    assert!(matches!(
        member.on_heartbeat(first),
        Action::RediscoverCoordinator { .. }
    ));
    assert_eq!(member.revocation_pending(), None);

    // Any other error: Java's heartbeat thread retries; so does the task.
    let second = next_report(&mut rx).await;
    assert!(
        matches!(
            &second,
            HeartbeatReport::Error {
                code: UNKNOWN_SERVER_ERROR,
                ..
            }
        ),
        "{second:?}"
    );
    assert!(matches!(member.on_heartbeat(second), Action::Retry { .. }));
    assert_eq!(member.revocation_pending(), None);

    let third = next_report(&mut rx).await;
    assert!(
        matches!(
            &third,
            HeartbeatReport::Error {
                code: REBALANCE_IN_PROGRESS,
                ..
            }
        ),
        "{third:?}"
    );
    assert!(matches!(member.on_heartbeat(third), Action::Rejoin { .. }));
    assert_eq!(member.revocation_pending(), Some(false));

    // This generation's heartbeats are over.
    timeout(LIMIT, task.task)
        .await
        .expect("task ended")
        .expect("no panic");
    let beats = fake.sent(Api::Heartbeat);
    assert_eq!(beats.len(), 7);
    assert!(beats
        .iter()
        .all(|b| b.member_id == "m-1" && b.generation_id == 1));
    // Heartbeats are paced by the interval after a success, by the
    // retry backoff after a failure (NOT_COORDINATOR, UNKNOWN_SERVER_ERROR).
    let gaps: Vec<Duration> = beats.windows(2).map(|w| w[1].at - w[0].at).collect();
    let slack = Duration::from_millis(5);
    for (i, g) in gaps.iter().enumerate() {
        let after_failure = matches!(i, 2 | 4);
        let least = if after_failure {
            member.settings.backoff.initial
        } else {
            HEARTBEAT
        };
        assert!(*g + slack >= least, "gap {i}: {gaps:?}");
        if after_failure {
            assert!(
                *g < HEARTBEAT,
                "gap {i} is a retry, not an interval: {gaps:?}"
            );
        }
    }
    assert_eq!(fake.finds(), 2, "rediscovered once, after NOT_COORDINATOR");
    fake.assert_fully_scripted();
    stop.cancel();
}

/// A coordinator that answers, but never successfully, for a whole
/// session: every code is reported, then the session expiry once; the
/// heartbeats go on with the same member id and generation, and the
/// first one that gets through is reported.
#[tokio::test]
async fn heartbeat_task_reports_session_expiry_when_only_errors_come_back() {
    let (member, fake) = stable_member(None).await;
    fake.script(Api::Heartbeat, [Reply::Code(NONE)]);
    // Failures are retried every 10 ms at most (the retry backoff):
    // a hundred errors outlast the session.
    fake.script(
        Api::Heartbeat,
        std::iter::repeat_n(Reply::Code(COORDINATOR_NOT_AVAILABLE), 100),
    );
    fake.script(Api::Heartbeat, [Reply::Code(NONE), Reply::Code(NONE)]);
    let (tx, mut rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let task = spawn_heartbeat(
        member.heartbeat_client(),
        member.generation().clone(),
        &member.settings,
        tx,
        stop.clone(),
    );

    let mut errors = 0;
    let detail = loop {
        match next_report(&mut rx).await {
            HeartbeatReport::Error {
                code: COORDINATOR_NOT_AVAILABLE,
                ..
            } => errors += 1,
            HeartbeatReport::SessionExpired { detail } => break detail,
            other => panic!("unexpected {other:?}"),
        }
    };
    let reported = Instant::now();
    let beats = fake.sent(Api::Heartbeat);
    // Every error code reported, except one whose heartbeat may have
    // been on its way when the session ran out (abandoned then).
    let answered = beats.len() - 1;
    assert!(
        errors == answered || errors + 1 == answered,
        "{errors} errors reported, {answered} heartbeats failed"
    );
    assert!(
        detail.contains("COORDINATOR_NOT_AVAILABLE (15)"),
        "{detail}"
    );
    let waited = reported - beats[0].at;
    assert!(waited >= SESSION, "reported after only {waited:?}");
    assert!(
        waited < SESSION + Duration::from_secs(1),
        "reported late: {waited:?}"
    );
    // The join's discovery, then one after each error but the last.
    assert!(
        fake.finds() == errors || fake.finds() == errors + 1,
        "{} discoveries for {errors} errors",
        fake.finds()
    );
    assert!(task.last_ok.elapsed() >= SESSION);

    // The membership is not given up: the heartbeats go on.
    let after = loop {
        match next_report(&mut rx).await {
            HeartbeatReport::Error {
                code: COORDINATOR_NOT_AVAILABLE,
                ..
            } => errors += 1,
            HeartbeatReport::Recovered { after } => break after,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(errors >= 99, "{errors}");
    assert!(after >= SESSION, "{after:?}");
    assert!(task.last_ok.elapsed() < SESSION);
    let beats = fake.sent(Api::Heartbeat);
    assert!(beats.len() >= 102, "{}", beats.len());
    assert!(
        beats
            .iter()
            .all(|b| b.member_id == "m-1" && b.generation_id == 1),
        "same member id and generation throughout"
    );
    assert!(!task.task.is_finished());
    stop.cancel();
    timeout(LIMIT, task.task)
        .await
        .expect("task ended")
        .expect("no panic");
    fake.assert_fully_scripted();
}

#[tokio::test]
async fn heartbeat_task_reports_session_expiry_after_the_session_timeout() {
    let (member, fake) = stable_member(None).await;
    // Three good heartbeats, then the coordinator is gone for good:
    // listener dropped, connections closed.
    fake.script(
        Api::Heartbeat,
        [
            Reply::Code(NONE),
            Reply::Code(NONE),
            Reply::Code(NONE),
            Reply::Vanish,
        ],
    );
    let (tx, mut rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let task = spawn_heartbeat(
        member.heartbeat_client(),
        member.generation().clone(),
        &member.settings,
        tx,
        stop.clone(),
    );

    let report = next_report(&mut rx).await;
    let reported = Instant::now();
    assert!(
        matches!(report, HeartbeatReport::SessionExpired { .. }),
        "{report:?}"
    );
    let beats = fake.sent(Api::Heartbeat);
    assert_eq!(beats.len(), 4);
    // The last answered heartbeat was read at `last_ok`; the task heard
    // the answer after that, so a whole session must have passed since.
    let last_ok = beats[2].at;
    let waited = reported - last_ok;
    assert!(waited >= SESSION, "reported after only {waited:?}");
    assert!(
        waited < SESSION + Duration::from_secs(1),
        "reported late: {waited:?}"
    );
    // Still trying (to reach a coordinator that is gone), not reported twice.
    tokio::time::sleep(HEARTBEAT * 4).await;
    assert!(!task.task.is_finished());
    assert!(rx.try_recv().is_err(), "one report per expiry");
    stop.cancel();
    timeout(LIMIT, task.task)
        .await
        .expect("task ended")
        .expect("no panic");
}

/// Issue 18: a session timeout seen only by this member (no heartbeat
/// got through) keeps the member id and generation and the partitions'
/// commits; the coordinator's answer decides.
#[tokio::test]
async fn session_expiry_seen_by_the_client_keeps_the_membership() {
    let (mut member, fake) = stable_member(None).await;
    let generation = member.generation().clone();
    let action = member.on_heartbeat(HeartbeatReport::SessionExpired {
        detail: "heartbeat timed out".to_owned(),
    });
    assert!(
        matches!(action, Action::RediscoverCoordinator { .. }),
        "{action:?}"
    );
    assert_eq!(member.generation(), &generation);
    assert_eq!(member.revocation_pending(), None, "still stable");
    // Handled offsets stay committable, with the same generation, on a
    // coordinator found again.
    fake.script(Api::Commit, [Reply::Code(NONE)]);
    member
        .commit(&offsets(&[(("t1", 0), 10)]))
        .await
        .expect("committed");
    assert_eq!(fake.finds(), 2, "the coordinator was found again");
    let commits = fake.sent(Api::Commit);
    assert_eq!(
        (commits[0].member_id.as_str(), commits[0].generation_id),
        ("m-1", 1)
    );
    // Until the coordinator says the member is gone.
    let action = member.on_heartbeat(report(&member, UNKNOWN_MEMBER_ID));
    assert!(matches!(action, Action::Rejoin { .. }), "{action:?}");
    assert_eq!(member.revocation_pending(), Some(true), "lost");
    fake.assert_fully_scripted();
}
