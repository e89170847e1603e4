//! The memtable: documents written since the last flush, newest version per
//! id. Tombstones stay until a flush carries them into a segment.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::segment::Entry;
use crate::types::DocId;

/// Memory an entry costs beyond its id and JSON bytes: the key and value in
/// a B-tree node (nodes are on average about two thirds full) and the
/// allocator's headers of the id and the JSON. Counted so the flush
/// threshold bounds the memory really held, not just the payload.
const ENTRY_OVERHEAD: usize =
    (std::mem::size_of::<DocId>() + std::mem::size_of::<MemEntry>()) * 3 / 2 + 32;

#[derive(Debug, Clone, PartialEq)]
pub struct MemEntry {
    pub seq: u64,
    /// The document's time as a stamp (milliseconds or flagged
    /// nanoseconds, see `stamp`), carried as is into segments.
    pub mtime_ms: u64,
    /// `None` is a tombstone.
    pub json: Option<Bytes>,
}

#[derive(Debug, Default, Clone)]
pub struct Memtable {
    pub map: BTreeMap<DocId, MemEntry>,
    /// Memory held (payload plus `ENTRY_OVERHEAD` per entry), to decide
    /// when to flush and when writers wait.
    pub bytes: usize,
}

impl Memtable {
    pub fn insert(&mut self, id: DocId, entry: MemEntry) {
        let add = id.as_str().len() + entry.json.as_ref().map_or(0, |j| j.len()) + ENTRY_OVERHEAD;
        self.bytes += add;
        if let Some(old) = self.map.insert(id, entry) {
            self.bytes -= old.json.as_ref().map_or(0, |j| j.len());
        }
    }

    pub fn get(&self, id: &DocId) -> Option<&MemEntry> {
        self.map.get(id)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Up to `max` entries after `after`, as segment entries (so a scan
    /// merges them with the segments' runs); the second value is the last
    /// id returned when more may follow (the scan must not look past it).
    pub fn entries_after(&self, after: Option<&DocId>, max: usize) -> (Vec<Entry>, Option<DocId>) {
        use std::ops::Bound;
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut out: Vec<Entry> = self
            .map
            .range::<DocId, _>((lower, Bound::Unbounded))
            .take(max + 1)
            .map(|(k, v)| Entry {
                id: k.clone(),
                seq: v.seq,
                mtime_ms: v.mtime_ms,
                json: v.json.clone(),
            })
            .collect();
        if out.len() > max {
            out.truncate(max);
            let bound = out.last().map(|e| e.id.clone());
            (out, bound)
        } else {
            (out, None)
        }
    }

    /// Puts back entries of a flush that did not commit, under any newer
    /// writes made since.
    pub fn merge_older(&mut self, older: &Memtable) {
        for (id, e) in &older.map {
            if !self.map.contains_key(id) {
                self.insert(id.clone(), e.clone());
            }
        }
    }
}
