//! Hostile bytes for every decoder: WAL records, segment footers, indexes,
//! blocks and whole segments, manifests (each through the sealed-object
//! framing, `codec::unseal`), document JSON and file names.
//!
//! Inputs are valid encodings (built here, and the files of
//! `tests/corpus/<target>/`, which also keeps every input that once broke
//! a decoder) mutated by proptest — bit flips, byte and integer overwrites
//! with boundary values (0, u32::MAX, 2^63, …), insertions, deletions,
//! truncations, duplications — and plain random bytes. A mutation is
//! applied either to the raw object or to its body with the checksums
//! recomputed afterwards, so the parsers behind the CRC checks are reached
//! too (a CRC guards against rot, not against crafted input).
//!
//! Every decode must return (a typed error or a value), never panic, and
//! allocate in proportion to its input: a counting global allocator checks
//! the largest single allocation and the total allocated during each decode
//! (a length prefix of 4 GiB must not allocate 4 GiB).
//!
//! `REEF_FUZZ_CASES` (default 20,000) sets the cases per target;
//! `scripts/fuzz.sh` runs a long pass. Each target prints its input count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reef::engine::segment::{
    decode_all, decode_block, decode_footer, SegmentBuilder, SegmentIndex, FOOTER_LEN,
};
use reef::engine::wal::{WalKind, WalOp, WalRecord};
use reef::engine::Checkpoint;
use reef::engine::{Manifest, SegmentMeta};
use reef::fs::{classify, classify_in, doc_file_name, NameKind};
use reef::types::{DocId, Document, Limits};

// ---------------------------------------------------------------------------
// Allocation accounting

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: the allocator may run while thread-locals are torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            LARGEST.with(|l| l.set(l.get().max(size)));
            TOTAL.with(|t| t.set(t.get() + size));
        }
    });
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `decode` on `input`, then checks what it allocated: at most
/// `SLACK` plus a small multiple of the input (decoded values are larger
/// than their encoding: a 5-byte op becomes a 56-byte tuple).
fn bounded<T>(what: &str, input: &[u8], decode: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    const SLACK: usize = 64 << 10;
    LARGEST.with(|l| l.set(0));
    TOTAL.with(|t| t.set(0));
    ARMED.with(|a| a.set(true));
    let out = decode();
    ARMED.with(|a| a.set(false));
    let (largest, total) = (LARGEST.with(Cell::get), TOTAL.with(Cell::get));
    let n = input.len();
    prop_assert!(
        largest <= SLACK + 32 * n,
        "{what}: one allocation of {largest} bytes for a {n}-byte input"
    );
    prop_assert!(
        total <= SLACK + 512 * n,
        "{what}: {total} bytes allocated for a {n}-byte input"
    );
    Ok(out)
}

// ---------------------------------------------------------------------------
// Mutation

/// (operation, position, argument, byte)
type Mutation = (u8, u32, u32, u8);

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec((0u8..8, any::<u32>(), any::<u32>(), any::<u8>()), 1..6)
}

const U32S: [u32; 7] = [0, 1, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 0x1_0000 - 1];
const U64S: [u64; 6] = [0, 1, 1 << 32, 1 << 63, u64::MAX, u64::MAX - 27];

fn mutate(buf: &mut Vec<u8>, muts: &[Mutation]) {
    for &(op, a, b, v) in muts {
        let len = buf.len();
        let at = |n: usize| if n == 0 { 0 } else { a as usize % n };
        match op {
            0 if len > 0 => buf[at(len)] ^= 1 << (b % 8),
            1 if len > 0 => buf[at(len)] = v,
            2 => {
                let pos = at(len + 1);
                let n = b as usize % 16 + 1;
                buf.splice(pos..pos, std::iter::repeat_n(v, n));
            }
            3 if len > 0 => {
                let pos = at(len);
                let end = (pos + b as usize % 32 + 1).min(len);
                buf.drain(pos..end);
            }
            4 => buf.truncate(at(len + 1)),
            5 if len >= 4 => {
                let pos = at(len - 3);
                let x = if v % 8 == 7 {
                    b
                } else {
                    U32S[v as usize % U32S.len()]
                };
                buf[pos..pos + 4].copy_from_slice(&x.to_le_bytes());
            }
            6 if len >= 8 => {
                let pos = at(len - 7);
                let x = if v % 7 == 6 {
                    u64::from(b)
                } else {
                    U64S[v as usize % U64S.len()]
                };
                buf[pos..pos + 8].copy_from_slice(&x.to_le_bytes());
            }
            7 if len > 0 => {
                let pos = at(len);
                let end = (pos + b as usize % 64 + 1).min(len);
                let piece = buf[pos..end].to_vec();
                let to = v as usize % (len + 1);
                buf.splice(to..to, piece);
            }
            _ => {}
        }
    }
}

fn crc(b: &[u8]) -> [u8; 4] {
    crc32fast::hash(b).to_le_bytes()
}

/// Re-frames a sealed object: its 12-byte header (magic, version) from
/// `like`, `body`, and a correct checksum.
fn reseal(like: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = like[..12.min(like.len())].to_vec();
    out.extend_from_slice(body);
    let c = crc(&out);
    out.extend_from_slice(&c);
    out
}

/// The body of a sealed object (between header and checksum).
fn body_of(sealed: &[u8]) -> Vec<u8> {
    sealed
        .get(12..sealed.len().saturating_sub(4))
        .unwrap_or_default()
        .to_vec()
}

/// Input shapes: `raw` mutates the object's bytes; `body` mutates inside
/// the framing and recomputes checksums; `random` ignores the seed.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Raw,
    Body,
    Random,
}

/// One fuzz input from a sealed seed: mutated as raw bytes, mutated inside
/// a valid seal (so the checksum passes and the body parser is reached), or
/// random bytes.
fn sealed_input(seed: &[u8], shape: Shape, muts: &[Mutation], random: Vec<u8>) -> Vec<u8> {
    match shape {
        Shape::Raw => {
            let mut b = seed.to_vec();
            mutate(&mut b, muts);
            b
        }
        Shape::Body => {
            let mut body = body_of(seed);
            mutate(&mut body, muts);
            reseal(seed, &body)
        }
        Shape::Random => random,
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![2 => Just(Shape::Raw), 5 => Just(Shape::Body), 1 => Just(Shape::Random)]
}

fn cases() -> u32 {
    std::env::var("REEF_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    })
}

fn corpus_named(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            (name.unwrap_or_default(), std::fs::read(p).expect("corpus file"))
        })
        .collect()
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    corpus_named(target).into_iter().map(|(_, d)| d).collect()
}

/// Runs `test` on `cases()` inputs drawn from `strategy` (panicking with
/// the shrunk input that failed), then reports how many of the target's
/// inputs `decoded` counted as decoded.
fn fuzz<S: Strategy>(
    target: &str,
    corpus: usize,
    strategy: &S,
    decoded: &Cell<usize>,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    if let Err(e) = runner().run(strategy, test) {
        panic!("{e}");
    }
    report(target, corpus, cases(), decoded.get());
}

fn report(target: &str, corpus: usize, cases: u32, ok: usize) {
    eprintln!(
        "fuzz {target}: {} inputs ({corpus} corpus files, {cases} mutated/random cases; {ok} \
         decoded, the rest refused with an error)",
        corpus as u32 + cases
    );
}

// ---------------------------------------------------------------------------
// Seeds

fn wal_seeds() -> Vec<(Vec<u8>, u64)> {
    let mut seeds = Vec::new();
    for (seq, ops) in [(1u64, 0usize), (7, 1), (42, 5), (1 << 40, 30)] {
        let rec = WalRecord {
            writer_id: format!("writer-{seq}"),
            seq,
            mtime_ms: 1_700_000_000_000 + seq,
            kind: if ops == 0 {
                WalKind::Fence
            } else {
                WalKind::Batch
            },
            vector_dims: (ops % 2 == 1).then_some(3),
            ops: (0..ops)
                .map(|i| {
                    let id = DocId::from(format!("dir/doc{i}"));
                    let json = (i % 4 != 3).then(|| Bytes::from(format!(r#"{{"n":{i},"s":"x"}}"#)));
                    WalOp {
                        id,
                        json,
                        mtime: 1_700_000_000_000 + i as u64,
                    }
                })
                .collect(),
        };
        seeds.push((rec.encode().to_vec(), seq));
    }
    for data in corpus("wal") {
        // A corpus file's sequence is whatever it holds (or 1).
        let seq = data
            .get(16..24)
            .map_or(1, |b| u64::from_le_bytes(b.try_into().unwrap()));
        seeds.push((data, seq));
    }
    seeds
}

fn segment_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (n, block) in [(1u64, 4096), (40, 256), (300, 1024)] {
        let mut b = SegmentBuilder::new(block);
        for i in 0..n {
            let id = DocId::from(format!("doc{i:05}"));
            let json = (i % 5 != 4).then(|| Bytes::from(format!(r#"{{"n":{i}}}"#)));
            b.add(&id, i + 1, 1000 + i, json.as_ref());
        }
        let (bytes, _, _) = b.finish(format!("seg-{n}"), (1, n), vec!["old-a".into()], Some(2));
        seeds.push(bytes.to_vec());
    }
    seeds.extend(corpus("segment"));
    seeds
}

fn sample_meta(i: u64) -> SegmentMeta {
    SegmentMeta {
        id: format!("seg-{i}"),
        size: 1000 + i,
        index_offset: 900 + i,
        index_len: 72,
        wal_lo: i,
        wal_hi: i + 10,
        doc_count: 12,
        tombstones: 1,
        min_id: "a".into(),
        max_id: "z".into(),
        replaces: vec![],
    }
}

fn manifest_seeds() -> Vec<(Vec<u8>, u64)> {
    let mut seeds = Vec::new();
    for n in [0u64, 1, 4] {
        let m = Manifest {
            version: n + 1,
            writer_id: format!("w{n}"),
            flushed_through: n * 10,
            segments: (0..n).map(sample_meta).collect(),
            vector_dims: (n == 1).then_some(8),
            created_ms: 1_700_000_000_000,
            claim: Some(n == 0),
            claims: vec![1],
            ..Manifest::default()
        };
        seeds.push((m.encode().to_vec(), n + 1));
    }
    for data in corpus("manifest") {
        let version = body_version(&data).unwrap_or(1);
        seeds.push((data, version));
    }
    seeds
}

/// The `"version"` a manifest's JSON body names, so a corpus file is
/// decoded at its own version.
fn body_version(sealed: &[u8]) -> Option<u64> {
    if sealed.len() < 16 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body_of(sealed)).ok()?;
    v.get("version")?.as_u64()
}

// ---------------------------------------------------------------------------
// Targets

#[test]
fn wal_records() {
    let seeds = wal_seeds();
    let corpus_n = corpus("wal").len();
    let ok = Cell::new(0);
    for (data, seq) in &seeds {
        let _ = WalRecord::decode(Bytes::from(data.clone()), *seq);
    }
    let strategy = (
        0..seeds.len(),
        shape(),
        mutations(),
        proptest::collection::vec(any::<u8>(), 0..256),
    );
    fuzz("wal", corpus_n, &strategy, &ok, |(i, shape, muts, random)| {
        let (seed, seq) = &seeds[i];
        let input = sealed_input(seed, shape, &muts, random);
        let decoded = bounded("wal", &input, || {
            WalRecord::decode(Bytes::from(input.clone()), *seq)
        })?;
        if let Ok(rec) = decoded {
            ok.set(ok.get() + 1);
            // What decodes re-encodes to a record that decodes the same. (An
            // op stamped with its group's own time has two encodings, tag 1
            // and tag 3; both mean the same op, so that alias is harmless.)
            let again = WalRecord::decode(rec.encode(), *seq);
            prop_assert_eq!(again.as_ref().ok(), Some(&rec));
        }
        Ok(())
    });
}

/// Rewrites `seg` with its index body replaced by `body` (footer fixed).
fn with_index_body(seg: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let (off, len) = decode_footer(&seg[seg.len() - FOOTER_LEN as usize..]).ok()?;
    let index = &seg[off as usize..(off + len) as usize];
    let new_index = reseal(index, body);
    let mut out = seg[..off as usize].to_vec();
    out.extend_from_slice(&new_index);
    let mut footer = Vec::with_capacity(28);
    footer.extend_from_slice(&off.to_le_bytes());
    footer.extend_from_slice(&(new_index.len() as u32).to_le_bytes());
    let version = &seg[seg.len() - 16..seg.len() - 12];
    footer.extend_from_slice(version);
    let c = crc(&footer);
    footer.extend_from_slice(&c);
    footer.extend_from_slice(&seg[seg.len() - 8..]);
    out.extend_from_slice(&footer);
    Some(out)
}

/// Rewrites block `which` of `seg` with `body` and a correct block checksum
/// (the index is left alone: a length change must be caught).
fn with_block_body(seg: &[u8], which: usize, muts: &[Mutation]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (index, _) = decode_all(&Bytes::from(seg.to_vec())).ok()?;
    let h = index.blocks.get(which % index.blocks.len().max(1))?;
    let (start, end) = (h.offset as usize, (h.offset + u64::from(h.len)) as usize);
    let mut body = seg[start..end - 4].to_vec();
    mutate(&mut body, muts);
    let c = crc(&body);
    body.extend_from_slice(&c);
    let mut out = seg[..start].to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&seg[end..]);
    Some((out, body))
}

#[derive(Debug, Clone, Copy)]
enum SegShape {
    Raw,
    Footer,
    Index,
    Block,
    Random,
}

#[test]
fn segments_footers_indexes_and_blocks() {
    let seeds = segment_seeds();
    let corpus_n = corpus("segment").len();
    let ok = Cell::new(0);
    for seed in &seeds {
        let _ = decode_all(&Bytes::from(seed.clone()));
    }
    let shape = prop_oneof![
        1 => Just(SegShape::Raw),
        1 => Just(SegShape::Footer),
        3 => Just(SegShape::Index),
        3 => Just(SegShape::Block),
        1 => Just(SegShape::Random),
    ];
    let strategy = (
        0..seeds.len(),
        shape,
        mutations(),
        any::<usize>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    );
    // The structured shapes start from a segment that decodes.
    let valid: Vec<usize> = (0..seeds.len())
        .filter(|&i| decode_all(&Bytes::from(seeds[i].clone())).is_ok())
        .collect();
    fuzz(
        "segment (footer, index, block, whole)",
        corpus_n,
        &strategy,
        &ok,
        |(i, shape, muts, which, random)| {
            let seed = match shape {
                SegShape::Raw | SegShape::Random => &seeds[i],
                _ => &seeds[valid[i % valid.len()]],
            };
            let (whole, part) = match shape {
                SegShape::Raw => {
                    let mut b = seed.clone();
                    mutate(&mut b, &muts);
                    (b, None)
                }
                SegShape::Footer => {
                    let n = seed.len() - FOOTER_LEN as usize;
                    let mut footer = seed[n..].to_vec();
                    mutate(&mut footer, &muts);
                    if footer.len() >= 20 {
                        let c = crc(&footer[..16]);
                        footer[16..20].copy_from_slice(&c);
                    }
                    let mut b = seed[..n].to_vec();
                    b.extend_from_slice(&footer);
                    (b, Some(footer))
                }
                SegShape::Index => {
                    let (off, len) = decode_footer(&seed[seed.len() - 28..]).expect("seed footer");
                    let mut body = body_of(&seed[off as usize..(off + len) as usize]);
                    mutate(&mut body, &muts);
                    let b = with_index_body(seed, &body).expect("seed index");
                    let index = reseal(&seed[off as usize..], &body);
                    (b, Some(index))
                }
                SegShape::Block => match with_block_body(seed, which, &muts) {
                    Some((b, block)) => (b, Some(block)),
                    None => (seed.clone(), None),
                },
                SegShape::Random => (random, None),
            };
            if let Some(part) = &part {
                let p = Bytes::from(part.clone());
                match shape {
                    SegShape::Footer => {
                        let _ = bounded("footer", part, || decode_footer(part))?;
                    }
                    SegShape::Index => {
                        if let Ok(index) =
                            bounded("index", part, || SegmentIndex::decode(p.clone()))?
                        {
                            // Handles that decode can be read without overflow.
                            for h in &index.blocks {
                                prop_assert!(h.offset.checked_add(u64::from(h.len)).is_some());
                            }
                        }
                    }
                    _ => {
                        let _ = bounded("block", part, || decode_block(p.clone()))?;
                    }
                }
            }
            // A segment is read whole by compaction and verify, and may be large:
            // allocations are bounded relative to it.
            if bounded("segment", &whole, || decode_all(&Bytes::from(whole.clone())))?.is_ok() {
                ok.set(ok.get() + 1);
            }
            Ok(())
        },
    );
}

#[test]
fn manifests() {
    let seeds = manifest_seeds();
    let corpus_n = corpus("manifest").len();
    let ok = Cell::new(0);
    let u64s = prop_oneof![any::<u64>(), (0usize..U64S.len()).prop_map(|i| U64S[i])];
    let meta = (u64s.clone(), u64s.clone(), u64s).prop_map(|(size, off, len)| SegmentMeta {
        size,
        index_offset: off,
        index_len: len,
        ..sample_meta(1)
    });
    let strategy = (
        0..seeds.len(),
        shape(),
        mutations(),
        proptest::collection::vec(any::<u8>(), 0..256),
        proptest::option::of(meta),
    );
    fuzz(
        "manifest",
        corpus_n,
        &strategy,
        &ok,
        |(i, shape, muts, random, meta)| {
            let (seed, version) = &seeds[i];
            let input = match (meta, shape) {
                // Structurally valid JSON with hostile numbers.
                (Some(meta), _) => Manifest {
                    version: *version,
                    segments: vec![meta],
                    ..Manifest::default()
                }
                .encode()
                .to_vec(),
                (None, shape) => sealed_input(seed, shape, &muts, random),
            };
            let decoded = bounded("manifest", &input, || {
                Manifest::decode(Bytes::from(input.clone()), *version)
            })?;
            if let Ok(m) = decoded {
                ok.set(ok.get() + 1);
                // Readers compute index and footer ranges from these numbers.
                for s in &m.segments {
                    let end = s.index_offset.checked_add(s.index_len);
                    prop_assert_eq!(end.and_then(|e| e.checked_add(FOOTER_LEN)), Some(s.size));
                }
            }
            Ok(())
        },
    );
}

#[test]
fn checkpoints() {
    let long = "n".repeat(255);
    let names = ["before-migration", "a", long.as_str()];
    let seeds: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Checkpoint {
                name: name.to_string(),
                seq: 10 * i as u64 + 1,
                manifest_version: i as u64 + 1,
                created_ms: 1_700_000_000_000,
                created_by: format!("writer-{i}"),
                pending: i == 1,
            }
            .encode()
            .to_vec()
        })
        .collect();
    let ok = Cell::new(0);
    let strategy = (
        0..seeds.len(),
        shape(),
        mutations(),
        proptest::collection::vec(any::<u8>(), 0..256),
    );
    fuzz("checkpoint", 0, &strategy, &ok, |(i, shape, muts, random)| {
        let seed = &seeds[i];
        let input = sealed_input(seed, shape, &muts, random);
        let name = names[i];
        let decoded = bounded("checkpoint", &input, || {
            Checkpoint::decode(Bytes::from(input.clone()), name)
        })?;
        if let Ok(c) = decoded {
            ok.set(ok.get() + 1);
            // A checkpoint only ever decodes under the name it was asked for.
            prop_assert_eq!(c.name, name);
        }
        Ok(())
    });
}

#[test]
fn document_json() {
    let seeds = corpus("json");
    let limits = Limits::default();
    let id = DocId::from("dir/a1");
    let ok = Cell::new(0);
    let strategy = (
        0..seeds.len(),
        mutations(),
        prop_oneof![
            3 => Just(None::<Vec<u8>>),
            1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Some),
            1 => "[\\[\\]{}\":,0-9a-z.eE+\\- ]{0,120}".prop_map(|s| Some(s.into_bytes())),
        ],
    );
    fuzz(
        "document JSON",
        seeds.len(),
        &strategy,
        &ok,
        |(i, muts, replace)| {
            let input = replace.unwrap_or_else(|| {
                let mut b = seeds[i].clone();
                mutate(&mut b, &muts);
                b
            });
            let parsed = bounded("document", &input, || {
                Document::from_json_bytes(&id, &input).and_then(|doc| {
                    limits.check_document(&doc)?;
                    Ok(doc)
                })
            })?;
            if let Ok(doc) = parsed {
                ok.set(ok.get() + 1);
                // What is accepted renders to JSON that parses back the same.
                let json = doc.to_canonical_json();
                let again = Document::from_json_bytes(&id, &json).expect("canonical JSON reparses");
                prop_assert_eq!(again, doc);
            }
            Ok(())
        },
    );
}

#[test]
fn file_names() {
    let seeds: Vec<String> = corpus("names")
        .iter()
        .flat_map(|f| {
            String::from_utf8_lossy(f)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let docs = Cell::new(0);
    let strategy = (
        0..seeds.len(),
        mutations(),
        prop_oneof![
            Just(None::<String>),
            "[%./a-z0-9A-F\\x00~é-]{0,40}".prop_map(Some)
        ],
        "[%./a-z\\x00é]{1,30}",
    );
    fuzz(
        "file names",
        seeds.len(),
        &strategy,
        &docs,
        |(i, muts, replace, id)| {
            let name = replace.unwrap_or_else(|| {
                let mut b = seeds[i].clone().into_bytes();
                mutate(&mut b, &muts);
                String::from_utf8_lossy(&b).into_owned()
            });
            // Every id has exactly one file name, and back.
            let id = DocId::from(id);
            // `/` separates directories: every component is a safe file name,
            // and the last one, in its directory, names exactly this id.
            let path = doc_file_name(&id);
            let comps: Vec<&str> = path.split('/').collect();
            prop_assert!(comps
                .iter()
                .all(|c| !c.is_empty() && !c.contains('\0') && !c.starts_with('.')));
            let prefix = match id.as_str().rfind('/') {
                Some(at) => &id.as_str()[..=at],
                None => "",
            };
            let leaf = comps[comps.len() - 1];
            prop_assert_eq!(
                classify_in(leaf, prefix, comps.len() == 1, 255),
                NameKind::Doc(id.clone())
            );
            // Every name denotes at most one id, and that id's name is this name.
            // (A component the kernel sends never holds `/`.)
            if name.contains('/') {
                return Ok(());
            }
            if let NameKind::Doc(found) = bounded("name", name.as_bytes(), || classify(&name, 255))?
            {
                docs.set(docs.get() + 1);
                prop_assert_eq!(doc_file_name(&found), name);
            }
            Ok(())
        },
    );
}

/// Corpus files named `valid-*` decode; every other one is an input that
/// once broke a decoder (or was built to) and must be refused.
#[test]
fn corpus_files_decode_or_are_refused_as_their_names_say() {
    fn check<T, E: std::fmt::Debug>(target: &str, name: &str, data: &[u8], r: Result<T, E>) {
        match (name.starts_with("valid-"), r) {
            (true, Err(e)) => panic!("{target}/{name} should decode: {e:?}"),
            (false, Ok(_)) => panic!("{target}/{name} should be refused"),
            _ => eprintln!("{target}/{name}: {} bytes as expected", data.len()),
        }
    }
    for (name, data) in corpus_named("wal") {
        let r = bounded("wal", &data, || WalRecord::decode(Bytes::from(data.clone()), 1));
        check("wal", &name, &data, r.expect("bounded allocation"));
    }
    for (name, data) in corpus_named("segment") {
        let b = Bytes::from(data.clone());
        let r = bounded("segment", &data, || decode_all(&b)).expect("bounded allocation");
        check("segment", &name, &data, r);
        let _ = bounded("index", &data, || SegmentIndex::decode(b.clone())).expect("bounded");
        let _ = bounded("block", &data, || decode_block(b.clone())).expect("bounded");
    }
    for (name, data) in corpus_named("manifest") {
        let v = body_version(&data).unwrap_or(1);
        let r = bounded("manifest", &data, || {
            Manifest::decode(Bytes::from(data.clone()), v)
        });
        check("manifest", &name, &data, r.expect("bounded allocation"));
    }
}
