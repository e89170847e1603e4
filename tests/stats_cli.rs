//! `reef stats`, run as the binary on a local store: it counts the live
//! documents and their bytes page by page, and must print exactly what a
//! whole scan of the namespace gives.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use reef::store::{LocalFsStore, ObjectStore};
use reef::types::Document;

#[tokio::test]
async fn stats_counts_live_documents_and_bytes_across_pages_segments_and_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFsStore::new(dir.path().to_path_buf()).unwrap());
    let (docs, bytes) = {
        let engine = open_engine(&store, "ns").await;
        // Three segments and a WAL tail, more than two pages of ids, with
        // overwrites of other sizes and deletes in every layer.
        engine
            .write(upsert_batch(numbered_docs("a", 2500)))
            .await
            .unwrap();
        engine.flush().await.unwrap();
        let grown: Vec<Document> = (0..2500)
            .step_by(3)
            .map(|k| Document::new(format!("a{k:05}")).with("text", "x".repeat(k % 50)))
            .collect();
        engine.write(upsert_batch(grown)).await.unwrap();
        let gone: Vec<String> = (0..2500).step_by(7).map(|k| format!("a{k:05}")).collect();
        let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
        engine.write(delete_batch(&gone)).await.unwrap();
        engine.flush().await.unwrap();
        engine
            .write(upsert_batch(numbered_docs("b", 700)))
            .await
            .unwrap();
        engine.flush().await.unwrap();
        engine
            .write(delete_batch(&["a01024", "a01025", "b00001"]))
            .await
            .unwrap();
        engine
            .write(upsert_batch(numbered_docs("c", 10)))
            .await
            .unwrap();
        let all = engine.scan_all().await.unwrap();
        let bytes: usize = all.iter().map(|d| d.json.len()).sum();
        (all.len() as u64, bytes as u64)
    };
    assert!(docs > 2048, "{docs} documents: fewer than two pages");

    let out = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(["stats", dir.path().to_str().unwrap(), "ns"])
        .output()
        .expect("run reef");
    assert!(
        out.status.success(),
        "reef stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(stats["live_documents"], docs, "{stats}");
    assert_eq!(stats["live_bytes"], bytes, "{stats}");
    assert!(stats["store_requests_for_this_command"].is_object(), "{stats}");
}
