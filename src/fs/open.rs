//! `open`, `create` and `mknod`. A document handle gets the stored content
//! when first read or written (never with O_TRUNC, and not at all when the
//! kernel serves reads from its page cache, kept across opens while the
//! stored sequence is unchanged). A new document is *pending* (in memory
//! only) until its first commit.

use std::time::SystemTime;

use super::attr::{Attr, OpenInfo, OpenMode};
use super::core::{control_ino, ns_of, DirRef, FsCore};
use super::error::{FsError, FsResult};
use super::handles::{FileHandle, FileState, Handle};
use super::inodes::{DocMeta, DocNode, Node, ScratchNode, ROOT_INO};
use super::io::PAGES_MIXED;
use super::names::NameKind;
use super::namespace::get_stored;
use super::setattr::set_scratch_len;

enum Target {
    Doc,
    Scratch,
    Control(super::names::ControlKind),
}

impl FsCore {
    /// Largest buffer a document handle accepts before EFBIG.
    pub(crate) fn doc_buffer_cap(&self) -> usize {
        (self.cfg.engine.limits.max_doc_bytes.saturating_mul(4)).max(1 << 20)
    }

    pub async fn open(&self, ino: u64, mode: OpenMode) -> FsResult<OpenInfo> {
        // The adapter tries this first too; here so every caller of the
        // core (and its model tests) goes through the same answer.
        if let Some(info) = self.open_cached(ino, mode) {
            return Ok(info);
        }
        if mode.write {
            self.check_writable()?;
            self.check_not_fenced_at(ino)?;
        }
        let target = {
            let t = self.table.lock();
            match t.get(ino).map(|i| &i.node) {
                None => return Err(FsError::NotFound),
                Some(
                    Node::Root
                    | Node::Namespace(_)
                    | Node::Snapshots(_)
                    | Node::Versions(_)
                    | Node::Dir(_),
                ) => return Err(FsError::IsDir),
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
                if kind == super::names::ControlKind::Changes && mode.read {
                    let alone = self.table.lock().get(ino).is_some_and(|i| i.open == 0);
                    ns.changes.refresh(&self.store, &ns.name, alone).await?;
                }
                let content = match (mode.read, kind.is_report()) {
                    (true, true) => self.report_for_open(&ns, kind).await?,
                    (true, false) => self.control_content(&ns, kind).await?.into(),
                    (false, _) => bytes::Bytes::new(),
                };
                if let Some(inode) = self.table.lock().get_mut(ino) {
                    inode.open += 1;
                }
                let state = FileState::Control {
                    kind,
                    content,
                    run_pending: mode.write,
                };
                Ok(self.new_file_handle(ino, mode, state, false, true))
            }
        }
    }

    /// `open` of a document for reading whose stored state the table
    /// knows, in one lock and without a future, so the FUSE thread that
    /// read the request answers it (`Adapter::open`): `None` for every
    /// other open (writes, scratch and control files, documents that are
    /// pending or of unknown state), which the async `open` handles. Does
    /// what `open_doc` does on its known-to-exist path: the content is
    /// fetched only if a read needs it.
    pub fn open_cached(&self, ino: u64, mode: OpenMode) -> Option<OpenInfo> {
        if mode.write {
            return None;
        }
        let keep_cache = {
            let mut t = self.table.lock();
            let inode = t.get(ino).filter(|i| i.linked)?;
            ns_of(&t, inode.parent)?;
            let inode = t.get_mut(ino)?;
            let Node::Doc(d) = &mut inode.node else {
                return None;
            };
            let seq = match d {
                DocNode {
                    pending: false,
                    meta: Some(meta),
                    ..
                } => meta.seq,
                _ => return None,
            };
            let keep_cache = d.kernel_cache_seq == Some(seq);
            d.kernel_cache_seq = Some(seq);
            inode.open += 1;
            keep_cache
        };
        let state = FileState::Doc {
            buf: Vec::new(),
            loaded: false,
            dirty: false,
            written: false,
            created_here: false,
            too_large: false,
            abandoned: false,
            from_empty: false,
        };
        Some(self.new_file_handle(ino, mode, state, keep_cache, false))
    }

    /// EROFS for opening a file for writing in a namespace another writer
    /// took over (known once a commit there failed): refuse it up front
    /// rather than at close.
    pub(crate) fn check_not_fenced_at(&self, ino: u64) -> FsResult<()> {
        let ns = {
            let t = self.table.lock();
            let parent = t.get(ino).map(|i| i.parent);
            parent.and_then(|p| ns_of(&t, p))
        };
        match ns {
            Some(ns) => ns.check_not_fenced(),
            None => Ok(()),
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
        let no_flush = !mode.write && !matches!(state, FileState::Control { .. });
        let fh = self.handles.insert(Handle::File(FileHandle {
            ino,
            readable: mode.read,
            writable: mode.write,
            state,
            attrs_at_write: None,
        }));
        OpenInfo {
            fh,
            keep_cache,
            direct_io,
            no_flush,
        }
    }

    async fn open_doc(&self, ino: u64, mode: OpenMode) -> FsResult<OpenInfo> {
        let truncate = mode.write && mode.truncate;
        let (ns, id) = self.doc_of(ino)?;
        let pending = matches!(
            self.table.lock().get(ino).map(|i| &i.node),
            Some(Node::Doc(DocNode { pending: true, .. }))
        );
        let known = match self.table.lock().get(ino) {
            Some(i) if i.linked => match &i.node {
                Node::Doc(d) => d.meta,
                _ => None,
            },
            _ => None,
        };
        let (buf, seq, loaded) = if truncate || pending {
            (Vec::new(), None, true)
        } else if let Some(meta) = known {
            // Known to exist: fetch the content only if a read needs it.
            (Vec::new(), Some(meta.seq), false)
        } else {
            let e0 = self.epoch();
            let stored = get_stored(&*ns.engine().await?, &id).await?;
            let mut t = self.table.lock();
            let (linked, parent, name) = t
                .get(ino)
                .map(|i| (i.linked, i.parent, i.name.clone()))
                .ok_or(FsError::NotFound)?;
            if linked {
                self.settle_doc(&mut t, parent, &name, &id, stored.as_ref().map(DocMeta::of), e0)?;
            }
            match stored {
                Some(doc) => (doc.json.to_vec(), Some(doc.seq), true),
                None if linked => return Err(FsError::NotFound),
                None => (Vec::new(), None, true),
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
            // Truncating drops the kernel's pages; otherwise what it holds
            // will match no stored sequence once written.
            d.kernel_cache_seq = if truncate { None } else { PAGES_MIXED };
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
            loaded,
            dirty: truncate || pending,
            written: false,
            created_here: false,
            too_large: false,
            abandoned: false,
            from_empty: truncate,
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
        self.check_name(name)?;
        self.check_writable()?;
        if parent == ROOT_INO {
            return Err(FsError::NotPermitted(
                "the top level holds only namespace directories",
            ));
        }
        let dir = self.dir_of(parent)?;
        dir.ns.check_not_fenced()?;
        let mode = OpenMode {
            write: true,
            ..mode
        };
        let existing = match self.classify(&dir, name) {
            NameKind::DocTooLong => return Err(FsError::NameTooLong),
            NameKind::Control(kind) => Some(control_ino(&mut self.table.lock(), dir.ns.ino, kind)),
            // A scratch name may also be a directory that documents make.
            NameKind::Scratch | NameKind::Doc(_) => match self.find(parent, name).await {
                Ok(attr) => Some(attr.ino),
                Err(FsError::NotFound) => None,
                Err(e) => return Err(e),
            },
        };
        let info = match existing {
            Some(_) if mode.exclusive => return Err(FsError::Exists),
            Some(ino) => self.open(ino, mode).await?,
            None => self.create_new(&dir, name, mode)?,
        };
        let ino = self.handle_ino(info.fh).await?;
        self.remember(ino);
        let attr = self.getattr(ino).await?;
        Ok((attr, info))
    }

    fn create_new(&self, dir: &DirRef, name: &str, mode: OpenMode) -> FsResult<OpenInfo> {
        let mut t = self.table.lock();
        let (node, state) = match self.classify(dir, name) {
            NameKind::Doc(id) => (
                Node::Doc(DocNode {
                    id,
                    meta: None,
                    pending: true,
                    kernel_cache_seq: None,
                    dirty_size: Some(0),
                    mtime_set: None,
                }),
                FileState::Doc {
                    buf: Vec::new(),
                    loaded: true,
                    dirty: true,
                    written: false,
                    created_here: false,
                    too_large: false,
                    abandoned: false,
                    from_empty: true,
                },
            ),
            _ => (
                Node::Scratch(ScratchNode {
                    data: Vec::new(),
                    mtime: SystemTime::now(),
                    atime: SystemTime::now(),
                    mode: mode.create_perm,
                    hides: None,
                }),
                FileState::Scratch,
            ),
        };
        let ino = t.insert(dir.ino, name, node);
        t.touch_dir(dir.ino);
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
}
