//! The group connection's response path: what a broker (or whatever listens
//! on its port) answers to `ApiVersions`, `SaslHandshake`,
//! `SaslAuthenticate`, `FindCoordinator`, `JoinGroup`, `SyncGroup`,
//! `Heartbeat`, `LeaveGroup`, `OffsetCommit` and `OffsetFetch`.
//!
//! The target drives the connection's entry points, `BrokerConnection::connect`
//! + `send_with` (public with `kafka-group`'s `unstable-fuzzing`), against
//! the crate's fake coordinator on 127.0.0.1 answering with the fuzz input.
//! `kafka-protocol` decodes it; the vendored copy bounds what a declared
//! element count may allocate, and `make fuzz` runs with `-rss_limit_mb`
//! (which caps every single allocation too) to keep checking that. Frames are
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

use std::time::Duration;

use bytes::BytesMut;
use kafka_base::security::{SaslMechanism, SaslSettings, Secret, SecurityProtocol};
use kafka_group::{
    testing::{encode, FakeCoordinator, Reply},
    wire::{BrokerConnection, ConnectionConfig, KnownRequest, SendOptions},
};
use kafka_protocol::{
    messages::{
        FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
        OffsetCommitRequest, OffsetFetchRequest, SaslHandshakeResponse, SyncGroupRequest,
    },
    protocol::{Encodable, StrBytes},
};
use libfuzzer_sys::fuzz_target;
use std::{cell::RefCell, sync::Arc};
use tokio::runtime::Runtime;

struct Harness {
    rt: Runtime,
    fake: Arc<FakeCoordinator>,
    plain: ConnectionConfig,
    sasl: ConnectionConfig,
    conn: Option<BrokerConnection>,
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

/// A valid ApiVersions answer, at the version asked for.
fn api_versions_ok() -> Reply {
    Reply::ApiVersions(&[])
}

/// A valid SaslHandshake answer (error 0, PLAIN).
fn sasl_handshake_ok() -> Reply {
    let response =
        SaslHandshakeResponse::default().with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
    Reply::Body(encode(&response, 1))
}

impl Harness {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let fake = rt.block_on(FakeCoordinator::strict(Vec::new()));
        let timeout = Duration::from_secs(5);
        let plain = ConnectionConfig::new("fuzz", SecurityProtocol::Plaintext, None, None, timeout)
            .expect("plain config");
        let sasl = ConnectionConfig::new(
            "fuzz",
            SecurityProtocol::SaslPlaintext,
            Some(SaslSettings::password(
                SaslMechanism::Plain,
                "fuzz",
                Secret::new("fuzz-secret"),
            )),
            None,
            timeout,
        )
        .expect("sasl config");
        Self {
            rt,
            fake,
            plain,
            sasl,
            conn: None,
        }
    }

    fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.fake.replace_next(replies);
    }

    /// Sends `req` at the version `vsel` picks, on a usable connection.
    fn send<R: KnownRequest>(&mut self, make: impl FnOnce(i16) -> R, vsel: u8, reply: Reply) {
        let span = (R::MAX_VERSION - R::MIN_VERSION + 1).max(1);
        let version = R::MIN_VERSION + i16::from(vsel) % span;
        let req = make(version);
        let broker = self.fake.addr();
        if !self.conn.as_ref().is_some_and(BrokerConnection::is_usable) {
            self.script([api_versions_ok()]);
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
    let fuzz = Reply::AfterCorrelation {
        bytes: response.to_vec(),
        wrong: selector & 0x80 != 0,
    };
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        let h = h.get_or_insert_with(Harness::new);
        let broker = h.fake.addr();
        match selector % 10 {
            0 => {
                // A second copy for the retry at an older version.
                h.script([fuzz.clone(), fuzz]);
                let _ = h.rt.block_on(BrokerConnection::connect(&h.plain, &broker));
            }
            8 => {
                h.script([api_versions_ok(), fuzz]);
                let _ = h.rt.block_on(BrokerConnection::connect(&h.sasl, &broker));
            }
            9 => {
                h.script([api_versions_ok(), sasl_handshake_ok(), fuzz.clone(), fuzz]);
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
