#!/usr/bin/env bash
# Builds {{name}}.wasm (a component for spool:plugin/handler@0.2.0) in this folder.
# Needs componentize-py {{componentize_py_version}}: python3 -m pip install componentize-py=={{componentize_py_version}}
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v componentize-py >/dev/null; then
    echo "build: componentize-py is needed: python3 -m pip install componentize-py=={{componentize_py_version}}" >&2
    exit 1
fi
# src/ holds app.py (the WitWorld class) and any other modules it imports.
PYTHONDONTWRITEBYTECODE=1 componentize-py -d wit/spool-plugin@0.2.0 -w handler \
    componentize app -p src -o {{name}}.wasm.tmp
mv -f {{name}}.wasm.tmp {{name}}.wasm
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm) bytes)"
