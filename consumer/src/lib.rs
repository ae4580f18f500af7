//! The consumer Deployment as a library: `main.rs` only parses,
//! initialises and maps the outcome to an exit code.
//!
//! - [`config`]: flags, environment and file → validated [`config::Config`].
//! - [`handler`]: one JSON log line per record; demo-record verification.
//! - [`canary`]: exact loss and duplicate counts of `producer --continuous`'s
//!   canary records.
//! - `lag`: `kafka_consumergroup_lag_seconds` and the handler's tick.
//! - [`partition`]: per-partition fetch and handle tasks with bounded buffering.
//! - [`progress`]: one partition's progress (position, watermarks, commits).
//! - [`run`](mod@run): join, heartbeat, commit, rebalance, drain.

pub mod canary;
pub mod config;
pub mod handler;
mod lag;
pub mod partition;
pub mod progress;
pub mod run;

pub use config::Config;
pub use handler::{Handler, HandlerError, RecordHandler};
pub use run::{run, run_with_handler, ConsumerError};
