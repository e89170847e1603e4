//! Reading segments through a bounded cache of decoded indexes and blocks,
//! so repeated lookups cost no requests. Opening a namespace fetches the
//! indexes of its segments (newest first, up to half the cache) alongside
//! the WAL replay, so it takes no longer and a cold point lookup then costs
//! one ranged GET (the block); an index not preloaded costs one more — the
//! manifest already says where it is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::layout::segment_key;
use super::segment::{decode_block, Entry, SegmentIndex, SegmentMeta};
use super::{EngineError, EngineResult};
use crate::store::ObjectStore;
use crate::types::DocId;

#[derive(Clone)]
enum Cached {
    Index(Arc<SegmentIndex>),
    Block(Arc<Vec<Entry>>),
}

/// `u32::MAX` as the block number means "the index".
type CacheKey = (String, u32);
const INDEX_SLOT: u32 = u32::MAX;

/// Entries with their size in bytes, and the total of those sizes.
type SizedLru = (LruCache<CacheKey, (Cached, usize)>, usize);

pub struct SegmentReader {
    store: Arc<dyn ObjectStore>,
    ns: String,
    cache: Mutex<SizedLru>,
    capacity_bytes: usize,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl SegmentReader {
    pub fn new(store: Arc<dyn ObjectStore>, ns: &str, capacity_bytes: usize) -> SegmentReader {
        SegmentReader {
            store,
            ns: ns.to_string(),
            cache: Mutex::new((LruCache::unbounded(), 0)),
            capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn cached(&self, key: &CacheKey) -> Option<Cached> {
        let mut cache = self.cache.lock();
        let hit = cache.0.get(key).map(|(v, _)| v.clone());
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    fn insert(&self, key: CacheKey, value: Cached, bytes: usize) {
        let mut guard = self.cache.lock();
        let (lru, used) = &mut *guard;
        if let Some((_, old)) = lru.put(key, (value, bytes)) {
            *used -= old;
        }
        *used += bytes;
        while *used > self.capacity_bytes && lru.len() > 1 {
            match lru.pop_lru() {
                Some((_, (_, b))) => *used -= b,
                None => break,
            }
        }
    }

    /// Seeds the cache with an index the caller just built (after a flush)
    /// or preloaded (at open).
    pub fn remember_index(&self, index: SegmentIndex) {
        let bytes = index_bytes(&index);
        let key = (index.segment_id.clone(), INDEX_SLOT);
        self.insert(key, Cached::Index(Arc::new(index)), bytes);
    }

    pub async fn index(&self, seg: &SegmentMeta) -> EngineResult<Arc<SegmentIndex>> {
        let key = (seg.id.clone(), INDEX_SLOT);
        if let Some(Cached::Index(ix)) = self.cached(&key) {
            return Ok(ix);
        }
        let index = Arc::new(fetch_index(&self.store, &self.ns, seg).await?);
        self.insert(key, Cached::Index(index.clone()), index_bytes(&index));
        Ok(index)
    }

    pub async fn block(
        &self,
        seg: &SegmentMeta,
        index: &SegmentIndex,
        n: usize,
    ) -> EngineResult<Arc<Vec<Entry>>> {
        let key = (seg.id.clone(), n as u32);
        if let Some(Cached::Block(b)) = self.cached(&key) {
            return Ok(b);
        }
        let h = &index.blocks[n];
        let object = segment_key(&self.ns, &seg.id);
        let data = self
            .store
            .get_range(&object, h.offset..h.offset + u64::from(h.len))
            .await?;
        let entries = decode_block(data).map_err(|reason| EngineError::Corrupt {
            key: object,
            reason: format!("block {n}: {reason}"),
        })?;
        // Decoded, a block costs its bytes plus an `Entry` and the heap
        // headers of its id and JSON per entry: count that, so the bound
        // is on memory, not on encoded bytes.
        let held = h.len as usize
            + entries.len() * (std::mem::size_of::<Entry>() + 32)
            + std::mem::size_of::<Vec<Entry>>();
        let entries = Arc::new(entries);
        self.insert(key, Cached::Block(entries.clone()), held);
        Ok(entries)
    }

    /// The newest entry for `id` in this segment (a tombstone counts).
    pub async fn get(&self, seg: &SegmentMeta, id: &DocId) -> EngineResult<Option<Entry>> {
        if seg.doc_count + seg.tombstones == 0
            || id.as_str() < seg.min_id.as_str()
            || id.as_str() > seg.max_id.as_str()
        {
            return Ok(None);
        }
        let index = self.index(seg).await?;
        let Some(n) = index.block_for(id) else {
            return Ok(None);
        };
        let block = self.block(seg, &index, n).await?;
        Ok(block
            .binary_search_by(|e| e.id.cmp(id))
            .ok()
            .map(|i| block[i].clone()))
    }

    /// Up to `max` entries with id > `after`, in id order (tombstones too).
    /// Fewer than `max` means the segment has no more.
    pub async fn entries_after(
        &self,
        seg: &SegmentMeta,
        after: Option<&DocId>,
        max: usize,
    ) -> EngineResult<Vec<Entry>> {
        let mut out = Vec::new();
        // Past this segment's ids (common with the disjoint outputs of a
        // compaction): no index read at all.
        if seg.doc_count + seg.tombstones == 0
            || after.is_some_and(|a| a.as_str() >= seg.max_id.as_str())
        {
            return Ok(out);
        }
        let index = self.index(seg).await?;
        out.reserve(max.min(4096));
        let mut n = index.first_block_after(after);
        while n < index.blocks.len() && out.len() < max {
            let block = self.block(seg, &index, n).await?;
            let start = match after {
                Some(a) => block.partition_point(|e| &e.id <= a),
                None => 0,
            };
            out.extend(block[start..].iter().take(max - out.len()).cloned());
            n += 1;
        }
        Ok(out)
    }
}

/// One ranged GET of a segment's index, checked against `seg`.
async fn fetch_index(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    seg: &SegmentMeta,
) -> EngineResult<SegmentIndex> {
    let object = segment_key(ns, &seg.id);
    let data = store
        .get_range(&object, seg.index_offset..seg.index_offset + seg.index_len)
        .await?;
    let index = SegmentIndex::decode(data).map_err(|reason| EngineError::Corrupt {
        key: object.clone(),
        reason,
    })?;
    if index.segment_id != seg.id {
        return Err(EngineError::Corrupt {
            key: object,
            reason: format!("index names segment {}", index.segment_id),
        });
    }
    Ok(index)
}

/// Index GETs in flight at once while preloading.
const PRELOAD_PARALLELISM: usize = 16;

/// The indexes of `segments` (newest first, as a manifest lists them)
/// whose encoded sizes add up to at most `budget` bytes, fetched
/// concurrently. One that cannot be fetched is left out: the lookup that
/// needs it fetches it again and reports the error then.
pub async fn preload_indexes(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    segments: &[SegmentMeta],
    budget: usize,
) -> Vec<SegmentIndex> {
    use futures::StreamExt;
    let mut used = 0u64;
    // Owned, so the stream's futures borrow nothing but `store` and `ns`.
    let chosen: Vec<SegmentMeta> = segments
        .iter()
        .filter(|s| s.doc_count + s.tombstones > 0)
        .take_while(|s| {
            used += s.index_len;
            used <= budget as u64
        })
        .cloned()
        .collect();
    let fetched: Vec<EngineResult<SegmentIndex>> = futures::stream::iter(chosen)
        .map(|seg| async move { fetch_index(store, ns, &seg).await })
        .buffer_unordered(PRELOAD_PARALLELISM)
        .collect()
        .await;
    fetched
        .into_iter()
        .filter_map(|r| {
            r.map_err(|e| log::debug!("namespace {ns}: preloading a segment index: {e}"))
                .ok()
        })
        .collect()
}

fn index_bytes(ix: &SegmentIndex) -> usize {
    ix.blocks
        .iter()
        .map(|b| b.first_id.as_str().len() + b.last_id.as_str().len() + 64)
        .sum::<usize>()
        + 256
}
