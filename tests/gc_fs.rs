//! The `.gc` control file and the `retain=` mount option, through the
//! filesystem core (no mount needed).

#[path = "support/core_files.rs"]
mod core_files;

use std::sync::Arc;

use reef::fs::{FsCore, MountOptions, ROOT_INO};
use reef::store::{MemoryStore, ObjectStore};

async fn write_file(core: &FsCore, dir: u64, name: &str, content: &[u8]) {
    core_files::write_file(core, dir, name, content, usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

async fn read_json(core: &FsCore, dir: u64, name: &str) -> serde_json::Value {
    let (attr, data) = core_files::read_file(core, dir, name, 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(data.len() as u64, attr.size, "st_size is the exact length");
    serde_json::from_slice(&data).expect("JSON")
}

async fn wal_objects(store: &Arc<dyn ObjectStore>) -> usize {
    store.list("n/wal/", None).await.unwrap().len()
}

#[tokio::test]
async fn closing_dot_gc_collects_with_the_mounts_retention_and_reading_shows_the_report() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let opts = MountOptions::parse_o("retain=0").expect("retain=0 parses");
    let core = FsCore::new(store.clone(), opts.core_config());
    let ns = core.mkdir(ROOT_INO, "n").await.expect("mkdir").ino;
    for i in 0..20 {
        write_file(&core, ns, &format!("d{i}.json"), br#"{"a":1}"#).await;
    }
    let before = wal_objects(&store).await;
    // Reading before any run changes nothing and says so.
    let never = read_json(&core, ns, ".gc").await;
    assert!(never.get("report").is_none(), "{never}");
    write_file(&core, ns, ".flush", b"").await;
    write_file(&core, ns, ".gc", b"").await;
    let result = read_json(&core, ns, ".gc").await;
    assert_eq!(result["ok"], true, "{result}");
    let report = &result["report"];
    assert_eq!(report["retain_secs"], 0.0, "{report}");
    // The flush's own automatic pass already freed the flushed WAL; this
    // one frees the manifest that pass ran on.
    assert!(
        report["deleted"]["manifests"]["objects"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert_eq!(report["kept"]["wal_retained"], 0, "{report}");
    assert!(wal_objects(&store).await < before / 2);
    // Documents are all still there.
    for i in 0..20 {
        core.lookup(ns, &format!("d{i}.json")).await.expect("doc kept");
    }
}

#[tokio::test]
async fn the_default_retention_keeps_history_and_bad_durations_are_refused() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let core = FsCore::new(store.clone(), MountOptions::default().core_config());
    let ns = core.mkdir(ROOT_INO, "n").await.expect("mkdir").ino;
    for i in 0..5 {
        write_file(&core, ns, &format!("d{i}.json"), b"{}").await;
    }
    write_file(&core, ns, ".flush", b"").await;
    let before = wal_objects(&store).await;
    write_file(&core, ns, ".gc", b"").await;
    let result = read_json(&core, ns, ".gc").await;
    assert_eq!(result["report"]["deleted"]["wal"]["objects"], 0, "{result}");
    assert_eq!(wal_objects(&store).await, before);

    for bad in ["retain=soon", "retain=", "retain=-1h"] {
        let err = MountOptions::parse_o(bad).expect_err(bad).to_string();
        assert!(err.contains("duration"), "{bad}: {err}");
    }
    let opts = MountOptions::parse_o("retain=24h").unwrap();
    assert_eq!(
        opts.core_config().engine.retain,
        std::time::Duration::from_secs(86400)
    );
}
