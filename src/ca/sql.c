/*
 * sql.c - the CA index's statements on SQLite or PostgreSQL (see sql.h).
 *
 * SQLite: each call is the sqlite3_* call of the same name.
 * PostgreSQL: a statement keeps its SQL (placeholders renumbered to $N)
 * and its parameters as text; the first step runs it (PQexecParams, text
 * results) and each step after moves to the next row.
 *
 * Owns: the connection, and each statement until sql_finalize.
 */
#include "sql.h"
#include "pgutil.h"
#include "util.h"

#include <sqlite3.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARAMS 16
/* pg_advisory_xact_lock key of every CA write ("twoway" + 3). */
#define CA_LOCK "7477776179000003"

struct sql_db {
    sqlite3 *lite;
    PGconn *pg;
    char *name;
    char errmsg[512];
    int errcode;
    int changes;
};

struct sql_stmt {
    sql_db *db;
    sqlite3_stmt *lite;
    char *sql;                      /* PostgreSQL: with $N */
    const char *params[MAX_PARAMS]; /* PostgreSQL: text, or NULL */
    char ints[MAX_PARAMS][24];
    int nparams;
    PGresult *res;
    int row;                        /* -1 before the first step */
};

int sql_is_url(const char *target)
{
    return twu_pg_is_url(target);
}

/* ------------------------------------------------------------ errors */

static int pg_failed(sql_db *db, const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                                    : NULL;
    const char *m = res != NULL ? PQresultErrorMessage(res) : "";

    if (m == NULL || m[0] == '\0')
        m = PQerrorMessage(db->pg);
    snprintf(db->errmsg, sizeof(db->errmsg), "%.*s", (int)strcspn(m, "\n"), m);
    if (db->errmsg[0] == '\0')
        snprintf(db->errmsg, sizeof(db->errmsg), "the connection was lost");
    /* 25006: read-only transaction; 42501: insufficient privilege. */
    db->errcode = state != NULL && (strcmp(state, "25006") == 0 ||
                                    strcmp(state, "42501") == 0)
                      ? SQL_READONLY
                      : SQL_ERROR;
    return db->errcode;
}

int sql_errcode(sql_db *db)
{
    return db->lite != NULL ? sqlite3_errcode(db->lite) & 0xff : db->errcode;
}

const char *sql_errmsg(sql_db *db)
{
    return db->lite != NULL ? sqlite3_errmsg(db->lite) : db->errmsg;
}

int sql_changes(sql_db *db)
{
    return db->lite != NULL ? sqlite3_changes(db->lite) : db->changes;
}

/* ------------------------------------------------------- connections */

sql_db *sql_open(const char *target, int flags, tw_err *err)
{
    sql_db *db = twu_calloc(1, sizeof(*db));
    PGresult *res;

    if (db == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    if (!sql_is_url(target)) {
        int f = flags & SQL_OPEN_READONLY ? SQLITE_OPEN_READONLY
                                          : SQLITE_OPEN_READWRITE;

        if (flags & SQL_OPEN_CREATE)
            f |= SQLITE_OPEN_CREATE;
        if ((db->name = twu_strdup(target)) == NULL) {
            twu_err_nomem(err);
            goto err;
        }
        if (sqlite3_open_v2(target, &db->lite, f, NULL) != SQLITE_OK) {
            twu_err(err, TW_ERR_IO, "cannot open %s: %s", target,
                    db->lite != NULL ? sqlite3_errmsg(db->lite)
                                     : "out of memory");
            goto err;
        }
        return db;
    }
    if ((db->name = twu_pg_describe(target)) == NULL) {
        twu_err_nomem(err);
        goto err;
    }
    if ((db->pg = twu_pg_connect(target, "twoway-ca", err)) == NULL)
        goto err;
    /* The CA's tables are in their own schema; read-only connections
     * (serve's metrics) are read-only at the server too. */
    res = PQexec(db->pg, flags & SQL_OPEN_READONLY
                             ? "SET search_path = twoway_ca; "
                               "SET default_transaction_read_only = on"
                             : "SET search_path = twoway_ca");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pg_failed(db, res);
        twu_err(err, TW_ERR_IO, "cannot set up the connection to %s: %s",
                db->name, db->errmsg);
        PQclear(res);
        goto err;
    }
    PQclear(res);
    return db;
err:
    sql_close(db);
    return NULL;
}

void sql_close(sql_db *db)
{
    if (db == NULL)
        return;
    sqlite3_close(db->lite);
    PQfinish(db->pg);
    twu_free(db->name);
    twu_free(db);
}

int sql_is_pg(const sql_db *db)
{
    return db->pg != NULL;
}

const char *sql_name(const sql_db *db)
{
    return db->name;
}

void sql_busy_timeout(sql_db *db, int ms)
{
    if (db->lite != NULL)
        sqlite3_busy_timeout(db->lite, ms);
}

/* One PostgreSQL command (no parameters, results dropped). */
static int pg_exec(sql_db *db, const char *sql)
{
    PGresult *res = PQexec(db->pg, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = SQL_OK;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = pg_failed(db, res);
    else
        db->changes = atoi(PQcmdTuples(res));
    PQclear(res);
    return rc;
}

int sql_exec(sql_db *db, const char *sql)
{
    if (db->lite != NULL)
        return sqlite3_exec(db->lite, sql, NULL, NULL, NULL);
    if (strncmp(sql, "PRAGMA", 6) == 0)
        return SQL_OK; /* SQLite's settings: the server keeps its own */
    if (strcmp(sql, "BEGIN IMMEDIATE") == 0)
        return pg_exec(db, "BEGIN") != SQL_OK
                   ? db->errcode
                   : pg_exec(db, "SELECT pg_advisory_xact_lock(" CA_LOCK ")");
    return pg_exec(db, sql);
}

/* -------------------------------------------------------- statements */

/* `?` and `?N` to $N, outside quoted strings; NULL when out of memory. */
static char *renumber(const char *sql, int *nparams)
{
    twu_buf b = {0};
    int next = 0, quoted = 0;

    *nparams = 0;
    for (const char *p = sql; *p != '\0'; p++) {
        int n;

        if (*p == '\'')
            quoted = !quoted;
        if (quoted || *p != '?') {
            if (twu_buf_append(&b, p, 1) < 0)
                goto nomem;
            continue;
        }
        if (p[1] >= '1' && p[1] <= '9') {
            n = (int)strtol(p + 1, (char **)&p, 10);
            p--;
        } else {
            n = ++next;
        }
        if (n > *nparams)
            *nparams = n;
        if (twu_buf_printf(&b, "$%d", n) < 0)
            goto nomem;
    }
    if (b.data == NULL && twu_buf_append(&b, "", 0) < 0)
        goto nomem;
    return b.data;
nomem:
    twu_buf_free(&b);
    return NULL;
}

int sql_prepare(sql_db *db, const char *sql, sql_stmt **out)
{
    sql_stmt *st = twu_calloc(1, sizeof(*st));

    *out = NULL;
    if (st == NULL)
        return db->lite != NULL ? SQLITE_NOMEM : (db->errcode = SQL_ERROR);
    st->db = db;
    st->row = -1;
    if (db->lite != NULL) {
        int rc = sqlite3_prepare_v2(db->lite, sql, -1, &st->lite, NULL);

        if (rc != SQLITE_OK) {
            twu_free(st);
            return rc;
        }
        *out = st;
        return SQL_OK;
    }
    if ((st->sql = renumber(sql, &st->nparams)) == NULL ||
        st->nparams > MAX_PARAMS) {
        snprintf(db->errmsg, sizeof(db->errmsg), "a query with too many "
                 "parameters, or out of memory");
        twu_free(st->sql);
        twu_free(st);
        return db->errcode = SQL_ERROR;
    }
    *out = st;
    return SQL_OK;
}

int sql_bind_text(sql_stmt *st, int i, const char *v)
{
    if (st->lite != NULL)
        return sqlite3_bind_text(st->lite, i, v, -1, SQLITE_STATIC);
    if (i < 1 || i > st->nparams)
        return SQL_ERROR;
    st->params[i - 1] = v;
    return SQL_OK;
}

int sql_bind_int64(sql_stmt *st, int i, int64_t v)
{
    if (st->lite != NULL)
        return sqlite3_bind_int64(st->lite, i, (sqlite3_int64)v);
    if (i < 1 || i > st->nparams)
        return SQL_ERROR;
    snprintf(st->ints[i - 1], sizeof(st->ints[i - 1]), "%" PRId64, v);
    st->params[i - 1] = st->ints[i - 1];
    return SQL_OK;
}

int sql_step(sql_stmt *st)
{
    sql_db *db = st->db;
    ExecStatusType s;

    if (st->lite != NULL)
        return sqlite3_step(st->lite);
    if (st->res == NULL) {
        st->res = PQexecParams(db->pg, st->sql, st->nparams, NULL, st->params,
                               NULL, NULL, 0);
        s = PQresultStatus(st->res);
        if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
            int rc = pg_failed(db, st->res);

            PQclear(st->res);
            st->res = NULL;
            return rc;
        }
        db->changes = atoi(PQcmdTuples(st->res));
    }
    st->row++;
    return st->row < PQntuples(st->res) ? SQL_ROW : SQL_DONE;
}

const char *sql_col_text(sql_stmt *st, int i)
{
    if (st->lite != NULL)
        return (const char *)sqlite3_column_text(st->lite, i);
    if (st->res == NULL || st->row < 0 || st->row >= PQntuples(st->res) ||
        PQgetisnull(st->res, st->row, i))
        return NULL;
    return PQgetvalue(st->res, st->row, i);
}

int64_t sql_col_int64(sql_stmt *st, int i)
{
    const char *v;

    if (st->lite != NULL)
        return (int64_t)sqlite3_column_int64(st->lite, i);
    if ((v = sql_col_text(st, i)) == NULL)
        return 0;
    if (strcmp(v, "t") == 0 || strcmp(v, "f") == 0) /* a boolean */
        return v[0] == 't';
    return (int64_t)strtoll(v, NULL, 10);
}

int sql_col_int(sql_stmt *st, int i)
{
    return (int)sql_col_int64(st, i);
}

int sql_col_null(sql_stmt *st, int i)
{
    if (st->lite != NULL)
        return sqlite3_column_type(st->lite, i) == SQLITE_NULL;
    return sql_col_text(st, i) == NULL;
}

void sql_finalize(sql_stmt *st)
{
    if (st == NULL)
        return;
    sqlite3_finalize(st->lite);
    PQclear(st->res);
    twu_free(st->sql);
    twu_free(st);
}

/* ----------------------------------------------------- notifications */

int sql_listen(sql_db *db, const char *channel)
{
    char q[128];

    if (db->pg == NULL)
        return SQL_OK;
    snprintf(q, sizeof(q), "LISTEN %s", channel);
    return pg_exec(db, q);
}

int sql_notifications(sql_db *db)
{
    PGnotify *n;
    int count = 0;

    if (db->pg == NULL)
        return 0;
    if (PQconsumeInput(db->pg) != 1)
        return -1;
    while ((n = PQnotifies(db->pg)) != NULL) {
        count++;
        PQfreemem(n);
    }
    return count;
}
