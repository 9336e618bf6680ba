#!/usr/bin/env bash
# Fresh-clone check (run by .ci/run): clones the repository's committed HEAD
# into an empty temporary folder, with nothing beside it (no corpus, no
# untracked files, no build cache of this tree's binaries), and runs the
# README's two commands there as a new contributor would:
#
#   1. go run ./cmd/upsbridge demo
#      The demo runs until interrupted. It is started in its own process
#      group, must print an ONBATT and then an ONLINE event within
#      DEMO_TIMEOUT seconds, and must stop within 10 s of Ctrl-C (SIGINT to
#      the group) without reporting an error.
#   2. bash test/run.sh
#      With FRESH_CLONE_TESTS=full, exactly as written (the whole suite).
#      By default (what CI runs, since the whole suite already ran on this
#      commit in the step before): the same command, given the packages
#      whose tests read files of the repository (those importing
#      internal/datadir, which finds testdata/), plus the tests of test/ that
#      read the repository's files (curated device dumps, deploy/, README
#      and docs/ with their examples, the demo). These are what a missing or
#      untracked file breaks; the rest reads nothing outside its package.
#
# CI is unset for both commands (a newcomer's shell), so the optional full
# corpus is skipped, not failed. Prints the wall time of each part.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
DEMO_TIMEOUT=${DEMO_TIMEOUT:-60}
work=$(mktemp -d)
demo_pid=""
cleanup() {
	if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then kill -KILL -- "-$demo_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
t0=$(date +%s)

git clone -q --no-local "$src" "$work/upsbridge"
cd "$work/upsbridge"
echo "   cloned $(git rev-parse --short HEAD) into an empty folder: $(ls -A "$work" | tr '\n' ' ')"

# The README's two commands, read from its "Two commands" block, so this
# script runs what the README says.
mapfile -t cmds < <(awk '/^## Two commands/{f=1} f&&/^```sh/{b=1;next} b&&/^```/{exit} b{sub(/[ \t]+#.*/,""); print}' README.md)
[ "${#cmds[@]}" -eq 2 ] || { echo "README's Two commands block has ${#cmds[@]} commands, want 2" >&2; exit 1; }
[ "${cmds[0]}" = "go run ./cmd/upsbridge demo" ] || { echo "README's first command changed: ${cmds[0]}" >&2; exit 1; }
[ "${cmds[1]}" = "bash test/run.sh" ] || { echo "README's second command changed: ${cmds[1]}" >&2; exit 1; }
unset CI UPSBRIDGE_CORPUS

echo "== ${cmds[0]} (until ONBATT and ONLINE, then Ctrl-C)"
log=$work/demo.log
setsid bash -c "${cmds[0]}" >"$log" 2>&1 </dev/null &
demo_pid=$!
deadline=$(($(date +%s) + DEMO_TIMEOUT))
until grep -q ONBATT "$log" && grep -q ONLINE "$log"; do
	if ! kill -0 "$demo_pid" 2>/dev/null; then echo "the demo exited early:" >&2; cat "$log" >&2; exit 1; fi
	if [ "$(date +%s)" -ge "$deadline" ]; then echo "no ONBATT and ONLINE within ${DEMO_TIMEOUT}s:" >&2; cat "$log" >&2; exit 1; fi
	sleep 1
done
kill -INT -- "-$demo_pid"
status=0
for _ in $(seq 1 20); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$demo_pid" 2>/dev/null; then echo "the demo did not stop within 10s of Ctrl-C" >&2; exit 1; fi
wait "$demo_pid" || status=$?
demo_pid=""
# go run itself exits 1 when interrupted, whatever the program's status;
# the demo reports its own failures as "upsbridge demo: ..." lines.
if [ "$status" -gt 1 ] || grep -v '^upsbridge demo: simulated' "$log" | grep -qE '^upsbridge demo: |^panic:|"level":"ERROR"'; then
	echo "the demo failed (status $status) after Ctrl-C:" >&2; cat "$log" >&2; exit 1
fi
sed 's/^/   /' "$log" | head -20
t1=$(date +%s)
echo "   demo: $((t1 - t0))s (clone, build, outage, stop)"

echo "== ${cmds[1]}"
if [ "${FRESH_CLONE_TESTS:-subset}" = full ]; then
	bash -c "${cmds[1]}"
else
	mapfile -t pkgs < <(go list -f '{{.ImportPath}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... |
		awk '$1 !~ /\/test$/ && / github.com\/upsbridge\/upsbridge\/internal\/datadir( |$)/ {print $1}')
	[ "${#pkgs[@]}" -ge 5 ] || { echo "found ${#pkgs[@]} packages reading test data, want at least 5" >&2; exit 1; }
	echo "   packages reading repository files: ${pkgs[*]}"
	bash -c "${cmds[1]} \"\$@\"" _ "${pkgs[@]}"
	bash -c "${cmds[1]} \"\$@\"" _ -run 'TestNUTDDLCurated|TestDeploy|TestDocs|TestDemo|TestShipped' ./test/
fi
t2=$(date +%s)
echo "   tests: $((t2 - t1))s; fresh-clone step: $((t2 - t0))s"
