#!/usr/bin/env bash
# make soak: certificates that renew themselves, under load, for a while.
#
# twoway-ca serve, invoice-server and mail-server sync on 2-minute
# certificates (enrolled with tokens, renewed by themselves, CRL fetched),
# bench/loadgen's keep-alive and full-handshake load against invoice-server,
# an SMTP sink (python3-aiosmtpd) for sync, for SOAK_MINUTES (default 15).
# It passes with at least 5 renewals per service, 0 failed requests, 0
# restarts, and flat memory: each process's mean RSS over the last third
# within 5 % of its mean over the first third, measured after a warm-up of
# 20 s of each load (which fills the TLS session cache to its cap).  One
# result line at the end.
#
# usage: scripts/soak.sh [BUILD_DIR]
#   SOAK_MINUTES  how long (default 15)
#   SOAK_DIR      where (default: a temp dir, removed when it passes)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
minutes=${SOAK_MINUTES:-15}
dir=${SOAK_DIR:-$(mktemp -d /tmp/twoway-soak.XXXXXX)}
pids=()

die() { echo "soak: FAIL: $*" >&2; exit 1; }
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT

[[ $minutes =~ ^[0-9]+$ ]] && [ "$minutes" -ge 3 ] ||
    die "SOAK_MINUTES must be a whole number of minutes, 3 or more"
for bin in src/ca/twoway-ca src/invoice/invoice-server src/mail/mail-server bench/loadgen; do
    [ -x "$build/$bin" ] || die "$build/$bin is missing: run 'make' first"
done
SMTP_PYTHON=
for py in python3 /usr/bin/python3; do
    "$py" -c "import aiosmtpd" 2>/dev/null && { SMTP_PYTHON=$py; break; }
done
[ -n "$SMTP_PYTHON" ] ||
    die "python3-aiosmtpd is missing (scripts/install-deps.sh installs it)"
PATH="$build/src/ca:$build/src/invoice:$build/src/mail:$build/bench:$PATH"
mkdir -p "$dir" && cd "$dir" || die "cannot use $dir"

# wait_port LOG: the port of "listening on https://127.0.0.1:PORT/" in LOG.
wait_port() {
    for _ in $(seq 1 300); do
        port=$(grep -o 'listening on https://127.0.0.1:[0-9]*' "$1" 2>/dev/null |
               head -1 | grep -o '[0-9]*$')
        [ -n "$port" ] && { echo "$port"; return 0; }
        sleep 0.1
    done
    return 1
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

twoway-ca init ca --subject "/O=ABC Inc./CN=Soak CA" > /dev/null || die "twoway-ca init"
twoway-ca issue --ca ca --out load --subject "/CN=load/O=Load" --client > /dev/null ||
    die "twoway-ca issue (the load generator's certificate)"
twoway-ca serve --ca ca --listen 127.0.0.1:0 --workers 1 2> serve.log &
pids+=($!); serve_pid=$!
ca_port=$(wait_port serve.log) || die "twoway-ca serve did not start: $(cat serve.log)"
ca_url="https://localhost:$ca_port"
twoway-ca token --ca ca --subject "/CN=localhost/O=InvoiceServer" --server \
    --lifetime 2m > invoice.token || die "twoway-ca token"
twoway-ca token --ca ca --subject "/CN=mail/O=MailServer" --client \
    --lifetime 2m > mail.token || die "twoway-ca token"

mkdir -p invoice mail
invoice-server --cert invoice/cert.pem --key invoice/key.pem --ca ca/ca.cert.pem \
    --crl invoice/crl.pem --enroll "$ca_url" --token-file invoice.token \
    --renew "$ca_url" --crl-url "$ca_url" --crl-refresh 30s \
    --listen 127.0.0.1:0 --db invoice/invoices.db --workers 1 \
    --allow 'read O=MailServer' --allow 'read O=Load' 2> invoice.log &
pids+=($!); invoice_pid=$!
port=$(wait_port invoice.log) || die "invoice-server did not start: $(cat invoice.log)"

smtp_port=$(free_port)
"$SMTP_PYTHON" -m aiosmtpd -n -c aiosmtpd.handlers.Sink -l "127.0.0.1:$smtp_port" 2> smtp.log &
pids+=($!)
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$smtp_port") 2>/dev/null && break
    sleep 0.1
done
mail-server sync --cert mail/cert.pem --key mail/key.pem --ca ca/ca.cert.pem \
    --crl mail/crl.pem --enroll "$ca_url" --token-file mail.token \
    --renew "$ca_url" --crl-url "$ca_url" --crl-refresh 30s \
    --url "https://localhost:$port/" --state mail/state.db \
    --smtp "smtp://127.0.0.1:$smtp_port" --from billing@abc.example \
    --interval 10 2> mail.log &
pids+=($!); mail_pid=$!

# loadgen_run MODE SECONDS: one run; adds to requests/errors/runs.
requests=0 errors=0 runs=0
loadgen_run() {
    local out
    out=$(loadgen --mode "$1" --port "$port" --cert load/cert.pem \
              --key load/key.pem --ca ca/ca.cert.pem --concurrency 4 \
              --duration "$2" --warmup 0 2>> loadgen.err) ||
        { errors=$((errors + 1)); echo "loadgen $1 failed" >> loadgen.err; return; }
    echo "$out" >> loadgen.jsonl
    runs=$((runs + 1))
    requests=$((requests + $(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')))
    errors=$((errors + $(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["errors"])')))
}

echo "soak: $minutes min in $dir (serve :$ca_port, invoice-server :$port), after a warm-up"
loadgen_run keepalive 20
loadgen_run full 20

# RSS of the three every 10 s, in KiB: "SECONDS SERVE INVOICE MAIL".
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
(
    start=$SECONDS
    while kill -0 "$invoice_pid" 2>/dev/null; do
        echo "$((SECONDS - start)) $(rss "$serve_pid") $(rss "$invoice_pid") $(rss "$mail_pid")"
        sleep 10
    done
) > rss.txt &
rss_pid=$!

end=$((SECONDS + minutes * 60))
while [ $SECONDS -lt $end ]; do
    for mode in keepalive full; do
        left=$((end - SECONDS))
        [ $left -gt 5 ] || break
        loadgen_run "$mode" $((left < 30 ? left - 2 : 30))
    done
done
kill "$rss_pid" 2>/dev/null

alive=1
for pid in "$serve_pid" "$invoice_pid" "$mail_pid"; do
    kill -0 "$pid" 2>/dev/null || alive=0
done
inv_renewals=$(grep -c 'renewed invoice/cert.pem' invoice.log)
mail_renewals=$(grep -c 'renewed mail/cert.pem' mail.log)
sent=$(grep -c 'sent invoice' mail.log)
# Mean RSS of the first and the last third, and the change, per process.
memory=$(python3 - <<'EOF'
rows = [list(map(int, l.split())) for l in open("rss.txt") if l.strip()]
n = len(rows) // 3
out, ok = [], True
for col, name in ((1, "serve"), (2, "invoice-server"), (3, "mail-server")):
    first = sum(r[col] for r in rows[:n]) / max(n, 1)
    last = sum(r[col] for r in rows[-n:]) / max(n, 1)
    change = (last - first) / first * 100 if first else 0
    ok = ok and n > 0 and abs(change) <= 5
    out.append("%s %.1f->%.1f MiB (%+.1f%%)" % (name, first / 1024, last / 1024, change))
print(("flat" if ok else "NOT-FLAT") + ": " + ", ".join(out))
EOF
)
result="$minutes min: invoice-server $inv_renewals renewals, mail-server $mail_renewals renewals ($sent mails), $requests requests in $runs loadgen runs, $errors failed, restarts $((1 - alive)), memory $memory"
if [ "$alive" -eq 1 ] && [ "$errors" -eq 0 ] && [ "$inv_renewals" -ge 5 ] &&
   [ "$mail_renewals" -ge 5 ] && [ "${memory#flat}" != "$memory" ]; then
    echo "soak: PASS $result"
    cleanup
    [ -n "${SOAK_DIR:-}" ] || { cd / && rm -rf "$dir"; }
    exit 0
fi
echo "soak: FAIL $result (logs in $dir)"
exit 1
