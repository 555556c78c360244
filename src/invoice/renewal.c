/*
 * renewal.c - invoice-server's certificate and CRL kept current by
 * twoway-ca serve, through libtwoway's tw_renewal: enrolment before the
 * files are loaded, then a thread that renews and fetches.  New files are
 * swapped in by a reload on the main thread (a new TLS generation: open
 * connections go on, new handshakes get the new certificate); the
 * counters go to GET /metrics.
 */
#include "app.h"

#include <stdio.h>

static void on_log(void *arg, const char *line)
{
    inv_app *app = arg;

    if (app->h != NULL)
        httpd_log(app->h, "%s", line);
    else
        fprintf(stderr, "invoice-server: %s\n", line);
}

/* On the renewal thread: the main thread's tick reloads, unless the core's
 * watch of the files (--reload-check) does it anyway. */
static void on_change(void *arg, int what)
{
    inv_app *app = arg;

    atomic_fetch_or(&app->renewed, what);
}

void inv_renewal_tick(inv_app *app)
{
    int what = atomic_exchange(&app->renewed, 0);

    if (what == 0 || app->opt->reload_check_ms > 0)
        return;
    (void)httpd_reload(app->h, what == TW_RENEWAL_CRL ? "new CRL"
                               : what == TW_RENEWAL_CERT ? "certificate renewed"
                               : "certificate renewed, new CRL");
}

void inv_renewal_metrics(inv_app *app, twu_buf *b)
{
    tw_renewal_stats s;

    if (app->renewal == NULL)
        return;
    tw_renewal_get_stats(app->renewal, &s);
    twu_buf_printf(b,
        "# HELP twoway_certificate_renewals_total Renewals of the server certificate from twoway-ca serve, by result.\n"
        "# TYPE twoway_certificate_renewals_total counter\n"
        "twoway_certificate_renewals_total{result=\"ok\"} %lu\n"
        "twoway_certificate_renewals_total{result=\"failed\"} %lu\n"
        "# HELP twoway_certificate_renewal_timestamp_seconds When the next renewal is due (0: renewal off).\n"
        "# TYPE twoway_certificate_renewal_timestamp_seconds gauge\n"
        "twoway_certificate_renewal_timestamp_seconds %lld\n"
        "# HELP twoway_certificate_expiring 1 when less than a tenth of the certificate's lifetime is left and renewal has failed.\n"
        "# TYPE twoway_certificate_expiring gauge\n"
        "twoway_certificate_expiring %d\n"
        "# HELP twoway_crl_fetches_total CRL fetches from --crl-url, by result (ok: a newer CRL is in place).\n"
        "# TYPE twoway_crl_fetches_total counter\n"
        "twoway_crl_fetches_total{result=\"ok\"} %lu\n"
        "twoway_crl_fetches_total{result=\"unchanged\"} %lu\n"
        "twoway_crl_fetches_total{result=\"failed\"} %lu\n",
        s.renewals_ok, s.renewals_failed, (long long)s.next_renewal,
        s.expiring, s.crl_fetches_ok, s.crl_fetches_unchanged,
        s.crl_fetches_failed);
}

static void renewal_options(inv_app *app, tw_renewal_options *ro)
{
    const inv_options *o = app->opt;

    *ro = (tw_renewal_options){
        .cert_file = o->cert, .key_file = o->key, .ca_file = o->ca,
        .enroll_url = o->enroll, .token_file = o->token_file,
        .renew_url = o->renew, .crl_url = o->crl_url, .crl_file = o->crl,
        .crl_refresh = o->crl_refresh, .user_agent = "invoice-server",
        .on_change = on_change, .on_log = on_log, .arg = app};
}

int inv_renewal_prepare(inv_app *app)
{
    const inv_options *o = app->opt;
    tw_renewal_options ro;
    tw_err err;

    if (o->enroll == NULL && o->renew == NULL && o->crl_url == NULL)
        return 0;
    renewal_options(app, &ro);
    if (tw_renewal_prepare(&ro, &err) < 0) {
        fprintf(stderr, "invoice-server: %s\n", err.msg);
        return err.cls == TW_ERR_USAGE ? 2 : 1;
    }
    return 0;
}

int inv_renewal_start(inv_app *app)
{
    const inv_options *o = app->opt;
    tw_renewal_options ro;
    tw_err err;

    if (o->renew == NULL && o->crl_url == NULL)
        return 0;
    renewal_options(app, &ro);
    if ((app->renewal = tw_renewal_start(&ro, &err)) == NULL) {
        fprintf(stderr, "invoice-server: %s\n", err.msg);
        return err.cls == TW_ERR_USAGE ? 2 : 1;
    }
    return 0;
}

void inv_renewal_stop(inv_app *app)
{
    tw_renewal_free(app->renewal);
    app->renewal = NULL;
}
