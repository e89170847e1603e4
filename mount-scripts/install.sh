#!/usr/bin/env bash
# Installs reef so that mount(8), /etc/fstab and systemd can mount it:
#
#   PREFIX/bin/reef              the binary (default PREFIX=/usr/local)
#   SBINDIR/mount.fuse.reef      -> mount.fuse3 (default SBINDIR=/sbin)
#
# How `mount -t fuse.reef SOURCE DIR` reaches reef (util-linux 2.38, fuse3):
#   1. mount(8) looks for the helper /sbin/mount.fuse.reef (then
#      /sbin/fs.d/, /sbin/fs/); if there is none it strips the subtype and
#      runs /sbin/mount.fuse with an extra `-t fuse.reef`. mount.fuse and
#      mount.fuse.reef are both fuse3's mount.fuse3, which takes the type
#      from `-t` or from its own name.
#   2. mount.fuse3 drops noauto/_netdev/nofail/user..., adds dev,suid and runs
#      /bin/sh -c "'reef' 'SOURCE' 'DIR' -o 'rw,dev,suid,...'".
#   3. mount(8) removes PATH from the helper's environment, so that shell
#      finds `reef` on its built-in default path (dash:
#      /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin): reef
#      must live in one of those directories; /usr/local/bin is the default.
#   4. `reef SOURCE DIR -o OPTS` is `reef mount`: it returns once the mount is
#      live and leaves the daemon running; umount(8) stops it.
#
# The helper symlink is optional on current util-linux (step 1 falls back to
# mount.fuse), but makes the lookup explicit and works with older mount(8)s.
#
# Idempotent: run it again after every build; it says what it did.
#
# Usage: mount-scripts/install.sh [--prefix DIR] [--sbindir DIR]
#            [--binary PATH] [--no-helper] [--uninstall]
# Environment: PREFIX, SBINDIR, REEF (the binary), DESTDIR (staging root for
# packages: files go to $DESTDIR$PREFIX/..., symlinks still point at the
# final paths).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
prefix="${PREFIX:-/usr/local}"
sbindir="${SBINDIR:-/sbin}"
destdir="${DESTDIR:-}"
binary="${REEF:-}"
helper=1
uninstall=0

usage() {
    sed -n '/^# Usage:/,/^# final paths)/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --sbindir) sbindir="${2:?--sbindir needs a directory}"; shift 2 ;;
        --sbindir=*) sbindir="${1#*=}"; shift ;;
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        --binary=*) binary="${1#*=}"; shift ;;
        --no-helper) helper=0; shift ;;
        --uninstall) uninstall=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute: $prefix" >&2; exit 2 ;; esac
case "$sbindir" in /*) ;; *) echo "install.sh: --sbindir must be absolute: $sbindir" >&2; exit 2 ;; esac

bin_dest="$destdir$prefix/bin/reef"
link_dest="$destdir$sbindir/mount.fuse.reef"

# fuse3's mount helper, by the name it should be linked as.
find_mount_fuse3() {
    local d
    for d in "$sbindir" /sbin /usr/sbin /usr/local/sbin /bin /usr/bin; do
        if [ -x "$d/mount.fuse3" ]; then
            echo "$d/mount.fuse3"
            return 0
        fi
    done
    return 1
}

# Is this symlink one that install.sh made (it points at some mount.fuse3)?
is_our_link() {
    [ -L "$1" ] && case "$(readlink "$1")" in mount.fuse3 | */mount.fuse3) true ;; *) false ;; esac
}

if [ "$uninstall" = 1 ]; then
    if [ -e "$bin_dest" ] || [ -L "$bin_dest" ]; then
        rm -f "$bin_dest"
        echo "removed $bin_dest"
    else
        echo "not installed: $bin_dest"
    fi
    if [ "$helper" = 1 ]; then
        if is_our_link "$link_dest"; then
            rm -f "$link_dest"
            echo "removed $link_dest"
        elif [ -e "$link_dest" ] || [ -L "$link_dest" ]; then
            echo "left $link_dest alone: it is not a symlink to mount.fuse3" >&2
        else
            echo "not installed: $link_dest"
        fi
    fi
    exit 0
fi

# The binary: --binary/$REEF, else the newest of target/{release,debug}/reef.
if [ -z "$binary" ]; then
    for candidate in "$root/target/release/reef" "$root/target/debug/reef"; do
        if [ -x "$candidate" ] && { [ -z "$binary" ] || [ "$candidate" -nt "$binary" ]; }; then
            binary="$candidate"
        fi
    done
fi
if [ -z "$binary" ] || [ ! -x "$binary" ]; then
    echo "install.sh: no reef binary${binary:+ at $binary}: build one first (cargo build --release) or pass --binary PATH" >&2
    exit 1
fi
if ! version="$("$binary" --version 2>&1)"; then
    echo "install.sh: $binary does not run: $version" >&2
    exit 1
fi

mkdir -p "$(dirname "$bin_dest")"
if [ -f "$bin_dest" ] && [ ! -L "$bin_dest" ] && cmp -s "$binary" "$bin_dest"; then
    echo "unchanged: $bin_dest ($version)"
else
    # Copy then rename: atomic, and safe while an old reef daemon still runs.
    tmp="$bin_dest.install.$$"
    trap 'rm -f "$tmp"' EXIT
    cp "$binary" "$tmp"
    chmod 0755 "$tmp"
    mv -f "$tmp" "$bin_dest"
    trap - EXIT
    echo "installed $binary -> $bin_dest ($version)"
fi

if [ "$helper" = 1 ]; then
    if ! mount_fuse3="$(find_mount_fuse3)"; then
        echo "warning: mount.fuse3 not found: install fuse3 (apt-get install fuse3 / dnf install fuse3);" \
            "until then only \`reef mount\` works, not mount -t fuse.reef or fstab" >&2
    else
        # A relative link when the helper sits next to mount.fuse3, as fuse3's
        # own mount.fuse -> mount.fuse3 does.
        mkdir -p "$(dirname "$link_dest")"
        fuse_dir="$(dirname "$mount_fuse3")"
        if [ "$fuse_dir" = "$sbindir" ] ||
            { [ -z "$destdir" ] && [ "$(cd "$fuse_dir" && pwd -P)" = "$(cd "$sbindir" && pwd -P)" ]; }; then
            target="mount.fuse3"
        else
            target="$mount_fuse3"
        fi
        if [ -L "$link_dest" ] && [ "$(readlink "$link_dest")" = "$target" ]; then
            echo "unchanged: $link_dest -> $target"
        elif [ -e "$link_dest" ] && [ ! -L "$link_dest" ]; then
            echo "install.sh: $link_dest exists and is not a symlink; leaving it alone" \
                "(remove it and rerun to link it to $target)" >&2
            exit 1
        else
            was=""
            [ -L "$link_dest" ] && was=" (was -> $(readlink "$link_dest"))"
            ln -sfn "$target" "$link_dest"
            echo "linked $link_dest -> $target$was"
        fi
    fi
fi

# mount(8) runs its helpers without PATH: reef must be on /bin/sh's default path.
case "$prefix/bin" in
    /usr/local/bin | /usr/bin | /bin) ;;
    *)
        echo "note: $prefix/bin is not on the search path mount(8) helpers use" \
            "(/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin): \`reef mount\`" \
            "works from there, but for mount -t fuse.reef, fstab and systemd install with" \
            "PREFIX=/usr/local (or link $prefix/bin/reef into /usr/local/bin)"
        ;;
esac
