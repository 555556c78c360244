/*
 * pgutil.h - PostgreSQL helpers shared by invoice-server and twoway-ca
 * (pgutil.c; the twoway_pgutil library, which links libpq).
 */
#ifndef TW_UTIL_PGUTIL_H
#define TW_UTIL_PGUTIL_H

#include "twoway.h"

#include <libpq-fe.h>

#include <stddef.h>

/* How long a statement may take before the server cancels it. */
#define TWU_PG_STATEMENT_TIMEOUT_MS 5000
#define TWU_PG_STATEMENT_TIMEOUT "5000"

/* Whether `target` names PostgreSQL: a postgresql:// or postgres:// URL. */
int twu_pg_is_url(const char *target);

/* The URL as a message may show it: "postgresql host=... dbname=..."
 * (host, hostaddr, port, dbname, user), never a password.  Allocated;
 * NULL when memory ran out. */
char *twu_pg_describe(const char *url);

/* The first line of the connection's last error, in `buf`. */
const char *twu_pg_error_line(PGconn *c, char *buf, size_t len);

/* A blocking connection named `what` (application_name), with
 * synchronous_commit on, the statement timeout above, and libpq's notices
 * kept off stderr; NULL with `err` (TW_ERR_IO) naming the database. */
PGconn *twu_pg_connect(const char *url, const char *what, tw_err *err);

#endif
