/*
 * identity.c - what a certificate says about its holder, parsed once.
 *
 * Policy decisions are made on these parsed fields, never on the subject as
 * a string: a CN whose text is "O=MailServer" is a CN, not an O.  Names with
 * an embedded NUL are dropped (a classic spoof: "good.example\0.evil").
 */
#include "tw_internal.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <string.h>

struct attr {
    int nid;
    char *value;
};

struct tw_identity {
    char *subject, *issuer;
    char serial[2 * 20 + 2 + 8];
    char fingerprint[65], spki[65];
    struct attr *attrs;
    size_t nattrs;
    char **sans[TW_SAN_TYPES];
    size_t nsans[TW_SAN_TYPES];
    const char *spiffe_id; /* points into sans[TW_SAN_URI] */
    int purposes, version;
    time_t not_before, not_after;
    char key_type[32], sig_alg[64];
};

void tw_identity_free(tw_identity *id)
{
    if (id == NULL)
        return;
    twu_free(id->subject);
    twu_free(id->issuer);
    for (size_t i = 0; i < id->nattrs; i++)
        twu_free(id->attrs[i].value);
    twu_free(id->attrs);
    for (int t = 0; t < TW_SAN_TYPES; t++) {
        for (size_t i = 0; i < id->nsans[t]; i++)
            twu_free(id->sans[t][i]);
        twu_free(id->sans[t]);
    }
    twu_free(id);
}

static int push_san(tw_identity *id, enum tw_san_type t, const char *value)
{
    char **n = twu_realloc(id->sans[t], (id->nsans[t] + 1) * sizeof(*n));

    if (n == NULL)
        return -1;
    id->sans[t] = n;
    if ((n[id->nsans[t]] = twu_strdup(value)) == NULL)
        return -1;
    id->nsans[t]++;
    return 0;
}

/* An IA5String name as C text in *out, or *out = NULL when it holds a NUL
 * or a control character (which could forge a name or a log line).
 * -1 when out of memory: a name must not vanish for want of memory. */
static int ia5_text(const ASN1_STRING *s, char **out)
{
    const unsigned char *d = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);

    *out = NULL;
    for (int i = 0; i < len; i++)
        if (d[i] < 0x20 || d[i] >= 0x7f)
            return 0;
    *out = twu_strndup((const char *)d, (size_t)len);
    return *out != NULL ? 0 : -1;
}

/* The names of `gens` (consumed). */
static int read_sans(tw_identity *id, GENERAL_NAMES *gens)
{
    int rc = -1;

    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
        char ip[INET6_ADDRSTRLEN], *text = NULL;
        const ASN1_STRING *name = NULL;
        enum tw_san_type t;

        switch (gn->type) {
        case GEN_DNS: t = TW_SAN_DNS; name = gn->d.dNSName; break;
        case GEN_URI: t = TW_SAN_URI; name = gn->d.uniformResourceIdentifier; break;
        case GEN_EMAIL: t = TW_SAN_EMAIL; name = gn->d.rfc822Name; break;
        case GEN_IPADD: {
            int len = ASN1_STRING_length(gn->d.iPAddress);
            const unsigned char *d = ASN1_STRING_get0_data(gn->d.iPAddress);

            t = TW_SAN_IP;
            if (((len == 4 && inet_ntop(AF_INET, d, ip, sizeof(ip))) ||
                 (len == 16 && inet_ntop(AF_INET6, d, ip, sizeof(ip)))) &&
                (text = twu_strdup(ip)) == NULL)
                goto done;
            break;
        }
        default:
            continue;
        }
        if (name != NULL && ia5_text(name, &text) < 0)
            goto done;
        if (text == NULL)
            continue; /* unreadable or spoofing name: not an identity */
        if (push_san(id, t, text) < 0) {
            twu_free(text);
            goto done;
        }
        twu_free(text);
    }
    rc = 0;
done:
    GENERAL_NAMES_free(gens);
    return rc;
}

static int read_attrs(tw_identity *id, const X509_NAME *name)
{
    int count = X509_NAME_entry_count(name);

    if (count <= 0)
        return 0;
    if ((id->attrs = twu_calloc((size_t)count, sizeof(*id->attrs))) == NULL)
        return -1;
    for (int i = 0; i < count; i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));

        if (len < 0)
            continue;
        /* A value with a NUL inside cannot be compared as text: drop it. */
        if (memchr(utf8, '\0', (size_t)len) != NULL) {
            OPENSSL_free(utf8);
            continue;
        }
        id->attrs[id->nattrs].nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
        id->attrs[id->nattrs].value = twu_strndup((char *)utf8, (size_t)len);
        OPENSSL_free(utf8);
        if (id->attrs[id->nattrs].value == NULL)
            return -1;
        id->nattrs++;
    }
    return 0;
}

static time_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

static int read_digests(tw_identity *id, X509 *x)
{
    unsigned char md[EVP_MAX_MD_SIZE], *spki = NULL;
    unsigned int mdlen;
    int len;

    if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1)
        return -1;
    twu_hex(md, mdlen, id->fingerprint, 0);
    if ((len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki)) <= 0)
        return -1;
    if (EVP_Digest(spki, (size_t)len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        OPENSSL_free(spki);
        return -1;
    }
    OPENSSL_free(spki);
    twu_hex(md, mdlen, id->spki, 0);
    return 0;
}

static void read_serial(tw_identity *id, X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;

    snprintf(id->serial, sizeof(id->serial), "%s", hex ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
}

static int read_purposes(X509 *x)
{
    uint32_t flags = X509_get_extension_flags(x);
    int p = 0;

    if (flags & EXFLAG_XKUSAGE) {
        uint32_t xku = X509_get_extended_key_usage(x);

        if (xku & XKU_SSL_SERVER)
            p |= TW_PURPOSE_SERVER;
        if (xku & XKU_SSL_CLIENT)
            p |= TW_PURPOSE_CLIENT;
    } else if (!(flags & EXFLAG_CA)) {
        p |= TW_PURPOSE_SERVER | TW_PURPOSE_CLIENT;
    }
    if (flags & EXFLAG_CA)
        p |= TW_PURPOSE_CA;
    return p;
}

static tw_identity *from_x509(X509 *x, tw_err *err)
{
    tw_identity *id = twu_calloc(1, sizeof(*id));
    EVP_PKEY *pub;
    int sig_nid;

    if (id == NULL)
        goto nomem;
    if ((id->subject = tw__name_text(X509_get_subject_name(x))) == NULL ||
        (id->issuer = tw__name_text(X509_get_issuer_name(x))) == NULL ||
        read_attrs(id, X509_get_subject_name(x)) < 0 ||
        read_sans(id, X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL)) < 0)
        goto nomem;
    if (read_digests(id, x) < 0) {
        twu_err_ssl(err, TW_ERR_INPUT, "cannot hash the certificate");
        goto err;
    }
    read_serial(id, x);
    for (size_t i = 0; i < id->nsans[TW_SAN_URI]; i++)
        if (strncmp(id->sans[TW_SAN_URI][i], "spiffe://", 9) == 0) {
            id->spiffe_id = id->sans[TW_SAN_URI][i];
            break;
        }
    id->purposes = read_purposes(x);
    id->version = (int)X509_get_version(x) + 1;
    id->not_before = asn1_time(X509_get0_notBefore(x));
    id->not_after = asn1_time(X509_get0_notAfter(x));
    if ((pub = X509_get0_pubkey(x)) != NULL)
        tw__key_describe(pub, id->key_type, sizeof(id->key_type));
    else
        snprintf(id->key_type, sizeof(id->key_type), "unknown");
    sig_nid = X509_get_signature_nid(x);
    snprintf(id->sig_alg, sizeof(id->sig_alg), "%s",
             sig_nid != NID_undef ? OBJ_nid2ln(sig_nid) : "unknown");
    ERR_clear_error();
    return id;
nomem:
    twu_err_nomem(err);
err:
    ERR_clear_error();
    tw_identity_free(id);
    return NULL;
}

tw_identity *tw_identity_from_cert(const tw_cert *cert, tw_err *err)
{
    return from_x509(cert->x509, err);
}

tw_identity *tw_identity_from_der(const void *der, size_t len, tw_err *err)
{
    const unsigned char *p = der;
    X509 *x;
    tw_identity *id;

    if (len > INT32_MAX ||
        (x = d2i_X509(NULL, &p, (long)len)) == NULL) {
        twu_err_ssl(err, TW_ERR_INPUT, "not a DER certificate");
        return NULL;
    }
    id = from_x509(x, err);
    X509_free(x);
    return id;
}

const char *tw_identity_subject(const tw_identity *id) { return id->subject; }
const char *tw_identity_issuer(const tw_identity *id) { return id->issuer; }
const char *tw_identity_serial(const tw_identity *id) { return id->serial; }
const char *tw_identity_fingerprint(const tw_identity *id) { return id->fingerprint; }
const char *tw_identity_spki(const tw_identity *id) { return id->spki; }
const char *tw_identity_spiffe_id(const tw_identity *id) { return id->spiffe_id; }
int tw_identity_purposes(const tw_identity *id) { return id->purposes; }
int tw_identity_version(const tw_identity *id) { return id->version; }
time_t tw_identity_not_before(const tw_identity *id) { return id->not_before; }
time_t tw_identity_not_after(const tw_identity *id) { return id->not_after; }
const char *tw_identity_key_type(const tw_identity *id) { return id->key_type; }
const char *tw_identity_signature_algorithm(const tw_identity *id) { return id->sig_alg; }

size_t tw_identity_field_count(const tw_identity *id, const char *field)
{
    int nid = OBJ_txt2nid(field);
    size_t n = 0;

    for (size_t i = 0; nid != NID_undef && i < id->nattrs; i++)
        if (id->attrs[i].nid == nid)
            n++;
    return n;
}

const char *tw_identity_field(const tw_identity *id, const char *field,
                              size_t idx)
{
    int nid = OBJ_txt2nid(field);

    for (size_t i = 0; nid != NID_undef && i < id->nattrs; i++)
        if (id->attrs[i].nid == nid && idx-- == 0)
            return id->attrs[i].value;
    return NULL;
}

size_t tw_identity_san_count(const tw_identity *id, enum tw_san_type type)
{
    return (unsigned)type < TW_SAN_TYPES ? id->nsans[type] : 0;
}

const char *tw_identity_san(const tw_identity *id, enum tw_san_type type,
                            size_t idx)
{
    if ((unsigned)type >= TW_SAN_TYPES || idx >= id->nsans[type])
        return NULL;
    return id->sans[type][idx];
}

/* The SubjectPublicKeyInfo digest of a CSR's key, as read_digests makes
 * a certificate's. */
static int req_spki(tw_identity *id, EVP_PKEY *pub)
{
    unsigned char md[EVP_MAX_MD_SIZE], *spki = NULL;
    unsigned int mdlen;
    int len = i2d_PUBKEY(pub, &spki), ok;

    if (len <= 0)
        return -1;
    ok = EVP_Digest(spki, (size_t)len, md, &mdlen, EVP_sha256(), NULL) == 1;
    OPENSSL_free(spki);
    if (!ok)
        return -1;
    twu_hex(md, mdlen, id->spki, 0);
    return 0;
}

/* The names a CSR asks for (its extensionRequest), consumed by read_sans. */
static GENERAL_NAMES *req_sans(X509_REQ *req)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *gens = NULL;

    if (exts != NULL)
        gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return gens;
}

tw_identity *tw__identity_from_req(X509_REQ *req, tw_err *err)
{
    tw_identity *id = twu_calloc(1, sizeof(*id));
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);

    if (id == NULL || (id->subject = tw__name_text(X509_REQ_get_subject_name(req))) == NULL ||
        (id->issuer = twu_strdup("")) == NULL ||
        read_attrs(id, X509_REQ_get_subject_name(req)) < 0 ||
        read_sans(id, req_sans(req)) < 0)
        goto nomem;
    if (pub == NULL || req_spki(id, pub) < 0) {
        twu_err_ssl(err, TW_ERR_INPUT, "the request has no usable public key");
        goto err;
    }
    tw__key_describe(pub, id->key_type, sizeof(id->key_type));
    snprintf(id->sig_alg, sizeof(id->sig_alg), "%s",
             OBJ_nid2ln(X509_REQ_get_signature_nid(req)));
    ERR_clear_error();
    return id;
nomem:
    twu_err_nomem(err);
err:
    ERR_clear_error();
    tw_identity_free(id);
    return NULL;
}

tw_identity *tw__identity_from_x509(X509 *x, tw_err *err)
{
    return from_x509(x, err);
}
