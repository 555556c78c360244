/*
 * log.c - the server's logs: operational and refusal lines on stderr,
 * one JSON line per request in the access log.  Each line is written with
 * one call under a lock, so lines from workers never interleave.  No secret
 * (key, passphrase, request body) is ever logged, and control characters
 * from peers are escaped so a certificate cannot forge log lines.
 */
#include "httpd_internal.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

void httpd__timestamp(char *buf, size_t len)
{
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int httpd_log_enabled(const httpd *srv, int level)
{
    return level <= (srv->opt.log_level ? srv->opt.log_level : TWU_LOG_INFO);
}

void httpd_log(httpd *srv, const char *fmt, ...)
{
    char text[2048], line[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (!twu_log_line(line, sizeof(line), srv->opt.name, srv->opt.log_json,
                      srv->opt.log_level, text))
        return;
    pthread_mutex_lock(&srv->log_lock);
    fputs(line, stderr);
    fflush(stderr);
    pthread_mutex_unlock(&srv->log_lock);
}

void httpd__log_refusal(httpd *srv, const char *peer, const tw_conn *tls)
{
    const tw_err *e = tw_conn_err(tls);
    tw_identity *id = tw_conn_refused_identity(tls);

    httpd_log(srv, "refused peer=%s reason=%s subject=\"%s\" issuer=\"%s\" "
            "serial=%s: %s", peer,
            e->reason != TW_REASON_NONE ? tw_reason_name(e->reason)
                                        : tw_error_class_name(e->cls),
            id ? tw_identity_subject(id) : "-",
            id ? tw_identity_issuer(id) : "-",
            id ? tw_identity_serial(id) : "-", e->msg);
    tw_identity_free(id);
}

void httpd__log_access(httpd_conn *c, int status, size_t bytes)
{
    httpd *srv = c->w->srv;
    const tw_identity *id;
    json_t *o;
    char ts[32], *text, path[1024];
    long long now = httpd_loop_now_ms();
    size_t n;

    if (srv->access_log == NULL)
        return;
    id = tw_conn_peer(c->tls); /* parsed once per connection, then kept */
    /* The target as the client sent it, with bytes that are not printable
     * ASCII shown as '?': JSON needs UTF-8, and logs need no surprises. */
    n = c->req.url_len < sizeof(path) - 1 ? c->req.url_len : sizeof(path) - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)c->req.head[i];

        path[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    path[n] = '\0';
    httpd__timestamp(ts, sizeof(ts));
    o = json_object();
    json_object_set_new(o, "time", json_string(ts));
    json_object_set_new(o, "peer", json_string(c->peer));
    json_object_set_new(o, "subject", id ? json_string(tw_identity_subject(id))
                                         : json_null());
    json_object_set_new(o, "serial", id ? json_string(tw_identity_serial(id))
                                        : json_null());
    json_object_set_new(o, "method",
                        json_string(http_method_str(c->req.parser.method)));
    json_object_set_new(o, "path", json_string(path));
    json_object_set_new(o, "status", json_integer(status));
    json_object_set_new(o, "bytes", json_integer((json_int_t)bytes));
    json_object_set_new(o, "duration_ms",
                        json_real(c->req.started_ms ? (double)(now - c->req.started_ms)
                                                    : 0.0));
    json_object_set_new(o, "tls", json_string(tw_conn_version(c->tls)));
    json_object_set_new(o, "resumed", json_boolean(tw_conn_resumed(c->tls)));
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    json_decref(o);
    if (text == NULL)
        return;
    pthread_mutex_lock(&srv->log_lock);
    fputs(text, srv->access_log);
    fputc('\n', srv->access_log);
    fflush(srv->access_log);
    pthread_mutex_unlock(&srv->log_lock);
    free(text);
}
