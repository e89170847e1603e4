//! Control files: `.flush`, `.compact`, `.repair`, `.gc` run their operation when
//! a handle opened for writing is closed and show the last result when read;
//! `.verify` and `.stats` generate a JSON report when looked up or stat'd
//! (while no handle has them open) and when opened for reading; an open
//! serves the rendering the `stat` just before it made (within
//! `REPORT_FRESH`), and while a handle is open `stat` reports the length of
//! what it serves. So `stat` then `cat`, and `cp` or `wc -c` (which trust
//! `st_size` after `fstat`) agree with the bytes read. Control files are
//! never listed, only reached by name.
//! `.stats` is the engine's counters for the namespace plus `"store"`, the
//! object-store requests and bytes by kind of the whole mount, and
//! `"disk_cache"` hits and misses with `-o cache=DIR`.
//! Reading never changes anything.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::core::{now_ms, FsCore};
use super::error::{FsError, FsResult};
use super::inodes::Node;
use super::names::ControlKind;
use super::namespace::Namespace;

/// How long a rendering made by `stat` waits for the open that follows.
const REPORT_FRESH: Duration = Duration::from_secs(1);

fn pretty(value: &impl serde::Serialize) -> FsResult<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(value).map_err(|e| FsError::Io(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

impl FsCore {
    /// Renders report `kind` of `ns` for a lookup or `stat`, unless a
    /// handle has it open (whose content's length `stat` then reports).
    pub(crate) async fn report_for_stat(
        &self,
        ns: &Arc<Namespace>,
        kind: ControlKind,
    ) -> FsResult<()> {
        let open = {
            let t = self.table.lock();
            t.lookup(ns.ino, kind.file_name())
                .and_then(|ino| t.get(ino))
                .is_some_and(|i| i.open > 0)
        };
        if !open {
            let content = Bytes::from(self.control_content(ns, kind).await?);
            ns.set_report(kind, content, false);
        }
        Ok(())
    }

    /// Report `kind` of `ns` for an open: what the `stat` just before made,
    /// else rendered now. A new length drops the kernel's cached attributes.
    pub(crate) async fn report_for_open(
        &self,
        ns: &Arc<Namespace>,
        kind: ControlKind,
    ) -> FsResult<Bytes> {
        if let Some(content) = ns.take_report(kind, REPORT_FRESH) {
            return Ok(content);
        }
        let content = Bytes::from(self.control_content(ns, kind).await?);
        let old = ns.set_report(kind, content.clone(), true);
        if old.is_some_and(|len| len != content.len()) {
            let ino = self.table.lock().lookup(ns.ino, kind.file_name());
            if let Some(ino) = ino {
                self.invalidate_attrs(ino, false).await;
            }
        }
        Ok(content)
    }

    pub(crate) async fn control_content(
        &self,
        ns: &Arc<Namespace>,
        kind: ControlKind,
    ) -> FsResult<Vec<u8>> {
        match kind {
            ControlKind::Verify => match crate::admin::verify(self.store.clone(), &ns.name).await {
                Ok(report) => pretty(&report),
                Err(e) => {
                    log::error!("{}/.verify: verify failed: {e}", ns.name);
                    Err(e.into())
                }
            },
            ControlKind::Stats => {
                let mut stats = ns.engine().await?.stats();
                let (files, bytes) = self.scratch_counts(ns.ino);
                if let Some(fields) = stats.as_object_mut() {
                    fields.extend(self.store_report());
                    // Held in this daemon's memory only, lost at unmount.
                    fields.insert("scratch_files".into(), files.into());
                    fields.insert("scratch_bytes".into(), bytes.into());
                    // The whole mount's inode table, and the part of it the
                    // kernel holds (the rest is dropped when memory is tight).
                    let ((inodes, kernel), bytes, evicting, evicted) = {
                        let t = self.table.lock();
                        (t.counts(), t.memory_bytes(), t.evicting(), t.evictions_asked())
                    };
                    fields.insert("inodes".into(), inodes.into());
                    fields.insert("kernel_inodes".into(), kernel.into());
                    fields.insert("inode_table_bytes".into(), bytes.into());
                    fields.insert("evicting_inodes".into(), evicting.into());
                    fields.insert("evicted_inodes".into(), evicted.into());
                }
                pretty(&stats)
            }
            _ => Ok(ns.result(kind).into_bytes()),
        }
    }

    /// Runs the action of `.flush`, `.compact` or `.repair`, records its
    /// result for reading, and returns its error as EIO (EROFS when another
    /// writer took the namespace over).
    pub(crate) async fn run_action(&self, ns: &Arc<Namespace>, kind: ControlKind) -> FsResult<()> {
        self.check_writable()?;
        ns.check_not_view()?;
        let outcome: FsResult<serde_json::Value> = match kind {
            ControlKind::Flush => match ns.engine().await?.flush().await {
                Ok(()) => Ok(serde_json::Value::Null),
                Err(e) => Err(FsError::from(e)),
            },
            ControlKind::Compact => match ns.engine().await?.compact().await {
                Ok(()) => Ok(serde_json::Value::Null),
                Err(e) => Err(FsError::from(e)),
            },
            ControlKind::Repair => self.run_repair(ns).await,
            // With the mount's retention (`-o retain=`); the report is what
            // reading `.gc` shows.
            ControlKind::Gc => {
                let engine = ns.engine().await?;
                match engine.gc(engine.gc_options()).await {
                    Ok(report) => {
                        serde_json::to_value(&report).map_err(|e| FsError::Io(e.to_string()))
                    }
                    Err(e) => Err(FsError::from(e)),
                }
            }
            ControlKind::Verify | ControlKind::Stats | ControlKind::Changes => return Ok(()),
        };
        let finished = now_ms();
        let mut record = serde_json::json!({
            "operation": kind.op_name(),
            "namespace": ns.name,
            "finished_at_ms": finished,
        });
        let result = match outcome {
            Ok(report) => {
                record["ok"] = true.into();
                if !report.is_null() {
                    record["report"] = report;
                }
                Ok(())
            }
            Err(e) => {
                log::error!(
                    "{}/{}: {} failed: {e}",
                    ns.name,
                    kind.file_name(),
                    kind.op_name()
                );
                record["ok"] = false.into();
                record["error"] = e.to_string().into();
                Err(match e {
                    // Taken over by another writer: EROFS, like a write.
                    FsError::Fenced(_) => e,
                    _ => FsError::Io(format!("{} failed: {e}", kind.op_name())),
                })
            }
        };
        let text = String::from_utf8(pretty(&record)?).unwrap_or_default();
        ns.set_result(kind, text, finished);
        // Its size changed: drop the kernel's cached attributes.
        let ino = self.table.lock().lookup(ns.ino, kind.file_name());
        if let Some(ino) = ino {
            self.invalidate_inode(ino, false).await;
        }
        result
    }

    /// Repair fences the namespace, so the engine is closed first and
    /// reopened (lazily) after; every cached view of its documents is dropped.
    async fn run_repair(&self, ns: &Arc<Namespace>) -> FsResult<serde_json::Value> {
        let report = {
            let mut slot = ns.exclusive().await;
            *slot = None;
            crate::admin::repair(self.store.clone(), &ns.name).await
        };
        let mut stale = Vec::new();
        {
            let mut t = self.table.lock();
            for (ino, parent, name) in t.descendants(ns.ino) {
                if let Some(Node::Doc(d)) = t.get_mut(ino).map(|i| &mut i.node) {
                    if !d.pending {
                        d.meta = None;
                    }
                    d.kernel_cache_seq = None;
                    stale.push((ino, parent, name));
                }
            }
        }
        self.bump_epoch();
        for (ino, parent, name) in stale {
            self.invalidate_inode(ino, false).await;
            self.invalidate_entry(parent, &name, false).await;
        }
        let report = report?;
        serde_json::to_value(&report).map_err(|e| FsError::Io(e.to_string()))
    }
}
