//! The read path: point lookups and ordered scans over the memtables and
//! the segments of one manifest snapshot.

use super::memtable::MemEntry;
use super::segment::Entry;
use super::{Engine, EngineError, EngineResult, Inner, StoredDoc};
use crate::store::StoreError;
use crate::types::{DocId, Document};

impl Engine {
    /// After a segment vanished under a read: a writer's own manifest is
    /// already current, a follower must fetch the writer's newer one.
    async fn catch_up(&self) -> EngineResult<()> {
        if self.inner.opts.read_only {
            self.refresh().await?;
        }
        Ok(())
    }

    pub async fn get(&self, id: &DocId) -> EngineResult<Option<Document>> {
        match self.get_stored(id).await? {
            Some(doc) => doc.document().map(Some),
            None => Ok(None),
        }
    }

    /// The stored form of `id`: its JSON as stored, mtime, sequence.
    pub async fn get_stored(&self, id: &DocId) -> EngineResult<Option<StoredDoc>> {
        let mut attempt = 0;
        loop {
            match self.inner.lookup(id).await {
                // A compaction may delete the segments of the manifest we
                // read; a fresh snapshot has their replacement.
                Err(EngineError::Store(StoreError::NotFound(_))) if attempt < 3 => {
                    attempt += 1;
                    self.catch_up().await?;
                }
                other => return other,
            }
        }
    }

    /// Live documents with id > `start_after`, in id order, at most `limit`.
    /// A page may hold fewer than `limit`; only an empty page means the end.
    /// Ids present for the whole scan are returned exactly once, whatever
    /// writes, flushes and compactions run meanwhile.
    pub async fn scan(
        &self,
        start_after: Option<&DocId>,
        limit: usize,
    ) -> EngineResult<Vec<StoredDoc>> {
        let mut attempt = 0;
        loop {
            match self.inner.scan_page(start_after, limit.max(1)).await {
                Err(EngineError::Store(StoreError::NotFound(_))) if attempt < 3 => {
                    attempt += 1;
                    self.catch_up().await?;
                }
                other => return other,
            }
        }
    }

    /// Every live document, in id order (for tools and tests; a mount pages).
    pub async fn scan_all(&self) -> EngineResult<Vec<StoredDoc>> {
        let mut out: Vec<StoredDoc> = Vec::new();
        loop {
            let page = self.scan(out.last().map(|d| &d.id), 1024).await?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }
}

impl Inner {
    pub(super) async fn lookup(&self, id: &DocId) -> EngineResult<Option<StoredDoc>> {
        let found = |id: &DocId, e: &MemEntry| {
            e.json
                .as_ref()
                .map(|json| StoredDoc::from_entry(id.clone(), json.clone(), e.mtime_ms, e.seq))
        };
        let manifest = {
            let st = self.state.read();
            if let Some(e) = st.active.get(id) {
                return Ok(found(id, e));
            }
            if let Some(e) = st.frozen.as_ref().and_then(|f| f.get(id)) {
                return Ok(found(id, e));
            }
            st.manifest.clone()
        };
        for seg in &manifest.segments {
            if let Some(e) = self.reader.get(seg, id).await? {
                return Ok(e
                    .json
                    .map(|json| StoredDoc::from_entry(e.id, json, e.mtime_ms, e.seq)));
            }
        }
        Ok(None)
    }

    pub(super) async fn scan_page(
        &self,
        start_after: Option<&DocId>,
        limit: usize,
    ) -> EngineResult<Vec<StoredDoc>> {
        // Each source contributes a sorted run; when a run was cut short its
        // last id bounds what this page may return, since that source may
        // hold newer versions of ids beyond it.
        let per_source = limit + 64;
        let mut after = start_after.cloned();
        loop {
            let mut runs: Vec<Vec<Entry>> = Vec::new();
            let mut bound: Option<DocId> = None;
            let mut tighten = |b: Option<DocId>| {
                if let Some(b) = b {
                    if bound.as_ref().is_none_or(|cur| &b < cur) {
                        bound = Some(b);
                    }
                }
            };
            // Runs are pushed newest first: the merge keeps the first
            // version of an id it meets in this order.
            let manifest = {
                let st = self.state.read();
                let (entries, b) = st.active.entries_after(after.as_ref(), per_source);
                tighten(b);
                runs.push(entries);
                if let Some(frozen) = &st.frozen {
                    let (entries, b) = frozen.entries_after(after.as_ref(), per_source);
                    tighten(b);
                    runs.push(entries);
                }
                st.manifest.clone()
            };
            for seg in &manifest.segments {
                let entries = self
                    .reader
                    .entries_after(seg, after.as_ref(), per_source)
                    .await?;
                if entries.len() == per_source {
                    tighten(entries.last().map(|e| e.id.clone()));
                }
                runs.push(entries);
            }
            let out = merge_runs(runs, bound.as_ref(), limit);
            match (out.is_empty(), bound) {
                // Only tombstones up to the bound: look past it.
                (true, Some(b)) => after = Some(b),
                _ => return Ok(out),
            }
        }
    }
}

/// The live documents of sorted `runs` (newest first; an id in several
/// keeps its version from the first), in id order, up to `bound`, at most
/// `limit`. A k-way merge of the runs' heads: each entry is compared
/// against the other runs' heads only, and moved out, not copied; most
/// runs of a compacted namespace are empty and drop out at once.
fn merge_runs(runs: Vec<Vec<Entry>>, bound: Option<&DocId>, limit: usize) -> Vec<StoredDoc> {
    let mut runs: Vec<Vec<Entry>> = runs.into_iter().filter(|r| !r.is_empty()).collect();
    if runs.len() <= 1 {
        // One run (a compacted namespace, no recent writes): no merge, and
        // the bound found by one binary search, not a compare per entry.
        let run = runs.pop().unwrap_or_default();
        let end = bound.map_or(run.len(), |b| run.partition_point(|e| &e.id <= b));
        return run
            .into_iter()
            .take(end)
            .filter_map(|e| {
                e.json
                    .map(|json| StoredDoc::from_entry(e.id, json, e.mtime_ms, e.seq))
            })
            .take(limit)
            .collect();
    }
    let mut iters: Vec<std::vec::IntoIter<Entry>> = runs.into_iter().map(Vec::into_iter).collect();
    let mut heads: Vec<Option<Entry>> = iters.iter_mut().map(Iterator::next).collect();
    let mut out = Vec::with_capacity(limit.min(1024));
    while out.len() < limit {
        let mut best: Option<usize> = None;
        for (i, head) in heads.iter().enumerate() {
            let Some(e) = head else { continue };
            // `<` keeps the earlier (newer) run's version on a tie.
            if best.is_none_or(|b| heads[b].as_ref().is_some_and(|h| e.id < h.id)) {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        let Some(e) = heads[b].take() else { break };
        if bound.is_some_and(|bound| &e.id > bound) {
            break;
        }
        heads[b] = iters[b].next();
        // Older versions of the same id in later runs.
        for i in b + 1..heads.len() {
            if heads[i].as_ref().is_some_and(|h| h.id == e.id) {
                heads[i] = iters[i].next();
            }
        }
        if let Some(json) = e.json {
            out.push(StoredDoc::from_entry(e.id, json, e.mtime_ms, e.seq));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: &str, seq: u64, live: bool) -> Entry {
        Entry {
            id: DocId::from(id),
            seq,
            mtime_ms: 0,
            json: live.then(|| bytes::Bytes::from(format!("{{\"s\":{seq}}}"))),
        }
    }

    fn ids_seqs(docs: &[StoredDoc]) -> Vec<(&str, u64)> {
        docs.iter().map(|d| (d.id.as_str(), d.seq)).collect()
    }

    #[test]
    fn the_first_run_holding_an_id_decides_it() {
        let runs = vec![
            vec![e("b", 30, true), e("d", 31, false)],
            vec![],
            vec![e("a", 20, true), e("b", 21, false), e("d", 22, true)],
            vec![
                e("a", 1, false),
                e("c", 2, true),
                e("d", 3, true),
                e("e", 4, true),
            ],
        ];
        let all = merge_runs(runs.clone(), None, 100);
        assert_eq!(ids_seqs(&all), vec![("a", 20), ("b", 30), ("c", 2), ("e", 4)]);
        // The bound is inclusive, and the limit counts live documents only.
        let bounded = merge_runs(runs.clone(), Some(&DocId::from("c")), 100);
        assert_eq!(ids_seqs(&bounded), vec![("a", 20), ("b", 30), ("c", 2)]);
        let two = merge_runs(runs, None, 2);
        assert_eq!(ids_seqs(&two), vec![("a", 20), ("b", 30)]);
        assert!(merge_runs(vec![vec![e("x", 1, false)]], None, 10).is_empty());
        // A single run is cut at the bound too.
        let one = vec![vec![
            e("a", 1, true),
            e("b", 2, false),
            e("c", 3, true),
            e("d", 4, true),
        ]];
        let cut = merge_runs(one.clone(), Some(&DocId::from("cc")), 10);
        assert_eq!(ids_seqs(&cut), vec![("a", 1), ("c", 3)]);
        assert_eq!(ids_seqs(&merge_runs(one, None, 2)), vec![("a", 1), ("c", 3)]);
        assert!(merge_runs(Vec::new(), None, 10).is_empty());
    }
}
