//! Open file and directory handles.
//!
//! Each handle sits behind its own async mutex, so operations on one handle
//! run in order while different handles proceed in parallel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::dirstream::DirStream;
use super::names::ControlKind;

pub(crate) enum FileState {
    /// A document: the content as of open, then as edited. `too_large`
    /// once a write went past the size bound: closing then commits nothing.
    /// `loaded` is false until the content is first needed: an open that
    /// the kernel serves from its page cache never fetches it.
    ///
    /// `written` is set by `write` and cleared by a commit. A shell's
    /// `> x.json` opens, `dup2`s and closes the first descriptor before
    /// writing, so a close can see a handle that was only truncated or
    /// created. For an existing document that close commits nothing (the
    /// last close, release, commits the truncation if nothing is written):
    /// committing `{}` there would replace the document even when the
    /// content written next is refused. A new file is committed as `{}` at
    /// once, so `touch` is durable when it returns; `created_here` then
    /// records that this handle made it, and a later refused commit through
    /// the same handle removes it again.
    ///
    /// `abandoned` once a close's refused commit removed the new file this
    /// handle created: the descriptors still open on it (a shell's `>`
    /// closes its first one before writing) must not see later writes,
    /// fsync and close succeed while nothing can be stored any more, so
    /// those fail with EIO.
    ///
    /// `from_empty`: the handle created the file or truncated it at open
    /// (the kernel then dropped its pages), so whatever the kernel caches
    /// of it came through this handle's writes, unless another handle
    /// touched it since (see `FsCore::kernel_holds`).
    Doc {
        buf: Vec<u8>,
        loaded: bool,
        dirty: bool,
        written: bool,
        created_here: bool,
        too_large: bool,
        abandoned: bool,
        from_empty: bool,
    },
    /// Scratch I/O goes straight to the inode's in-memory data.
    Scratch,
    Control {
        kind: ControlKind,
        /// What reads return: generated at open.
        content: Bytes,
        /// Opened for writing and the operation has not run yet.
        run_pending: bool,
    },
}

pub(crate) struct FileHandle {
    pub ino: u64,
    pub readable: bool,
    pub writable: bool,
    pub state: FileState,
    /// `FsCore::attrs_made` when this handle last wrote. The kernel drops
    /// a file's cached size and times itself once a write returns; while
    /// the counter still reads this at the commit, no attributes were made
    /// since, so none the kernel holds predates the commit, and telling
    /// it to drop them again would cost a notification and nothing more.
    pub attrs_at_write: Option<u64>,
}

impl FileHandle {
    pub fn is_dirty(&self) -> bool {
        matches!(self.state, FileState::Doc { dirty: true, .. })
    }
}

/// Why a handle is being settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// `close` of one descriptor (FUSE flush); more may remain.
    Close,
    Fsync,
    /// The last close, or a clean unmount.
    Release,
}

pub(crate) enum Handle {
    File(FileHandle),
    Dir(DirStream),
}

pub(crate) type HandleRef = Arc<tokio::sync::Mutex<Handle>>;

pub(crate) struct HandleTable {
    next: AtomicU64,
    map: Mutex<HashMap<u64, HandleRef>>,
}

impl HandleTable {
    pub fn new() -> HandleTable {
        HandleTable {
            next: AtomicU64::new(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn insert(&self, handle: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.map
            .lock()
            .insert(fh, Arc::new(tokio::sync::Mutex::new(handle)));
        fh
    }

    pub fn get(&self, fh: u64) -> Option<HandleRef> {
        self.map.lock().get(&fh).cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<HandleRef> {
        self.map.lock().remove(&fh)
    }

    pub fn all(&self) -> Vec<(u64, HandleRef)> {
        self.map
            .lock()
            .iter()
            .map(|(fh, h)| (*fh, h.clone()))
            .collect()
    }
}
