//! GC of legacy manifests (written before manifests said whether they are
//! a writer's claim), on the memory, local and S3 (moto) stores: it deletes
//! the ones that were certainly flushes and keeps the claims, so a writer
//! fenced by a legacy claim stays fenced after GC.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use reef::admin;
use reef::engine::layout::manifest_key;
use reef::engine::{manifest, EngineError, Manifest};
use reef::store::ObjectStore;

/// Rewrites manifest `version` as the format before the claim fields: the
/// same JSON without `claim`, `claims` and the marker fields, sealed again
/// (magic and format version as they were, CRC32 of all preceding bytes).
async fn make_legacy(store: &Arc<dyn ObjectStore>, ns: &str, version: u64) {
    let key = manifest_key(ns, version);
    let data = store.get(&key).await.expect("get manifest");
    let m = Manifest::decode(data.clone(), version).expect("decode");
    let mut json = serde_json::to_value(&m).expect("to json");
    let fields = json.as_object_mut().expect("object");
    for old in ["claim", "claims", "markers_known_after", "markers"] {
        fields.remove(old);
    }
    let mut sealed = data[..12].to_vec();
    sealed.extend(serde_json::to_vec_pretty(&json).expect("json"));
    let crc = crc32fast::hash(&sealed);
    sealed.extend(crc.to_le_bytes());
    store.put(&key, Bytes::from(sealed)).await.expect("put");
    let legacy = manifest::read(store, ns, version)
        .await
        .expect("legacy decodes");
    assert_eq!(legacy.claim, None);
    assert!(legacy.claims.is_empty());
}

#[tokio::test]
async fn gc_deletes_legacy_flushes_and_keeps_legacy_claims_that_fence() {
    for backend in all_backends() {
        let name = backend.name;
        let store = &backend.store;
        let ns = "gc-legacy";
        // Writer A: claim 1, flushes 2 and 3, then a write it never flushes.
        let a = open_as(store, ns, "writer-a").await;
        for round in 0..2 {
            write_round(&a, round, 20).await;
            a.flush().await.expect("flush");
        }
        write_round(&a, 2, 20).await;
        // Writer B fences A: claim 4 (A's next version), flushes 5 and 6.
        let b = open_as(store, ns, "writer-b").await;
        for round in 3..5 {
            write_round(&b, round, 20).await;
            b.flush().await.expect("flush");
        }
        drop(b);
        assert_eq!(
            manifest::list_versions(store, ns).await.unwrap(),
            [1, 2, 3, 4, 5, 6]
        );
        for v in 1..=6 {
            make_legacy(store, ns, v).await;
        }

        // Writer C opens on that legacy history (claim 7), flushes (8) and
        // collects everything it can.
        let c = open_as(store, ns, "writer-c").await;
        write_round(&c, 5, 20).await;
        c.flush().await.expect("flush");
        let before = snapshot(&c).await;
        let report = c.gc(keep_nothing(&c)).await.expect("gc");
        assert!(report.complete, "{name}: {report:?}");
        // A, fenced by legacy claim 4, still fails its flush (its next
        // version is 4), its writes and its GC, and deletes nothing.
        match a.flush().await {
            Err(EngineError::Fenced { .. }) => {}
            other => panic!("{name}: fenced writer's flush: {other:?}"),
        }
        assert!(matches!(
            a.write(upsert_batch(vec![doc("zombie")])).await,
            Err(EngineError::Fenced { .. })
        ));
        assert!(matches!(
            a.gc(a.gc_options()).await,
            Err(EngineError::Fenced { .. })
        ));
        // 1 may be a claim (nothing before it), 4 is B's claim (another
        // writer than 3's), 7 is C's; 2, 3, 5 and 6 were flushes, and 8 is
        // C's flush before the commit GC proves ownership with.
        let kept = [1, 4, 7, report.manifest_version];
        assert_eq!(
            manifest::list_versions(store, ns).await.unwrap(),
            kept,
            "{name}: {report:?}"
        );
        assert_eq!(report.kept.manifests_claims, 3, "{name}: {report:?}");

        drop(a);
        assert_eq!(snapshot(&c).await, before, "{name}");
        drop(c);
        let reopened = open_as(store, ns, "writer-d").await;
        assert_eq!(snapshot(&reopened).await, before, "{name}");
        let health = admin::verify(store.clone(), ns).await.expect("verify");
        assert!(health.healthy, "{name}: {:?}", health.issues);
    }
}
