#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests drive
# (fuse3 and the shell tools the mount tests run, groff to render the man
# pages, moto's S3 server in a venv, cargo-deb), then runs every test — memory, local
# directory, S3 on loopback, and real FUSE mounts. CI runs exactly this
# (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in fusermount3:fuse3 rsync:rsync jq:jq vim:vim-tiny mount:mount stress-ng:stress-ng groff:groff-base; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} (needed by the mount tests)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -e /dev/fuse ] || { echo "no /dev/fuse: load the fuse module (modprobe fuse) or run in a container with --device /dev/fuse" >&2; exit 1; }

scripts/moto-venv.sh

# External filesystem suites (tests/external_suites.rs), built once and
# reused from ~/.cargo/bin afterwards.
for suite in pjdfstest fsx; do
    command -v "$suite" >/dev/null 2>&1 || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/$suite" ] ||
        cargo install --locked --debug "$suite" # debug: no optimizing pass to wait for; both suites run in seconds
done

# tests/packaging.rs builds the Debian package with cargo-deb (installed
# once into ~/.cargo/bin, like the suites above).
cargo deb --version >/dev/null 2>&1 || cargo install --locked cargo-deb

# Fail rather than skip when a backend or the mount cannot be set up.
export REEF_REQUIRE_DEB=1
export REEF_REQUIRE_S3=1
export REEF_REQUIRE_FUSE=1
export REEF_REQUIRE_EXTERNAL=1
export RUST_BACKTRACE=1
cargo build --bins
cargo test --all-targets -- "$@"
