#!/usr/bin/env bash
# Run the OCI distribution-spec conformance suite against a fresh `farm serve`.
#
#   infra/conformance.sh SUITE       SUITE: the suite's source (conformance/ of
#                                    opencontainers/distribution-spec at v1.1.1),
#                                    built with `go test -c`, or a built test binary
#
# The suite is not part of Farm and is not vendored: check it out (or build it)
# where Go modules can be fetched, and point this script at it. The server gets
# a new FARM_HOME and, unless FARM_STORAGE is set (e.g. s3://bucket/prefix with
# FARM_S3_ENDPOINT_URL), the local store in it. All four categories run, with
# OCI_AUTOMATIC_CROSSMOUNT=1 (Farm answers `?mount=` without `from` with 201 when
# it holds the blob). Set FARM_API_TOKENS=TOKEN:admin to run it through auth
# (the script passes the token as OCI_PASSWORD). Reports: $REPORT_DIR.
set -euo pipefail

suite="${1:?usage: infra/conformance.sh SUITE_DIR_OR_BINARY}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
report="${REPORT_DIR:-$work/report}"
mkdir -p "$report"

if [[ -d "$suite" ]]; then
    echo "building the suite in $suite"
    (cd "$suite" && go test -c -o "$work/conformance.test")
    binary="$work/conformance.test"
else
    binary="$(realpath "$suite")"
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export FARM_HOME="$work/home"
"$root/.venv/bin/farm" serve --host 127.0.0.1 --port "$port" --log-level warning \
    >"$work/serve.log" 2>&1 &
server=$!
stop_server() {
    local status=$?
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    exit "$status"
}
trap stop_server EXIT
token="${FARM_API_TOKENS:-}"
token="${token%%:*}"
for _ in $(seq 100); do
    curl -fso /dev/null "http://127.0.0.1:$port/v2/" -u "farm:$token" && break
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 0.1
done

export OCI_ROOT_URL="http://127.0.0.1:$port"
export OCI_NAMESPACE="conformance/primary" OCI_CROSSMOUNT_NAMESPACE="conformance/crossmount"
export OCI_TEST_PULL=1 OCI_TEST_PUSH=1 OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1
export OCI_AUTOMATIC_CROSSMOUNT=1 OCI_HIDE_SKIPPED_WORKFLOWS=0 OCI_REPORT_DIR="$report"
if [[ -n "$token" ]]; then
    export OCI_USERNAME=farm OCI_PASSWORD="$token"
fi
cd "$report"
status=0
"$binary" -test.v >"$report/output.log" 2>&1 || status=$?
grep -E "Ran [0-9]+ of|Passed" "$report/output.log" | sed 's/\x1b\[[0-9;]*m//g'
echo "reports in $report (junit.xml, report.html, output.log)"
exit "$status"
