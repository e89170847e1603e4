//! `reef completions SHELL` and `reef man`: generated from the clap
//! definitions; the scripts parse, the pages render without a warning.

use std::process::{Command, Stdio};

const REEF: &str = env!("CARGO_BIN_EXE_reef");

fn reef(args: &[&str]) -> String {
    let out = Command::new(REEF).args(args).output().expect("run reef");
    assert!(
        out.status.success(),
        "reef {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

const SUBCOMMANDS: [&str; 6] = ["mount", "verify", "repair", "flush", "completions", "man"];

#[test]
fn completions_for_bash_zsh_and_fish_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = reef(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {} bytes", script.len());
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completions do not mention {sub}");
        }
        // Options of a subcommand are completed too.
        assert!(script.contains("foreground"), "{shell}: no mount --foreground");
    }
    // The bash script is valid bash.
    let script = reef(&["completions", "bash"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reef.bash");
    std::fs::write(&path, &script).expect("write");
    let status = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .expect("bash");
    assert!(status.success(), "bash -n rejects the completion script");
    let out = Command::new(REEF)
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "an unknown shell is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}

/// Renders a roff page with groff, all warnings on; returns the text.
fn render(page: &str) -> String {
    let mut child = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .env("GROFF_NO_SGR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("groff (scripts/test.sh installs groff-base)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("feed groff");
    let out = child.wait_with_output().expect("groff");
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && warnings.is_empty(), "groff: {warnings}");
    // Drop overstrike bold/underline (`X\bX`) to get plain text.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn the_man_page_renders_and_documents_every_subcommand() {
    let page = reef(&["man"]);
    assert!(page.contains(".TH reef 1"), "not a roff man page:\n{page}");
    let text = render(&page);
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "SUBCOMMANDS"] {
        assert!(text.contains(section), "no {section} in:\n{text}");
    }
    for sub in SUBCOMMANDS {
        assert!(
            text.contains(&format!("reef-{sub}(1)")),
            "reef(1) does not list {sub}"
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    reef(&["man", "--dir", dir.path().to_str().expect("utf-8 path")]);
    for sub in SUBCOMMANDS {
        let file = dir.path().join(format!("reef-{sub}.1"));
        let page =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let text = render(&page);
        assert!(text.contains("SYNOPSIS"), "{}:\n{text}", file.display());
    }
    let mount = render(&std::fs::read_to_string(dir.path().join("reef-mount.1")).expect("page"));
    for option in ["--foreground", "--metrics", "auto_unmount"] {
        assert!(
            mount.contains(option),
            "reef-mount(1) does not mention {option}:\n{mount}"
        );
    }
}
