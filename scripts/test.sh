#!/usr/bin/env bash
# test.sh is THE test command (CI runs it through .ci/run): it makes sure Redis
# and PostgreSQL are installed and running, and curl, redocly and Chromium
# installed (scripts/ensure-services.sh), then runs every Go test once, with
# the race detector, against the local servers (TEST_REDIS_URL and
# TEST_DATABASE_URL, when set, win).
#
# Without arguments it also vets and tests the client/ module: the Go client,
# a module of its own so that a DApp backend importing it pulls in none of the
# server's dependencies (its tests against the service are the root module's
# clientcheck package).
#
# Without arguments it also runs the deploy/ module's tests (a Go module of its
# own, so the bufferd binary never pulls in Helm): the Helm chart, the compose
# file and the Dockerfile checked offline; then golangci-lint on every module
# (scripts/lint.sh, .golangci.yml), which must find nothing.
#
# BUFFERD_TEST_PACKAGES sets how many test binaries run at once (default: one
# per core).
# Extra arguments go to `go test` of the root module only; packages among them
# (./storage/..., .) replace the default ./... . Give flag values as -flag=value.
#   scripts/test.sh
#   scripts/test.sh -run=TestReserve -v ./storage/...
set -euo pipefail
cd "$(dirname "$0")/.."

# Go is assumed installed; an environment may lack it on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

scripts/ensure-services.sh
# The status page's browser test runs here; without Chromium it fails, not skips.
export BUFFERD_REQUIRE_CHROMIUM=1

# The tools ensure-services.sh installed are required: their tests fail
# instead of skipping when missing.
export BUFFERD_REQUIRE_REDOCLY=1
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"

pkgs=(./...)
for a in "$@"; do
	case $a in
	. | ./* | ../* | github.com/bufferd/bufferd*)
		pkgs=()
		break
		;;
	esac
done
# Files the tests keep (t.ArtifactDir: the status page's screenshot from
# Chromium) go to BUFFERD_TEST_ARTIFACTS (default .artifacts/, git-ignored).
artifacts="${BUFFERD_TEST_ARTIFACTS:-$PWD/.artifacts}"
rm -rf "$artifacts" && mkdir -p "$artifacts"
# BUFFERD_TEST_PACKAGES test binaries at once (default: go test's, one per
# core). Four took the root module's tests from 297 s to 248 s on the 2-core
# machine, but the load stretched timed fault windows of e2e tests past what
# they allow (see BENCHMARKS.md, "Test suite time").
go test -p "${BUFFERD_TEST_PACKAGES:-$(getconf _NPROCESSORS_ONLN)}" -race -count=1 -timeout 20m -artifacts -outputdir "$artifacts" "$@" ${pkgs[@]+"${pkgs[@]}"}
find "$artifacts" -type f -printf 'test artifact: %p\n' | sort
if [ $# -eq 0 ]; then
	(cd client && go vet ./... && go test -race -count=1 -timeout 5m ./...)
	(cd deploy && go test -count=1 -timeout 10m ./...)
	scripts/lint.sh
fi
