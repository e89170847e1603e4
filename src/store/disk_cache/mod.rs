//! `DiskCacheStore`: a read-through cache on local disk for immutable
//! objects, so repeated block reads and a restarted daemon do not pay an
//! object-store round trip (and, on S3, a billed GET) per segment block.
//!
//! Only keys containing `/segments/` are cached: segments are immutable and
//! uniquely named, so a cached copy can never go stale while the object
//! exists. WAL objects may be overwritten by repair and manifests are tiny
//! and must always be read fresh.
//!
//! Each cached read (`get`, or `get_range` of one exact range) is one file
//! in the cache directory, named by a stable 64-bit FNV-1a hash of (key,
//! range). The file starts with a header naming the key and range, the
//! payload length and a CRC32 of the payload, so a hash collision reads as
//! a miss and a damaged file (torn by a power loss, overwritten, truncated)
//! is detected, dropped and re-fetched rather than served. Because every
//! read is verified, files are written without fsync: temp file + rename
//! keeps a reader from seeing a half-written entry, and the checksum covers
//! what a crash might leave behind.
//!
//! The total size of the files is bounded by `max_bytes`: an in-memory LRU
//! index, rebuilt at startup by scanning the directory (oldest modification
//! time first), evicts the least recently used entries. Hits update only the
//! in-memory order, so a hit costs no metadata write.
//!
//! The cache never fails a read: if it cannot read or write its files (disk
//! full, unreadable file, directory removed), it logs one warning line per
//! failure and answers from the inner store.
//!
//! One process should own a cache directory at a time. Two sharing one stay
//! correct (atomic renames, verified reads) but each bounds only the files
//! it knows about.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;

use super::{ObjectMeta, ObjectStore, StoreError, StoreResult};
mod entry;

use entry::*;
#[derive(Debug)]
struct Entry {
    slot: Slot,
    /// Bytes of the file on disk, header included: that is what the bound
    /// limits.
    size: u64,
}

/// Fills of one key still in flight, and a generation bumped whenever the
/// key is invalidated, so a fill that fetched the object before a delete
/// cannot store it after the delete dropped the key's entries.
#[derive(Debug, Default)]
struct Pending {
    fills: usize,
    generation: u64,
}

/// The in-memory index; the directory's files and this agree whenever the
/// lock is not held (files are renamed in and removed under it).
struct Index {
    /// File name → entry, least recently used first.
    lru: LruCache<String, Entry>,
    /// Key → names of its files, so invalidating a key finds them all.
    by_key: HashMap<String, HashSet<String>>,
    total: u64,
    pending: HashMap<String, Pending>,
}

impl Index {
    fn new() -> Index {
        Index {
            lru: LruCache::unbounded(),
            by_key: HashMap::new(),
            total: 0,
            pending: HashMap::new(),
        }
    }

    fn forget(&mut self, name: &str, entry: &Entry) {
        self.total = self.total.saturating_sub(entry.size);
        if let Some(names) = self.by_key.get_mut(&entry.slot.key) {
            names.remove(name);
            if names.is_empty() {
                self.by_key.remove(&entry.slot.key);
            }
        }
    }

    fn remove(&mut self, name: &str) -> Option<Entry> {
        let entry = self.lru.pop(name)?;
        self.forget(name, &entry);
        Some(entry)
    }

    /// Adds (or replaces) `name` as the most recently used entry and
    /// returns the names evicted to get back under `max_bytes`.
    fn insert(&mut self, name: String, entry: Entry, max_bytes: u64) -> Vec<String> {
        self.remove(&name);
        self.total += entry.size;
        self.by_key
            .entry(entry.slot.key.clone())
            .or_default()
            .insert(name.clone());
        self.lru.push(name, entry);
        let mut evicted = Vec::new();
        while self.total > max_bytes {
            let Some((name, entry)) = self.lru.pop_lru() else {
                break;
            };
            self.forget(&name, &entry);
            evicted.push(name);
        }
        evicted
    }

    fn begin_fill(&mut self, key: &str) -> u64 {
        let p = self.pending.entry(key.to_string()).or_default();
        p.fills += 1;
        p.generation
    }

    /// Ends a fill; true if the key was not invalidated since it began.
    fn end_fill(&mut self, key: &str, generation: u64) -> bool {
        let Some(p) = self.pending.get_mut(key) else {
            return false;
        };
        let current = p.generation == generation;
        p.fills -= 1;
        if p.fills == 0 {
            self.pending.remove(key);
        }
        current
    }

    /// Drops every entry of `key` (returning their file names) and makes
    /// fills of it in flight discard what they fetched.
    fn invalidate(&mut self, key: &str) -> Vec<String> {
        if let Some(p) = self.pending.get_mut(key) {
            p.generation += 1;
        }
        let names: Vec<String> = self
            .by_key
            .remove(key)
            .map(|names| names.into_iter().collect())
            .unwrap_or_default();
        for name in &names {
            if let Some(entry) = self.lru.pop(name) {
                self.total = self.total.saturating_sub(entry.size);
            }
        }
        names
    }
}

struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// One warning line per cache failure; the read goes on without it.
    fn warn(&self, what: fmt::Arguments<'_>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "disk cache {}: {what}; reading from the object store instead",
            self.dir.display()
        );
    }

    fn remove_files(&self, names: &[String]) {
        for name in names {
            if let Err(e) = remove_file(&self.path(name)) {
                self.warn(format_args!("removing {name}: {e}"));
            }
        }
    }

    /// Looks `slot` up; `None` is a miss, for whatever reason.
    fn lookup(&self, slot: &Slot) -> Option<Bytes> {
        let name = slot.file_name();
        let known = self
            .index
            .lock()
            .lru
            .get(&name)
            .is_some_and(|e| e.slot == *slot);
        if !known {
            return None;
        }
        let path = self.path(&name);
        let why = match read_entry(&path, slot) {
            Lookup::Hit(data) => return Some(data),
            // Replaced by another slot's fill since the index was checked.
            Lookup::Collision => return None,
            Lookup::Corrupt(why) => why.to_string(),
            Lookup::Failed(e) => e.to_string(),
        };
        self.warn(format_args!("dropping {name} (for {}): {why}", slot.key));
        let mut index = self.index.lock();
        // Only if it still is the entry we read: a concurrent fill may have
        // put a good file in its place.
        if index.lru.peek(&name).is_some_and(|e| e.slot == *slot) {
            index.remove(&name);
            if let Err(e) = remove_file(&path) {
                drop(index);
                self.warn(format_args!("removing {name}: {e}"));
            }
        }
        None
    }

    /// Stores `data` as `slot` unless `fill` was invalidated meanwhile.
    fn store(&self, fill: Fill, data: &Bytes) {
        let slot = fill.slot.clone();
        let name = slot.file_name();
        let header = match encode_header(&slot, data) {
            Ok(h) => h,
            Err(_) => return, // a key too long to cache: just not cached
        };
        let size = (header.len() + data.len()) as u64;
        if size > self.max_bytes {
            // It would evict everything else and then itself.
            drop(fill);
            return;
        }
        let tmp = match write_temp(&self.dir, &header, data) {
            Ok(tmp) => tmp,
            Err(e) => {
                drop(fill);
                self.warn(format_args!("writing {name} (for {}): {e}", slot.key));
                return;
            }
        };
        let mut index = self.index.lock();
        if !fill.finish(&mut index) {
            drop(index);
            let _ = fs::remove_file(&tmp);
            return;
        }
        // Rename under the lock, so the index and the directory agree.
        if let Err(e) = fs::rename(&tmp, self.path(&name)) {
            drop(index);
            let _ = fs::remove_file(&tmp);
            self.warn(format_args!("placing {name} (for {}): {e}", slot.key));
            return;
        }
        let evicted = index.insert(name, Entry { slot, size }, self.max_bytes);
        self.remove_files(&evicted);
    }

    fn invalidate(&self, key: &str) {
        let mut index = self.index.lock();
        let names = index.invalidate(key);
        // Under the lock: a fill of the same slot must not place its file
        // between our index update and the removal.
        self.remove_files(&names);
    }
}

/// A fill in progress (between a miss and storing what the inner store
/// returned). Dropping it unfinished (an inner error, a cancelled read)
/// still ends it, so the pending count stays exact.
struct Fill {
    shared: Arc<Shared>,
    slot: Slot,
    generation: u64,
    done: bool,
}

impl Fill {
    fn begin(shared: &Arc<Shared>, slot: Slot) -> Fill {
        let generation = shared.index.lock().begin_fill(&slot.key);
        Fill {
            shared: shared.clone(),
            slot,
            generation,
            done: false,
        }
    }

    fn finish(mut self, index: &mut Index) -> bool {
        self.done = true;
        index.end_fill(&self.slot.key, self.generation)
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        if !self.done {
            self.shared
                .index
                .lock()
                .end_fill(&self.slot.key, self.generation);
        }
    }
}

/// Runs blocking cache work off the async executor. The cache must never
/// fail a read, so a task that dies is just logged.
async fn blocking<T, F>(shared: &Arc<Shared>, f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(&Shared) -> T + Send + 'static,
{
    let task_shared = shared.clone();
    match tokio::task::spawn_blocking(move || f(&task_shared)).await {
        Ok(value) => Some(value),
        Err(e) => {
            shared.warn(format_args!("cache task failed: {e}"));
            None
        }
    }
}

/// Builds the index from the files already in the cache directory, oldest
/// modification first, removing what is damaged or was abandoned mid-write.
fn scan(shared: &Shared) -> io::Result<()> {
    let now = SystemTime::now();
    let mut found: Vec<(SystemTime, String, Entry)> = Vec::new();
    for dir_entry in fs::read_dir(&shared.dir)? {
        let dir_entry = dir_entry?;
        let Some(name) = dir_entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = dir_entry.path();
        let meta = match dir_entry.metadata() {
            Ok(m) if m.is_file() => m,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                shared.warn(format_args!("reading {name}: {e}"));
                continue;
            }
        };
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        if name.starts_with(TEMP_PREFIX) {
            let age = now.duration_since(mtime).unwrap_or_default();
            if age > STALE_TEMP_AGE {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        // Anything else in the directory is not ours to touch.
        if !is_cache_file_name(&name) {
            continue;
        }
        let problem = match read_header(&path) {
            Ok(Ok(h)) if h.slot.file_name() != name => "file name does not match its header",
            Ok(Ok(h)) if meta.len() != h.len as u64 + h.payload_len => "wrong file length",
            Ok(Ok(h)) => {
                let entry = Entry {
                    slot: h.slot,
                    size: meta.len(),
                };
                found.push((mtime, name, entry));
                continue;
            }
            Ok(Err(why)) => why,
            Err(e) => {
                shared.warn(format_args!("reading {name}: {e}"));
                let _ = fs::remove_file(&path);
                continue;
            }
        };
        shared.warn(format_args!("dropping {name}: {problem}"));
        if let Err(e) = remove_file(&path) {
            shared.warn(format_args!("removing {name}: {e}"));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut index = shared.index.lock();
    let mut evicted = Vec::new();
    for (_, name, entry) in found {
        // Oldest first, so what the bound (perhaps lowered since the last
        // run) evicts is what was written longest ago.
        evicted.extend(index.insert(name, entry, shared.max_bytes));
    }
    shared.remove_files(&evicted);
    Ok(())
}

/// A read-through disk cache of segment reads in front of another store.
pub struct DiskCacheStore {
    inner: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
}

impl fmt::Debug for DiskCacheStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskCacheStore")
            .field("inner", &self.inner)
            .field("dir", &self.shared.dir)
            .field("max_bytes", &self.shared.max_bytes)
            .finish_non_exhaustive()
    }
}

impl DiskCacheStore {
    /// Caches reads of `inner` in `dir` (created if needed), keeping at
    /// most `max_bytes` there. Entries a previous run left in `dir` are
    /// indexed and served. Blocks while it scans the directory (one header
    /// read per cached file). Fails only if `dir` cannot be created or read.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        dir: PathBuf,
        max_bytes: u64,
    ) -> StoreResult<DiskCacheStore> {
        let io_err = |source| StoreError::Io {
            key: dir.display().to_string(),
            source,
        };
        // Absolute, so a daemon that changes directory keeps the same cache.
        let dir = std::path::absolute(&dir).map_err(io_err)?;
        fs::create_dir_all(&dir).map_err(io_err)?;
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            max_bytes,
            index: Mutex::new(Index::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        scan(&shared).map_err(io_err)?;
        Ok(DiskCacheStore { inner, shared })
    }

    /// Reads served from the cache.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::Relaxed)
    }

    /// Reads of cacheable keys that went to the inner store.
    pub fn misses(&self) -> u64 {
        self.shared.misses.load(Ordering::Relaxed)
    }

    /// Failures of the cache itself (each also logged), which reads survived.
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    /// Bytes of cache files currently indexed (headers included).
    pub fn cached_bytes(&self) -> u64 {
        self.shared.index.lock().total
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    async fn cached_read(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Bytes> {
        let slot = Slot::new(key, range);
        let lookup_slot = slot.clone();
        let hit = blocking(&self.shared, move |s| s.lookup(&lookup_slot))
            .await
            .flatten();
        if let Some(data) = hit {
            self.shared.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(data);
        }
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
        let fill = Fill::begin(&self.shared, slot.clone());
        let data = match &slot.range {
            None => self.inner.get(key).await?,
            Some(r) => self.inner.get_range(key, r.clone()).await?,
        };
        let stored = data.clone();
        // Awaited rather than left running, so a read that follows this one
        // finds the entry; the write is to local disk without fsync.
        blocking(&self.shared, move |s| s.store(fill, &stored)).await;
        Ok(data)
    }

    async fn invalidate(&self, key: &str) {
        if !is_cached_key(key) {
            return;
        }
        let owned = key.to_string();
        blocking(&self.shared, move |s| s.invalidate(&owned)).await;
    }
}

#[async_trait]
impl ObjectStore for DiskCacheStore {
    /// Segments are never overwritten by the engine, but `put` may replace
    /// an object (repair, tests): drop cached copies before and after, so
    /// no read in between can cache the old bytes for good.
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.invalidate(key).await;
        let result = self.inner.put(key, data).await;
        self.invalidate(key).await;
        result
    }

    /// Forwarded (bulk delete on S3), invalidating like `delete`.
    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        for key in keys {
            self.invalidate(key).await;
        }
        let result = self.inner.delete_many(keys).await;
        for key in keys {
            self.invalidate(key).await;
        }
        result
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put_if_absent(key, data).await?;
        // The key was free, so anything cached under it is from an object
        // deleted behind our back (another process).
        self.invalidate(key).await;
        Ok(())
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        if !is_cached_key(key) {
            return self.inner.get(key).await;
        }
        self.cached_read(key, None).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        if !is_cached_key(key) {
            return self.inner.get_range(key, range).await;
        }
        self.cached_read(key, Some(range)).await
    }

    async fn list(&self, prefix: &str, offset: Option<&str>) -> StoreResult<Vec<ObjectMeta>> {
        self.inner.list(prefix, offset).await
    }

    async fn list_prefixes(&self, prefix: &str) -> StoreResult<Vec<String>> {
        self.inner.list_prefixes(prefix).await
    }

    /// Drops the key's cached entries before the delete (so no read serves
    /// them meanwhile) and after it (a read that fetched the object just
    /// before the delete must not leave it cached).
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.invalidate(key).await;
        let result = self.inner.delete(key).await;
        self.invalidate(key).await;
        result
    }

    /// The inner store's: the cache is transparent, and this names the
    /// mount (fsname) and the store in reports.
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

    #[test]
    fn file_names_are_stable_across_runs() {
        // Pinned: changing the hash orphans every cache on upgrade.
        let slot = Slot::new("ns/segments/abc", Some(10..20));
        assert_eq!(slot.hash(), Slot::new("ns/segments/abc", Some(10..20)).hash());
        assert_eq!(slot.file_name(), format!("{:016x}.blk", slot.hash()));
        assert_eq!(Slot::new("", None).hash(), 0x8729_a6fd_ddc8_f66a_u64);
        assert_ne!(Slot::new("k", None).hash(), Slot::new("k", Some(0..0)).hash());
        assert!(is_cache_file_name(&slot.file_name()));
        assert!(!is_cache_file_name("notes.txt"));
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let slot = Slot::new("ns/segments/s", Some(4..9));
        let payload = b"hello";
        let mut file = encode_header(&slot, payload).expect("encode");
        let header_len = file.len();
        file.extend_from_slice(payload);
        let h = decode_header(&file).expect("decode");
        assert_eq!(h.slot, slot);
        assert_eq!(h.len, header_len);
        assert_eq!(h.payload_len, 5);
        for i in 0..header_len {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(decode_header(&bad).is_err(), "flipped header byte {i}");
        }
        assert!(decode_header(&file[..header_len - 1]).is_err());
    }

    #[test]
    fn index_evicts_least_recently_used_and_invalidates_by_key() {
        let mut index = Index::new();
        let entry = |key: &str, r: u64| Entry {
            slot: Slot::new(key, Some(r..r + 1)),
            size: 10,
        };
        assert!(index.insert("a".into(), entry("k1", 0), 30).is_empty());
        assert!(index.insert("b".into(), entry("k1", 1), 30).is_empty());
        assert!(index.insert("c".into(), entry("k2", 0), 30).is_empty());
        index.lru.get("a"); // a is now the most recently used
        assert_eq!(index.insert("d".into(), entry("k2", 1), 30), ["b"]);
        assert_eq!(index.total, 30);
        let mut dropped = index.invalidate("k1");
        dropped.sort();
        assert_eq!(dropped, ["a"]);
        assert_eq!(index.total, 20);
        let generation = index.begin_fill("k2");
        index.invalidate("k2");
        assert!(!index.end_fill("k2", generation), "invalidated mid-fill");
        assert!(index.pending.is_empty());
        assert_eq!(index.total, 0);
    }
}
