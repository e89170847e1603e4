//! One conformance suite for every `ObjectStore` backend. What only the
//! local store does (temp files, directory pruning, put/delete races in one
//! directory) is tested in src/store/local_tests.rs, FailpointStore's
//! counting in src/store/failpoint.rs.
//!
//! S3 runs against moto (see tests/support/s3.rs). moto checks
//! If-None-Match before writing, not atomically, so the concurrent
//! create-if-absent race is proven only on the memory and local stores.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{localfs_backend, memory_backend, s3, s3_backend, TestStore};
use reef::store::{
    LatencyStore, MemoryStore, MeteredStore, ObjectStore, ObjectStoreAdapter, StoreError,
};

fn memory() -> Option<TestStore> {
    Some(memory_backend())
}

fn local() -> Option<TestStore> {
    Some(localfs_backend())
}

fn adapter_in_memory() -> Option<TestStore> {
    let inner = Arc::new(object_store::memory::InMemory::new());
    Some(TestStore::new(
        "adapter",
        Arc::new(ObjectStoreAdapter::new(inner)),
    ))
}

fn wrapped() -> Option<TestStore> {
    let latency = LatencyStore::new(
        Arc::new(MemoryStore::new()),
        Duration::ZERO..Duration::from_millis(2),
    );
    Some(TestStore::new(
        "metered latency",
        Arc::new(MeteredStore::new(Arc::new(latency))),
    ))
}

fn moto() -> Option<TestStore> {
    s3_backend()
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

mod cases {
    use super::*;

    pub async fn put_get_overwrite(store: &dyn ObjectStore) {
        store.put("ns/a", b("one")).await.expect("put");
        assert_eq!(store.get("ns/a").await.expect("get"), b("one"));
        store.put("ns/a", b("two!")).await.expect("overwrite");
        assert_eq!(store.get("ns/a").await.expect("get"), b("two!"));
        store.put("ns/empty", Bytes::new()).await.expect("put empty");
        assert_eq!(store.get("ns/empty").await.expect("get empty"), Bytes::new());
        let err = store.get("ns/missing").await.expect_err("missing");
        assert!(err.is_not_found(), "{err}");
        assert!(!store.describe().is_empty());
    }

    pub async fn get_range_bounds(store: &dyn ObjectStore) {
        store.put("r/obj", b("0123456789")).await.expect("put");
        for (range, want) in [
            (0..10, "0123456789"),
            (2..5, "234"),
            (9..10, "9"),
            (3..3, ""),
            (10..10, ""),
        ] {
            let got = store.get_range("r/obj", range.clone()).await;
            assert_eq!(got.expect("in bounds"), b(want), "{range:?}");
        }
        for range in [0..11, 9..12, 11..12, 20..30] {
            match store.get_range("r/obj", range.clone()).await {
                Err(StoreError::BadRange { size: 10, .. }) => {}
                other => panic!("{range:?}: expected BadRange, got {other:?}"),
            }
        }
        #[allow(clippy::reversed_empty_ranges)]
        let inverted = 5..4;
        assert!(matches!(
            store.get_range("r/obj", inverted).await,
            Err(StoreError::BadRange { .. })
        ));
        let err = store.get_range("r/missing", 0..1).await.expect_err("missing");
        assert!(err.is_not_found(), "{err}");
    }

    pub async fn list_prefix_offset(store: &dyn ObjectStore) {
        let keys = [
            "ns/wal/00000000000000000010",
            "nsx",
            "ns/manifest/00000000000000000001",
            "ns/wal/00000000000000000001",
            "ns2/wal/00000000000000000001",
            "ns/segments/s-1",
            "ns/wal/00000000000000000003",
        ];
        for (i, key) in keys.iter().enumerate() {
            store
                .put(key, Bytes::from(vec![b'x'; i + 1]))
                .await
                .expect("put");
        }
        let list = |prefix: &'static str, offset: Option<&'static str>| async move {
            let metas = store.list(prefix, offset).await.expect("list");
            metas.into_iter().map(|m| m.key).collect::<Vec<_>>()
        };
        let wal = [
            "ns/wal/00000000000000000001",
            "ns/wal/00000000000000000003",
            "ns/wal/00000000000000000010",
        ];
        assert_eq!(list("ns/wal/", None).await, wal);
        assert_eq!(
            list("ns/wal/000000000000000000", None).await,
            wal,
            "mid-name prefix"
        );
        assert_eq!(list("ns/wal/00000000000000000001", None).await, wal[..1]);
        assert_eq!(list("ns/wal/", Some(wal[0])).await, wal[1..]);
        assert_eq!(
            list("ns/wal/", Some("ns/wal/00000000000000000002")).await,
            wal[1..]
        );
        assert_eq!(list("ns/wal/", Some(wal[2])).await, Vec::<String>::new());
        assert_eq!(list("ns/wal/", Some("ns/")).await, wal, "offset before prefix");
        assert_eq!(list("ns/", Some("ns/segments/s-1")).await, wal);
        let ns = list("ns/", None).await;
        assert_eq!(ns.len(), 5);
        assert_eq!(ns[0], "ns/manifest/00000000000000000001");
        assert_eq!(ns[1], "ns/segments/s-1");
        assert_eq!(list("ns", None).await.len(), 7, "prefix ending mid-name");
        assert_eq!(list("nsx", None).await, ["nsx"]);
        assert_eq!(list("zzz/", None).await, Vec::<String>::new());
        let all = store.list("", None).await.expect("list all");
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort();
        assert_eq!(all.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(), sorted);
        for meta in &all {
            let i = keys.iter().position(|k| *k == meta.key).expect("known key");
            assert_eq!(meta.size, i as u64 + 1, "{}", meta.key);
        }
    }

    pub async fn delete_idempotent(store: &dyn ObjectStore) {
        store.delete("d/never-existed").await.expect("delete missing");
        store.put("d/x/y", b("1")).await.expect("put");
        store.delete("d/x/y").await.expect("delete");
        assert!(store.get("d/x/y").await.expect_err("gone").is_not_found());
        store.delete("d/x/y").await.expect("delete again");
        assert!(store.list("d/", None).await.expect("list").is_empty());
        // A deleted key can be created again.
        store.put("d/x/y", b("2")).await.expect("put again");
        assert_eq!(store.get("d/x/y").await.expect("get"), b("2"));
    }

    pub async fn put_if_absent_sequential(store: &dyn ObjectStore) {
        let key = "c/wal/00000000000000000001";
        store.put_if_absent(key, b("first")).await.expect("create");
        match store.put_if_absent(key, b("second")).await {
            Err(StoreError::AlreadyExists(k)) => assert_eq!(k, key),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        assert_eq!(store.get(key).await.expect("get"), b("first"));
        store.delete(key).await.expect("delete");
        store
            .put_if_absent(key, b("third"))
            .await
            .expect("create after delete");
        assert_eq!(store.get(key).await.expect("get"), b("third"));
    }

    pub async fn put_if_absent_race(store: Arc<dyn ObjectStore>) {
        const WRITERS: usize = 16;
        let key = "race/manifest/00000000000000000001";
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let data = Bytes::from(format!("writer-{i}"));
                    (i, store.put_if_absent(key, data).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.expect("task") {
                (i, Ok(())) => winners.push(i),
                (_, Err(StoreError::AlreadyExists(_))) => {}
                (i, Err(e)) => panic!("writer {i}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let stored = store.get(key).await.expect("get");
        assert_eq!(stored, Bytes::from(format!("writer-{}", winners[0])));
    }

    pub async fn bad_keys(store: &dyn ObjectStore) {
        for key in ["../x", "/x", "a//b", "a/../b", "x/"] {
            let bad = |r: Result<(), StoreError>| matches!(r, Err(StoreError::BadKey(_)));
            assert!(bad(store.put(key, b("x")).await), "put {key}");
            assert!(
                bad(store.put_if_absent(key, b("x")).await),
                "put_if_absent {key}"
            );
            assert!(bad(store.delete(key).await), "delete {key}");
            assert!(
                matches!(store.get(key).await, Err(StoreError::BadKey(_))),
                "get {key}"
            );
        }
        // Nothing escaped the store's root.
        assert!(store.list("", None).await.expect("list").is_empty());
    }
}

/// Runs each case on a fresh store from `$make`; a `None` store skips.
macro_rules! suite {
    ($name:ident, $make:expr, race: $race:expr, bad_keys: $bad:expr) => {
        mod $name {
            use super::*;

            async fn store() -> Option<TestStore> {
                tokio::task::spawn_blocking(|| $make)
                    .await
                    .expect("make backend")
            }

            #[tokio::test]
            async fn put_get_overwrite() {
                let Some(be) = store().await else { return };
                cases::put_get_overwrite(be.store.as_ref()).await;
            }

            #[tokio::test]
            async fn get_range_bounds() {
                let Some(be) = store().await else { return };
                cases::get_range_bounds(be.store.as_ref()).await;
            }

            #[tokio::test]
            async fn list_prefix_offset() {
                let Some(be) = store().await else { return };
                cases::list_prefix_offset(be.store.as_ref()).await;
            }

            #[tokio::test]
            async fn delete_idempotent() {
                let Some(be) = store().await else { return };
                cases::delete_idempotent(be.store.as_ref()).await;
            }

            #[tokio::test]
            async fn put_if_absent_sequential() {
                let Some(be) = store().await else { return };
                cases::put_if_absent_sequential(be.store.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn put_if_absent_race() {
                if !$race {
                    return;
                }
                let Some(be) = store().await else { return };
                for _ in 0..5 {
                    be.store
                        .delete("race/manifest/00000000000000000001")
                        .await
                        .expect("reset");
                    cases::put_if_absent_race(be.store.clone()).await;
                }
            }

            #[tokio::test]
            async fn bad_keys() {
                if !$bad {
                    return;
                }
                let Some(be) = store().await else { return };
                cases::bad_keys(be.store.as_ref()).await;
            }
        }
    };
}

// MemoryStore takes any string as a key; the stores that map keys onto
// paths validate them.
suite!(memory_store, memory(), race: true, bad_keys: false);
suite!(local_fs_store, local(), race: true, bad_keys: true);
suite!(adapter_in_memory_store, adapter_in_memory(), race: true, bad_keys: true);
suite!(metered_latency_store, wrapped(), race: true, bad_keys: false);
suite!(s3_moto, moto(), race: false, bad_keys: true);

mod s3_specific {
    use super::*;
    use futures::TryStreamExt;
    use object_store::ObjectStore as _;

    #[tokio::test]
    async fn s3_url_from_env_round_trips_under_its_prefix() {
        let Some(server) = s3::shared() else { return };
        let prefix = s3::unique_prefix("url");
        let source = format!("s3://{}/{prefix}/data", server.bucket);
        let store = reef::store::open_store_with_env(&source, server.env()).expect("open s3 url");
        assert_eq!(store.describe(), source);
        store
            .put_if_absent("ns/wal/00000000000000000001", b("w"))
            .await
            .expect("create");
        // If-None-Match: * reached moto and was refused.
        assert!(matches!(
            store
                .put_if_absent("ns/wal/00000000000000000001", b("x"))
                .await,
            Err(StoreError::AlreadyExists(_))
        ));
        let raw = server.builder().build().expect("raw client");
        let keys: Vec<String> = raw
            .list(Some(&object_store::path::Path::from(prefix.as_str())))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("raw list");
        assert_eq!(keys, [format!("{prefix}/data/ns/wal/00000000000000000001")]);
    }
}
