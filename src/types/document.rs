//! Documents, patches, and the one canonical JSON rendering a document has.
//!
//! The rendering is what the engine stores and what `cat` shows, so its
//! length is a file's exact `st_size`: pretty-printed with two-space indent,
//! `"id"` first, attributes in key order, `"vector"` last, and a trailing
//! newline so shell tools see a complete last line.

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
