//! Opening a namespace: newest manifest, replay of the later WAL, and the
//! fence that makes this engine the namespace's only writer; `refresh`
//! repeats the replay for followers.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use futures::StreamExt;
use parking_lot::{Mutex, RwLock};

use super::layout::{self, check_namespace, wal_dir, wal_key};
use super::manifest;
use super::memtable::{MemEntry, Memtable};
use super::reader::{preload_indexes, SegmentReader};
use super::wal::{WalKind, WalRecord, PIPELINE_DEPTH};
use super::{Counters, Engine, EngineError, EngineOptions, EngineResult, Inner, State};
use crate::store::{ObjectStore, StoreError};

/// The memtable, dims and last sequence rebuilt from WAL objects after
/// `from_seq`.
pub(super) struct Replayed {
    pub memtable: Memtable,
    pub vector_dims: Option<usize>,
    pub last_seq: u64,
    /// Sequences of the markers replayed (or written) that GC must keep:
    /// every FENCE, and every VOID but those claiming a fence's window.
    pub markers: Vec<u64>,
    /// The writer of the newest FENCE replayed (`wal`, writer continuity).
    pub owner: Option<String>,
    /// Objects past the first missing sequence (within `PIPELINE_DEPTH` of
    /// it): unacknowledged puts of a failed pipeline, not replayed.
    pub past_gap: Vec<u64>,
}

/// Replays the WAL after `from_seq` (the manifest's flushed point; the WAL
/// below it may have holes where GC deleted what segments cover), up to
/// and including `upto` when given, by the rules in `wal`: the replayed
/// range is dense and ends at the first missing sequence, and a BATCH of
/// a writer other than `owner` (the writer of the newest FENCE so far) is
/// skipped as a stray. `owner` is the one a previous replay ended with.
pub(super) async fn replay(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    from_seq: u64,
    upto: Option<u64>,
    mut memtable: Memtable,
    mut vector_dims: Option<usize>,
    mut owner: Option<String>,
) -> EngineResult<Replayed> {
    let dir = wal_dir(ns);
    let mut listed = store.list(&dir, Some(&wal_key(ns, from_seq))).await?;
    if let Some(upto) = upto {
        listed.retain(|m| layout::parse_numbered(&dir, &m.key).is_none_or(|s| s <= upto));
    }
    let mut expected = from_seq + 1;
    let mut gap: Option<u64> = None;
    let mut keyed = Vec::with_capacity(listed.len());
    let mut past_gap = Vec::new();
    for meta in listed {
        let Some(seq) = layout::parse_numbered(&dir, &meta.key) else {
            return Err(EngineError::Corrupt {
                key: meta.key,
                reason: "not a WAL object name".into(),
            });
        };
        if gap.is_none() && seq != expected {
            gap = Some(expected);
        }
        match gap {
            None => {
                expected = seq + 1;
                keyed.push((seq, meta.key));
            }
            // Within the pipeline window of the hole: a put that landed
            // after an earlier one failed, never acknowledged.
            Some(g) if seq < g + PIPELINE_DEPTH => past_gap.push(seq),
            Some(g) => {
                let to = past_gap.first().copied().unwrap_or(seq) - 1;
                return Err(EngineError::Corrupt {
                    key: meta.key,
                    reason: format!("WAL objects {g} to {to} are missing"),
                });
            }
        }
    }
    if let Some(upto) = upto {
        if expected <= upto {
            return Err(EngineError::Corrupt {
                key: wal_key(ns, expected),
                reason: format!("WAL objects {expected} to {upto} are missing"),
            });
        }
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
    let mut markers = Vec::new();
    // The newest FENCE replayed: its writer's VOIDs in its window are claims.
    let mut fence: Option<u64> = None;
    while let Some((seq, key, data)) = fetched.next().await {
        let rec =
            WalRecord::decode(data?, seq).map_err(|reason| EngineError::Corrupt { key, reason })?;
        last_seq = seq;
        match rec.kind {
            WalKind::Fence => {
                owner = Some(rec.writer_id.clone());
                fence = Some(seq);
            }

            WalKind::Batch if owner.as_ref().is_some_and(|o| *o != rec.writer_id) => {
                log::warn!(
                    "namespace {ns}: WAL object {seq} of writer {} follows the fence of writer {}: \
                     a write it never acknowledged; ignored",
                    rec.writer_id,
                    owner.as_deref().unwrap_or_default()
                );
                continue;
            }
            _ => {}
        }
        let window_claim =
            rec.kind == WalKind::Void && is_window_claim(fence, owner.as_deref(), &rec);
        if rec.kind != WalKind::Batch && !window_claim {
            markers.push(seq);
        }
        if rec.vector_dims.is_some() {
            vector_dims = rec.vector_dims;
        }
        for op in rec.ops {
            memtable.insert(
                op.id,
                MemEntry {
                    seq,
                    mtime_ms: op.mtime,
                    json: op.json,
                },
            );
        }
    }
    Ok(Replayed {
        memtable,
        vector_dims,
        last_seq,
        markers,
        owner,
        past_gap,
    })
}

/// Whether `rec`, a VOID, claims a slot of the window after the newest
/// FENCE replayed (at `fence`, by `owner`). Such a VOID is nobody's next
/// slot, so GC may delete it once a flush covers it (`wal`): the writer
/// that fence stopped aims its next put at the fence itself, which stays.
fn is_window_claim(fence: Option<u64>, owner: Option<&str>, rec: &WalRecord) -> bool {
    fence.is_some_and(|f| f < rec.seq && rec.seq < f + PIPELINE_DEPTH)
        && owner == Some(rec.writer_id.as_str())
}

/// VOID markers in every free slot of `(fence_seq, last]` (create-if-absent);
/// a slot already holding another writer's BATCH keeps it (a stray of the
/// writer our fence stopped), and so does a VOID. Returns `false` when a
/// slot holds a FENCE (a takeover raced ours: open again). The VOIDs are
/// not markers GC keeps (`is_window_claim`).
async fn claim_window(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    writer_id: &str,
    fence_seq: u64,
    last: u64,
    replayed: &Replayed,
) -> EngineResult<bool> {
    let holes: Vec<u64> = (fence_seq + 1..=last)
        .filter(|s| !replayed.past_gap.contains(s))
        .collect();
    let puts = holes.iter().map(|&seq| async move {
        let marker = WalRecord::marker(writer_id, seq, WalKind::Void, replayed.vector_dims);
        let key = wal_key(ns, seq);
        match store.put_if_absent(&key, marker.encode()).await {
            Ok(()) => Ok(()),
            // A late put of the fenced writer's pipeline is a stray like
            // the rest; anything else means another writer is at work.
            Err(StoreError::AlreadyExists(_)) => {
                let data = store.get(&key).await.map_err(|e| Some(EngineError::from(e)))?;
                match WalRecord::decode(data, seq) {
                    Ok(rec) if rec.kind == WalKind::Batch && rec.writer_id != writer_id => Ok(()),
                    // A VOID already claims the slot for good: one of ours
                    // from an attempt that started over, or of an opener
                    // that died while claiming its own window.
                    Ok(rec) if rec.kind == WalKind::Void => Ok(()),
                    _ => Err(None),
                }
            }
            Err(e) => Err(Some(EngineError::from(e))),
        }
    });
    match futures::future::try_join_all(puts).await {
        Ok(_) => Ok(true),
        Err(None) => Ok(false),
        Err(Some(e)) => Err(e),
    }
}

/// The WAL puts a writer keeps in flight at most on `store`: the whole
/// pipeline where overlapping puts help, else one (group commit alone).
fn puts_in_flight(store: &dyn ObjectStore) -> usize {
    if store.overlapping_puts_help() {
        PIPELINE_DEPTH as usize
    } else {
        1
    }
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
        if writer_id.len() > super::gc::MAX_WRITER_ID_BYTES {
            // GC tells fence markers apart from batches by size.
            return Err(EngineError::WriteFailed {
                ns: ns.to_string(),
                message: format!(
                    "writer id is {} bytes, at most {} are allowed",
                    writer_id.len(),
                    super::gc::MAX_WRITER_ID_BYTES
                ),
            });
        }
        for _attempt in 0..8 {
            let manifest = manifest::load_latest(&store, ns).await?;
            if opts.read_only && manifest.is_none() {
                return Err(EngineError::NoSuchNamespace(ns.to_string()));
            }
            let manifest = manifest.unwrap_or_default();
            // The segment indexes load alongside the replay (`reader`).
            let (replayed, indexes) = futures::join!(
                replay(
                    &store,
                    ns,
                    manifest.flushed_through,
                    None,
                    Memtable::default(),
                    manifest.vector_dims,
                    None,
                ),
                preload_indexes(&store, ns, &manifest.segments, opts.cache_bytes / 2)
            );
            let replayed = replayed?;
            let mut last_seq = replayed.last_seq;
            let mut markers = replayed.markers.clone();
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
                markers.push(fence_seq);
                // Claim the rest of the pipeline window after our fence: a
                // previous writer's puts that were in flight when we fenced
                // it (strays of a crashed pipeline found past the hole, or
                // of a zombie still running, landing later) can only lie in
                // it, and each slot now holds our VOID or such a stray,
                // which follows our fence (skipped by writer continuity).
                // Our first batch goes after the window, so our first flush
                // covers it and no replay ever starts inside it (`wal`).
                if let Some(&last) = replayed.past_gap.last() {
                    log::warn!(
                        "namespace {ns}: WAL object {fence_seq} is missing and {} later ones \
                         (up to {last}) exist: writes of a pipeline whose put failed, never \
                         acknowledged; they stay ignored and this writer writes after them",
                        replayed.past_gap.len()
                    );
                }
                let window_end = fence_seq + PIPELINE_DEPTH - 1;
                if !claim_window(&store, ns, &writer_id, fence_seq, window_end, &replayed).await? {
                    continue;
                }
                last_seq = window_end;
                let claim = current.claim_successor(&writer_id);
                match manifest::commit(&store, ns, &claim).await {
                    Ok(()) => current = claim,
                    Err(EngineError::Fenced { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            let owner = match opts.read_only {
                true => replayed.owner.clone(),
                false => Some(writer_id.clone()),
            };
            let replayed = Replayed {
                last_seq,
                markers,
                owner,
                ..replayed
            };
            let engine = Engine::assemble(store, ns, opts, writer_id, current, replayed, false);
            for index in indexes {
                engine.inner.reader.remember_index(index);
            }
            return Ok(engine);
        }
        Err(EngineError::Busy(ns.to_string()))
    }

    /// An engine over an already loaded state.
    pub(super) fn assemble(
        store: Arc<dyn ObjectStore>,
        ns: &str,
        opts: EngineOptions,
        writer_id: String,
        manifest: manifest::Manifest,
        replayed: Replayed,
        pinned: bool,
    ) -> Engine {
        let reader = SegmentReader::new(store.clone(), ns, opts.cache_bytes);
        let slots = puts_in_flight(store.as_ref());
        let inner = Inner {
            store,
            ns: ns.to_string(),
            writer_id,
            state: RwLock::new(State {
                active: replayed.memtable,
                frozen: None,
                manifest: Arc::new(manifest),
                vector_dims: replayed.vector_dims,
                last_seq: replayed.last_seq,
                markers: replayed.markers.into_iter().collect(),
                wal_owner: replayed.owner,
            }),
            commit: Arc::new(tokio::sync::Mutex::new(())),
            committing: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            pipeline: Mutex::new(super::pipeline::Pipeline::new(replayed.last_seq)),
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            maintenance: tokio::sync::Mutex::new(()),
            reader,
            fenced_by: Mutex::new(None),
            pinned,
            pin: Mutex::new(None),
            gc_memo: Mutex::new(Default::default()),
            auto_flushing: AtomicBool::new(false),
            winding_down: AtomicBool::new(false),
            flushed: tokio::sync::Notify::new(),
            counters: Counters::default(),
            opts,
        };
        Engine {
            inner: Arc::new(inner),
        }
    }

    /// For followers (read-only): pick up what the writer committed since the
    /// last open or refresh. Writers see their own writes and need not call it.
    pub async fn refresh(&self) -> EngineResult<()> {
        let inner = &self.inner;
        if inner.pinned {
            // A past state never changes.
            return Ok(());
        }
        // Followers never flush or compact, so this lock only orders
        // refreshes: a slow one cannot install an older state.
        let _serial = inner.maintenance.lock().await;
        let (current, last_seq, dims, owner) = {
            let st = inner.state.read();
            (
                st.manifest.clone(),
                st.last_seq,
                st.vector_dims,
                st.wal_owner.clone(),
            )
        };
        let dir = layout::manifest_dir(&inner.ns);
        let newest = inner
            .store
            .list(&dir, Some(&layout::manifest_key(&inner.ns, current.version)))
            .await?
            .iter()
            .filter_map(|m| layout::parse_numbered(&dir, &m.key))
            .max();
        let latest = match newest {
            Some(v) => Some(manifest::read(&inner.store, &inner.ns, v).await?),
            None => None,
        };
        match latest {
            // New segments: the memtable is rebuilt from their WAL position.
            Some(m)
                if m.flushed_through != current.flushed_through
                    || m.segments != current.segments =>
            {
                let replayed = replay(
                    &inner.store,
                    &inner.ns,
                    m.flushed_through,
                    None,
                    Memtable::default(),
                    m.vector_dims,
                    None,
                )
                .await?;
                let mut st = inner.state.write();
                st.active = replayed.memtable;
                st.frozen = None;
                st.manifest = Arc::new(m);
                st.vector_dims = replayed.vector_dims;
                st.last_seq = replayed.last_seq;
                st.wal_owner = replayed.owner;
            }
            // Same segments (nothing new, or only a writer's claim): apply
            // the WAL written since; with nothing new this is one LIST.
            claim => {
                let replayed = replay(
                    &inner.store,
                    &inner.ns,
                    last_seq,
                    None,
                    Memtable::default(),
                    dims,
                    owner,
                )
                .await?;
                let mut st = inner.state.write();
                for (id, entry) in replayed.memtable.map {
                    st.active.insert(id, entry);
                }
                st.vector_dims = replayed.vector_dims;
                st.last_seq = replayed.last_seq;
                st.wal_owner = replayed.owner;
                if let Some(m) = claim {
                    st.manifest = Arc::new(m);
                }
            }
        }
        Ok(())
    }
}
