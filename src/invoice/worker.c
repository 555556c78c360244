/*
 * worker.c - a worker thread: its own event loop, its own SO_REUSEPORT
 * listener (the kernel spreads connections), its own store connection.
 * Nothing on the request path is shared between workers, so nothing on it
 * takes a lock.
 */
#define _GNU_SOURCE /* accept4 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define SWEEP_MS 250

static void on_accept(tw_loop *loop, int fd, void *data, int mask);

/* Out of file descriptors: stop accepting for a moment instead of spinning
 * on a listener that stays readable. */
static long long resume_accept(tw_loop *loop, long long id, void *data)
{
    inv_worker *w = data;

    (void)id;
    if (w->listen_fd >= 0)
        tw_loop_add_fd(loop, w->listen_fd, TW_LOOP_READABLE, on_accept, w);
    return TW_LOOP_NOMORE;
}

static void on_accept(tw_loop *loop, int fd, void *data, int mask)
{
    inv_worker *w = data;

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
                inv_log(w->srv, "accept: %s: pausing new connections for "
                        "100 ms (raise `ulimit -n` or lower "
                        "--max-connections)", strerror(errno));
                tw_loop_del_fd(loop, fd, TW_LOOP_READABLE);
                tw_loop_add_timer(loop, 100, resume_accept, w);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK &&
                       errno != EINTR && errno != ECONNABORTED) {
                inv_log(w->srv, "accept: %s", strerror(errno));
            }
            return;
        }
        inv_conn_accept(w, cfd, (struct sockaddr *)&sa);
    }
}

static void on_store_done(tw_loop *loop, int fd, void *data, int mask)
{
    (void)loop;
    (void)fd;
    (void)mask;
    store_queue_drain(((inv_worker *)data)->queue);
}

static void start_drain(inv_worker *w)
{
    inv_conn *c, *next;

    if (w->listen_fd >= 0) {
        tw_loop_del_fd(w->loop, w->listen_fd,
                       TW_LOOP_READABLE | TW_LOOP_WRITABLE);
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
            inv_conn_close(c);
    }
}

static void on_wake(tw_loop *loop, int fd, void *data, int mask)
{
    inv_worker *w = data;
    uint64_t v;

    (void)loop;
    (void)mask;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        inv_log(w->srv, "worker %d: wake: %s", w->index, strerror(errno));
    if (atomic_load(&w->srv->draining))
        start_drain(w);
}

static long long on_sweep(tw_loop *loop, long long id, void *data)
{
    inv_worker *w = data;

    (void)id;
    inv_conn_sweep(w, tw_loop_now_ms());
    if (atomic_load(&w->srv->draining) && w->nconns == 0) {
        tw_loop_stop(loop);
        return TW_LOOP_NOMORE;
    }
    return SWEEP_MS;
}

static int listen_socket(inv_worker *w)
{
    inv_server *srv = w->srv;
    int one = 1;
    int fd = socket(srv->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);

    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
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
    inv_worker *w = arg;

    tw_loop_run(w->loop);
    if (w->listen_fd >= 0) {
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    while (w->conns != NULL)
        inv_conn_close(w->conns);
    return NULL;
}

int inv_worker_start(inv_worker *w)
{
    inv_server *srv = w->srv;
    tw_err err;

    /* The first worker's socket fixes the port (port 0 picks one); the
     * others bind the same address with SO_REUSEPORT. */
    if ((w->listen_fd = listen_socket(w)) < 0) {
        inv_log(srv, "cannot listen on %s: %s", srv->opt.listen,
                strerror(errno));
        return -1;
    }
    if (w->index == 0) {
        srv->addrlen = sizeof(srv->addr);
        getsockname(w->listen_fd, (struct sockaddr *)&srv->addr,
                    &srv->addrlen);
    }
    w->post_done = inv_conn_post_done;
    w->cache = calloc(1, sizeof(*w->cache)); /* NULL: serve without */
    w->max_conns = (srv->opt.max_conns + srv->nworkers - 1) / srv->nworkers;
    if ((w->loop = tw_loop_new(srv->opt.max_conns + 1024)) == NULL ||
        (w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        inv_log(srv, "worker %d: %s", w->index, strerror(errno));
        return -1;
    }
    if ((w->store = store_open(srv->opt.db, &err)) == NULL ||
        (w->queue = store_queue_new(&err)) == NULL) {
        inv_log(srv, "worker %d: %s", w->index, err.msg);
        return -1;
    }
    if (tw_loop_add_fd(w->loop, w->listen_fd, TW_LOOP_READABLE, on_accept, w) < 0 ||
        tw_loop_add_fd(w->loop, w->wake_fd, TW_LOOP_READABLE, on_wake, w) < 0 ||
        tw_loop_add_fd(w->loop, store_queue_fd(w->queue), TW_LOOP_READABLE,
                       on_store_done, w) < 0 ||
        tw_loop_add_timer(w->loop, SWEEP_MS, on_sweep, w) < 0) {
        inv_log(srv, "worker %d: %s", w->index, strerror(errno));
        return -1;
    }
    if ((errno = pthread_create(&w->thread, NULL, worker_main, w)) != 0) {
        inv_log(srv, "worker %d: %s", w->index, strerror(errno));
        return -1;
    }
    return 0;
}

void inv_worker_wake(inv_worker *w)
{
    uint64_t one = 1;

    if (w->wake_fd >= 0 && write(w->wake_fd, &one, sizeof(one)) < 0)
        inv_log(w->srv, "worker %d: wake: %s", w->index, strerror(errno));
}
