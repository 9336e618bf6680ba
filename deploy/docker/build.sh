#!/bin/sh
# Builds the upsbridge binary exactly as the Dockerfile's build stage does.
# The Dockerfile runs this script, and test/ci-deploy.sh runs it outside a
# container, so the image's build steps are proven in CI without a
# container engine.
#
# Usage: deploy/docker/build.sh OUTPUT [VERSION]
# Needs: Go, a C compiler and libusb-1.0 headers (Debian: libusb-1.0-0-dev),
# because the USB HID source links libusb through cgo.
set -eu
out=${1:?usage: build.sh OUTPUT [VERSION]}
version=${2:-dev}
CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X main.version=${version}" -o "$out" ./cmd/upsbridge
"$out" version
