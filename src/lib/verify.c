/*
 * verify.c - the handshake's certificate check, and turning a failed
 * handshake into a reason.
 *
 * OpenSSL verifies the chain; the callback remembers the first failure
 * (which check, on which certificate) so the refusal can be explained, and
 * on a client checks the server's parsed identity against the expectation.
 * Failures the other side reports arrive as TLS alerts (RFC 8446 section
 * 6.2) and are explained from our side: which of our certificates, what the
 * alert means, what to do.
 */
#include "tls_internal.h"

#include <openssl/err.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

int tw__verify_cb(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store,
                                          SSL_get_ex_data_X509_STORE_CTX_idx());
    tw_conn *c = ssl ? SSL_get_ex_data(ssl, tw__ssl_conn_index()) : NULL;
    X509 *cert = X509_STORE_CTX_get_current_cert(store);

    if (c == NULL)
        return ok;
    if (!ok) {
        if (c->verify_error == 0) {
            c->verify_error = X509_STORE_CTX_get_error(store);
            c->verify_depth = X509_STORE_CTX_get_error_depth(store);
            if (cert != NULL && X509_up_ref(cert) == 1)
                c->verify_cert = cert;
        }
        return 0;
    }
    if (!c->is_server && c->gen->expect != NULL &&
        X509_STORE_CTX_get_error_depth(store) == 0 && cert != NULL) {
        tw_identity *id = tw__identity_from_x509(cert, NULL);
        int allowed = id != NULL && tw_policy_allows(c->gen->expect, id, NULL,
                                                     NULL);

        tw_identity_free(id);
        if (!allowed) {
            c->expectation_failed = 1;
            if (c->verify_cert == NULL && X509_up_ref(cert) == 1)
                c->verify_cert = cert;
            /* CERT_REJECTED makes OpenSSL send bad_certificate, which
             * the server can explain, rather than a handshake_failure. */
            X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
            return 0;
        }
    }
    return 1;
}

const char *tw_tls_alert_name(int code)
{
    switch (code) {
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 86: return "inappropriate_fallback";
    case 90: return "user_canceled";
    case 100: return "no_renegotiation";
    case 109: return "missing_extension";
    case 110: return "unsupported_extension";
    case 112: return "unrecognized_name";
    case 116: return "certificate_required";
    case 120: return "no_application_protocol";
    default: return "unknown_alert";
    }
}

/* The peer refused us: explain the alert in terms of our certificate. */
static int rejected_by_peer(tw_conn *c, int alert)
{
    tw_err *e = tw__conn_errbuf(c); /* only failures get here */
    const char *peer = c->is_server ? "the client" : "the server";
    X509 *own = SSL_get_certificate(c->ssl);
    char *subject = own ? tw__name_text(X509_get_subject_name(own)) : NULL;
    char *issuer = own ? tw__name_text(X509_get_issuer_name(own)) : NULL;
    const char *s = subject ? subject : "(none)", *i = issuer ? issuer : "?";
    enum tw_reason reason = TW_REASON_PROTOCOL;
    char why[512];

    switch (alert) {
    case 48:
        reason = TW_REASON_UNKNOWN_CA;
        snprintf(why, sizeof(why), "it does not trust the CA that issued our "
                 "certificate %s (issuer %s): get a certificate from the CA "
                 "it trusts", s, i);
        break;
    case 45:
        reason = TW_REASON_EXPIRED;
        snprintf(why, sizeof(why), "it says our certificate %s has expired: "
                 "issue a new one", s);
        break;
    case 44:
        reason = TW_REASON_REVOKED;
        snprintf(why, sizeof(why), "our certificate %s (issuer %s) was "
                 "revoked: issue a new one", s, i);
        break;
    case 43:
        reason = TW_REASON_WRONG_USAGE;
        snprintf(why, sizeof(why), "our certificate %s may not be used for "
                 "this: issue it with the right purpose (--client or "
                 "--server)", s);
        break;
    case 42:
    case 46:
        reason = TW_REASON_BAD_CERTIFICATE;
        snprintf(why, sizeof(why), "it found our certificate %s unacceptable "
                 "(not yet valid, weak key or signature, or not the identity "
                 "it expects?): check it with `twoway-ca verify` and the "
                 "peer's expectation", s);
        break;
    case 116:
        reason = TW_REASON_NO_CERTIFICATE;
        snprintf(why, sizeof(why), "it requires a client certificate and we "
                 "sent none: give a certificate and key");
        break;
    case 40:
        reason = own ? TW_REASON_PROTOCOL : TW_REASON_NO_CERTIFICATE;
        snprintf(why, sizeof(why), "%s", own ? "no common cipher or parameters"
                 : "it requires a client certificate and we sent none: give "
                   "a certificate and key");
        break;
    case 49:
        reason = TW_REASON_POLICY_DENIED;
        snprintf(why, sizeof(why), "access denied to our certificate %s", s);
        break;
    case 51:
        reason = TW_REASON_BAD_CERTIFICATE;
        snprintf(why, sizeof(why), "our signature did not verify: does the "
                 "key belong to the certificate %s?", s);
        break;
    case 70:
        snprintf(why, sizeof(why), "no TLS version in common (twoway speaks "
                 "TLS 1.2 and 1.3)");
        break;
    default:
        snprintf(why, sizeof(why), "the handshake failed on its side");
    }
    tw__err_reason(e, TW_ERR_REJECTED_BY_PEER, reason,
                   "%s rejected our certificate (TLS alert %s): %s", peer,
                   tw_tls_alert_name(alert), why);
    tw__free(subject);
    tw__free(issuer);
    return -1;
}

static int we_rejected(tw_conn *c)
{
    tw_err *e = tw__conn_errbuf(c); /* only failures get here */
    const char *role = c->is_server ? "the client's" : "the server's";
    char detail[600];

    if (c->expectation_failed) {
        char *subject = tw__name_text(X509_get_subject_name(c->verify_cert));

        tw__err_reason(e, TW_ERR_PEER_REJECTED, TW_REASON_POLICY_DENIED,
                       "%s certificate %s is not the one expected (it does "
                       "not match the expected identity): is this the right "
                       "server?", role, subject ? subject : "?");
        tw__free(subject);
        return -1;
    }
    if (tw__reason_from_x509(c->verify_error) == TW_REASON_NAME_MISMATCH)
        snprintf(detail, sizeof(detail), "%s", c->host ? c->host : "?");
    else
        snprintf(detail, sizeof(detail), "%s",
                 X509_verify_cert_error_string(c->verify_error));
    return tw__reject(e, tw__reason_from_x509(c->verify_error),
                      c->verify_cert,
                      c->verify_depth == 0 ? role : "the issuing CA's", detail);
}

int tw__conn_fail(tw_conn *c, int ret, const char *what)
{
    tw_err *out = tw__conn_errbuf(c); /* only failures get here */
    int ssl_err = SSL_get_error(c->ssl, ret);
    unsigned long e;
    int saved_errno = errno;

    if (c->verify_error != 0 || c->expectation_failed) {
        ERR_clear_error();
        return we_rejected(c);
    }
    while ((e = ERR_get_error()) != 0) {
        int r = ERR_GET_REASON(e);

        if (ERR_GET_LIB(e) != ERR_LIB_SSL)
            continue;
        if (r >= SSL_AD_REASON_OFFSET && r < SSL_AD_REASON_OFFSET + 256) {
            ERR_clear_error();
            if (r - SSL_AD_REASON_OFFSET == 0) /* close_notify */
                break;
            return rejected_by_peer(c, r - SSL_AD_REASON_OFFSET);
        }
        switch (r) {
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            ERR_clear_error();
            return tw__reject(out, TW_REASON_NO_CERTIFICATE, NULL, NULL,
                              NULL);
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_NO_PROTOCOLS_AVAILABLE:
        case SSL_R_WRONG_VERSION_NUMBER:
        case SSL_R_VERSION_TOO_LOW:
            ERR_clear_error();
            return tw__err_reason(out, TW_ERR_PROTOCOL, TW_REASON_PROTOCOL,
                                  "the peer offered only TLS versions below "
                                  "1.2 (twoway speaks TLS 1.2 and 1.3)");
        case SSL_R_HTTP_REQUEST:
            ERR_clear_error();
            return tw__err_reason(out, TW_ERR_PROTOCOL, TW_REASON_PROTOCOL,
                                  "the peer sent plain HTTP to the TLS port: "
                                  "use https://");
        case SSL_R_NO_SHARED_CIPHER:
            ERR_clear_error();
            return tw__err_reason(out, TW_ERR_PROTOCOL, TW_REASON_PROTOCOL,
                                  "no cipher in common with the peer");
        case SSL_R_NO_RENEGOTIATION:
            ERR_clear_error();
            return tw__err_reason(out, TW_ERR_PROTOCOL, TW_REASON_PROTOCOL,
                                  "the peer asked to renegotiate, which "
                                  "twoway refuses");
        default:
            ERR_clear_error();
            return tw__err_reason(out, TW_ERR_PROTOCOL, TW_REASON_PROTOCOL,
                                  "TLS %s failed: %s", what,
                                  ERR_reason_error_string(e)
                                      ? ERR_reason_error_string(e)
                                      : "protocol error");
        }
    }
    if (ssl_err == SSL_ERROR_ZERO_RETURN ||
        (ssl_err == SSL_ERROR_SYSCALL && saved_errno == 0) ||
        (ssl_err == SSL_ERROR_SSL))
        return tw__err(out, TW_ERR_CLOSED,
                       "the peer closed the connection during the TLS %s",
                       what);
    if (ssl_err == SSL_ERROR_SYSCALL)
        return tw__err(out,
                       saved_errno == ECONNRESET || saved_errno == EPIPE
                           ? TW_ERR_CLOSED : TW_ERR_IO,
                       "TLS %s: %s", what, strerror(saved_errno));
    return tw__err(out, TW_ERR_PROTOCOL, "TLS %s failed", what);
}
