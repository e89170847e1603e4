//! One namespace directory: its lazily opened `Engine` and the last results
//! of the control operations run through it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::error::{FsError, FsResult};
use super::history::changes::ChangesFeed;
use super::history::versions::VersionsCache;
use super::names::ControlKind;
use crate::engine::{At, Engine, EngineError, EngineOptions, EngineResult, StoredDoc};
use crate::store::{ObjectStore, StoreError};
use crate::types::DocId;

/// Called once each time a namespace's engine is opened (the core starts a
/// read-only mount's refresh task from it).
pub(crate) type OpenHook = Arc<dyn Fn(&Namespace, &Engine) + Send + Sync>;

/// Text a never-run action control file shows.
const NEVER_RUN: &str = "{\"result\": \"not run since mount\"}\n";

pub(crate) struct Namespace {
    pub name: String,
    pub ino: u64,
    store: Arc<dyn ObjectStore>,
    opts: EngineOptions,
    /// `None` until first use, and while `.repair` runs. Every use of the
    /// engine holds the read lock, so taking the write lock waits for them.
    engine: RwLock<Option<Engine>>,
    /// Set once `rmdir` removed it; stale inodes then see ENOENT.
    removed: AtomicBool,
    /// A read-only view of a past state (`.snapshots/NAME`): its engine is
    /// opened with `Engine::open_at` and every change fails with EROFS.
    at: Option<At>,
    results: Mutex<Results>,
    on_open: Option<OpenHook>,
    /// What `.versions` has learned of this (live) namespace's history.
    pub versions: VersionsCache,
    /// The `.changes` file of this (live) namespace.
    pub changes: ChangesFeed,
    /// Read-only mounts: set when a document's stored state was recorded
    /// from a read that may have raced a refresh; the next refresh drops
    /// the namespace's cached state even if nothing moved.
    pub raced: AtomicBool,
}

struct Results {
    flush: String,
    compact: String,
    repair: String,
    gc: String,
    changed_ms: u64,
    /// The last rendering of `.verify` and `.stats`.
    verify: Option<Report>,
    stats: Option<Report>,
}

struct Report {
    content: Bytes,
    at: Instant,
    /// Served by an open already (or made by one).
    opened: bool,
}

impl Results {
    fn report_mut(&mut self, kind: ControlKind) -> Option<&mut Option<Report>> {
        match kind {
            ControlKind::Verify => Some(&mut self.verify),
            ControlKind::Stats => Some(&mut self.stats),
            _ => None,
        }
    }
}

impl Namespace {
    pub fn new(
        name: &str,
        ino: u64,
        store: Arc<dyn ObjectStore>,
        opts: EngineOptions,
        engine: Option<Engine>,
        now_ms: u64,
        on_open: Option<OpenHook>,
    ) -> Namespace {
        Namespace {
            name: name.to_string(),
            ino,
            store,
            opts,
            engine: RwLock::new(engine),
            removed: AtomicBool::new(false),
            at: None,
            results: Mutex::new(Results {
                flush: NEVER_RUN.into(),
                compact: NEVER_RUN.into(),
                repair: NEVER_RUN.into(),
                gc: NEVER_RUN.into(),
                changed_ms: now_ms,
                verify: None,
                stats: None,
            }),
            on_open,
            versions: VersionsCache::default(),
            changes: ChangesFeed::default(),
            raced: AtomicBool::new(false),
        }
    }

    /// This namespace, shown read-only as it was at `at`.
    pub fn into_view(mut self, at: At) -> Namespace {
        self.at = Some(at);
        self
    }

    /// A read-only view of a past state (never the live namespace).
    pub fn is_view(&self) -> bool {
        self.at.is_some()
    }

    /// The past state a view shows.
    pub fn at(&self) -> Option<&At> {
        self.at.as_ref()
    }

    /// EROFS in a view: nothing in it can change.
    pub fn check_not_view(&self) -> FsResult<()> {
        match self.at {
            Some(_) => Err(self.past_is_read_only()),
            None => Ok(()),
        }
    }

    /// The EROFS error of a change to the past.
    pub fn past_is_read_only(&self) -> FsError {
        FsError::ReadOnly(format!(
            "namespace {}: a view of the past is read-only",
            self.name
        ))
    }

    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    pub fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// The open engine, opening it on first use.
    pub async fn engine(&self) -> FsResult<RwLockReadGuard<'_, Engine>> {
        loop {
            if self.is_removed() {
                return Err(FsError::NotFound);
            }
            let guard = self.engine.read().await;
            if let Ok(engine) = RwLockReadGuard::try_map(guard, Option::as_ref) {
                return Ok(engine);
            }
            let mut slot = self.engine.write().await;
            if slot.is_none() {
                let opened = match &self.at {
                    Some(at) => {
                        let (store, opts) = (self.store.clone(), self.opts.clone());
                        Engine::open_at(store, &self.name, at.clone(), opts).await
                    }
                    None => Engine::open(self.store.clone(), &self.name, self.opts.clone()).await,
                };
                match opened {
                    Ok(engine) => {
                        if let Some(hook) = &self.on_open {
                            hook(self, &engine);
                        }
                        *slot = Some(engine);
                    }
                    Err(e) => {
                        log::error!("namespace {}: cannot open: {e}", self.name);
                        return Err(e.into());
                    }
                }
            }
        }
    }

    /// The writer that took this namespace over from this mount, if the
    /// engine is open and has learned so. Never waits.
    pub fn fenced_by(&self) -> Option<String> {
        let slot = self.engine.try_read().ok()?;
        slot.as_ref().and_then(Engine::fenced_by)
    }

    /// The engine if it is open and not held exclusively (`.repair`), for
    /// metrics. Never waits and never opens it.
    pub fn engine_if_open(&self) -> Option<Engine> {
        self.engine.try_read().ok()?.clone()
    }

    /// Fails with EROFS once another writer took the namespace over, so a
    /// change is refused when it starts rather than when it is committed.
    pub fn check_not_fenced(&self) -> FsResult<()> {
        self.check_not_view()?;
        match self.fenced_by() {
            Some(_) => Err(FsError::Fenced(self.name.clone())),
            None => Ok(()),
        }
    }

    /// Exclusive access: no engine call runs until the guard drops.
    pub async fn exclusive(&self) -> RwLockWriteGuard<'_, Option<Engine>> {
        self.engine.write().await
    }

    /// Last result text of an action control file.
    pub fn result(&self, kind: ControlKind) -> String {
        let r = self.results.lock();
        match kind {
            ControlKind::Flush => r.flush.clone(),
            ControlKind::Compact => r.compact.clone(),
            ControlKind::Repair => r.repair.clone(),
            ControlKind::Gc => r.gc.clone(),
            ControlKind::Verify | ControlKind::Stats | ControlKind::Changes => String::new(),
        }
    }

    /// For an open: the rendering of report `kind` that a `stat` made
    /// within `fresh` and no open has served yet, if any.
    pub fn take_report(&self, kind: ControlKind, fresh: Duration) -> Option<Bytes> {
        let mut r = self.results.lock();
        match r.report_mut(kind)? {
            Some(rep) if !rep.opened && rep.at.elapsed() < fresh => {
                rep.opened = true;
                Some(rep.content.clone())
            }
            _ => None,
        }
    }

    /// Records a rendering of report `kind` (made for an open if `opened`);
    /// returns the previous one's length.
    pub fn set_report(&self, kind: ControlKind, content: Bytes, opened: bool) -> Option<usize> {
        let mut r = self.results.lock();
        let slot = r.report_mut(kind)?;
        let old = slot.as_ref().map(|rep| rep.content.len());
        *slot = Some(Report {
            content,
            at: Instant::now(),
            opened,
        });
        old
    }

    /// Length of the last rendering of report `kind` (0 before the first).
    pub fn report_len(&self, kind: ControlKind) -> usize {
        let mut r = self.results.lock();
        r.report_mut(kind)
            .and_then(|slot| slot.as_ref().map(|rep| rep.content.len()))
            .unwrap_or(0)
    }

    pub fn results_changed_ms(&self) -> u64 {
        self.results.lock().changed_ms
    }

    pub fn set_result(&self, kind: ControlKind, text: String, now_ms: u64) {
        let mut r = self.results.lock();
        r.changed_ms = now_ms;
        match kind {
            ControlKind::Flush => r.flush = text,
            ControlKind::Compact => r.compact = text,
            ControlKind::Repair => r.repair = text,
            ControlKind::Gc => r.gc = text,
            ControlKind::Verify | ControlKind::Stats | ControlKind::Changes => {}
        }
    }
}

/// Whether a follower's read failed because its writer compacted away a
/// segment the follower's (older) manifest still names.
fn follower_lost_segment<T>(engine: &Engine, result: &EngineResult<T>) -> bool {
    engine.is_read_only() && matches!(result, Err(EngineError::Store(StoreError::NotFound(_))))
}

/// `Engine::get_stored`; a follower whose segment vanished refreshes (to the
/// writer's current manifest) and reads once more.
pub(crate) async fn get_stored(engine: &Engine, id: &DocId) -> EngineResult<Option<StoredDoc>> {
    let result = engine.get_stored(id).await;
    if follower_lost_segment(engine, &result) {
        engine.refresh().await?;
        return engine.get_stored(id).await;
    }
    result
}

/// `Engine::scan`, with the same retry for followers as [`get_stored`].
pub(crate) async fn scan(
    engine: &Engine,
    start_after: Option<&DocId>,
    limit: usize,
) -> EngineResult<Vec<StoredDoc>> {
    let result = engine.scan(start_after, limit).await;
    if follower_lost_segment(engine, &result) {
        engine.refresh().await?;
        return engine.scan(start_after, limit).await;
    }
    result
}
