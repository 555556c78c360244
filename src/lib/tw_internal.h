/*
 * tw_internal.h - what libtwoway's files share and the public header hides.
 *
 * The structs behind the opaque public types and the library's own
 * helpers; the allocation wrapper, the error helpers and the GUARD/ENSURE
 * macros are src/util's (util.h).
 */
#ifndef TW_INTERNAL_H
#define TW_INTERNAL_H

#include "twoway.h"
#include "twoway_pki.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#define TW_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* The allocation wrapper (twu_malloc ... twu_alloc_fail_after) and the
 * growable buffer live in src/util. */
#include "util.h"

/* ------------------------------------------------------------- types */

struct tw_key {
    EVP_PKEY *pkey;
    char desc[32];
};

struct tw_name {
    X509_NAME *name;
    char *text;
};

struct tw_cert {
    X509 *x509;
};

/* Wrap an X509 (takes the reference). NULL on allocation failure. */
tw_cert *tw__cert_wrap(X509 *x509, tw_err *err);
tw_key *tw__key_wrap(EVP_PKEY *pkey, tw_err *err);
void tw__key_describe(const EVP_PKEY *pkey, char *buf, size_t len);

/* --------------------------------------------------------------- files */

/* The PEM of a key (PKCS#8, AES-256 when `passphrase`), in a secure-heap BIO
 * that wipes itself when freed. */
BIO *tw__key_pem(const tw_key *key, const char *passphrase, tw_err *err);

/* ---------------------------------------------------------------- names */

/* An X509_NAME in the `-subj` form, escaped; malloc'd (twu_free). */
char *tw__name_text(const X509_NAME *name);

/* ------------------------------------------------------------ verifying */

/* The reason class of an X509_V_ERR_* code. */
enum tw_reason tw__reason_from_x509(int x509_error);
/*
 * Fill `err` with TW_ERR_PEER_REJECTED, `reason` and a sentence about `cert`
 * (may be NULL): what failed, on which certificate, and what to do.
 * `role` says whose certificate it is ("the client's", "our", ...) and may be
 * NULL ("the").  `detail` (may be NULL) is OpenSSL's own words.
 */
int tw__reject(tw_err *err, enum tw_reason reason, X509 *cert,
               const char *role, const char *detail);

/* identity.c: identity of an X509 (not consumed). */
tw_identity *tw__identity_from_x509(X509 *x, tw_err *err);
/* What a CSR names: subject, SANs, the SHA-256 of its key (spki); no
 * issuer, serial, dates or fingerprint.  The CSR is not checked here. */
tw_identity *tw__identity_from_req(X509_REQ *req, tw_err *err);

/* trust.c: the store inside a tw_trust (not a new reference). */
X509_STORE *tw__trust_store(const tw_trust *t);
STACK_OF(X509) *tw__trust_cas(const tw_trust *t);
/* What tw__trust_check_crl learnt of a CRL. */
typedef struct tw__crl_info {
    uint64_t number;   /* its cRLNumber (0 when it has none) */
    int has_number;
    time_t this_update, next_update; /* next_update 0: none */
} tw__crl_info;
/* Check the bytes of one CRL (PEM or DER) as a CRL file is checked (signed
 * by a CA of `t`) and say what it is; `what` names it in the sentences. */
int tw__trust_check_crl(const tw_trust *t, const char *data, size_t len,
                        const char *what, tw__crl_info *info, tw_err *err);

#endif /* TW_INTERNAL_H */
