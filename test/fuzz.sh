#!/usr/bin/env bash
# Runs every Go fuzz target for a short time (FUZZTIME, default 10s) and
# prints the executions of each. A failure prints the fuzzer's output and
# exits 1; Go has then written the crashing input under the package's
# testdata/fuzz/<Target>/, where it belongs as a regression case (commit it
# with the fix). Usage: bash test/fuzz.sh [target-name-regexp]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
only=${1:-.}

# package target
targets=(
	"./internal/nut/client FuzzSplitLine"
	"./internal/nut/client FuzzQuote"
	"./internal/nut/client FuzzListReply"
	"./internal/hid/hidparse FuzzParse"
	"./internal/hid/hidmap FuzzDecode"
	"./bridge FuzzParseStatus"
	"./config FuzzLoad"
	"./internal/importer/upsmon FuzzConvert"
	"./mqttwire FuzzDecodeState"
	"./mqttwire FuzzDecodeEvent"
	"./mqttwire FuzzDecodeAgent"
	"./mqttwire FuzzParseTopic"
	"./internal/agent/intake FuzzHandle"
	"./internal/agent/statefile FuzzLoad"
	"./sinks/mqtt FuzzDiscoveryOwned"
	"./sinks/mqtt FuzzWatchState"
	"./sinks/primary FuzzAgentState"
	"./sinks/agentrelay FuzzRelay"
	"./internal/nutproto FuzzParser"
	"./sinks/notify FuzzServiceResponse"
	"./internal/metricname FuzzSeries"
)

# Every Fuzz function in the repository must be listed above.
listed=$(printf '%s\n' "${targets[@]}" | awk '{print $2}' | sort)
found=$(grep -rhoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . | sed 's/^func //' | sort)
if [ "$listed" != "$found" ]; then
	echo "fuzz.sh: the target list differs from the Fuzz functions in the repository:"
	diff <(echo "$listed") <(echo "$found") || true
	exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=0
total=0
printf '%-22s %-28s %12s\n' target package executions
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	[[ $name =~ $only ]] || continue
	ok=0
	for try in 1 2; do
		if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 1s "$pkg" >"$log" 2>&1; then
			ok=1
			break
		fi
		# Go's fuzzing engine can end with "context deadline exceeded" when
		# a worker answers late on a loaded machine; it found no input then
		# (a crasher is always written under testdata/fuzz and named).
		if grep -q 'Failing input written to' "$log" || ! grep -q 'context deadline exceeded' "$log"; then
			break
		fi
		echo "fuzz.sh: $name ended with a late worker (no failing input); running it again"
	done
	if [ "$ok" = 1 ]; then
		execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
		printf '%-22s %-28s %12s\n' "$name" "$pkg" "${execs:-?}"
		total=$((total + ${execs:-0}))
	else
		printf '%-22s %-28s %12s\n' "$name" "$pkg" FAILED
		sed -n '1,80p' "$log"
		failed=1
	fi
done
echo "fuzz: $total executions in all ($fuzztime per target)"
exit "$failed"
