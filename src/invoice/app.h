/*
 * app.h - invoice-server as a program on the server core (src/httpd): what
 * run.c sets up and routes.c answers with.
 */
#ifndef TW_INVOICE_APP_H
#define TW_INVOICE_APP_H

#include "cache.h"
#include "db.h"
#include "httpd.h"
#include "options.h"
#include "revocations.h"
#include "ticket_keys.h"
#include "store.h"
#include "twoway_pki.h"

#include <stdatomic.h>

/* The whole program: one per process. */
typedef struct inv_app {
    const inv_options *opt;
    inv_db *db;           /* the database: writer, and reader threads */
    httpd *h;
    tw_renewal *renewal;  /* NULL: no --renew, no --crl-url */
    inv_revocations *revocations; /* NULL: no --revocations */
    inv_ticket_keys *ticket_keys; /* NULL: not shared through PostgreSQL */
    atomic_int renewed;   /* TW_RENEWAL_* bits not reloaded yet */
} inv_app;

/* What each worker keeps: its reads, the queue its finished POSTs (and
 * PostgreSQL's reads) come back on, its cache of rendered invoices, and its
 * copy of "the newest" with the generation it was read at. */
typedef struct inv_worker {
    inv_db *db;
    db_reads *reads;
    store_queue *queue;
    inv_cache *cache; /* NULL: serve without */
    twu_buf newest;   /* empty: none */
    unsigned newest_gen;
    int in_read;      /* inside a db_* read call (routes.c) */
} inv_worker;

/* run.c: run until SIGTERM; the exit code. */
int inv_run(const inv_options *o);

/* renewal.c: enrol before the files are loaded (an exit code, 0 to go
 * on), then keep the certificate and the CRL current while serving. */
int inv_renewal_prepare(inv_app *app);
int inv_renewal_start(inv_app *app);
void inv_renewal_stop(inv_app *app);
/* On the main thread's tick: reload when the renewal changed the files. */
void inv_renewal_tick(inv_app *app);
/* The renewal's lines of GET /metrics (none without renewal). */
void inv_renewal_metrics(inv_app *app, twu_buf *b);

/* routes.c: the API's routes, and the per-worker state they use. */
int inv_routes_add(httpd *h);
int inv_worker_start(httpd_worker *hw, void *app, void **state, tw_err *err);
void inv_worker_stop(void *state);

#endif
