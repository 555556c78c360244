/*
 * loop_helpers.h - what the event loop's tests share (loop_fd_test.c,
 * loop_timer_test.c): loop.c's debug hooks, the bound on every wait, and a
 * log of timer calls.
 *
 * Header-only (static inline): each test is its own executable, built with
 * src/invoice/loop.c and HTTPD_LOOP_DEBUG.  It includes cmocka itself.
 */
#ifndef HTTPD_LOOP_HELPERS_H
#define HTTPD_LOOP_HELPERS_H

#include "loop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

/* Built with HTTPD_LOOP_DEBUG: loop.c's test hooks. */
void httpd__loop_alloc_fail_after(long n);
int httpd__loop_check(const httpd_loop *loop);

#define SETSIZE 1024
#define WAIT_MS 5000 /* upper bound on any wait; never reached when passing */

/* ------------------------------------------------------------ timer log */

/* What the timer handlers saw, in order. */
static struct {
    int n;
    int tag[64];
    long long at[64];
    long long id[64];
} tlog;

static inline void tlog_reset(void)
{
    memset(&tlog, 0, sizeof(tlog));
}

static inline void tlog_add(int tag, long long id)
{
    assert_true(tlog.n < 64);
    tlog.tag[tlog.n] = tag;
    tlog.at[tlog.n] = httpd_loop_now_ms();
    tlog.id[tlog.n] = id;
    tlog.n++;
}

/* Logs its tag (data) once. */
static inline long long on_timer_once(httpd_loop *loop, long long id, void *data)
{
    (void)loop;
    tlog_add((int)(intptr_t)data, id);
    return HTTPD_LOOP_NOMORE;
}

#endif /* HTTPD_LOOP_HELPERS_H */
