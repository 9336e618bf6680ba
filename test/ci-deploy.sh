#!/usr/bin/env bash
# Deployment checks for CI (called from .ci/run), no container engine needed:
#  1. the Dockerfile's build stage, run outside a container: the same script
#     (deploy/docker/build.sh) with cgo and libusb;
#  2. cross-compilation of the pure-Go build (-tags nousb, CGO_ENABLED=0)
#     for linux/amd64, linux/arm64 and linux/arm/v7; that build's
#     check-config rejects a usbhid source;
#  3. hadolint on the Dockerfile, if Debian packages it (bookworm does not:
#     then the Dockerfile rules in test/deploy_docker_test.go stand in);
#  4. systemd-analyze verify on the units, where systemd-analyze exists.
# The deploy Go tests (sample configs, units, Dockerfile rules) run with the
# rest of the suite in test/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== Dockerfile build stage outside a container (deploy/docker/build.sh)"
grep -q 'deploy/docker/build.sh' Dockerfile || { echo "Dockerfile no longer builds with deploy/docker/build.sh" >&2; exit 1; }
sh deploy/docker/build.sh "$out/upsbridge" ci
ldd "$out/upsbridge" | grep -q libusb || { echo "the image's binary does not link libusb" >&2; exit 1; }
ls -l "$out/upsbridge" | awk '{print "   size:", $5, "bytes"}'

echo "== cross-compile -tags nousb, CGO_ENABLED=0"
for target in linux/amd64 linux/arm64 linux/arm/v7; do
	os=${target%%/*}; rest=${target#*/}; arch=${rest%%/*}; arm=""
	[ "$rest" != "$arch" ] && arm=${rest#*/v}
	bin="$out/upsbridge-${os}-${arch}${arm:+v$arm}"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOARM=$arm go build -tags nousb -trimpath -ldflags "-s -w" -o "$bin" ./cmd/upsbridge
	printf '   %-14s %s bytes\n' "$target" "$(stat -c %s "$bin")"
done
"$out/upsbridge-linux-amd64" version
# A build without USB support rejects a usbhid source at check-config, not
# only when run starts.
printf 'sources:\n  - {id: rack-ups, type: usbhid}\n' >"$out/usbhid.yaml"
if msg=$("$out/upsbridge-linux-amd64" check-config -c "$out/usbhid.yaml" 2>&1); then
	echo "the nousb build accepted a usbhid source at check-config" >&2; exit 1
fi
grep -q 'sources\[0\].type: .*without USB support' <<<"$msg" || { echo "unexpected check-config output: $msg" >&2; exit 1; }
echo "   check-config of a usbhid source on the nousb build: rejected as expected"

echo "== hadolint"
if command -v hadolint >/dev/null; then
	hadolint Dockerfile
elif apt-cache show hadolint >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hadolint >/dev/null
		hadolint Dockerfile
	else
		echo "   hadolint is packaged but not installed (not root): skipped"
	fi
else
	echo "   hadolint is not packaged for this Debian release: skipped (test/deploy_docker_test.go checks the Dockerfile's rules)"
fi

echo "== systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
	# verify insists the ExecStart binary exists: point the units at the one
	# just built.
	mkdir -p "$out/units"
	for u in deploy/systemd/*.service; do
		sed "s|/usr/local/bin/upsbridge|$out/upsbridge|g" "$u" >"$out/units/$(basename "$u")"
	done
	systemd-analyze verify "$out"/units/*.service
	for u in "$out"/units/*.service; do
		systemd-analyze security --offline=yes "$u" 2>/dev/null | tail -1 | sed 's/^/   /' || true
	done
else
	echo "   systemd-analyze not available: skipped"
fi
echo "== deploy checks passed"
