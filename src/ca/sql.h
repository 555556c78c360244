/*
 * sql.h - the CA index's connection, on SQLite (DIR/ca.db) or PostgreSQL
 * (a postgresql:// URL named in DIR/index.conf): one small statement API
 * over both, shaped like SQLite's, so that every query of the CA is written
 * once.
 *
 * SQL is written in the dialect both accept, with `?` or `?N` placeholders
 * (numbered $N for PostgreSQL here).  Columns read as text or integers; a
 * PostgreSQL boolean reads as 1 or 0.  On PostgreSQL, "BEGIN IMMEDIATE"
 * is BEGIN plus an advisory lock every CA process takes (so issuing and
 * revoking stay one at a time, as SQLite's write lock makes them), PRAGMAs
 * are skipped, and the tables live in the schema twoway_ca.
 */
#ifndef TW_CA_SQL_H
#define TW_CA_SQL_H

#include "twoway.h"

#include <stdint.h>

/* Step results and error codes (SQLite's values). */
#define SQL_OK 0
#define SQL_ERROR 1
#define SQL_BUSY 5
#define SQL_READONLY 8
#define SQL_ROW 100
#define SQL_DONE 101

typedef struct sql_db sql_db;
typedef struct sql_stmt sql_stmt;

/* Whether `target` is a PostgreSQL URL (postgresql:// or postgres://). */
int sql_is_url(const char *target);

#define SQL_OPEN_CREATE 0x1   /* SQLite: create the file when missing */
#define SQL_OPEN_READONLY 0x2
/* Open an SQLite file or connect to a PostgreSQL URL; NULL with `err`
 * naming what (a URL is named without its password). */
sql_db *sql_open(const char *target, int flags, tw_err *err);
void sql_close(sql_db *db);
int sql_is_pg(const sql_db *db);
/* What the messages call it: the file name, or "postgresql host=...". */
const char *sql_name(const sql_db *db);

/* Run statements (no parameters): SQL_OK or an error code. */
int sql_exec(sql_db *db, const char *sql);
/* SQLite: how long to wait for another process's lock. */
void sql_busy_timeout(sql_db *db, int ms);
/* The last error: its code (SQL_BUSY, SQL_READONLY, SQL_ERROR) and text. */
int sql_errcode(sql_db *db);
const char *sql_errmsg(sql_db *db);
/* Rows the last INSERT, UPDATE or DELETE changed. */
int sql_changes(sql_db *db);

int sql_prepare(sql_db *db, const char *sql, sql_stmt **st);
/* Parameters from 1; text is not copied (keep it until the last step).
 * SQL_OK, or an error code for a parameter out of range. */
int sql_bind_text(sql_stmt *st, int i, const char *v);
int sql_bind_int64(sql_stmt *st, int i, int64_t v);
/* SQL_ROW, SQL_DONE or an error code. */
int sql_step(sql_stmt *st);
/* Columns of the current row, from 0; NULL text for SQL NULL. */
const char *sql_col_text(sql_stmt *st, int i);
int64_t sql_col_int64(sql_stmt *st, int i);
int sql_col_int(sql_stmt *st, int i);
int sql_col_null(sql_stmt *st, int i);
void sql_finalize(sql_stmt *st);

/* PostgreSQL: LISTEN on `channel` (SQL_OK; SQLite: nothing to do). */
int sql_listen(sql_db *db, const char *channel);
/* How many notifications arrived since the last call (never waits; 0 on
 * SQLite, -1 when the connection is lost). */
int sql_notifications(sql_db *db);

#endif
