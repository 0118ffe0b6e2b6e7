#!/bin/sh
# TAP: no object of the static library calls a libc name the preload wraps.
# Such a call would bind to the preload's wrapper under `guestmem exec`
# (an fd lookup per call, and guestmem re-entering itself); library code
# uses src/lib/sys_raw.h instead.  The wrapped names are read from the
# generated version script, so the check follows the table.
# Usage: check-no-reentry.sh NM LIBGUESTMEM.a PRELOAD.map
nm=$1 lib=$2 map=$3
# The signal-mask wrappers (src/preload/cpuid_fault.c) only keep SIGSEGV
# unblocked and never reach guestmem: the library may call them.
names=$(tr ' ;' '\n\n' < "$map" | grep -E '^[A-Za-z_][A-Za-z_0-9]*$' |
	grep -vx 'global\|local\|pthread_sigmask\|sigprocmask')
echo "1..1"
# No names, or no listing of the library, would pass whatever it calls:
# both are failures of the check itself.
[ -n "$names" ] || { echo "not ok 1 - no wrapped names in $map"; exit 0; }
undef=$("$nm" -A -u "$lib") && [ -n "$undef" ] ||
	{ echo "not ok 1 - $nm -u $lib listed nothing"; exit 0; }
bad=$(echo "$undef" | awk '{ print $1, $NF }' | while read -r obj sym; do
	for n in $names; do
		[ "$sym" = "$n" ] && echo "# $obj calls $sym"
	done
done)
if [ -z "$bad" ]; then
	echo "ok 1 - no library object calls a wrapped libc name ($(echo $names | wc -w) names)"
else
	echo "$bad"
	echo "not ok 1 - library objects call wrapped libc names"
fi
