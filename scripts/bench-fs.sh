#!/usr/bin/env bash
# Filesystem benchmark: the same shell workload on a reef mount (local
# directory store) and on a plain local directory, in the same run, as ratios.
#   create+write+close of FILES small JSON files, `cat` of all of them,
#   `ls -l` of LS_FILES documents, `grep -r` over them.
# Usage: scripts/bench-fs.sh [FILES] [LS_FILES]
set -euo pipefail
cd "$(dirname "$0")/.."
files="${1:-10000}"
ls_files="${2:-100000}"
cargo build --release --quiet
reef="$PWD/target/release/reef"
work="$(mktemp -d "${TMPDIR:-/tmp}/reef-bench-fs.XXXXXX")"
mnt="$work/mnt"
plain="$work/plain"
mkdir -p "$mnt" "$plain"
cleanup() {
    fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
"$reef" mount "$work/store" "$mnt"

now() { date +%s.%N; }
# Writes N files named d<k>.json under DIR with P parallel writers, each
# file opened, written and closed (close is where reef commits).
write_files() {
    python3 - "$1" "$2" "$3" <<'PY'
import os, sys
from concurrent.futures import ProcessPoolExecutor
d, n, p = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def work(w):
    for k in range(w, n, p):
        with open(f"{d}/d{k:07}.json", "w") as f:
            f.write('{"title": "document %d", "n": %d, "tags": ["alpha", "beta"], "body": "lorem ipsum dolor sit amet"}' % (k, k))
with ProcessPoolExecutor(p) as ex:
    list(ex.map(work, range(p)))
PY
}
timeit() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc -l; }
row() { printf '%-44s %10.3f s %10.3f s %8.2fx\n' "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)"; }

mkdir "$mnt/small" "$plain/small" "$mnt/big" "$plain/big"
printf '%-44s %12s %12s %9s\n' "operation" "reef" "plain dir" "ratio"
r=$(timeit write_files "$mnt/small" "$files" 1); p=$(timeit write_files "$plain/small" "$files" 1)
row "create+write+close $files files (1 writer)" "$r" "$p"
printf '%-44s %10.0f/s %10.0f/s\n' "  files/s" "$(echo "$files / $r" | bc -l)" "$(echo "$files / $p" | bc -l)"
r=$(timeit sh -c "cat '$mnt'/small/*.json"); p=$(timeit sh -c "cat '$plain'/small/*.json")
row "cat $files files (warm)" "$r" "$p"
fusermount3 -u "$mnt"; "$reef" mount "$work/store" "$mnt"
r=$(timeit sh -c "cat '$mnt'/small/*.json"); p=$(timeit sh -c "cat '$plain'/small/*.json")
row "cat $files files (after remount)" "$r" "$p"
r=$(timeit write_files "$mnt/big" "$ls_files" 8); p=$(timeit write_files "$plain/big" "$ls_files" 8)
row "create $ls_files files (8 writers)" "$r" "$p"
touch "$mnt/big/.flush"
fusermount3 -u "$mnt"; "$reef" mount "$work/store" "$mnt"
r=$(timeit ls -l "$mnt/big"); p=$(timeit ls -l "$plain/big")
row "ls -l $ls_files docs (after remount)" "$r" "$p"
r=$(timeit ls -l "$mnt/big"); p=$(timeit ls -l "$plain/big")
row "ls -l $ls_files docs (again)" "$r" "$p"
r=$(timeit grep -r -c "document 4242" "$mnt/big"); p=$(timeit grep -r -c "document 4242" "$plain/big")
row "grep -r over $ls_files docs" "$r" "$p"
r=$(timeit grep -r -c "document 4242" "$mnt/big"); p=$(timeit grep -r -c "document 4242" "$plain/big")
row "grep -r over $ls_files docs (again)" "$r" "$p"
echo "(ratio = reef time / plain directory time; lower is better)"
