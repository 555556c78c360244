#!/usr/bin/env python3
"""Run a command against a private PostgreSQL: pg_run.py COMMAND [ARG...]

Starts PostgreSQL (pgserver.py), creates the database "twoway", runs
COMMAND with TW_TEST_PG_URL set to its URL, stops the server, and exits
with the command's status (1 when PostgreSQL could not start).  For the C
tests that take a database from the environment (store_db_test).
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgserver  # noqa: E402


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    pg = None
    try:
        pg = pgserver.PgServer().start()
        pg.createdb("twoway")
        env = dict(os.environ, TW_TEST_PG_URL=pg.url("twoway"))
        return subprocess.run(sys.argv[1:], env=env).returncode
    except pgserver.PgError as e:
        print("pg_run: %s" % e, file=sys.stderr)
        return 1
    finally:
        if pg:
            pg.cleanup()


if __name__ == "__main__":
    sys.exit(main())
