#!/usr/bin/env python3
"""invoice-server on PostgreSQL: several instances on one database.

    usage: postgres_test.py BUILD_DIR

Starts its own PostgreSQL (pgserver.py: initdb and pg_ctl in a temporary
directory, a Unix socket only, as `nobody` when run as root) and two
invoice-server instances, A and B, on one database, and checks (issue 13):

  - the schema is made once and both instances find it; the start line
    names the database without its password; a database that cannot be
    reached is an error at start that says which;
  - a POST on A is readable on B at once; B's "newest" (GET /) learns of it
    through LISTEN/NOTIFY; Idempotency-Keys and the 200/409 rules hold
    across instances; pages list every invoice once, in order;
  - a TLS session made on A resumes on B (shared --ticket-keys);
  - PostgreSQL stopped under load: requests that need it get 503
    {"reason":"database_unavailable"} at once, cached reads go on, nothing
    hangs; restarted, both instances recover by themselves;
  - PostgreSQL frozen (every process SIGSTOPped): a POST gets 503
    {"reason":"database_unavailable"} once the writer's deadline passes,
    not a hang; thawed, POSTs are stored again by themselves;
  - kill -9 of A under POST load: every acknowledged invoice is there, and
    retrying the unanswered ones on B with their Idempotency-Keys stores
    each exactly once.

Helpers (Server, PKI, HttpConn, ok/fail) come from invoice_test.py.
Environment: TW_WRAP, TW_QUICK, TW_KEEP as in invoice_test.py.
"""

import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import invoice_test as it  # noqa: E402
import pgtest  # noqa: E402

ok, fail, check, expect_eq = it.ok, it.fail, it.check, it.expect_eq
SLOW = it.SLOW
SECRET = "hunter2-not-for-logs"


def body(number, amount=1050, **over):
    d = {"invoice_number": number, "firstname": "Ann", "lastname": "Lee",
         "email": "ann@example.com", "amount_minor": amount, "currency": "EUR"}
    d.update(over)
    return json.dumps(d).encode()


def post(port, ctx, number, key=None, amount=1050):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    return it.request(port, ctx, "POST", "/invoices", body(number, amount), headers)


def get(port, ctx, path):
    return it.request(port, ctx, "GET", path)


def reason(resp):
    try:
        return json.loads(resp.body).get("reason")
    except (ValueError, AttributeError):
        return None


def start_pair(tmp, p, url, keys):
    common = ["--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"],
              "--ca", p.abc_ca, "--db", url, "--ticket-keys", keys]
    a = it.Server(tmp, "A", common).start()
    b = it.Server(tmp, "B", common).start()
    return a, b


def section_start(tmp, p, pg, url):
    log_a = None
    a, b = start_pair(tmp, p, url, p.keys)
    try:
        log_a = a.log()
        check("start: the start line names the PostgreSQL database",
              "database postgresql" in log_a and "dbname=twoway" in log_a, log_a[-300:])
        check("start: no password in the log", SECRET not in log_a + b.log(),
              "the password appears in the log")
        tables = pg.psql("twoway", "SELECT count(*) FROM twoway_invoices.invoices")
        expect_eq("start: the schema was made once, with the seed's invoice", "1", tables)
        ctx = p.ctx("mail")
        for s in (a, b):
            r = get(s.port, ctx, "/")
            check("start: GET / on %s answers the seed's invoice" % s.name,
                  r.status == 200 and r.body.startswith(it.SEED_PREFIX.encode()),
                  "%s %r" % (r.status, r.body[:200]))
    finally:
        a.stop()
        b.stop()
    # A database that is not there: an error at start naming it, no secret.
    bad = url.replace("/twoway?", "/nosuch?")
    r = it.run([it.SERVER, "--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"],
                "--ca", p.abc_ca, "--listen", "127.0.0.1:0", "--db", bad], timeout=30 * SLOW)
    check("start: an unreachable database stops the start with exit 1 and says which",
          r.returncode == 1 and "dbname=nosuch" in r.stderr and "cannot connect" in r.stderr,
          "exit %s: %s" % (r.returncode, r.stderr[-300:]))
    check("start: the refusal shows no password", SECRET not in r.stderr, r.stderr[-300:])


def section_shared(tmp, p, pg, url):
    a, b = start_pair(tmp, p, url, p.keys)
    ctx = p.ctx("mail")
    try:
        # B reads "the newest" first, so that it holds a copy to invalidate.
        before = get(b.port, ctx, "/")
        r = post(a.port, ctx, "PG-1")
        expect_eq("shared: POST on A answers 201", 201, r.status)
        rb = get(b.port, ctx, "/invoices/PG-1")
        check("shared: the invoice POSTed on A is readable on B at once",
              rb.status == 200 and rb.body == r.body, "%s %r / %r" % (rb.status, rb.body, r.body))
        t0 = time.monotonic()
        got = it.poll(lambda: b"PG-1" in get(b.port, ctx, "/").body, 5 * SLOW)
        check("shared: B's GET / shows the invoice A added (LISTEN/NOTIFY) within 2 s",
              got and time.monotonic() - t0 < 2 * SLOW and b"00095234" in before.body,
              "after %.2f s: %r" % (time.monotonic() - t0, get(b.port, ctx, "/").body[:120]))

        # Idempotency-Keys and the content rules across instances.
        r1 = post(a.port, ctx, "PG-2", key="key-2")
        r2 = post(b.port, ctx, "PG-2", key="key-2")
        check("shared: a retry on B with A's Idempotency-Key gets the first answer",
              r1.status == 201 and r2.status == 201 and r1.body == r2.body,
              "%s %s %r %r" % (r1.status, r2.status, r1.body, r2.body))
        r3 = post(b.port, ctx, "PG-3", key="key-2")
        expect_eq("shared: the key used for another invoice on B is 409", 409, r3.status)
        r4 = post(b.port, ctx, "PG-1", amount=99)
        expect_eq("shared: A's number with other content on B is 409", 409, r4.status)
        r5 = post(b.port, ctx, "PG-1")
        check("shared: A's very invoice again on B is 200 with it",
              r5.status == 200 and r5.body == r.body, "%s %r" % (r5.status, r5.body))
        page = json.loads(get(b.port, ctx, "/invoices?limit=100").body)
        numbers = [i["invoice_number"] for i in page["invoices"]]
        expect_eq("shared: B's pages list every invoice once, in order",
                  ["00095234", "PG-1", "PG-2"], numbers)
        bad = get(b.port, ctx, "/invoices?after=x1")
        expect_eq("shared: a malformed cursor is 400", 400, bad.status)

        # A TLS 1.3 session made on A resumes on B.
        c = it.HttpConn(a.port, ctx)
        c.request("GET", "/whoami")
        sess = c.sock.session
        c.close()
        c = it.HttpConn(b.port, ctx, session=sess)
        who = json.loads(c.request("GET", "/whoami").body)
        reused = c.sock.session_reused
        c.close()
        check("shared: a session made on A resumes on B (shared ticket keys)",
              reused and who.get("resumed") is True, "reused=%s whoami=%r" % (reused, who))
    finally:
        a.stop()
        b.stop()


class Load:
    """Requests in a loop on fresh connections; records (status, reason,
    seconds) of each, and the exceptions."""

    def __init__(self, port, ctx, path):
        self.port, self.ctx, self.path = port, ctx, path
        self.results, self.errors = [], []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                r = get(self.port, self.ctx, self.path)
                self.results.append((r.status, reason(r), time.monotonic() - t0))
            except Exception as e:  # noqa: BLE001 - counted
                self.errors.append(repr(e))
            time.sleep(0.01)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join(30)


def section_outage(tmp, p, pg, url):
    it.WORKERS = "1"  # one worker: its cache is the one the checks read
    a, b = start_pair(tmp, p, url, p.keys)
    it.WORKERS = "2"
    ctx = p.ctx("mail")
    try:
        cached = get(a.port, ctx, "/invoices/00095234")
        expect_eq("outage: the seed's invoice read (and cached) on A", 200, cached.status)
        mark_a, mark_b = a.mark(), b.mark()
        with Load(a.port, ctx, "/") as load:  # "the newest": not cached then
            time.sleep(0.3)  # the point: load before the stop
            pg.stop("fast")
            t0 = time.monotonic()
            r = get(a.port, ctx, "/invoices/nothing-cached")
            took = time.monotonic() - t0
            check("outage: an uncached read gets 503 database_unavailable at once",
                  r.status == 503 and reason(r) == "database_unavailable" and took < 1 * SLOW,
                  "%s %r after %.2f s" % (r.status, r.body, took))
            t0 = time.monotonic()
            r = post(b.port, ctx, "PG-OUT")
            took = time.monotonic() - t0
            check("outage: a POST gets 503 database_unavailable at once",
                  r.status == 503 and reason(r) == "database_unavailable" and took < 1 * SLOW,
                  "%s %r after %.2f s" % (r.status, r.body, took))
            r = get(a.port, ctx, "/invoices/00095234")
            check("outage: a cached invoice is still served",
                  r.status == 200 and r.body == cached.body, "%s %r" % (r.status, r.body))
            check("outage: the log says the connection was lost",
                  a.wait_log(r"lost the connection to postgresql", mark_a), a.why(mark_a))
            m = get(a.port, ctx, "/metrics").body.decode()
            check("outage: /metrics says the reader is down and counts the 503s",
                  it.metric(m, "twoway_database_up", '{connection="reader"}') == 0
                  and (it.metric(m, "twoway_database_unavailable_total") or 0) > 0, m[-400:])
            time.sleep(0.5)  # the point: load during the outage
            pg.start()
            t0 = time.monotonic()
            back = it.poll(lambda: get(a.port, ctx, "/invoices/PG-1").status == 200, 10 * SLOW)
            check("outage: A reads again by itself once PostgreSQL is back",
                  back, "still failing after %.1f s" % (time.monotonic() - t0))
            back = it.poll(lambda: post(b.port, ctx, "PG-OUT").status == 201, 10 * SLOW)
            check("outage: B stores again by itself once PostgreSQL is back", back,
                  b.since(mark_b)[-300:])
            time.sleep(0.3)
        slow = [x for x in load.results if x[2] > 2 * SLOW]
        statuses = sorted(set((s, rs) for s, rs, _ in load.results))
        check("outage: under load every request got an answer, none hung",
              not load.errors and not slow and len(load.results) > 10,
              "%d answers, %d slow, errors %s" % (len(load.results), len(slow), load.errors[:3]))
        check("outage: the load saw 200 and 503 database_unavailable only",
              set(statuses) <= {(200, None), (503, "database_unavailable")}
              and (503, "database_unavailable") in statuses, statuses)
        check("outage: the log says it is reachable again",
              a.wait_log(r"reachable again", mark_a), a.why(mark_a))
        m = get(a.port, ctx, "/metrics").body.decode()
        check("outage: /metrics says the reader is up again",
              it.metric(m, "twoway_database_up", '{connection="reader"}') == 1, m[-400:])
    finally:
        a.stop()
        b.stop()


# The writer's deadline (pg_writer.c DEADLINE_MS: statement_timeout + 2 s).
WRITER_DEADLINE = 7


def pg_pids(pg):
    """The postmaster's pid and its children's (the backends, the
    checkpointer, ...), from postmaster.pid and /proc."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        master = int(f.readline())
    children = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:  # not a process, or gone
            continue
        if int(stat.rpartition(")")[2].split()[1]) == master:
            children.append(int(d))
    return [master] + children


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def section_freeze(tmp, p, pg, url):
    a = it.Server(tmp, "A", ["--cert", p.c["srv"]["cert"], "--key", p.c["srv"]["key"],
                             "--ca", p.abc_ca, "--db", url]).start()
    ctx = p.ctx("mail")
    stopped = []
    try:
        expect_eq("freeze: a POST before the freeze is 201", 201, post(a.port, ctx, "FZ-1").status)
        mark = a.mark()
        stopped.append(pg_pids(pg)[0])  # the postmaster first: no new children
        signal_all(stopped, signal.SIGSTOP)
        children = pg_pids(pg)[1:]
        stopped += children
        signal_all(children, signal.SIGSTOP)
        t0 = time.monotonic()
        c = it.HttpConn(a.port, ctx, timeout=(WRITER_DEADLINE + 2) * SLOW)
        try:
            r = c.request("POST", "/invoices", body("FZ-2"), {"Content-Type": "application/json"})
        except OSError as e:  # the client's timeout: a hang
            r = it.Response(0, {}, repr(e).encode())
        finally:
            c.close()
        took = time.monotonic() - t0
        check("freeze: a POST gets 503 database_unavailable within the deadline + 2 s",
              r.status == 503 and reason(r) == "database_unavailable"
              and took < (WRITER_DEADLINE + 2) * SLOW,
              "%s %r after %.1f s" % (r.status, r.body, took))
        check("freeze: the log says the connection was lost for want of an answer",
              a.wait_log(r"lost the connection to postgresql.*no answer in %d s" % WRITER_DEADLINE,
                         mark), a.why(mark))
        signal_all(stopped, signal.SIGCONT)
        stopped = []
        t0 = time.monotonic()
        back = it.poll(lambda: post(a.port, ctx, "FZ-2").status == 201, 5 * SLOW)
        check("freeze: thawed, a POST is stored again (201) within a few seconds",
              back, "still failing after %.1f s: %s" % (time.monotonic() - t0, a.why(mark)))
        check("freeze: the log says the database is reachable again",
              a.wait_log(r"reachable again; POSTs go on", mark), a.why(mark))
    finally:
        signal_all(stopped, signal.SIGCONT)  # never leave PostgreSQL stopped
        a.stop()


def section_kill(tmp, p, pg, url):
    a, b = start_pair(tmp, p, url, p.keys)
    ctx = p.ctx("mail")
    acked, lock = {}, threading.Lock()
    unanswered = []
    n_threads = 4

    def poster(tid):
        i = 0
        while True:
            number = "K%d-%d" % (tid, i)
            try:
                r = post(a.port, ctx, number, key="key-" + number)
            except Exception:  # noqa: BLE001 - the kill
                with lock:
                    unanswered.append(number)
                return
            with lock:
                if r.status == 201:
                    acked[number] = r.body
                else:
                    unanswered.append(number)
                    return
            i += 1

    try:
        threads = [threading.Thread(target=poster, args=(t,), daemon=True)
                   for t in range(n_threads)]
        for t in threads:
            t.start()
        it.poll(lambda: len(acked) >= (20 if it.WRAP else 200), 30 * SLOW)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        for t in threads:
            t.join(30)
        check("kill: A was killed with POSTs in flight", len(acked) > 0,
              "%d acknowledged" % len(acked))
        page, after = [], ""
        while True:
            r = json.loads(get(b.port, ctx, "/invoices?limit=100&after=" + after).body)
            page += r["invoices"]
            if r["next"] is None:
                break
            after = r["next"]
        stored = {i["invoice_number"] for i in page}
        lost = [n for n in acked if n not in stored]
        check("kill: no acknowledged invoice is lost", not lost,
              "%d of %d lost: %s" % (len(lost), len(acked), lost[:5]))
        again = {}
        for number in unanswered:
            r = post(b.port, ctx, number, key="key-" + number)
            again[number] = r.status
        check("kill: retrying the unanswered on B with their keys stores each (201)",
              all(s == 201 for s in again.values()), again)
        for number in list(acked)[:20]:
            r = post(b.port, ctx, number, key="key-" + number)
            if r.status != 201 or r.body != acked[number]:
                fail("kill: a retry of an acknowledged POST on B gets the first answer",
                     "%s: %s %r vs %r" % (number, r.status, r.body, acked[number]))
                break
        else:
            ok("kill: a retry of an acknowledged POST on B gets the first answer")
        counts = pg.psql("twoway", "SELECT count(*), count(DISTINCT number) FROM "
                         "twoway_invoices.invoices WHERE number LIKE 'K%'")
        want = len(acked) + len(unanswered)
        expect_eq("kill: each invoice stored exactly once", "%d|%d" % (want, want), counts)
    finally:
        a.kill()
        b.stop()


def checks(tmp, pg):
    p = it.make_pki(tmp)
    p.keys = os.path.join(tmp, "ticket.keys")
    with open(os.open(p.keys, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(os.urandom(80).hex() + "\n")
    url = pg.url("twoway") + "&password=" + SECRET
    ok("setup: a private PostgreSQL %s" % pg.psql("twoway", "SHOW server_version"))
    sections = [("start", section_start), ("shared", section_shared),
                ("outage", section_outage), ("freeze", section_freeze),
                ("kill", section_kill)]
    for name, fn in sections:
        try:
            fn(tmp, p, pg, url)
        except Exception as e:  # noqa: BLE001 - report, go on
            fail("%s: the section stopped on an unexpected error" % name,
                 "%s: %s" % (type(e).__name__, e))
        finally:
            it.cleanup_servers()
            if not pg.running:
                pg.start()


if __name__ == "__main__":
    sys.exit(pgtest.run(__doc__, "twoway-pgtest.", checks))
