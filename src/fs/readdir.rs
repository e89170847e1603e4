//! Directory listings: `opendir` fixes the in-memory entries, `readdir`
//! streams the rest from the engine through the handle's `DirStream`.
//! Control files are never listed (they are reachable by name), so
//! `grep -r`, `find`, `rsync`, `tar` and `cp -r` never run or copy them.
//! Whether the kernel may cache a listing is decided at `opendir` and
//! settled when it is read to its end (`dircache`).
//!
//! A reply is filled entry by entry until the kernel's buffer is full
//! (about 800 plain entries or 190 readdirplus entries of short names in
//! the 32 KiB `getdents64` buffers of `ls` and `find`), so the daemon makes
//! only what it sends: with readdirplus an entry is an inode the kernel
//! holds (a lookup), and one that did not fit must not count as one.

use std::sync::atomic::Ordering;

use super::attr::{Attr, DirEntry, FileKind};
use super::core::FsCore;
use super::dircache::{DirCaching, ListingGen};
use super::dirstream::{DirStream, RawEntry, RawRef};
use super::error::{FsError, FsResult};
use super::handles::Handle;
use super::inodes::{DirNode, DocNode, InodeTable, Node, ROOT_INO};

/// Entries `readdir` returns per call.
const WANT: usize = 512;

/// One entry as a reply takes it: the name is borrowed from the listing,
/// and `attr` is there for readdirplus only.
pub struct Listed<'a> {
    pub ino: u64,
    /// Cookie to pass back to continue after this entry.
    pub offset: u64,
    pub name: &'a str,
    pub kind: FileKind,
    pub attr: Option<Attr>,
}

fn parent_of(t: &InodeTable, dir: u64) -> u64 {
    t.get(dir).map_or(ROOT_INO, |i| i.parent)
}

impl FsCore {
    pub async fn opendir(&self, ino: u64) -> FsResult<u64> {
        if let Some(ns) = self.snapshots_of(ino) {
            return self.open_snapshots(&ns, ino).await;
        }
        if let Some(ns) = self.versions_of(ino) {
            return self.open_versions(&ns, ino).await;
        }
        let mut caching_from = None;
        let stream = if ino == ROOT_INO {
            self.refresh_namespaces().await?;
            let t = self.table.lock();
            let mut fixed = vec![RawEntry::Dot, RawEntry::DotDot];
            fixed.extend(t.memory_names(ROOT_INO).into_iter().map(RawEntry::Named));
            DirStream::new(ino, fixed, false, String::new(), 0)
        } else {
            let dir = self.dir_of(ino)?;
            // Read before anything the listing shows (see `dircache`). The
            // first readdir would open the engine anyway; if it cannot be
            // opened, that readdir reports why.
            let engine_seq = dir.ns.engine().await.ok().map(|e| e.last_seq());
            let epoch = self.epoch();
            let t = self.table.lock();
            caching_from = engine_seq.map(|engine_seq| ListingGen {
                engine_seq,
                names: t.names_version(),
                epoch,
                evictions: t.evictions_asked(),
            });
            let mut fixed = vec![RawEntry::Dot, RawEntry::DotDot];
            fixed.extend(t.memory_names(ino).into_iter().map(RawEntry::Named));
            let max_id = self.cfg.engine.limits.max_id_bytes;
            DirStream::new(ino, fixed, !dir.scratch, dir.prefix, max_id)
        };
        let fh = self.handles.insert(Handle::Dir(stream));
        if let Some(now) = caching_from {
            self.dir_cache.open(fh, ino, now);
        }
        Ok(fh)
    }

    /// How the kernel may use its listing cache for handle `fh`, decided
    /// at its `opendir` (`dircache`): the root, whose namespaces other
    /// writers create, and the history views are never cached.
    pub(crate) fn dir_caching(&self, fh: u64) -> DirCaching {
        self.dir_cache.mode(fh)
    }

    /// Entries after `offset`, at most `WANT` (for tools and tests; a mount
    /// fills its reply through `readdir_into`). With `plus`, each returned
    /// entry other than `.` and `..` counts as a lookup: the caller must
    /// `forget` those it could not pass on.
    pub async fn readdir(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        plus: bool,
    ) -> FsResult<Vec<DirEntry>> {
        let mut out = Vec::new();
        self.readdir_into(ino, fh, offset, plus, |e| {
            if out.len() >= WANT {
                return false;
            }
            out.push(DirEntry {
                ino: e.ino,
                offset: e.offset,
                name: e.name.to_string(),
                kind: e.kind,
                attr: e.attr,
            });
            true
        })
        .await?;
        Ok(out)
    }

    /// Hands `take` the entries after `offset` until it returns `false`
    /// (the entry did not fit its reply): only entries that fit are made,
    /// and with `plus` only those counted as lookups, so a reply costs the
    /// daemon what the kernel's buffer holds, whatever its size. Plain
    /// entries carry no attributes (`readdir` sends none), so they cost no
    /// inode-table work beyond the number a later `lookup` returns. An
    /// error after some entries were taken ends the page there; the next
    /// call meets it again and reports it.
    pub async fn readdir_into(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        plus: bool,
        mut take: impl FnMut(Listed<'_>) -> bool,
    ) -> FsResult<()> {
        let handle = self.handles.get(fh).ok_or(FsError::BadHandle)?;
        let mut handle = handle.lock().await;
        let Handle::Dir(stream) = &mut *handle else {
            return Err(FsError::BadHandle);
        };
        if stream.dir_ino != ino {
            return Err(FsError::BadHandle);
        }
        if !plus {
            self.dir_cache.plain_page(fh);
        }
        let mut taken = 0usize;
        let visit = |pos: u64, raw: RawRef<'_>| {
            let mut t = self.table.lock();
            let Some((entry, counted)) = self.resolve(&mut t, ino, pos, raw, plus) else {
                return true;
            };
            let entry_ino = entry.ino;
            if take(entry) {
                taken += 1;
                return true;
            }
            // Never seen by the kernel: not a lookup.
            if counted {
                t.forget(entry_ino, 1);
            }
            false
        };
        let e0 = self.epoch();
        let visited = if ino == ROOT_INO
            || self.snapshots_of(ino).is_some()
            || self.versions_of(ino).is_some()
        {
            stream.visit_after(offset, None, |_| false, e0, visit).await
        } else {
            let ns = self.namespace(ino)?;
            let engine = ns.engine().await?;
            let skip = |id: &_| self.table.lock().is_hidden(ns.ino, id);
            let visited = stream
                .visit_after(offset, Some(&engine), skip, e0, visit)
                .await;
            if stream.window_epoch != self.epoch() {
                // Sizes listed may predate a follower's refresh.
                ns.raced.store(true, Ordering::Release);
            }
            if matches!(visited, Ok(0)) {
                // The end, read after everything the listing showed.
                let engine_seq = engine.last_seq();
                let epoch = self.epoch();
                let (names, evictions) = {
                    let t = self.table.lock();
                    (t.names_version(), t.evictions_asked())
                };
                let now = ListingGen {
                    engine_seq,
                    names,
                    epoch,
                    evictions,
                };
                self.dir_cache.listed_to_end(fh, now);
            }
            visited
        };
        match visited {
            Err(_) if taken > 0 => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The entry `raw` stands for at position `pos`, and whether it counts
    /// as a lookup (`plus`, not a dot entry); `None` when it is gone.
    fn resolve<'a>(
        &self,
        t: &mut InodeTable,
        dir: u64,
        pos: u64,
        raw: RawRef<'a>,
        plus: bool,
    ) -> Option<(Listed<'a>, bool)> {
        let listed = |ino, name, kind, attr| Listed {
            ino,
            offset: pos,
            name,
            kind,
            attr,
        };
        if !plus {
            // Stored documents and the directories they make are files and
            // directories by their names' encoding; memory-only names (the
            // fixed part of the stream) are kept out of the stored part.
            let (name, ino, kind) = match raw {
                RawRef::Dot => (".", dir, FileKind::Directory),
                RawRef::DotDot => ("..", parent_of(t, dir), FileKind::Directory),
                RawRef::Named(name) => {
                    let ino = t.lookup(dir, name)?;
                    (name, ino, self.attr_locked(t, ino)?.kind)
                }
                RawRef::Dir { name, .. } => (name, t.ino_for(dir, name), FileKind::Directory),
                RawRef::Doc { name, .. } => (name, t.ino_for(dir, name), FileKind::File),
            };
            return Some((listed(ino, name, kind, None), false));
        }
        let (name, ino, counted) = match raw {
            RawRef::Dot => (".", dir, false),
            RawRef::DotDot => ("..", parent_of(t, dir), false),
            RawRef::Named(name) => (name, t.lookup(dir, name)?, true),
            RawRef::Dir { name, prefix } => {
                let ino = match t.lookup(dir, name) {
                    Some(ino) => ino,
                    None => {
                        let ns = super::core::ns_of(t, dir)?;
                        t.insert(
                            dir,
                            name,
                            Node::Dir(DirNode {
                                ns,
                                prefix: prefix.to_string(),
                                explicit: false,
                                scratch: false,
                            }),
                        )
                    }
                };
                (name, ino, true)
            }
            RawRef::Doc { name, id, meta } => {
                let ino = match t.lookup(dir, name) {
                    Some(ino) => {
                        if let Some(Node::Doc(d)) = t.get_mut(ino).map(|i| &mut i.node) {
                            d.meta.get_or_insert(meta);
                        }
                        ino
                    }
                    None => t.insert(
                        dir,
                        name,
                        Node::Doc(DocNode {
                            id: id.clone(),
                            meta: Some(meta),
                            pending: false,
                            kernel_cache_seq: None,
                            dirty_size: None,
                            mtime_set: None,
                        }),
                    ),
                };
                (name, ino, true)
            }
        };
        let attr = self.attr_locked(t, ino)?;
        if counted {
            t.remember(ino);
        }
        Some((listed(ino, name, attr.kind, Some(attr)), counted))
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles.remove(fh);
        self.dir_cache.release(fh);
    }
}
