/* cert_test.c - certificates in and out: PEM or DER, garbage refused with
 * the file's name, PEM written atomically and readable by all. */
#include "tw_internal.h"
#include "unit_helpers.h"

static int group_setup(void **state)
{
    return th_ca_group_setup(state, "/O=ABC Inc./CN=Cert CA", "ed25519");
}

static void pem_and_der_parse_to_the_same(void **state)
{
    struct th_ca_fixture *f = *state;
    unsigned char *der = NULL;
    int der_len = i2d_X509(f->ca->x509, &der);
    tw_err err;
    char *pem = tw_cert_to_pem(f->ca, &err);
    tw_cert *a, *b;

    assert_non_null(pem);
    assert_int_equal(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28), 0);
    a = tw_cert_parse(pem, strlen(pem), &err);
    b = tw_cert_parse(der, (size_t)der_len, &err);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(X509_cmp(a->x509, f->ca->x509), 0);
    assert_int_equal(X509_cmp(b->x509, f->ca->x509), 0);
    tw_cert_free(a);
    tw_cert_free(b);
    twu_free(pem);
    OPENSSL_free(der);
}

static void bad_bytes_are_input(void **state)
{
    struct th_ca_fixture *f = *state;
    static const char bad_pem[] = "-----BEGIN CERTIFICATE-----\nAAAA\n"
                                  "-----END CERTIFICATE-----\n";
    unsigned char *der = NULL, *longer;
    int der_len = i2d_X509(f->ca->x509, &der);
    tw_err err;

    assert_null(tw_cert_parse("garbage", 7, &err));
    th_assert_err_prefix(err, TW_ERR_INPUT,
                         "the certificate is neither a PEM nor a DER "
                         "certificate");
    assert_null(tw_cert_parse(der, (size_t)der_len - 1, &err));
    th_assert_err_prefix(err, TW_ERR_INPUT,
                         "the certificate is neither a PEM nor a DER "
                         "certificate");
    longer = malloc((size_t)der_len + 1);
    memcpy(longer, der, (size_t)der_len);
    longer[der_len] = 0;
    assert_null(tw_cert_parse(longer, (size_t)der_len + 1, &err));
    th_assert_err(err, TW_ERR_INPUT,
                  "the certificate has trailing bytes after the DER "
                  "certificate");
    assert_null(tw_cert_parse(bad_pem, strlen(bad_pem), &err));
    th_assert_err_prefix(err, TW_ERR_INPUT,
                         "the certificate holds no readable certificate "
                         "(garbage or truncated PEM?)");
    assert_int_equal(ERR_peek_error(), 0);
    free(longer);
    OPENSSL_free(der);
}

static void load_file_names_the_file(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096], expected[4400], *pem;
    size_t len;
    tw_err err;
    tw_cert *c;

    th_path(path, f->dir, "ca.pem");
    assert_int_equal(tw_cert_write_file(f->ca, path, &err), 0);
    c = tw_cert_load_file(path, &err);
    assert_non_null(c);
    assert_int_equal(X509_cmp(c->x509, f->ca->x509), 0);
    tw_cert_free(c);

    pem = th_slurp(path, &len);
    th_write(path, pem, len / 2);
    free(pem);
    assert_null(tw_cert_load_file(path, &err));
    snprintf(expected, sizeof(expected),
             "%s holds no readable certificate (garbage or truncated PEM?)",
             path);
    th_assert_err_prefix(err, TW_ERR_INPUT, expected);

    th_write(path, "garbage\n", 8);
    assert_null(tw_cert_load_file(path, &err));
    snprintf(expected, sizeof(expected),
             "%s is neither a PEM nor a DER certificate", path);
    th_assert_err_prefix(err, TW_ERR_INPUT, expected);

    th_path(path, f->dir, "absent.pem");
    assert_null(tw_cert_load_file(path, &err));
    snprintf(expected, sizeof(expected),
             "cannot read %s: No such file or directory", path);
    th_assert_err(err, TW_ERR_IO, expected);
    assert_int_equal(ERR_peek_error(), 0);
}

static void the_first_certificate_of_a_bundle(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096];
    tw_cert *second = th_ca("/CN=second", f->key), *c;
    tw_err err;

    th_path(path, f->dir, "bundle.pem");
    th_write_certs(path, (const tw_cert *const[]){f->ca, second}, 2);
    c = tw_cert_load_file(path, &err);
    assert_non_null(c);
    assert_int_equal(X509_cmp(c->x509, f->ca->x509), 0);
    tw_cert_free(c);
    tw_cert_free(second);
}

static void written_0644_and_replaced(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096], *pem, *back;
    mode_t old = umask(077);
    tw_cert *second = th_ca("/CN=second", f->key);
    tw_err err;
    int rc;

    th_path(path, f->dir, "cert.pem");
    rc = tw_cert_write_file(f->ca, path, &err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(th_mode(path), 0644);
    assert_int_equal(tw_cert_write_file(second, path, &err), 0);
    pem = tw_cert_to_pem(second, &err);
    back = th_slurp(path, NULL);
    assert_string_equal(back, pem);
    free(back);
    twu_free(pem);
    assert_int_equal(th_dir_entries(f->dir), 1);
    tw_cert_free(second);
}

static void matches_key(void **state)
{
    struct th_ca_fixture *f = *state;

    assert_true(tw_cert_matches_key(f->ca, f->ca_key));
    assert_false(tw_cert_matches_key(f->ca, f->key));
    assert_int_equal(ERR_peek_error(), 0);
}

static void oversized_input_is_refused(void **state)
{
    struct th_ca_fixture *f = *state;
    size_t big = 1024 * 1024 + 1;
    char *data = calloc(1, big);
    char path[4096], expected[4400];
    tw_err err;

    assert_non_null(data);
    assert_null(tw_cert_parse(data, big, &err));
    th_assert_err(err, TW_ERR_INPUT,
                  "the certificate is too large to be a certificate");
    th_path(path, f->dir, "big.pem");
    th_write(path, data, big);
    assert_null(tw_cert_load_file(path, &err));
    snprintf(expected, sizeof(expected),
             "%s is larger than 1048576 bytes: is it the right file?", path);
    th_assert_err(err, TW_ERR_INPUT, expected);
    free(data);
}

/* Issue 14: `--cert key.pem` (or `twoway-ca verify ... key.pem`) said "holds
 * no readable certificate (garbage or truncated PEM?): no start line".  The
 * file holds a private key: say so, with the file's name, in every form a
 * key is written (PKCS#8, encrypted PKCS#8, traditional PEM, DER). */
static void private_key_instead_of_certificate(void **state)
{
    struct th_ca_fixture *f = *state;
    char path[4096], expected[4400], *pem, *key_pem, *both;
    unsigned char *der = NULL;
    int der_len;
    BIO *bio;
    long pem_len;
    size_t key_len, cert_len;
    tw_cert *c;
    tw_err err;
    const char *files[] = {"key.pem", "encrypted.pem", "traditional.pem",
                           "key.der"};

    th_path(path, f->dir, files[0]);
    assert_int_equal(tw_key_write_file(f->key, path, NULL, &err), 0);
    th_path(path, f->dir, files[1]);
    assert_int_equal(tw_key_write_file(f->key, path, "secret", &err), 0);
    bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey_traditional(
                         bio, f->ca_key->pkey, NULL, NULL, 0, NULL, NULL), 1);
    pem_len = BIO_get_mem_data(bio, &pem);
    assert_non_null(strstr(pem, "-----BEGIN EC PRIVATE KEY-----"));
    th_write(th_path(path, f->dir, files[2]), pem, (size_t)pem_len);
    BIO_free(bio);
    der_len = i2d_PrivateKey(f->ca_key->pkey, &der);
    assert_true(der_len > 0);
    th_write(th_path(path, f->dir, files[3]), der, (size_t)der_len);
    OPENSSL_free(der);

    for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
        th_path(path, f->dir, files[i]);
        assert_null(tw_cert_load_file(path, &err));
        snprintf(expected, sizeof(expected),
                 "%s holds a private key, not a certificate: give the "
                 "certificate that goes with it (twoway-ca issue writes it "
                 "to cert.pem, beside key.pem)", path);
        th_assert_err(err, TW_ERR_INPUT, expected);
        assert_int_equal(ERR_peek_error(), 0);
    }

    /* A key and then its certificate in one file is a certificate file. */
    key_pem = th_slurp(th_path(path, f->dir, files[0]), &key_len);
    pem = tw_cert_to_pem(f->ca, &err);
    assert_non_null(pem);
    cert_len = strlen(pem);
    both = malloc(key_len + cert_len);
    assert_non_null(both);
    memcpy(both, key_pem, key_len);
    memcpy(both + key_len, pem, cert_len);
    th_write(th_path(path, f->dir, "both.pem"), both, key_len + cert_len);
    free(both);
    free(key_pem);
    twu_free(pem);
    c = tw_cert_load_file(path, &err);
    assert_non_null(c);
    assert_int_equal(X509_cmp(c->x509, f->ca->x509), 0);
    tw_cert_free(c);
}

struct once {
    struct th_ca_fixture *f;
    char path[4096];
};

static int load_once(void *ctx, tw_err *err)
{
    struct once *o = ctx;
    tw_cert *c = tw_cert_load_file(o->path, err);
    char *pem;

    if (c == NULL)
        return -1;
    pem = tw_cert_to_pem(c, err);
    tw_cert_free(c);
    if (pem == NULL)
        return -1;
    twu_free(pem);
    return 0;
}

static void allocation_failures_are_internal(void **state)
{
    struct once o = {.f = *state};
    tw_err err;

    th_path(o.path, o.f->dir, "ca.pem");
    assert_int_equal(tw_cert_write_file(o.f->ca, o.path, &err), 0);
    th_alloc_fail_loop(load_once, &o);
}

#define T(fn) \
    cmocka_unit_test_setup_teardown(fn, th_ca_test_setup, th_ca_test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pem_and_der_parse_to_the_same),
        cmocka_unit_test(bad_bytes_are_input),
        T(load_file_names_the_file),
        T(the_first_certificate_of_a_bundle),
        T(written_0644_and_replaced),
        cmocka_unit_test(matches_key),
        T(oversized_input_is_refused),
        T(private_key_instead_of_certificate),
        T(allocation_failures_are_internal),
    };
    return cmocka_run_group_tests(tests, group_setup, th_ca_group_teardown);
}
