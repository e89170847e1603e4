//! `.changes` and `reef changes` (DESIGN.md §8) through real mounts
//! (/dev/fuse) and the `reef` binary, on a local directory store and on S3
//! (moto): JSON lines in sequence order, `tail -f .changes` seeing a new
//! commit, the same lines from `reef changes`, `--from` resuming with no
//! gap and no duplicate, `--follow`, a `ro` follower mount's `.changes`,
//! and a resume point GC has collected refused.

#[path = "support/mounted.rs"]
mod mounted;
#[path = "support/s3.rs"]
mod s3;
#[path = "support/source.rs"]
mod source;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mounted::{fuse_available, read_text, write_close, Mounted};
use source::Source;

impl Source {
    fn reef(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reef"));
        cmd.envs(self.env());
        cmd
    }

    /// `reef changes SOURCE n ARGS..`, run to completion.
    fn changes(&self, args: &[&str]) -> std::process::Output {
        self.reef()
            .arg("changes")
            .arg(self.url())
            .arg("n")
            .args(args)
            .output()
            .expect("run reef changes")
    }
}

/// A child whose stdout is collected by a thread, killed on drop.
struct Collecting {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Collecting {
    fn spawn(mut cmd: Command) -> Collecting {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut stdout = child.stdout.take().expect("stdout");
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Collecting { child, out }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until the output contains `needle`.
    fn wait_for(&self, needle: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{what}: {needle} not seen in:\n{}",
                self.text()
            );
            std::thread::yield_now();
        }
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, PartialEq)]
struct Line {
    seq: u64,
    op: String,
    id: String,
}

fn parse(text: &str) -> Vec<Line> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            let fields: Vec<&String> = v.as_object().expect("object").keys().collect();
            assert_eq!(fields.len(), 4, "{l}");
            let time = v["time"].as_str().expect("time");
            humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("{time}: {e}"));
            Line {
                seq: v["seq"].as_u64().expect("seq"),
                op: v["op"].as_str().expect("op").to_string(),
                id: v["id"].as_str().expect("id").to_string(),
            }
        })
        .collect()
}

fn ops(lines: &[Line]) -> Vec<(String, String)> {
    lines.iter().map(|l| (l.op.clone(), l.id.clone())).collect()
}

fn changes_follow_every_commit(source: &Source) {
    let m = Mounted::new(source.open(), "");
    let ns = m.join("n");
    std::fs::create_dir(&ns).expect("mkdir namespace");
    write_close(&ns.join("a.json"), b"{}").unwrap();
    std::fs::create_dir(ns.join("d")).unwrap();
    write_close(&ns.join("d/b.json"), b"{\"b\": 1}").unwrap();
    std::fs::remove_file(ns.join("a.json")).unwrap();

    // Lines in sequence order; st_size is their exact length.
    let changes = ns.join(".changes");
    let text = read_text(&changes);
    let lines = parse(&text);
    assert_eq!(
        ops(&lines),
        [("upsert", "a"), ("upsert", "d/b"), ("delete", "a")]
            .map(|(o, i)| (o.to_string(), i.to_string())),
        "{text}"
    );
    assert!(lines.windows(2).all(|w| w[0].seq < w[1].seq), "{text}");
    assert_eq!(std::fs::metadata(&changes).unwrap().len(), text.len() as u64);

    // The same bytes for programs.
    let out = source.changes(&[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);

    // tail -f follows the file as commits land.
    let mut tail = Command::new("tail");
    tail.args(["-f", "-s", "0.1", "-n", "+1"]).arg(&changes);
    let tail = Collecting::spawn(tail);
    tail.wait_for("\"id\":\"d/b\"", "tail -f shows what is there");
    write_close(&ns.join("c.json"), b"{}").unwrap();
    tail.wait_for("\"id\":\"c\"", "tail -f sees a new commit");
    drop(tail);

    // Resume after any seq: no gap, no duplicate.
    let all = source.changes(&["--from", "0"]);
    assert!(all.status.success(), "{all:?}");
    let all_text = String::from_utf8_lossy(&all.stdout).into_owned();
    let all = parse(&all_text);
    assert_eq!(all.len(), 4, "{all_text}");
    for cut in all.iter().map(|l| l.seq) {
        let rest = source.changes(&["--from", &cut.to_string()]);
        assert!(rest.status.success(), "{rest:?}");
        let rest = parse(&String::from_utf8_lossy(&rest.stdout));
        let mut joined: Vec<&Line> = all.iter().filter(|l| l.seq <= cut).collect();
        joined.extend(rest.iter());
        assert_eq!(joined, all.iter().collect::<Vec<_>>(), "resumed after {cut}");
    }

    // --follow prints new commits as they land.
    let last = all.last().unwrap().seq.to_string();
    let mut follow = source.reef();
    follow
        .args(["changes", &source.url(), "n", "--follow", "--from", &last])
        .stdin(Stdio::null());
    let follow = Collecting::spawn(follow);
    write_close(&ns.join("e.json"), b"{}").unwrap();
    follow.wait_for("\"id\":\"e\"", "reef changes --follow");
    assert!(!follow.text().contains("\"id\":\"c\""), "{}", follow.text());
    drop(follow);

    // A ro follower mount shows the same file, and follows it.
    let f = Mounted::new(source.open(), "ro,refresh=100");
    let theirs = f.join("n/.changes");
    assert_eq!(read_text(&theirs), read_text(&changes));
    let mut tail = Command::new("tail");
    tail.args(["-f", "-s", "0.1", "-n", "+1"]).arg(&theirs);
    let tail = Collecting::spawn(tail);
    write_close(&ns.join("g.json"), b"{}").unwrap();
    tail.wait_for("\"id\":\"g\"", "tail -f on the follower");
    drop(tail);
    assert_eq!(read_text(&theirs), read_text(&changes));
    f.unmount();
    m.unmount();
}

#[test]
fn changes_on_a_local_store() {
    if !fuse_available() {
        return;
    }
    changes_follow_every_commit(&source::local());
}

#[test]
fn changes_on_s3() {
    if !fuse_available() {
        return;
    }
    let Some(source) = source::s3("changes") else {
        return;
    };
    changes_follow_every_commit(&source);
}

/// After GC with `retain=0` the lines start at the oldest retained change,
/// and resuming from before it is refused instead of skipping.
#[test]
fn a_resume_point_gc_collected_is_refused() {
    if !fuse_available() {
        return;
    }
    let source = source::local();
    let m = Mounted::new(source.open(), "retain=0");
    let ns = m.join("n");
    std::fs::create_dir(&ns).unwrap();
    for i in 0..5 {
        write_close(&ns.join(format!("x{i}.json")), b"{}").unwrap();
    }
    write_close(&ns.join(".flush"), b"").unwrap();
    write_close(&ns.join(".gc"), b"").unwrap();
    write_close(&ns.join("y.json"), b"{}").unwrap();
    let lines = parse(&read_text(&ns.join(".changes")));
    assert_eq!(ops(&lines), [("upsert".to_string(), "y".to_string())]);
    let out = source.changes(&["--from", "1"]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("collected") && err.contains("--from"), "{err}");
    m.unmount();
}
