# Sourced by the mount benchmarks (scripts/bench-*.sh, fuse-requests.sh):
# the one way they pick the binary to measure and make a scratch directory
# whose mount is always taken down, however the script ends.
#
#   bench_reef [CARGO BUILD ARGS]  sets $reef: $REEF_BIN when set (e.g. an
#                                  older build, as a baseline), else this
#                                  tree's release build, built first.
#   bench_work NAME                sets $work, a fresh directory
#                                  $TMPDIR/reef-NAME.XXXXXX, and $mnt, the
#                                  mountpoint $work/mnt. On exit: unmounts
#                                  $mnt (lazily if busy), runs the script's
#                                  bench_on_exit if it defines one, and
#                                  removes $work.

bench_reef() {
    if [ -n "${REEF_BIN:-}" ]; then
        reef="$REEF_BIN"
        return
    fi
    cargo build --release --quiet "$@"
    reef="$PWD/target/release/reef"
}

bench_work() {
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
