//! The inode table: every name the kernel may hold an inode number for.
//!
//! Inode numbers are a hash of (parent, name), probed past collisions, so a
//! plain `readdir` can report the number a later `lookup` will return without
//! allocating anything. Entries live while the kernel remembers them
//! (`nlookup`) or a handle is open, except scratch files and documents created
//! but not yet committed, which exist only here and live until removed.
//!
//! # Memory
//!
//! The kernel may hold an inode for every file touched in a session (a
//! million after `cp -r` of a million files), and each costs this table an
//! entry until the kernel forgets it, so an entry is kept small: inodes sit
//! densely in one slab (`Vec`, removal swaps the last slot in, so only live
//! entries' pages are resident), and the two indexes — by number and by
//! (parent, name) — are `hashbrown::HashTable`s of 4-byte slot numbers that
//! compare against the inodes' own fields, so a name is stored once, in its
//! inode. A `HashMap<u64, Inode>` would instead keep up to twice its entries
//! in empty buckets of a whole inode each, and a map keyed by (parent, name)
//! a second copy of every name. Names are `CompactString`s, inline up to 24
//! bytes. When most entries were forgotten, the slab and indexes shrink.
//!
//! How many inodes the kernel may keep is bounded (`kernel_bound`).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{mpsc, Arc};
use std::time::SystemTime;

use compact_str::CompactString;
use hashbrown::HashTable;

use super::invalidate::Invalidation;
use super::names::ControlKind;
use super::namespace::Namespace;
use crate::types::DocId;

mod kernel_bound;

pub use kernel_bound::DEFAULT_MAX_KERNEL_INODES;

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
    /// Inline up to 24 bytes (most names), so a name costs no heap block.
    pub name: CompactString,
    pub node: Node,
    pub nlookup: u64,
    pub open: u32,
    /// False once unlinked or replaced by a rename.
    pub linked: bool,
    /// In one of the kernel-held FIFOs (at most once).
    queued: bool,
    /// That FIFO is `read_fifo`: the last handle on it was a reader's.
    read: bool,
    /// The kernel was asked to drop its entry and has not forgotten it yet.
    evicting: bool,
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

/// One inode and its number, as stored in the table's slab.
struct Slot {
    ino: u64,
    inode: Inode,
}

pub(crate) struct InodeTable {
    /// Every inode, densely packed: removal moves the last slot into the
    /// hole, so the slab holds no dead slots and only the pages of live
    /// inodes are resident.
    slots: Vec<Slot>,
    /// Slot index by inode number.
    by_ino: HashTable<u32>,
    /// Slot index of every linked inode, by its (parent, name): the key is
    /// the inode's own fields, so names are stored once.
    by_name: HashTable<u32>,
    /// Linked memory-only names per directory, for readdir (the root's are
    /// the namespaces).
    memory_names: HashMap<u64, BTreeSet<String>>,
    /// (namespace ino, doc id) -> the scratch inode hiding that document.
    hidden: HashMap<(u64, DocId), u64>,
    pub scratch_bytes: u64,
    sweep_at: usize,
    /// Inodes with `nlookup > 0`, of any kind.
    kernel_held: usize,
    /// Of those, the ones the kernel was asked to drop.
    evicting: usize,
    /// The bound on `kernel_held - evicting`.
    max_kernel: usize,
    /// Kernel-held document inodes not read since the kernel learned of
    /// them, oldest first (eviction candidates after `read_fifo`).
    kernel_fifo: VecDeque<u64>,
    /// Kernel-held document inodes whose last handle, a reader's, closed,
    /// in the order they closed (evicted first, newest first: see
    /// `kernel_bound`).
    read_fifo: VecDeque<u64>,
    /// The notifier thread; `None` without a kernel (tests of the core).
    sink: Option<mpsc::Sender<Invalidation>>,
    /// When an entry was last created in or removed from a directory (not
    /// kept across mounts: directories are not stored).
    dir_mtimes: HashMap<u64, SystemTime>,
    /// Bumped by every change of a name or of the memory-only names and
    /// hidden documents a listing shows (not by inodes made for stored
    /// documents, nor by their eviction): see `dircache`.
    names_version: u64,
    /// Entries the kernel bound asked the kernel to drop, ever.
    evictions_asked: u64,
    /// Named inodes whose number is not their name's hash (`ino_of_hash`):
    /// the name's number was taken when it was made (probing), or the
    /// inode was renamed to it.
    displaced: usize,
}

/// Hash of (parent, name): the probe start of its inode number, and its
/// key in `by_name`.
fn name_hash(parent: u64, name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

fn hash_ino(parent: u64, name: &str) -> u64 {
    ino_of_hash(name_hash(parent, name))
}

/// The inode number a name of hash `h` gets unless that number is taken.
fn ino_of_hash(h: u64) -> u64 {
    (h >> 1).max(ROOT_INO + 1)
}

/// Inode numbers are mostly hashes already, but probing makes runs of
/// consecutive numbers: mix them so the table's buckets stay spread.
fn ino_hash(ino: u64) -> u64 {
    let x = ino.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

impl InodeTable {
    pub fn new() -> InodeTable {
        let mut t = InodeTable {
            slots: Vec::new(),
            by_ino: HashTable::new(),
            by_name: HashTable::new(),
            memory_names: HashMap::new(),
            hidden: HashMap::new(),
            scratch_bytes: 0,
            sweep_at: 1 << 16,
            kernel_held: 0,
            evicting: 0,
            max_kernel: DEFAULT_MAX_KERNEL_INODES,
            kernel_fifo: VecDeque::new(),
            read_fifo: VecDeque::new(),
            sink: None,
            dir_mtimes: HashMap::new(),
            names_version: 0,
            evictions_asked: 0,
            displaced: 0,
        };
        t.push(
            ROOT_INO,
            Inode {
                parent: ROOT_INO,
                name: "".into(),
                node: Node::Root,
                nlookup: 1,
                open: 0,
                // The root has no name in a directory: never in `by_name`.
                linked: true,
                queued: false,
                read: false,
                evicting: false,
            },
        );
        t
    }

    fn slot_of(&self, ino: u64) -> Option<usize> {
        let slots = &self.slots;
        self.by_ino
            .find(ino_hash(ino), |&i| slots[i as usize].ino == ino)
            .map(|&i| i as usize)
    }

    fn slot_named(&self, parent: u64, name: &str) -> Option<usize> {
        let slots = &self.slots;
        self.by_name
            .find(name_hash(parent, name), |&i| {
                let inode = &slots[i as usize].inode;
                inode.parent == parent && &*inode.name == name
            })
            .map(|&i| i as usize)
    }

    /// Adds a slot for `ino` (not yet named in `by_name`).
    fn push(&mut self, ino: u64, inode: Inode) -> usize {
        let idx = self.slots.len();
        self.slots.push(Slot { ino, inode });
        let slots = &self.slots;
        self.by_ino
            .insert_unique(ino_hash(ino), idx as u32, |&i| ino_hash(slots[i as usize].ino));
        idx
    }

    /// Names slot `idx` in `by_name` under its current (parent, name).
    fn index_name(&mut self, idx: usize) {
        let inode = &self.slots[idx].inode;
        let h = name_hash(inode.parent, &inode.name);
        if self.slots[idx].ino != ino_of_hash(h) {
            self.displaced += 1;
        }
        let slots = &self.slots;
        self.by_name.insert_unique(h, idx as u32, |&i| {
            let inode = &slots[i as usize].inode;
            name_hash(inode.parent, &inode.name)
        });
    }

    /// Drops slot `idx` from `by_name` (call before its name changes).
    fn unindex_name(&mut self, idx: usize) {
        let inode = &self.slots[idx].inode;
        let h = name_hash(inode.parent, &inode.name);
        if let Ok(entry) = self.by_name.find_entry(h, |&i| i as usize == idx) {
            entry.remove();
            if self.slots[idx].ino != ino_of_hash(h) {
                self.displaced -= 1;
            }
        }
    }

    /// Removes slot `idx` entirely, moving the last slot into its place.
    fn remove_slot(&mut self, idx: usize) -> Inode {
        let ino = self.slots[idx].ino;
        self.unindex_name(idx);
        if let Ok(entry) = self.by_ino.find_entry(ino_hash(ino), |&i| i as usize == idx) {
            entry.remove();
        }
        let last = self.slots.len() - 1;
        if idx != last {
            let moved = &self.slots[last];
            if let Some(i) = self
                .by_ino
                .find_mut(ino_hash(moved.ino), |&i| i as usize == last)
            {
                *i = idx as u32;
            }
            let h = name_hash(moved.inode.parent, &moved.inode.name);
            if let Some(i) = self.by_name.find_mut(h, |&i| i as usize == last) {
                *i = idx as u32;
            }
        }
        self.slots.swap_remove(idx).inode
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.slot_of(ino).map(|i| &self.slots[i].inode)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        self.slot_of(ino).map(|i| &mut self.slots[i].inode)
    }

    pub fn lookup(&self, parent: u64, name: &str) -> Option<u64> {
        self.slot_named(parent, name).map(|i| self.slots[i].ino)
    }

    /// The number `name` has or would get: for plain readdir entries.
    /// While every linked inode has its name's own number, that is the
    /// name's hash, with no look into the table (a cache miss per name
    /// of a listing otherwise).
    pub fn ino_for(&self, parent: u64, name: &str) -> u64 {
        if self.displaced == 0 {
            return hash_ino(parent, name);
        }
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
        while self.slot_of(ino).is_some() {
            ino = ino.wrapping_add(1).max(ROOT_INO + 1);
        }
        let node = node(ino);
        if let Node::Scratch(s) = &node {
            self.scratch_bytes += s.data.len() as u64;
        }
        let idx = self.push(
            ino,
            Inode {
                parent,
                name: name.into(),
                node,
                nlookup: 0,
                open: 0,
                linked: true,
                queued: false,
                read: false,
                evicting: false,
            },
        );
        self.index_name(idx);
        self.reindex(ino);
        if self.slots.len() > self.sweep_at {
            self.sweep();
        }
        ino
    }

    /// Removes the name (parent, name); returns the inode it named.
    pub fn unlink(&mut self, parent: u64, name: &str) -> Option<u64> {
        let idx = self.slot_named(parent, name)?;
        self.unindex_name(idx);
        self.names_version += 1;
        let ino = self.slots[idx].ino;
        if let Some(set) = self.memory_names.get_mut(&parent) {
            set.remove(name);
        }
        let inode = &mut self.slots[idx].inode;
        inode.linked = false;
        if let Node::Scratch(s) = &inode.node {
            if let Some(id) = &s.hides {
                let key = (parent, id.clone());
                if self.hidden.get(&key) == Some(&ino) {
                    self.hidden.remove(&key);
                }
            }
        }
        self.maybe_evict(ino);
        Some(ino)
    }

    /// Moves inode `ino` to (parent, name), replacing what was there.
    pub fn rename(&mut self, ino: u64, parent: u64, name: &str) {
        let Some(idx) = self.slot_of(ino) else {
            return;
        };
        self.names_version += 1;
        let inode = &self.slots[idx].inode;
        if inode.linked {
            let (old_parent, old_name) = (inode.parent, inode.name.clone());
            self.unindex_name(idx);
            if let Some(set) = self.memory_names.get_mut(&old_parent) {
                set.remove(&*old_name);
            }
        }
        // Unlinking the target may evict it, which moves slots.
        self.unlink(parent, name);
        let Some(idx) = self.slot_of(ino) else {
            return;
        };
        let inode = &mut self.slots[idx].inode;
        inode.parent = parent;
        inode.name = name.into();
        inode.linked = true;
        self.index_name(idx);
        self.reindex(ino);
    }

    /// Keeps the memory-only index in step after `ino` changed kind.
    pub fn reindex(&mut self, ino: u64) {
        let Some(idx) = self.slot_of(ino) else {
            return;
        };
        let inode = &self.slots[idx].inode;
        let (parent, keep) = (inode.parent, inode.linked && inode.memory_only());
        if keep {
            let name = inode.name.to_string();
            if self.memory_names.entry(parent).or_default().insert(name) {
                self.names_version += 1;
            }
        } else if let Some(set) = self.memory_names.get_mut(&parent) {
            if set.remove(&*inode.name) {
                self.names_version += 1;
            }
            if set.is_empty() {
                self.memory_names.remove(&parent);
            }
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
        if let Some(idx) = self.slot_of(ino) {
            let inode = &mut self.slots[idx].inode;
            let before = inode.nlookup;
            inode.nlookup = before.saturating_sub(n);
            if before > 0 && inode.nlookup == 0 {
                self.kernel_held -= 1;
                if std::mem::replace(&mut inode.evicting, false) {
                    self.evicting -= 1;
                }
            }
        }
        self.maybe_evict(ino);
        if self.slots.len() < self.sweep_at / 8 {
            self.shrink();
        }
    }

    pub fn maybe_evict(&mut self, ino: u64) {
        let Some(idx) = self.slot_of(ino) else {
            return;
        };
        let inode = &mut self.slots[idx].inode;
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
        let inode = self.remove_slot(idx);
        if let Node::Scratch(s) = inode.node {
            self.scratch_bytes = self.scratch_bytes.saturating_sub(s.data.len() as u64);
        }
    }

    /// Drops entries nobody references (readdirplus entries never
    /// delivered), and gives back the memory of a table that shrank.
    fn sweep(&mut self) {
        let dead: Vec<u64> = self
            .slots
            .iter()
            .filter(|s| s.inode.evictable())
            .map(|s| s.ino)
            .collect();
        for ino in dead {
            self.maybe_evict(ino);
        }
        self.sweep_at = (self.slots.len() * 2).max(1 << 16);
        self.shrink();
    }

    /// After most inodes went (the kernel forgot them), the slab and the
    /// indexes give their memory back.
    fn shrink(&mut self) {
        let len = self.slots.len();
        if self.slots.capacity() > 4 * len + 1024 {
            self.slots.shrink_to(2 * len);
            let slots = &self.slots;
            self.by_ino
                .shrink_to(2 * len, |&i| ino_hash(slots[i as usize].ino));
            self.by_name.shrink_to(2 * len, |&i| {
                let inode = &slots[i as usize].inode;
                name_hash(inode.parent, &inode.name)
            });
        }
    }

    /// Inodes under `parent` (for invalidation after repair).
    pub fn children(&self, parent: u64) -> Vec<(u64, String)> {
        self.slots
            .iter()
            .filter(|s| s.inode.parent == parent && s.inode.linked && s.ino != ROOT_INO)
            .map(|s| (s.ino, s.inode.name.to_string()))
            .collect()
    }

    /// Linked scratch files anywhere below directory `dir`: (count, bytes).
    /// One pass over the table that allocates nothing (`.stats` reads it;
    /// `descendants` would copy every name below a namespace first).
    pub fn scratch_below(&self, dir: u64) -> (u64, u64) {
        let mut out = (0, 0);
        for s in &self.slots {
            if let Node::Scratch(sc) = &s.inode.node {
                if s.inode.linked && self.linked_below(s.inode.parent, dir) {
                    out = (out.0 + 1, out.1 + sc.data.len() as u64);
                }
            }
        }
        out
    }

    /// Whether directory `ino` is `dir` or linked below it.
    fn linked_below(&self, mut ino: u64, dir: u64) -> bool {
        // Each step goes one level up; the bound guards against a cycle.
        for _ in 0..=self.slots.len() {
            if ino == dir {
                return true;
            }
            match self.get(ino) {
                Some(i) if i.linked && ino != ROOT_INO => ino = i.parent,
                _ => return false,
            }
        }
        false
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
        !self.hidden.is_empty() && self.hidden.contains_key(&(ns, id.clone()))
    }

    /// See `names_version`: a listing made now shows the same names as one
    /// made at the same version (and the same stored documents).
    pub fn names_version(&self) -> u64 {
        self.names_version
    }

    /// Scratch inode `carrier` now hides document `id` of namespace `ns`.
    pub fn hide(&mut self, ns: u64, id: DocId, carrier: u64) {
        if let Some(Node::Scratch(s)) = self.get_mut(carrier).map(|i| &mut i.node) {
            s.hides = Some(id.clone());
        }
        self.hidden.insert((ns, id), carrier);
        self.names_version += 1;
    }

    /// Document `id` was rewritten or deleted: nothing hides it any more.
    pub fn unhide(&mut self, ns: u64, id: &DocId) {
        if let Some(carrier) = self.hidden.remove(&(ns, id.clone())) {
            self.names_version += 1;
            if let Some(Node::Scratch(s)) = self.get_mut(carrier).map(|i| &mut i.node) {
                if s.hides.as_ref() == Some(id) {
                    s.hides = None;
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Bytes this table holds for its inodes: the live part of the slab,
    /// the index buckets, and the heap blocks of names that do not fit
    /// inline, of ids and prefixes (as the allocator rounds them) and of
    /// scratch data. What `.stats` reports as `inode_table_bytes`.
    pub fn memory_bytes(&self) -> usize {
        fn block(len: usize) -> usize {
            match len {
                0 => 0,
                // glibc: 8 bytes of header, 16-byte granules, 32 at least.
                n => (n + 8).next_multiple_of(16).max(32),
            }
        }
        let index_bucket = std::mem::size_of::<u32>() + 1;
        let buckets = |t: &HashTable<u32>| (t.capacity() * 8 / 7).next_power_of_two();
        let heap: usize = self
            .slots
            .iter()
            .map(|s| {
                let name = if s.inode.name.is_heap_allocated() {
                    block(s.inode.name.len())
                } else {
                    0
                };
                name + match &s.inode.node {
                    Node::Doc(d) if d.id.is_heap_allocated() => block(d.id.as_str().len()),
                    Node::Dir(d) => block(d.prefix.len()),
                    Node::Scratch(sc) => block(sc.data.capacity()),
                    _ => 0,
                }
            })
            .sum();
        self.slots.len() * std::mem::size_of::<Slot>()
            + (buckets(&self.by_ino) + buckets(&self.by_name)) * index_bucket
            + (self.kernel_fifo.len() + self.read_fifo.len()) * std::mem::size_of::<u64>()
            + heap
    }

    /// Inodes held, and how many of them the kernel holds (`nlookup > 0`).
    pub fn counts(&self) -> (usize, usize) {
        let kernel = self.slots.iter().filter(|s| s.inode.nlookup > 0).count();
        (self.slots.len(), kernel)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str) -> Node {
        Node::Doc(DocNode {
            id: DocId::new(name.trim_end_matches(".json")),
            meta: None,
            pending: false,
            kernel_cache_seq: None,
            dirty_size: None,
            mtime_set: None,
        })
    }

    #[test]
    fn a_listed_name_gets_the_number_lookup_gives_it_after_renames_and_probes() {
        let mut t = InodeTable::new();
        let a = t.insert(ROOT_INO, "a.json", doc("a.json"));
        assert_eq!(t.ino_for(ROOT_INO, "a.json"), a);
        assert_eq!(t.ino_for(ROOT_INO, "new.json"), hash_ino(ROOT_INO, "new.json"));
        // Renamed, the inode keeps its number under a name whose hash differs.
        t.rename(a, ROOT_INO, "b.json");
        assert_eq!(t.ino_for(ROOT_INO, "b.json"), a);
        // A new `a.json` finds its hash taken and probes to the next number.
        let a2 = t.insert(ROOT_INO, "a.json", doc("a.json"));
        assert_ne!(a2, hash_ino(ROOT_INO, "a.json"));
        assert_eq!(t.ino_for(ROOT_INO, "a.json"), a2);
        for name in ["a.json", "b.json"] {
            assert_eq!(
                Some(t.ino_for(ROOT_INO, name)),
                t.lookup(ROOT_INO, name),
                "{name}"
            );
        }
        // Both gone: every number is a hash again, and no lookup is needed.
        t.unlink(ROOT_INO, "a.json");
        t.unlink(ROOT_INO, "b.json");
        assert_eq!(t.displaced, 0);
        let c = t.insert(ROOT_INO, "c.json", doc("c.json"));
        assert_eq!(t.ino_for(ROOT_INO, "c.json"), c);
        // Renamed back to the name whose hash it carries, it is not displaced.
        t.rename(c, ROOT_INO, "d.json");
        assert_eq!(t.displaced, 1);
        t.rename(c, ROOT_INO, "c.json");
        assert_eq!(t.displaced, 0);
        assert_eq!(t.ino_for(ROOT_INO, "c.json"), c);
    }
}
