#!/usr/bin/env bash
# Listing benchmark (issue 10): one namespace of DOCS small documents on a
# reef mount (local directory store, release build) beside a native
# directory of the same DOCS files, in one run. For each of `ls -f`,
# `ls -l` and `find -type f`:
#   total   wall time of `TOOL > /dev/null` (reef: on a fresh mount, so the
#           daemon and the kernel start cold; native: dentries warm)
#   first   time to the first line of `TOOL | head -1` (`ls -l` sorts, so it
#           prints nothing before it has read everything)
#   calls / max / p99   the reader's getdents64 calls and their longest and
#           99th-percentile durations (strace -T, seccomp-filtered so other
#           syscalls run untraced): the longest the tool waited for one
#           batch of entries
#   RSS     the daemon's resident memory before the timed run, its peak
#           (VmHWM) and after it
# The namespace is built with `reef import` of a generated JSON Lines file
# (then flushed and compacted), not through the mount.
# Usage: scripts/bench-list.sh [DOCS]      (default 1000000)
#   REEF_BIN=PATH: measure that reef binary (default: this tree's release build)
#   BENCH_LIST_DIR=DIR: keep the store and the native directory in DIR and
#   reuse them on the next run with the same DOCS (default: a temporary
#   directory under ${TMPDIR:-/tmp}, deleted at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/bench-env.sh
. scripts/lib/bench-env.sh
docs="${1:-1000000}"
bench_reef --bin reef
bench_need fusermount3:fuse3 strace:strace python3:python3
if [ -n "${BENCH_LIST_DIR:-}" ]; then
    work="$BENCH_LIST_DIR"
    keep=1
else
    work="$(mktemp -d "${TMPDIR:-/tmp}/reef-bench-list.XXXXXX")"
    keep=0
fi
mnt="$work/mnt"
mkdir -p "$mnt" "$work/store"
pid=
unmount() {
    if grep -q " $mnt fuse" /proc/self/mounts; then
        fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" || true
    fi
    if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi
    pid=
}
cleanup() {
    unmount
    [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

if [ "$(cat "$work/built" 2>/dev/null)" != "$docs" ]; then
    rm -rf "$work/store" "$work/native" "$work/built"
    echo "building $docs documents (reef import, and the native directory)"
    bench_listing_data "$work" "$docs" "$reef"
    echo "$docs" >"$work/built"
fi

mount_reef() {
    "$reef" mount "$work/store" "$mnt" -f >>"$work/daemon.log" 2>&1 &
    pid=$!
    local deadline=$((SECONDS + 60))
    until grep -q " $mnt fuse" /proc/self/mounts; do
        [ "$SECONDS" -lt "$deadline" ] || { cat "$work/daemon.log"; exit 1; }
        sleep 0.05
    done
}
status() { awk -v k="$1:" '$1 == k { print int($2 / 1024) }' "/proc/$pid/status"; }

# Runs "$@" (output to /dev/null) and prints its wall seconds; with a
# daemon (mounted fresh for this run), also its RSS before the run, its peak
# (VmHWM: since mounting, so the peak of the run) and its RSS after, in MiB.
timed() {
    local t0 t1 before=-
    [ -z "$pid" ] || before=$(status VmRSS)
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    if [ -n "$pid" ]; then
        printf '%.2f %s %s %s\n' "$(echo "$t1 - $t0" | bc -l)" "$before" "$(status VmHWM)" "$(status VmRSS)"
    else
        printf '%.2f - - -\n' "$(echo "$t1 - $t0" | bc -l)"
    fi
}
first() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" | head -1 >/dev/null
    t1=$(date +%s.%N)
    printf '%.3f' "$(echo "$t1 - $t0" | bc -l)"
}
# getdents64 calls of "$@": count, longest and p99 duration in ms.
gaps() {
    strace -f --seccomp-bpf -T -e trace=getdents64 -o "$work/trace" "$@" >/dev/null
    python3 - "$work/trace" <<'PY'
import re, sys
d = sorted(float(m.group(1)) * 1000 for line in open(sys.argv[1])
           if (m := re.search(r"<([0-9.]+)>$", line.strip())))
p99 = d[min(len(d) - 1, int(len(d) * 0.99))] if d else 0
print(f"{len(d)} {d[-1] if d else 0:.2f} {p99:.2f}")
PY
}

declare -A tools=([ls-f]="ls -f" [ls-l]="ls -l" [find]="find . -type f")
order=(ls-f ls-l find)
printf 'load before: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-7s %9s %9s %7s %9s %9s %9s %9s %9s\n' tool target "total s" "first s" calls "max ms" "p99 ms" "RSS0 MiB" "peak MiB" "RSS MiB"
declare -A total
for t in "${order[@]}"; do
    # shellcheck disable=SC2206
    cmd=(${tools[$t]})
    for target in native reef; do
        if [ "$target" = reef ]; then
            mount_reef
            dir="$mnt/bench"
        else
            dir="$work/native/bench"
        fi
        # native: warm the dentries (reef runs on the fresh mount)
        [ "$target" = reef ] || (cd "$dir" && "${cmd[@]}" >/dev/null)
        read -r secs before peak after < <(cd "$dir" && timed "${cmd[@]}")
        total[$t.$target]=$secs
        # A count check: every document listed once.
        if [ "$t" = ls-f ]; then
            n=$(cd "$dir" && ls -f | grep -c '\.json$')
            [ "$n" = "$docs" ] || { echo "$target listed $n of $docs" >&2; exit 1; }
        fi
        if [ "$target" = reef ]; then unmount; mount_reef; fi
        fst=$(cd "$dir" && first "${cmd[@]}")
        if [ "$target" = reef ]; then unmount; mount_reef; fi
        read -r calls max p99 < <(cd "$dir" && gaps "${cmd[@]}")
        [ "$target" = reef ] && unmount
        printf '%-8s %-7s %9s %9s %7s %9s %9s %9s %9s %9s\n' "$t" "$target" "$secs" "$fst" "$calls" "$max" "$p99" "$before" "$peak" "$after"
    done
    printf '%-8s reef / native time: %.2f\n' "$t" "$(echo "${total[$t.reef]} / ${total[$t.native]}" | bc -l)"
done
printf 'load after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
