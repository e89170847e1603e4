//! `reef import` and `reef export` (issue 13): run as the binary on a real
//! local store, plus an import interrupted by a failed WAL put.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use reef::engine::{Engine, EngineOptions};
use reef::store::{FailpointStore, LocalFsStore, ObjectStore};
use reef::transfer::{self, ImportOptions, TransferError};
use reef::types::DocId;

fn reef(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(args)
        .output()
        .expect("run reef")
}

fn reef_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run reef");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("reef output");
    feeder.join().expect("feeder").expect("write stdin");
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON report on stdout ({e}); stderr: {}", stderr(out)))
}

fn local(dir: &Path) -> Arc<dyn ObjectStore> {
    Arc::new(LocalFsStore::new(dir.to_path_buf()).expect("local store"))
}

/// Every live document of `ns`: (id, stored bytes, mtime in ns).
async fn contents(store: &Arc<dyn ObjectStore>, ns: &str) -> Vec<(String, Vec<u8>, u64)> {
    let opts = EngineOptions {
        read_only: true,
        ..EngineOptions::default()
    };
    let engine = Engine::open(store.clone(), ns, opts).await.expect("open");
    engine
        .scan_all()
        .await
        .expect("scan")
        .into_iter()
        .map(|d| (d.id.into_string(), d.json.to_vec(), d.mtime_ns))
        .collect()
}

fn write_file(path: &Path, bytes: &[u8], mtime: Option<SystemTime>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    if let Some(t) = mtime {
        f.set_modified(t).unwrap();
    }
}

fn mtime_ns(path: &Path) -> u64 {
    let t = std::fs::metadata(path).unwrap().modified().unwrap();
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn refusal_sources(r: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = r["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["source"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn reason_of(r: &serde_json::Value, source: &str) -> String {
    r["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["source"] == source)
        .unwrap_or_else(|| panic!("no refusal for {source}: {r}"))["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

const GOOD: [(&str, &str); 4] = [
    ("a1.json", "{\n  \"title\": \"Hello\",\n  \"n\": 3\n}\n"),
    ("2026/12/b.json", r#"{"x":[1,2,{"y":null}]}"#),
    ("deep/er/c.json", r#"{"id":"deep/er/c","n":1.5}"#),
    ("empty.json", ""),
];

#[tokio::test]
async fn a_nested_tree_imports_with_bad_files_refused_and_exports_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let (store_dir, good, mixed, out) = (
        tmp.path().join("store"),
        tmp.path().join("good"),
        tmp.path().join("mixed"),
        tmp.path().join("out"),
    );
    std::fs::create_dir_all(&store_dir).unwrap();
    let src = store_dir.to_str().unwrap();
    for (i, (name, body)) in GOOD.iter().enumerate() {
        // Distinct times with nanoseconds, as rsync -a and cp -p keep them.
        let t = UNIX_EPOCH + Duration::new(1_700_000_000 + i as u64 * 1000, 123_456_789 + i as u32);
        write_file(&good.join(name), body.as_bytes(), Some(t));
    }
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&good)
        .arg(&mixed)
        .status()
        .unwrap();
    assert!(cp.success());
    write_file(&mixed.join("bad.json"), br#"{"a":"#, None);
    write_file(&mixed.join("2026/arr.json"), b"[1,2]", None);
    write_file(&mixed.join("wrongid.json"), br#"{"id":"other"}"#, None);
    let big = format!("{{\"s\":\"{}\"}}", "x".repeat(5 << 20));
    write_file(&mixed.join("big.json"), big.as_bytes(), None);
    write_file(&mixed.join("notes.txt"), b"{}", None);
    write_file(&mixed.join(".hidden/h.json"), b"{}", None);

    let run = reef(&["import", src, "docs", mixed.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1), "refusals exit 1: {}", stderr(&run));
    let r = report(&run);
    assert_eq!(r["imported"], 4, "{r}");
    assert_eq!(r["skipped"], 0, "{r}");
    assert_eq!(r["refused"], 6, "{r}");
    assert_eq!(
        refusal_sources(&r),
        [
            ".hidden/",
            "2026/arr.json",
            "bad.json",
            "big.json",
            "notes.txt",
            "wrongid.json"
        ]
    );
    assert!(reason_of(&r, "bad.json").contains("invalid JSON"), "{r}");
    assert!(reason_of(&r, "2026/arr.json").contains("JSON object"), "{r}");
    assert!(reason_of(&r, "wrongid.json").contains("does not match"), "{r}");
    assert!(reason_of(&r, "big.json").contains("limit"), "{r}");

    // Exactly the good documents, bytes and times as in the files.
    let store = local(&store_dir);
    let stored = contents(&store, "docs").await;
    let mut want: Vec<(String, Vec<u8>, u64)> = GOOD
        .iter()
        .map(|(name, body)| {
            let id = name.strip_suffix(".json").unwrap().to_string();
            (id, body.as_bytes().to_vec(), mtime_ns(&good.join(name)))
        })
        .collect();
    want.sort();
    assert_eq!(stored, want);

    // A second run stores nothing new.
    let again = report(&reef(&["import", src, "docs", mixed.to_str().unwrap()]));
    assert_eq!(
        (again["imported"].as_u64(), again["skipped"].as_u64()),
        (Some(0), Some(4)),
        "{again}"
    );
    assert_eq!(again["refused"], 6);

    let exp = reef(&["export", src, "docs", out.to_str().unwrap()]);
    assert!(exp.status.success(), "{}", stderr(&exp));
    assert_eq!(report(&exp)["exported"], 4);
    let diff = Command::new("diff")
        .arg("-r")
        .arg(&good)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "export differs from the imported tree:\n{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    for (name, _) in GOOD {
        assert_eq!(mtime_ns(&out.join(name)), mtime_ns(&good.join(name)), "{name}");
    }
    // A second export into the same directory is refused, not mixed in.
    let twice = reef(&["export", src, "docs", out.to_str().unwrap()]);
    assert!(!twice.status.success());
    assert!(
        stderr(&twice).contains("not an empty directory"),
        "{}",
        stderr(&twice)
    );
}

/// Good lines, then every kind of bad one, in a JSON Lines text.
fn mixed_lines() -> (Vec<u8>, Vec<(&'static str, &'static str)>) {
    let good = vec![
        ("a", r#"{"id":"a","x":1}"#),
        ("n/m", r#"{"v":[1,2],"id":"n/m"}"#),
    ];
    let mut text = Vec::new();
    let big = format!("{{\"id\":\"big\",\"s\":\"{}\"}}", "x".repeat(5 << 20));
    let lines: Vec<String> = vec![
        good[0].1.to_string(),           // 1
        r#"{"id":"broken""#.to_string(), // 2 invalid JSON
        "[1,2]".to_string(),             // 3 not an object
        "".to_string(),                  // 4 blank: ignored
        r#"{"id":""}"#.to_string(),      // 5 bad id (empty)
        r#"{"id":7}"#.to_string(),       // 6 bad id (not a string)
        big,                             // 7 oversized
        r#"{"x":1}"#.to_string(),        // 8 no id
        good[1].1.to_string(),           // 9
    ];
    for l in lines {
        text.extend_from_slice(l.as_bytes());
        text.push(b'\n');
    }
    (text, good)
}

fn check_jsonl_report(r: &serde_json::Value) {
    assert_eq!(r["imported"], 2, "{r}");
    assert_eq!(r["refused"], 6, "{r}");
    assert_eq!(
        refusal_sources(r),
        ["line 2", "line 3", "line 5", "line 6", "line 7", "line 8"]
    );
    assert!(reason_of(r, "line 2").contains("invalid JSON"), "{r}");
    assert!(reason_of(r, "line 3").contains("object"), "{r}");
    assert!(reason_of(r, "line 5").contains("empty"), "{r}");
    assert!(reason_of(r, "line 6").contains("string"), "{r}");
    assert!(reason_of(r, "line 7").contains("at most"), "{r}");
    assert!(reason_of(r, "line 8").contains("no \"id\""), "{r}");
}

#[tokio::test]
async fn json_lines_from_a_file_and_from_stdin_with_bad_lines_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let src = store_dir.to_str().unwrap();
    let (text, good) = mixed_lines();
    let file = tmp.path().join("in.jsonl");
    std::fs::write(&file, &text).unwrap();

    let from_file = reef(&["import", src, "f", file.to_str().unwrap()]);
    assert_eq!(from_file.status.code(), Some(1), "{}", stderr(&from_file));
    check_jsonl_report(&report(&from_file));
    let from_stdin = reef_stdin(&["import", src, "s", "-"], &text);
    assert_eq!(from_stdin.status.code(), Some(1), "{}", stderr(&from_stdin));
    check_jsonl_report(&report(&from_stdin));

    let store = local(&store_dir);
    for ns in ["f", "s"] {
        let stored: Vec<(String, Vec<u8>)> = contents(&store, ns)
            .await
            .into_iter()
            .map(|(id, json, _)| (id, json))
            .collect();
        let want: Vec<(String, Vec<u8>)> = good
            .iter()
            .map(|(id, l)| (id.to_string(), l.as_bytes().to_vec()))
            .collect();
        assert_eq!(stored, want, "namespace {ns}");
    }
    // Re-running from stdin skips what is stored.
    let again = report(&reef_stdin(&["import", src, "s", "-"], &text));
    assert_eq!(
        (again["imported"].as_u64(), again["skipped"].as_u64()),
        (Some(0), Some(2)),
        "{again}"
    );

    // Export to stdout gives the stored lines back, in id order.
    let exp = reef(&["export", src, "s", "-"]);
    assert!(exp.status.success(), "{}", stderr(&exp));
    let want: String = good.iter().map(|(_, l)| format!("{l}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&exp.stdout), want);
}

#[tokio::test]
async fn an_import_interrupted_by_a_failed_wal_put_finishes_when_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let base = local(tmp.path());
    let n = 5_000;
    let mut text = Vec::new();
    for i in 0..n {
        writeln!(
            text,
            r#"{{"id":"doc/{i:05}","i":{i},"pad":"{}"}}"#,
            "p".repeat(i % 50)
        )
        .unwrap();
    }
    let opts = ImportOptions {
        batch_ops: 500,
        ..ImportOptions::default()
    };
    let fp = Arc::new(FailpointStore::new(base.clone()));
    let store: Arc<dyn ObjectStore> = fp.clone();
    let first = {
        let engine = open_engine(&store, "ns").await;
        // The 4th batch's WAL put fails.
        fp.fail_nth_put_matching("ns/wal/", 4);
        transfer::import_jsonl(&engine, &mut &text[..], Path::new("-"), opts, &|_| {}).await
    };
    let done = match first {
        Err(TransferError::Interrupted { done, source }) => {
            assert!(source.to_string().contains("fail"), "{source}");
            done
        }
        other => panic!("expected an interrupted import, got {other:?}"),
    };
    assert_eq!(done.imported, 1_500);
    assert_eq!(contents(&base, "ns").await.len(), 1_500, "whole batches only");

    let engine = open_engine(&base, "ns").await;
    let second = transfer::import_jsonl(&engine, &mut &text[..], Path::new("-"), opts, &|_| {})
        .await
        .unwrap();
    assert_eq!(
        (second.imported, second.skipped, second.refused),
        (3_500, 1_500, 0)
    );
    drop(engine);
    let stored = contents(&base, "ns").await;
    assert_eq!(stored.len(), n);
    for (line, (id, json, _)) in text.split(|&b| b == b'\n').zip(&stored) {
        assert_eq!(json.as_slice(), line, "{id}");
    }
    let engine = open_engine(&base, "ns").await;
    assert_unique_ids(&engine).await;
    assert!(engine.get(&DocId::from("doc/04999")).await.unwrap().is_some());
}

#[tokio::test]
async fn export_reads_an_earlier_seq_and_a_checkpoint_while_a_writer_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().to_str().unwrap();
    let v1 = "{\"id\":\"a\",\"v\":1}\n{\"id\":\"b\",\"v\":1}\n";
    let r1 = report(&reef_stdin(&["import", src, "ns", "-"], v1.as_bytes()));
    let seq1 = r1["last_seq"].as_u64().expect("a write was made");
    let cp = reef(&["checkpoint", "create", src, "ns", "v1"]);
    assert!(cp.status.success(), "{}", stderr(&cp));
    let v2 = "{\"id\":\"a\",\"v\":2}\n{\"id\":\"c\",\"v\":2}\n";
    let r2 = report(&reef_stdin(&["import", src, "ns", "-"], v2.as_bytes()));
    assert_eq!(r2["imported"], 2);

    // A live writer holds the namespace (as a mount would) and keeps
    // writing; exports only read, so it is not fenced.
    let store = local(tmp.path());
    let writer = open_engine(&store, "ns").await;
    writer
        .write(reef::types::WriteBatch::new().put_json("d", &b"{}"[..], None))
        .await
        .unwrap();

    let at = reef(&["export", src, "ns", "-", "--at", &seq1.to_string()]);
    assert!(at.status.success(), "{}", stderr(&at));
    assert_eq!(String::from_utf8_lossy(&at.stdout), v1);
    let by_cp = reef(&["export", src, "ns", "-", "--checkpoint", "v1"]);
    assert!(by_cp.status.success(), "{}", stderr(&by_cp));
    assert_eq!(String::from_utf8_lossy(&by_cp.stdout), v1);

    let file = tmp.path().join("now.jsonl");
    let now = reef(&[
        "export",
        src,
        "ns",
        file.to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert!(now.status.success(), "{}", stderr(&now));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{\"id\":\"a\",\"v\":2}\n{\"id\":\"b\",\"v\":1}\n{\"id\":\"c\",\"v\":2}\n{\"id\":\"d\"}\n"
    );
    writer
        .write(reef::types::WriteBatch::new().put_json("e", &b"{}"[..], None))
        .await
        .expect("the writer was not fenced by the exports");

    let gone = reef(&["export", src, "ns", "-", "--at", "999999"]);
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("not retained"), "{}", stderr(&gone));
}

#[tokio::test]
async fn export_at_a_time_reads_the_newest_state_committed_by_then() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().to_str().unwrap();
    let v1 = "{\"id\":\"a\",\"v\":1}\n";
    report(&reef_stdin(&["import", src, "ns", "-"], v1.as_bytes()));
    // A time after the first import's commit and before the second's:
    // commit times are milliseconds, so wait for the clock to move on.
    let t = SystemTime::now();
    let ms = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis();
    while ms(SystemTime::now()) <= ms(t) + 1 {
        std::thread::yield_now();
    }
    let v2 = "{\"id\":\"a\",\"v\":2}\n{\"id\":\"b\",\"v\":2}\n";
    report(&reef_stdin(&["import", src, "ns", "-"], v2.as_bytes()));

    let then = humantime::format_rfc3339_nanos(t).to_string();
    for at in [then.clone(), format!("@{then}")] {
        let out = reef(&["export", src, "ns", "-", "--at", &at]);
        assert!(out.status.success(), "{at}: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), v1, "{at}");
    }
    let now = humantime::format_rfc3339(SystemTime::now()).to_string();
    let out = reef(&["export", src, "ns", "-", "--at", &now]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), v2);

    let before = reef(&["export", src, "ns", "-", "--at", "1990-01-01T00:00:00Z"]);
    assert!(!before.status.success());
    let err = stderr(&before);
    assert!(
        err.contains("no retained state") && err.contains("are retained"),
        "{err}"
    );
    let bad = reef(&["export", src, "ns", "-", "--at", "yesterday"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("RFC 3339"), "{}", stderr(&bad));
}
