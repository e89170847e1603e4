//! `reef gc` and `reef checkpoint`, run as the binary on a local store.

mod common;

use std::process::{Command, Output};
use std::sync::Arc;

use common::*;
use reef::engine::At;
use reef::store::{LocalFsStore, ObjectStore};

fn reef(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(args)
        .output()
        .expect("run reef")
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "reef failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn checkpoint_and_gc_commands() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().to_str().unwrap().to_string();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFsStore::new(dir.path().to_path_buf()).unwrap());
    let expected;
    {
        let engine = open_engine(&store, "ns").await;
        engine
            .write(upsert_batch(numbered_docs("a", 10)))
            .await
            .unwrap();
        engine.flush().await.unwrap();
        engine
            .write(upsert_batch(numbered_docs("b", 3)))
            .await
            .unwrap();
        expected = snapshot(&engine).await;
    }

    let cp = stdout_json(&reef(&["checkpoint", "create", &src, "ns", "snap1"]));
    assert_eq!(cp["name"], "snap1");
    let dup = reef(&["checkpoint", "create", &src, "ns", "snap1"]);
    assert!(!dup.status.success());
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));
    let bad = reef(&["checkpoint", "create", &src, "ns", ".x"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("invalid checkpoint name"),
        "{}",
        stderr(&bad)
    );
    let missing = reef(&["checkpoint", "delete", &src, "ns", "nope"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no checkpoint"),
        "{}",
        stderr(&missing)
    );
    let no_name = reef(&["checkpoint", "create", &src, "ns"]);
    assert!(!no_name.status.success());
    assert!(stderr(&no_name).contains("NAME"), "{}", stderr(&no_name));
    let listed = stdout_json(&reef(&["checkpoint", "list", &src, "ns"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    let bad = reef(&["gc", &src, "ns", "--retain", "soon"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("invalid duration"), "{}", stderr(&bad));

    let keys_before = store.list("ns/", None).await.unwrap();
    let dry = stdout_json(&reef(&["gc", &src, "ns", "--retain", "0", "--dry-run"]));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(store.list("ns/", None).await.unwrap(), keys_before);

    let report = stdout_json(&reef(&["gc", &src, "ns", "--retain", "0"]));
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["kept"]["checkpoints"][0], "snap1", "{report}");
    // The checkpoint still reads; the newest state is intact.
    let at = open_past(&store, "ns", At::Checkpoint("snap1".into()))
        .await
        .unwrap();
    assert_eq!(snapshot(&at).await, expected);
    let pinned = reef::engine::layout::manifest_key("ns", cp["manifest_version"].as_u64().unwrap());
    store.get(&pinned).await.expect("GC kept the pinned manifest");
    let out = reef(&["checkpoint", "delete", &src, "ns", "snap1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout_json(&reef(&["gc", &src, "ns", "--retain", "0"]));
    assert!(
        report["kept"]["checkpoints"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert!(
        store.get(&pinned).await.unwrap_err().is_not_found(),
        "the next GC frees what only the checkpoint pinned: {report}"
    );
    let engine = open_engine(&store, "ns").await;
    assert_eq!(snapshot(&engine).await, expected);
}
