//! `setattr`: chmod/chown to the current values are accepted (no per-file
//! modes or owners are kept), truncate edits or commits, times are kept
//! (see `set_times`), anything else is refused with EPERM.

use std::time::SystemTime;

use super::attr::{Attr, SetAttr};
use super::core::FsCore;
use super::error::{FsError, FsResult};
use super::handles::{FileState, Handle};
use super::inodes::{DocMeta, InodeTable, Node};
use super::io::PAGES_MIXED;
use crate::types::WriteBatch;

impl FsCore {
    /// chmod/chown to the current values, utimes, and truncate.
    pub async fn setattr(&self, ino: u64, change: SetAttr) -> FsResult<Attr> {
        let current = self.getattr(ino).await?;
        if let Some(mode) = change.mode.map(|m| (m & 0o7777) as u16) {
            let mut t = self.table.lock();
            if let Some(Node::Scratch(s)) = t.get_mut(ino).map(|i| &mut i.node) {
                s.mode = Some(mode);
            } else if mode != current.perm {
                return Err(FsError::NotPermitted(
                    "reef keeps no per-file modes; only a chmod to the current mode is accepted",
                ));
            }
        }
        if change.uid.is_some_and(|u| u != current.uid)
            || change.gid.is_some_and(|g| g != current.gid)
        {
            return Err(FsError::NotPermitted("reef keeps no per-file owners"));
        }
        if let Some(size) = change.size {
            self.check_writable()?;
            self.check_not_fenced_at(ino)?;
            self.truncate(ino, size, change.fh).await?;
        }
        self.set_times(ino, change.atime, change.mtime).await?;
        self.getattr(ino).await
    }

    /// `utimensat`. A scratch file keeps both times. A document keeps its
    /// mtime (its atime is its mtime): with uncommitted content the time
    /// goes with that content's commit (`cp -p` sets it before closing),
    /// else it is committed now, keeping the bytes (`tar x`, `touch`,
    /// `rsync -t`). A directory keeps its mtime in memory (until the next
    /// entry change or the daemon stops); control files ignore it.
    async fn set_times(
        &self,
        ino: u64,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> FsResult<()> {
        let commit_now = {
            let mut t = self.table.lock();
            match t.get_mut(ino).map(|i| &mut i.node) {
                Some(Node::Scratch(s)) => {
                    s.atime = atime.unwrap_or(s.atime);
                    s.mtime = mtime.unwrap_or(s.mtime);
                    None
                }
                Some(Node::Doc(d)) => match mtime {
                    Some(m) if d.pending || d.dirty_size.is_some() => {
                        d.mtime_set = Some(m);
                        None
                    }
                    Some(m) => Some((d.id.clone(), m)),
                    None => None,
                },
                Some(
                    Node::Dir(_) | Node::Namespace(_) | Node::Snapshots(_) | Node::Versions(_),
                ) => {
                    // Kept while the daemon runs (directories are not stored).
                    if let Some(m) = mtime {
                        t.set_dir_mtime(ino, m);
                    }
                    None
                }
                _ => None,
            }
        };
        let Some((id, mtime)) = commit_now else {
            return Ok(());
        };
        self.check_writable()?;
        let (ns, _) = self.doc_of(ino)?;
        ns.check_not_view()?;
        let what = self.path_of(ino);
        let result = async {
            let engine = ns.engine().await?;
            engine
                .write(WriteBatch::new().set_mtime(id.clone(), mtime))
                .await?;
            Ok::<_, FsError>(engine.get_stored(&id).await.ok().flatten())
        }
        .await;
        match result {
            Ok(stored) => {
                if let Some(Node::Doc(d)) = self.table.lock().get_mut(ino).map(|i| &mut i.node) {
                    d.meta = stored.as_ref().map(DocMeta::of);
                }
                self.bump_epoch();
                Ok(())
            }
            Err(e) => {
                log::warn!("{what}: time not set: {e}");
                Err(e)
            }
        }
    }

    async fn truncate(&self, ino: u64, size: u64, fh: Option<u64>) -> FsResult<()> {
        let target = {
            let mut t = self.table.lock();
            match t.get(ino).map(|i| &i.node) {
                None => return Err(FsError::NotFound),
                Some(
                    Node::Root
                    | Node::Namespace(_)
                    | Node::Snapshots(_)
                    | Node::Versions(_)
                    | Node::Dir(_),
                ) => return Err(FsError::IsDir),
                Some(Node::Control(_)) => return Ok(()),
                Some(Node::Scratch(_)) => {
                    return set_scratch_len(&mut t, ino, size, self.cfg.scratch_limit);
                }
                Some(Node::Doc(d)) => d.pending,
            }
        };
        let size = size as usize;
        if size > self.doc_buffer_cap() {
            return Err(FsError::TooLarge("document files are limited in size".into()));
        }
        // Through an open handle: edit its buffer; committed at close.
        if let Some(handle) = fh.and_then(|fh| self.handles.get(fh)) {
            let mut handle = handle.lock().await;
            if let Handle::File(f) = &mut *handle {
                if f.ino == ino && f.writable && matches!(f.state, FileState::Doc { .. }) {
                    if size > 0 {
                        self.ensure_loaded(f).await?;
                    }
                    if let FileState::Doc {
                        buf, loaded, dirty, ..
                    } = &mut f.state
                    {
                        buf.resize(size, 0);
                        *loaded = true;
                        *dirty = true;
                    }
                    if let Some(Node::Doc(d)) = self.table.lock().get_mut(ino).map(|i| &mut i.node)
                    {
                        d.dirty_size = Some(size as u64);
                        d.kernel_cache_seq = PAGES_MIXED;
                    }
                    return Ok(());
                }
            }
        }
        // By path (`truncate -s`): commit the truncated content now.
        let mut content = if target {
            Vec::new()
        } else {
            let (ns, id) = self.doc_of(ino)?;
            let stored = ns.engine().await?.get_stored(&id).await?;
            stored.ok_or(FsError::NotFound)?.json.to_vec()
        };
        content.resize(size, 0);
        self.commit_doc(ino, &content, false, None).await
    }
}

/// Resizes scratch inode `ino`, keeping the total within `limit`.
pub(crate) fn set_scratch_len(t: &mut InodeTable, ino: u64, len: u64, limit: u64) -> FsResult<()> {
    let cur = match t.get(ino).map(|i| &i.node) {
        Some(Node::Scratch(s)) => s.data.len() as u64,
        _ => return Err(FsError::NotFound),
    };
    if len > cur && t.scratch_bytes.saturating_add(len - cur) > limit {
        return Err(FsError::NoSpace(format!(
            "scratch files (non-document names) are held in memory, {limit} bytes at most"
        )));
    }
    t.scratch_bytes = t.scratch_bytes.saturating_add(len).saturating_sub(cur);
    if let Some(Node::Scratch(s)) = t.get_mut(ino).map(|i| &mut i.node) {
        s.data.resize(len as usize, 0);
        s.mtime = SystemTime::now();
    }
    Ok(())
}
