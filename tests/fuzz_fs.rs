//! Hostile content and names through the filesystem core (the code a
//! mount runs, without mounting): overwriting a document with mutated JSON
//! or random bytes either commits that document or fails at close
//! with an error and leaves the stored document as it was; a hostile name
//! is a document, a scratch file or an error, never a panic.
//!
//! `REEF_FUZZ_CASES` (default 20,000) scales the pass; a tenth of it runs
//! here, as each case is a real engine write.

#[path = "support/core_files.rs"]
mod core_files;

use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reef::fs::{CoreConfig, FsCore, FsError, ROOT_INO};
use reef::store::{MemoryStore, ObjectStore};
use reef::types::{DocId, Document};

/// `printf CONTENT > dir/name`, in one write.
async fn write_file(core: &FsCore, dir: u64, name: &str, content: &[u8]) -> Result<(), FsError> {
    core_files::write_file(core, dir, name, content, usize::MAX).await
}

async fn read_file(core: &FsCore, dir: u64, name: &str) -> Result<Vec<u8>, FsError> {
    let (attr, out) = core_files::read_file(core, dir, name, 1 << 16).await?;
    assert_eq!(
        attr.size,
        out.len() as u64,
        "st_size must be the length a read returns"
    );
    Ok(out)
}

fn doc(json: &[u8]) -> Document {
    Document::from_json_bytes(&DocId::from("d"), json).expect("stored JSON parses")
}

fn json_seeds() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/json");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("corpus file"))
        .collect()
}

fn cases() -> u32 {
    let all: u32 = std::env::var("REEF_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    (all / 10).max(1)
}

#[test]
fn hostile_document_content_commits_exactly_or_changes_nothing() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let mut cfg = CoreConfig::default();
    cfg.engine.limits.max_doc_bytes = 4096;
    let core = FsCore::new(store, cfg);
    let ns = rt.block_on(core.mkdir(ROOT_INO, "fz")).expect("mkdir").ino;
    let original = br#"{"keep":"me"}"#.to_vec();
    let seeds = json_seeds();
    let strategy = (
        0..seeds.len(),
        proptest::collection::vec((0u8..4, any::<u32>(), any::<u8>()), 0..5),
        proptest::option::weighted(0.2, proptest::collection::vec(any::<u8>(), 0..128)),
    );
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let counts = std::cell::Cell::new((0u32, 0u32));
    let result = runner.run(&strategy, |(i, muts, random)| {
        let content = random.unwrap_or_else(|| {
            let mut b = seeds[i].clone();
            for (op, at, v) in muts {
                let at = at as usize % (b.len() + 1);
                match op {
                    0 if at < b.len() => b[at] = v,
                    1 => b.truncate(at),
                    2 => b.insert(at, v),
                    _ if at < b.len() => {
                        b.remove(at);
                    }
                    _ => {}
                }
            }
            b
        });
        rt.block_on(async {
            write_file(&core, ns, "d.json", &original)
                .await
                .expect("seed write");
            let result = write_file(&core, ns, "d.json", &content).await;
            let now = read_file(&core, ns, "d.json").await;
            let (ok, refused) = counts.get();
            match result {
                Ok(()) => {
                    counts.set((ok + 1, refused));
                    let now = now.expect("an accepted document reads back");
                    // The same document (empty content is `{}`); compared
                    // as documents, as a daemon may render canonically.
                    prop_assert_eq!(doc(&now), doc(&content));
                }
                Err(e) => {
                    counts.set((ok, refused + 1));
                    prop_assert!(
                        matches!(e, FsError::Invalid(_) | FsError::TooLarge(_)),
                        "unexpected error kind: {e:?}"
                    );
                    let now = now.expect("the old document is still there");
                    prop_assert_eq!(doc(&now), doc(&original));
                }
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (ok, refused) = counts.get();
    eprintln!(
        "fuzz fs document content: {} inputs ({} committed, {} refused at close with the \
         old document intact)",
        ok + refused,
        ok,
        refused
    );
}

#[test]
fn hostile_names_are_documents_scratch_files_or_errors() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let core = FsCore::new(store, CoreConfig::default());
    let ns = rt.block_on(core.mkdir(ROOT_INO, "names")).expect("mkdir").ino;
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let name = prop_oneof![
        "[%./a-zA-F0-9\\x00~é-]{1,24}(\\.json)?",
        proptest::collection::vec(any::<char>(), 1..8)
            .prop_map(|c| c.into_iter().collect::<String>()),
        (250usize..300).prop_map(|n| format!("{}.json", "x".repeat(n))),
    ];
    let result = runner.run(&name, |name| {
        rt.block_on(async {
            match write_file(&core, ns, &name, b"{}").await {
                Ok(()) => {
                    prop_assert!(read_file(&core, ns, &name).await.is_ok(), "{name:?} vanished");
                    let _ = core.unlink(ns, &name).await;
                }
                Err(e) => {
                    // Refused names fail with a clear errno, never a panic.
                    let _ = e.to_string();
                }
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("fuzz fs names: {} inputs", cases());
}
