/* mime_test.c - mail-server's messages and its reading of invoice pages
 * (src/mail/mime.c, src/mail/page.c): what reaches a mail header comes from
 * the network, so nothing may carry a line break or a second recipient in,
 * and every line stays within RFC 5322's 78 characters. */
#include "sync.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

static void addresses_that_can_go_in_a_header(void **state)
{
    char long_addr[300];

    (void)state;
    assert_true(mail_addr_valid("ann@example.com"));
    assert_true(mail_addr_valid("a.b+c_d@sub.example.com"));
    assert_true(mail_addr_valid("o'neil@example.com"));
    assert_false(mail_addr_valid(""));
    assert_false(mail_addr_valid("@example.com"));
    assert_false(mail_addr_valid("ann@"));
    assert_false(mail_addr_valid("ann"));
    assert_false(mail_addr_valid("a nn@example.com"));
    assert_false(mail_addr_valid("ann@example.com\r\nBcc: eve@evil.example"));
    assert_false(mail_addr_valid("ann@example.com>, <eve@evil.example"));
    assert_false(mail_addr_valid("\"ann\"@example.com"));
    assert_false(mail_addr_valid("a..b@example.com"));
    assert_false(mail_addr_valid(".ann@example.com"));
    assert_false(mail_addr_valid("ann.@example.com"));
    assert_false(mail_addr_valid("ann@-example.com"));
    assert_false(mail_addr_valid("ann@example..com"));
    assert_false(mail_addr_valid("ann@example.com."));
    assert_false(mail_addr_valid("zo\xc3\xab@example.com"));
    assert_false(mail_addr_valid("ann@[127.0.0.1]"));
    memset(long_addr, 'a', 250);
    memcpy(long_addr + 250, "@x.io", 6); /* 255 bytes */
    assert_false(mail_addr_valid(long_addr));
}

static void sender_forms(void **state)
{
    mail_sender s;
    mail_err e;

    (void)state;
    assert_int_equal(mail_sender_parse("billing@abc.example", &s, &e), 0);
    assert_string_equal(s.name, "");
    assert_string_equal(s.addr, "billing@abc.example");
    assert_int_equal(mail_sender_parse("ABC Billing <billing@abc.example>",
                                       &s, &e), 0);
    assert_string_equal(s.name, "ABC Billing");
    assert_string_equal(s.addr, "billing@abc.example");
    assert_int_equal(mail_sender_parse("\"ABC\" <b@abc.example>", &s, &e), 0);
    assert_string_equal(s.name, "ABC");
    assert_int_equal(mail_sender_parse("billing at abc", &s, &e), -1);
    assert_int_equal(e.exit, MAIL_EXIT_USAGE);
    assert_non_null(strstr(e.msg, "--from 'billing at abc'"));
    assert_int_equal(mail_sender_parse("ABC <billing@abc.example", &s, &e), -1);
    assert_int_equal(mail_sender_parse("A\r\nBcc: x <b@abc.example>", &s, &e),
                     -1);
    assert_int_equal(mail_sender_parse("A \"B\" C <b@abc.example>", &s, &e),
                     -1);
}

static void message_ids(void **state)
{
    char buf[128];

    (void)state;
    assert_int_equal(mail_message_id("00095234", "localhost", buf,
                                     sizeof(buf)), 0);
    assert_string_equal(buf, "<invoice-00095234@localhost>");
    /* '.', '%' and what is not atext are escaped; distinct stays distinct. */
    assert_int_equal(mail_message_id("A.B%C<D>", "h.example", buf,
                                     sizeof(buf)), 0);
    assert_string_equal(buf, "<invoice-A%2EB%25C%3CD%3E@h.example>");
    assert_int_equal(mail_message_id("1", "[::1]", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "<invoice-1@[::1]>");
    assert_int_equal(mail_message_id("00095234", "localhost", buf, 10), -1);
}

/* Every line ends in CRLF, holds no bare CR or LF, and is <= 78 long. */
static void assert_lines_ok(const char *msg, size_t len)
{
    size_t start = 0;

    assert_true(len >= 2);
    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\r') {
            assert_true(i + 1 < len && msg[i + 1] == '\n');
            assert_true(i - start <= 78);
            start = i + 2;
            i++;
        } else {
            assert_true(msg[i] != '\n');
        }
    }
    assert_int_equal(start, len); /* the last line ends in CRLF too */
}

/* The value of header `name`, unfolded (RFC 5322 section 2.2.3: the CRLF
 * before a continuation line's white space goes). */
static const char *header(const char *msg, const char *name)
{
    static char value[1024];
    size_t n = strlen(name), used = 0;

    for (const char *p = msg; *p && !(p[0] == '\r' && p[1] == '\n');) {
        const char *end = strstr(p, "\r\n");

        if (strncmp(p, name, n) == 0 && p[n] == ':') {
            p += n + 2;
            for (;;) {
                used += (size_t)snprintf(value + used, sizeof(value) - used,
                                         "%.*s", (int)(end - p), p);
                if (end[2] != ' ' && end[2] != '\t')
                    return value;
                p = end + 2;
                end = strstr(p, "\r\n");
            }
        }
        p = end + 2;
    }
    return NULL;
}

static const mail_invoice plain = {"00095234", "john.ji@example.com", "John",
                                   "Ji", "10USD", "2026-11-29T08:10:34Z"};

static void ascii_invoice_is_7bit(void **state)
{
    mail_sender from = {"ABC Billing", "billing@abc.example"};
    size_t len;
    char *msg = mail_render(&plain, &from, "<invoice-00095234@localhost>",
                            0, &len);

    (void)state;
    assert_non_null(msg);
    assert_lines_ok(msg, len);
    assert_string_equal(header(msg, "Date"),
                        "Thu, 01 Jan 1970 00:00:00 +0000");
    assert_string_equal(header(msg, "From"),
                        "ABC Billing <billing@abc.example>");
    assert_string_equal(header(msg, "To"), "John Ji <john.ji@example.com>");
    assert_string_equal(header(msg, "Subject"), "Invoice 00095234");
    assert_string_equal(header(msg, "Message-ID"),
                        "<invoice-00095234@localhost>");
    assert_string_equal(header(msg, "MIME-Version"), "1.0");
    assert_string_equal(header(msg, "Content-Type"),
                        "text/plain; charset=utf-8");
    assert_string_equal(header(msg, "Content-Transfer-Encoding"), "7bit");
    assert_non_null(strstr(msg, "\r\n\r\nHello John Ji,\r\n"));
    assert_non_null(strstr(msg, "Amount due:      10USD\r\n"));
    free(msg);
}

static void non_ascii_name_is_encoded(void **state)
{
    mail_invoice inv = plain;
    mail_sender from = {"", "billing@abc.example"};
    size_t len;
    char *msg;

    (void)state;
    inv.firstname = "Zo\xc3\xab";
    inv.lastname = "Lee";
    msg = mail_render(&inv, &from, "<invoice-1@h>", 0, &len);
    assert_non_null(msg);
    assert_lines_ok(msg, len);
    assert_string_equal(header(msg, "From"), "billing@abc.example");
    assert_string_equal(header(msg, "To"),
                        "=?UTF-8?Q?Zo=C3=AB_Lee?= <john.ji@example.com>");
    assert_string_equal(header(msg, "Content-Transfer-Encoding"),
                        "quoted-printable");
    assert_non_null(strstr(msg, "Hello Zo=C3=AB Lee,\r\n"));
    assert_non_null(strstr(msg, "\r\n--=20\r\n")); /* trailing space */
    free(msg);
}

static void specials_and_lookalikes_are_encoded(void **state)
{
    mail_invoice inv = plain;
    mail_sender from = {"", "billing@abc.example"};
    size_t len;
    char *msg;

    (void)state;
    inv.firstname = "Lee, Ann \"The\"";
    inv.lastname = "=?x?Q?y?=";
    msg = mail_render(&inv, &from, "<invoice-1@h>", 0, &len);
    assert_non_null(msg);
    assert_string_equal(header(msg, "To"),
                        "=?UTF-8?Q?Lee=2C_Ann_=22The=22_=3D=3Fx=3FQ=3Fy=3F=3D?="
                        " <john.ji@example.com>");
    assert_lines_ok(msg, len);
    free(msg);
    /* An apostrophe is atext: no need to encode. */
    inv.firstname = "Jean-Luc";
    inv.lastname = "O'Neil";
    msg = mail_render(&inv, &from, "<invoice-1@h>", 0, &len);
    assert_string_equal(header(msg, "To"),
                        "Jean-Luc O'Neil <john.ji@example.com>");
    free(msg);
}

/* Each encoded-word of the To header is at most 75 characters and decodes to
 * whole UTF-8 characters (RFC 2047 sections 2 and 5). */
static void long_names_fold_into_whole_words(void **state)
{
    mail_invoice inv = plain;
    mail_sender from = {"", "billing@abc.example"};
    char first[101], last[101];
    size_t len, words = 0;
    char *msg, *to, *end;

    (void)state;
    /* 50 two-byte characters each: 300 bytes once Q-encoded. */
    for (int i = 0; i < 50; i++) {
        memcpy(first + 2 * i, "\xc3\xa9", 2);
        memcpy(last + 2 * i, "\xc3\xb6", 2);
    }
    first[100] = last[100] = '\0';
    inv.firstname = first;
    inv.lastname = last;
    msg = mail_render(&inv, &from, "<invoice-1@h>", 0, &len);
    assert_non_null(msg);
    assert_lines_ok(msg, len);
    to = strstr(msg, "\r\nTo:") + 5;
    end = strstr(to, "\r\nSubject:");
    for (char *w = strstr(to, "=?UTF-8?Q?"); w && w < end;
         w = strstr(w + 1, "=?UTF-8?Q?")) {
        char *close = strstr(w + 10, "?=");
        int cont = 0;

        assert_true(close - w + 2 <= 75);
        /* No word starts with a UTF-8 continuation byte (=80..=BF). */
        for (char *q = w + 10; q < close; q += (*q == '=' ? 3 : 1)) {
            unsigned v = 0;

            if (*q != '=')
                continue;
            sscanf(q + 1, "%2x", &v);
            if (q == w + 10)
                assert_false(v >= 0x80 && v <= 0xbf);
            if (v >= 0x80 && v <= 0xbf)
                cont--;
            else if (v >= 0xc0)
                cont += 1;
        }
        assert_int_equal(cont, 0); /* every lead byte has its one follower */
        words++;
    }
    assert_true(words >= 4);
    /* The split falls after the space between the names. */
    assert_non_null(strstr(to, "=C3=A9_?="));
    free(msg);
}

static void quoted_printable_lines(void **state)
{
    mail_invoice inv = plain;
    mail_sender from = {"", "billing@abc.example"};
    char first[101];
    size_t len;
    char *msg;

    (void)state;
    memset(first, '=', 100); /* "=3D" each: soft breaks needed */
    first[100] = '\0';
    inv.firstname = first;
    msg = mail_render(&inv, &from, "<invoice-1@h>", 0, &len);
    assert_non_null(msg);
    assert_lines_ok(msg, len);
    assert_string_equal(header(msg, "Content-Transfer-Encoding"),
                        "quoted-printable");
    assert_non_null(strstr(msg, "=\r\n")); /* a soft line break */
    assert_null(strstr(msg, "=3\r\n"));    /* never inside an =XX */
    free(msg);
}

/* --------------------------------------------------------------- pages */

static int parse(const char *json, mail_page *p, mail_err *e)
{
    return mail_page_parse(p, json, strlen(json), "https://h/invoices", e);
}

static void pages_that_are_not_pages(void **state)
{
    mail_page p;
    mail_err e;

    (void)state;
    assert_int_equal(parse("<html>", &p, &e), -1);
    assert_int_equal(e.exit, MAIL_EXIT_RESPONSE);
    assert_non_null(strstr(e.msg, "is not JSON"));
    assert_int_equal(parse("{\"invoices\":[]}", &p, &e), -1);
    assert_non_null(strstr(e.msg, "not a page of invoices"));
    assert_int_equal(parse("{\"invoices\":{},\"next\":null}", &p, &e), -1);
    assert_int_equal(parse("{\"invoices\":[],\"next\":5}", &p, &e), -1);
    assert_int_equal(parse("{\"invoices\":[],\"next\":\"\"}", &p, &e), -1);
    assert_int_equal(parse("{\"invoices\":[],\"next\":\"a\\u0000b\"}", &p, &e),
                     -1);
    assert_int_equal(parse("{\"invoices\":[],\"invoices\":[],\"next\":null}",
                           &p, &e), -1);
    assert_int_equal(parse("{\"invoices\":[],\"next\":\"42\"}", &p, &e), 0);
    assert_string_equal(p.next, "42");
    assert_int_equal(p.count, 0);
    mail_page_free(&p);
}

/* The idx-th invoice of a one-invoice page made from `fields`. */
static int invoice(const char *fields, mail_invoice *inv, mail_page *p)
{
    char json[1024], why[300];
    mail_err e;

    snprintf(json, sizeof(json), "{\"invoices\":[{%s}],\"next\":null}",
             fields);
    assert_int_equal(parse(json, p, &e), 0);
    return mail_page_invoice(p, 0, inv, why, sizeof(why));
}

static void invoices_that_cannot_be_mailed(void **state)
{
    static const char *const bad[] = {
        "\"email\":\"a@b.example\"",                       /* no number */
        "\"invoice_number\":\"\",\"email\":\"a@b.example\"",
        "\"invoice_number\":\"1 2\",\"email\":\"a@b.example\"",
        "\"invoice_number\":7,\"email\":\"a@b.example\"",
        "\"invoice_number\":\"1\"",                         /* no email */
        "\"invoice_number\":\"1\",\"email\":\"a@b.example\\r\\nBcc: e@v.il\"",
        "\"invoice_number\":\"1\",\"email\":\"a@b.example\","
        "\"firstname\":\"A\\r\\nBcc: e@v.il\"",
        "\"invoice_number\":\"1\",\"email\":\"a@b.example\","
        "\"lastname\":\"\\u0085\"",                          /* C1 control */
        "\"invoice_number\":\"1\",\"email\":\"a@b.example\",\"firstname\":3",
    };
    mail_invoice inv;
    mail_page p;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_int_equal(invoice(bad[i], &inv, &p), -1);
        mail_page_free(&p);
    }
    assert_int_equal(invoice("\"invoice_number\":\"00095234\","
                             "\"email\":\"john.ji@example.com\","
                             "\"firstname\":\"Zo\xc3\xab\",\"lastname\":null",
                             &inv, &p), 0);
    assert_string_equal(inv.number, "00095234");
    assert_string_equal(inv.firstname, "Zo\xc3\xab");
    assert_string_equal(inv.lastname, "");
    assert_string_equal(inv.price, "");
    mail_page_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(addresses_that_can_go_in_a_header),
        cmocka_unit_test(sender_forms),
        cmocka_unit_test(message_ids),
        cmocka_unit_test(ascii_invoice_is_7bit),
        cmocka_unit_test(non_ascii_name_is_encoded),
        cmocka_unit_test(specials_and_lookalikes_are_encoded),
        cmocka_unit_test(long_names_fold_into_whole_words),
        cmocka_unit_test(quoted_printable_lines),
        cmocka_unit_test(pages_that_are_not_pages),
        cmocka_unit_test(invoices_that_cannot_be_mailed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
