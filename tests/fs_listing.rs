//! Listing a large namespace through /dev/fuse while it changes: readdir
//! pages the engine's sorted scan, and each page resumes after the last id
//! the previous one returned, so a listing spanning many pages returns
//! every document present throughout exactly once, and no name twice,
//! while documents are created and deleted around its cursor (POSIX leaves
//! only whether those appear unspecified).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reef::engine::{Engine, EngineOptions};
use reef::store::{LocalFsStore, ObjectStore};
use reef::types::WriteBatch;

#[path = "support/mounted.rs"]
mod mounted;
#[path = "support/poll.rs"]
mod poll;
use mounted::{fuse_available, write_close, Mounted};
use poll::wait_until;

/// Several of the listing's engine pages (1,000 documents each).
const STABLE: usize = 6000;
const DEADLINE: Duration = Duration::from_secs(60);

fn stable_name(k: usize) -> String {
    format!("d{k:05}.json")
}

/// Stores the stable documents directly through the engine (fast), flushed
/// into a segment, so the mount lists them from a segment and the churn
/// from its memtable.
fn load(store: &Arc<dyn ObjectStore>) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let engine = Engine::open(store.clone(), "ns", EngineOptions::default())
            .await
            .expect("open engine");
        let mut batch = WriteBatch::new();
        for k in 0..STABLE {
            batch = batch.put_json(format!("d{k:05}"), &b"{\"n\": 1}"[..], None);
        }
        engine.write(batch).await.expect("write");
        engine.flush().await.expect("flush");
    });
}

/// Creates and deletes documents named between the stable ones, all over
/// the namespace (before and after the reader's cursor), counting each
/// operation, until told to stop.
fn churn(dir: PathBuf, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>) -> std::io::Result<()> {
    let mut k = 0usize;
    while !stop.load(Ordering::Acquire) {
        // Spread over the whole id range: 7919 is prime to STABLE.
        let at = (k * 7919) % STABLE;
        let path = dir.join(format!("d{at:05}x{k}.json"));
        write_close(&path, b"{\"churn\": true}")?;
        if k % 2 == 1 {
            std::fs::remove_file(&path)?;
        }
        k += 1;
        ops.fetch_add(1, Ordering::Release);
    }
    Ok(())
}

/// Lists `dir` once, letting the churn make a few operations between
/// every batch of `step` entries read, and returns how often each name
/// appeared.
fn list_interleaved(dir: &Path, ops: &AtomicU64, step: usize) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, entry) in std::fs::read_dir(dir).expect("read_dir").enumerate() {
        let name = entry.expect("dir entry").file_name();
        *seen.entry(name.to_string_lossy().into_owned()).or_default() += 1;
        if i % step == 0 {
            let before = ops.load(Ordering::Acquire);
            wait_until("the churn to make progress", DEADLINE, || {
                ops.load(Ordering::Acquire) >= before + 3
            });
        }
    }
    seen
}

#[test]
fn a_listing_under_concurrent_change_returns_every_stable_name_exactly_once() {
    if !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFsStore::new(tmp.path().to_path_buf()).expect("local store"));
    load(&store);
    let m = Mounted::new(store, "");
    let dir = m.join("ns");

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let churner = {
        let (dir, stop, ops) = (dir.clone(), stop.clone(), ops.clone());
        std::thread::spawn(move || churn(dir, stop, ops))
    };
    // Three listings: each spans several engine pages and many readdir
    // requests, with creates and deletes landing between them.
    let mut listings = Vec::new();
    for _ in 0..3 {
        listings.push(list_interleaved(&dir, &ops, 150));
    }
    stop.store(true, Ordering::Release);
    churner
        .join()
        .expect("churn thread")
        .expect("churn through the mount");
    let made = ops.load(Ordering::Acquire);
    assert!(made >= 3 * (STABLE as u64 / 150), "the churn ran ({made} ops)");

    for seen in &listings {
        for k in 0..STABLE {
            let name = stable_name(k);
            assert_eq!(seen.get(&name), Some(&1), "{name} listed once");
        }
        let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
        assert!(twice.is_empty(), "names listed twice: {twice:?}");
        let churned = seen.keys().filter(|n| n.contains('x')).count();
        let others: Vec<_> = seen
            .keys()
            .filter(|n| !n.contains('x') && n.len() != stable_name(0).len())
            .collect();
        assert!(others.is_empty(), "unexpected names: {others:?}");
        eprintln!("listed {} names, {churned} of them churn", seen.len());
    }
    // Once the churn has stopped, a listing is exact: the stable documents
    // and the churn documents that were kept (every even operation).
    let after: Vec<String> = std::fs::read_dir(&dir)
        .expect("read_dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let kept = made.div_ceil(2) as usize;
    assert_eq!(
        after.len(),
        STABLE + kept,
        "{} listed after the churn",
        after.len()
    );
    let mut unique = after.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), after.len(), "no name twice after the churn");
}

/// Name -> (d_ino, d_type is a directory) of one listing of `dir`; with
/// `stat_each`, each entry is looked up as it is read (as `ls -l` does, so
/// the kernel reads the next pages with readdirplus).
fn listed_kinds(dir: &Path, stat_each: bool) -> BTreeMap<String, (u64, bool)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let is_dir = entry.file_type().expect("d_type").is_dir();
        if stat_each {
            std::fs::symlink_metadata(entry.path()).expect("lstat");
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            out.insert(name, (entry.ino(), is_dir)).is_none(),
            "listed twice"
        );
    }
    out
}

/// Every entry's inode number and type, whether the kernel read its page
/// with plain readdir (the names not yet known to the daemon, then known
/// from a lookup) or readdirplus, are what a lookup of the name returns:
/// stored documents from a segment and from the memtable, directories made
/// by ids, and names that live only in memory (a file being written, a
/// directory made by mkdir), on a mount whose inode bound is far below the
/// listing.
#[test]
fn listed_inode_numbers_and_types_are_what_lookup_returns() {
    if !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFsStore::new(tmp.path().to_path_buf()).expect("local store"));
    load(&store);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let engine = Engine::open(store.clone(), "ns", EngineOptions::default())
            .await
            .expect("open engine");
        let mut batch = WriteBatch::new();
        for k in 0..40 {
            batch = batch.put_json(format!("sub{k:02}/x"), &b"{}"[..], None);
        }
        for k in (0..STABLE).step_by(20) {
            batch = batch.put_json(format!("d{k:05}m"), &b"{}"[..], None);
        }
        engine.write(batch).await.expect("write");
    });
    for opts in ["", "max_inodes=1000"] {
        let m = Mounted::new(store.clone(), opts);
        let dir = m.join("ns");
        let pending = std::fs::File::create(dir.join("pending.json")).expect("create");
        std::fs::create_dir(dir.join("made")).expect("mkdir");
        let want_len = STABLE + STABLE / 20 + 40 + 2;
        let check = |listed: &BTreeMap<String, (u64, bool)>, round: &str| {
            assert_eq!(listed.len(), want_len, "{opts:?} {round}: count");
            for (name, &(ino, is_dir)) in listed {
                let meta = std::fs::symlink_metadata(dir.join(name)).expect("lstat");
                assert_eq!(ino, meta.ino(), "{opts:?} {round}: d_ino of {name}");
                assert_eq!(is_dir, meta.is_dir(), "{opts:?} {round}: d_type of {name}");
                let want_dir = name.starts_with("sub") || name == "made";
                assert_eq!(is_dir, want_dir, "{opts:?} {round}: {name}");
            }
        };
        // Fresh: the first page readdirplus, the rest plain.
        let fresh = listed_kinds(&dir, false);
        check(&fresh, "fresh");
        // Every name now looked up: plain pages of names the daemon holds.
        let known = listed_kinds(&dir, false);
        check(&known, "known");
        assert_eq!(fresh, known, "{opts:?}: the same numbers twice");
        // Looked up while listing: readdirplus pages.
        check(&listed_kinds(&dir, true), "stat each");
        drop(pending);
        m.unmount();
    }
}
