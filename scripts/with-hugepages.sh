#!/bin/sh
# Run a command with free 2 MiB huge pages for the hugetlb test cases
# (MAP_HUGETLB guest RAM, hugetlbfs memslots), which otherwise skip: the
# default vm.nr_hugepages is 0.  Where the pool can be raised (root, as on
# a CI machine), it is raised by what is missing for NEED free pages and
# set back afterwards, and GUESTMEM_TEST_HUGEPAGES=1 tells those cases
# that a missing page is then a failure, not a skip.
# Usage: with-hugepages.sh CMD [ARG...]
NEED=8
knob=/proc/sys/vm/nr_hugepages
free=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo 2>/dev/null)
old=$(cat "$knob" 2>/dev/null)
if [ -n "$free" ] && [ -n "$old" ] && [ -w "$knob" ]; then
	if [ "$free" -lt "$NEED" ]; then
		want=$((old + NEED - free))
		echo "$want" > "$knob" 2>/dev/null
		trap 'echo "$old" > "$knob"' EXIT INT TERM
	fi
	free=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
	if [ "$free" -ge "$NEED" ]; then
		GUESTMEM_TEST_HUGEPAGES=1
		export GUESTMEM_TEST_HUGEPAGES
	else
		echo "with-hugepages: only $free free huge pages; the hugetlb cases skip" >&2
	fi
fi
"$@"
rc=$?
exit "$rc"
