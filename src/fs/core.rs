//! `FsCore`: the filesystem, independent of fuser and testable without a
//! mount. Inode numbers, handles and errors are plain values; every
//! operation is an async fn that never blocks a thread on the object store.
//!
//! This file holds the core's state and the name-space operations (lookup,
//! getattr, forget, statfs, namespace directories). File I/O is in
//! `file_ops.rs`, unlink/rename in `rename.rs`, control files in
//! `control.rs`, listings in `readdir.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::attr::{time_from_ms, Attr, FileKind};
use super::error::{FsError, FsResult};
use super::handles::HandleTable;
use super::inodes::{DocMeta, DocNode, Inode, InodeTable, Node, ROOT_INO};
use super::names::{classify, ControlKind, NameKind};
use super::namespace::Namespace;
use crate::engine::layout::{check_namespace, manifest_dir};
use crate::engine::{delete_namespace, Engine, EngineOptions, StoredDoc};
use crate::store::ObjectStore;
use crate::types::DocId;

/// How the core presents and limits the tree.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Every mutation fails with EROFS; engines open as followers.
    pub read_only: bool,
    pub engine: EngineOptions,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits of files and directories.
    pub file_mode: u16,
    pub dir_mode: u16,
    /// Bound on the bytes held by scratch files (ENOSPC beyond it).
    pub scratch_limit: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        // SAFETY: geteuid/getegid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        CoreConfig {
            read_only: false,
            engine: EngineOptions::default(),
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
            scratch_limit: 256 << 20,
        }
    }
}

/// A change the kernel's caches must hear about (sent by the adapter
/// through fuser's `Notifier`, from a thread of its own).
#[derive(Debug)]
pub enum Invalidation {
    /// Attributes and cached pages of an inode.
    Inode {
        ino: u64,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
    /// A name in a directory.
    Entry { parent: u64, name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

pub struct FsCore {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) cfg: CoreConfig,
    pub(crate) table: Mutex<InodeTable>,
    pub(crate) handles: HandleTable,
    /// Bumped by every change of stored documents made here, so a lookup
    /// that raced one does not cache what it read before it.
    epoch: AtomicU64,
    sink: Mutex<Option<mpsc::Sender<Invalidation>>>,
    pub(crate) started_ms: u64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl DocMeta {
    pub(crate) fn of(doc: &StoredDoc) -> DocMeta {
        DocMeta {
            size: doc.json.len() as u64,
            mtime_ms: doc.mtime_ms,
            seq: doc.seq,
        }
    }
}

impl FsCore {
    pub fn new(store: Arc<dyn ObjectStore>, mut cfg: CoreConfig) -> Arc<FsCore> {
        cfg.engine.read_only = cfg.read_only;
        Arc::new(FsCore {
            store,
            cfg,
            table: Mutex::new(InodeTable::new()),
            handles: HandleTable::new(),
            epoch: AtomicU64::new(0),
            sink: Mutex::new(None),
            started_ms: now_ms(),
        })
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where kernel cache invalidations go (the adapter's notifier thread).
    pub fn set_invalidation_sink(&self, sink: mpsc::Sender<Invalidation>) {
        *self.sink.lock() = Some(sink);
    }

    /// Stops sending invalidations (the mount is gone).
    pub fn clear_invalidation_sink(&self) {
        *self.sink.lock() = None;
    }

    pub(crate) fn invalidate_entry(&self, parent: u64, name: &str) {
        if let Some(sink) = self.sink.lock().as_ref() {
            let _ = sink.send(Invalidation::Entry {
                parent,
                name: name.to_string(),
            });
        }
    }

    /// Drops the kernel's cached attributes and pages of `ino`; with `wait`,
    /// returns once the kernel has done so (bounded, never indefinitely).
    pub(crate) async fn invalidate_inode(&self, ino: u64, wait: bool) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = match self.sink.lock().as_ref() {
            Some(sink) => sink
                .send(Invalidation::Inode {
                    ino,
                    done: wait.then_some(tx),
                })
                .is_ok(),
            None => false,
        };
        if sent && wait {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn bump_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn check_writable(&self) -> FsResult<()> {
        if self.cfg.read_only {
            return Err(FsError::read_only());
        }
        Ok(())
    }

    pub(crate) fn classify(&self, name: &str) -> NameKind {
        classify(name, self.cfg.engine.limits.max_id_bytes)
    }

    fn dir_attr(&self, ino: u64, mtime_ms: u64) -> Attr {
        Attr {
            ino,
            kind: FileKind::Directory,
            size: 0,
            mtime: time_from_ms(mtime_ms),
            perm: self.cfg.dir_mode,
            nlink: 2,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
        }
    }

    fn file_attr(&self, ino: u64, size: u64, mtime: SystemTime, perm: u16, linked: bool) -> Attr {
        Attr {
            ino,
            kind: FileKind::File,
            size,
            mtime,
            perm,
            nlink: u32::from(linked),
            uid: self.cfg.uid,
            gid: self.cfg.gid,
        }
    }

    /// Attributes from the table alone; `None` for a document whose stored
    /// state is unknown (the caller fetches it).
    pub(crate) fn attr_locked(&self, t: &InodeTable, ino: u64) -> Option<Attr> {
        let inode = t.get(ino)?;
        Some(match &inode.node {
            Node::Root => self.dir_attr(ino, self.started_ms),
            Node::Namespace(_) => self.dir_attr(ino, self.started_ms),
            Node::Control(kind) => {
                let ns = ns_of(t, inode.parent)?;
                let size = ns.result(*kind).len() as u64;
                let perm = if kind.is_action() {
                    self.cfg.file_mode
                } else {
                    self.cfg.file_mode & 0o444
                };
                let mtime = time_from_ms(ns.results_changed_ms());
                self.file_attr(ino, size, mtime, perm, true)
            }
            Node::Scratch(s) => self.file_attr(
                ino,
                s.data.len() as u64,
                s.mtime,
                self.cfg.file_mode,
                inode.linked,
            ),
            Node::Doc(d) => {
                let (size, mtime_ms) = match (d.dirty_size, d.meta, d.pending) {
                    (Some(size), meta, _) => (size, meta.map_or_else(now_ms, |m| m.mtime_ms)),
                    (None, Some(m), _) => (m.size, m.mtime_ms),
                    (None, None, true) => (0, now_ms()),
                    (None, None, false) if !inode.linked => (0, self.started_ms),
                    (None, None, false) => return None,
                };
                self.file_attr(
                    ino,
                    size,
                    time_from_ms(mtime_ms),
                    self.cfg.file_mode,
                    inode.linked,
                )
            }
        })
    }

    /// The namespace a directory inode stands for.
    pub(crate) fn namespace(&self, ino: u64) -> FsResult<Arc<Namespace>> {
        let t = self.table.lock();
        match t.get(ino).map(|i| &i.node) {
            Some(Node::Namespace(ns)) if !ns.is_removed() => Ok(ns.clone()),
            Some(Node::Namespace(_)) | None => Err(FsError::NotFound),
            Some(Node::Root) => Err(FsError::NotPermitted(
                "the top level holds only namespace directories",
            )),
            Some(_) => Err(FsError::NotDir),
        }
    }

    /// (namespace, id) of a document inode.
    pub(crate) fn doc_of(&self, ino: u64) -> FsResult<(Arc<Namespace>, DocId)> {
        let t = self.table.lock();
        let inode = t.get(ino).ok_or(FsError::NotFound)?;
        match &inode.node {
            Node::Doc(d) => Ok((
                ns_of(&t, inode.parent).ok_or(FsError::NotFound)?,
                d.id.clone(),
            )),
            _ => Err(FsError::Invalid("not a document".into())),
        }
    }

    fn register_namespace(&self, t: &mut InodeTable, name: &str, engine: Option<Engine>) -> u64 {
        if let Some(ino) = t.lookup(ROOT_INO, name) {
            return ino;
        }
        let (store, opts, now) = (self.store.clone(), self.cfg.engine.clone(), now_ms());
        t.insert_with(ROOT_INO, name, |ino| {
            Node::Namespace(Arc::new(Namespace::new(
                name, ino, store, opts, engine, now,
            )))
        })
    }

    /// Makes sure every namespace in the store has an inode.
    pub(crate) async fn refresh_namespaces(&self) -> FsResult<()> {
        let names = crate::engine::list_namespaces(&self.store).await?;
        let mut t = self.table.lock();
        for name in names {
            self.register_namespace(&mut t, &name, None);
        }
        Ok(())
    }

    pub async fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        if parent == ROOT_INO {
            return self.lookup_namespace(name).await;
        }
        let ns = self.namespace(parent)?;
        let attr = match self.classify(name) {
            NameKind::Doc(id) => self.lookup_doc(&ns, name, id).await?,
            NameKind::Control(kind) => {
                let mut t = self.table.lock();
                let ino = control_ino(&mut t, ns.ino, kind);
                self.attr_locked(&t, ino).ok_or(FsError::NotFound)?
            }
            NameKind::Scratch | NameKind::DocTooLong => {
                let t = self.table.lock();
                let ino = t.lookup(ns.ino, name).ok_or(FsError::NotFound)?;
                self.attr_locked(&t, ino).ok_or(FsError::NotFound)?
            }
        };
        self.remember(attr.ino);
        Ok(attr)
    }

    async fn lookup_namespace(&self, name: &str) -> FsResult<Attr> {
        let known = self.table.lock().lookup(ROOT_INO, name);
        let ino = match known {
            Some(ino) => ino,
            None => {
                if check_namespace(name).is_err() {
                    return Err(FsError::NotFound);
                }
                if self.store.list(&manifest_dir(name), None).await?.is_empty() {
                    return Err(FsError::NotFound);
                }
                self.register_namespace(&mut self.table.lock(), name, None)
            }
        };
        self.remember(ino);
        Ok(self.dir_attr(ino, self.started_ms))
    }

    async fn lookup_doc(&self, ns: &Arc<Namespace>, name: &str, id: DocId) -> FsResult<Attr> {
        {
            let t = self.table.lock();
            match t.lookup(ns.ino, name) {
                Some(ino) => {
                    if let Some(attr) = self.attr_locked(&t, ino) {
                        return Ok(attr);
                    }
                }
                None if t.is_hidden(ns.ino, &id) => return Err(FsError::NotFound),
                None => {}
            }
        }
        let e0 = self.epoch();
        let stored = ns.engine().await?.get_stored(&id).await?;
        let mut t = self.table.lock();
        let ino = self.settle_doc(
            &mut t,
            ns.ino,
            name,
            &id,
            stored.as_ref().map(DocMeta::of),
            e0,
        )?;
        self.attr_locked(&t, ino).ok_or(FsError::NotFound)
    }

    /// Folds a fetched stored state into the table; returns the inode.
    pub(crate) fn settle_doc(
        &self,
        t: &mut InodeTable,
        ns_ino: u64,
        name: &str,
        id: &DocId,
        fetched: Option<DocMeta>,
        e0: u64,
    ) -> FsResult<u64> {
        let fresh = self.epoch() == e0;
        match t.lookup(ns_ino, name) {
            Some(ino) => {
                let Some(Inode {
                    node: Node::Doc(d), ..
                }) = t.get_mut(ino)
                else {
                    return Err(FsError::NotFound);
                };
                match fetched {
                    Some(m) if fresh || d.meta.is_none() => d.meta = Some(m),
                    Some(_) => {}
                    None if fresh && !d.pending && d.dirty_size.is_none() => {
                        t.unlink(ns_ino, name);
                        return Err(FsError::NotFound);
                    }
                    None => {}
                }
                Ok(ino)
            }
            None => match fetched {
                Some(_) if t.is_hidden(ns_ino, id) => Err(FsError::NotFound),
                Some(meta) => Ok(t.insert(
                    ns_ino,
                    name,
                    Node::Doc(DocNode {
                        id: id.clone(),
                        meta: Some(meta),
                        pending: false,
                        kernel_cache_seq: None,
                        dirty_size: None,
                    }),
                )),
                None => Err(FsError::NotFound),
            },
        }
    }

    /// The kernel learned of `ino` (lookup, create, readdirplus entry).
    pub(crate) fn remember(&self, ino: u64) {
        if let Some(inode) = self.table.lock().get_mut(ino) {
            inode.nlookup += 1;
        }
    }

    pub async fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let need = {
            let t = self.table.lock();
            if let Some(attr) = self.attr_locked(&t, ino) {
                if let Some(Node::Namespace(ns)) = t.get(ino).map(|i| &i.node) {
                    if ns.is_removed() {
                        return Err(FsError::NotFound);
                    }
                }
                return Ok(attr);
            }
            t.get(ino).is_some()
        };
        if !need {
            return Err(FsError::NotFound);
        }
        self.refresh_doc(ino).await?;
        let t = self.table.lock();
        self.attr_locked(&t, ino).ok_or(FsError::NotFound)
    }

    /// Re-reads the stored state of document inode `ino`.
    pub(crate) async fn refresh_doc(&self, ino: u64) -> FsResult<()> {
        let (ns, id) = self.doc_of(ino)?;
        let e0 = self.epoch();
        let stored = ns.engine().await?.get_stored(&id).await?;
        let mut t = self.table.lock();
        let (linked, parent, name) = match t.get(ino) {
            Some(i) => (i.linked, i.parent, i.name.clone()),
            None => return Err(FsError::NotFound),
        };
        if linked {
            self.settle_doc(
                &mut t,
                parent,
                &name,
                &id,
                stored.as_ref().map(DocMeta::of),
                e0,
            )?;
        } else if let Some(Node::Doc(d)) = t.get_mut(ino).map(|i| &mut i.node) {
            d.meta = d.meta.or(stored.as_ref().map(DocMeta::of));
        }
        Ok(())
    }

    pub fn forget(&self, ino: u64, nlookup: u64) {
        self.table.lock().forget(ino, nlookup);
    }

    pub fn statfs(&self) -> StatFs {
        let files = self.table.lock().len() as u64;
        StatFs {
            blocks: 1 << 40 >> 12,
            bfree: 1 << 40 >> 12,
            bavail: 1 << 40 >> 12,
            files,
            ffree: u32::MAX as u64,
            bsize: 4096,
            namelen: 255,
        }
    }

    pub async fn mkdir(&self, parent: u64, name: &str) -> FsResult<Attr> {
        if parent != ROOT_INO {
            self.namespace(parent)?;
            return Err(FsError::NotPermitted(
                "a namespace holds documents, not directories",
            ));
        }
        self.check_writable()?;
        if self.table.lock().lookup(ROOT_INO, name).is_some() {
            return Err(FsError::Exists);
        }
        check_namespace(name).map_err(FsError::from)?;
        if !self.store.list(&manifest_dir(name), None).await?.is_empty() {
            return Err(FsError::Exists);
        }
        let engine = Engine::open(self.store.clone(), name, self.cfg.engine.clone()).await?;
        let ino = self.register_namespace(&mut self.table.lock(), name, Some(engine));
        self.remember(ino);
        Ok(self.dir_attr(ino, self.started_ms))
    }

    pub async fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        if parent != ROOT_INO {
            self.namespace(parent)?;
            return Err(match self.classify(name) {
                NameKind::Doc(_) | NameKind::Control(_) => FsError::NotDir,
                _ if self.table.lock().lookup(parent, name).is_some() => FsError::NotDir,
                _ => FsError::NotFound,
            });
        }
        self.check_writable()?;
        let ino = self
            .table
            .lock()
            .lookup(ROOT_INO, name)
            .ok_or(FsError::NotFound)?;
        let ns = self.namespace(ino)?;
        if !self.table.lock().memory_names(ns.ino).is_empty() {
            return Err(FsError::NotEmpty);
        }
        // Hold the namespace exclusively: no write can land in between.
        let _ = ns.engine().await?;
        let mut slot = ns.exclusive().await;
        if let Some(engine) = slot.as_ref() {
            if !engine.scan(None, 1).await?.is_empty() {
                return Err(FsError::NotEmpty);
            }
        }
        *slot = None;
        if let Err(e) = delete_namespace(&self.store, name).await {
            log::error!("namespace {name}: rmdir failed: {e}");
            return Err(e.into());
        }
        ns.mark_removed();
        self.table.lock().unlink(ROOT_INO, name);
        Ok(())
    }
}

pub(crate) fn ns_of(t: &InodeTable, ino: u64) -> Option<Arc<Namespace>> {
    match t.get(ino).map(|i| &i.node) {
        Some(Node::Namespace(ns)) => Some(ns.clone()),
        _ => None,
    }
}

/// The inode of a namespace's control file, created on first use.
pub(crate) fn control_ino(t: &mut InodeTable, ns_ino: u64, kind: ControlKind) -> u64 {
    match t.lookup(ns_ino, kind.file_name()) {
        Some(ino) => ino,
        None => t.insert(ns_ino, kind.file_name(), Node::Control(kind)),
    }
}
