//! When the kernel may keep a directory listing and answer `getdents64`
//! from it (`FOPEN_CACHE_DIR` with `FOPEN_KEEP_CACHE` at `opendir`), so a
//! second `find` or `ls` of an unchanged directory sends the daemon only
//! `opendir` and `releasedir`.
//!
//! The kernel's side (fs/fuse/readdir.c): an open with `FOPEN_CACHE_DIR`
//! appends each entry it reads to a cache in the directory's page cache,
//! at the position the cache ends; the reply that ends the listing marks
//! the cache complete. Later opens with `FOPEN_CACHE_DIR` read a complete
//! cache instead of asking, and drop it only when the directory's mtime or
//! the kernel's own change counter moved (a create, unlink or rename made
//! through this mount), or when a page of it is gone. An open without
//! `FOPEN_KEEP_CACHE` drops those pages. So changes the kernel does not
//! see — a follower's refresh, a directory that vanishes with the last
//! document below it, a name hidden by a rename elsewhere — would leave a
//! stale listing cached: the daemon has to decide at each `opendir`.
//!
//! A cached listing has no attributes, and the kernel then makes no
//! dentries for its names: `ls -l` of a listing cached by `find` (plain
//! readdir after the first page) would send a lookup per name where
//! readdirplus pages would have sent one request per few hundred. So a
//! listing is served only while the kernel still holds a fresh dentry and
//! attributes for every name in it: it was read with readdirplus on every
//! page, within half the entry TTL, and the daemon has asked the kernel to
//! drop no entry since (the inode bound's evictions count in the state).
//!
//! The rule, per directory inode, with `ListingGen` the state a listing is
//! made of (the namespace engine's last applied WAL sequence, the inode
//! table's version of memory-only names and hidden documents, the core's
//! change epoch, and the entries the inode bound asked the kernel to drop):
//!
//! - `Serve` (`CACHE_DIR | KEEP_CACHE`): a listing was read to its end, all
//!   with readdirplus, by a `Fill` handle that saw no change from its open
//!   to that end, less than half the entry TTL ago, and nothing changed
//!   since. The kernel's cache is exactly that listing.
//! - `Fill` (`CACHE_DIR` alone): no such listing, and no other handle that
//!   may add to the cache is open. The open drops the old pages; this
//!   handle's listing is the only one the kernel appends, so if no change
//!   falls between its open and its end, the cache is a listing of one
//!   state and the directory becomes `Serve` for that state.
//! - `Off` (neither flag): no such listing while another caching handle is
//!   still open (it might append entries of an older state). The open drops
//!   the pages, and this handle neither reads nor adds to the cache.
//!
//! Safety: the kernel serves cached entries only to `Serve` opens, and a
//! directory is `Serve` only for the one state its cache was filled from
//! by a single handle; any change moves `ListingGen`, after which every
//! open is `Fill` or `Off`, both of which drop the pages first. A `Serve`
//! handle that refills pages the kernel evicted lists the same state, or,
//! if a change falls in, the next open is no longer `Serve`. Entries are
//! cached without attributes, so only names, inode numbers and types are
//! served from the cache; attributes keep their own TTLs and
//! invalidations. Losing this bookkeeping only turns caching off.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What a listing is made of; any change of it may change a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListingGen {
    pub engine_seq: u64,
    pub names: u64,
    pub epoch: u64,
    pub evictions: u64,
}

/// How an `opendir` lets the kernel use its listing cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirCaching {
    /// Read the kernel's complete cache (`CACHE_DIR | KEEP_CACHE`).
    Serve,
    /// Drop the cache and fill it from this listing (`CACHE_DIR`).
    Fill,
    /// Drop the cache; neither read nor fill it.
    Off,
}

/// Directories tracked at most; beyond, idle ones are forgotten (which
/// only turns their caching off until they are listed again).
const MAX_DIRS: usize = 16_384;

#[derive(Default)]
struct DirState {
    /// The state the kernel's complete cache lists, and until when it
    /// may be served.
    complete: Option<(ListingGen, Instant)>,
    /// Open handles with `CACHE_DIR` (`Serve` or `Fill`).
    caching: u32,
}

struct OpenDir {
    dir: u64,
    mode: DirCaching,
    opened_at: ListingGen,
    /// A page of this listing went without attributes (plain readdir).
    plain: bool,
}

#[derive(Default)]
struct Inner {
    dirs: HashMap<u64, DirState>,
    handles: HashMap<u64, OpenDir>,
}

pub(crate) struct DirCacheGate {
    inner: Mutex<Inner>,
    /// How long after it was filled a listing may be served: half the
    /// kernel's entry and attribute TTL.
    serve_for: Duration,
}

impl DirCacheGate {
    pub fn new(entry_ttl: Duration) -> DirCacheGate {
        DirCacheGate {
            inner: Mutex::default(),
            serve_for: entry_ttl / 2,
        }
    }

    /// Decides handle `fh` of directory `dir`, opened at state `now`.
    pub fn open(&self, fh: u64, dir: u64, now: ListingGen) -> DirCaching {
        let mut g = self.inner.lock();
        if g.dirs.len() >= MAX_DIRS {
            g.dirs.retain(|_, s| s.caching > 0);
        }
        let state = g.dirs.entry(dir).or_default();
        let fresh = |(at, until): (ListingGen, Instant)| at == now && Instant::now() < until;
        let mode = if state.complete.is_some_and(fresh) {
            DirCaching::Serve
        } else {
            state.complete = None;
            if state.caching == 0 {
                DirCaching::Fill
            } else {
                DirCaching::Off
            }
        };
        if mode != DirCaching::Off {
            state.caching += 1;
            g.handles.insert(
                fh,
                OpenDir {
                    dir,
                    mode,
                    opened_at: now,
                    plain: false,
                },
            );
        }
        mode
    }

    /// The mode `open` gave handle `fh` (`Off` for one it never saw).
    pub fn mode(&self, fh: u64) -> DirCaching {
        self.inner
            .lock()
            .handles
            .get(&fh)
            .map_or(DirCaching::Off, |h| h.mode)
    }

    /// Handle `fh` was asked for a page without attributes.
    pub fn plain_page(&self, fh: u64) {
        if let Some(h) = self.inner.lock().handles.get_mut(&fh) {
            h.plain = true;
        }
    }

    /// Handle `fh` reached the end of its listing at state `now`.
    pub fn listed_to_end(&self, fh: u64, now: ListingGen) {
        let mut g = self.inner.lock();
        let Some(h) = g.handles.get(&fh) else {
            return;
        };
        if h.mode != DirCaching::Fill || h.opened_at != now || h.plain {
            return;
        }
        let dir = h.dir;
        let until = Instant::now() + self.serve_for;
        if let Some(state) = g.dirs.get_mut(&dir) {
            state.complete = Some((now, until));
        }
    }

    /// Handle `fh` is closed.
    pub fn release(&self, fh: u64) {
        let mut g = self.inner.lock();
        let Some(h) = g.handles.remove(&fh) else {
            return;
        };
        if let Some(state) = g.dirs.get_mut(&h.dir) {
            state.caching = state.caching.saturating_sub(1);
            if state.caching == 0 && state.complete.is_none() {
                g.dirs.remove(&h.dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(n: u64) -> ListingGen {
        ListingGen {
            engine_seq: n,
            names: 0,
            epoch: 0,
            evictions: 0,
        }
    }

    fn gate() -> DirCacheGate {
        DirCacheGate::new(Duration::from_secs(3600))
    }

    #[test]
    fn a_listing_read_to_its_end_unchanged_is_served_until_a_change() {
        let g = gate();
        assert_eq!(g.open(1, 7, gen(1)), DirCaching::Fill);
        g.listed_to_end(1, gen(1));
        g.release(1);
        assert_eq!(g.open(2, 7, gen(1)), DirCaching::Serve);
        g.release(2);
        assert_eq!(g.open(3, 7, gen(2)), DirCaching::Fill);
        g.release(3);
        // Filled but not read to its end: never served.
        assert_eq!(g.open(4, 7, gen(2)), DirCaching::Fill);
        g.release(4);
    }

    #[test]
    fn a_change_during_the_fill_keeps_it_from_being_served() {
        let g = gate();
        assert_eq!(g.open(1, 7, gen(1)), DirCaching::Fill);
        g.listed_to_end(1, gen(2));
        g.release(1);
        assert_eq!(g.open(2, 7, gen(2)), DirCaching::Fill);
    }

    #[test]
    fn only_one_handle_fills_while_the_cache_is_stale() {
        let g = gate();
        assert_eq!(g.open(1, 7, gen(1)), DirCaching::Fill);
        assert_eq!(g.open(2, 7, gen(1)), DirCaching::Off);
        g.listed_to_end(2, gen(1));
        g.release(2);
        // A serving handle still open when the state moves on: the next
        // open must not fill beside it.
        g.listed_to_end(1, gen(1));
        assert_eq!(g.open(3, 7, gen(1)), DirCaching::Serve);
        g.release(1);
        assert_eq!(g.open(4, 7, gen(2)), DirCaching::Off);
        g.release(3);
        g.release(4);
        assert_eq!(g.open(5, 7, gen(2)), DirCaching::Fill);
        // Other directories are apart.
        assert_eq!(g.open(6, 8, gen(2)), DirCaching::Fill);
    }

    #[test]
    fn a_listing_with_a_plain_page_or_past_its_time_is_not_served() {
        let g = gate();
        assert_eq!(g.open(1, 7, gen(1)), DirCaching::Fill);
        g.plain_page(1);
        g.listed_to_end(1, gen(1));
        g.release(1);
        assert_eq!(g.open(2, 7, gen(1)), DirCaching::Fill);
        g.release(2);
        let g = DirCacheGate::new(Duration::ZERO);
        assert_eq!(g.open(1, 7, gen(1)), DirCaching::Fill);
        g.listed_to_end(1, gen(1));
        g.release(1);
        assert_eq!(g.open(2, 7, gen(1)), DirCaching::Fill);
    }
}
