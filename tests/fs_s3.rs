//! Real mounts (through /dev/fuse) of a store shared with other writers and
//! readers, on S3 (moto) and on a local directory: fencing between two
//! read-write mounts, read-only followers that track their writer, the
//! basic file operations, and `.stats` counting object-store requests.
//!
//! Two mounts of one SOURCE stand for two machines: each opens its own
//! store client. Every mount and daemon lives in a guard that unmounts on
//! drop, so a failing test leaves no mount behind. Waiting is a bounded
//! poll, and only where a refresh interval makes it inherent.

#[path = "support/s3.rs"]
mod s3;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reef::engine::{Engine, EngineOptions};
use reef::fs::{CoreConfig, FsCore, OpenMode, ROOT_INO};
use reef::store::MeteredStore;
use reef::types::{DocId, Document, WriteBatch};

// ---------------------------------------------------------------- sources

#[path = "support/source.rs"]
mod source;
use source::{sources, Source};

// ---------------------------------------------------------------- mounts

#[path = "support/mounted.rs"]
mod mounted;
#[path = "support/mountinfo.rs"]
mod mountinfo;
#[path = "support/poll.rs"]
mod poll;
use mounted::{doc_names, fuse_available, names, read_text, write_close, Mounted};
use mountinfo::reef_mounted_at;
use poll::wait_for;

/// `reef mount -f` in a child process; SIGTERM (then a lazy unmount and
/// SIGKILL if it must) on drop.
struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Daemon {
    fn start(source: &Source, opts: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "fs_s3-daemon-{}-{}.log",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        ));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_reef"))
            .arg("mount")
            .arg(source.url())
            .arg(dir.path())
            .args(["-o", opts, "-f"])
            .envs(source.env())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn reef mount");
        let mut daemon = Daemon {
            child: Some(child),
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reef_mounted_at(daemon.dir.path()) {
            if let Some(status) = daemon.child.as_mut().unwrap().try_wait().expect("wait") {
                panic!("reef mount exited ({status}): {}", daemon.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "reef mount not live after 30s: {}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signals only the child this guard started.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if reef_mounted_at(self.dir.path()) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(self.dir.path())
                .status();
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

// ---------------------------------------------------------------- logs

/// Log lines of this test process: (level, target, message).
fn captured() -> &'static Mutex<Vec<(log::Level, String, String)>> {
    static LINES: OnceLock<Mutex<Vec<(log::Level, String, String)>>> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(Vec::new()))
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info && m.target().starts_with("reef")
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let line = (r.level(), r.target().to_string(), r.args().to_string());
            if r.level() <= log::Level::Warn {
                eprintln!("[{} {}] {}", line.0, line.1, line.2);
            }
            captured().lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let _ = log::set_boxed_logger(Box::new(Capture));
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// Captured lines mentioning `needle`.
fn lines_naming(needle: &str) -> Vec<(log::Level, String, String)> {
    captured()
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, msg)| msg.contains(needle))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------- files

fn canonical(id: &str, json: &str) -> String {
    let doc = Document::from_json_bytes(&DocId::from(id), json.as_bytes()).expect("valid");
    String::from_utf8(doc.to_canonical_json()).expect("utf-8")
}

fn errno(r: std::io::Result<()>) -> Option<i32> {
    r.expect_err("must fail").raw_os_error()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&read_text(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn touch(path: &Path) -> std::io::Result<()> {
    write_close(path, "")
}

/// How long a follower with `refresh=100` may take to show a change here:
/// the interval plus a refresh's round trips, with room for a loaded
/// machine and moto's latency.
const FOLLOW_LIMIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- tests

/// (a) Two read-write mounts of one SOURCE: the later one takes the
/// namespace over; the earlier one's next change fails with EROFS and
/// leaves everything as it was; what either acknowledged survives.
#[test]
fn a_second_writer_mount_fences_the_first() {
    if !fuse_available() {
        return;
    }
    capture_logs();
    for source in sources("fence") {
        let label = source.name();
        let a = Mounted::new(source.open(), "rw");
        std::fs::create_dir(a.join("ns")).unwrap();
        write_close(&a.join("ns/x.json"), r#"{"v":1}"#).expect("A writes x");
        let v1 = r#"{"v":1}"#;

        // B opens the namespace (its first lookup) and so takes it over.
        let b = Mounted::new(source.open(), "rw");
        assert_eq!(read_text(&b.join("ns/x.json")), v1, "{label}: B sees A's write");
        let b_writer = json(&b.join("ns/.stats"))["writer_id"]
            .as_str()
            .expect("writer_id")
            .to_string();

        // A learns at its next commit: EROFS at close, nothing changed.
        assert_eq!(
            errno(write_close(&a.join("ns/x.json"), r#"{"v":2}"#)),
            Some(libc::EROFS),
            "{label}: A's write after the takeover"
        );
        assert_eq!(read_text(&a.join("ns/x.json")), v1, "{label}: A keeps v1");
        assert_eq!(read_text(&b.join("ns/x.json")), v1, "{label}: B keeps v1");
        // Known now: later changes are refused up front, one way or another.
        assert_eq!(
            errno(write_close(&a.join("ns/new.json"), "{}")),
            Some(libc::EROFS),
            "{label}: A creating a document"
        );
        assert_eq!(
            std::fs::metadata(a.join("ns/new.json"))
                .map(|_| ())
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            errno(std::fs::remove_file(a.join("ns/x.json"))),
            Some(libc::EROFS),
            "{label}: A deleting"
        );
        assert_eq!(
            errno(touch(&a.join("ns/.flush"))),
            Some(libc::EROFS),
            "{label}: A flushing"
        );
        assert_eq!(
            errno(std::fs::rename(a.join("ns/x.json"), a.join("ns/x2.json"))),
            Some(libc::EROFS),
            "{label}: A renaming"
        );

        // The new writer works normally.
        write_close(&b.join("ns/x.json"), r#"{"v":3}"#).expect("B rewrites x");
        write_close(&b.join("ns/y.json"), r#"{"w":1}"#).expect("B writes y");
        touch(&b.join("ns/.flush")).expect("B flushes");
        assert_eq!(read_text(&b.join("ns/x.json")), r#"{"v":3}"#);

        // One line names the new writer, from the engine; the fs layer's
        // per-file lines do not repeat it.
        let naming = lines_naming(&b_writer);
        let from_fs: Vec<_> = naming
            .iter()
            .filter(|(_, target, _)| target.starts_with("reef::fs"))
            .collect();
        assert!(
            from_fs.is_empty(),
            "{label}: fs lines naming {b_writer}: {from_fs:?}"
        );
        let errors = naming
            .iter()
            .filter(|(level, _, _)| *level == log::Level::Error)
            .count();
        assert_eq!(errors, 1, "{label}: error lines naming {b_writer}: {naming:?}");

        a.unmount();
        b.unmount();
        let c = Mounted::new(source.open(), "rw");
        assert_eq!(doc_names(&c.join("ns")), vec!["x.json", "y.json"], "{label}");
        assert_eq!(read_text(&c.join("ns/x.json")), r#"{"v":3}"#);
        assert_eq!(read_text(&c.join("ns/y.json")), r#"{"w":1}"#);
        assert_eq!(json(&c.join("ns/.verify"))["healthy"], true, "{label}");
    }
}

/// (a') `reef repair` takes the namespace over from a live mount too.
#[test]
fn reef_repair_fences_a_live_mount() {
    if !fuse_available() {
        return;
    }
    capture_logs();
    for source in sources("repair-fence") {
        let label = source.name();
        let a = Mounted::new(source.open(), "rw");
        std::fs::create_dir(a.join("ns")).unwrap();
        write_close(&a.join("ns/x.json"), r#"{"v":1}"#).expect("A writes x");
        let out = Command::new(env!("CARGO_BIN_EXE_reef"))
            .args(["repair", &source.url(), "ns"])
            .envs(source.env())
            .output()
            .expect("run reef repair");
        assert!(
            out.status.success(),
            "{label}: reef repair: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            errno(write_close(&a.join("ns/x.json"), r#"{"v":2}"#)),
            Some(libc::EROFS),
            "{label}"
        );
        assert_eq!(read_text(&a.join("ns/x.json")), r#"{"v":1}"#);
        a.unmount();
        let c = Mounted::new(source.open(), "rw");
        assert_eq!(read_text(&c.join("ns/x.json")), r#"{"v":1}"#);
    }
}

/// (b) A read-only mount follows the writer mount: new documents, updates,
/// deletes and new namespaces show within the refresh bound; it refuses
/// every change with EROFS and never writes to the store.
#[test]
fn a_read_only_mount_follows_its_writer() {
    if !fuse_available() {
        return;
    }
    for source in sources("follow") {
        let label = source.name();
        let w = Mounted::new(source.open(), "rw");
        std::fs::create_dir(w.join("ns")).unwrap();
        write_close(&w.join("ns/a.json"), r#"{"v":1}"#).unwrap();
        touch(&w.join("ns/.flush")).unwrap();

        let metered = Arc::new(MeteredStore::new(source.open()));
        let f = Mounted::new(metered.clone(), "ro,refresh=100");
        assert_eq!(names(f.path()), vec!["ns"], "{label}");
        assert_eq!(read_text(&f.join("ns/a.json")), r#"{"v":1}"#);
        assert_eq!(doc_names(&f.join("ns")), vec!["a.json"]);

        // A new document and an update (longer, so a stale size would cut it).
        write_close(&w.join("ns/b.json"), r#"{"new":true}"#).unwrap();
        let v2 = r#"{"v":2,"longer":"than before"}"#;
        write_close(&w.join("ns/a.json"), r#"{"v":2,"longer":"than before"}"#).unwrap();
        let (_, took) = wait_for("follower sees b.json and a.json v2", FOLLOW_LIMIT, || {
            let b = std::fs::read_to_string(f.join("ns/b.json")).ok()?;
            let a = std::fs::read_to_string(f.join("ns/a.json")).ok()?;
            (b == r#"{"new":true}"# && a == v2).then_some(())
        });
        eprintln!("{label}: follower caught up after {took:?}");
        assert_eq!(
            std::fs::metadata(f.join("ns/a.json")).unwrap().len(),
            v2.len() as u64
        );
        assert_eq!(doc_names(&f.join("ns")), vec!["a.json", "b.json"]);

        // A delete, and a new namespace in the root listing.
        std::fs::remove_file(w.join("ns/b.json")).unwrap();
        std::fs::create_dir(w.join("ns2")).unwrap();
        write_close(&w.join("ns2/c.json"), r#"{"c":1}"#).unwrap();
        wait_for("follower drops b.json", FOLLOW_LIMIT, || {
            (std::fs::metadata(f.join("ns/b.json")).is_err()
                && doc_names(&f.join("ns")) == ["a.json"])
            .then_some(())
        });
        wait_for("follower lists ns2", FOLLOW_LIMIT, || {
            (names(f.path()) == ["ns", "ns2"]).then_some(())
        });
        assert_eq!(read_text(&f.join("ns2/c.json")), r#"{"c":1}"#);
        std::fs::remove_file(w.join("ns2/c.json")).unwrap();
        std::fs::remove_dir(w.join("ns2")).unwrap();
        wait_for("follower drops ns2", FOLLOW_LIMIT, || {
            (names(f.path()) == ["ns"] && std::fs::metadata(f.join("ns2/c.json")).is_err())
                .then_some(())
        });

        // The writer flushes and compacts away the segments the follower
        // read from; the follower keeps serving (and catches up).
        write_close(&w.join("ns/d.json"), r#"{"d":1}"#).unwrap();
        touch(&w.join("ns/.flush")).unwrap();
        touch(&w.join("ns/.compact")).unwrap();
        assert!(read_text(&w.join("ns/.compact")).contains("\"ok\": true"));
        wait_for("follower sees d.json after compaction", FOLLOW_LIMIT, || {
            std::fs::read_to_string(f.join("ns/d.json"))
                .ok()
                .filter(|d| *d == r#"{"d":1}"#)
        });
        assert_eq!(read_text(&f.join("ns/a.json")), v2);

        // Every change is refused.
        let ro = Some(libc::EROFS);
        assert_eq!(errno(write_close(&f.join("ns/a.json"), "{}")), ro, "{label}");
        assert_eq!(errno(write_close(&f.join("ns/z.json"), "{}")), ro, "{label}");
        assert_eq!(errno(std::fs::remove_file(f.join("ns/a.json"))), ro);
        assert_eq!(errno(std::fs::create_dir(f.join("ns3"))), ro);
        assert_eq!(errno(touch(&f.join("ns/.flush"))), ro);
        assert_eq!(read_text(&f.join("ns/a.json")), v2);

        // ... and nothing was written to the store.
        let m = metered.snapshot();
        assert_eq!((m.put_requests, m.delete_requests), (0, 0), "{label}: {m:?}");
        assert!(m.get_requests > 0 && m.list_requests > 0, "{label}: {m:?}");
        let stats = json(&f.join("ns/.stats"));
        assert_eq!(stats["read_only"], true);
        assert_eq!(stats["store"]["put_requests"], 0, "{label}: {stats}");
        assert_eq!(stats["store"]["delete_requests"], 0, "{label}: {stats}");
        f.unmount();
        let m = metered.snapshot();
        assert_eq!((m.put_requests, m.delete_requests), (0, 0), "{label}: {m:?}");
        w.unmount();
    }
}

/// (b') The same through `reef mount -o ro,refresh=100 -f` in another
/// process: the option reaches the daemon and the follower tracks a writer
/// it shares nothing with but the store.
#[test]
fn a_read_only_reef_mount_process_follows_a_writer() {
    if !fuse_available() {
        return;
    }
    for source in sources("follow-cli") {
        let label = source.name();
        let w = Mounted::new(source.open(), "rw");
        std::fs::create_dir(w.join("ns")).unwrap();
        write_close(&w.join("ns/a.json"), r#"{"v":1}"#).unwrap();
        let f = Daemon::start(&source, "ro,refresh=100");
        assert_eq!(read_text(&f.join("ns/a.json")), r#"{"v":1}"#);
        write_close(&w.join("ns/a.json"), r#"{"v":2}"#).unwrap();
        write_close(&w.join("ns/b.json"), r#"{"b":1}"#).unwrap();
        wait_for("reef mount -o ro follows", FOLLOW_LIMIT, || {
            let a = std::fs::read_to_string(f.join("ns/a.json")).ok()?;
            let b = std::fs::read_to_string(f.join("ns/b.json")).ok()?;
            (a == r#"{"v":2}"# && b == r#"{"b":1}"#).then_some(())
        });
        assert_eq!(
            errno(write_close(&f.join("ns/a.json"), "{}")),
            Some(libc::EROFS),
            "{label}"
        );
        let stats = json(&f.join("ns/.stats"));
        assert_eq!(stats["store"]["put_requests"], 0, "{label}: {stats}");
        assert!(stats["store"]["get_requests"].as_u64() > Some(0), "{stats}");
        drop(f);
        w.unmount();
    }
}

/// (c) The basic file operations through a mount.
#[test]
fn basic_file_operations() {
    if !fuse_available() {
        return;
    }
    for source in sources("basic") {
        let label = source.name();
        let m = Mounted::new(source.open(), "rw");
        std::fs::create_dir(m.join("docs")).unwrap();
        assert_eq!(names(m.path()), vec!["docs"]);
        for i in 0..5 {
            write_close(&m.join(&format!("docs/d{i}.json")), format!(r#"{{"i":{i}}}"#))
                .expect("create");
        }
        assert_eq!(read_text(&m.join("docs/d3.json")), r#"{"i":3}"#, "{label}");
        let out = Command::new("cat")
            .arg(m.join("docs/d1.json"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"i":1}"#);
        write_close(&m.join("docs/d3.json"), r#"{"i":33,"more":[1,2]}"#).expect("overwrite");
        assert_eq!(read_text(&m.join("docs/d3.json")), r#"{"i":33,"more":[1,2]}"#);
        std::fs::remove_file(m.join("docs/d0.json")).expect("rm");
        assert_eq!(
            std::fs::metadata(m.join("docs/d0.json")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        std::fs::rename(m.join("docs/d4.json"), m.join("docs/d5.json")).expect("mv");
        assert_eq!(
            doc_names(&m.join("docs")),
            vec!["d1.json", "d2.json", "d3.json", "d5.json"]
        );
        let ls = Command::new("ls")
            .arg("-l")
            .arg(m.join("docs"))
            .output()
            .unwrap();
        assert!(ls.status.success(), "{label}: ls -l");
        touch(&m.join("docs/.flush")).expect(".flush");
        assert!(read_text(&m.join("docs/.flush")).contains("\"ok\": true"));
        write_close(&m.join("docs/d6.json"), "{}").unwrap();
        touch(&m.join("docs/.flush")).expect(".flush");
        touch(&m.join("docs/.compact")).expect(".compact");
        assert!(read_text(&m.join("docs/.compact")).contains("\"ok\": true"));
        let report = json(&m.join("docs/.verify"));
        assert_eq!(report["healthy"], true, "{label}: {report}");
        assert_eq!(read_text(&m.join("docs/d5.json")), r#"{"i":4}"#);
        m.unmount();

        let m = Mounted::new(source.open(), "rw");
        assert_eq!(
            doc_names(&m.join("docs")),
            vec!["d1.json", "d2.json", "d3.json", "d5.json", "d6.json"],
            "{label}"
        );
        assert_eq!(read_text(&m.join("docs/d3.json")), r#"{"i":33,"more":[1,2]}"#);
        // rm -r of the namespace, then it is gone.
        for n in doc_names(&m.join("docs")) {
            std::fs::remove_file(m.join("docs").join(n)).unwrap();
        }
        std::fs::remove_dir(m.join("docs")).expect("rmdir");
        assert!(names(m.path()).is_empty(), "{label}");
    }
}

/// GETs counted by the mount, as `.stats` of `ns` shows them.
fn stats_gets(m: &Mounted, ns: &str) -> u64 {
    let stats = json(&m.join(&format!("{ns}/.stats")));
    stats["store"]["get_requests"].as_u64().expect("get_requests")
}

/// (d) `.stats` counts the mount's object-store requests; reading a file
/// a second time costs no GET.
#[test]
fn stats_count_store_requests_and_cached_reads_cost_none() {
    if !fuse_available() {
        return;
    }
    for source in sources("stats") {
        let label = source.name();
        let m = Mounted::new(source.open(), "rw");
        std::fs::create_dir(m.join("ns")).unwrap();
        for i in 0..20 {
            write_close(&m.join(&format!("ns/d{i}.json")), format!(r#"{{"i":{i}}}"#)).unwrap();
        }
        touch(&m.join("ns/.flush")).unwrap();
        m.unmount();

        // A fresh mount: the documents are in a segment, no cache is warm.
        let m = Mounted::new(source.open(), "rw");
        let stats = json(&m.join("ns/.stats"));
        let store = &stats["store"];
        for key in ["get_requests", "put_requests", "list_requests", "get_bytes"] {
            assert!(store[key].as_u64() > Some(0), "{label}: {key}: {stats}");
        }
        assert!(store["conditional_puts"].as_u64() > Some(0), "{stats}");
        assert!(stats.get("disk_cache").is_none());

        let before = stats_gets(&m, "ns");
        assert_eq!(read_text(&m.join("ns/d7.json")), r#"{"i":7}"#);
        let first = stats_gets(&m, "ns") - before;
        assert!(first > 0, "{label}: a cold read costs GETs");
        let before = stats_gets(&m, "ns");
        assert_eq!(read_text(&m.join("ns/d7.json")), r#"{"i":7}"#);
        let out = Command::new("cat").arg(m.join("ns/d7.json")).output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            stats_gets(&m, "ns"),
            before,
            "{label}: cached reads cost no GET"
        );
        // The core reports the same counts.
        assert_eq!(m.handle().core().store_metrics().get_requests, before);
        m.unmount();
    }
}

/// (d') With `-o cache=DIR`, `.stats` shows the disk cache, and a restart
/// reads segments from it instead of the store.
#[test]
fn stats_show_the_disk_cache() {
    if !fuse_available() {
        return;
    }
    for source in sources("stats-cache") {
        let label = source.name();
        let cache = tempfile::tempdir().unwrap();
        let opts = format!("rw,cache={}", cache.path().display());
        let m = Mounted::new(source.open(), &opts);
        std::fs::create_dir(m.join("ns")).unwrap();
        write_close(&m.join("ns/x.json"), r#"{"x":1}"#).unwrap();
        touch(&m.join("ns/.flush")).unwrap();
        m.unmount();

        let m = Mounted::new(source.open(), &opts);
        assert_eq!(read_text(&m.join("ns/x.json")), r#"{"x":1}"#);
        let stats = json(&m.join("ns/.stats"));
        let misses = stats["disk_cache"]["misses"].as_u64().expect("misses");
        assert!(misses > 0, "{label}: {stats}");
        m.unmount();

        let m = Mounted::new(source.open(), &opts);
        let before = stats_gets(&m, "ns");
        assert_eq!(read_text(&m.join("ns/x.json")), r#"{"x":1}"#);
        let stats = json(&m.join("ns/.stats"));
        assert!(
            stats["disk_cache"]["hits"].as_u64() > Some(0),
            "{label}: {stats}"
        );
        assert_eq!(
            stats["store"]["get_requests"].as_u64(),
            Some(before),
            "{label}: segment reads came from the disk cache: {stats}"
        );
        m.unmount();
    }
}

/// A follower whose writer compacted away the segments its manifest names
/// still reads (it refreshes and retries), even with no refresh task.
#[test]
fn a_follower_core_survives_its_writer_compacting() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for source in sources("follow-compact") {
        let label = source.name();
        rt.block_on(async {
            // Documents bigger than a block (512 bytes at least), so
            // reading `a` caches nothing of `b`.
            // No retention: the compaction's GC deletes the replaced segments.
            let opts = EngineOptions {
                block_bytes: 512,
                retain: Duration::ZERO,
                ..EngineOptions::default()
            };
            let writer = Engine::open(source.open(), "ns", opts).await.unwrap();
            let pad = "p".repeat(600);
            let doc_json = |k: &str| format!(r#"{{"{k}":1,"pad":"{pad}"}}"#);
            let put = |id: &str| {
                let json = doc_json(id);
                let doc = Document::from_json_bytes(&DocId::from(id), json.as_bytes()).unwrap();
                WriteBatch::new().upsert(doc)
            };
            writer.write(put("a")).await.unwrap();
            writer.write(put("b")).await.unwrap();
            writer.flush().await.unwrap();

            let cfg = CoreConfig {
                read_only: true,
                refresh: None,
                ..CoreConfig::default()
            };
            let follower = FsCore::new(source.open(), cfg);
            let ns = follower.lookup(ROOT_INO, "ns").await.unwrap().ino;
            let read_doc = |name: &'static str| {
                let follower = follower.clone();
                async move {
                    let ino = follower.lookup(ns, name).await?.ino;
                    let info = follower.open(ino, OpenMode::read_only()).await?;
                    let data = follower.read(info.fh, 0, 1 << 20).await;
                    follower.release(info.fh).await?;
                    follower.forget(ino, 1);
                    data
                }
            };
            assert_eq!(
                read_doc("a.json").await.unwrap(),
                canonical("a", &doc_json("a")).into_bytes()
            );

            // Two more segments, compacted into one: the follower's
            // segment is deleted.
            writer.write(put("c")).await.unwrap();
            writer.flush().await.unwrap();
            writer.compact().await.unwrap();
            assert_eq!(writer.manifest_snapshot().await.unwrap().segments.len(), 1);

            // `b` was never read here: its block must come from the store,
            // from a segment that is gone. The follower refreshes and
            // retries (and so also sees `c`).
            assert_eq!(
                read_doc("b.json").await.expect(label),
                canonical("b", &doc_json("b")).into_bytes()
            );
            assert_eq!(
                read_doc("c.json").await.expect(label),
                canonical("c", &doc_json("c")).into_bytes()
            );
            let m = follower.store_metrics();
            assert_eq!((m.put_requests, m.delete_requests), (0, 0), "{label}: {m:?}");
        });
    }
}
