//! History as files (DESIGN.md §8) through real mounts (/dev/fuse), on a
//! local directory store and on S3 (moto): `.snapshots/NAME` created by
//! `mkdir`, listed by `ls`, read-only views of the past (nested directories
//! included) that survive writes, deletes, compaction, GC with `retain=0`
//! and a remount, and a restore by `cp`.

#[path = "support/mounted.rs"]
mod mounted;
#[path = "support/s3.rs"]
mod s3;
#[path = "support/source.rs"]
mod source;

use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

use mounted::{fuse_available, names, run_control, write_close, Mounted};
use source::Source;

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

const OLD_A: &[u8] = b"{\"v\": 1,  \"note\": \"as written\"}\n";
const OLD_B: &[u8] = b"{\"deep\": true}";

fn snapshots_survive_everything(source: &Source) {
    let m = Mounted::new(source.open(), "retain=0");
    let ns = m.join("n");
    std::fs::create_dir(&ns).expect("mkdir namespace");
    std::fs::create_dir(ns.join("sub")).expect("mkdir sub");
    write_close(&ns.join("a.json"), OLD_A).expect("write a");
    write_close(&ns.join("sub/b.json"), OLD_B).expect("write b");

    // Unlisted but reachable; snapshot of everything acknowledged.
    let snaps = ns.join(".snapshots");
    assert!(snaps.is_dir(), ".snapshots is reachable by name");
    assert_eq!(names(&ns), ["a.json", "sub"], ".snapshots is never listed");
    assert!(names(&snaps).is_empty());
    std::fs::create_dir(snaps.join("before")).expect("mkdir .snapshots/before");
    assert_eq!(names(&snaps), ["before"]);

    // Duplicates and bad names get clear errors and create nothing.
    let dup = std::fs::create_dir(snaps.join("before")).expect_err("duplicate");
    assert_eq!(dup.kind(), ErrorKind::AlreadyExists, "{dup}");
    for bad in [".hidden", "tab\tname"] {
        let e = std::fs::create_dir(snaps.join(bad)).expect_err(bad);
        assert_eq!(errno(&e), libc::EINVAL, "{bad}: {e}");
    }
    assert_eq!(names(&snaps), ["before"]);

    // Change everything, then flush, compact and collect with retain=0.
    write_close(&ns.join("a.json"), b"{\"v\": 2}").expect("overwrite a");
    std::fs::remove_file(ns.join("sub/b.json")).expect("delete b");
    write_close(&ns.join("c.json"), b"{}").expect("write c");
    for control in [".flush", ".compact", ".gc"] {
        run_control(&ns, control);
    }
    let view = snaps.join("before");
    let check_view = |view: &Path| {
        assert_eq!(names(view), ["a.json", "sub"]);
        assert_eq!(std::fs::read(view.join("a.json")).expect("read a"), OLD_A);
        assert_eq!(std::fs::read(view.join("sub/b.json")).expect("read b"), OLD_B);
        assert!(!view.join("c.json").exists(), "c came after the snapshot");
        assert!(!view.join(".snapshots").exists(), "no snapshots of snapshots");
    };
    check_view(&view);
    assert_eq!(std::fs::read(ns.join("a.json")).expect("live a"), b"{\"v\": 2}");

    // Every change in a view fails with EROFS and changes nothing.
    let erofs = |what: &str, r: std::io::Result<()>| {
        let e = r.expect_err(what);
        assert_eq!(errno(&e), libc::EROFS, "{what}: {e}");
    };
    erofs("overwrite", write_close(&view.join("a.json"), b"{}"));
    erofs("create", write_close(&view.join("new.json"), b"{}"));
    erofs("scratch", write_close(&view.join("tmp~"), b"x"));
    erofs("unlink", std::fs::remove_file(view.join("a.json")));
    erofs("mkdir", std::fs::create_dir(view.join("d")));
    erofs("rmdir", std::fs::remove_dir(view.join("sub")));
    erofs(
        "rename",
        std::fs::rename(view.join("a.json"), view.join("z.json")),
    );
    erofs("flush", write_close(&view.join(".flush"), b""));
    erofs(
        "truncate",
        std::fs::OpenOptions::new()
            .write(true)
            .open(view.join("a.json"))
            .map(drop),
    );
    check_view(&view);

    // Restore by cp: an overwritten file and a deleted one.
    for (from, to) in [("a.json", "a.json"), ("sub/b.json", "sub/b.json")] {
        let out = Command::new("cp")
            .arg(view.join(from))
            .arg(ns.join(to))
            .output()
            .expect("run cp");
        assert!(out.status.success(), "cp {from}: {out:?}");
    }
    assert_eq!(std::fs::read(ns.join("a.json")).expect("restored a"), OLD_A);
    assert_eq!(std::fs::read(ns.join("sub/b.json")).expect("restored b"), OLD_B);
    m.unmount();

    // A remount (a new daemon over the same store) still shows it.
    let m = Mounted::new(source.open(), "retain=0");
    let ns = m.join("n");
    run_control(&ns, ".gc");
    let snaps = ns.join(".snapshots");
    assert_eq!(names(&snaps), ["before"]);
    check_view(&snaps.join("before"));

    // rmdir deletes it; a second rmdir finds nothing.
    std::fs::remove_dir(snaps.join("before")).expect("rmdir snapshot");
    assert!(names(&snaps).is_empty());
    assert!(!snaps.join("before").exists());
    let again = std::fs::remove_dir(snaps.join("before")).expect_err("gone");
    assert_eq!(again.kind(), ErrorKind::NotFound, "{again}");
    // The name can be used again for the current state.
    std::fs::create_dir(snaps.join("before")).expect("mkdir again");
    assert_eq!(
        std::fs::read(snaps.join("before/a.json")).expect("new snapshot"),
        OLD_A
    );
    m.unmount();
}

#[test]
fn snapshots_on_a_local_store() {
    if !fuse_available() {
        return;
    }
    snapshots_survive_everything(&source::local());
}

#[test]
fn snapshots_on_s3() {
    if !fuse_available() {
        return;
    }
    let Some(source) = source::s3("snapshots") else {
        return;
    };
    snapshots_survive_everything(&source);
}
