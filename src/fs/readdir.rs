//! Directory listings: `opendir` fixes the in-memory entries, `readdir`
//! streams the rest from the engine through the handle's `DirStream`.
//! Control files are never listed (they are reachable by name), so
//! `grep -r`, `find`, `rsync`, `tar` and `cp -r` never run or copy them.
//! Whether the kernel may cache a listing is decided at `opendir` and
//! settled when it is read to its end (`dircache`).

use std::sync::atomic::Ordering;

use super::attr::{Attr, DirEntry, FileKind};
use super::core::FsCore;
use super::dircache::{DirCaching, ListingGen};
use super::dirstream::{DirStream, RawEntry};
use super::error::{FsError, FsResult};
use super::handles::Handle;
use super::inodes::{DirNode, DocNode, InodeTable, Node, ROOT_INO};

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

    /// Entries after `offset`. With `plus`, each returned entry other than
    /// `.` and `..` counts as a lookup: the caller must `forget` those it
    /// could not pass on.
    pub async fn readdir(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        plus: bool,
    ) -> FsResult<Vec<DirEntry>> {
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
        let e0 = self.epoch();
        let raw = if ino == ROOT_INO
            || self.snapshots_of(ino).is_some()
            || self.versions_of(ino).is_some()
        {
            stream.entries_after(offset, None, |_| false, e0).await?
        } else {
            let ns = self.namespace(ino)?;
            let engine = ns.engine().await?;
            let skip = |id: &_| self.table.lock().is_hidden(ns.ino, id);
            let raw = stream.entries_after(offset, Some(&engine), skip, e0).await?;
            if stream.window_epoch != self.epoch() {
                // Sizes listed may predate a follower's refresh.
                ns.raced.store(true, Ordering::Release);
            }
            if raw.is_empty() {
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
            raw
        };
        let mut t = self.table.lock();
        let mut out = Vec::with_capacity(raw.len());
        for (pos, entry) in raw {
            if let Some(e) = self.resolve(&mut t, ino, pos, entry, plus) {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn resolve(
        &self,
        t: &mut InodeTable,
        dir: u64,
        pos: u64,
        entry: RawEntry,
        plus: bool,
    ) -> Option<DirEntry> {
        let (name, ino, count) = match entry {
            RawEntry::Dot => (".".to_string(), dir, false),
            RawEntry::DotDot => {
                let parent = t.get(dir).map_or(ROOT_INO, |i| i.parent);
                ("..".to_string(), parent, false)
            }
            RawEntry::Named(name) => {
                let ino = t.lookup(dir, &name)?;
                (name, ino, true)
            }
            RawEntry::Dir { name, prefix } => {
                let ino = match t.lookup(dir, &name) {
                    Some(ino) => ino,
                    None if plus => {
                        let ns = super::core::ns_of(t, dir)?;
                        t.insert(
                            dir,
                            &name,
                            Node::Dir(DirNode {
                                ns,
                                prefix,
                                explicit: false,
                                scratch: false,
                            }),
                        )
                    }
                    None => {
                        let ino = t.ino_for(dir, &name);
                        let attr = Attr {
                            ino,
                            ..self.dir_attr(t, ino)
                        };
                        return Some(DirEntry {
                            ino,
                            offset: pos,
                            name,
                            kind: FileKind::Directory,
                            attr,
                        });
                    }
                };
                (name, ino, true)
            }
            RawEntry::Doc { name, id, meta } => {
                let ino = match t.lookup(dir, &name) {
                    Some(ino) => {
                        if let Some(Node::Doc(d)) = t.get_mut(ino).map(|i| &mut i.node) {
                            d.meta.get_or_insert(meta);
                        }
                        ino
                    }
                    None if plus => t.insert(
                        dir,
                        &name,
                        Node::Doc(DocNode {
                            id,
                            meta: Some(meta),
                            pending: false,
                            kernel_cache_seq: None,
                            dirty_size: None,
                            mtime_set: None,
                        }),
                    ),
                    None => {
                        let ino = t.ino_for(dir, &name);
                        let attr = Attr {
                            ino,
                            kind: FileKind::File,
                            size: meta.size,
                            mtime: meta.mtime,
                            atime: meta.mtime,
                            perm: self.cfg.file_mode,
                            nlink: 1,
                            uid: self.cfg.uid,
                            uncached: false,
                            gid: self.cfg.gid,
                        };
                        return Some(DirEntry {
                            ino,
                            offset: pos,
                            name,
                            kind: FileKind::File,
                            attr,
                        });
                    }
                };
                (name, ino, true)
            }
        };
        let attr = self.attr_locked(t, ino)?;
        if plus && count {
            t.remember(ino);
        }
        Some(DirEntry {
            ino,
            offset: pos,
            name,
            kind: attr.kind,
            attr,
        })
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles.remove(fh);
        self.dir_cache.release(fh);
    }
}
