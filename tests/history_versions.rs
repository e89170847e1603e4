//! `.versions/` through real mounts (/dev/fuse), on a local directory store
//! and on S3 (moto), DESIGN.md §8: `.versions/SEQ/` and `.versions/@TIME/`
//! before and after flush and compaction, a restore by `cp`, `diff -r` of
//! two times, a bounded listing with commit times as mtimes, views cached
//! like the live namespace (counted with the metered store), every bad
//! name and every point out of retention ENOENT, with one log line naming
//! the retained range (through `reef mount` and its log file).

#[path = "support/mounted.rs"]
mod mounted;
#[path = "support/s3.rs"]
mod s3;
#[path = "support/source.rs"]
mod source;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mounted::{fuse_available, names, run_control, write_close, Mounted};
use reef::store::MeteredStore;
use source::Source;

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The newest committed WAL sequence of the namespace at `ns`.
fn last_seq(ns: &Path) -> u64 {
    let stats: serde_json::Value = serde_json::from_slice(&read(&ns.join(".stats"))).unwrap();
    stats["last_wal_seq"].as_u64().expect("last_wal_seq")
}

/// A time after every commit so far and before any later one: commit
/// times have millisecond resolution, so wait (on the clock, not a sleep)
/// until the millisecond after it has begun.
fn time_between_commits() -> (SystemTime, String) {
    let t = SystemTime::now();
    let ms = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis();
    while ms(SystemTime::now()) <= ms(t) + 1 {
        std::thread::yield_now();
    }
    (t, format!("@{}", humantime::format_rfc3339_nanos(t)))
}

const V1: &[u8] = b"{\"v\": 1,  \"note\": \"as written\"}\n";
const B: &[u8] = b"{\"deep\": true}";
const V2: &[u8] = b"{\"v\": 2}";

fn versions_by_seq_and_time(source: &Source) {
    let metered = Arc::new(MeteredStore::new(source.open()));
    let m = Mounted::new(metered.clone(), "");
    let ns = m.join("n");
    std::fs::create_dir(&ns).expect("mkdir namespace");
    std::fs::create_dir(ns.join("sub")).expect("mkdir sub");
    write_close(&ns.join("a.json"), V1).expect("write a");
    write_close(&ns.join("sub/b.json"), B).expect("write b");
    let s1 = last_seq(&ns);
    let (t1, at1) = time_between_commits();

    write_close(&ns.join("a.json"), V2).expect("overwrite a");
    std::fs::remove_file(ns.join("sub/b.json")).expect("delete b");
    let s2 = last_seq(&ns);
    let (_, at2) = time_between_commits();
    write_close(&ns.join("c.json"), b"{}").expect("write c");
    let s3 = last_seq(&ns);

    let versions = ns.join(".versions");
    assert!(versions.is_dir(), ".versions is reachable by name");
    assert!(
        !names(&ns).iter().any(|n| n.starts_with('.')),
        ".versions and .changes are never listed: {:?}",
        names(&ns)
    );
    let check = |when: &str| {
        let v1 = versions.join(s1.to_string());
        assert_eq!(names(&v1), ["a.json", "sub"], "{when}");
        assert_eq!(read(&v1.join("a.json")), V1, "{when}");
        assert_eq!(read(&v1.join("sub/b.json")), B, "{when}");
        let at = versions.join(&at1);
        assert_eq!(read(&at.join("a.json")), V1, "{when}: {at1}");
        assert_eq!(read(&at.join("sub/b.json")), B, "{when}: {at1}");
        assert!(!at.join("c.json").exists(), "{when}");
        let at = versions.join(&at2);
        assert_eq!(read(&at.join("a.json")), V2, "{when}: {at2}");
        assert!(!at.join("sub/b.json").exists(), "{when}: b was deleted");
        assert_eq!(
            read(&versions.join(s2.to_string()).join("a.json")),
            V2,
            "{when}"
        );
        assert_eq!(names(&versions.join(s3.to_string())), ["a.json", "c.json"]);
        // A time after the newest commit is the newest state.
        let now = format!("@{}", humantime::format_rfc3339(SystemTime::now()));
        assert_eq!(names(&versions.join(now)), ["a.json", "c.json"], "{when}");
        // The listing shows the newest point, mtime = its commit time.
        let listed = names(&versions);
        assert!(listed.contains(&s3.to_string()), "{when}: {listed:?}");
        let mtime = std::fs::metadata(versions.join(s3.to_string()))
            .unwrap()
            .modified()
            .unwrap();
        let off = mtime
            .duration_since(t1)
            .unwrap_or_else(|e| panic!("{when}: listed mtime before t1 by {:?}", e.duration()));
        assert!(off < Duration::from_secs(60), "{when}: {off:?}");
    };
    check("before flush");
    run_control(&ns, ".flush");
    check("after flush");
    write_close(&ns.join("a.json"), V2).expect("rewrite a");
    run_control(&ns, ".flush");
    run_control(&ns, ".compact");
    check("after compaction");

    // A flush point is listed; the listing is bounded however many commits.
    for i in 0..40 {
        write_close(&ns.join(format!("many{i}.json")), b"{}").expect("write");
        if i % 10 == 9 {
            run_control(&ns, ".flush");
        }
    }
    let listed = names(&versions);
    assert!(listed.len() <= 33, "bounded: {} entries", listed.len());
    assert!(listed.contains(&last_seq(&ns).to_string()), "{listed:?}");
    for name in &listed {
        let seq: u64 = name.parse().expect("listed names are sequences");
        assert!(seq <= last_seq(&ns));
    }

    // Every change in a view is EROFS; .versions itself takes no mkdir.
    let view = versions.join(s1.to_string());
    for (what, r) in [
        ("write", write_close(&view.join("a.json"), b"{}")),
        ("create", write_close(&view.join("new.json"), b"{}")),
        ("unlink", std::fs::remove_file(view.join("a.json"))),
        ("mkdir", std::fs::create_dir(versions.join("x"))),
        ("rmdir", std::fs::remove_dir(versions.join(s1.to_string()))),
    ] {
        let e = r.expect_err(what);
        assert_eq!(errno(&e), libc::EROFS, "{what}: {e}");
    }
    assert_eq!(read(&view.join("a.json")), V1);

    // Bad names and points out of retention: ENOENT.
    for bad in [
        "abc".to_string(),
        format!("0{s1}"),
        "@yesterday".to_string(),
        "@2026-12-01".to_string(),
        (last_seq(&ns) + 1000).to_string(),
        "@1990-01-01T00:00:00Z".to_string(),
    ] {
        let e = std::fs::metadata(versions.join(&bad)).expect_err(&bad);
        assert_eq!(errno(&e), libc::ENOENT, "{bad}: {e}");
    }

    // Restore by cp, diff two times.
    let out = Command::new("cp")
        .arg(versions.join(&at1).join("sub/b.json"))
        .arg(ns.join("sub/b.json"))
        .output()
        .expect("cp");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(read(&ns.join("sub/b.json")), B);
    let out = Command::new("diff")
        .arg("-r")
        .arg(versions.join(&at1))
        .arg(versions.join(&at2))
        .output()
        .expect("diff");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "they differ: {out:?}");
    assert!(text.contains("\"v\": 1") && text.contains("\"v\": 2"), "{text}");
    assert!(
        text.contains("Only in") && text.contains(": sub"),
        "b.json was deleted: {text}"
    );

    // Views are cached like the live namespace: a second read of a view
    // costs no more store requests than a second read of the live one.
    let read_all = |dir: &Path| {
        let mut n = 0;
        for e in walkdir::WalkDir::new(dir) {
            let e = e.expect("walk");
            if e.file_type().is_file() {
                read(e.path());
                n += 1;
            }
        }
        n
    };
    let view = versions.join(last_seq(&ns).to_string());
    let requests = || metered.snapshot().requests();
    let files = read_all(&view);
    assert!(files > 40, "{files}");
    let before = requests();
    read_all(&view);
    let view_second = requests() - before;
    read_all(&ns);
    let before = requests();
    read_all(&ns);
    let live_second = requests() - before;
    assert!(
        view_second <= live_second,
        "second read of a view: {view_second} store requests, of the live namespace: {live_second}"
    );
    m.unmount();

    // A remount still shows every retained point.
    let m = Mounted::new(source.open(), "");
    let versions = m.join("n/.versions");
    assert_eq!(read(&versions.join(s1.to_string()).join("a.json")), V1);
    assert_eq!(read(&versions.join(&at1).join("a.json")), V1);
    m.unmount();
}

#[test]
fn versions_on_a_local_store() {
    if !fuse_available() {
        return;
    }
    versions_by_seq_and_time(&source::local());
}

#[test]
fn versions_on_s3() {
    if !fuse_available() {
        return;
    }
    let Some(source) = source::s3("versions") else {
        return;
    };
    versions_by_seq_and_time(&source);
}

/// With `retain=0`, GC leaves only the newest state: older points are
/// ENOENT, and each refusal is one line in the daemon's log naming what
/// is retained (through `reef mount`, as a user runs it).
#[test]
fn points_out_of_retention_are_enoent_and_logged_once() {
    if !fuse_available() {
        return;
    }
    let src = tempfile::tempdir().expect("tempdir");
    let mnt = tempfile::tempdir().expect("tempdir");
    let log = src.path().join("daemon.log");
    let store = src.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_reef"))
        .arg("mount")
        .arg(&store)
        .arg(mnt.path())
        .arg("-o")
        .arg(format!("retain=0,log_file={}", log.display()))
        .status()
        .expect("reef mount");
    assert!(status.success());
    let result = std::panic::catch_unwind(|| {
        let ns = mnt.path().join("n");
        std::fs::create_dir(&ns).unwrap();
        write_close(&ns.join("a.json"), V1).unwrap();
        let old = last_seq(&ns);
        write_close(&ns.join("a.json"), V2).unwrap();
        run_control(&ns, ".flush");
        run_control(&ns, ".gc");
        let newest = last_seq(&ns);
        let versions = ns.join(".versions");
        assert_eq!(read(&versions.join(newest.to_string()).join("a.json")), V2);
        for bad in [old.to_string(), "latest".to_string()] {
            let e = std::fs::metadata(versions.join(&bad)).expect_err(&bad);
            assert_eq!(errno(&e), libc::ENOENT, "{bad}: {e}");
        }
        (old, newest)
    });
    let unmount = Command::new("fusermount3").arg("-u").arg(mnt.path()).status();
    let (old, newest) = result.unwrap();
    assert!(unmount.expect("fusermount3").success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let of = |name: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.contains(&format!(".versions/{name}:")))
                .map(str::to_string)
                .collect()
        };
        let (old_lines, bad_lines) = (of(&old.to_string()), of("latest"));
        if !old_lines.is_empty() && !bad_lines.is_empty() {
            assert_eq!(old_lines.len(), 1, "{text}");
            assert_eq!(bad_lines.len(), 1, "{text}");
            let range = format!("to {newest} are retained (committed");
            for line in [&old_lines[0], &bad_lines[0]] {
                assert!(line.contains(&range), "{line}");
                assert!(line.contains("committed"), "{line}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal lines in the log:\n{text}"
        );
        std::thread::yield_now();
    }
}

/// A view held open (a file of it open, so the kernel holds the view) while
/// GC runs with `retain=0` stays readable: even files of it not read
/// before, whose segments compaction replaced and GC would delete.
fn a_held_view_survives_gc(source: &Source) {
    let m = Mounted::new(source.open(), "retain=0");
    let ns = m.join("n");
    std::fs::create_dir(&ns).unwrap();
    write_close(&ns.join("a.json"), V1).unwrap();
    write_close(&ns.join("b.json"), B).unwrap();
    run_control(&ns, ".flush");
    let old = last_seq(&ns);
    let view = ns.join(".versions").join(old.to_string());
    let held = std::fs::File::open(view.join("a.json")).expect("open a file of the view");
    write_close(&ns.join("a.json"), V2).unwrap();
    std::fs::remove_file(ns.join("b.json")).unwrap();
    for control in [".flush", ".compact", ".gc"] {
        run_control(&ns, control);
    }
    let gc: serde_json::Value = serde_json::from_slice(&read(&ns.join(".gc"))).unwrap();
    assert_eq!(gc["report"]["kept"]["open_views"], 1, "{gc}");
    // GC did cut history: the state before the held one is gone.
    let e = std::fs::metadata(ns.join(".versions").join((old - 1).to_string()))
        .expect_err("older than the held view");
    assert_eq!(errno(&e), libc::ENOENT, "{e}");
    assert_eq!(read(&view.join("b.json")), B, "never read before GC");
    assert_eq!(read(&view.join("a.json")), V1);
    assert_eq!(read(&ns.join("a.json")), V2);
    drop(held);
    m.unmount();
}

#[test]
fn a_held_view_survives_gc_on_a_local_store() {
    if !fuse_available() {
        return;
    }
    a_held_view_survives_gc(&source::local());
}

#[test]
fn a_held_view_survives_gc_on_s3() {
    if !fuse_available() {
        return;
    }
    let Some(source) = source::s3("held-view") else {
        return;
    };
    a_held_view_survives_gc(&source);
}
