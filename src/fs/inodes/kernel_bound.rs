//! The kernel-held bound of the inode table.
//!
//! The kernel forgets an inode only when it drops the dentry, and on a
//! machine with memory to spare it never does: after writing a million
//! files it holds a million inodes, and so does this table. So the table
//! bounds them itself: once more than `max_kernel` inodes are kernel-held,
//! it asks the kernel (`inval_entry`, through the notifier thread) to drop
//! the entries of the oldest-remembered documents that are committed and
//! not open, a batch at a time, down to `max_kernel - max_kernel /
//! EVICT_BATCH_DIVISOR`. FUSE inodes die with their last dentry, so the
//! kernel then sends `forget` and the entries leave the table; the next
//! access to such a name is an ordinary `lookup`. Only committed documents
//! are asked for: they are found again by name from the store, while a
//! scratch file, a pending document or an explicit directory exists only
//! here. The order is a FIFO of inode numbers (8 bytes per kernel-held
//! inode); an inode is queued at most once (`queued`), and an entry whose
//! inode was forgotten meanwhile is skipped when it comes up.

use std::sync::mpsc;

use super::{InodeTable, Node};
use crate::fs::invalidate::Invalidation;

/// Inodes the kernel may hold before the table asks it to drop the oldest
/// documents' entries (see the module doc). At about 200 bytes per
/// inode this is some 20 MB of daemon memory, a fraction of the 250 MB the
/// whole daemon may use (issue 8), while a working set of a hundred
/// thousand files still stays in the kernel's caches; beyond it, a file
/// touched again costs one `lookup`. `-o max_inodes=N` changes it.
pub const DEFAULT_MAX_KERNEL_INODES: usize = 100_000;

/// Evictions come in batches of `max_kernel / EVICT_BATCH_DIVISOR`
/// entries, so the notifier thread is woken once per batch rather than
/// once per new file, and a table just over its bound does not evict one
/// entry per `lookup`.
const EVICT_BATCH_DIVISOR: usize = 16;

impl InodeTable {
    /// The kernel learned of `ino` once more (lookup, create, readdirplus
    /// entry, mkdir); past the kernel-held bound, the oldest documents'
    /// entries are dropped.
    pub fn remember(&mut self, ino: u64) {
        let Some(idx) = self.slot_of(ino) else {
            return;
        };
        let inode = &mut self.slots[idx].inode;
        inode.nlookup += 1;
        if inode.nlookup == 1 {
            self.kernel_held += 1;
        }
        // Looked up again while the kernel was asked to drop it: the kernel
        // may have dropped the old inode and made a new one, whose forget
        // is not coming soon, so it counts as held (and droppable) again.
        // Else `evicting` would count it until its next forget, and the
        // bound would let the kernel hold that many more.
        if std::mem::replace(&mut inode.evicting, false) {
            self.evicting -= 1;
        }
        if matches!(inode.node, Node::Doc(_)) && !inode.queued {
            inode.queued = true;
            self.kernel_fifo.push_back(ino);
        }
        self.compact_kernel_fifo();
        self.enforce_kernel_bound();
    }

    /// Sets the kernel-held bound (`0`: unbounded) and where the requests
    /// to drop entries go.
    pub fn set_kernel_bound(&mut self, max: usize, sink: Option<mpsc::Sender<Invalidation>>) {
        self.max_kernel = if max == 0 { usize::MAX } else { max };
        self.sink = sink;
    }

    /// Entries the kernel was asked to drop, ever (see `dircache`).
    pub fn evictions_asked(&self) -> u64 {
        self.evictions_asked
    }

    /// Kernel-held inodes the kernel was asked to drop and has not
    /// forgotten yet (`.stats`: `evicting_inodes`).
    pub fn evicting(&self) -> usize {
        self.evicting
    }

    /// Asks the kernel to drop the oldest committed, closed documents while
    /// more than `max_kernel` inodes are kernel-held and not being dropped.
    fn enforce_kernel_bound(&mut self) {
        if self.kernel_held.saturating_sub(self.evicting) <= self.max_kernel {
            return;
        }
        let Some(sink) = self.sink.clone() else {
            return;
        };
        let target = self.max_kernel - self.max_kernel / EVICT_BATCH_DIVISOR;
        // Open or uncommitted documents go back to the end; looking at
        // each entry at most once per call keeps a call bounded even when
        // none can be dropped.
        let mut kept = Vec::new();
        for _ in 0..self.kernel_fifo.len() {
            if self.kernel_held - self.evicting <= target {
                break;
            }
            let Some(ino) = self.kernel_fifo.pop_front() else {
                break;
            };
            let Some(idx) = self.slot_of(ino) else {
                continue;
            };
            let inode = &mut self.slots[idx].inode;
            if !inode.queued {
                continue;
            }
            inode.queued = false;
            if inode.nlookup == 0 || inode.evicting {
                continue;
            }
            let droppable = inode.linked
                && inode.open == 0
                && matches!(&inode.node, Node::Doc(d) if !d.pending && d.dirty_size.is_none());
            if !droppable {
                inode.queued = matches!(inode.node, Node::Doc(_));
                if inode.queued {
                    kept.push(ino);
                }
                continue;
            }
            let msg = Invalidation::Entry {
                parent: inode.parent,
                name: inode.name.to_string(),
                done: None,
            };
            if sink.send(msg).is_err() {
                // The mount is gone: nothing holds these inodes any more.
                inode.queued = true;
                kept.push(ino);
                break;
            }
            inode.evicting = true;
            self.evicting += 1;
            self.evictions_asked += 1;
        }
        self.kernel_fifo.extend(kept);
        self.compact_kernel_fifo();
    }

    /// Drops FIFO entries of inodes forgotten since they were queued, once
    /// they are most of it, so the FIFO stays proportional to the inodes
    /// the kernel holds.
    fn compact_kernel_fifo(&mut self) {
        if self.kernel_fifo.len() <= 2 * self.kernel_held + 1024 {
            return;
        }
        let mut fifo = std::mem::take(&mut self.kernel_fifo);
        // An inode number queued twice (a name deleted and made again) is
        // kept once: the first occurrence clears `queued`, the second then
        // fails the test; `queued` is set again on every kept entry after.
        fifo.retain(|&ino| match self.slot_of(ino) {
            Some(idx) => {
                let inode = &mut self.slots[idx].inode;
                std::mem::replace(&mut inode.queued, false) && inode.nlookup > 0
            }
            None => false,
        });
        for &ino in &fifo {
            if let Some(inode) = self.get_mut(ino) {
                inode.queued = true;
            }
        }
        fifo.shrink_to(2 * fifo.len());
        self.kernel_fifo = fifo;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DocNode, ROOT_INO};
    use super::*;
    use crate::types::DocId;

    fn doc(t: &mut InodeTable, k: usize) -> u64 {
        let ino = t.insert(
            ROOT_INO,
            &format!("d{k:05}.json"),
            Node::Doc(DocNode {
                id: DocId::new(format!("d{k:05}")),
                meta: None,
                pending: false,
                kernel_cache_seq: None,
                dirty_size: None,
                mtime_set: None,
            }),
        );
        t.remember(ino);
        ino
    }

    fn asked(rx: &mpsc::Receiver<Invalidation>) -> Vec<(u64, String)> {
        rx.try_iter()
            .map(|m| match m {
                Invalidation::Entry { parent, name, .. } => (parent, name),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn past_the_bound_the_oldest_closed_documents_are_dropped_and_forget_frees_them() {
        const BOUND: usize = 32;
        let (tx, rx) = mpsc::channel();
        let mut t = InodeTable::new();
        t.set_kernel_bound(BOUND, Some(tx));
        let first = doc(&mut t, 0);
        t.get_mut(first).unwrap().open = 1;
        let mut inos = vec![first];
        for k in 1..100 {
            inos.push(doc(&mut t, k));
            assert!(t.kernel_held - t.evicting() <= BOUND, "after {k}");
        }
        let asked = asked(&rx);
        let names: Vec<&str> = asked.iter().map(|(_, n)| n.as_str()).collect();
        // Oldest first, the open one never.
        assert_eq!(names.first(), Some(&"d00001.json"));
        assert!(!names.contains(&"d00000.json"));
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        assert_eq!(asked.len(), t.evicting());
        // The kernel forgets what it was asked to drop: the table lets go.
        for (parent, name) in &asked {
            let ino = t.lookup(*parent, name).unwrap();
            t.forget(ino, 1);
        }
        assert_eq!(t.evicting(), 0);
        assert!(t.len() <= BOUND + 1, "{} inodes", t.len());
        assert!(t.get(first).is_some(), "the open document stays");
    }

    #[test]
    fn an_inode_looked_up_again_while_being_dropped_counts_as_held() {
        let (tx, rx) = mpsc::channel();
        let mut t = InodeTable::new();
        t.set_kernel_bound(4, Some(tx));
        let first = doc(&mut t, 0);
        for k in 1..5 {
            doc(&mut t, k);
        }
        assert_eq!(asked(&rx).len(), 1);
        assert_eq!(t.evicting(), 1);
        // The kernel dropped the old inode and looked the name up again
        // before its forget reached us.
        t.remember(first);
        assert!(!t.get(first).unwrap().evicting);
        // It is held again (and queued last), so the next oldest goes.
        let next: Vec<String> = asked(&rx).into_iter().map(|(_, n)| n).collect();
        assert_eq!(next, ["d00001.json"]);
        assert_eq!(t.evicting(), 1);
        t.forget(first, 1);
        assert_eq!(t.get(first).map(|i| i.nlookup), Some(1));
    }

    #[test]
    fn without_a_kernel_nothing_is_asked_and_the_fifo_stays_small() {
        let (tx, rx) = mpsc::channel();
        let mut t = InodeTable::new();
        t.set_kernel_bound(1000, Some(tx));
        // Files made and forgotten one at a time (the kernel under memory
        // pressure): the bound is never reached, the FIFO is compacted.
        for k in 0..10_000 {
            let ino = doc(&mut t, k);
            t.forget(ino, 1);
        }
        assert!(asked(&rx).is_empty());
        assert!(t.kernel_fifo.len() <= 1024 + 2, "{}", t.kernel_fifo.len());
        // No sink (tests of the core alone): over the bound, nothing sent.
        t.set_kernel_bound(2, None);
        for k in 0..10 {
            doc(&mut t, k);
        }
        assert_eq!(t.evicting(), 0);
    }
}
