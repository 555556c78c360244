/*
 * run.c - invoice-server's process: the TLS configuration from the command
 * line, the database, the writer thread, and the server core (src/httpd)
 * with the API's routes.  One error exit frees whatever was made.
 */
#include "app.h"

#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static tw_config *build_config(const inv_options *o, const inv_app *app)
{
    tw_config *cfg = tw_config_new();

    if (cfg == NULL) {
        fprintf(stderr, "invoice-server: out of memory\n");
        return NULL;
    }
    if (tw_config_set_ca_file(cfg, o->ca) < 0 ||
        tw_config_set_keypair_file(cfg, o->cert, o->key) < 0 ||
        (o->crl && tw_config_set_crl_file(cfg, o->crl) < 0) ||
        (o->policy && tw_config_set_policy_file(cfg, o->policy) < 0) ||
        (o->ticket_keys && tw_config_set_ticket_keys_file(cfg, o->ticket_keys) < 0) ||
        tw_config_set_tickets(cfg, o->tickets) < 0 ||
        tw_config_set_session_cache_size(cfg, (size_t)o->session_cache) < 0) {
        fprintf(stderr, "invoice-server: %s\n", tw_config_error(cfg));
        goto err;
    }
    for (int i = 0; i < o->nrules; i++)
        if (tw_config_add_policy_rule(cfg, o->rules[i]) < 0) {
            fprintf(stderr, "invoice-server: --allow '%s': %s\n", o->rules[i],
                    tw_config_error(cfg));
            goto err;
        }
    if (app->revocations != NULL &&
        inv_revocations_apply(app->revocations, cfg) < 0) {
        fprintf(stderr, "invoice-server: --revocations: %s\n",
                tw_config_error(cfg));
        goto err;
    }
    /* The file's keys give way to the database's (sealed with its key). */
    if (app->ticket_keys != NULL && o->ticket_keys != NULL &&
        inv_ticket_keys_apply(app->ticket_keys, cfg) < 0) {
        fprintf(stderr, "invoice-server: ticket keys: %s\n",
                tw_config_error(cfg));
        goto err;
    }
    return cfg;
err:
    tw_config_free(cfg);
    return NULL;
}

/* What a reload cannot change (the listening socket, the database, the
 * workers, ...): said, and kept until the next start. */
static void say_restart_only(httpd *h, const inv_options *was,
                             const inv_options *now)
{
    static const struct {
        const char *name;
        size_t off;
    } strings[] = {
        {"listen", offsetof(inv_options, listen)},
        {"db", offsetof(inv_options, db)},
        {"access-log", offsetof(inv_options, access_log)},
        {"enroll", offsetof(inv_options, enroll)},
        {"renew", offsetof(inv_options, renew)},
        {"crl-url", offsetof(inv_options, crl_url)},
        {"revocations", offsetof(inv_options, revocations)}};
    static const struct {
        const char *name;
        size_t off;
    } ints[] = {
        {"workers", offsetof(inv_options, workers)},
        {"max-connections", offsetof(inv_options, max_conns)},
        {"log-level", offsetof(inv_options, log_level)},
        {"log-format", offsetof(inv_options, log_json)},
        {"reload-check", offsetof(inv_options, reload_check_ms)},
        {"idle-timeout", offsetof(inv_options, idle_timeout_ms)},
        {"header-timeout", offsetof(inv_options, header_timeout_ms)}};

    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        const char *a = *(const char *const *)((const char *)was + strings[i].off);
        const char *b = *(const char *const *)((const char *)now + strings[i].off);

        if ((a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0))
            httpd_log(h, "warning: --%s changed: it takes effect at the next "
                      "start, not on reload", strings[i].name);
    }
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        if (*(const int *)((const char *)was + ints[i].off) !=
            *(const int *)((const char *)now + ints[i].off))
            httpd_log(h, "warning: --%s changed: it takes effect at the next "
                      "start, not on reload", ints[i].name);
}

/* On each reload: with --config, the file and the command line again,
 * and the TLS configuration they describe now; the revocations pushed so
 * far in either case. */
static tw_config *reconfigure(void *arg, tw_err *err)
{
    inv_app *app = arg;
    inv_options next;
    tw_config *cfg = NULL;
    int done, rc;

    if (app->opt->conf.path == NULL) {
        if ((cfg = build_config(app->opt, app)) == NULL)
            twu_err(err, TW_ERR_USAGE, "the configuration cannot be used "
                    "(said above)");
        return cfg;
    }
    rc = inv_options_parse(&next, app->opt->argc, app->opt->argv, &done);

    if (rc != 0 || done) {
        twu_err(err, TW_ERR_USAGE, "%s has an error (said above)",
                app->opt->conf.path);
        goto out;
    }
    if ((cfg = build_config(&next, app)) == NULL) {
        twu_err(err, TW_ERR_USAGE, "the configuration from %s cannot be used "
                "(said above)", app->opt->conf.path);
        goto out;
    }
    say_restart_only(app->h, app->opt, &next);
out:
    twu_conf_free(&next.conf);
    return cfg;
}

/* The database threads' lines (an outage, a recovery) in the server's log. */
TWU_PRINTF(2, 3)
static void db_log(void *arg, const char *fmt, ...)
{
    inv_app *app = arg;
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (app->h == NULL) /* before the server is made */
        fprintf(stderr, "invoice-server: %s\n", text);
    else
        httpd_log(app->h, "%s", text);
}

/* The program's lines of GET /metrics: the database's, the renewal's. */
static void metrics(void *arg, twu_buf *b)
{
    inv_app *app = arg;

    if (app->db != NULL)
        db_metrics(app->db, b);
    inv_renewal_metrics(app, b);
    if (app->revocations != NULL)
        inv_revocations_metrics(app->revocations, b);
    if (app->ticket_keys != NULL)
        inv_ticket_keys_metrics(app->ticket_keys, b);
}

/* The main thread's tick: reload for what the renewal and the revocations
 * threads brought. */
static void tick(void *arg)
{
    inv_app *app = arg;
    char serial[64], why[128];
    unsigned fresh;

    inv_renewal_tick(app);
    if (app->ticket_keys != NULL && inv_ticket_keys_take(app->ticket_keys))
        (void)httpd_reload(app->h, "ticket keys rotated");
    if (app->revocations == NULL ||
        (fresh = inv_revocations_take(app->revocations, serial,
                                      sizeof(serial))) == 0)
        return;
    if (fresh == 1)
        snprintf(why, sizeof(why), "revocation pushed: serial %s", serial);
    else
        snprintf(why, sizeof(why), "%u revocations pushed, the last serial "
                 "%s", fresh, serial);
    (void)httpd_reload(app->h, why);
}

static void server_options(const inv_options *o, httpd_options *ho)
{
    httpd_options_defaults(ho);
    ho->name = "invoice-server";
    ho->listen = o->listen;
    ho->access_log = o->access_log;
    ho->cert_file = o->cert;
    ho->crl_file = o->crl;
    ho->not_found = "no such path: see invoice-server(8) for the routes";
    ho->watch[0] = o->cert;
    ho->watch[1] = o->key;
    ho->watch[2] = o->ca;
    ho->watch[3] = o->crl;
    ho->watch[4] = o->policy;
    ho->watch[5] = o->ticket_keys;
    ho->watch[6] = o->conf.path; /* --config: edited, it is read again */
    ho->workers = o->workers;
    ho->max_conns = o->max_conns;
    ho->max_head = o->max_head;
    ho->max_headers = o->max_headers;
    ho->max_body = o->max_body;
    ho->handshake_timeout_ms = o->handshake_timeout_ms;
    ho->header_timeout_ms = o->header_timeout_ms;
    ho->idle_timeout_ms = o->idle_timeout_ms;
    ho->reload_check_ms = o->reload_check_ms;
    ho->log_level = o->log_level;
    ho->log_json = o->log_json;
}

int inv_run(const inv_options *o)
{
    inv_app app = {.opt = o};
    httpd_options ho;
    tw_config *cfg = NULL;
    httpd *h = NULL;
    char banner[64 + 4096];
    tw_err err;
    int rc = 1;

    server_options(o, &ho);
    /* Enrolment writes --cert and --key before anything reads them. */
    if ((rc = inv_renewal_prepare(&app)) != 0)
        goto out;
    rc = 1;
    /* The revocations before the first configuration, which has them. */
    if (o->revocations != NULL &&
        (app.revocations = inv_revocations_open(o->revocations, db_log, &app,
                                                &err)) == NULL) {
        fprintf(stderr, "invoice-server: --revocations: %s\n", err.msg);
        rc = err.cls == TW_ERR_USAGE ? 2 : 1;
        goto out;
    }
    /* Ticket keys shared through PostgreSQL, sealed with the file's key. */
    if (twu_pg_is_url(o->db) && o->ticket_keys != NULL && o->tickets > 0 &&
        (app.ticket_keys = inv_ticket_keys_open(o->db, o->ticket_keys,
                                                o->ticket_rotate, db_log,
                                                &app, &err)) == NULL) {
        fprintf(stderr, "invoice-server: --ticket-keys: %s\n", err.msg);
        rc = err.cls == TW_ERR_USAGE ? 2 : 1;
        goto out;
    }
    if ((cfg = build_config(o, &app)) == NULL)
        goto out;
    /* The address and the TLS files first: a server that cannot start
     * leaves no new database behind. */
    if ((h = httpd_new(&ho, cfg, &app, &err)) == NULL) {
        fprintf(stderr, "invoice-server: %s\n", err.msg);
        rc = err.cls == TW_ERR_USAGE ? 2 : 1;
        goto out;
    }
    app.h = h;
    /* The routes before the database: a policy naming a role no route
     * has is refused before any file is made. */
    httpd_set_worker_hooks(h, inv_worker_start, inv_worker_stop);
    if (inv_routes_add(h) < 0) {
        fprintf(stderr, "invoice-server: cannot register the routes\n");
        goto out;
    }
    if (httpd_check_roles(h, &err) < 0) {
        fprintf(stderr, "invoice-server: %s\n", err.msg);
        rc = err.cls == TW_ERR_USAGE ? 2 : 1;
        goto out;
    }
    /* After httpd_new: the database's threads inherit its signal mask. */
    if ((app.db = db_start(o->db, db_log, &app, &err)) == NULL) {
        fprintf(stderr, "invoice-server: --db: %s\n", err.msg);
        goto out;
    }
    snprintf(banner, sizeof(banner), "%s", db_describe(app.db));
    httpd_set_metrics(h, metrics);
    if (o->conf.path != NULL || app.revocations != NULL ||
        app.ticket_keys != NULL)
        httpd_set_reconfigure(h, reconfigure);
    httpd_set_tick(h, tick, 250);
    httpd_set_banner(h, banner, "no policy given: any certificate the CA "
                     "signed may read, write and see metrics (add --allow "
                     "'read O=...' or --policy FILE)");
    if ((rc = inv_renewal_start(&app)) != 0)
        goto out;
    if ((app.revocations != NULL &&
         inv_revocations_run(app.revocations, &err) < 0) ||
        (app.ticket_keys != NULL &&
         inv_ticket_keys_run(app.ticket_keys, &err) < 0)) {
        fprintf(stderr, "invoice-server: %s\n", err.msg);
        rc = 1;
        goto out;
    }
    rc = httpd_run(h);
    inv_renewal_stop(&app);
    inv_revocations_stop(app.revocations);
    app.revocations = NULL;
    inv_ticket_keys_stop(app.ticket_keys);
    app.ticket_keys = NULL;
    db_stop(app.db);
    app.db = NULL;
    if (rc == 0)
        httpd_log(h, "stopped");
out:
    inv_renewal_stop(&app);
    inv_revocations_stop(app.revocations);
    inv_ticket_keys_stop(app.ticket_keys);
    db_stop(app.db);
    httpd_free(h);
    tw_config_free(cfg);
    return rc;
}
