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

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }

    fn describe(&self) -> String {
        format!("failpoint({})", self.inner.describe())
    }
}
