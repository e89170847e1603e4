#!/usr/bin/env bash
# Listing A/B (issue 10): `ls -l` of one directory of DOCS documents, then
# `find` of it right after (as in bench-fs.sh's rows) and once more, for
# each reef binary given, beside a native directory and bindfs of the same
# files, in interleaved rounds (so every binary meets the same load).
# The default DOCS is just over the kernel inode bound (max_inodes,
# 100,000), as bench-fs.sh --100k's directory is: `ls -l` then evicts, so
# no listing is kept and `find` pays the daemon's plain readdir per name.
# Each reef row also prints the daemon's own time in its READDIR and
# READDIRPLUS requests (from -o metrics), and their counts.
# Usage: scripts/bench-list-ab.sh [-n DOCS] [-r ROUNDS] REEF_BIN...
#   e.g. scripts/bench-list-ab.sh /work/main/target/release/reef target/release/reef
# Installs bindfs with apt when it is missing. Data lives under
# ${TMPDIR:-/tmp} and is deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/bench-env.sh
. scripts/lib/bench-env.sh
docs=110000
rounds=3
while getopts "n:r:" opt; do
    case "$opt" in
        n) docs="$OPTARG" ;;
        r) rounds="$OPTARG" ;;
        *) echo "usage: $0 [-n DOCS] [-r ROUNDS] REEF_BIN..." >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ "$#" -ge 1 ] || { echo "usage: $0 [-n DOCS] [-r ROUNDS] REEF_BIN..." >&2; exit 2; }
bins=()
for b in "$@"; do bins+=("$(realpath "$b")"); done
bench_need fusermount3:fuse3 bindfs:bindfs python3:python3 curl:curl bc:bc
bench_work list-ab
bind="$work/bind"
mkdir -p "$bind"
mounted() { grep -q " $1 fuse" /proc/self/mounts; }
unmount() {
    fusermount3 -u "$1" 2>/dev/null || fusermount3 -u -z "$1"
    while mounted "$1"; do sleep 0.05; done
}
bench_on_exit() { if mounted "$bind"; then fusermount3 -u -z "$bind" || true; fi; }

bench_listing_data "$work" "$docs" "${bins[0]}"

secs() { local t0; t0=$(date +%s.%N); "$@" >/dev/null; printf '%.3f' "$(echo "$(date +%s.%N) - $t0" | bc -l)"; }
port=$((20000 + RANDOM % 20000))
# The daemon's READDIR and READDIRPLUS seconds and counts so far.
daemon() {
    curl -s "127.0.0.1:$port/metrics" | awk '
        /^reef_fuse_request_duration_seconds_(sum|count)\{op="readdir(plus)?"\}/ {
            split($1, a, "\""); k = ($1 ~ /_sum/) ? a[2] " s" : a[2] " n"; v[k] = $2 }
        END { printf "readdir %.3f s / %d, readdirplus %.3f s / %d",
              v["readdir s"], v["readdir n"], v["readdirplus s"], v["readdirplus n"] }'
}
echo "reef bench-list-ab: $docs documents in one directory; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-5s %-40s %8s %8s %8s  %s\n' round target "ls -l s" "find s" "again s" "daemon (reef: both finds and the ls -l)"
for round in $(seq "$rounds"); do
    ls -l "$work/native/bench" >/dev/null
    printf '%-5s %-40s %8s %8s %8s\n' "$round" native "$(secs ls -l "$work/native/bench")" \
        "$(secs find "$work/native/bench")" "$(secs find "$work/native/bench")"
    bindfs "$work/native" "$bind"
    # bindfs's `ls -l` takes seconds per 10,000 files: once is enough.
    bl=-
    [ "$round" != 1 ] || bl=$(secs ls -l "$bind/bench")
    printf '%-5s %-40s %8s %8s %8s\n' "$round" bindfs "$bl" "$(secs find "$bind/bench")" "$(secs find "$bind/bench")"
    unmount "$bind"
    for b in "${bins[@]}"; do
        if ! out=$("$b" mount "$work/store" "$mnt" -o "metrics=127.0.0.1:$port" 2>&1); then
            echo "$out" >&2
            exit 1
        fi
        l=$(secs ls -l "$mnt/bench")
        f=$(secs find "$mnt/bench")
        a=$(secs find "$mnt/bench")
        d=$(daemon)
        unmount "$mnt"
        printf '%-5s %-40s %8s %8s %8s  %s\n' "$round" "$b" "$l" "$f" "$a" "$d"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
