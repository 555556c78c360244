/*
 * certgen.c - building and signing certificates.
 *
 * Extensions follow RFC 5280 section 4.2.1: basicConstraints is critical
 * (4.2.1.9), keyUsage is critical (4.2.1.3), subjectKeyIdentifier is set on
 * every certificate (4.2.1.2) and authorityKeyIdentifier on all but the
 * self-signed (4.2.1.1).  A serial is positive and at most 20 octets
 * (4.1.2.2); ours are 16 random octets.
 */
#include "certgen_internal.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

struct tw_certgen {
    X509_NAME *subject;
    EVP_PKEY *pubkey;
    GENERAL_NAMES *sans;
    int purposes;
    int days;
    long long lifetime; /* seconds; 0: `days` decides */
    unsigned char serial[20];
    size_t serial_len;
};

tw_certgen *tw_certgen_new(tw_err *err)
{
    tw_certgen *g = twu_calloc(1, sizeof(*g));

    if (g == NULL || (g->sans = GENERAL_NAMES_new()) == NULL) {
        twu_free(g);
        twu_err_nomem(err);
        return NULL;
    }
    g->days = 365;
    return g;
}

void tw_certgen_free(tw_certgen *g)
{
    if (g == NULL)
        return;
    X509_NAME_free(g->subject);
    EVP_PKEY_free(g->pubkey);
    GENERAL_NAMES_free(g->sans);
    twu_free(g);
}

int tw_certgen_set_subject(tw_certgen *g, const tw_name *subject, tw_err *err)
{
    X509_NAME *copy = X509_NAME_dup(subject->name);

    if (copy == NULL)
        return twu_err_nomem(err);
    X509_NAME_free(g->subject);
    g->subject = copy;
    return 0;
}

/* A host name per RFC 1123 section 2.1, optionally with a leading "*."
 * wildcard label (RFC 6125 section 6.4.3). */
static int valid_hostname(const char *s)
{
    size_t len = strlen(s), label = 0;

    if (strncmp(s, "*.", 2) == 0) {
        s += 2;
        len -= 2;
    }
    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)s[i]) && !(s[i] == '-' && label > 0))
            return 0;
        label++;
    }
    return 1;
}

/* RFC 3986 section 3.1: scheme ":" and no spaces or control characters. */
static int valid_uri(const char *s)
{
    size_t i = 0;

    if (!isalpha((unsigned char)s[0]))
        return 0;
    while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' ||
           s[i] == '.')
        i++;
    if (s[i] != ':' || s[i + 1] == '\0')
        return 0;
    for (; s[i] != '\0'; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int valid_email(const char *s)
{
    const char *at = strrchr(s, '@');

    if (at == NULL || at == s || strchr(s, ' ') != NULL)
        return 0;
    for (const char *p = s; p < at; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return 0;
    return valid_hostname(at + 1) && at[1] != '*';
}

int tw_certgen_clear_sans(tw_certgen *g, tw_err *err)
{
    GENERAL_NAMES *none = GENERAL_NAMES_new();

    if (none == NULL)
        return twu_err_nomem(err);
    GENERAL_NAMES_free(g->sans);
    g->sans = none;
    return 0;
}

int tw_certgen_add_san(tw_certgen *g, enum tw_san_type type, const char *value,
                       tw_err *err)
{
    GENERAL_NAME *gn = NULL;
    unsigned char ip[16];
    int iplen = 0;

    switch (type) {
    case TW_SAN_DNS:
        if (!valid_hostname(value))
            return twu_err(err, TW_ERR_USAGE,
                           "'%s' is not a valid DNS name (letters, digits, "
                           "'-' and '.', optionally starting with '*.')",
                           value);
        gn = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_DNS, value, 0);
        break;
    case TW_SAN_IP:
        if (inet_pton(AF_INET, value, ip) == 1)
            iplen = 4;
        else if (inet_pton(AF_INET6, value, ip) == 1)
            iplen = 16;
        else
            return twu_err(err, TW_ERR_USAGE,
                           "'%s' is not an IPv4 or IPv6 address", value);
        if ((gn = GENERAL_NAME_new()) != NULL) {
            ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();

            if (os == NULL || ASN1_OCTET_STRING_set(os, ip, iplen) != 1) {
                ASN1_OCTET_STRING_free(os);
                GENERAL_NAME_free(gn);
                gn = NULL;
            } else {
                GENERAL_NAME_set0_value(gn, GEN_IPADD, os);
            }
        }
        break;
    case TW_SAN_URI:
        if (!valid_uri(value))
            return twu_err(err, TW_ERR_USAGE,
                           "'%s' is not a URI: it needs a scheme, as in "
                           "spiffe://abc.example/mail", value);
        gn = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_URI, value, 0);
        break;
    case TW_SAN_EMAIL:
        if (!valid_email(value))
            return twu_err(err, TW_ERR_USAGE,
                           "'%s' is not an email address (local@domain)",
                           value);
        gn = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_EMAIL, value, 0);
        break;
    default:
        return twu_err(err, TW_ERR_USAGE, "unknown SAN type %d", (int)type);
    }
    if (gn == NULL || sk_GENERAL_NAME_push(g->sans, gn) == 0) {
        GENERAL_NAME_free(gn);
        return twu_err_ssl(err, TW_ERR_INTERNAL, "cannot add SAN '%s'", value);
    }
    return 0;
}

size_t tw_certgen_san_count(const tw_certgen *g)
{
    return (size_t)sk_GENERAL_NAME_num(g->sans);
}

int tw_certgen_add_cn_as_dns(tw_certgen *g, tw_err *err)
{
    int idx = -1, last = -1;
    unsigned char *cn = NULL;
    int len, rc = 0;

    if (g->subject == NULL || sk_GENERAL_NAME_num(g->sans) > 0)
        return 0;
    while ((idx = X509_NAME_get_index_by_NID(g->subject, NID_commonName,
                                             idx)) >= 0)
        last = idx;
    if (last < 0)
        return 0;
    len = ASN1_STRING_to_UTF8(
        &cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(g->subject, last)));
    if (len > 0 && strlen((char *)cn) == (size_t)len &&
        valid_hostname((char *)cn) && strchr((char *)cn, '*') == NULL)
        rc = tw_certgen_add_san(g, TW_SAN_DNS, (char *)cn, err) < 0 ? -1 : 1;
    OPENSSL_free(cn);
    return rc;
}

int tw_certgen_set_purposes(tw_certgen *g, int purposes, tw_err *err)
{
    if (purposes == 0 ||
        (purposes & ~(TW_PURPOSE_SERVER | TW_PURPOSE_CLIENT | TW_PURPOSE_CA)))
        return twu_err(err, TW_ERR_USAGE, "no valid purpose given");
    if ((purposes & TW_PURPOSE_CA) && purposes != TW_PURPOSE_CA)
        return twu_err(err, TW_ERR_USAGE,
                       "a CA certificate cannot also be a server or client "
                       "certificate");
    g->purposes = purposes;
    return 0;
}

int tw_certgen_set_days(tw_certgen *g, int days, tw_err *err)
{
    if (days < 1 || days > 36500)
        return twu_err(err, TW_ERR_USAGE,
                       "validity of %d days is out of range: give 1 to 36500",
                       days);
    g->days = days;
    g->lifetime = 0;
    return 0;
}

int tw_certgen_set_lifetime(tw_certgen *g, long long seconds, tw_err *err)
{
    if (seconds < TW_LIFETIME_MIN || seconds > TW_LIFETIME_MAX)
        return twu_err(err, TW_ERR_USAGE,
                       "a lifetime of %lld seconds is out of range: give %d "
                       "to %lld", seconds, TW_LIFETIME_MIN,
                       (long long)TW_LIFETIME_MAX);
    g->lifetime = seconds;
    return 0;
}

int tw_certgen_set_serial(tw_certgen *g, const unsigned char *serial,
                          size_t len, tw_err *err)
{
    size_t zeros = 0;

    if (len < 8 || len > 20 || (serial[0] & 0x80))
        return twu_err(err, TW_ERR_USAGE,
                       "a serial must be 8 to 20 bytes with the high bit "
                       "clear (RFC 5280 section 4.1.2.2)");
    while (zeros < len && serial[zeros] == 0)
        zeros++;
    if (zeros == len)
        return twu_err(err, TW_ERR_USAGE,
                       "a serial must be a positive number, not zero (RFC "
                       "5280 section 4.1.2.2)");
    memcpy(g->serial, serial, len);
    g->serial_len = len;
    return 0;
}

int tw_certgen_set_public_key(tw_certgen *g, const tw_key *key, tw_err *err)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    int len = i2d_PUBKEY(key->pkey, &der);
    EVP_PKEY *pub;

    if (len <= 0)
        return twu_err_ssl(err, TW_ERR_INTERNAL, "cannot encode the public key");
    p = der;
    pub = d2i_PUBKEY(NULL, &p, len);
    OPENSSL_free(der);
    if (pub == NULL)
        return twu_err_ssl(err, TW_ERR_INTERNAL, "cannot copy the public key");
    EVP_PKEY_free(g->pubkey);
    g->pubkey = pub;
    return 0;
}

int tw__certgen_set_pkey(tw_certgen *g, EVP_PKEY *pub)
{
    EVP_PKEY_free(g->pubkey);
    g->pubkey = pub;
    return 0;
}

int tw__certgen_set_subject_name(tw_certgen *g, X509_NAME *name)
{
    X509_NAME_free(g->subject);
    g->subject = name;
    return 0;
}

int tw_serial_random(unsigned char serial[16], tw_err *err)
{
    if (RAND_bytes(serial, 16) != 1)
        return twu_err_ssl(err, TW_ERR_INTERNAL, "no randomness for a serial");
    /* Positive (high bit clear) and always 16 octets long (0x40 set), so
     * serials print with the same width; 126 bits of entropy remain. */
    serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);
    return 0;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value,
                   tw_err *err)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok;

    if (ext == NULL)
        return twu_err_ssl(err, TW_ERR_INTERNAL, "cannot build %s",
                           OBJ_nid2sn(nid));
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : twu_err_ssl(err, TW_ERR_INTERNAL, "cannot add %s",
                                     OBJ_nid2sn(nid));
}

/* The digest to sign with: none for EdDSA, SHA-384 for P-384, else SHA-256. */
const EVP_MD *tw__digest_for(const EVP_PKEY *key)
{
    char desc[32];

    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 ||
        EVP_PKEY_get_base_id(key) == EVP_PKEY_ED448)
        return NULL;
    tw__key_describe(key, desc, sizeof(desc));
    if (strcmp(desc, "EC P-384") == 0 || strcmp(desc, "EC P-521") == 0)
        return EVP_sha384();
    return EVP_sha256();
}

static int add_extensions(tw_certgen *g, X509 *x, X509 *issuer, tw_err *err)
{
    X509V3_CTX ctx;
    char ku[96], eku[64];
    int is_ca = g->purposes & TW_PURPOSE_CA;

    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    if (add_ext(x, &ctx, NID_basic_constraints,
                is_ca ? "critical,CA:TRUE,pathlen:0" : "critical,CA:FALSE",
                err) < 0)
        return -1;
    if (is_ca)
        snprintf(ku, sizeof(ku), "critical,keyCertSign,cRLSign,digitalSignature");
    else if ((g->purposes & TW_PURPOSE_SERVER) &&
             EVP_PKEY_get_base_id(g->pubkey) == EVP_PKEY_RSA)
        /* RSA key transport in TLS 1.2 (RFC 5246 7.4.7.1) needs it. */
        snprintf(ku, sizeof(ku), "critical,digitalSignature,keyEncipherment");
    else
        snprintf(ku, sizeof(ku), "critical,digitalSignature");
    if (add_ext(x, &ctx, NID_key_usage, ku, err) < 0)
        return -1;
    if (!is_ca) {
        snprintf(eku, sizeof(eku), "%s%s%s",
                 (g->purposes & TW_PURPOSE_SERVER) ? "serverAuth" : "",
                 (g->purposes & TW_PURPOSE_SERVER) &&
                         (g->purposes & TW_PURPOSE_CLIENT) ? "," : "",
                 (g->purposes & TW_PURPOSE_CLIENT) ? "clientAuth" : "");
        if (add_ext(x, &ctx, NID_ext_key_usage, eku, err) < 0)
            return -1;
    }
    if (add_ext(x, &ctx, NID_subject_key_identifier, "hash", err) < 0)
        return -1;
    if (issuer != NULL &&
        add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always", err) < 0)
        return -1;
    if (sk_GENERAL_NAME_num(g->sans) > 0 &&
        X509_add1_ext_i2d(x, NID_subject_alt_name, g->sans, 0,
                          X509V3_ADD_DEFAULT) != 1)
        return twu_err_ssl(err, TW_ERR_INTERNAL, "cannot add subjectAltName");
    return 0;
}

tw_cert *tw_certgen_sign(tw_certgen *g, const tw_cert *issuer,
                         const tw_key *issuer_key, tw_err *err)
{
    X509 *x = NULL, *iss = issuer ? issuer->x509 : NULL;
    ASN1_INTEGER *serial = NULL;
    BIGNUM *bn = NULL;
    tw_cert *cert;
    time_t now = time(NULL);
    /* A serial drawn here is this certificate's only: the template may be
     * signed again, and a CA never reuses a serial (RFC 5280 4.1.2.2). */
    unsigned char drawn[16];
    const unsigned char *serial_bytes = g->serial;
    size_t serial_len = g->serial_len;

    TWU_ENSURE(g->subject != NULL, err, TW_ERR_USAGE, "no subject given");
    TWU_ENSURE(g->pubkey != NULL, err, TW_ERR_USAGE, "no public key given");
    TWU_ENSURE(g->purposes != 0, err, TW_ERR_USAGE,
              "no purpose given: server, client or CA");
    if (iss != NULL) {
        TWU_ENSURE(X509_check_ca(iss) >= 1, err, TW_ERR_USAGE,
                  "the issuer certificate is not a CA certificate");
        TWU_ENSURE(X509_check_private_key(iss, issuer_key->pkey) == 1, err,
                  TW_ERR_USAGE,
                  "the CA key does not belong to the CA certificate");
    } else {
        TWU_ENSURE(EVP_PKEY_eq(g->pubkey, issuer_key->pkey) == 1, err,
                  TW_ERR_USAGE,
                  "a self-signed certificate must be signed by its own key");
    }
    if (serial_len == 0) {
        TWU_GUARD(tw_serial_random(drawn, err));
        serial_bytes = drawn;
        serial_len = sizeof(drawn);
    }
    TWU_ENSURE((x = X509_new()) != NULL, err, TW_ERR_INTERNAL, "out of memory");
    TWU_ENSURE((bn = BN_bin2bn(serial_bytes, (int)serial_len, NULL)) != NULL &&
                  (serial = BN_to_ASN1_INTEGER(bn, NULL)) != NULL,
              err, TW_ERR_INTERNAL, "out of memory");
    TWU_ENSURE(X509_set_version(x, X509_VERSION_3) == 1 &&
                  X509_set_serialNumber(x, serial) == 1 &&
                  X509_set_subject_name(x, g->subject) == 1 &&
                  X509_set_issuer_name(x, iss ? X509_get_subject_name(iss)
                                              : g->subject) == 1 &&
                  X509_set_pubkey(x, g->pubkey) == 1,
              err, TW_ERR_INTERNAL, "cannot fill in the certificate");
    /* Back-date a minute for clocks that run slightly behind; the
     * validity (days or lifetime) counts from now. */
    TWU_ENSURE(X509_time_adj_ex(X509_getm_notBefore(x), 0, -TW_CERTGEN_BACKDATE,
                                   &now) != NULL &&
                  X509_time_adj_ex(X509_getm_notAfter(x),
                                   g->lifetime ? 0 : g->days,
                                   (long)g->lifetime, &now) != NULL,
              err, TW_ERR_INTERNAL, "cannot set the validity");
    if (iss != NULL &&
        ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(iss)) > 0)
        TWU_ENSURE(X509_set1_notAfter(x, X509_get0_notAfter(iss)) == 1, err,
                  TW_ERR_INTERNAL, "cannot set the validity");
    TWU_GUARD(add_extensions(g, x, iss, err));
    if (X509_sign(x, issuer_key->pkey, tw__digest_for(issuer_key->pkey)) <= 0) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot sign the certificate");
        goto err;
    }
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    if ((cert = tw__cert_wrap(x, err)) == NULL)
        X509_free(x);
    return cert;
err:
    ERR_clear_error();
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    X509_free(x);
    return NULL;
}
