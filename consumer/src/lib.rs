//! The consumer Deployment as a library: `main.rs` only parses,
//! initialises and maps the outcome to an exit code.
//!
//! - [`config`]: flags, environment and file → validated [`config::Config`].
//! - [`handler`]: one JSON log line per record; demo-record verification.
//! - [`partition`]: per-partition fetch and handle tasks with bounded buffering.

pub mod config;
pub mod handler;
pub mod partition;
