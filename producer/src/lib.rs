//! The producer Job as a library: `main.rs` only parses, initialises and
//! maps the outcome to an exit code, so tests run [`run`] in-process.
//!
//! - [`canary`]: continuous canary mode (`--continuous`), until stopped.
//! - `batcher`: per-partition batches and in-flight bounds, without I/O.
//! - `sequence`: idempotence (KIP-98): producer id, epoch and sequence
//!   numbers, and what the broker's answers mean for them, without I/O.
//! - [`config`]: flags, environment and file → validated [`Config`].
//! - [`payload`]: demo records, key templates, JSON-lines input.
//! - [`partitioner`]: Java-compatible murmur2 key partitioning.
//! - [`run`](mod@run): the send loop.
//! - [`summary`]: what a run achieved ([`Summary`]).

mod batcher;
pub mod canary;
pub mod config;
pub mod partitioner;
pub mod payload;
pub mod run;
mod sequence;
pub mod summary;

pub use config::Config;
pub use run::{run, ProducerError};
pub use summary::Summary;
