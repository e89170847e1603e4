//! A directory listing in progress: the entries fixed at `opendir` (dot
//! entries, scratch files, uncommitted documents, directories made by
//! `mkdir`), then the stored documents and the directories they make, paged
//! from the engine in id order.
//!
//! A directory is a range scan over its id prefix: ids with no further `/`
//! are its files; the first id with one names a subdirectory, and the scan
//! then jumps past every id below that subdirectory, so listing a directory
//! costs one scan per page of entries plus one per subdirectory, never a
//! scan of the documents below its subdirectories.
//!
//! Offsets are positions in that sequence (1-based). The stream remembers
//! where each engine page starts and the id it was scanned after, so
//! sequential reads cost one scan per page, however large the namespace, and
//! each document present throughout the listing appears exactly once.
//! Seeking back rescans from the nearest page start.
//!
//! Entries are handed to a visitor by reference (`RawRef`), which says when
//! the reply is full: a listing makes no copy of a name it does not send,
//! and takes from the window only what the kernel's buffer holds.

use std::collections::HashSet;

use compact_str::CompactString;

use super::error::FsResult;
use super::inodes::DocMeta;
use super::names::{dir_name, leaf_file_name};
use super::namespace::get_stored;
use crate::engine::Engine;
use crate::types::DocId;

/// Documents per engine scan.
const PAGE: usize = 1000;
/// Documents in the first engine scan of a page, and after each jump past
/// a subdirectory.
const FIRST_SCAN: usize = 32;
/// An entry fixed at `opendir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawEntry {
    Dot,
    DotDot,
    /// A name the inode table resolves (namespace, control, scratch, pending).
    Named(String),
}

/// An entry of the stream, borrowed from it for the visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawRef<'a> {
    Dot,
    DotDot,
    Named(&'a str),
    /// A stored document.
    Doc {
        name: &'a str,
        id: &'a DocId,
        meta: DocMeta,
    },
    /// A directory that stored documents make; ids below it start with
    /// `prefix`.
    Dir {
        name: &'a str,
        prefix: &'a str,
    },
}

impl RawEntry {
    fn as_ref(&self) -> RawRef<'_> {
        match self {
            RawEntry::Dot => RawRef::Dot,
            RawEntry::DotDot => RawRef::DotDot,
            RawEntry::Named(n) => RawRef::Named(n),
        }
    }
}

struct WindowEntry {
    name: CompactString,
    kind: WindowKind,
}

enum WindowKind {
    Doc { id: DocId, meta: DocMeta },
    Dir { prefix: String },
}

pub(crate) struct DirStream {
    pub dir_ino: u64,
    /// Ids in this directory start with it (empty at a namespace's top).
    prefix: String,
    /// A scan cursor past every id below a subdirectory: the subdirectory's
    /// prefix followed by more of the highest character than an id holds.
    past: String,
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
    pub fn new(
        dir_ino: u64,
        fixed: Vec<RawEntry>,
        has_docs: bool,
        prefix: String,
        max_id_bytes: usize,
    ) -> DirStream {
        let skip_names = fixed
            .iter()
            .filter_map(|e| match e {
                RawEntry::Named(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        DirStream {
            dir_ino,
            prefix,
            past: char::MAX
                .to_string()
                .repeat(max_id_bytes / char::MAX.len_utf8() + 1),
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

    /// Hands `visit` the entries after position `offset` in order, each
    /// with its own position, until it returns `false` (the reply is full)
    /// or the stream ends; returns how many it was handed, so 0 means the
    /// end. `skip` drops documents hidden by a rename. `epoch` is recorded
    /// as `window_epoch` of windows loaded now.
    pub async fn visit_after(
        &mut self,
        offset: u64,
        engine: Option<&Engine>,
        skip: impl Fn(&DocId) -> bool,
        epoch: u64,
        mut visit: impl FnMut(u64, RawRef<'_>) -> bool,
    ) -> FsResult<usize> {
        let fixed_len = self.fixed.len() as u64;
        let mut handed = 0;
        let mut next = offset + 1;
        while next <= fixed_len {
            handed += 1;
            if !visit(next, self.fixed[(next - 1) as usize].as_ref()) {
                return Ok(handed);
            }
            next += 1;
        }
        let Some(engine) = engine.filter(|_| self.has_docs) else {
            return Ok(handed);
        };
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
                let raw = match &e.kind {
                    WindowKind::Doc { id, meta } => RawRef::Doc {
                        name: &e.name,
                        id,
                        meta: *meta,
                    },
                    WindowKind::Dir { prefix } => RawRef::Dir {
                        name: &e.name,
                        prefix,
                    },
                };
                handed += 1;
                if !visit(next, raw) {
                    return Ok(handed);
                }
                next += 1;
            }
            let Some(cursor) = self.window_next.clone() else {
                return Ok(handed);
            };
            let mark = (start + self.window.len() as u64, Some(cursor));
            if self.pages.get(k + 1) != Some(&mark) {
                self.pages.truncate(k + 1);
                self.pages.push(mark);
            }
            k += 1;
        }
    }

    /// Loads page `k`: up to about `PAGE` entries from its cursor on.
    async fn load(
        &mut self,
        k: usize,
        engine: &Engine,
        skip: &impl Fn(&DocId) -> bool,
    ) -> FsResult<()> {
        let prefix = self.prefix.clone();
        let mut cursor = self.pages[k].1.clone();
        let mut window = Vec::with_capacity(self.window.len().max(FIRST_SCAN));
        if cursor.is_none() && !prefix.is_empty() {
            // The one id equal to the prefix (a file named `%.json` here)
            // sorts before the scan's exclusive start.
            let exact = DocId::from(prefix.as_str());
            if let Some(d) = get_stored(engine, &exact).await? {
                if !skip(&d.id) {
                    window.push(doc_entry(d));
                }
            }
            cursor = Some(exact);
        }
        let mut scanned = 0;
        // Small scans first, doubling while the scan yields this directory's
        // own files: after a jump past a subdirectory the rest of a big scan
        // would be the next subdirectory's documents, read for nothing.
        let mut limit = FIRST_SCAN;
        let next = 'pages: loop {
            let raw = super::namespace::scan(engine, cursor.as_ref(), limit).await?;
            if raw.is_empty() {
                break None;
            }
            limit = (limit * 2).min(PAGE);
            for d in raw {
                scanned += 1;
                // (A namespace's top has no prefix: no compare per id.)
                let rest = if prefix.is_empty() {
                    d.id.as_str()
                } else if let Some(rest) = d.id.as_str().strip_prefix(prefix.as_str()) {
                    rest
                } else {
                    break 'pages None;
                };
                match rest.find('/') {
                    Some(slash) => {
                        let comp = &rest[..slash];
                        let sub = format!("{prefix}{comp}/");
                        window.push(WindowEntry {
                            name: dir_name(comp),
                            kind: WindowKind::Dir {
                                prefix: sub.clone(),
                            },
                        });
                        cursor = Some(DocId::from(format!("{sub}{}", self.past)));
                        limit = FIRST_SCAN;
                        break;
                    }
                    None => {
                        cursor = Some(d.id.clone());
                        if !skip(&d.id) {
                            window.push(doc_entry(d));
                        }
                    }
                }
            }
            if window.len() >= PAGE || scanned >= 4 * PAGE {
                break cursor;
            }
        };
        self.window_next = next;
        if !self.skip_names.is_empty() {
            window.retain(|e| !self.skip_names.contains(e.name.as_str()));
        }
        self.window = window;
        self.window_page = Some(k);
        Ok(())
    }
}

fn doc_entry(d: crate::engine::StoredDoc) -> WindowEntry {
    WindowEntry {
        name: leaf_file_name(&d.id),
        kind: WindowKind::Doc {
            meta: DocMeta {
                size: d.json.len() as u64,
                mtime: d.mtime(),
                seq: d.seq,
            },
            id: d.id,
        },
    }
}
