/*
 * errors.c - the error pattern: a class to branch on, a reason for refused
 * certificates, and a sentence for people.
 */
#include "tw_internal.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void tw_err_clear(tw_err *err)
{
    if (err == NULL)
        return;
    err->cls = TW_ERR_NONE;
    err->reason = TW_REASON_NONE;
    err->msg[0] = '\0';
}

const char *tw_error_class_name(enum tw_error_class cls)
{
    switch (cls) {
    case TW_ERR_NONE: return "none";
    case TW_ERR_IO: return "io";
    case TW_ERR_CLOSED: return "closed";
    case TW_ERR_BLOCKED: return "blocked";
    case TW_ERR_PROTOCOL: return "protocol";
    case TW_ERR_PEER_REJECTED: return "peer_rejected";
    case TW_ERR_USAGE: return "usage";
    case TW_ERR_INPUT: return "input";
    case TW_ERR_INTERNAL: return "internal";
    case TW_ERR_REJECTED_BY_PEER: return "rejected_by_peer";
    }
    return "unknown";
}

const char *tw_reason_name(enum tw_reason reason)
{
    switch (reason) {
    case TW_REASON_NONE: return "none";
    case TW_REASON_NO_CERTIFICATE: return "no_certificate";
    case TW_REASON_UNKNOWN_CA: return "unknown_ca";
    case TW_REASON_EXPIRED: return "expired";
    case TW_REASON_NOT_YET_VALID: return "not_yet_valid";
    case TW_REASON_REVOKED: return "revoked";
    case TW_REASON_WRONG_USAGE: return "wrong_usage";
    case TW_REASON_NAME_MISMATCH: return "name_mismatch";
    case TW_REASON_POLICY_DENIED: return "policy_denied";
    case TW_REASON_BAD_CERTIFICATE: return "bad_certificate";
    case TW_REASON_PROTOCOL: return "protocol";
    case TW_REASON_CRL_UNUSABLE: return "crl_unusable";
    }
    return "unknown";
}

TW_PRINTF(4, 0)
static void vset(tw_err *err, enum tw_error_class cls, enum tw_reason reason,
                 const char *fmt, va_list ap)
{
    err->cls = cls;
    err->reason = reason;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int tw__err(tw_err *err, enum tw_error_class cls, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return -1;
    va_start(ap, fmt);
    vset(err, cls, TW_REASON_NONE, fmt, ap);
    va_end(ap);
    return -1;
}

int tw__err_reason(tw_err *err, enum tw_error_class cls, enum tw_reason reason,
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

int tw__err_ssl(tw_err *err, enum tw_error_class cls, const char *fmt, ...)
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

int tw__err_nomem(tw_err *err)
{
    return tw__err(err, TW_ERR_INTERNAL, "out of memory");
}

void tw__hex(const unsigned char *in, size_t len, char *out, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}
