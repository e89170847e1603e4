//! Segments: immutable, sorted runs of documents produced by flush and
//! compaction, laid out so a point lookup reads the index (cached) and one
//! block by ranged GET.
//!
//! ```text
//! block*  | index (sealed, magic REEFSIX1) | footer (28 bytes)
//!
//! block:  n: u32 | n × entry | crc32 (u32) of the block's preceding bytes
//! entry:  id: str | seq: u64 | mtime_ms: u64 | tag: u8 (1 put, 2 tombstone) | put: json bytes
//! index:  segment_id: str | wal_lo: u64 | wal_hi: u64 | created_ms: u64
//!         | n_replaces: u32 | n × segment id: str      (compaction inputs)
//!         | doc_count: u64 | tombstones: u64 | vector_dims: u32
//!         | n_blocks: u32 | n × (first_id: str | last_id: str | offset: u64 | len: u32)
//! footer: index_offset: u64 | index_len: u32 | format version: u32 | crc32 of those 16 bytes | magic "REEFSEG1"
//! ```
//!
//! The index is self-describing (WAL range covered, inputs replaced), so a
//! lost manifest can be rebuilt from segments alone. Entries carry canonical
//! JSON, so reads serve `cat` without re-encoding.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::codec::{seal, strip_crc, unseal, DecodeError, Decoder, Encoder, FORMAT_VERSION};
use crate::types::DocId;

const INDEX_MAGIC: &[u8; 8] = b"REEFSIX1";
const FOOTER_MAGIC: &[u8; 8] = b"REEFSEG1";
pub const FOOTER_LEN: u64 = 28;

/// One version of one document: a put (`json: Some`) or a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: DocId,
    pub seq: u64,
    pub mtime_ms: u64,
    pub json: Option<Bytes>,
}

/// What the manifest records of a segment, so a cold lookup can fetch the
/// index directly without reading the footer first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub id: String,
    pub size: u64,
    pub index_offset: u64,
    pub index_len: u64,
    pub wal_lo: u64,
    pub wal_hi: u64,
    pub doc_count: u64,
    pub tombstones: u64,
    pub min_id: String,
    pub max_id: String,
    #[serde(default)]
    pub replaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BlockHandle {
    pub first_id: DocId,
    pub last_id: DocId,
    pub offset: u64,
    pub len: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SegmentIndex {
    pub segment_id: String,
    pub wal_lo: u64,
    pub wal_hi: u64,
    pub created_ms: u64,
    pub replaces: Vec<String>,
    pub doc_count: u64,
    pub tombstones: u64,
    pub vector_dims: Option<usize>,
    pub blocks: Vec<BlockHandle>,
}

impl SegmentIndex {
    /// The block that would hold `id`, if any.
    pub fn block_for(&self, id: &DocId) -> Option<usize> {
        let i = self.blocks.partition_point(|b| &b.last_id < id);
        (i < self.blocks.len() && &self.blocks[i].first_id <= id).then_some(i)
    }

    /// The first block that may hold ids greater than `after`.
    pub fn first_block_after(&self, after: Option<&DocId>) -> usize {
        match after {
            None => 0,
            Some(after) => self.blocks.partition_point(|b| &b.last_id <= after),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut enc = Encoder::new();
        enc.str(&self.segment_id);
        enc.u64(self.wal_lo);
        enc.u64(self.wal_hi);
        enc.u64(self.created_ms);
        enc.u32(self.replaces.len() as u32);
        for r in &self.replaces {
            enc.str(r);
        }
        enc.u64(self.doc_count);
        enc.u64(self.tombstones);
        enc.u32(self.vector_dims.unwrap_or(0) as u32);
        enc.u32(self.blocks.len() as u32);
        for b in &self.blocks {
            enc.str(b.first_id.as_str());
            enc.str(b.last_id.as_str());
            enc.u64(b.offset);
            enc.u32(b.len);
        }
        seal(INDEX_MAGIC, &enc.into_vec())
    }

    pub fn decode(data: Bytes) -> Result<SegmentIndex, DecodeError> {
        let mut dec = Decoder::new(unseal(INDEX_MAGIC, data)?);
        let segment_id = dec.string()?;
        let wal_lo = dec.u64()?;
        let wal_hi = dec.u64()?;
        let created_ms = dec.u64()?;
        let n = dec.count(4)?;
        let mut replaces = Vec::with_capacity(n);
        for _ in 0..n {
            replaces.push(dec.string()?);
        }
        let doc_count = dec.u64()?;
        let tombstones = dec.u64()?;
        let dims = dec.u32()? as usize;
        // A handle is at least two id lengths, an offset and a length.
        let n = dec.count(20)?;
        let mut blocks: Vec<BlockHandle> = Vec::with_capacity(n);
        for _ in 0..n {
            let b = BlockHandle {
                first_id: DocId::from(dec.string()?),
                last_id: DocId::from(dec.string()?),
                offset: dec.u64()?,
                len: dec.u32()?,
            };
            // Blocks tile the object from offset 0 in id order: readers
            // compute ranges and binary-search on that, so an index that
            // says otherwise is refused here, not trusted there.
            let (expected_offset, in_order) = match blocks.last() {
                None => (0, b.first_id <= b.last_id),
                Some(p) => (
                    p.offset + u64::from(p.len),
                    p.last_id < b.first_id && b.first_id <= b.last_id,
                ),
            };
            if b.offset != expected_offset || !in_order {
                return Err("block handles do not tile the segment in id order".into());
            }
            blocks.push(b);
        }
        dec.finish()?;
        Ok(SegmentIndex {
            segment_id,
            wal_lo,
            wal_hi,
            created_ms,
            replaces,
            doc_count,
            tombstones,
            vector_dims: (dims > 0).then_some(dims),
            blocks,
        })
    }
}

/// Decodes one block (the bytes of `BlockHandle`'s range).
pub fn decode_block(data: Bytes) -> Result<Vec<Entry>, DecodeError> {
    if data.len() < 8 {
        return Err("block too short".into());
    }
    let mut dec = Decoder::new(strip_crc(&data).map_err(|e| format!("block: {e}"))?);
    // An entry is at least an id length, seq, mtime and tag.
    let n = dec.count(21)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let id = DocId::from(dec.string()?);
        let seq = dec.u64()?;
        let mtime_ms = dec.u64()?;
        let json = match dec.u8()? {
            1 => Some(dec.bytes()?),
            2 => None,
            t => return Err(format!("unknown entry tag {t}")),
        };
        entries.push(Entry {
            id,
            seq,
            mtime_ms,
            json,
        });
    }
    dec.finish()?;
    if entries.windows(2).any(|w| w[0].id >= w[1].id) {
        return Err("block entries are not sorted by id".into());
    }
    Ok(entries)
}

/// Parses the footer: where the index lies.
pub fn decode_footer(data: &[u8]) -> Result<(u64, u64), DecodeError> {
    if data.len() != FOOTER_LEN as usize {
        return Err("footer has the wrong length".into());
    }
    if &data[20..28] != FOOTER_MAGIC {
        return Err("not a reef segment (bad footer magic)".into());
    }
    let crc = u32::from_le_bytes([data[16], data[17], data[18], data[19]]);
    if crc32fast::hash(&data[..16]) != crc {
        return Err("footer checksum mismatch".into());
    }
    let version = u32::from_le_bytes([data[12], data[13], data[14], data[15]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "segment format version {version} is not {FORMAT_VERSION}"
        ));
    }
    let mut off = [0u8; 8];
    off.copy_from_slice(&data[..8]);
    let len = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    Ok((u64::from_le_bytes(off), u64::from(len)))
}

/// Decodes and checks a whole segment object: footer, index, every block
/// (CRCs, order, bounds) and the counts the index claims.
pub fn decode_all(data: &Bytes) -> Result<(SegmentIndex, Vec<Entry>), DecodeError> {
    let size = data.len() as u64;
    if size < FOOTER_LEN {
        return Err("too short to be a segment".into());
    }
    let range = SegmentCheck::index_range(size, &data[(size - FOOTER_LEN) as usize..])?;
    let mut check = SegmentCheck::new(
        range.start,
        data.slice(range.start as usize..range.end as usize),
    )?;
    // doc_count is only a claim until the blocks are read: bound it by
    // what the blocks could hold.
    let claimed = check.index.doc_count.saturating_add(check.index.tombstones);
    let mut entries = Vec::with_capacity(claimed.min(range.start / 21) as usize);
    while let Some(block) = check.remaining().first() {
        let (lo, hi) = (
            block.offset as usize,
            (block.offset + u64::from(block.len)) as usize,
        );
        entries.extend(check.add_block(data.slice(lo..hi))?);
    }
    Ok((check.finish()?, entries))
}

/// Checks a segment one block at a time, so `verify` reads a segment of any
/// size in the memory of one block: the caller fetches the footer, then
/// the index (`index_range`), then each block `next_block` names, in order.
/// The checks are those of `decode_all` (which is built on this).
pub struct SegmentCheck {
    index: SegmentIndex,
    next: usize,
    last_id: Option<DocId>,
    live: u64,
    tombstones: u64,
}

impl SegmentCheck {
    /// Where the index of a `size`-byte segment lies, from its footer (the
    /// last `FOOTER_LEN` bytes).
    pub fn index_range(size: u64, footer: &[u8]) -> Result<std::ops::Range<u64>, DecodeError> {
        let (index_offset, index_len) = decode_footer(footer)?;
        let end = index_offset
            .checked_add(index_len)
            .and_then(|e| e.checked_add(FOOTER_LEN));
        if end != Some(size) {
            return Err("footer points outside the object".into());
        }
        Ok(index_offset..index_offset + index_len)
    }

    /// From the index bytes found at `index_offset`.
    pub fn new(index_offset: u64, index: Bytes) -> Result<SegmentCheck, DecodeError> {
        let index = SegmentIndex::decode(index)?;
        let mut expected_offset = 0;
        for b in &index.blocks {
            if b.offset != expected_offset || b.offset + u64::from(b.len) > index_offset {
                return Err("block handles do not tile the object".into());
            }
            expected_offset = b.offset + u64::from(b.len);
        }
        if expected_offset != index_offset {
            return Err("bytes between the last block and the index".into());
        }
        Ok(SegmentCheck {
            index,
            next: 0,
            last_id: None,
            live: 0,
            tombstones: 0,
        })
    }

    pub fn index(&self) -> &SegmentIndex {
        &self.index
    }

    /// The blocks still to check, in the order `add_block` takes them.
    pub fn remaining(&self) -> &[BlockHandle] {
        &self.index.blocks[self.next..]
    }

    /// Checks the bytes of the first `remaining` block; returns its entries.
    pub fn add_block(&mut self, data: Bytes) -> Result<Vec<Entry>, DecodeError> {
        let Some(handle) = self.index.blocks.get(self.next) else {
            return Err("more blocks than the index names".into());
        };
        let block = decode_block(data)?;
        if block.first().map(|e| &e.id) != Some(&handle.first_id)
            || block.last().map(|e| &e.id) != Some(&handle.last_id)
        {
            return Err("block bounds disagree with the index".into());
        }
        if let (Some(prev), Some(first)) = (&self.last_id, block.first()) {
            if prev >= &first.id {
                return Err("blocks are not sorted by id".into());
            }
        }
        self.next += 1;
        self.last_id = block.last().map(|e| e.id.clone());
        let live = block.iter().filter(|e| e.json.is_some()).count() as u64;
        self.live += live;
        self.tombstones += block.len() as u64 - live;
        Ok(block)
    }

    /// After the last block: the index, once its counts check out.
    pub fn finish(self) -> Result<SegmentIndex, DecodeError> {
        if self.next != self.index.blocks.len() {
            return Err("not every block was checked".into());
        }
        if self.live != self.index.doc_count || self.tombstones != self.index.tombstones {
            return Err("entry counts disagree with the index".into());
        }
        Ok(self.index)
    }
}

/// Builds a segment from entries given in strictly increasing id order.
pub struct SegmentBuilder {
    block_bytes: usize,
    out: Vec<u8>,
    block: Encoder,
    block_n: u32,
    block_first: Option<DocId>,
    block_last: Option<DocId>,
    blocks: Vec<BlockHandle>,
    doc_count: u64,
    tombstones: u64,
    min_id: Option<DocId>,
}

impl SegmentBuilder {
    pub fn new(block_bytes: usize) -> SegmentBuilder {
        SegmentBuilder {
            block_bytes: block_bytes.max(512),
            out: Vec::new(),
            block: Encoder::new(),
            block_n: 0,
            block_first: None,
            block_last: None,
            blocks: Vec::new(),
            doc_count: 0,
            tombstones: 0,
            min_id: None,
        }
    }

    pub fn add(&mut self, id: &DocId, seq: u64, mtime_ms: u64, json: Option<&Bytes>) {
        debug_assert!(self.block_last.as_ref().is_none_or(|l| l < id));
        if self.min_id.is_none() {
            self.min_id = Some(id.clone());
        }
        if self.block_first.is_none() {
            self.block_first = Some(id.clone());
        }
        self.block_last = Some(id.clone());
        self.block.str(id.as_str());
        self.block.u64(seq);
        self.block.u64(mtime_ms);
        match json {
            Some(json) => {
                self.block.u8(1);
                self.block.bytes(json);
                self.doc_count += 1;
            }
            None => {
                self.block.u8(2);
                self.tombstones += 1;
            }
        }
        self.block_n += 1;
        if self.block.len() >= self.block_bytes {
            self.finish_block();
        }
    }

    /// Bytes encoded so far (blocks and the open block), for cutting
    /// outputs at a size bound.
    pub fn bytes(&self) -> usize {
        self.out.len() + self.block.len()
    }

    fn finish_block(&mut self) {
        let (Some(first_id), Some(last_id)) = (self.block_first.take(), self.block_last.clone())
        else {
            return;
        };
        let body = std::mem::take(&mut self.block).into_vec();
        let mut enc = Encoder::with_capacity(body.len() + 8);
        enc.u32(self.block_n);
        enc.raw(&body);
        enc.crc();
        let bytes = enc.into_vec();
        self.blocks.push(BlockHandle {
            first_id,
            last_id,
            offset: self.out.len() as u64,
            len: bytes.len() as u32,
        });
        self.out.extend_from_slice(&bytes);
        self.block_n = 0;
    }

    /// Seals the segment: returns its bytes, manifest entry and index.
    pub fn finish(
        mut self,
        segment_id: String,
        wal_range: (u64, u64),
        replaces: Vec<String>,
        vector_dims: Option<usize>,
    ) -> (Bytes, SegmentMeta, SegmentIndex) {
        self.finish_block();
        let index = SegmentIndex {
            segment_id: segment_id.clone(),
            wal_lo: wal_range.0,
            wal_hi: wal_range.1,
            created_ms: super::layout::now_ms(),
            replaces: replaces.clone(),
            doc_count: self.doc_count,
            tombstones: self.tombstones,
            vector_dims,
            blocks: self.blocks,
        };
        let index_bytes = index.encode();
        let index_offset = self.out.len() as u64;
        let mut out = self.out;
        out.extend_from_slice(&index_bytes);
        let mut footer = Encoder::with_capacity(FOOTER_LEN as usize);
        footer.u64(index_offset);
        footer.u32(index_bytes.len() as u32);
        footer.u32(FORMAT_VERSION);
        footer.crc();
        footer.raw(FOOTER_MAGIC);
        out.extend_from_slice(&footer.into_vec());
        let meta = SegmentMeta {
            id: segment_id,
            size: out.len() as u64,
            index_offset,
            index_len: index_bytes.len() as u64,
            wal_lo: wal_range.0,
            wal_hi: wal_range.1,
            doc_count: index.doc_count,
            tombstones: index.tombstones,
            min_id: self.min_id.map(DocId::into_string).unwrap_or_default(),
            max_id: self.block_last.map(DocId::into_string).unwrap_or_default(),
            replaces,
        };
        (Bytes::from(out), meta, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_across_many_blocks() {
        let mut b = SegmentBuilder::new(512);
        for i in 0..1000u64 {
            let id = DocId::from(format!("doc{i:05}"));
            let json = (i % 7 != 0).then(|| Bytes::from(format!("{{\"n\":{i}}}")));
            b.add(&id, i, 1000 + i, json.as_ref());
        }
        let (bytes, meta, index) = b.finish("s1".into(), (1, 1000), vec!["old".into()], None);
        assert!(index.blocks.len() > 10, "{} blocks", index.blocks.len());
        let (decoded_index, entries) = decode_all(&bytes).unwrap();
        assert_eq!(decoded_index, index);
        assert_eq!(entries.len(), 1000);
        assert_eq!(meta.min_id, "doc00000");
        assert_eq!(meta.max_id, "doc00999");
        let i = index.block_for(&DocId::from("doc00500")).unwrap();
        let h = &index.blocks[i];
        let block =
            decode_block(bytes.slice(h.offset as usize..(h.offset + u64::from(h.len)) as usize))
                .unwrap();
        assert!(block.iter().any(|e| e.id.as_str() == "doc00500"));
        assert!(index.block_for(&DocId::from("zzz")).is_none());
        let mut corrupt = bytes.to_vec();
        corrupt[10] ^= 1;
        assert!(decode_all(&Bytes::from(corrupt)).is_err());
    }
}
