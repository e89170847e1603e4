//! `MeteredStore`: counts requests and bytes by kind, so tests can assert
//! cost ("a cold point lookup is at most two GETs") and `.stats` can show
//! what a workload costs on S3, where requests are billed. It also keeps a
//! latency histogram and an error count per request kind, which the mount's
//! Prometheus endpoint (`-o metrics=`) exports.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use serde::Serialize;

use super::{ObjectMeta, ObjectStore, StoreResult};

/// Counts since the store was created (or last reset). A ranged get counts
/// as a GET; a create-if-absent put counts as a PUT and also in
/// `conditional_puts`. Failed requests count too: they cost a round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreMetrics {
    pub get_requests: u64,
    pub get_bytes: u64,
    pub put_requests: u64,
    pub put_bytes: u64,
    pub conditional_puts: u64,
    pub list_requests: u64,
    /// Objects (or, for `list_prefixes`, prefixes) returned by all listings.
    pub list_entries: u64,
    pub delete_requests: u64,
    pub errors: u64,
}

impl StoreMetrics {
    pub fn requests(&self) -> u64 {
        self.get_requests + self.put_requests + self.list_requests + self.delete_requests
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &StoreMetrics) -> StoreMetrics {
        StoreMetrics {
            get_requests: self.get_requests.saturating_sub(earlier.get_requests),
            get_bytes: self.get_bytes.saturating_sub(earlier.get_bytes),
            put_requests: self.put_requests.saturating_sub(earlier.put_requests),
            put_bytes: self.put_bytes.saturating_sub(earlier.put_bytes),
            conditional_puts: self.conditional_puts.saturating_sub(earlier.conditional_puts),
            list_requests: self.list_requests.saturating_sub(earlier.list_requests),
            list_entries: self.list_entries.saturating_sub(earlier.list_entries),
            delete_requests: self.delete_requests.saturating_sub(earlier.delete_requests),
            errors: self.errors.saturating_sub(earlier.errors),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    get_requests: AtomicU64,
    get_bytes: AtomicU64,
    put_requests: AtomicU64,
    put_bytes: AtomicU64,
    conditional_puts: AtomicU64,
    list_requests: AtomicU64,
    list_entries: AtomicU64,
    delete_requests: AtomicU64,
    errors: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The request kinds timed separately: one per `ObjectStore` method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Get,
    GetRange,
    Put,
    PutIfAbsent,
    List,
    ListPrefixes,
    Delete,
    /// A bulk delete (S3 DeleteObjects: up to 1000 keys), as GC makes.
    DeleteMany,
}

impl RequestKind {
    pub const ALL: [RequestKind; 8] = [
        RequestKind::Get,
        RequestKind::GetRange,
        RequestKind::Put,
        RequestKind::PutIfAbsent,
        RequestKind::List,
        RequestKind::ListPrefixes,
        RequestKind::Delete,
        RequestKind::DeleteMany,
    ];

    /// The `kind` label of the metrics.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Get => "get",
            RequestKind::GetRange => "get_range",
            RequestKind::Put => "put",
            RequestKind::PutIfAbsent => "put_if_absent",
            RequestKind::List => "list",
            RequestKind::ListPrefixes => "list_prefixes",
            RequestKind::Delete => "delete",
            RequestKind::DeleteMany => "delete_many",
        }
    }
}

/// Latency (seconds) and errors of one request kind. Buckets from 100 µs
/// (a local store) to 13 s (a slow S3 retry), doubling.
#[derive(Debug)]
struct KindStats {
    latency: Histogram,
    errors: AtomicU64,
}

impl Default for KindStats {
    fn default() -> Self {
        KindStats {
            latency: Histogram::new(exponential_buckets(1e-4, 2.0, 18)),
            errors: AtomicU64::new(0),
        }
    }
}

#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    counters: Counters,
    /// Indexed like `RequestKind::ALL`.
    kinds: [KindStats; RequestKind::ALL.len()],
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> MeteredStore {
        MeteredStore {
            inner,
            counters: Counters::default(),
            kinds: Default::default(),
        }
    }

    /// Latency histogram (seconds) of one request kind, failed requests
    /// included.
    pub fn latency(&self, kind: RequestKind) -> &Histogram {
        &self.kinds[kind as usize].latency
    }

    /// Failed requests of one request kind.
    pub fn errors(&self, kind: RequestKind) -> u64 {
        self.kinds[kind as usize].errors.load(Ordering::Relaxed)
    }

    fn timed<T>(
        &self,
        kind: RequestKind,
        started: Instant,
        result: StoreResult<T>,
    ) -> StoreResult<T> {
        let stats = &self.kinds[kind as usize];
        stats.latency.observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            add(&stats.errors, 1);
        }
        result
    }

    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    pub fn snapshot(&self) -> StoreMetrics {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreMetrics {
            get_requests: load(&c.get_requests),
            get_bytes: load(&c.get_bytes),
            put_requests: load(&c.put_requests),
            put_bytes: load(&c.put_bytes),
            conditional_puts: load(&c.conditional_puts),
            list_requests: load(&c.list_requests),
            list_entries: load(&c.list_entries),
            delete_requests: load(&c.delete_requests),
            errors: load(&c.errors),
        }
    }

    fn count_result<T>(&self, result: StoreResult<T>) -> StoreResult<T> {
        if result.is_err() {
            add(&self.counters.errors, 1);
        }
        result
    }

    fn count_get(&self, result: StoreResult<Bytes>) -> StoreResult<Bytes> {
        add(&self.counters.get_requests, 1);
        if let Ok(data) = &result {
            add(&self.counters.get_bytes, data.len() as u64);
        }
        self.count_result(result)
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        add(&self.counters.put_requests, 1);
        add(&self.counters.put_bytes, data.len() as u64);
        let started = Instant::now();
        let result = self.inner.put(key, data).await;
        let result = self.timed(RequestKind::Put, started, result);
        self.count_result(result)
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        add(&self.counters.put_requests, 1);
        add(&self.counters.conditional_puts, 1);
        add(&self.counters.put_bytes, data.len() as u64);
        let started = Instant::now();
        let result = self.inner.put_if_absent(key, data).await;
        let result = self.timed(RequestKind::PutIfAbsent, started, result);
        self.count_result(result)
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let started = Instant::now();
        let result = self.inner.get(key).await;
        let result = self.timed(RequestKind::Get, started, result);
        self.count_get(result)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let started = Instant::now();
        let result = self.inner.get_range(key, range).await;
        let result = self.timed(RequestKind::GetRange, started, result);
        self.count_get(result)
    }

    async fn list(&self, prefix: &str, offset: Option<&str>) -> StoreResult<Vec<ObjectMeta>> {
        add(&self.counters.list_requests, 1);
        let started = Instant::now();
        let result = self.inner.list(prefix, offset).await;
        let result = self.timed(RequestKind::List, started, result);
        if let Ok(entries) = &result {
            add(&self.counters.list_entries, entries.len() as u64);
        }
        self.count_result(result)
    }

    /// One LIST request (S3 bills a delimiter listing like any other); the
    /// prefixes it returns count as entries.
    async fn list_prefixes(&self, prefix: &str) -> StoreResult<Vec<String>> {
        add(&self.counters.list_requests, 1);
        let started = Instant::now();
        let result = self.inner.list_prefixes(prefix).await;
        let result = self.timed(RequestKind::ListPrefixes, started, result);
        if let Ok(names) = &result {
            add(&self.counters.list_entries, names.len() as u64);
        }
        self.count_result(result)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        add(&self.counters.delete_requests, 1);
        let started = Instant::now();
        let result = self.inner.delete(key).await;
        let result = self.timed(RequestKind::Delete, started, result);
        self.count_result(result)
    }

    /// Forwarded, so S3's bulk delete survives the wrapper; counted as one
    /// request per 1000 keys, as S3 bills it.
    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        add(&self.counters.delete_requests, keys.len().div_ceil(1000) as u64);
        let started = Instant::now();
        let result = self.inner.delete_many(keys).await;
        let result = self.timed(RequestKind::DeleteMany, started, result);
        self.count_result(result)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn overlapping_puts_help(&self) -> bool {
        self.inner.overlapping_puts_help()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn counts_requests_and_bytes_by_kind() {
        let store = MeteredStore::new(Arc::new(MemoryStore::new()));
        store
            .put("a", Bytes::from_static(b"hello"))
            .await
            .expect("put");
        store
            .put_if_absent("a", Bytes::from_static(b"xx"))
            .await
            .expect_err("taken");
        store.get("a").await.expect("get");
        store.get_range("a", 1..3).await.expect("range");
        store.get("missing").await.expect_err("missing");
        store.list("", None).await.expect("list");
        store.delete("a").await.expect("delete");
        let m = store.snapshot();
        let expected = StoreMetrics {
            get_requests: 3,
            get_bytes: 7,
            put_requests: 2,
            put_bytes: 7,
            conditional_puts: 1,
            list_requests: 1,
            list_entries: 1,
            delete_requests: 1,
            errors: 2,
        };
        assert_eq!(m, expected);
        assert_eq!(m.requests(), 7);
        assert_eq!(m.since(&m), StoreMetrics::default());
        let json = serde_json::to_value(m).expect("serialize");
        assert_eq!(json["get_requests"], 3);
        assert_eq!(store.latency(RequestKind::Get).count(), 2);
        assert_eq!(store.latency(RequestKind::GetRange).count(), 1);
        assert_eq!(store.latency(RequestKind::Delete).count(), 1);
        assert_eq!(store.errors(RequestKind::Get), 1);
        assert_eq!(store.errors(RequestKind::PutIfAbsent), 1);
        assert_eq!(store.errors(RequestKind::Put), 0);
    }
}
