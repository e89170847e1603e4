//! Flush (memtable -> segment). It builds the segment, uploads it, then
//! commits manifest N+1; until that commit succeeds, readers see exactly
//! what they saw before. After the commit, which proves this writer still
//! holds the namespace, a bounded garbage-collection pass runs (`gc`).
//! Compaction works the same way (`compaction`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::layout::{new_segment_id, segment_key};
use super::manifest;
use super::segment::SegmentBuilder;
use super::{Engine, EngineError, EngineResult};

impl Engine {
    /// Writes everything in the memtable to a segment and commits it. The
    /// WAL objects it covers stay until GC finds them outside retention.
    pub async fn flush(&self) -> EngineResult<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        let _maintenance = inner.maintenance.lock().await;
        let (frozen, through, base, dims, markers) = {
            // Between commits, so the memtable holds exactly the WAL up to
            // `last_seq`.
            let _commit = inner.commit.lock().await;
            let mut st = inner.state.write();
            if st.active.is_empty() {
                return Ok(());
            }
            let frozen = Arc::new(std::mem::take(&mut st.active));
            st.frozen = Some(frozen.clone());
            let markers: Vec<u64> = st
                .markers
                .iter()
                .copied()
                .filter(|m| *m <= st.last_seq)
                .collect();
            (
                frozen,
                st.last_seq,
                st.manifest.clone(),
                st.vector_dims,
                markers,
            )
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
            next.markers.extend(markers.iter().copied());
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
                    st.markers.retain(|m| *m > through);
                }
                inner.flushed.notify_waiters();
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
}
