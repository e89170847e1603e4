//! `reef completions SHELL` and `reef man`: shell completion scripts and
//! manual pages generated from the clap definitions, so they never drift
//! from what the CLI accepts. The Debian package (`scripts/build-deb.sh`)
//! installs both.

use std::io::Write;
use std::path::Path;

use clap_complete::Shell;

/// Writes the completion script for `shell` to stdout.
pub fn completions(mut cmd: clap::Command, shell: Shell) -> Result<(), String> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "reef", &mut out);
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| format!("cannot write the completions: {e}"))
}

/// Prints reef(1) to stdout, or with `dir` writes reef.1 and one page per
/// subcommand (reef-mount.1, …) there.
pub fn man(cmd: clap::Command, dir: Option<&Path>) -> Result<(), String> {
    let cmd = cmd.name("reef");
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(|e| format!("cannot write man pages to {}: {e}", dir.display()))
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| format!("cannot render the man page: {e}"))?;
            std::io::stdout()
                .write_all(&out)
                .map_err(|e| format!("cannot write the man page: {e}"))
        }
    }
}
