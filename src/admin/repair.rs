//! `repair`: fence the namespace, then
//! 1. keep the newest manifest if it and every segment it names check out,
//!    else rebuild it (corrupt segments go to quarantine; the WAL they
//!    covered is replayed instead);
//! 2. set corrupt WAL objects aside: one that is already flushed is simply
//!    replaced; the first unflushed one and every later one (which may depend
//!    on it) are copied to quarantine and replaced by VOID markers, so the
//!    sequence stays dense and no zombie writer can reuse those slots;
//! 3. delete orphan segments (named by no manifest) and quarantine junk and
//!    corrupt old manifests. Checkpoints are kept.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::rebuild::rebuild_fenced;
use super::{
    admin_writer_id, fence_wal, list_namespace, named_segments, quarantine_stamp, wal_gap,
    AdminResult, Issue, Listing,
};
use crate::engine::layout::{quarantine_key, segment_key, wal_key};
use crate::engine::manifest::{self, Manifest};
use crate::engine::segment::decode_all;
use crate::engine::wal::{WalKind, WalRecord};
use crate::store::ObjectStore;

#[derive(Debug, Clone, Serialize, Default)]
pub struct RepairReport {
    pub namespace: String,
    /// WAL sequence of the fence that stopped any live writer.
    pub fenced_at: u64,
    pub manifest_version: u64,
    pub manifest_rebuilt: bool,
    /// Original key -> where it was set aside.
    pub quarantined: Vec<(String, String)>,
    /// WAL sequences now holding VOID markers.
    pub voided_wal: Vec<u64>,
    pub orphans_deleted: Vec<String>,
    /// What was wrong before, as found.
    pub problems_found: Vec<Issue>,
}

pub async fn repair(store: Arc<dyn ObjectStore>, ns: &str) -> AdminResult<RepairReport> {
    let writer_id = admin_writer_id("repair");
    let fenced_at = fence_wal(&store, ns, &writer_id).await?;
    let listing = list_namespace(&store, ns).await?;
    let stamp = quarantine_stamp();
    let mut report = RepairReport {
        namespace: ns.to_string(),
        fenced_at,
        ..RepairReport::default()
    };

    // 1. The manifest.
    let current = match check_newest_manifest(&store, ns, &listing, &mut report).await? {
        Some(m) => {
            let claim = m.claim_successor(&writer_id);
            manifest::commit(&store, ns, &claim).await?;
            claim
        }
        None => {
            for (key, _) in &listing.segments {
                if let Ok(data) = store.get(key).await {
                    if decode_all(&data).is_err() {
                        set_aside(&store, ns, &stamp, key, data, &mut report).await?;
                        store.delete(key).await?;
                    }
                }
            }
            let rebuilt = rebuild_fenced(&store, ns, &writer_id).await?;
            report.manifest_rebuilt = true;
            manifest::read(&store, ns, rebuilt.manifest_version).await?
        }
    };
    report.manifest_version = current.version;
    for (version, key) in &listing.manifests {
        if *version < current.version {
            if let Ok(data) = store.get(key).await {
                if Manifest::decode(data.clone(), *version).is_err() {
                    set_aside(&store, ns, &stamp, key, data, &mut report).await?;
                    store.delete(key).await?;
                }
            }
        }
    }

    // 2. The WAL (below our fence).
    let mut expected = 1;
    let mut first_bad: Option<u64> = None;
    for (seq, key) in listing.wal.iter().filter(|(s, _)| *s < fenced_at) {
        if let Some((from, to)) = wal_gap(expected, *seq, current.flushed_through) {
            report.problems_found.push(Issue {
                object: key.clone(),
                problem: format!("WAL objects {from} to {to} are missing"),
            });
            first_bad = Some(from);
            break;
        }
        expected = seq + 1;
        let data = store.get(key).await?;
        if let Err(reason) = WalRecord::decode(data.clone(), *seq) {
            report.problems_found.push(Issue {
                object: key.clone(),
                problem: format!("corrupt WAL object: {reason}"),
            });
            if *seq <= current.flushed_through {
                set_aside(&store, ns, &stamp, key, data, &mut report).await?;
                void(&store, ns, *seq, &writer_id, &mut report).await?;
            } else {
                first_bad = Some(*seq);
                break;
            }
        }
    }
    if let Some(first) = first_bad {
        for seq in first..fenced_at {
            let key = wal_key(ns, seq);
            match store.get(&key).await {
                Ok(data) => set_aside(&store, ns, &stamp, &key, data, &mut report).await?,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            void(&store, ns, seq, &writer_id, &mut report).await?;
        }
    }

    // VOIDs below the flushed point are fencing boundaries like the FENCE
    // they may replace; record them so GC keeps them (see `engine::gc`).
    let flushed_voids: Vec<u64> = report
        .voided_wal
        .iter()
        .copied()
        .filter(|s| *s <= current.flushed_through && !current.markers.contains(s))
        .collect();
    if !flushed_voids.is_empty() && current.markers_known_after.is_some() {
        let mut next = current.successor(&writer_id);
        next.markers.extend(flushed_voids);
        next.markers.sort_unstable();
        manifest::commit(&store, ns, &next).await?;
        report.manifest_version = next.version;
    }

    // 3. Garbage: segments no manifest names (retained history and
    // checkpoints name older ones; see `engine::gc`).
    let listing_now = list_namespace(&store, ns).await?;
    let referenced: HashSet<String> = named_segments(&store, ns, &listing_now)
        .await
        .iter()
        .map(|id| segment_key(ns, id))
        .collect();
    for meta in store
        .list(&crate::engine::layout::segment_dir(ns), None)
        .await?
    {
        if !referenced.contains(&meta.key) {
            store.delete(&meta.key).await?;
            report.orphans_deleted.push(meta.key);
        }
    }
    for key in &listing.unknown {
        if !key.starts_with(&crate::engine::layout::segment_dir(ns)) {
            if let Ok(data) = store.get(key).await {
                set_aside(&store, ns, &stamp, key, data, &mut report).await?;
                store.delete(key).await?;
            }
        }
    }
    Ok(report)
}

/// The newest manifest when it and every segment it names check out.
async fn check_newest_manifest(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    listing: &Listing,
    report: &mut RepairReport,
) -> AdminResult<Option<Manifest>> {
    let Some((version, key)) = listing.manifests.last() else {
        if !listing.segments.is_empty() || !listing.wal.is_empty() {
            report.problems_found.push(Issue {
                object: format!("{ns}/manifest/"),
                problem: "no manifest".into(),
            });
        }
        return Ok(None);
    };
    let m = match manifest::read(store, ns, *version).await {
        Ok(m) => m,
        Err(e) => {
            report.problems_found.push(Issue {
                object: key.clone(),
                problem: e.to_string(),
            });
            return Ok(None);
        }
    };
    for seg in &m.segments {
        let key = segment_key(ns, &seg.id);
        let problem = match store.get(&key).await {
            Ok(data) => match decode_all(&data) {
                Ok(_) if data.len() as u64 == seg.size => continue,
                Ok(_) => "size differs from the manifest".to_string(),
                Err(reason) => reason,
            },
            Err(e) => e.to_string(),
        };
        report.problems_found.push(Issue {
            object: key,
            problem,
        });
        return Ok(None);
    }
    Ok(Some(m))
}

async fn set_aside(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    stamp: &str,
    key: &str,
    data: Bytes,
    report: &mut RepairReport,
) -> AdminResult<()> {
    let dest = quarantine_key(ns, stamp, key);
    store.put(&dest, data).await?;
    report.quarantined.push((key.to_string(), dest));
    Ok(())
}

async fn void(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    seq: u64,
    writer_id: &str,
    report: &mut RepairReport,
) -> AdminResult<()> {
    let marker = WalRecord::marker(writer_id, seq, WalKind::Void, None);
    store.put(&wal_key(ns, seq), marker.encode()).await?;
    report.voided_wal.push(seq);
    Ok(())
}
