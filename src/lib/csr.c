/*
 * csr.c - certificate signing requests, checked before anything is copied.
 *
 * A CSR is a request, not an instruction: its self-signature proves the
 * requester holds the key (RFC 2986 section 3), a request for CA:TRUE is
 * refused, and only the subject, the key and the names are taken from it.
 */
#define _GNU_SOURCE /* memmem */
#include "certgen_internal.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#define CSR_FILE_MAX (256 * 1024)

static X509_REQ *parse_req(const char *data, size_t len, const char *path,
                           tw_err *err)
{
    X509_REQ *req = NULL;
    BIO *bio;

    if (memmem(data, len, "-----BEGIN", 10) != NULL) {
        if ((bio = BIO_new_mem_buf(data, (int)len)) == NULL) {
            twu_err_nomem(err);
            return NULL;
        }
        req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
        BIO_free(bio);
    } else {
        const unsigned char *p = (const unsigned char *)data;

        req = d2i_X509_REQ(NULL, &p, (long)len);
    }
    if (req == NULL)
        twu_err_ssl(err, TW_ERR_INPUT,
                    "%s holds no readable certificate signing request "
                    "(garbage or truncated PEM?)", path);
    return req;
}

/* Refuse keys below OpenSSL security level 2 (112 bits). */
static int check_key_strength(EVP_PKEY *pub, const char *path, tw_err *err)
{
    char desc[32];

    tw__key_describe(pub, desc, sizeof(desc));
    if (EVP_PKEY_get_security_bits(pub) < 112)
        return twu_err(err, TW_ERR_INPUT,
                       "%s asks to certify a %s key, weaker than the 112-bit "
                       "minimum: make a new key (RSA 2048 or more, or EC)",
                       path, desc);
    return 0;
}

/* Add one requested name through the same checks as a name given on the
 * command line, so a CSR cannot slip in "*", spaces or an embedded NUL. */
static int add_requested_name(tw_certgen *g, const GENERAL_NAME *gn,
                              const char *path, tw_err *err)
{
    static const char *const kind[] = {"DNS name", "IP address", "URI",
                                       "email address"};
    char text[512], ip[INET6_ADDRSTRLEN];
    const ASN1_STRING *s = NULL;
    enum tw_san_type type;
    int len;

    switch (gn->type) {
    case GEN_DNS: type = TW_SAN_DNS; s = gn->d.dNSName; break;
    case GEN_URI: type = TW_SAN_URI; s = gn->d.uniformResourceIdentifier; break;
    case GEN_EMAIL: type = TW_SAN_EMAIL; s = gn->d.rfc822Name; break;
    case GEN_IPADD:
        type = TW_SAN_IP;
        len = ASN1_STRING_length(gn->d.iPAddress);
        if ((len != 4 && len != 16) ||
            inet_ntop(len == 4 ? AF_INET : AF_INET6,
                      ASN1_STRING_get0_data(gn->d.iPAddress), ip,
                      sizeof(ip)) == NULL)
            return twu_err(err, TW_ERR_INPUT,
                           "%s asks for a malformed IP address name", path);
        snprintf(text, sizeof(text), "%s", ip);
        break;
    default:
        return 0; /* only names: other forms are dropped */
    }
    if (s != NULL) {
        len = ASN1_STRING_length(s);
        if (len <= 0 || (size_t)len >= sizeof(text) ||
            memchr(ASN1_STRING_get0_data(s), '\0', (size_t)len) != NULL)
            return twu_err(err, TW_ERR_INPUT,
                           "%s asks for a malformed %s (empty, too long or "
                           "with a NUL byte)", path, kind[type]);
        memcpy(text, ASN1_STRING_get0_data(s), (size_t)len);
        text[len] = '\0';
    }
    if (tw_certgen_add_san(g, type, text, err) < 0) {
        char why[TW_ERR_MSG_MAX];

        snprintf(why, sizeof(why), "%s", err ? err->msg : "");
        return twu_err(err, TW_ERR_INPUT, "%s asks for a name that cannot be "
                       "certified: %s", path, why);
    }
    return 0;
}

static int copy_extensions(tw_certgen *g, X509_REQ *req, const char *path,
                           tw_err *err)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    BASIC_CONSTRAINTS *bc = NULL;
    GENERAL_NAMES *sans = NULL;
    int rc = -1, crit = 0;

    if (exts == NULL)
        return 0;
    bc = X509V3_get_d2i(exts, NID_basic_constraints, &crit, NULL);
    if (bc != NULL && bc->ca) {
        twu_err(err, TW_ERR_INPUT,
                "%s asks for a CA certificate (basicConstraints CA:TRUE): "
                "twoway-ca signs only end-entity certificates from CSRs", path);
        goto done;
    }
    sans = X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL);
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);

        if (add_requested_name(g, gn, path, err) < 0)
            goto done;
    }
    rc = 0;
done:
    BASIC_CONSTRAINTS_free(bc);
    GENERAL_NAMES_free(sans);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

/* Check the request in data and fill `g` from it; `what` names it in the
 * sentences (a file, or "the csr field"). */
static int from_csr(tw_certgen *g, const char *data, size_t len,
                    const char *what, int subject_optional, tw_err *err)
{
    X509_REQ *req = NULL;
    EVP_PKEY *pub = NULL;
    X509_NAME *subject = NULL;
    int rc = -1;

    if ((req = parse_req(data, len, what, err)) == NULL)
        goto done;
    if ((pub = X509_REQ_get_pubkey(req)) == NULL) {
        twu_err_ssl(err, TW_ERR_INPUT, "%s has no usable public key", what);
        goto done;
    }
    if (X509_REQ_verify(req, pub) != 1) {
        twu_err_ssl(err, TW_ERR_INPUT,
                    "the signature of %s does not verify: the request was "
                    "altered or not made with its key; make a new CSR", what);
        goto done;
    }
    if (check_key_strength(pub, what, err) < 0)
        goto done;
    if (X509_NAME_entry_count(X509_REQ_get_subject_name(req)) == 0 &&
        !subject_optional) {
        twu_err(err, TW_ERR_INPUT, "%s has an empty subject", what);
        goto done;
    }
    if (copy_extensions(g, req, what, err) < 0)
        goto done;
    if (X509_NAME_entry_count(X509_REQ_get_subject_name(req)) > 0) {
        if ((subject = X509_NAME_dup(X509_REQ_get_subject_name(req))) == NULL) {
            twu_err_nomem(err);
            goto done;
        }
        tw__certgen_set_subject_name(g, subject);
    }
    tw__certgen_set_pkey(g, pub);
    pub = NULL;
    rc = 0;
done:
    ERR_clear_error();
    EVP_PKEY_free(pub);
    X509_REQ_free(req);
    return rc;
}

int tw_certgen_from_csr_file(tw_certgen *g, const char *path, tw_err *err)
{
    size_t len;
    char *data = twu_read_file(path, CSR_FILE_MAX, &len, err);
    int rc;

    if (data == NULL)
        return -1;
    rc = from_csr(g, data, len, path, 0, err);
    twu_free(data);
    return rc;
}

int tw_certgen_from_csr(tw_certgen *g, const char *data, size_t len,
                        const char *what, tw_identity **asked, tw_err *err)
{
    X509_REQ *req;

    if (len > CSR_FILE_MAX)
        return twu_err(err, TW_ERR_INPUT, "%s is larger than %d bytes",
                       what, CSR_FILE_MAX);
    if (from_csr(g, data, len, what, 1, err) < 0)
        return -1;
    if (asked == NULL)
        return 0;
    /* Checked and copied: now say what it asked for, read the same way. */
    if ((req = parse_req(data, len, what, err)) == NULL)
        return -1;
    *asked = tw__identity_from_req(req, err);
    X509_REQ_free(req);
    return *asked != NULL ? 0 : -1;
}

/* ------------------------------------------------------------ making one */

char *tw_csr_pem(const tw_key *key, const tw_name *subject, tw_err *err)
{
    X509_REQ *req = X509_REQ_new();
    BIO *bio = NULL;
    char *data, *out = NULL;
    long len;

    if (req == NULL || (bio = BIO_new(BIO_s_mem())) == NULL) {
        twu_err_nomem(err);
        goto done;
    }
    /* PKCS#10 version 1 is the value 0; the key proves itself by signing. */
    if (X509_REQ_set_version(req, 0) != 1 ||
        (subject != NULL && X509_REQ_set_subject_name(req, subject->name) != 1) ||
        X509_REQ_set_pubkey(req, key->pkey) != 1 ||
        X509_REQ_sign(req, key->pkey, tw__digest_for(key->pkey)) <= 0 ||
        PEM_write_bio_X509_REQ(bio, req) != 1) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot make a certificate signing "
                    "request with the %s key", key->desc);
        goto done;
    }
    len = BIO_get_mem_data(bio, &data);
    if ((out = twu_strndup(data, (size_t)len)) == NULL)
        twu_err_nomem(err);
done:
    BIO_free(bio);
    X509_REQ_free(req);
    return out;
}
