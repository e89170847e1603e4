//! Mounting: `MountOptions` (also parsed from `-o` strings, as mount(8)
//! passes them), `mount`, and the `MountHandle` that unmounts cleanly.

use std::ffi::CString;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::{MountOption, SessionACL, SessionUnmounter};

use super::adapter::{Adapter, UnmounterSlot};
use super::metrics::{FuseMetrics, MountCollector};
use super::metrics_server;
use super::notify::{spawn_notifier, InFlight};
use crate::fs::core::{CoreConfig, FsCore};
use crate::fs::error::FsError;
use crate::store::{DiskCacheStore, MeteredStore, ObjectStore};

/// How to mount. Every field is also an `-o` option (see `parse_o`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `ro`: every change fails with EROFS; namespaces open as followers.
    pub read_only: bool,
    /// `allow_other`: users other than the mounting one may use the mount.
    pub allow_other: bool,
    /// `allow_root`: root may use the mount too.
    pub allow_root: bool,
    /// `auto_unmount`: the kernel side is cleaned up if the daemon dies.
    pub auto_unmount: bool,
    /// `foreground`: `reef mount` does not detach.
    pub foreground: bool,
    /// `uid=N`, `gid=N`: owner shown for every file (default: the mounter).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `file_mode=0644`, `dir_mode=0755` (octal).
    pub file_mode: Option<u16>,
    pub dir_mode: Option<u16>,
    /// `cache=DIR`: keep a read-through cache of segment blocks on local
    /// disk (survives restarts; saves GETs on object storage).
    pub cache_dir: Option<PathBuf>,
    /// `cache_size=SIZE`: bound of the disk cache (default 1G; K/M/G suffixes).
    pub cache_size: Option<u64>,
    /// `threads=N`: FUSE event loops (default 4).
    pub threads: Option<usize>,
    /// `max_inodes=N`: inodes the kernel may hold before the daemon asks it
    /// to drop the oldest documents (default 100000; `0`: no bound).
    pub max_inodes: Option<usize>,
    /// `scratch_limit=SIZE`: memory for scratch files (default 256M).
    pub scratch_limit: Option<u64>,
    /// `log_file=PATH`: where a detached daemon writes its log.
    pub log_file: Option<PathBuf>,
    /// `refresh=MS` (read-only mounts): every MS milliseconds (default
    /// 1000) each namespace in use picks up what its writer committed —
    /// another mount of the same SOURCE, here or on another machine — and
    /// the kernel's caches of it are dropped, so new and changed documents
    /// show within about MS (two intervals at worst). Each refresh costs
    /// two LIST requests and one GET per namespace in use. `refresh=0`
    /// turns it off: the mount then shows each namespace as it was when
    /// first used.
    pub refresh_ms: Option<u64>,
    /// `metrics=ADDR:PORT` (or `metrics=PORT`, on loopback): serve
    /// Prometheus metrics on `http://ADDR:PORT/metrics`.
    pub metrics: Option<String>,
    /// `retain=DURATION` (`0`, `30m`, `24h`): how long every committed
    /// state stays readable before garbage collection may free it.
    pub retain: Option<Duration>,
    /// Kernel mount flags and options passed through (`noexec`, `max_read=N`).
    pub extra: Vec<String>,
}

/// Options that only mean something to mount(8), fstab or systemd.
fn fstab_only(opt: &str) -> bool {
    matches!(
        opt,
        "noauto"
            | "auto"
            | "_netdev"
            | "nofail"
            | "defaults"
            | "user"
            | "users"
            | "owner"
            | "group"
            | "nouser"
            | "rw"
            | "dev"
            | "suid"
            | "exec"
            | "async"
            | "sync"
            | "dirsync"
            | "atime"
            | "relatime"
            | "strictatime"
            | "lazytime"
            | "nodiratime"
            | "default_permissions"
            | "nonempty"
            | ""
            | "bg"
            | "fg"
            | "silent"
            | "loud"
    ) || opt.starts_with("x-")
        || opt.starts_with("comment=")
        || opt.starts_with("subtype=")
        || opt.starts_with("fsname=")
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, FsError> {
    value
        .parse()
        .map_err(|_| FsError::Mount(format!("mount option {key}={value}: not a number")))
}

/// A byte count with an optional K, M or G (binary) suffix.
fn size(key: &str, value: &str) -> Result<u64, FsError> {
    let v = value.trim();
    let (digits, shift) = match v.char_indices().last() {
        Some((i, 'k' | 'K')) => (&v[..i], 10),
        Some((i, 'm' | 'M')) => (&v[..i], 20),
        Some((i, 'g' | 'G')) => (&v[..i], 30),
        _ => (v, 0),
    };
    let n: u64 = number(key, digits)?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| FsError::Mount(format!("mount option {key}={value}: too large")))
}

fn octal(key: &str, value: &str) -> Result<u16, FsError> {
    u16::from_str_radix(value.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| FsError::Mount(format!("mount option {key}={value}: not an octal mode")))
}

impl MountOptions {
    /// Parses an `-o` string (`ro,allow_other,uid=1000`).
    pub fn parse_o(options: &str) -> Result<MountOptions, FsError> {
        let mut opts = MountOptions::default();
        opts.apply_o(options)?;
        Ok(opts)
    }

    /// Applies an `-o` string on top of these options (`-o` may repeat).
    /// Options only fstab or systemd care about are accepted and ignored;
    /// an unknown option is an error naming it.
    pub fn apply_o(&mut self, options: &str) -> Result<(), FsError> {
        for opt in options.split(',').map(str::trim) {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k.replace('-', "_"), Some(v)),
                None => (opt.replace('-', "_"), None),
            };
            match (key.as_str(), value) {
                ("ro" | "read_only", None) => self.read_only = true,
                ("rw", None) => self.read_only = false,
                ("allow_other", None) => self.allow_other = true,
                ("allow_root", None) => self.allow_root = true,
                ("auto_unmount", None) => self.auto_unmount = true,
                ("foreground", None) => self.foreground = true,
                ("uid", Some(v)) => self.uid = Some(number("uid", v)?),
                ("gid", Some(v)) => self.gid = Some(number("gid", v)?),
                ("file_mode", Some(v)) => self.file_mode = Some(octal("file_mode", v)?),
                ("dir_mode", Some(v)) => self.dir_mode = Some(octal("dir_mode", v)?),
                ("cache" | "cache_dir", Some(v)) => self.cache_dir = Some(PathBuf::from(v)),
                ("threads", Some(v)) => self.threads = Some(number("threads", v)?),
                ("max_inodes", Some(v)) => self.max_inodes = Some(number("max_inodes", v)?),
                ("scratch_limit", Some(v)) => self.scratch_limit = Some(size("scratch_limit", v)?),
                ("cache_size" | "max_cache_size", Some(v)) => {
                    self.cache_size = Some(size("cache_size", v)?)
                }
                ("log_file" | "logfile", Some(v)) => self.log_file = Some(PathBuf::from(v)),
                ("refresh" | "refresh_ms", Some(v)) => {
                    self.refresh_ms = Some(number("refresh", v.trim_end_matches("ms"))?)
                }
                ("metrics", Some(v)) => self.metrics = Some(metrics_server::parse_addr(v)?),
                ("retain", Some(v)) => {
                    self.retain = Some(
                        crate::engine::gc::parse_duration(v)
                            .map_err(|e| FsError::Mount(e.to_string()))?,
                    )
                }
                ("nodev" | "nosuid" | "noexec" | "noatime", None) => self.extra.push(key),
                ("max_read", Some(v)) => {
                    number::<u32>("max_read", v)?;
                    self.extra.push(format!("max_read={v}"));
                }
                _ if fstab_only(opt) => {}
                _ => {
                    return Err(FsError::Mount(format!(
                        "unknown mount option {opt:?} (reef accepts ro, rw, allow_other, \
                         allow_root, auto_unmount, foreground, uid=, gid=, file_mode=, dir_mode=, \
                         cache=, cache_size=, threads=, max_inodes=, scratch_limit=, log_file=, refresh=MS, retain=, \
                         metrics=ADDR:PORT, \
                         noexec, nosuid, nodev, noatime, max_read=, and fstab-only options)"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The core configuration these options describe.
    pub fn core_config(&self) -> CoreConfig {
        let mut cfg = CoreConfig {
            read_only: self.read_only,
            ..CoreConfig::default()
        };
        if let Some(uid) = self.uid {
            cfg.uid = uid;
        }
        if let Some(gid) = self.gid {
            cfg.gid = gid;
        }
        if let Some(mode) = self.file_mode {
            cfg.file_mode = mode;
        }
        if let Some(mode) = self.dir_mode {
            cfg.dir_mode = mode;
        }
        if let Some(limit) = self.scratch_limit {
            cfg.scratch_limit = limit;
        }
        if let Some(ms) = self.refresh_ms {
            cfg.refresh = (ms > 0).then(|| Duration::from_millis(ms));
        }
        if let Some(retain) = self.retain {
            cfg.engine.retain = retain;
        }
        if let Some(max) = self.max_inodes {
            cfg.max_kernel_inodes = max;
        }
        cfg
    }

    fn fuser_config(&self, fsname: &str) -> fuser::Config {
        let mut cfg = fuser::Config::default();
        let mut mo = vec![
            MountOption::FSName(fsname.replace([',', ' ', '\t', '\n'], "_")),
            // A kernel option for direct mounts, parsed by fusermount3 otherwise:
            // either way the type shows as `fuse.reef`.
            MountOption::CUSTOM("subtype=reef".into()),
            MountOption::DefaultPermissions,
        ];
        if self.read_only {
            mo.push(MountOption::RO);
        }
        if self.auto_unmount {
            mo.push(MountOption::AutoUnmount);
        }
        for opt in &self.extra {
            mo.push(match opt.as_str() {
                "nodev" => MountOption::NoDev,
                "nosuid" => MountOption::NoSuid,
                "noexec" => MountOption::NoExec,
                "noatime" => MountOption::NoAtime,
                other => MountOption::CUSTOM(other.to_string()),
            });
        }
        cfg.mount_options = mo;
        // fuser needs allow_other or allow_root for auto_unmount.
        cfg.acl = if self.allow_other {
            SessionACL::All
        } else if self.allow_root || self.auto_unmount {
            SessionACL::RootAndOwner
        } else {
            SessionACL::Owner
        };
        cfg.n_threads = Some(self.threads.unwrap_or(4).max(1));
        cfg.clone_fd = true;
        cfg
    }
}

/// What ended the wait of a mounted filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// The kernel side went away (`umount`, `fusermount3 -u`).
    Ended,
    /// SIGTERM or SIGINT.
    Signal(i32),
}

/// A live mount. Dropping it unmounts (lazily if busy), waits for requests
/// in flight, and commits what open files still hold.
pub struct MountHandle {
    mountpoint: PathBuf,
    core: Arc<FsCore>,
    unmounter: Option<SessionUnmounter>,
    session: Option<JoinHandle<io::Result<()>>>,
    notifier: Option<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    inflight: Arc<InFlight>,
    events: mpsc::Receiver<Event>,
    events_tx: mpsc::Sender<Event>,
    auto_unmount: bool,
    metrics_addr: Option<SocketAddr>,
}

/// Mounts `store` at `mountpoint`; returns once the mount is live.
///
/// The requests that reach `store` are counted (`.stats` shows them under
/// "store"); with `cache=DIR` a disk cache sits in front of the count, so
/// reads it serves cost nothing there.
pub fn mount(
    store: Arc<dyn ObjectStore>,
    mountpoint: &Path,
    opts: &MountOptions,
) -> Result<MountHandle, FsError> {
    let fsname = store.describe();
    let metered = Arc::new(MeteredStore::new(store));
    let core = match &opts.cache_dir {
        Some(dir) => {
            let bound = opts.cache_size.unwrap_or(1 << 30);
            let cached = DiskCacheStore::new(metered.clone(), dir.clone(), bound)
                .map_err(|e| FsError::Mount(format!("cache directory {}: {e}", dir.display())))?;
            let cached = Arc::new(cached);
            FsCore::with_stores(cached.clone(), metered, Some(cached), opts.core_config())
        }
        None => FsCore::with_stores(metered.clone(), metered, None, opts.core_config()),
    };
    mount_core(core, mountpoint, opts, &fsname)
}

/// Mounts an existing core (tests use this to look inside).
pub fn mount_core(
    core: Arc<FsCore>,
    mountpoint: &Path,
    opts: &MountOptions,
    fsname: &str,
) -> Result<MountHandle, FsError> {
    let fail = |what: &str, e: io::Error| {
        FsError::Mount(format!("cannot mount {}: {what}: {e}", mountpoint.display()))
    };
    // Bound before mounting, so a bad or busy address leaves nothing mounted.
    let metrics_listener = opts.metrics.as_deref().map(metrics_server::bind).transpose()?;
    let fuse_metrics = metrics_listener.as_ref().map(|_| Arc::new(FuseMetrics::new()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("reef-fs")
        .build()
        .map_err(|e| fail("tokio runtime", e))?;
    let inflight = Arc::new(InFlight::default());
    let slot = UnmounterSlot::default();
    let adapter = Adapter::new(
        core.clone(),
        runtime.handle().clone(),
        inflight.clone(),
        slot.clone(),
        fuse_metrics.clone(),
    );
    let metrics_addr = match (metrics_listener, fuse_metrics) {
        (Some(listener), Some(fuse)) => {
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(Box::new(MountCollector {
                core: Arc::downgrade(&core),
                fuse,
            }));
            let addr = metrics_server::spawn(runtime.handle(), listener, registry)?;
            log::info!("metrics of {} on http://{addr}/metrics", mountpoint.display());
            Some(addr)
        }
        _ => None,
    };
    let mut session = fuser::Session::new(adapter, mountpoint, &opts.fuser_config(fsname))
        .map_err(|e| fail("FUSE session", e))?;
    let unmounter = session.unmount_callable();
    *slot.lock() = Some(session.unmount_callable());
    let (sink, notifier) = spawn_notifier(session.notifier()).map_err(|e| fail("thread", e))?;
    core.set_invalidation_sink(sink);
    let (events_tx, events) = mpsc::channel();
    let ended = events_tx.clone();
    let session = std::thread::Builder::new()
        .name("reef-fuse".into())
        .spawn(move || {
            let result = session.run();
            let _ = ended.send(Event::Ended);
            result
        })
        .map_err(|e| fail("thread", e))?;
    Ok(MountHandle {
        mountpoint: mountpoint.to_path_buf(),
        core,
        unmounter: Some(unmounter),
        session: Some(session),
        notifier: Some(notifier),
        runtime: Some(runtime),
        inflight,
        events,
        events_tx,
        auto_unmount: opts.auto_unmount,
        metrics_addr,
    })
}

/// Whether a reef mount sits exactly at `path` (per /proc/self/mountinfo).
pub(crate) fn is_reef_mount(path: &Path) -> bool {
    super::daemon::mount_at(path).is_some_and(|(fstype, _)| fstype == "fuse.reef")
}

/// Detaches a mount even while busy (what `fusermount3 -u -z` does).
pub(crate) fn lazy_unmount(path: &Path) -> Result<(), FsError> {
    if let Ok(c) = CString::new(path.as_os_str().as_bytes()) {
        // SAFETY: c is a valid NUL-terminated path for the call's duration.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
    }
    let out = std::process::Command::new("fusermount3")
        .args(["-u", "-z", "--"])
        .arg(path)
        .output()
        .map_err(|e| FsError::Mount(format!("cannot run fusermount3 -u -z: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FsError::Mount(format!(
            "fusermount3 -u -z {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl MountHandle {
    pub fn core(&self) -> &Arc<FsCore> {
        &self.core
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Where `-o metrics=` serves `/metrics` (the bound port, when 0 was asked).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Unmounts and waits until every request and commit has finished.
    pub fn unmount(mut self) -> Result<(), FsError> {
        self.shutdown(true)
    }

    /// Blocks until the mount is unmounted from outside or a signal arrives.
    pub(crate) fn wait(&self) -> Event {
        self.events.recv().unwrap_or(Event::Ended)
    }

    /// Turns SIGTERM and SIGINT into `Event::Signal`.
    pub(crate) fn watch_signals(&self) -> Result<(), FsError> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = self
            .runtime
            .as_ref()
            .ok_or(FsError::Mount("not mounted".into()))?;
        let _enter = rt.enter();
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| FsError::Mount(format!("cannot watch SIGTERM: {e}")))?;
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| FsError::Mount(format!("cannot watch SIGINT: {e}")))?;
        let tx = self.events_tx.clone();
        rt.spawn(async move {
            let sig = tokio::select! {
                _ = term.recv() => libc::SIGTERM,
                _ = int.recv() => libc::SIGINT,
            };
            let _ = tx.send(Event::Signal(sig));
        });
        Ok(())
    }

    /// Unmounting from the daemon's own process is safe where probing its
    /// mount is not: umount(2) of a `/dev/fuse` mount sends the daemon no
    /// request (the kernel sends FUSE_DESTROY only for fuseblk), it aborts
    /// the connection itself, and fusermount3 (used when not root) is a
    /// process of its own. So no thread of ours can be left waiting for an
    /// answer only we could give (tests/daemon_kill.rs kills us here).
    pub(crate) fn shutdown(&mut self, unmount: bool) -> Result<(), FsError> {
        let mut result = Ok(());
        if let Some(mut unmounter) = self.unmounter.take() {
            if unmount {
                if let Err(e) = unmounter.unmount() {
                    log::warn!(
                        "unmount {} failed ({e}); detaching it lazily",
                        self.mountpoint.display()
                    );
                    result = lazy_unmount(&self.mountpoint);
                } else if self.auto_unmount && is_reef_mount(&self.mountpoint) {
                    // With auto_unmount, fuser leaves the unmount to the
                    // fusermount3 watcher, which some versions skip: make sure.
                    result = lazy_unmount(&self.mountpoint);
                }
            }
        }
        if let Some(session) = self.session.take() {
            match session.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    log::warn!("FUSE session of {} ended: {e}", self.mountpoint.display())
                }
                Err(_) => {
                    log::error!("FUSE session thread of {} panicked", self.mountpoint.display())
                }
            }
        }
        if !self.inflight.wait_idle(Duration::from_secs(60)) {
            log::error!("requests still in flight after 60s; stopping anyway");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.block_on(self.core.shutdown());
            self.core.clear_invalidation_sink();
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        if let Some(notifier) = self.notifier.take() {
            let _ = notifier.join();
        }
        result
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown(true) {
            log::error!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_options_are_accepted_and_unknown_ones_named() {
        let o = MountOptions::parse_o(
            "ro,noauto,_netdev,nofail,x-systemd.automount,defaults,allow_other,uid=1000,file_mode=0640,noexec",
        )
        .unwrap();
        assert!(o.read_only && o.allow_other);
        assert_eq!(o.uid, Some(1000));
        assert_eq!(o.file_mode, Some(0o640));
        assert_eq!(o.extra, vec!["noexec".to_string()]);
        let err = MountOptions::parse_o("rw,frobnicate").unwrap_err();
        assert!(err.to_string().contains("frobnicate"), "{err}");
        let o =
            MountOptions::parse_o("auto-unmount,allow-root,cache=/tmp/c,cache_size=64M").unwrap();
        assert!(o.auto_unmount && o.allow_root);
        assert_eq!(o.cache_dir, Some(PathBuf::from("/tmp/c")));
        assert_eq!(o.cache_size, Some(64 << 20));
        assert!(MountOptions::parse_o("scratch_limit=lots").is_err());
    }

    #[test]
    fn refresh_sets_the_follower_interval_and_bounds_the_ttl() {
        let o = MountOptions::parse_o("ro,refresh=250").unwrap();
        assert_eq!(o.refresh_ms, Some(250));
        let cfg = o.core_config();
        assert_eq!(cfg.refresh, Some(Duration::from_millis(250)));
        assert_eq!(cfg.attr_ttl(), Duration::from_millis(250));
        let cfg = MountOptions::parse_o("ro").unwrap().core_config();
        assert_eq!(cfg.refresh, Some(crate::fs::core::DEFAULT_REFRESH));
        assert!(cfg.attr_ttl() <= crate::fs::core::DEFAULT_REFRESH);
        // A writer keeps long TTLs: it invalidates what it changes.
        let cfg = MountOptions::parse_o("rw,refresh=250").unwrap().core_config();
        assert_eq!(cfg.attr_ttl(), crate::fs::core::WRITER_TTL);
        let cfg = MountOptions::parse_o("ro,refresh=0").unwrap().core_config();
        assert_eq!(cfg.refresh, None);
        assert!(MountOptions::parse_o("refresh=soon").is_err());
        assert_eq!(
            MountOptions::parse_o("refresh=100ms").unwrap().refresh_ms,
            Some(100)
        );
    }
}
