//! The filesystem view (DESIGN §5): namespaces as directories, documents as
//! `<id>.json` files (`/` in an id separates directories, see `names` and
//! `subdirs`), control files, and scratch files and directories for the
//! temporaries editors and tools create.
//!
//! - [`FsCore`] implements every operation as an async fn over plain values
//!   (inode numbers, handles, [`FsError`] with its errno), testable without
//!   mounting (`tests/fs_core.rs`);
//! - `fuse` is the kernel side, apart from the core: the thin fuser
//!   adapter, kernel notifications, [`mount`] ([`MountOptions`],
//!   [`MountHandle`]), the `reef mount` daemon ([`run_mount_command`]) and
//!   the Prometheus metrics of `-o metrics=ADDR:PORT`.
//!
//! Semantics in brief:
//!
//! - A document file is committed (one engine write) when a handle that
//!   wrote, truncated or created it is closed or fsync'd; invalid JSON, a
//!   wrong `id` or a failed write fail that close/fsync (EINVAL, EFBIG,
//!   EIO, EROFS), leave the stored document as it was, and log one line.
//!   What is committed is the bytes as written (validated, never
//!   re-rendered), with the mtime set through `utimensat` if any.
//!   A reader sees the document as of its first read.
//! - Names that are not documents are scratch files, held in memory only
//!   (bounded; ENOSPC beyond), counted in `.stats` and logged one by one
//!   when discarded at unmount. Renaming one onto `x.json` commits it.
//! - Renaming a document to a scratch name (vim's `x.json~`) hides it and
//!   moves its bytes into the scratch file; the stored document is deleted
//!   only when that scratch file is deleted or replaced (not renamed back
//!   or rewritten under its name). If the daemon stops first, the document
//!   is still stored under its old name: nothing is lost.
//! - Another writer taking a namespace over (a second mount of the same
//!   SOURCE, `reef repair`) fences this mount there: the commit that finds
//!   out fails with EROFS, and so does every later attempt to change the
//!   namespace (refused at open once known). The engine logs the one line
//!   naming the new writer.
//! - A read-only mount (`-o ro`) opens namespaces as followers and, every
//!   `refresh=MS` (`follow`), picks up what their writer committed and
//!   drops the kernel's caches of them; it never writes to the store.
//! - `.stats` adds the mount's object-store requests by kind ("store") and
//!   disk cache hits ("disk_cache") to the namespace's engine counters.
//! - `.flush`, `.compact`, `.repair` run on close after a write and show
//!   their last result; `.verify` and `.stats` report on stat and open, with
//!   an exact `st_size`. Control files are never listed, only reached by
//!   name. Reading never changes anything; unlinking one is a no-op.
//! - `.snapshots/` (unlisted, see `history::snapshots`): `mkdir`/`rmdir` of a name in
//!   it creates/deletes a checkpoint; each is a read-only view (EROFS).
//! - `.versions/SEQ/` and `.versions/@TIME/` (unlisted, see `history::versions`):
//!   read-only views of any retained state; GC in this mount keeps what an
//!   open view reads (`engine::pins`).
//! - `.changes` (unlisted, see `history::changes`): one JSON line per committed
//!   operation, growing as commits land (`tail -f`), never attr-cached.

mod attr;
mod control;
mod core;
mod dircache;
mod dirstream;
mod error;
mod follow;
mod fuse;
#[cfg(test)]
pub(crate) use fuse::mounts;
mod handles;
mod history;
mod inodes;
mod invalidate;
mod io;
mod lookup;
pub(crate) mod names;
mod namespace;
mod ns_dirs;
mod open;
mod readdir;
mod rename;
mod setattr;
mod subdirs;

pub use self::attr::{Attr, DirEntry, FileKind, OpenInfo, OpenMode, SetAttr};
pub use self::core::{CoreConfig, FsCore, StatFs};
pub use self::error::{FsError, FsResult};
pub use self::fuse::daemon::run_mount_command;
/// The daemon's /proc/self/mountinfo reader, for the tests' mount checks.
#[doc(hidden)]
pub use self::fuse::daemon::{mount_at, unescape as unescape_mountinfo};
pub use self::fuse::mount::{mount, mount_core, MountHandle, MountOptions};
pub use self::inodes::{DEFAULT_MAX_KERNEL_INODES, ROOT_INO};
pub use self::invalidate::Invalidation;
pub use self::names::{classify, classify_in, doc_file_name, ControlKind, NameKind};
pub use self::readdir::Listed;
pub use self::rename::RenameFlags;
