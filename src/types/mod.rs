//! The data model: document ids, values, documents, patches and write
//! batches, their canonical JSON rendering, and the limits that keep bad
//! input out of the write-ahead log.

mod document;
mod value;

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;
use compact_str::CompactString;

pub use document::{with_id, Document, Patch};
pub use value::Value;

/// Keys of a document file that are not attributes.
pub const RESERVED_KEYS: [&str; 2] = ["id", "vector"];

/// A document id: any non-empty UTF-8 string within `Limits::max_id_bytes`.
///
/// Held inline up to 24 bytes (`CompactString`), like most ids: the daemon
/// keeps one per document inode the kernel holds, the memtable and the WAL
/// pipeline one per recent write, so a heap block for each (32 bytes with
/// glibc's header and rounding) would be a fifth of an inode's cost.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DocId(CompactString);

impl DocId {
    pub fn new(id: impl Into<String>) -> DocId {
        DocId(CompactString::from(id.into()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0.into_string()
    }
    /// Whether the id lives in a heap block of its own (longer than 24
    /// bytes), for memory accounting.
    pub fn is_heap_allocated(&self) -> bool {
        self.0.is_heap_allocated()
    }
}

impl From<&str> for DocId {
    fn from(s: &str) -> Self {
        DocId(CompactString::from(s))
    }
}
impl From<String> for DocId {
    fn from(s: String) -> Self {
        DocId(CompactString::from(s))
    }
}
impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// One change inside a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Replace the whole document (create it if missing).
    Upsert(Document),
    /// Change some attributes of an existing document. A patch of a document
    /// that does not exist is a no-op: patches never create documents, so a
    /// patch racing a delete cannot resurrect the deleted document.
    Patch(Patch),
    /// Store `json` as the whole document exactly as given (a file written
    /// through the mount): validated like an upsert (see
    /// [`Limits::check_json`]) but kept byte for byte, so a read returns
    /// those bytes. `mtime` is the document's modification time; `None` is
    /// the time of the write.
    PutJson {
        id: DocId,
        json: Bytes,
        mtime: Option<SystemTime>,
    },
    /// Set the modification time of an existing document, keeping its bytes
    /// (`utimensat`). Like a patch, a no-op for a missing document.
    SetMtime { id: DocId, mtime: SystemTime },
    /// Remove the document; deleting a missing document is a no-op.
    Delete(DocId),
}

impl Op {
    pub fn id(&self) -> &DocId {
        match self {
            Op::Upsert(d) => &d.id,
            Op::Patch(p) => &p.id,
            Op::PutJson { id, .. } | Op::SetMtime { id, .. } | Op::Delete(id) => id,
        }
    }
}

/// Changes applied atomically: all of them become durable and visible
/// together, or none does. Ops apply in order, so a later op on the same id
/// sees the result of an earlier one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub ops: Vec<Op>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn upsert(mut self, doc: Document) -> Self {
        self.ops.push(Op::Upsert(doc));
        self
    }
    pub fn patch(mut self, patch: Patch) -> Self {
        self.ops.push(Op::Patch(patch));
        self
    }
    /// Adds an [`Op::PutJson`].
    pub fn put_json(
        mut self,
        id: impl Into<DocId>,
        json: impl Into<Bytes>,
        mtime: Option<SystemTime>,
    ) -> Self {
        self.ops.push(Op::PutJson {
            id: id.into(),
            json: json.into(),
            mtime,
        });
        self
    }
    /// Adds an [`Op::SetMtime`].
    pub fn set_mtime(mut self, id: impl Into<DocId>, mtime: SystemTime) -> Self {
        self.ops.push(Op::SetMtime {
            id: id.into(),
            mtime,
        });
        self
    }
    pub fn delete(mut self, id: impl Into<DocId>) -> Self {
        self.ops.push(Op::Delete(id.into()));
        self
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Size limits, checked before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest id, in UTF-8 bytes. In the filesystem view `/` in an id
    /// separates directories and each component, percent-encoded (the last
    /// with `.json`), must fit a 255-byte file name.
    pub max_id_bytes: usize,
    /// Largest stored JSON of one document: its canonical rendering, or the
    /// bytes of a [`Op::PutJson`] as given.
    pub max_doc_bytes: usize,
    /// Most vector dimensions.
    pub max_vector_dims: usize,
    /// Most ops in one batch.
    pub max_batch_ops: usize,
    /// Most JSON bytes in one batch: a batch is one WAL object, written and
    /// read back whole.
    pub max_batch_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_id_bytes: 200,
            max_doc_bytes: 4 << 20,
            max_vector_dims: 16_384,
            max_batch_ops: 100_000,
            max_batch_bytes: 256 << 20,
        }
    }
}

impl Limits {
    pub fn check_id(&self, id: &DocId) -> Result<(), TypeError> {
        let s = id.as_str();
        if s.is_empty() {
            return Err(TypeError::EmptyId);
        }
        if s.len() > self.max_id_bytes {
            return Err(TypeError::IdTooLong {
                len: s.len(),
                max: self.max_id_bytes,
            });
        }
        Ok(())
    }

    pub fn check_vector(&self, vector: &[f32]) -> Result<(), TypeError> {
        if vector.is_empty() {
            return Err(TypeError::EmptyVector);
        }
        if vector.len() > self.max_vector_dims {
            return Err(TypeError::VectorTooLong {
                dims: vector.len(),
                max: self.max_vector_dims,
            });
        }
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(TypeError::NonFiniteNumber);
        }
        Ok(())
    }

    pub fn check_attributes(&self, attrs: &BTreeMap<String, Value>) -> Result<(), TypeError> {
        for (key, value) in attrs {
            if RESERVED_KEYS.contains(&key.as_str()) {
                return Err(TypeError::ReservedKey(key.clone()));
            }
            value.check_finite()?;
        }
        Ok(())
    }

    /// Checks a whole document and returns its canonical JSON, which is what
    /// the engine stores; the size limit applies to exactly those bytes.
    pub fn check_document(&self, doc: &Document) -> Result<Vec<u8>, TypeError> {
        self.check_id(&doc.id)?;
        self.check_attributes(&doc.attributes)?;
        if let Some(v) = &doc.vector {
            self.check_vector(v)?;
        }
        let json = doc.to_canonical_json();
        if json.len() > self.max_doc_bytes {
            return Err(TypeError::DocumentTooLarge {
                id: doc.id.clone(),
                len: json.len(),
                max: self.max_doc_bytes,
            });
        }
        Ok(json)
    }

    /// Checks `json`, the content of document `id` as written, with the
    /// rules of [`Document::from_json_bytes`] (an `"id"` key, if present,
    /// must be `id`; empty content is the empty document) and the limits of
    /// [`Limits::check_document`], the size limit applying to `json` itself.
    /// Returns the parsed document.
    pub fn check_json(&self, id: &DocId, json: &[u8]) -> Result<Document, TypeError> {
        self.check_id(id)?;
        if json.len() > self.max_doc_bytes {
            return Err(TypeError::DocumentTooLarge {
                id: id.clone(),
                len: json.len(),
                max: self.max_doc_bytes,
            });
        }
        let doc = Document::from_json_bytes(id, json)?;
        self.check_attributes(&doc.attributes)?;
        if let Some(v) = &doc.vector {
            self.check_vector(v)?;
        }
        Ok(doc)
    }
}

/// Why a document, patch or batch was refused. Nothing was written.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TypeError {
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("a document must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    #[error("document id {found:?} does not match its name {expected:?}; drop the \"id\" key or make it match")]
    IdMismatch { expected: DocId, found: String },
    #[error("\"id\" must be a string")]
    IdNotString,
    #[error("document id is empty")]
    EmptyId,
    #[error("document id is {len} bytes; the limit is {max}")]
    IdTooLong { len: usize, max: usize },
    #[error("document {id} is {len} bytes as JSON; the limit is {max}")]
    DocumentTooLarge { id: DocId, len: usize, max: usize },
    #[error("\"vector\" must be an array of numbers")]
    VectorNotNumbers,
    #[error("\"vector\" is empty; omit it instead")]
    EmptyVector,
    #[error("vector has {dims} dimensions; the limit is {max}")]
    VectorTooLong { dims: usize, max: usize },
    #[error("vector has {found} dimensions but this namespace's vectors have {expected}")]
    VectorDimsMismatch { expected: usize, found: usize },
    #[error("numbers must be finite (JSON has no NaN or infinity)")]
    NonFiniteNumber,
    #[error("integer {0} does not fit in a signed 64-bit integer")]
    IntegerOutOfRange(String),
    #[error("{0:?} is a reserved key, not an attribute")]
    ReservedKey(String),
    #[error("batch has {ops} ops; the limit is {max}")]
    BatchTooLarge { ops: usize, max: usize },
    #[error("batch holds {bytes} bytes of JSON; the limit is {max}; split it")]
    BatchTooManyBytes { bytes: usize, max: usize },
}
