#!/usr/bin/env bash
# Build every example/fixture plugin and install NAME.wasm (+ NAME.toml) into OUT_DIR.
#
#   scripts/build-plugins.sh [OUT_DIR]      (default: target/plugins under the repo root)
#
# Each language has a build_<lang> function that builds its plugins and calls install_plugin
# for each: Rust here (plugins/<name>/Cargo.toml, one cargo workspace in plugins/, built in two
# invocations: contract 0.2.0 and 0.1.0), JavaScript for contract 0.2.0 here, the 0.1.0
# JavaScript, Python and C examples in build-plugins-langs.sh. Installs are atomic (copy to a dot-temp file in OUT_DIR, then mv)
# and skip files whose content is unchanged, so a running daemon's watcher sees only real
# changes. Prints one line per plugin: name, size, and whether it changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-$ROOT/target/plugins}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"

die() {
    echo "build-plugins: $*" >&2
    exit 1
}

# install_file SRC DEST: atomic, and a no-op when DEST already has the same bytes.
# Prints "updated" or "unchanged".
install_file() {
    local src="$1" dest="$2"
    if [[ -f "$dest" ]] && cmp -s "$src" "$dest"; then
        echo unchanged
        return
    fi
    local tmp
    tmp="$(dirname "$dest")/.$(basename "$dest").tmp.$$"
    cp "$src" "$tmp"
    mv -f "$tmp" "$dest"
    echo updated
}

# install_plugin NAME WASM [MANIFEST]: install NAME.wasm, and NAME.toml when MANIFEST exists.
install_plugin() {
    local name="$1" wasm="$2" manifest="${3:-}"
    [[ -f "$wasm" ]] || die "no component was built for plugin \`$name\` (expected $wasm)"
    local wasm_state toml_state="" size
    wasm_state="$(install_file "$wasm" "$OUT_DIR/$name.wasm")"
    if [[ -n "$manifest" && -f "$manifest" ]]; then
        toml_state=", $name.toml $(install_file "$manifest" "$OUT_DIR/$name.toml")"
    fi
    size="$(wc -c <"$wasm")"
    printf '%-16s %9d bytes (%4d KiB)  %s%s\n' "$name" "$size" "$(((size + 1023) / 1024))" \
        "$wasm_state" "$toml_state"
}

ensure_rust_target() {
    command -v cargo >/dev/null || die "cargo is not installed; install Rust with rustup"
    if command -v rustup >/dev/null; then
        # Captured first: `grep -q` exiting early would make rustup fail with SIGPIPE.
        local installed
        installed="$(rustup target list --installed)"
        if ! grep -qx wasm32-wasip2 <<<"$installed"; then
            rustup target add wasm32-wasip2 >/dev/null 2>&1 \
                || die "cannot add the wasm32-wasip2 target; run \`rustup target add wasm32-wasip2\`"
        fi
    fi
}

# Rust plugins built for the released contract spool:plugin/handler@0.1.0 (their spool-sdk
# dependency has default-features = false). Cargo unifies a package's features across one
# invocation, so they get a `cargo build -p ...` of their own: built together with the 0.2.0
# plugins they would become 0.2.0 components too.
RUST_CONTRACT_0_1=(echo markdown)

# Rust plugins: every plugins/<name>/ with a Cargo.toml, a member of plugins/Cargo.toml.
# Cargo names the component after the crate with `-` turned into `_`.
build_rust() {
    ensure_rust_target
    local target_dir="${CARGO_TARGET_DIR:-$ROOT/plugins/target}"
    local cargo_build=(cargo build --manifest-path "$ROOT/plugins/Cargo.toml"
        --target wasm32-wasip2 --release --target-dir "$target_dir")
    local name only=() except=()
    for name in "${RUST_CONTRACT_0_1[@]}"; do
        only+=(-p "$name")
        except+=(--exclude "$name")
    done
    "${cargo_build[@]}" --workspace "${except[@]}" \
        || die "the Rust plugins failed to build (see cargo's output above)"
    "${cargo_build[@]}" "${only[@]}" \
        || die "the Rust plugins for contract 0.1.0 (${RUST_CONTRACT_0_1[*]}) failed to build (see cargo's output above)"
    local dir
    for dir in "$ROOT"/plugins/*/; do
        [[ -f "$dir/Cargo.toml" ]] || continue
        name="$(basename "$dir")"
        install_plugin "$name" "$target_dir/wasm32-wasip2/release/${name//-/_}.wasm" \
            "$dir/manifest.toml"
    done
}

# JavaScript plugins for contract 0.2.0: plugins/<name>/ like the js-* ones (package.json and
# its lock, build.mjs, src/*.js), but built against wit/spool-plugin@0.2.0 with componentize-js's
# `http` feature on (their build.mjs), so `fetch` works. Uses build-plugins-langs.sh's helpers;
# its build_js builds the js-* plugins for 0.1.0.
JS_CONTRACT_0_2=(fetch-title)

build_js_contract_0_2() {
    local wit="$ROOT/wit/spool-plugin@0.2.0" name dir out
    for name in "${JS_CONTRACT_0_2[@]}"; do
        dir="$ROOT/plugins/$name"
        ensure_node
        ensure_npm_packages "$dir"
        mkdir -p "$LANG_TOOLS/js"
        out="$LANG_TOOLS/js/$name.wasm"
        LANG_STAMP_EXTRA="node $(node --version)"
        if ! up_to_date "$out.stamp" "$dir/package-lock.json" "$dir/build.mjs" \
            "$dir"/src/*.js "$wit"/*.wit "$wit"/deps/*/*.wit || [[ ! -f "$out" ]]; then
            lang_log "building $name (componentize-js, ~15 s)"
            (cd "$dir" && SPOOL_WIT="$wit" nice -n 10 node build.mjs "$out" >/dev/null) \
                || die "the JavaScript plugin \`$name\` failed to build (see the output above)"
            echo "$LANG_STAMP" >"$out.stamp"
        fi
        install_plugin "$name" "$out" "$dir/manifest.toml"
    done
}

build_rust
# JavaScript, Python and C examples (H6): functions in build-plugins-langs.sh.
source "$ROOT/scripts/build-plugins-langs.sh"
build_js
build_js_contract_0_2
build_python
build_c
echo "plugins installed in $OUT_DIR"
