#!/usr/bin/env bash
# The upsbridge performance suite (issue #8). Writes docs/benchmarks.md.
#   bash test/bench/run.sh          # full suite (under 15 minutes)
#   bash test/bench/run.sh -quick   # each scenario once at its smallest size
# Extra arguments go to the suite, e.g. -only latency,footprint or -out /tmp/b.md;
# what-if runs: -extra-yaml 'hass: {enabled: false}' -scale-sizes 1000 (marked in the output).
# Go benchmarks of the agent's per-message work (no tag, no root):
#   go test -run '^$' -bench . -benchmem ./test/bench
# Needs root (upsd, dummy-ups and upsmon run as root in a temp sandbox) and the
# Debian packages nut-server, nut-client, mosquitto and iproute2 (ss).
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
args=()
for a in "$@"; do args+=("$a"); done
exec go test -tags bench -count=1 -timeout 25m -run '^TestBenchSuite$' -v ./test/bench -args "${args[@]}"
