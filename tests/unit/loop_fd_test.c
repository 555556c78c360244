/* loop_fd_test.c - the server core's event loop: fds, the before-sleep
 * hook, stop and run, and running out of memory (the timers are in
 * loop_timer_test.c).
 *
 * No test asserts how long something took, only the order things happened
 * in (and, for timers, that none fired before its time).  Every wait has an
 * upper bound (WAIT_MS) so that a missing event fails a test instead of
 * hanging it, and alarm() ends the whole run if something hangs anyway. */
#include "loop_helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------ fd helpers */

/* What the fd handlers saw, in order: 'r' read handler, 'w' write handler,
 * 'e' the one handler registered for both. */
struct hits {
    int count;
    char order[16];
    int fd[16];
    int mask[16];
};

static void hit(struct hits *h, char who, int fd, int mask)
{
    if (h->count < 15) {
        h->order[h->count] = who;
        h->fd[h->count] = fd;
        h->mask[h->count] = mask;
    }
    h->count++;
}

static void on_read(httpd_loop *loop, int fd, void *data, int mask)
{
    char buf[64];

    (void)loop;
    hit(data, 'r', fd, mask);
    (void)!read(fd, buf, sizeof(buf));
}

/* Counts without reading: the fd stays readable. */
static void on_peek(httpd_loop *loop, int fd, void *data, int mask)
{
    (void)loop;
    hit(data, 'r', fd, mask);
}

static void on_write(httpd_loop *loop, int fd, void *data, int mask)
{
    (void)loop;
    hit(data, 'w', fd, mask);
}

static void on_either(httpd_loop *loop, int fd, void *data, int mask)
{
    (void)loop;
    hit(data, 'e', fd, mask);
}

static void make_pipe(int p[2])
{
    assert_int_equal(pipe(p), 0);
}

static void make_socketpair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

static void put(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* ------------------------------------------------------------ fd tests */

static void pipe_read_end_fires_readable(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits h = {0};
    int p[2];

    (void)state;
    assert_non_null(loop);
    make_pipe(p);
    assert_int_equal(httpd_loop_add_fd(loop, p[0], HTTPD_LOOP_READABLE, on_read, &h), 0);
    assert_int_equal(httpd_loop_process(loop, 0), 0); /* nothing written yet */
    put(p[1], "x");
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(h.count, 1);
    assert_int_equal(h.fd[0], p[0]);
    assert_int_equal(h.mask[0], HTTPD_LOOP_READABLE);
    assert_int_equal(httpd_loop_process(loop, 0), 0); /* drained */
    httpd_loop_del_fd(loop, p[0], HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE);
    close(p[0]);
    close(p[1]);
    httpd_loop_free(loop);
}

static void readiness_is_level_triggered(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits h = {0};
    int p[2];

    (void)state;
    make_pipe(p);
    assert_int_equal(httpd_loop_add_fd(loop, p[0], HTTPD_LOOP_READABLE, on_peek, &h), 0);
    put(p[1], "x");
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1); /* still unread */
    assert_int_equal(h.count, 2);
    httpd_loop_del_fd(loop, p[0], HTTPD_LOOP_READABLE);
    close(p[0]);
    close(p[1]);
    httpd_loop_free(loop);
}

static void socketpair_writable_then_readable(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits w = {0}, r = {0};
    int sv[2];

    (void)state;
    make_socketpair(sv);
    assert_int_equal(httpd_loop_add_fd(loop, sv[0], HTTPD_LOOP_WRITABLE, on_write, &w), 0);
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(w.count, 1);
    assert_int_equal(w.fd[0], sv[0]);
    assert_int_equal(w.mask[0], HTTPD_LOOP_WRITABLE);

    httpd_loop_del_fd(loop, sv[0], HTTPD_LOOP_WRITABLE);
    assert_int_equal(httpd_loop_add_fd(loop, sv[1], HTTPD_LOOP_READABLE, on_read, &r), 0);
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    put(sv[0], "hello");
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.fd[0], sv[1]);
    assert_int_equal(r.mask[0], HTTPD_LOOP_READABLE);
    assert_int_equal(w.count, 1); /* no longer watched for writing */

    httpd_loop_del_fd(loop, sv[1], HTTPD_LOOP_READABLE);
    close(sv[0]);
    close(sv[1]);
    httpd_loop_free(loop);
}

static void one_handler_for_both_is_called_once_with_both_bits(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits h = {0};
    int sv[2];

    (void)state;
    make_socketpair(sv);
    put(sv[1], "x"); /* sv[0] readable, and writable as always */
    assert_int_equal(httpd_loop_add_fd(loop, sv[0], HTTPD_LOOP_READABLE, on_either, &h), 0);
    assert_int_equal(httpd_loop_add_fd(loop, sv[0], HTTPD_LOOP_WRITABLE, on_either, &h), 0);
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(h.count, 1);
    assert_int_equal(h.mask[0], HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE);
    httpd_loop_del_fd(loop, sv[0], HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE);
    close(sv[0]);
    close(sv[1]);
    httpd_loop_free(loop);
}

static void two_handlers_are_called_read_first(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits h = {0};
    int sv[2];

    (void)state;
    make_socketpair(sv);
    put(sv[1], "x");
    assert_int_equal(httpd_loop_add_fd(loop, sv[0], HTTPD_LOOP_WRITABLE, on_write, &h), 0);
    assert_int_equal(httpd_loop_add_fd(loop, sv[0], HTTPD_LOOP_READABLE, on_read, &h), 0);
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(h.count, 2);
    assert_memory_equal(h.order, "rw", 2);
    assert_int_equal(h.mask[0], HTTPD_LOOP_READABLE);
    assert_int_equal(h.mask[1], HTTPD_LOOP_WRITABLE);
    httpd_loop_del_fd(loop, sv[0], HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE);
    close(sv[0]);
    close(sv[1]);
    httpd_loop_free(loop);
}

/* EPOLLHUP alone (a pipe whose writer closed, nothing left to read) reaches
 * the read handler, whose read() then sees end of file. */
static int eof_seen;

static void on_read_until_eof(httpd_loop *loop, int fd, void *data, int mask)
{
    char buf[16];

    hit(data, 'r', fd, mask);
    if (read(fd, buf, sizeof(buf)) == 0) {
        eof_seen = 1;
        httpd_loop_del_fd(loop, fd, HTTPD_LOOP_READABLE);
    }
}

static void hangup_reaches_the_read_handler(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits h = {0};
    int p[2];

    (void)state;
    eof_seen = 0;
    make_pipe(p);
    assert_int_equal(httpd_loop_add_fd(loop, p[0], HTTPD_LOOP_READABLE, on_read_until_eof, &h), 0);
    close(p[1]);
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(h.mask[0], HTTPD_LOOP_READABLE);
    assert_true(eof_seen);
    assert_int_equal(httpd_loop_fd_mask(loop, p[0]), HTTPD_LOOP_NONE);
    close(p[0]);
    httpd_loop_free(loop);
}

/* EPOLLERR alone (a full pipe whose reader closed) reaches the write
 * handler, whose write() then fails with EPIPE. */
static int write_errno;

static void on_write_fails(httpd_loop *loop, int fd, void *data, int mask)
{
    hit(data, 'w', fd, mask);
    if (write(fd, "x", 1) == -1)
        write_errno = errno;
    httpd_loop_del_fd(loop, fd, HTTPD_LOOP_WRITABLE);
}

static void error_reaches_the_write_handler(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits h = {0};
    char block[4096] = {0};
    int p[2];

    (void)state;
    write_errno = 0;
    make_pipe(p);
    assert_int_equal(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
    while (write(p[1], block, sizeof(block)) > 0)
        ;
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(httpd_loop_add_fd(loop, p[1], HTTPD_LOOP_WRITABLE, on_write_fails, &h), 0);
    assert_int_equal(httpd_loop_process(loop, 0), 0); /* full: not writable */
    close(p[0]);
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(h.count, 1);
    assert_int_equal(h.mask[0], HTTPD_LOOP_WRITABLE);
    assert_int_equal(write_errno, EPIPE);
    close(p[1]);
    httpd_loop_free(loop);
}

/* A read handler that forgets and closes its own fd: the write handler,
 * ready in the same batch, must not run. */
static void on_read_forget_self(httpd_loop *loop, int fd, void *data, int mask)
{
    hit(data, 'r', fd, mask);
    httpd_loop_del_fd(loop, fd, HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE);
    close(fd);
}

static void handler_deletes_its_own_fd(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits h = {0};
    int sv[2];

    (void)state;
    make_socketpair(sv);
    put(sv[1], "x");
    assert_int_equal(httpd_loop_add_fd(loop, sv[0], HTTPD_LOOP_READABLE, on_read_forget_self, &h), 0);
    assert_int_equal(httpd_loop_add_fd(loop, sv[0], HTTPD_LOOP_WRITABLE, on_write, &h), 0);
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(h.count, 1);
    assert_int_equal(h.order[0], 'r');
    assert_int_equal(httpd_loop_fd_mask(loop, sv[0]), HTTPD_LOOP_NONE);
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    close(sv[1]);
    httpd_loop_free(loop);
}

/* Two fds ready in one batch, each handler forgetting and closing the
 * other one: whichever runs first, the other must not be called.  With
 * `fresh` set, the handler then puts a new readable pipe under the other's
 * fd number and watches it: that new file's handler must not be called
 * from the old file's event still in the batch either. */
struct rival {
    int fd;
    struct rival *other;
    int *calls;
    int fresh;
    int fresh_writer;
    struct hits *fresh_hits;
};

static void on_read_forget_other(httpd_loop *loop, int fd, void *data, int mask)
{
    struct rival *me = data;
    int victim = me->other->fd;
    char buf[16];

    (void)mask;
    (*me->calls)++;
    (void)!read(fd, buf, sizeof(buf));
    httpd_loop_del_fd(loop, victim, HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE);
    me->other->fd = -1;
    if (!me->fresh) {
        close(victim);
    } else {
        int q[2];

        /* The pipe is made while victim is still open, so it cannot take
         * victim's number; dup2 then closes the old file under it. */
        make_pipe(q);
        assert_int_equal(dup2(q[0], victim), victim);
        close(q[0]);
        put(q[1], "x");
        me->fresh_writer = q[1];
        assert_int_equal(httpd_loop_add_fd(loop, victim, HTTPD_LOOP_READABLE, on_read,
                                        me->fresh_hits), 0);
        me->other->fd = victim;
    }
}

static void forget_the_other(int fresh)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits fresh_hits = {0};
    struct rival a = {0}, b = {0};
    int calls = 0, pa[2], pb[2];

    make_pipe(pa);
    make_pipe(pb);
    a = (struct rival){pa[0], &b, &calls, fresh, -1, &fresh_hits};
    b = (struct rival){pb[0], &a, &calls, fresh, -1, &fresh_hits};
    put(pa[1], "x");
    put(pb[1], "x");
    assert_int_equal(httpd_loop_add_fd(loop, a.fd, HTTPD_LOOP_READABLE, on_read_forget_other, &a), 0);
    assert_int_equal(httpd_loop_add_fd(loop, b.fd, HTTPD_LOOP_READABLE, on_read_forget_other, &b), 0);

    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(calls, 1);
    assert_int_equal(fresh_hits.count, 0);
    if (fresh) {
        /* The new file is served on the next iteration, as it should be. */
        assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
        assert_int_equal(fresh_hits.count, 1);
        close(a.fresh_writer != -1 ? a.fresh_writer : b.fresh_writer);
    }
    for (int i = 0; i < 2; i++) {
        struct rival *r = i ? &b : &a;

        if (r->fd != -1) {
            httpd_loop_del_fd(loop, r->fd, HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE);
            close(r->fd);
        }
    }
    close(pa[1]);
    close(pb[1]);
    httpd_loop_free(loop);
}

static void handler_deletes_another_ready_fd(void **state)
{
    (void)state;
    forget_the_other(0);
}

static void reused_fd_number_gets_no_stale_event(void **state)
{
    (void)state;
    forget_the_other(1);
}

/* httpd_loop_forget_fd then close(2): epoll drops the file by itself, so
 * a new file under the same number is added (no EEXIST) and served, and
 * the old one's handler is never called again. */
static void forgotten_fd_is_left_to_close(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits old_hits = {0}, new_hits = {0};
    int p[2], q[2];

    (void)state;
    make_pipe(p);
    put(p[1], "x");
    assert_int_equal(httpd_loop_add_fd(loop, p[0], HTTPD_LOOP_READABLE, on_read,
                                    &old_hits), 0);
    httpd_loop_forget_fd(loop, p[0]);
    assert_int_equal(httpd_loop_fd_mask(loop, p[0]), HTTPD_LOOP_NONE);
    close(p[0]);
    make_pipe(q);
    assert_int_equal(q[0], p[0]); /* the lowest free number: the same */
    put(q[1], "y");
    assert_int_equal(httpd_loop_add_fd(loop, q[0], HTTPD_LOOP_READABLE, on_read,
                                    &new_hits), 0);
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(new_hits.count, 1);
    assert_int_equal(old_hits.count, 0);
    httpd_loop_forget_fd(loop, q[0]);
    close(q[0]);
    close(q[1]);
    close(p[1]);
    httpd_loop_free(loop);
}

static void masks_are_kept_per_fd(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits h = {0};
    int sv[2];

    (void)state;
    make_socketpair(sv);
    assert_int_equal(httpd_loop_fd_mask(loop, sv[0]), HTTPD_LOOP_NONE);
    assert_int_equal(httpd_loop_add_fd(loop, sv[0], HTTPD_LOOP_READABLE, on_read, &h), 0);
    assert_int_equal(httpd_loop_fd_mask(loop, sv[0]), HTTPD_LOOP_READABLE);
    assert_int_equal(httpd_loop_add_fd(loop, sv[0], HTTPD_LOOP_WRITABLE, on_write, &h), 0);
    assert_int_equal(httpd_loop_fd_mask(loop, sv[0]), HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE);
    assert_int_equal(httpd_loop_add_fd(loop, sv[0], HTTPD_LOOP_READABLE, on_read, &h), 0);
    assert_int_equal(httpd_loop_fd_mask(loop, sv[0]), HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE);

    /* Readable and writable, but only the write side is watched now. */
    httpd_loop_del_fd(loop, sv[0], HTTPD_LOOP_READABLE);
    assert_int_equal(httpd_loop_fd_mask(loop, sv[0]), HTTPD_LOOP_WRITABLE);
    put(sv[1], "x");
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(h.count, 1);
    assert_int_equal(h.order[0], 'w');

    httpd_loop_del_fd(loop, sv[0], HTTPD_LOOP_WRITABLE);
    assert_int_equal(httpd_loop_fd_mask(loop, sv[0]), HTTPD_LOOP_NONE);
    httpd_loop_del_fd(loop, sv[0], HTTPD_LOOP_WRITABLE); /* already gone: no-op */
    httpd_loop_del_fd(loop, -1, HTTPD_LOOP_READABLE);
    httpd_loop_del_fd(loop, SETSIZE, HTTPD_LOOP_READABLE);
    assert_int_equal(httpd_loop_fd_mask(loop, sv[1]), HTTPD_LOOP_NONE);
    assert_int_equal(httpd_loop_fd_mask(loop, -1), HTTPD_LOOP_NONE);
    assert_int_equal(httpd_loop_fd_mask(loop, SETSIZE), HTTPD_LOOP_NONE);
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    assert_int_equal(h.count, 1);

    /* Watched again after being forgotten: ADD, not MOD. */
    assert_int_equal(httpd_loop_add_fd(loop, sv[0], HTTPD_LOOP_READABLE, on_read, &h), 0);
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(h.order[1], 'r');
    httpd_loop_del_fd(loop, sv[0], HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE);
    close(sv[0]);
    close(sv[1]);
    httpd_loop_free(loop);
}

static void bad_fds_and_masks_are_refused(void **state)
{
    httpd_loop *loop = httpd_loop_new(4);
    struct hits h = {0};
    FILE *file = tmpfile();
    int p[2];

    (void)state;
    assert_non_null(loop);
    assert_non_null(file);
    make_pipe(p);
    assert_true(p[0] >= 3);

    errno = 0;
    assert_int_equal(httpd_loop_add_fd(loop, 4, HTTPD_LOOP_READABLE, on_read, &h), -1);
    assert_int_equal(errno, ERANGE);
    errno = 0;
    assert_int_equal(httpd_loop_add_fd(loop, 100000, HTTPD_LOOP_READABLE, on_read, &h), -1);
    assert_int_equal(errno, ERANGE);
    if (p[1] >= 4) {
        errno = 0;
        assert_int_equal(httpd_loop_add_fd(loop, p[1], HTTPD_LOOP_WRITABLE, on_write, &h), -1);
        assert_int_equal(errno, ERANGE);
    }
    errno = 0;
    assert_int_equal(httpd_loop_add_fd(loop, -1, HTTPD_LOOP_READABLE, on_read, &h), -1);
    assert_int_equal(errno, EBADF);
    errno = 0;
    assert_int_equal(httpd_loop_add_fd(loop, 3, HTTPD_LOOP_NONE, on_read, &h), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(httpd_loop_add_fd(loop, 3, 4, on_read, &h), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(httpd_loop_add_fd(loop, 3, HTTPD_LOOP_READABLE, NULL, &h), -1);
    assert_int_equal(errno, EINVAL);
    httpd_loop_free(loop);

    /* epoll refuses regular files; the table must stay untouched. */
    loop = httpd_loop_new(SETSIZE);
    errno = 0;
    assert_int_equal(httpd_loop_add_fd(loop, fileno(file), HTTPD_LOOP_READABLE, on_read, &h), -1);
    assert_int_equal(errno, EPERM);
    assert_int_equal(httpd_loop_fd_mask(loop, fileno(file)), HTTPD_LOOP_NONE);
    httpd_loop_free(loop);

    errno = 0;
    assert_null(httpd_loop_new(0));
    assert_int_equal(errno, EINVAL);
    assert_null(httpd_loop_new(-5));
    fclose(file);
    close(p[0]);
    close(p[1]);
}

/* ------------------------------------------------------------ hook, run */

struct sleeper {
    int calls;
    int wake_fd; /* written to on the first call, if >= 0 */
};

static void before_sleep(httpd_loop *loop, void *data)
{
    struct sleeper *s = data;

    (void)loop;
    if (s->calls++ == 0 && s->wake_fd >= 0)
        put(s->wake_fd, "x");
}

static void before_sleep_runs_before_each_wait(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct sleeper s = {0, -1};
    struct hits h = {0};
    int p[2];

    (void)state;
    make_pipe(p);
    s.wake_fd = p[1];
    httpd_loop_set_before_sleep(loop, before_sleep, &s);
    assert_int_equal(httpd_loop_add_fd(loop, p[0], HTTPD_LOOP_READABLE, on_read, &h), 0);
    /* The hook writes before the wait, so this very wait sees the byte. */
    assert_int_equal(httpd_loop_process(loop, 0), 1);
    assert_int_equal(s.calls, 1);
    assert_int_equal(h.count, 1);
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    assert_int_equal(s.calls, 2);
    httpd_loop_set_before_sleep(loop, NULL, NULL);
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    assert_int_equal(s.calls, 2);
    httpd_loop_del_fd(loop, p[0], HTTPD_LOOP_READABLE);
    close(p[0]);
    close(p[1]);
    httpd_loop_free(loop);
}

static long long on_timer_stops_at_three(httpd_loop *loop, long long id, void *data)
{
    (void)id;
    if (++*(int *)data == 3) {
        httpd_loop_stop(loop);
        return HTTPD_LOOP_NOMORE;
    }
    return 1;
}

static void on_read_stops(httpd_loop *loop, int fd, void *data, int mask)
{
    on_read(loop, fd, data, mask);
    httpd_loop_stop(loop);
}

static void stop_ends_run(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits h = {0};
    int calls = 0, p[2];

    (void)state;
    assert_true(httpd_loop_add_timer(loop, 1, on_timer_stops_at_three, &calls) > 0);
    httpd_loop_run(loop);
    assert_int_equal(calls, 3);

    /* Again, from an fd handler; run starts by clearing the old stop. */
    make_pipe(p);
    assert_int_equal(httpd_loop_add_fd(loop, p[0], HTTPD_LOOP_READABLE, on_read_stops, &h), 0);
    put(p[1], "x");
    httpd_loop_run(loop);
    assert_int_equal(h.count, 1);
    httpd_loop_del_fd(loop, p[0], HTTPD_LOOP_READABLE);
    close(p[0]);
    close(p[1]);
    httpd_loop_free(loop);
}

static void zero_timeout_returns_at_once(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    struct hits h = {0};
    int p[2];

    (void)state;
    /* Nothing watched, no timers; then a far timer: neither may block. */
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    assert_true(httpd_loop_add_timer(loop, 3600 * 1000, on_timer_once, NULL) > 0);
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    /* Unbounded wait with a far timer ends with the first ready fd. */
    make_pipe(p);
    assert_int_equal(httpd_loop_add_fd(loop, p[0], HTTPD_LOOP_READABLE, on_read, &h), 0);
    put(p[1], "x");
    assert_int_equal(httpd_loop_process(loop, -1), 1);
    assert_int_equal(h.count, 1);
    httpd_loop_del_fd(loop, p[0], HTTPD_LOOP_READABLE);
    close(p[0]);
    close(p[1]);
    httpd_loop_free(loop);
}

static void now_is_monotonic(void **state)
{
    long long a = httpd_loop_now_ms(), b = httpd_loop_now_ms();

    (void)state;
    assert_true(a > 0);
    assert_true(b >= a);
}

/* ------------------------------------------------------------ no memory */

static void allocation_failures_are_clean(void **state)
{
    httpd_loop *loop = NULL;
    long i;

    (void)state;
    for (i = 0; loop == NULL; i++) {
        assert_true(i < 16);
        httpd__loop_alloc_fail_after(i);
        errno = 0;
        loop = httpd_loop_new(64);
        httpd__loop_alloc_fail_after(-1);
        if (loop == NULL)
            assert_int_equal(errno, ENOMEM);
    }

    /* Fill the first heap and index allocations exactly, then make each
     * growth fail in turn: the add fails, and nothing else changes. */
    for (i = 0; i < 16; i++)
        assert_true(httpd_loop_add_timer(loop, 1000, on_timer_once, NULL) > 0);
    for (i = 0; i < 4; i++) {
        httpd__loop_alloc_fail_after(i);
        errno = 0;
        long long id = httpd_loop_add_timer(loop, 1000, on_timer_once, NULL);
        httpd__loop_alloc_fail_after(-1);
        assert_int_equal(httpd__loop_check(loop), 0);
        if (id > 0) {
            assert_int_equal(httpd_loop_del_timer(loop, id), 0);
            break;
        }
        assert_int_equal(id, -1);
        assert_int_equal(errno, ENOMEM);
    }
    assert_true(i > 0 && i < 4); /* both a failure and a success were seen */
    for (long long id = 1; id <= 16; id++)
        assert_int_equal(httpd_loop_del_timer(loop, id), 0);
    assert_int_equal(httpd__loop_check(loop), 0);
    httpd_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pipe_read_end_fires_readable),
        cmocka_unit_test(readiness_is_level_triggered),
        cmocka_unit_test(socketpair_writable_then_readable),
        cmocka_unit_test(one_handler_for_both_is_called_once_with_both_bits),
        cmocka_unit_test(two_handlers_are_called_read_first),
        cmocka_unit_test(hangup_reaches_the_read_handler),
        cmocka_unit_test(error_reaches_the_write_handler),
        cmocka_unit_test(handler_deletes_its_own_fd),
        cmocka_unit_test(handler_deletes_another_ready_fd),
        cmocka_unit_test(reused_fd_number_gets_no_stale_event),
        cmocka_unit_test(forgotten_fd_is_left_to_close),
        cmocka_unit_test(masks_are_kept_per_fd),
        cmocka_unit_test(bad_fds_and_masks_are_refused),
        cmocka_unit_test(before_sleep_runs_before_each_wait),
        cmocka_unit_test(stop_ends_run),
        cmocka_unit_test(zero_timeout_returns_at_once),
        cmocka_unit_test(now_is_monotonic),
        cmocka_unit_test(allocation_failures_are_clean),
    };

    /* A broken write end must fail write() with EPIPE, not kill the test;
     * and a hang must end the run rather than stall it. */
    signal(SIGPIPE, SIG_IGN);
    alarm(300);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
