/*
 * loop.h - the event loop of the server core (src/httpd), in the shape of
 * redis's ae.c: a handler table indexed by fd, epoll behind a few
 * functions, a few timers, and a before-sleep hook.  One loop per worker thread; a loop is not shared
 * between threads (except httpd_loop_stop, which is safe from any thread or a
 * signal handler... see below).
 */
#ifndef TW_HTTPD_LOOP_H
#define TW_HTTPD_LOOP_H

#define HTTPD_LOOP_NONE 0
#define HTTPD_LOOP_READABLE 1
#define HTTPD_LOOP_WRITABLE 2

#define HTTPD_LOOP_NOMORE (-1) /* a timer handler's "do not re-arm" */

typedef struct httpd_loop httpd_loop;

/* Called when fd is ready; `mask` says which of READABLE/WRITABLE fired. */
typedef void httpd_loop_file_fn(httpd_loop *loop, int fd, void *data, int mask);
/* Return milliseconds until the next call, or HTTPD_LOOP_NOMORE. */
typedef long long httpd_loop_timer_fn(httpd_loop *loop, long long id, void *data);
typedef void httpd_loop_hook_fn(httpd_loop *loop, void *data);

/* A loop for fds below `setsize`.  NULL on failure (errno set). */
httpd_loop *httpd_loop_new(int setsize);
void httpd_loop_free(httpd_loop *loop);

/* Watch fd for `mask` (added to what is already watched), calling `fn`
 * with `data`.  The read and write handlers of one fd may differ: the
 * handler given is stored for each bit of `mask`.  -1 (errno) on failure,
 * ERANGE when fd >= setsize. */
int httpd_loop_add_fd(httpd_loop *loop, int fd, int mask, httpd_loop_file_fn *fn,
                   void *data);
/* Stop watching fd for `mask`; with HTTPD_LOOP_READABLE|HTTPD_LOOP_WRITABLE the
 * fd is forgotten (call before close()). */
void httpd_loop_del_fd(httpd_loop *loop, int fd, int mask);
/* Forget fd, about to be closed, without telling epoll: close(2) takes it
 * out of the epoll set when no other descriptor shares its file (never
 * duplicated, no fork between its making and its close), one system call
 * fewer than httpd_loop_del_fd. */
void httpd_loop_forget_fd(httpd_loop *loop, int fd);
/* What fd is watched for. */
int httpd_loop_fd_mask(const httpd_loop *loop, int fd);

/* Call `fn` after `ms` milliseconds; returns the timer id (> 0) or -1.
 * Timers live in one list in firing order: made for a few timers (adding
 * and deleting walk the list), not one per connection. */
long long httpd_loop_add_timer(httpd_loop *loop, long long ms,
                               httpd_loop_timer_fn *fn, void *data);
/* Cancel a timer; 0, or -1 when there is no such timer. */
int httpd_loop_del_timer(httpd_loop *loop, long long id);

/* Called before each wait (e.g. to flush pending writes). */
void httpd_loop_set_before_sleep(httpd_loop *loop, httpd_loop_hook_fn *fn, void *data);

/* Run until httpd_loop_stop. */
void httpd_loop_run(httpd_loop *loop);
/* Make httpd_loop_run return after the current iteration.  Only from the
 * loop's own thread (other threads: write to an fd the loop watches). */
void httpd_loop_stop(httpd_loop *loop);
/* One iteration: wait at most `timeout_ms` (-1: until an event or the next
 * timer), run ready handlers and due timers.  Returns events handled. */
int httpd_loop_process(httpd_loop *loop, int timeout_ms);

/* Monotonic clock, milliseconds. */
long long httpd_loop_now_ms(void);

#endif
