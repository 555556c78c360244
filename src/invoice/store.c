/*
 * store.c - the invoice database: its schema, creating and seeding it,
 * the reader connection of each worker, the read queries, and the JSON of
 * an invoice.
 *
 * Owns: a tw_store (one SQLite connection and its prepared statements, for
 * one thread).  Calls: SQLite.  Called by: the routes of invoice-server
 * (reads) and writer.c (schema check, JSON of a stored invoice).
 *
 * The database is in WAL mode, so readers never wait for the writer and the
 * writer never waits for readers.  Statements are prepared once per
 * tw_store and reset right after use, so no read transaction outlives a
 * call (an open one would keep the WAL from being checkpointed).
 */
#include "store_internal.h"
#include "tw_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct tw_store {
    sqlite3 *db;
    sqlite3_stmt *newest, *get, *page;
    char *path;
};

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

/* ---------------------------------------------------------- connections */

sqlite3 *store__open_db(const char *path, int flags, tw_err *err)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);

    if (rc != SQLITE_OK) {
        tw__err(err, TW_ERR_IO, "cannot open the invoice database %s: %s",
                path, db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, STORE__BUSY_TIMEOUT_MS);
    return db;
}

int store__prepare(sqlite3 *db, const char *path, const char *sql,
                   sqlite3_stmt **stmt, tw_err *err)
{
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt,
                           NULL) != SQLITE_OK)
        return tw__err(err, TW_ERR_INTERNAL,
                       "cannot prepare a query on the invoice database %s: %s",
                       path, sqlite3_errmsg(db));
    return 0;
}

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
            return tw__err(err, TW_ERR_INPUT,
                           "%s is not an SQLite database; give --db the "
                           "invoice database, or a new file name to create one",
                           path);
        if (code != SQLITE_ERROR) /* locked, I/O error, ... */
            return tw__err(err, TW_ERR_IO,
                           "cannot read the invoice database %s: %s", path,
                           sqlite3_errmsg(db));
        return tw__err(err, TW_ERR_INPUT,
                       "%s is an SQLite database but not an invoice database "
                       "(%s); give --db the invoice database, or a new file "
                       "name to create one",
                       path, sqlite3_errmsg(db));
    }
    if (strcmp(app, STORE__APPLICATION) != 0)
        return tw__err(err, TW_ERR_INPUT,
                       "%s is an SQLite database but not an invoice database "
                       "(its meta table names no '" STORE__APPLICATION "')",
                       path);
    if (meta_get(db, "schema_version", version, sizeof(version)) < 0)
        return tw__err(err, TW_ERR_IO, "cannot read the invoice database %s: %s",
                       path, sqlite3_errmsg(db));
    if (strcmp(version, STORE__SCHEMA_VERSION) != 0)
        return tw__err(err, TW_ERR_INPUT,
                       "the invoice database %s has schema version '%s'; this "
                       "server reads version " STORE__SCHEMA_VERSION,
                       path, version);
    return 0;
}

/* ----------------------------------------------------------------- JSON */

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 §4), 0 if none. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];

    if (c >= 0xc2 && c <= 0xdf)
        return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

        return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

        return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 &&
                       (p[3] & 0xc0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

/* The escape of a byte that cannot stand in a JSON string as it is. */
static size_t escape_byte(unsigned char c, char esc[8])
{
    static const char hex[] = "0123456789abcdef";

    if (c == '"' || c == '\\') {
        esc[0] = '\\';
        esc[1] = (char)c;
        return 2;
    }
    if (c == '\n' || c == '\t') {
        esc[0] = '\\';
        esc[1] = c == '\n' ? 'n' : 't';
        return 2;
    }
    if (c < 0x20) {
        memcpy(esc, "\\u00", 4);
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 0xf];
        return 6;
    }
    memcpy(esc, "\\ufffd", 6); /* not UTF-8 */
    return 6;
}

/* A JSON string (RFC 8259 §7).  Input validation keeps control characters
 * out, but rows may come from elsewhere: controls are escaped and bytes
 * that are not UTF-8 become U+FFFD, so the output is always valid JSON.
 * Runs of plain characters are copied in one go. */
static int append_json_string(twu_buf *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *run = p;
    char esc[8];
    size_t n;

    if (twu_buf_append(out, "\"", 1) < 0)
        return -1;
    while (*p != '\0') {
        if (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
            p++;
            continue;
        }
        if (*p >= 0x80 && (n = utf8_len(p)) > 0) {
            p += n;
            continue;
        }
        n = escape_byte(*p, esc);
        if (twu_buf_append(out, run, (size_t)(p - run)) < 0 ||
            twu_buf_append(out, esc, n) < 0)
            return -1;
        run = ++p;
    }
    if (twu_buf_append(out, run, (size_t)(p - run)) < 0)
        return -1;
    return twu_buf_append(out, "\"", 1);
}

/* RFC 3339 §5.6 in UTC, "2026-11-29T07:50:00Z"; years 1970..9999. */
static void format_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt;

    if (t < 0)
        t = 0;
    if (t > INT64_C(253402300799)) /* 9999-12-31T23:59:59Z */
        t = INT64_C(253402300799);
    tt = (time_t)t;
    if (gmtime_r(&tt, &tm) == NULL) {
        snprintf(out, 32, "1970-01-01T00:00:00Z");
        return;
    }
    if (strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "1970-01-01T00:00:00Z");
}

static const char *column_text(sqlite3_stmt *stmt, int col)
{
    const unsigned char *s = sqlite3_column_text(stmt, col);

    return s != NULL ? (const char *)s : "";
}

void store__row_from_stmt(sqlite3_stmt *stmt, int col, store__row *row)
{
    row->number = column_text(stmt, col);
    row->firstname = column_text(stmt, col + 1);
    row->lastname = column_text(stmt, col + 2);
    row->email = column_text(stmt, col + 3);
    row->amount_minor = sqlite3_column_int64(stmt, col + 4);
    row->currency = column_text(stmt, col + 5);
    row->created_at = sqlite3_column_int64(stmt, col + 6);
}

int store__render_invoice(twu_buf *out, const store__row *row)
{
    size_t mark = out->len;
    char price[64], when[32];

    inv_format_price(row->amount_minor, row->currency, price, sizeof(price));
    format_time(row->created_at, when);
    if (twu_buf_append(out, "{\"firstname\":", 13) < 0 ||
        append_json_string(out, row->firstname) < 0 ||
        twu_buf_append(out, ",\"lastname\":", 12) < 0 ||
        append_json_string(out, row->lastname) < 0 ||
        twu_buf_append(out, ",\"email\":", 9) < 0 ||
        append_json_string(out, row->email) < 0 ||
        twu_buf_append(out, ",\"invoice_number\":", 18) < 0 ||
        append_json_string(out, row->number) < 0 ||
        twu_buf_append(out, ",\"invoice_price\":", 17) < 0 ||
        append_json_string(out, price) < 0 ||
        twu_buf_printf(out, ",\"amount_minor\":%lld,\"currency\":",
                       (long long)row->amount_minor) < 0 ||
        append_json_string(out, row->currency) < 0 ||
        twu_buf_printf(out, ",\"created_at\":\"%s\"}", when) < 0)
        goto err;
    return 0;
err:
    if (out->data != NULL) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return -1;
}

/* ----------------------------------------------------------- creation */

static int exec(sqlite3 *db, const char *path, const char *sql, tw_err *err)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return tw__err(err, TW_ERR_IO,
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
    return tw__err(err, TW_ERR_IO, "cannot read the invoice database %s: %s",
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
        return tw__err(err, TW_ERR_IO,
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
        return tw__err(err, TW_ERR_IO,
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
        tw__err(err, TW_ERR_IO, "cannot read the invoice database %s: %s",
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
    char *dir = tw__dirname(path);
    int fd, rc = -1;

    if (dir == NULL)
        return tw__err_nomem(err);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0 && fsync(fd) == 0)
        rc = 0;
    else
        tw__err(err, TW_ERR_IO, "cannot sync the directory %s: %s", dir,
                strerror(errno));
    if (fd >= 0)
        close(fd);
    tw__free(dir);
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
        return tw__err(err, TW_ERR_IO,
                       "cannot create the invoice database %s: %s", path,
                       strerror(errno));
    }
    db = store__open_db(path, SQLITE_OPEN_READWRITE, err);
    if (db == NULL)
        return -1;
    TW_GUARD(count_objects(db, path, &n, err));
    if (n == 0)
        TW_GUARD(create_schema(db, path, err));
    TW_GUARD(migrate(db, path, err));
    TW_GUARD(store__check_schema(db, path, err));
    TW_GUARD(set_wal(db, path, err)); /* only once we know the file is ours */
    sqlite3_close(db);
    return 0;
err:
    sqlite3_close(db);
    return -1;
}

/* ------------------------------------------------------------ readers */

tw_store *store_open(const char *path, tw_err *err)
{
    tw_store *s = tw__calloc(1, sizeof(*s));
    size_t plen = strlen(path);
    char *shm = NULL;
    int readonly;

    if (s == NULL || (s->path = tw__strdup(path)) == NULL ||
        (shm = tw__malloc(plen + 5)) == NULL) {
        tw__err_nomem(err);
        goto err;
    }
    /* A read-only connection can use WAL only when the -shm file exists;
     * otherwise read-write with query_only, which refuses any write. */
    snprintf(shm, plen + 5, "%s-shm", path);
    readonly = access(shm, F_OK) == 0;
    s->db = store__open_db(
        path, readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE, err);
    TW_GUARD_PTR(s->db);
    if (!readonly && sqlite3_exec(s->db, "PRAGMA query_only=1", NULL, NULL,
                                  NULL) != SQLITE_OK) {
        tw__err(err, TW_ERR_INTERNAL, "cannot open %s for reading: %s", path,
                sqlite3_errmsg(s->db));
        goto err;
    }
    TW_GUARD(store__check_schema(s->db, path, err));
    TW_GUARD(store__prepare(s->db, path,
                            "SELECT " STORE__INVOICE_COLUMNS " FROM invoices "
                            "ORDER BY id DESC LIMIT 1",
                            &s->newest, err));
    TW_GUARD(store__prepare(s->db, path,
                            "SELECT " STORE__INVOICE_COLUMNS " FROM invoices "
                            "WHERE number = ?1",
                            &s->get, err));
    TW_GUARD(store__prepare(s->db, path,
                            "SELECT id, " STORE__INVOICE_COLUMNS " FROM invoices "
                            "WHERE id > ?1 ORDER BY id LIMIT ?2",
                            &s->page, err));
    tw__free(shm);
    return s;
err:
    tw__free(shm);
    store_close(s);
    return NULL;
}

void store_close(tw_store *s)
{
    if (s == NULL)
        return;
    sqlite3_finalize(s->newest);
    sqlite3_finalize(s->get);
    sqlite3_finalize(s->page);
    sqlite3_close(s->db);
    tw__free(s->path);
    tw__free(s);
}

static int read_failed(tw_store *s, sqlite3_stmt *st, int rc, tw_err *err)
{
    sqlite3_reset(st);
    return tw__err(err, TW_ERR_IO, "cannot read the invoice database %s: %s",
                   s->path, sqlite3_errstr(rc));
}

static int nomem(tw_store *s, sqlite3_stmt *st, tw_err *err)
{
    sqlite3_reset(st);
    return tw__err(err, TW_ERR_INTERNAL,
                   "the answer is larger than its buffer allows, or memory "
                   "ran out, reading %s",
                   s->path);
}

/* Step `st` once: 1 with the invoice appended, 0 when no row, -1. */
static int render_one(tw_store *s, sqlite3_stmt *st, twu_buf *out,
                      tw_err *err)
{
    store__row row;
    int rc = sqlite3_step(st);

    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return 0;
    }
    if (rc != SQLITE_ROW)
        return read_failed(s, st, rc, err);
    store__row_from_stmt(st, 0, &row);
    if (store__render_invoice(out, &row) < 0)
        return nomem(s, st, err);
    sqlite3_reset(st);
    return 1;
}

int store_newest(tw_store *s, twu_buf *out, tw_err *err)
{
    return render_one(s, s->newest, out, err);
}

int store_get(tw_store *s, const char *number, twu_buf *out, tw_err *err)
{
    int rc;

    if (number == NULL)
        return tw__err(err, TW_ERR_USAGE, "store_get needs an invoice number");
    sqlite3_bind_text(s->get, 1, number, -1, SQLITE_STATIC);
    rc = render_one(s, s->get, out, err);
    sqlite3_clear_bindings(s->get);
    return rc;
}

/*
 * The cursor is the last row id in decimal.  Clients treat it as opaque;
 * we read it strictly: 1 to 19 digits, no sign, no leading zero, and no
 * more than INT64_MAX.
 */
static int parse_cursor(const char *text, int64_t *id)
{
    uint64_t v = 0;
    size_t len = strlen(text);

    if (len == 0) {
        *id = 0;
        return 0;
    }
    if (len > 19 || text[0] == '0')
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(text[i] - '0'); /* 19 digits fit in 64 bits */
    }
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *id = (int64_t)v;
    return 0;
}

int store_page(tw_store *s, const char *after, int limit, twu_buf *out,
               tw_err *err)
{
    size_t mark = out->len;
    int64_t from = 0, last = 0;
    int n = 0, rc;

    if (after != NULL && parse_cursor(after, &from) < 0)
        return tw__err(err, TW_ERR_INPUT,
                       "the cursor 'after' is not one this server gave out; "
                       "use the \"next\" value of the previous page");
    if (limit < 1 || limit > 100)
        return tw__err(err, TW_ERR_INPUT, "limit must be between 1 and 100");
    if (twu_buf_append(out, "{\"invoices\":[", 13) < 0)
        return nomem(s, s->page, err);
    sqlite3_bind_int64(s->page, 1, from);
    sqlite3_bind_int(s->page, 2, limit + 1); /* one more: is there a next? */
    while ((rc = sqlite3_step(s->page)) == SQLITE_ROW) {
        store__row row;

        if (n == limit)
            break;
        store__row_from_stmt(s->page, 1, &row);
        if ((n > 0 && twu_buf_append(out, ",", 1) < 0) ||
            store__render_invoice(out, &row) < 0) {
            nomem(s, s->page, err);
            goto err;
        }
        last = sqlite3_column_int64(s->page, 0);
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        read_failed(s, s->page, rc, err);
        goto err;
    }
    sqlite3_reset(s->page);
    if ((rc == SQLITE_ROW
             ? twu_buf_printf(out, "],\"next\":\"%lld\"}", (long long)last)
             : twu_buf_append(out, "],\"next\":null}", 14)) < 0) {
        nomem(s, s->page, err);
        goto err;
    }
    return 0;
err:
    sqlite3_reset(s->page);
    if (out->data != NULL) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return -1;
}
