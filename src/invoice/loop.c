/*
 * loop.c - the event loop behind loop.h, in the shape of redis's ae.c.
 *
 * Three parts, in this order:
 *   - the fd table and its epoll backend: one entry per fd below setsize
 *     (mask, read handler, write handler, data), mirrored into epoll with
 *     level-triggered events;
 *   - the timers: a binary min-heap ordered by (when_ms, id), plus an
 *     id -> heap slot index so a timer can be cancelled in O(log n);
 *   - dispatch: before-sleep hook, epoll_wait, fd handlers, due timers.
 *
 * Handlers may add and delete fds and timers (their own included) while
 * they run; the dispatch code re-reads the table after every call instead of
 * trusting anything it read before.  Freeing the loop, or calling
 * tw_loop_process / tw_loop_run, from a handler is not supported.
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

struct tw_loop_file {
    int mask;               /* TW_LOOP_READABLE | TW_LOOP_WRITABLE */
    uint32_t gen;           /* bumped each time the fd is forgotten */
    tw_loop_file_fn *rfn;
    tw_loop_file_fn *wfn;
    void *data;             /* shared by both handlers, as in ae */
};

struct tw_loop_timer {
    long long when;         /* tw_loop_now_ms() deadline */
    long long id;
    tw_loop_timer_fn *fn;
    void *data;
};

/* One slot of the id index; id 0 marks an empty slot (ids start at 1). */
struct tw_loop_slot {
    long long id;
    size_t pos;             /* where the timer sits in the heap */
};

struct tw_loop {
    int epfd;
    int setsize;
    struct tw_loop_file *files;         /* setsize entries, indexed by fd */
    struct epoll_event *events;         /* setsize entries, epoll_wait out */

    struct tw_loop_timer *heap;
    size_t nheap, heap_cap;
    struct tw_loop_slot *index;         /* open addressing, linear probing */
    size_t index_cap;                   /* a power of two, or 0 */
    long long next_id;

    tw_loop_hook_fn *before_sleep;
    void *before_sleep_data;
    /* sig_atomic_t so that a signal handler on the loop's thread may stop
     * the loop too. */
    volatile sig_atomic_t stop;
};

/* ------------------------------------------------------------ allocation */

#ifdef TW_LOOP_DEBUG
/* Tests make the allocation after `n` more succeed fail; -1 turns it off.
 * The loop is its own module (its test links loop.c alone), so it carries
 * its own small version of the library's tw__alloc_fail_after. */
void tw__loop_alloc_fail_after(long n);
static long alloc_fail_countdown = -1;

void tw__loop_alloc_fail_after(long n)
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

/* realloc to count * size bytes, refusing sizes that overflow. */
static void *loop_reallocarray(void *p, size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    if (alloc_should_fail()) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, count * size);
}

/* ------------------------------------------------------------ the loop */

tw_loop *tw_loop_new(int setsize)
{
    tw_loop *loop;

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
    tw_loop_free(loop);
    return NULL;
}

void tw_loop_free(tw_loop *loop)
{
    int saved = errno;

    if (loop == NULL)
        return;
    if (loop->epfd != -1)
        close(loop->epfd);
    free(loop->files);
    free(loop->events);
    free(loop->heap);
    free(loop->index);
    free(loop);
    errno = saved;
}

void tw_loop_set_before_sleep(tw_loop *loop, tw_loop_hook_fn *fn, void *data)
{
    loop->before_sleep = fn;
    loop->before_sleep_data = data;
}

void tw_loop_stop(tw_loop *loop)
{
    loop->stop = 1;
}

long long tw_loop_now_ms(void)
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

    if (mask & TW_LOOP_READABLE)
        bits |= EPOLLIN;
    if (mask & TW_LOOP_WRITABLE)
        bits |= EPOLLOUT;
    return bits; /* level-triggered: no EPOLLET */
}

/* Tell epoll that fd is now watched for `mask` (NONE: not at all), having
 * been watched for `old`.  The event carries the fd and its generation, so
 * that dispatch can spot an event for an fd forgotten (and maybe reused)
 * since the wait. */
static int epoll_update(tw_loop *loop, int fd, int old, int mask)
{
    struct epoll_event ev = {0};
    int op;

    if (mask == TW_LOOP_NONE)
        op = EPOLL_CTL_DEL;
    else if (old == TW_LOOP_NONE)
        op = EPOLL_CTL_ADD;
    else
        op = EPOLL_CTL_MOD;
    ev.events = epoll_bits(mask);
    ev.data.u64 = ((uint64_t)loop->files[fd].gen << 32) | (uint32_t)fd;
    return epoll_ctl(loop->epfd, op, fd, &ev);
}

int tw_loop_add_fd(tw_loop *loop, int fd, int mask, tw_loop_file_fn *fn,
                   void *data)
{
    struct tw_loop_file *f;
    int both = TW_LOOP_READABLE | TW_LOOP_WRITABLE;

    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (fd >= loop->setsize) {
        errno = ERANGE;
        return -1;
    }
    if (fn == NULL || mask == TW_LOOP_NONE || (mask & ~both) != 0) {
        errno = EINVAL;
        return -1;
    }
    f = &loop->files[fd];
    /* Only a new bit needs the kernel; the table changes after it agrees. */
    if ((f->mask | mask) != f->mask &&
        epoll_update(loop, fd, f->mask, f->mask | mask) == -1)
        return -1;
    f->mask |= mask;
    if (mask & TW_LOOP_READABLE)
        f->rfn = fn;
    if (mask & TW_LOOP_WRITABLE)
        f->wfn = fn;
    f->data = data;
    return 0;
}

void tw_loop_del_fd(tw_loop *loop, int fd, int mask)
{
    struct tw_loop_file *f;
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
    f->mask = left;
    if (!(left & TW_LOOP_READABLE))
        f->rfn = NULL;
    if (!(left & TW_LOOP_WRITABLE))
        f->wfn = NULL;
    if (left == TW_LOOP_NONE) {
        f->data = NULL;
        f->gen++;
    }
}

int tw_loop_fd_mask(const tw_loop *loop, int fd)
{
    if (fd < 0 || fd >= loop->setsize)
        return TW_LOOP_NONE;
    return loop->files[fd].mask;
}

/* ------------------------------------------------------------ timer index */

/*
 * The heap moves timers around, so tw_loop_del_timer needs to find where a
 * timer sits by its id.  A small open-addressing hash (linear probing,
 * Fibonacci hashing of the id, kept at most half full, deletion by backward
 * shift so there are no tombstones) maps id -> heap slot; every move in the
 * heap updates it.  Lookups are O(1) expected, so add and delete stay
 * O(log n).  It grows with the heap and is not shrunk: its size is the
 * peak number of timers, which is bounded by the connections.
 */

static size_t index_home(const tw_loop *loop, long long id)
{
    /* 2^64 / golden ratio: the high half of the product is well mixed. */
    uint64_t h = (uint64_t)id * UINT64_C(0x9E3779B97F4A7C15);

    return (size_t)(h >> 32) & (loop->index_cap - 1);
}

/* The slot holding id, or index_cap when absent. */
static size_t index_find(const tw_loop *loop, long long id)
{
    size_t i;

    if (loop->index_cap == 0 || id <= 0)
        return loop->index_cap;
    for (i = index_home(loop, id); loop->index[i].id != 0;
         i = (i + 1) & (loop->index_cap - 1)) {
        if (loop->index[i].id == id)
            return i;
    }
    return loop->index_cap;
}

/* Insert an id known to be absent; the caller made room beforehand. */
static void index_insert(tw_loop *loop, long long id, size_t pos)
{
    size_t i = index_home(loop, id);

    while (loop->index[i].id != 0)
        i = (i + 1) & (loop->index_cap - 1);
    loop->index[i].id = id;
    loop->index[i].pos = pos;
}

static void index_remove(tw_loop *loop, size_t hole)
{
    size_t mask = loop->index_cap - 1, i = hole;

    /* Pull back every later entry of the run whose home is not between the
     * hole and itself, so that no lookup stops early at the hole. */
    for (;;) {
        size_t home;

        i = (i + 1) & mask;
        if (loop->index[i].id == 0)
            break;
        home = index_home(loop, loop->index[i].id);
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            loop->index[hole] = loop->index[i];
            hole = i;
        }
    }
    loop->index[hole].id = 0;
}

/* Room for `count` timers in both the heap and the index. */
static int timers_reserve(tw_loop *loop, size_t count)
{
    if (count > loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 16;
        struct tw_loop_timer *heap;

        heap = loop_reallocarray(loop->heap, cap, sizeof(*heap));
        if (heap == NULL)
            return -1;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    if (count * 2 > loop->index_cap) {
        size_t cap = loop->index_cap ? loop->index_cap * 2 : 32;
        struct tw_loop_slot *old = loop->index;
        size_t old_cap = loop->index_cap, i;

        if (cap > SIZE_MAX / sizeof(*old)) {
            errno = ENOMEM;
            return -1;
        }
        loop->index = loop_calloc(cap, sizeof(*old));
        if (loop->index == NULL) {
            loop->index = old;
            return -1;
        }
        loop->index_cap = cap;
        for (i = 0; i < old_cap; i++) {
            if (old[i].id != 0)
                index_insert(loop, old[i].id, old[i].pos);
        }
        free(old);
    }
    return 0;
}

/* ------------------------------------------------------------ timer heap */

static int timer_before(const struct tw_loop_timer *a,
                        const struct tw_loop_timer *b)
{
    return a->when < b->when || (a->when == b->when && a->id < b->id);
}

/* Put t at heap slot pos and tell the index. */
static void heap_place(tw_loop *loop, size_t pos, const struct tw_loop_timer *t)
{
    loop->heap[pos] = *t;
    loop->index[index_find(loop, t->id)].pos = pos;
}

/* Restore the heap order around slot pos, whose timer may be out of place
 * in either direction. */
static void heap_fix(tw_loop *loop, size_t pos)
{
    struct tw_loop_timer t = loop->heap[pos];

    while (pos > 0 && timer_before(&t, &loop->heap[(pos - 1) / 2])) {
        heap_place(loop, pos, &loop->heap[(pos - 1) / 2]);
        pos = (pos - 1) / 2;
    }
    for (;;) {
        size_t child = 2 * pos + 1;

        if (child >= loop->nheap)
            break;
        if (child + 1 < loop->nheap &&
            timer_before(&loop->heap[child + 1], &loop->heap[child]))
            child++;
        if (!timer_before(&loop->heap[child], &t))
            break;
        heap_place(loop, pos, &loop->heap[child]);
        pos = child;
    }
    heap_place(loop, pos, &t);
}

/* Remove the timer at heap slot pos, whose index slot is `slot`. */
static void heap_remove(tw_loop *loop, size_t pos, size_t slot)
{
    index_remove(loop, slot);
    loop->nheap--;
    if (pos == loop->nheap)
        return;
    loop->heap[pos] = loop->heap[loop->nheap];
    heap_fix(loop, pos);
}

/* now + ms, saturating instead of overflowing. */
static long long deadline(long long now, long long ms)
{
    return ms > LLONG_MAX - now ? LLONG_MAX : now + ms;
}

long long tw_loop_add_timer(tw_loop *loop, long long ms, tw_loop_timer_fn *fn,
                            void *data)
{
    struct tw_loop_timer t;

    if (fn == NULL || ms < 0) {
        errno = EINVAL;
        return -1;
    }
    if (timers_reserve(loop, loop->nheap + 1) == -1)
        return -1;
    t.when = deadline(tw_loop_now_ms(), ms);
    t.id = loop->next_id++;
    t.fn = fn;
    t.data = data;
    index_insert(loop, t.id, loop->nheap);
    loop->heap[loop->nheap++] = t;
    heap_fix(loop, loop->nheap - 1);
    return t.id;
}

int tw_loop_del_timer(tw_loop *loop, long long id)
{
    size_t slot = index_find(loop, id);

    if (slot == loop->index_cap)
        return -1;
    heap_remove(loop, loop->index[slot].pos, slot);
    return 0;
}

#ifdef TW_LOOP_DEBUG
/* 0 when the heap is ordered and the index agrees with it, else -1.  O(n). */
int tw__loop_check(const tw_loop *loop);

int tw__loop_check(const tw_loop *loop)
{
    size_t i, used = 0;

    for (i = 0; i < loop->nheap; i++) {
        size_t slot = index_find(loop, loop->heap[i].id);

        if (i > 0 && timer_before(&loop->heap[i], &loop->heap[(i - 1) / 2]))
            return -1;
        if (slot == loop->index_cap || loop->index[slot].pos != i)
            return -1;
        if (loop->heap[i].id <= 0 || loop->heap[i].id >= loop->next_id)
            return -1;
    }
    for (i = 0; i < loop->index_cap; i++)
        used += loop->index[i].id != 0;
    return used == loop->nheap ? 0 : -1;
}
#endif

/* ------------------------------------------------------------ dispatch */

/* Run the timers due now.  Timers added meanwhile (ids above last_id) and
 * timers re-armed meanwhile (deadline pushed past `now`) wait for the next
 * iteration: both sort after every timer that was due when we started,
 * so stopping at the first of them skips nobody, and a handler that keeps
 * asking for 0 ms cannot keep the loop from returning. */
static int process_timers(tw_loop *loop)
{
    long long now = tw_loop_now_ms(), last_id = loop->next_id - 1;
    int fired = 0;

    while (loop->nheap > 0) {
        struct tw_loop_timer t = loop->heap[0];
        long long ms;
        size_t slot;

        if (t.when > now || t.id > last_id)
            break;
        ms = t.fn(loop, t.id, t.data);
        fired++;
        /* The handler may have deleted this timer (or others): find it
         * again rather than assuming it is still at the top. */
        slot = index_find(loop, t.id);
        if (slot == loop->index_cap)
            continue;
        if (ms < 0) { /* TW_LOOP_NOMORE, or any other negative */
            heap_remove(loop, loop->index[slot].pos, slot);
            continue;
        }
        t.when = deadline(tw_loop_now_ms(), ms);
        if (t.when <= now)
            t.when = now + 1; /* 0 ms means the next millisecond tick */
        loop->heap[loop->index[slot].pos].when = t.when;
        heap_fix(loop, loop->index[slot].pos);
    }
    return fired;
}

/* How long epoll_wait may sleep: until the nearest timer, but no longer
 * than the caller allows (-1: no limit). */
static int wait_ms(const tw_loop *loop, int timeout_ms)
{
    long long ms;

    if (loop->nheap == 0)
        return timeout_ms < 0 ? -1 : timeout_ms;
    ms = loop->heap[0].when - tw_loop_now_ms();
    if (ms < 0)
        ms = 0;
    if (timeout_ms >= 0 && ms > timeout_ms)
        ms = timeout_ms;
    return ms > INT_MAX ? INT_MAX : (int)ms; /* epoll takes an int */
}

/* Call the handlers of one ready fd.  1 if any handler ran. */
static int dispatch_fd(tw_loop *loop, const struct epoll_event *ev)
{
    int fd = (int)(uint32_t)ev->data.u64;
    uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
    struct tw_loop_file *f = &loop->files[fd];
    int fired = 0, called = 0;

    /* Forgotten by an earlier handler of this batch (and maybe registered
     * again for a new file with the same number): the event is stale. */
    if (f->gen != gen)
        return 0;
    if (ev->events & EPOLLIN)
        fired |= TW_LOOP_READABLE;
    if (ev->events & EPOLLOUT)
        fired |= TW_LOOP_WRITABLE;
    /* An error or hang-up goes to whichever handlers are registered; their
     * read() or write() then reports it. */
    if (ev->events & (EPOLLERR | EPOLLHUP))
        fired |= TW_LOOP_READABLE | TW_LOOP_WRITABLE;

    if (f->mask & fired & TW_LOOP_READABLE) {
        int mask = TW_LOOP_READABLE;

        /* One function for both directions is called once, with both bits
         * (ae does the same), rather than twice in a row. */
        if ((f->mask & fired & TW_LOOP_WRITABLE) && f->wfn == f->rfn)
            mask |= TW_LOOP_WRITABLE;
        f->rfn(loop, fd, f->data, mask);
        called = 1;
        fired &= ~mask;
    }
    /* Re-check: the read handler may have dropped the write side, or the
     * whole fd. */
    if (f->gen == gen && (f->mask & fired & TW_LOOP_WRITABLE)) {
        f->wfn(loop, fd, f->data, TW_LOOP_WRITABLE);
        called = 1;
    }
    return called;
}

int tw_loop_process(tw_loop *loop, int timeout_ms)
{
    int n, i, handled = 0;

    if (loop->before_sleep != NULL)
        loop->before_sleep(loop, loop->before_sleep_data);
    n = epoll_wait(loop->epfd, loop->events, loop->setsize,
                   wait_ms(loop, timeout_ms));
    if (n == -1) {
        /* A signal is no error; anything else is a broken loop (bad epfd),
         * reported as -1 so that tw_loop_run does not spin on it. */
        if (errno != EINTR)
            return -1;
        n = 0;
    }
    for (i = 0; i < n; i++)
        handled += dispatch_fd(loop, &loop->events[i]);
    return handled + process_timers(loop);
}

void tw_loop_run(tw_loop *loop)
{
    loop->stop = 0;
    while (!loop->stop) {
        if (tw_loop_process(loop, -1) == -1)
            break;
    }
}
