//! Runs the examples of README.md's Semantics section (every ```sh
//! semantics block, in order) in one fresh real mount, so the documented
//! behaviour is the tested behaviour. A line starting with `! ` must fail;
//! every other line must succeed.

use std::process::Command;
use std::sync::Arc;

use reef::store::{MemoryStore, ObjectStore};

#[path = "support/mounted.rs"]
mod mounted;
use mounted::{fuse_available, Mounted};

/// The lines of every `sh semantics` block, in order.
fn examples(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in readme.lines() {
        match line.trim() {
            "```sh semantics" => inside = true,
            "```" if inside => inside = false,
            _ if inside => out.push(line.to_string()),
            _ => {}
        }
    }
    out
}

/// One line as a shell check that names the line when it does not hold.
fn check(line: &str) -> String {
    let quoted = line.replace('\'', r"'\''");
    match line.strip_prefix("! ") {
        Some(cmd) => {
            format!("if {cmd}\nthen echo 'succeeded but must fail: {quoted}' >&2; exit 1; fi")
        }
        None => format!("{line} || {{ echo 'failed: {quoted}' >&2; exit 1; }}"),
    }
}

#[test]
fn the_readme_semantics_examples_hold_on_a_real_mount() {
    if !fuse_available() {
        return;
    }
    let lines = examples(include_str!("../README.md"));
    assert!(
        lines.len() > 20,
        "README.md has {} semantics lines",
        lines.len()
    );
    let script: Vec<String> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| check(l))
        .collect();
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let m = Mounted::new(store, "rw");
    let out = Command::new("bash")
        .arg("-c")
        .arg(script.join("\n"))
        .current_dir(m.path())
        .env("TZ", "UTC")
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    m.unmount();
}
