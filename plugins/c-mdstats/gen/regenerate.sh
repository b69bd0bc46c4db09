#!/usr/bin/env bash
# Regenerates the C bindings in this folder (handler.h, handler.c, handler_component_type.o)
# from the released WIT, with wit-bindgen's C generator 0.63.0 (the generator of
# `wit-bindgen c WIT --world handler`), built from ../bindgen/ in about a minute instead of a
# 20-minute `cargo install wit-bindgen-cli`.
#
#   plugins/c-mdstats/gen/regenerate.sh           rewrite the files here
#   plugins/c-mdstats/gen/regenerate.sh --check   fail when the files here are out of date
#
# The WIT (wit/spool-plugin@0.1.0) is released and never edited, so the output never changes;
# a new WIT version gets its own bindings.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
WIT="$ROOT/wit/spool-plugin@0.1.0"
TARGET="$ROOT/target/lang-tools/bindgen-target"

nice -n 10 cargo build --quiet --release --manifest-path "$HERE/../bindgen/Cargo.toml" --target-dir "$TARGET"
BINDGEN="$TARGET/release/spool-c-bindgen"

if [[ "${1:-}" == "--check" ]]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$BINDGEN" "$WIT" "$tmp" >/dev/null
    for file in handler.h handler.c handler_component_type.o; do
        cmp -s "$tmp/$file" "$HERE/$file" \
            || { echo "regenerate: $file is out of date; run $0" >&2; exit 1; }
    done
    echo "regenerate: the C bindings are up to date"
else
    "$BINDGEN" "$WIT" "$HERE"
fi
