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

mod codec;
pub mod layout;
mod maintenance;
pub mod manifest;
mod memtable;
mod reader;
pub mod segment;
pub mod wal;
mod write;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};

pub use manifest::Manifest;
pub use segment::SegmentMeta;

use layout::{check_namespace, wal_dir, wal_key};
use memtable::{MemEntry, Memtable};
use reader::SegmentReader;
use wal::{WalKind, WalRecord};

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
    /// memory stays bounded and restarts replay a bounded WAL.
    pub auto_flush_bytes: Option<usize>,
    /// Also flush once this many WAL objects are unflushed, so an open (which
    /// replays them one GET each) stays fast even for tiny writes.
    pub auto_flush_wal_objects: Option<u64>,
    /// Compact automatically once a flush leaves this many segments.
    pub auto_compact_segments: Option<usize>,
}

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
            auto_compact_segments: Some(8),
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
    #[error("namespace {ns} was taken over by writer {by}; this writer is fenced and accepts no more writes (remount to continue)")]
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

/// A document as stored: its canonical JSON and when it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDoc {
    pub id: DocId,
    /// Canonical JSON (`Document::to_canonical_json`); its length is `st_size`.
    pub json: Bytes,
    /// Milliseconds since the Unix epoch of the write that produced it.
    pub mtime_ms: u64,
    /// WAL sequence of that write.
    pub seq: u64,
}

impl StoredDoc {
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
}

#[derive(Default)]
struct Counters {
    write_calls: AtomicU64,
    wal_objects: AtomicU64,
    docs_written: AtomicU64,
    flushes: AtomicU64,
    compactions: AtomicU64,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    ns: String,
    opts: EngineOptions,
    writer_id: String,
    state: RwLock<State>,
    /// Held by whoever is writing the next WAL object; guards the sequence.
    commit: Arc<tokio::sync::Mutex<()>>,
    pending: Mutex<Vec<write::Pending>>,
    /// Serializes flush and compaction.
    maintenance: tokio::sync::Mutex<()>,
    reader: SegmentReader,
    fenced_by: Mutex<Option<String>>,
    auto_flushing: AtomicBool,
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

/// The memtable, dims and last sequence rebuilt from WAL objects after
/// `from_seq`.
struct Replayed {
    memtable: Memtable,
    vector_dims: Option<usize>,
    last_seq: u64,
}

async fn replay(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    from_seq: u64,
    mut memtable: Memtable,
    mut vector_dims: Option<usize>,
) -> EngineResult<Replayed> {
    let dir = wal_dir(ns);
    let listed = store.list(&dir, Some(&wal_key(ns, from_seq))).await?;
    let mut expected = from_seq + 1;
    let mut keyed = Vec::with_capacity(listed.len());
    for meta in listed {
        let Some(seq) = layout::parse_numbered(&dir, &meta.key) else {
            return Err(EngineError::Corrupt {
                key: meta.key,
                reason: "not a WAL object name".into(),
            });
        };
        if seq != expected {
            return Err(EngineError::Corrupt {
                key: meta.key,
                reason: format!("WAL objects {expected} to {} are missing", seq - 1),
            });
        }
        expected = seq + 1;
        keyed.push((seq, meta.key));
    }
    // Fetch ahead in parallel (a remote store answers each GET in tens of
    // milliseconds), apply strictly in sequence order.
    let mut fetched = futures::stream::iter(keyed)
        .map(|(seq, key)| async move {
            let data = store.get(&key).await;
            (seq, key, data)
        })
        .buffered(REPLAY_PARALLELISM);
    let mut last_seq = from_seq;
    while let Some((seq, key, data)) = fetched.next().await {
        let rec =
            WalRecord::decode(data?, seq).map_err(|reason| EngineError::Corrupt { key, reason })?;
        if rec.vector_dims.is_some() {
            vector_dims = rec.vector_dims;
        }
        for (id, json) in rec.ops {
            memtable.insert(
                id,
                MemEntry {
                    seq,
                    mtime_ms: rec.mtime_ms,
                    json,
                },
            );
        }
        last_seq = seq;
    }
    Ok(Replayed {
        memtable,
        vector_dims,
        last_seq,
    })
}

/// WAL objects fetched concurrently during replay.
const REPLAY_PARALLELISM: usize = 32;

fn default_writer_id() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "host".to_string()
    };
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        layout::random_u64() as u32
    )
}

impl Engine {
    /// Opens `ns`, creating it if needed: newest manifest, its segments, and
    /// a replay of every later WAL object. A corrupt object fails the open
    /// with its name; nothing is skipped. Unless read-only, the namespace is
    /// fenced so that any previous writer stops.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        ns: &str,
        opts: EngineOptions,
    ) -> EngineResult<Engine> {
        check_namespace(ns)?;
        let writer_id = opts.writer_id.clone().unwrap_or_else(default_writer_id);
        for _attempt in 0..8 {
            let manifest = manifest::load_latest(&store, ns).await?;
            if opts.read_only && manifest.is_none() {
                return Err(EngineError::NoSuchNamespace(ns.to_string()));
            }
            let manifest = manifest.unwrap_or_default();
            let replayed = replay(
                &store,
                ns,
                manifest.flushed_through,
                Memtable::default(),
                manifest.vector_dims,
            )
            .await?;
            let mut last_seq = replayed.last_seq;
            let mut current = manifest;
            if !opts.read_only {
                let fence_seq = last_seq + 1;
                let fence =
                    WalRecord::marker(&writer_id, fence_seq, WalKind::Fence, replayed.vector_dims);
                match store
                    .put_if_absent(&wal_key(ns, fence_seq), fence.encode())
                    .await
                {
                    Ok(()) => {}
                    Err(StoreError::AlreadyExists(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
                last_seq = fence_seq;
                let claim = current.successor(&writer_id);
                match manifest::commit(&store, ns, &claim).await {
                    Ok(()) => current = claim,
                    Err(EngineError::Fenced { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            let reader = SegmentReader::new(store.clone(), ns, opts.cache_bytes);
            let inner = Inner {
                store,
                ns: ns.to_string(),
                writer_id,
                state: RwLock::new(State {
                    active: replayed.memtable,
                    frozen: None,
                    manifest: Arc::new(current),
                    vector_dims: replayed.vector_dims,
                    last_seq,
                }),
                commit: Arc::new(tokio::sync::Mutex::new(())),
                pending: Mutex::new(Vec::new()),
                maintenance: tokio::sync::Mutex::new(()),
                reader,
                fenced_by: Mutex::new(None),
                auto_flushing: AtomicBool::new(false),
                counters: Counters::default(),
                opts,
            };
            return Ok(Engine {
                inner: Arc::new(inner),
            });
        }
        Err(EngineError::Busy(ns.to_string()))
    }

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

    /// The writer that took this namespace over, once this one is fenced.
    pub fn fenced_by(&self) -> Option<String> {
        self.inner.fenced_by.lock().clone()
    }

    pub async fn get(&self, id: &DocId) -> EngineResult<Option<Document>> {
        match self.get_stored(id).await? {
            Some(doc) => doc.document().map(Some),
            None => Ok(None),
        }
    }

    /// The stored form of `id`: canonical JSON, mtime, sequence.
    pub async fn get_stored(&self, id: &DocId) -> EngineResult<Option<StoredDoc>> {
        let mut attempt = 0;
        loop {
            match self.inner.lookup(id).await {
                // A compaction may delete the segments of the manifest we
                // read; a fresh snapshot has their replacement.
                Err(EngineError::Store(StoreError::NotFound(_))) if attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    /// Live documents with id > `start_after`, in id order, at most `limit`.
    /// A page may hold fewer than `limit`; only an empty page means the end.
    /// Ids present for the whole scan are returned exactly once, whatever
    /// writes, flushes and compactions run meanwhile.
    pub async fn scan(
        &self,
        start_after: Option<&DocId>,
        limit: usize,
    ) -> EngineResult<Vec<StoredDoc>> {
        let mut attempt = 0;
        loop {
            match self.inner.scan_page(start_after, limit.max(1)).await {
                Err(EngineError::Store(StoreError::NotFound(_))) if attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    /// Every live document, in id order (for tools and tests; a mount pages).
    pub async fn scan_all(&self) -> EngineResult<Vec<StoredDoc>> {
        let mut out: Vec<StoredDoc> = Vec::new();
        loop {
            let page = self.scan(out.last().map(|d| &d.id), 1024).await?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
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
            "memtable_bytes": st.active.bytes + st.frozen.as_ref().map_or(0, |f| f.bytes),
            "vector_dims": st.vector_dims,
            "write_calls": c.write_calls.load(Ordering::Relaxed),
            "wal_objects_written": c.wal_objects.load(Ordering::Relaxed),
            "docs_written": c.docs_written.load(Ordering::Relaxed),
            "flushes": c.flushes.load(Ordering::Relaxed),
            "compactions": c.compactions.load(Ordering::Relaxed),
            "cache_hits": inner.reader.hits.load(Ordering::Relaxed),
            "cache_misses": inner.reader.misses.load(Ordering::Relaxed),
        })
    }

    /// For followers (read-only): pick up what the writer committed since the
    /// last open or refresh. Writers see their own writes and need not call it.
    pub async fn refresh(&self) -> EngineResult<()> {
        let inner = &self.inner;
        let (version, last_seq, dims) = {
            let st = inner.state.read();
            (st.manifest.version, st.last_seq, st.vector_dims)
        };
        let latest = manifest::load_latest(&inner.store, &inner.ns)
            .await?
            .ok_or_else(|| EngineError::NoSuchNamespace(inner.ns.clone()))?;
        if latest.version != version {
            let replayed = replay(
                &inner.store,
                &inner.ns,
                latest.flushed_through,
                Memtable::default(),
                latest.vector_dims,
            )
            .await?;
            let mut st = inner.state.write();
            st.active = replayed.memtable;
            st.frozen = None;
            st.manifest = Arc::new(latest);
            st.vector_dims = replayed.vector_dims;
            st.last_seq = replayed.last_seq;
        } else {
            let active = inner.state.read().active.clone();
            let replayed = replay(&inner.store, &inner.ns, last_seq, active, dims).await?;
            let mut st = inner.state.write();
            if st.last_seq == last_seq {
                st.active = replayed.memtable;
                st.vector_dims = replayed.vector_dims;
                st.last_seq = replayed.last_seq;
            }
        }
        Ok(())
    }
}

impl Inner {
    async fn lookup(&self, id: &DocId) -> EngineResult<Option<StoredDoc>> {
        let found = |id: &DocId, e: &MemEntry| {
            e.json.as_ref().map(|json| StoredDoc {
                id: id.clone(),
                json: json.clone(),
                mtime_ms: e.mtime_ms,
                seq: e.seq,
            })
        };
        let manifest = {
            let st = self.state.read();
            if let Some(e) = st.active.get(id) {
                return Ok(found(id, e));
            }
            if let Some(e) = st.frozen.as_ref().and_then(|f| f.get(id)) {
                return Ok(found(id, e));
            }
            st.manifest.clone()
        };
        for seg in &manifest.segments {
            if let Some(e) = self.reader.get(seg, id).await? {
                return Ok(e.json.map(|json| StoredDoc {
                    id: e.id,
                    json,
                    mtime_ms: e.mtime_ms,
                    seq: e.seq,
                }));
            }
        }
        Ok(None)
    }

    async fn scan_page(
        &self,
        start_after: Option<&DocId>,
        limit: usize,
    ) -> EngineResult<Vec<StoredDoc>> {
        // Each source contributes a sorted run; when a run was cut short its
        // last id bounds what this page may return, since that source may
        // hold newer versions of ids beyond it.
        let per_source = limit + 64;
        let mut after = start_after.cloned();
        loop {
            let mut merged: BTreeMap<DocId, MemEntry> = BTreeMap::new();
            let mut bound: Option<DocId> = None;
            let mut tighten = |b: Option<DocId>| {
                if let Some(b) = b {
                    if bound.as_ref().is_none_or(|cur| &b < cur) {
                        bound = Some(b);
                    }
                }
            };
            let manifest = {
                let st = self.state.read();
                let (entries, b) = st.active.entries_after(after.as_ref(), per_source);
                tighten(b);
                merged.extend(entries);
                if let Some(frozen) = &st.frozen {
                    let (entries, b) = frozen.entries_after(after.as_ref(), per_source);
                    tighten(b);
                    for (id, e) in entries {
                        merged.entry(id).or_insert(e);
                    }
                }
                st.manifest.clone()
            };
            for seg in &manifest.segments {
                let entries = self
                    .reader
                    .entries_after(seg, after.as_ref(), per_source)
                    .await?;
                if entries.len() == per_source {
                    tighten(entries.last().map(|e| e.id.clone()));
                }
                for e in entries {
                    merged.entry(e.id).or_insert(MemEntry {
                        seq: e.seq,
                        mtime_ms: e.mtime_ms,
                        json: e.json,
                    });
                }
            }
            let out: Vec<StoredDoc> = merged
                .into_iter()
                .filter(|(id, _)| bound.as_ref().is_none_or(|b| id <= b))
                .filter_map(|(id, e)| {
                    e.json.map(|json| StoredDoc {
                        id,
                        json,
                        mtime_ms: e.mtime_ms,
                        seq: e.seq,
                    })
                })
                .take(limit)
                .collect();
            match (out.is_empty(), bound) {
                // Only tombstones up to the bound: look past it.
                (true, Some(b)) => after = Some(b),
                _ => return Ok(out),
            }
        }
    }

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
