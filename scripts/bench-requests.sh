#!/usr/bin/env bash
# The daemon's CPU per FUSE request: mounts of one or more reef binaries
# (and bindfs, a plain FUSE mirror) side by side, the same workloads on
# each in interleaved rounds, and per workload the median over rounds of
#   files/s, the daemon's CPU per request (all its threads, from
#   /proc/PID/task/*/schedstat, so kernel time in its read/writev of
#   /dev/fuse counts too) and its context switches per request.
# Workloads, each round on a fresh directory of FILES files per mount:
#   stat  16 workers stat every file right after writing it (mdtest's stat
#         phase: the write made the kernel drop the attributes, so one
#         GETATTR per file)
#   read  16 workers open, read and close every file (OPEN, READ, RELEASE)
#   cat   one `cat` of every file, warm (OPEN, RELEASE)
#   openclose  one process opens and closes one file 20,000 times
# Usage: scripts/bench-requests.sh [ROUNDS] [FILES]     (default 7, 4000)
#   REEF_BIN=path (default: this tree's release build, built first)
#   BASE_BIN=path: a second binary mounted beside it (e.g. an older build)
#   REEF_OPTS / BASE_OPTS: -o options of each (e.g. threads=1)
#   BINDFS=0: leave bindfs out (installed with apt when missing, as
#   scripts/bench-fs.sh does)
# Work data lives under ${TMPDIR:-/tmp} and is deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-env.sh
rounds="${1:-7}"
files="${2:-4000}"
bench_reef
bench_need fusermount3:fuse3
[ "${BINDFS:-1}" = 0 ] || bench_need bindfs:bindfs
bench_work bench-requests
# Whatever ends the script, no mount of it stays behind (the Python below
# unmounts its own too).
bench_on_exit() {
    for m in "$work"/*/mnt; do
        [ -d "$m" ] || continue
        fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || true
    done
}
specs=("new=$reef:${REEF_OPTS:-}")
[ -z "${BASE_BIN:-}" ] || specs+=("base=$BASE_BIN:${BASE_OPTS:-}")
[ "${BINDFS:-1}" = 0 ] || specs+=("bindfs=bindfs:")
echo "reef bench-requests: $rounds rounds, $files files; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work" "$rounds" "$files" "${specs[@]}" <<'PY'
import glob, os, socket, statistics, subprocess, sys, time, urllib.request
from concurrent.futures import ProcessPoolExecutor

work, rounds, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
BODY = '{"title": "document %d", "n": %d, "tags": ["alpha", "beta"], "body": "lorem ipsum dolor sit amet"}'
WORKERS = 16

def names(d):
    return [f"{d}/w{w:02}/f{k:07}.json" for w in range(WORKERS) for k in range(w, files, WORKERS)]

def job(args):
    phase, d, w, sync = args
    for k in range(w, files, WORKERS):
        f = f"{d}/w{w:02}/f{k:07}.json"
        if phase == "create":
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, (BODY % (k, k)).encode())
            if sync:
                os.fsync(fd)  # bindfs: a close is not durable there
            os.close(fd)
        elif phase == "stat":
            os.stat(f)
        else:
            fd = os.open(f, os.O_RDONLY)
            os.read(fd, 4096)
            os.close(fd)

def daemon(pid):
    cpu = csw = 0
    for t in glob.glob(f"/proc/{pid}/task/*"):
        try:
            cpu += int(open(f"{t}/schedstat").read().split()[0])
            csw += sum(int(l.split()[1]) for l in open(f"{t}/status") if "ctxt_switches" in l)
        except OSError:
            pass  # a thread that ended meanwhile
    return cpu, csw

def requests(port):
    if port is None:
        return 0
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines()
               if l.startswith("reef_fuse_request_duration_seconds_count"))

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

mounts = []
pool = ProcessPoolExecutor(WORKERS)
list(pool.map(abs, range(WORKERS)))  # start the workers before any clock
try:
    for spec in sys.argv[4:]:
        label, rest = spec.split("=", 1)
        binary, _, opts = rest.partition(":")
        base = f"{work}/{label}"
        mnt = f"{base}/mnt"
        os.makedirs(mnt)
        if binary == "bindfs":
            os.mkdir(f"{base}/src")
            subprocess.check_call(["bindfs", f"{base}/src", mnt])
            pattern, port, sync = f"bindfs {base}/src", None, True
        else:
            port = free_port()
            opts = ",".join(o for o in (opts, f"metrics=127.0.0.1:{port}") if o)
            subprocess.check_call([binary, "mount", f"{base}/store", mnt, "-o", opts],
                                  stdout=subprocess.DEVNULL)
            pattern, sync = f"mount {base}/store", False
        pid = int(subprocess.check_output(["pgrep", "-f", "-n", pattern]))
        mounts.append(dict(label=label, mnt=mnt, pid=pid, port=port, sync=sync, res={}))
        os.mkdir(f"{mnt}/bench")
    phases = ("stat", "read", "cat", "openclose")
    for r in range(rounds):
        for m in mounts:
            d = f"{m['mnt']}/bench/r{r}"
            for w in range(WORKERS):
                os.makedirs(f"{d}/w{w:02}")
            list(pool.map(job, [("create", d, w, m["sync"]) for w in range(WORKERS)]))
        for phase in phases:
            for m in mounts:
                d = f"{m['mnt']}/bench/r{r}"
                (c0, s0), q0 = daemon(m["pid"]), requests(m["port"])
                t0 = time.perf_counter()
                if phase in ("stat", "read"):
                    list(pool.map(job, [(phase, d, w, False) for w in range(WORKERS)]))
                    n = files
                elif phase == "cat":
                    subprocess.run(["xargs", "cat"], input="\n".join(names(d)).encode(),
                                   stdout=subprocess.DEVNULL, check=True)
                    n = files
                else:
                    n = 20000
                    f = names(d)[0]
                    for _ in range(n):
                        os.close(os.open(f, os.O_RDONLY))
                t = time.perf_counter() - t0
                (c1, s1), q1 = daemon(m["pid"]), requests(m["port"])
                q = q1 - q0
                m["res"].setdefault(phase, []).append(
                    (n / t, (c1 - c0) / 1000 / n, (s1 - s0) / n, q / n))
    print(f"{'workload':10} {'mount':7} {'files/s':>8} {'daemon us':>10} {'csw':>6} {'requests':>9}"
          f" {'daemon us':>10}   (medians; the last three per file, the last per request)")
    for phase in phases:
        for m in mounts:
            rows = m["res"][phase]
            med = [statistics.median(x[i] for x in rows) for i in range(4)]
            per_req = f"{med[1] / med[3]:10.2f}" if med[3] else f"{'-':>10}"
            print(f"{phase:10} {m['label']:7} {med[0]:8.0f} {med[1]:10.2f} {med[2]:6.2f} {med[3]:9.2f} {per_req}")
    print(f"load at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}")
finally:
    pool.shutdown()
    for m in mounts:
        if subprocess.call(["fusermount3", "-u", m["mnt"]]) != 0:
            subprocess.call(["fusermount3", "-u", "-z", m["mnt"]])
PY
