//! `reef verify` on a namespace that retains a long WAL, against the same
//! objects read one GET at a time (what verify cost before it fetched
//! several at once), on S3 (moto on loopback, when `scripts/moto-venv.sh`
//! installed it) and on a local store behind a fixed 5 ms per request.
//!
//! Run: `cargo bench --bench verify` (`REEF_BENCH_WAL`, default 4000 WAL
//! objects). Under `cargo test` it only checks that it builds.

#[path = "../tests/support/s3.rs"]
mod s3;
#[path = "support/wal_objects.rs"]
mod wal_objects;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reef::store::{LatencyStore, LocalFsStore, ObjectStore};
use reef::types::Document;
use wal_objects::one_wal_object_per_document;

async fn verify_vs_serial(store: &Arc<dyn ObjectStore>, name: &str, wal_objects: usize) {
    let ns = "verifybench";
    // One document per write: one WAL object each, all retained (no GC).
    let engine = one_wal_object_per_document(store, ns, wal_objects, |k| {
        Document::new(format!("doc-{k:09}")).with("n", k as i64)
    })
    .await;
    drop(engine);

    let t = Instant::now();
    let report = reef::admin::verify(store.clone(), ns).await.expect("verify");
    let verify_secs = t.elapsed().as_secs_f64();
    assert!(report.healthy, "{report:?}");
    let read = report.manifests_checked + report.segments_checked + report.wal_objects_checked;

    // Baseline: every object of the namespace, one GET at a time.
    let t = Instant::now();
    let keys = store.list(&format!("{ns}/"), None).await.expect("list");
    for meta in &keys {
        store.get(&meta.key).await.expect("get");
    }
    let serial_secs = t.elapsed().as_secs_f64();
    println!(
        "verify on {name}: {read} objects ({} WAL) in {verify_secs:.2} s vs {serial_secs:.2} s \
         reading the {} objects one GET at a time ({:.1}x faster)",
        report.wal_objects_checked,
        keys.len(),
        serial_secs / verify_secs
    );
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test` builds benches; nothing to measure there.
    }
    let n: usize = std::env::var("REEF_BENCH_WAL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        match s3::shared() {
            Some(server) => {
                let s3 = server.s3_store(&s3::unique_prefix("verify-bench"));
                verify_vs_serial(&s3, "S3 (moto)", n).await;
            }
            None => println!("verify on S3: skipped (run scripts/moto-venv.sh)"),
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let local: Arc<dyn ObjectStore> =
            Arc::new(LocalFsStore::new(dir.path().join("store")).expect("local store"));
        let slow: Arc<dyn ObjectStore> =
            Arc::new(LatencyStore::fixed(local, Duration::from_millis(5)));
        verify_vs_serial(&slow, "local + 5 ms per request", n / 4).await;
    });
}
