/*
 * trust.c - trust anchors, CRLs and chain verification.
 *
 * Chains are checked at OpenSSL security level 2: keys of at least 112 bits
 * (RSA >= 2048, EC >= P-224) and no SHA-1 signatures.  A CRL file holds one
 * CRL (PEM or DER) or several (PEM, one per CA, as nginx's ssl_crl takes
 * them); each is only taken when one of the trusted CAs signed it.
 */
#define _GNU_SOURCE /* memmem */
#include "tw_internal.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <string.h>
#include <time.h>

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
    twu_free(t);
}

static int load_cas(tw_trust *t, const char *path, tw_err *err)
{
    size_t len;
    char *data = twu_read_file(path, TRUST_FILE_MAX, &len, err);
    BIO *bio = NULL;
    STACK_OF(X509_INFO) *infos = NULL;
    int rc = -1;

    if (data == NULL)
        return -1;
    if ((bio = BIO_new_mem_buf(data, (int)len)) == NULL) {
        twu_err_nomem(err);
        goto done;
    }
    infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
    for (int i = 0; infos != NULL && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *info = sk_X509_INFO_value(infos, i);

        if (info->x509 == NULL)
            continue;
        /* Cache the extensions now, on one thread: the first verifications
         * on several worker threads would otherwise fill OpenSSL's cache
         * of this CA's extensions at the same time. */
        (void)X509_check_purpose(info->x509, -1, 0);
        if (X509_STORE_add_cert(t->store, info->x509) != 1 ||
            sk_X509_push(t->cas, info->x509) == 0) {
            twu_err_ssl(err, TW_ERR_INTERNAL, "cannot add a CA from %s", path);
            goto done;
        }
        X509_up_ref(info->x509);
    }
    if (sk_X509_num(t->cas) == 0) {
        twu_err_ssl(err, TW_ERR_INPUT,
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
    twu_free(data);
    return rc;
}

/* Count the PEM blocks of one type, so that a CRL lost to a bad block in the
 * middle of a file is an error, not a silent gap. */
static int count_pem_blocks(const char *data, size_t len, const char *begin)
{
    size_t blen = strlen(begin);
    const char *p = data, *end = data + len;
    int n = 0;

    while ((p = memmem(p, (size_t)(end - p), begin, blen)) != NULL) {
        n++;
        p += blen;
    }
    return n;
}

/* Every CRL in the file, in order: PEM (one or more) or one DER.  NULL with
 * *err set when a block cannot be read. */
static STACK_OF(X509_CRL) *parse_crls(const char *data, size_t len,
                                      const char *path, tw_err *err)
{
    STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
    X509_CRL *crl;
    int blocks;

    if (crls == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    if (memmem(data, len, "-----BEGIN", 10) == NULL) {
        const unsigned char *p = (const unsigned char *)data;

        if ((crl = d2i_X509_CRL(NULL, &p, (long)len)) != NULL &&
            sk_X509_CRL_push(crls, crl) == 0)
            X509_CRL_free(crl);
        blocks = 1;
    } else {
        BIO *bio = BIO_new_mem_buf(data, (int)len);

        while (bio != NULL &&
               (crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL)
            if (sk_X509_CRL_push(crls, crl) == 0) {
                X509_CRL_free(crl);
                break;
            }
        BIO_free(bio);
        blocks = count_pem_blocks(data, len, "-----BEGIN X509 CRL-----");
    }
    if (sk_X509_CRL_num(crls) == 0 || sk_X509_CRL_num(crls) < blocks) {
        if (sk_X509_CRL_num(crls) == 0)
            twu_err_ssl(err, TW_ERR_INPUT,
                        "%s holds no readable CRL (garbage or truncated PEM?)",
                        path);
        else
            twu_err_ssl(err, TW_ERR_INPUT,
                        "%s: CRL %d of %d cannot be read (garbage or "
                        "truncated PEM?)", path, sk_X509_CRL_num(crls) + 1,
                        blocks);
        sk_X509_CRL_pop_free(crls, X509_CRL_free);
        return NULL;
    }
    return crls;
}

/* The trusted CA that issued and signed `crl`, or NULL. */
static X509 *crl_signer(const tw_trust *t, X509_CRL *crl)
{
    for (int i = 0; i < sk_X509_num(t->cas); i++) {
        X509 *ca = sk_X509_value(t->cas, i);

        if (X509_NAME_cmp(X509_get_subject_name(ca),
                          X509_CRL_get_issuer(crl)) == 0 &&
            X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1)
            return ca;
    }
    return NULL;
}

/* Refuse a CRL we cannot use: not from a trusted CA, or a second one from
 * the same CA (which of the two would apply is not for us to guess). */
static int check_crl(const tw_trust *t, STACK_OF(X509_CRL) *crls, int i,
                     const char *path, tw_err *err)
{
    X509_CRL *crl = sk_X509_CRL_value(crls, i);
    char *issuer;
    int rc = 0;

    if (crl_signer(t, crl) == NULL)
        rc = -1;
    for (int j = 0; rc == 0 && j < i; j++)
        if (X509_NAME_cmp(X509_CRL_get_issuer(sk_X509_CRL_value(crls, j)),
                          X509_CRL_get_issuer(crl)) == 0)
            rc = -2;
    if (rc == 0)
        return 0;
    issuer = tw__name_text(X509_CRL_get_issuer(crl));
    if (rc == -1)
        twu_err(err, TW_ERR_INPUT,
                "the CRL %s (issuer %s) is not signed by a trusted CA: "
                "give the CRL of the CA in the CA file", path,
                issuer ? issuer : "?");
    else
        twu_err(err, TW_ERR_INPUT,
                "%s holds two CRLs from %s: keep only the newest (one CRL "
                "per CA)", path, issuer ? issuer : "?");
    twu_free(issuer);
    return -1;
}

static int load_crl(tw_trust *t, const char *path, tw_err *err)
{
    size_t len;
    char *data = twu_read_file(path, CRL_FILE_MAX, &len, err);
    STACK_OF(X509_CRL) *crls;
    int rc = -1;

    if (data == NULL)
        return -1;
    crls = parse_crls(data, len, path, err);
    twu_free(data);
    if (crls == NULL)
        goto done;
    for (int i = 0; i < sk_X509_CRL_num(crls); i++)
        if (check_crl(t, crls, i, path, err) < 0)
            goto done;
    for (int i = 0; i < sk_X509_CRL_num(crls); i++)
        if (X509_STORE_add_crl(t->store, sk_X509_CRL_value(crls, i)) != 1) {
            twu_err_ssl(err, TW_ERR_INTERNAL, "cannot use the CRL %s", path);
            goto done;
        }
    t->has_crl = 1;
    rc = 0;
done:
    ERR_clear_error();
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return rc;
}

static time_t crl_time(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

int tw__trust_check_crl(const tw_trust *t, const char *data, size_t len,
                        const char *what, tw__crl_info *info, tw_err *err)
{
    STACK_OF(X509_CRL) *crls = parse_crls(data, len, what, err);
    ASN1_INTEGER *number = NULL;
    X509_CRL *crl;
    uint64_t n = 0;
    int rc = -1, crit = 0;

    if (crls == NULL)
        goto done;
    if (sk_X509_CRL_num(crls) != 1) {
        twu_err(err, TW_ERR_INPUT, "%s holds %d CRLs, not one", what,
                sk_X509_CRL_num(crls));
        goto done;
    }
    if (check_crl(t, crls, 0, what, err) < 0)
        goto done;
    crl = sk_X509_CRL_value(crls, 0);
    number = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
    if (number != NULL && ASN1_INTEGER_get_uint64(&n, number) != 1) {
        twu_err(err, TW_ERR_INPUT, "%s has a CRL number too large to compare",
                what);
        goto done;
    }
    memset(info, 0, sizeof(*info));
    info->number = n;
    info->has_number = number != NULL;
    info->this_update = crl_time(X509_CRL_get0_lastUpdate(crl));
    info->next_update = crl_time(X509_CRL_get0_nextUpdate(crl));
    rc = 0;
done:
    ERR_clear_error();
    ASN1_INTEGER_free(number);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return rc;
}

tw_trust *tw_trust_load(const char *ca_path, const char *crl_path, tw_err *err)
{
    tw_trust *t = twu_calloc(1, sizeof(*t));

    if (t == NULL || (t->store = X509_STORE_new()) == NULL ||
        (t->cas = sk_X509_new_null()) == NULL) {
        twu_err_nomem(err);
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
        return twu_err_nomem(err);
    if (X509_STORE_CTX_init(ctx, t->store, cert->x509, NULL) != 1) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot set up verification");
        goto done;
    }
    param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_auth_level(param, 2);
    if (purpose == TW_PURPOSE_SERVER)
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    else if (purpose == TW_PURPOSE_CLIENT)
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    if (host != NULL && set_host(param, cert->x509, host) != 1) {
        twu_err(err, TW_ERR_USAGE, "'%s' is not a usable host name", host);
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
