#!/usr/bin/env bash
# Builds {{name}}.wasm (a component for spool:plugin/handler@0.2.0) in this folder.
# Needs Node.js 18 or later with npm; installs the build packages into node_modules first
# (from package-lock.json; about a minute the first time).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "build: Node.js and npm are needed (for example: apt-get install nodejs npm)" >&2
    exit 1
fi
# `npm install --no-save` rather than `npm ci`: the lock file lacks some other platforms'
# optional binaries, which makes `npm ci` refuse it.
if [[ ! -f node_modules/.installed || package-lock.json -nt node_modules/.installed ]]; then
    npm install --no-save --no-audit --no-fund --loglevel=error
    touch node_modules/.installed
fi
node build.mjs
