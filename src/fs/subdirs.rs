//! Directories below a namespace's top (DESIGN §5): `/` in an id separates
//! directories, so a directory exists while some document's id starts with
//! its prefix, or after `mkdir` until `rmdir` (or the daemon stops: empty
//! directories are not stored). A directory this mount emptied (deleting or
//! moving its last document) stays until `rmdir`, so `rm -r` can remove it.
//!
//! Renaming a directory moves every document below it in one batch: each
//! is put under its new id with the same bytes (an `"id"` key rewritten)
//! and mtime, and deleted under the old one. A tree of more than
//! `MAX_MOVE_DOCS` documents, or one holding files that exist only in this
//! daemon (scratch files, uncommitted documents), is refused with `EXDEV`, so `mv` falls back to copying and deleting.

use super::attr::Attr;
use super::core::FsCore;
use super::error::{FsError, FsResult};
use super::inodes::{DirNode, InodeTable, Node};
use super::names::decode_dir;
use super::namespace::scan;
use crate::types::{with_id, DocId, WriteBatch};

/// Most documents one directory rename moves (one batch).
pub(crate) const MAX_MOVE_DOCS: usize = 10_000;

impl FsCore {
    /// `mkdir` below a namespace's top.
    pub(crate) async fn mkdir_below(&self, parent: u64, name: &str) -> FsResult<Attr> {
        self.check_writable()?;
        let dir = self.dir_of(parent)?;
        dir.ns.check_not_fenced()?;
        let Some(comp) = decode_dir(name) else {
            return Err(FsError::NotPermitted(
                "a directory name cannot start with '.', end in \".json\" or hold a stray '%' \
                 (those names are documents or scratch files)",
            ));
        };
        let prefix = format!("{}{comp}/", dir.prefix);
        if prefix.len() >= self.cfg.engine.limits.max_id_bytes {
            return Err(FsError::NameTooLong);
        }
        match self.find(parent, name).await {
            Ok(_) => return Err(FsError::Exists),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let mut t = self.table.lock();
        let ino = t.insert(
            parent,
            name,
            Node::Dir(DirNode {
                ns: dir.ns.clone(),
                prefix,
                explicit: true,
            }),
        );
        t.touch_dir(parent);
        if let Some(inode) = t.get_mut(ino) {
            inode.nlookup += 1;
        }
        Ok(self.dir_attr(&t, ino))
    }

    /// `rmdir` below a namespace's top: `ENOTEMPTY` while a document lies
    /// below it or it holds a file of this daemon.
    pub(crate) async fn rmdir_below(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let dir = self.dir_of(parent)?;
        let attr = self.find(parent, name).await?;
        let (prefix, ino) = {
            let t = self.table.lock();
            match t.get(attr.ino).map(|i| &i.node) {
                Some(Node::Dir(d)) => (d.prefix.clone(), attr.ino),
                _ => return Err(FsError::NotDir),
            }
        };
        dir.ns.check_not_fenced()?;
        if !self.table.lock().memory_names(ino).is_empty()
            || self.dir_has_docs(&dir.ns, &prefix).await?
        {
            return Err(FsError::NotEmpty);
        }
        let mut t = self.table.lock();
        t.unlink(parent, name);
        t.touch_dir(parent);
        Ok(())
    }

    /// Renames directory `name` of `parent` to `new_name` of `new_parent`
    /// (same namespace): one batch moving every document below it.
    pub(crate) async fn rename_dir(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        noreplace: bool,
    ) -> FsResult<()> {
        let src = self.dir_of(parent)?;
        let dst = self.dir_of(new_parent)?;
        let attr = self.find(parent, name).await?;
        let Some(comp) = decode_dir(new_name) else {
            return Err(FsError::NotPermitted("not a directory name"));
        };
        let (ino, old_prefix) = {
            let t = self.table.lock();
            match t.get(attr.ino).map(|i| &i.node) {
                Some(Node::Dir(d)) => (attr.ino, d.prefix.clone()),
                _ => return Err(FsError::NotDir),
            }
        };
        let new_prefix = format!("{}{comp}/", dst.prefix);
        if new_prefix.starts_with(&old_prefix) {
            return Err(FsError::Invalid("cannot move a directory into itself".into()));
        }
        if new_prefix.len() >= self.cfg.engine.limits.max_id_bytes {
            return Err(FsError::NameTooLong);
        }
        // The target: absent, or an empty directory (replaced).
        match self.find(new_parent, new_name).await {
            Ok(target) => {
                let target_prefix = {
                    let t = self.table.lock();
                    match t.get(target.ino).map(|i| &i.node) {
                        Some(Node::Dir(d)) => d.prefix.clone(),
                        _ => return Err(FsError::NotDir),
                    }
                };
                if noreplace {
                    return Err(FsError::Exists);
                }
                if !self.table.lock().memory_names(target.ino).is_empty()
                    || self.dir_has_docs(&dst.ns, &target_prefix).await?
                {
                    return Err(FsError::NotEmpty);
                }
            }
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        if has_memory_only_below(&self.table.lock(), ino) {
            return Err(FsError::CrossDevice);
        }
        // Every document below, in one batch, or EXDEV.
        let engine = src.ns.engine().await?;
        let mut batch = WriteBatch::new();
        let mut moved = 0usize;
        let mut cursor = DocId::from(old_prefix.as_str());
        let mut docs = Vec::new();
        if let Some(d) = super::namespace::get_stored(&engine, &cursor).await? {
            docs.push(d);
        }
        'scan: loop {
            let page = scan(&engine, Some(&cursor), 1000).await?;
            if page.is_empty() {
                break;
            }
            for d in page {
                if !d.id.as_str().starts_with(&old_prefix) {
                    break 'scan;
                }
                cursor = d.id.clone();
                docs.push(d);
                if docs.len() > MAX_MOVE_DOCS {
                    return Err(FsError::CrossDevice);
                }
            }
        }
        for d in docs {
            let new_id = DocId::from(format!("{new_prefix}{}", &d.id.as_str()[old_prefix.len()..]));
            self.cfg.engine.limits.check_id(&new_id)?;
            let json = with_id(&d.json, &new_id)?;
            batch = batch
                .put_json(new_id, json, Some(d.mtime()))
                .delete(d.id.clone());
            moved += 1;
        }
        drop(engine);
        let what = format!("{name} -> {new_name}: directory not moved");
        if moved > 0 {
            if let Err(e) = async {
                let engine = src.ns.engine().await?;
                engine.write(batch).await?;
                Ok::<_, FsError>(())
            }
            .await
            {
                log::warn!("{}/{what}: {e}", src.ns.name);
                return Err(e);
            }
        }
        self.bump_epoch();
        let mut t = self.table.lock();
        t.rename(ino, new_parent, new_name);
        retarget(&mut t, ino, &old_prefix, &new_prefix);
        // The source directory keeps existing as an (emptied) directory
        // only if it was one itself; its parent lost an entry.
        t.touch_dir(parent);
        t.touch_dir(new_parent);
        Ok(())
    }

    /// Directory `dir` lost a document through this mount: keep it (as if
    /// made by `mkdir`) so it does not vanish under `rm -r`.
    pub(crate) fn keep_dir(&self, t: &mut InodeTable, dir: u64) {
        if let Some(Node::Dir(d)) = t.get_mut(dir).map(|i| &mut i.node) {
            if !d.explicit {
                d.explicit = true;
                t.reindex(dir);
            }
        }
    }
}

/// Whether any file below directory inode `dir` exists only in memory
/// (directories made by `mkdir` move with the rename; files do not).
fn has_memory_only_below(t: &InodeTable, dir: u64) -> bool {
    t.descendants(dir)
        .into_iter()
        .any(|(ino, _, _)| match t.get(ino).map(|i| &i.node) {
            Some(Node::Scratch(_)) => true,
            Some(Node::Doc(d)) => d.pending,
            _ => false,
        })
}

/// After a directory rename: the ids and prefixes the table knows below
/// `dir` move from `old` to `new`.
fn retarget(t: &mut InodeTable, dir: u64, old: &str, new: &str) {
    let swap = |s: &str| format!("{new}{}", &s[old.len().min(s.len())..]);
    if let Some(Node::Dir(d)) = t.get_mut(dir).map(|i| &mut i.node) {
        d.prefix = swap(&d.prefix);
    }
    for (ino, _) in t.children(dir) {
        match t.get_mut(ino).map(|i| &mut i.node) {
            Some(Node::Doc(d)) => {
                d.id = DocId::from(swap(d.id.as_str()));
                d.kernel_cache_seq = None;
                d.meta = None;
            }
            Some(Node::Dir(_)) => retarget(t, ino, old, new),
            _ => {}
        }
    }
}
