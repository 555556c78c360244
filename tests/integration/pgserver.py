"""A private PostgreSQL server for the tests: Debian's postgresql-15,
initdb and pg_ctl in a temporary directory, listening only on a Unix socket
in that directory (no TCP port, so nothing a parallel test holds), stopped
at the end.

initdb refuses to run as root: as root, the server runs as the unprivileged
user `nobody` (its directory is given to it); otherwise as whoever runs the
test.  The database superuser is "twoway" and local connections are
trusted: the socket's directory is private (0700 for its owner; root reads
anything).

    pg = PgServer(); pg.start(); pg.createdb("twoway")
    url = pg.url("twoway")      # postgresql:///twoway?host=DIR&user=twoway
    pg.sql("twoway", "SELECT count(*) FROM ...")
    pg.stop(); pg.start()       # a restart keeps the data
    pg.cleanup()

Python standard library only.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile

SUPERUSER = "twoway"


def pg_bindir():
    """The newest installed server's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


class PgError(Exception):
    pass


class PgServer:
    def __init__(self):
        self.bindir = pg_bindir()
        if self.bindir is None:
            raise PgError("no PostgreSQL server is installed (Debian's postgresql-15; "
                          "scripts/install-deps.sh installs it)")
        self.dir = tempfile.mkdtemp(prefix="twoway-pg.")
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "server.log")
        self.as_user = None
        if os.geteuid() == 0:
            self.as_user = "nobody"
            pw = pwd.getpwnam(self.as_user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        self.running = False
        self._run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", SUPERUSER,
                   "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"], timeout=120)

    def _run(self, cmd, timeout=60, check=True):
        prog = os.path.basename(cmd[0])
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--"] + cmd
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        if check and r.returncode != 0:
            raise PgError("%s failed (exit %d): %s" % (
                prog, r.returncode, r.stdout.decode("utf-8", "replace")[-800:]))
        return r

    def start(self):
        # Only the Unix socket, in our directory; fsync stays on (commits
        # are what the tests count on).
        opts = "-c listen_addresses='' -k %s -c max_connections=50" % self.dir
        self._run([os.path.join(self.bindir, "pg_ctl"), "start", "-w", "-t", "60",
                   "-D", self.data, "-l", self.logfile, "-o", opts], timeout=90)
        self.running = True
        return self

    def stop(self, mode="fast"):
        if self.running:
            self._run([os.path.join(self.bindir, "pg_ctl"), "stop", "-w", "-t", "60",
                       "-m", mode, "-D", self.data], timeout=90, check=False)
            self.running = False

    def url(self, dbname):
        return "postgresql:///%s?host=%s&user=%s" % (dbname, self.dir, SUPERUSER)

    def psql(self, dbname, sql, timeout=30):
        """Run sql with psql; its output (unaligned, tuples only)."""
        r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-h", self.dir, "-U", SUPERUSER, "-d", dbname, "-c", sql],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        if r.returncode != 0:
            raise PgError("psql %r: %s" % (sql, r.stderr.decode("utf-8", "replace")))
        return r.stdout.decode("utf-8", "replace").strip()

    def createdb(self, dbname):
        self.psql("postgres", 'CREATE DATABASE "%s"' % dbname)

    def log(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
