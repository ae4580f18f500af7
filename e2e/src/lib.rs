//! End-to-end tests across both services, against the real broker; the
//! tests are in `tests/`, the helpers in the `testkit` crate.
//!
//! - `producer_security`, `consumer_security`: both binaries on the local
//!   broker's TLS and SASL listeners, every protocol × mechanism, the
//!   errors a user sees, and secrets nowhere in what they print or serve.
//! - `tracing`: one trace from the producer's `send` span to the
//!   consumer's `process` span, through a real OTLP receiver.
//! - `metrics_table`: the README's metric table against a live scrape of
//!   both services.
//! - `cluster`: faults of a 3-broker cluster under load (kill -9 of a
//!   leader and of the group coordinator, a rolling restart, two brokers
//!   down, leader moves); needs `scripts/kafka-cluster.sh`, so `make
//!   test-cluster` runs it, not `cargo test --workspace`.
