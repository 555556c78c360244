/*
 * conn.c - one client connection: the TLS handshake, reading and parsing
 * requests, writing responses, keep-alive, pipelining, deadlines.  Each
 * event re-runs conn_drive(), which does whatever the connection can do
 * now and re-arms the loop for what it waits on.  A connection whose first
 * bytes are a plain HTTP request gets a plain-text 400, as from nginx.
 */
#include "httpd_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

static void conn_drive(httpd_conn *c);

static void conn_event(httpd_loop *loop, int fd, void *data, int mask)
{
    (void)loop;
    (void)fd;
    (void)mask;
    conn_drive(data);
}

static void set_mask(httpd_conn *c, int mask)
{
    if (mask == c->mask)
        return;
    if (c->mask & ~mask)
        httpd_loop_del_fd(c->w->loop, c->fd, c->mask & ~mask);
    if (mask & ~c->mask)
        httpd_loop_add_fd(c->w->loop, c->fd, mask & ~c->mask, conn_event, c);
    c->mask = mask;
}

static void unlink_conn(httpd_conn *c)
{
    httpd_worker *w = c->w;

    httpd__conn_wait(c, WAIT_NONE);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (w->conns == c)
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    w->nconns--;
    atomic_fetch_sub(&w->srv->metrics.open_connections, 1);
}

static void conn_free(httpd_conn *c)
{
    tw_conn_free(c->tls);
    httpd__request_free(c->w, &c->req);
    twu_buf_free(&c->out);
    free(c->pending_in);
    free(c);
}

void httpd__conn_close(httpd_conn *c)
{
    if (c->fd < 0)
        return;
    if ((c->state == CONN_ACTIVE || c->state == CONN_CLOSING) &&
        c->out_off >= c->out.len)
        (void)tw_conn_shutdown(c->tls); /* best effort close_notify */
    /* close(2) takes the socket out of the epoll set (it is never
     * duplicated, and accepted with SOCK_CLOEXEC): no epoll_ctl first. */
    httpd_loop_forget_fd(c->w->loop, c->fd);
    close(c->fd);
    c->fd = -1;
    unlink_conn(c);
    if (c->waiting) {
        c->freed_while_waiting = 1; /* freed by httpd_req_resume */
        return;
    }
    conn_free(c);
}

void httpd__conn_accept(httpd_worker *w, int fd, const struct sockaddr *sa)
{
    httpd *srv = w->srv;
    httpd_conn *c;
    tw_err err;
    char host[INET6_ADDRSTRLEN] = "?";

    if (w->nconns >= w->max_conns) {
        close(fd); /* over --max-connections: bounded, not queued */
        atomic_fetch_add(&w->srv->metrics.over_limit, 1);
        return;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        close(fd);
        return;
    }
    c->req_handle.conn = c;
    c->w = w;
    c->fd = fd;
    c->wait = WAIT_NONE;
    c->accepted_us = httpd__now_us();
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)sa;

        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const void *)sa;

        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(c->peer, sizeof(c->peer), "%s:%u", host, ntohs(s4->sin_port));
    }
    if ((c->tls = tw_server_accept(srv->tls, fd, &err)) == NULL) {
        httpd_log(srv, "cannot start TLS for %s: %s", c->peer, err.msg);
        close(fd);
        free(c);
        return;
    }
    httpd__request_reset(c->w, &c->req);
    c->state = CONN_HANDSHAKE;
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    atomic_fetch_add(&srv->metrics.connections, 1);
    atomic_fetch_add(&srv->metrics.open_connections, 1);
    httpd__conn_wait(c, WAIT_HANDSHAKE);
    set_mask(c, HTTPD_LOOP_READABLE);
}

static void handshake_failed(httpd_conn *c)
{
    const tw_err *e = tw_conn_err(c->tls);
    httpd *srv = c->w->srv;

    if (e->cls == TW_ERR_PEER_REJECTED || e->cls == TW_ERR_PROTOCOL) {
        httpd__log_refusal(srv, c->peer, c->tls);
        httpd__metrics_refusal(srv, e->reason);
    } else if (e->cls == TW_ERR_REJECTED_BY_PEER) {
        httpd_log(srv, "handshake peer=%s: %s", c->peer, e->msg);
    }
    /* The alert is on its way; closing now, with the client's request
     * unread, would turn into a reset that the client sees first. */
    shutdown(c->fd, SHUT_WR);
    c->state = CONN_LINGER;
    httpd__conn_wait(c, WAIT_LINGER);
    set_mask(c, HTTPD_LOOP_READABLE);
}

static void linger(httpd_conn *c);

/*
 * The answer that ends a connection is written: say close_notify, shut our
 * side, and read and drop what the client still sends for a moment, as
 * nginx's lingering close does.  Closing at once, with a request body
 * still arriving (a 413, a 400 half-way through a body), would make the
 * kernel answer with a reset that destroys the answer before the client
 * reads it.
 */
static void linger_close(httpd_conn *c)
{
    (void)tw_conn_shutdown(c->tls);
    shutdown(c->fd, SHUT_WR);
    c->state = CONN_LINGER;
    httpd__conn_wait(c, WAIT_LINGER);
    set_mask(c, HTTPD_LOOP_READABLE);
    linger(c);
}

/* Read and drop what a refused client still sends, until it closes. */
static void linger(httpd_conn *c)
{
    for (;;) {
        ssize_t n = read(c->fd, c->w->scratch, sizeof(c->w->scratch));

        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        httpd__conn_close(c);
        return;
    }
}

/*
 * Plain HTTP sent to this HTTPS port: without an answer the client would
 * see an empty reply and guess.  Say it in plain text, as nginx does, and
 * close after reading and dropping the request (linger), so that the close
 * does not become a reset that destroys the answer.
 */
static void answer_plain_http(httpd_conn *c)
{
    static const char body[] = "400 Bad Request: the plain HTTP request was "
                               "sent to the HTTPS port\n";
    httpd *srv = c->w->srv;
    char reply[256];
    int n = snprintf(reply, sizeof(reply), "HTTP/1.1 400 Bad Request\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s", sizeof(body) - 1, body);
    ssize_t w;

    /* A new connection's socket buffer takes these few bytes at once; if
     * it does not, the client gets what fitted and the close. */
    do
        w = write(c->fd, reply, (size_t)n);
    while (w < 0 && errno == EINTR);
    if (w > 0)
        atomic_fetch_add(&srv->metrics.bytes_out, (unsigned long long)w);
    atomic_fetch_add(&srv->metrics.plain_http, 1);
    httpd__metrics_status(srv, 400);
    httpd_log(srv, "plain HTTP from peer=%s: answered 400 (this port speaks "
              "HTTPS only: use https:// and a client certificate)", c->peer);
    shutdown(c->fd, SHUT_WR);
    c->state = CONN_LINGER;
    httpd__conn_wait(c, WAIT_LINGER);
    set_mask(c, HTTPD_LOOP_READABLE);
    linger(c);
}

/* Write what is queued; 1 when all is written, 0 when blocked, -1 when the
 * connection is gone. */
static int flush(httpd_conn *c)
{
    while (c->out_off < c->out.len) {
        long n = tw_conn_write(c->tls, c->out.data + c->out_off,
                               c->out.len - c->out_off);

        if (n == TW_WANT_WRITE) {
            set_mask(c, HTTPD_LOOP_WRITABLE);
            return 0;
        }
        if (n == TW_WANT_READ) {
            set_mask(c, HTTPD_LOOP_READABLE);
            return 0;
        }
        if (n < 0) {
            httpd__conn_close(c);
            return -1;
        }
        c->out_off += (size_t)n;
        atomic_fetch_add(&c->w->srv->metrics.bytes_out, (unsigned long long)n);
    }
    /* Idle connections hold no buffers (memory per idle connection). */
    twu_buf_free(&c->out);
    c->out_off = 0;
    return 1;
}

static void request_done(httpd_conn *c)
{
    httpd__request_reset(c->w, &c->req);
    if (!c->keep_alive) {
        c->state = CONN_CLOSING;
        /* The answer still has to be written: a request answered later
         * (suspended) has no deadline left, give it the header time. */
        if (c->wait == WAIT_NONE)
            httpd__conn_wait(c, WAIT_HEAD);
        return;
    }
    httpd__conn_wait(c, WAIT_IDLE);
}

/* Keep bytes that arrived behind a request still being answered. */
static int save_pending(httpd_conn *c, const char *data, size_t len)
{
    char *p;

    if (len == 0) {
        free(c->pending_in);
        c->pending_in = NULL;
        c->pending_len = 0;
        return 0;
    }
    if (data >= c->pending_in && c->pending_in != NULL &&
        data < c->pending_in + c->pending_len) {
        memmove(c->pending_in, data, len);
        c->pending_len = len;
        return 0;
    }
    if ((p = malloc(len)) == NULL)
        return -1;
    memcpy(p, data, len);
    free(c->pending_in);
    c->pending_in = p;
    c->pending_len = len;
    return 0;
}

static void refused_after_reload(httpd_conn *c)
{
    const tw_err *e = tw_conn_err(c->tls);
    const tw_identity *id = tw_conn_peer(c->tls);
    httpd *srv = c->w->srv;

    httpd_log(srv, "refused peer=%s reason=%s subject=\"%s\" issuer=\"%s\" "
            "serial=%s: %s (after a reload)", c->peer,
            tw_reason_name(e->reason), id ? tw_identity_subject(id) : "-",
            id ? tw_identity_issuer(id) : "-",
            id ? tw_identity_serial(id) : "-", e->msg);
    httpd__metrics_refusal(srv, e->reason);
    c->keep_alive = 0;
    httpd__reply_error(c, 403, e->msg);
    c->state = CONN_CLOSING;
    save_pending(c, NULL, 0);
}

/* Parse and answer requests in data; returns -1 when the connection must
 * stop reading (closing), else 0. */
static int consume(httpd_conn *c, const char *data, size_t len)
{
    httpd *srv = c->w->srv;

    while (len > 0 && c->state == CONN_ACTIVE && !c->waiting) {
        size_t used;

        /* A request begins: the header timeout runs from its first
         * byte, and answers 408 when it passes. */
        if (c->req.started_ms == 0 && c->req.head_len == 0 &&
            c->wait != WAIT_HEAD)
            httpd__conn_wait(c, WAIT_HEAD);
        used = httpd__request_feed(c, data, len);
        data += used;
        len -= used;
        if (c->req.error_status != 0) {
            c->keep_alive = 0;
            httpd__reply_error(c, c->req.error_status, c->req.error_reason);
            c->state = CONN_CLOSING;
            save_pending(c, NULL, 0);
            return -1;
        }
        if (c->req.complete) {
            c->keep_alive = http_should_keep_alive(&c->req.parser) &&
                            !atomic_load(&srv->draining);
            if (tw_conn_refresh(c->tls) < 0) {
                /* Reloaded since the handshake, and the client no longer
                 * passes (revoked by the new CRL, CA changed, expired). */
                refused_after_reload(c);
                return -1;
            }
            httpd__route(c);
            if (c->waiting)
                break;
            request_done(c);
        } else if (used == 0) {
            break;
        }
    }
    if (c->fd >= 0 && save_pending(c, data, len) < 0) {
        httpd__conn_close(c);
        return -1;
    }
    return 0;
}

/* --log-level debug: each handshake, with what was agreed and who. */
static void log_handshake(httpd_conn *c)
{
    const tw_identity *id = tw_conn_peer(c->tls);

    httpd_log(c->w->srv, "debug: handshake peer=%s %s%s generation %u "
              "subject=\"%s\" serial=%s", c->peer, tw_conn_version(c->tls),
              tw_conn_resumed(c->tls) ? " resumed" : "",
              tw_conn_generation(c->tls), id ? tw_identity_subject(id) : "-",
              id ? tw_identity_serial(id) : "-");
}

static void conn_drive(httpd_conn *c)
{
    httpd_worker *w = c->w;
    httpd *srv = w->srv;
    int drained = 0; /* the last read left nothing behind it */

    if (c->state == CONN_LINGER) {
        linger(c);
        return;
    }
    if (c->state == CONN_HANDSHAKE) {
        int rc = tw_conn_handshake(c->tls);

        /* Plain HTTP: answered at its first bytes, whatever the handshake
         * made of them (it fails, or waits for a record that never comes). */
        if (tw_conn_plain_http(c->tls)) {
            answer_plain_http(c);
            return;
        }
        if (rc == TW_WANT_READ || rc == TW_WANT_WRITE) {
            set_mask(c, rc == TW_WANT_READ ? HTTPD_LOOP_READABLE
                                           : HTTPD_LOOP_WRITABLE);
            return;
        }
        if (rc < 0) {
            handshake_failed(c);
            return;
        }
        atomic_fetch_add(&srv->metrics.handshakes, 1);
        if (tw_conn_resumed(c->tls))
            atomic_fetch_add(&srv->metrics.resumed, 1);
        httpd__hist_observe(&srv->metrics.handshake_seconds,
                            httpd__now_us() - c->accepted_us);
        if (httpd_log_enabled(srv, TWU_LOG_DEBUG))
            log_handshake(c);
        c->state = CONN_ACTIVE;
        c->keep_alive = 1;
        httpd__conn_wait(c, WAIT_FIRST);
    }
    for (;;) {
        int f = flush(c);
        long n;

        if (f <= 0)
            return; /* blocked (re-armed) or closed */
        if (c->state == CONN_CLOSING) {
            linger_close(c);
            return;
        }
        if (c->waiting) {
            set_mask(c, 0); /* nothing to do until the writer answers */
            return;
        }
        if (c->pending_len > 0) {
            if (consume(c, c->pending_in, c->pending_len) < 0 && c->fd < 0)
                return;
            continue;
        }
        /* The loop is level-triggered: after a read that did not fill the
         * buffer, with no record waiting in the TLS buffer, the next
         * request is announced by epoll.  Reading again now would mostly
         * cost a read(2) that says EAGAIN, once per request. */
        if (drained && tw_conn_pending(c->tls) == 0) {
            set_mask(c, HTTPD_LOOP_READABLE);
            return;
        }
        n = tw_conn_read(c->tls, w->scratch, sizeof(w->scratch));
        if (n == TW_WANT_READ) {
            set_mask(c, HTTPD_LOOP_READABLE);
            return;
        }
        if (n == TW_WANT_WRITE) {
            set_mask(c, HTTPD_LOOP_WRITABLE);
            return;
        }
        if (n <= 0) {
            httpd__conn_close(c); /* closed by the client, or an error */
            return;
        }
        drained = (size_t)n < sizeof(w->scratch);
        if (consume(c, w->scratch, (size_t)n) < 0 && c->fd < 0)
            return;
    }
}

void httpd_req_suspend(httpd_req *r)
{
    httpd_conn *c = r->conn;

    c->waiting = 1;
    httpd__conn_wait(c, WAIT_NONE);
}

void httpd_req_resume(httpd_req *r)
{
    httpd_conn *c = r->conn;

    c->waiting = 0;
    if (c->freed_while_waiting) {
        conn_free(c);
        return;
    }
    request_done(c);
    conn_drive(c);
}

void httpd__conn_expired(httpd_conn *c)
{
    if (c->wait == WAIT_HEAD && c->state == CONN_ACTIVE && c->out.len == 0) {
        c->keep_alive = 0;
        httpd__reply_error(c, 408, "the request did not arrive in time");
        c->state = CONN_CLOSING;
        httpd__conn_wait(c, WAIT_CLOSING); /* then close regardless */
        conn_drive(c);
    } else {
        httpd__conn_close(c);
    }
}
