//! Reading the past: a read-only engine pinned at a past WAL sequence or at
//! a checkpoint (DESIGN.md §3, §4, §8).
//!
//! The state just after sequence `s` is the newest manifest with
//! `flushed_through <= s` (its segments hold everything up to that point)
//! plus a replay of the WAL in `(flushed_through, s]`. Retention keeps, for
//! every state of the last `retain`, exactly those objects, so such an open
//! succeeds for any `s` in the retained range and names that range when
//! `s` lies outside it. Of all manifests with `flushed_through <= s` the
//! newest needs the least WAL, so if it cannot serve `s` none can.
//!
//! Manifests older than retention may survive GC only as claims (they are
//! fencing boundaries, see `gc`): their segments and WAL may be gone, so a
//! candidate manifest is used only when every segment it names is present.
//!
//! The returned engine is read-only and never refreshes: `get`, `scan` and
//! `manifest_snapshot` answer for that one state.

use std::collections::HashSet;
use std::sync::Arc;

use super::layout::{self, segment_dir, wal_dir, wal_key};
use super::manifest::{self, Manifest};
use super::memtable::Memtable;
use super::open::replay;
use super::{checkpoint, Engine, EngineError, EngineOptions, EngineResult};
use crate::store::ObjectStore;

/// A past state of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// Just after this WAL sequence was committed.
    Seq(u64),
    /// The state a checkpoint pins.
    Checkpoint(String),
}

impl Engine {
    /// Opens `ns` read-only at a past state. Fails with `NotRetained`
    /// (naming what is retained) when that state's objects are gone, and
    /// with `NoSuchCheckpoint` for an unknown checkpoint.
    pub async fn open_at(
        store: Arc<dyn ObjectStore>,
        ns: &str,
        at: At,
        opts: EngineOptions,
    ) -> EngineResult<Engine> {
        layout::check_namespace(ns)?;
        let (manifest, seq) = match &at {
            At::Seq(seq) => (manifest_for_seq(&store, ns, *seq).await?, *seq),
            At::Checkpoint(name) => {
                let cp = checkpoint::read(&store, ns, name).await?;
                let m = manifest::read(&store, ns, cp.manifest_version).await?;
                (m, cp.seq)
            }
        };
        if !wal_dense(&store, ns, manifest.flushed_through, seq).await? {
            return match at {
                At::Seq(_) => Err(not_retained(&store, ns, seq).await),
                At::Checkpoint(name) => Err(EngineError::Corrupt {
                    key: layout::checkpoint_key(ns, &name),
                    reason: format!(
                        "WAL objects after {} up to {seq}, which it pins, are missing",
                        manifest.flushed_through
                    ),
                }),
            };
        }
        let replayed = replay(
            &store,
            ns,
            manifest.flushed_through,
            Some(seq),
            Memtable::default(),
            manifest.vector_dims,
            None,
        )
        .await?;
        let opts = EngineOptions {
            read_only: true,
            auto_flush_bytes: None,
            auto_flush_wal_objects: None,
            auto_compact_segments: None,
            ..opts
        };
        let writer_id = format!("past-{}", manifest.writer_id);
        Ok(Engine::assemble(
            store, ns, opts, writer_id, manifest, replayed, true,
        ))
    }
}

/// The newest manifest with `flushed_through <= seq` whose segments all
/// exist.
async fn manifest_for_seq(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    seq: u64,
) -> EngineResult<Manifest> {
    let versions = manifest::list_versions(store, ns).await?;
    if versions.is_empty() {
        return Err(EngineError::NoSuchNamespace(ns.to_string()));
    }
    for v in versions.iter().rev() {
        let m = match manifest::read(store, ns, *v).await {
            Ok(m) => m,
            // Deleted by a GC pass since the listing.
            Err(EngineError::Store(e)) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        if m.flushed_through > seq {
            continue;
        }
        if segments_present(store, ns, &m).await? {
            return Ok(m);
        }
        break;
    }
    Err(not_retained(store, ns, seq).await)
}

async fn segments_present(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    m: &Manifest,
) -> EngineResult<bool> {
    if m.segments.is_empty() {
        return Ok(true);
    }
    let dir = segment_dir(ns);
    let present: HashSet<String> = store
        .list(&dir, None)
        .await?
        .into_iter()
        .filter_map(|o| o.key.strip_prefix(&dir).map(str::to_string))
        .collect();
    Ok(m.segments.iter().all(|s| present.contains(&s.id)))
}

/// Whether WAL objects `from+1 ..= upto` all exist.
async fn wal_dense(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    from: u64,
    upto: u64,
) -> EngineResult<bool> {
    if upto <= from {
        return Ok(true);
    }
    let dir = wal_dir(ns);
    let seqs: Vec<u64> = store
        .list(&dir, Some(&wal_key(ns, from)))
        .await?
        .iter()
        .filter_map(|m| layout::parse_numbered(&dir, &m.key))
        .filter(|s| *s <= upto)
        .collect();
    Ok(seqs.len() as u64 == upto - from && seqs.first() == Some(&(from + 1)))
}

/// The error for `seq`, naming the range that can be read instead.
async fn not_retained(store: &Arc<dyn ObjectStore>, ns: &str, seq: u64) -> EngineError {
    let retained = match retained_range(store, ns).await {
        Ok(Some((lo, hi))) if seq > hi => {
            format!("the newest committed sequence is {hi} (retained: {lo} to {hi})")
        }
        Ok(Some((lo, hi))) => format!("sequences {lo} to {hi} are retained"),
        Ok(None) => "no state of it is readable".to_string(),
        Err(e) => format!("the retained range could not be determined ({e})"),
    };
    let retained = match checkpoint::list(store, ns).await {
        Ok(cps) if !cps.is_empty() => {
            let names: Vec<String> = cps
                .iter()
                .map(|c| format!("{} (seq {})", c.name, c.seq))
                .collect();
            format!("{retained}; checkpoints: {}", names.join(", "))
        }
        _ => retained,
    };
    EngineError::NotRetained {
        ns: ns.to_string(),
        seq,
        retained,
    }
}

/// `(lo, hi)`: every sequence in `lo..=hi` can be opened with `At::Seq`.
/// Only called to explain a refusal, so it may read every manifest.
pub async fn retained_range(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
) -> EngineResult<Option<(u64, u64)>> {
    let dir = wal_dir(ns);
    let mut seqs: Vec<u64> = store
        .list(&dir, None)
        .await?
        .iter()
        .filter_map(|m| layout::parse_numbered(&dir, &m.key))
        .collect();
    seqs.sort_unstable();
    let hi = seqs.last().copied().unwrap_or(0);
    // The dense tail of the WAL starts after `tail_from`.
    let mut tail_from = hi;
    for s in seqs.iter().rev() {
        if *s == tail_from {
            tail_from -= 1;
        } else {
            break;
        }
    }
    let mut lo = None;
    for v in manifest::list_versions(store, ns).await?.iter().rev() {
        let Ok(m) = manifest::read(store, ns, *v).await else {
            continue;
        };
        if m.flushed_through < tail_from || !segments_present(store, ns, &m).await? {
            break;
        }
        lo = Some(m.flushed_through);
    }
    Ok(lo.map(|lo| (lo, hi.max(lo))))
}
