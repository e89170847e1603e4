//! Garbage collection: deleting what no retained state needs (DESIGN.md §4).
//!
//! # What is kept
//!
//! With `cutoff = now - retain`, the *horizon* is the newest manifest
//! created at or before the cutoff (the state that was current then), or
//! the oldest manifest when all are younger. Kept:
//!
//! - every manifest from the horizon on, and the segments they name;
//! - every WAL object after the horizon's `flushed_through`: together with
//!   those manifests this serves every state committed within retention
//!   (`Engine::open_at`);
//! - for each checkpoint: its manifest, that manifest's segments and the
//!   WAL in `(flushed_through, seq]`; for each *pending* checkpoint (one
//!   being created by another process, see `checkpoint`), every manifest
//!   from its floor on, as if the horizon were there;
//! - every FENCE and VOID WAL object and every claim manifest, forever
//!   (the fencing boundaries below; one of each per writer open, tiny),
//!   but for the VOIDs an opener writes to claim its fence's window,
//!   which are nobody's next slot and go once flushed (`wal`);
//!   A legacy manifest (written before manifests said whether they are a
//!   claim) counts as a claim unless it is certainly a flush: same writer
//!   id as its predecessor, different content (`Lineage::legacy_is_flush`);
//! - segments no manifest names that are younger than the orphan grace.
//!
//! Everything else is deleted: WAL covered by the horizon's segments,
//! segments only older manifests name (replaced by a compaction), older
//! manifests, and orphan segments past the grace period. Deletes go
//! segments, then WAL, then manifests, so a pass cut short (crash, error,
//! the per-pass bound) leaves old manifests that still explain every
//! remaining segment, and the next pass finishes the job.
//!
//! # Why fencing stays sound (the safety argument)
//!
//! Fencing relies on create-if-absent: a fenced writer's next WAL put and
//! next manifest commit must find their slot taken. Deleting objects frees
//! slots, so GC must never free the *next* slot of any writer that might
//! still be running. Those slots are known exactly, without clocks:
//!
//! 1. **WAL.** A writer `A` writes sequence `s+1` only after `s`; its next
//!    slot is `last_A + 1`. A new writer `B` fences by writing a FENCE at
//!    `L + 1`, where `L` is the last sequence it saw at open, and retries
//!    on a lost race. If `A`'s in-flight put landed at `L + 1` first, `B`'s
//!    fence fails and `B` retries higher; otherwise `A`'s put fails. So
//!    after `B`'s fence, `A`'s next slot is exactly a FENCE object (the
//!    first writer to fence `A` wrote it there; every later writer fences
//!    above). Repair replaces corrupt objects by VOID markers in place, so
//!    a slot that held a FENCE may hold a VOID. GC deletes neither kind.
//!    Kinds are known without reads: each writer learns every marker above
//!    its manifest's flushed point (it replays them, or wrote them) and its
//!    flushes list them in `Manifest::markers`. Where a manifest does not
//!    know (`markers_known_after`: older or rebuilt manifests, VOIDs repair
//!    wrote below the flushed point are added by repair), GC reads the WAL
//!    objects small enough to be a marker (no documents, at most
//!    `MARKER_MAX_BYTES`; writer ids are bounded at open).
//! 2. **Manifests.** Version `v+1` is always committed by a writer whose
//!    state was version `v` (create-if-absent on `v+1`), so versions form
//!    one chain. `A`'s next version is `v_A + 1`. If another writer holds
//!    it, that version is that writer's *claim* (its first commit): had
//!    that writer committed an earlier version, it would have committed
//!    every version from its claim up, including `v_A`. GC never deletes a
//!    claim (`Manifest::claim`, listed in `Manifest::claims`). A legacy
//!    manifest has no such flag; it is deleted only when it differs from
//!    its predecessor and has the same writer, i.e. when it was that
//!    writer's second or later commit: a writer's first commit used to be
//!    either a copy of its predecessor (an open's claim) or a repair or
//!    rebuild commit under a one-off writer id, so such a version was
//!    nobody's claim and nobody's next slot. The predecessor is read before
//!    anything is deleted, and manifests go newest first, so a pass cut
//!    short never leaves a legacy flush without the predecessor that
//!    proves it one (a bulk delete that removes an arbitrary subset can;
//!    that version is then kept, a tiny leak, never a free slot). If nobody
//!    holds `v_A + 1` (the new writer died between fence and claim), `A`
//!    may still commit a flush of writes it made *before* the fence, which
//!    is correct, and no GC ran meanwhile: only a claimed writer runs GC.
//! 3. **GC itself.** GC runs only right after its writer committed a
//!    manifest (a flush, a compaction, or the commit `Engine::gc` makes
//!    first): a fenced writer's commit fails by (2), so it deletes nothing.
//!    A pass already running when another writer `B` takes over deletes
//!    only what its own committed manifest `M` no longer needs: WAL at or
//!    below `M.flushed_through` (B's state descends from `M`, so B needs
//!    only WAL above that), manifests older than `M`'s horizon (never a
//!    claim, never B's newer ones) and segments that only manifests older
//!    than `M` name (a segment, once replaced, is never named again). The
//!    one thing B creates that the pass could mistake for garbage is a
//!    fresh segment not yet in any manifest it read; hence the grace
//!    period on orphans. (A zombie's pass may honour a different retention
//!    than B's; that shortens history, never the current state.)
//!
//! Open and replay are unaffected by holes: open replays from the
//! manifest's `flushed_through` on, and GC only deletes WAL at or below it.
//! `verify` reports gaps only above the flushed point, and `repair` and
//! `rebuild_manifest` keep what retained manifests and checkpoints need.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use super::checkpoint::{self, Checkpoint};
use super::layout::{manifest_dir, manifest_key, now_ms, parse_numbered, segment_dir, wal_dir};
use super::manifest::{self, Lineage, Manifest};
use super::segment::{decode_footer, SegmentIndex, FOOTER_LEN};
use super::wal::{WalKind, WalRecord};
use super::{Engine, EngineError, EngineResult, Inner};

/// Longest writer id `Engine::open` accepts; bounds a marker's size.
pub const MAX_WRITER_ID_BYTES: usize = 256;
/// Upper bound on the size of a FENCE or VOID WAL object (no documents;
/// sealed header, writer id and a few integers).
pub const MARKER_MAX_BYTES: u64 = 128 + MAX_WRITER_ID_BYTES as u64;
/// Keys per bulk delete request (S3's limit).
const DELETE_CHUNK: usize = 1000;

#[derive(Debug, Clone)]
pub struct GcOptions {
    pub retain: Duration,
    /// Report what would be deleted, delete nothing.
    pub dry_run: bool,
    /// Stop after this many deletes; the rest waits for the next pass.
    pub max_deletes: Option<usize>,
    pub orphan_grace: Duration,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Count {
    pub objects: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes += bytes;
    }
}

/// Deleted objects by kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Deleted {
    pub wal: Count,
    pub replaced_segments: Count,
    pub orphan_segments: Count,
    pub manifests: Count,
}

impl Deleted {
    fn of(&mut self, kind: Kind) -> &mut Count {
        match kind {
            Kind::Wal => &mut self.wal,
            Kind::Replaced => &mut self.replaced_segments,
            Kind::Orphan => &mut self.orphan_segments,
            Kind::Manifest => &mut self.manifests,
        }
    }
}

/// What this engine's GC has done since it opened (`Engine::gc_totals`,
/// for metrics and `.stats`): dry runs are not counted.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GcTotals {
    /// Passes that ran to their end (complete or stopped by the per-pass bound).
    pub passes: u64,
    /// Passes that failed (a store error); the next pass retries.
    pub failures: u64,
    /// Objects and bytes deleted, by kind.
    pub deleted: Deleted,
}

/// Kept objects by reason.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Kept {
    /// WAL after the retention horizon's flushed point.
    pub wal_retained: u64,
    /// FENCE and VOID objects: fencing boundaries.
    pub wal_markers: u64,
    /// WAL pinned by a checkpoint.
    pub wal_checkpointed: u64,
    /// Past states that views open in this process are reading (kept like
    /// checkpoints).
    pub open_views: u64,
    pub manifests_retained: u64,
    /// Older claims: fencing boundaries.
    pub manifests_claims: u64,
    pub manifests_checkpointed: u64,
    pub segments_live: u64,
    /// Orphans younger than the grace period (maybe an upload in flight).
    pub segments_young_orphans: u64,
    /// Objects that could not be read or decoded; `reef verify` names them.
    pub unreadable: u64,
    pub checkpoints: Vec<String>,
    /// Checkpoints still being created (or abandoned by a creator that
    /// stopped): every state from their floor on is kept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_checkpoints: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub namespace: String,
    pub dry_run: bool,
    pub retain_secs: f64,
    /// The manifest the pass ran on (the state it proved ownership with).
    pub manifest_version: u64,
    /// The oldest manifest kept for retention and its flushed point.
    pub horizon_version: u64,
    pub horizon_flushed_through: u64,
    pub deleted: Deleted,
    pub kept: Kept,
    /// Keys deleted (or, in a dry run, to delete), at most `KEYS_LISTED`.
    pub keys: Vec<String>,
    /// False when the per-pass bound stopped it; the next pass goes on.
    pub complete: bool,
    pub elapsed_ms: u64,
}

/// Keys a report lists by name.
const KEYS_LISTED: usize = 1000;

/// What GC remembers between passes of one engine: immutable facts only.
#[derive(Debug, Default)]
pub(super) struct GcMemo {
    manifests: BTreeMap<u64, Arc<Summary>>,
    /// WAL sequences known to hold a FENCE or VOID.
    markers: BTreeSet<u64>,
    last: Option<GcReport>,
}

#[derive(Debug)]
struct Summary {
    created_ms: u64,
    flushed_through: u64,
    claim: Option<bool>,
    writer_id: String,
    segments: Vec<String>,
}

impl Summary {
    fn of(m: &Manifest) -> Summary {
        Summary {
            created_ms: m.created_ms,
            flushed_through: m.flushed_through,
            claim: m.claim,
            writer_id: m.writer_id.clone(),
            segments: m.segments.iter().map(|s| s.id.clone()).collect(),
        }
    }

    fn lineage(&self) -> Lineage<'_> {
        Lineage {
            writer_id: &self.writer_id,
            flushed_through: self.flushed_through,
            segments: self.segments.iter().map(String::as_str).collect(),
        }
    }
}

/// `0`, or a duration such as `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration(text: &str) -> EngineResult<Duration> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|_| EngineError::BadDuration(text.to_string()))
}

impl Engine {
    /// Collects garbage now. Unless `dry_run`, it first commits a manifest,
    /// which proves this writer still holds the namespace (a fenced one
    /// fails here with `Fenced` and deletes nothing).
    pub async fn gc(&self, opts: GcOptions) -> EngineResult<GcReport> {
        let inner = &self.inner;
        if !opts.dry_run {
            inner.check_writable()?;
        }
        let _maintenance = inner.maintenance.lock().await;
        let current = if opts.dry_run {
            inner.state.read().manifest.clone()
        } else {
            let base = inner.state.read().manifest.clone();
            let next = base.successor(&inner.writer_id);
            if let Err(e) = manifest::commit(&inner.store, &inner.ns, &next).await {
                inner.note_fenced(&e);
                return Err(e);
            }
            let next = Arc::new(next);
            inner.state.write().manifest = next.clone();
            next
        };
        inner.collect(&current, &opts).await
    }

    /// The report of the last GC pass of this engine (automatic or not).
    pub fn last_gc_report(&self) -> Option<GcReport> {
        self.inner.gc_memo.lock().last.clone()
    }

    /// What this engine's GC passes have done since it opened.
    pub fn gc_totals(&self) -> GcTotals {
        self.inner.counters.gc.lock().clone()
    }

    /// GC options from this engine's configuration.
    pub fn gc_options(&self) -> GcOptions {
        let o = &self.inner.opts;
        GcOptions {
            retain: o.retain,
            dry_run: false,
            max_deletes: None,
            orphan_grace: o.orphan_grace,
        }
    }
}

impl Inner {
    /// The automatic pass after this writer committed `current` (flush or
    /// compaction), bounded; failures are logged, never returned: the
    /// commit itself succeeded.
    pub(super) async fn auto_gc(&self, current: &Manifest) {
        let opts = GcOptions {
            retain: self.opts.retain,
            dry_run: false,
            max_deletes: Some(self.opts.gc_max_deletes_per_pass),
            orphan_grace: self.opts.orphan_grace,
        };
        if let Err(e) = self.collect(current, &opts).await {
            log::warn!(
                "namespace {}: automatic garbage collection failed (it retries after the next flush; `reef gc` runs it by hand): {e}",
                self.ns
            );
        }
    }

    /// One pass against `current`, which this writer has just committed,
    /// counted in the engine's totals. Runs with the maintenance lock held.
    async fn collect(&self, current: &Manifest, opts: &GcOptions) -> EngineResult<GcReport> {
        let result = self.collect_pass(current, opts).await;
        if !opts.dry_run {
            let mut totals = self.counters.gc.lock();
            match &result {
                Ok(_) => totals.passes += 1,
                Err(_) => totals.failures += 1,
            }
        }
        result
    }

    async fn collect_pass(&self, current: &Manifest, opts: &GcOptions) -> EngineResult<GcReport> {
        let started = Instant::now();
        let plan = self.plan(current, opts).await?;
        let mut report = plan.report;
        let budget = opts.max_deletes.unwrap_or(usize::MAX);
        let todo: Vec<&(Kind, String, u64)> = plan.deletes.iter().take(budget).collect();
        report.complete = todo.len() == plan.deletes.len();
        for (kind, key, size) in &todo {
            report.deleted.of(*kind).add(*size);
            if report.keys.len() < KEYS_LISTED {
                report.keys.push(key.clone());
            }
        }
        if !opts.dry_run {
            // Kind by kind in plan order (segments, WAL, manifests), each
            // chunked for bulk delete; a failure stops the pass before the
            // next kind, so the order between kinds holds.
            let mut start = 0;
            while start < todo.len() {
                let kind = todo[start].0;
                let end = start + todo[start..].iter().take_while(|d| d.0 == kind).count();
                for chunk in todo[start..end].chunks(DELETE_CHUNK) {
                    let keys: Vec<String> = chunk.iter().map(|(_, k, _)| k.clone()).collect();
                    self.store.delete_many(&keys).await?;
                    // Counted as each bulk delete lands, so a pass cut
                    // short still shows what it removed.
                    let mut totals = self.counters.gc.lock();
                    for (_, _, size) in chunk {
                        totals.deleted.of(kind).add(*size);
                    }
                }
                start = end;
            }
            let mut memo = self.gc_memo.lock();
            for (kind, key, _) in &todo {
                if *kind == Kind::Manifest {
                    if let Some(v) = parse_numbered(&manifest_dir(&self.ns), key) {
                        memo.manifests.remove(&v);
                    }
                }
            }
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        self.gc_memo.lock().last = Some(report.clone());
        Ok(report)
    }

    async fn summary(&self, version: u64) -> EngineResult<Option<Arc<Summary>>> {
        if let Some(s) = self.gc_memo.lock().manifests.get(&version) {
            return Ok(Some(s.clone()));
        }
        match manifest::read(&self.store, &self.ns, version).await {
            Ok(m) => {
                let s = Arc::new(Summary::of(&m));
                self.gc_memo.lock().manifests.insert(version, s.clone());
                Ok(Some(s))
            }
            Err(EngineError::Store(e)) if e.is_not_found() => Ok(None),
            Err(EngineError::Corrupt { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn plan(&self, current: &Manifest, opts: &GcOptions) -> EngineResult<Plan> {
        let ns = &self.ns;
        let budget = opts.max_deletes.unwrap_or(usize::MAX);
        let now = now_ms();
        let cutoff = now.saturating_sub(opts.retain.as_millis() as u64);
        let mut report = GcReport {
            namespace: ns.clone(),
            dry_run: opts.dry_run,
            retain_secs: opts.retain.as_secs_f64(),
            manifest_version: current.version,
            ..GcReport::default()
        };
        self.gc_memo
            .lock()
            .manifests
            .insert(current.version, Arc::new(Summary::of(current)));

        let (pending, mut checkpoints): (Vec<Checkpoint>, Vec<Checkpoint>) =
            checkpoint::list_all(&self.store, ns)
                .await?
                .into_iter()
                .partition(|c| c.pending);
        report.kept.checkpoints = checkpoints.iter().map(|c| c.name.clone()).collect();
        report.kept.pending_checkpoints = pending.iter().map(|c| c.name.clone()).collect();
        // Every state from the lowest floor on is kept: its creator reads
        // one of them after the pending checkpoint became visible.
        let floor = pending.iter().map(|c| c.manifest_version).min();
        // States that views in this process are reading count as
        // checkpoints while they are open (`pins`).
        let pins = self.opts.pins.of(ns);
        report.kept.open_views = pins.len() as u64;
        checkpoints.extend(pins.into_iter().map(|(manifest_version, seq)| Checkpoint {
            name: String::new(),
            seq,
            manifest_version,
            created_ms: 0,
            created_by: String::new(),
            pending: false,
        }));
        let pinned_versions: HashSet<u64> =
            checkpoints.iter().map(|c| c.manifest_version).collect();
        let claims: HashSet<u64> = current.claims.iter().copied().collect();

        // Manifests, newest first, down to the horizon; never above ours.
        let mdir = manifest_dir(ns);
        let mut versions: Vec<(u64, u64)> = self
            .store
            .list(&mdir, None)
            .await?
            .iter()
            .filter_map(|m| parse_numbered(&mdir, &m.key).map(|v| (v, m.size)))
            .filter(|(v, _)| *v <= current.version)
            .collect();
        versions.sort_unstable();
        let mut live_segments: HashSet<String> =
            current.segments.iter().map(|s| s.id.clone()).collect();
        let mut horizon = (current.version, current.flushed_through);
        let mut below_horizon = Vec::new();
        let mut reached = false;
        for (v, size) in versions.iter().rev() {
            if reached {
                below_horizon.push((*v, *size));
                continue;
            }
            let Some(s) = self.summary(*v).await? else {
                report.kept.unreadable += 1;
                continue;
            };
            report.kept.manifests_retained += 1;
            live_segments.extend(s.segments.iter().cloned());
            horizon = (*v, s.flushed_through);
            if s.created_ms <= cutoff && floor.is_none_or(|f| *v <= f) {
                reached = true;
            }
        }
        report.horizon_version = horizon.0;
        report.horizon_flushed_through = horizon.1;

        // Checkpoints pin their manifest, its segments and a WAL range.
        let mut pinned_wal: Vec<(u64, u64)> = Vec::new();
        for cp in &checkpoints {
            match self.summary(cp.manifest_version).await? {
                Some(s) => {
                    live_segments.extend(s.segments.iter().cloned());
                    pinned_wal.push((s.flushed_through, cp.seq));
                }
                None => report.kept.unreadable += 1,
            }
        }

        let mut deletes = Vec::new();
        let mut manifest_deletes = Vec::new();
        let mut replaced: HashSet<String> = HashSet::new();
        for (v, size) in below_horizon {
            if pinned_versions.contains(&v) {
                report.kept.manifests_checkpointed += 1;
                continue;
            }
            if claims.contains(&v) {
                report.kept.manifests_claims += 1;
                continue;
            }
            let summary = self.summary(v).await?;
            // A legacy manifest is decided on its predecessor, read before
            // anything is deleted (deletes go newest first, so a pass cut
            // short leaves every remaining one its predecessor).
            let legacy_flush = match &summary {
                Some(s) if s.claim.is_none() => {
                    let prev = match v.checked_sub(1) {
                        Some(p) => self.summary(p).await?,
                        None => None,
                    };
                    s.lineage()
                        .legacy_is_flush(prev.as_ref().map(|p| p.lineage()).as_ref())
                }
                _ => false,
            };
            match summary {
                Some(s) if s.claim != Some(false) && !legacy_flush => {
                    report.kept.manifests_claims += 1
                }
                Some(s) => {
                    replaced.extend(s.segments.iter().cloned());
                    manifest_deletes.push((Kind::Manifest, manifest_key(ns, v), size));
                }
                None => report.kept.unreadable += 1,
            }
        }

        // Segments.
        let sdir = segment_dir(ns);
        for obj in self.store.list(&sdir, None).await? {
            let Some(id) = obj.key.strip_prefix(&sdir) else {
                continue;
            };
            if id.contains('/') {
                continue;
            }
            if live_segments.contains(id) {
                report.kept.segments_live += 1;
            } else if replaced.contains(id) {
                deletes.push((Kind::Replaced, obj.key.clone(), obj.size));
            } else {
                match self.segment_created_ms(&obj.key, obj.size).await {
                    Some(created)
                        if now.saturating_sub(created) >= opts.orphan_grace.as_millis() as u64 =>
                    {
                        deletes.push((Kind::Orphan, obj.key.clone(), obj.size))
                    }
                    Some(_) => report.kept.segments_young_orphans += 1,
                    None => report.kept.unreadable += 1,
                }
            }
        }

        // WAL at or below the horizon's flushed point, except markers and
        // checkpointed ranges.
        let wdir = wal_dir(ns);
        let covered = horizon.1.min(current.flushed_through);
        let mut small: Vec<(u64, String, u64)> = Vec::new();
        for obj in self.store.list(&wdir, None).await? {
            let Some(seq) = parse_numbered(&wdir, &obj.key) else {
                continue;
            };
            if seq > covered {
                report.kept.wal_retained += 1;
            } else if pinned_wal.iter().any(|(lo, hi)| *lo < seq && seq <= *hi) {
                report.kept.wal_checkpointed += 1;
            } else if self.gc_memo.lock().markers.contains(&seq) {
                report.kept.wal_markers += 1;
            } else if current.markers_known_after.is_some_and(|x| seq > x) {
                // The manifest lists every marker here: no read needed.
                if current.markers.contains(&seq) {
                    report.kept.wal_markers += 1;
                } else {
                    deletes.push((Kind::Wal, obj.key, obj.size));
                }
            } else if obj.size <= MARKER_MAX_BYTES {
                // Each costs a GET: bounded like the deletes themselves.
                if deletes.len() + small.len() < budget {
                    small.push((seq, obj.key, obj.size));
                }
            } else {
                deletes.push((Kind::Wal, obj.key, obj.size));
            }
        }
        let store = &self.store;
        let mut fetched = futures::stream::iter(small)
            .map(|(seq, key, size)| async move {
                let data = store.get(&key).await;
                (seq, key, size, data)
            })
            .buffered(16);
        while let Some((seq, key, size, data)) = fetched.next().await {
            match data {
                Ok(data) => match WalRecord::decode(data, seq) {
                    Ok(rec) if rec.kind == WalKind::Batch => deletes.push((Kind::Wal, key, size)),
                    Ok(_) => {
                        self.gc_memo.lock().markers.insert(seq);
                        report.kept.wal_markers += 1;
                    }
                    // Undecodable: maybe a damaged marker; repair decides.
                    Err(_) => report.kept.unreadable += 1,
                },
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        deletes.sort_by_key(|(kind, key, _)| (*kind, key.clone()));
        deletes.extend(manifest_deletes);
        Ok(Plan { report, deletes })
    }

    /// When an unreferenced segment was written, from its index (two small
    /// ranged reads; orphans are rare). `None` when it cannot be read.
    async fn segment_created_ms(&self, key: &str, size: u64) -> Option<u64> {
        if size < FOOTER_LEN {
            return None;
        }
        let footer = self.store.get_range(key, size - FOOTER_LEN..size).await.ok()?;
        let (offset, len) = decode_footer(&footer).ok()?;
        let index = self.store.get_range(key, offset..offset + len).await.ok()?;
        SegmentIndex::decode(index).ok().map(|ix| ix.created_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Replaced,
    Orphan,
    Wal,
    Manifest,
}

struct Plan {
    report: GcReport,
    /// In deletion order.
    deletes: Vec<(Kind, String, u64)>,
}
