#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test_env.sh GUESTMEM CONFIG_PROBE OPEN_KVM PRELOAD
#
# The newcomer's path, as TAP: a bad GUESTMEM_* value (or option) stops
# `guestmem info`, `guestmem exec` (before the program runs), demo and bench
# with exit status 2 and one line naming the variable and the accepted
# values; GUESTMEM_GUEST is checked by exec up front; one bad value never
# resets the others (library: config_probe); under a hand-made LD_PRELOAD a
# bad value gives one line on stderr and /dev/kvm opens fail with EINVAL
# (open_kvm); every subcommand has --help; bench rejects what it does not
# know without running anything.
set -u

[ $# -ge 4 ] || { echo "usage: $0 GUESTMEM CONFIG_PROBE OPEN_KVM PRELOAD" >&2; exit 2; }
cli=$1 probe=$2 open_kvm=$3 preload=$4

# Nothing inherited: every case states its whole environment.
for v in $(env | sed -n 's/^\(GUESTMEM_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n - $1"
	shift
	for f in "$@"; do sed 's/^/#   /' "$f"; done
}

# run CMD...: output in $tmp/out and $tmp/err, status in $rc.
run() {
	rm -f "$tmp/ran"
	"$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
}

# expect_stop DESC NAME ACCEPTED CMD...: exit 2, one line on stderr naming
# NAME and showing ACCEPTED, nothing on stdout, the program never ran.
expect_stop() {
	local desc=$1 name=$2 accepted=$3
	shift 3
	run "$@"
	if [ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
	   grep -qF -- "$name" "$tmp/err" && grep -qF -- "$accepted" "$tmp/err" &&
	   [ ! -s "$tmp/out" ] && [ ! -e "$tmp/ran" ]; then
		ok "$desc"
	else
		echo "rc=$rc ran=$([ -e "$tmp/ran" ] && echo yes || echo no)" >"$tmp/rc"
		not_ok "$desc" "$tmp/rc" "$tmp/err" "$tmp/out"
	fi
}

# expect_out DESC PATTERN: the last run succeeded and stdout matches PATTERN.
expect_out() {
	if [ "$rc" -eq 0 ] && grep -qE -- "$2" "$tmp/out"; then
		ok "$1"
	else
		echo "rc=$rc" >"$tmp/rc"
		not_ok "$1" "$tmp/rc" "$tmp/err" "$tmp/out"
	fi
}

profiles="linux-6.8, linux-6.12, linux-6.18"
switches="KVM_SW_PROTECTED_VM, KVM_SMM"
backings="memfd, secretmem"
marker=(touch "$tmp/ran")

# ---- bad environment values: info and exec ----------------------------------
for cmd in info exec; do
	if [ $cmd = exec ]; then args=(exec -- "${marker[@]}"); else args=(info); fi
	expect_stop "$cmd: bad GUESTMEM_PROFILE" GUESTMEM_PROFILE "$profiles" \
		env GUESTMEM_PROFILE=linux-6.81 "$cli" "${args[@]}"
	expect_stop "$cmd: bad GUESTMEM_CONFIG value, good GUESTMEM_PROFILE" GUESTMEM_CONFIG \
		"$switches" env GUESTMEM_PROFILE=linux-6.18 GUESTMEM_CONFIG="KVM_SMM=x" \
		"$cli" "${args[@]}"
	expect_stop "$cmd: unknown GUESTMEM_CONFIG switch" "'KVM_NOPE'" "$switches" \
		env GUESTMEM_CONFIG="KVM_SMM=n KVM_NOPE=y" "$cli" "${args[@]}"
	expect_stop "$cmd: bad GUESTMEM_BACKING" GUESTMEM_BACKING "$backings" \
		env GUESTMEM_BACKING=shm "$cli" "${args[@]}"
	expect_stop "$cmd: bad GUESTMEM_NO_PRECHECK" GUESTMEM_NO_PRECHECK "0 or empty" \
		env GUESTMEM_NO_PRECHECK=yes "$cli" "${args[@]}"
	expect_stop "$cmd: bad GUESTMEM_VCPU_SPIN_US" GUESTMEM_VCPU_SPIN_US "0 to 1000000" \
		env GUESTMEM_VCPU_SPIN_US=10ms "$cli" "${args[@]}"
	expect_stop "$cmd: bad GUESTMEM_SECCOMP" GUESTMEM_SECCOMP "files" \
		env GUESTMEM_SECCOMP=file "$cli" "${args[@]}"
	# Options are named as options.
	if [ $cmd = exec ]; then pre=(exec); post=(-- "${marker[@]}"); else pre=(info); post=(); fi
	expect_stop "$cmd: bad --profile" "--profile" "$profiles" \
		"$cli" "${pre[@]}" --profile 6.9 "${post[@]}"
	expect_stop "$cmd: bad --config" "--config" "$switches" \
		"$cli" "${pre[@]}" --config=KVM_SMM "${post[@]}"
	expect_stop "$cmd: bad --backing" "--backing" "$backings" \
		"$cli" "${pre[@]}" --backing shmem "${post[@]}"
done

# demo and bench check too, before doing anything.
expect_stop "demo: bad GUESTMEM_PROFILE" GUESTMEM_PROFILE "$profiles" \
	env GUESTMEM_PROFILE=6.81 "$cli" demo
expect_stop "bench: bad GUESTMEM_BACKING" GUESTMEM_BACKING "$backings" \
	env GUESTMEM_BACKING=x "$cli" bench core

# ---- GUESTMEM_GUEST, checked by exec up front ---------------------------------
printf 'not a shared object\n' >"$tmp/guest.txt"
expect_stop "exec: GUESTMEM_GUEST without a '/'" GUESTMEM_GUEST "./guest.so" \
	env GUESTMEM_GUEST=guest.so "$cli" exec -- "${marker[@]}"
expect_stop "exec: GUESTMEM_GUEST missing" GUESTMEM_GUEST "No such file" \
	env GUESTMEM_GUEST="$tmp/missing.so" "$cli" exec -- "${marker[@]}"
expect_stop "exec: GUESTMEM_GUEST not ELF" GUESTMEM_GUEST "not an ELF file" \
	env GUESTMEM_GUEST="$tmp/guest.txt" "$cli" exec -- "${marker[@]}"
expect_stop "exec: GUESTMEM_GUEST without guestmem_guest_main" GUESTMEM_GUEST \
	"guestmem_guest_main" env GUESTMEM_GUEST="$probe" "$cli" exec -- "${marker[@]}"

# ---- good values pass, and one setting never resets another -------------------
run env GUESTMEM_PROFILE=linux-6.18 "$cli" info --config KVM_SMM=n
expect_out "info: --config keeps GUESTMEM_PROFILE" \
	'^profile: +linux-6\.18( |$)'
run env GUESTMEM_CONFIG="KVM_SMM=n" "$cli" info --profile linux-6.18
expect_out "info: --profile keeps GUESTMEM_CONFIG" 'KVM_SW_PROTECTED_VM=y KVM_SMM=n$'
run env GUESTMEM_PROFILE=linux-6.18 GUESTMEM_GUEST="" "$cli" exec -- "${marker[@]}"
if [ "$rc" -eq 0 ] && [ -e "$tmp/ran" ]; then ok "exec: good settings run the program"
else not_ok "exec: good settings run the program" "$tmp/err"; fi

# ---- exec --user: checked before the program runs -------------------------------
expect_stop "exec: --user names no user" "--user" "a name or UID[:GID]" \
	"$cli" exec --user no-such-user-here -- "${marker[@]}"
expect_stop "exec: --user without a value" "--user" "needs a value" "$cli" exec --user
if [ "$(id -u)" != 0 ]; then
	expect_stop "exec: --user without the right to change user" "--user" "CAP_SETUID" \
		"$cli" exec --user 65533 -- "${marker[@]}"
else
	# The spawner starts the program's guest processes as that user.
	run "$cli" exec --user 65533 -- "${marker[@]}"
	if [ "$rc" -eq 0 ] && [ -e "$tmp/ran" ]; then ok "exec: --user runs the program"
	else not_ok "exec: --user runs the program" "$tmp/err"; fi
fi

# The library on its own: the good variables apply, the bad one is reported
# once and ignored; guestmem_config_set() refuses bad values, unchanged.
run env GUESTMEM_PROFILE=linux-6.18 GUESTMEM_CONFIG="KVM_SMM=x" GUESTMEM_BACKING=secretmem \
	"$probe"
if [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qF GUESTMEM_CONFIG "$tmp/err"; then
	expect_out "library: a bad GUESTMEM_CONFIG keeps profile and backing" \
		'^env: profile=linux-6\.18 sw_protected_vm=y smm=y backing=secretmem$'
else
	not_ok "library: a bad GUESTMEM_CONFIG keeps profile and backing" "$tmp/err"
fi
run env GUESTMEM_PROFILE=bogus GUESTMEM_CONFIG="KVM_SMM=n" "$probe"
expect_out "library: a bad GUESTMEM_PROFILE keeps the switches" \
	'^env: profile=linux-6\.8 sw_protected_vm=y smm=n backing=memfd$'
run "$probe"
expect_out "library: guestmem_config_set() refuses bad values, nothing changed" \
	'^config_set failures: 0$'

# ---- the preload, started by hand with a bad value -----------------------------
pre_env=(env LD_PRELOAD="$preload" ASAN_OPTIONS=verify_asan_link_order=0)
run "${pre_env[@]}" GUESTMEM_PROFILE=linux-6.18 GUESTMEM_CONFIG="KVM_SMM=x" "$open_kvm"
if [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qF GUESTMEM_CONFIG "$tmp/err" &&
   [ "$(grep -c '^open: EINVAL$' "$tmp/out")" -eq 2 ]; then
	ok "preload: one line on stderr, /dev/kvm opens fail with EINVAL"
else
	not_ok "preload: one line on stderr, /dev/kvm opens fail with EINVAL" "$tmp/err" "$tmp/out"
fi
run "${pre_env[@]}" GUESTMEM_PROFILE=linux-6.18 "$open_kvm"
if [ ! -s "$tmp/err" ] && [ "$(grep -c '^open: ok$' "$tmp/out")" -eq 2 ]; then
	ok "preload: good settings open /dev/kvm"
else
	not_ok "preload: good settings open /dev/kvm" "$tmp/err" "$tmp/out"
fi

# ---- --help everywhere; bench refuses what it does not know ----------------------
for cmd in exec info demo bench; do
	run "$cli" $cmd --help
	expect_out "$cmd --help" "^usage: guestmem $cmd"
done
expect_stop "bench: a typo in a section runs nothing" "'cor'" "core" "$cli" bench cor
expect_stop "bench: an unknown option runs nothing" "'--jsn'" "--help" "$cli" bench --jsn x
expect_stop "demo: an unknown argument" "'-x'" "--help" "$cli" demo -x

echo "1..$n"
[ "$failed" -eq 0 ]
