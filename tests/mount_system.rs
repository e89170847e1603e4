//! reef mounted the way a system mounts it, with real mounts and the real
//! binary (target/debug/reef): `mount -t fuse.reef`, `mount -t fuse
//! 'reef#SOURCE'`, an fstab line (`mount -T FSTAB`), `umount` stopping the
//! daemon, SIGTERM/SIGINT, recovery of a mountpoint left dead by `kill -9`,
//! `mount-scripts/install.sh`, and the crash/restart script
//! `mount-scripts/crash-test.sh` on a local directory and on S3 (moto).
//!
//! Every mountpoint lives in a [`Fixture`] whose `Drop` detaches whatever is
//! still mounted there (`fusermount3 -u -z`) and kills the daemons serving
//! it, so a failing test leaves no dead mount behind. Nothing sleeps to
//! synchronise: waits poll with a bounded timeout.
//!
//! Without /dev/fuse or fusermount3 these tests print a line and pass,
//! unless `REEF_REQUIRE_FUSE=1` (CI), where that is a failure. The mount(8)
//! tests need root (`mount -t fuse.reef` is a privileged mount) and install
//! reef into the system (`mount-scripts/install.sh`: /usr/local/bin/reef and
//! /sbin/mount.fuse.reef), because mount(8) runs its helpers without PATH.

#[path = "support/poll.rs"]
mod poll;
#[path = "support/s3.rs"]
mod s3;
#[path = "support/source.rs"]
mod source;

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const REEF: &str = env!("CARGO_BIN_EXE_reef");
/// Bound for any single command or wait (mounts answer in milliseconds).
const TIMEOUT: Duration = Duration::from_secs(20);
/// Bound for one run of crash-test.sh (6 rounds take 6-20 s on an idle
/// machine, 80 s on S3 with the machine at load 50).
const CRASH_TIMEOUT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require_fuse_env() -> bool {
    std::env::var("REEF_REQUIRE_FUSE").as_deref() == Ok("1")
}

fn skip(msg: &str) -> bool {
    if require_fuse_env() {
        panic!("REEF_REQUIRE_FUSE=1 but {msg}");
    }
    eprintln!("skipping: {msg}");
    false
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false)
}

/// True when real FUSE mounts can be made here (see the module docs).
fn fuse_ready() -> bool {
    let mut missing = Vec::new();
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_err()
    {
        missing.push("a usable /dev/fuse (modprobe fuse; in a container --device /dev/fuse)");
    }
    if !on_path("fusermount3") {
        missing.push("fusermount3 (apt-get install fuse3)");
    }
    missing.is_empty() || skip(&format!("missing {}", missing.join(" and ")))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True when mount(8) can mount reef here: FUSE, root, mount and fuse3's
/// mount helper. Installs reef into the system once per test process.
fn system_mount_ready() -> bool {
    if !fuse_ready() {
        return false;
    }
    if !is_root() {
        eprintln!("skipping: mount(8) of fuse.reef needs root (run the tests as root, as CI does)");
        return false;
    }
    let helper = ["/sbin/mount.fuse3", "/usr/sbin/mount.fuse3"]
        .iter()
        .any(|p| Path::new(p).exists());
    if !helper || !on_path("mount") || !on_path("umount") {
        return skip("mount, umount or /sbin/mount.fuse3 is missing (apt-get install mount fuse3)");
    }
    install_system();
    true
}

/// Runs mount-scripts/install.sh into the real system (PREFIX=/usr/local,
/// SBINDIR=/sbin) once, under a lock against other test processes.
fn install_system() {
    static DONE: OnceLock<String> = OnceLock::new();
    let out = DONE.get_or_init(|| {
        let script = repo().join("mount-scripts/install.sh");
        let mut cmd = if on_path("flock") {
            let mut c = Command::new("flock");
            c.arg("/tmp/reef-install.lock").arg(&script);
            c
        } else {
            Command::new(&script)
        };
        cmd.args(["--binary", REEF])
            .env_remove("PREFIX")
            .env_remove("SBINDIR")
            .env_remove("DESTDIR");
        let (status, out) = run_timeout(&mut cmd, TIMEOUT);
        assert!(status.success(), "install.sh failed ({status}):\n{out}");
        out
    });
    assert!(
        Path::new("/usr/local/bin/reef").exists(),
        "install.sh did not install /usr/local/bin/reef:\n{out}"
    );
    let link = std::fs::read_link("/sbin/mount.fuse.reef")
        .unwrap_or_else(|e| panic!("/sbin/mount.fuse.reef: {e}; install.sh said:\n{out}"));
    assert!(link.to_string_lossy().ends_with("mount.fuse3"), "{link:?}");
}

static NEXT_LOG: AtomicU64 = AtomicU64::new(0);

/// Runs `cmd` with stdin from /dev/null and stdout+stderr into a file (not a
/// pipe: a daemon it starts inherits them and would hold a pipe open), in its
/// own process group, killed (TERM, then KILL) if it outlives `timeout`.
/// Returns the status and the output.
fn run_timeout(cmd: &mut Command, timeout: Duration) -> (ExitStatus, String) {
    let log = std::env::temp_dir().join(format!(
        "reef-mount-system-{}-{}.log",
        std::process::id(),
        NEXT_LOG.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::File::create(&log).expect("log file");
    let err = file.try_clone().expect("log file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let status = wait_child(&mut child, timeout);
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    match status {
        Some(status) => (status, out),
        None => {
            let pgid = child.id() as i32;
            // SAFETY: signals our own child's process group.
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            if wait_child(&mut child, Duration::from_secs(5)).is_none() {
                // SAFETY: as above.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                let _ = child.wait();
            }
            panic!("{cmd:?} did not finish within {timeout:?}; output so far:\n{out}");
        }
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `cmd` must succeed; returns its output.
fn run_ok(cmd: &mut Command) -> String {
    let (status, out) = run_timeout(cmd, TIMEOUT);
    assert!(status.success(), "{cmd:?} failed ({status}):\n{out}");
    out
}

#[path = "support/mountinfo.rs"]
mod mountinfo;
use mountinfo::mount_at;
use poll::wait_until;

fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// Live reef processes with `mnt` among their arguments: the daemons serving
/// it (`reef mount … MNT`, or `reef SOURCE MNT -o …` from mount.fuse3).
fn daemons_of(mnt: &Path) -> Vec<i32> {
    let want = mnt.as_os_str().as_bytes();
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|b| *b == 0);
        let argv0 = args.next().unwrap_or_default();
        let is_reef = Path::new(std::ffi::OsStr::from_bytes(argv0)).file_name()
            == Some(std::ffi::OsStr::new("reef"));
        if is_reef && args.any(|a| a == want) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a process this test started.
    unsafe { libc::kill(pid, sig) };
}

/// A temp directory with `src/` (a local store) and `mnt/` (a mountpoint).
/// Drop detaches anything mounted at `mnt/` and kills its daemons and the
/// foreground children the test started.
struct Fixture {
    dir: tempfile::TempDir,
    src: PathBuf,
    mnt: PathBuf,
    children: Vec<Child>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("reef-mount-system.")
            .tempdir()
            .expect("tempdir");
        let base = dir.path().canonicalize().expect("canonical tempdir");
        let (src, mnt) = (base.join("src"), base.join("mnt"));
        std::fs::create_dir(&src).expect("mkdir src");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        Fixture {
            dir,
            src,
            mnt,
            children: Vec::new(),
        }
    }

    fn src_str(&self) -> &str {
        self.src.to_str().expect("utf-8 path")
    }

    fn mnt_str(&self) -> &str {
        self.mnt.to_str().expect("utf-8 path")
    }

    fn mounted(&self) -> bool {
        mount_at(&self.mnt).is_some()
    }

    /// The mount is live and is reef's.
    fn assert_reef_mounted(&self) {
        let (fstype, source) = mount_at(&self.mnt)
            .unwrap_or_else(|| panic!("nothing is mounted at {}", self.mnt.display()));
        assert_eq!(
            fstype,
            "fuse.reef",
            "fs type of {} (source {source})",
            self.mnt.display()
        );
        assert!(
            source.contains(self.src_str()),
            "mount source {source:?} should name {}",
            self.src.display()
        );
        std::fs::read_dir(&self.mnt).expect("the mount answers");
    }

    /// `reef mount -f` as a child: returns once the mount answers.
    fn spawn_foreground(&mut self) -> usize {
        let log = std::fs::File::create(self.dir.path().join("foreground.log")).expect("log");
        let child = Command::new(REEF)
            .args(["mount", "-f", self.src_str(), self.mnt_str()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn reef mount -f");
        self.children.push(child);
        let index = self.children.len() - 1;
        let deadline = Instant::now() + TIMEOUT;
        while !(self.mounted() && std::fs::read_dir(&self.mnt).is_ok()) {
            if let Some(status) = self.children[index].try_wait().expect("try_wait") {
                panic!(
                    "reef mount -f exited ({status}) before mounting:\n{}",
                    self.log("foreground.log")
                );
            }
            assert!(
                Instant::now() < deadline,
                "reef mount -f did not mount within {TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        index
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// `reef mount SOURCE MNT` (detached); returns its output.
    fn reef_mount(&self, source: &str) -> String {
        let log_file = self.dir.path().join("daemon.log");
        run_ok(
            Command::new(REEF)
                .args(["mount", source, self.mnt_str(), "-o"])
                .arg(format!("log_file={}", log_file.display())),
        )
    }

    /// `umount MNT` (fusermount3 -u when not root) must succeed, and every
    /// daemon that served the mount must exit.
    fn umount_stops_daemon(&self) {
        let daemons = daemons_of(&self.mnt);
        assert!(
            !daemons.is_empty(),
            "no reef daemon is serving {}",
            self.mnt.display()
        );
        if is_root() {
            run_ok(Command::new("umount").arg(&self.mnt));
        } else {
            run_ok(Command::new("fusermount3").arg("-u").arg(&self.mnt));
        }
        wait_until("the daemon exits after umount", TIMEOUT, || {
            !daemons.iter().any(|p| alive(*p))
        });
        assert!(!self.mounted(), "{} is still mounted", self.mnt.display());
    }

    /// Checks the reef mount, uses it, and unmounts it with umount(8): the
    /// daemon stops and the document written through it is stored.
    fn use_then_umount(&self) {
        self.assert_reef_mounted();
        use_the_mount(&self.mnt);
        self.umount_stops_daemon();
        assert_eq!(self.live_documents("notes"), 1);
    }

    /// `reef stats SRC NS`: the namespace's live document count.
    fn live_documents(&self, ns: &str) -> u64 {
        let out = run_ok(Command::new(REEF).args(["stats", self.src_str(), ns]));
        let json = &out[out.find('{').unwrap_or(0)..];
        let stats: serde_json::Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("stats: {e}:\n{out}"));
        stats["live_documents"]
            .as_u64()
            .unwrap_or_else(|| panic!("no live_documents:\n{out}"))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let daemons = daemons_of(&self.mnt);
        if self.mounted() {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z", "--"])
                .arg(&self.mnt)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for child in &mut self.children {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while daemons.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for pid in daemons {
            if alive(pid) {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// Writes a document and closes it, returning the close error (where reef
/// commits) that `std::fs::write` would ignore.
fn write_doc(path: &Path, json: &str) {
    use std::os::fd::IntoRawFd;
    let mut file =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(json.as_bytes()).expect("write");
    let fd = file.into_raw_fd();
    // SAFETY: fd was just released by `file` and is closed exactly once.
    assert_eq!(
        unsafe { libc::close(fd) },
        0,
        "close {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

/// A namespace with one document, read back through the mount.
fn use_the_mount(mnt: &Path) {
    let ns = mnt.join("notes");
    if !ns.exists() {
        std::fs::create_dir(&ns).expect("mkdir namespace");
    }
    write_doc(&ns.join("a.json"), r#"{"title":"hello","n":1}"#);
    let doc = read_json(&ns.join("a.json"));
    assert_eq!(doc["title"], "hello");
    assert_eq!(doc["n"], 1);
}

// ---------------------------------------------------------------------------
// install.sh

#[test]
fn install_script_is_idempotent_and_says_what_it_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = dir.path().join("usr");
    let sbin = dir.path().join("sbin");
    let install = |extra: &[&str]| {
        let mut cmd = Command::new(repo().join("mount-scripts/install.sh"));
        cmd.args(["--binary", REEF, "--prefix"])
            .arg(&prefix)
            .arg("--sbindir")
            .arg(&sbin)
            .args(extra);
        run_ok(&mut cmd)
    };
    let first = install(&[]);
    let bin = prefix.join("bin/reef");
    assert!(
        first.contains(&format!("installed {REEF} -> {}", bin.display())),
        "{first}"
    );
    assert_eq!(
        std::fs::read(&bin).expect("installed binary"),
        std::fs::read(REEF).expect("binary")
    );
    let has_fuse3 = ["/sbin/mount.fuse3", "/usr/sbin/mount.fuse3"]
        .iter()
        .any(|p| Path::new(p).exists());
    let link = sbin.join("mount.fuse.reef");
    if has_fuse3 {
        assert!(first.contains(&format!("linked {}", link.display())), "{first}");
        let target = std::fs::read_link(&link).expect("helper symlink");
        assert!(target.to_string_lossy().ends_with("/mount.fuse3"), "{target:?}");
    }
    // Not on the search path mount(8) helpers use: it says so.
    assert!(first.contains("not on the search path"), "{first}");

    let second = install(&[]);
    assert!(
        second.contains(&format!("unchanged: {}", bin.display())),
        "{second}"
    );
    if has_fuse3 {
        assert!(
            second.contains(&format!("unchanged: {}", link.display())),
            "{second}"
        );
    }
    assert!(
        !second.contains("installed ") && !second.contains("linked "),
        "{second}"
    );

    let removed = install(&["--uninstall"]);
    assert!(
        removed.contains(&format!("removed {}", bin.display())),
        "{removed}"
    );
    assert!(!bin.exists() && std::fs::symlink_metadata(&link).is_err());
    let again = install(&["--uninstall"]);
    assert!(again.contains("not installed"), "{again}");
}

// ---------------------------------------------------------------------------
// mount(8), fstab, umount

#[test]
fn mount_t_fuse_reef_then_umount_stops_the_daemon() {
    if !system_mount_ready() {
        return;
    }
    let fix = Fixture::new();
    run_ok(Command::new("mount").args([
        "-t",
        "fuse.reef",
        fix.src_str(),
        fix.mnt_str(),
        "-o",
        "rw,noatime",
    ]));
    fix.use_then_umount();
}

#[test]
fn mount_t_fuse_with_reef_hash_source() {
    if !system_mount_ready() {
        return;
    }
    let fix = Fixture::new();
    let source = format!("reef#{}", fix.src_str());
    run_ok(Command::new("mount").args(["-t", "fuse", &source, fix.mnt_str()]));
    fix.use_then_umount();
}

#[test]
fn mount_t_fuse_reef_on_s3_passes_the_aws_environment() {
    if !system_mount_ready() {
        return;
    }
    let Some(s3) = source::s3("mount8") else {
        return;
    };
    let fix = Fixture::new();
    let source = s3.url();
    // mount(8) strips PATH, HOME and SHELL from its helpers' environment but
    // must pass AWS_* through mount.fuse3 to reef.
    run_ok(
        Command::new("mount")
            .args(["-t", "fuse.reef", &source, fix.mnt_str()])
            .envs(s3.env()),
    );
    let (fstype, shown) = mount_at(&fix.mnt).expect("mounted");
    assert_eq!(
        (fstype.as_str(), shown.as_str()),
        ("fuse.reef", source.as_str())
    );
    use_the_mount(&fix.mnt);
    fix.umount_stops_daemon();
    let out = run_ok(Command::new(REEF).args(["ls", &source]).envs(s3.env()));
    assert_eq!(out.trim(), "notes", "reef ls {source}");
}

#[test]
fn fstab_lines_with_fstab_and_systemd_options_mount() {
    if !system_mount_ready() {
        return;
    }
    let plain = Fixture::new();
    let hashed = Fixture::new();
    let fstab = plain.dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# written by tests/mount_system.rs\n\
             {} {} fuse.reef noauto,_netdev,nofail,x-systemd.automount,rw 0 0\n\
             reef#{} {} fuse noauto,_netdev,nofail,x-systemd.automount,x-systemd.mount-timeout=30,defaults,rw,allow_other 0 0\n",
            plain.src_str(),
            plain.mnt_str(),
            hashed.src_str(),
            hashed.mnt_str()
        ),
    )
    .expect("write fstab");
    for fix in [&plain, &hashed] {
        run_ok(Command::new("mount").arg("-T").arg(&fstab).arg(&fix.mnt));
        fix.use_then_umount();
    }
}

#[test]
fn reef_mount_then_umount_stops_the_daemon() {
    if !fuse_ready() {
        return;
    }
    let fix = Fixture::new();
    fix.reef_mount(fix.src_str());
    fix.use_then_umount();
}

// ---------------------------------------------------------------------------
// signals and kill -9

fn signal_unmounts_cleanly(sig: i32) {
    if !fuse_ready() {
        return;
    }
    let mut fix = Fixture::new();
    let child = fix.spawn_foreground();
    use_the_mount(&fix.mnt);
    signal(fix.children[child].id() as i32, sig);
    let status = wait_child(&mut fix.children[child], TIMEOUT)
        .unwrap_or_else(|| panic!("reef mount -f still runs {TIMEOUT:?} after signal {sig}"));
    assert!(
        status.success(),
        "after signal {sig}, reef mount -f exited {status} (signal {:?}):\n{}",
        status.signal(),
        fix.log("foreground.log")
    );
    assert!(
        !fix.mounted(),
        "signal {sig} left {} mounted",
        fix.mnt.display()
    );
    std::fs::read_dir(&fix.mnt).expect("the mountpoint is a plain directory again");
    assert_eq!(fix.live_documents("notes"), 1);
}

#[test]
fn sigterm_unmounts_cleanly_and_exits_0() {
    signal_unmounts_cleanly(libc::SIGTERM);
}

#[test]
fn sigint_unmounts_cleanly_and_exits_0() {
    signal_unmounts_cleanly(libc::SIGINT);
}

#[test]
fn sigterm_to_a_detached_daemon_unmounts() {
    if !fuse_ready() {
        return;
    }
    let fix = Fixture::new();
    fix.reef_mount(fix.src_str());
    use_the_mount(&fix.mnt);
    let daemons = daemons_of(&fix.mnt);
    assert_eq!(
        daemons.len(),
        1,
        "daemons serving {}: {daemons:?}",
        fix.mnt.display()
    );
    signal(daemons[0], libc::SIGTERM);
    wait_until("the daemon exits after SIGTERM", TIMEOUT, || !alive(daemons[0]));
    assert!(
        !fix.mounted(),
        "SIGTERM left {} mounted:\n{}",
        fix.mnt.display(),
        fix.log("daemon.log")
    );
    assert_eq!(fix.live_documents("notes"), 1);
}

/// `reef mount -f`, optionally used, then SIGKILL: the mountpoint is dead
/// (ENOTCONN) and a new `reef mount` clears it, says so, and mounts.
fn stale_mount_is_recovered(used: bool) {
    if !fuse_ready() {
        return;
    }
    let mut fix = Fixture::new();
    let child = fix.spawn_foreground();
    if used {
        use_the_mount(&fix.mnt);
        std::fs::metadata(&fix.mnt).expect("stat the root");
    }
    fix.children[child].kill().expect("SIGKILL");
    fix.children[child].wait().expect("wait");
    assert!(fix.mounted(), "the killed mount should still be in mountinfo");
    // Listing, or a stat of a name not looked up before, asks the dead
    // daemon: ENOTCONN. (A stat of the mountpoint itself may still be
    // answered from the kernel's attribute cache: reef's TTLs are long.)
    let err = std::fs::read_dir(&fix.mnt).expect_err("a dead mount cannot be listed");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    let err = std::fs::metadata(fix.mnt.join("never-seen.json")).expect_err("stat in a dead mount");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");

    let out = fix.reef_mount(fix.src_str());
    assert!(
        out.contains("dead reef mount") && out.contains("fusermount3 -u -z"),
        "reef mount should say it cleared the dead mount; it said:\n{out}"
    );
    fix.assert_reef_mounted();
    if used {
        assert_eq!(read_json(&fix.mnt.join("notes/a.json"))["title"], "hello");
    }
    use_the_mount(&fix.mnt);
    fix.umount_stops_daemon();
}

#[test]
fn stale_mount_after_kill_9_is_recovered() {
    stale_mount_is_recovered(false);
}

#[test]
fn stale_mount_after_kill_9_of_a_used_mount_is_recovered() {
    stale_mount_is_recovered(true);
}

#[test]
fn auto_unmount_mount_returns_and_is_detached_after_kill_9() {
    if !fuse_ready() {
        return;
    }
    let fix = Fixture::new();
    // auto_unmount keeps a fusermount3 running beside the daemon: `reef
    // mount` must still return once the mount is live.
    let log_file = fix.dir.path().join("daemon.log");
    run_ok(
        Command::new(REEF)
            .args(["mount", fix.src_str(), fix.mnt_str(), "-o"])
            .arg(format!("auto_unmount,log_file={}", log_file.display())),
    );
    fix.assert_reef_mounted();
    use_the_mount(&fix.mnt);
    let daemons = daemons_of(&fix.mnt);
    assert_eq!(
        daemons.len(),
        1,
        "daemons serving {}: {daemons:?}",
        fix.mnt.display()
    );
    signal(daemons[0], libc::SIGKILL);
    wait_until(
        "auto_unmount detaches the mount of a killed daemon",
        TIMEOUT,
        || !fix.mounted(),
    );
    let out = fix.reef_mount(fix.src_str());
    assert!(
        !out.contains("dead reef mount"),
        "nothing was left to recover: {out}"
    );
    assert_eq!(read_json(&fix.mnt.join("notes/a.json"))["title"], "hello");
    fix.umount_stops_daemon();
}

// ---------------------------------------------------------------------------
// crash-test.sh

fn crash_script(fix: &Fixture, source: &str, env: &[(String, String)]) {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("mount-scripts/crash-test.sh"))
        // Six rounds: one of each kill moment (random, .flush, .compact,
        // .gc, a snapshot's mkdir, an unmount); nothing retained, so the GC
        // round's kill lands in deletes.
        .args(["--rounds", "6", "--writers", "4", "--max-delay-ms", "1000"])
        .args(["--retain", "0"])
        .args(["--source", source, "--mountpoint", fix.mnt_str()])
        .env("REEF", REEF)
        .envs(env.iter().map(|(k, v)| (k, v)));
    if let Ok(seed) = std::env::var("REEF_CRASH_SEED") {
        cmd.args(["--seed", &seed]);
    }
    let (status, out) = run_timeout(&mut cmd, CRASH_TIMEOUT);
    eprintln!("{out}");
    assert!(
        status.success() && out.contains("6 passed, 0 failed"),
        "crash-test.sh on {source} failed ({status}):\n{out}"
    );
    assert!(
        !fix.mounted(),
        "crash-test.sh left {} mounted",
        fix.mnt.display()
    );
}

#[test]
fn crash_script_on_a_local_directory() {
    if !fuse_ready() {
        return;
    }
    let fix = Fixture::new();
    crash_script(&fix, fix.src_str(), &[]);
}

#[test]
fn crash_script_on_s3() {
    if !fuse_ready() {
        return;
    }
    let Some(s3) = source::s3("crash") else {
        return;
    };
    let fix = Fixture::new();
    crash_script(&fix, &s3.url(), &s3.env());
}
