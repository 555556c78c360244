/* store_writer_test.c - the invoice writer: group commit from two threads,
 * duplicates and Idempotency-Key replays, nothing lost at stop and nothing
 * taken after it (reads are in store_read_test.c). */
#include "store_helpers.h"

#include <pthread.h>

/* -------------------------------------------------------------- writer */

#define PER_THREAD 50

typedef struct inserter {
    store_writer *w;
    int id;
    int created, other;
} inserter;

static void count_answer(void *ctx, store_result *result)
{
    inserter *t = ctx;

    if (result->status == 201 && result->body.data != NULL &&
        strstr(result->body.data, "\"created_at\":\"") != NULL)
        t->created++;
    else
        t->other++;
}

static void *insert_many(void *arg)
{
    inserter *t = arg;
    tw_err err;
    store_queue *q = store_queue_new(&err);
    int submitted = 0;

    if (q == NULL)
        return NULL;
    for (int i = 0; i < PER_THREAD; i++) {
        char number[16];
        inv_invoice inv;

        snprintf(number, sizeof(number), "T%d-%d", t->id, i);
        inv = make_invoice(number, "Ann", 100 + i, "EUR");
        if (store_writer_submit(t->w, q, &inv, NULL, NULL, count_answer, t) == 0)
            submitted++;
    }
    while (t->created + t->other < submitted) {
        struct pollfd p = {.fd = store_queue_fd(q), .events = POLLIN};

        if (poll(&p, 1, 10000) != 1)
            break;
        store_queue_drain(q);
    }
    store_queue_free(q);
    return NULL;
}

static void writer_inserts_from_two_threads(void **state)
{
    fixture *f = init_db(state);
    inserter t[2];
    pthread_t th[2];
    tw_err err;
    store_writer *w = store_writer_start(f->db, &err);

    assert_non_null(w);
    for (int i = 0; i < 2; i++) {
        t[i] = (inserter){.w = w, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, insert_many, &t[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].created, PER_THREAD);
        assert_int_equal(t[i].other, 0);
    }
    store_writer_stop(w);
}

static void duplicates_are_200_or_409(void **state)
{
    fixture *f = init_db(state);
    inv_invoice inv = make_invoice("00095235", "Ann", 1050, "USD");
    inv_invoice other = make_invoice("00095235", "Bob", 1050, "USD");
    inv_invoice seed = make_invoice("00095234", "John", 1000, "USD");
    store_writer *w;
    store_queue *q;
    answer a, b, c, d;

    writer_and_queue(f, &w, &q);
    a = submit(w, q, &inv, NULL);
    assert_int_equal(a.status, 201);
    assert_non_null(strstr(a.body, "\"invoice_price\":\"10.50USD\""));
    b = submit(w, q, &inv, NULL);
    assert_int_equal(b.status, 200);
    assert_string_equal(b.body, a.body);
    c = submit(w, q, &other, NULL);
    assert_int_equal(c.status, 409);
    assert_non_null(strstr(c.body, "00095235 already exists"));
    d = submit(w, q, &seed, NULL); /* the seed's own number */
    assert_int_equal(d.status, 409);
    free(a.body);
    free(b.body);
    free(c.body);
    free(d.body);
    store_writer_stop(w);
    store_queue_free(q);
}

/* A database of schema 1 (keys of no client) is upgraded by store_init:
 * its keys are kept, and belong to no client. */
static void schema_1_is_upgraded(void **state)
{
    fixture *f = init_db(state);
    inv_invoice inv = make_invoice("M-1", "Ann", 1050, "USD");
    inv_invoice changed = make_invoice("M-1", "Ann", 1051, "USD");
    store_writer *w;
    store_queue *q;
    sqlite3 *db;
    sqlite3_stmt *st;
    answer a;
    tw_err err;

    writer_and_queue(f, &w, &q);
    a = submit(w, q, &inv, "old-key");
    assert_int_equal(a.status, 201);
    free(a.body);
    store_writer_stop(w);
    /* Back to schema 1 by hand, as an earlier invoice-server left it. */
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
        "CREATE TABLE v1(key TEXT PRIMARY KEY, number TEXT NOT NULL,"
        "  request_hash TEXT NOT NULL, created_at INTEGER);"
        "INSERT INTO v1 SELECT key, number, request_hash, created_at"
        "  FROM idempotency;"
        "DROP TABLE idempotency;"
        "ALTER TABLE v1 RENAME TO idempotency;"
        "UPDATE meta SET value = '1' WHERE key = 'schema_version';",
        NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    tw_err_clear(&err);
    if (store_init(f->db, &err) < 0)
        fail_msg("store_init of a schema 1 database: %s", err.msg);
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
        "SELECT (SELECT value FROM meta WHERE key = 'schema_version'),"
        "       client, key, number FROM idempotency", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal(sqlite3_column_text(st, 0), "2");
    assert_string_equal(sqlite3_column_text(st, 1), "");
    assert_string_equal(sqlite3_column_text(st, 2), "old-key");
    assert_string_equal(sqlite3_column_text(st, 3), "M-1");
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);

    /* A retry across the upgrade is decided by its content. */
    store_queue_free(q);
    writer_and_queue(f, &w, &q);
    a = submit(w, q, &inv, "old-key");
    assert_int_equal(a.status, 200);
    free(a.body);
    a = submit(w, q, &changed, "old-key");
    assert_int_equal(a.status, 409);
    free(a.body);
    store_writer_stop(w);
    store_queue_free(q);
}

static void idempotency_keys_replay_or_conflict(void **state)
{
    fixture *f = init_db(state);
    inv_invoice inv = make_invoice("K-1", "Ann", 1050, "USD");
    inv_invoice other = make_invoice("K-2", "Ann", 1050, "USD");
    inv_invoice changed = make_invoice("K-1", "Ann", 1051, "USD");
    store_writer *w;
    store_queue *q;
    answer a, b, c, d;

    writer_and_queue(f, &w, &q);
    a = submit(w, q, &inv, "key-1");
    assert_int_equal(a.status, 201);
    b = submit(w, q, &inv, "key-1"); /* replay: the first answer */
    assert_int_equal(b.status, 201);
    assert_string_equal(b.body, a.body);
    c = submit(w, q, &other, "key-1"); /* reuse for another invoice */
    assert_int_equal(c.status, 409);
    assert_non_null(strstr(c.body, "Idempotency-Key"));
    d = submit(w, q, &changed, "key-1");
    assert_int_equal(d.status, 409);
    free(a.body);
    free(b.body);
    free(c.body);
    free(d.body);
    /* The same invoice under a new key: already stored, 200. */
    a = submit(w, q, &inv, "key-2");
    assert_int_equal(a.status, 200);
    free(a.body);
    /* Keys belong to their client: another one may use "key-1" too. */
    a = submit_as(w, q, &other, "key-1", "client-b");
    assert_int_equal(a.status, 201);
    b = submit_as(w, q, &other, "key-1", "client-b");
    assert_int_equal(b.status, 201);
    assert_string_equal(b.body, a.body);
    free(a.body);
    free(b.body);
    store_writer_stop(w);
    store_queue_free(q);
}

static void nothing_is_lost_at_stop(void **state)
{
    fixture *f = init_db(state);
    answer answers[40];
    store_writer *w;
    store_queue *q;
    sqlite3 *db;
    sqlite3_stmt *st;
    tw_err err;
    int rows = 0;

    writer_and_queue(f, &w, &q);
    for (int i = 0; i < 40; i++) {
        char number[16];
        inv_invoice inv;

        snprintf(number, sizeof(number), "D-%d", i);
        inv = make_invoice(number, "Ann", i, "USD");
        answers[i] = (answer){0};
        assert_int_equal(
            store_writer_submit(w, q, &inv, NULL, NULL, keep_answer, &answers[i]), 0);
    }
    store_writer_stop(w); /* finishes all 40 first */
    store_queue_drain(q);
    for (int i = 0; i < 40; i++) {
        assert_true(answers[i].got);
        assert_int_equal(answers[i].status, 201);
        free(answers[i].body);
    }
    store_queue_free(q);

    /* A new writer after stop: submit refused by the old one is moot; a
     * fresh connection sees every row. */
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM invoices",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    rows = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_int_equal(rows, 41);
    {
        tw_store *s = open_reader(f);
        twu_buf out = {0};

        assert_int_equal(store_get(s, "D-39", &out, &err), 1);
        twu_buf_free(&out);
        store_close(s);
    }
}

static void *stop_writer(void *arg)
{
    store_writer_stop(arg);
    return NULL;
}

typedef struct tally {
    int n201, other;
} tally;

static void tally_answer(void *ctx, store_result *result)
{
    tally *t = ctx;

    if (result->status == 201)
        t->n201++;
    else
        t->other++;
}

static void submit_refuses_after_stop_began(void **state)
{
    fixture *f = init_db(state);
    char long_key[INV_KEY_MAX + 2];
    tally t = {0};
    store_writer *w;
    store_queue *q;
    pthread_t stopper;
    sqlite3 *db;
    int accepted = 0, refused_one = 0;

    writer_and_queue(f, &w, &q);
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    {
        inv_invoice inv = make_invoice("S-0", "Ann", 1, "USD");

        assert_int_equal(
            store_writer_submit(w, q, &inv, long_key, NULL, tally_answer, &t), -1);
    }

    /* Hold the write lock, and give the writer a request: it is then stuck
     * in its group (waiting for the lock) while store_writer_stop waits for
     * it, so the writer is still alive while we submit; submits made after
     * the stop began are refused. */
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    {
        inv_invoice inv = make_invoice("S-0", "Ann", 1, "USD");

        assert_int_equal(
            store_writer_submit(w, q, &inv, NULL, NULL, tally_answer, &t), 0);
        accepted++;
    }
    assert_int_equal(pthread_create(&stopper, NULL, stop_writer, w), 0);
    for (int i = 0; i < 2000 && !refused_one; i++) {
        char number[16];
        inv_invoice inv;

        snprintf(number, sizeof(number), "S-%d", i + 1);
        inv = make_invoice(number, "Ann", 1, "USD");
        if (store_writer_submit(w, q, &inv, NULL, NULL, tally_answer, &t) == 0)
            accepted++;
        else
            refused_one = 1;
        usleep(1000);
    }
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    pthread_join(stopper, NULL);
    assert_true(refused_one);
    store_queue_drain(q);
    assert_int_equal(t.n201, accepted); /* the ones accepted were stored */
    assert_int_equal(t.other, 0);
    store_queue_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(writer_inserts_from_two_threads),
        T(duplicates_are_200_or_409),
        T(idempotency_keys_replay_or_conflict),
        T(schema_1_is_upgraded),
        T(nothing_is_lost_at_stop),
        T(submit_refuses_after_stop_began),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
