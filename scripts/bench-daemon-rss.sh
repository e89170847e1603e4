#!/usr/bin/env bash
# Daemon memory against namespace size (issue 8): DOCS small documents
# written through a real mount (local directory store) by WRITERS parallel
# writer processes, each file opened, written and closed. Prints the daemon's
# RSS every STEP documents (so growth per document shows as a slope), its
# peak (VmHWM), the inodes it holds (`.stats`), and the same figures after
# the kernel dropped its dentries and inodes (`drop_caches`: every inode is
# forgotten, so what is left is the daemon's own floor). Then `.flush` and `.compact`
# through the mount (the daemon's RSS after it), and after unmounting
# `reef gc --retain 0`: the store's objects and bytes against the logical
# bytes (the documents' own sizes).
# Usage: scripts/bench-daemon-rss.sh [DOCS] [WRITERS] [STEP]
#   HEAPTRACK=1: run the daemon under heaptrack, print its summary.
#   REEF_BIN=PATH: the reef binary to measure (default: a release build).
#   MOUNT_OPTS=a,b: extra `-o` options of the mount (e.g. max_inodes=0).
#   COMPACT=0: skip the compaction and GC stage.
#   BODY_REPEATS=N: the body holds "lorem ipsum dolor sit amet " N times
#   (default 1: documents of ~106 bytes; 6: ~240 bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
docs="${1:-1000000}"
writers="${2:-16}"
step="${3:-$((docs / 10))}"
body_repeats="${BODY_REPEATS:-1}"
# REEF_BIN: measure that binary (e.g. an older build, as a baseline).
source scripts/lib/bench-env.sh
bench_reef --bin reef
bench_work bench-rss
pid=
bench_on_exit() {
    if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi
}

mount_args=("$work/store" "$mnt" -f)
if [ -n "${MOUNT_OPTS:-}" ]; then mount_args+=(-o "$MOUNT_OPTS"); fi
if [ "${HEAPTRACK:-0}" = 1 ]; then
    heaptrack -o "$work/heap" "$reef" mount "${mount_args[@]}" >"$work/daemon.log" 2>&1 &
else
    "$reef" mount "${mount_args[@]}" >"$work/daemon.log" 2>&1 &
fi
launcher=$!
deadline=$((SECONDS + 60))
until grep -q " $mnt fuse" /proc/self/mounts; do
    [ "$SECONDS" -lt "$deadline" ] || { cat "$work/daemon.log"; exit 1; }
    sleep 0.1
done
# The daemon: the reef process itself (heaptrack runs it as a child).
pid=$launcher
if [ "${HEAPTRACK:-0}" = 1 ]; then
    pid=$(pgrep -P "$launcher" -f "^$reef mount")
fi
status() { awk -v k="$1:" '$1 == k { print int($2 / 1024) }' "/proc/$pid/status"; }
inodes() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("inodes", "?"))' "$mnt/ns/.stats"; }

mkdir "$mnt/ns"
printf '%10s %10s %10s %10s\n' docs "RSS MiB" "peak MiB" inodes
printf '%10d %10d %10d %10s\n' 0 "$(status VmRSS)" "$(status VmHWM)" "$(inodes)"
t0=$(date +%s.%N)
for ((lo = 0; lo < docs; lo += step)); do
    hi=$((lo + step < docs ? lo + step : docs))
    python3 - "$mnt/ns" "$lo" "$hi" "$writers" "$body_repeats" <<'PY'
import sys
from concurrent.futures import ProcessPoolExecutor
d, lo, hi, p = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
FMT = '{"title": "document %d", "n": %d, "tags": ["alpha", "beta"], "body": "' + "lorem ipsum dolor sit amet " * int(sys.argv[5]) + '"}'
def work(w):
    for k in range(lo + w, hi, p):
        with open(f"{d}/d{k:07}.json", "w") as f:
            f.write(FMT % (k, k))
with ProcessPoolExecutor(p) as ex:
    list(ex.map(work, range(p)))
PY
    printf '%10d %10d %10d %10s\n' "$hi" "$(status VmRSS)" "$(status VmHWM)" "$(inodes)"
done
t1=$(date +%s.%N)
printf 'wrote %d docs with %d writers in %.1f s (%.0f docs/s)\n' "$docs" "$writers" \
    "$(echo "$t1 - $t0" | bc -l)" "$(echo "$docs / ($t1 - $t0)" | bc -l)"
sync
echo 2 >/proc/sys/vm/drop_caches
printf 'after drop_caches: RSS %d MiB, inodes %s\n' "$(status VmRSS)" "$(inodes)"
if [ "${COMPACT:-1}" = 1 ]; then
    t0=$(date +%s.%N)
    # Flushed first, so the WAL tail (the memtable's documents) is in
    # segments too and GC may delete it.
    touch "$mnt/ns/.flush"
    touch "$mnt/ns/.compact"
    t1=$(date +%s.%N)
    printf 'after .flush + .compact (%.1f s): RSS %d MiB, peak %d MiB, segments %s\n' \
        "$(echo "$t1 - $t0" | bc -l)" "$(status VmRSS)" "$(status VmHWM)" \
        "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["segments"])' "$mnt/ns/.stats")"
fi
fusermount3 -u "$mnt"
wait "$launcher" || true
pid=
if [ "${COMPACT:-1}" = 1 ]; then
    "$reef" gc "$work/store" ns --retain 0 >"$work/gc.json"
    objects=$(find "$work/store" -type f | wc -l)
    bytes=$(find "$work/store" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
    # The documents exactly as written above.
    logical=$(python3 - "$docs" "$body_repeats" <<'PY'
import sys
fmt = '{"title": "document %d", "n": %d, "tags": ["alpha", "beta"], "body": "' + "lorem ipsum dolor sit amet " * int(sys.argv[2]) + '"}'
print(sum(len(fmt % (k, k)) for k in range(int(sys.argv[1]))))
PY
)
    printf 'store after .flush + .compact + reef gc --retain 0: %d objects, %d bytes = %.2fx the %d logical bytes\n' \
        "$objects" "$bytes" "$(echo "$bytes / $logical" | bc -l)" "$logical"
    # By kind: the directory below the namespace (wal, segments, manifests, ...).
    (cd "$work/store/ns" && find . -type f -printf '%h %s\n') |
        awk '{ split($1, p, "/"); n[p[2]]++; b[p[2]] += $2 } END { for (k in n) printf "  %-12s %7d objects %12d bytes\n", k, n[k], b[k] }'
fi
if [ "${HEAPTRACK:-0}" = 1 ]; then
    # Peak heap by the innermost reef (or fuser) function on each stack.
    heaptrack_print -f "$work"/heap*.zst --flamegraph-cost-type peak -F "$work/stacks" >/dev/null
    python3 - "$work/stacks" <<'PY'
import collections, sys
by = collections.Counter()
for line in open(sys.argv[1]):
    stack, _, cost = line.rstrip().rpartition(" ")
    frames = stack.split(";")
    pick = next((f for f in reversed(frames) if "reef::" in f or "reef.." in f), None)
    pick = pick or next((f for f in reversed(frames) if "fuser" in f), frames[-1])
    by[pick.split("::h")[0][:100]] += int(cost)
print(f"heap at peak: {sum(by.values()) / 1e6:.1f} MB, by innermost reef/fuser function:")
for f, cost in by.most_common(12):
    print(f"{cost / 1e6:9.2f} MB  {f}")
PY
fi
