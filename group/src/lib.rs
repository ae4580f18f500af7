//! The Kafka consumer-group protocol (classic, protocol type `consumer`).

pub mod assignor;
pub mod coordinator;
pub mod error;
pub mod member;
pub mod payload;
pub mod state;
pub mod wire;

pub use coordinator::committed_offsets;
pub mod session;
