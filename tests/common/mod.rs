//! Shared helpers for the integration tests: backends, documents, batches,
//! and whole-namespace views to compare.
#![allow(dead_code)]

#[path = "../support/s3.rs"]
pub mod s3;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reef::engine::{At, Engine, EngineError, EngineOptions, GcOptions};
use reef::store::{LocalFsStore, MemoryStore, ObjectStore};
use reef::types::{DocId, Document, Patch, Value, WriteBatch};

/// A store under test, and whatever keeps it alive (a temp dir).
pub struct TestStore {
    pub name: &'static str,
    pub store: Arc<dyn ObjectStore>,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// A store under test that needs nothing kept alive beside it.
    pub fn new(name: &'static str, store: Arc<dyn ObjectStore>) -> TestStore {
        TestStore {
            name,
            store,
            _dir: None,
        }
    }

    /// A store under test whose files live in `dir`, removed with it.
    pub fn in_dir(
        name: &'static str,
        store: Arc<dyn ObjectStore>,
        dir: tempfile::TempDir,
    ) -> TestStore {
        TestStore {
            name,
            store,
            _dir: Some(dir),
        }
    }
}

pub fn memory_backend() -> TestStore {
    TestStore {
        name: "memory",
        store: Arc::new(MemoryStore::new()),
        _dir: None,
    }
}

pub fn localfs_backend() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalFsStore::new(dir.path().join("store")).expect("local store");
    TestStore {
        name: "localfs",
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

/// A fresh prefix of the loopback S3 server (moto), when it is installed;
/// with `REEF_REQUIRE_S3=1` (the README's test command) a missing server
/// fails the test instead.
pub fn s3_backend() -> Option<TestStore> {
    let server = s3::shared()?;
    Some(TestStore {
        name: "s3",
        store: server.s3_store(&s3::unique_prefix("suite")),
        _dir: None,
    })
}

/// Every backend the suite runs on.
pub fn all_backends() -> Vec<TestStore> {
    let mut backends = vec![memory_backend(), localfs_backend()];
    backends.extend(s3_backend());
    backends
}

pub async fn open_engine(store: &Arc<dyn ObjectStore>, ns: &str) -> Engine {
    Engine::open(store.clone(), ns, EngineOptions::default())
        .await
        .unwrap_or_else(|e| panic!("open {ns}: {e}"))
}

/// Opens `ns` for writing as writer `writer`, so a test can tell which of
/// two writers fenced the other.
pub async fn open_as(store: &Arc<dyn ObjectStore>, ns: &str, writer: &str) -> Engine {
    let opts = EngineOptions {
        writer_id: Some(writer.to_string()),
        ..EngineOptions::default()
    };
    Engine::open(store.clone(), ns, opts).await.expect("open")
}

/// `ns` as it was at `at` (a sequence or a checkpoint), read-only.
pub async fn open_past(
    store: &Arc<dyn ObjectStore>,
    ns: &str,
    at: At,
) -> Result<Engine, EngineError> {
    Engine::open_at(store.clone(), ns, at, EngineOptions::default()).await
}

/// The engine's GC options with no retention and no orphan grace: a pass
/// frees everything the newest state (and fencing) does not need.
pub fn keep_nothing(engine: &Engine) -> GcOptions {
    GcOptions {
        retain: Duration::ZERO,
        orphan_grace: Duration::ZERO,
        ..engine.gc_options()
    }
}

/// Rewrites `d000`, `d001`, … (`n` of them) with attribute `round`: each
/// round replaces the same documents, so older rounds become garbage.
pub async fn write_round(engine: &Engine, round: i64, n: usize) {
    let docs: Vec<Document> = (0..n)
        .map(|k| Document::new(format!("d{k:03}")).with("round", round))
        .collect();
    engine.write(upsert_batch(docs)).await.expect("write");
}

pub fn i(v: i64) -> Value {
    Value::Int(v)
}

pub fn b(v: bool) -> Value {
    Value::Bool(v)
}

pub fn doc(id: &str) -> Document {
    Document::new(id).with("title", format!("doc {id}"))
}

/// `n` documents `<prefix>00000`, `<prefix>00001`, … with attribute `n`.
pub fn numbered_docs(prefix: &str, n: usize) -> Vec<Document> {
    (0..n)
        .map(|k| {
            Document::new(format!("{prefix}{k:05}"))
                .with("n", k as i64)
                .with("title", format!("{prefix} number {k}"))
        })
        .collect()
}

pub fn upsert_batch(docs: Vec<Document>) -> WriteBatch {
    WriteBatch {
        ops: docs.into_iter().map(reef::types::Op::Upsert).collect(),
    }
}

pub fn delete_batch(ids: &[&str]) -> WriteBatch {
    ids.iter()
        .fold(WriteBatch::new(), |b, id| b.delete(DocId::from(*id)))
}

pub fn patch_batch(patches: Vec<Patch>) -> WriteBatch {
    patches.into_iter().fold(WriteBatch::new(), WriteBatch::patch)
}

pub async fn scan_ids(engine: &Engine) -> Vec<String> {
    engine
        .scan_all()
        .await
        .expect("scan")
        .into_iter()
        .map(|d| d.id.into_string())
        .collect()
}

pub async fn doc_count(engine: &Engine) -> usize {
    scan_ids(engine).await.len()
}

pub async fn assert_unique_ids(engine: &Engine) {
    let ids = scan_ids(engine).await;
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "scan must return each id once, in order");
}

/// The whole namespace as documents, for equality checks.
pub async fn snapshot(engine: &Engine) -> Vec<Document> {
    engine
        .scan_all()
        .await
        .expect("scan")
        .iter()
        .map(|d| d.document().expect("stored document parses"))
        .collect()
}

pub async fn list_keys_containing(store: &Arc<dyn ObjectStore>, substr: &str) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list("", None)
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .filter(|k| k.contains(substr))
        .collect();
    keys.sort();
    keys
}

pub async fn overwrite_with_garbage(store: &Arc<dyn ObjectStore>, key: &str) {
    let len = store.get(key).await.expect("object to corrupt").len();
    let garbage: Vec<u8> = (0..len.max(64)).map(|k| (k * 31 % 251) as u8).collect();
    store.put(key, Bytes::from(garbage)).await.expect("put");
}

/// A fresh memory store holding a byte-for-byte copy of every object.
pub async fn clone_into_memory(store: &Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    let clone: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    for meta in store.list("", None).await.expect("list") {
        let data = store.get(&meta.key).await.expect("get");
        clone.put(&meta.key, data).await.expect("put");
    }
    clone
}

pub fn attrs(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}
