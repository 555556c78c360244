/*
 * app.h - invoice-server as a program on the server core (src/httpd): what
 * run.c sets up and routes.c answers with.
 */
#ifndef TW_INVOICE_APP_H
#define TW_INVOICE_APP_H

#include "cache.h"
#include "httpd.h"
#include "options.h"
#include "store.h"

/* The whole program: one per process. */
typedef struct inv_app {
    const inv_options *opt;
    store_writer *writer; /* the one writer thread (POST /invoices) */
} inv_app;

/* What each worker keeps: its own reader connection, the queue its
 * finished POSTs come back on, and its cache of rendered invoices. */
typedef struct inv_worker {
    tw_store *store;
    store_queue *queue;
    inv_cache *cache; /* NULL: serve without */
} inv_worker;

/* run.c: run until SIGTERM; the exit code. */
int inv_run(const inv_options *o);

/* routes.c: the API's routes, and the per-worker state they use. */
int inv_routes_add(httpd *h);
int inv_worker_start(httpd_worker *hw, void *app, void **state, tw_err *err);
void inv_worker_stop(void *state);

#endif
