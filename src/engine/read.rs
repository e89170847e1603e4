//! The read path: point lookups and ordered scans over the memtables and
//! the segments of one manifest snapshot.

use std::collections::BTreeMap;

use super::memtable::MemEntry;
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
            let mut merged: BTreeMap<DocId, MemEntry> = BTreeMap::new();
            let mut bound: Option<DocId> = None;
            let mut tighten = |b: Option<DocId>| {
                if let Some(b) = b {
                    if bound.as_ref().is_none_or(|cur| &b < cur) {
                        bound = Some(b);
                    }
                }
            };
            let manifest = {
                let st = self.state.read();
                let (entries, b) = st.active.entries_after(after.as_ref(), per_source);
                tighten(b);
                merged.extend(entries);
                if let Some(frozen) = &st.frozen {
                    let (entries, b) = frozen.entries_after(after.as_ref(), per_source);
                    tighten(b);
                    for (id, e) in entries {
                        merged.entry(id).or_insert(e);
                    }
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
                for e in entries {
                    merged.entry(e.id).or_insert(MemEntry {
                        seq: e.seq,
                        mtime_ms: e.mtime_ms,
                        json: e.json,
                    });
                }
            }
            let out: Vec<StoredDoc> = merged
                .into_iter()
                .filter(|(id, _)| bound.as_ref().is_none_or(|b| id <= b))
                .filter_map(|(id, e)| {
                    e.json
                        .map(|json| StoredDoc::from_entry(id, json, e.mtime_ms, e.seq))
                })
                .take(limit)
                .collect();
            match (out.is_empty(), bound) {
                // Only tombstones up to the bound: look past it.
                (true, Some(b)) => after = Some(b),
                _ => return Ok(out),
            }
        }
    }
}
