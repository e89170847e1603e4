//! `reef bench`: the engine's speed beside the raw store it runs on, in the
//! same run, as ratios. Every figure has a baseline doing the same store
//! work without reef: puts of the same bytes, gets of the same ranges.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reef::engine::{Engine, EngineOptions};
use reef::store::{open_store, LatencyStore, LocalFsStore, MeteredStore, ObjectStore};
use reef::types::{DocId, Document, WriteBatch};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Store to measure (default: a fresh directory under the system temp dir).
    #[arg(long)]
    store: Option<String>,
    /// Add this many milliseconds to every store request (S3-like latency).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Scale: documents per measurement.
    #[arg(long, default_value_t = 2000)]
    docs: usize,
    /// Concurrencies of the batch=1 write steps.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 64, 512])]
    writers: Vec<usize>,
    /// Instead of the steps above, the baseline of `reef import`
    /// (scripts/bench-transfer.sh): the engine's own batch write of the
    /// documents of this JSON Lines file, read and split into batches before
    /// the clock starts, through an engine opened as `reef import` opens one.
    /// Prints one JSON object: docs, bytes, elapsed_ms.
    #[arg(long, value_name = "FILE", requires = "store")]
    batch_write: Option<std::path::PathBuf>,
    /// Namespace of --batch-write.
    #[arg(long, default_value = "bench-batch-write")]
    namespace: String,
    /// Documents per engine write for --batch-write (as `reef import --batch`).
    #[arg(long, default_value_t = 2000)]
    batch: usize,
}

struct Row {
    what: String,
    reef: f64,
    baseline: f64,
    unit: &'static str,
}

fn sample_doc(k: usize) -> Document {
    Document::new(format!("doc-{k:08}"))
        .with("title", format!("benchmark document number {k}"))
        .with("n", k as i64)
        .with("tags", "alpha beta gamma")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Puts of `sizes` bytes from `writers` tasks; the elapsed seconds and each
/// put's latency.
async fn raw_puts(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    sizes: &[usize],
    writers: usize,
) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let chunks: Vec<Vec<(usize, usize)>> = (0..writers)
        .map(|w| {
            sizes
                .iter()
                .copied()
                .enumerate()
                .filter(|(k, _)| k % writers == w)
                .collect()
        })
        .collect();
    let tasks = chunks.into_iter().map(|chunk| {
        let store = store.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(chunk.len());
            for (k, size) in chunk {
                let key = format!("{prefix}/{k:020}");
                let t = Instant::now();
                if let Err(e) = store.put_if_absent(&key, Bytes::from(vec![b'x'; size])).await {
                    eprintln!("reef bench: baseline put failed: {e}");
                }
                lat.push(t.elapsed());
            }
            lat
        })
    });
    let mut latencies = Vec::new();
    for t in futures::future::join_all(tasks).await {
        match t {
            Ok(lat) => latencies.extend(lat),
            Err(e) => eprintln!("reef bench: baseline task failed: {e}"),
        }
    }
    latencies.sort();
    (start.elapsed().as_secs_f64(), latencies)
}

/// A goal of issue 10, measured against the store's round trip.
struct Goal {
    what: String,
    reached: f64,
    goal: String,
    /// The figure in round trips (latencies) or as a fraction of the
    /// round-trip floor `writers / round trip` (throughputs).
    of_floor: f64,
}

async fn open(store: &Arc<dyn ObjectStore>, ns: &str) -> Result<Engine, String> {
    // Flush and compaction are measured on their own, not inside writes.
    let opts = EngineOptions {
        auto_flush_bytes: None,
        auto_flush_wal_objects: None,
        auto_compact_segments: None,
        ..EngineOptions::default()
    };
    Engine::open(store.clone(), ns, opts)
        .await
        .map_err(|e| format!("open {ns}: {e}"))
}

/// `--batch-write FILE`: see [`BenchArgs::batch_write`].
async fn batch_write(args: &BenchArgs, path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut batches = Vec::new();
    let mut batch = WriteBatch::new();
    let (mut docs, mut bytes) = (0u64, 0u64);
    for (k, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Head {
            id: String,
        }
        let head: Head = serde_json::from_slice(line)
            .map_err(|e| format!("{} line {}: {e}", path.display(), k + 1))?;
        batch = batch.put_json(DocId::from(head.id), Bytes::copy_from_slice(line), None);
        docs += 1;
        bytes += line.len() as u64;
        if batch.ops.len() >= args.batch.max(1) {
            batches.push(std::mem::take(&mut batch));
        }
    }
    if !batch.ops.is_empty() {
        batches.push(batch);
    }
    drop(text);
    let store = open_store(args.store.as_deref().unwrap_or_default()).map_err(|e| e.to_string())?;
    let engine = Engine::open(store, &args.namespace, EngineOptions::default())
        .await
        .map_err(|e| format!("open {}: {e}", args.namespace))?;
    let start = Instant::now();
    for wb in batches {
        engine.write(wb).await.map_err(|e| e.to_string())?;
    }
    let elapsed_ms = start.elapsed().as_millis() as u64;
    println!(
        "{}",
        serde_json::json!({"docs": docs, "bytes": bytes, "elapsed_ms": elapsed_ms})
    );
    Ok(())
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    if let Some(path) = &args.batch_write {
        return batch_write(&args, path).await;
    }
    let _tmp;
    let base: Arc<dyn ObjectStore> = match &args.store {
        Some(url) => open_store(url).map_err(|e| e.to_string())?,
        None => {
            let dir = std::env::temp_dir().join(format!("reef-bench-{}", std::process::id()));
            _tmp = TempDirGuard(dir.clone());
            Arc::new(LocalFsStore::new(dir).map_err(|e| e.to_string())?)
        }
    };
    let latent: Arc<dyn ObjectStore> = if args.latency_ms > 0 {
        Arc::new(LatencyStore::fixed(
            base,
            Duration::from_millis(args.latency_ms),
        ))
    } else {
        base
    };
    let metered = Arc::new(MeteredStore::new(latent));
    let store: Arc<dyn ObjectStore> = metered.clone();
    let run_id = format!("{:x}", std::process::id());
    let n = args.docs.max(100);
    let mut rows = Vec::new();
    eprintln!(
        "reef bench on {} (+{} ms per request), {n} docs per step",
        store.describe(),
        args.latency_ms
    );

    // Writes, one doc per batch, at several concurrencies. The floor of a
    // write is one PUT round trip, so `writers` writers can at best commit
    // `writers` documents per round trip.
    let mut goals = Vec::new();
    // The round trip of one PUT in this run, the unit of the write goals:
    // the single-writer baseline's median, or without that step a probe.
    let mut put_rtt_ms = if args.writers.contains(&1) {
        0.0
    } else {
        let (_, probe) = raw_puts(&store, &format!("bench-raw-{run_id}-rtt"), &[200; 50], 1).await;
        percentile(&probe, 0.5)
    };
    // Ascending, so the single-writer step (the round trip) comes first.
    let mut steps: Vec<usize> = args.writers.iter().copied().filter(|w| *w > 0).collect();
    steps.sort_unstable();
    steps.dedup();
    for writers in steps {
        // Enough documents that every writer commits several times.
        let n = n.max(writers * 16);
        let doc_sizes: Vec<usize> = (0..n)
            .map(|k| sample_doc(k).to_canonical_json().len() + 80)
            .collect();
        let ns = format!("bench-{run_id}-w{writers}");
        let engine = open(&store, &ns).await?;
        let before = metered.snapshot();
        let start = Instant::now();
        let tasks = (0..writers).map(|w| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for k in (w..n).step_by(writers) {
                    let t = Instant::now();
                    engine
                        .write(WriteBatch::new().upsert(sample_doc(k)))
                        .await
                        .map_err(|e| e.to_string())?;
                    lat.push(t.elapsed());
                }
                Ok::<_, String>(lat)
            })
        });
        let mut latencies = Vec::new();
        for t in futures::future::join_all(tasks).await {
            latencies.extend(t.map_err(|e| e.to_string())??);
        }
        let reef_secs = start.elapsed().as_secs_f64();
        let cost = metered.snapshot().since(&before);
        let (raw_secs, raw_lat) = raw_puts(
            &store,
            &format!("bench-raw-{run_id}-w{writers}"),
            &doc_sizes,
            writers,
        )
        .await;
        latencies.sort();
        let reef_rate = n as f64 / reef_secs;
        if writers == 1 {
            put_rtt_ms = percentile(&raw_lat, 0.5);
            goals.push(Goal {
                what: "commit p50, 1 writer".into(),
                reached: percentile(&latencies, 0.5),
                goal: "<= 1.1 round trips".into(),
                of_floor: percentile(&latencies, 0.5) / put_rtt_ms.max(1e-9),
            });
        }
        if writers >= 64 {
            let floor = writers as f64 / (put_rtt_ms.max(1e-9) / 1000.0);
            goals.push(Goal {
                what: format!("write, {writers} writers (docs/s)"),
                reached: reef_rate,
                goal: if writers == 64 {
                    ">= 1,150/s (0.9 of the floor at 50 ms)".into()
                } else {
                    ">= 8,000/s at 50 ms".into()
                },
                of_floor: reef_rate / floor,
            });
        }
        rows.push(Row {
            what: format!("write batch=1, {writers} writers"),
            reef: reef_rate,
            baseline: n as f64 / raw_secs,
            unit: "docs/s",
        });
        eprintln!(
            "  {writers:>2} writers: commit latency p50 {:.2} ms, p99 {:.2} ms; {} PUTs per 1000 docs",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            cost.put_requests * 1000 / n as u64
        );
    }

    // Large batches.
    let ns = format!("bench-{run_id}-batch");
    let engine = open(&store, &ns).await?;
    let batch = 1000;
    let total = (n * 10).div_ceil(batch) * batch;
    let start = Instant::now();
    for b in 0..total / batch {
        let docs = (b * batch..(b + 1) * batch).map(sample_doc);
        let wb = docs.fold(WriteBatch::new(), WriteBatch::upsert);
        engine.write(wb).await.map_err(|e| e.to_string())?;
    }
    let reef_secs = start.elapsed().as_secs_f64();
    let batch_bytes: usize = (0..batch)
        .map(|k| sample_doc(k).to_canonical_json().len() + 30)
        .sum();
    let (raw_secs, _) = raw_puts(
        &store,
        &format!("bench-raw-{run_id}-batch"),
        &vec![batch_bytes; total / batch],
        1,
    )
    .await;
    rows.push(Row {
        what: "write batch=1000, 1 writer".into(),
        reef: total as f64 / reef_secs,
        baseline: total as f64 / raw_secs,
        unit: "docs/s",
    });

    // Flush: the memtable of the batch step into one segment.
    let start = Instant::now();
    engine.flush().await.map_err(|e| e.to_string())?;
    let flush_secs = start.elapsed().as_secs_f64();
    let m = engine.manifest_snapshot().await.map_err(|e| e.to_string())?;
    let seg_bytes = m.segments.iter().map(|s| s.size).sum::<u64>() as f64;
    let (raw_secs, _) = raw_puts(
        &store,
        &format!("bench-raw-{run_id}-flush"),
        &[seg_bytes as usize],
        1,
    )
    .await;
    rows.push(Row {
        what: "flush".into(),
        reef: seg_bytes / 1e6 / flush_secs,
        baseline: seg_bytes / 1e6 / raw_secs,
        unit: "MB/s",
    });

    // Compaction: three more segments of updates, merged with the first.
    for round in 0..3 {
        let docs = (0..total)
            .step_by(3)
            .map(|k| sample_doc(k).with("round", round as i64));
        for chunk in docs.collect::<Vec<_>>().chunks(batch) {
            let wb = chunk
                .iter()
                .cloned()
                .fold(WriteBatch::new(), WriteBatch::upsert);
            engine.write(wb).await.map_err(|e| e.to_string())?;
        }
        engine.flush().await.map_err(|e| e.to_string())?;
    }
    let m = engine.manifest_snapshot().await.map_err(|e| e.to_string())?;
    let input_bytes = m.segments.iter().map(|s| s.size).sum::<u64>() as f64;
    // Baseline: read the same input objects, write the output size once.
    let start = Instant::now();
    for seg in &m.segments {
        store
            .get(&format!("{ns}/segments/{}", seg.id))
            .await
            .map_err(|e| e.to_string())?;
    }
    let read_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    engine.compact().await.map_err(|e| e.to_string())?;
    let compact_secs = start.elapsed().as_secs_f64();
    let out = engine.manifest_snapshot().await.map_err(|e| e.to_string())?;
    let out_bytes = out.segments.iter().map(|s| s.size).sum::<u64>();
    let (put_secs, _) = raw_puts(
        &store,
        &format!("bench-raw-{run_id}-compact"),
        &[out_bytes as usize],
        1,
    )
    .await;
    let raw_secs = read_secs + put_secs;
    rows.push(Row {
        what: format!("compaction of {} segments", m.segments.len()),
        reef: input_bytes / 1e6 / compact_secs,
        baseline: input_bytes / 1e6 / raw_secs,
        unit: "MB/s",
    });

    // Point gets from the segment, cold (fresh engine) and warm.
    drop(engine);
    let engine = open(&store, &ns).await?;
    let seg = engine
        .manifest_snapshot()
        .await
        .map_err(|e| e.to_string())?
        .segments[0]
        .clone();
    let seg_key = format!("{ns}/segments/{}", seg.id);
    let probes: Vec<usize> = (0..200).map(|k| (k * 7919) % total).collect();
    // Cold: a fresh read-only engine per lookup, so nothing is cached.
    let mut cold = Vec::new();
    let before = metered.snapshot();
    let follower_opts = EngineOptions {
        read_only: true,
        ..EngineOptions::default()
    };
    for &k in probes.iter().take(20) {
        let follower = Engine::open(store.clone(), &ns, follower_opts.clone())
            .await
            .map_err(|e| e.to_string())?;
        let t = Instant::now();
        let found = follower
            .get(&DocId::from(format!("doc-{k:08}")))
            .await
            .map_err(|e| e.to_string())?;
        cold.push(t.elapsed());
        if found.is_none() {
            return Err(format!("doc-{k:08} missing from the benchmark namespace"));
        }
    }
    let opens = metered.snapshot().since(&before);
    let before = metered.snapshot();
    for &k in &probes {
        engine
            .get(&DocId::from(format!("doc-{k:08}")))
            .await
            .map_err(|e| e.to_string())?;
    }
    let get_cost = metered.snapshot().since(&before);
    let mut warm = Vec::new();
    for &k in &probes {
        let t = Instant::now();
        engine
            .get(&DocId::from(format!("doc-{k:08}")))
            .await
            .map_err(|e| e.to_string())?;
        warm.push(t.elapsed());
    }
    let mut raw = Vec::new();
    for k in 0..probes.len() as u64 {
        let off = (k * 65_536) % seg.index_offset.max(1);
        let end = (off + 65_536).min(seg.size);
        let t = Instant::now();
        store
            .get_range(&seg_key, off..end)
            .await
            .map_err(|e| e.to_string())?;
        raw.push(t.elapsed());
    }
    for v in [&mut cold, &mut warm, &mut raw] {
        v.sort();
    }
    rows.push(Row {
        what: "point get p50, cold cache".into(),
        reef: percentile(&cold, 0.5),
        baseline: percentile(&raw, 0.5),
        unit: "ms",
    });
    rows.push(Row {
        what: "point get p99, cold cache".into(),
        reef: percentile(&cold, 0.99),
        baseline: percentile(&raw, 0.99),
        unit: "ms",
    });
    rows.push(Row {
        what: "point get p50, cached".into(),
        reef: percentile(&warm, 0.5),
        baseline: percentile(&raw, 0.5),
        unit: "ms",
    });
    let get_rtt_ms = percentile(&raw, 0.5);
    goals.push(Goal {
        what: "cold point get p50".into(),
        reached: percentile(&cold, 0.5),
        goal: "<= 1.1 round trips".into(),
        of_floor: percentile(&cold, 0.5) / get_rtt_ms.max(1e-9),
    });
    eprintln!(
        "  reads: {} GETs for {} point gets through one engine ({} per 1000); a cold open+get costs {} GETs and {} LISTs",
        get_cost.get_requests,
        probes.len(),
        get_cost.get_requests * 1000 / probes.len() as u64,
        opens.get_requests / 20,
        opens.list_requests / 20,
    );

    println!(
        "{:<34} {:>14} {:>14} {:>8}",
        "measurement", "reef", "raw store", "ratio"
    );
    for r in &rows {
        println!(
            "{:<34} {:>9.2} {:<5}{:>9.2} {:<5}{:>7.2}x",
            r.what,
            r.reef,
            r.unit,
            r.baseline,
            r.unit,
            r.reef / r.baseline
        );
    }
    println!("(ratio = reef / raw store: above 1 is better for docs/s and MB/s, below 1 is better for ms)");
    println!();
    println!(
        "round trip, measured in this run: PUT p50 {put_rtt_ms:.2} ms, ranged GET p50 {get_rtt_ms:.2} ms"
    );
    println!(
        "{:<34} {:>12} {:>12}   goal",
        "against the round-trip floor", "reached", "of floor"
    );
    for g in &goals {
        let (reached, of_floor) = if g.what.contains("docs/s") {
            (format!("{:.0}/s", g.reached), format!("{:.2}x", g.of_floor))
        } else {
            (format!("{:.2} ms", g.reached), format!("{:.2} RT", g.of_floor))
        };
        println!("{:<34} {reached:>12} {of_floor:>12}   {}", g.what, g.goal);
    }
    println!(
        "(RT = round trips of one store request; a throughput's floor is writers per round trip)"
    );
    let totals = metered.snapshot();
    println!(
        "store requests: {} GET, {} PUT, {} LIST, {} DELETE",
        totals.get_requests, totals.put_requests, totals.list_requests, totals.delete_requests
    );
    Ok(())
}

/// Removes the default benchmark directory when the run ends.
struct TempDirGuard(std::path::PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
