//! A checkpoint created by a process that does not hold the namespace
//! (`reef checkpoint create`, a follower) racing the writer's GC with
//! `retain=0`, on the memory, local and S3 (moto) stores. The creator is
//! stopped at a gate between reading the state and writing the final
//! checkpoint while the writer moves on and a GC pass lists the checkpoints;
//! the checkpoint must then open to exactly the state it was created on.

mod common;
#[path = "support/hooked_store.rs"]
mod hooked_store;

use std::sync::Arc;

use common::*;
use hooked_store::{Gate, HookedStore, StoreHooks};
use reef::admin;
use reef::engine::layout::manifest_key;
use reef::engine::{checkpoint, At, Checkpoint, Engine, EngineError, EngineOptions};
use reef::store::{FailpointStore, ObjectStore};

/// Hooks that hold the final checkpoint put (not a pending one) and the
/// manifest listing, each at its own gate.
#[derive(Debug, Default)]
struct CheckpointGates {
    checkpoint_put: Gate,
    manifest_list: Gate,
}

#[async_trait::async_trait]
impl StoreHooks for CheckpointGates {
    async fn before_put(&self, key: &str, data: &bytes::Bytes) {
        let Some((_, name)) = key.split_once("/checkpoints/") else {
            return;
        };
        let finished = Checkpoint::decode(data.clone(), name).is_ok_and(|c| !c.pending);
        if finished {
            self.checkpoint_put.pass(key).await;
        }
    }

    async fn before_list(&self, prefix: &str) {
        if prefix.ends_with("/manifest/") {
            self.manifest_list.pass(prefix).await;
        }
    }
}

fn gated(inner: Arc<dyn ObjectStore>) -> Arc<HookedStore<CheckpointGates>> {
    HookedStore::new(inner, CheckpointGates::default())
}

fn writer_opts() -> EngineOptions {
    EngineOptions {
        writer_id: Some("writer".to_string()),
        // Automatic passes keep an hour; the pass under test keeps nothing.
        auto_compact_segments: None,
        ..EngineOptions::default()
    }
}

fn read_only() -> EngineOptions {
    EngineOptions {
        read_only: true,
        ..EngineOptions::default()
    }
}

async fn open_checkpoint(store: &Arc<dyn ObjectStore>, ns: &str) -> Result<Engine, EngineError> {
    open_past(store, ns, At::Checkpoint("cp".to_string())).await
}

#[tokio::test]
async fn a_checkpoint_created_beside_a_live_writer_survives_its_retain_zero_gc() {
    for backend in all_backends() {
        let name = backend.name;
        let base = backend.store.clone();
        let ns = "cp-race";
        let writer_store = gated(base.clone());
        let writer = Engine::open(writer_store.clone(), ns, writer_opts())
            .await
            .expect("open writer");
        write_round(&writer, 0, 30).await;
        writer.flush().await.expect("flush");
        // Part of the state is in the WAL only: the checkpoint pins it too.
        write_round(&writer, 1, 10).await;
        let expected = snapshot(&writer).await;
        let pinned_version = writer.manifest_snapshot().await.unwrap().version;

        // The creator, another "process": its own engine, read-only.
        let creator_store = gated(base.clone());
        creator_store.hooks.checkpoint_put.hold_next();
        let creator_side: Arc<dyn ObjectStore> = creator_store.clone();
        let create = tokio::spawn(async move {
            let follower = Engine::open(creator_side, ns, read_only()).await?;
            follower.create_checkpoint("cp").await
        });
        creator_store.hooks.checkpoint_put.held().await;

        // Meanwhile the writer replaces that state entirely and a GC pass
        // lists the checkpoints, then waits before listing the manifests.
        write_round(&writer, 2, 30).await;
        writer.write(delete_batch(&["d005"])).await.expect("delete");
        writer.flush().await.expect("flush");
        writer.compact().await.expect("compact");
        write_round(&writer, 3, 3).await;
        writer.flush().await.expect("flush");
        writer_store.hooks.manifest_list.hold_next();
        let gc_engine = writer.clone();
        let gc = tokio::spawn(async move {
            let opts = keep_nothing(&gc_engine);
            gc_engine.gc(opts).await
        });
        writer_store.hooks.manifest_list.held().await;

        // The creator finishes while the pass is between its checkpoint
        // listing and its deletes; then the pass deletes.
        creator_store.hooks.checkpoint_put.release(1);
        let created = create.await.expect("create task");
        writer_store.hooks.manifest_list.release(1);
        let report = gc.await.expect("gc task").expect("gc");
        assert!(report.deleted.wal.objects > 0, "{name}: {report:?}");

        // Refusing would be safe too, but this protocol needs no retry.
        let cp = created.unwrap_or_else(|e| panic!("{name}: create refused: {e}"));
        assert_eq!(cp.manifest_version, pinned_version, "{name}: {cp:?}");
        let view = open_checkpoint(&base, ns)
            .await
            .unwrap_or_else(|e| panic!("{name}: the checkpoint pins a freed state: {e}"));
        assert_eq!(snapshot(&view).await, expected, "{name}");
        drop(view);
        assert_eq!(report.kept.pending_checkpoints, ["cp"], "{name}: {report:?}");

        // The final checkpoint pins its state through later passes and a
        // reopen; deleting it frees it at the next pass.
        write_round(&writer, 4, 30).await;
        writer.flush().await.expect("flush");
        writer.gc(keep_nothing(&writer)).await.expect("gc");
        drop(writer);
        let writer = Engine::open(base.clone(), ns, writer_opts())
            .await
            .expect("reopen");
        writer.gc(keep_nothing(&writer)).await.expect("gc");
        let view = open_checkpoint(&base, ns).await.expect("open checkpoint");
        assert_eq!(snapshot(&view).await, expected, "{name}");
        drop(view);
        let health = admin::verify(base.clone(), ns).await.expect("verify");
        assert!(health.healthy, "{name}: {:?}", health.issues);
        writer.delete_checkpoint("cp").await.expect("delete");
        writer.gc(keep_nothing(&writer)).await.expect("gc");
        assert!(
            base.get(&manifest_key(ns, pinned_version)).await.is_err(),
            "{name}: manifest {pinned_version} outlived its checkpoint"
        );
    }
}

#[tokio::test]
async fn an_abandoned_pending_checkpoint_is_shown_holds_gc_back_and_can_be_deleted() {
    for backend in all_backends() {
        let name = backend.name;
        let base = backend.store.clone();
        let ns = "cp-pending";
        let writer = Engine::open(base.clone(), ns, writer_opts())
            .await
            .expect("open writer");
        write_round(&writer, 0, 20).await;
        writer.flush().await.expect("flush");
        let floor = writer.manifest_snapshot().await.unwrap().version;

        // The creator's final put fails and so does its clean-up delete:
        // the pending checkpoint stays, as if its creator had died.
        let failing = Arc::new(FailpointStore::new(base.clone()));
        failing.fail_nth_put_matching("/checkpoints/cp", 2);
        failing.fail_nth_delete_matching("/checkpoints/cp", 1);
        let follower = Engine::open(failing.clone(), ns, read_only())
            .await
            .expect("open follower");
        let err = follower.create_checkpoint("cp").await.unwrap_err();
        assert!(matches!(err, EngineError::Store(_)), "{name}: {err}");
        let all = checkpoint::list_all(&base, ns).await.expect("list");
        assert_eq!(all.len(), 1, "{name}: {all:?}");
        assert!(all[0].pending, "{name}: {all:?}");
        assert!(checkpoint::list(&base, ns).await.unwrap().is_empty(), "{name}");
        match open_checkpoint(&base, ns).await {
            Err(EngineError::CheckpointPending { .. }) => {}
            Err(e) => panic!("{name}: wrong error {e}"),
            Ok(_) => panic!("{name}: a pending checkpoint opened"),
        }

        // GC keeps every state from the floor on while it exists.
        write_round(&writer, 1, 20).await;
        writer.flush().await.expect("flush");
        writer.compact().await.expect("compact");
        let report = writer.gc(keep_nothing(&writer)).await.expect("gc");
        assert_eq!(report.kept.pending_checkpoints, ["cp"], "{name}: {report:?}");
        assert!(report.horizon_version <= floor, "{name}: {report:?}");
        assert!(base.get(&manifest_key(ns, floor)).await.is_ok(), "{name}");
        let health = admin::verify(base.clone(), ns).await.expect("verify");
        assert!(health.healthy, "{name}: {:?}", health.issues);

        // A new create of the name is refused; delete removes it.
        assert!(matches!(
            follower.create_checkpoint("cp").await,
            Err(EngineError::CheckpointExists { .. })
        ));
        writer.delete_checkpoint("cp").await.expect("delete pending");
        assert!(checkpoint::list_all(&base, ns).await.unwrap().is_empty());
        let report = writer.gc(keep_nothing(&writer)).await.expect("gc");
        assert!(report.kept.pending_checkpoints.is_empty(), "{name}");
        assert!(base.get(&manifest_key(ns, floor)).await.is_err(), "{name}");
    }
}
