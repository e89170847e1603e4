//! What a mount exports on `-o metrics=ADDR:PORT` (Prometheus text, served
//! by `metrics_server`): the only module that knows metric names.
//!
//! - FUSE requests by kind with latency histograms ([`FuseMetrics`], timed
//!   by the adapter from dispatch until the reply is sent);
//! - object-store requests by kind with latency and errors (kept by the
//!   `MeteredStore` every mount counts its requests with);
//! - per open namespace, the engine's own counters (`Engine::stats`,
//!   `Engine::group_sizes`): commits and their group sizes, documents
//!   written, memtable bytes, unflushed WAL objects, flushes, compactions,
//!   segment cache hits and misses, fencing, garbage collection (passes,
//!   failures, objects and bytes deleted by kind); and the disk cache's hits.
//!
//! Everything but the FUSE and store histograms is read at scrape time
//! ([`MountCollector`]), so metrics add no work to the engine's hot paths.
//! A scrape never waits: a namespace whose engine is busy being replaced
//! (`.repair`) or not yet opened is left out of that scrape.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;

use crate::engine::gc::Count;
use crate::engine::{Engine, GcTotals};
use crate::fs::core::FsCore;
use crate::store::RequestKind;

/// The FUSE requests timed, one histogram each (the `op` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FuseOp {
    Lookup,
    Forget,
    Getattr,
    Setattr,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Rename,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Statfs,
    Create,
}

impl FuseOp {
    const ALL: [FuseOp; 21] = [
        FuseOp::Lookup,
        FuseOp::Forget,
        FuseOp::Getattr,
        FuseOp::Setattr,
        FuseOp::Mknod,
        FuseOp::Mkdir,
        FuseOp::Unlink,
        FuseOp::Rmdir,
        FuseOp::Rename,
        FuseOp::Open,
        FuseOp::Read,
        FuseOp::Write,
        FuseOp::Flush,
        FuseOp::Release,
        FuseOp::Fsync,
        FuseOp::Opendir,
        FuseOp::Readdir,
        FuseOp::Readdirplus,
        FuseOp::Releasedir,
        FuseOp::Statfs,
        FuseOp::Create,
    ];

    fn name(self) -> &'static str {
        match self {
            FuseOp::Lookup => "lookup",
            FuseOp::Forget => "forget",
            FuseOp::Getattr => "getattr",
            FuseOp::Setattr => "setattr",
            FuseOp::Mknod => "mknod",
            FuseOp::Mkdir => "mkdir",
            FuseOp::Unlink => "unlink",
            FuseOp::Rmdir => "rmdir",
            FuseOp::Rename => "rename",
            FuseOp::Open => "open",
            FuseOp::Read => "read",
            FuseOp::Write => "write",
            FuseOp::Flush => "flush",
            FuseOp::Release => "release",
            FuseOp::Fsync => "fsync",
            FuseOp::Opendir => "opendir",
            FuseOp::Readdir => "readdir",
            FuseOp::Readdirplus => "readdirplus",
            FuseOp::Releasedir => "releasedir",
            FuseOp::Statfs => "statfs",
            FuseOp::Create => "create",
        }
    }
}

/// Latency of FUSE requests by kind, in seconds: buckets from 10 µs (a
/// request answered from memory) to 5 s (a commit over slow storage),
/// doubling. One histogram per kind, indexed by `FuseOp as usize`, so
/// recording is one short lock and no label lookup.
#[derive(Debug)]
pub(crate) struct FuseMetrics {
    latency: Vec<Histogram>,
}

impl FuseMetrics {
    pub fn new() -> FuseMetrics {
        FuseMetrics {
            latency: FuseOp::ALL
                .iter()
                .map(|_| Histogram::new(exponential_buckets(1e-5, 2.0, 20)))
                .collect(),
        }
    }

    pub fn observe(&self, op: FuseOp, started: Instant) {
        self.latency[op as usize].observe(started.elapsed().as_secs_f64());
    }
}

/// Encodes every family of a mount at scrape time.
#[derive(Debug)]
pub(crate) struct MountCollector {
    pub core: Weak<FsCore>,
    pub fuse: Arc<FuseMetrics>,
}

type Enc<'a> = DescriptorEncoder<'a>;

/// One metric family of plain values: `(labels, value)` per series.
fn family(
    enc: &mut Enc,
    name: &str,
    help: &str,
    kind: MetricType,
    series: &[(Vec<(&'static str, String)>, u64)],
) -> Result<(), std::fmt::Error> {
    if series.is_empty() {
        return Ok(());
    }
    let mut metric = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        let mut m = metric.encode_family(labels)?;
        match kind {
            MetricType::Counter => m.encode_counter::<NoLabelSet, _, u64>(value, None)?,
            _ => m.encode_gauge(value)?,
        }
    }
    Ok(())
}

/// An engine counter from `Engine::stats` (absent fields read as 0).
fn stat(stats: &serde_json::Value, field: &str) -> u64 {
    stats[field].as_u64().unwrap_or(0)
}

/// Engine gauges and counters: (stats field, metric name, type, help).
const ENGINE_FAMILIES: [(&str, &str, MetricType, &str); 13] = [
    (
        "wal_objects_written",
        "reef_commits",
        MetricType::Counter,
        "WAL objects written (one per group commit).",
    ),
    (
        "write_calls",
        "reef_write_calls",
        MetricType::Counter,
        "Write batches submitted to the engine.",
    ),
    (
        "docs_written",
        "reef_documents_written",
        MetricType::Counter,
        "Document upserts and deletes made durable.",
    ),
    (
        "flushes",
        "reef_flushes",
        MetricType::Counter,
        "Flushes of the memtable into a segment.",
    ),
    (
        "compactions",
        "reef_compactions",
        MetricType::Counter,
        "Compactions (automatic and requested).",
    ),
    (
        "compaction_bytes_written",
        "reef_compaction_bytes_written",
        MetricType::Counter,
        "Bytes of segments written by compaction (write amplification).",
    ),
    (
        "memtable_bytes",
        "reef_memtable_bytes",
        MetricType::Gauge,
        "Bytes of JSON held in memtables (not yet in a segment).",
    ),
    (
        "memtable_entries",
        "reef_memtable_entries",
        MetricType::Gauge,
        "Documents held in memtables.",
    ),
    (
        "segments",
        "reef_segments",
        MetricType::Gauge,
        "Segments in the current manifest.",
    ),
    (
        "segment_bytes",
        "reef_segment_bytes",
        MetricType::Gauge,
        "Bytes of the segments in the current manifest.",
    ),
    (
        "manifest_version",
        "reef_manifest_version",
        MetricType::Gauge,
        "Version of the current manifest.",
    ),
    (
        "last_wal_seq",
        "reef_last_wal_sequence",
        MetricType::Gauge,
        "Highest WAL sequence applied.",
    ),
    (
        "flushed_through",
        "reef_flushed_through_sequence",
        MetricType::Gauge,
        "WAL sequence the current manifest's segments cover.",
    ),
];

impl MountCollector {
    fn encode_fuse(&self, enc: &mut Enc) -> Result<(), std::fmt::Error> {
        let mut metric = enc.encode_descriptor(
            "reef_fuse_request_duration_seconds",
            "FUSE requests by kind: time from dispatch until the reply is sent.",
            None,
            MetricType::Histogram,
        )?;
        for op in FuseOp::ALL {
            let labels = [("op", op.name())];
            self.fuse.latency[op as usize].encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn encode_store(core: &FsCore, enc: &mut Enc) -> Result<(), std::fmt::Error> {
        let metered = core.metered_store();
        let mut metric = enc.encode_descriptor(
            "reef_store_request_duration_seconds",
            "Object-store requests by kind (failed ones included), below any disk cache.",
            None,
            MetricType::Histogram,
        )?;
        for kind in RequestKind::ALL {
            let labels = [("kind", kind.name())];
            metered.latency(kind).encode(metric.encode_family(&labels)?)?;
        }
        let kind_series = |f: &dyn Fn(RequestKind) -> u64| -> Vec<_> {
            RequestKind::ALL
                .iter()
                .map(|k| (vec![("kind", k.name().to_string())], f(*k)))
                .collect()
        };
        family(
            enc,
            "reef_store_request_errors",
            "Failed object-store requests by kind.",
            MetricType::Counter,
            &kind_series(&|k| metered.errors(k)),
        )?;
        let m = metered.snapshot();
        family(
            enc,
            "reef_store_bytes",
            "Bytes moved to (put) and from (get) the object store.",
            MetricType::Counter,
            &[
                (vec![("direction", "get".to_string())], m.get_bytes),
                (vec![("direction", "put".to_string())], m.put_bytes),
            ],
        )
    }

    fn encode_engines(
        core: &FsCore,
        engines: &[(String, Engine)],
        enc: &mut Enc,
    ) -> Result<(), std::fmt::Error> {
        let stats: Vec<_> = engines.iter().map(|(ns, e)| (ns, e.stats())).collect();
        let ns_label = |ns: &str| vec![("namespace", ns.to_string())];
        for (field, name, kind, help) in ENGINE_FAMILIES {
            let series: Vec<_> = stats
                .iter()
                .map(|(ns, s)| (ns_label(ns), stat(s, field)))
                .collect();
            family(enc, name, help, kind, &series)?;
        }
        let unflushed: Vec<_> = stats
            .iter()
            .map(|(ns, s)| {
                let behind = stat(s, "last_wal_seq").saturating_sub(stat(s, "flushed_through"));
                (ns_label(ns), behind)
            })
            .collect();
        family(
            enc,
            "reef_unflushed_wal_objects",
            "WAL objects not yet covered by a segment (replayed at the next open).",
            MetricType::Gauge,
            &unflushed,
        )?;
        let fenced: Vec<_> = stats
            .iter()
            .map(|(ns, s)| (ns_label(ns), u64::from(!s["fenced_by"].is_null())))
            .collect();
        family(
            enc,
            "reef_fenced",
            "1 once another writer took the namespace over from this mount (it accepts no more writes).",
            MetricType::Gauge,
            &fenced,
        )?;
        let mut cache: Vec<(Vec<(&'static str, String)>, u64)> = Vec::new();
        let mut misses = Vec::new();
        for (ns, s) in &stats {
            let labels = vec![
                ("cache", "segment".to_string()),
                ("namespace", ns.to_string()),
            ];
            cache.push((labels.clone(), stat(s, "cache_hits")));
            misses.push((labels, stat(s, "cache_misses")));
        }
        if let Some((hits, miss)) = core.disk_cache_counts() {
            let labels = vec![("cache", "disk".to_string())];
            cache.push((labels.clone(), hits));
            misses.push((labels, miss));
        }
        family(
            enc,
            "reef_cache_hits",
            "Reads served by a cache: segment blocks and indexes in memory (per namespace), the disk cache (cache=DIR).",
            MetricType::Counter,
            &cache,
        )?;
        family(
            enc,
            "reef_cache_misses",
            "Reads a cache could not serve.",
            MetricType::Counter,
            &misses,
        )?;
        Self::encode_gc(engines, enc)?;
        Self::encode_group_sizes(engines, enc)
    }

    /// Garbage collection: passes, failures, and what they deleted by kind.
    fn encode_gc(engines: &[(String, Engine)], enc: &mut Enc) -> Result<(), std::fmt::Error> {
        let totals: Vec<_> = engines.iter().map(|(ns, e)| (ns, e.gc_totals())).collect();
        let per_ns = |f: &dyn Fn(&GcTotals) -> u64| -> Vec<_> {
            totals
                .iter()
                .map(|(ns, t)| (vec![("namespace", ns.to_string())], f(t)))
                .collect()
        };
        family(
            enc,
            "reef_gc_passes",
            "Garbage-collection passes run to their end (automatic after a flush or compaction, .gc).",
            MetricType::Counter,
            &per_ns(&|t| t.passes),
        )?;
        family(
            enc,
            "reef_gc_failures",
            "Garbage-collection passes that failed (the daemon logs why; the next pass retries).",
            MetricType::Counter,
            &per_ns(&|t| t.failures),
        )?;
        let by_kind = |f: &dyn Fn(&Count) -> u64| -> Vec<_> {
            let mut series = Vec::new();
            for (ns, t) in &totals {
                let d = &t.deleted;
                for (kind, count) in [
                    ("wal", &d.wal),
                    ("replaced_segment", &d.replaced_segments),
                    ("orphan_segment", &d.orphan_segments),
                    ("manifest", &d.manifests),
                ] {
                    let labels = vec![("kind", kind.to_string()), ("namespace", ns.to_string())];
                    series.push((labels, f(count)));
                }
            }
            series
        };
        family(
            enc,
            "reef_gc_deleted_objects",
            "Objects garbage collection deleted, by kind.",
            MetricType::Counter,
            &by_kind(&|c| c.objects),
        )?;
        family(
            enc,
            "reef_gc_deleted_bytes",
            "Bytes of the objects garbage collection deleted, by kind.",
            MetricType::Counter,
            &by_kind(&|c| c.bytes),
        )
    }

    fn encode_group_sizes(
        engines: &[(String, Engine)],
        enc: &mut Enc,
    ) -> Result<(), std::fmt::Error> {
        if engines.is_empty() {
            return Ok(());
        }
        let mut metric = enc.encode_descriptor(
            "reef_commit_group_documents",
            "Documents per WAL object (group commit shares one object among concurrent writes).",
            None,
            MetricType::Histogram,
        )?;
        for (ns, engine) in engines {
            let h = engine.group_sizes();
            let buckets: Vec<(f64, u64)> = h.buckets.iter().map(|(b, c)| (*b as f64, *c)).collect();
            let labels = [("namespace", ns.as_str())];
            metric.encode_family(&labels)?.encode_histogram(
                h.sum as f64,
                h.count,
                &buckets,
                None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
            )?;
        }
        Ok(())
    }
}

impl Collector for MountCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_fuse(&mut enc)?;
        let Some(core) = self.core.upgrade() else {
            return Ok(());
        };
        Self::encode_store(&core, &mut enc)?;
        let engines = core.open_engines();
        family(
            &mut enc,
            "reef_namespaces_open",
            "Namespaces whose engine is open in this mount.",
            MetricType::Gauge,
            &[(Vec::new(), engines.len() as u64)],
        )?;
        Self::encode_engines(&core, &engines, &mut enc)
    }
}
