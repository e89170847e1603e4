#!/usr/bin/env bash
# Mounts the embedded default — a local directory store — on a fresh
# machine: installs fuse3 if missing, builds reef, and mounts ./reef-data
# at ./mnt (or at the mountpoint given). Unmount with `fusermount3 -u ./mnt`.
set -euo pipefail
cd "$(dirname "$0")/.."
mountpoint="${1:-./mnt}"
source="${REEF_SOURCE:-./reef-data}"

if ! command -v fusermount3 >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing fuse3"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi
cargo build --release --quiet
mkdir -p "$mountpoint" "$source"
./target/release/reef mount "$source" "$mountpoint"
echo "reef: $source is mounted at $mountpoint — try: mkdir $mountpoint/notes && echo '{\"title\":\"hi\"}' > $mountpoint/notes/a.json && cat $mountpoint/notes/a.json"
