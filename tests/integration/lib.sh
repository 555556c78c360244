# shellcheck shell=bash
# Tiny helper for the integration tests, sourced by each *_test.sh.
#
# It gives every test a private temp directory ($TMP, removed on exit) and a
# handful of check functions.  Each check prints one "ok"/"FAIL" line; `finish`
# prints the summary line "N passed, M failed" and exits non-zero on any failure.
#
# expect_exit runs a command with stdout in $OUT, stderr in $ERR and its exit
# status in $RC, so the checks after it can look at what it printed.

set -u

TMP=$(mktemp -d "${TMPDIR:-/tmp}/twoway-test.XXXXXX") || exit 1
# chmod first: a test may leave a read-only directory behind.
trap 'chmod -R u+rwx "$TMP" 2>/dev/null; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM # so that the EXIT trap cleans up after a kill too
OUT=$TMP/.stdout
ERR=$TMP/.stderr
RC=0
passed=0
failed=0

ok() {
    passed=$((passed + 1))
    printf 'ok   %s\n' "$1"
}

fail() {
    failed=$((failed + 1))
    printf 'FAIL %s: %s\n' "$1" "$2"
}

# Runs a command without judging it; output goes to $OUT and $ERR.
# A hung command is killed after 60 s (exit 124) so the suite always ends.
run() {
    timeout 60 "$@" >"$OUT" 2>"$ERR"
    RC=$?
}

# expect_exit CODE NAME -- cmd args...
# CODE may list alternatives: "1|3".  A sanitizer report is a failure too.
expect_exit() {
    local want=$1 name=$2
    shift 2
    [ "${1-}" = -- ] && shift
    run "$@"
    if grep -q 'Sanitizer' "$ERR"; then
        fail "$name" "sanitizer report: $(grep -m1 'Sanitizer' "$ERR")"
        return 1
    fi
    case "|$want|" in
    *"|$RC|"*)
        ok "$name"
        return 0 ;;
    esac
    local why="exit $RC, expected $want"
    [ "$RC" -ge 128 ] && why="crashed with signal $((RC - 128)), expected exit $want"
    [ "$RC" -eq 124 ] && why="timed out, expected exit $want"
    fail "$name" "$why; stderr: $(head -c 400 "$ERR")"
    return 1
}

# Fixed-string checks on the output of the last run / expect_exit.
expect_stdout_contains() {
    if grep -qF -- "$1" "$OUT"; then ok "$2"; else
        fail "$2" "stdout lacks '$1'; stdout: $(head -c 400 "$OUT")"; fi
}

expect_stderr_contains() {
    if grep -qF -- "$1" "$ERR"; then ok "$2"; else
        fail "$2" "stderr lacks '$1'; stderr: $(head -c 400 "$ERR")"; fi
}

# Extended-regex variant, for "names the option or the value" checks.
expect_stderr_matches() {
    if grep -qE -- "$1" "$ERR"; then ok "$2"; else
        fail "$2" "stderr does not match /$1/; stderr: $(head -c 400 "$ERR")"; fi
}

# expect_eq NAME WANT GOT
expect_eq() {
    if [ "$2" = "$3" ]; then ok "$1"; else
        fail "$1" "expected '$2', got '$3'"; fi
}

# expect_file_has FILE TEXT NAME: FILE contains TEXT (fixed string).
expect_file_has() {
    if grep -qF -- "$2" "$1" 2>/dev/null; then ok "$3"; else
        fail "$3" "'$1' lacks '$2'"; fi
}

# expect_file_lacks FILE TEXT NAME: FILE exists and does not contain TEXT.
expect_file_lacks() {
    if [ ! -f "$1" ]; then fail "$3" "'$1' does not exist"
    elif grep -qF -- "$2" "$1"; then fail "$3" "'$1' contains '$2'"
    else ok "$3"; fi
}

finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] && exit 0
    exit 1
}
