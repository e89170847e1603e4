//! `.versions/` in each namespace (DESIGN.md §8): every retained state as
//! a read-only directory.
//!
//! - `.versions/SEQ/` is the namespace just after WAL sequence SEQ (a
//!   canonical decimal number) was committed.
//! - `.versions/@TIME/` (RFC 3339, e.g. `@2026-12-01T07:00:00Z`) is the
//!   newest state committed at or before TIME (`engine::timeline`).
//!
//! A name that is neither, or a point outside retention, is ENOENT, and the
//! daemon logs one line naming the retained range (sequences and commit
//! times), so a user who mistyped learns what exists.
//!
//! Each point is a `Namespace` view over `Engine::open_at(At::Seq(..))`,
//! opened lazily on first use inside it, and cached like the live
//! namespace (documents, directories, listings): a second read of a view
//! costs no store requests. Its directory's mtime is the commit time.
//! `@TIME` resolves once for good when a later commit already exists (no
//! commit can land before it any more); a TIME at or after the newest
//! commit is resolved again at each lookup, so it follows new commits.
//!
//! Listing `.versions/` shows a bounded set of recent points: the flushed
//! point of each of the newest `LISTED_MANIFESTS` manifests and the newest
//! sequence, within the retained range. Manifests never change, so their
//! points are cached; a listing costs the retained-range check (two LISTs
//! and a read of the retained manifests) however many commits are kept.
//! `.versions` itself is never listed in its namespace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::engine::timeline::{self, WalTimes};
use crate::engine::{check_retained, describe_retained, manifest, retained_range, At};
use crate::fs::attr::{time_from_ms, Attr};
use crate::fs::core::{now_ms, FsCore};
use crate::fs::dirstream::{DirStream, RawEntry};
use crate::fs::error::{FsError, FsResult};
use crate::fs::handles::Handle;
use crate::fs::inodes::{InodeTable, Node};
use crate::fs::namespace::Namespace;

/// The name of the versions directory at a namespace's top.
pub(crate) const VERSIONS_DIR: &str = ".versions";

/// Manifests whose flushed points `ls .versions` shows.
const LISTED_MANIFESTS: usize = 32;

/// What `.versions` of one live namespace remembers: immutable facts only.
#[derive(Default)]
pub(crate) struct VersionsCache {
    /// Commit times of WAL objects.
    pub times: WalTimes,
    /// `@TIME` names resolved for good, to their sequence and commit time.
    settled: Mutex<BTreeMap<String, (u64, u64)>>,
    /// Manifest version -> (flushed point, created_ms).
    manifests: Mutex<BTreeMap<u64, (u64, u64)>>,
}

/// Entries each map of `VersionsCache` holds before it starts over.
const CACHE_MAX: usize = 4096;

/// A name in `.versions`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Point {
    Seq(u64),
    Time(SystemTime),
}

fn parse_point(name: &str) -> Result<Point, String> {
    if let Some(time) = name.strip_prefix('@') {
        return timeline::parse_time(time).map(Point::Time);
    }
    match name.parse::<u64>() {
        Ok(seq) if seq.to_string() == name => Ok(Point::Seq(seq)),
        _ => Err(format!(
            "{name:?} is neither a sequence number nor @TIME (RFC 3339, e.g. @2026-12-01T07:00:00Z)"
        )),
    }
}

impl FsCore {
    /// The live namespace whose `.versions` directory `ino` is, if it is one.
    pub(crate) fn versions_of(&self, ino: u64) -> Option<Arc<Namespace>> {
        match self.table.lock().get(ino).map(|i| &i.node) {
            Some(Node::Versions(ns)) => Some(ns.clone()),
            _ => None,
        }
    }

    /// The `.versions` directory of live namespace `ns`, created on first use.
    pub(crate) fn versions_dir(&self, ns: &Arc<Namespace>) -> FsResult<Attr> {
        self.history_dir(ns, VERSIONS_DIR, Node::Versions)
    }

    /// The view inode for `name` at `seq` in `.versions` directory `dir`,
    /// replacing one of that name at another sequence.
    fn register_version(
        &self,
        t: &mut InodeTable,
        dir: u64,
        ns: &Namespace,
        name: &str,
        seq: u64,
        committed_ms: u64,
    ) -> u64 {
        if let Some(ino) = t.lookup(dir, name) {
            if let Some(Node::Namespace(view)) = t.get(ino).map(|i| &i.node) {
                if view.at() == Some(&At::Seq(seq)) {
                    return ino;
                }
            }
        }
        let (store, opts, now) = (self.store.clone(), self.cfg.engine.clone(), now_ms());
        let ino = t.insert_with(dir, name, |ino| {
            let view = Namespace::new(&ns.name, ino, store, opts, None, now, None);
            Node::Namespace(Arc::new(view.into_view(At::Seq(seq))))
        });
        t.set_dir_mtime(ino, time_from_ms(committed_ms));
        ino
    }

    /// `lookup` in a `.versions` directory.
    pub(crate) async fn lookup_version(
        &self,
        ns: &Arc<Namespace>,
        dir: u64,
        name: &str,
    ) -> FsResult<Attr> {
        let cache = &ns.versions;
        let point = match parse_point(name) {
            Ok(p) => p,
            Err(why) => {
                let retained = describe_retained(&self.store, &ns.name, &cache.times).await;
                log::warn!("{}/.versions/{name}: {why}; {retained}", ns.name);
                return Err(FsError::NotFound);
            }
        };
        // Already resolved for good: no store request.
        let known = {
            let t = self.table.lock();
            let settled = match point {
                Point::Seq(_) => true,
                Point::Time(_) => cache.settled.lock().contains_key(name),
            };
            t.lookup(dir, name)
                .filter(|_| settled)
                .and_then(|ino| self.attr_locked(&t, ino))
        };
        if let Some(attr) = known {
            return Ok(attr);
        }
        let resolved = match point {
            Point::Seq(seq) => check_retained(&self.store, &ns.name, seq, &cache.times)
                .await
                .map(|ms| (seq, ms, true)),
            // The search runs over the retained range only: no second check.
            Point::Time(t) => timeline::seq_at_time(&self.store, &ns.name, t, &cache.times)
                .await
                .map(|p| (p.seq, p.committed_ms, p.seq < p.newest)),
        };
        let (seq, committed_ms, settled) = match resolved {
            Ok(r) => r,
            Err(e) => {
                log::warn!("{}/.versions/{name}: {e}", ns.name);
                return Err(e.into());
            }
        };
        if settled && matches!(point, Point::Time(_)) {
            let mut s = cache.settled.lock();
            if s.len() >= CACHE_MAX {
                s.clear();
            }
            s.insert(name.to_string(), (seq, committed_ms));
        }
        let mut t = self.table.lock();
        let ino = self.register_version(&mut t, dir, ns, name, seq, committed_ms);
        Ok(self.dir_attr(&t, ino))
    }

    /// `opendir` of a `.versions` directory: the flushed point of each
    /// recent manifest and the newest sequence, mtime = commit time.
    pub(crate) async fn open_versions(&self, ns: &Arc<Namespace>, dir: u64) -> FsResult<u64> {
        let (store, cache) = (&self.store, &ns.versions);
        let Some((oldest, newest)) = retained_range(store, &ns.name).await? else {
            let fixed = vec![RawEntry::Dot, RawEntry::DotDot];
            let stream = DirStream::new(dir, fixed, false, String::new(), 0);
            return Ok(self.handles.insert(Handle::Dir(stream)));
        };
        let mut points: BTreeMap<u64, u64> = BTreeMap::new();
        let versions = manifest::list_versions(store, &ns.name).await?;
        for v in versions.iter().rev().take(LISTED_MANIFESTS) {
            let known = cache.manifests.lock().get(v).copied();
            let (flushed, created) = match known {
                Some(k) => k,
                None => match manifest::read(store, &ns.name, *v).await {
                    Ok(m) => {
                        let mut c = cache.manifests.lock();
                        if c.len() >= CACHE_MAX {
                            c.clear();
                        }
                        c.insert(*v, (m.flushed_through, m.created_ms));
                        (m.flushed_through, m.created_ms)
                    }
                    // Collected since the listing, or unreadable: not a point.
                    Err(_) => continue,
                },
            };
            if (oldest..=newest).contains(&flushed) && flushed > 0 {
                points.entry(flushed).or_insert(created);
            }
        }
        points.entry(newest).or_insert(0);
        // Commit times: the WAL object's where it is retained.
        let mut timed = Vec::with_capacity(points.len());
        for (seq, fallback) in points {
            let ms = cache
                .times
                .get(store, &ns.name, seq)
                .await?
                .unwrap_or(fallback);
            timed.push((seq, ms));
        }
        let mut t = self.table.lock();
        let mut fixed = vec![RawEntry::Dot, RawEntry::DotDot];
        for (seq, ms) in timed {
            let name = seq.to_string();
            self.register_version(&mut t, dir, ns, &name, seq, ms);
            fixed.push(RawEntry::Named(name));
        }
        drop(t);
        let stream = DirStream::new(dir, fixed, false, String::new(), 0);
        Ok(self.handles.insert(Handle::Dir(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_canonical_sequences_or_at_times() {
        assert_eq!(parse_point("0"), Ok(Point::Seq(0)));
        assert_eq!(parse_point("42"), Ok(Point::Seq(42)));
        assert!(matches!(
            parse_point("@2026-12-01T07:00:00Z"),
            Ok(Point::Time(_))
        ));
        for bad in [
            "042",
            "+4",
            "-1",
            "4x",
            "",
            "@",
            "@yesterday",
            "@2026-12-01",
            "latest",
        ] {
            assert!(parse_point(bad).is_err(), "{bad}");
        }
    }
}
