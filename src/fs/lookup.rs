//! `lookup`, `getattr` and `forget`: resolving names to inodes, and
//! folding what the engine stores into the inode table.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::attr::Attr;
use super::core::{control_ino, ns_of, FsCore};
use super::error::{FsError, FsResult};
use super::inodes::{DocMeta, DocNode, Inode, InodeTable, Node, ROOT_INO};
use super::names::NameKind;
use super::namespace::{get_stored, Namespace};
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
        let ns = self.namespace(parent)?;
        let attr = match self.classify(name) {
            NameKind::Doc(id) => self.lookup_doc(&ns, name, id).await?,
            NameKind::Control(kind) => {
                if kind.is_report() {
                    self.report_for_stat(&ns, kind).await?;
                }
                let mut t = self.table.lock();
                let ino = control_ino(&mut t, ns.ino, kind);
                self.attr_locked(&t, ino).ok_or(FsError::NotFound)?
            }
            NameKind::Scratch | NameKind::DocTooLong => {
                let t = self.table.lock();
                let ino = t.lookup(ns.ino, name).ok_or(FsError::NotFound)?;
                self.attr_locked(&t, ino).ok_or(FsError::NotFound)?
            }
        };
        Ok(attr)
    }

    async fn lookup_doc(&self, ns: &Arc<Namespace>, name: &str, id: DocId) -> FsResult<Attr> {
        {
            let t = self.table.lock();
            match t.lookup(ns.ino, name) {
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
            self.settle_doc(&mut t, ns.ino, name, &id, stored.as_ref().map(DocMeta::of), e0)?;
        self.attr_locked(&t, ino).ok_or(FsError::NotFound)
    }

    /// Folds a fetched stored state into the table; returns the inode.
    pub(crate) fn settle_doc(
        &self,
        t: &mut InodeTable,
        ns_ino: u64,
        name: &str,
        id: &DocId,
        fetched: Option<DocMeta>,
        e0: u64,
    ) -> FsResult<u64> {
        let fresh = self.epoch() == e0;
        if !fresh {
            // What was fetched may predate a follower's refresh: have the
            // next refresh look again.
            if let Some(ns) = ns_of(t, ns_ino) {
                ns.raced.store(true, Ordering::Release);
            }
        }
        match t.lookup(ns_ino, name) {
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
                        t.unlink(ns_ino, name);
                        return Err(FsError::NotFound);
                    }
                    None => {}
                }
                Ok(ino)
            }
            None => match fetched {
                Some(_) if t.is_hidden(ns_ino, id) => Err(FsError::NotFound),
                Some(meta) => Ok(t.insert(
                    ns_ino,
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
        if let Some(inode) = self.table.lock().get_mut(ino) {
            inode.nlookup += 1;
        }
    }

    pub async fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let report = {
            let t = self.table.lock();
            match t.get(ino) {
                Some(Inode {
                    node: Node::Control(kind),
                    parent,
                    ..
                }) if kind.is_report() => Some((*parent, *kind)),
                _ => None,
            }
        };
        if let Some((parent, kind)) = report {
            self.report_for_stat(&self.namespace(parent)?, kind).await?;
        }
        let need = {
            let t = self.table.lock();
            if let Some(attr) = self.attr_locked(&t, ino) {
                if let Some(Node::Namespace(ns)) = t.get(ino).map(|i| &i.node) {
                    if ns.is_removed() {
                        return Err(FsError::NotFound);
                    }
                }
                return Ok(attr);
            }
            t.get(ino).is_some()
        };
        if !need {
            return Err(FsError::NotFound);
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
