#!/usr/bin/env bash
# What `-o metrics=` costs: the same workload on two fresh mounts of a local
# directory store, without and with metrics, in the same run, as ratios;
# plus how long one scrape of /metrics takes afterwards.
#   create+write+close of FILES small files, `cat` of them all (warm),
#   `stat` of them all after a remount (a lookup each).
# Usage: scripts/bench-metrics.sh [FILES] [ROUNDS]
#   (REEF_BIN=path/to/reef: that binary instead of this tree's release build)
set -euo pipefail
cd "$(dirname "$0")/.."
files="${1:-5000}"
rounds="${2:-3}"
source scripts/lib/bench-env.sh
bench_reef
bench_work bench-metrics
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

now() { date +%s.%N; }
timeit() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc -l; }
write_files() {
    python3 - "$1" "$2" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
for k in range(n):
    with open(f"{d}/d{k:07}.json", "w") as f:
        f.write('{"title": "document %d", "n": %d, "body": "lorem ipsum dolor sit amet"}' % (k, k))
PY
}
stat_all() { find "$1" -name '*.json' -exec stat -c %s {} + >/dev/null; }

# One round: mount with OPTS, run the workload, print "write cat stat".
round() {
    local store="$work/store-$1-$2"
    shift 2
    "$reef" mount "$store" "$mnt" "$@" >/dev/null 2>&1
    mkdir "$mnt/ns"
    local w c s
    w=$(timeit write_files "$mnt/ns" "$files")
    c=$(timeit sh -c "cat '$mnt'/ns/*.json")
    # Remount: the kernel then knows no entry, so each stat is a lookup.
    fusermount3 -u "$mnt"
    "$reef" mount "$store" "$mnt" "$@" >/dev/null 2>&1
    s=$(timeit stat_all "$mnt/ns")
    if [ "$#" -gt 0 ]; then
        scrape=$(timeit curl -sf "http://127.0.0.1:$port/metrics")
        echo "scrape $scrape" >>"$work/scrapes"
    fi
    fusermount3 -u "$mnt"
    echo "$w $c $s"
}

declare -a off on
for r in $(seq "$rounds"); do
    off+=("$(round off "$r")")
    on+=("$(round on "$r" -o "metrics=127.0.0.1:$port")")
done
# Median of column COL over the rounds.
median() { local col=$1; shift; printf '%s\n' "$@" | awk -v c="$col" '{print $c}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-40s %12s %12s %8s\n' "median of $rounds rounds" "no metrics" "metrics=" "ratio"
names=("create+write+close $files files" "cat $files files (warm)" "stat $files files (cold)")
for col in 1 2 3; do
    a=$(median "$col" "${off[@]}"); b=$(median "$col" "${on[@]}")
    printf '%-40s %10.3f s %10.3f s %7.3fx\n' "${names[$((col - 1))]}" "$a" "$b" "$(echo "$b / $a" | bc -l)"
done
printf '%-40s %10.4f s (median)\n' "one scrape of /metrics" "$(awk '{print $2}' "$work/scrapes" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
