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
#define TOKEN_LEN 43 /* 256 bits in base64url, no padding */

const char *const serve_refusal_names[REFUSED_KINDS] = {
    "token_unknown", "token_used", "token_expired", "no_certificate",
    "revoked", "expired", "unknown_ca", "bad_request"};

static serve_app *app_of(httpd_req *r)
{
    return httpd_req_app(r);
}

static serve_worker *worker_of(httpd_req *r)
{
    return httpd_req_worker_state(r);
}

/* {"error":..., "reason": code, "message": sentence}, counted. */
static void refuse(httpd_req *r, int status, enum serve_refusal kind,
                   const char *code, const char *fmt, ...) TWU_PRINTF(5, 6);

static void refuse(httpd_req *r, int status, enum serve_refusal kind,
                   const char *code, const char *fmt, ...)
{
    char message[1024], *text;
    json_t *o;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    atomic_fetch_add(&app_of(r)->refused[kind], 1);
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
static void failed(httpd_req *r, const tw_err *err)
{
    httpd_log(httpd_req_server(r), "error: %s", err->msg);
    refuse(r, err->cls == TW_ERR_BLOCKED ? 503 : 500, REFUSED_BAD_REQUEST,
           err->cls == TW_ERR_BLOCKED ? "busy" : "internal", "%s", err->msg);
}

/* The JSON object of the body, or NULL after a 400. */
static json_t *body_object(httpd_req *r)
{
    size_t len;
    const char *body = httpd_req_body(r, &len);
    json_error_t jerr;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        refuse(r, 400, REFUSED_BAD_REQUEST, "body",
               "the body is not a JSON object (%s)",
               o == NULL ? jerr.text : "another JSON value");
        return NULL;
    }
    return o;
}

/* A string member, or NULL after a 400 naming it. */
static const char *member(httpd_req *r, json_t *o, const char *name,
                          int required)
{
    json_t *v = json_object_get(o, name);

    if (v == NULL && !required)
        return NULL;
    if (!json_is_string(v)) {
        refuse(r, 400, REFUSED_BAD_REQUEST, name, "the body needs \"%s\" as "
               "a string", name);
        return NULL;
    }
    return json_string_value(v);
}

/* 201 {"certificate","chain","serial","not_after"}. */
static void issued(httpd_req *r, const tw_cert *cert)
{
    serve_app *app = app_of(r);
    tw_err err;
    tw_identity *id = tw_identity_from_cert(cert, &err);
    char *pem = tw_cert_to_pem(cert, &err), *chain = NULL, *text = NULL;
    char when[32];
    json_t *o = NULL;

    if (id == NULL || pem == NULL ||
        (chain = tw_cert_to_pem(app->ca.cert, &err)) == NULL) {
        failed(r, &err);
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
    char *pem = tw_cert_to_pem(app_of(r)->ca.cert, &err);

    if (pem == NULL) {
        failed(r, &err);
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
    serve_crl *crl = &app_of(r)->crl;
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

/* A token as `twoway-ca token` prints it: 43 base64url characters. */
static int token_well_formed(const char *t)
{
    size_t n = strlen(t);

    if (n != TOKEN_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z') ||
              (t[i] >= '0' && t[i] <= '9') || t[i] == '-' || t[i] == '_'))
            return 0;
    return 1;
}

static const char *const san_prefix[TW_SAN_TYPES] = {"DNS", "IP", "URI",
                                                      "email"};

/* Whether `id` holds exactly the names of `n` (any order).  When not,
 * `why` says the first difference. */
static int same_names(const tw_identity *id, const ca_names *n, char *why,
                      size_t len)
{
    size_t want[TW_SAN_TYPES] = {0};

    for (size_t i = 0; i < n->count; i++) {
        int found = 0;

        want[n->type[i]]++;
        for (size_t j = 0; j < tw_identity_san_count(id, n->type[i]); j++)
            found |= strcmp(tw_identity_san(id, n->type[i], j), n->value[i]) == 0;
        if (!found) {
            snprintf(why, len, "the CSR does not ask for %s:%s, which the "
                     "token is for", san_prefix[n->type[i]], n->value[i]);
            return 0;
        }
    }
    for (int t = 0; t < TW_SAN_TYPES; t++)
        for (size_t j = 0; j < tw_identity_san_count(id, t); j++) {
            int found = 0;

            for (size_t i = 0; i < n->count; i++)
                found |= n->type[i] == (enum tw_san_type)t &&
                         strcmp(tw_identity_san(id, t, j), n->value[i]) == 0;
            if (!found || tw_identity_san_count(id, t) != want[t]) {
                snprintf(why, len, "the CSR asks for %s:%s, which the token "
                         "does not allow", san_prefix[t],
                         tw_identity_san(id, t, j));
                return 0;
            }
        }
    return 1;
}

/* Whether the CSR asks for what the token is bound to: its subject, as the
 * `-subj` text of both parsed, and its names.  `why` says what differs. */
static int request_matches_token(const tw_identity *asked, const ca_token *t,
                                 char *why, size_t len)
{
    tw_err err;
    tw_name *name = tw_name_parse(t->subject, &err);
    char *storage = NULL;
    ca_names names;
    int ok = 0;

    if (name == NULL) {
        snprintf(why, len, "the token's subject cannot be read: %s", err.msg);
        return 0;
    }
    if (strcmp(tw_name_text(name), tw_identity_subject(asked)) != 0)
        snprintf(why, len, "the CSR asks for the subject %s, but the token is "
                 "for %s", tw_identity_subject(asked), tw_name_text(name));
    else if (ca_names_from_sans(&names, t->sans, &storage) < 0)
        snprintf(why, len, "the token's names cannot be read");
    else
        ok = same_names(asked, &names, why, len);
    twu_free(storage);
    tw_name_free(name);
    return ok;
}

static void enroll(httpd_req *r)
{
    static const enum serve_refusal refusal[] = {
        [CA_TOKEN_UNKNOWN] = REFUSED_TOKEN_UNKNOWN,
        [CA_TOKEN_USED] = REFUSED_TOKEN_USED,
        [CA_TOKEN_EXPIRED] = REFUSED_TOKEN_EXPIRED};
    static const char *const sentence[] = {
        [CA_TOKEN_UNKNOWN] = "this token is not one the CA gave out (mistyped, "
                             "or from another CA): ask for a new one",
        [CA_TOKEN_USED] = "this token was already used: a token gives one "
                          "certificate; ask for a new one",
        [CA_TOKEN_EXPIRED] = "this token has expired: ask for a new one"};
    serve_app *app = app_of(r);
    ca_dir *ca = &worker_of(r)->ca;
    json_t *o = body_object(r);
    const char *token, *csr;
    tw_certgen *g = NULL;
    tw_identity *asked = NULL;
    tw_cert *cert = NULL;
    ca_token t;
    char why[1024], by[32];
    tw_err err;
    int in_tx = 0, result;

    memset(&t, 0, sizeof(t));
    if (o == NULL || (token = member(r, o, "token", 1)) == NULL ||
        (csr = member(r, o, "csr", 1)) == NULL)
        goto done;
    if (!token_well_formed(token)) {
        refuse(r, 400, REFUSED_BAD_REQUEST, "token", "the token must be the "
               "%d characters twoway-ca token printed", TOKEN_LEN);
        goto done;
    }
    if ((g = tw_certgen_new(&err)) == NULL) {
        failed(r, &err);
        goto done;
    }
    if (tw_certgen_from_csr(g, csr, strlen(csr), "the csr field", &asked,
                            &err) < 0) {
        refuse(r, 400, REFUSED_BAD_REQUEST, "csr", "%s", err.msg);
        goto done;
    }
    if (cadb_begin(ca->db, ca->db_path, &err) < 0) {
        failed(r, &err);
        goto done;
    }
    in_tx = 1;
    if ((result = cadb_token_take(ca->db, ca->db_path, token, time(NULL), &t,
                                  &err)) < 0) {
        failed(r, &err);
        goto done;
    }
    if (result != CA_TOKEN_OK) {
        httpd_log(httpd_req_server(r), "refused peer=%s reason=%s (enroll)",
                  httpd_req_peer_addr(r), serve_refusal_names[refusal[result]]);
        refuse(r, 403, refusal[result], serve_refusal_names[refusal[result]],
               "%s", sentence[result]);
        goto done;
    }
    /* Rolled back below: a request that does not fit leaves the token
     * unused. */
    if (!request_matches_token(asked, &t, why, sizeof(why))) {
        refuse(r, 400, REFUSED_BAD_REQUEST, "csr", "%s", why);
        goto done;
    }
    /* As `issue` does: a server certificate named only by its CN gets the
     * CN as a DNS name too (modern clients ignore the CN). */
    if (tw_certgen_set_purposes(g, t.purposes, &err) < 0 ||
        ((t.purposes & TW_PURPOSE_SERVER) && tw_certgen_san_count(g) == 0 &&
         tw_certgen_add_cn_as_dns(g, &err) < 0) ||
        (cert = serve_sign(app, ca, g, t.lifetime, NULL, &err)) == NULL) {
        failed(r, &err);
        goto done;
    }
    {
        tw_identity *id = tw_identity_from_cert(cert, &err);

        if (id == NULL ||
            cadb_token_set_serial(ca->db, t.hash, tw_identity_serial(id),
                                  &err) < 0 ||
            cadb_commit(ca->db, ca->db_path, &err) < 0) {
            tw_identity_free(id);
            failed(r, &err);
            goto done;
        }
        tw_identity_free(id);
    }
    in_tx = 0;
    atomic_fetch_add(&app->enrolled, 1);
    snprintf(by, sizeof(by), "token:%.12s", t.hash);
    if (serve_audit(app, "enroll", cert, by, httpd_req_peer_addr(r), &err) < 0)
        httpd_log(httpd_req_server(r), "error: the certificate was issued "
                  "but not written to the audit log: %s", err.msg);
    issued(r, cert);
done:
    if (in_tx)
        cadb_rollback(ca->db);
    ca_token_clear(&t);
    tw_cert_free(cert);
    tw_identity_free(asked);
    tw_certgen_free(g);
    json_decref(o);
}

/* -------------------------------------------------------------- renew */

/* The refusal a verified-or-not peer gets, as a code of the API. */
static enum serve_refusal refusal_of(enum tw_reason reason)
{
    switch (reason) {
    case TW_REASON_NO_CERTIFICATE: return REFUSED_NO_CERTIFICATE;
    case TW_REASON_REVOKED: return REFUSED_REVOKED;
    case TW_REASON_EXPIRED: return REFUSED_EXPIRED;
    default: return REFUSED_UNKNOWN_CA;
    }
}

/* The template of a renewal: what the presented certificate says (subject,
 * names, purposes), with the key of the CSR already in `g`. */
static int keep_names(tw_certgen *g, const tw_identity *id, tw_err *err)
{
    tw_name *name = tw_name_parse(tw_identity_subject(id), err);
    int purposes = tw_identity_purposes(id) &
                   (TW_PURPOSE_SERVER | TW_PURPOSE_CLIENT);
    int rc = -1;

    if (name == NULL || tw_certgen_set_subject(g, name, err) < 0 ||
        tw_certgen_clear_sans(g, err) < 0 ||
        tw_certgen_set_purposes(g, purposes, err) < 0)
        goto done;
    for (int t = 0; t < TW_SAN_TYPES; t++)
        for (size_t i = 0; i < tw_identity_san_count(id, t); i++)
            if (tw_certgen_add_san(g, t, tw_identity_san(id, t, i), err) < 0)
                goto done;
    rc = 0;
done:
    tw_name_free(name);
    return rc;
}

static void renew(httpd_req *r)
{
    serve_app *app = app_of(r);
    ca_dir *ca = &worker_of(r)->ca;
    const tw_identity *id;
    tw_identity *asked = NULL;
    tw_certgen *g = NULL;
    tw_cert *cert = NULL;
    json_t *o = NULL;
    const char *csr, *life;
    long long lifetime = 0;
    time_t not_after;
    char by[64];
    tw_err err, why;
    int in_tx = 0, revoked = 0, found;

    if (!tw_conn_peer_verified(httpd_req_tls(r), &why)) {
        enum serve_refusal k = refusal_of(why.reason);

        httpd_log(httpd_req_server(r), "refused peer=%s reason=%s (renew): %s",
                  httpd_req_peer_addr(r), serve_refusal_names[k], why.msg);
        refuse(r, 403, k, serve_refusal_names[k], "%s", why.msg);
        return;
    }
    if ((id = httpd_req_peer(r)) == NULL) {
        httpd_reply_error(r, 500, "out of memory");
        return;
    }
    if ((o = body_object(r)) == NULL || (csr = member(r, o, "csr", 1)) == NULL)
        goto done;
    if (json_object_get(o, "lifetime") != NULL) {
        if ((life = member(r, o, "lifetime", 1)) == NULL)
            goto done;
        if (twu_parse_duration(life, 60, 366LL * 86400, &lifetime) < 0) {
            refuse(r, 400, REFUSED_BAD_REQUEST, "lifetime", "\"lifetime\" must "
                   "be a duration from 60s to 366d, e.g. 90s, 15m, 24h, 30d");
            goto done;
        }
    }
    if ((g = tw_certgen_new(&err)) == NULL) {
        failed(r, &err);
        goto done;
    }
    if (tw_certgen_from_csr(g, csr, strlen(csr), "the csr field", &asked,
                            &err) < 0) {
        refuse(r, 400, REFUSED_BAD_REQUEST, "csr", "%s", err.msg);
        goto done;
    }
    /* A renewal that keeps the key would keep whatever exposure the old
     * key had: every renewal makes a new key. */
    if (strcmp(tw_identity_spki(asked), tw_identity_spki(id)) == 0) {
        refuse(r, 400, REFUSED_BAD_REQUEST, "key_reused", "the CSR carries "
               "the key of the certificate being renewed: make a new key");
        goto done;
    }
    if (keep_names(g, id, &err) < 0) {
        failed(r, &err);
        goto done;
    }
    if (cadb_begin(ca->db, ca->db_path, &err) < 0) {
        failed(r, &err);
        goto done;
    }
    in_tx = 1;
    if ((found = cadb_cert_status(ca->db, tw_identity_serial(id), &revoked,
                                  &not_after, &err)) < 0) {
        failed(r, &err);
        goto done;
    }
    /* The CRL the TLS side checked may be a moment older than the index. */
    if (found == 0 || revoked) {
        enum serve_refusal k = found == 0 ? REFUSED_UNKNOWN_CA : REFUSED_REVOKED;

        refuse(r, 403, k, serve_refusal_names[k], found == 0
               ? "the certificate %s (serial %s) is not in this CA's index: "
                 "it was not issued here"
               : "the certificate %s (serial %s) is revoked: enrol again with "
                 "a new token", tw_identity_subject(id), tw_identity_serial(id));
        goto done;
    }
    if ((cert = serve_sign(app, ca, g, lifetime, tw_identity_serial(id),
                           &err)) == NULL ||
        cadb_commit(ca->db, ca->db_path, &err) < 0) {
        failed(r, &err);
        goto done;
    }
    in_tx = 0;
    atomic_fetch_add(&app->renewed, 1);
    snprintf(by, sizeof(by), "client:%s", tw_identity_serial(id));
    if (serve_audit(app, "renew", cert, by, httpd_req_peer_addr(r), &err) < 0)
        httpd_log(httpd_req_server(r), "error: the certificate was issued "
                  "but not written to the audit log: %s", err.msg);
    issued(r, cert);
done:
    if (in_tx)
        cadb_rollback(ca->db);
    tw_cert_free(cert);
    tw_identity_free(asked);
    tw_certgen_free(g);
    json_decref(o);
}

/* ------------------------------------------------------------- revoke */

/* Roles come from a policy; without one libtwoway grants every verified
 * certificate every role (invoice-server's seed behaviour), which must not
 * make every enrolled service an administrator of the CA. */
static int policy_given(httpd_req *r, const char *role)
{
    const serve_options *o = &app_of(r)->opt;

    if (o->nrules > 0 || o->policy != NULL)
        return 1;
    refuse(r, 403, REFUSED_BAD_REQUEST, "policy_denied", "no policy gives the "
           "'%s' role: start serve with --allow '%s CN=...' or --policy FILE",
           role, role);
    return 0;
}

static void revoke(httpd_req *r)
{
    serve_app *app = app_of(r);
    ca_dir *ca = &worker_of(r)->ca;
    const tw_identity *admin = httpd_req_peer(r);
    json_t *o = NULL, *answer = NULL;
    const char *serial, *reason_text = NULL;
    char by[64], subject[512] = "", *text = NULL;
    int reason = -1, rc;
    tw_err err;

    if (!policy_given(r, "admin") || (o = body_object(r)) == NULL ||
        (serial = member(r, o, "serial", 1)) == NULL)
        goto done;
    if (json_object_get(o, "reason") != NULL) {
        if ((reason_text = member(r, o, "reason", 1)) == NULL)
            goto done;
        if ((reason = tw_crl_reason_code(reason_text)) < 0) {
            refuse(r, 400, REFUSED_BAD_REQUEST, "reason", "\"%s\" is not a "
                   "CRL reason (keyCompromise, superseded, cessationOfOperation, "
                   "affiliationChanged, ...)", reason_text);
            goto done;
        }
    }
    rc = ca_revoke_serial_subject(ca, serial, reason, subject, sizeof(subject),
                                  &err);
    if (rc == CA_REVOKE_NOT_FOUND || rc == CA_REVOKE_ALREADY) {
        refuse(r, rc == CA_REVOKE_NOT_FOUND ? 404 : 409, REFUSED_BAD_REQUEST,
               rc == CA_REVOKE_NOT_FOUND ? "serial" : "already_revoked", "%s",
               err.msg);
        goto done;
    }
    if (rc < 0) {
        refuse(r, err.cls == TW_ERR_USAGE || err.cls == TW_ERR_INPUT ? 400 : 500,
               REFUSED_BAD_REQUEST, "serial", "%s", err.msg);
        goto done;
    }
    atomic_fetch_add(&app->revoked, 1);
    snprintf(by, sizeof(by), "client:%s", admin ? tw_identity_serial(admin) : "-");
    {
        ca_audit_entry e = {.action = "revoke", .serial = serial,
                            .subject = subject[0] ? subject : NULL, .by = by,
                            .peer = httpd_req_peer_addr(r)};

        if (ca_audit(app->audit_path, &e, &err) < 0)
            httpd_log(httpd_req_server(r), "error: the revocation was "
                      "recorded but not written to the audit log: %s", err.msg);
    }
    /* At once, not at the next re-signing: who fetches the CRL now must
     * see this serial. */
    if (serve_crl_publish(app, ca, "revocation", &err) < 0)
        httpd_log(httpd_req_server(r), "error: %s revoked, but the CRL could "
                  "not be re-signed: %s", serial, err.msg);
    pthread_mutex_lock(&app->crl.lock);
    answer = json_pack("{s:s, s:s, s:I}", "serial", serial, "reason",
                       reason_text ? reason_text : "unspecified", "crl_number",
                       (json_int_t)app->crl.number);
    pthread_mutex_unlock(&app->crl.lock);
    if (answer == NULL || (text = json_dumps(answer, JSON_COMPACT |
                                                     JSON_PRESERVE_ORDER)) == NULL)
        httpd_reply_error(r, 500, "out of memory");
    else
        httpd_reply(r, 200, "application/json", text, strlen(text), NULL);
done:
    free(text);
    json_decref(answer);
    json_decref(o);
}

/* ------------------------------------------------------------ metrics */

static void metrics(httpd_req *r)
{
    if (policy_given(r, "metrics"))
        httpd_serve_metrics(r);
}

/* Tokens neither used nor expired; -1 when the index cannot say. */
static long long tokens_pending(serve_app *app)
{
    sqlite3_stmt *st = NULL;
    long long n = -1;

    pthread_mutex_lock(&app->metrics_lock);
    if (sqlite3_prepare_v2(app->metrics_db, "SELECT count(*) FROM tokens "
                           "WHERE used_at IS NULL AND expires_at > ?1", -1,
                           &st, NULL) == SQLITE_OK &&
        sqlite3_bind_int64(st, 1, (sqlite3_int64)time(NULL)) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
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
    if (sqlite3_open_v2(app->ca.db_path, &w->ca.db, SQLITE_OPEN_READWRITE,
                        NULL) != SQLITE_OK)
        return twu_err(err, TW_ERR_IO, "cannot open %s: %s", app->ca.db_path,
                       sqlite3_errmsg(w->ca.db));
    return cadb_check(w->ca.db, app->ca.db_path, err);
}

void serve_worker_stop(void *state)
{
    serve_worker *w = state;

    if (w == NULL)
        return;
    sqlite3_close(w->ca.db);
    twu_free(w);
}

int serve_api_add(httpd *h)
{
    if (httpd_route(h, HTTP_GET, "/healthz", NULL, httpd_serve_health) < 0 ||
        httpd_route(h, HTTP_GET, "/v1/ca", NULL, get_ca) < 0 ||
        httpd_route(h, HTTP_GET, "/v1/crl", NULL, get_crl) < 0 ||
        httpd_route(h, HTTP_POST, "/v1/enroll", NULL, enroll) < 0 ||
        httpd_route(h, HTTP_POST, "/v1/renew", NULL, renew) < 0 ||
        httpd_route(h, HTTP_POST, "/v1/revoke", "admin", revoke) < 0 ||
        httpd_route(h, HTTP_GET, "/metrics", "metrics", metrics) < 0)
        return -1;
    return 0;
}
