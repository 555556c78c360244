/* identity_test.c - what a certificate says about its holder, parsed into
 * fields that policy can trust: no name with a NUL, no field read out of
 * another field's text. */
#include "tw_internal.h"
#include "unit_helpers.h"

struct fx {
    tw_key *ca_key, *key;
    tw_cert *ca, *rich;
};

static const unsigned char rich_serial[] = {0x01, 0x23, 0x45, 0x67,
                                            0x89, 0xab, 0xcd, 0xef};

static int group_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    f->ca_key = th_key("ec-p256");
    f->key = th_key("ec-p256");
    f->ca = th_ca("/O=ABC Inc./CN=ABC Root", f->ca_key);
    f->rich = th_sign(
        &(struct th_spec){
            .subject = "/C=US/O=ABC Inc./OU=Mail/OU=Ops/CN=mail.abc.example",
            .purposes = TW_PURPOSE_SERVER | TW_PURPOSE_CLIENT,
            .sans = {"dns:mail.abc.example", "dns:*.mail.abc.example",
                     "ip:127.0.0.1", "ip:::1", "uri:https://abc.example/x",
                     "uri:spiffe://abc.example/mail", "email:ops@abc.example"},
            .serial = rich_serial,
            .serial_len = sizeof(rich_serial),
            .days = 30},
        f->key, f->ca, f->ca_key);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fx *f = *state;

    tw_cert_free(f->rich);
    tw_cert_free(f->ca);
    tw_key_free(f->ca_key);
    tw_key_free(f->key);
    free(f);
    return 0;
}

static tw_identity *identity_of(const tw_cert *c)
{
    tw_err err;
    tw_identity *id = tw_identity_from_cert(c, &err);

    if (id == NULL)
        fail_msg("no identity: %s", err.msg);
    return id;
}

static time_t asn1_to_time(const ASN1_TIME *t)
{
    struct tm tm;

    assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
    return timegm(&tm);
}

static void sha256_hex(const unsigned char *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;

    assert_int_equal(EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL), 1);
    assert_int_equal(mdlen, 32);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Re-sign `x` (after changing it) with `key`. */
static void resign(X509 *x, EVP_PKEY *key)
{
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
}

/* ------------------------------------------------------ every accessor */

static void rich_certificate_accessors(void **state)
{
    struct fx *f = *state;
    tw_identity *id = identity_of(f->rich);
    X509 *x = f->rich->x509;
    unsigned char md[32], *spki = NULL;
    unsigned int mdlen = 0;
    char hex[65];
    int spki_len;

    assert_string_equal(tw_identity_subject(id),
                        "/C=US/O=ABC Inc./OU=Mail/OU=Ops/CN=mail.abc.example");
    assert_string_equal(tw_identity_issuer(id), "/O=ABC Inc./CN=ABC Root");
    assert_string_equal(tw_identity_serial(id), "0123456789ABCDEF");

    /* The fingerprint is OpenSSL's own SHA-256 digest of the certificate. */
    assert_int_equal(X509_digest(x, EVP_sha256(), md, &mdlen), 1);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    assert_string_equal(tw_identity_fingerprint(id), hex);
    /* The SPKI pin: SHA-256 of the DER SubjectPublicKeyInfo. */
    spki_len = i2d_PUBKEY(f->key->pkey, &spki);
    assert_true(spki_len > 0);
    sha256_hex(spki, (size_t)spki_len, hex);
    OPENSSL_free(spki);
    assert_string_equal(tw_identity_spki(id), hex);

    assert_int_equal(tw_identity_field_count(id, "C"), 1);
    assert_string_equal(tw_identity_field(id, "C", 0), "US");
    assert_int_equal(tw_identity_field_count(id, "O"), 1);
    assert_string_equal(tw_identity_field(id, "O", 0), "ABC Inc.");
    assert_int_equal(tw_identity_field_count(id, "OU"), 2);
    assert_string_equal(tw_identity_field(id, "OU", 0), "Mail");
    assert_string_equal(tw_identity_field(id, "OU", 1), "Ops");
    assert_null(tw_identity_field(id, "OU", 2));
    /* Long names work too. */
    assert_int_equal(tw_identity_field_count(id, "commonName"), 1);
    assert_string_equal(tw_identity_field(id, "commonName", 0),
                        "mail.abc.example");
    assert_int_equal(tw_identity_field_count(id, "L"), 0);
    assert_null(tw_identity_field(id, "L", 0));
    assert_int_equal(tw_identity_field_count(id, "NoSuchField"), 0);
    assert_null(tw_identity_field(id, "NoSuchField", 0));

    assert_int_equal(tw_identity_san_count(id, TW_SAN_DNS), 2);
    assert_string_equal(tw_identity_san(id, TW_SAN_DNS, 0), "mail.abc.example");
    assert_string_equal(tw_identity_san(id, TW_SAN_DNS, 1),
                        "*.mail.abc.example");
    assert_null(tw_identity_san(id, TW_SAN_DNS, 2));
    assert_int_equal(tw_identity_san_count(id, TW_SAN_IP), 2);
    assert_string_equal(tw_identity_san(id, TW_SAN_IP, 0), "127.0.0.1");
    assert_string_equal(tw_identity_san(id, TW_SAN_IP, 1), "::1");
    assert_int_equal(tw_identity_san_count(id, TW_SAN_URI), 2);
    assert_string_equal(tw_identity_san(id, TW_SAN_URI, 0),
                        "https://abc.example/x");
    assert_string_equal(tw_identity_san(id, TW_SAN_URI, 1),
                        "spiffe://abc.example/mail");
    assert_int_equal(tw_identity_san_count(id, TW_SAN_EMAIL), 1);
    assert_string_equal(tw_identity_san(id, TW_SAN_EMAIL, 0), "ops@abc.example");
    assert_int_equal(tw_identity_san_count(id, TW_SAN_TYPES), 0);
    assert_null(tw_identity_san(id, TW_SAN_TYPES, 0));
    assert_string_equal(tw_identity_spiffe_id(id), "spiffe://abc.example/mail");

    assert_int_equal(tw_identity_purposes(id),
                     TW_PURPOSE_SERVER | TW_PURPOSE_CLIENT);
    assert_int_equal(tw_identity_version(id), 3);
    assert_int_equal(tw_identity_not_before(id),
                     asn1_to_time(X509_get0_notBefore(x)));
    assert_int_equal(tw_identity_not_after(id),
                     asn1_to_time(X509_get0_notAfter(x)));
    assert_int_equal(tw_identity_not_after(id) - tw_identity_not_before(id),
                     30 * 86400 + 60);
    assert_string_equal(tw_identity_key_type(id), "EC P-256");
    assert_string_equal(tw_identity_signature_algorithm(id),
                        "ecdsa-with-SHA256");
    tw_identity_free(id);
}

static void ca_identity(void **state)
{
    struct fx *f = *state;
    tw_identity *id = identity_of(f->ca);

    assert_string_equal(tw_identity_subject(id), "/O=ABC Inc./CN=ABC Root");
    assert_string_equal(tw_identity_issuer(id), "/O=ABC Inc./CN=ABC Root");
    assert_int_equal(tw_identity_purposes(id), TW_PURPOSE_CA);
    assert_int_equal(tw_identity_version(id), 3);
    for (int t = 0; t < TW_SAN_TYPES; t++)
        assert_int_equal(tw_identity_san_count(id, (enum tw_san_type)t), 0);
    assert_null(tw_identity_spiffe_id(id));
    assert_int_equal(strlen(tw_identity_serial(id)), 32); /* 16 random bytes */
    tw_identity_free(id);
}

static void purposes_follow_the_eku(void **state)
{
    struct fx *f = *state;
    tw_cert *server = th_sign(&(struct th_spec){.subject = "/CN=s",
                                                .purposes = TW_PURPOSE_SERVER},
                              f->key, f->ca, f->ca_key);
    tw_cert *client = th_sign(&(struct th_spec){.subject = "/CN=c",
                                                .purposes = TW_PURPOSE_CLIENT},
                              f->key, f->ca, f->ca_key);
    X509 *code = th_raw_cert(X509_VERSION_3, "code", f->ca->x509,
                             f->key->pkey, f->ca_key->pkey, "20200101000000Z",
                             "20991231235959Z", 77);
    X509_EXTENSION *eku = X509V3_EXT_conf_nid(NULL, NULL, NID_ext_key_usage,
                                              "codeSigning");
    tw_cert *signer;
    tw_identity *id;

    id = identity_of(server);
    assert_int_equal(tw_identity_purposes(id), TW_PURPOSE_SERVER);
    tw_identity_free(id);
    id = identity_of(client);
    assert_int_equal(tw_identity_purposes(id), TW_PURPOSE_CLIENT);
    tw_identity_free(id);
    /* An EKU that names neither: neither, not "anything". */
    assert_non_null(eku);
    assert_int_equal(X509_add_ext(code, eku, -1), 1);
    X509_EXTENSION_free(eku);
    resign(code, f->ca_key->pkey);
    signer = th_wrap(code);
    id = identity_of(signer);
    assert_int_equal(tw_identity_purposes(id), 0);
    tw_identity_free(id);
    tw_cert_free(signer);
    tw_cert_free(client);
    tw_cert_free(server);
}

static void key_types_and_signature_algorithms(void **state)
{
    static const struct {
        const char *type, *key_desc, *sig;
    } cases[] = {
        {"ec-p384", "EC P-384", "ecdsa-with-SHA384"},
        {"ed25519", "Ed25519", "ED25519"},
        {"rsa-2048", "RSA 2048", "sha256WithRSAEncryption"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tw_key *k = th_key(cases[i].type);
        tw_cert *self = th_ca("/CN=self", k);
        tw_identity *id = identity_of(self);

        assert_string_equal(tw_identity_key_type(id), cases[i].key_desc);
        assert_string_equal(tw_identity_signature_algorithm(id), cases[i].sig);
        tw_identity_free(id);
        tw_cert_free(self);
        tw_key_free(k);
    }
}

static void from_der_is_the_same_identity(void **state)
{
    struct fx *f = *state;
    unsigned char *der = NULL;
    int len = i2d_X509(f->rich->x509, &der);
    tw_identity *a = identity_of(f->rich), *b;
    tw_err err;

    assert_true(len > 0);
    b = tw_identity_from_der(der, (size_t)len, &err);
    assert_non_null(b);
    assert_string_equal(tw_identity_fingerprint(a), tw_identity_fingerprint(b));
    assert_string_equal(tw_identity_subject(a), tw_identity_subject(b));
    assert_string_equal(tw_identity_spiffe_id(a), tw_identity_spiffe_id(b));
    tw_identity_free(b);

    assert_null(tw_identity_from_der(der, (size_t)len / 2, &err));
    th_assert_err_prefix(err, TW_ERR_INPUT, "not a DER certificate");
    assert_null(tw_identity_from_der("garbage", 7, &err));
    th_assert_err_prefix(err, TW_ERR_INPUT, "not a DER certificate");
    assert_null(tw_identity_from_der("", 0, &err));
    th_assert_err_prefix(err, TW_ERR_INPUT, "not a DER certificate");
    assert_int_equal(ERR_peek_error(), 0);
    OPENSSL_free(der);
    tw_identity_free(a);
}

/* ---------------------------------------------------- legacy and odd */

static void v1_certificate(void **state)
{
    struct fx *f = *state;
    tw_cert *v1 = th_wrap(th_raw_cert(X509_VERSION_1, "legacy.abc.example",
                                      f->ca->x509, f->key->pkey,
                                      f->ca_key->pkey, "20200101000000Z",
                                      "20991231235959Z", 0));
    tw_identity *id = identity_of(v1);

    assert_int_equal(X509_get_ext_count(v1->x509), 0);
    assert_int_equal(tw_identity_version(id), 1);
    /* No EKU: usable as both (OpenSSL's purpose checks agree). */
    assert_int_equal(tw_identity_purposes(id),
                     TW_PURPOSE_SERVER | TW_PURPOSE_CLIENT);
    assert_string_equal(tw_identity_serial(id), "0");
    assert_string_equal(tw_identity_subject(id), "/CN=legacy.abc.example");
    assert_string_equal(tw_identity_issuer(id), "/O=ABC Inc./CN=ABC Root");
    assert_string_equal(tw_identity_field(id, "CN", 0), "legacy.abc.example");
    for (int t = 0; t < TW_SAN_TYPES; t++)
        assert_int_equal(tw_identity_san_count(id, (enum tw_san_type)t), 0);
    assert_null(tw_identity_spiffe_id(id));
    assert_int_equal(tw_identity_not_before(id), 1577836800);  /* 2020-01-01 */
    assert_int_equal(tw_identity_not_after(id), 4102444799);   /* 2099-12-31 */
    assert_string_equal(tw_identity_signature_algorithm(id),
                        "ecdsa-with-SHA256");
    tw_identity_free(id);
    tw_cert_free(v1);
}

static void add_ia5(GENERAL_NAMES *gens, int type, const char *value,
                    size_t len)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();

    assert_non_null(gn);
    assert_non_null(s);
    assert_int_equal(ASN1_STRING_set(s, value, (int)len), 1);
    GENERAL_NAME_set0_value(gn, type, s);
    assert_true(sk_GENERAL_NAME_push(gens, gn) > 0);
}

static void add_ip(GENERAL_NAMES *gens, const unsigned char *ip, int len)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_OCTET_STRING *s = ASN1_OCTET_STRING_new();

    assert_non_null(gn);
    assert_non_null(s);
    assert_int_equal(ASN1_OCTET_STRING_set(s, ip, len), 1);
    GENERAL_NAME_set0_value(gn, GEN_IPADD, s);
    assert_true(sk_GENERAL_NAME_push(gens, gn) > 0);
}

static void names_with_a_nul_or_control_character_are_dropped(void **state)
{
    struct fx *f = *state;
    static const char nul_dns[] = "good.example\0.evil.example";
    static const char nul_uri[] = "spiffe://abc.example/mail\0/evil";
    static const char nul_email[] = "ops@abc.example\0.evil";
    static const unsigned char odd_ip[] = {10, 0, 0, 1, 0}; /* 5 bytes */
    static const unsigned char ip4[] = {192, 0, 2, 7};
    X509 *x = th_raw_cert(X509_VERSION_3, "spoof", f->ca->x509, f->key->pkey,
                          f->ca_key->pkey, "20200101000000Z", "20991231235959Z",
                          1234);
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    tw_cert *c;
    tw_identity *id;

    assert_non_null(gens);
    add_ia5(gens, GEN_DNS, nul_dns, sizeof(nul_dns) - 1);
    add_ia5(gens, GEN_DNS, "ok.example", 10);
    add_ia5(gens, GEN_DNS, "bad\nline.example", 16);
    add_ia5(gens, GEN_DNS, "del\x7f.example", 12);
    add_ia5(gens, GEN_URI, nul_uri, sizeof(nul_uri) - 1);
    add_ia5(gens, GEN_URI, "spiffe://abc.example/real", 25);
    add_ia5(gens, GEN_EMAIL, nul_email, sizeof(nul_email) - 1);
    add_ip(gens, odd_ip, sizeof(odd_ip));
    add_ip(gens, ip4, sizeof(ip4));
    assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0), 1);
    GENERAL_NAMES_free(gens);
    resign(x, f->ca_key->pkey);
    c = th_wrap(x);
    id = identity_of(c);
    assert_int_equal(tw_identity_san_count(id, TW_SAN_DNS), 1);
    assert_string_equal(tw_identity_san(id, TW_SAN_DNS, 0), "ok.example");
    assert_int_equal(tw_identity_san_count(id, TW_SAN_URI), 1);
    assert_string_equal(tw_identity_san(id, TW_SAN_URI, 0),
                        "spiffe://abc.example/real");
    /* The spoofed SPIFFE ID never becomes the identity. */
    assert_string_equal(tw_identity_spiffe_id(id), "spiffe://abc.example/real");
    assert_int_equal(tw_identity_san_count(id, TW_SAN_EMAIL), 0);
    assert_int_equal(tw_identity_san_count(id, TW_SAN_IP), 1);
    assert_string_equal(tw_identity_san(id, TW_SAN_IP, 0), "192.0.2.7");
    tw_identity_free(id);
    tw_cert_free(c);
}

static void a_cn_that_looks_like_o_is_a_cn(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *subject, *text, *cn;
        const char *o; /* NULL: no O at all */
    } cases[] = {
        {"/CN=O=MailServer", "/CN=O=MailServer", "O=MailServer", NULL},
        {"/CN=x\\/O=MailServer", "/CN=x\\/O=MailServer", "x/O=MailServer",
         NULL},
        {"/O=Evil\\/CN=admin/CN=user", "/O=Evil\\/CN=admin/CN=user", "user",
         "Evil/CN=admin"},
        {"/CN=a, O=MailServer", "/CN=a, O=MailServer", "a, O=MailServer", NULL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tw_cert *c = th_sign(&(struct th_spec){.subject = cases[i].subject,
                                               .purposes = TW_PURPOSE_CLIENT},
                             f->key, f->ca, f->ca_key);
        tw_identity *id = identity_of(c);

        assert_string_equal(tw_identity_subject(id), cases[i].text);
        assert_int_equal(tw_identity_field_count(id, "CN"), 1);
        assert_string_equal(tw_identity_field(id, "CN", 0), cases[i].cn);
        if (cases[i].o == NULL) {
            assert_int_equal(tw_identity_field_count(id, "O"), 0);
            assert_null(tw_identity_field(id, "O", 0));
        } else {
            assert_int_equal(tw_identity_field_count(id, "O"), 1);
            assert_string_equal(tw_identity_field(id, "O", 0), cases[i].o);
        }
        tw_identity_free(id);
        tw_cert_free(c);
    }
}

static void a_subject_value_with_a_nul_is_dropped(void **state)
{
    struct fx *f = *state;
    static const char nul_cn[] = "admin\0.evil";
    X509 *x = th_raw_cert(X509_VERSION_3, "replaced-below", f->ca->x509,
                          f->key->pkey, f->ca_key->pkey, "20200101000000Z",
                          "20991231235959Z", 99);
    X509_NAME *name = X509_NAME_new();
    tw_cert *c;
    tw_identity *id;

    assert_int_equal(X509_NAME_add_entry_by_NID(name, NID_commonName,
                                                V_ASN1_UTF8STRING,
                                                (const unsigned char *)nul_cn,
                                                (int)sizeof(nul_cn) - 1, -1, 0),
                     1);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                                (const unsigned char *)"ABC",
                                                -1, -1, 0), 1);
    assert_int_equal(X509_set_subject_name(x, name), 1);
    X509_NAME_free(name);
    resign(x, f->ca_key->pkey);
    c = th_wrap(x);
    id = identity_of(c);
    assert_int_equal(tw_identity_field_count(id, "CN"), 0);
    assert_null(tw_identity_field(id, "CN", 0));
    assert_string_equal(tw_identity_field(id, "O", 0), "ABC");
    /* The subject text still shows it, defanged. */
    assert_string_equal(tw_identity_subject(id), "/CN=admin?.evil/O=ABC");
    tw_identity_free(id);
    tw_cert_free(c);
}

/* ------------------------------------------------- allocation failures */

static int identity_once(void *ctx, tw_err *err)
{
    const tw_cert *c = ctx;
    tw_identity *id = tw_identity_from_cert(c, err);

    if (id == NULL)
        return -1;
    assert_string_equal(tw_identity_subject(id),
                        "/C=US/O=ABC Inc./OU=Mail/OU=Ops/CN=mail.abc.example");
    assert_int_equal(tw_identity_field_count(id, "OU"), 2);
    assert_int_equal(tw_identity_san_count(id, TW_SAN_DNS), 2);
    assert_int_equal(tw_identity_san_count(id, TW_SAN_IP), 2);
    assert_int_equal(tw_identity_san_count(id, TW_SAN_URI), 2);
    assert_int_equal(tw_identity_san_count(id, TW_SAN_EMAIL), 1);
    assert_string_equal(tw_identity_spiffe_id(id), "spiffe://abc.example/mail");
    tw_identity_free(id);
    return 0;
}

static int identity_der_once(void *ctx, tw_err *err)
{
    const tw_cert *c = ctx;
    unsigned char *der = NULL;
    int len = i2d_X509(c->x509, &der);
    tw_identity *id;

    assert_true(len > 0);
    id = tw_identity_from_der(der, (size_t)len, err);
    OPENSSL_free(der);
    tw_identity_free(id);
    return id != NULL ? 0 : -1;
}

/* Bug: a SAN whose copy failed for want of memory was skipped as if it
 * were a spoofing name, and the identity came back without it (or with
 * another URI as its SPIFFE ID).  Now the identity fails, TW_ERR_INTERNAL. */
static void allocation_failures_never_drop_a_san(void **state)
{
    struct fx *f = *state;

    /* Subject, issuer, six attributes, seven SANs: many allocations. */
    assert_true(th_alloc_fail_loop(identity_once, f->rich) > 15);
    th_alloc_fail_loop(identity_der_once, f->rich);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rich_certificate_accessors),
        cmocka_unit_test(ca_identity),
        cmocka_unit_test(purposes_follow_the_eku),
        cmocka_unit_test(key_types_and_signature_algorithms),
        cmocka_unit_test(from_der_is_the_same_identity),
        cmocka_unit_test(v1_certificate),
        cmocka_unit_test(names_with_a_nul_or_control_character_are_dropped),
        cmocka_unit_test(a_cn_that_looks_like_o_is_a_cn),
        cmocka_unit_test(a_subject_value_with_a_nul_is_dropped),
        cmocka_unit_test(allocation_failures_never_drop_a_san),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
