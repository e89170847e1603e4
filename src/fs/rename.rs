//! `unlink` and `rename`.
//!
//! Document to document is one batch (put the old bytes and mtime under the
//! new id, an `"id"` key in them rewritten to the new id; delete the old
//! id). A scratch file renamed onto `x.json` is committed as that document,
//! its bytes and mtime as they are (rsync sets the time of its temporary
//! before the rename). A document renamed to a scratch name (vim's
//! `x.json~` backup) is *hidden*, not deleted: its bytes move into the
//! scratch file, and the stored document is deleted only when that scratch
//! file is deleted or replaced without the name being rewritten. If the
//! daemon stops first, the document is still there under its old name.

use super::core::FsCore;
use super::error::{FsError, FsResult};
use super::inodes::{DocMeta, DocNode, Node, ScratchNode, ROOT_INO};
use super::names::NameKind;
use super::namespace::Namespace;
use crate::types::{with_id, DocId, WriteBatch};
use std::sync::Arc;
use std::time::SystemTime;

/// `renameat2` flags the core understands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenameFlags {
    pub noreplace: bool,
    pub exchange: bool,
}

enum Existence {
    Absent,
    /// Created here, not committed yet.
    Pending(u64),
    Stored,
}

impl FsCore {
    /// Whether document `id` (file `name`) is visible.
    async fn doc_existence(
        &self,
        ns: &Arc<Namespace>,
        name: &str,
        id: &DocId,
    ) -> FsResult<Existence> {
        {
            let t = self.table.lock();
            match t
                .lookup(ns.ino, name)
                .and_then(|ino| t.get(ino).map(|i| (ino, i)))
            {
                Some((ino, i)) => match &i.node {
                    Node::Doc(d) if d.pending => return Ok(Existence::Pending(ino)),
                    Node::Doc(d) if d.meta.is_some() => return Ok(Existence::Stored),
                    _ => {}
                },
                None if t.is_hidden(ns.ino, id) => return Ok(Existence::Absent),
                None => {}
            }
        }
        let found = ns.engine().await?.get_stored(id).await?;
        Ok(if found.is_some() {
            Existence::Stored
        } else {
            Existence::Absent
        })
    }

    /// One engine write; a failure is logged once, naming `what`.
    async fn commit_batch(
        &self,
        ns: &Arc<Namespace>,
        batch: WriteBatch,
        what: &str,
    ) -> FsResult<()> {
        let result = async {
            let engine = ns.engine().await?;
            engine.write(batch).await?;
            Ok::<_, FsError>(())
        }
        .await;
        if let Err(e) = &result {
            log::warn!("{}/{what}: {e}", ns.name);
        }
        self.bump_epoch();
        result
    }

    pub async fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_name(name)?;
        let result = self.unlink_name(parent, name).await;
        if result.is_ok() && parent != ROOT_INO {
            self.table.lock().touch_dir(parent);
        }
        result
    }

    async fn unlink_name(&self, parent: u64, name: &str) -> FsResult<()> {
        if parent == ROOT_INO {
            return Err(match self.table.lock().lookup(ROOT_INO, name) {
                Some(_) => FsError::IsDir,
                None => FsError::NotFound,
            });
        }
        let ns = self.namespace(parent)?;
        self.check_writable()?;
        match self.classify(name) {
            // Control files always exist; removing one is a no-op so that
            // `rm -rf namespace` works.
            NameKind::Control(_) => Ok(()),
            NameKind::Scratch | NameKind::DocTooLong => {
                if self.table.lock().lookup(ns.ino, name).is_none() {
                    return Err(FsError::NotFound);
                }
                self.release_hidden(&ns, name).await?;
                self.table.lock().unlink(ns.ino, name);
                Ok(())
            }
            NameKind::Doc(id) => {
                match self.doc_existence(&ns, name, &id).await? {
                    Existence::Absent => return Err(FsError::NotFound),
                    Existence::Pending(_) => {}
                    Existence::Stored => {
                        let batch = WriteBatch::new().delete(id.clone());
                        self.commit_batch(&ns, batch, &format!("{name}: not deleted"))
                            .await?;
                    }
                }
                let mut t = self.table.lock();
                t.unlink(ns.ino, name);
                t.unhide(ns.ino, &id);
                Ok(())
            }
        }
    }

    /// If scratch file `name` hides a document, deletes that document: the
    /// scratch file is going away, and with it the document's last copy.
    async fn release_hidden(&self, ns: &Arc<Namespace>, name: &str) -> FsResult<()> {
        let hidden = {
            let t = self.table.lock();
            let ino = t.lookup(ns.ino, name);
            match ino.and_then(|ino| t.get(ino).map(|i| (ino, &i.node))) {
                Some((
                    ino,
                    Node::Scratch(ScratchNode {
                        hides: Some(id), ..
                    }),
                )) if t.hidden_by(ns.ino, id) == Some(ino) => Some(id.clone()),
                _ => None,
            }
        };
        if let Some(id) = hidden {
            let batch = WriteBatch::new().delete(id.clone());
            self.commit_batch(ns, batch, &format!("{name}: hidden document {id} not deleted"))
                .await?;
            self.table.lock().unhide(ns.ino, &id);
        }
        Ok(())
    }

    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        flags: RenameFlags,
    ) -> FsResult<()> {
        self.check_name(name)?;
        self.check_name(new_name)?;
        let result = self
            .rename_name(parent, name, new_parent, new_name, flags)
            .await;
        if result.is_ok() && name != new_name {
            self.table.lock().touch_dir(parent);
        }
        result
    }

    async fn rename_name(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        flags: RenameFlags,
    ) -> FsResult<()> {
        self.check_writable()?;
        if parent == ROOT_INO || new_parent == ROOT_INO {
            return Err(FsError::NotPermitted("namespaces cannot be renamed or moved"));
        }
        let ns = self.namespace(parent)?;
        if parent != new_parent {
            self.namespace(new_parent)?;
            return Err(FsError::CrossDevice);
        }
        if flags.exchange {
            return Err(FsError::Invalid("RENAME_EXCHANGE is not supported".into()));
        }
        let (src, dst) = (self.classify(name), self.classify(new_name));
        if matches!(src, NameKind::Control(_)) || matches!(dst, NameKind::Control(_)) {
            return Err(FsError::NotPermitted("control files cannot be renamed"));
        }
        if dst == NameKind::DocTooLong {
            return Err(FsError::NameTooLong);
        }
        let target_exists = match &dst {
            NameKind::Doc(id) => {
                !matches!(self.doc_existence(&ns, new_name, id).await?, Existence::Absent)
            }
            _ => self.table.lock().lookup(ns.ino, new_name).is_some(),
        };
        if name == new_name {
            let exists = match &src {
                NameKind::Doc(id) => {
                    !matches!(self.doc_existence(&ns, name, id).await?, Existence::Absent)
                }
                _ => target_exists,
            };
            return if exists {
                Ok(())
            } else {
                Err(FsError::NotFound)
            };
        }
        if flags.noreplace && target_exists {
            return Err(FsError::Exists);
        }
        match (src, dst) {
            (NameKind::Doc(a), NameKind::Doc(b)) => {
                self.rename_doc_to_doc(&ns, name, a, new_name, b).await
            }
            (NameKind::Doc(a), _) => self.rename_doc_to_scratch(&ns, name, a, new_name).await,
            (_, NameKind::Doc(b)) => self.rename_scratch_to_doc(&ns, name, new_name, b).await,
            _ => {
                if self.table.lock().lookup(ns.ino, name).is_none() {
                    return Err(FsError::NotFound);
                }
                self.release_hidden(&ns, new_name).await?;
                let mut t = self.table.lock();
                let ino = t.lookup(ns.ino, name).ok_or(FsError::NotFound)?;
                t.rename(ino, ns.ino, new_name);
                Ok(())
            }
        }
    }

    async fn rename_doc_to_doc(
        &self,
        ns: &Arc<Namespace>,
        name: &str,
        a: DocId,
        new_name: &str,
        b: DocId,
    ) -> FsResult<()> {
        let what = format!("{name} -> {new_name}: not renamed");
        match self.doc_existence(ns, name, &a).await? {
            Existence::Absent => Err(FsError::NotFound),
            Existence::Pending(ino) => {
                // Nothing stored under `a` yet: the open handle commits `b`.
                if let Existence::Stored = self.doc_existence(ns, new_name, &b).await? {
                    self.commit_batch(ns, WriteBatch::new().delete(b.clone()), &what)
                        .await?;
                }
                let mut t = self.table.lock();
                t.rename(ino, ns.ino, new_name);
                if let Some(Node::Doc(d)) = t.get_mut(ino).map(|i| &mut i.node) {
                    d.id = b.clone();
                }
                t.unhide(ns.ino, &b);
                Ok(())
            }
            Existence::Stored => {
                let engine = ns.engine().await?;
                let Some(old) = engine.get_stored(&a).await? else {
                    return Err(FsError::NotFound);
                };
                drop(engine);
                let json = match with_id(&old.json, &b) {
                    Ok(json) => json,
                    Err(e) => {
                        log::warn!("{}/{what}: {e}", ns.name);
                        return Err(e.into());
                    }
                };
                let batch = WriteBatch::new()
                    .put_json(b.clone(), json, Some(old.mtime()))
                    .delete(a.clone());
                self.commit_batch(ns, batch, &what).await?;
                let stored = ns.engine().await?.get_stored(&b).await.ok().flatten();
                self.move_to_doc(ns, name, new_name, b, stored.as_ref().map(DocMeta::of), 0)
                    .await;
                Ok(())
            }
        }
    }

    /// After a committed rename onto document `b`: the inode at `name`
    /// (if the kernel knows one) now is that document.
    async fn move_to_doc(
        &self,
        ns: &Arc<Namespace>,
        name: &str,
        new_name: &str,
        b: DocId,
        meta: Option<DocMeta>,
        scratch_len: u64,
    ) {
        let moved = {
            let mut t = self.table.lock();
            let moved = t.lookup(ns.ino, name);
            match moved {
                Some(ino) => {
                    t.rename(ino, ns.ino, new_name);
                    if let Some(inode) = t.get_mut(ino) {
                        if let Node::Doc(d) = &mut inode.node {
                            d.id = b.clone();
                            d.meta = meta;
                            d.kernel_cache_seq = None;
                        } else {
                            inode.node = Node::Doc(DocNode {
                                id: b.clone(),
                                meta,
                                pending: false,
                                kernel_cache_seq: None,
                                dirty_size: None,
                                mtime_set: None,
                            });
                        }
                    }
                    t.scratch_bytes = t.scratch_bytes.saturating_sub(scratch_len);
                    t.reindex(ino);
                }
                None => {
                    t.unlink(ns.ino, new_name);
                }
            }
            t.unhide(ns.ino, &b);
            moved
        };
        if let Some(ino) = moved {
            self.invalidate_inode(ino, false).await;
        }
    }

    async fn rename_scratch_to_doc(
        &self,
        ns: &Arc<Namespace>,
        name: &str,
        new_name: &str,
        b: DocId,
    ) -> FsResult<()> {
        let (data, mtime, hides) = {
            let t = self.table.lock();
            let ino = t.lookup(ns.ino, name).ok_or(FsError::NotFound)?;
            match t.get(ino).map(|i| &i.node) {
                Some(Node::Scratch(s)) => (
                    s.data.clone(),
                    s.mtime,
                    s.hides
                        .clone()
                        .filter(|h| h != &b && t.hidden_by(ns.ino, h) == Some(ino)),
                ),
                _ => return Err(FsError::NotFound),
            }
        };
        let what = format!("{new_name}: not saved (renamed from {name})");
        if let Err(e) = self.cfg.engine.limits.check_json(&b, &data) {
            log::warn!("{}/{what}: {e}", ns.name);
            return Err(e.into());
        }
        let len = data.len() as u64;
        let mut batch = WriteBatch::new().put_json(b.clone(), data, Some(mtime));
        if let Some(h) = &hides {
            batch = batch.delete(h.clone());
        }
        self.commit_batch(ns, batch, &what).await?;
        let stored = ns.engine().await?.get_stored(&b).await.ok().flatten();
        if let Some(h) = &hides {
            self.table.lock().unhide(ns.ino, h);
        }
        let meta = stored.as_ref().map(DocMeta::of);
        self.move_to_doc(ns, name, new_name, b, meta, len).await;
        Ok(())
    }

    async fn rename_doc_to_scratch(
        &self,
        ns: &Arc<Namespace>,
        name: &str,
        a: DocId,
        new_name: &str,
    ) -> FsResult<()> {
        let data = match self.doc_existence(ns, name, &a).await? {
            Existence::Absent => return Err(FsError::NotFound),
            Existence::Pending(_) => None,
            Existence::Stored => {
                let stored = ns.engine().await?.get_stored(&a).await?;
                Some(stored.ok_or(FsError::NotFound)?)
            }
        };
        let len = data.as_ref().map_or(0, |d| d.json.len() as u64);
        if self.table.lock().scratch_bytes.saturating_add(len) > self.cfg.scratch_limit {
            return Err(FsError::NoSpace(format!(
                "scratch files are held in memory, {} bytes at most",
                self.cfg.scratch_limit
            )));
        }
        self.release_hidden(ns, new_name).await?;
        let mut t = self.table.lock();
        let node = Node::Scratch(ScratchNode {
            data: data.as_ref().map(|d| d.json.to_vec()).unwrap_or_default(),
            mtime: data.as_ref().map_or_else(SystemTime::now, |d| d.mtime()),
            atime: data.as_ref().map_or_else(SystemTime::now, |d| d.mtime()),
            mode: None,
            hides: None,
        });
        let ino = match t.lookup(ns.ino, name) {
            Some(ino) => {
                t.rename(ino, ns.ino, new_name);
                if let Some(inode) = t.get_mut(ino) {
                    inode.node = node;
                }
                t.scratch_bytes += len;
                ino
            }
            None => t.insert(ns.ino, new_name, node),
        };
        if data.is_some() {
            t.hide(ns.ino, a, ino);
        }
        t.reindex(ino);
        Ok(())
    }
}
