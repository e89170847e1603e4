//! `FailpointStore`: wraps a store and fails chosen puts or deletes once, to
//! simulate a crash at an exact point of a flush, compaction, commit or
//! garbage collection. It also counts both, so a test can sweep every
//! failure point of an operation.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{ObjectMeta, ObjectStore, StoreError, StoreResult};

#[derive(Debug)]
struct Failpoint {
    substr: String,
    /// Matching puts still to let through before the one that fails.
    remaining: usize,
}

#[derive(Debug)]
pub struct FailpointStore {
    inner: Arc<dyn ObjectStore>,
    failpoints: Mutex<Vec<Failpoint>>,
    delete_failpoints: Mutex<Vec<Failpoint>>,
    puts: AtomicU64,
    deletes: AtomicU64,
}

impl FailpointStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> FailpointStore {
        FailpointStore {
            inner,
            failpoints: Mutex::new(Vec::new()),
            delete_failpoints: Mutex::new(Vec::new()),
            puts: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
        }
    }

    /// Makes the `n`-th delete (1-based; single or within `delete_many`)
    /// whose key contains `substr` fail once, deleting nothing.
    pub fn fail_nth_delete_matching(&self, substr: &str, n: usize) {
        self.delete_failpoints.lock().push(Failpoint {
            substr: substr.to_string(),
            remaining: n.saturating_sub(1),
        });
    }

    /// Puts (of any kind) attempted so far, failed ones included.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }

    /// Deletes attempted so far (each key of a `delete_many` counts).
    pub fn deletes(&self) -> u64 {
        self.deletes.load(Ordering::Relaxed)
    }

    /// Makes the `n`-th put (1-based; plain or create-if-absent) whose key
    /// contains `substr` fail once, without writing anything.
    pub fn fail_nth_put_matching(&self, substr: &str, n: usize) {
        self.failpoints.lock().push(Failpoint {
            substr: substr.to_string(),
            remaining: n.saturating_sub(1),
        });
    }

    fn should_fail(&self, key: &str) -> bool {
        self.puts.fetch_add(1, Ordering::Relaxed);
        fire(&mut self.failpoints.lock(), key)
    }

    fn should_fail_delete(&self, key: &str) -> bool {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        fire(&mut self.delete_failpoints.lock(), key)
    }
}

/// Whether an armed failpoint fires for `key` (then it is disarmed).
fn fire(failpoints: &mut Vec<Failpoint>, key: &str) -> bool {
    // Every armed failpoint counts every matching call, including one that
    // another failpoint fails, so each fires at its own n-th call.
    let mut fire = None;
    for (i, fp) in failpoints.iter_mut().enumerate() {
        if !key.contains(&fp.substr) {
            continue;
        }
        if fp.remaining > 0 {
            fp.remaining -= 1;
        } else if fire.is_none() {
            fire = Some(i);
        }
    }
    match fire {
        Some(i) => {
            failpoints.remove(i);
            true
        }
        None => false,
    }
}

#[async_trait]
impl ObjectStore for FailpointStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        if self.should_fail(key) {
            return Err(StoreError::Injected(key.to_string()));
        }
        self.inner.put(key, data).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        if self.should_fail(key) {
            return Err(StoreError::Injected(key.to_string()));
        }
        self.inner.put_if_absent(key, data).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.inner.get_range(key, range).await
    }

    async fn list(&self, prefix: &str, offset: Option<&str>) -> StoreResult<Vec<ObjectMeta>> {
        self.inner.list(prefix, offset).await
    }

    async fn list_prefixes(&self, prefix: &str) -> StoreResult<Vec<String>> {
        self.inner.list_prefixes(prefix).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        if self.should_fail_delete(key) {
            return Err(StoreError::Injected(key.to_string()));
        }
        self.inner.delete(key).await
    }

    /// One key at a time, so every key is its own failure point.
    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        for key in keys {
            self.delete(key).await?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("failpoint({})", self.inner.describe())
    }

    fn overlapping_puts_help(&self) -> bool {
        self.inner.overlapping_puts_help()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[tokio::test]
    async fn nth_matching_put_fails_once_and_writes_nothing() {
        let inner: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let store = FailpointStore::new(inner.clone());
        store.fail_nth_put_matching("/wal/", 2);
        store
            .put("ns/segments/s1", b("s"))
            .await
            .expect("not matching, not counted");
        store
            .put_if_absent("ns/wal/1", b("1"))
            .await
            .expect("first match");
        match store.put_if_absent("ns/wal/2", b("2")).await {
            Err(StoreError::Injected(key)) => assert_eq!(key, "ns/wal/2"),
            other => panic!("expected injected failure, got {other:?}"),
        }
        assert!(inner
            .get("ns/wal/2")
            .await
            .expect_err("nothing written")
            .is_not_found());
        store
            .put_if_absent("ns/wal/2", b("2"))
            .await
            .expect("fails only once");
        store.put("ns/wal/3", b("3")).await.expect("disarmed");
    }

    #[tokio::test]
    async fn each_failpoint_counts_independently() {
        let store = FailpointStore::new(Arc::new(MemoryStore::new()));
        store.fail_nth_put_matching("wal", 1);
        store.fail_nth_put_matching("wal", 3);
        let mut failed = Vec::new();
        for i in 1..=5 {
            if store.put(&format!("wal/{i}"), b("x")).await.is_err() {
                failed.push(i);
            }
        }
        assert_eq!(failed, [1, 3]);
        store.get("wal/2").await.expect("reads pass through");
        assert!(store.describe().starts_with("failpoint("));
    }
}
