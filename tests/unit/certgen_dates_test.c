/* certgen_dates_test.c - certificates as RFC 5280 wants them, checked with
 * OpenSSL's own parsers: validity, lifetimes, serials, and what signing
 * refuses (extensions and SANs: certgen_test.c). */
#include "certgen_helpers.h"

/* ------------------------------------------------ validity and serials */

static void days_out_of_range(void **state)
{
    static const int bad[] = {0, -1, 36501, -36500, 1000000};
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char expected[128];

        assert_int_equal(tw_certgen_set_days(g, bad[i], &err), -1);
        snprintf(expected, sizeof(expected),
                 "validity of %d days is out of range: give 1 to 36500",
                 bad[i]);
        th_assert_err(err, TW_ERR_USAGE, expected);
    }
    assert_int_equal(tw_certgen_set_days(g, 1, &err), 0);
    assert_int_equal(tw_certgen_set_days(g, 36500, &err), 0);
    tw_certgen_free(g);
}

/* notAfter - notBefore, in days and seconds. */
static void validity_of(X509 *x, int *days, int *secs)
{
    assert_int_equal(ASN1_TIME_diff(days, secs, X509_get0_notBefore(x),
                                    X509_get0_notAfter(x)), 1);
}

static void validity_starts_a_minute_ago(void **state)
{
    struct pki *p = *state;
    tw_key *k = th_key("ec-p256");
    tw_cert *ca = th_sign(&(struct th_spec){.subject = "/CN=long CA",
                                            .purposes = TW_PURPOSE_CA,
                                            .days = 36500},
                          k, NULL, NULL);
    tw_cert *one = th_sign(&(struct th_spec){.subject = "/CN=one",
                                             .purposes = TW_PURPOSE_CLIENT,
                                             .days = 1},
                           p->key, ca, k);
    tw_cert *dflt = th_sign(&(struct th_spec){.subject = "/CN=default",
                                              .purposes = TW_PURPOSE_CLIENT},
                            p->key, ca, k);
    int days, secs;

    validity_of(ca->x509, &days, &secs);
    assert_int_equal(days, 36500);
    assert_int_equal(secs, 60);
    validity_of(one->x509, &days, &secs);
    assert_int_equal(days, 1);
    assert_int_equal(secs, 60);
    validity_of(dflt->x509, &days, &secs);
    assert_int_equal(days, 365);
    assert_int_equal(secs, 60);
    /* Already valid now: the minute of back-dating is in the past. */
    assert_true(X509_cmp_current_time(X509_get0_notBefore(one->x509)) < 0);
    assert_true(X509_cmp_current_time(X509_get0_notAfter(one->x509)) > 0);
    tw_cert_free(dflt);
    tw_cert_free(one);
    tw_cert_free(ca);
    tw_key_free(k);
}

static void not_after_is_clipped_to_the_issuers(void **state)
{
    struct pki *p = *state;
    tw_key *k = th_key("ec-p256");
    tw_cert *ca = th_sign(&(struct th_spec){.subject = "/CN=short CA",
                                            .purposes = TW_PURPOSE_CA,
                                            .days = 10},
                          k, NULL, NULL);
    tw_cert *leaf = th_sign(&(struct th_spec){.subject = "/CN=leaf",
                                              .purposes = TW_PURPOSE_SERVER,
                                              .days = 365},
                            p->key, ca, k);
    tw_cert *shorter = th_sign(&(struct th_spec){.subject = "/CN=leaf",
                                                 .purposes = TW_PURPOSE_SERVER,
                                                 .days = 5},
                               p->key, ca, k);
    int days, secs;

    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(leaf->x509),
                                       X509_get0_notAfter(ca->x509)), 0);
    validity_of(shorter->x509, &days, &secs);
    assert_int_equal(days, 5); /* not touched when shorter */
    assert_int_equal(secs, 60);
    assert_true(ASN1_TIME_compare(X509_get0_notAfter(shorter->x509),
                                  X509_get0_notAfter(ca->x509)) < 0);
    tw_cert_free(shorter);
    tw_cert_free(leaf);
    tw_cert_free(ca);
    tw_key_free(k);
}

static void serial_of(X509 *x, unsigned char *out, int *len)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);

    assert_non_null(bn);
    assert_false(BN_is_negative(bn));
    *len = BN_bn2bin(bn, out);
    BN_free(bn);
}

static void serial_rules(void **state)
{
    struct pki *p = *state;
    unsigned char serial[21], got[32];
    const char *rule = "a serial must be 8 to 20 bytes with the high bit "
                       "clear (RFC 5280 section 4.1.2.2)";
    tw_err err;
    tw_certgen *g = template_for("/CN=s", TW_PURPOSE_CLIENT, p->key);
    tw_cert *c;
    int len;

    for (int i = 0; i < 21; i++)
        serial[i] = (unsigned char)(0x10 + i);
    assert_int_equal(tw_certgen_set_serial(g, serial, 7, &err), -1);
    th_assert_err(err, TW_ERR_USAGE, rule);
    assert_int_equal(tw_certgen_set_serial(g, serial, 21, &err), -1);
    th_assert_err(err, TW_ERR_USAGE, rule);
    assert_int_equal(tw_certgen_set_serial(g, serial, 0, &err), -1);
    th_assert_err(err, TW_ERR_USAGE, rule);
    serial[0] = 0x80;
    assert_int_equal(tw_certgen_set_serial(g, serial, 8, &err), -1);
    th_assert_err(err, TW_ERR_USAGE, rule);

    /* 20 bytes, the most RFC 5280 allows, lands in the certificate as is. */
    serial[0] = 0x7f;
    assert_int_equal(tw_certgen_set_serial(g, serial, 20, &err), 0);
    c = tw_certgen_sign(g, p->ca, p->ca_key, &err);
    assert_non_null(c);
    serial_of(c->x509, got, &len);
    assert_int_equal(len, 20);
    assert_memory_equal(got, serial, 20);
    tw_cert_free(c);

    /* 8 bytes, the fewest. */
    serial[0] = 0x01;
    assert_int_equal(tw_certgen_set_serial(g, serial, 8, &err), 0);
    c = tw_certgen_sign(g, p->ca, p->ca_key, &err);
    assert_non_null(c);
    serial_of(c->x509, got, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(got, serial, 8);
    tw_cert_free(c);
    tw_certgen_free(g);
}

static void a_zero_serial_is_refused(void **state)
{
    struct pki *p = *state;
    static const unsigned char zero[8];
    tw_err err;
    tw_certgen *g = template_for("/CN=s", TW_PURPOSE_CLIENT, p->key);

    /* RFC 5280 4.1.2.2: "The serial number MUST be a positive integer". */
    assert_int_equal(tw_certgen_set_serial(g, zero, sizeof(zero), &err), -1);
    th_assert_err(err, TW_ERR_USAGE,
                  "a serial must be a positive number, not zero (RFC 5280 "
                  "section 4.1.2.2)");
    tw_certgen_free(g);
}

static void random_serials_are_16_bytes_and_positive(void **state)
{
    struct pki *p = *state;
    unsigned char first[32], got[32], raw[16];
    tw_err err;
    int len;

    for (int i = 0; i < 8; i++) {
        tw_cert *c = th_sign(&(struct th_spec){.subject = "/CN=r",
                                               .purposes = TW_PURPOSE_CLIENT},
                             p->key, p->ca, p->ca_key);

        serial_of(c->x509, got, &len);
        assert_int_equal(len, 16);
        assert_int_equal(got[0] & 0xc0, 0x40);
        if (i == 0)
            memcpy(first, got, 16);
        else
            assert_memory_not_equal(first, got, 16);
        tw_cert_free(c);
    }
    assert_int_equal(tw_serial_random(raw, &err), 0);
    assert_int_equal(raw[0] & 0xc0, 0x40);
}

/* Bug: a template signed twice without a serial of its own gave both
 * certificates the serial drawn for the first, and one CA must never issue
 * two certificates with the same serial (RFC 5280 4.1.2.2). */
static void signing_a_template_twice_draws_two_serials(void **state)
{
    struct pki *p = *state;
    unsigned char a[32], b[32];
    tw_err err;
    tw_certgen *g = template_for("/CN=twice", TW_PURPOSE_CLIENT, p->key);
    tw_cert *one = tw_certgen_sign(g, p->ca, p->ca_key, &err);
    tw_cert *two = tw_certgen_sign(g, p->ca, p->ca_key, &err);
    int alen, blen;

    assert_non_null(one);
    assert_non_null(two);
    serial_of(one->x509, a, &alen);
    serial_of(two->x509, b, &blen);
    assert_int_equal(alen, 16);
    assert_int_equal(blen, 16);
    assert_memory_not_equal(a, b, 16);
    tw_cert_free(one);
    tw_cert_free(two);
    tw_certgen_free(g);
}

/* ------------------------------------------------- what sign refuses */

static void signing_with_a_non_ca_issuer_is_refused(void **state)
{
    struct pki *p = *state;
    tw_key *k = th_key("ec-p256");
    tw_cert *server = th_sign(&(struct th_spec){.subject = "/CN=server",
                                                .purposes = TW_PURPOSE_SERVER},
                              k, p->ca, p->ca_key);
    tw_certgen *g = template_for("/CN=child", TW_PURPOSE_CLIENT, p->key);
    tw_err err;

    assert_null(tw_certgen_sign(g, server, k, &err));
    th_assert_err(err, TW_ERR_USAGE,
                  "the issuer certificate is not a CA certificate");
    assert_int_equal(ERR_peek_error(), 0);
    tw_certgen_free(g);
    tw_cert_free(server);
    tw_key_free(k);
}

static void signing_with_the_wrong_ca_key_is_refused(void **state)
{
    struct pki *p = *state;
    tw_certgen *g = template_for("/CN=child", TW_PURPOSE_CLIENT, p->key);
    tw_err err;

    assert_null(tw_certgen_sign(g, p->ca, p->key, &err));
    th_assert_err(err, TW_ERR_USAGE,
                  "the CA key does not belong to the CA certificate");
    assert_int_equal(ERR_peek_error(), 0);
    tw_certgen_free(g);
}

static void self_signing_with_another_key_is_refused(void **state)
{
    struct pki *p = *state;
    tw_certgen *g = template_for("/CN=ca", TW_PURPOSE_CA, p->key);
    tw_err err;

    assert_null(tw_certgen_sign(g, NULL, p->ca_key, &err));
    th_assert_err(err, TW_ERR_USAGE,
                  "a self-signed certificate must be signed by its own key");
    tw_certgen_free(g);
}

static void incomplete_templates_are_refused(void **state)
{
    struct pki *p = *state;
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);
    tw_name *name = tw_name_parse("/CN=x", &err);

    assert_null(tw_certgen_sign(g, p->ca, p->ca_key, &err));
    th_assert_err(err, TW_ERR_USAGE, "no subject given");
    assert_int_equal(tw_certgen_set_subject(g, name, &err), 0);
    assert_null(tw_certgen_sign(g, p->ca, p->ca_key, &err));
    th_assert_err(err, TW_ERR_USAGE, "no public key given");
    assert_int_equal(tw_certgen_set_public_key(g, p->key, &err), 0);
    assert_null(tw_certgen_sign(g, p->ca, p->ca_key, &err));
    th_assert_err(err, TW_ERR_USAGE, "no purpose given: server, client or CA");
    tw_name_free(name);
    tw_certgen_free(g);
}

static void purposes_are_checked(void **state)
{
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);

    (void)state;
    assert_int_equal(tw_certgen_set_purposes(g, 0, &err), -1);
    th_assert_err(err, TW_ERR_USAGE, "no valid purpose given");
    assert_int_equal(tw_certgen_set_purposes(g, 0x8, &err), -1);
    th_assert_err(err, TW_ERR_USAGE, "no valid purpose given");
    assert_int_equal(tw_certgen_set_purposes(g, TW_PURPOSE_SERVER | 0x10, &err),
                     -1);
    th_assert_err(err, TW_ERR_USAGE, "no valid purpose given");
    assert_int_equal(tw_certgen_set_purposes(g, TW_PURPOSE_CA |
                                                    TW_PURPOSE_SERVER, &err),
                     -1);
    th_assert_err(err, TW_ERR_USAGE,
                  "a CA certificate cannot also be a server or client "
                  "certificate");
    assert_int_equal(tw_certgen_set_purposes(g, TW_PURPOSE_CA |
                                                    TW_PURPOSE_CLIENT, &err),
                     -1);
    assert_int_equal(err.cls, TW_ERR_USAGE);
    tw_certgen_free(g);
}

static void the_subject_is_copied(void **state)
{
    struct pki *p = *state;
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);
    tw_name *name = tw_name_parse("/O=ABC Inc./CN=copied", &err);
    tw_cert *c;
    char *text;

    assert_int_equal(tw_certgen_set_subject(g, name, &err), 0);
    tw_name_free(name); /* the template keeps its own copy */
    assert_int_equal(tw_certgen_set_purposes(g, TW_PURPOSE_CLIENT, &err), 0);
    assert_int_equal(tw_certgen_set_public_key(g, p->key, &err), 0);
    c = tw_certgen_sign(g, p->ca, p->ca_key, &err);
    assert_non_null(c);
    text = tw__name_text(X509_get_subject_name(c->x509));
    assert_string_equal(text, "/O=ABC Inc./CN=copied");
    twu_free(text);
    tw_cert_free(c);
    tw_certgen_free(g);
}


/* A template for a client certificate of p->key, for the lifetime tests. */
static tw_certgen *client_template(struct pki *p)
{
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);
    tw_name *name = tw_name_parse("/CN=short-lived", &err);

    assert_non_null(g);
    assert_non_null(name);
    assert_int_equal(tw_certgen_set_subject(g, name, &err), 0);
    assert_int_equal(tw_certgen_set_purposes(g, TW_PURPOSE_CLIENT, &err), 0);
    assert_int_equal(tw_certgen_set_public_key(g, p->key, &err), 0);
    tw_name_free(name);
    return g;
}

static void lifetime_in_seconds(void **state)
{
    struct pki *p = *state;
    tw_certgen *g = client_template(p);
    tw_cert *cert;
    tw_err err;
    int days, secs, left_days, left_secs;

    assert_int_equal(tw_certgen_set_lifetime(g, 90, &err), 0);
    cert = tw_certgen_sign(g, p->ca, p->ca_key, &err);
    assert_non_null(cert);
    /* notBefore a minute back, notAfter 90 s from now. */
    validity_of(cert->x509, &days, &secs);
    assert_int_equal(days, 0);
    assert_int_equal(secs, 150);
    assert_int_equal(ASN1_TIME_diff(&left_days, &left_secs, NULL,
                                    X509_get0_notAfter(cert->x509)), 1);
    assert_int_equal(left_days, 0);
    assert_true(left_secs > 80 && left_secs <= 90);
    tw_cert_free(cert);
    /* Days set afterwards win again. */
    assert_int_equal(tw_certgen_set_days(g, 2, &err), 0);
    cert = tw_certgen_sign(g, p->ca, p->ca_key, &err);
    assert_non_null(cert);
    validity_of(cert->x509, &days, &secs);
    assert_int_equal(days, 2);
    assert_int_equal(secs, 60);
    tw_cert_free(cert);
    tw_certgen_free(g);
}

static void lifetime_out_of_range(void **state)
{
    static const long long bad[] = {59, 0, -60, TW_LIFETIME_MAX + 1};
    tw_certgen *g = client_template(*state);
    tw_err err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char expected[128];

        assert_int_equal(tw_certgen_set_lifetime(g, bad[i], &err), -1);
        snprintf(expected, sizeof(expected),
                 "a lifetime of %lld seconds is out of range: give 60 to "
                 "3153600000", bad[i]);
        th_assert_err(err, TW_ERR_USAGE, expected);
    }
    assert_int_equal(tw_certgen_set_lifetime(g, 60, &err), 0);
    assert_int_equal(tw_certgen_set_lifetime(g, TW_LIFETIME_MAX, &err), 0);
    tw_certgen_free(g);
}

static void lifetime_is_clipped_to_the_issuers(void **state)
{
    struct pki *p = *state;
    tw_key *k = th_key("ec-p256");
    tw_cert *ca = th_sign(&(struct th_spec){.subject = "/CN=short CA",
                                            .purposes = TW_PURPOSE_CA,
                                            .days = 1},
                          k, NULL, NULL);
    tw_certgen *g = client_template(p);
    tw_cert *leaf;
    tw_err err;

    assert_int_equal(tw_certgen_set_lifetime(g, 7 * 86400, &err), 0);
    leaf = tw_certgen_sign(g, ca, k, &err);
    assert_non_null(leaf);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(leaf->x509),
                                       X509_get0_notAfter(ca->x509)), 0);
    tw_cert_free(leaf);
    tw_certgen_free(g);
    tw_cert_free(ca);
    tw_key_free(k);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(days_out_of_range),
        cmocka_unit_test(validity_starts_a_minute_ago),
        cmocka_unit_test(not_after_is_clipped_to_the_issuers),
        cmocka_unit_test(lifetime_in_seconds),
        cmocka_unit_test(lifetime_out_of_range),
        cmocka_unit_test(lifetime_is_clipped_to_the_issuers),
        cmocka_unit_test(serial_rules),
        cmocka_unit_test(a_zero_serial_is_refused),
        cmocka_unit_test(random_serials_are_16_bytes_and_positive),
        cmocka_unit_test(signing_a_template_twice_draws_two_serials),
        cmocka_unit_test(signing_with_a_non_ca_issuer_is_refused),
        cmocka_unit_test(signing_with_the_wrong_ca_key_is_refused),
        cmocka_unit_test(self_signing_with_another_key_is_refused),
        cmocka_unit_test(incomplete_templates_are_refused),
        cmocka_unit_test(purposes_are_checked),
        cmocka_unit_test(the_subject_is_copied),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
