#!/usr/bin/env bash
# Smoke test for bench/loadgen: one second in each mode against a real
# invoice-server.  Every run must answer requests and count no error, and a
# client the server refuses must be counted as errors, not requests.  Then
# POST /invoices (--body), CPU over two process trees (--server-pid A,B),
# and bench/compare's PostgreSQL rows at the tiniest size (--postgres-only,
# one window of 0.3 s each; skipped without PostgreSQL, nginx or 2 CPUs).
# No timing is judged here: the benchmark is bench/compare.
#
#   usage: bench_smoke.sh BUILD_DIR
#
# TW_WRAP (e.g. "valgrind -q --error-exitcode=99 ...") runs loadgen under a
# wrapper; TW_QUICK=1 holds fewer idle connections.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

BUILD=${1:-}
LOADGEN=$BUILD/bench/loadgen
INVOICE=$BUILD/src/invoice/invoice-server
TWCA=$BUILD/src/ca/twoway-ca
for b in "$LOADGEN" "$INVOICE" "$TWCA"; do
    if [ ! -x "$b" ]; then
        fail "setup" "usage: bench_smoke.sh BUILD_DIR ($b is missing)"
        finish
    fi
done
read -ra WRAP <<<"${TW_WRAP:-}"
# The interpreter itself: a version manager's python3 (pyenv's shim) costs
# a second a call, and this test calls it 60 times.
PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || PYTHON=python3
IDLE=20
[ -n "${TW_QUICK:-}" ] && IDLE=5

SERVER=
stop_server() {
    [ -n "$SERVER" ] || return 0
    kill -TERM "$SERVER" 2>/dev/null
    wait "$SERVER" 2>/dev/null
    SERVER=
}
trap 'stop_server; chmod -R u+rwx "$TMP" 2>/dev/null; rm -rf "$TMP"' EXIT

# ---- PKI and server ----------------------------------------------------------

cd "$TMP" || exit 1
"$TWCA" init ca --subject '/O=ABC Inc.' >/dev/null &&
    "$TWCA" issue --ca ca --out server --server --subject '/CN=localhost/O=InvoiceServer' \
        --dns localhost --ip 127.0.0.1 >/dev/null &&
    "$TWCA" issue --ca ca --out client --client --subject '/CN=localhost/O=MailServer' >/dev/null &&
    "$TWCA" init ca-wrong --subject '/O=ZXC Inc.' >/dev/null &&
    "$TWCA" issue --ca ca-wrong --out wrong --client --subject '/CN=localhost/O=MailServer' >/dev/null ||
    { fail "setup" "twoway-ca could not make the PKI"; finish; }

"$INVOICE" --cert server/cert.pem --key server/key.pem --ca ca/ca.cert.pem \
    --listen 127.0.0.1:0 --workers 1 --db "$TMP/invoices.db" \
    --allow 'read O=MailServer' --allow 'write O=MailServer' 2>"$TMP/server.log" &
SERVER=$!
PORT=
for _ in $(seq 100); do
    PORT=$(sed -nE 's#.*listening on https://127\.0\.0\.1:([0-9]+)/.*#\1#p' "$TMP/server.log")
    [ -n "$PORT" ] && break
    sleep 0.1
done
if [ -z "$PORT" ]; then
    fail "setup" "invoice-server did not start: $(head -c 400 "$TMP/server.log")"
    finish
fi

# ---- helpers -----------------------------------------------------------------

# loadgen [options...]: run it against the server, JSON in $OUT.
loadgen() {
    expect_exit 0 "$LABEL: exits 0" -- "${WRAP[@]}" "$LOADGEN" --port "$PORT" \
        --ca ca/ca.cert.pem --duration 1 --warmup 0 --concurrency 4 \
        --server-pid "$SERVER" "$@"
}

# expect_json NAME PYTHON-EXPR: EXPR is true of the JSON line (as d) in $OUT.
expect_json() {
    local got
    got=$("$PYTHON" -c 'import json, sys
try:
    d = json.loads(open(sys.argv[1]).read())
    print("yes" if eval(sys.argv[2]) else "no: " + open(sys.argv[1]).read().strip())
except Exception as e:
    print("no: " + repr(e) + ": " + open(sys.argv[1]).read().strip()[:300])' "$OUT" "$2")
    if [ "$got" = yes ]; then ok "$1"; else fail "$1" "$2 is false; ${got#no: }"; fi
}

# ---- each mode, one second -----------------------------------------------------

expect_exit 0 "loadgen --help" -- "$LOADGEN" --help
expect_exit 2 "loadgen with an unknown mode is a usage error" -- \
    "$LOADGEN" --mode fast --port 1 --cert x --key x --ca x

for mode in full resume keepalive idle; do
    for tls in 1.3 1.2; do
        LABEL="$mode TLS $tls"
        extra=()
        [ "$mode" = idle ] && extra=(--connections "$IDLE")
        loadgen --mode "$mode" --tls "$tls" --cert client/cert.pem \
            --key client/key.pem "${extra[@]}" || continue
        expect_json "$LABEL: requests > 0" 'd["requests"] > 0'
        expect_json "$LABEL: errors == 0" 'd["errors"] == 0'
        expect_json "$LABEL: server CPU per operation measured" \
            'd["server_cpu_us_per_op"] is not None'
        case $mode in
        resume)
            expect_json "$LABEL: resumed share reported" \
                '0 <= d["resumed_share"] <= 1' ;;
        idle)
            expect_json "$LABEL: every connection held" "d['held'] == $IDLE"
            expect_json "$LABEL: RSS per connection reported" \
                'd["rss_per_conn_bytes"] is not None' ;;
        esac
    done
done

# ---- what must count as errors ---------------------------------------------------

LABEL="refused client"
loadgen --mode full --cert wrong/cert.pem --key wrong/key.pem &&
    expect_json "a refused client counts errors, no requests" \
        'd["requests"] == 0 and d["errors"] > 0'
LABEL="wrong length"
loadgen --mode keepalive --cert client/cert.pem --key client/key.pem --expect-length 3 &&
    expect_json "a response of another length counts as an HTTP error" \
        'd["requests"] == 0 and d["error_kinds"]["http"] > 0'
LABEL="missing invoice"
loadgen --mode keepalive --cert client/cert.pem --key client/key.pem --path /invoices/nope &&
    expect_json "a 404 counts as an HTTP error" \
        'd["requests"] == 0 and d["error_kinds"]["http"] > 0'

# ---- POST, and a server of two process trees ----------------------------------

# The tests' invoice (invoice_test.py), its number new each request.
body() { # NUMBER-PREFIX
    printf '{"invoice_number":"%s-{n}","firstname":"Ann","lastname":"Lee",' "$1"
    printf '"email":"ann@example.com","amount_minor":1050,"currency":"USD"}'
}
LABEL="POST"
loadgen --mode keepalive --cert client/cert.pem --key client/key.pem --body "$(body p1)" && {
    expect_json "POST --body: requests > 0 (each a 201)" 'd["requests"] > 0'
    expect_json "POST --body: errors == 0" 'd["errors"] == 0'
}
LABEL="POST again"
loadgen --mode keepalive --cert client/cert.pem --key client/key.pem --body "$(body p1)" &&
    expect_json "POST of numbers stored already (200, not 201) counts HTTP errors" \
        'd["requests"] == 0 and d["error_kinds"]["http"] > 0'
# This shell's tree holds loadgen itself: some CPU in each tree.
LABEL="two trees"
loadgen --mode keepalive --cert client/cert.pem --key client/key.pem --server-pid "$$" &&
    expect_json "--server-pid given twice: CPU per tree, and their sum" \
        'len(d["server_cpu_us_per_op_each"]) == 2 and abs(sum(d["server_cpu_us_per_op_each"]) - d["server_cpu_us_per_op"]) < 0.2'
expect_exit 2 "--server-pid given twice is a usage error" -- "$LOADGEN" --mode keepalive \
    --port "$PORT" --cert x --key x --ca x --server-pid "$SERVER,$SERVER" &&
    expect_stderr_contains "is given twice" "... saying so"
expect_exit 2 "--server-pid that is no number is a usage error" -- "$LOADGEN" --mode full \
    --port 1 --cert x --key x --ca x --server-pid 12x &&
    expect_stderr_contains "--server-pid takes process ids" "... saying what it takes"
stop_server

# ---- bench/compare's PostgreSQL rows ---------------------------------------------

# Only where compare would install nothing (it runs scripts/install-deps.sh
# when nginx or Node.js is missing) and can pin servers and load apart.
COMPARE=$(dirname "$0")/../../bench/compare
if ! PATH=$PATH:/usr/sbin command -v nginx >/dev/null || ! command -v node >/dev/null ||
    ! command -v taskset >/dev/null || [ "$(nproc)" -lt 2 ]; then
    echo "skip bench/compare: it needs nginx, Node.js, taskset and 2 CPUs"
    finish
fi
expect_exit 1 "compare --postgres-only without PostgreSQL stops, in one line" -- \
    env TW_PG_ROOT="$TMP/none" "$COMPARE" --build "$BUILD" --postgres-only &&
    expect_stderr_contains "no PostgreSQL server is installed" "... saying so"
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    echo "skip compare --postgres-only: no PostgreSQL server is installed"
    finish
fi
expect_exit 0 "compare --postgres-only, one window of 0.3 s a figure" -- \
    "$COMPARE" --build "$BUILD" --postgres-only --window 0.3 --warmup 0.1 \
    --repeat 1 --concurrency 4 --results "$TMP/compare.jsonl" &&
    expect_stdout_contains "| Keep-alive \`GET /invoices/{n}\` ⁴ |" "compare: the PostgreSQL table"
OUT=$TMP/window.json
for check in "keepalive twoway" "keepalive nginx" "keepalive twoway_pg" "post twoway" \
    "post twoway_pg"; do
    read -r row srv <<<"$check"
    grep "\"server\":\"$srv\",\"row\":\"$row\"" "$TMP/compare.jsonl" >"$OUT"
    expect_json "compare: $row on $srv answered, no error" \
        'd["requests"] > 0 and d["errors"] == 0'
    [ "$srv" = twoway_pg ] &&
        expect_json "compare: $row on $srv counts invoice-server and PostgreSQL" \
            'len(d["server_cpu_us_per_op_each"]) == 2'
done
expect_json "compare: POST costs PostgreSQL CPU" 'd["server_cpu_us_per_op_each"][1] > 0'
if pgrep -f "postgres -D ${TMPDIR:-/tmp}/twoway-bench-pg" >/dev/null; then
    fail "compare stops its PostgreSQL" "a postmaster in twoway-bench-pg.* still runs"
else
    ok "compare stops its PostgreSQL"
fi
finish
