/*
 * writer.c - the one thread that writes invoices; queue.c carries its
 * answers back to the workers.
 *
 * Workers submit inserts; the writer sleeps on a condition variable until
 * there is work, then takes everything pending (up to GROUP_MAX) and runs it
 * as one transaction: BEGIN IMMEDIATE, each request in turn (inside its own
 * savepoint, so a failed request leaves no half of itself behind), one
 * COMMIT.  With synchronous=FULL the COMMIT returns only once the group is
 * on disk, so every 201 posted afterwards is durable, and one fsync is paid
 * per group rather than per invoice.  A failed COMMIT turns every answer of
 * the group into a 500.
 *
 * Answers go to the asking worker's store_queue: a list under a mutex plus
 * an eventfd the worker's event loop watches.  The worker drains the queue
 * on its own thread and runs the callbacks there, outside the lock.
 *
 * Owns: the writer's SQLite connection and its statements, pending requests
 * until they are posted; a queue owns posted requests until drained.
 */
#include "store_internal.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define GROUP_MAX 256          /* requests per transaction */
#define CHECKPOINT_PAGES 1000  /* WAL pages before the writer checkpoints */

struct store_writer {
    store__pending pending; /* submitted, not yet taken */
    int running;
    pthread_t thread;

    /* Used only by the writer thread once it runs. */
    sqlite3 *db;
    char *path;
    sqlite3_stmt *begin, *commit, *rollback;
    sqlite3_stmt *savepoint, *release, *rollback_to;
    sqlite3_stmt *sel_key, *sel_num, *ins_inv, *ins_key;
    int wal_pages;
};

/* ------------------------------------------------------- transactions */

static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Look the invoice `number` up: SQLITE_ROW with sel_num on the row (reset
 * it after use), SQLITE_DONE when absent, or an error code. */
static int find_number(store_writer *w, const char *number)
{
    int rc;

    sqlite3_bind_text(w->sel_num, 1, number, -1, SQLITE_STATIC);
    rc = sqlite3_step(w->sel_num);
    if (rc != SQLITE_ROW)
        sqlite3_reset(w->sel_num);
    return rc;
}

/* The invoice `number` as the answer (a replay); SQLITE_OK or an error. */
static int answer_stored(store_writer *w, store_req *r, const char *number,
                         int status)
{
    store__row row;
    int rc = find_number(w, number);

    if (rc == SQLITE_DONE) {
        store__answer_text(r, 500,
                    "the invoice this Idempotency-Key created is gone");
        return SQLITE_OK;
    }
    if (rc != SQLITE_ROW)
        return rc;
    store__row_from_stmt(w->sel_num, 0, &row);
    store__answer_row(r, status, &row);
    sqlite3_reset(w->sel_num);
    return SQLITE_OK;
}

/* A replay or a reuse of the request's Idempotency-Key: SQLITE_ROW with the
 * answer set, SQLITE_DONE when the key is new, or an error code. */
static int check_key(store_writer *w, store_req *r)
{
    char number[INV_NUMBER_MAX + 1];
    int rc, same;

    sqlite3_bind_text(w->sel_key, 1, r->client, -1, SQLITE_STATIC);
    sqlite3_bind_text(w->sel_key, 2, r->key, -1, SQLITE_STATIC);
    rc = sqlite3_step(w->sel_key);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(w->sel_key);
        return rc;
    }
    snprintf(number, sizeof(number), "%s",
             sqlite3_column_text(w->sel_key, 0) != NULL
                 ? (const char *)sqlite3_column_text(w->sel_key, 0)
                 : "");
    same = sqlite3_column_text(w->sel_key, 1) != NULL &&
           strcmp((const char *)sqlite3_column_text(w->sel_key, 1), r->hash) == 0;
    sqlite3_reset(w->sel_key);
    if (!same) {
        store__answer_text(r, 409, "this Idempotency-Key was already used for "
                            "another invoice");
        return SQLITE_ROW;
    }
    rc = answer_stored(w, r, number, 201); /* the first answer, again */
    return rc == SQLITE_OK ? SQLITE_ROW : rc;
}

static int insert(store_writer *w, store_req *r, int64_t now)
{
    const inv_invoice *inv = &r->inv;
    store__row row;
    int rc;

    sqlite3_bind_text(w->ins_inv, 1, inv->number, -1, SQLITE_STATIC);
    sqlite3_bind_text(w->ins_inv, 2, inv->firstname, -1, SQLITE_STATIC);
    sqlite3_bind_text(w->ins_inv, 3, inv->lastname, -1, SQLITE_STATIC);
    sqlite3_bind_text(w->ins_inv, 4, inv->email, -1, SQLITE_STATIC);
    sqlite3_bind_int64(w->ins_inv, 5, inv->amount_minor);
    sqlite3_bind_text(w->ins_inv, 6, inv->currency, -1, SQLITE_STATIC);
    sqlite3_bind_int64(w->ins_inv, 7, now);
    if ((rc = run(w->ins_inv)) != SQLITE_OK)
        return rc;
    if (r->key[0] != '\0') {
        sqlite3_bind_text(w->ins_key, 1, r->client, -1, SQLITE_STATIC);
        sqlite3_bind_text(w->ins_key, 2, r->key, -1, SQLITE_STATIC);
        sqlite3_bind_text(w->ins_key, 3, inv->number, -1, SQLITE_STATIC);
        sqlite3_bind_text(w->ins_key, 4, r->hash, -1, SQLITE_STATIC);
        sqlite3_bind_int64(w->ins_key, 5, now);
        if ((rc = run(w->ins_key)) != SQLITE_OK)
            return rc;
    }
    store__row_from_invoice(inv, now, &row);
    store__answer_row(r, 201, &row);
    return SQLITE_OK;
}

/* Decide one request inside the group's transaction; SQLITE_OK with the
 * answer set, or an error code (the caller rolls the request back). */
static int handle(store_writer *w, store_req *r, int64_t now)
{
    store__row row;
    int rc;

    if (r->key[0] != '\0' && (rc = check_key(w, r)) != SQLITE_DONE)
        return rc == SQLITE_ROW ? SQLITE_OK : rc;
    rc = find_number(w, r->inv.number);
    if (rc == SQLITE_DONE)
        return insert(w, r, now);
    if (rc != SQLITE_ROW)
        return rc;
    store__row_from_stmt(w->sel_num, 0, &row);
    if (store__same_content(&row, &r->inv))
        store__answer_row(r, 200, &row); /* already stored: nothing to do */
    else
        store__answer_text(r, 409, "invoice %s already exists with other content",
                    r->inv.number);
    sqlite3_reset(w->sel_num);
    return SQLITE_OK;
}

static void fail_group(store_req *group, const char *what, int rc)
{
    for (store_req *r = group; r != NULL; r = r->next)
        store__answer_text(r, 500, "the invoice could not be stored (%s: %s)", what,
                    sqlite3_errstr(rc));
}

static void run_group(store_writer *w, store_req *group)
{
    int64_t now = (int64_t)time(NULL);
    int rc, whole = 1;

    if ((rc = run(w->begin)) != SQLITE_OK) {
        fail_group(group, "begin", rc);
        return;
    }
    for (store_req *r = group; r != NULL; r = r->next) {
        /* An I/O error or a full disk may have rolled the whole transaction
         * back; running on would commit each statement by itself. */
        if (sqlite3_get_autocommit(w->db)) {
            whole = 0;
            break;
        }
        if ((rc = run(w->savepoint)) != SQLITE_OK ||
            (rc = handle(w, r, now)) != SQLITE_OK) {
            if (!sqlite3_get_autocommit(w->db)) {
                run(w->rollback_to);
                run(w->release);
            }
            store__answer_text(r, 500, "the invoice could not be stored (%s)",
                        sqlite3_errstr(rc));
            continue;
        }
        if ((rc = run(w->release)) != SQLITE_OK) {
            whole = 0;
            break;
        }
    }
    if (!whole) {
        if (!sqlite3_get_autocommit(w->db))
            run(w->rollback);
        fail_group(group, "transaction lost", rc != SQLITE_OK ? rc : SQLITE_ABORT);
        return;
    }
    if ((rc = run(w->commit)) != SQLITE_OK) {
        if (!sqlite3_get_autocommit(w->db))
            run(w->rollback);
        fail_group(group, "commit", rc);
    }
}

/* Checkpoint here, after the answers are out, rather than inside COMMIT
 * (where SQLite's automatic checkpoint would delay every answer). */
static int count_wal_pages(void *arg, sqlite3 *db, const char *name, int pages)
{
    store_writer *w = arg;

    (void)db;
    (void)name;
    w->wal_pages = pages;
    return SQLITE_OK;
}

static void *writer_main(void *arg)
{
    store_writer *w = arg;

    store_req *group;

    while ((group = store__pending_take(&w->pending, GROUP_MAX)) != NULL) {
        run_group(w, group);
        store__queue_post(group);
        if (w->wal_pages >= CHECKPOINT_PAGES) {
            sqlite3_wal_checkpoint_v2(w->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                      NULL, NULL);
            w->wal_pages = 0;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------- writer */

static void writer_free(store_writer *w)
{
    sqlite3_stmt **stmts[] = {&w->begin,     &w->commit,  &w->rollback,
                              &w->savepoint, &w->release, &w->rollback_to,
                              &w->sel_key,   &w->sel_num, &w->ins_inv,
                              &w->ins_key};

    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
        sqlite3_finalize(*stmts[i]);
    sqlite3_close(w->db);
    store__pending_destroy(&w->pending);
    twu_free(w->path);
    twu_free(w);
}

static int prepare_all(store_writer *w, tw_err *err)
{
    static const struct {
        size_t offset;
        const char *sql;
    } list[] = {
        {offsetof(store_writer, begin), "BEGIN IMMEDIATE"},
        {offsetof(store_writer, commit), "COMMIT"},
        {offsetof(store_writer, rollback), "ROLLBACK"},
        {offsetof(store_writer, savepoint), "SAVEPOINT request"},
        {offsetof(store_writer, release), "RELEASE request"},
        {offsetof(store_writer, rollback_to), "ROLLBACK TO request"},
        {offsetof(store_writer, sel_key),
         "SELECT number, request_hash FROM idempotency "
         "WHERE client = ?1 AND key = ?2"},
        {offsetof(store_writer, sel_num),
         "SELECT " STORE__INVOICE_COLUMNS " FROM invoices WHERE number = ?1"},
        {offsetof(store_writer, ins_inv),
         "INSERT INTO invoices(" STORE__INVOICE_COLUMNS ") "
         "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
        {offsetof(store_writer, ins_key),
         "INSERT INTO idempotency(client, key, number, request_hash, "
         "created_at) VALUES(?1, ?2, ?3, ?4, ?5)"},
    };

    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) {
        sqlite3_stmt **st = (sqlite3_stmt **)((char *)w + list[i].offset);

        if (store__prepare(w->db, w->path, list[i].sql, st, err) < 0)
            return -1;
    }
    return 0;
}

store_writer *store_writer_start(const char *path, tw_err *err)
{
    store_writer *w = twu_calloc(1, sizeof(*w));

    if (w == NULL || (w->path = twu_strdup(path)) == NULL) {
        twu_err_nomem(err);
        goto err;
    }
    TWU_ENSURE(store__pending_init(&w->pending) == 0, err, TW_ERR_INTERNAL,
               "cannot make the writer's mutex");
    w->db = store__open_db(path, SQLITE_OPEN_READWRITE, err);
    TWU_GUARD_PTR(w->db);
    TWU_GUARD(store__check_schema(w->db, path, err));
    /* FULL: COMMIT syncs the WAL, so an answered insert survives power
     * loss (NORMAL would only survive a crash of the process). */
    TWU_ENSURE(sqlite3_exec(w->db,
                           "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL",
                           NULL, NULL, NULL) == SQLITE_OK,
              err, TW_ERR_IO, "cannot set up the invoice database %s: %s",
              path, sqlite3_errmsg(w->db));
    TWU_GUARD(prepare_all(w, err));
    sqlite3_wal_hook(w->db, count_wal_pages, w); /* replaces autocheckpoint */
    TWU_ENSURE(pthread_create(&w->thread, NULL, writer_main, w) == 0, err,
              TW_ERR_INTERNAL, "cannot start the writer thread");
    w->running = 1;
    return w;
err:
    if (w != NULL)
        writer_free(w);
    return NULL;
}

int store_writer_submit(store_writer *w, store_queue *q,
                        const inv_invoice *inv, const char *idem_key,
                        const char *client, store_done_fn *done, void *ctx)
{
    store_req *r;

    if (w == NULL ||
        (r = store__req_insert(q, inv, idem_key, client, done, ctx)) == NULL)
        return -1;
    if (store__pending_push(&w->pending, r) < 0) {
        store__req_free(r);
        return -1;
    }
    return 0;
}

void store_writer_stop(store_writer *w)
{
    if (w == NULL)
        return;
    store__pending_stop(&w->pending);
    if (w->running)
        pthread_join(w->thread, NULL); /* it empties the list first */
    writer_free(w);
}
