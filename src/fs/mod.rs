//! The filesystem view (DESIGN §5): namespaces as directories, documents as
//! `<id>.json` files, control files, and scratch files for the temporaries
//! editors and tools create.
//!
//! - `core` (`FsCore`) implements every operation as an async fn over plain
//!   values, testable without mounting;
//! - `adapter` is the thin fuser `Filesystem` handing each request to tokio;
//! - `mount` and `daemon` set up mounts and run `reef mount`.

mod adapter;
mod attr;
mod control;
mod core;
mod daemon;
mod dirstream;
mod error;
mod file_ops;
mod handles;
mod inodes;
mod mount;
mod names;
mod namespace;
mod notify;
mod readdir;
mod rename;

pub use self::attr::{Attr, DirEntry, FileKind, OpenInfo, OpenMode, SetAttr};
pub use self::core::{CoreConfig, FsCore, Invalidation, StatFs};
pub use self::daemon::run_mount_command;
pub use self::error::{FsError, FsResult};
pub use self::inodes::ROOT_INO;
pub use self::mount::{mount, mount_core, MountHandle, MountOptions};
pub use self::names::{classify, doc_file_name, ControlKind, NameKind};
pub use self::rename::RenameFlags;
