/*
 * policy_parse.c - one line of policy text to one rule.
 *
 *     ROLE FIELD=VALUE [FIELD=VALUE...]        (a rule)
 *     FIELD=VALUE [FIELD=VALUE...]             (an expectation)
 *
 * Fields are separated by spaces or tabs.  A value is bare (no space, '"'
 * or '#') or double-quoted, where \" and \\ are the only escapes.  A '#'
 * where a field could start begins a comment; inside a bare value it is an
 * error rather than a comment, so that "O=Team#1" cannot quietly become
 * "O=Team", a rule for someone else.  Each value is checked for its field
 * (a dns= value is a host name, an ip= value an address, ...) and stored
 * normalised, so a mistake is reported when the policy is loaded instead of
 * becoming a rule that never matches.
 */
#include "policy_internal.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define KNOWN_FIELDS "CN, O, OU, dns, uri, email, ip, sha256 or spki"
/* At most this many bytes of a token are quoted back in a message. */
#define SHOW 48

static const struct {
    const char *name;
    enum tw__pfield field;
} field_names[] = {
    {"CN", TW__PF_CN},       {"O", TW__PF_O},         {"OU", TW__PF_OU},
    {"dns", TW__PF_DNS},     {"uri", TW__PF_URI},     {"email", TW__PF_EMAIL},
    {"ip", TW__PF_IP},       {"sha256", TW__PF_SHA256}, {"spki", TW__PF_SPKI},
};

/* Where the parser is, and where its errors go. */
struct cursor {
    const char *s;
    size_t len, pos;
    const char *where;
    tw_err *err;
};

const char *tw__policy_field_name(enum tw__pfield field)
{
    for (size_t i = 0; i < sizeof(field_names) / sizeof(field_names[0]); i++)
        if (field_names[i].field == field)
            return field_names[i].name;
    return "?";
}

/* Locale-free ASCII classes: a policy must not mean something else under
 * another locale. */
static int is_blank(char c) { return c == ' ' || c == '\t'; }
static int is_lower(char c) { return c >= 'a' && c <= 'z'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_alpha(char c) { return is_lower(c) || (c >= 'A' && c <= 'Z'); }
static int is_alnum(char c) { return is_alpha(c) || is_digit(c); }
static char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }
static int is_hex(char c)
{
    return is_digit(c) || (to_lower(c) >= 'a' && to_lower(c) <= 'f');
}

static int show(size_t len) { return (int)(len > SHOW ? SHOW : len); }

/* "WHERE: what went wrong", class TW_ERR_INPUT; returns -1.  Bytes quoted
 * from the line (a tab in a quoted value, say) are shown as '?' where they
 * could break the message's one line in a log. */
TW_PRINTF(2, 3)
static int fail(const struct cursor *c, const char *fmt, ...)
{
    char msg[TW_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *m = msg; *m != '\0'; m++)
        if ((unsigned char)*m < 0x20 || *m == 0x7f)
            *m = '?';
    return twu_err(c->err, TW_ERR_INPUT, "%s: %s", c->where, msg);
}

static void skip_blanks(struct cursor *c)
{
    while (c->pos < c->len && is_blank(c->s[c->pos]))
        c->pos++;
}

static int parse_role(struct cursor *c, char **role)
{
    size_t start = c->pos, n;
    const char *tok = c->s + start;

    while (c->pos < c->len && !is_blank(c->s[c->pos]))
        c->pos++;
    n = c->pos - start;
    if (memchr(tok, '=', n) != NULL)
        return fail(c, "'%.*s' at column %zu is a field, but a rule starts "
                    "with its role, as in 'read O=MailServer'",
                    show(n), tok, start + 1);
    if (n > TW__POLICY_MAX_ROLE)
        return fail(c, "the role at column %zu is longer than %d characters",
                    start + 1, TW__POLICY_MAX_ROLE);
    for (size_t i = 0; i < n; i++)
        if (!(is_lower(tok[i]) ||
              (i > 0 && (is_digit(tok[i]) || tok[i] == '_' || tok[i] == '-'))))
            return fail(c, "role '%.*s' at column %zu is not a role name: a "
                        "lower-case letter, then lower-case letters, digits, "
                        "'_' or '-'", show(n), tok, start + 1);
    if ((*role = twu_strndup(tok, n)) == NULL)
        return twu_err_nomem(c->err);
    return 0;
}

/* FIELD= : the field, with the cursor left on the first byte of the value. */
static int parse_field_name(struct cursor *c, int first_of_expectation,
                            enum tw__pfield *field)
{
    size_t start = c->pos, n;
    const char *tok = c->s + start;

    while (c->pos < c->len && c->s[c->pos] != '=' && !is_blank(c->s[c->pos]))
        c->pos++;
    n = c->pos - start;
    if (c->pos == c->len || c->s[c->pos] != '=')
        return fail(c, "'%.*s' at column %zu is not FIELD=VALUE%s", show(n),
                    tok, start + 1,
                    first_of_expectation ? " (an expectation has no role)" : "");
    if (n == 0)
        return fail(c, "no field name before the '=' at column %zu", start + 1);
    for (size_t i = 0; i < sizeof(field_names) / sizeof(field_names[0]); i++) {
        const char *name = field_names[i].name;
        size_t j = 0;

        while (j < n && name[j] != '\0' && to_lower(tok[j]) == to_lower(name[j]))
            j++;
        if (j == n && name[j] == '\0') {
            *field = field_names[i].field;
            c->pos++; /* the '=' */
            return 0;
        }
    }
    return fail(c, "unknown field '%.*s' at column %zu: use " KNOWN_FIELDS,
                show(n), tok, start + 1);
}

/* The value, unescaped, into buf (which has room for the whole line). */
static int parse_value(struct cursor *c, const char *fname, char *buf,
                       size_t *vlen)
{
    size_t start = c->pos, n = 0;

    if (c->pos < c->len && c->s[c->pos] == '"') {
        for (c->pos++;; c->pos++) {
            char ch;

            if (c->pos == c->len)
                return fail(c, "the quote opened at column %zu is never "
                            "closed", start + 1);
            ch = c->s[c->pos];
            if (ch == '"')
                break;
            if (ch == '\\') {
                if (++c->pos == c->len)
                    return fail(c, "the quote opened at column %zu is never "
                                "closed", start + 1);
                ch = c->s[c->pos];
                if (ch != '"' && ch != '\\')
                    return fail(c, "unknown escape '\\%c' at column %zu: "
                                "inside quotes only \\\" and \\\\ are escapes",
                                ch, c->pos);
            }
            buf[n++] = ch;
        }
        c->pos++; /* the closing quote */
        if (c->pos < c->len && !is_blank(c->s[c->pos]))
            return fail(c, "'%c' right after the closing quote at column %zu: "
                        "separate fields with a space", c->s[c->pos],
                        c->pos + 1);
    } else {
        for (; c->pos < c->len && !is_blank(c->s[c->pos]); c->pos++) {
            char ch = c->s[c->pos];

            if (ch == '"')
                return fail(c, "a '\"' inside the value of %s at column %zu: "
                            "quote the whole value, as in O=\"ABC Inc.\"",
                            fname, c->pos + 1);
            if (ch == '#')
                return fail(c, "a '#' inside the value of %s at column %zu: "
                            "quote the value, or put a space before a comment",
                            fname, c->pos + 1);
            buf[n++] = ch;
        }
    }
    if (n == 0)
        return fail(c, "%s at column %zu has an empty value", fname,
                    start + 1);
    buf[n] = '\0';
    *vlen = n;
    return 0;
}

/* A host name, lower-cased in place; "*." may only be the whole first
 * label, and must be followed by at least two labels (RFC 6125 section
 * 6.4.3 leaves wildcards over a public suffix to local policy; ours is no). */
static int check_dns(const struct cursor *c, char *v, size_t len, size_t col)
{
    const char *host = v;
    size_t labels = 0, label = 0;

    for (size_t i = 0; i < len; i++)
        v[i] = to_lower(v[i]);
    if (len > 253)
        return fail(c, "the dns value at column %zu is longer than 253 "
                    "characters", col);
    if (strncmp(v, "*.", 2) == 0)
        host += 2;
    for (const char *p = host;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0 || label > 63)
                return fail(c, "the dns value '%.*s' at column %zu has an "
                            "empty label or one longer than 63 characters",
                            show(len), v, col);
            labels++;
            label = 0;
            if (*p == '\0')
                break;
        } else if (*p == '*') {
            return fail(c, "'*' in the dns value '%.*s' at column %zu: a "
                        "wildcard may only be the whole first label, as in "
                        "*.example.com", show(len), v, col);
        } else if (is_alnum(*p) || *p == '-' || *p == '_') {
            label++;
        } else {
            return fail(c, "the dns value '%.*s' at column %zu is not a host "
                        "name: use letters, digits, '-' and '.'",
                        show(len), v, col);
        }
    }
    if (host != v && labels < 2)
        return fail(c, "the dns value '%.*s' at column %zu would match every "
                    "name under a top-level domain: write at least two labels "
                    "after '*.'", show(len), v, col);
    return 0;
}

/* A URI with a scheme (RFC 3986 section 3.1) whose '*'s are whole
 * segments. */
static int check_uri(const struct cursor *c, const char *v, size_t len,
                     size_t col)
{
    size_t i = 0;

    if (is_alpha(v[0]))
        while (is_alnum(v[i]) || v[i] == '+' || v[i] == '-' || v[i] == '.')
            i++;
    if (i == 0 || v[i] != ':')
        return fail(c, "the uri value '%.*s' at column %zu has no scheme: "
                    "write it in full, as in spiffe://abc.example/svc/mail",
                    show(len), v, col);
    for (const char *seg = v; *seg != '\0';) {
        size_t n = strcspn(seg, "/");

        if (n != 1 && memchr(seg, '*', n) != NULL)
            return fail(c, "'*' in the uri value '%.*s' at column %zu must be "
                        "a whole path segment, as in spiffe://abc.example/svc/*",
                        show(len), v, col);
        seg += n;
        if (*seg == '/')
            seg++;
    }
    return 0;
}

/* local@domain; the domain is lower-cased in place. */
static int check_email(const struct cursor *c, char *v, size_t len,
                       size_t col)
{
    char *at = strrchr(v, '@');

    if (at == NULL || at == v || at[1] == '\0')
        return fail(c, "the email value '%.*s' at column %zu is not an "
                    "address: write local@domain", show(len), v, col);
    for (char *p = at + 1; *p != '\0'; p++)
        *p = to_lower(*p);
    return 0;
}

/* 64 hex digits, ':' anywhere ignored, lower-cased into out[65]. */
static int check_hex(const struct cursor *c, const char *fname, const char *v,
                     size_t col, char *out)
{
    size_t digits = 0;

    for (const char *p = v; *p != '\0'; p++) {
        if (*p == ':')
            continue;
        if (!is_hex(*p))
            return fail(c, "the %s value at column %zu holds '%c', which is "
                        "not a hex digit", fname, col, *p);
        if (digits < 64)
            out[digits] = to_lower(*p);
        digits++;
    }
    if (digits != 64)
        return fail(c, "the %s value at column %zu has %zu hex digits; a "
                    "SHA-256 has 64 (':' between them is allowed)",
                    fname, col, digits);
    out[64] = '\0';
    return 0;
}

/* Check and normalise `v` for `cond->field`; sets cond->value. */
static int make_cond(const struct cursor *c, struct tw__pcond *cond, char *v,
                     size_t len, size_t col)
{
    const char *fname = tw__policy_field_name(cond->field);
    char text[INET6_ADDRSTRLEN > 65 ? INET6_ADDRSTRLEN : 65];
    const char *store = v;

    switch (cond->field) {
    case TW__PF_CN:
    case TW__PF_O:
    case TW__PF_OU:
        break;
    case TW__PF_DNS:
        TWU_GUARD(check_dns(c, v, len, col));
        break;
    case TW__PF_URI:
        TWU_GUARD(check_uri(c, v, len, col));
        break;
    case TW__PF_EMAIL:
        TWU_GUARD(check_email(c, v, len, col));
        break;
    case TW__PF_IP:
        if (inet_pton(AF_INET, v, cond->ip) == 1)
            cond->iplen = 4;
        else if (inet_pton(AF_INET6, v, cond->ip) == 1)
            cond->iplen = 16;
        else
            return fail(c, "the ip value '%.*s' at column %zu is not an IPv4 "
                        "or IPv6 address", show(len), v, col);
        if (inet_ntop(cond->iplen == 4 ? AF_INET : AF_INET6, cond->ip, text,
                      sizeof(text)) == NULL)
            return twu_err(c->err, TW_ERR_INTERNAL, "%s: cannot print the ip "
                           "value at column %zu", c->where, col);
        store = text;
        break;
    case TW__PF_SHA256:
    case TW__PF_SPKI:
        TWU_GUARD(check_hex(c, fname, v, col, text));
        store = text;
        break;
    }
    if ((cond->value = twu_strdup(store)) == NULL)
        return twu_err_nomem(c->err);
    return 0;
err:
    return -1;
}

/* Whether a value must be quoted to read back as itself. */
static int needs_quotes(const char *v)
{
    return strpbrk(v, " \t\"#") != NULL;
}

/* "read O=\"ABC Inc.\" OU=Billing": the line as the parser understood it. */
static char *render(const char *role, const struct tw__pcond *conds, size_t n)
{
    size_t cap = (role ? strlen(role) : 0) + 1, used = 0;
    char *out;

    for (size_t i = 0; i < n; i++)
        cap += 1 + strlen(tw__policy_field_name(conds[i].field)) + 1 +
               2 * strlen(conds[i].value) + 2;
    if ((out = twu_malloc(cap)) == NULL)
        return NULL;
    if (role != NULL)
        used += (size_t)snprintf(out, cap, "%s", role);
    for (size_t i = 0; i < n; i++) {
        const char *v = conds[i].value;
        int quote = needs_quotes(v);

        used += (size_t)snprintf(out + used, cap - used, "%s%s=%s",
                                 used ? " " : "",
                                 tw__policy_field_name(conds[i].field),
                                 quote ? "\"" : "");
        for (; *v != '\0'; v++) {
            if (quote && (*v == '"' || *v == '\\'))
                out[used++] = '\\';
            out[used++] = *v;
        }
        if (quote)
            out[used++] = '"';
        out[used] = '\0';
    }
    return out;
}

void tw__prule_free(struct tw__prule *rule)
{
    if (rule == NULL)
        return;
    for (size_t i = 0; i < rule->nconds; i++)
        twu_free(rule->conds[i].value);
    twu_free(rule->role);
    twu_free(rule->text);
    twu_free(rule->where);
    twu_free(rule);
}

/* Before any token: the length and the bytes of the whole line. */
static int check_line(const struct cursor *c)
{
    if (c->len > TW__POLICY_MAX_LINE)
        return fail(c, "the line is longer than %d bytes", TW__POLICY_MAX_LINE);
    for (size_t i = 0; i < c->len; i++) {
        unsigned char ch = (unsigned char)c->s[i];

        /* Control characters could forge log lines or hide text. */
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail(c, "control character 0x%02x at column %zu: a policy "
                        "is plain text", ch, i + 1);
    }
    return 0;
}

int tw__policy_parse_line(const char *line, size_t len, int want_role,
                          const char *where, struct tw__prule **out,
                          tw_err *err)
{
    struct cursor c = {line, len, 0, where, err};
    struct tw__pcond conds[TW__POLICY_MAX_FIELDS];
    struct tw__prule *rule = NULL;
    char *role = NULL, buf[TW__POLICY_MAX_LINE + 1];
    size_t n = 0;

    *out = NULL;
    memset(conds, 0, sizeof(conds));
    TWU_GUARD(check_line(&c));
    skip_blanks(&c);
    if (c.pos == c.len || line[c.pos] == '#')
        return 0;
    if (want_role)
        TWU_GUARD(parse_role(&c, &role));
    for (;;) {
        size_t col, vlen = 0;

        skip_blanks(&c);
        if (c.pos == c.len || line[c.pos] == '#')
            break;
        if (n == TW__POLICY_MAX_FIELDS) {
            fail(&c, "a rule has at most %d fields, and column %zu starts "
                 "one more", TW__POLICY_MAX_FIELDS, c.pos + 1);
            goto err;
        }
        TWU_GUARD(parse_field_name(&c, !want_role && n == 0, &conds[n].field));
        col = c.pos + 1;
        TWU_GUARD(parse_value(&c, tw__policy_field_name(conds[n].field), buf,
                             &vlen));
        TWU_GUARD(make_cond(&c, &conds[n], buf, vlen, col));
        n++;
    }
    if (n == 0) { /* only a rule can get here: it has a role */
        fail(&c, "the rule gives the role '%s' to no one: add FIELD=VALUE, "
             "as in '%s O=MailServer'", role, role);
        goto err;
    }
    if ((rule = twu_calloc(1, sizeof(*rule) + n * sizeof(conds[0]))) == NULL ||
        (rule->text = render(role, conds, n)) == NULL) {
        twu_err_nomem(err);
        goto err;
    }
    rule->role = role;
    rule->nconds = n;
    memcpy(rule->conds, conds, n * sizeof(conds[0]));
    *out = rule;
    return 1;
err:
    if (rule != NULL)
        twu_free(rule->text);
    twu_free(rule);
    for (size_t i = 0; i < n; i++)
        twu_free(conds[i].value);
    twu_free(role);
    return -1;
}
