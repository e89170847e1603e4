//! The one definition of a valid object key, shared by the stores that map
//! keys onto something with rules of its own (a directory tree, an
//! `object_store::path::Path`), so every backend rejects the same keys
//! instead of silently normalising them differently.

use super::{StoreError, StoreResult};

/// Checks that `key` is `/`-separated, non-empty segments without `.`/`..`
/// or control characters. `object_store` would quietly strip a leading `/`
/// and a local directory tree would resolve `..`, so both are refused here.
pub fn validate_key(key: &str) -> StoreResult<()> {
    let bad = || Err(StoreError::BadKey(key.to_string()));
    if key.is_empty() {
        return bad();
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return bad();
        }
        if segment.chars().any(|c| c.is_ascii_control()) {
            return bad();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_key;

    #[test]
    fn accepts_reef_layout_keys() {
        for key in [
            "ns/wal/00000000000000000001",
            "ns/manifest/00000000000000000002",
            "p/ns/segments/abc-1.seg",
            "x",
            "a b/ü.json",
        ] {
            assert!(validate_key(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn rejects_paths_that_backends_would_rewrite() {
        for key in [
            "", "/x", "x/", "a//b", "../x", "a/../b", "./a", "a/.", "a\0b", "a\nb",
        ] {
            assert!(validate_key(key).is_err(), "{key:?}");
        }
    }
}
