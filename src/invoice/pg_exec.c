/*
 * pg_exec.c - a statement with a deadline: what PQexec and PQexecPrepared
 * do, on a non-blocking connection, giving up when no answer came in time.
 *
 * The statement is sent (PQsendQuery / PQsendQueryPrepared), its bytes
 * flushed while the socket takes them, and its answer read as it arrives
 * (poll on PQsocket with the time left, PQconsumeInput, PQisBusy,
 * PQgetResult).  A server that is frozen (SIGSTOP, a hung host) answers
 * nothing and applies no statement_timeout; a blocking PQexec would then
 * wait until the kernel gives up, which on a Unix socket is never.
 *
 * Used by pg_writer.c and revocations.c.  Owns nothing: the connection is
 * the caller's.
 */
#include "pg.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>

/* Wait until `c`'s socket is readable (or writable, with `want_write`), or
 * `deadline` (pg_now_ms) passes: 1 ready, 0 too late, -1 poll failed. */
static int wait_socket(PGconn *c, int want_write, long long deadline)
{
    struct pollfd p = {.fd = PQsocket(c),
                       .events = POLLIN | (want_write ? POLLOUT : 0)};

    for (;;) {
        long long left = deadline - pg_now_ms();
        int n;

        if (left <= 0)
            return 0;
        n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* Send what is queued and read what arrives until a result can be taken
 * without blocking: 0, 1 when `deadline` passed first (or the wait itself
 * failed), -1 when the connection failed (PQerrorMessage says why). */
static int until_ready(PGconn *c, long long deadline)
{
    for (;;) {
        int unsent = PQflush(c);

        if (unsent < 0)
            return -1;
        if (unsent == 0 && !PQisBusy(c))
            return 0;
        if (wait_socket(c, unsent, deadline) <= 0)
            return 1;
        if (PQconsumeInput(c) != 1)
            return -1;
    }
}

/* The last result of the statement just sent, as PQexec gives it. */
static PGresult *await(PGconn *c, int timeout_ms, int *late)
{
    long long deadline = pg_now_ms() + timeout_ms;
    PGresult *last = NULL, *res;
    int rc;

    while ((rc = until_ready(c, deadline)) == 0 &&
           (res = PQgetResult(c)) != NULL) {
        PQclear(last);
        last = res;
    }
    *late = rc == 1;
    if (rc != 0) {
        PQclear(last);
        return NULL;
    }
    return last;
}

PGresult *pg_exec_command(PGconn *c, const char *sql, int timeout_ms,
                          int *late)
{
    *late = 0;
    return PQsendQuery(c, sql) == 1 ? await(c, timeout_ms, late) : NULL;
}

PGresult *pg_exec_prepared(PGconn *c, const char *name, int nparams,
                           const char *const *params, int timeout_ms,
                           int *late)
{
    *late = 0;
    return PQsendQueryPrepared(c, name, nparams, params, NULL, NULL, 0) == 1
               ? await(c, timeout_ms, late)
               : NULL;
}

PGresult *pg_exec_params(PGconn *c, const char *sql, int nparams,
                         const char *const *params, int timeout_ms, int *late)
{
    *late = 0;
    return PQsendQueryParams(c, sql, nparams, NULL, params, NULL, NULL, 0) == 1
               ? await(c, timeout_ms, late)
               : NULL;
}
