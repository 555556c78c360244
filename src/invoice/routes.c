/*
 * routes.c - the Invoice Server's HTTP API (see PRODUCT.md and
 * invoice-server(8)): which role each route needs, and the answers.
 */
#include "server.h"
#include "tw_internal.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define JSON "application/json"

/* The path and query of the request URL, split (not copied). */
typedef struct url_parts {
    const char *path, *query;
    size_t path_len, query_len;
} url_parts;

static int split_url(const inv_request *r, url_parts *u)
{
    struct http_parser_url pu;

    /* The common case, a path alone: http_parser_execute has already
     * checked each byte of the request target, so the path is all of it. */
    if (r->url_len > 0 && r->head[0] == '/' &&
        memchr(r->head, '?', r->url_len) == NULL &&
        memchr(r->head, '#', r->url_len) == NULL) {
        u->path = r->head;
        u->path_len = r->url_len;
        u->query = NULL;
        u->query_len = 0;
        return 0;
    }
    http_parser_url_init(&pu);
    if (http_parser_parse_url(r->head, r->url_len, 0, &pu) != 0 ||
        !(pu.field_set & (1 << UF_PATH)))
        return -1;
    u->path = r->head + pu.field_data[UF_PATH].off;
    u->path_len = pu.field_data[UF_PATH].len;
    u->query = NULL;
    u->query_len = 0;
    if (pu.field_set & (1 << UF_QUERY)) {
        u->query = r->head + pu.field_data[UF_QUERY].off;
        u->query_len = pu.field_data[UF_QUERY].len;
    }
    return 0;
}

static int path_is(const url_parts *u, const char *p)
{
    return u->path_len == strlen(p) && memcmp(u->path, p, u->path_len) == 0;
}

/* The value of `name` in the query (not decoded: our values are plain),
 * copied into buf; 1 found, 0 absent, -1 too long or not plain. */
static int query_param(const url_parts *u, const char *name, char *buf,
                       size_t len)
{
    size_t nlen = strlen(name), i = 0;

    while (i < u->query_len) {
        const char *kv = u->query + i;
        size_t n = 0;

        while (i + n < u->query_len && u->query[i + n] != '&')
            n++;
        if (n > nlen && memcmp(kv, name, nlen) == 0 && kv[nlen] == '=') {
            size_t vlen = n - nlen - 1;

            if (vlen >= len)
                return -1;
            memcpy(buf, kv + nlen + 1, vlen);
            buf[vlen] = '\0';
            for (size_t j = 0; j < vlen; j++)
                if (buf[j] == '%' || buf[j] == '+')
                    return -1;
            return 1;
        }
        i += n + 1;
    }
    return 0;
}

/* Whether the peer has `role`, decided once per connection and policy
 * generation (a reload, adopted by tw_conn_refresh, decides again). */
static int has_role(inv_conn *c, const char *role)
{
    static const char *const roles[] = {"read", "write", "metrics"};
    unsigned gen = tw_conn_generation(c->tls);
    int bit = 0;

    for (int i = 0; i < 3; i++)
        if (strcmp(role, roles[i]) == 0)
            bit = 1 << i;
    if (bit == 0)
        return tw_conn_allows(c->tls, role, NULL);
    if (c->roles_gen != gen) {
        c->roles_gen = gen;
        c->roles_known = c->roles = 0;
    }
    if (!(c->roles_known & bit)) {
        c->roles_known |= bit;
        if (tw_conn_allows(c->tls, role, NULL))
            c->roles |= bit;
    }
    return (c->roles & bit) != 0;
}

/* Whether the peer has `role`; answers 403 (and logs it) when not. */
static int require(inv_conn *c, const char *role)
{
    const tw_identity *id;
    char reason[1024];

    if (has_role(c, role))
        return 1;
    if ((id = tw_conn_peer(c->tls)) == NULL) {
        inv_reply_error(c, 500, "out of memory");
        return 0;
    }
    snprintf(reason, sizeof(reason),
             "the client certificate %s (issuer %s, serial %s) has no '%s' "
             "role: no policy rule grants it to this identity",
             tw_identity_subject(id), tw_identity_issuer(id),
             tw_identity_serial(id), role);
    inv_log(c->w->srv,
            "refused peer=%s reason=policy_denied subject=\"%s\" "
            "issuer=\"%s\" serial=%s role=%s",
            c->peer, tw_identity_subject(id), tw_identity_issuer(id),
            tw_identity_serial(id), role);
    atomic_fetch_add(&c->w->srv->metrics.refusals[TW_REASON_POLICY_DENIED], 1);
    inv_reply_error(c, 403, reason);
    return 0;
}

static void reply_buf(inv_conn *c, int status, inv_buf *b, const char *type)
{
    inv_reply(c, status, type, b->data ? b->data : "", b->len, NULL);
}

static void get_newest(inv_conn *c)
{
    inv_buf b = {0};
    tw_err err;
    int rc = store_newest(c->w->store, &b, &err);

    if (rc == 1)
        reply_buf(c, 200, &b, JSON);
    else if (rc == 0)
        inv_reply_error(c, 404, "there are no invoices yet");
    else
        inv_reply_error(c, 500, err.msg);
    inv_buf_free(&b);
}

static void get_invoice(inv_conn *c, const char *number, size_t len)
{
    char num[INV_NUMBER_MAX + 1];
    inv_buf b = {0};
    tw_err err;
    int rc;

    if (len == 0 || len > INV_NUMBER_MAX) {
        inv_reply_error(c, 404, "no such invoice");
        return;
    }
    memcpy(num, number, len);
    num[len] = '\0';
    if (c->w->cache != NULL) {
        const char *json;
        size_t n;

        if (inv_cache_get(c->w->cache, num, &json, &n)) {
            inv_reply(c, 200, JSON, json, n, NULL);
            return;
        }
    }
    rc = store_get(c->w->store, num, &b, &err);
    if (rc == 1 && c->w->cache != NULL)
        inv_cache_put(c->w->cache, num, b.data, b.len);
    if (rc == 1)
        reply_buf(c, 200, &b, JSON);
    else if (rc == 0)
        inv_reply_error(c, 404, "no such invoice");
    else
        inv_reply_error(c, 500, err.msg);
    inv_buf_free(&b);
}

static void list_invoices(inv_conn *c, const url_parts *u)
{
    char after[64] = "", limit_text[16];
    long limit = 20;
    inv_buf b = {0};
    tw_err err;
    int rc;

    if (query_param(u, "after", after, sizeof(after)) < 0) {
        inv_reply_error(c, 400, "the 'after' cursor is malformed");
        return;
    }
    if ((rc = query_param(u, "limit", limit_text, sizeof(limit_text))) != 0) {
        char *end;

        limit = rc < 0 ? 0 : strtol(limit_text, &end, 10);
        if (rc < 0 || *end != '\0' || limit < 1 || limit > 100) {
            inv_reply_error(c, 400, "'limit' must be a number from 1 to 100");
            return;
        }
    }
    if (store_page(c->w->store, after, (int)limit, &b, &err) < 0)
        inv_reply_error(c, err.cls == TW_ERR_INPUT ? 400 : 500, err.msg);
    else
        reply_buf(c, 200, &b, JSON);
    inv_buf_free(&b);
}

/* Whose Idempotency-Keys these are: the SHA-256 (hex) of the client
 * certificate's issuer and subject, so that a key one client chose cannot
 * answer another, and a renewed certificate keeps its client's keys. */
static int client_scope(inv_conn *c, char out[INV_CLIENT_MAX + 1])
{
    const tw_identity *id = tw_conn_peer(c->tls);
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
    tw__hex(md, len, out, 0);
    return 0;
}

static void post_invoice(inv_conn *c)
{
    inv_invoice inv;
    const char *field = NULL;
    char why[256], reason[400], key[INV_KEY_MAX + 1];
    char client[INV_CLIENT_MAX + 1] = "";

    if (c->req.idem_key_bad) {
        inv_reply_error(c, 400, "the Idempotency-Key header must be 1 to 128 "
                                "bytes");
        return;
    }
    if (inv_invoice_from_json(c->req.body.data ? c->req.body.data : "",
                              c->req.body.len, &inv, &field, why,
                              sizeof(why)) < 0) {
        snprintf(reason, sizeof(reason), "%s: %s", field ? field : "body", why);
        inv_reply_error(c, 400, reason);
        return;
    }
    key[0] = '\0';
    if (c->req.idem_key_len > 0) { /* header_done kept it within INV_KEY_MAX */
        memcpy(key, c->req.head + c->req.idem_key_off, c->req.idem_key_len);
        key[c->req.idem_key_len] = '\0';
    }
    if (key[0] != '\0' && client_scope(c, client) < 0) {
        inv_reply_error(c, 500, "out of memory");
        return;
    }
    if (store_writer_submit(c->w->srv->writer, c->w->queue, &inv,
                            key[0] ? key : NULL, client,
                            c->w->post_done, c) < 0) {
        inv_reply_error(c, 503, "the server is shutting down");
        return;
    }
    c->waiting = 1;
}

static void whoami(inv_conn *c)
{
    static const char *const prefix[TW_SAN_TYPES] = {"DNS", "IP", "URI",
                                                     "email"};
    static const char *const roles[] = {"read", "write", "metrics"};
    const tw_identity *id = tw_conn_peer(c->tls);
    json_t *o, *sans, *granted, *matched;
    char *text;

    if (id == NULL) {
        inv_reply_error(c, 500, "out of memory");
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

        if (tw_conn_allows(c->tls, roles[i], &why)) {
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
    json_object_set_new(o, "tls_version", json_string(tw_conn_version(c->tls)));
    json_object_set_new(o, "resumed", json_boolean(tw_conn_resumed(c->tls)));
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (text == NULL) {
        inv_reply_error(c, 500, "out of memory");
        return;
    }
    inv_reply(c, 200, JSON, text, strlen(text), NULL);
    free(text);
}

static void metrics(inv_conn *c)
{
    inv_buf b = {0};

    inv_metrics_render(c->w->srv, &b);
    reply_buf(c, 200, &b, "text/plain; version=0.0.4");
    inv_buf_free(&b);
}

static void method_not_allowed(inv_conn *c, const char *allow)
{
    char hdr[64];
    char body[] = "{\"error\":\"Method Not Allowed\",\"reason\":\"this path "
                  "does not take that method\"}";

    snprintf(hdr, sizeof(hdr), "Allow: %s\r\n", allow);
    inv_reply(c, 405, JSON, body, sizeof(body) - 1, hdr);
}

void inv_route(inv_conn *c)
{
    int method = c->req.parser.method;
    int get = method == HTTP_GET;
    url_parts u;

    if (split_url(&c->req, &u) < 0) {
        inv_reply_error(c, 400, "the request target is not a valid path");
        return;
    }
    if (path_is(&u, "/healthz")) {
        if (!get) {
            method_not_allowed(c, "GET");
            return;
        }
        inv_reply(c, 200, "text/plain", "ok", 2, NULL);
    } else if (path_is(&u, "/")) {
        if (!get) {
            method_not_allowed(c, "GET");
            return;
        }
        if (require(c, "read"))
            get_newest(c);
    } else if (path_is(&u, "/invoices")) {
        if (get) {
            if (require(c, "read"))
                list_invoices(c, &u);
        } else if (method == HTTP_POST) {
            if (require(c, "write"))
                post_invoice(c);
        } else {
            method_not_allowed(c, "GET, POST");
        }
    } else if (u.path_len > 10 && memcmp(u.path, "/invoices/", 10) == 0) {
        if (!get) {
            method_not_allowed(c, "GET");
            return;
        }
        if (require(c, "read"))
            get_invoice(c, u.path + 10, u.path_len - 10);
    } else if (path_is(&u, "/whoami")) {
        if (!get) {
            method_not_allowed(c, "GET");
            return;
        }
        whoami(c);
    } else if (path_is(&u, "/metrics")) {
        if (!get) {
            method_not_allowed(c, "GET");
            return;
        }
        if (require(c, "metrics"))
            metrics(c);
    } else {
        inv_reply_error(c, 404, "no such path: see invoice-server(8) for the "
                                "routes");
    }
}
