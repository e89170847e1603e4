//! Namespace directories at the top level: discovery, `mkdir`, `rmdir`.

use std::sync::Arc;

use super::attr::Attr;
use super::core::{now_ms, FsCore};
use super::error::{FsError, FsResult};
use super::inodes::{InodeTable, Node, ROOT_INO};
use super::namespace::Namespace;
use crate::engine::layout::{check_namespace, manifest_dir};
use crate::engine::{delete_namespace, Engine};

impl FsCore {
    fn register_namespace(&self, t: &mut InodeTable, name: &str, engine: Option<Engine>) -> u64 {
        if let Some(ino) = t.lookup(ROOT_INO, name) {
            return ino;
        }
        let (store, opts, now) = (self.store.clone(), self.cfg.engine.clone(), now_ms());
        let hook = self.open_hook();
        t.insert_with(ROOT_INO, name, |ino| {
            Node::Namespace(Arc::new(Namespace::new(
                name, ino, store, opts, engine, now, hook,
            )))
        })
    }

    /// Makes sure every namespace in the store has an inode. A read-only
    /// mount also drops those no longer in the store (its writer removed
    /// them); a writer removes namespaces only itself.
    pub(crate) async fn refresh_namespaces(&self) -> FsResult<()> {
        let names = crate::engine::list_namespaces(&self.store).await?;
        let gone = {
            let mut t = self.table.lock();
            let mut gone = Vec::new();
            if self.cfg.read_only {
                let listed: std::collections::HashSet<&str> =
                    names.iter().map(String::as_str).collect();
                for (ino, name) in t.children(ROOT_INO) {
                    if ino == ROOT_INO || listed.contains(name.as_str()) {
                        continue;
                    }
                    if let Some(Node::Namespace(ns)) = t.get(ino).map(|i| &i.node) {
                        ns.mark_removed();
                        t.unlink(ROOT_INO, &name);
                        gone.push(name);
                    }
                }
            }
            for name in &names {
                self.register_namespace(&mut t, name, None);
            }
            gone
        };
        for name in gone {
            self.invalidate_entry(ROOT_INO, &name, false).await;
        }
        Ok(())
    }

    pub(crate) async fn lookup_namespace(&self, name: &str) -> FsResult<Attr> {
        let known = self.table.lock().lookup(ROOT_INO, name);
        let ino = match known {
            Some(ino) => ino,
            None => {
                if check_namespace(name).is_err() {
                    return Err(FsError::NotFound);
                }
                if self.store.list(&manifest_dir(name), None).await?.is_empty() {
                    return Err(FsError::NotFound);
                }
                self.register_namespace(&mut self.table.lock(), name, None)
            }
        };
        Ok(self.dir_attr(&self.table.lock(), ino))
    }

    pub async fn mkdir(&self, parent: u64, name: &str) -> FsResult<Attr> {
        self.check_name(name)?;
        if let Some(ns) = self.snapshots_of(parent) {
            return self.create_snapshot(&ns, parent, name).await;
        }
        if let Some(ns) = self.versions_of(parent) {
            return Err(ns.past_is_read_only());
        }
        if parent != ROOT_INO {
            return self.mkdir_below(parent, name).await;
        }
        self.check_writable()?;
        if self.table.lock().lookup(ROOT_INO, name).is_some() {
            return Err(FsError::Exists);
        }
        check_namespace(name).map_err(FsError::from)?;
        if !self.store.list(&manifest_dir(name), None).await?.is_empty() {
            return Err(FsError::Exists);
        }
        let engine = Engine::open(self.store.clone(), name, self.cfg.engine.clone()).await?;
        let mut t = self.table.lock();
        let ino = self.register_namespace(&mut t, name, Some(engine));
        t.touch_dir(ROOT_INO);
        t.touch_dir(ino);
        drop(t);
        self.remember(ino);
        Ok(self.dir_attr(&self.table.lock(), ino))
    }

    pub async fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_name(name)?;
        if let Some(ns) = self.snapshots_of(parent) {
            return self.delete_snapshot(&ns, parent, name).await;
        }
        if let Some(ns) = self.versions_of(parent) {
            return Err(ns.past_is_read_only());
        }
        if parent != ROOT_INO {
            return self.rmdir_below(parent, name).await;
        }
        self.check_writable()?;
        let ino = self
            .table
            .lock()
            .lookup(ROOT_INO, name)
            .ok_or(FsError::NotFound)?;
        let ns = self.namespace(ino)?;
        if !self.table.lock().memory_names(ns.ino).is_empty() {
            return Err(FsError::NotEmpty);
        }
        // Hold the namespace exclusively: no write can land in between.
        let _ = ns.engine().await?;
        let mut slot = ns.exclusive().await;
        if let Some(engine) = slot.as_ref() {
            if !engine.scan(None, 1).await?.is_empty() {
                return Err(FsError::NotEmpty);
            }
        }
        *slot = None;
        if let Err(e) = delete_namespace(&self.store, name).await {
            log::error!("namespace {name}: rmdir failed: {e}");
            return Err(e.into());
        }
        ns.mark_removed();
        let mut t = self.table.lock();
        t.unlink(ROOT_INO, name);
        t.touch_dir(ROOT_INO);
        Ok(())
    }
}
