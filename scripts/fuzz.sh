#!/usr/bin/env bash
# fuzz.sh: a long pass of the decoder fuzzers (tests/fuzz_decoders.rs, the
# disk-cache entry fuzzer in src/store/disk_cache/entry.rs, tests/fuzz_fs.rs).
# CI runs the same tests with 20,000 cases per target; this runs CASES
# (default 1,000,000) per target and prints the input count of each.
#
# Usage: scripts/fuzz.sh [CASES] [--release]
# A failure prints proptest's minimal failing input: add it to
# tests/corpus/<target>/ (named for what it broke) with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-1000000}"
profile=()
[ "${2:-}" = "--release" ] && profile=(--release)
export REEF_FUZZ_CASES="$cases"
cargo test "${profile[@]}" --test fuzz_decoders -- --nocapture 2>&1 | grep -E '^fuzz |panicked|minimal|test result'
cargo test "${profile[@]}" --lib disk_cache::entry::fuzz -- --nocapture 2>&1 | grep -E '^fuzz |panicked|minimal|test result'
cargo test "${profile[@]}" --test fuzz_fs -- --nocapture 2>&1 | grep -E '^fuzz |panicked|minimal|test result'
