#!/usr/bin/env bash
# Runs upsbridge's whole test suite with the race detector.
#
# The tests use real peers: mosquitto, NUT's upsd with dummy-ups, and libusb
# for the USB HID source. Run as root on Debian, this installs what is
# missing; otherwise it says what to install. Extra arguments go to go test
# (e.g. -run TestSimOutageEndToEnd ./test/).
#
# The test data the suite needs is in testdata/. Tests over the full NUT
# device dump library run when UPSBRIDGE_CORPUS names a directory holding
# nut-ddl/ (or ../shared/testdata exists beside the repository), and skip
# otherwise (fail under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing+=(mosquitto)
[ -x /lib/nut/upsd ] || [ -x /usr/lib/nut/upsd ] || missing+=(nut-server)
command -v upsc >/dev/null || missing+=(nut-client)
[ -f /usr/include/libusb-1.0/libusb.h ] || missing+=(libusb-1.0-0-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v gcc >/dev/null || missing+=(gcc)
# Home Assistant value templates are rendered with Jinja2, as HA does.
/usr/bin/python3 -c 'import jinja2' 2>/dev/null || python3 -c 'import jinja2' 2>/dev/null || missing+=(python3-jinja2)

if ((${#missing[@]})); then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "test/run.sh: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
		# Debian starts mosquitto as a service on install; the tests run
		# their own on free ports and never need it.
	else
		echo "test/run.sh: missing ${missing[*]}; install with:" >&2
		echo "  sudo apt-get install ${missing[*]}" >&2
		echo "(tests that need them skip, or fail when CI=true)" >&2
	fi
fi

if [ $# -eq 0 ]; then
	set -- ./...
fi
exec go test -race -count=1 -timeout 40m "$@"
