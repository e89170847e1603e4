//! The history views (DESIGN §8), each a hidden, unlisted entry of a
//! namespace that is reached only by name and never changes what it shows:
//!
//! - `snapshots`: `.snapshots/NAME/`, a checkpoint per directory;
//!   `mkdir`/`rmdir` there create and delete checkpoints;
//! - `versions`: `.versions/SEQ/` and `.versions/@TIME/`, any retained
//!   state, pinned against this mount's GC while a view of it is open;
//! - `changes`: `.changes`, one JSON line per committed operation, growing
//!   as commits land.

pub(super) mod changes;
pub(super) mod snapshots;
pub(super) mod versions;
