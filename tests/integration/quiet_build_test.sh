#!/usr/bin/env bash
# quiet_build_test.sh SOURCE_DIR - scripts/quiet-build.sh, the step of
# `make demo` that hides the build behind one line and shows its log only
# when it fails; checked with stand-in commands, so that nothing is built.
set -u
src=$1
qb="$src/scripts/quiet-build.sh"
dir=$(mktemp -d /tmp/twoway-quiet-build-test.XXXXXX)
trap 'rm -rf "$dir"' EXIT
failed=0
check() { # NAME CONDITION-EXIT-CODE DETAIL
    if [ "$2" -eq 0 ]; then echo "ok   $1"; else echo "FAIL $1: $3"; failed=1; fi
}

# A command that succeeds: one line, its output only in the log.
"$qb" demo "$dir/ok/build.log" bash -c 'echo "compiling a.c"; echo "a warning" >&2' \
    > "$dir/ok.out" 2> "$dir/ok.err"
rc=$?
check "success_exits_0" $rc "exit $rc"
[ "$(cat "$dir/ok.out")" = "demo: building (log: $dir/ok/build.log)" ]
check "success_shows_one_line" $? "$(cat "$dir/ok.out")"
[ ! -s "$dir/ok.err" ]
check "success_says_nothing_on_stderr" $? "$(cat "$dir/ok.err")"
grep -qx "compiling a.c" "$dir/ok/build.log" && grep -qx "a warning" "$dir/ok/build.log"
check "success_writes_stdout_and_stderr_to_the_log" $? \
    "$(cat "$dir/ok/build.log" 2>&1)"

# A command that fails: the log is shown, the failure said, exit non-zero.
"$qb" demo "$dir/bad.log" bash -c 'echo "compiling b.c"; echo "b.c:1: error: boom" >&2; exit 3' \
    > "$dir/bad.out" 2> "$dir/bad.err"
rc=$?
check "failure_exits_with_the_command_status" $((rc != 3)) "exit $rc"
grep -qx "compiling b.c" "$dir/bad.out" && grep -qx "b.c:1: error: boom" "$dir/bad.out"
check "failure_shows_the_log" $? "$(cat "$dir/bad.out")"
grep -q "^demo: the build failed" "$dir/bad.err"
check "failure_says_the_build_failed" $? "$(cat "$dir/bad.err")"
grep -qx "b.c:1: error: boom" "$dir/bad.log"
check "failure_keeps_the_log" $? "$(cat "$dir/bad.log" 2>&1)"

# Too few arguments: a usage error, nothing run.
"$qb" demo > "$dir/usage.out" 2>&1
rc=$?
check "usage_error_exits_2" $((rc != 2)) "exit $rc: $(cat "$dir/usage.out")"

# make demo builds through it (not run: that would build the real tree).
# (The recipe's lines joined, backslash continuations undone.)
awk '/^demo:/ { on = 1; next } on && /^[^\t]/ { on = 0 } on' "$src/Makefile" |
    sed -e 's/\\$//' | tr -d '\n' |
    grep -q 'scripts/quiet-build.sh demo [^ ]*[[:space:]]*\$(MAKE) --no-print-directory build'
check "make_demo_builds_through_quiet_build" $? "the demo target does not call scripts/quiet-build.sh"
exit $failed
