#!/usr/bin/env bash
# ensure-chromium.sh makes sure a Chromium is installed for the browser test
# of the status page (handlers/status_browser_test.go): when none is on PATH
# it installs Debian's chromium package with apt-get (as root, or through
# sudo). It is idempotent, quiet, and returns at once when Chromium is there.
set -euo pipefail

log() { printf 'ensure-chromium: %s\n' "$*" >&2; }

for b in chromium chromium-browser; do
	if command -v "$b" >/dev/null 2>&1; then
		exit 0
	fi
done

if ! command -v apt-get >/dev/null 2>&1; then
	log "error: chromium is missing and there is no apt-get to install it"
	exit 1
fi
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		log "error: need root or sudo to run: $*"
		exit 1
	fi
}
log "installing chromium"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null 2>&1 || {
	log "error: chromium is still missing after apt-get install"
	exit 1
}
