#!/usr/bin/env bash
# Installs what the Python plugins' tests need when it is missing: the pinned componentize-py,
# into a virtual environment under <target>/python (guest-sdk/python/build --install), with the
# machine's Python 3.10+ (Debian's python3-venv if no venv module). tests/run-all.sh runs it
# before the tests; tests/build.rs then builds the Python plugins (cached by content).
#
# Exit status: see tests/setup-common.sh (0 ready, 75 registry unreachable: skip, else fail).
set -euo pipefail
cd "$(dirname "$0")/../.."

SETUP_NAME=python
SETUP_WORK="${CARGO_TARGET_DIR:-$PWD/target}/python-setup"
# shellcheck source=../setup-common.sh
source tests/setup-common.sh

# Debian's python3 lacks venv and pip until python3-venv is installed.
if [[ -z "${SWITCHYARD_PYTHON:-}" ]]; then
    command -v python3 >/dev/null || apt_install python3 /usr/bin/python3
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        ((EUID == 0)) || fail "python3 has no venv module; install it: apt-get install python3-venv"
        apt_log="$SETUP_WORK/apt.log"
        run_install "$SETUP_APT_TIMEOUT" "$apt_log" "apt-get install python3-venv" \
            apt-get install -y python3-venv || fail "apt-get install python3-venv failed" "$apt_log"
    fi
fi
log="$SETUP_WORK/install.log"
status=0
guest-sdk/python/build --install >"$log" 2>&1 || status=$?
case "$status" in
0) echo "python plugins ready: componentize-py at $(tail -n 1 "$log")" >&2 ;;
75) skip "installing componentize-py: $(grep -m1 'PyPI' "$log" || echo 'PyPI unreachable')" "$log" ;;
*) fail "installing componentize-py failed" "$log" ;;
esac
