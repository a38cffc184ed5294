#!/usr/bin/env bash
# Installs what the browser test (tests/tests/browser) needs when it is missing: Debian's
# `chromium` (/usr/bin/chromium) and `playwright-core` at the version package-lock.json here
# pins, into <target>/browser (never committed). tests/run-all.sh runs it before the tests.
#
# Exit status: see tests/setup-common.sh (0 ready, 75 registry unreachable: skip, else fail).
set -euo pipefail
cd "$(dirname "$0")/../.."

readonly CHROMIUM=/usr/bin/chromium
readonly NPM_TIMEOUT=300
SETUP_NAME=browser
SETUP_WORK="${CARGO_TARGET_DIR:-$PWD/target}/browser"
readonly WORK="$SETUP_WORK"
# shellcheck source=../setup-common.sh
source tests/setup-common.sh

install_playwright() {
    local lock=tests/browser/package-lock.json
    if cmp -s "$lock" "$WORK/package-lock.json" &&
        [[ -f "$WORK/node_modules/playwright-core/package.json" ]]; then
        return 0
    fi
    command -v node >/dev/null || fail "node is not installed (the browser test runs a Node script)"
    command -v npm >/dev/null || fail "npm is not installed (it installs playwright-core)"
    local log="$WORK/npm.log"
    : >"$log"
    echo "installing playwright-core from $lock into $WORK (log: $log) ..." >&2
    cp tests/browser/package.json "$lock" "$WORK/"
    # --ignore-scripts: nothing is to run at install time (playwright-core downloads no browser,
    # and must not try: the test uses Debian's).
    run_install "$NPM_TIMEOUT" "$log" "npm ci playwright-core" \
        npm ci --prefix "$WORK" --ignore-scripts --no-audit --no-fund --loglevel=error ||
        fail "npm ci playwright-core failed" "$log"
}

apt_install chromium "$CHROMIUM"
install_playwright
echo "browser test ready: $("$CHROMIUM" --version 2>/dev/null || echo chromium), playwright-core $(node -p "require('$WORK/node_modules/playwright-core/package.json').version")" >&2
