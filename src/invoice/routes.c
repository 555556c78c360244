/*
 * routes.c - the Invoice Server's HTTP API (see PRODUCT.md and
 * invoice-server(8)): which role each route needs, and the answers.  The
 * server core (src/httpd) reads the requests, checks the roles and writes
 * the answers.
 */
#include "app.h"
#include "util.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define JSON "application/json"

static inv_worker *worker(const httpd_req *r)
{
    return httpd_req_worker_state(r);
}

/*
 * A read's answer comes on the worker's thread, either inside the db_*
 * call (SQLite, or a 503 while PostgreSQL is down) or later from the
 * worker's queue, after the route suspended its request.  `w->in_read` is
 * set across the call, so the answer knows whether to resume.
 */
static void reply_result(httpd_req *r, const store_result *res)
{
    const char *body = res->body.data ? res->body.data : "";

    if (res->status == 200)
        httpd_reply(r, 200, JSON, body, res->body.len, NULL);
    else
        httpd_reply_error(r, res->status, res->body.data ? body : "error");
}

/* Answer, and resume the request when it was waiting. */
static void read_done(void *ctx, store_result *res)
{
    httpd_req *r = ctx;

    reply_result(r, res);
    if (!worker(r)->in_read)
        httpd_req_resume(r);
}

static void newest_done(void *ctx, store_result *res)
{
    httpd_req *r = ctx;
    inv_worker *w = worker(r);

    /* Keep a copy of what was the newest when the read was asked: a POST
     * committed since then bumped the generation, so the copy is used
     * only while the generation is still the one it was read at. */
    if (res->status == 200) {
        w->newest.len = 0;
        if (twu_buf_append(&w->newest, res->body.data, res->body.len) == 0)
            w->newest_gen = res->gen;
        else
            twu_buf_free(&w->newest);
    }
    read_done(ctx, res);
}

/* Around a read: read_returned(r, db_...(...)) after read_started(r)
 * suspends the request when its answer comes later. */
static void read_started(httpd_req *r)
{
    worker(r)->in_read = 1;
}

static void read_returned(httpd_req *r, int later)
{
    worker(r)->in_read = 0;
    if (later)
        httpd_req_suspend(r);
}

static void get_newest(httpd_req *r)
{
    inv_worker *w = worker(r);
    unsigned gen;

    if (db_newest_generation(w->db, &gen) && w->newest.len > 0 &&
        gen == w->newest_gen) {
        httpd_reply(r, 200, JSON, w->newest.data, w->newest.len, NULL);
        return;
    }
    read_started(r);
    read_returned(r, db_newest(w->reads, newest_done, r));
}

/* Remember a found invoice in the worker's cache (invoices never change). */
static void invoice_done(void *ctx, store_result *res)
{
    httpd_req *r = ctx;
    inv_worker *w = worker(r);

    if (res->status == 200 && w->cache != NULL) {
        size_t len;
        const char *number = httpd_req_path_rest(r, &len);
        char num[INV_NUMBER_MAX + 1];

        if (len > 0 && len <= INV_NUMBER_MAX) {
            memcpy(num, number, len);
            num[len] = '\0';
            inv_cache_put(w->cache, num, res->body.data, res->body.len);
        }
    }
    read_done(ctx, res);
}

static void get_invoice(httpd_req *r)
{
    inv_worker *w = worker(r);
    char num[INV_NUMBER_MAX + 1];
    size_t len;
    const char *number = httpd_req_path_rest(r, &len);

    if (len == 0 || len > INV_NUMBER_MAX) {
        httpd_reply_error(r, 404, "no such invoice");
        return;
    }
    memcpy(num, number, len);
    num[len] = '\0';
    if (w->cache != NULL) {
        const char *json;
        size_t n;

        if (inv_cache_get(w->cache, num, &json, &n)) {
            httpd_reply(r, 200, JSON, json, n, NULL);
            return;
        }
    }
    read_started(r);
    read_returned(r, db_get(w->reads, num, invoice_done, r));
}

static void list_invoices(httpd_req *r)
{
    char after[64] = "", limit_text[16];
    long limit = 20;
    int rc;

    if (httpd_req_query(r, "after", after, sizeof(after)) < 0) {
        httpd_reply_error(r, 400, "the 'after' cursor is malformed");
        return;
    }
    if ((rc = httpd_req_query(r, "limit", limit_text, sizeof(limit_text))) != 0) {
        char *end;

        limit = rc < 0 ? 0 : strtol(limit_text, &end, 10);
        if (rc < 0 || *end != '\0' || limit < 1 || limit > 100) {
            httpd_reply_error(r, 400, "'limit' must be a number from 1 to 100");
            return;
        }
    }
    read_started(r);
    read_returned(r, db_page(worker(r)->reads, after, (int)limit, read_done, r));
}

/* Whose Idempotency-Keys these are: the SHA-256 (hex) of the client
 * certificate's issuer and subject, so that a key one client chose cannot
 * answer another, and a renewed certificate keeps its client's keys. */
static int client_scope(httpd_req *r, char out[INV_CLIENT_MAX + 1])
{
    const tw_identity *id = httpd_req_peer(r);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX *ctx;
    int ok;

    if (id == NULL || (ctx = EVP_MD_CTX_new()) == NULL)
        return -1;
    ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, tw_identity_issuer(id),
                          strlen(tw_identity_issuer(id)) + 1) == 1 &&
         EVP_DigestUpdate(ctx, tw_identity_subject(id),
                          strlen(tw_identity_subject(id))) == 1 &&
         EVP_DigestFinal_ex(ctx, md, &len) == 1 && len * 2 <= INV_CLIENT_MAX;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    twu_hex(md, len, out, 0);
    return 0;
}

/* A POST finished on the writer thread; this runs on the worker's. */
static void post_done(void *ctx, store_result *res)
{
    httpd_req *r = ctx;
    char location[64 + INV_NUMBER_MAX];

    if (res->status == 201)
        db_invoice_added(worker(r)->db);
    if (res->status == 201 || res->status == 200) {
        snprintf(location, sizeof(location), "Location: /invoices/%s\r\n",
                 res->number);
        httpd_reply(r, res->status, JSON, res->body.data ? res->body.data : "",
                    res->body.len, location);
    } else {
        httpd_reply_error(r, res->status,
                          res->body.data ? res->body.data : "error");
    }
    httpd_req_resume(r);
}

static void post_invoice(httpd_req *r)
{
    inv_app *app = httpd_req_app(r);
    inv_invoice inv;
    const char *field = NULL, *body, *hkey;
    char why[256], reason[400], key[INV_KEY_MAX + 1] = "";
    char client[INV_CLIENT_MAX + 1] = "";
    size_t len, klen;

    hkey = httpd_req_header(r, "Idempotency-Key", &klen);
    if (hkey != NULL && (klen == 0 || klen > INV_KEY_MAX)) {
        httpd_reply_error(r, 400, "the Idempotency-Key header must be 1 to "
                                  "128 bytes");
        return;
    }
    body = httpd_req_body(r, &len);
    if (inv_invoice_from_json(body, len, &inv, &field, why, sizeof(why)) < 0) {
        snprintf(reason, sizeof(reason), "%s: %s", field ? field : "body", why);
        httpd_reply_error(r, 400, reason);
        return;
    }
    if (hkey != NULL) {
        memcpy(key, hkey, klen);
        key[klen] = '\0';
        if (client_scope(r, client) < 0) {
            httpd_reply_error(r, 500, "out of memory");
            return;
        }
    }
    if (db_submit(app->db, worker(r)->queue, &inv, key[0] ? key : NULL,
                  client, post_done, r) < 0) {
        httpd_reply_error(r, 503, "the server is shutting down");
        return;
    }
    httpd_req_suspend(r);
}

static void whoami(httpd_req *r)
{
    static const char *const prefix[TW_SAN_TYPES] = {"DNS", "IP", "URI",
                                                     "email"};
    static const char *const roles[] = {"read", "write", "metrics"};
    const tw_identity *id = httpd_req_peer(r);
    tw_conn *tls = httpd_req_tls(r);
    json_t *o, *sans, *granted, *matched;
    char *text;

    if (id == NULL) {
        httpd_reply_error(r, 500, "out of memory");
        return;
    }
    o = json_object();
    sans = json_array();
    granted = json_array();
    matched = json_object();

    for (int t = 0; t < TW_SAN_TYPES; t++)
        for (size_t i = 0; i < tw_identity_san_count(id, t); i++)
            json_array_append_new(sans, json_sprintf("%s:%s", prefix[t],
                                                     tw_identity_san(id, t, i)));
    for (size_t i = 0; i < sizeof(roles) / sizeof(*roles); i++) {
        const char *why = NULL;

        if (tw_conn_allows(tls, roles[i], &why)) {
            json_array_append_new(granted, json_string(roles[i]));
            json_object_set_new(matched, roles[i], json_string(why));
        }
    }
    json_object_set_new(o, "subject", json_string(tw_identity_subject(id)));
    json_object_set_new(o, "issuer", json_string(tw_identity_issuer(id)));
    json_object_set_new(o, "serial", json_string(tw_identity_serial(id)));
    json_object_set_new(o, "fingerprint_sha256",
                        json_string(tw_identity_fingerprint(id)));
    json_object_set_new(o, "spki_sha256", json_string(tw_identity_spki(id)));
    json_object_set_new(o, "sans", sans);
    json_object_set_new(o, "spiffe_id", tw_identity_spiffe_id(id)
                                            ? json_string(tw_identity_spiffe_id(id))
                                            : json_null());
    json_object_set_new(o, "roles", granted);
    json_object_set_new(o, "matched", matched);
    json_object_set_new(o, "tls_version", json_string(tw_conn_version(tls)));
    json_object_set_new(o, "resumed", json_boolean(tw_conn_resumed(tls)));
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (text == NULL) {
        httpd_reply_error(r, 500, "out of memory");
        return;
    }
    httpd_reply(r, 200, JSON, text, strlen(text), NULL);
    free(text);
}

static void drain_queue(void *data)
{
    store_queue_drain(data);
}

int inv_worker_start(httpd_worker *hw, void *app, void **state, tw_err *err)
{
    inv_app *a = app;
    inv_worker *w = twu_calloc(1, sizeof(*w));

    *state = w;
    if (w == NULL)
        return twu_err_nomem(err);
    w->cache = twu_calloc(1, sizeof(*w->cache)); /* NULL: serve without */
    w->db = a->db;
    if ((w->queue = store_queue_new(err)) == NULL ||
        (w->reads = db_reads_open(a->db, w->queue, err)) == NULL)
        return -1;
    if (httpd_worker_watch(hw, store_queue_fd(w->queue), drain_queue,
                           w->queue) < 0)
        return twu_err(err, TW_ERR_INTERNAL, "cannot watch the store queue: %s",
                       strerror(errno));
    return 0;
}

void inv_worker_stop(void *state)
{
    inv_worker *w = state;

    if (w == NULL)
        return;
    if (w->cache != NULL) {
        inv_cache_free(w->cache);
        twu_free(w->cache);
    }
    db_reads_close(w->reads);
    store_queue_free(w->queue);
    twu_buf_free(&w->newest);
    twu_free(w);
}

int inv_routes_add(httpd *h)
{
    if (httpd_route(h, HTTP_GET, "/healthz", NULL, httpd_serve_health) < 0 ||
        httpd_route(h, HTTP_GET, "/", "read", get_newest) < 0 ||
        httpd_route(h, HTTP_GET, "/invoices", "read", list_invoices) < 0 ||
        httpd_route(h, HTTP_POST, "/invoices", "write", post_invoice) < 0 ||
        httpd_route(h, HTTP_GET, "/invoices/*", "read", get_invoice) < 0 ||
        httpd_route(h, HTTP_GET, "/whoami", NULL, whoami) < 0 ||
        httpd_route(h, HTTP_GET, "/metrics", "metrics", httpd_serve_metrics) < 0)
        return -1;
    return 0;
}
