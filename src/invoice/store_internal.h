/*
 * store_internal.h - what store.c, invoice.c and writer.c share and store.h
 * does not publish: the schema version check, how a connection is opened,
 * and the JSON of one invoice row.
 */
#ifndef TW_INVOICE_STORE_INTERNAL_H
#define TW_INVOICE_STORE_INTERNAL_H

#include "store.h"

#include <sqlite3.h>

/* Bumped when the tables change; store__check_schema refuses other values. */
#define STORE__SCHEMA_VERSION "2"
#define STORE__APPLICATION "twoway-invoice"

/* How long a connection waits for a lock another process holds. */
#define STORE__BUSY_TIMEOUT_MS 5000

/* The columns every query that renders an invoice selects, in this order
 * (store__row_from_stmt reads them so). */
#define STORE__INVOICE_COLUMNS                                                \
    "number, firstname, lastname, email, amount_minor, currency, created_at"

/* One invoice as its columns; the strings belong to whoever filled it (a
 * statement's current row, or an inv_invoice) and are never NULL. */
typedef struct store__row {
    const char *number, *firstname, *lastname, *email, *currency;
    int64_t amount_minor, created_at;
} store__row;

/* Point `row` at the STORE__INVOICE_COLUMNS of `stmt`'s current row,
 * starting at column `col`.  Valid until the statement steps or resets. */
void store__row_from_stmt(sqlite3_stmt *stmt, int col, store__row *row);

/* Append the invoice's JSON object (store.h gives the key order).  0, or -1
 * when `out` would pass its cap or memory ran out (`out` is then as it was). */
int store__render_invoice(twu_buf *out, const store__row *row);

/*
 * Open `path` (which must exist) with SQLITE_OPEN_* `flags`, and set the
 * busy timeout.  NULL with `err` naming the file on failure.
 */
sqlite3 *store__open_db(const char *path, int flags, tw_err *err);

/* Whether the open database is an invoice database of our schema version:
 * 0, or -1 with `err` (TW_ERR_INPUT) naming `path` and what is wrong. */
int store__check_schema(sqlite3 *db, const char *path, tw_err *err);

/* Prepare `sql` once (persistent), -1 with `err` naming `path`. */
int store__prepare(sqlite3 *db, const char *path, const char *sql,
                   sqlite3_stmt **stmt, tw_err *err);

/* ---- the writer's requests and the queues that carry them back ---- */

#include <pthread.h>

#define HASH_HEX (2 * 32 + 1)  /* SHA-256 in hex, NUL */

/* One insert, from store_writer_submit until its callback ran. */
typedef struct store_req {
    struct store_req *next;
    store_queue *q;
    store_done_fn *done;
    void *ctx;
    inv_invoice inv;
    char key[INV_KEY_MAX + 1]; /* Idempotency-Key, "" when none */
    char client[INV_CLIENT_MAX + 1]; /* whose key it is ("" for none) */
    char hash[HASH_HEX];       /* of inv, to tell a replay from a reuse */
    store_result result;
} store_req;

struct store_queue {
    pthread_mutex_t mu;
    store_req *head, *tail;
    int fd;
};

/* Hand a list of answered requests to their queues (writer thread). */
void store__queue_post(store_req *r);
/* Free a request (its callback will not run). */
void store__req_free(store_req *r);

#endif /* TW_INVOICE_STORE_INTERNAL_H */
