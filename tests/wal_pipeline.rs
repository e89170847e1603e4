//! Pipelined WAL puts (`engine::pipeline`, rules in `engine::wal`): several
//! groups in flight, each acknowledged only once it and every earlier group
//! are durable; a failed put fails its group and every later one in flight,
//! and nothing of them becomes visible, then or after a reopen. Also: a
//! cold point read costs one GET, because open preloads segment indexes.
//!
//! A failpoint fails one WAL put in the middle of a pipeline: the store
//! under it adds a fixed delay to every request, so the groups launched
//! before and after it are still in flight when it fails (the failpoint
//! answers at once), and the later puts land — objects past a hole that
//! recovery must not expose.

mod common;
#[path = "support/hooked_store.rs"]
mod hooked_store;
#[path = "support/poll.rs"]
mod poll;

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hooked_store::{HookedStore, StoreHooks};
use poll::wait_until_async;
use reef::admin;
use reef::engine::layout::{now_ms, parse_numbered, wal_dir, wal_key};
use reef::engine::wal::{WalKind, WalOp, WalRecord, PIPELINE_DEPTH};
use reef::engine::{Engine, EngineOptions, WriteAck};
use reef::store::{FailpointStore, LatencyStore, MemoryStore, MeteredStore, ObjectStore};
use reef::types::DocId;

/// `(seq, kind, writer)` of every WAL object of `ns`, in sequence order.
async fn wal_objects(store: &Arc<dyn ObjectStore>, ns: &str) -> Vec<(u64, WalKind, String)> {
    let dir = wal_dir(ns);
    let mut out = Vec::new();
    for meta in store.list(&dir, None).await.expect("list WAL") {
        let seq = parse_numbered(&dir, &meta.key).expect("WAL name");
        let data = store.get(&meta.key).await.expect("get WAL object");
        let rec = WalRecord::decode(data, seq).expect("decode WAL object");
        out.push((seq, rec.kind, rec.writer_id));
    }
    out
}

struct Outcome {
    result: Result<WriteAck, String>,
    done: Instant,
}

/// Writes one document per group, each launched only once the previous
/// group's put is in flight, so `n` groups are in the pipeline at once.
/// The `fail_at`-th of them (1-based) has its put fail.
async fn pipeline_with_failure(
    base: &Arc<dyn ObjectStore>,
    ns: &str,
    n: usize,
    fail_at: usize,
) -> (Engine, Vec<Outcome>) {
    let slow: Arc<dyn ObjectStore> =
        Arc::new(LatencyStore::fixed(base.clone(), Duration::from_millis(300)));
    let fp = Arc::new(FailpointStore::new(slow));
    let store: Arc<dyn ObjectStore> = fp.clone();
    let engine = open_engine(&store, ns).await;
    engine
        .write(upsert_batch(vec![doc("before")]))
        .await
        .expect("write before the pipeline");
    fp.fail_nth_put_matching("/wal/", fail_at);
    let mut tasks = Vec::new();
    for k in 1..=n {
        let puts = fp.puts();
        let e = engine.clone();
        tasks.push(tokio::spawn(async move {
            let result = e
                .write(upsert_batch(vec![doc(&format!("g{k}"))]))
                .await
                .map_err(|e| e.to_string());
            Outcome {
                result,
                done: Instant::now(),
            }
        }));
        wait_until_async("the group's WAL put to start", Duration::from_secs(10), || {
            fp.puts() > puts
        })
        .await;
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("writer task"));
    }
    (engine, outcomes)
}

/// Checks the outcomes of `pipeline_with_failure(.., 4, 2)`.
fn assert_first_acked_rest_failed(outcomes: &[Outcome], backend: &str) {
    let first = outcomes[0].result.as_ref().expect("group 1 is acknowledged");
    for (k, o) in outcomes.iter().enumerate().skip(1) {
        let err = o
            .result
            .as_ref()
            .expect_err("groups from the failed one on fail");
        if k > 1 {
            assert!(
                err.contains("earlier write"),
                "{backend}: group {}: {err}",
                k + 1
            );
        }
        // Group 1 was answered first: no failure is reported before the
        // groups in front of it have settled.
        assert!(
            o.done >= outcomes[0].done,
            "{backend}: group {} answered before group 1",
            k + 1
        );
    }
    assert!(first.seq > 0);
}

#[tokio::test]
async fn a_failed_put_fails_the_later_groups_and_recovery_hides_what_landed() {
    for ts in all_backends() {
        let ns = "pipe-crash";
        let (engine, outcomes) = pipeline_with_failure(&ts.store, ns, 4, 2).await;
        assert_first_acked_rest_failed(&outcomes, ts.name);
        let acked = outcomes[0].result.as_ref().unwrap().seq;
        let ids = scan_ids(&engine).await;
        assert_eq!(ids, vec!["before", "g1"], "{}", ts.name);

        // The puts of groups 3 and 4 landed past the hole group 2 left.
        let wal = wal_objects(&ts.store, ns).await;
        let after: Vec<u64> = wal.iter().map(|w| w.0).filter(|s| *s > acked).collect();
        assert_eq!(after, vec![acked + 2, acked + 3], "{}: {wal:?}", ts.name);
        assert!(wal
            .iter()
            .filter(|w| w.0 > acked)
            .all(|w| w.1 == WalKind::Batch));

        // "Crash": the writer goes away before it writes again.
        drop(engine);
        let reopened = open_engine(&ts.store, ns).await;
        assert_eq!(scan_ids(&reopened).await, vec!["before", "g1"], "{}", ts.name);
        for k in 2..=4 {
            let id = DocId::from(format!("g{k}"));
            assert!(reopened.get(&id).await.unwrap().is_none(), "{}: {id}", ts.name);
        }
        // A follower sees the same.
        let follower = open_follower(&ts.store, ns).await;
        assert_eq!(scan_ids(&follower).await, vec!["before", "g1"], "{}", ts.name);

        // The new writer writes past the strays; they stay hidden for good.
        let ack = reopened
            .write(upsert_batch(vec![doc("after")]))
            .await
            .expect("write after reopen");
        assert!(ack.seq > acked + 3, "{}: {ack:?}", ts.name);
        follower.refresh().await.expect("refresh");
        assert_eq!(
            scan_ids(&follower).await,
            vec!["after", "before", "g1"],
            "{}",
            ts.name
        );
        drop(reopened);
        let again = open_engine(&ts.store, ns).await;
        assert_eq!(
            scan_ids(&again).await,
            vec!["after", "before", "g1"],
            "{}",
            ts.name
        );
        again.flush().await.expect("flush");
        drop(again);
        let flushed = open_engine(&ts.store, ns).await;
        assert_eq!(
            scan_ids(&flushed).await,
            vec!["after", "before", "g1"],
            "{}",
            ts.name
        );
        let report = admin::verify(ts.store.clone(), ns).await.expect("verify");
        assert!(report.healthy, "{}: {report:?}", ts.name);
    }
}

#[tokio::test]
async fn a_live_writer_voids_its_strays_before_it_writes_on() {
    for ts in all_backends() {
        let ns = "pipe-heal";
        let (engine, outcomes) = pipeline_with_failure(&ts.store, ns, 4, 2).await;
        assert_first_acked_rest_failed(&outcomes, ts.name);
        let acked = outcomes[0].result.as_ref().unwrap().seq;

        let ack = engine
            .write(upsert_batch(vec![doc("next")]))
            .await
            .expect("the next write succeeds");
        assert_eq!(ack.seq, acked + 4, "{}: written after the strays", ts.name);
        let wal = wal_objects(&ts.store, ns).await;
        let healed: Vec<WalKind> = wal
            .iter()
            .filter(|w| w.0 > acked && w.0 < ack.seq)
            .map(|w| w.1)
            .collect();
        assert_eq!(healed, vec![WalKind::Void; 3], "{}: {wal:?}", ts.name);
        assert_eq!(
            scan_ids(&engine).await,
            vec!["before", "g1", "next"],
            "{}",
            ts.name
        );

        drop(engine);
        let reopened = open_engine(&ts.store, ns).await;
        assert_eq!(
            scan_ids(&reopened).await,
            vec!["before", "g1", "next"],
            "{}",
            ts.name
        );
        let report = admin::verify(ts.store.clone(), ns).await.expect("verify");
        assert!(report.healthy, "{}: {report:?}", ts.name);
    }
}

async fn open_follower(store: &Arc<dyn ObjectStore>, ns: &str) -> Engine {
    let opts = EngineOptions {
        read_only: true,
        ..EngineOptions::default()
    };
    Engine::open(store.clone(), ns, opts).await.expect("follower")
}

fn as_writer(id: &str) -> EngineOptions {
    EngineOptions {
        writer_id: Some(id.to_string()),
        ..EngineOptions::default()
    }
}

/// A writer (`zombie`) that wrote once, then a new writer that took the
/// namespace over, wrote and flushed; and the zombie's WAL sequence then,
/// whose next slot (`last + 1`) holds the new writer's fence.
async fn taken_over(ts: &TestStore, ns: &str) -> (Engine, Engine, u64) {
    let zombie = Engine::open(ts.store.clone(), ns, as_writer("zombie"))
        .await
        .expect("open the first writer");
    let last = zombie
        .write(upsert_batch(vec![doc("before")]))
        .await
        .expect("write")
        .seq;
    let writer = Engine::open(ts.store.clone(), ns, as_writer("new"))
        .await
        .expect("take over");
    writer
        .write(upsert_batch(vec![doc("acked")]))
        .await
        .expect("write after the takeover");
    writer.flush().await.expect("flush");
    (zombie, writer, last)
}

/// The zombie's puts that were in flight behind its failed one at
/// `last + 1` land now, wherever a slot is free; returns where they did.
async fn land_strays(ts: &TestStore, ns: &str, last: u64) -> Vec<u64> {
    let mut landed = Vec::new();
    for seq in last + 2..=last + PIPELINE_DEPTH {
        let mut stray = WalRecord::marker("zombie", seq, WalKind::Batch, None);
        stray.ops.push(WalOp {
            id: DocId::from(format!("stray-{seq}")),
            json: Some(bytes::Bytes::from_static(b"{}")),
            mtime: now_ms(),
        });
        if ts
            .store
            .put_if_absent(&wal_key(ns, seq), stray.encode())
            .await
            .is_ok()
        {
            landed.push(seq);
        }
    }
    landed
}

/// The new writer goes on writing, and it, a reopen and a follower all see
/// exactly the acknowledged documents; verify finds nothing wrong.
async fn only_acknowledged_writes_count(ts: &TestStore, ns: &str, writer: Engine, landed: &[u64]) {
    writer
        .write(upsert_batch(vec![doc("later")]))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}: the new writer goes on (strays at {landed:?}): {e}",
                ts.name
            )
        });
    let want = vec!["acked", "before", "later"];
    assert_eq!(scan_ids(&writer).await, want, "{}", ts.name);
    drop(writer);
    let reopened = open_engine(&ts.store, ns).await;
    assert_eq!(
        scan_ids(&reopened).await,
        want,
        "{}: strays at {landed:?}",
        ts.name
    );
    let follower = open_follower(&ts.store, ns).await;
    assert_eq!(scan_ids(&follower).await, want, "{}", ts.name);
    let report = admin::verify(ts.store.clone(), ns).await.expect("verify");
    assert!(report.healthy, "{}: {report:?}", ts.name);
}

/// A zombie: a writer still running when another takes the namespace
/// over, with puts in flight that land late, after the new writer has
/// written and flushed. None of them may ever be applied, and none may
/// stop the new writer (`engine::wal`, "the fence claims the whole window").
#[tokio::test]
async fn a_zombie_writers_late_puts_are_never_applied() {
    for ts in all_backends() {
        let ns = "pipe-zombie";
        let (zombie, writer, last) = taken_over(&ts, ns).await;
        let landed = land_strays(&ts, ns, last).await;
        only_acknowledged_writes_count(&ts, ns, writer, &landed).await;
        drop(zombie);
    }
}

/// The VOIDs that claim a fence's window are nobody's next slot: the writer
/// the fence stopped aims at the fence itself. So GC deletes them once a
/// flush covers them, keeping one marker (the FENCE) per takeover, and a
/// zombie's puts that land in the freed slots afterwards stay unapplied.
#[tokio::test]
async fn gc_frees_window_claims_and_late_strays_in_them_stay_harmless() {
    for ts in all_backends() {
        let ns = "pipe-window-gc";
        let (zombie, writer, last) = taken_over(&ts, ns).await;
        writer
            .gc(reef::engine::GcOptions {
                retain: Duration::ZERO,
                ..writer.gc_options()
            })
            .await
            .expect("gc");
        let left: Vec<(u64, WalKind)> = wal_objects(&ts.store, ns)
            .await
            .into_iter()
            .map(|(seq, kind, _)| (seq, kind))
            .collect();
        assert!(
            left.contains(&(last + 1, WalKind::Fence)),
            "{}: the fence stays: {left:?}",
            ts.name
        );
        let window = last + 2..=last + PIPELINE_DEPTH;
        assert!(
            !left.iter().any(|(seq, _)| window.contains(seq)),
            "{}: the window's claims are garbage once flushed: {left:?}",
            ts.name
        );
        let landed = land_strays(&ts, ns, last).await;
        assert_eq!(
            landed,
            window.collect::<Vec<_>>(),
            "{}: the freed slots",
            ts.name
        );
        let late = zombie.write(upsert_batch(vec![doc("zombie-late")])).await;
        assert!(
            matches!(late, Err(reef::engine::EngineError::Fenced { .. })),
            "{}: the zombie is still fenced: {late:?}",
            ts.name
        );
        only_acknowledged_writes_count(&ts, ns, writer, &landed).await;
    }
}

/// Hooks that count the WAL puts in flight and hold the first one until
/// a second starts or `HOLD` has passed.
#[derive(Debug)]
struct WalPutsInFlight {
    now: AtomicUsize,
    most: AtomicUsize,
    started: AtomicUsize,
}

impl WalPutsInFlight {
    const HOLD: Duration = Duration::from_secs(2);
}

#[async_trait::async_trait]
impl StoreHooks for WalPutsInFlight {
    async fn before_put(&self, key: &str, _data: &bytes::Bytes) {
        if !key.contains("/wal/") {
            return;
        }
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        if self.started.fetch_add(1, SeqCst) == 0 {
            let deadline = Instant::now() + Self::HOLD;
            while self.started.load(SeqCst) < 2 && Instant::now() < deadline {
                tokio::task::yield_now().await;
            }
        }
    }
    fn after_put(&self, key: &str) {
        if key.contains("/wal/") {
            self.now.fetch_sub(1, SeqCst);
        }
    }
}

/// On a local directory overlapping puts only add flushes, so a writer
/// keeps one WAL put in flight and the writes queued behind it share the
/// next (`ObjectStore::overlapping_puts_help`); elsewhere it pipelines.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_store_commits_one_wal_put_at_a_time_and_groups_the_rest() {
    for (name, overlapping, base) in [
        ("local", false, localfs_backend()),
        ("memory", true, memory_backend()),
    ] {
        let store = HookedStore::new(
            base.store.clone(),
            WalPutsInFlight {
                now: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
                // Not armed (no hold) until the engine is open.
                started: AtomicUsize::new(usize::MAX / 2),
            },
        );
        assert_eq!(store.overlapping_puts_help(), overlapping, "{name}");
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let engine = open_engine(&dyn_store, "one-put").await;
        let before = engine.stats()["wal_objects_written"].as_u64().unwrap();
        let hooks = &store.hooks;
        hooks.started.store(0, SeqCst);
        hooks.most.store(0, SeqCst);
        let spawn = |w: usize| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .write(upsert_batch(vec![doc(&format!("w{w:02}"))]))
                    .await
                    .expect("write")
            })
        };
        // The first write's put is held at the store; the other fifteen
        // arrive while it is.
        let mut writers = vec![spawn(0)];
        wait_until_async("the first WAL put to start", Duration::from_secs(10), || {
            hooks.started.load(SeqCst) > 0
        })
        .await;
        writers.extend((1..16).map(spawn));
        for w in writers {
            w.await.expect("writer");
        }
        let most = hooks.most.load(SeqCst);
        let objects = engine.stats()["wal_objects_written"].as_u64().unwrap() - before;
        if overlapping {
            assert!(most > 1, "{name}: the pipeline overlaps puts ({most} at most)");
        } else {
            assert_eq!(most, 1, "{name}: one WAL put in flight at a time");
            assert!(
                objects <= 3,
                "{name}: the writes queued behind the held put share the next ({objects} objects for 16)"
            );
        }
        assert_eq!(doc_count(&engine).await, 16, "{name}");
    }
}

/// With jittered latency puts complete out of order; still, when a write
/// is acknowledged, its WAL object and every earlier one are in the store.
#[tokio::test]
async fn acks_come_only_after_every_earlier_group_is_durable() {
    let base: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let slow: Arc<dyn ObjectStore> = Arc::new(
        LatencyStore::new(
            base.clone(),
            Duration::from_millis(1)..Duration::from_millis(40),
        )
        .with_seed(7),
    );
    let ns = "pipe-order";
    let engine = open_engine(&slow, ns).await;
    let first = engine.stats()["last_wal_seq"].as_u64().unwrap() + 1;
    let tasks: Vec<_> = (0..24)
        .map(|w| {
            let engine = engine.clone();
            let base = base.clone();
            tokio::spawn(async move {
                let mut max_seq = 0;
                for k in 0..6 {
                    let ack = engine
                        .write(upsert_batch(vec![doc(&format!("w{w:02}-{k}"))]))
                        .await
                        .expect("write");
                    let present: Vec<u64> = base
                        .list(&wal_dir(ns), None)
                        .await
                        .unwrap()
                        .iter()
                        .filter_map(|m| parse_numbered(&wal_dir(ns), &m.key))
                        .filter(|s| *s >= first && *s <= ack.seq)
                        .collect();
                    let expected: Vec<u64> = (first..=ack.seq).collect();
                    assert_eq!(present, expected, "acknowledged {ack:?} with a hole below");
                    max_seq = max_seq.max(ack.seq);
                }
                max_seq
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    assert_eq!(doc_count(&engine).await, 24 * 6);
    drop(engine);
    assert_eq!(doc_count(&open_engine(&base, ns).await).await, 24 * 6);
}

/// A batch's patch resolves against a group still in flight.
#[tokio::test]
async fn a_patch_sees_the_group_in_flight_before_it() {
    let base: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let slow: Arc<dyn ObjectStore> =
        Arc::new(LatencyStore::fixed(base.clone(), Duration::from_millis(100)));
    let fp = Arc::new(FailpointStore::new(slow));
    let store: Arc<dyn ObjectStore> = fp.clone();
    let engine = open_engine(&store, "pipe-patch").await;
    let puts = fp.puts();
    let e = engine.clone();
    let put =
        tokio::spawn(async move { e.write(upsert_batch(vec![doc("p").with("a", 1i64)])).await });
    wait_until_async("the first put to start", Duration::from_secs(10), || {
        fp.puts() > puts
    })
    .await;
    let patch = reef::types::Patch {
        id: DocId::from("p"),
        set: attrs(&[("b", i(2))]),
        ..Default::default()
    };
    engine.write(patch_batch(vec![patch])).await.expect("patch");
    put.await.unwrap().expect("put");
    let d = engine.get(&DocId::from("p")).await.unwrap().expect("p");
    assert_eq!(d.attributes.get("a"), Some(&i(1)));
    assert_eq!(d.attributes.get("b"), Some(&i(2)));
}

/// Three flushed segments with disjoint id ranges; a fresh engine's point
/// get costs the block's GET only, as long as the indexes fit the cache.
#[tokio::test]
async fn a_cold_point_get_costs_one_get() {
    let metered = Arc::new(MeteredStore::new(Arc::new(MemoryStore::new())));
    let store: Arc<dyn ObjectStore> = metered.clone();
    let ns = "cold-get";
    let engine = open_engine(&store, ns).await;
    for prefix in ["a", "b", "c"] {
        engine
            .write(upsert_batch(numbered_docs(prefix, 500)))
            .await
            .unwrap();
        engine.flush().await.unwrap();
    }
    drop(engine);
    for (cache_bytes, gets) in [(64 << 20, 1), (1, 2)] {
        let opts = EngineOptions {
            read_only: true,
            cache_bytes,
            ..EngineOptions::default()
        };
        let cold = Engine::open(store.clone(), ns, opts).await.expect("open");
        for id in ["a00007", "b00300", "c00499"] {
            let before = metered.snapshot();
            let found = cold.get(&DocId::from(id)).await.unwrap();
            assert!(found.is_some(), "{id}");
            let cost = metered.snapshot().since(&before);
            assert_eq!(
                (cost.get_requests, cost.requests()),
                (gets, gets),
                "{id} with a cache of {cache_bytes} bytes"
            );
        }
    }
}
