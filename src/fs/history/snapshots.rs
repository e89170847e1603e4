//! `.snapshots/` in each namespace (DESIGN.md §8): checkpoints as
//! directories. `mkdir .snapshots/NAME` creates checkpoint NAME of
//! everything acknowledged so far, `rmdir` deletes it, `ls` lists them.
//!
//! Each `.snapshots/NAME` is a `Namespace` view: the same directory, lookup
//! and listing machinery as the live namespace (so its documents and
//! nested directories are cached the same way), over an engine opened with
//! `Engine::open_at(At::Checkpoint(NAME))`. A view refuses every change
//! with EROFS (`Namespace::check_not_view`), has no `.snapshots` of its
//! own, and never refreshes: a checkpoint's state never changes. What it
//! reads stays in the store while the checkpoint exists, since GC keeps
//! whatever a checkpoint pins.
//!
//! `.snapshots` itself is never listed in its namespace (like the control
//! files), so `cp -r`, `rsync` and `find` of a namespace do not copy every
//! snapshot with it.

use std::sync::Arc;

use crate::engine::{checkpoint, At};
use crate::fs::attr::Attr;
use crate::fs::core::{now_ms, FsCore};
use crate::fs::dirstream::{DirStream, RawEntry};
use crate::fs::error::{FsError, FsResult};
use crate::fs::handles::Handle;
use crate::fs::inodes::{InodeTable, Node};
use crate::fs::namespace::Namespace;

/// The name of the snapshots directory at a namespace's top.
pub(crate) const SNAPSHOTS_DIR: &str = ".snapshots";

impl FsCore {
    /// The live namespace whose `.snapshots` directory `ino` is, if it is one.
    pub(crate) fn snapshots_of(&self, ino: u64) -> Option<Arc<Namespace>> {
        match self.table.lock().get(ino).map(|i| &i.node) {
            Some(Node::Snapshots(ns)) => Some(ns.clone()),
            _ => None,
        }
    }

    /// The `.snapshots` directory of live namespace `ns`, created on first use.
    pub(crate) fn snapshots_dir(&self, ns: &Arc<Namespace>) -> FsResult<Attr> {
        self.history_dir(ns, SNAPSHOTS_DIR, Node::Snapshots)
    }

    /// The view inode of checkpoint `name` in `.snapshots` directory `dir`.
    fn register_view(&self, t: &mut InodeTable, dir: u64, ns: &Namespace, name: &str) -> u64 {
        if let Some(ino) = t.lookup(dir, name) {
            return ino;
        }
        let (store, opts, now) = (self.store.clone(), self.cfg.engine.clone(), now_ms());
        t.insert_with(dir, name, |ino| {
            let view = Namespace::new(&ns.name, ino, store, opts, None, now, None);
            Node::Namespace(Arc::new(view.into_view(At::Checkpoint(name.to_string()))))
        })
    }

    /// `lookup` in a `.snapshots` directory: a checkpoint of that name.
    pub(crate) async fn lookup_snapshot(
        &self,
        ns: &Arc<Namespace>,
        dir: u64,
        name: &str,
    ) -> FsResult<Attr> {
        if checkpoint::check_name(name).is_err() {
            return Err(FsError::NotFound);
        }
        checkpoint::read(&self.store, &ns.name, name).await?;
        let mut t = self.table.lock();
        let ino = self.register_view(&mut t, dir, ns, name);
        Ok(self.dir_attr(&t, ino))
    }

    /// `mkdir .snapshots/NAME`: checkpoint NAME of everything acknowledged.
    pub(crate) async fn create_snapshot(
        &self,
        ns: &Arc<Namespace>,
        dir: u64,
        name: &str,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        ns.check_not_fenced()?;
        let created = ns.engine().await?.create_checkpoint(name).await;
        if let Err(e) = created {
            log::error!("namespace {}: snapshot {name:?} not created: {e}", ns.name);
            return Err(e.into());
        }
        let mut t = self.table.lock();
        let ino = self.register_view(&mut t, dir, ns, name);
        t.touch_dir(dir);
        t.remember(ino);
        Ok(self.dir_attr(&t, ino))
    }

    /// `rmdir .snapshots/NAME`: deletes the checkpoint; the next GC frees
    /// what only it kept. Views of it already open keep reading until then.
    pub(crate) async fn delete_snapshot(
        &self,
        ns: &Arc<Namespace>,
        dir: u64,
        name: &str,
    ) -> FsResult<()> {
        self.check_writable()?;
        ns.check_not_fenced()?;
        if checkpoint::check_name(name).is_err() {
            return Err(FsError::NotFound);
        }
        if let Err(e) = checkpoint::delete(&self.store, &ns.name, name).await {
            log::error!("namespace {}: snapshot {name:?} not deleted: {e}", ns.name);
            return Err(e.into());
        }
        let mut t = self.table.lock();
        if let Some(Node::Namespace(view)) =
            t.lookup(dir, name).and_then(|i| t.get(i)).map(|i| &i.node)
        {
            view.mark_removed();
        }
        t.unlink(dir, name);
        t.touch_dir(dir);
        Ok(())
    }

    /// `opendir` of a `.snapshots` directory: one entry per checkpoint.
    pub(crate) async fn open_snapshots(&self, ns: &Arc<Namespace>, dir: u64) -> FsResult<u64> {
        let cps = checkpoint::list(&self.store, &ns.name).await?;
        let mut t = self.table.lock();
        let mut fixed = vec![RawEntry::Dot, RawEntry::DotDot];
        for cp in cps {
            self.register_view(&mut t, dir, ns, &cp.name);
            fixed.push(RawEntry::Named(cp.name));
        }
        drop(t);
        let stream = DirStream::new(dir, fixed, false, String::new(), 0);
        Ok(self.handles.insert(Handle::Dir(stream)))
    }
}
