//! A namespace whose WAL holds one object per document, for the benches
//! that measure work per WAL object (verify, GC).

use std::sync::Arc;

use reef::engine::{Engine, EngineOptions};
use reef::store::ObjectStore;
use reef::types::{Document, WriteBatch};

/// Opens `ns` with every automatic flush and compaction off, writes the
/// documents `doc(0)` … `doc(n - 1)` one write each (one WAL object each),
/// and flushes: the WAL objects stay in the store until a GC removes them.
pub async fn one_wal_object_per_document(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    n: usize,
    doc: impl Fn(usize) -> Document,
) -> Engine {
    let engine = Engine::open(
        store.clone(),
        ns,
        EngineOptions {
            auto_flush_bytes: None,
            auto_flush_wal_objects: None,
            auto_compact_segments: None,
            ..EngineOptions::default()
        },
    )
    .await
    .expect("open");
    for k in 0..n {
        engine
            .write(WriteBatch::new().upsert(doc(k)))
            .await
            .expect("write");
    }
    engine.flush().await.expect("flush");
    engine
}
