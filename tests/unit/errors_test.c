/* errors_test.c - error classes, reasons and the sentences that carry them.
 * The names appear in logs and scripts: they are pinned here. */
#include "tw_internal.h"
#include "unit_helpers.h"

#include <openssl/err.h>
#include <openssl/pem.h>

static void class_names_are_stable(void **state)
{
    (void)state;
    assert_string_equal(tw_error_class_name(TW_ERR_NONE), "none");
    assert_string_equal(tw_error_class_name(TW_ERR_IO), "io");
    assert_string_equal(tw_error_class_name(TW_ERR_CLOSED), "closed");
    assert_string_equal(tw_error_class_name(TW_ERR_BLOCKED), "blocked");
    assert_string_equal(tw_error_class_name(TW_ERR_PROTOCOL), "protocol");
    assert_string_equal(tw_error_class_name(TW_ERR_PEER_REJECTED),
                        "peer_rejected");
    assert_string_equal(tw_error_class_name(TW_ERR_USAGE), "usage");
    assert_string_equal(tw_error_class_name(TW_ERR_INPUT), "input");
    assert_string_equal(tw_error_class_name(TW_ERR_INTERNAL), "internal");
    assert_string_equal(tw_error_class_name(TW_ERR_REJECTED_BY_PEER),
                        "rejected_by_peer");
    /* 15: outside the list, inside the enum's range of values. */
    assert_string_equal(tw_error_class_name((enum tw_error_class)15),
                        "unknown");
}

/* TW_ERR_POLICY_DENIED was removed: nothing produced it (a role refused is
 * PEER_REJECTED with the policy_denied reason).  Every class left has a
 * name, and none after the last. */
static void removed_class_leaves_no_gap(void **state)
{
    (void)state;
    for (int c = TW_ERR_NONE; c <= TW_ERR_REJECTED_BY_PEER; c++)
        if (strcmp(tw_error_class_name((enum tw_error_class)c), "unknown") == 0)
            fail_msg("error class %d has no name", c);
    assert_string_equal(tw_error_class_name((enum tw_error_class)(
                            TW_ERR_REJECTED_BY_PEER + 1)),
                        "unknown");
    assert_int_equal(TW_ERR_REJECTED_BY_PEER, 9);
}

static void reason_names_are_stable(void **state)
{
    (void)state;
    assert_string_equal(tw_reason_name(TW_REASON_NONE), "none");
    assert_string_equal(tw_reason_name(TW_REASON_NO_CERTIFICATE),
                        "no_certificate");
    assert_string_equal(tw_reason_name(TW_REASON_UNKNOWN_CA), "unknown_ca");
    assert_string_equal(tw_reason_name(TW_REASON_EXPIRED), "expired");
    assert_string_equal(tw_reason_name(TW_REASON_NOT_YET_VALID),
                        "not_yet_valid");
    assert_string_equal(tw_reason_name(TW_REASON_REVOKED), "revoked");
    assert_string_equal(tw_reason_name(TW_REASON_WRONG_USAGE), "wrong_usage");
    assert_string_equal(tw_reason_name(TW_REASON_NAME_MISMATCH),
                        "name_mismatch");
    assert_string_equal(tw_reason_name(TW_REASON_POLICY_DENIED),
                        "policy_denied");
    assert_string_equal(tw_reason_name(TW_REASON_BAD_CERTIFICATE),
                        "bad_certificate");
    assert_string_equal(tw_reason_name(TW_REASON_PROTOCOL), "protocol");
    assert_string_equal(tw_reason_name(TW_REASON_CRL_UNUSABLE), "crl_unusable");
    assert_string_equal(tw_reason_name((enum tw_reason)15), "unknown");
}

static void clear_resets_everything(void **state)
{
    tw_err err;

    (void)state;
    err.cls = TW_ERR_IO;
    err.reason = TW_REASON_EXPIRED;
    snprintf(err.msg, sizeof(err.msg), "stale");
    tw_err_clear(&err);
    assert_int_equal(err.cls, TW_ERR_NONE);
    assert_int_equal(err.reason, TW_REASON_NONE);
    assert_string_equal(err.msg, "");
    tw_err_clear(NULL); /* allowed: err may always be NULL */
}

static void err_formats_and_returns_minus_one(void **state)
{
    tw_err err;

    (void)state;
    err.reason = TW_REASON_REVOKED; /* a stale reason must not survive */
    assert_int_equal(twu_err(&err, TW_ERR_USAGE, "bad %s %d", "thing", 7), -1);
    th_assert_err(err, TW_ERR_USAGE, "bad thing 7");
    assert_int_equal(err.reason, TW_REASON_NONE);
    assert_int_equal(twu_err(NULL, TW_ERR_USAGE, "nobody listens"), -1);
}

static void err_reason_keeps_the_reason(void **state)
{
    tw_err err;

    (void)state;
    assert_int_equal(twu_err_reason(&err, TW_ERR_PEER_REJECTED,
                                    TW_REASON_EXPIRED, "old %d", 1), -1);
    assert_int_equal(err.cls, TW_ERR_PEER_REJECTED);
    assert_int_equal(err.reason, TW_REASON_EXPIRED);
    assert_string_equal(err.msg, "old 1");
    assert_int_equal(twu_err_reason(NULL, TW_ERR_INPUT, TW_REASON_PROTOCOL,
                                    "x"), -1);
}

static void err_ssl_appends_openssls_newest_error_and_clears(void **state)
{
    tw_err err;

    (void)state;
    ERR_clear_error();
    ERR_raise(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE);
    ERR_raise(ERR_LIB_PEM, PEM_R_NO_START_LINE); /* the newest */
    assert_int_equal(twu_err_ssl(&err, TW_ERR_INPUT, "reading %s", "a.pem"),
                     -1);
    th_assert_err(err, TW_ERR_INPUT, "reading a.pem: no start line");
    assert_int_equal(ERR_peek_error(), 0);
}

static void err_ssl_without_queued_error_adds_nothing(void **state)
{
    tw_err err;

    (void)state;
    ERR_clear_error();
    twu_err_ssl(&err, TW_ERR_INTERNAL, "plain");
    th_assert_err(err, TW_ERR_INTERNAL, "plain");
}

static void err_ssl_clears_the_queue_even_without_err(void **state)
{
    (void)state;
    ERR_raise(ERR_LIB_PEM, PEM_R_NO_START_LINE);
    assert_int_equal(twu_err_ssl(NULL, TW_ERR_INPUT, "x"), -1);
    assert_int_equal(ERR_peek_error(), 0);
}

static void err_ssl_never_overflows_a_full_message(void **state)
{
    tw_err err;
    char long_text[TW_ERR_MSG_MAX + 100];

    (void)state;
    memset(long_text, 'a', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    ERR_raise(ERR_LIB_PEM, PEM_R_NO_START_LINE);
    twu_err_ssl(&err, TW_ERR_INPUT, "%s", long_text);
    assert_int_equal(strlen(err.msg), TW_ERR_MSG_MAX - 1);
    assert_int_equal(ERR_peek_error(), 0);
}

static void long_messages_are_truncated_not_overflowed(void **state)
{
    tw_err err;
    char long_text[2 * TW_ERR_MSG_MAX];

    (void)state;
    memset(long_text, 'x', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    twu_err(&err, TW_ERR_USAGE, "%s", long_text);
    assert_int_equal(strlen(err.msg), TW_ERR_MSG_MAX - 1);
    assert_int_equal(strncmp(err.msg, long_text, TW_ERR_MSG_MAX - 1), 0);
}

static void nomem_is_internal(void **state)
{
    tw_err err;

    (void)state;
    assert_int_equal(twu_err_nomem(&err), -1);
    th_assert_err(err, TW_ERR_INTERNAL, "out of memory");
    assert_int_equal(twu_err_nomem(NULL), -1);
}

static void hex_upper_and_lower(void **state)
{
    const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff};
    char out[2 * sizeof(bytes) + 1];

    (void)state;
    twu_hex(bytes, sizeof(bytes), out, 1);
    assert_string_equal(out, "000FA5FF");
    twu_hex(bytes, sizeof(bytes), out, 0);
    assert_string_equal(out, "000fa5ff");
    twu_hex(bytes, 0, out, 0);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(class_names_are_stable),
        cmocka_unit_test(removed_class_leaves_no_gap),
        cmocka_unit_test(reason_names_are_stable),
        cmocka_unit_test(clear_resets_everything),
        cmocka_unit_test(err_formats_and_returns_minus_one),
        cmocka_unit_test(err_reason_keeps_the_reason),
        cmocka_unit_test(err_ssl_appends_openssls_newest_error_and_clears),
        cmocka_unit_test(err_ssl_without_queued_error_adds_nothing),
        cmocka_unit_test(err_ssl_clears_the_queue_even_without_err),
        cmocka_unit_test(err_ssl_never_overflows_a_full_message),
        cmocka_unit_test(long_messages_are_truncated_not_overflowed),
        cmocka_unit_test(nomem_is_internal),
        cmocka_unit_test(hex_upper_and_lower),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
