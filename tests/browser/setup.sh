#!/usr/bin/env bash
# Installs what the browser test (tests/tests/browser) needs when it is missing: Debian's
# `chromium` (/usr/bin/chromium) and `playwright-core` at the version package-lock.json here
# pins, into <target>/browser (never committed). tests/run-all.sh runs it before the tests.
#
# Exit status:
#   0   ready;
#   75  a package registry could not be reached (a network error, or an install that timed
#       out): the reason is printed on stderr and written to <target>/browser/skipped, and the
#       browser test is skipped with that reason;
#   any other: a real failure (no root to install with, a package that does not exist, a broken
#       lock file ...), which must fail the run.
set -euo pipefail
cd "$(dirname "$0")/../.."

readonly CHROMIUM=/usr/bin/chromium
readonly WORK="${CARGO_TARGET_DIR:-$PWD/target}/browser"
readonly SKIPPED=75
# Bounds on each install, so a registry that accepts connections but never answers cannot hang
# CI; running past them counts as unreachable. Chromium pulls ~100 MB of packages.
readonly APT_TIMEOUT=900
readonly NPM_TIMEOUT=300

mkdir -p "$WORK"
rm -f "$WORK/skipped"

# Errors that only a registry out of reach produces (apt's and npm's wording). Not apt's
# "Failed to fetch" alone: a stale package list also gives it (404), and an update cures that.
readonly UNREACHABLE='Could not resolve|Temporary failure resolving|Unable to connect|Could not connect|Connection (refused|timed out|failed)|Network is unreachable|No route to host|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|socket hang up'

skip() {
    printf '%s\n' "$1" >"$WORK/skipped"
    {
        echo
        echo "!!! BROWSER TEST WILL BE SKIPPED: $1"
        echo "!!! (tests/browser/setup.sh; the log is in $2)"
        echo
    } >&2
    exit "$SKIPPED"
}

fail() {
    echo "tests/browser/setup.sh: $1" >&2
    if [[ -n "${2:-}" ]]; then
        echo "--- last lines of $2 ---" >&2
        tail -n 20 "$2" >&2
    fi
    exit 1
}

# Runs "$@" bounded by $1 seconds with its output in log $2; a timeout or a network error
# skips with $3 as the reason, any other failure fails.
run_install() {
    local seconds=$1 log=$2 what=$3
    shift 3
    local status=0
    timeout "$seconds" "$@" >>"$log" 2>&1 || status=$?
    if ((status == 0)); then
        return 0
    elif ((status == 124)); then
        skip "$what: no answer within ${seconds}s (registry unreachable or too slow)" "$log"
    elif grep -Eq "$UNREACHABLE" "$log"; then
        skip "$what: the registry is unreachable ($(grep -Eo -m1 "$UNREACHABLE" "$log"))" "$log"
    fi
    return "$status"
}

install_chromium() {
    [[ -x "$CHROMIUM" ]] && return 0
    command -v apt-get >/dev/null || fail "$CHROMIUM is missing and this machine has no apt-get"
    ((EUID == 0)) || fail "$CHROMIUM is missing and installing it needs root: apt-get install chromium"
    export DEBIAN_FRONTEND=noninteractive
    local log="$WORK/apt.log"
    : >"$log"
    echo "installing Debian's chromium (log: $log) ..." >&2
    # Refresh the package lists only if they do not know chromium, or if installing from them
    # fails (they may name versions the mirror no longer has).
    if [[ "$(apt-cache policy chromium 2>/dev/null)" != *"Candidate: "[0-9]* ]]; then
        run_install "$APT_TIMEOUT" "$log" "apt-get update" apt-get update ||
            fail "apt-get update failed" "$log"
    fi
    if ! run_install "$APT_TIMEOUT" "$log" "apt-get install chromium" \
        apt-get install -y chromium; then
        run_install "$APT_TIMEOUT" "$log" "apt-get update" apt-get update ||
            fail "apt-get update failed" "$log"
        run_install "$APT_TIMEOUT" "$log" "apt-get install chromium" \
            apt-get install -y chromium ||
            fail "apt-get install chromium failed" "$log"
    fi
    [[ -x "$CHROMIUM" ]] || fail "apt-get installed chromium but $CHROMIUM is not there" "$log"
}

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

install_chromium
install_playwright
echo "browser test ready: $("$CHROMIUM" --version 2>/dev/null || echo chromium), playwright-core $(node -p "require('$WORK/node_modules/playwright-core/package.json').version")" >&2
