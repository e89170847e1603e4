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

use super::core::{DirRef, FsCore};
use super::error::{FsError, FsResult};
use super::inodes::{DocMeta, DocNode, Node, ScratchNode, ROOT_INO};
use super::io::PAGES_MIXED;
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
    async fn doc_existence(&self, dir: &DirRef, name: &str, id: &DocId) -> FsResult<Existence> {
        let ns = &dir.ns;
        {
            let t = self.table.lock();
            match t
                .lookup(dir.ino, name)
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
        let dir = self.dir_of(parent)?;
        let ns = dir.ns.clone();
        self.check_writable()?;
        ns.check_not_view()?;
        match self.classify(&dir, name) {
            // Control files always exist; removing one is a no-op so that
            // `rm -rf namespace` works.
            NameKind::Control(_) => Ok(()),
            NameKind::Scratch | NameKind::DocTooLong => {
                let found = self.table.lock().lookup(parent, name);
                let is_dir = match found {
                    Some(ino) => {
                        matches!(self.table.lock().get(ino).map(|i| &i.node), Some(Node::Dir(_)))
                    }
                    None => {
                        self.find(parent, name).await?;
                        true
                    }
                };
                if is_dir {
                    return Err(FsError::IsDir);
                }
                self.release_hidden(&dir, name).await?;
                self.table.lock().unlink(parent, name);
                Ok(())
            }
            NameKind::Doc(id) => {
                match self.doc_existence(&dir, name, &id).await? {
                    Existence::Absent => return Err(FsError::NotFound),
                    Existence::Pending(_) => {}
                    Existence::Stored => {
                        let batch = WriteBatch::new().delete(id.clone());
                        self.commit_batch(&ns, batch, &format!("{name}: not deleted"))
                            .await?;
                    }
                }
                let mut t = self.table.lock();
                t.unlink(parent, name);
                t.unhide(ns.ino, &id);
                self.keep_dir(&mut t, parent);
                Ok(())
            }
        }
    }

    /// If scratch file `name` hides a document, deletes that document: the
    /// scratch file is going away, and with it the document's last copy.
    async fn release_hidden(&self, dir: &DirRef, name: &str) -> FsResult<()> {
        let ns = &dir.ns;
        let hidden = {
            let t = self.table.lock();
            let ino = t.lookup(dir.ino, name);
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
        if result.is_ok() && (name != new_name || parent != new_parent) {
            let mut t = self.table.lock();
            t.touch_dir(parent);
            t.touch_dir(new_parent);
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
        let from = self.dir_of(parent)?;
        let to = self.dir_of(new_parent)?;
        from.ns.check_not_view()?;
        to.ns.check_not_view()?;
        if from.ns.ino != to.ns.ino {
            return Err(FsError::CrossDevice);
        }
        if flags.exchange {
            return Err(FsError::Invalid("RENAME_EXCHANGE is not supported".into()));
        }
        let (src, dst) = (self.classify(&from, name), self.classify(&to, new_name));
        if matches!(src, NameKind::Control(_)) || matches!(dst, NameKind::Control(_)) {
            return Err(FsError::NotPermitted("control files cannot be renamed"));
        }
        if dst == NameKind::DocTooLong {
            return Err(FsError::NameTooLong);
        }
        if !matches!(src, NameKind::Doc(_)) && self.is_dir_entry(parent, name).await? {
            if parent == new_parent && name == new_name {
                return Ok(());
            }
            return self
                .rename_dir(parent, name, new_parent, new_name, flags.noreplace)
                .await;
        }
        if !matches!(dst, NameKind::Doc(_)) && self.is_dir_entry(new_parent, new_name).await? {
            return Err(FsError::IsDir);
        }
        let target_exists = match &dst {
            NameKind::Doc(id) => {
                !matches!(self.doc_existence(&to, new_name, id).await?, Existence::Absent)
            }
            _ => self.table.lock().lookup(to.ino, new_name).is_some(),
        };
        if name == new_name && parent == new_parent {
            let exists = match &src {
                NameKind::Doc(id) => {
                    !matches!(self.doc_existence(&from, name, id).await?, Existence::Absent)
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
                self.rename_doc_to_doc(&from, name, a, &to, new_name, b).await
            }
            (NameKind::Doc(a), _) => {
                self.rename_doc_to_scratch(&from, name, a, &to, new_name).await
            }
            (_, NameKind::Doc(b)) => {
                self.rename_scratch_to_doc(&from, name, &to, new_name, b).await
            }
            _ => {
                if self.table.lock().lookup(from.ino, name).is_none() {
                    return Err(FsError::NotFound);
                }
                self.release_hidden(&to, new_name).await?;
                let mut t = self.table.lock();
                let ino = t.lookup(from.ino, name).ok_or(FsError::NotFound)?;
                t.rename(ino, to.ino, new_name);
                Ok(())
            }
        }
    }

    /// Whether `name` in directory `parent` is a directory.
    async fn is_dir_entry(&self, parent: u64, name: &str) -> FsResult<bool> {
        match self.find(parent, name).await {
            Ok(attr) => Ok(attr.kind == super::attr::FileKind::Directory),
            Err(FsError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn rename_doc_to_doc(
        &self,
        from: &DirRef,
        name: &str,
        a: DocId,
        to: &DirRef,
        new_name: &str,
        b: DocId,
    ) -> FsResult<()> {
        let ns = &from.ns;
        let what = format!("{name} -> {new_name}: not renamed");
        match self.doc_existence(from, name, &a).await? {
            Existence::Absent => Err(FsError::NotFound),
            Existence::Pending(ino) => {
                // Nothing stored under `a` yet: the open handle commits `b`.
                if let Existence::Stored = self.doc_existence(to, new_name, &b).await? {
                    self.commit_batch(ns, WriteBatch::new().delete(b.clone()), &what)
                        .await?;
                }
                let mut t = self.table.lock();
                t.rename(ino, to.ino, new_name);
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
                let meta = stored.as_ref().map(DocMeta::of);
                self.move_to_doc(from, name, to, new_name, b, meta, 0).await;
                Ok(())
            }
        }
    }

    /// After a committed rename onto document `b`: the inode at `name`
    /// (if the kernel knows one) now is that document.
    #[allow(clippy::too_many_arguments)]
    async fn move_to_doc(
        &self,
        from: &DirRef,
        name: &str,
        to: &DirRef,
        new_name: &str,
        b: DocId,
        meta: Option<DocMeta>,
        scratch_len: u64,
    ) {
        let ns = &from.ns;
        let moved = {
            let mut t = self.table.lock();
            let moved = t.lookup(from.ino, name);
            self.keep_dir(&mut t, from.ino);
            match moved {
                Some(ino) => {
                    t.rename(ino, to.ino, new_name);
                    if let Some(inode) = t.get_mut(ino) {
                        if let Node::Doc(d) = &mut inode.node {
                            d.id = b.clone();
                            d.meta = meta;
                            // Its pages hold what it held under its old name.
                            d.kernel_cache_seq = PAGES_MIXED;
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
                    t.unlink(to.ino, new_name);
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
        from: &DirRef,
        name: &str,
        to: &DirRef,
        new_name: &str,
        b: DocId,
    ) -> FsResult<()> {
        let ns = &from.ns;
        let (data, mtime, hides) = {
            let t = self.table.lock();
            let ino = t.lookup(from.ino, name).ok_or(FsError::NotFound)?;
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
        self.move_to_doc(from, name, to, new_name, b, meta, len).await;
        Ok(())
    }

    async fn rename_doc_to_scratch(
        &self,
        from: &DirRef,
        name: &str,
        a: DocId,
        to: &DirRef,
        new_name: &str,
    ) -> FsResult<()> {
        let ns = &from.ns;
        let data = match self.doc_existence(from, name, &a).await? {
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
        self.release_hidden(to, new_name).await?;
        let mut t = self.table.lock();
        let node = Node::Scratch(ScratchNode {
            data: data.as_ref().map(|d| d.json.to_vec()).unwrap_or_default(),
            mtime: data.as_ref().map_or_else(SystemTime::now, |d| d.mtime()),
            atime: data.as_ref().map_or_else(SystemTime::now, |d| d.mtime()),
            mode: None,
            hides: None,
        });
        let ino = match t.lookup(from.ino, name) {
            Some(ino) => {
                t.rename(ino, to.ino, new_name);
                if let Some(inode) = t.get_mut(ino) {
                    inode.node = node;
                }
                t.scratch_bytes += len;
                ino
            }
            None => t.insert(to.ino, new_name, node),
        };
        if data.is_some() {
            t.hide(ns.ino, a, ino);
        }
        t.reindex(ino);
        Ok(())
    }
}
