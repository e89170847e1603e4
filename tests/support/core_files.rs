//! Files through the filesystem core (the calls a mount's requests make,
//! without mounting), the way the kernel drives them: create-or-truncate,
//! writes, flush (where reef commits), release, forget.
#![allow(dead_code)]

use reef::fs::{Attr, FsCore, FsError, OpenMode};

/// How `>` opens a file: for writing, created or truncated.
pub fn trunc() -> OpenMode {
    OpenMode {
        write: true,
        truncate: true,
        ..OpenMode::default()
    }
}

/// `printf CONTENT > dir/name`: create-or-truncate, `content` in writes
/// of at most `max_write` bytes (none when it is empty, as the kernel sends
/// none), close. The error of the first write that failed, else the
/// close's (the commit's).
pub async fn write_file(
    core: &FsCore,
    dir: u64,
    name: &str,
    content: &[u8],
    max_write: usize,
) -> Result<(), FsError> {
    let (attr, info) = core.create(dir, name, trunc()).await?;
    let mut written = Ok(());
    let mut off = 0;
    for chunk in content.chunks(max_write) {
        written = core.write(info.fh, off, chunk).await.map(|_| ());
        if written.is_err() {
            break;
        }
        off += chunk.len() as u64;
    }
    let flushed = core.flush(info.fh).await;
    core.release(info.fh).await?;
    core.forget(attr.ino, 1);
    written.and(flushed)
}

/// `cat dir/name` in reads of at most `max_read` bytes: the attributes its
/// lookup gave (so a test can hold `st_size` against the length) and the
/// bytes.
pub async fn read_file(
    core: &FsCore,
    dir: u64,
    name: &str,
    max_read: u32,
) -> Result<(Attr, Vec<u8>), FsError> {
    let attr = core.lookup(dir, name).await?;
    let info = core.open(attr.ino, OpenMode::read_only()).await?;
    let mut out = Vec::new();
    loop {
        let chunk = core.read(info.fh, out.len() as u64, max_read).await?;
        if chunk.is_empty() {
            break;
        }
        out.extend(chunk);
    }
    core.release(info.fh).await?;
    core.forget(attr.ino, 1);
    Ok((attr, out))
}
