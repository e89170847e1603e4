//! Telling the kernel what changed behind its caches. The core sends
//! `Invalidation`s to a sink; the adapter's notifier thread writes them to
//! /dev/fuse. Without a sink (tests of the core alone) they are dropped.

use std::sync::mpsc;
use std::time::Duration;

use super::core::FsCore;

/// The kernel's page size on the machines reef runs on (x86-64, and
/// aarch64 with 4 KiB pages). Where pages are larger, a store at this
/// offset starts inside a page, which the kernel then leaves as it is: a
/// read asks the daemon, as it would without the store.
const PAGE_BYTES: usize = 4096;

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
    /// Fills the kernel's cached pages of an inode from `offset` with
    /// `data` (`FUSE_NOTIFY_STORE`): a page the data fills to the end of
    /// the file becomes up to date, so the next read needs no request.
    Store {
        ino: u64,
        offset: u64,
        data: Vec<u8>,
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

    /// Gives the kernel the last, partly filled page of a document whose
    /// pages it keeps, `content` being the whole document: a write that
    /// ends inside a page leaves that page not up to date in the kernel
    /// (only whole pages written count as filled), so the first read after
    /// the close would otherwise ask the daemon for it. Waited for, like
    /// the invalidations a commit waits for; if the kernel does not take it
    /// in time (a page lock held long), the pages are dropped after it, in
    /// order, so a late store can never leave stale bytes cached.
    pub(crate) async fn store_last_page(&self, ino: u64, content: &[u8]) -> bool {
        let tail = content.len() % PAGE_BYTES;
        if tail == 0 {
            return true;
        }
        let offset = content.len() - tail;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = Invalidation::Store {
            ino,
            offset: offset as u64,
            data: content[offset..].to_vec(),
            done: Some(tx),
        };
        if self.notify(msg, Some(rx)).await {
            return true;
        }
        self.invalidate_inode(ino, false).await;
        false
    }

    /// Sends `msg`; with `done`, waits (bounded) until the notifier thread
    /// has handed it to the kernel. False only if it was waited for and
    /// the kernel did not take it in time (with no kernel, nothing is
    /// cached and there is nothing to wait for).
    async fn notify(
        &self,
        msg: Invalidation,
        done: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> bool {
        let sent = match self.sink.lock().as_ref() {
            Some(sink) => sink.send(msg).is_ok(),
            None => false,
        };
        match (sent, done) {
            (true, Some(done)) => tokio::time::timeout(Duration::from_secs(2), done)
                .await
                .is_ok(),
            _ => true,
        }
    }
}
