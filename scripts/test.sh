#!/usr/bin/env bash
# Runs the whole test suite, as CI does: installs what is missing, builds the example plugins
# from source, checks formatting and lints, then runs every test (unit, storage conformance on
# every backend, runtime, end-to-end against the real binary, Redis against its own servers).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }
start=$(date +%s)

step "setup"
scripts/setup.sh

step "build example plugins"
scripts/build-plugins.sh target/plugins

step "format"
cargo fmt --all -- --check
cargo fmt --manifest-path plugins/Cargo.toml --all -- --check

step "lint"
cargo clippy --workspace --all-targets --features spool-host/testing -- -D warnings
cargo clippy --manifest-path plugins/Cargo.toml --workspace --target wasm32-wasip2 --release -- -D warnings

step "build the daemon and the tests"
# Same features as the test run, so nothing is compiled twice.
cargo build --workspace --all-targets --features spool-host/testing

step "test"
cargo test --workspace --features spool-host/testing

printf '\nall tests passed in %ss\n' "$(( $(date +%s) - start ))" >&2
