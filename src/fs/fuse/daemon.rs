//! `reef mount`: check the mountpoint, open the store, mount, detach (unless
//! `--foreground`), and unmount cleanly on SIGTERM/SIGINT or `umount`.
//!
//! Detaching forks before any thread exists. The parent waits on a pipe
//! until the child reports the mount live (exit 0) or sends its error
//! (printed, exit 1), so `reef mount` returns only once the mount works.
//!
//! Readiness is the FUSE INIT handshake: `fuser::Session::new` (inside
//! `mount`) mounts, reads the kernel's INIT request and answers it before it
//! returns, and from then on the kernel queues every request until a serving
//! thread reads it. The daemon never probes its own mountpoint (nor unmounts
//! it with a call that could wait on it, see `MountHandle::shutdown`): a
//! request of its own in flight when SIGKILL lands would be waited for
//! uninterruptibly by a thread whose process can no longer answer it, and
//! since that thread keeps the process's /dev/fuse descriptors open the
//! kernel never aborts the connection. The process would stay in D state
//! for good, and every process touching the mount with it.

use std::fs::File;
use std::io::{BufRead, ErrorKind, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::mount::{lazy_unmount, mount, Event, MountOptions};
use crate::fs::error::FsError;

/// Runs `reef mount SOURCE MOUNTPOINT`. In the foreground, returns after a
/// clean unmount. Detached, the calling process returns `Ok` once the mount
/// is live (the daemon child exits by itself when unmounted).
pub fn run_mount_command(
    source: &str,
    mountpoint: &Path,
    mut opts: MountOptions,
) -> Result<(), FsError> {
    let mountpoint = std::path::absolute(mountpoint)
        .map_err(|e| FsError::Mount(format!("mountpoint {}: {e}", mountpoint.display())))?;
    check_mountpoint(&mountpoint)?;
    check_dev_fuse()?;
    let source = absolute_source(source);
    // The daemon changes directory to `/`: resolve relative paths now.
    for path in [&mut opts.cache_dir, &mut opts.log_file].into_iter().flatten() {
        if let Ok(abs) = std::path::absolute(&*path) {
            *path = abs;
        }
    }
    if opts.foreground {
        return serve(&source, &mountpoint, &opts, None);
    }
    let log_file = opts.log_file.clone().or_else(|| default_log_file(&mountpoint));
    let mut fds = [0; 2];
    // Close-on-exec, so helpers the daemon runs (fusermount3 stays alive
    // with auto_unmount) do not hold the pipe open.
    // SAFETY: fds has room for the two descriptors pipe2() writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(FsError::Mount(format!(
            "pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: pipe() returned two fresh descriptors we now own.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (the runtime starts in the child).
    match unsafe { libc::fork() } {
        -1 => Err(FsError::Mount(format!(
            "fork: {}",
            std::io::Error::last_os_error()
        ))),
        0 => {
            drop(read_end);
            // Errors before readiness go to the parent, which prints them;
            // `serve` logs those after.
            let code = match detach(log_file.as_deref()) {
                Ok(()) => match serve(&source, &mountpoint, &opts, Some(File::from(write_end))) {
                    Ok(()) => 0,
                    Err(_) => 1,
                },
                Err(e) => {
                    let mut w = File::from(write_end);
                    let _ = writeln!(w, "{e}");
                    1
                }
            };
            log::logger().flush();
            std::process::exit(code);
        }
        _child => {
            drop(write_end);
            // One line: "ok" or the error. EOF first: the child died.
            let mut msg = String::new();
            let _ = std::io::BufReader::new(File::from(read_end)).read_line(&mut msg);
            match msg.trim() {
                "ok" => {
                    if let Some(path) = &log_file {
                        eprintln!(
                            "reef: mounted at {}; daemon log: {}",
                            mountpoint.display(),
                            path.display()
                        );
                    }
                    Ok(())
                }
                "" => Err(FsError::Mount(format!(
                    "the reef daemon for {} exited before the mount was ready; \
                     run with --foreground to see why",
                    mountpoint.display()
                ))),
                error => Err(FsError::Mount(error.to_string())),
            }
        }
    }
}

/// A bare path becomes absolute: the daemon changes directory to `/`.
fn absolute_source(source: &str) -> String {
    if source.contains("://") {
        return source.to_string();
    }
    std::path::absolute(source)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| source.to_string())
}

/// Where a detached daemon logs without `-o log_file`: the journal when
/// systemd started us (it sets `JOURNAL_STREAM`), else a file named after
/// the mountpoint. Keeping an inherited terminal or pipe would tie the
/// caller (`reef mount … | tee`, `$(reef mount …)`) to the daemon's life.
fn default_log_file(mountpoint: &Path) -> Option<PathBuf> {
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        return None;
    }
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let name: String = mountpoint
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Some(dir.join(format!("reef{name}.log")))
}

/// New session, cwd `/`, stdin/stdout to /dev/null; stderr (the log) to
/// `log_file` (see `default_log_file`).
fn detach(log_file: Option<&Path>) -> Result<(), FsError> {
    // SAFETY: plain syscalls on this process.
    unsafe {
        libc::setsid();
    }
    let _ = std::env::set_current_dir("/");
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| FsError::Mount(format!("/dev/null: {e}")))?;
    let mut targets = vec![(null.as_raw_fd(), 0), (null.as_raw_fd(), 1)];
    let log = match log_file {
        Some(path) => Some(
            File::options()
                .create(true)
                .append(true)
                // A shared temp dir must not let a planted symlink redirect
                // a root daemon's log.
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| FsError::Mount(format!("log file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    if let Some(log) = &log {
        targets.push((log.as_raw_fd(), 2));
    }
    for (from, to) in targets {
        // SAFETY: both descriptors are open; dup2 replaces `to` atomically.
        unsafe {
            libc::dup2(from, to);
        }
    }
    Ok(())
}

/// Opens the store, mounts, reports readiness, and serves until unmounted.
fn serve(
    source: &str,
    mountpoint: &Path,
    opts: &MountOptions,
    mut ready: Option<File>,
) -> Result<(), FsError> {
    super::heap::tune();
    let mut report = |msg: &str| {
        if let Some(mut w) = ready.take() {
            let _ = writeln!(w, "{msg}");
        }
    };
    let mounted = crate::store::open_store(source)
        .map_err(|e| FsError::Mount(format!("cannot open store {source}: {e}")))
        .and_then(|store| mount(store, mountpoint, opts));
    let mut handle = match mounted {
        Ok(handle) => handle,
        Err(e) => {
            report(&e.to_string());
            return Err(e);
        }
    };
    if let Err(e) = handle.watch_signals() {
        report(&e.to_string());
        return Err(e);
    }
    log::info!("reef: {source} mounted at {}", mountpoint.display());
    report("ok");
    let result = match handle.wait() {
        Event::Signal(sig) => {
            log::info!("reef: signal {sig}: unmounting {}", mountpoint.display());
            handle.shutdown(true)
        }
        Event::Ended => {
            log::info!("reef: {} was unmounted", mountpoint.display());
            handle.shutdown(false)
        }
    };
    if let Err(e) = &result {
        log::error!("{e}");
    }
    result
}

fn check_dev_fuse() -> Result<(), FsError> {
    if Path::new("/dev/fuse").exists() {
        return Ok(());
    }
    Err(FsError::Mount(
        "/dev/fuse is missing: install FUSE (`apt-get install fuse3`) and load the kernel \
         module (`modprobe fuse`); in a container, pass --device /dev/fuse"
            .into(),
    ))
}

/// One line of /proc/self/mountinfo: (mount point, fs type, source).
pub(crate) fn mounts() -> Vec<(PathBuf, String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fstype = right.next()?.to_string();
            let source = right.next().unwrap_or("").to_string();
            Some((PathBuf::from(unescape(point)), fstype, unescape(&source)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`. Public
/// (hidden) so the tests read mountinfo through this one decoder.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (fs type, source) of the newest mount at `path`, if any. Public
/// (hidden) so the tests check mounts the way the daemon does.
pub fn mount_at(path: &Path) -> Option<(String, String)> {
    mounts()
        .into_iter()
        .rev()
        .find(|(p, _, _)| p == path)
        .map(|(_, fstype, source)| (fstype, source))
}

fn check_mountpoint(path: &Path) -> Result<(), FsError> {
    let shown = path.display();
    if let Some((fstype, source)) = mount_at(path) {
        // Opening the directory always reaches the daemon (stat may be
        // answered from the kernel's cache even when the daemon is gone).
        let dead = matches!(
            std::fs::read_dir(path),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN) | Some(libc::ECONNABORTED))
        );
        return match (dead, fstype.as_str()) {
            (true, "fuse.reef") => {
                lazy_unmount(path)?;
                eprintln!(
                    "reef: {shown} was a dead reef mount (Transport endpoint is not connected); \
                     detached it as `fusermount3 -u -z {shown}` would"
                );
                check_mountpoint(path)
            }
            (true, _) => Err(FsError::Mount(format!(
                "mountpoint {shown}: Transport endpoint is not connected (a dead {fstype} mount \
                 of {source}); clear it with `fusermount3 -u -z {shown}`"
            ))),
            (false, _) => Err(FsError::Mount(format!(
                "mountpoint {shown} is busy: {source} ({fstype}) is already mounted there; \
                 unmount it first (`umount {shown}`)"
            ))),
        };
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(FsError::Mount(format!("mountpoint {shown} is not a directory"))),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(FsError::Mount(format!(
            "mountpoint {shown} does not exist; create it with `mkdir -p {shown}`"
        ))),
        Err(e) => Err(FsError::Mount(format!("mountpoint {shown}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape(r"/x\\"), r"/x\\");
        assert_eq!(unescape(r"/end\134"), r"/end\");
    }

    #[test]
    fn missing_mountpoint_is_named() {
        let err = check_mountpoint(Path::new("/nonexistent/reef-mnt")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/reef-mnt"), "{err}");
        assert!(err.to_string().contains("mkdir"), "{err}");
    }
}
