#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# check-install.sh DESTDIR PREFIX
#
# After `make install DESTDIR=... PREFIX=...`: build tests/install/vmm.c
# against that root with nothing but pkg-config (PKG_CONFIG_SYSROOT_DIR and
# PKG_CONFIG_PATH point into it), once against the shared library and once
# statically against libguestmem.a (Requires.private / Libs.private bring
# liburcu-memb, -pthread and -ldl), and run both; then run the installed
# `guestmem` (info, and exec, which must find the installed preload).
set -eu

[ $# -eq 2 ] || { echo "usage: $0 DESTDIR PREFIX" >&2; exit 2; }
root=$(cd "$1" && pwd)
prefix=$2
src=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

step() { echo "check-install: $*"; }
fail() { echo "check-install: FAILED: $*" >&2; exit 1; }

pc=$(find "$root$prefix" -name guestmem.pc -path '*/pkgconfig/*' | head -1)
[ -n "$pc" ] || fail "no guestmem.pc under $root$prefix"
libdir=$root$(dirname "$(dirname "${pc#"$root"}")")
for f in "$root$prefix/include/guestmem/guestmem.h" "$libdir/libguestmem.a" \
	 "$libdir/libguestmem-preload.so" "$root$prefix/bin/guestmem"; do
	[ -e "$f" ] || fail "not installed: ${f#"$root"}"
done
for l in "$libdir"/libguestmem.so*; do [ -e "$l" ] || fail "no libguestmem.so"; done

export PKG_CONFIG_SYSROOT_DIR=$root
export PKG_CONFIG_PATH=$(dirname "$pc")
cflags=$(pkg-config --cflags guestmem)
step "pkg-config --cflags --libs guestmem: $cflags $(pkg-config --libs guestmem)"
step "pkg-config --static --libs guestmem: $(pkg-config --static --libs guestmem)"

# Shared: exactly what the README shows.
cc -Wall -Wextra -Werror -o "$out/vmm-shared" "$src/vmm.c" \
	$(pkg-config --cflags --libs guestmem)
# Static libguestmem (and liburcu); libc stays shared.
cc -Wall -Wextra -Werror -o "$out/vmm-static" "$src/vmm.c" $cflags \
	-Wl,-Bstatic $(pkg-config --static --libs guestmem) -Wl,-Bdynamic
if readelf -d "$out/vmm-static" | grep -q 'NEEDED.*libguestmem'; then
	fail "vmm-static needs libguestmem.so"
fi

step "running vmm-shared"
LD_LIBRARY_PATH=$libdir "$out/vmm-shared" >"$out/log" || { cat "$out/log"; fail vmm-shared; }
if ! LD_LIBRARY_PATH=$libdir ldd "$out/vmm-shared" | grep -q "$libdir/libguestmem.so"; then
	fail "vmm-shared does not use the installed libguestmem.so"
fi
step "running vmm-static"
"$out/vmm-static" >"$out/log" || { cat "$out/log"; fail vmm-static; }
tail -1 "$out/log"

step "running the installed guestmem"
"$root$prefix/bin/guestmem" info >"$out/log" || fail "guestmem info"
grep -q '^profile:' "$out/log" || fail "guestmem info printed no profile"
env -u GUESTMEM_PRELOAD "$root$prefix/bin/guestmem" exec -- sh -c 'echo "$LD_PRELOAD"' \
	>"$out/log" || fail "guestmem exec"
grep -qF "$libdir/libguestmem-preload.so" "$out/log" ||
	fail "guestmem exec did not use the installed preload: $(cat "$out/log")"
step "ok"
