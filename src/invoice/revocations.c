/*
 * revocations.c - revocations pushed from the CA index in PostgreSQL.
 *
 * `twoway-ca revoke` and `twoway-ca serve` NOTIFY CA_CHANNEL with the
 * serial when a revocation commits.  This thread LISTENs, reads the
 * certificate's fingerprint from twoway_ca.certs, and keeps it; the main
 * thread's tick (run.c) then reloads, and the reload's configuration
 * carries every fingerprint held (inv_revocations_apply): the handshake
 * refuses the client, its tickets and cached sessions are not resumed,
 * and its open connections are refused at their next request.  All of it
 * before a CRL says so; the CRL goes on being used as before.
 *
 * At start, and after each reconnection, it catches up: every revocation
 * of a certificate not yet expired at start, then those since the last one
 * seen (with a minute's margin for the clocks of several CA machines; a
 * fingerprint held twice is kept once).  A certificate that has expired is
 * dropped: its dates refuse it anyway.
 *
 * Owns: its connection (the thread's once running) and what it holds.
 */
#include "revocations.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The channel of src/ca (CA_REVOCATION_CHANNEL): the payload is a serial. */
#define CA_CHANNEL "twoway_revocations"
/* How long a query may go unanswered before the connection is given up
 * (longer than the server's own statement_timeout, as the writer's). */
#define DEADLINE_MS (TWU_PG_STATEMENT_TIMEOUT_MS + 2000)
/* How far back a catch-up looks before the last revocation seen. */
#define CLOCK_MARGIN_S 60

typedef struct held {
    char fp[65];      /* SHA-256 of the certificate, hex */
    time_t not_after;
} held;

struct inv_revocations {
    pg_link link;
    PGconn *c;             /* NULL while the connection is down */
    pg_thread thread;
    int caught_up;         /* the first catch-up is done */
    pthread_mutex_t mu;    /* the fields below */
    held *list;
    size_t n, cap;
    unsigned fresh;        /* arrived since inv_revocations_take */
    char last_serial[64];
    long long since;       /* the latest revoked_at seen (CA's clock) */
    unsigned long pushed;  /* notifications acted on */
    atomic_int up;
};

/* Keep one revocation; 1 when it is new. */
static int hold(inv_revocations *r, const char *fp, time_t not_after)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcasecmp(r->list[i].fp, fp) == 0)
            return 0;
    if (strlen(fp) >= sizeof(r->list[0].fp))
        return 0;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        held *grown = twu_realloc(r->list, cap * sizeof(*grown));

        if (grown == NULL)
            return 0; /* the CRL still refuses it once published */
        r->list = grown;
        r->cap = cap;
    }
    snprintf(r->list[r->n].fp, sizeof(r->list[0].fp), "%s", fp);
    r->list[r->n++].not_after = not_after;
    return 1;
}

/* Hold the rows of `res` (serial, subject, fingerprint, not_after,
 * revoked_at); how many were new.  `say`: log each new one. */
static int hold_rows(inv_revocations *r, PGresult *res, int say)
{
    int added = 0;

    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < PQntuples(res); i++) {
        long long revoked_at = strtoll(PQgetvalue(res, i, 4), NULL, 10);

        if (!hold(r, PQgetvalue(res, i, 2),
                  (time_t)strtoll(PQgetvalue(res, i, 3), NULL, 10)))
            continue;
        added++;
        if (revoked_at > r->since)
            r->since = revoked_at;
        snprintf(r->last_serial, sizeof(r->last_serial), "%s",
                 PQgetvalue(res, i, 0));
        if (say)
            r->link.log(r->link.log_ctx, "revoked by the CA: serial %s (%s); "
                        "refused on every connection from the next reload",
                        PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
    }
    r->fresh += (unsigned)added;
    pthread_mutex_unlock(&r->mu);
    return added;
}

#define COLUMNS "SELECT serial, subject, fingerprint, not_after, revoked_at" \
                " FROM twoway_ca.certs WHERE revoked_at IS NOT NULL"

/* A query of the CA index with text parameters, answered within
 * DEADLINE_MS; the result, or NULL with `err` (and *late when no answer
 * came: the connection is then lost). */
static PGresult *query(PGconn *c, const char *sql, int n,
                       const char *const *params, const char *desc,
                       int *late, tw_err *err)
{
    PGresult *res = pg_exec_params(c, sql, n, params, DEADLINE_MS, late);
    char line[256];

    if (*late) {
        twu_err(err, TW_ERR_IO, "no answer from %s in %d s", desc,
                DEADLINE_MS / 1000);
        return NULL;
    }
    if (PQresultStatus(res) == PGRES_TUPLES_OK ||
        PQresultStatus(res) == PGRES_COMMAND_OK)
        return res;
    if (res != NULL && PQresultErrorField(res, PG_DIAG_SQLSTATE) != NULL &&
        strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42P01") == 0)
        twu_err(err, TW_ERR_INPUT, "%s holds no twoway-ca index (no table "
                "twoway_ca.certs): give the database of `twoway-ca init DIR "
                "--db URL`", desc);
    else
        twu_err(err, TW_ERR_IO, "cannot read the revocations in %s: %s", desc,
                twu_pg_error_line(c, line, sizeof(line)));
    PQclear(res);
    return NULL;
}

/* Every revocation since the last one seen (all, the first time), of
 * certificates not yet expired. */
static int catch_up(inv_revocations *r, PGconn *c, tw_err *err)
{
    char now[32], since[32];
    const char *params[2] = {now, since};
    PGresult *res;
    long long from;
    int first, added, late;

    pthread_mutex_lock(&r->mu);
    first = !r->caught_up;
    from = first ? 0 : r->since - CLOCK_MARGIN_S;
    pthread_mutex_unlock(&r->mu);
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    snprintf(since, sizeof(since), "%lld", from);
    if ((res = query(c, COLUMNS " AND not_after > $1::bigint"
                     " AND revoked_at >= $2::bigint ORDER BY revoked_at", 2,
                     params, r->link.desc, &late, err)) == NULL)
        return -1;
    added = hold_rows(r, res, !first);
    PQclear(res);
    r->caught_up = 1;
    if (!first)
        r->link.log(r->link.log_ctx, "caught up on the revocations of %s: %d "
                    "new since the last one seen", r->link.desc, added);
    return 0;
}

/* pg_link's setup of each connection: listen first, then catch up, so
 * that nothing revoked in between is missed. */
static int setup(void *arg, PGconn *c, tw_err *err)
{
    inv_revocations *r = arg;
    char line[256];
    PGresult *res;
    int late;

    if (PQsetnonblocking(c, 1) != 0)
        return twu_err(err, TW_ERR_IO, "cannot set up the connection to %s: "
                       "%s", r->link.desc,
                       twu_pg_error_line(c, line, sizeof(line)));
    if ((res = query(c, "LISTEN " CA_CHANNEL, 0, NULL, r->link.desc, &late,
                     err)) == NULL)
        return -1;
    PQclear(res);
    return catch_up(r, c, err);
}

/* The notifications waiting on the connection: their rows; -1 when the
 * connection is lost. */
static int drain(inv_revocations *r)
{
    PGnotify *n;
    tw_err err;
    int late;

    if (PQconsumeInput(r->c) != 1)
        return -1;
    while ((n = PQnotifies(r->c)) != NULL) {
        const char *params[1] = {n->extra};
        PGresult *res = query(r->c, COLUMNS " AND serial = $1", 1, params,
                              r->link.desc, &late, &err);

        PQfreemem(n);
        if (res == NULL) {
            if (late || PQstatus(r->c) != CONNECTION_OK)
                return -1;
            r->link.log(r->link.log_ctx, "warning: %s", err.msg);
            continue;
        }
        pthread_mutex_lock(&r->mu);
        r->pushed++;
        pthread_mutex_unlock(&r->mu);
        (void)hold_rows(r, res, 1);
        PQclear(res);
    }
    return 0;
}

static void *run(void *arg)
{
    inv_revocations *r = arg;

    for (;;) {
        if (r->c == NULL && (r->c = pg_link_retry(&r->link)) != NULL)
            atomic_store(&r->up, 1);
        if (pg_thread_wait(&r->thread, r->c != NULL ? PQsocket(r->c) : -1,
                           r->c != NULL ? 1000 : 100))
            break;
        if (r->c != NULL && drain(r) < 0) {
            atomic_store(&r->up, 0);
            pg_link_lost(&r->link, r->c, NULL, 0);
            r->c = NULL;
        }
    }
    return NULL;
}

inv_revocations *inv_revocations_open(const char *url, pg_log_fn *log,
                                      void *log_ctx, tw_err *err)
{
    inv_revocations *r = twu_calloc(1, sizeof(*r));

    if (r == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    r->thread.wake = -1;
    if (!twu_pg_is_url(url)) {
        twu_err(err, TW_ERR_USAGE, "'%s' is not a PostgreSQL URL: give the "
                "CA index's database, postgresql://...", url);
        goto fail;
    }
    if (pg_link_init(&r->link, url, "invoice-server revocations",
                     "revocations", setup, r, log, log_ctx, err) < 0)
        goto fail;
    r->link.outage = "the CRL alone refuses revoked clients until it is back";
    if (pg_thread_init(&r->thread, err) < 0 ||
        (r->c = pg_link_first(&r->link, err)) == NULL)
        goto fail;
    atomic_store(&r->up, 1);
    r->fresh = 0; /* at start, the first configuration has them */
    return r;
fail:
    inv_revocations_stop(r);
    return NULL;
}

int inv_revocations_run(inv_revocations *r, tw_err *err)
{
    return pg_thread_start(&r->thread, run, r, "revocations", err);
}

void inv_revocations_stop(inv_revocations *r)
{
    if (r == NULL)
        return;
    pg_thread_stop(&r->thread);
    if (r->c != NULL)
        PQfinish(r->c);
    pg_link_free(&r->link);
    pthread_mutex_destroy(&r->mu);
    twu_free(r->list);
    twu_free(r);
}

int inv_revocations_apply(inv_revocations *r, tw_config *cfg)
{
    time_t now = time(NULL);
    size_t kept = 0;
    int rc = 0;

    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++) {
        if (r->list[i].not_after <= now)
            continue; /* expired: its dates refuse it */
        r->list[kept++] = r->list[i];
        if (rc == 0 && tw_config_add_revoked_fingerprint(cfg, r->list[i].fp) < 0)
            rc = -1;
    }
    r->n = kept;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

unsigned inv_revocations_take(inv_revocations *r, char *serial, size_t len)
{
    unsigned fresh;

    pthread_mutex_lock(&r->mu);
    fresh = r->fresh;
    r->fresh = 0;
    snprintf(serial, len, "%s", r->last_serial);
    pthread_mutex_unlock(&r->mu);
    return fresh;
}

void inv_revocations_metrics(inv_revocations *r, twu_buf *b)
{
    unsigned long pushed;
    size_t held_now;

    pthread_mutex_lock(&r->mu);
    pushed = r->pushed;
    held_now = r->n;
    pthread_mutex_unlock(&r->mu);
    twu_buf_printf(b,
        "# HELP twoway_revocations_up 1 while the CA index's revocations are listened for (--revocations).\n"
        "# TYPE twoway_revocations_up gauge\n"
        "twoway_revocations_up %d\n"
        "# HELP twoway_revocations_pushed_total Revocations notified by the CA.\n"
        "# TYPE twoway_revocations_pushed_total counter\n"
        "twoway_revocations_pushed_total %lu\n"
        "# HELP twoway_revocations_held Revoked certificates, not yet expired, refused beyond the CRL.\n"
        "# TYPE twoway_revocations_held gauge\n"
        "twoway_revocations_held %zu\n",
        atomic_load(&r->up), pushed, held_now);
}
