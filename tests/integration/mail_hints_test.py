#!/usr/bin/env python3
"""mail_hints_test.py - refusals that came out with the wrong words (issue 14).

    usage: mail_hints_test.py BUILD_DIR

BUILD_DIR holds src/mail/mail-server, src/invoice/invoice-server and
src/ca/twoway-ca.  Each check is one bug as it was seen:

  - mail-server's 403 advice named the role `read` also for GET /metrics;
  - a server that closes right after the handshake without a TLS alert (the
    seed's Node.js server refusing a client certificate) was taken for a
    network fault: three retries, about 7 s, exit 5 and "check that it
    trusts the CA" even for an expired certificate;
  - nginx's "400 The SSL certificate error" page came out as an HTTP error
    with the HTML flattened into the sentence;
  - a private key given where a certificate belongs was "no readable
    certificate (garbage or truncated PEM?): no start line".

The servers that misbehave on purpose are small TLS servers in this
process (the ssl module), on 127.0.0.1 port 0, stopped at the end.  Dated
certificates come from `openssl ca` with twoway-ca's CA key.

Environment:
    TW_WRAP   a command prefix to run the programs under, e.g.
              "valgrind -q --error-exitcode=99"; timeouts are stretched 6x.
    TW_KEEP   1 keeps the temp directory.

Each check prints "ok   NAME" or "FAIL NAME: detail"; the last line is
"N passed, M failed" and the exit status is 1 when any check failed.
Python standard library only.
"""

import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

WRAP = shlex.split(os.environ.get("TW_WRAP", ""))
KEEP = os.environ.get("TW_KEEP", "") == "1"
SLOW = 6 if WRAP else 1

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME: our servers accept any date in the
# handshake and judge it afterwards, as Node.js and nginx do.
NO_CHECK_TIME = 0x200000

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


def run(cmd, timeout=60):
    """(exit code, stdout, stderr, seconds) of a command."""
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout * SLOW)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = 124, e.stdout or b"", (e.stderr or b"") + b"\ntimeout"
    return (rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
            time.monotonic() - start)


# ------------------------------------------------------------- certificates

OPENSSL_CA_CNF = """[ca]
default_ca = abc
[abc]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/new
serial = $dir/serial
certificate = {ca_cert}
private_key = {ca_key}
default_md = sha256
policy = anything
unique_subject = no
[anything]
organizationName = optional
commonName = optional
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
"""


def asn1_time(t):
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(t))


def dated_client_cert(tmp, name, subject, start, end):
    """A client certificate of ABC Inc. valid from `start` to `end`, made
    with `openssl ca` (twoway-ca issues from now on only)."""
    out = os.path.join(tmp, name)
    os.makedirs(out)
    rc1, _, err1, _ = run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                           "ec_paramgen_curve:P-256", "-nodes", "-subj", subject,
                           "-keyout", out + "/key.pem", "-out", out + "/req.csr"])
    rc2, _, err2, _ = run(["openssl", "ca", "-batch", "-config", tmp + "/ossl/ca.cnf",
                           "-in", out + "/req.csr", "-out", out + "/cert.pem",
                           "-startdate", asn1_time(start), "-enddate", asn1_time(end),
                           "-preserveDN", "-extensions", "client_ext", "-notext"])
    return check("setup: " + name + " certificate", rc1 == 0 and rc2 == 0, err1 + err2)


def make_certificates(tw, tmp):
    def ca(*args):
        rc, _, err, _ = run([tw] + list(args))
        made = args[1] if args[0] == "init" else args[args.index("--out") + 1]
        return check("setup: twoway-ca " + args[0] + " " + made, rc == 0, err)

    good = (ca("init", "abc", "--subject", "/O=ABC Inc.") and
            ca("issue", "--ca", "abc", "--out", "inv", "--subject",
               "/CN=localhost/O=InvoiceServer", "--server") and
            ca("issue", "--ca", "abc", "--out", "mail", "--subject",
               "/CN=mail.abc.example/O=MailServer", "--client") and
            ca("init", "zxc", "--subject", "/O=ZXC Inc.") and
            ca("issue", "--ca", "zxc", "--out", "zxc-mail", "--subject",
               "/CN=mail.abc.example/O=MailServer", "--client"))
    if not good:
        return False
    os.makedirs(tmp + "/ossl/new")
    open(tmp + "/ossl/index.txt", "w").close()
    with open(tmp + "/ossl/serial", "w") as f:
        f.write("1000\n")
    with open(tmp + "/ossl/ca.cnf", "w") as f:
        f.write(OPENSSL_CA_CNF.format(dir=tmp + "/ossl", ca_cert=tmp + "/abc/ca.cert.pem",
                                      ca_key=tmp + "/abc/ca.key.pem"))
    year = 365 * 86400
    return (dated_client_cert(tmp, "expired-mail", "/CN=mail.abc.example/O=MailServer",
                              1577836800, 1580515200) and  # January 2020
            dated_client_cert(tmp, "future-mail", "/CN=mail.abc.example/O=MailServer",
                              time.time() + year, time.time() + 2 * year))


# ------------------------------------------------- servers that misbehave

class TLSServer:
    """A TLS server in a thread on 127.0.0.1:0 that asks for a client
    certificate and trusts both CAs and any date in the handshake, then
    hands each connection to `serve(sock)`."""

    def __init__(self, tmp, serve, max_version=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp + "/inv/cert.pem", tmp + "/inv/key.pem")
        ctx.load_verify_locations(tmp + "/abc/ca.cert.pem")
        ctx.load_verify_locations(tmp + "/zxc/ca.cert.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags = ctx.verify_flags | NO_CHECK_TIME
        if max_version is not None:
            ctx.maximum_version = max_version
        self.ctx, self.serve = ctx, serve
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(10 * SLOW)
            try:
                s = self.ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()
                continue
            try:
                self.serve(s)
            except (ssl.SSLError, OSError):
                pass
            finally:
                s.close()

    def stop(self):
        self.stopping.set()
        self.thread.join()
        self.listener.close()


def read_head(s):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def acceptable(cert):
    """Node's check after the handshake: signed by ABC Inc., in its dates."""
    issuer = dict(x[0] for x in cert.get("issuer", ()))
    now = time.time()
    return (issuer.get("organizationName") == "ABC Inc." and
            ssl.cert_time_to_seconds(cert["notBefore"]) <= now <=
            ssl.cert_time_to_seconds(cert["notAfter"]))


def hang_up_on_refusal(s):
    """The seed's Node.js server: a refused certificate gets neither an
    answer nor an alert, the socket is just closed (by TLSServer)."""
    if not acceptable(s.getpeercert()):
        return
    read_head(s)
    body = b'{"invoice_number":"00095234"}'
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


def nginx_page(title):
    """nginx's answer when ssl_verify_client refuses (ngx_http_special_response.c)."""
    body = ("<html>\r\n<head><title>400 %s</title></head>\r\n<body>\r\n"
            "<center><h1>400 Bad Request</h1></center>\r\n<center>%s</center>\r\n"
            "<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"
            % (title, title)).encode()
    head = ("HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\n"
            "Content-Type: text/html\r\nContent-Length: %d\r\n"
            "Connection: close\r\n\r\n" % len(body)).encode()

    def serve(s):
        read_head(s)
        s.sendall(head + body)
    return serve


def other_400(s):
    read_head(s)
    body = b'{"error":"bad request","reason":"the query is malformed"}'
    s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


# ------------------------------------------------------------- invoice-server

class InvoiceServer:
    def __init__(self, build, tmp, name, args):
        self.log_path = os.path.join(tmp, name + ".log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            WRAP + [build + "/src/invoice/invoice-server", "--cert", "inv/cert.pem",
                    "--key", "inv/key.pem", "--ca", "abc/ca.cert.pem",
                    "--listen", "127.0.0.1:0", "--workers", "1",
                    "--db", os.path.join(tmp, name + ".db")] + args,
            stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp)
        self.port = None
        deadline = time.monotonic() + 20 * SLOW
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"listening on https://127\.0\.0\.1:(\d+)/", self.text())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.02)
        check("setup: invoice-server " + name, self.port is not None, self.text())

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# -------------------------------------------------------------------- checks

def fetch(build, tmp, who, url, retries="3"):
    return run(WRAP + [build + "/src/mail/mail-server", "fetch",
                       "--cert", who + "/cert.pem", "--key", who + "/key.pem",
                       "--ca", "abc/ca.cert.pem", "--url", url, "--retries", retries])


def expect(name, result, code, contains=(), lacks=()):
    rc, out, err, _ = result
    problems = []
    if rc != code:
        problems.append("exit %d, not %d" % (rc, code))
    problems += ["no %r" % c for c in contains if c not in err]
    problems += ["has %r" % c for c in lacks if c in err]
    check(name, not problems, "; ".join(problems) + "\nstderr: " + err + "stdout: " + out)


def route_roles(build, tmp):
    """Issue 14: the 403 advice said --allow 'read ...' for GET /metrics."""
    srv = InvoiceServer(build, tmp, "read-only", ["--allow", "read O=MailServer"])
    if srv.port:
        url = "https://localhost:%d/metrics" % srv.port
        expect("403_names_the_metrics_role", fetch(build, tmp, "mail", url), 6,
               ["HTTP 403", "GET /metrics needs the role 'metrics'",
                "--allow 'metrics O=MailServer'"], ["--allow 'read"])
    srv.stop()
    srv = InvoiceServer(build, tmp, "metrics-only", ["--allow", "metrics O=MailServer"])
    if srv.port:
        url = "https://localhost:%d/invoices?limit=1" % srv.port
        expect("403_names_the_read_role", fetch(build, tmp, "mail", url), 6,
               ["HTTP 403", "GET /invoices needs the role 'read'",
                "--allow 'read O=MailServer'"], ["--allow 'metrics"])
    srv.stop()


def hang_up(build, tmp):
    """Issue 14: a hang-up after the handshake was retried as a network fault."""
    for version, max_version in (("tls13", None), ("tls12", ssl.TLSVersion.TLSv1_2)):
        srv = TLSServer(tmp, hang_up_on_refusal, max_version)
        url = "https://localhost:%d/" % srv.port
        expect("hang_up_%s_accepts_a_good_certificate" % version,
               fetch(build, tmp, "mail", url), 0)
        result = fetch(build, tmp, "zxc-mail", url)
        expect("hang_up_%s_is_a_refusal_not_retried" % version, result, 3,
               ["refused our certificate: it closed the connection right after the TLS "
                "handshake, without an answer or a TLS alert",
                "it did not accept our certificate zxc-mail/cert.pem",
                "the CA that signed zxc-mail/cert.pem (issuer /O=ZXC Inc.)"],
               ["retrying"])
        check("hang_up_%s_one_sentence_at_once" % version,
              result[2].count("mail-server:") == 1 and result[3] < 5 * SLOW,
              "%.1f s: %s" % (result[3], result[2]))
        srv.stop()
    srv = TLSServer(tmp, hang_up_on_refusal)
    url = "https://localhost:%d/" % srv.port
    expect("hang_up_expired_certificate_says_renew", fetch(build, tmp, "expired-mail", url), 3,
           ["our certificate expired-mail/cert.pem (/CN=mail.abc.example/O=MailServer) "
            "expired on 2020-02-01T00:00:00Z: renew it"],
           ["trusts the CA", "retrying"])
    expect("hang_up_future_certificate_says_clock", fetch(build, tmp, "future-mail", url), 3,
           ["our certificate future-mail/cert.pem (/CN=mail.abc.example/O=MailServer) "
            "is not valid before", "check this machine's clock"],
           ["trusts the CA", "retrying"])
    srv.stop()


def nginx(build, tmp):
    """Issue 14: nginx's refusal page came out as HTTP 400 with its HTML."""
    srv = TLSServer(tmp, nginx_page("The SSL certificate error"))
    url = "https://localhost:%d/" % srv.port
    expect("nginx_certificate_error_is_a_refusal", fetch(build, tmp, "zxc-mail", url), 3,
           ["refused our certificate (HTTP 400 \"The SSL certificate error\"",
            "the CA that signed zxc-mail/cert.pem (issuer /O=ZXC Inc.)"],
           ["<", "HTTP 400 Bad Request", "retrying"])
    expect("nginx_certificate_error_expired_says_renew",
           fetch(build, tmp, "expired-mail", url), 3,
           ["expired on 2020-02-01T00:00:00Z: renew it"], ["trusts the CA", "<"])
    srv.stop()
    srv = TLSServer(tmp, nginx_page("No required SSL certificate was sent"))
    url = "https://localhost:%d/" % srv.port
    expect("nginx_no_certificate_is_a_refusal", fetch(build, tmp, "mail", url), 3,
           ["refused our certificate (HTTP 400 \"No required SSL certificate was sent\"",
            "it did not get our certificate mail/cert.pem"], ["<"])
    srv.stop()
    srv = TLSServer(tmp, other_400)
    url = "https://localhost:%d/" % srv.port
    expect("other_400_stays_an_http_error", fetch(build, tmp, "mail", url), 6,
           ["HTTP 400 Bad Request: the query is malformed"], ["refused"])
    srv.stop()


def key_as_certificate(build, tmp):
    """Issue 14: a private key where the certificate belongs."""
    said = "mail/key.pem holds a private key, not a certificate"
    expect("verify_key_as_certificate",
           run(WRAP + [build + "/src/ca/twoway-ca", "verify", "--ca", "abc/ca.cert.pem",
                       "mail/key.pem"]), 1, [said], ["no start line"])
    expect("mail_server_key_as_certificate",
           run(WRAP + [build + "/src/mail/mail-server", "fetch", "--cert", "mail/key.pem",
                       "--key", "mail/key.pem", "--ca", "abc/ca.cert.pem",
                       "--url", "https://localhost:1/", "--retries", "0"]), 2,
           ["--cert: " + said], ["no start line"])
    rc, out, err, _ = run(WRAP + [build + "/src/invoice/invoice-server", "--cert",
                                  "inv/key.pem", "--key", "inv/key.pem", "--ca",
                                  "abc/ca.cert.pem", "--listen", "127.0.0.1:0",
                                  "--db", os.path.join(tmp, "key-as-cert.db")], timeout=20)
    check("invoice_server_key_as_certificate",
          rc not in (0, 124) and "inv/key.pem holds a private key, not a certificate" in err,
          "exit %d: %s" % (rc, err))


def main():
    if len(sys.argv) != 2 or not os.access(sys.argv[1] + "/src/mail/mail-server", os.X_OK):
        print("usage: mail_hints_test.py BUILD_DIR", file=sys.stderr)
        return 2
    build = os.path.realpath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="mail-hints-")
    cwd = os.getcwd()
    os.chdir(tmp)  # the programs name files as given: relative names read well
    try:
        if make_certificates(build + "/src/ca/twoway-ca", tmp):
            route_roles(build, tmp)
            hang_up(build, tmp)
            nginx(build, tmp)
            key_as_certificate(build, tmp)
    finally:
        os.chdir(cwd)
        if KEEP:
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (_passed, _failed))
    return 1 if _failed else 0


if __name__ == "__main__":
    sys.exit(main())
