/*
 * pg.h - invoices in PostgreSQL: what db.c uses of the PostgreSQL backend
 * (pg_conn.c, pg_reader.c, pg_writer.c).  The SQLite backend is store.h.
 *
 * Tables live in the schema "twoway_invoices" (meta, invoices,
 * idempotency: the SQLite tables, column for column), so the database can
 * be shared with other applications and with the CA index.
 */
#ifndef TW_INVOICE_PG_H
#define TW_INVOICE_PG_H

#include "store_internal.h"

#include "pgutil.h"

#include <libpq-fe.h>

#include <pthread.h>
#include <stdatomic.h>

/* The channel every commit that adds invoices notifies, so that each
 * instance learns that its cached "newest" is old. */
#define PG_CHANNEL "twoway_invoices"

/* A line for the operational log; may be called from any thread. */
typedef void pg_log_fn(void *ctx, const char *fmt, ...) TWU_PRINTF(2, 3);

/* ---- pg_conn.c ---- */

/* (Connecting, and naming a URL without its password: pgutil.h.) */

/* Create the schema in one transaction (under an advisory lock, so that
 * instances starting together make it once) or check an existing one. */
int pg_schema_init(const char *url, tw_err *err);
/* Whether the connected database holds our schema version. */
int pg_schema_check(PGconn *c, const char *desc, tw_err *err);

/* Prepare `sql` as `name` (blocking). */
int pg_prepare(PGconn *c, const char *name, const char *sql, int nparams,
               const char *desc, tw_err *err);

/* Point `row` at the STORE__INVOICE_COLUMNS of row `i` of `res`, from
 * column `col` on (text format). */
void pg_row(const PGresult *res, int i, int col, store__row *row);

/* ---- pg_link.c: one thread's connection through outages ---- */

/* Prepare a new connection for its thread (statements, LISTEN, ...). */
typedef int pg_setup_fn(void *arg, PGconn *c, tw_err *err);

typedef struct pg_link {
    char *url, *desc;   /* desc: the URL without its password */
    const char *who;    /* application_name, e.g. "invoice-server reader" */
    const char *what;   /* what is answered 503 meanwhile: "reads" */
    const char *outage; /* else, what the log says happens meanwhile */
    pg_setup_fn *setup;
    void *arg;
    pg_log_fn *log;
    void *log_ctx;
    long long retry_at; /* pg_now_ms() of the next attempt */
    int backoff_ms;
    int outage_logged;
} pg_link;

long long pg_now_ms(void); /* CLOCK_MONOTONIC */
int pg_link_init(pg_link *l, const char *url, const char *who,
                 const char *what, pg_setup_fn *setup, void *arg,
                 pg_log_fn *log, void *log_ctx, tw_err *err);
void pg_link_free(pg_link *l);
/* Connect and set up now (at start): NULL with `err`. */
PGconn *pg_link_first(pg_link *l, tw_err *err);
/* Once the backoff has passed, try again: the connection, or NULL (the
 * first failure of an outage is logged). */
PGconn *pg_link_retry(pg_link *l);
/* `c` was lost (`why`, NULL: libpq's words): log it, PQfinish it, and try
 * again after the shortest backoff (`at_once`: at the next need). */
void pg_link_lost(pg_link *l, PGconn *c, const char *why, int at_once);

/* ---- pg_exec.c: a statement with a deadline ---- */

/* Run the command `sql`, or the prepared statement `name` with `params`,
 * on `c` (in non-blocking mode: PQsetnonblocking) and wait at most
 * `timeout_ms` for its answer: its last result as PQexec / PQexecPrepared
 * give it (PQclear it), or NULL when it failed (PQerrorMessage; PQstatus
 * says whether `c` is lost).  *late is 1 when no answer came in time: the
 * statement is still in flight and its effect unknown, so `c` can only be
 * given up (PQfinish); 0 otherwise. */
PGresult *pg_exec_command(PGconn *c, const char *sql, int timeout_ms,
                          int *late);
PGresult *pg_exec_prepared(PGconn *c, const char *name, int nparams,
                           const char *const *params, int timeout_ms,
                           int *late);
/* The same for `sql` with $1... `params` (text), unprepared. */
PGresult *pg_exec_params(PGconn *c, const char *sql, int nparams,
                         const char *const *params, int timeout_ms, int *late);

/* ---- pg_thread.c: a thread of its own, stopped through an eventfd ---- */

typedef struct pg_thread {
    pthread_t thread;
    int wake;    /* eventfd, written to stop; -1 before pg_thread_init */
    int running;
} pg_thread;
int pg_thread_init(pg_thread *t, tw_err *err);
int pg_thread_start(pg_thread *t, void *(*fn)(void *), void *arg,
                    const char *what, tw_err *err);
/* Wait at most `ms` for `fd` to be readable (-1: none) or for the stop;
 * 1 when the thread must stop. */
int pg_thread_wait(pg_thread *t, int fd, int ms);
/* Stop the thread (if started) and close the eventfd. */
void pg_thread_stop(pg_thread *t);

/* ---- pg_reader.c: one thread, one pipelined connection, every worker ---- */

typedef struct pg_reader pg_reader;
pg_reader *pg_reader_start(const char *url, pg_log_fn *log, void *log_ctx,
                           tw_err *err);
void pg_reader_stop(pg_reader *r);
/* Queue a read (r->kind and its arguments set); its answer comes back on
 * req->q.  Answers 503 at once (through the queue) while the database is
 * unreachable. */
void pg_reader_submit(pg_reader *rd, store_req *req);
/* Whether the reader's connection takes queries now (else answer 503). */
int pg_reader_up(const pg_reader *rd);
/* Reads answered 503 because the connection was lost under them. */
unsigned long pg_reader_unavailable(pg_reader *rd);
/* Whether the reader listens for new invoices (its cache of "the newest"
 * can be trusted), and the count of notifications seen. */
int pg_reader_generation(pg_reader *rd, unsigned *gen);

/* ---- pg_writer.c: one thread that commits POSTs in groups ---- */

typedef struct pg_writer pg_writer;
pg_writer *pg_writer_start(const char *url, pg_log_fn *log, void *log_ctx,
                           tw_err *err);
/* -1 when stopping. */
int pg_writer_submit(pg_writer *w, store_req *req);
void pg_writer_stop(pg_writer *w);
/* Whether the writer's connection works (it connects again at the next
 * POST once it was lost); POSTs it answered 503. */
int pg_writer_up(pg_writer *w);
unsigned long pg_writer_unavailable(pg_writer *w);

#endif
