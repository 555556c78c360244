/*
 * store_helpers.h - what the invoice store's tests share (store_read_test.c,
 * store_writer_test.c): a fresh directory for invoices.db per test, an
 * invoice to submit, and a submit that waits for its answer.
 *
 * Header-only (static inline): each test is its own executable, built with
 * src/invoice/store.c, invoice.c and writer.c.  It includes cmocka itself.
 */
#ifndef TW_STORE_HELPERS_H
#define TW_STORE_HELPERS_H

#include "store_internal.h"
#include "util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Each test gets a fresh directory holding invoices.db. */
typedef struct fixture {
    char dir[64];
    char db[128];
} fixture;

static inline int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/store_test.XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->db, sizeof(f->db), "%s/invoices.db", f->dir);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    fixture *f = *state;
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    char path[160];

    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", f->db, suffixes[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/other", f->dir);
    unlink(path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static inline fixture *init_db(void **state)
{
    fixture *f = *state;
    tw_err err;

    tw_err_clear(&err);
    if (store_init(f->db, &err) < 0)
        fail_msg("store_init: %s", err.msg);
    return f;
}

static inline tw_store *open_reader(const fixture *f)
{
    tw_err err;
    tw_store *s = store_open(f->db, &err);

    if (s == NULL)
        fail_msg("store_open: %s", err.msg);
    return s;
}

static inline inv_invoice make_invoice(const char *number, const char *first,
                                int64_t amount, const char *currency)
{
    inv_invoice inv;

    memset(&inv, 0, sizeof(inv));
    snprintf(inv.number, sizeof(inv.number), "%s", number);
    snprintf(inv.firstname, sizeof(inv.firstname), "%s", first);
    snprintf(inv.lastname, sizeof(inv.lastname), "Lee");
    snprintf(inv.email, sizeof(inv.email), "ann@example.com");
    inv.amount_minor = amount;
    snprintf(inv.currency, sizeof(inv.currency), "%s", currency);
    return inv;
}

/* ---------------------------------------------------- synchronous submit */

typedef struct answer {
    int got, status;
    char *body; /* stolen from the result */
} answer;

static inline void keep_answer(void *ctx, store_result *result)
{
    answer *a = ctx;

    a->got = 1;
    a->status = result->status;
    a->body = result->body.data; /* steal it */
    result->body.data = NULL;
}

static inline void wait_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    if (poll(&p, 1, 10000) != 1)
        fail_msg("no completion within 10 s");
}

/* Submit as `client` and wait for the answer. */
static inline answer submit_as(store_writer *w, store_queue *q,
                               const inv_invoice *inv, const char *key,
                               const char *client)
{
    answer a = {0};

    assert_int_equal(store_writer_submit(w, q, inv, key, client, keep_answer,
                                         &a), 0);
    while (!a.got) {
        wait_readable(store_queue_fd(q));
        store_queue_drain(q);
    }
    return a;
}

/* Submit as one client, always the same, and wait for the answer. */
static inline answer submit(store_writer *w, store_queue *q, const inv_invoice *inv,
                     const char *key)
{
    return submit_as(w, q, inv, key, "client-a");
}

static inline void writer_and_queue(const fixture *f, store_writer **w,
                             store_queue **q)
{
    tw_err err;

    *w = store_writer_start(f->db, &err);
    if (*w == NULL)
        fail_msg("store_writer_start: %s", err.msg);
    *q = store_queue_new(&err);
    assert_non_null(*q);
}

#endif /* TW_STORE_HELPERS_H */
