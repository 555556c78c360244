/*
 * json.c - the JSON of one invoice, as every answer shows it: the seed's
 * five fields first and in the seed's order, then amount_minor, currency
 * and created_at (RFC 3339).  Strings are escaped byte by byte: what is not
 * well-formed UTF-8 is escaped, so a stored name can never break the JSON.
 */
#include "store_internal.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>


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
