#!/bin/sh
# runtime-packages.sh BINARY... — prints, one a line, the Debian packages that hold the
# shared libraries the binaries load (ldd, then dpkg -S). The image's build stage runs
# it so that the runtime stage installs exactly those packages and nothing else; run it
# on any Debian host to see the list.
set -eu
if [ "$#" -eq 0 ]; then
    echo "usage: $0 BINARY..." >&2
    exit 2
fi
owner() {
    # With merged /usr a library is known to dpkg under /lib or /usr/lib, whichever
    # its package ships; ldd may print either.
    for p in "$1" "/usr$1" "${1#/usr}"; do
        if out=$(dpkg -S "$p" 2>/dev/null); then
            echo "$out" | head -n 1 | cut -d: -f1
            return 0
        fi
    done
    echo "runtime-packages.sh: no package owns $1" >&2
    return 1
}
libs=$(for bin in "$@"; do
    ldd "$bin" || exit 1
done | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
[ -n "$libs" ] || { echo "runtime-packages.sh: ldd found no libraries" >&2; exit 1; }
pkgs=""
for lib in $libs; do
    pkg=$(owner "$lib") || exit 1
    pkgs="$pkgs $pkg"
done
printf '%s\n' $pkgs | sort -u
