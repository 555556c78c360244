/*
 * util.c - small helpers of twoway-ca: messages, option values,
 * passphrases, text forms.
 */
#include "ca.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>


void ca_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "twoway-ca %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int ca_fail_err(const char *cmd, const tw_err *err)
{
    ca_fail(cmd, "%s", err->msg[0] ? err->msg : "failed");
    if (err->cls == TW_ERR_USAGE)
        return CA_EXIT_USAGE;
    if (err->cls == TW_ERR_BLOCKED) /* the CA index is busy: retry */
        return CA_EXIT_BUSY;
    return CA_EXIT_FAIL;
}

int ca_parse_days(const char *cmd, const char *text, int max)
{
    long v;

    if (twu_parse_long(text, 1, max, &v) < 0) {
        ca_fail(cmd, "--days '%s' is not a number of days from 1 to %d", text,
                max);
        return -1;
    }
    return (int)v;
}

long long ca_parse_duration(const char *cmd, const char *option,
                            const char *text, long long min_s, long long max_s)
{
    long long v;

    if (twu_parse_duration(text, min_s, max_s, &v) < 0) {
        ca_fail(cmd, "%s '%s' is not a duration from %llds to %lldd: give "
                "a number and one unit, s, m, h or d (90s, 15m, 24h, 30d)",
                option, text, min_s, max_s / 86400);
        return -1;
    }
    return v;
}

char *ca_passphrase_read(const char *cmd, const char *path)
{
    tw_err err;
    char *pass = twu_read_passphrase_file(path, "--passphrase-file", &err);

    if (pass == NULL)
        ca_fail(cmd, "%s", err.msg);
    return pass;
}

char *ca_passphrase_ask(const char *prompt)
{
    struct termios old, quiet;
    char buf[TWU_PASSPHRASE_MAX];
    char *pass = NULL;
    FILE *tty;
    int fd;

    if (!isatty(STDIN_FILENO) || (fd = open("/dev/tty", O_RDWR | O_CLOEXEC)) < 0)
        return NULL;
    if ((tty = fdopen(fd, "r+")) == NULL) {
        close(fd);
        return NULL;
    }
    if (tcgetattr(fd, &old) != 0) {
        fclose(tty);
        return NULL;
    }
    quiet = old;
    quiet.c_lflag &= (tcflag_t)~ECHO;
    fputs(prompt, tty);
    fflush(tty);
    tcsetattr(fd, TCSAFLUSH, &quiet);
    if (fgets(buf, sizeof(buf), tty) != NULL) {
        buf[strcspn(buf, "\r\n")] = '\0';
        pass = twu_strdup(buf);
    }
    tcsetattr(fd, TCSAFLUSH, &old);
    fputc('\n', tty);
    fclose(tty);
    OPENSSL_cleanse(buf, sizeof(buf));
    return pass;
}

void ca_passphrase_free(char *pass)
{
    twu_free_passphrase(pass);
}

char *ca_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = twu_malloc(n);

    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void ca_time_text(time_t t, char *buf, size_t len)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

const char *ca_purpose_text(int p)
{
    if (p & TW_PURPOSE_CA)
        return "ca";
    if ((p & TW_PURPOSE_SERVER) && (p & TW_PURPOSE_CLIENT))
        return "server+client";
    if (p & TW_PURPOSE_SERVER)
        return "server";
    if (p & TW_PURPOSE_CLIENT)
        return "client";
    return "none";
}

char *ca_sans_text(const tw_identity *id)
{
    static const char *const prefix[TW_SAN_TYPES] = {"DNS", "IP", "URI",
                                                     "email"};
    size_t cap = 1, used = 0;
    char *out;

    for (int t = 0; t < TW_SAN_TYPES; t++)
        for (size_t i = 0; i < tw_identity_san_count(id, t); i++)
            cap += strlen(tw_identity_san(id, t, i)) + 8;
    if ((out = twu_malloc(cap)) == NULL)
        return NULL;
    out[0] = '\0';
    for (int t = 0; t < TW_SAN_TYPES; t++)
        for (size_t i = 0; i < tw_identity_san_count(id, t); i++)
            used += (size_t)snprintf(out + used, cap - used, "%s%s:%s",
                                     used ? "," : "", prefix[t],
                                     tw_identity_san(id, t, i));
    return out;
}

int ca_bad_option(const char *cmd, int c, char **argv)
{
    extern int optind;
    const char *arg = argv[optind - 1];

    if (c == ':')
        ca_fail(cmd, "option %s needs a value (see `twoway-ca %s --help`)",
                arg, cmd);
    else
        ca_fail(cmd, "unknown option %s (see `twoway-ca %s --help`)", arg, cmd);
    return CA_EXIT_USAGE;
}

int ca_help(const char *usage)
{
    fputs(usage, stdout);
    return CA_EXIT_OK;
}

int ca_mkdirs(const char *path, unsigned mode)
{
    char *copy = twu_strdup(path);
    int rc = 0;

    if (copy == NULL) {
        errno = ENOMEM;
        return -1;
    }
    for (char *p = copy + 1; rc == 0; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;

        *p = '\0';
        if (mkdir(copy, (mode_t)mode) != 0 && errno != EEXIST)
            rc = -1;
        *p = saved;
        if (saved == '\0')
            break;
    }
    twu_free(copy);
    return rc;
}
