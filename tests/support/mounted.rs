//! A real mount through /dev/fuse for tests, unmounted on drop (lazily if
//! busy), so a failing test leaves no mount behind.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reef::fs::{mount, MountHandle, MountOptions};
use reef::store::ObjectStore;

pub fn fuse_available() -> bool {
    let ok = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_ok();
    if !ok {
        assert!(
            std::env::var_os("REEF_REQUIRE_FUSE").is_none(),
            "/dev/fuse is not usable and REEF_REQUIRE_FUSE is set"
        );
        eprintln!("skipping: /dev/fuse is not usable here (apt-get install fuse3; modprobe fuse)");
    }
    ok
}

/// An in-process mount; unmounts on drop.
pub struct Mounted {
    handle: Option<MountHandle>,
    dir: tempfile::TempDir,
}

impl Mounted {
    pub fn new(store: Arc<dyn ObjectStore>, opts: &str) -> Mounted {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = MountOptions::parse_o(opts).expect("options");
        let handle = mount(store, dir.path(), &options).expect("mount");
        Mounted {
            handle: Some(handle),
            dir,
        }
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn handle(&self) -> &MountHandle {
        self.handle.as_ref().expect("mounted")
    }

    pub fn unmount(mut self) {
        if let Some(h) = self.handle.take() {
            h.unmount().expect("unmount");
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.unmount();
        }
    }
}

/// Creates or truncates `path`, writes `data` and closes it, returning the
/// error of whichever step failed: reef commits at close, and
/// `std::fs::write` would drop that error.
pub fn write_close(path: &Path, data: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let mut file = std::fs::File::create(path)?;
    file.write_all(data.as_ref())?;
    let fd = file.into_raw_fd();
    // SAFETY: fd was just released by `file` and is closed exactly once.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
