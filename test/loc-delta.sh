#!/usr/bin/env bash
# Lines added and removed per Go package between two commits (renames
# followed), split into code and tests, for change reports:
#   bash test/loc-delta.sh FROM [TO]      # TO defaults to HEAD
set -euo pipefail
cd "$(dirname "$0")/.."
from=$1 to=${2:-HEAD}
git diff --numstat -M "$from" "$to" -- '*.go' | awk -F'\t' '
{
	add=$1; del=$2; path=$3
	# a rename is "dir/{old => new}/file.go" or "old => new": count it at the new path
	if (path ~ /=>/) {
		n = path
		if (n ~ /\{/) { pre=n; sub(/\{.*$/, "", pre); post=n; sub(/^.*\}/, "", post); mid=n; sub(/^.*\{/, "", mid); sub(/\}.*$/, "", mid); sub(/^.* => /, "", mid); n = pre mid post }
		else { sub(/^.* => /, "", n) }
		gsub(/\/\//, "/", n); path = n
	}
	dir = path; sub(/\/[^\/]*$/, "", dir); if (dir == path) dir = "."
	kind = (path ~ /_test\.go$/) ? "test" : "code"
	a[dir" "kind] += add; d[dir" "kind] += del; dirs[dir] = 1
}
END {
	for (k in dirs) printf "%-32s %8d %8d %8d %8d\n", k, a[k" code"], d[k" code"], a[k" test"], d[k" test"]
}' | sort | awk '
BEGIN { printf "%-32s %8s %8s %8s %8s\n", "package", "code+", "code-", "test+", "test-" }
{ print; ta += $2; td += $3; tta += $4; ttd += $5 }
END { printf "%-32s %8d %8d %8d %8d\n", "total", ta, td, tta, ttd }'
