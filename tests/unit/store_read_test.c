/* store_read_test.c - invoices in SQLite: the schema, reads and pages, the
 * JSON written and read, capped buffers, allocation failures (the writer is
 * in store_writer_test.c). */
#include "store_helpers.h"

#include <stdint.h>
#include <sys/stat.h>

#define SEED_PREFIX                                                           \
    "{\"firstname\":\"John\",\"lastname\":\"Ji\","                            \
    "\"email\":\"john.ji@example.com\",\"invoice_number\":\"00095234\","      \
    "\"invoice_price\":\"10USD\""

/* ------------------------------------------------------------- creation */

static void init_creates_and_seeds(void **state)
{
    fixture *f = init_db(state);
    struct stat st;
    tw_err err;

    assert_int_equal(stat(f->db, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* A second start finds and checks it, and adds no second seed. */
    assert_int_equal(store_init(f->db, &err), 0);
    {
        tw_store *s = open_reader(f);
        twu_buf out = {0};

        assert_int_equal(store_page(s, NULL, 100, &out, &err), 0);
        assert_non_null(strstr(out.data, "\"invoice_number\":\"00095234\""));
        assert_null(strstr(out.data, "},{")); /* the seed, once */
        twu_buf_free(&out);
        store_close(s);
    }
}

static void init_refuses_other_files(void **state)
{
    fixture *f = *state;
    char other[160];
    sqlite3 *db;
    tw_err err;
    FILE *fp;

    snprintf(other, sizeof(other), "%s/other", f->dir);
    fp = fopen(other, "w");
    assert_non_null(fp);
    fputs("this is a text file, not a database, and it is long enough to "
          "look like something that is not a database header at all\n",
          fp);
    fclose(fp);
    tw_err_clear(&err);
    assert_int_equal(store_init(other, &err), -1);
    assert_int_equal(err.cls, TW_ERR_INPUT);
    assert_non_null(strstr(err.msg, other));
    assert_non_null(strstr(err.msg, "not an SQLite database"));
    unlink(other);

    /* Some other program's SQLite database. */
    assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    tw_err_clear(&err);
    assert_int_equal(store_init(other, &err), -1);
    assert_int_equal(err.cls, TW_ERR_INPUT);
    assert_non_null(strstr(err.msg, other));
    assert_non_null(strstr(err.msg, "not an invoice database"));
    tw_err_clear(&err);
    assert_null(store_open(other, &err));
    assert_non_null(strstr(err.msg, "not an invoice database"));
    tw_err_clear(&err);
    assert_null(store_writer_start(other, &err));
    assert_non_null(strstr(err.msg, "not an invoice database"));
}

static void init_refuses_other_schema_versions(void **state)
{
    fixture *f = init_db(state);
    sqlite3 *db;
    tw_err err;

    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE meta SET value = '7' "
                                  "WHERE key = 'schema_version'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    tw_err_clear(&err);
    assert_int_equal(store_init(f->db, &err), -1);
    assert_int_equal(err.cls, TW_ERR_INPUT);
    assert_non_null(strstr(err.msg, f->db));
    assert_non_null(strstr(err.msg, "schema version '7'"));
}

/* ---------------------------------------------------------------- reads */

static void newest_is_the_seed(void **state)
{
    fixture *f = init_db(state);
    tw_store *s = open_reader(f);
    twu_buf out = {0};
    tw_err err;

    assert_int_equal(store_newest(s, &out, &err), 1);
    assert_memory_equal(out.data, SEED_PREFIX, strlen(SEED_PREFIX));
    assert_non_null(strstr(out.data, ",\"amount_minor\":1000,\"currency\":"
                                     "\"USD\",\"created_at\":\""));
    assert_int_equal(out.data[out.len - 1], '}');
    assert_int_equal(out.data[out.len - 2], '"');
    assert_int_equal(out.data[out.len - 3], 'Z');
    assert_null(strchr(out.data, ' ')); /* compact */
    twu_buf_free(&out);
    store_close(s);
}

static void get_found_and_not_found(void **state)
{
    fixture *f = init_db(state);
    tw_store *s = open_reader(f);
    twu_buf out = {0};
    tw_err err;

    assert_int_equal(store_get(s, "00095234", &out, &err), 1);
    assert_memory_equal(out.data, SEED_PREFIX, strlen(SEED_PREFIX));
    out.len = 0;
    assert_int_equal(store_get(s, "00095235", &out, &err), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(store_get(s, "' OR 1=1 --", &out, &err), 0);
    /* The statement is reused: found again after a miss. */
    assert_int_equal(store_get(s, "00095234", &out, &err), 1);
    twu_buf_free(&out);
    store_close(s);
}

static void pages_one_at_a_time(void **state)
{
    fixture *f = init_db(state);
    const char *numbers[] = {"00095234", "A-1", "A-2", "A-3", "A-4"};
    char cursor[32] = "";
    store_writer *w;
    store_queue *q;
    tw_store *s;
    tw_err err;
    int pages = 0;

    writer_and_queue(f, &w, &q);
    for (int i = 1; i < 5; i++) {
        inv_invoice inv = make_invoice(numbers[i], "Ann", 100 * i, "USD");
        answer a = submit(w, q, &inv, NULL);

        assert_int_equal(a.status, 201);
        free(a.body);
    }
    s = open_reader(f);
    for (;;) {
        twu_buf out = {0};
        char want[64];
        const char *next;

        assert_int_equal(store_page(s, cursor, 1, &out, &err), 0);
        assert_true(pages < 5);
        assert_memory_equal(out.data, "{\"invoices\":[{\"firstname\":", 26);
        snprintf(want, sizeof(want), "\"invoice_number\":\"%s\"",
                 numbers[pages]);
        assert_non_null(strstr(out.data, want));
        assert_null(strstr(out.data, "},{")); /* one invoice a page */
        pages++;
        next = strstr(out.data, "],\"next\":");
        assert_non_null(next);
        next += 9;
        if (strcmp(next, "null}") == 0) {
            twu_buf_free(&out);
            break;
        }
        assert_int_equal(next[0], '"');
        snprintf(cursor, sizeof(cursor), "%.*s",
                 (int)(strchr(next + 1, '"') - next - 1), next + 1);
        twu_buf_free(&out);
    }
    assert_int_equal(pages, 5);

    /* All at once: no next. */
    {
        twu_buf out = {0};

        assert_int_equal(store_page(s, "", 5, &out, &err), 0);
        assert_non_null(strstr(out.data, "},{"));
        assert_non_null(strstr(out.data, "],\"next\":null}"));
        twu_buf_free(&out);
    }
    store_close(s);
    store_writer_stop(w);
    store_queue_free(q);
}

static void malformed_cursors_are_input_errors(void **state)
{
    fixture *f = init_db(state);
    tw_store *s = open_reader(f);
    const char *bad[] = {"x", "-1", "+1", "01", "0", "1 ", " 1", "1.0",
                         "99999999999999999999", "9223372036854775808",
                         "1e3", "0x10"};
    twu_buf out = {0};
    tw_err err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tw_err_clear(&err);
        if (store_page(s, bad[i], 10, &out, &err) != -1)
            fail_msg("cursor '%s' was accepted", bad[i]);
        assert_int_equal(err.cls, TW_ERR_INPUT);
        assert_non_null(strstr(err.msg, "cursor"));
        assert_int_equal(out.len, 0);
    }
    tw_err_clear(&err);
    assert_int_equal(store_page(s, NULL, 0, &out, &err), -1);
    assert_int_equal(err.cls, TW_ERR_INPUT);
    assert_int_equal(store_page(s, NULL, 101, &out, &err), -1);
    /* Past the end: an empty page. */
    assert_int_equal(store_page(s, "9223372036854775807", 10, &out, &err), 0);
    assert_string_equal(out.data, "{\"invoices\":[],\"next\":null}");
    twu_buf_free(&out);
    store_close(s);
}

/* ----------------------------------------------------------------- JSON */

static void strings_are_escaped(void **state)
{
    store__row row = {
        .number = "N-1",
        .firstname = "An\"n\\",
        .lastname = "L\x01\n\xc3\xa9\xff", /* control, newline, é, bad */
        .email = "a@b",
        .currency = "JPY",
        .amount_minor = 1050,
        .created_at = 1795938600, /* 2026-11-29T07:50:00Z */
    };
    twu_buf out = {0};

    (void)state;
    assert_int_equal(store__render_invoice(&out, &row), 0);
    assert_string_equal(
        out.data,
        "{\"firstname\":\"An\\\"n\\\\\",\"lastname\":\"L\\u0001\\n\xc3\xa9"
        "\\ufffd\",\"email\":\"a@b\",\"invoice_number\":\"N-1\","
        "\"invoice_price\":\"1050JPY\",\"amount_minor\":1050,"
        "\"currency\":\"JPY\",\"created_at\":\"2026-11-29T07:50:00Z\"}");
    twu_buf_free(&out);
}

/* Bytes that are not UTF-8 (RFC 3629 §3: overlong forms, surrogates,
 * truncated sequences) each become U+FFFD; tab and DEL are fine as JSON. */
static void invalid_utf8_becomes_replacement(void **state)
{
    store__row row = {
        .number = "\xc0\xaf",
        .firstname = "\xed\xa0\x80",
        .lastname = "a\tb\x7f",
        .email = "\xf0\x9f\x98\x80\xe2\x82",
        .currency = "USD",
    };
    twu_buf out = {0};

    (void)state;
    assert_int_equal(store__render_invoice(&out, &row), 0);
    assert_memory_equal(
        out.data,
        "{\"firstname\":\"\\ufffd\\ufffd\\ufffd\",\"lastname\":\"a\\tb\x7f\","
        "\"email\":\"\xf0\x9f\x98\x80\\ufffd\\ufffd\",\"invoice_number\":"
        "\"\\ufffd\\ufffd\",",
        106);
    twu_buf_free(&out);
}

static void prices_use_the_currency_exponent(void **state)
{
    static const struct {
        int64_t amount;
        const char *currency, *want;
    } table[] = {
        {1000, "USD", "10USD"},          {1050, "USD", "10.50USD"},
        {5, "USD", "0.05USD"},           {0, "USD", "0USD"},
        {1001, "EUR", "10.01EUR"},       {1050, "JPY", "1050JPY"},
        {0, "KRW", "0KRW"},              {1005, "KWD", "1.005KWD"},
        {1000, "BHD", "1BHD"},           {1, "TND", "0.001TND"},
        {12345, "CLF", "1.2345CLF"},     {99, "XYZ", "0.99XYZ"},
        {INT64_C(9007199254740992), "USD", "90071992547409.92USD"},
    };
    char buf[64];

    (void)state;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        inv_format_price(table[i].amount, table[i].currency, buf, sizeof(buf));
        assert_string_equal(buf, table[i].want);
    }
    inv_format_price(1050, "USD", buf, 4); /* truncated, terminated */
    assert_string_equal(buf, "10.");
}

/* ----------------------------------------------------------- validation */

#define GOOD_BODY                                                             \
    "{\"invoice_number\":\"00095235\",\"firstname\":\"Ann\","                 \
    "\"lastname\":\"Lee\",\"email\":\"ann@example.com\","                     \
    "\"amount_minor\":1050,\"currency\":\"USD\"}"

static void accepts_a_good_body(void **state)
{
    const char *body = "{\"invoice_number\":\"AB-9\",\"firstname\":\"Zoë\","
                       "\"lastname\":\"Lee\",\"email\":\"ann@example.com\","
                       "\"amount_minor\":0,\"currency\":\"JPY\","
                       "\"note\":{\"ignored\":[1,2]}}";
    const char *field = NULL;
    inv_invoice inv;
    char why[256];

    (void)state;
    assert_int_equal(inv_invoice_from_json(GOOD_BODY, strlen(GOOD_BODY), &inv,
                                           &field, why, sizeof(why)),
                     0);
    assert_string_equal(inv.number, "00095235");
    assert_string_equal(inv.firstname, "Ann");
    assert_string_equal(inv.lastname, "Lee");
    assert_string_equal(inv.email, "ann@example.com");
    assert_int_equal(inv.amount_minor, 1050);
    assert_string_equal(inv.currency, "USD");
    assert_int_equal(inv_invoice_from_json(body, strlen(body), &inv, &field,
                                           why, sizeof(why)),
                     0);
    assert_string_equal(inv.firstname, "Zoë");
}

/* Refused, naming `want_field`, with `want_why` in the sentence. */
static void refused(const char *body, size_t len, const char *want_field,
                    const char *want_why)
{
    const char *field = NULL;
    inv_invoice inv;
    char why[256] = "";

    if (inv_invoice_from_json(body, len, &inv, &field, why, sizeof(why)) != -1)
        fail_msg("accepted: %.*s", (int)len, body);
    if (field == NULL || strcmp(field, want_field) != 0)
        fail_msg("%.*s: field %s, wanted %s (%s)", (int)len, body,
                 field ? field : "(null)", want_field, why);
    if (strstr(why, want_why) == NULL)
        fail_msg("%.*s: why '%s' lacks '%s'", (int)len, body, why, want_why);
}

/* GOOD_BODY with one member replaced (or removed when value is NULL). */
static void refused_with(const char *name, const char *value,
                         const char *want_why)
{
    static const char *names[] = {"invoice_number", "firstname", "lastname",
                                  "email", "amount_minor", "currency"};
    static const char *values[] = {"\"00095235\"", "\"Ann\"", "\"Lee\"",
                                   "\"ann@example.com\"", "1050", "\"USD\""};
    char body[1024];
    size_t n = 0;

    n += (size_t)snprintf(body + n, sizeof(body) - n, "{");
    for (size_t i = 0; i < 6; i++) {
        const char *v = strcmp(names[i], name) == 0 ? value : values[i];

        if (v == NULL)
            continue;
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"%s\":%s",
                              n > 1 ? "," : "", names[i], v);
    }
    n += (size_t)snprintf(body + n, sizeof(body) - n, "}");
    refused(body, n, name, want_why);
}

static void refuses_bad_bodies(void **state)
{
    static const char nul_inside[] = "{\"invoice_number\":\"1\"\0}";
    char deep[3000 * 2 + 1];

    (void)state;
    refused("", 0, "body", "empty");
    refused("{", 1, "body", "line 1, column");
    refused("[1,2]", 5, "body", "JSON object");
    refused("\"x\"", 3, "body", "");
    refused("null", 4, "body", "");
    refused(nul_inside, sizeof(nul_inside) - 1, "body", "invalid JSON");
    refused("{\"currency\":\"USD\",\"currency\":\"EUR\"}", 35, "body",
            "duplicate");
    memset(deep, '[', 3000);
    memset(deep + 3000, ']', 3000);
    refused(deep, 6000, "body", "invalid JSON");
    refused("{\"amount_minor\":123456789012345678901234567890}", 47, "body",
            "invalid JSON");
    refused("{\"firstname\":\"\\u0000\"}", 22, "body", "invalid JSON");
    refused("{\"firstname\":\"\xff\"}", 17, "body", "invalid JSON");
}

static void refuses_each_field_by_name(void **state)
{
    char long_name[INV_NAME_MAX + 8], long_email[INV_EMAIL_MAX + 8];

    (void)state;
    refused_with("invoice_number", NULL, "missing");
    refused_with("invoice_number", "\"\"", "1 to 32");
    refused_with("invoice_number", "\"0123456789012345678901234567890123\"",
                 "1 to 32");
    refused_with("invoice_number", "\"12/34\"", "digits, letters");
    refused_with("invoice_number", "\"12 34\"", "digits, letters");
    refused_with("invoice_number", "95235", "must be a string");

    refused_with("firstname", NULL, "missing");
    refused_with("firstname", "\"\"", "1 to 100");
    refused_with("firstname", "\"A\\nB\"", "control");
    refused_with("firstname", "\"A\\u0085B\"", "control"); /* C1 */
    refused_with("firstname", "[\"Ann\"]", "must be a string");
    snprintf(long_name, sizeof(long_name), "\"%0101d\"", 0);
    refused_with("firstname", long_name, "1 to 100");
    refused_with("lastname", NULL, "missing");
    refused_with("lastname", "\"\\t\"", "control");
    refused_with("lastname", long_name, "1 to 100");

    refused_with("email", NULL, "missing");
    refused_with("email", "\"ann.example.com\"", "one '@'");
    refused_with("email", "\"@example.com\"", "one '@'");
    refused_with("email", "\"ann@\"", "one '@'");
    refused_with("email", "\"a@b@c\"", "one '@'");
    refused_with("email", "\"ann lee@example.com\"", "spaces");
    refused_with("email", "\"ann@example.com\\r\\nBcc: x@y\"", "control");
    refused_with("email", "\"<ann@example.com>\"", "spaces");
    refused_with("email", "\"ann@example..com\"", "domain");
    snprintf(long_email, sizeof(long_email), "\"%0250d@b.cd\"", 0);
    refused_with("email", long_email, "254");

    refused_with("amount_minor", NULL, "missing");
    refused_with("amount_minor", "-1", "between 0 and 2^53");
    refused_with("amount_minor", "9007199254740993", "between 0 and 2^53");
    refused_with("amount_minor", "10.5", "integer");
    refused_with("amount_minor", "1000.0", "integer");
    refused_with("amount_minor", "\"1000\"", "integer");
    refused_with("amount_minor", "true", "integer");

    refused_with("currency", NULL, "missing");
    refused_with("currency", "\"usd\"", "three upper-case");
    refused_with("currency", "\"US\"", "three upper-case");
    refused_with("currency", "\"USDX\"", "three upper-case");
    refused_with("currency", "\"U$D\"", "three upper-case");
    refused_with("currency", "840", "must be a string");

    /* The first bad field is the one named. */
    refused("{\"email\":\"x\"}", 13, "invoice_number", "missing");
}

/* ------------------------------------------------------------- twu_buf */

static void buffers_have_a_cap(void **state)
{
    twu_buf b = {.max = 8};
    twu_buf big = {0};
    static char chunk[64 * 1024];

    (void)state;
    assert_int_equal(twu_buf_append(&b, "12345678", 8), 0);
    assert_int_equal(twu_buf_append(&b, "9", 1), -1);
    assert_string_equal(b.data, "12345678");
    assert_int_equal(twu_buf_printf(&b, "%d", 1), -1);
    b.len = 4;
    b.data[4] = '\0';
    assert_int_equal(twu_buf_printf(&b, "%s", "abcd"), 0);
    assert_string_equal(b.data, "1234abcd");
    assert_int_equal(twu_buf_printf(&b, "%s", "x"), -1);
    assert_string_equal(b.data, "1234abcd");
    twu_buf_free(&b);
    assert_null(b.data);

    /* max 0: 4 MiB. */
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 64; i++)
        assert_int_equal(twu_buf_append(&big, chunk, sizeof(chunk)), 0);
    assert_int_equal(big.len, 4u * 1024 * 1024);
    assert_int_equal(twu_buf_append(&big, "x", 1), -1);
    assert_int_equal(twu_buf_printf(&big, "x"), -1);
    twu_buf_free(&big);
}

/* Every allocation of ours failing in turn: a clean error, no leak. */
static void allocation_failures_are_clean(void **state)
{
    fixture *f = init_db(state);
    store__row row = {.number = "1", .firstname = "a", .lastname = "b",
                      .email = "c@d", .currency = "USD"};
    inv_invoice inv = make_invoice("M-1", "Ann", 1, "USD");
    store_writer *w;
    store_queue *q;
    twu_buf out = {0};
    tw_err err;

    for (long i = 0; i < 4; i++) {
        tw_store *s;

        twu_alloc_fail_after(i);
        s = store_open(f->db, &err);
        twu_alloc_fail_after(-1);
        if (s == NULL)
            assert_int_equal(err.cls, TW_ERR_INTERNAL);
        store_close(s);
    }
    twu_alloc_fail_after(0);
    assert_int_equal(store__render_invoice(&out, &row), -1);
    assert_null(store_queue_new(&err));
    twu_alloc_fail_after(-1);
    assert_int_equal(err.cls, TW_ERR_INTERNAL);
    assert_int_equal(out.len, 0);

    writer_and_queue(f, &w, &q);
    twu_alloc_fail_after(0);
    assert_int_equal(
        store_writer_submit(w, q, &inv, "key", "client", keep_answer, NULL), -1);
    twu_alloc_fail_after(-1);
    store_writer_stop(w);
    store_queue_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(init_creates_and_seeds),
        T(init_refuses_other_files),
        T(init_refuses_other_schema_versions),
        T(newest_is_the_seed),
        T(get_found_and_not_found),
        T(pages_one_at_a_time),
        T(malformed_cursors_are_input_errors),
        cmocka_unit_test(strings_are_escaped),
        cmocka_unit_test(invalid_utf8_becomes_replacement),
        cmocka_unit_test(prices_use_the_currency_exponent),
        cmocka_unit_test(accepts_a_good_body),
        cmocka_unit_test(refuses_bad_bodies),
        cmocka_unit_test(refuses_each_field_by_name),
        cmocka_unit_test(buffers_have_a_cap),
        T(allocation_failures_are_clean),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
