/* util_test.c - src/util: the bounded buffer and the strict parsers of
 * sizes and durations.  What the parsers refuse is pinned as carefully as
 * what they take: a typo on a command line must be an error, never a
 * surprising value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void buf_appends_and_stays_terminated(void **state)
{
    twu_buf b = {0};

    (void)state;
    assert_int_equal(twu_buf_append(&b, "ab", 2), 0);
    assert_int_equal(twu_buf_printf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(b.data, "ab42-x");
    assert_int_equal(b.len, 6);
    twu_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    twu_buf_free(&b);
    assert_null(b.data);
}

static void buf_refuses_to_pass_its_max(void **state)
{
    twu_buf b = {.max = 8};
    char big[600];

    (void)state;
    assert_int_equal(twu_buf_append(&b, "12345678", 8), 0);
    assert_int_equal(twu_buf_append(&b, "9", 1), -1);
    assert_string_equal(b.data, "12345678"); /* unchanged */
    assert_int_equal(twu_buf_printf(&b, "%s", "more"), -1);
    assert_string_equal(b.data, "12345678");
    twu_buf_free(&b);
    /* printf that needs a second pass (past the first 256 bytes) */
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    b.max = 0;
    assert_int_equal(twu_buf_printf(&b, "%s", big), 0);
    assert_int_equal(b.len, sizeof(big) - 1);
    twu_buf_free(&b);
}

static void buf_survives_every_allocation_failure(void **state)
{
    (void)state;
    for (long n = 0; n < 4; n++) {
        twu_buf b = {0};
        char big[1000];

        memset(big, 'y', sizeof(big));
        twu_alloc_fail_after(n);
        if (twu_buf_append(&b, "a", 1) == 0 &&
            twu_buf_append(&b, big, sizeof(big)) == 0)
            assert_int_equal(b.len, 1 + sizeof(big));
        else
            assert_true(b.data == NULL || b.data[b.len] == '\0');
        twu_alloc_fail_after(-1);
        twu_buf_free(&b);
    }
}

static void sizes_with_units(void **state)
{
    unsigned long long v;

    (void)state;
    assert_int_equal(twu_parse_size("0", 1ULL << 40, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(twu_parse_size("4096", 1ULL << 40, &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(twu_parse_size("512K", 1ULL << 40, &v), 0);
    assert_int_equal(v, 512 * 1024);
    assert_int_equal(twu_parse_size("10M", 1ULL << 40, &v), 0);
    assert_int_equal(v, 10 * 1024 * 1024);
    assert_int_equal(twu_parse_size("10MiB", 1ULL << 40, &v), 0);
    assert_int_equal(v, 10 * 1024 * 1024);
    assert_int_equal(twu_parse_size("1G", 1ULL << 40, &v), 0);
    assert_int_equal(v, 1ULL << 30);
    assert_int_equal(twu_parse_size("7B", 1ULL << 40, &v), 0);
    assert_int_equal(v, 7);
}

static void sizes_refused(void **state)
{
    static const char *const bad[] = {"", "M", "-1", "+5", " 5", "5 ", "5m",
                                      "1.5M", "10MB", "0x10", "5KK",
                                      "99999999999999999999999"};
    unsigned long long v = 77;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_int_equal(twu_parse_size(bad[i], 1ULL << 40, &v), -1);
        assert_int_equal(v, 77); /* untouched */
    }
    assert_int_equal(twu_parse_size("2G", 1ULL << 30, &v), -1); /* > max */
    assert_int_equal(twu_parse_size("17179869184G", ~0ULL, &v), -1); /* overflow */
}

static void durations_with_units(void **state)
{
    long long s;

    (void)state;
    assert_int_equal(twu_parse_duration("90s", 1, 1LL << 40, &s), 0);
    assert_int_equal(s, 90);
    assert_int_equal(twu_parse_duration("15m", 1, 1LL << 40, &s), 0);
    assert_int_equal(s, 900);
    assert_int_equal(twu_parse_duration("24h", 1, 1LL << 40, &s), 0);
    assert_int_equal(s, 86400);
    assert_int_equal(twu_parse_duration("30d", 1, 1LL << 40, &s), 0);
    assert_int_equal(s, 30 * 86400);
}

static void durations_refused(void **state)
{
    static const char *const bad[] = {"", "90", "s", "-5s", "5 s", "5sec",
                                      "1.5h", "5w", "5S", "99999999999999999999d"};
    long long s = 77;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_int_equal(twu_parse_duration(bad[i], 0, 1LL << 40, &s), -1);
        assert_int_equal(s, 77);
    }
    assert_int_equal(twu_parse_duration("59s", 60, 3600, &s), -1); /* < min */
    assert_int_equal(twu_parse_duration("2h", 60, 3600, &s), -1);  /* > max */
    assert_int_equal(twu_parse_duration("106751991167301d", 0, 1LL << 62, &s),
                     -1); /* overflow */
}

/* ---------------------------------------------------------------- conf */

static const struct option conf_opts[] = {
    {"cert", required_argument, NULL, 'c'},
    {"allow", required_argument, NULL, 'a'},
    {"once", no_argument, NULL, 'o'},
    {"quiet", no_argument, NULL, 'q'},
    {"config", required_argument, NULL, 'C'},
    {NULL, 0, NULL, 0}};

static char *conf_file(const char *text)
{
    static char path[64];
    FILE *f;

    snprintf(path, sizeof(path), "/tmp/twconf.%d", (int)getpid());
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void conf_lines_become_arguments(void **state)
{
    char *path = conf_file("# comment\n\n  cert = /a b/c.pem  # trailing\n"
                           "allow = \"read O=X # not a comment\"\n"
                           "--allow=x\nallow = metrics O=\"A B\"\r\n"
                           "once = yes\nquiet = off\n");
    char *argv[] = {"prog", "--config", path, NULL};
    twu_conf c;
    tw_err err;

    (void)state;
    assert_string_equal(twu_conf_find(3, argv), path);
    assert_int_equal(twu_conf_load(&c, path, "prog", conf_opts, &err), 0);
    assert_int_equal(c.argc, 10);
    assert_string_equal(c.argv[0], "prog");
    assert_string_equal(c.argv[1], "--cert");
    assert_string_equal(c.argv[2], "/a b/c.pem");
    assert_int_equal(twu_conf_line(&c, 2), 3);
    assert_string_equal(c.argv[3], "--allow");
    assert_string_equal(c.argv[4], "read O=X # not a comment");
    assert_string_equal(c.argv[5], "--allow"); /* "--allow=x": dashes too */
    assert_string_equal(c.argv[6], "x");
    assert_string_equal(c.argv[7], "--allow");
    assert_string_equal(c.argv[8], "metrics O=\"A B\"");
    assert_int_equal(twu_conf_line(&c, 8), 6);
    assert_string_equal(c.argv[9], "--once");
    assert_null(c.argv[10]);
    twu_conf_free(&c);
    unlink(path);
}

static void conf_errors_name_file_and_line(void **state)
{
    static const struct {
        const char *text, *message;
    } cases[] = {
        {"cert = a\nnosuch = 1\n", ":2: unknown option 'nosuch'"},
        {"cert\n", ":1: 'cert' needs a value"},
        {"once = maybe\n", ":1: 'once' is a yes/no option"},
        {"config = other\n", ":1: 'config' cannot be set"},
        {"cert = \"a\n", ":1: a value opened with \" is not closed"},
        {"cert = \"a\" b\n", ":1: text after the closing \""},
    };
    twu_conf c;
    tw_err err;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *path = conf_file(cases[i].text);

        assert_int_equal(twu_conf_load(&c, path, "prog", conf_opts, &err), -1);
        assert_int_equal(err.cls, TW_ERR_USAGE);
        if (strstr(err.msg, cases[i].message) == NULL)
            fail_msg("case %zu: %s", i, err.msg);
        unlink(path);
    }
    assert_int_equal(twu_conf_load(&c, "/nonexistent/x.conf", "prog", conf_opts,
                                   &err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_appends_and_stays_terminated),
        cmocka_unit_test(buf_refuses_to_pass_its_max),
        cmocka_unit_test(buf_survives_every_allocation_failure),
        cmocka_unit_test(sizes_with_units),
        cmocka_unit_test(sizes_refused),
        cmocka_unit_test(durations_with_units),
        cmocka_unit_test(durations_refused),
        cmocka_unit_test(conf_lines_become_arguments),
        cmocka_unit_test(conf_errors_name_file_and_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
