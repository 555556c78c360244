/* name_test.c - subjects in the `openssl -subj` form. */
#include "tw_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "unit_helpers.h"

static void parses_and_prints_back(void **state)
{
    tw_err err;
    tw_name *n = tw_name_parse("/O=ABC Inc./CN=localhost", &err);

    (void)state;
    assert_non_null(n);
    assert_string_equal(tw_name_text(n), "/O=ABC Inc./CN=localhost");
    tw_name_free(n);
}

static void escapes_round_trip(void **state)
{
    tw_err err;
    tw_name *n = tw_name_parse("/O=A\\/B\\\\C/CN=x=y", &err), *again;

    (void)state;
    assert_non_null(n);
    assert_string_equal(tw_name_text(n), "/O=A\\/B\\\\C/CN=x=y");
    again = tw_name_parse(tw_name_text(n), &err);
    assert_non_null(again);
    assert_string_equal(tw_name_text(again), tw_name_text(n));
    tw_name_free(again);
    tw_name_free(n);
}

static void refuses(const char *text, const char *needle)
{
    tw_err err;

    tw_err_clear(&err);
    assert_null(tw_name_parse(text, &err));
    assert_int_equal(err.cls, TW_ERR_USAGE);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("'%s': message '%s' lacks '%s'", text, err.msg, needle);
}

static void malformed_subjects_are_named(void **state)
{
    (void)state;
    refuses("CN=x", "must start with '/'");
    refuses("/", "names no attribute");
    refuses("/CN", "has no '='");
    refuses("/XX=y", "unknown attribute 'XX'");
    refuses("/CN=", "empty value");
    refuses("/=x", "no attribute type");
    refuses("/CN=a\\", "lone backslash");
    refuses("/C=USA", "two-letter");
    refuses("/CN=a\001b", "control character");
    refuses("/CN=0123456789012345678901234567890123456789012345678901234567890123456789",
            "longer than 64");
}

static void trailing_slash_is_harmless(void **state)
{
    tw_err err;
    tw_name *n = tw_name_parse("/CN=x/", &err);

    (void)state;
    assert_non_null(n);
    assert_string_equal(tw_name_text(n), "/CN=x");
    tw_name_free(n);
}

static void allocation_failures_are_clean(void **state)
{
    (void)state;
    for (long i = 0; i < 8; i++) {
        tw_err err;
        tw_name *n;

        twu_alloc_fail_after(i);
        n = tw_name_parse("/O=ABC Inc./CN=localhost", &err);
        twu_alloc_fail_after(-1);
        if (n == NULL)
            assert_int_equal(err.cls, TW_ERR_INTERNAL);
        tw_name_free(n);
    }
}

struct parse_ctx {
    const char *text, *expected;
};

static int parse_once(void *ctx, tw_err *err)
{
    const struct parse_ctx *c = ctx;
    tw_name *n = tw_name_parse(c->text, err);

    if (n == NULL)
        return -1;
    assert_string_equal(tw_name_text(n), c->expected);
    tw_name_free(n);
    return 0;
}

static void allocation_failures_until_success(void **state)
{
    /* Over 256 bytes of text, so that printing it back grows its buffer;
     * it prints back as it was written. */
    static const char subject[] =
        "/O=ABC Inc. with a rather long organization name here/"
        "OU=An organizational unit, also long enough to matter/"
        "OU=A\\/B\\\\C/L=Somewhere in a city with a long name, far "
        "away from here, near the mountains and beyond the river/"
        "ST=Some state or province with a long name/CN=mail.abc.example";
    struct parse_ctx c = {.text = subject, .expected = subject};

    (void)state;
    assert_true(strlen(subject) > 256);
    th_alloc_fail_loop(parse_once, &c);
}

static void control_characters_never_reach_the_text(void **state)
{
    X509_NAME *name = X509_NAME_new();
    char *text;

    (void)state;
    /* Made directly: tw_name_parse refuses them. */
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                                (const unsigned char *)
                                                "a\nb\x7f/c", -1, -1, 0), 1);
    text = tw__name_text(name);
    assert_string_equal(text, "/CN=a?b?\\/c");
    twu_free(text);
    X509_NAME_free(name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_and_prints_back),
        cmocka_unit_test(escapes_round_trip),
        cmocka_unit_test(malformed_subjects_are_named),
        cmocka_unit_test(trailing_slash_is_harmless),
        cmocka_unit_test(allocation_failures_are_clean),
        cmocka_unit_test(allocation_failures_until_success),
        cmocka_unit_test(control_characters_never_reach_the_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
