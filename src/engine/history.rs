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
//! `manifest_snapshot` answer for that one state. `At::Time` is resolved to
//! a sequence first (`timeline`).

use std::collections::HashSet;
use std::sync::Arc;

use super::layout::{self, segment_dir, wal_dir, wal_key};
use super::manifest::{self, Manifest};
use super::memtable::Memtable;
use super::open::replay;
use super::timeline::{self, WalTimes};
use super::{checkpoint, Engine, EngineError, EngineOptions, EngineResult};
use crate::store::ObjectStore;

/// A past state of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// Just after this WAL sequence was committed.
    Seq(u64),
    /// The state a checkpoint pins.
    Checkpoint(String),
    /// The newest state committed at or before this time (`timeline`).
    Time(std::time::SystemTime),
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
        let at = match at {
            At::Time(t) => {
                let times = WalTimes::default();
                At::Seq(timeline::seq_at_time(&store, ns, t, &times).await?.seq)
            }
            other => other,
        };
        let (manifest, seq) = match &at {
            At::Seq(seq) => (manifest_for_seq(&store, ns, *seq).await?, *seq),
            At::Time(_) => unreachable!("resolved to a sequence above"),
            At::Checkpoint(name) => {
                let cp = checkpoint::read(&store, ns, name).await?;
                let m = manifest::read(&store, ns, cp.manifest_version).await?;
                (m, cp.seq)
            }
        };
        // Pinned before the checks below: a GC pass in this process either
        // sees the pin or has already deleted what the checks look for.
        let pin = opts.pins.pin(ns, manifest.version, seq);
        if !segments_present(&store, ns, &manifest).await?
            || !wal_dense(&store, ns, manifest.flushed_through, seq).await?
        {
            return match at {
                At::Seq(_) | At::Time(_) => Err(not_retained(&store, ns, seq).await),
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
        let engine = Engine::assemble(store, ns, opts, writer_id, manifest, replayed, true);
        *engine.inner.pin.lock() = Some(pin);
        Ok(engine)
    }
}

/// Checks, without opening it, that the state just after `seq` can be
/// read (`NotRetained` otherwise); returns when it was committed (ms).
pub async fn check_retained(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    seq: u64,
    times: &WalTimes,
) -> EngineResult<u64> {
    layout::check_namespace(ns)?;
    let manifest = manifest_for_seq(store, ns, seq).await?;
    if !wal_dense(store, ns, manifest.flushed_through, seq).await? {
        return Err(not_retained(store, ns, seq).await);
    }
    Ok(times.get(store, ns, seq).await?.unwrap_or(manifest.created_ms))
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
    let times = WalTimes::default();
    let retained = match retained_range(store, ns).await {
        Ok(Some((lo, hi))) if seq > hi => format!(
            "the newest committed sequence is {hi} ({})",
            range_text(store, ns, lo, hi, &times).await
        ),
        Ok(Some((lo, hi))) => range_text(store, ns, lo, hi, &times).await,
        Ok(None) => "no state of it is readable".to_string(),
        Err(e) => format!("the retained range could not be determined ({e})"),
    };
    EngineError::NotRetained {
        ns: ns.to_string(),
        seq,
        retained: with_checkpoints(store, ns, retained).await,
    }
}

/// What of `ns` can be read, in sequences and commit times, for errors
/// and the daemon's log.
pub async fn describe_retained(store: &Arc<dyn ObjectStore>, ns: &str, times: &WalTimes) -> String {
    let retained = match retained_range(store, ns).await {
        Ok(Some((lo, hi))) => range_text(store, ns, lo, hi, times).await,
        Ok(None) => "no state of it is readable".to_string(),
        Err(e) => format!("the retained range could not be determined ({e})"),
    };
    with_checkpoints(store, ns, retained).await
}

/// "sequences LO to HI are retained (committed T1 to T2)".
async fn range_text(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    lo: u64,
    hi: u64,
    times: &WalTimes,
) -> String {
    let lo_ms = match times.get(store, ns, lo).await {
        Ok(Some(ms)) => Some(ms),
        // The WAL object of the oldest state may be gone: its manifest says
        // by when it was committed.
        _ => flush_point_created_ms(store, ns, lo).await,
    };
    let hi_ms = match times.get(store, ns, hi).await {
        Ok(Some(ms)) => Some(ms),
        _ => flush_point_created_ms(store, ns, hi).await,
    };
    match (lo_ms, hi_ms) {
        (Some(a), Some(b)) => format!(
            "sequences {lo} to {hi} are retained (committed {} to {})",
            timeline::format_ms(a),
            timeline::format_ms(b)
        ),
        _ => format!("sequences {lo} to {hi} are retained"),
    }
}

/// When the newest manifest flushed exactly through `seq` was created.
pub(super) async fn flush_point_created_ms(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    seq: u64,
) -> Option<u64> {
    for v in manifest::list_versions(store, ns).await.ok()?.iter().rev() {
        let Ok(m) = manifest::read(store, ns, *v).await else {
            continue;
        };
        if m.flushed_through == seq {
            return Some(m.created_ms);
        }
        if m.flushed_through < seq {
            break;
        }
    }
    None
}

async fn with_checkpoints(store: &Arc<dyn ObjectStore>, ns: &str, retained: String) -> String {
    match checkpoint::list(store, ns).await {
        Ok(cps) if !cps.is_empty() => {
            let names: Vec<String> = cps
                .iter()
                .map(|c| format!("{} (seq {})", c.name, c.seq))
                .collect();
            format!("{retained}; checkpoints: {}", names.join(", "))
        }
        _ => retained,
    }
}

/// `(lo, hi)`: every sequence in `lo..=hi` can be opened with `At::Seq`,
/// and WAL objects `lo+1 ..= hi` all exist. Reads every manifest down to
/// the oldest usable one.
pub async fn retained_range(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
) -> EngineResult<Option<(u64, u64)>> {
    let seqs = timeline::wal_seqs(store, ns).await?;
    retained_range_of(store, ns, &seqs).await
}

/// `retained_range`, given the sorted WAL listing.
pub(super) async fn retained_range_of(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    seqs: &[u64],
) -> EngineResult<Option<(u64, u64)>> {
    // Whether WAL objects `from+1 ..= to` are all listed.
    let dense = |from: u64, to: u64| {
        let a = seqs.partition_point(|s| *s <= from);
        let b = seqs.partition_point(|s| *s <= to);
        (b - a) as u64 == to.saturating_sub(from)
    };
    let newest_wal = seqs.last().copied().unwrap_or(0);
    let mut range: Option<(u64, u64)> = None;
    for v in manifest::list_versions(store, ns).await?.iter().rev() {
        let Ok(m) = manifest::read(store, ns, *v).await else {
            continue;
        };
        let f = m.flushed_through;
        match range {
            // The newest usable manifest: every state from its flushed
            // point up to the newest WAL object, if that run is dense (GC
            // deletes only WAL its segments cover, so it is; a stale run of
            // markers below `f` does not count).
            None => {
                if !segments_present(store, ns, &m).await? {
                    continue;
                }
                let hi = if newest_wal > f && dense(f, newest_wal) {
                    newest_wal
                } else {
                    f
                };
                range = Some((f, hi));
            }
            Some((lo, hi)) => {
                if f > lo {
                    continue;
                }
                if !dense(f, lo) || !segments_present(store, ns, &m).await? {
                    break;
                }
                range = Some((f, hi));
            }
        }
    }
    Ok(range)
}
