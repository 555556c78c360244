/*
 * conn.c - one client connection of invoice-server: the TLS handshake,
 * reading and parsing requests, writing responses, keep-alive, pipelining,
 * deadlines.  Each event re-runs conn_drive(), which does whatever the
 * connection can do now and re-arms the loop for what it waits on.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

static void conn_drive(inv_conn *c);

static void conn_event(tw_loop *loop, int fd, void *data, int mask)
{
    (void)loop;
    (void)fd;
    (void)mask;
    conn_drive(data);
}

static void set_mask(inv_conn *c, int mask)
{
    if (mask == c->mask)
        return;
    if (c->mask & ~mask)
        tw_loop_del_fd(c->w->loop, c->fd, c->mask & ~mask);
    if (mask & ~c->mask)
        tw_loop_add_fd(c->w->loop, c->fd, mask & ~c->mask, conn_event, c);
    c->mask = mask;
}

static void unlink_conn(inv_conn *c)
{
    inv_worker *w = c->w;

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

static void conn_free(inv_conn *c)
{
    tw_conn_free(c->tls);
    inv_request_free(c->w, &c->req);
    inv_buf_free(&c->out);
    free(c->pending_in);
    free(c);
}

void inv_conn_close(inv_conn *c)
{
    if (c->fd < 0)
        return;
    if ((c->state == CONN_ACTIVE || c->state == CONN_CLOSING) &&
        c->out_off >= c->out.len)
        (void)tw_conn_shutdown(c->tls); /* best effort close_notify */
    tw_loop_del_fd(c->w->loop, c->fd, TW_LOOP_READABLE | TW_LOOP_WRITABLE);
    close(c->fd);
    c->fd = -1;
    unlink_conn(c);
    if (c->waiting) {
        c->freed_while_waiting = 1; /* freed when the writer answers */
        return;
    }
    conn_free(c);
}

void inv_conn_accept(inv_worker *w, int fd, const struct sockaddr *sa)
{
    inv_server *srv = w->srv;
    inv_conn *c;
    tw_err err;
    int one = 1;
    char host[INET6_ADDRSTRLEN] = "?";

    if (w->nconns >= w->max_conns) {
        close(fd); /* over --max-connections: bounded, not queued */
        atomic_fetch_add(&w->srv->metrics.over_limit, 1);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        close(fd);
        return;
    }
    c->w = w;
    c->fd = fd;
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
        inv_log(srv, "cannot start TLS for %s: %s", c->peer, err.msg);
        close(fd);
        free(c);
        return;
    }
    inv_request_reset(c->w, &c->req);
    c->state = CONN_HANDSHAKE;
    c->deadline_ms = tw_loop_now_ms() + srv->opt.handshake_timeout_ms;
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    atomic_fetch_add(&srv->metrics.connections, 1);
    atomic_fetch_add(&srv->metrics.open_connections, 1);
    set_mask(c, TW_LOOP_READABLE);
}

static void handshake_failed(inv_conn *c)
{
    const tw_err *e = tw_conn_err(c->tls);
    inv_server *srv = c->w->srv;

    if (e->cls == TW_ERR_PEER_REJECTED || e->cls == TW_ERR_PROTOCOL) {
        inv_log_refusal(srv, c->peer, c->tls);
        if ((unsigned)e->reason < INV_REASONS)
            atomic_fetch_add(&srv->metrics.refusals[e->reason], 1);
    } else if (e->cls == TW_ERR_REJECTED_BY_PEER) {
        inv_log(srv, "handshake peer=%s: %s", c->peer, e->msg);
    }
    /* The alert is on its way; closing now, with the client's request
     * unread, would turn into a reset that the client sees first. */
    shutdown(c->fd, SHUT_WR);
    c->state = CONN_LINGER;
    c->deadline_ms = tw_loop_now_ms() + 1000;
    set_mask(c, TW_LOOP_READABLE);
}

/* Read and drop what a refused client still sends, until it closes. */
static void linger(inv_conn *c)
{
    for (;;) {
        ssize_t n = read(c->fd, c->w->scratch, sizeof(c->w->scratch));

        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        inv_conn_close(c);
        return;
    }
}

/* Write what is queued; 1 when all is written, 0 when blocked, -1 when the
 * connection is gone. */
static int flush(inv_conn *c)
{
    while (c->out_off < c->out.len) {
        long n = tw_conn_write(c->tls, c->out.data + c->out_off,
                               c->out.len - c->out_off);

        if (n == TW_WANT_WRITE) {
            set_mask(c, TW_LOOP_WRITABLE);
            return 0;
        }
        if (n == TW_WANT_READ) {
            set_mask(c, TW_LOOP_READABLE);
            return 0;
        }
        if (n < 0) {
            inv_conn_close(c);
            return -1;
        }
        c->out_off += (size_t)n;
        atomic_fetch_add(&c->w->srv->metrics.bytes_out, (unsigned long long)n);
    }
    /* Idle connections hold no buffers (memory per idle connection). */
    inv_buf_free(&c->out);
    c->out_off = 0;
    return 1;
}

static void request_done(inv_conn *c)
{
    inv_request_reset(c->w, &c->req);
    if (!c->keep_alive) {
        c->state = CONN_CLOSING;
        return;
    }
    c->deadline_ms = tw_loop_now_ms() + c->w->srv->opt.idle_timeout_ms;
    c->timeout_status = 0;
}

/* Keep bytes that arrived behind a request still being answered. */
static int save_pending(inv_conn *c, const char *data, size_t len)
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

static void refused_after_reload(inv_conn *c)
{
    const tw_err *e = tw_conn_err(c->tls);
    const tw_identity *id = tw_conn_peer(c->tls);
    inv_server *srv = c->w->srv;

    inv_log(srv, "refused peer=%s reason=%s subject=\"%s\" issuer=\"%s\" "
            "serial=%s: %s (after a reload)", c->peer,
            tw_reason_name(e->reason), id ? tw_identity_subject(id) : "-",
            id ? tw_identity_issuer(id) : "-",
            id ? tw_identity_serial(id) : "-", e->msg);
    if ((unsigned)e->reason < INV_REASONS)
        atomic_fetch_add(&srv->metrics.refusals[e->reason], 1);
    c->keep_alive = 0;
    inv_reply_error(c, 403, e->msg);
    c->state = CONN_CLOSING;
    save_pending(c, NULL, 0);
}

/* Parse and answer requests in data; returns -1 when the connection must
 * stop reading (closing), else 0. */
static int consume(inv_conn *c, const char *data, size_t len)
{
    inv_server *srv = c->w->srv;

    while (len > 0 && c->state == CONN_ACTIVE && !c->waiting) {
        size_t used;

        if (c->req.started_ms == 0 && c->req.head_len == 0 &&
            c->timeout_status == 0) {
            c->deadline_ms = tw_loop_now_ms() + srv->opt.header_timeout_ms;
            c->timeout_status = 408;
        }
        used = inv_request_feed(c, data, len);
        data += used;
        len -= used;
        if (c->req.error_status != 0) {
            c->keep_alive = 0;
            inv_reply_error(c, c->req.error_status, c->req.error_reason);
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
            inv_route(c);
            if (c->waiting)
                break;
            request_done(c);
        } else if (used == 0) {
            break;
        }
    }
    if (c->fd >= 0 && save_pending(c, data, len) < 0) {
        inv_conn_close(c);
        return -1;
    }
    return 0;
}

static void conn_drive(inv_conn *c)
{
    inv_worker *w = c->w;
    inv_server *srv = w->srv;
    int drained = 0; /* the last read left nothing behind it */

    if (c->state == CONN_LINGER) {
        linger(c);
        return;
    }
    if (c->state == CONN_HANDSHAKE) {
        int rc = tw_conn_handshake(c->tls);

        if (rc == TW_WANT_READ || rc == TW_WANT_WRITE) {
            set_mask(c, rc == TW_WANT_READ ? TW_LOOP_READABLE
                                           : TW_LOOP_WRITABLE);
            return;
        }
        if (rc < 0) {
            handshake_failed(c);
            return;
        }
        atomic_fetch_add(&srv->metrics.handshakes, 1);
        if (tw_conn_resumed(c->tls))
            atomic_fetch_add(&srv->metrics.resumed, 1);
        c->state = CONN_ACTIVE;
        c->keep_alive = 1;
        c->deadline_ms = tw_loop_now_ms() + srv->opt.header_timeout_ms;
        c->timeout_status = 0;
    }
    for (;;) {
        int f = flush(c);
        long n;

        if (f <= 0)
            return; /* blocked (re-armed) or closed */
        if (c->state == CONN_CLOSING) {
            inv_conn_close(c);
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
            set_mask(c, TW_LOOP_READABLE);
            return;
        }
        n = tw_conn_read(c->tls, w->scratch, sizeof(w->scratch));
        if (n == TW_WANT_READ) {
            set_mask(c, TW_LOOP_READABLE);
            return;
        }
        if (n == TW_WANT_WRITE) {
            set_mask(c, TW_LOOP_WRITABLE);
            return;
        }
        if (n <= 0) {
            inv_conn_close(c); /* closed by the client, or an error */
            return;
        }
        drained = (size_t)n < sizeof(w->scratch);
        if (consume(c, w->scratch, (size_t)n) < 0 && c->fd < 0)
            return;
    }
}

void inv_conn_post_done(void *ctx, store_result *r)
{
    inv_conn *c = ctx;
    char location[64 + INV_NUMBER_MAX];

    c->waiting = 0;
    if (c->freed_while_waiting) {
        conn_free(c);
        return;
    }
    if (r->status == 201 || r->status == 200) {
        snprintf(location, sizeof(location), "Location: /invoices/%s\r\n",
                 r->number);
        inv_reply(c, r->status, "application/json",
                  r->body.data ? r->body.data : "", r->body.len, location);
    } else {
        inv_reply_error(c, r->status, r->body.data ? r->body.data : "error");
    }
    request_done(c);
    conn_drive(c);
}

void inv_conn_sweep(inv_worker *w, long long now)
{
    inv_conn *c = w->conns, *next;

    for (; c != NULL; c = next) {
        next = c->next;
        if (c->waiting || c->deadline_ms == 0 || now < c->deadline_ms)
            continue;
        if (c->state == CONN_ACTIVE && c->timeout_status == 408 &&
            c->out.len == 0) {
            c->keep_alive = 0;
            inv_reply_error(c, 408, "the request did not arrive in time");
            c->state = CONN_CLOSING;
            c->deadline_ms = now + 1000; /* then close regardless */
            conn_drive(c);
        } else {
            inv_conn_close(c);
        }
    }
}
