#!/usr/bin/env bash
# FUSE requests per file that ordinary tools send to a reef mount, counted
# by the mount's own metrics (`-o metrics=`: every request the daemon
# answers, by kind). Each tool runs on FILES small documents right after a
# remount (the kernel caches nothing yet: "cold") and then once more
# ("warm", twice: the first warm round may still pay for what the cold one
# left, such as the atime the kernel drops after reading pages); `cp`
# copies FILES files from a native directory into the mount, `create` is a
# shell's `printf >new.json` per file, `sed -i` rewrites each file in place.
# Usage: scripts/fuse-requests.sh [FILES]      (default 500)
#   (REEF_BIN=path/to/reef: that binary instead of this tree's release build)
set -euo pipefail
cd "$(dirname "$0")/.."
files="${1:-500}"
source scripts/lib/bench-env.sh
bench_reef
bench_work fuse-requests
mkdir -p "$work/src"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mount_it() { "$reef" mount "$work/store" "$mnt" -o "metrics=127.0.0.1:$port"; }
# The old daemon may still hold the metrics port for a moment after the unmount.
remount() {
    fusermount3 -u "$mnt"
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/metrics" >/dev/null 2>&1 || break
        sleep 0.1
    done
    mount_it
}
# Request counts by kind, as "op count" lines.
counts() {
    curl -sf "http://127.0.0.1:$port/metrics" |
        sed -n 's/^reef_fuse_request_duration_seconds_count{op="\([a-z]*\)"} \([0-9]*\).*/\1 \2/p'
}
# Runs a command and prints the requests it caused, per file.
measure() {
    local label="$1"; shift
    counts >"$work/before"
    "$@" >/dev/null
    counts >"$work/after"
    python3 - "$label" "$files" "$work/before" "$work/after" <<'PY'
import sys
label, n = sys.argv[1], int(sys.argv[2])
read = lambda p: {l.split()[0]: int(l.split()[1]) for l in open(p) if l.strip()}
b, a = read(sys.argv[3]), read(sys.argv[4])
diff = {k: a[k] - b.get(k, 0) for k in a if a[k] - b.get(k, 0) > 0}
total = sum(diff.values())
parts = " ".join(f"{k} {v / n:.2f}" for k, v in sorted(diff.items(), key=lambda kv: -kv[1]))
print(f"{label:<22} {total / n:6.2f}   {parts}")
PY
}
for k in $(seq 1 "$files"); do
    printf '{"title": "document %d", "n": %d}' "$k" "$k" >"$work/src/d$k.json"
done
mount_it
mkdir "$mnt/ns"
echo "FUSE requests per file, $files files (total, then by kind):"
measure "cp -r (new files)" cp -r "$work/src/." "$mnt/ns/"
(cd "$work/src" && ls) >"$work/names"
for tool in cat "grep -r" "ls -l" find stat; do
    case "$tool" in
    cat) cmd=(sh -c "cd '$mnt/ns' && xargs -a '$work/names' cat") ;;
    stat) cmd=(sh -c "cd '$mnt/ns' && xargs -a '$work/names' stat") ;;
    "grep -r") cmd=(grep -r -c "document 42" "$mnt/ns") ;;
    "ls -l") cmd=(ls -l "$mnt/ns") ;;
    find) cmd=(find "$mnt/ns") ;;
    esac
    remount
    measure "$tool (cold)" "${cmd[@]}"
    measure "$tool (warm)" "${cmd[@]}"
    measure "$tool (warm again)" "${cmd[@]}"
done
remount
measure "cp -r (overwrite)" cp -r "$work/src/." "$mnt/ns/"
mkdir "$mnt/new"
# One open(O_CREAT|O_TRUNC), write, close per new file, as bench-fs.sh's
# create phase does; then a shell's `>` (it also closes a dup'ed descriptor).
measure "create+write+close" python3 -c "
import os, sys
for n in open(sys.argv[1]).read().split():
    fd = os.open(sys.argv[2] + '/' + n, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b'{\"n\": 1}')
    os.close(fd)
" "$work/names" "$mnt/new"
measure "sh printf >new.json" sh -c "cd '$mnt/new' && for f in \$(cat '$work/names'); do printf '{\"n\": 1}' >\"s\$f\"; done"
remount
measure "sed -i (cold)" sh -c "cd '$mnt/ns' && xargs -a '$work/names' sed -i 's/document/doc/'"
