#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# run-conformance.sh MODE CONFIG [BUILDDIR]
#
# Runs the uAPI conformance program in MODE ("direct": the binary linked with
# libguestmem; "exec": the plain-libc binary under `guestmem exec --`) with
# the environment of CONFIG, and compares its output with
# tests/uapi/expected/CONFIG.txt.  '#' lines are ignored on both sides and
# runs of blanks compare equal.  Prints a one-test TAP stream and exits
# nonzero on any difference (showing the diff) or if the program fails.
#
# CONFIG is the expected file's name: linux-6.8, linux-6.12, linux-6.18,
# linux-6.18-nosw-nosmm, linux-6.8-nosw.
#
# BUILDDIR defaults to $MESON_BUILD_ROOT, else ./build.  The binaries are
# BUILDDIR/tests/uapi/conformance-{direct,exec} and BUILDDIR/src/cli/guestmem;
# GUESTMEM_CLI / CONFORMANCE_BIN override the paths.
set -u

usage() {
	echo "usage: $0 direct|exec|raw CONFIG [BUILDDIR]" >&2
	exit 2
}

[ $# -ge 2 ] || usage
mode=$1
config=$2
builddir=${3:-${MESON_BUILD_ROOT:-build}}
srcdir=$(cd "$(dirname "$0")" && pwd)
expected=$srcdir/expected/$config.txt

[ -f "$expected" ] || { echo "no expected file $expected" >&2; exit 2; }

# The kernel profile and Kconfig of each configuration, spelled out in full
# so that nothing is inherited from the caller's environment.
case $config in
linux-6.8) profile=linux-6.8 kconfig="KVM_SW_PROTECTED_VM=y KVM_SMM=y" ;;
linux-6.12) profile=linux-6.12 kconfig="KVM_SW_PROTECTED_VM=y KVM_SMM=y" ;;
linux-6.18) profile=linux-6.18 kconfig="KVM_SW_PROTECTED_VM=y KVM_SMM=y" ;;
linux-6.18-nosw-nosmm) profile=linux-6.18 kconfig="KVM_SW_PROTECTED_VM=n KVM_SMM=n" ;;
linux-6.8-nosw) profile=linux-6.8 kconfig="KVM_SW_PROTECTED_VM=n KVM_SMM=y" ;;
*) echo "unknown configuration $config" >&2; exit 2 ;;
esac

case $mode in
direct)
	bin=${CONFORMANCE_BIN:-$builddir/tests/uapi/conformance-direct}
	cmd=("$bin")
	;;
exec)
	bin=${CONFORMANCE_BIN:-$builddir/tests/uapi/conformance-exec}
	cli=${GUESTMEM_CLI:-$builddir/src/cli/guestmem}
	[ -x "$cli" ] || { echo "1..0 # SKIP no guestmem CLI at $cli"; exit 77; }
	cmd=("$cli" exec -- "$bin")
	;;
raw)
	# Every routed call by syscall(2): the filter must answer them all.
	bin=${CONFORMANCE_BIN:-$builddir/tests/uapi/conformance-raw}
	cli=${GUESTMEM_CLI:-$builddir/src/cli/guestmem}
	[ -x "$cli" ] || { echo "1..0 # SKIP no guestmem CLI at $cli"; exit 77; }
	cmd=(env GUESTMEM_SECCOMP=files "$cli" exec -- "$bin")
	;;
*) usage ;;
esac
[ -x "$bin" ] || { echo "no conformance binary at $bin" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Never let the caller's real-kernel switch hide a case.
env -u GM_CONFORMANCE_REAL_KVM -u GUESTMEM_BACKING \
	GUESTMEM_PROFILE="$profile" GUESTMEM_CONFIG="$kconfig" \
	"${cmd[@]}" >"$tmp/out" 2>"$tmp/err"
rc=$?

normalize() {
	grep -v '^#' "$1" | sed -E 's/[[:space:]]+/ /g; s/ $//'
}
normalize "$expected" >"$tmp/expected"
normalize "$tmp/out" >"$tmp/actual"

echo "1..1"
name="conformance $mode $config"
if [ $rc -eq 0 ] && diff -u "$tmp/expected" "$tmp/actual" >"$tmp/diff"; then
	echo "ok 1 - $name ($(wc -l <"$tmp/actual") cases)"
	exit 0
fi
echo "not ok 1 - $name (exit status $rc)"
if [ -s "$tmp/diff" ]; then
	echo "# --- expected/$config.txt  +++ actual output"
	sed 's/^/# /' "$tmp/diff"
fi
if [ -s "$tmp/err" ]; then
	echo "# stderr:"
	sed 's/^/# /' "$tmp/err" | head -50
fi
exit 1
