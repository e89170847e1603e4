//! Flush (memtable -> segment) and compaction (segments -> one segment).
//! Both build their output, upload it, then commit manifest N+1; until that
//! commit succeeds, readers see exactly what they saw before. After the
//! commit, which proves this writer still holds the namespace, a bounded
//! garbage-collection pass runs (`gc`); nothing is deleted here otherwise.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::layout::{new_segment_id, segment_key};
use super::manifest;
use super::segment::{decode_all, Entry, SegmentBuilder};
use super::{Engine, EngineError, EngineResult};
use crate::types::DocId;

impl Engine {
    /// Writes everything in the memtable to a segment and commits it. The
    /// WAL objects it covers stay until GC finds them outside retention.
    pub async fn flush(&self) -> EngineResult<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        let _maintenance = inner.maintenance.lock().await;
        let (frozen, through, base, dims) = {
            // Between commits, so the memtable holds exactly the WAL up to
            // `last_seq`.
            let _commit = inner.commit.lock().await;
            let mut st = inner.state.write();
            if st.active.is_empty() {
                return Ok(());
            }
            let frozen = Arc::new(std::mem::take(&mut st.active));
            st.frozen = Some(frozen.clone());
            (frozen, st.last_seq, st.manifest.clone(), st.vector_dims)
        };
        let result = async {
            let mut builder = SegmentBuilder::new(inner.opts.block_bytes);
            for (id, e) in &frozen.map {
                builder.add(id, e.seq, e.mtime_ms, e.json.as_ref());
            }
            let (bytes, meta, index) = builder.finish(
                new_segment_id(through, 'f'),
                (base.flushed_through + 1, through),
                Vec::new(),
                dims,
            );
            inner
                .store
                .put(&segment_key(&inner.ns, &meta.id), bytes)
                .await?;
            let mut next = base.successor(&inner.writer_id);
            next.segments.insert(0, meta);
            next.flushed_through = through;
            next.vector_dims = dims;
            manifest::commit(&inner.store, &inner.ns, &next).await?;
            Ok::<_, EngineError>((next, index))
        }
        .await;
        match result {
            Ok((next, index)) => {
                let next = Arc::new(next);
                {
                    let mut st = inner.state.write();
                    st.manifest = next.clone();
                    st.frozen = None;
                }
                inner.reader.remember_index(index);
                inner.counters.flushes.fetch_add(1, Ordering::Relaxed);
                inner.auto_gc(&next).await;
                Ok(())
            }
            Err(e) => {
                {
                    let mut st = inner.state.write();
                    if let Some(frozen) = st.frozen.take() {
                        st.active.merge_older(&frozen);
                    }
                }
                inner.note_fenced(&e);
                Err(e)
            }
        }
    }

    /// Merges every segment into one, dropping tombstones and overwritten
    /// versions.
    pub async fn compact(&self) -> EngineResult<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        let _maintenance = inner.maintenance.lock().await;
        let base = inner.state.read().manifest.clone();
        if base.segments.len() < 2 && base.segments.iter().all(|s| s.tombstones == 0) {
            return Ok(());
        }
        let reads = base.segments.iter().map(|seg| async move {
            let key = segment_key(&inner.ns, &seg.id);
            let data: Bytes = inner.store.get(&key).await?;
            decode_all(&data)
                .map(|(_, entries)| entries)
                .map_err(|reason| EngineError::Corrupt { key, reason })
        });
        let inputs = match futures::future::try_join_all(reads).await {
            Ok(inputs) => inputs,
            // Only a newer writer's GC deletes segments our manifest names:
            // say so (`Fenced`) rather than report a missing object.
            Err(EngineError::Store(e)) if e.is_not_found() => {
                let err = inner.fenced_or(EngineError::Store(e)).await;
                inner.note_fenced(&err);
                return Err(err);
            }
            Err(e) => return Err(e),
        };
        // Oldest first, so newer versions overwrite older ones.
        let mut merged: BTreeMap<DocId, Entry> = BTreeMap::new();
        for entries in inputs.into_iter().rev() {
            for e in entries {
                merged.insert(e.id.clone(), e);
            }
        }
        let mut builder = SegmentBuilder::new(inner.opts.block_bytes);
        for e in merged.values().filter(|e| e.json.is_some()) {
            builder.add(&e.id, e.seq, e.mtime_ms, e.json.as_ref());
        }
        let wal_lo = base.segments.iter().map(|s| s.wal_lo).min().unwrap_or(1);
        let wal_hi = base.segments.iter().map(|s| s.wal_hi).max().unwrap_or(0);
        let replaces: Vec<String> = base.segments.iter().map(|s| s.id.clone()).collect();
        let (bytes, meta, index) = builder.finish(
            new_segment_id(wal_hi, 'c'),
            (wal_lo, wal_hi),
            replaces,
            base.vector_dims,
        );
        inner
            .store
            .put(&segment_key(&inner.ns, &meta.id), bytes)
            .await?;
        let mut next = base.successor(&inner.writer_id);
        next.segments = vec![meta];
        if let Err(e) = manifest::commit(&inner.store, &inner.ns, &next).await {
            inner.note_fenced(&e);
            return Err(e);
        }
        let next = Arc::new(next);
        inner.state.write().manifest = next.clone();
        inner.reader.remember_index(index);
        inner.counters.compactions.fetch_add(1, Ordering::Relaxed);
        // The replaced inputs stay while retained manifests name them.
        inner.auto_gc(&next).await;
        Ok(())
    }
}
