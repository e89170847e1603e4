//! Reading /proc/self/mountinfo in tests through the daemon's own reader
//! (`reef::fs::mount_at`, exported hidden for this), so a test and the
//! daemon never disagree on what is mounted where.
#![allow(dead_code, unused_imports)]

use std::path::Path;

pub use reef::fs::{mount_at, unescape_mountinfo as unescape};

/// Whether a reef mount sits exactly at `path`.
pub fn reef_mounted_at(path: &Path) -> bool {
    mount_at(path).is_some_and(|(fstype, _)| fstype == "fuse.reef")
}
