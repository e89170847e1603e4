//! The kernel side of the filesystem: everything that speaks FUSE, kept
//! apart from the core it drives (`crate::fs`, testable without mounting).
//!
//! - `adapter` is the thin fuser `Filesystem`: a request is polled once on
//!   the FUSE thread that read it, and moves to the tokio runtime only if
//!   it must wait (store I/O, a commit);
//! - `fuse_conv` converts the core's values to fuser's;
//! - `notify` writes kernel cache invalidations from a thread of its own;
//! - `mount` and `daemon` set up mounts and run `reef mount`; `heap` sets
//!   the daemon's malloc parameters;
//! - `metrics` (what is measured, by name) and `metrics_server` (the
//!   `/metrics` HTTP responder) serve `-o metrics=ADDR:PORT`.

mod adapter;
pub(super) mod daemon;
mod fuse_conv;
mod heap;
mod metrics;
mod metrics_server;
pub(super) mod mount;
mod notify;

/// /proc/self/mountinfo, which the store's tests read too.
#[cfg(test)]
pub(crate) use daemon::mounts;
