#!/usr/bin/env bash
# crash-test.sh: kill -9 a reef mount under load, remount, and check that
# every acknowledged write survived.
#
# Each round:
#   1. N writer processes (bash loops) write documents w<writer>-<k>.json into
#      one namespace, overwrite earlier ones and now and then delete one. A
#      write is `printf JSON | dd of=FILE conv=fsync`: dd fails if write(),
#      fsync() or close() fails (bash itself ignores close() errors of a
#      `> FILE` redirection, which is where reef reports a failed commit).
#      Only after dd (or rm) exits 0 is the write logged as acknowledged, in a
#      log outside the mount. Meanwhile `.flush`/`.compact`/`.gc` run and
#      snapshots are created (`mkdir NS/.snapshots/NAME`) now and then.
#   2. The daemon gets SIGKILL at a random moment; in rounds 2 to 6 of
#      every six right after `touch NS/.flush` (`.compact`, `.gc`),
#      `mkdir NS/.snapshots/NAME` or `fusermount3 -u` (the writers stopped
#      first, so the unmount is not refused as busy) started, so that the
#      kill usually lands in the middle of the flush, compaction, garbage
#      collection, snapshot creation or unmount. With --retain 0 GC really
#      deletes (WAL objects and segments no retained state names), so those
#      kills land in deletes.
#   3. The dead mountpoint (ENOTCONN) is cleared with `fusermount3 -u -z`
#      (or, with --stale-recovery, left for `reef mount` to clear), and
#      SOURCE is mounted again.
#   4. Check: every document holds its last acknowledged value (its "v"
#      counter; the daemon renders canonical JSON, so contents are compared
#      by attribute, not by bytes), or the value of a write that was in
#      flight when the daemon died; an acknowledged delete stays deleted; no
#      unknown document appears; a value seen once stays (an in-flight write
#      found present must not vanish later, nor one found absent reappear).
#      Every snapshot of the round whose mkdir returned 0 must be listed, and
#      every snapshot there must hold, for each document, its value as last
#      acknowledged before the mkdir started, or a value written after that
#      and issued before the mkdir returned. Then `reef verify SOURCE NS`
#      must exit 0.
# After the last round the mount is unmounted cleanly and the daemon must exit.
#
# Usage: mount-scripts/crash-test.sh [--source SOURCE] [--rounds N]
#            [--writers N] [--docs-per-writer N] [--seed S] [--namespace NS]
#            [--mountpoint DIR] [--max-delay-ms MS] [--delete-percent P]
#            [--tool dd|python3] [--retain D] [--stale-recovery] [--keep]
#   SOURCE    any reef store URL (default: a new temporary directory); S3
#             settings come from the AWS_* environment variables as usual
#   NS        default crash-<seed>-<pid>, so an existing SOURCE is left alone
#   --tool    what writes a document: dd (default: `printf | dd conv=fsync`,
#             which like a shell `>` opens the file, dup2()s it to stdout and
#             closes the first descriptor before writing) or python3 (open,
#             write, fsync, close on one descriptor)
#   --retain  mount with -o retain=D (default: the daemon's own, 1h); 0 lets
#             every .gc and automatic GC delete what no live state names
#   --keep    keep the work directory (logs) even when every round passed
# The reef binary: $REEF, else `reef` on PATH, else this checkout's
# target/{release,debug}/reef (the newer one).
# Prints one line per round and a summary `N passed, M failed`; exits 0 only
# if every round passed. Needs bash >= 5 (EPOCHREALTIME), coreutils dd,
# fusermount3.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

rounds=5
writers=4
docs=20
seed=""
source_url=""
ns=""
mnt=""
max_delay_ms=1500
delete_pct=5
tool="dd"
retain=""
stale_recovery=0
keep=0

usage() {
    sed -n '/^# Usage:/,/^# if every round passed/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

need_value() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then
        echo "crash-test.sh: $1 needs a value" >&2
        exit 2
    fi
}

while [ $# -gt 0 ]; do
    opt="$1"
    case "$opt" in
        --*=*) set -- "${opt%%=*}" "${opt#*=}" "${@:2}"; continue ;;
    esac
    case "$opt" in
        --rounds) need_value "$@"; rounds="$2"; shift 2 ;;
        --writers) need_value "$@"; writers="$2"; shift 2 ;;
        --docs-per-writer) need_value "$@"; docs="$2"; shift 2 ;;
        --seed) need_value "$@"; seed="$2"; shift 2 ;;
        --source) need_value "$@"; source_url="$2"; shift 2 ;;
        --namespace) need_value "$@"; ns="$2"; shift 2 ;;
        --mountpoint) need_value "$@"; mnt="$2"; shift 2 ;;
        --max-delay-ms) need_value "$@"; max_delay_ms="$2"; shift 2 ;;
        --delete-percent) need_value "$@"; delete_pct="$2"; shift 2 ;;
        --tool) need_value "$@"; tool="$2"; shift 2 ;;
        --retain) need_value "$@"; retain="$2"; shift 2 ;;
        --stale-recovery) stale_recovery=1; shift ;;
        --keep) keep=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "crash-test.sh: unknown argument: $opt (see --help)" >&2; exit 2 ;;
    esac
done

for pair in "rounds:$rounds" "writers:$writers" "docs-per-writer:$docs" \
    "max-delay-ms:$max_delay_ms" "delete-percent:$delete_pct"; do
    case "${pair#*:}" in
        '' | *[!0-9]*) echo "crash-test.sh: --${pair%%:*} must be a number, not '${pair#*:}'" >&2; exit 2 ;;
    esac
done
if [ "$rounds" -lt 1 ] || [ "$writers" -lt 1 ] || [ "$docs" -lt 1 ] || [ "$max_delay_ms" -lt 400 ]; then
    echo "crash-test.sh: need --rounds >= 1, --writers >= 1, --docs-per-writer >= 1, --max-delay-ms >= 400" >&2
    exit 2
fi
if [ -z "$seed" ]; then
    seed=$(($(date +%s%N) % 1000000))
fi
case "$seed" in '' | *[!0-9]*) echo "crash-test.sh: --seed must be a number" >&2; exit 2 ;; esac
[ -n "$ns" ] || ns="crash-$seed-$$"
case "$ns" in */* | .* | '') echo "crash-test.sh: bad namespace name '$ns'" >&2; exit 2 ;; esac

# --- the reef binary -------------------------------------------------------
reef="${REEF:-}"
if [ -z "$reef" ]; then
    reef="$(command -v reef 2>/dev/null || true)"
fi
if [ -z "$reef" ]; then
    for candidate in "$here/../target/release/reef" "$here/../target/debug/reef"; do
        if [ -x "$candidate" ] && { [ -z "$reef" ] || [ "$candidate" -nt "$reef" ]; }; then
            reef="$candidate"
        fi
    done
fi
if [ -z "$reef" ] || [ ! -x "$reef" ]; then
    echo "crash-test.sh: no reef binary: set REEF=/path/to/reef, put reef on PATH, or cargo build" >&2
    exit 2
fi
# python3 from PATH may be a slow shim (pyenv): prefer the system's.
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=python3; fi
fi
case "$tool" in
    dd) ;;
    python3) tool="$python" ;;
    *) echo "crash-test.sh: --tool must be dd or python3" >&2; exit 2 ;;
esac
for t in "$tool" fusermount3; do
    command -v "$t" >/dev/null 2>&1 || { echo "crash-test.sh: $t is missing" >&2; exit 2; }
done
[ -e /dev/fuse ] || { echo "crash-test.sh: /dev/fuse is missing (modprobe fuse)" >&2; exit 2; }

# --- work directory, source, mountpoint -----------------------------------
made_mnt=0
if [ -n "$mnt" ]; then
    mkdir -p "$mnt" && mnt="$(cd "$mnt" && pwd -P)" || exit 2
fi

daemon_pid=""   # the reef daemon serving $mnt (found after each mount)
owned=0         # 1 once we mounted $mnt: only then does cleanup touch it
bg_pids=()      # writers and flushers of the current round (our children)
failures=0

log() { printf '%s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

is_mounted() {
    # /proc/self/mountinfo field 5 is the mount point, with space, tab,
    # newline and backslash octal-escaped.
    local esc="${mnt//\\/\\134}" point rest
    esc="${esc// /\\040}"
    while read -r _ _ _ _ point rest; do
        [ "$point" = "$esc" ] && return 0
    done </proc/self/mountinfo
    return 1
}

is_alive() {
    local pid="$1" stat st
    [ -n "$pid" ] || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    st="${stat##*) }"
    st="${st%% *}"
    [ "$st" != Z ] && [ "$st" != X ]
}

# The daemon: a live process whose argv is `… mount … $mnt …`.
find_daemon() {
    local p argv a found=""
    for p in /proc/[0-9]*; do
        mapfile -d '' -t argv 2>/dev/null <"$p/cmdline" || continue
        if [ "${#argv[@]}" -lt 3 ] || [ "${argv[1]}" != mount ]; then
            continue
        fi
        for a in "${argv[@]:2}"; do
            if [ "$a" = "$mnt" ] && is_alive "${p#/proc/}"; then
                found="$found ${p#/proc/}"
                break
            fi
        done
    done
    found="${found# }"
    case "$found" in
        '' | *' '*) return 1 ;;
    esac
    echo "$found"
}

# Waits (bounded) until a process is gone; zombies count as gone (a detached
# daemon is reparented to whatever PID 1 is, which may never reap it).
wait_dead() {
    local pid="$1" tries=0
    while is_alive "$pid"; do
        tries=$((tries + 1))
        [ "$tries" -le 1000 ] || return 1
        sleep 0.01
    done
}

do_mount() {
    local out rc
    local opts="log_file=$work/daemon.log"
    [ -z "$retain" ] || opts="$opts,retain=$retain"
    out="$("$reef" mount "$source_url" "$mnt" -o "$opts" 2>&1)"
    rc=$?
    [ -z "$out" ] || note "reef mount: $out"
    if [ "$rc" -ne 0 ]; then
        note "reef mount $source_url $mnt failed (exit $rc); daemon log: $work/daemon.log"
        return 1
    fi
    owned=1
    if ! daemon_pid="$(find_daemon)"; then
        note "mounted, but cannot tell which process is the daemon"
        daemon_pid=""
        return 1
    fi
}

cleanup() {
    local pid
    for pid in "${bg_pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    if [ "$owned" -eq 1 ]; then
        if is_mounted; then
            if is_alive "$daemon_pid"; then
                fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null
                wait_dead "$daemon_pid" || kill -KILL "$daemon_pid" 2>/dev/null
            fi
            is_mounted && fusermount3 -u -z "$mnt" 2>/dev/null
        elif is_alive "$daemon_pid"; then
            kill -KILL "$daemon_pid" 2>/dev/null
        fi
    fi
    if [ "$made_mnt" -eq 1 ] && is_mounted; then
        # Never delete through a live mount.
        log "$mnt is still mounted; leaving $work in place"
    elif [ "$failures" -eq 0 ] && [ "$keep" -eq 0 ]; then
        [ "$made_mnt" -eq 1 ] && rmdir "$mnt" 2>/dev/null
        rm -rf --one-file-system "$work"
    else
        log "logs and data kept in $work"
    fi
}
if [ -n "$mnt" ] && is_mounted; then
    echo "crash-test.sh: $mnt is already a mount point" >&2
    exit 2
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/reef-crash.XXXXXX")"
if [ -z "$source_url" ]; then
    source_url="$work/source" # removed with $work
    mkdir -p "$source_url"
fi
if [ -z "$mnt" ]; then
    mnt="$work/mnt"
    made_mnt=1
    mkdir -p "$mnt"
fi
nsdir="$mnt/$ns"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ms_sleep() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# --- the workload ------------------------------------------------------------

# put FILE CONTENT: exit 0 only when write, fsync and close all succeeded.
if [ "$tool" = dd ]; then
    put() {
        printf '%s\n' "$2" | dd of="$1" bs=4096 conv=fsync status=none
    }
else
    put() {
        "$python" -S -E -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
data = sys.argv[2].encode() + b"\n"
while data:
    data = data[os.write(fd, data):]
os.fsync(fd)
os.close(fd)
' "$1" "$2"
    }
fi

# writer W ROUND NEXT LOG: writes until its first failure after the kill
# (or until $work/stop.ROUND exists).
# Log lines: P doc value time (issued), A doc value time (acknowledged),
# F doc value rc (failed after the kill), E doc value rc (failed while the
# daemon was up). A value is the write's "v" counter, or "-" for a delete;
# a time is microseconds since the epoch (for the snapshot check).
writer() {
    local w="$1" r="$2" next="$3" out="$4"
    local seq=0 k v doc pad len rc errors=0
    RANDOM=$(((seed * 7919 + r * 1031 + w * 17) % 32768))
    exec 3>>"$out"
    while [ "$seq" -lt 100000 ] && [ ! -e "$work/stop.$r" ]; do
        seq=$((seq + 1))
        if [ "$next" -lt "$docs" ] && { [ "$next" -eq 0 ] || [ $((RANDOM % 100)) -lt 60 ]; }; then
            k="$next"
            next=$((next + 1))
        else
            k=$((RANDOM % next))
        fi
        doc="w$w-$k.json"
        if [ "$k" -lt $((next - 1)) ] && [ $((RANDOM % 100)) -lt "$delete_pct" ]; then
            v="-"
            echo "P $doc $v ${EPOCHREALTIME/./}" >&3
            rm -f -- "$nsdir/$doc" 2>>"$work/writer-$w.err"
            rc=$?
        else
            v=$((r * 1000000 + seq))
            len=$((RANDOM % 1500))
            printf -v pad '%*s' "$len" ''
            echo "P $doc $v ${EPOCHREALTIME/./}" >&3
            put "$nsdir/$doc" "{\"w\":$w,\"k\":$k,\"v\":$v,\"round\":$r,\"pad\":\"${pad// /x}\"}" \
                2>>"$work/writer-$w.err"
            rc=$?
        fi
        if [ "$rc" -eq 0 ]; then
            echo "A $doc $v ${EPOCHREALTIME/./}" >&3
        elif [ -e "$work/killed.$r" ]; then
            echo "F $doc $v $rc" >&3
            break
        else
            echo "E $doc $v $rc" >&3
            errors=$((errors + 1))
            [ "$errors" -lt 20 ] || break
        fi
    done
    exec 3>&-
}

# snapshot ROUND NAME: `mkdir NS/.snapshots/NAME`, logged to the round's
# snapshots.log as `S name start end rc` (times in microseconds).
snapshot() {
    local r="$1" name="$2" t0 rc
    t0="${EPOCHREALTIME/./}"
    mkdir "$nsdir/.snapshots/$name" 2>>"$work/flusher.err"
    rc=$?
    echo "S $name $t0 ${EPOCHREALTIME/./} $rc" >>"$work/round-$r/snapshots.log"
    return "$rc"
}

# flusher ROUND LOG: `touch .flush` (now and then `.compact` or `.gc`, or a
# snapshot) at random intervals until the daemon is gone.
flusher() {
    local r="$1" out="$2" op rc n=0
    RANDOM=$(((seed * 31 + r * 7) % 32768))
    while :; do
        ms_sleep $((50 + RANDOM % 250))
        op=.flush
        case $((RANDOM % 7)) in
            0) op=.compact ;;
            1) op=.gc ;;
            2) op=.snapshots ;;
        esac
        if [ "$op" = .snapshots ]; then
            n=$((n + 1))
            snapshot "$r" "r$r-f$n"
        else
            touch "$nsdir/$op" 2>>"$work/flusher.err"
        fi
        rc=$?
        if [ "$rc" -eq 0 ]; then
            echo "ok $op" >>"$out"
        elif [ -e "$work/killed.$r" ]; then
            echo "cut $op $rc" >>"$out"
            break
        else
            echo "error $op $rc" >>"$out"
            ms_sleep 100
        fi
    done
}

# --- expected state ------------------------------------------------------------
declare -A cur      # doc -> its value as last established ("-" = absent)
declare -A pend     # doc -> values of unacknowledged writes issued since
declare -A nextk    # writer -> how many doc indices it has used
for ((w = 0; w < writers; w++)); do nextk[$w]=0; done

total_acked=0
total_checked=0
total_pending=0
total_empty_new=0
total_lost=0
total_snaps=0

# observe DOC [DIR]: a document's value in DIR (default the namespace):
# "-" when absent, "?…" when unreadable or garbled.
observe() {
    local f="${2:-$nsdir}/$1" content
    if [ ! -e "$f" ]; then
        echo "-"
        return
    fi
    if ! content="$(cat -- "$f" 2>&1)"; then
        echo "?unreadable: ${content//$'\n'/ }"
        return
    fi
    local want_w="${1#w}" want_k
    want_w="${want_w%%-*}"
    want_k="${1#*-}"
    want_k="${want_k%.json}"
    # The empty document: a file created and closed before its content
    # was written reads back as the zero bytes committed then.
    if [ -z "${content//[[:space:]]/}" ] || [ "${content//[[:space:]]/}" = "{}" ]; then
        echo "{}"
        return
    fi
    if [[ $content =~ \"v\"[[:space:]]*:[[:space:]]*([0-9]+) ]]; then
        local v="${BASH_REMATCH[1]}"
        if [[ ! $content =~ \"w\"[[:space:]]*:[[:space:]]*${want_w}[^0-9] ]] ||
            [[ ! $content =~ \"k\"[[:space:]]*:[[:space:]]*${want_k}[^0-9] ]]; then
            content="${content//$'\n'/ }"
            echo "?wrong document: ${content:0:160}"
            return
        fi
        echo "$v"
    else
        content="${content//$'\n'/ }"
        echo "?no \"v\" in: ${content:0:160}"
    fi
}

# check_snapshots R: every snapshot of round R whose mkdir returned 0 is
# there, and every snapshot of round R that is there holds, per document,
# a value between the last acknowledged before its mkdir started and the
# last issued before it returned (cur holds the values established before
# the round). Prints problems; returns 1 on any.
check_snapshots() {
    local r="$1" bad=0 tag name t0 t1 rc w doc val t
    local -A low=() ok_vals=()
    local slog="$work/round-$r/snapshots.log"
    [ -f "$slog" ] || return 0
    while read -r tag name t0 t1 rc; do
        [ "$tag" = S ] || continue
        if [ ! -d "$nsdir/.snapshots/$name" ]; then
            if [ "$rc" -eq 0 ]; then
                note "LOST SNAPSHOT: $name (its mkdir returned 0) is missing after the remount"
                lost=$((lost + 1))
                bad=1
            fi
            continue
        fi
        snaps_checked=$((snaps_checked + 1))
        # Per document: the lowest acceptable value (last acknowledged before
        # t0, else what was established before the round) and every value
        # issued after it and before t1.
        low=()
        ok_vals=()
        for ((w = 0; w < writers; w++)); do
            [ -f "$work/round-$r/writer-$w.log" ] || continue
            while read -r tag doc val t; do
                case "$tag" in
                    A) if [ "$t" -lt "$t0" ]; then low[$doc]="$val"; ok_vals[$doc]=""; fi ;;
                    P) if [ "$t" -lt "$t1" ]; then ok_vals[$doc]="${ok_vals[$doc]:-} $val"; fi ;;
                esac
            done <"$work/round-$r/writer-$w.log"
        done
        local ww kk got want v fine
        for ((ww = 0; ww < writers; ww++)); do
            for ((kk = 0; kk < ${nextk_after[$ww]}; kk++)); do
                doc="w$ww-$kk.json"
                got="$(observe "$doc" "$nsdir/.snapshots/$name")"
                want="${low[$doc]:-${cur[$doc]:--}}"
                fine=0
                if [ "$got" = "$want" ]; then
                    fine=1
                elif [ "$got" = "{}" ] && [[ "${ok_vals[$doc]:-}" = *[0-9]* ]] &&
                    { [ "$want" = "-" ] || [[ " ${ok_vals[$doc]} " = *" - "* ]]; }; then
                    # An in-flight create's first, empty close: of a new
                    # document, or of one deleted while the mkdir ran.
                    fine=1
                else
                    for v in ${ok_vals[$doc]:-}; do
                        [ "$got" = "$v" ] && fine=1
                    done
                fi
                if [ "$fine" -eq 0 ]; then
                    note "SNAPSHOT $name (mkdir exit $rc): $doc holds ${got}; acknowledged before the mkdir: ${want}${ok_vals[$doc]:+ (or issued during it:${ok_vals[$doc]})}"
                    lost=$((lost + 1))
                    bad=1
                fi
            done
        done
    done <"$slog"
    return "$bad"
}

# check_round R: folds the round's logs into the expected state and checks
# the remounted namespace against it. Prints problems; returns 1 on any.
check_round() {
    local r="$1" bad=0 acked=0 inflight=0 unexpected_errors=0 checked=0 accepted=0 empty_new=0 lost=0
    local w tag doc val rest snaps_checked=0
    # The documents known once this round is folded in (the snapshot
    # check needs them before cur and pend change).
    local -A nextk_after=()
    for ((w = 0; w < writers; w++)); do
        nextk_after[$w]="${nextk[$w]}"
        [ -f "$work/round-$r/writer-$w.log" ] || continue
        while read -r tag doc val rest; do
            local k="${doc#*-}"
            k="${k%.json}"
            [ "$k" -lt "${nextk_after[$w]}" ] || nextk_after[$w]=$((k + 1))
        done <"$work/round-$r/writer-$w.log"
    done
    if [ ! -d "$nsdir/.snapshots" ]; then
        note "$nsdir/.snapshots is missing after the remount"
        bad=1
    elif ! check_snapshots "$r"; then
        bad=1
    fi
    for ((w = 0; w < writers; w++)); do
        [ -f "$work/round-$r/writer-$w.log" ] || continue
        while read -r tag doc val rest; do
            case "$tag" in
                P) pend[$doc]="${pend[$doc]:-} $val" ;;
                A)
                    cur[$doc]="$val"
                    pend[$doc]=""
                    acked=$((acked + 1))
                    ;;
                F) inflight=$((inflight + 1)) ;;
                E)
                    unexpected_errors=$((unexpected_errors + 1))
                    [ "$unexpected_errors" -gt 3 ] || note "write failed while the daemon was up: $doc (dd/rm exit $rest)"
                    ;;
            esac
            local k="${doc#*-}"
            k="${k%.json}"
            local ww="${doc#w}"
            ww="${ww%%-*}"
            [ "$k" -lt "${nextk[$ww]}" ] || nextk[$ww]=$((k + 1))
        done <"$work/round-$r/writer-$w.log"
    done
    if [ "$unexpected_errors" -gt 0 ]; then
        note "$unexpected_errors writes failed while the daemon was still running (see $work/writer-*.err)"
        bad=1
    fi
    if grep -q '^error' "$work/round-$r/flusher.log" 2>/dev/null; then
        note ".flush/.compact/.gc failed while the daemon was up: $(grep -c '^error' "$work/round-$r/flusher.log") times (see $work/flusher.err)"
        bad=1
    fi

    if [ ! -d "$nsdir" ]; then
        note "namespace directory $nsdir is missing after the remount"
        bad=1
    fi
    local ww kk got want p ok
    for ((ww = 0; ww < writers; ww++)); do
        for ((kk = 0; kk < ${nextk[$ww]}; kk++)); do
            doc="w$ww-$kk.json"
            got="$(observe "$doc")"
            checked=$((checked + 1))
            want="${cur[$doc]:--}"
            ok=0
            if [ "$got" = "$want" ]; then
                ok=1
            elif [ "$got" = "{}" ] && [ "$want" = "-" ] && [[ " ${pend[$doc]:-} " = *[0-9]* ]]; then
                # A create in flight: its file was opened and closed once
                # before anything was written (see --tool), which commits
                # the empty document. Harmless for a new document.
                ok=1
                empty_new=$((empty_new + 1))
            else
                for p in ${pend[$doc]:-}; do
                    if [ "$got" = "$p" ]; then
                        ok=1
                        accepted=$((accepted + 1))
                    fi
                done
            fi
            if [ "$ok" -eq 1 ]; then
                # What we saw is now established: it must not change later.
                cur[$doc]="$got"
                pend[$doc]=""
            else
                bad=1
                if [ "$got" = "{}" ]; then
                    note "EMPTIED: $doc holds the empty document {}; last acknowledged v=$want${pend[$doc]:+ (or in-flight:${pend[$doc]})}: an in-flight overwrite committed its truncation"
                elif [ "$want" = "-" ]; then
                    note "LOST DELETE or PHANTOM: $doc holds v=$got but should be absent${pend[$doc]:+ (or one of in-flight:${pend[$doc]})}"
                elif [ "$got" = "-" ]; then
                    note "LOST: $doc is missing; last acknowledged v=$want${pend[$doc]:+ (or in-flight:${pend[$doc]})}"
                else
                    note "WRONG: $doc holds v=$got; last acknowledged v=$want${pend[$doc]:+ (or in-flight:${pend[$doc]})}"
                fi
                # Reported once: later rounds compare against what is there.
                lost=$((lost + 1))
                cur[$doc]="$got"
                pend[$doc]=""
            fi
        done
    done
    # No document the writers never wrote.
    if [ -d "$nsdir" ]; then
        local f name
        for f in "$nsdir"/*.json; do
            [ -e "$f" ] || continue
            name="${f##*/}"
            if [[ ! $name =~ ^w([0-9]+)-([0-9]+)\.json$ ]] ||
                [ "${BASH_REMATCH[1]}" -ge "$writers" ] ||
                [ "${BASH_REMATCH[2]}" -ge "${nextk[$((10#${BASH_REMATCH[1]}))]:-0}" ]; then
                note "UNEXPECTED document $name"
                bad=1
            fi
        done
    fi
    local vout vrc
    vout="$("$reef" verify "$source_url" "$ns" 2>&1)"
    vrc=$?
    printf '%s\n' "$vout" >"$work/round-$r/verify.json"
    if [ "$vrc" -ne 0 ]; then
        note "reef verify $source_url $ns exited $vrc: $(printf '%s' "$vout" | tr '\n' ' ' | cut -c1-400)"
        bad=1
    fi
    total_acked=$((total_acked + acked))
    total_checked=$((total_checked + checked))
    total_pending=$((total_pending + accepted))
    total_empty_new=$((total_empty_new + empty_new))
    total_lost=$((total_lost + lost))
    total_snaps=$((total_snaps + snaps_checked))
    local extra=""
    [ "$snaps_checked" -eq 0 ] || extra=", $snaps_checked snapshots checked"
    [ "$empty_new" -eq 0 ] || extra="$extra, $empty_new in-flight creates found as {}"
    [ "$lost" -eq 0 ] || extra="$extra, $lost LOST OR WRONG"
    round_summary="$acked writes acknowledged, $inflight cut by the kill, $checked documents checked ($accepted held an in-flight value$extra)"
    return "$bad"
}

# --- the rounds ------------------------------------------------------------------
log "reef crash test: reef=$reef"
log "  source=$source_url namespace=$ns mountpoint=$mnt"
log "  rounds=$rounds writers=$writers docs-per-writer=$docs tool=$tool retain=${retain:-default} seed=$seed (rerun with --seed $seed)"
RANDOM=$((seed % 32768))

if ! do_mount; then
    failures=1
    log "0 passed, $rounds failed"
    exit 1
fi
if [ ! -d "$nsdir" ] && ! mkdir "$nsdir"; then
    failures=1
    log "cannot create namespace $nsdir"
    log "0 passed, $rounds failed"
    exit 1
fi

passed=0
failed=0
aborted=0
for ((r = 1; r <= rounds; r++)); do
    mkdir -p "$work/round-$r"
    # 0: kill at a random moment, 1: during .flush, 2: .compact, 3: .gc,
    # 4: a snapshot's mkdir, 5: an unmount
    mode=$(((r - 1) % 6))
    bg_pids=()
    for ((w = 0; w < writers; w++)); do
        writer "$w" "$r" "${nextk[$w]}" "$work/round-$r/writer-$w.log" &
        bg_pids+=($!)
    done
    if [ "$mode" -eq 0 ]; then
        flusher "$r" "$work/round-$r/flusher.log" &
        bg_pids+=($!)
    fi

    delay=$((300 + (RANDOM * 32768 + RANDOM) % (max_delay_ms - 299)))
    how="at ${delay}ms"
    op_pid=""
    if [ "$mode" -eq 0 ]; then
        ms_sleep "$delay"
    elif [ "$mode" -eq 4 ]; then
        # Time one snapshot halfway, start another near the end, kill in it.
        ms_sleep $((delay / 2))
        t0="$(date +%s%N)"
        snapshot "$r" "r$r-a"
        took=$((($(date +%s%N) - t0) / 1000000))
        ms_sleep $((delay - delay / 2))
        snapshot "$r" "r$r-b" &
        op_pid=$!
        extra=$((RANDOM % (took * 3 / 4 + 1)))
        ms_sleep "$extra"
        how="$how, ${extra}ms into mkdir .snapshots/r$r-b (one took ${took}ms)"
    elif [ "$mode" -eq 5 ]; then
        # The writers stop (an unmount with files open is refused as busy),
        # then the unmount starts and the kill lands within it.
        ms_sleep "$delay"
        : >"$work/stop.$r"
        for pid in "${bg_pids[@]}"; do
            wait "$pid" 2>/dev/null
        done
        bg_pids=()
        # An unmount of an idle mount ends within tens of milliseconds.
        fusermount3 -u "$mnt" 2>>"$work/unmount.err" &
        op_pid=$!
        extra=$((RANDOM % 25))
        [ "$extra" -eq 0 ] || ms_sleep "$extra"
        how="$how, ${extra}ms into fusermount3 -u"
    else
        # Time one run of the operation halfway, then start it again near
        # the end and kill within that time, to land inside it.
        op=.flush
        [ "$mode" -eq 2 ] && op=.compact
        [ "$mode" -eq 3 ] && op=.gc
        ms_sleep $((delay / 2))
        t0="$(date +%s%N)"
        if touch "$nsdir/$op" 2>>"$work/flusher.err"; then
            echo "ok $op" >>"$work/round-$r/flusher.log"
        else
            echo "error $op" >>"$work/round-$r/flusher.log"
        fi
        took=$((($(date +%s%N) - t0) / 1000000))
        ms_sleep $((delay - delay / 2))
        touch "$nsdir/$op" 2>>"$work/flusher.err" &
        op_pid=$!
        extra=$((RANDOM % (took * 3 / 4 + 1)))
        ms_sleep "$extra"
        how="$how, ${extra}ms into touch $op (one took ${took}ms)"
    fi
    : >"$work/killed.$r"
    if [ -n "$op_pid" ]; then
        if kill -0 "$op_pid" 2>/dev/null; then how="$how, still running at the kill"; else how="$how, it had finished"; fi
    fi
    if [ "$mode" -eq 5 ] && ! is_alive "$daemon_pid"; then
        how="$how, the daemon had exited"
    fi
    kill -KILL "$daemon_pid" 2>/dev/null
    if ! wait_dead "$daemon_pid"; then
        note "daemon $daemon_pid did not die after SIGKILL"
    fi
    # Writers and flushers fail on the dead mount and stop by themselves.
    [ -z "$op_pid" ] || wait "$op_pid" 2>/dev/null
    for pid in "${bg_pids[@]}"; do
        wait "$pid" 2>/dev/null
    done
    bg_pids=()

    # The dead mountpoint answers ENOTCONN until it is detached (a plain
    # stat may still be served from the kernel's attribute cache; listing
    # the directory always asks the daemon).
    if [ "$mode" -eq 5 ] && ! is_mounted; then
        : # the unmount finished before the kill
    elif ls_err="$(ls -- "$mnt" 2>&1 >/dev/null)"; then
        note "after SIGKILL, $mnt can still be listed (expected ENOTCONN)"
    elif [[ $ls_err != *"not connected"* ]]; then
        note "after SIGKILL, ls $mnt: $ls_err"
    fi
    if [ "$stale_recovery" -eq 0 ] && is_mounted; then
        fusermount3 -u -z "$mnt" 2>&1 | sed 's/^/    fusermount3: /'
    fi

    result=PASS
    round_summary=""
    if ! do_mount; then
        result=FAIL
        aborted=1
    elif ! check_round "$r"; then
        result=FAIL
    fi
    log "round $r/$rounds [$writers writers, kill $how]: ${round_summary:-not checked}: $result"
    if [ "$result" = PASS ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures=$((failures + 1))
    fi
    if [ "$aborted" -eq 1 ]; then
        if [ "$r" -lt "$rounds" ]; then
            log "stopping: cannot mount again; counting the $((rounds - r)) rounds not run as failed"
            failed=$((failed + rounds - r))
        fi
        break
    fi
done

# A clean unmount must stop the daemon.
if [ "$aborted" -eq 0 ]; then
    if fusermount3 -u "$mnt" 2>"$work/unmount.err" && wait_dead "$daemon_pid"; then
        log "clean unmount: daemon $daemon_pid exited"
        daemon_pid=""
    else
        log "clean unmount FAILED: $(cat "$work/unmount.err"); daemon $daemon_pid alive: $(is_alive "$daemon_pid" && echo yes || echo no)"
        failures=$((failures + 1))
        if [ "$passed" -gt 0 ]; then
            passed=$((passed - 1))
            failed=$((failed + 1))
        fi
    fi
fi

log "totals: $total_acked writes acknowledged, $total_checked document checks, $total_snaps snapshots checked, $total_pending in-flight values found present, $total_empty_new in-flight creates found as {}, $total_lost documents lost or wrong"
log "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
