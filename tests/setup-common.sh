# Shared by the setup scripts that install what a group of tests needs (tests/browser/setup.sh,
# tests/services/setup.sh): the exit-status contract, the bounded installs, and Debian packages.
# Source it after setting SETUP_NAME (the group, e.g. "browser") and SETUP_WORK (a folder under
# the target folder for logs and the `skipped` file).
#
# Exit status of a setup script:
#   0   ready;
#   75  a package registry could not be reached (a network error, or an install that timed
#       out): the reason is printed on stderr and written to $SETUP_WORK/skipped, and the tests
#       of the group are skipped with that reason;
#   any other: a real failure (no root to install with, a package that does not exist, a broken
#       lock file ...), which must fail the run.

readonly SETUP_SKIPPED=75
# Bound on each apt-get run, so a registry that accepts connections but never answers cannot
# hang CI; running past it counts as unreachable. Chromium, the largest, pulls ~100 MB.
readonly SETUP_APT_TIMEOUT=900

# Errors that only a registry out of reach produces (apt's and npm's wording). Not apt's
# "Failed to fetch" alone: a stale package list also gives it (404), and an update cures that.
readonly SETUP_UNREACHABLE='Could not resolve|Temporary failure resolving|Unable to connect|Could not connect|Connection (refused|timed out|failed)|Network is unreachable|No route to host|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|socket hang up'

mkdir -p "$SETUP_WORK"
rm -f "$SETUP_WORK/skipped"

# Skips the group with reason $1 (the log is $2).
skip() {
    printf '%s\n' "$1" >"$SETUP_WORK/skipped"
    local group
    group="$(tr '[:lower:]' '[:upper:]' <<<"$SETUP_NAME")"
    {
        echo
        echo "!!! $group TESTS WILL BE SKIPPED: $1"
        echo "!!! (the $SETUP_NAME setup; the log is in $2)"
        echo
    } >&2
    exit "$SETUP_SKIPPED"
}

# Fails the run with message $1, showing the end of log $2 if given.
fail() {
    echo "$SETUP_NAME setup: $1" >&2
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
    elif grep -Eq "$SETUP_UNREACHABLE" "$log"; then
        skip "$what: the registry is unreachable ($(grep -Eo -m1 "$SETUP_UNREACHABLE" "$log"))" "$log"
    fi
    return "$status"
}

# Installs Debian package $1 unless executable $2 is already there.
apt_install() {
    local package=$1 program=$2
    [[ -x "$program" ]] && return 0
    command -v apt-get >/dev/null || fail "$program is missing and this machine has no apt-get"
    ((EUID == 0)) || fail "$program is missing and installing it needs root: apt-get install $package"
    export DEBIAN_FRONTEND=noninteractive
    local log="$SETUP_WORK/apt.log"
    echo "installing Debian's $package (log: $log) ..." >&2
    # Refresh the package lists only if they do not know the package, or if installing from
    # them fails (they may name versions the mirror no longer has).
    if [[ "$(apt-cache policy "$package" 2>/dev/null)" != *"Candidate: "[0-9]* ]]; then
        run_install "$SETUP_APT_TIMEOUT" "$log" "apt-get update" apt-get update ||
            fail "apt-get update failed" "$log"
    fi
    if ! run_install "$SETUP_APT_TIMEOUT" "$log" "apt-get install $package" \
        apt-get install -y "$package"; then
        run_install "$SETUP_APT_TIMEOUT" "$log" "apt-get update" apt-get update ||
            fail "apt-get update failed" "$log"
        run_install "$SETUP_APT_TIMEOUT" "$log" "apt-get install $package" \
            apt-get install -y "$package" ||
            fail "apt-get install $package failed" "$log"
    fi
    [[ -x "$program" ]] || fail "apt-get installed $package but $program is not there" "$log"
}
