//! `MemoryStore`: an in-process map, for tests and `memory://` demos.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{check_dir_prefix, check_range, ObjectMeta, ObjectStore, StoreError, StoreResult};

#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.objects.lock().insert(key.to_string(), data);
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let mut objects = self.objects.lock();
        if objects.contains_key(key) {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        objects.insert(key.to_string(), data);
        Ok(())
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.objects
            .lock()
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.to_string()))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let data = self.get(key).await?;
        check_range(key, &range, data.len() as u64)?;
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    async fn list(&self, prefix: &str, offset: Option<&str>) -> StoreResult<Vec<ObjectMeta>> {
        let objects = self.objects.lock();
        Ok(objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| offset.is_none_or(|o| k.as_str() > o))
            .map(|(k, v)| ObjectMeta {
                key: k.clone(),
                size: v.len() as u64,
            })
            .collect())
    }

    async fn list_prefixes(&self, prefix: &str) -> StoreResult<Vec<String>> {
        check_dir_prefix(prefix)?;
        let objects = self.objects.lock();
        let mut out = Vec::new();
        // Seek from name to name instead of visiting every key: all keys
        // below `<name>/` sort before `<name>0` ('0' follows '/').
        let mut from = prefix.to_string();
        let mut inclusive = true;
        loop {
            let lower = if inclusive {
                Bound::Included(from.as_str())
            } else {
                Bound::Excluded(from.as_str())
            };
            let Some((key, _)) = objects.range::<str, _>((lower, Bound::Unbounded)).next() else {
                break;
            };
            let Some(rest) = key.strip_prefix(prefix) else {
                break;
            };
            match rest.split_once('/') {
                Some((name, _)) => {
                    if !name.is_empty() {
                        out.push(name.to_string());
                    }
                    from = format!("{prefix}{name}0");
                    inclusive = true;
                }
                // An object directly under `prefix`: step past it.
                None => {
                    from = key.clone();
                    inclusive = false;
                }
            }
        }
        // Key order is not name order: "a-b/x" sorts before "a/x".
        out.sort();
        Ok(out)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.objects.lock().remove(key);
        Ok(())
    }

    fn describe(&self) -> String {
        "memory://".to_string()
    }
}
