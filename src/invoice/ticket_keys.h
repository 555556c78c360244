/*
 * ticket_keys.h - TLS ticket keys shared through PostgreSQL
 * (ticket_keys.c): with --db postgresql://... and --ticket-keys FILE, the
 * instances draw their ticket keys from the database, sealed with a key
 * derived from FILE, and rotate them.
 */
#ifndef TW_INVOICE_TICKET_KEYS_H
#define TW_INVOICE_TICKET_KEYS_H

#include "pg.h"

typedef struct inv_ticket_keys inv_ticket_keys;

/* Read the sealing key from `file`, connect to `url`, make a new ticket key
 * when none is younger than `rotate_s` (one instance at a time), and read
 * the keys in use.  NULL with `err` at start: the database cannot be
 * reached, or its keys were sealed with another file's key. */
inv_ticket_keys *inv_ticket_keys_open(const char *url, const char *file,
                                      long rotate_s, pg_log_fn *log,
                                      void *log_ctx, tw_err *err);
/* Rotate and re-read on a thread of its own from now on. */
int inv_ticket_keys_run(inv_ticket_keys *t, tw_err *err);
void inv_ticket_keys_stop(inv_ticket_keys *t);

/* Give `cfg` the keys in use (the one that makes tickets first); -1 with
 * the config's error. */
int inv_ticket_keys_apply(inv_ticket_keys *t, tw_config *cfg);
/* Whether the keys changed since the last call (then: reload). */
int inv_ticket_keys_take(inv_ticket_keys *t);
/* Lines of GET /metrics. */
void inv_ticket_keys_metrics(inv_ticket_keys *t, twu_buf *b);

#endif
