/*
 * db.c - the invoice database on either backend (see db.h): which one
 * --db names, and each operation handed to it.
 *
 * Owns: the writer (either kind), PostgreSQL's reader thread, and the
 * generation of "the newest" for this process.
 */
#include "db.h"
#include "pg.h"
#include "util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

struct inv_db {
    char *spec;
    char *describe;
    store_writer *sqlite_writer; /* SQLite */
    pg_writer *pg_writer;        /* PostgreSQL */
    pg_reader *pg_reader;
    atomic_uint local_gen;       /* invoices this process added */
    atomic_ulong unavailable;    /* 503s answered here (reader down) */
};

struct db_reads {
    inv_db *db;
    store_queue *q;
    tw_store *sqlite; /* SQLite: the worker's own connection */
};

/* "database " + what: the start line's words. */
static char *describe(const char *what)
{
    twu_buf b = {0};

    if (what == NULL || twu_buf_printf(&b, "database %s", what) < 0) {
        twu_buf_free(&b);
        return NULL;
    }
    return b.data;
}

inv_db *db_start(const char *spec, db_log_fn *log, void *log_ctx, tw_err *err)
{
    inv_db *db = twu_calloc(1, sizeof(*db));
    char *desc = NULL;
    int pg = twu_pg_is_url(spec);

    if (db == NULL || (db->spec = twu_strdup(spec)) == NULL ||
        (pg && (desc = twu_pg_describe(spec)) == NULL) ||
        (db->describe = describe(pg ? desc : spec)) == NULL) {
        twu_err_nomem(err);
        goto err;
    }
    twu_free(desc);
    desc = NULL;
    if (!pg) {
        TWU_GUARD(store_init(spec, err));
        TWU_GUARD_PTR(db->sqlite_writer = store_writer_start(spec, err));
        return db;
    }
    TWU_GUARD(pg_schema_init(spec, err));
    TWU_GUARD_PTR(db->pg_writer = pg_writer_start(spec, log, log_ctx, err));
    TWU_GUARD_PTR(db->pg_reader = pg_reader_start(spec, log, log_ctx, err));
    return db;
err:
    twu_free(desc);
    db_stop(db);
    return NULL;
}

void db_stop(inv_db *db)
{
    if (db == NULL)
        return;
    store_writer_stop(db->sqlite_writer);
    pg_writer_stop(db->pg_writer);
    pg_reader_stop(db->pg_reader);
    twu_free(db->describe);
    twu_free(db->spec);
    twu_free(db);
}

const char *db_describe(const inv_db *db)
{
    return db->describe;
}

int db_submit(inv_db *db, store_queue *q, const inv_invoice *inv,
              const char *idem_key, const char *client, store_done_fn *done,
              void *ctx)
{
    store_req *r;

    if (db->sqlite_writer != NULL)
        return store_writer_submit(db->sqlite_writer, q, inv, idem_key, client,
                                   done, ctx);
    if ((r = store__req_insert(q, inv, idem_key, client, done, ctx)) == NULL)
        return -1;
    if (pg_writer_submit(db->pg_writer, r) < 0) {
        store__req_free(r);
        return -1;
    }
    return 0;
}

/* -------------------------------------------------------------- reads */

db_reads *db_reads_open(inv_db *db, store_queue *q, tw_err *err)
{
    db_reads *r = twu_calloc(1, sizeof(*r));

    if (r == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    r->db = db;
    r->q = q;
    if (db->sqlite_writer != NULL &&
        (r->sqlite = store_open(db->spec, err)) == NULL) {
        twu_free(r);
        return NULL;
    }
    return r;
}

void db_reads_close(db_reads *r)
{
    if (r == NULL)
        return;
    store_close(r->sqlite);
    twu_free(r);
}

/* Answer now: `status` and the text or JSON in `b` (taken). */
static int answer_now(store_done_fn *done, void *ctx, int status, twu_buf *b,
                      unsigned gen)
{
    store_result res = {.status = status, .body = *b, .gen = gen};

    done(ctx, &res);
    twu_buf_free(&res.body);
    return 0;
}

static int answer_text_now(store_done_fn *done, void *ctx, int status,
                           const char *text)
{
    twu_buf b = {0};

    if (twu_buf_append(&b, text, strlen(text)) < 0)
        twu_buf_free(&b);
    return answer_now(done, ctx, status, &b, 0);
}

/* SQLite's answer to a read that returned `rc` (1 found, 0 not, -1). */
static int sqlite_answer(store_done_fn *done, void *ctx, int rc, twu_buf *b,
                         const tw_err *err, const char *none, unsigned gen)
{
    if (rc == 1)
        return answer_now(done, ctx, 200, b, gen);
    twu_buf_free(b);
    if (rc == 0)
        return answer_text_now(done, ctx, 404, none);
    return answer_text_now(done, ctx, err->cls == TW_ERR_INPUT ? 400 : 500,
                           err->msg);
}

/* PostgreSQL: hand the read to the reader thread (1), or 503 now (0). */
static int pg_read(db_reads *r, store_req *req, unsigned gen)
{
    if (!pg_reader_up(r->db->pg_reader)) {
        store_done_fn *done = req->done;
        void *ctx = req->ctx;

        store__req_free(req);
        atomic_fetch_add(&r->db->unavailable, 1);
        return answer_text_now(done, ctx, 503, STORE__UNAVAILABLE);
    }
    req->result.gen = gen;
    pg_reader_submit(r->db->pg_reader, req);
    return 1;
}

static store_req *read_req(db_reads *r, int kind, store_done_fn *done,
                           void *ctx)
{
    return store__req_new(r->q, kind, done, ctx);
}

int db_get(db_reads *r, const char *number, store_done_fn *done, void *ctx)
{
    store_req *req;

    if (r->sqlite != NULL) {
        twu_buf b = {0};
        tw_err err;
        int rc = store_get(r->sqlite, number, &b, &err);

        return sqlite_answer(done, ctx, rc, &b, &err, "no such invoice", 0);
    }
    if ((req = read_req(r, STORE__GET, done, ctx)) == NULL)
        return answer_text_now(done, ctx, 500, "out of memory");
    snprintf(req->inv.number, sizeof(req->inv.number), "%s", number);
    return pg_read(r, req, 0);
}

int db_newest(db_reads *r, store_done_fn *done, void *ctx)
{
    store_req *req;
    unsigned gen = 0;

    db_newest_generation(r->db, &gen);
    if (r->sqlite != NULL) {
        twu_buf b = {0};
        tw_err err;
        int rc = store_newest(r->sqlite, &b, &err);

        return sqlite_answer(done, ctx, rc, &b, &err,
                             "there are no invoices yet", gen);
    }
    if ((req = read_req(r, STORE__NEWEST, done, ctx)) == NULL)
        return answer_text_now(done, ctx, 500, "out of memory");
    return pg_read(r, req, gen);
}

int db_page(db_reads *r, const char *after, int limit, store_done_fn *done,
            void *ctx)
{
    store_req *req;
    int64_t from = 0;

    if (r->sqlite != NULL) {
        twu_buf b = {0};
        tw_err err;

        if (store_page(r->sqlite, after, limit, &b, &err) < 0)
            return sqlite_answer(done, ctx, -1, &b, &err, "", 0);
        return answer_now(done, ctx, 200, &b, 0);
    }
    if (after != NULL && store__parse_cursor(after, &from) < 0)
        return answer_text_now(done, ctx, 400,
                               "the cursor 'after' is not one this server "
                               "gave out; use the \"next\" value of the "
                               "previous page");
    if (limit < 1 || limit > 100)
        return answer_text_now(done, ctx, 400,
                               "limit must be between 1 and 100");
    if ((req = read_req(r, STORE__PAGE, done, ctx)) == NULL)
        return answer_text_now(done, ctx, 500, "out of memory");
    req->after = from;
    req->limit = limit;
    return pg_read(r, req, 0);
}

int db_newest_generation(inv_db *db, unsigned *gen)
{
    unsigned remote = 0;
    int listening = 1;

    if (db->pg_reader != NULL)
        listening = pg_reader_generation(db->pg_reader, &remote);
    *gen = atomic_load(&db->local_gen) + remote;
    return listening;
}

void db_invoice_added(inv_db *db)
{
    atomic_fetch_add(&db->local_gen, 1);
}

void db_metrics(inv_db *db, twu_buf *out)
{
    unsigned long reader_503 = 0, writer_503 = 0;
    int reader_up = 1, writer_up = 1;

    if (db->pg_reader != NULL) {
        reader_up = pg_reader_up(db->pg_reader);
        reader_503 = pg_reader_unavailable(db->pg_reader);
        writer_up = pg_writer_up(db->pg_writer);
        writer_503 = pg_writer_unavailable(db->pg_writer);
    }
    twu_buf_printf(out,
        "# HELP twoway_database_up 1 while the connection to the invoice "
        "database works.\n"
        "# TYPE twoway_database_up gauge\n"
        "twoway_database_up{connection=\"reader\"} %d\n"
        "twoway_database_up{connection=\"writer\"} %d\n"
        "# HELP twoway_database_unavailable_total Requests answered 503 "
        "because the database could not be reached.\n"
        "# TYPE twoway_database_unavailable_total counter\n"
        "twoway_database_unavailable_total %lu\n",
        reader_up, writer_up,
        atomic_load(&db->unavailable) + reader_503 + writer_503);
}
