//! `LatencyStore`: adds a delay to every request, so benchmarks and tests on
//! the memory or local store see S3-like round trips (tens of ms) and the
//! code paths that only matter when the store is slow get exercised.
//!
//! The delay is `min + jitter`, the jitter drawn from a seeded xorshift so a
//! run is reproducible (up to task scheduling).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectMeta, ObjectStore, StoreResult};

const DEFAULT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug)]
pub struct LatencyStore {
    inner: Arc<dyn ObjectStore>,
    min: Duration,
    /// Width of the jitter window; zero for a fixed delay.
    jitter: Duration,
    state: AtomicU64,
}

impl LatencyStore {
    /// Delays each request by a duration in `per_request` (start inclusive,
    /// end exclusive); an empty range is a fixed delay of its start.
    pub fn new(inner: Arc<dyn ObjectStore>, per_request: Range<Duration>) -> LatencyStore {
        LatencyStore {
            inner,
            min: per_request.start,
            jitter: per_request.end.saturating_sub(per_request.start),
            state: AtomicU64::new(DEFAULT_SEED),
        }
    }

    /// Delays each request by exactly `delay`.
    pub fn fixed(inner: Arc<dyn ObjectStore>, delay: Duration) -> LatencyStore {
        LatencyStore::new(inner, delay..delay)
    }

    /// Restarts the jitter sequence from `seed` (zero is replaced, since
    /// xorshift would stay at zero forever).
    pub fn with_seed(self, seed: u64) -> LatencyStore {
        let seed = if seed == 0 { DEFAULT_SEED } else { seed };
        self.state.store(seed, Ordering::Relaxed);
        self
    }

    fn next_random(&self) -> u64 {
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // fetch_update returns the previous state; step it once more to get
        // the value this call stored, so concurrent callers get distinct ones.
        match self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(step(x)))
        {
            Ok(prev) | Err(prev) => step(prev),
        }
    }

    /// The delay the next request will get.
    pub fn next_delay(&self) -> Duration {
        let jitter_nanos = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        if jitter_nanos == 0 {
            return self.min;
        }
        self.min + Duration::from_nanos(self.next_random() % jitter_nanos)
    }

    async fn delay(&self) {
        let d = self.next_delay();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

#[async_trait]
impl ObjectStore for LatencyStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.delay().await;
        self.inner.put(key, data).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.delay().await;
        self.inner.put_if_absent(key, data).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.delay().await;
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.delay().await;
        self.inner.get_range(key, range).await
    }

    async fn list(&self, prefix: &str, offset: Option<&str>) -> StoreResult<Vec<ObjectMeta>> {
        self.delay().await;
        self.inner.list(prefix, offset).await
    }

    async fn list_prefixes(&self, prefix: &str) -> StoreResult<Vec<String>> {
        self.delay().await;
        self.inner.list_prefixes(prefix).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.delay().await;
        self.inner.delete(key).await
    }

    fn describe(&self) -> String {
        format!(
            "latency({:?}+{:?}, {})",
            self.min,
            self.jitter,
            self.inner.describe()
        )
    }

    /// It plays a remote store, whatever is behind it.
    fn overlapping_puts_help(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn jitter_is_deterministic_and_in_range() {
        let make = || {
            LatencyStore::new(
                Arc::new(MemoryStore::new()),
                Duration::from_millis(10)..Duration::from_millis(20),
            )
            .with_seed(42)
        };
        let (a, b) = (make(), make());
        let xs: Vec<Duration> = (0..100).map(|_| a.next_delay()).collect();
        let ys: Vec<Duration> = (0..100).map(|_| b.next_delay()).collect();
        assert_eq!(xs, ys);
        assert!(xs
            .iter()
            .all(|d| *d >= Duration::from_millis(10) && *d < Duration::from_millis(20)));
        assert!(xs.iter().any(|d| *d != xs[0]), "jitter varies");
    }

    #[tokio::test]
    async fn fixed_delay_applies_per_request() {
        let store = LatencyStore::fixed(Arc::new(MemoryStore::new()), Duration::from_millis(20));
        let start = std::time::Instant::now();
        store.put("a", Bytes::from_static(b"x")).await.expect("put");
        store.get("a").await.expect("get");
        assert!(start.elapsed() >= Duration::from_millis(40));
    }
}
