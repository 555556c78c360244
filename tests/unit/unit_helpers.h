/*
 * unit_helpers.h - what the unit tests share: scratch directories, exact
 * error assertions, and a small PKI made with the library (or, for what the
 * library refuses to make, with OpenSSL alone).
 *
 * Header-only (static inline): each unit test is its own executable.
 * Include it after tw_internal.h; it includes cmocka itself.
 */
#ifndef TW_UNIT_HELPERS_H
#define TW_UNIT_HELPERS_H

#include "tw_internal.h"
#include "twoway_pki.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------- errors */

/* The class and the whole sentence. */
#define th_assert_err(e, c, m)                                                \
    do {                                                                      \
        assert_string_equal(tw_error_class_name((e).cls),                     \
                            tw_error_class_name(c));                          \
        assert_string_equal((e).msg, (m));                                    \
    } while (0)

/* The class and the start of the sentence: for messages that end with
 * OpenSSL's own words (twu_err_ssl), which are not ours to pin down. */
#define th_assert_err_prefix(e, c, p)                                         \
    do {                                                                      \
        assert_string_equal(tw_error_class_name((e).cls),                     \
                            tw_error_class_name(c));                          \
        if (strncmp((e).msg, (p), strlen(p)) != 0)                            \
            fail_msg("message '%s' does not start with '%s'", (e).msg, (p));  \
    } while (0)

/* A refused certificate: class, reason and the whole sentence. */
#define th_assert_rejected(e, r, m)                                           \
    do {                                                                      \
        assert_string_equal(tw_error_class_name((e).cls), "peer_rejected");   \
        assert_string_equal(tw_reason_name((e).reason), tw_reason_name(r));   \
        assert_string_equal((e).msg, (m));                                    \
    } while (0)

/* ---------------------------------------------------------- the disk */

/* A private scratch directory; th_rmdir removes it with its files. */
static inline char *th_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *dir = malloc(4096);

    assert_non_null(dir);
    snprintf(dir, 4096, "%s/twunit.XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static inline void th_rmdir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

/* Entries of `dir` other than "." and "..". */
static inline int th_dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* dir/name into a caller's buffer of at least 4096 bytes. */
static inline char *th_path(char *out, const char *dir, const char *name)
{
    snprintf(out, 4096, "%s/%s", dir, name);
    return out;
}

static inline void th_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The whole file, NUL-terminated; free(). */
static inline char *th_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long size;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    buf[size] = '\0';
    fclose(f);
    if (len != NULL)
        *len = (size_t)size;
    return buf;
}

static inline int th_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

static inline unsigned th_mode(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return (unsigned)(st.st_mode & 07777);
}

/* ------------------------------------------------------------ the PKI */

static inline tw_key *th_key(const char *type)
{
    tw_err err;
    tw_key *key = tw_key_generate(type, &err);

    if (key == NULL)
        fail_msg("cannot generate %s: %s", type, err.msg);
    return key;
}

/* What to certify.  SANs are "dns:", "ip:", "uri:" or "email:" + value. */
struct th_spec {
    const char *subject;
    int purposes;
    const char *sans[8];
    const unsigned char *serial; /* NULL: random */
    size_t serial_len;
    int days; /* 0: the default */
};

static inline void th_add_san(tw_certgen *g, const char *san)
{
    static const struct { const char *prefix; enum tw_san_type type; } kinds[] = {
        {"dns:", TW_SAN_DNS}, {"ip:", TW_SAN_IP},
        {"uri:", TW_SAN_URI}, {"email:", TW_SAN_EMAIL},
    };
    tw_err err;

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t n = strlen(kinds[i].prefix);

        if (strncmp(san, kinds[i].prefix, n) == 0) {
            if (tw_certgen_add_san(g, kinds[i].type, san + n, &err) != 0)
                fail_msg("SAN %s: %s", san, err.msg);
            return;
        }
    }
    fail_msg("bad SAN spec %s", san);
}

/* Sign `spec` for `key`; issuer NULL: self-signed by `key`. */
static inline tw_cert *th_sign(const struct th_spec *spec, const tw_key *key,
                               const tw_cert *issuer, const tw_key *issuer_key)
{
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);
    tw_name *subject = tw_name_parse(spec->subject, &err);
    tw_cert *cert;

    assert_non_null(g);
    if (subject == NULL)
        fail_msg("subject %s: %s", spec->subject, err.msg);
    assert_int_equal(tw_certgen_set_subject(g, subject, &err), 0);
    tw_name_free(subject);
    for (size_t i = 0; i < 8 && spec->sans[i] != NULL; i++)
        th_add_san(g, spec->sans[i]);
    assert_int_equal(tw_certgen_set_purposes(g, spec->purposes, &err), 0);
    assert_int_equal(tw_certgen_set_public_key(g, key, &err), 0);
    if (spec->serial != NULL)
        assert_int_equal(
            tw_certgen_set_serial(g, spec->serial, spec->serial_len, &err), 0);
    if (spec->days != 0)
        assert_int_equal(tw_certgen_set_days(g, spec->days, &err), 0);
    cert = tw_certgen_sign(g, issuer, issuer ? issuer_key : key, &err);
    if (cert == NULL)
        fail_msg("cannot sign %s: %s", spec->subject, err.msg);
    tw_certgen_free(g);
    return cert;
}

/* A self-signed CA. */
static inline tw_cert *th_ca(const char *subject, const tw_key *key)
{
    return th_sign(&(struct th_spec){.subject = subject,
                                     .purposes = TW_PURPOSE_CA},
                   key, NULL, NULL);
}

/* Wrap an X509 the test made (takes the reference). */
static inline tw_cert *th_wrap(X509 *x)
{
    tw_err err;
    tw_cert *cert;

    assert_non_null(x);
    cert = tw__cert_wrap(x, &err);
    assert_non_null(cert);
    return cert;
}

/*
 * A certificate made with OpenSSL alone, for what certgen will not make: a
 * validity in the past or future ("YYYYMMDDHHMMSSZ"), version 1, serial 0.
 * No extensions.  `issuer` NULL: the issuer name is the subject's.
 */
static inline X509 *th_raw_cert(long version, const char *subject_cn,
                                const X509 *issuer, EVP_PKEY *pub,
                                EVP_PKEY *signer, const char *not_before,
                                const char *not_after, long serial)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();

    assert_non_null(x);
    assert_non_null(name);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                                (const unsigned char *)subject_cn,
                                                -1, -1, 0), 1);
    assert_int_equal(X509_set_version(x, version), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
    assert_int_equal(X509_set_subject_name(x, name), 1);
    assert_int_equal(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer)
                                                    : name), 1);
    assert_int_equal(X509_set_pubkey(x, pub), 1);
    assert_int_equal(ASN1_TIME_set_string_X509(X509_getm_notBefore(x),
                                               not_before), 1);
    assert_int_equal(ASN1_TIME_set_string_X509(X509_getm_notAfter(x),
                                               not_after), 1);
    assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
    X509_NAME_free(name);
    return x;
}

/* Write the certificates' PEM, one after the other, to `path`. */
static inline void th_write_certs(const char *path, const tw_cert *const *certs,
                                  size_t n)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(PEM_write_X509(f, certs[i]->x509), 1);
    assert_int_equal(fclose(f), 0);
}

/* ------------------------------------------------------ a CA fixture */

/*
 * For a test program that works under one CA.  Made once for the group: an
 * ec-p256 CA key, its self-signed certificate and, when asked for, a second
 * key that is not the CA's; each test gets a fresh scratch directory.
 *
 *     static int group_setup(void **state)
 *     {
 *         return th_ca_group_setup(state, "/CN=Some CA", "ed25519");
 *     }
 *
 *     cmocka_unit_test_setup_teardown(fn, th_ca_test_setup, th_ca_test_teardown)
 *     cmocka_run_group_tests(tests, group_setup, th_ca_group_teardown)
 */
struct th_ca_fixture {
    char *dir; /* the test's scratch directory; NULL outside a test */
    tw_key *ca_key;
    tw_cert *ca;
    tw_key *key; /* not the CA's; NULL when key_type was NULL */
};

static inline int th_ca_group_setup(void **state, const char *ca_subject,
                                    const char *key_type)
{
    struct th_ca_fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->ca_key = th_key("ec-p256");
    f->ca = th_ca(ca_subject, f->ca_key);
    if (key_type != NULL)
        f->key = th_key(key_type);
    *state = f;
    return 0;
}

static inline int th_ca_group_teardown(void **state)
{
    struct th_ca_fixture *f = *state;

    tw_cert_free(f->ca);
    tw_key_free(f->ca_key);
    tw_key_free(f->key);
    free(f);
    return 0;
}

static inline int th_ca_test_setup(void **state)
{
    struct th_ca_fixture *f = *state;

    f->dir = th_mkdtemp();
    return 0;
}

static inline int th_ca_test_teardown(void **state)
{
    struct th_ca_fixture *f = *state;

    th_rmdir(f->dir);
    f->dir = NULL;
    return 0;
}

/*
 * Call fn with the n-th allocation failing, for n = 0, 1, ... until it
 * succeeds (returns 0).  Every failure must be TW_ERR_INTERNAL; fn frees
 * whatever it made either way.  Returns how many runs failed (at least one:
 * a path that allocates nothing is not tested by this).  Bounded, so that a
 * call that never succeeds fails the test instead of looping.
 */
static inline long th_alloc_fail_loop(int (*fn)(void *ctx, tw_err *err),
                                      void *ctx)
{
    long i;

    for (i = 0; i < 100000; i++) {
        tw_err err;
        int rc;

        tw_err_clear(&err);
        twu_alloc_fail_after(i);
        rc = fn(ctx, &err);
        twu_alloc_fail_after(-1);
        if (rc == 0)
            break;
        if (err.cls != TW_ERR_INTERNAL)
            fail_msg("with allocation %ld failing: class %s, '%s'", i,
                     tw_error_class_name(err.cls), err.msg);
    }
    assert_true(i > 0);
    assert_true(i < 100000);
    return i;
}

#endif /* TW_UNIT_HELPERS_H */
