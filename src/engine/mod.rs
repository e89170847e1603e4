//! The storage engine: one `Engine` per open namespace.
//!
//! Writes go to the WAL (`wal`), one object per group of concurrent writes,
//! and into the memtable once durable. Flush turns the memtable into a
//! segment (`segment`) and commits a new manifest (`manifest`); compaction
//! merges segments. Reads consult the memtable, then segments newest first.
//!
//! Ownership: opening a namespace for writing *fences* it — a marker WAL
//! object at the next sequence and a manifest claim at the next version, both
//! create-if-absent — so any older writer's next WAL put or manifest commit
//! fails and it stops with `EngineError::Fenced` instead of diverging.
//!
//! History: every state of the last `EngineOptions::retain` stays readable
//! (`history`, `Engine::open_at`), checkpoints pin states until deleted
//! (`checkpoint`), and garbage collection (`gc`) deletes the rest without
//! ever freeing a slot a fenced writer could reuse.

pub mod changes;
pub mod checkpoint;
mod codec;
pub mod compaction;
pub mod gc;
mod group_sizes;
mod history;
pub mod layout;
mod maintenance;
pub mod manifest;
mod memtable;
mod open;
pub mod pins;
mod pipeline;
mod read;
mod reader;
pub mod segment;
pub mod stamp;
pub mod timeline;
pub mod wal;
mod write;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

pub use checkpoint::Checkpoint;
pub use gc::{GcOptions, GcReport, GcTotals};
pub use group_sizes::{GroupSizeHistogram, GROUP_SIZE_BOUNDS};
pub use history::{check_retained, describe_retained, retained_range, At};
pub use manifest::Manifest;
pub use segment::SegmentMeta;

use layout::check_namespace;
use memtable::Memtable;
use reader::SegmentReader;

use crate::store::{ObjectStore, StoreError};
use crate::types::{DocId, Document, Limits, TypeError};

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub limits: Limits,
    /// A follower: serves reads, never writes to the store.
    pub read_only: bool,
    /// Names this writer in WAL objects and manifests (default: host-pid-random).
    pub writer_id: Option<String>,
    /// Target size of a segment block; a point lookup reads one block.
    pub block_bytes: usize,
    /// Bound on the in-memory cache of segment indexes and blocks.
    pub cache_bytes: usize,
    /// Flush automatically once the memtable holds this many bytes, so
    /// memory stays bounded and restarts replay a bounded WAL. It is also
    /// the memtable's memory bound: writers wait while the memtables hold
    /// twice this (a flush slower than the writers; see `write`).
    pub auto_flush_bytes: Option<usize>,
    /// Also flush once this many WAL objects are unflushed, so an open (which
    /// replays them one GET each) stays fast even for tiny writes.
    pub auto_flush_wal_objects: Option<u64>,
    /// Size-tiered automatic compaction after a flush: merge this many
    /// adjacent segments of similar size (`compaction`); `None`: never.
    pub auto_compact_segments: Option<usize>,
    /// Target size of a compaction output segment: bounds the memory a
    /// merge needs and the bytes one rewrite touches.
    pub compaction_segment_bytes: usize,
    /// How long every committed state stays readable (DESIGN.md §4); older
    /// history not pinned by a checkpoint is garbage. Zero keeps only the
    /// newest state.
    pub retain: Duration,
    /// Objects the automatic GC after a flush or compaction deletes at
    /// most, so a pass never stalls the writer; the rest waits for the next.
    pub gc_max_deletes_per_pass: usize,
    /// Segments no manifest names are deleted only once this old: a
    /// younger one may be another writer's upload that is not committed yet.
    pub orphan_grace: Duration,
    /// Past states that engines opened with `open_at` from clones of these
    /// options are reading; GC by a writer sharing it keeps them (`pins`).
    pub pins: Arc<pins::Pins>,
}

/// The default retention: an hour of history.
pub const DEFAULT_RETAIN: Duration = Duration::from_secs(3600);

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            limits: Limits::default(),
            read_only: false,
            writer_id: None,
            block_bytes: 64 << 10,
            cache_bytes: 64 << 20,
            auto_flush_bytes: Some(64 << 20),
            auto_flush_wal_objects: Some(2000),
            auto_compact_segments: Some(4),
            compaction_segment_bytes: 64 << 20,
            retain: DEFAULT_RETAIN,
            gc_max_deletes_per_pass: 10_000,
            orphan_grace: Duration::from_secs(3600),
            pins: Arc::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Invalid(#[from] TypeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt object {key}: {reason}; run `reef verify` to see the damage and `reef repair` to set it aside")]
    Corrupt { key: String, reason: String },
    #[error("namespace {ns} was taken over by writer {by}; this writer is fenced and accepts no more writes; stop the other writer before remounting, or the two take the namespace from each other")]
    Fenced { ns: String, by: String },
    #[error("namespace {0} is open read-only")]
    ReadOnly(String),
    #[error("invalid namespace name {0:?}: {1}")]
    BadNamespace(String, &'static str),
    #[error("namespace {0} does not exist")]
    NoSuchNamespace(String),
    #[error("namespace {0} still holds documents")]
    NotEmpty(String),
    #[error("namespace {0} is changing under us (another writer keeps taking it over); try again")]
    Busy(String),
    #[error("write of namespace {ns} failed: {message}")]
    WriteFailed { ns: String, message: String },
    #[error("invalid checkpoint name {name:?}: {why}")]
    BadCheckpointName { name: String, why: &'static str },
    #[error("checkpoint {name:?} of namespace {ns} already exists; delete it first or pick another name")]
    CheckpointExists { ns: String, name: String },
    #[error("namespace {ns} has no checkpoint {name:?}")]
    NoSuchCheckpoint { ns: String, name: String },
    #[error("checkpoint {name:?} of namespace {ns} is still being created (or its creator stopped before finishing); try again, or remove it with `reef checkpoint delete`")]
    CheckpointPending { ns: String, name: String },
    #[error("sequence {seq} of namespace {ns} is not retained: {retained}")]
    NotRetained {
        ns: String,
        seq: u64,
        /// What can be read instead, e.g. "sequences 120 to 180 are".
        retained: String,
    },
    #[error("namespace {ns} has no retained state committed at or before {time}: {retained}")]
    TimeNotRetained {
        ns: String,
        time: String,
        /// What can be read instead, with commit times.
        retained: String,
    },
    #[error("invalid duration {0:?}: use e.g. 0, 90s, 30m, 24h, 7d")]
    BadDuration(String),
}

impl EngineError {
    /// The same failure, for every writer of a group that shares it.
    fn duplicate(&self, ns: &str) -> EngineError {
        match self {
            EngineError::Fenced { ns, by } => EngineError::Fenced {
                ns: ns.clone(),
                by: by.clone(),
            },
            EngineError::Invalid(e) => EngineError::Invalid(e.clone()),
            other => EngineError::WriteFailed {
                ns: ns.to_string(),
                message: other.to_string(),
            },
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// A document as stored: its JSON and its modification time.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDoc {
    pub id: DocId,
    /// The bytes a filesystem write gave ([`crate::types::Op::PutJson`]), or
    /// the canonical rendering of a document written or patched through the
    /// typed API; its length is `st_size`.
    pub json: Bytes,
    /// Milliseconds since the Unix epoch: the time of the write that
    /// produced it, or the time set for it ([`crate::types::Op::SetMtime`]).
    pub mtime_ms: u64,
    /// The same time in nanoseconds, exact as it was set.
    pub mtime_ns: u64,
    /// WAL sequence of that write.
    pub seq: u64,
}

impl StoredDoc {
    /// From an entry's fields; `stamp` is its `mtime_ms` field (see `stamp`).
    pub(crate) fn from_entry(id: DocId, json: Bytes, stamp: u64, seq: u64) -> StoredDoc {
        let mtime_ns = stamp::to_ns(stamp);
        StoredDoc {
            id,
            json,
            mtime_ms: mtime_ns / 1_000_000,
            mtime_ns,
            seq,
        }
    }

    /// The modification time.
    pub fn mtime(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(self.mtime_ns)
    }

    pub fn document(&self) -> EngineResult<Document> {
        Document::from_json_bytes(&self.id, &self.json).map_err(|e| EngineError::Corrupt {
            key: format!("document {}", self.id),
            reason: e.to_string(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAck {
    /// WAL sequence number of the object that made this batch durable.
    pub seq: u64,
}

/// What readers see: memtables and the manifest, swapped together.
struct State {
    active: Memtable,
    /// The memtable a running flush is writing out; still served to readers.
    frozen: Option<Arc<Memtable>>,
    manifest: Arc<Manifest>,
    vector_dims: Option<usize>,
    /// Highest WAL sequence applied to the memtable.
    last_seq: u64,
    /// FENCE/VOID sequences above the manifest's flushed point (replayed or
    /// written by this writer); a flush records them in the manifest.
    markers: std::collections::BTreeSet<u64>,
    /// The writer of the newest FENCE replayed; a BATCH of another writer
    /// after it is a stray (`wal`). Carried from one refresh to the next.
    wal_owner: Option<String>,
}

impl State {
    /// Bytes the memtables hold (the active one and one being flushed).
    fn memtable_bytes(&self) -> usize {
        self.active.bytes + self.frozen.as_ref().map_or(0, |f| f.bytes)
    }
}

#[derive(Default)]
struct Counters {
    write_calls: AtomicU64,
    wal_objects: AtomicU64,
    docs_written: AtomicU64,
    flushes: AtomicU64,
    compactions: AtomicU64,
    group_sizes: group_sizes::GroupSizes,
    /// Bytes of segments written by compaction (write amplification).
    compaction_bytes: AtomicU64,
    /// Most memtable bytes held at once (active + frozen).
    memtable_peak_bytes: AtomicU64,
    /// Writes that waited for a flush to make room in the memtable.
    throttled_writes: AtomicU64,
    /// Garbage collection; a lock, not atomics: a pass updates it a few
    /// times, and a reader sees one consistent set.
    gc: Mutex<gc::GcTotals>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    ns: String,
    opts: EngineOptions,
    writer_id: String,
    state: RwLock<State>,
    /// Held while a WAL group is launched; guards the sequence.
    commit: Arc<tokio::sync::Mutex<()>>,
    /// Whether the committer task (`write`) is running.
    committing: AtomicBool,
    pending: Mutex<Vec<write::Pending>>,
    /// WAL groups in flight and their order (`pipeline`).
    pipeline: Mutex<pipeline::Pipeline>,
    /// One permit per WAL put allowed in flight (`wal::PIPELINE_DEPTH`).
    slots: Arc<tokio::sync::Semaphore>,
    /// Serializes flush and compaction.
    maintenance: tokio::sync::Mutex<()>,
    reader: SegmentReader,
    fenced_by: Mutex<Option<String>>,
    /// Opened at a past state (`open_at`): reads only, never refreshed.
    pinned: bool,
    /// That past state, held against GC in this process while we live.
    pin: Mutex<Option<pins::PinGuard>>,
    gc_memo: Mutex<gc::GcMemo>,
    auto_flushing: AtomicBool,
    /// Set by `finish_background_work`: no automatic flush or compaction
    /// starts any more.
    winding_down: AtomicBool,
    /// Notified after each flush commit and when an automatic flush loop
    /// ends: writers waiting for memtable room look again.
    flushed: tokio::sync::Notify,
    counters: Counters,
}

/// A handle on one namespace; clones share it.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("ns", &self.inner.ns)
            .field("writer_id", &self.inner.writer_id)
            .finish()
    }
}

impl Engine {
    pub fn namespace(&self) -> &str {
        &self.inner.ns
    }

    pub fn writer_id(&self) -> &str {
        &self.inner.writer_id
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.opts.limits
    }

    pub fn is_read_only(&self) -> bool {
        self.inner.opts.read_only
    }

    /// The highest WAL sequence applied here: it moves with every change
    /// of the documents this engine shows (a write, a follower's refresh).
    pub fn last_seq(&self) -> u64 {
        self.inner.state.read().last_seq
    }

    /// The writer that took this namespace over, once this one is fenced.
    pub fn fenced_by(&self) -> Option<String> {
        self.inner.fenced_by.lock().clone()
    }

    /// A copy of the current manifest.
    pub async fn manifest_snapshot(&self) -> EngineResult<Manifest> {
        Ok(self.inner.state.read().manifest.as_ref().clone())
    }

    /// Counters for `.stats` and `reef stats`.
    pub fn stats(&self) -> serde_json::Value {
        let inner = &self.inner;
        let st = inner.state.read();
        let c = &inner.counters;
        let segment_docs: u64 = st.manifest.segments.iter().map(|s| s.doc_count).sum();
        let segment_bytes: u64 = st.manifest.segments.iter().map(|s| s.size).sum();
        serde_json::json!({
            "namespace": inner.ns,
            "writer_id": inner.writer_id,
            "read_only": inner.opts.read_only,
            "fenced_by": *inner.fenced_by.lock(),
            "manifest_version": st.manifest.version,
            "flushed_through": st.manifest.flushed_through,
            "last_wal_seq": st.last_seq,
            "segments": st.manifest.segments.len(),
            "segment_docs": segment_docs,
            "segment_bytes": segment_bytes,
            "memtable_entries": st.active.len() + st.frozen.as_ref().map_or(0, |f| f.len()),
            "memtable_bytes": st.memtable_bytes(),
            "memtable_peak_bytes": c.memtable_peak_bytes.load(Ordering::Relaxed),
            "throttled_writes": c.throttled_writes.load(Ordering::Relaxed),
            "vector_dims": st.vector_dims,
            "write_calls": c.write_calls.load(Ordering::Relaxed),
            "wal_objects_written": c.wal_objects.load(Ordering::Relaxed),
            "docs_written": c.docs_written.load(Ordering::Relaxed),
            "flushes": c.flushes.load(Ordering::Relaxed),
            "compactions": c.compactions.load(Ordering::Relaxed),
            "compaction_bytes_written": c.compaction_bytes.load(Ordering::Relaxed),
            "cache_hits": inner.reader.hits.load(Ordering::Relaxed),
            "cache_misses": inner.reader.misses.load(Ordering::Relaxed),
            "gc": c.gc.lock().clone(),
        })
    }

    /// Documents per WAL object written by this engine (for metrics).
    pub fn group_sizes(&self) -> GroupSizeHistogram {
        self.inner.counters.group_sizes.snapshot()
    }
}

impl Inner {
    fn check_writable(&self) -> EngineResult<()> {
        if self.opts.read_only {
            return Err(EngineError::ReadOnly(self.ns.clone()));
        }
        if let Some(by) = self.fenced_by.lock().clone() {
            return Err(EngineError::Fenced {
                ns: self.ns.clone(),
                by,
            });
        }
        Ok(())
    }

    /// `Fenced` when another writer committed the manifest version after
    /// ours (we lost the namespace), else `otherwise`.
    async fn fenced_or(&self, otherwise: EngineError) -> EngineError {
        let version = self.state.read().manifest.version + 1;
        match manifest::read(&self.store, &self.ns, version).await {
            Ok(m) if m.writer_id != self.writer_id => EngineError::Fenced {
                ns: self.ns.clone(),
                by: m.writer_id,
            },
            _ => otherwise,
        }
    }

    /// Records that another writer took over; every later write fails.
    fn note_fenced(&self, err: &EngineError) {
        if let EngineError::Fenced { by, .. } = err {
            let mut fenced = self.fenced_by.lock();
            if fenced.is_none() {
                log::error!(
                    "namespace {}: fenced by writer {by}; this writer ({}) stops accepting writes",
                    self.ns,
                    self.writer_id
                );
                *fenced = Some(by.clone());
            }
        }
    }
}

/// Namespaces in the store: those with at least one manifest.
///
/// One delimiter listing of the root plus one per top-level prefix, instead
/// of one listing of every object, so `ls` of the mount root costs the same
/// with a million WAL objects as with none. Candidates are checked
/// concurrently because on S3 each check is a round trip.
pub async fn list_namespaces(store: &Arc<dyn ObjectStore>) -> EngineResult<Vec<String>> {
    use futures::{StreamExt, TryStreamExt};

    /// Round trips in flight at once: enough to hide S3 latency for a few
    /// hundred namespaces without a burst that trips request throttling.
    const CONCURRENT_CHECKS: usize = 16;

    let candidates = store.list_prefixes("").await?;
    let checked: Vec<Option<String>> = futures::stream::iter(candidates)
        .map(|ns| async move {
            let subdirs = store.list_prefixes(&format!("{ns}/")).await?;
            let has_manifest = subdirs.iter().any(|d| d == "manifest");
            Ok::<_, EngineError>(has_manifest.then_some(ns))
        })
        .buffered(CONCURRENT_CHECKS)
        .try_collect()
        .await?;
    // `buffered` keeps the sorted order of `list_prefixes`.
    Ok(checked.into_iter().flatten().collect())
}

/// Deletes every object of a namespace that holds no live documents.
pub async fn delete_namespace(store: &Arc<dyn ObjectStore>, ns: &str) -> EngineResult<()> {
    check_namespace(ns)?;
    let engine = Engine::open(
        store.clone(),
        ns,
        EngineOptions {
            read_only: true,
            ..EngineOptions::default()
        },
    )
    .await?;
    if !engine.scan(None, 1).await?.is_empty() {
        return Err(EngineError::NotEmpty(ns.to_string()));
    }
    for meta in store.list(&format!("{ns}/"), None).await? {
        store.delete(&meta.key).await?;
    }
    Ok(())
}
