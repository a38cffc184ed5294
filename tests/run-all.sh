#!/usr/bin/env bash
# Every check the project has, as CI runs them: formatting, lints (warnings are errors), and all
# tests, including the end-to-end ones that build the plugins from source.
# Needs only rustup: it installs the WebAssembly target and the components it uses if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
