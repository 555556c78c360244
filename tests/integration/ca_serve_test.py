#!/usr/bin/env python3
"""ca_serve_test.py - twoway-ca serve, the online CA, with real processes:
twoway-ca itself, curl and openssl as clients.

    usage: ca_serve_test.py BUILD_DIR

Enrolment with a token and an `openssl req` CSR; one token used twice in a
row and by 20 concurrent requests gives exactly one certificate; renewal with
`curl --cert`; a revoked certificate cannot renew; `openssl crl -verify`
accepts /v1/crl, ETag and If-None-Match; a revocation through the API is in
the next /v1/crl; bad bodies are 400 naming the field; the audit log; a wrong
CA passphrase at start.  Every server runs on 127.0.0.1, port 0.
"""
import concurrent.futures
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

WRAP = os.environ.get("TW_WRAP", "").split()
SLOW = 6 if WRAP else 1
_passed = _failed = 0


def ok(name):
    global _passed
    _passed += 1
    print("ok   " + name, flush=True)


def fail(name, detail=""):
    global _failed
    _failed += 1
    print("FAIL " + name + (": " + str(detail)[:2000] if detail else ""), flush=True)


def check(name, cond, detail=""):
    if cond:
        ok(name)
    else:
        fail(name, detail)
    return cond


def run(cmd, input=None, timeout=60):
    try:
        p = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return 124, "", "timeout"


class Serve:
    """A twoway-ca serve process on 127.0.0.1:0."""

    def __init__(self, tw, tmp, name, args):
        self.log_path = os.path.join(tmp, name + ".log")
        self.log = open(self.log_path, "wb")
        env = dict(os.environ)
        if WRAP:  # transactions are slower under Valgrind: wait longer
            env["TWOWAY_CA_BUSY_TIMEOUT"] = "600"
        self.proc = subprocess.Popen(WRAP + [tw, "serve", "--listen", "127.0.0.1:0",
                                             "--workers", "2"] + args,
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.port = None
        deadline = time.monotonic() + 20 * SLOW
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"listening on https://127\.0\.0\.1:(\d+)/", self.text())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.02)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def url(self, path):
        return "https://localhost:%d%s" % (self.port, path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def curl(srv, ca, path, data=None, cert=None, key=None, headers=(), out=None):
    """(status, body bytes, headers text) of one request with curl."""
    cmd = ["curl", "-sS", "--max-time", str(20 * SLOW), "--cacert", ca,
           "--resolve", "localhost:%d:127.0.0.1" % srv.port, "-D", "-",
           "-o", out or "-"]
    if cert:
        cmd += ["--cert", cert, "--key", key]
    for h in headers:
        cmd += ["-H", h]
    if data is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    p = subprocess.run(cmd + [srv.url(path)], input=data.encode() if isinstance(data, str) else data,
                       capture_output=True, timeout=30 * SLOW)
    raw = p.stdout
    head, _, body = raw.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, body = body.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d+)", head)
    return (int(m.group(1)) if m else None), body, head.decode("latin-1")


def csr(tmp, name, subject, sans=None, key=None, ca_true=False):
    """(key path, CSR PEM) made with openssl req."""
    key = key or os.path.join(tmp, name + ".key")
    path = os.path.join(tmp, name + ".csr")
    cmd = ["openssl", "req", "-new", "-subj", subject, "-out", path]
    if os.path.exists(key):
        cmd += ["-key", key]
    else:
        cmd += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key]
    if sans:
        cmd += ["-addext", "subjectAltName=" + sans]
    if ca_true:
        cmd += ["-addext", "basicConstraints=critical,CA:TRUE"]
    rc, out, err = run(cmd)
    if rc != 0:
        raise RuntimeError("openssl req: " + err)
    with open(path) as f:
        return key, f.read()


def token(tw, ca_dir, subject, *args):
    rc, out, err = run([tw, "token", "--ca", ca_dir, "--subject", subject] + list(args))
    if rc != 0:
        raise RuntimeError("twoway-ca token: " + err)
    return out.strip()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def main():
    if len(sys.argv) != 2:
        print("usage: ca_serve_test.py BUILD_DIR", file=sys.stderr)
        return 2
    tw = os.path.join(os.path.abspath(sys.argv[1]), "src/ca/twoway-ca")
    tmp = tempfile.mkdtemp(prefix="twoway-serve-test.")
    started = time.monotonic()
    srv = None
    try:
        ca_dir = os.path.join(tmp, "ca")
        rc, out, err = run([tw, "init", ca_dir, "--subject", "/O=ABC Inc./CN=ABC Root"])
        if not check("setup: twoway-ca init", rc == 0, err):
            return 1
        ca = os.path.join(ca_dir, "ca.cert.pem")
        admin = os.path.join(tmp, "admin")
        rc, out, err = run([tw, "issue", "--ca", ca_dir, "--out", admin,
                            "--subject", "/CN=ops/O=ABC Inc.", "--client"])
        check("setup: an admin client certificate", rc == 0, err)
        admin_cert, admin_key = os.path.join(admin, "cert.pem"), os.path.join(admin, "key.pem")
        srv = Serve(tw, tmp, "serve", ["--ca", ca_dir, "--allow", "admin CN=ops",
                                       "--allow", "metrics CN=ops",
                                       "--default-lifetime", "1h", "--max-lifetime", "2h"])
        if not check("serve starts and says where it listens", srv.port is not None, srv.text()):
            return 1

        # --- the CA and its CRL, without a client certificate
        st, body, _ = curl(srv, ca, "/v1/ca")
        with open(ca, "rb") as f:
            check("GET /v1/ca is the CA certificate (no client certificate needed)",
                  st == 200 and body == f.read(), "%s %r" % (st, body[:80]))
        crl_pem = os.path.join(tmp, "crl.pem")
        st, body, head = curl(srv, ca, "/v1/crl", out=crl_pem)
        rc, out, err = run(["openssl", "crl", "-in", crl_pem, "-noout", "-verify", "-CAfile", ca])
        check("GET /v1/crl: openssl crl -verify -CAfile accepts it",
              st == 200 and rc == 0 and "verify OK" in (out + err), "%s %s %s" % (st, out, err))
        etag = re.search(r"(?im)^etag: *(\S+)", head)
        st2, _, _ = curl(srv, ca, "/v1/crl", headers=["If-None-Match: " + (etag.group(1) if etag else "x")])
        check("GET /v1/crl with If-None-Match of its ETag: 304", etag and st2 == 304, head)
        der = os.path.join(tmp, "crl.der")
        st, _, head = curl(srv, ca, "/v1/crl", headers=["Accept: application/pkix-crl"], out=der)
        rc, out, err = run(["openssl", "crl", "-inform", "DER", "-in", der, "-noout", "-verify", "-CAfile", ca])
        check("GET /v1/crl with Accept: application/pkix-crl is DER",
              st == 200 and rc == 0 and "application/pkix-crl" in head, head + err)

        # --- enrolment
        t = token(tw, ca_dir, "/CN=mail/O=MailServer", "--client", "--dns", "mail.local")
        check("twoway-ca token prints 43 base64url characters",
              re.fullmatch(r"[A-Za-z0-9_-]{43}", t) is not None, t)
        key, req = csr(tmp, "mail", "/CN=mail/O=MailServer", "DNS:mail.local")
        st, body, _ = curl(srv, ca, "/v1/enroll", json.dumps({"token": t, "csr": req}))
        j = json.loads(body or b"{}") if st == 201 else {}
        mail_cert = write(os.path.join(tmp, "mail.cert.pem"), j.get("certificate", ""))
        rc, out, err = run(["openssl", "x509", "-in", mail_cert, "-noout", "-subject", "-ext",
                            "subjectAltName,extendedKeyUsage"])
        check("POST /v1/enroll with a token and an openssl req CSR: 201 with the certificate",
              st == 201 and "CN = mail" in out and "mail.local" in out and
              "TLS Web Client Authentication" in out and j.get("serial") and
              j.get("not_after") and "BEGIN CERTIFICATE" in j.get("chain", ""), "%s %s %s" % (st, body[:300], out))
        rc, out, err = run(["openssl", "verify", "-CAfile", ca, mail_cert])
        check("the enrolled certificate verifies against the CA", rc == 0, out + err)
        st, body, _ = curl(srv, ca, "/v1/enroll", json.dumps({"token": t, "csr": req}))
        check("the same token again: 403 token_used",
              st == 403 and json.loads(body).get("reason") == "token_used", body)
        st, body, _ = curl(srv, ca, "/v1/enroll", json.dumps({"token": "A" * 43, "csr": req}))
        check("an unknown token: 403 token_unknown",
              st == 403 and json.loads(body).get("reason") == "token_unknown", body)
        t2 = token(tw, ca_dir, "/CN=web/O=Web", "--server", "--dns", "web.local", "--ttl", "60s")
        db = sqlite3.connect(os.path.join(ca_dir, "ca.db"))
        db.execute("UPDATE tokens SET expires_at = 1 WHERE used_at IS NULL")
        db.commit()
        db.close()
        _, wreq = csr(tmp, "web", "/CN=web/O=Web", "DNS:web.local")
        st, body, _ = curl(srv, ca, "/v1/enroll", json.dumps({"token": t2, "csr": wreq}))
        check("an expired token: 403 token_expired",
              st == 403 and json.loads(body).get("reason") == "token_expired", body)

        # --- one token, 20 concurrent requests: one certificate
        t3 = token(tw, ca_dir, "/CN=race/O=Race", "--client")
        _, rreq = csr(tmp, "race", "/CN=race/O=Race")
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda _: curl(srv, ca, "/v1/enroll",
                                                   json.dumps({"token": t3, "csr": rreq}))[0],
                                    range(20)))
        check("one token by 20 concurrent requests gives exactly one certificate (201 once, 403 else)",
              results.count(201) == 1 and results.count(403) == 19, results)

        # --- bad bodies: 400 naming the field, nothing written
        t4 = token(tw, ca_dir, "/CN=bad/O=Bad", "--client", "--dns", "bad.local")
        for name, data, reason in [
                ("malformed JSON", "{not json", "body"),
                ("no csr", json.dumps({"token": t4}), "csr"),
                ("a token of the wrong length", json.dumps({"token": "abc", "csr": req}), "token"),
                ("a body that is not a CSR", json.dumps({"token": t4, "csr": "hello"}), "csr"),
                ("a CSR asking for CA:TRUE",
                 json.dumps({"token": t4, "csr": csr(tmp, "catrue", "/CN=bad/O=Bad", "DNS:bad.local", ca_true=True)[1]}), "csr"),
                ("a CSR naming another subject",
                 json.dumps({"token": t4, "csr": csr(tmp, "other", "/CN=evil/O=Bad", "DNS:bad.local")[1]}), "csr"),
                ("a CSR asking for a name the token does not allow",
                 json.dumps({"token": t4, "csr": csr(tmp, "more", "/CN=bad/O=Bad", "DNS:bad.local,DNS:evil.local")[1]}), "csr")]:
            st, body, _ = curl(srv, ca, "/v1/enroll", data)
            try:
                j = json.loads(body)
            except ValueError:
                j = {}
            check("enroll with %s: 400 reason %s" % (name, reason),
                  st == 400 and j.get("reason") == reason and j.get("message"), "%s %s" % (st, body))
        st, body, _ = curl(srv, ca, "/v1/enroll", json.dumps({"token": t4, "csr": csr(tmp, "good", "/CN=bad/O=Bad", "DNS:bad.local")[1]}))
        check("after those refusals the token is still unused and gives its certificate", st == 201, body)
        st, body, _ = curl(srv, ca, "/v1/enroll", "x" * (80 * 1024))
        check("an oversized body: 413", st == 413, "%s %s" % (st, body[:200]))

        # --- renewal over mTLS
        key2, req2 = csr(tmp, "mail2", "/CN=whatever")
        st, body, _ = curl(srv, ca, "/v1/renew", json.dumps({"csr": req2, "lifetime": "30m"}),
                           cert=mail_cert, key=key)
        j = json.loads(body or b"{}") if st == 201 else {}
        new_cert = write(os.path.join(tmp, "mail.new.pem"), j.get("certificate", ""))
        rc, out, err = run(["openssl", "x509", "-in", new_cert, "-noout", "-subject", "-ext",
                            "subjectAltName", "-dates"])
        check("POST /v1/renew with curl --cert: 201, same subject and names, new certificate",
              st == 201 and "CN = mail" in out and "mail.local" in out, "%s %s %s" % (st, body[:300], out))
        m = re.search(r"notBefore=(.*)\nnotAfter=(.*)", out)
        if m:
            nb = time.mktime(time.strptime(m.group(1).strip(), "%b %d %H:%M:%S %Y %Z"))
            na = time.mktime(time.strptime(m.group(2).strip(), "%b %d %H:%M:%S %Y %Z"))
            check("the renewal got the lifetime it asked for (30m)", 1700 <= na - nb <= 1900, na - nb)
        st, body, _ = curl(srv, ca, "/v1/renew", json.dumps({"csr": req}), cert=mail_cert, key=key)
        check("renew with the same key: 400 key_reused",
              st == 400 and json.loads(body).get("reason") == "key_reused", body)
        st, body, _ = curl(srv, ca, "/v1/renew", json.dumps({"csr": req2}))
        check("renew without a client certificate: 403 no_certificate",
              st == 403 and json.loads(body).get("reason") == "no_certificate", body)
        db = sqlite3.connect(os.path.join(ca_dir, "ca.db"))
        replaces = db.execute("SELECT replaces FROM certs WHERE serial = ?",
                              (j.get("serial", "?"),)).fetchone()
        db.close()
        check("the index records which serial the renewal replaces",
              replaces is not None and replaces[0] is not None, replaces)

        # --- revocation through the API, then the CRL and renewals know it
        mail_serial = subprocess.run(["openssl", "x509", "-in", mail_cert, "-noout", "-serial"],
                                     capture_output=True, text=True).stdout.strip().split("=")[-1]
        st, body, _ = curl(srv, ca, "/v1/revoke", json.dumps({"serial": mail_serial, "reason": "keyCompromise"}),
                           cert=mail_cert, key=key)
        check("POST /v1/revoke without the admin role: 403", st == 403, body)
        st, body, _ = curl(srv, ca, "/v1/revoke", json.dumps({"serial": mail_serial, "reason": "keyCompromise"}),
                           cert=admin_cert, key=admin_key)
        check("POST /v1/revoke by an admin: 200", st == 200, body)
        st, body, _ = curl(srv, ca, "/v1/revoke", json.dumps({"serial": mail_serial}),
                           cert=admin_cert, key=admin_key)
        check("revoking it again: 409 already_revoked",
              st == 409 and json.loads(body).get("reason") == "already_revoked", body)
        st, body, _ = curl(srv, ca, "/v1/crl", out=crl_pem)
        rc, out, err = run(["openssl", "crl", "-in", crl_pem, "-noout", "-text"])
        check("the revocation is in the next /v1/crl", st == 200 and mail_serial.upper() in out.upper(), out[:600])
        key3, req3 = csr(tmp, "mail3", "/CN=x")
        st, body, _ = curl(srv, ca, "/v1/renew", json.dumps({"csr": req3}), cert=mail_cert, key=key)
        check("a revoked certificate cannot renew: 403 revoked",
              st == 403 and json.loads(body).get("reason") == "revoked", body)

        # --- metrics and the audit log
        st, body, _ = curl(srv, ca, "/metrics", cert=admin_cert, key=admin_key)
        text = body.decode()
        check("GET /metrics (role metrics): issued, enrolled, renewed, refused by reason, tokens, CRL",
              st == 200 and re.search(r"^twoway_ca_enrolled_total [1-9]", text, re.M) and
              re.search(r"^twoway_ca_renewed_total [1-9]", text, re.M) and
              'twoway_ca_refused_total{reason="token_used"}' in text and
              "twoway_ca_tokens_pending" in text and
              re.search(r"^twoway_ca_crl_number [1-9]", text, re.M), text[:2000])
        audit = os.path.join(ca_dir, "audit.log")
        with open(audit) as f:
            lines = [json.loads(x) for x in f if x.strip()]
        actions = [x.get("action") for x in lines]
        check("the audit log has a JSON line per issuance, renewal and revocation",
              "enroll" in actions and "renew" in actions and "revoke" in actions and
              all(x.get("time") and x.get("serial") and x.get("by") for x in lines), actions)
        check("the audit log is mode 0600", oct(os.stat(audit).st_mode & 0o777) == "0o600",
              oct(os.stat(audit).st_mode))
        check("SIGTERM: serve exits 0", srv.stop() == 0, srv.text()[-500:])
        srv = None

        # --- two serve processes on one CA directory: the index decides
        a = Serve(tw, tmp, "serve-a", ["--ca", ca_dir])
        b = Serve(tw, tmp, "serve-b", ["--ca", ca_dir])
        try:
            if check("two serve processes start on one CA directory",
                     a.port is not None and b.port is not None, a.text() + b.text()):
                t5 = token(tw, ca_dir, "/CN=twice/O=Twice", "--client")
                _, req5 = csr(tmp, "twice", "/CN=twice/O=Twice")
                body5 = json.dumps({"token": t5, "csr": req5})
                with concurrent.futures.ThreadPoolExecutor(10) as pool:
                    got = list(pool.map(lambda i: curl(a if i % 2 else b, ca, "/v1/enroll", body5)[0],
                                        range(10)))
                check("a token sent to both processes at once gives one certificate",
                      got.count(201) == 1 and got.count(403) == 9, got)
        finally:
            a.stop()
            b.stop()

        # --- serve renews its own certificate at two thirds of its lifetime
        if os.environ.get("TW_QUICK") != "1":
            c = Serve(tw, tmp, "serve-short", ["--ca", ca_dir, "--default-lifetime", "90s"])
            try:
                def served_serial():
                    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % c.port,
                                        "-CAfile", ca, "-verify_return_error"],
                                       input=b"", capture_output=True, timeout=20 * SLOW)
                    pem = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                                    r.stdout, re.S)
                    if pem is None:
                        return None
                    x = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem.group(0),
                                       capture_output=True)
                    return x.stdout.strip()
                first = served_serial()
                deadline = time.monotonic() + 120 * SLOW
                later = first
                while time.monotonic() < deadline and later == first:
                    time.sleep(2)
                    later = served_serial()
                check("serve renews its own 90s certificate by itself (a new serial is served, "
                      "checked with openssl s_client)",
                      first is not None and later is not None and later != first and
                      "server certificate renewed" in c.text(), "%r %r %s" % (first, later, c.text()[-600:]))
            finally:
                c.stop()

        # --- a wrong CA passphrase at start
        enc = os.path.join(tmp, "enc")
        write(os.path.join(tmp, "pass"), "right horse\n")
        write(os.path.join(tmp, "wrong"), "wrong horse\n")
        run([tw, "init", enc, "--passphrase-file", os.path.join(tmp, "pass")])
        rc, out, err = run([tw, "serve", "--ca", enc, "--listen", "127.0.0.1:0",
                            "--passphrase-file", os.path.join(tmp, "wrong")], timeout=20)
        check("serve with a wrong CA passphrase: exit 1 and a clear error",
              rc == 1 and "passphrase" in err, "%d %s" % (rc, err))
    except Exception as e:  # noqa: BLE001
        fail("unexpected error", "%s: %s" % (type(e).__name__, e))
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("# %d s" % (time.monotonic() - started))
    print("%d passed, %d failed" % (_passed, _failed))
    return 1 if _failed else 0


if __name__ == "__main__":
    sys.exit(main())
