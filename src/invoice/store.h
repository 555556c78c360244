/*
 * store.h - invoices in SQLite (db.h chooses between it and PostgreSQL).
 *
 * Reads: one tw_store per worker thread (its own connection and prepared
 * statements; WAL lets readers run while the writer commits).
 * Writes: one writer thread for the whole server (store_writer) that
 * commits inserts in groups with synchronous=FULL, so a 201 is sent only
 * after the invoice is durable, and no worker's event loop ever waits for
 * fsync.  Completions go back to the worker that asked through a queue and
 * an eventfd the worker's loop watches.
 */
#ifndef TW_INVOICE_STORE_H
#define TW_INVOICE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "twoway.h"
#include "util.h"

/* Text sizes, checked on input (400 naming the field when over). */
#define INV_NUMBER_MAX 32
#define INV_NAME_MAX 100
#define INV_EMAIL_MAX 254
#define INV_KEY_MAX 128 /* Idempotency-Key */
#define INV_CLIENT_MAX 64 /* whose keys: SHA-256 hex of the client's names */

typedef struct inv_invoice {
    char number[INV_NUMBER_MAX + 1];   /* digits, letters, '-', e.g. 00095234 */
    char firstname[INV_NAME_MAX + 1]; /* UTF-8 */
    char lastname[INV_NAME_MAX + 1];
    char email[INV_EMAIL_MAX + 1];
    int64_t amount_minor;             /* integer minor units, >= 0 */
    char currency[4];                 /* ISO 4217, three upper-case letters */
} inv_invoice;

/*
 * Parse and validate a POST body (JSON object with invoice_number,
 * firstname, lastname, email, amount_minor, currency).  0, or -1 with
 * `field` set to the offending field name ("body" for bad JSON) and `why`
 * to a short sentence.
 */
int inv_invoice_from_json(const char *body, size_t len, inv_invoice *out,
                          const char **field, char *why, size_t why_len);

/* "10USD", "10.50USD", "1050JPY": the seed's invoice_price. */
void inv_format_price(int64_t amount_minor, const char *currency, char *buf,
                      size_t len);

/* Create the database when missing (schema, WAL, and the seed's invoice
 * 00095234 for John Ji, john.ji@example.com, 10 USD), else check it. */
int store_init(const char *path, tw_err *err);

typedef struct tw_store tw_store;
/* A reader connection for one worker thread. */
tw_store *store_open(const char *path, tw_err *err);
void store_close(tw_store *s);

/* Append the JSON of an invoice to `out`:
 *   {"firstname":..,"lastname":..,"email":..,"invoice_number":..,
 *    "invoice_price":"10USD","amount_minor":1000,"currency":"USD",
 *    "created_at":"2026-11-29T07:50:00Z"}
 * The five seed fields come first, in the seed's order.
 * store_newest / store_get return 1 when found, 0 when not, -1 on error. */
int store_newest(tw_store *s, twu_buf *out, tw_err *err);
int store_get(tw_store *s, const char *number, twu_buf *out, tw_err *err);
/* {"invoices":[...],"next":"CURSOR"|null}: up to `limit` (1..100) invoices
 * in creation order after the opaque cursor `after` (NULL or "" = from the
 * start).  0, or -1 (a malformed cursor is TW_ERR_INPUT). */
int store_page(tw_store *s, const char *after, int limit, twu_buf *out,
               tw_err *err);

/* ---- the writer thread ---- */

typedef struct store_writer store_writer;

/* The outcome of one insert, delivered on the asking worker's thread. */
typedef struct store_result {
    int status;      /* 201 created; a replay of an Idempotency-Key with
                        the same invoice gets the first answer again (201,
                        same body); 200 when the number exists with the
                        very same content and no key was given; 409 when
                        the number exists with other content or the key
                        was used for another invoice; 500 on error */
    twu_buf body;    /* the stored invoice's JSON (201/200) or an error
                        sentence (409/500); the callback may steal data */
    char number[INV_NUMBER_MAX + 1]; /* the invoice submitted */
    unsigned gen;    /* reads: the generation of "the newest" when asked */
} store_result;
typedef void store_done_fn(void *ctx, store_result *result);

/* A completion queue for one worker: `fd` is an eventfd to watch for
 * READABLE; store_queue_drain runs the callbacks of finished inserts. */
typedef struct store_queue store_queue;
store_queue *store_queue_new(tw_err *err);
int store_queue_fd(const store_queue *q);
void store_queue_drain(store_queue *q);
void store_queue_free(store_queue *q);

/* Start the writer thread on `path`; it commits pending inserts in groups
 * (one transaction, one fsync, per group). */
store_writer *store_writer_start(const char *path, tw_err *err);
/*
 * Ask for an insert; `done(ctx, result)` runs later on the thread that
 * drains `q`.  `idem_key` may be NULL; it belongs to `client` (at most
 * INV_CLIENT_MAX bytes, NULL or "" for none): two clients may use the same
 * key.  -1 when the writer is stopping (the caller answers 503).
 */
int store_writer_submit(store_writer *w, store_queue *q,
                        const inv_invoice *inv, const char *idem_key,
                        const char *client, store_done_fn *done, void *ctx);
/* Finish what was submitted, then stop the thread and free it. */
void store_writer_stop(store_writer *w);

#endif
