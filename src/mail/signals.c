/*
 * signals.c - stopping cleanly, waiting, and log lines.
 *
 * SIGTERM and SIGINT only set a flag: sync looks at it between two mails,
 * so a mail is never cut in half.  A second signal of the same kind falls
 * back to the default action, for an operator who really means it.
 */
#include "mail.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

volatile sig_atomic_t mail_stop = 0;

/* The handler also writes to a pipe that sleeps wait on: a signal that
 * lands just before a sleep begins still ends it (the flag alone would be
 * checked too early and the sleep would run its whole length). */
static int stop_pipe[2] = {-1, -1};

static void on_stop(int sig)
{
    int saved = errno;

    mail_stop = sig;
    if (stop_pipe[1] >= 0 && write(stop_pipe[1], "x", 1) < 0) {
        /* full or closed: the flag still says it */
    }
    signal(sig, SIG_DFL);
    errno = saved;
}

int mail_signals_install(void)
{
    struct sigaction sa;

    if (stop_pipe[0] < 0) {
        if (pipe(stop_pipe) < 0)
            return -1;
        for (int i = 0; i < 2; i++) {
            fcntl(stop_pipe[i], F_SETFL, O_NONBLOCK);
            fcntl(stop_pipe[i], F_SETFD, FD_CLOEXEC);
        }
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a sleep ends at once */
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
        return -1;
    return 0;
}

int mail_sleep_ms(long ms)
{
    struct timespec start, now;

    clock_gettime(CLOCK_MONOTONIC, &start);
    while (!mail_stop) {
        struct pollfd p = {.fd = stop_pipe[0], .events = POLLIN};
        long done;

        clock_gettime(CLOCK_MONOTONIC, &now);
        done = (now.tv_sec - start.tv_sec) * 1000L +
               (now.tv_nsec - start.tv_nsec) / 1000000L;
        if (done >= ms)
            break;
        if (stop_pipe[0] < 0) {
            struct timespec left = {(ms - done) / 1000,
                                    ((ms - done) % 1000) * 1000000L};

            if (nanosleep(&left, NULL) == 0)
                break;
            continue;
        }
        if (poll(&p, 1, (int)(ms - done > 1000000 ? 1000000 : ms - done)) > 0)
            break; /* a stop signal arrived */
    }
    return mail_stop != 0;
}

long mail_backoff_ms(int attempt)
{
    long ms = 1000;

    for (int i = 1; i < attempt && ms < 30000; i++)
        ms *= 2;
    return ms < 30000 ? ms : 30000;
}

void mail_rfc3339(time_t t, char buf[32])
{
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ",
                                              &tm) == 0)
        snprintf(buf, 32, "%lld", (long long)t);
}

int mail_log_level;  /* --log-level: TWU_LOG_*, 0 for info */
int mail_log_json;   /* --log-format json */

void mail_log(const char *fmt, ...)
{
    char text[2048], line[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (twu_log_line(line, sizeof(line), "mail-server", mail_log_json,
                     mail_log_level, text))
        fputs(line, stderr); /* one call: one line beside the renewal's */
}
