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

/* What a request asks: an insert (the writers), or a read (PostgreSQL's
 * reader thread; SQLite reads run on the worker). */
enum { STORE__INSERT, STORE__GET, STORE__NEWEST, STORE__PAGE };

/* One request, from its submission until its callback ran. */
typedef struct store_req {
    struct store_req *next;
    store_queue *q;
    store_done_fn *done;
    void *ctx;
    int kind;                  /* STORE__* */
    int64_t after;             /* STORE__PAGE: the cursor's row id */
    int limit;                 /* STORE__PAGE: 1..100 */
    long long sent_ms;         /* reader: when it went to the server */
    int phase;                 /* reader: 0 sent, 1 answered, 2 query done */
    inv_invoice inv;           /* STORE__INSERT; STORE__GET: inv.number */
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

/* A new request (calloc'd, result.number = number); NULL out of memory. */
store_req *store__req_new(store_queue *q, int kind, store_done_fn *done,
                          void *ctx);
/* An insert request, its fields bounded and its hash made; NULL when an
 * argument is out of bounds or memory ran out. */
store_req *store__req_insert(store_queue *q, const inv_invoice *inv,
                             const char *idem_key, const char *client,
                             store_done_fn *done, void *ctx);
/* Set the answer: a status and a sentence (printf-like). */
void store__answer_text(store_req *r, int status, const char *fmt, ...)
    TWU_PRINTF(3, 4);
/* Set the answer: a status and the invoice's JSON. */
void store__answer_row(store_req *r, int status, const store__row *row);

/* The page cursor (the last row id, decimal): 0, or -1 when it is not one
 * this server gave out ("" is the start: 0). */
int store__parse_cursor(const char *text, int64_t *id);

/* The request's invoice hash (HASH_HEX) for its Idempotency-Key. */
int store__hash_invoice(const inv_invoice *inv, char out[HASH_HEX]);
/* Whether a stored row holds the very same invoice. */
int store__same_content(const store__row *row, const inv_invoice *inv);
/* Fill `row` from an invoice being inserted at `created_at`. */
void store__row_from_invoice(const inv_invoice *inv, int64_t created_at,
                             store__row *row);

/* The reason a 503 gives when the database cannot be reached. */
#define STORE__UNAVAILABLE "database_unavailable"

/* Inserts waiting for a writer thread (pending.c). */
typedef struct store__pending {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    store_req *head, *tail;
    int stopping;
    int mutex_ok, cond_ok;
} store__pending;
int store__pending_init(store__pending *p);
void store__pending_destroy(store__pending *p);
/* -1 once stopping (the caller answers 503). */
int store__pending_push(store__pending *p, store_req *r);
/* Wait for requests and take up to `max` of them, oldest first; NULL once
 * stopping and nothing is left. */
store_req *store__pending_take(store__pending *p, int max);
/* No more pushes; the writer takes what is left, then gets NULL. */
void store__pending_stop(store__pending *p);

/* Hand a list of answered requests to their queues (writer thread). */
void store__queue_post(store_req *r);
/* Free a request (its callback will not run). */
void store__req_free(store_req *r);

#endif /* TW_INVOICE_STORE_INTERNAL_H */
