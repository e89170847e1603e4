//! Garbage collection, retention and fencing after deletion, on the memory,
//! local and S3 (moto) stores.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use reef::admin;
use reef::engine::layout::{manifest_key, parse_numbered, wal_dir, wal_key};
use reef::engine::manifest;
use reef::engine::wal::{WalKind, WalRecord};
use reef::engine::{At, Engine, EngineError, GcOptions, GcReport};
use reef::store::ObjectStore;
use reef::types::Document;

/// GC keeping nothing but the newest state (and fencing boundaries).
async fn gc_all(engine: &Engine) -> GcReport {
    engine.gc(keep_nothing(engine)).await.expect("gc")
}

/// Writes, flushes, compacts and deletes: history with every kind of object.
async fn build_history(engine: &Engine) {
    for round in 0..4 {
        write_round(engine, round, 30).await;
        engine
            .write(delete_batch(&[&format!("d{round:03}")]))
            .await
            .expect("delete");
        engine.flush().await.expect("flush");
    }
    engine.compact().await.expect("compact");
    write_round(engine, 10, 5).await;
    engine.flush().await.expect("flush");
}

async fn wal_kind(store: &Arc<dyn ObjectStore>, key: &str, seq: u64) -> WalKind {
    let data = store.get(key).await.expect("get wal");
    WalRecord::decode(data, seq).expect("decode wal").kind
}

/// Asserts that the WAL of `ns` up to `flushed_through` holds only FENCEs
/// and the VOIDs of their pipeline windows: the slots a fenced writer's
/// puts may still aim at, which GC keeps after their data is flushed.
async fn assert_flushed_wal_holds_only_markers(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    flushed_through: u64,
) {
    let dir = wal_dir(ns);
    for key in list_keys_containing(store, &dir).await {
        let seq = parse_numbered(&dir, &key).unwrap();
        if seq <= flushed_through {
            let kind = wal_kind(store, &key, seq).await;
            assert!(
                matches!(kind, WalKind::Fence | WalKind::Void),
                "{key}: {kind:?}"
            );
        }
    }
}

/// Sequences of every FENCE object of `ns`.
async fn fences(store: &Arc<dyn ObjectStore>, ns: &str) -> Vec<u64> {
    let dir = wal_dir(ns);
    let mut out = Vec::new();
    for key in list_keys_containing(store, &dir).await {
        let seq = parse_numbered(&dir, &key).unwrap();
        if wal_kind(store, &key, seq).await == WalKind::Fence {
            out.push(seq);
        }
    }
    out
}

#[tokio::test]
async fn gc_with_retain_zero_leaves_only_what_the_newest_state_needs() {
    for backend in all_backends() {
        let store = &backend.store;
        let ns = "gc-zero";
        let engine = open_as(store, ns, "w1").await;
        build_history(&engine).await;
        let before = snapshot(&engine).await;
        let objects_before = list_keys_containing(store, &format!("{ns}/")).await.len();
        let report = gc_all(&engine).await;
        assert!(report.complete, "{}: {report:?}", backend.name);
        assert!(report.deleted.wal.objects > 0, "{}: {report:?}", backend.name);
        assert!(report.deleted.replaced_segments.objects > 0, "{report:?}");
        assert!(report.deleted.manifests.objects > 0, "{report:?}");

        let m = engine.manifest_snapshot().await.unwrap();
        // Segments: exactly the newest manifest's.
        let segs: BTreeSet<String> = list_keys_containing(store, &format!("{ns}/segments/"))
            .await
            .into_iter()
            .collect();
        let wanted: BTreeSet<String> = m
            .segments
            .iter()
            .map(|s| format!("{ns}/segments/{}", s.id))
            .collect();
        assert_eq!(segs, wanted, "{}", backend.name);
        // Manifests: the newest and the claims (fencing boundaries).
        let versions = manifest::list_versions(store, ns).await.unwrap();
        for v in &versions {
            assert!(
                *v == m.version || m.claims.contains(v),
                "{}: manifest {v} left ({versions:?}, claims {:?})",
                backend.name,
                m.claims
            );
        }
        // WAL: only what is not flushed, and markers.
        assert_flushed_wal_holds_only_markers(store, ns, m.flushed_through).await;
        let objects_after = list_keys_containing(store, &format!("{ns}/")).await.len();
        assert!(
            objects_after < objects_before / 2,
            "{objects_before} -> {objects_after}"
        );

        assert_eq!(snapshot(&engine).await, before);
        drop(engine);
        let reopened = open_as(store, ns, "w2").await;
        assert_eq!(snapshot(&reopened).await, before, "{}", backend.name);
        let verify = admin::verify(store.clone(), ns).await.unwrap();
        assert!(verify.healthy, "{}: {verify:?}", backend.name);
        assert!(verify.orphan_files.is_empty(), "{verify:?}");
        // A second pass finds nothing more to delete.
        let again = gc_all(&reopened).await;
        assert_eq!(again.deleted.replaced_segments.objects, 0, "{again:?}");
        assert_eq!(again.deleted.orphan_segments.objects, 0, "{again:?}");
    }
}

#[tokio::test]
async fn default_retention_keeps_history_and_dry_run_deletes_nothing() {
    for backend in all_backends() {
        let store = &backend.store;
        let ns = "gc-keep";
        let engine = open_as(store, ns, "w1").await;
        build_history(&engine).await;
        let keys_before = list_keys_containing(store, &format!("{ns}/")).await;
        // One hour of retention: all of this is recent history.
        let report = engine.gc(engine.gc_options()).await.unwrap();
        assert_eq!(report.deleted.wal.objects, 0, "{report:?}");
        assert_eq!(report.deleted.replaced_segments.objects, 0, "{report:?}");
        assert_eq!(report.deleted.manifests.objects, 0, "{report:?}");
        let dry = engine
            .gc(GcOptions {
                retain: Duration::ZERO,
                dry_run: true,
                ..engine.gc_options()
            })
            .await
            .unwrap();
        assert!(dry.deleted.wal.objects > 0 && !dry.keys.is_empty(), "{dry:?}");
        let mut keys_after = list_keys_containing(store, &format!("{ns}/")).await;
        // `gc` (not the dry run) committed one manifest to prove ownership.
        keys_after.retain(|k| !k.contains("/manifest/"));
        let mut expected = keys_before.clone();
        expected.retain(|k| !k.contains("/manifest/"));
        assert_eq!(keys_after, expected, "{}", backend.name);
    }
}

#[tokio::test]
async fn open_at_every_past_sequence_returns_exactly_that_state() {
    for backend in all_backends() {
        let store = &backend.store;
        let ns = "gc-past";
        let engine = open_as(store, ns, "w1").await;
        let mut states = Vec::new();
        for round in 0..6i64 {
            let ack = engine
                .write(upsert_batch(vec![
                    Document::new(format!("r{round}")).with("v", round),
                    Document::new("shared").with("v", round),
                ]))
                .await
                .unwrap();
            states.push((ack.seq, snapshot(&engine).await));
            if round % 2 == 1 {
                let ack = engine.write(delete_batch(&["r0"])).await.unwrap();
                states.push((ack.seq, snapshot(&engine).await));
                engine.flush().await.unwrap();
            }
            if round == 3 {
                engine.compact().await.unwrap();
            }
        }
        for (seq, expected) in &states {
            let past = open_past(store, ns, At::Seq(*seq))
                .await
                .unwrap_or_else(|e| panic!("{}: open_at {seq}: {e}", backend.name));
            assert_eq!(&snapshot(&past).await, expected, "{} at {seq}", backend.name);
            assert!(past.is_read_only());
            assert!(past.write(upsert_batch(vec![doc("x")])).await.is_err());
        }
        // Beyond the newest sequence: a clear error naming the range.
        let newest = states.last().unwrap().0;
        match open_past(store, ns, At::Seq(newest + 100)).await {
            Err(EngineError::NotRetained { retained, .. }) => {
                assert!(retained.contains("newest"), "{retained}")
            }
            other => panic!("expected NotRetained, got {other:?}"),
        }
        // After GC without retention, old states are gone with a clear
        // error; the newest is still there.
        gc_all(&engine).await;
        let (old_seq, _) = states[0];
        match open_past(store, ns, At::Seq(old_seq)).await {
            Err(e @ EngineError::NotRetained { .. }) => {
                let text = e.to_string();
                assert!(text.contains("retained"), "{text}");
            }
            other => panic!("{}: expected NotRetained, got {other:?}", backend.name),
        }
        let (seq, expected) = states.last().unwrap();
        let past = open_past(store, ns, At::Seq(*seq)).await.unwrap();
        assert_eq!(&snapshot(&past).await, expected);
    }
}

#[tokio::test]
async fn checkpoints_pin_their_state_through_writes_compaction_gc_and_reopen() {
    for backend in all_backends() {
        let store = &backend.store;
        let ns = "gc-ckpt";
        let engine = open_as(store, ns, "w1").await;
        write_round(&engine, 0, 20).await;
        engine.flush().await.unwrap();
        write_round(&engine, 1, 10).await; // partly unflushed: WAL pinned too
        let pinned = snapshot(&engine).await;
        let cp = engine.create_checkpoint("before-migration").await.unwrap();
        assert_eq!(cp.name, "before-migration");

        // Clear errors: duplicate, bad names, missing.
        assert!(matches!(
            engine.create_checkpoint("before-migration").await,
            Err(EngineError::CheckpointExists { .. })
        ));
        for bad in ["", ".hidden", "a/b", "nul\0"] {
            assert!(
                matches!(
                    engine.create_checkpoint(bad).await,
                    Err(EngineError::BadCheckpointName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            engine.delete_checkpoint("nope").await,
            Err(EngineError::NoSuchCheckpoint { .. })
        ));
        assert!(matches!(
            open_past(store, ns, At::Checkpoint("nope".into())).await,
            Err(EngineError::NoSuchCheckpoint { .. })
        ));

        // Writes, deletes, compaction, GC without retention, reopen.
        for round in 2..5 {
            write_round(&engine, round, 30).await;
            engine.write(delete_batch(&["d005"])).await.unwrap();
            engine.flush().await.unwrap();
        }
        engine.compact().await.unwrap();
        gc_all(&engine).await;
        let current = snapshot(&engine).await;
        drop(engine);
        let engine = open_as(store, ns, "w2").await;
        gc_all(&engine).await;
        assert_eq!(snapshot(&engine).await, current);
        let listed = engine.list_checkpoints().await.unwrap();
        assert_eq!(listed, vec![cp.clone()]);
        let at = open_past(store, ns, At::Checkpoint("before-migration".into()))
            .await
            .unwrap();
        assert_eq!(snapshot(&at).await, pinned, "{}", backend.name);
        assert!(admin::verify(store.clone(), ns).await.unwrap().healthy);

        // Deleting it frees its objects at the next GC.
        let before = list_keys_containing(store, &format!("{ns}/")).await.len();
        engine.delete_checkpoint("before-migration").await.unwrap();
        let report = gc_all(&engine).await;
        assert!(
            report.deleted.replaced_segments.objects > 0 && report.deleted.wal.objects > 0,
            "{}: {report:?}",
            backend.name
        );
        let after = list_keys_containing(store, &format!("{ns}/")).await.len();
        assert!(after < before, "{before} -> {after}");
        assert!(matches!(
            open_past(store, ns, At::Checkpoint("before-migration".into())).await,
            Err(EngineError::NoSuchCheckpoint { .. })
        ));
        assert_eq!(snapshot(&engine).await, current);
    }
}

/// The zombie's operation, tried once against a store where the new writer
/// fenced it, wrote, flushed, compacted and collected garbage with no
/// retention (deleting the zombie's segments and everything around its
/// next WAL sequence and manifest version that is not a boundary).
#[derive(Debug, Clone, Copy)]
enum ZombieOp {
    Write,
    Flush,
    Compact,
    Gc,
}

async fn fenced_after_gc(store: &Arc<dyn ObjectStore>, ns: &str, op: ZombieOp) {
    let zombie = open_as(store, ns, "zombie").await;
    build_history(&zombie).await;
    write_round(&zombie, 20, 8).await; // unflushed: its flush has work
    let zombie_manifest = zombie.manifest_snapshot().await.unwrap();
    let zombie_next_seq = zombie.stats()["last_wal_seq"].as_u64().unwrap() + 1;

    let current = open_as(store, ns, "current").await;
    write_round(&current, 30, 12).await;
    current.flush().await.unwrap();
    current.compact().await.unwrap();
    write_round(&current, 31, 3).await;
    current.flush().await.unwrap();
    let report = gc_all(&current).await;
    // The GC did delete what the zombie's state was built on.
    assert!(report.deleted.replaced_segments.objects > 0, "{report:?}");
    for seg in &zombie_manifest.segments {
        let key = format!("{ns}/segments/{}", seg.id);
        assert!(store.get(&key).await.unwrap_err().is_not_found(), "{key}");
    }
    // ...but not its next WAL slot nor its next manifest version.
    let fence = wal_key(ns, zombie_next_seq);
    assert_eq!(wal_kind(store, &fence, zombie_next_seq).await, WalKind::Fence);
    store
        .get(&manifest_key(ns, zombie_manifest.version + 1))
        .await
        .expect("the claim that fences the zombie is kept");
    let expected = snapshot(&current).await;
    let keys_before = list_keys_containing(store, &format!("{ns}/")).await;

    let result = match op {
        ZombieOp::Write => zombie
            .write(upsert_batch(vec![doc("from-zombie")]))
            .await
            .map(|_| ()),
        ZombieOp::Flush => zombie.flush().await,
        ZombieOp::Compact => zombie.compact().await,
        ZombieOp::Gc => zombie.gc(keep_nothing(&zombie)).await.map(|_| ()),
    };
    assert!(
        matches!(result, Err(EngineError::Fenced { ref by, .. }) if by == "current"),
        "{op:?}: {result:?}"
    );
    // Nothing it did is visible, nothing the current writer needs is gone.
    let keys_after = list_keys_containing(store, &format!("{ns}/")).await;
    let lost: Vec<&String> = keys_before
        .iter()
        .filter(|k| !keys_after.contains(k))
        .collect();
    assert!(lost.is_empty(), "{op:?} deleted {lost:?}");
    assert_eq!(snapshot(&current).await, expected);
    drop(current);
    let reopened = open_as(store, ns, "after").await;
    assert_eq!(snapshot(&reopened).await, expected, "{op:?}");
    let verify = admin::verify(store.clone(), ns).await.unwrap();
    assert!(verify.healthy, "{op:?}: {verify:?}");
}

#[tokio::test]
async fn a_writer_fenced_before_gc_fails_every_operation_and_deletes_nothing() {
    for backend in all_backends() {
        for op in [
            ZombieOp::Write,
            ZombieOp::Flush,
            ZombieOp::Compact,
            ZombieOp::Gc,
        ] {
            let ns = format!("gc-fence-{op:?}").to_lowercase();
            fenced_after_gc(&backend.store, &ns, op).await;
        }
    }
}

#[tokio::test]
async fn rebuild_manifest_after_gc_recovers_the_newest_state() {
    for backend in all_backends() {
        let store = &backend.store;
        let ns = "gc-rebuild";
        let engine = open_as(store, ns, "w1").await;
        build_history(&engine).await;
        gc_all(&engine).await;
        write_round(&engine, 50, 7).await; // unflushed, after the GC
        engine.write(delete_batch(&["d001"])).await.unwrap();
        let expected = snapshot(&engine).await;
        drop(engine);
        for key in list_keys_containing(store, &format!("{ns}/manifest/")).await {
            store.delete(&key).await.unwrap();
        }
        admin::rebuild_manifest(store.clone(), ns).await.unwrap();
        let engine = open_as(store, ns, "w2").await;
        assert_eq!(snapshot(&engine).await, expected, "{}", backend.name);
        let verify = admin::verify(store.clone(), ns).await.unwrap();
        assert!(verify.healthy, "{verify:?}");
        // The rebuilt manifest does not know which flushed WAL objects are
        // markers: GC reads the small ones and still keeps every FENCE.
        engine.flush().await.unwrap();
        let fences_before = fences(store, ns).await;
        gc_all(&engine).await;
        let m = engine.manifest_snapshot().await.unwrap();
        assert_flushed_wal_holds_only_markers(store, ns, m.flushed_through).await;
        assert_eq!(fences(store, ns).await, fences_before, "{}", backend.name);
        assert_eq!(snapshot(&engine).await, expected);
    }
}

#[tokio::test]
async fn repair_after_gc_keeps_retained_history_and_checkpoints() {
    for backend in all_backends() {
        let store = &backend.store;
        let ns = "gc-repair";
        let engine = open_as(store, ns, "w1").await;
        let ack = engine
            .write(upsert_batch(numbered_docs("a", 10)))
            .await
            .unwrap();
        let first = snapshot(&engine).await;
        engine.flush().await.unwrap();
        engine.create_checkpoint("one").await.unwrap();
        write_round(&engine, 1, 10).await;
        engine.flush().await.unwrap();
        engine.compact().await.unwrap();
        engine.gc(engine.gc_options()).await.unwrap();
        drop(engine);
        let report = admin::repair(store.clone(), ns).await.unwrap();
        assert!(report.orphans_deleted.is_empty(), "{report:?}");
        let past = open_past(store, ns, At::Seq(ack.seq)).await.unwrap();
        assert_eq!(snapshot(&past).await, first);
        let cp = open_past(store, ns, At::Checkpoint("one".into()))
            .await
            .unwrap();
        assert_eq!(snapshot(&cp).await, first);
        let verify = admin::verify(store.clone(), ns).await.unwrap();
        assert!(verify.healthy && verify.orphan_files.is_empty(), "{verify:?}");
        assert_eq!(verify.checkpoints, vec!["one".to_string()]);
    }
}
