/*
 * renew.c - tw_renewal: a service's certificate and CRL kept current by
 * twoway-ca serve (see twoway_pki.h for the contract).
 *
 * One thread per renewal sleeps until the next thing is due: the renewal
 * (two thirds of the lifetime, +/-10 % jitter; after a failure 1 s, 2 s,
 * 4 s ... up to a twentieth of the lifetime) or the CRL fetch (half its
 * validity, at most `crl_refresh`; after a failure 1 s, 2 s ... up to
 * `crl_refresh`).  It does the exchange without holding the lock, so the
 * program's metrics never wait for the network; the program learns of new
 * files through on_change and reloads them.  The certificate file is read
 * again when it changes under us (an operator's own), so the schedule
 * always follows the certificate in place.
 */
#include "renew_internal.h"

#include <openssl/rand.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CRL_REFRESH_DEFAULT 300

struct tw_renewal {
    tw_renewal_options o; /* its strings are ours (copies) */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_int stop;
    tw_renewal_stats stats; /* under lock */
    /* The renewal thread's own. */
    tw__crl_state crl;
    long renew_backoff, crl_backoff;
    time_t next_crl;
    uint64_t crl_warned; /* the CRL number a stale warning was given for */
    struct stat cert_seen;
};

/* ----------------------------------------------------------------- small */

static void say(const tw_renewal_options *o, const char *fmt, ...)
    TWU_PRINTF(2, 3);

static void say(const tw_renewal_options *o, const char *fmt, ...)
{
    char line[1536];
    va_list ap;

    if (o->on_log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    o->on_log(o->arg, line);
}

static void utc(time_t t, char *buf, size_t len)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A uniform number in [-1, 1]. */
static double unit_jitter(void)
{
    uint32_t x = 0;

    if (RAND_bytes((unsigned char *)&x, sizeof(x)) != 1)
        return 0;
    return (double)x / 4294967295.0 * 2.0 - 1.0;
}

static time_t renew_point(time_t not_before, time_t not_after, double jitter)
{
    double life = (double)(not_after - not_before);

    return not_before + (time_t)(life * 2.0 / 3.0 * (1.0 + 0.1 * jitter));
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static int check_options(const tw_renewal_options *o, tw_err *err)
{
    if (o->cert_file == NULL || o->key_file == NULL || o->ca_file == NULL)
        return twu_err(err, TW_ERR_USAGE, "renewal needs the certificate, "
                       "key and CA files (--cert, --key, --ca)");
    if (strcmp(o->cert_file, o->key_file) == 0)
        return twu_err(err, TW_ERR_USAGE, "--cert and --key name one file "
                       "(%s): renewal writes them separately; give two files",
                       o->cert_file);
    if (o->enroll_url != NULL && o->token_file == NULL)
        return twu_err(err, TW_ERR_USAGE, "--enroll needs --token-file FILE "
                       "(the token `twoway-ca token` printed)");
    if (o->crl_url != NULL && o->crl_file == NULL)
        return twu_err(err, TW_ERR_USAGE, "--crl-url needs --crl FILE, where "
                       "the last good CRL is kept");
    if (o->key_type != NULL && !tw_key_type_valid(o->key_type))
        return twu_err(err, TW_ERR_USAGE, "unknown key type '%s'", o->key_type);
    return 0;
}

/* ------------------------------------------------------- the first start */

static int enroll(const tw_renewal_options *o, tw_err *err)
{
    char serial[64], until[32];
    char *token = twu_read_passphrase_file(o->token_file, "--token-file", err);
    time_t nb, na;
    int rc;

    if (token == NULL)
        return -1;
    rc = tw__renew_cert(o, NULL, token, serial, sizeof(serial), err);
    twu_free_passphrase(token);
    if (rc < 0 || tw__cert_dates(o->cert_file, &nb, &na, err) < 0)
        return -1;
    utc(na, until, sizeof(until));
    say(o, "enrolled with %s: %s (serial %s, valid until %s), key %s",
        o->enroll_url, o->cert_file, serial, until, o->key_file);
    return 1;
}

int tw_renewal_prepare(const tw_renewal_options *o, tw_err *err)
{
    char what[1024];
    int rc;

    if (check_options(o, err) < 0)
        return -1;
    if ((rc = tw__pair_recover(o->cert_file, o->key_file, what, sizeof(what),
                               err)) < 0)
        return -1;
    if (rc > 0)
        say(o, "%s", what);
    rc = 0;
    if (o->enroll_url != NULL &&
        (!exists(o->cert_file) || !exists(o->key_file))) {
        if (exists(o->cert_file) || exists(o->key_file))
            return twu_err(err, TW_ERR_USAGE, "%s exists but %s does not: "
                           "--enroll writes both; remove the one left to "
                           "enrol again, or give its partner",
                           exists(o->cert_file) ? o->cert_file : o->key_file,
                           exists(o->cert_file) ? o->key_file : o->cert_file);
        if ((rc = enroll(o, err)) < 0)
            return -1;
    }
    /* The first CRL, before the program reads the file. */
    if (o->crl_url != NULL && !exists(o->crl_file)) {
        tw_renewal_options crl_only = *o;

        crl_only.renew_url = NULL;
        if (tw_renewal_once(&crl_only, err) < 0)
            return -1;
    }
    return rc;
}

/* -------------------------------------------------------------- one pass */

int tw_renewal_once(const tw_renewal_options *o, tw_err *err)
{
    char serial[64], until[32];
    tw__crl_state crl;
    time_t nb, na;
    int rc = 0;

    if (check_options(o, err) < 0)
        return -1;
    if (o->renew_url != NULL) {
        if (tw__cert_dates(o->cert_file, &nb, &na, err) < 0)
            return -1;
        if (time(NULL) >= renew_point(nb, na, 0)) {
            if (tw__renew_cert(o, NULL, NULL, serial, sizeof(serial), err) < 0 ||
                tw__cert_dates(o->cert_file, &nb, &na, err) < 0)
                return -1;
            utc(na, until, sizeof(until));
            say(o, "renewed %s: serial %s, valid until %s", o->cert_file,
                serial, until);
        }
    }
    if (o->crl_url != NULL) {
        tw__crl_state_load(o, &crl);
        if ((rc = tw__crl_fetch(o, NULL, &crl, err)) < 0)
            return -1;
        if (rc > 0) {
            utc(crl.info.next_update, until, sizeof(until));
            say(o, "fetched a newer CRL into %s: number %llu, next update %s",
                o->crl_file, (unsigned long long)crl.info.number, until);
        }
    }
    return 0;
}

/* ------------------------------------------------------------ the thread */

/* Read the certificate's dates again when its file changed (at start, after
 * our renewal, or an operator's own). */
static void follow_cert(tw_renewal *r)
{
    struct stat st;
    time_t nb, na;
    tw_err err;

    if (stat(r->o.cert_file, &st) != 0 ||
        (st.st_ino == r->cert_seen.st_ino && st.st_size == r->cert_seen.st_size &&
         st.st_mtim.tv_sec == r->cert_seen.st_mtim.tv_sec &&
         st.st_mtim.tv_nsec == r->cert_seen.st_mtim.tv_nsec))
        return;
    if (tw__cert_dates(r->o.cert_file, &nb, &na, &err) < 0) {
        say(&r->o, "warning: cannot read %s (%s): renewal waits for a "
            "readable certificate", r->o.cert_file, err.msg);
        return;
    }
    r->cert_seen = st;
    pthread_mutex_lock(&r->lock);
    r->stats.not_before = nb;
    r->stats.not_after = na;
    r->stats.expiring = 0;
    if (r->o.renew_url != NULL)
        r->stats.next_renewal = renew_point(nb, na, unit_jitter());
    r->renew_backoff = 0;
    pthread_mutex_unlock(&r->lock);
}

static void renew_now(tw_renewal *r)
{
    char serial[64], when[32], until[32];
    time_t now, life, left;
    tw_err err;
    int rc = tw__renew_cert(&r->o, &r->stop, NULL, serial, sizeof(serial), &err);
    int expiring;
    long wait;

    if (atomic_load(&r->stop))
        return;
    if (rc == 0) {
        pthread_mutex_lock(&r->lock);
        r->stats.renewals_ok++;
        pthread_mutex_unlock(&r->lock);
        follow_cert(r);
        pthread_mutex_lock(&r->lock);
        utc(r->stats.not_after, until, sizeof(until));
        utc(r->stats.next_renewal, when, sizeof(when));
        pthread_mutex_unlock(&r->lock);
        say(&r->o, "renewed %s: serial %s, valid until %s, next renewal "
            "about %s", r->o.cert_file, serial, until, when);
        if (r->o.on_change != NULL)
            r->o.on_change(r->o.arg, TW_RENEWAL_CERT);
        return;
    }
    now = time(NULL);
    pthread_mutex_lock(&r->lock);
    life = r->stats.not_after - r->stats.not_before;
    left = r->stats.not_after - now;
    r->renew_backoff = r->renew_backoff ? r->renew_backoff * 2 : 1;
    if (r->renew_backoff > life / 20)
        r->renew_backoff = life / 20 > 1 ? life / 20 : 1;
    wait = r->renew_backoff;
    r->stats.next_renewal = now + wait;
    r->stats.renewals_failed++;
    expiring = r->stats.expiring = left < life / 10;
    utc(r->stats.not_after, until, sizeof(until));
    pthread_mutex_unlock(&r->lock);
    if (left <= 0)
        say(&r->o, "error: renewal failed and %s expired on %s: peers refuse "
            "it until a renewal succeeds (retrying in %ld s): %s",
            r->o.cert_file, until, wait, err.msg);
    else
        say(&r->o, "warning: renewal failed, retrying in %ld s; %s stays in use, "
            "valid until %s%s: %s", wait,
            r->o.cert_file, until,
            expiring ? " (less than a tenth of its lifetime left)" : "",
            err.msg);
}

static void fetch_crl(tw_renewal *r)
{
    long refresh = r->o.crl_refresh > 0 ? r->o.crl_refresh : CRL_REFRESH_DEFAULT;
    char when[32];
    tw_err err;
    int rc = tw__crl_fetch(&r->o, &r->stop, &r->crl, &err);
    time_t now = time(NULL), half, nu = r->crl.info.next_update;

    if (atomic_load(&r->stop))
        return;
    r->crl_backoff = rc < 0 ? (r->crl_backoff ? r->crl_backoff * 2 : 1) : 0;
    if (r->crl_backoff > refresh)
        r->crl_backoff = refresh;
    r->next_crl = now + (rc < 0 ? r->crl_backoff : refresh);
    if (r->crl.have && nu != 0) {
        half = r->crl.info.this_update + (nu - r->crl.info.this_update) / 2;
        if (half > now && half < r->next_crl)
            r->next_crl = half;
    }
    pthread_mutex_lock(&r->lock);
    if (rc > 0)
        r->stats.crl_fetches_ok++;
    else if (rc == 0)
        r->stats.crl_fetches_unchanged++;
    else
        r->stats.crl_fetches_failed++;
    r->stats.crl_next_update = r->crl.have ? nu : 0;
    pthread_mutex_unlock(&r->lock);
    utc(nu, when, sizeof(when));
    if (rc > 0) {
        say(&r->o, "fetched a newer CRL into %s: number %llu, next update %s",
            r->o.crl_file, (unsigned long long)r->crl.info.number, when);
        if (r->o.on_change != NULL)
            r->o.on_change(r->o.arg, TW_RENEWAL_CRL);
    } else if (rc < 0) {
        say(&r->o, "warning: CRL fetch failed, retrying in %ld s (%s %s): %s",
            r->crl_backoff, r->crl.have ? "the CRL kept is valid until"
                                        : "no CRL kept", r->crl.have ? when : "",
            err.msg);
    }
    /* An hour before nextUpdate, or at half its validity when shorter. */
    if (r->crl.have && nu != 0 && r->crl_warned != r->crl.info.number + 1) {
        time_t margin = (nu - r->crl.info.this_update) / 2;

        if (margin > 3600)
            margin = 3600;
        if (now >= nu - margin) {
            r->crl_warned = r->crl.info.number + 1;
            say(&r->o, "warning: the CRL in %s is past its nextUpdate soon "
                "(%s) and no newer one came from %s: after that its CA's "
                "clients are refused (crl_unusable)", r->o.crl_file, when,
                r->o.crl_url);
        }
    }
}

static void *run(void *arg)
{
    tw_renewal *r = arg;

    pthread_mutex_lock(&r->lock);
    while (!atomic_load(&r->stop)) {
        time_t now = time(NULL), next = 0;
        struct timespec until;

        if (r->o.renew_url != NULL) {
            pthread_mutex_unlock(&r->lock);
            follow_cert(r);
            pthread_mutex_lock(&r->lock);
            if (now >= r->stats.next_renewal) {
                pthread_mutex_unlock(&r->lock);
                renew_now(r);
                pthread_mutex_lock(&r->lock);
                continue;
            }
            next = r->stats.next_renewal;
        }
        if (r->o.crl_url != NULL) {
            if (now >= r->next_crl) {
                pthread_mutex_unlock(&r->lock);
                fetch_crl(r);
                pthread_mutex_lock(&r->lock);
                continue;
            }
            if (next == 0 || r->next_crl < next)
                next = r->next_crl;
        }
        /* At least once a minute: the certificate file may change. */
        if (next - now > 60)
            next = now + 60;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += next - now;
        pthread_cond_timedwait(&r->wake, &r->lock, &until);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* ----------------------------------------------------------- start, stop */

static void free_strings(tw_renewal_options *o)
{
    twu_free((char *)o->cert_file);
    twu_free((char *)o->key_file);
    twu_free((char *)o->ca_file);
    twu_free((char *)o->enroll_url);
    twu_free((char *)o->token_file);
    twu_free((char *)o->renew_url);
    twu_free((char *)o->crl_url);
    twu_free((char *)o->crl_file);
    twu_free((char *)o->key_type);
    twu_free((char *)o->user_agent);
}

static int copy_string(const char **to, const char *from)
{
    if (from == NULL)
        return 0;
    return (*to = twu_strdup(from)) != NULL ? 0 : -1;
}

static int copy_options(tw_renewal_options *to, const tw_renewal_options *o)
{
    *to = *o;
    to->cert_file = to->key_file = to->ca_file = to->enroll_url = NULL;
    to->token_file = to->renew_url = to->crl_url = to->crl_file = NULL;
    to->key_type = to->user_agent = NULL;
    return copy_string(&to->cert_file, o->cert_file) < 0 ||
                   copy_string(&to->key_file, o->key_file) < 0 ||
                   copy_string(&to->ca_file, o->ca_file) < 0 ||
                   copy_string(&to->enroll_url, o->enroll_url) < 0 ||
                   copy_string(&to->token_file, o->token_file) < 0 ||
                   copy_string(&to->renew_url, o->renew_url) < 0 ||
                   copy_string(&to->crl_url, o->crl_url) < 0 ||
                   copy_string(&to->crl_file, o->crl_file) < 0 ||
                   copy_string(&to->key_type, o->key_type) < 0 ||
                   copy_string(&to->user_agent, o->user_agent) < 0
               ? -1
               : 0;
}

tw_renewal *tw_renewal_start(const tw_renewal_options *o, tw_err *err)
{
    tw_renewal *r = NULL;
    pthread_condattr_t ca;
    sigset_t all, old;
    char *url = NULL;
    int rc;

    if (check_options(o, err) < 0)
        return NULL;
    /* Say a bad URL now, not in the first retry's log line. */
    if (o->renew_url != NULL) {
        if ((url = tw__url_for(o->renew_url, "/v1/renew", 1, "--renew",
                               err)) == NULL)
            return NULL;
        twu_free(url);
    }
    if (o->crl_url != NULL) {
        if ((url = tw__url_for(o->crl_url, "/v1/crl", 0, "--crl-url",
                               err)) == NULL)
            return NULL;
        twu_free(url);
    }
    if ((r = twu_calloc(1, sizeof(*r))) == NULL || copy_options(&r->o, o) < 0) {
        twu_err_nomem(err);
        goto err;
    }
    if (r->o.renew_url != NULL &&
        tw__cert_dates(r->o.cert_file, &r->stats.not_before,
                       &r->stats.not_after, err) < 0)
        goto err;
    if (r->o.crl_url != NULL) {
        tw__crl_state_load(&r->o, &r->crl);
        r->stats.crl_next_update = r->crl.have ? r->crl.info.next_update : 0;
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->wake, &ca);
    pthread_condattr_destroy(&ca);
    /* The program's signals are its own: the thread takes none. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&r->thread, NULL, run, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        twu_err(err, TW_ERR_INTERNAL, "cannot start the renewal thread: %s",
                strerror(rc));
        pthread_cond_destroy(&r->wake);
        pthread_mutex_destroy(&r->lock);
        goto err;
    }
    return r;
err:
    if (r != NULL)
        free_strings(&r->o);
    twu_free(r);
    return NULL;
}

void tw_renewal_get_stats(tw_renewal *r, tw_renewal_stats *s)
{
    pthread_mutex_lock(&r->lock);
    *s = r->stats;
    pthread_mutex_unlock(&r->lock);
}

void tw_renewal_free(tw_renewal *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    atomic_store(&r->stop, 1);
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free_strings(&r->o);
    twu_free(r);
}
