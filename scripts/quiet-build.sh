#!/usr/bin/env bash
# Run a command with its output in a log: one line while it runs, the whole
# log only when it fails (make demo: a build's few hundred lines hide the
# story that follows).
#
# usage: scripts/quiet-build.sh NAME LOG COMMAND [ARG...]
#   prints   "NAME: building (log: LOG)"
#   success  exit 0, nothing more shown, the output kept in LOG
#   failure  LOG shown, "NAME: the build failed" on stderr, exit with the
#            command's status
# tests/integration/quiet_build_test.sh checks both ways.
set -u
if [ $# -lt 3 ]; then
    echo "usage: scripts/quiet-build.sh NAME LOG COMMAND [ARG...]" >&2
    exit 2
fi
name=$1 log=$2
shift 2
mkdir -p "$(dirname "$log")" || exit 1
echo "$name: building (log: $log)"
"$@" > "$log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
    cat "$log"
    echo "$name: the build failed (exit $rc; log: $log)" >&2
    exit $rc
fi
exit 0
