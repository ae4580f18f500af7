//! Helpers shared by the workspace's integration and end-to-end tests, so
//! no test file copies or `#[path]`-includes another's.
//!
//! - [`broker`]: the real Kafka broker the tests need (a missing one fails
//!   the test, it is never skipped), a private broker that can be stopped,
//!   topics, and reading a topic back with rskafka.
//! - [`cluster`]: the shared 3-broker cluster (`scripts/kafka-cluster.sh`):
//!   its nodes, partitions and groups as Kafka's tools see them, its faults.
//! - [`fault_proxy`]: a proxy in front of the real broker that loses or
//!   answers chosen produce requests (faults a real broker cannot show on cue).
//! - [`names`]: topic and group names no other test uses.
//! - [`oauth`]: unsecured OAUTHBEARER tokens and token files.
//! - [`scrape`]: `/metrics` and probe bodies over HTTP, summed samples,
//!   metric families.
//! - [`process`]: service binaries as child processes (their output
//!   captured), free ports, waits.
//! - [`services`]: the producer and the consumer in-process on an
//!   ephemeral port.
//! - [`security`]: the local broker's four listeners and the settings of
//!   each security protocol × mechanism.

pub mod broker;
pub mod cluster;
pub mod fault_proxy;
pub mod names;
pub mod oauth;
pub mod process;
pub mod scrape;
pub mod security;
pub mod services;

pub use broker::bootstrap;
pub use names::unique;
