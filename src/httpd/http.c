/*
 * http.c - HTTP/1.1 requests (parsed by libhttp-parser) and responses.
 * No second HTTP implementation exists in the tree: every server's
 * requests are read here.
 *
 * Limits answer, never grow: the request head (URL and headers) is held to
 * --max-head bytes (431), the header count to --max-headers (431), the body
 * to --max-body (413).  libhttp-parser refuses conflicting Content-Length
 * and Transfer-Encoding and bad chunk sizes; each of those is a 400.
 */
#include "httpd_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *httpd__status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static void head_release(httpd_worker *w, httpd_request *r)
{
    if (r->head == NULL)
        return;
    if (w->head_pool_n < (int)(sizeof(w->head_pool) / sizeof(*w->head_pool)))
        w->head_pool[w->head_pool_n++] = r->head;
    else
        twu_free(r->head);
    r->head = NULL;
}

void httpd__request_reset(httpd_worker *w, httpd_request *r)
{
    head_release(w, r);
    twu_buf_free(&r->body);
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->parser, HTTP_REQUEST);
}

void httpd__request_free(httpd_worker *w, httpd_request *r)
{
    head_release(w, r);
    twu_buf_free(&r->body);
}

void httpd__head_pool_free(httpd_worker *w)
{
    while (w->head_pool_n > 0)
        twu_free(w->head_pool[--w->head_pool_n]);
}

static httpd_conn *conn_of(http_parser *p)
{
    return p->data;
}

static int fail(httpd_conn *c, int status, const char *reason)
{
    if (c->req.error_status == 0) {
        c->req.error_status = status;
        c->req.error_reason = reason;
    }
    return -1; /* stops the parser */
}

/* The spans of the headers sit after the head bytes, aligned. */
static size_t spans_offset(const httpd *srv)
{
    size_t a = _Alignof(httpd_span);

    return (srv->opt.max_head + 1 + a - 1) / a * a;
}

static httpd_span *spans(const httpd_conn *c)
{
    return (httpd_span *)(void *)(c->req.head + spans_offset(c->w->srv));
}

/* Append to the head buffer, within --max-head. */
static int head_append(httpd_conn *c, const char *at, size_t len)
{
    httpd_request *r = &c->req;
    size_t max = c->w->srv->opt.max_head;

    if (r->head == NULL) {
        httpd_worker *w = c->w;
        size_t size = spans_offset(w->srv) +
                      w->srv->opt.max_headers * sizeof(httpd_span);

        r->head = w->head_pool_n > 0 ? w->head_pool[--w->head_pool_n]
                                     : twu_malloc(size);
        if (r->head == NULL)
            return fail(c, 500, "out of memory");
    }
    if (r->head_len + len > max)
        return fail(c, 431, "the request line and headers are too large");
    memcpy(r->head + r->head_len, at, len);
    r->head_len += len;
    return 0;
}

static int on_message_begin(http_parser *p)
{
    conn_of(p)->req.started_ms = httpd_loop_now_ms();
    conn_of(p)->req.started_us = httpd__now_us();
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    httpd_conn *c = conn_of(p);

    if (head_append(c, at, len) < 0)
        return -1;
    c->req.url_len = c->req.head_len;
    return 0;
}

/* The header just completed (field and value): remember where it is, and
 * act on the one the core answers itself (Expect). */
static int header_done(httpd_conn *c)
{
    httpd_request *r = &c->req;
    const char *value = r->field + r->field_len;
    size_t vlen = (size_t)(r->head + r->head_len - value);
    httpd_span *sp = &spans(c)[r->nheaders - 1];

    sp->off = (uint32_t)(r->field - r->head);
    sp->name_len = (uint32_t)r->field_len;
    sp->value_len = (uint32_t)vlen;
    if (r->field_len == 6 && strncasecmp(r->field, "Expect", 6) == 0) {
        if (vlen == 12 && strncasecmp(value, "100-continue", 12) == 0)
            r->expect_continue = 1;
        else
            return fail(c, 417, "only 'Expect: 100-continue' is supported");
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    httpd_conn *c = conn_of(p);
    httpd_request *r = &c->req;

    if (r->last_was_value || r->field == NULL) {
        if (r->field != NULL && header_done(c) < 0)
            return -1;
        if (++r->nheaders > c->w->srv->opt.max_headers)
            return fail(c, 431, "too many header fields");
        r->field = NULL;
        r->field_len = 0;
        r->last_was_value = 0;
    }
    if (head_append(c, at, len) < 0)
        return -1;
    if (r->field == NULL)
        r->field = r->head + r->head_len - len;
    r->field_len += len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    httpd_conn *c = conn_of(p);

    c->req.last_was_value = 1;
    return head_append(c, at, len);
}

static int on_headers_complete(http_parser *p)
{
    httpd_conn *c = conn_of(p);
    httpd_request *r = &c->req;

    if (r->field != NULL && header_done(c) < 0)
        return -1;
    if ((p->flags & F_CONTENTLENGTH) &&
        p->content_length > c->w->srv->opt.max_body)
        return fail(c, 413, "the request body is too large");
    if (p->method == HTTP_POST && !(p->flags & (F_CONTENTLENGTH | F_CHUNKED)))
        return fail(c, 411, "a POST needs Content-Length or chunked encoding");
    r->body.max = c->w->srv->opt.max_body;
    if (r->expect_continue && p->method == HTTP_POST)
        (void)twu_buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    httpd_conn *c = conn_of(p);

    if (c->req.body.len + len > c->w->srv->opt.max_body)
        return fail(c, 413, "the request body is too large");
    if (twu_buf_append(&c->req.body, at, len) < 0)
        return fail(c, 500, "out of memory");
    return 0;
}

static int on_message_complete(http_parser *p)
{
    httpd_conn *c = conn_of(p);

    c->req.complete = 1;
    http_parser_pause(p, 1); /* one request at a time (pipelining) */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

size_t httpd__request_feed(httpd_conn *c, const char *data, size_t len)
{
    http_parser *p = &c->req.parser;
    size_t used;
    enum http_errno e;

    p->data = c;
    used = http_parser_execute(p, &settings, data, len);
    e = HTTP_PARSER_ERRNO(p);
    if (e == HPE_PAUSED) {
        http_parser_pause(p, 0);
        return used;
    }
    if (e != HPE_OK && c->req.error_status == 0) {
        switch (e) {
        case HPE_HEADER_OVERFLOW:
            fail(c, 431, "the request line and headers are too large");
            break;
        case HPE_UNEXPECTED_CONTENT_LENGTH:
            fail(c, 400, "Content-Length and Transfer-Encoding conflict");
            break;
        case HPE_INVALID_CHUNK_SIZE:
            fail(c, 400, "invalid chunk size");
            break;
        case HPE_INVALID_METHOD:
            fail(c, 400, "invalid HTTP method");
            break;
        case HPE_INVALID_VERSION:
            fail(c, 400, "invalid HTTP version");
            break;
        default:
            fail(c, 400, http_errno_description(e));
        }
    }
    return used;
}

/* Copy n bytes to p; returns the end (the head is built without printf:
 * this runs once per response). */
static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* The decimal digits of n into buf (at least 20 bytes); their count. */
static size_t format_size(size_t n, char *buf)
{
    char tmp[24];
    size_t i = sizeof(tmp), len;

    do {
        tmp[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    len = sizeof(tmp) - i;
    memcpy(buf, tmp + i, len);
    return len;
}

#define LIT(s) (s), sizeof(s) - 1

int httpd__reply(httpd_conn *c, int status, const char *content_type,
                 const void *body, size_t len, const char *extra_headers)
{
    const char *text;
    size_t text_len, type_len = strlen(content_type);
    size_t extra_len = extra_headers ? strlen(extra_headers) : 0;
    char length[24], code[3];
    size_t length_len = format_size(len, length), head_len;
    char *p;

    if (status < 100 || status > 599)
        status = 500;
    text = httpd__status_text(status);
    text_len = strlen(text);
    code[0] = (char)('0' + status / 100);
    code[1] = (char)('0' + status / 10 % 10);
    code[2] = (char)('0' + status % 10);
    head_len = sizeof("HTTP/1.1 ") - 1 + 3 + 1 + text_len + 2 +
               sizeof("Content-Type: ") - 1 + type_len + 2 +
               sizeof("Content-Length: ") - 1 + length_len + 2 + extra_len +
               (c->keep_alive ? 0 : sizeof("Connection: close\r\n") - 1) + 2;
    if (len > SIZE_MAX - head_len ||
        twu_buf_reserve(&c->out, head_len + len) < 0)
        return -1;
    p = c->out.data + c->out.len;
    p = put(p, LIT("HTTP/1.1 "));
    p = put(p, code, 3);
    p = put(p, " ", 1);
    p = put(p, text, text_len);
    if (status == 304) {
        /* RFC 9110 section 15.4.5: no content; the validators travel in
         * the extra headers. */
        p = put(p, LIT("\r\n"));
        len = 0;
    } else {
        p = put(p, LIT("\r\nContent-Type: "));
        p = put(p, content_type, type_len);
        p = put(p, LIT("\r\nContent-Length: "));
        p = put(p, length, length_len);
        p = put(p, LIT("\r\n"));
    }
    if (extra_len > 0)
        p = put(p, extra_headers, extra_len);
    if (!c->keep_alive)
        p = put(p, LIT("Connection: close\r\n"));
    p = put(p, LIT("\r\n"));
    if (len > 0)
        p = put(p, body, len);
    *p = '\0';
    c->out.len = (size_t)(p - c->out.data);
    httpd__metrics_status(c->w->srv, status);
    if (c->req.started_us != 0)
        httpd__hist_observe(&c->w->srv->metrics.request_seconds,
                            httpd__now_us() - c->req.started_us);
    httpd__log_access(c, status, len);
    return 0;
}

/* Escape a string for JSON into buf (truncating safely). */
static void json_escape(const char *in, char *out, size_t len)
{
    size_t o = 0;

    for (; *in != '\0' && o + 7 < len; in++) {
        unsigned char ch = (unsigned char)*in;

        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)snprintf(out + o, len - o, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
}

int httpd__reply_error(httpd_conn *c, int status, const char *reason)
{
    char esc[1024], body[1200];
    int n;

    json_escape(reason, esc, sizeof(esc));
    n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"reason\":\"%s\"}",
                 httpd__status_text(status), esc);
    return httpd__reply(c, status, "application/json", body, (size_t)n, NULL);
}

/* ------------------------------------------------- what handlers call */

int httpd_reply(httpd_req *r, int status, const char *content_type,
                const void *body, size_t len, const char *extra_headers)
{
    if (r->conn->fd < 0)
        return 0; /* the peer went away while the answer was made */
    return httpd__reply(r->conn, status, content_type, body, len,
                        extra_headers);
}

int httpd_reply_error(httpd_req *r, int status, const char *reason)
{
    if (r->conn->fd < 0)
        return 0;
    return httpd__reply_error(r->conn, status, reason);
}

int httpd_req_method(const httpd_req *r)
{
    return (int)r->conn->req.parser.method;
}

const char *httpd_req_header(const httpd_req *r, const char *name,
                             size_t *len)
{
    const httpd_conn *c = r->conn;
    const httpd_span *sp = spans(c);
    size_t nlen = strlen(name);

    for (size_t i = 0; c->req.head != NULL && i < c->req.nheaders; i++)
        if (sp[i].name_len == nlen &&
            strncasecmp(c->req.head + sp[i].off, name, nlen) == 0) {
            *len = sp[i].value_len;
            return c->req.head + sp[i].off + nlen;
        }
    *len = 0;
    return NULL;
}

const char *httpd_req_body(const httpd_req *r, size_t *len)
{
    *len = r->conn->req.body.len;
    return r->conn->req.body.data ? r->conn->req.body.data : "";
}
