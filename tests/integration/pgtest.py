"""The frame of the invoice-server tests that need PostgreSQL
(postgres_test.py, revocations_test.py, ticket_keys_test.py): the build's
programs, a scratch directory, a private PostgreSQL (pgserver.py) with a
database "twoway", the summary line and the exit status; every server and
PostgreSQL stopped, whatever happens.

    sys.exit(pgtest.run(__doc__, "twoway-xxtest.", body))   # body(tmp, pg)

and the small requests they share: metric(), session_of().

Environment: TW_KEEP=1 keeps the scratch directory (invoice_test.py).
"""

import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import invoice_test as it  # noqa: E402
import pgserver  # noqa: E402


def metric(srv, ctx, name):
    """The value of the metric line `name` of srv's GET /metrics, or None."""
    body = it.request(srv.port, ctx, "GET", "/metrics").body.decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), body, re.M)
    return int(m.group(1)) if m else None


def session_of(port, ctx, path="/"):
    """The TLS session of a connection that asked `path` once."""
    c = it.HttpConn(port, ctx)
    c.request("GET", path)
    sess = c.sock.session
    c.close()
    return sess


def run(doc, prefix, body):
    """Run body(tmp, pg) with argv[1] the build directory; the exit status."""
    if len(sys.argv) != 2:
        print(doc, file=sys.stderr)
        return 2
    build = os.path.abspath(sys.argv[1])
    it.SERVER = os.path.join(build, "src/invoice/invoice-server")
    it.TWCA = os.path.join(build, "src/ca/twoway-ca")
    tmp = tempfile.mkdtemp(prefix=prefix)
    pg = None
    started = time.monotonic()
    try:
        pg = pgserver.PgServer().start()
        pg.createdb("twoway")
        body(tmp, pg)
        print("# %.0f s" % (time.monotonic() - started), file=sys.stderr, flush=True)
    except (it.SetupError, pgserver.PgError) as e:
        it.fail("setup", e)
    except Exception as e:  # noqa: BLE001 - report, then clean up
        it.fail("the test stopped on an unexpected error", "%s: %s" % (type(e).__name__, e))
    finally:
        it.cleanup_servers()
        if pg:
            if it._failed:
                print("# PostgreSQL log tail:\n" + pg.log()[-1500:], file=sys.stderr)
            pg.cleanup()
        if it.KEEP:
            print("# TW_KEEP: the files are in %s" % tmp, file=sys.stderr, flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        print("%d passed, %d failed" % (it._passed, it._failed), flush=True)
    return 1 if it._failed else 0
