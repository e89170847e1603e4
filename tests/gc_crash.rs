//! A crash at every single put and every single delete of a lifecycle of
//! writes, flushes, compaction and garbage collection (automatic and on
//! demand, without retention) loses nothing that was acknowledged, and the
//! namespace reopens healthy.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use reef::admin;
use reef::engine::{Engine, EngineOptions};
use reef::store::{FailpointStore, MemoryStore, ObjectStore};
use reef::types::{DocId, Document};

const NS: &str = "sweep";

fn options() -> EngineOptions {
    EngineOptions {
        // GC after every flush and compaction frees all it can.
        retain: Duration::ZERO,
        orphan_grace: Duration::ZERO,
        auto_compact_segments: None,
        ..EngineOptions::default()
    }
}

/// What the acknowledged writes say the namespace holds.
type Model = BTreeMap<String, Document>;

async fn upsert(engine: &Engine, model: &mut Model, docs: Vec<Document>) -> Result<(), String> {
    match engine.write(upsert_batch(docs.clone())).await {
        Ok(_) => {
            for d in docs {
                model.insert(d.id.to_string(), d);
            }
            Ok(())
        }
        Err(e) => Err(format!("write: {e}")),
    }
}

async fn delete(engine: &Engine, model: &mut Model, ids: &[&str]) -> Result<(), String> {
    match engine.write(delete_batch(ids)).await {
        Ok(_) => {
            for id in ids {
                model.remove(*id);
            }
            Ok(())
        }
        Err(e) => Err(format!("delete: {e}")),
    }
}

fn round(prefix: &str, n: usize, v: i64) -> Vec<Document> {
    (0..n)
        .map(|k| Document::new(format!("{prefix}{k:02}")).with("v", v))
        .collect()
}

/// The lifecycle; stops (the "crash") at the first failure.
async fn lifecycle(store: Arc<dyn ObjectStore>, model: &mut Model) -> Result<(), String> {
    let engine = Engine::open(store, NS, options())
        .await
        .map_err(|e| format!("open: {e}"))?;
    upsert(&engine, model, round("a", 12, 1)).await?;
    engine.flush().await.map_err(|e| format!("flush 1: {e}"))?;
    upsert(&engine, model, round("a", 6, 2)).await?;
    delete(&engine, model, &["a00", "a07"]).await?;
    engine.flush().await.map_err(|e| format!("flush 2: {e}"))?;
    upsert(&engine, model, round("b", 5, 3)).await?;
    engine.flush().await.map_err(|e| format!("flush 3: {e}"))?;
    engine.compact().await.map_err(|e| format!("compact: {e}"))?;
    upsert(&engine, model, round("c", 4, 4)).await?;
    delete(&engine, model, &["b01"]).await?;
    engine
        .gc(keep_nothing(&engine))
        .await
        .map_err(|e| format!("gc: {e}"))?;
    engine.flush().await.map_err(|e| format!("flush 4: {e}"))?;
    Ok(())
}

async fn check_recovered(inner: &Arc<dyn ObjectStore>, model: &Model, what: &str) {
    let engine = Engine::open(inner.clone(), NS, options())
        .await
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let expected: Vec<Document> = model.values().cloned().collect();
    assert_eq!(snapshot(&engine).await, expected, "{what}: state after reopen");
    let report = admin::verify(inner.clone(), NS).await.unwrap();
    assert!(report.healthy, "{what}: {report:?}");
    // The survivor carries on: write, flush, compact, collect, reopen.
    engine
        .write(upsert_batch(vec![doc("after")]))
        .await
        .unwrap_or_else(|e| panic!("{what}: write after reopen: {e}"));
    engine.flush().await.unwrap();
    engine.compact().await.unwrap();
    engine.gc(keep_nothing(&engine)).await.unwrap();
    drop(engine);
    let engine = Engine::open(inner.clone(), NS, options()).await.unwrap();
    let mut expected = expected;
    expected.push(doc("after"));
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(snapshot(&engine).await, expected, "{what}: after GC");
    assert!(engine.get(&DocId::from("after")).await.unwrap().is_some());
    let report = admin::verify(inner.clone(), NS).await.unwrap();
    assert!(
        report.healthy && report.orphan_files.is_empty(),
        "{what}: {report:?}"
    );
}

#[tokio::test]
async fn a_crash_at_any_put_or_delete_of_flush_compaction_and_gc_loses_nothing_acknowledged() {
    // Count the failure points of one clean run.
    let fp = Arc::new(FailpointStore::new(Arc::new(MemoryStore::new())));
    let mut model = Model::new();
    lifecycle(fp.clone(), &mut model).await.expect("clean run");
    let (puts, deletes) = (fp.puts(), fp.deletes());
    assert!(puts > 10 && deletes > 10, "puts {puts}, deletes {deletes}");

    eprintln!("failure points: {puts} puts, {deletes} deletes");
    let mut failed_steps = BTreeMap::new();
    for (kind, total) in [("put", puts), ("delete", deletes)] {
        for n in 1..=total as usize {
            let inner: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
            let fp = Arc::new(FailpointStore::new(inner.clone()));
            match kind {
                "put" => fp.fail_nth_put_matching("", n),
                _ => fp.fail_nth_delete_matching("", n),
            }
            let mut model = Model::new();
            let outcome = lifecycle(fp.clone(), &mut model).await;
            if let Err(step) = &outcome {
                let step = step.split(':').next().unwrap_or_default().to_string();
                *failed_steps.entry(format!("{kind} {step}")).or_insert(0) += 1;
            }
            check_recovered(&inner, &model, &format!("{kind} #{n} ({outcome:?})")).await;
        }
    }
    eprintln!("failed steps: {failed_steps:?}");
    // Every kind of step was hit by some failure point; deletes fail only
    // GC (automatic GC logs and carries on, so its failures show in the
    // recovered state alone).
    for step in [
        "put open",
        "put write",
        "put flush 1",
        "put compact",
        "put gc",
        "delete gc",
    ] {
        assert!(
            failed_steps.contains_key(step),
            "{step} never failed: {failed_steps:?}"
        );
    }
}
