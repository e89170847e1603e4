//! The change feed (DESIGN.md §8): one JSON line per committed operation,
//! in sequence order, read straight from the retained WAL objects.
//!
//! ```text
//! {"seq":12,"time":"2026-12-01T07:00:00.123Z","op":"upsert","id":"2026/12/a1"}
//! {"seq":13,"time":"2026-12-01T07:00:01.456Z","op":"delete","id":"a2"}
//! ```
//!
//! `seq` is the WAL object that committed the operation (a group commit
//! gives several operations one `seq`, in the order they were applied),
//! `time` its commit time. FENCE and VOID objects carry no operations and
//! give no lines. A WAL object never changes once written, so the lines of
//! a sequence are the same whenever and wherever they are rendered: a
//! consumer that resumes after the last `seq` it saw gets no gap and no
//! duplicate. Resuming from a point whose next WAL object GC already
//! deleted is refused (`NotRetained`) rather than silently skipping.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::layout::{self, wal_dir, wal_key};
use super::wal::WalRecord;
use super::{manifest, timeline};
use super::{EngineError, EngineResult};
use crate::store::ObjectStore;

/// The lines of one WAL object.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeBatch {
    pub seq: u64,
    pub time_ms: u64,
    /// Newline-terminated JSON lines (empty for a FENCE or VOID object).
    pub lines: Bytes,
}

/// WAL objects fetched concurrently.
const PARALLELISM: usize = 32;

/// The lines of record `rec`.
pub fn render(rec: &WalRecord) -> Bytes {
    let time = timeline::format_ms(rec.mtime_ms);
    let mut out = String::new();
    for op in &rec.ops {
        let kind = if op.json.is_some() {
            "upsert"
        } else {
            "delete"
        };
        // A string always serializes.
        let id = serde_json::to_string(op.id.as_str()).unwrap_or_default();
        out.push_str(&format!(
            "{{\"seq\":{},\"time\":\"{time}\",\"op\":\"{kind}\",\"id\":{id}}}\n",
            rec.seq
        ));
    }
    Bytes::from(out)
}

/// The first sequence whose changes are retained: the start of the dense
/// run of WAL objects that ends at the newest one. When every WAL object
/// is covered by the newest manifest and collected (what is left is a run
/// of FENCE markers below its flushed point), the next commit's.
pub async fn oldest_retained(store: &Arc<dyn ObjectStore>, ns: &str) -> EngineResult<u64> {
    let seqs = timeline::wal_seqs(store, ns).await?;
    oldest_of(store, ns, &seqs).await
}

async fn oldest_of(store: &Arc<dyn ObjectStore>, ns: &str, seqs: &[u64]) -> EngineResult<u64> {
    let flushed = manifest::load_latest(store, ns)
        .await?
        .map_or(0, |m| m.flushed_through);
    let tail_start = seqs
        .get(timeline::dense_tail_start(seqs))
        .copied()
        .unwrap_or(0);
    match seqs.last() {
        Some(newest) if *newest > flushed => Ok(tail_start),
        _ => Ok(flushed + 1),
    }
}

/// The changes of at most `max` WAL objects after sequence `after` (`None`:
/// from the oldest retained one), in sequence order; empty when nothing
/// newer is committed. Refuses a start whose next object GC deleted.
pub async fn read_after(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    after: Option<u64>,
    max: usize,
) -> EngineResult<Vec<ChangeBatch>> {
    layout::check_namespace(ns)?;
    let dir = wal_dir(ns);
    let mut seqs: Vec<u64> = match after {
        Some(a) => store.list(&dir, Some(&wal_key(ns, a))).await?,
        None => store.list(&dir, None).await?,
    }
    .iter()
    .filter_map(|m| layout::parse_numbered(&dir, &m.key))
    .filter(|s| after.is_none_or(|a| *s > a))
    .collect();
    seqs.sort_unstable();
    let from = match after {
        Some(a) => a + 1,
        None => oldest_of(store, ns, &seqs).await?,
    };
    if let (Some(a), Some(first)) = (after, seqs.first()) {
        if *first != a + 1 {
            return Err(EngineError::NotRetained {
                ns: ns.to_string(),
                seq: a,
                retained: format!(
                    "the changes after it were collected; the oldest retained change is at sequence {} (resume with --from {})",
                    oldest_retained(store, ns).await?,
                    oldest_retained(store, ns).await?.saturating_sub(1),
                ),
            });
        }
    }
    // The dense run from `from` on, at most `max` objects.
    let run: Vec<u64> = seqs
        .into_iter()
        .skip_while(|s| *s < from)
        .enumerate()
        .take_while(|(i, s)| *s == from + *i as u64)
        .map(|(_, s)| s)
        .take(max)
        .collect();
    let mut fetched = futures::stream::iter(run)
        .map(|seq| async move {
            let key = wal_key(ns, seq);
            let data = store.get(&key).await;
            (seq, key, data)
        })
        .buffered(PARALLELISM);
    let mut out = Vec::new();
    while let Some((seq, key, data)) = fetched.next().await {
        let rec =
            WalRecord::decode(data?, seq).map_err(|reason| EngineError::Corrupt { key, reason })?;
        out.push(ChangeBatch {
            seq,
            time_ms: rec.mtime_ms,
            lines: render(&rec),
        });
    }
    Ok(out)
}

/// Writes the lines after `after` (`None`: from the oldest retained) to
/// `out`, flushing after each batch; with `follow`, polls the store at that
/// interval for new commits and never returns unless an error (a closed
/// pipe included) stops it. Returns the last sequence written.
pub async fn copy_to(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    mut after: Option<u64>,
    follow: Option<std::time::Duration>,
    out: &mut (dyn std::io::Write + Send),
) -> EngineResult<Option<u64>> {
    let write_err = |e: std::io::Error| EngineError::WriteFailed {
        ns: ns.to_string(),
        message: format!("writing changes: {e}"),
    };
    if after.is_none() {
        // Starting "from the oldest" once: later polls resume after what
        // was seen, so a GC in between cannot make them skip anything.
        let batch = read_after(store, ns, None, BATCH).await?;
        after = emit(&batch, out).map_err(write_err)?.or(after);
        if after.is_none() {
            after = Some(oldest_retained(store, ns).await?.saturating_sub(1));
        }
    }
    loop {
        let batch = read_after(store, ns, after, BATCH).await?;
        let last = emit(&batch, out).map_err(write_err)?;
        match (last, follow) {
            (Some(seq), _) => after = Some(seq),
            (None, Some(every)) => tokio::time::sleep(every).await,
            (None, None) => return Ok(after),
        }
    }
}

/// WAL objects read per round of `copy_to`.
const BATCH: usize = 1024;

fn emit(
    batch: &[ChangeBatch],
    out: &mut (dyn std::io::Write + Send),
) -> std::io::Result<Option<u64>> {
    for b in batch {
        out.write_all(&b.lines)?;
    }
    out.flush()?;
    Ok(batch.last().map(|b| b.seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wal::{WalKind, WalOp};
    use crate::types::DocId;

    #[test]
    fn lines_follow_the_contract_and_escape_ids() {
        let rec = WalRecord {
            writer_id: "w".into(),
            seq: 12,
            mtime_ms: 1_796_108_400_123,
            kind: WalKind::Batch,
            vector_dims: None,
            ops: vec![
                WalOp {
                    id: DocId::from("2026/12/a\"1"),
                    json: Some(Bytes::from_static(b"{}")),
                    mtime: 0,
                },
                WalOp {
                    id: DocId::from("b"),
                    json: None,
                    mtime: 0,
                },
            ],
        };
        let text = String::from_utf8(render(&rec).to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"seq":12,"time":"2026-12-01T07:00:00.123Z","op":"upsert","id":"2026/12/a\"1"}"#,
                r#"{"seq":12,"time":"2026-12-01T07:00:00.123Z","op":"delete","id":"b"}"#,
            ]
        );
        for l in lines {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
    }
}
