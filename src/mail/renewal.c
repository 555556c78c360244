/*
 * renewal.c - mail-server's certificate and CRL kept current by
 * twoway-ca serve, through libtwoway's tw_renewal.  fetch enrols, renews
 * when due and fetches the CRL before its one request; sync starts a thread
 * that renews and fetches, and its next pass reads the new files.
 */
#include "mail.h"
#include "twoway_pki.h"

#include <stdio.h>

int mail_renewal_check(const mail_options *o)
{
    const char *bad = NULL;

    if ((o->enroll != NULL) != (o->token_file != NULL))
        bad = "--enroll URL and --token-file FILE go together (where to "
              "enrol, and the token `twoway-ca token` printed)";
    else if (o->crl_url != NULL && o->tls.crl == NULL)
        bad = "--crl-url needs --crl FILE, where the last good CRL is kept";
    else if ((o->enroll != NULL || o->renew != NULL) &&
             o->tls.passphrase_file != NULL)
        bad = "--enroll and --renew write a new key without a passphrase "
              "(mode 0600): drop --passphrase-file";
    if (bad == NULL)
        return 0;
    fprintf(stderr, "mail-server: %s\n", bad);
    return -1;
}

static void on_log(void *arg, const char *line)
{
    (void)arg;
    mail_log("%s", line);
}

static void on_change(void *arg, int what)
{
    atomic_int *changed = arg;

    if (changed != NULL)
        atomic_fetch_or(changed, what);
}

static void options(const mail_options *o, atomic_int *changed,
                    tw_renewal_options *ro)
{
    *ro = (tw_renewal_options){
        .cert_file = o->tls.cert, .key_file = o->tls.key, .ca_file = o->tls.ca,
        .enroll_url = o->enroll, .token_file = o->token_file,
        .renew_url = o->renew, .crl_url = o->crl_url, .crl_file = o->tls.crl,
        .crl_refresh = o->crl_refresh, .user_agent = "mail-server",
        .on_change = on_change, .on_log = on_log, .arg = (void *)changed};
}

static int failed(mail_err *e, const tw_err *err)
{
    return mail_err_set(e, err->cls == TW_ERR_USAGE ? MAIL_EXIT_USAGE
                           : err->cls == TW_ERR_IO  ? MAIL_EXIT_NETWORK
                                                    : MAIL_EXIT_OTHER,
                        "%s", err->msg);
}

int mail_renewal_prepare(const mail_options *o, int once, mail_err *e)
{
    tw_renewal_options ro;
    tw_err err;

    if (o->enroll == NULL && o->renew == NULL && o->crl_url == NULL)
        return 0;
    options(o, NULL, &ro);
    if (tw_renewal_prepare(&ro, &err) < 0)
        return failed(e, &err);
    /* A failed renewal or CRL fetch leaves the files in place, which may
     * still do: said, and the request is tried. */
    if (once && tw_renewal_once(&ro, &err) < 0)
        mail_log("warning: %s; going on with the files in place", err.msg);
    return 0;
}

tw_renewal *mail_renewal_start(const mail_options *o, atomic_int *changed,
                               mail_err *e)
{
    tw_renewal_options ro;
    tw_renewal *r;
    tw_err err;

    if (o->renew == NULL && o->crl_url == NULL)
        return NULL;
    options(o, changed, &ro);
    if ((r = tw_renewal_start(&ro, &err)) == NULL)
        failed(e, &err);
    return r;
}

void mail_renewal_stop(tw_renewal *r)
{
    tw_renewal_free(r);
}
