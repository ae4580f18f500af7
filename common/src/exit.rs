//! Exit codes of both binaries.

/// Everything asked for was done.
pub const OK: i32 = 0;
/// The service ran and failed (broker unreachable, records not acknowledged, …).
pub const FAILURE: i32 = 1;
/// The configuration or command line is wrong; nothing was attempted.
pub const USAGE: i32 = 2;
