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
//! # Safety against GC (the argument)
//!
//! A checkpoint must never name a state GC has started to free. Two kinds
//! of creator exist:
//!
//! - **The writer** (`mkdir .snapshots/NAME` on the mount that holds the
//!   namespace, `Engine::create_checkpoint` on a writer) creates it under
//!   its maintenance lock, which its GC passes also hold, so its own GC
//!   cannot run between choosing the state and pinning it. The GC of a
//!   zombie writer deletes only below its own, older state (see `gc`).
//! - **Any other process** (`reef checkpoint create`, a follower mount)
//!   cannot take the writer's lock, and GC with `retain=0` frees an old
//!   state as soon as a newer one is committed. Checking after writing does
//!   not help: a pass that listed the checkpoints before the write may
//!   delete after the check. So such a creator *pins before it reads*
//!   (`Engine::create_checkpoint` on a read-only engine):
//!   1. it writes the checkpoint create-if-absent as **pending**, naming
//!      `floor`, the newest manifest version it has seen;
//!   2. it then reads the newest committed state `(v, s)` (`refresh`:
//!      a LIST of the manifests, the newest one, the WAL after it);
//!   3. it overwrites the pending checkpoint with the final one, `(v, s)`.
//!
//!   Take any GC pass, committed on manifest `C` (GC only runs right after
//!   its writer committed `C`) and listing the checkpoints at time `t`:
//!   - it saw nothing: the pending put had not completed at `t`, while
//!     `C`'s commit had, so the LIST of step 2 (after the pending put)
//!     finds `C` or newer: `v >= C`. The pass deletes only manifests older
//!     than its horizon `<= C`, segments only such manifests name (a
//!     segment, once replaced, is never named again) and WAL at or below
//!     `C.flushed_through <= v.flushed_through`: nothing `(v, s)` needs;
//!   - it saw the pending one: GC keeps every manifest from `floor` on,
//!     their segments and the WAL after `floor`'s flushed point; `v` was
//!     read after `floor` was seen, so `v >= floor`: all of `(v, s)` stays;
//!   - it saw the final one: it keeps `(v, s)` like any checkpoint.
//!
//!   No clock is involved. A creator that dies between steps 1 and 3 leaves
//!   a pending checkpoint, which `reef checkpoint list` shows, GC keeps
//!   honouring (its report names it) and `reef checkpoint delete` removes;
//!   it cannot be opened (`CheckpointPending`).

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
    /// Still being created by a process that does not hold the namespace
    /// (see "Safety against GC"): `manifest_version` is then the floor GC
    /// keeps every manifest from, and `seq` means nothing. Final
    /// checkpoints omit the field, so their format is unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
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
        pending: false,
    };
    let key = checkpoint_key(ns, name);
    put_new(store, ns, &cp).await?;
    // The writer's own GC cannot have run (maintenance lock). For a past
    // view, another process's GC may have freed its manifest (a pin only
    // protects within this process): refuse then. Best effort only: a pass
    // that listed the checkpoints before ours may still delete after this
    // check, which is why followers create theirs pending-first instead.
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

/// Writes `cp` create-if-absent; its name taken is `CheckpointExists`.
/// (Not `create_resolved`: two creates of one name by one creator within a
/// millisecond encode identically, and the second must be refused.)
async fn put_new(store: &Arc<dyn ObjectStore>, ns: &str, cp: &Checkpoint) -> EngineResult<()> {
    let key = checkpoint_key(ns, &cp.name);
    match store.put_if_absent(&key, cp.encode()).await {
        Ok(()) => Ok(()),
        Err(StoreError::AlreadyExists(_)) => Err(EngineError::CheckpointExists {
            ns: ns.to_string(),
            name: cp.name.clone(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Checkpoint `name`; a pending one is `CheckpointPending` (it pins no
/// state that can be opened yet).
pub async fn read(store: &Arc<dyn ObjectStore>, ns: &str, name: &str) -> EngineResult<Checkpoint> {
    let cp = read_any(store, ns, name).await?;
    if cp.pending {
        return Err(EngineError::CheckpointPending {
            ns: ns.to_string(),
            name: name.to_string(),
        });
    }
    Ok(cp)
}

/// Checkpoint `name`, pending or not.
async fn read_any(store: &Arc<dyn ObjectStore>, ns: &str, name: &str) -> EngineResult<Checkpoint> {
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

/// Every finished checkpoint of `ns`, by name (those that can be opened).
pub async fn list(store: &Arc<dyn ObjectStore>, ns: &str) -> EngineResult<Vec<Checkpoint>> {
    let mut all = list_all(store, ns).await?;
    all.retain(|c| !c.pending);
    Ok(all)
}

/// Every checkpoint of `ns`, pending ones included, by name. A corrupt one
/// is an error naming it: skipping it would let GC free the state it pins.
pub async fn list_all(store: &Arc<dyn ObjectStore>, ns: &str) -> EngineResult<Vec<Checkpoint>> {
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
        let data = match store.get(&key).await {
            Ok(data) => data,
            // Deleted since the listing (a failed create cleans up): it
            // pins nothing.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
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
    match read_any(store, ns, name).await {
        Ok(_) | Err(EngineError::Corrupt { .. }) => {}
        Err(e) => return Err(e),
    }
    store.delete(&checkpoint_key(ns, name)).await?;
    Ok(())
}

impl super::Engine {
    /// Creates checkpoint `name` of this engine's current state: every write
    /// acknowledged so far. On a follower (read-only, not a past view) it is
    /// the newest committed state, read after pinning (see "Safety against
    /// GC"); it writes only the checkpoint object.
    pub async fn create_checkpoint(&self, name: &str) -> EngineResult<Checkpoint> {
        check_name(name)?;
        let inner = &self.inner;
        if inner.opts.read_only && !inner.pinned {
            return self.create_checkpoint_detached(name).await;
        }
        // GC passes of this engine hold the same lock, so none can free the
        // state between reading it and pinning it.
        let _maintenance = inner.maintenance.lock().await;
        let (version, seq) = {
            let st = inner.state.read();
            (st.manifest.version, st.last_seq)
        };
        create_at(&inner.store, &inner.ns, name, version, seq, &inner.writer_id).await
    }

    /// Pending checkpoint, then the newest state, then the final checkpoint.
    async fn create_checkpoint_detached(&self, name: &str) -> EngineResult<Checkpoint> {
        let inner = &self.inner;
        let (store, ns) = (&inner.store, inner.ns.as_str());
        let pending = Checkpoint {
            name: name.to_string(),
            seq: 0,
            manifest_version: inner.state.read().manifest.version,
            created_ms: now_ms(),
            created_by: inner.writer_id.clone(),
            pending: true,
        };
        put_new(store, ns, &pending).await?;
        let finish = async {
            self.refresh().await?;
            let (manifest_version, seq) = {
                let st = inner.state.read();
                (st.manifest.version, st.last_seq)
            };
            let cp = Checkpoint {
                seq,
                manifest_version,
                created_ms: now_ms(),
                pending: false,
                ..pending.clone()
            };
            // Overwrites our own pending object: nobody else writes it.
            store.put(&checkpoint_key(ns, name), cp.encode()).await?;
            Ok::<_, EngineError>(cp)
        };
        match finish.await {
            Ok(cp) => Ok(cp),
            Err(e) => {
                if let Err(del) = store.delete(&checkpoint_key(ns, name)).await {
                    log::warn!(
                        "namespace {ns}: checkpoint {name:?} stays pending after a failed create ({del}); `reef checkpoint delete` removes it"
                    );
                }
                Err(e)
            }
        }
    }

    pub async fn list_checkpoints(&self) -> EngineResult<Vec<Checkpoint>> {
        list(&self.inner.store, &self.inner.ns).await
    }

    /// Deletes checkpoint `name`; the next GC frees what only it pinned.
    pub async fn delete_checkpoint(&self, name: &str) -> EngineResult<()> {
        delete(&self.inner.store, &self.inner.ns, name).await
    }
}
