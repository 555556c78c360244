/*
 * page.c - read one page of GET /invoices, trusting nothing in it.
 *
 * The page comes from the network: every field that ends up in a mail
 * header or the SMTP envelope is checked here, so that a hostile or broken
 * server cannot add headers or recipients (RFC 5322 section 2.2: no CR or
 * LF in a header field body).
 */
#include "sync.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

int mail_page_parse(mail_page *p, const char *body, size_t len,
                    const char *url, mail_err *e)
{
    json_error_t jerr;
    json_t *root, *invoices, *next;

    memset(p, 0, sizeof(*p));
    if ((root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL)
        return mail_err_set(e, MAIL_EXIT_RESPONSE, "the answer of %s is not "
                            "JSON (%s, at byte %d): is --url the invoice "
                            "server?", url, jerr.text, jerr.position);
    invoices = json_object_get(root, "invoices");
    next = json_object_get(root, "next");
    if (!json_is_array(invoices) || next == NULL ||
        !(json_is_null(next) || json_is_string(next))) {
        json_decref(root);
        return mail_err_set(e, MAIL_EXIT_RESPONSE, "the answer of %s is JSON "
                            "but not a page of invoices (it needs "
                            "\"invoices\": [...] and \"next\": a cursor or "
                            "null): is --url the invoice server?", url);
    }
    if (json_is_string(next) &&
        (json_string_length(next) == 0 || json_string_length(next) > 200 ||
         strlen(json_string_value(next)) != json_string_length(next))) {
        json_decref(root);
        return mail_err_set(e, MAIL_EXIT_RESPONSE, "the answer of %s has a "
                            "\"next\" cursor that is empty, longer than 200 "
                            "bytes or holds a NUL", url);
    }
    p->root = root;
    p->count = json_array_size(invoices);
    p->next = json_is_string(next) ? json_string_value(next) : NULL;
    return 0;
}

void mail_page_free(mail_page *p)
{
    json_decref(p->root);
    memset(p, 0, sizeof(*p));
}

/* Whether the UTF-8 text (jansson checked the encoding) holds a NUL, a
 * control character (C0, DEL, C1) or is longer than `max` bytes. */
static int bad_text(json_t *v, size_t max)
{
    const unsigned char *s = (const unsigned char *)json_string_value(v);
    size_t len = json_string_length(v);

    if (len > max || strlen((const char *)s) != len)
        return 1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f)
            return 1;
        if (s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)
            return 1;
    }
    return 0;
}

/* An optional string field: "" when absent or null. */
static int text_field(json_t *obj, const char *name, size_t max,
                      const char **out, char *why, size_t why_len)
{
    json_t *v = json_object_get(obj, name);

    *out = "";
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v) || bad_text(v, max)) {
        snprintf(why, why_len, "its \"%s\" is not a string of at most %zu "
                 "bytes without control characters", name, max);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int mail_page_invoice(const mail_page *p, size_t idx, mail_invoice *inv,
                      char *why, size_t why_len)
{
    json_t *o = json_array_get(json_object_get(p->root, "invoices"), idx);
    json_t *number = json_object_get(o, "invoice_number");
    json_t *email = json_object_get(o, "email");

    memset(inv, 0, sizeof(*inv));
    if (!json_is_object(o)) {
        snprintf(why, why_len, "invoice %zu of the page is not a JSON object",
                 idx + 1);
        return -1;
    }
    if (!json_is_string(number) || json_string_length(number) == 0 ||
        json_string_length(number) > 64 ||
        strlen(json_string_value(number)) != json_string_length(number)) {
        snprintf(why, why_len, "invoice %zu of the page has no "
                 "\"invoice_number\" of 1 to 64 characters", idx + 1);
        return -1;
    }
    for (const char *c = json_string_value(number); *c; c++)
        if (*c < 0x21 || *c > 0x7e) {
            snprintf(why, why_len, "invoice %zu of the page has an "
                     "\"invoice_number\" with spaces, control or non-ASCII "
                     "characters", idx + 1);
            return -1;
        }
    inv->number = json_string_value(number);
    if (!json_is_string(email) ||
        strlen(json_string_value(email)) != json_string_length(email) ||
        !mail_addr_valid(json_string_value(email))) {
        snprintf(why, why_len, "its \"email\" is missing or not an address "
                 "mail-server can send to (name@domain, ASCII, at most %d "
                 "bytes)", MAIL_ADDR_MAX);
        return -1;
    }
    inv->email = json_string_value(email);
    if (text_field(o, "firstname", 256, &inv->firstname, why, why_len) < 0 ||
        text_field(o, "lastname", 256, &inv->lastname, why, why_len) < 0 ||
        text_field(o, "invoice_price", 64, &inv->price, why, why_len) < 0 ||
        text_field(o, "created_at", 64, &inv->created_at, why, why_len) < 0)
        return -1;
    return 0;
}
