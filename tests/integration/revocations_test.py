#!/usr/bin/env python3
"""invoice-server --revocations: revocations pushed from the CA index.

    usage: revocations_test.py BUILD_DIR

Starts its own PostgreSQL (pgserver.py), a CA whose index is there
(`twoway-ca init --db`), and two invoice-server instances, A and B, on the
same database with `--revocations`, listening as a role that may only read
the CA's certificates.  Checks (issue 13):

  - a client revoked with `twoway-ca revoke` (no CRL published, none given
    to the servers) is refused on both instances within 2 s: its keep-alive
    connections get 403 at their next request, a session it made before is
    not resumed (the full handshake refuses it, reason=revoked), and a new
    connection is refused; a client that was not revoked goes on;
  - each instance logs the revocation and the reload it made;
  - /metrics: twoway_revocations_up, _pushed_total, _held;
  - the listener's connection lost: a warning that the CRL alone refuses
    meanwhile; a revocation made while it was away is caught up when it is
    back, and refused as fast;
  - a server restarted refuses what was revoked before it started;
  - --revocations with something that is not a PostgreSQL URL, or a database
    without a CA index, is an error at start that says so.

Helpers (Server, PKI, HttpConn, ok/fail) come from invoice_test.py.
Environment: TW_WRAP, TW_QUICK, TW_KEEP as in invoice_test.py.
"""

import os
import re
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import invoice_test as it  # noqa: E402
import pgserver  # noqa: E402
import pgtest  # noqa: E402

ok, fail, check, expect_eq = it.ok, it.fail, it.check, it.expect_eq
SLOW = it.SLOW
LISTENER = "revocations_listener"


def start_pair(tmp, p, url, listen_url):
    common = ["--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"],
              "--ca", p.abc_ca, "--db", url, "--ticket-keys", p.keys,
              "--revocations", listen_url, "--allow", "read O=MailServer",
              "--allow", "metrics CN=ops"]
    return it.Server(tmp, "A", common).start(), it.Server(tmp, "B", common).start()


def revoke(p, name):
    p.tw("revoke", "--ca", "abc", "--cert", p.c[name]["cert"])
    return time.monotonic()


def refused_within(conn, t0, limit):
    """Ask on the keep-alive connection until it is answered 403; the time
    that took, or None."""
    while time.monotonic() - t0 < limit:
        try:
            r = conn.request("GET", "/")
        except (EOFError, OSError, ssl.SSLError):
            return None
        if r.status == 403:
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def section_pushed(tmp, p, pg, url, listen_url):
    a, b = start_pair(tmp, p, url, listen_url)
    mail, ops = p.ctx("mail", version=it.V13), p.ctx("ops")
    try:
        check("start: no warning about the revocations",
              "revocation" not in a.log() and "revocation" not in b.log(), a.log()[-300:])
        expect_eq("metrics: twoway_revocations_up 1", 1,
                  pgtest.metric(a, ops, "twoway_revocations_up"))
        open_conns = {s.name: it.HttpConn(s.port, mail) for s in (a, b)}
        for s in (a, b):
            expect_eq("before: %s answers the client on a keep-alive connection" % s.name,
                      200, open_conns[s.name].request("GET", "/").status)
        sess = pgtest.session_of(a.port, mail)
        c = it.HttpConn(b.port, mail, session=sess)
        c.request("GET", "/")
        check("before: A's session resumes on B", c.sock.session_reused, "")
        c.close()
        marks = {s.name: s.mark() for s in (a, b)}

        t0 = revoke(p, "mail")
        for s in (a, b):
            took = refused_within(open_conns[s.name], t0, 2 * SLOW)
            check("revoked: the keep-alive connection to %s gets 403 within 2 s" % s.name,
                  took is not None, "no 403 after %.1f s" % (time.monotonic() - t0))
            if took is not None:
                ok("revoked: %s refused it after %.2f s" % (s.name, took))
            open_conns[s.name].close()
        facts = it.cert_facts(p.c["mail"]["cert"])
        for s in (a, b):
            it.expect_refused("revoked: the session made before, offered to %s" % s.name,
                              s, mail, "revoked", facts, session=sess)
            it.expect_refused("revoked: a new connection to %s" % s.name, s,
                              p.ctx("mail"), "revoked", facts)
            expect_eq("revoked: another client of the CA goes on at %s" % s.name, 200,
                      it.request(s.port, p.ctx("mail2"), "GET", "/").status)
            log = s.since(marks[s.name])
            check("log: %s says who was revoked, and reloaded" % s.name,
                  re.search(r"revoked by the CA: serial %s \(/CN=mail/O=MailServer\)"
                            % facts["serial"], log, re.I) and
                  re.search(r"reloaded \(revocation pushed: serial %s\)" % facts["serial"],
                            log, re.I), log[-600:])
        expect_eq("metrics: twoway_revocations_pushed_total 1", 1,
                  pgtest.metric(b, ops, "twoway_revocations_pushed_total"))
        expect_eq("metrics: twoway_revocations_held 1", 1,
                  pgtest.metric(b, ops, "twoway_revocations_held"))
        return a, b
    except BaseException:
        a.stop()
        b.stop()
        raise


def section_catch_up(p, pg, a, b):
    """The listener role is locked out and its sessions ended: the
    instances say so; a revocation made meanwhile is caught up when the
    role may log in again."""
    ops = p.ctx("ops")
    try:
        marks = {s.name: s.mark() for s in (a, b)}
        pg.psql("twoway", "ALTER ROLE %s NOLOGIN" % LISTENER)
        pg.psql("twoway", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE usename = '%s'" % LISTENER)
        for s in (a, b):
            m = s.wait_log(r"warning: lost the connection to .*; the CRL alone refuses "
                           r"revoked clients until it is back", marks[s.name], timeout=5 * SLOW)
            check("outage: %s says the CRL alone refuses meanwhile" % s.name, m is not None,
                  s.since(marks[s.name])[-400:])
        expect_eq("outage: twoway_revocations_up 0", 0, pgtest.metric(a, ops, "twoway_revocations_up"))
        conn = it.HttpConn(a.port, p.ctx("mail3"))
        expect_eq("outage: mail3 is served before its revocation", 200,
                  conn.request("GET", "/").status)
        revoke(p, "mail3")
        time.sleep(0.5)
        expect_eq("outage: while away, A has not learnt of it yet", 200,
                  conn.request("GET", "/").status)
        t0 = time.monotonic()
        pg.psql("twoway", "ALTER ROLE %s LOGIN" % LISTENER)
        took = refused_within(conn, t0, 4 * SLOW)
        conn.close()
        check("back: the revocation made while away is refused within 4 s of the "
              "database taking the listener again (the backoff is at most 2 s)",
              took is not None, "")
        serial = it.cert_facts(p.c["mail3"]["cert"])["serial"]
        for s in (a, b):
            m = s.wait_log(r"caught up on the revocations of .*: 1 new since the last one seen",
                           marks[s.name], timeout=5 * SLOW)
            log = s.since(marks[s.name])
            check("back: %s caught up on one revocation and logged it" % s.name,
                  m is not None and re.search(r"revoked by the CA: serial %s" % serial, log, re.I),
                  log[-600:])
    finally:
        pg.psql("twoway", "ALTER ROLE %s LOGIN" % LISTENER)
        a.stop()
        b.stop()


def section_restart(tmp, p, url, listen_url):
    a, b = start_pair(tmp, p, url, listen_url)
    try:
        it.expect_refused("restart: a client revoked before the start", a, p.ctx("mail"),
                          "revoked", it.cert_facts(p.c["mail"]["cert"]))
        expect_eq("restart: the revocations held at start", 2,
                  pgtest.metric(a, p.ctx("ops"), "twoway_revocations_held"))
    finally:
        a.stop()
        b.stop()
    base = [it.SERVER, "--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"],
            "--ca", p.abc_ca, "--listen", "127.0.0.1:0", "--db", url]
    r = it.run(base + ["--revocations", "ca.db"], timeout=30 * SLOW)
    check("start: --revocations that is not a URL is a usage error",
          r.returncode == 2 and "not a PostgreSQL URL" in r.stderr, r.stderr[-300:])
    r = it.run(base + ["--revocations", url.replace("/twoway?", "/postgres?")],
               timeout=30 * SLOW)
    check("start: a database without a CA index is refused, saying so",
          r.returncode == 1 and "holds no twoway-ca index" in r.stderr, r.stderr[-300:])


def checks(tmp, pg):
    url = pg.url("twoway")
    p = it.PKI(tmp)
    p.tw("init", "abc", "--subject", "/O=ABC Inc.", "--db", url)
    p.abc_ca = p.path("abc", "ca.cert.pem")
    p.issue("srv", "/CN=localhost/O=InvoiceServer", "--server")
    for name in ("mail", "mail2", "mail3"):
        p.issue(name, "/CN=%s/O=MailServer" % name, "--client")
    p.issue("ops", "/CN=ops/O=ABC Inc.", "--client")
    p.keys = os.path.join(tmp, "ticket.keys")
    with open(os.open(p.keys, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(os.urandom(80).hex() + "\n")
    # The listener reads the CA's certificates and nothing else.
    pg.psql("twoway", "CREATE ROLE %s LOGIN; GRANT USAGE ON SCHEMA twoway_ca TO %s;"
                      " GRANT SELECT ON twoway_ca.certs TO %s"
            % (LISTENER, LISTENER, LISTENER))
    listen_url = url.replace("user=" + pgserver.SUPERUSER, "user=" + LISTENER)
    ok("setup: a private PostgreSQL with the CA index and a listener role")
    a, b = section_pushed(tmp, p, pg, url, listen_url)
    section_catch_up(p, pg, a, b)
    section_restart(tmp, p, url, listen_url)


if __name__ == "__main__":
    sys.exit(pgtest.run(__doc__, "twoway-revtest.", checks))
