#!/bin/sh
# Install the Debian packages guestmem needs to build and test, if missing.
set -e
pkgs="meson ninja-build pkg-config gcc liburcu-dev"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "guestmem: installing Debian packages:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || {
		echo "guestmem: need root (or sudo) to install:$missing" >&2
		exit 1
	}
	SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
