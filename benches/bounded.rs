//! Bounded at any size and age (issue 8): each figure beside a baseline
//! measured in the same run.
//!
//! - store objects and bytes after writing N documents, compacting and
//!   collecting garbage with `retain=0`, against the logical bytes (and
//!   against the same store before GC);
//! - compaction throughput against raw store bandwidth (reading and writing
//!   the same bytes), and the RSS it adds;
//! - compaction write amplification over a 10x growth (bytes written by
//!   compaction / JSON bytes ingested);
//! - GC throughput (objects deleted per second) against deleting the same
//!   number of objects one request each, on the local store and on S3
//!   (moto on loopback, when `scripts/moto-venv.sh` installed it).
//!
//! Run: `cargo bench --bench bounded` (`REEF_BENCH_DOCS`, default 200000;
//! `REEF_BENCH_COMPACTION_GB=2` compacts a 2 GB namespace of 1 KB documents;
//! `REEF_BENCH_ONLY=footprint|compaction|amplification|gc` runs one section).
//! Under `cargo test` it only checks that it builds.

#[path = "../tests/support/s3.rs"]
mod s3;
#[path = "support/wal_objects.rs"]
mod wal_objects;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reef::engine::{Engine, EngineOptions, GcOptions};
use reef::store::{LocalFsStore, ObjectStore};
use reef::types::{Document, WriteBatch};
use wal_objects::one_wal_object_per_document;

fn doc(k: usize) -> Document {
    doc_with_body(k, 6)
}

/// A document with `repeats` × 27 bytes of body.
fn doc_with_body(k: usize, repeats: usize) -> Document {
    Document::new(format!("doc-{k:09}"))
        .with("title", format!("benchmark document number {k}"))
        .with("n", k as i64)
        .with("body", "lorem ipsum dolor sit amet ".repeat(repeats))
}

fn options() -> EngineOptions {
    EngineOptions {
        auto_flush_bytes: Some(8 << 20),
        auto_flush_wal_objects: Some(2000),
        ..EngineOptions::default()
    }
}

fn no_retention() -> GcOptions {
    GcOptions {
        retain: Duration::ZERO,
        dry_run: false,
        max_deletes: None,
        orphan_grace: Duration::ZERO,
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn store_totals(store: &Arc<dyn ObjectStore>, prefix: &str) -> (usize, u64) {
    let objects = store.list(prefix, None).await.expect("list");
    (objects.len(), objects.iter().map(|o| o.size).sum())
}

/// Writes docs `range` with `writers` concurrent writers of 10-document
/// batches; returns JSON bytes written.
async fn write(engine: &Engine, range: std::ops::Range<usize>, writers: usize) -> u64 {
    write_docs(engine, range, writers, 6, IN_ORDER).await
}

/// Ids in write order: document `k` is `doc-k`.
const IN_ORDER: (usize, usize) = (1, usize::MAX);

/// `write`, with bodies of `repeats` × 27 bytes; document `k` gets id
/// number `k × scatter.0 mod scatter.1`: with a prime not dividing the
/// total as `scatter.0` and the total as `scatter.1`, each range of `k`
/// spreads over all ids, so every flush overlaps every segment and
/// compaction has to merge.
async fn write_docs(
    engine: &Engine,
    range: std::ops::Range<usize>,
    writers: usize,
    repeats: usize,
    scatter: (usize, usize),
) -> u64 {
    let bytes = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let engine = engine.clone();
            let range = range.clone();
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let ids: Vec<usize> = range.filter(|k| k % writers == w).collect();
                for chunk in ids.chunks(10) {
                    let docs: Vec<Document> = chunk
                        .iter()
                        .map(|k| doc_with_body(k * scatter.0 % scatter.1, repeats))
                        .collect();
                    let n: usize = docs.iter().map(|d| d.to_canonical_json().len()).sum();
                    let mut batch = WriteBatch::new();
                    for d in docs {
                        batch = batch.upsert(d);
                    }
                    engine.write(batch).await.expect("write");
                    bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer task");
    }
    bytes.load(Ordering::Relaxed)
}

async fn footprint(store: &Arc<dyn ObjectStore>, n: usize) {
    let ns = "footprint";
    let engine = Engine::open(store.clone(), ns, options()).await.unwrap();
    let logical = write(&engine, 0..n, 16).await;
    engine.flush().await.unwrap();
    let (objects_before, bytes_before) = store_totals(store, &format!("{ns}/")).await;
    engine.compact().await.unwrap();
    let report = engine.gc(no_retention()).await.unwrap();
    let (objects, bytes) = store_totals(store, &format!("{ns}/")).await;
    println!(
        "footprint, {n} docs, {:.1} MB of JSON: after compact + gc retain=0: {objects} objects, \
         {:.1} MB = {:.2}x logical (before gc: {objects_before} objects, {:.1} MB = {:.2}x); \
         gc deleted {} objects in {} ms",
        logical as f64 / 1e6,
        bytes as f64 / 1e6,
        bytes as f64 / logical as f64,
        bytes_before as f64 / 1e6,
        bytes_before as f64 / logical as f64,
        report.deleted.wal.objects
            + report.deleted.manifests.objects
            + report.deleted.replaced_segments.objects
            + report.deleted.orphan_segments.objects,
        report.elapsed_ms
    );
}

/// Compacts a namespace of `n` documents of `repeats` × 27 bytes of body,
/// each written twice (so every document has an overwritten version).
async fn compaction(store: &Arc<dyn ObjectStore>, n: usize, repeats: usize) {
    let ns = "compaction";
    let opts = EngineOptions {
        auto_compact_segments: None,
        ..options()
    };
    let engine = Engine::open(store.clone(), ns, opts).await.unwrap();
    // Two passes over the ids: every document has an overwritten version.
    write_docs(&engine, 0..n, 16, repeats, IN_ORDER).await;
    engine.flush().await.unwrap();
    write_docs(&engine, 0..n, 16, repeats, IN_ORDER).await;
    engine.flush().await.unwrap();
    // What only compaction costs: GC first, so the WAL of the writes is gone
    // from the store (and the page cache holds what is left).
    engine.gc(no_retention()).await.unwrap();
    let m = engine.manifest_snapshot().await.unwrap();
    let input: u64 = m.segments.iter().map(|s| s.size).sum();
    let rss_before = rss_kib();
    let peak = Arc::new(AtomicU64::new(rss_before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let t = Instant::now();
    engine.compact().await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let output: u64 = engine
        .manifest_snapshot()
        .await
        .unwrap()
        .segments
        .iter()
        .map(|s| s.size)
        .sum();
    // Baseline: the same store reading the inputs in 1 MiB ranges and
    // writing the output's bytes as 64 MiB objects.
    let t = Instant::now();
    for seg in &m.segments {
        let key = format!("{ns}/segments/{}", seg.id);
        let mut off = 0;
        while off < seg.size {
            let end = (off + (1 << 20)).min(seg.size);
            store.get_range(&key, off..end).await.unwrap();
            off = end;
        }
    }
    let mut left = output;
    let mut i = 0;
    while left > 0 {
        let chunk = left.min(64 << 20);
        store
            .put(
                &format!("bench-raw/{i}"),
                Bytes::from(vec![b'x'; chunk as usize]),
            )
            .await
            .unwrap();
        left -= chunk;
        i += 1;
    }
    let raw_secs = t.elapsed().as_secs_f64();
    println!(
        "compaction of {} segments, {:.1} MB in, {:.1} MB out: {:.1} MB/s vs raw store {:.1} MB/s \
         ({:.2}x); RSS +{} MiB during it (peak {} MiB)",
        m.segments.len(),
        input as f64 / 1e6,
        output as f64 / 1e6,
        input as f64 / 1e6 / secs,
        input as f64 / 1e6 / raw_secs,
        raw_secs / secs,
        (peak.load(Ordering::Relaxed).saturating_sub(rss_before)) / 1024,
        peak.load(Ordering::Relaxed) / 1024,
    );
}

async fn amplification(store: &Arc<dyn ObjectStore>, n: usize) {
    let ns = "growth";
    let engine = Engine::open(store.clone(), ns, options()).await.unwrap();
    let start = n / 10;
    // Scattered ids: each round's documents land between the earlier
    // ones, as with random or hashed ids (ids in write order would form
    // one sorted run that never needs merging).
    let scatter = (7919, n);
    write_docs(&engine, 0..start, 16, 6, scatter).await;
    engine.flush().await.unwrap();
    let before = engine.stats()["compaction_bytes_written"].as_u64().unwrap();
    let step = (n - start) / 20;
    let mut ingested = 0;
    for i in 0..20 {
        let lo = start + i * step;
        ingested += write_docs(&engine, lo..lo + step, 16, 6, scatter).await;
        engine.flush().await.unwrap();
        while engine.compact_tiered().await.unwrap() {}
    }
    let written = engine.stats()["compaction_bytes_written"].as_u64().unwrap() - before;
    let m = engine.manifest_snapshot().await.unwrap();
    println!(
        "write amplification over 10x growth ({start} -> {n} docs): compaction wrote {:.1} MB for \
         {:.1} MB ingested = {:.2} (a compact-everything policy would write about {:.1}x); \
         {} segments",
        written as f64 / 1e6,
        ingested as f64 / 1e6,
        written as f64 / ingested as f64,
        // Merging all after each of the 20 flushes: the namespace each time.
        (1..=20).map(|i| (start + i * step) as f64).sum::<f64>() / (n - start) as f64,
        m.segments.len()
    );
}

async fn gc_rate(store: &Arc<dyn ObjectStore>, name: &str, wal_objects: usize) {
    let ns = "gcrate";
    // One writer, one document per write: one WAL object each.
    let engine = one_wal_object_per_document(store, ns, wal_objects, doc).await;
    let report = engine.gc(no_retention()).await.unwrap();
    let deleted = report.deleted.wal.objects + report.deleted.manifests.objects;
    let secs = report.elapsed_ms.max(1) as f64 / 1000.0;
    // Baseline: the same number of objects deleted one request each.
    for k in 0..wal_objects {
        store
            .put(&format!("bench-del/{k:08}"), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    let t = Instant::now();
    for k in 0..wal_objects {
        store.delete(&format!("bench-del/{k:08}")).await.unwrap();
    }
    let raw = t.elapsed().as_secs_f64();
    println!(
        "gc on {name}: {deleted} objects in {:.2} s = {:.0} objects/s vs {:.0} deletes/s one \
         request each ({:.2}x)",
        secs,
        deleted as f64 / secs,
        wal_objects as f64 / raw,
        (deleted as f64 / secs) / (wal_objects as f64 / raw)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test` builds benches; nothing to measure there.
    }
    let n: usize = std::env::var("REEF_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let local: Arc<dyn ObjectStore> =
            Arc::new(LocalFsStore::new(dir.path().join("store")).expect("local store"));
        // REEF_BENCH_ONLY=compaction: just that section.
        let only = std::env::var("REEF_BENCH_ONLY").ok();
        let run = |section: &str| only.as_deref().is_none_or(|o| o == section);
        if run("footprint") {
            footprint(&local, n).await;
        }
        if run("compaction") {
            // REEF_BENCH_COMPACTION_GB: compact a namespace of about that
            // many GB of segments (1 KB documents) instead of n small ones.
            let gb = std::env::var("REEF_BENCH_COMPACTION_GB")
                .ok()
                .and_then(|v| v.parse::<f64>().ok());
            match gb {
                Some(gb) => compaction(&local, (gb * 1e9 / 2.0 / 1100.0) as usize, 37).await,
                None => compaction(&local, n, 6).await,
            }
        }
        if run("amplification") {
            amplification(&local, n).await;
        }
        if !run("gc") {
            return;
        }
        gc_rate(&local, "local", 5000).await;
        match s3::shared() {
            Some(server) => {
                let s3 = server.s3_store(&s3::unique_prefix("bench"));
                gc_rate(&s3, "S3 (moto)", 2000).await;
            }
            None => println!("gc on S3: skipped (run scripts/moto-venv.sh)"),
        }
    });
}
