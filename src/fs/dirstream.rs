//! A directory listing in progress: the entries fixed at `opendir` (dot
//! entries, control files, scratch files, uncommitted documents), then the
//! stored documents paged from the engine in id order.
//!
//! Offsets are positions in that sequence (1-based). The stream remembers
//! where each engine page starts and the id it was scanned after, so
//! sequential reads cost one scan per page, however large the namespace, and
//! each document present throughout the listing appears exactly once.
//! Seeking back rescans from the nearest page start.

use std::collections::HashSet;

use super::error::FsResult;
use super::inodes::DocMeta;
use super::names::doc_file_name;
use crate::engine::Engine;
use crate::types::DocId;

/// Documents per engine scan.
const PAGE: usize = 1000;
/// Entries handed back per call (the kernel takes what fits).
const WANT: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawEntry {
    Dot,
    DotDot,
    /// A name the inode table resolves (namespace, control, scratch, pending).
    Named(String),
    Doc {
        name: String,
        id: DocId,
        meta: DocMeta,
    },
}

#[derive(Clone)]
struct WindowEntry {
    name: String,
    id: DocId,
    meta: DocMeta,
}

pub(crate) struct DirStream {
    pub dir_ino: u64,
    fixed: Vec<RawEntry>,
    skip_names: HashSet<String>,
    has_docs: bool,
    /// (index of the page's first entry, id the page was scanned after).
    pages: Vec<(u64, Option<DocId>)>,
    window: Vec<WindowEntry>,
    window_page: Option<usize>,
    /// Scan cursor after the window; `None` once the scan ran dry.
    window_next: Option<DocId>,
    /// The caller's epoch when the window was loaded: a window from before
    /// a follower's refresh may hold stale sizes.
    pub window_epoch: u64,
}

impl DirStream {
    pub fn new(dir_ino: u64, fixed: Vec<RawEntry>, has_docs: bool) -> DirStream {
        let skip_names = fixed
            .iter()
            .filter_map(|e| match e {
                RawEntry::Named(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        DirStream {
            dir_ino,
            fixed,
            skip_names,
            has_docs,
            pages: Vec::new(),
            window: Vec::new(),
            window_page: None,
            window_next: None,
            window_epoch: 0,
        }
    }

    /// Entries after position `offset`, each with its own position. An empty
    /// result means the end. `skip` drops documents hidden by a rename.
    /// `epoch` is recorded as `window_epoch` of windows loaded now.
    pub async fn entries_after(
        &mut self,
        offset: u64,
        engine: Option<&Engine>,
        skip: impl Fn(&DocId) -> bool,
        epoch: u64,
    ) -> FsResult<Vec<(u64, RawEntry)>> {
        let fixed_len = self.fixed.len() as u64;
        let mut out = Vec::new();
        let mut next = offset + 1;
        while next <= fixed_len && out.len() < WANT {
            out.push((next, self.fixed[(next - 1) as usize].clone()));
            next += 1;
        }
        let Some(engine) = engine.filter(|_| self.has_docs) else {
            return Ok(out);
        };
        if out.len() >= WANT {
            return Ok(out);
        }
        if self.pages.is_empty() {
            self.pages.push((fixed_len + 1, None));
        }
        let mut k = self
            .pages
            .iter()
            .rposition(|(start, _)| *start <= next)
            .unwrap_or(0);
        loop {
            if self.window_page != Some(k) {
                self.load(k, engine, &skip).await?;
                self.window_epoch = epoch;
            }
            let start = self.pages[k].0;
            let idx = next.saturating_sub(start) as usize;
            for e in self.window.iter().skip(idx) {
                if out.len() >= WANT {
                    return Ok(out);
                }
                out.push((
                    next,
                    RawEntry::Doc {
                        name: e.name.clone(),
                        id: e.id.clone(),
                        meta: e.meta,
                    },
                ));
                next += 1;
            }
            let Some(cursor) = self.window_next.clone() else {
                return Ok(out);
            };
            let mark = (start + self.window.len() as u64, Some(cursor));
            if self.pages.get(k + 1) != Some(&mark) {
                self.pages.truncate(k + 1);
                self.pages.push(mark);
            }
            k += 1;
        }
    }

    async fn load(
        &mut self,
        k: usize,
        engine: &Engine,
        skip: &impl Fn(&DocId) -> bool,
    ) -> FsResult<()> {
        let cursor = self.pages[k].1.clone();
        let raw = super::namespace::scan(engine, cursor.as_ref(), PAGE).await?;
        self.window_next = raw.last().map(|d| d.id.clone());
        self.window = raw
            .into_iter()
            .filter(|d| !skip(&d.id))
            .map(|d| WindowEntry {
                name: doc_file_name(&d.id),
                meta: DocMeta {
                    size: d.json.len() as u64,
                    mtime: d.mtime(),
                    seq: d.seq,
                },
                id: d.id,
            })
            .filter(|e| !self.skip_names.contains(&e.name))
            .collect();
        self.window_page = Some(k);
        Ok(())
    }
}
