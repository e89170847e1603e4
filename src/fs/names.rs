//! File names in a namespace: which are documents, which are control files,
//! which may be subdirectories, and which are scratch files held only in
//! daemon memory.
//!
//! `/` in an id separates directories: id `2026/12/a1` is the file
//! `2026/12/a1.json`. Each component of the path is percent-encoded where
//! it could not be a file name or would be ambiguous: `%` is `%25`, NUL is
//! `%00`, a leading `.` is `%2E` (so `.`, `..` and hidden names never
//! appear), and an empty component is the name `%`. A directory component
//! ending in `.json` has that dot encoded (`x%2Ejson`), so no directory
//! looks like a document. Decoding accepts only that exact (canonical)
//! form, so every id has exactly one path and no two paths alias one
//! document.

use compact_str::CompactString;

use crate::types::DocId;

/// Suffix of every document file.
pub const DOC_SUFFIX: &str = ".json";

/// The control files present in every namespace directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlKind {
    Flush,
    Compact,
    Verify,
    Repair,
    Stats,
    Gc,
    /// `.changes`: the change feed (see `changes`).
    Changes,
}

impl ControlKind {
    pub const ALL: [ControlKind; 7] = [
        ControlKind::Changes,
        ControlKind::Compact,
        ControlKind::Flush,
        ControlKind::Gc,
        ControlKind::Repair,
        ControlKind::Stats,
        ControlKind::Verify,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            ControlKind::Flush => ".flush",
            ControlKind::Compact => ".compact",
            ControlKind::Verify => ".verify",
            ControlKind::Repair => ".repair",
            ControlKind::Stats => ".stats",
            ControlKind::Gc => ".gc",
            ControlKind::Changes => ".changes",
        }
    }

    /// Operation name, for logs and result text.
    pub fn op_name(self) -> &'static str {
        &self.file_name()[1..]
    }

    fn from_name(name: &str) -> Option<ControlKind> {
        ControlKind::ALL.into_iter().find(|k| k.file_name() == name)
    }

    /// A report generated when read (`.verify`, `.stats`): its size is that
    /// of its latest rendering (see `FsCore::report`).
    pub fn is_report(self) -> bool {
        matches!(self, ControlKind::Verify | ControlKind::Stats)
    }

    /// Writing (then closing) the file runs the operation.
    pub fn is_action(self) -> bool {
        matches!(
            self,
            ControlKind::Flush | ControlKind::Compact | ControlKind::Repair | ControlKind::Gc
        )
    }
}

/// What a name in a namespace directory denotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameKind {
    Doc(DocId),
    Control(ControlKind),
    /// Any other name: editor swap files, `sedXXXXXX`, rsync temporaries.
    Scratch,
    /// Looks like a document, but its id is longer than the id limit.
    DocTooLong,
}

/// Classifies `name` (one path component) for a namespace directory.
pub fn classify(name: &str, max_id_bytes: usize) -> NameKind {
    classify_in(name, "", true, max_id_bytes)
}

/// Classifies `name` in the directory whose ids start with `prefix` (`""`
/// at the namespace's top, else ending in `/`); control files exist only at
/// the top (`at_top`). A document's id is the whole id, prefix included.
pub fn classify_in(name: &str, prefix: &str, at_top: bool, max_id_bytes: usize) -> NameKind {
    if let Some(kind) = ControlKind::from_name(name).filter(|_| at_top) {
        return NameKind::Control(kind);
    }
    let Some(stem) = name.strip_suffix(DOC_SUFFIX) else {
        return NameKind::Scratch;
    };
    match decode_component(stem) {
        // An id is never empty: `%.json` at the top is just a name.
        Some(rel) if prefix.is_empty() && rel.is_empty() => NameKind::Scratch,
        Some(rel) if prefix.len() + rel.len() > max_id_bytes => NameKind::DocTooLong,
        Some(rel) => NameKind::Doc(DocId::from(format!("{prefix}{rel}"))),
        None => NameKind::Scratch,
    }
}

/// The path of document `id` below its namespace: its directories and file
/// name, each component encoded (see the module docs).
pub fn doc_file_name(id: &DocId) -> String {
    let mut parts: Vec<&str> = id.as_str().split('/').collect();
    let file = parts.pop().unwrap_or_default();
    let mut out = String::with_capacity(id.as_str().len() + 8);
    for dir in parts {
        out.push_str(&dir_name(dir));
        out.push('/');
    }
    out.push_str(&encode_component(file));
    out.push_str(DOC_SUFFIX);
    out
}

/// The file name of the last component of `id` (its name in its directory).
/// Compact, so a listing holds the usual short name without an allocation.
pub(crate) fn leaf_file_name(id: &DocId) -> CompactString {
    let leaf = id.as_str().rsplit('/').next().unwrap_or_default();
    let mut out = encode_component(leaf);
    out.push_str(DOC_SUFFIX);
    out
}

/// The directory name of id component `comp`.
pub(crate) fn dir_name(comp: &str) -> CompactString {
    let mut out = encode_component(comp);
    if out.ends_with(DOC_SUFFIX) {
        let cut = out.len() - DOC_SUFFIX.len();
        out.replace_range(cut..cut + 1, "%2E");
    }
    out
}

/// The id component a directory name stands for, if it is the canonical
/// name of one.
pub(crate) fn decode_dir(name: &str) -> Option<String> {
    let comp = decode_any(name)?;
    (dir_name(&comp) == name).then_some(comp)
}

fn encode_component(comp: &str) -> CompactString {
    if comp.is_empty() {
        return CompactString::const_new("%");
    }
    // Most components need no code: one copy, not a push per character
    // (a listing encodes every name it sends). Inline up to 24 bytes.
    let plain = !comp.starts_with('.') && !comp.bytes().any(|b| b == b'%' || b == 0);
    let mut out = CompactString::with_capacity(comp.len() + DOC_SUFFIX.len());
    if plain {
        out.push_str(comp);
        return out;
    }
    for (i, ch) in comp.char_indices() {
        match ch {
            '%' => out.push_str("%25"),
            '\0' => out.push_str("%00"),
            '.' if i == 0 => out.push_str("%2E"),
            c => out.push(c),
        }
    }
    out
}

/// The id component a file stem encodes, if the stem is the canonical
/// encoding of one.
fn decode_component(stem: &str) -> Option<String> {
    let comp = decode_any(stem)?;
    (encode_component(&comp) == stem).then_some(comp)
}

/// Undoes the percent codes of a name (canonical or not).
fn decode_any(stem: &str) -> Option<String> {
    if stem == "%" {
        return Some(String::new());
    }
    if stem.is_empty() {
        return None;
    }
    let bytes = stem.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let code = bytes.get(i + 1..i + 3)?;
            out.push(match code {
                b"25" => b'%',
                b"00" => 0,
                b"2E" => b'.',
                _ => return None,
            });
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id a path (`dir/dir/file.json`) stands for.
    fn id_of_path(path: &str) -> Option<String> {
        let mut parts: Vec<&str> = path.split('/').collect();
        let file = parts.pop()?;
        let mut prefix = String::new();
        for dir in parts {
            prefix.push_str(&decode_dir(dir)?);
            prefix.push('/');
        }
        match classify_in(file, &prefix, prefix.is_empty(), 200) {
            NameKind::Doc(id) => Some(id.into_string()),
            _ => None,
        }
    }

    #[test]
    fn ids_round_trip_through_paths() {
        for id in [
            "a1",
            "a/b",
            "100%",
            ".hidden",
            "x\0y",
            "a.b",
            "..",
            "é",
            "2026/12/a1",
            "a//b",
            "/a",
            "a/",
            "./..",
            "x.json/y",
            "%2F",
            ".flush",
        ] {
            let path = doc_file_name(&DocId::from(id));
            assert_eq!(id_of_path(&path).as_deref(), Some(id), "{path}");
            for part in path.split('/') {
                assert!(
                    !part.is_empty() && !part.starts_with('.') && !part.contains('\0'),
                    "{path}"
                );
            }
        }
        assert_eq!(doc_file_name(&DocId::from("a/b")), "a/b.json");
        assert_eq!(doc_file_name(&DocId::from(".x")), "%2Ex.json");
        assert_eq!(doc_file_name(&DocId::from("a//b")), "a/%/b.json");
        assert_eq!(doc_file_name(&DocId::from("x.json/y")), "x%2Ejson/y.json");
        assert_eq!(leaf_file_name(&DocId::from("a/b/c")), "c.json");
        // Non-canonical directory names are not directories.
        for name in ["a%2Fb", ".git", "x.json", "a%41", ""] {
            assert_eq!(decode_dir(name), None, "{name}");
        }
        // Control names are documents' neighbours only at the top.
        assert_eq!(classify_in(".flush", "a/", false, 200), NameKind::Scratch);
    }

    #[test]
    fn editor_and_tool_temporaries_are_scratch() {
        for name in [
            "4913",
            ".x.swp",
            "x.json~",
            "sedAbC123",
            ".x.json.AbCdEf",
            ".json",
            "x.JSON",
            "a%41.json",
            "a%2f.json",
            "a%2Fb.json",
            "x%2E.json",
            "%.json",
        ] {
            assert_eq!(classify(name, 200), NameKind::Scratch, "{name}");
        }
    }

    #[test]
    fn control_files_and_long_ids() {
        assert_eq!(classify(".flush", 200), NameKind::Control(ControlKind::Flush));
        assert_eq!(classify("abcd.json", 3), NameKind::DocTooLong);
    }
}
