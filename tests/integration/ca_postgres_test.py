#!/usr/bin/env python3
"""twoway-ca with its index in PostgreSQL (issue 13): `init DIR --db URL`,
every command, and two `serve` processes sharing serials, tokens,
revocations and the audit.

    usage: ca_postgres_test.py BUILD_DIR

Starts its own PostgreSQL (pgserver.py) and stops it.  Helpers (Serve,
curl, csr, token) come from ca_serve_test.py.  Environment: TW_WRAP,
TW_KEEP as there.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ca_serve_test as cs  # noqa: E402
import pgserver  # noqa: E402

SECRET = "hunter2-not-for-logs"
check, run = cs.check, cs.run


def serial_of(path):
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-serial"],
                         capture_output=True, text=True).stdout
    return out.strip().split("=")[-1].upper()


def section_cli(tw, tmp, pg, url):
    ca_dir = os.path.join(tmp, "ca")
    rc, out, err = run([tw, "init", ca_dir, "--subject", "/O=ABC Inc.", "--db", url])
    check("init --db: a CA whose index is in PostgreSQL", rc == 0, err)
    conf = os.path.join(ca_dir, "index.conf")
    mode = stat.S_IMODE(os.stat(conf).st_mode) if os.path.exists(conf) else None
    check("init --db: DIR/index.conf names the database, mode 0600, no ca.db",
          mode == 0o600 and not os.path.exists(os.path.join(ca_dir, "ca.db")),
          "mode %s, files %s" % (oct(mode or 0), os.listdir(ca_dir)))
    check("init --db: the tables are in the schema twoway_ca",
          pg.psql("cadb", "SELECT count(*) FROM twoway_ca.certs") == "0", "")
    again = os.path.join(tmp, "again")
    rc, out, err = run([tw, "init", again, "--db", url])
    check("init --db on a database that holds an index: refused, nothing left behind",
          rc != 0 and "already holds a CA index" in err and not os.path.exists(again)
          and SECRET not in err, "exit %d: %s" % (rc, err))
    rc, out, err = run([tw, "init", os.path.join(tmp, "bad"), "--db", "sqlite:x.db"])
    check("init --db with something not a URL: a usage error", rc == 2 and "postgresql://" in err,
          "exit %d: %s" % (rc, err))

    for name, subj, kind in (("srv", "/CN=localhost/O=InvoiceServer", "--server"),
                             ("mail", "/CN=mail/O=MailServer", "--client"),
                             ("admin", "/CN=ops/O=ABC Inc.", "--client")):
        rc, out, err = run([tw, "issue", "--ca", ca_dir, "--out", os.path.join(tmp, name),
                            "--subject", subj, kind])
        check("issue %s: recorded in PostgreSQL" % name, rc == 0, err)
    mail = serial_of(os.path.join(tmp, "mail", "cert.pem"))
    rows = pg.psql("cadb", "SELECT count(*) FROM twoway_ca.certs")
    check("issue: three certificates in the shared index", rows == "3", rows)
    rc, out, err = run([tw, "revoke", "--ca", ca_dir, "--cert", os.path.join(tmp, "mail", "cert.pem")])
    check("revoke: recorded", rc == 0 and mail in out, out + err)
    rc, out, err = run([tw, "list", "--ca", ca_dir])
    check("list: reads the index from PostgreSQL (the revoked one says so)",
          rc == 0 and re.search(mail + r".*revoked", out), out + err)
    crl = os.path.join(tmp, "crl.pem")
    rc, out, err = run([tw, "crl", "--ca", ca_dir, "--out", crl])
    rc2, text, err2 = run(["openssl", "crl", "-in", crl, "-noout", "-text"])
    check("crl: lists the serial revoked in PostgreSQL",
          rc == 0 and rc2 == 0 and mail in text.replace(":", "").upper(), err + err2)
    rc, out, err = run([tw, "crl", "--ca", ca_dir, "--out", crl])
    check("crl: numbers are drawn from the shared index (#2 next)", rc == 0 and "CRL #2" in out,
          out + err)
    audit = pg.psql("cadb", "SELECT count(*) FROM twoway_ca.audit")
    check("audit: each issue and revocation is a row of the shared audit table",
          audit == "4", audit)
    check("no command printed the password", SECRET not in out + err, "")
    return ca_dir


def section_serve(tw, tmp, pg, ca_dir):
    ca = os.path.join(ca_dir, "ca.cert.pem")
    admin_cert = os.path.join(tmp, "admin", "cert.pem")
    admin_key = os.path.join(tmp, "admin", "key.pem")
    args = ["--ca", ca_dir, "--allow", "admin CN=ops", "--default-lifetime", "1h"]
    one = cs.Serve(tw, tmp, "serve1", args)
    two = cs.Serve(tw, tmp, "serve2", args)
    try:
        check("serve: two processes on the same PostgreSQL index start",
              one.port and two.port, one.text()[-300:] + two.text()[-300:])
        # A token made by the CLI, taken on one serve, refused on the other.
        t = cs.token(tw, ca_dir, "/CN=svc/O=Billing", "--client")
        key, req = cs.csr(tmp, "svc", "/CN=svc/O=Billing")
        st, body, _ = cs.curl(one, ca, "/v1/enroll", json.dumps({"token": t, "csr": req}))
        check("serve: a CLI token enrols on serve 1 (201)", st == 201, body)
        st2, body2, _ = cs.curl(two, ca, "/v1/enroll", json.dumps({"token": t, "csr": req}))
        check("serve: the same token on serve 2 is refused (used once, everywhere)",
              st2 in (400, 403, 409) and st2 != 201, "%s %r" % (st2, body2))
        cert = os.path.join(tmp, "svc.pem")
        with open(cert, "w") as f:
            f.write(json.loads(body).get("certificate", "") if st == 201 else "")
        # Several tokens taken at once on both: every serial distinct.
        toks = [cs.token(tw, ca_dir, "/CN=w%d/O=Billing" % i, "--client") for i in range(6)]
        reqs = [cs.csr(tmp, "w%d" % i, "/CN=w%d/O=Billing" % i)[1] for i in range(6)]
        with ThreadPoolExecutor(6) as pool:
            res = list(pool.map(lambda i: cs.curl(one if i % 2 else two, ca, "/v1/enroll",
                                                  json.dumps({"token": toks[i], "csr": reqs[i]})),
                                range(6)))
        serials = [json.loads(b).get("serial") for s, b, _ in res if s == 201]
        check("serve: enrolments on both at once get distinct serials",
              len(serials) == 6 and len(set(serials)) == 6, [r[0] for r in res])
        # Renew on serve 2 what serve 1 issued.
        key2, req2 = cs.csr(tmp, "svc2", "/CN=svc/O=Billing")
        st, body, _ = cs.curl(two, ca, "/v1/renew", json.dumps({"csr": req2}), cert=cert, key=key)
        check("serve: serve 2 renews a certificate serve 1 issued", st == 201, body)
        # Revoke on serve 1; serve 2's CRL and list know it.
        svc = serial_of(cert)
        st, body, _ = cs.curl(one, ca, "/v1/revoke", json.dumps({"serial": svc}),
                              cert=admin_cert, key=admin_key)
        check("serve: serve 1 revokes (admin)", st == 200, body)
        crl = os.path.join(tmp, "crl2.pem")
        deadline = time.monotonic() + 10 * cs.SLOW
        seen = False
        while time.monotonic() < deadline and not seen:
            st, _, _ = cs.curl(two, ca, "/v1/crl", out=crl)
            rc, text, _ = run(["openssl", "crl", "-in", crl, "-noout", "-text"])
            seen = st == 200 and svc in text.replace(":", "").upper()
            if not seen:
                time.sleep(0.2)
        check("serve: serve 2's CRL lists the serial serve 1 revoked", seen, "")
        rc, out, err = run([tw, "list", "--ca", ca_dir])
        check("serve: the CLI sees what both serve processes did",
              rc == 0 and re.search(svc + r".*revoked", out) and out.count("\n") >= 10, out[-400:])
        lines = pg.psql("cadb", "SELECT line FROM twoway_ca.audit ORDER BY rowid")
        check("serve: the shared audit holds both processes' enrolments, the renewal "
              "and the revocation",
              lines.count('"action":"enroll"') == 7 and '"action":"renew"' in lines
              and lines.count('"action":"revoke"') == 2, lines[-300:])
    finally:
        for s, name in ((one, "serve 1"), (two, "serve 2")):
            rc = s.stop()
            check("serve: %s exits 0 on SIGTERM" % name, rc == 0, s.text()[-400:])


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    tw = os.path.join(os.path.abspath(sys.argv[1]), "src/ca/twoway-ca")
    tmp = tempfile.mkdtemp(prefix="twoway-capg-test.")
    pg = None
    try:
        pg = pgserver.PgServer().start()
        pg.createdb("cadb")
        url = pg.url("cadb") + "&password=" + SECRET
        ca_dir = section_cli(tw, tmp, pg, url)
        section_serve(tw, tmp, pg, ca_dir)
    except (pgserver.PgError, RuntimeError, OSError) as e:
        check("setup", False, e)
    finally:
        if pg:
            pg.cleanup()
        if os.environ.get("TW_KEEP") == "1":
            print("# TW_KEEP: the files are in %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (cs._passed, cs._failed), flush=True)
    return 1 if cs._failed else 0


if __name__ == "__main__":
    sys.exit(main())
