//! `lookup`, `getattr` and `forget`: resolving names to inodes, and
//! folding what the engine stores into the inode table.

use std::sync::atomic::Ordering;

use super::attr::Attr;
use super::core::{control_ino, ns_of, DirRef, FsCore};
use super::error::{FsError, FsResult};
use super::history::snapshots::SNAPSHOTS_DIR;
use super::history::versions::VERSIONS_DIR;
use super::inodes::{DirNode, DocMeta, DocNode, Inode, InodeTable, Node, ROOT_INO};
use super::names::{decode_dir, ControlKind, NameKind};
use super::namespace::{get_stored, scan, Namespace};
use crate::types::DocId;

impl FsCore {
    /// Looks `name` up; counts as a lookup of the returned inode.
    pub async fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        let attr = self.find(parent, name).await?;
        self.remember(attr.ino);
        Ok(attr)
    }

    /// `lookup` without counting it.
    pub(crate) async fn find(&self, parent: u64, name: &str) -> FsResult<Attr> {
        self.check_name(name)?;
        if parent == ROOT_INO {
            return self.lookup_namespace(name).await;
        }
        if let Some(ns) = self.snapshots_of(parent) {
            return self.lookup_snapshot(&ns, parent, name).await;
        }
        if let Some(ns) = self.versions_of(parent) {
            return self.lookup_version(&ns, parent, name).await;
        }
        let dir = self.dir_of(parent)?;
        let ns = &dir.ns;
        if dir.ino == ns.ino && name == SNAPSHOTS_DIR {
            return self.snapshots_dir(ns);
        }
        if dir.ino == ns.ino && name == VERSIONS_DIR {
            return self.versions_dir(ns);
        }
        let attr = match self.classify(&dir, name) {
            NameKind::Doc(id) => self.lookup_doc(&dir, name, id).await?,
            NameKind::Control(ControlKind::Changes) if ns.is_view() => {
                return Err(FsError::NotFound)
            }
            NameKind::Control(kind) => {
                if kind.is_report() {
                    self.report_for_stat(ns, kind).await?;
                }
                if kind == ControlKind::Changes {
                    ns.changes.refresh(&self.store, &ns.name, false).await?;
                }
                let mut t = self.table.lock();
                let ino = control_ino(&mut t, ns.ino, kind);
                self.attr_locked(&t, ino).ok_or(FsError::NotFound)?
            }
            NameKind::Scratch | NameKind::DocTooLong => {
                let (known, recheck) = {
                    let t = self.table.lock();
                    let ino = t.lookup(parent, name);
                    // A follower's directory that exists only because its
                    // writer's documents do may have gone with them.
                    let recheck = ino.and_then(|ino| match t.get(ino).map(|i| &i.node) {
                        Some(Node::Dir(d)) if self.cfg.read_only && !d.explicit => {
                            Some(d.prefix.clone())
                        }
                        _ => None,
                    });
                    let known = ino.map(|ino| self.attr_locked(&t, ino).ok_or(FsError::NotFound));
                    (known, recheck)
                };
                if let Some(prefix) = recheck {
                    if !self.dir_has_docs(ns, &prefix).await? {
                        self.table.lock().unlink(parent, name);
                        return Err(FsError::NotFound);
                    }
                }
                match known {
                    Some(attr) => attr?,
                    None => self.lookup_subdir(&dir, name).await?,
                }
            }
        };
        Ok(attr)
    }

    /// A directory `name` below `dir` that exists because documents lie
    /// below it (one scan of at most one id, and one point lookup for the
    /// document whose last component is empty).
    async fn lookup_subdir(&self, dir: &DirRef, name: &str) -> FsResult<Attr> {
        if dir.scratch {
            return Err(FsError::NotFound);
        }
        let comp = decode_dir(name).ok_or(FsError::NotFound)?;
        let prefix = format!("{}{comp}/", dir.prefix);
        if prefix.len() > self.cfg.engine.limits.max_id_bytes {
            return Err(FsError::NotFound);
        }
        if !self.dir_has_docs(&dir.ns, &prefix).await? {
            return Err(FsError::NotFound);
        }
        let mut t = self.table.lock();
        let ino = match t.lookup(dir.ino, name) {
            Some(ino) => ino,
            None => t.insert(
                dir.ino,
                name,
                Node::Dir(DirNode {
                    ns: dir.ns.clone(),
                    prefix,
                    explicit: false,
                    scratch: false,
                }),
            ),
        };
        self.attr_locked(&t, ino).ok_or(FsError::NotFound)
    }

    /// Whether any stored document's id starts with `prefix` (ends in `/`).
    pub(crate) async fn dir_has_docs(&self, ns: &Namespace, prefix: &str) -> FsResult<bool> {
        let engine = ns.engine().await?;
        let after = DocId::from(prefix);
        let first = scan(&engine, Some(&after), 1).await?;
        if first
            .first()
            .is_some_and(|d| d.id.as_str().starts_with(prefix))
        {
            return Ok(true);
        }
        Ok(get_stored(&engine, &after).await?.is_some())
    }

    async fn lookup_doc(&self, dir: &DirRef, name: &str, id: DocId) -> FsResult<Attr> {
        let ns = &dir.ns;
        {
            let t = self.table.lock();
            match t.lookup(dir.ino, name) {
                Some(ino) => {
                    if let Some(attr) = self.attr_locked(&t, ino) {
                        return Ok(attr);
                    }
                }
                None if t.is_hidden(ns.ino, &id) => return Err(FsError::NotFound),
                None => {}
            }
        }
        let e0 = self.epoch();
        let stored = get_stored(&*ns.engine().await?, &id).await?;
        let mut t = self.table.lock();
        let ino =
            self.settle_doc(&mut t, dir.ino, name, &id, stored.as_ref().map(DocMeta::of), e0)?;
        self.attr_locked(&t, ino).ok_or(FsError::NotFound)
    }

    /// Folds a fetched stored state of document `name` in directory inode
    /// `dir_ino` into the table; returns the inode.
    pub(crate) fn settle_doc(
        &self,
        t: &mut InodeTable,
        dir_ino: u64,
        name: &str,
        id: &DocId,
        fetched: Option<DocMeta>,
        e0: u64,
    ) -> FsResult<u64> {
        let fresh = self.epoch() == e0;
        let ns = ns_of(t, dir_ino).ok_or(FsError::NotFound)?;
        if !fresh {
            // What was fetched may predate a follower's refresh: have the
            // next refresh look again.
            ns.raced.store(true, Ordering::Release);
        }
        let ns_ino = ns.ino;
        match t.lookup(dir_ino, name) {
            Some(ino) => {
                let Some(Inode {
                    node: Node::Doc(d), ..
                }) = t.get_mut(ino)
                else {
                    return Err(FsError::NotFound);
                };
                match fetched {
                    Some(m) if fresh || d.meta.is_none() => d.meta = Some(m),
                    Some(_) => {}
                    None if fresh && !d.pending && d.dirty_size.is_none() => {
                        t.unlink(dir_ino, name);
                        return Err(FsError::NotFound);
                    }
                    None => {}
                }
                Ok(ino)
            }
            None => match fetched {
                Some(_) if t.is_hidden(ns_ino, id) => Err(FsError::NotFound),
                Some(meta) => Ok(t.insert(
                    dir_ino,
                    name,
                    Node::Doc(DocNode {
                        id: id.clone(),
                        meta: Some(meta),
                        pending: false,
                        kernel_cache_seq: None,
                        dirty_size: None,
                        mtime_set: None,
                    }),
                )),
                None => Err(FsError::NotFound),
            },
        }
    }

    /// The kernel learned of `ino` (lookup, create, readdirplus entry).
    pub(crate) fn remember(&self, ino: u64) {
        self.table.lock().remember(ino);
    }

    /// `getattr` answered from the inode table alone, in one lock and
    /// without a future, so the FUSE thread that read the request answers
    /// it (`Adapter::getattr`). `None` when the answer needs the store or a
    /// report refreshed first (a document whose stored state is unknown,
    /// the reports, `.changes`): then the async `getattr` runs.
    pub fn cached_attr(&self, ino: u64) -> Option<FsResult<Attr>> {
        let t = self.table.lock();
        match t.get(ino).map(|i| &i.node) {
            Some(Node::Control(kind)) if kind.is_report() || *kind == ControlKind::Changes => None,
            _ => self.table_attr(&t, ino),
        }
    }

    /// What the table alone says of `ino`; `None` for a document whose
    /// stored state is unknown.
    fn table_attr(&self, t: &InodeTable, ino: u64) -> Option<FsResult<Attr>> {
        let Some(attr) = self.attr_locked(t, ino) else {
            return match t.get(ino) {
                Some(_) => None,
                None => Some(Err(FsError::NotFound)),
            };
        };
        if let Some(Node::Namespace(ns)) = t.get(ino).map(|i| &i.node) {
            if ns.is_removed() {
                return Some(Err(FsError::NotFound));
            }
        }
        Some(Ok(attr))
    }

    pub async fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let report = {
            let t = self.table.lock();
            match t.get(ino) {
                Some(Inode {
                    node: Node::Control(kind),
                    parent,
                    ..
                }) if kind.is_report() || *kind == ControlKind::Changes => Some((*parent, *kind)),
                _ => None,
            }
        };
        if let Some((parent, kind)) = report {
            let ns = self.namespace(parent)?;
            if kind == ControlKind::Changes {
                ns.changes.refresh(&self.store, &ns.name, false).await?;
            } else {
                self.report_for_stat(&ns, kind).await?;
            }
        }
        if let Some(known) = self.table_attr(&self.table.lock(), ino) {
            return known;
        }
        self.refresh_doc(ino).await?;
        let t = self.table.lock();
        self.attr_locked(&t, ino).ok_or(FsError::NotFound)
    }

    /// Re-reads the stored state of document inode `ino`.
    pub(crate) async fn refresh_doc(&self, ino: u64) -> FsResult<()> {
        let (ns, id) = self.doc_of(ino)?;
        let e0 = self.epoch();
        let stored = get_stored(&*ns.engine().await?, &id).await?;
        let mut t = self.table.lock();
        let (linked, parent, name) = match t.get(ino) {
            Some(i) => (i.linked, i.parent, i.name.clone()),
            None => return Err(FsError::NotFound),
        };
        if linked {
            self.settle_doc(&mut t, parent, &name, &id, stored.as_ref().map(DocMeta::of), e0)?;
        } else if let Some(Node::Doc(d)) = t.get_mut(ino).map(|i| &mut i.node) {
            d.meta = d.meta.or(stored.as_ref().map(DocMeta::of));
        }
        Ok(())
    }

    pub fn forget(&self, ino: u64, nlookup: u64) {
        self.table.lock().forget(ino, nlookup);
    }
}
