#!/usr/bin/env bash
# lint.sh runs golangci-lint (the version scripts/ensure-services.sh pins,
# installed there when missing) with .golangci.yml on every Go module of the
# repository: the root module, deploy/ and any other directory with its own
# go.mod. It fails on any finding. scripts/test.sh runs it after the tests;
# `make lint` runs it alone.
#
# Extra arguments go to every `golangci-lint run` (e.g. --fix, -v).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

lint=$(scripts/ensure-services.sh golangci-lint)
status=0
while read -r mod; do
	dir=$(dirname "$mod")
	echo "lint: $dir" >&2
	(cd "$dir" && "$lint" run "$@" ./...) || status=1
done < <(find . -name go.mod -not -path './.git/*' -not -path '*/testdata/*' -not -path './.cache/*' | sort)
exit "$status"
