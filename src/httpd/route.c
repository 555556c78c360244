/*
 * route.c - the route table: which handler answers a request, and whether
 * the peer has the role the route needs.  Checked in the order a client
 * can act on: a target that is not a path (400), no such path (404), a
 * path that takes other methods (405, with Allow), a missing role (403,
 * naming the identity and the role), then the handler.  A policy that
 * gives a role no route needs is refused at start and at each reload
 * (httpd_check_roles): a misspelt role would otherwise refuse everyone.
 */
#include "httpd_internal.h"

#include <string.h>

int httpd_route(httpd *h, int method, const char *path, const char *role,
                httpd_handler *fn)
{
    httpd_route_entry *e;
    size_t len = strlen(path);
    int r = -1;

    if (h->nroutes == HTTPD_MAX_ROUTES || len == 0 || path[0] != '/')
        return -1;
    if (role != NULL) {
        for (r = 0; r < h->nroles && strcmp(h->roles[r], role) != 0; r++)
            ;
        if (r == h->nroles) {
            if (h->nroles == HTTPD_MAX_ROLES)
                return -1;
            h->roles[h->nroles++] = role;
        }
    }
    e = &h->routes[h->nroutes++];
    e->method = method;
    e->path = path;
    e->prefix = path[len - 1] == '*';
    e->path_len = e->prefix ? len - 1 : len;
    e->role = r;
    e->fn = fn;
    return 0;
}

/* "read, write, metrics": the roles the routes need, in the order they
 * were first routed. */
static void known_roles(const httpd *srv, char *buf, size_t len)
{
    size_t n = 0;

    buf[0] = '\0';
    for (int i = 0; i < srv->nroles && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i > 0 ? ", " : "",
                              srv->roles[i]);
}

int httpd_check_roles(httpd *srv, tw_err *err)
{
    tw_policy *p = tw_policy_new(err);
    const char *role, *rule, *where;
    char known[HTTPD_MAX_ROLES * 40];
    int rc = -1;

    if (p == NULL || tw_policy_load_config(p, srv->cfg, err) < 0)
        goto out;
    for (size_t i = 0; (role = tw_policy_role(p, i, &rule, &where)) != NULL;
         i++) {
        int r;

        for (r = 0; r < srv->nroles && strcmp(srv->roles[r], role) != 0; r++)
            ;
        if (r < srv->nroles)
            continue;
        known_roles(srv, known, sizeof(known));
        tw_err_clear(err);
        err->cls = TW_ERR_USAGE;
        /* A rule given on the command line came from --allow: every server
         * on this core takes its rules that way. */
        if (where != NULL)
            snprintf(err->msg, sizeof(err->msg), "%s: unknown role '%s' in "
                     "the rule '%s': %s knows %s", where, role, rule,
                     srv->opt.name, srv->nroles > 0 ? known : "no role");
        else
            snprintf(err->msg, sizeof(err->msg), "--allow '%s': unknown role "
                     "'%s': %s knows %s", rule, role, srv->opt.name,
                     srv->nroles > 0 ? known : "no role");
        goto out;
    }
    rc = 0;
out:
    tw_policy_free(p);
    return rc;
}

/* Split the target into path and query (not copied). */
static int split_url(httpd_request *r)
{
    struct http_parser_url pu;

    /* The common case, a path alone: http_parser_execute has already
     * checked each byte of the request target, so the path is all of it. */
    r->query = NULL;
    r->query_len = 0;
    if (r->url_len > 0 && r->head[0] == '/' &&
        memchr(r->head, '?', r->url_len) == NULL &&
        memchr(r->head, '#', r->url_len) == NULL) {
        r->path = r->head;
        r->path_len = r->url_len;
        return 0;
    }
    http_parser_url_init(&pu);
    if (http_parser_parse_url(r->head, r->url_len, 0, &pu) != 0 ||
        !(pu.field_set & (1 << UF_PATH)))
        return -1;
    r->path = r->head + pu.field_data[UF_PATH].off;
    r->path_len = pu.field_data[UF_PATH].len;
    if (pu.field_set & (1 << UF_QUERY)) {
        r->query = r->head + pu.field_data[UF_QUERY].off;
        r->query_len = pu.field_data[UF_QUERY].len;
    }
    return 0;
}

static int path_matches(const httpd_route_entry *e, const httpd_request *r)
{
    if (e->prefix)
        return r->path_len > e->path_len &&
               memcmp(r->path, e->path, e->path_len) == 0;
    return r->path_len == e->path_len &&
           memcmp(r->path, e->path, e->path_len) == 0;
}

/* Whether the peer has role `r`, decided once per connection and policy
 * generation (a reload, adopted by tw_conn_refresh, decides again). */
static int has_role(httpd_conn *c, int role)
{
    unsigned gen = tw_conn_generation(c->tls), bit = 1u << role;

    if (c->roles_gen != gen) {
        c->roles_gen = gen;
        c->roles_known = c->roles = 0;
    }
    if (!(c->roles_known & bit)) {
        c->roles_known |= bit;
        if (tw_conn_allows(c->tls, c->w->srv->roles[role], NULL))
            c->roles |= bit;
    }
    return (c->roles & bit) != 0;
}

/* Answer 403 naming the identity and the role, and log it. */
static void refuse_role(httpd_conn *c, const char *role)
{
    httpd *srv = c->w->srv;
    const tw_identity *id = tw_conn_peer(c->tls);
    char reason[1024];

    if (id == NULL) {
        /* A server that lets clients in without a certificate (routes
         * decide) still gives roles only to verified ones. */
        snprintf(reason, sizeof(reason), "this path needs a client "
                 "certificate with the '%s' role, and none was presented",
                 role);
        httpd_log(srv, "refused peer=%s reason=no_certificate role=%s",
                  c->peer, role);
        httpd__metrics_refusal(srv, TW_REASON_NO_CERTIFICATE);
        httpd__reply_error(c, 403, reason);
        return;
    }
    snprintf(reason, sizeof(reason),
             "the client certificate %s (issuer %s, serial %s) has no '%s' "
             "role: no policy rule grants it to this identity",
             tw_identity_subject(id), tw_identity_issuer(id),
             tw_identity_serial(id), role);
    httpd_log(srv, "refused peer=%s reason=policy_denied subject=\"%s\" "
              "issuer=\"%s\" serial=%s role=%s", c->peer,
              tw_identity_subject(id), tw_identity_issuer(id),
              tw_identity_serial(id), role);
    httpd__metrics_refusal(srv, TW_REASON_POLICY_DENIED);
    httpd__reply_error(c, 403, reason);
}

/* 405 with the methods the path takes, in the order they were routed. */
static void method_not_allowed(httpd_conn *c)
{
    static const char body[] = "{\"error\":\"Method Not Allowed\",\"reason\":"
                               "\"this path does not take that method\"}";
    httpd *srv = c->w->srv;
    char allow[128] = "Allow: ";
    size_t n = strlen(allow);

    for (int i = 0; i < srv->nroutes; i++) {
        const char *m = http_method_str((enum http_method)srv->routes[i].method);

        if (!path_matches(&srv->routes[i], &c->req) ||
            n + strlen(m) + 4 >= sizeof(allow))
            continue;
        n += (size_t)snprintf(allow + n, sizeof(allow) - n, "%s%s",
                              n > 7 ? ", " : "", m);
    }
    snprintf(allow + n, sizeof(allow) - n, "\r\n");
    httpd__reply(c, 405, "application/json", body, sizeof(body) - 1, allow);
}

void httpd__route(httpd_conn *c)
{
    httpd *srv = c->w->srv;
    httpd_request *r = &c->req;
    const httpd_route_entry *found = NULL;
    int path_known = 0;

    if (split_url(r) < 0) {
        httpd__reply_error(c, 400, "the request target is not a valid path");
        return;
    }
    for (int i = 0; i < srv->nroutes && found == NULL; i++) {
        const httpd_route_entry *e = &srv->routes[i];

        if (!path_matches(e, r))
            continue;
        path_known = 1;
        if (e->method == (int)r->parser.method)
            found = e;
    }
    if (found == NULL) {
        if (path_known)
            method_not_allowed(c);
        else
            httpd__reply_error(c, 404, srv->opt.not_found ? srv->opt.not_found
                                                          : "no such path");
        return;
    }
    r->rest = r->path + found->path_len;
    r->rest_len = found->prefix ? r->path_len - found->path_len : 0;
    if (found->role >= 0 && !has_role(c, found->role)) {
        refuse_role(c, srv->roles[found->role]);
        return;
    }
    found->fn(&c->req_handle);
}

/* ------------------------------------------------- what handlers call */

const char *httpd_req_path(const httpd_req *r, size_t *len)
{
    *len = r->conn->req.path_len;
    return r->conn->req.path;
}

const char *httpd_req_path_rest(const httpd_req *r, size_t *len)
{
    *len = r->conn->req.rest_len;
    return r->conn->req.rest;
}

int httpd_req_query(const httpd_req *r, const char *name, char *buf,
                    size_t len)
{
    const httpd_request *q = &r->conn->req;
    size_t nlen = strlen(name), i = 0;

    while (i < q->query_len) {
        const char *kv = q->query + i;
        size_t n = 0;

        while (i + n < q->query_len && q->query[i + n] != '&')
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

const tw_identity *httpd_req_peer(httpd_req *r)
{
    return tw_conn_peer(r->conn->tls);
}

tw_conn *httpd_req_tls(httpd_req *r)
{
    return r->conn->tls;
}

void *httpd_req_app(const httpd_req *r)
{
    return r->conn->w->srv->app;
}

void *httpd_req_worker_state(const httpd_req *r)
{
    return r->conn->w->state;
}

const char *httpd_req_peer_addr(const httpd_req *r)
{
    return r->conn->peer;
}

httpd *httpd_req_server(const httpd_req *r)
{
    return r->conn->w->srv;
}
