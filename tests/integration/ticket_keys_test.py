#!/usr/bin/env python3
"""TLS ticket keys shared through PostgreSQL, sealed and rotated.

    usage: ticket_keys_test.py BUILD_DIR

Starts its own PostgreSQL (pgserver.py) and two invoice-server instances,
A and B, on one database with the same --ticket-keys file and
--ticket-rotate 6s (40s under TW_WRAP), and checks (issue 13):

  - the database holds the ticket keys sealed (AES-256-GCM under a key
    derived from the file): never the file's key, never a key in clear;
  - a session made on A resumes on B, in TLS 1.3 and 1.2, with keys from
    the database (an instance on SQLite with the same file does not resume
    it: the file's own key makes no tickets);
  - every period one key is added, by one instance at a time (an advisory
    lock), and every instance reloads with it; a session made before a
    rotation still resumes after it, on either instance; at most 4 keys
    are kept (not under TW_QUICK: it takes four periods);
  - an instance given another file is refused at start, saying why;
  - /metrics: twoway_ticket_keys, twoway_ticket_key_rotations_total.

Helpers come from invoice_test.py.  Environment: TW_WRAP, TW_KEEP.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import invoice_test as it  # noqa: E402
import pgtest  # noqa: E402

ok, fail, check, expect_eq = it.ok, it.fail, it.check, it.expect_eq
SLOW = it.SLOW
# Long enough for three instances to start, under valgrind too.
ROTATE = 6 if SLOW == 1 else 40


def keys_file(tmp, name):
    path = os.path.join(tmp, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(os.urandom(80).hex() + "\n")
    return path


def server_args(p, db, keys):
    return ["--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"], "--ca", p.abc_ca,
            "--db", db, "--ticket-keys", keys, "--ticket-rotate", "%ds" % ROTATE,
            "--allow", "read O=MailServer", "--allow", "metrics CN=ops"]


def resumes(port, ctx, sess):
    c = it.HttpConn(port, ctx, session=sess)
    r = c.request("GET", "/")
    reused = c.sock.session_reused
    c.close()
    return r.status == 200 and reused


def rows(pg):
    out = pg.psql("twoway", "SELECT id, created_at, sealed FROM "
                            "twoway_invoices.ticket_keys ORDER BY id")
    return [line.split("|") for line in out.splitlines() if line]


def run_checks(tmp, p, pg, url):
    keys = keys_file(tmp, "ticket.keys")
    file_key = open(keys).read().strip()
    a = it.Server(tmp, "A", server_args(p, url, keys)).start()
    b = it.Server(tmp, "B", server_args(p, url, keys)).start()
    v13, v12 = p.ctx("mail", version=it.V13), p.ctx("mail", version=it.V12)
    try:
        r = rows(pg)
        check("sealed: one key in the database, sealed (nonce, 80 bytes, tag)",
              len(r) == 1 and len(r[0][2]) == 2 * (12 + 80 + 16), r)
        check("sealed: the table holds neither the file's key nor its halves",
              all(file_key[i:i + 32] not in row[2] for row in r for i in range(0, 160, 32)),
              "")
        for name, ctx in (("TLS 1.3", v13), ("TLS 1.2", v12)):
            sess = pgtest.session_of(a.port, ctx)
            check("shared: a %s session made on A resumes on B" % name,
                  resumes(b.port, ctx, sess), "")
        c = it.Server(tmp, "C", server_args(p, os.path.join(tmp, "c.db"), keys)).start()
        try:
            check("shared: an instance on SQLite with the same file does not resume it "
                  "(the file's key is only the seal)",
                  not resumes(c.port, v13, pgtest.session_of(a.port, v13)), "")
        finally:
            c.stop()

        before = pgtest.session_of(a.port, v13)
        marks = {s.name: s.mark() for s in (a, b)}
        first = rows(pg)[0]
        deadline = time.monotonic() + ROTATE + 6 * SLOW
        while time.monotonic() < deadline and len(rows(pg)) < 2:
            time.sleep(0.2)
        r = rows(pg)
        check("rotation: a second key within the rotation period (+ a poll)",
              len(r) == 2 and int(r[1][1]) - int(first[1]) >= ROTATE - 1, r)
        time.sleep(1.5)
        made = [s.name for s in (a, b)
                if re.search(r"ticket keys: made a new one", s.since(marks[s.name]))]
        expect_eq("rotation: one instance made it (the advisory lock)", 1, len(made))
        for s in (a, b):
            m = s.wait_log(r"reloaded \(ticket keys rotated\)", marks[s.name], timeout=5 * SLOW)
            check("rotation: %s reloaded with the new key" % s.name, m is not None,
                  s.since(marks[s.name])[-400:])
        check("rotation: a session made before it still resumes on B",
              resumes(b.port, v13, before), "")
        time.sleep(3)  # the new key makes tickets once every instance has it
        after = pgtest.session_of(b.port, v13)
        check("rotation: a session made on B after it resumes on A", resumes(a.port, v13, after), "")
        ops = p.ctx("ops")
        check("metrics: twoway_ticket_keys counts the keys accepted",
              pgtest.metric(a, ops, "twoway_ticket_keys") == 2, "")
        made_total = sum(pgtest.metric(s, ops, "twoway_ticket_key_rotations_total") for s in (a, b))
        expect_eq("metrics: the rotations of A and B add up to the keys made", 2, made_total)
        if not it.QUICK:
            deadline = time.monotonic() + 4 * ROTATE + 8
            while time.monotonic() < deadline and int(rows(pg)[-1][0]) < 5:
                time.sleep(0.5)
            r = rows(pg)
            check("rotation: at most 4 keys are kept", int(r[-1][0]) >= 5 and len(r) == 4,
                  [x[:2] for x in r])
    finally:
        a.stop()
        b.stop()
    other = keys_file(tmp, "other.keys")
    res = it.run([it.SERVER] + server_args(p, url, other) + ["--listen", "127.0.0.1:0"],
                 timeout=30 * SLOW)
    check("start: another file's key is refused, saying why",
          res.returncode == 1 and "sealed with another --ticket-keys file's key" in res.stderr,
          "exit %s: %s" % (res.returncode, res.stderr[-300:]))


def checks(tmp, pg):
    p = it.PKI(tmp)
    p.tw("init", "abc", "--subject", "/O=ABC Inc.")
    p.abc_ca = p.path("abc", "ca.cert.pem")
    p.issue("srv", "/CN=localhost/O=InvoiceServer", "--server")
    p.issue("mail", "/CN=mail/O=MailServer", "--client")
    p.issue("ops", "/CN=ops/O=ABC Inc.", "--client")
    ok("setup: a private PostgreSQL")
    run_checks(tmp, p, pg, pg.url("twoway"))


if __name__ == "__main__":
    sys.exit(pgtest.run(__doc__, "twoway-tktest.", checks))
