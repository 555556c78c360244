/*
 * cmd_serve.c - twoway-ca serve: the command line, and the online CA's
 * start and stop.  The serving is the server core's (src/httpd); the API
 * is serve_api.c.
 */
#include "serve.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: twoway-ca serve --ca DIR [--listen ADDR:PORT] [--cert FILE --key FILE]\n"
    "                       [--passphrase-file FILE] [--dns NAME]...\n"
    "                       [--default-lifetime DURATION] [--max-lifetime DURATION]\n"
    "                       [--allow RULE]... [--policy FILE] [--workers N]\n"
    "                       [--access-log FILE|-] [--audit-log FILE]\n"
    "\n"
    "The online CA: enrols services with one-time tokens (twoway-ca token),\n"
    "renews their certificates over mutual TLS, revokes, and publishes the CRL.\n"
    "\n"
    "  --ca DIR                  the CA directory (twoway-ca init)\n"
    "  --listen ADDR:PORT        where to listen (default 0.0.0.0:9443)\n"
    "  --cert FILE --key FILE    the server's certificate and key; without them\n"
    "                            serve issues its own from the CA (DIR/serve/)\n"
    "                            and renews it itself\n"
    "  --dns NAME                a name for that certificate (default: localhost\n"
    "                            and the host name)\n"
    "  --passphrase-file FILE    the CA key's passphrase, when it is encrypted\n"
    "  --default-lifetime D      certificates issued when none is asked for\n"
    "                            (default 24h; D as 90s, 15m, 24h, 30d)\n"
    "  --max-lifetime D          the longest certificate it issues (default 7d)\n"
    "  --allow RULE              a policy rule, e.g. 'admin CN=ops' (roles:\n"
    "                            admin may revoke, metrics may read /metrics)\n"
    "  --policy FILE             policy rules, one per line\n"
    "  --workers N               worker threads (default: number of cores)\n"
    "  --access-log FILE|-       one JSON line per request (- for stdout)\n"
    "  --audit-log FILE          every issuance, renewal and revocation\n"
    "                            (default DIR/audit.log)\n"
    "  --log-level LEVEL         error, warn, info (default) or debug\n"
    "  --log-format FORMAT       text (default) or json: one object per line\n"
    "  --config FILE             options as 'name = value' lines (# comments);\n"
    "                            the command line wins\n"
    "  --help                    show this help\n"
    "\n"
    "API: GET /v1/ca, GET /v1/crl, POST /v1/enroll, POST /v1/renew,\n"
    "POST /v1/revoke, GET /healthz, GET /metrics; see twoway-ca(1).\n";

static int parse_lifetime(const char *opt, const char *text, long long *out)
{
    if (twu_parse_duration(text, 60, 366LL * 86400, out) < 0) {
        ca_fail("serve", "%s '%s' is not a duration from 60s to 366d (e.g. "
                "90s, 15m, 24h, 30d)", opt, text);
        return -1;
    }
    return 0;
}

static const struct option opts[] = {
    {"ca", required_argument, NULL, 'c'},
    {"listen", required_argument, NULL, 'l'},
    {"cert", required_argument, NULL, 'C'},
    {"key", required_argument, NULL, 'K'},
    {"passphrase-file", required_argument, NULL, 'p'},
    {"dns", required_argument, NULL, 'D'},
    {"default-lifetime", required_argument, NULL, 'd'},
    {"max-lifetime", required_argument, NULL, 'm'},
    {"allow", required_argument, NULL, 'A'},
    {"policy", required_argument, NULL, 'P'},
    {"workers", required_argument, NULL, 'w'},
    {"access-log", required_argument, NULL, 'L'},
    {"audit-log", required_argument, NULL, 'a'},
    {"log-level", required_argument, NULL, 'v'},
    {"log-format", required_argument, NULL, 'F'},
    {"config", required_argument, NULL, 'f'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

static void defaults(serve_options *o)
{
    memset(o, 0, sizeof(*o));
    o->listen = "0.0.0.0:9443";
    o->workers = (int)sysconf(_SC_NPROCESSORS_ONLN);
    o->default_lifetime = 24 * 3600;
    o->max_lifetime = 7 * 86400;
}

/* One argument vector (the config file's, or the command line) on top of
 * what is set: CA_EXIT_OK, -1 after --help, or an exit code (said). */
static int parse_args(serve_options *o, int argc, char **argv)
{
    long v;
    int c;

    optind = 0; /* glibc: start again, also on a second vector */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c': o->ca = optarg; break;
        case 'l': o->listen = optarg; break;
        case 'C': o->cert = optarg; break;
        case 'K': o->key = optarg; break;
        case 'p': o->passfile = optarg; break;
        case 'P': o->policy = optarg; break;
        case 'L': o->access_log = optarg; break;
        case 'a': o->audit_log = optarg; break;
        case 'v':
            if ((o->log_level = twu_log_level_parse(optarg)) < 0) {
                ca_fail("serve", "--log-level '%s' is not error, warn, info "
                        "or debug", optarg);
                return CA_EXIT_USAGE;
            }
            break;
        case 'F':
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0) {
                ca_fail("serve", "--log-format '%s' is not text or json",
                        optarg);
                return CA_EXIT_USAGE;
            }
            o->log_json = strcmp(optarg, "json") == 0;
            break;
        case 'D':
            if (o->ndns == SERVE_MAX_DNS) {
                ca_fail("serve", "more than %d --dns names", SERVE_MAX_DNS);
                return CA_EXIT_USAGE;
            }
            o->dns[o->ndns++] = optarg;
            break;
        case 'A':
            if (o->nrules == SERVE_MAX_RULES) {
                ca_fail("serve", "more than %d --allow rules: use a --policy "
                        "file", SERVE_MAX_RULES);
                return CA_EXIT_USAGE;
            }
            o->rules[o->nrules++] = optarg;
            break;
        case 'd':
            if (parse_lifetime("--default-lifetime", optarg,
                               &o->default_lifetime) < 0)
                return CA_EXIT_USAGE;
            break;
        case 'm':
            if (parse_lifetime("--max-lifetime", optarg, &o->max_lifetime) < 0)
                return CA_EXIT_USAGE;
            break;
        case 'w':
            if (twu_parse_long(optarg, 1, 256, &v) < 0) {
                ca_fail("serve", "--workers '%s' is not a number from 1 to "
                        "256", optarg);
                return CA_EXIT_USAGE;
            }
            o->workers = (int)v;
            break;
        case 'f': break; /* read before (twu_conf_find) */
        case 'h':
            return ca_help(usage) == CA_EXIT_OK ? -1 : CA_EXIT_USAGE;
        default:
            return ca_bad_option("serve", c, argv);
        }
    }
    if (optind != argc) {
        ca_fail("serve", "unexpected argument '%s'", argv[optind]);
        return CA_EXIT_USAGE;
    }
    return CA_EXIT_OK;
}

static int parse_options(serve_options *o, int argc, char **argv)
{
    const char *path = twu_conf_find(argc, argv);
    tw_err err;
    int rc;

    defaults(o);
    if (path != NULL) {
        if (twu_conf_load(&o->conf, path, argv[0], opts, &err) < 0) {
            ca_fail("serve", "--config %s", err.msg);
            return CA_EXIT_USAGE;
        }
        if ((rc = parse_args(o, o->conf.argc, o->conf.argv)) != CA_EXIT_OK) {
            if (rc != -1)
                ca_fail("serve", "(at %s:%d)", path,
                        twu_conf_line(&o->conf, optind - 1));
            return rc == -1 ? CA_EXIT_USAGE : rc;
        }
    }
    if ((rc = parse_args(o, argc, argv)) != CA_EXIT_OK)
        return rc;
    if (o->ca == NULL) {
        ca_fail("serve", "give --ca DIR (the CA directory made by twoway-ca "
                "init)");
        return CA_EXIT_USAGE;
    }
    if ((o->cert == NULL) != (o->key == NULL)) {
        ca_fail("serve", "give --cert and --key together, or neither (serve "
                "then issues its own certificate)");
        return CA_EXIT_USAGE;
    }
    if (o->default_lifetime > o->max_lifetime) {
        ca_fail("serve", "--default-lifetime is longer than --max-lifetime");
        return CA_EXIT_USAGE;
    }
    return CA_EXIT_OK;
}

/* The TLS side: our certificate, the CA as trust anchor with its CRL, the
 * policy; a client certificate is asked for but each route decides. */
static tw_config *build_config(serve_app *app, const serve_options *o)
{
    tw_config *cfg = tw_config_new();

    if (cfg == NULL) {
        ca_fail("serve", "out of memory");
        return NULL;
    }
    if (tw_config_set_ca_file(cfg, app->ca.cert_path) < 0 ||
        tw_config_set_keypair_file(cfg, app->own_cert, app->own_key) < 0 ||
        tw_config_set_crl_file(cfg, app->crl_path) < 0 ||
        tw_config_set_client_cert(cfg, TW_CLIENT_CERT_OPTIONAL |
                                            TW_CLIENT_CERT_ANY_PURPOSE) < 0 ||
        (o->policy && tw_config_set_policy_file(cfg, o->policy) < 0)) {
        ca_fail("serve", "%s", tw_config_error(cfg));
        goto err;
    }
    for (int i = 0; i < o->nrules; i++)
        if (tw_config_add_policy_rule(cfg, o->rules[i]) < 0) {
            ca_fail("serve", "--allow '%s': %s", o->rules[i],
                    tw_config_error(cfg));
            goto err;
        }
    return cfg;
err:
    tw_config_free(cfg);
    return NULL;
}

/* On reload with --config: the file and the command line again; what the
 * TLS side takes from them (the policy) applies, the rest (the listening
 * address, workers, lifetimes, logs) at the next start. */
static tw_config *reconfigure(void *arg, tw_err *err)
{
    serve_app *app = arg;
    serve_options next;
    tw_config *cfg = NULL;

    if (parse_options(&next, app->argc, app->argv) != CA_EXIT_OK) {
        twu_err(err, TW_ERR_USAGE, "%s has an error (said above)",
                app->opt.conf.path);
        goto out;
    }
    if ((cfg = build_config(app, &next)) == NULL) {
        twu_err(err, TW_ERR_USAGE, "the configuration from %s cannot be used "
                "(said above)", app->opt.conf.path);
        goto out;
    }
    if (strcmp(next.listen, app->opt.listen) != 0 ||
        next.workers != app->opt.workers ||
        next.default_lifetime != app->opt.default_lifetime ||
        next.max_lifetime != app->opt.max_lifetime)
        httpd_log(app->h, "warning: --listen, --workers and the lifetimes take "
                  "effect at the next start, not on reload");
out:
    twu_conf_free(&next.conf);
    return cfg;
}

static void server_options(serve_app *app, httpd_options *ho)
{
    const serve_options *o = &app->opt;

    httpd_options_defaults(ho);
    ho->name = "twoway-ca serve";
    ho->listen = o->listen;
    ho->access_log = o->access_log;
    ho->log_level = o->log_level;
    ho->log_json = o->log_json;
    ho->cert_file = app->own_cert;
    ho->crl_file = app->crl_path;
    ho->not_found = "no such path: see twoway-ca(1), SERVE, for the API";
    ho->workers = o->workers;
    ho->max_body = 64 * 1024; /* a CSR and a token, with room to spare */
    /* Not the CRL: serve writes it and reloads by itself. */
    ho->watch[0] = app->own_cert;
    ho->watch[1] = app->own_key;
    ho->watch[2] = app->ca.cert_path;
    ho->watch[3] = o->policy;
    ho->watch[4] = o->conf.path; /* --config: edited, it is read again */
}

/* A duration as it is written on the command line: 7d, 24h, 15m, 90s. */
static void duration_text(long long s, char *buf, size_t len)
{
    static const struct {
        long long seconds;
        char unit;
    } units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};

    for (size_t i = 0; i < sizeof(units) / sizeof(*units); i++)
        if (s % units[i].seconds == 0) {
            snprintf(buf, len, "%lld%c", s / units[i].seconds, units[i].unit);
            return;
        }
}

static void tick(void *data)
{
    serve_app *app = data;

    serve_crl_tick(app);
    serve_cert_tick(app);
}

static void app_free(serve_app *app)
{
    serve_crl_free(&app->crl);
    if (app->metrics_db != NULL)
        sql_close(app->metrics_db);
    pthread_mutex_destroy(&app->metrics_lock);
    twu_free(app->audit_path);
    twu_free(app->crl_path);
    if (app->own_issued) {
        twu_free(app->own_cert);
        twu_free(app->own_key);
    }
    ca_dir_close(&app->ca);
    twu_conf_free(&app->opt.conf);
}

int cmd_serve(int argc, char **argv)
{
    serve_app app;
    httpd_options ho;
    tw_config *cfg = NULL;
    tw_err err;
    char banner[512], life[32], max[32];
    int rc;

    memset(&app, 0, sizeof(app));
    app.argc = argc;
    app.argv = argv;
    if ((rc = parse_options(&app.opt, argc, argv)) != CA_EXIT_OK) {
        twu_conf_free(&app.opt.conf);
        return rc < 0 ? CA_EXIT_OK : rc;
    }
    pthread_mutex_init(&app.metrics_lock, NULL);
    pthread_mutex_init(&app.crl.lock, NULL);
    if ((rc = ca_dir_open(&app.ca, "serve", app.opt.ca, app.opt.passfile,
                          CA_OPEN_SIGN)) != CA_EXIT_OK)
        goto out;
    rc = CA_EXIT_FAIL;
    app.audit_path = app.opt.audit_log ? twu_strdup(app.opt.audit_log)
                                       : ca_audit_path(&app.ca);
    app.crl_path = ca_path_join(app.ca.dir, "crl.pem");
    if (app.audit_path == NULL || app.crl_path == NULL) {
        ca_fail("serve", "out of memory");
        goto out;
    }
    if ((app.metrics_db = sql_open(app.ca.db_target, SQL_OPEN_READONLY,
                                   &err)) == NULL ||
        cadb_check(app.metrics_db, app.ca.db_path, &err) < 0) {
        ca_fail("serve", "%s: cannot open the index for metrics", app.ca.db_path);
        goto out;
    }
    if (serve_cert_init(&app) < 0 || serve_crl_init(&app) < 0 ||
        (cfg = build_config(&app, &app.opt)) == NULL)
        goto out;
    server_options(&app, &ho);
    if ((app.h = httpd_new(&ho, cfg, &app, &err)) == NULL) {
        ca_fail("serve", "%s", err.msg);
        rc = err.cls == TW_ERR_USAGE ? CA_EXIT_USAGE : CA_EXIT_FAIL;
        goto out;
    }
    duration_text(app.opt.default_lifetime, life, sizeof(life));
    duration_text(app.opt.max_lifetime, max, sizeof(max));
    snprintf(banner, sizeof(banner), "CA %s, certificates for %s by default, "
             "%s at most", app.ca.dir, life, max);
    httpd_set_banner(app.h, banner, "no policy given: nobody may revoke or "
                     "read /metrics (add --allow 'admin CN=...' or --policy "
                     "FILE)");
    if (app.opt.conf.path != NULL)
        httpd_set_reconfigure(app.h, reconfigure);
    httpd_set_worker_hooks(app.h, serve_worker_start, serve_worker_stop);
    httpd_set_metrics(app.h, serve_metrics);
    httpd_set_tick(app.h, tick, 1000);
    if (serve_api_add(app.h) < 0) {
        ca_fail("serve", "cannot register the routes");
        goto out;
    }
    rc = httpd_run(app.h);
    rc = rc == 0 ? CA_EXIT_OK : rc == 2 ? CA_EXIT_USAGE : CA_EXIT_FAIL;
    if (rc == CA_EXIT_OK)
        httpd_log(app.h, "stopped");
out:
    httpd_free(app.h);
    tw_config_free(cfg);
    app_free(&app);
    return rc;
}
