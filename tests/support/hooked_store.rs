//! A store that passes every call through to a real one and lets a test
//! watch or hold the calls it cares about: hold a flush's segment put at a
//! gate, measure the largest read, count the GETs in flight.
//!
//! Tests used to write a whole `ObjectStore` wrapper each time, the same
//! pass-through methods around one line that mattered; here that line is a
//! `StoreHooks` method and the pass-through is written once. Everything not
//! hooked goes to the inner store unchanged, its own `list_prefixes` and
//! `delete_many` included, so the backend under test keeps its behaviour.
#![allow(dead_code)]

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use reef::store::{ObjectMeta, ObjectStore, StoreResult};

/// What a test sees of the calls through a `HookedStore`; every method
/// does nothing unless overridden.
#[async_trait]
pub trait StoreHooks: Send + Sync + fmt::Debug + 'static {
    /// Before a `put` or `put_if_absent` of `key` reaches the store.
    async fn before_put(&self, _key: &str, _data: &Bytes) {}
    /// After the store answered a `put` or `put_if_absent` of `key`.
    fn after_put(&self, _key: &str) {}
    /// Before a whole-object `get` of `key` reaches the store.
    async fn before_get(&self, _key: &str) {}
    /// After a `get` or `get_range` of `key` answered `data`.
    fn after_read(&self, _key: &str, _data: &Bytes) {}
    /// Before a `list` of `prefix` reaches the store.
    async fn before_list(&self, _prefix: &str) {}
}

/// The inner store, with `hooks` called around its calls.
#[derive(Debug)]
pub struct HookedStore<H> {
    inner: Arc<dyn ObjectStore>,
    pub hooks: H,
}

impl<H: StoreHooks> HookedStore<H> {
    pub fn new(inner: Arc<dyn ObjectStore>, hooks: H) -> Arc<HookedStore<H>> {
        Arc::new(HookedStore { inner, hooks })
    }

    /// The store underneath, for setting up or damaging objects unseen.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }
}

#[async_trait]
impl<H: StoreHooks> ObjectStore for HookedStore<H> {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.hooks.before_put(key, &data).await;
        let result = self.inner.put(key, data).await;
        self.hooks.after_put(key);
        result
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.hooks.before_put(key, &data).await;
        let result = self.inner.put_if_absent(key, data).await;
        self.hooks.after_put(key);
        result
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.hooks.before_get(key).await;
        let data = self.inner.get(key).await?;
        self.hooks.after_read(key, &data);
        Ok(data)
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let data = self.inner.get_range(key, range).await?;
        self.hooks.after_read(key, &data);
        Ok(data)
    }
    async fn list(&self, prefix: &str, offset: Option<&str>) -> StoreResult<Vec<ObjectMeta>> {
        self.hooks.before_list(prefix).await;
        self.inner.list(prefix, offset).await
    }
    async fn list_prefixes(&self, prefix: &str) -> StoreResult<Vec<String>> {
        self.inner.list_prefixes(prefix).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        self.inner.delete_many(keys).await
    }
    fn describe(&self) -> String {
        format!("hooked({})", self.inner.describe())
    }
    fn overlapping_puts_help(&self) -> bool {
        self.inner.overlapping_puts_help()
    }
}

/// Holds store calls that reach it while armed, until the test lets them
/// through, and tells the test the key of each call it holds: how a test
/// stops an operation at an exact store call and acts meanwhile.
#[derive(Debug)]
pub struct Gate {
    /// Calls still to hold: 0 lets everything through, `usize::MAX` holds
    /// every call.
    to_hold: AtomicUsize,
    open: tokio::sync::Semaphore,
    entered_tx: tokio::sync::mpsc::UnboundedSender<String>,
    entered_rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<String>>,
}

impl Default for Gate {
    fn default() -> Gate {
        let (entered_tx, entered_rx) = tokio::sync::mpsc::unbounded_channel();
        Gate {
            to_hold: AtomicUsize::new(0),
            open: tokio::sync::Semaphore::new(0),
            entered_tx,
            entered_rx: tokio::sync::Mutex::new(entered_rx),
        }
    }
}

impl Gate {
    /// Holds every call from now on.
    pub fn hold_all(&self) {
        self.to_hold.store(usize::MAX, Ordering::SeqCst);
    }

    /// Holds only the next call; the ones after it pass.
    pub fn hold_next(&self) {
        self.to_hold.store(1, Ordering::SeqCst);
    }

    /// Called by a hook for each call the gate may hold.
    pub async fn pass(&self, key: &str) {
        let hold = self
            .to_hold
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                usize::MAX => Some(usize::MAX),
                n => Some(n - 1),
            })
            .is_ok();
        if hold {
            let _ = self.entered_tx.send(key.to_string());
            if let Ok(permit) = self.open.acquire().await {
                permit.forget();
            }
        }
    }

    /// Waits until a call is held at the gate; returns its key.
    pub async fn held(&self) -> String {
        self.entered_rx
            .lock()
            .await
            .recv()
            .await
            .expect("gate entered")
    }

    /// `held` for a test outside the runtime: the key of the next call
    /// held, or `None` if none was within `timeout`.
    pub fn held_within(&self, timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        let mut rx = self.entered_rx.blocking_lock();
        loop {
            if let Ok(key) = rx.try_recv() {
                return Some(key);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Lets `n` held (or later) calls through.
    pub fn release(&self, n: usize) {
        self.open.add_permits(n);
    }

    /// Lets every call through from now on, held ones included.
    pub fn open_for_good(&self) {
        self.to_hold.store(0, Ordering::SeqCst);
        self.open.add_permits(1 << 20);
    }
}

/// Hooks that hold puts whose key contains `key_part` at `gate`.
#[derive(Debug)]
pub struct PutGate {
    pub key_part: String,
    pub gate: Gate,
}

impl PutGate {
    pub fn new(key_part: &str) -> PutGate {
        PutGate {
            key_part: key_part.to_string(),
            gate: Gate::default(),
        }
    }
}

#[async_trait]
impl StoreHooks for PutGate {
    async fn before_put(&self, key: &str, _data: &Bytes) {
        if key.contains(&self.key_part) {
            self.gate.pass(key).await;
        }
    }
}

/// Hooks that record the reads of objects whose key contains `key_part`:
/// the largest single answer (what one request brings into memory) and
/// the bytes of all of them.
#[derive(Debug, Default)]
pub struct ReadSizes {
    pub key_part: String,
    largest: AtomicUsize,
    total: AtomicUsize,
}

impl ReadSizes {
    pub fn of_keys_containing(key_part: &str) -> ReadSizes {
        ReadSizes {
            key_part: key_part.to_string(),
            ..ReadSizes::default()
        }
    }

    pub fn largest(&self) -> usize {
        self.largest.load(Ordering::SeqCst)
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// Forgets what was read so far.
    pub fn reset(&self) {
        self.largest.store(0, Ordering::SeqCst);
        self.total.store(0, Ordering::SeqCst);
    }
}

#[async_trait]
impl StoreHooks for ReadSizes {
    fn after_read(&self, key: &str, data: &Bytes) {
        if key.contains(&self.key_part) {
            self.largest.fetch_max(data.len(), Ordering::SeqCst);
            self.total.fetch_add(data.len(), Ordering::SeqCst);
        }
    }
}
