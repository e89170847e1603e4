//! The cache's files: one per cached read, a self-checking header (magic,
//! key, range, payload length and CRC32, header CRC32) followed by the
//! payload, written as temp file + rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

/// Keys containing this are cached; see the module docs for why only these.
pub(super) const CACHED_MARKER: &str = "/segments/";

/// First bytes of every cache file; the trailing digits are the format
/// version, so a future layout change reads old files as corrupt (a miss).
pub(super) const MAGIC: &[u8; 8] = b"REEFDC01";
/// magic, key length (u32), kind (u8), range start and end (u64 each),
/// payload length (u64), payload CRC32, header CRC32; then the key.
pub(super) const FIXED_HEADER: usize = 8 + 4 + 1 + 8 + 8 + 8 + 4 + 4;
/// Keys are short paths; a larger length field means a damaged header, and
/// bounding it keeps a damaged file from making us allocate gigabytes.
pub(super) const MAX_KEY_LEN: usize = 64 << 10;

pub(super) const FILE_SUFFIX: &str = ".blk";
pub(super) use crate::store::local::{temp_path, TEMP_PREFIX};
/// Temp files older than this at startup were abandoned by a crash; younger
/// ones may belong to another process still writing them.
pub(super) const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

pub(super) fn is_cached_key(key: &str) -> bool {
    key.contains(CACHED_MARKER)
}

/// What one cache file holds: a whole object (`range: None`) or one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) key: String,
    pub(super) range: Option<Range<u64>>,
}

impl Slot {
    pub(super) fn new(key: &str, range: Option<Range<u64>>) -> Slot {
        Slot {
            key: key.to_string(),
            range,
        }
    }

    pub(super) fn kind_and_bounds(&self) -> (u8, u64, u64) {
        match &self.range {
            None => (0, 0, 0),
            Some(r) => (1, r.start, r.end),
        }
    }

    /// FNV-1a (64-bit) of the key, a separator no UTF-8 key contains, the
    /// kind and the range bounds. Written out here rather than taken from
    /// `std::hash`, whose output may change between Rust releases: the
    /// name must stay the same across runs for the cache to survive them.
    pub(super) fn hash(&self) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let (kind, start, end) = self.kind_and_bounds();
        let mut h = OFFSET;
        let (sep, start, end) = ([0xff, kind], start.to_le_bytes(), end.to_le_bytes());
        let bytes = self
            .key
            .as_bytes()
            .iter()
            .chain(&sep)
            .chain(&start)
            .chain(&end);
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
        h
    }

    pub(super) fn file_name(&self) -> String {
        format!("{:016x}{FILE_SUFFIX}", self.hash())
    }
}

pub(super) fn is_cache_file_name(name: &str) -> bool {
    name.strip_suffix(FILE_SUFFIX)
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A decoded, self-consistent header; whether it is the slot a reader
/// wanted and whether the payload matches it are checked separately.
#[derive(Debug)]
pub(super) struct Header {
    pub(super) slot: Slot,
    pub(super) payload_len: u64,
    pub(super) payload_crc: u32,
    /// Bytes of header before the payload.
    pub(super) len: usize,
}

pub(super) fn encode_header(slot: &Slot, payload: &[u8]) -> io::Result<Vec<u8>> {
    let key = slot.key.as_bytes();
    if key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "key too long to cache",
        ));
    }
    let (kind, start, end) = slot.kind_and_bounds();
    let mut h = Vec::with_capacity(FIXED_HEADER + key.len());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&(key.len() as u32).to_le_bytes());
    h.push(kind);
    h.extend_from_slice(&start.to_le_bytes());
    h.extend_from_slice(&end.to_le_bytes());
    h.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    h.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h);
    crc.update(key);
    h.extend_from_slice(&crc.finalize().to_le_bytes());
    h.extend_from_slice(key);
    Ok(h)
}

pub(super) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub(super) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The key length a fixed header announces, so a scan can read just the
/// header of a file.
pub(super) fn announced_key_len(fixed: &[u8]) -> Result<usize, &'static str> {
    if fixed.len() < FIXED_HEADER || &fixed[..8] != MAGIC {
        return Err("bad magic");
    }
    let key_len = le_u32(&fixed[8..]) as usize;
    if key_len > MAX_KEY_LEN {
        return Err("key length out of bounds");
    }
    Ok(key_len)
}

/// Decodes the header at the start of `buf` (which may also hold the
/// payload), checking its own CRC.
pub(super) fn decode_header(buf: &[u8]) -> Result<Header, &'static str> {
    let key_len = announced_key_len(buf)?;
    let len = FIXED_HEADER + key_len;
    if buf.len() < len {
        return Err("truncated header");
    }
    let kind = buf[12];
    let start = le_u64(&buf[13..]);
    let end = le_u64(&buf[21..]);
    let payload_len = le_u64(&buf[29..]);
    let payload_crc = le_u32(&buf[37..]);
    let header_crc = le_u32(&buf[41..]);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[..41]);
    crc.update(&buf[FIXED_HEADER..len]);
    if crc.finalize() != header_crc {
        return Err("header checksum mismatch");
    }
    let key = std::str::from_utf8(&buf[FIXED_HEADER..len]).map_err(|_| "key is not UTF-8")?;
    let range = match kind {
        0 => None,
        1 if start <= end && end - start == payload_len => Some(start..end),
        1 => return Err("range does not match payload length"),
        _ => return Err("unknown entry kind"),
    };
    Ok(Header {
        slot: Slot::new(key, range),
        payload_len,
        payload_crc,
        len,
    })
}

/// What reading a cache file found.
pub(super) enum Lookup {
    Hit(Bytes),
    /// A valid entry for another (key, range) with the same hash.
    Collision,
    Corrupt(&'static str),
    Failed(io::Error),
}

pub(super) fn read_entry(path: &Path, slot: &Slot) -> Lookup {
    let buf = match fs::read(path) {
        Ok(buf) => buf,
        Err(e) => return Lookup::Failed(e),
    };
    let header = match decode_header(&buf) {
        Ok(h) => h,
        Err(why) => return Lookup::Corrupt(why),
    };
    if header.slot != *slot {
        return Lookup::Collision;
    }
    let payload = &buf[header.len..];
    if payload.len() as u64 != header.payload_len {
        return Lookup::Corrupt("payload length mismatch");
    }
    if crc32fast::hash(payload) != header.payload_crc {
        return Lookup::Corrupt("payload checksum mismatch");
    }
    Lookup::Hit(Bytes::from(buf).slice(header.len..))
}

/// Reads only the header of the cache file at `path` (for the startup scan:
/// payloads are verified when read, not here).
pub(super) fn read_header(path: &Path) -> io::Result<Result<Header, &'static str>> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; FIXED_HEADER];
    match file.read_exact(&mut buf) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Err("truncated header")),
        Err(e) => return Err(e),
    }
    let key_len = match announced_key_len(&buf) {
        Ok(n) => n,
        Err(why) => return Ok(Err(why)),
    };
    buf.resize(FIXED_HEADER + key_len, 0);
    match file.read_exact(&mut buf[FIXED_HEADER..]) {
        Ok(()) => Ok(decode_header(&buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Err("truncated header")),
        Err(e) => Err(e),
    }
}

/// Writes header + payload to a fresh temp file in `dir`, recreating `dir`
/// if someone removed it, and returns the temp file's path.
pub(super) fn write_temp(dir: &Path, header: &[u8], payload: &[u8]) -> io::Result<PathBuf> {
    let tmp = temp_path(dir);
    let open = || OpenOptions::new().write(true).create_new(true).open(&tmp);
    let mut file = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            open()?
        }
        Err(e) => return Err(e),
    };
    let written = file.write_all(header).and_then(|()| file.write_all(payload));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Removes a cache file; one that is already gone is fine.
pub(super) fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Hostile cache files (the cache directory is only as trustworthy as the
/// disk under it): mutated valid entries and random bytes must decode to
/// an error or to exactly the entry that was written, never panic.
/// `REEF_FUZZ_CASES` scales the pass (tests/fuzz_decoders.rs has the rest).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    #[test]
    fn hostile_cache_files_are_refused_without_panic() {
        let cases = std::env::var("REEF_FUZZ_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_000);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("entry.blk");
        let strategy = (
            "[a-z/]{0,40}",
            proptest::option::of((0u64..1 << 40, 0u64..64)),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec((0u8..4, any::<u32>(), any::<u8>()), 0..4),
            proptest::collection::vec(any::<u8>(), 0..96),
        );
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let (inputs, hits) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u64));
        let result = runner.run(&strategy, |(key, range, payload, muts, random)| {
            let range = range.map(|(start, _)| start..start + payload.len() as u64);
            let slot = Slot::new(&key, range);
            let use_random = muts.is_empty() && random.len() % 3 == 0;
            let clean = muts.is_empty() && !use_random;
            let mut file = if use_random {
                random
            } else {
                let mut f = encode_header(&slot, &payload).expect("encode");
                f.extend_from_slice(&payload);
                f
            };
            for (op, at, v) in muts {
                let n = file.len().max(1);
                let at = at as usize % n;
                match op {
                    0 if !file.is_empty() => file[at] ^= v | 1,
                    1 => file.truncate(at),
                    2 if file.len() >= at + 4 => {
                        file[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes())
                    }
                    _ => file.insert(at.min(file.len()), v),
                }
            }
            inputs.set(inputs.get() + 1);
            let _ = decode_header(&file);
            std::fs::write(&path, &file).expect("write cache file");
            let header = read_header(&path).expect("read header");
            prop_assert!(header.is_ok() || !clean, "a clean entry must decode");
            match read_entry(&path, &slot) {
                Lookup::Hit(data) => {
                    hits.set(hits.get() + 1);
                    // A hit is exactly what was cached for this slot.
                    prop_assert_eq!(&data[..], &payload[..]);
                }
                Lookup::Failed(e) => prop_assert!(false, "reading {path:?}: {e}"),
                Lookup::Collision | Lookup::Corrupt(_) => prop_assert!(!clean),
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        eprintln!(
            "fuzz disk-cache entry: {} inputs, {} hits, the rest refused",
            inputs.get(),
            hits.get()
        );
    }
}
