//! Conversions between core values and fuser's types and replies.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileType, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    ReplyEmpty, ReplyEntry, TimeOrNow,
};

use crate::fs::attr::{Attr, FileKind, OpenInfo};
use crate::fs::dircache::DirCaching;
use crate::fs::error::FsError;

pub(crate) fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

pub(crate) fn to_fuser(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: match a.kind {
            FileKind::Directory => FileType::Directory,
            FileKind::File => FileType::RegularFile,
        },
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

pub(crate) fn fopen_flags(info: &OpenInfo) -> FopenFlags {
    let mut flags = FopenFlags::empty();
    if info.keep_cache {
        flags |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if info.direct_io {
        flags |= FopenFlags::FOPEN_DIRECT_IO;
    }
    if info.no_flush {
        flags |= FopenFlags::FOPEN_NOFLUSH;
    }
    flags
}

/// The kernel's listing cache for a directory handle (see `fs::dircache`).
pub(crate) fn dir_open_flags(caching: DirCaching) -> FopenFlags {
    match caching {
        DirCaching::Serve => FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
        DirCaching::Fill => FopenFlags::FOPEN_CACHE_DIR,
        DirCaching::Off => FopenFlags::empty(),
    }
}

pub(crate) fn time_of(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

/// A name as UTF-8; reef names are strings.
pub(crate) fn utf8(name: &OsStr) -> Result<String, Errno> {
    name.to_str().map(str::to_owned).ok_or(Errno::EINVAL)
}

pub(crate) fn entry_reply(reply: ReplyEntry, ttl: Duration, result: Result<Attr, FsError>) {
    match result {
        Ok(attr) => reply.entry(&attr.ttl(ttl), &to_fuser(&attr), Generation(0)),
        Err(e) => reply.error(errno(&e)),
    }
}

pub(crate) fn empty_reply(reply: ReplyEmpty, result: Result<(), FsError>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

pub(crate) fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Directory => FileType::Directory,
        FileKind::File => FileType::RegularFile,
    }
}

/// readdirplus (attributes with listings), atomic O_TRUNC, parallel
/// lookups in one directory, large writes and readahead.
pub(crate) fn configure_kernel(config: &mut KernelConfig) {
    let wanted = InitFlags::FUSE_DO_READDIRPLUS
        | InitFlags::FUSE_READDIRPLUS_AUTO
        | InitFlags::FUSE_ATOMIC_O_TRUNC
        | InitFlags::FUSE_PARALLEL_DIROPS;
    for flag in wanted.iter() {
        if config.add_capabilities(flag).is_err() {
            log::debug!("kernel lacks FUSE capability {flag:?}");
        }
    }
    for max in [1u32 << 20, 1 << 17] {
        if config.set_max_write(max).is_ok() {
            break;
        }
    }
    if let Err(nearest) = config.set_max_readahead(1 << 20) {
        let _ = config.set_max_readahead(nearest);
    }
    let _ = config.set_max_background(64);
}
