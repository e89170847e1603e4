//! The mount's fast paths through /dev/fuse: concurrent closes share WAL
//! objects (group commit), a committed write keeps the kernel's page cache
//! only while it can hold nothing but what is stored, and no cached answer
//! outlives a change made through another path, name or mount.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use reef::engine::wal::PIPELINE_DEPTH;
use reef::store::{LocalFsStore, MemoryStore, ObjectStore};

#[path = "support/hooked_store.rs"]
mod hooked_store;
#[path = "support/mounted.rs"]
mod mounted;
#[path = "support/poll.rs"]
mod poll;
use hooked_store::{HookedStore, PutGate};
use mounted::{fuse_available, read_text, write_close, Mounted};
use poll::wait_until;

const DEADLINE: Duration = Duration::from_secs(20);

fn local_store(dir: &Path) -> Arc<dyn ObjectStore> {
    Arc::new(LocalFsStore::new(dir.to_path_buf()).expect("local store"))
}

/// A number from a namespace's `.stats`.
fn stat(m: &Mounted, ns: &str, field: &str) -> u64 {
    let text = read_text(&m.join(&format!("{ns}/.stats")));
    let json: serde_json::Value = serde_json::from_str(&text).expect(".stats is JSON");
    json[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in .stats: {text}"))
}

/// N files closed at once while WAL puts are stuck in the store share WAL
/// objects: the engine keeps at most `PIPELINE_DEPTH` puts in flight, and
/// every close that arrives while they are full queues for the next group.
#[test]
fn concurrent_closes_share_wal_objects() {
    if !fuse_available() {
        return;
    }
    let gated = HookedStore::new(Arc::new(MemoryStore::new()), PutGate::new("g/wal/"));
    let store: Arc<dyn ObjectStore> = gated.clone();
    let m = Mounted::new(store, "");
    std::fs::create_dir(m.join("g")).unwrap();
    write_close(&m.join("g/first.json"), "{}").unwrap();
    let (wal0, calls0, docs0) = (
        stat(&m, "g", "wal_objects_written"),
        stat(&m, "g", "write_calls"),
        stat(&m, "g", "docs_written"),
    );
    gated.hooks.gate.hold_all();

    // More closes than the pipeline holds puts, so grouping must show.
    const N: usize = 4 * PIPELINE_DEPTH as usize;
    // Every writer opens and writes; writer 0 closes first and its commit
    // sticks in the store; then the others close together.
    let opened = Arc::new(Barrier::new(N + 1));
    let (close_tx, close_rx) = (0..N)
        .map(|_| mpsc::channel::<()>())
        .unzip::<_, _, Vec<_>, Vec<_>>();
    let writers: Vec<_> = close_rx
        .into_iter()
        .enumerate()
        .map(|(k, go)| {
            let path = m.join(&format!("g/d{k}.json"));
            let opened = opened.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::File::create(&path)?;
                f.write_all(format!(r#"{{"k":{k}}}"#).as_bytes())?;
                opened.wait();
                go.recv().expect("told to close");
                let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
                // SAFETY: fd was just released by `f` and is closed once.
                if unsafe { libc::close(fd) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        })
        .collect();
    opened.wait();
    close_tx[0].send(()).unwrap();
    let key = gated
        .hooks
        .gate
        .held_within(DEADLINE)
        .expect("the first commit reached the store");
    assert!(key.contains("g/wal/"), "{key}");
    for tx in &close_tx[1..] {
        tx.send(()).unwrap();
    }
    // All N writes are queued in the engine (the first inside the store).
    wait_until("every close to reach the engine", DEADLINE, || {
        stat(&m, "g", "write_calls") == calls0 + N as u64
    });
    gated.hooks.gate.open_for_good();
    for w in writers {
        w.join().expect("writer thread").expect("close succeeded");
    }
    let wal = stat(&m, "g", "wal_objects_written") - wal0;
    // At most PIPELINE_DEPTH groups stuck at the gate, then the closes
    // queued behind them in a few more groups (a close counted but a moment
    // from queueing when the gate opened may take one of its own); without
    // group commit it would be N.
    let bound = PIPELINE_DEPTH + 4;
    assert!(
        (2..=bound).contains(&wal),
        "{N} closes took {wal} WAL objects (at most {bound} expected)"
    );
    assert_eq!(stat(&m, "g", "docs_written") - docs0, N as u64);
    for k in 0..N {
        assert_eq!(
            read_text(&m.join(&format!("g/d{k}.json"))),
            format!(r#"{{"k":{k}}}"#)
        );
    }
}

/// `op` → request count, from the mount's `/metrics`.
fn fuse_requests(addr: SocketAddr) -> BTreeMap<String, u64> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("response");
    let prefix = "reef_fuse_request_duration_seconds_count{op=\"";
    raw.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| {
            let (op, rest) = l.split_once("\"} ")?;
            Some((op.to_string(), rest.trim().parse().ok()?))
        })
        .collect()
}

fn reads_since(addr: SocketAddr, before: &BTreeMap<String, u64>) -> u64 {
    let now = fuse_requests(addr);
    now.get("read").copied().unwrap_or(0) - before.get("read").copied().unwrap_or(0)
}

/// Whether READs reach the daemon after `before`: a request is counted
/// once its reply is sent, so the count may trail the `read` that caused
/// it; poll it, up to a deadline.
fn reads_arrive_since(addr: SocketAddr, before: &BTreeMap<String, u64>) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while reads_since(addr, before) == 0 {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// A document exactly two pages long, `fill` repeated in its body.
fn two_pages(fill: char) -> String {
    let head = r#"{"body":""#;
    let tail = r#""}"#;
    let body: String = std::iter::repeat_n(fill, 8192 - head.len() - tail.len()).collect();
    format!("{head}{body}{tail}")
}

/// What `cat` right after writing costs: the pages the write left in the
/// kernel's cache are still there (no READ reaches the daemon), until the
/// file is changed through another handle.
#[test]
fn a_committed_write_keeps_the_page_cache_it_matches() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = Mounted::new(local_store(dir.path()), "metrics=127.0.0.1:0");
    let addr = m.handle().metrics_addr().expect("metrics address");
    std::fs::create_dir(m.join("p")).unwrap();
    let a = m.join("p/a.json");
    let v1 = two_pages('x');
    write_close(&a, &v1).unwrap();
    let before = fuse_requests(addr);
    assert_eq!(read_text(&a), v1);
    assert_eq!(reads_since(addr, &before), 0, "the written pages were dropped");

    // Changed in place through a handle that did not truncate: the pages
    // no longer match anything stored until the commit; then they go.
    let f = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
    f.write_all_at(b"yy", 10).unwrap();
    drop(f);
    let mut v2 = v1.clone();
    v2.replace_range(10..12, "yy");
    let before = fuse_requests(addr);
    assert_eq!(read_text(&a), v2);
    assert!(
        reads_arrive_since(addr, &before),
        "kept pages of an in-place edit"
    );
    assert_eq!(read_text(&a), v2);
}

/// A write that ends inside a page leaves that page not up to date in
/// the kernel; the commit hands it the page, so `cat` right after writing
/// a small document sends no READ either, and a rewrite of it to a shorter
/// document reads back exactly the new bytes.
#[test]
fn a_small_document_reads_back_from_the_kernel_right_after_its_close() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = Mounted::new(local_store(dir.path()), "metrics=127.0.0.1:0");
    let addr = m.handle().metrics_addr().expect("metrics address");
    std::fs::create_dir(m.join("s")).unwrap();
    let a = m.join("s/a.json");
    let v1 = format!("{{\"body\": \"{}\"}}", "x".repeat(4100));
    write_close(&a, &v1).unwrap();
    let before = fuse_requests(addr);
    assert_eq!(read_text(&a), v1);
    assert_eq!(
        reads_since(addr, &before),
        0,
        "the last page was read from the daemon"
    );
    let v2 = r#"{"short": 1}"#;
    write_close(&a, v2).unwrap();
    let before = fuse_requests(addr);
    assert_eq!(read_text(&a), v2);
    assert_eq!(
        reads_since(addr, &before),
        0,
        "the rewritten page was read from the daemon"
    );
    m.unmount();
    let m = Mounted::new(local_store(dir.path()), "");
    assert_eq!(read_text(&m.join("s/a.json")), v2);
}

/// A reader that puts stored bytes into the cache while a writer rewrites
/// the file: the writer's commit must drop them, not keep them.
#[test]
fn pages_read_during_a_rewrite_do_not_outlive_its_commit() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = Mounted::new(local_store(dir.path()), "");
    std::fs::create_dir(m.join("r")).unwrap();
    let a = m.join("r/a.json");
    let old = r#"{"v":"old-old-old"}"#;
    let new = r#"{"v":"new-new-new"}"#;
    write_close(&a, old).unwrap();
    let mut reader = std::fs::File::open(&a).unwrap();
    let mut writer = std::fs::File::create(&a).unwrap();
    writer.write_all(new.as_bytes()).unwrap();
    // The reader's handle shows the document as of its first read (the
    // stored one); the kernel caches what it got.
    let mut seen = String::new();
    reader.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, old);
    drop(reader);
    let fd = std::os::fd::IntoRawFd::into_raw_fd(writer);
    // SAFETY: fd was just released by `writer` and is closed once.
    assert_eq!(unsafe { libc::close(fd) }, 0);
    assert_eq!(read_text(&a), new);
}

/// Rename, delete, recreate and rewrite through one path; every other
/// path and a follower mount of the same store see each change.
#[test]
fn no_cached_answer_outlives_a_change() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let m = Mounted::new(store.clone(), "");
    std::fs::create_dir(m.join("c")).unwrap();
    let (a, b) = (m.join("c/a.json"), m.join("c/b.json"));
    write_close(&a, r#"{"v":1}"#).unwrap();
    assert_eq!(read_text(&a), r#"{"v":1}"#);
    // Same length, other bytes: only the content can tell them apart.
    write_close(&a, r#"{"v":2}"#).unwrap();
    assert_eq!(read_text(&a), r#"{"v":2}"#);

    std::fs::rename(&a, &b).unwrap();
    assert_eq!(read_text(&b), r#"{"v":2}"#);
    assert_eq!(
        std::fs::metadata(&a).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    write_close(&a, r#"{"v":3}"#).unwrap();
    assert_eq!(read_text(&a), r#"{"v":3}"#);
    assert_eq!(read_text(&b), r#"{"v":2}"#);

    std::fs::remove_file(&b).unwrap();
    assert_eq!(
        std::fs::metadata(&b).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    write_close(&b, r#"{"v":44}"#).unwrap();
    assert_eq!(std::fs::metadata(&b).unwrap().len(), 8);
    assert_eq!(read_text(&b), r#"{"v":44}"#);

    // A follower of the same store picks each change up, cache and all.
    let f = Mounted::new(store, "ro,refresh=50");
    let fa = f.join("c/a.json");
    wait_until("the follower to show a.json", DEADLINE, || {
        std::fs::read_to_string(&fa).ok().as_deref() == Some(r#"{"v":3}"#)
    });
    write_close(&a, r#"{"v":5}"#).unwrap();
    wait_until("the follower to show the rewrite", DEADLINE, || {
        std::fs::read_to_string(&fa).ok().as_deref() == Some(r#"{"v":5}"#)
    });
    std::fs::remove_file(&a).unwrap();
    wait_until("the follower to show the delete", DEADLINE, || {
        std::fs::metadata(&fa).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    });
}

/// What `stat` shows right after a close is what is stored (as a fresh
/// mount sees it), whether the kernel last got the file's attributes
/// before its write (a commit then sends no invalidation: the write made
/// the kernel drop them, and the `stat` has to ask) or between the write
/// and the close (an `fstat`: the commit has to drop what that cached).
#[test]
fn attributes_after_a_commit_are_the_stored_ones() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let m = Mounted::new(store.clone(), "metrics=127.0.0.1:0");
    let addr = m.handle().metrics_addr().expect("metrics address");
    std::fs::create_dir(m.join("t")).unwrap();
    let (one, two) = (m.join("t/one.json"), m.join("t/two.json"));

    write_close(&one, r#"{"v":1}"#).unwrap();
    let getattrs = |before: &BTreeMap<String, u64>| {
        fuse_requests(addr).get("getattr").copied().unwrap_or(0)
            - before.get("getattr").copied().unwrap_or(0)
    };
    let before = fuse_requests(addr);
    let seen_one = std::fs::metadata(&one).unwrap();
    assert!(
        getattrs(&before) >= 1,
        "the kernel kept attributes from before its write: nothing would refresh them"
    );

    let mut f = std::fs::File::create(&two).unwrap();
    f.write_all(br#"{"v":22}"#).unwrap();
    let mid = f.metadata().unwrap().modified().unwrap();
    // The commit's time must differ from the one the fstat cached, or a
    // stale answer could not be told apart.
    wait_until("the clock to pass the cached mtime", DEADLINE, || {
        std::time::SystemTime::now() > mid + Duration::from_millis(5)
    });
    drop(f);
    let seen_two = std::fs::metadata(&two).unwrap();

    m.unmount();
    let fresh = Mounted::new(store, "");
    for (seen, name) in [(seen_one, "t/one.json"), (seen_two, "t/two.json")] {
        let stored = std::fs::metadata(fresh.join(name)).unwrap();
        assert_eq!(seen.len(), stored.len(), "{name}: size");
        assert_eq!(
            seen.modified().unwrap(),
            stored.modified().unwrap(),
            "{name}: mtime after the close is not the stored one"
        );
    }
    let stored_two = std::fs::metadata(fresh.join("t/two.json")).unwrap();
    assert_ne!(
        stored_two.modified().unwrap(),
        mid,
        "the commit kept the pre-commit time"
    );
}

/// Names and whether each is a directory (from `d_type`), sorted; each
/// name is `stat`ed as it is read, as `ls -l` does.
fn listing(dir: &Path) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| {
            let e = e.expect("entry");
            let is_dir = e.file_type().expect("d_type").is_dir();
            let meta = std::fs::symlink_metadata(e.path()).expect("stat");
            assert_eq!(meta.is_dir(), is_dir, "{:?}", e.path());
            (e.file_name().to_string_lossy().into_owned(), is_dir)
        })
        .collect();
    out.sort();
    out
}

fn names(entries: &[(&str, bool)]) -> Vec<(String, bool)> {
    entries.iter().map(|(n, d)| (n.to_string(), *d)).collect()
}

/// Request counts once every listing so far has been released and counted
/// (a request is counted just after its reply, so counts may trail).
fn settled_requests(addr: SocketAddr) -> BTreeMap<String, u64> {
    let mut last = fuse_requests(addr);
    let get = |c: &BTreeMap<String, u64>, op: &str| c.get(op).copied().unwrap_or(0);
    wait_until("the listings' requests to be counted", DEADLINE, || {
        let now = fuse_requests(addr);
        let settled = now == last && get(&now, "opendir") == get(&now, "releasedir");
        last = now;
        settled
    });
    last
}

fn listing_requests(addr: SocketAddr, before: &BTreeMap<String, u64>) -> u64 {
    let now = settled_requests(addr);
    let get = |c: &BTreeMap<String, u64>, op: &str| c.get(op).copied().unwrap_or(0);
    get(&now, "readdir") + get(&now, "readdirplus")
        - get(before, "readdir")
        - get(before, "readdirplus")
}

/// The kernel keeps a listing it read to the end (`FOPEN_CACHE_DIR`): the
/// next listing of the unchanged directory sends no readdir, with the same
/// names and types — unless a page of it came without attributes (a plain
/// readdir, as `find` gets), since the kernel would then have to look each
/// name up again for `ls -l`. Changes the kernel does not see itself show in the
/// next listing: a directory that existed through the last document below
/// it goes with it (the kernel saw an unlink two levels down), and a
/// follower lists what its writer added.
#[test]
fn a_kept_listing_never_outlives_a_change() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    {
        let m = Mounted::new(store.clone(), "");
        std::fs::create_dir_all(m.join("k/sub/deep")).unwrap();
        write_close(&m.join("k/a.json"), r#"{"v":1}"#).unwrap();
        write_close(&m.join("k/sub/deep/x.json"), r#"{"v":2}"#).unwrap();
    }
    // Mounted again: `sub` and `sub/deep` exist only through x.json.
    let m = Mounted::new(store.clone(), "metrics=127.0.0.1:0");
    let addr = m.handle().metrics_addr().expect("metrics address");
    let k = m.join("k");
    let full = names(&[("a.json", false), ("sub", true)]);
    // Names only (no stat between pages): the kernel asks for the last
    // page without attributes, so that listing is not kept.
    let names_only = |d: &Path| -> usize { std::fs::read_dir(d).unwrap().count() };
    assert_eq!(names_only(&k), 2);
    let before = settled_requests(addr);
    assert_eq!(listing(&k), full);
    assert!(
        listing_requests(addr, &before) > 0,
        "a listing without attributes was kept"
    );
    let before = settled_requests(addr);
    assert_eq!(listing(&k), full);
    assert_eq!(
        listing_requests(addr, &before),
        0,
        "an unchanged listing was asked for again"
    );

    std::fs::remove_file(m.join("k/sub/deep/x.json")).unwrap();
    assert_eq!(listing(&k), names(&[("a.json", false)]));
    assert_eq!(listing(&k), names(&[("a.json", false)]));
    write_close(&m.join("k/b.json"), r#"{"v":3}"#).unwrap();
    let two = names(&[("a.json", false), ("b.json", false)]);
    assert_eq!(listing(&k), two);

    let f = Mounted::new(store, "ro,refresh=50");
    let fk = f.join("k");
    assert_eq!(listing(&fk), two);
    assert_eq!(listing(&fk), two);
    write_close(&m.join("k/c.json"), r#"{"v":4}"#).unwrap();
    std::fs::create_dir(m.join("k/d")).unwrap();
    write_close(&m.join("k/d/e.json"), r#"{"v":5}"#).unwrap();
    let four = names(&[
        ("a.json", false),
        ("b.json", false),
        ("c.json", false),
        ("d", true),
    ]);
    wait_until("the follower to list what its writer added", DEADLINE, || {
        listing(&fk) == four
    });
    assert_eq!(listing(&fk), four);
    assert_eq!(listing(&k), four);
}
