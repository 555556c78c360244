/*
 * cadb.c - the CA's index, ca.db: every certificate issued and every
 * revocation, in SQLite.  Issuing and revoking are transactions taken with
 * BEGIN IMMEDIATE, so two twoway-ca processes never draw the same serial or
 * CRL number, and a crash leaves the index as it was before or after.
 *
 * While one command holds the index, another waits for it at most
 * CADB_BUSY_TIMEOUT_S seconds (or TWOWAY_CA_BUSY_TIMEOUT) and then says the
 * index is busy: a busy index needs patience, a file that is not an index
 * needs repair, and the two must never read alike.
 */
#include "ca.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Schema 2.  Schema 1 (twoway 0.1) is the same without the tokens table
 * and certs.replaces; upgrade[] turns one into the other. */
static const char schema[] =
    "PRAGMA journal_mode=DELETE;"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO meta VALUES ('schema', '2'), ('crl_number', '0');"
    "CREATE TABLE certs ("
    " serial TEXT PRIMARY KEY,"       /* upper-case hex */
    " subject TEXT NOT NULL,"
    " sans TEXT NOT NULL,"            /* DNS:a,IP:b,... */
    " purpose TEXT NOT NULL,"         /* server, client, server+client */
    " not_before INTEGER NOT NULL,"   /* Unix time */
    " not_after INTEGER NOT NULL,"
    " fingerprint TEXT NOT NULL,"     /* SHA-256, hex */
    " pem TEXT NOT NULL,"
    " issued_at INTEGER NOT NULL,"
    " revoked_at INTEGER,"
    " revoke_reason INTEGER,"
    " replaces TEXT);"                /* the serial a renewal replaces */
    "CREATE TABLE tokens ("
    " hash TEXT PRIMARY KEY,"         /* SHA-256 of the token, hex */
    " subject TEXT NOT NULL,"
    " sans TEXT NOT NULL,"            /* DNS:a,IP:b,URI:u,email:e */
    " purposes INTEGER NOT NULL,"     /* TW_PURPOSE_* bits */
    " lifetime INTEGER NOT NULL,"     /* seconds; 0: the server's default */
    " created_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL,"
    " used_at INTEGER,"
    " used_serial TEXT);";

/* The same tables on PostgreSQL, in their own schema (the connection's
 * search_path); rowid keeps the order of insertion, as SQLite's does. */
static const char pg_schema[] =
    "CREATE SCHEMA twoway_ca;"
    "CREATE TABLE twoway_ca.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO twoway_ca.meta VALUES ('schema', '2'), ('crl_number', '0');"
    "CREATE TABLE twoway_ca.certs ("
    " rowid BIGINT GENERATED ALWAYS AS IDENTITY,"
    " serial TEXT PRIMARY KEY,"
    " subject TEXT NOT NULL,"
    " sans TEXT NOT NULL,"
    " purpose TEXT NOT NULL,"
    " not_before BIGINT NOT NULL,"
    " not_after BIGINT NOT NULL,"
    " fingerprint TEXT NOT NULL,"
    " pem TEXT NOT NULL,"
    " issued_at BIGINT NOT NULL,"
    " revoked_at BIGINT,"
    " revoke_reason INTEGER,"
    " replaces TEXT);"
    "CREATE TABLE twoway_ca.tokens ("
    " rowid BIGINT GENERATED ALWAYS AS IDENTITY,"
    " hash TEXT PRIMARY KEY,"
    " subject TEXT NOT NULL,"
    " sans TEXT NOT NULL,"
    " purposes INTEGER NOT NULL,"
    " lifetime BIGINT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " expires_at BIGINT NOT NULL,"
    " used_at BIGINT,"
    " used_serial TEXT);"
    /* The audit, shared by every CA process (audit.log is one machine's). */
    "CREATE TABLE twoway_ca.audit ("
    " rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " at BIGINT NOT NULL,"
    " line TEXT NOT NULL);";

/* Schema 1 to 2, inside the transaction cadb_check takes. */
static const char upgrade_1_to_2[] =
    "ALTER TABLE certs ADD COLUMN replaces TEXT;"
    "CREATE TABLE tokens ("
    " hash TEXT PRIMARY KEY,"
    " subject TEXT NOT NULL,"
    " sans TEXT NOT NULL,"
    " purposes INTEGER NOT NULL,"
    " lifetime INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL,"
    " used_at INTEGER,"
    " used_serial TEXT);"
    "UPDATE meta SET value='2' WHERE key='schema';";

/* What failed, in which index file, and what SQLite said; a read-only
 * index (the CA owned by another user) says what to do. */
static int db_err(sql_db *db, tw_err *err, const char *what)
{
    const char *file = sql_name(db);

    if (sql_errcode(db) == SQL_READONLY)
        return twu_err(err, TW_ERR_IO, "%s in %s: the index is read-only for "
                       "this user: run twoway-ca as the CA's owner, or make "
                       "the file and its directory writable", what,
                       file && *file ? file : "the CA index");
    return twu_err(err, TW_ERR_IO, "%s in %s: %s", what,
                   file && *file ? file : "the CA index", sql_errmsg(db));
}

/* The wait cadb_check set, for the busy message.  Every connection of a
 * process gets the same value: a file-level one is enough. */
static atomic_int busy_timeout_s = CADB_BUSY_TIMEOUT_S;

/* SQL_BUSY is what a lock held past the busy timeout returns; the
 * primary code, because the extended ones (SQL_BUSY_RECOVERY, ...) mean
 * the same to us. */
static int is_busy(sql_db *db)
{
    return sql_errcode(db) == SQL_BUSY;
}

static int busy_err(const char *path, tw_err *err)
{
    return twu_err(err, TW_ERR_BLOCKED,
                   "%s is busy: another twoway-ca command holds it (waited "
                   "%d s); try again", path, atomic_load(&busy_timeout_s));
}

int cadb_err(sql_db *db, const char *path, const char *what, tw_err *err)
{
    if (is_busy(db))
        return busy_err(path, err);
    return twu_err(err, TW_ERR_IO, "%s %s: %s", what, path,
                   sql_errmsg(db));
}

int cadb_create(sql_db *db, tw_err *err)
{
    if (sql_exec(db, sql_is_pg(db) ? pg_schema : schema) != SQL_OK)
        return db_err(db, err, "cannot create the CA index");
    return 0;
}

/* The schema version `path` says it has: 1 or 2 in *version (0 for
 * anything else).  0, or -1 with `err`. */
static int read_version(sql_db *db, const char *path, int *version,
                        tw_err *err)
{
    sql_stmt *st = NULL;
    const char *text;
    int step;

    /* Reading the schema waits for a lock another process holds; only
     * what fails for another reason is "not an index". */
    if (sql_prepare(db, "SELECT value FROM meta WHERE key='schema'", &st) != SQL_OK) {
        if (is_busy(db))
            return busy_err(path, err);
        return twu_err(err, TW_ERR_INPUT,
                       "%s is not a twoway CA index: %s", path,
                       sql_errmsg(db));
    }
    step = sql_step(st);
    text = step == SQL_ROW ? sql_col_text(st, 0)
                              : NULL;
    *version = text == NULL ? 0 : strcmp(text, "1") == 0 ? 1
                                : strcmp(text, "2") == 0 ? 2 : 0;
    sql_finalize(st);
    if (step == SQL_BUSY)
        return busy_err(path, err);
    return 0;
}

/* Upgrade a schema 1 index in one transaction: a crash leaves schema 1,
 * and of several processes opening it at once the first upgrades and the
 * others find schema 2 once they hold the lock. */
static int upgrade(sql_db *db, const char *path, tw_err *err)
{
    int version;

    if (cadb_begin(db, path, err) < 0)
        return -1;
    if (read_version(db, path, &version, err) < 0)
        goto err;
    if (version == 1 &&
        sql_exec(db, upgrade_1_to_2) != SQL_OK) {
        cadb_err(db, path, "cannot upgrade to schema 2", err);
        goto err;
    }
    return cadb_commit(db, path, err);
err:
    cadb_rollback(db);
    return -1;
}

int cadb_check(sql_db *db, const char *path, tw_err *err)
{
    const char *env = getenv(CADB_BUSY_TIMEOUT_ENV);
    long seconds = CADB_BUSY_TIMEOUT_S;
    int version;

    if (env != NULL && twu_parse_long(env, 0, CADB_BUSY_TIMEOUT_MAX,
                                      &seconds) < 0)
        return twu_err(err, TW_ERR_USAGE,
                       "%s='%s' is not a number of seconds from 0 to %d",
                       CADB_BUSY_TIMEOUT_ENV, env, CADB_BUSY_TIMEOUT_MAX);
    /* serve's workers check their connections at once: atomic. */
    atomic_store(&busy_timeout_s, (int)seconds);
    sql_busy_timeout(db, (int)seconds * 1000);
    if (sql_exec(db, "PRAGMA synchronous=FULL;") !=
        SQL_OK) {
        if (is_busy(db))
            return busy_err(path, err);
        return twu_err(err, TW_ERR_INPUT,
                       "%s is not a twoway CA index: %s", path,
                       sql_errmsg(db));
    }
    if (read_version(db, path, &version, err) < 0)
        return -1;
    if (version == 1 && upgrade(db, path, err) < 0)
        return -1;
    if (version == 0)
        return twu_err(err, TW_ERR_INPUT,
                       "%s has an unknown schema version", path);
    return 0;
}

int cadb_begin(sql_db *db, const char *path, tw_err *err)
{
    if (sql_exec(db, "BEGIN IMMEDIATE") != SQL_OK)
        return cadb_err(db, path, "cannot lock the CA index", err);
    return 0;
}

int cadb_commit(sql_db *db, const char *path, tw_err *err)
{
    /* COMMIT waits for readers to let go; when they do not in time, the
     * transaction is still open and rolled back here. */
    if (sql_exec(db, "COMMIT") != SQL_OK) {
        cadb_err(db, path, "cannot commit to the CA index", err);
        cadb_rollback(db);
        return -1;
    }
    return 0;
}

void cadb_rollback(sql_db *db)
{
    sql_exec(db, "ROLLBACK");
}

int cadb_serial_exists(sql_db *db, const char *serial, tw_err *err)
{
    sql_stmt *st;
    int rc;

    if (sql_prepare(db, "SELECT 1 FROM certs WHERE serial=?", &st) != SQL_OK)
        return db_err(db, err, "cannot read the CA index");
    sql_bind_text(st, 1, serial);
    rc = sql_step(st);
    sql_finalize(st);
    if (rc == SQL_ROW)
        return 1;
    if (rc == SQL_DONE)
        return 0;
    return db_err(db, err, "cannot read the CA index");
}

int cadb_record(sql_db *db, const tw_cert *cert, tw_err *err)
{
    tw_identity *id = tw_identity_from_cert(cert, err);
    char *sans = NULL, *pem = NULL;
    sql_stmt *st = NULL;
    int rc = -1;

    if (id == NULL)
        return -1;
    if ((sans = ca_sans_text(id)) == NULL ||
        (pem = tw_cert_to_pem(cert, err)) == NULL) {
        twu_err_nomem(err);
        goto done;
    }
    if (sql_prepare(db, "INSERT INTO certs (serial, subject, sans, purpose,"
                           " not_before, not_after, fingerprint, pem,"
                           " issued_at) VALUES (?,?,?,?,?,?,?,?,?)", &st) != SQL_OK) {
        db_err(db, err, "cannot record the certificate");
        goto done;
    }
    sql_bind_text(st, 1, tw_identity_serial(id));
    sql_bind_text(st, 2, tw_identity_subject(id));
    sql_bind_text(st, 3, sans);
    sql_bind_text(st, 4, ca_purpose_text(tw_identity_purposes(id)));
    sql_bind_int64(st, 5, (int64_t)tw_identity_not_before(id));
    sql_bind_int64(st, 6, (int64_t)tw_identity_not_after(id));
    sql_bind_text(st, 7, tw_identity_fingerprint(id));
    sql_bind_text(st, 8, pem);
    sql_bind_int64(st, 9, (int64_t)time(NULL));
    if (sql_step(st) != SQL_DONE) {
        db_err(db, err, "cannot record the certificate");
        goto done;
    }
    rc = 0;
done:
    sql_finalize(st);
    twu_free(sans);
    twu_free(pem);
    tw_identity_free(id);
    return rc;
}

int cadb_next_crl_number(sql_db *db, uint64_t *number, tw_err *err)
{
    sql_stmt *st = NULL;
    int rc = -1;

    if (sql_prepare(db, "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT)"
                           " WHERE key='crl_number' RETURNING value", &st) != SQL_OK ||
        sql_step(st) != SQL_ROW) {
        db_err(db, err, "cannot draw a CRL number");
        goto done;
    }
    *number = (uint64_t)sql_col_int64(st, 0);
    rc = 0;
done:
    sql_finalize(st);
    return rc;
}

int cadb_set_replaces(sql_db *db, const char *serial, const char *replaces,
                      tw_err *err)
{
    sql_stmt *st = NULL;
    int rc = -1;

    if (sql_prepare(db, "UPDATE certs SET replaces=? WHERE serial=?", &st) != SQL_OK ||
        sql_bind_text(st, 1, replaces) != SQL_OK ||
        sql_bind_text(st, 2, serial) != SQL_OK ||
        sql_step(st) != SQL_DONE) {
        db_err(db, err, "cannot record what the certificate replaces");
        goto done;
    }
    if (sql_changes(db) != 1) {
        twu_err(err, TW_ERR_INTERNAL, "certificate %s is not in the index",
                serial);
        goto done;
    }
    rc = 0;
done:
    sql_finalize(st);
    return rc;
}

int cadb_cert_status(sql_db *db, const char *serial, int *revoked,
                     time_t *not_after, tw_err *err)
{
    sql_stmt *st = NULL;
    int rc = -1, step;

    if (sql_prepare(db, "SELECT revoked_at IS NOT NULL, not_after"
                               " FROM certs WHERE serial=?", &st) != SQL_OK ||
        sql_bind_text(st, 1, serial) != SQL_OK) {
        db_err(db, err, "cannot read the CA index");
        goto done;
    }
    step = sql_step(st);
    if (step == SQL_ROW) {
        *revoked = sql_col_int(st, 0);
        *not_after = (time_t)sql_col_int64(st, 1);
        rc = 1;
    } else if (step == SQL_DONE) {
        rc = 0;
    } else {
        db_err(db, err, "cannot read the CA index");
    }
done:
    sql_finalize(st);
    return rc;
}
