#!/usr/bin/env python3
"""systemd_test.py - the systemd units that `make install` installs, and the
sd_notify(3) messages of the server core (issue 14).

    usage: systemd_test.py BUILD_DIR CMAKE

    TW_WRAP   a command prefix for the programs under test (valgrind ...);
              timeouts stretch 6 times.

units: `cmake --install` into a temporary DESTDIR, then, offline on that
tree (--root): `systemd-analyze verify` on each unit by name (systemd's own
search path, the ExecStart binary as installed, the man page that
Documentation= names, found through MANPATH in the same tree), `systemd-
analyze security --offline` with an exposure threshold, `systemd-sysusers`
making the user the units run as, and the config files the units pass
with --config (the installed file, and each of its commented examples
uncommented, read by the program; a reinstall keeps an operator's file).  The tree gets a copy of the
host's own units (sysinit.target ...) and of /bin/kill (ExecReload), which
are not ours; nothing of ours is taken from anywhere but the install.
What cannot be done in a container is starting the units: there is no
systemd to start them, so the protocol is checked below instead.  Skipped,
saying so: the units' checks for a build whose install prefix is neither
/usr nor /usr/local (systemd would not find its units), the offline checks
where systemd-analyze or systemd-sysusers is missing.

notify: invoice-server and twoway-ca serve, started by this test on
127.0.0.1 port 0 with NOTIFY_SOCKET naming a Unix datagram socket the test
listens on, send READY=1 with STATUS=generation N, M connections once they
listen; RELOADING=1 with MONOTONIC_USEC then READY=1 on SIGHUP (the status
with the next generation, or the same one after a refused reload);
STOPPING=1 on SIGTERM.  Each message must come from the server's process
(SCM_CREDENTIALS), as NotifyAccess=main requires.

Python 3 standard library only; the certificates come from the built
twoway-ca.
"""
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

WRAP = shlex.split(os.environ.get("TW_WRAP", ""))
SLOW = 6 if WRAP else 1
UNITS = {
    # unit: (Type=, the program it runs)
    "invoice-server": ("notify", ["invoice-server"]),
    "mail-server-sync": ("simple", ["mail-server", "sync"]),
    "twoway-ca-serve": ("notify", ["twoway-ca", "serve"]),
}
CONFDIR = "/etc/twoway"
HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
             "ProtectHome=yes", "User=twoway", "Group=twoway")
_failed = 0
_skipped = 0


def ok(name):
    print("ok   " + name, flush=True)


def fail(name, detail=""):
    global _failed
    _failed += 1
    print("FAIL " + name + (": " + str(detail)[:2000] if detail else ""), flush=True)


def skip(name, why):
    global _skipped
    _skipped += 1
    print("skip " + name + ": " + why, flush=True)


def check(name, cond, detail=""):
    if cond:
        ok(name)
    else:
        fail(name, detail or "check failed")
    return cond


def run(cmd, timeout=60, env=None, wrap=False):
    """(exit code, stdout + stderr); wrap: under TW_WRAP (a program under test)."""
    try:
        p = subprocess.run((WRAP if wrap else []) + cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout * SLOW, env=env)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return 124, "timeout"


# ------------------------------------------------------------------ units

def unit_keys(text):
    """Key=value lines of a unit file, in order (repeated keys repeat)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and line[0] not in "#;[" and "=" in line:
            k, _, v = line.partition("=")
            out.append((k.strip(), v.strip()))
    return out


def install_prefix(build):
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        m = re.search(r"^CMAKE_INSTALL_PREFIX:PATH=(.*)$", f.read(), re.M)
    return m.group(1).rstrip("/") if m else ""


def section_units(build, cmake, tmp):
    prefix = install_prefix(build)
    if prefix not in ("/usr", "/usr/local"):
        # systemd reads units under /usr and /usr/local only, and the
        # config files go to /etc/twoway for those prefixes alone.
        skip("units", "the build's install prefix %r is not one systemd reads "
             "units from (/usr, /usr/local)" % prefix)
        return
    root = os.path.join(tmp, "root")
    env = dict(os.environ, DESTDIR=root)
    rc, out = run([cmake, "--install", build], timeout=120, env=env)
    if not check("install_into_destdir", rc == 0, out[-1500:]):
        return
    found = {}
    for path in glob.glob(os.path.join(root, "**", "systemd", "system", "*.service"),
                          recursive=True):
        found[os.path.basename(path)[:-len(".service")]] = path
    for name in UNITS:
        check("installed_%s_service" % name.replace("-", "_"), name in found,
              "no %s.service under %s (found %s)" % (name, root, sorted(found)))
    if any(name not in found for name in UNITS):
        return

    for name, (typ, prog) in UNITS.items():
        with open(found[name]) as f:
            kv = unit_keys(f.read())
        d = dict(kv)
        tag = name.replace("-", "_")
        check("%s_type_%s" % (tag, typ), d.get("Type") == typ, d.get("Type"))
        missing = [h for h in HARDENING if tuple(h.split("=", 1)) not in kv]
        check("%s_hardening" % tag, not missing, "missing: %s" % missing)
        state = "/var/lib/twoway/" + ("ca" if name == "twoway-ca-serve"
                                      else name.replace("-sync", ""))
        check("%s_state_is_%s" % (tag, os.path.basename(state).replace("-", "_")),
              d.get("ReadWritePaths") == state and
              d.get("StateDirectory") == state[len("/var/lib/"):],
              "ReadWritePaths=%s StateDirectory=%s" % (d.get("ReadWritePaths"),
                                                      d.get("StateDirectory")))
        if typ == "notify":
            check("%s_reload_is_sighup" % tag,
                  d.get("ExecReload") == "/bin/kill -HUP $MAINPID", d.get("ExecReload"))
        # ExecStart: the installed program with --config /etc/twoway/NAME.conf.
        argv = shlex.split(d.get("ExecStart", ""))
        binary = argv[0] if argv else ""
        conf = "%s/%s.conf" % (CONFDIR, name)
        check("%s_execstart_is_installed_program" % tag,
              binary.startswith("/") and os.path.basename(binary) == prog[0] and
              os.access(root + binary, os.X_OK),
              "ExecStart=%s (%s in the install: %s)" % (
                  d.get("ExecStart"), root + binary, os.path.exists(root + binary)))
        check("%s_execstart_reads_config_in_etc_twoway" % tag,
              argv[1:] == prog[1:] + ["--config", conf], "ExecStart=%s" % d.get("ExecStart"))
        check("%s_no_environment_file" % tag, "EnvironmentFile" not in d,
              "EnvironmentFile=%s" % d.get("EnvironmentFile"))
        check_conf_examples(build, root, name, conf, prog, binary)

    verify_offline(root)
    check_reinstall(build, cmake, root, env)

    # The user the units run as: the installed sysusers.d file makes it.
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        skip("sysusers_makes_twoway", "no systemd-sysusers on this machine")
    else:
        rc, out = run([sysusers, "--root=" + root])
        passwd = ""
        if os.path.exists(os.path.join(root, "etc/passwd")):
            with open(os.path.join(root, "etc/passwd")) as f:
                passwd = f.read()
        check("sysusers_makes_twoway",
              rc == 0 and re.search(r"^twoway:x:\d+:\d+:", passwd, re.M) is not None,
              "exit %d: %s / passwd: %s" % (rc, out, passwd))


BUILT = {"invoice-server": "src/invoice/invoice-server",
         "mail-server": "src/mail/mail-server",
         "twoway-ca": "src/ca/twoway-ca"}
EXAMPLE_LINE = re.compile(r"^#([a-z][a-z-]*) = (.*)$")


def conf_examples(text):
    """The commented examples of a config file: each run of "#name = value"
    lines (no blank after the #, unlike the prose), uncommented."""
    blocks, cur = [], []
    for line in text.splitlines():
        if EXAMPLE_LINE.match(line):
            cur.append(line[1:])
        elif cur:
            blocks.append("\n".join(cur) + "\n")
            cur = []
    if cur:
        blocks.append("\n".join(cur) + "\n")
    return blocks


def conf_accepted(build, prog, path):
    """(accepted, output): the program reads the file with --config, then
    --help.  The file is parsed whole before the command line, so every
    name must be an option of the program and every value one it takes;
    only then does --help print the usage and exit 0."""
    rc, out = run([os.path.join(build, BUILT[prog[0]])] + prog[1:] +
                  ["--config", path, "--help"], wrap=True)
    return rc == 0 and out.startswith("usage:"), "exit %d: %s" % (rc, out[:500])


def check_conf_examples(build, root, name, conf, prog, binary):
    """The config file is installed (and NAME.conf.example beside it), the
    program reads it as installed, and reads each of its commented examples
    once uncommented."""
    tag = name.replace("-", "_")
    path = root + conf
    if not check("%s_conf_installed" % tag, os.path.exists(path) and
                 os.path.exists(path + ".example"), path):
        return
    with open(path) as f:
        text = f.read()
    check("%s_conf_names_the_program_and_itself" % tag,
          binary in text and conf in text, "%s or %s not named in %s" % (binary, conf, path))
    accepted, out = conf_accepted(build, prog, path)
    check("%s_conf_as_installed_is_accepted" % tag, accepted, out)
    examples = conf_examples(text)
    if not check("%s_conf_has_examples" % tag, examples, text[:500]):
        return
    for i, example in enumerate(examples):
        ex = os.path.join(os.path.dirname(root), "%s.example%d.conf" % (name, i + 1))
        with open(ex, "w") as f:
            f.write(example)
        accepted, out = conf_accepted(build, prog, ex)
        check("%s_conf_example_%d_is_accepted" % (tag, i + 1), accepted,
              "%s\n%s" % (out, example))
    # The check can fail: a misspelt name in the same place is refused.
    bad = os.path.join(os.path.dirname(root), "%s.bad.conf" % name)
    with open(bad, "w") as f:
        f.write(examples[0] + "lisen = 0.0.0.0:1\n")
    accepted, out = conf_accepted(build, prog, bad)
    check("%s_conf_with_an_unknown_name_is_refused" % tag,
          not accepted and "unknown option 'lisen'" in out, out)


def check_reinstall(build, cmake, root, env):
    """An install again keeps the operator's NAME.conf (the example is
    rewritten), and warns about a NAME.env an older install left, which the
    units no longer read."""
    conf = root + CONFDIR + "/invoice-server.conf"
    mine = "# the operator's\nworkers = 2\n"
    with open(conf, "w") as f:
        f.write(mine)
    os.remove(root + CONFDIR + "/mail-server-sync.conf")
    with open(root + CONFDIR + "/mail-server-sync.env", "w") as f:
        f.write('MAIL_SERVER_SYNC_OPTS="--interval 60"\n')
    rc, out = run([cmake, "--install", build], timeout=120, env=env)
    with open(conf) as f:
        kept = f.read()
    with open(conf + ".example") as f:
        example = f.read()
    check("reinstall_keeps_the_operators_conf",
          rc == 0 and kept == mine and "Keeping: " + conf in out and
          example.startswith("# %s/invoice-server.conf" % CONFDIR),
          "exit %d: %s" % (rc, out[-1500:]))
    check("reinstall_warns_about_an_old_env_file",
          rc == 0 and "mail-server-sync.env is no longer read" in " ".join(out.split()) and
          os.path.exists(root + CONFDIR + "/mail-server-sync.conf"),
          "exit %d: %s" % (rc, out[-1500:]))


def verify_offline(root):
    analyze = shutil.which("systemd-analyze")
    hostunits = next((d for d in ("/usr/lib/systemd/system", "/lib/systemd/system")
                      if os.path.exists(os.path.join(d, "sysinit.target"))), None)
    if analyze is None or hostunits is None:
        skip("systemd_analyze_verify", "no systemd-analyze or systemd units here")
        return
    # The targets every service depends on (sysinit.target, ...) are the
    # host's: copied in beside ours, never over them.
    unitdir = os.path.join(root, "usr/lib/systemd/system")
    os.makedirs(unitdir, exist_ok=True)
    for entry in os.listdir(hostunits):
        src, dst = os.path.join(hostunits, entry), os.path.join(unitdir, entry)
        if not os.path.lexists(dst) and not os.path.isdir(src):
            shutil.copy(src, dst, follow_symlinks=False)
    # ExecReload's /bin/kill is the system's, not ours.
    kill = shutil.which("kill", path="/bin:/usr/bin")
    os.makedirs(os.path.join(root, "bin"), exist_ok=True)
    if kill and not os.path.exists(os.path.join(root, "bin/kill")):
        shutil.copy(kill, os.path.join(root, "bin/kill"))
    env = dict(os.environ)
    mans = glob.glob(os.path.join(root, "**", "man8", "invoice-server.8*"), recursive=True)
    man_flag = []
    if shutil.which("man") is None:
        # verify runs man(1) for Documentation=man:...; without it, not checked.
        man_flag = ["--man=no"]
        skip("documentation_man_pages", "no man(1) on this machine")
    elif mans:
        env["MANPATH"] = os.path.dirname(os.path.dirname(mans[0]))
    for name in UNITS:
        tag = name.replace("-", "_")
        # By name: found only where systemd looks for units.
        rc, out = run([analyze, "verify", "--root=" + root] + man_flag +
                      [name + ".service"], env=env)
        # A warning (an unknown key, a bad value) leaves the exit code 0.
        check("%s_systemd_analyze_verify" % tag, rc == 0 and out.strip() == "",
              "exit %d: %s" % (rc, out))
        rc, out = run([analyze, "security", "--offline=yes", "--root=" + root,
                       "--threshold=20", name + ".service"], env=env)
        level = re.search(r"Overall exposure level for \S+: ([\d.]+)", out)
        check("%s_exposure_at_most_2.0" % tag, rc == 0 and level is not None,
              "exit %d: %s" % (rc, out[-1500:]))
        if level:
            print("     %s: exposure %s" % (name, level.group(1)), flush=True)


# ----------------------------------------------------------------- notify

class Notify:
    """The service manager's end: a datagram socket that takes
    sd_notify(3) messages with the sender's credentials."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.seen = []  # (pid, {key: value}) of every message

    def next(self, timeout):
        """(pid, {key: value}) of the next message, or None."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None
        pid = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", cdata[:12])[0]
        fields = {}
        for line in data.decode("utf-8", "replace").split("\n"):
            if "=" in line:
                k, _, v = line.partition("=")
                fields[k] = v
        self.seen.append((pid, fields))
        return pid, fields

    def wait_for(self, key, timeout=20):
        """The first message holding key (others are kept in seen)."""
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            msg = self.next(max(0.05, deadline - time.monotonic()))
            if msg is not None and key in msg[1]:
                return msg
        return None

    def close(self):
        self.sock.close()


STATUS_RE = re.compile(r"generation (\d+), (\d+) connections?$")


def start(cmd, log_path, notify_path):
    env = dict(os.environ, NOTIFY_SOCKET=notify_path)
    log = open(log_path, "wb")
    return subprocess.Popen(WRAP + cmd + ["--listen", "127.0.0.1:0"], env=env,
                            stdout=log, stderr=subprocess.STDOUT), log


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def stop(proc, log):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20 * SLOW)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()
    return proc.returncode


def tls_connection(port, ca, cert, key):
    """An open mutual-TLS connection (the caller closes it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    s.recv(4096)  # answered: the connection is open and counted
    return s


def section_invoice_notify(build, tmp, ca, srv_cert, srv_key, cli_cert, cli_key):
    inv = os.path.join(build, "src/invoice/invoice-server")
    note = Notify(os.path.join(tmp, "notify.sock"))
    log_path = os.path.join(tmp, "invoice-server.log")
    proc, log = start([inv, "--cert", srv_cert, "--key", srv_key, "--ca", ca,
                       "--db", os.path.join(tmp, "invoices.db"), "--workers", "2",
                       "--allow", "read O=Client", "--reload-check", "0"],
                      log_path, note.path)
    conn = None
    try:
        msg = note.wait_for("READY")
        if not check("invoice_ready_sent", msg is not None and msg[1]["READY"] == "1",
                     "no READY=1: %s / %s" % (note.seen, read(log_path)[-800:])):
            return
        pid, fields = msg
        check("invoice_ready_from_main_pid", pid == proc.pid, "%s != %s" % (pid, proc.pid))
        m = re.search(r"listening on https://127\.0\.0\.1:(\d+)/", read(log_path))
        check("invoice_ready_after_listening", m is not None, read(log_path)[-800:])
        status = STATUS_RE.match(fields.get("STATUS", ""))
        check("invoice_ready_status_names_generation",
              status is not None and status.group(2) == "0", fields)
        if m is None or status is None:
            return
        gen = int(status.group(1))

        # An open connection, then SIGHUP: RELOADING=1 with the monotonic
        # clock, READY=1 with the next generation and that connection.
        conn = tls_connection(int(m.group(1)), ca, cli_cert, cli_key)
        before = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        msg = note.wait_for("RELOADING")
        check("invoice_sighup_sends_reloading", msg is not None and
              msg[1]["RELOADING"] == "1" and msg[0] == proc.pid, note.seen[-3:])
        usec = msg[1].get("MONOTONIC_USEC", "") if msg else ""
        check("invoice_reloading_has_monotonic_usec", usec.isdigit() and
              abs(int(usec) / 1e6 - before) < 30 * SLOW,
              "MONOTONIC_USEC=%r, test's CLOCK_MONOTONIC %.0f s" % (usec, before))
        msg = note.wait_for("READY")
        status = STATUS_RE.match(msg[1].get("STATUS", "")) if msg else None
        check("invoice_ready_after_reload_with_next_generation",
              status is not None and int(status.group(1)) == gen + 1 and
              status.group(2) == "1", msg)
        gen += 1

        # A refused reload: READY=1 again, the generation unchanged.
        with open(srv_cert, "rb") as f:
            good = f.read()
        with open(srv_cert, "wb") as f:
            f.write(b"not a certificate\n")
        proc.send_signal(signal.SIGHUP)
        rel = note.wait_for("RELOADING")
        msg = note.wait_for("READY")
        with open(srv_cert, "wb") as f:
            f.write(good)
        status = STATUS_RE.match(msg[1].get("STATUS", "")) if msg else None
        check("invoice_refused_reload_ready_same_generation",
              rel is not None and status is not None and int(status.group(1)) == gen,
              "%s / %s" % (msg, read(log_path)[-600:]))
        conn.close()
        conn = None

        proc.send_signal(signal.SIGTERM)
        msg = note.wait_for("STOPPING")
        check("invoice_sigterm_sends_stopping", msg is not None and
              msg[1]["STOPPING"] == "1" and msg[0] == proc.pid, note.seen[-3:])
    finally:
        if conn is not None:
            conn.close()
        rc = stop(proc, log)
        check("invoice_stops_with_exit_0", rc == 0,
              "exit %s: %s" % (rc, read(log_path)[-800:]))
        note.close()


def section_serve_notify(build, tmp, ca_dir):
    tw = os.path.join(build, "src/ca/twoway-ca")
    note = Notify(os.path.join(tmp, "notify-serve.sock"))
    log_path = os.path.join(tmp, "serve.log")
    proc, log = start([tw, "serve", "--ca", ca_dir, "--workers", "1"], log_path,
                      note.path)
    try:
        msg = note.wait_for("READY", timeout=30)
        check("serve_ready_sent_with_status",
              msg is not None and msg[0] == proc.pid and
              STATUS_RE.match(msg[1].get("STATUS", "")) is not None,
              "%s / %s" % (note.seen, read(log_path)[-800:]))
        proc.send_signal(signal.SIGTERM)
        msg = note.wait_for("STOPPING")
        check("serve_sigterm_sends_stopping", msg is not None, note.seen[-3:])
    finally:
        rc = stop(proc, log)
        check("serve_stops_with_exit_0", rc == 0, "exit %s: %s" % (rc, read(log_path)[-800:]))
        note.close()


def main():
    if len(sys.argv) != 3:
        print("usage: systemd_test.py BUILD_DIR CMAKE", file=sys.stderr)
        return 2
    build, cmake = os.path.abspath(sys.argv[1]), sys.argv[2]
    tw = os.path.join(build, "src/ca/twoway-ca")
    tmp = tempfile.mkdtemp(prefix="twoway-systemd-test.")
    try:
        ca_dir = os.path.join(tmp, "ca")
        rc, out = run([tw, "init", ca_dir, "--subject", "/CN=Test CA/O=X"])
        if not check("setup_ca", rc == 0, out):
            return 1
        ca = os.path.join(ca_dir, "ca.cert.pem")
        for name, subj, purpose in (("srv", "/CN=localhost/O=X", "--server"),
                                    ("cli", "/CN=client/O=Client", "--client")):
            rc, out = run([tw, "issue", "--ca", ca_dir, "--out",
                           os.path.join(tmp, name), "--subject", subj, purpose])
            if not check("setup_" + name, rc == 0, out):
                return 1
        srv = [os.path.join(tmp, "srv", f) for f in ("cert.pem", "key.pem")]
        cli = [os.path.join(tmp, "cli", f) for f in ("cert.pem", "key.pem")]
        sections = (
            lambda: section_units(build, cmake, tmp),
            lambda: section_invoice_notify(build, tmp, ca, srv[0], srv[1], cli[0], cli[1]),
            lambda: section_serve_notify(build, tmp, ca_dir),
        )
        for section in sections:
            try:
                section()
            except Exception as e:  # one broken section does not hide the rest
                fail("section", repr(e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s%s" % ("FAILED" if _failed else "all passed",
                    " (%d skipped)" % _skipped if _skipped else ""), flush=True)
    return 1 if _failed else 0


if __name__ == "__main__":
    sys.exit(main())
