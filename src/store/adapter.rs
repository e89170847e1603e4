//! `ObjectStoreAdapter`: reef's [`ObjectStore`] over any store of the
//! `object_store` crate (S3, GCS, Azure, its `InMemory`, ...).
//!
//! Transient failures are retried inside `object_store` (its `RetryConfig`,
//! set up in `url.rs`); a create-if-absent put that loses is never retried
//! there and surfaces here as `AlreadyExists`. A conditional put that fails
//! ambiguously (a timeout: it may or may not have landed) comes back as
//! `Backend`, and the engine decides by reading the object back.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, PutMode, PutOptions, PutPayload};

use super::key::validate_key;
use super::{check_dir_prefix, ObjectMeta, ObjectStore, StoreError, StoreResult};

#[derive(Debug, Clone)]
pub struct ObjectStoreAdapter {
    inner: Arc<dyn object_store::ObjectStore>,
    description: String,
}

impl ObjectStoreAdapter {
    pub fn new(inner: Arc<dyn object_store::ObjectStore>) -> ObjectStoreAdapter {
        let description = inner.to_string();
        ObjectStoreAdapter { inner, description }
    }

    /// Names the store in logs and reports by what the user typed
    /// (`s3://bucket/prefix`) rather than by its internal configuration.
    pub fn with_description(mut self, description: impl Into<String>) -> ObjectStoreAdapter {
        self.description = description.into();
        self
    }

    pub fn inner(&self) -> &Arc<dyn object_store::ObjectStore> {
        &self.inner
    }

    async fn size_of(&self, key: &str, path: &Path) -> StoreResult<u64> {
        let meta = self.inner.head(path).await.map_err(|e| map_error(key, e))?;
        Ok(meta.size)
    }

    fn bad_range(key: &str, range: &Range<u64>, size: u64) -> StoreError {
        StoreError::BadRange {
            key: key.to_string(),
            start: range.start,
            end: range.end,
            size,
        }
    }
}

fn to_path(key: &str) -> StoreResult<Path> {
    validate_key(key)?;
    Path::parse(key).map_err(|_| StoreError::BadKey(key.to_string()))
}

fn map_error(key: &str, e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound(key.to_string()),
        // S3 answers a lost If-None-Match with 412 (Precondition), some
        // S3-compatible services with 304; both mean "taken".
        object_store::Error::AlreadyExists { .. }
        | object_store::Error::Precondition { .. }
        | object_store::Error::NotModified { .. } => StoreError::AlreadyExists(key.to_string()),
        other => StoreError::Backend {
            key: key.to_string(),
            message: other.to_string(),
        },
    }
}

/// The directory part of a listing prefix: `object_store` lists whole path
/// segments, so "ns/wal/000" has to be listed as "ns/wal" and filtered.
fn list_root(prefix: &str) -> Option<Path> {
    let dir = prefix.rfind('/').map_or("", |i| &prefix[..i]);
    if dir.is_empty() {
        return None;
    }
    Path::parse(dir).ok()
}

#[async_trait]
impl ObjectStore for ObjectStoreAdapter {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let path = to_path(key)?;
        self.inner
            .put_opts(&path, PutPayload::from(data), PutOptions::default())
            .await
            .map_err(|e| map_error(key, e))?;
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let path = to_path(key)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.inner
            .put_opts(&path, PutPayload::from(data), opts)
            .await
            .map_err(|e| map_error(key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let path = to_path(key)?;
        let result = self.inner.get(&path).await.map_err(|e| map_error(key, e))?;
        result.bytes().await.map_err(|e| map_error(key, e))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let path = to_path(key)?;
        // HTTP cannot express an empty or inverted range; answer those from
        // the object's size alone.
        if range.start >= range.end {
            let size = self.size_of(key, &path).await?;
            if range.start > range.end || range.start > size {
                return Err(Self::bad_range(key, &range, size));
            }
            return Ok(Bytes::new());
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        match self.inner.get_opts(&path, opts).await {
            Ok(result) => {
                // Servers clamp a range that runs past the end; reef's
                // contract is to refuse it, as the other stores do.
                if result.range != range {
                    return Err(Self::bad_range(key, &range, result.meta.size));
                }
                result.bytes().await.map_err(|e| map_error(key, e))
            }
            Err(e @ object_store::Error::NotFound { .. }) => Err(map_error(key, e)),
            Err(e) => {
                // A range starting past the end is an error (416) whose kind
                // varies by backend: tell it apart from a real failure by size.
                let size = self.size_of(key, &path).await?;
                if range.end > size {
                    Err(Self::bad_range(key, &range, size))
                } else {
                    Err(map_error(key, e))
                }
            }
        }
    }

    async fn list(&self, prefix: &str, offset: Option<&str>) -> StoreResult<Vec<ObjectMeta>> {
        let root = list_root(prefix);
        // Pushing the offset down (S3 StartAfter) saves listing every WAL
        // object again; the filter below keeps exact string semantics.
        let stream = match offset.and_then(|o| Path::parse(o).ok()) {
            Some(o) => self.inner.list_with_offset(root.as_ref(), &o),
            None => self.inner.list(root.as_ref()),
        };
        let metas: Vec<object_store::ObjectMeta> =
            stream.try_collect().await.map_err(|e| map_error(prefix, e))?;
        let mut out: Vec<ObjectMeta> = metas
            .into_iter()
            .map(|m| ObjectMeta {
                key: m.location.to_string(),
                size: m.size,
            })
            .filter(|m| m.key.starts_with(prefix) && offset.is_none_or(|o| m.key.as_str() > o))
            .collect();
        // object_store does not promise an order.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn list_prefixes(&self, prefix: &str) -> StoreResult<Vec<String>> {
        check_dir_prefix(prefix)?;
        let root = match prefix.strip_suffix('/').map(to_path) {
            None => None,
            Some(Ok(path)) => Some(path),
            // No valid key lies under "/", "a//" or "../".
            Some(Err(_)) => return Ok(Vec::new()),
        };
        // A delimiter listing: S3 answers with CommonPrefixes, one entry per
        // directory, instead of every object below it.
        let listing = self
            .inner
            .list_with_delimiter(root.as_ref())
            .await
            .map_err(|e| map_error(prefix, e))?;
        let mut out: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| {
                let name = p.as_ref().strip_prefix(prefix)?;
                (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
            })
            .collect();
        // object_store does not promise an order (nor, across pages, no
        // repeats).
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = to_path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_error(key, e)),
        }
    }

    /// One bulk request per 1000 keys on S3 (`delete_stream`), instead of
    /// a round trip per key.
    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        use futures::StreamExt;
        let paths: Vec<Path> = keys.iter().map(|k| to_path(k)).collect::<StoreResult<_>>()?;
        let input = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut results = self.inner.delete_stream(input);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    let key = keys.first().cloned().unwrap_or_default();
                    return Err(map_error(&key, e));
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
