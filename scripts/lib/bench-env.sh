# Sourced by the mount benchmarks (scripts/bench-*.sh, fuse-requests.sh):
# the one way they pick the binary to measure and make a scratch directory
# whose mount is always taken down, however the script ends.
#
#   bench_need TOOL:PACKAGE ...    installs, in one apt-get call, the
#                                  Debian package of every TOOL not on
#                                  PATH. Callers list fusermount3:fuse3
#                                  first: bindfs alone pulls in FUSE 2's
#                                  `fuse`, which has no fusermount3, and
#                                  a mount the cleanup cannot take down
#                                  would outlive the script.
#   bench_reef [CARGO BUILD ARGS]  sets $reef: $REEF_BIN when set (e.g. an
#                                  older build, as a baseline), else this
#                                  tree's release build, built first.
#   bench_work NAME                sets $work, a fresh directory
#                                  $TMPDIR/reef-NAME.XXXXXX, and $mnt, the
#                                  mountpoint $work/mnt (installing fuse3
#                                  first when needed). On exit: unmounts
#                                  $mnt (lazily if busy), runs the script's
#                                  bench_on_exit if it defines one, and
#                                  removes $work.
#   bench_listing_data WORK DOCS REEF  one directory of DOCS documents of
#                                  ~120 bytes, twice: $WORK/native/bench
#                                  (plain files) and namespace `bench` of
#                                  the store $WORK/store (`REEF import`,
#                                  flushed and compacted), for the listing
#                                  benchmarks.

bench_need() {
    local need=() tool
    for tool in "$@"; do
        command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
    done
    [ ${#need[@]} -gt 0 ] || return 0
    echo "installing ${need[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

bench_reef() {
    if [ -n "${REEF_BIN:-}" ]; then
        reef="$REEF_BIN"
        return
    fi
    cargo build --release --quiet "$@"
    reef="$PWD/target/release/reef"
}

bench_work() {
    bench_need fusermount3:fuse3
    work="$(mktemp -d "${TMPDIR:-/tmp}/reef-$1.XXXXXX")"
    mnt="$work/mnt"
    mkdir -p "$mnt"
    trap bench_cleanup EXIT
}

bench_cleanup() {
    fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null || true
    if declare -F bench_on_exit >/dev/null; then bench_on_exit; fi
    rm -rf "$work"
}

bench_listing_data() {
    local dir="$1" n="$2" bin="$3"
    mkdir -p "$dir/store" "$dir/native/bench"
    python3 - "$dir" "$n" <<'PY'
import sys
work, n = sys.argv[1], int(sys.argv[2])
body = '{"id": "d%07d", "title": "document %d", "n": %d, "tags": ["alpha", "beta"], "body": "lorem ipsum dolor sit amet"}'
with open(f"{work}/docs.jsonl", "w") as out:
    for k in range(n):
        out.write(body % (k, k, k) + "\n")
for k in range(n):
    with open(f"{work}/native/bench/d{k:07}.json", "w") as f:
        f.write(body % (k, k, k))
PY
    "$bin" import "$dir/store" bench "$dir/docs.jsonl" >/dev/null
    "$bin" flush "$dir/store" bench >/dev/null
    "$bin" compact "$dir/store" bench >/dev/null
    rm -f "$dir/docs.jsonl"
}
