/*
 * pg_thread.c - a thread of its own for a PostgreSQL connection, that
 * waits on its socket and stops when told (an eventfd): the revocations'
 * listener and the ticket keys' rotator.
 *
 * Owns: the eventfd and the thread.
 */
#include "pg.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

int pg_thread_init(pg_thread *t, tw_err *err)
{
    t->running = 0;
    if ((t->wake = eventfd(0, EFD_CLOEXEC)) < 0)
        return twu_err(err, TW_ERR_INTERNAL, "eventfd: %s", strerror(errno));
    return 0;
}

int pg_thread_start(pg_thread *t, void *(*fn)(void *), void *arg,
                    const char *what, tw_err *err)
{
    int rc = pthread_create(&t->thread, NULL, fn, arg);

    if (rc != 0)
        return twu_err(err, TW_ERR_INTERNAL, "cannot start the %s thread: %s",
                       what, strerror(rc));
    t->running = 1;
    return 0;
}

int pg_thread_wait(pg_thread *t, int fd, int ms)
{
    struct pollfd p[2] = {{.fd = t->wake, .events = POLLIN},
                          {.fd = fd, .events = POLLIN}};

    if (poll(p, 2, ms) < 0 && errno != EINTR)
        return 1;
    return (p[0].revents & POLLIN) != 0;
}

void pg_thread_stop(pg_thread *t)
{
    uint64_t one = 1;

    if (t->running) {
        if (write(t->wake, &one, sizeof(one)) < 0)
            (void)0; /* an eventfd write fails only on overflow */
        pthread_join(t->thread, NULL);
        t->running = 0;
    }
    if (t->wake >= 0)
        close(t->wake);
    t->wake = -1;
}
