/* renew_internal.h - what the files of tw_renewal share: HTTP exchanges
 * with twoway-ca serve, the pair of files, one renewal, one CRL fetch. */
#ifndef TW_RENEW_INTERNAL_H
#define TW_RENEW_INTERNAL_H

#include "tw_internal.h"

#include <stdatomic.h>

/* ------------------------------------------------------- renew_http.c */

#define TW__HTTP_MAX_BODY (16 * 1024 * 1024) /* a large CRL */

typedef struct tw__http {
    const char *ca_file;              /* the only trust anchor */
    const char *cert_file, *key_file; /* our pair; NULL: none (enrolment) */
    const char *user_agent;
    const atomic_int *stop;           /* non-zero: abandon the exchange */
} tw__http;

typedef struct tw__http_reply {
    long status;
    twu_buf body;
    char etag[256];
} tw__http_reply;

/* One exchange: GET (post_json NULL) or POST of a JSON body.  0 with the
 * reply (any status), or -1 with `err` when there was none (network, TLS,
 * timeout: 10 s to connect, 60 s in all). */
int tw__http_exchange(const tw__http *h, const char *url,
                      const char *post_json, const char *if_none_match,
                      tw__http_reply *out, tw_err *err);
void tw__http_reply_free(tw__http_reply *r);
/* `url`, or `url` with `path` when it has no path of its own; checked to
 * be http(s) (https only when `https_only`).  malloc'd; NULL with `err`. */
char *tw__url_for(const char *url, const char *path, int https_only,
                  const char *option, tw_err *err);

/* ------------------------------------------------------- renew_pair.c */

/* Put a new pair in place so that a crash at any moment leaves a matching
 * one (see twoway_pki.h). */
int tw__pair_write(const char *cert_file, const char *key_file,
                   const char *cert_pem, const char *key_pem, size_t key_len,
                   tw_err *err);
/* Finish or clean up what a crash left; 1 when something was done (what
 * says it, for the log), 0 when nothing was left, -1 with `err`. */
int tw__pair_recover(const char *cert_file, const char *key_file,
                     char *what, size_t len, tw_err *err);
/* CERT.next / KEY.next. */
char *tw__pair_next(const char *path, tw_err *err);

/* ------------------------------------------------------- renew_cert.c */

/* The validity of the certificate in `cert_file`. */
int tw__cert_dates(const char *cert_file, time_t *not_before,
                   time_t *not_after, tw_err *err);
/* Enrol (token != NULL) or renew once: a new key, a CSR, the request,
 * the answer checked (it certifies our new key, the CA signed it), the
 * pair written.  `serial` receives the new certificate's serial. */
int tw__renew_cert(const tw_renewal_options *o, const atomic_int *stop,
                   const char *token, char *serial, size_t len, tw_err *err);

/* -------------------------------------------------------- renew_crl.c */

typedef struct tw__crl_state {
    char etag[256];
    tw__crl_info info; /* of the CRL kept */
    int have;          /* a CRL is kept */
} tw__crl_state;

/* What the kept CRL file is (have 0 when there is none or it is not one
 * of the CA's). */
void tw__crl_state_load(const tw_renewal_options *o, tw__crl_state *st);
/* Fetch once: 1 a newer CRL was written, 0 unchanged, -1 with `err`. */
int tw__crl_fetch(const tw_renewal_options *o, const atomic_int *stop,
                  tw__crl_state *st, tw_err *err);

#endif /* TW_RENEW_INTERNAL_H */
