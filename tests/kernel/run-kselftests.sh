#!/usr/bin/env bash
# make check-kernel: Linux 6.12's own KVM selftests, built unmodified from
# Debian's linux-source-6.12, run under `guestmem exec --profile linux-6.12`.
#
#   tests/kernel/run-kselftests.sh            the list from issue 9
#   tests/kernel/run-kselftests.sh --sweep    every x86_64 selftest binary
#
# Nothing of the kernel tree enters the repository (GPL): the .deb is cached
# in $XDG_CACHE_HOME/guestmem (or ~/.cache/guestmem) and built in a temporary
# directory that is removed afterwards.  Environment:
#   KSELFTEST_TREE=DIR   build (once) and keep the tree in DIR instead
#   KSELFTEST_TIMEOUT=S  per-test timeout in seconds (default 300)
#   GUESTMEM=PATH        the guestmem binary (default build/src/cli/guestmem)
#   KSELFTEST_PROFILE=P  the guestmem profile (default linux-6.12)
#   KSELFTEST_VIA_SHELL=1  start each test from a shell that runs under
#                        guestmem too (`guestmem exec -- sh -c 'test; ...'`),
#                        as a runner script would: the test is a fork child's
#                        exec and shares the shell's seccomp listener
#
# Output: one line per test (PASS / FAIL / SKIP and the test's last line),
# then "N passed, M failed[, K skipped]".  Tests that need what guestmem
# does not do yet are listed, with a reason, in tests/kernel/known-failures:
# the exit status is non-zero if a test not listed there fails (a
# regression) or a listed one passes or skips (the list is stale).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
known="$here/known-failures"
flaky="$here/flaky"
pkg=linux-source-6.12
timeout_s=${KSELFTEST_TIMEOUT:-300}
guestmem=${GUESTMEM:-$repo/build/src/cli/guestmem}
mode=list
case "${1:-}" in
--sweep) mode=sweep ;;
"") ;;
*) echo "usage: $0 [--sweep]" >&2; exit 2 ;;
esac

die() { echo "check-kernel: $*" >&2; exit 1; }

# Run from `make check-kernel`, the parent make's variables would reach the
# kernel's makefiles: with MAKELEVEL > 0 the selftests' lib.mk leaves
# OUTPUT empty and writes its objects and binaries under / instead of the
# build tree.  The kernel build must start as a top-level make.
unset MAKEFLAGS MFLAGS GNUMAKEFLAGS MAKELEVEL MAKEOVERRIDES

[ -x "$guestmem" ] || die "no guestmem binary at $guestmem (run make build)"

# --- 1. the source package, cached outside the repository -----------------
cache=${XDG_CACHE_HOME:-$HOME/.cache}/guestmem
fetch_deb() {
	local deb
	mkdir -p "$cache" || die "cannot create $cache"
	deb=$(ls "$cache"/${pkg}_*_all.deb 2>/dev/null | tail -n 1)
	if [ -z "$deb" ]; then
		echo "check-kernel: apt-get download $pkg into $cache" >&2
		# A fresh machine may have no package lists yet: update once, retry.
		(cd "$cache" && apt-get download -q "$pkg" >&2) ||
			{ apt-get update -qq >&2 && (cd "$cache" && apt-get download -q "$pkg" >&2); } ||
			die "apt-get download $pkg failed (needs Debian 12 security or backports sources)"
		deb=$(ls "$cache"/${pkg}_*_all.deb 2>/dev/null | tail -n 1)
	fi
	[ -n "$deb" ] || die "no $pkg .deb in $cache"
	echo "$deb"
}

# --- 2. extract and build in a temporary directory ------------------------
# Build tools the selftests need beyond guestmem's own (make, bc, xz, flex
# and bison are not needed for headers + selftests).
ensure_tools() {
	local missing="" t
	for t in make gcc xz tar dpkg-deb python3 timeout; do
		command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
	done
	[ -z "$missing" ] || die "missing tools:$missing"
}

build_tree() {   # $1 = directory to hold the tree; prints the source root
	local dir=$1 deb src jobs
	src="$dir/$pkg"
	if [ -x "$src/tools/testing/selftests/kvm/x86_64/set_sregs_test" ] &&
	   [ -f "$dir/.built" ]; then
		echo "$src"; return 0
	fi
	deb=$(fetch_deb) || exit 1
	echo "check-kernel: extracting $(basename "$deb") in $dir" >&2
	mkdir -p "$dir/deb" || die "cannot create $dir"
	dpkg-deb -x "$deb" "$dir/deb" || die "dpkg-deb failed"
	# Drivers, file systems, networking, sound and the documentation are
	# two thirds of the tree and play no part in headers or selftests.
	tar -xaf "$dir/deb/usr/src/$pkg.tar.xz" -C "$dir" \
		--exclude="$pkg/Documentation" --exclude="$pkg/drivers" \
		--exclude="$pkg/sound" --exclude="$pkg/net" --exclude="$pkg/fs" ||
		die "untar failed"
	rm -rf "$dir/deb"
	jobs=$(nproc 2>/dev/null || echo 2)
	[ "$jobs" -gt 2 ] && jobs=2
	echo "check-kernel: make headers; make -C tools/testing/selftests/kvm (-j$jobs)" >&2
	make -C "$src" -s -j"$jobs" headers >"$dir/build.log" 2>&1 ||
		{ tail -n 30 "$dir/build.log" >&2; die "make headers failed"; }
	make -C "$src/tools/testing/selftests/kvm" -j"$jobs" >>"$dir/build.log" 2>&1 ||
		{ tail -n 30 "$dir/build.log" >&2; die "selftests build failed"; }
	[ -x "$src/tools/testing/selftests/kvm/x86_64/set_sregs_test" ] ||
		die "the selftests were not built where expected (see $dir/build.log)"
	touch "$dir/.built"
	echo "$src"
}

ensure_tools
if [ -n "${KSELFTEST_TREE:-}" ]; then
	mkdir -p "$KSELFTEST_TREE" || die "cannot create $KSELFTEST_TREE"
	tree=$(cd "$KSELFTEST_TREE" && pwd)
	case "$tree/" in "$repo"/*) die "KSELFTEST_TREE must be outside the repository" ;; esac
else
	tree=$(mktemp -d "${TMPDIR:-/tmp}/guestmem-kselftest.XXXXXX") || die "mktemp failed"
	trap 'rm -rf "$tree"' EXIT
fi
src=$(build_tree "$tree") || exit 1
kvmdir="$src/tools/testing/selftests/kvm"

# --- 3. how to run a program under guestmem with the 6.12 profile ---------
# `exec --profile` is the interface; a guestmem whose exec rejects it may
# still know the profile through GUESTMEM_PROFILE (checked with `info`,
# since an unknown profile in the environment silently means the default).
profile=${KSELFTEST_PROFILE:-linux-6.12}
runner=()
if "$guestmem" exec --profile "$profile" -- true 2>/dev/null; then
	runner=("$guestmem" exec --profile "$profile" --)
elif GUESTMEM_PROFILE=$profile "$guestmem" info 2>/dev/null |
		grep -q "^profile: *$profile\$"; then
	echo "check-kernel: exec --profile rejected; using GUESTMEM_PROFILE=$profile" >&2
	runner=(env "GUESTMEM_PROFILE=$profile" "$guestmem" exec --)
else
	die "guestmem has no $profile profile"
fi

if [ "${KSELFTEST_VIA_SHELL:-0}" = 1 ]; then
	# The shell forks and execs the test and lives on (no "exec"): the
	# test's raw calls are forwarded by the shell's listener.
	runner+=(/bin/sh -c '"$@"; exit $?' sh)
fi

# Our runs must never reach a real /dev/kvm: under guestmem exec the fd
# that open("/dev/kvm") returns is guestmem's (a socket to the kernel's
# own fstat), whatever the host has.
probe='import ctypes,os,stat
fd=os.open("/dev/kvm",os.O_RDWR)
buf=ctypes.create_string_buffer(256)
libc=ctypes.CDLL(None,use_errno=True)
assert libc.syscall(5,fd,buf)==0   # raw SYS_fstat, past the preload
mode=int.from_bytes(buf.raw[24:28],"little")
print("guestmem" if stat.S_ISSOCK(mode) else "host")'
who=$("${runner[@]}" python3 -c "$probe" 2>&1) || die "/dev/kvm probe failed: $who"
[ "$who" = guestmem ] || die "guestmem exec let /dev/kvm reach the host kernel"

# --- 4. the tests ---------------------------------------------------------
list_tests() {
	if [ "$mode" = sweep ]; then
		# Every x86_64 program the selftests Makefile built, with no
		# arguments.
		(cd "$kvmdir" && make -s -f - print_progs <<-'MK'
			include Makefile
			print_progs: ; @echo $(TEST_GEN_PROGS_x86_64)
			MK
		) | tr ' ' '\n' | sed '/^$/d'
		return
	fi
	cat <<-'LIST'
		guest_memfd_test
		set_memory_region_test
		x86_64/private_mem_conversions_test
		x86_64/private_mem_conversions_test -n 4
		x86_64/private_mem_conversions_test -n 4 -m 4
		x86_64/private_mem_kvm_exits_test
		memslot_modification_stress_test
		memslot_perf_test
		kvm_create_max_vcpus
		kvm_binary_stats_test
		pre_fault_memory_test
		max_guest_memory_test
		demand_paging_test
		dirty_log_test
		x86_64/userspace_io_test
		x86_64/sync_regs_test
		x86_64/set_sregs_test
		x86_64/smm_test
	LIST
}

# Per-test timeouts, unless KSELFTEST_TIMEOUT is given: max_guest_memory_test
# shadow-maps 128 GiB of guest memory and takes about 4.5 minutes on a 2-core
# VM; memslot_perf_test takes 50-80 s there (its ~8200 slots once made
# each unmap pass take minutes), and is held to 120 s so that a return to
# that shows as a failure rather than a long wait.  dirty_log_test runs 32
# iterations of three log modes, write-protect faults all: 229 s twice on an
# idle 2-core VM, so 300 s killed it at iteration 31 of 32 with a build
# running beside it.  hardware_disable_test forks 512 children that each
# make a 4-vCPU VM (a guest process) and 64 threads before they are killed:
# 0.55 s a child on an idle 2-core VM (77-78 children in 43 s, session 11,
# with the trees before and after that session's changes alike), so about
# 280 s in all, and 300 s killed it once.
test_timeout() {
	if [ -n "${KSELFTEST_TIMEOUT:-}" ]; then
		echo "$timeout_s"
		return
	fi
	case "$1" in
	max_guest_memory_test) echo 900 ;;
	dirty_log_test) echo 600 ;;
	hardware_disable_test) echo 600 ;;
	memslot_perf_test) echo 120 ;;
	*) echo "$timeout_s" ;;
	esac
}

# known-failures and flaky: "<test and args>: <reason>", '#' comments;
# exact names.
listed_in() {  # $1 = file, $2 = test
	local line
	[ -f "$1" ] || return 1
	while IFS= read -r line; do
		case "$line" in "#"* | "") continue ;; esac
		[ "${line%%: *}" = "$2" ] && return 0
	done <"$1"
	return 1
}
is_known() { listed_in "$known" "$1"; }
is_flaky() { listed_in "$flaky" "$1"; }

# Run test $1 once: sets rc and last (its last line).
run_test() {
	local t=$1 prog=${1%% *} args="" dir to
	[ "$prog" != "$t" ] && args=${t#* }
	dir="$kvmdir/$(dirname "$prog")"
	log="$logdir/$(echo "$t" | tr ' /' '_-').log"
	if [ ! -x "$kvmdir/$prog" ]; then
		rc=127; echo "not built" >"$log"
	else
		# Each test runs from its own directory: it opens ./TEST to load
		# itself into guest memory.
		to=$(test_timeout "$t")
		# shellcheck disable=SC2086
		(cd "$dir" && timeout -k 10 "$to" "${runner[@]}" \
			"./$(basename "$prog")" $args) </dev/null >"$log" 2>&1
		rc=$?
	fi
	last=$(sed 's/\r//g; /^[[:space:]]*$/d' "$log" | tail -n 1 | cut -c1-160)
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		last="timeout after $(test_timeout "$t")s: $last"
	fi
}

pass=0 fail=0 skip=0 status=0 known_fail=0 new_fail=0 stale=0 retried=0 flaky_fail=0
logdir="$tree/logs"
mkdir -p "$logdir"
while IFS= read -r t; do
	[ -n "$t" ] || continue
	run_test "$t"
	# A test listed in flaky is run up to three times while it fails (not
	# after a skip).  Three failures are reported as a flaky failure: it
	# is counted and shown, but does not decide the exit status.
	tries=1
	while [ "$rc" -ne 0 ] && [ "$rc" -ne 4 ] && [ "$tries" -lt 3 ] && is_flaky "$t"; do
		echo "RETRY $t (listed in tests/kernel/flaky): $last"
		retried=$((retried + 1))
		tries=$((tries + 1))
		run_test "$t"
	done
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 4 ] && is_flaky "$t" && ! is_known "$t"; then
		fail=$((fail + 1))
		flaky_fail=$((flaky_fail + 1))
		echo "FAIL $t (flaky, $tries runs; see tests/kernel/flaky): $last"
		continue
	fi
	if [ "$rc" -eq 0 ]; then
		pass=$((pass + 1))
		if is_known "$t"; then
			echo "PASS $t (listed in known-failures: remove it)"
			stale=$((stale + 1))
			status=1
		else
			echo "PASS $t"
		fi
	elif [ "$rc" -eq 4 ]; then  # KSFT_SKIP
		skip=$((skip + 1))
		if is_known "$t"; then
			# A skip is not the listed failure: the entry can never
			# match, so the list is not exact.
			echo "SKIP $t: $last (listed in known-failures: remove it)"
			stale=$((stale + 1))
			status=1
		else
			echo "SKIP $t: $last"
		fi
	else
		fail=$((fail + 1))
		if is_known "$t"; then
			echo "FAIL $t (known): $last"
			known_fail=$((known_fail + 1))
		else
			echo "FAIL $t (REGRESSION): $last"
			new_fail=$((new_fail + 1))
			status=1
		fi
	fi
done < <(list_tests)

summary="$pass passed, $fail failed"
[ "$skip" -gt 0 ] && summary="$summary, $skip skipped"
# The failures listed in known-failures are expected (each with its
# reason); what decides the exit status is what is not listed.
echo "$summary ($known_fail of the failures known: tests/kernel/known-failures; $flaky_fail flaky, $retried re-runs: tests/kernel/flaky)"
echo "check-kernel: $new_fail unexpected failures, $stale listed tests now passing or skipping"
exit "$status"
