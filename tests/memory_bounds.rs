//! Memory bounds of the engine (issue 8): the memtable's byte bound holds
//! even when flushes are slower than the writers, and it is counted by the
//! engine (`memtable_peak_bytes`, `throttled_writes` in `stats`).

#[path = "support/core_files.rs"]
mod core_files;
#[path = "support/hooked_store.rs"]
mod hooked_store;
#[path = "support/poll.rs"]
mod poll;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hooked_store::{HookedStore, PutGate, ReadSizes};
use poll::wait_until_async;
use reef::engine::{Engine, EngineOptions};
use reef::store::{MemoryStore, ObjectStore};
use reef::types::{DocId, Document, WriteBatch};

fn stat(engine: &Engine, key: &str) -> u64 {
    engine.stats()[key]
        .as_u64()
        .unwrap_or_else(|| panic!("stats has {key}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memtable_stays_within_its_byte_bound_while_a_flush_is_stuck() {
    const THRESHOLD: usize = 64 << 10;
    const WRITERS: usize = 8;
    const BATCH_DOCS: usize = 4;
    // Segment uploads wait until the test opens the gate, so a flush is as
    // slow as the test wants while WAL writes go on.
    let store = HookedStore::new(Arc::new(MemoryStore::new()), PutGate::new("/segments/"));
    store.hooks.gate.hold_all();
    let engine = Engine::open(
        store.clone() as Arc<dyn ObjectStore>,
        "bounded",
        EngineOptions {
            auto_flush_bytes: Some(THRESHOLD),
            auto_flush_wal_objects: None,
            auto_compact_segments: None,
            ..EngineOptions::default()
        },
    )
    .await
    .unwrap();
    let body = "x".repeat(400);
    // Writes of 20 times the threshold: without the bound they would all
    // land in the memtable while the first flush waits at the gate.
    let per_writer = 20 * THRESHOLD / WRITERS / (BATCH_DOCS * 450);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (engine, body) = (engine.clone(), body.clone());
            tokio::spawn(async move {
                for b in 0..per_writer {
                    let mut batch = WriteBatch::new();
                    for d in 0..BATCH_DOCS {
                        let id = format!("w{w}/b{b:05}/d{d}");
                        batch = batch.upsert(Document::new(id).with("body", body.as_str()));
                    }
                    engine.write(batch).await.expect("write");
                }
            })
        })
        .collect();

    // A flush reached the gate.
    store.hooks.gate.held().await;
    wait_until_async("a writer to wait for room", Duration::from_secs(30), || {
        stat(&engine, "throttled_writes") > 0 || writers.iter().all(|w| w.is_finished())
    })
    .await;
    assert!(
        !writers.iter().all(|w| w.is_finished()),
        "every write was acknowledged while the flush was stuck: the memtable holds {} bytes",
        stat(&engine, "memtable_bytes")
    );
    // The slack: batches that passed the check together, one each.
    let slack = (WRITERS * BATCH_DOCS * 600) as u64;
    let bound = 2 * THRESHOLD as u64 + slack;
    assert!(stat(&engine, "memtable_bytes") <= bound);

    store.hooks.gate.open_for_good();
    for w in writers {
        w.await.expect("writer");
    }
    let peak = stat(&engine, "memtable_peak_bytes");
    assert!(peak <= bound, "memtable peak {peak} bytes > bound {bound}");
    assert!(peak >= THRESHOLD as u64, "the bound was never reached: {peak}");
    // Nothing was lost by waiting.
    for w in 0..WRITERS {
        for b in [0, per_writer - 1] {
            let id = DocId::new(format!("w{w}/b{b:05}/d0"));
            assert!(engine.get(&id).await.unwrap().is_some(), "{id} missing");
        }
    }
    assert_eq!(
        engine.scan_all().await.unwrap().len(),
        WRITERS * per_writer * BATCH_DOCS
    );
}

#[tokio::test]
async fn verify_reads_a_namespace_larger_than_its_memory_bound_in_bounded_chunks() {
    // verify reads at most 1 MiB of blocks at once (or one block).
    const READ_BOUND: usize = (1 << 20) + (64 << 10);
    // Records the largest answer of any read.
    let store = HookedStore::new(Arc::new(MemoryStore::new()), ReadSizes::of_keys_containing(""));
    let dyn_store = store.clone() as Arc<dyn ObjectStore>;
    let engine = Engine::open(
        dyn_store.clone(),
        "big",
        EngineOptions {
            auto_flush_bytes: None,
            auto_compact_segments: None,
            compaction_segment_bytes: 64 << 20,
            ..EngineOptions::default()
        },
    )
    .await
    .unwrap();
    let body = "y".repeat(1000);
    let docs = 8_000;
    for chunk in 0..docs / 100 {
        let mut batch = WriteBatch::new();
        for d in 0..100 {
            let id = format!("doc-{:06}", chunk * 100 + d);
            batch = batch.upsert(Document::new(id).with("body", body.as_str()));
        }
        engine.write(batch).await.unwrap();
    }
    engine.flush().await.unwrap();
    engine.compact().await.unwrap();
    let m = engine.manifest_snapshot().await.unwrap();
    let segment_bytes: u64 = m.segments.iter().map(|s| s.size).sum();
    assert!(
        m.segments.iter().any(|s| s.size as usize > 4 * READ_BOUND),
        "the test needs a segment larger than the read bound: {:?}",
        m.segments.iter().map(|s| s.size).collect::<Vec<_>>()
    );
    drop(engine);

    store.hooks.reset();
    let report = reef::admin::verify(dyn_store.clone(), "big").await.unwrap();
    assert!(report.healthy, "{:?}", report.issues);
    assert_eq!(report.live_documents_in_segments, docs as u64);
    let largest = store.hooks.largest();
    assert!(largest <= READ_BOUND, "verify read {largest} bytes at once");
    // It still read every byte of every segment.
    assert!(store.hooks.total() as u64 >= segment_bytes);

    // And a damaged block in the middle is still found.
    let seg = &m.segments[0];
    let key = format!("big/segments/{}", seg.id);
    let mut data = store.inner().get(&key).await.unwrap().to_vec();
    let middle = data.len() / 2;
    data[middle] ^= 0x55;
    store.inner().put(&key, Bytes::from(data)).await.unwrap();
    let report = reef::admin::verify(dyn_store, "big").await.unwrap();
    assert!(!report.healthy);
    assert!(
        report
            .issues
            .iter()
            .any(|i| i.object == key && i.problem.contains("corrupt segment")),
        "{:?}",
        report.issues
    );
}

/// `.stats` of namespace `ns` read through the core, as JSON.
async fn core_stats(core: &reef::fs::FsCore, ns: u64) -> serde_json::Value {
    let (_, out) = core_files::read_file(core, ns, ".stats", 1 << 16)
        .await
        .expect(".stats");
    serde_json::from_slice(&out).expect(".stats is JSON")
}

#[tokio::test]
async fn an_inode_the_kernel_holds_costs_about_200_bytes_and_forgetting_frees_it() {
    use reef::fs::{CoreConfig, FsCore, ROOT_INO};
    const FILES: usize = 20_000;
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let core = FsCore::new(store, CoreConfig::default());
    let ns = core.mkdir(ROOT_INO, "ns").await.unwrap().ino;
    // Like `cp` of many files: each is created, written and closed, and
    // the kernel keeps its inode (no forget).
    let mut inos = Vec::with_capacity(FILES);
    for k in 0..FILES {
        let (attr, info) = core
            .create(ns, &format!("d{k:06}.json"), core_files::trunc())
            .await
            .unwrap();
        core.write(info.fh, 0, format!("{{\"n\": {k}}}").as_bytes())
            .await
            .unwrap();
        core.flush(info.fh).await.unwrap();
        core.release(info.fh).await.unwrap();
        inos.push(attr.ino);
    }
    let stats = core_stats(&core, ns).await;
    let kernel = stats["kernel_inodes"].as_u64().unwrap();
    let bytes = stats["inode_table_bytes"].as_u64().unwrap();
    assert!(kernel >= FILES as u64, "{stats}");
    let per_inode = bytes / kernel;
    println!("inode table: {bytes} bytes for {kernel} kernel-held inodes = {per_inode} bytes each");
    // About 190: the slab entry, two index buckets, the FIFO slot of the
    // kernel-held bound; names and ids of up to 24 bytes are inline.
    assert!(
        per_inode <= 200,
        "the inode table holds {bytes} bytes for {kernel} inodes: {per_inode} bytes each"
    );

    // The kernel forgets them (memory pressure, drop_caches): the table
    // gives the memory back.
    for ino in inos {
        core.forget(ino, 1);
    }
    let stats = core_stats(&core, ns).await;
    let left = stats["inode_table_bytes"].as_u64().unwrap();
    assert!(stats["inodes"].as_u64().unwrap() < 100, "{stats}");
    assert!(
        left < bytes / 20,
        "after every forget the table still holds {left} of {bytes} bytes"
    );
}

#[path = "support/mounted.rs"]
mod mounted;

/// `.stats` of namespace directory `ns` read through a mount.
fn mounted_stats(ns: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read(ns.join(".stats")).expect("read .stats");
    serde_json::from_slice(&text).expect(".stats is JSON")
}

/// `.stats` once the kernel holds at most `bound` inodes of the mount and
/// has forgotten every one it was asked to drop (it does so on its own
/// time: poll until it has).
fn settled(ns: &std::path::Path, bound: u64, what: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = mounted_stats(ns);
        let kernel = stats["kernel_inodes"].as_u64().unwrap();
        if kernel <= bound && stats["evicting_inodes"].as_u64() == Some(0) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the kernel still holds {kernel} inodes against a bound of {bound}: {stats}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_kernel_holds_at_most_max_inodes_of_a_mount_and_every_file_stays_readable() {
    use mounted::{fuse_available, write_close, Mounted};
    if !fuse_available() {
        return;
    }
    const BOUND: u64 = 400;
    const FILES: usize = 2_000;
    let mount = Mounted::new(Arc::new(MemoryStore::new()), &format!("max_inodes={BOUND}"));
    let ns = mount.join("ns");
    std::fs::create_dir(&ns).unwrap();
    let body = |k: usize| format!("{{\"n\": {k}}}");
    // Like `cp` of many files: each is created, written and closed, and
    // the kernel would keep every inode (this machine has memory to spare).
    for k in 0..FILES {
        write_close(&ns.join(format!("d{k:05}.json")), body(k)).unwrap();
    }
    let stats = settled(&ns, BOUND, "after writing");
    assert!(
        stats["inodes"].as_u64().unwrap() <= BOUND + 16,
        "the table holds more than the kernel: {stats}"
    );
    // Every file is still there, dropped from the kernel's cache or not:
    // the names come back by lookup, the content from the store.
    let listed = std::fs::read_dir(&ns)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count();
    assert_eq!(listed, FILES);
    for k in 0..FILES {
        let text = std::fs::read_to_string(ns.join(format!("d{k:05}.json"))).unwrap();
        assert_eq!(text, body(k), "d{k:05}.json");
    }
    settled(&ns, BOUND, "after reading every file back");
    mount.unmount();
}

#[test]
fn a_read_pass_in_name_order_past_max_inodes_drops_what_it_read_not_what_comes_next() {
    use mounted::{fuse_available, write_close, Mounted};
    if !fuse_available() {
        return;
    }
    const BOUND: u64 = 400;
    const FILES: u64 = 600;
    let mount = Mounted::new(Arc::new(MemoryStore::new()), &format!("max_inodes={BOUND}"));
    let ns = mount.join("ns");
    std::fs::create_dir(&ns).unwrap();
    let name = |k: u64| ns.join(format!("d{k:05}.json"));
    let body = |k: u64| format!("{{\"n\": {k}}}");
    for k in 0..FILES {
        write_close(&name(k), body(k)).unwrap();
    }
    let mut evicted = settled(&ns, BOUND, "after writing")["evicted_inodes"]
        .as_u64()
        .unwrap();
    // `cat` of every file in name order, twice. Each file the kernel no
    // longer holds is looked up again, and past the bound every lookup
    // makes the daemon ask the kernel to drop another entry: dropping the
    // oldest would drop the next files the pass reads, so every file would
    // miss (about FILES a pass). Dropping what the pass read misses only
    // on what does not fit, and a batch (BOUND / 16) more.
    let excess = FILES - (BOUND - BOUND / 16);
    for pass in 0..2 {
        for k in 0..FILES {
            assert_eq!(std::fs::read_to_string(name(k)).unwrap(), body(k));
        }
        let now = settled(&ns, BOUND, "after reading")["evicted_inodes"]
            .as_u64()
            .unwrap();
        let during = now - evicted;
        assert!(
            during <= excess + BOUND / 16 + 10,
            "pass {pass}: {during} entries dropped for {FILES} files read, \
             {excess} over the bound"
        );
        evicted = now;
    }
    mount.unmount();
}
