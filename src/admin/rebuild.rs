//! `rebuild_manifest`: recreate the manifest from segments and the WAL.
//!
//! Every segment records the WAL range it covers and the segments it
//! replaced, and garbage collection deletes a WAL object only once a
//! segment covers it (and never a replaced segment before its
//! replacement is committed), so the newest state is recoverable from what
//! remains: keep every valid segment not superseded by another whose
//! WAL range contains its own (a compaction output, or a retried flush of a
//! flush that never committed), mark the WAL as flushed up to the first gap
//! in coverage, and let open replay the rest.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

use super::{admin_writer_id, fence_wal, list_namespace, AdminResult, Issue};
use crate::engine::layout::now_ms;
use crate::engine::manifest::{self, Manifest};
use crate::engine::segment::{decode_all, SegmentIndex, SegmentMeta};
use crate::store::ObjectStore;

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub namespace: String,
    pub manifest_version: u64,
    pub flushed_through: u64,
    pub segments: Vec<String>,
    /// Valid segments left out because a newer one contains them.
    pub superseded: Vec<String>,
    /// Segment objects that could not be used, and why.
    pub unusable: Vec<Issue>,
}

pub async fn rebuild_manifest(store: Arc<dyn ObjectStore>, ns: &str) -> AdminResult<RebuildReport> {
    let writer_id = admin_writer_id("rebuild");
    fence_wal(&store, ns, &writer_id).await?;
    rebuild_fenced(&store, ns, &writer_id).await
}

/// Rebuilds and commits, for a caller that already fenced the namespace.
pub(super) async fn rebuild_fenced(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    writer_id: &str,
) -> AdminResult<RebuildReport> {
    let listing = list_namespace(store, ns).await?;
    let mut valid: Vec<(SegmentMeta, SegmentIndex)> = Vec::new();
    let mut unusable = Vec::new();
    for (key, _) in &listing.segments {
        let data = store.get(key).await?;
        let seg_id = key.rsplit('/').next().unwrap_or(key).to_string();
        match decode_all(&data) {
            Ok((index, _)) if index.segment_id == seg_id => {
                valid.push((meta_from_index(&index, &data), index))
            }
            Ok((index, _)) => unusable.push(Issue {
                object: key.clone(),
                problem: format!("holds segment {}", index.segment_id),
            }),
            Err(reason) => unusable.push(Issue {
                object: key.clone(),
                problem: reason,
            }),
        }
    }

    // A segment is superseded by one covering a strictly larger WAL range,
    // or the same range with a greater id and overlapping ids (two uploads
    // of one flush or one merge). Outputs of one compaction share their WAL
    // range but hold disjoint ids: siblings, all kept.
    let overlap = |a: &SegmentMeta, b: &SegmentMeta| a.min_id <= b.max_id && b.min_id <= a.max_id;
    let superseded: HashSet<String> = valid
        .iter()
        .filter(|(s, _)| {
            valid.iter().any(|(t, _)| {
                t.id != s.id
                    && t.wal_lo <= s.wal_lo
                    && s.wal_hi <= t.wal_hi
                    && ((t.wal_lo, t.wal_hi) != (s.wal_lo, s.wal_hi)
                        || (t.id > s.id && overlap(s, t)))
            })
        })
        .map(|(s, _)| s.id.clone())
        .collect();
    let mut live: Vec<(SegmentMeta, SegmentIndex)> = valid
        .into_iter()
        .filter(|(s, _)| !superseded.contains(&s.id))
        .collect();

    live.sort_by_key(|(s, _)| s.wal_lo);
    let mut covered = 0;
    for (s, _) in &live {
        if s.wal_lo > covered + 1 {
            break;
        }
        covered = covered.max(s.wal_hi);
    }
    // Newest first, as readers expect.
    live.sort_by(|a, b| b.0.wal_hi.cmp(&a.0.wal_hi).then(b.0.id.cmp(&a.0.id)));
    let vector_dims = live.iter().find_map(|(_, ix)| ix.vector_dims);
    let version = listing.manifests.last().map_or(0, |(v, _)| *v) + 1;
    // The rebuilt manifest is a claim (this tool fenced the namespace), and
    // it keeps every claim the readable manifests knew of, so garbage
    // collection keeps sparing them (see `engine::gc`).
    // Legacy manifests (no `claim` field) count unless they are certainly a
    // flush (`Lineage::legacy_is_flush`), as GC decides.
    let mut claims = std::collections::BTreeSet::new();
    let mut prev: Option<Manifest> = None;
    for (v, _) in &listing.manifests {
        let old = manifest::read(store, ns, *v).await.ok();
        if let Some(old) = &old {
            claims.extend(old.claims.iter().copied());
            let before = prev.as_ref().filter(|p| p.version + 1 == *v);
            let claim = old.claim.unwrap_or_else(|| {
                !old.lineage()
                    .legacy_is_flush(before.map(Manifest::lineage).as_ref())
            });
            if claim {
                claims.insert(*v);
            }
        }
        prev = old;
    }
    claims.insert(version);
    let m = Manifest {
        version,
        writer_id: writer_id.to_string(),
        flushed_through: covered,
        segments: live.into_iter().map(|(s, _)| s).collect(),
        vector_dims,
        created_ms: now_ms(),
        claim: Some(true),
        claims: claims.into_iter().collect(),
        // Which flushed WAL objects are markers is not known here; GC
        // reads the small ones to tell (see `engine::gc`).
        markers_known_after: None,
        markers: Vec::new(),
    };
    manifest::commit(store, ns, &m).await?;
    let mut superseded: Vec<String> = superseded.into_iter().collect();
    superseded.sort();
    Ok(RebuildReport {
        namespace: ns.to_string(),
        manifest_version: m.version,
        flushed_through: m.flushed_through,
        segments: m.segments.iter().map(|s| s.id.clone()).collect(),
        superseded,
        unusable,
    })
}

fn meta_from_index(index: &SegmentIndex, data: &[u8]) -> SegmentMeta {
    let size = data.len() as u64;
    let index_offset = index.blocks.last().map_or(0, |b| b.offset + u64::from(b.len));
    SegmentMeta {
        id: index.segment_id.clone(),
        size,
        index_offset,
        index_len: size - crate::engine::segment::FOOTER_LEN - index_offset,
        wal_lo: index.wal_lo,
        wal_hi: index.wal_hi,
        doc_count: index.doc_count,
        tombstones: index.tombstones,
        min_id: index
            .blocks
            .first()
            .map(|b| b.first_id.to_string())
            .unwrap_or_default(),
        max_id: index
            .blocks
            .last()
            .map(|b| b.last_id.to_string())
            .unwrap_or_default(),
        replaces: index.replaces.clone(),
    }
}
