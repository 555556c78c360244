/*
 * cert.c - certificates: reading PEM/DER, writing PEM.
 *
 * A file that is not a certificate is explained here, once for every
 * program that loads certificate files through tw_cert_load_file: most
 * often it is the private key, given where the certificate belongs
 * (`--cert key.pem`).
 */
#define _GNU_SOURCE /* memmem */
#include "tw_internal.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <string.h>

/* A certificate file larger than this is not a certificate. */
#define CERT_FILE_MAX (1024 * 1024)

tw_cert *tw__cert_wrap(X509 *x509, tw_err *err)
{
    tw_cert *cert = twu_calloc(1, sizeof(*cert));

    if (cert == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    cert->x509 = x509;
    return cert;
}

/* The sentence for a private key where a certificate belongs.  The two
 * files are made side by side (key.pem, cert.pem) and swapping them is an
 * easy slip; OpenSSL's own words ("no start line") do not say so. */
static int private_key_not_cert(tw_err *err, const char *what)
{
    ERR_clear_error();
    return twu_err(err, TW_ERR_INPUT,
                   "%s holds a private key, not a certificate: give the "
                   "certificate that goes with it (twoway-ca issue writes "
                   "it to cert.pem, beside key.pem)", what);
}

/* Whether DER bytes are a private key (PKCS#8 or a traditional RSA/EC
 * key), to explain why they are no certificate.  OpenSSL's error queue is
 * left as d2i_X509 left it, for the sentence when they are not. */
static int der_is_private_key(const void *data, size_t len)
{
    const unsigned char *p = data;
    EVP_PKEY *pkey;
    int is_key;

    ERR_set_mark();
    pkey = d2i_AutoPrivateKey(NULL, &p, (long)len);
    is_key = pkey != NULL && p == (const unsigned char *)data + len;
    EVP_PKEY_free(pkey);
    ERR_pop_to_mark();
    return is_key;
}

static X509 *parse_x509(const void *data, size_t len, const char *what,
                        tw_err *err)
{
    const unsigned char *p = data;
    X509 *x509 = NULL;
    BIO *bio;

    if (len > CERT_FILE_MAX || len > (size_t)INT32_MAX) {
        twu_err(err, TW_ERR_INPUT, "%s is too large to be a certificate", what);
        return NULL;
    }
    if (memmem(data, len, "-----BEGIN", 10) != NULL) {
        if ((bio = BIO_new_mem_buf(data, (int)len)) == NULL) {
            twu_err_nomem(err);
            return NULL;
        }
        x509 = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
        /* "-----BEGIN PRIVATE KEY-----", "... EC PRIVATE KEY-----", "...
         * ENCRYPTED PRIVATE KEY-----" (RFC 7468 labels) and no certificate
         * (a file with both gives its certificate above). */
        if (x509 == NULL && memmem(data, len, " PRIVATE KEY-----", 17) != NULL)
            private_key_not_cert(err, what);
        else if (x509 == NULL)
            twu_err_ssl(err, TW_ERR_INPUT,
                        "%s holds no readable certificate (garbage or "
                        "truncated PEM?)", what);
        return x509;
    }
    x509 = d2i_X509(NULL, &p, (long)len);
    if (x509 == NULL && der_is_private_key(data, len))
        private_key_not_cert(err, what);
    else if (x509 == NULL)
        twu_err_ssl(err, TW_ERR_INPUT,
                    "%s is neither a PEM nor a DER certificate", what);
    else if (p != (const unsigned char *)data + len) {
        X509_free(x509);
        x509 = NULL;
        twu_err(err, TW_ERR_INPUT,
                "%s has trailing bytes after the DER certificate", what);
    }
    return x509;
}

tw_cert *tw_cert_parse(const void *data, size_t len, tw_err *err)
{
    X509 *x509 = parse_x509(data, len, "the certificate", err);
    tw_cert *cert;

    if (x509 == NULL)
        return NULL;
    if ((cert = tw__cert_wrap(x509, err)) == NULL)
        X509_free(x509);
    return cert;
}

tw_cert *tw_cert_load_file(const char *path, tw_err *err)
{
    size_t len;
    char *data = twu_read_file(path, CERT_FILE_MAX, &len, err);
    X509 *x509;
    tw_cert *cert;

    if (data == NULL)
        return NULL;
    x509 = parse_x509(data, len, path, err);
    twu_free(data);
    if (x509 == NULL)
        return NULL;
    if ((cert = tw__cert_wrap(x509, err)) == NULL)
        X509_free(x509);
    return cert;
}

char *tw_cert_to_pem(const tw_cert *cert, tw_err *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    long len;

    if (bio == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    if (PEM_write_bio_X509(bio, cert->x509) != 1) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot encode the certificate");
        goto done;
    }
    len = BIO_get_mem_data(bio, &data);
    if ((out = twu_strndup(data, (size_t)len)) == NULL)
        twu_err_nomem(err);
done:
    BIO_free(bio);
    return out;
}

int tw_cert_write_file(const tw_cert *cert, const char *path, tw_err *err)
{
    char *pem = tw_cert_to_pem(cert, err);
    int rc;

    if (pem == NULL)
        return -1;
    rc = twu_write_file_atomic(path, pem, strlen(pem), 0644, 0, err);
    twu_free(pem);
    return rc;
}

int tw_cert_matches_key(const tw_cert *cert, const tw_key *key)
{
    int ok = X509_check_private_key(cert->x509, key->pkey) == 1;

    ERR_clear_error();
    return ok;
}

void tw_cert_free(tw_cert *cert)
{
    if (cert == NULL)
        return;
    X509_free(cert->x509);
    twu_free(cert);
}
