#!/usr/bin/env python3
"""The README runs as pasted: every shell block marked to run, in order.

    usage: readme_test.py BUILD_DIR SOURCE_DIR

A block of SOURCE_DIR/README.md runs when the line before its fence is the
marker (an HTML comment, invisible on GitHub):

    <!-- test: run -->
    ```sh
    twoway-ca init ca --subject '/O=ABC Inc.'
    ```

Blocks without it (`make install`, apt, an SMTP server on port 25, config
snippets) are listed and not run.

The marked blocks run in order in one bash, as a reader pastes them into one
terminal: in a fresh empty directory, with BUILD_DIR's program directories
first on PATH (so `twoway-ca`, `invoice-server` and `mail-server` are the
build's), with `set -eE -o pipefail`, so that any command that fails fails
the test.  A failure names the block (its fence line in README.md and its
first line) and the command.

Ports: every `localhost:PORT` / `127.0.0.1:PORT` in the marked blocks (the
README's 3100 and 9443) is rewritten to a free ephemeral port found at run
time, the same port for the same number throughout, so that the test cannot
collide with parallel tests or a service on the machine.  The README text
itself is what a user pastes.

PostgreSQL: the README's database URL for several instances,
`postgresql:///twoway?host=/run/postgresql`, is rewritten the same way to a
private PostgreSQL this script starts (pgserver.py: initdb in a temporary
directory, a Unix socket only) and stops, when a marked block names it.

Servers the blocks start in the background must be stopped by the blocks
(the README says how) and must have exited 0; whatever is still running at
the end is a failure, and is stopped anyway: the driver's EXIT trap stops its
jobs, and this script then stops the driver's whole process group (its own
session), also on timeout or when it is itself terminated.

Environment:
    TW_WRAP   a command prefix (make test-valgrind: "valgrind -q
              --error-exitcode=99 ...") to run the three programs under:
              PATH then starts with wrapper scripts of the same names.  An
              error in a program is a non-zero exit and fails its block; a
              background server's is checked when it exits.
    TW_KEEP   1 keeps the temp directory (the work directory, the blocks and
              the driver) and prints where it is.

Python standard library only.
"""

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

MARKER = "<!-- test: run -->"
# The database the README's several-instances example names (a user's own).
README_PG_URL = "postgresql:///twoway?host=/run/postgresql"
SH_FENCE = re.compile(r"^```(sh|bash|shell)\s*$")
ANY_FENCE = re.compile(r"^```")
# host:port as the README writes it in URLs and --listen
PORT_REF = re.compile(r"\b(localhost|127\.0\.0\.1):(\d{2,5})\b")

WRAP = shlex.split(os.environ.get("TW_WRAP", ""))
KEEP = os.environ.get("TW_KEEP", "") == "1"
TIMEOUT = 270  # below the ctest TIMEOUT of 300, to report the block itself
PROGRAMS = {
    "twoway-ca": "src/ca/twoway-ca",
    "invoice-server": "src/invoice/invoice-server",
    "mail-server": "src/mail/mail-server",
}


class Block:
    def __init__(self, fence_line, lines, marked):
        self.fence_line = fence_line  # 1-based line of the ``` fence
        self.lines = lines
        self.marked = marked

    @property
    def first(self):
        return self.lines[0].strip() if self.lines else "(empty)"

    def name(self):
        return f"README.md:{self.fence_line} `{self.first}`"


def parse(readme):
    """The README's fenced blocks, and the marker mistakes found."""
    lines = open(readme, encoding="utf-8").read().split("\n")
    blocks, problems = [], []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == MARKER:
            if i + 1 >= len(lines) or not SH_FENCE.match(lines[i + 1]):
                problems.append(f"README.md:{i + 1}: {MARKER} must be the line just "
                                "before a ```sh fence")
            i += 1
            continue
        if ANY_FENCE.match(line):
            j = i + 1
            while j < len(lines) and not ANY_FENCE.match(lines[j]):
                j += 1
            if j == len(lines):
                problems.append(f"README.md:{i + 1}: a ``` fence that is never closed")
                break
            is_sh = SH_FENCE.match(line) is not None
            marked = i > 0 and lines[i - 1].strip() == MARKER
            if is_sh or marked:
                blocks.append(Block(i + 1, lines[i + 1:j], marked))
            i = j + 1
            continue
        i += 1
    return blocks, problems


def free_ports(count):
    """COUNT distinct ports free on 127.0.0.1 now (held until all are found)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def rewrite_ports(blocks):
    """Maps each fixed port of the marked blocks to a free one, in place."""
    fixed = []
    for b in blocks:
        for line in b.lines:
            for m in PORT_REF.finditer(line):
                if m.group(2) not in fixed:
                    fixed.append(m.group(2))
    mapping = dict(zip(fixed, (str(p) for p in free_ports(len(fixed)))))
    for b in blocks:
        b.lines = [PORT_REF.sub(lambda m: f"{m.group(1)}:{mapping[m.group(2)]}", line)
                   for line in b.lines]
    return mapping


# The driver: the blocks in one shell, each sourced from its own file so that
# LINENO in the ERR trap is the line within the block.  $1 is the file the
# number of the running block is written to (for a timeout report), $2 how
# many seconds a server the blocks stopped may take to exit.
DRIVER_HEAD = r'''
set -eE -o pipefail
__tw_now=$1
__tw_grace=$2
shift 2
__tw_pids=()
__tw_cmds=()
__tw_fence=0
__tw_first=""

__tw_on_err() {
    local rc=$1 line=$2 cmd=$3
    # In a command substitution or subshell, let the command that ran it
    # report (it fails next, with the whole command line).
    (( BASH_SUBSHELL > 0 )) && exit "$rc"
    trap - ERR
    printf '\nreadme_test: FAIL: the block at README.md:%s (%s) failed:\n' "$__tw_fence" "$__tw_first"
    printf '  the command ending on README.md:%s, `%s`, exited %s\n' "$((__tw_fence + line))" "$cmd" "$rc"
    exit 1
}
trap '__tw_on_err $? "$LINENO" "$BASH_COMMAND"' ERR

# Background jobs the blocks start, recorded after each block.
__tw_record_jobs() {
    local pid known p
    for pid in $(jobs -p); do
        known=0
        for p in "${__tw_pids[@]}"; do
            if [ "$p" = "$pid" ]; then known=1; fi
        done
        if [ $known = 0 ]; then
            __tw_pids+=("$pid")
            __tw_cmds+=("$(jobs -l | grep -F " $pid " | cut -c1-160 || true) (started by the block at README.md:$__tw_fence)")
        fi
    done
}

__tw_stop_all() {
    local pid
    for pid in $(jobs -p); do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 300); do
        [ -z "$(jobs -rp)" ] && return
        sleep 0.1
    done
    for pid in $(jobs -p); do kill -KILL "$pid" 2>/dev/null || true; done
}
trap '__tw_stop_all' EXIT

__tw_run() { # N FENCE FIRST FILE
    __tw_fence=$2
    __tw_first=$3
    echo "$1" >"$__tw_now"
    printf '\n=== README.md:%s: %s\n' "$2" "$3"
    source "$4"
    __tw_record_jobs
}
'''

DRIVER_TAIL = r'''
trap - ERR
set +e
printf '\n=== after the last block: the servers the blocks started\n'
__tw_bad=0
for i in "${!__tw_pids[@]}"; do
    pid=${__tw_pids[$i]}
    # a server told to stop may take a while to exit (valgrind's leak check)
    for _ in $(seq 1 $((__tw_grace * 10))); do
        jobs -rp | grep -qx "$pid" || break
        sleep 0.1
    done
    if jobs -rp | grep -qx "$pid"; then
        printf 'readme_test: FAIL: still running at the end, the README does not stop it: %s\n' "${__tw_cmds[$i]}"
        __tw_bad=1
        kill -TERM "$pid"
    fi
    wait "$pid"
    rc=$?
    if [ $rc -ne 0 ]; then
        printf 'readme_test: FAIL: exited %s: %s\n' "$rc" "${__tw_cmds[$i]}"
        __tw_bad=1
    else
        printf 'ok: exited 0: %s\n' "${__tw_cmds[$i]}"
    fi
done
exit $__tw_bad
'''


def write_wrappers(bindir, build):
    os.makedirs(bindir)
    for name, rel in PROGRAMS.items():
        path = os.path.join(bindir, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexec %s %s \"$@\"\n"
                    % (" ".join(shlex.quote(w) for w in WRAP),
                       shlex.quote(os.path.join(build, rel))))
        os.chmod(path, 0o755)


def kill_group(proc):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def main():
    if len(sys.argv) != 3:
        print("usage: readme_test.py BUILD_DIR SOURCE_DIR", file=sys.stderr)
        return 2
    build = os.path.abspath(sys.argv[1])
    source = os.path.abspath(sys.argv[2])
    readme = os.path.join(source, "README.md")

    for rel in PROGRAMS.values():
        if not os.access(os.path.join(build, rel), os.X_OK):
            print(f"readme_test: {os.path.join(build, rel)} is missing: build first")
            return 1

    blocks, problems = parse(readme)
    for p in problems:
        print(f"readme_test: FAIL: {p}")
    if problems:
        return 1
    marked = [b for b in blocks if b.marked]
    if not marked:
        print(f"readme_test: FAIL: no block of README.md is marked {MARKER}")
        return 1
    for b in blocks:
        if not b.marked:
            print(f"not run (unmarked): {b.name()}")
    mapping = rewrite_ports(marked)
    for old, new in mapping.items():
        print(f"port {old} -> {new}")
    pg = None
    if any(README_PG_URL in line for b in marked for line in b.lines):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import pgserver  # noqa: E402 - only when a block needs it
        try:
            pg = pgserver.PgServer().start()
            pg.createdb("twoway")
        except pgserver.PgError as e:
            print(f"readme_test: FAIL: cannot start PostgreSQL for the README: {e}")
            if pg:
                pg.cleanup()
            return 1
        for b in marked:
            b.lines = [line.replace(README_PG_URL, pg.url("twoway")) for line in b.lines]
        print(f"database {README_PG_URL} -> {pg.url('twoway')}")
    try:
        return run_blocks(build, readme, marked)
    finally:
        if pg:
            pg.cleanup()


def run_blocks(build, readme, marked):
    """Run the marked blocks in order in one bash; 0 when all passed."""

    tmp = tempfile.mkdtemp(prefix="twoway-readme.")
    work = os.path.join(tmp, "work")
    os.makedirs(work)
    os.makedirs(os.path.join(tmp, "blocks"))
    env = dict(os.environ)
    if WRAP:
        bindir = os.path.join(tmp, "bin")
        write_wrappers(bindir, build)
        path = [bindir]
        # serve and the commands beside it share ca.db: slow under valgrind
        env["TWOWAY_CA_BUSY_TIMEOUT"] = "600"
    else:
        path = [os.path.dirname(os.path.join(build, rel)) for rel in PROGRAMS.values()]
    env["PATH"] = os.pathsep.join(path + [env.get("PATH", "/usr/bin:/bin")])

    driver = [DRIVER_HEAD]
    for n, b in enumerate(marked):
        f = os.path.join(tmp, "blocks", "%02d.sh" % n)
        with open(f, "w") as out:
            out.write("\n".join(b.lines) + "\n")
        driver.append("__tw_run %d %d %s %s\n" % (n, b.fence_line, shlex.quote(b.first),
                                                   shlex.quote(f)))
    driver.append(DRIVER_TAIL)
    driver_path = os.path.join(tmp, "driver.sh")
    with open(driver_path, "w") as out:
        out.write("".join(driver))
    now = os.path.join(tmp, "now")

    print(f"running {len(marked)} blocks of {readme} in {work}", flush=True)
    grace = "60" if WRAP else "10"  # seconds for a stopped server to exit
    proc = subprocess.Popen(["bash", driver_path, now, grace], cwd=work, env=env,
                            stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def on_signal(signum, _frame):
        kill_group(proc)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    timed_out = False
    try:
        rc = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        timed_out = True
        rc = -1
    finally:
        kill_group(proc)  # whatever the blocks left behind, by process group
        if proc.poll() is None:
            proc.wait()

    if timed_out:
        try:
            b = marked[int(open(now).read())]
            where = f"in the block at {b.name()}"
        except (OSError, ValueError, IndexError):
            where = "before the first block"
        print(f"\nreadme_test: FAIL: timed out after {TIMEOUT} s {where}")
    if KEEP:
        print(f"readme_test: kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    if rc == 0:
        print(f"\nreadme_test: ok: {len(marked)} blocks of README.md ran as pasted")
        return 0
    print("\nreadme_test: FAIL" + ("" if timed_out else f": the driver exited {rc}"))
    return 1


if __name__ == "__main__":
    sys.exit(main())
