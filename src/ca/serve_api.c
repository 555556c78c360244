/*
 * serve_api.c - the online CA's HTTP API (twoway-ca(1), SERVE).
 *
 *   GET  /v1/ca      the CA certificate, PEM; no client certificate needed
 *   GET  /v1/crl     the current CRL, PEM (DER with Accept:
 *                    application/pkix-crl), ETag and If-None-Match
 *   POST /v1/enroll  {"token","csr"}: a first certificate, once per token
 *   POST /v1/renew   {"csr"[,"lifetime"]} over mTLS with the current
 *                    certificate: a new one with the same names, new key
 *   POST /v1/revoke  {"serial","reason"}, role admin: revoke, re-sign CRL
 *   GET  /healthz, GET /metrics (role metrics)
 *
 * Refusals are 403 and bad bodies 400, as {"error": STATUS TEXT,
 * "reason": a code a program can branch on, "message": a sentence}.
 */
#include "serve.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PEM_TYPE "application/x-pem-file"

const char *const serve_refusal_names[REFUSED_KINDS] = {
    "token_unknown", "token_used", "token_expired", "no_certificate",
    "revoked", "expired", "unknown_ca", "bad_request"};

serve_app *serve_app_of(httpd_req *r)
{
    return httpd_req_app(r);
}

serve_worker *serve_worker_of(httpd_req *r)
{
    return httpd_req_worker_state(r);
}

void serve_refuse(httpd_req *r, int status, enum serve_refusal kind,
                   const char *code, const char *fmt, ...)
{
    char message[1024], *text;
    json_t *o;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    atomic_fetch_add(&serve_app_of(r)->refused[kind], 1);
    o = json_pack("{s:s, s:s, s:s}", "error",
                  status == 403 ? "Forbidden" : status == 400 ? "Bad Request"
                  : status == 404 ? "Not Found" : status == 409 ? "Conflict"
                  : status == 503 ? "Service Unavailable"
                                  : "Internal Server Error",
                  "reason", code, "message", message);
    text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (text == NULL) {
        httpd_reply_error(r, 500, "out of memory");
        return;
    }
    httpd_reply(r, status, "application/json", text, strlen(text), NULL);
    free(text);
}

/* An error of the index or the CA: busy is 503 (try again), the rest 500. */
void serve_failed(httpd_req *r, const tw_err *err)
{
    httpd_log(httpd_req_server(r), "error: %s", err->msg);
    serve_refuse(r, err->cls == TW_ERR_BLOCKED ? 503 : 500, REFUSED_BAD_REQUEST,
           err->cls == TW_ERR_BLOCKED ? "busy" : "internal", "%s", err->msg);
}

/* The JSON object of the body, or NULL after a 400. */
json_t *serve_body(httpd_req *r)
{
    size_t len;
    const char *body = httpd_req_body(r, &len);
    char why[256];
    json_t *o = serve_body_object(body, len, why, sizeof(why));

    if (o == NULL)
        serve_refuse(r, 400, REFUSED_BAD_REQUEST, "body", "%s", why);
    return o;
}

const char *serve_member(httpd_req *r, json_t *o, const char *name,
                         int required)
{
    const char *v;
    int rc = serve_body_string(o, name, &v);

    if (rc == 0 && !required)
        return NULL;
    if (rc <= 0) {
        serve_refuse(r, 400, REFUSED_BAD_REQUEST, name, "the body needs \"%s\" "
                     "as a string", name);
        return NULL;
    }
    return v;
}

void serve_issued(httpd_req *r, const tw_cert *cert)
{
    serve_app *app = serve_app_of(r);
    tw_err err;
    tw_identity *id = tw_identity_from_cert(cert, &err);
    char *pem = tw_cert_to_pem(cert, &err), *chain = NULL, *text = NULL;
    char when[32];
    json_t *o = NULL;

    if (id == NULL || pem == NULL ||
        (chain = tw_cert_to_pem(app->ca.cert, &err)) == NULL) {
        serve_failed(r, &err);
        goto done;
    }
    ca_time_text(tw_identity_not_after(id), when, sizeof(when));
    o = json_pack("{s:s, s:s, s:s, s:s}", "certificate", pem, "chain", chain,
                  "serial", tw_identity_serial(id), "not_after", when);
    if (o == NULL || (text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)) ==
                         NULL) {
        httpd_reply_error(r, 500, "out of memory");
        goto done;
    }
    httpd_reply(r, 201, "application/json", text, strlen(text), NULL);
done:
    free(text);
    json_decref(o);
    twu_free(chain);
    twu_free(pem);
    tw_identity_free(id);
}

/* ------------------------------------------------------------ ca, crl */

static void get_ca(httpd_req *r)
{
    tw_err err;
    char *pem = tw_cert_to_pem(serve_app_of(r)->ca.cert, &err);

    if (pem == NULL) {
        serve_failed(r, &err);
        return;
    }
    httpd_reply(r, 200, PEM_TYPE, pem, strlen(pem), NULL);
    twu_free(pem);
}

/* Whether the `len` bytes at s hold `needle`, ignoring case. */
static int contains_ci(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);

    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(s + i, needle, n) == 0)
            return 1;
    return 0;
}

/* Whether an If-None-Match list names `etag` (or is "*"). */
static int etag_matches(const char *list, size_t len, const char *etag)
{
    size_t elen = strlen(etag);

    for (size_t i = 0; i < len;) {
        while (i < len && (list[i] == ' ' || list[i] == ','))
            i++;
        if (i < len && list[i] == '*')
            return 1;
        if (i + elen <= len && memcmp(list + i, etag, elen) == 0)
            return 1;
        while (i < len && list[i] != ',')
            i++;
    }
    return 0;
}

static void get_crl(httpd_req *r)
{
    serve_crl *crl = &serve_app_of(r)->crl;
    size_t alen = 0, mlen = 0, len;
    const char *accept = httpd_req_header(r, "Accept", &alen);
    const char *match = httpd_req_header(r, "If-None-Match", &mlen);
    int der = accept != NULL &&
              contains_ci(accept, alen, "application/pkix-crl");
    char etag[64], headers[128], *copy;

    pthread_mutex_lock(&crl->lock);
    snprintf(etag, sizeof(etag), "\"crl-%llu-%s\"",
             (unsigned long long)crl->number, der ? "der" : "pem");
    len = der ? crl->der_len : crl->pem_len;
    copy = twu_malloc(len + 1);
    if (copy != NULL)
        memcpy(copy, der ? crl->der : crl->pem, len);
    pthread_mutex_unlock(&crl->lock);
    snprintf(headers, sizeof(headers), "ETag: %s\r\nCache-Control: no-cache\r\n",
             etag);
    if (copy == NULL)
        httpd_reply_error(r, 500, "out of memory");
    else if (match != NULL && etag_matches(match, mlen, etag))
        httpd_reply(r, 304, "", "", 0, headers);
    else
        httpd_reply(r, 200, der ? "application/pkix-crl" : PEM_TYPE, copy, len,
                    headers);
    twu_free(copy);
}

/* ------------------------------------------------------------- enroll */

/* ------------------------------------------------------------ metrics */

static void metrics(httpd_req *r)
{
    if (serve_policy_given(r, "metrics"))
        httpd_serve_metrics(r);
}

/* Tokens neither used nor expired; -1 when the index cannot say. */
static long long tokens_pending(serve_app *app)
{
    sql_stmt *st = NULL;
    long long n = -1;

    pthread_mutex_lock(&app->metrics_lock);
    if (sql_prepare(app->metrics_db, "SELECT count(*) FROM tokens "
                           "WHERE used_at IS NULL AND expires_at > ?1", &st) == SQL_OK &&
        sql_bind_int64(st, 1, (int64_t)time(NULL)) == SQL_OK &&
        sql_step(st) == SQL_ROW)
        n = sql_col_int64(st, 0);
    sql_finalize(st);
    pthread_mutex_unlock(&app->metrics_lock);
    return n;
}

void serve_metrics(void *data, twu_buf *b)
{
    serve_app *app = data;
    unsigned long long number;
    time_t next;

    pthread_mutex_lock(&app->crl.lock);
    number = app->crl.number;
    next = app->crl.next_update;
    pthread_mutex_unlock(&app->crl.lock);
    twu_buf_printf(b,
        "# HELP twoway_ca_issued_total Certificates serve issued (enrolments, renewals, its own).\n"
        "# TYPE twoway_ca_issued_total counter\n"
        "twoway_ca_issued_total %llu\n"
        "# HELP twoway_ca_enrolled_total Certificates issued for a token.\n"
        "# TYPE twoway_ca_enrolled_total counter\n"
        "twoway_ca_enrolled_total %llu\n"
        "# HELP twoway_ca_renewed_total Certificates renewed over mTLS.\n"
        "# TYPE twoway_ca_renewed_total counter\n"
        "twoway_ca_renewed_total %llu\n"
        "# HELP twoway_ca_revoked_total Certificates revoked through the API.\n"
        "# TYPE twoway_ca_revoked_total counter\n"
        "twoway_ca_revoked_total %llu\n"
        "# HELP twoway_ca_refused_total Enrolments and renewals refused, by reason.\n"
        "# TYPE twoway_ca_refused_total counter\n",
        atomic_load(&app->issued), atomic_load(&app->enrolled),
        atomic_load(&app->renewed), atomic_load(&app->revoked));
    for (int k = 0; k < REFUSED_KINDS; k++)
        twu_buf_printf(b, "twoway_ca_refused_total{reason=\"%s\"} %llu\n",
                       serve_refusal_names[k], atomic_load(&app->refused[k]));
    twu_buf_printf(b,
        "# HELP twoway_ca_tokens_pending Tokens neither used nor expired.\n"
        "# TYPE twoway_ca_tokens_pending gauge\n"
        "twoway_ca_tokens_pending %lld\n"
        "# HELP twoway_ca_crl_number The number of the CRL published.\n"
        "# TYPE twoway_ca_crl_number gauge\n"
        "twoway_ca_crl_number %llu\n"
        "# HELP twoway_ca_crl_next_update_timestamp_seconds Its nextUpdate, Unix time.\n"
        "# TYPE twoway_ca_crl_next_update_timestamp_seconds gauge\n"
        "twoway_ca_crl_next_update_timestamp_seconds %lld\n",
        tokens_pending(app), number, (long long)next);
}

/* ------------------------------------------------------------ workers */

int serve_worker_start(httpd_worker *hw, void *data, void **state, tw_err *err)
{
    serve_app *app = data;
    serve_worker *w = twu_calloc(1, sizeof(*w));

    (void)hw;
    *state = w;
    if (w == NULL)
        return twu_err_nomem(err);
    /* The CA's certificate and key are shared (read only); the index
     * connection is the worker's own. */
    w->ca = app->ca;
    w->ca.db = NULL;
    if ((w->ca.db = sql_open(app->ca.db_target, 0, err)) == NULL)
        return -1;
    return cadb_check(w->ca.db, app->ca.db_path, err);
}

void serve_worker_stop(void *state)
{
    serve_worker *w = state;

    if (w == NULL)
        return;
    sql_close(w->ca.db);
    twu_free(w);
}

int serve_api_add(httpd *h)
{
    if (httpd_route(h, HTTP_GET, "/healthz", NULL, httpd_serve_health) < 0 ||
        httpd_route(h, HTTP_GET, "/v1/ca", NULL, get_ca) < 0 ||
        httpd_route(h, HTTP_GET, "/v1/crl", NULL, get_crl) < 0 ||
        httpd_route(h, HTTP_POST, "/v1/enroll", NULL, serve_enroll) < 0 ||
        httpd_route(h, HTTP_POST, "/v1/renew", NULL, serve_renew) < 0 ||
        httpd_route(h, HTTP_POST, "/v1/revoke", "admin", serve_revoke) < 0 ||
        httpd_route(h, HTTP_GET, "/metrics", "metrics", metrics) < 0)
        return -1;
    return 0;
}
