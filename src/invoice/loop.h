/*
 * loop.h - the event loop of invoice-server, in the shape of redis's ae.c:
 * a handler table indexed by fd, epoll behind a few functions, timers, and
 * a before-sleep hook.  One loop per worker thread; a loop is not shared
 * between threads (except tw_loop_stop, which is safe from any thread or a
 * signal handler... see below).
 */
#ifndef TW_INVOICE_LOOP_H
#define TW_INVOICE_LOOP_H

#define TW_LOOP_NONE 0
#define TW_LOOP_READABLE 1
#define TW_LOOP_WRITABLE 2

#define TW_LOOP_NOMORE (-1) /* a timer handler's "do not re-arm" */

typedef struct tw_loop tw_loop;

/* Called when fd is ready; `mask` says which of READABLE/WRITABLE fired. */
typedef void tw_loop_file_fn(tw_loop *loop, int fd, void *data, int mask);
/* Return milliseconds until the next call, or TW_LOOP_NOMORE. */
typedef long long tw_loop_timer_fn(tw_loop *loop, long long id, void *data);
typedef void tw_loop_hook_fn(tw_loop *loop, void *data);

/* A loop for fds below `setsize`.  NULL on failure (errno set). */
tw_loop *tw_loop_new(int setsize);
void tw_loop_free(tw_loop *loop);

/* Watch fd for `mask` (added to what is already watched), calling `fn`
 * with `data`.  The read and write handlers of one fd may differ: the
 * handler given is stored for each bit of `mask`.  -1 (errno) on failure,
 * ERANGE when fd >= setsize. */
int tw_loop_add_fd(tw_loop *loop, int fd, int mask, tw_loop_file_fn *fn,
                   void *data);
/* Stop watching fd for `mask`; with TW_LOOP_READABLE|TW_LOOP_WRITABLE the
 * fd is forgotten (call before close()). */
void tw_loop_del_fd(tw_loop *loop, int fd, int mask);
/* What fd is watched for. */
int tw_loop_fd_mask(const tw_loop *loop, int fd);

/* Call `fn` after `ms` milliseconds; returns the timer id (> 0) or -1.
 * Timers live in a binary heap: adding and removing is O(log n), so one
 * timer per connection is fine at 10,000 connections. */
long long tw_loop_add_timer(tw_loop *loop, long long ms, tw_loop_timer_fn *fn,
                            void *data);
/* Cancel a timer; 0, or -1 when there is no such timer. */
int tw_loop_del_timer(tw_loop *loop, long long id);

/* Called before each wait (e.g. to flush pending writes). */
void tw_loop_set_before_sleep(tw_loop *loop, tw_loop_hook_fn *fn, void *data);

/* Run until tw_loop_stop. */
void tw_loop_run(tw_loop *loop);
/* Make tw_loop_run return after the current iteration.  Only from the
 * loop's own thread (other threads: write to an fd the loop watches). */
void tw_loop_stop(tw_loop *loop);
/* One iteration: wait at most `timeout_ms` (-1: until an event or the next
 * timer), run ready handlers and due timers.  Returns events handled. */
int tw_loop_process(tw_loop *loop, int timeout_ms);

/* Monotonic clock, milliseconds. */
long long tw_loop_now_ms(void);

#endif
