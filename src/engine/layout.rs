//! Object keys of a namespace (DESIGN.md §3):
//!
//! ```text
//! <ns>/checkpoints/<name>
//! <ns>/manifest/<version, 20 digits>
//! <ns>/quarantine/<when>/<original key below ns>
//! <ns>/segments/<wal_hi, 20 digits>-<random>
//! <ns>/wal/<sequence, 20 digits>
//! ```
//!
//! Everything else sorts before `wal/`, so a namespace's last key is its
//! newest WAL object. Numbers are zero-padded so key order is numeric order.

use super::{EngineError, EngineResult};

pub fn checkpoint_dir(ns: &str) -> String {
    format!("{ns}/checkpoints/")
}
pub fn checkpoint_key(ns: &str, name: &str) -> String {
    format!("{ns}/checkpoints/{name}")
}
pub fn manifest_dir(ns: &str) -> String {
    format!("{ns}/manifest/")
}
pub fn manifest_key(ns: &str, version: u64) -> String {
    format!("{ns}/manifest/{version:020}")
}
pub fn segment_dir(ns: &str) -> String {
    format!("{ns}/segments/")
}
pub fn segment_key(ns: &str, segment_id: &str) -> String {
    format!("{ns}/segments/{segment_id}")
}
pub fn wal_dir(ns: &str) -> String {
    format!("{ns}/wal/")
}
pub fn wal_key(ns: &str, seq: u64) -> String {
    format!("{ns}/wal/{seq:020}")
}
pub fn quarantine_key(ns: &str, stamp: &str, original: &str) -> String {
    let rel = original.strip_prefix(&format!("{ns}/")).unwrap_or(original);
    format!("{ns}/quarantine/{stamp}/{rel}")
}

/// The number at the end of a manifest or WAL key, if it is one of ours.
pub fn parse_numbered(dir: &str, key: &str) -> Option<u64> {
    let tail = key.strip_prefix(dir)?;
    if tail.len() != 20 || !tail.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tail.parse().ok()
}

/// A fresh segment id: ordered by the WAL position it covers, unique even
/// when a failed flush is retried over the same range.
pub fn new_segment_id(wal_hi: u64, kind: char) -> String {
    format!("{wal_hi:020}-{kind}{:016x}", random_u64())
}

pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Namespaces are directory names in the filesystem view and key prefixes
/// in the store, so they must be safe as both.
pub fn check_namespace(ns: &str) -> EngineResult<()> {
    let bad = |why| Err(EngineError::BadNamespace(ns.to_string(), why));
    if ns.is_empty() {
        return bad("it is empty");
    }
    if ns.len() > 200 {
        return bad("it is longer than 200 bytes");
    }
    if ns.starts_with('.') {
        return bad("it starts with '.'");
    }
    if ns.contains(['/', '\0', '\\']) {
        return bad("it contains '/', '\\' or NUL");
    }
    if ns.chars().any(char::is_control) {
        return bad("it contains control characters");
    }
    Ok(())
}
