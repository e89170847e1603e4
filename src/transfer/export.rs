//! Export: one state of a namespace, as a directory tree or JSON Lines.
//!
//! The state is fixed before the first document is read: `Engine::open_at`
//! at the newest WAL sequence listed when the export starts (or the one
//! asked for), read-only and never refreshed, so the output is exactly that
//! state while writers go on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::jsonl::render_line;
use super::{io_err, Progress, TransferError, TransferResult};
use crate::engine::layout::{parse_numbered, wal_dir};
use crate::engine::{At, Engine, EngineError, EngineOptions, StoredDoc};
use crate::fs::names;
use crate::store::ObjectStore;

/// Where an export goes.
pub enum ExportFormat<'a> {
    /// A new (or empty) directory: one `.json` file per document, named and
    /// nested as the mount shows it, bytes as stored, mtime set.
    Tree(PathBuf),
    /// One JSON object per line, each with its `"id"`.
    JsonLines(&'a mut (dyn Write + Send)),
}

/// What an export wrote (printed as JSON by `reef export`, on stderr when
/// the documents go to stdout).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    pub namespace: String,
    /// The WAL sequence of the exported state.
    pub seq: u64,
    /// The checkpoint it was taken from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    pub exported: u64,
    pub bytes: u64,
    pub elapsed_ms: u64,
}

/// Documents per scan page: bounds memory, amortises the merge setup.
const PAGE: usize = 1024;

/// Exports namespace `ns` of `store` at `at` (`None`: the newest committed
/// state) to `to`.
pub async fn export(
    store: Arc<dyn ObjectStore>,
    ns: &str,
    at: Option<At>,
    to: ExportFormat<'_>,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> TransferResult<ExportReport> {
    let started = std::time::Instant::now();
    crate::engine::layout::check_namespace(ns)?;
    let at = match at {
        Some(at) => at,
        None => At::Seq(newest_seq(&store, ns).await?),
    };
    let opts = EngineOptions {
        read_only: true,
        ..EngineOptions::default()
    };
    let at = match at {
        At::Time(t) => {
            let times = crate::engine::timeline::WalTimes::default();
            At::Seq(
                crate::engine::timeline::seq_at_time(&store, ns, t, &times)
                    .await?
                    .seq,
            )
        }
        other => other,
    };
    let seq = match &at {
        At::Seq(s) => *s,
        At::Time(_) => unreachable!("resolved to a sequence above"),
        At::Checkpoint(name) => crate::engine::checkpoint::read(&store, ns, name).await?.seq,
    };
    let engine = Engine::open_at(store, ns, at.clone(), opts).await?;
    let mut report = ExportReport {
        namespace: ns.to_string(),
        seq,
        checkpoint: match &at {
            At::Checkpoint(name) => Some(name.clone()),
            At::Seq(_) | At::Time(_) => None,
        },
        ..ExportReport::default()
    };
    let mut sink = match to {
        ExportFormat::Tree(dir) => Sink::Tree(TreeWriter::new(dir)?),
        ExportFormat::JsonLines(w) => Sink::Lines(w, Vec::with_capacity(64 << 10)),
    };
    let mut last: Option<StoredDoc> = None;
    loop {
        let page = engine.scan(last.as_ref().map(|d| &d.id), PAGE).await?;
        if page.is_empty() {
            break;
        }
        for doc in &page {
            sink.write(doc)?;
            report.exported += 1;
            report.bytes += doc.json.len() as u64;
        }
        on_progress(Progress {
            items: report.exported,
            bytes: report.bytes,
        });
        last = page.into_iter().last();
    }
    sink.finish()?;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The newest WAL sequence of `ns`: every object up to it is committed
/// (WAL objects are written in order, each only after the one before).
async fn newest_seq(store: &Arc<dyn ObjectStore>, ns: &str) -> TransferResult<u64> {
    let dir = wal_dir(ns);
    let newest = store
        .list(&dir, None)
        .await
        .map_err(EngineError::from)?
        .iter()
        .filter_map(|m| parse_numbered(&dir, &m.key))
        .max();
    match newest {
        Some(seq) => Ok(seq),
        // No WAL at all: everything is in segments, or nothing exists.
        None => {
            let m = crate::engine::manifest::load_latest(store, ns).await?;
            match m {
                Some(m) => Ok(m.flushed_through),
                None => Err(EngineError::NoSuchNamespace(ns.to_string()).into()),
            }
        }
    }
}

enum Sink<'a> {
    Tree(TreeWriter),
    /// The writer and a buffer of whole lines.
    Lines(&'a mut (dyn Write + Send), Vec<u8>),
}

impl Sink<'_> {
    fn write(&mut self, doc: &StoredDoc) -> TransferResult<()> {
        match self {
            Sink::Tree(t) => t.write(doc),
            Sink::Lines(w, buf) => {
                render_line(&doc.id, &doc.json, buf);
                buf.push(b'\n');
                if buf.len() >= 64 << 10 {
                    w.write_all(buf).map_err(io_err("standard output"))?;
                    buf.clear();
                }
                Ok(())
            }
        }
    }

    fn finish(self) -> TransferResult<()> {
        match self {
            Sink::Tree(_) => Ok(()),
            Sink::Lines(w, buf) => {
                w.write_all(&buf).map_err(io_err("standard output"))?;
                w.flush().map_err(io_err("standard output"))
            }
        }
    }
}

/// Writes documents as files below a directory.
struct TreeWriter {
    root: PathBuf,
    /// The last directory created, so a run of siblings costs one mkdir.
    made: Option<PathBuf>,
}

impl TreeWriter {
    /// Refuses a target that holds anything: mixing an export with other
    /// files would make the tree say something the namespace does not.
    fn new(root: PathBuf) -> TransferResult<TreeWriter> {
        match std::fs::read_dir(&root) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(TransferError::TargetNotEmpty(root));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&root).map_err(io_err(&root))?;
            }
            Err(e) => return Err(io_err(&root)(e)),
        }
        Ok(TreeWriter { root, made: None })
    }

    fn write(&mut self, doc: &StoredDoc) -> TransferResult<()> {
        let path = self.root.join(names::doc_file_name(&doc.id));
        if let Some(parent) = path.parent() {
            if self.made.as_deref() != Some(parent) && parent != self.root {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
                self.made = Some(parent.to_path_buf());
            }
        }
        write_file(&path, &doc.json, doc.mtime())
    }
}

fn write_file(path: &Path, bytes: &[u8], mtime: std::time::SystemTime) -> TransferResult<()> {
    let mut file = std::fs::File::create(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    let times = std::fs::FileTimes::new()
        .set_modified(mtime)
        .set_accessed(mtime);
    file.set_times(times).map_err(io_err(path))
}
