//! Exhaustion: a local store on a full disk (a 2 MiB tmpfs mounted by the
//! test), and an S3 store answering 503 SlowDown for a while (through the
//! fault proxy). Writes fail with a clear error at close, nothing that was
//! acknowledged is lost, nothing refused shows up, and the same mount or
//! engine works again — no restart — once the condition clears.
//!
//! The tmpfs test needs root and FUSE (it passes with a note otherwise,
//! unless `REEF_REQUIRE_FUSE=1`); the 503 test needs moto.

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
#[path = "support/mounted.rs"]
mod mounted;
#[path = "support/proxied_s3.rs"]
mod proxied_s3;
#[path = "support/s3.rs"]
mod s3;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fault_proxy::{Fault, Rule};
use mounted::{fuse_available, write_close, Mounted};
use proxied_s3::{proxied_s3, ProxiedS3};
use reef::engine::{Engine, EngineOptions};
use reef::store::{LocalFsStore, ObjectStore};
use reef::types::{DocId, Document, WriteBatch};

/// A tmpfs of `size` mounted at a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
    point: PathBuf,
}

impl Tmpfs {
    fn new(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("reliability-enospc.")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let point = dir.path().join("disk");
        std::fs::create_dir(&point).expect("mkdir");
        let src = CString::new("tmpfs").expect("cstr");
        let target = CString::new(point.as_os_str().as_encoded_bytes()).expect("cstr");
        let data = CString::new(format!("size={size},mode=0755")).expect("cstr");
        // SAFETY: valid NUL-terminated strings for the call's duration.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            assert!(
                std::env::var_os("REEF_REQUIRE_FUSE").is_none(),
                "cannot mount a tmpfs ({e}): the full-disk test needs root"
            );
            eprintln!("skipping: cannot mount a tmpfs ({e}); run as root");
            return None;
        }
        Some(Tmpfs { dir, point })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.point.as_os_str().as_encoded_bytes()).expect("cstr");
        // SAFETY: as above.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        let _ = &self.dir;
    }
}

fn attributes(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    if let Some(o) = v.as_object_mut() {
        o.remove("id");
    }
    v
}

#[test]
fn a_full_local_disk_refuses_writes_clearly_and_recovers_without_restart() {
    if !fuse_available() {
        return;
    }
    let Some(disk) = Tmpfs::new("2m") else {
        return;
    };
    // Ballast, removed later to let the disk "clear".
    let ballast = disk.point.join("ballast");
    std::fs::write(&ballast, vec![0u8; 512 << 10]).expect("ballast");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFsStore::new(disk.point.join("store")).expect("local store"));
    let mnt = Mounted::new(store.clone(), "");
    let ns = mnt.join("full");
    std::fs::create_dir(&ns).expect("mkdir namespace");
    let body = |k: usize| format!(r#"{{"k":{k},"pad":"{}"}}"#, "x".repeat(8000));
    let mut acked = BTreeMap::new();
    let mut refused = None;
    for k in 0..1000 {
        match write_close(&ns.join(format!("d{k}.json")), body(k)) {
            Ok(()) => {
                acked.insert(k, ());
            }
            Err(e) => {
                refused = Some((k, e));
                break;
            }
        }
    }
    let (k_refused, err) = refused.expect("a 2 MiB disk must fill up");
    assert!(
        matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EIO)),
        "a full disk must fail the close with ENOSPC or EIO, got {err}"
    );
    assert!(!acked.is_empty(), "nothing fit before the disk was full");
    eprintln!(
        "disk full after {} documents: close failed with {err}",
        acked.len()
    );
    // Still full: refused again, and the refused document is not there.
    assert!(write_close(&ns.join("again.json"), body(0)).is_err());
    assert!(!ns.join(format!("d{k_refused}.json")).exists());
    // The disk clears: the same mount takes writes again.
    std::fs::remove_file(&ballast).expect("remove ballast");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match write_close(&ns.join("after.json"), r#"{"after":true}"#) {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "no recovery after space freed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for k in acked.keys() {
        assert_eq!(attributes(&ns.join(format!("d{k}.json")))["k"], *k as i64);
    }
    mnt.unmount();
    // And from the store itself, reopened: acknowledged present, refused absent.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let engine = Engine::open(store.clone(), "full", EngineOptions::default())
            .await
            .expect("reopen");
        for k in acked.keys() {
            assert!(engine
                .get(&DocId::from(format!("d{k}")))
                .await
                .expect("get")
                .is_some());
        }
        assert!(engine
            .get(&DocId::from(format!("d{k_refused}")))
            .await
            .expect("get")
            .is_none());
        assert!(engine.get(&DocId::from("after")).await.expect("get").is_some());
        drop(engine);
        let report = reef::admin::verify(store.clone(), "full")
            .await
            .expect("verify");
        assert!(report.healthy, "{report:?}");
    });
}

fn doc(id: &str, n: i64) -> Document {
    Document::new(id).with("n", n)
}

#[tokio::test(flavor = "multi_thread")]
async fn slowdown_503s_delay_or_refuse_writes_and_the_engine_recovers_without_restart() {
    let Some(ProxiedS3 {
        proxy,
        faulty,
        clean,
    }) = proxied_s3("slowdown")
    else {
        return;
    };
    let engine = Engine::open(faulty.clone(), "slow", EngineOptions::default())
        .await
        .expect("open");
    // A short spell (within object_store's retries): the write just waits.
    proxy.arm(Rule::new("PUT", "/slow/wal/", Fault::Status(503), 3));
    let started = Instant::now();
    engine
        .write(WriteBatch::new().upsert(doc("brief", 1)))
        .await
        .expect("three 503s are retried through");
    eprintln!("3 x 503: acknowledged after {:?}", started.elapsed());
    // A long one: every attempt answered 503 until the test lifts it.
    proxy.arm(Rule::new("PUT", "/slow/wal/", Fault::Status(503), u32::MAX));
    let started = Instant::now();
    let refused = engine.write(WriteBatch::new().upsert(doc("during", 2))).await;
    let took = started.elapsed();
    let err = refused.expect_err("a store that keeps answering 503 refuses the write");
    eprintln!("503 until lifted: refused after {took:?}: {err}");
    assert!(took < Duration::from_secs(90), "the refusal took {took:?}");
    assert!(
        err.to_string().contains("503") || err.to_string().to_lowercase().contains("slow"),
        "{err}"
    );
    proxy.disarm();
    // Lifted: the same engine writes again.
    engine
        .write(WriteBatch::new().upsert(doc("after", 3)))
        .await
        .expect("write after the 503s stop");
    drop(engine);
    let check = Engine::open(
        clean.clone(),
        "slow",
        EngineOptions {
            read_only: true,
            ..EngineOptions::default()
        },
    )
    .await
    .expect("clean reopen");
    for (id, want) in [("brief", true), ("during", false), ("after", true)] {
        let got = check.get(&DocId::from(id)).await.expect("get").is_some();
        assert_eq!(got, want, "{id}");
    }
}
