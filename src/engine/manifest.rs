//! Manifests: immutable, versioned objects at `<ns>/manifest/<version>`; the
//! newest valid version is the namespace's state. A commit writes version
//! N+1 with create-if-absent, so of two writers racing to commit exactly one
//! wins and the other is fenced.
//!
//! Format: sealed (magic `REEFMAN1`) JSON of `Manifest`, human-readable for
//! operators who inspect a bucket by hand.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::codec::{seal, unseal, DecodeError};
use super::layout::{manifest_dir, manifest_key, parse_numbered};
use super::segment::SegmentMeta;
use super::{EngineError, EngineResult};
use crate::store::{ObjectStore, StoreError};

const MAGIC: &[u8; 8] = b"REEFMAN1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Manifest {
    pub version: u64,
    /// The writer that committed this version.
    pub writer_id: String,
    /// Every WAL sequence up to here is contained in `segments`.
    pub flushed_through: u64,
    /// Newest first: on the same id, an earlier segment wins.
    pub segments: Vec<SegmentMeta>,
    pub vector_dims: Option<usize>,
    pub created_ms: u64,
    /// `Some(true)`: this version is a writer's claim (its first commit
    /// after fencing the WAL at open). Garbage collection never deletes a
    /// claim: it is the next manifest version of whichever writer it fenced
    /// (see `gc`). `None`: a *legacy* manifest, written before this field
    /// existed, which may be a claim; `Manifest::legacy_is_flush` tells the
    /// ones that certainly are not.
    #[serde(default)]
    pub claim: Option<bool>,
    /// Versions of every claim in this manifest's history, so GC knows them
    /// without reading each one again.
    #[serde(default)]
    pub claims: Vec<u64>,
    /// When `Some(x)`: every FENCE or VOID WAL object with a sequence in
    /// `(x, flushed_through]` is listed in `markers`, so GC tells them from
    /// batches without reading them. `None` (older or rebuilt manifests):
    /// unknown, GC reads small WAL objects to check.
    #[serde(default)]
    pub markers_known_after: Option<u64>,
    #[serde(default)]
    pub markers: Vec<u64>,
}

impl Manifest {
    pub fn encode(&self) -> Bytes {
        // Serializing plain structs of strings and integers cannot fail.
        let body = serde_json::to_vec_pretty(self).expect("manifest serializes");
        Bytes::from(seal(MAGIC, &body))
    }

    pub fn decode(data: Bytes, version: u64) -> Result<Manifest, DecodeError> {
        let body = unseal(MAGIC, data)?;
        let m: Manifest =
            serde_json::from_slice(&body).map_err(|e| format!("manifest JSON: {e}"))?;
        if m.version != version {
            return Err(format!("holds version {}, expected {version}", m.version));
        }
        // Readers fetch `index_offset..index_offset + index_len` and the
        // footer after it: numbers that do not add up are refused here.
        for s in &m.segments {
            let end = s
                .index_offset
                .checked_add(s.index_len)
                .and_then(|e| e.checked_add(super::segment::FOOTER_LEN));
            if end != Some(s.size) {
                return Err(format!(
                    "segment {}: index at {}+{} and a footer do not end at its size {}",
                    s.id, s.index_offset, s.index_len, s.size
                ));
            }
        }
        Ok(m)
    }

    /// The next version, as committed by `writer_id`.
    pub fn successor(&self, writer_id: &str) -> Manifest {
        Manifest {
            version: self.version + 1,
            writer_id: writer_id.to_string(),
            created_ms: super::layout::now_ms(),
            claim: Some(false),
            ..self.clone()
        }
    }

    /// The next version as a new writer's claim on the namespace.
    pub fn claim_successor(&self, writer_id: &str) -> Manifest {
        let mut next = self.successor(writer_id);
        next.claim = Some(true);
        next.claims.push(next.version);
        // The new writer learns every marker above the flushed point by
        // replaying it; below it, only what this manifest already knew.
        next.markers_known_after = match self.markers_known_after {
            Some(x) => Some(x),
            None if self.version == 0 => Some(0),
            None => Some(self.flushed_through),
        };
        next
    }
}

/// What tells a legacy claim from a flush (`Manifest::legacy_is_flush`).
#[derive(Debug, PartialEq, Eq)]
pub struct Lineage<'a> {
    pub writer_id: &'a str,
    pub flushed_through: u64,
    pub segments: Vec<&'a str>,
}

impl Lineage<'_> {
    /// Whether a legacy manifest with this lineage certainly is not a
    /// claim, given its predecessor's (version - 1; `None` when it is gone
    /// or unreadable). Before the `claim` field, a writer's first commit
    /// was either an open's claim, a copy of its predecessor's segments and
    /// flushed point, or a repair or rebuild-manifest commit, under a
    /// writer id of its own (`reef-<op>-<pid>-<random>`). So a version that
    /// differs from its predecessor in content, committed by the same
    /// writer id, was that writer's later commit (a flush or compaction),
    /// not a claim: no writer's next slot, and GC may delete it like any
    /// replaced manifest. Anything else may be a claim and is kept.
    pub fn legacy_is_flush(&self, prev: Option<&Lineage<'_>>) -> bool {
        prev.is_some_and(|p| {
            p.writer_id == self.writer_id
                && (p.flushed_through != self.flushed_through || p.segments != self.segments)
        })
    }
}

impl Manifest {
    /// May be a claim: a claim, or a legacy manifest (unknown).
    pub fn may_be_claim(&self) -> bool {
        self.claim != Some(false)
    }

    pub fn lineage(&self) -> Lineage<'_> {
        Lineage {
            writer_id: &self.writer_id,
            flushed_through: self.flushed_through,
            segments: self.segments.iter().map(|s| s.id.as_str()).collect(),
        }
    }
}

/// Versions of every manifest object of `ns`, oldest first.
pub async fn list_versions(store: &Arc<dyn ObjectStore>, ns: &str) -> EngineResult<Vec<u64>> {
    let dir = manifest_dir(ns);
    let mut versions: Vec<u64> = store
        .list(&dir, None)
        .await?
        .iter()
        .filter_map(|m| parse_numbered(&dir, &m.key))
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

pub async fn read(store: &Arc<dyn ObjectStore>, ns: &str, version: u64) -> EngineResult<Manifest> {
    let key = manifest_key(ns, version);
    let data = store.get(&key).await?;
    Manifest::decode(data, version).map_err(|reason| EngineError::Corrupt { key, reason })
}

/// The newest manifest, or `None` for a namespace that was never created.
/// A corrupt newest manifest is an error, never skipped: an older one would
/// silently lose the segments committed since.
pub async fn load_latest(store: &Arc<dyn ObjectStore>, ns: &str) -> EngineResult<Option<Manifest>> {
    match list_versions(store, ns).await?.last() {
        None => Ok(None),
        Some(&v) => read(store, ns, v).await.map(Some),
    }
}

/// Commits `m` (create-if-absent at its version, an ambiguous answer
/// settled by `create_resolved`). Losing the race means another writer owns
/// the namespace now.
pub async fn commit(store: &Arc<dyn ObjectStore>, ns: &str, m: &Manifest) -> EngineResult<()> {
    let key = manifest_key(ns, m.version);
    match crate::store::create_resolved(&**store, &key, m.encode()).await {
        Ok(()) => Ok(()),
        Err(StoreError::AlreadyExists(_)) => {
            let by = match read(store, ns, m.version).await {
                Ok(other) => other.writer_id,
                Err(_) => "unknown".to_string(),
            };
            Err(EngineError::Fenced {
                ns: ns.to_string(),
                by,
            })
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::Lineage;

    fn lineage<'a>(writer_id: &'a str, flushed_through: u64, segments: &[&'a str]) -> Lineage<'a> {
        Lineage {
            writer_id,
            flushed_through,
            segments: segments.to_vec(),
        }
    }

    #[test]
    fn only_a_later_commit_of_the_same_writer_is_certainly_a_legacy_flush() {
        let prev = lineage("a", 5, &["s1"]);
        // A flush and a compaction by the writer of the version before.
        assert!(lineage("a", 9, &["s2", "s1"]).legacy_is_flush(Some(&prev)));
        assert!(lineage("a", 5, &["s3"]).legacy_is_flush(Some(&prev)));
        // An open's claim copies its predecessor, whoever opened.
        assert!(!lineage("a", 5, &["s1"]).legacy_is_flush(Some(&prev)));
        assert!(!lineage("b", 5, &["s1"]).legacy_is_flush(Some(&prev)));
        // A repair or rebuild commit: its own writer id, any content.
        assert!(!lineage("reef-rebuild-1-2", 9, &["s2"]).legacy_is_flush(Some(&prev)));
        // Nothing to compare with: maybe a claim.
        assert!(!lineage("a", 9, &["s2"]).legacy_is_flush(None));
    }
}
