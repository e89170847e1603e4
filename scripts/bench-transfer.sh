#!/usr/bin/env bash
# `reef import` and `reef export` throughput on a release build, beside the
# engine's own batch write of the same documents in the same run (the
# baseline: `reef bench --batch-write`, documents parsed and batched before
# its clock starts, written through an engine opened as import opens one).
#
# For each store (a local directory; S3 on a moto server this script starts
# on loopback from the venv of scripts/moto-venv.sh):
#   baseline    engine batch write of DOCS documents, batches of 2000
#   import      the same documents as one JSON Lines file
#   import      the same documents as a tree of .json files (1000 per directory)
#   export      each namespace back out, as JSON Lines and as a tree
# Figures: documents/s and MB/s of document JSON, and import / baseline.
# Timings are the reports' elapsed_ms (opening the namespace excluded).
#
# Usage: [REEF_BIN=PATH] scripts/bench-transfer.sh [DOCS] [STORES]   (default: 1000000 "local s3")
# Data lives under $TMPDIR (about 5 GB of disk for 1M documents: the tree
# takes one block per file) and is deleted at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
docs="${1:-1000000}"
stores="${2:-local s3}"

# REEF_BIN: a release binary built already (skips the build, which would
# wait for any other build holding target/).
if [ -n "${REEF_BIN:-}" ]; then
    reef="$REEF_BIN"
else
    cargo build --release --quiet --bin reef
    reef="$PWD/target/release/reef"
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/reef-bench-transfer.XXXXXX")"
moto_pid=""
cleanup() {
    if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "generating $docs documents (JSON Lines and a tree) in $work" >&2
python3 - "$work" "$docs" <<'PY'
import os, sys
work, n = sys.argv[1], int(sys.argv[2])
tree = os.path.join(work, "tree")
with open(os.path.join(work, "docs.jsonl"), "w") as out:
    for k in range(n):
        d = f"{k // 1000:04}"
        body = '"title":"document %d","n":%d,"tags":["alpha","beta"],"body":"lorem ipsum dolor sit amet"}' % (k, k)
        out.write('{"id":"%s/%07d",%s\n' % (d, k, body))
        if k % 1000 == 0:
            os.makedirs(os.path.join(tree, d), exist_ok=True)
        with open(os.path.join(tree, d, "%07d.json" % k), "w") as f:
            f.write("{" + body)
PY

# Reads FIELD of the JSON object on stdin.
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

moto() {
    local venv="$PWD/.venv"
    [ -x "$venv/bin/moto_server" ] || scripts/moto-venv.sh >&2
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
    moto_pid=$!
    local deadline=$((SECONDS + 60))
    until curl -sf -X PUT "http://127.0.0.1:$port/bench" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "moto did not start: $(tail -5 "$work/moto.log")" >&2; exit 1; }
        kill -0 "$moto_pid" 2>/dev/null || { echo "moto exited: $(tail -5 "$work/moto.log")" >&2; exit 1; }
        sleep 0.2
    done
    export AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
}

# row LABEL DOCS BYTES MS [BASELINE_MS]
row() {
    python3 - "$@" <<'PY'
import sys
label, n, b, ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), max(int(sys.argv[4]), 1)
ratio = ""
if len(sys.argv) > 5:
    ratio = "%8.2fx" % (int(sys.argv[5]) / ms)
print("%-34s %9d docs %8.1f s %10.0f docs/s %8.1f MB/s %s" % (label, n, ms / 1000, n * 1000 / ms, b / 1000 / ms, ratio))
PY
}

echo "load before: $(uptime)"
for s in $stores; do
    case "$s" in
    local) url="$work/store" ;;
    s3) moto; url="s3://bench/reef" ;;
    *) echo "unknown store $s (local, s3)" >&2; exit 2 ;;
    esac
    echo "== $s ($url)"
    base=$("$reef" bench --store "$url" --batch-write "$work/docs.jsonl" --namespace base)
    base_ms=$(field elapsed_ms <<<"$base")
    row "engine batch write (baseline)" "$(field docs <<<"$base")" "$(field bytes <<<"$base")" "$base_ms"
    for kind in jsonl tree; do
        input="$work/docs.jsonl"
        [ "$kind" = tree ] && input="$work/tree"
        rep=$("$reef" import "$url" "$kind" "$input")
        imported=$(field imported <<<"$rep")
        [ "$imported" -eq "$docs" ] || { echo "import $kind stored $imported of $docs: $rep" >&2; exit 1; }
        row "import $kind (ratio: vs baseline)" "$imported" "$(field bytes <<<"$rep")" "$(field elapsed_ms <<<"$rep")" "$base_ms"
    done
    for kind in jsonl tree; do
        out="$work/out-$s-$kind"
        rep=$("$reef" export "$url" "$kind" "$out" --format "$kind")
        row "export $kind" "$(field exported <<<"$rep")" "$(field bytes <<<"$rep")" "$(field elapsed_ms <<<"$rep")"
        rm -rf "$out"
    done
    if [ "$s" = s3 ]; then kill "$moto_pid"; wait "$moto_pid" 2>/dev/null || true; moto_pid=""; fi
    rm -rf "$work/store"
done
echo "load after: $(uptime)"
