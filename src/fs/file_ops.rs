//! Opening, reading, writing and closing files, and `setattr`.
//!
//! A document handle buffers the whole file; `flush` (close), `fsync` and
//! `release` commit a dirty buffer as one engine write. Scratch handles act
//! on the inode's in-memory bytes. Control handles see content generated at
//! open and run their action on close.

use std::time::SystemTime;

use super::attr::{Attr, OpenInfo, OpenMode, SetAttr};
use super::core::{control_ino, FsCore};
use super::error::{FsError, FsResult};
use super::handles::{FileHandle, FileState, Handle};
use super::inodes::{DocMeta, DocNode, InodeTable, Node, ScratchNode, ROOT_INO};
use super::names::NameKind;
use crate::types::{Document, WriteBatch};

enum Target {
    Doc,
    Scratch,
    Control(super::names::ControlKind),
}

impl FsCore {
    /// Largest buffer a document handle accepts before EFBIG.
    fn doc_buffer_cap(&self) -> usize {
        (self.cfg.engine.limits.max_doc_bytes.saturating_mul(4)).max(1 << 20)
    }

    pub async fn open(&self, ino: u64, mode: OpenMode) -> FsResult<OpenInfo> {
        if mode.write {
            self.check_writable()?;
        }
        let target = {
            let t = self.table.lock();
            match t.get(ino).map(|i| &i.node) {
                None => return Err(FsError::NotFound),
                Some(Node::Root | Node::Namespace(_)) => return Err(FsError::IsDir),
                Some(Node::Doc(_)) => Target::Doc,
                Some(Node::Scratch(_)) => Target::Scratch,
                Some(Node::Control(k)) => Target::Control(*k),
            }
        };
        match target {
            Target::Doc => self.open_doc(ino, mode).await,
            Target::Scratch => {
                let mut t = self.table.lock();
                if mode.write && mode.truncate {
                    set_scratch_len(&mut t, ino, 0, u64::MAX)?;
                }
                let inode = t.get_mut(ino).ok_or(FsError::NotFound)?;
                inode.open += 1;
                Ok(self.new_file_handle(ino, mode, FileState::Scratch, false, false))
            }
            Target::Control(kind) => {
                if mode.write && !kind.is_action() {
                    return Err(FsError::Access("this control file is read-only"));
                }
                let ns = {
                    let t = self.table.lock();
                    let parent = t.get(ino).map(|i| i.parent).ok_or(FsError::NotFound)?;
                    drop(t);
                    self.namespace(parent)?
                };
                let content = if mode.read {
                    self.control_content(&ns, kind).await?
                } else {
                    Vec::new()
                };
                if let Some(inode) = self.table.lock().get_mut(ino) {
                    inode.open += 1;
                }
                let state = FileState::Control {
                    kind,
                    content: content.into(),
                    run_pending: mode.write,
                };
                Ok(self.new_file_handle(ino, mode, state, false, true))
            }
        }
    }

    fn new_file_handle(
        &self,
        ino: u64,
        mode: OpenMode,
        state: FileState,
        keep_cache: bool,
        direct_io: bool,
    ) -> OpenInfo {
        let fh = self.handles.insert(Handle::File(FileHandle {
            ino,
            readable: mode.read,
            writable: mode.write,
            state,
        }));
        OpenInfo {
            fh,
            keep_cache,
            direct_io,
        }
    }

    async fn open_doc(&self, ino: u64, mode: OpenMode) -> FsResult<OpenInfo> {
        let truncate = mode.write && mode.truncate;
        let (ns, id) = self.doc_of(ino)?;
        let pending = matches!(
            self.table.lock().get(ino).map(|i| &i.node),
            Some(Node::Doc(DocNode { pending: true, .. }))
        );
        let (buf, seq) = if truncate || pending {
            (Vec::new(), None)
        } else {
            let e0 = self.epoch();
            let stored = ns.engine().await?.get_stored(&id).await?;
            let mut t = self.table.lock();
            let (linked, name) = t
                .get(ino)
                .map(|i| (i.linked, i.name.clone()))
                .ok_or(FsError::NotFound)?;
            if linked {
                self.settle_doc(
                    &mut t,
                    ns.ino,
                    &name,
                    &id,
                    stored.as_ref().map(DocMeta::of),
                    e0,
                )?;
            }
            match stored {
                Some(doc) => (doc.json.to_vec(), Some(doc.seq)),
                None if linked => return Err(FsError::NotFound),
                None => (Vec::new(), None),
            }
        };
        let mut t = self.table.lock();
        let inode = t.get_mut(ino).ok_or(FsError::NotFound)?;
        inode.open += 1;
        let Node::Doc(d) = &mut inode.node else {
            return Err(FsError::NotFound);
        };
        let mut keep_cache = false;
        if mode.write {
            d.kernel_cache_seq = None;
        } else if let Some(seq) = seq {
            keep_cache = d.kernel_cache_seq == Some(seq);
            d.kernel_cache_seq = Some(seq);
        }
        if truncate {
            d.dirty_size = Some(0);
        }
        drop(t);
        let state = FileState::Doc {
            buf,
            dirty: truncate || pending,
        };
        Ok(self.new_file_handle(ino, mode, state, keep_cache, false))
    }

    /// Creates `name` (or opens it when it exists and `mode` is not
    /// exclusive). Counts as a lookup of the returned inode.
    pub async fn create(
        &self,
        parent: u64,
        name: &str,
        mode: OpenMode,
    ) -> FsResult<(Attr, OpenInfo)> {
        self.check_writable()?;
        if parent == ROOT_INO {
            return Err(FsError::NotPermitted(
                "the top level holds only namespace directories",
            ));
        }
        let ns = self.namespace(parent)?;
        let mode = OpenMode {
            write: true,
            ..mode
        };
        let existing = match self.classify(name) {
            NameKind::DocTooLong => return Err(FsError::NameTooLong),
            NameKind::Control(kind) => Some(control_ino(&mut self.table.lock(), ns.ino, kind)),
            NameKind::Scratch => self.table.lock().lookup(ns.ino, name),
            NameKind::Doc(_) => match self.lookup(parent, name).await {
                Ok(attr) => {
                    self.forget(attr.ino, 1);
                    Some(attr.ino)
                }
                Err(FsError::NotFound) => None,
                Err(e) => return Err(e),
            },
        };
        let info = match existing {
            Some(_) if mode.exclusive => return Err(FsError::Exists),
            Some(ino) => self.open(ino, mode).await?,
            None => self.create_new(ns.ino, name, mode)?,
        };
        let ino = self.handle_ino(info.fh).await?;
        self.remember(ino);
        let attr = self.getattr(ino).await?;
        Ok((attr, info))
    }

    fn create_new(&self, ns_ino: u64, name: &str, mode: OpenMode) -> FsResult<OpenInfo> {
        let mut t = self.table.lock();
        let (node, state) = match self.classify(name) {
            NameKind::Doc(id) => (
                Node::Doc(DocNode {
                    id,
                    meta: None,
                    pending: true,
                    kernel_cache_seq: None,
                    dirty_size: Some(0),
                }),
                FileState::Doc {
                    buf: Vec::new(),
                    dirty: true,
                },
            ),
            _ => (
                Node::Scratch(ScratchNode {
                    data: Vec::new(),
                    mtime: SystemTime::now(),
                    hides: None,
                }),
                FileState::Scratch,
            ),
        };
        let ino = t.insert(ns_ino, name, node);
        if let Some(inode) = t.get_mut(ino) {
            inode.open += 1;
        }
        drop(t);
        Ok(self.new_file_handle(ino, mode, state, false, false))
    }

    async fn handle_ino(&self, fh: u64) -> FsResult<u64> {
        let handle = self.handles.get(fh).ok_or(FsError::BadHandle)?;
        let handle = handle.lock().await;
        match &*handle {
            Handle::File(f) => Ok(f.ino),
            Handle::Dir(d) => Ok(d.dir_ino),
        }
    }

    /// `mknod` of a regular file: create and close at once (a document
    /// file is committed as `{}`).
    pub async fn mknod(&self, parent: u64, name: &str) -> FsResult<Attr> {
        let (attr, info) = self.create(parent, name, OpenMode::write_only()).await?;
        let flushed = self.flush(info.fh).await;
        let released = self.release(info.fh).await;
        if let Err(e) = flushed.and(released) {
            self.forget(attr.ino, 1);
            return Err(e);
        }
        self.getattr(attr.ino).await
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let handle = self.handles.get(fh).ok_or(FsError::BadHandle)?;
        let handle = handle.lock().await;
        let Handle::File(f) = &*handle else {
            return Err(FsError::IsDir);
        };
        if !f.readable {
            return Err(FsError::BadHandle);
        }
        let slice = |data: &[u8]| -> Vec<u8> {
            let start = (offset as usize).min(data.len());
            let end = start.saturating_add(size as usize).min(data.len());
            data[start..end].to_vec()
        };
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
        let end = (offset as usize).saturating_add(data.len());
        let ino = f.ino;
        match &mut f.state {
            FileState::Doc { buf, dirty } => {
                if end > self.doc_buffer_cap() {
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
                let len = buf.len() as u64;
                if let Some(Node::Doc(d)) = self.table.lock().get_mut(ino).map(|i| &mut i.node) {
                    d.dirty_size = Some(len);
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

    /// `close`: commits a dirty document, runs a control action.
    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.get(fh).ok_or(FsError::BadHandle)?;
        let mut handle = handle.lock().await;
        match &mut *handle {
            Handle::File(f) => self.settle_handle(f).await,
            Handle::Dir(_) => Ok(()),
        }
    }

    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        self.flush(fh).await
    }

    /// The last close: commits what is still dirty (errors are logged; the
    /// kernel does not pass them on) and drops the handle.
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.remove(fh).ok_or(FsError::BadHandle)?;
        let mut handle = handle.lock().await;
        let Handle::File(f) = &mut *handle else {
            return Ok(());
        };
        let result = self.settle_handle(f).await;
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
        }
        t.maybe_evict(f.ino);
        drop(t);
        if let Some((parent, name)) = abandoned {
            self.invalidate_entry(parent, &name);
        }
        result
    }

    async fn settle_handle(&self, f: &mut FileHandle) -> FsResult<()> {
        match &mut f.state {
            FileState::Doc { buf, dirty } if *dirty => {
                *dirty = false;
                let content = std::mem::take(buf);
                let result = self.commit_doc(f.ino, &content).await;
                *buf = content;
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

    /// Validates `content` as document inode `ino` and writes it as one
    /// batch. On failure the stored document is untouched and one line is
    /// logged naming the file and the reason.
    pub(crate) async fn commit_doc(&self, ino: u64, content: &[u8]) -> FsResult<()> {
        let (ns, id) = self.doc_of(ino)?;
        let (linked, name) = {
            let t = self.table.lock();
            let inode = t.get(ino).ok_or(FsError::NotFound)?;
            (inode.linked, inode.name.clone())
        };
        if !linked {
            // Written after unlink or replacement: goes nowhere, as on disk.
            self.clear_dirty(ino);
            return Ok(());
        }
        let attempt = async {
            self.check_writable()?;
            let doc = Document::from_json_bytes(&id, content)?;
            self.cfg.engine.limits.check_document(&doc)?;
            let engine = ns.engine().await?;
            engine.write(WriteBatch::new().upsert(doc)).await?;
            Ok::<_, FsError>(engine.get_stored(&id).await.ok().flatten())
        };
        match attempt.await {
            Ok(stored) => {
                {
                    let mut t = self.table.lock();
                    if let Some(Node::Doc(d)) = t.get_mut(ino).map(|i| &mut i.node) {
                        d.pending = false;
                        d.meta = stored.as_ref().map(DocMeta::of);
                        d.dirty_size = None;
                        d.kernel_cache_seq = None;
                    }
                    t.unhide(ns.ino, &id);
                    t.reindex(ino);
                }
                self.bump_epoch();
                self.invalidate_inode(ino, true).await;
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
        }
    }

    /// chmod/chown to the current values, utimes, and truncate.
    pub async fn setattr(&self, ino: u64, change: SetAttr) -> FsResult<Attr> {
        let current = self.getattr(ino).await?;
        if let Some(mode) = change.mode {
            if (mode & 0o7777) as u16 != current.perm {
                return Err(FsError::NotPermitted(
                    "reef keeps no per-file modes; only a chmod to the current mode is accepted",
                ));
            }
        }
        if change.uid.is_some_and(|u| u != current.uid)
            || change.gid.is_some_and(|g| g != current.gid)
        {
            return Err(FsError::NotPermitted("reef keeps no per-file owners"));
        }
        if let Some(size) = change.size {
            self.check_writable()?;
            self.truncate(ino, size, change.fh).await?;
        }
        if let Some(mtime) = change.mtime {
            if let Some(Node::Scratch(s)) = self.table.lock().get_mut(ino).map(|i| &mut i.node) {
                s.mtime = mtime;
            }
        }
        self.getattr(ino).await
    }

    async fn truncate(&self, ino: u64, size: u64, fh: Option<u64>) -> FsResult<()> {
        let target = {
            let mut t = self.table.lock();
            match t.get(ino).map(|i| &i.node) {
                None => return Err(FsError::NotFound),
                Some(Node::Root | Node::Namespace(_)) => return Err(FsError::IsDir),
                Some(Node::Control(_)) => return Ok(()),
                Some(Node::Scratch(_)) => {
                    return set_scratch_len(&mut t, ino, size, self.cfg.scratch_limit);
                }
                Some(Node::Doc(d)) => d.pending,
            }
        };
        let size = size as usize;
        if size > self.doc_buffer_cap() {
            return Err(FsError::TooLarge(
                "document files are limited in size".into(),
            ));
        }
        // Through an open handle: edit its buffer; committed at close.
        if let Some(handle) = fh.and_then(|fh| self.handles.get(fh)) {
            let mut handle = handle.lock().await;
            if let Handle::File(FileHandle {
                ino: h_ino,
                writable: true,
                state: FileState::Doc { buf, dirty },
                ..
            }) = &mut *handle
            {
                if *h_ino == ino {
                    buf.resize(size, 0);
                    *dirty = true;
                    if let Some(Node::Doc(d)) = self.table.lock().get_mut(ino).map(|i| &mut i.node)
                    {
                        d.dirty_size = Some(size as u64);
                        d.kernel_cache_seq = None;
                    }
                    return Ok(());
                }
            }
        }
        // By path (`truncate -s`): commit the truncated content now.
        let mut content = if target {
            Vec::new()
        } else {
            let (ns, id) = self.doc_of(ino)?;
            let stored = ns.engine().await?.get_stored(&id).await?;
            stored.ok_or(FsError::NotFound)?.json.to_vec()
        };
        content.resize(size, 0);
        self.commit_doc(ino, &content).await
    }

    /// Commits every dirty handle (clean unmount).
    pub async fn shutdown(&self) {
        for (_, handle) in self.handles.all() {
            let mut handle = handle.lock().await;
            if let Handle::File(f) = &mut *handle {
                if f.is_dirty() {
                    let _ = self.settle_handle(f).await;
                }
            }
        }
    }
}

/// Resizes scratch inode `ino`, keeping the total within `limit`.
pub(crate) fn set_scratch_len(t: &mut InodeTable, ino: u64, len: u64, limit: u64) -> FsResult<()> {
    let cur = match t.get(ino).map(|i| &i.node) {
        Some(Node::Scratch(s)) => s.data.len() as u64,
        _ => return Err(FsError::NotFound),
    };
    if len > cur && t.scratch_bytes.saturating_add(len - cur) > limit {
        return Err(FsError::NoSpace(format!(
            "scratch files (non-document names) are held in memory, {limit} bytes at most"
        )));
    }
    t.scratch_bytes = t.scratch_bytes.saturating_add(len).saturating_sub(cur);
    if let Some(Node::Scratch(s)) = t.get_mut(ino).map(|i| &mut i.node) {
        s.data.resize(len as usize, 0);
        s.mtime = SystemTime::now();
    }
    Ok(())
}
