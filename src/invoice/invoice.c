/*
 * invoice.c - one invoice as the API sees it: the POST body checked field by
 * field, and the price in the seed's form ("10USD", "10.50USD").
 *
 * Money is integer minor units plus an ISO 4217 code; the number of minor
 * digits comes from ISO 4217's "minor unit" column, so 1000 JPY is "1000JPY"
 * and 1005 KWD (three digits) is "1.005KWD".
 */
#include "store_internal.h"
#include "util.h"

#include <jansson.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* --------------------------------------------------------------- price */

/* ISO 4217 currencies whose minor unit is not 2 digits. */
static const struct {
    char code[4];
    int digits;
} minor_digits[] = {
    {"BIF", 0}, {"CLP", 0}, {"DJF", 0}, {"GNF", 0}, {"ISK", 0},
    {"JPY", 0}, {"KMF", 0}, {"KRW", 0}, {"PYG", 0}, {"RWF", 0},
    {"UGX", 0}, {"UYI", 0}, {"VND", 0}, {"VUV", 0}, {"XAF", 0},
    {"XOF", 0}, {"XPF", 0},
    {"BHD", 3}, {"IQD", 3}, {"JOD", 3}, {"KWD", 3}, {"LYD", 3},
    {"OMR", 3}, {"TND", 3},
    {"CLF", 4}, {"UYW", 4},
};

static int currency_digits(const char *currency)
{
    for (size_t i = 0; i < sizeof(minor_digits) / sizeof(minor_digits[0]); i++)
        if (strcmp(minor_digits[i].code, currency) == 0)
            return minor_digits[i].digits;
    return 2;
}

void inv_format_price(int64_t amount_minor, const char *currency, char *buf,
                      size_t len)
{
    static const uint64_t scale[] = {1, 10, 100, 1000, 10000};
    int digits = currency_digits(currency);
    /* Negative amounts never pass validation; shown signed all the same. */
    uint64_t mag = amount_minor < 0 ? (uint64_t)0 - (uint64_t)amount_minor
                                    : (uint64_t)amount_minor;
    uint64_t whole = mag / scale[digits], frac = mag % scale[digits];
    const char *sign = amount_minor < 0 ? "-" : "";

    if (len == 0)
        return;
    if (frac == 0)
        snprintf(buf, len, "%s%llu%s", sign, (unsigned long long)whole,
                 currency);
    else
        snprintf(buf, len, "%s%llu.%0*llu%s", sign, (unsigned long long)whole,
                 digits, (unsigned long long)frac, currency);
}

/* ---------------------------------------------------------- validation */

#define AMOUNT_MAX (INT64_C(1) << 53) /* exact in every JSON reader */

/* Set the field and sentence of a refusal; -1. */
TWU_PRINTF(5, 6)
static int refuse(const char **field, const char *name, char *why,
                  size_t why_len, const char *fmt, ...)
{
    va_list ap;

    if (field != NULL)
        *field = name;
    if (why != NULL && why_len > 0) {
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Whether UTF-8 `s` (already valid: jansson checks) holds a control
 * character: C0, DEL, or C1 (U+0080..U+009F, bytes C2 80..C2 9F). */
static int has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f)
            return 1;
        if (c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] <= 0x9f)
            return 1;
    }
    return 0;
}

/* The string member `name`, or NULL with the refusal set. */
static const char *get_string(json_t *obj, const char *name, size_t *len,
                              const char **field, char *why, size_t why_len)
{
    json_t *v = json_object_get(obj, name);

    if (v == NULL) {
        refuse(field, name, why, why_len, "%s is missing", name);
        return NULL;
    }
    if (!json_is_string(v)) {
        refuse(field, name, why, why_len, "%s must be a string", name);
        return NULL;
    }
    *len = json_string_length(v);
    return json_string_value(v);
}

static int check_number(json_t *obj, inv_invoice *out, const char **field,
                        char *why, size_t why_len)
{
    static const char name[] = "invoice_number";
    size_t len;
    const char *s = get_string(obj, name, &len, field, why, why_len);

    if (s == NULL)
        return -1;
    if (len < 1 || len > INV_NUMBER_MAX)
        return refuse(field, name, why, why_len,
                      "%s must be 1 to %d characters", name, INV_NUMBER_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
              (c >= 'a' && c <= 'z') || c == '-'))
            return refuse(field, name, why, why_len,
                          "%s may hold only digits, letters and '-'", name);
    }
    memcpy(out->number, s, len + 1);
    return 0;
}

static int check_name(json_t *obj, const char *name, char *dst,
                      const char **field, char *why, size_t why_len)
{
    size_t len;
    const char *s = get_string(obj, name, &len, field, why, why_len);

    if (s == NULL)
        return -1;
    if (len < 1 || len > INV_NAME_MAX)
        return refuse(field, name, why, why_len,
                      "%s must be 1 to %d bytes of UTF-8", name, INV_NAME_MAX);
    if (has_control(s, len))
        return refuse(field, name, why, why_len,
                      "%s must not hold control characters", name);
    memcpy(dst, s, len + 1);
    return 0;
}

/*
 * An address the mail-server can put in a header as it is: one '@', a
 * non-empty local part and domain, and none of the characters RFC 5322
 * would make us quote (specials, spaces, controls), so nothing can be
 * smuggled into a header.
 */
static int check_email(json_t *obj, inv_invoice *out, const char **field,
                       char *why, size_t why_len)
{
    static const char name[] = "email";
    size_t len, at = 0, ats = 0;
    const char *s = get_string(obj, name, &len, field, why, why_len);

    if (s == NULL)
        return -1;
    if (len < 1 || len > INV_EMAIL_MAX)
        return refuse(field, name, why, why_len,
                      "email must be 1 to %d bytes", INV_EMAIL_MAX);
    if (has_control(s, len))
        return refuse(field, name, why, why_len,
                      "email must not hold control characters");
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '@') {
            at = i;
            ats++;
        } else if (strchr(" ()<>,;:\\\"[]", s[i]) != NULL) {
            return refuse(field, name, why, why_len,
                          "email must not hold spaces or any of ()<>,;:\\\"[]");
        }
    }
    if (ats != 1 || at == 0 || at == len - 1)
        return refuse(field, name, why, why_len,
                      "email must be local-part@domain with one '@'");
    if (s[at + 1] == '.' || s[len - 1] == '.' || strstr(s + at, "..") != NULL)
        return refuse(field, name, why, why_len,
                      "email's domain is not a domain name");
    memcpy(out->email, s, len + 1);
    return 0;
}

static int check_amount(json_t *obj, inv_invoice *out, const char **field,
                        char *why, size_t why_len)
{
    static const char name[] = "amount_minor";
    json_t *v = json_object_get(obj, name);
    json_int_t n;

    if (v == NULL)
        return refuse(field, name, why, why_len, "amount_minor is missing");
    if (!json_is_integer(v))
        return refuse(field, name, why, why_len,
                      "amount_minor must be an integer number of minor "
                      "units (1050 for 10.50 USD)");
    n = json_integer_value(v);
    if (n < 0 || n > AMOUNT_MAX)
        return refuse(field, name, why, why_len,
                      "amount_minor must be between 0 and 2^53");
    out->amount_minor = (int64_t)n;
    return 0;
}

static int check_currency(json_t *obj, inv_invoice *out, const char **field,
                          char *why, size_t why_len)
{
    static const char name[] = "currency";
    size_t len;
    const char *s = get_string(obj, name, &len, field, why, why_len);

    if (s == NULL)
        return -1;
    if (len != 3 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' ||
        s[2] < 'A' || s[2] > 'Z')
        return refuse(field, name, why, why_len,
                      "currency must be an ISO 4217 code: three upper-case "
                      "letters such as USD");
    memcpy(out->currency, s, 4);
    return 0;
}

int inv_invoice_from_json(const char *body, size_t len, inv_invoice *out,
                          const char **field, char *why, size_t why_len)
{
    json_error_t jerr;
    json_t *root;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (body == NULL || len == 0)
        return refuse(field, "body", why, why_len,
                      "the body is empty: send a JSON object");
    /* No JSON_ALLOW_NUL: "\u0000" in a string is refused by the parser. */
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return refuse(field, "body", why, why_len,
                      "invalid JSON at line %d, column %d: %s", jerr.line,
                      jerr.column, jerr.text);
    if (!json_is_object(root)) {
        refuse(field, "body", why, why_len, "the body must be a JSON object");
        goto done;
    }
    if (check_number(root, out, field, why, why_len) < 0 ||
        check_name(root, "firstname", out->firstname, field, why, why_len) < 0 ||
        check_name(root, "lastname", out->lastname, field, why, why_len) < 0 ||
        check_email(root, out, field, why, why_len) < 0 ||
        check_amount(root, out, field, why, why_len) < 0 ||
        check_currency(root, out, field, why, why_len) < 0)
        goto done;
    rc = 0;
done:
    json_decref(root);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}
