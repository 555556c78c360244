/*
 * reason.c - from OpenSSL's verification codes to reasons people act on.
 *
 * One table maps X509_V_ERR_* codes to reason classes, and one function
 * writes the sentence: which check failed, on which certificate (subject,
 * issuer, serial), and what to do.  The server's refusal log, the client's
 * error and `twoway-ca verify` all speak through here, so they use the
 * same words.
 */
#include "tw_internal.h"

#include <openssl/x509_vfy.h>

#include <stdio.h>
#include <string.h>

enum tw_reason tw__reason_from_x509(int e)
{
    switch (e) {
    case X509_V_OK:
        return TW_REASON_NONE;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
        return TW_REASON_UNKNOWN_CA;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return TW_REASON_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return TW_REASON_NOT_YET_VALID;
    case X509_V_ERR_CERT_REVOKED:
        return TW_REASON_REVOKED;
    case X509_V_ERR_INVALID_PURPOSE:
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
    case X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE:
        return TW_REASON_WRONG_USAGE;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH:
        return TW_REASON_NAME_MISMATCH;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
        return TW_REASON_CRL_UNUSABLE;
    default:
        /* Weak keys and digests, bad signatures, malformed fields. */
        return TW_REASON_BAD_CERTIFICATE;
    }
}

static void format_time(const ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        snprintf(buf, len, "an unreadable date");
    else
        strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

int tw__reject(tw_err *err, enum tw_reason reason, X509 *cert,
               const char *role, const char *detail)
{
    char *subject = NULL, *issuer = NULL, serial[64] = "?", when[48];
    char who[1024];
    BIGNUM *bn;

    if (err == NULL)
        return -1;
    if (role == NULL)
        role = "the";
    if (cert != NULL) {
        char *hex;

        subject = tw__name_text(X509_get_subject_name(cert));
        issuer = tw__name_text(X509_get_issuer_name(cert));
        bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
        hex = bn ? BN_bn2hex(bn) : NULL;
        if (hex != NULL)
            snprintf(serial, sizeof(serial), "%s", hex);
        OPENSSL_free(hex);
        BN_free(bn);
        snprintf(who, sizeof(who), "%s certificate %s (issuer %s, serial %s)",
                 role, subject ? subject : "?", issuer ? issuer : "?", serial);
    } else {
        snprintf(who, sizeof(who), "%s certificate", role);
    }
    switch (reason) {
    case TW_REASON_NO_CERTIFICATE:
        tw__err_reason(err, TW_ERR_PEER_REJECTED, reason,
                       "no certificate was presented: the peer must send one "
                       "(give it a certificate and key issued by the CA)");
        break;
    case TW_REASON_UNKNOWN_CA:
        tw__err_reason(err, TW_ERR_PEER_REJECTED, reason,
                       "%s was not issued by a trusted CA (issuer %s is not "
                       "in the CA file): issue it from the trusted CA, or "
                       "trust its issuer", who, issuer ? issuer : "?");
        break;
    case TW_REASON_EXPIRED:
        format_time(cert ? X509_get0_notAfter(cert) : NULL, when, sizeof(when));
        tw__err_reason(err, TW_ERR_PEER_REJECTED, reason,
                       "%s expired on %s: issue a new one", who, when);
        break;
    case TW_REASON_NOT_YET_VALID:
        format_time(cert ? X509_get0_notBefore(cert) : NULL, when,
                    sizeof(when));
        tw__err_reason(err, TW_ERR_PEER_REJECTED, reason,
                       "%s is not valid before %s: check both machines' "
                       "clocks", who, when);
        break;
    case TW_REASON_REVOKED:
        tw__err_reason(err, TW_ERR_PEER_REJECTED, reason,
                       "%s was revoked by its CA: issue a new one", who);
        break;
    case TW_REASON_WRONG_USAGE:
        tw__err_reason(err, TW_ERR_PEER_REJECTED, reason,
                       "%s may not be used for this (%s): issue it with the "
                       "right purpose (--server or --client)", who,
                       detail ? detail : "wrong key usage");
        break;
    case TW_REASON_NAME_MISMATCH:
        tw__err_reason(err, TW_ERR_PEER_REJECTED, reason,
                       "%s does not name the host %s: issue it with --dns "
                       "(or --ip) for that name, or connect by a name it "
                       "holds", who, detail ? detail : "asked for");
        break;
    case TW_REASON_CRL_UNUSABLE:
        tw__err_reason(err, TW_ERR_PEER_REJECTED, reason,
                       "cannot check %s against the CRL (%s): publish a "
                       "fresh CRL with `twoway-ca crl`", who,
                       detail ? detail : "CRL unusable");
        break;
    default:
        tw__err_reason(err, TW_ERR_PEER_REJECTED, reason,
                       "%s was refused (%s): re-issue it with twoway-ca "
                       "(keys of at least 112 bits, SHA-256 signatures)",
                       who, detail ? detail : "bad certificate");
    }
    tw__free(subject);
    tw__free(issuer);
    return -1;
}
