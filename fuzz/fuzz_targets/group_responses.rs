//! The group connection's response path: what a broker (or whatever listens
//! on its port) answers to `ApiVersions`, `SaslHandshake`,
//! `SaslAuthenticate`, `FindCoordinator`, `JoinGroup`, `SyncGroup`,
//! `Heartbeat`, `LeaveGroup`, `OffsetCommit` and `OffsetFetch`.
//!
//! The walker that validates a response before `kafka-protocol` decodes it is
//! private (`kafka_group`'s `wire::walker`), so this target drives the
//! public entry point, `BrokerConnection::connect` + `send_with`, against a
//! fake broker on 127.0.0.1 that answers with the fuzz input. Frames are
//! always correctly length-prefixed (the length check is covered by unit
//! tests), so nothing ever waits for a timeout; the connection is reused
//! while it stays usable.
//!
//! Input: `[selector, version, response...]`. `selector % 10` picks the API
//! (0 ApiVersions on connect, 1..=7 a group API, 8 SaslHandshake, 9
//! SaslAuthenticate); bit 7 answers with a wrong correlation id. `version`
//! picks the request version within what we send. `response` is the
//! response header after the correlation id (tagged fields for flexible
//! headers) followed by the body.
#![no_main]

use std::{
    cell::RefCell,
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::BytesMut;
use kafka_base::security::{SaslMechanism, SaslSettings, Secret, SecurityProtocol};
use kafka_group::wire::{BrokerConnection, ConnectionConfig, KnownRequest, SendOptions};
use kafka_protocol::{
    messages::{
        api_versions_response::ApiVersion, ApiKey, ApiVersionsRequest, ApiVersionsResponse,
        FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
        OffsetCommitRequest, OffsetFetchRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
        SaslHandshakeResponse, SyncGroupRequest,
    },
    protocol::{Encodable, Message, StrBytes},
};
use libfuzzer_sys::fuzz_target;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    runtime::Runtime,
};

/// What the fake broker answers to the next request.
#[derive(Clone)]
enum Reply {
    /// A valid ApiVersions response advertising every API at
    /// `kafka-protocol`'s full range.
    ApiVersions,
    /// A valid SaslHandshake response (error 0, PLAIN).
    SaslHandshakeOk,
    /// These bytes after the correlation id; `wrong` shifts the id.
    Fuzz { bytes: Vec<u8>, wrong: bool },
}

type Script = Arc<Mutex<VecDeque<Reply>>>;

struct Harness {
    rt: Runtime,
    addr: SocketAddr,
    script: Script,
    plain: ConnectionConfig,
    sasl: ConnectionConfig,
    conn: Option<BrokerConnection>,
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

fn api_versions_ok(version: i16) -> Vec<u8> {
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
    let response = ApiVersionsResponse::default().with_api_keys(
        ranges
            .iter()
            .map(|(key, r)| {
                ApiVersion::default()
                    .with_api_key(*key as i16)
                    .with_min_version(r.min)
                    .with_max_version(r.max)
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    response.encode(&mut buf, version).expect("encodable");
    buf.to_vec()
}

fn sasl_handshake_ok(version: i16) -> Vec<u8> {
    let response =
        SaslHandshakeResponse::default().with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
    let mut buf = BytesMut::new();
    response.encode(&mut buf, version).expect("encodable");
    buf.to_vec()
}

/// Serves one connection: reads request frames and answers each with the
/// next scripted reply; closes when the script is empty.
async fn serve(mut stream: TcpStream, script: Script) {
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let len = usize::try_from(i32::from_be_bytes(len)).unwrap_or(0);
        let mut frame = vec![0u8; len];
        if stream.read_exact(&mut frame).await.is_err() || len < 8 {
            return;
        }
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let Some(reply) = script.lock().expect("script").pop_front() else {
            return;
        };
        let (body, correlation) = match reply {
            // Both are answered with header v0 (ApiVersions always, and
            // SaslHandshake has no flexible version).
            Reply::ApiVersions => (api_versions_ok(version), correlation),
            Reply::SaslHandshakeOk => (sasl_handshake_ok(version), correlation),
            Reply::Fuzz { bytes, wrong } => (bytes, correlation.wrapping_add(i32::from(wrong))),
        };
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(&((4 + body.len()) as i32).to_be_bytes());
        out.extend_from_slice(&correlation.to_be_bytes());
        out.extend_from_slice(&body);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

impl Harness {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("addr");
        let script: Script = Arc::default();
        let accept_script = Arc::clone(&script);
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, Arc::clone(&accept_script)));
            }
        });
        let timeout = Duration::from_secs(5);
        let plain = ConnectionConfig::new("fuzz", SecurityProtocol::Plaintext, None, None, timeout)
            .expect("plain config");
        let sasl = ConnectionConfig::new(
            "fuzz",
            SecurityProtocol::SaslPlaintext,
            Some(SaslSettings {
                mechanism: SaslMechanism::Plain,
                username: "fuzz".to_owned(),
                password: Secret::new("fuzz-secret"),
            }),
            None,
            timeout,
        )
        .expect("sasl config");
        Self {
            rt,
            addr,
            script,
            plain,
            sasl,
            conn: None,
        }
    }

    fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        let mut s = self.script.lock().expect("script");
        s.clear();
        s.extend(replies);
    }

    /// Sends `req` at the version `vsel` picks, on a usable connection.
    fn send<R: KnownRequest>(&mut self, make: impl FnOnce(i16) -> R, vsel: u8, reply: Reply) {
        let span = (R::MAX_VERSION - R::MIN_VERSION + 1).max(1);
        let version = R::MIN_VERSION + i16::from(vsel) % span;
        let req = make(version);
        let broker = self.addr.to_string();
        if !self.conn.as_ref().is_some_and(BrokerConnection::is_usable) {
            self.script([Reply::ApiVersions]);
            self.conn = self
                .rt
                .block_on(BrokerConnection::connect(&self.plain, &broker))
                .ok();
        }
        self.script([reply]);
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let result = self
            .rt
            .block_on(conn.send_with(req, SendOptions::new().version(version)));
        if let Ok(response) = result {
            // What decoded must encode again at the same version.
            let mut buf = BytesMut::new();
            let _ = response.encode(&mut buf, version);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, vsel, response @ ..] = data else {
        return;
    };
    let fuzz = Reply::Fuzz {
        bytes: response.to_vec(),
        wrong: selector & 0x80 != 0,
    };
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        let h = h.get_or_insert_with(Harness::new);
        let broker = h.addr.to_string();
        match selector % 10 {
            0 => {
                // A second copy for the retry at an older version.
                h.script([fuzz.clone(), fuzz]);
                let _ = h.rt.block_on(BrokerConnection::connect(&h.plain, &broker));
            }
            8 => {
                h.script([Reply::ApiVersions, fuzz]);
                let _ = h.rt.block_on(BrokerConnection::connect(&h.sasl, &broker));
            }
            9 => {
                h.script([
                    Reply::ApiVersions,
                    Reply::SaslHandshakeOk,
                    fuzz.clone(),
                    fuzz,
                ]);
                let _ = h.rt.block_on(BrokerConnection::connect(&h.sasl, &broker));
            }
            1 => h.send(
                |v| {
                    let g = StrBytes::from_static_str("g");
                    if v >= 4 {
                        FindCoordinatorRequest::default().with_coordinator_keys(vec![g])
                    } else {
                        FindCoordinatorRequest::default().with_key(g)
                    }
                },
                *vsel,
                fuzz,
            ),
            2 => h.send(|_| JoinGroupRequest::default(), *vsel, fuzz),
            3 => h.send(|_| SyncGroupRequest::default(), *vsel, fuzz),
            4 => h.send(|_| HeartbeatRequest::default(), *vsel, fuzz),
            5 => h.send(|_| LeaveGroupRequest::default(), *vsel, fuzz),
            6 => h.send(|_| OffsetCommitRequest::default(), *vsel, fuzz),
            _ => h.send(|_| OffsetFetchRequest::default(), *vsel, fuzz),
        }
    });
});
