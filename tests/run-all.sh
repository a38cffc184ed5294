#!/usr/bin/env bash
# Every check the project has, as CI runs them: formatting, lints (warnings are errors), and all
# tests, including the end-to-end ones that build the plugins from source and the one that drives
# the chat page in a real browser.
# Needs only rustup: it installs the WebAssembly target and the components it uses if missing,
# tests/browser/setup.sh installs Chromium (Debian) and playwright-core (npm) if missing, and
# tests/services/setup.sh installs redis-server and nginx (Debian) for the scale-out tests, and
# tests/python/setup.sh installs componentize-py (PyPI) for the Python plugins, which
# tests/build.rs then builds.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

# The browser test, the scale-out tests and the Python plugins' tests run when their tools are
# ready; only a registry out of reach (the setup script exits 75) skips them, loudly, and any
# other setup failure fails the run. REQUIRED makes the tests fail, rather than skip, if they then cannot find what the setup
# installed.
skipped=()
# Runs setup script $1 for the group whose environment variables start with $2 and whose
# setup writes its reason for skipping into <target>/$3/skipped.
prepare() {
    local script=$1 prefix=$2 work=$3 status=0
    bash "$script" || status=$?
    case "$status" in
    0) export "${prefix}_REQUIRED=1" ;;
    75)
        local reason
        reason="$(cat "${CARGO_TARGET_DIR:-target}/$work/skipped")"
        export "${prefix}_SKIP=$reason"
        skipped+=("$work: $reason")
        ;;
    *) exit "$status" ;;
    esac
}
prepare tests/browser/setup.sh SWITCHYARD_BROWSER browser
prepare tests/services/setup.sh SWITCHYARD_SCALEOUT services
prepare tests/python/setup.sh SWITCHYARD_PYTHON python-setup

cargo test --workspace

for what in "${skipped[@]}"; do
    echo "!!! SKIPPED tests ($what)" >&2
done
