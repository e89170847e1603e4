//! Documents, patches, and the one canonical JSON rendering a document has.
//!
//! The rendering is what the engine stores for a document written or
//! patched through the typed API (a file written through the mount is
//! stored as written): pretty-printed with two-space indent, `"id"` first,
//! attributes in key order, `"vector"` last, and a trailing newline so
//! shell tools see a complete last line.

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{DocId, TypeError, Value};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    pub id: DocId,
    pub attributes: BTreeMap<String, Value>,
    pub vector: Option<Vec<f32>>,
}

/// A partial update: `set` attributes, then remove `unset` ones, and replace
/// the vector when `vector` is given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Patch {
    pub id: DocId,
    pub set: BTreeMap<String, Value>,
    pub unset: Vec<String>,
    pub vector: Option<Vec<f32>>,
}

impl Patch {
    /// The document after this patch.
    pub fn apply_to(&self, mut doc: Document) -> Document {
        for (k, v) in &self.set {
            doc.attributes.insert(k.clone(), v.clone());
        }
        for k in &self.unset {
            doc.attributes.remove(k);
        }
        if let Some(v) = &self.vector {
            doc.vector = Some(v.clone());
        }
        doc
    }
}

impl Document {
    pub fn new(id: impl Into<DocId>) -> Document {
        Document {
            id: id.into(),
            ..Document::default()
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Document {
        self.attributes.insert(key.to_string(), value.into());
        self
    }

    /// The canonical rendering (see the module docs).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let mut ser = serde_json::Serializer::with_formatter(
            &mut out,
            serde_json::ser::PrettyFormatter::with_indent(b"  "),
        );
        // Serializing plain maps, strings and finite numbers into a Vec
        // cannot fail; an error here would be a bug in this module.
        Canonical(self)
            .serialize(&mut ser)
            .expect("canonical rendering of a validated document");
        out.push(b'\n');
        out
    }

    /// Parses a document file's content. `id` is the id the file name gives;
    /// an `"id"` key in the content is optional but must match it. Empty
    /// content (`touch x.json`) is the empty document.
    pub fn from_json_bytes(id: &DocId, bytes: &[u8]) -> Result<Document, TypeError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Document::new(id.clone()));
        }
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| TypeError::InvalidJson(e.to_string()))?;
        Document::from_json_value(Some(id), json)
    }

    /// Builds a document from a JSON object. Without `expected_id` the object
    /// must carry its own string `"id"`.
    pub fn from_json_value(
        expected_id: Option<&DocId>,
        json: serde_json::Value,
    ) -> Result<Document, TypeError> {
        let mut map = match json {
            serde_json::Value::Object(map) => map,
            other => return Err(TypeError::NotAnObject(json_kind(&other))),
        };
        let id = match (map.remove("id"), expected_id) {
            (None, Some(expected)) => expected.clone(),
            (None, None) => return Err(TypeError::EmptyId),
            (Some(serde_json::Value::String(found)), Some(expected)) => {
                if found != expected.as_str() {
                    return Err(TypeError::IdMismatch {
                        expected: expected.clone(),
                        found,
                    });
                }
                expected.clone()
            }
            (Some(serde_json::Value::String(found)), None) => DocId::from(found),
            (Some(_), _) => return Err(TypeError::IdNotString),
        };
        let vector = match map.remove("vector") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|x| x.as_f64().map(|f| f as f32))
                    .collect::<Option<Vec<f32>>>()
                    .ok_or(TypeError::VectorNotNumbers)?,
            ),
            Some(_) => return Err(TypeError::VectorNotNumbers),
        };
        let attributes = map
            .into_iter()
            .map(|(k, v)| Ok((k, Value::from_json(v)?)))
            .collect::<Result<_, TypeError>>()?;
        Ok(Document {
            id,
            attributes,
            vector,
        })
    }
}

/// `json` (a document's content, already valid) with the value of every
/// top-level `"id"` key replaced by `id`, every other byte as it was: what a
/// rename stores under the new name. Content without an `"id"` key comes
/// back unchanged.
pub fn with_id(json: &[u8], id: &DocId) -> Result<Vec<u8>, TypeError> {
    let bad = || TypeError::InvalidJson("not a JSON object".into());
    let mut out = Vec::with_capacity(json.len() + id.as_str().len());
    let mut i = skip_ws(json, 0);
    if i == json.len() {
        return Ok(json.to_vec());
    }
    if json[i] != b'{' {
        return Err(bad());
    }
    let mut copied = 0;
    i += 1;
    loop {
        i = skip_ws(json, i);
        match json.get(i) {
            Some(b'}') => break,
            Some(b'"') => {}
            _ => return Err(bad()),
        }
        let key_end = string_end(json, i).ok_or_else(bad)?;
        let key: String = serde_json::from_slice(&json[i..key_end])
            .map_err(|e| TypeError::InvalidJson(e.to_string()))?;
        i = skip_ws(json, key_end);
        if json.get(i) != Some(&b':') {
            return Err(bad());
        }
        let start = skip_ws(json, i + 1);
        let end = value_end(json, start).ok_or_else(bad)?;
        if key == "id" {
            out.extend_from_slice(&json[copied..start]);
            out.extend_from_slice(
                &serde_json::to_vec(id.as_str())
                    .map_err(|e| TypeError::InvalidJson(e.to_string()))?,
            );
            copied = end;
        }
        i = skip_ws(json, end);
        match json.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => break,
            _ => return Err(bad()),
        }
    }
    out.extend_from_slice(&json[copied..]);
    Ok(out)
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while json.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `json[i] == '"'`.
fn string_end(json: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match json.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// End (exclusive) of the JSON value starting at `i`.
fn value_end(json: &[u8], i: usize) -> Option<usize> {
    match json.get(i)? {
        b'"' => string_end(json, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match json.get(j)? {
                    b'"' => {
                        j = string_end(json, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while json
                .get(j)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
            {
                j += 1;
            }
            Some(j)
        }
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

struct Canonical<'a>(&'a Document);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let doc = self.0;
        let len = 1 + doc.attributes.len() + usize::from(doc.vector.is_some());
        let mut m = s.serialize_map(Some(len))?;
        m.serialize_entry("id", doc.id.as_str())?;
        for (k, v) in &doc.attributes {
            m.serialize_entry(k, v)?;
        }
        if let Some(v) = &doc.vector {
            m.serialize_entry("vector", v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_rendering_round_trips_and_keeps_int_vs_float() {
        let doc = Document::new("a1")
            .with("n", 3i64)
            .with("f", 3.0f64)
            .with("s", "x");
        let json = doc.to_canonical_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.starts_with("{\n  \"id\": \"a1\""), "{text}");
        assert!(text.contains("\"f\": 3.0"), "{text}");
        assert!(text.contains("\"n\": 3,"), "{text}");
        assert!(text.ends_with("}\n"));
        let back = Document::from_json_bytes(&DocId::from("a1"), &json).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn with_id_replaces_only_the_id_value() {
        let to = DocId::from("b\"2");
        let odd = b" {\"x\" : [1, {\"id\": \"in\"}],\n \"\\u0069d\"\t:  \"a\" , \"s\": \"}\"}\n";
        let out = with_id(odd, &to).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            " {\"x\" : [1, {\"id\": \"in\"}],\n \"\\u0069d\"\t:  \"b\\\"2\" , \"s\": \"}\"}\n"
        );
        assert_eq!(Document::from_json_bytes(&to, &out).unwrap().id, to);
        for same in [&b"{\"n\": 1}"[..], b"", b"  {}  "] {
            assert_eq!(with_id(same, &to).unwrap(), same);
        }
        assert_eq!(with_id(br#"{"id":7}"#, &to).unwrap(), br#"{"id":"b\"2"}"#);
    }

    #[test]
    fn empty_content_is_the_empty_document() {
        let d = Document::from_json_bytes(&DocId::from("x"), b"  \n").unwrap();
        assert_eq!(d, Document::new("x"));
    }

    #[test]
    fn bad_content_is_refused_with_a_reason() {
        let id = DocId::from("x");
        assert!(matches!(
            Document::from_json_bytes(&id, b"{nope"),
            Err(TypeError::InvalidJson(_))
        ));
        assert!(matches!(
            Document::from_json_bytes(&id, b"[1,2]"),
            Err(TypeError::NotAnObject(_))
        ));
        assert!(matches!(
            Document::from_json_bytes(&id, br#"{"id":"y"}"#),
            Err(TypeError::IdMismatch { .. })
        ));
        assert!(matches!(
            Document::from_json_bytes(&id, br#"{"vector":[1,"a"]}"#),
            Err(TypeError::VectorNotNumbers)
        ));
        assert!(matches!(
            Document::from_json_bytes(&id, br#"{"big":18446744073709551615}"#),
            Err(TypeError::IntegerOutOfRange(_))
        ));
    }
}
