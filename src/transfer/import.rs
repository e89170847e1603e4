//! Import: a directory tree or JSON Lines into a namespace, in batches.
//!
//! Every candidate document is checked on its own first (name, JSON, limits)
//! so one bad file or line is refused and reported without failing the
//! batch around it; the batch then goes to the engine as one atomic write,
//! so a document is either stored whole or not at all. Should the engine
//! still refuse a batch as invalid (a rule only it checks, such as a vector
//! whose dimensions differ from the namespace's), its documents are retried
//! one by one and only the offenders are refused.
//!
//! **Idempotence.** Before a document is queued it is looked up: when the
//! stored bytes and, for a tree, the mtime already match, it is skipped. An
//! import stopped part-way (a failed put, a kill) has stored whole batches
//! only, so running it again skips those and stores the rest; upserts of
//! the same bytes would be harmless anyway, skipping just avoids rewriting
//! (and re-stamping) them.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;

use super::jsonl::{line_id, read_line_bounded, Line};
use super::{io_err, Progress, TransferError, TransferResult};
use crate::engine::{Engine, EngineError};
use crate::fs::names::{self, NameKind};
use crate::types::{DocId, Op, WriteBatch};

/// How an import batches its writes.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Most documents in one engine write (one WAL object).
    pub batch_ops: usize,
    /// Most JSON bytes in one engine write.
    pub batch_bytes: usize,
    /// Refusals listed in the report at most (all are counted), so a file
    /// of a million bad lines does not make a report of that size.
    pub max_listed_refusals: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch_ops: 2_000,
            batch_bytes: 16 << 20,
            max_listed_refusals: 10_000,
        }
    }
}

/// A file or line that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The file's path relative to the tree, or `line N` (1-based).
    pub source: String,
    pub reason: String,
}

/// What an import did (printed as JSON by `reef import`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub namespace: String,
    /// Documents written.
    pub imported: u64,
    /// Documents already stored with the same bytes (and mtime): not rewritten.
    pub skipped: u64,
    /// Files or lines refused; the first `max_listed_refusals` are in `refusals`.
    pub refused: u64,
    pub refusals: Vec<Refusal>,
    /// JSON bytes written.
    pub bytes: u64,
    /// Engine writes (WAL objects) made.
    pub batches: u64,
    /// The WAL sequence of the last write, if any: `reef export --at` it.
    pub last_seq: Option<u64>,
    pub elapsed_ms: u64,
}

/// One document ready to write, and where it came from.
struct Candidate {
    source: String,
    id: DocId,
    json: Bytes,
    mtime: Option<SystemTime>,
}

/// Collects candidates into batches and writes them.
struct Importer<'a> {
    engine: &'a Engine,
    opts: ImportOptions,
    report: ImportReport,
    batch: Vec<Candidate>,
    batch_bytes: usize,
    progress: Progress,
    on_progress: &'a (dyn Fn(Progress) + Sync),
    started: std::time::Instant,
}

impl<'a> Importer<'a> {
    fn new(
        engine: &'a Engine,
        opts: ImportOptions,
        on_progress: &'a (dyn Fn(Progress) + Sync),
    ) -> Self {
        Importer {
            engine,
            opts,
            report: ImportReport {
                namespace: engine.namespace().to_string(),
                ..ImportReport::default()
            },
            batch: Vec::new(),
            batch_bytes: 0,
            progress: Progress::default(),
            on_progress,
            started: std::time::Instant::now(),
        }
    }

    fn refuse(&mut self, source: String, reason: String) {
        self.report.refused += 1;
        if self.report.refusals.len() < self.opts.max_listed_refusals {
            self.report.refusals.push(Refusal { source, reason });
        }
    }

    fn tick(&mut self, bytes: usize) {
        self.progress.items += 1;
        self.progress.bytes += bytes as u64;
        (self.on_progress)(self.progress);
    }

    /// Checks a candidate, skips it when already stored, queues it.
    async fn offer(&mut self, c: Candidate) -> TransferResult<()> {
        self.tick(c.json.len());
        if let Err(e) = self.engine.limits().check_json(&c.id, &c.json) {
            self.refuse(c.source, e.to_string());
            return Ok(());
        }
        let stored = self
            .engine
            .get_stored(&c.id)
            .await
            .map_err(|e| self.interrupted(e))?;
        if let Some(s) = stored {
            let same_time = c.mtime.is_none_or(|t| s.mtime() == t);
            if s.json == c.json && same_time {
                self.report.skipped += 1;
                return Ok(());
            }
        }
        if self.batch.len() + 1 > self.opts.batch_ops
            || self.batch_bytes + c.json.len() > self.opts.batch_bytes
        {
            self.write_batch().await?;
        }
        self.batch_bytes += c.json.len();
        self.batch.push(c);
        Ok(())
    }

    fn interrupted(&self, source: EngineError) -> TransferError {
        let mut done = self.report.clone();
        done.elapsed_ms = self.started.elapsed().as_millis() as u64;
        TransferError::Interrupted {
            done: Box::new(done),
            source,
        }
    }

    async fn write_batch(&mut self) -> TransferResult<()> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if batch.is_empty() {
            return Ok(());
        }
        match self.engine.write(to_batch(&batch)).await {
            Ok(ack) => {
                self.stored(&batch, ack.seq);
                Ok(())
            }
            Err(EngineError::Invalid(_)) if batch.len() > 1 => {
                // Find the offenders: one write each.
                for c in batch {
                    match self.engine.write(to_batch(std::slice::from_ref(&c))).await {
                        Ok(ack) => self.stored(std::slice::from_ref(&c), ack.seq),
                        Err(EngineError::Invalid(e)) => self.refuse(c.source, e.to_string()),
                        Err(e) => return Err(self.interrupted(e)),
                    }
                }
                Ok(())
            }
            Err(EngineError::Invalid(e)) => {
                for c in batch {
                    self.refuse(c.source, e.to_string());
                }
                Ok(())
            }
            Err(e) => Err(self.interrupted(e)),
        }
    }

    fn stored(&mut self, batch: &[Candidate], seq: u64) {
        self.report.imported += batch.len() as u64;
        self.report.bytes += batch.iter().map(|c| c.json.len() as u64).sum::<u64>();
        self.report.batches += 1;
        self.report.last_seq = Some(seq);
    }

    async fn finish(mut self) -> TransferResult<ImportReport> {
        self.write_batch().await?;
        self.report.elapsed_ms = self.started.elapsed().as_millis() as u64;
        Ok(self.report)
    }
}

fn to_batch(batch: &[Candidate]) -> WriteBatch {
    WriteBatch {
        ops: batch
            .iter()
            .map(|c| Op::PutJson {
                id: c.id.clone(),
                json: c.json.clone(),
                mtime: c.mtime,
            })
            .collect(),
    }
}

/// Imports the `.json` files under `root` into `engine`'s namespace, with
/// the mount's name mapping (see the module docs of `transfer`).
pub async fn import_tree(
    engine: &Engine,
    root: &Path,
    opts: ImportOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> TransferResult<ImportReport> {
    let max_id = engine.limits().max_id_bytes;
    let max_doc = engine.limits().max_doc_bytes;
    let mut imp = Importer::new(engine, opts, on_progress);
    // Sorted, so ids arrive in a stable order and a re-run retraces the
    // first run's batches.
    let mut walk = walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().map_or_else(|| root.to_path_buf(), Path::to_path_buf);
                imp.refuse(relative(root, &path), format!("cannot read: {e}"));
                continue;
            }
        };
        let rel = relative(root, entry.path());
        let kind = entry.file_type();
        if kind.is_dir() {
            let name = entry.file_name().to_string_lossy();
            if names::decode_dir(&name).is_none() {
                imp.refuse(
                    rel + "/",
                    "directory name is not an id component as the mount names it (hidden, or with a non-canonical % code); skipped with its contents".into(),
                );
                walk.skip_current_dir();
            }
            continue;
        }
        if !kind.is_file() {
            imp.refuse(
                rel,
                "not a regular file (symbolic links are not followed)".into(),
            );
            continue;
        }
        let Some(id) = doc_id_of(root, entry.path(), max_id) else {
            imp.refuse(
                rel,
                format!("not a document name: documents are NAME.json, at most {max_id} bytes of id, as the mount shows them"),
            );
            continue;
        };
        let meta = entry.metadata().map_err(|e| TransferError::Io {
            path: entry.path().to_path_buf(),
            source: e.into(),
        });
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                imp.refuse(rel, e.to_string());
                continue;
            }
        };
        if meta.len() > max_doc as u64 {
            imp.tick(0);
            imp.refuse(
                rel,
                format!("document {id} is {} bytes; the limit is {max_doc}", meta.len()),
            );
            continue;
        }
        let json = match std::fs::read(entry.path()) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                imp.refuse(rel, format!("cannot read: {e}"));
                continue;
            }
        };
        let mtime = match meta.modified() {
            Ok(t) => t,
            Err(e) => {
                imp.refuse(rel, format!("cannot read its mtime: {e}"));
                continue;
            }
        };
        imp.offer(Candidate {
            source: rel,
            id,
            json,
            mtime: Some(mtime),
        })
        .await?;
    }
    imp.finish().await
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The id of the file at `path` below `root`: its directories decoded as
/// the mount names them, its name classified as in a mounted directory.
fn doc_id_of(root: &Path, path: &Path, max_id: usize) -> Option<DocId> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts: Vec<String> = Vec::new();
    for comp in rel.components() {
        parts.push(comp.as_os_str().to_str()?.to_string());
    }
    let file = parts.pop()?;
    let mut prefix = String::new();
    for dir in &parts {
        prefix.push_str(&names::decode_dir(dir)?);
        prefix.push('/');
    }
    match names::classify_in(&file, &prefix, parts.is_empty(), max_id) {
        NameKind::Doc(id) => Some(id),
        _ => None,
    }
}

/// Imports JSON Lines from `reader` (a file or stdin): one object with a
/// string `"id"` per line; blank lines are ignored.
pub async fn import_jsonl(
    engine: &Engine,
    reader: &mut (dyn BufRead + Send),
    input_name: &Path,
    opts: ImportOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> TransferResult<ImportReport> {
    let max_doc = engine.limits().max_doc_bytes;
    let mut imp = Importer::new(engine, opts, on_progress);
    let mut buf = Vec::new();
    let mut number = 0u64;
    loop {
        let line = read_line_bounded(reader, &mut buf, max_doc + 1)
            .map_err(io_err(PathBuf::from(input_name)))?;
        let Some(line) = line else { break };
        number += 1;
        let source = format!("line {number}");
        match line {
            Line::TooLong(len) => {
                imp.tick(0);
                imp.refuse(
                    source,
                    format!("line is {len} bytes; a document may have at most {max_doc}"),
                );
            }
            Line::Text if buf.trim_ascii().is_empty() => {}
            Line::Text => match line_id(&buf) {
                Ok(id) => {
                    let json = Bytes::copy_from_slice(&buf);
                    imp.offer(Candidate {
                        source,
                        id,
                        json,
                        mtime: None,
                    })
                    .await?
                }
                Err(reason) => {
                    imp.tick(buf.len());
                    imp.refuse(source, reason);
                }
            },
        }
    }
    imp.finish().await
}
