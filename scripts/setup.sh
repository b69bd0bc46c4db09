#!/usr/bin/env bash
# Installs what building and testing Spool needs, on a fresh machine of this kind, and nothing
# twice: the wasm32-wasip2 Rust target, rustfmt/clippy, redis-server (for the Redis tests), and
# Chromium with its WebDriver (for the dashboard's browser tests).
# Called by scripts/run.sh and scripts/test.sh; safe to run again.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    log "installing the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
fi
for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^${component}"; then
        log "installing rustup component ${component}"
        rustup component add "${component}"
    fi
done

apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    log "installing Debian packages: $*"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server
fi

# The dashboard tests drive Debian's headless Chromium through chromedriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    apt_install chromium chromium-driver
fi
