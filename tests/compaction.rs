//! Streaming compaction: bounded memory and bounded outputs, and the
//! size-tiered policy's write amplification, on the memory, local and S3
//! stores.

mod common;
#[path = "support/hooked_store.rs"]
mod hooked_store;

use std::sync::Arc;

use common::*;
use hooked_store::{HookedStore, ReadSizes};
use reef::admin;
use reef::engine::{Engine, EngineOptions};
use reef::store::ObjectStore;
use reef::types::{DocId, Document};

const BOUND: usize = 16 << 10;

fn small_bound() -> EngineOptions {
    EngineOptions {
        block_bytes: 2048,
        compaction_segment_bytes: BOUND,
        auto_compact_segments: None,
        ..EngineOptions::default()
    }
}

fn docs(prefix: &str, n: usize, round: i64) -> Vec<Document> {
    (0..n)
        .map(|k| {
            Document::new(format!("{prefix}{k:05}"))
                .with("round", round)
                .with("pad", "x".repeat(80))
        })
        .collect()
}

#[tokio::test]
async fn compaction_of_a_namespace_larger_than_its_memory_bound_streams_into_bounded_segments() {
    for backend in all_backends() {
        // Remembers the largest single read of a segment (what one request
        // brings into memory).
        let probe = HookedStore::new(
            backend.store.clone(),
            ReadSizes::of_keys_containing("/segments/"),
        );
        let store: Arc<dyn ObjectStore> = probe.clone();
        let ns = "big";
        let engine = Engine::open(store.clone(), ns, small_bound()).await.unwrap();
        for round in 0..5i64 {
            engine
                .write(upsert_batch(docs("d", 800, round)))
                .await
                .unwrap();
            let gone: Vec<String> = (0..800)
                .filter(|k| k % 7 == round as usize)
                .map(|k| format!("d{k:05}"))
                .collect();
            let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
            engine.write(delete_batch(&gone)).await.unwrap();
            engine.flush().await.unwrap();
        }
        let before = engine.manifest_snapshot().await.unwrap();
        let input_bytes: u64 = before.segments.iter().map(|s| s.size).sum();
        assert!(
            input_bytes > 20 * BOUND as u64,
            "the namespace ({input_bytes} bytes) must dwarf the bound"
        );
        let expected = snapshot(&engine).await;
        probe.hooks.reset();

        engine.compact().await.unwrap();

        let largest = probe.hooks.largest() as u64;
        assert!(
            largest <= BOUND as u64,
            "{}: one read of {largest} bytes (bound {BOUND})",
            backend.name
        );
        let m = engine.manifest_snapshot().await.unwrap();
        assert!(m.segments.len() > 5, "{} outputs", m.segments.len());
        for s in &m.segments {
            // The cut comes after the block that crosses the bound, plus
            // the index and footer.
            assert!(s.size <= 2 * BOUND as u64 + 4096, "{} bytes", s.size);
            assert_eq!(s.tombstones, 0, "a major compaction leaves no tombstone");
        }
        let mut ranges: Vec<(&str, &str)> = m
            .segments
            .iter()
            .map(|s| (s.min_id.as_str(), s.max_id.as_str()))
            .collect();
        ranges.sort();
        assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "disjoint ids");
        let live: u64 = m.segments.iter().map(|s| s.doc_count).sum();
        assert_eq!(live as usize, expected.len(), "no overwritten version left");
        assert_eq!(snapshot(&engine).await, expected, "{}", backend.name);
        assert!(engine.get(&DocId::from("d00004")).await.unwrap().is_none());
        assert!(engine.get(&DocId::from("d00005")).await.unwrap().is_some());
        // A second request finds nothing to do.
        engine.compact().await.unwrap();
        assert_eq!(engine.manifest_snapshot().await.unwrap().version, m.version);
        drop(engine);
        let reopened = Engine::open(store.clone(), ns, small_bound()).await.unwrap();
        assert_eq!(snapshot(&reopened).await, expected);
        assert!(admin::verify(store.clone(), ns).await.unwrap().healthy);
        // The sibling outputs survive a manifest rebuild.
        drop(reopened);
        for key in list_keys_containing(&store, &format!("{ns}/manifest/")).await {
            store.delete(&key).await.unwrap();
        }
        admin::rebuild_manifest(store.clone(), ns).await.unwrap();
        let rebuilt = Engine::open(store.clone(), ns, small_bound()).await.unwrap();
        assert_eq!(snapshot(&rebuilt).await, expected, "{}: rebuilt", backend.name);
    }
}

#[tokio::test]
async fn the_size_tiered_policy_rewrites_each_document_a_logarithmic_number_of_times() {
    let store = memory_backend().store;
    let ns = "tiers";
    let opts = EngineOptions {
        auto_compact_segments: Some(4),
        ..small_bound()
    };
    let engine = Engine::open(store.clone(), ns, opts).await.unwrap();
    let mut flushed = 0u64;
    for round in 0..64i64 {
        // New documents each round, and a delete of an old one, whose
        // tombstone must shadow the older segment until a merge reaches it.
        engine
            .write(upsert_batch(docs(&format!("r{round:02}-"), 40, round)))
            .await
            .unwrap();
        if round > 0 {
            engine
                .write(delete_batch(&[&format!("r{:02}-00000", round - 1)]))
                .await
                .unwrap();
        }
        let before = engine.manifest_snapshot().await.unwrap();
        engine.flush().await.unwrap();
        let after = engine.manifest_snapshot().await.unwrap();
        flushed += after.segments[0].size;
        assert_eq!(after.segments.len(), before.segments.len() + 1);
        while engine.compact_tiered().await.unwrap() {}
    }
    let stats = engine.stats();
    let rewritten = stats["compaction_bytes_written"].as_u64().unwrap();
    let amplification = rewritten as f64 / flushed as f64;
    // 64 flushes, fan-in 4: three tiers above the flushes.
    assert!(amplification <= 4.0, "write amplification {amplification}");
    // Sorted runs (sibling outputs share a WAL range): at most fan-in - 1
    // per tier, plus the newest flush.
    let m = engine.manifest_snapshot().await.unwrap();
    let runs: std::collections::BTreeSet<(u64, u64)> =
        m.segments.iter().map(|s| (s.wal_lo, s.wal_hi)).collect();
    assert!(runs.len() <= 3 * 4 + 1, "{} sorted runs", runs.len());
    for round in 0..63 {
        let id = DocId::from(format!("r{round:02}-00000"));
        assert!(engine.get(&id).await.unwrap().is_none(), "{id} came back");
    }
    assert_eq!(doc_count(&engine).await, 64 * 40 - 63);
}
