//! `FailpointStore`: wraps a store and fails chosen puts once, to simulate a
//! crash at an exact point of a flush, compaction or commit.

use std::ops::Range;
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
}

impl FailpointStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> FailpointStore {
        FailpointStore {
            inner,
            failpoints: Mutex::new(Vec::new()),
        }
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
        let mut failpoints = self.failpoints.lock();
        // Every armed failpoint counts every matching put, including one that
        // another failpoint fails, so each fires at its own n-th put.
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
        self.inner.delete(key).await
    }

    fn describe(&self) -> String {
        format!("failpoint({})", self.inner.describe())
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
