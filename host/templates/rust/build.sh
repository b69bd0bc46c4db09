#!/usr/bin/env bash
# Builds {{name}}.wasm (a component for spool:plugin/handler@0.2.0) in this folder.
# Needs Rust (rustup) with the wasm32-wasip2 target, which this script adds when missing.
set -euo pipefail
cd "$(dirname "$0")"

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "build: adding the wasm32-wasip2 Rust target" >&2
    rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2
target_dir="${CARGO_TARGET_DIR:-target}"
cp "$target_dir/wasm32-wasip2/release/{{name_snake}}.wasm" {{name}}.wasm.tmp
mv -f {{name}}.wasm.tmp {{name}}.wasm
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm) bytes)"
