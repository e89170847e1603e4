//! A real mount over a local store with S3-like latency injected on every
//! request (`LatencyStore`, 50 ms by default, `REEF_BENCH_LATENCY_MS`):
//! commit latency of one writer, throughput of 1 and 64 writers (group
//! commit), cold vs cached `cat`, and store requests per 1,000 documents.
//! Run: `cargo bench --bench mount_latency`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reef::fs::{mount, MountOptions};
use reef::store::{LatencyStore, LocalFsStore, MeteredStore, ObjectStore, StoreMetrics};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len().max(1) - 1) as f64 * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn write_docs(dir: &Path, prefix: &str, n: usize, writers: usize) -> Vec<Duration> {
    let dir = dir.to_path_buf();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let dir = dir.clone();
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                for k in (w..n).step_by(writers) {
                    let t = Instant::now();
                    std::fs::write(
                        dir.join(format!("{prefix}{k:05}.json")),
                        format!(r#"{{"title":"doc {k}","n":{k},"body":"{}"}}"#, "x".repeat(1500)),
                    )
                    .expect("write through the mount");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("writer"))
        .collect();
    all.sort();
    all
}

fn per_1000(m: &StoreMetrics, docs: usize) -> String {
    format!(
        "{:.0} GET, {:.0} PUT, {:.0} LIST",
        m.get_requests as f64 * 1000.0 / docs as f64,
        m.put_requests as f64 * 1000.0 / docs as f64,
        m.list_requests as f64 * 1000.0 / docs as f64
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // built by `cargo test --all-targets`; only `cargo bench` runs it
    }
    let latency_ms: u64 = std::env::var("REEF_BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let tmp = tempfile::tempdir().expect("tempdir");
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFsStore::new(tmp.path().join("store")).expect("store"));
    let slow: Arc<dyn ObjectStore> =
        Arc::new(LatencyStore::fixed(local, Duration::from_millis(latency_ms)));
    let metered = Arc::new(MeteredStore::new(slow));
    let store: Arc<dyn ObjectStore> = metered.clone();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mountpoint");
    let opts = MountOptions::parse_o("rw").expect("options");
    println!("mount over a local store with {latency_ms} ms per request");

    let handle = mount(store.clone(), &mnt, &opts).expect("mount");
    let ns = mnt.join("bench");
    std::fs::create_dir(&ns).expect("mkdir");
    let before = metered.snapshot();
    let one = write_docs(&ns, "one-", 40, 1);
    let t = Instant::now();
    let many = write_docs(&ns, "many-", 640, 64);
    let many_secs = t.elapsed().as_secs_f64();
    let one_secs: f64 = one.iter().map(Duration::as_secs_f64).sum();
    let writes = metered.snapshot().since(&before);
    println!(
        "commit latency, 1 writer: p50 {:.1} ms, p99 {:.1} ms ({:.1} docs/s)",
        percentile(&one, 0.5),
        percentile(&one, 0.99),
        one.len() as f64 / one_secs
    );
    println!(
        "64 writers: {:.1} docs/s, commit p50 {:.1} ms, p99 {:.1} ms",
        many.len() as f64 / many_secs,
        percentile(&many, 0.5),
        percentile(&many, 0.99)
    );
    println!(
        "store requests per 1000 docs written: {}",
        per_1000(&writes, 680)
    );
    std::fs::write(ns.join(".flush"), b"").expect("flush");
    handle.unmount().expect("unmount");

    // Cold: a fresh mount has no cached index, block or page.
    let handle = mount(store.clone(), &mnt, &opts).expect("remount");
    let before = metered.snapshot();
    // The first read opens the namespace (manifest, WAL replay, fence).
    let t = Instant::now();
    std::fs::read(ns.join("many-00000.json")).expect("cat");
    let first = t.elapsed();
    // Then one read per ~64 KiB block: each misses every cache.
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    for k in (40..640).step_by(40) {
        let path = ns.join(format!("many-{k:05}.json"));
        let t = Instant::now();
        std::fs::read(&path).expect("cat");
        cold.push(t.elapsed());
        let t = Instant::now();
        std::fs::read(&path).expect("cat again");
        cached.push(t.elapsed());
    }
    let reads = metered.snapshot().since(&before);
    cold.sort();
    cached.sort();
    println!(
        "first cat after mount (opens the namespace): {:.1} ms",
        first.as_secs_f64() * 1000.0
    );
    println!(
        "cat of a document in an uncached block: p50 {:.1} ms, p99 {:.1} ms; cached: p50 {:.3} ms, p99 {:.3} ms",
        percentile(&cold, 0.5),
        percentile(&cold, 0.99),
        percentile(&cached, 0.5),
        percentile(&cached, 0.99)
    );
    println!(
        "store requests per 1000 docs read (mount included): {}",
        per_1000(&reads, cold.len() + 1)
    );
    handle.unmount().expect("unmount");
}
