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

// What tests do through a mount, written once: each panics naming the path
// or the command, so a failing test says where.

/// Runs a tool; panics with its stderr when it fails.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (install it)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The file at `path` as text.
pub fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The names in directory `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// The names in `dir` without the dot entries (control files, history).
pub fn doc_names(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// Runs the control file `name` (`.flush`, `.compact`, `.gc`, …) of the
/// namespace directory `ns`: an empty write, which acts at close.
pub fn run_control(ns: &Path, name: &str) {
    write_close(&ns.join(name), b"").unwrap_or_else(|e| panic!("{name}: {e}"));
}
