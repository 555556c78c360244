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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char schema[] =
    "PRAGMA journal_mode=DELETE;"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO meta VALUES ('schema', '1'), ('crl_number', '0');"
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
    " revoke_reason INTEGER);";

static int db_err(sqlite3 *db, tw_err *err, const char *what)
{
    return twu_err(err, TW_ERR_IO, "%s: %s", what, sqlite3_errmsg(db));
}

/* The wait cadb_check set, for the busy message.  One CLI process, one
 * index: a file-level value is enough. */
static int busy_timeout_s = CADB_BUSY_TIMEOUT_S;

/* SQLITE_BUSY is what a lock held past the busy timeout returns; the
 * primary code, because the extended ones (SQLITE_BUSY_RECOVERY, ...) mean
 * the same to us. */
static int is_busy(sqlite3 *db)
{
    return sqlite3_errcode(db) == SQLITE_BUSY;
}

static int busy_err(const char *path, tw_err *err)
{
    return twu_err(err, TW_ERR_BLOCKED,
                   "%s is busy: another twoway-ca command holds it (waited "
                   "%d s); try again", path, busy_timeout_s);
}

int cadb_err(sqlite3 *db, const char *path, const char *what, tw_err *err)
{
    if (is_busy(db))
        return busy_err(path, err);
    return twu_err(err, TW_ERR_IO, "%s %s: %s", what, path,
                   sqlite3_errmsg(db));
}

int cadb_create(sqlite3 *db, tw_err *err)
{
    if (sqlite3_exec(db, schema, NULL, NULL, NULL) != SQLITE_OK)
        return db_err(db, err, "cannot create the CA index");
    return 0;
}

int cadb_check(sqlite3 *db, const char *path, tw_err *err)
{
    sqlite3_stmt *st = NULL;
    const char *version, *env = getenv(CADB_BUSY_TIMEOUT_ENV);
    long seconds = CADB_BUSY_TIMEOUT_S;
    int step, ok;

    if (env != NULL && twu_parse_long(env, 0, CADB_BUSY_TIMEOUT_MAX,
                                      &seconds) < 0)
        return twu_err(err, TW_ERR_USAGE,
                       "%s='%s' is not a number of seconds from 0 to %d",
                       CADB_BUSY_TIMEOUT_ENV, env, CADB_BUSY_TIMEOUT_MAX);
    busy_timeout_s = (int)seconds;
    sqlite3_busy_timeout(db, busy_timeout_s * 1000);
    /* Both statements read the schema, so both wait for a lock another
     * process holds; only what fails for another reason is "not an index". */
    if (sqlite3_exec(db, "PRAGMA synchronous=FULL;", NULL, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key='schema'", -1,
                           &st, NULL) != SQLITE_OK) {
        if (is_busy(db))
            return busy_err(path, err);
        return twu_err(err, TW_ERR_INPUT,
                       "%s is not a twoway CA index: %s", path,
                       sqlite3_errmsg(db));
    }
    step = sqlite3_step(st);
    version = step == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0)
                                 : NULL;
    ok = version != NULL && strcmp(version, "1") == 0;
    sqlite3_finalize(st);
    if (step == SQLITE_BUSY)
        return busy_err(path, err);
    if (!ok)
        return twu_err(err, TW_ERR_INPUT,
                       "%s has an unknown schema version", path);
    return 0;
}

int cadb_begin(sqlite3 *db, const char *path, tw_err *err)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return cadb_err(db, path, "cannot lock the CA index", err);
    return 0;
}

int cadb_commit(sqlite3 *db, const char *path, tw_err *err)
{
    /* COMMIT waits for readers to let go; when they do not in time, the
     * transaction is still open and rolled back here. */
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        cadb_err(db, path, "cannot commit to the CA index", err);
        cadb_rollback(db);
        return -1;
    }
    return 0;
}

void cadb_rollback(sqlite3 *db)
{
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

int cadb_serial_exists(sqlite3 *db, const char *serial, tw_err *err)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(db, "SELECT 1 FROM certs WHERE serial=?", -1, &st,
                           NULL) != SQLITE_OK)
        return db_err(db, err, "cannot read the CA index");
    sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return db_err(db, err, "cannot read the CA index");
}

int cadb_record(sqlite3 *db, const tw_cert *cert, tw_err *err)
{
    tw_identity *id = tw_identity_from_cert(cert, err);
    char *sans = NULL, *pem = NULL;
    sqlite3_stmt *st = NULL;
    int rc = -1;

    if (id == NULL)
        return -1;
    if ((sans = ca_sans_text(id)) == NULL ||
        (pem = tw_cert_to_pem(cert, err)) == NULL) {
        twu_err_nomem(err);
        goto done;
    }
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO certs (serial, subject, sans, purpose,"
                           " not_before, not_after, fingerprint, pem,"
                           " issued_at) VALUES (?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        db_err(db, err, "cannot record the certificate");
        goto done;
    }
    sqlite3_bind_text(st, 1, tw_identity_serial(id), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, tw_identity_subject(id), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, sans, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, ca_purpose_text(tw_identity_purposes(id)), -1,
                      SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)tw_identity_not_before(id));
    sqlite3_bind_int64(st, 6, (sqlite3_int64)tw_identity_not_after(id));
    sqlite3_bind_text(st, 7, tw_identity_fingerprint(id), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, pem, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)time(NULL));
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_err(db, err, "cannot record the certificate");
        goto done;
    }
    rc = 0;
done:
    sqlite3_finalize(st);
    twu_free(sans);
    twu_free(pem);
    tw_identity_free(id);
    return rc;
}

int cadb_next_crl_number(sqlite3 *db, uint64_t *number, tw_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;

    if (sqlite3_prepare_v2(db,
                           "UPDATE meta SET value = CAST(value AS INTEGER) + 1"
                           " WHERE key='crl_number' RETURNING value",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        db_err(db, err, "cannot draw a CRL number");
        goto done;
    }
    *number = (uint64_t)sqlite3_column_int64(st, 0);
    rc = 0;
done:
    sqlite3_finalize(st);
    return rc;
}
