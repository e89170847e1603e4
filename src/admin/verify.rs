//! `verify`: read every manifest, segment and WAL object of a namespace,
//! check formats and checksums, and name every problem and orphan.
//!
//! Objects are fetched several at a time and checked in key order (so the
//! report reads the same as a one-at-a-time pass): a remote store answers
//! each GET in milliseconds to tens of milliseconds, and a namespace that
//! retains an hour of writes holds thousands of WAL objects. Read one at a
//! time, 8,000 of them took about 45 s against moto on loopback, which was
//! most of every S3 round of the crash soak. At most `SMALL_IN_FLIGHT`
//! manifests or WAL objects are held at once.
//!
//! Memory: segments are read in ranged GETs of at most `READ_CHUNK_BYTES`
//! (or one block, if larger) and checked block by block (`SegmentCheck`),
//! so verifying a namespace of any size holds one chunk of one segment,
//! one WAL object (bounded by the writer's group size) and the listing's
//! keys, never a whole segment.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;

use super::{list_namespace, named_segments, wal_gap, AdminResult, Issue};
use crate::engine::checkpoint;
use crate::engine::layout::{checkpoint_key, segment_key};
use crate::engine::manifest::Manifest;
use crate::engine::segment::{SegmentCheck, SegmentIndex, FOOTER_LEN};
use crate::engine::wal::WalRecord;
use crate::store::{ObjectStore, StoreError, StoreResult};

/// Most bytes of consecutive blocks verify reads in one GET.
pub const READ_CHUNK_BYTES: u64 = 1 << 20;

/// Manifests and WAL objects (small) fetched at once.
const SMALL_IN_FLIGHT: usize = 32;

/// Fetches `items`' keys `in_flight` at a time, yielding in `items` order.
/// Items are owned (not borrowed from the listing) so that the stream is
/// `Send` for any caller, the FUSE adapter's tasks included.
fn fetch_in_order<T: Send + 'static>(
    store: &Arc<dyn ObjectStore>,
    items: Vec<(T, String)>,
    in_flight: usize,
) -> impl Stream<Item = (T, String, StoreResult<Bytes>)> + Send + 'static {
    let store = store.clone();
    futures::stream::iter(items)
        .map(move |(item, key)| {
            let store = store.clone();
            async move {
                let data = store.get(&key).await;
                (item, key, data)
            }
        })
        .buffered(in_flight)
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub namespace: String,
    /// No issues (orphans are garbage, not damage, and do not count).
    pub healthy: bool,
    pub issues: Vec<Issue>,
    /// Segments no manifest names, and junk; `repair` deletes them.
    pub orphan_files: Vec<String>,
    pub manifest_version: Option<u64>,
    pub flushed_through: Option<u64>,
    pub manifests_checked: usize,
    pub segments_checked: usize,
    pub wal_objects_checked: usize,
    pub quarantined_objects: usize,
    pub checkpoints: Vec<String>,
    pub live_documents_in_segments: u64,
}

pub async fn verify(store: Arc<dyn ObjectStore>, ns: &str) -> AdminResult<VerifyReport> {
    verify_with_progress(store, ns, &|_, _| {}).await
}

/// `verify`, calling `progress(objects read, objects to read)` as it goes,
/// so a command line can show how far a long check has got.
pub async fn verify_with_progress(
    store: Arc<dyn ObjectStore>,
    ns: &str,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> AdminResult<VerifyReport> {
    let listing = list_namespace(&store, ns).await?;
    let total = (listing.manifests.len() + listing.segments.len() + listing.wal.len()) as u64;
    let mut done = 0u64;
    let mut tick = || {
        done += 1;
        progress(done, total);
    };
    let mut issues = Vec::new();
    let mut issue = |object: &str, problem: String| {
        issues.push(Issue {
            object: object.to_string(),
            problem,
        })
    };

    let mut newest: Option<Manifest> = None;
    let manifests = listing.manifests.iter().enumerate();
    let manifests = manifests.map(|(i, (version, key))| ((i, *version), key.clone()));
    let mut fetched = fetch_in_order(&store, manifests.collect(), SMALL_IN_FLIGHT);
    while let Some(((i, version), key, data)) = fetched.next().await {
        let key = &key;
        let is_newest = i + 1 == listing.manifests.len();
        tick();
        match data {
            Ok(data) => match Manifest::decode(data, version) {
                Ok(m) if is_newest => newest = Some(m),
                Ok(_) => {}
                Err(reason) => issue(
                    key,
                    if is_newest {
                        format!("newest manifest is corrupt ({reason}); `reef repair` rebuilds it")
                    } else {
                        format!("corrupt old manifest ({reason})")
                    },
                ),
            },
            Err(e) => issue(key, format!("unreadable: {e}")),
        }
    }
    if listing.manifests.is_empty() && !(listing.segments.is_empty() && listing.wal.is_empty()) {
        issue(
            &format!("{ns}/manifest/"),
            "no manifest; `reef rebuild-manifest` recreates it".into(),
        );
    }

    let referenced: HashSet<String> = named_segments(&store, ns, &listing)
        .await
        .iter()
        .map(|id| segment_key(ns, id))
        .collect();
    for name in &listing.checkpoints {
        match checkpoint::read(&store, ns, name).await {
            Ok(cp)
                if listing
                    .manifests
                    .iter()
                    .any(|(v, _)| *v == cp.manifest_version) => {}
            Ok(cp) => issue(
                &checkpoint_key(ns, name),
                format!("pins manifest {}, which is missing", cp.manifest_version),
            ),
            // Being created by another process (or abandoned): it pins no
            // openable state yet, and GC keeps what it may need.
            Err(crate::engine::EngineError::CheckpointPending { .. }) => {}
            Err(e) => issue(&checkpoint_key(ns, name), e.to_string()),
        }
    }
    let mut live_docs = 0;
    let mut segments_checked = 0;
    if let Some(m) = &newest {
        let sizes: std::collections::HashMap<&str, u64> = listing
            .segments
            .iter()
            .map(|(k, size)| (k.as_str(), *size))
            .collect();
        for seg in &m.segments {
            let key = segment_key(ns, &seg.id);
            segments_checked += 1;
            tick();
            match sizes.get(key.as_str()) {
                None => issue(&key, "referenced by the manifest but missing".into()),
                Some(size) if *size != seg.size => {
                    issue(&key, format!("is {size} bytes, the manifest says {}", seg.size))
                }
                Some(size) => match check_segment(&store, &key, *size).await {
                    Ok(index) if index.segment_id != seg.id => {
                        issue(&key, format!("holds segment {}", index.segment_id))
                    }
                    Ok(index) => live_docs += index.doc_count,
                    Err(SegmentProblem::Unreadable(e)) if e.is_not_found() => {
                        issue(&key, "referenced by the manifest but missing".into())
                    }
                    Err(SegmentProblem::Unreadable(e)) => issue(&key, format!("unreadable: {e}")),
                    Err(SegmentProblem::Corrupt(reason)) => {
                        issue(&key, format!("corrupt segment: {reason}"))
                    }
                },
            }
        }
    }
    let mut orphan_files: Vec<String> = listing
        .segments
        .iter()
        .filter(|(k, _)| !referenced.contains(k))
        .map(|(k, _)| k.clone())
        .collect();
    orphan_files.extend(listing.unknown.iter().cloned());

    let flushed = newest.as_ref().map_or(0, |m| m.flushed_through);
    let mut expected = None;
    let mut fetched = fetch_in_order(&store, listing.wal.clone(), SMALL_IN_FLIGHT);
    while let Some((seq, key, data)) = fetched.next().await {
        let key = &key;
        if let Some((from, to)) = expected.and_then(|exp| wal_gap(exp, seq, flushed)) {
            issue(key, format!("WAL objects {from} to {to} are missing"));
        }
        expected = Some(seq + 1);
        tick();
        match data {
            Ok(data) => {
                if let Err(reason) = WalRecord::decode(data, seq) {
                    issue(key, format!("corrupt WAL object: {reason}"));
                }
            }
            Err(e) => issue(key, format!("unreadable: {e}")),
        }
    }

    Ok(VerifyReport {
        namespace: ns.to_string(),
        healthy: issues.is_empty(),
        issues,
        orphan_files,
        manifest_version: newest.as_ref().map(|m| m.version),
        flushed_through: newest.as_ref().map(|m| m.flushed_through),
        manifests_checked: listing.manifests.len(),
        segments_checked,
        wal_objects_checked: listing.wal.len(),
        quarantined_objects: listing.quarantined,
        checkpoints: listing.checkpoints.clone(),
        live_documents_in_segments: live_docs,
    })
}

enum SegmentProblem {
    Unreadable(StoreError),
    Corrupt(String),
}

impl From<StoreError> for SegmentProblem {
    fn from(e: StoreError) -> Self {
        SegmentProblem::Unreadable(e)
    }
}

/// Checks the `size`-byte segment at `key` by ranged reads: footer, index,
/// then runs of consecutive blocks of at most `READ_CHUNK_BYTES`.
async fn check_segment(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    size: u64,
) -> Result<SegmentIndex, SegmentProblem> {
    let corrupt = |reason: String| SegmentProblem::Corrupt(reason);
    if size < FOOTER_LEN {
        return Err(corrupt("too short to be a segment".into()));
    }
    let footer = store.get_range(key, size - FOOTER_LEN..size).await?;
    let range = SegmentCheck::index_range(size, &footer).map_err(corrupt)?;
    let index = store.get_range(key, range.clone()).await?;
    let mut check = SegmentCheck::new(range.start, index).map_err(corrupt)?;
    while let Some(first) = check.remaining().first() {
        let start = first.offset;
        let end = check
            .remaining()
            .iter()
            .map(|b| b.offset + u64::from(b.len))
            .take_while(|end| end - start <= READ_CHUNK_BYTES)
            .last()
            .unwrap_or(start + u64::from(first.len));
        let chunk = store.get_range(key, start..end).await?;
        if chunk.len() as u64 != end - start {
            return Err(corrupt(format!("short read at bytes {start}..{end}")));
        }
        while let Some(b) = check.remaining().first() {
            let (lo, hi) = (b.offset - start, b.offset + u64::from(b.len) - start);
            if hi > chunk.len() as u64 {
                break;
            }
            check
                .add_block(chunk.slice(lo as usize..hi as usize))
                .map_err(corrupt)?;
        }
    }
    check.finish().map_err(corrupt)
}
