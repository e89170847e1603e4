#!/usr/bin/env bash
# soak.sh: many kill -9 rounds of crash-test.sh under concurrent load, on
# the local store and on S3 (a moto server it starts on loopback), and one
# summary line per store: rounds, acknowledged writes, lost.
#
# Each batch is one crash-test.sh run (--rounds BATCH, a fresh seed and
# namespace): N writers write, overwrite and delete documents while .flush
# .compact and .gc run and snapshots are made, the daemon is killed with
# SIGKILL at a random moment (in five rounds of six while a flush,
# compaction, GC, snapshot creation or unmount runs), the mountpoint is
# remounted, and every acknowledged write and every snapshot whose mkdir
# returned is checked, then `reef verify`. Every other batch leaves the dead mount for `reef mount` to
# recover (--stale-recovery); batches 2 and 3 of every four mount with
# `-o retain=0`, so every GC (on .gc and after each flush and compaction)
# really deletes and kills land in the middle of those deletes.
# The stores run one after the other, or at once with --parallel (each on
# its own mountpoints under the soak's work directory). Only the soak's own
# mountpoints are ever unmounted: crash-test.sh acts on its --mountpoint.
#
# Usage: mount-scripts/soak.sh [--local-rounds N] [--s3-rounds N]
#            [--batch N] [--writers N] [--minutes M] [--jobs N] [--parallel]
#   --local-rounds  rounds on a temporary local directory (default 1000)
#   --s3-rounds     rounds on S3 through moto (default 200; 0 skips S3;
#                   needs .venv/bin/moto_server from scripts/moto-venv.sh)
#   --batch         rounds per crash-test.sh run (default 50)
#   --minutes       stop starting new batches after M minutes per store
#   --jobs          batches run at once per store (default 1), each on its
#                   own mountpoint and namespace (a loaded machine: rounds
#                   mostly wait, so batches side by side finish sooner)
#   --parallel      run the local and the S3 soak at the same time
# Prints per store `SOAK NAME: R kill -9 rounds, A writes acknowledged,
# S snapshots checked, L lost, F rounds failed` (lost counts documents and
# snapshots). Exits 0 only if nothing acknowledged was lost and every round
# passed.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$here/.."
local_rounds=1000
s3_rounds=200
batch=50
writers=4
minutes=0
jobs=1
parallel=0
while [ $# -gt 0 ]; do
    case "$1" in
        --local-rounds) local_rounds="$2"; shift 2 ;;
        --s3-rounds) s3_rounds="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --writers) writers="$2"; shift 2 ;;
        --minutes) minutes="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --parallel) parallel=1; shift ;;
        -h | --help) sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

work="$(mktemp -d /tmp/reef-soak.XXXXXX)"
failed=0

# batch NAME B N SLOT SOURCE: one crash-test.sh run of N rounds (batch B)
# on the store's mountpoint number SLOT; its log is $work/NAME-batchB.log.
batch() {
    local name="$1" b="$2" n="$3" slot="$4" source="$5"
    local args=(--rounds "$n" --writers "$writers" --max-delay-ms 600 --mountpoint "$work/mnt-$name-$slot")
    [ $((b % 2)) -eq 0 ] && args+=(--stale-recovery)
    [ $((b % 4)) -ge 2 ] && args+=(--retain 0)
    # Each mountpoint its own source: a mount serves every namespace of its
    # source, and two mounts of one source fence each other (a takeover).
    [ -z "$source" ] || args+=(--source "$source/slot-$slot")
    mkdir -p "$work/mnt-$name-$slot"
    "$here/crash-test.sh" "${args[@]}" >"$work/$name-batch$b.log" 2>&1
}

# soak NAME ROUNDS SOURCE_PREFIX: runs batches (--jobs at once, each on its
# own mountpoint and namespace), prints the store's summary.
soak() {
    local name="$1" rounds="$2" source="$3"
    local done_rounds=0 acked=0 lost=0 failed_rounds=0 b=0 snaps=0 planned=0
    local started=$SECONDS
    local -A slot_of=() batch_of=() rounds_of=()
    local free=() s pid
    for ((s = 1; s <= jobs; s++)); do free+=("$s"); done
    while :; do
        while [ "${#free[@]}" -gt 0 ] && [ "$planned" -lt "$rounds" ]; do
            if [ "$minutes" -gt 0 ] && [ $((SECONDS - started)) -ge $((minutes * 60)) ]; then
                break
            fi
            local n=$((rounds - planned))
            [ "$n" -gt "$batch" ] && n="$batch"
            planned=$((planned + n))
            b=$((b + 1))
            batch "$name" "$b" "$n" "${free[0]}" "$source" &
            slot_of[$!]="${free[0]}"
            batch_of[$!]="$b"
            rounds_of[$!]="$n"
            free=("${free[@]:1}")
        done
        [ "${#slot_of[@]}" -gt 0 ] || break
        wait -n -p pid
        # Only batches are counted (moto, in the same shell, is not one).
        [ -n "${pid:-}" ] && [ -n "${slot_of[$pid]:-}" ] || continue
        free+=("${slot_of[$pid]}")
        local fb="${batch_of[$pid]}" n="${rounds_of[$pid]}"
        unset "slot_of[$pid]" "batch_of[$pid]" "rounds_of[$pid]"
        local out="$work/$name-batch$fb.log"
        local totals passed
        totals="$(grep '^totals:' "$out" | tail -1)"
        passed="$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)"
        local a l p f sn
        a="$(sed -n 's/^totals: \([0-9]*\) writes acknowledged.*/\1/p' <<<"$totals")"
        sn="$(sed -n 's/.* \([0-9]*\) snapshots checked.*/\1/p' <<<"$totals")"
        l="$(sed -n 's/.* \([0-9]*\) documents lost or wrong.*/\1/p' <<<"$totals")"
        p="$(sed -n 's/^\([0-9]*\) passed.*/\1/p' <<<"$passed")"
        f="$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$passed")"
        if [ -z "$a" ] || [ -z "$p" ]; then
            echo "$name batch $fb: crash-test.sh gave no summary; log kept: $out"
            failed=1
            failed_rounds=$((failed_rounds + n))
            done_rounds=$((done_rounds + n))
            continue
        fi
        acked=$((acked + a))
        snaps=$((snaps + ${sn:-0}))
        lost=$((lost + ${l:-0}))
        failed_rounds=$((failed_rounds + ${f:-0}))
        done_rounds=$((done_rounds + p + ${f:-0}))
        echo "$name batch $fb: $p passed, ${f:-0} failed, $a acknowledged, ${sn:-0} snapshots checked, ${l:-0} lost ($((SECONDS - started)) s)"
        if [ "${f:-0}" -gt 0 ] || [ "${l:-0}" -gt 0 ]; then
            failed=1
            echo "  log kept: $out"
        else
            rm -f "$out"
        fi
    done
    echo "SOAK $name: $done_rounds kill -9 rounds, $acked writes acknowledged, $snaps snapshots checked, $lost lost, $failed_rounds rounds failed, in $((SECONDS - started)) s"
}

start_moto() {
    moto="$root/.venv/bin/moto_server"
    if [ ! -x "$moto" ]; then
        echo "soak.sh: $moto is missing: run scripts/moto-venv.sh (or --s3-rounds 0)" >&2
        exit 2
    fi
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    "$moto" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
    moto_pid=$!
    trap 'kill $moto_pid 2>/dev/null' EXIT
    local ready=0
    for _ in $(seq 1 300); do
        curl -s -o /dev/null -X PUT "http://127.0.0.1:$port/reef-soak" && { ready=1; break; }
        sleep 0.1
    done
    if [ "$ready" -eq 0 ]; then
        echo "soak.sh: moto did not answer on 127.0.0.1:$port; log: $work/moto.log" >&2
        exit 2
    fi
}

# The S3 settings only for the S3 soak's processes.
soak_s3() {
    AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
    export AWS_ENDPOINT AWS_ALLOW_HTTP AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    soak s3 "$s3_rounds" "s3://reef-soak/soak"
}

[ "$s3_rounds" -gt 0 ] && start_moto
if [ "$parallel" -eq 1 ]; then
    pids=()
    [ "$local_rounds" -gt 0 ] && { ( soak local "$local_rounds" ""; exit "$failed" ) & pids+=($!); }
    [ "$s3_rounds" -gt 0 ] && { ( soak_s3; exit "$failed" ) & pids+=($!); }
    for pid in "${pids[@]}"; do
        wait "$pid" || failed=1
    done
else
    [ "$local_rounds" -gt 0 ] && soak local "$local_rounds" ""
    if [ "$s3_rounds" -gt 0 ]; then
        ( soak_s3; exit "$failed" ) || failed=1
    fi
fi

[ "$failed" -eq 0 ] && rm -rf "$work"
exit "$failed"
