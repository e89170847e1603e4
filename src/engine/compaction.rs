//! Compaction: a streaming k-way merge of segments into bounded-size
//! output segments, chosen by a size-tiered policy.
//!
//! # Memory
//!
//! Each input is read through a cursor holding one chunk of consecutive
//! blocks (one ranged GET) and its index. The inputs share a read budget of
//! `MERGE_READ_BYTES`: each chunk is at most `MERGE_READ_BYTES / inputs`
//! (and at most `READ_CHUNK_BYTES`, and at least one block). The output is
//! cut into segments of about `EngineOptions::compaction_segment_bytes`,
//! each uploaded as soon as it is full. So a merge needs about
//! `MERGE_READ_BYTES` (decoded, about twice that) plus
//! `compaction_segment_bytes` plus indexes, whatever the namespace's size
//! and however many segments a major compaction merges (with more inputs
//! than the budget has blocks for, one block each).
//!
//! # Outputs
//!
//! The merge runs in id order, so the outputs of one compaction hold
//! disjoint id ranges; they all record the merged WAL range and the same
//! `replaces` list (siblings), and take the inputs' place in the manifest's
//! newest-first order. At least one output is written, even when empty, so
//! the WAL range stays covered for `rebuild_manifest`.
//!
//! # Policy
//!
//! Automatic compaction (after a flush) is size-tiered: it merges the newest
//! run of at least `T` (`EngineOptions::auto_compact_segments`) adjacent
//! segments whose sizes lie within a factor `T` of each other. Flushes make
//! similar small segments; `T` of them become one `T` times larger, and `T`
//! of those one larger again, so a document is rewritten once per tier,
//! `O(log_T n)` times over the life of a namespace, and the segment count
//! stays `O(T log_T n)`. Tombstones are dropped only when the run includes
//! the oldest segment (nothing older could hold the id). A requested
//! compaction (`Engine::compact`) is major: it merges every segment and
//! leaves no tombstone and no overwritten version.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::layout::{new_segment_id, segment_key};
use super::manifest::{self, Manifest};
use super::segment::{decode_block, Entry, SegmentBuilder, SegmentIndex, SegmentMeta};
use super::{Engine, EngineError, EngineResult, Inner};
use crate::types::DocId;

/// Most bytes of consecutive blocks a cursor fetches in one ranged GET.
const READ_CHUNK_BYTES: u64 = 1 << 20;
/// Bytes of input chunks all cursors of one merge hold together: a major
/// compaction of 264 segments measured +306 MiB RSS with 1 MiB each.
const MERGE_READ_BYTES: u64 = 32 << 20;
/// Most segments one automatic merge takes.
const MAX_RUN: usize = 32;

/// One input, one chunk of blocks in memory at a time.
struct Cursor {
    chunk_bytes: u64,
    seg: SegmentMeta,
    index: Arc<SegmentIndex>,
    next_block: usize,
    entries: std::vec::IntoIter<Entry>,
}

impl Cursor {
    async fn open(inner: &Inner, seg: &SegmentMeta, chunk_bytes: u64) -> EngineResult<Cursor> {
        let index = if seg.doc_count + seg.tombstones == 0 {
            Arc::new(SegmentIndex {
                segment_id: seg.id.clone(),
                wal_lo: seg.wal_lo,
                wal_hi: seg.wal_hi,
                created_ms: 0,
                replaces: Vec::new(),
                doc_count: 0,
                tombstones: 0,
                vector_dims: None,
                blocks: Vec::new(),
            })
        } else {
            inner.reader.index(seg).await?
        };
        Ok(Cursor {
            chunk_bytes,
            seg: seg.clone(),
            index,
            next_block: 0,
            entries: Vec::new().into_iter(),
        })
    }

    async fn next(&mut self, inner: &Inner) -> EngineResult<Option<Entry>> {
        loop {
            if let Some(e) = self.entries.next() {
                return Ok(Some(e));
            }
            let blocks = &self.index.blocks;
            if self.next_block >= blocks.len() {
                return Ok(None);
            }
            // Consecutive blocks are adjacent in the object: one GET.
            let first = self.next_block;
            let start = blocks[first].offset;
            let mut last = first;
            while last + 1 < blocks.len()
                && blocks[last + 1].offset + u64::from(blocks[last + 1].len) - start
                    <= self.chunk_bytes
            {
                last += 1;
            }
            let end = blocks[last].offset + u64::from(blocks[last].len);
            let key = segment_key(&inner.ns, &self.seg.id);
            let data = inner.store.get_range(&key, start..end).await?;
            let mut entries = Vec::new();
            for (n, h) in blocks.iter().enumerate().take(last + 1).skip(first) {
                let from = (h.offset - start) as usize;
                let block = data.slice(from..from + h.len as usize);
                entries.extend(decode_block(block).map_err(|reason| EngineError::Corrupt {
                    key: key.clone(),
                    reason: format!("block {n}: {reason}"),
                })?);
            }
            self.next_block = last + 1;
            self.entries = entries.into_iter();
        }
    }
}

/// What a finished merge produced.
struct Merged {
    outputs: Vec<(SegmentMeta, SegmentIndex)>,
    bytes_written: u64,
}

impl Inner {
    /// Merges `inputs` (newest first) into bounded output segments and
    /// uploads them. Nothing is committed here.
    async fn merge(
        &self,
        inputs: &[SegmentMeta],
        drop_tombstones: bool,
        vector_dims: Option<usize>,
    ) -> EngineResult<Merged> {
        // The shared read budget (see the module docs); a chunk always
        // takes at least one block, however small this gets.
        let chunk_bytes = (MERGE_READ_BYTES / inputs.len().max(1) as u64)
            .min(READ_CHUNK_BYTES)
            .min(self.opts.compaction_segment_bytes as u64);
        let mut cursors = Vec::with_capacity(inputs.len());
        for seg in inputs {
            cursors.push(Cursor::open(self, seg, chunk_bytes).await?);
        }
        // Heap of (id, rank): the smallest id first, and for one id the
        // newest input (lowest rank), whose version wins.
        let mut heap: BinaryHeap<Reverse<(DocId, usize)>> = BinaryHeap::new();
        let mut heads: Vec<Option<Entry>> = Vec::with_capacity(cursors.len());
        for (rank, c) in cursors.iter_mut().enumerate() {
            let head = c.next(self).await?;
            if let Some(e) = &head {
                heap.push(Reverse((e.id.clone(), rank)));
            }
            heads.push(head);
        }
        let wal_lo = inputs.iter().map(|s| s.wal_lo).min().unwrap_or(1);
        let wal_hi = inputs.iter().map(|s| s.wal_hi).max().unwrap_or(0);
        let replaces: Vec<String> = inputs.iter().map(|s| s.id.clone()).collect();
        let target = self.opts.compaction_segment_bytes.max(1);
        let mut out = Merged {
            outputs: Vec::new(),
            bytes_written: 0,
        };
        let mut builder = SegmentBuilder::new(self.opts.block_bytes);
        let mut builder_empty = true;
        let mut last_id: Option<DocId> = None;
        while let Some(Reverse((id, rank))) = heap.pop() {
            let Some(entry) = heads[rank].take() else {
                continue;
            };
            if let Some(next) = cursors[rank].next(self).await? {
                heap.push(Reverse((next.id.clone(), rank)));
                heads[rank] = Some(next);
            }
            // An older version of an id already written.
            if last_id.as_ref() == Some(&id) {
                continue;
            }
            last_id = Some(id);
            if entry.json.is_none() && drop_tombstones {
                continue;
            }
            builder.add(&entry.id, entry.seq, entry.mtime_ms, entry.json.as_ref());
            builder_empty = false;
            if builder.bytes() >= target {
                let full =
                    std::mem::replace(&mut builder, SegmentBuilder::new(self.opts.block_bytes));
                builder_empty = true;
                self.upload(full, (wal_lo, wal_hi), &replaces, vector_dims, &mut out)
                    .await?;
            }
        }
        if !builder_empty || out.outputs.is_empty() {
            self.upload(builder, (wal_lo, wal_hi), &replaces, vector_dims, &mut out)
                .await?;
        }
        Ok(out)
    }

    async fn upload(
        &self,
        builder: SegmentBuilder,
        wal_range: (u64, u64),
        replaces: &[String],
        vector_dims: Option<usize>,
        out: &mut Merged,
    ) -> EngineResult<()> {
        let (bytes, meta, index) = builder.finish(
            new_segment_id(wal_range.1, 'c'),
            wal_range,
            replaces.to_vec(),
            vector_dims,
        );
        out.bytes_written += bytes.len() as u64;
        self.store.put(&segment_key(&self.ns, &meta.id), bytes).await?;
        out.outputs.push((meta, index));
        Ok(())
    }

    /// Merges `base.segments[run]`, commits the result, runs a GC pass.
    /// Called with the maintenance lock held.
    async fn compact_run(
        &self,
        base: Arc<Manifest>,
        run: std::ops::Range<usize>,
    ) -> EngineResult<()> {
        let inputs = &base.segments[run.clone()];
        let drop_tombstones = run.end == base.segments.len();
        let merged = match self.merge(inputs, drop_tombstones, base.vector_dims).await {
            Ok(m) => m,
            // Only a newer writer's GC deletes segments our manifest names:
            // say so (`Fenced`) rather than report a missing object.
            Err(EngineError::Store(e)) if e.is_not_found() => {
                let err = self.fenced_or(EngineError::Store(e)).await;
                self.note_fenced(&err);
                return Err(err);
            }
            Err(e) => return Err(e),
        };
        let mut next = base.successor(&self.writer_id);
        let metas: Vec<SegmentMeta> = merged.outputs.iter().map(|(m, _)| m.clone()).collect();
        next.segments.splice(run, metas);
        if let Err(e) = manifest::commit(&self.store, &self.ns, &next).await {
            self.note_fenced(&e);
            return Err(e);
        }
        let next = Arc::new(next);
        self.state.write().manifest = next.clone();
        for (_, index) in merged.outputs {
            self.reader.remember_index(index);
        }
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .compaction_bytes
            .fetch_add(merged.bytes_written, Ordering::Relaxed);
        // The replaced inputs stay while retained manifests name them.
        self.auto_gc(&next).await;
        Ok(())
    }
}

/// Sorted runs: adjacent segments with the same WAL range are the sibling
/// outputs of one compaction (or a lone segment), and count as one.
fn sorted_runs(segments: &[SegmentMeta]) -> Vec<(std::ops::Range<usize>, u64)> {
    let mut runs: Vec<(std::ops::Range<usize>, u64)> = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        match runs.last_mut() {
            Some((r, size))
                if (segments[r.start].wal_lo, segments[r.start].wal_hi) == (s.wal_lo, s.wal_hi) =>
            {
                r.end = i + 1;
                *size += s.size;
            }
            _ => runs.push((i..i + 1, s.size)),
        }
    }
    runs
}

/// The segments of the newest stretch of at least `fan_in` adjacent sorted
/// runs whose sizes are within a factor `fan_in` of each other. Merging
/// them leaves one run, so repeated calls terminate.
pub fn tiered_run(segments: &[SegmentMeta], fan_in: usize) -> Option<std::ops::Range<usize>> {
    let fan_in = fan_in.max(2);
    let ratio = fan_in as u64;
    let runs = sorted_runs(segments);
    let n = runs.len();
    for start in 0..n {
        let (mut lo, mut hi) = (runs[start].1.max(1), runs[start].1.max(1));
        let mut end = start + 1;
        while end < n && end - start < MAX_RUN {
            let z = runs[end].1.max(1);
            let (nlo, nhi) = (lo.min(z), hi.max(z));
            if nhi > nlo.saturating_mul(ratio) {
                break;
            }
            (lo, hi) = (nlo, nhi);
            end += 1;
        }
        if end - start >= fan_in {
            return Some(runs[start].0.start..runs[end - 1].0.end);
        }
    }
    None
}

/// Whether a major compaction would change nothing: no tombstones, and the
/// segments are one segment or the sibling outputs of one compaction.
fn fully_compacted(segments: &[SegmentMeta]) -> bool {
    if segments.iter().any(|s| s.tombstones > 0) {
        return false;
    }
    match segments {
        [] | [_] => true,
        [first, rest @ ..] => {
            !first.replaces.is_empty()
                && rest.iter().all(|s| {
                    s.replaces == first.replaces
                        && (s.wal_lo, s.wal_hi) == (first.wal_lo, first.wal_hi)
                })
        }
    }
}

impl Engine {
    /// A major compaction: merges every segment, leaving no tombstone and
    /// no overwritten version, in bounded memory and bounded outputs.
    pub async fn compact(&self) -> EngineResult<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        let _maintenance = inner.maintenance.lock().await;
        let base = inner.state.read().manifest.clone();
        if fully_compacted(&base.segments) {
            return Ok(());
        }
        let n = base.segments.len();
        inner.compact_run(base, 0..n).await
    }

    /// One step of the size-tiered policy, if it finds a run to merge.
    /// Returns whether it compacted.
    pub async fn compact_tiered(&self) -> EngineResult<bool> {
        let inner = &self.inner;
        inner.check_writable()?;
        let Some(fan_in) = inner.opts.auto_compact_segments else {
            return Ok(false);
        };
        let _maintenance = inner.maintenance.lock().await;
        let base = inner.state.read().manifest.clone();
        let Some(run) = tiered_run(&base.segments, fan_in) else {
            return Ok(false);
        };
        inner.compact_run(base, run).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: &str, size: u64) -> SegmentMeta {
        // Distinct WAL ranges: each its own sorted run.
        let wal = id
            .bytes()
            .fold(size, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        SegmentMeta {
            id: id.into(),
            size,
            index_offset: 0,
            index_len: 0,
            wal_lo: wal,
            wal_hi: wal,
            doc_count: 1,
            tombstones: 0,
            min_id: String::new(),
            max_id: String::new(),
            replaces: Vec::new(),
        }
    }

    #[test]
    fn the_tiered_policy_merges_runs_of_similar_sizes() {
        let flushes: Vec<SegmentMeta> = (0..3).map(|i| seg(&format!("f{i}"), 100)).collect();
        assert_eq!(tiered_run(&flushes, 4), None);
        let mut four = flushes.clone();
        four.push(seg("f3", 120));
        four.push(seg("big", 100_000));
        assert_eq!(tiered_run(&four, 4), Some(0..4));
        // Two small flushes in front of a full tier: the tier merges.
        let mut tiers = vec![seg("a", 100), seg("b", 90)];
        tiers.extend((0..4).map(|i| seg(&format!("t{i}"), 400)));
        tiers.push(seg("huge", 10_000));
        assert_eq!(tiered_run(&tiers, 4), Some(2..6));
        // Siblings of one compaction count as one run of their total size.
        let mut siblings: Vec<SegmentMeta> = (0..3).map(|i| seg(&format!("f{i}"), 100)).collect();
        for i in 0..4 {
            let mut s = seg(&format!("o{i}"), 125);
            (s.wal_lo, s.wal_hi) = (1, 50);
            siblings.push(s);
        }
        assert_eq!(tiered_run(&siblings, 4), None, "3 flushes + one run of 500");
        siblings.insert(0, seg("f3", 100));
        assert_eq!(tiered_run(&siblings, 4), Some(0..4));
        siblings.truncate(1);
        siblings.extend((0..3).map(|i| {
            let mut s = seg(&format!("p{i}"), 50);
            (s.wal_lo, s.wal_hi) = (60, 70);
            s
        }));
        siblings.extend((0..3).map(|i| seg(&format!("g{i}"), 120)));
        assert_eq!(
            tiered_run(&siblings, 4),
            Some(0..7),
            "a run of 150 among flushes of 100-120"
        );
    }

    /// Rewrites per document over a growing namespace stay logarithmic.
    #[test]
    fn each_document_is_rewritten_a_logarithmic_number_of_times() {
        // Simulate sizes only: each flush adds a segment of 1 unit.
        let fan_in = 4;
        let mut segs: Vec<SegmentMeta> = Vec::new();
        let mut written = 0u64;
        let flushes = 4096u64;
        for i in 0..flushes {
            segs.insert(0, seg(&format!("f{i}"), 1));
            while let Some(run) = tiered_run(&segs, fan_in) {
                let size: u64 = segs[run.clone()].iter().map(|s| s.size).sum();
                written += size;
                segs.splice(run, [seg(&format!("c{i}-{written}"), size)]);
            }
        }
        let amplification = written as f64 / flushes as f64;
        // log_4(4096) = 6 tiers.
        assert!(amplification <= 7.0, "write amplification {amplification}");
        assert!(segs.len() <= 3 * 7, "{} segments", segs.len());
    }
}
