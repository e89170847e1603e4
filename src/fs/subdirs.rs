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
use super::inodes::{DirNode, InodeTable, Node, ROOT_INO};
use super::io::PAGES_MIXED;
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
        if name.ends_with(super::names::DOC_SUFFIX) && !dir.scratch {
            return Err(FsError::NotPermitted(
                "a directory name cannot end in \".json\" (that is a document's name)",
            ));
        }
        // A name no id component has makes a scratch directory.
        let comp = decode_dir(name).filter(|_| !dir.scratch);
        let scratch = comp.is_none();
        let prefix = match comp {
            Some(comp) => format!("{}{comp}/", dir.prefix),
            None => String::new(),
        };
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
                scratch,
            }),
        );
        t.touch_dir(parent);
        t.touch_dir(ino);
        t.remember(ino);
        Ok(self.dir_attr(&t, ino))
    }

    /// `rmdir` below a namespace's top: `ENOTEMPTY` while a document lies
    /// below it or it holds a file of this daemon.
    pub(crate) async fn rmdir_below(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let dir = self.dir_of(parent)?;
        let attr = self.find(parent, name).await?;
        let (prefix, ino, scratch) = {
            let t = self.table.lock();
            match t.get(attr.ino).map(|i| &i.node) {
                Some(Node::Dir(d)) => (d.prefix.clone(), attr.ino, d.scratch),
                _ => return Err(FsError::NotDir),
            }
        };
        dir.ns.check_not_fenced()?;
        if !self.table.lock().memory_names(ino).is_empty()
            || (!scratch && self.dir_has_docs(&dir.ns, &prefix).await?)
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
        let (ino, old_prefix, scratch) = {
            let t = self.table.lock();
            match t.get(attr.ino).map(|i| &i.node) {
                Some(Node::Dir(d)) => (attr.ino, d.prefix.clone(), d.scratch),
                _ => return Err(FsError::NotDir),
            }
        };
        let comp = decode_dir(new_name).filter(|_| !dst.scratch);
        if scratch || comp.is_none() {
            return self
                .rename_scratch_dir(ino, scratch, new_parent, new_name, noreplace)
                .await;
        }
        let comp = comp.unwrap_or_default();
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

    /// Renames a directory where the source or the target is a scratch
    /// directory: in memory only, so possible only when both are (a stored
    /// directory's documents cannot become scratch files, nor the reverse,
    /// in one step: `EXDEV`, and `mv` copies).
    async fn rename_scratch_dir(
        &self,
        ino: u64,
        scratch: bool,
        new_parent: u64,
        new_name: &str,
        noreplace: bool,
    ) -> FsResult<()> {
        let target_scratch = decode_dir(new_name).is_none() || self.dir_of(new_parent)?.scratch;
        if !(scratch && target_scratch) {
            return Err(FsError::CrossDevice);
        }
        if let Ok(target) = self.find(new_parent, new_name).await {
            if noreplace {
                return Err(FsError::Exists);
            }
            let t = self.table.lock();
            match t.get(target.ino).map(|i| &i.node) {
                Some(Node::Dir(_)) if t.memory_names(target.ino).is_empty() => {}
                Some(Node::Dir(_)) => return Err(FsError::NotEmpty),
                _ => return Err(FsError::NotDir),
            }
        }
        let mut t = self.table.lock();
        let mut at = new_parent;
        while at != ROOT_INO {
            if at == ino {
                return Err(FsError::Invalid("cannot move a directory into itself".into()));
            }
            at = t.get(at).map_or(ROOT_INO, |i| i.parent);
        }
        t.rename(ino, new_parent, new_name);
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
                d.kernel_cache_seq = PAGES_MIXED;
                d.meta = None;
            }
            Some(Node::Dir(_)) => retarget(t, ino, old, new),
            _ => {}
        }
    }
}
