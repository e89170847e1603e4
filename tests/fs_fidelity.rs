//! A mount behaves like a filesystem to the tools that check one: bytes
//! read back exactly as written (`cmp`) through flush, compaction and a
//! remount; times kept (`cp -p`, `touch -d`, `tar x`, `rsync -a` twice
//! with nothing transferred the second time); `fsync` then more writes
//! through the same descriptor. Real mounts through /dev/fuse over a local
//! directory store, so a remount reads what the first mount wrote to disk.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use reef::store::{LocalFsStore, ObjectStore};

#[path = "support/mounted.rs"]
mod mounted;
use mounted::{fuse_available, run, write_close, Mounted};

/// A local directory store that outlives the mounts of one test.
struct Source {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Source {
    fn new() -> Source {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("store");
        Source { _dir: dir, root }
    }

    fn mount(&self) -> Mounted {
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFsStore::new(self.root.clone()).expect("local store"));
        Mounted::new(store, "rw")
    }
}

/// `cmp` of two files: they hold the same bytes.
fn cmp(a: &Path, b: &Path) {
    run(Command::new("cmp").arg(a).arg(b));
}

/// Oddly formatted but valid documents: spacing, key order, escapes,
/// unicode, a trailing newline or none, an `"id"` that matches, empty.
const ODD: [(&str, &str); 6] = [
    ("spaced", "{ \"b\" :  1 ,\n\t\"a\":[ 1,2 ,3 ] }\n"),
    ("order", "{\"z\":1,\"a\":2,\"m\":{\"y\":1,\"b\":2}}"),
    (
        "escapes",
        "{\"s\":\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\/\"}\n\n",
    ),
    ("unicode", "{\"t\":\"café 😀\",\"n\":1.50,\"e\":1e3}\r\n"),
    ("withid", "{\"id\":\"withid\",  \"v\":true}"),
    ("empty", ""),
];

#[test]
fn bytes_read_back_exactly_as_written_through_flush_compaction_and_remount() {
    if !fuse_available() {
        return;
    }
    let src = Source::new();
    let local = tempfile::tempdir().unwrap();
    for (id, json) in ODD {
        std::fs::write(local.path().join(format!("{id}.json")), json).unwrap();
    }
    let check = |m: &Mounted| {
        for (id, json) in ODD {
            let path = m.join(&format!("n/{id}.json"));
            cmp(&local.path().join(format!("{id}.json")), &path);
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                json.len() as u64,
                "{id}"
            );
        }
    };
    let m = src.mount();
    std::fs::create_dir(m.join("n")).unwrap();
    for (id, json) in ODD {
        write_close(&m.join(&format!("n/{id}.json")), json).unwrap();
    }
    check(&m);
    write_close(&m.join("n/.flush"), "").unwrap();
    check(&m);
    // Rewrite some after the flush, so compaction merges two versions.
    for (id, json) in &ODD[..3] {
        write_close(&m.join(&format!("n/{id}.json")), json).unwrap();
    }
    write_close(&m.join("n/.compact"), "").unwrap();
    check(&m);
    // A rename keeps the bytes (an "id" key follows the new name).
    std::fs::rename(m.join("n/spaced.json"), m.join("n/moved.json")).unwrap();
    cmp(&local.path().join("spaced.json"), &m.join("n/moved.json"));
    std::fs::rename(m.join("n/moved.json"), m.join("n/spaced.json")).unwrap();
    std::fs::rename(m.join("n/withid.json"), m.join("n/other.json")).unwrap();
    assert_eq!(
        std::fs::read_to_string(m.join("n/other.json")).unwrap(),
        "{\"id\":\"other\",  \"v\":true}"
    );
    std::fs::rename(m.join("n/other.json"), m.join("n/withid.json")).unwrap();
    m.unmount();

    let m = src.mount();
    check(&m);
    // A wrong "id" is still refused, and changes nothing.
    let err = write_close(&m.join("n/order.json"), r#"{"id":"nope"}"#).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    check(&m);
}

#[test]
fn fsync_then_more_writes_keep_the_size_and_the_offsets_of_the_file() {
    if !fuse_available() {
        return;
    }
    let src = Source::new();
    let m = src.mount();
    std::fs::create_dir(m.join("n")).unwrap();
    let path = m.join("n/log.json");
    write_close(&path, "{\"a\": 1").unwrap_err();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"{\"a\": 1 ").unwrap();
    f.write_all(b"}").unwrap();
    f.sync_all().unwrap();
    assert_eq!(f.metadata().unwrap().len(), 9);
    // O_APPEND after fsync lands right after the content: no NUL gap.
    f.write_all(b"\n").unwrap();
    f.sync_all().unwrap();
    assert_eq!(f.metadata().unwrap().len(), 10);
    drop(f);
    assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\": 1 }\n");

    // A positioned write after fsync, through the same descriptor.
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(6)).unwrap();
    f.write_all(b"2").unwrap();
    f.sync_all().unwrap();
    f.seek(SeekFrom::Start(6)).unwrap();
    f.write_all(b"3").unwrap();
    drop(f);
    assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\": 3 }\n");
    m.unmount();
    let m = src.mount();
    assert_eq!(std::fs::read(m.join("n/log.json")).unwrap(), b"{\"a\": 3 }\n");
}

/// Seconds and nanoseconds of a file's mtime.
fn mtime(path: &Path) -> (i64, i64) {
    let md = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (md.mtime(), md.mtime_nsec())
}

#[test]
fn times_are_kept_by_cp_p_touch_tar_and_rsync_also_after_a_remount() {
    if !fuse_available() {
        return;
    }
    let src = Source::new();
    let local = tempfile::tempdir().unwrap();
    let tree = local.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    for i in 0..12 {
        std::fs::write(tree.join(format!("d{i:02}.json")), format!("{{\"i\": {i}}}\n")).unwrap();
        // Distinct times with nanoseconds, as rsync compares them.
        let stamp = format!("2021-03-{:02} 10:11:12.{:09}", i + 1, 123_456_789 + i);
        run(Command::new("touch")
            .arg("-d")
            .arg(stamp)
            .arg(tree.join(format!("d{i:02}.json"))));
    }
    let m = src.mount();
    std::fs::create_dir(m.join("n")).unwrap();

    // cp -p sets the time before it closes the new file.
    run(Command::new("cp")
        .arg("-p")
        .arg(tree.join("d00.json"))
        .arg(m.join("n/cp.json")));
    assert_eq!(mtime(&m.join("n/cp.json")), mtime(&tree.join("d00.json")));
    // touch -d on an existing document: a time change, the bytes kept.
    run(Command::new("touch")
        .arg("-d")
        .arg("2001-02-03 04:05:06.5")
        .arg(m.join("n/cp.json")));
    assert_eq!(mtime(&m.join("n/cp.json")), (981173106, 500_000_000));
    cmp(&tree.join("d00.json"), &m.join("n/cp.json"));
    // tar x sets times after writing each file.
    let archive = local.path().join("t.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&tree)
        .arg("d01.json")
        .arg("d02.json"));
    std::fs::create_dir(m.join("t")).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(m.join("t")));
    for name in ["d01.json", "d02.json"] {
        assert_eq!(
            mtime(&m.join(&format!("t/{name}"))).0,
            mtime(&tree.join(name)).0
        );
        cmp(&tree.join(name), &m.join(&format!("t/{name}")));
    }

    // rsync -a, then again: the second run transfers nothing.
    std::fs::create_dir(m.join("r")).unwrap();
    let rsync = |m: &Mounted| {
        run(Command::new("rsync")
            .arg("-a")
            .arg("--itemize-changes")
            .arg("--stats")
            .arg(format!("{}/", tree.display()))
            .arg(m.join("r")))
    };
    let transferred = |out: &str| -> usize {
        out.lines()
            .find_map(|l| l.strip_prefix("Number of regular files transferred: "))
            .unwrap_or_else(|| panic!("no transfer count in rsync's output:\n{out}"))
            .trim()
            .replace(',', "")
            .parse()
            .unwrap()
    };
    let first = rsync(&m);
    assert_eq!(transferred(&first), 12, "{first}");
    for i in 0..12 {
        let name = format!("d{i:02}.json");
        assert_eq!(mtime(&m.join(&format!("r/{name}"))), mtime(&tree.join(&name)));
    }
    let second = rsync(&m);
    assert_eq!(transferred(&second), 0, "{second}");
    assert!(!second.lines().any(|l| l.starts_with(">f")), "{second}");
    m.unmount();

    let m = src.mount();
    let third = rsync(&m);
    assert_eq!(transferred(&third), 0, "after a remount:\n{third}");
    assert_eq!(mtime(&m.join("n/cp.json")), (981173106, 500_000_000));
}

/// Every object key in a local store, to tell whether a tool changed it.
fn objects(root: &Path) -> Vec<String> {
    let mut keys: Vec<String> = walk(root)
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect();
    keys.sort();
    keys
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn special_entries_are_unlisted_reachable_by_name_and_exactly_sized() {
    if !fuse_available() {
        return;
    }
    let src = Source::new();
    let m = src.mount();
    std::fs::create_dir(m.join("n")).unwrap();
    write_close(&m.join("n/a.json"), "{\"v\": 1}\n").unwrap();
    let controls = [".flush", ".compact", ".gc", ".verify", ".repair", ".stats"];

    let listed = run(Command::new("ls").arg("-a").arg(m.join("n")));
    assert_eq!(
        listed.split_whitespace().collect::<Vec<_>>(),
        vec![".", "..", "a.json"]
    );
    let found = run(Command::new("find").arg(m.path()));
    assert!(controls.iter().all(|c| !found.contains(c)), "{found}");
    // grep -r reads every listed file: it must neither run a verify nor
    // change the store.
    let before = objects(&src.root);
    let hits = run(Command::new("grep").arg("-r").arg("-l").arg("").arg(m.path()));
    assert_eq!(hits.trim(), m.join("n/a.json").display().to_string());
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.join("n/.stats")).unwrap()).unwrap();
    assert_eq!(stats["namespace"], "n");
    assert_eq!(
        objects(&src.root),
        before,
        "grep -r or .stats changed the store"
    );
    // A copy of the namespace copies documents only.
    let copy = tempfile::tempdir().unwrap();
    run(Command::new("cp").arg("-r").arg(m.join("n")).arg(copy.path()));
    run(Command::new("rsync")
        .arg("-a")
        .arg(m.join("n"))
        .arg(copy.path().join("r")));
    assert_eq!(objects(copy.path()), vec!["n/a.json", "r/n/a.json"]);

    // Reachable by name, with st_size the length of what a read returns.
    for name in [".stats", ".verify", ".flush", ".gc"] {
        let path = m.join(&format!("n/{name}"));
        let size = std::fs::metadata(&path).unwrap().len();
        let bytes = std::fs::read(&path).unwrap();
        assert!(size > 0, "{name}");
        assert_eq!(size, bytes.len() as u64, "{name}");
        // cp trusts st_size after fstat; wc -c too.
        let out = copy.path().join(format!("copy{name}"));
        run(Command::new("cp").arg(&path).arg(&out));
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&out).unwrap())
            .unwrap_or_else(|e| panic!("{name} copied whole: {e}"));
        let both = run(Command::new("sh").arg("-c").arg(format!(
            "stat -c %s '{0}' && wc -c < '{0}' && cat '{0}' | wc -c",
            path.display()
        )));
        let nums: Vec<&str> = both.split_whitespace().collect();
        assert_eq!(nums.len(), 3, "{both}");
        assert!(
            nums.iter().all(|n| *n == nums[0]),
            "{name}: stat, wc -c, cat | wc -c: {both}"
        );
    }
    let verify: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.join("n/.verify")).unwrap()).unwrap();
    assert_eq!(verify["healthy"], true, "{verify}");
}

fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> Option<i32> {
    r.expect_err("must fail").raw_os_error()
}

#[test]
fn posix_details_long_names_scratch_times_directory_mtimes_create_modes() {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !fuse_available() {
        return;
    }
    let src = Source::new();
    let m = src.mount();
    std::fs::create_dir(m.join("n")).unwrap();
    write_close(&m.join("n/a.json"), "{}").unwrap();

    // ENAMETOOLONG for any component over 255 bytes: scratch files,
    // documents, lookups, mkdir, rename; 255 bytes is fine.
    let long = "x".repeat(256);
    let max = "y".repeat(255);
    let too_long = |r: std::io::Result<()>| assert_eq!(errno(r), Some(libc::ENAMETOOLONG));
    too_long(std::fs::write(m.join(&format!("n/{long}")), "x"));
    too_long(std::fs::write(
        m.join(&format!("n/{}.json", "z".repeat(251))),
        "{}",
    ));
    too_long(std::fs::metadata(m.join(&format!("n/{long}"))).map(|_| ()));
    too_long(std::fs::create_dir(m.join(&long)));
    too_long(std::fs::rename(
        m.join("n/a.json"),
        m.join(&format!("n/{long}")),
    ));
    std::fs::write(m.join(&format!("n/{max}")), "scratch").unwrap();
    assert_eq!(std::fs::read(m.join(&format!("n/{max}"))).unwrap(), b"scratch");
    std::fs::remove_file(m.join(&format!("n/{max}"))).unwrap();

    // Scratch files keep atime and mtime apart.
    let s = m.join("n/notes.txt");
    std::fs::write(&s, "x").unwrap();
    run(Command::new("touch")
        .args(["-a", "-d", "2020-01-01 00:00:01"])
        .arg(&s));
    run(Command::new("touch")
        .args(["-m", "-d", "2010-01-01 00:00:02.25"])
        .arg(&s));
    let md = std::fs::metadata(&s).unwrap();
    assert_eq!(
        (md.atime(), md.mtime(), md.mtime_nsec()),
        (1577836801, 1262304002, 250_000_000)
    );

    // A directory's mtime moves when an entry is created or removed.
    let dir_mtime = |p: &Path| {
        let md = std::fs::metadata(p).unwrap();
        (md.mtime(), md.mtime_nsec())
    };
    let changed = |p: &Path, before: (i64, i64), what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while dir_mtime(p) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: mtime of {} unchanged",
                p.display()
            );
            std::thread::yield_now();
        }
    };
    let ns = m.join("n");
    let t0 = dir_mtime(&ns);
    write_close(&m.join("n/b.json"), "{}").unwrap();
    changed(&ns, t0, "create");
    let t1 = dir_mtime(&ns);
    std::fs::remove_file(m.join("n/b.json")).unwrap();
    changed(&ns, t1, "unlink");
    let t2 = dir_mtime(&ns);
    std::fs::rename(m.join("n/a.json"), m.join("n/c.json")).unwrap();
    changed(&ns, t2, "rename");
    let r0 = dir_mtime(m.path());
    std::fs::create_dir(m.join("other")).unwrap();
    changed(m.path(), r0, "mkdir");

    // The mode given at create: kept by scratch files, not by documents.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).mode(0o600);
    drop(opts.open(m.join("n/private.tmp")).unwrap());
    assert_eq!(mode(&m.join("n/private.tmp")), 0o600);
    drop(opts.open(m.join("n/d.json")).unwrap());
    assert_eq!(mode(&m.join("n/d.json")), 0o644);
    assert_eq!(
        errno(std::fs::set_permissions(
            m.join("n/d.json"),
            std::fs::Permissions::from_mode(0o600)
        )),
        Some(libc::EPERM)
    );
}

#[test]
fn nested_directories_copy_diff_move_and_remove_like_a_disk() {
    if !fuse_available() {
        return;
    }
    let src = Source::new();
    let local = tempfile::tempdir().unwrap();
    let tree = local.path().join("corpus");
    for (i, dir) in ["", "2026", "2026/12", "2026/12/01", "misc", "misc/x.json.d"]
        .iter()
        .enumerate()
    {
        let d = tree.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        for k in 0..3 {
            std::fs::write(
                d.join(format!("doc{k}.json")),
                format!("{{\"d\":{i}, \"k\":{k}}}\n"),
            )
            .unwrap();
        }
    }
    std::fs::create_dir_all(tree.join("empty/deeper")).unwrap();
    let m = src.mount();
    std::fs::create_dir(m.join("articles")).unwrap();
    // cp -a of a nested tree, then diff -r: identical, times too.
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", tree.display()))
        .arg(m.join("articles")));
    run(Command::new("diff")
        .arg("-r")
        .arg(&tree)
        .arg(m.join("articles")));
    assert_eq!(
        mtime(&m.join("articles/2026/12/01/doc2.json")),
        mtime(&tree.join("2026/12/01/doc2.json"))
    );
    // Directory times set by cp -a hold while the daemon runs.
    assert_eq!(mtime(&m.join("articles/2026/12")), mtime(&tree.join("2026/12")));
    // mkdir -p inside a namespace; an id with '/' is a path.
    run(Command::new("mkdir").arg("-p").arg(m.join("articles/a/b/c")));
    write_close(&m.join("articles/a/b/c/leaf.json"), "{\"id\":\"a/b/c/leaf\"}").unwrap();
    let err = write_close(&m.join("articles/a/b/c/bad.json"), "{\"id\":\"bad\"}").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));

    // rmdir: ENOTEMPTY with a document below, ENOTDIR on a file, ENOENT.
    assert_eq!(
        errno(std::fs::remove_dir(m.join("articles/a/b"))),
        Some(libc::ENOTEMPTY)
    );
    assert_eq!(
        errno(std::fs::remove_dir(m.join("articles/2026/12/01/doc0.json"))),
        Some(libc::ENOTDIR)
    );
    assert_eq!(
        errno(std::fs::remove_dir(m.join("articles/nope"))),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno(std::fs::remove_file(m.join("articles/2026"))),
        Some(libc::EISDIR)
    );
    std::fs::remove_dir(m.join("articles/empty/deeper")).unwrap();
    std::fs::remove_dir(m.join("articles/empty")).unwrap();

    // mv of a directory: one batch moving everything below it.
    std::fs::rename(m.join("articles/2026"), m.join("articles/y2026")).unwrap();
    assert!(!m.join("articles/2026").exists());
    run(Command::new("diff")
        .arg("-r")
        .arg(tree.join("2026"))
        .arg(m.join("articles/y2026")));
    // A document renamed across directories keeps bytes and time.
    std::fs::rename(
        m.join("articles/misc/doc0.json"),
        m.join("articles/a/moved.json"),
    )
    .unwrap();
    cmp(&tree.join("misc/doc0.json"), &m.join("articles/a/moved.json"));
    assert_eq!(
        mtime(&m.join("articles/a/moved.json")),
        mtime(&tree.join("misc/doc0.json"))
    );
    m.unmount();

    // After a remount the tree comes from the ids alone.
    let m = src.mount();
    run(Command::new("diff")
        .arg("-r")
        .arg(tree.join("2026"))
        .arg(m.join("articles/y2026")));
    assert_eq!(
        std::fs::read_to_string(m.join("articles/a/b/c/leaf.json")).unwrap(),
        "{\"id\":\"a/b/c/leaf\"}"
    );
    let found = run(Command::new("find")
        .arg(m.join("articles"))
        .arg("-type")
        .arg("d"));
    let mut dirs: Vec<&str> = found
        .lines()
        .map(|l| {
            l.strip_prefix(&m.join("articles").display().to_string())
                .unwrap()
        })
        .collect();
    dirs.sort();
    assert_eq!(
        dirs,
        vec![
            "",
            "/a",
            "/a/b",
            "/a/b/c",
            "/misc",
            "/misc/x.json.d",
            "/y2026",
            "/y2026/12",
            "/y2026/12/01"
        ]
    );
    // rm -r removes a tree, directories included.
    run(Command::new("rm").arg("-r").arg(m.join("articles/y2026")));
    assert!(!m.join("articles/y2026").exists());
    m.unmount();
    let m = src.mount();
    assert!(!m.join("articles/y2026").exists());
    assert!(m.join("articles/misc/doc1.json").exists());
}

#[test]
fn renaming_a_directory_too_large_for_one_batch_is_exdev_so_mv_copies() {
    if !fuse_available() {
        return;
    }
    let src = Source::new();
    let m = src.mount();
    std::fs::create_dir_all(m.join("n/big")).unwrap();
    // Build the tree through the engine's API in few batches (faster than
    // 10,001 files), then look at it through the mount.
    drop(m);
    {
        use reef::engine::{Engine, EngineOptions};
        use reef::types::WriteBatch;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store: Arc<dyn ObjectStore> =
                Arc::new(LocalFsStore::new(src.root.clone()).unwrap());
            let engine = Engine::open(store, "n", EngineOptions::default())
                .await
                .unwrap();
            let mut batch = WriteBatch::new();
            for i in 0..10_001 {
                batch = batch.put_json(format!("big/d{i:05}"), &b"{}"[..], None);
            }
            engine.write(batch).await.unwrap();
        });
    }
    let m = src.mount();
    assert_eq!(
        errno(std::fs::rename(m.join("n/big"), m.join("n/moved"))),
        Some(libc::EXDEV)
    );
    assert!(m.join("n/big/d10000.json").exists());
    assert!(!m.join("n/moved").exists());
}

#[test]
fn scratch_files_are_counted_in_stats_and_each_one_discarded_is_logged() {
    if !fuse_available() {
        return;
    }
    let src = Source::new();
    let mnt = tempfile::tempdir().unwrap();
    let log = src._dir.path().join("daemon.log");
    run(Command::new(env!("CARGO_BIN_EXE_reef"))
        .arg("mount")
        .arg(&src.root)
        .arg(mnt.path())
        .arg("-o")
        .arg(format!("log_file={}", log.display())));
    let at = |rel: &str| mnt.path().join(rel);
    let unmount = || run(Command::new("fusermount3").arg("-u").arg(mnt.path()));
    let result = std::panic::catch_unwind(|| {
        std::fs::create_dir(at("n")).unwrap();
        std::fs::write(at("n/notes.txt"), "twelve bytes").unwrap();
        std::fs::create_dir(at("n/.work")).unwrap();
        std::fs::write(at("n/.work/tmp"), "abc").unwrap();
        write_close(&at("n/kept.json"), "{}").unwrap();
        let stats: serde_json::Value =
            serde_json::from_slice(&std::fs::read(at("n/.stats")).unwrap()).unwrap();
        assert_eq!(
            (stats["scratch_files"].as_u64(), stats["scratch_bytes"].as_u64()),
            (Some(2), Some(15)),
            "{stats}"
        );
    });
    unmount();
    result.unwrap();
    // The daemon exits after unmount; poll its log for both lines.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("scratch file discarded"))
            .collect();
        if lines.len() == 2 {
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("n/notes.txt") && l.contains("12 bytes")),
                "{text}"
            );
            assert!(lines.iter().any(|l| l.contains("n/.work/tmp")), "{text}");
            assert!(!text.contains("kept.json: scratch"), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no discard lines in the daemon log:\n{text}"
        );
        std::thread::yield_now();
    }
}
