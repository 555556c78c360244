/*
 * worker.c - a worker thread: its own event loop, its own SO_REUSEPORT
 * listener (the kernel spreads connections), the program's per-worker state
 * (a store connection, say), and the deadlines of its connections.
 * Nothing on the request path is shared between workers, so nothing on it
 * takes a lock.
 */
#define _GNU_SOURCE /* accept4 */
#include "httpd_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void on_accept(httpd_loop *loop, int fd, void *data, int mask);

/* Out of file descriptors: stop accepting for a moment instead of spinning
 * on a listener that stays readable. */
static long long resume_accept(httpd_loop *loop, long long id, void *data)
{
    httpd_worker *w = data;

    (void)id;
    if (w->listen_fd >= 0)
        httpd_loop_add_fd(loop, w->listen_fd, HTTPD_LOOP_READABLE, on_accept, w);
    return HTTPD_LOOP_NOMORE;
}

static void on_accept(httpd_loop *loop, int fd, void *data, int mask)
{
    httpd_worker *w = data;

    (void)mask;
    /* Accept a batch, not one: fewer wake-ups under load. */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        int cfd = accept4(fd, (struct sockaddr *)&sa, &len,
                          SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                httpd_log(w->srv, "accept: %s: pausing new connections for "
                        "100 ms (raise `ulimit -n` or lower "
                        "--max-connections)", strerror(errno));
                httpd_loop_del_fd(loop, fd, HTTPD_LOOP_READABLE);
                httpd_loop_add_timer(loop, 100, resume_accept, w);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK &&
                       errno != EINTR && errno != ECONNABORTED) {
                httpd_log(w->srv, "accept: %s", strerror(errno));
            }
            return;
        }
        httpd__conn_accept(w, cfd, (struct sockaddr *)&sa);
    }
}

static long long on_drain_check(httpd_loop *loop, long long id, void *data);

static void start_drain(httpd_worker *w)
{
    httpd_conn *c, *next;

    if (w->listen_fd >= 0) {
        httpd_loop_del_fd(w->loop, w->listen_fd,
                       HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE);
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    for (c = w->conns; c != NULL; c = next) {
        next = c->next;
        c->keep_alive = 0;
        /* Idle (between requests) or still shaking hands: close now.
         * Others finish their request first. */
        if (c->state == CONN_HANDSHAKE ||
            (c->state == CONN_ACTIVE && !c->waiting && c->out.len == 0 &&
             c->req.head_len == 0 && c->pending_len == 0))
            httpd__conn_close(c);
    }
}

static void on_wake(httpd_loop *loop, int fd, void *data, int mask)
{
    httpd_worker *w = data;
    uint64_t v;

    (void)loop;
    (void)mask;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        httpd_log(w->srv, "worker %d: wake: %s", w->index, strerror(errno));
    if (atomic_load(&w->srv->draining) && !w->draining) {
        w->draining = 1;
        start_drain(w);
        if (httpd_loop_add_timer(loop, 0, on_drain_check, w) < 0)
            httpd_loop_stop(loop); /* cannot wait for them: close them */
    }
}

/* ------------------------------------------------------------ deadlines */

static long long on_deadline(httpd_loop *loop, long long id, void *data);

/* Arm the one deadline timer for the earliest head of the wait lists (or
 * leave it unarmed when no connection waits).  Called when the earliest
 * may have changed: after expiries, and when a list gains a head. */
static void arm(httpd_worker *w)
{
    long long when = 0;

    for (int k = 0; k < WAIT_KINDS; k++) {
        httpd_conn *c = w->waits[k].head;

        if (c != NULL && (when == 0 || c->deadline_ms < when))
            when = c->deadline_ms;
    }
    if (w->timer_id != 0 && (when == 0 || when != w->timer_when)) {
        httpd_loop_del_timer(w->loop, w->timer_id);
        w->timer_id = 0;
    }
    if (when != 0 && w->timer_id == 0) {
        long long ms = when - httpd_loop_now_ms();

        w->timer_id = httpd_loop_add_timer(w->loop, ms > 0 ? ms : 0,
                                           on_deadline, w);
        if (w->timer_id < 0)
            w->timer_id = 0; /* out of memory: tried again at the next change */
        w->timer_when = when;
    }
}

void httpd__conn_wait(httpd_conn *c, enum httpd_wait kind)
{
    httpd_worker *w = c->w;
    httpd_waitlist *l;

    if (c->wait != WAIT_NONE) {
        l = &w->waits[c->wait];
        if (c->wait_prev != NULL)
            c->wait_prev->wait_next = c->wait_next;
        else
            l->head = c->wait_next;
        if (c->wait_next != NULL)
            c->wait_next->wait_prev = c->wait_prev;
        else
            l->tail = c->wait_prev;
        c->wait_prev = c->wait_next = NULL;
    }
    c->wait = kind;
    if (kind == WAIT_NONE)
        return;
    l = &w->waits[kind];
    c->deadline_ms = httpd_loop_now_ms() + w->wait_ms[kind];
    c->wait_prev = l->tail;
    if (l->tail != NULL)
        l->tail->wait_next = c;
    else
        l->head = c;
    l->tail = c;
    /* A new head may be earlier than what the timer is armed for; a later
     * one never is, since the timeout of a list does not change. */
    if (l->head == c && (w->timer_id == 0 || c->deadline_ms < w->timer_when))
        arm(w);
}

static long long on_deadline(httpd_loop *loop, long long id, void *data)
{
    httpd_worker *w = data;
    long long now = httpd_loop_now_ms();

    (void)loop;
    (void)id;
    w->timer_id = 0; /* this timer ends here; arm() makes the next */
    for (int k = 0; k < WAIT_KINDS; k++) {
        httpd_conn *c;

        /* Expiring a connection takes it off this list (closed) or puts
         * it at the tail of another, so the head is always new. */
        while ((c = w->waits[k].head) != NULL && c->deadline_ms <= now)
            httpd__conn_expired(c);
    }
    arm(w);
    return HTTPD_LOOP_NOMORE;
}

/* While draining: stop once the last connection is gone. */
static long long on_drain_check(httpd_loop *loop, long long id, void *data)
{
    httpd_worker *w = data;

    (void)id;
    if (w->nconns == 0) {
        httpd_loop_stop(loop);
        return HTTPD_LOOP_NOMORE;
    }
    return 50;
}

static int listen_socket(httpd_worker *w)
{
    httpd *srv = w->srv;
    int one = 1;
    int fd = socket(srv->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);

    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        /* Accepted sockets inherit it (Linux): no setsockopt per
         * connection.  Responses go out whole, in one write. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&srv->addr, srv->addrlen) != 0 ||
        listen(fd, 1024) != 0) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void *worker_main(void *arg)
{
    httpd_worker *w = arg;

    httpd_loop_run(w->loop);
    if (w->listen_fd >= 0) {
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    while (w->conns != NULL)
        httpd__conn_close(w->conns);
    return NULL;
}

static void on_watch(httpd_loop *loop, int fd, void *data, int mask)
{
    struct httpd_watch *watch = data;

    (void)loop;
    (void)fd;
    (void)mask;
    watch->fn(watch->data);
}

int httpd_worker_watch(httpd_worker *w, int fd, httpd_watch_fn *fn, void *data)
{
    struct httpd_watch *watch;

    if (w->nwatches == HTTPD_MAX_WORKER_WATCHES) {
        errno = ENOSPC;
        return -1;
    }
    watch = &w->watches[w->nwatches];
    watch->fn = fn;
    watch->data = data;
    if (httpd_loop_add_fd(w->loop, fd, HTTPD_LOOP_READABLE, on_watch, watch) < 0)
        return -1;
    w->nwatches++;
    return 0;
}

int httpd_worker_index(const httpd_worker *w)
{
    return w->index;
}

int httpd__worker_start(httpd_worker *w)
{
    httpd *srv = w->srv;
    tw_err err;

    /* The first worker's socket fixes the port (port 0 picks one); the
     * others bind the same address with SO_REUSEPORT. */
    if ((w->listen_fd = listen_socket(w)) < 0) {
        httpd_log(srv, "cannot listen on %s: %s", srv->opt.listen,
                  strerror(errno));
        return -1;
    }
    if (w->index == 0) {
        srv->addrlen = sizeof(srv->addr);
        getsockname(w->listen_fd, (struct sockaddr *)&srv->addr,
                    &srv->addrlen);
    }
    w->max_conns = (srv->opt.max_conns + srv->nworkers - 1) / srv->nworkers;
    w->wait_ms[WAIT_HANDSHAKE] = srv->opt.handshake_timeout_ms;
    w->wait_ms[WAIT_FIRST] = srv->opt.header_timeout_ms;
    w->wait_ms[WAIT_HEAD] = srv->opt.header_timeout_ms;
    w->wait_ms[WAIT_IDLE] = srv->opt.idle_timeout_ms;
    w->wait_ms[WAIT_LINGER] = 1000;
    w->wait_ms[WAIT_CLOSING] = 1000;
    if ((w->loop = httpd_loop_new(srv->opt.max_conns + 1024)) == NULL ||
        (w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
        httpd_loop_add_fd(w->loop, w->listen_fd, HTTPD_LOOP_READABLE,
                          on_accept, w) < 0 ||
        httpd_loop_add_fd(w->loop, w->wake_fd, HTTPD_LOOP_READABLE, on_wake,
                          w) < 0) {
        httpd_log(srv, "worker %d: %s", w->index, strerror(errno));
        return -1;
    }
    /* The program's state is made here, before the thread runs; from then
     * on only the worker's thread uses it. */
    if (srv->worker_start != NULL &&
        srv->worker_start(w, srv->app, &w->state, &err) < 0) {
        httpd_log(srv, "worker %d: %s", w->index, err.msg);
        return -1;
    }
    w->started = 1;
    if ((errno = pthread_create(&w->thread, NULL, worker_main, w)) != 0) {
        httpd_log(srv, "worker %d: %s", w->index, strerror(errno));
        return -1;
    }
    w->running = 1;
    return 0;
}

void httpd__worker_free(httpd_worker *w)
{
    if (w->listen_fd >= 0)
        close(w->listen_fd);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    if (w->started && w->srv->worker_stop != NULL)
        w->srv->worker_stop(w->state);
    httpd_loop_free(w->loop);
    httpd__head_pool_free(w);
}

void httpd__worker_wake(httpd_worker *w)
{
    uint64_t one = 1;

    if (w->wake_fd >= 0 && write(w->wake_fd, &one, sizeof(one)) < 0)
        httpd_log(w->srv, "worker %d: wake: %s", w->index, strerror(errno));
}
