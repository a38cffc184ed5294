#!/usr/bin/env bash
# Installs what the scale-out tests (tests/tests/scaleout) and the benchmark's crosshost section
# need when it is missing: Debian's `redis-server` and `nginx`; and `curl` for the e2e test of
# HTTP/2 over TLS with another client. The tests run their own
# redis-server and nginx processes (temp folders, free loopback ports, stopped by the tests);
# the packages' own services are neither started by the install nor relied on.
# tests/run-all.sh runs it before the tests.
#
# Exit status: see tests/setup-common.sh (0 ready, 75 registry unreachable: skip, else fail).
set -euo pipefail
cd "$(dirname "$0")/../.."

readonly REDIS=/usr/bin/redis-server
readonly NGINX=/usr/sbin/nginx
SETUP_NAME=scale-out
SETUP_WORK="${CARGO_TARGET_DIR:-$PWD/target}/services"
# shellcheck source=../setup-common.sh
source tests/setup-common.sh

# Debian's packages start their service on install (redis on 6379, nginx on port 80). A
# policy-rc.d that answers 101 ("action forbidden") keeps invoke-rc.d from starting them; it is
# put in place only for the install, and only if the machine has none of its own.
readonly POLICY=/usr/sbin/policy-rc.d
policy_added=""
forbid_service_starts() {
    [[ -x "$REDIS" && -x "$NGINX" ]] && return 0
    ((EUID == 0)) || return 0 # apt_install fails with the reason
    [[ -e "$POLICY" ]] && return 0
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    policy_added=1
}
allow_service_starts() {
    if [[ -n "$policy_added" ]]; then
        rm -f "$POLICY"
    fi
}
trap allow_service_starts EXIT

forbid_service_starts
apt_install redis-server "$REDIS"
# curl: the e2e test that HTTP/2 over TLS works for another client stack (curl --http2).
apt_install curl /usr/bin/curl
apt_install nginx "$NGINX"
echo "scale-out tests ready: $("$REDIS" --version | cut -d' ' -f1-3), $("$NGINX" -v 2>&1)" >&2
