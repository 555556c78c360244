/*
 * lg_conn.c - loadgen's connection slots and their event loop.
 *
 * Each slot walks connect -> TLS handshake -> write the request (GET, or
 * POST with a body whose "{n}" is numbered request by request) -> read the
 * whole response, then, by mode: closes and starts again (full, resume),
 * writes the next request (keepalive) or holds the connection (idle).
 * WANT_READ / WANT_WRITE from OpenSSL just re-arm the slot's epoll
 * interest; the loop is level-triggered, one thread, no locks.
 */
#include "loadgen.h"

#include <openssl/err.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static const char *const error_names[LG_ERR_KINDS] = {
    "connect", "tls", "http", "closed", "timeout", "dropped",
};

uint64_t lg_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int lg_run_init(lg_run *run, size_t nslots)
{
    run->slots = calloc(nslots, sizeof(*run->slots));
    run->free_stack = calloc(nslots, sizeof(*run->free_stack));
    run->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (run->slots == NULL || run->free_stack == NULL || run->epfd < 0) {
        perror("loadgen: cannot set up the connection slots");
        return -1;
    }
    run->nslots = nslots;
    /* Pushed in reverse so that slot 0 is opened first. */
    for (size_t i = nslots; i-- > 0;) {
        lg_slot *s = &run->slots[i];

        s->run = run;
        s->fd = -1;
        /* Numbered requests differ, and a slot may be half way through
         * writing its own while another slot numbers the next: a copy each. */
        s->request = run->request;
        if (run->nseq > 0) {
            if ((s->request = malloc(run->request_len)) == NULL) {
                perror("loadgen: cannot set up the connection slots");
                return -1;
            }
            memcpy(s->request, run->request, run->request_len);
        }
        run->free_stack[run->nfree++] = i;
    }
    return 0;
}

void lg_run_free(lg_run *run)
{
    lg_run_close_all(run);
    for (size_t i = 0; run->slots != NULL && i < run->nslots; i++) {
        SSL_SESSION_free(run->slots[i].session);
        if (run->slots[i].request != run->request)
            free(run->slots[i].request);
    }
    free(run->slots);
    free(run->free_stack);
    if (run->epfd >= 0)
        close(run->epfd);
    run->slots = NULL;
    run->free_stack = NULL;
    run->epfd = -1;
}

/* ---- slot lifetime ------------------------------------------------------ */

/* Close the slot's connection.  `clean` sends close_notify first, which also
 * keeps OpenSSL from marking the session not resumable. */
static void close_slot(lg_slot *s, int clean)
{
    lg_run *run = s->run;

    if (s->state == LG_ST_FREE)
        return;
    if (s->ssl != NULL) {
        if (clean) {
            ERR_clear_error();
            (void)SSL_shutdown(s->ssl); /* one try, no wait for the reply */
        }
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0) {
        /* End with a reset rather than a FIN: thousands of connections a
         * second (and 10,000 idle ones at once) would otherwise leave as
         * many ports in TIME_WAIT, and later windows would pay for finding
         * free ones.  The close_notify above still tells the server that
         * the client is done. */
        struct linger abort_close = {.l_onoff = 1, .l_linger = 0};

        (void)setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &abort_close,
                         sizeof(abort_close));
        close(s->fd); /* also leaves the epoll set */
    }
    if (s->state != LG_ST_HOLDING)
        run->inflight--;
    s->fd = -1;
    s->interest = 0;
    s->state = LG_ST_FREE;
    run->free_stack[run->nfree++] = (size_t)(s - run->slots);
}

static void fail(lg_slot *s, lg_error_kind kind, const char *what)
{
    lg_run *run = s->run;
    int saved = errno;

    run->errors[kind]++;
    if (!run->error_reported[kind]) {
        unsigned long e = ERR_peek_error();
        char ossl[256] = "";

        run->error_reported[kind] = 1;
        if (e != 0)
            ERR_error_string_n(e, ossl, sizeof(ossl));
        fprintf(stderr, "loadgen: first %s error: %s%s%s%s%s\n",
                error_names[kind], what, saved ? ": " : "",
                saved ? strerror(saved) : "", e ? ": " : "", ossl);
    }
    ERR_clear_error();
    close_slot(s, 0);
}

/* Ask epoll for `events` on the slot, if that is not already what it has. */
static int want(lg_slot *s, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = s};
    int op = s->interest == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;

    if (s->interest == events)
        return 0;
    if (epoll_ctl(s->run->epfd, op, s->fd, &ev) < 0) {
        fail(s, LG_ERR_CONNECT, "epoll_ctl");
        return -1;
    }
    s->interest = events;
    return 0;
}

static void start_slot(lg_slot *s)
{
    lg_run *run = s->run;
    int one = 1;

    s->state = LG_ST_CONNECTING;
    s->have = s->written = 0;
    s->requests = 0;
    s->server_closes = 0;
    s->op_start_ns = s->progress_ns = lg_now_ns();
    run->inflight++;
    s->fd = socket(run->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   0);
    if (s->fd < 0) {
        fail(s, LG_ERR_CONNECT, "socket");
        return;
    }
    /* The Finished message and the request go out as separate writes:
     * without this, Nagle plus delayed ACKs would add 40 ms. */
    (void)setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(s->fd, (struct sockaddr *)&run->addr, run->addrlen) < 0 &&
        errno != EINPROGRESS) {
        fail(s, LG_ERR_CONNECT, "connect");
        return;
    }
    if (run->measuring)
        run->counts.connects++;
    (void)want(s, EPOLLOUT);
}

void lg_run_fill(lg_run *run)
{
    /* Bounded by the slots free now: one that fails at once is not retried
     * until the next turn of the loop. */
    size_t n = run->nfree;

    while (run->opening && n-- > 0 && run->nfree > 0 &&
           run->inflight < run->max_inflight)
        start_slot(&run->slots[run->free_stack[--run->nfree]]);
}

void lg_run_close_all(lg_run *run)
{
    for (size_t i = 0; run->slots != NULL && i < run->nslots; i++)
        close_slot(&run->slots[i], 0);
}

/* ---- the TLS client side of resumption ---------------------------------- */

/* OpenSSL hands over each new session (TLS 1.2 at the end of the handshake,
 * TLS 1.3 with each NewSessionTicket); the slot keeps the newest. */
static int keep_newest_session(SSL *ssl, SSL_SESSION *sess)
{
    lg_slot *s = SSL_get_app_data(ssl);

    if (s == NULL)
        return 0;
    SSL_SESSION_free(s->session);
    s->session = sess;
    return 1; /* we hold the reference now */
}

void lg_run_enable_resumption(lg_run *run)
{
    SSL_CTX_set_session_cache_mode(run->ctx, SSL_SESS_CACHE_CLIENT |
                                                 SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(run->ctx, keep_newest_session);
}

/* ---- one slot's state machine ------------------------------------------- */

/* After an OpenSSL call returned rc <= 0: wait for what it wants, or fail. */
static void wait_or_fail(lg_slot *s, int rc, lg_error_kind kind, const char *what)
{
    switch (SSL_get_error(s->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        (void)want(s, EPOLLIN);
        return;
    case SSL_ERROR_WANT_WRITE:
        (void)want(s, EPOLLOUT);
        return;
    default:
        fail(s, kind, what);
    }
}

static int start_tls(lg_slot *s)
{
    lg_run *run = s->run;
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
        errno = err != 0 ? err : errno;
        fail(s, LG_ERR_CONNECT, "connect");
        return -1;
    }
    if ((s->ssl = SSL_new(run->ctx)) == NULL || SSL_set_fd(s->ssl, s->fd) != 1 ||
        SSL_set_tlsext_host_name(s->ssl, run->servername) != 1 ||
        SSL_set1_host(s->ssl, run->servername) != 1 ||
        (s->session != NULL && SSL_set_session(s->ssl, s->session) != 1)) {
        errno = 0;
        fail(s, LG_ERR_TLS, "cannot set up the TLS connection");
        return -1;
    }
    SSL_set_app_data(s->ssl, s);
    s->state = LG_ST_HANDSHAKE;
    return 0;
}

static void note_handshake(lg_slot *s)
{
    lg_run *run = s->run;
    int reused = SSL_session_reused(s->ssl);

    if (run->measuring) {
        run->counts.handshakes++;
        run->counts.resumed += reused != 0;
    }
    if (run->cipher[0] == '\0')
        snprintf(run->cipher, sizeof(run->cipher), "%s",
                 SSL_get_cipher_name(s->ssl));
    if (run->group[0] == '\0' && !reused) {
        const char *g = SSL_group_to_name(s->ssl, SSL_get_negotiated_group(s->ssl));

        snprintf(run->group, sizeof(run->group), "%s", g ? g : "?");
    }
}

/* Whether the response in s->buf is complete (1), needs more (0) or is
 * wrong (-1, with *why set).  It must have the expected status (200, or
 * --status), a Content-Length (the same every time), and nothing after
 * the body. */
static int check_response(lg_slot *s, const char **why)
{
    lg_run *run = s->run;
    char *head_end, *line, *eol;
    long length = -1;
    size_t head_len;

    s->buf[s->have] = '\0';
    if ((head_end = strstr(s->buf, "\r\n\r\n")) == NULL) {
        *why = "the response head is too large";
        return s->have >= LG_RESPONSE_MAX - 1 ? -1 : 0;
    }
    head_len = (size_t)(head_end - s->buf) + 4;
    if ((strncmp(s->buf, "HTTP/1.1 ", 9) != 0 &&
         strncmp(s->buf, "HTTP/1.0 ", 9) != 0) ||
        strtol(s->buf + 9, NULL, 10) != run->expect_status ||
        s->buf[12] != ' ') {
        *why = run->status_why;
        return -1;
    }
    for (line = strstr(s->buf, "\r\n") + 2; line < head_end; line = eol + 2) {
        eol = strstr(line, "\r\n");
        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            char *end;

            length = strtol(line + 15, &end, 10);
            if (end == line + 15 || (*end != '\r' && *end != ' '))
                length = -2;
        } else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
            *why = "the response is not framed by Content-Length";
            return -1;
        } else if (strncasecmp(line, "Connection:", 11) == 0) {
            const char *v = line + 11;

            v += strspn(v, " ");
            s->server_closes = strncasecmp(v, "close", 5) == 0;
        }
    }
    if (length < 0) {
        *why = "the response has no valid Content-Length";
        return -1;
    }
    if (run->expect_length < 0)
        run->expect_length = length;
    if (length != run->expect_length) {
        *why = "the Content-Length differs from the expected one";
        return -1;
    }
    if (s->have - head_len < (size_t)length)
        return 0;
    if (s->have - head_len > (size_t)length) {
        *why = "bytes follow the response body";
        return -1;
    }
    return 1;
}

/* Start the slot's next request on its connection; a numbered one gets
 * the run's next sequence number in each of its places. */
static void begin_request(lg_slot *s)
{
    lg_run *run = s->run;

    if (run->nseq > 0) {
        char digits[LG_SEQ_DIGITS];
        uint64_t n = run->next_seq++;

        for (size_t i = LG_SEQ_DIGITS; i-- > 0; n /= 10)
            digits[i] = (char)('0' + n % 10);
        for (size_t i = 0; i < run->nseq; i++)
            memcpy(s->request + run->seq_at[i], digits, LG_SEQ_DIGITS);
    }
    s->written = 0;
    s->state = LG_ST_WRITING;
}

/* A whole, right response arrived.  Returns whether the slot goes on now. */
static int response_done(lg_slot *s)
{
    lg_run *run = s->run;
    uint64_t now = lg_now_ns();

    if (run->measuring) {
        run->counts.requests++;
        lg_hist_add(&run->hist, (now - s->op_start_ns) / 1000);
    }
    s->requests++;
    s->have = 0;
    switch (run->mode) {
    case LG_KEEPALIVE:
        if (s->server_closes || !run->opening) {
            close_slot(s, 1);
            return 0;
        }
        s->op_start_ns = now;
        begin_request(s);
        return 1;
    case LG_IDLE:
        s->state = LG_ST_HOLDING;
        run->inflight--;
        run->held++;
        (void)want(s, EPOLLIN);
        return 0;
    case LG_FULL:
    case LG_RESUME:
    case LG_SESSIONS:
        break;
    }
    close_slot(s, 1);
    return 0;
}

/* The server closed or reset the connection while we read. */
static void read_closed(lg_slot *s)
{
    /* A keep-alive connection may be closed between two requests (limits,
     * timeouts): that is no error, the slot just reconnects. */
    if (s->run->mode == LG_KEEPALIVE && s->have == 0 && s->requests > 0)
        close_slot(s, 0);
    else
        fail(s, LG_ERR_CLOSED, "the server closed the connection before the "
                               "whole response");
}

static void drive(lg_slot *s, unsigned events)
{
    lg_run *run = s->run;
    const char *why = NULL;
    int rc;

    for (;;) {
        ERR_clear_error();
        errno = 0;
        switch (s->state) {
        case LG_ST_FREE:
            return;
        case LG_ST_CONNECTING:
            if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                return;
            if (start_tls(s) < 0)
                return;
            break;
        case LG_ST_HANDSHAKE:
            if ((rc = SSL_connect(s->ssl)) != 1) {
                wait_or_fail(s, rc, LG_ERR_TLS, "TLS handshake");
                return;
            }
            note_handshake(s);
            if (run->mode == LG_KEEPALIVE)
                s->op_start_ns = lg_now_ns();
            begin_request(s);
            break;
        case LG_ST_WRITING:
            rc = SSL_write(s->ssl, s->request + s->written,
                           (int)(run->request_len - s->written));
            if (rc <= 0) {
                wait_or_fail(s, rc, LG_ERR_TLS, "writing the request");
                return;
            }
            s->written += (size_t)rc;
            if (s->written == run->request_len) {
                s->state = LG_ST_READING;
                s->have = 0;
            }
            break;
        case LG_ST_READING:
            rc = SSL_read(s->ssl, s->buf + s->have,
                          (int)(LG_RESPONSE_MAX - 1 - s->have));
            if (rc <= 0) {
                int e = SSL_get_error(s->ssl, rc);

                if (e == SSL_ERROR_ZERO_RETURN ||
                    (e == SSL_ERROR_SYSCALL &&
                     (errno == 0 || errno == ECONNRESET || errno == EPIPE)))
                    read_closed(s);
                else
                    wait_or_fail(s, rc, LG_ERR_TLS, "reading the response");
                return;
            }
            s->have += (size_t)rc;
            switch (check_response(s, &why)) {
            case -1:
                errno = 0;
                fail(s, LG_ERR_HTTP, why);
                return;
            case 0:
                break;
            default:
                if (!response_done(s))
                    return;
            }
            break;
        case LG_ST_HOLDING: {
            char scratch[256];

            /* A ticket may still come (no data); anything else ends it. */
            rc = SSL_read(s->ssl, scratch, sizeof(scratch));
            if (rc <= 0 && SSL_get_error(s->ssl, rc) == SSL_ERROR_WANT_READ)
                return;
            errno = 0;
            fail(s, LG_ERR_DROPPED, rc > 0 ? "the server sent data on an "
                                             "idle connection"
                                           : "the server closed an idle "
                                             "connection");
            return;
        }
        }
    }
}

int lg_run_poll(lg_run *run, int timeout_ms)
{
    struct epoll_event evs[256];
    uint64_t now;
    int n = epoll_wait(run->epfd, evs, 256, timeout_ms);

    if (n < 0) {
        if (errno == EINTR)
            return 0;
        perror("loadgen: epoll_wait");
        return -1;
    }
    now = lg_now_ns();
    for (int i = 0; i < n; i++) {
        lg_slot *s = evs[i].data.ptr;

        s->progress_ns = now;
        drive(s, evs[i].events);
    }
    /* Ten times a second, fail what made no progress within --timeout. */
    if (now - run->last_sweep_ns > 100000000u) {
        run->last_sweep_ns = now;
        for (size_t i = 0; i < run->nslots; i++) {
            lg_slot *s = &run->slots[i];

            if (s->state != LG_ST_FREE && s->state != LG_ST_HOLDING &&
                now - s->progress_ns > run->timeout_ns) {
                errno = 0;
                fail(s, LG_ERR_TIMEOUT, "no answer within --timeout");
            }
        }
    }
    return n;
}
