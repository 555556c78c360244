/* reason_test.c - from OpenSSL's verification codes to reasons, the one
 * sentence per reason that every refusal speaks through, and the sentence
 * for each alert a peer refuses us with.  The public calls are the ones
 * mail-server uses (its TLS is libcurl's); they used to be copies there. */
#include "tw_internal.h"
#include "twoway_pki.h"
#include "unit_helpers.h"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

static const unsigned char serial[] = {0x12, 0x34, 0x56, 0x78,
                                       0x9a, 0xbc, 0xde, 0xf0};

struct fx {
    tw_key *key;
    tw_cert *ca, *leaf;
    tw_identity *id;      /* the leaf's */
    tw_identity *expired; /* /CN=old, not after 2020-02-01 */
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
    f->id = tw_identity_from_cert(f->leaf, NULL);
    {
        tw_cert *old = th_wrap(th_raw_cert(X509_VERSION_3, "old", f->ca->x509,
                                           f->key->pkey, f->key->pkey,
                                           "20200101000000Z",
                                           "20200201000000Z", 7));

        f->expired = tw_identity_from_cert(old, NULL);
        tw_cert_free(old);
    }
    assert_non_null(f->id);
    assert_non_null(f->expired);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fx *f = *state;

    tw_identity_free(f->id);
    tw_identity_free(f->expired);
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
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (tw_reason_from_verify_error(map[i].code) != map[i].reason)
            fail_msg("code %d: %s, not %s", map[i].code,
                     tw_reason_name(tw_reason_from_verify_error(map[i].code)),
                     tw_reason_name(map[i].reason));
        /* The library's own callers keep the internal name. */
        assert_int_equal(tw__reason_from_x509(map[i].code), map[i].reason);
    }
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
             "expired on 2031-01-02T03:04:05Z: issue a new one");
    sentence(c, TW_REASON_NOT_YET_VALID, NULL, NULL,
             "the certificate /CN=dated (issuer /CN=Reason CA, serial 05) is "
             "not valid before 2030-04-05T06:07:08Z: check both machines' "
             "clocks");
    tw_cert_free(c);
}

static void names_that_cannot_be_copied_become_question_marks(void **state)
{
    struct fx *f = *state;
    tw_err err;

    /* Once an allocation fails, every later one does too. */
    twu_alloc_fail_after(0); /* the subject's text, then the issuer's */
    tw__reject(&err, TW_REASON_REVOKED, f->leaf->x509, NULL, NULL);
    twu_alloc_fail_after(-1);
    th_assert_rejected(err, TW_REASON_REVOKED,
                       "the certificate ? (issuer ?, serial 123456789ABCDEF0) "
                       "was revoked by its CA: issue a new one");
    twu_alloc_fail_after(1); /* the issuer's only */
    tw__reject(&err, TW_REASON_UNKNOWN_CA, f->leaf->x509, NULL, NULL);
    twu_alloc_fail_after(-1);
    th_assert_rejected(err, TW_REASON_UNKNOWN_CA,
                       "the certificate /O=ABC/CN=leaf (issuer ?, serial "
                       "123456789ABCDEF0) was not issued by a trusted CA "
                       "(issuer ? is not in the CA file): issue it from the "
                       "trusted CA, or trust its issuer");
}

/* ------------------------------------------- the public refusal sentence */

static void public_sentence(const tw_identity *id, enum tw_reason r,
                            const char *whose, const char *detail,
                            const char *expected)
{
    tw_err err;

    tw_err_clear(&err);
    assert_int_equal(tw_explain_refusal(&err, r, id, whose, detail), -1);
    th_assert_rejected(err, r, expected);
}

/* mail-server used to reach tw__reject (an X509 and a private header):
 * from an identity the public call says the same words. */
static void refusal_from_an_identity_says_what_tw_reject_says(void **state)
{
    struct fx *f = *state;
    tw_err inner, outer;

    for (int r = TW_REASON_NONE; r <= TW_REASON_CRL_UNUSABLE; r++) {
        tw__reject(&inner, (enum tw_reason)r, f->leaf->x509, "the server's",
                   "detail");
        tw_explain_refusal(&outer, (enum tw_reason)r, f->id, "the server's",
                           "detail");
        assert_string_equal(outer.msg, inner.msg);
        assert_int_equal(outer.reason, inner.reason);
        assert_int_equal(outer.cls, TW_ERR_PEER_REJECTED);
    }
    public_sentence(f->id, TW_REASON_UNKNOWN_CA, "the invoice server's", NULL,
                    "the invoice server's " WHO " was not issued by a trusted "
                    "CA (issuer /CN=Reason CA is not in the CA file): issue "
                    "it from the trusted CA, or trust its issuer");
    public_sentence(f->id, TW_REASON_NAME_MISMATCH, NULL, "127.0.0.1",
                    "the " WHO " does not name the host 127.0.0.1: issue it "
                    "with --dns (or --ip) for that name, or connect by a name "
                    "it holds");
    public_sentence(f->expired, TW_REASON_EXPIRED, "the invoice server's", NULL,
                    "the invoice server's certificate /CN=old (issuer "
                    "/CN=Reason CA, serial 07) expired on 2020-02-01T00:00:00Z: "
                    "issue a new one");
    public_sentence(f->expired, TW_REASON_NOT_YET_VALID, NULL, NULL,
                    "the certificate /CN=old (issuer /CN=Reason CA, serial "
                    "07) is not valid before 2020-01-01T00:00:00Z: check "
                    "both machines' clocks");
    public_sentence(NULL, TW_REASON_REVOKED, "the client's", NULL,
                    "the client's certificate was revoked by its CA: issue a "
                    "new one");
    assert_int_equal(tw_explain_refusal(NULL, TW_REASON_REVOKED, f->id, NULL,
                                        NULL), -1);
}

/* ------------------------------------------------- alerts the peer sends */

#define OURS "/O=ABC/CN=leaf"

static void alert(int code, int purpose, const tw_identity *own,
                  const char *file, const char *peer, enum tw_reason r,
                  const char *expected)
{
    tw_err err;

    tw_err_clear(&err);
    assert_int_equal(tw_explain_alert(&err, code, purpose, own, file, peer),
                     -1);
    assert_string_equal(tw_error_class_name(err.cls), "rejected_by_peer");
    assert_string_equal(tw_reason_name(err.reason), tw_reason_name(r));
    assert_string_equal(err.msg, expected);
}

/* The sentences mail-server wrote for itself (naming its --cert file) and
 * the ones libtwoway's connections wrote are one set now: the file when
 * the caller knows it, the certificate's own names always. */
static void alerts_are_explained_with_our_certificate(void **state)
{
    struct fx *f = *state;

    alert(SSL_AD_UNKNOWN_CA, TW_PURPOSE_CLIENT, f->id, "mail/cert.pem",
          "the invoice server", TW_REASON_UNKNOWN_CA,
          "the invoice server rejected our certificate (TLS alert "
          "unknown_ca): it does not trust the CA that signed mail/cert.pem "
          "(issuer /CN=Reason CA): get a certificate from the CA the invoice "
          "server trusts, or have it trust /CN=Reason CA");
    alert(SSL_AD_UNKNOWN_CA, TW_PURPOSE_SERVER, f->id, NULL, NULL,
          TW_REASON_UNKNOWN_CA,
          "the client rejected our certificate (TLS alert unknown_ca): it "
          "does not trust the CA that signed our certificate (issuer "
          "/CN=Reason CA): get a certificate from the CA the client trusts, "
          "or have it trust /CN=Reason CA");
    alert(SSL_AD_CERTIFICATE_EXPIRED, TW_PURPOSE_CLIENT, f->expired,
          "old/cert.pem", "the invoice server", TW_REASON_EXPIRED,
          "the invoice server rejected our certificate (TLS alert "
          "certificate_expired): old/cert.pem (/CN=old) expired on "
          "2020-02-01T00:00:00Z: issue a new certificate");
    alert(SSL_AD_CERTIFICATE_REVOKED, TW_PURPOSE_CLIENT, f->id, NULL, NULL,
          TW_REASON_REVOKED,
          "the server rejected our certificate (TLS alert "
          "certificate_revoked): our certificate (" OURS ", serial "
          "123456789ABCDEF0) was revoked by its CA /CN=Reason CA: issue a "
          "new certificate");
    alert(SSL_AD_UNSUPPORTED_CERTIFICATE, TW_PURPOSE_CLIENT, f->id,
          "c.pem", NULL, TW_REASON_WRONG_USAGE,
          "the server rejected our certificate (TLS alert "
          "unsupported_certificate): c.pem (" OURS ") may not be used by a "
          "TLS client: issue it with --client (extendedKeyUsage clientAuth)");
    alert(SSL_AD_UNSUPPORTED_CERTIFICATE, TW_PURPOSE_SERVER, f->id, NULL,
          NULL, TW_REASON_WRONG_USAGE,
          "the client rejected our certificate (TLS alert "
          "unsupported_certificate): our certificate (" OURS ") may not be "
          "used by a TLS server: issue it with --server (extendedKeyUsage "
          "serverAuth)");
    alert(SSL_AD_BAD_CERTIFICATE, TW_PURPOSE_CLIENT, f->id, NULL, NULL,
          TW_REASON_BAD_CERTIFICATE,
          "the server rejected our certificate (TLS alert bad_certificate): "
          "it finds our certificate (" OURS ", issuer /CN=Reason CA) "
          "unacceptable (not yet valid, weak key or signature, wrong "
          "purpose, or not the identity it expects?): check it with "
          "`twoway-ca verify --ca CAFILE --purpose client CERTFILE`, and ask "
          "what the server expects");
    alert(SSL_AD_ACCESS_DENIED, TW_PURPOSE_CLIENT, f->id, "c.pem", NULL,
          TW_REASON_POLICY_DENIED,
          "the server rejected our certificate (TLS alert access_denied): it "
          "does not let c.pem (" OURS ") in: ask its operator to allow this "
          "identity");
    alert(SSL_AD_DECRYPT_ERROR, TW_PURPOSE_CLIENT, f->id, "c.pem", NULL,
          TW_REASON_BAD_CERTIFICATE,
          "the server refused the handshake (TLS alert decrypt_error): our "
          "signature did not verify: does the key belong to c.pem (" OURS
          ")?");
}

/* Our clock may be the right one: a certificate still valid here that the
 * peer calls expired points at the peer's clock, not at a new certificate. */
static void expired_alert_for_a_valid_certificate_blames_the_clock(void **state)
{
    struct fx *f = *state;
    time_t until = tw_identity_not_after(f->id);
    char date[48], expected[TW_ERR_MSG_MAX];
    struct tm tm;

    gmtime_r(&until, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(expected, sizeof(expected),
             "the invoice server rejected our certificate (TLS alert "
             "certificate_expired): it says c.pem (" OURS ", valid until %s) "
             "has expired: check the invoice server's clock", date);
    alert(SSL_AD_CERTIFICATE_EXPIRED, TW_PURPOSE_CLIENT, f->id, "c.pem",
          "the invoice server", TW_REASON_EXPIRED, expected);
}

static void no_certificate_of_ours_and_other_alerts(void **state)
{
    struct fx *f = *state;
    tw_err err;

    alert(SSL_AD_CERTIFICATE_REQUIRED, TW_PURPOSE_CLIENT, NULL, NULL, NULL,
          TW_REASON_NO_CERTIFICATE,
          "the server rejected our certificate (TLS alert "
          "certificate_required): it requires a client certificate and we "
          "sent none: give us a certificate and key from a CA it trusts");
    /* TLS 1.2 servers send handshake_failure for a missing certificate. */
    alert(SSL_AD_HANDSHAKE_FAILURE, TW_PURPOSE_CLIENT, NULL, NULL, NULL,
          TW_REASON_NO_CERTIFICATE,
          "the server refused the handshake (TLS alert handshake_failure): "
          "it requires a client certificate and we sent none: give us a "
          "certificate and key from a CA it trusts");
    alert(SSL_AD_HANDSHAKE_FAILURE, TW_PURPOSE_SERVER, f->id, NULL, NULL,
          TW_REASON_PROTOCOL,
          "the client refused the handshake (TLS alert handshake_failure): "
          "no cipher, key type or signature algorithm in common with our "
          "certificate (EC P-256)");
    alert(SSL_AD_PROTOCOL_VERSION, TW_PURPOSE_CLIENT, f->id, NULL, NULL,
          TW_REASON_PROTOCOL,
          "the server refused the handshake (TLS alert protocol_version): no "
          "TLS version or cipher in common (we speak TLS 1.2 and 1.3)");
    alert(200, TW_PURPOSE_CLIENT, f->id, NULL, NULL, TW_REASON_PROTOCOL,
          "the server refused the handshake (TLS alert unknown_alert): the "
          "handshake failed on its side; its log says why");
    assert_int_equal(tw_explain_alert(NULL, SSL_AD_UNKNOWN_CA,
                                      TW_PURPOSE_CLIENT, f->id, NULL, NULL),
                     -1);
    /* A message at the limit is cut, never overrun. */
    {
        char file[TW_ERR_MSG_MAX * 2];

        memset(file, 'f', sizeof(file) - 1);
        file[sizeof(file) - 1] = '\0';
        tw_explain_alert(&err, SSL_AD_UNKNOWN_CA, TW_PURPOSE_CLIENT, f->id,
                         file, NULL);
        assert_int_equal(strlen(err.msg), TW_ERR_MSG_MAX - 1);
    }
}

static void alerts_about_our_certificate(void **state)
{
    static const int about_us[] = {42, 43, 44, 45, 46, 48, 49, 116};
    static const int not_us[] = {0, 10, 20, 40, 47, 50, 51, 70, 71, 80, 90,
                                 112, 115, 117, 255, -1};

    (void)state;
    for (size_t i = 0; i < sizeof(about_us) / sizeof(about_us[0]); i++)
        if (!tw_tls_alert_refuses_certificate(about_us[i]))
            fail_msg("alert %d is about our certificate", about_us[i]);
    for (size_t i = 0; i < sizeof(not_us) / sizeof(not_us[0]); i++)
        if (tw_tls_alert_refuses_certificate(not_us[i]))
            fail_msg("alert %d is not about our certificate", not_us[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codes_map_to_reasons),
        cmocka_unit_test(every_reason_has_its_sentence),
        cmocka_unit_test(dates_are_utc),
        cmocka_unit_test(names_that_cannot_be_copied_become_question_marks),
        cmocka_unit_test(refusal_from_an_identity_says_what_tw_reject_says),
        cmocka_unit_test(alerts_are_explained_with_our_certificate),
        cmocka_unit_test(expired_alert_for_a_valid_certificate_blames_the_clock),
        cmocka_unit_test(no_certificate_of_ours_and_other_alerts),
        cmocka_unit_test(alerts_about_our_certificate),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
