/*
 * revocations.h - invoice-server --revocations URL: revocations pushed
 * from the CA index in PostgreSQL (revocations.c), refused before any CRL
 * is published.
 */
#ifndef TW_INVOICE_REVOCATIONS_H
#define TW_INVOICE_REVOCATIONS_H

#include "pg.h"

typedef struct inv_revocations inv_revocations;

/* Connect to the CA index at `url`, listen for revocations and read those
 * of certificates not yet expired (at start: refused with `err` when the
 * database cannot be reached or holds no twoway-ca index). */
inv_revocations *inv_revocations_open(const char *url, pg_log_fn *log,
                                      void *log_ctx, tw_err *err);
/* Listen on a thread of its own from now on. */
int inv_revocations_run(inv_revocations *r, tw_err *err);
void inv_revocations_stop(inv_revocations *r);

/* Add every revocation held (certificates not yet expired) to `cfg`
 * (tw_config_add_revoked_fingerprint); -1 with the config's error. */
int inv_revocations_apply(inv_revocations *r, tw_config *cfg);
/* How many revocations arrived since the last call (then: reload), and
 * the serial of the last of them for the log, in `serial`. */
unsigned inv_revocations_take(inv_revocations *r, char *serial, size_t len);
/* Lines of GET /metrics. */
void inv_revocations_metrics(inv_revocations *r, twu_buf *b);

#endif
