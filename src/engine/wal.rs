//! WAL objects: one immutable object per write group, at `<ns>/wal/<seq>`,
//! always written with create-if-absent so a second writer at the same
//! sequence is refused (fenced) instead of overwriting.
//!
//! Format (sealed, magic `REEFWAL1`):
//!
//! ```text
//! writer_id: str | seq: u64 | mtime_ms: u64 | kind: u8 | vector_dims: u32 (0 = none yet)
//! n_ops: u32 | n_ops × op
//! op: tag 1 (put)            | id: str | json: bytes
//!     tag 2 (delete)         | id: str
//!     tag 3 (put with time)  | id: str | mtime: u64 (a stamp, see `stamp`) | json: bytes
//! ```
//!
//! A put takes the record's `mtime_ms` as its document's time unless it
//! carries its own (tag 3: a time set through the filesystem, a rename that
//! keeps the time). Tag 3 is written only when the op's time differs from
//! the record's, so ordinary writes keep the original layout.
//!
//! Kinds: `BATCH` carries documents; `FENCE` is written by a writer when it
//! takes over a namespace (so an older writer's next put at this sequence
//! fails); `VOID` replaces a corrupt object that repair set aside, so the
//! sequence stays dense and cannot be reused by a zombie writer.
//! Puts hold already-resolved JSON (patches are applied before the write,
//! a time change is written as a put of the unchanged bytes), so replay
//! never needs to read older state.
//!
//! ## Pipelined puts, and why a failed one never becomes visible
//!
//! A writer has up to `PIPELINE_DEPTH` WAL puts in flight at once
//! (`pipeline`), and acknowledges the group at sequence `s` only once every
//! sequence up to `s` is durable. When the put at `f` fails, the groups
//! after it in flight fail too, though some of their puts may land: those
//! objects (*strays*) were never acknowledged and must never be applied.
//! Two facts bound them: a writer starts the put at `s` only once every
//! sequence at or below `s - PIPELINE_DEPTH` is durable, so every stray of
//! a failure at `f` lies in `(f, f + PIPELINE_DEPTH)`; and no stray is
//! ever written after the writer learned of the failure. Replay (open,
//! refresh, history) follows two rules that rest on them:
//!
//! 1. **Gap.** The replayed WAL above the flushed point is dense and ends
//!    at the first missing sequence `g`. Objects past `g` but below
//!    `g + PIPELINE_DEPTH` are strays of a failure at `g` and are ignored
//!    (with a log line); an object further on cannot be one, so a hole
//!    there is damage and fails the open, naming it.
//! 2. **Writer continuity.** A BATCH whose writer is not the writer of the
//!    newest FENCE replayed is a stray of a writer that was fenced (its put
//!    at the fence's sequence failed, so it acknowledged nothing after it)
//!    and is skipped. VOIDs are transparent. This relies on every open for
//!    writing having a writer id of its own, as the default one does.
//!
//! The failing writer, if it lives on, heals before its next group: it
//! overwrites its strays (slots its own create-if-absent won, so no other
//! writer can hold them) and fills the rest of `[f, last stray]` with VOID
//! markers, `f` itself last: until that last put lands the gap at `f`
//! hides everything after it (rule 1), and once it has, only VOIDs are left.
//! With no stray there is nothing to hide, and the next group reuses `f`.
//!
//! ## Taking over: the fence claims the whole window
//!
//! A writer that opens writes its FENCE at the first free sequence `F`
//! (the end of the dense run, which may fill a crashed pipeline's hole) and
//! then a VOID at every free slot of `(F, F + PIPELINE_DEPTH)`, and writes
//! its first batch after that. The writer it fenced — dead, or a zombie
//! still running — may have puts in flight, but only inside that window:
//! it started the put at `s` only once everything up to
//! `s - PIPELINE_DEPTH` was answered, every slot below `F` existed when the
//! new writer listed, and its put at `F` fails on the fence. So once the
//! open returns, each slot of the window holds a VOID of the new writer or
//! such a stray, which follows the fence and is skipped (rule 2), however
//! late it lands; and since the new writer's first flush covers the window,
//! no replay ever starts inside it, past the fence that explains it. A slot
//! already holding a VOID stays claimed (an opener that died mid-claim
//! leaves some); one holding a FENCE means a third writer is opening at
//! the same time: the open starts over from a fresh listing.
//!
//! The window's VOIDs are nobody's next slot, so GC deletes them once a
//! flush covers them, like batches, and keeps only the FENCE: the writer
//! it stopped aims its next put at the fence (its put there failed, so it
//! acknowledges nothing from there on), and a stray of it landing in a
//! freed slot of the window later lies below the flushed point, where no
//! replay reads. A replay tells these VOIDs (same writer as the newest
//! FENCE, inside its window) from the ones repair or a heal wrote, which
//! are kept as before.
//!
//! What this does not cover: a put that failed without an answer and lands
//! after the writer gave up on it (the same as before pipelining, see
//! `store::create_resolved`).

use bytes::Bytes;

use super::codec::{seal, unseal, DecodeError, Decoder, Encoder};
use crate::types::DocId;

const MAGIC: &[u8; 8] = b"REEFWAL1";

/// WAL puts one writer has in flight at most; part of the format, since
/// replay's gap rule relies on it (see the module doc).
pub const PIPELINE_DEPTH: u64 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    Batch = 0,
    Fence = 1,
    Void = 2,
}

/// One change in a record: a put of `json` (a tombstone when `None`) whose
/// document time is `mtime` (a stamp, see `stamp`).
#[derive(Debug, Clone, PartialEq)]
pub struct WalOp {
    pub id: DocId,
    pub json: Option<Bytes>,
    pub mtime: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    pub writer_id: String,
    pub seq: u64,
    pub mtime_ms: u64,
    pub kind: WalKind,
    pub vector_dims: Option<usize>,
    pub ops: Vec<WalOp>,
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
            .map(|op| op.id.as_str().len() + op.json.as_ref().map_or(0, |j| j.len()) + 17)
            .sum();
        let mut enc = Encoder::with_capacity(size + 64);
        enc.str(&self.writer_id);
        enc.u64(self.seq);
        enc.u64(self.mtime_ms);
        enc.u8(self.kind as u8);
        enc.u32(self.vector_dims.unwrap_or(0) as u32);
        enc.u32(self.ops.len() as u32);
        let own_time = super::stamp::from_ms(self.mtime_ms);
        for op in &self.ops {
            match &op.json {
                Some(json) if op.mtime == own_time => {
                    enc.u8(1);
                    enc.str(op.id.as_str());
                    enc.bytes(json);
                }
                Some(json) => {
                    enc.u8(3);
                    enc.str(op.id.as_str());
                    enc.u64(op.mtime);
                    enc.bytes(json);
                }
                None => {
                    enc.u8(2);
                    enc.str(op.id.as_str());
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
            let (json, mtime) = match tag {
                1 => (Some(dec.bytes()?), super::stamp::from_ms(mtime_ms)),
                2 => (None, super::stamp::from_ms(mtime_ms)),
                3 => {
                    let mtime = dec.u64()?;
                    (Some(dec.bytes()?), mtime)
                }
                t => return Err(format!("unknown op tag {t}")),
            };
            ops.push(WalOp { id, json, mtime });
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
                WalOp {
                    id: DocId::from("a"),
                    json: Some(Bytes::from_static(b"{}")),
                    mtime: super::super::stamp::from_ms(123),
                },
                WalOp {
                    id: DocId::from("b"),
                    json: None,
                    mtime: super::super::stamp::from_ms(123),
                },
                WalOp {
                    id: DocId::from("c"),
                    json: Some(Bytes::from_static(b" {\"x\" : 1}\n")),
                    mtime: 77 | 1 << 63,
                },
            ],
        };
        let data = rec.encode();
        assert_eq!(WalRecord::decode(data.clone(), 7).unwrap(), rec);
        assert!(WalRecord::decode(data, 8).is_err());
    }

    /// Records written before per-op times (tags 1 and 2 only) decode with
    /// the record's time on every op; such a record is what `encode` still
    /// writes when no op has a time of its own.
    #[test]
    fn records_without_per_op_times_keep_the_old_layout() {
        let mut enc = Encoder::with_capacity(64);
        enc.str("w1");
        enc.u64(3);
        enc.u64(1_000);
        enc.u8(0);
        enc.u32(0);
        enc.u32(2);
        enc.u8(1);
        enc.str("a");
        enc.bytes(b"{}");
        enc.u8(2);
        enc.str("b");
        let old = Bytes::from(seal(MAGIC, &enc.into_vec()));
        let rec = WalRecord::decode(old.clone(), 3).unwrap();
        assert_eq!(rec.ops.len(), 2);
        assert!(rec.ops.iter().all(|op| op.mtime == 1_000));
        assert_eq!(rec.encode(), old);
    }
}
