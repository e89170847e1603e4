#!/usr/bin/env bash
# Filesystem benchmark: the same workloads, in one run, on a reef mount
# (local directory store, release build), on a native directory and on
# bindfs (a plain FUSE mirror of a native directory), printed as speed
# ratios (higher is better for reef):
#   create+write+close of FILES small JSON files with 1 and 16 writers
#   (native and bindfs do write+fsync+close: reef's close is durable),
#   `cat` of every file right after writing and again (warm), `ls -l`,
#   `grep -r`, `find`, `stat` of every file; then an mdtest-style phase:
#   16 workers create (+fsync on native/bindfs), stat, read and remove
#   FILES files in a directory each, as files/s per phase.
# Usage: scripts/bench-fs.sh [--100k] [FILES]     (default 4000 files)
#   --100k: 100,000 files, written by 16 writers only (one writer would take
#   most of an hour at fsync speed); the mdtest phase keeps 4,000 files.
#   (REEF_BIN=path/to/reef: that binary instead of this tree's release build)
# Installs fuse3 and bindfs with apt when they are missing. Work data lives under
# ${TMPDIR:-/tmp} and is deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
files=4000
big=0
for arg in "$@"; do
    case "$arg" in
    --100k) files=100000; big=1 ;;
    [0-9]*) files="$arg" ;;
    *) echo "usage: $0 [--100k] [FILES]" >&2; exit 2 ;;
    esac
done
# shellcheck source=lib/bench-env.sh
. scripts/lib/bench-env.sh
bench_need fusermount3:fuse3 bindfs:bindfs bc:bc
bench_reef
work="$(mktemp -d "${TMPDIR:-/tmp}/reef-bench-fs.XXXXXX")"
mkdir -p "$work/reef-mnt" "$work/native" "$work/bind-src" "$work/bind-mnt"
cleanup() {
    for m in "$work/reef-mnt" "$work/bind-mnt"; do
        fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
"$reef" mount "$work/store" "$work/reef-mnt"
bindfs "$work/bind-src" "$work/bind-mnt"
# reef needs a namespace directory at the top; the others get the same path.
declare -A dir=([reef]="$work/reef-mnt/bench" [native]="$work/native/bench" [bindfs]="$work/bind-mnt/bench")
targets=(reef native bindfs)
for t in "${targets[@]}"; do mkdir "${dir[$t]}"; done

# The worker for the timed file phases; prints the seconds its phase took.
ops="$work/ops.py"
cat >"$ops" <<'PY'
import ctypes, os, sys, time
from concurrent.futures import ProcessPoolExecutor
LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
phase, d, n, p, sync = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
BODY = '{"title": "document %d", "n": %d, "tags": ["alpha", "beta"], "body": "lorem ipsum dolor sit amet"}'
def path(w, k):
    # mdtest phases: one directory per worker (mdtest -u)
    return f"{d}/w{w:02}/f{k:07}.json" if phase.startswith("md-") else f"{d}/d{k:07}.json"
def work(w):
    for k in range(w, n, p):
        f = path(w, k)
        if phase in ("create", "md-create"):
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, (BODY % (k, k)).encode())
            if sync:
                os.fsync(fd)
            os.close(fd)
        elif phase in ("floor-one", "floor-portable"):
            # What one reef commit asks of the local store (src/store/local.rs),
            # a create-if-absent put: on a journalled ext4, XFS or btrfs the
            # temp file written and written out (sync_file_range), linked, one
            # fsync; elsewhere the temp fsync'd, linked, the directory fsync'd.
            tmp = f"{d}/.tmp-{k}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, (BODY % (k, k)).encode())
            if phase == "floor-one":
                if LIBC.sync_file_range(fd, ctypes.c_longlong(0), ctypes.c_longlong(0), 7) != 0:
                    raise OSError(ctypes.get_errno(), "sync_file_range")
            else:
                os.fsync(fd)
            os.link(tmp, f)
            os.unlink(tmp)
            if phase == "floor-one":
                os.fsync(fd)
            else:
                dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                os.fsync(dfd)
                os.close(dfd)
            os.close(fd)
        elif phase == "md-stat":
            os.stat(f)
        elif phase == "md-read":
            fd = os.open(f, os.O_RDONLY)
            os.read(fd, 4096)
            os.close(fd)
        elif phase == "md-remove":
            os.unlink(f)
if phase == "md-mkdirs":
    for w in range(p):
        os.makedirs(f"{d}/w{w:02}", exist_ok=True)
    sys.exit(0)
with ProcessPoolExecutor(p) as ex:
    # Start the workers before the clock does.
    list(ex.map(abs, range(p)))
    t0 = time.perf_counter()
    list(ex.map(work, range(p)))
    print(time.perf_counter() - t0)
PY
sync_of() { [ "$1" = reef ] && echo 0 || echo 1; }
now() { date +%s.%N; }
timeit() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc -l; }
# One row: the operation, each target's seconds, reef's speed against each.
row() {
    local label="$1" r="$2" n="$3" b="$4"
    printf '%-34s %9.3f %9.3f %9.3f %9.2f %9.2f\n' "$label" "$r" "$n" "$b" \
        "$(echo "$n / $r" | bc -l)" "$(echo "$b / $r" | bc -l)"
}
declare -A secs
# Runs a shell command (with {} standing for the target's directory) on
# each target; the row shows how fast reef was against the others.
shell_row() {
    local label="$1" cmd="$2" t
    for t in "${targets[@]}"; do secs[$t]=$(timeit sh -c "${cmd//\{\}/${dir[$t]}}"); done
    row "$label" "${secs[reef]}" "${secs[native]}" "${secs[bindfs]}"
}
py_row() {
    local label="$1" phase="$2" sub="$3" writers="$4" t
    for t in "${targets[@]}"; do
        secs[$t]=$(python3 "$ops" "$phase" "${dir[$t]}/$sub" "$files" "$writers" "$(sync_of "$t")")
    done
    row "$label" "${secs[reef]}" "${secs[native]}" "${secs[bindfs]}"
}
echo "reef bench-fs: $files files of ~100 bytes; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %9s %9s %9s %9s %9s\n' "operation (seconds)" reef native bindfs "x native" "x bindfs"
for t in "${targets[@]}"; do mkdir "${dir[$t]}/one" "${dir[$t]}/many"; done
# Documents per WAL object, from the namespace's engine counters: how
# well concurrent closes group-commit.
wal_stats() { python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); e=s.get("engine", s); print(e["wal_objects_written"], e["docs_written"])' "${dir[reef]}/.stats"; }
grouping=""
writer_counts=(1 16)
[ "$big" = 0 ] || writer_counts=(16)
for w in "${writer_counts[@]}"; do
    read -r w0 d0 < <(wal_stats)
    sub=one; [ "$w" = 1 ] || sub=many
    py_row "create+write+close, $w writer(s)" create "$sub" "$w"
    read -r w1 d1 < <(wal_stats)
    grouping+="$(printf '  %2d writer(s): %d documents in %d WAL objects, %.2f per object\n' "$w" $((d1 - d0)) $((w1 - w0)) "$(echo "($d1 - $d0) / ($w1 - $w0)" | bc -l)")"$'\n'
done
# The list of names, made once, so `cat` and `stat` do not read directories.
# The read-side rows use the files the first create row wrote.
read_dir=one
[ "$big" = 0 ] || read_dir=many
(cd "${dir[native]}/$read_dir" && ls -f | grep '\.json$' | sort) >"$work/names"
shell_row "cat every file, right after write" "cd {}/$read_dir && xargs -a '$work/names' cat"
shell_row "cat every file, warm" "cd {}/$read_dir && xargs -a '$work/names' cat"
shell_row "ls -l" "ls -l {}/$read_dir"
shell_row "find" "find {}/$read_dir"
shell_row "grep -r" "grep -r -c 'document 4242' {}/$read_dir"
shell_row "stat every file" "cd {}/$read_dir && xargs -a '$work/names' stat"
echo "(x native, x bindfs: reef's speed against theirs, that time / reef's time; higher is better)"
# The floor of a FUSE request here: a warm open+close of one cached file
# is two round trips (open, release) and no store work.
for t in "${targets[@]}"; do
    secs[$t]=$(python3 - "${dir[$t]}/$read_dir/d0000000.json" <<'PY'
import os, sys, time
t0 = time.perf_counter()
for _ in range(20000):
    os.close(os.open(sys.argv[1], os.O_RDONLY))
print((time.perf_counter() - t0) / 20000 * 1e6)
PY
)
done
printf 'warm open+close of one file: reef %.1f us, native %.1f us, bindfs %.1f us\n' "${secs[reef]}" "${secs[native]}" "${secs[bindfs]}"
# The floor of a 1-writer create: one durable store put per close.
md_files=$files
[ "$big" = 0 ] || md_files=4000
for seq in one portable; do
    mkdir "$work/native/floor-$seq"
    floor=$(python3 "$ops" "floor-$seq" "$work/native/floor-$seq" "$md_files" 1 1)
    case $seq in
    one) what="journalled fs: temp+write-out, link, fsync" ;;
    portable) what="any other fs: temp+fsync, link, directory fsync" ;;
    esac
    printf 'floor: %d durable local-store puts (%s), 1 writer: %.3f s, %.2f ms each\n' \
        "$md_files" "$what" "$floor" "$(echo "$floor * 1000 / $md_files" | bc -l)"
done
echo
echo "mdtest-style, 16 workers, a directory each, $md_files files in all (files/s):"
printf '%-34s %9s %9s %9s %9s %9s\n' "phase" reef native bindfs "x native" "x bindfs"
for t in "${targets[@]}"; do mkdir "${dir[$t]}/md"; python3 "$ops" md-mkdirs "${dir[$t]}/md" 0 16 0; done
for phase in create stat read remove; do
    for t in "${targets[@]}"; do
        secs[$t]=$(python3 "$ops" "md-$phase" "${dir[$t]}/md" "$md_files" 16 "$(sync_of "$t")")
    done
    printf '%-34s %9.0f %9.0f %9.0f %9.2f %9.2f\n' "$phase" \
        "$(echo "$md_files / ${secs[reef]}" | bc -l)" "$(echo "$md_files / ${secs[native]}" | bc -l)" \
        "$(echo "$md_files / ${secs[bindfs]}" | bc -l)" \
        "$(echo "${secs[native]} / ${secs[reef]}" | bc -l)" "$(echo "${secs[bindfs]} / ${secs[reef]}" | bc -l)"
done
echo
echo "reef group commit (documents per WAL object):"
printf '%s' "$grouping"
