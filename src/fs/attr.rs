//! File attributes as the core reports them, independent of fuser.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    File,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    pub size: u64,
    pub mtime: SystemTime,
    /// The same as `mtime` except for scratch files, which keep both.
    pub atime: SystemTime,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Never cached by the kernel (TTL 0): a file like `.changes` whose
    /// size grows without anything in this mount telling the kernel.
    pub uncached: bool,
}

impl Attr {
    /// How long the kernel may cache these attributes, given the mount's TTL.
    pub fn ttl(&self, mount_ttl: Duration) -> Duration {
        if self.uncached {
            Duration::ZERO
        } else {
            mount_ttl
        }
    }
}

/// Milliseconds since the epoch as a `SystemTime` (times of directories and
/// control files; documents keep nanoseconds).
pub fn time_from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Attribute changes requested by `setattr` (chmod, chown, truncate, utimes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (file type bits are ignored).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    /// A new mtime (`utimensat`): kept for documents (committed, or with
    /// the pending content) and scratch files.
    pub mtime: Option<SystemTime>,
    /// A new atime: kept for scratch files; a document's atime is its mtime.
    pub atime: Option<SystemTime>,
    /// The open file the change came through, if any.
    pub fh: Option<u64>,
}

/// How a file is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenMode {
    pub read: bool,
    pub write: bool,
    pub truncate: bool,
    pub exclusive: bool,
    /// Permission bits given to `create` (after the umask). A scratch file
    /// keeps them; a document always has the mount's `file_mode`, since no
    /// per-file mode is stored.
    pub create_perm: Option<u16>,
}

impl OpenMode {
    /// From `open(2)` flags.
    pub fn from_flags(flags: i32) -> OpenMode {
        let acc = flags & libc::O_ACCMODE;
        OpenMode {
            read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
            write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            truncate: flags & libc::O_TRUNC != 0,
            exclusive: flags & libc::O_EXCL != 0,
            create_perm: None,
        }
    }

    pub fn read_only() -> OpenMode {
        OpenMode {
            read: true,
            ..OpenMode::default()
        }
    }

    pub fn write_only() -> OpenMode {
        OpenMode {
            write: true,
            ..OpenMode::default()
        }
    }
}

/// What `open`/`create` hand back besides the handle number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenInfo {
    pub fh: u64,
    /// The kernel's cached pages of this file are still valid.
    pub keep_cache: bool,
    /// Bypass the page cache (control files, whose size is not known).
    pub direct_io: bool,
    /// Opened read-only: closing it has nothing to commit, so the kernel
    /// need not send a flush (one round trip less per `cat`).
    pub no_flush: bool,
}

/// One directory entry; attributes for readdirplus only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    /// Cookie to pass back to continue after this entry.
    pub offset: u64,
    pub name: String,
    pub kind: FileKind,
    pub attr: Option<Attr>,
}
