/*
 * serve.h - twoway-ca serve, the online CA: what its files share.
 *
 *   cmd_serve.c    the command line, start, run, stop
 *   serve_cert.c   the server's own certificate, issued and renewed by itself
 *   serve_crl.c    the CRL it publishes: made at start, re-signed at half its
 *                  validity and after every revocation
 *   serve_api.c    the HTTP API: routes, answers, GET /v1/ca and /v1/crl,
 *                  metrics, the workers' index connections
 *   serve_issue.c  POST /v1/enroll, /v1/renew and /v1/revoke
 *   serve_body.c   reading request bodies (JSON, tokens, CSR against token)
 *   serve_sign.c   signing and recording inside a transaction; the audit
 *
 * It runs on the server core (src/httpd): the same loop, limits, logs,
 * metrics, reload and drain as invoice-server.  Several serve processes and
 * CLI commands may share one CA directory: the index's transactions decide.
 */
#ifndef TW_CA_SERVE_H
#define TW_CA_SERVE_H

#include "ca.h"
#include "httpd.h"

#include <jansson.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define SERVE_MAX_RULES 256
#define SERVE_MAX_DNS 16
#define SERVE_CRL_VALIDITY (24 * 3600)  /* nextUpdate of the CRLs it makes */

typedef struct serve_options {
    const char *ca, *listen, *cert, *key, *passfile, *policy, *access_log;
    const char *audit_log;
    const char *rules[SERVE_MAX_RULES];
    const char *dns[SERVE_MAX_DNS];
    int nrules, ndns, workers;
    long long default_lifetime, max_lifetime; /* seconds */
    int log_level, log_json; /* --log-level, --log-format */
    twu_conf conf; /* --config FILE: its strings live here */
} serve_options;

/* Refusals the API counts, by reason (metrics). */
enum serve_refusal {
    REFUSED_TOKEN_UNKNOWN, REFUSED_TOKEN_USED, REFUSED_TOKEN_EXPIRED,
    REFUSED_NO_CERTIFICATE, REFUSED_REVOKED, REFUSED_EXPIRED,
    REFUSED_UNKNOWN_CA, REFUSED_BAD_REQUEST, REFUSED_KINDS
};
extern const char *const serve_refusal_names[REFUSED_KINDS];

/* The CRL being published; replaced whole under the lock, so a reader
 * copies what it needs and never sees half of one. */
typedef struct serve_crl {
    pthread_mutex_t lock;
    char *pem, *der;
    size_t pem_len, der_len;
    uint64_t number;
    time_t this_update, next_update;
    time_t retry_at; /* main thread: after a failed re-sign */
} serve_crl;

typedef struct serve_app {
    serve_options opt;
    int argc;                /* the command line, read again on reload */
    char **argv;
    ca_dir ca;               /* cert, key; its db is the main thread's */
    char *audit_path;
    char *own_cert, *own_key; /* files of the server's own certificate */
    int own_issued;          /* serve made them (and renews them) */
    time_t own_not_before, own_not_after, own_retry_at;
    char *crl_path;          /* DIR/crl.pem, what the TLS side checks */
    serve_crl crl;
    httpd *h;
    atomic_ullong issued, enrolled, renewed, revoked;
    atomic_ullong refused[REFUSED_KINDS];
    pthread_mutex_t metrics_lock; /* metrics_db */
    sql_db *metrics_db;
} serve_app;

/* One per worker: its own connection to the index. */
typedef struct serve_worker {
    ca_dir ca; /* cert and key borrowed from the app; db its own */
} serve_worker;

/* serve_cert.c */
/* Issue the server's own certificate into DIR/serve/ (DNS localhost and the
 * host name, or --dns), unless --cert/--key were given.  0, or -1 with a
 * message. */
int serve_cert_init(serve_app *app);
/* Renew it at two thirds of its lifetime (main thread, from the tick). */
void serve_cert_tick(serve_app *app);

/* serve_crl.c */
int serve_crl_init(serve_app *app);
/* Make a new CRL on `ca` (a worker's or the app's), publish it in memory
 * and in DIR/crl.pem, and reload the TLS side so revoked clients are
 * refused.  0, or -1 with `err`. */
int serve_crl_publish(serve_app *app, ca_dir *ca, const char *why,
                      tw_err *err);
/* Re-sign when half its validity has passed (main thread). */
void serve_crl_tick(serve_app *app);
void serve_crl_free(serve_crl *crl);

/* serve_api.c */
int serve_api_add(httpd *h);
serve_app *serve_app_of(httpd_req *r);
serve_worker *serve_worker_of(httpd_req *r);
/* {"error": STATUS TEXT, "reason": code, "message": sentence}, counted
 * under `kind`. */
void serve_refuse(httpd_req *r, int status, enum serve_refusal kind,
                  const char *code, const char *fmt, ...) TWU_PRINTF(5, 6);
/* An error of the index or the CA: busy is 503 (try again), the rest 500. */
void serve_failed(httpd_req *r, const tw_err *err);
/* The body's JSON object, or NULL after a 400. */
json_t *serve_body(httpd_req *r);
/* A string member of it, or NULL after a 400 naming it (or, when not
 * `required`, NULL for an absent one). */
const char *serve_member(httpd_req *r, json_t *o, const char *name,
                         int required);
/* 201 {"certificate","chain","serial","not_after"}. */
void serve_issued(httpd_req *r, const tw_cert *cert);
/* Whether a policy was given; a 403 saying so when not (without one
 * libtwoway grants every verified certificate every role). */
int serve_policy_given(httpd_req *r, const char *role);

/* serve_issue.c */
void serve_enroll(httpd_req *r);
void serve_renew(httpd_req *r);
void serve_revoke(httpd_req *r);

/* serve_body.c: reading request bodies, apart from the server. */
/* The JSON object of `body`; NULL with `why` when it is not one. */
json_t *serve_body_object(const char *body, size_t len, char *why, size_t n);
/* The string member `name` in *out: 1, 0 when absent, -1 when it is not a
 * string (or holds a NUL). */
int serve_body_string(json_t *o, const char *name, const char **out);
/* A token as `twoway-ca token` prints it: 43 base64url characters. */
int serve_token_well_formed(const char *t);
/* Whether a CSR asks for nothing but its key (no subject, no names). */
int serve_request_is_key_only(const tw_identity *asked);
/* Give the template the token's subject and names. */
int serve_apply_token(tw_certgen *g, const ca_token *t, tw_err *err);
/* Whether a CSR (`asked`, what it names) asks for exactly the subject and
 * names of token `t`; when not, `why` says the first difference. */
int serve_request_matches_token(const tw_identity *asked, const ca_token *t,
                                char *why, size_t len);
int serve_worker_start(httpd_worker *hw, void *app, void **state, tw_err *err);
void serve_worker_stop(void *state);
void serve_metrics(void *app, twu_buf *out);

/* serve_sign.c: sign `g` (subject, names, purposes and public key set) for
 * `lifetime` seconds inside a transaction on `ca` that the caller opened,
 * record it (and what it replaces), and return the certificate.  NULL with
 * `err`. */
tw_cert *serve_sign(serve_app *app, ca_dir *ca, tw_certgen *g,
                    long long lifetime, const char *replaces, tw_err *err);
/* One audit line (also in the index's audit table when it is in
 * PostgreSQL: `db`, the caller's connection); -1 with `err` when it could
 * not be written. */
int serve_audit(serve_app *app, sql_db *db, const char *action,
                const tw_cert *cert, const char *by, const char *peer,
                tw_err *err);

#endif
