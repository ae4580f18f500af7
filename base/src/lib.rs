//! The foundation every crate of the workspace builds on, depending on
//! nothing of ours:
//!
//! - [`security`]: how to reach Kafka securely — the security protocol, TLS
//!   and SASL settings, the rustls configuration built from them, and
//!   [`Secret`](secret::Secret) for passwords and tokens. Used by the services'
//!   rskafka setup (`common::kafka`) and by the group protocol's own
//!   connection (`kafka-group`), so neither owns the other.
//! - [`backoff`]: the retry backoff every retry loop uses.
//! - [`scram`]: bounds on what a SCRAM server may ask of a client.
//! - [`oauth`]: OAUTHBEARER tokens read from a file, and their expiry.
//! - [`secret`]: a value that prints as `[redacted]`.

pub mod backoff;
pub mod oauth;
pub mod scram;
pub mod secret;
pub mod security;
