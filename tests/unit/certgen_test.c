/* certgen_test.c - certificates as RFC 5280 wants them, checked with
 * OpenSSL's own parsers rather than with the library that made them. */
#include "tw_internal.h"
#include "unit_helpers.h"

#include <arpa/inet.h>

struct pki {
    tw_key *ca_key, *key, *rsa_key;
    tw_cert *ca;
};

static int group_setup(void **state)
{
    struct pki *p = calloc(1, sizeof(*p));

    p->ca_key = th_key("ec-p256");
    p->key = th_key("ec-p256");
    p->rsa_key = th_key("rsa-2048");
    p->ca = th_ca("/O=ABC Inc./CN=Test CA", p->ca_key);
    *state = p;
    return 0;
}

static int group_teardown(void **state)
{
    struct pki *p = *state;

    tw_cert_free(p->ca);
    tw_key_free(p->ca_key);
    tw_key_free(p->key);
    tw_key_free(p->rsa_key);
    free(p);
    return 0;
}

/* ----------------------------------------------------------- helpers */

/* Whether the extension is present (-1 absent, else its critical flag). */
static int ext_critical(X509 *x, int nid)
{
    int idx = X509_get_ext_by_NID(x, nid, -1);

    if (idx < 0)
        return -1;
    assert_int_equal(X509_get_ext_by_NID(x, nid, idx), -1); /* only once */
    return X509_EXTENSION_get_critical(X509_get_ext(x, idx));
}

/* The SANs as "DNS:a,IP:1.2.3.4,URI:u,email:e" ("" when none). */
static void san_text(X509 *x, char *out, size_t len)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    size_t used = 0;

    out[0] = '\0';
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
        char buf[256];

        switch (gn->type) {
        case GEN_DNS:
            snprintf(buf, sizeof(buf), "DNS:%s",
                     ASN1_STRING_get0_data(gn->d.dNSName));
            break;
        case GEN_URI:
            snprintf(buf, sizeof(buf), "URI:%s",
                     ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier));
            break;
        case GEN_EMAIL:
            snprintf(buf, sizeof(buf), "email:%s",
                     ASN1_STRING_get0_data(gn->d.rfc822Name));
            break;
        case GEN_IPADD: {
            char ip[INET6_ADDRSTRLEN] = "?";
            int n = ASN1_STRING_length(gn->d.iPAddress);

            inet_ntop(n == 4 ? AF_INET : AF_INET6,
                      ASN1_STRING_get0_data(gn->d.iPAddress), ip, sizeof(ip));
            snprintf(buf, sizeof(buf), "IP:%s", ip);
            break;
        }
        default:
            snprintf(buf, sizeof(buf), "other:%d", gn->type);
        }
        used += (size_t)snprintf(out + used, len - used, "%s%s",
                                 used ? "," : "", buf);
    }
    GENERAL_NAMES_free(gens);
}

static tw_certgen *template_for(const char *subject, int purposes,
                                const tw_key *key)
{
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);
    tw_name *name = tw_name_parse(subject, &err);

    assert_non_null(g);
    assert_non_null(name);
    assert_int_equal(tw_certgen_set_subject(g, name, &err), 0);
    tw_name_free(name);
    assert_int_equal(tw_certgen_set_purposes(g, purposes, &err), 0);
    assert_int_equal(tw_certgen_set_public_key(g, key, &err), 0);
    return g;
}

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
        cmocka_unit_test(cn_becomes_a_dns_san_only_when_it_is_a_host_name),
        cmocka_unit_test(allocation_failures_are_internal),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
