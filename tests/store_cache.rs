//! `DiskCacheStore` (cost, restarts, eviction bound, invalidation, damage
//! detection, failures that must not fail reads) and `list_prefixes`
//! conformance on every backend, including S3 via moto (tests/support/s3.rs;
//! run with REEF_REQUIRE_S3=1 so it cannot be skipped silently).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{localfs_backend, s3_backend, TestStore};
use reef::store::{
    DiskCacheStore, FailpointStore, LatencyStore, LocalFsStore, MemoryStore, MeteredStore,
    ObjectStore, ObjectStoreAdapter, StoreError,
};
use tempfile::TempDir;

const SEG: &str = "ns/segments/00000000000000000007-f0123456789abcdef";

/// Deterministic, position-dependent bytes, so a wrong offset shows.
fn pattern(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>())
}

struct Fixture {
    metered: Arc<MeteredStore>,
    dir: TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let metered = Arc::new(MeteredStore::new(Arc::new(MemoryStore::new())));
        metered.put(SEG, pattern(100_000)).await.expect("put segment");
        Fixture {
            metered,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn cache(&self, max_bytes: u64) -> DiskCacheStore {
        DiskCacheStore::new(self.metered.clone(), self.cache_dir(), max_bytes).expect("open cache")
    }

    fn inner_gets(&self) -> u64 {
        self.metered.snapshot().get_requests
    }
}

/// The cache's entry files and their sizes.
fn cache_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, u64)> = entries
        .map(|e| e.expect("dir entry"))
        .filter(|e| e.file_name().to_string_lossy().ends_with(".blk"))
        .map(|e| (e.path(), e.metadata().expect("metadata").len()))
        .collect();
    files.sort();
    files
}

fn disk_bytes(dir: &Path) -> u64 {
    cache_files(dir).iter().map(|(_, len)| len).sum()
}

#[tokio::test]
async fn second_ranged_read_costs_no_inner_get() {
    let fx = Fixture::new().await;
    let cache = fx.cache(1 << 20);
    let want = pattern(100_000);
    let before = fx.inner_gets();
    for _ in 0..3 {
        let got = cache.get_range(SEG, 1000..5000).await.expect("ranged read");
        assert_eq!(got, want.slice(1000..5000));
    }
    assert_eq!(
        fx.inner_gets() - before,
        1,
        "only the first read reaches the store"
    );
    assert_eq!((cache.hits(), cache.misses()), (2, 1));

    // A different range of the same object is its own entry.
    let got = cache.get_range(SEG, 0..10).await.expect("other range");
    assert_eq!(got, want.slice(0..10));
    assert_eq!(fx.inner_gets() - before, 2);

    // Whole-object reads are cached too.
    for _ in 0..2 {
        assert_eq!(cache.get(SEG).await.expect("get"), want);
    }
    assert_eq!(fx.inner_gets() - before, 3);
    assert_eq!((cache.hits(), cache.misses()), (3, 3));
    assert_eq!(cache_files(&fx.cache_dir()).len(), 3);
    assert_eq!(cache.cached_bytes(), disk_bytes(&fx.cache_dir()));
    assert_eq!(cache.errors(), 0);
}

#[tokio::test]
async fn entries_survive_a_restart() {
    let fx = Fixture::new().await;
    let want = pattern(100_000);
    {
        let cache = fx.cache(1 << 20);
        cache.get_range(SEG, 10..20_000).await.expect("fill");
        cache.get(SEG).await.expect("fill whole");
    }
    let before = fx.inner_gets();
    let cache = fx.cache(1 << 20);
    assert_eq!(cache.cached_bytes(), disk_bytes(&fx.cache_dir()));
    assert_eq!(
        cache.get_range(SEG, 10..20_000).await.expect("hit"),
        want.slice(10..20_000)
    );
    assert_eq!(cache.get(SEG).await.expect("hit whole"), want);
    assert_eq!(fx.inner_gets(), before, "served from disk after the restart");
    assert_eq!((cache.hits(), cache.misses()), (2, 0));

    // A restart also knows which files belong to which key.
    cache.delete(SEG).await.expect("delete");
    assert!(cache_files(&fx.cache_dir()).is_empty());
}

#[tokio::test]
async fn eviction_keeps_the_cache_within_its_bound() {
    let fx = Fixture::new().await;
    let bound = 20_000;
    let cache = fx.cache(bound);
    let want = pattern(100_000);
    for i in 0..50u64 {
        let range = i * 1000..i * 1000 + 1000;
        let got = cache.get_range(SEG, range.clone()).await.expect("read");
        assert_eq!(got, want.slice(range.start as usize..range.end as usize));
        // Keep block 0 in use, so LRU (not FIFO) has to keep it.
        cache.get_range(SEG, 0..1000).await.expect("reuse block 0");
        assert!(cache.cached_bytes() <= bound, "after block {i}");
        assert!(disk_bytes(&fx.cache_dir()) <= bound, "after block {i}");
    }
    assert_eq!(cache.cached_bytes(), disk_bytes(&fx.cache_dir()));
    let files = cache_files(&fx.cache_dir()).len();
    assert!((10..20).contains(&files), "{files} entries of ~1 KB in 20 KB");

    let before = fx.inner_gets();
    cache.get_range(SEG, 0..1000).await.expect("hot block");
    cache
        .get_range(SEG, 49_000..50_000)
        .await
        .expect("newest block");
    assert_eq!(fx.inner_gets(), before, "recently used blocks stay");
    cache.get_range(SEG, 1000..2000).await.expect("old block");
    assert_eq!(fx.inner_gets(), before + 1, "least recently used went first");

    // An object larger than the whole bound is not cached at all.
    cache.get(SEG).await.expect("big read");
    assert!(disk_bytes(&fx.cache_dir()) <= bound);

    // A restart with a smaller bound trims to it, oldest files first.
    drop(cache);
    let small = fx.cache(5_000);
    assert!(small.cached_bytes() <= 5_000);
    assert!(disk_bytes(&fx.cache_dir()) <= 5_000);
    assert_eq!(small.cached_bytes(), disk_bytes(&fx.cache_dir()));
}

#[tokio::test]
async fn delete_and_overwrite_invalidate() {
    let fx = Fixture::new().await;
    let cache = fx.cache(1 << 20);
    cache.get_range(SEG, 0..100).await.expect("fill");
    cache.get(SEG).await.expect("fill whole");
    let other = "ns/segments/other";
    cache.put(other, pattern(10)).await.expect("put other");
    cache.get(other).await.expect("fill other");
    assert_eq!(cache_files(&fx.cache_dir()).len(), 3);

    cache.delete(SEG).await.expect("delete");
    assert_eq!(
        cache_files(&fx.cache_dir()).len(),
        1,
        "only the other key's entry"
    );
    let err = cache.get_range(SEG, 0..100).await.expect_err("deleted");
    assert!(err.is_not_found(), "{err}");
    assert!(cache.get(SEG).await.expect_err("deleted").is_not_found());

    // Overwriting (repair, tests) must not leave the old bytes cached.
    cache
        .put(other, Bytes::from_static(b"new bytes!"))
        .await
        .expect("overwrite");
    assert_eq!(
        cache.get(other).await.expect("read back"),
        Bytes::from_static(b"new bytes!")
    );
    assert_eq!(cache.cached_bytes(), disk_bytes(&fx.cache_dir()));
}

/// Overwrites `len` bytes of `path` at `at` with garbage.
fn scribble(path: &Path, at: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open cache file");
    file.write_all_at(&vec![0xA5; len], at).expect("scribble");
}

#[tokio::test]
async fn damaged_entries_are_detected_and_read_from_the_store() {
    let fx = Fixture::new().await;
    let cache = fx.cache(1 << 20);
    let want = pattern(100_000).slice(500..4500);
    cache.get_range(SEG, 500..4500).await.expect("fill");
    let files = cache_files(&fx.cache_dir());
    let (path, len) = files[0].clone();

    // Payload bytes (same length): only the payload CRC can tell.
    scribble(&path, len - 100, 50);
    let before = fx.inner_gets();
    assert_eq!(cache.get_range(SEG, 500..4500).await.expect("read"), want);
    assert_eq!(fx.inner_gets(), before + 1, "fell through to the store");
    assert_eq!(cache.errors(), 1);
    // ... and the entry was rewritten: the next read is a clean hit.
    assert_eq!(cache.get_range(SEG, 500..4500).await.expect("read"), want);
    assert_eq!(fx.inner_gets(), before + 1);

    // A truncated file.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len(len / 2).expect("truncate");
    assert_eq!(cache.get_range(SEG, 500..4500).await.expect("read"), want);
    assert_eq!(fx.inner_gets(), before + 2);

    // A damaged header (the key it names).
    scribble(&path, 50, 4);
    assert_eq!(cache.get_range(SEG, 500..4500).await.expect("read"), want);
    assert_eq!(fx.inner_gets(), before + 3);

    // A vanished file.
    std::fs::remove_file(&path).expect("remove");
    assert_eq!(cache.get_range(SEG, 500..4500).await.expect("read"), want);
    assert_eq!(fx.inner_gets(), before + 4);
    assert_eq!(cache.errors(), 4);
    assert_eq!(cache.cached_bytes(), disk_bytes(&fx.cache_dir()));

    // Damage found by the startup scan is dropped there.
    drop(cache);
    scribble(&path, 20, 8);
    let cache = fx.cache(1 << 20);
    assert_eq!(cache.cached_bytes(), 0);
    assert!(cache_files(&fx.cache_dir()).is_empty());
    assert_eq!(cache.get_range(SEG, 500..4500).await.expect("read"), want);
}

#[tokio::test]
async fn a_hash_collision_reads_as_a_miss() {
    let fx = Fixture::new().await;
    let cache = fx.cache(1 << 20);
    cache.get_range(SEG, 0..10).await.expect("fill a");
    let file_a = cache_files(&fx.cache_dir())[0].0.clone();
    cache.get_range(SEG, 10..20).await.expect("fill b");
    let file_b = cache_files(&fx.cache_dir())
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| *p != file_a)
        .expect("second entry");
    // Make b's file a valid entry of another (key, range), as a genuine
    // hash collision would look.
    std::fs::copy(&file_a, &file_b).expect("copy");
    let before = fx.inner_gets();
    assert_eq!(
        cache.get_range(SEG, 10..20).await.expect("read b"),
        pattern(100_000).slice(10..20)
    );
    assert_eq!(fx.inner_gets(), before + 1, "not served a's bytes");
    assert_eq!(
        cache.get_range(SEG, 0..10).await.expect("read a"),
        pattern(100_000).slice(0..10)
    );

    // At startup, a file whose header names another slot is dropped.
    drop(cache);
    std::fs::copy(&file_a, &file_b).expect("copy");
    let cache = fx.cache(1 << 20);
    assert_eq!(
        cache_files(&fx.cache_dir()),
        vec![(file_a.clone(), std::fs::metadata(&file_a).expect("meta").len())]
    );
    assert_eq!(cache.cached_bytes(), disk_bytes(&fx.cache_dir()));
}

#[tokio::test]
async fn only_segment_keys_are_cached() {
    let fx = Fixture::new().await;
    let cache = fx.cache(1 << 20);
    let keys = [
        "ns/wal/00000000000000000001",
        "ns/manifest/00000000000000000001",
        "segments/x",
        "ns/segmentsx/y",
    ];
    for key in keys {
        cache.put(key, pattern(1000)).await.expect("put");
    }
    let before = fx.inner_gets();
    for _ in 0..2 {
        for key in keys {
            assert_eq!(cache.get(key).await.expect("get"), pattern(1000));
            assert_eq!(
                cache.get_range(key, 5..50).await.expect("range"),
                pattern(1000).slice(5..50)
            );
        }
    }
    assert_eq!(fx.inner_gets() - before, 16, "every read went to the store");
    assert!(cache_files(&fx.cache_dir()).is_empty());
    assert_eq!((cache.hits(), cache.misses()), (0, 0));
    // A WAL object rewritten by repair is read fresh.
    cache
        .put(keys[0], Bytes::from_static(b"repaired"))
        .await
        .expect("overwrite");
    assert_eq!(
        cache.get(keys[0]).await.expect("get"),
        Bytes::from_static(b"repaired")
    );
}

#[tokio::test]
async fn store_errors_pass_through_and_are_not_cached() {
    let fx = Fixture::new().await;
    let cache = fx.cache(1 << 20);
    let missing = "ns/segments/missing";
    assert!(cache.get(missing).await.expect_err("missing").is_not_found());
    assert!(matches!(
        cache.get_range(SEG, 99_000..100_001).await,
        Err(StoreError::BadRange { size: 100_000, .. })
    ));
    assert!(cache_files(&fx.cache_dir()).is_empty());
    cache.put(missing, pattern(10)).await.expect("create");
    assert_eq!(cache.get(missing).await.expect("now present"), pattern(10));
}

#[tokio::test]
async fn a_broken_cache_never_fails_a_read() {
    let fx = Fixture::new().await;
    let cache = fx.cache(1 << 20);
    let want = pattern(100_000);
    cache.get_range(SEG, 0..10).await.expect("fill");

    // The directory vanishes (tmp cleaner, operator): recreated on write.
    std::fs::remove_dir_all(fx.cache_dir()).expect("remove cache dir");
    assert_eq!(
        cache.get_range(SEG, 0..10).await.expect("read"),
        want.slice(0..10)
    );
    assert_eq!(
        cache.get_range(SEG, 0..10).await.expect("read"),
        want.slice(0..10)
    );
    assert_eq!(cache.hits(), 1, "refilled after the directory came back");

    // The directory's path becomes a file: nothing can be cached, every
    // read still answers from the store.
    std::fs::remove_dir_all(fx.cache_dir()).expect("remove cache dir");
    std::fs::write(fx.cache_dir(), b"not a directory").expect("file in the way");
    let errors = cache.errors();
    for _ in 0..3 {
        assert_eq!(
            cache.get_range(SEG, 20..40).await.expect("read"),
            want.slice(20..40)
        );
        assert_eq!(cache.get(SEG).await.expect("read"), want);
    }
    assert!(cache.errors() > errors, "failures are counted (and logged)");
    cache.delete(SEG).await.expect("delete still works");
    assert!(cache.get(SEG).await.expect_err("gone").is_not_found());

    // Opening a cache where one cannot be created is a clear error.
    let err = DiskCacheStore::new(fx.metered.clone(), fx.cache_dir().join("sub"), 1 << 20)
        .expect_err("cannot create");
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reads_stay_correct_and_bounded() {
    let fx = Fixture::new().await;
    let bound = 30_000;
    let cache = Arc::new(fx.cache(bound));
    let want = pattern(100_000);
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let cache = cache.clone();
        let want = want.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200u64 {
                let start = ((i * 7 + t * 13) % 90) * 1000;
                let range = start..start + 1000 + t;
                let got = cache.get_range(SEG, range.clone()).await.expect("read");
                assert_eq!(got, want.slice(range.start as usize..range.end as usize));
            }
        }));
    }
    for task in tasks {
        task.await.expect("reader");
    }
    assert!(cache.cached_bytes() <= bound);
    assert_eq!(cache.cached_bytes(), disk_bytes(&fx.cache_dir()));
    assert_eq!(cache.hits() + cache.misses(), 1600);
    assert_eq!(cache.errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_racing_reads_leaves_nothing_cached() {
    for round in 0..20 {
        let fx = Fixture::new().await;
        let cache = Arc::new(fx.cache(1 << 20));
        let mut readers = Vec::new();
        for r in 0..4u64 {
            let cache = cache.clone();
            readers.push(tokio::spawn(async move {
                for i in 0..20u64 {
                    let start = (r * 20 + i) * 100;
                    // NotFound once the delete lands; data before.
                    let _ = cache.get_range(SEG, start..start + 100).await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_micros(200 * round)).await;
        cache.delete(SEG).await.expect("delete");
        for reader in readers {
            reader.await.expect("reader");
        }
        assert!(
            cache_files(&fx.cache_dir()).is_empty(),
            "round {round}: a read racing the delete left an entry behind"
        );
        assert_eq!(cache.cached_bytes(), 0);
    }
}

/// The cache in front of a real engine: a cold reopen reads blocks from disk.
#[tokio::test]
async fn engine_reads_through_the_cache() {
    use reef::engine::{Engine, EngineOptions};
    use reef::types::{DocId, Document, WriteBatch};

    let metered = Arc::new(MeteredStore::new(Arc::new(MemoryStore::new())));
    let dir = tempfile::tempdir().expect("tempdir");
    let open_cache = || -> Arc<DiskCacheStore> {
        Arc::new(
            DiskCacheStore::new(metered.clone(), dir.path().join("c"), 64 << 20).expect("cache"),
        )
    };
    let ids: Vec<DocId> = (0..50).map(|i| DocId::new(format!("doc-{i:03}"))).collect();
    {
        let cache = open_cache();
        let engine = Engine::open(cache.clone(), "ns", EngineOptions::default())
            .await
            .expect("open");
        let batch = ids.iter().fold(WriteBatch::new(), |batch, id| {
            batch.upsert(Document::new(id.clone()).with("n", 1i64))
        });
        engine.write(batch).await.expect("write");
        engine.flush().await.expect("flush");
    }
    let mut reads_via_cache = None;
    for _ in 0..2 {
        let cache = open_cache();
        let options = EngineOptions {
            read_only: true,
            ..EngineOptions::default()
        };
        let engine = Engine::open(cache.clone(), "ns", options)
            .await
            .expect("reopen");
        let before = metered.snapshot().get_requests;
        for id in &ids {
            assert!(engine.get(id).await.expect("get").is_some(), "{id:?}");
        }
        let store_gets = metered.snapshot().get_requests - before;
        match reads_via_cache {
            None => reads_via_cache = Some(store_gets),
            Some(first) => {
                assert!(first > 0, "the first run reads segment blocks from the store");
                assert_eq!(store_gets, 0, "the second run finds them on disk");
                assert!(cache.hits() > 0);
            }
        }
    }
}

// ---------------------------------------------------------------------
// list_prefixes conformance

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

async fn list_prefixes_case(store: Arc<dyn ObjectStore>) {
    for key in [
        "a/x",
        "a/y/z",
        "b/q",
        "c",
        "a-b/x",
        "ns/manifest/00000000000000000001",
        "ns/wal/00000000000000000001",
        "ns/wal/00000000000000000002",
        "ns/segments/s-1",
    ] {
        store.put(key, b("v")).await.expect("put");
    }
    let lp = |p: &'static str| {
        let store = store.clone();
        async move {
            store
                .list_prefixes(p)
                .await
                .unwrap_or_else(|e| panic!("list_prefixes({p:?}): {e}"))
        }
    };
    let none = Vec::<String>::new();
    assert_eq!(
        lp("").await,
        ["a", "a-b", "b", "ns"],
        "objects like `c` are not prefixes"
    );
    assert_eq!(lp("a/").await, ["y"]);
    assert_eq!(lp("a/y/").await, none);
    assert_eq!(lp("ns/").await, ["manifest", "segments", "wal"]);
    assert_eq!(lp("missing/").await, none);
    assert_eq!(lp("c/").await, none, "an object is no directory");
    assert_eq!(lp("/").await, none, "no key starts with '/'");
    for partial in ["a", "ns/wa"] {
        assert!(
            matches!(store.list_prefixes(partial).await, Err(StoreError::BadKey(_))),
            "{partial:?} is not a directory prefix"
        );
    }
    store.delete("a/y/z").await.expect("delete");
    assert_eq!(lp("a/").await, none);
    assert_eq!(lp("").await, ["a", "a-b", "b", "ns"]);
    store.delete("a/x").await.expect("delete");
    assert_eq!(lp("").await, ["a-b", "b", "ns"], "an emptied prefix disappears");

    // What reef::engine::list_namespaces builds on: namespaces are the
    // prefixes that hold a manifest.
    store
        .put("other/wal/00000000000000000001", b("w"))
        .await
        .expect("put");
    store
        .put("ns2/manifest/00000000000000000003", b("m"))
        .await
        .expect("put");
    let namespaces = reef::engine::list_namespaces(&store)
        .await
        .expect("namespaces");
    assert_eq!(namespaces, ["ns", "ns2"]);
}

fn backend(store: impl ObjectStore + 'static) -> Option<TestStore> {
    Some(TestStore::new("backend", Arc::new(store)))
}

fn wrapped_backend() -> Option<TestStore> {
    let latency = LatencyStore::new(
        Arc::new(MemoryStore::new()),
        Duration::ZERO..Duration::from_millis(2),
    );
    let failpoint = FailpointStore::new(Arc::new(latency));
    backend(MeteredStore::new(Arc::new(failpoint)))
}

fn disk_cache_backend() -> Option<TestStore> {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = Arc::new(ObjectStoreAdapter::new(Arc::new(
        object_store::memory::InMemory::new(),
    )));
    let cache = DiskCacheStore::new(inner, dir.path().join("cache"), 1 << 20).expect("cache");
    Some(TestStore::in_dir("disk cache", Arc::new(cache), dir))
}

macro_rules! list_prefixes_suite {
    ($($name:ident: $make:expr,)*) => {
        mod list_prefixes {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let made = tokio::task::spawn_blocking(|| $make)
                        .await
                        .expect("make backend");
                    let Some(be) = made else { return };
                    list_prefixes_case(be.store.clone()).await;
                }
            )*
        }
    };
}

list_prefixes_suite! {
    memory: backend(MemoryStore::new()),
    local: Some(localfs_backend()),
    adapter_in_memory: backend(ObjectStoreAdapter::new(Arc::new(object_store::memory::InMemory::new()))),
    metered_failpoint_latency: wrapped_backend(),
    disk_cache: disk_cache_backend(),
    s3_moto: s3_backend(),
}

/// The local store answers from directories, which a crash or a racing
/// delete can leave empty or holding only temp files: those are no prefix.
#[tokio::test]
async fn local_prefixes_ignore_empty_and_temp_only_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let store = LocalFsStore::new(root.clone()).expect("local store");
    store
        .put("ns/manifest/00000000000000000001", b("m"))
        .await
        .expect("put");
    std::fs::create_dir_all(root.join("empty/deeper")).expect("mkdir");
    std::fs::create_dir_all(root.join("tmponly/wal")).expect("mkdir");
    std::fs::write(root.join("tmponly/wal/.tmp-1-2-3"), b"partial").expect("temp file");
    std::fs::create_dir_all(root.join(".tmp-dir/x")).expect("mkdir");
    std::fs::write(root.join(".tmp-dir/x/y"), b"y").expect("file");
    assert_eq!(store.list_prefixes("").await.expect("list"), ["ns"]);
    assert_eq!(
        store.list_prefixes("tmponly/").await.expect("list"),
        Vec::<String>::new()
    );
    assert!(store.list_prefixes("../").await.expect("escape").is_empty());
    assert!(store
        .list_prefixes(".tmp-dir/")
        .await
        .expect("temp")
        .is_empty());
}

/// Finding namespaces costs a few delimiter listings, however many WAL
/// objects the namespaces hold.
#[tokio::test]
async fn list_namespaces_does_not_walk_the_wal() {
    let metered = Arc::new(MeteredStore::new(Arc::new(MemoryStore::new())));
    for ns in ["alpha", "beta"] {
        metered
            .put(&format!("{ns}/manifest/00000000000000000001"), b("m"))
            .await
            .expect("put");
        for seq in 1..=500u64 {
            metered
                .put(&format!("{ns}/wal/{seq:020}"), b("w"))
                .await
                .expect("put");
        }
    }
    metered
        .put("stray/wal/00000000000000000001", b("w"))
        .await
        .expect("put");
    let before = metered.snapshot();
    let store: Arc<dyn ObjectStore> = metered.clone();
    let names = reef::engine::list_namespaces(&store).await.expect("list");
    assert_eq!(names, ["alpha", "beta"]);
    let cost = metered.snapshot().since(&before);
    assert_eq!(cost.list_requests, 4, "one for the root, one per candidate");
    assert!(cost.list_entries <= 10, "{cost:?}");
}
