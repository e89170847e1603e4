//! The filesystem core driven directly, without mounting: document files,
//! scratch files, editor and tool save patterns, control files, listings,
//! errors and their errnos, read-only mounts, and a model-based test.

#[path = "support/core_files.rs"]
mod core_files;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use core_files::trunc;
use proptest::prelude::*;
use reef::fs::{CoreConfig, FsCore, FsError, OpenMode, RenameFlags, SetAttr, ROOT_INO};
use reef::store::{FailpointStore, MemoryStore, ObjectStore};
use reef::types::{DocId, Document};

fn memory() -> Arc<dyn ObjectStore> {
    Arc::new(MemoryStore::new())
}

fn config() -> CoreConfig {
    let mut cfg = CoreConfig::default();
    cfg.engine.limits.max_doc_bytes = 4096;
    cfg
}

fn core_on(store: &Arc<dyn ObjectStore>) -> Arc<FsCore> {
    FsCore::new(store.clone(), config())
}

async fn mkns(core: &FsCore, name: &str) -> u64 {
    core.mkdir(ROOT_INO, name).await.expect("mkdir").ino
}

async fn ns_ino(core: &FsCore, name: &str) -> u64 {
    core.lookup(ROOT_INO, name).await.expect("namespace").ino
}

/// `printf CONTENT > dir/name`, in writes of 1000 bytes.
async fn write_file(core: &FsCore, dir: u64, name: &str, content: &[u8]) -> Result<(), FsError> {
    core_files::write_file(core, dir, name, content, 1000).await
}

/// `cat dir/name`, in reads of an odd size (777 bytes).
async fn read_file(core: &FsCore, dir: u64, name: &str) -> Result<Vec<u8>, FsError> {
    Ok(core_files::read_file(core, dir, name, 777).await?.1)
}

async fn read_str(core: &FsCore, dir: u64, name: &str) -> String {
    String::from_utf8(read_file(core, dir, name).await.expect(name)).expect("utf-8")
}

/// Every name in a directory, consuming `take` entries per readdir call.
async fn list_with(core: &FsCore, dir: u64, take: usize) -> Vec<String> {
    let fh = core.opendir(dir).await.expect("opendir");
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let batch = core.readdir(dir, fh, offset, false).await.expect("readdir");
        if batch.is_empty() {
            break;
        }
        for e in batch.into_iter().take(take) {
            offset = e.offset;
            names.push(e.name);
        }
    }
    core.releasedir(fh);
    names
}

async fn list(core: &FsCore, dir: u64) -> Vec<String> {
    list_with(core, dir, usize::MAX).await
}

/// Document names only (no dot entries, control files or scratch files).
async fn docs(core: &FsCore, dir: u64) -> Vec<String> {
    list(core, dir)
        .await
        .into_iter()
        .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        .collect()
}

fn errno<T: std::fmt::Debug>(r: Result<T, FsError>) -> i32 {
    r.expect_err("expected an error").errno()
}

#[tokio::test]
async fn a_written_file_reads_back_as_written_with_exact_size() {
    let store = memory();
    let core = core_on(&store);
    let ns = mkns(&core, "articles").await;
    let odd = "{ \"title\" :\"H\\u00e9llo\",\n\t\"n\":3 , \"id\":\"a1\"}\n\n";
    write_file(&core, ns, "a1.json", odd.as_bytes()).await.unwrap();
    let text = read_str(&core, ns, "a1.json").await;
    assert_eq!(text, odd);
    let attr = core.lookup(ns, "a1.json").await.unwrap();
    assert_eq!(attr.size, text.len() as u64);

    // A fresh core over the same store (a remount) sees the same.
    let again = core_on(&store);
    let ns2 = ns_ino(&again, "articles").await;
    assert_eq!(read_str(&again, ns2, "a1.json").await, text);
    assert_eq!(docs(&again, ns2).await, vec!["a1.json"]);
}

#[tokio::test]
async fn an_empty_file_is_the_empty_document() {
    let core = core_on(&memory());
    let ns = mkns(&core, "n").await;
    write_file(&core, ns, "e.json", b"").await.unwrap();
    assert_eq!(read_str(&core, ns, "e.json").await, "");
    let engine_view = core.lookup(ns, "e.json").await.unwrap();
    assert_eq!(engine_view.size, 0);
    // mknod (touch on some systems) commits the empty document too.
    core.mknod(ns, "m.json").await.unwrap();
    assert_eq!(read_str(&core, ns, "m.json").await, "");
}

#[tokio::test]
async fn rejected_writes_leave_the_old_document_intact() {
    let core = core_on(&memory());
    let ns = mkns(&core, "n").await;
    write_file(&core, ns, "x.json", br#"{"v":1}"#).await.unwrap();
    let before = read_str(&core, ns, "x.json").await;

    assert_eq!(
        errno(write_file(&core, ns, "x.json", b"{nope").await),
        libc::EINVAL
    );
    assert_eq!(
        errno(write_file(&core, ns, "x.json", br#"{"id":"y"}"#).await),
        libc::EINVAL
    );
    assert_eq!(
        errno(write_file(&core, ns, "x.json", b"[1,2]").await),
        libc::EINVAL
    );
    let big = format!(r#"{{"s":"{}"}}"#, "a".repeat(5000));
    assert_eq!(
        errno(write_file(&core, ns, "x.json", big.as_bytes()).await),
        libc::EFBIG
    );
    let huge = vec![b' '; 1 << 21];
    assert_eq!(errno(write_file(&core, ns, "x.json", &huge).await), libc::EFBIG);
    assert_eq!(read_str(&core, ns, "x.json").await, before);

    // A new file whose first write is rejected never appears.
    assert_eq!(
        errno(write_file(&core, ns, "new.json", b"{").await),
        libc::EINVAL
    );
    assert_eq!(errno(core.lookup(ns, "new.json").await), libc::ENOENT);
    assert_eq!(docs(&core, ns).await, vec!["x.json"]);
}

#[tokio::test]
async fn a_failed_wal_put_is_eio_and_changes_nothing() {
    let base = memory();
    let fp = Arc::new(FailpointStore::new(base));
    let store: Arc<dyn ObjectStore> = fp.clone();
    let core = core_on(&store);
    let ns = mkns(&core, "n").await;
    write_file(&core, ns, "x.json", br#"{"v":1}"#).await.unwrap();
    let before = read_str(&core, ns, "x.json").await;
    fp.fail_nth_put_matching("/wal/", 1);
    assert_eq!(
        errno(write_file(&core, ns, "x.json", br#"{"v":2}"#).await),
        libc::EIO
    );
    assert_eq!(read_str(&core, ns, "x.json").await, before);
    let again = core_on(&store);
    let ns2 = ns_ino(&again, "n").await;
    assert_eq!(read_str(&again, ns2, "x.json").await, before);
}

/// A shell's `> new.json` (and `dd of=new.json`) opens, `dup2`s and closes
/// its first descriptor before writing: that close commits the new empty
/// document. When that commit is refused (here a failed WAL put; in the soak
/// it was a takeover) the new file is removed, and what the program then
/// writes through the descriptor it kept must fail too — it used to go
/// nowhere while write, fsync and close all returned 0, so `dd` reported an
/// acknowledged write that no restart could find.
#[tokio::test]
async fn writes_through_a_handle_whose_new_file_was_refused_at_close_fail() {
    let base = memory();
    let fp = Arc::new(FailpointStore::new(base));
    let store: Arc<dyn ObjectStore> = fp.clone();
    let core = core_on(&store);
    let ns = mkns(&core, "n").await;
    let (_, info) = core.create(ns, "new.json", trunc()).await.unwrap();
    fp.fail_nth_put_matching("/wal/", 1);
    assert_eq!(errno(core.flush(info.fh).await), libc::EIO, "the first close");
    assert_eq!(errno(core.lookup(ns, "new.json").await), libc::ENOENT);
    assert_eq!(
        errno(core.write(info.fh, 0, br#"{"v":1}"#).await),
        libc::EIO,
        "a write after the refused create"
    );
    assert_eq!(errno(core.fsync(info.fh).await), libc::EIO);
    assert_eq!(errno(core.flush(info.fh).await), libc::EIO, "the last close");
    core.release(info.fh).await.unwrap();
    assert_eq!(errno(core.lookup(ns, "new.json").await), libc::ENOENT);
    let again = core_on(&store);
    let ns2 = ns_ino(&again, "n").await;
    assert_eq!(errno(again.lookup(ns2, "new.json").await), libc::ENOENT);
    // The store is fine again: a fresh open of the name saves it.
    write_file(&again, ns2, "new.json", br#"{"v":2}"#)
        .await
        .unwrap();
    assert_eq!(read_str(&again, ns2, "new.json").await, r#"{"v":2}"#);
}

#[tokio::test]
async fn a_fenced_writer_gets_erofs() {
    let store = memory();
    let first = core_on(&store);
    let ns = mkns(&first, "n").await;
    write_file(&first, ns, "x.json", br#"{"v":1}"#).await.unwrap();
    let second = core_on(&store);
    let ns2 = ns_ino(&second, "n").await;
    write_file(&second, ns2, "y.json", br#"{"v":2}"#)
        .await
        .unwrap();
    assert_eq!(
        errno(write_file(&first, ns, "x.json", br#"{"v":3}"#).await),
        libc::EROFS
    );
    assert_eq!(read_str(&second, ns2, "x.json").await, r#"{"v":1}"#);
}

#[tokio::test]
async fn partial_writes_and_truncate_edit_the_stored_content() {
    let core = core_on(&memory());
    let ns = mkns(&core, "n").await;
    write_file(&core, ns, "x.json", br#"{"v":1}"#).await.unwrap();
    let old = read_str(&core, ns, "x.json").await;
    // Overwrite in place at an offset (like `dd conv=notrunc`).
    let attr = core.lookup(ns, "x.json").await.unwrap();
    let info = core.open(attr.ino, OpenMode::write_only()).await.unwrap();
    let pos = old.find('1').unwrap() as u64;
    core.write(info.fh, pos, b"7").await.unwrap();
    core.flush(info.fh).await.unwrap();
    core.release(info.fh).await.unwrap();
    assert_eq!(read_str(&core, ns, "x.json").await, r#"{"v":7}"#);
    // `truncate -s 0` by path: the empty document, zero bytes.
    let change = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(core.setattr(attr.ino, change).await.unwrap().size, 0);
    assert_eq!(read_str(&core, ns, "x.json").await, "");
}

#[tokio::test]
async fn chmod_chown_are_accepted_only_as_no_ops_and_times_are_kept() {
    let store = memory();
    let core = core_on(&store);
    let ns = mkns(&core, "n").await;
    write_file(&core, ns, "x.json", b"{}").await.unwrap();
    let attr = core.lookup(ns, "x.json").await.unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_234_567_890, 123_456_789);
    let same = SetAttr {
        mode: Some(u32::from(attr.perm) | libc::S_IFREG),
        uid: Some(attr.uid),
        gid: Some(attr.gid),
        mtime: Some(when),
        atime: Some(std::time::SystemTime::UNIX_EPOCH),
        ..SetAttr::default()
    };
    let after = core.setattr(attr.ino, same).await.unwrap();
    assert_eq!((after.size, after.mtime), (attr.size, when));
    assert_eq!(read_str(&core, ns, "x.json").await, "{}");
    let again = core_on(&store);
    let ns2 = ns_ino(&again, "n").await;
    assert_eq!(again.lookup(ns2, "x.json").await.unwrap().mtime, when);
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    assert_eq!(errno(core.setattr(attr.ino, chmod).await), libc::EPERM);
    let chown = SetAttr {
        uid: Some(attr.uid + 1),
        ..SetAttr::default()
    };
    assert_eq!(errno(core.setattr(attr.ino, chown).await), libc::EPERM);
}

#[tokio::test]
async fn unlink_and_rename_are_single_batches() {
    let store = memory();
    let core = core_on(&store);
    let ns = mkns(&core, "n").await;
    write_file(&core, ns, "a.json", br#"{"k":"a"}"#).await.unwrap();
    write_file(&core, ns, "b.json", br#"{"k":"b"}"#).await.unwrap();
    core.rename(ns, "a.json", ns, "c.json", RenameFlags::default())
        .await
        .unwrap();
    assert_eq!(read_str(&core, ns, "c.json").await, r#"{"k":"a"}"#);
    assert_eq!(errno(core.lookup(ns, "a.json").await), libc::ENOENT);
    // Onto an existing document: replaced.
    core.rename(ns, "c.json", ns, "b.json", RenameFlags::default())
        .await
        .unwrap();
    assert_eq!(read_str(&core, ns, "b.json").await, r#"{"k":"a"}"#);
    let noreplace = RenameFlags {
        noreplace: true,
        ..RenameFlags::default()
    };
    write_file(&core, ns, "d.json", b"{}").await.unwrap();
    assert_eq!(
        errno(core.rename(ns, "d.json", ns, "b.json", noreplace).await),
        libc::EEXIST
    );
    core.unlink(ns, "d.json").await.unwrap();
    assert_eq!(errno(core.unlink(ns, "d.json").await), libc::ENOENT);
    let again = core_on(&store);
    assert_eq!(docs(&again, ns_ino(&again, "n").await).await, vec!["b.json"]);
    // Across namespaces: EXDEV, so mv copies.
    let other = mkns(&core, "m").await;
    assert_eq!(
        errno(
            core.rename(ns, "b.json", other, "b.json", RenameFlags::default())
                .await
        ),
        libc::EXDEV
    );
}

#[tokio::test]
async fn sed_and_rsync_temporaries_commit_on_rename() {
    let store = memory();
    let core = core_on(&store);
    let ns = mkns(&core, "n").await;
    write_file(&core, ns, "x.json", br#"{"t":"Hello"}"#)
        .await
        .unwrap();
    for tmp in ["sedAbC123", ".x.json.AbCdEf"] {
        write_file(&core, ns, tmp, br#"{"t":"Hi"}"#).await.unwrap();
        assert!(list(&core, ns).await.contains(&tmp.to_string()));
        core.rename(ns, tmp, ns, "x.json", RenameFlags::default())
            .await
            .unwrap();
        assert_eq!(read_str(&core, ns, "x.json").await, r#"{"t":"Hi"}"#);
        assert!(!list(&core, ns).await.contains(&tmp.to_string()));
    }
    // Invalid content: EINVAL, the scratch file stays, the document is intact.
    write_file(&core, ns, "sedBad", b"{oops").await.unwrap();
    assert_eq!(
        errno(
            core.rename(ns, "sedBad", ns, "x.json", RenameFlags::default())
                .await
        ),
        libc::EINVAL
    );
    assert_eq!(read_str(&core, ns, "sedBad").await, "{oops");
    assert_eq!(read_str(&core, ns, "x.json").await, r#"{"t":"Hi"}"#);
    // Scratch files never reach the store.
    let again = core_on(&store);
    let ns2 = ns_ino(&again, "n").await;
    assert_eq!(errno(again.lookup(ns2, "sedBad").await), libc::ENOENT);
}

#[tokio::test]
async fn vim_save_keeps_the_document_until_the_new_one_is_committed() {
    let store = memory();
    let core = core_on(&store);
    let ns = mkns(&core, "n").await;
    write_file(&core, ns, "x.json", br#"{"v":1}"#).await.unwrap();
    let old = read_str(&core, ns, "x.json").await;
    // vim: probe file, backup by rename, new file, delete backup.
    write_file(&core, ns, "4913", b"").await.unwrap();
    core.unlink(ns, "4913").await.unwrap();
    core.rename(ns, "x.json", ns, "x.json~", RenameFlags::default())
        .await
        .unwrap();
    assert_eq!(errno(core.lookup(ns, "x.json").await), libc::ENOENT);
    assert_eq!(read_str(&core, ns, "x.json~").await, old);

    // The daemon dying here loses nothing: the document is still stored.
    let crashed = core_on(&memory_clone(&store).await);
    let cns = ns_ino(&crashed, "n").await;
    assert_eq!(read_str(&crashed, cns, "x.json").await, old);

    write_file(&core, ns, "x.json", br#"{"v":2}"#).await.unwrap();
    core.unlink(ns, "x.json~").await.unwrap();
    assert_eq!(read_str(&core, ns, "x.json").await, r#"{"v":2}"#);
    let again = core_on(&store);
    let ns2 = ns_ino(&again, "n").await;
    assert_eq!(read_str(&again, ns2, "x.json").await, r#"{"v":2}"#);
}

/// A copy of a memory store's objects (a "crash" that leaves the original running).
async fn memory_clone(store: &Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    let copy = memory();
    for meta in store.list("", None).await.unwrap() {
        let data = store.get(&meta.key).await.unwrap();
        copy.put(&meta.key, data).await.unwrap();
    }
    copy
}

#[tokio::test]
async fn moving_a_document_to_a_scratch_name_then_deleting_it_deletes_it() {
    let store = memory();
    let core = core_on(&store);
    let ns = mkns(&core, "n").await;
    write_file(&core, ns, "a.json", b"{}").await.unwrap();
    core.rename(ns, "a.json", ns, "a.bak", RenameFlags::default())
        .await
        .unwrap();
    core.rename(ns, "a.bak", ns, "a.old", RenameFlags::default())
        .await
        .unwrap();
    assert_eq!(docs(&core, ns).await, Vec::<String>::new());
    core.unlink(ns, "a.old").await.unwrap();

    // Renamed back: committed again, nothing lost.
    write_file(&core, ns, "b.json", br#"{"z":1}"#).await.unwrap();
    core.rename(ns, "b.json", ns, "b.json~", RenameFlags::default())
        .await
        .unwrap();
    core.rename(ns, "b.json~", ns, "b.json", RenameFlags::default())
        .await
        .unwrap();
    assert_eq!(read_str(&core, ns, "b.json").await, r#"{"z":1}"#);

    let again = core_on(&store);
    assert_eq!(docs(&again, ns_ino(&again, "n").await).await, vec!["b.json"]);
}

#[tokio::test]
async fn file_names_encode_ids_and_slashes_are_directories() {
    let store = memory();
    let core = core_on(&store);
    let ns = mkns(&core, "n").await;
    let a = core.mkdir(ns, "a").await.unwrap().ino;
    write_file(&core, a, "b.json", br#"{"id":"a/b"}"#)
        .await
        .unwrap();
    write_file(&core, ns, "%2Edot.json", br#"{"id":".dot"}"#)
        .await
        .unwrap();
    assert_eq!(
        errno(write_file(&core, a, "b.json", br#"{"id":"b"}"#).await),
        libc::EINVAL
    );
    // The old flat encoding of '/' is just a scratch name now.
    write_file(&core, ns, "a%2Fc.json", b"{}").await.unwrap();
    let long = format!("{}.json", "x".repeat(220));
    assert_eq!(
        errno(write_file(&core, ns, &long, b"{}").await),
        libc::ENAMETOOLONG
    );
    // (docs() lists names ending in .json: the scratch file too)
    assert_eq!(docs(&core, ns).await, vec!["a%2Fc.json", "%2Edot.json"]);
    assert_eq!(docs(&core, a).await, vec!["b.json"]);
    // A fresh core (a remount): the directory exists because a document does.
    let again = core_on(&store);
    let ns2 = ns_ino(&again, "n").await;
    let names = list(&again, ns2).await;
    assert!(
        names.contains(&"a".to_string()) && !names.contains(&"a%2Fc.json".to_string()),
        "{names:?}"
    );
    let a2 = again.lookup(ns2, "a").await.unwrap();
    assert_eq!(a2.kind, reef::fs::FileKind::Directory);
    assert_eq!(read_str(&again, a2.ino, "b.json").await, r#"{"id":"a/b"}"#);
}

#[tokio::test]
async fn listings_page_through_large_namespaces_exactly_once() {
    let store = memory();
    let core = core_on(&store);
    let ns = mkns(&core, "big").await;
    let mut expected = BTreeSet::new();
    for i in 0..2300 {
        let name = format!("d{i:05}.json");
        write_file(&core, ns, &name, b"{}").await.unwrap();
        expected.insert(name);
    }
    write_file(&core, ns, "scratch~", b"x").await.unwrap();
    for take in [usize::MAX, 7, 100] {
        let names = list_with(&core, ns, take).await;
        let unique: BTreeSet<_> = names.iter().cloned().collect();
        assert_eq!(unique.len(), names.len(), "duplicates with take={take}");
        let docs: BTreeSet<_> = names.iter().filter(|n| n.starts_with('d')).cloned().collect();
        assert_eq!(docs, expected, "take={take}");
        for fixed in [".", "..", "scratch~"] {
            assert!(unique.contains(fixed), "{fixed} missing");
        }
        // Control files are reachable by name only.
        for control in [".flush", ".compact", ".gc", ".verify", ".repair", ".stats"] {
            assert!(!unique.contains(control), "{control} listed");
        }
    }
    // Writes during a listing: ids beyond the cursor show up, none twice.
    let fh = core.opendir(ns).await.unwrap();
    let first = core.readdir(ns, fh, 0, false).await.unwrap();
    let offset = first.last().unwrap().offset;
    write_file(&core, ns, "zzz.json", b"{}").await.unwrap();
    core.unlink(ns, "d02299.json").await.unwrap();
    let mut names: Vec<String> = first.into_iter().map(|e| e.name).collect();
    let mut offset = offset;
    loop {
        let batch = core.readdir(ns, fh, offset, true).await.unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.offset;
        for e in batch {
            if e.name != "." && e.name != ".." {
                core.forget(e.ino, 1);
            }
            names.push(e.name);
        }
    }
    core.releasedir(fh);
    assert!(names.contains(&"zzz.json".to_string()));
    assert!(!names.contains(&"d02299.json".to_string()));
    let unique: BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len());
}

#[tokio::test]
async fn namespaces_are_directories() {
    let store = memory();
    let core = core_on(&store);
    let ns = mkns(&core, "a").await;
    mkns(&core, "b").await;
    assert_eq!(errno(core.mkdir(ROOT_INO, "a").await), libc::EEXIST);
    // A name no id component has: a scratch directory, in memory only.
    core.mkdir(ns, ".sub").await.unwrap();
    core.rmdir(ns, ".sub").await.unwrap();
    assert_eq!(errno(core.mkdir(ns, "sub.json").await), libc::EPERM);
    assert_eq!(errno(core.mkdir(ROOT_INO, ".hidden").await), libc::EINVAL);
    assert_eq!(
        errno(core.create(ROOT_INO, "x.json", trunc()).await),
        libc::EPERM
    );
    write_file(&core, ns, "x.json", b"{}").await.unwrap();
    assert_eq!(errno(core.rmdir(ROOT_INO, "a").await), libc::ENOTEMPTY);
    core.unlink(ns, "x.json").await.unwrap();
    // rm -rf also unlinks the control files: a harmless no-op.
    core.unlink(ns, ".flush").await.unwrap();
    core.rmdir(ROOT_INO, "a").await.unwrap();
    assert_eq!(errno(core.lookup(ROOT_INO, "a").await), libc::ENOENT);
    let again = core_on(&store);
    assert_eq!(list(&again, ROOT_INO).await, vec![".", "..", "b"]);
}

#[tokio::test]
async fn control_files_run_on_close_and_reading_never_mutates() {
    let store = memory();
    let core = core_on(&store);
    let ns = mkns(&core, "n").await;
    for i in 0..10 {
        write_file(&core, ns, &format!("d{i}.json"), br#"{"a":1}"#)
            .await
            .unwrap();
    }
    let stats: serde_json::Value =
        serde_json::from_str(&read_str(&core, ns, ".stats").await).unwrap();
    let version = stats["manifest_version"].as_u64().unwrap();
    // Reading every control file changes no object.
    let objects = |s: &Arc<dyn ObjectStore>| {
        let s = s.clone();
        async move { s.list("", None).await.unwrap() }
    };
    let before = objects(&store).await;
    for name in [".flush", ".compact", ".gc", ".verify", ".repair", ".stats"] {
        read_file(&core, ns, name).await.unwrap();
    }
    assert_eq!(objects(&store).await, before);
    let report: serde_json::Value =
        serde_json::from_str(&read_str(&core, ns, ".verify").await).unwrap();
    assert_eq!(report["healthy"], serde_json::Value::Bool(true), "{report}");

    // `touch .flush`: opened for writing, closed: the flush runs.
    write_file(&core, ns, ".flush", b"").await.unwrap();
    let stats: serde_json::Value =
        serde_json::from_str(&read_str(&core, ns, ".stats").await).unwrap();
    assert!(stats["manifest_version"].as_u64().unwrap() > version, "{stats}");
    let result = read_str(&core, ns, ".flush").await;
    assert!(result.contains("\"ok\": true"), "{result}");
    write_file(&core, ns, ".compact", b"go\n").await.unwrap();
    write_file(&core, ns, ".repair", b"").await.unwrap();
    assert!(read_str(&core, ns, ".repair").await.contains("\"ok\": true"));
    // After repair the engine was reopened: documents still read and write.
    assert_eq!(docs(&core, ns).await.len(), 10);
    write_file(&core, ns, "after.json", b"{}").await.unwrap();
    assert_eq!(errno(write_file(&core, ns, ".verify", b"").await), libc::EACCES);
    assert_eq!(
        errno(
            core.rename(ns, ".flush", ns, "f.json", RenameFlags::default())
                .await
        ),
        libc::EPERM
    );
}

#[tokio::test]
async fn read_only_cores_refuse_every_change() {
    let store = memory();
    let core = core_on(&store);
    let ns = mkns(&core, "n").await;
    write_file(&core, ns, "x.json", b"{}").await.unwrap();
    drop(core);
    let ro = FsCore::new(
        store.clone(),
        CoreConfig {
            read_only: true,
            ..config()
        },
    );
    let ns = ns_ino(&ro, "n").await;
    assert_eq!(read_str(&ro, ns, "x.json").await, "{}");
    assert_eq!(errno(write_file(&ro, ns, "x.json", b"{}").await), libc::EROFS);
    assert_eq!(errno(ro.unlink(ns, "x.json").await), libc::EROFS);
    assert_eq!(errno(ro.mkdir(ROOT_INO, "m").await), libc::EROFS);
    assert_eq!(
        errno(
            ro.rename(ns, "x.json", ns, "y.json", RenameFlags::default())
                .await
        ),
        libc::EROFS
    );
    let attr = ro.lookup(ns, ".flush").await.unwrap();
    assert_eq!(
        errno(ro.open(attr.ino, OpenMode::write_only()).await),
        libc::EROFS
    );
}

#[tokio::test]
async fn scratch_memory_is_bounded() {
    let store = memory();
    let core = FsCore::new(
        store,
        CoreConfig {
            scratch_limit: 10_000,
            ..config()
        },
    );
    let ns = mkns(&core, "n").await;
    write_file(&core, ns, "a.tmp", &[1u8; 8000]).await.unwrap();
    assert_eq!(
        errno(write_file(&core, ns, "b.tmp", &[1u8; 4000]).await),
        libc::ENOSPC
    );
    core.unlink(ns, "a.tmp").await.unwrap();
    core.unlink(ns, "b.tmp").await.unwrap();
    write_file(&core, ns, "c.tmp", &[1u8; 9000]).await.unwrap();
}

// ---------------------------------------------------------------------------
// Model-based: random operation sequences against a BTreeMap model.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Write(usize, usize),
    Rename(usize, usize),
    Unlink(usize),
    Flush,
    Compact,
    Remount,
}

const NAMES: [&str; 6] = [
    "a.json",
    "b.json",
    "c%2Fd.json",
    "a.json~",
    "sedX1",
    ".b.json.Q",
];
const CONTENTS: [&str; 5] = [
    r#"{"n":1}"#,
    r#"{"s":"two","l":[1,2]}"#,
    "",
    "{broken",
    r#"{"id":"zz"}"#,
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..NAMES.len(), 0..CONTENTS.len()).prop_map(|(n, c)| Op::Write(n, c)),
        4 => (0..NAMES.len(), 0..NAMES.len()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (0..NAMES.len()).prop_map(Op::Unlink),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Remount),
    ]
}

fn doc_id(name: &str) -> Option<DocId> {
    match reef::fs::classify(name, 200) {
        reef::fs::NameKind::Doc(id) => Some(id),
        _ => None,
    }
}

#[derive(Default, Debug)]
struct Model {
    /// Stored documents: id -> JSON as stored.
    stored: BTreeMap<String, String>,
    /// Hidden document id -> the scratch name carrying it.
    hidden: BTreeMap<String, String>,
    scratch: BTreeMap<String, Vec<u8>>,
}

impl Model {
    fn visible(&self) -> BTreeMap<String, String> {
        self.stored
            .iter()
            .filter(|(id, _)| !self.hidden.contains_key(*id))
            .map(|(id, json)| (reef::fs::doc_file_name(&DocId::from(id.as_str())), json.clone()))
            .collect()
    }

    fn exists(&self, name: &str) -> bool {
        match doc_id(name) {
            Some(id) => self.visible().contains_key(name) && self.stored.contains_key(id.as_str()),
            None => self.scratch.contains_key(name),
        }
    }

    fn drop_scratch(&mut self, name: &str) {
        self.scratch.remove(name);
        let carried: Vec<String> = self
            .hidden
            .iter()
            .filter(|(_, s)| *s == name)
            .map(|(id, _)| id.clone())
            .collect();
        for id in carried {
            self.hidden.remove(&id);
            self.stored.remove(&id);
        }
    }

    /// Expected errno (0 = success) after applying the op to the model.
    fn apply(&mut self, op: &Op) -> i32 {
        match op {
            Op::Write(n, c) => {
                let (name, content) = (NAMES[*n], CONTENTS[*c]);
                match doc_id(name) {
                    Some(id) => match Document::from_json_bytes(&id, content.as_bytes()) {
                        Ok(_) => {
                            self.stored.insert(id.into_string(), content.to_string());
                            self.unhide(name);
                            0
                        }
                        Err(_) => libc::EINVAL,
                    },
                    None => {
                        self.scratch.insert(name.into(), content.as_bytes().to_vec());
                        0
                    }
                }
            }
            Op::Unlink(n) => {
                let name = NAMES[*n];
                if !self.exists(name) {
                    return libc::ENOENT;
                }
                match doc_id(name) {
                    Some(id) => {
                        self.stored.remove(id.as_str());
                    }
                    None => self.drop_scratch(name),
                }
                0
            }
            Op::Rename(a, b) => {
                let (a, b) = (NAMES[*a], NAMES[*b]);
                if !self.exists(a) {
                    return libc::ENOENT;
                }
                if a == b {
                    return 0;
                }
                match (doc_id(a), doc_id(b)) {
                    (Some(ida), Some(idb)) => {
                        let json = self.stored.remove(ida.as_str()).unwrap();
                        let json = reef::types::with_id(json.as_bytes(), &idb).unwrap();
                        self.stored
                            .insert(idb.into_string(), String::from_utf8(json).unwrap());
                        self.unhide(b);
                    }
                    (Some(ida), None) => {
                        let json = self.stored[ida.as_str()].clone();
                        self.drop_scratch(b);
                        self.scratch.insert(b.into(), json.into_bytes());
                        self.hidden.insert(ida.into_string(), b.into());
                    }
                    (None, Some(idb)) => {
                        let data = self.scratch[a].clone();
                        if Document::from_json_bytes(&idb, &data).is_err() {
                            return libc::EINVAL;
                        }
                        self.scratch.remove(a);
                        let carried: Vec<String> = self
                            .hidden
                            .iter()
                            .filter(|(_, s)| *s == a)
                            .map(|(id, _)| id.clone())
                            .collect();
                        for id in carried {
                            self.hidden.remove(&id);
                            if id != idb.as_str() {
                                self.stored.remove(&id);
                            }
                        }
                        self.stored
                            .insert(idb.into_string(), String::from_utf8(data).unwrap());
                        self.unhide(b);
                    }
                    (None, None) => {
                        self.drop_scratch(b);
                        let data = self.scratch.remove(a).unwrap();
                        self.scratch.insert(b.into(), data);
                        for carrier in self.hidden.values_mut() {
                            if carrier == a {
                                *carrier = b.into();
                            }
                        }
                    }
                }
                0
            }
            Op::Flush | Op::Compact => 0,
            Op::Remount => {
                self.scratch.clear();
                self.hidden.clear();
                0
            }
        }
    }

    fn unhide(&mut self, doc_name: &str) {
        if let Some(id) = doc_id(doc_name) {
            self.hidden.remove(id.as_str());
        }
    }
}

async fn run_ops(ops: Vec<Op>) {
    let store = memory();
    let mut core = core_on(&store);
    let mut ns = mkns(&core, "m").await;
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let expected = model.apply(op);
        let got = match op {
            Op::Write(n, c) => write_file(&core, ns, NAMES[*n], CONTENTS[*c].as_bytes()).await,
            Op::Rename(a, b) => {
                core.rename(ns, NAMES[*a], ns, NAMES[*b], RenameFlags::default())
                    .await
            }
            Op::Unlink(n) => core.unlink(ns, NAMES[*n]).await,
            Op::Flush => write_file(&core, ns, ".flush", b"").await,
            Op::Compact => write_file(&core, ns, ".compact", b"").await,
            Op::Remount => {
                core = core_on(&store);
                ns = ns_ino(&core, "m").await;
                Ok(())
            }
        };
        let got = got.err().map_or(0, |e| e.errno());
        assert_eq!(got, expected, "step {step}: {op:?} with model {model:?}");
        // Compare every visible file with the model.
        let listed: BTreeSet<String> = list(&core, ns)
            .await
            .into_iter()
            .filter(|n| {
                !n.starts_with(".flush")
                    && !matches!(
                        n.as_str(),
                        "." | ".." | ".compact" | ".gc" | ".verify" | ".repair" | ".stats"
                    )
            })
            .collect();
        let mut want: BTreeSet<String> = model.visible().into_keys().collect();
        want.extend(model.scratch.keys().cloned());
        assert_eq!(listed, want, "step {step}: {op:?}");
        for (name, json) in model.visible() {
            assert_eq!(read_str(&core, ns, &name).await, json, "step {step}: {name}");
        }
        for (name, data) in &model.scratch {
            assert_eq!(
                &read_file(&core, ns, name).await.unwrap(),
                data,
                "step {step}: {name}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 64 by default; PROPTEST_CASES=N for a deeper run.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]
    #[test]
    fn the_core_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..30)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_ops(ops));
    }
}

#[tokio::test]
async fn unchanged_documents_keep_the_kernel_page_cache() {
    let core = core_on(&memory());
    let ns = mkns(&core, "n").await;
    write_file(&core, ns, "x.json", br#"{"v":1}"#).await.unwrap();
    let ino = core.lookup(ns, "x.json").await.unwrap().ino;
    let open_ro = |core: Arc<FsCore>| async move {
        let info = core.open(ino, OpenMode::read_only()).await.unwrap();
        core.release(info.fh).await.unwrap();
        info.keep_cache
    };
    assert!(!open_ro(core.clone()).await, "first open fills the cache");
    assert!(open_ro(core.clone()).await, "unchanged: keep it");
    // Rewritten through a truncating open with nothing else open: the
    // kernel holds exactly the bytes written, which are now stored.
    write_file(&core, ns, "x.json", br#"{"v":2}"#).await.unwrap();
    assert!(open_ro(core.clone()).await, "rewritten from empty: keep it");
    // Edited in place: the kernel's pages mix old and new bytes.
    let info = core.open(ino, OpenMode::write_only()).await.unwrap();
    core.write(info.fh, 5, b"3").await.unwrap();
    core.flush(info.fh).await.unwrap();
    core.release(info.fh).await.unwrap();
    assert!(!open_ro(core.clone()).await, "edited in place: drop it");
    assert!(open_ro(core.clone()).await);
    assert_eq!(read_str(&core, ns, "x.json").await, r#"{"v":3}"#);
    write_file(&core, ns, "x.json", br#"{"v":2}"#).await.unwrap();
    // A writer may leave rejected bytes in the page cache: drop it after.
    assert_eq!(
        errno(write_file(&core, ns, "x.json", b"{bad").await),
        libc::EINVAL
    );
    assert!(!open_ro(core.clone()).await);
    assert_eq!(read_str(&core, ns, "x.json").await, r#"{"v":2}"#);
}

#[tokio::test]
async fn directories_move_as_a_whole_and_never_into_themselves() {
    let store = memory();
    let core = core_on(&store);
    let ns = mkns(&core, "n").await;
    let a = core.mkdir(ns, "a").await.unwrap().ino;
    let b = core.mkdir(a, "b").await.unwrap().ino;
    write_file(&core, b, "x.json", br#"{"id":"a/b/x"}"#)
        .await
        .unwrap();
    write_file(&core, a, "y.json", b" {} ").await.unwrap();
    assert_eq!(
        errno(core.rename(ns, "a", b, "c", RenameFlags::default()).await),
        libc::EINVAL
    );
    // Onto a non-empty directory: ENOTEMPTY; onto a file: ENOTDIR.
    let other = core.mkdir(ns, "other").await.unwrap().ino;
    write_file(&core, other, "z.json", b"{}").await.unwrap();
    assert_eq!(
        errno(core.rename(ns, "a", ns, "other", RenameFlags::default()).await),
        libc::ENOTEMPTY
    );
    core.rename(ns, "a", other, "moved", RenameFlags::default())
        .await
        .unwrap();
    let moved = core.lookup(other, "moved").await.unwrap().ino;
    let mb = core.lookup(moved, "b").await.unwrap().ino;
    assert_eq!(
        read_str(&core, mb, "x.json").await,
        r#"{"id":"other/moved/b/x"}"#
    );
    assert_eq!(read_str(&core, moved, "y.json").await, " {} ");
    assert_eq!(errno(core.lookup(ns, "a").await), libc::ENOENT);
    // The same after a remount: the ids moved in the store.
    let again = core_on(&store);
    let ns2 = ns_ino(&again, "n").await;
    assert_eq!(list(&again, ns2).await, vec![".", "..", "other"]);
    let o2 = again.lookup(ns2, "other").await.unwrap().ino;
    let mut names = list(&again, o2).await;
    names.sort();
    assert_eq!(names, vec![".", "..", "moved", "z.json"]);
    // A scratch directory moves only to another scratch name.
    core.mkdir(ns, ".work").await.unwrap();
    write_file(&core, core.lookup(ns, ".work").await.unwrap().ino, "t", b"x")
        .await
        .unwrap();
    assert_eq!(
        errno(
            core.rename(ns, ".work", ns, "work", RenameFlags::default())
                .await
        ),
        libc::EXDEV
    );
    core.rename(ns, ".work", ns, ".work2", RenameFlags::default())
        .await
        .unwrap();
    let w = core.lookup(ns, ".work2").await.unwrap().ino;
    assert_eq!(read_str(&core, w, "t").await, "x");
}

/// A read-only core follows its writer's directories: one appears when a
/// document below it is written, and goes when the last one is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_directories_come_and_go_with_their_documents() {
    let store = memory();
    let w = core_on(&store);
    let ns = mkns(&w, "n").await;
    let a = w.mkdir(ns, "a").await.unwrap().ino;
    write_file(&w, a, "x.json", b"{}").await.unwrap();
    let ro = FsCore::new(
        store.clone(),
        CoreConfig {
            read_only: true,
            refresh: Some(std::time::Duration::from_millis(20)),
            ..config()
        },
    );
    let rns = ns_ino(&ro, "n").await;
    assert!(ro.lookup(rns, "a").await.is_ok());
    w.unlink(a, "x.json").await.unwrap();
    let b = w.mkdir(ns, "b").await.unwrap().ino;
    write_file(&w, b, "y.json", b"{}").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let gone = matches!(ro.lookup(rns, "a").await, Err(e) if e.errno() == libc::ENOENT);
        let there = ro.lookup(rns, "b").await.is_ok();
        if gone && there {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gone {gone}, there {there}"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(list(&ro, rns).await, vec![".", "..", "b"]);
}
