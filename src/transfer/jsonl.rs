//! JSON Lines on both sides: reading one bounded line at a time, finding a
//! line's `"id"`, and rendering a stored document as one line.

use std::io::{self, BufRead};

use serde::Deserialize;

use crate::types::DocId;

/// One line read by [`read_line_bounded`].
pub(super) enum Line {
    /// The line's bytes, line ending removed.
    Text,
    /// The line had more than `max` bytes: only its length was kept.
    TooLong(usize),
}

/// Reads the next line into `buf` (cleared first), keeping at most `max`
/// bytes of it, so one huge line cannot take memory without bound; the rest
/// of a longer line is read and dropped. `None` at the end of the input.
pub(super) fn read_line_bounded(
    reader: &mut (impl BufRead + ?Sized),
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<Line>> {
    buf.clear();
    let mut total = 0usize;
    let mut saw_any = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        saw_any = true;
        let (part, done) = match memchr_newline(chunk) {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        if total + part.len() <= max {
            buf.extend_from_slice(part);
        }
        total += part.len();
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            break;
        }
    }
    if !saw_any {
        return Ok(None);
    }
    if total > max {
        buf.clear();
        return Ok(Some(Line::TooLong(total)));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(Line::Text))
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// Only the `"id"` of an object; every other key is skipped unparsed
/// (serde still checks the syntax of the whole line).
#[derive(Deserialize)]
struct Head {
    id: Option<serde_json::Value>,
}

/// The id a JSON Lines record names, or why the line is refused. The full
/// document checks (`Limits::check_json`) follow.
pub(super) fn line_id(line: &[u8]) -> Result<DocId, String> {
    // serde would read `[..]` as a struct too (fields by position).
    if line.trim_ascii_start().first() != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
            Ok(_) => "a line must be a JSON object with an \"id\"".to_string(),
            Err(e) => format!("invalid JSON: {e}"),
        });
    }
    match serde_json::from_slice::<Head>(line) {
        Ok(Head {
            id: Some(serde_json::Value::String(id)),
        }) => Ok(DocId::from(id)),
        Ok(Head { id: Some(_) }) => Err("\"id\" must be a string".into()),
        Ok(Head { id: None }) => Err("the object has no \"id\" key; each line needs one".into()),
        Err(e) if e.is_data() => Err(format!("a line must be a JSON object with an \"id\": {e}")),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// Whether a stored document's JSON has a top-level `"id"` key.
fn has_id(json: &[u8]) -> bool {
    matches!(serde_json::from_slice::<Head>(json), Ok(Head { id: Some(_) }))
}

/// The stored document `json` of `id` as one JSON Lines record (without
/// the line ending): its bytes, with an `"id"` key inserted first when it
/// has none and line breaks turned into spaces (raw line breaks can only be
/// whitespace between tokens in valid JSON).
pub(super) fn render_line(id: &DocId, json: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let trimmed = json.trim_ascii();
    if trimmed.is_empty() || trimmed == b"{}" {
        out.extend_from_slice(b"{\"id\":");
        push_json_string(id, out);
        out.push(b'}');
    } else if has_id(json) {
        out.extend_from_slice(json);
    } else {
        // Valid stored content is an object: insert after its `{`.
        let brace = json.iter().position(|&b| b == b'{').unwrap_or(0);
        out.extend_from_slice(&json[..=brace.min(json.len().saturating_sub(1))]);
        out.extend_from_slice(b"\"id\":");
        push_json_string(id, out);
        out.push(b',');
        out.extend_from_slice(&json[brace + 1..]);
    }
    for b in &mut out[start..] {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
}

fn push_json_string(id: &DocId, out: &mut Vec<u8>) {
    // Serializing a str cannot fail.
    if let Ok(text) = serde_json::to_vec(id.as_str()) {
        out.extend_from_slice(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_and_ids_found() {
        let input = b"{\"id\":\"a\"}\r\n0123456789\n\nlast";
        let mut r = &input[..];
        let mut buf = Vec::new();
        // A line one byte over the bound: only its length is kept.
        assert!(matches!(
            read_line_bounded(&mut r, &mut buf, 10),
            Ok(Some(Line::TooLong(11)))
        ));
        assert!(buf.is_empty());
        let mut r = &input[..];
        assert!(matches!(
            read_line_bounded(&mut r, &mut buf, 100),
            Ok(Some(Line::Text))
        ));
        assert_eq!(buf, b"{\"id\":\"a\"}");
        assert!(matches!(
            read_line_bounded(&mut r, &mut buf, 5),
            Ok(Some(Line::TooLong(10)))
        ));
        assert!(matches!(
            read_line_bounded(&mut r, &mut buf, 5),
            Ok(Some(Line::Text))
        ));
        assert!(buf.is_empty());
        assert!(matches!(
            read_line_bounded(&mut r, &mut buf, 5),
            Ok(Some(Line::Text))
        ));
        assert_eq!(buf, b"last");
        assert!(matches!(read_line_bounded(&mut r, &mut buf, 5), Ok(None)));

        assert_eq!(line_id(br#"{"x":1,"id":"a/b"}"#), Ok(DocId::from("a/b")));
        assert!(line_id(br#"{"id":3}"#).is_err());
        assert!(line_id(br#"[1]"#).unwrap_err().contains("object"));
        assert!(line_id(br#"{"id":"#).unwrap_err().contains("invalid JSON"));
        assert!(line_id(br#"{"x":1}"#).unwrap_err().contains("no \"id\""));
    }

    #[test]
    fn rendered_lines_are_single_line_objects_with_the_id() {
        let id = DocId::from("a");
        for (json, want) in [
            (&b""[..], &br#"{"id":"a"}"#[..]),
            (b"{}", br#"{"id":"a"}"#),
            (b"{\n  \"x\": 1\n}\n", b"{\"id\":\"a\",   \"x\": 1 } "),
            (br#"{"id":"a","x":1}"#, br#"{"id":"a","x":1}"#),
        ] {
            let mut out = Vec::new();
            render_line(&id, json, &mut out);
            assert_eq!(out, want, "{}", String::from_utf8_lossy(json));
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["id"], "a");
        }
    }
}
