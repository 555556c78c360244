/*
 * tw_internal.h - what libtwoway's files share and the public header hides.
 *
 * The structs behind the opaque public types, the allocation wrapper, the
 * error helpers and the GUARD/ENSURE macros (after s2n-tls's safety macros).
 */
#ifndef TW_INTERNAL_H
#define TW_INTERNAL_H

#include "twoway.h"
#include "twoway_pki.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#define TW_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* The allocation wrapper (tw__malloc ... tw__alloc_fail_after) and the
 * growable buffer live in src/util. */
#include "util.h"

/* --------------------------------------------------------------- errors */

/* Set err (when not NULL); returns -1 so callers can `return tw__err(...)`. */
int tw__err(tw_err *err, enum tw_error_class cls, const char *fmt, ...)
    TW_PRINTF(3, 4);
/* Same, with a reason. */
int tw__err_reason(tw_err *err, enum tw_error_class cls, enum tw_reason reason,
                   const char *fmt, ...) TW_PRINTF(4, 5);
/* Same, appending ": " and OpenSSL's newest queued error, then clearing the
 * queue. */
int tw__err_ssl(tw_err *err, enum tw_error_class cls, const char *fmt, ...)
    TW_PRINTF(3, 4);
/* Out of memory. */
int tw__err_nomem(tw_err *err);

#define TW_GUARD(x)                                                           \
    do {                                                                      \
        if ((x) < 0)                                                          \
            goto err;                                                         \
    } while (0)
#define TW_GUARD_PTR(x)                                                       \
    do {                                                                      \
        if ((x) == NULL)                                                      \
            goto err;                                                         \
    } while (0)
/* Check a condition; when false, set the error and jump to err. */
#define TW_ENSURE(cond, ...)                                                  \
    do {                                                                      \
        if (!(cond)) {                                                        \
            tw__err(__VA_ARGS__);                                             \
            goto err;                                                         \
        }                                                                     \
    } while (0)

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

/* Read a whole file (at most `max` bytes, else TW_ERR_INPUT). The buffer is
 * NUL-terminated; *len excludes the NUL.  Free with tw__free (or
 * tw__free_secret for key material). */
char *tw__read_file(const char *path, size_t max, size_t *len, tw_err *err);
/* Wipe then free. */
void tw__free_secret(void *p, size_t len);
/* The secret in the first line of `path`, given by the command-line
 * `option` (named in the errors, e.g. "--passphrase-file"); free with
 * tw__free_passphrase.  NULL with *err set when unreadable or empty. */
#define TW__PASSPHRASE_MAX 1024
char *tw__read_passphrase_file(const char *path, const char *option,
                               tw_err *err);
void tw__free_passphrase(char *pass);
/* Write `data` to `path` atomically with `mode`: temp file created with that
 * mode in the same directory, write, fsync, rename, fsync the directory. */
#define TW__WRITE_NO_REPLACE 0x1 /* fail (EEXIST) rather than replace */
int tw__write_file_atomic(const char *path, const void *data, size_t len,
                          unsigned mode, int flags, tw_err *err);
/* Two-phase writing, for callers that must record something between
 * "the data is safely on disk" and "the file appears under its name". */
typedef struct tw__staged {
    char *tmp, *dir;
    const char *path; /* not owned: must outlive the stage */
    int flags;
} tw__staged;
int tw__stage_file(tw__staged *s, const char *path, const void *data,
                   size_t len, unsigned mode, int flags, tw_err *err);
/* Give the staged file its name (and fsync the directory); frees the stage
 * whatever happens. */
int tw__stage_commit(tw__staged *s, tw_err *err);
/* Remove the staged data; safe to call twice. */
void tw__stage_abort(tw__staged *s);
/* The PEM of a key (PKCS#8, AES-256 when `passphrase`), in a secure-heap BIO
 * that wipes itself when freed. */
BIO *tw__key_pem(const tw_key *key, const char *passphrase, tw_err *err);
/* The directory part of `path` ("." when none), malloc'd. */
char *tw__dirname(const char *path);

/* ---------------------------------------------------------------- names */

/* An X509_NAME in the `-subj` form, escaped; malloc'd (tw__free). */
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

/* trust.c: the store inside a tw_trust (not a new reference). */
X509_STORE *tw__trust_store(const tw_trust *t);
STACK_OF(X509) *tw__trust_cas(const tw_trust *t);

/* parse.c: a decimal number that is all of `text` and within [min, max];
 * 0, or -1. */
int tw__parse_long(const char *text, long min, long max, long *out);

/* Hex of a byte string into `out` (2*len+1 bytes), upper or lower case. */
void tw__hex(const unsigned char *in, size_t len, char *out, int upper);

#endif /* TW_INTERNAL_H */
