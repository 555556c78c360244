/*
 * err.c - filling a tw_err: the class to branch on, the reason of a refused
 * certificate, the sentence for people (and OpenSSL's newest error, where
 * it is what went wrong).  Every helper returns -1, so that callers can
 * `return twu_err(...)`.
 */
#include "util.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

TWU_PRINTF(4, 0)
static void vset(tw_err *err, enum tw_error_class cls, enum tw_reason reason,
                 const char *fmt, va_list ap)
{
    err->cls = cls;
    err->reason = reason;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int twu_err(tw_err *err, enum tw_error_class cls, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return -1;
    va_start(ap, fmt);
    vset(err, cls, TW_REASON_NONE, fmt, ap);
    va_end(ap);
    return -1;
}

int twu_err_reason(tw_err *err, enum tw_error_class cls, enum tw_reason reason,
                   const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return -1;
    va_start(ap, fmt);
    vset(err, cls, reason, fmt, ap);
    va_end(ap);
    return -1;
}

int twu_err_ssl(tw_err *err, enum tw_error_class cls, const char *fmt, ...)
{
    va_list ap;
    unsigned long code;
    size_t used;

    /* The newest queued error is the most specific one. */
    code = ERR_peek_last_error();
    if (err != NULL) {
        va_start(ap, fmt);
        vset(err, cls, TW_REASON_NONE, fmt, ap);
        va_end(ap);
        used = strlen(err->msg);
        if (code != 0 && used + 3 < sizeof(err->msg)) {
            const char *why = ERR_reason_error_string(code);
            snprintf(err->msg + used, sizeof(err->msg) - used, ": %s",
                     why != NULL ? why : "unknown OpenSSL error");
        }
    }
    ERR_clear_error();
    return -1;
}

int twu_err_nomem(tw_err *err)
{
    return twu_err(err, TW_ERR_INTERNAL, "out of memory");
}

