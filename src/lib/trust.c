/*
 * trust.c - trust anchors, CRLs and chain verification.
 *
 * Chains are checked at OpenSSL security level 2: keys of at least 112 bits
 * (RSA >= 2048, EC >= P-224) and no SHA-1 signatures.  A CRL is only taken
 * when one of the trusted CAs signed it.
 */
#define _GNU_SOURCE /* memmem */
#include "tw_internal.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <string.h>

#define TRUST_FILE_MAX (4 * 1024 * 1024)
#define CRL_FILE_MAX (64 * 1024 * 1024)

struct tw_trust {
    X509_STORE *store;
    STACK_OF(X509) *cas;
    int has_crl;
};

void tw_trust_free(tw_trust *t)
{
    if (t == NULL)
        return;
    X509_STORE_free(t->store);
    sk_X509_pop_free(t->cas, X509_free);
    tw__free(t);
}

static int load_cas(tw_trust *t, const char *path, tw_err *err)
{
    size_t len;
    char *data = tw__read_file(path, TRUST_FILE_MAX, &len, err);
    BIO *bio = NULL;
    STACK_OF(X509_INFO) *infos = NULL;
    int rc = -1;

    if (data == NULL)
        return -1;
    if ((bio = BIO_new_mem_buf(data, (int)len)) == NULL) {
        tw__err_nomem(err);
        goto done;
    }
    infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
    for (int i = 0; infos != NULL && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *info = sk_X509_INFO_value(infos, i);

        if (info->x509 == NULL)
            continue;
        if (X509_STORE_add_cert(t->store, info->x509) != 1 ||
            sk_X509_push(t->cas, info->x509) == 0) {
            tw__err_ssl(err, TW_ERR_INTERNAL, "cannot add a CA from %s", path);
            goto done;
        }
        X509_up_ref(info->x509);
    }
    if (sk_X509_num(t->cas) == 0) {
        tw__err_ssl(err, TW_ERR_INPUT,
                    "%s holds no PEM certificate (garbage or truncated "
                    "PEM?): give the CA certificate file, e.g. ca.cert.pem",
                    path);
        goto done;
    }
    rc = 0;
done:
    ERR_clear_error();
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(bio);
    tw__free(data);
    return rc;
}

static X509_CRL *parse_crl(const char *data, size_t len)
{
    if (memmem(data, len, "-----BEGIN", 10) != NULL) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        X509_CRL *crl = bio ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)
                            : NULL;

        BIO_free(bio);
        return crl;
    } else {
        const unsigned char *p = (const unsigned char *)data;

        return d2i_X509_CRL(NULL, &p, (long)len);
    }
}

static int load_crl(tw_trust *t, const char *path, tw_err *err)
{
    size_t len;
    char *data = tw__read_file(path, CRL_FILE_MAX, &len, err);
    X509_CRL *crl;
    X509 *signer = NULL;
    int rc = -1;

    if (data == NULL)
        return -1;
    crl = parse_crl(data, len);
    tw__free(data);
    if (crl == NULL) {
        tw__err_ssl(err, TW_ERR_INPUT,
                    "%s holds no readable CRL (garbage or truncated PEM?)",
                    path);
        return -1;
    }
    for (int i = 0; i < sk_X509_num(t->cas); i++) {
        X509 *ca = sk_X509_value(t->cas, i);

        if (X509_NAME_cmp(X509_get_subject_name(ca),
                          X509_CRL_get_issuer(crl)) == 0 &&
            X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1) {
            signer = ca;
            break;
        }
    }
    if (signer == NULL) {
        char *issuer = tw__name_text(X509_CRL_get_issuer(crl));

        tw__err(err, TW_ERR_INPUT,
                "the CRL %s (issuer %s) is not signed by a trusted CA: "
                "give the CRL of the CA in the CA file", path,
                issuer ? issuer : "?");
        tw__free(issuer);
        goto done;
    }
    if (X509_STORE_add_crl(t->store, crl) != 1) {
        tw__err_ssl(err, TW_ERR_INTERNAL, "cannot use the CRL %s", path);
        goto done;
    }
    t->has_crl = 1;
    rc = 0;
done:
    ERR_clear_error();
    X509_CRL_free(crl);
    return rc;
}

tw_trust *tw_trust_load(const char *ca_path, const char *crl_path, tw_err *err)
{
    tw_trust *t = tw__calloc(1, sizeof(*t));

    if (t == NULL || (t->store = X509_STORE_new()) == NULL ||
        (t->cas = sk_X509_new_null()) == NULL) {
        tw__err_nomem(err);
        goto err;
    }
    if (load_cas(t, ca_path, err) < 0)
        goto err;
    if (crl_path != NULL && load_crl(t, crl_path, err) < 0)
        goto err;
    if (t->has_crl)
        X509_STORE_set_flags(t->store, X509_V_FLAG_CRL_CHECK);
    return t;
err:
    tw_trust_free(t);
    return NULL;
}

/* An empty host would read as "no host" and turn the check off: refused.
 * The CN is a host name only when the certificate has no SAN at all (RFC
 * 6125 section 6.4.4); OpenSSL alone would read it beside URI or IP SANs. */
static int set_host(X509_VERIFY_PARAM *param, X509 *cert, const char *host)
{
    unsigned char ip[16];

    if (host[0] == '\0')
        return 0;
    if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(param, host);
    if (X509_get_ext_by_NID(cert, NID_subject_alt_name, -1) >= 0)
        X509_VERIFY_PARAM_set_hostflags(param,
                                        X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    return X509_VERIFY_PARAM_set1_host(param, host, 0);
}

int tw_trust_verify(const tw_trust *t, const tw_cert *cert, int purpose,
                    const char *host, tw_err *err)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_VERIFY_PARAM *param;
    int rc = -1, code, depth;
    X509 *at;
    char detail[256];

    if (ctx == NULL)
        return tw__err_nomem(err);
    if (X509_STORE_CTX_init(ctx, t->store, cert->x509, NULL) != 1) {
        tw__err_ssl(err, TW_ERR_INTERNAL, "cannot set up verification");
        goto done;
    }
    param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_auth_level(param, 2);
    if (purpose == TW_PURPOSE_SERVER)
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    else if (purpose == TW_PURPOSE_CLIENT)
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    if (host != NULL && set_host(param, cert->x509, host) != 1) {
        tw__err(err, TW_ERR_USAGE, "'%s' is not a usable host name", host);
        goto done;
    }
    if (X509_verify_cert(ctx) == 1) {
        rc = 0;
        goto done;
    }
    code = X509_STORE_CTX_get_error(ctx);
    depth = X509_STORE_CTX_get_error_depth(ctx);
    at = X509_STORE_CTX_get_current_cert(ctx);
    if (at == NULL)
        at = cert->x509;
    switch (tw__reason_from_x509(code)) {
    case TW_REASON_NAME_MISMATCH:
        snprintf(detail, sizeof(detail), "%s", host ? host : "?");
        break;
    case TW_REASON_WRONG_USAGE:
        snprintf(detail, sizeof(detail), "%s; it was checked for %s use",
                 X509_verify_cert_error_string(code),
                 purpose == TW_PURPOSE_SERVER ? "server"
                 : purpose == TW_PURPOSE_CLIENT ? "client" : "any");
        break;
    default:
        snprintf(detail, sizeof(detail), "%s",
                 X509_verify_cert_error_string(code));
    }
    tw__reject(err, tw__reason_from_x509(code), at,
               depth == 0 ? "the" : "the issuing CA's", detail);
done:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    return rc;
}

X509_STORE *tw__trust_store(const tw_trust *t)
{
    return t->store;
}

STACK_OF(X509) *tw__trust_cas(const tw_trust *t)
{
    return t->cas;
}
