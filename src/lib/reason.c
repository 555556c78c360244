/*
 * reason.c - from OpenSSL's verification codes to reasons people act on.
 *
 * One table maps X509_V_ERR_* codes to reason classes, and one function
 * writes the sentence: which check failed, on which certificate (subject,
 * issuer, serial), and what to do.  The server's refusal log, the client's
 * error, `twoway-ca verify` and mail-server (whose TLS libcurl drives) all
 * speak through here, so they use the same words.  The certificate comes
 * as an X509 from inside the library (tw__reject) or as a tw_identity
 * through the public call (tw_explain_refusal); both are reduced to the
 * few facts the sentence needs.
 */
#include "tw_internal.h"

#include <openssl/x509_vfy.h>

#include <stdio.h>
#include <string.h>

enum tw_reason tw_reason_from_verify_error(int e)
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

enum tw_reason tw__reason_from_x509(int e)
{
    return tw_reason_from_verify_error(e);
}

/* What the sentence says about the refused certificate. */
struct facts {
    int present;                        /* 0: no certificate at all */
    const char *subject, *issuer;       /* "?" when they could not be read */
    char serial[64];
    char not_before[48], not_after[48]; /* "2031-01-02T03:04:05Z" */
};

#define UNREADABLE_DATE "an unreadable date"

static void format_asn1_time(const ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        snprintf(buf, len, UNREADABLE_DATE);
    else
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* tw_identity keeps 0 for a date it could not read. */
static void format_time(time_t t, char *buf, size_t len)
{
    struct tm tm;

    if (t == 0 || gmtime_r(&t, &tm) == NULL)
        snprintf(buf, len, UNREADABLE_DATE);
    else
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int explain(tw_err *err, enum tw_reason reason, const struct facts *f,
                   const char *whose, const char *detail)
{
    char who[1024];

    if (whose == NULL)
        whose = "the";
    if (f->present)
        snprintf(who, sizeof(who), "%s certificate %s (issuer %s, serial %s)",
                 whose, f->subject, f->issuer, f->serial);
    else
        snprintf(who, sizeof(who), "%s certificate", whose);
    switch (reason) {
    case TW_REASON_NO_CERTIFICATE:
        return twu_err_reason(err, TW_ERR_PEER_REJECTED, reason,
                              "no certificate was presented: the peer must "
                              "send one (give it a certificate and key "
                              "issued by the CA)");
    case TW_REASON_UNKNOWN_CA:
        return twu_err_reason(err, TW_ERR_PEER_REJECTED, reason,
                              "%s was not issued by a trusted CA (issuer %s "
                              "is not in the CA file): issue it from the "
                              "trusted CA, or trust its issuer", who,
                              f->present ? f->issuer : "?");
    case TW_REASON_EXPIRED:
        return twu_err_reason(err, TW_ERR_PEER_REJECTED, reason,
                              "%s expired on %s: issue a new one", who,
                              f->not_after);
    case TW_REASON_NOT_YET_VALID:
        return twu_err_reason(err, TW_ERR_PEER_REJECTED, reason,
                              "%s is not valid before %s: check both "
                              "machines' clocks", who, f->not_before);
    case TW_REASON_REVOKED:
        return twu_err_reason(err, TW_ERR_PEER_REJECTED, reason,
                              "%s was revoked by its CA: issue a new one",
                              who);
    case TW_REASON_WRONG_USAGE:
        return twu_err_reason(err, TW_ERR_PEER_REJECTED, reason,
                              "%s may not be used for this (%s): issue it "
                              "with the right purpose (--server or --client)",
                              who, detail ? detail : "wrong key usage");
    case TW_REASON_NAME_MISMATCH:
        return twu_err_reason(err, TW_ERR_PEER_REJECTED, reason,
                              "%s does not name the host %s: issue it with "
                              "--dns (or --ip) for that name, or connect by "
                              "a name it holds", who,
                              detail ? detail : "asked for");
    case TW_REASON_CRL_UNUSABLE:
        return twu_err_reason(err, TW_ERR_PEER_REJECTED, reason,
                              "cannot check %s against the CRL (%s): publish "
                              "a fresh CRL with `twoway-ca crl`", who,
                              detail ? detail : "CRL unusable");
    default:
        return twu_err_reason(err, TW_ERR_PEER_REJECTED, reason,
                              "%s was refused (%s): re-issue it with "
                              "twoway-ca (keys of at least 112 bits, SHA-256 "
                              "signatures)", who,
                              detail ? detail : "bad certificate");
    }
}

int tw_explain_refusal(tw_err *err, enum tw_reason reason,
                       const tw_identity *cert, const char *whose,
                       const char *detail)
{
    struct facts f = {.present = cert != NULL, .subject = "?",
                      .issuer = "?", .serial = "?"};

    if (err == NULL)
        return -1;
    if (cert != NULL) {
        f.subject = tw_identity_subject(cert);
        f.issuer = tw_identity_issuer(cert);
        snprintf(f.serial, sizeof(f.serial), "%s", tw_identity_serial(cert));
        format_time(tw_identity_not_before(cert), f.not_before,
                    sizeof(f.not_before));
        format_time(tw_identity_not_after(cert), f.not_after,
                    sizeof(f.not_after));
    } else {
        snprintf(f.not_before, sizeof(f.not_before), UNREADABLE_DATE);
        snprintf(f.not_after, sizeof(f.not_after), UNREADABLE_DATE);
    }
    return explain(err, reason, &f, whose, detail);
}

/* Inside the library the certificate is an X509: read just what the
 * sentence needs rather than parse a whole identity on every refusal. */
int tw__reject(tw_err *err, enum tw_reason reason, X509 *cert,
               const char *role, const char *detail)
{
    struct facts f = {.present = cert != NULL, .subject = "?",
                      .issuer = "?", .serial = "?"};
    char *subject = NULL, *issuer = NULL, *hex = NULL;
    BIGNUM *bn = NULL;

    if (err == NULL)
        return -1;
    if (cert != NULL) {
        subject = tw__name_text(X509_get_subject_name(cert));
        issuer = tw__name_text(X509_get_issuer_name(cert));
        bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
        hex = bn ? BN_bn2hex(bn) : NULL;
        if (subject != NULL)
            f.subject = subject;
        if (issuer != NULL)
            f.issuer = issuer;
        if (hex != NULL)
            snprintf(f.serial, sizeof(f.serial), "%s", hex);
    }
    format_asn1_time(cert ? X509_get0_notBefore(cert) : NULL, f.not_before,
                     sizeof(f.not_before));
    format_asn1_time(cert ? X509_get0_notAfter(cert) : NULL, f.not_after,
                     sizeof(f.not_after));
    explain(err, reason, &f, role, detail);
    OPENSSL_free(hex);
    BN_free(bn);
    twu_free(subject);
    twu_free(issuer);
    return -1;
}
