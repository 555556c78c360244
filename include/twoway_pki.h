/*
 * twoway_pki.h - libtwoway's issuance calls: keys, subjects, certificates
 * made and written, CSRs, CRLs.
 *
 * A program that only serves or connects needs twoway.h alone; a program
 * that runs a CA (twoway-ca) or checks a key against its certificate
 * includes this header too.  It is the same library and follows the same
 * conventions (twoway.h): 0 / -1 or a pointer / NULL, the failure in the
 * tw_err passed in, objects freed with the matching tw_*_free (NULL is
 * accepted).
 *
 * Threads: a tw_key and a tw_name never change once made: several threads
 * may read them and sign with them at the same time, and they are freed
 * once no thread uses them.  A tw_certgen belongs to one thread at a time.
 * The other calls keep no state between calls and may run in any thread.
 */
#ifndef TWOWAY_PKI_H
#define TWOWAY_PKI_H

#include "twoway.h"

#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ keys */

typedef struct tw_key tw_key;

/*
 * Generate a private key.  `type` is one of "ec-p256" (the default when
 * NULL), "ec-p384", "ed25519", "rsa-2048", "rsa-3072", "rsa-4096".
 */
TW_API tw_key *tw_key_generate(const char *type, tw_err *err) TW_MUST_CHECK;

/* Whether `type` names a key type tw_key_generate knows. */
TW_API int tw_key_type_valid(const char *type);

/*
 * Read a PEM private key.  `passphrase` (may be NULL) decrypts an encrypted
 * key; a wrong or missing passphrase is TW_ERR_USAGE naming the file.
 */
TW_API tw_key *tw_key_load_file(const char *path, const char *passphrase,
                                tw_err *err) TW_MUST_CHECK;

/* Whether the PEM key file at `path` is encrypted (1), plain (0), or -1. */
TW_API int tw_key_file_is_encrypted(const char *path, tw_err *err) TW_MUST_CHECK;

/*
 * Write the key as PKCS#8 PEM to `path`, mode 0600, atomically: a temporary
 * file in the same directory, fsync, rename.  With a non-NULL `passphrase`
 * the key is encrypted with AES-256-CBC (PBKDF2).  The file is never
 * readable by others, even for an instant, and an existing file at `path` is
 * never replaced (TW_ERR_IO: remove it first if that is what you mean).
 */
TW_API int tw_key_write_file(const tw_key *key, const char *path,
                             const char *passphrase, tw_err *err) TW_MUST_CHECK;

/*
 * The key as PEM (PKCS#8; encrypted with AES-256-CBC when `passphrase` is
 * given), NUL-terminated, `len` bytes without the NUL, for callers that put
 * the file in place themselves (a staged replace).  Free it with
 * tw_key_pem_free, which wipes it.  NULL with `err` set.
 */
TW_API char *tw_key_pem(const tw_key *key, const char *passphrase,
                        size_t *len, tw_err *err) TW_MUST_CHECK;
TW_API void tw_key_pem_free(char *pem, size_t len);

/* A short description: "EC P-256", "RSA 2048", "Ed25519". */
TW_API const char *tw_key_describe(const tw_key *key);

TW_API void tw_key_free(tw_key *key);

/* ------------------------------------------------------------ subjects */

typedef struct tw_name tw_name;

/*
 * Parse a distinguished name in the `openssl -subj` form:
 * "/O=ABC Inc./CN=localhost".  A backslash escapes the next character
 * ("/O=A\/B" is O "A/B").  Attribute names are OpenSSL short or long names
 * (C, ST, L, O, OU, CN, emailAddress, ...).  Values are UTF-8, at most 64
 * bytes for CN/O/OU (RFC 5280 upper bounds).  Errors name the offending part.
 */
TW_API tw_name *tw_name_parse(const char *text, tw_err *err) TW_MUST_CHECK;

/* The name in the `-subj` form, escaped so that tw_name_parse reads it back. */
TW_API const char *tw_name_text(const tw_name *name);

TW_API void tw_name_free(tw_name *name);

/* ------------------------------------------- certificates made and written */

/* Write the certificate as PEM, atomically (mode 0644). */
TW_API int tw_cert_write_file(const tw_cert *cert, const char *path,
                              tw_err *err) TW_MUST_CHECK;

/* The certificate as PEM text.  The caller frees it with free(). */
TW_API char *tw_cert_to_pem(const tw_cert *cert, tw_err *err) TW_MUST_CHECK;

/* Whether the public key of `cert` belongs to `key`. */
TW_API int tw_cert_matches_key(const tw_cert *cert, const tw_key *key);

/*
 * A certificate template: what to certify.  Build it, then sign it with
 * tw_certgen_sign.  RFC 5280 extensions are set from the purposes:
 * basicConstraints (critical), keyUsage (critical), extendedKeyUsage,
 * subjectKeyIdentifier, authorityKeyIdentifier and subjectAltName.
 */
typedef struct tw_certgen tw_certgen;

/* Seconds tw_certgen_sign back-dates notBefore by, for clocks that run
 * slightly behind: a certificate's lifetime as asked is notAfter - notBefore
 * - TW_CERTGEN_BACKDATE. */
#define TW_CERTGEN_BACKDATE 60

TW_API tw_certgen *tw_certgen_new(tw_err *err) TW_MUST_CHECK;
/* The subject; copied. */
TW_API int tw_certgen_set_subject(tw_certgen *g, const tw_name *subject,
                                  tw_err *err) TW_MUST_CHECK;
/* Add a SAN; the value is checked (a host name, an IPv4/IPv6 address, a URI
 * with a scheme, an email address) and copied. */
TW_API int tw_certgen_add_san(tw_certgen *g, enum tw_san_type type,
                              const char *value, tw_err *err) TW_MUST_CHECK;
/* Number of SANs of every type added so far. */
TW_API size_t tw_certgen_san_count(const tw_certgen *g);
/* Forget the SANs added so far (a renewal keeps the names of the
 * certificate it replaces, not those of its CSR). */
TW_API int tw_certgen_clear_sans(tw_certgen *g, tw_err *err) TW_MUST_CHECK;
/* When no SAN was added and the subject's last CN is a host name, add it as
 * a DNS SAN: clients match host names against SANs only (RFC 6125 section
 * 6.4.4).  Returns 1 when added, 0 when not, -1 on error. */
TW_API int tw_certgen_add_cn_as_dns(tw_certgen *g, tw_err *err) TW_MUST_CHECK;
/* TW_PURPOSE_* flags; CA excludes SERVER and CLIENT. */
TW_API int tw_certgen_set_purposes(tw_certgen *g, int purposes,
                                   tw_err *err) TW_MUST_CHECK;
/* Validity: from one minute ago, for `days` days (1..36500) from now.
 * Replaces a lifetime set before. */
TW_API int tw_certgen_set_days(tw_certgen *g, int days,
                               tw_err *err) TW_MUST_CHECK;
/* The bounds of tw_certgen_set_lifetime, in seconds. */
#define TW_LIFETIME_MIN 60
#define TW_LIFETIME_MAX (36500LL * 86400)
/*
 * Validity in seconds, for short-lived certificates: notBefore one minute
 * ago (as tw_certgen_set_days), notAfter `seconds` from now, so the
 * certificate is valid `seconds` + 60 s in all and `seconds` from the
 * moment it is signed.  TW_LIFETIME_MIN..TW_LIFETIME_MAX, else
 * TW_ERR_USAGE.  Replaces the days set before (and set_days replaces it);
 * the issuer's notAfter still clips it.
 */
TW_API int tw_certgen_set_lifetime(tw_certgen *g, long long seconds,
                                   tw_err *err) TW_MUST_CHECK;
/* Serial number: 8..20 bytes, big-endian, high bit clear.  When never set,
 * tw_certgen_sign draws 16 random bytes. */
TW_API int tw_certgen_set_serial(tw_certgen *g, const unsigned char *serial,
                                 size_t len, tw_err *err) TW_MUST_CHECK;
/* The public key to certify: the public half of `key` (not kept). */
TW_API int tw_certgen_set_public_key(tw_certgen *g, const tw_key *key,
                                     tw_err *err) TW_MUST_CHECK;
/*
 * Sign.  `issuer` is the CA certificate, or NULL for a self-signed one (then
 * `issuer_key` must be the key of the certified public key).  The issuer
 * must be a CA; the certificate may not outlive it (its not-after is
 * clipped to the issuer's).
 */
TW_API tw_cert *tw_certgen_sign(tw_certgen *g, const tw_cert *issuer,
                                const tw_key *issuer_key,
                                tw_err *err) TW_MUST_CHECK;
TW_API void tw_certgen_free(tw_certgen *g);

/* Random serial number: 16 bytes, high bit clear, never zero. */
TW_API int tw_serial_random(unsigned char serial[16], tw_err *err) TW_MUST_CHECK;

/* ------------------------------------------------------------------ CSRs */

/* Fill a template from a CSR: checks the CSR's self-signature, refuses a
 * CSR asking for CA:TRUE, and copies the subject, the public key and the
 * SANs the CSR carries (names only; no other extension is copied). */
TW_API int tw_certgen_from_csr_file(tw_certgen *g, const char *csr_path,
                                    tw_err *err) TW_MUST_CHECK;
/* The same from a CSR in memory (PEM or DER, at most 256 KiB); `what`
 * names it in the error sentences ("the csr field").  Here an empty
 * subject is accepted: such a CSR only proves possession of its key (as
 * the requests of tw_renewal do), and the template keeps no subject, for
 * the caller to set from what it certifies.  When `asked` is not
 * NULL it receives what the CSR names, as an identity (subject, fields,
 * SANs, and tw_identity_spki: the SHA-256 of its public key; issuer and
 * serial empty, no dates), for a caller that must compare the request
 * with what it may certify; free it with tw_identity_free. */
TW_API int tw_certgen_from_csr(tw_certgen *g, const char *data, size_t len,
                               const char *what, tw_identity **asked,
                               tw_err *err) TW_MUST_CHECK;

/* A CSR for `key`, signed with it, as PEM (free it with free()).
 * `subject` may be NULL: a request that only proves possession of the key,
 * for a CA that knows what to certify (twoway-ca serve's enrol and renew). */
TW_API char *tw_csr_pem(const tw_key *key, const tw_name *subject,
                        tw_err *err) TW_MUST_CHECK;

/* ----------------------------------------------------------------- CRLs */

/* One revoked certificate, for tw_crl_write_file. */
typedef struct tw_revoked {
    const char *serial_hex; /* upper- or lower-case hex */
    time_t revoked_at;
    int reason;             /* RFC 5280 CRLReason code, -1 for none */
} tw_revoked;

/* CRLReason names ("keyCompromise", "superseded", ...) to codes; -1 if
 * unknown.  "unspecified" is 0. */
TW_API int tw_crl_reason_code(const char *name);
TW_API const char *tw_crl_reason_name(int code);

/*
 * Build a v2 CRL signed by `ca`/`ca_key` listing `revoked`, valid from now
 * for `days` days, with CRL number `number` and an authorityKeyIdentifier;
 * written as PEM to `path` atomically.
 */
TW_API int tw_crl_write_file(const tw_cert *ca, const tw_key *ca_key,
                             const tw_revoked *revoked, size_t count,
                             uint64_t number, int days, const char *path,
                             tw_err *err) TW_MUST_CHECK;

/* ---------------------------------------- certificates that renew themselves */

/*
 * A service's key and certificate kept current by twoway-ca serve.  The
 * first start enrols with a one-time token (a new key, a CSR that only
 * proves possession of it, POST /v1/enroll); then a thread renews the
 * certificate at two thirds of its lifetime, with +/-10 % random jitter so
 * that a fleet does not renew at once (a new key each time, POST /v1/renew
 * over mutual TLS with the current pair), and fetches the CRL.
 *
 * Failed renewals are retried with exponential backoff, from 1 s to a
 * twentieth of the lifetime; the certificate in place is used while it is
 * valid.  A fetched CRL is used only when one of the CA file's CAs signed
 * it and its CRL number is not lower than the one kept; it is fetched
 * again when half its validity has passed and at least every
 * `crl_refresh` seconds (If-None-Match).
 *
 * Files: the key (0600) and the certificate are written as KEY.next and
 * CERT.next, then renamed key first.  A crash at any moment leaves a
 * matching pair: KEY with CERT, or KEY with CERT.next, which
 * tw_renewal_prepare (run at every start) puts in place.  The program is
 * told through `on_change` and reloads its TLS configuration from the
 * files; the CRL is written atomically to `crl_file`.
 */
typedef struct tw_renewal tw_renewal;

#define TW_RENEWAL_CERT 0x1 /* a new key and certificate are in place */
#define TW_RENEWAL_CRL 0x2  /* a newer CRL is in place */

typedef struct tw_renewal_options {
    const char *cert_file, *key_file; /* the service's pair */
    /* The CA: the only trust anchor for the CA server, the CRL's signer. */
    const char *ca_file;
    /* twoway-ca serve's URL ("https://ca.example:9443"; a URL with a path is
     * used as it is): enrol there when cert_file or key_file is missing. */
    const char *enroll_url;
    const char *token_file;  /* the token `twoway-ca token` printed */
    const char *renew_url;   /* renew there; NULL: never */
    /* Fetch the CRL from there (https or http; serve's /v1/crl when the URL
     * has no path) into crl_file; NULL: never. */
    const char *crl_url;
    const char *crl_file;
    long crl_refresh;        /* at most this many seconds between fetches; 0: 300 */
    const char *key_type;    /* of each new key; NULL: "ec-p256" */
    const char *user_agent;  /* the program's name, in requests and logs */
    /* Called on the renewal thread once files are in place (what: the
     * TW_RENEWAL_* bits), and with each line for the program's log (no
     * secret is ever in one). */
    void (*on_change)(void *arg, int what);
    void (*on_log)(void *arg, const char *line);
    void *arg;
} tw_renewal_options;

/*
 * What a program runs before it loads its files: put back together a pair
 * that a crash left between its two renames, enrol when enroll_url is set
 * and the certificate or the key is missing, and fetch the CRL when
 * crl_url is set and crl_file is missing (blocking, at most about a minute
 * each).  1 when it enrolled, 0 when the files were there, -1 with `err`.
 */
TW_API int tw_renewal_prepare(const tw_renewal_options *o,
                              tw_err *err) TW_MUST_CHECK;

/*
 * Renew now when the certificate is due (two thirds of its lifetime have
 * passed), and fetch the CRL once when crl_url is set: for a program that
 * runs once (mail-server fetch).  0, or -1 with `err` (the files in place
 * stay usable).
 */
TW_API int tw_renewal_once(const tw_renewal_options *o,
                           tw_err *err) TW_MUST_CHECK;

/* Start the thread (renew_url and/or crl_url).  The options are copied. */
TW_API tw_renewal *tw_renewal_start(const tw_renewal_options *o,
                                    tw_err *err) TW_MUST_CHECK;

/* The counters and dates a program shows in its metrics. */
typedef struct tw_renewal_stats {
    unsigned long renewals_ok, renewals_failed;
    unsigned long crl_fetches_ok;        /* a newer CRL was put in place */
    unsigned long crl_fetches_unchanged; /* 304, or the same CRL again */
    unsigned long crl_fetches_failed;    /* unreachable, or refused */
    time_t not_before, not_after;        /* of the certificate in place */
    time_t next_renewal;                 /* 0: renewal is off */
    time_t crl_next_update;              /* of the CRL kept; 0: none */
    int expiring; /* less than a tenth of the lifetime left, not renewed */
} tw_renewal_stats;

/* Safe from any thread while the renewal runs. */
TW_API void tw_renewal_get_stats(tw_renewal *r, tw_renewal_stats *s);

/* Stop the thread (an exchange in progress is abandoned) and free. */
TW_API void tw_renewal_free(tw_renewal *r);

#ifdef __cplusplus
}
#endif

#endif /* TWOWAY_PKI_H */
