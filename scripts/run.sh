#!/usr/bin/env bash
# Runs the Spool daemon on its embedded default storage (SQLite at ./data/spool.db) with the
# example plugins built from source and loaded from target/plugins. Extra arguments go to
# `spool daemon` (for example `--listen 127.0.0.1:8080`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-plugins.sh target/plugins
cargo build -p spool-host
# The `webhook` example signs its requests with this secret (its manifest reads it from the
# environment); a development value unless you set your own.
export SPOOL_WEBHOOK_KEY="${SPOOL_WEBHOOK_KEY:-dev-webhook-key}"
exec target/debug/spool daemon --plugins target/plugins "$@"
