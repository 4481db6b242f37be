#!/usr/bin/env bash
# ensure-services.sh makes sure that what bufferd's tests need is installed
# and running on this machine:
#   - redis-server and redis-cli, and a Redis answering on 127.0.0.1:6379;
#   - the PostgreSQL server binaries (postgres, initdb) and psql, and a
#     PostgreSQL answering on 127.0.0.1:5432 as user postgres, trust auth;
#   - curl, which the commands of the README and docs/ use;
#   - @redocly/cli (pinned) in ~/.cache/bufferd/redocly, with Node.js and npm;
#   - Chromium (Debian's chromium) for the status page's browser test;
#   - golangci-lint (pinned) in ~/.cache/bufferd/golangci-lint, built with the
#     local Go by `go install` from the Go module proxy.
# Missing packages are installed with apt-get (as root, or through sudo when
# not root); services that do not answer are started. It is idempotent, quiet
# when all is fine, and never stops or restarts a service that is running.
# Go itself is assumed to be installed; this script does not handle it.
#
# ENSURE_SERVICES_TIMEOUT: seconds to wait for a service to answer (60).
#
# `ensure-services.sh golangci-lint` only installs golangci-lint when needed
# and prints the path of its binary (scripts/lint.sh).
set -euo pipefail

REDIS_HOST=127.0.0.1
REDIS_PORT=6379
PG_HOST=127.0.0.1
PG_PORT=5432
TIMEOUT=${ENSURE_SERVICES_TIMEOUT:-60}
HBA_LINE='host all all 127.0.0.1/32 trust'
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# REDOCLY_VERSION must be handlers/lint_test.go's redoclyVersion. 1.x runs on
# Debian 12's Node.js 18; 2.x needs Node.js 20.19 or later.
REDOCLY_VERSION=1.34.5
# GOLANGCI_LINT_VERSION is the golangci-lint that checks .golangci.yml's rules.
GOLANGCI_LINT_VERSION=2.15.0

log() { printf 'ensure-services: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# as_root runs a command as root: directly when root, else through sudo.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root or sudo to run: $*"
	fi
}

have() { command -v "$1" >/dev/null 2>&1; }

# pg_bindir prints a directory holding both postgres and initdb: that of the
# ones on PATH, else the newest /usr/lib/postgresql/VERSION/bin.
pg_bindir() {
	local d
	if have postgres && have initdb; then
		dirname "$(readlink -f "$(command -v postgres)")"
		return 0
	fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [ -x "$d/postgres" ] && [ -x "$d/initdb" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

# wait_for polls a command until it succeeds; fails after TIMEOUT seconds.
wait_for() {
	local deadline=$((SECONDS + TIMEOUT))
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.5
	done
}

# port_open reports whether something accepts TCP connections on host:port.
port_open() { timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }

install_missing() {
	local pkgs=()
	{ have redis-server && have redis-cli; } || pkgs+=(redis-server)
	{ pg_bindir >/dev/null && have psql; } || pkgs+=(postgresql)
	have curl || pkgs+=(curl) # the docs' commands are run by docs/commands_test.go
	[ "${#pkgs[@]}" -gt 0 ] || return 0
	have apt-get || die "missing ${pkgs[*]} and there is no apt-get to install them"
	log "installing ${pkgs[*]}"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
	{ have redis-server && have redis-cli; } || die "redis-server or redis-cli still missing after install"
	pg_bindir >/dev/null || die "postgres or initdb still missing after install"
	have psql || die "psql still missing after install"
}

redis_ok() { [ "$(timeout 5 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

ensure_redis() {
	redis_ok && return 0
	if port_open "$REDIS_HOST" "$REDIS_PORT"; then
		# Something listens: perhaps a Redis still starting. Never restart it.
		wait_for redis_ok && return 0
		die "something listens on $REDIS_HOST:$REDIS_PORT but does not answer PING with PONG (a password?)"
	fi
	local dir=${TMPDIR:-/tmp}
	log "starting redis-server on $REDIS_HOST:$REDIS_PORT (log: $dir/bufferd-redis-$REDIS_PORT.log)"
	redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" --appendonly no \
		--dir "$dir" --logfile "$dir/bufferd-redis-$REDIS_PORT.log"
	wait_for redis_ok || die "Redis on $REDIS_HOST:$REDIS_PORT did not answer within ${TIMEOUT}s"
}

# pg_probe runs `select 1` as postgres over TCP; prints psql's error, if any,
# and returns psql's status. It never prompts for a password (-w).
pg_probe() {
	# shellcheck disable=SC2069 # stderr to the caller, stdout dropped
	timeout 10 env PGCONNECT_TIMEOUT=5 psql -X -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres \
		-Atqc 'select 1' 2>&1 >/dev/null
}
pg_ok() { pg_probe >/dev/null 2>&1; }
auth_error() { grep -Eqi 'authentication|password|pg_hba'; }
# pg_answers: the server accepts queries or at least answers with an auth error.
pg_answers() {
	local err
	err=$(pg_probe) && return 0
	auth_error <<<"$err"
}

# trust_localhost puts HBA_LINE at the top of a Debian cluster's pg_hba.conf
# (first match wins) unless it is already there, and reloads the cluster.
trust_localhost() {
	local ver=$1 name=$2 hba="/etc/postgresql/$1/$2/pg_hba.conf" first
	as_root test -s "$hba" || die "no $hba to add '$HBA_LINE' to"
	first=$(as_root awk '!/^[[:space:]]*(#|$)/ { $1 = $1; print; exit }' "$hba")
	if [ "$first" != "$HBA_LINE" ]; then
		log "adding '$HBA_LINE' at the top of $hba"
		as_root sed -i "1i $HBA_LINE" "$hba"
	fi
	log "reloading PostgreSQL cluster $ver/$name"
	as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload
}

ensure_postgres() {
	pg_ok && return 0
	if ! have pg_lsclusters || ! have pg_ctlcluster; then
		die "PostgreSQL does not answer on $PG_HOST:$PG_PORT ($(pg_probe | head -n1)) and there is no Debian postgresql-common to start it: start it by hand"
	fi
	local ver="" name="" status="" line
	# The Debian cluster on our port, if any: "VER NAME PORT STATUS OWNER DIR LOG".
	line=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print; exit }') || true
	if [ -n "$line" ]; then
		read -r ver name _ status _ <<<"$line"
	else
		ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1) || true
		[ -n "$ver" ] || die "no PostgreSQL server version under /usr/lib/postgresql"
		name=main
		[ ! -e "/etc/postgresql/$ver/main" ] || name=bufferd
		log "creating PostgreSQL cluster $ver/$name on port $PG_PORT"
		as_root pg_createcluster -p "$PG_PORT" "$ver" "$name" >/dev/null
		status=down
	fi
	if [[ $status != online* ]]; then
		log "starting PostgreSQL cluster $ver/$name"
		as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start
	fi
	wait_for pg_answers ||
		die "PostgreSQL cluster $ver/$name does not answer on $PG_HOST:$PG_PORT within ${TIMEOUT}s: $(pg_probe | head -n1)"
	local err
	err=$(pg_probe) && return 0
	if auth_error <<<"$err"; then
		# Fresh Debian clusters use peer/scram: trust loopback for the tests.
		trust_localhost "$ver" "$name"
		wait_for pg_ok && return 0
		err=$(pg_probe) || true
	fi
	die "cannot query PostgreSQL on $PG_HOST:$PG_PORT as postgres: $err"
}

# ensure_redocly installs the pinned @redocly/cli (the OpenAPI linter of
# handlers' TestOpenAPILint) into the user's cache directory
# (${XDG_CACHE_HOME:-~/.cache}/bufferd/redocly, outside the checkout, so a
# fresh clone does not install it again), and Node.js with npm when missing.
# Fast when that version is already there.
ensure_redocly() {
	local dir bin
	dir="${XDG_CACHE_HOME:-$HOME/.cache}/bufferd/redocly"
	bin="$dir/node_modules/.bin/redocly"
	if [ -x "$bin" ] && [ "$(REDOCLY_SUPPRESS_UPDATE_NOTICE=true "$bin" --version 2>/dev/null)" = "$REDOCLY_VERSION" ]; then
		return 0
	fi
	if ! have node || ! have npm; then
		have apt-get || die "missing node or npm and there is no apt-get to install them"
		log "installing nodejs npm"
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
	fi
	log "installing @redocly/cli@$REDOCLY_VERSION into $dir"
	npm install --no-audit --no-fund --silent --prefix "$dir" "@redocly/cli@$REDOCLY_VERSION" >/dev/null
	[ -x "$bin" ] || die "redocly still missing after npm install"
}

# ensure_chromium installs Debian's chromium (the status page's browser test,
# handlers/status_browser_test.go) when no Chromium is on PATH.
ensure_chromium() {
	if have chromium || have chromium-browser; then
		return 0
	fi
	have apt-get || die "chromium is missing and there is no apt-get to install it"
	log "installing chromium"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
	have chromium || die "chromium is still missing after apt-get install"
}

# ensure_golangci_lint installs the pinned golangci-lint into the user's cache
# directory unless it is there, built by the local Go (golangci-lint refuses
# code of a Go version newer than its own), and prints the binary's path.
# The directory's name carries both versions, so a new Go or a new pin gets
# its own build.
ensure_golangci_lint() {
	if ! have go && [ -x /usr/local/go/bin/go ]; then
		export PATH="/usr/local/go/bin:$PATH"
	fi
	have go || die "go is not on PATH: golangci-lint is installed with go install"
	local gover dir bin
	gover=$(go env GOVERSION)
	dir="${XDG_CACHE_HOME:-$HOME/.cache}/bufferd/golangci-lint/v$GOLANGCI_LINT_VERSION-$gover"
	bin="$dir/golangci-lint"
	if ! [ -x "$bin" ] || [ "$("$bin" version --short 2>/dev/null)" != "$GOLANGCI_LINT_VERSION" ]; then
		log "installing golangci-lint v$GOLANGCI_LINT_VERSION ($gover) into $dir"
		# Outside the checkout, so that its go.mod plays no part.
		(cd / && GOBIN="$dir" GOFLAGS= \
			go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$GOLANGCI_LINT_VERSION")
		[ -x "$bin" ] || die "golangci-lint still missing after go install"
	fi
	printf '%s\n' "$bin"
}

if [ "${1:-}" = golangci-lint ]; then
	ensure_golangci_lint
	exit 0
fi

install_missing
ensure_redis
ensure_postgres
ensure_redocly
ensure_chromium
ensure_golangci_lint >/dev/null
