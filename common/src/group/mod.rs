//! The Kafka classic consumer-group protocol (protocol type `consumer`).
pub mod assignor;
pub mod error;
pub mod protocol;
pub mod state;
