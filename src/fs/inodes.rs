//! The inode table: every name the kernel may hold an inode number for.
//!
//! Inode numbers are a hash of (parent, name), probed past collisions, so a
//! plain `readdir` can report the number a later `lookup` will return without
//! allocating anything. Entries live while the kernel remembers them
//! (`nlookup`) or a handle is open, except scratch files and documents created
//! but not yet committed, which exist only here and live until removed.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::SystemTime;

use super::names::ControlKind;
use super::namespace::Namespace;
use crate::types::DocId;

pub const ROOT_INO: u64 = 1;

/// What the store holds for a document, as last seen or written here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DocMeta {
    pub size: u64,
    pub mtime: SystemTime,
    pub seq: u64,
}

pub(crate) struct DocNode {
    pub id: DocId,
    /// Known stored state; `None` when unknown (fetch it) or not stored.
    pub meta: Option<DocMeta>,
    /// Created here and not yet committed: not in the store.
    pub pending: bool,
    /// The kernel's page cache holds exactly stored sequence `seq`.
    pub kernel_cache_seq: Option<u64>,
    /// Size of the newest uncommitted write buffer, reported by getattr.
    pub dirty_size: Option<u64>,
    /// A time set (`futimens`, `cp -p`, `touch -d`) while content is
    /// uncommitted: the next commit stores it as the document's mtime.
    pub mtime_set: Option<SystemTime>,
}

pub(crate) struct ScratchNode {
    pub data: Vec<u8>,
    pub mtime: SystemTime,
    /// Set apart from `mtime` (`touch -a`, `utimensat`); reads do not move it.
    pub atime: SystemTime,
    /// Permission bits; `None` is the mount's file mode. Tools chmod their
    /// temporaries (rsync makes them 0600 while writing); nothing persists.
    pub mode: Option<u16>,
    /// A document renamed onto this scratch name: it stays stored (but
    /// hidden) until this scratch file is deleted or the name is rewritten.
    pub hides: Option<DocId>,
}

/// A directory below a namespace's top: the documents whose ids start with
/// `prefix`.
pub(crate) struct DirNode {
    pub ns: Arc<Namespace>,
    /// The ids below it start with this; ends with `/`.
    pub prefix: String,
    /// Made by `mkdir` and not removed: exists (in memory) even while no
    /// document lies below it. Otherwise it exists because documents do.
    pub explicit: bool,
    /// A *scratch directory*: its name is not one an id component has (a
    /// leading `.`, like the `.tmpXXXX` directories tools make), so it and
    /// everything below it is held in memory only, like a scratch file.
    pub scratch: bool,
}

pub(crate) enum Node {
    Root,
    Namespace(Arc<Namespace>),
    /// A namespace's `.snapshots` directory: its entries are checkpoints,
    /// each a `Namespace` view (see `snapshots`).
    Snapshots(Arc<Namespace>),
    /// A namespace's `.versions` directory: its entries are retained
    /// points, each a `Namespace` view (see `versions`).
    Versions(Arc<Namespace>),
    Dir(DirNode),
    Doc(DocNode),
    Scratch(ScratchNode),
    Control(ControlKind),
}

pub(crate) struct Inode {
    pub parent: u64,
    pub name: String,
    pub node: Node,
    pub nlookup: u64,
    pub open: u32,
    /// False once unlinked or replaced by a rename.
    pub linked: bool,
}

impl Inode {
    /// Listed from the table (not the engine) and never evicted while
    /// linked: scratch files, uncommitted documents, namespaces.
    fn memory_only(&self) -> bool {
        match &self.node {
            Node::Scratch(_) => true,
            // A view of the past is found again by name, like a document.
            Node::Namespace(ns) => !ns.is_view(),
            Node::Doc(d) => d.pending,
            Node::Dir(d) => d.explicit,
            _ => false,
        }
    }

    fn evictable(&self) -> bool {
        self.nlookup == 0
            && self.open == 0
            && (!self.linked
                || matches!(self.node, Node::Doc(ref d) if !d.pending)
                || matches!(self.node, Node::Dir(ref d) if !d.explicit)
                // Dropping a view closes its engine and releases its pin
                // on the past (`engine::pins`).
                || matches!(self.node, Node::Namespace(ref ns) if ns.is_view()))
    }
}

#[derive(Default)]
pub(crate) struct InodeTable {
    by_ino: HashMap<u64, Inode>,
    by_name: HashMap<(u64, String), u64>,
    /// Linked memory-only names per directory, for readdir (the root's are
    /// the namespaces).
    memory_names: HashMap<u64, BTreeSet<String>>,
    /// (namespace ino, doc id) -> the scratch inode hiding that document.
    hidden: HashMap<(u64, DocId), u64>,
    pub scratch_bytes: u64,
    sweep_at: usize,
    /// When an entry was last created in or removed from a directory (not
    /// kept across mounts: directories are not stored).
    dir_mtimes: HashMap<u64, SystemTime>,
}

fn hash_ino(parent: u64, name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    name.hash(&mut h);
    (h.finish() >> 1).max(ROOT_INO + 1)
}

impl InodeTable {
    pub fn new() -> InodeTable {
        let mut t = InodeTable {
            sweep_at: 1 << 16,
            ..InodeTable::default()
        };
        t.by_ino.insert(
            ROOT_INO,
            Inode {
                parent: ROOT_INO,
                name: String::new(),
                node: Node::Root,
                nlookup: 1,
                open: 0,
                linked: true,
            },
        );
        t
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.by_ino.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        self.by_ino.get_mut(&ino)
    }

    pub fn lookup(&self, parent: u64, name: &str) -> Option<u64> {
        self.by_name.get(&(parent, name.to_string())).copied()
    }

    /// The number `name` has or would get: for plain readdir entries.
    pub fn ino_for(&self, parent: u64, name: &str) -> u64 {
        self.lookup(parent, name)
            .unwrap_or_else(|| hash_ino(parent, name))
    }

    /// Links a new inode at (parent, name), replacing what was there.
    pub fn insert(&mut self, parent: u64, name: &str, node: Node) -> u64 {
        self.insert_with(parent, name, |_| node)
    }

    /// `insert`, for nodes that need their own inode number.
    pub fn insert_with(&mut self, parent: u64, name: &str, node: impl FnOnce(u64) -> Node) -> u64 {
        self.unlink(parent, name);
        let mut ino = hash_ino(parent, name);
        while self.by_ino.contains_key(&ino) {
            ino = ino.wrapping_add(1).max(ROOT_INO + 1);
        }
        let node = node(ino);
        if let Node::Scratch(s) = &node {
            self.scratch_bytes += s.data.len() as u64;
        }
        self.by_ino.insert(
            ino,
            Inode {
                parent,
                name: name.to_string(),
                node,
                nlookup: 0,
                open: 0,
                linked: true,
            },
        );
        self.by_name.insert((parent, name.to_string()), ino);
        self.reindex(ino);
        if self.by_ino.len() > self.sweep_at {
            self.sweep();
        }
        ino
    }

    /// Removes the name (parent, name); returns the inode it named.
    pub fn unlink(&mut self, parent: u64, name: &str) -> Option<u64> {
        let ino = self.by_name.remove(&(parent, name.to_string()))?;
        if let Some(set) = self.memory_names.get_mut(&parent) {
            set.remove(name);
        }
        if let Some(inode) = self.by_ino.get_mut(&ino) {
            inode.linked = false;
            if let Node::Scratch(s) = &inode.node {
                if let Some(id) = &s.hides {
                    let key = (parent, id.clone());
                    if self.hidden.get(&key) == Some(&ino) {
                        self.hidden.remove(&key);
                    }
                }
            }
        }
        self.maybe_evict(ino);
        Some(ino)
    }

    /// Moves inode `ino` to (parent, name), replacing what was there.
    pub fn rename(&mut self, ino: u64, parent: u64, name: &str) {
        let Some(inode) = self.by_ino.get(&ino) else {
            return;
        };
        let (old_parent, old_name) = (inode.parent, inode.name.clone());
        if self.by_name.get(&(old_parent, old_name.clone())) == Some(&ino) {
            self.by_name.remove(&(old_parent, old_name.clone()));
            if let Some(set) = self.memory_names.get_mut(&old_parent) {
                set.remove(&old_name);
            }
        }
        if self.lookup(parent, name) != Some(ino) {
            self.unlink(parent, name);
        }
        if let Some(inode) = self.by_ino.get_mut(&ino) {
            inode.parent = parent;
            inode.name = name.to_string();
            inode.linked = true;
        }
        self.by_name.insert((parent, name.to_string()), ino);
        self.reindex(ino);
    }

    /// Keeps the memory-only index in step after `ino` changed kind.
    pub fn reindex(&mut self, ino: u64) {
        let Some(inode) = self.by_ino.get(&ino) else {
            return;
        };
        let set = self.memory_names.entry(inode.parent).or_default();
        if inode.linked && inode.memory_only() {
            set.insert(inode.name.clone());
        } else {
            set.remove(&inode.name);
        }
    }

    pub fn memory_names(&self, parent: u64) -> Vec<String> {
        self.memory_names
            .get(&parent)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Some(inode) = self.by_ino.get_mut(&ino) {
            inode.nlookup = inode.nlookup.saturating_sub(n);
        }
        self.maybe_evict(ino);
    }

    pub fn maybe_evict(&mut self, ino: u64) {
        let Some(inode) = self.by_ino.get_mut(&ino) else {
            return;
        };
        // An unlinked scratch file nobody has open can never be read again.
        if !inode.linked && inode.open == 0 {
            if let Node::Scratch(s) = &mut inode.node {
                let freed = std::mem::take(&mut s.data).len() as u64;
                self.scratch_bytes = self.scratch_bytes.saturating_sub(freed);
            }
        }
        if !inode.evictable() {
            return;
        }
        if let Some(inode) = self.by_ino.remove(&ino) {
            if inode.linked && self.by_name.get(&(inode.parent, inode.name.clone())) == Some(&ino) {
                self.by_name.remove(&(inode.parent, inode.name));
            }
            if let Node::Scratch(s) = inode.node {
                self.scratch_bytes = self.scratch_bytes.saturating_sub(s.data.len() as u64);
            }
        }
    }

    /// Drops entries nobody references (readdirplus entries never delivered).
    fn sweep(&mut self) {
        let dead: Vec<u64> = self
            .by_ino
            .iter()
            .filter(|(_, i)| i.evictable())
            .map(|(ino, _)| *ino)
            .collect();
        for ino in dead {
            self.maybe_evict(ino);
        }
        self.sweep_at = (self.by_ino.len() * 2).max(1 << 16);
    }

    /// Inodes under `parent` (for invalidation after repair).
    pub fn children(&self, parent: u64) -> Vec<(u64, String)> {
        self.by_ino
            .iter()
            .filter(|(_, i)| i.parent == parent && i.linked)
            .map(|(ino, i)| (*ino, i.name.clone()))
            .collect()
    }

    /// Linked inodes anywhere below directory `dir`, with their parent:
    /// `(ino, parent, name)`.
    pub fn descendants(&self, dir: u64) -> Vec<(u64, u64, String)> {
        let mut out = Vec::new();
        let mut dirs = vec![dir];
        while let Some(d) = dirs.pop() {
            for (ino, name) in self.children(d) {
                if matches!(
                    self.get(ino).map(|i| &i.node),
                    Some(Node::Dir(_) | Node::Namespace(_))
                ) {
                    dirs.push(ino);
                }
                out.push((ino, d, name));
            }
        }
        out
    }

    pub fn hidden_by(&self, ns: u64, id: &DocId) -> Option<u64> {
        self.hidden.get(&(ns, id.clone())).copied()
    }

    pub fn is_hidden(&self, ns: u64, id: &DocId) -> bool {
        self.hidden.contains_key(&(ns, id.clone()))
    }

    /// Scratch inode `carrier` now hides document `id` of namespace `ns`.
    pub fn hide(&mut self, ns: u64, id: DocId, carrier: u64) {
        if let Some(Node::Scratch(s)) = self.by_ino.get_mut(&carrier).map(|i| &mut i.node) {
            s.hides = Some(id.clone());
        }
        self.hidden.insert((ns, id), carrier);
    }

    /// Document `id` was rewritten or deleted: nothing hides it any more.
    pub fn unhide(&mut self, ns: u64, id: &DocId) {
        if let Some(carrier) = self.hidden.remove(&(ns, id.clone())) {
            if let Some(Node::Scratch(s)) = self.by_ino.get_mut(&carrier).map(|i| &mut i.node) {
                if s.hides.as_ref() == Some(id) {
                    s.hides = None;
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    /// An entry of directory `dir` was created or removed now.
    pub fn touch_dir(&mut self, dir: u64) {
        self.dir_mtimes.insert(dir, SystemTime::now());
    }

    /// `utimensat` on directory `dir`.
    pub fn set_dir_mtime(&mut self, dir: u64, mtime: SystemTime) {
        self.dir_mtimes.insert(dir, mtime);
    }

    pub fn dir_mtime(&self, dir: u64) -> Option<SystemTime> {
        self.dir_mtimes.get(&dir).copied()
    }
}
