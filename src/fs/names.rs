//! File names in a namespace directory: which are documents, which are
//! control files, and which are scratch files held only in daemon memory.
//!
//! A document's file name is its id with `/`, `%`, NUL and a leading `.`
//! percent-encoded (`%2F`, `%25`, `%00`, `%2E`), then `.json`. Decoding
//! accepts only that exact (canonical) form, so every id has exactly one
//! name and no two names alias one document.

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
}

impl ControlKind {
    pub const ALL: [ControlKind; 6] = [
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
        }
    }

    /// Operation name, for logs and result text.
    pub fn op_name(self) -> &'static str {
        &self.file_name()[1..]
    }

    fn from_name(name: &str) -> Option<ControlKind> {
        ControlKind::ALL.into_iter().find(|k| k.file_name() == name)
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
    if let Some(kind) = ControlKind::from_name(name) {
        return NameKind::Control(kind);
    }
    let Some(stem) = name.strip_suffix(DOC_SUFFIX) else {
        return NameKind::Scratch;
    };
    match decode_stem(stem) {
        Some(id) if id.len() > max_id_bytes => NameKind::DocTooLong,
        Some(id) => NameKind::Doc(DocId::from(id)),
        None => NameKind::Scratch,
    }
}

/// The file name of the document `id`.
pub fn doc_file_name(id: &DocId) -> String {
    let mut out = encode_id(id.as_str());
    out.push_str(DOC_SUFFIX);
    out
}

fn encode_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 8);
    for (i, ch) in id.char_indices() {
        match ch {
            '/' => out.push_str("%2F"),
            '%' => out.push_str("%25"),
            '\0' => out.push_str("%00"),
            '.' if i == 0 => out.push_str("%2E"),
            c => out.push(c),
        }
    }
    out
}

/// The id a stem encodes, if the stem is the canonical encoding of one.
fn decode_stem(stem: &str) -> Option<String> {
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
                b"2F" => b'/',
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
    let id = String::from_utf8(out).ok()?;
    (encode_id(&id) == stem).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str) -> Option<String> {
        match classify(name, 200) {
            NameKind::Doc(id) => Some(id.into_string()),
            _ => None,
        }
    }

    #[test]
    fn ids_round_trip_through_file_names() {
        for id in ["a1", "a/b", "100%", ".hidden", "x\0y", "a.b", "..", "é"] {
            let name = doc_file_name(&DocId::from(id));
            assert_eq!(doc(&name).as_deref(), Some(id), "{name}");
            assert!(!name.contains('/') && !name.contains('\0'), "{name}");
            assert!(!name.starts_with('.'), "{name}");
        }
        assert_eq!(doc_file_name(&DocId::from("a/b")), "a%2Fb.json");
        assert_eq!(doc_file_name(&DocId::from(".x")), "%2Ex.json");
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
