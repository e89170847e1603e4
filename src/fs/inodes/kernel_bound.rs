//! The kernel-held bound of the inode table.
//!
//! The kernel forgets an inode only when it drops the dentry, and on a
//! machine with memory to spare it never does: after writing a million
//! files it holds a million inodes, and so does this table. So the table
//! bounds them itself: once more than `max_kernel` inodes are kernel-held,
//! it asks the kernel (`inval_entry`, through the notifier thread) to drop
//! the entries of documents that are committed and not open, a batch at a
//! time, down to `max_kernel - max_kernel / EVICT_BATCH_DIVISOR`. FUSE
//! inodes die with their last dentry, so the kernel then sends `forget`
//! and the entries leave the table; the next access to such a name is an
//! ordinary `lookup`. Only committed documents are asked for: they are
//! found again by name from the store, while a scratch file, a pending
//! document or an explicit directory exists only here.
//!
//! Which documents go first: those a reader has closed since the kernel
//! learned of them, the most recently closed first (`read_fifo`, used as
//! a stack), then the rest (`kernel_fifo`, oldest-remembered first). A
//! FIFO or LRU alone fails the commonest pass over a namespace larger
//! than the bound — `cat`, `grep -r` or `rsync` in name order after
//! writing or listing it, or a second such pass: the oldest entries are
//! exactly the next ones the pass reads, so each lookup pushes out a file
//! the pass is about to read and every file misses (a `lookup` and a
//! `forget` more per file). Evicting what was read last keeps the part of
//! the namespace the pass has not reached, so a pass misses only on the
//! excess. A file read again and again is evicted at most once per batch
//! of new entries, one `lookup` per `max_kernel / EVICT_BATCH_DIVISOR`
//! others. A writer's close does not count as a read: what was just
//! written is what is likely read next.
//!
//! Each queue holds inode numbers (8 bytes per kernel-held inode); an
//! inode is in at most one of them (`queued`, and `read` says which), and
//! an entry whose inode was forgotten or moved meanwhile is skipped when
//! it comes up.

use std::collections::VecDeque;
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
            inode.read = false;
            self.kernel_fifo.push_back(ino);
        }
        self.compact_kernel_fifo();
        self.enforce_kernel_bound();
    }

    /// The last handle on `ino` closed and it was a reader's: the
    /// document moves to the queue evicted first.
    pub fn read_closed(&mut self, ino: u64) {
        let Some(idx) = self.slot_of(ino) else {
            return;
        };
        let inode = &mut self.slots[idx].inode;
        if !inode.queued || inode.read || inode.nlookup == 0 {
            return;
        }
        inode.read = true;
        self.read_fifo.push_back(ino);
        self.compact_kernel_fifo();
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

    /// Asks the kernel to drop committed, closed documents, read ones
    /// first, while more than `max_kernel` inodes are kernel-held and not
    /// being dropped.
    fn enforce_kernel_bound(&mut self) {
        if self.kernel_held.saturating_sub(self.evicting) <= self.max_kernel {
            return;
        }
        let Some(sink) = self.sink.clone() else {
            return;
        };
        let target = self.max_kernel - self.max_kernel / EVICT_BATCH_DIVISOR;
        if self.evict_from(true, target, &sink) {
            self.evict_from(false, target, &sink);
        }
        self.compact_kernel_fifo();
    }

    /// Asks the kernel to drop documents from one queue (`read_fifo`,
    /// newest first, if `read`; else `kernel_fifo`, oldest first) until
    /// `target` are held; false once the
    /// mount is gone. Open or uncommitted documents go to the back of
    /// `kernel_fifo`; looking at each entry at most once per call keeps a
    /// call bounded even when none can be dropped.
    fn evict_from(&mut self, read: bool, target: usize, sink: &mpsc::Sender<Invalidation>) -> bool {
        let mut kept = Vec::new();
        let mut live = true;
        let len = self.queue_mut(read).len();
        for _ in 0..len {
            if self.kernel_held - self.evicting <= target {
                break;
            }
            let next = if read {
                self.read_fifo.pop_back()
            } else {
                self.kernel_fifo.pop_front()
            };
            let Some(ino) = next else {
                break;
            };
            let Some(idx) = self.slot_of(ino) else {
                continue;
            };
            let inode = &mut self.slots[idx].inode;
            // Forgotten, or moved to the other queue since.
            if !inode.queued || inode.read != read {
                continue;
            }
            inode.queued = false;
            inode.read = false;
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
                live = false;
                break;
            }
            inode.evicting = true;
            self.evicting += 1;
            self.evictions_asked += 1;
        }
        self.kernel_fifo.extend(kept);
        live
    }

    /// Drops queue entries of inodes forgotten or moved since they were
    /// queued, once they are most of the queues, so the queues stay
    /// proportional to the inodes the kernel holds.
    fn compact_kernel_fifo(&mut self) {
        if self.kernel_fifo.len() + self.read_fifo.len() <= 2 * self.kernel_held + 1024 {
            return;
        }
        for read in [false, true] {
            let mut fifo = std::mem::take(self.queue_mut(read));
            // An inode number queued twice (a name deleted and made again)
            // is kept once: the first occurrence clears `queued`, the
            // second then fails the test; `queued` is set again on every
            // kept entry after.
            fifo.retain(|&ino| match self.slot_of(ino) {
                Some(idx) => {
                    let inode = &mut self.slots[idx].inode;
                    inode.read == read
                        && std::mem::replace(&mut inode.queued, false)
                        && inode.nlookup > 0
                }
                None => false,
            });
            for &ino in &fifo {
                if let Some(inode) = self.get_mut(ino) {
                    inode.queued = true;
                }
            }
            fifo.shrink_to(2 * fifo.len());
            *self.queue_mut(read) = fifo;
        }
    }

    /// `read_fifo` if `read`, else `kernel_fifo`.
    fn queue_mut(&mut self, read: bool) -> &mut VecDeque<u64> {
        if read {
            &mut self.read_fifo
        } else {
            &mut self.kernel_fifo
        }
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

    /// The kernel drops what it was asked to and forgets the inodes.
    fn kernel_forgets(t: &mut InodeTable, rx: &mpsc::Receiver<Invalidation>) {
        for (parent, name) in asked(rx) {
            let ino = t.lookup(parent, &name).unwrap();
            t.forget(ino, 1);
        }
    }

    #[test]
    fn a_read_pass_over_more_files_than_the_bound_misses_only_the_excess() {
        const BOUND: usize = 64;
        const FILES: usize = 80;
        let (tx, rx) = mpsc::channel();
        let mut t = InodeTable::new();
        t.set_kernel_bound(BOUND, Some(tx));
        // Written in name order (a writer's close is no read)...
        for k in 0..FILES {
            doc(&mut t, k);
            kernel_forgets(&mut t, &rx);
        }
        // ...then `cat` in name order, twice: a file the kernel no longer
        // holds is looked up again; each is opened, read and closed.
        for pass in 0..2 {
            let mut misses = 0;
            for k in 0..FILES {
                let name = format!("d{k:05}.json");
                let ino = match t.lookup(ROOT_INO, &name) {
                    Some(ino) => ino,
                    None => {
                        misses += 1;
                        doc(&mut t, k)
                    }
                };
                t.read_closed(ino);
                kernel_forgets(&mut t, &rx);
                assert!(t.kernel_held - t.evicting() <= BOUND);
            }
            // What does not fit, and a batch more: the files the pass read
            // are dropped, not the ones it reads next (a FIFO misses all).
            let excess = FILES - (BOUND - BOUND / EVICT_BATCH_DIVISOR);
            assert!(
                misses <= excess + BOUND / EVICT_BATCH_DIVISOR,
                "pass {pass}: {misses} misses"
            );
        }
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
