//! Writes the seed corpora of the structured targets into fuzz/seeds/
//! (committed): valid group-protocol payloads of every version, and a valid
//! response for every API and version the connection sends, framed as the
//! `group_responses` target reads its input.
//!
//!   cargo +nightly run --manifest-path fuzz/Cargo.toml --example make_seeds
use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_group::{
    payload::{Assignment, Subscription, TopicPartitions},
    wire::KnownRequest,
};
use kafka_protocol::{
    messages::{
        api_versions_response::ApiVersion,
        find_coordinator_response::Coordinator,
        join_group_response::JoinGroupResponseMember,
        leave_group_response::MemberResponse,
        offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
        offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
            OffsetFetchResponseTopic, OffsetFetchResponseTopics,
        },
        ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
        GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
        LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse,
        OffsetFetchRequest, OffsetFetchResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
        SaslHandshakeRequest, SaslHandshakeResponse, SyncGroupRequest, SyncGroupResponse,
        TopicName,
    },
    protocol::{Encodable, HeaderVersion, Message, Request, StrBytes},
};

fn s(x: &'static str) -> StrBytes {
    StrBytes::from_static_str(x)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

/// `[selector, version index, header tags?, body]` for every version of `R`
/// we send: the richest response that encodes at that version, else the
/// default one.
fn responses<R: KnownRequest>(dir: &Path, selector: u8, name: &str, rich: &R::Response)
where
    R::Response: Default,
{
    for v in R::MIN_VERSION..=R::MAX_VERSION {
        let mut body = BytesMut::new();
        if rich.encode(&mut body, v).is_err() {
            body.clear();
            R::Response::default()
                .encode(&mut body, v)
                .expect("default encodes");
        }
        let mut seed = vec![selector, (v - R::MIN_VERSION) as u8];
        // ApiVersions responses always use header v0.
        if <R::Response as HeaderVersion>::header_version(v) >= 1 && selector != 0 {
            seed.push(0); // no tagged fields in the header
        }
        seed.extend_from_slice(&body);
        write(dir, &format!("{name}-v{v}"), &seed);
    }
}

pub fn main() {
    let root = std::env::var_os("SEEDS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"),
        std::path::PathBuf::from,
    );

    // group_protocol: every version of both payloads.
    let dir = root.join("group_protocol");
    let mut sub = Subscription::new(["orders", "payments"]);
    sub.owned_partitions = vec![TopicPartitions::new("orders", [0, 2])];
    sub.generation_id = Some(7);
    sub.rack_id = Some("rack-a".into());
    sub.user_data = Some(Bytes::from_static(b"ud"));
    let asg = Assignment::new(vec![
        TopicPartitions::new("orders", [0, 1]),
        TopicPartitions::new("payments", [3]),
    ]);
    for v in 0..=3 {
        write(
            &dir,
            &format!("subscription-v{v}"),
            &sub.encode(v).expect("sub"),
        );
        write(
            &dir,
            &format!("assignment-v{v}"),
            &asg.encode(v).expect("asg"),
        );
    }
    write(
        &dir,
        "empty-assignment-v3",
        &Assignment::default().encode(3).expect("asg"),
    );

    // group_responses.
    let dir = root.join("group_responses");
    let api_versions = ApiVersionsResponse::default().with_api_keys(
        [(18, 0, 4), (12, 0, 4), (11, 0, 9)]
            .into_iter()
            .map(|(k, a, b)| {
                ApiVersion::default()
                    .with_api_key(k)
                    .with_min_version(a)
                    .with_max_version(b)
            })
            .collect(),
    );
    responses::<ApiVersionsRequest>(&dir, 0, "api-versions", &api_versions);
    let coordinator = FindCoordinatorResponse::default()
        .with_node_id(1.into())
        .with_host(s("broker-1"))
        .with_port(9092)
        .with_coordinators(vec![Coordinator::default()
            .with_key(s("g"))
            .with_node_id(1.into())
            .with_host(s("broker-1"))
            .with_port(9092)]);
    responses::<FindCoordinatorRequest>(&dir, 1, "find-coordinator", &coordinator);
    let member = |id: &'static str| {
        JoinGroupResponseMember::default()
            .with_member_id(s(id))
            .with_metadata(Subscription::new(["orders"]).encode(3).expect("sub"))
    };
    let join = JoinGroupResponse::default()
        .with_generation_id(3)
        .with_protocol_name(Some(s("range")))
        .with_leader(s("m-1"))
        .with_member_id(s("m-1"))
        .with_members(vec![member("m-1"), member("m-2")]);
    responses::<JoinGroupRequest>(&dir, 2, "join-group", &join);
    let sync = SyncGroupResponse::default().with_assignment(asg.encode(3).expect("asg"));
    responses::<SyncGroupRequest>(&dir, 3, "sync-group", &sync);
    responses::<HeartbeatRequest>(
        &dir,
        4,
        "heartbeat",
        &HeartbeatResponse::default().with_error_code(27),
    );
    let leave = LeaveGroupResponse::default()
        .with_members(vec![MemberResponse::default().with_member_id(s("m-1"))]);
    responses::<LeaveGroupRequest>(&dir, 5, "leave-group", &leave);
    let commit =
        OffsetCommitResponse::default().with_topics(vec![OffsetCommitResponseTopic::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![
                OffsetCommitResponsePartition::default().with_partition_index(0),
                OffsetCommitResponsePartition::default()
                    .with_partition_index(1)
                    .with_error_code(22),
            ])]);
    responses::<OffsetCommitRequest>(&dir, 6, "offset-commit", &commit);
    let partition = || {
        OffsetFetchResponsePartition::default()
            .with_partition_index(0)
            .with_committed_offset(42)
            .with_metadata(Some(s("")))
    };
    let fetch_old =
        OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![partition()])]);
    responses::<OffsetFetchRequest>(&dir, 7, "offset-fetch", &fetch_old);
    let fetch_new =
        OffsetFetchResponse::default().with_groups(vec![OffsetFetchResponseGroup::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(vec![OffsetFetchResponseTopics::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![OffsetFetchResponsePartitions::default()
                    .with_partition_index(0)
                    .with_committed_offset(42)
                    .with_metadata(Some(s("")))])])]);
    responses::<OffsetFetchRequest>(&dir, 7, "offset-fetch-groups", &fetch_new);
    let handshake =
        SaslHandshakeResponse::default().with_mechanisms(vec![s("PLAIN"), s("SCRAM-SHA-512")]);
    responses::<SaslHandshakeRequest>(&dir, 8, "sasl-handshake", &handshake);
    let auth = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from_static(b"ok"));
    responses::<SaslAuthenticateRequest>(&dir, 9, "sasl-authenticate", &auth);
    let _ = <ApiVersionsRequest as Message>::VERSIONS;
    let _ = <HeartbeatRequest as Request>::KEY;

    // producer_input / config / demo_record: plain text seeds; the
    // dictionaries in fuzz/dicts/ carry the keywords.
    let dir = root.join("producer_input");
    write(
        &dir,
        "lines",
        b"k\0key-{seq % 8}\0\0\0\0\0\0\0\x07run-1\0{\"k\":\"a\",\"v\":1}\n\n{\"k\":7}\nnot json\n",
    );
    write(
        &dir,
        "template",
        b"\0{run_id}-{seq}-{ seq % 3 }\0\0\0\0\0\0\0\x01r\0[1,2]\n\"s\"\n",
    );
    let dir = root.join("config");
    write(
        &dir,
        "pairs",
        b"\x00\x05PRODUCER_MESSAGES\x0012\x01\x07\x00KAFKA_SASL_MECHANISM\x00SCRAM-SHA-512",
    );
    let dir = root.join("demo_record");
    write(&dir, "records", b"orders\x00\x04\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01k\x02run-1\x00\x05\x00\x00\x00\x01");
    println!("seeds written to {}", root.display());
}
