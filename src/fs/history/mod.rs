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

use std::sync::Arc;

use crate::fs::attr::Attr;
use crate::fs::core::FsCore;
use crate::fs::error::{FsError, FsResult};
use crate::fs::inodes::Node;
use crate::fs::namespace::Namespace;

impl FsCore {
    /// The history directory `name` (`.snapshots`, `.versions`) of live
    /// namespace `ns`, made as `node` on first use. A view has none: it is
    /// already one state.
    fn history_dir(
        &self,
        ns: &Arc<Namespace>,
        name: &str,
        node: fn(Arc<Namespace>) -> Node,
    ) -> FsResult<Attr> {
        if ns.is_view() {
            return Err(FsError::NotFound);
        }
        let mut t = self.table.lock();
        let ino = match t.lookup(ns.ino, name) {
            Some(ino) => ino,
            None => t.insert(ns.ino, name, node(ns.clone())),
        };
        Ok(self.dir_attr(&t, ino))
    }
}
