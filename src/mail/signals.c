/*
 * signals.c - stopping cleanly, waiting, and log lines.
 *
 * SIGTERM and SIGINT only set a flag: sync looks at it between two mails,
 * so a mail is never cut in half.  A second signal of the same kind falls
 * back to the default action, for an operator who really means it.
 */
#include "mail.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

volatile sig_atomic_t mail_stop = 0;

static void on_stop(int sig)
{
    mail_stop = sig;
    signal(sig, SIG_DFL);
}

int mail_signals_install(void)
{
    struct sigaction sa;

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
    struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};

    while (!mail_stop && nanosleep(&left, &left) < 0 && errno == EINTR)
        ;
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

void mail_log(const char *fmt, ...)
{
    char when[32];
    va_list ap;

    mail_rfc3339(time(NULL), when);
    fprintf(stderr, "%s mail-server: ", when);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
