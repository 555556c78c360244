/* certgen_test.c - certificates as RFC 5280 wants them, checked with
 * OpenSSL's own parsers rather than with the library that made them:
 * extensions, SANs, the CN as a DNS name, allocation failures (dates,
 * serials and what signing refuses: certgen_dates_test.c). */
#include "certgen_helpers.h"

/* -------------------------------------------------------- extensions */

static void ca_certificate_extensions(void **state)
{
    struct pki *p = *state;
    X509 *x = p->ca->x509;
    BASIC_CONSTRAINTS *bc;
    int crit = -1;

    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x),
                                   X509_get_issuer_name(x)), 0);
    assert_int_equal(X509_verify(x, p->ca_key->pkey), 1);
    bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    assert_true(bc->ca);
    assert_non_null(bc->pathlen);
    assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
    BASIC_CONSTRAINTS_free(bc);
    assert_int_equal(ext_critical(x, NID_key_usage), 1);
    assert_int_equal(X509_get_key_usage(x),
                     KU_KEY_CERT_SIGN | KU_CRL_SIGN | KU_DIGITAL_SIGNATURE);
    assert_int_equal(ext_critical(x, NID_ext_key_usage), -1);
    assert_int_equal(ext_critical(x, NID_subject_key_identifier), 0);
    assert_non_null(X509_get0_subject_key_id(x));
    /* Self-signed: no authorityKeyIdentifier (RFC 5280 4.2.1.1 allows it
     * to be left out), no SAN when none was asked for. */
    assert_int_equal(ext_critical(x, NID_authority_key_identifier), -1);
    assert_int_equal(ext_critical(x, NID_subject_alt_name), -1);
    assert_int_equal(X509_check_ca(x), 1);
}

static void check_end_entity(struct pki *p, X509 *x, uint32_t ku, uint32_t xku)
{
    BASIC_CONSTRAINTS *bc;
    int crit = -1;

    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x),
                                   X509_get_subject_name(p->ca->x509)), 0);
    assert_int_equal(X509_verify(x, p->ca_key->pkey), 1);
    bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    assert_false(bc->ca);
    assert_null(bc->pathlen);
    BASIC_CONSTRAINTS_free(bc);
    assert_int_equal(X509_check_ca(x), 0);
    assert_int_equal(ext_critical(x, NID_key_usage), 1);
    assert_int_equal(X509_get_key_usage(x), ku);
    assert_int_equal(ext_critical(x, NID_ext_key_usage), 0);
    assert_int_equal(X509_get_extended_key_usage(x), xku);
    assert_int_equal(ext_critical(x, NID_subject_key_identifier), 0);
    assert_non_null(X509_get0_subject_key_id(x));
    assert_int_equal(ext_critical(x, NID_authority_key_identifier), 0);
    assert_non_null(X509_get0_authority_key_id(x));
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x),
                                           X509_get0_subject_key_id(p->ca->x509)),
                     0);
    /* The SKI is the key's, not the CA's. */
    assert_int_not_equal(ASN1_OCTET_STRING_cmp(X509_get0_subject_key_id(x),
                                               X509_get0_subject_key_id(p->ca->x509)),
                         0);
}

static void server_certificate_extensions(void **state)
{
    struct pki *p = *state;
    tw_cert *c = th_sign(&(struct th_spec){.subject = "/CN=server",
                                           .purposes = TW_PURPOSE_SERVER,
                                           .sans = {"dns:server.example"}},
                         p->key, p->ca, p->ca_key);

    check_end_entity(p, c->x509, KU_DIGITAL_SIGNATURE, XKU_SSL_SERVER);
    assert_int_equal(ext_critical(c->x509, NID_subject_alt_name), 0);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(c->x509), p->key->pkey), 1);
    tw_cert_free(c);
}

static void client_certificate_extensions(void **state)
{
    struct pki *p = *state;
    tw_cert *c = th_sign(&(struct th_spec){.subject = "/O=MailServer/CN=mail",
                                           .purposes = TW_PURPOSE_CLIENT},
                         p->key, p->ca, p->ca_key);

    check_end_entity(p, c->x509, KU_DIGITAL_SIGNATURE, XKU_SSL_CLIENT);
    assert_int_equal(ext_critical(c->x509, NID_subject_alt_name), -1);
    tw_cert_free(c);
}

static void server_and_client_certificate(void **state)
{
    struct pki *p = *state;
    tw_cert *c = th_sign(&(struct th_spec){.subject = "/CN=both",
                                           .purposes = TW_PURPOSE_SERVER |
                                                       TW_PURPOSE_CLIENT},
                         p->key, p->ca, p->ca_key);

    check_end_entity(p, c->x509, KU_DIGITAL_SIGNATURE,
                     XKU_SSL_SERVER | XKU_SSL_CLIENT);
    tw_cert_free(c);
}

static void rsa_server_gets_key_encipherment(void **state)
{
    struct pki *p = *state;
    tw_cert *server = th_sign(&(struct th_spec){.subject = "/CN=rsa",
                                                .purposes = TW_PURPOSE_SERVER},
                              p->rsa_key, p->ca, p->ca_key);
    tw_cert *client = th_sign(&(struct th_spec){.subject = "/CN=rsa",
                                                .purposes = TW_PURPOSE_CLIENT},
                              p->rsa_key, p->ca, p->ca_key);
    tw_cert *both = th_sign(&(struct th_spec){.subject = "/CN=rsa",
                                              .purposes = TW_PURPOSE_SERVER |
                                                          TW_PURPOSE_CLIENT},
                            p->rsa_key, p->ca, p->ca_key);

    check_end_entity(p, server->x509,
                     KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT, XKU_SSL_SERVER);
    /* Key transport is a server's business only. */
    check_end_entity(p, client->x509, KU_DIGITAL_SIGNATURE, XKU_SSL_CLIENT);
    check_end_entity(p, both->x509, KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT,
                     XKU_SSL_SERVER | XKU_SSL_CLIENT);
    tw_cert_free(server);
    tw_cert_free(client);
    tw_cert_free(both);
}

static void every_key_type_signs(void **state)
{
    static const struct {
        const char *type;
        int sig_nid;
    } cas[] = {
        {"ec-p256", NID_ecdsa_with_SHA256},
        {"ec-p384", NID_ecdsa_with_SHA384},
        {"ed25519", NID_ED25519},
        {"rsa-2048", NID_sha256WithRSAEncryption},
    };
    struct pki *p = *state;

    for (size_t i = 0; i < sizeof(cas) / sizeof(cas[0]); i++) {
        tw_key *k = th_key(cas[i].type);
        tw_cert *ca = th_ca("/CN=CA", k);
        tw_cert *leaf = th_sign(&(struct th_spec){.subject = "/CN=leaf",
                                                  .purposes = TW_PURPOSE_CLIENT},
                                p->key, ca, k);

        assert_int_equal(X509_get_signature_nid(ca->x509), cas[i].sig_nid);
        assert_int_equal(X509_get_signature_nid(leaf->x509), cas[i].sig_nid);
        assert_int_equal(X509_verify(leaf->x509, k->pkey), 1);
        assert_int_equal(X509_verify(ca->x509, k->pkey), 1);
        tw_cert_free(leaf);
        tw_cert_free(ca);
        tw_key_free(k);
    }
}

/* -------------------------------------------------------------- SANs */

static void sans_of_each_type(void **state)
{
    struct pki *p = *state;
    tw_cert *c = th_sign(
        &(struct th_spec){.subject = "/CN=svc",
                          .purposes = TW_PURPOSE_SERVER,
                          .sans = {"dns:svc.abc.example", "dns:*.abc.example",
                                   "ip:127.0.0.1", "ip:2001:db8::1",
                                   "uri:spiffe://abc.example/svc",
                                   "email:ops@abc.example"}},
        p->key, p->ca, p->ca_key);
    char text[1024];

    san_text(c->x509, text, sizeof(text));
    assert_string_equal(text, "DNS:svc.abc.example,DNS:*.abc.example,"
                              "IP:127.0.0.1,IP:2001:db8::1,"
                              "URI:spiffe://abc.example/svc,"
                              "email:ops@abc.example");
    assert_int_equal(ext_critical(c->x509, NID_subject_alt_name), 0);
    tw_cert_free(c);
}

static void san_count_counts_every_type(void **state)
{
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);

    (void)state;
    assert_int_equal(tw_certgen_san_count(g), 0);
    assert_int_equal(tw_certgen_add_san(g, TW_SAN_DNS, "a.example", &err), 0);
    assert_int_equal(tw_certgen_add_san(g, TW_SAN_IP, "::1", &err), 0);
    assert_int_equal(tw_certgen_add_san(g, TW_SAN_URI, "https://a/", &err), 0);
    assert_int_equal(tw_certgen_add_san(g, TW_SAN_EMAIL, "a@b.example", &err),
                     0);
    assert_int_equal(tw_certgen_san_count(g), 4);
    tw_certgen_free(g);
}

static void invalid_sans_are_usage_errors(void **state)
{
    static const struct {
        enum tw_san_type type;
        const char *value;
    } bad[] = {
        {TW_SAN_DNS, ""},
        {TW_SAN_DNS, "-a.example"},
        {TW_SAN_DNS, "a-.example"},
        {TW_SAN_DNS, "a..example"},
        {TW_SAN_DNS, ".example"},
        {TW_SAN_DNS, "example."},
        {TW_SAN_DNS, "a b.example"},
        {TW_SAN_DNS, "under_score.example"},
        {TW_SAN_DNS, "a.*.example"},
        {TW_SAN_DNS, "*"},
        {TW_SAN_DNS, "*."},
        {TW_SAN_DNS, "**.example"},
        {TW_SAN_DNS, "a*.example"},
        {TW_SAN_DNS, "caf\xc3\xa9.example"}, /* IDNs go in as A-labels */
        {TW_SAN_DNS, "0123456789012345678901234567890123456789012345678901234567890123.example"},
        {TW_SAN_IP, ""},
        {TW_SAN_IP, "1.2.3"},
        {TW_SAN_IP, "1.2.3.256"},
        {TW_SAN_IP, "::g"},
        {TW_SAN_IP, "localhost"},
        {TW_SAN_IP, "127.0.0.1/8"},
        {TW_SAN_URI, ""},
        {TW_SAN_URI, "no-scheme"},
        {TW_SAN_URI, "/path/only"},
        {TW_SAN_URI, "1http://x"},
        {TW_SAN_URI, "http:"},
        {TW_SAN_URI, "spiffe://a b/c"},
        {TW_SAN_URI, "spiffe://a\n/c"},
        {TW_SAN_EMAIL, ""},
        {TW_SAN_EMAIL, "noat.example"},
        {TW_SAN_EMAIL, "@example.com"},
        {TW_SAN_EMAIL, "a b@example.com"},
        {TW_SAN_EMAIL, "a@"},
        {TW_SAN_EMAIL, "a@*.example.com"},
        {TW_SAN_EMAIL, "a@-x.example"},
        {TW_SAN_EMAIL, "a\t@example.com"},
    };
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char expected[512];

        tw_err_clear(&err);
        if (tw_certgen_add_san(g, bad[i].type, bad[i].value, &err) != -1)
            fail_msg("SAN type %d '%s' was accepted", bad[i].type, bad[i].value);
        switch (bad[i].type) {
        case TW_SAN_DNS:
            snprintf(expected, sizeof(expected),
                     "'%s' is not a valid DNS name (letters, digits, '-' and "
                     "'.', optionally starting with '*.')", bad[i].value);
            break;
        case TW_SAN_IP:
            snprintf(expected, sizeof(expected),
                     "'%s' is not an IPv4 or IPv6 address", bad[i].value);
            break;
        case TW_SAN_URI:
            snprintf(expected, sizeof(expected),
                     "'%s' is not a URI: it needs a scheme, as in "
                     "spiffe://abc.example/mail", bad[i].value);
            break;
        default:
            snprintf(expected, sizeof(expected),
                     "'%s' is not an email address (local@domain)",
                     bad[i].value);
        }
        th_assert_err(err, TW_ERR_USAGE, expected);
    }
    assert_int_equal(tw_certgen_add_san(g, TW_SAN_TYPES, "x", &err), -1);
    th_assert_err(err, TW_ERR_USAGE, "unknown SAN type 4");
    assert_int_equal(tw_certgen_san_count(g), 0);
    tw_certgen_free(g);
}

static void edge_sans_that_are_valid(void **state)
{
    static const struct {
        enum tw_san_type type;
        const char *value;
    } good[] = {
        {TW_SAN_DNS, "localhost"},
        {TW_SAN_DNS, "a"},
        {TW_SAN_DNS, "xn--caf-dma.example"},
        {TW_SAN_DNS, "123.example"},
        {TW_SAN_DNS, "a-b.c-d.example"},
        {TW_SAN_DNS, "012345678901234567890123456789012345678901234567890123456789012.example"},
        {TW_SAN_IP, "0.0.0.0"},
        {TW_SAN_IP, "::ffff:10.0.0.1"},
        {TW_SAN_URI, "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"},
        {TW_SAN_EMAIL, "first.last+tag@sub.example"},
    };
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (tw_certgen_add_san(g, good[i].type, good[i].value, &err) != 0)
            fail_msg("'%s' refused: %s", good[i].value, err.msg);
    assert_int_equal(tw_certgen_san_count(g), sizeof(good) / sizeof(good[0]));
    tw_certgen_free(g);
}

static void long_dns_names_are_refused(void **state)
{
    char name[300];
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);

    (void)state;
    /* 4 labels of 63 + 3 dots = 255 > 253 (RFC 1035 2.3.4). */
    memset(name, 'a', sizeof(name));
    name[63] = name[127] = name[191] = '.';
    name[255] = '\0';
    assert_int_equal(tw_certgen_add_san(g, TW_SAN_DNS, name, &err), -1);
    assert_int_equal(err.cls, TW_ERR_USAGE);
    name[251] = '\0'; /* 251 */
    assert_int_equal(tw_certgen_add_san(g, TW_SAN_DNS, name, &err), 0);
    tw_certgen_free(g);
}

/* --------------------------------------------------- CN as a DNS SAN */

static int cn_as_dns(const char *subject, const char *first_san, char *sans,
                     size_t len)
{
    tw_key *k = th_key("ec-p256");
    tw_certgen *g = template_for(subject, TW_PURPOSE_SERVER, k);
    tw_cert *self;
    tw_err err;
    int rc;

    if (first_san != NULL)
        th_add_san(g, first_san);
    rc = tw_certgen_add_cn_as_dns(g, &err);
    assert_int_equal(tw_certgen_san_count(g),
                     (first_san != NULL) + (rc == 1));
    self = tw_certgen_sign(g, NULL, k, &err);
    assert_non_null(self);
    san_text(self->x509, sans, len);
    tw_cert_free(self);
    tw_certgen_free(g);
    tw_key_free(k);
    return rc;
}

static void cn_becomes_a_dns_san_only_when_it_is_a_host_name(void **state)
{
    char sans[512];
    tw_err err;
    tw_certgen *g;

    (void)state;
    assert_int_equal(cn_as_dns("/O=ABC Inc./CN=localhost", NULL, sans,
                               sizeof(sans)), 1);
    assert_string_equal(sans, "DNS:localhost");
    /* The last CN is the most specific one. */
    assert_int_equal(cn_as_dns("/CN=first.example/CN=mail.abc.example", NULL,
                               sans, sizeof(sans)), 1);
    assert_string_equal(sans, "DNS:mail.abc.example");
    assert_int_equal(cn_as_dns("/CN=mail.abc.example/O=ABC", NULL, sans,
                               sizeof(sans)), 1);
    assert_string_equal(sans, "DNS:mail.abc.example");
    /* A SAN given: the CN is left alone. */
    assert_int_equal(cn_as_dns("/CN=localhost", "ip:127.0.0.1", sans,
                               sizeof(sans)), 0);
    assert_string_equal(sans, "IP:127.0.0.1");
    /* Not host names. */
    assert_int_equal(cn_as_dns("/CN=Mail Server", NULL, sans, sizeof(sans)), 0);
    assert_string_equal(sans, "");
    assert_int_equal(cn_as_dns("/CN=*.abc.example", NULL, sans, sizeof(sans)),
                     0);
    assert_string_equal(sans, "");
    assert_int_equal(cn_as_dns("/CN=under_score", NULL, sans, sizeof(sans)), 0);
    assert_int_equal(cn_as_dns("/O=no CN at all", NULL, sans, sizeof(sans)), 0);
    assert_string_equal(sans, "");
    /* No subject yet. */
    g = tw_certgen_new(&err);
    assert_int_equal(tw_certgen_add_cn_as_dns(g, &err), 0);
    assert_int_equal(tw_certgen_san_count(g), 0);
    tw_certgen_free(g);
}

/* -------------------------------------------------- allocation failures */

static int issue_once(void *ctx, tw_err *err)
{
    struct pki *p = ctx;
    tw_certgen *g = tw_certgen_new(err);
    tw_name *name = NULL;
    tw_cert *c = NULL;

    if (g == NULL)
        return -1;
    if ((name = tw_name_parse("/O=ABC Inc./OU=Mail/CN=mail.abc.example", err)) ==
            NULL ||
        tw_certgen_set_subject(g, name, err) < 0 ||
        tw_certgen_add_cn_as_dns(g, err) < 0 ||
        tw_certgen_add_san(g, TW_SAN_IP, "10.1.2.3", err) < 0 ||
        tw_certgen_add_san(g, TW_SAN_URI, "spiffe://abc.example/mail", err) < 0 ||
        tw_certgen_set_purposes(g, TW_PURPOSE_SERVER, err) < 0 ||
        tw_certgen_set_public_key(g, p->key, err) < 0 ||
        (c = tw_certgen_sign(g, p->ca, p->ca_key, err)) == NULL)
        goto done;
    {
        char sans[512];

        san_text(c->x509, sans, sizeof(sans));
        assert_string_equal(sans, "DNS:mail.abc.example,IP:10.1.2.3,"
                                  "URI:spiffe://abc.example/mail");
    }
done:
    tw_name_free(name);
    tw_certgen_free(g);
    tw_cert_free(c);
    return c != NULL ? 0 : -1;
}
static void allocation_failures_are_internal(void **state)
{
    th_alloc_fail_loop(issue_once, *state);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ca_certificate_extensions),
        cmocka_unit_test(server_certificate_extensions),
        cmocka_unit_test(client_certificate_extensions),
        cmocka_unit_test(server_and_client_certificate),
        cmocka_unit_test(rsa_server_gets_key_encipherment),
        cmocka_unit_test(every_key_type_signs),
        cmocka_unit_test(sans_of_each_type),
        cmocka_unit_test(san_count_counts_every_type),
        cmocka_unit_test(invalid_sans_are_usage_errors),
        cmocka_unit_test(edge_sans_that_are_valid),
        cmocka_unit_test(long_dns_names_are_refused),
        cmocka_unit_test(cn_becomes_a_dns_san_only_when_it_is_a_host_name),
        cmocka_unit_test(allocation_failures_are_internal),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
