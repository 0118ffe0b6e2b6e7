#!/bin/sh
# Run the TAP test "$@" only as root that can become GM_TEST_GUEST_UID (it
# needs CAP_SETUID, as `guestmem exec --user` does, and a user namespace
# may map only some ids); otherwise report it skipped.
if [ "$(id -u)" != 0 ]; then
	echo "1..0 # SKIP needs root"
	exit 0
fi
uid=${GM_TEST_GUEST_UID:-65533}
if command -v setpriv >/dev/null 2>&1 &&
   ! setpriv --reuid="$uid" --regid="$uid" --clear-groups true 2>/dev/null; then
	echo "1..0 # SKIP cannot become uid $uid here"
	exit 0
fi
exec "$@"
