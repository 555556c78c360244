/* reason_test.c - from OpenSSL's verification codes to reasons, and the
 * one sentence per reason that every refusal speaks through. */
#include "tw_internal.h"
#include "unit_helpers.h"

#include <openssl/x509_vfy.h>

static const unsigned char serial[] = {0x12, 0x34, 0x56, 0x78,
                                       0x9a, 0xbc, 0xde, 0xf0};

struct fx {
    tw_key *key;
    tw_cert *ca, *leaf;
};

#define WHO "certificate /O=ABC/CN=leaf (issuer /CN=Reason CA, serial " \
            "123456789ABCDEF0)"

static int group_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    f->key = th_key("ec-p256");
    f->ca = th_ca("/CN=Reason CA", f->key);
    f->leaf = th_sign(&(struct th_spec){.subject = "/O=ABC/CN=leaf",
                                        .purposes = TW_PURPOSE_CLIENT,
                                        .serial = serial,
                                        .serial_len = sizeof(serial)},
                      f->key, f->ca, f->key);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fx *f = *state;

    tw_cert_free(f->leaf);
    tw_cert_free(f->ca);
    tw_key_free(f->key);
    free(f);
    return 0;
}

static void codes_map_to_reasons(void **state)
{
    static const struct {
        int code;
        enum tw_reason reason;
    } map[] = {
        {X509_V_OK, TW_REASON_NONE},
        {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, TW_REASON_UNKNOWN_CA},
        {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, TW_REASON_UNKNOWN_CA},
        {X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, TW_REASON_UNKNOWN_CA},
        {X509_V_ERR_CERT_HAS_EXPIRED, TW_REASON_EXPIRED},
        {X509_V_ERR_CERT_NOT_YET_VALID, TW_REASON_NOT_YET_VALID},
        {X509_V_ERR_CERT_REVOKED, TW_REASON_REVOKED},
        {X509_V_ERR_INVALID_PURPOSE, TW_REASON_WRONG_USAGE},
        {X509_V_ERR_INVALID_CA, TW_REASON_WRONG_USAGE},
        {X509_V_ERR_HOSTNAME_MISMATCH, TW_REASON_NAME_MISMATCH},
        {X509_V_ERR_IP_ADDRESS_MISMATCH, TW_REASON_NAME_MISMATCH},
        {X509_V_ERR_UNABLE_TO_GET_CRL, TW_REASON_CRL_UNUSABLE},
        {X509_V_ERR_CRL_HAS_EXPIRED, TW_REASON_CRL_UNUSABLE},
        {X509_V_ERR_CRL_SIGNATURE_FAILURE, TW_REASON_CRL_UNUSABLE},
        {X509_V_ERR_EE_KEY_TOO_SMALL, TW_REASON_BAD_CERTIFICATE},
        {X509_V_ERR_CA_MD_TOO_WEAK, TW_REASON_BAD_CERTIFICATE},
        {X509_V_ERR_CERT_SIGNATURE_FAILURE, TW_REASON_BAD_CERTIFICATE},
        {X509_V_ERR_UNSPECIFIED, TW_REASON_BAD_CERTIFICATE},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (tw__reason_from_x509(map[i].code) != map[i].reason)
            fail_msg("code %d: %s, not %s", map[i].code,
                     tw_reason_name(tw__reason_from_x509(map[i].code)),
                     tw_reason_name(map[i].reason));
}

static void sentence(const tw_cert *c, enum tw_reason r, const char *role,
                     const char *detail, const char *expected)
{
    tw_err err;

    tw_err_clear(&err);
    assert_int_equal(tw__reject(&err, r, c ? c->x509 : NULL, role, detail), -1);
    th_assert_rejected(err, r, expected);
}

static void every_reason_has_its_sentence(void **state)
{
    struct fx *f = *state;

    sentence(NULL, TW_REASON_NO_CERTIFICATE, NULL, NULL,
             "no certificate was presented: the peer must send one (give it "
             "a certificate and key issued by the CA)");
    sentence(f->leaf, TW_REASON_UNKNOWN_CA, "the client's", NULL,
             "the client's " WHO " was not issued by a trusted CA (issuer "
             "/CN=Reason CA is not in the CA file): issue it from the trusted "
             "CA, or trust its issuer");
    sentence(f->leaf, TW_REASON_REVOKED, NULL, NULL,
             "the " WHO " was revoked by its CA: issue a new one");
    sentence(f->leaf, TW_REASON_WRONG_USAGE, "our", "why",
             "our " WHO " may not be used for this (why): issue it with the "
             "right purpose (--server or --client)");
    sentence(f->leaf, TW_REASON_WRONG_USAGE, NULL, NULL,
             "the " WHO " may not be used for this (wrong key usage): issue "
             "it with the right purpose (--server or --client)");
    sentence(f->leaf, TW_REASON_NAME_MISMATCH, NULL, "db.example",
             "the " WHO " does not name the host db.example: issue it with "
             "--dns (or --ip) for that name, or connect by a name it holds");
    sentence(f->leaf, TW_REASON_CRL_UNUSABLE, NULL, NULL,
             "cannot check the " WHO " against the CRL (CRL unusable): "
             "publish a fresh CRL with `twoway-ca crl`");
    sentence(f->leaf, TW_REASON_BAD_CERTIFICATE, NULL, NULL,
             "the " WHO " was refused (bad certificate): re-issue it with "
             "twoway-ca (keys of at least 112 bits, SHA-256 signatures)");
    /* Without a certificate the sentence still stands. */
    sentence(NULL, TW_REASON_REVOKED, NULL, NULL,
             "the certificate was revoked by its CA: issue a new one");
    sentence(NULL, TW_REASON_EXPIRED, NULL, NULL,
             "the certificate expired on an unreadable date: issue a new one");
    assert_int_equal(tw__reject(NULL, TW_REASON_REVOKED, f->leaf->x509, NULL,
                                NULL), -1);
}

static void dates_are_utc(void **state)
{
    struct fx *f = *state;
    tw_cert *c = th_wrap(th_raw_cert(X509_VERSION_3, "dated", f->ca->x509,
                                     f->key->pkey, f->key->pkey,
                                     "20300405060708Z", "20310102030405Z", 5));

    sentence(c, TW_REASON_EXPIRED, NULL, NULL,
             "the certificate /CN=dated (issuer /CN=Reason CA, serial 05) "
             "expired on 2031-01-02 03:04:05 UTC: issue a new one");
    sentence(c, TW_REASON_NOT_YET_VALID, NULL, NULL,
             "the certificate /CN=dated (issuer /CN=Reason CA, serial 05) is "
             "not valid before 2030-04-05 06:07:08 UTC: check both machines' "
             "clocks");
    tw_cert_free(c);
}

static void names_that_cannot_be_copied_become_question_marks(void **state)
{
    struct fx *f = *state;
    tw_err err;

    /* Once an allocation fails, every later one does too. */
    tw__alloc_fail_after(0); /* the subject's text, then the issuer's */
    tw__reject(&err, TW_REASON_REVOKED, f->leaf->x509, NULL, NULL);
    tw__alloc_fail_after(-1);
    th_assert_rejected(err, TW_REASON_REVOKED,
                       "the certificate ? (issuer ?, serial 123456789ABCDEF0) "
                       "was revoked by its CA: issue a new one");
    tw__alloc_fail_after(1); /* the issuer's only */
    tw__reject(&err, TW_REASON_UNKNOWN_CA, f->leaf->x509, NULL, NULL);
    tw__alloc_fail_after(-1);
    th_assert_rejected(err, TW_REASON_UNKNOWN_CA,
                       "the certificate /O=ABC/CN=leaf (issuer ?, serial "
                       "123456789ABCDEF0) was not issued by a trusted CA "
                       "(issuer ? is not in the CA file): issue it from the "
                       "trusted CA, or trust its issuer");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codes_map_to_reasons),
        cmocka_unit_test(every_reason_has_its_sentence),
        cmocka_unit_test(dates_are_utc),
        cmocka_unit_test(names_that_cannot_be_copied_become_question_marks),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
