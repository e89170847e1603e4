#!/usr/bin/env bash
# Builds the Debian package: target/debian/reef_VERSION-1_ARCH.deb.
#
# Works from a clean checkout: installs cargo-deb if it is missing, builds
# the binary, generates the man pages and shell completions from it into
# target/deb/ (the package metadata in Cargo.toml picks them up from there),
# then packages. What the package installs: `dpkg-deb -c target/debian/reef_*.deb`;
# install it with `apt install ./target/debian/reef_*.deb` (pulls in fuse3).
#
# REEF_DEB_PROFILE=dev packages the dev build instead of a release build
# (what tests/packaging.rs does: no release build to wait for; the package
# is the same but for the binary's speed).
#
# Usage: scripts/build-deb.sh [extra cargo-deb arguments, e.g. --output DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb (cargo install cargo-deb --locked)" >&2
    cargo install cargo-deb --locked
fi

profile="${REEF_DEB_PROFILE:-release}"
target="${CARGO_TARGET_DIR:-target}"
# REEF_DEB_NO_BUILD=1: the binary is built already (tests/packaging.rs runs
# under `cargo test`, which built it; a nested `cargo build` would rebuild
# the dependencies without the dev-dependencies' features, and back again).
build() { [ "${REEF_DEB_NO_BUILD:-}" = 1 ] || cargo build "$@" --bin reef; }
case "$profile" in
release)
    build --release
    reef="$target/release/reef"
    ;;
dev)
    build
    reef="$target/debug/reef"
    ;;
*)
    echo "REEF_DEB_PROFILE must be release or dev, not $profile" >&2
    exit 2
    ;;
esac

rm -rf target/deb
mkdir -p target/deb/man target/deb/completions
"$reef" man --dir target/deb/man
"$reef" completions bash >target/deb/completions/reef
"$reef" completions zsh >target/deb/completions/_reef
"$reef" completions fish >target/deb/completions/reef.fish

# --strip: the release profile keeps line tables (debug = 1) for backtraces;
# the package need not carry them (92 MB instead of about 25 MB).
# --profile: cargo-deb reads the binary of that profile (target/debug for
# dev) in place of the asset's target/release/reef.
cargo deb --no-build --strip --profile "$profile" "$@"
