//! The write path: validation, group commit, and the put of a WAL object.
//!
//! Writers queue their batch and wait for its answer. One committer task
//! per namespace, running while batches are queued, takes them (up to
//! `GROUP_BYTES`) as one group whenever a pipeline slot is free, resolves
//! them and launches their WAL put: writes that arrive while puts are in
//! flight form the next groups, up to `wal::PIPELINE_DEPTH` of them in
//! flight at once. Each writer is answered only after its group and every
//! earlier one are durable (`pipeline`). Since launching runs in that task,
//! a caller that gives up mid-way (a cancelled FUSE request) cannot leave
//! the sequence half-advanced.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::layout::{now_ms, wal_key};
use super::stamp;
use super::wal::{WalKind, WalOp, WalRecord};
use super::{Engine, EngineError, EngineResult, Inner, WriteAck};
use crate::store::StoreError;
use crate::types::{DocId, Document, Op, Patch, TypeError, WriteBatch};

/// An op checked against the limits, with its JSON rendered (or, for
/// `PutJson`, validated) up front so the commit lock is not held for that.
enum Prepared {
    Put {
        id: DocId,
        json: Bytes,
        dims: Option<usize>,
        /// A stamp (see `stamp`); `None`: the group's time.
        mtime: Option<u64>,
    },
    Patch(Patch),
    SetMtime {
        id: DocId,
        mtime: u64,
    },
    Delete(DocId),
}

pub(super) struct Pending {
    ops: Vec<Prepared>,
    /// JSON bytes of the batch, to bound the size of a group.
    bytes: usize,
    reply: oneshot::Sender<EngineResult<WriteAck>>,
}

impl Engine {
    /// Applies `batch` atomically. Returns once it is durable in the WAL;
    /// on error nothing of it is visible, now or after a restart.
    pub async fn write(&self, batch: WriteBatch) -> EngineResult<WriteAck> {
        let inner = &self.inner;
        inner.check_writable()?;
        inner.counters.write_calls.fetch_add(1, Ordering::Relaxed);
        let ops = prepare(inner, batch)?;
        self.wait_for_memtable_room().await;
        let bytes = ops.iter().map(Prepared::json_len).sum();
        let max = inner.opts.limits.max_batch_bytes;
        if bytes > max {
            return Err(TypeError::BatchTooManyBytes { bytes, max }.into());
        }
        let (reply, answer) = oneshot::channel();
        inner.pending.lock().push(Pending { ops, bytes, reply });
        inner.ensure_committer();
        // The answer comes once our group and every earlier one are durable
        // (`pipeline`). A caller that gives up leaves its batch queued: it
        // is committed all the same, and no one is left waiting on it.
        let result = answer.await.unwrap_or_else(|_| {
            Err(EngineError::WriteFailed {
                ns: inner.ns.clone(),
                message: "the commit was abandoned".into(),
            })
        });
        if result.is_ok() {
            self.maybe_auto_flush();
        }
        result
    }

    /// Flushes in the background once the memtable or the unflushed WAL is
    /// big enough, and compacts by the size-tiered policy after each flush.
    fn maybe_auto_flush(&self) {
        if self.winding_down()
            || !self.flush_due()
            || self.inner.auto_flushing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let ns = &engine.inner.ns;
            // Writes made while a flush runs do not start another, so keep
            // going until the memtable is below the thresholds.
            let mut failed = false;
            loop {
                if let Err(e) = engine.flush().await {
                    log::warn!(
                        "namespace {ns}: automatic flush failed (the WAL still holds every write): {e}"
                    );
                    failed = true;
                    break;
                }
                // Size-tiered: a merge may complete the next tier up. A
                // memtable that filled meanwhile is flushed first: writers
                // may be waiting for room.
                for _ in 0..MAX_COMPACTIONS_PER_FLUSH {
                    if engine.flush_due() || engine.winding_down() {
                        break;
                    }
                    match engine.compact_tiered().await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            log::warn!("namespace {ns}: automatic compaction failed: {e}");
                            break;
                        }
                    }
                }
                if !engine.flush_due() || engine.winding_down() {
                    break;
                }
            }
            engine.inner.auto_flushing.store(false, Ordering::Release);
            // Writers waiting for room see that no flush is coming.
            engine.inner.flushed.notify_waiters();
            // A write that looked between our last check and the store above
            // saw a flush running and left; look once more for it. After a
            // failure the next write tries again, so a broken store is not
            // hammered.
            if !failed {
                engine.maybe_auto_flush();
            }
        });
    }

    /// Lets the automatic flush or compaction (and the GC after it) that
    /// is running finish, and starts no more: for a process done writing,
    /// before it exits. Work cut off mid-way loses nothing (the WAL holds
    /// every write) but fails with an error, and the next open replays
    /// more WAL; work not started waits for the next writer. Writes after
    /// this call are still durable, but never flushed automatically.
    pub async fn finish_background_work(&self) {
        let inner = &self.inner;
        inner.winding_down.store(true, Ordering::Release);
        loop {
            let notified = inner.flushed.notified();
            tokio::pin!(notified);
            // Registered before the check: the loop's end notifies.
            notified.as_mut().enable();
            if !inner.auto_flushing.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Backpressure (the memtable byte bound): while the memtables — the
    /// one taking writes and the one a flush is writing out — hold
    /// `MEMTABLE_BOUND_FACTOR` times the flush threshold, a new write waits
    /// for that flush. A store slower than the writers then slows the
    /// writers instead of growing the memtable without bound. With no flush
    /// running (one failed: the store is down) writes go on, so a broken
    /// store fails them at the WAL instead of hanging them.
    async fn wait_for_memtable_room(&self) {
        let inner = &self.inner;
        let Some(threshold) = inner.opts.auto_flush_bytes else {
            return;
        };
        let bound = threshold.saturating_mul(MEMTABLE_BOUND_FACTOR);
        let mut waited = false;
        loop {
            let notified = inner.flushed.notified();
            tokio::pin!(notified);
            // Registered before the checks, so a flush that ends between
            // them still wakes us.
            notified.as_mut().enable();
            if inner.state.read().memtable_bytes() < bound {
                return;
            }
            if !waited {
                waited = true;
                inner.counters.throttled_writes.fetch_add(1, Ordering::Relaxed);
                self.maybe_auto_flush();
            }
            // Still full with no flush on its way: the last one failed, and
            // this writer does not start another (the next write does).
            if !inner.auto_flushing.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    fn winding_down(&self) -> bool {
        self.inner.winding_down.load(Ordering::Acquire)
    }

    fn flush_due(&self) -> bool {
        let opts = &self.inner.opts;
        let st = self.inner.state.read();
        opts.auto_flush_bytes.is_some_and(|b| st.active.bytes >= b)
            || opts
                .auto_flush_wal_objects
                .is_some_and(|n| st.last_seq - st.manifest.flushed_through >= n)
    }
}

impl Inner {
    /// Starts the committer task unless it is running.
    fn ensure_committer(self: &Arc<Self>) {
        if !self.committing.swap(true, Ordering::SeqCst) {
            let inner = self.clone();
            tokio::spawn(async move { inner.run_committer().await });
        }
    }

    /// The one task that launches groups while batches are queued: it
    /// takes a free pipeline slot, then the queued batches as a group.
    /// Writers only queue and wait, so none of them contends for a lock,
    /// and a cancelled writer cannot leave a half-launched group behind.
    async fn run_committer(self: Arc<Self>) {
        loop {
            while !self.pending.lock().is_empty() {
                let Ok(permit) = self.slots.clone().acquire_owned().await else {
                    break;
                };
                // The settle that freed this slot woke every writer of its
                // group at once: let them queue their next batches, so they
                // share this group instead of each waiting for a later slot.
                tokio::task::yield_now().await;
                // Under the commit lock, so a flush sees the memtable
                // between launches; in its own task, so a panic fails only
                // the group it took.
                let guard = self.commit.clone().lock_owned().await;
                let inner = self.clone();
                let launched = tokio::spawn(async move {
                    let _guard = guard;
                    inner.commit_group(permit).await;
                });
                if launched.await.is_err() {
                    log::error!("namespace {}: a WAL commit task panicked", self.ns);
                }
            }
            self.committing.store(false, Ordering::SeqCst);
            // A writer that queued after our last look saw us running and
            // left its batch to us; unless a new committer took over, go on.
            if self.pending.lock().is_empty() || self.committing.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    }
}

/// Writers wait while the memtables hold this many times
/// `EngineOptions::auto_flush_bytes` (one full memtable being flushed, one
/// filling up behind it).
pub(crate) const MEMTABLE_BOUND_FACTOR: usize = 2;

/// Tiered merges one automatic flush may trigger (one per tier it fills).
const MAX_COMPACTIONS_PER_FLUSH: usize = 16;

/// Bytes of JSON after which a group stops taking queued batches; the rest
/// wait for the next WAL object. Keeps WAL objects, and replay, bounded.
const GROUP_BYTES: usize = 16 << 20;

/// The oldest queued batches up to `GROUP_BYTES` (at least one).
fn take_group(pending: &mut Vec<Pending>) -> Vec<Pending> {
    let mut bytes = 0;
    let n = pending
        .iter()
        .take_while(|p| {
            bytes += p.bytes;
            bytes <= GROUP_BYTES
        })
        .count()
        .max(1)
        .min(pending.len());
    pending.drain(..n).collect()
}

impl Prepared {
    fn json_len(&self) -> usize {
        match self {
            Prepared::Put { json, .. } => json.len(),
            Prepared::Patch(p) => p.set.len() * 16 + p.vector.as_ref().map_or(0, |v| v.len() * 8),
            Prepared::SetMtime { .. } | Prepared::Delete(_) => 0,
        }
    }
}

fn prepare(inner: &Inner, batch: WriteBatch) -> EngineResult<Vec<Prepared>> {
    let limits = &inner.opts.limits;
    if batch.ops.len() > limits.max_batch_ops {
        return Err(TypeError::BatchTooLarge {
            ops: batch.ops.len(),
            max: limits.max_batch_ops,
        }
        .into());
    }
    batch
        .ops
        .into_iter()
        .map(|op| {
            Ok(match op {
                Op::Upsert(doc) => Prepared::Put {
                    json: Bytes::from(limits.check_document(&doc)?),
                    dims: doc.vector.as_ref().map(Vec::len),
                    id: doc.id,
                    mtime: None,
                },
                Op::PutJson { id, json, mtime } => {
                    let doc = limits.check_json(&id, &json)?;
                    Prepared::Put {
                        dims: doc.vector.as_ref().map(Vec::len),
                        id,
                        json,
                        mtime: mtime.map(stamp::from_time),
                    }
                }
                Op::SetMtime { id, mtime } => {
                    limits.check_id(&id)?;
                    Prepared::SetMtime {
                        id,
                        mtime: stamp::from_time(mtime),
                    }
                }
                Op::Patch(p) => {
                    limits.check_id(&p.id)?;
                    limits.check_attributes(&p.set)?;
                    if let Some(v) = &p.vector {
                        limits.check_vector(v)?;
                    }
                    Prepared::Patch(p)
                }
                Op::Delete(id) => {
                    limits.check_id(&id)?;
                    Prepared::Delete(id)
                }
            })
        })
        .collect()
}

fn check_dims(current: &mut Option<usize>, found: Option<usize>) -> Result<(), TypeError> {
    match (*current, found) {
        (_, None) => Ok(()),
        (None, Some(d)) => {
            *current = Some(d);
            Ok(())
        }
        (Some(expected), Some(found)) if expected != found => {
            Err(TypeError::VectorDimsMismatch { expected, found })
        }
        _ => Ok(()),
    }
}

impl Inner {
    /// The JSON of `id` as this group has it so far: written earlier in the
    /// batch (`local`), in the group, or stored.
    async fn current_json(
        &self,
        id: &DocId,
        local: &HashMap<DocId, Option<Bytes>>,
        group: &HashMap<DocId, Option<Bytes>>,
    ) -> EngineResult<Option<Bytes>> {
        if let Some(json) = local.get(id).or_else(|| group.get(id)) {
            return Ok(json.clone());
        }
        // Written by a group whose put is still in flight.
        if let Some(json) = self.pipeline.lock().overlay(id) {
            return Ok(json);
        }
        Ok(self.lookup(id).await?.map(|d| d.json))
    }

    /// Resolves one queued batch against the state so far (patches and time
    /// changes need the current document). `now` is the group's stamp. On
    /// error the batch is refused alone.
    async fn resolve(
        &self,
        ops: Vec<Prepared>,
        group: &HashMap<DocId, Option<Bytes>>,
        dims: &mut Option<usize>,
        now: u64,
    ) -> EngineResult<Vec<WalOp>> {
        let mut local: HashMap<DocId, Option<Bytes>> = HashMap::new();
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let (id, json, mtime) = match op {
                Prepared::Put {
                    id,
                    json,
                    dims: d,
                    mtime,
                } => {
                    check_dims(dims, d)?;
                    (id, Some(json), mtime.unwrap_or(now))
                }
                Prepared::Delete(id) => (id, None, now),
                Prepared::SetMtime { id, mtime } => {
                    // A missing document has no time to set (see `Op::SetMtime`).
                    let Some(current) = self.current_json(&id, &local, group).await? else {
                        continue;
                    };
                    (id, Some(current), mtime)
                }
                Prepared::Patch(patch) => {
                    let current = self.current_json(&patch.id, &local, group).await?;
                    // Patching a missing document is a no-op (see `Op::Patch`).
                    let Some(current) = current else { continue };
                    let doc = Document::from_json_bytes(&patch.id, &current).map_err(|e| {
                        EngineError::Corrupt {
                            key: format!("document {}", patch.id),
                            reason: e.to_string(),
                        }
                    })?;
                    let doc = patch.apply_to(doc);
                    check_dims(dims, doc.vector.as_ref().map(Vec::len))?;
                    let json = Bytes::from(self.opts.limits.check_document(&doc)?);
                    (patch.id, Some(json), now)
                }
            };
            local.insert(id.clone(), json.clone());
            out.push(WalOp { id, json, mtime });
        }
        Ok(out)
    }

    /// Takes the oldest queued batches as one group, resolves them and
    /// launches their WAL put (`pipeline`). Runs with the commit lock held.
    async fn commit_group(self: &Arc<Self>, permit: tokio::sync::OwnedSemaphorePermit) {
        let ready = match self.check_writable() {
            Ok(()) if self.pipeline_broken() => self.heal().await,
            other => other,
        };
        let group = take_group(&mut self.pending.lock());
        if let Err(e) = ready {
            for p in group {
                let _ = p.reply.send(Err(e.duplicate(&self.ns)));
            }
            return;
        }
        let mut dims = {
            let p = self.pipeline.lock();
            p.dims().or(self.state.read().vector_dims)
        };
        let mtime_ms = now_ms();
        let now = stamp::from_ms(mtime_ms);
        let mut view: HashMap<DocId, Option<Bytes>> = HashMap::new();
        let mut ops: Vec<WalOp> = Vec::new();
        let mut accepted = Vec::with_capacity(group.len());
        for p in group {
            let mut batch_dims = dims;
            match self.resolve(p.ops, &view, &mut batch_dims, now).await {
                Ok(resolved) => {
                    dims = batch_dims;
                    for op in &resolved {
                        view.insert(op.id.clone(), op.json.clone());
                    }
                    ops.extend(resolved);
                    accepted.push(p.reply);
                }
                Err(e) => {
                    let _ = p.reply.send(Err(e));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        // Only no-op patches and time changes: nothing to put, but the
        // answer still waits for the groups in flight they were resolved on.
        let record = (!ops.is_empty()).then(|| WalRecord {
            writer_id: self.writer_id.clone(),
            // `launch` assigns the sequence.
            seq: 0,
            mtime_ms,
            kind: WalKind::Batch,
            vector_dims: dims,
            ops,
        });
        self.launch(record, accepted, permit);
    }

    /// Create-if-absent put of a WAL object; an ambiguous answer is settled
    /// by `create_resolved`. Finding the slot taken means another writer
    /// owns the namespace — unless the object there is our own from an
    /// earlier group whose put failed without an answer and landed anyway,
    /// which this write then replaces.
    pub(super) async fn put_wal(&self, record: &WalRecord) -> EngineResult<()> {
        let key = wal_key(&self.ns, record.seq);
        let data = record.encode();
        match crate::store::create_resolved(&*self.store, &key, data.clone()).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists(_)) => {
                let existing = self.store.get(&key).await?;
                match WalRecord::decode(existing, record.seq) {
                    Ok(other) if other.writer_id == self.writer_id => {
                        self.store.put(&key, data).await?;
                        Ok(())
                    }
                    Ok(other) => Err(EngineError::Fenced {
                        ns: self.ns.clone(),
                        by: other.writer_id,
                    }),
                    Err(_) => Err(EngineError::Fenced {
                        ns: self.ns.clone(),
                        by: "unknown (an unreadable WAL object took our sequence)".into(),
                    }),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}
