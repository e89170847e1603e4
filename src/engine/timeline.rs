//! Time and sequence: which WAL sequence was the newest committed at a
//! given time (DESIGN.md §8, `.versions/@TIME/`, `reef export --at TIME`).
//!
//! Every WAL object carries the millisecond time its writer committed it
//! (`WalRecord::mtime_ms`), and every manifest its `created_ms`. A writer
//! stamps its groups in sequence order from one clock, so within the
//! retained WAL (a dense run of sequences) commit times do not decrease and
//! the newest sequence committed at or before `t` is found by a binary
//! search: one GET per probe, `log2(n)` for `n` retained commits, plus the
//! listing. (After a takeover by a machine whose clock is behind, times
//! around the takeover may step back; the search then still returns a
//! sequence committed at or before `t`, not necessarily the newest one.)
//!
//! The search runs over the retained range (`history::retained_range`).
//! Its oldest state (a manifest's flushed point, whose WAL object GC may
//! have deleted) counts, when its WAL object is gone, only if a manifest
//! with exactly that flushed point was created at or before `t`: the state
//! was committed no later than the manifest that contains it.
//!
//! WAL objects never change, so their times are cached (`WalTimes`): a
//! second lookup costs only the listing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::layout::{self, wal_dir, wal_key};
use super::wal::WalRecord;
use super::{EngineError, EngineResult};
use crate::store::ObjectStore;

/// Cached commit times of WAL objects (immutable once written), bounded.
#[derive(Debug, Default)]
pub struct WalTimes {
    times: Mutex<HashMap<u64, u64>>,
}

/// Entries `WalTimes` holds before it starts over.
const WAL_TIMES_MAX: usize = 1 << 16;

impl WalTimes {
    /// The commit time (ms) of WAL object `seq`; `None` if it is gone.
    pub async fn get(
        &self,
        store: &Arc<dyn ObjectStore>,
        ns: &str,
        seq: u64,
    ) -> EngineResult<Option<u64>> {
        if let Some(ms) = self.times.lock().get(&seq) {
            return Ok(Some(*ms));
        }
        let key = wal_key(ns, seq);
        let data = match store.get(&key).await {
            Ok(d) => d,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let rec = WalRecord::decode(data, seq).map_err(|reason| EngineError::Corrupt {
            key: key.clone(),
            reason,
        })?;
        self.remember(seq, rec.mtime_ms);
        Ok(Some(rec.mtime_ms))
    }

    /// Records a commit time learned elsewhere (a replay, the change feed).
    pub fn remember(&self, seq: u64, ms: u64) {
        let mut times = self.times.lock();
        if times.len() >= WAL_TIMES_MAX {
            times.clear();
        }
        times.insert(seq, ms);
    }
}

/// Where a time falls in the retained history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimePoint {
    /// The newest sequence committed at or before the time.
    pub seq: u64,
    /// When it was committed (ms since the epoch; for the start of the
    /// retained run whose WAL object is gone, its manifest's time).
    pub committed_ms: u64,
    /// The newest sequence in the store when it was looked up; when `seq`
    /// is older, later commits cannot change the answer.
    pub newest: u64,
}

/// The sorted sequences of the WAL objects in `ns`.
pub async fn wal_seqs(store: &Arc<dyn ObjectStore>, ns: &str) -> EngineResult<Vec<u64>> {
    let dir = wal_dir(ns);
    let mut seqs: Vec<u64> = store
        .list(&dir, None)
        .await?
        .iter()
        .filter_map(|m| layout::parse_numbered(&dir, &m.key))
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// The index in `seqs` where its dense tail (the retained WAL run) starts.
pub fn dense_tail_start(seqs: &[u64]) -> usize {
    let mut i = seqs.len();
    while i > 1 && seqs[i - 2] + 1 == seqs[i - 1] {
        i -= 1;
    }
    i.saturating_sub(1).min(seqs.len())
}

/// Nanoseconds since the epoch (times before it count as the epoch).
pub fn to_ns(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// RFC 3339 with milliseconds, UTC: how times are shown in lines and errors.
pub fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The newest sequence of `ns` committed at or before `t`.
pub async fn seq_at_time(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    t: SystemTime,
    times: &WalTimes,
) -> EngineResult<TimePoint> {
    let t_ns = to_ns(t);
    let at_or_before = |ms: u64| u128::from(ms) * 1_000_000 <= t_ns;
    let seqs = wal_seqs(store, ns).await?;
    if let Some((lo, newest)) = super::history::retained_range_of(store, ns, &seqs).await? {
        // WAL objects lo+1 ..= newest exist. Invariant: those before index
        // `a` were committed at or before t, those from `b` on after it.
        let (mut a, mut b) = (lo + 1, newest + 1);
        let mut found = None;
        while a < b {
            let mid = a + (b - a) / 2;
            let Some(ms) = times.get(store, ns, mid).await? else {
                // Deleted by GC since the listing: that part is out of reach.
                a = mid + 1;
                continue;
            };
            if at_or_before(ms) {
                found = Some((mid, ms));
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        // Else the oldest retained state, if it was committed by then: its
        // WAL object's time, or (GC deleted it) its manifest's.
        if found.is_none() {
            let ms = match times.get(store, ns, lo).await? {
                Some(ms) => Some(ms),
                None => super::history::flush_point_created_ms(store, ns, lo).await,
            };
            found = ms.filter(|ms| at_or_before(*ms)).map(|ms| (lo, ms));
        }
        if let Some((seq, committed_ms)) = found {
            return Ok(TimePoint {
                seq,
                committed_ms,
                newest,
            });
        }
    }
    Err(EngineError::TimeNotRetained {
        ns: ns.to_string(),
        time: humantime::format_rfc3339_nanos(t).to_string(),
        retained: super::history::describe_retained(store, ns, times).await,
    })
}

/// Parses an RFC 3339 time (`2026-12-01T07:00:00Z`, fractions and offsets
/// such as `+01:00` allowed).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        if text.ends_with('Z') || text.ends_with('z') {
            return Ok(t);
        }
    }
    parse_with_offset(text).ok_or_else(|| {
        format!("{text:?} is not an RFC 3339 time (e.g. 2026-12-01T07:00:00Z or 2026-12-01T08:00:00+01:00)")
    })
}

/// `...±HH:MM`: humantime reads only UTC, so the offset is applied here.
fn parse_with_offset(text: &str) -> Option<SystemTime> {
    let split = text.len().checked_sub(6)?;
    let (local, offset) = (text.get(..split)?, text.get(split..)?);
    let sign = match offset.as_bytes().first()? {
        b'+' => 1i64,
        b'-' => -1i64,
        _ => return None,
    };
    let (h, m) = offset.get(1..)?.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 || !local.contains('T') {
        return None;
    }
    let utc = humantime::parse_rfc3339_weak(local).ok()?;
    let shift = Duration::from_secs(((h * 60 + m) * 60) as u64);
    if sign > 0 {
        utc.checked_sub(shift)
    } else {
        utc.checked_add(shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_with_zulu_or_an_offset_and_nothing_else() {
        let z = parse_time("2026-12-01T07:00:00Z").unwrap();
        assert_eq!(parse_time("2026-12-01T08:00:00+01:00").unwrap(), z);
        assert_eq!(parse_time("2026-12-01T06:30:00-00:30").unwrap(), z);
        let frac = parse_time("2026-12-01T07:00:00.250Z").unwrap();
        assert_eq!(frac.duration_since(z).unwrap(), Duration::from_millis(250));
        for bad in [
            "",
            "yesterday",
            "2026-12-01",
            "2026-12-01T07:00:00",
            "12",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_dense_tail_is_the_last_run_of_consecutive_sequences() {
        assert_eq!(dense_tail_start(&[]), 0);
        assert_eq!(dense_tail_start(&[5]), 0);
        assert_eq!(dense_tail_start(&[1, 2, 3]), 0);
        assert_eq!(dense_tail_start(&[1, 4, 5, 6]), 1);
        assert_eq!(dense_tail_start(&[1, 4, 5, 9]), 3);
    }
}
