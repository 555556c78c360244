#!/usr/bin/env bash
# Integration tests for twoway-ca: drive the real binary, judge its output with
# openssl.  The CLI contract (outputs, exit codes) is the one of twoway-ca(1).
#
#   usage: ca_test.sh /path/to/twoway-ca [PART]
#
# PART 1 runs the sections from "CLI basics" to "a busy index", PART 2 those
# from "--lifetime" to the end (each makes its own CA); without PART, all.
# The two halves share nothing, so ctest runs them as two tests (ca_cli,
# ca_cli_2) side by side: under Valgrind the whole takes about 9 minutes.
# Everything happens in a private temp directory; no network, no ports.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ ! -x "$1" ] || [[ ! "${2-}" =~ ^[12]?$ ]]; then
    fail "setup" "usage: ca_test.sh /path/to/twoway-ca [1|2] (got '$*')"
    finish
fi
TW=$(realpath "$1")
PART=${2-}
cd "$TMP" || exit 1
# TW_WRAP runs the tool under a wrapper (make test-valgrind); TW_QUICK trims
# the bulk check to keep that run short, and TW_BULK sets its size (the
# sanitizer build, where each issue costs a tenth of a second more, runs
# 250; the plain build the full 1000).
if [ -n "${TW_WRAP:-}" ]; then
    printf '#!/bin/sh\nexec %s "%s" "$@"\n' "$TW_WRAP" "$TW" >"$TMP/twoway-ca-wrapped"
    chmod +x "$TMP/twoway-ca-wrapped"
    TW="$TMP/twoway-ca-wrapped"
fi
# lib.sh's run calls a command hung after 60 s.  Under a wrapper (Valgrind)
# an RSA-3072 key alone can take that long on a busy machine (make
# test-valgrind runs two tests at a time): the hang guard stretches 6 times
# there, as SLOW does in the Python tests.
HANG=60
if [ -n "${TW_WRAP:-}" ]; then
    HANG=360
    run() {
        timeout "$HANG" "$@" >"$OUT" 2>"$ERR"
        RC=$?
    }
fi
BULK=${TW_BULK:-1000}
[ -n "${TW_QUICK:-}" ] && BULK=40
# Under Valgrind each issue costs two seconds, and the 40 repeat the same
# check a tenth of them makes (issue succeeds, serials distinct).
[ -n "${TW_QUICK:-}" ] && [ -n "${TW_WRAP:-}" ] && BULK=10
umask 022 # the modes the contract documents assume the usual umask

# ---- helpers ---------------------------------------------------------------

# Hex serial in one canonical form: no colons, upper case, no leading zeros.
norm_hex() { tr -d ':\n' | tr 'a-f' 'A-F' | sed 's/^0*\(.\)/\1/'; }
ossl_serial() { openssl x509 -noout -serial -in "$1" 2>/dev/null | sed 's/^serial=//' | norm_hex; }
# cert_text CERT FILE: the openssl text form of CERT in FILE (no FILE if unreadable).
cert_text() { openssl x509 -noout -text -in "$1" >"$2" 2>/dev/null || rm -f "$2"; }
subject_of() { openssl x509 -noout -subject -in "$1" 2>&1; }
pubkey_of_cert() { openssl x509 -noout -pubkey -in "$1" 2>/dev/null; }
pubkey_of_key() { openssl pkey -pubout -in "$1" "${@:2}" 2>/dev/null; }

# json FILE EXPR: print the Python expression EXPR, with d = the JSON in FILE.
json() {
    python3 -c 'import json,sys
try:
    d = json.load(open(sys.argv[1]))
    print(eval(sys.argv[2]))
except Exception as e:
    print("python error:", repr(e))' "$1" "$2"
}

# entry_field FILE SERIAL KEY: KEY of the `list --json` entry whose serial is
# SERIAL (as norm_hex prints it); lists and null come out as JSON.
entry_field() {
    python3 -c 'import json,sys
try:
    entries = {e["serial"].lstrip("0"): e for e in json.load(open(sys.argv[1]))}
    v = entries[sys.argv[2]][sys.argv[3]]
    print(v if isinstance(v, str) else json.dumps(v))
except Exception as e:
    print("python error:", repr(e))' "$1" "$2" "$3"
}

# expect_days NAME CERT MIN MAX: whole days from now to notAfter lie in MIN..MAX.
expect_days() {
    local end days=none
    end=$(openssl x509 -noout -enddate -in "$2" 2>/dev/null | sed 's/^notAfter=//')
    [ -n "$end" ] && days=$((($(date -d "$end" +%s) - $(date +%s)) / 86400))
    if [ "$days" != none ] && [ "$days" -ge "$3" ] && [ "$days" -le "$4" ]; then ok "$1"
    else fail "$1" "valid for $days more days, expected $3..$4"; fi
}

# expect_refused NAME TEXT -- cmd: cmd fails (not a crash) and says TEXT.
expect_refused() {
    local name=$1 text=$2
    shift 3
    run "$@"
    if [ "$RC" -ne 0 ] && [ "$RC" -lt 124 ] && cat "$OUT" "$ERR" | grep -qF -- "$text"; then
        ok "$name"
    else fail "$name" "exit $RC, wanted a failure saying '$text': $(cat "$OUT" "$ERR" | head -c 300)"; fi
}

# expect_unchanged NAME BEFORE AFTER: digests taken with digests() are equal.
digests() { sha256sum "$@" 2>/dev/null || echo "(some file missing)"; }
expect_unchanged() {
    if [[ "$2" == *missing* ]]; then fail "$1" "files were missing before: $2"
    elif [ "$2" = "$3" ]; then ok "$1"
    else fail "$1" "changed: $3"; fi
}

# cut_in_half SRC DST: the first half of SRC's bytes, a truncated PEM.
cut_in_half() { head -c $(($(wc -c <"$1" 2>/dev/null || echo 0) / 2)) "$1" >"$2" 2>/dev/null; }

expect_mode() { expect_eq "$1" "$2" "$(stat -c %a "$3" 2>&1)"; }

expect_same_file() {
    if cmp -s "$2" "$3"; then ok "$1"; else fail "$1" "'$2' and '$3' differ"; fi
}

# expect_key_matches NAME CERT KEY [openssl pkey options]
expect_key_matches() {
    local c k
    c=$(pubkey_of_cert "$2")
    k=$(pubkey_of_key "$3" "${@:4}")
    if [ -n "$c" ] && [ "$c" = "$k" ]; then ok "$1"; else
        fail "$1" "public key of '$2' does not match private key '$3'"; fi
}

# A failed command must leave no file behind (not even a temp file) in DIR.
expect_no_files() {
    local left
    left=$(find "$2" -type f 2>/dev/null | head -3 | tr '\n' ' ')
    if [ -z "$left" ]; then ok "$1"; else fail "$1" "files left behind: $left"; fi
}

# The names in DIR, hidden ones too, sorted, on one line.
files_in() { find "$1" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>&1 | sort | tr '\n' ' ' | sed 's/ $//'; }

expect_absent() {
    if [ ! -e "$2" ]; then ok "$1"; else fail "$1" "'$2' was created"; fi
}

# Digest of every file of a CA, to prove a refused command changed nothing.
ca_sums() { digests "$1"/ca.cert.pem "$1"/ca.key.pem "$1"/ca.db; }

# PART 1 (unindented: the sections read as before) ---------------------------
if [ "$PART" != 2 ]; then

# ---- CLI basics ------------------------------------------------------------

expect_exit 0 "--version exits 0" -- "$TW" --version
expect_stdout_contains "twoway-ca 0.1.0" "--version prints 'twoway-ca 0.1.0'"
expect_exit 0 "--help exits 0" -- "$TW" --help
if grep -qi usage "$OUT"; then ok "--help prints usage on stdout"; else
    fail "--help prints usage on stdout" "stdout: $(head -c 200 "$OUT")"; fi
for cmd in init issue sign revoke crl list inspect verify token; do
    expect_exit 0 "$cmd --help exits 0" -- "$TW" "$cmd" --help
    if grep -qi usage "$OUT"; then ok "$cmd --help prints usage on stdout"; else
        fail "$cmd --help prints usage on stdout" "stdout: $(head -c 200 "$OUT")"; fi
done
expect_exit 2 "no command: exit 2" -- "$TW"
expect_exit 2 "unknown command: exit 2" -- "$TW" frobnicate
expect_stderr_contains "frobnicate" "unknown command is named on stderr"

# ---- init ------------------------------------------------------------------

expect_exit 0 "init: creates a CA" -- "$TW" init ca --subject "/O=ABC Inc."
expect_eq "init: DIR holds exactly the three CA files" "ca.cert.pem ca.db ca.key.pem" \
    "$(files_in ca)"
for f in ca.cert.pem ca.key.pem ca.db; do
    if [ -s "ca/$f" ]; then ok "init: writes $f"; else fail "init: writes $f" "missing or empty"; fi
done
expect_mode "init: ca.key.pem has mode 600" 600 ca/ca.key.pem
expect_mode "init: ca.cert.pem has mode 644" 644 ca/ca.cert.pem
expect_mode "init: creates DIR with mode 700" 700 ca
expect_eq "init: ca.db is an SQLite database" "SQLite format 3" "$(head -c 15 ca/ca.db)"
expect_eq "init: --subject is used as written" "subject=O = ABC Inc." "$(subject_of ca/ca.cert.pem)"
expect_key_matches "init: ca.key.pem is the key of ca.cert.pem" ca/ca.cert.pem ca/ca.key.pem
cert_text ca/ca.cert.pem ca.txt
expect_file_has ca.txt "CA:TRUE" "init: CA certificate has CA:TRUE"
expect_file_has ca.txt "Certificate Sign, CRL Sign" "init: CA keyUsage is keyCertSign, cRLSign"
expect_file_has ca.txt "Subject Key Identifier" "init: CA certificate has an SKI"
expect_exit 0 "init: CA certificate passes openssl verify -x509_strict" -- \
    openssl verify -x509_strict -CAfile ca/ca.cert.pem ca/ca.cert.pem

expect_exit 0 "init: defaults work" -- "$TW" init ca-default
expect_eq "init: default subject is /CN=twoway CA" "subject=CN = twoway CA" \
    "$(subject_of ca-default/ca.cert.pem)"
cert_text ca-default/ca.cert.pem ca-default.txt
expect_file_has ca-default.txt "prime256v1" "init: default key is ec-p256"
expect_days "init: default validity is 3650 days" ca-default/ca.cert.pem 3649 3650

before=$(ca_sums ca)
expect_exit 1 "init: refuses a DIR that already holds a CA (exit 1)" -- \
    "$TW" init ca --subject "/O=Other"
expect_stderr_contains "already holds a CA" "init: says the DIR already holds a CA"
expect_unchanged "init: existing CA files are unchanged" "$before" "$(ca_sums ca)"

mkdir stray && echo "not a database" >stray/ca.db
expect_exit 1 "init: refuses a DIR with a stray ca.db" -- "$TW" init stray
expect_eq "init: stray ca.db is unchanged" "not a database" "$(cat stray/ca.db)"
expect_absent "init: writes no key next to a stray ca.db" stray/ca.key.pem

# ---- issue -----------------------------------------------------------------

expect_exit 0 "issue --server: exit 0" -- \
    "$TW" issue --ca ca --out inv --subject "/CN=localhost/O=InvoiceServer" --server
expect_eq "issue: nothing on stderr on success" "" "$(head -c 300 "$ERR")"
if grep -qE '^issued [0-9A-F]+ .* -> inv/cert\.pem$' "$OUT"; then
    ok "issue: prints 'issued SERIAL SUBJECT -> OUTDIR/cert.pem'"
else fail "issue: prints 'issued SERIAL SUBJECT -> OUTDIR/cert.pem'" "stdout: $(cat "$OUT")"; fi
inv_serial=$(awk '{print $2; exit}' "$OUT")
got=$(printf %s "$inv_serial" | norm_hex) want=$(ossl_serial inv/cert.pem)
if [ -n "$want" ] && [ "$got" = "$want" ]; then ok "issue: printed serial is the certificate's serial"
else fail "issue: printed serial is the certificate's serial" "printed '$got', certificate '$want'"; fi
if [ "${#want}" -ge 16 ]; then ok "issue: serial has at least 64 bits"
else fail "issue: serial has at least 64 bits" "serial '$want'"; fi
expect_exit 0 "issue --server: openssl verify -purpose sslserver passes" -- \
    openssl verify -purpose sslserver -CAfile ca/ca.cert.pem inv/cert.pem
expect_exit 0 "issue --server: openssl verify -x509_strict passes" -- \
    openssl verify -x509_strict -purpose sslserver -CAfile ca/ca.cert.pem inv/cert.pem
cert_text inv/cert.pem inv.txt
for want in "DNS:localhost" "TLS Web Server Authentication" "Digital Signature" "CA:FALSE" \
    "Subject Key Identifier" "Authority Key Identifier" "Version: 3 (0x2)"; do
    expect_file_has inv.txt "$want" "issue --server: certificate shows '$want'"
done
expect_file_lacks inv.txt "TLS Web Client Authentication" "issue --server: no clientAuth EKU"
expect_eq "issue: subject is written as in openssl -subj" \
    "subject=CN = localhost, O = InvoiceServer" "$(subject_of inv/cert.pem)"
expect_eq "issue: issuer is the CA" "issuer=O = ABC Inc." \
    "$(openssl x509 -noout -issuer -in inv/cert.pem 2>&1)"
expect_mode "issue: key.pem has mode 600" 600 inv/key.pem
expect_key_matches "issue: key.pem is the key of cert.pem" inv/cert.pem inv/key.pem
expect_same_file "issue: OUTDIR/ca.cert.pem is the CA certificate" inv/ca.cert.pem ca/ca.cert.pem
expect_mode "issue: creates OUTDIR with mode 755" 755 inv
expect_eq "issue: OUTDIR holds exactly the three files (no temp files)" \
    "ca.cert.pem cert.pem key.pem" "$(files_in inv)"
expect_days "issue: default validity is 365 days" inv/cert.pem 364 365

inv_sum=$(digests inv/cert.pem inv/key.pem)
expect_exit 1 "issue: refuses to overwrite OUTDIR/cert.pem" -- \
    "$TW" issue --ca ca --out inv --subject "/CN=localhost/O=InvoiceServer" --server
expect_unchanged "issue: refused overwrite leaves files unchanged" "$inv_sum" \
    "$(digests inv/cert.pem inv/key.pem)"
cp -r inv inv-forced 2>/dev/null
expect_exit 0 "issue --force: overwrites" -- \
    "$TW" issue --ca ca --out inv-forced --subject "/CN=localhost/O=InvoiceServer" --server --force
if [ -s inv-forced/cert.pem ] && ! cmp -s inv/cert.pem inv-forced/cert.pem; then
    ok "issue --force: writes a new certificate"
else fail "issue --force: writes a new certificate" "cert.pem missing or unchanged"; fi

expect_exit 0 "issue --days 10: exit 0" -- \
    "$TW" issue --ca ca --out short --subject "/CN=short" --client --days 10
expect_days "issue --days 10: valid for 10 days" short/cert.pem 9 10

# The CA was made for 3650 days: a longer certificate must not outlive it,
# whether the tool caps the validity or refuses the value.
run "$TW" issue --ca ca --out long --subject "/CN=long" --client --days 5000
ca_end=$(date -d "$(openssl x509 -noout -enddate -in ca/ca.cert.pem | sed 's/^notAfter=//')" +%s)
leaf_end=$(date -d "$(openssl x509 -noout -enddate -in long/cert.pem 2>/dev/null |
    sed 's/^notAfter=//')" +%s 2>/dev/null)
if { [ "$RC" -eq 0 ] && [ -n "$leaf_end" ] && [ "$leaf_end" -le "$ca_end" ]; } ||
    { [ "$RC" -eq 2 ] && [ ! -e long/cert.pem ]; }; then
    ok "issue --days 5000: the certificate does not outlive the CA"
else fail "issue --days 5000: the certificate does not outlive the CA" \
    "exit $RC, certificate ends $leaf_end, CA ends $ca_end"; fi

expect_exit 0 "issue --client: exit 0" -- \
    "$TW" issue --ca ca --out mail --subject "/CN=localhost/O=MailServer" --client
expect_exit 0 "issue --client: openssl verify -purpose sslclient passes" -- \
    openssl verify -purpose sslclient -CAfile ca/ca.cert.pem mail/cert.pem
expect_refused "issue --client: openssl verify -purpose sslserver fails" \
    "unsuitable certificate purpose" -- \
    openssl verify -purpose sslserver -CAfile ca/ca.cert.pem mail/cert.pem
cert_text mail/cert.pem mail.txt
expect_file_has mail.txt "TLS Web Client Authentication" "issue --client: clientAuth EKU"
expect_file_lacks mail.txt "TLS Web Server Authentication" "issue --client: no serverAuth EKU"

expect_exit 0 "issue --server --client: exit 0" -- \
    "$TW" issue --ca ca --out both --subject "/CN=localhost/O=Both" --server --client
expect_exit 0 "issue --server --client: passes -purpose sslserver" -- \
    openssl verify -purpose sslserver -CAfile ca/ca.cert.pem both/cert.pem
expect_exit 0 "issue --server --client: passes -purpose sslclient" -- \
    openssl verify -purpose sslclient -CAfile ca/ca.cert.pem both/cert.pem

spiffe=spiffe://example.com/ns/billing/sa/invoice
expect_exit 0 "issue --server: CN that is not a host name" -- \
    "$TW" issue --ca ca --out noname --subject "/CN=Invoice Server/O=InvoiceServer" --server
cert_text noname/cert.pem noname.txt
expect_file_lacks noname.txt "DNS:" "issue --server: no DNS SAN made from a CN that is not a host name"

expect_exit 0 "issue with --dns --ip --uri --email: exit 0" -- \
    "$TW" issue --ca ca --out sans --subject "/CN=api.example.com/O=InvoiceServer" --server \
    --dns api.example.com --dns alt.example.com --ip 192.0.2.7 --ip 2001:db8::1 \
    --uri "$spiffe" --email ops@example.com
cert_text sans/cert.pem sans.txt
for want in DNS:api.example.com DNS:alt.example.com "IP Address:192.0.2.7" \
    "IP Address:2001:DB8:0:0:0:0:0:1" "URI:$spiffe" email:ops@example.com; do
    expect_file_has sans.txt "$want" "issue: SAN '$want' is present"
done
expect_exit 0 "issue: openssl accepts the certificate for alt.example.com" -- \
    openssl verify -purpose sslserver -verify_hostname alt.example.com \
    -CAfile ca/ca.cert.pem sans/cert.pem
expect_exit 0 "issue: openssl accepts the certificate for 192.0.2.7" -- \
    openssl verify -purpose sslserver -verify_ip 192.0.2.7 -CAfile ca/ca.cert.pem sans/cert.pem
expect_refused "issue: openssl refuses the certificate for other.example.com" \
    "hostname mismatch" -- \
    openssl verify -purpose sslserver -verify_hostname other.example.com \
    -CAfile ca/ca.cert.pem sans/cert.pem

# Key types: the leaf key, then a CA of a non-default type signing a leaf.
for key in ec-p256:prime256v1 ec-p384:secp384r1 ed25519:ED25519 \
    "rsa-2048:Public-Key: (2048 bit)" "rsa-3072:Public-Key: (3072 bit)"; do
    type=${key%%:*} marker=${key#*:}
    expect_exit 0 "issue --key $type: exit 0" -- \
        "$TW" issue --ca ca --out "key-$type" --subject "/CN=localhost" --server --key "$type"
    expect_exit 0 "issue --key $type: openssl verify passes" -- \
        openssl verify -purpose sslserver -CAfile ca/ca.cert.pem "key-$type/cert.pem"
    cert_text "key-$type/cert.pem" "key-$type.txt"
    expect_file_has "key-$type.txt" "$marker" "issue --key $type: certificate key is $type"
    expect_key_matches "issue --key $type: key.pem matches cert.pem" \
        "key-$type/cert.pem" "key-$type/key.pem"
done
for type in ed25519 rsa-2048; do
    expect_exit 0 "init --key $type: exit 0" -- "$TW" init "ca-$type" --key "$type"
    expect_exit 0 "init --key $type: the CA issues" -- \
        "$TW" issue --ca "ca-$type" --out "leaf-$type" --subject "/CN=localhost" --server
    expect_exit 0 "init --key $type: openssl verifies what it issued" -- \
        openssl verify -purpose sslserver -CAfile "ca-$type/ca.cert.pem" "leaf-$type/cert.pem"
done

# ---- sign ------------------------------------------------------------------

# The seed's exact CSR command.
openssl req -out x.csr -newkey rsa:2048 -nodes -keyout x.key \
    -subj "/CN=localhost/O=MailServer" >/dev/null 2>&1
expect_exit 0 "sign --client: signs the seed's CSR" -- \
    "$TW" sign --ca ca --csr x.csr --out x.cert --client
if grep -qE '^signed [0-9A-F]+ .* -> x\.cert$' "$OUT"; then
    ok "sign: prints 'signed SERIAL SUBJECT -> CERTFILE'"
else fail "sign: prints 'signed SERIAL SUBJECT -> CERTFILE'" "stdout: $(cat "$OUT")"; fi
expect_exit 0 "sign --client: openssl verify -purpose sslclient passes" -- \
    openssl verify -purpose sslclient -CAfile ca/ca.cert.pem x.cert
expect_eq "sign: keeps the CSR's subject" "subject=CN = localhost, O = MailServer" \
    "$(subject_of x.cert)"
expect_key_matches "sign: certifies the CSR's key" x.cert x.key

# A CSR asking for more than names: only the names may be copied.
openssl req -new -key x.key -subj "/CN=greedy.example.com" -out greedy.csr \
    -addext "subjectAltName=DNS:greedy.example.com" \
    -addext "extendedKeyUsage=codeSigning" -addext "keyUsage=keyCertSign" >/dev/null 2>&1
expect_exit 0 "sign --server: signs a CSR with extra extensions" -- \
    "$TW" sign --ca ca --csr greedy.csr --out greedy.cert --server --dns extra.example.com
cert_text greedy.cert greedy.txt
expect_file_has greedy.txt "DNS:greedy.example.com" "sign: copies the CSR's SAN"
expect_file_has greedy.txt "DNS:extra.example.com" "sign: adds the --dns name"
expect_file_lacks greedy.txt "Code Signing" "sign: does not copy the CSR's EKU"
expect_file_lacks greedy.txt "Certificate Sign" "sign: does not copy the CSR's keyUsage"
expect_file_has greedy.txt "CA:FALSE" "sign: certificate is CA:FALSE"

# ---- revoke and crl --------------------------------------------------------

"$TW" issue --ca ca --out rv1 --subject "/CN=localhost/O=Revoked" --server >/dev/null 2>&1
"$TW" issue --ca ca --out rv2 --subject "/CN=localhost/O=Kept" --client >"$OUT" 2>&1
rv2_serial=$(awk '{print $2; exit}' "$OUT")
rv1_serial=$(ossl_serial rv1/cert.pem)

expect_exit 0 "revoke --cert: exit 0" -- "$TW" revoke --ca ca --cert rv1/cert.pem
if grep -qE '^revoked [0-9A-F]+' "$OUT" &&
    [ "$(awk '{print $2}' "$OUT" | norm_hex)" = "$rv1_serial" ]; then
    ok "revoke: prints 'revoked SERIAL SUBJECT'"
else fail "revoke: prints 'revoked SERIAL SUBJECT'" "stdout: $(cat "$OUT")"; fi
expect_exit 0 "crl: exit 0" -- "$TW" crl --ca ca --out crl.pem
if grep -qE '^wrote CRL #[0-9]+ with 1 revoked -> crl\.pem$' "$OUT"; then
    ok "crl: prints 'wrote CRL #N with 1 revoked -> FILE'"
else fail "crl: prints 'wrote CRL #N with 1 revoked -> FILE'" "stdout: $(cat "$OUT")"; fi
crl1_number=$(sed -n 's/^wrote CRL #\([0-9]*\).*/\1/p' "$OUT")
expect_exit 0 "crl: CRL signature verifies with the CA" -- \
    openssl crl -in crl.pem -CAfile ca/ca.cert.pem -noout
expect_stderr_contains "verify OK" "crl: openssl says the CRL verifies"
openssl crl -in crl.pem -noout -text >crl.txt 2>&1
expect_file_has crl.txt "Version 2" "crl: is a v2 CRL"
expect_file_has crl.txt "X509v3 CRL Number" "crl: has a CRL number"
if [ -n "$rv1_serial" ] && grep -qi "Serial Number: 0*$rv1_serial\$" crl.txt; then
    ok "crl: lists the revoked serial"
else fail "crl: lists the revoked serial" "serial $rv1_serial not in CRL"; fi

expect_refused "revoked: openssl verify -crl_check fails with 'revoked'" revoked -- \
    openssl verify -crl_check -CRLfile crl.pem -CAfile ca/ca.cert.pem rv1/cert.pem
expect_exit 0 "crl: openssl -crl_check still accepts a certificate not revoked" -- \
    openssl verify -crl_check -purpose sslclient -CRLfile crl.pem -CAfile ca/ca.cert.pem rv2/cert.pem
expect_exit 3 "verify --crl: revoked certificate exits 3" -- \
    "$TW" verify --ca ca/ca.cert.pem --crl crl.pem rv1/cert.pem
expect_stderr_contains "revoked" "verify --crl: stderr says revoked"
expect_stderr_contains "rv1/cert.pem: refused (revoked)" \
    "verify --crl: stderr is 'CERTFILE: refused (revoked): ...'"
expect_exit 0 "verify --crl: certificate not revoked exits 0" -- \
    "$TW" verify --ca ca/ca.cert.pem --crl crl.pem --purpose client rv2/cert.pem

expect_exit 1 "revoke: revoking the same certificate again exits 1" -- \
    "$TW" revoke --ca ca --cert rv1/cert.pem
expect_stderr_contains "already revoked" "revoke: says 'already revoked'"
expect_exit 1 "revoke --serial: same serial again exits 1" -- \
    "$TW" revoke --ca ca --serial "$rv1_serial"
expect_exit 1 "revoke --serial: unknown serial exits 1" -- \
    "$TW" revoke --ca ca --serial 0DEADBEEF0DEADBEEF
expect_exit 2 "revoke --reason: unknown reason exits 2" -- \
    "$TW" revoke --ca ca --serial "$rv2_serial" --reason bogus
expect_exit 2 "revoke: neither --serial nor --cert exits 2" -- "$TW" revoke --ca ca
expect_exit 0 "revoke --serial --reason keyCompromise: exit 0" -- \
    "$TW" revoke --ca ca --serial "$rv2_serial" --reason keyCompromise
expect_exit 0 "crl: second CRL" -- "$TW" crl --ca ca --out crl2.pem
crl2_number=$(sed -n 's/^wrote CRL #\([0-9]*\).*/\1/p' "$OUT")
if [ -n "$crl1_number" ] && [ -n "$crl2_number" ] && [ "$crl2_number" -gt "$crl1_number" ]; then
    ok "crl: CRL number increases"
else fail "crl: CRL number increases" "first '$crl1_number', second '$crl2_number'"; fi
openssl crl -in crl2.pem -noout -text >crl2.txt 2>&1
expect_file_has crl2.txt "Key Compromise" "crl: carries the revocation reason"

expect_exit 0 "list: exit 0" -- "$TW" list --ca ca
cp "$OUT" list.txt
if grep -qE '^SERIAL +SUBJECT +SANS +PURPOSE +NOT-AFTER +STATUS +DAYS-LEFT' list.txt; then
    ok "list: header names the columns"
else fail "list: header names the columns" "first line: $(head -1 list.txt)"; fi
for how in cert:$rv1_serial serial:$rv2_serial; do
    serial=${how#*:}
    row=$(grep -F "$serial" list.txt)
    if [ -n "$serial" ] && grep -qw revoked <<<"$row"; then
        ok "list: certificate revoked by --${how%%:*} shows status revoked"
    else fail "list: certificate revoked by --${how%%:*} shows status revoked" "row: '$row'"; fi
done
row=$(grep -F "$inv_serial" list.txt)
if [ -n "$inv_serial" ] && grep -qw valid <<<"$row"; then ok "list: live certificate shows status valid"
else fail "list: live certificate shows status valid" "row: '$row'"; fi

# ---- list --json and inspect --json ---------------------------------------

expect_exit 0 "list --json: exit 0" -- "$TW" list --ca ca --json
cp "$OUT" list.json
expect_exit 0 "list --json: output is valid JSON" -- python3 -m json.tool list.json
expect_eq "list --json: every entry has the documented keys" "True" "$(json list.json \
    'len(d) > 0 and all({"serial","subject","sans","purpose","not_before","not_after","status",
     "days_left","revoked_at","revoke_reason"} <= set(e) for e in d)')"
sans_serial=$(ossl_serial sans/cert.pem)
rv2_norm=$(printf %s "$rv2_serial" | norm_hex)
sans_json=$(entry_field list.json "$sans_serial" sans)
for want in DNS:alt.example.com IP:192.0.2.7 "URI:$spiffe" email:ops@example.com; do
    if grep -qF "\"$want\"" <<<"$sans_json"; then ok "list --json: sans has '$want'"
    else fail "list --json: sans has '$want'" "sans: $sans_json"; fi
done
expect_eq "list --json: purpose server+client" "server+client" \
    "$(entry_field list.json "$(ossl_serial both/cert.pem)" purpose)"
expect_eq "list --json: revoked entry has status revoked" "revoked" \
    "$(entry_field list.json "$rv2_norm" status)"
revoked_at=$(entry_field list.json "$rv2_norm" revoked_at)
if grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$' <<<"$revoked_at"; then
    ok "list --json: revoked entry has revoked_at (RFC 3339 UTC)"
else fail "list --json: revoked entry has revoked_at (RFC 3339 UTC)" "revoked_at: '$revoked_at'"; fi
expect_eq "list --json: revoked entry has revoke_reason" "keyCompromise" \
    "$(entry_field list.json "$rv2_norm" revoke_reason)"
expect_eq "list --json: live entry has revoked_at null" "null" \
    "$(entry_field list.json "$sans_serial" revoked_at)"
not_after=$(entry_field list.json "$sans_serial" not_after)
if grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$' <<<"$not_after"; then
    ok "list --json: not_after is RFC 3339 UTC"
else fail "list --json: not_after is RFC 3339 UTC" "not_after: '$not_after'"; fi
days_left=$(entry_field list.json "$sans_serial" days_left)
case "$days_left" in
364 | 365) ok "list --json: days_left of a new 365-day certificate" ;;
*) fail "list --json: days_left of a new 365-day certificate" "days_left: '$days_left'" ;;
esac

expect_exit 0 "inspect --json: exit 0" -- "$TW" inspect sans/cert.pem --json
cp "$OUT" inspect.json
expect_exit 0 "inspect --json: output is valid JSON" -- python3 -m json.tool inspect.json
expect_eq "inspect --json: has the documented keys" "True" "$(json inspect.json \
    '{"version","serial","subject","issuer","not_before","not_after","key","signature_algorithm",
      "purposes","sans","fingerprint_sha256","spki_sha256","spiffe_id"} <= set(d)')"
want_fp=$(openssl x509 -noout -fingerprint -sha256 -in sans/cert.pem | sed 's/.*=//' | norm_hex)
expect_eq "inspect --json: fingerprint_sha256 equals openssl's" "$want_fp" \
    "$(json inspect.json 'd["fingerprint_sha256"]' | norm_hex)"
spki_der=$(pubkey_of_cert sans/cert.pem | openssl pkey -pubin -outform DER 2>/dev/null | sha256sum | cut -c1-64)
spki_b64=$(printf %s "$spki_der" | xxd -r -p | base64)
got_spki=$(json inspect.json 'd["spki_sha256"]')
if [ "$(printf %s "$got_spki" | norm_hex)" = "$(printf %s "$spki_der" | norm_hex)" ] ||
    [ "$got_spki" = "$spki_b64" ]; then ok "inspect --json: spki_sha256 is the SHA-256 of the SPKI"
else fail "inspect --json: spki_sha256 is the SHA-256 of the SPKI" "got '$got_spki', want $spki_der"; fi
expect_eq "inspect --json: spiffe_id is the URI SAN" "$spiffe" "$(json inspect.json 'd["spiffe_id"]')"
expect_eq "inspect --json: serial equals openssl's" "$sans_serial" \
    "$(json inspect.json 'd["serial"]' | norm_hex)"
expect_exit 0 "inspect: text form exits 0" -- "$TW" inspect sans/cert.pem
if grep -qiE "^serial: *0*$sans_serial\$" "$OUT"; then ok "inspect: text form has a 'serial: SERIAL' line"
else fail "inspect: text form has a 'serial: SERIAL' line" "stdout: $(head -c 300 "$OUT")"; fi
if tr -d ':' <"$OUT" | tr 'a-f' 'A-F' | grep -q "$want_fp"; then ok "inspect: text form shows the fingerprint"
else fail "inspect: text form shows the fingerprint" "no $want_fp in: $(head -c 300 "$OUT")"; fi

# ---- the seed's own PKI, made with the seed's exact commands ---------------

mkdir seed && cd seed || exit 1
mkdir ca ca-wrong invoice-server mail-server
{
    openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 -subj '/O=ABC Inc.' -keyout ca/ca.key.pem -out ca/ca.cert.pem
    openssl req -out invoice-server/server.csr -newkey rsa:2048 -nodes -keyout invoice-server/private.key -subj "/CN=localhost/O=InvoiceServer"
    openssl x509 -req -sha256 -days 365 -CA ca/ca.cert.pem -CAkey ca/ca.key.pem -set_serial 0 -in invoice-server/server.csr -out invoice-server/server.cert
    openssl req -out mail-server/server.csr -newkey rsa:2048 -nodes -keyout mail-server/private.key -subj "/CN=localhost/O=MailServer"
    openssl x509 -req -sha256 -days 365 -CA ca/ca.cert.pem -CAkey ca/ca.key.pem -set_serial 0 -in mail-server/server.csr -out mail-server/server.cert
    openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 -subj '/O=ZXC Inc./CN=zxc.com' -keyout ca-wrong/ca.key.pem -out ca-wrong/ca.cert.pem
    openssl x509 -req -sha256 -days 365 -CA ca-wrong/ca.cert.pem -CAkey ca-wrong/ca.key.pem -set_serial 0 -in mail-server/server.csr -out mail-server/server-wrong.cert
} >/dev/null 2>&1
expect_exit 0 "seed: setup, openssl accepts the seed's mail certificate" -- \
    openssl verify -CAfile ca/ca.cert.pem mail-server/server.cert
expect_exit 0 "seed: verify --purpose client accepts the v1 mail certificate" -- \
    "$TW" verify --ca ca/ca.cert.pem --purpose client mail-server/server.cert
expect_eq "seed: verify prints 'CERTFILE: OK'" "mail-server/server.cert: OK" "$(cat "$OUT")"
# Seed certificates must keep working with twoway's client, which checks the
# host name: with no SAN at all, CN=localhost is the name.
expect_exit 0 "seed: verify --purpose server --host localhost accepts the v1 server certificate" -- \
    "$TW" verify --ca ca/ca.cert.pem --purpose server --host localhost invoice-server/server.cert
expect_exit 3 "seed: ZXC-signed certificate is refused (exit 3)" -- \
    "$TW" verify --ca ca/ca.cert.pem --purpose client mail-server/server-wrong.cert
expect_stderr_contains "unknown_ca" "seed: refusal reason is unknown_ca"
expect_stderr_contains "mail-server/server-wrong.cert: refused (unknown_ca)" \
    "seed: stderr is 'CERTFILE: refused (unknown_ca): ...'"
expect_stderr_contains "ZXC Inc." "seed: refusal names the foreign issuer"
expect_exit 0 "seed: inspect reads the v1 certificate" -- "$TW" inspect mail-server/server.cert
if grep -qiE '^version: *1\b' "$OUT"; then ok "seed: inspect shows version 1"
else fail "seed: inspect shows version 1" "stdout: $(head -c 300 "$OUT")"; fi
if grep -qiE '^serial: *(0x)?0+$' "$OUT"; then ok "seed: inspect shows serial 0"
else fail "seed: inspect shows serial 0" "stdout: $(head -c 300 "$OUT")"; fi
expect_exit 0 "seed: inspect --json reads the v1 certificate" -- \
    "$TW" inspect mail-server/server.cert --json
cp "$OUT" seed-inspect.json
expect_eq "seed: inspect --json has version 1 and serial 0" "1 0" \
    "$(json seed-inspect.json 'str(d["version"]) + " " + (str(d["serial"]).lstrip("0") or "0")')"
cd .. || exit 1

# ---- verify: reasons -------------------------------------------------------

expect_exit 0 "verify --host localhost: accepts the localhost certificate" -- \
    "$TW" verify --ca ca/ca.cert.pem --purpose server --host localhost inv/cert.pem
expect_eq "verify: prints 'CERTFILE: OK'" "inv/cert.pem: OK" "$(cat "$OUT")"
expect_exit 3 "verify --host example.com: exit 3" -- \
    "$TW" verify --ca ca/ca.cert.pem --purpose server --host example.com inv/cert.pem
expect_stderr_contains "inv/cert.pem: refused (name_mismatch)" "verify --host: reason name_mismatch"
expect_exit 3 "verify --purpose server on a client certificate: exit 3" -- \
    "$TW" verify --ca ca/ca.cert.pem --purpose server mail/cert.pem
expect_stderr_contains "refused (wrong_usage)" "verify --purpose: reason wrong_usage"
expect_exit 0 "verify --purpose client on a client certificate: exit 0" -- \
    "$TW" verify --ca ca/ca.cert.pem --purpose client mail/cert.pem
expect_exit 3 "verify: certificate of another CA exits 3" -- \
    "$TW" verify --ca seed/ca/ca.cert.pem inv/cert.pem
expect_stderr_contains "refused (unknown_ca)" "verify: other CA gives unknown_ca"

# Expired and not-yet-valid certificates, signed with the tool's CA key by
# `openssl ca`, the one OpenSSL 3.0 command that takes explicit dates.
mkdir oca && : >oca/index.txt && echo 01 >oca/serial
cat >oca.cnf <<'EOF'
[ ca ]
default_ca = tw
[ tw ]
dir = oca
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
default_md = sha256
policy = any
unique_subject = no
[ any ]
commonName = supplied
[ leaf ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost
EOF
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout dated.key \
    -subj /CN=localhost -out dated.csr >/dev/null 2>&1
for span in expired:20200101000000Z:20200102000000Z future:20990101000000Z:20990102000000Z; do
    IFS=: read -r name start end <<<"$span"
    openssl ca -batch -config oca.cnf -extensions leaf -cert ca/ca.cert.pem -keyfile ca/ca.key.pem \
        -in dated.csr -out "$name.pem" -startdate "$start" -enddate "$end" -notext >/dev/null 2>&1
done
for name in expired future; do
    expect_exit 0 "verify: setup, $name.pem is fine but for its dates" -- \
        openssl verify -no_check_time -purpose sslserver -CAfile ca/ca.cert.pem "$name.pem"
done
expect_exit 3 "verify: expired certificate exits 3" -- \
    "$TW" verify --ca ca/ca.cert.pem --purpose server expired.pem
expect_stderr_contains "refused (expired)" "verify: reason expired"
expect_exit 3 "verify: not-yet-valid certificate exits 3" -- \
    "$TW" verify --ca ca/ca.cert.pem --purpose server future.pem
expect_stderr_contains "refused (not_yet_valid)" "verify: reason not_yet_valid"
"$TW" init other-ca >/dev/null 2>&1
"$TW" crl --ca other-ca --out other-crl.pem >/dev/null 2>&1
expect_exit "1|3" "verify: a CRL signed by another CA is not accepted" -- \
    "$TW" verify --ca ca/ca.cert.pem --crl other-crl.pem --purpose server inv/cert.pem
expect_stderr_contains "other-crl.pem" "verify: the foreign CRL is named on stderr"
expect_exit 1 "verify: missing --ca file exits 1" -- \
    "$TW" verify --ca no-such-ca.pem inv/cert.pem
expect_stderr_contains "no-such-ca.pem" "verify: names the missing --ca file"

# ---- passphrase-protected CA -----------------------------------------------

printf 'correct horse\n' >pw-good
printf 'correct horse' >pw-good-no-newline
printf 'battery staple\n' >pw-bad
expect_exit 0 "init --passphrase-file: exit 0" -- "$TW" init enc --passphrase-file pw-good
expect_eq "init --passphrase-file: key is encrypted PKCS#8" \
    "-----BEGIN ENCRYPTED PRIVATE KEY-----" "$(head -1 enc/ca.key.pem)"
if openssl asn1parse -in enc/ca.key.pem 2>/dev/null | grep -q aes-256; then
    ok "init --passphrase-file: key is encrypted with AES-256"
else fail "init --passphrase-file: key is encrypted with AES-256" "no aes-256 in asn1parse"; fi
expect_key_matches "init --passphrase-file: openssl decrypts the key with the passphrase" \
    enc/ca.cert.pem enc/ca.key.pem -passin file:pw-good
expect_exit 0 "encrypted CA: issue with the right passphrase" -- \
    "$TW" issue --ca enc --out enc-leaf --subject "/CN=localhost" --server --passphrase-file pw-good
expect_exit 0 "encrypted CA: openssl verifies what it issued" -- \
    openssl verify -purpose sslserver -CAfile enc/ca.cert.pem enc-leaf/cert.pem
expect_exit 0 "encrypted CA: passphrase file without a final newline works" -- \
    "$TW" issue --ca enc --out enc-leaf2 --subject "/CN=localhost" --server \
    --passphrase-file pw-good-no-newline
expect_exit 0 "encrypted CA: sign with the right passphrase" -- \
    "$TW" sign --ca enc --csr x.csr --out enc-x.cert --client --passphrase-file pw-good
expect_exit 0 "encrypted CA: revoke with the right passphrase" -- \
    "$TW" revoke --ca enc --cert enc-leaf2/cert.pem --passphrase-file pw-good
expect_exit 0 "encrypted CA: crl with the right passphrase" -- \
    "$TW" crl --ca enc --out enc-crl.pem --passphrase-file pw-good
expect_exit 0 "encrypted CA: CRL signature verifies" -- \
    openssl crl -in enc-crl.pem -CAfile enc/ca.cert.pem -noout
expect_exit 0 "encrypted CA: list needs no passphrase" -- setsid -w "$TW" list --ca enc </dev/null

enc_sum=$(ca_sums enc)
expect_exit 1 "encrypted CA: wrong passphrase exits 1" -- \
    "$TW" issue --ca enc --out enc-wrong --subject "/CN=localhost" --server --passphrase-file pw-bad
expect_stderr_contains "passphrase" "encrypted CA: wrong passphrase is named on stderr"
expect_stderr_contains "enc/ca.key.pem" "encrypted CA: wrong passphrase names the key file"
expect_no_files "encrypted CA: wrong passphrase writes no file" enc-wrong
# setsid: no controlling terminal, so the tool cannot ask.
expect_exit 1 "encrypted CA: no passphrase and no terminal exits 1" -- \
    setsid -w "$TW" issue --ca enc --out enc-none --subject "/CN=localhost" --server </dev/null
expect_stderr_contains "--passphrase-file" "encrypted CA: no passphrase names --passphrase-file"
expect_no_files "encrypted CA: no passphrase writes no file" enc-none
expect_exit 1 "encrypted CA: crl without passphrase exits 1" -- \
    setsid -w "$TW" crl --ca enc --out enc-none-crl.pem </dev/null
expect_absent "encrypted CA: crl without passphrase writes no CRL" enc-none-crl.pem
expect_unchanged "encrypted CA: refused commands leave the CA unchanged" "$enc_sum" "$(ca_sums enc)"
expect_exit 1 "init: missing --passphrase-file exits 1" -- \
    "$TW" init enc-nofile --passphrase-file no-such-pw
expect_stderr_contains "no-such-pw" "init: names the missing passphrase file"
expect_absent "init: missing passphrase file creates no key" enc-nofile/ca.key.pem

# On a terminal the tool asks.  `script` gives it one; the passphrase is typed
# once the prompt is up: the tool turns echo off with TCSAFLUSH, which drops
# anything typed before (as getpass does).  Under Valgrind on a loaded
# machine the prompt can take several seconds to appear.
prompt_wait=1
[ -n "${TW_WRAP:-}" ] && prompt_wait=15
if command -v script >/dev/null; then
    for try in right:pw-good wrong:pw-bad; do
        IFS=: read -r how file <<<"$try"
        want=0
        [ "$how" = wrong ] && want=1
        # shellcheck disable=SC2016  # $1..$4 belong to the inner bash
        expect_exit "$want" "encrypted CA: $how passphrase typed on a terminal exits $want" -- \
            bash -c '(sleep "$4"; cat "$1") | script -qec "$2 issue --ca enc --out $3 \
                --subject /CN=localhost --server" /dev/null' _ "$file" "$TW" \
                "enc-tty-$how" "$prompt_wait"
    done
    expect_exit 0 "encrypted CA: certificate made after a terminal prompt verifies" -- \
        openssl verify -CAfile enc/ca.cert.pem enc-tty-right/cert.pem
    expect_no_files "encrypted CA: wrong passphrase on a terminal writes no file" enc-tty-wrong
else
    echo "note: no 'script' command, terminal prompt not tested"
fi

# ---- bad input ---------------------------------------------------------------

db_count() { "$TW" list --ca ca --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>&1 | tail -1; }
count_before=$(db_count)

for subj in "CN=x" "/XX=y" "/CN"; do
    expect_exit 2 "issue: malformed --subject '$subj' exits 2" -- \
        "$TW" issue --ca ca --out "bad-subj" --subject "$subj" --server
    expect_stderr_matches "subject" "issue: malformed --subject '$subj' is named on stderr"
    expect_no_files "issue: malformed --subject '$subj' writes no file" bad-subj
done
expect_exit 2 "init: malformed --subject exits 2" -- "$TW" init bad-subj-ca --subject "/CN"
expect_no_files "init: malformed --subject writes no file" bad-subj-ca

expect_exit 2 "issue: unknown --key dsa-1024 exits 2" -- \
    "$TW" issue --ca ca --out bad-key --subject "/CN=x" --server --key dsa-1024
expect_stderr_matches "dsa-1024|--key" "issue: unknown key type is named on stderr"
expect_no_files "issue: unknown key type writes no file" bad-key
expect_exit 2 "init: unknown --key dsa-1024 exits 2" -- "$TW" init bad-key-ca --key dsa-1024
expect_no_files "init: unknown key type writes no file" bad-key-ca

for d in 0 abc -1; do
    expect_exit 2 "issue: --days $d exits 2" -- \
        "$TW" issue --ca ca --out bad-days --subject "/CN=x" --server --days "$d"
    expect_stderr_contains "--days" "issue: --days $d is named on stderr"
    expect_no_files "issue: --days $d writes no file" bad-days
done
expect_exit 2 "init: --days abc exits 2" -- "$TW" init bad-days-ca --days abc
expect_exit 2 "sign: --days 0 exits 2" -- \
    "$TW" sign --ca ca --csr x.csr --out bad-days.cert --client --days 0
expect_absent "sign: --days 0 writes no certificate" bad-days.cert
expect_exit 2 "crl: --days abc exits 2" -- "$TW" crl --ca ca --out bad-days-crl.pem --days abc
expect_absent "crl: --days abc writes no CRL" bad-days-crl.pem

expect_exit 2 "issue: unknown option exits 2" -- \
    "$TW" issue --ca ca --out bad-opt --subject "/CN=x" --server --bogus
expect_stderr_contains "--bogus" "issue: unknown option is named on stderr"
expect_exit 2 "list: unknown option exits 2" -- "$TW" list --ca ca --bogus
expect_exit 2 "issue: neither --server nor --client exits 2" -- \
    "$TW" issue --ca ca --out bad-purpose --subject "/CN=x"
expect_no_files "issue: no purpose writes no file" bad-purpose
expect_exit 2 "issue: missing --ca exits 2" -- "$TW" issue --out bad-noca --subject "/CN=x" --server
expect_exit 2 "verify: missing CERTFILE exits 2" -- "$TW" verify --ca ca/ca.cert.pem
expect_exit 2 "verify: unknown --purpose exits 2" -- \
    "$TW" verify --ca ca/ca.cert.pem --purpose bogus inv/cert.pem
expect_stderr_contains "bogus" "verify: unknown --purpose is named on stderr"
for san in "--ip not-an-ip" "--dns has..dots" "--email no-at-sign" "--uri no-scheme"; do
    # shellcheck disable=SC2086  # word splitting of $san is wanted
    expect_exit 2 "issue: bad value '$san' exits 2" -- \
        "$TW" issue --ca ca --out bad-san --subject "/CN=x" --server $san
    expect_stderr_contains "${san#* }" "issue: bad value '$san' is named on stderr"
    expect_no_files "issue: bad value '$san' writes no file" bad-san
done

mkdir bad-csr-out
echo "-----BEGIN CERTIFICATE REQUEST-----
this is not base64 at all !!!
-----END CERTIFICATE REQUEST-----" >garbage.csr
expect_exit 1 "sign: garbage PEM as --csr exits 1" -- \
    "$TW" sign --ca ca --csr garbage.csr --out bad-csr-out/garbage.cert --client
expect_stderr_contains "garbage.csr" "sign: garbage CSR file is named on stderr"
expect_no_files "sign: garbage CSR writes no file" bad-csr-out

openssl req -in x.csr -outform DER -out x.der
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[-10] ^= 1
open(sys.argv[2], "wb").write(b)' x.der badsig.der
{ echo "-----BEGIN CERTIFICATE REQUEST-----"; base64 -w 64 badsig.der
  echo "-----END CERTIFICATE REQUEST-----"; } >badsig.csr
run openssl req -in badsig.csr -noout -verify
expect_stderr_contains "verify failure" "sign: setup, the flipped CSR fails openssl req -verify"
expect_exit 1 "sign: CSR with a bad signature exits 1" -- \
    "$TW" sign --ca ca --csr badsig.csr --out bad-csr-out/badsig.cert --client
expect_stderr_matches "signature .*does not verify" "sign: says the CSR signature does not verify"
expect_stderr_contains "badsig.csr" "sign: bad-signature CSR file is named on stderr"
expect_no_files "sign: bad-signature CSR writes no file" bad-csr-out

openssl req -new -key x.key -subj "/CN=evil" -addext "basicConstraints=critical,CA:TRUE" \
    -out catrue.csr >/dev/null 2>&1
expect_exit 1 "sign: CSR asking for CA:TRUE exits 1" -- \
    "$TW" sign --ca ca --csr catrue.csr --out bad-csr-out/catrue.cert --server
expect_stderr_contains "catrue.csr" "sign: CA:TRUE CSR file is named on stderr"
expect_no_files "sign: CA:TRUE CSR writes no file" bad-csr-out
expect_exit 1 "sign: missing CSR file exits 1" -- \
    "$TW" sign --ca ca --csr no-such.csr --out bad-csr-out/none.cert --client
expect_stderr_contains "no-such.csr" "sign: missing CSR file is named on stderr"

cut_in_half inv/cert.pem truncated.pem
expect_exit "1|3" "verify: truncated PEM exits 1 or 3, no crash" -- \
    "$TW" verify --ca ca/ca.cert.pem truncated.pem
expect_stderr_contains "truncated.pem" "verify: truncated PEM is named on stderr"
expect_exit 1 "inspect: truncated PEM exits 1" -- "$TW" inspect truncated.pem
expect_stderr_contains "truncated.pem" "inspect: truncated PEM is named on stderr"
expect_exit 1 "inspect: missing file exits 1" -- "$TW" inspect no-such.pem
expect_stderr_contains "no-such.pem" "inspect: missing file is named on stderr"
expect_exit 1 "inspect: a key file (no certificate) exits 1" -- "$TW" inspect x.key
expect_stderr_contains "x.key" "inspect: key file is named on stderr"
cut_in_half ca/ca.cert.pem truncated-ca.pem
expect_exit 1 "verify: truncated --ca file exits 1" -- \
    "$TW" verify --ca truncated-ca.pem inv/cert.pem
expect_stderr_contains "truncated-ca.pem" "verify: truncated --ca file is named on stderr"

expect_exit 1 "issue: missing CA dir exits 1" -- \
    "$TW" issue --ca no-such-ca --out bad-noca-out --subject "/CN=x" --server
expect_stderr_contains "no-such-ca" "issue: missing CA dir is named on stderr"
expect_no_files "issue: missing CA dir writes no file" bad-noca-out
expect_absent "issue: missing CA dir is not created" no-such-ca
for cmd in "sign --csr x.csr --out bad-noca.cert --client" "revoke --serial 01" \
    "crl --out bad-noca-crl.pem" "list"; do
    # shellcheck disable=SC2086  # word splitting of $cmd is wanted
    expect_exit 1 "${cmd%% *}: missing CA dir exits 1" -- "$TW" $cmd --ca no-such-ca
    expect_stderr_contains "no-such-ca" "${cmd%% *}: missing CA dir is named on stderr"
done
expect_absent "sign: missing CA dir writes no certificate" bad-noca.cert
expect_absent "crl: missing CA dir writes no CRL" bad-noca-crl.pem

# Unwritable output.  Root ignores mode bits, so the portable case is a path
# whose parent is a regular file; the chmod case runs only for other users.
echo "a file" >afile
expect_exit 1 "issue: OUTDIR under a regular file exits 1" -- \
    "$TW" issue --ca ca --out afile/sub --subject "/CN=x" --server
expect_stderr_contains "afile/sub" "issue: unwritable OUTDIR is named on stderr"
expect_exit 1 "sign: --out under a regular file exits 1" -- \
    "$TW" sign --ca ca --csr x.csr --out afile/x.cert --client
expect_stderr_contains "afile/x.cert" "sign: unwritable --out is named on stderr"
expect_exit 1 "crl: --out under a regular file exits 1" -- "$TW" crl --ca ca --out afile/crl.pem
expect_stderr_contains "afile/crl.pem" "crl: unwritable --out is named on stderr"
expect_exit 1 "init: DIR under a regular file exits 1" -- "$TW" init afile/ca
expect_stderr_contains "afile/ca" "init: unwritable DIR is named on stderr"
expect_eq "unwritable output: the regular file is untouched" "a file" "$(cat afile)"
if [ "$(id -u)" -ne 0 ]; then
    mkdir ro && chmod 500 ro
    expect_exit 1 "issue: read-only OUTDIR exits 1" -- \
        "$TW" issue --ca ca --out ro --subject "/CN=x" --server
    expect_stderr_contains "ro" "issue: read-only OUTDIR is named on stderr"
    expect_no_files "issue: read-only OUTDIR gets no file" ro
fi

count_after=$(db_count)
if [[ "$count_before" =~ ^[0-9]+$ ]] && [ "$count_before" = "$count_after" ]; then
    ok "bad input: refused commands added no certificate to ca.db"
else fail "bad input: refused commands added no certificate to ca.db" \
    "entries before: $count_before, after: $count_after"; fi

# ---- a busy index ------------------------------------------------------------
# Two bugs: a locked ca.db was reported as "not a twoway CA index: database is
# locked", and `issue --force` deleted the old key.pem and cert.pem before it
# took the index's lock, so a busy index (or any later failure) left the
# service with neither.

# hold_index MODE: a python3 process holds ca/ca.db with BEGIN MODE until
# release_index: IMMEDIATE lets others read but not write, EXCLUSIVE lets
# them not even read, DEFERRED plus a read keeps a reader that a COMMIT must
# wait for.  Returns once the lock is held (python3 may take a second to
# start on a busy machine); $HOLDER is its pid.
hold_index() {
    rm -f .held
    python3 -c 'import sqlite3, sys, time
db = sqlite3.connect("ca/ca.db", isolation_level=None, timeout=0)
db.execute("BEGIN " + sys.argv[1])
db.execute("SELECT count(*) FROM meta").fetchall()
open(".held", "w").close()
time.sleep(60)' "$1" 2>/dev/null &
    HOLDER=$!
    for _ in $(seq 1 100); do
        [ -e .held ] && return 0
        sleep 0.1
    done
    return 1
}
release_index() { kill "$HOLDER" 2>/dev/null; wait "$HOLDER" 2>/dev/null; }
busy_msg() { echo "ca/ca.db is busy: another twoway-ca command holds it (waited $1 s); try again"; }

if hold_index EXCLUSIVE; then ok "busy index: setup, ca/ca.db locked (BEGIN EXCLUSIVE)"
else fail "busy index: setup, ca/ca.db locked (BEGIN EXCLUSIVE)" "python3 did not get the lock"; fi
started=$(date +%s)
expect_exit 4 "list with a locked index exits 4 (busy)" -- "$TW" list --ca ca
waited=$(($(date +%s) - started))
release_index
expect_stderr_contains "twoway-ca list: $(busy_msg 5)" \
    "list with a locked index says it is busy, not 'not an index'"
if [ "$waited" -ge 4 ] && [ "$waited" -le 30 ]; then ok "list with a locked index waits about 5 s"
else fail "list with a locked index waits about 5 s" "gave up after $waited s"; fi

cp -r inv inv-locked
locked_sum=$(digests inv-locked/key.pem inv-locked/cert.pem inv-locked/ca.cert.pem)
count_locked=$(db_count)
for lock in IMMEDIATE DEFERRED; do
    # IMMEDIATE makes BEGIN wait; DEFERRED (a reader) makes COMMIT wait.
    # TWOWAY_CA_BUSY_TIMEOUT=1: the 5 s default was waited for above.
    if hold_index "$lock"; then ok "issue --force with a locked index ($lock): setup"
    else fail "issue --force with a locked index ($lock): setup" "python3 did not get the lock"; fi
    expect_exit 4 "issue --force with a locked index ($lock) keeps the old pair: exit 4" -- \
        env TWOWAY_CA_BUSY_TIMEOUT=1 "$TW" issue --ca ca --out inv-locked \
        --subject "/CN=localhost/O=InvoiceServer" --server --force
    release_index
    expect_stderr_contains "twoway-ca issue: $(busy_msg 1)" \
        "issue --force with a locked index ($lock) says the index is busy"
    expect_unchanged "issue --force with a locked index ($lock) keeps the old pair byte for byte" \
        "$locked_sum" "$(digests inv-locked/key.pem inv-locked/cert.pem inv-locked/ca.cert.pem)"
    expect_key_matches "issue --force with a locked index ($lock): the old key still matches" \
        inv-locked/cert.pem inv-locked/key.pem
    expect_eq "issue --force with a locked index ($lock) leaves no temp file" \
        "ca.cert.pem cert.pem key.pem" "$(files_in inv-locked)"
done
expect_eq "issue --force with a locked index records no certificate" "$count_locked" "$(db_count)"

expect_exit 0 "issue --force with a free index replaces the pair" -- \
    "$TW" issue --ca ca --out inv-locked --subject "/CN=localhost/O=InvoiceServer" --server --force
if ! cmp -s inv/key.pem inv-locked/key.pem && ! cmp -s inv/cert.pem inv-locked/cert.pem; then
    ok "issue --force replaces both key.pem and cert.pem"
else fail "issue --force replaces both key.pem and cert.pem" "key.pem or cert.pem unchanged"; fi
expect_key_matches "issue --force: the new key matches the new certificate" \
    inv-locked/cert.pem inv-locked/key.pem
expect_mode "issue --force: the new key.pem has mode 600" 600 inv-locked/key.pem
expect_same_file "issue --force: ca.cert.pem is the CA certificate" \
    inv-locked/ca.cert.pem ca/ca.cert.pem
expect_eq "issue --force: OUTDIR holds exactly the three files (no temp files)" \
    "ca.cert.pem cert.pem key.pem" "$(files_in inv-locked)"

if hold_index IMMEDIATE; then ok "busy index: setup, a lock released after 1 s"
else fail "busy index: setup, a lock released after 1 s" "python3 did not get the lock"; fi
(sleep 1; kill "$HOLDER" 2>/dev/null) &
expect_exit 0 "issue waits for a lock released within 5 s" -- \
    "$TW" issue --ca ca --out waited --subject "/CN=waited" --client
wait
expect_exit 2 "a TWOWAY_CA_BUSY_TIMEOUT that is not a number of seconds exits 2" -- \
    env TWOWAY_CA_BUSY_TIMEOUT=5s "$TW" list --ca ca
expect_stderr_contains "TWOWAY_CA_BUSY_TIMEOUT='5s' is not a number of seconds from 0 to 3600" \
    "a bad TWOWAY_CA_BUSY_TIMEOUT is named on stderr"

mkdir notidx && cp ca/ca.cert.pem ca/ca.key.pem notidx/
echo "this file is not a database" >notidx/ca.db
expect_exit 1 "list with a file that is not an index exits 1" -- "$TW" list --ca notidx
expect_stderr_contains "notidx/ca.db is not a twoway CA index: file is not a database" \
    "list with a file that is not an index still says 'not a twoway CA index'"
rm notidx/ca.db
python3 -c 'import sqlite3; sqlite3.connect("notidx/ca.db").execute("CREATE TABLE t (x)")'
expect_exit 1 "issue with an SQLite file that is not an index exits 1" -- \
    "$TW" issue --ca notidx --out notidx-out --subject "/CN=x" --client
expect_stderr_contains "notidx/ca.db is not a twoway CA index: no such table: meta" \
    "issue with an SQLite file that is not an index says 'not a twoway CA index'"
expect_no_files "issue with a file that is not an index writes no file" notidx-out

fi # PART 1
[ "$PART" = 1 ] && finish

# PART 2 -----------------------------------------------------------------------

# ---- --lifetime --------------------------------------------------------------

"$TW" init life >/dev/null 2>&1
# seconds NAME CERT: notAfter - notBefore and notAfter - now, in seconds.
validity_seconds() {
    local nb na
    nb=$(openssl x509 -noout -startdate -in "$1" 2>/dev/null | sed 's/^notBefore=//')
    na=$(openssl x509 -noout -enddate -in "$1" 2>/dev/null | sed 's/^notAfter=//')
    if [ -n "$nb" ] && [ -n "$na" ]; then
        echo "$(($(date -d "$na" +%s) - $(date -d "$nb" +%s))) $(($(date -d "$na" +%s) - $(date +%s)))"
    else echo "unreadable"; fi
}
expect_exit 0 "issue --lifetime 90s: exit 0" -- \
    "$TW" issue --ca life --out life90 --subject "/CN=short" --client --lifetime 90s
read -r span left <<<"$(validity_seconds life90/cert.pem)"
expect_eq "issue --lifetime 90s: notAfter - notBefore is 90 s plus the minute of back-dating" \
    150 "$span"
if [ -n "${left:-}" ] && [ "$left" -ge 75 ] && [ "$left" -le 90 ]; then
    ok "issue --lifetime 90s: notAfter is 90 s from now"
else fail "issue --lifetime 90s: notAfter is 90 s from now" "${left:-?} s left"; fi
openssl req -out life.csr -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout life.key -subj "/CN=signed-short" >/dev/null 2>&1
expect_exit 0 "sign --lifetime 15m: exit 0" -- \
    "$TW" sign --ca life --csr life.csr --out life15.cert --client --lifetime 15m
read -r span left <<<"$(validity_seconds life15.cert)"
expect_eq "sign --lifetime 15m: notAfter - notBefore is 900 s plus 60" 960 "$span"
expect_exit 0 "issue --lifetime 30d: exit 0" -- \
    "$TW" issue --ca life --out life30d --subject "/CN=month" --client --lifetime 30d
expect_days "issue --lifetime 30d: valid 30 days" life30d/cert.pem 29 30
life_sums=$(ca_sums life)
expect_exit 2 "issue --lifetime with --days: usage error (exit 2)" -- \
    "$TW" issue --ca life --out life-both --subject "/CN=both" --client --lifetime 1h --days 3
expect_stderr_contains "give --days or --lifetime, not both" \
    "issue --lifetime with --days: says to give one"
expect_exit 2 "sign --days with --lifetime: usage error (exit 2)" -- \
    "$TW" sign --ca life --csr life.csr --out life-both.cert --client --days 3 --lifetime 1h
for bad in 90 59s 10x 1.5h -5m "" 1h30m 99999999999999d; do
    expect_exit 2 "issue --lifetime '$bad': usage error (exit 2)" -- \
        "$TW" issue --ca life --out life-bad --subject "/CN=bad" --client --lifetime "$bad"
    expect_stderr_contains "--lifetime '$bad' is not a duration" \
        "issue --lifetime '$bad': names the option and the value"
done
expect_no_files "bad --lifetime: writes no file" life-bad
expect_unchanged "bad --lifetime: the CA index is unchanged" "$life_sums" "$(ca_sums life)"

# ---- the audit log -------------------------------------------------------------

# life/ so far: issue, sign, issue.  Then a revocation.
life90_serial=$(ossl_serial life90/cert.pem)
expect_exit 0 "audit: revoke for the audit log" -- "$TW" revoke --ca life --serial "$life90_serial"
expect_stdout_contains "revoked $(printf %s "$life90_serial" | sed 's/^\(.\(..\)*\)$/0\1/')" \
    "revoke: prints the serial as the index holds it (whole bytes)"
# A serial with its leading zeros, lower case and 0x: the same serial.
"$TW" issue --ca life --out life-lz --subject "/CN=lz" --client >/dev/null 2>&1
lz_serial=$(ossl_serial life-lz/cert.pem)
expect_exit 0 "revoke --serial: 0x, extra leading zeros and lower case find the serial" -- \
    "$TW" revoke --ca life --serial "0x000$(printf %s "$lz_serial" | tr 'A-F' 'a-f')"
expect_mode "audit: audit.log has mode 600" 600 life/audit.log
expect_eq "audit: one line per issue, sign and revoke" "6" "$(wc -l <life/audit.log)"
python3 - life/audit.log "$(id -un)" "$life90_serial" "$(ossl_serial life15.cert)" \
    >audit-check.txt 2>&1 <<'EOF'
import json, re, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
user, revoked, signed = sys.argv[2], sys.argv[3], sys.argv[4]
print("actions", " ".join(e["action"] for e in lines))
print("keys", all(list(e) == ["time", "action", "serial", "subject", "by", "peer"] for e in lines))
print("times", all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["time"]) for e in lines))
print("by", all(e["by"] == "cli:" + user for e in lines))
print("peer", all(e["peer"] is None for e in lines))
print("serials", lines[0]["serial"].lstrip("0") == revoked and lines[3]["serial"].lstrip("0") == revoked
      and lines[1]["serial"].lstrip("0") == signed)
print("subjects", [e["subject"] for e in lines])
EOF
expect_file_has audit-check.txt "actions issue sign issue revoke issue revoke" "audit: the actions in order"
expect_file_has audit-check.txt "keys True" "audit: every line has time, action, serial, subject, by, peer"
expect_file_has audit-check.txt "times True" "audit: time is RFC 3339 UTC"
expect_file_has audit-check.txt "by True" "audit: by is cli:USER"
expect_file_has audit-check.txt "peer True" "audit: peer is null for the CLI"
expect_file_has audit-check.txt "serials True" "audit: the serials are the certificates'"
expect_file_has audit-check.txt "subjects ['/CN=short', '/CN=signed-short', '/CN=month', '/CN=short', '/CN=lz', '/CN=lz']" \
    "audit: the subjects are the certificates'"
"$TW" init audfail >/dev/null 2>&1
mkdir audfail/audit.log # a directory: no line can be appended
expect_exit 1 "audit: a failed audit write after the commit exits 1" -- \
    "$TW" issue --ca audfail --out audfail-out --subject "/CN=unlogged" --client
expect_stderr_contains "is recorded in the index but not in the audit log" \
    "audit: says the certificate was issued but not logged"
expect_eq "audit: the certificate is in the index all the same" "1" \
    "$("$TW" list --ca audfail --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>&1)"
if [ -s audfail-out/cert.pem ]; then ok "audit: the certificate files are written all the same"
else fail "audit: the certificate files are written all the same" "no audfail-out/cert.pem"; fi

# ---- token and list --tokens ------------------------------------------------------

"$TW" init tok >/dev/null 2>&1
expect_exit 0 "token: exit 0" -- "$TW" token --ca tok --subject "/CN=mail/O=MailServer" \
    --server --client --dns mail.example.com --ip 10.0.0.1 --uri spiffe://abc/mail --lifetime 24h
tok1=$(cat "$OUT")
if [ "$(wc -l <"$OUT")" -eq 1 ] && [[ "$tok1" =~ ^[A-Za-z0-9_-]{43}$ ]]; then
    ok "token: prints one line of 43 base64url characters"
else fail "token: prints one line of 43 base64url characters" "stdout: $(head -c 200 "$OUT")"; fi
expect_eq "token: prints nothing on stderr" "" "$(cat "$ERR")"
expect_exit 0 "token: a second token, --client, default --ttl" -- \
    "$TW" token --ca tok --subject "/CN=invoice" --client
tok2=$(cat "$OUT")
if [ -n "$tok1" ] && [ "$tok1" != "$tok2" ]; then ok "token: two tokens differ"
else fail "token: two tokens differ" "'$tok1' and '$tok2'"; fi
hash1=$(printf %s "$tok1" | sha256sum | cut -c1-64)
hash2=$(printf %s "$tok2" | sha256sum | cut -c1-64)
expect_exit 0 "list --tokens: exit 0" -- "$TW" list --ca tok --tokens
cp "$OUT" tokens.txt
if grep -qE '^HASH +SUBJECT +SANS +PURPOSE +LIFETIME +EXPIRES' tokens.txt; then
    ok "list --tokens: header names the columns"
else fail "list --tokens: header names the columns" "first line: $(head -1 tokens.txt)"; fi
row=$(grep "^${hash1:0:12} " tokens.txt)
if [[ "$row" == *"/CN=mail/O=MailServer"* && "$row" == *"DNS:mail.example.com,IP:10.0.0.1,URI:spiffe://abc/mail"* &&
      "$row" == *server+client* && "$row" == *" 1d "* ]]; then
    ok "list --tokens: shows a token by its hash prefix, with subject, names, purpose, lifetime"
else fail "list --tokens: shows a token by its hash prefix, with subject, names, purpose, lifetime" \
    "row: '$row'; list: $(cat tokens.txt)"; fi
row=$(grep "^${hash2:0:12} " tokens.txt)
if [[ "$row" == *"/CN=invoice"* && "$row" == *" client "* && "$row" == *default* ]]; then
    ok "list --tokens: a token without --lifetime shows lifetime default"
else fail "list --tokens: a token without --lifetime shows lifetime default" "row: '$row'"; fi
expect_exit 0 "list --tokens --json: exit 0" -- "$TW" list --ca tok --tokens --json
cp "$OUT" tokens.json
expect_eq "list --tokens --json: the documented keys" "True" "$(json tokens.json \
    'len(d) == 2 and all(set(e) == {"hash","subject","sans","purpose","lifetime","created_at","expires_at"} for e in d)')"
expect_eq "list --tokens --json: hash prefix, names as a list, lifetime in seconds" \
    "${hash1:0:12} ['DNS:mail.example.com', 'IP:10.0.0.1', 'URI:spiffe://abc/mail'] 86400 None" \
    "$(json tokens.json '" ".join([d[0]["hash"], str(d[0]["sans"]), str(d[0]["lifetime"]), str(d[1]["lifetime"])])')"
expect_eq "list --tokens --json: expires 1h after creation by default" "3600" "$(json tokens.json \
    '(lambda t: t(d[1]["expires_at"]) - t(d[1]["created_at"]))(lambda s: __import__("calendar").timegm(__import__("time").strptime(s, "%Y-%m-%dT%H:%M:%SZ")))')"
if ! cat tokens.txt tokens.json | grep -qF -e "$tok1" -e "$tok2"; then
    ok "list --tokens: never shows a token"
else fail "list --tokens: never shows a token" "a token is in the listing"; fi
if ! grep -qaF -e "$tok1" -e "$tok2" tok/ca.db; then ok "token: the token text is nowhere in ca.db"
else fail "token: the token text is nowhere in ca.db" "found in tok/ca.db"; fi
expect_eq "token: the index keeps the token's SHA-256" "2" "$(python3 -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(sum(1 for (h,) in db.execute("SELECT hash FROM tokens") if h in sys.argv[2:]))' \
    tok/ca.db "$hash1" "$hash2" 2>&1)"
expect_exit 0 "token: --ttl 30d is the maximum" -- "$TW" token --ca tok --subject "/CN=long" --client --ttl 30d
tok_sums=$(ca_sums tok)
for bad in 0s 59s 31d 1w soon ""; do
    expect_exit 2 "token --ttl '$bad': usage error (exit 2)" -- \
        "$TW" token --ca tok --subject "/CN=x" --client --ttl "$bad"
    expect_stderr_contains "--ttl '$bad' is not a duration" "token --ttl '$bad': names the option"
done
expect_exit 2 "token: without --server or --client is a usage error" -- \
    "$TW" token --ca tok --subject "/CN=x"
expect_exit 2 "token: without --subject is a usage error" -- "$TW" token --ca tok --client
expect_exit 2 "token: a bad subject is a usage error" -- "$TW" token --ca tok --subject "CN=x" --client
expect_exit 2 "token: a bad --dns name is a usage error, as for issue" -- \
    "$TW" token --ca tok --subject "/CN=x" --server --dns "bad name!"
expect_exit 2 "token: a bad --ip is a usage error" -- \
    "$TW" token --ca tok --subject "/CN=x" --server --ip 10.0.0.300
expect_exit 2 "token: a name with a comma is a usage error" -- \
    "$TW" token --ca tok --subject "/CN=x" --client --uri "https://a.example/x,y"
expect_eq "token: refused tokens print nothing on stdout" "" "$(cat "$OUT")"
expect_unchanged "token: refused tokens leave the index unchanged" "$tok_sums" "$(ca_sums tok)"
expect_exit 1 "token: no CA in DIR exits 1" -- "$TW" token --ca no-such-ca --subject "/CN=x" --client
# Used and expired tokens are not pending.
python3 -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE tokens SET used_at = 1 WHERE hash = ?", (sys.argv[2],))
db.execute("UPDATE tokens SET expires_at = 1000 WHERE hash = ?", (sys.argv[3],))
db.commit()' tok/ca.db "$hash1" "$hash2"
expect_exit 0 "list --tokens: after one was used and one expired" -- "$TW" list --ca tok --tokens --json
expect_eq "list --tokens: used and expired tokens are not listed" "['/CN=long']" \
    "$(json "$OUT" '[e["subject"] for e in d]')"

# ---- an index of schema 1 (twoway 0.1) ------------------------------------------

"$TW" init old >/dev/null 2>&1
"$TW" issue --ca old --out old-out --subject "/CN=before-upgrade" --client >/dev/null 2>&1
# Rebuild ca.db as twoway 0.1 wrote it: its schema, its rows.
python3 - old/ca.db <<'EOF'
import os, sqlite3, sys
path = sys.argv[1]
rows = sqlite3.connect(path).execute(
    "SELECT serial, subject, sans, purpose, not_before, not_after, fingerprint, pem,"
    " issued_at, revoked_at, revoke_reason FROM certs").fetchall()
os.rename(path, path + ".v2")
db = sqlite3.connect(path)
db.executescript("""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema', '1'), ('crl_number', '0');
CREATE TABLE certs ( serial TEXT PRIMARY KEY, subject TEXT NOT NULL, sans TEXT NOT NULL,
 purpose TEXT NOT NULL, not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,
 fingerprint TEXT NOT NULL, pem TEXT NOT NULL, issued_at INTEGER NOT NULL,
 revoked_at INTEGER, revoke_reason INTEGER);
""")
db.executemany("INSERT INTO certs VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
db.commit()
os.remove(path + ".v2")
EOF
schema_of() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT value FROM meta WHERE key=\"schema\"").fetchone()[0])' "$1" 2>&1; }
expect_eq "schema 1: the test index says schema 1" "1" "$(schema_of old/ca.db)"
expect_exit 0 "schema 1: list still works" -- "$TW" list --ca old
expect_stdout_contains "/CN=before-upgrade" "schema 1: list shows the certificate issued before"
expect_eq "schema 1: opening it upgrades it to schema 2" "2" "$(schema_of old/ca.db)"
expect_eq "schema 1: the upgrade adds the tokens table and certs.replaces" "True True" "$(python3 -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("SELECT count(*) FROM sqlite_master WHERE name=\"tokens\"").fetchone()[0] == 1,
      "replaces" in [r[1] for r in db.execute("PRAGMA table_info(certs)")])' old/ca.db 2>&1)"
expect_exit 0 "schema 1: issue after the upgrade" -- \
    "$TW" issue --ca old --out old-out2 --subject "/CN=after-upgrade" --client
expect_exit 0 "schema 1: token after the upgrade" -- "$TW" token --ca old --subject "/CN=x" --client
expect_exit 0 "schema 1: list after the upgrade" -- "$TW" list --ca old --json
expect_eq "schema 1: both certificates listed" "['/CN=before-upgrade', '/CN=after-upgrade']" \
    "$(json "$OUT" '[e["subject"] for e in d]')"
python3 -c 'import sqlite3,sys; db = sqlite3.connect(sys.argv[1]); db.execute("UPDATE meta SET value=\"7\" WHERE key=\"schema\""); db.commit()' old/ca.db
expect_exit 1 "schema: an unknown schema version exits 1" -- "$TW" list --ca old
expect_stderr_contains "has an unknown schema version" "schema: says the version is unknown"

# ---- concurrent use: parallel issues on one CA all succeed -----------------

"$TW" init par >/dev/null 2>&1
# Under Valgrind one transaction can take seconds: let the 30 wait longer
# than the default 5 s rather than report the index busy.
[ -n "${TW_WRAP:-}" ] && export TWOWAY_CA_BUSY_TIMEOUT=600
for i in $(seq 1 30); do
    ("$TW" issue --ca par --out "par-out/$i" --subject "/CN=p$i" --client >/dev/null \
        2>"par-$i.err"; echo $? >"par-$i.rc") &
done
wait
par_failed=$(grep -lv '^0$' par-*.rc 2>/dev/null | wc -l)
if [ "$par_failed" -eq 0 ]; then ok "concurrency: 30 parallel issues on one CA all succeed"
else fail "concurrency: 30 parallel issues on one CA all succeed" \
    "$par_failed failed, e.g.: $(cat par-*.err | head -1)"; fi
expect_exit 0 "concurrency: list --json after parallel issues" -- "$TW" list --ca par --json
cp "$OUT" par.json
expect_eq "concurrency: every successful issue is listed, serials distinct" \
    "$((30 - par_failed)) $((30 - par_failed))" "$(json par.json '"%d %d" % (len(d), len({e["serial"] for e in d}))')"
unset TWOWAY_CA_BUSY_TIMEOUT

# ---- 1000 certificates: serials are unique ---------------------------------

"$TW" init bulk >/dev/null 2>&1
bulk_failures=0 first_error=""
started=$(date +%s)
for i in $(seq 1 "$BULK"); do
    if ! timeout "$HANG" "$TW" issue --ca bulk --out "bulk-out/$i" --subject "/CN=host$i.example.com" \
        --client --key ec-p256 >/dev/null 2>"$ERR"; then
        bulk_failures=$((bulk_failures + 1))
        [ -z "$first_error" ] && first_error="#$i: $(head -c 200 "$ERR")"
        [ "$bulk_failures" -ge 10 ] && break # broken: don't spend a minute on it
    fi
done
echo "note: issuing $BULK certificates took $(($(date +%s) - started)) s"
expect_eq "bulk: $BULK issues succeed" "0" "$bulk_failures${first_error:+ ($first_error)}"

expect_exit 0 "bulk: list --json exit 0" -- "$TW" list --ca bulk --json
cp "$OUT" bulk.json
expect_eq "bulk: list --json has $BULK entries" "$BULK" "$(json bulk.json 'len(d)')"
expect_eq "bulk: $BULK distinct serials" "$BULK" "$(json bulk.json 'len({e["serial"] for e in d})')"
expect_eq "bulk: every serial is 32 upper-case hex digits, high bit clear" "True" "$(json bulk.json \
    'all(__import__("re").fullmatch("[0-7][0-9A-F]{31}", e["serial"]) for e in d)')"
expect_eq "bulk: every entry has status valid" "True" \
    "$(json bulk.json 'len(d) > 0 and all(e["status"] == "valid" for e in d)')"

cat bulk-out/*/cert.pem >bulk-all.pem 2>/dev/null
openssl crl2pkcs7 -nocrl -certfile bulk-all.pem 2>/dev/null |
    openssl pkcs7 -print_certs -text -noout 2>/dev/null |
    awk '/Serial Number:/ { getline; gsub(/[ :]/, ""); sub(/^0+/, ""); print toupper($0) }' |
    sort -u >bulk-cert-serials
json bulk.json '"\n".join(sorted({e["serial"].lstrip("0") for e in d}))' >bulk-list-serials
differ=$(diff bulk-list-serials bulk-cert-serials | grep -c '^[<>]')
if [ "$(wc -l <bulk-cert-serials)" -eq "$BULK" ] && [ "$differ" -eq 0 ]; then
    ok "bulk: the $BULK certificates carry the serials list shows"
else fail "bulk: the $BULK certificates carry the serials list shows" \
    "$(wc -l <bulk-cert-serials) serials in the files, $differ lines differ from list --json"; fi

expect_exit 0 "bulk: list (text) exit 0" -- "$TW" list --ca bulk
cp "$OUT" bulk.txt
expect_eq "bulk: text list shows every certificate with status valid" "0 missing" "$(
    python3 - bulk.json bulk.txt <<'EOF' 2>&1 | tail -1
import json, sys
serials = [e["serial"] for e in json.load(open(sys.argv[1]))]
rows = {line.split()[0]: line.split() for line in open(sys.argv[2]).read().splitlines()[1:] if line.strip()}
missing = [s for s in serials if "valid" not in rows.get(s, [])]
print(len(missing), "missing", *missing[:3])
EOF
)"

finish
