/* csr_test.c - a CSR is a request, not an instruction: checked before
 * anything is copied, and only the subject, the key and the names are.
 * The CSRs are made here with OpenSSL, as a requester's tool would. */
#include "tw_internal.h"
#include "unit_helpers.h"

#include <arpa/inet.h>

static int group_setup(void **state)
{
    return th_ca_group_setup(state, "/CN=CSR Test CA", "ec-p256");
}

/* ------------------------------------------------------------ making */

struct req_spec {
    const char *subject;  /* "-subj" form; NULL: empty subject */
    const char *exts[4][2]; /* {name, value} pairs for X509V3_EXT_conf */
};

/* A CSR for `pub`, signed by `signer`. */
static X509_REQ *make_req(const struct req_spec *spec, EVP_PKEY *pub,
                          EVP_PKEY *signer)
{
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    tw_err err;

    assert_non_null(req);
    assert_non_null(exts);
    if (spec->subject != NULL) {
        tw_name *name = tw_name_parse(spec->subject, &err);

        assert_non_null(name);
        assert_int_equal(X509_REQ_set_subject_name(req, name->name), 1);
        tw_name_free(name);
    }
    assert_int_equal(X509_REQ_set_pubkey(req, pub), 1);
    for (int i = 0; i < 4 && spec->exts[i][0] != NULL; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, NULL, spec->exts[i][0],
                                            spec->exts[i][1]);

        if (e == NULL)
            fail_msg("cannot make %s = %s", spec->exts[i][0], spec->exts[i][1]);
        assert_true(sk_X509_EXTENSION_push(exts, e) > 0);
    }
    if (sk_X509_EXTENSION_num(exts) > 0)
        assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    assert_true(X509_REQ_sign(req, signer, EVP_sha256()) > 0);
    return req;
}

static void write_req(const char *path, X509_REQ *req, int pem)
{
    BIO *bio = BIO_new_file(path, "wb");

    assert_non_null(bio);
    if (pem)
        assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
    else
        assert_int_equal(i2d_X509_REQ_bio(bio, req), 1);
    BIO_free(bio);
    X509_REQ_free(req);
}

/* The SANs of a certificate as "DNS:a,IP:b,URI:c,email:d". */
static void san_text(X509 *x, char *out, size_t len)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    size_t used = 0;

    out[0] = '\0';
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
        char ip[INET6_ADDRSTRLEN] = "?";

        switch (gn->type) {
        case GEN_DNS:
            used += (size_t)snprintf(out + used, len - used, "%sDNS:%s",
                                     used ? "," : "",
                                     ASN1_STRING_get0_data(gn->d.dNSName));
            break;
        case GEN_URI:
            used += (size_t)snprintf(
                out + used, len - used, "%sURI:%s", used ? "," : "",
                ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier));
            break;
        case GEN_EMAIL:
            used += (size_t)snprintf(out + used, len - used, "%semail:%s",
                                     used ? "," : "",
                                     ASN1_STRING_get0_data(gn->d.rfc822Name));
            break;
        case GEN_IPADD:
            inet_ntop(ASN1_STRING_length(gn->d.iPAddress) == 4 ? AF_INET
                                                                : AF_INET6,
                      ASN1_STRING_get0_data(gn->d.iPAddress), ip, sizeof(ip));
            used += (size_t)snprintf(out + used, len - used, "%sIP:%s",
                                     used ? "," : "", ip);
            break;
        default:
            used += (size_t)snprintf(out + used, len - used, "%sother:%d",
                                     used ? "," : "", gn->type);
        }
    }
    GENERAL_NAMES_free(gens);
}

/* ----------------------------------------------------------- accepted */

static void valid_csr_gives_subject_key_and_names_only(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096], sans[1024], *subject;
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);
    tw_cert *c;

    th_path(path, f->dir, "req.pem");
    write_req(path,
              make_req(&(struct req_spec){
                           .subject = "/O=ABC Inc./OU=Mail/CN=mail.abc.example",
                           .exts = {{"subjectAltName",
                                     "DNS:mail.abc.example,IP:10.0.0.1,"
                                     "IP:fd00::1,URI:spiffe://abc.example/mail,"
                                     "email:ops@abc.example,RID:1.2.3.4,"
                                     "otherName:1.2.3.4;UTF8:someone"},
                                    {"keyUsage", "critical,keyCertSign"},
                                    {"extendedKeyUsage", "codeSigning"},
                                    {"nsComment", "asked for"}}},
                       f->key->pkey, f->key->pkey),
              1);
    assert_int_equal(tw_certgen_from_csr_file(g, path, &err), 0);
    /* registeredID and otherName are not names we check: dropped. */
    assert_int_equal(tw_certgen_san_count(g), 5);
    assert_int_equal(tw_certgen_set_purposes(g, TW_PURPOSE_SERVER, &err), 0);
    c = tw_certgen_sign(g, f->ca, f->ca_key, &err);
    assert_non_null(c);
    subject = tw__name_text(X509_get_subject_name(c->x509));
    assert_string_equal(subject, "/O=ABC Inc./OU=Mail/CN=mail.abc.example");
    twu_free(subject);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(c->x509), f->key->pkey), 1);
    san_text(c->x509, sans, sizeof(sans));
    assert_string_equal(sans, "DNS:mail.abc.example,IP:10.0.0.1,IP:fd00::1,"
                              "URI:spiffe://abc.example/mail,"
                              "email:ops@abc.example");
    /* What the requester asked for beyond names was not copied. */
    assert_int_equal(X509_get_key_usage(c->x509), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_extended_key_usage(c->x509), XKU_SSL_SERVER);
    assert_int_equal(X509_get_ext_by_NID(c->x509, NID_netscape_comment, -1), -1);
    assert_int_equal(X509_get_ext_count(c->x509), 6); /* BC KU EKU SKI AKI SAN */
    assert_int_equal(ERR_peek_error(), 0);
    tw_cert_free(c);
    tw_certgen_free(g);
}

/* A CSR in memory, and the identity of what it asks for: the online CA
 * compares it with what a token allows before it signs anything. */
static void csr_in_memory_says_what_it_asks_for(void **state)
{
    struct th_ca_fixture *f = *state;
    X509_REQ *req = make_req(&(struct req_spec){
                                 .subject = "/CN=mail.abc.example/O=MailServer",
                                 .exts = {{"subjectAltName",
                                           "DNS:mail.abc.example,IP:10.0.0.1"}}},
                             f->key->pkey, f->key->pkey);
    BIO *bio = BIO_new(BIO_s_mem());
    tw_identity *asked = NULL, *have;
    tw_certgen *g;
    tw_cert *c;
    char *pem;
    long len;
    tw_err err;

    assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
    X509_REQ_free(req);
    len = BIO_get_mem_data(bio, &pem);
    assert_non_null(g = tw_certgen_new(&err));
    assert_int_equal(tw_certgen_from_csr(g, pem, (size_t)len, "the csr field",
                                         &asked, &err), 0);
    assert_non_null(asked);
    assert_string_equal(tw_identity_subject(asked),
                        "/CN=mail.abc.example/O=MailServer");
    assert_string_equal(tw_identity_field(asked, "O", 0), "MailServer");
    assert_int_equal(tw_identity_san_count(asked, TW_SAN_DNS), 1);
    assert_string_equal(tw_identity_san(asked, TW_SAN_DNS, 0), "mail.abc.example");
    assert_string_equal(tw_identity_san(asked, TW_SAN_IP, 0), "10.0.0.1");
    /* The key's digest is the one its certificate will carry. */
    assert_int_equal(tw_certgen_set_purposes(g, TW_PURPOSE_CLIENT, &err), 0);
    assert_non_null(c = tw_certgen_sign(g, f->ca, f->ca_key, &err));
    assert_non_null(have = tw_identity_from_cert(c, &err));
    assert_string_equal(tw_identity_spki(asked), tw_identity_spki(have));
    tw_identity_free(have);
    tw_cert_free(c);
    tw_identity_free(asked);
    tw_certgen_free(g);
    /* Garbage in memory is refused naming `what`; nothing is returned. */
    asked = NULL;
    assert_non_null(g = tw_certgen_new(&err));
    assert_int_equal(tw_certgen_from_csr(g, "not a csr", 9, "the csr field",
                                         &asked, &err), -1);
    assert_null(asked);
    assert_int_equal(err.cls, TW_ERR_INPUT);
    assert_non_null(strstr(err.msg, "the csr field holds no readable"));
    tw_certgen_free(g);
    BIO_free(bio);
}

static void der_csr_without_extensions(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096];
    tw_err err;
    tw_key *rsa = th_key("rsa-2048");
    tw_certgen *g = tw_certgen_new(&err);
    tw_cert *c;

    th_path(path, f->dir, "req.der");
    write_req(path, make_req(&(struct req_spec){.subject = "/CN=plain"},
                             rsa->pkey, rsa->pkey), 0);
    assert_int_equal(tw_certgen_from_csr_file(g, path, &err), 0);
    assert_int_equal(tw_certgen_san_count(g), 0);
    assert_int_equal(tw_certgen_add_cn_as_dns(g, &err), 1);
    assert_int_equal(tw_certgen_set_purposes(g, TW_PURPOSE_CLIENT, &err), 0);
    c = tw_certgen_sign(g, f->ca, f->ca_key, &err);
    assert_non_null(c);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(c->x509), rsa->pkey), 1);
    tw_cert_free(c);
    tw_certgen_free(g);
    tw_key_free(rsa);
}

static void ca_false_is_fine(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096];
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);

    th_path(path, f->dir, "req.pem");
    write_req(path,
              make_req(&(struct req_spec){
                           .subject = "/CN=leaf",
                           .exts = {{"basicConstraints", "critical,CA:FALSE"},
                                    {"subjectAltName", "DNS:leaf.example"}}},
                       f->key->pkey, f->key->pkey),
              1);
    assert_int_equal(tw_certgen_from_csr_file(g, path, &err), 0);
    assert_int_equal(tw_certgen_san_count(g), 1);
    tw_certgen_free(g);
}

/* ----------------------------------------------------------- refused */

/* from_csr must fail with `cls` and a message starting with `prefix`, and
 * leave the template as it was: no subject, no key, no SAN. */
static void refused(const char *path, enum tw_error_class cls,
                    const char *prefix, int exact)
{
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);

    assert_int_equal(tw_certgen_from_csr_file(g, path, &err), -1);
    if (exact)
        th_assert_err(err, cls, prefix);
    else
        th_assert_err_prefix(err, cls, prefix);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(tw_certgen_san_count(g), 0);
    assert_int_equal(tw_certgen_set_purposes(g, TW_PURPOSE_CLIENT, &err), 0);
    assert_null(tw_certgen_sign(g, NULL, NULL, &err));
    th_assert_err(err, TW_ERR_USAGE, "no subject given");
    tw_certgen_free(g);
}

static void ca_true_is_refused(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096], expected[4400];

    th_path(path, f->dir, "ca.csr");
    write_req(path,
              make_req(&(struct req_spec){
                           .subject = "/CN=sneaky",
                           .exts = {{"subjectAltName", "DNS:sneaky.example"},
                                    {"basicConstraints", "critical,CA:TRUE"}}},
                       f->key->pkey, f->key->pkey),
              1);
    snprintf(expected, sizeof(expected),
             "%s asks for a CA certificate (basicConstraints CA:TRUE): "
             "twoway-ca signs only end-entity certificates from CSRs", path);
    refused(path, TW_ERR_INPUT, expected, 1);
    /* Not critical makes no difference. */
    write_req(path,
              make_req(&(struct req_spec){
                           .subject = "/CN=sneaky",
                           .exts = {{"basicConstraints", "CA:TRUE,pathlen:3"}}},
                       f->key->pkey, f->key->pkey),
              1);
    refused(path, TW_ERR_INPUT, expected, 1);
}

/* Names in a CSR pass the same checks as names on the command line. */
static void bad_requested_names_are_refused(void **state)
{
    struct th_ca_fixture *f = *state;
    const char *bad[] = {"DNS:*", "DNS:a b.example", "email:no-at-sign",
                         "URI:no-scheme"};
    char path[4096], expected[4400];

    th_path(path, f->dir, "badname.csr");
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        unlink(path);
        write_req(path,
                  make_req(&(struct req_spec){
                               .subject = "/CN=mail",
                               .exts = {{"subjectAltName", bad[i]}}},
                           f->key->pkey, f->key->pkey),
                  1);
        snprintf(expected, sizeof(expected),
                 "%s asks for a name that cannot be certified: ", path);
        refused(path, TW_ERR_INPUT, expected, 0);
    }
}

static void broken_signature_is_refused(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096], expected[4400], *der;
    tw_key *other = th_key("ec-p256");
    size_t len;

    /* Altered after signing: one bit of the signature flipped. */
    th_path(path, f->dir, "altered.der");
    write_req(path, make_req(&(struct req_spec){.subject = "/CN=altered"},
                             f->key->pkey, f->key->pkey), 0);
    der = th_slurp(path, &len);
    der[len - 1] ^= 0x01;
    th_write(path, der, len);
    free(der);
    snprintf(expected, sizeof(expected),
             "the signature of %s does not verify: the request was altered or "
             "not made with its key; make a new CSR", path);
    refused(path, TW_ERR_INPUT, expected, 0);

    /* Signed with a key other than the one it asks to certify. */
    th_path(path, f->dir, "borrowed.pem");
    write_req(path, make_req(&(struct req_spec){.subject = "/CN=borrowed"},
                             f->key->pkey, other->pkey), 1);
    snprintf(expected, sizeof(expected),
             "the signature of %s does not verify: the request was altered or "
             "not made with its key; make a new CSR", path);
    refused(path, TW_ERR_INPUT, expected, 0);
    tw_key_free(other);
}

static void weak_rsa_key_is_refused(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096], expected[4400];
    EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);

    assert_non_null(weak);
    th_path(path, f->dir, "weak.pem");
    write_req(path, make_req(&(struct req_spec){.subject = "/CN=weak"}, weak,
                             weak), 1);
    snprintf(expected, sizeof(expected),
             "%s asks to certify a RSA 1024 key, weaker than the 112-bit "
             "minimum: make a new key (RSA 2048 or more, or EC)", path);
    refused(path, TW_ERR_INPUT, expected, 1);
    EVP_PKEY_free(weak);
}

static void empty_subject_is_refused(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096], expected[4400];

    th_path(path, f->dir, "nameless.pem");
    write_req(path, make_req(&(struct req_spec){.subject = NULL},
                             f->key->pkey, f->key->pkey), 1);
    snprintf(expected, sizeof(expected), "%s has an empty subject", path);
    refused(path, TW_ERR_INPUT, expected, 1);
}

static void garbage_is_refused(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096], good[4096], expected[4400], *pem;
    size_t len;

    th_path(path, f->dir, "garbage.csr");
    snprintf(expected, sizeof(expected),
             "%s holds no readable certificate signing request (garbage or "
             "truncated PEM?)", path);
    th_write(path, "hello, world\n", 13);
    refused(path, TW_ERR_INPUT, expected, 0);
    th_write(path, "", 0);
    refused(path, TW_ERR_INPUT, expected, 0);
    {
        const char *bad = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                          "-----END CERTIFICATE REQUEST-----\n";

        th_write(path, bad, strlen(bad));
    }
    refused(path, TW_ERR_INPUT, expected, 0);

    /* Truncated. */
    th_path(good, f->dir, "good.pem");
    write_req(good, make_req(&(struct req_spec){.subject = "/CN=cut"},
                             f->key->pkey, f->key->pkey), 1);
    pem = th_slurp(good, &len);
    th_write(path, pem, len / 2);
    refused(path, TW_ERR_INPUT, expected, 0);
    free(pem);

    /* A certificate is not a request. */
    assert_int_equal(tw_cert_write_file(f->ca, path, NULL), 0);
    refused(path, TW_ERR_INPUT, expected, 0);
}

static void missing_file_is_io(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096], expected[4400];

    th_path(path, f->dir, "absent.csr");
    snprintf(expected, sizeof(expected),
             "cannot read %s: No such file or directory", path);
    refused(path, TW_ERR_IO, expected, 1);
}

struct once {
    const char *path;
};

static int from_csr_once(void *ctx, tw_err *err)
{
    struct once *o = ctx;
    tw_certgen *g = tw_certgen_new(err);
    int rc;

    if (g == NULL)
        return -1;
    rc = tw_certgen_from_csr_file(g, o->path, err);
    if (rc == 0)
        assert_int_equal(tw_certgen_san_count(g), 2);
    tw_certgen_free(g);
    return rc;
}

static void allocation_failures_are_internal(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096];
    struct once o = {.path = path};

    th_path(path, f->dir, "req.pem");
    write_req(path,
              make_req(&(struct req_spec){
                           .subject = "/CN=mem",
                           .exts = {{"subjectAltName",
                                     "DNS:mem.example,IP:10.9.8.7"}}},
                       f->key->pkey, f->key->pkey),
              1);
    th_alloc_fail_loop(from_csr_once, &o);
}

#define T(fn) \
    cmocka_unit_test_setup_teardown(fn, th_ca_test_setup, th_ca_test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(valid_csr_gives_subject_key_and_names_only),
        T(csr_in_memory_says_what_it_asks_for),
        T(der_csr_without_extensions),
        T(ca_false_is_fine),
        T(ca_true_is_refused),
        T(bad_requested_names_are_refused),
        T(broken_signature_is_refused),
        T(weak_rsa_key_is_refused),
        T(empty_subject_is_refused),
        T(garbage_is_refused),
        T(missing_file_is_io),
        T(allocation_failures_are_internal),
    };
    return cmocka_run_group_tests(tests, group_setup, th_ca_group_teardown);
}
