/*
 * db.h - the invoice database as the routes use it, on either backend:
 * SQLite (a file name; store.h) or PostgreSQL (a postgresql:// URL; pg.h).
 *
 * Writes go to one writer thread per process on both backends.  Reads run
 * on the worker for SQLite (a local file: microseconds) and go to a reader
 * thread for PostgreSQL (a network round trip: never on a worker's loop).
 * Either way an answer reaches `done` on the asking worker's thread: at
 * once (the call returns 0) or later through the worker's store_queue
 * (the call returns 1, and the route suspends its request).
 */
#ifndef TW_INVOICE_DB_H
#define TW_INVOICE_DB_H

#include "store.h"

typedef struct inv_db inv_db;

/* A line for the operational log, from any thread. */
typedef void db_log_fn(void *ctx, const char *fmt, ...) TWU_PRINTF(2, 3);

/* Create or check the database `spec` names (its schema upgraded in one
 * transaction), and start the writer (and for PostgreSQL the reader)
 * thread.  NULL with `err`. */
inv_db *db_start(const char *spec, db_log_fn *log, void *log_ctx,
                 tw_err *err);
/* Finish what was submitted, stop the threads, free. */
void db_stop(inv_db *db);
/* "database invoices.db", "database postgresql host=... dbname=...": what
 * the start line shows (never a password). */
const char *db_describe(const inv_db *db);

/* store_writer_submit on either backend: -1 when stopping (answer 503). */
int db_submit(inv_db *db, store_queue *q, const inv_invoice *inv,
              const char *idem_key, const char *client, store_done_fn *done,
              void *ctx);

/* A worker's reads. */
typedef struct db_reads db_reads;
db_reads *db_reads_open(inv_db *db, store_queue *q, tw_err *err);
void db_reads_close(db_reads *r);

/*
 * The answers: status 200 with the JSON in body; 404 (none); 400 (a bad
 * cursor or limit, with the sentence); 500; 503 with the body
 * STORE__UNAVAILABLE ("database_unavailable") while the database cannot
 * be reached.  0: `done` ran already; 1: it will run from the queue.
 */
int db_get(db_reads *r, const char *number, store_done_fn *done, void *ctx);
int db_newest(db_reads *r, store_done_fn *done, void *ctx);
int db_page(db_reads *r, const char *after, int limit, store_done_fn *done,
            void *ctx);

/*
 * Whether "the newest" may be served from a worker's copy: 1 with the
 * current generation in *gen (a copy read at another generation is old),
 * 0 when nothing would tell us of a newer invoice (PostgreSQL while its
 * LISTEN connection is down).  A read's answer carries, in result.gen, the
 * generation when it was asked.
 */
int db_newest_generation(inv_db *db, unsigned *gen);
/* This process added an invoice (a 201): every worker's copy is old. */
void db_invoice_added(inv_db *db);

/* Its lines of GET /metrics: twoway_database_up{connection} (1 while the
 * reader's or the writer's connection works; SQLite: 1) and
 * twoway_database_unavailable_total (requests answered 503 because the
 * database could not be reached). */
void db_metrics(inv_db *db, twu_buf *out);

#endif
