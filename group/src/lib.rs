//! The Kafka consumer-group protocols — classic (protocol type `consumer`)
//! and KIP-848's consumer protocol, interoperable with Java's and
//! librdkafka's consumers — over a broker connection of its own.
//!
//! The public API is small:
//!
//! - [`session`]: a consumer's membership in one group, run on its own
//!   task, handing the service the partitions to start and to stop
//!   ([`session::Session`], with an example);
//! - [`ConnectionConfig`]: how to reach the brokers (TLS and SASL from
//!   `kafka-base`), and [`preflight`], the connection check the services
//!   run before their rskafka client connects;
//! - [`committed_offsets`]: a group's committed offsets;
//! - [`admin`]: the few admin requests the canary's topic placement needs
//!   (metadata, topic and partition creation with replica assignments,
//!   reassignments, preferred leader election), on the same connection
//!   layer;
//! - [`is_known_assignor`], and the errors in [`error`].
//!
//! # Layers
//!
//! From the bytes up, each a module private to the crate:
//!
//! | layer | module | what it does |
//! |---|---|---|
//! | wire | `wire` | one connection to one broker: TCP, TLS, `ApiVersions` negotiation, SASL, framing, typed requests |
//! | coordinator | `coordinator` | finds the group's coordinator, one typed method per group request; error codes come back as `KafkaCode`, unjudged |
//! | payloads | `payload` | the consumer protocol's Subscription and Assignment, as Java encodes them |
//! | assignors | `assignor` (`sticky` inside) | `range`, `roundrobin`, `sticky`, byte-compatible with Java's (`cooperative-sticky` too, not offered: it needs KIP-429's incremental rebalance) |
//! | state machine | `state` | the membership with no I/O: events in, actions out; what each error code means |
//! | member | `member` | the I/O the state machine asks for; the heartbeat task |
//! | session | [`session`] | the task that runs a member and talks to the service in events: the classic member above, or KIP-848's `ConsumerGroupHeartbeat` member (`session::consumer`, its state machine pure in `machine`) |
//!
//! Feature `unstable-fuzzing` makes those modules public and adds
//! `testing` (a scriptable fake coordinator), for the fuzz targets and this
//! crate's integration tests; no stability promise.

// The layers under the session API: private, public with
// `unstable-fuzzing`. Written out rather than made by a macro: rustfmt
// (and so `make lint`) does not follow a module declared inside a macro.
#[cfg(feature = "unstable-fuzzing")]
pub mod assignor;
#[cfg(not(feature = "unstable-fuzzing"))]
mod assignor;
#[cfg(feature = "unstable-fuzzing")]
pub mod coordinator;
#[cfg(not(feature = "unstable-fuzzing"))]
mod coordinator;
#[cfg(feature = "unstable-fuzzing")]
pub mod member;
#[cfg(not(feature = "unstable-fuzzing"))]
mod member;
#[cfg(feature = "unstable-fuzzing")]
pub mod payload;
#[cfg(not(feature = "unstable-fuzzing"))]
mod payload;
#[cfg(feature = "unstable-fuzzing")]
pub mod state;
#[cfg(not(feature = "unstable-fuzzing"))]
mod state;
#[cfg(feature = "unstable-fuzzing")]
pub mod wire;
#[cfg(not(feature = "unstable-fuzzing"))]
mod wire;

pub mod admin;
pub mod error;
pub mod session;
#[cfg(any(test, feature = "unstable-fuzzing"))]
pub mod testing;

pub use assignor::is_known_assignor;
pub use coordinator::{committed_offsets, CoordinatorError};
pub use wire::{preflight, ConnectionConfig, ConnectionError, Preflight};
