#!/usr/bin/env bash
# A long fsx run on a scratch file of a real mount (CI runs a short one in
# tests/external_suites.rs). Usage: scripts/fsx-long.sh [NUMOPS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
ops="${1:-1000000}"
seed="${2:-$RANDOM}"
# shellcheck source=lib/bench-env.sh
. scripts/lib/bench-env.sh
bench_need fusermount3:fuse3
command -v fsx >/dev/null 2>&1 || cargo install --locked fsx
cargo build --bins
work="$(mktemp -d /tmp/reef-fsx-XXXXXX)"
mnt="$work/mnt"
mkdir -p "$work/store" "$mnt"
target/debug/reef mount "$work/store" "$mnt" -o "log_file=$work/daemon.log"
trap 'fusermount3 -u "$mnt" || fusermount3 -u -z "$mnt"; echo "artifacts and log: $work"' EXIT
mkdir "$mnt/fsx"
echo "fsx: $ops operations, seed $seed"
fsx -N "$ops" -S "$seed" -P "$work" "$mnt/fsx/fsx.data"
