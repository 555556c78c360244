#!/usr/bin/env python3
"""renewal_test.py - certificates that renew themselves (issue 12), with real
processes: twoway-ca serve, invoice-server and mail-server, clients in
Python's ssl module and `openssl s_client`.

    usage: renewal_test.py BUILD_DIR

- invoice-server --enroll makes its key (0600) and certificate on the first
  start, from a one-time token; mail-server fetch --enroll does the same;
- a one-minute certificate is renewed under continuous requests (new and
  kept-alive connections) with no failed request, and `openssl s_client`
  sees the new serial;
- with the CA stopped through a renewal window: retries in the log, no
  failed request while the certificate is valid, renewal once it is back;
- a revoked service certificate: renewal refused, the reason in the log;
- kill -9 at random moments of a renewal loop always leaves a matching key
  and certificate (KEY with CERT, or KEY with CERT.next, which the next
  start puts in place);
- a client revoked through serve is refused by invoice-server within one
  CRL fetch period (--crl-refresh 2s), without SIGHUP, on a new and on a
  kept-alive connection;
- /healthz answers 503 once the server certificate has expired;
- mail-server sync renews its own certificate while it runs.

Every server listens on 127.0.0.1 port 0 (serve, restarted, on the port it
had).  Under TW_WRAP (Valgrind) only the parts that do not depend on
one-minute timing run.
"""
import http.client
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

WRAP = shlex.split(os.environ.get("TW_WRAP", ""))
QUICK = os.environ.get("TW_QUICK", "") == "1"
KEEP = os.environ.get("TW_KEEP", "") == "1"
SLOW = 6 if WRAP else 1
_passed = _failed = 0


def ok(name):
    global _passed
    _passed += 1
    print("ok   " + name, flush=True)


def fail(name, detail=""):
    global _failed
    _failed += 1
    print("FAIL " + name + (": " + str(detail)[-2000:] if detail else ""), flush=True)


def check(name, cond, detail=""):
    if cond:
        ok(name)
    else:
        fail(name, detail)
    return cond


def run(cmd, timeout=60):
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout * SLOW)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return 124, "", "timeout"


def wait_for(pred, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class Proc:
    """A server process whose output goes to a log file; `port` is read from
    its "listening on https://127.0.0.1:PORT/" line."""

    def __init__(self, tmp, name, cmd, wrap=True):
        self.name = name
        self.log_path = os.path.join(tmp, name + ".log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen((WRAP if wrap else []) + cmd, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.port = None

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_listening(self, timeout=20):
        def port():
            m = re.search(r"listening on https://127\.0\.0\.1:(\d+)/", self.text())
            return int(m.group(1)) if m else (None if self.proc.poll() is None else -1)
        self.port = wait_for(port, timeout * SLOW, 0.02)
        return self.port is not None and self.port > 0

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def pubkey_of_cert(path):
    return run(["openssl", "x509", "-noout", "-pubkey", "-in", path])[1]


def pubkey_of_key(path):
    return run(["openssl", "pkey", "-pubout", "-in", path])[1]


def pair_matches(cert, key):
    a, b = pubkey_of_cert(cert), pubkey_of_key(key)
    return a != "" and a == b


def serial_of(path):
    out = run(["openssl", "x509", "-noout", "-serial", "-in", path])[1]
    return out.strip().split("=")[-1].upper()


def served_serial(port, ca):
    """The serial of the certificate the server at `port` shows now."""
    try:
        p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                            "-servername", "localhost", "-CAfile", ca],
                           input=b"", capture_output=True, timeout=20 * SLOW)
    except subprocess.TimeoutExpired:
        return ""
    m = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", p.stdout, re.S)
    if not m:
        return ""
    p = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=m.group(0),
                       capture_output=True)
    return p.stdout.decode().strip().split("=")[-1].upper()


def context(ca, cert=None, key=None, verify=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def get(port, ctx, path="/", conn=None):
    """(status, body, conn): one request, on `conn` when given (kept open)."""
    c = conn or http.client.HTTPSConnection("localhost", port, context=ctx,
                                            timeout=20 * SLOW)
    try:
        c.request("GET", path, headers={"Host": "localhost"})
        r = c.getresponse()
        body = r.read()
        return r.status, body, c
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        c.close()
        return None, str(e).encode(), None


class Load(threading.Thread):
    """Requests in a loop until stopped: every other one on a new connection
    (a full handshake), the rest on one kept-alive connection."""

    def __init__(self, port, ctx):
        super().__init__(daemon=True)
        self.port, self.ctx = port, ctx
        self.okays = self.failures = 0
        self.errors = []
        self.stopping = threading.Event()

    def run(self):
        kept = None
        n = 0
        while not self.stopping.is_set():
            n += 1
            if n % 2:
                st, body, c = get(self.port, self.ctx)
                if c:
                    c.close()
            else:
                st, body, kept = get(self.port, self.ctx, conn=kept)
            if st == 200:
                self.okays += 1
            else:
                self.failures += 1
                self.errors.append((st, body[:200]))
            time.sleep(0.02)
        if kept:
            kept.close()

    def stop(self):
        self.stopping.set()
        self.join(30 * SLOW)


def count(text, pattern):
    return len(re.findall(pattern, text))


def main():
    if len(sys.argv) != 2:
        print("usage: renewal_test.py BUILD_DIR", file=sys.stderr)
        return 2
    build = os.path.abspath(sys.argv[1])
    tw = os.path.join(build, "src/ca/twoway-ca")
    inv = os.path.join(build, "src/invoice/invoice-server")
    mail = os.path.join(build, "src/mail/mail-server")
    loop_tool = os.path.join(build, "tests/renew_loop")
    tmp = tempfile.mkdtemp(prefix="twoway-renewal-test.")
    procs = []

    def start(name, cmd, wrap=True):
        p = Proc(tmp, name, cmd, wrap)
        procs.append(p)
        return p

    try:
        ca_dir = os.path.join(tmp, "ca")
        ca = os.path.join(ca_dir, "ca.cert.pem")
        rc, _, err = run([tw, "init", ca_dir, "--subject", "/O=ABC Inc./CN=ABC Root CA"])
        check("setup: twoway-ca init", rc == 0, err)
        rc, _, err = run([tw, "issue", "--ca", ca_dir, "--out", os.path.join(tmp, "ops"),
                          "--subject", "/O=ABC Inc./CN=ops", "--client"])
        check("setup: an admin certificate for serve", rc == 0, err)
        ops = (os.path.join(tmp, "ops/cert.pem"), os.path.join(tmp, "ops/key.pem"))
        serve_args = [tw, "serve", "--ca", ca_dir, "--workers", "2", "--allow", "admin CN=ops"]
        serve = start("serve", serve_args + ["--listen", "127.0.0.1:0"])
        if not check("twoway-ca serve starts", serve.wait_listening(), serve.text()):
            return 1
        ca_url = "https://localhost:%d" % serve.port

        def token(subject, *args):
            rc, out, err = run([tw, "token", "--ca", ca_dir, "--subject", subject] + list(args))
            if rc != 0:
                raise RuntimeError("twoway-ca token: " + err)
            path = os.path.join(tmp, "token.%d" % random.randrange(1 << 30))
            with open(path, "w") as f:
                f.write(out)
            return path

        # ------------------------------------------------ enrolment, first start
        srv = os.path.join(tmp, "srv")
        os.mkdir(srv)
        cert, key, crl = (os.path.join(srv, n) for n in ("cert.pem", "key.pem", "crl.pem"))
        lifetime = "60s"
        inv_args = [inv, "--cert", cert, "--key", key, "--ca", ca, "--crl", crl,
                    "--listen", "127.0.0.1:0", "--workers", "2",
                    "--db", os.path.join(srv, "invoices.db"),
                    "--allow", "read O=MailServer", "--allow", "metrics O=MailServer",
                    "--renew", ca_url, "--crl-url", ca_url, "--crl-refresh", "2s"]
        tok = token("/O=ABC Inc./CN=localhost", "--server", "--lifetime", lifetime)
        server = start("invoice", inv_args + ["--enroll", ca_url, "--token-file", tok])
        up = server.wait_listening(30)
        check("invoice-server --enroll: starts with a certificate from its token", up, server.text())
        if not up:
            return 1
        check("the enrolled key is mode 0600", os.stat(key).st_mode & 0o777 == 0o600,
              oct(os.stat(key).st_mode))
        check("the enrolled certificate matches its key", pair_matches(cert, key))
        check("the log says it enrolled", "enrolled with " + ca_url in server.text(), server.text())
        check("the first CRL was fetched into --crl before the start", os.path.exists(crl),
              server.text())
        rc, _, err = run([tw, "verify", "--ca", ca, cert])
        check("the CA knows the enrolled certificate", rc == 0, err)
        rc, out, err = run([inv, "--cert", cert, "--key", key, "--ca", ca, "--enroll", ca_url])
        check("--enroll without --token-file is a usage error", rc == 2 and "--token-file" in err, err)

        # The Mail Server enrols too (fetch), and is the client from here on.
        mdir = os.path.join(tmp, "mail")
        os.mkdir(mdir)
        mcert, mkey, mcrl = (os.path.join(mdir, n) for n in ("cert.pem", "key.pem", "crl.pem"))
        mtok = token("/O=MailServer/CN=mail", "--client", "--lifetime", "1h")
        rc, out, err = run(WRAP + [mail, "fetch", "--cert", mcert, "--key", mkey, "--ca", ca,
                                   "--crl", mcrl, "--url", "https://localhost:%d/" % server.port,
                                   "--enroll", ca_url, "--token-file", mtok,
                                   "--renew", ca_url, "--crl-url", ca_url])
        check("mail-server fetch --enroll: enrols, then fetches", rc == 0 and "invoice_number" in out,
              (rc, out, err))
        check("mail-server's enrolled key is mode 0600",
              os.path.exists(mkey) and os.stat(mkey).st_mode & 0o777 == 0o600)
        rc, out, err = run(WRAP + [mail, "fetch", "--cert", mcert, "--key", mkey, "--ca", ca,
                                   "--url", "https://localhost:%d/" % server.port,
                                   "--enroll", ca_url, "--token-file", mtok])
        check("a second fetch uses the files (the used token is not sent again)",
              rc == 0 and "enrolled" not in err, (rc, err))
        ctx = context(ca, mcert, mkey)

        # --------------------------------------- a client revoked through serve
        victim_tok = token("/O=MailServer/CN=victim", "--client", "--lifetime", "1h")
        vdir = os.path.join(tmp, "victim")
        os.mkdir(vdir)
        vcert, vkey = os.path.join(vdir, "cert.pem"), os.path.join(vdir, "key.pem")
        rc, out, err = run(WRAP + [mail, "fetch", "--cert", vcert, "--key", vkey, "--ca", ca,
                                   "--url", "https://localhost:%d/" % server.port,
                                   "--enroll", ca_url, "--token-file", victim_tok])
        check("setup: a second client enrolled", rc == 0, err)
        vctx = context(ca, vcert, vkey)
        st, _, kept = get(server.port, vctx)
        check("the second client reads before its revocation", st == 200)
        body = json.dumps({"serial": serial_of(vcert), "reason": "keyCompromise"})
        p = subprocess.run(["curl", "-sS", "--cacert", ca, "--cert", ops[0], "--key", ops[1],
                            "-H", "Content-Type: application/json", "--data-binary", body,
                            ca_url + "/v1/revoke"], capture_output=True, timeout=30 * SLOW)
        revoked_at = time.monotonic()
        check("revoked through serve's API", b'"crl_number"' in p.stdout, p.stdout + p.stderr)

        def refused_new():
            st, _, c = get(server.port, vctx)
            if c:
                c.close()
            return st is None
        refused = wait_for(refused_new, 20 * SLOW, 0.2)
        took = time.monotonic() - revoked_at
        check("invoice-server refuses the revoked client on a new connection within "
              "one CRL fetch period (2 s + reload; took %.1f s), without SIGHUP" % took,
              refused and took < 6 * SLOW, server.text()[-1500:])
        if kept is not None:
            st, _, _ = get(server.port, vctx, conn=kept)
            check("... and on its kept-alive connection (403 at the next request)",
                  st in (403, None), st)
        check("the log names the CRL fetch", "fetched a newer CRL" in server.text())
        st, body, c = get(server.port, ctx, "/metrics")
        if c:
            c.close()
        text = body.decode("utf-8", "replace")
        check("metrics: twoway_crl_fetches_total{result=\"ok\"} counts",
              re.search(r'twoway_crl_fetches_total\{result="ok"\} [1-9]', text), text[-800:])
        check("metrics: renewals and the next renewal time are shown",
              'twoway_certificate_renewals_total{result="failed"}' in text and
              "twoway_certificate_renewal_timestamp_seconds" in text, text[-800:])

        if WRAP:
            # One-minute timing does not hold under Valgrind: the rest runs
            # in the plain, ASan and TSan builds.
            return 0

        # ------------------------------ renewed under load, no failed request
        first = serial_of(cert)
        check("openssl s_client sees the enrolled serial", served_serial(server.port, ca) == first)
        load = Load(server.port, ctx)
        load.start()
        renewed = wait_for(lambda: count(server.text(), r"renewed .*cert\.pem") >= 2, 90, 0.5)
        check("the one-minute certificate is renewed twice while requests go on", renewed,
              server.text()[-1500:])
        new = serial_of(cert)
        check("the certificate file has a new serial", new != first, new)
        seen = wait_for(lambda: served_serial(server.port, ca) == serial_of(cert), 10, 0.5)
        check("openssl s_client sees the new serial (swapped in without a restart)", seen)
        check("the renewed certificate matches the new key", pair_matches(cert, key))
        check("the server process is the same one", server.proc.poll() is None)

        # --------------------------------- the CA stopped through a renewal window
        port = serve.port
        serve.stop()
        failed_before = count(server.text(), r"renewal failed")
        retried = wait_for(lambda: count(server.text(), r"renewal failed") >= failed_before + 2, 60, 0.5)
        check("with the CA down, renewal is retried (logged)", retried, server.text()[-1500:])
        check("the retry line says the certificate stays in use",
              "stays in use" in server.text())
        serve = start("serve2", serve_args + ["--listen", "127.0.0.1:%d" % port])
        check("twoway-ca serve starts again on its port", serve.wait_listening(), serve.text())
        before = count(server.text(), r"renewed .*cert\.pem")
        back = wait_for(lambda: count(server.text(), r"renewed .*cert\.pem") > before, 30, 0.5)
        check("renewal succeeds once the CA is back", back, server.text()[-1500:])
        load.stop()
        check("0 failed requests through renewals and the CA outage (%d answered)" % load.okays,
              load.failures == 0 and load.okays > 100, load.errors[:5])

        # --------------------------------------- a revoked service certificate
        rc, _, err = run([tw, "revoke", "--ca", ca_dir, "--serial", serial_of(cert),
                          "--reason", "keyCompromise"])
        check("setup: the server's own certificate revoked", rc == 0, err)
        said = wait_for(lambda: re.search(r"renewal failed.*reason revoked", server.text()), 40, 0.5)
        check("its renewal is refused, and the log says why (reason revoked)", said,
              server.text()[-1500:])
        # ------------------------------------------------------------ /healthz
        expired = wait_for(lambda: time.time() > os.stat(cert).st_mtime + 61, 90, 0.5)
        nctx = context(ca, mcert, mkey, verify=False)
        st, body, c = get(server.port, nctx, "/healthz")
        if c:
            c.close()
        check("/healthz is 503 once the server certificate has expired", expired and st == 503,
              (st, body))
        server.stop()

        # ------------------------------------- mail-server sync renews itself
        # (a sync pass needs an SMTP server: here only the renewal thread is
        # watched, with an SMTP URL nothing listens on; the pass fails and
        # retries, the renewal does not depend on it)
        sdir = os.path.join(tmp, "sync")
        os.mkdir(sdir)
        scert, skey = os.path.join(sdir, "cert.pem"), os.path.join(sdir, "key.pem")
        stok = token("/O=MailServer/CN=sync", "--client", "--lifetime", "60s")
        sync = start("sync", [mail, "sync", "--cert", scert, "--key", skey, "--ca", ca,
                              "--url", "https://localhost:1/", "--state", os.path.join(sdir, "state.db"),
                              "--smtp", "smtp://127.0.0.1:1", "--from", "billing@example.com",
                              "--interval", "5", "--retries", "0",
                              "--enroll", ca_url, "--token-file", stok, "--renew", ca_url])
        did = wait_for(lambda: "renewed " + scert in sync.text(), 60, 0.5)
        check("mail-server sync renews its certificate while it runs", did, sync.text()[-1500:])
        check("... and the new pair matches", pair_matches(scert, skey))
        sync.stop()

        # ------------------------------------------- kill -9 in a renewal loop
        kdir = os.path.join(tmp, "kill")
        os.mkdir(kdir)
        kcert, kkey = os.path.join(kdir, "cert.pem"), os.path.join(kdir, "key.pem")
        ktok = token("/O=ABC Inc./CN=kill", "--client", "--lifetime", "1h")
        rc, out, err = run([mail, "fetch", "--cert", kcert, "--key", kkey, "--ca", ca,
                            "--url", "https://localhost:1/", "--retries", "0",
                            "--enroll", ca_url, "--token-file", ktok])
        check("setup: a pair for the kill test", os.path.exists(kcert), err)
        rounds = 10 if QUICK else 25
        bad = []
        for i in range(rounds):
            p = subprocess.Popen([loop_tool, "loop", kcert, kkey, ca, ca_url],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(random.uniform(0.05, 0.6))
            p.send_signal(signal.SIGKILL)
            p.wait()
            nxt = kcert + ".next"
            if not (pair_matches(kcert, kkey) or
                    (os.path.exists(nxt) and pair_matches(nxt, kkey))):
                bad.append("round %d: no matching pair on disk" % i)
            rc, _, err = run([loop_tool, "recover", kcert, kkey, ca])
            if rc != 0 or not pair_matches(kcert, kkey) or os.path.exists(nxt) or \
                    os.path.exists(kkey + ".next"):
                bad.append("round %d: after recovery rc=%d %s" % (i, rc, err))
        check("kill -9 at %d random moments of a renewal loop: always a matching pair" % rounds,
              not bad, bad)
    finally:
        # Every server stops cleanly (under Valgrind: no error, no leak).
        for p in procs:
            rc = p.stop()
            check("%s stops with exit 0" % p.name, rc == 0, "exit %s: %s" % (rc, p.text()[-600:]))
        if KEEP:
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        print("%d passed, %d failed" % (_passed, _failed))
    return 1 if _failed else 0


if __name__ == "__main__":
    sys.exit(main())
