/*
 * store.c - the reader connection of each worker and the read queries.
 *
 * Owns: a tw_store (one SQLite connection and its prepared statements, for
 * one thread).  Calls: SQLite.  Called by: the routes of invoice-server
 * (reads); store__open_db and store__prepare by writer.c too.
 *
 * The database is in WAL mode, so readers never wait for the writer and the
 * writer never waits for readers.  Statements are prepared once per
 * tw_store and reset right after use, so no read transaction outlives a
 * call (an open one would keep the WAL from being checkpointed).
 */
#include "store_internal.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct tw_store {
    sqlite3 *db;
    sqlite3_stmt *newest, *get, *page;
    char *path;
};
/* ---------------------------------------------------------- connections */

sqlite3 *store__open_db(const char *path, int flags, tw_err *err)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);

    if (rc != SQLITE_OK) {
        twu_err(err, TW_ERR_IO, "cannot open the invoice database %s: %s",
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
        return twu_err(err, TW_ERR_INTERNAL,
                       "cannot prepare a query on the invoice database %s: %s",
                       path, sqlite3_errmsg(db));
    return 0;
}

/* ------------------------------------------------------------ readers */

tw_store *store_open(const char *path, tw_err *err)
{
    tw_store *s = twu_calloc(1, sizeof(*s));
    size_t plen = strlen(path);
    char *shm = NULL;
    int readonly;

    if (s == NULL || (s->path = twu_strdup(path)) == NULL ||
        (shm = twu_malloc(plen + 5)) == NULL) {
        twu_err_nomem(err);
        goto err;
    }
    /* A read-only connection can use WAL only when the -shm file exists;
     * otherwise read-write with query_only, which refuses any write. */
    snprintf(shm, plen + 5, "%s-shm", path);
    readonly = access(shm, F_OK) == 0;
    s->db = store__open_db(
        path, readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE, err);
    TWU_GUARD_PTR(s->db);
    if (!readonly && sqlite3_exec(s->db, "PRAGMA query_only=1", NULL, NULL,
                                  NULL) != SQLITE_OK) {
        twu_err(err, TW_ERR_INTERNAL, "cannot open %s for reading: %s", path,
                sqlite3_errmsg(s->db));
        goto err;
    }
    TWU_GUARD(store__check_schema(s->db, path, err));
    TWU_GUARD(store__prepare(s->db, path,
                            "SELECT " STORE__INVOICE_COLUMNS " FROM invoices "
                            "ORDER BY id DESC LIMIT 1",
                            &s->newest, err));
    TWU_GUARD(store__prepare(s->db, path,
                            "SELECT " STORE__INVOICE_COLUMNS " FROM invoices "
                            "WHERE number = ?1",
                            &s->get, err));
    TWU_GUARD(store__prepare(s->db, path,
                            "SELECT id, " STORE__INVOICE_COLUMNS " FROM invoices "
                            "WHERE id > ?1 ORDER BY id LIMIT ?2",
                            &s->page, err));
    twu_free(shm);
    return s;
err:
    twu_free(shm);
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
    twu_free(s->path);
    twu_free(s);
}

static int read_failed(tw_store *s, sqlite3_stmt *st, int rc, tw_err *err)
{
    sqlite3_reset(st);
    return twu_err(err, TW_ERR_IO, "cannot read the invoice database %s: %s",
                   s->path, sqlite3_errstr(rc));
}

static int nomem(tw_store *s, sqlite3_stmt *st, tw_err *err)
{
    sqlite3_reset(st);
    return twu_err(err, TW_ERR_INTERNAL,
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
        return twu_err(err, TW_ERR_USAGE, "store_get needs an invoice number");
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
int store__parse_cursor(const char *text, int64_t *id)
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

    if (after != NULL && store__parse_cursor(after, &from) < 0)
        return twu_err(err, TW_ERR_INPUT,
                       "the cursor 'after' is not one this server gave out; "
                       "use the \"next\" value of the previous page");
    if (limit < 1 || limit > 100)
        return twu_err(err, TW_ERR_INPUT, "limit must be between 1 and 100");
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
