//! Telling the kernel what changed behind its caches. The core sends
//! `Invalidation`s to a sink; the adapter's notifier thread writes them to
//! /dev/fuse. Without a sink (tests of the core alone) they are dropped.

use std::sync::mpsc;
use std::time::Duration;

use super::core::FsCore;

/// A change the kernel's caches must hear about (sent by the adapter
/// through fuser's `Notifier`, from a thread of its own).
#[derive(Debug)]
pub enum Invalidation {
    /// Attributes and cached pages of an inode.
    Inode {
        ino: u64,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
    /// Attributes only: cached pages stay (an open decides about them).
    Attrs {
        ino: u64,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
    /// A name in a directory.
    Entry {
        parent: u64,
        name: String,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
}

impl FsCore {
    /// Where kernel cache invalidations go (the adapter's notifier thread).
    pub fn set_invalidation_sink(&self, sink: mpsc::Sender<Invalidation>) {
        self.table
            .lock()
            .set_kernel_bound(self.cfg.max_kernel_inodes, Some(sink.clone()));
        *self.sink.lock() = Some(sink);
    }

    /// Stops sending invalidations (the mount is gone).
    pub fn clear_invalidation_sink(&self) {
        self.table
            .lock()
            .set_kernel_bound(self.cfg.max_kernel_inodes, None);
        *self.sink.lock() = None;
    }

    /// Drops the kernel's cached entry `name` in `parent`; with `wait`,
    /// returns once it has (bounded). Never wait while the kernel may hold
    /// the directory's lock for a request this daemon has not answered.
    pub(crate) async fn invalidate_entry(&self, parent: u64, name: &str, wait: bool) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = Invalidation::Entry {
            parent,
            name: name.to_string(),
            done: wait.then_some(tx),
        };
        self.notify(msg, wait.then_some(rx)).await;
    }

    /// Drops the kernel's cached attributes of `ino`, not its pages; with
    /// `wait`, returns once the kernel has (bounded). Attributes alone take
    /// no page or inode lock in the kernel, so waiting cannot deadlock.
    pub(crate) async fn invalidate_attrs(&self, ino: u64, wait: bool) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = Invalidation::Attrs {
            ino,
            done: wait.then_some(tx),
        };
        self.notify(msg, wait.then_some(rx)).await;
    }

    /// Drops the kernel's cached attributes and pages of `ino`; with `wait`,
    /// returns once the kernel has done so (bounded, never indefinitely).
    pub(crate) async fn invalidate_inode(&self, ino: u64, wait: bool) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = Invalidation::Inode {
            ino,
            done: wait.then_some(tx),
        };
        self.notify(msg, wait.then_some(rx)).await;
    }

    async fn notify(&self, msg: Invalidation, done: Option<tokio::sync::oneshot::Receiver<()>>) {
        let sent = match self.sink.lock().as_ref() {
            Some(sink) => sink.send(msg).is_ok(),
            None => false,
        };
        if let (true, Some(done)) = (sent, done) {
            let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
        }
    }
}
