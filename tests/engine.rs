//! Engine behaviour the seed suite does not cover: group commit, fencing,
//! WAL corruption in the middle, large namespaces, many segments, patches,
//! limits and bad input.

mod common;
#[path = "support/hooked_store.rs"]
mod hooked_store;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use hooked_store::{HookedStore, PutGate, StoreHooks};
use reef::admin;
use reef::engine::wal::PIPELINE_DEPTH;
use reef::engine::{Engine, EngineError, EngineOptions};
use reef::store::{MemoryStore, ObjectStore};
use reef::types::{DocId, Document, Limits, Patch, TypeError, Value, WriteBatch};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_wal_objects_and_all_are_durable() {
    let ts = localfs_backend();
    let engine = open_engine(&ts.store, "group").await;
    let writers = 64;
    let per_writer = 20;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..per_writer {
                engine
                    .write(upsert_batch(vec![doc(&format!("w{w:02}-{k:03}"))]))
                    .await
                    .expect("write");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    let wal_objects = list_keys_containing(&ts.store, "group/wal/").await.len();
    let total = writers * per_writer;
    assert!(
        wal_objects < total,
        "{total} concurrent writes should share WAL objects, got {wal_objects}"
    );
    drop(engine);
    let engine = open_engine(&ts.store, "group").await;
    assert_eq!(doc_count(&engine).await, total);
}

#[tokio::test]
async fn a_second_writer_fences_the_first() {
    for ts in all_backends() {
        let store = &ts.store;
        let first = open_engine(store, "fence").await;
        first.write(upsert_batch(vec![doc("a")])).await.unwrap();

        let second = open_engine(store, "fence").await;
        assert_eq!(
            doc_count(&second).await,
            1,
            "the new writer sees acknowledged writes"
        );

        let err = first.write(upsert_batch(vec![doc("zombie")])).await;
        assert!(
            matches!(err, Err(EngineError::Fenced { .. })),
            "backend={}: {err:?}",
            ts.name
        );
        assert!(first.fenced_by().is_some());
        // Fenced for good: flush and later writes fail too.
        assert!(matches!(first.flush().await, Err(EngineError::Fenced { .. })));
        assert!(first.write(upsert_batch(vec![doc("again")])).await.is_err());

        second.write(upsert_batch(vec![doc("b")])).await.unwrap();
        second.flush().await.unwrap();
        let reopened = open_engine(store, "fence").await;
        assert_eq!(scan_ids(&reopened).await, vec!["a", "b"], "backend={}", ts.name);
    }
}

#[tokio::test]
async fn a_fenced_writer_cannot_commit_a_flush() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let first = open_engine(&store, "fence-flush").await;
    first.write(upsert_batch(vec![doc("a")])).await.unwrap();
    let second = open_engine(&store, "fence-flush").await;
    assert!(matches!(first.flush().await, Err(EngineError::Fenced { .. })));
    second.write(upsert_batch(vec![doc("b")])).await.unwrap();
    second.flush().await.unwrap();
    assert_eq!(scan_ids(&second).await, vec!["a", "b"]);
}

#[tokio::test]
async fn repair_fences_a_live_writer() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let engine = open_engine(&store, "fence-repair").await;
    engine.write(upsert_batch(vec![doc("a")])).await.unwrap();
    admin::repair(store.clone(), "fence-repair").await.unwrap();
    assert!(matches!(
        engine.write(upsert_batch(vec![doc("b")])).await,
        Err(EngineError::Fenced { .. })
    ));
    let engine = open_engine(&store, "fence-repair").await;
    assert_eq!(scan_ids(&engine).await, vec!["a"]);
}

#[tokio::test]
async fn corruption_in_the_middle_of_the_wal_quarantines_it_and_later_objects() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let ns = "mid-wal";
    {
        let engine = open_engine(&store, ns).await;
        for batch in ["a", "b", "c", "d"] {
            engine
                .write(upsert_batch(numbered_docs(batch, 3)))
                .await
                .unwrap();
        }
    }
    let wal = list_keys_containing(&store, &format!("{ns}/wal/")).await;
    // The fence and the VOIDs of its pipeline window, then a, b, c, d:
    // corrupt b.
    let window = PIPELINE_DEPTH as usize;
    assert_eq!(wal.len(), window + 4, "{wal:?}");
    let b = window + 1;
    overwrite_with_garbage(&store, &wal[b]).await;
    let err = Engine::open(store.clone(), ns, EngineOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&wal[b]),
        "error names the object: {err}"
    );
    let report = admin::verify(store.clone(), ns).await.unwrap();
    assert!(!report.healthy);
    assert!(report.issues.iter().any(|i| i.object == wal[b]), "{report:?}");

    let repaired = admin::repair(store.clone(), ns).await.unwrap();
    let seq_b = b as u64 + 1;
    assert_eq!(
        repaired.voided_wal,
        vec![seq_b, seq_b + 1, seq_b + 2],
        "{repaired:?}"
    );
    assert_eq!(repaired.quarantined.len(), 3);
    let quarantined = list_keys_containing(&store, &format!("{ns}/quarantine/")).await;
    assert_eq!(quarantined.len(), 3);
    let engine = open_engine(&store, ns).await;
    assert_eq!(scan_ids(&engine).await, vec!["a00000", "a00001", "a00002"]);
    assert!(admin::verify(store.clone(), ns).await.unwrap().healthy);
}

#[tokio::test]
async fn point_lookups_in_a_large_namespace_read_one_block() {
    let ts = localfs_backend();
    let ns = "big";
    let n = 120_000;
    {
        let engine = open_engine(&ts.store, ns).await;
        for chunk in numbered_docs("k", n).chunks(10_000) {
            engine.write(upsert_batch(chunk.to_vec())).await.unwrap();
        }
        engine.flush().await.unwrap();
    }
    let engine = open_engine(&ts.store, ns).await;
    let m = engine.manifest_snapshot().await.unwrap();
    assert_eq!(m.segments.len(), 1);
    let seg = &m.segments[0];
    assert!(seg.size > (64 * 10) << 10, "segment spans many blocks");
    for k in [0usize, 1, 59_999, 119_999] {
        let d = engine
            .get(&DocId::from(format!("k{k:05}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.attributes.get("n"), Some(&i(k as i64)));
    }
    assert!(engine.get(&DocId::from("k99999x")).await.unwrap().is_none());
    let stats = engine.stats();
    // Four lookups: one index read plus one block each, then misses only for
    // blocks not yet seen.
    assert!(stats["cache_misses"].as_u64().unwrap() <= 6, "{stats}");
    let page = engine.scan(Some(&DocId::from("k59990")), 20).await.unwrap();
    assert_eq!(page.first().unwrap().id.as_str(), "k59991");
    assert_eq!(page.len(), 20);
    assert_eq!(doc_count(&engine).await, n);
}

#[tokio::test]
async fn compaction_of_many_segments_keeps_newest_versions_and_drops_deletes() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let ns = "many";
    let engine = open_engine(&store, ns).await;
    for round in 0..12i64 {
        let docs: Vec<Document> = (0..50)
            .map(|k| Document::new(format!("d{k:03}")).with("round", round))
            .collect();
        engine.write(upsert_batch(docs)).await.unwrap();
        engine
            .write(delete_batch(&[&format!("d{:03}", round)]))
            .await
            .unwrap();
        engine.flush().await.unwrap();
    }
    assert_eq!(engine.manifest_snapshot().await.unwrap().segments.len(), 12);
    let before = snapshot(&engine).await;
    engine.compact().await.unwrap();
    let m = engine.manifest_snapshot().await.unwrap();
    assert_eq!(m.segments.len(), 1);
    assert_eq!(m.segments[0].tombstones, 0);
    assert_eq!(m.segments[0].replaces.len(), 12);
    assert_eq!(snapshot(&engine).await, before);
    assert_eq!(before.len(), 50 - 1, "only d011 stays deleted");
    assert!(before
        .iter()
        .all(|d| d.attributes.get("round") == Some(&i(11))));
    // The inputs stay while retained history names them; GC without
    // retention frees them.
    assert_eq!(
        list_keys_containing(&store, &format!("{ns}/segments/"))
            .await
            .len(),
        13
    );
    let report = engine
        .gc(reef::engine::GcOptions {
            retain: std::time::Duration::ZERO,
            ..engine.gc_options()
        })
        .await
        .unwrap();
    assert_eq!(report.deleted.replaced_segments.objects, 12, "{report:?}");
    assert_eq!(
        list_keys_containing(&store, &format!("{ns}/segments/"))
            .await
            .len(),
        1
    );
    assert!(admin::verify(store.clone(), ns).await.unwrap().healthy);
}

#[tokio::test]
async fn patches_apply_in_order_and_never_create_documents() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let engine = open_engine(&store, "patch").await;
    engine
        .write(upsert_batch(vec![Document::new("p")
            .with("keep", 1i64)
            .with("drop", "x")]))
        .await
        .unwrap();
    engine.flush().await.unwrap();
    let patch = |id: &str, key: &str, v: Value| Patch {
        id: DocId::from(id),
        set: attrs(&[(key, v)]),
        unset: vec![],
        vector: None,
    };
    let mut p = patch("p", "n", i(1));
    p.unset = vec!["drop".into()];
    let batch = WriteBatch::new()
        .patch(p)
        .patch(patch("p", "n", i(2)))
        .patch(patch("missing", "n", i(1)));
    engine.write(batch).await.unwrap();
    let d = engine.get(&DocId::from("p")).await.unwrap().unwrap();
    assert_eq!(d.attributes.get("n"), Some(&i(2)));
    assert_eq!(d.attributes.get("keep"), Some(&i(1)));
    assert_eq!(d.attributes.get("drop"), None);
    assert!(engine.get(&DocId::from("missing")).await.unwrap().is_none());
    // A patch after a delete in the same batch is a no-op too.
    engine
        .write(WriteBatch::new().delete("p").patch(patch("p", "n", i(3))))
        .await
        .unwrap();
    assert!(engine.get(&DocId::from("p")).await.unwrap().is_none());
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let opts = EngineOptions {
        limits: Limits {
            max_doc_bytes: 1024,
            ..Limits::default()
        },
        ..EngineOptions::default()
    };
    let engine = Engine::open(store.clone(), "limits", opts).await.unwrap();
    let mut with_vec = Document::new("v");
    with_vec.vector = Some(vec![0.5, 1.0, 2.0]);
    engine.write(upsert_batch(vec![with_vec])).await.unwrap();
    let wal_before = list_keys_containing(&store, "limits/wal/").await;

    let huge = Document::new("huge").with("blob", "x".repeat(2000));
    let long_id = Document::new("i".repeat(300));
    let mut wrong_dims = Document::new("w");
    wrong_dims.vector = Some(vec![1.0, 2.0]);
    let reserved = Document::new("r").with("id", "x");
    let nan = Document::new("n").with("f", f64::NAN);
    type Expect = fn(&EngineError) -> bool;
    let cases: Vec<(WriteBatch, Expect)> = vec![
        (upsert_batch(vec![huge]), |e| {
            matches!(e, EngineError::Invalid(TypeError::DocumentTooLarge { .. }))
        }),
        (upsert_batch(vec![long_id]), |e| {
            matches!(e, EngineError::Invalid(TypeError::IdTooLong { .. }))
        }),
        (upsert_batch(vec![Document::new("")]), |e| {
            matches!(e, EngineError::Invalid(TypeError::EmptyId))
        }),
        (upsert_batch(vec![doc("ok"), wrong_dims]), |e| {
            matches!(e, EngineError::Invalid(TypeError::VectorDimsMismatch { .. }))
        }),
        (upsert_batch(vec![reserved]), |e| {
            matches!(e, EngineError::Invalid(TypeError::ReservedKey(_)))
        }),
        (upsert_batch(vec![nan]), |e| {
            matches!(e, EngineError::Invalid(TypeError::NonFiniteNumber))
        }),
    ];
    for (batch, expected) in cases {
        let err = engine.write(batch).await.unwrap_err();
        assert!(expected(&err), "unexpected error: {err}");
    }
    assert_eq!(
        scan_ids(&engine).await,
        vec!["v"],
        "nothing of a refused batch is visible"
    );
    assert_eq!(list_keys_containing(&store, "limits/wal/").await, wal_before);

    assert!(matches!(
        Engine::open(store.clone(), "../etc", EngineOptions::default()).await,
        Err(EngineError::BadNamespace(..))
    ));
}

#[tokio::test]
async fn a_corrupt_newest_manifest_fails_open_and_repair_rebuilds_it() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let ns = "bad-manifest";
    {
        let engine = open_engine(&store, ns).await;
        engine
            .write(upsert_batch(numbered_docs("m", 10)))
            .await
            .unwrap();
        engine.flush().await.unwrap();
        engine
            .write(upsert_batch(numbered_docs("t", 2)))
            .await
            .unwrap();
    }
    let manifests = list_keys_containing(&store, &format!("{ns}/manifest/")).await;
    let newest = manifests.last().unwrap().clone();
    store
        .put(&newest, Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    assert!(Engine::open(store.clone(), ns, EngineOptions::default())
        .await
        .is_err());
    let report = admin::repair(store.clone(), ns).await.unwrap();
    assert!(report.manifest_rebuilt, "{report:?}");
    let engine = open_engine(&store, ns).await;
    assert_eq!(doc_count(&engine).await, 12);
    assert!(admin::verify(store.clone(), ns).await.unwrap().healthy);
}

#[tokio::test]
async fn a_corrupt_segment_is_recovered_from_the_wal_by_repair() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let ns = "bad-seg";
    {
        let engine = open_engine(&store, ns).await;
        engine
            .write(upsert_batch(numbered_docs("s", 10)))
            .await
            .unwrap();
        engine.flush().await.unwrap();
    }
    let seg = list_keys_containing(&store, &format!("{ns}/segments/")).await[0].clone();
    overwrite_with_garbage(&store, &seg).await;
    admin::repair(store.clone(), ns).await.unwrap();
    let engine = open_engine(&store, ns).await;
    assert_eq!(
        doc_count(&engine).await,
        10,
        "the WAL still covers the lost segment"
    );
    assert!(admin::verify(store.clone(), ns).await.unwrap().healthy);
}

#[tokio::test]
async fn a_read_only_follower_sees_new_writes_after_refresh() {
    for ts in all_backends() {
        let store = ts.store.clone();
        let writer = open_engine(&store, "follow").await;
        writer.write(upsert_batch(vec![doc("a")])).await.unwrap();
        let follower = Engine::open(
            store.clone(),
            "follow",
            EngineOptions {
                read_only: true,
                ..EngineOptions::default()
            },
        )
        .await
        .unwrap();
        writer.write(upsert_batch(vec![doc("b")])).await.unwrap();
        follower.refresh().await.unwrap();
        assert_eq!(scan_ids(&follower).await, vec!["a", "b"]);
        writer.flush().await.unwrap();
        writer.write(upsert_batch(vec![doc("c")])).await.unwrap();
        writer.compact().await.unwrap();
        follower.refresh().await.unwrap();
        assert_eq!(scan_ids(&follower).await, vec!["a", "b", "c"]);
        assert!(matches!(
            follower.write(upsert_batch(vec![doc("x")])).await,
            Err(EngineError::ReadOnly(_))
        ));
        // Still the writer: the follower never fenced it.
        writer.write(upsert_batch(vec![doc("d")])).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_writes_flush_and_compact_by_themselves() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let opts = EngineOptions {
        auto_flush_wal_objects: Some(10),
        auto_compact_segments: Some(3),
        ..EngineOptions::default()
    };
    let engine = Engine::open(store.clone(), "auto", opts).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let unflushed = |stats: &serde_json::Value| {
        stats["last_wal_seq"].as_u64().unwrap() - stats["flushed_through"].as_u64().unwrap()
    };
    for k in 0..200 {
        engine
            .write(upsert_batch(vec![doc(&format!("a{k:03}"))]))
            .await
            .unwrap();
        // The tiered policy merges segments of similar size only. Writing
        // faster than the background flush (a loaded machine) makes flushes
        // of uneven size, which it rightly leaves alone; so a write that
        // reaches the flush threshold waits until its automatic flush is
        // done, making equal segments.
        while unflushed(&engine.stats()) >= 10 {
            assert!(
                std::time::Instant::now() < deadline,
                "no automatic flush: {}",
                engine.stats()
            );
            tokio::task::yield_now().await;
        }
    }
    // Background work: wait (bounded) until it has caught up.
    loop {
        let stats = engine.stats();
        if stats["compactions"].as_u64().unwrap() > 0 && unflushed(&stats) < 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no automatic flush/compaction: {stats}"
        );
        tokio::task::yield_now().await;
    }
    let m = engine.manifest_snapshot().await.unwrap();
    assert!(
        m.segments.len() < 8,
        "compaction keeps segments few: {}",
        m.segments.len()
    );
    drop(engine);
    let engine = open_engine(&store, "auto").await;
    assert_eq!(doc_count(&engine).await, 200);
}

/// A process done writing waits for the automatic flush its writes
/// started, instead of cutting it off at exit, and starts no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_background_work_waits_for_the_automatic_flush() {
    let store = HookedStore::new(Arc::new(MemoryStore::new()), PutGate::new("/segments/"));
    let gated: Arc<dyn ObjectStore> = store.clone();
    let opts = EngineOptions {
        auto_flush_wal_objects: Some(10),
        ..EngineOptions::default()
    };
    let engine = Engine::open(gated, "finish", opts).await.unwrap();
    store.hooks.gate.hold_next();
    for k in 0..25 {
        engine
            .write(upsert_batch(vec![doc(&format!("a{k:03}"))]))
            .await
            .unwrap();
    }
    // The automatic flush is now held at its segment put.
    store.hooks.gate.held().await;
    let waiting = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        engine.finish_background_work(),
    );
    assert!(
        waiting.await.is_err(),
        "finishing returned while a flush was running"
    );
    store.hooks.gate.open_for_good();
    engine.finish_background_work().await;
    let stats = engine.stats();
    assert_eq!(
        stats["flushes"], 1,
        "the running flush completed, and no other started: {stats}"
    );
}

#[tokio::test]
async fn a_follower_reads_through_a_compaction_it_has_not_seen() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let writer = open_engine(&store, "follow-compact").await;
    for batch in ["a", "b"] {
        writer
            .write(upsert_batch(numbered_docs(batch, 5)))
            .await
            .unwrap();
        writer.flush().await.unwrap();
    }
    let follower = Engine::open(
        store.clone(),
        "follow-compact",
        EngineOptions {
            read_only: true,
            ..EngineOptions::default()
        },
    )
    .await
    .unwrap();
    writer.compact().await.unwrap();
    // The follower's manifest names segments that no longer exist.
    let d = follower.get(&DocId::from("a00003")).await.unwrap().unwrap();
    assert_eq!(d.attributes.get("n"), Some(&i(3)));
    assert_eq!(doc_count(&follower).await, 10);
}

#[tokio::test]
async fn verify_reports_progress_over_every_object() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    {
        let engine = open_engine(&store, "progress").await;
        engine
            .write(upsert_batch(numbered_docs("p", 5)))
            .await
            .unwrap();
        engine.flush().await.unwrap();
    }
    let objects = list_keys_containing(&store, "progress/").await.len() as u64;
    let seen = std::sync::Mutex::new(Vec::new());
    let report = admin::verify_with_progress(store.clone(), "progress", &|done, total| {
        seen.lock().unwrap().push((done, total))
    })
    .await
    .unwrap();
    assert!(report.healthy);
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.last(), Some(&(objects, objects)), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_concurrent_batches_are_split_into_bounded_wal_objects() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let engine = open_engine(&store, "bounded").await;
    let body = "x".repeat(1 << 20);
    let tasks: Vec<_> = (0..40)
        .map(|k| {
            let engine = engine.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let doc = Document::new(format!("big{k:02}")).with("body", body);
                engine.write(upsert_batch(vec![doc])).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(doc_count(&engine).await, 40);
    for meta in store.list("bounded/wal/", None).await.unwrap() {
        assert!(
            meta.size <= 18 << 20,
            "WAL object {} is {} bytes",
            meta.key,
            meta.size
        );
    }
    let opts = EngineOptions {
        limits: Limits {
            max_batch_bytes: 4 << 20,
            ..Limits::default()
        },
        ..EngineOptions::default()
    };
    let small = Engine::open(store.clone(), "bounded", opts).await.unwrap();
    let batch = upsert_batch(
        (0..5)
            .map(|k| Document::new(format!("b{k}")).with("body", body.clone()))
            .collect(),
    );
    assert!(matches!(
        small.write(batch).await,
        Err(EngineError::Invalid(TypeError::BatchTooManyBytes { .. }))
    ));
}

/// A filesystem write (`PutJson`) is stored byte for byte and keeps the
/// time it was given, through flush, compaction and a reopen; `SetMtime`
/// changes only the time; API writes and patches stay canonical.
#[tokio::test]
async fn json_as_written_and_its_time_survive_flush_compaction_and_reopen() {
    use std::time::{Duration, UNIX_EPOCH};
    for ts in all_backends() {
        let store = &ts.store;
        let engine = open_engine(store, "bytes").await;
        let odd = Bytes::from_static(b"{ \"b\":1,\n\t\"a\" : \"\\u00e9\" ,\"id\":\"x\" }\n\n");
        let t1 = UNIX_EPOCH + Duration::new(1_000_000_000, 987_654_321);
        engine
            .write(WriteBatch::new().put_json("x", odd.clone(), Some(t1)))
            .await
            .unwrap();
        engine
            .write(WriteBatch::new().put_json("e", Bytes::new(), None))
            .await
            .unwrap();
        let stored = engine.get_stored(&DocId::from("x")).await.unwrap().unwrap();
        assert_eq!((stored.json.clone(), stored.mtime()), (odd.clone(), t1));
        // The typed view parses the same bytes; empty content is `{}`.
        let x = engine.get(&DocId::from("x")).await.unwrap().unwrap();
        assert_eq!(x.attributes["a"], Value::from("é"));
        assert_eq!(
            engine.get(&DocId::from("e")).await.unwrap(),
            Some(Document::new("e"))
        );

        engine.flush().await.unwrap();
        let t2 = UNIX_EPOCH + Duration::new(2_000_000_000, 1);
        engine
            .write(WriteBatch::new().set_mtime("x", t2).set_mtime("missing", t2))
            .await
            .unwrap();
        assert!(engine.get(&DocId::from("missing")).await.unwrap().is_none());
        engine.compact().await.unwrap();
        drop(engine);

        let engine = open_engine(store, "bytes").await;
        let stored = engine.get_stored(&DocId::from("x")).await.unwrap().unwrap();
        assert_eq!((stored.json.clone(), stored.mtime()), (odd.clone(), t2));
        let e = engine.get_stored(&DocId::from("e")).await.unwrap().unwrap();
        assert!(e.json.is_empty());

        // A patch through the API renders canonically again.
        let patch = Patch {
            id: DocId::from("x"),
            set: [("c".to_string(), Value::Int(2))].into(),
            ..Patch::default()
        };
        engine.write(WriteBatch::new().patch(patch)).await.unwrap();
        let patched = engine.get_stored(&DocId::from("x")).await.unwrap().unwrap();
        let want = engine.get(&DocId::from("x")).await.unwrap().unwrap();
        assert_eq!(&patched.json[..], &want.to_canonical_json()[..]);
        let now = std::time::SystemTime::now();
        assert!(patched.mtime() <= now && patched.mtime() + Duration::from_secs(60) > now);
    }
}

/// Bytes that are not a valid document are refused and change nothing.
#[tokio::test]
async fn invalid_json_as_written_is_refused_and_changes_nothing() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let engine = open_engine(&store, "bad").await;
    engine
        .write(WriteBatch::new().put_json("x", &b"{\"v\":1}"[..], None))
        .await
        .unwrap();
    let limits = Limits {
        max_doc_bytes: 64,
        ..Limits::default()
    };
    let big = format!("{{\"s\":\"{}\"}}", "x".repeat(100));
    for (bad, what) in [
        (&b"{nope"[..], "invalid"),
        (b"[1]", "not an object"),
        (br#"{"id":"y"}"#, "wrong id"),
        (br#"{"vector":[]}"#, "empty vector"),
        (big.as_bytes(), "too large"),
    ] {
        let engine = if what == "too large" {
            Engine::open(
                store.clone(),
                "bad",
                EngineOptions {
                    limits,
                    ..EngineOptions::default()
                },
            )
            .await
            .unwrap()
        } else {
            engine.clone()
        };
        let batch =
            WriteBatch::new()
                .put_json("z", &b"{}"[..], None)
                .put_json("x", bad.to_vec(), None);
        assert!(
            matches!(engine.write(batch).await, Err(EngineError::Invalid(_))),
            "{what}"
        );
        assert_eq!(
            &engine
                .get_stored(&DocId::from("x"))
                .await
                .unwrap()
                .unwrap()
                .json[..],
            b"{\"v\":1}",
            "{what}"
        );
        assert!(engine.get(&DocId::from("z")).await.unwrap().is_none(), "{what}");
    }
}

/// Counts the GETs in flight at once (each held a moment, like a remote
/// store's round trip), to see how many objects verify reads together.
#[derive(Debug, Default)]
struct GetsInFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

#[async_trait::async_trait]
impl StoreHooks for GetsInFlight {
    async fn before_get(&self, _key: &str) {
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(n, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        self.now.fetch_sub(1, SeqCst);
    }
}

/// verify reads a long WAL several objects at a time (one at a time, a
/// retained hour of WAL took most of a minute on S3), never more than its
/// bound at once, and still reports every problem, in key order.
#[tokio::test]
async fn verify_reads_objects_concurrently_and_reports_in_order() {
    let mem: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let gauged = HookedStore::new(mem.clone(), GetsInFlight::default());
    let store: Arc<dyn ObjectStore> = gauged.clone();
    let ns = "verify-many";
    {
        let engine = open_engine(&mem, ns).await;
        for k in 0..200 {
            engine
                .write(upsert_batch(vec![doc(&format!("d{k:04}"))]))
                .await
                .unwrap();
        }
    }
    let wal = list_keys_containing(&mem, &format!("{ns}/wal/")).await;
    let objects = PIPELINE_DEPTH as usize + 200;
    assert_eq!(wal.len(), objects, "fence, its window's VOIDs, 200 writes");
    let report = admin::verify(store.clone(), ns).await.unwrap();
    assert!(report.healthy, "{report:?}");
    assert_eq!(report.wal_objects_checked, objects);
    let peak = gauged.hooks.peak.load(SeqCst);
    assert!(
        (2..=32).contains(&peak),
        "GETs in flight at once: {peak} (want several, at most 32)"
    );

    // Damage far apart: each is named, in key order.
    for i in [190, 40, 120] {
        overwrite_with_garbage(&mem, &wal[i]).await;
    }
    let report = admin::verify(store.clone(), ns).await.unwrap();
    assert!(!report.healthy);
    let named: Vec<&str> = report.issues.iter().map(|i| i.object.as_str()).collect();
    assert_eq!(
        named,
        vec![wal[40].as_str(), wal[120].as_str(), wal[190].as_str()],
        "{report:?}"
    );
}

/// Scan pages merge the memtable with overlapping segments (newest version
/// of an id wins, deletes hide older versions) and resume exactly after
/// the id they are given, whatever the page size: every page, from every
/// resume point (present, deleted or never written), is the next stretch
/// of the model's ids, and only the end gives an empty page.
#[tokio::test]
async fn scan_pages_merge_memtable_and_segments_from_every_resume_point() {
    use std::collections::BTreeMap;
    for ts in [memory_backend(), localfs_backend()] {
        let engine = open_engine(&ts.store, "merge").await;
        let mut model: BTreeMap<String, i64> = BTreeMap::new();
        let put = |model: &mut BTreeMap<String, i64>, ids: &[String], round: i64| {
            for id in ids {
                model.insert(id.clone(), round);
            }
            upsert_batch(
                ids.iter()
                    .map(|id| Document::new(id.as_str()).with("round", round))
                    .collect(),
            )
        };
        let ids = |f: &dyn Fn(usize) -> bool| -> Vec<String> {
            (0..300)
                .filter(|k| f(*k))
                .map(|k| format!("a{k:03}"))
                .collect()
        };
        // Oldest segment: every id once.
        engine
            .write(put(&mut model, &ids(&|_| true), 0))
            .await
            .unwrap();
        engine.flush().await.unwrap();
        // A newer segment over it: rewrites, deletes, ids between.
        engine
            .write(put(&mut model, &ids(&|k| k % 3 == 0), 1))
            .await
            .unwrap();
        let between: Vec<String> = (0..300).step_by(7).map(|k| format!("a{k:03}m")).collect();
        engine.write(put(&mut model, &between, 1)).await.unwrap();
        let gone = ids(&|k| k % 5 == 0);
        let refs: Vec<&str> = gone.iter().map(String::as_str).collect();
        engine.write(delete_batch(&refs)).await.unwrap();
        for id in &gone {
            model.remove(id);
        }
        engine.flush().await.unwrap();
        // The memtable: more rewrites, and a run of deletes longer than a
        // page's look-ahead, so some pages are only tombstones.
        engine
            .write(put(&mut model, &ids(&|k| k % 7 == 0), 2))
            .await
            .unwrap();
        let gone = ids(&|k| (100..200).contains(&k));
        let refs: Vec<&str> = gone.iter().map(String::as_str).collect();
        engine.write(delete_batch(&refs)).await.unwrap();
        for id in &gone {
            model.remove(id);
        }
        assert!(engine.manifest_snapshot().await.unwrap().segments.len() >= 2);

        let live: Vec<(&String, &i64)> = model.iter().collect();
        let round_of =
            |d: &reef::engine::StoredDoc| d.document().unwrap().attributes.get("round").cloned();
        for limit in [1, 2, 5, 64, 1000] {
            let mut got = Vec::new();
            let mut after: Option<DocId> = None;
            loop {
                let page = engine.scan(after.as_ref(), limit).await.unwrap();
                let Some(last) = page.last() else { break };
                assert!(page.len() <= limit);
                after = Some(last.id.clone());
                got.extend(page.iter().map(|d| (d.id.as_str().to_string(), round_of(d))));
            }
            let want: Vec<_> = live
                .iter()
                .map(|(id, r)| ((*id).clone(), Some(i(**r))))
                .collect();
            assert_eq!(got, want, "backend={} limit={limit}", ts.name);
        }
        // Resume points: every id ever named, and ids between them.
        let mut points: Vec<String> = (0..300).map(|k| format!("a{k:03}")).collect();
        points.extend(between.iter().cloned());
        points.extend((0..300).step_by(11).map(|k| format!("a{k:03}0")));
        points.push(String::new());
        for p in &points {
            let page = engine.scan(Some(&DocId::from(p.as_str())), 3).await.unwrap();
            let next: Vec<&String> = model
                .range::<String, _>((std::ops::Bound::Excluded(p), std::ops::Bound::Unbounded))
                .map(|(id, _)| id)
                .take(3)
                .collect();
            let ids: Vec<&str> = page.iter().map(|d| d.id.as_str()).collect();
            assert!(
                !ids.is_empty() || next.is_empty(),
                "backend={} after {p:?}: empty page before the end",
                ts.name
            );
            assert_eq!(ids, next[..ids.len()], "backend={} after {p:?}", ts.name);
        }
    }
}
