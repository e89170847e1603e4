//! `setattr`: chmod/chown to the current values and utimes are accepted
//! (nothing per-file is kept), truncate edits or commits, anything else is
//! refused with EPERM.

use std::time::SystemTime;

use super::attr::{Attr, SetAttr};
use super::core::FsCore;
use super::error::{FsError, FsResult};
use super::handles::{FileState, Handle};
use super::inodes::{InodeTable, Node};

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
            self.truncate(ino, size, change.fh).await?;
        }
        if let Some(mtime) = change.mtime {
            if let Some(Node::Scratch(s)) = self.table.lock().get_mut(ino).map(|i| &mut i.node) {
                s.mtime = mtime;
            }
        }
        self.getattr(ino).await
    }

    async fn truncate(&self, ino: u64, size: u64, fh: Option<u64>) -> FsResult<()> {
        let target = {
            let mut t = self.table.lock();
            match t.get(ino).map(|i| &i.node) {
                None => return Err(FsError::NotFound),
                Some(Node::Root | Node::Namespace(_)) => return Err(FsError::IsDir),
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
                        d.kernel_cache_seq = None;
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
        self.commit_doc(ino, &content).await
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
