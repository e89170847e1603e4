//! WAL objects: one immutable object per write group, at `<ns>/wal/<seq>`,
//! always written with create-if-absent so a second writer at the same
//! sequence is refused (fenced) instead of overwriting.
//!
//! Format (sealed, magic `REEFWAL1`):
//!
//! ```text
//! writer_id: str | seq: u64 | mtime_ms: u64 | kind: u8 | vector_dims: u32 (0 = none yet)
//! n_ops: u32 | n_ops × (tag: u8 (1 put, 2 delete) | id: str | put: json bytes)
//! ```
//!
//! Kinds: `BATCH` carries documents; `FENCE` is written by a writer when it
//! takes over a namespace (so an older writer's next put at this sequence
//! fails); `VOID` replaces a corrupt object that repair set aside, so the
//! sequence stays dense and cannot be reused by a zombie writer.
//! Puts hold already-resolved canonical JSON (patches are applied before the
//! write), so replay never needs to read older state.

use bytes::Bytes;

use super::codec::{seal, unseal, DecodeError, Decoder, Encoder};
use crate::types::DocId;

const MAGIC: &[u8; 8] = b"REEFWAL1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    Batch = 0,
    Fence = 1,
    Void = 2,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    pub writer_id: String,
    pub seq: u64,
    pub mtime_ms: u64,
    pub kind: WalKind,
    pub vector_dims: Option<usize>,
    /// `(id, Some(json))` is a put, `(id, None)` a delete.
    pub ops: Vec<(DocId, Option<Bytes>)>,
}

impl WalRecord {
    pub fn marker(writer_id: &str, seq: u64, kind: WalKind, vector_dims: Option<usize>) -> Self {
        WalRecord {
            writer_id: writer_id.to_string(),
            seq,
            mtime_ms: super::layout::now_ms(),
            kind,
            vector_dims,
            ops: Vec::new(),
        }
    }

    pub fn encode(&self) -> Bytes {
        let size: usize = self
            .ops
            .iter()
            .map(|(id, json)| id.as_str().len() + json.as_ref().map_or(0, |j| j.len()) + 9)
            .sum();
        let mut enc = Encoder::with_capacity(size + 64);
        enc.str(&self.writer_id);
        enc.u64(self.seq);
        enc.u64(self.mtime_ms);
        enc.u8(self.kind as u8);
        enc.u32(self.vector_dims.unwrap_or(0) as u32);
        enc.u32(self.ops.len() as u32);
        for (id, json) in &self.ops {
            match json {
                Some(json) => {
                    enc.u8(1);
                    enc.str(id.as_str());
                    enc.bytes(json);
                }
                None => {
                    enc.u8(2);
                    enc.str(id.as_str());
                }
            }
        }
        Bytes::from(seal(MAGIC, &enc.into_vec()))
    }

    /// Decodes and checks that the record belongs at sequence `seq`.
    pub fn decode(data: Bytes, seq: u64) -> Result<WalRecord, DecodeError> {
        let mut dec = Decoder::new(unseal(MAGIC, data)?);
        let writer_id = dec.string()?;
        let found_seq = dec.u64()?;
        if found_seq != seq {
            return Err(format!("holds sequence {found_seq}, expected {seq}"));
        }
        let mtime_ms = dec.u64()?;
        let kind = match dec.u8()? {
            0 => WalKind::Batch,
            1 => WalKind::Fence,
            2 => WalKind::Void,
            k => return Err(format!("unknown record kind {k}")),
        };
        let dims = dec.u32()? as usize;
        // An op is at least a tag and an id length.
        let n = dec.count(5)?;
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            let tag = dec.u8()?;
            let id = DocId::from(dec.string()?);
            let json = match tag {
                1 => Some(dec.bytes()?),
                2 => None,
                t => return Err(format!("unknown op tag {t}")),
            };
            ops.push((id, json));
        }
        dec.finish()?;
        Ok(WalRecord {
            writer_id,
            seq,
            mtime_ms,
            kind,
            vector_dims: (dims > 0).then_some(dims),
            ops,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_check_their_sequence() {
        let rec = WalRecord {
            writer_id: "w1".into(),
            seq: 7,
            mtime_ms: 123,
            kind: WalKind::Batch,
            vector_dims: Some(3),
            ops: vec![
                (DocId::from("a"), Some(Bytes::from_static(b"{}"))),
                (DocId::from("b"), None),
            ],
        };
        let data = rec.encode();
        assert_eq!(WalRecord::decode(data.clone(), 7).unwrap(), rec);
        assert!(WalRecord::decode(data, 8).is_err());
    }
}
