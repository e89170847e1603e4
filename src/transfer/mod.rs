//! Bulk transfer: `reef import` and `reef export`, documents in and out of a
//! namespace at engine speed instead of one file at a time through a mount.
//!
//! Two outside formats, both also what the mount shows and accepts:
//!
//! - **A directory tree** of `.json` files, with exactly the mount's name
//!   mapping (`fs::names`): `2026/12/a1.json` is document `2026/12/a1`, the
//!   file's bytes are stored as they are (`Op::PutJson`) and its mtime is the
//!   document's. Export writes the same tree back, bytes as stored, mtimes
//!   set, so `diff -r` and `rsync -a --dry-run` see no difference.
//! - **JSON Lines**: one JSON object per line, each with a string `"id"`.
//!   A line is stored byte for byte (minus its line ending) and gets the time
//!   of the import as its mtime, since JSON Lines carries no file times.
//!   Export writes each document's stored bytes on one line: a document
//!   stored without an `"id"` key gets one inserted first, and the line
//!   breaks of a multi-line file become spaces (JSON forbids raw line breaks
//!   inside strings, so this changes only whitespace).
//!
//! **Import takes the namespace over**, as `reef flush` does: it opens a
//! writer, whose fence makes a live mount's next write fail with a clear
//! `Fenced` error (its daemon logs it) instead of interleaving with the
//! import. Refusing while a mount writes was the alternative, but reef has
//! no lease a CLI could check: a mount that is idle, or one on another
//! machine, looks exactly like no mount, so any check would be a race. The
//! fence is the namespace's one reliable exclusion, and it fails loudly on
//! the side that lost. Unmount (or remount afterwards) to import into a
//! namespace a mount serves.
//!
//! **Export only reads**: it opens the namespace read-only at one point (the
//! newest committed sequence when it starts, `--at SEQ`, or a checkpoint) via
//! `Engine::open_at`, which never refreshes, so the output is that one state
//! however a live mount writes meanwhile; retention keeps the objects of that
//! state readable (a writer with `retain=0` may garbage-collect them under a
//! long export, which then fails naming the sequence rather than mixing
//! states).
//!
//! Memory stays bounded on both sides: the tree is walked and the lines read
//! as streams, documents go to the engine in batches bounded by op count and
//! bytes (the engine's memtable flushes itself into segments as it fills),
//! and export pages through the scan.

mod export;
mod import;
mod jsonl;

use std::path::PathBuf;

use serde::Serialize;

pub use export::{export, ExportFormat, ExportReport};
pub use import::{import_jsonl, import_tree, ImportOptions, ImportReport, Refusal};

use crate::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "export target {0} exists and is not an empty directory; export into a new or empty one"
    )]
    TargetNotEmpty(PathBuf),
    /// A write failed part-way: what the report counts is durable, the rest
    /// is not. Re-running the same import finishes it; documents already
    /// stored with the same bytes and mtime are skipped.
    #[error("import stopped after {} documents were stored: {source}; re-run the same import to finish it (what is stored already is skipped)", done.imported)]
    Interrupted {
        done: Box<ImportReport>,
        #[source]
        source: EngineError,
    },
}

pub type TransferResult<T> = Result<T, TransferError>;

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TransferError {
    let path = path.into();
    move |source| TransferError::Io { path, source }
}

/// Progress so far, for a progress bar.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Progress {
    /// Files or lines read (import) or documents written (export).
    pub items: u64,
    /// Bytes of document JSON so far.
    pub bytes: u64,
}
