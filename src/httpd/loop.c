/*
 * loop.c - the event loop behind loop.h, in the shape of redis's ae.c.
 *
 * Three parts, in this order:
 *   - the fd table and its epoll backend: one entry per fd below setsize
 *     (mask, read handler, write handler, data), mirrored into epoll with
 *     level-triggered events;
 *   - the timers: a short list in firing order (when_ms, then id);
 *   - dispatch: before-sleep hook, epoll_wait, fd handlers, due timers.
 *
 * Handlers may add and delete fds and timers (their own included) while
 * they run; the dispatch code re-reads the table after every call instead of
 * trusting anything it read before.  Freeing the loop, or calling
 * httpd_loop_process / httpd_loop_run, from a handler is not supported.
 */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

struct httpd_loop_file {
    int mask;               /* HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE */
    uint32_t gen;           /* bumped each time the fd is forgotten */
    httpd_loop_file_fn *rfn;
    httpd_loop_file_fn *wfn;
    void *data;             /* shared by both handlers, as in ae */
};

struct httpd_loop_timer {
    long long when;         /* httpd_loop_now_ms() deadline */
    long long id;
    httpd_loop_timer_fn *fn;
    void *data;
    struct httpd_loop_timer *next;
};

struct httpd_loop {
    int epfd;
    int setsize;
    struct httpd_loop_file *files;         /* setsize entries, indexed by fd */
    struct epoll_event *events;         /* setsize entries, epoll_wait out */

    struct httpd_loop_timer *timers;       /* in firing order */
    long long next_id;

    httpd_loop_hook_fn *before_sleep;
    void *before_sleep_data;
    /* sig_atomic_t so that a signal handler on the loop's thread may stop
     * the loop too. */
    volatile sig_atomic_t stop;
};

/* ------------------------------------------------------------ allocation */

#ifdef HTTPD_LOOP_DEBUG
/* Tests make the allocation after `n` more succeed fail; -1 turns it off.
 * The loop is its own module (its test links loop.c alone), so it carries
 * its own small version of the library's twu_alloc_fail_after. */
void httpd__loop_alloc_fail_after(long n);
static long alloc_fail_countdown = -1;

void httpd__loop_alloc_fail_after(long n)
{
    alloc_fail_countdown = n;
}

static int alloc_should_fail(void)
{
    if (alloc_fail_countdown < 0)
        return 0;
    if (alloc_fail_countdown == 0)
        return 1;
    alloc_fail_countdown--;
    return 0;
}
#else
static int alloc_should_fail(void)
{
    return 0;
}
#endif

static void *loop_calloc(size_t count, size_t size)
{
    if (alloc_should_fail()) {
        errno = ENOMEM;
        return NULL;
    }
    return calloc(count, size);
}

/* ------------------------------------------------------------ the loop */

httpd_loop *httpd_loop_new(int setsize)
{
    httpd_loop *loop;

    if (setsize <= 0) {
        errno = EINVAL;
        return NULL;
    }
    loop = loop_calloc(1, sizeof(*loop));
    if (loop == NULL)
        goto err;
    loop->epfd = -1;
    loop->setsize = setsize;
    loop->next_id = 1;
    loop->files = loop_calloc((size_t)setsize, sizeof(*loop->files));
    loop->events = loop_calloc((size_t)setsize, sizeof(*loop->events));
    if (loop->files == NULL || loop->events == NULL)
        goto err;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd == -1)
        goto err;
    return loop;

err:
    httpd_loop_free(loop);
    return NULL;
}

void httpd_loop_free(httpd_loop *loop)
{
    int saved = errno;

    if (loop == NULL)
        return;
    if (loop->epfd != -1)
        close(loop->epfd);
    free(loop->files);
    free(loop->events);
    while (loop->timers != NULL) {
        struct httpd_loop_timer *t = loop->timers;

        loop->timers = t->next;
        free(t);
    }
    free(loop);
    errno = saved;
}

void httpd_loop_set_before_sleep(httpd_loop *loop, httpd_loop_hook_fn *fn, void *data)
{
    loop->before_sleep = fn;
    loop->before_sleep_data = data;
}

void httpd_loop_stop(httpd_loop *loop)
{
    loop->stop = 1;
}

long long httpd_loop_now_ms(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail with a valid pointer on Linux. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ fds, epoll */

static uint32_t epoll_bits(int mask)
{
    uint32_t bits = 0;

    if (mask & HTTPD_LOOP_READABLE)
        bits |= EPOLLIN;
    if (mask & HTTPD_LOOP_WRITABLE)
        bits |= EPOLLOUT;
    return bits; /* level-triggered: no EPOLLET */
}

/* Tell epoll that fd is now watched for `mask` (NONE: not at all), having
 * been watched for `old`.  The event carries the fd and its generation, so
 * that dispatch can spot an event for an fd forgotten (and maybe reused)
 * since the wait. */
static int epoll_update(httpd_loop *loop, int fd, int old, int mask)
{
    struct epoll_event ev = {0};
    int op;

    if (mask == HTTPD_LOOP_NONE)
        op = EPOLL_CTL_DEL;
    else if (old == HTTPD_LOOP_NONE)
        op = EPOLL_CTL_ADD;
    else
        op = EPOLL_CTL_MOD;
    ev.events = epoll_bits(mask);
    ev.data.u64 = ((uint64_t)loop->files[fd].gen << 32) | (uint32_t)fd;
    return epoll_ctl(loop->epfd, op, fd, &ev);
}

int httpd_loop_add_fd(httpd_loop *loop, int fd, int mask, httpd_loop_file_fn *fn,
                   void *data)
{
    struct httpd_loop_file *f;
    int both = HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE;

    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (fd >= loop->setsize) {
        errno = ERANGE;
        return -1;
    }
    if (fn == NULL || mask == HTTPD_LOOP_NONE || (mask & ~both) != 0) {
        errno = EINVAL;
        return -1;
    }
    f = &loop->files[fd];
    /* Only a new bit needs the kernel; the table changes after it agrees. */
    if ((f->mask | mask) != f->mask &&
        epoll_update(loop, fd, f->mask, f->mask | mask) == -1)
        return -1;
    f->mask |= mask;
    if (mask & HTTPD_LOOP_READABLE)
        f->rfn = fn;
    if (mask & HTTPD_LOOP_WRITABLE)
        f->wfn = fn;
    f->data = data;
    return 0;
}

/* The table's side of watching fd for `left` only. */
static void forget(struct httpd_loop_file *f, int left)
{
    f->mask = left;
    if (!(left & HTTPD_LOOP_READABLE))
        f->rfn = NULL;
    if (!(left & HTTPD_LOOP_WRITABLE))
        f->wfn = NULL;
    if (left == HTTPD_LOOP_NONE) {
        f->data = NULL;
        f->gen++;
    }
}

void httpd_loop_del_fd(httpd_loop *loop, int fd, int mask)
{
    struct httpd_loop_file *f;
    int left;

    if (fd < 0 || fd >= loop->setsize)
        return;
    f = &loop->files[fd];
    left = f->mask & ~mask;
    if (left == f->mask)
        return;
    /* Errors are ignored, as in ae: the only causes are an fd already
     * closed (which epoll forgets by itself) or a programming error, and the
     * table must forget the fd either way. */
    (void)epoll_update(loop, fd, f->mask, left);
    forget(f, left);
}

void httpd_loop_forget_fd(httpd_loop *loop, int fd)
{
    if (fd >= 0 && fd < loop->setsize &&
        loop->files[fd].mask != HTTPD_LOOP_NONE)
        forget(&loop->files[fd], HTTPD_LOOP_NONE);
}

int httpd_loop_fd_mask(const httpd_loop *loop, int fd)
{
    if (fd < 0 || fd >= loop->setsize)
        return HTTPD_LOOP_NONE;
    return loop->files[fd].mask;
}

/* ------------------------------------------------------------ timers */

/*
 * A server has a handful of timers (a worker: connection deadlines, a
 * pause of accept), so they live in one list kept in firing order, as in
 * redis's ae.c: adding and deleting walk the list, the next deadline is
 * its head.  Per-connection deadlines are not timers: the server keeps
 * them in lists of its own (see worker.c) and arms one timer for the
 * earliest.
 */

static int timer_before(const struct httpd_loop_timer *a,
                        const struct httpd_loop_timer *b)
{
    return a->when < b->when || (a->when == b->when && a->id < b->id);
}

/* Put t in its place in the list. */
static void timer_link(httpd_loop *loop, struct httpd_loop_timer *t)
{
    struct httpd_loop_timer **p = &loop->timers;

    while (*p != NULL && !timer_before(t, *p))
        p = &(*p)->next;
    t->next = *p;
    *p = t;
}

/* Take the timer `id` out of the list; NULL when there is none. */
static struct httpd_loop_timer *timer_unlink(httpd_loop *loop, long long id)
{
    struct httpd_loop_timer **p = &loop->timers, *t;

    while (*p != NULL && (*p)->id != id)
        p = &(*p)->next;
    if ((t = *p) != NULL)
        *p = t->next;
    return t;
}

/* now + ms, saturating instead of overflowing. */
static long long deadline(long long now, long long ms)
{
    return ms > LLONG_MAX - now ? LLONG_MAX : now + ms;
}

long long httpd_loop_add_timer(httpd_loop *loop, long long ms,
                               httpd_loop_timer_fn *fn, void *data)
{
    struct httpd_loop_timer *t;

    if (fn == NULL || ms < 0) {
        errno = EINVAL;
        return -1;
    }
    if ((t = loop_calloc(1, sizeof(*t))) == NULL)
        return -1;
    t->when = deadline(httpd_loop_now_ms(), ms);
    t->id = loop->next_id++;
    t->fn = fn;
    t->data = data;
    timer_link(loop, t);
    return t->id;
}

int httpd_loop_del_timer(httpd_loop *loop, long long id)
{
    struct httpd_loop_timer *t = timer_unlink(loop, id);

    if (t == NULL)
        return -1;
    free(t);
    return 0;
}

#ifdef HTTPD_LOOP_DEBUG
/* 0 when the list is in firing order with ids from this loop, else -1. */
int httpd__loop_check(const httpd_loop *loop);

int httpd__loop_check(const httpd_loop *loop)
{
    for (const struct httpd_loop_timer *t = loop->timers; t != NULL; t = t->next) {
        if (t->next != NULL && timer_before(t->next, t))
            return -1;
        if (t->id <= 0 || t->id >= loop->next_id)
            return -1;
    }
    return 0;
}
#endif

/* ------------------------------------------------------------ dispatch */

/* Run the timers due now.  Timers added meanwhile (ids above last_id) and
 * timers re-armed meanwhile (deadline pushed past `now`) wait for the next
 * iteration: both sort after every timer that was due when we started,
 * so stopping at the first of them skips nobody, and a handler that keeps
 * asking for 0 ms cannot keep the loop from returning. */
static int process_timers(httpd_loop *loop)
{
    long long now = httpd_loop_now_ms(), last_id = loop->next_id - 1;
    int fired = 0;

    while (loop->timers != NULL) {
        struct httpd_loop_timer *t = loop->timers;
        long long id = t->id, ms;

        if (t->when > now || id > last_id)
            break;
        ms = t->fn(loop, id, t->data);
        fired++;
        /* The handler may have deleted this timer (or others): look for
         * it again rather than trusting `t`. */
        if ((t = timer_unlink(loop, id)) == NULL)
            continue;
        if (ms < 0) { /* HTTPD_LOOP_NOMORE, or any other negative */
            free(t);
            continue;
        }
        t->when = deadline(httpd_loop_now_ms(), ms);
        if (t->when <= now)
            t->when = now + 1; /* 0 ms means the next millisecond tick */
        timer_link(loop, t);
    }
    return fired;
}

/* How long epoll_wait may sleep: until the nearest timer, but no longer
 * than the caller allows (-1: no limit). */
static int wait_ms(const httpd_loop *loop, int timeout_ms)
{
    long long ms;

    if (loop->timers == NULL)
        return timeout_ms < 0 ? -1 : timeout_ms;
    ms = loop->timers->when - httpd_loop_now_ms();
    if (ms < 0)
        ms = 0;
    if (timeout_ms >= 0 && ms > timeout_ms)
        ms = timeout_ms;
    return ms > INT_MAX ? INT_MAX : (int)ms; /* epoll takes an int */
}

/* Call the handlers of one ready fd.  1 if any handler ran. */
static int dispatch_fd(httpd_loop *loop, const struct epoll_event *ev)
{
    int fd = (int)(uint32_t)ev->data.u64;
    uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
    struct httpd_loop_file *f = &loop->files[fd];
    int fired = 0, called = 0;

    /* Forgotten by an earlier handler of this batch (and maybe registered
     * again for a new file with the same number): the event is stale. */
    if (f->gen != gen)
        return 0;
    if (ev->events & EPOLLIN)
        fired |= HTTPD_LOOP_READABLE;
    if (ev->events & EPOLLOUT)
        fired |= HTTPD_LOOP_WRITABLE;
    /* An error or hang-up goes to whichever handlers are registered; their
     * read() or write() then reports it. */
    if (ev->events & (EPOLLERR | EPOLLHUP))
        fired |= HTTPD_LOOP_READABLE | HTTPD_LOOP_WRITABLE;

    if (f->mask & fired & HTTPD_LOOP_READABLE) {
        int mask = HTTPD_LOOP_READABLE;

        /* One function for both directions is called once, with both bits
         * (ae does the same), rather than twice in a row. */
        if ((f->mask & fired & HTTPD_LOOP_WRITABLE) && f->wfn == f->rfn)
            mask |= HTTPD_LOOP_WRITABLE;
        f->rfn(loop, fd, f->data, mask);
        called = 1;
        fired &= ~mask;
    }
    /* Re-check: the read handler may have dropped the write side, or the
     * whole fd. */
    if (f->gen == gen && (f->mask & fired & HTTPD_LOOP_WRITABLE)) {
        f->wfn(loop, fd, f->data, HTTPD_LOOP_WRITABLE);
        called = 1;
    }
    return called;
}

int httpd_loop_process(httpd_loop *loop, int timeout_ms)
{
    int n, i, handled = 0;

    if (loop->before_sleep != NULL)
        loop->before_sleep(loop, loop->before_sleep_data);
    n = epoll_wait(loop->epfd, loop->events, loop->setsize,
                   wait_ms(loop, timeout_ms));
    if (n == -1) {
        /* A signal is no error; anything else is a broken loop (bad epfd),
         * reported as -1 so that httpd_loop_run does not spin on it. */
        if (errno != EINTR)
            return -1;
        n = 0;
    }
    for (i = 0; i < n; i++)
        handled += dispatch_fd(loop, &loop->events[i]);
    return handled + process_timers(loop);
}

void httpd_loop_run(httpd_loop *loop)
{
    loop->stop = 0;
    while (!loop->stop) {
        if (httpd_loop_process(loop, -1) == -1)
            break;
    }
}
