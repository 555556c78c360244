/*
 * crl.c - certificate revocation lists (RFC 5280 section 5).
 *
 * v2 CRLs with a CRL number (5.2.3), an authorityKeyIdentifier (5.2.1) and
 * per-entry reason codes (5.3.1).
 */
#include "tw_internal.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <string.h>
#include <strings.h>

static const char *const reason_names[] = {
    "unspecified",          "keyCompromise",      "cACompromise",
    "affiliationChanged",   "superseded",         "cessationOfOperation",
    "certificateHold",      NULL /* 7 is unused */, "removeFromCRL",
    "privilegeWithdrawn",   "aACompromise",
};

int tw_crl_reason_code(const char *name)
{
    for (int i = 0; i < (int)(sizeof(reason_names) / sizeof(*reason_names)); i++)
        if (reason_names[i] != NULL && strcasecmp(reason_names[i], name) == 0)
            return i;
    return -1;
}

const char *tw_crl_reason_name(int code)
{
    if (code < 0 || code >= (int)(sizeof(reason_names) / sizeof(*reason_names)))
        return NULL;
    return reason_names[code];
}

static int add_revoked(X509_CRL *crl, const tw_revoked *r, tw_err *err)
{
    X509_REVOKED *rev = X509_REVOKED_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = NULL;
    ASN1_ENUMERATED *code = NULL;
    int rc = -1;

    /* BN_hex2bn stops quietly at the first non-hex character ("12zz" would
     * revoke 0x12) and takes a '-': the whole string must be hex digits. */
    if (rev == NULL ||
        strspn(r->serial_hex, "0123456789abcdefABCDEF") !=
            strlen(r->serial_hex) ||
        BN_hex2bn(&bn, r->serial_hex) == 0 ||
        (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
        (when = ASN1_TIME_set(NULL, r->revoked_at)) == NULL) {
        twu_err_ssl(err, TW_ERR_INPUT, "cannot list serial %s in the CRL",
                    r->serial_hex);
        goto done;
    }
    if (X509_REVOKED_set_serialNumber(rev, serial) != 1 ||
        X509_REVOKED_set_revocationDate(rev, when) != 1) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot fill a CRL entry");
        goto done;
    }
    /* RFC 5280 5.3.1: omit the reason rather than say "unspecified". */
    if (r->reason > 0) {
        if ((code = ASN1_ENUMERATED_new()) == NULL ||
            ASN1_ENUMERATED_set(code, r->reason) != 1 ||
            X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, code, 0, 0) != 1) {
            twu_err_ssl(err, TW_ERR_INTERNAL, "cannot set a CRL reason");
            goto done;
        }
    }
    if (X509_CRL_add0_revoked(crl, rev) != 1) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot add a CRL entry");
        goto done;
    }
    rev = NULL;
    rc = 0;
done:
    X509_REVOKED_free(rev);
    BN_free(bn);
    ASN1_INTEGER_free(serial);
    ASN1_TIME_free(when);
    ASN1_ENUMERATED_free(code);
    return rc;
}

static int add_crl_extensions(X509_CRL *crl, X509 *ca, uint64_t number,
                              tw_err *err)
{
    X509V3_CTX ctx;
    X509_EXTENSION *aki;
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    int ok;

    if (num == NULL || ASN1_INTEGER_set_uint64(num, number) != 1 ||
        X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) != 1) {
        ASN1_INTEGER_free(num);
        return twu_err_ssl(err, TW_ERR_INTERNAL, "cannot set the CRL number");
    }
    ASN1_INTEGER_free(num);
    X509V3_set_ctx(&ctx, ca, NULL, NULL, crl, 0);
    aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier,
                              "keyid:always");
    ok = aki != NULL && X509_CRL_add_ext(crl, aki, -1) == 1;
    X509_EXTENSION_free(aki);
    return ok ? 0 : twu_err_ssl(err, TW_ERR_INTERNAL,
                                "cannot set the CRL's authority key id");
}

int tw_crl_write_file(const tw_cert *ca, const tw_key *ca_key,
                      const tw_revoked *revoked, size_t count, uint64_t number,
                      int days, const char *path, tw_err *err)
{
    X509_CRL *crl = NULL;
    ASN1_TIME *last = NULL, *next = NULL;
    BIO *bio = NULL;
    const EVP_MD *md = NULL;
    char *pem;
    long len;
    time_t now = time(NULL);
    int rc = -1;

    if (days < 1 || days > 3650)
        return twu_err(err, TW_ERR_USAGE,
                       "CRL validity of %d days is out of range: give 1 to "
                       "3650", days);
    if ((crl = X509_CRL_new()) == NULL ||
        (last = X509_time_adj_ex(NULL, 0, -60, &now)) == NULL ||
        (next = X509_time_adj_ex(NULL, days, 0, &now)) == NULL) {
        twu_err_nomem(err);
        goto done;
    }
    if (X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->x509)) != 1 ||
        X509_CRL_set1_lastUpdate(crl, last) != 1 ||
        X509_CRL_set1_nextUpdate(crl, next) != 1) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot fill in the CRL");
        goto done;
    }
    for (size_t i = 0; i < count; i++)
        if (add_revoked(crl, &revoked[i], err) < 0)
            goto done;
    X509_CRL_sort(crl);
    if (add_crl_extensions(crl, ca->x509, number, err) < 0)
        goto done;
    if (EVP_PKEY_get_base_id(ca_key->pkey) != EVP_PKEY_ED25519 &&
        EVP_PKEY_get_base_id(ca_key->pkey) != EVP_PKEY_ED448)
        md = EVP_PKEY_get_bits(ca_key->pkey) == 384 ? EVP_sha384()
                                                    : EVP_sha256();
    if (X509_CRL_sign(crl, ca_key->pkey, md) <= 0) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot sign the CRL");
        goto done;
    }
    if ((bio = BIO_new(BIO_s_mem())) == NULL ||
        PEM_write_bio_X509_CRL(bio, crl) != 1) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot encode the CRL");
        goto done;
    }
    len = BIO_get_mem_data(bio, &pem);
    rc = twu_write_file_atomic(path, pem, (size_t)len, 0644, 0, err);
done:
    ERR_clear_error();
    BIO_free(bio);
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    return rc;
}
