//! Behaviour of `LocalFsStore` beyond the shared conformance suite
//! (tests/store_conformance.rs): temp files, directory pruning, races
//! between puts and deletes in one directory, reopening.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::{LocalFsStore, NameSync, ObjectStore, StoreError};

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn files_under(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        out.push(entry.file_name().to_string_lossy().into_owned());
        if entry.file_type().expect("file type").is_dir() {
            files_under(&entry.path(), out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nested_keys_leave_no_temp_files_and_prune_dirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LocalFsStore::new(dir.path().to_path_buf()).expect("open"));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = format!("ns/deep/a/b/c/{:02}", i % 8);
                let data = Bytes::from(vec![i as u8; 1000 + i]);
                if i % 2 == 0 {
                    store.put(&key, data).await
                } else {
                    // Racing deletes prune directories puts are using.
                    store
                        .delete(&format!("ns/deep/a/b/c/{:02}", (i + 1) % 8))
                        .await
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("put/delete");
    }
    let mut names = Vec::new();
    files_under(dir.path(), &mut names);
    assert!(!names.iter().any(|n| n.starts_with(".tmp-")), "{names:?}");
    store.put("ns/deep/a/b/c/last", b("x")).await.expect("put");
    assert_eq!(store.get("ns/deep/a/b/c/last").await.expect("get"), b("x"));
    for meta in store.list("", None).await.expect("list") {
        store.delete(&meta.key).await.expect("delete");
    }
    let mut left = Vec::new();
    files_under(dir.path(), &mut left);
    assert!(left.is_empty(), "empty directories left behind: {left:?}");
    assert!(dir.path().is_dir(), "the root itself stays");
}

#[tokio::test]
async fn stray_temp_files_are_invisible_and_reserved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalFsStore::new(dir.path().to_path_buf()).expect("open");
    store
        .put("ns/wal/00000000000000000001", b("w"))
        .await
        .expect("put");
    // What a crash between writing and renaming leaves behind.
    std::fs::write(dir.path().join("ns/wal/.tmp-1-2-3"), "partial").expect("write");
    let keys: Vec<String> = store
        .list("ns/", None)
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys, ["ns/wal/00000000000000000001"]);
    for key in ["ns/wal/.tmp-1-2-3", ".tmp-x/y"] {
        assert!(
            matches!(store.get(key).await, Err(StoreError::BadKey(_))),
            "{key}"
        );
    }
}

#[tokio::test]
async fn data_survives_reopen_and_root_must_be_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("r");
    let store = LocalFsStore::new(root.clone()).expect("open");
    store
        .put_if_absent("ns/manifest/00000000000000000001", b("m"))
        .await
        .expect("put");
    drop(store);
    let again = LocalFsStore::new(root.clone()).expect("reopen");
    assert_eq!(
        again
            .get("ns/manifest/00000000000000000001")
            .await
            .expect("get"),
        b("m")
    );
    assert_eq!(again.describe(), format!("file://{}", root.display()));
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").expect("write");
    assert!(LocalFsStore::new(file).is_err());
}

#[tokio::test]
async fn an_object_is_not_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalFsStore::new(dir.path().to_path_buf()).expect("open");
    store.put("ns/x/y", b("1")).await.expect("put");
    assert!(store
        .get("ns/x")
        .await
        .expect_err("a directory")
        .is_not_found());
    assert!(store
        .get("ns/x/y/z")
        .await
        .expect_err("under a file")
        .is_not_found());
    let err = store
        .get_range("ns/x", 0..100_000)
        .await
        .expect_err("a directory");
    assert!(err.is_not_found(), "{err}");
    store
        .delete("ns/x")
        .await
        .expect("deleting a directory name is a no-op");
    assert_eq!(store.get("ns/x/y").await.expect("still there"), b("1"));
}

#[tokio::test]
async fn both_put_sequences_place_whole_objects_once() {
    for sync in [NameSync::WithFile, NameSync::Directory] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalFsStore::with_name_sync(dir.path().to_path_buf(), sync).expect("open");
        store
            .put_if_absent("ns/wal/1", b("first"))
            .await
            .expect("create");
        let again = store.put_if_absent("ns/wal/1", b("second")).await;
        assert!(
            matches!(again, Err(StoreError::AlreadyExists(_))),
            "{sync:?}: {again:?}"
        );
        assert_eq!(
            store.get("ns/wal/1").await.expect("get"),
            b("first"),
            "{sync:?}"
        );
        store.put("ns/manifest", b("v1")).await.expect("put");
        store.put("ns/manifest", b("v2")).await.expect("overwrite");
        assert_eq!(
            store.get("ns/manifest").await.expect("get"),
            b("v2"),
            "{sync:?}"
        );
        let mut names = Vec::new();
        files_under(dir.path(), &mut names);
        names.sort();
        assert_eq!(
            names,
            ["1", "manifest", "ns", "wal"],
            "{sync:?}: no temp file is left"
        );
    }
}

#[test]
fn only_journalling_filesystems_sync_names_with_the_file() {
    let of = NameSync::for_filesystem;
    assert_eq!(of(0xEF53, Some(true)), NameSync::WithFile, "ext4");
    assert_eq!(
        of(0xEF53, Some(false)),
        NameSync::Directory,
        "ext4 without a journal, ext2"
    );
    assert_eq!(of(0xEF53, None), NameSync::Directory, "ext4, journal unknown");
    assert_eq!(of(0x5846_5342, None), NameSync::WithFile, "xfs");
    assert_eq!(of(0x9123_683E, None), NameSync::WithFile, "btrfs");
    assert_eq!(of(0x0102_1994, None), NameSync::Directory, "tmpfs");
    assert_eq!(of(0x6969, None), NameSync::Directory, "nfs");
}

/// The store asks the filesystem it lives on: this one's type, as the
/// kernel reports it for the test directory's mount, decides the sequence.
#[test]
fn the_store_detects_its_filesystem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalFsStore::new(dir.path().to_path_buf()).expect("open");
    let fstype = mount_fstype(dir.path());
    let journalling = match fstype.as_str() {
        "xfs" | "btrfs" => true,
        // jbd2 lists the journal of every journalled ext3/ext4 it runs, by
        // device name (`vda-8`): a witness apart from the store's sysfs check.
        "ext4" | "ext3" => {
            use std::os::unix::fs::MetadataExt;
            let dev = std::fs::metadata(dir.path()).expect("stat").dev();
            let block = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
            let link = std::fs::read_link(block).expect("the block device of the test directory");
            let device = link
                .file_name()
                .expect("device name")
                .to_string_lossy()
                .into_owned();
            std::fs::read_dir("/proc/fs/jbd2").is_ok_and(|journals| {
                journals.flatten().any(|j| {
                    j.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{device}-"))
                })
            })
        }
        _ => false,
    };
    let expected = if journalling {
        NameSync::WithFile
    } else {
        NameSync::Directory
    };
    assert_eq!(
        store.name_sync(),
        expected,
        "{} is on {fstype}",
        dir.path().display()
    );
}

/// The filesystem type of the mount holding `path`: the longest mount
/// point that is a prefix of it.
fn mount_fstype(path: &Path) -> String {
    let path = std::fs::canonicalize(path).expect("canonical path");
    crate::fs::mounts()
        .into_iter()
        .filter(|(point, _, _)| path.starts_with(point))
        .max_by_key(|(point, _, _)| point.as_os_str().len())
        .map(|(_, fstype, _)| fstype)
        .expect("a mount holds every path")
}
