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
static int db_err(sqlite3 *db, tw_err *err, const char *what)
{
    const char *file = sqlite3_db_filename(db, "main");

    if ((sqlite3_errcode(db) & 0xff) == SQLITE_READONLY)
        return twu_err(err, TW_ERR_IO, "%s in %s: the index is read-only for "
                       "this user: run twoway-ca as the CA's owner, or make "
                       "the file and its directory writable", what,
                       file && *file ? file : "the CA index");
    return twu_err(err, TW_ERR_IO, "%s in %s: %s", what,
                   file && *file ? file : "the CA index", sqlite3_errmsg(db));
}

/* The wait cadb_check set, for the busy message.  Every connection of a
 * process gets the same value: a file-level one is enough. */
static atomic_int busy_timeout_s = CADB_BUSY_TIMEOUT_S;

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
                   "%d s); try again", path, atomic_load(&busy_timeout_s));
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

/* The schema version `path` says it has: 1 or 2 in *version (0 for
 * anything else).  0, or -1 with `err`. */
static int read_version(sqlite3 *db, const char *path, int *version,
                        tw_err *err)
{
    sqlite3_stmt *st = NULL;
    const char *text;
    int step;

    /* Reading the schema waits for a lock another process holds; only
     * what fails for another reason is "not an index". */
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key='schema'", -1,
                           &st, NULL) != SQLITE_OK) {
        if (is_busy(db))
            return busy_err(path, err);
        return twu_err(err, TW_ERR_INPUT,
                       "%s is not a twoway CA index: %s", path,
                       sqlite3_errmsg(db));
    }
    step = sqlite3_step(st);
    text = step == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0)
                              : NULL;
    *version = text == NULL ? 0 : strcmp(text, "1") == 0 ? 1
                                : strcmp(text, "2") == 0 ? 2 : 0;
    sqlite3_finalize(st);
    if (step == SQLITE_BUSY)
        return busy_err(path, err);
    return 0;
}

/* Upgrade a schema 1 index in one transaction: a crash leaves schema 1,
 * and of several processes opening it at once the first upgrades and the
 * others find schema 2 once they hold the lock. */
static int upgrade(sqlite3 *db, const char *path, tw_err *err)
{
    int version;

    if (cadb_begin(db, path, err) < 0)
        return -1;
    if (read_version(db, path, &version, err) < 0)
        goto err;
    if (version == 1 &&
        sqlite3_exec(db, upgrade_1_to_2, NULL, NULL, NULL) != SQLITE_OK) {
        cadb_err(db, path, "cannot upgrade to schema 2", err);
        goto err;
    }
    return cadb_commit(db, path, err);
err:
    cadb_rollback(db);
    return -1;
}

int cadb_check(sqlite3 *db, const char *path, tw_err *err)
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
    sqlite3_busy_timeout(db, (int)seconds * 1000);
    if (sqlite3_exec(db, "PRAGMA synchronous=FULL;", NULL, NULL, NULL) !=
        SQLITE_OK) {
        if (is_busy(db))
            return busy_err(path, err);
        return twu_err(err, TW_ERR_INPUT,
                       "%s is not a twoway CA index: %s", path,
                       sqlite3_errmsg(db));
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

int cadb_set_replaces(sqlite3 *db, const char *serial, const char *replaces,
                      tw_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;

    if (sqlite3_prepare_v2(db, "UPDATE certs SET replaces=? WHERE serial=?",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, replaces, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, serial, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_DONE) {
        db_err(db, err, "cannot record what the certificate replaces");
        goto done;
    }
    if (sqlite3_changes(db) != 1) {
        twu_err(err, TW_ERR_INTERNAL, "certificate %s is not in the index",
                serial);
        goto done;
    }
    rc = 0;
done:
    sqlite3_finalize(st);
    return rc;
}

int cadb_cert_status(sqlite3 *db, const char *serial, int *revoked,
                     time_t *not_after, tw_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = -1, step;

    if (sqlite3_prepare_v2(db, "SELECT revoked_at IS NOT NULL, not_after"
                               " FROM certs WHERE serial=?", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC) != SQLITE_OK) {
        db_err(db, err, "cannot read the CA index");
        goto done;
    }
    step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        *revoked = sqlite3_column_int(st, 0);
        *not_after = (time_t)sqlite3_column_int64(st, 1);
        rc = 1;
    } else if (step == SQLITE_DONE) {
        rc = 0;
    } else {
        db_err(db, err, "cannot read the CA index");
    }
done:
    sqlite3_finalize(st);
    return rc;
}
