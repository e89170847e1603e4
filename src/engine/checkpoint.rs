//! Checkpoints: named, pinned points in a namespace's history
//! (DESIGN.md §3), at `<ns>/checkpoints/<name>`.
//!
//! A checkpoint names a WAL sequence and the manifest version it was taken
//! on; the state it pins is that manifest's segments plus the WAL after the
//! manifest's flushed point up to the sequence. Garbage collection keeps all
//! of those objects for as long as the checkpoint exists, whatever the
//! retention; deleting the checkpoint lets the next GC free them.
//!
//! Format: sealed (magic `REEFCKP1`) JSON of `Checkpoint`. It is written
//! create-if-absent, so two creators of one name cannot overwrite each
//! other: the second gets `CheckpointExists`.
//!
//! Safety against GC: a writer creates a checkpoint under its maintenance
//! lock, which its GC passes also hold, so its own GC cannot run between
//! choosing the state and pinning it. A checkpoint created by another
//! process (`reef checkpoint create` next to a live mount) pins a state the
//! mount's retention still keeps, as long as the retention is longer than
//! the few round trips creation takes; `create_at` re-checks after writing
//! that the pinned manifest still exists and removes the checkpoint with a
//! clear error otherwise.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::codec::{seal, unseal};
use super::layout::{checkpoint_dir, checkpoint_key, manifest_key, now_ms};
use super::{EngineError, EngineResult};
use crate::store::{ObjectStore, StoreError};

const MAGIC: &[u8; 8] = b"REEFCKP1";

/// Longest checkpoint name: one path component in the filesystem view.
pub const MAX_NAME_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub name: String,
    /// The state just after this WAL sequence was committed.
    pub seq: u64,
    /// The manifest the state is read from (its `flushed_through <= seq`).
    pub manifest_version: u64,
    pub created_ms: u64,
    /// The writer (or tool) that created it.
    pub created_by: String,
}

impl Checkpoint {
    pub fn encode(&self) -> Bytes {
        // A struct of strings and integers always serializes.
        let body = serde_json::to_vec_pretty(self).expect("checkpoint serializes");
        Bytes::from(seal(MAGIC, &body))
    }

    pub fn decode(data: Bytes, name: &str) -> Result<Checkpoint, String> {
        let body = unseal(MAGIC, data)?;
        let c: Checkpoint =
            serde_json::from_slice(&body).map_err(|e| format!("checkpoint JSON: {e}"))?;
        if c.name != name {
            return Err(format!("holds checkpoint {:?}, expected {name:?}", c.name));
        }
        Ok(c)
    }
}

/// Checkpoint names are object-key components and directory names under
/// `.snapshots/`, so they must be safe as both.
pub fn check_name(name: &str) -> EngineResult<()> {
    let bad = |why: &'static str| {
        Err(EngineError::BadCheckpointName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return bad("it is longer than 255 bytes");
    }
    if name.starts_with('.') {
        return bad("it starts with '.'");
    }
    if name.contains(['/', '\\', '\0']) || name.chars().any(char::is_control) {
        return bad("it contains '/', '\\', NUL or control characters");
    }
    Ok(())
}

/// Writes checkpoint `name` of the state (`manifest_version`, `seq`).
/// The caller guarantees that state is committed and retained.
pub async fn create_at(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    name: &str,
    manifest_version: u64,
    seq: u64,
    created_by: &str,
) -> EngineResult<Checkpoint> {
    check_name(name)?;
    let cp = Checkpoint {
        name: name.to_string(),
        seq,
        manifest_version,
        created_ms: now_ms(),
        created_by: created_by.to_string(),
    };
    let key = checkpoint_key(ns, name);
    match store.put_if_absent(&key, cp.encode()).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists(_)) => {
            return Err(EngineError::CheckpointExists {
                ns: ns.to_string(),
                name: name.to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    }
    // A GC pass that listed checkpoints before ours existed may have freed
    // the manifest meanwhile; then the checkpoint pins nothing and must go.
    match store.get(&manifest_key(ns, manifest_version)).await {
        Ok(_) => Ok(cp),
        Err(e) if e.is_not_found() => {
            store.delete(&key).await?;
            Err(EngineError::WriteFailed {
                ns: ns.to_string(),
                message: format!(
                    "manifest {manifest_version} was garbage-collected while checkpoint {name:?} was created; try again"
                ),
            })
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn read(store: &Arc<dyn ObjectStore>, ns: &str, name: &str) -> EngineResult<Checkpoint> {
    check_name(name)?;
    let key = checkpoint_key(ns, name);
    let data = match store.get(&key).await {
        Ok(d) => d,
        Err(e) if e.is_not_found() => {
            return Err(EngineError::NoSuchCheckpoint {
                ns: ns.to_string(),
                name: name.to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    Checkpoint::decode(data, name).map_err(|reason| EngineError::Corrupt { key, reason })
}

/// Every checkpoint of `ns`, by name. A corrupt one is an error naming it:
/// skipping it would let GC free the state it pins.
pub async fn list(store: &Arc<dyn ObjectStore>, ns: &str) -> EngineResult<Vec<Checkpoint>> {
    let dir = checkpoint_dir(ns);
    let mut names: Vec<String> = store
        .list(&dir, None)
        .await?
        .into_iter()
        .filter_map(|m| m.key.strip_prefix(&dir).map(str::to_string))
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let key = checkpoint_key(ns, &name);
        let data = store.get(&key).await?;
        out.push(
            Checkpoint::decode(data, &name)
                .map_err(|reason| EngineError::Corrupt { key, reason })?,
        );
    }
    Ok(out)
}

/// Deletes checkpoint `name`; its objects are freed by the next GC.
pub async fn delete(store: &Arc<dyn ObjectStore>, ns: &str, name: &str) -> EngineResult<()> {
    // Reading first gives a clear error for a missing name (a delete of a
    // missing key succeeds silently); a corrupt one can still be deleted.
    match read(store, ns, name).await {
        Ok(_) | Err(EngineError::Corrupt { .. }) => {}
        Err(e) => return Err(e),
    }
    store.delete(&checkpoint_key(ns, name)).await?;
    Ok(())
}

impl super::Engine {
    /// Creates checkpoint `name` of this engine's current state: every write
    /// acknowledged so far. Works on followers too (it writes only the
    /// checkpoint object).
    pub async fn create_checkpoint(&self, name: &str) -> EngineResult<Checkpoint> {
        check_name(name)?;
        let inner = &self.inner;
        // GC passes of this engine hold the same lock, so none can free the
        // state between reading it and pinning it.
        let _maintenance = inner.maintenance.lock().await;
        let (version, seq) = {
            let st = inner.state.read();
            (st.manifest.version, st.last_seq)
        };
        create_at(&inner.store, &inner.ns, name, version, seq, &inner.writer_id).await
    }

    pub async fn list_checkpoints(&self) -> EngineResult<Vec<Checkpoint>> {
        list(&self.inner.store, &self.inner.ns).await
    }

    /// Deletes checkpoint `name`; the next GC frees what only it pinned.
    pub async fn delete_checkpoint(&self, name: &str) -> EngineResult<()> {
        delete(&self.inner.store, &self.inner.ns, name).await
    }
}
