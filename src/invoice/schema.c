/*
 * schema.c - the invoice database's schema: creating and seeding a new
 * database (the seed's invoice), checking an existing one, and upgrading
 * an older schema in place at start, in one transaction.
 *
 * Called by: store_init (run.c, at start) and every connection that opens
 * the database (store.c, writer.c: store__check_schema).
 */
#include "store_internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Idempotency-Keys belong to a client (SHA-256 of its certificate's
 * issuer and subject): two clients may use the same key. */
#define IDEMPOTENCY_TABLE(name)                                              \
    "CREATE TABLE " name "("                                                 \
    "  client TEXT NOT NULL,"                                                \
    "  key TEXT NOT NULL,"                                                   \
    "  number TEXT NOT NULL,"                                                \
    "  request_hash TEXT NOT NULL,"                                          \
    "  created_at INTEGER,"                                                  \
    "  PRIMARY KEY(client, key))"

static const char schema_sql[] =
    "CREATE TABLE meta("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL);"
    "CREATE TABLE invoices("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  number TEXT UNIQUE NOT NULL,"
    "  firstname TEXT NOT NULL,"
    "  lastname TEXT NOT NULL,"
    "  email TEXT NOT NULL,"
    "  amount_minor INTEGER NOT NULL CHECK(amount_minor >= 0),"
    "  currency TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);" /* unix seconds, UTC */
    IDEMPOTENCY_TABLE("idempotency")
    ";"
    "INSERT INTO meta VALUES('application', '" STORE__APPLICATION "'),"
    "                       ('schema_version', '" STORE__SCHEMA_VERSION "');";

/* The seed's invoice (mtls-tutorial: John Ji, 00095234, "10USD"). */
static const inv_invoice seed_invoice = {
    .number = "00095234",
    .firstname = "John",
    .lastname = "Ji",
    .email = "john.ji@example.com",
    .amount_minor = 1000,
    .currency = "USD",
};

/* The meta value of `key` into buf ("" when absent); -1 when the table
 * cannot be read at all (no such table, not a database). */
static int meta_get(sqlite3 *db, const char *key, char *buf, size_t len)
{
    sqlite3_stmt *st = NULL;
    int rc;

    buf[0] = '\0';
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int store__check_schema(sqlite3 *db, const char *path, tw_err *err)
{
    char app[64], version[64];

    if (meta_get(db, "application", app, sizeof(app)) < 0) {
        int code = sqlite3_errcode(db) & 0xff;

        if (code == SQLITE_NOTADB)
            return twu_err(err, TW_ERR_INPUT,
                           "%s is not an SQLite database; give --db the "
                           "invoice database, or a new file name to create one",
                           path);
        if (code != SQLITE_ERROR) /* locked, I/O error, ... */
            return twu_err(err, TW_ERR_IO,
                           "cannot read the invoice database %s: %s", path,
                           sqlite3_errmsg(db));
        return twu_err(err, TW_ERR_INPUT,
                       "%s is an SQLite database but not an invoice database "
                       "(%s); give --db the invoice database, or a new file "
                       "name to create one",
                       path, sqlite3_errmsg(db));
    }
    if (strcmp(app, STORE__APPLICATION) != 0)
        return twu_err(err, TW_ERR_INPUT,
                       "%s is an SQLite database but not an invoice database "
                       "(its meta table names no '" STORE__APPLICATION "')",
                       path);
    if (meta_get(db, "schema_version", version, sizeof(version)) < 0)
        return twu_err(err, TW_ERR_IO, "cannot read the invoice database %s: %s",
                       path, sqlite3_errmsg(db));
    if (strcmp(version, STORE__SCHEMA_VERSION) != 0)
        return twu_err(err, TW_ERR_INPUT,
                       "the invoice database %s has schema version '%s'; this "
                       "server reads version " STORE__SCHEMA_VERSION,
                       path, version);
    return 0;
}

/* ----------------------------------------------------------- creation */

static int exec(sqlite3 *db, const char *path, const char *sql, tw_err *err)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return twu_err(err, TW_ERR_IO,
                       "cannot set up the invoice database %s: %s", path,
                       sqlite3_errmsg(db));
    return 0;
}

/* Number of tables and indexes: 0 for a new (empty) file. */
static int count_objects(sqlite3 *db, const char *path, int *n, tw_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &st,
                            NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        *n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return 0;
    /* The schema check words "not a database", "locked", ... best. */
    if (store__check_schema(db, path, err) < 0)
        return -1;
    return twu_err(err, TW_ERR_IO, "cannot read the invoice database %s: %s",
                   path, sqlite3_errstr(rc));
}

/* journal_mode=WAL, checking that the file system allowed it. */
static int set_wal(sqlite3 *db, const char *path, tw_err *err)
{
    sqlite3_stmt *st = NULL;
    int ok = 0;

    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        ok = sqlite3_column_text(st, 0) != NULL &&
             strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    if (!ok)
        return twu_err(err, TW_ERR_IO,
                       "cannot put the invoice database %s in WAL mode (%s); "
                       "is it on a local file system?",
                       path, sqlite3_errmsg(db));
    return 0;
}

static int insert_seed(sqlite3 *db, const char *path, tw_err *err)
{
    const inv_invoice *s = &seed_invoice;
    sqlite3_stmt *st = NULL;
    int rc;

    if (store__prepare(db, path,
                       "INSERT INTO invoices(" STORE__INVOICE_COLUMNS ") "
                       "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, s->number, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s->firstname, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s->lastname, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, s->email, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, s->amount_minor);
    sqlite3_bind_text(st, 6, s->currency, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)time(NULL));
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return twu_err(err, TW_ERR_IO,
                       "cannot seed the invoice database %s: %s", path,
                       sqlite3_errstr(rc));
    return 0;
}

/* End the transaction: COMMIT when `ok`, else (or when COMMIT fails)
 * ROLLBACK and -1, *err already said why. */
static int commit_if(sqlite3 *db, const char *path, int ok, tw_err *err)
{
    if (ok && exec(db, path, "COMMIT", err) == 0)
        return 0;
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* Tables and the seed in one transaction, unless another process got there
 * first (checked again under the write lock). */
static int create_schema(sqlite3 *db, const char *path, tw_err *err)
{
    int n = 0;

    if (set_wal(db, path, err) < 0 ||
        exec(db, path, "PRAGMA synchronous=FULL; BEGIN IMMEDIATE", err) < 0)
        return -1;
    return commit_if(db, path,
                     count_objects(db, path, &n, err) == 0 &&
                         (n != 0 || (exec(db, path, schema_sql, err) == 0 &&
                                     insert_seed(db, path, err) == 0)),
                     err);
}

/*
 * Schema 1 (before keys belonged to clients) to 2, in one transaction,
 * checked again under the write lock.  Keys recorded before belong to no
 * client: a retry across the upgrade is then decided by its content alone
 * (200 for the very same invoice, 409 for another).
 */
static const char migrate_1_2_sql[] =
    IDEMPOTENCY_TABLE("idempotency_2") ";"
    "INSERT INTO idempotency_2(client, key, number, request_hash, created_at)"
    "  SELECT '', key, number, request_hash, created_at FROM idempotency;"
    "DROP TABLE idempotency;"
    "ALTER TABLE idempotency_2 RENAME TO idempotency;"
    "UPDATE meta SET value = '2' WHERE key = 'schema_version';";

static int migrate(sqlite3 *db, const char *path, tw_err *err)
{
    char app[64], version[64];

    if (meta_get(db, "application", app, sizeof(app)) < 0 ||
        strcmp(app, STORE__APPLICATION) != 0 ||
        meta_get(db, "schema_version", version, sizeof(version)) < 0 ||
        strcmp(version, "1") != 0)
        return 0; /* not ours, or not version 1: the schema check says */
    if (exec(db, path, "PRAGMA synchronous=FULL; BEGIN IMMEDIATE", err) < 0)
        return -1;
    if (meta_get(db, "schema_version", version, sizeof(version)) < 0) {
        twu_err(err, TW_ERR_IO, "cannot read the invoice database %s: %s",
                path, sqlite3_errmsg(db));
        return commit_if(db, path, 0, err);
    }
    return commit_if(db, path,
                     strcmp(version, "1") != 0 ||
                         exec(db, path, migrate_1_2_sql, err) == 0,
                     err);
}

/* SQLite syncs the directory for the -wal file it creates, but not for a
 * database file we made: sync it, so the file's name survives power loss. */
static int sync_dir(const char *path, tw_err *err)
{
    char *dir = twu_dirname(path);
    int fd, rc = -1;

    if (dir == NULL)
        return twu_err_nomem(err);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0 && fsync(fd) == 0)
        rc = 0;
    else
        twu_err(err, TW_ERR_IO, "cannot sync the directory %s: %s", dir,
                strerror(errno));
    if (fd >= 0)
        close(fd);
    twu_free(dir);
    return rc;
}

int store_init(const char *path, tw_err *err)
{
    sqlite3 *db = NULL;
    int fd, n = 0;

    /* Invoices are personal data: create the file 0600 ourselves (SQLite
     * would follow the umask); the -wal and -shm files copy its mode. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        if (sync_dir(path, err) < 0)
            return -1;
    } else if (errno != EEXIST) {
        return twu_err(err, TW_ERR_IO,
                       "cannot create the invoice database %s: %s", path,
                       strerror(errno));
    }
    db = store__open_db(path, SQLITE_OPEN_READWRITE, err);
    if (db == NULL)
        return -1;
    TWU_GUARD(count_objects(db, path, &n, err));
    if (n == 0)
        TWU_GUARD(create_schema(db, path, err));
    TWU_GUARD(migrate(db, path, err));
    TWU_GUARD(store__check_schema(db, path, err));
    TWU_GUARD(set_wal(db, path, err)); /* only once we know the file is ours */
    sqlite3_close(db);
    return 0;
err:
    sqlite3_close(db);
    return -1;
}
