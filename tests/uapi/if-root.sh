#!/bin/sh
# Run the TAP test "$@" only as root (it needs CAP_SETUID, as
# `guestmem exec --user` does); otherwise report it skipped.
if [ "$(id -u)" != 0 ]; then
	echo "1..0 # SKIP needs root"
	exit 0
fi
exec "$@"
