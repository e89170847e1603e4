//! `-o metrics=ADDR:PORT`: Prometheus text on `/metrics`, scraped over TCP
//! from a real mount through /dev/fuse while files are written, flushed,
//! compacted, garbage-collected, read, and the namespace is taken over by
//! another writer.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use reef::engine::{Engine, EngineOptions};
use reef::fs::mount_at;
use reef::store::{LocalFsStore, ObjectStore};

#[path = "support/mounted.rs"]
mod mounted;
#[path = "support/poll.rs"]
mod poll;
use mounted::{fuse_available, write_close, Mounted};
use poll::wait_until;

const REEF: &str = env!("CARGO_BIN_EXE_reef");

/// One scrape: (status line, content type, series -> value).
struct Scrape {
    series: BTreeMap<String, f64>,
    body: String,
}

fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head.lines().next().unwrap_or("").to_string();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string();
    (status, content_type, body.to_string())
}

fn scrape(addr: SocketAddr) -> Scrape {
    let (status, content_type, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let mut series = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        series.insert(name.to_string(), value);
    }
    Scrape { series, body }
}

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        match self.series.get(series) {
            Some(v) => *v,
            None => panic!("no series {series} in:\n{}", self.body),
        }
    }

    fn has_family(&self, family: &str, kind: &str) -> bool {
        self.body.contains(&format!("# TYPE {family} {kind}\n"))
    }
}

fn ns(series: &str) -> String {
    format!("{series}{{namespace=\"articles\"}}")
}

#[test]
fn scrape_during_a_real_mount_moves_as_files_are_written() {
    if !fuse_available() {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFsStore::new(data.path().to_path_buf()).expect("store"));
    // retain=0: a flush's automatic GC pass deletes the WAL it covered.
    let m = Mounted::new(store.clone(), "rw,retain=0,metrics=127.0.0.1:0");
    let addr = m.handle().metrics_addr().expect("metrics are served");
    assert!(addr.ip().is_loopback());

    std::fs::create_dir(m.join("articles")).expect("mkdir");
    write_close(&m.join("articles/first.json"), r#"{"n":0}"#).expect("write");
    let a = scrape(addr);
    for (family, kind) in [
        ("reef_fuse_request_duration_seconds", "histogram"),
        ("reef_store_request_duration_seconds", "histogram"),
        ("reef_store_request_errors_total", "counter"),
        ("reef_store_bytes_total", "counter"),
        ("reef_commits_total", "counter"),
        ("reef_commit_group_documents", "histogram"),
        ("reef_documents_written_total", "counter"),
        ("reef_memtable_bytes", "gauge"),
        ("reef_unflushed_wal_objects", "gauge"),
        ("reef_flushes_total", "counter"),
        ("reef_compactions_total", "counter"),
        ("reef_cache_hits_total", "counter"),
        ("reef_cache_misses_total", "counter"),
        ("reef_compaction_bytes_written_total", "counter"),
        ("reef_gc_passes_total", "counter"),
        ("reef_gc_failures_total", "counter"),
        ("reef_gc_deleted_objects_total", "counter"),
        ("reef_gc_deleted_bytes_total", "counter"),
        ("reef_fenced", "gauge"),
    ] {
        assert!(a.has_family(family, kind), "no {kind} {family} in:\n{}", a.body);
    }
    assert_eq!(a.get("reef_namespaces_open"), 1.0);
    assert_eq!(a.get(&ns("reef_fenced")), 0.0);

    for i in 0..20 {
        let path = m.join(&format!("articles/doc{i}.json"));
        write_close(&path, format!(r#"{{"n":{i},"text":"some words"}}"#)).expect("write");
    }
    // A FUSE request is timed once its reply is sent, so the last close's
    // FLUSH may be recorded just after close returned here.
    let flushes = "reef_fuse_request_duration_seconds_count{op=\"flush\"}";
    let mut b = scrape(addr);
    wait_until("the last FLUSH to be recorded", Duration::from_secs(10), || {
        b = scrape(addr);
        b.get(flushes) >= a.get(flushes) + 20.0
    });
    let grew = |series: &str, by: f64| {
        let (before, after) = (a.get(series), b.get(series));
        assert!(
            after >= before + by,
            "{series}: {before} -> {after}, expected +{by}"
        );
    };
    grew("reef_fuse_request_duration_seconds_count{op=\"create\"}", 20.0);
    grew("reef_fuse_request_duration_seconds_count{op=\"flush\"}", 20.0);
    grew(
        "reef_fuse_request_duration_seconds_sum{op=\"flush\"}",
        f64::MIN_POSITIVE,
    );
    grew(
        "reef_fuse_request_duration_seconds_bucket{op=\"flush\",le=\"+Inf\"}",
        20.0,
    );
    grew(
        "reef_store_request_duration_seconds_count{kind=\"put_if_absent\"}",
        20.0,
    );
    grew("reef_store_bytes_total{direction=\"put\"}", 20.0 * 20.0);
    grew(&ns("reef_commits_total"), 20.0);
    grew(&ns("reef_documents_written_total"), 20.0);
    grew(
        "reef_commit_group_documents_count{namespace=\"articles\"}",
        20.0,
    );
    grew("reef_commit_group_documents_sum{namespace=\"articles\"}", 20.0);
    grew(&ns("reef_memtable_bytes"), 20.0 * 20.0);
    grew(&ns("reef_unflushed_wal_objects"), 20.0);
    assert_eq!(
        b.get(&ns("reef_flushes_total")),
        a.get(&ns("reef_flushes_total"))
    );

    // A flush indexes the WAL into a segment: the memtable empties.
    write_close(&m.join("articles/.flush"), "").expect("flush");
    let c = scrape(addr);
    assert_eq!(
        c.get(&ns("reef_flushes_total")),
        b.get(&ns("reef_flushes_total")) + 1.0
    );
    assert_eq!(c.get(&ns("reef_unflushed_wal_objects")), 0.0);
    assert_eq!(c.get(&ns("reef_memtable_bytes")), 0.0);
    assert!(c.get(&ns("reef_segments")) >= 1.0);
    assert!(
        c.get("reef_store_request_duration_seconds_count{kind=\"put\"}")
            > b.get("reef_store_request_duration_seconds_count{kind=\"put\"}"),
        "a segment upload is a put"
    );
    // The flush's GC pass deleted the 21 WAL objects the segment covers.
    let gc_wal = |s: &Scrape, what: &str| {
        s.get(&format!(
            "reef_gc_deleted_{what}_total{{kind=\"wal\",namespace=\"articles\"}}"
        ))
    };
    assert_eq!(
        c.get(&ns("reef_gc_passes_total")),
        b.get(&ns("reef_gc_passes_total")) + 1.0
    );
    assert!(gc_wal(&c, "objects") >= gc_wal(&b, "objects") + 21.0);
    assert!(gc_wal(&c, "bytes") > gc_wal(&b, "bytes") + 20.0 * 20.0);
    assert!(
        c.get("reef_store_request_duration_seconds_count{kind=\"delete_many\"}")
            > b.get("reef_store_request_duration_seconds_count{kind=\"delete_many\"}"),
        "GC deletes in bulk"
    );
    assert_eq!(c.get(&ns("reef_gc_failures_total")), 0.0);

    // A second segment, then a requested compaction merges both; its GC
    // pass deletes the replaced segments and the older manifests. `.gc`
    // runs one more pass.
    write_close(&m.join("articles/extra.json"), r#"{"n":0,"text":"new words"}"#).expect("write");
    write_close(&m.join("articles/.flush"), "").expect("flush");
    write_close(&m.join("articles/.compact"), "").expect("compact");
    let g = scrape(addr);
    assert_eq!(
        g.get(&ns("reef_compactions_total")),
        c.get(&ns("reef_compactions_total")) + 1.0
    );
    assert!(g.get(&ns("reef_compaction_bytes_written_total")) > 0.0);
    let deleted = |s: &Scrape, kind: &str| {
        s.get(&format!(
            "reef_gc_deleted_objects_total{{kind=\"{kind}\",namespace=\"articles\"}}"
        ))
    };
    assert!(deleted(&g, "replaced_segment") >= deleted(&c, "replaced_segment") + 2.0);
    assert!(deleted(&g, "manifest") > deleted(&c, "manifest"));
    write_close(&m.join("articles/.gc"), "").expect("gc");
    let c = scrape(addr);
    assert_eq!(
        c.get(&ns("reef_gc_passes_total")),
        g.get(&ns("reef_gc_passes_total")) + 1.0
    );
    // The documents read below come from the compacted segment.
    let text = std::fs::read_to_string(m.join("articles/extra.json")).expect("read");
    assert!(text.contains("new words"));

    // Documents never read through the daemon yet now come from the
    // segment, through its cache. The kernel still holds the pages their
    // writes left (a commit keeps them): drop those first.
    for i in 0..20 {
        drop_kernel_pages(&m.join(&format!("articles/doc{i}.json")));
        let text = std::fs::read_to_string(m.join(&format!("articles/doc{i}.json"))).expect("read");
        assert!(text.contains("some words"));
    }
    let d = scrape(addr);
    let cache = |s: &Scrape| {
        s.get("reef_cache_hits_total{cache=\"segment\",namespace=\"articles\"}")
            + s.get("reef_cache_misses_total{cache=\"segment\",namespace=\"articles\"}")
    };
    assert!(
        cache(&d) > cache(&c),
        "segment cache lookups: {} -> {}",
        cache(&c),
        cache(&d)
    );
    assert!(
        d.get("reef_fuse_request_duration_seconds_count{op=\"read\"}")
            >= c.get("reef_fuse_request_duration_seconds_count{op=\"read\"}") + 20.0
    );

    // Another writer takes the namespace over: the mount's next commit
    // loses the WAL race and the namespace shows as fenced.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let other = rt
        .block_on(Engine::open(
            store.clone(),
            "articles",
            EngineOptions::default(),
        ))
        .expect("second writer");
    assert!(write_close(&m.join("articles/late.json"), r#"{"n":99}"#).is_err());
    let e = scrape(addr);
    assert_eq!(e.get(&ns("reef_fenced")), 1.0);
    assert!(
        e.get("reef_store_request_errors_total{kind=\"put_if_absent\"}")
            > d.get("reef_store_request_errors_total{kind=\"put_if_absent\"}"),
        "the lost create-if-absent WAL put counts as an error"
    );
    drop(other);

    let (status, _, _) = http_get(addr, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    m.unmount();
    // The endpoint goes away with the mount.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
}

#[test]
fn a_bad_or_busy_metrics_address_fails_the_mount_and_mounts_nothing() {
    let err = reef::fs::MountOptions::parse_o("rw,metrics=nonsense").unwrap_err();
    assert!(err.to_string().contains("metrics=nonsense"), "{err}");
    if !fuse_available() {
        return;
    }
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let mnt = tempfile::tempdir().expect("tempdir");
    let opts = reef::fs::MountOptions::parse_o(&format!("metrics={port}")).expect("options");
    let store: Arc<dyn ObjectStore> = Arc::new(reef::store::MemoryStore::new());
    let err = match reef::fs::mount(store, mnt.path(), &opts) {
        Ok(_) => panic!("mounted although port {port} is taken"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&format!("cannot serve metrics on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        mount_at(mnt.path()).is_none(),
        "a failed mount left a mount behind"
    );
}

/// A detached `reef mount` daemon; unmounted (lazily) on drop.
struct Daemon {
    mnt: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if mount_at(self.mnt.path()).is_some() {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(self.mnt.path())
                .status();
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn reef_mount_serves_metrics_and_refuses_a_bad_address() {
    if !fuse_available() {
        return;
    }
    let d = Daemon {
        mnt: tempfile::tempdir().expect("tempdir"),
        _data: tempfile::tempdir().expect("tempdir"),
    };
    let log = d._data.path().join("daemon.log");
    let out = Command::new(REEF)
        .arg("mount")
        .arg(d._data.path())
        .arg(d.mnt.path())
        .args(["--metrics", "definitely not an address"])
        .output()
        .expect("run reef");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("metrics=definitely not an address"), "{stderr}");
    assert!(mount_at(d.mnt.path()).is_none());

    let port = free_port();
    let out = Command::new(REEF)
        .arg("mount")
        .arg(d._data.path())
        .arg(d.mnt.path())
        .arg("-o")
        .arg(format!("metrics={port},log_file={}", log.display()))
        .output()
        .expect("run reef");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    std::fs::create_dir(d.mnt.path().join("ns")).expect("mkdir");
    write_close(&d.mnt.path().join("ns/a.json"), r#"{"a":1}"#).expect("write");
    let s = scrape(addr);
    assert!(
        s.get("reef_commits_total{namespace=\"ns\"}") >= 1.0,
        "{}",
        s.body
    );
    assert!(s.get("reef_fuse_request_duration_seconds_count{op=\"mkdir\"}") >= 1.0);

    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(d.mnt.path())
        .status()
        .expect("umount");
    assert!(status.success());
    wait_until("the daemon to stop serving", Duration::from_secs(20), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
    });
}

/// Drops the kernel's cached pages of `path`, so its next read reaches the
/// daemon.
fn drop_kernel_pages(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).expect("open");
    // SAFETY: a plain syscall on a descriptor `file` owns for the call.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise");
}
