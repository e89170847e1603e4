//! Offline administration of a namespace, from the store alone (no `Engine`):
//! `verify` reads and checks every object, `repair` sets damage aside and
//! removes garbage, `rebuild_manifest` recreates a lost or corrupt manifest
//! from segments and the WAL.
//!
//! `repair` and `rebuild_manifest` first fence the namespace exactly as a
//! new writer would (a WAL marker, then a manifest claim), so a live writer
//! stops instead of racing them; its mount reports the takeover.

mod rebuild;
mod repair;
mod verify;

use std::sync::Arc;

use serde::Serialize;

pub use rebuild::{rebuild_manifest, RebuildReport};
pub use repair::{repair, RepairReport};
pub use verify::{verify, verify_with_progress, VerifyReport};

use crate::engine::layout::{
    checkpoint_dir, manifest_dir, parse_numbered, random_u64, segment_dir, wal_dir, wal_key,
};
use crate::engine::wal::{WalKind, WalRecord};
use crate::engine::EngineError;
use crate::store::{ObjectStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("namespace {0} has a writer that keeps advancing; stop it (unmount) and retry")]
    Busy(String),
}

pub type AdminResult<T> = Result<T, AdminError>;

/// One concrete problem, named by the object it is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub object: String,
    pub problem: String,
}

/// A namespace's objects, sorted by kind.
#[derive(Debug, Default)]
struct Listing {
    /// (version, key), oldest first.
    manifests: Vec<(u64, String)>,
    /// (key, size)
    segments: Vec<(String, u64)>,
    /// (sequence, key), oldest first.
    wal: Vec<(u64, String)>,
    quarantined: usize,
    /// Checkpoint names.
    checkpoints: Vec<String>,
    /// Keys that are none of the above (junk in reef's directories).
    unknown: Vec<String>,
}

async fn list_namespace(store: &Arc<dyn ObjectStore>, ns: &str) -> AdminResult<Listing> {
    let mut l = Listing::default();
    let (mdir, sdir, wdir) = (manifest_dir(ns), segment_dir(ns), wal_dir(ns));
    let qdir = format!("{ns}/quarantine/");
    let cdir = checkpoint_dir(ns);
    for meta in store.list(&format!("{ns}/"), None).await? {
        let key = meta.key;
        if let Some(v) = parse_numbered(&mdir, &key) {
            l.manifests.push((v, key));
        } else if let Some(s) = parse_numbered(&wdir, &key) {
            l.wal.push((s, key));
        } else if key.starts_with(&sdir) && !key[sdir.len()..].contains('/') {
            l.segments.push((key, meta.size));
        } else if key.starts_with(&qdir) {
            l.quarantined += 1;
        } else if let Some(name) = key.strip_prefix(&cdir) {
            l.checkpoints.push(name.to_string());
        } else {
            l.unknown.push(key);
        }
    }
    l.manifests.sort();
    l.wal.sort();
    Ok(l)
}

fn admin_writer_id(op: &str) -> String {
    format!("reef-{op}-{}-{:08x}", std::process::id(), random_u64() as u32)
}

/// Writes a fence marker after the newest WAL object, so a live writer's
/// next WAL put fails. Returns its sequence.
async fn fence_wal(store: &Arc<dyn ObjectStore>, ns: &str, writer_id: &str) -> AdminResult<u64> {
    let dir = wal_dir(ns);
    for _ in 0..8 {
        let last = store
            .list(&dir, None)
            .await?
            .iter()
            .filter_map(|m| parse_numbered(&dir, &m.key))
            .max()
            .unwrap_or(0);
        let seq = last + 1;
        let marker = WalRecord::marker(writer_id, seq, WalKind::Fence, None);
        match store.put_if_absent(&wal_key(ns, seq), marker.encode()).await {
            Ok(()) => return Ok(seq),
            Err(StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AdminError::Busy(ns.to_string()))
}

/// The WAL sequences missing between the previous object seen (`expected`
/// is one past it) and `seq`, counting only those above the flushed point:
/// GC deletes flushed WAL, so holes at or below it are normal.
fn wal_gap(expected: u64, seq: u64, flushed_through: u64) -> Option<(u64, u64)> {
    let from = expected.max(flushed_through + 1);
    (seq > from).then(|| (from, seq - 1))
}

/// Segment ids some manifest or checkpoint of the namespace still names:
/// not orphans, even when the newest manifest no longer uses them
/// (retained history, see `engine::gc`).
async fn named_segments(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    listing: &Listing,
) -> std::collections::HashSet<String> {
    let mut named = std::collections::HashSet::new();
    for (version, _) in &listing.manifests {
        if let Ok(m) = crate::engine::manifest::read(store, ns, *version).await {
            named.extend(m.segments.into_iter().map(|s| s.id));
        }
    }
    named
}

fn quarantine_stamp() -> String {
    format!("{:020}", crate::engine::layout::now_ms())
}
