#!/usr/bin/env bash
# The seed tutorial's story, told by twoway (make demo).
#
# ABC Inc. makes its CA; the Invoice Server and the Mail Server get
# certificates; the Invoice Server answers only the Mail Server; a Mail
# Server certificate from ZXC Inc. is refused - and both sides say why;
# curl and openssl s_client work too; a revoked certificate is refused.
# Then ABC runs its CA online: the services enrol with one-time tokens and
# the Invoice Server renews a one-minute certificate under requests.
#
# usage: scripts/demo.sh [BUILD_DIR]
#   DEMO_DIR   where to tell it (default: demo/ in the project root)
#   DEMO_PORT  the Invoice Server's port (default 3100 when free, else any)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
ca_bin="$build/src/ca/twoway-ca"
server_bin="$build/src/invoice/invoice-server"
mail_bin="$build/src/mail/mail-server"
demo="${DEMO_DIR:-$root/demo}"
server_pid=""
serve_pid=""
step=0

bold="" plain=""
if [ -t 1 ]; then
    bold=$(tput bold 2>/dev/null || true)
    plain=$(tput sgr0 2>/dev/null || true)
fi

cleanup() {
    for pid in $server_pid $serve_pid; do
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
}
trap cleanup EXIT

say() { step=$((step + 1)); printf '\n%s%d. %s%s\n' "$bold" "$step" "$*" "$plain"; }
show() { printf '   $ %s\n' "$*"; }
# quoted ARG...: the words as a shell takes them back ('/O=ABC Inc.' quoted).
quoted() {
    local a out=""
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            out+="$a "
        else
            out+="'${a//\'/\'\\\'\'}' "
        fi
    done
    printf '%s' "${out% }"
}
die() { printf '\ndemo: step %d failed: %s\n' "$step" "$*" >&2; exit 1; }
# run CMD...: show it, run it, indent its output; fail the step on non-zero.
run() {
    show "$(quoted "$@")"
    "$@" > "$demo/.out" 2>&1
    local rc=$?
    sed 's/^/   /' "$demo/.out"
    [ $rc -eq 0 ] || die "'$*' exited $rc"
}

for bin in "$ca_bin" "$server_bin" "$mail_bin"; do
    [ -x "$bin" ] || die "$bin is missing: run 'make' first"
done

rm -rf "$demo"
mkdir -p "$demo"
cd "$demo" || exit 1
# The programs by name, as a reader would type them.
PATH="$build/src/ca:$build/src/invoice:$build/src/mail:$PATH"

say "ABC Inc. creates its certificate authority (the seed's 'openssl req -x509 ... -subj /O=ABC Inc.')."
run twoway-ca init ca --subject "/O=ABC Inc."

say "ZXC Inc., another company, has its own CA."
run twoway-ca init ca-wrong --subject "/O=ZXC Inc./CN=zxc.com"

say "ABC's CA issues the Invoice Server its certificate (server use, DNS:localhost)."
run twoway-ca issue --ca ca --out invoice-server --subject "/CN=localhost/O=InvoiceServer" --server

say "ABC's CA issues the Mail Server its certificate (client use)."
run twoway-ca issue --ca ca --out mail-server --subject "/CN=localhost/O=MailServer" --client

say "ZXC's CA signs a Mail Server certificate too (the seed's server-wrong.cert)."
run twoway-ca issue --ca ca-wrong --out mail-server/zxc --subject "/CN=localhost/O=MailServer" --client

say "ABC publishes its (still empty) revocation list."
run twoway-ca crl --ca ca --out ca/crl.pem

port=${DEMO_PORT:-3100}
wanted=$port
if [ "$port" != 0 ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    port=0 # taken: let the kernel pick a free port
fi
say "The Invoice Server starts on 127.0.0.1; only certificates with O=MailServer may read."
show "invoice-server --cert invoice-server/cert.pem --key invoice-server/key.pem --ca ca/ca.cert.pem --crl ca/crl.pem --listen 127.0.0.1:$port --db invoice-server/invoices.db --allow 'read O=MailServer' --workers 1 &"
invoice-server --cert invoice-server/cert.pem --key invoice-server/key.pem \
    --ca ca/ca.cert.pem --crl ca/crl.pem --listen "127.0.0.1:$port" \
    --db invoice-server/invoices.db --allow 'read O=MailServer' --workers 1 \
    --reload-check 0 2> invoice-server/server.log &
server_pid=$!
for _ in $(seq 1 100); do
    grep -q 'listening on' invoice-server/server.log 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
grep -q 'listening on' invoice-server/server.log || { cat invoice-server/server.log >&2; die "invoice-server did not start"; }
port=$(grep -o 'https://127.0.0.1:[0-9]*' invoice-server/server.log | head -1 | grep -o '[0-9]*$')
[ "$wanted" = 0 ] || [ "$port" = "$wanted" ] ||
    echo "   (port $wanted is busy, using $port)"
sed 's/^/   /' invoice-server/server.log
url="https://localhost:$port/"

say "The Mail Server fetches the invoice with its certificate (the seed's 'node mail_server.js')."
run mail-server fetch --cert mail-server/cert.pem --key mail-server/key.pem --ca mail-server/ca.cert.pem --url "$url" --expect-server O=InvoiceServer
grep -q '"invoice_number":"00095234"' "$demo/.out" || die "the invoice JSON did not come back"
echo

say "The same request with the ZXC-signed certificate is refused - and both sides say why (the seed only said 'socket hang up')."
show "mail-server fetch --cert mail-server/zxc/cert.pem --key mail-server/zxc/key.pem --ca mail-server/ca.cert.pem --url $url"
lines_before=$(wc -l < invoice-server/server.log)
mail-server fetch --cert mail-server/zxc/cert.pem --key mail-server/zxc/key.pem \
    --ca mail-server/ca.cert.pem --url "$url" > "$demo/.out" 2>&1
rc=$?
echo "   the Mail Server says (exit $rc):"
sed 's/^/     /' "$demo/.out"
[ $rc -ne 0 ] || die "the ZXC-signed certificate was accepted"
grep -q 'rejected our certificate' "$demo/.out" || die "the Mail Server did not say the server rejected its certificate"
sleep 0.3
echo "   the Invoice Server logs:"
tail -n +"$((lines_before + 1))" invoice-server/server.log | sed 's/^/     /'
tail -n +"$((lines_before + 1))" invoice-server/server.log | grep -q 'reason=unknown_ca' ||
    die "the Invoice Server did not log the unknown_ca refusal"

say "Standard tools work with twoway's files: curl ..."
run curl -sS --cacert ca/ca.cert.pem --cert mail-server/cert.pem --key mail-server/key.pem "$url"
grep -q '00095234' "$demo/.out" || die "curl did not get the invoice"
echo

say "... and openssl s_client."
show "printf 'GET / HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' | openssl s_client -connect 127.0.0.1:$port -servername localhost -cert mail-server/cert.pem -key mail-server/key.pem -CAfile ca/ca.cert.pem -quiet"
printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
    timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
        -cert mail-server/cert.pem -key mail-server/key.pem -CAfile ca/ca.cert.pem \
        -quiet > "$demo/.out" 2>/dev/null
sed 's/^/   /' "$demo/.out"
echo
grep -q '00095234' "$demo/.out" || die "openssl s_client did not get the invoice"

say "ABC revokes the Mail Server's certificate, publishes the CRL, and the Invoice Server reloads (SIGHUP)."
run twoway-ca revoke --ca ca --cert mail-server/cert.pem --reason keyCompromise
run twoway-ca crl --ca ca --out ca/crl.pem
show "kill -HUP $server_pid"
kill -HUP "$server_pid"
for _ in $(seq 1 50); do grep -q 'reloaded' invoice-server/server.log && break; sleep 0.1; done
grep -q 'reloaded' invoice-server/server.log || die "the Invoice Server did not reload"
grep 'reloaded' invoice-server/server.log | sed 's/^/   /'

say "The revoked certificate is now refused."
show "mail-server fetch --cert mail-server/cert.pem --key mail-server/key.pem --ca mail-server/ca.cert.pem --url $url"
lines_before=$(wc -l < invoice-server/server.log)
mail-server fetch --cert mail-server/cert.pem --key mail-server/key.pem \
    --ca mail-server/ca.cert.pem --url "$url" > "$demo/.out" 2>&1
rc=$?
echo "   the Mail Server says (exit $rc):"
sed 's/^/     /' "$demo/.out"
[ $rc -ne 0 ] || die "the revoked certificate was accepted"
sleep 0.3
echo "   the Invoice Server logs:"
tail -n +"$((lines_before + 1))" invoice-server/server.log | sed 's/^/     /'
tail -n +"$((lines_before + 1))" invoice-server/server.log | grep -q 'reason=revoked' ||
    die "the Invoice Server did not log the revocation"

say "The Invoice Server stops (SIGTERM: finish requests, exit 0)."
show "kill -TERM $server_pid"
kill -TERM "$server_pid"
wait "$server_pid"
rc=$?
server_pid=""
[ $rc -eq 0 ] || die "invoice-server exited $rc"
echo "   stopped (exit 0)"

# ------------------------------------------------ trust that runs itself
# Wait for a line in a log: wait_log FILE PATTERN SECONDS
wait_log() {
    for _ in $(seq 1 $(($3 * 10))); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

say "ABC runs its CA online (twoway-ca serve): services enrol with a one-time token and renew by themselves."
show "twoway-ca serve --ca ca --listen 127.0.0.1:0 --workers 1 &"
twoway-ca serve --ca ca --listen 127.0.0.1:0 --workers 1 2> ca/serve.log &
serve_pid=$!
wait_log ca/serve.log 'listening on' 20 || { cat ca/serve.log >&2; die "twoway-ca serve did not start"; }
sed 's/^/   /' ca/serve.log
ca_url="https://localhost:$(grep -o 'https://127.0.0.1:[0-9]*' ca/serve.log | head -1 | grep -o '[0-9]*$')"

say "ABC gives the Invoice Server a token for one-minute certificates, and the Mail Server one for its own."
show "twoway-ca token --ca ca --subject '/CN=localhost/O=InvoiceServer' --server --lifetime 60s > invoice-server/token"
twoway-ca token --ca ca --subject "/CN=localhost/O=InvoiceServer" --server --lifetime 60s \
    > invoice-server/token || die "twoway-ca token failed"
show "twoway-ca token --ca ca --subject '/CN=mail/O=MailServer' --client --lifetime 1h > mail-server/token"
twoway-ca token --ca ca --subject "/CN=mail/O=MailServer" --client --lifetime 1h \
    > mail-server/token || die "twoway-ca token failed"
mkdir -p invoice-server/auto mail-server/auto

say "The Invoice Server starts with no certificate: it makes a key, enrols, and renews at two thirds of the lifetime."
show "invoice-server --cert invoice-server/auto/cert.pem --key invoice-server/auto/key.pem --ca ca/ca.cert.pem --crl invoice-server/auto/crl.pem --enroll $ca_url --token-file invoice-server/token --renew $ca_url --crl-url $ca_url --listen 127.0.0.1:0 --db invoice-server/invoices.db --allow 'read O=MailServer' --workers 1 &"
invoice-server --cert invoice-server/auto/cert.pem --key invoice-server/auto/key.pem \
    --ca ca/ca.cert.pem --crl invoice-server/auto/crl.pem \
    --enroll "$ca_url" --token-file invoice-server/token --renew "$ca_url" \
    --crl-url "$ca_url" --listen 127.0.0.1:0 --db invoice-server/invoices.db \
    --allow 'read O=MailServer' --workers 1 2> invoice-server/auto.log &
server_pid=$!
wait_log invoice-server/auto.log 'listening on' 30 ||
    { cat invoice-server/auto.log >&2; die "invoice-server did not start"; }
sed 's/^/   /' invoice-server/auto.log
port=$(grep -o 'https://127.0.0.1:[0-9]*' invoice-server/auto.log | head -1 | grep -o '[0-9]*$')
url="https://localhost:$port/"

say "The Mail Server enrols with its token on its first fetch."
run mail-server fetch --cert mail-server/auto/cert.pem --key mail-server/auto/key.pem --ca ca/ca.cert.pem --enroll "$ca_url" --token-file mail-server/token --url "$url"
grep -q '00095234' "$demo/.out" || die "the enrolled Mail Server did not get the invoice"
echo

serial() {
    printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
        -servername localhost -CAfile ca/ca.cert.pem 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}
say "curl asks for the invoice in a loop while the Invoice Server renews its one-minute certificate."
before=$(serial)
echo "   the Invoice Server shows serial $before"
show "while ...; do curl -sS --cacert ca/ca.cert.pem --cert mail-server/auto/cert.pem --key mail-server/auto/key.pem $url; done"
asked=0 failed=0
for _ in $(seq 1 900); do
    asked=$((asked + 1))
    curl -sS --max-time 10 --cacert ca/ca.cert.pem --cert mail-server/auto/cert.pem \
        --key mail-server/auto/key.pem "$url" 2>/dev/null | grep -q 00095234 || failed=$((failed + 1))
    grep -q 'renewed invoice-server' invoice-server/auto.log && break
done
grep 'renewed\|reloaded' invoice-server/auto.log | sed 's/^/   /'
grep -q 'renewed invoice-server' invoice-server/auto.log || die "the certificate was not renewed"
sleep 0.5
after=$(serial)
echo "   $asked requests, $failed failed; the Invoice Server now shows serial $after"
[ "$failed" -eq 0 ] || die "$failed requests failed during the renewal"
[ -n "$after" ] && [ "$after" != "$before" ] || die "the new certificate is not the one served"

say "Both stop."
kill -TERM "$server_pid" "$serve_pid"
wait "$server_pid"; rc=$?
wait "$serve_pid"
server_pid="" serve_pid=""
[ $rc -eq 0 ] || die "invoice-server exited $rc"
echo "   stopped"

rm -f "$demo/.out"
printf '\n%sThe whole story worked.%s The files are in %s:\n' "$bold" "$plain" "$demo"
printf '   ca/             ABC Inc.: ca.cert.pem, ca.key.pem (0600), ca.db, crl.pem\n'
printf '   ca-wrong/       ZXC Inc.: its CA\n'
printf '   invoice-server/ cert.pem, key.pem, ca.cert.pem, invoices.db, server.log;\n'
printf '                   auto/ (enrolled and renewed by itself), auto.log\n'
printf '   mail-server/    cert.pem, key.pem, ca.cert.pem (revoked now); zxc/ (signed by\n'
printf '                   ZXC); auto/ (enrolled with its token)\n'
printf 'Try: %s list --ca %s/ca\n' "$ca_bin" "$demo"
