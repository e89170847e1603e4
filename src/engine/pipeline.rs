//! The WAL pipeline: up to `wal::PIPELINE_DEPTH` write groups have their
//! put in flight at once (one, on a store where overlapping puts do not
//! help: `ObjectStore::overlapping_puts_help`), and each is settled
//! strictly in sequence order.
//!
//! A group is *launched* by a writer holding the commit lock: it gets the
//! next sequence, its ops go into the overlay (so the next group's patches
//! resolve against them), and a task starts its put. The task then waits
//! for the group before it to settle, and only then settles its own:
//!
//! - earlier groups all durable and its put succeeded: the ops go into the
//!   memtable (visible), `last_seq` advances, its writers are answered;
//! - its put failed: it and every later group in flight fail, and the
//!   pipeline is *broken* until healed;
//! - an earlier group failed: it fails too, even if its own put landed
//!   (such an object is a *stray*: never acknowledged, never applied).
//!
//! So an acknowledged group always has every lower sequence durable, and
//! nothing a failed group wrote is visible in this process. Why nothing of
//! it becomes visible after a restart either is argued in `wal` (the gap
//! and writer-continuity rules of replay) together with `heal` here: before
//! any later group is launched, every sequence from the first failed one to
//! the highest stray is overwritten with (or created as) a VOID marker, the
//! strays first and the first failed sequence last, so until the very last
//! put of the heal the WAL has a gap below the strays and replay stops there.
//! When no later put landed there is nothing to hide and the next group
//! simply reuses the failed sequence, as a single failed put always did.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::layout::wal_key;
use super::memtable::MemEntry;
use super::wal::{WalKind, WalRecord};
use super::{EngineError, EngineResult, Inner, WriteAck};
use crate::types::DocId;

/// Answers of the writers whose batches make up one group.
pub(super) type Replies = Vec<oneshot::Sender<EngineResult<WriteAck>>>;

/// Sequencing state, behind `Inner::pipeline`.
pub(super) struct Pipeline {
    /// The sequence the next group with ops gets.
    pub next_seq: u64,
    /// Settles (`true`: durable and applied) when the newest launched
    /// group has; the next group waits on it.
    tail: Option<oneshot::Receiver<bool>>,
    /// Documents written by groups in flight: (sequence, JSON or tombstone).
    overlay: HashMap<DocId, (u64, Option<Bytes>)>,
    /// Vector dimensions as the groups in flight leave them.
    dims: Option<usize>,
    /// Set by the first failed put; cleared by `heal`.
    broken: Option<Broken>,
}

struct Broken {
    /// Sequences of later groups whose put landed although they failed.
    strays: Vec<u64>,
    /// Why: what every group failed after it is told.
    cause: EngineError,
}

impl Pipeline {
    pub fn new(last_seq: u64) -> Pipeline {
        Pipeline {
            next_seq: last_seq + 1,
            tail: None,
            overlay: HashMap::new(),
            dims: None,
            broken: None,
        }
    }

    /// Vector dimensions after the groups in flight, if one set them.
    pub fn dims(&self) -> Option<usize> {
        self.dims
    }

    /// The JSON a group in flight wrote for `id`, if one did.
    pub fn overlay(&self, id: &DocId) -> Option<Option<Bytes>> {
        self.overlay.get(id).map(|(_, json)| json.clone())
    }
}

impl Inner {
    /// Sends `err` to every writer of a group.
    fn fail_all(&self, replies: Replies, err: &EngineError) {
        for reply in replies {
            let _ = reply.send(Err(err.duplicate(&self.ns)));
        }
    }

    /// Whether a put failed and `heal` has not run since.
    pub(super) fn pipeline_broken(&self) -> bool {
        self.pipeline.lock().broken.is_some()
    }

    /// Starts the put of a resolved group (`record` is `None` when it
    /// changes nothing) and returns at once; its writers are answered when
    /// it settles. Runs with the commit lock held; `permit` is a pipeline
    /// slot, given back when the group settles.
    pub(super) fn launch(
        self: &Arc<Self>,
        record: Option<WalRecord>,
        replies: Replies,
        permit: OwnedSemaphorePermit,
    ) {
        let (seq, prev, done) = {
            let mut p = self.pipeline.lock();
            if let Some(broken) = &p.broken {
                // A put failed while this group was resolved, perhaps
                // against what the failed group wrote.
                let cause = broken.cause.duplicate(&self.ns);
                drop(p);
                self.fail_all(replies, &cause);
                return;
            }
            let seq = match &record {
                Some(_) => {
                    let seq = p.next_seq;
                    p.next_seq += 1;
                    seq
                }
                None => p.next_seq - 1,
            };
            let record = record.as_ref();
            if let Some(d) = record.and_then(|r| r.vector_dims) {
                p.dims = Some(d);
            }
            for op in record.iter().flat_map(|r| r.ops.iter()) {
                p.overlay.insert(op.id.clone(), (seq, op.json.clone()));
            }
            let (done, next) = oneshot::channel();
            (seq, p.tail.replace(next), done)
        };
        let record = record.map(|mut r| {
            r.seq = seq;
            r
        });
        let inner = self.clone();
        tokio::spawn(async move {
            let ok = inner.settle(seq, record, replies, prev).await;
            drop(permit);
            let _ = done.send(ok);
        });
    }

    /// Puts the group's object, waits for the group before it, then makes
    /// it visible and answers its writers, or fails it. `true`: applied.
    async fn settle(
        self: &Arc<Self>,
        seq: u64,
        record: Option<WalRecord>,
        replies: Replies,
        prev: Option<oneshot::Receiver<bool>>,
    ) -> bool {
        let put = match &record {
            Some(r) => self.put_wal(r).await,
            None => Ok(()),
        };
        // A dropped sender (a panicked task) counts as a failure.
        let earlier_ok = match prev {
            Some(rx) => rx.await.unwrap_or(false),
            None => true,
        };
        match (earlier_ok, put) {
            (true, Ok(())) => {
                if let Some(record) = record {
                    self.apply(record);
                }
                for reply in replies {
                    let _ = reply.send(Ok(WriteAck { seq }));
                }
                true
            }
            (true, Err(e)) => {
                if matches!(e, EngineError::Fenced { .. }) {
                    self.note_fenced(&e);
                } else {
                    log::warn!("namespace {}: WAL write {seq} failed: {e}", self.ns);
                }
                let mut p = self.pipeline.lock();
                // Nothing in flight will be applied now.
                p.overlay.clear();
                p.dims = None;
                let broken = p.broken.insert(Broken {
                    strays: Vec::new(),
                    cause: e,
                });
                // Answered only once the pipeline is marked broken: a
                // writer told of the failure that writes again at once
                // must find it broken, and heal it, rather than launch
                // behind the failed group and fail with it.
                self.fail_all(replies, &broken.cause);
                false
            }
            (false, put) => {
                let mut p = self.pipeline.lock();
                p.overlay.clear();
                p.dims = None;
                let broken = p.broken.get_or_insert_with(|| Broken {
                    strays: Vec::new(),
                    cause: EngineError::WriteFailed {
                        ns: self.ns.clone(),
                        message: "an earlier WAL write was abandoned".into(),
                    },
                });
                if put.is_ok() && record.is_some() {
                    broken.strays.push(seq);
                }
                let cause = EngineError::WriteFailed {
                    ns: self.ns.clone(),
                    message: format!(
                        "an earlier write, in flight before it, failed: {}",
                        broken.cause
                    ),
                };
                drop(p);
                self.fail_all(replies, &cause);
                false
            }
        }
    }

    /// Makes a durable group visible: memtable, sequence, counters.
    fn apply(&self, record: WalRecord) {
        let seq = record.seq;
        let n = record.ops.len() as u64;
        let ids: Vec<DocId> = record.ops.iter().map(|op| op.id.clone()).collect();
        {
            let mut st = self.state.write();
            for op in record.ops {
                st.active.insert(
                    op.id,
                    MemEntry {
                        seq,
                        mtime_ms: op.mtime,
                        json: op.json,
                    },
                );
            }
            if record.vector_dims.is_some() {
                st.vector_dims = record.vector_dims;
            }
            st.last_seq = seq;
            let held = st.memtable_bytes() as u64;
            self.counters
                .memtable_peak_bytes
                .fetch_max(held, Ordering::Relaxed);
        }
        // After the memtable has them, so a resolver finds them in one place
        // or the other.
        {
            let mut p = self.pipeline.lock();
            for id in ids {
                if p.overlay.get(&id).is_some_and(|(s, _)| *s == seq) {
                    p.overlay.remove(&id);
                }
            }
        }
        self.counters.wal_objects.fetch_add(1, Ordering::Relaxed);
        self.counters.docs_written.fetch_add(n, Ordering::Relaxed);
        self.counters.group_sizes.record(n);
    }

    /// After a failed put: waits until every group in flight has settled,
    /// then hides the strays (see the module doc). Runs with the commit
    /// lock held, before the next group is launched; on error the pipeline
    /// stays broken and the next write tries again.
    pub(super) async fn heal(self: &Arc<Self>) -> EngineResult<()> {
        let tail = self.pipeline.lock().tail.take();
        if let Some(settled) = tail {
            let _ = settled.await;
        }
        let strays = match &self.pipeline.lock().broken {
            Some(b) => b.strays.clone(),
            None => return Ok(()),
        };
        let (first, dims) = {
            let st = self.state.read();
            (st.last_seq + 1, st.vector_dims)
        };
        if let Some(&last) = strays.iter().max() {
            let voids =
                (first + 1..=last).map(|seq| self.put_void(seq, strays.contains(&seq), dims));
            futures::future::try_join_all(voids).await?;
            // Last: until this lands, the gap at `first` hides the rest.
            self.put_void(first, false, dims).await?;
            log::warn!(
                "namespace {}: WAL objects {first} to {last} of failed writes are now VOID markers",
                self.ns
            );
            let mut st = self.state.write();
            st.last_seq = last;
            st.markers.extend(first..=last);
        }
        let mut p = self.pipeline.lock();
        p.next_seq = self.state.read().last_seq + 1;
        p.broken = None;
        Ok(())
    }

    /// A VOID marker at `seq`: over our own stray (`ours` — its put
    /// succeeded, so no other writer can hold that slot), or created.
    async fn put_void(&self, seq: u64, ours: bool, dims: Option<usize>) -> EngineResult<()> {
        let marker = WalRecord::marker(&self.writer_id, seq, WalKind::Void, dims);
        if ours {
            Ok(self
                .store
                .put(&wal_key(&self.ns, seq), marker.encode())
                .await?)
        } else {
            self.put_wal(&marker).await
        }
    }
}
