//! `.changes` in each namespace (DESIGN.md §8): the change feed
//! (`engine::changes`) as a file that grows as commits land, so `tail -f`
//! follows the writer, on a `ro` follower mount too.
//!
//! The file is the lines of every retained WAL object after a *base*
//! sequence, in order. The daemon keeps an index (sequence -> end offset)
//! and renders lines on demand from the WAL objects (cached, bounded),
//! so memory is 16 bytes per commit plus the cache. Lookup, `stat` and
//! open read the WAL objects committed since the last look (one LIST when
//! nothing is new) and grow the index; the file's attributes are never
//! cached by the kernel (`Attr::uncached`) and reads bypass the page cache,
//! so every `fstat` of a follower like `tail -f` sees the new size.
//!
//! Offsets stay put while the daemon runs: bytes once shown never change.
//! The base moves only at an open while no handle has the file open and GC
//! has deleted the WAL objects just after it (the file then starts at the
//! oldest retained change, and is shorter). A handle still reading lines
//! whose WAL objects GC has since deleted, and that fell out of the cache,
//! gets EIO and a log line; `reef changes --from SEQ` is the way to resume
//! reliably from a point.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::engine::changes::{self, ChangeBatch};
use crate::engine::layout::wal_key;
use crate::engine::wal::WalRecord;
use crate::engine::EngineError;
use crate::fs::error::{FsError, FsResult};
use crate::store::ObjectStore;

/// Bytes of rendered lines kept in memory (the newest first).
const CACHE_BYTES: usize = 8 << 20;
/// WAL objects read per round while catching up.
const ROUND: usize = 1024;

#[derive(Default)]
pub(crate) struct ChangesFeed {
    state: tokio::sync::Mutex<Feed>,
    /// The file's current size, for attributes (read without waiting).
    size: AtomicU64,
}

#[derive(Default)]
struct Feed {
    /// The lines shown start after this sequence; `None` before first use.
    base: Option<u64>,
    /// The last sequence read.
    last: u64,
    /// (sequence, end offset of its lines) for sequences with lines.
    ends: Vec<(u64, u64)>,
    cache: BTreeMap<u64, Bytes>,
    cached_bytes: usize,
}

impl Feed {
    fn size(&self) -> u64 {
        self.ends.last().map_or(0, |e| e.1)
    }

    fn push(&mut self, b: ChangeBatch) {
        self.last = b.seq;
        if b.lines.is_empty() {
            return;
        }
        let end = self.size() + b.lines.len() as u64;
        self.ends.push((b.seq, end));
        self.cached_bytes += b.lines.len();
        self.cache.insert(b.seq, b.lines);
        while self.cached_bytes > CACHE_BYTES {
            let Some((_, old)) = self.cache.pop_first() else {
                break;
            };
            self.cached_bytes -= old.len();
        }
    }
}

impl ChangesFeed {
    /// The current size (0 before the first look).
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Reads what was committed since the last look; with `may_rebase`
    /// (an open with no other handle), starts over at the oldest retained
    /// change when GC deleted the ones just after the base.
    pub async fn refresh(
        &self,
        store: &Arc<dyn ObjectStore>,
        ns: &str,
        may_rebase: bool,
    ) -> FsResult<u64> {
        let mut feed = self.state.lock().await;
        if let (true, Some(base)) = (may_rebase, feed.base) {
            let oldest = changes::oldest_retained(store, ns).await?;
            if oldest > base + 1 {
                log::info!(
                    "{ns}/.changes: changes up to sequence {} were collected; the file starts over after it",
                    oldest - 1
                );
                *feed = Feed::default();
            }
        }
        loop {
            let after = feed.base.map(|_| feed.last);
            let batch = match changes::read_after(store, ns, after, ROUND).await {
                Ok(b) => b,
                // Not looked at for longer than retention: start over.
                Err(EngineError::NotRetained { .. }) if after.is_some() => {
                    log::info!("{ns}/.changes: the changes after sequence {} were collected; the file starts over", feed.last);
                    *feed = Feed::default();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if feed.base.is_none() {
                let base = match batch.first() {
                    Some(b) => b.seq - 1,
                    None => changes::oldest_retained(store, ns).await?.saturating_sub(1),
                };
                feed.base = Some(base);
                feed.last = base;
            }
            let done = batch.len() < ROUND;
            for b in batch {
                feed.push(b);
            }
            if done {
                break;
            }
        }
        let size = feed.size();
        self.size.store(size, Ordering::Release);
        Ok(size)
    }

    /// Up to `len` bytes at `offset` of what the index holds.
    pub async fn read(
        &self,
        store: &Arc<dyn ObjectStore>,
        ns: &str,
        offset: u64,
        len: u32,
    ) -> FsResult<Vec<u8>> {
        let feed = self.state.lock().await;
        let end = offset.saturating_add(u64::from(len)).min(feed.size());
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        // The first sequence whose lines end after `offset`.
        let mut i = feed.ends.partition_point(|e| e.1 <= offset);
        while i < feed.ends.len() {
            let (seq, stop) = feed.ends[i];
            let start = if i == 0 { 0 } else { feed.ends[i - 1].1 };
            if start >= end {
                break;
            }
            let lines = match feed.cache.get(&seq) {
                Some(l) => l.clone(),
                None => render_again(store, ns, seq).await?,
            };
            let from = offset.saturating_sub(start) as usize;
            let to = (end.min(stop) - start) as usize;
            out.extend_from_slice(&lines[from.min(lines.len())..to.min(lines.len())]);
            i += 1;
        }
        Ok(out)
    }
}

/// The lines of WAL object `seq`, read again after they left the cache.
async fn render_again(store: &Arc<dyn ObjectStore>, ns: &str, seq: u64) -> FsResult<Bytes> {
    let key = wal_key(ns, seq);
    let data = match store.get(&key).await {
        Ok(d) => d,
        Err(e) if e.is_not_found() => {
            log::error!("{ns}/.changes: the changes of sequence {seq} were collected by GC while the file was open; reopen it, or resume with `reef changes --from {}`", seq.saturating_sub(1));
            return Err(FsError::Io(format!("changes of sequence {seq} were collected")));
        }
        Err(e) => return Err(e.into()),
    };
    let rec = WalRecord::decode(data, seq)
        .map_err(|reason| FsError::from(EngineError::Corrupt { key, reason }))?;
    Ok(changes::render(&rec))
}
