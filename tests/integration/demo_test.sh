#!/usr/bin/env bash
# demo_test.sh BUILD_DIR SOURCE_DIR - make demo's story with its port taken:
# it says "port N is busy, using M" and goes on, and it shows commands as a
# shell takes them back ('/O=ABC Inc.' quoted), so that they can be pasted.
set -u
build=$1 src=$2
dir=$(mktemp -d /tmp/twoway-demo-test.XXXXXX)
holder=""
cleanup() { [ -n "$holder" ] && kill "$holder" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
failed=0
check() { # NAME PATTERN: the demo's output holds PATTERN (fixed string)
    if grep -qF -- "$2" "$dir/out"; then echo "ok   $1"; else echo "FAIL $1: no '$2'"; failed=1; fi
}

# A listener holds a port: the demo must not use it.
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True); time.sleep(600)' > "$dir/port" &
holder=$!
for _ in $(seq 1 100); do [ -s "$dir/port" ] && break; sleep 0.05; done
port=$(cat "$dir/port")
[ -n "$port" ] || { echo "FAIL setup: no port held"; exit 1; }

DEMO_DIR="$dir/demo" DEMO_PORT="$port" "$src/scripts/demo.sh" "$build" > "$dir/out" 2>&1
rc=$?
[ $rc -eq 0 ] && echo "ok   the demo tells its story with port $port taken" ||
    { echo "FAIL the demo exited $rc"; tail -20 "$dir/out"; failed=1; }
check "a taken port is said, with the one used instead" "(port $port is busy, using "
check "commands are shown quoted as a shell takes them" \
    "\$ twoway-ca init ca --subject '/O=ABC Inc.'"
check "a value without spaces stays bare" \
    "\$ twoway-ca issue --ca ca --out invoice-server --subject /CN=localhost/O=InvoiceServer --server"
exit $failed
