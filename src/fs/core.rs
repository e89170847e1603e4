//! `FsCore`: the filesystem, independent of fuser and testable without a
//! mount. Inode numbers, handles and errors are plain values; every
//! operation is an async fn that never blocks a thread on the object store.
//!
//! This file holds the core's state and attributes. Lookups are in
//! `lookup.rs`, namespace directories in `ns_dirs.rs`, opening files in
//! `open.rs`, file I/O and commits in `io.rs`, `setattr` in `setattr.rs`,
//! unlink/rename in `rename.rs`, control files in `control.rs`, listings in
//! `readdir.rs`, kernel cache invalidation in `invalidate.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::attr::{time_from_ms, Attr, FileKind};
use super::dircache::DirCacheGate;
use super::error::{FsError, FsResult};
use super::handles::HandleTable;
use super::inodes::ROOT_INO;
use super::inodes::{DocMeta, InodeTable, Node, DEFAULT_MAX_KERNEL_INODES};
use super::invalidate::Invalidation;
use super::names::{classify_in, ControlKind, NameKind};
use super::namespace::Namespace;
use crate::engine::{EngineOptions, StoredDoc};
use crate::store::{DiskCacheStore, MeteredStore, ObjectStore, StoreMetrics};
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
    /// Read-only mounts: how often each open namespace picks up what its
    /// writer (another mount, another machine) committed. `None`: never
    /// (a follower then shows the namespace as of its first use).
    pub refresh: Option<Duration>,
    /// Inodes the kernel may hold before the daemon asks it to drop the
    /// oldest documents' entries (`inodes`: "The kernel-held bound");
    /// `0`: no bound. `-o max_inodes=N`.
    pub max_kernel_inodes: usize,
}

/// How long the kernel may cache entries and attributes of a mount that is
/// the only writer of what it shows (it invalidates what it changes).
pub(crate) const WRITER_TTL: Duration = Duration::from_secs(60);

impl CoreConfig {
    /// How long the kernel may cache entries and attributes: long for a
    /// writer, at most the refresh interval for a follower, so the kernel
    /// asks again after every refresh even where no invalidation reached it.
    pub fn attr_ttl(&self) -> Duration {
        match (self.read_only, self.refresh) {
            (true, Some(every)) => every.min(WRITER_TTL),
            _ => WRITER_TTL,
        }
    }
}

/// A mount's engine bounds, each half the engine's default, so that the
/// daemon's memory stays under about 250 MB however large its namespaces grow
/// (issue 8): at most `DEFAULT_MAX_KERNEL_INODES` inodes (~20 MB), two
/// memtables of `MOUNT_FLUSH_BYTES` and the segment a flush builds from
/// one (96 MiB at most), the block cache, and a compaction's output
/// segment of `MOUNT_SEGMENT_BYTES` beside its 32 MiB of input reads.
/// The engine's own defaults serve `reef import`, `compact` and `bench`,
/// which run alone and may use more.
pub const MOUNT_CACHE_BYTES: usize = 32 << 20;
/// See `MOUNT_CACHE_BYTES`. Small documents reach the WAL-object flush
/// trigger (2,000 objects) long before this.
pub const MOUNT_FLUSH_BYTES: usize = 32 << 20;
/// See `MOUNT_CACHE_BYTES`: the largest buffer a compaction holds.
pub const MOUNT_SEGMENT_BYTES: usize = 32 << 20;

/// The engine options of a mount (see `MOUNT_CACHE_BYTES`).
fn mount_engine_options() -> EngineOptions {
    EngineOptions {
        cache_bytes: MOUNT_CACHE_BYTES,
        auto_flush_bytes: Some(MOUNT_FLUSH_BYTES),
        compaction_segment_bytes: MOUNT_SEGMENT_BYTES,
        ..EngineOptions::default()
    }
}

impl Default for CoreConfig {
    fn default() -> Self {
        // SAFETY: geteuid/getegid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        CoreConfig {
            read_only: false,
            engine: mount_engine_options(),
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
            scratch_limit: 256 << 20,
            refresh: Some(DEFAULT_REFRESH),
            max_kernel_inodes: DEFAULT_MAX_KERNEL_INODES,
        }
    }
}

/// Longest path component, in bytes (as on Linux filesystems).
pub(crate) const NAME_MAX: usize = 255;

/// Default interval of a follower's refresh (`-o refresh=MS`).
pub const DEFAULT_REFRESH: Duration = Duration::from_millis(1000);

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
    /// Itself, for the background tasks it starts (they must not keep it alive).
    pub(crate) me: Weak<FsCore>,
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Counts every request that reaches the object store (below the disk
    /// cache, if any): what `.stats` reports under "store".
    metered: Arc<MeteredStore>,
    disk_cache: Option<Arc<DiskCacheStore>>,
    pub(crate) cfg: CoreConfig,
    pub(crate) table: Mutex<InodeTable>,
    pub(crate) handles: HandleTable,
    /// Which listings the kernel may cache (`dircache`).
    pub(crate) dir_cache: DirCacheGate,
    /// Bumped by every change of stored documents made here, so a lookup
    /// that raced one does not cache what it read before it.
    epoch: AtomicU64,
    /// Bumped before every set of attributes is made (`attr_locked`), so a
    /// commit can tell that none was handed to the kernel since a write
    /// (see `FileHandle::attrs_at_write`).
    pub(crate) attrs_made: AtomicU64,
    pub(crate) sink: Mutex<Option<mpsc::Sender<Invalidation>>>,
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
            mtime: doc.mtime(),
            seq: doc.seq,
        }
    }
}

impl FsCore {
    /// A core over `store`; the requests it makes there are counted (see
    /// [`FsCore::store_metrics`]).
    pub fn new(store: Arc<dyn ObjectStore>, cfg: CoreConfig) -> Arc<FsCore> {
        let metered = Arc::new(MeteredStore::new(store));
        FsCore::with_stores(metered.clone(), metered, None, cfg)
    }

    /// A core over `store`, which is `metered` (the object store, counted)
    /// or a disk cache in front of it.
    pub(crate) fn with_stores(
        store: Arc<dyn ObjectStore>,
        metered: Arc<MeteredStore>,
        disk_cache: Option<Arc<DiskCacheStore>>,
        mut cfg: CoreConfig,
    ) -> Arc<FsCore> {
        cfg.engine.read_only = cfg.read_only;
        let max_kernel_inodes = cfg.max_kernel_inodes;
        let entry_ttl = cfg.attr_ttl();
        Arc::new_cyclic(|me| FsCore {
            me: me.clone(),
            store,
            metered,
            disk_cache,
            cfg,
            table: Mutex::new({
                let mut t = InodeTable::new();
                t.set_kernel_bound(max_kernel_inodes, None);
                t
            }),
            handles: HandleTable::new(),
            dir_cache: DirCacheGate::new(entry_ttl),
            epoch: AtomicU64::new(0),
            attrs_made: AtomicU64::new(0),
            sink: Mutex::new(None),
            started_ms: now_ms(),
        })
    }

    /// Object-store requests and bytes by kind since the core was created
    /// (the whole mount: every namespace, reads served by a disk cache not
    /// counted).
    pub fn store_metrics(&self) -> StoreMetrics {
        self.metered.snapshot()
    }

    /// The counted object store (for metrics).
    pub(crate) fn metered_store(&self) -> &Arc<MeteredStore> {
        &self.metered
    }

    /// `(hits, misses)` of the disk cache (`-o cache=DIR`), if there is one.
    pub fn disk_cache_counts(&self) -> Option<(u64, u64)> {
        self.disk_cache.as_ref().map(|c| (c.hits(), c.misses()))
    }

    /// What `.stats` adds to a namespace's engine counters: `"store"`, the
    /// object-store requests of the whole mount, and `"disk_cache"` when a
    /// disk cache is in use.
    pub fn store_report(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        out.insert(
            "store".into(),
            serde_json::to_value(self.store_metrics()).unwrap_or_default(),
        );
        if let Some(cache) = &self.disk_cache {
            out.insert(
                "disk_cache".into(),
                serde_json::json!({
                    "hits": cache.hits(),
                    "misses": cache.misses(),
                    "errors": cache.errors(),
                    "cached_bytes": cache.cached_bytes(),
                    "dir": cache.dir().display().to_string(),
                }),
            );
        }
        out
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The open engines, by namespace name, without waiting for any lock
    /// a request may hold for long.
    pub(crate) fn open_engines(&self) -> Vec<(String, crate::engine::Engine)> {
        let namespaces: Vec<_> = {
            let t = self.table.lock();
            t.memory_names(ROOT_INO)
                .into_iter()
                .filter_map(|name| match t.lookup(ROOT_INO, &name).and_then(|i| t.get(i)) {
                    Some(inode) => match &inode.node {
                        Node::Namespace(ns) => Some(ns.clone()),
                        _ => None,
                    },
                    None => None,
                })
                .collect()
        };
        let mut out: Vec<_> = namespaces
            .iter()
            .filter(|ns| !ns.is_removed())
            .filter_map(|ns| Some((ns.name.clone(), ns.engine_if_open()?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
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

    /// ENAMETOOLONG for a path component longer than a file name may be.
    pub(crate) fn check_name(&self, name: &str) -> FsResult<()> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        Ok(())
    }

    /// What `name` denotes in directory `dir`.
    pub(crate) fn classify(&self, dir: &DirRef, name: &str) -> NameKind {
        if dir.scratch {
            return NameKind::Scratch;
        }
        classify_in(
            name,
            &dir.prefix,
            dir.at_top(),
            self.cfg.engine.limits.max_id_bytes,
        )
    }

    /// A directory's attributes; its mtime is when an entry was last
    /// created or removed in it through this mount, else the mount's start.
    pub(crate) fn dir_attr(&self, t: &InodeTable, ino: u64) -> Attr {
        let mtime = t
            .dir_mtime(ino)
            .unwrap_or_else(|| time_from_ms(self.started_ms));
        Attr {
            ino,
            kind: FileKind::Directory,
            size: 0,
            mtime,
            atime: mtime,
            perm: self.cfg.dir_mode,
            nlink: 2,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            uncached: false,
        }
    }

    fn file_attr(&self, ino: u64, size: u64, mtime: SystemTime, perm: u16, linked: bool) -> Attr {
        Attr {
            ino,
            kind: FileKind::File,
            size,
            mtime,
            atime: mtime,
            perm,
            nlink: u32::from(linked),
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            uncached: false,
        }
    }

    /// Attributes from the table alone; `None` for a document whose stored
    /// state is unknown (the caller fetches it).
    pub(crate) fn attr_locked(&self, t: &InodeTable, ino: u64) -> Option<Attr> {
        // Before anything is read: a commit that does not see this bump
        // changed the table before these attributes were made of it.
        self.attrs_made.fetch_add(1, Ordering::SeqCst);
        let inode = t.get(ino)?;
        Some(match &inode.node {
            Node::Root
            | Node::Namespace(_)
            | Node::Snapshots(_)
            | Node::Versions(_)
            | Node::Dir(_) => self.dir_attr(t, ino),
            Node::Control(ControlKind::Changes) => {
                let ns = ns_of(t, inode.parent)?;
                let mtime = SystemTime::now();
                Attr {
                    uncached: true,
                    ..self.file_attr(
                        ino,
                        ns.changes.size(),
                        mtime,
                        self.cfg.file_mode & 0o444,
                        true,
                    )
                }
            }
            Node::Control(kind) => {
                let ns = ns_of(t, inode.parent)?;
                let size = if kind.is_report() {
                    ns.report_len(*kind)
                } else {
                    ns.result(*kind).len()
                } as u64;
                let perm = if kind.is_action() {
                    self.cfg.file_mode
                } else {
                    self.cfg.file_mode & 0o444
                };
                let mtime = time_from_ms(ns.results_changed_ms());
                self.file_attr(ino, size, mtime, perm, true)
            }
            Node::Scratch(s) => Attr {
                atime: s.atime,
                ..self.file_attr(
                    ino,
                    s.data.len() as u64,
                    s.mtime,
                    s.mode.unwrap_or(self.cfg.file_mode),
                    inode.linked,
                )
            },
            Node::Doc(d) => {
                let (size, mtime) = match (d.dirty_size, d.meta, d.pending) {
                    (Some(size), meta, _) => (size, meta.map_or_else(SystemTime::now, |m| m.mtime)),
                    (None, Some(m), _) => (m.size, m.mtime),
                    (None, None, true) => (0, SystemTime::now()),
                    (None, None, false) if !inode.linked => (0, time_from_ms(self.started_ms)),
                    (None, None, false) => return None,
                };
                let mtime = d.mtime_set.unwrap_or(mtime);
                self.file_attr(ino, size, mtime, self.cfg.file_mode, inode.linked)
            }
        })
    }

    /// The namespace a directory inode (its top or a directory below it)
    /// belongs to.
    pub(crate) fn namespace(&self, ino: u64) -> FsResult<Arc<Namespace>> {
        Ok(self.dir_of(ino)?.ns)
    }

    /// The directory inode `ino`: its namespace and id prefix.
    pub(crate) fn dir_of(&self, ino: u64) -> FsResult<DirRef> {
        let t = self.table.lock();
        let (ns, prefix, scratch) = match t.get(ino).map(|i| &i.node) {
            Some(Node::Namespace(ns)) => (ns.clone(), String::new(), false),
            Some(Node::Dir(d)) if t.get(ino).is_some_and(|i| i.linked) => {
                (d.ns.clone(), d.prefix.clone(), d.scratch)
            }
            Some(Node::Dir(_)) | None => return Err(FsError::NotFound),
            Some(Node::Root) => {
                return Err(FsError::NotPermitted(
                    "the top level holds only namespace directories",
                ))
            }
            Some(_) => return Err(FsError::NotDir),
        };
        if ns.is_removed() {
            return Err(FsError::NotFound);
        }
        Ok(DirRef {
            ns,
            ino,
            prefix,
            scratch,
        })
    }

    /// `namespace/path` of an inode, for log lines.
    pub(crate) fn path_of(&self, ino: u64) -> String {
        let t = self.table.lock();
        let mut parts = Vec::new();
        let mut at = ino;
        while let Some(i) = t.get(at).filter(|_| at != ROOT_INO) {
            parts.push(i.name.clone());
            at = i.parent;
            if parts.len() > 4096 {
                break;
            }
        }
        if parts.is_empty() {
            return format!("inode {ino}");
        }
        parts.reverse();
        parts.join("/")
    }

    /// (namespace, id) of a document inode.
    pub(crate) fn doc_of(&self, ino: u64) -> FsResult<(Arc<Namespace>, DocId)> {
        let t = self.table.lock();
        let inode = t.get(ino).ok_or(FsError::NotFound)?;
        match &inode.node {
            Node::Doc(d) => Ok((ns_of(&t, inode.parent).ok_or(FsError::NotFound)?, d.id.clone())),
            _ => Err(FsError::Invalid("not a document".into())),
        }
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
            namelen: NAME_MAX as u32,
        }
    }
}

/// A directory of a namespace: its top (`prefix` empty) or one below it.
pub(crate) struct DirRef {
    pub ns: Arc<Namespace>,
    pub ino: u64,
    /// Ids below this directory start with it; empty at the top, else
    /// ending in `/`.
    pub prefix: String,
    /// A scratch directory: everything below it is a scratch file or
    /// directory, in memory only.
    pub scratch: bool,
}

impl DirRef {
    pub fn at_top(&self) -> bool {
        self.prefix.is_empty()
    }
}

/// The namespace of directory inode `ino` (its top or one below it).
pub(crate) fn ns_of(t: &InodeTable, ino: u64) -> Option<Arc<Namespace>> {
    match t.get(ino).map(|i| &i.node) {
        Some(Node::Namespace(ns)) => Some(ns.clone()),
        Some(Node::Dir(d)) => Some(d.ns.clone()),
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
