/*
 * errors.c - the error pattern: a class to branch on, a reason for refused
 * certificates, and a sentence for people.
 */
#include "tw_internal.h"

#include <stdio.h>

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
