//! Import: a directory tree or JSON Lines into a namespace, in batches.
//!
//! A batch goes to the engine as one atomic write, so a document is either
//! stored whole or not at all, and the engine's validation is the only
//! parse of the JSON (the profile of a JSON Lines import showed a second,
//! up-front check costing as much as the engine's). When the engine refuses
//! a batch as invalid, its documents are checked one by one with the same
//! rules, so one bad file or line is refused and reported without failing
//! the batch around it (see [`write_batch`]). Names, ids and line syntax are
//! checked as they are read.
//!
//! **Pipelined.** One batch's write (the engine's validation, the WAL put,
//! the memtable) runs in its own task while the next batch is read, checked
//! and looked up; only one write is in flight, so memory is two batches and
//! batches commit in input order.
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

/// Where a candidate came from, rendered only when it is refused (so the
/// common case costs no string per line).
enum Source {
    Line(u64),
    Path(String),
}

impl Source {
    fn render(self) -> String {
        match self {
            Source::Line(n) => format!("line {n}"),
            Source::Path(p) => p,
        }
    }
}

/// One document ready to write, and where it came from.
struct Candidate {
    source: Source,
    id: DocId,
    json: Bytes,
    mtime: Option<SystemTime>,
}

/// What one batch's write did (see [`write_batch`]).
#[derive(Default)]
struct Outcome {
    imported: u64,
    bytes: u64,
    writes: u64,
    last_seq: Option<u64>,
    refused: Vec<(String, String)>,
    /// The write that failed, after which nothing more of the batch was tried.
    error: Option<EngineError>,
}

/// Collects candidates into batches and writes them, one batch in flight
/// while the next is read and checked: the write runs in its own task, so
/// on a multi-threaded runtime parsing overlaps the WAL put and memory
/// stays at two batches. Only one write is ever in flight, so batches are
/// committed in input order (a later line for the same id wins) and an
/// interrupted import has stored exactly the batches before the failed one.
struct Importer<'a> {
    engine: &'a Engine,
    opts: ImportOptions,
    report: ImportReport,
    batch: Vec<Candidate>,
    batch_bytes: usize,
    in_flight: Option<tokio::task::JoinHandle<Outcome>>,
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
            in_flight: None,
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
    ///
    /// The lookup may miss a document of the batch still in flight; only a
    /// repeated id with identical bytes in one input notices, and it is
    /// then written twice (same bytes) and counted as imported.
    async fn offer(&mut self, c: Candidate) -> TransferResult<()> {
        self.tick(c.json.len());
        let stored = match self.engine.get_stored(&c.id).await {
            Ok(s) => s,
            Err(e) => return Err(self.interrupted_after_in_flight(e).await),
        };
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
            self.send_batch().await?;
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

    /// `interrupted`, once the write in flight has been counted.
    async fn interrupted_after_in_flight(&mut self, source: EngineError) -> TransferError {
        match self.wait_in_flight().await {
            Ok(()) => self.interrupted(source),
            Err(e) => e,
        }
    }

    /// Waits for the write in flight and counts what it did.
    async fn wait_in_flight(&mut self) -> TransferResult<()> {
        let Some(task) = self.in_flight.take() else {
            return Ok(());
        };
        let outcome = task.await.unwrap_or_else(|e| Outcome {
            error: Some(EngineError::WriteFailed {
                ns: self.engine.namespace().to_string(),
                message: format!("the import's write task failed: {e}"),
            }),
            ..Outcome::default()
        });
        self.report.imported += outcome.imported;
        self.report.bytes += outcome.bytes;
        self.report.batches += outcome.writes;
        if outcome.last_seq.is_some() {
            self.report.last_seq = outcome.last_seq;
        }
        for (source, reason) in outcome.refused {
            self.refuse(source, reason);
        }
        match outcome.error {
            Some(e) => Err(self.interrupted(e)),
            None => Ok(()),
        }
    }

    /// Waits for the previous write, then starts this batch's.
    async fn send_batch(&mut self) -> TransferResult<()> {
        self.wait_in_flight().await?;
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if batch.is_empty() {
            return Ok(());
        }
        let engine = self.engine.clone();
        self.in_flight = Some(tokio::spawn(write_batch(engine, batch)));
        Ok(())
    }

    async fn finish(mut self) -> TransferResult<ImportReport> {
        self.send_batch().await?;
        self.wait_in_flight().await?;
        self.report.elapsed_ms = self.started.elapsed().as_millis() as u64;
        Ok(self.report)
    }
}

/// Writes `batch` as one engine write, which validates every document.
/// Should the engine refuse it as invalid, the documents are checked one by
/// one (`Limits::check_json`, the engine's own rules), the offenders are
/// refused and the rest is written as one batch again; only if the engine
/// still refuses that (a rule only it checks, such as a vector whose
/// dimensions differ from the namespace's) are they written one by one.
async fn write_batch(engine: Engine, batch: Vec<Candidate>) -> Outcome {
    let mut out = Outcome::default();
    let batch = match write_all(&engine, batch, &mut out).await {
        Some((batch, _)) if batch.len() > 1 => batch,
        Some((batch, e)) => {
            refuse_all(batch, &e, &mut out);
            return out;
        }
        None => return out,
    };
    let limits = *engine.limits();
    let (good, bad): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|c| {
            let check = limits.check_json(&c.id, &c.json).err();
            (c, check)
        })
        .partition(|(_, e)| e.is_none());
    for (c, e) in bad {
        let reason = e.map_or_else(String::new, |e| e.to_string());
        out.refused.push((c.source.render(), reason));
    }
    let good: Vec<Candidate> = good.into_iter().map(|(c, _)| c).collect();
    if good.is_empty() {
        return out;
    }
    let Some((good, _)) = write_all(&engine, good, &mut out).await else {
        return out;
    };
    for c in good {
        if let Some((c, e)) = write_all(&engine, vec![c], &mut out).await {
            refuse_all(c, &e, &mut out);
        }
        if out.error.is_some() {
            break;
        }
    }
    out
}

/// Writes `batch` as one engine write and counts it in `out`; gives the
/// batch back with the engine's reason when it refused it as invalid. Any
/// other failure is recorded in `out.error`.
async fn write_all(
    engine: &Engine,
    batch: Vec<Candidate>,
    out: &mut Outcome,
) -> Option<(Vec<Candidate>, String)> {
    match engine.write(to_batch(&batch)).await {
        Ok(ack) => {
            out.imported += batch.len() as u64;
            out.bytes += batch.iter().map(|c| c.json.len() as u64).sum::<u64>();
            out.writes += 1;
            out.last_seq = Some(ack.seq);
            None
        }
        Err(EngineError::Invalid(e)) => Some((batch, e.to_string())),
        Err(e) => {
            out.error = Some(e);
            None
        }
    }
}

fn refuse_all(batch: Vec<Candidate>, reason: &str, out: &mut Outcome) {
    for c in batch {
        out.refused.push((c.source.render(), reason.to_string()));
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

/// What the tree walker found: a document to offer, or a refusal.
enum Found {
    Doc(Candidate),
    Refused {
        source: String,
        reason: String,
        /// Counted as an item read (a file that was looked at).
        item: bool,
    },
}

/// Imports the `.json` files under `root` into `engine`'s namespace, with
/// the mount's name mapping (see the module docs of `transfer`).
///
/// The walk and the file reads (a few system calls per document, most of
/// a tree import's time) run on a blocking thread of their own, feeding a
/// bounded channel, so they overlap the lookups here and the write in
/// flight.
pub async fn import_tree(
    engine: &Engine,
    root: &Path,
    opts: ImportOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> TransferResult<ImportReport> {
    let limits = *engine.limits();
    let mut imp = Importer::new(engine, opts, on_progress);
    let (tx, mut rx) = tokio::sync::mpsc::channel(WALK_QUEUE);
    let walk_root = root.to_path_buf();
    let walker = tokio::task::spawn_blocking(move || {
        walk_tree(&walk_root, limits.max_id_bytes, limits.max_doc_bytes, &tx)
    });
    while let Some(found) = rx.recv().await {
        match found {
            Found::Doc(c) => imp.offer(c).await?,
            Found::Refused {
                source,
                reason,
                item,
            } => {
                if item {
                    imp.tick(0);
                }
                imp.refuse(source, reason);
            }
        }
    }
    // The channel also closes when the walker panics: that is not the end.
    walker.await.map_err(|e| TransferError::Io {
        path: root.to_path_buf(),
        source: std::io::Error::other(format!("the directory walk failed: {e}")),
    })?;
    imp.finish().await
}

/// Entries the walker may read ahead of the importer (bounded memory: at
/// most this many documents, each at most the document limit).
const WALK_QUEUE: usize = 1024;

/// Walks `root` in name order (so a re-run retraces the first run's
/// batches), sending what it finds until done or the importer stops.
fn walk_tree(root: &Path, max_id: usize, max_doc: usize, tx: &tokio::sync::mpsc::Sender<Found>) {
    let send = |found: Found| tx.blocking_send(found).is_ok();
    let refuse = |source: String, reason: String, item: bool| {
        send(Found::Refused {
            source,
            reason,
            item,
        })
    };
    let mut walk = walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().map_or_else(|| root.to_path_buf(), Path::to_path_buf);
                if !refuse(relative(root, &path), format!("cannot read: {e}"), false) {
                    return;
                }
                continue;
            }
        };
        let rel = relative(root, entry.path());
        let kind = entry.file_type();
        let sent = if kind.is_dir() {
            let name = entry.file_name().to_string_lossy();
            if names::decode_dir(&name).is_none() {
                walk.skip_current_dir();
                refuse(
                    rel + "/",
                    "directory name is not an id component as the mount names it (hidden, or with a non-canonical % code); skipped with its contents".into(),
                    false,
                )
            } else {
                true
            }
        } else if !kind.is_file() {
            refuse(
                rel,
                "not a regular file (symbolic links are not followed)".into(),
                false,
            )
        } else {
            match read_doc(root, &entry, max_id, max_doc) {
                Ok((id, json, mtime)) => send(Found::Doc(Candidate {
                    source: Source::Path(rel),
                    id,
                    json,
                    mtime: Some(mtime),
                })),
                Err((reason, item)) => refuse(rel, reason, item),
            }
        };
        if !sent {
            return;
        }
    }
}

/// The id, bytes and mtime of the document file `entry`, or why it is
/// refused (and whether it counts as an item read).
fn read_doc(
    root: &Path,
    entry: &walkdir::DirEntry,
    max_id: usize,
    max_doc: usize,
) -> Result<(DocId, Bytes, SystemTime), (String, bool)> {
    let Some(id) = doc_id_of(root, entry.path(), max_id) else {
        return Err((
            format!("not a document name: documents are NAME.json, at most {max_id} bytes of id, as the mount shows them"),
            false,
        ));
    };
    let meta = entry.metadata().map_err(|e| {
        let e = TransferError::Io {
            path: entry.path().to_path_buf(),
            source: e.into(),
        };
        (e.to_string(), false)
    })?;
    if meta.len() > max_doc as u64 {
        return Err((
            format!("document {id} is {} bytes; the limit is {max_doc}", meta.len()),
            true,
        ));
    }
    let json = std::fs::read(entry.path()).map_err(|e| (format!("cannot read: {e}"), false))?;
    let mtime = meta
        .modified()
        .map_err(|e| (format!("cannot read its mtime: {e}"), false))?;
    Ok((id, Bytes::from(json), mtime))
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
        let source = Source::Line(number);
        match line {
            Line::TooLong(len) => {
                imp.tick(0);
                imp.refuse(
                    source.render(),
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
                    imp.refuse(source.render(), reason);
                }
            },
        }
    }
    imp.finish().await
}
