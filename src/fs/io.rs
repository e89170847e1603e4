//! Reading, writing and closing files.
//!
//! A document handle buffers the whole file; `flush` (close), `fsync` and
//! `release` commit a dirty buffer as one engine write. Scratch handles act
//! on the inode's in-memory bytes. Control handles see content generated at
//! open and run their action on close.
//!
//! Page cache after a commit: a commit normally drops the kernel's pages
//! and attributes of the file (and waits until it has). It keeps the pages
//! when they can only hold what is now stored: the handle created the file
//! or truncated it at open (the kernel dropped its pages then), no other
//! handle is open, no read through another handle has put stored bytes
//! into the cache since (`kernel_cache_seq` is still `None`: every read
//! through a handle that cannot write, and every open for writing that
//! does not truncate, sets it to [`PAGES_MIXED`]), and the stored bytes are
//! exactly the handle's buffer. The pages are then recorded as holding the
//! new sequence, so the next open keeps them, and only the attributes are
//! dropped (the stored mtime replaces the kernel's; the close returns once
//! the kernel has, so a `stat` right after it sees the commit); not even
//! that when the handle wrote and no attributes were made since (the
//! kernel dropped the size and times itself when the write returned, so
//! the next `stat` asks for the committed ones): a 1-writer create then
//! sends no notification at all.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::core::FsCore;
use super::error::{FsError, FsResult};
use super::handles::{FileHandle, FileState, Handle, Settle};
use super::inodes::{DocMeta, Node};
use super::names::ControlKind;
use super::namespace::get_stored;
use super::setattr::set_scratch_len;
use crate::types::WriteBatch;

/// `DocNode::kernel_cache_seq` when the kernel's pages of a document may
/// hold bytes of no stored sequence (sequence 0 is never a document's: an
/// engine's first WAL object is its fence).
pub(crate) const PAGES_MIXED: Option<u64> = Some(0);

impl FsCore {
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let handle = self.handles.get(fh).ok_or(FsError::BadHandle)?;
        let mut handle = handle.lock().await;
        let Handle::File(f) = &mut *handle else {
            return Err(FsError::IsDir);
        };
        if !f.readable {
            return Err(FsError::BadHandle);
        }
        self.ensure_loaded(f).await?;
        if !f.writable && matches!(f.state, FileState::Doc { .. }) {
            // The kernel caches what this returns, beside what a writer of
            // the same file may be writing: a commit must not keep both.
            if let Some(Node::Doc(d)) = self.table.lock().get_mut(f.ino).map(|i| &mut i.node) {
                if d.kernel_cache_seq.is_none() {
                    d.kernel_cache_seq = PAGES_MIXED;
                }
            }
        }
        let slice = |data: &[u8]| -> Vec<u8> {
            let start = (offset as usize).min(data.len());
            let end = start.saturating_add(size as usize).min(data.len());
            data[start..end].to_vec()
        };
        if let FileState::Control {
            kind: ControlKind::Changes,
            ..
        } = &f.state
        {
            let ns = {
                let t = self.table.lock();
                let parent = t.get(f.ino).map(|i| i.parent).ok_or(FsError::NotFound)?;
                drop(t);
                self.namespace(parent)?
            };
            return ns.changes.read(&self.store, &ns.name, offset, size).await;
        }
        Ok(match &f.state {
            FileState::Doc { buf, .. } => slice(buf),
            FileState::Control { content, .. } => slice(content),
            FileState::Scratch => match self.table.lock().get(f.ino).map(|i| &i.node) {
                Some(Node::Scratch(s)) => slice(&s.data),
                _ => Vec::new(),
            },
        })
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.check_writable()?;
        let handle = self.handles.get(fh).ok_or(FsError::BadHandle)?;
        let mut handle = handle.lock().await;
        let Handle::File(f) = &mut *handle else {
            return Err(FsError::IsDir);
        };
        if !f.writable {
            return Err(FsError::BadHandle);
        }
        if let FileState::Doc {
            abandoned: true, ..
        } = f.state
        {
            log::warn!(
                "{}: write refused: an earlier close of this open file failed to create it \
                 (see the error above), so nothing written through it can be saved; open it again",
                self.path_of(f.ino)
            );
            return Err(abandoned_error());
        }
        self.ensure_loaded(f).await?;
        let end = (offset as usize).saturating_add(data.len());
        let ino = f.ino;
        match &mut f.state {
            FileState::Doc {
                buf,
                dirty,
                written,
                too_large,
                from_empty,
                ..
            } => {
                if end > self.doc_buffer_cap() {
                    *too_large = true;
                    return Err(FsError::TooLarge(format!(
                        "a document file is limited to {} bytes of JSON",
                        self.cfg.engine.limits.max_doc_bytes
                    )));
                }
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[offset as usize..end].copy_from_slice(data);
                *dirty = true;
                *written = true;
                f.attrs_at_write = Some(self.attrs_made.load(Ordering::SeqCst));
                let len = buf.len() as u64;
                if let Some(Node::Doc(d)) = self.table.lock().get_mut(ino).map(|i| &mut i.node) {
                    d.dirty_size = Some(len);
                    // The pages now hold uncommitted bytes: no open may keep
                    // them as a stored sequence's.
                    if !*from_empty {
                        d.kernel_cache_seq = PAGES_MIXED;
                    } else if d.kernel_cache_seq != PAGES_MIXED {
                        d.kernel_cache_seq = None;
                    }
                }
            }
            FileState::Scratch => {
                let mut t = self.table.lock();
                let cur = match t.get(ino).map(|i| &i.node) {
                    Some(Node::Scratch(s)) => s.data.len(),
                    _ => return Err(FsError::BadHandle),
                };
                if end > cur {
                    set_scratch_len(&mut t, ino, end as u64, self.cfg.scratch_limit)?;
                }
                if let Some(Node::Scratch(s)) = t.get_mut(ino).map(|i| &mut i.node) {
                    s.data[offset as usize..end].copy_from_slice(data);
                    s.mtime = SystemTime::now();
                }
            }
            FileState::Control { .. } => {}
        }
        Ok(data.len() as u32)
    }

    /// Fetches a document handle's content on first use.
    pub(crate) async fn ensure_loaded(&self, f: &mut FileHandle) -> FsResult<()> {
        if let FileState::Doc { loaded: false, .. } = f.state {
            let (ns, id) = self.doc_of(f.ino)?;
            let stored = get_stored(&*ns.engine().await?, &id).await?;
            if let FileState::Doc { buf, loaded, .. } = &mut f.state {
                *buf = stored.map(|d| d.json.to_vec()).unwrap_or_default();
                *loaded = true;
            }
        }
        Ok(())
    }

    /// `close`: commits a dirty document, runs a control action.
    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.get(fh).ok_or(FsError::BadHandle)?;
        let mut handle = handle.lock().await;
        match &mut *handle {
            Handle::File(f) => self.settle_handle(f, Settle::Close).await,
            Handle::Dir(_) => Ok(()),
        }
    }

    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.get(fh).ok_or(FsError::BadHandle)?;
        let mut handle = handle.lock().await;
        match &mut *handle {
            Handle::File(f) => self.settle_handle(f, Settle::Fsync).await,
            Handle::Dir(_) => Ok(()),
        }
    }

    /// The last close: commits what is still dirty (errors are logged; the
    /// kernel does not pass them on) and drops the handle.
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.remove(fh).ok_or(FsError::BadHandle)?;
        let mut handle = handle.lock().await;
        let Handle::File(f) = &mut *handle else {
            return Ok(());
        };
        let result = self.settle_handle(f, Settle::Release).await;
        let abandoned = {
            let mut t = self.table.lock();
            let abandoned = match t.get_mut(f.ino) {
                Some(inode) => {
                    inode.open = inode.open.saturating_sub(1);
                    match &inode.node {
                        Node::Doc(d) if d.pending && inode.open == 0 && inode.linked => {
                            Some((inode.parent, inode.name.clone()))
                        }
                        _ => None,
                    }
                }
                None => None,
            };
            // A new document whose commit failed never existed.
            if let Some((parent, name)) = &abandoned {
                t.unlink(*parent, name);
            } else if !f.writable && t.get(f.ino).is_some_and(|i| i.open == 0) {
                t.read_closed(f.ino);
            }
            t.maybe_evict(f.ino);
            abandoned
        };
        if let Some((parent, name)) = abandoned {
            self.invalidate_entry(parent, &name, false).await;
        }
        result
    }

    /// A document created and not yet committed.
    fn is_uncommitted_doc(&self, ino: u64) -> bool {
        matches!(self.table.lock().get(ino).map(|i| &i.node), Some(Node::Doc(d)) if d.pending)
    }

    /// Undoes the `{}` an earlier close of this handle committed for a new
    /// file whose real content was then refused (`echo bad > new.json`).
    async fn remove_created(&self, ino: u64) {
        let place = {
            let t = self.table.lock();
            t.get(ino)
                .filter(|i| i.linked)
                .map(|i| (i.parent, i.name.clone()))
        };
        if let Some((parent, name)) = place {
            match self.unlink(parent, &name).await {
                Ok(()) => self.invalidate_entry(parent, &name, true).await,
                Err(e) => log::warn!(
                    "{}: could not remove the empty document created before the refused write: {e}",
                    self.path_of(ino)
                ),
            }
        }
    }

    /// A new document whose commit failed at close never existed: the name
    /// goes now (open handles keep the inode), and the kernel forgets it
    /// before close returns.
    async fn abandon_if_new(&self, ino: u64) {
        let gone = {
            let mut t = self.table.lock();
            match t.get(ino) {
                Some(i) if i.linked && matches!(&i.node, Node::Doc(d) if d.pending) => {
                    let (parent, name) = (i.parent, i.name.clone());
                    t.unlink(parent, &name);
                    Some((parent, name))
                }
                _ => None,
            }
        };
        if let Some((parent, name)) = gone {
            self.invalidate_entry(parent, &name, true).await;
        }
    }

    /// Commits a dirty document or runs a pending control action.
    async fn settle_handle(&self, f: &mut FileHandle, how: Settle) -> FsResult<()> {
        let closing = how != Settle::Fsync;
        match &mut f.state {
            // Its write already failed; fsync and every close say so too.
            FileState::Doc {
                abandoned: true, ..
            } if how != Settle::Release => Err(abandoned_error()),
            FileState::Doc {
                dirty: true,
                written: false,
                ..
            } if how == Settle::Close && !self.is_uncommitted_doc(f.ino) => Ok(()),
            FileState::Doc {
                dirty, too_large, ..
            } if *dirty && *too_large => {
                *dirty = false;
                log::warn!(
                    "{}: not saved: a write went past the {}-byte document limit",
                    self.path_of(f.ino),
                    self.cfg.engine.limits.max_doc_bytes
                );
                self.clear_dirty(f.ino);
                self.invalidate_inode(f.ino, true).await;
                if closing {
                    self.abandon_if_new(f.ino).await;
                }
                Err(FsError::TooLarge(
                    "a write went past the document size limit".into(),
                ))
            }
            FileState::Doc {
                buf,
                dirty,
                written,
                created_here,
                abandoned,
                from_empty,
                ..
            } if *dirty => {
                let creating = self.is_uncommitted_doc(f.ino);
                let was_written = *written;
                let kernel_view = *from_empty;
                *dirty = false;
                *written = false;
                let content = std::mem::take(buf);
                let unseen = f.attrs_at_write.take();
                let result = self.commit_doc(f.ino, &content, kernel_view, unseen).await;
                *buf = content;
                match &result {
                    Ok(()) => *created_here = creating && !was_written,
                    Err(_) if closing && *created_here => {
                        *created_here = false;
                        *abandoned = true;
                        self.remove_created(f.ino).await;
                    }
                    Err(_) if closing => {
                        *abandoned = creating;
                        self.abandon_if_new(f.ino).await;
                    }
                    Err(_) => {}
                }
                result
            }
            FileState::Control {
                kind, run_pending, ..
            } if *run_pending => {
                *run_pending = false;
                let kind = *kind;
                let parent = self.table.lock().get(f.ino).map(|i| i.parent);
                let ns = self.namespace(parent.ok_or(FsError::NotFound)?)?;
                self.run_action(&ns, kind).await
            }
            _ => Ok(()),
        }
    }

    /// Validates `content` as document inode `ino` and writes it, byte for
    /// byte, as one batch, with the time set while it was uncommitted (if
    /// any). On failure the stored document is untouched and one line is
    /// logged naming the file and the reason. `from_empty`: `content` is
    /// what a handle that started empty wrote (see the module docs).
    /// `attrs_at_write`: the handle's `FileHandle::attrs_at_write`.
    pub(crate) async fn commit_doc(
        &self,
        ino: u64,
        content: &[u8],
        from_empty: bool,
        attrs_at_write: Option<u64>,
    ) -> FsResult<()> {
        let (ns, id) = self.doc_of(ino)?;
        let (linked, name, mtime) = {
            let t = self.table.lock();
            let inode = t.get(ino).ok_or(FsError::NotFound)?;
            let mtime = match &inode.node {
                Node::Doc(d) => d.mtime_set,
                _ => None,
            };
            (inode.linked, inode.name.clone(), mtime)
        };
        if !linked {
            // Written after unlink or replacement: goes nowhere, as on disk.
            self.clear_dirty(ino);
            return Ok(());
        }
        let attempt = async {
            self.check_writable()?;
            self.cfg.engine.limits.check_json(&id, content)?;
            let engine = ns.engine().await?;
            let batch = WriteBatch::new().put_json(id.clone(), content.to_vec(), mtime);
            engine.write(batch).await?;
            Ok::<_, FsError>(engine.get_stored(&id).await.ok().flatten())
        };
        match attempt.await {
            Ok(stored) => {
                let keep_pages = {
                    let mut t = self.table.lock();
                    let alone = t.get(ino).is_some_and(|i| i.open <= 1);
                    let mut keep = false;
                    if let Some(Node::Doc(d)) = t.get_mut(ino).map(|i| &mut i.node) {
                        keep = from_empty
                            && alone
                            && d.kernel_cache_seq.is_none()
                            && stored.as_ref().is_some_and(|s| s.json == content);
                        d.pending = false;
                        d.meta = stored.as_ref().map(DocMeta::of);
                        d.dirty_size = None;
                        d.kernel_cache_seq = match &stored {
                            Some(s) if keep => Some(s.seq),
                            _ => None,
                        };
                        d.mtime_set = None;
                    }
                    t.unhide(ns.ino, &id);
                    t.reindex(ino);
                    keep
                };
                self.bump_epoch();
                // Read after the table changed (above): attributes made
                // since show the commit.
                let kernel_dropped_attrs =
                    attrs_at_write == Some(self.attrs_made.load(Ordering::SeqCst));
                if keep_pages {
                    if !self.store_last_page(ino, content).await {
                        // Its pages are being dropped: the kernel holds no
                        // stored version now (`kernel_cache_seq`).
                        self.clear_dirty(ino);
                    }
                    // Waited for: a `stat` right after the close must not
                    // see what an `fstat` before it cached.
                    if !kernel_dropped_attrs {
                        self.invalidate_attrs(ino, true).await;
                    }
                } else {
                    self.invalidate_inode(ino, true).await;
                }
                Ok(())
            }
            Err(e) => {
                log::warn!("{}/{name}: not saved: {e}", ns.name);
                self.clear_dirty(ino);
                self.invalidate_inode(ino, true).await;
                Err(e)
            }
        }
    }

    fn clear_dirty(&self, ino: u64) {
        if let Some(Node::Doc(d)) = self.table.lock().get_mut(ino).map(|i| &mut i.node) {
            d.dirty_size = None;
            d.kernel_cache_seq = None;
            d.mtime_set = None;
        }
    }

    /// Commits every dirty handle (clean unmount) and lets running
    /// automatic flushes finish, then logs each scratch file the daemon is
    /// about to discard, so none vanishes silently.
    pub async fn shutdown(&self) {
        for (_, handle) in self.handles.all() {
            let mut handle = handle.lock().await;
            if let Handle::File(f) = &mut *handle {
                if f.is_dirty() {
                    let _ = self.settle_handle(f, Settle::Release).await;
                }
            }
        }
        for (_, engine) in self.open_engines() {
            engine.finish_background_work().await;
        }
        let scratch: Vec<(u64, usize)> = {
            let t = self.table.lock();
            t.descendants(super::inodes::ROOT_INO)
                .into_iter()
                .filter_map(|(ino, _, _)| match t.get(ino).map(|i| &i.node) {
                    Some(Node::Scratch(s)) => Some((ino, s.data.len())),
                    _ => None,
                })
                .collect()
        };
        for (ino, len) in scratch {
            log::warn!(
                "{}: scratch file discarded at unmount ({len} bytes): only names ending in .json \
                 are stored; rename it to one to keep it",
                self.path_of(ino)
            );
        }
    }

    /// Scratch files below namespace directory `ns_ino`: (count, bytes).
    pub(crate) fn scratch_counts(&self, ns_ino: u64) -> (u64, u64) {
        self.table.lock().scratch_below(ns_ino)
    }
}

/// What a handle whose new file was removed after a refused commit answers.
fn abandoned_error() -> FsError {
    FsError::Io(
        "an earlier close of this open file failed to create it, so it was removed; \
         nothing written through it is saved"
            .into(),
    )
}
