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
 * 201 posted afterwards is.  The connection is this thread's alone, and
 * no worker waits for it; each statement is sent without blocking and its
 * answer awaited for at most DEADLINE_MS (pg_exec.c), so that a server that
 * froze cannot hold the POSTs forever.
 *
 * A lost connection answers the whole group 503 (a COMMIT whose outcome is
 * unknown included: a retry with the same Idempotency-Key, or of the same
 * invoice, gets the first answer), and the next group connects again after
 * a backoff; groups in the meantime are answered 503 at once.  A statement
 * not answered by its deadline loses the connection the same way.  Its
 * group may still commit after the 503, once the server runs again: the
 * statements sent are in the old backend's socket, and it runs them before
 * it sees the connection closed.  That is still safe: the old transaction
 * holds the advisory lock until it ends, so the retry's group waits for it
 * (or fails with a 500 on statement_timeout) and then finds the key or the
 * invoice it stored; and the unique keys of both tables refuse a second
 * copy whatever happens.
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
/* pg_advisory_xact_lock key of the writers ("twoway" + 2). */
#define WRITE_LOCK "7477776179000002"
/* How long a statement may go unanswered before the connection is given
 * up: longer than the server's own statement_timeout (pgutil.h), so that a
 * statement that is merely slow is cancelled by the server first (a 500 for
 * its request or group, the connection kept); only a server that answers
 * nothing at all (frozen, its host hung, packets dropped without a reset)
 * reaches it. */
#define DEADLINE_MS (TWU_PG_STATEMENT_TIMEOUT_MS + 2000)

struct pg_writer {
    pg_link link;
    store__pending pending; /* submitted, not yet taken */
    int running;
    pthread_t thread;

    atomic_int up;            /* c works (as far as the last group knew) */
    atomic_ulong unavailable; /* POSTs answered 503 */

    /* The writer thread's own. */
    PGconn *c;
    int late; /* c's last statement got no answer in time: c is lost */
};

/* --------------------------------------------------------- connection */

/* pg_exec.c's statements need it; PQfinish of a connection that a frozen
 * server stopped reading then cannot block either. */
static int set_nonblocking(PGconn *c, const char *desc, tw_err *err)
{
    char line[256];

    if (PQsetnonblocking(c, 1) != 0)
        return twu_err(err, TW_ERR_IO, "cannot set up the writer's connection "
                       "to %s: %s", desc, twu_pg_error_line(c, line, sizeof(line)));
    return 0;
}

static int setup(void *arg, PGconn *c, tw_err *err)
{
    pg_writer *w = arg;

    return pg_schema_check(c, w->link.desc, err) < 0 ||
                   pg_prepare(c, "sel_key",
                              "SELECT number, request_hash FROM "
                              "twoway_invoices.idempotency "
                              "WHERE client = $1 AND key = $2",
                              2, w->link.desc, err) < 0 ||
                   pg_prepare(c, "sel_num",
                              "SELECT " STORE__INVOICE_COLUMNS
                              " FROM twoway_invoices.invoices WHERE number = $1",
                              1, w->link.desc, err) < 0 ||
                   pg_prepare(c, "ins_inv",
                              "INSERT INTO twoway_invoices.invoices("
                              STORE__INVOICE_COLUMNS ") "
                              "VALUES($1, $2, $3, $4, $5, $6, $7)",
                              7, w->link.desc, err) < 0 ||
                   pg_prepare(c, "ins_key",
                              "INSERT INTO twoway_invoices.idempotency(client, "
                              "key, number, request_hash, created_at) "
                              "VALUES($1, $2, $3, $4, $5)",
                              5, w->link.desc, err) < 0 ||
                   set_nonblocking(c, w->link.desc, err) < 0
               ? -1
               : 0;
}

/* A connection to write on: 1, or 0 while the database is unreachable. */
static int connected(pg_writer *w)
{
    if (w->c == NULL && (w->c = pg_link_retry(&w->link)) == NULL) {
        atomic_store(&w->up, 0);
        return 0;
    }
    atomic_store(&w->up, 1);
    return 1;
}

/* Whether c must be given up: it failed, or a statement is still on it. */
static int gone(const pg_writer *w)
{
    return w->late || PQstatus(w->c) != CONNECTION_OK;
}

static void lost(pg_writer *w)
{
    char late[64];

    snprintf(late, sizeof(late), "no answer in %d s", DEADLINE_MS / 1000);
    atomic_store(&w->up, 0);
    /* The next group tries at once. */
    pg_link_lost(&w->link, w->c, w->late ? late : NULL, 1);
    w->c = NULL;
    w->late = 0;
}

/* ------------------------------------------------------- statements */

/* Run a prepared statement or a command; the result (PQclear it), NULL
 * when it failed (w->c may then be gone). */
static PGresult *run(pg_writer *w, const char *name, int n,
                     const char *const *params)
{
    PGresult *res = name[0] == ' '
                        ? pg_exec_command(w->c, name + 1, DEADLINE_MS, &w->late)
                        : pg_exec_prepared(w->c, name, n, params, DEADLINE_MS,
                                           &w->late);
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
            if (gone(w))
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
    if (gone(w)) {
        fail_group(w, group, 503, STORE__UNAVAILABLE);
        lost(w);
        return;
    }
    why_failed(w, why, sizeof(why));
    fail_group(w, group, 500, why);
    if (cmd(w, "ROLLBACK") < 0 && w->late)
        lost(w); /* the next group connects again rather than wait on it */
}

static void *writer_main(void *arg)
{
    pg_writer *w = arg;
    store_req *group;

    while ((group = store__pending_take(&w->pending, GROUP_MAX)) != NULL) {
        run_group(w, group);
        store__queue_post(group);
    }
    return NULL;
}

/* --------------------------------------------------------------- API */

static void writer_free(pg_writer *w)
{
    PQfinish(w->c);
    store__pending_destroy(&w->pending);
    pg_link_free(&w->link);
    twu_free(w);
}

pg_writer *pg_writer_start(const char *url, pg_log_fn *log, void *log_ctx,
                           tw_err *err)
{
    pg_writer *w = twu_calloc(1, sizeof(*w));

    if (w == NULL)
        return twu_err_nomem(err), NULL;
    if (pg_link_init(&w->link, url, "invoice-server writer", "POSTs", setup,
                     w, log, log_ctx, err) < 0)
        goto err;
    TWU_ENSURE(store__pending_init(&w->pending) == 0, err, TW_ERR_INTERNAL,
               "cannot make the writer's mutex");
    if ((w->c = pg_link_first(&w->link, err)) == NULL)
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
    return store__pending_push(&w->pending, r);
}

void pg_writer_stop(pg_writer *w)
{
    if (w == NULL)
        return;
    store__pending_stop(&w->pending);
    if (w->running)
        pthread_join(w->thread, NULL); /* it empties the list first */
    writer_free(w);
}
