#!/usr/bin/env bash
# The installed library as a user meets it: `cmake --install` into a
# temporary prefix, then a small program built with nothing but
# `pkg-config --cflags --libs twoway` and run against the installed
# libtwoway.so.  Every public header of include/ must be installed.
#
#   usage: pkgconfig_test.sh BUILD_DIR SOURCE_DIR VERSION CC [CFLAGS...]
#
# CFLAGS are the build's sanitizer flags: a library built with
# -fsanitize=... links only into a program built with the same.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

BUILD=${1:-}
SRC=${2:-}
VERSION=${3:-}
CC=${4:-}
shift 4 2>/dev/null
EXTRA=("$@")
if [ ! -d "$BUILD" ] || [ ! -d "$SRC/include" ] || [ -z "$VERSION" ] || [ -z "$CC" ]; then
    fail "setup" "usage: pkgconfig_test.sh BUILD_DIR SOURCE_DIR VERSION CC [CFLAGS...]"
    finish
fi
PREFIX=$TMP/prefix

expect_exit 0 "cmake --install into a temporary prefix" -- \
    cmake --install "$BUILD" --prefix "$PREFIX"

# Where GNUInstallDirs put it: lib, lib64 or lib/<triplet>.
PCFILE=$(find "$PREFIX" -name twoway.pc -path '*/pkgconfig/*' | head -n 1)
if [ -z "$PCFILE" ]; then
    fail "twoway.pc is installed" "no */pkgconfig/twoway.pc under $PREFIX"
    finish
fi
ok "twoway.pc is installed"
export PKG_CONFIG_PATH=${PCFILE%/twoway.pc}
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR

expect_exit 0 "pkg-config --modversion twoway" -- pkg-config --modversion twoway
expect_eq "the version is the project's" "$VERSION" "$(cat "$OUT")"
expect_exit 0 "pkg-config --variable=prefix twoway" -- pkg-config --variable=prefix twoway
expect_eq "the prefix is the one installed into" "$PREFIX" "$(cat "$OUT")"
expect_exit 0 "pkg-config --print-requires-private twoway" -- \
    pkg-config --print-requires-private twoway
expect_stdout_contains "libssl" "libssl is a private requirement"
expect_stdout_contains "libcrypto" "libcrypto is a private requirement"
LIBDIR=$(pkg-config --variable=libdir twoway)
if [ -e "$LIBDIR/libtwoway.so" ]; then ok "libdir holds libtwoway.so"; else
    fail "libdir holds libtwoway.so" "'$LIBDIR/libtwoway.so' does not exist"; fi

for h in "$SRC"/include/*.h; do
    name=${h##*/}
    if cmp -s "$h" "$PREFIX/include/$name"; then ok "include/$name is installed"; else
        fail "include/$name is installed" "'$PREFIX/include/$name' is missing or differs"; fi
done

# A user's program: public header, public calls, nothing else.
cat >"$TMP/user.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <twoway.h>
#if __has_include(<twoway_pki.h>)
#include <twoway_pki.h> /* keys and certificates */
#endif

int main(void)
{
    tw_err err;
    tw_key *key = tw_key_generate("ec-p256", &err);
    tw_config *cfg = tw_config_new();
    int rc = 1;

    if (key == NULL || cfg == NULL) {
        fprintf(stderr, "user: %s\n", key == NULL ? err.msg : "tw_config_new");
        goto out;
    }
    if (tw_config_set_ca_file(cfg, "/nonexistent/ca.pem") != -1) {
        fprintf(stderr, "user: a missing CA file was accepted\n");
        goto out;
    }
    printf("%s %s %s\n", tw_key_describe(key),
           tw_error_class_name(tw_config_error_class(cfg)),
           tw_reason_name(TW_REASON_UNKNOWN_CA));
    rc = 0;
out:
    tw_config_free(cfg);
    tw_key_free(key);
    return rc;
}
EOF
read -ra FLAGS <<<"$(pkg-config --cflags --libs twoway)"
expect_exit 0 "a program builds with pkg-config --cflags --libs twoway" -- \
    "$CC" -std=c17 -Wall -Wextra -Werror "${EXTRA[@]}" -o "$TMP/user" "$TMP/user.c" "${FLAGS[@]}"
[ "$RC" -eq 0 ] || finish

# It found the installed header, not the source tree's, and links the
# installed library (not the static archive or the build tree's).
expect_exit 0 "the program needs libtwoway.so" -- readelf -d "$TMP/user"
expect_stdout_contains "libtwoway.so.0" "the program needs libtwoway.so.0"
LD_LIBRARY_PATH=$LIBDIR expect_exit 0 "the program runs against the installed library" -- \
    "$TMP/user"
expect_eq "the program's output" "EC P-256 io unknown_ca" "$(cat "$OUT")"
LD_LIBRARY_PATH=$LIBDIR expect_exit 0 "ldd" -- ldd "$TMP/user"
expect_stdout_contains "$LIBDIR/libtwoway.so.0" "the installed libtwoway.so.0 is the one loaded"

finish
