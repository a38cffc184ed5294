#!/usr/bin/env bash
# Every check the project has, as CI runs them: formatting, lints (warnings are errors), and all
# tests, including the end-to-end ones that build the plugins from source and the one that drives
# the chat page in a real browser.
# Needs only rustup: it installs the WebAssembly target and the components it uses if missing,
# and tests/browser/setup.sh installs Chromium (Debian) and playwright-core (npm) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

# The browser test runs when its tools are ready; only a registry out of reach (setup.sh exits
# 75) skips it, loudly, and any other setup failure fails the run. REQUIRED makes the test fail,
# rather than skip, if it then cannot find what setup.sh installed.
browser_skipped=""
browser_setup=0
bash tests/browser/setup.sh || browser_setup=$?
case "$browser_setup" in
0) export SWITCHYARD_BROWSER_REQUIRED=1 ;;
75)
    browser_skipped="$(cat "${CARGO_TARGET_DIR:-target}/browser/skipped")"
    export SWITCHYARD_BROWSER_SKIP="$browser_skipped"
    ;;
*) exit "$browser_setup" ;;
esac

cargo test --workspace

if [[ -n "$browser_skipped" ]]; then
    echo "!!! The browser test was SKIPPED: $browser_skipped" >&2
fi
