//! Little-endian binary encoding shared by the WAL and segment formats, and
//! the sealed-object framing every reef object uses:
//!
//! ```text
//! magic (8 bytes) | format version (u32) | body | crc32 (u32) of all preceding bytes
//! ```
//!
//! Readers refuse an object whose magic, version or checksum does not check
//! out, so corruption is always named, never silently decoded.

use bytes::Bytes;

/// Bumped whenever any on-storage layout changes; readers refuse others.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }
    pub fn with_capacity(n: usize) -> Encoder {
        Encoder {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// Appends the crc32 of everything written so far.
    pub fn crc(&mut self) {
        let crc = crc32fast::hash(&self.buf);
        self.u32(crc);
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Why bytes could not be decoded; the caller adds the object key.
pub type DecodeError = String;

/// Reads what `Encoder` wrote. Slices share the underlying `Bytes`, so
/// decoded documents cost no copy.
pub struct Decoder {
    buf: Bytes,
    pos: usize,
}

impl Decoder {
    pub fn new(buf: Bytes) -> Decoder {
        Decoder { buf, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.remaining() < n {
            return Err(format!(
                "truncated: wanted {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A u32 count of items that each take at least `min_item_bytes` of
    /// what follows. A count the remaining input cannot hold is refused
    /// here, before anyone sizes an allocation by it: a corrupt or hostile
    /// count of 4 Gi must cost an error, not 4 Gi entries of memory.
    pub fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_bytes.max(1)) > self.remaining() {
            return Err(format!(
                "count {n} at offset {at} needs at least {} bytes, {} left",
                n.saturating_mul(min_item_bytes.max(1)),
                self.remaining()
            ));
        }
        Ok(n)
    }
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| "string is not UTF-8".to_string())
    }
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(format!("{} trailing bytes", self.remaining()));
        }
        Ok(())
    }
}

/// Frames `body` as a sealed object.
pub fn seal(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut enc = Encoder::with_capacity(body.len() + 16);
    enc.raw(magic);
    enc.u32(FORMAT_VERSION);
    enc.raw(body);
    enc.crc();
    enc.into_vec()
}

/// Checks a sealed object and returns its body.
pub fn unseal(magic: &[u8; 8], data: Bytes) -> Result<Bytes, DecodeError> {
    if data.len() < 16 {
        return Err(format!("too short ({} bytes) to be a reef object", data.len()));
    }
    if &data[..8] != magic {
        return Err(format!(
            "bad magic: expected {:?}",
            String::from_utf8_lossy(magic)
        ));
    }
    let checked = strip_crc(&data)?;
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this reef reads {FORMAT_VERSION}; upgrade reef"
        ));
    }
    Ok(checked.slice(12..))
}

/// Checks the crc32 that ends `data` (over everything before it) and
/// returns what it covers.
pub fn strip_crc(data: &Bytes) -> Result<Bytes, DecodeError> {
    if data.len() < 4 {
        return Err("too short to carry a checksum".to_string());
    }
    let crc_at = data.len() - 4;
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&data[crc_at..]);
    if crc32fast::hash(&data[..crc_at]) != u32::from_le_bytes(stored) {
        return Err("checksum mismatch".to_string());
    }
    Ok(data.slice(..crc_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_objects_refuse_any_flipped_bit() {
        let sealed = seal(b"REEFTEST", b"hello body");
        assert_eq!(
            unseal(b"REEFTEST", Bytes::from(sealed.clone())).unwrap(),
            Bytes::from_static(b"hello body")
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x10;
            assert!(unseal(b"REEFTEST", Bytes::from(bad)).is_err(), "bit at {i}");
        }
        assert!(unseal(b"REEFTEST", Bytes::from_static(b"short")).is_err());
    }
}
