//! The object-store boundary: the few operations reef needs from S3-like
//! storage, as an object-safe trait so every layer above takes
//! `Arc<dyn ObjectStore>` and tests can swap backends.
//!
//! Keys are `/`-separated strings relative to the store's root (a bucket
//! prefix, a directory). Objects are immutable in reef's use, except that
//! `put` may overwrite (repair and tests need it).

mod adapter;
mod conditional;
mod disk_cache;
mod failpoint;
mod key;
mod latency;
mod local;
#[cfg(test)]
mod local_tests;
mod memory;
mod metered;
mod url;

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

pub use adapter::ObjectStoreAdapter;
pub use conditional::create_resolved;
pub use disk_cache::DiskCacheStore;
pub use failpoint::FailpointStore;
pub use key::validate_key;
pub use latency::LatencyStore;
pub use local::{LocalFsStore, NameSync, TEMP_PREFIX};
pub use memory::MemoryStore;
pub use metered::{MeteredStore, RequestKind, StoreMetrics};
pub use url::{open_store, open_store_with_env, retry_config, s3_store};

/// What a listing says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {0} not found")]
    NotFound(String),
    /// A create-if-absent put found the key taken. Never retried: it is how a
    /// second writer learns it lost the race.
    #[error("object {0} already exists")]
    AlreadyExists(String),
    #[error("range {start}..{end} is out of bounds for {key} ({size} bytes)")]
    BadRange {
        key: String,
        start: u64,
        end: u64,
        size: u64,
    },
    #[error("invalid object key {0:?}")]
    BadKey(String),
    #[error("I/O error on {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object store error on {key}: {message}")]
    Backend { key: String, message: String },
    #[error("injected failure on {0}")]
    Injected(String),
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The operations reef needs from object storage.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Writes `data` at `key`, replacing anything there. Returns once durable.
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()>;

    /// Writes `data` at `key` only if nothing is there, atomically: of two
    /// racing callers exactly one succeeds and the other gets
    /// `StoreError::AlreadyExists`. Returns once durable.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()>;

    async fn get(&self, key: &str) -> StoreResult<Bytes>;

    /// Bytes `range` of the object; the range must lie within it.
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes>;

    /// Every object whose key starts with `prefix` and sorts after `offset`
    /// (all of them when `offset` is `None`), in key order.
    async fn list(&self, prefix: &str, offset: Option<&str>) -> StoreResult<Vec<ObjectMeta>>;

    /// The distinct "directory" names directly under `prefix` (which is ""
    /// or ends with '/'), sorted: with keys `a/x`, `a/y/z`, `b/q`, prefix ""
    /// gives `["a", "b"]` and prefix "a/" gives `["y"]`. A name is listed
    /// only if some object lies below it.
    ///
    /// The default lists every object under `prefix`; backends override it
    /// with a delimiter listing (S3 CommonPrefixes, one `read_dir`) so that
    /// finding namespaces does not walk every WAL object.
    async fn list_prefixes(&self, prefix: &str) -> StoreResult<Vec<String>> {
        check_dir_prefix(prefix)?;
        let objects = self.list(prefix, None).await?;
        Ok(prefixes_of(prefix, objects.iter().map(|m| m.key.as_str())))
    }

    /// Removes `key`; removing a missing key succeeds.
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// Removes every key; on failure returns the first error, and any of
    /// the keys may be gone. The default runs up to 16 deletes at once;
    /// S3-like backends override it with bulk delete (1000 keys a request).
    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        use futures::{StreamExt, TryStreamExt};
        let deletes: Vec<_> = keys.iter().map(|key| self.delete(key)).collect();
        futures::stream::iter(deletes)
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// A short human description, for logs and reports (`file:///data`).
    fn describe(&self) -> String;

    /// Whether a writer gains from having several puts in flight at once
    /// (the WAL pipeline, `engine::pipeline`). A remote store answers each
    /// put after a round trip and serves many at once, so overlapping them
    /// multiplies what one writer commits per second. A local directory's
    /// puts each end in a flush of the same device and directory, where
    /// overlapping ones save no time and each costs its own flush: one put
    /// at a time, carrying every write that queued behind it (group
    /// commit), measured twice the throughput at 16 writers.
    fn overlapping_puts_help(&self) -> bool {
        true
    }
}

/// Refuses a range that is reversed or runs past an object of `size`
/// bytes, the same way on every backend.
pub(crate) fn check_range(key: &str, range: &Range<u64>, size: u64) -> StoreResult<()> {
    if range.start > range.end || range.end > size {
        return Err(StoreError::BadRange {
            key: key.to_string(),
            start: range.start,
            end: range.end,
            size,
        });
    }
    Ok(())
}

/// Refuses a `list_prefixes` prefix that is not a whole "directory": with a
/// partial name ("ns/wa") the answer would depend on how each backend splits
/// names, so every backend rejects it the same way.
pub(crate) fn check_dir_prefix(prefix: &str) -> StoreResult<()> {
    if prefix.is_empty() || prefix.ends_with('/') {
        Ok(())
    } else {
        Err(StoreError::BadKey(prefix.to_string()))
    }
}

/// The sorted, distinct first path segments below `prefix` of those `keys`
/// that have one (keys directly under `prefix` are objects, not prefixes).
pub(crate) fn prefixes_of<'a>(prefix: &str, keys: impl Iterator<Item = &'a str>) -> Vec<String> {
    let names: std::collections::BTreeSet<&str> = keys
        .filter_map(|key| key.strip_prefix(prefix)?.split_once('/'))
        // An empty segment ("a//b") names no directory a key could be
        // listed under on the stores that validate keys.
        .filter_map(|(name, _)| (!name.is_empty()).then_some(name))
        .collect();
    names.into_iter().map(str::to_string).collect()
}
