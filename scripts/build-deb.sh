#!/usr/bin/env bash
# Builds the Debian package: target/debian/reef_VERSION-1_ARCH.deb.
#
# Installs cargo-deb if it is missing, builds the release binary, generates
# the man pages and shell completions from it into target/deb/ (the package
# metadata in Cargo.toml picks them up from there), then packages. What the
# package installs: `dpkg-deb -c target/debian/reef_*.deb`; install it with
# `apt install ./target/debian/reef_*.deb` (pulls in fuse3).
#
# Usage: scripts/build-deb.sh [extra cargo-deb arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb (cargo install cargo-deb --locked)"
    cargo install cargo-deb --locked
fi

cargo build --release --bin reef
target="${CARGO_TARGET_DIR:-target}"
reef="$target/release/reef"

rm -rf target/deb
mkdir -p target/deb/man target/deb/completions
"$reef" man --dir target/deb/man
"$reef" completions bash >target/deb/completions/reef
"$reef" completions zsh >target/deb/completions/_reef
"$reef" completions fish >target/deb/completions/reef.fish

# --strip: the release profile keeps line tables (debug = 1) for backtraces;
# the package need not carry them (92 MB instead of about 25 MB).
cargo deb --no-build --strip "$@"
