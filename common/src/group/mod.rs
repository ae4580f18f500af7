//! The Kafka classic consumer-group protocol (protocol type `consumer`).
pub mod assignor;
pub mod connection;
pub mod coordinator;
pub mod error;
pub mod member;
pub mod protocol;
pub mod state;
