#!/usr/bin/env python3
"""Integration tests for invoice-server: drive the real binary over real TLS.

    usage: invoice_test.py BUILD_DIR

BUILD_DIR holds src/invoice/invoice-server and src/ca/twoway-ca.  The
contract is PRODUCT.md (invoice-server section) and issue 3: mutual TLS with
certificates from twoway-ca and from the seed tutorial's own openssl
commands, refusals inside the handshake with one log line each, the policy,
the routes, the HTTP limits, durability across SIGKILL, reload under load,
SIGTERM draining and TLS resumption against revocation.

Environment:
    TW_WRAP   a command prefix to run invoice-server under, e.g.
              "valgrind -q --error-exitcode=99"; timeouts are stretched.
    TW_QUICK  1 skips the slowest parts (the 200 half-open connections;
              the reload load loop is shortened).
    TW_KEEP   1 keeps the temp directory (server logs, certificates).

Each check prints "ok   NAME" or "FAIL NAME: detail"; the last line is
"N passed, M failed" and the exit status is 1 when any check failed.
Everything happens in a private temp directory; servers listen on
127.0.0.1 port 0 only and are always stopped.  Events are waited for (a log
line, a port, an exit, a count: wait_for), never slept on; the few sleeps
left are the point of their test and say so.  Python standard library only.
"""

import json
import os
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

# ---------------------------------------------------------------- settings

WRAP = shlex.split(os.environ.get("TW_WRAP", ""))
QUICK = os.environ.get("TW_QUICK", "") == "1"
KEEP = os.environ.get("TW_KEEP", "") == "1"  # keep the temp dir (debugging)
SLOW = 6 if WRAP else 1  # timeouts stretch under valgrind and friends
WORKERS = "2"

SEED_PREFIX = ('{"firstname":"John","lastname":"Ji","email":"john.ji@example.com",'
               '"invoice_number":"00095234","invoice_price":"10USD"')

# ----------------------------------------------------------------- results

_lock = threading.Lock()
_passed = 0
_failed = 0


def ok(name):
    global _passed
    with _lock:
        _passed += 1
        print("ok   %s" % name, flush=True)


def fail(name, detail):
    global _failed
    detail = " ".join(str(detail).split())  # one line
    if len(detail) > 600:
        detail = detail[:600] + "..."
    with _lock:
        _failed += 1
        print("FAIL %s: %s" % (name, detail), flush=True)


def check(name, cond, detail=""):
    if cond:
        ok(name)
    else:
        fail(name, detail or "condition false")
    return bool(cond)


def expect_eq(name, want, got):
    return check(name, want == got, "expected %r, got %r" % (want, got))


class SetupError(Exception):
    pass


POLL = 0.02  # seconds between two looks at something a test waits for


class WaitTimeout(Exception):
    """Something a test waited for did not happen in time; the message
    names it."""


def poll(fn, timeout, interval=POLL):
    """Call fn until it returns something true or timeout seconds pass;
    returns fn's last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)  # the polling interval, not a guess at an order


def wait_for(predicate, timeout, what, interval=POLL):
    """Poll predicate until it returns something true, and return that.

    Tests order events with this, never with a fixed sleep: wait for a log
    line, a port that answers or stops answering, a process that exits, a
    count that grows.  timeout is in seconds for a server run bare and is
    stretched by SLOW.  When it passes, raise WaitTimeout naming `what` (a
    string, or a function returning one, called then, so that the message
    can tell the state things were left in)."""
    limit = timeout * SLOW
    v = poll(predicate, limit, interval)
    if not v:
        raise WaitTimeout("%s did not happen within %g s"
                          % (what() if callable(what) else what, limit))
    return v


# ---------------------------------------------------------------- commands

class Result:
    def __init__(self, rc, out, err):
        self.returncode, self.stdout, self.stderr = rc, out, err

    @property
    def text(self):
        return self.stdout + self.stderr


def run(cmd, cwd=None, input=None, timeout=60):
    """Run cmd; a hang is killed after timeout (returncode 124)."""
    try:
        p = subprocess.run(cmd, cwd=cwd, input=input, capture_output=True,
                           timeout=timeout)
        return Result(p.returncode, p.stdout.decode("utf-8", "replace"),
                      p.stderr.decode("utf-8", "replace"))
    except subprocess.TimeoutExpired as e:
        return Result(124, (e.stdout or b"").decode("utf-8", "replace"),
                      (e.stderr or b"").decode("utf-8", "replace"))
    except OSError as e:
        return Result(127, "", str(e))


def must(cmd, cwd=None, input=None, timeout=120):
    r = run(cmd, cwd=cwd, input=input, timeout=timeout)
    if r.returncode != 0:
        raise SetupError("%s -> exit %d: %s" % (" ".join(cmd), r.returncode,
                                                r.text[-500:]))
    return r


class PipeReader:
    """What a child process writes to a pipe, collected on a thread, so that
    a test can wait for a line while the child still runs."""

    def __init__(self, pipe):
        self.pipe, self.chunks = pipe, []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            chunk = os.read(self.pipe.fileno(), 65536)
            if not chunk:
                return
            self.chunks.append(chunk)

    def text(self):
        return b"".join(list(self.chunks)).decode("utf-8", "replace")


def norm_serial(s):
    s = s.replace(":", "").strip().upper().lstrip("0")
    return s or "0"


# ------------------------------------------------------------------ server

ALL_SERVERS = []


class Server:
    """One invoice-server process; stderr goes to a file we can poll."""

    def __init__(self, tmp, name, args, cwd=None):
        self.tmp, self.name, self.args = tmp, name, list(args)
        self.cwd = cwd or tmp
        self.proc = None
        self.port = None
        self.errpath = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.errpath = os.path.join(self.tmp, "%s.%d.stderr" % (self.name, self.starts))
        cmd = WRAP + [SERVER] + self.args + ["--listen", "127.0.0.1:0",
                                             "--workers", WORKERS]
        with open(self.errpath, "wb") as errf:
            self.proc = subprocess.Popen(cmd, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=errf)
        ALL_SERVERS.append(self)
        pat = re.compile(r"listening on https://127\.0\.0\.1:(\d+)/")

        def ready():
            m = pat.search(self.log())
            return m or self.proc.poll() is not None
        m = poll(ready, 20 * SLOW)
        if not isinstance(m, re.Match):
            rc = self.proc.poll()
            self.kill()
            raise SetupError("invoice-server %s did not start (exit %s): %s"
                             % (self.name, rc, self.log()[-600:]))
        self.port = int(m.group(1))
        return self

    def log(self):
        try:
            with open(self.errpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def mark(self):
        return len(self.log())

    def since(self, mark):
        return self.log()[mark:]

    def wait_log(self, regex, mark=0, timeout=5):
        """The first match of regex in stderr after mark; None after timeout
        (or at once when the server has died)."""
        pat = re.compile(regex)
        poll(lambda: pat.search(self.since(mark)) or not self.alive(), timeout * SLOW)
        return pat.search(self.since(mark))

    def why(self, mark):
        """Detail for a missing log line: the server's state, new stderr."""
        state = "running" if self.alive() else "the server exited with status %s" % (
            self.proc.poll() if self.proc else None)
        return "%s; new stderr: %r" % (state, self.since(mark)[-300:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def stop(self, name=None):
        """SIGTERM, then a check that it exits 0 (SIGKILL when stuck)."""
        name = name or "%s: SIGTERM stops the server with exit status 0" % self.name
        if self.proc is None:
            return
        rc = self.proc.poll()
        if rc is not None:
            fail(name, "the server had already exited with status %s; stderr: %s"
                 % (rc, self.log()[-400:]))
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15 * SLOW)
        except subprocess.TimeoutExpired:
            self.kill()
            fail(name, "still running %d s after SIGTERM; killed" % (15 * SLOW))
            return
        log = self.log()
        bad = re.search(r"(ERROR: \w+Sanitizer|runtime error:|==\d+== (Invalid|Conditional|"
                        r"Mismatched|Syscall|Use of uninit|[\d,]+ (\([^)]*\) )?bytes in [\d,]+ blocks are definitely))",
                        log)
        if rc != 0:
            how = "killed by signal %d" % -rc if rc < 0 else "exit %d" % rc
            if bad:  # a memory checker's report: show where it starts
                fail(name, "%s, expected exit 0; %s" % (how, log[bad.start():bad.start() + 500]))
            else:
                fail(name, "%s, expected exit 0; stderr tail: %s" % (how, log[-300:]))
        elif bad:
            fail(name, "exit 0 but stderr has a memory error report: %s"
                 % log[bad.start():bad.start() + 300])
        else:
            ok(name)


def cleanup_servers():
    for s in ALL_SERVERS:
        s.kill()


# ------------------------------------------------------------- TLS client

def client_ctx(cert=None, key=None, ca=None, version=None, seclevel0=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    if seclevel0:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if ca:
        ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


V12 = ssl.TLSVersion.TLSv1_2
V13 = ssl.TLSVersion.TLSv1_3


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    def __repr__(self):
        return "HTTP %s %r" % (self.status, self.body[:300])


class HttpConn:
    """A TLS connection to the server with a tiny HTTP/1.1 reader."""

    def __init__(self, port, ctx, session=None, timeout=None):
        raw = socket.create_connection(("127.0.0.1", port),
                                       timeout=timeout or 10 * SLOW)
        self.local_port = raw.getsockname()[1]
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname="localhost",
                                        session=session)
        except BaseException:
            raw.close()
            raise
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            chunk = b""
        if not chunk:
            raise EOFError("connection closed by the server")
        self.buf += chunk

    def read_response(self):
        while True:
            while b"\r\n\r\n" not in self.buf:
                self._fill()
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ValueError("not an HTTP status line: %r" % lines[0])
            status = int(parts[1])
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            if status == 100:
                continue
            if "content-length" in headers:
                n = int(headers["content-length"])
                while len(self.buf) < n:
                    self._fill()
                body, self.buf = self.buf[:n], self.buf[n:]
            else:  # no length: the body runs to the close
                try:
                    while True:
                        self._fill()
                except (EOFError, OSError):
                    pass
                body, self.buf = self.buf, b""
            return Response(status, headers, body)

    def request(self, method, path, body=None, headers=None):
        self.send(build_request(method, path, body, headers))
        return self.read_response()

    def read_continue(self):
        """Read the server's "100 Continue" (sent once it has parsed a
        request head with Expect: 100-continue); ValueError when something
        else comes."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not re.match(rb"HTTP/1\.1 100 ", head):
            raise ValueError("expected 100 Continue, got %r" % head[:200])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def build_request(method, path, body=None, headers=None):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    h = "%s %s HTTP/1.1\r\nHost: localhost\r\n" % (method, path)
    for k, v in (headers or {}).items():
        h += "%s: %s\r\n" % (k, v)
    if body is not None:
        if not any(k.lower() == "content-type" for k in (headers or {})):
            h += "Content-Type: application/json\r\n"
        h += "Content-Length: %d\r\n" % len(body)
    return h.encode() + b"\r\n" + (body or b"")


def request(port, ctx, method, path, body=None, headers=None):
    """One request on a new connection; a Response, or an exception."""
    c = HttpConn(port, ctx)
    try:
        return c.request(method, path, body, headers)
    finally:
        c.close()


def try_request(port, ctx, method, path, body=None, headers=None):
    """Like request() but returns (Response or None, error text)."""
    try:
        return request(port, ctx, method, path, body, headers), ""
    except Exception as e:  # noqa: BLE001 - any failure is the answer
        return None, "%s: %s" % (type(e).__name__, e)


def refuses_connections(port):
    """True when nothing accepts TCP connections on 127.0.0.1:port."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


def raw_exchange(port, ctx, data, timeout=None):
    """Send raw bytes on a new TLS connection, read one response."""
    c = HttpConn(port, ctx, timeout=timeout)
    try:
        c.send(data)
        return c.read_response()
    finally:
        c.close()


def probe_refused(port, ctx, session=None):
    """Connect as a client the server should refuse.  Returns (bytes
    received, error text or None, our local port).  The handshake or the
    first read must fail with an alert; nothing may come back."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    lport = raw.getsockname()[1]
    data, err, s = b"", None, None
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        # TLS 1.3: the client's handshake ends before the server has judged
        # its certificate, so listen first: the alert comes now.  Sending at
        # once would race it (data after the server's close gets a reset).
        s.settimeout(3.0 * SLOW)
        try:
            first = s.recv(65536)
            if not first:
                err = "clean EOF without an alert"
        except (socket.timeout, TimeoutError):
            first = None  # not refused yet: ask for an invoice
        if first:
            data += first
        if first is None or first:
            s.settimeout(10 * SLOW)
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    err = "clean EOF without an alert"
                    break
                data += chunk
    except (ssl.SSLError, OSError) as e:
        err = "%s: %s" % (type(e).__name__, e)
    finally:
        (s or raw).close()
    return data, err, lport


def cert_facts(path):
    """Subject, issuer (as openssl -nameopt compat writes them) and serial."""
    r = must(["openssl", "x509", "-in", path, "-noout", "-subject", "-issuer",
              "-serial", "-nameopt", "compat"])
    f = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition("=")
        f[k.strip()] = v.strip()
    return {"subject": f.get("subject"), "issuer": f.get("issuer"),
            "serial": norm_serial(f.get("serial", ""))}


REFUSAL_RE = (r'refused peer=127\.0\.0\.1:%d reason=(\S+) subject="(.*?)" '
              r'issuer="(.*?)" serial=(\S+?): (.*)')


def expect_refused(name, srv, ctx, reason, facts, session=None):
    """A refused client: no HTTP bytes, an alert, one refusal log line."""
    mark = srv.mark()
    try:
        data, err, lport = probe_refused(srv.port, ctx, session)
    except OSError as e:
        fail(name + ": no HTTP bytes, TLS alert", "cannot connect: %s" % e)
        fail("%s: one refusal line, reason=%s" % (name, reason), "cannot connect: %s" % e)
        return
    if data:
        fail(name + ": no HTTP bytes, TLS alert", "received %d bytes: %r"
             % (len(data), data[:120]))
    elif err is None or "alert" not in err.lower():
        fail(name + ": no HTTP bytes, TLS alert",
             "no data, but the connection did not end with a TLS alert: %s" % err)
    else:
        ok(name + ": no HTTP bytes, TLS alert")
    lname = "%s: one refusal line, reason=%s" % (name, reason)
    pat = REFUSAL_RE % lport
    m = srv.wait_log(pat, mark, timeout=5)
    if not m:
        fail(lname, "no 'refused peer=127.0.0.1:%d' line; new stderr: %s"
             % (lport, srv.since(mark)[-400:]))
        return
    lines = re.findall(pat, srv.since(mark))
    problems = []
    if len(lines) != 1:
        problems.append("%d refusal lines for this peer" % len(lines))
    if m.group(1) != reason:
        problems.append("reason=%s" % m.group(1))
    if facts is not None:
        if m.group(2) != facts["subject"]:
            problems.append("subject %r, expected %r" % (m.group(2), facts["subject"]))
        if m.group(3) != facts["issuer"]:
            problems.append("issuer %r, expected %r" % (m.group(3), facts["issuer"]))
        if norm_serial(m.group(4)) != facts["serial"]:
            problems.append("serial %s, expected %s" % (m.group(4), facts["serial"]))
    check(lname, not problems, "; ".join(problems) + "; line: " + m.group(0)[:300])


# ------------------------------------------------------------------- PKI

class PKI:
    """Every certificate the tests use, made in the temp dir."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.c = {}  # name -> {"cert", "key", "ca", ...}

    def tw(self, *args):
        return must([TWCA] + list(args), cwd=self.tmp)

    def issue(self, name, subject, *extra, ca="abc"):
        out = os.path.join(self.tmp, name)
        self.tw("issue", "--ca", ca, "--out", out, "--subject", subject, *extra)
        self.c[name] = {"cert": out + "/cert.pem", "key": out + "/key.pem",
                        "ca": out + "/ca.cert.pem"}
        return self.c[name]

    def inspect(self, name):
        r = self.tw("inspect", self.c[name]["cert"], "--json")
        return json.loads(r.stdout)

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    def ctx(self, name, version=None, ca=None, seclevel0=False):
        c = self.c[name]
        return client_ctx(c["cert"], c["key"], ca or self.abc_ca, version, seclevel0)

    def openssl_ca(self, name, subject, startdate, enddate):
        """A client certificate signed with the ABC CA key by `openssl ca`,
        with validity dates of our choosing (twoway-ca will not do that)."""
        d = self.path("ossl")
        if not os.path.isdir(d):
            os.makedirs(d + "/newcerts")
            open(d + "/index.txt", "w").close()
            with open(d + "/serial", "w") as f:
                f.write("7A11CE0001\n")
            with open(d + "/ca.cnf", "w") as f:
                f.write("""[ ca ]
default_ca = abc

[ abc ]
dir = %s
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
certificate = %s
private_key = %s
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
x509_extensions = client_ext

[ anything ]
commonName = supplied
organizationName = optional

[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
""" % (d, self.abc_ca, self.path("abc", "ca.key.pem")))
        out = self.path(name)
        os.makedirs(out, exist_ok=True)
        must(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-nodes", "-keyout", out + "/key.pem",
              "-subj", subject, "-out", out + "/csr.pem"])
        must(["openssl", "ca", "-batch", "-config", d + "/ca.cnf", "-notext",
              "-startdate", startdate, "-enddate", enddate,
              "-in", out + "/csr.pem", "-out", out + "/cert.pem"])
        self.c[name] = {"cert": out + "/cert.pem", "key": out + "/key.pem",
                        "ca": self.abc_ca}


def utc(offset_days):
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + offset_days * 86400))


def make_pki(tmp):
    p = PKI(tmp)
    p.tw("init", "abc", "--subject", "/O=ABC Inc.")
    p.abc_ca = p.path("abc", "ca.cert.pem")
    p.issue("srv", "/CN=localhost/O=InvoiceServer", "--server")
    p.issue("mail", "/CN=mail/O=MailServer", "--client")
    # Another company's CA, and a Mail Server certificate from it.
    p.tw("init", "zxc", "--subject", "/O=ZXC Inc./CN=zxc.com")
    p.issue("zxc-mail", "/CN=localhost/O=MailServer", "--client", ca="zxc")
    # ZXC revokes one of its own: its CRL goes beside ABC's (check 11).
    p.issue("zxc-revoked", "/CN=zxc-revoked/O=MailServer", "--client", ca="zxc")
    p.tw("revoke", "--ca", "zxc", "--cert", p.c["zxc-revoked"]["cert"])
    p.tw("crl", "--ca", "zxc", "--out", p.path("zxc-crl.pem"))
    # Dates twoway-ca refuses to write: openssl ca with the ABC key.
    p.openssl_ca("expired", "/CN=expired/O=MailServer", "20200101000000Z",
                 "20200201000000Z")
    p.openssl_ca("notyet", "/CN=notyet/O=MailServer", utc(30), utc(60))
    # A server-only certificate used as a client (no clientAuth EKU).
    p.issue("srvonly", "/CN=srvonly/O=MailServer", "--server")
    # Revoked, with a CRL.
    p.issue("revoked", "/CN=revoked/O=MailServer", "--client")
    p.tw("revoke", "--ca", "abc", "--cert", p.c["revoked"]["cert"])
    p.tw("crl", "--ca", "abc", "--out", p.path("crl.pem"))
    # RSA-1024 client: CSR signed by the ABC key with openssl x509 -req.
    w = p.path("weak")
    os.makedirs(w)
    must(["openssl", "req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout",
          w + "/key.pem", "-subj", "/CN=weak/O=MailServer", "-out", w + "/csr.pem"])
    with open(w + "/ext.cnf", "w") as f:
        f.write("[ ext ]\nbasicConstraints = critical, CA:FALSE\n"
                "keyUsage = critical, digitalSignature\n"
                "extendedKeyUsage = clientAuth\n")
    must(["openssl", "x509", "-req", "-sha256", "-days", "30", "-in", w + "/csr.pem",
          "-CA", p.abc_ca, "-CAkey", p.path("abc", "ca.key.pem"),
          "-set_serial", "0x5EA4100024", "-extfile", w + "/ext.cnf",
          "-extensions", "ext", "-out", w + "/cert.pem"])
    p.c["weak"] = {"cert": w + "/cert.pem", "key": w + "/key.pem", "ca": p.abc_ca}
    # Policy identities.
    p.issue("trick", "/CN=O=MailServer", "--client")
    p.issue("p-cn", "/CN=reader-cn/O=Other", "--client")
    p.issue("p-cn-neg", "/CN=reader-cn2/O=Other", "--client")
    p.issue("p-ou", "/CN=ou/O=Other/OU=Billing", "--client")
    p.issue("p-dns", "/CN=dns/O=Other", "--client", "--dns", "api.svc.abc.example")
    p.issue("p-dns-deep", "/CN=dns2/O=Other", "--client", "--dns", "a.b.svc.abc.example")
    p.issue("p-dns-neg", "/CN=dns3/O=Other", "--client", "--dns", "api.other.example")
    p.issue("p-uri", "/CN=uri/O=Other", "--client", "--uri", "spiffe://abc.example/svc/billing")
    p.issue("p-uri-deep", "/CN=uri2/O=Other", "--client", "--uri",
            "spiffe://abc.example/svc/billing/extra")
    p.issue("p-uri-neg", "/CN=uri3/O=Other", "--client", "--uri", "spiffe://zzz.example/svc/billing")
    p.issue("p-fp", "/CN=fp/O=Other", "--client")
    p.issue("p-spki", "/CN=spki/O=Other", "--client")
    p.issue("p-quoted", "/CN=quoted/O=Two Words Inc.", "--client")
    p.issue("p-none", "/CN=nobody/O=Other", "--client")
    p.issue("p-writer", "/CN=writer/O=MailServer/OU=Writers", "--client")
    p.issue("p-prom", "/CN=prometheus/O=Other", "--client")
    # Reload and resumption.
    p.issue("rel-srv", "/CN=localhost/O=InvoiceServer", "--server")
    p.issue("rel-victim", "/CN=victim/O=MailServer", "--client")
    p.issue("res-client", "/CN=resumer/O=MailServer", "--client")
    return p


SEED_COMMANDS = [
    "openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 -subj '/O=ABC Inc.' "
    "-keyout ca/ca.key.pem -out ca/ca.cert.pem",
    "openssl req -out invoice-server/server.csr -newkey rsa:2048 -nodes "
    "-keyout invoice-server/private.key -subj \"/CN=localhost/O=InvoiceServer\"",
    "openssl x509 -req -sha256 -days 365 -CA ca/ca.cert.pem -CAkey ca/ca.key.pem "
    "-set_serial 0 -in invoice-server/server.csr -out invoice-server/server.cert",
    "openssl req -out mail-server/server.csr -newkey rsa:2048 -nodes "
    "-keyout mail-server/private.key -subj \"/CN=localhost/O=MailServer\"",
    "openssl x509 -req -sha256 -days 365 -CA ca/ca.cert.pem -CAkey ca/ca.key.pem "
    "-set_serial 0 -in mail-server/server.csr -out mail-server/server.cert",
    "openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 "
    "-subj '/O=ZXC Inc./CN=zxc.com' -keyout ca-wrong/ca.key.pem -out ca-wrong/ca.cert.pem",
    "openssl x509 -req -sha256 -days 365 -CA ca-wrong/ca.cert.pem "
    "-CAkey ca-wrong/ca.key.pem -set_serial 0 -in mail-server/server.csr "
    "-out mail-server/server-wrong.cert",
]

# The seed's mail_server.js, with the port and files from the command line
# (the seed hard-codes 3100) and IPv4 (we listen on 127.0.0.1 only).
NODE_CLIENT = r"""
var fs = require('fs');
var https = require('https');
var options = {
  hostname: 'localhost',
  family: 4,
  port: Number(process.argv[2]),
  path: '/',
  method: 'GET',
  key: fs.readFileSync(process.argv[3]),
  cert: fs.readFileSync(process.argv[4]),
  ca: fs.readFileSync(process.argv[5]),
};
var req = https.request(options, function(res) {
  console.error('status ' + res.statusCode);
  res.on('data', function(data) {
    process.stdout.write(data);
  });
});
req.end();
req.on('error', function(e) {
  console.error(e);
  process.exitCode = 3;
});
"""


def make_seed_pki(tmp):
    d = os.path.join(tmp, "seed")
    os.makedirs(d)
    must(["mkdir", "ca", "ca-wrong", "invoice-server", "mail-server"], cwd=d)
    for cmd in SEED_COMMANDS:
        must(shlex.split(cmd), cwd=d)
    return d


# ----------------------------------------------------------- the checks

def good_client_checks(tag, srv, cert, key, ca, tmp):
    """GET / by curl, openssl s_client, python ssl and node (check 2)."""
    port = srv.port
    # curl
    r = run(["curl", "-sS", "--max-time", str(20 * SLOW), "--cacert", ca, "--cert", cert,
             "--key", key, "--resolve", "localhost:%d:127.0.0.1" % port,
             "-w", "\n%{http_code}", "https://localhost:%d/" % port], timeout=30 * SLOW)
    body, _, code = r.stdout.rpartition("\n")
    check("%s: curl GET / -> 200 and the seed's JSON" % tag,
          r.returncode == 0 and code == "200" and body.startswith(SEED_PREFIX),
          "exit %d, status %r, body %r, stderr %r" % (r.returncode, code, body[:200],
                                                     r.stderr[:200]))
    # openssl s_client with a hand-written request
    r = run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername",
             "localhost", "-cert", cert, "-key", key, "-CAfile", ca,
             "-verify_return_error", "-quiet"],
            input=b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            timeout=30 * SLOW)
    check("%s: openssl s_client GET / -> 200 and the seed's JSON" % tag,
          r.stdout.startswith("HTTP/1.1 200") and ("\r\n\r\n" + SEED_PREFIX) in r.stdout,
          "exit %d, stdout %r, stderr %r" % (r.returncode, r.stdout[:300], r.stderr[-200:]))
    # python ssl, TLS 1.2 and 1.3
    for v, vname in ((V12, "1.2"), (V13, "1.3")):
        resp, err = try_request(port, client_ctx(cert, key, ca, v), "GET", "/")
        check("%s: python ssl TLS %s GET / -> 200 and the seed's JSON" % (tag, vname),
              resp is not None and resp.status == 200
              and resp.body.decode("utf-8", "replace").startswith(SEED_PREFIX)
              and resp.headers.get("content-type", "").startswith("application/json"),
              err or repr(resp))
    # node, written like the seed's mail_server.js
    node = shutil.which("node")
    if node:
        script = os.path.join(tmp, "mail_server.js")
        with open(script, "w") as f:
            f.write(NODE_CLIENT)
        r = run([node, script, str(port), key, cert, ca], timeout=30 * SLOW)
        check("%s: node client like mail_server.js -> the seed's JSON" % tag,
              r.returncode == 0 and r.stdout.startswith(SEED_PREFIX)
              and "status 200" in r.stderr,
              "exit %d, stdout %r, stderr %r" % (r.returncode, r.stdout[:200], r.stderr[:300]))
    else:
        print("# node not found: the Node.js client checks are skipped", file=sys.stderr, flush=True)


def section_seed(tmp, seed):
    ca = os.path.join(seed, "ca/ca.cert.pem")
    r = run(["openssl", "x509", "-in", os.path.join(seed, "invoice-server/server.cert"),
             "-noout", "-text"])
    check("seed PKI: server.cert is X.509 v1, serial 0, RSA-2048, no extensions",
          "Version: 1 (0x0)" in r.stdout and "Serial Number: 0 (0x0)" in r.stdout
          and "2048 bit" in r.stdout and "X509v3" not in r.stdout, r.stdout[:300])
    srv = Server(tmp, "seed", ["--cert", "invoice-server/server.cert",
                               "--key", "invoice-server/private.key",
                               "--ca", "ca/ca.cert.pem", "--db", os.path.join(tmp, "seed.db")],
                 cwd=seed)
    try:
        srv.start()
        ok("seed PKI: invoice-server starts with the seed's openssl certificates")
    except SetupError as e:
        fail("seed PKI: invoice-server starts with the seed's openssl certificates", e)
        return
    try:
        good_client_checks("seed PKI", srv, os.path.join(seed, "mail-server/server.cert"),
                           os.path.join(seed, "mail-server/private.key"), ca, tmp)
        facts = cert_facts(os.path.join(seed, "mail-server/server-wrong.cert"))
        for v, vname in ((V12, "1.2"), (V13, "1.3")):
            ctx = client_ctx(os.path.join(seed, "mail-server/server-wrong.cert"),
                             os.path.join(seed, "mail-server/private.key"), ca, v)
            expect_refused("seed PKI: server-wrong.cert (ZXC CA) TLS %s" % vname, srv, ctx,
                           "unknown_ca", facts)
        node = shutil.which("node")
        if node:
            script = os.path.join(tmp, "mail_server.js")
            r = run([node, script, str(srv.port), os.path.join(seed, "mail-server/private.key"),
                     os.path.join(seed, "mail-server/server-wrong.cert"), ca], timeout=30 * SLOW)
            check("seed PKI: node client with server-wrong.cert gets no invoice",
                  "John" not in r.stdout and "status " not in r.stderr and r.returncode != 0,
                  "exit %d, stdout %r, stderr %r" % (r.returncode, r.stdout[:200], r.stderr[:200]))
    finally:
        srv.stop()


def section_main(tmp, p):
    """Checks 2, 3, 5 and 6 against one server with the twoway-ca PKI."""
    srv = Server(tmp, "main", ["--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"],
                               "--ca", p.abc_ca, "--crl", p.path("crl.pem"),
                               "--db", p.path("main.db"), "--max-body", "2048"])
    try:
        srv.start()
        ok("twoway-ca PKI: invoice-server starts (with --crl)")
    except SetupError as e:
        fail("twoway-ca PKI: invoice-server starts (with --crl)", e)
        return
    try:
        check("main: with no policy the server says any certificate may read",
              re.search(r"any certificate .*may read", srv.log()), srv.log()[-300:])
        m = p.c["mail"]
        good_client_checks("twoway-ca PKI", srv, m["cert"], m["key"], p.abc_ca, tmp)
        bad_clients(srv, p)
        old_protocols(srv, p)
        renegotiation(srv, p)
        routes(srv, p)
        malformed(srv, p)
        keepalive_pipelining(srv, p)
        if QUICK:
            print("# TW_QUICK: the 200 half-open connections check is skipped", file=sys.stderr, flush=True)
        else:
            half_open(srv, p)
        metrics_after(srv, p)
    finally:
        srv.stop()


def bad_clients(srv, p):
    """Check 3: every bad client, TLS 1.2 and 1.3: no HTTP, one log line."""
    cases = [
        ("ZXC CA client", "zxc-mail", "unknown_ca", {}),
        ("expired client", "expired", "expired", {}),
        ("not-yet-valid client", "notyet", "not_yet_valid", {}),
        ("revoked client (--crl)", "revoked", "revoked", {}),
        ("server-only certificate as client", "srvonly", "wrong_usage", {}),
        ("RSA-1024 client", "weak", "bad_certificate", {"seclevel0": True}),
    ]
    for label, name, reason, kw in cases:
        facts = cert_facts(p.c[name]["cert"])
        for v, vname in ((V12, "1.2"), (V13, "1.3")):
            try:
                ctx = p.ctx(name, v, **kw)
            except ssl.SSLError as e:
                fail("bad client %s TLS %s" % (label, vname), "client context: %s" % e)
                continue
            expect_refused("bad client %s TLS %s" % (label, vname), srv, ctx, reason, facts)
    for v, vname in ((V12, "1.2"), (V13, "1.3")):
        ctx = client_ctx(None, None, p.abc_ca, v)
        expect_refused("bad client without a certificate TLS %s" % vname, srv, ctx,
                       "no_certificate", None)


def old_protocols(srv, p):
    m = p.c["mail"]
    for flag in ("-tls1", "-tls1_1"):
        r = run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port, flag,
                 "-cipher", "DEFAULT@SECLEVEL=0", "-cert", m["cert"], "-key", m["key"],
                 "-CAfile", p.abc_ca, "-quiet"],
                input=b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                timeout=30 * SLOW)
        check("openssl s_client %s is refused (no HTTP, server alert)" % flag,
              "HTTP/" not in r.stdout and r.returncode != 0
              and "no protocols available" not in r.stderr
              and re.search(r"alert|wrong version|unsupported protocol", r.stderr),
              "exit %d, stdout %r, stderr %r" % (r.returncode, r.stdout[:200], r.stderr[-300:]))


def renegotiation(srv, p):
    """s_client -tls1_2, then 'R' on stdin: the server must not renegotiate."""
    name = "TLS 1.2 renegotiation is refused"
    m = p.c["mail"]
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port, "-tls1_2",
           "-servername", "localhost", "-cert", m["cert"], "-key", m["key"],
           "-CAfile", p.abc_ca, "-state"]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except OSError as e:
        fail(name, e)
        return
    out = PipeReader(proc.stdout)

    def after_r():
        return out.text().partition("RENEGOTIATING")[2]

    def ended():
        return proc.poll() is not None

    late = None
    try:
        # s_client takes commands from stdin once it has printed the session
        # (the block ends with a line of dashes); each step below is one read
        # of stdin, so each waits for the outcome of the one before.
        wait_for(lambda: ended() or re.search(r"SSL-Session:.*?\n---\n", out.text(), re.S),
                 10, "s_client's TLS 1.2 handshake")
        if ended():
            raise WaitTimeout("s_client exited (status %s) before its handshake finished"
                              % proc.poll())
        proc.stdin.write(b"R\n")
        proc.stdin.flush()
        # The attempt ends with an alert (s_client then exits) or, were the
        # server to renegotiate, with a second handshake's Finished.
        wait_for(lambda: ended() or re.search(r"alert|error|read finished", after_r()),
                 10, "the end of s_client's renegotiation attempt (an alert, its exit, or "
                 "a new handshake)")
        if not ended():
            # Still connected: a request must not be answered on a connection
            # that was renegotiated.  Silence is a refusal too, so running out
            # of time here is not a failure.
            proc.stdin.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            proc.stdin.flush()
            try:
                wait_for(lambda: ended() or "HTTP/" in after_r(), 5,
                         "an answer to GET /healthz after R")
            except WaitTimeout:
                pass
    except WaitTimeout as e:
        late = str(e)
    except OSError:
        pass  # s_client has already exited (a broken pipe): fine
    if late:
        proc.kill()  # stuck; what it printed tells where
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(10 * SLOW)  # stdin's end makes s_client close and exit
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    out.thread.join(10 * SLOW)
    text = out.text()
    if late:
        fail(name, "%s; s_client output: %r" % (late, text[-400:]))
        return
    attempted = "RENEGOTIATING" in text
    after = text.split("RENEGOTIATING", 1)[1] if attempted else ""
    renegotiated = "read server hello" in after
    check(name,
          attempted and not renegotiated and "HTTP/1.1 200" not in after,
          "client %s; output after R: %r" % ("attempted" if attempted else "did not attempt",
                                             after[:400] or text[-400:]))


def invoice(number, amount=1050, **over):
    d = {"invoice_number": number, "firstname": "Ann", "lastname": "Lee",
         "email": "ann@example.com", "amount_minor": amount, "currency": "USD"}
    d.update(over)
    return d


def routes(srv, p):
    """Check 5: the routes on a server with no policy (all roles)."""
    port, ctx = srv.port, p.ctx("mail")
    c = HttpConn(port, ctx)
    try:
        r = c.request("GET", "/invoices/00095234")
        j = r.json() or {}
        check("GET /invoices/00095234 -> 200, the seed's invoice with amount_minor, "
              "currency, created_at",
              r.status == 200 and j.get("invoice_number") == "00095234"
              and j.get("firstname") == "John" and j.get("invoice_price") == "10USD"
              and j.get("amount_minor") == 1000 and j.get("currency") == "USD"
              and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", str(j.get("created_at"))),
              repr(r))
        r = c.request("GET", "/invoices/99999999")
        check("GET /invoices/99999999 (unknown) -> 404 JSON error",
              r.status == 404 and "error" in (r.json() or {}), repr(r))
        r = c.request("GET", "/no/such/path")
        check("GET /no/such/path -> 404", r.status == 404, repr(r))
        body = invoice("00095235")
        r = c.request("POST", "/invoices", body)
        j = r.json() or {}
        check("POST /invoices -> 201, Location, invoice_price 10.50USD",
              r.status == 201 and r.headers.get("location", "").endswith("/invoices/00095235")
              and j.get("invoice_price") == "10.50USD" and j.get("amount_minor") == 1050
              and j.get("invoice_number") == "00095235" and j.get("email") == "ann@example.com"
              and "created_at" in j,
              "%r location=%r" % (r, r.headers.get("location")))
        r = c.request("POST", "/invoices", body)
        check("POST the same invoice again -> 200", r.status == 200, repr(r))
        r = c.request("POST", "/invoices", invoice("00095235", amount=999))
        check("POST the same number with other content -> 409", r.status == 409, repr(r))
        r = c.request("GET", "/invoices/00095235")
        check("GET /invoices/00095235 -> 200 with the first content",
              r.status == 200 and (r.json() or {}).get("amount_minor") == 1050, repr(r))
        key = {"Idempotency-Key": "test-key-0001"}
        r1 = c.request("POST", "/invoices", invoice("00095236", amount=2000), key)
        r2 = c.request("POST", "/invoices", invoice("00095236", amount=2000), key)
        check("Idempotency-Key replay -> the same 201 and body",
              r1.status == 201 and r2.status == 201 and r1.body == r2.body,
              "first %r, replay %r" % (r1, r2))
        # Keys belong to their client: the same key from another client is
        # not a replay of the first client's request (that would be 201); it
        # is that client's own first request, for an invoice that exists.
        c2 = HttpConn(port, p.ctx("p-cn"))
        try:
            r3 = c2.request("POST", "/invoices", invoice("00095236", amount=2000), key)
        finally:
            c2.close()
        check("Idempotency-Key of another client is its own: 200 (stored already), "
              "not the first client's 201", r3.status == 200, repr(r3))
        r = c.request("POST", "/invoices", '{"invoice_number": "00095237", ')
        check("POST invalid JSON -> 400 naming the body",
              r.status == 400 and "body" in str((r.json() or {}).get("reason", "")), repr(r))
        b = invoice("00095238")
        del b["email"]
        r = c.request("POST", "/invoices", b)
        check("POST without email -> 400 naming email",
              r.status == 400 and "email" in str((r.json() or {}).get("reason", "")), repr(r))
        r = c.request("POST", "/invoices", invoice("00095239", amount="10.50"))
        check("POST with amount_minor as a string -> 400 naming amount_minor",
              r.status == 400 and "amount_minor" in str((r.json() or {}).get("reason", "")),
              repr(r))
        r = c.request("DELETE", "/")
        check("DELETE / -> 405 with Allow", r.status == 405 and "allow" in r.headers, repr(r))
        r = c.request("GET", "/healthz")
        check("GET /healthz -> 200 ok", r.status == 200 and r.body.strip() == b"ok", repr(r))
        # Paging to the end with limit=1.
        want = {"00095234", "00095235", "00095236"}
        seen, path, pages, problems = [], "/invoices?limit=1", 0, []
        while path and pages < 50:
            pages += 1
            r = c.request("GET", path)
            j = r.json()
            if r.status != 200 or not isinstance(j, dict) or "invoices" not in j:
                problems.append("page %d: %r" % (pages, r))
                break
            if len(j["invoices"]) > 1:
                problems.append("page %d has %d invoices" % (pages, len(j["invoices"])))
            seen += [i.get("invoice_number") for i in j["invoices"]]
            nxt = j.get("next")
            path = "/invoices?limit=1&after=%s" % nxt if nxt is not None else None
        if path:
            problems.append("no end (next never null) after %d pages" % pages)
        if len(seen) != len(set(seen)):
            problems.append("duplicates: %r" % seen)
        if set(seen) != want:
            problems.append("saw %r, expected %r" % (sorted(set(seen)), sorted(want)))
        check("GET /invoices?limit=1 pages via next to the end, each invoice once",
              not problems, "; ".join(problems))
        r = c.request("GET", "/invoices?limit=0")
        check("GET /invoices?limit=0 -> 400", r.status == 400, repr(r))
        r = c.request("GET", "/")
        check("GET / -> the newest invoice (00095236 after the POSTs)",
              r.status == 200 and (r.json() or {}).get("invoice_number") == "00095236", repr(r))
        r = c.request("GET", "/whoami")
        j = r.json() or {}
        check("GET /whoami with no policy: every role",
              r.status == 200 and sorted(j.get("roles", [])) == ["metrics", "read", "write"],
              repr(r))
    except Exception as e:  # noqa: BLE001
        fail("routes: a request failed", "%s: %s" % (type(e).__name__, e))
    finally:
        c.close()


def still_serves(name, port, ctx):
    resp, err = try_request(port, ctx, "GET", "/healthz")
    check(name, resp is not None and resp.status == 200, err or repr(resp))


def malformed(srv, p):
    """Check 6: malformed HTTP gets the right status; the server goes on."""
    port, ctx = srv.port, p.ctx("mail")
    many = "".join("X-H%d: v\r\n" % i for i in range(100))
    cases = [
        ("garbage bytes", b"\x00\x01\x02garbage garbage\r\n\r\n", 400),
        ("request line of garbage", b"HELLO there, server\r\n\r\n", 400),
        ("head over 8192 bytes", ("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: %s\r\n\r\n"
                                  % ("a" * 9000)).encode(), 431),
        ("100 headers", ("GET / HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % many).encode(), 431),
        ("Content-Length with Transfer-Encoding",
         b"POST /invoices HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("bad chunk size",
         b"POST /invoices HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
         b"\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
        ("Content-Length over --max-body",
         b"POST /invoices HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4096\r\n\r\n", 413),
        ("chunked body over --max-body",
         b"POST /invoices HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
         + b"bb8\r\n" + b"x" * 3000 + b"\r\n0\r\n\r\n", 413),
        ("POST without a length", b"POST /invoices HTTP/1.1\r\nHost: localhost\r\n\r\n", 411),
    ]
    for label, data, want in cases:
        try:
            r = raw_exchange(port, ctx, data)
            check("malformed: %s -> %d" % (label, want),
                  r.status == want and "error" in (r.json() or {}), repr(r))
        except Exception as e:  # noqa: BLE001
            fail("malformed: %s -> %d" % (label, want), "%s: %s" % (type(e).__name__, e))
        still_serves("malformed: after %s a new connection gets 200" % label, port, ctx)


def keepalive_pipelining(srv, p):
    port, ctx = srv.port, p.ctx("mail")
    try:
        c = HttpConn(port, ctx)
        try:
            st = [c.request("GET", path).status
                  for path in ("/healthz", "/invoices/00095234", "/")]
        finally:
            c.close()
        expect_eq("keep-alive: 3 requests on one connection", [200, 200, 200], st)
    except Exception as e:  # noqa: BLE001
        fail("keep-alive: 3 requests on one connection", "%s: %s" % (type(e).__name__, e))
    try:
        c = HttpConn(port, ctx)
        try:
            c.send(build_request("GET", "/invoices/00095234")
                   + build_request("GET", "/healthz")
                   + build_request("GET", "/no-such-thing"))
            rs = [c.read_response() for _ in range(3)]
        finally:
            c.close()
        check("pipelining: 3 requests in one write, 3 responses in order",
              [r.status for r in rs] == [200, 200, 404]
              and b"00095234" in rs[0].body and rs[1].body.strip() == b"ok",
              repr(rs))
    except Exception as e:  # noqa: BLE001
        fail("pipelining: 3 requests in one write, 3 responses in order",
             "%s: %s" % (type(e).__name__, e))


def half_open(srv, p):
    """200 connections that never finish a handshake; a good client is
    still served promptly."""
    socks = []
    partial_hello = bytes.fromhex("160301020001") + b"\x00\x01\xfc\x03\x03" + os.urandom(20)
    try:
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5 * SLOW)
            if i % 2:
                s.sendall(partial_hello)
            socks.append(s)
    except OSError as e:
        fail("200 half-open TLS connections are opened", "after %d: %s" % (len(socks), e))
    t0 = time.monotonic()
    resp, err = try_request(srv.port, p.ctx("mail"), "GET", "/")
    dt = time.monotonic() - t0
    check("with %d half-open TLS connections a good client gets 200 in < 5 s" % len(socks),
          resp is not None and resp.status == 200 and dt < 5 * SLOW,
          "%s after %.1f s" % (err or repr(resp), dt))
    for s in socks:
        s.close()


def metric(text, name, labels=""):
    m = re.search(r"^%s%s (\d+(?:\.\d+)?)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return float(m.group(1)) if m else None


def metrics_after(srv, p):
    r, err = try_request(srv.port, p.ctx("mail"), "GET", "/metrics")
    if r is None or r.status != 200:
        fail("GET /metrics -> Prometheus text", err or repr(r))
        return
    t = r.body.decode("utf-8", "replace")
    hs = metric(t, "twoway_handshakes_total")
    problems = []
    if not r.headers.get("content-type", "").startswith("text/plain"):
        problems.append("content-type %r" % r.headers.get("content-type"))
    if not hs:
        problems.append("twoway_handshakes_total is %r" % hs)
    for reason in ("unknown_ca", "expired", "not_yet_valid", "revoked", "wrong_usage",
                   "bad_certificate", "no_certificate"):
        v = metric(t, "twoway_refusals_total", '{reason="%s"}' % reason)
        if v is None or v < 2:
            problems.append("refusals{reason=%s} is %r, expected >= 2" % (reason, v))
    check("GET /metrics -> Prometheus text with twoway_handshakes_total and refusals by reason",
          not problems, "; ".join(problems))


# ------------------------------------------------------------------ policy

def section_policy(tmp, p):
    """Check 4: --allow and --policy, roles by every field, the CN trick."""
    srv = Server(tmp, "allow", ["--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"],
                                "--ca", p.abc_ca, "--db", p.path("allow.db"),
                                "--allow", "read O=MailServer"])
    try:
        srv.start()
    except SetupError as e:
        fail("policy: server with --allow 'read O=MailServer' starts", e)
    else:
        try:
            check("policy: with --allow the server does not say any certificate may read",
                  "any certificate" not in srv.log(), srv.log()[-300:])
            port = srv.port
            r, err = try_request(port, p.ctx("mail"), "GET", "/")
            check("--allow 'read O=MailServer': O=MailServer client GET / -> 200",
                  r is not None and r.status == 200, err or repr(r))
            mail = p.inspect("mail")
            r, err = try_request(port, p.ctx("mail"), "GET", "/whoami")
            j = (r.json() if r else None) or {}
            check("/whoami shows subject, serial, roles and the matched rule",
                  r is not None and r.status == 200 and j.get("subject") == mail["subject"]
                  and norm_serial(str(j.get("serial"))) == norm_serial(mail["serial"])
                  and j.get("roles") == ["read"]
                  and "O=MailServer" in str((j.get("matched") or {}).get("read")),
                  err or repr(r))
            r, err = try_request(port, p.ctx("mail"), "POST", "/invoices", invoice("00095300"))
            j = (r.json() if r else None) or {}
            check("--allow 'read O=MailServer': POST (no write role) -> 403 naming the identity",
                  r is not None and r.status == 403 and mail["subject"] in str(j.get("reason")),
                  err or repr(r))
            trick = p.inspect("trick")
            r, err = try_request(port, p.ctx("trick"), "GET", "/")
            j = (r.json() if r else None) or {}
            check("CN trick: subject /CN=O=MailServer gets 403 under 'read O=MailServer'",
                  r is not None and r.status == 403 and trick["subject"] in str(j.get("reason")),
                  err or repr(r))
            r, err = try_request(port, p.ctx("mail"), "GET", "/metrics")
            check("--allow 'read O=MailServer': GET /metrics without the role -> 403",
                  r is not None and r.status == 403, err or repr(r))
            check("policy: a 403 is logged as a policy_denied refusal",
                  srv.wait_log(r"reason=policy_denied", 0, timeout=5), srv.log()[-300:])
        finally:
            srv.stop()

    fp = p.inspect("p-fp")["fingerprint_sha256"]
    spki = p.inspect("p-spki")["spki_sha256"]
    pol = p.path("policy.txt")
    with open(pol, "w") as f:
        f.write("""# roles for the integration test
read O=MailServer
read CN=reader-cn
read OU=Billing
read dns=*.svc.abc.example
read uri=spiffe://abc.example/svc/*
read sha256=%s
read spki=%s
# a quoted value
read O="Two Words Inc."
write O=MailServer OU=Writers
metrics CN=prometheus
""" % (fp, spki))
    srv = Server(tmp, "policy", ["--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"],
                                 "--ca", p.abc_ca, "--db", p.path("policy.db"),
                                 "--policy", pol])
    try:
        srv.start()
    except SetupError as e:
        fail("policy: server with --policy FILE starts", e)
        return
    try:
        port = srv.port
        cases = [
            ("O=MailServer", "mail", 200),
            ("CN=reader-cn", "p-cn", 200),
            ("CN=reader-cn does not match CN=reader-cn2", "p-cn-neg", 403),
            ("OU=Billing", "p-ou", 200),
            ("dns=*.svc.abc.example matches api.svc.abc.example", "p-dns", 200),
            ("dns=*.svc.abc.example does not match a.b.svc.abc.example", "p-dns-deep", 403),
            ("dns=*.svc.abc.example does not match api.other.example", "p-dns-neg", 403),
            ("uri=spiffe://abc.example/svc/* matches .../svc/billing", "p-uri", 200),
            ("uri=spiffe://abc.example/svc/* does not match .../svc/billing/extra",
             "p-uri-deep", 403),
            ("uri=spiffe://abc.example/svc/* does not match spiffe://zzz.example/...",
             "p-uri-neg", 403),
            ("sha256= fingerprint", "p-fp", 200),
            ("spki= key pin", "p-spki", 200),
            ('O="Two Words Inc." (quoted)', "p-quoted", 200),
            ("no rule matches", "p-none", 403),
            ("CN trick /CN=O=MailServer", "trick", 403),
        ]
        for label, name, want in cases:
            r, err = try_request(port, p.ctx(name), "GET", "/")
            if want == 403:
                subj = p.inspect(name)["subject"]
                j = (r.json() if r else None) or {}
                check("--policy: %s -> GET / 403 naming the identity" % label,
                      r is not None and r.status == 403 and subj in str(j.get("reason"))
                      and j.get("error"), err or repr(r))
            else:
                check("--policy: %s -> GET / 200" % label,
                      r is not None and r.status == 200, err or repr(r))
        r, err = try_request(port, p.ctx("p-dns"), "GET", "/whoami")
        j = (r.json() if r else None) or {}
        check("--policy: /whoami names the matched rule (dns=*.svc.abc.example)",
              r is not None and "dns=*.svc.abc.example" in str((j.get("matched") or {}).get("read"))
              and "DNS:api.svc.abc.example" in j.get("sans", []), err or repr(r))
        r, err = try_request(port, p.ctx("p-none"), "GET", "/whoami")
        j = (r.json() if r else None) or {}
        check("--policy: /whoami of an identity with no rule shows no roles",
              r is not None and r.status == 200 and j.get("roles") == [], err or repr(r))
        r, err = try_request(port, p.ctx("p-writer"), "POST", "/invoices", invoice("00095400"))
        check("--policy: role write (O=MailServer OU=Writers) -> POST 201",
              r is not None and r.status == 201, err or repr(r))
        r, err = try_request(port, p.ctx("mail"), "POST", "/invoices", invoice("00095401"))
        check("--policy: O=MailServer without OU=Writers -> POST 403",
              r is not None and r.status == 403, err or repr(r))
        r, err = try_request(port, p.ctx("p-prom"), "GET", "/metrics")
        t = r.body.decode("utf-8", "replace") if r else ""
        check("--policy: role metrics -> /metrics 200 with handshakes and refusals by reason",
              r is not None and r.status == 200 and metric(t, "twoway_handshakes_total")
              and 'twoway_refusals_total{reason="policy_denied"}' in t, err or repr(r))
        r, err = try_request(port, p.ctx("mail"), "GET", "/metrics")
        check("--policy: /metrics without the metrics role -> 403",
              r is not None and r.status == 403, err or repr(r))
    finally:
        srv.stop()


# ------------------------------------------------------------ slow client

def section_slow(tmp, p):
    srv = Server(tmp, "slow", ["--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"],
                               "--ca", p.abc_ca, "--db", p.path("slow.db"),
                               "--header-timeout", "1"])
    try:
        srv.start()
    except SetupError as e:
        fail("slow client: server with --header-timeout 1 starts", e)
        return
    try:
        name = "slow client: half a request line -> 408 or a close within ~3 s"
        try:
            c = HttpConn(srv.port, p.ctx("mail"))
            t0 = time.monotonic()
            c.send(b"GET /invoi")
            # Deliberately slow: this read waits out --header-timeout 1, the
            # thing under test, and gives up at 3.5 s.
            c.sock.settimeout(3.5 * SLOW)
            try:
                r = c.read_response()
                got = r.status
            except EOFError:
                got = "close"
            except (socket.timeout, TimeoutError):
                got = "nothing"
            except (ssl.SSLError, OSError) as e:
                got = "close (%s)" % e
            dt = time.monotonic() - t0
            c.close()
            check(name, (got == 408 or str(got).startswith("close")) and dt < 3.5 * SLOW,
                  "got %s after %.1f s" % (got, dt))
        except Exception as e:  # noqa: BLE001
            fail(name, "%s: %s" % (type(e).__name__, e))
        still_serves("slow client: the server still serves afterwards", srv.port, p.ctx("mail"))
    finally:
        srv.stop()


# ------------------------------------------------------------- durability

def section_durability(tmp, p):
    db = p.path("durable.db")
    args = ["--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"], "--ca", p.abc_ca,
            "--db", db]
    srv = Server(tmp, "durable", args)
    try:
        srv.start()
    except SetupError as e:
        fail("durability: server starts", e)
        return
    created, errors = [], []
    created_by = {1: 0, 2: 0}  # 201s per posting thread
    stop = threading.Event()

    def poster(tid):
        i, c = 0, None
        while not stop.is_set():
            try:
                if c is None:
                    c = HttpConn(srv.port, p.ctx("mail"), timeout=5 * SLOW)
                i += 1
                num = "D%d-%06d" % (tid, i)
                r = c.request("POST", "/invoices", invoice(num, amount=100 + i))
                if r.status == 201:
                    with _lock:
                        created.append(num)
                        created_by[tid] += 1
                else:
                    errors.append("%s: HTTP %d" % (num, r.status))
            except Exception as e:  # noqa: BLE001 - expected once killed
                errors.append("%s" % e)
                if c is not None:
                    c.close()
                c = None
                if not srv.alive():
                    break
                time.sleep(0.01)  # deliberate: a pause before reconnecting
        if c is not None:
            c.close()

    threads = [threading.Thread(target=poster, args=(t,), daemon=True) for t in (1, 2)]
    for t in threads:
        t.start()
    # Both clients are well into their POSTs when the SIGKILL comes.
    want = 100
    late = ""
    try:
        wait_for(lambda: min(created_by.values()) >= want, 10,
                 lambda: "%d 201s for each posting client (they have %s)"
                 % (want, sorted(created_by.values())))
    except WaitTimeout as e:
        late = "; %s" % e
    srv.proc.kill()  # SIGKILL while the POSTs run
    srv.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10 * SLOW)
    check("durability: clients got 201s before the SIGKILL", len(created) > 0 and not late,
          "%d 201s%s; errors: %r" % (len(created), late, errors[:3]))
    srv2 = Server(tmp, "durable-restart", args)
    try:
        srv2.start()
    except SetupError as e:
        fail("durability: server restarts on the same --db after SIGKILL", e)
        return
    try:
        missing, problems = [], []
        c = HttpConn(srv2.port, p.ctx("mail"))
        try:
            for num in created:
                r = c.request("GET", "/invoices/%s" % num)
                if r.status != 200:
                    missing.append("%s (HTTP %d)" % (num, r.status))
        except Exception as e:  # noqa: BLE001
            problems.append("%s: %s" % (type(e).__name__, e))
        finally:
            c.close()
        check("durability: every invoice that got a 201 (%d) is there after kill -9"
              % len(created), not missing and not problems,
              "missing %d: %s %s" % (len(missing), missing[:5], problems))
    finally:
        srv2.stop()


# ----------------------------------------------------------------- reload

class Loop:
    """GET /healthz in a loop: on one keep-alive connection, or on a new
    connection each time.  Counts successes and failures."""

    def __init__(self, port, ctx, keepalive):
        self.port, self.ctx, self.keepalive = port, ctx, keepalive
        self.ok, self.failures, self.errors = 0, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        c = None
        while not self.stop.is_set():
            try:
                if c is None:
                    c = HttpConn(self.port, self.ctx)
                r = c.request("GET", "/healthz")
                if r.status == 200:
                    self.ok += 1
                else:
                    self.failures += 1
                    self.errors.append("HTTP %d" % r.status)
                if not self.keepalive:
                    c.close()
                    c = None
            except Exception as e:  # noqa: BLE001
                self.failures += 1
                self.errors.append("%s: %s" % (type(e).__name__, e))
                if c is not None:
                    c.close()
                c = None
                time.sleep(0.05)  # deliberate: a pause before reconnecting
        if c is not None:
            c.close()

    def finish(self):
        self.stop.set()
        self.thread.join(20 * SLOW)


def section_reload(tmp, p):
    """Check 8: new server certificate and CRL under load, then a bad CRL."""
    crl = p.path("reload-crl.pem")
    shutil.copy(p.path("crl.pem"), crl)
    srv = Server(tmp, "reload", ["--cert", p.c["rel-srv"]["cert"],
                                 "--key", p.c["rel-srv"]["key"], "--ca", p.abc_ca,
                                 "--crl", crl, "--db", p.path("reload.db"),
                                 "--reload-check", "0"])
    try:
        srv.start()
    except SetupError as e:
        fail("reload: server starts", e)
        return
    try:
        r, err = try_request(srv.port, p.ctx("rel-victim"), "GET", "/healthz")
        check("reload: the second client is served before its revocation",
              r is not None and r.status == 200, err or repr(r))
        # It also keeps a keep-alive connection open across the reload.
        victim = None
        try:
            victim = HttpConn(srv.port, p.ctx("rel-victim"))
            r = victim.request("GET", "/healthz")
            check("reload: the second client's keep-alive connection is served",
                  r.status == 200, repr(r))
        except Exception as e:  # noqa: BLE001
            fail("reload: the second client's keep-alive connection is served",
                 "%s: %s" % (type(e).__name__, e))
        loops = [Loop(srv.port, p.ctx("mail"), True), Loop(srv.port, p.ctx("mail"), False)]
        late = []  # what the loops did not do in time, for the checks below

        def served(goal):
            return lambda: all(lp.ok >= n for lp, n in zip(loops, goal))

        def counts():
            return "(keep-alive loop %d ok, %d failed; new-connection loop %d ok, %d failed)" % (
                loops[0].ok, loops[0].failures, loops[1].ok, loops[1].failures)
        try:
            wait_for(served([20, 20]), 10,
                     lambda: "20 answers in each loop before the reload %s" % counts())
        except WaitTimeout as e:
            late.append(str(e))
        before = [lp.ok for lp in loops]
        mark = srv.mark()
        p.tw("issue", "--ca", "abc", "--out", p.path("rel-srv"), "--subject",
             "/CN=localhost/O=InvoiceServer", "--server", "--force")
        p.tw("revoke", "--ca", "abc", "--cert", p.c["rel-victim"]["cert"])
        p.tw("crl", "--ca", "abc", "--out", crl)
        srv.signal(signal.SIGHUP)
        m = srv.wait_log(r"reloaded", mark, timeout=10)
        check("reload: SIGHUP -> stderr says reloaded", m, srv.why(mark))
        # The loops go on past the reload: so many more answers each (the
        # new-connection loop's are handshakes with the new configuration).
        more = 50 if QUICK else 100
        at_reload = [lp.ok for lp in loops]
        goal = [n + more for n in at_reload]
        try:
            wait_for(served(goal), 10,
                     lambda: "%d more answers in each loop after the reload %s" % (more, counts()))
        except WaitTimeout as e:
            late.append(str(e))
        for lp in loops:
            lp.finish()
        after = [lp.ok for lp in loops]
        for i, kind in enumerate(("keep-alive", "new-connection")):
            lp = loops[i]
            check("reload: zero failed requests in the %s loop (%d ok)" % (kind, lp.ok),
                  lp.failures == 0 and before[i] > 0 and after[i] >= goal[i],
                  "%d failures (%s); ok before reload %d, at the reload %d, at the end %d "
                  "(wanted %d)%s" % (lp.failures, lp.errors[:3], before[i], at_reload[i],
                                     after[i], goal[i], "".join("; " + t for t in late)))
        try:
            c = HttpConn(srv.port, p.ctx("mail"))
            der = c.sock.getpeercert(binary_form=True)
            c.close()
            with open(p.c["rel-srv"]["cert"]) as f:
                new = ssl.PEM_cert_to_DER_cert(f.read())
            check("reload: new connections get the new server certificate", der == new,
                  "the server still presents the old certificate")
        except Exception as e:  # noqa: BLE001
            fail("reload: new connections get the new server certificate",
                 "%s: %s" % (type(e).__name__, e))
        # The connection opened before the reload is checked again at its
        # next request: revoked now, so 403 naming the reason, then closed.
        try:
            r = victim.request("GET", "/healthz") if victim else None
            check("reload: the revoked client's open connection gets 403 'revoked'",
                  r is not None and r.status == 403 and b"revoked" in r.body,
                  repr(r))
        except Exception as e:  # noqa: BLE001
            fail("reload: the revoked client's open connection gets 403 'revoked'",
                 "%s: %s" % (type(e).__name__, e))
        finally:
            if victim:
                victim.close()
        check("reload: the refusal after the reload is logged",
              srv.wait_log(r"refused .*reason=revoked .*after a reload", mark, timeout=5),
              srv.why(mark))
        facts = cert_facts(p.c["rel-victim"]["cert"])
        for v, vname in ((V12, "1.2"), (V13, "1.3")):
            expect_refused("reload: revoked-by-the-new-CRL client TLS %s" % vname, srv,
                           p.ctx("rel-victim", v), "revoked", facts)
        # A bad new configuration is refused; the old one stays.
        mark = srv.mark()
        with open(crl, "w") as f:
            f.write("-----BEGIN X509 CRL-----\nthis is not a CRL\n-----END X509 CRL-----\n")
        srv.signal(signal.SIGHUP)
        m = srv.wait_log(r"reload .*failed, keeping generation", mark, timeout=10)
        check("reload: garbage CRL + SIGHUP -> 'reload ... failed, keeping generation'",
              m, srv.why(mark))
        still_serves("reload: after the failed reload the server still serves",
                     srv.port, p.ctx("mail"))
        expect_refused("reload: after the failed reload the revoked client is still refused",
                       srv, p.ctx("rel-victim"), "revoked", facts)
    finally:
        srv.stop()


# ---------------------------------------------------------------- SIGTERM

def section_sigterm(tmp, p):
    """Check 9: SIGTERM while a request is in flight."""
    srv = Server(tmp, "sigterm", ["--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"],
                                  "--ca", p.abc_ca, "--db", p.path("sigterm.db")])
    try:
        srv.start()
    except SetupError as e:
        fail("SIGTERM: server starts", e)
        return
    name = "SIGTERM with a POST in flight: the response completes (201)"
    idle = c = None
    try:
        idle = HttpConn(srv.port, p.ctx("mail"))  # an idle keep-alive connection
        idle.request("GET", "/healthz")
        c = HttpConn(srv.port, p.ctx("mail"))
        body = json.dumps(invoice("00095500")).encode()
        # Expect: 100-continue makes the server say when it has the head:
        # from then on the request is in flight.
        head = ("POST /invoices HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
                "\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)).encode()
        c.send(head + body[:20])
        try:
            c.read_continue()
        except (socket.timeout, TimeoutError):
            raise WaitTimeout("the server's 100 Continue to the POST head did not come "
                              "within %d s" % (10 * SLOW))
        mark = srv.mark()
        srv.signal(signal.SIGTERM)
        # The rest of the body goes out only once the server drains: it has
        # said so, and no worker accepts connections any more.
        if not srv.wait_log(r"SIGTERM: draining connections", mark, timeout=10):
            raise WaitTimeout("no 'SIGTERM: draining connections' line: %s" % srv.why(mark))
        wait_for(lambda: refuses_connections(srv.port), 10,
                 "the server refusing new connections after SIGTERM")
        try:
            c.send(body[20:])
            r = c.read_response()
            check(name, r.status == 201, repr(r))
        except Exception as e:  # noqa: BLE001
            fail(name, "%s: %s; server %s" % (type(e).__name__, e,
                                               "running" if srv.alive() else
                                               "exited %s" % srv.proc.poll()))
    except Exception as e:  # noqa: BLE001
        fail(name, "%s: %s" % (type(e).__name__, e))
        srv.signal(signal.SIGTERM)
    finally:
        for conn in (c, idle):
            if conn is not None:
                conn.close()
    try:
        rc = srv.proc.wait(15 * SLOW)
        if rc == 0:
            ok("SIGTERM: the server then exits 0")
        else:
            fail("SIGTERM: the server then exits 0",
                 "%s; stderr tail: %s" % ("killed by signal %d" % -rc if rc < 0 else "exit %d" % rc,
                                          srv.log()[-300:]))
    except subprocess.TimeoutExpired:
        srv.kill()
        fail("SIGTERM: the server then exits 0", "still running %d s after SIGTERM" % (15 * SLOW))


# ------------------------------------------------------------- resumption

def start_server(tmp, p, name, label, args):
    """invoice-server with the ABC server certificate and `args`, started;
    None (and a failed check) when it does not start."""
    srv = Server(tmp, name, ["--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"]]
                 + args)
    try:
        srv.start()
        return srv
    except SetupError as e:
        fail("%s: server starts" % label, e)
        return None


def section_resumption(tmp, p):
    """Check 10: resumption on TLS 1.2 and 1.3, and never past a revocation."""
    crl = p.path("resume-crl.pem")
    shutil.copy(p.path("crl.pem"), crl)
    srv = start_server(tmp, p, "resume", "resumption",
                       ["--ca", p.abc_ca, "--crl", crl, "--db", p.path("resume.db"),
                        "--reload-check", "0"])
    if srv is None:
        return
    try:
        sessions = {}
        for v, vname in ((V12, "1.2"), (V13, "1.3")):
            name = "resumption: TLS %s session reuse works" % vname
            try:
                ctx = p.ctx("res-client", v)
                c = HttpConn(srv.port, ctx)
                r1 = c.request("GET", "/whoami")
                sess = c.sock.session
                c.close()
                c = HttpConn(srv.port, ctx, session=sess)
                r2 = c.request("GET", "/whoami")
                reused = c.sock.session_reused
                fresh = c.sock.session
                c.close()
                j = r2.json() or {}
                sessions[vname] = (ctx, fresh if fresh is not None else sess)
                check(name, r1.status == 200 and r2.status == 200 and reused
                      and j.get("resumed") is True,
                      "first %r, second %r, session_reused=%s" % (r1, r2, reused))
            except Exception as e:  # noqa: BLE001
                fail(name, "%s: %s" % (type(e).__name__, e))
        mark = srv.mark()
        p.tw("revoke", "--ca", "abc", "--cert", p.c["res-client"]["cert"])
        p.tw("crl", "--ca", "abc", "--out", crl)
        srv.signal(signal.SIGHUP)
        check("resumption: revoke + SIGHUP -> reloaded",
              srv.wait_log(r"reloaded", mark, timeout=10), srv.why(mark))
        facts = cert_facts(p.c["res-client"]["cert"])
        for vname, (ctx, sess) in sessions.items():
            expect_refused("resumption: TLS %s resumption after revocation" % vname, srv, ctx,
                           "revoked", facts, session=sess)
    finally:
        srv.stop()

def section_session_cache(tmp, p):
    """The session cache is bounded in bytes (--session-cache) and shown in
    /metrics; a size it cannot use is refused at start; 0 turns it off.
    Regression: the default cache kept ~11 KB per session up to 20,480
    sessions, and idle connections opened and closed grew the server from
    16 MB to 202 MB."""
    r = run([SERVER, "--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"],
             "--ca", p.abc_ca, "--session-cache", "1K"])
    check("session cache: --session-cache 1K is refused with exit 2, naming the option",
          r.returncode == 2 and "--session-cache '1K'" in r.stderr, r.text)
    srv = start_server(tmp, p, "sesscache", "session cache",
                       ["--ca", p.abc_ca, "--db", p.path("sesscache.db"),
                        "--session-cache", "32K", "--reload-check", "0", "--workers", "1"])
    if srv is None:
        return
    try:
        handshakes = 40 if not QUICK else 20
        for i in range(handshakes):
            for v in (V12, V13):
                c = HttpConn(srv.port, p.ctx("mail", v))
                c.request("GET", "/healthz")
                c.close()
        r, err = try_request(srv.port, p.ctx("mail"), "GET", "/metrics")
        t = r.body.decode("utf-8", "replace") if r is not None else ""
        held = metric(t, "twoway_session_cache_bytes")
        count = metric(t, "twoway_session_cache_sessions")
        check("session cache: %d full handshakes keep the cache within --session-cache 32K "
              "(twoway_session_cache_bytes)" % (2 * handshakes),
              held is not None and 0 < held <= 32 * 1024 and count is not None and count >= 1,
              "bytes %r, sessions %r; %s" % (held, count, err or ""))
    finally:
        srv.stop()
    srv = start_server(tmp, p, "nocache", "session cache off",
                       ["--ca", p.abc_ca, "--db", p.path("nocache.db"),
                        "--session-cache", "0", "--reload-check", "0"])
    if srv is None:
        return
    try:
        ctx = p.ctx("res-client", V12)
        c = HttpConn(srv.port, ctx)
        c.request("GET", "/healthz")
        sess = c.sock.session
        c.close()
        c = HttpConn(srv.port, ctx, session=sess)
        r = c.request("GET", "/healthz")
        reused = c.sock.session_reused
        c.close()
        check("session cache: --session-cache 0 resumes nothing (TLS 1.2 session id)",
              r.status == 200 and not reused, "reused=%s, %r" % (reused, r))
    finally:
        srv.stop()


def concat(out, *files):
    with open(out, "wb") as o:
        for f in files:
            with open(f, "rb") as i:
                o.write(i.read())
    return out


def section_two_cas(tmp, p):
    """Check 11: two CAs in --ca, and one CRL of each in one --crl file."""
    cas = concat(p.path("two-cas.pem"), p.abc_ca, p.path("zxc", "ca.cert.pem"))
    crls = concat(p.path("two-crls.pem"), p.path("crl.pem"), p.path("zxc-crl.pem"))
    srv = start_server(tmp, p, "twocas", "two CAs (both CRLs in one --crl file)",
                       ["--ca", cas, "--crl", crls, "--db", p.path("twocas.db")])
    if srv is None:
        return
    ok("two CAs: invoice-server starts with both CRLs in one --crl file")
    try:
        for v, vname in ((V12, "1.2"), (V13, "1.3")):
            for name in ("mail", "zxc-mail"):
                r, why = try_request(srv.port, p.ctx(name, v), "GET", "/invoices/00095234")
                check("two CAs: %s client answered on TLS %s" % (name, vname),
                      r is not None and r.status == 200, why or repr(r))
            for name in ("revoked", "zxc-revoked"):
                expect_refused("two CAs: %s client refused on TLS %s (its CA's CRL)"
                               % (name, vname), srv, p.ctx(name, v), "revoked",
                               cert_facts(p.c[name]["cert"]))
    finally:
        srv.stop()


def section_stale_crl(tmp, p):
    """Check 12: a CRL past its nextUpdate is said at start, once; its CA's
    clients are refused (crl_unusable) until a fresh CRL and SIGHUP."""
    crl = p.path("stale-crl.pem")
    must(["openssl", "ca", "-config", p.path("ossl", "ca.cnf"), "-gencrl",
          "-crl_lastupdate", "20200101000000Z", "-crl_nextupdate", "20200102000000Z",
          "-out", crl])
    srv = start_server(tmp, p, "stalecrl", "stale CRL",
                       ["--ca", p.abc_ca, "--crl", crl, "--db", p.path("stale.db"),
                        "--reload-check", "0"])
    if srv is None:
        return
    try:
        warning = r"warning: a CRL in \S+ is past its nextUpdate \(2020-01-02T00:00:00Z\)"
        check("stale CRL: the start-up log says the CRL is past its nextUpdate",
              srv.wait_log(warning, 0, timeout=5), srv.log()[-400:])
        expect_refused("stale CRL: a good client is refused", srv, p.ctx("mail", V13),
                       "crl_unusable", cert_facts(p.c["mail"]["cert"]))
        mark = srv.mark()
        p.tw("crl", "--ca", "abc", "--out", crl)
        srv.signal(signal.SIGHUP)
        check("stale CRL: fresh CRL + SIGHUP -> reloaded",
              srv.wait_log(r"reloaded", mark, timeout=10), srv.why(mark))
        r, why = try_request(srv.port, p.ctx("mail", V13), "GET", "/invoices/00095234")
        check("stale CRL: after the fresh CRL the client is answered",
              r is not None and r.status == 200, why or repr(r))
        check("stale CRL: the warning was said once, not again after the reload",
              len(re.findall(warning, srv.log())) == 1, srv.log()[-400:])
    finally:
        srv.stop()


# ------------------------------------------------------------------- main

def main():
    global SERVER, TWCA
    if len(sys.argv) != 2:
        print("usage: invoice_test.py BUILD_DIR", file=sys.stderr)
        return 2
    build = os.path.abspath(sys.argv[1])
    SERVER = os.path.join(build, "src/invoice/invoice-server")
    TWCA = os.path.join(build, "src/ca/twoway-ca")
    for b in (SERVER, TWCA):
        if not os.access(b, os.X_OK):
            fail("setup", "%s is missing or not executable" % b)
            print("%d passed, %d failed" % (_passed, _failed))
            return 1
    tmp = tempfile.mkdtemp(prefix="twoway-invoice-test.")
    started = time.monotonic()
    try:
        try:
            p = make_pki(tmp)
            ok("PKI: twoway-ca and openssl made every certificate (ABC, ZXC, expired, "
               "not yet valid, server-only, revoked + CRL, RSA-1024, policy identities)")
        except SetupError as e:
            fail("PKI: twoway-ca and openssl made every certificate", e)
            return 1
        r = run(["openssl", "x509", "-in", p.c["expired"]["cert"], "-noout", "-checkend", "0"])
        check("PKI: the expired client certificate is expired", r.returncode == 1, r.text)
        r = run(["openssl", "x509", "-in", p.c["notyet"]["cert"], "-noout", "-startdate"])
        check("PKI: the not-yet-valid client certificate starts in the future",
              utc(20)[:8] < time.strftime("%Y%m%d", time.strptime(
                  r.stdout.strip().split("=", 1)[-1], "%b %d %H:%M:%S %Y %Z"))
              if r.returncode == 0 else False, r.text)
        try:
            seed = make_seed_pki(tmp)
            ok("seed PKI: the seed's exact openssl commands")
        except SetupError as e:
            fail("seed PKI: the seed's exact openssl commands", e)
            seed = None
        sections = [("main", lambda: section_main(tmp, p)),
                    ("policy", lambda: section_policy(tmp, p)),
                    ("slow", lambda: section_slow(tmp, p)),
                    ("durability", lambda: section_durability(tmp, p)),
                    ("reload", lambda: section_reload(tmp, p)),
                    ("sigterm", lambda: section_sigterm(tmp, p)),
                    ("resumption", lambda: section_resumption(tmp, p)),
                    ("session cache", lambda: section_session_cache(tmp, p)),
                    ("two CAs", lambda: section_two_cas(tmp, p)),
                    ("stale CRL", lambda: section_stale_crl(tmp, p))]
        if seed:
            sections.insert(0, ("seed", lambda: section_seed(tmp, seed)))
        for name, fn in sections:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - report, go on
                fail("%s: the section stopped on an unexpected error" % name,
                     "%s: %s" % (type(e).__name__, e))
            finally:
                cleanup_servers()
        print("# %.0f s" % (time.monotonic() - started), file=sys.stderr, flush=True)
    finally:
        cleanup_servers()
        if KEEP:
            print("# TW_KEEP: the files are in %s" % tmp, file=sys.stderr, flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        print("%d passed, %d failed" % (_passed, _failed), flush=True)
    return 1 if _failed else 0


if __name__ == "__main__":
    sys.exit(main())
