/*
 * mime.c - an invoice as an Internet message (RFC 5322) with a MIME body
 * (RFC 2045), ready for SMTP.
 *
 * Lines end in CRLF and hold at most 78 characters (RFC 5322 section
 * 2.1.1): headers are folded between words, and the body is sent
 * quoted-printable (RFC 2045 section 6.7) whenever it is not short plain
 * ASCII.  Names that are not plain ASCII words become RFC 2047
 * encoded-words; addresses are only ever ones mail_addr_valid accepted, so
 * no field can carry a line break into the header.
 */
#include "sync.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_CHARS 78 /* RFC 5322 section 2.1.1 "SHOULD" */
#define QP_LINE_MAX 76    /* RFC 2045 section 6.7 rule 5 */
#define MESSAGE_MAX (256 * 1024)

/* A message being built, within MESSAGE_MAX; `failed` sticks, so a run of
 * puts is checked once at the end. */
typedef struct mbuf {
    twu_buf buf;
    int failed;
} mbuf;

#define MBUF_INIT {.buf = {.max = MESSAGE_MAX}}

static void put(mbuf *b, const char *s, size_t n)
{
    if (!b->failed && twu_buf_append(&b->buf, s, n) < 0)
        b->failed = 1;
}

static void put_str(mbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

MAIL_PRINTF(2, 3)
static void put_fmt(mbuf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        b->failed = 1;
    else
        put(b, tmp, (size_t)n);
}

/* RFC 5322 section 3.2.3 atext. */
static int is_atext(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

int mail_addr_valid(const char *addr)
{
    const char *at = strrchr(addr, '@');
    size_t len = strlen(addr), local;

    if (at == NULL || len > MAIL_ADDR_MAX)
        return 0;
    local = (size_t)(at - addr);
    if (local == 0 || local > 64 || at[1] == '\0')
        return 0;
    /* Local part: dot-atom (section 3.4.1), no quoted strings. */
    for (size_t i = 0; i < local; i++) {
        char c = addr[i];

        if (c == '.') {
            if (i == 0 || i + 1 == local || addr[i + 1] == '.')
                return 0;
        } else if (!is_atext((unsigned char)c)) {
            return 0;
        }
    }
    /* Domain: host name labels (RFC 1035 letters, digits, hyphens). */
    for (const char *d = at + 1, *label = d;; d++) {
        if (*d == '.' || *d == '\0') {
            if (d == label || label[0] == '-' || d[-1] == '-' || d - label > 63)
                return 0;
            if (*d == '\0')
                break;
            label = d + 1;
        } else if (!((*d >= 'a' && *d <= 'z') || (*d >= 'A' && *d <= 'Z') ||
                     (*d >= '0' && *d <= '9') || *d == '-')) {
            return 0;
        }
    }
    return 1;
}

int mail_sender_parse(const char *text, mail_sender *s, mail_err *e)
{
    const char *lt = strrchr(text, '<');
    size_t n;

    memset(s, 0, sizeof(*s));
    if (lt == NULL) {
        n = strlen(text);
        if (n <= MAIL_ADDR_MAX)
            memcpy(s->addr, text, n + 1);
    } else {
        const char *name = text, *end = lt;

        n = strlen(lt + 1);
        if (n == 0 || lt[n] != '>' || n - 1 > MAIL_ADDR_MAX)
            goto bad;
        memcpy(s->addr, lt + 1, n - 1);
        while (*name == ' ')
            name++;
        while (end > name && end[-1] == ' ')
            end--;
        if (end - name >= 2 && *name == '"' && end[-1] == '"') {
            name++;
            end--;
        }
        if ((size_t)(end - name) >= sizeof(s->name))
            goto bad;
        for (const char *c = name; c < end; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '"')
                goto bad;
        memcpy(s->name, name, (size_t)(end - name));
    }
    if (mail_addr_valid(s->addr))
        return 0;
bad:
    return mail_err_set(e, MAIL_EXIT_USAGE, "--from '%s' is not an address "
                        "mail-server can send from: give name@domain or "
                        "'Name <name@domain>' (ASCII address, no quotes or "
                        "control characters in the name)", text);
}

int mail_message_id(const char *number, const char *host, char *buf,
                    size_t len)
{
    mbuf b = MBUF_INIT;
    int rc = -1;

    put_str(&b, "<invoice-");
    /* id-left is a dot-atom-text (RFC 5322 section 3.6.4): anything else,
     * '.' and the escape character '%' included, is written %XX, which
     * keeps different numbers different. */
    for (const unsigned char *c = (const unsigned char *)number; *c; c++) {
        if (is_atext(*c) && *c != '%')
            put(&b, (const char *)c, 1);
        else
            put_fmt(&b, "%%%02X", *c);
    }
    put_fmt(&b, "@%s>", host);
    if (!b.failed && b.buf.len < len) {
        memcpy(buf, b.buf.data, b.buf.len + 1);
        rc = 0;
    }
    twu_buf_free(&b.buf);
    return rc;
}

/* ------------------------------------------------------------ headers */

/* A header being written: the buffer and the column of the current line. */
typedef struct header {
    mbuf *b;
    size_t col;
} header;

static header header_begin(mbuf *b, const char *name)
{
    header h = {b, strlen(name) + 1};

    put_str(b, name);
    put_str(b, ":");
    return h;
}

/* Add " token", folding first (CRLF SP) when the line would pass 78. */
static void header_word(header *h, const char *word, size_t len)
{
    if (h->col + 1 + len > LINE_MAX_CHARS && h->col > 1) {
        put_str(h->b, "\r\n");
        h->col = 0;
    }
    put_str(h->b, " ");
    put(h->b, word, len);
    h->col += 1 + len;
}

static void header_end(header *h)
{
    put_str(h->b, "\r\n");
}

/* Bytes of the UTF-8 character that starts with `c` (1 for stray bytes). */
static size_t utf8_len(unsigned char c)
{
    return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

/* Whether `c` may stand for itself in a "Q" encoded-word in a phrase
 * (RFC 2047 section 5 (3)). */
static int q_literal(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c != '\0' && strchr("!*+-/", c));
}

/*
 * `text` as RFC 2047 encoded-words ("Q" encoding, section 4.2), each at
 * most 75 characters (section 2) and each holding whole characters
 * (section 5); the rules for a phrase also suit unstructured text.  Spaces
 * are encoded ("_") because white space between encoded-words is dropped
 * when decoding (section 6.2).  A name too long for one word is split
 * after one of its spaces when it has one, so that a decoder which keeps
 * that white space (some do) still shows whole words.
 */
static void header_encoded(header *h, const char *text)
{
    static const char prefix[] = "=?UTF-8?Q?";
    const size_t plen = sizeof(prefix) - 1, budget = 75 - plen - 2;
    const unsigned char *s = (const unsigned char *)text;
    char word[80];

    while (*s) {
        const unsigned char *after_space = NULL;
        size_t n = plen, n_after_space = 0;

        memcpy(word, prefix, plen);
        while (*s) {
            size_t clen = utf8_len(*s), need = 0;

            for (size_t i = 1; i < clen; i++)
                if (s[i] == '\0') {
                    clen = i;
                    break;
                }
            for (size_t i = 0; i < clen; i++)
                need += q_literal(s[i]) || s[i] == ' ' ? 1 : 3;
            if (n - plen + need > budget) {
                if (after_space != NULL) {
                    s = after_space;
                    n = n_after_space;
                }
                break;
            }
            for (size_t i = 0; i < clen; i++) {
                if (s[i] == ' ')
                    word[n++] = '_';
                else if (q_literal(s[i]))
                    word[n++] = (char)s[i];
                else
                    n += (size_t)snprintf(word + n, 4, "=%02X", s[i]);
            }
            s += clen;
            if (s[-1] == ' ' && *s != '\0') {
                after_space = s;
                n_after_space = n;
            }
        }
        memcpy(word + n, "?=", 2);
        header_word(h, word, n + 2);
    }
}

/*
 * Text for a header: as plain words when it is printable ASCII (only atext
 * words for a phrase, section 3.2.5) and cannot be mistaken for an
 * encoded-word; otherwise as encoded-words.
 */
static void header_text(header *h, const char *text, int phrase)
{
    int plain = strstr(text, "=?") == NULL && text[0] != '\0';
    size_t word = 0;

    /* Plain words cannot be folded inside: one longer than an encoded-word
     * is encoded, so that it can be split. */
    for (const unsigned char *c = (const unsigned char *)text; *c && plain;
         c++) {
        word = *c == ' ' ? 0 : word + 1;
        if (*c < 0x20 || *c > 0x7e || word > 75 ||
            (phrase && *c != ' ' && !is_atext(*c)))
            plain = 0;
    }
    if (!plain) {
        header_encoded(h, text);
        return;
    }
    for (const char *w = text; *w;) {
        size_t n = strcspn(w, " ");

        if (n > 0)
            header_word(h, w, n);
        w += n;
        w += strspn(w, " ");
    }
}

/* "Sun, 29 Nov 2026 08:10:38 +0000" (section 3.3), without the locale. */
static void header_date(mbuf *b, time_t now)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri",
                                    "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May",
                                       "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"};
    struct tm tm;

    if (gmtime_r(&now, &tm) == NULL) {
        b->failed = 1;
        return;
    }
    put_fmt(b, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
            days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
            tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "Name <addr>" or "addr" as an address header. */
static void header_address(mbuf *b, const char *field, const char *name,
                           const char *addr)
{
    header h = header_begin(b, field);
    char angle[MAIL_ADDR_MAX + 3];

    if (name[0] != '\0') {
        header_text(&h, name, 1);
        snprintf(angle, sizeof(angle), "<%s>", addr);
        header_word(&h, angle, strlen(angle));
    } else {
        header_word(&h, addr, strlen(addr));
    }
    header_end(&h);
}

/* ---------------------------------------------------------------- body */

/* The body as UTF-8 text with "\n" line ends. */
static void body_text(mbuf *b, const mail_invoice *inv)
{
    const char *sep = inv->firstname[0] && inv->lastname[0] ? " " : "";

    if (inv->firstname[0] || inv->lastname[0])
        put_fmt(b, "Hello %s%s%s,\n\n", inv->firstname, sep, inv->lastname);
    else
        put_str(b, "Hello,\n\n");
    put_fmt(b, "here is your invoice %s.\n\n", inv->number);
    put_fmt(b, "    Invoice number:  %s\n", inv->number);
    if (inv->price[0])
        put_fmt(b, "    Amount due:      %s\n", inv->price);
    if (inv->created_at[0])
        put_fmt(b, "    Issued:          %s\n", inv->created_at);
    put_fmt(b, "    Billed to:       %s%s%s <%s>\n", inv->firstname, sep,
            inv->lastname, inv->email);
    put_str(b, "\nThank you.\n\n-- \n"
             "This message was sent automatically; please do not reply.\n");
}

/* Whether the text can go as it is: ASCII, lines of at most 76. */
static int plain_ascii(const char *text)
{
    size_t col = 0;

    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c == '\n') {
            col = 0;
            continue;
        }
        if (*c >= 0x80 || *c < 0x20 || ++col > QP_LINE_MAX)
            return 0;
    }
    return 1;
}

/* RFC 2045 section 6.7: quoted-printable with CRLF hard line breaks and
 * "=" soft breaks keeping lines at 76 characters at most. */
static void body_qp(mbuf *out, const char *text)
{
    const unsigned char *c = (const unsigned char *)text;
    size_t col = 0;

    for (; *c; c++) {
        char tok[4];
        size_t n;
        int at_eol = c[1] == '\n' || c[1] == '\0';

        if (*c == '\n') {
            put_str(out, "\r\n");
            col = 0;
            continue;
        }
        if ((*c >= 33 && *c <= 126 && *c != '=') ||
            ((*c == ' ' || *c == '\t') && !at_eol)) {
            tok[0] = (char)*c;
            n = 1;
        } else {
            n = (size_t)snprintf(tok, sizeof(tok), "=%02X", *c);
        }
        /* Room for the token and, unless the line ends here, a soft "=". */
        if (col + n > QP_LINE_MAX - (at_eol ? 0 : 1)) {
            put_str(out, "=\r\n");
            col = 0;
        }
        put(out, tok, n);
        col += n;
    }
}

static void body_plain(mbuf *out, const char *text)
{
    for (const char *c = text; *c; c++) {
        if (*c == '\n')
            put_str(out, "\r\n");
        else
            put(out, c, 1);
    }
}

char *mail_render(const mail_invoice *inv, const mail_sender *from,
                  const char *message_id, time_t now, size_t *len)
{
    mbuf b = MBUF_INIT, text = MBUF_INIT;
    char *to_name = NULL, subject[128];
    header h;
    int qp;

    body_text(&text, inv);
    if (text.failed)
        goto err;
    qp = !plain_ascii(text.buf.data);
    if ((to_name = malloc(strlen(inv->firstname) + strlen(inv->lastname) +
                          2)) == NULL)
        goto err;
    snprintf(to_name, strlen(inv->firstname) + strlen(inv->lastname) + 2,
             "%s%s%s", inv->firstname,
             inv->firstname[0] && inv->lastname[0] ? " " : "", inv->lastname);
    snprintf(subject, sizeof(subject), "Invoice %s", inv->number);

    header_date(&b, now);
    header_address(&b, "From", from->name, from->addr);
    header_address(&b, "To", to_name, inv->email);
    h = header_begin(&b, "Subject");
    header_text(&h, subject, 0);
    header_end(&h);
    h = header_begin(&b, "Message-ID");
    header_word(&h, message_id, strlen(message_id));
    header_end(&h);
    put_str(&b, "MIME-Version: 1.0\r\n"
              "Content-Type: text/plain; charset=utf-8\r\n");
    put_fmt(&b, "Content-Transfer-Encoding: %s\r\n",
            qp ? "quoted-printable" : "7bit");
    /* RFC 3834: a machine wrote this; auto-responders should stay quiet. */
    put_str(&b, "Auto-Submitted: auto-generated\r\n\r\n");
    if (qp)
        body_qp(&b, text.buf.data);
    else
        body_plain(&b, text.buf.data);
    if (b.failed)
        goto err;
    twu_buf_free(&text.buf);
    free(to_name);
    *len = b.buf.len;
    return b.buf.data;
err:
    twu_buf_free(&b.buf);
    twu_buf_free(&text.buf);
    free(to_name);
    return NULL;
}
