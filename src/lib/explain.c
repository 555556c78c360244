/*
 * explain.c - a TLS alert the peer sent us, explained.
 *
 * When the other side refuses our certificate it says so with one fatal
 * alert (RFC 8446 section 6.2; RFC 5246 section 7.2 for TLS 1.2) and
 * nothing else.  Only we know which certificate we sent, so only we can
 * turn "unknown_ca" into "it does not trust the CA that signed
 * client.pem (issuer /O=ZXC Inc.)".  libtwoway's connections and
 * mail-server (whose TLS libcurl drives) both explain alerts here.
 */
#include "tw_internal.h"

#include <openssl/ssl.h>

#include <stdio.h>
#include <time.h>

int tw_tls_alert_refuses_certificate(int alert)
{
    switch (alert) {
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED:
        return 1;
    default:
        return 0;
    }
}

/* Our certificate, as the sentences name it. */
struct ours {
    const char *name;    /* the file, or "our certificate" */
    const char *file;    /* the file, or "CERTFILE" for commands to run */
    const char *subject, *issuer, *serial, *key_type;
    time_t not_after;
    char until[48];      /* not_after, "2031-01-02T03:04:05Z" */
};

static void describe_ours(struct ours *o, const tw_identity *own,
                          const char *own_file)
{
    struct tm tm;

    o->name = own_file ? own_file : "our certificate";
    o->file = own_file ? own_file : "CERTFILE";
    o->subject = own ? tw_identity_subject(own) : "?";
    o->issuer = own ? tw_identity_issuer(own) : "?";
    o->serial = own ? tw_identity_serial(own) : "?";
    o->key_type = own ? tw_identity_key_type(own) : "?";
    o->not_after = own ? tw_identity_not_after(own) : 0;
    if (o->not_after == 0 || gmtime_r(&o->not_after, &tm) == NULL)
        snprintf(o->until, sizeof(o->until), "an unreadable date");
    else
        strftime(o->until, sizeof(o->until), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The sentence after the alert's name: what it means and what to do. */
static enum tw_reason why(int alert, int purpose, const tw_identity *own,
                          const struct ours *o, const char *peer, char *buf,
                          size_t len)
{
    int client = purpose != TW_PURPOSE_SERVER;

    switch (alert) {
    case SSL_AD_UNKNOWN_CA:
        snprintf(buf, len, "it does not trust the CA that signed %s (issuer "
                 "%s): get a certificate from the CA %s trusts, or have it "
                 "trust %s", o->name, o->issuer, peer, o->issuer);
        return TW_REASON_UNKNOWN_CA;
    case SSL_AD_CERTIFICATE_EXPIRED:
        /* Our clock or theirs: only one of them can be right. */
        if (own != NULL && o->not_after != 0 && o->not_after < time(NULL))
            snprintf(buf, len, "%s (%s) expired on %s: issue a new "
                     "certificate", o->name, o->subject, o->until);
        else
            snprintf(buf, len, "it says %s (%s, valid until %s) has "
                     "expired: check %s's clock", o->name, o->subject,
                     o->until, peer);
        return TW_REASON_EXPIRED;
    case SSL_AD_CERTIFICATE_REVOKED:
        snprintf(buf, len, "%s (%s, serial %s) was revoked by its CA %s: "
                 "issue a new certificate", o->name, o->subject, o->serial,
                 o->issuer);
        return TW_REASON_REVOKED;
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
        snprintf(buf, len, "%s (%s) may not be used by a TLS %s: issue it "
                 "with --%s (extendedKeyUsage %s)", o->name, o->subject,
                 client ? "client" : "server", client ? "client" : "server",
                 client ? "clientAuth" : "serverAuth");
        return TW_REASON_WRONG_USAGE;
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_CERTIFICATE_UNKNOWN:
        snprintf(buf, len, "it finds %s (%s, issuer %s) unacceptable (not "
                 "yet valid, weak key or signature, wrong purpose, or not the "
                 "identity it expects?): check it with `twoway-ca verify --ca "
                 "CAFILE --purpose %s %s`, and ask what %s expects", o->name,
                 o->subject, o->issuer, client ? "client" : "server",
                 o->file, peer);
        return TW_REASON_BAD_CERTIFICATE;
    case SSL_AD_ACCESS_DENIED:
        snprintf(buf, len, "it does not let %s (%s) in: ask its operator to "
                 "allow this identity", o->name, o->subject);
        return TW_REASON_POLICY_DENIED;
    case SSL_AD_CERTIFICATE_REQUIRED:
        if (own == NULL)
            snprintf(buf, len, "it requires a client certificate and we sent "
                     "none: give us a certificate and key from a CA it "
                     "trusts");
        else
            snprintf(buf, len, "it requires a client certificate and did not "
                     "get %s (%s): check that our certificate and key are "
                     "set and belong together", o->name, o->subject);
        return TW_REASON_NO_CERTIFICATE;
    case SSL_AD_HANDSHAKE_FAILURE:
        /* TLS 1.2 servers answer a missing client certificate so. */
        if (own == NULL && client) {
            snprintf(buf, len, "it requires a client certificate and we sent "
                     "none: give us a certificate and key from a CA it "
                     "trusts");
            return TW_REASON_NO_CERTIFICATE;
        }
        snprintf(buf, len, "no cipher, key type or signature algorithm in "
                 "common with %s (%s)%s", o->name, o->key_type,
                 client ? ", or it wanted a client certificate it did not "
                          "get" : "");
        return TW_REASON_PROTOCOL;
    case SSL_AD_DECRYPT_ERROR:
        snprintf(buf, len, "our signature did not verify: does the key "
                 "belong to %s (%s)?", o->name, o->subject);
        return TW_REASON_BAD_CERTIFICATE;
    case SSL_AD_PROTOCOL_VERSION:
    case SSL_AD_INSUFFICIENT_SECURITY:
        snprintf(buf, len, "no TLS version or cipher in common (we speak "
                 "TLS 1.2 and 1.3)");
        return TW_REASON_PROTOCOL;
    default:
        snprintf(buf, len, "the handshake failed on its side; its log says "
                 "why");
        return TW_REASON_PROTOCOL;
    }
}

int tw_explain_alert(tw_err *err, int alert, int purpose,
                     const tw_identity *own, const char *own_file,
                     const char *peer)
{
    struct ours o;
    enum tw_reason reason;
    char because[TW_ERR_MSG_MAX];

    if (err == NULL)
        return -1;
    if (peer == NULL)
        peer = purpose == TW_PURPOSE_SERVER ? "the client" : "the server";
    describe_ours(&o, own, own_file);
    reason = why(alert, purpose, own, &o, peer, because, sizeof(because));
    return twu_err_reason(err, TW_ERR_REJECTED_BY_PEER, reason,
                          "%s %s (TLS alert %s): %s", peer,
                          tw_tls_alert_refuses_certificate(alert)
                              ? "rejected our certificate"
                              : "refused the handshake",
                          tw_tls_alert_name(alert), because);
}
