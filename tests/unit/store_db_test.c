/* store_db_test.c - the invoice store through db.h, the interface the
 * routes use, on either backend: an SQLite file in a fresh directory, or,
 * when TW_TEST_PG_URL names one, a PostgreSQL database (pg_run.py starts a
 * private server for it).  The same checks on both: the seed, reads and
 * pages, a bad cursor, the 201/200/409 rules and Idempotency-Keys, "the
 * newest" and its generation. */
#include "db.h"
#include "store_helpers.h"

#include <stdlib.h>

static const char *pg_url(void)
{
    const char *u = getenv("TW_TEST_PG_URL");

    return u != NULL && u[0] != '\0' ? u : NULL;
}

TWU_PRINTF(2, 3)
static void quiet_log(void *ctx, const char *fmt, ...)
{
    (void)ctx;
    (void)fmt;
}

/* The database of this test: PostgreSQL's tables are emptied first, so
 * that every test starts from the seed alone. */
static inv_db *start(fixture *f)
{
    const char *url = pg_url();
    tw_err err;
    inv_db *db;

    tw_err_clear(&err);
    if (url != NULL) {
        /* A new database per run would need CREATE DATABASE rights: drop
         * our schema instead (the next start makes it again). */
        char cmd[1024];

        snprintf(cmd, sizeof(cmd),
                 "psql -X -q -v ON_ERROR_STOP=1 '%s' -c 'DROP SCHEMA IF "
                 "EXISTS twoway_invoices CASCADE' >/dev/null 2>&1",
                 url);
        if (system(cmd) != 0)
            fail_msg("cannot empty the test database %s", url);
    }
    db = db_start(url != NULL ? url : f->db, quiet_log, NULL, &err);
    if (db == NULL)
        fail_msg("db_start: %s", err.msg);
    return db;
}

/* Run a read and wait for its answer. */
#define READ(q, call, a)                                                      \
    do {                                                                      \
        if ((call) == 1)                                                      \
            while (!(a).got) {                                                \
                wait_readable(store_queue_fd(q));                             \
                store_queue_drain(q);                                         \
            }                                                                 \
        assert_true((a).got);                                                 \
    } while (0)

static answer post(inv_db *db, store_queue *q, const inv_invoice *inv,
                   const char *key)
{
    answer a = {0};

    assert_int_equal(db_submit(db, q, inv, key, key ? "client-1" : NULL,
                               keep_answer, &a), 0);
    while (!a.got) {
        wait_readable(store_queue_fd(q));
        store_queue_drain(q);
    }
    return a;
}

static void reads_and_rules(void **state)
{
    fixture *f = *state;
    inv_db *db = start(f);
    tw_err err;
    store_queue *q = store_queue_new(&err);
    db_reads *r = db_reads_open(db, q, &err);
    answer a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
    inv_invoice inv = make_invoice("DB-1", "Ann", 1050, "EUR");
    answer p1, p2, p3, p4, p5;
    unsigned gen0 = 0, gen1 = 0;

    assert_non_null(q);
    assert_non_null(r);
    READ(q, db_get(r, "00095234", keep_answer, &a), a);
    assert_int_equal(a.status, 200);
    assert_non_null(strstr(a.body, "\"invoice_price\":\"10USD\""));
    READ(q, db_get(r, "' OR 1=1 --", keep_answer, &b), b);
    assert_int_equal(b.status, 404);

    assert_true(db_newest_generation(db, &gen0));
    p1 = post(db, q, &inv, "key-1");
    assert_int_equal(p1.status, 201);
    db_invoice_added(db); /* what the route does on a 201 */
    assert_true(db_newest_generation(db, &gen1));
    assert_int_not_equal(gen0, gen1);
    p2 = post(db, q, &inv, "key-1"); /* a replay: the first answer */
    assert_int_equal(p2.status, 201);
    assert_string_equal(p1.body, p2.body);
    inv = make_invoice("DB-2", "Bob", 1, "EUR");
    p3 = post(db, q, &inv, "key-1"); /* the key, for another invoice */
    assert_int_equal(p3.status, 409);
    inv = make_invoice("DB-1", "Ann", 1050, "EUR");
    p4 = post(db, q, &inv, NULL); /* the same invoice, no key */
    assert_int_equal(p4.status, 200);
    inv = make_invoice("DB-1", "Ann", 99, "EUR");
    p5 = post(db, q, &inv, NULL); /* the number, other content */
    assert_int_equal(p5.status, 409);

    READ(q, db_newest(r, keep_answer, &c), c);
    assert_int_equal(c.status, 200);
    assert_non_null(strstr(c.body, "\"invoice_number\":\"DB-1\""));
    READ(q, db_page(r, NULL, 1, keep_answer, &d), d);
    assert_int_equal(d.status, 200);
    assert_non_null(strstr(d.body, "00095234"));
    assert_null(strstr(d.body, "DB-1"));
    assert_null(strstr(d.body, "\"next\":null"));
    READ(q, db_page(r, "x1", 10, keep_answer, &e), e);
    assert_int_equal(e.status, 400);

    free(a.body); free(b.body); free(c.body); free(d.body); free(e.body);
    free(p1.body); free(p2.body); free(p3.body); free(p4.body); free(p5.body);
    db_reads_close(r);
    store_queue_free(q);
    db_stop(db);
}

/* A page walk returns every invoice once, in order. */
static void pages_cover_everything(void **state)
{
    fixture *f = *state;
    inv_db *db = start(f);
    tw_err err;
    store_queue *q = store_queue_new(&err);
    db_reads *r = db_reads_open(db, q, &err);
    char cursor[64] = "";
    int seen = 0;

    for (int i = 0; i < 7; i++) {
        char number[16];
        inv_invoice inv;
        answer p;

        snprintf(number, sizeof(number), "PG-%02d", i);
        inv = make_invoice(number, "Ann", 100 + i, "EUR");
        p = post(db, q, &inv, NULL);
        assert_int_equal(p.status, 201);
        free(p.body);
    }
    for (;;) {
        answer a = {0};
        const char *next;

        READ(q, db_page(r, cursor[0] ? cursor : NULL, 3, keep_answer, &a), a);
        assert_int_equal(a.status, 200);
        for (const char *p = a.body; (p = strstr(p, "invoice_number")) != NULL; p++)
            seen++;
        next = strstr(a.body, "\"next\":\"");
        if (next == NULL) {
            free(a.body);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%.*s",
                 (int)strcspn(next + 8, "\""), next + 8);
        free(a.body);
    }
    assert_int_equal(seen, 8); /* the seed and seven */
    db_reads_close(r);
    store_queue_free(q);
    db_stop(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(reads_and_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(pages_cover_everything, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
