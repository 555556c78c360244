/*
 * pg_writer.c - the thread that writes invoices to PostgreSQL: writer.c's
 * design on libpq.
 *
 * Workers submit inserts; the thread takes everything pending (up to
 * GROUP_MAX) and runs it as one transaction: BEGIN, an advisory lock that
 * every instance's writer takes (so groups of all instances commit one at a
 * time, row ids follow commit order, and an Idempotency-Key or a number
 * another instance just stored is seen), each request inside its own
 * savepoint, a NOTIFY when invoices were added, one COMMIT.  With
 * synchronous_commit on, COMMIT returns once the group is durable, so every
 * 201 posted afterwards is.  The connection is blocking: it is this
 * thread's alone, and no worker waits for it.
 *
 * A lost connection answers the whole group 503 (a COMMIT whose outcome is
 * unknown included: a retry with the same Idempotency-Key, or of the same
 * invoice, gets the first answer), and the next group connects again after
 * a backoff; groups in the meantime are answered 503 at once.
 *
 * Owns: its connection; requests until posted.
 */
#include "pg.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GROUP_MAX 256
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* pg_advisory_xact_lock key of the writers ("twoway" + 2). */
#define WRITE_LOCK "7477776179000002"

struct pg_writer {
    char *url, *desc;
    pg_log_fn *log;
    void *log_ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    store_req *head, *tail;
    int stopping;
    int mutex_ok, cond_ok, running;
    pthread_t thread;

    atomic_int up;            /* c works (as far as the last group knew) */
    atomic_ulong unavailable; /* POSTs answered 503 */

    /* The writer thread's own. */
    PGconn *c;
    long long retry_at;
    int backoff_ms;
    int outage_logged;
};

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --------------------------------------------------------- connection */

static int setup(pg_writer *w, PGconn *c, tw_err *err)
{
    return pg_schema_check(c, w->desc, err) < 0 ||
                   pg_prepare(c, "sel_key",
                              "SELECT number, request_hash FROM "
                              "twoway_invoices.idempotency "
                              "WHERE client = $1 AND key = $2",
                              2, w->desc, err) < 0 ||
                   pg_prepare(c, "sel_num",
                              "SELECT " STORE__INVOICE_COLUMNS
                              " FROM twoway_invoices.invoices WHERE number = $1",
                              1, w->desc, err) < 0 ||
                   pg_prepare(c, "ins_inv",
                              "INSERT INTO twoway_invoices.invoices("
                              STORE__INVOICE_COLUMNS ") "
                              "VALUES($1, $2, $3, $4, $5, $6, $7)",
                              7, w->desc, err) < 0 ||
                   pg_prepare(c, "ins_key",
                              "INSERT INTO twoway_invoices.idempotency(client, "
                              "key, number, request_hash, created_at) "
                              "VALUES($1, $2, $3, $4, $5)",
                              5, w->desc, err) < 0
               ? -1
               : 0;
}

/* A connection to write on: 1, or 0 while the database is unreachable. */
static int connected(pg_writer *w)
{
    tw_err err;
    PGconn *c;

    if (w->c != NULL)
        return 1;
    if (now_ms() < w->retry_at)
        return 0;
    c = twu_pg_connect(w->url, "invoice-server writer", &err);
    if (c == NULL || setup(w, c, &err) < 0) {
        PQfinish(c);
        atomic_store(&w->up, 0);
        if (!w->outage_logged)
            w->log(w->log_ctx, "warning: %s; POSTs are answered 503 until it "
                   "is back", err.msg);
        w->outage_logged = 1;
        w->retry_at = now_ms() + w->backoff_ms;
        w->backoff_ms = w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                          : w->backoff_ms * 2;
        return 0;
    }
    if (w->outage_logged)
        w->log(w->log_ctx, "%s is reachable again; POSTs go on", w->desc);
    w->outage_logged = 0;
    w->backoff_ms = BACKOFF_MIN_MS;
    w->c = c;
    atomic_store(&w->up, 1);
    return 1;
}

static void lost(pg_writer *w)
{
    char line[256];

    w->log(w->log_ctx, "warning: lost the connection to %s (%s); POSTs are "
           "answered 503 until it is back",
           w->desc, twu_pg_error_line(w->c, line, sizeof(line)));
    w->outage_logged = 1;
    atomic_store(&w->up, 0);
    PQfinish(w->c);
    w->c = NULL;
    w->backoff_ms = BACKOFF_MIN_MS;
    w->retry_at = 0; /* the next group tries at once */
}

/* ------------------------------------------------------- statements */

/* Run a prepared statement or a command; the result (PQclear it), NULL
 * when it failed (w->c may then be bad). */
static PGresult *run(pg_writer *w, const char *name, int n,
                     const char *const *params)
{
    PGresult *res = name[0] == ' ' ? PQexec(w->c, name + 1)
                                   : PQexecPrepared(w->c, name, n, params,
                                                    NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return res;
    PQclear(res);
    return NULL;
}

/* Run a command whose result does not matter: 0 or -1. */
static int cmd(pg_writer *w, const char *sql)
{
    char q[128];
    PGresult *res;

    snprintf(q, sizeof(q), " %s", sql);
    if ((res = run(w, q, 0, NULL)) == NULL)
        return -1;
    PQclear(res);
    return 0;
}

/* The stored invoice `number` as the answer: 0, or -1. */
static int answer_stored(pg_writer *w, store_req *r, const char *number,
                         int status)
{
    const char *p[] = {number};
    PGresult *res = run(w, "sel_num", 1, p);
    store__row row;

    if (res == NULL)
        return -1;
    if (PQntuples(res) == 0) {
        store__answer_text(r, 500,
                           "the invoice this Idempotency-Key created is gone");
    } else {
        pg_row(res, 0, 0, &row);
        store__answer_row(r, status, &row);
    }
    PQclear(res);
    return 0;
}

/* 1 with the answer set (a replay or a reuse of the key), 0 when the key
 * is new, -1 on error. */
static int check_key(pg_writer *w, store_req *r)
{
    const char *p[] = {r->client, r->key};
    PGresult *res = run(w, "sel_key", 2, p);
    char number[INV_NUMBER_MAX + 1];
    int same;

    if (res == NULL)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0;
    }
    snprintf(number, sizeof(number), "%s", PQgetvalue(res, 0, 0));
    same = strcmp(PQgetvalue(res, 0, 1), r->hash) == 0;
    PQclear(res);
    if (!same) {
        store__answer_text(r, 409, "this Idempotency-Key was already used for "
                                   "another invoice");
        return 1;
    }
    return answer_stored(w, r, number, 201) < 0 ? -1 : 1;
}

static int insert(pg_writer *w, store_req *r, int64_t now)
{
    const inv_invoice *inv = &r->inv;
    char amount[24], when[24];
    const char *pi[] = {inv->number, inv->firstname, inv->lastname,
                        inv->email,  amount,         inv->currency, when};
    const char *pk[] = {r->client, r->key, inv->number, r->hash, when};
    PGresult *res;
    store__row row;

    snprintf(amount, sizeof(amount), "%lld", (long long)inv->amount_minor);
    snprintf(when, sizeof(when), "%lld", (long long)now);
    if ((res = run(w, "ins_inv", 7, pi)) == NULL)
        return -1;
    PQclear(res);
    if (r->key[0] != '\0') {
        if ((res = run(w, "ins_key", 5, pk)) == NULL)
            return -1;
        PQclear(res);
    }
    store__row_from_invoice(inv, now, &row);
    store__answer_row(r, 201, &row);
    return 0;
}

/* Decide one request inside the group's transaction: 0 with the answer
 * set, or -1 (the caller rolls the request back). */
static int handle(pg_writer *w, store_req *r, int64_t now)
{
    const char *p[] = {r->inv.number};
    PGresult *res;
    store__row row;
    int rc;

    if (r->key[0] != '\0' && (rc = check_key(w, r)) != 0)
        return rc < 0 ? -1 : 0;
    if ((res = run(w, "sel_num", 1, p)) == NULL)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return insert(w, r, now);
    }
    pg_row(res, 0, 0, &row);
    if (store__same_content(&row, &r->inv))
        store__answer_row(r, 200, &row); /* already stored: nothing to do */
    else
        store__answer_text(r, 409, "invoice %s already exists with other "
                                   "content", r->inv.number);
    PQclear(res);
    return 0;
}

static void fail_group(pg_writer *w, store_req *group, int status,
                       const char *why)
{
    for (store_req *r = group; r != NULL; r = r->next) {
        store__answer_text(r, status, "%s", why);
        if (status == 503)
            atomic_fetch_add(&w->unavailable, 1);
    }
}

/* The first line of the last error, for a 500's sentence. */
static void why_failed(pg_writer *w, char *buf, size_t len)
{
    char line[200];

    snprintf(buf, len, "the invoice could not be stored (%s)",
             twu_pg_error_line(w->c, line, sizeof(line)));
}

static void run_group(pg_writer *w, store_req *group)
{
    int64_t now = (int64_t)time(NULL);
    char why[256];
    int added = 0;
    PGresult *res;

    if (!connected(w)) {
        fail_group(w, group, 503, STORE__UNAVAILABLE);
        return;
    }
    if (cmd(w, "BEGIN") < 0 ||
        cmd(w, "SELECT pg_advisory_xact_lock(" WRITE_LOCK ")") < 0)
        goto failed;
    for (store_req *r = group; r != NULL; r = r->next) {
        if (cmd(w, "SAVEPOINT request") < 0)
            goto failed;
        if (handle(w, r, now) < 0) {
            if (PQstatus(w->c) != CONNECTION_OK)
                goto failed;
            why_failed(w, why, sizeof(why));
            if (cmd(w, "ROLLBACK TO request") < 0)
                goto failed;
            store__answer_text(r, 500, "%s", why);
        }
        if (cmd(w, "RELEASE request") < 0)
            goto failed;
        added |= r->result.status == 201;
    }
    if (added && cmd(w, "NOTIFY " PG_CHANNEL) < 0)
        goto failed;
    res = run(w, " COMMIT", 0, NULL);
    if (res != NULL && strcmp(PQcmdStatus(res), "COMMIT") == 0) {
        PQclear(res);
        return;
    }
    PQclear(res);
failed:
    if (w->c == NULL || PQstatus(w->c) != CONNECTION_OK) {
        fail_group(w, group, 503, STORE__UNAVAILABLE);
        lost(w);
        return;
    }
    why_failed(w, why, sizeof(why));
    fail_group(w, group, 500, why);
    cmd(w, "ROLLBACK");
}

static void *writer_main(void *arg)
{
    pg_writer *w = arg;

    for (;;) {
        store_req *group, *last;
        int n = 1;

        pthread_mutex_lock(&w->mu);
        while (w->head == NULL && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->head == NULL) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        group = last = w->head;
        while (last->next != NULL && n < GROUP_MAX) {
            last = last->next;
            n++;
        }
        w->head = last->next;
        if (w->head == NULL)
            w->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&w->mu);

        run_group(w, group);
        store__queue_post(group);
    }
    return NULL;
}

/* --------------------------------------------------------------- API */

static void writer_free(pg_writer *w)
{
    PQfinish(w->c);
    if (w->cond_ok)
        pthread_cond_destroy(&w->cv);
    if (w->mutex_ok)
        pthread_mutex_destroy(&w->mu);
    twu_free(w->url);
    twu_free(w->desc);
    twu_free(w);
}

pg_writer *pg_writer_start(const char *url, pg_log_fn *log, void *log_ctx,
                           tw_err *err)
{
    pg_writer *w = twu_calloc(1, sizeof(*w));

    if (w == NULL)
        return twu_err_nomem(err), NULL;
    w->log = log;
    w->log_ctx = log_ctx;
    w->backoff_ms = BACKOFF_MIN_MS;
    if ((w->url = twu_strdup(url)) == NULL ||
        (w->desc = twu_pg_describe(url)) == NULL) {
        twu_err_nomem(err);
        goto err;
    }
    w->mutex_ok = pthread_mutex_init(&w->mu, NULL) == 0;
    w->cond_ok = pthread_cond_init(&w->cv, NULL) == 0;
    TWU_ENSURE(w->mutex_ok && w->cond_ok, err, TW_ERR_INTERNAL,
               "cannot make the writer's mutex");
    if ((w->c = twu_pg_connect(url, "invoice-server writer", err)) == NULL ||
        setup(w, w->c, err) < 0)
        goto err;
    atomic_store(&w->up, 1);
    TWU_ENSURE(pthread_create(&w->thread, NULL, writer_main, w) == 0, err,
               TW_ERR_INTERNAL, "cannot start the writer thread");
    w->running = 1;
    return w;
err:
    writer_free(w);
    return NULL;
}

int pg_writer_up(pg_writer *w)
{
    return atomic_load(&w->up);
}

unsigned long pg_writer_unavailable(pg_writer *w)
{
    return atomic_load(&w->unavailable);
}

int pg_writer_submit(pg_writer *w, store_req *r)
{
    pthread_mutex_lock(&w->mu);
    if (w->stopping) {
        pthread_mutex_unlock(&w->mu);
        return -1;
    }
    r->next = NULL;
    if (w->tail != NULL)
        w->tail->next = r;
    else
        w->head = r;
    w->tail = r;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void pg_writer_stop(pg_writer *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->running)
        pthread_join(w->thread, NULL);
    writer_free(w);
}
