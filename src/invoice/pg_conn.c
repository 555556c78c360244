/*
 * pg_conn.c - PostgreSQL connections for the invoice store: telling a URL
 * from a file name, describing it without its password, connecting, and
 * the schema (created in one transaction, checked on every connection).
 *
 * Called by: db.c (at start), pg_reader.c and pg_writer.c (each connection
 * they open, and again after a lost one).
 */
#include "pg.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* pg_advisory_xact_lock key of the schema's creation ("twoway" + 1). */
#define SCHEMA_LOCK "7477776179000001"

int pg_prepare(PGconn *c, const char *name, const char *sql, int nparams,
               const char *desc, tw_err *err)
{
    PGresult *res = PQprepare(c, name, sql, nparams, NULL);
    char line[256];
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;

    PQclear(res);
    if (!ok)
        return twu_err(err, TW_ERR_IO, "cannot prepare a query on %s: %s",
                       desc, twu_pg_error_line(c, line, sizeof(line)));
    return 0;
}

void pg_row(const PGresult *res, int i, int col, store__row *row)
{
    row->number = PQgetvalue(res, i, col);
    row->firstname = PQgetvalue(res, i, col + 1);
    row->lastname = PQgetvalue(res, i, col + 2);
    row->email = PQgetvalue(res, i, col + 3);
    row->amount_minor = strtoll(PQgetvalue(res, i, col + 4), NULL, 10);
    row->currency = PQgetvalue(res, i, col + 5);
    row->created_at = strtoll(PQgetvalue(res, i, col + 6), NULL, 10);
}

/* ------------------------------------------------------------- schema */

/* Run one statement (no parameters); -1 with `err` naming `desc`. */
static int exec(PGconn *c, const char *desc, const char *sql, tw_err *err)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    char line[256];

    PQclear(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return twu_err(err, TW_ERR_IO, "cannot set up the invoice tables in "
                       "%s: %s", desc, twu_pg_error_line(c, line, sizeof(line)));
    return 0;
}

/* The meta value of `key` ("" when absent): 1, 0 when there is no meta
 * table yet, -1 on error. */
static int meta_get(PGconn *c, const char *key, char *buf, size_t len)
{
    const char *params[] = {key};
    PGresult *res;
    int rc;

    buf[0] = '\0';
    res = PQexec(c, "SELECT to_regclass('twoway_invoices.meta') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        PQclear(res);
        return -1;
    }
    rc = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!rc)
        return 0;
    res = PQexecParams(c, "SELECT value FROM twoway_invoices.meta WHERE key = $1",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        return -1;
    }
    if (PQntuples(res) == 1)
        snprintf(buf, len, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return 1;
}

int pg_schema_check(PGconn *c, const char *desc, tw_err *err)
{
    char app[64], version[64], line[256];
    int rc = meta_get(c, "application", app, sizeof(app));

    if (rc < 0)
        return twu_err(err, TW_ERR_IO, "cannot read %s: %s", desc,
                       twu_pg_error_line(c, line, sizeof(line)));
    if (rc == 0 || strcmp(app, STORE__APPLICATION) != 0)
        return twu_err(err, TW_ERR_INPUT,
                       "%s has no invoice tables (schema twoway_invoices); "
                       "start invoice-server with this --db once to create "
                       "them",
                       desc);
    if (meta_get(c, "schema_version", version, sizeof(version)) < 0)
        return twu_err(err, TW_ERR_IO, "cannot read %s: %s", desc,
                       twu_pg_error_line(c, line, sizeof(line)));
    if (strcmp(version, STORE__SCHEMA_VERSION) != 0)
        return twu_err(err, TW_ERR_INPUT,
                       "the invoice tables in %s have schema version '%s'; "
                       "this server reads version " STORE__SCHEMA_VERSION,
                       desc, version);
    return 0;
}

static const char schema_sql[] =
    "CREATE SCHEMA IF NOT EXISTS twoway_invoices;"
    "CREATE TABLE twoway_invoices.meta("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL);"
    "CREATE TABLE twoway_invoices.invoices("
    "  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  number TEXT UNIQUE NOT NULL,"
    "  firstname TEXT NOT NULL,"
    "  lastname TEXT NOT NULL,"
    "  email TEXT NOT NULL,"
    "  amount_minor BIGINT NOT NULL CHECK(amount_minor >= 0),"
    "  currency TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL);" /* unix seconds, UTC */
    "CREATE TABLE twoway_invoices.idempotency("
    "  client TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  number TEXT NOT NULL,"
    "  request_hash TEXT NOT NULL,"
    "  created_at BIGINT,"
    "  PRIMARY KEY(client, key));"
    "INSERT INTO twoway_invoices.meta VALUES"
    "  ('application', '" STORE__APPLICATION "'),"
    "  ('schema_version', '" STORE__SCHEMA_VERSION "');"
    /* The seed's invoice (mtls-tutorial: John Ji, 00095234, "10USD"). */
    "INSERT INTO twoway_invoices.invoices(" STORE__INVOICE_COLUMNS ") VALUES"
    "  ('00095234', 'John', 'Ji', 'john.ji@example.com', 1000, 'USD',"
    "   extract(epoch FROM now())::bigint);";

int pg_schema_init(const char *url, tw_err *err)
{
    char *desc = twu_pg_describe(url);
    const char *d = desc != NULL ? desc : "PostgreSQL";
    char app[64];
    PGconn *c = twu_pg_connect(url, "invoice-server", err);
    int rc = -1, have;

    if (c == NULL)
        goto out;
    /* Under the lock, look again: another instance may have made them. */
    if (exec(c, d, "BEGIN", err) < 0 ||
        exec(c, d, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK ")", err) < 0)
        goto out;
    if ((have = meta_get(c, "application", app, sizeof(app))) < 0) {
        char line[256];

        twu_err(err, TW_ERR_IO, "cannot read %s: %s", d,
                twu_pg_error_line(c, line, sizeof(line)));
        goto out;
    }
    if (have == 0 && exec(c, d, schema_sql, err) < 0)
        goto out;
    if (pg_schema_check(c, d, err) < 0 || exec(c, d, "COMMIT", err) < 0)
        goto out;
    rc = 0;
out:
    PQfinish(c); /* an open transaction is rolled back */
    twu_free(desc);
    return rc;
}
