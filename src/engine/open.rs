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
use super::reader::SegmentReader;
use super::wal::{WalKind, WalRecord};
use super::{Counters, Engine, EngineError, EngineOptions, EngineResult, Inner, State};
use crate::store::{ObjectStore, StoreError};

/// The memtable, dims and last sequence rebuilt from WAL objects after
/// `from_seq`.
pub(super) struct Replayed {
    pub memtable: Memtable,
    pub vector_dims: Option<usize>,
    pub last_seq: u64,
    /// Sequences of the FENCE and VOID objects replayed (or written).
    pub markers: Vec<u64>,
}

/// Replays the WAL after `from_seq` (the manifest's flushed point; the WAL
/// below it may have holes where GC deleted what segments cover), up to
/// and including `upto` when given. The replayed range must be dense.
pub(super) async fn replay(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    from_seq: u64,
    upto: Option<u64>,
    mut memtable: Memtable,
    mut vector_dims: Option<usize>,
) -> EngineResult<Replayed> {
    let dir = wal_dir(ns);
    let mut listed = store.list(&dir, Some(&wal_key(ns, from_seq))).await?;
    if let Some(upto) = upto {
        listed.retain(|m| layout::parse_numbered(&dir, &m.key).is_none_or(|s| s <= upto));
        let last = listed
            .last()
            .and_then(|m| layout::parse_numbered(&dir, &m.key))
            .unwrap_or(from_seq);
        if last < upto {
            return Err(EngineError::Corrupt {
                key: wal_key(ns, last + 1),
                reason: format!("WAL objects {} to {upto} are missing", last + 1),
            });
        }
    }
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
    let mut markers = Vec::new();
    while let Some((seq, key, data)) = fetched.next().await {
        let rec =
            WalRecord::decode(data?, seq).map_err(|reason| EngineError::Corrupt { key, reason })?;
        if rec.kind != WalKind::Batch {
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
        last_seq = seq;
    }
    Ok(Replayed {
        memtable,
        vector_dims,
        last_seq,
        markers,
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
            let replayed = replay(
                &store,
                ns,
                manifest.flushed_through,
                None,
                Memtable::default(),
                manifest.vector_dims,
            )
            .await?;
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
                last_seq = fence_seq;
                markers.push(fence_seq);
                let claim = current.claim_successor(&writer_id);
                match manifest::commit(&store, ns, &claim).await {
                    Ok(()) => current = claim,
                    Err(EngineError::Fenced { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            let replayed = Replayed {
                last_seq,
                markers,
                ..replayed
            };
            return Ok(Engine::assemble(
                store, ns, opts, writer_id, current, replayed, false,
            ));
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
            }),
            commit: Arc::new(tokio::sync::Mutex::new(())),
            pending: Mutex::new(Vec::new()),
            maintenance: tokio::sync::Mutex::new(()),
            reader,
            fenced_by: Mutex::new(None),
            pinned,
            gc_memo: Mutex::new(Default::default()),
            auto_flushing: AtomicBool::new(false),
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
        let (current, last_seq, dims) = {
            let st = inner.state.read();
            (st.manifest.clone(), st.last_seq, st.vector_dims)
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
                )
                .await?;
                let mut st = inner.state.write();
                st.active = replayed.memtable;
                st.frozen = None;
                st.manifest = Arc::new(m);
                st.vector_dims = replayed.vector_dims;
                st.last_seq = replayed.last_seq;
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
                )
                .await?;
                let mut st = inner.state.write();
                for (id, entry) in replayed.memtable.map {
                    st.active.insert(id, entry);
                }
                st.vector_dims = replayed.vector_dims;
                st.last_seq = replayed.last_seq;
                if let Some(m) = claim {
                    st.manifest = Arc::new(m);
                }
            }
        }
        Ok(())
    }
}
