//! Benchmark, not run by default (it prints figures, asserts no timing):
//! listing a directory is a range scan over its id prefix, so listing a
//! small directory, or a namespace's top, beside a large subtree costs
//! about what it costs with no subtree. Compares, in the same run, listings
//! in a namespace holding `REEF_BENCH_DOCS` (default 1,000,000) documents
//! under `bulk/` with the same listings in a namespace without them.
//!
//! `cargo test --release --test bench_dirs -- --ignored --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant};

use reef::engine::{Engine, EngineOptions};
use reef::fs::{CoreConfig, FsCore, ROOT_INO};
use reef::store::{MemoryStore, ObjectStore};
use reef::types::WriteBatch;

async fn load(store: &Arc<dyn ObjectStore>, ns: &str, bulk: usize) {
    let engine = Engine::open(store.clone(), ns, EngineOptions::default())
        .await
        .unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..10 {
        batch = batch.put_json(format!("small/d{i}"), &b"{}"[..], None);
        batch = batch.put_json(format!("top{i}"), &b"{}"[..], None);
    }
    engine.write(batch).await.unwrap();
    for start in (0..bulk).step_by(10_000) {
        let mut batch = WriteBatch::new();
        for i in start..(start + 10_000).min(bulk) {
            batch = batch.put_json(format!("bulk/{:03}/d{i:07}", i % 1000), &b"{}"[..], None);
        }
        engine.write(batch).await.unwrap();
    }
    engine.flush().await.unwrap();
    engine.compact().await.unwrap();
}

/// Median time of listing `dir` whole, and its entry count.
async fn time_listing(core: &FsCore, dir: u64) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut count = 0;
    for _ in 0..15 {
        let t = Instant::now();
        let fh = core.opendir(dir).await.unwrap();
        let mut offset = 0;
        count = 0;
        loop {
            let batch = core.readdir(dir, fh, offset, false).await.unwrap();
            let Some(last) = batch.last() else { break };
            offset = last.offset;
            count += batch.len();
        }
        core.releasedir(fh);
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn listing_beside_a_large_subtree_costs_what_it_costs_without_one() {
    let bulk: usize = std::env::var("REEF_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let t = Instant::now();
    load(&store, "big", bulk).await;
    load(&store, "base", 0).await;
    eprintln!("loaded {bulk} documents in {:?}", t.elapsed());
    let core = FsCore::new(store, CoreConfig::default());
    for (what, path) in [("namespace top", None), ("small/", Some("small"))] {
        let mut row = Vec::new();
        for ns in ["big", "base"] {
            let mut dir = core.lookup(ROOT_INO, ns).await.unwrap().ino;
            if let Some(p) = path {
                dir = core.lookup(dir, p).await.unwrap().ino;
            }
            row.push(time_listing(&core, dir).await);
        }
        let ((big, n_big), (base, n_base)) = (row[0], row[1]);
        assert_eq!(
            n_big,
            n_base + usize::from(path.is_none()),
            "{what}: the same entries (+ bulk/)"
        );
        eprintln!(
            "list {what}: {:?} beside {bulk} documents, {:?} without: ratio {:.2} ({n_big} entries)",
            big,
            base,
            big.as_secs_f64() / base.as_secs_f64()
        );
    }
}
