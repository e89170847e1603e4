//! The filesystem mounted for real through /dev/fuse, driven with std::fs
//! and ordinary tools (cat, cp, sed, vim, rsync, mv, rm, jq, grep, find).
//!
//! Every mount lives in a guard that unmounts on drop, lazily if busy, so a
//! failing test leaves no mount behind.

use std::io::ErrorKind;
use std::process::Command;
use std::sync::Arc;

use reef::store::{MemoryStore, ObjectStore};

#[path = "support/hooked_store.rs"]
mod hooked_store;
#[path = "support/mounted.rs"]
mod mounted;
use hooked_store::{HookedStore, PutGate};
use mounted::{doc_names, fuse_available, names, read_text, run, write_close, Mounted};

fn mount_with(store: &Arc<dyn ObjectStore>, opts: &str) -> Option<Mounted> {
    fuse_available().then(|| Mounted::new(store.clone(), opts))
}

fn mounted(store: &Arc<dyn ObjectStore>) -> Option<Mounted> {
    mount_with(store, "rw")
}

fn memory() -> Arc<dyn ObjectStore> {
    Arc::new(MemoryStore::new())
}

#[test]
fn files_read_back_as_written_and_survive_a_remount() {
    let store = memory();
    let Some(m) = mounted(&store) else { return };
    std::fs::create_dir(m.join("articles")).unwrap();
    std::fs::write(m.join("articles/a1.json"), r#"{"title":"Hello","n":3}"#).unwrap();
    let want = r#"{"title":"Hello","n":3}"#;
    // Read right after close: the kernel's cache of the written bytes is gone.
    assert_eq!(read_text(&m.join("articles/a1.json")), want);
    assert_eq!(
        std::fs::metadata(m.join("articles/a1.json")).unwrap().len(),
        want.len() as u64
    );
    assert_eq!(run(Command::new("cat").arg(m.join("articles/a1.json"))), want);
    // A shorter rewrite, then a read: no stale tail.
    std::fs::write(m.join("articles/a1.json"), r#"{}"#).unwrap();
    assert_eq!(read_text(&m.join("articles/a1.json")), "{}");
    std::fs::write(m.join("articles/a1.json"), r#"{"title":"Hello","n":3}"#).unwrap();
    assert_eq!(names(&m.join("articles")), vec!["a1.json"]);
    assert_eq!(names(m.path()), vec!["articles"]);
    m.unmount();

    let Some(m) = mounted(&store) else { return };
    assert_eq!(read_text(&m.join("articles/a1.json")), want);
}

#[test]
fn touch_creates_the_empty_document() {
    let store = memory();
    let Some(m) = mounted(&store) else { return };
    std::fs::create_dir(m.join("n")).unwrap();
    run(Command::new("touch").arg(m.join("n/new.json")));
    assert_eq!(read_text(&m.join("n/new.json")), "");
    run(Command::new("touch").arg(m.join("n/new.json")));
    run(Command::new("sh")
        .arg("-c")
        .arg(format!(": > {}", m.join("n/other.json").display())));
    assert_eq!(read_text(&m.join("n/other.json")), "");
}

#[test]
fn rejected_writes_fail_at_close_and_keep_the_old_document() {
    let store = memory();
    let Some(m) = mounted(&store) else { return };
    std::fs::create_dir(m.join("n")).unwrap();
    let path = m.join("n/x.json");
    std::fs::write(&path, r#"{"v":1}"#).unwrap();
    let before = read_text(&path);
    let errno = |r: std::io::Result<()>| r.expect_err("must fail").raw_os_error();
    assert_eq!(errno(write_close(&path, "{not json")), Some(libc::EINVAL));
    assert_eq!(
        errno(write_close(&path, r#"{"id":"y","v":2}"#)),
        Some(libc::EINVAL)
    );
    let big = format!(r#"{{"s":"{}"}}"#, "a".repeat(5 << 20));
    assert_eq!(errno(write_close(&path, &big)), Some(libc::EFBIG));
    let huge = format!(r#"{{"s":"{}"}}"#, "a".repeat(20 << 20));
    assert_eq!(errno(write_close(&path, &huge)), Some(libc::EFBIG));
    // fsync reports the same error before close.
    let mut file = std::fs::File::create(&path).unwrap();
    std::io::Write::write_all(&mut file, b"[]").unwrap();
    assert_eq!(file.sync_all().unwrap_err().raw_os_error(), Some(libc::EINVAL));
    drop(file);
    assert_eq!(read_text(&path), before);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before.len() as u64);
    // A new file rejected at close does not appear.
    assert_eq!(
        errno(write_close(&m.join("n/bad.json"), "[")),
        Some(libc::EINVAL)
    );
    assert_eq!(
        std::fs::metadata(m.join("n/bad.json")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(doc_names(&m.join("n")), vec!["x.json"]);
}

#[test]
fn a_refused_shell_redirect_keeps_the_old_document() {
    let store = memory();
    let Some(m) = mounted(&store) else { return };
    std::fs::create_dir(m.join("n")).unwrap();
    write_close(&m.join("n/x.json"), r#"{"a":1}"#).unwrap();
    let dir = m.join("n");
    // `>` opens with O_TRUNC, dup2s, and closes the first descriptor before
    // writing: that intermediate close must not commit an empty document.
    let out = Command::new("sh")
        .current_dir(&dir)
        .arg("-c")
        .arg("echo '{bad' > x.json; echo '{bad' > new.json; echo '{\"b\":2}' > good.json")
        .output()
        .expect("sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read_text(&dir.join("x.json")), r#"{"a":1}"#);
    assert_eq!(read_text(&dir.join("good.json")), "{\"b\":2}\n");
    assert_eq!(doc_names(&dir), vec!["good.json", "x.json"]);
}

#[test]
fn sed_in_place_and_vim_saves_update_documents() {
    let store = memory();
    let Some(m) = mounted(&store) else { return };
    std::fs::create_dir(m.join("n")).unwrap();
    let path = m.join("n/x.json");
    std::fs::write(&path, r#"{"title":"Hello"}"#).unwrap();
    run(Command::new("sed").arg("-i").arg("s/Hello/Hi/").arg(&path));
    assert_eq!(read_text(&path), r#"{"title":"Hi"}"#);

    for backup in [
        "set backupcopy=no writebackup",
        "set backupcopy=yes",
        "set backup backupcopy=no",
    ] {
        run(Command::new("vim")
            .args(["-u", "NONE", "-i", "NONE", "-N", "-es", "-c", backup])
            .args(["-c", "%s/Hi/Hey/", "-c", "wq"])
            .arg(&path));
        // vim ends the last line with a newline: the bytes it wrote.
        assert_eq!(read_text(&path), "{\"title\":\"Hey\"}\n", "{backup}");
        run(Command::new("vim")
            .args(["-u", "NONE", "-i", "NONE", "-N", "-es", "-c", backup])
            .args(["-c", "%s/Hey/Hi/", "-c", "wq"])
            .arg(&path));
        assert_eq!(read_text(&path), "{\"title\":\"Hi\"}\n", "{backup}");
    }
    // vim with `backup` leaves x.json~ (a scratch file); removing it keeps x.json.
    let leftovers: Vec<String> = doc_names(&m.join("n"))
        .into_iter()
        .filter(|n| n != "x.json")
        .collect();
    for name in leftovers {
        std::fs::remove_file(m.join("n").join(name)).unwrap();
    }
    assert_eq!(doc_names(&m.join("n")), vec!["x.json"]);
    assert_eq!(read_text(&path), "{\"title\":\"Hi\"}\n");
}

#[test]
fn cp_rsync_mv_rm_jq_grep_find_work() {
    let store = memory();
    let Some(m) = mounted(&store) else { return };
    let src = tempfile::tempdir().unwrap();
    let local = src.path().join("books");
    std::fs::create_dir(&local).unwrap();
    for i in 0..20 {
        std::fs::write(
            local.join(format!("b{i:02}.json")),
            format!(r#"{{"title":"Book {i}","i":{i}}}"#),
        )
        .unwrap();
    }
    // cp -r of a directory: a namespace.
    run(Command::new("cp").arg("-r").arg(&local).arg(m.path()));
    assert_eq!(doc_names(&m.join("books")).len(), 20);
    assert_eq!(
        read_text(&m.join("books/b03.json")),
        r#"{"title":"Book 3","i":3}"#
    );
    // cp -p keeps going (times and the same mode are accepted).
    run(Command::new("cp")
        .arg("-p")
        .arg(local.join("b00.json"))
        .arg(m.join("books/p.json")));
    // rsync into a namespace (temporaries renamed onto x.json).
    std::fs::create_dir(m.join("mirror")).unwrap();
    run(Command::new("rsync")
        .arg("-r")
        .arg(format!("{}/", local.display()))
        .arg(m.join("mirror")));
    assert_eq!(doc_names(&m.join("mirror")).len(), 20);
    // rsync -a chmods its temporaries (scratch files) and sets times.
    std::fs::create_dir(m.join("archive")).unwrap();
    run(Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", local.display()))
        .arg(m.join("archive")));
    assert_eq!(doc_names(&m.join("archive")).len(), 20);
    run(Command::new("cp")
        .arg("-a")
        .arg(local.join("b01.json"))
        .arg(m.join("archive/a.json")));
    run(Command::new("rm").arg("-rf").arg(m.join("archive")));
    assert_eq!(
        read_text(&m.join("mirror/b07.json")),
        r#"{"title":"Book 7","i":7}"#
    );
    // jq, grep -r, find.
    assert_eq!(
        run(Command::new("jq")
            .arg("-r")
            .arg(".title")
            .arg(m.join("books/b05.json")))
        .trim(),
        "Book 5"
    );
    let before = futures::executor::block_on(store.list("", None)).unwrap();
    let hits = run(Command::new("grep").arg("-rl").arg("Book 1").arg(m.path()));
    assert!(
        hits.contains("books/b01.json") && hits.contains("mirror/b12.json"),
        "{hits}"
    );
    assert_eq!(
        futures::executor::block_on(store.list("", None)).unwrap(),
        before,
        "grep -r changed the store"
    );
    let found = run(Command::new("find").arg(m.path()).arg("-name").arg("*.json"));
    assert_eq!(found.lines().count(), 41, "{found}");
    // mv within a namespace is a rename; across namespaces a copy + delete.
    run(Command::new("mv")
        .arg(m.join("books/b00.json"))
        .arg(m.join("books/first.json")));
    assert_eq!(
        read_text(&m.join("books/first.json")),
        r#"{"title":"Book 0","i":0}"#
    );
    run(Command::new("mv")
        .arg(m.join("books/first.json"))
        .arg(m.join("mirror/first.json")));
    assert!(m.join("mirror/first.json").exists() && !m.join("books/first.json").exists());
    // rm and rm -rf of a namespace.
    run(Command::new("rm").arg(m.join("books/b01.json")));
    assert!(!m.join("books/b01.json").exists());
    run(Command::new("rm").arg("-rf").arg(m.join("books")));
    assert_eq!(names(m.path()), vec!["mirror"]);
}

#[test]
fn control_files_from_the_shell() {
    let store = memory();
    let Some(m) = mounted(&store) else { return };
    std::fs::create_dir(m.join("n")).unwrap();
    std::fs::write(m.join("n/a.json"), "{}").unwrap();
    run(Command::new("touch").arg(m.join("n/.flush")));
    assert!(read_text(&m.join("n/.flush")).contains("\"ok\": true"));
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("echo go > {}", m.join("n/.compact").display())));
    assert!(read_text(&m.join("n/.compact")).contains("\"ok\": true"));
    let report: serde_json::Value = serde_json::from_str(&read_text(&m.join("n/.verify"))).unwrap();
    assert_eq!(report["healthy"], serde_json::Value::Bool(true), "{report}");
    let stats: serde_json::Value = serde_json::from_str(&read_text(&m.join("n/.stats"))).unwrap();
    assert_eq!(stats["namespace"], "n");
    let err = std::fs::write(m.join("n/.verify"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    assert_eq!(read_text(&m.join("n/a.json")), "{}");
}

#[test]
fn unsupported_operations_fail_early() {
    let store = memory();
    let Some(m) = mounted(&store) else { return };
    std::fs::create_dir(m.join("n")).unwrap();
    let path = m.join("n/a.json");
    std::fs::write(&path, "{}").unwrap();
    use std::os::unix::fs::PermissionsExt;
    let errno = |r: std::io::Result<()>| r.expect_err("must fail").raw_os_error();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    assert_eq!(
        errno(std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(0o600)
        )),
        Some(libc::EPERM)
    );
    assert_eq!(
        errno(std::os::unix::fs::symlink("a.json", m.join("n/l.json"))),
        Some(libc::EPERM)
    );
    assert_eq!(
        errno(std::fs::hard_link(&path, m.join("n/h.json"))),
        Some(libc::EPERM)
    );
    assert_eq!(
        errno(std::fs::create_dir(m.join("n/sub.json"))),
        Some(libc::EPERM)
    );
    assert_eq!(
        errno(std::fs::write(m.join("top.json"), "{}")),
        Some(libc::EPERM)
    );
    assert_eq!(
        errno(std::fs::rename(m.join("n"), m.join("n2"))),
        Some(libc::EPERM)
    );
    std::fs::create_dir(m.join("m")).unwrap();
    assert_eq!(errno(std::fs::remove_dir(m.join("n"))), Some(libc::ENOTEMPTY));
    assert_eq!(read_text(&path), "{}");
}

#[test]
fn read_only_mounts_refuse_changes() {
    let store = memory();
    {
        let Some(m) = mounted(&store) else { return };
        std::fs::create_dir(m.join("n")).unwrap();
        std::fs::write(m.join("n/a.json"), "{}").unwrap();
    }
    let Some(m) = mount_with(&store, "ro") else {
        return;
    };
    assert_eq!(read_text(&m.join("n/a.json")), "{}");
    let err = std::fs::write(m.join("n/a.json"), "{}").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let err = std::fs::remove_file(m.join("n/a.json")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert!(read_text(&m.join("n/.verify")).contains("\"healthy\": true"));
}

#[test]
fn a_stuck_store_call_blocks_no_other_request() {
    // Holds WAL puts of one namespace until released.
    let gated = HookedStore::new(memory(), PutGate::new("slow/wal/"));
    let store: Arc<dyn ObjectStore> = gated.clone();
    let Some(m) = mounted(&store) else { return };
    std::fs::create_dir(m.join("slow")).unwrap();
    std::fs::create_dir(m.join("fast")).unwrap();
    std::fs::write(m.join("fast/y.json"), "{}").unwrap();
    std::fs::write(m.join("slow/other.json"), "{}").unwrap();
    gated.hooks.gate.hold_all();

    let slow = m.join("slow/x.json");
    let writer = std::thread::spawn(move || write_close(&slow, r#"{"v":1}"#));
    let key = gated
        .hooks
        .gate
        .held_within(std::time::Duration::from_secs(10))
        .expect("the commit reached the store");
    assert!(key.contains("slow/wal/"), "{key}");

    // The commit of slow/x.json is now stuck inside the store.
    let (done_tx, done) = std::sync::mpsc::channel();
    let (fast, root, other) = (
        m.join("fast/y.json"),
        m.path().to_path_buf(),
        m.join("slow/other.json"),
    );
    std::thread::spawn(move || {
        let result = (
            read_text(&fast),
            names(&root),
            read_text(&other),
            names(&root.join("slow")),
        );
        let _ = done_tx.send(result);
    });
    let answered = done.recv_timeout(std::time::Duration::from_secs(10));
    gated.hooks.gate.open_for_good();
    let (fast, root, other, slow_names) =
        answered.expect("requests waited behind a stuck store call");
    assert_eq!(fast, "{}");
    assert_eq!(root, vec!["fast", "slow"]);
    assert_eq!(other, "{}");
    assert!(slow_names.contains(&"x.json".to_string()), "{slow_names:?}");
    writer
        .join()
        .unwrap()
        .expect("the stuck commit completes once released");
    assert_eq!(read_text(&m.join("slow/x.json")), r#"{"v":1}"#);
}
