//! `LocalFsStore`: objects as files under a root directory, durable with
//! fsync, for the embedded default (`reef mount ./dir ...`).
//!
//! Every write goes to a temp file in the target's directory first, so a
//! crash never leaves a partly written object under its real name. Temp
//! names start with [`TEMP_PREFIX`]; keys may not, and listings skip them.
//! A crash can leave a temp file behind; it is never listed or read.
//!
//! ## What makes a put durable, and why one fsync is enough here
//!
//! An object is durable once its bytes and its name are. The portable way
//! costs two journal commits (each a disk cache flush): fsync the temp file,
//! link it under its name, fsync the directory. On the journalling
//! filesystems reef meets in practice (ext4 with its journal, XFS, btrfs) a
//! file's fsync also commits the metadata changes made to that inode so
//! far, and linking or
//! renaming a file changes the inode (its link count or ctime) in the same
//! transaction as the directory entry; transactions commit in order, so the
//! fsync of the linked file makes the name durable too. There a put is
//! therefore: write the temp file, write its data out and wait for it
//! (`sync_file_range`, no cache flush: the blocks are allocated and the size
//! logged before the name exists, so no commit can ever publish a name whose
//! data is missing after a power cut), link or rename it, then one fsync of
//! the file. On any other filesystem ([`NameSync::Directory`]) the portable
//! sequence runs; that includes an ext4 without a journal (and ext2, which
//! shares its magic number), where nothing orders the inode's write before
//! the directory block's, and an ext4 whose journal could not be confirmed. Either way the name appears only after the whole content
//! is written, so a reader never sees a partial object; a put whose final
//! fsync fails reports the failure although its name exists, as it would
//! if the directory fsync failed (the engine never counts such a put as
//! acknowledged, see `engine::wal`).
//!
//! A key cannot be both an object and a "directory" of other keys here
//! (`a/b` and `a/b/c`), unlike on S3; reef's layout never needs that.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use super::key::validate_key;
use super::{check_dir_prefix, check_range, ObjectMeta, ObjectStore, StoreError, StoreResult};

/// Names starting with this are in-flight (or crash-abandoned) writes.
pub const TEMP_PREFIX: &str = ".tmp-";

/// How often a put retries when a concurrent delete removes the (then
/// empty) directory between creating it and creating the temp file in it.
const DIR_RACE_RETRIES: usize = 8;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temp file name in `dir`, unique across threads and processes
/// (pid, counter, clock), that listings recognise and skip.
pub(crate) fn temp_path(dir: &Path) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{}-{n}-{nanos:x}", std::process::id()))
}

#[derive(Debug, Clone)]
pub struct LocalFsStore {
    root: PathBuf,
    name_sync: NameSync,
}

/// How a put makes an object's new name durable (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSync {
    /// The file's own fsync commits the name too (ext4, XFS, btrfs).
    WithFile,
    /// The directory is fsync'd after the name is placed (anything else).
    Directory,
}

impl NameSync {
    /// What the filesystem holding `dir` needs.
    fn of(dir: &Path) -> io::Result<NameSync> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: `path` is a valid NUL-terminated string and `stat` a
        // properly sized, writable statfs buffer that outlives the call.
        let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let magic = stat.f_type as i64;
        let journal = if magic == EXT4_MAGIC {
            ext4_has_journal(dir)
        } else {
            None
        };
        Ok(NameSync::for_filesystem(magic, journal))
    }

    /// `ext4_journal`: whether an ext4 (magic `0xEF53`, which ext2 and ext3
    /// share) has a journal; `None` when that could not be learnt.
    pub(crate) fn for_filesystem(magic: i64, ext4_journal: Option<bool>) -> NameSync {
        const XFS: i64 = 0x5846_5342;
        const BTRFS: i64 = 0x9123_683E;
        match magic {
            XFS | BTRFS => NameSync::WithFile,
            EXT4_MAGIC if ext4_journal == Some(true) => NameSync::WithFile,
            _ => NameSync::Directory,
        }
    }
}

const EXT4_MAGIC: i64 = 0xEF53;

/// Whether the ext4 holding `dir` has a journal, as its sysfs entry says
/// (`journal_task` is `<none>` without one). Without a journal a file's
/// fsync writes its inode and directory block with no ordering between
/// them, so a power cut could publish a name before its inode: such a
/// filesystem (ext2, or ext4 made with `^has_journal`) needs the portable
/// sequence.
fn ext4_has_journal(dir: &Path) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata(dir).ok()?.dev();
    let block = fs::read_link(format!(
        "/sys/dev/block/{}:{}",
        libc::major(dev),
        libc::minor(dev)
    ))
    .ok()?;
    let name = block.file_name()?.to_str()?.to_owned();
    let task = fs::read_to_string(format!("/sys/fs/ext4/{name}/journal_task")).ok()?;
    Some(task.trim() != "<none>")
}

impl LocalFsStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn new(root: PathBuf) -> StoreResult<LocalFsStore> {
        let io_err = |source| StoreError::Io {
            key: root.display().to_string(),
            source,
        };
        // Absolute, so a daemon that changes directory keeps the same root.
        let root = std::path::absolute(&root).map_err(io_err)?;
        fs::create_dir_all(&root).map_err(io_err)?;
        if !root.is_dir() {
            return Err(io_err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "store root is not a directory",
            )));
        }
        let name_sync = NameSync::of(&root).map_err(io_err)?;
        Ok(LocalFsStore { root, name_sync })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A store that makes names durable as `name_sync` says, whatever the
    /// filesystem: to test both put sequences on one machine.
    #[cfg(test)]
    pub(crate) fn with_name_sync(root: PathBuf, name_sync: NameSync) -> StoreResult<LocalFsStore> {
        Ok(LocalFsStore {
            name_sync,
            ..LocalFsStore::new(root)?
        })
    }

    /// How this store's puts make names durable (the filesystem decides).
    pub fn name_sync(&self) -> NameSync {
        self.name_sync
    }

    fn path_of(&self, key: &str) -> StoreResult<PathBuf> {
        validate_key(key)?;
        if key.split('/').any(|s| s.starts_with(TEMP_PREFIX)) {
            return Err(StoreError::BadKey(key.to_string()));
        }
        Ok(self.root.join(key))
    }
}

/// Runs blocking file-system work off the async executor.
async fn blocking<T, F>(key: &str, f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Backend {
            key: key.to_string(),
            message: format!("file-system task failed: {e}"),
        }),
    }
}

fn io_error(key: &str) -> impl Fn(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        key: key.to_string(),
        source,
    }
}

/// Errors that mean "no object at this key" rather than a failing disk: the
/// path is missing, or a path component (or the path itself) is of the
/// other kind, file versus directory.
fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::EISDIR))
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the directories between `root` and `dir`, fsyncing the parent of
/// each one created so the new entry survives a crash.
fn ensure_dir(root: &Path, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let rel = dir.strip_prefix(root).map_err(io::Error::other)?;
    let mut current = root.to_path_buf();
    for component in rel.components() {
        let parent = current.clone();
        current.push(component);
        match fs::create_dir(&current) {
            Ok(()) => fsync_dir(&parent)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `data` to a fresh temp file in `dir` and returns it, open, with
/// its path. The data is on disk (fsync'd, or for [`NameSync::WithFile`]
/// written out and waited for) before it returns.
fn write_temp(root: &Path, dir: &Path, data: &[u8], sync: NameSync) -> io::Result<(File, PathBuf)> {
    let mut attempts = 0;
    loop {
        match ensure_dir(root, dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < DIR_RACE_RETRIES => {
                attempts += 1;
                continue;
            }
            Err(e) => return Err(e),
        }
        let tmp = temp_path(dir);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(mut file) => {
                let written = file.write_all(data).and_then(|()| match sync {
                    NameSync::WithFile => write_out(&file),
                    NameSync::Directory => file.sync_all(),
                });
                if let Err(e) = written {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                return Ok((file, tmp));
            }
            // A concurrent delete pruned the empty directory: recreate it.
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < DIR_RACE_RETRIES => {
                attempts += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes a file's dirty pages and waits for them, without a cache flush
/// (that comes with the fsync after the name is placed).
fn write_out(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a plain syscall on a descriptor `file` owns for the call.
    if unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn parent_of(path: &Path) -> io::Result<&Path> {
    path.parent()
        .ok_or_else(|| io::Error::other("object path has no parent directory"))
}

fn put_blocking(
    root: &Path,
    path: &Path,
    data: &[u8],
    create_only: bool,
    sync: NameSync,
) -> io::Result<bool> {
    let dir = parent_of(path)?;
    let (file, tmp) = write_temp(root, dir, data, sync)?;
    // A hard link fails with EEXIST if the name is taken, atomically, and
    // (unlike O_EXCL on the target) never exposes a half-written object.
    let placed = if create_only {
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    } else {
        fs::rename(&tmp, path).map(|()| true)
    };
    if create_only || placed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    let placed = placed?;
    if placed {
        match sync {
            NameSync::WithFile => file.sync_all()?,
            NameSync::Directory => fsync_dir(dir)?,
        }
    }
    Ok(placed)
}

fn get_range_blocking(path: &Path, key: &str, range: Option<Range<u64>>) -> StoreResult<Bytes> {
    let map = |e: io::Error| {
        if is_absent(&e) {
            StoreError::NotFound(key.to_string())
        } else {
            io_error(key)(e)
        }
    };
    let file = File::open(path).map_err(map)?;
    let metadata = file.metadata().map_err(map)?;
    // Opening a directory succeeds; it is still not an object.
    if !metadata.is_file() {
        return Err(StoreError::NotFound(key.to_string()));
    }
    let size = metadata.len();
    let range = range.unwrap_or(0..size);
    check_range(key, &range, size)?;
    let len =
        usize::try_from(range.end - range.start).map_err(|e| io_error(key)(io::Error::other(e)))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, range.start).map_err(map)?;
    Ok(Bytes::from(buf))
}

/// Collects the objects under `dir` (whose keys start with `rel`) that match
/// `prefix` and sort after `offset`, skipping subtrees that cannot match.
fn walk(
    dir: &Path,
    rel: &str,
    prefix: &str,
    offset: Option<&str>,
    out: &mut Vec<ObjectMeta>,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_absent(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let key = format!("{rel}{name}");
        let metadata = match entry.metadata() {
            Ok(m) => m,
            // Deleted since read_dir listed it.
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(e),
        };
        if metadata.is_dir() {
            let sub = format!("{key}/");
            let may_match = sub.starts_with(prefix) || prefix.starts_with(&sub);
            // Every key under `sub` sorts below `key` + "0" ('/' + 1).
            let all_before_offset = offset.is_some_and(|o| format!("{key}0").as_str() <= o);
            if may_match && !all_before_offset {
                walk(&entry.path(), &sub, prefix, offset, out)?;
            }
        } else if metadata.is_file()
            && key.starts_with(prefix)
            && offset.is_none_or(|o| key.as_str() > o)
        {
            out.push(ObjectMeta {
                key,
                size: metadata.len(),
            });
        }
    }
    Ok(())
}

fn list_blocking(root: &Path, prefix: &str, offset: Option<&str>) -> io::Result<Vec<ObjectMeta>> {
    // Start at the deepest directory the prefix names in full; the rest of
    // the prefix ("ns/wal/000") filters names inside it.
    let dir_rel = prefix.rfind('/').map_or("", |i| &prefix[..i]);
    if !dir_rel.is_empty() && validate_key(dir_rel).is_err() {
        // No valid key can start with this prefix (and `..` must not
        // escape the root).
        return Ok(Vec::new());
    }
    let (dir, rel) = if dir_rel.is_empty() {
        (root.to_path_buf(), String::new())
    } else {
        (root.join(dir_rel), format!("{dir_rel}/"))
    };
    let mut out = Vec::new();
    walk(&dir, &rel, prefix, offset, &mut out)?;
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The kind of a directory entry, without following symlinks (as `walk`
/// does), or `None` for a name to skip: a temp file or directory, a name
/// that is not UTF-8, or one deleted since `read_dir` listed it.
fn visible_entry(entry: &fs::DirEntry) -> io::Result<Option<(String, fs::FileType)>> {
    let Some(name) = entry.file_name().to_str().map(str::to_string) else {
        return Ok(None);
    };
    if name.starts_with(TEMP_PREFIX) {
        return Ok(None);
    }
    match entry.file_type() {
        Ok(kind) => Ok(Some((name, kind))),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether any object lies somewhere below `dir`. Deletes prune empty
/// directories only best-effort and a crash can leave a directory holding
/// nothing but a temp file, so an existing directory alone proves nothing.
/// Stops at the first object, which is nearly always in the first entries.
fn holds_object(dir: &Path) -> io::Result<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_absent(&e) => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some((_, kind)) = visible_entry(&entry)? else {
            continue;
        };
        if kind.is_file() || (kind.is_dir() && holds_object(&entry.path())?) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `list_prefixes` from one `read_dir` of the directory `prefix` names.
fn list_prefixes_blocking(root: &Path, prefix: &str) -> io::Result<Vec<String>> {
    let dir = match prefix.strip_suffix('/') {
        None => root.to_path_buf(),
        // No object can lie under an invalid key ("/", "a//", and `..`,
        // which must not escape the root), nor under a temp name.
        Some(dir_rel)
            if validate_key(dir_rel).is_err()
                || dir_rel.split('/').any(|s| s.starts_with(TEMP_PREFIX)) =>
        {
            return Ok(Vec::new());
        }
        Some(dir_rel) => root.join(dir_rel),
    };
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if is_absent(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some((name, kind)) = visible_entry(&entry)? else {
            continue;
        };
        if kind.is_dir() && holds_object(&entry.path())? {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

fn delete_blocking(root: &Path, path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if is_absent(&e) => return Ok(()),
        Err(e) => return Err(e),
    }
    let dir = parent_of(path)?;
    fsync_dir(dir)?;
    // Best effort: prune directories the delete left empty, so namespaces
    // that are gone leave no trace. A concurrent put recreates what it needs.
    let mut current = dir;
    while current != root && current.starts_with(root) {
        if fs::remove_dir(current).is_err() {
            break;
        }
        match current.parent() {
            Some(parent) => current = parent,
            None => break,
        }
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for LocalFsStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let path = self.path_of(key)?;
        let root = self.root.clone();
        let owned = key.to_string();
        let sync = self.name_sync;
        blocking(key, move || {
            put_blocking(&root, &path, &data, false, sync).map_err(io_error(&owned))?;
            Ok(())
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let path = self.path_of(key)?;
        let root = self.root.clone();
        let owned = key.to_string();
        let sync = self.name_sync;
        blocking(key, move || {
            match put_blocking(&root, &path, &data, true, sync).map_err(io_error(&owned))? {
                true => Ok(()),
                false => Err(StoreError::AlreadyExists(owned)),
            }
        })
        .await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let path = self.path_of(key)?;
        let owned = key.to_string();
        blocking(key, move || get_range_blocking(&path, &owned, None)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let path = self.path_of(key)?;
        let owned = key.to_string();
        blocking(key, move || get_range_blocking(&path, &owned, Some(range))).await
    }

    async fn list(&self, prefix: &str, offset: Option<&str>) -> StoreResult<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let owned_prefix = prefix.to_string();
        let owned_offset = offset.map(str::to_string);
        blocking(prefix, move || {
            list_blocking(&root, &owned_prefix, owned_offset.as_deref())
                .map_err(io_error(&owned_prefix))
        })
        .await
    }

    async fn list_prefixes(&self, prefix: &str) -> StoreResult<Vec<String>> {
        check_dir_prefix(prefix)?;
        let root = self.root.clone();
        let owned = prefix.to_string();
        blocking(prefix, move || {
            list_prefixes_blocking(&root, &owned).map_err(io_error(&owned))
        })
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path_of(key)?;
        let root = self.root.clone();
        let owned = key.to_string();
        blocking(key, move || {
            delete_blocking(&root, &path).map_err(io_error(&owned))
        })
        .await
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn overlapping_puts_help(&self) -> bool {
        false
    }
}
