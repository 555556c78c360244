/*
 * pg_link.c - one thread's connection to PostgreSQL through outages: the
 * first connection at start, the next attempts after 0.1, 0.2, ... 2 s, and
 * one log line when it is lost and one when it is back (not one per
 * attempt).  Used by pg_reader.c and pg_writer.c.
 *
 * Owns: the URL and its description; not the connection (its thread's).
 */
#include "pg.h"
#include "util.h"

#include <stdio.h>
#include <time.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

long long pg_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pg_link_init(pg_link *l, const char *url, const char *who,
                 const char *what, pg_setup_fn *setup, void *arg,
                 pg_log_fn *log, void *log_ctx, tw_err *err)
{
    *l = (pg_link){.who = who, .what = what, .setup = setup, .arg = arg,
                   .log = log, .log_ctx = log_ctx,
                   .backoff_ms = BACKOFF_MIN_MS};
    if ((l->url = twu_strdup(url)) == NULL ||
        (l->desc = twu_pg_describe(url)) == NULL) {
        pg_link_free(l);
        return twu_err_nomem(err);
    }
    return 0;
}

void pg_link_free(pg_link *l)
{
    twu_free(l->url);
    twu_free(l->desc);
    l->url = l->desc = NULL;
}

PGconn *pg_link_first(pg_link *l, tw_err *err)
{
    PGconn *c = twu_pg_connect(l->url, l->who, err);

    if (c != NULL && l->setup(l->arg, c, err) < 0) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

static void say_lost(pg_link *l, const char *what_happened)
{
    if (l->outage != NULL)
        l->log(l->log_ctx, "warning: %s; %s", what_happened, l->outage);
    else
        l->log(l->log_ctx, "warning: %s; %s are answered 503 until it is "
               "back", what_happened, l->what);
}

PGconn *pg_link_retry(pg_link *l)
{
    tw_err err;
    PGconn *c;

    if (pg_now_ms() < l->retry_at)
        return NULL;
    if ((c = pg_link_first(l, &err)) == NULL) {
        if (!l->outage_logged)
            say_lost(l, err.msg);
        l->outage_logged = 1;
        l->retry_at = pg_now_ms() + l->backoff_ms;
        l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                          : l->backoff_ms * 2;
        return NULL;
    }
    if (l->outage_logged)
        l->log(l->log_ctx, "%s is reachable again; %s go on", l->desc, l->what);
    l->outage_logged = 0;
    l->backoff_ms = BACKOFF_MIN_MS;
    return c;
}

void pg_link_lost(pg_link *l, PGconn *c, const char *why, int at_once)
{
    char line[256], text[512];

    snprintf(text, sizeof(text), "lost the connection to %s (%s)", l->desc,
             why != NULL ? why : twu_pg_error_line(c, line, sizeof(line)));
    say_lost(l, text);
    l->outage_logged = 1;
    PQfinish(c);
    l->backoff_ms = BACKOFF_MIN_MS;
    l->retry_at = at_once ? 0 : pg_now_ms() + l->backoff_ms;
}
