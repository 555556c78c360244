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

/*
 * With CRLs, OpenSSL checks the leaf against its issuer's CRL (RFC 5280
 * section 6.3), and a CRL is only ever loaded for a CA of the CA file
 * (trust.c refuses the others).  An issuer the peer sent in its chain,
 * absent from the CA file, can therefore never have a CRL here: "unable to
 * get certificate CRL" would send the operator to publish a fresh CRL of
 * the root, which changes nothing.  What failed is that the issuer is not
 * a CA we were given: unknown_ca, the alert OpenSSL sends for it anyway.
 * An issuer that is in the CA file but has no CRL stays crl_unusable.
 */
static int first_failure(X509_STORE_CTX *store)
{
    int code = X509_STORE_CTX_get_error(store);
    int depth = X509_STORE_CTX_get_error_depth(store);

    /* The chain starts with the certificates the peer sent (the untrusted
     * ones); the issuer of chain[depth] is chain[depth + 1]. */
    if (code == X509_V_ERR_UNABLE_TO_GET_CRL &&
        depth + 1 < X509_STORE_CTX_get_num_untrusted(store)) {
        code = X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
        X509_STORE_CTX_set_error(store, code);
    }
    return code;
}

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
            c->verify_error = first_failure(store);
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

/*
 * A server with TW_CLIENT_CERT_OPTIONAL: the client's chain failed
 * verification (tw__verify_cb recorded the first failure, as it does for
 * a refusal).  The handshake goes on, so that the route can answer why;
 * the peer stays unverified (c->verify_error is never 0 from here), gets
 * no role, and its session is never resumed (ticket.c).  Returns 1 to let
 * the handshake continue, 0 to fail it (no connection to record the
 * failure on: never let an unrecorded failure through).
 */
int tw__verify_revoked(X509_STORE_CTX *store, X509 *leaf)
{
    X509_STORE_CTX_set_current_cert(store, leaf);
    X509_STORE_CTX_set_error_depth(store, 0);
    X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REVOKED);
    (void)tw__verify_cb(0, store);
    return 0;
}

int tw__verify_let_through(X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store,
                                          SSL_get_ex_data_X509_STORE_CTX_idx());
    tw_conn *c = ssl ? SSL_get_ex_data(ssl, tw__ssl_conn_index()) : NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(store);

    if (c == NULL || !c->cert_optional)
        return 0;
    if (c->verify_error == 0) {
        /* Failed without the callback hearing of it (out of memory in
         * the checker): still a failure. */
        c->verify_error = X509_STORE_CTX_get_error(store);
        if (c->verify_error == X509_V_OK)
            c->verify_error = X509_V_ERR_UNSPECIFIED;
        c->verify_depth = 0;
        if (c->verify_cert == NULL && leaf != NULL && X509_up_ref(leaf) == 1)
            c->verify_cert = leaf;
    }
    tw__session_unresumable(ssl);
    ERR_clear_error();
    return 1;
}

int tw__conn_explain_failure(const tw_conn *c, tw_err *err)
{
    const char *role = c->is_server ? "the client's" : "the server's";
    enum tw_reason reason = tw__reason_from_x509(c->verify_error);
    char detail[600];

    if (reason == TW_REASON_NAME_MISMATCH)
        snprintf(detail, sizeof(detail), "%s", c->host ? c->host : "?");
    else
        snprintf(detail, sizeof(detail), "%s",
                 X509_verify_cert_error_string(c->verify_error));
    return tw__reject(err, reason, c->verify_cert,
                      c->verify_depth == 0 ? role : "the issuing CA's", detail);
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

/* The peer refused us: explain the alert in terms of our certificate
 * (the words are tw_explain_alert's, which mail-server uses too). */
static int rejected_by_peer(tw_conn *c, int alert)
{
    X509 *own = SSL_get_certificate(c->ssl);
    tw_identity *id = own ? tw__identity_from_x509(own, NULL) : NULL;

    tw_explain_alert(tw__conn_errbuf(c), alert,
                     c->is_server ? TW_PURPOSE_SERVER : TW_PURPOSE_CLIENT, id,
                     NULL, NULL);
    tw_identity_free(id);
    return -1;
}

static int we_rejected(tw_conn *c)
{
    tw_err *e = tw__conn_errbuf(c); /* only failures get here */
    const char *role = c->is_server ? "the client's" : "the server's";

    if (c->expectation_failed) {
        char *subject = tw__name_text(X509_get_subject_name(c->verify_cert));

        twu_err_reason(e, TW_ERR_PEER_REJECTED, TW_REASON_POLICY_DENIED,
                       "%s certificate %s is not the one expected (it does "
                       "not match the expected identity): is this the right "
                       "server?", role, subject ? subject : "?");
        twu_free(subject);
        return -1;
    }
    return tw__conn_explain_failure(c, e);
}

/*
 * The peer's certificate verified, but the signature that proves it holds
 * the certificate's private key did not: the CertificateVerify (RFC 8446
 * section 4.4.3; RFC 5246 section 7.4.8 for a TLS 1.2 client) or a TLS 1.2
 * server's ServerKeyExchange (RFC 5246 section 7.4.3).  OpenSSL answers
 * decrypt_error, as both RFCs ask.  The reason is bad_certificate, not
 * protocol: the messages were well formed, and what failed is the
 * certificate as a credential, the way the peer reads our decrypt_error
 * (rejected_by_peer above).  The cause is a key file that does not go with
 * the certificate file, or someone presenting a certificate that is not
 * theirs; the certificate is named, as the one the peer claimed (nothing
 * proves it holds it), for the refusal log (tw_conn_refused_identity).
 */
static int bad_handshake_signature(tw_conn *c)
{
    tw_err *e = tw__conn_errbuf(c); /* only failures get here */
    const char *peer = c->is_server ? "client" : "server";
    X509 *cert = tw__conn_peer_cert(c);
    tw_identity *id = cert ? tw__identity_from_x509(cert, NULL) : NULL;

    /* The certificate claimed is the one refused (with
     * TW_CLIENT_CERT_OPTIONAL, an issuing CA's that failed may be recorded:
     * the signature is what ends this handshake). */
    if (cert != NULL && c->verify_cert != cert && X509_up_ref(cert) == 1) {
        X509_free(c->verify_cert);
        c->verify_cert = cert;
    }
    twu_err_reason(e, TW_ERR_PEER_REJECTED, TW_REASON_BAD_CERTIFICATE,
                   "the %s's handshake signature does not verify with the "
                   "public key of its certificate %s (issuer %s, serial %s): "
                   "the %s is signing with a key that does not belong to its "
                   "certificate", peer, id ? tw_identity_subject(id) : "?",
                   id ? tw_identity_issuer(id) : "?",
                   id ? tw_identity_serial(id) : "?", peer);
    tw_identity_free(id);
    return -1;
}

/*
 * A peer Certificate message that does not parse: the certificate list's
 * length disagrees with the message's, a certificate's length with what is
 * left of the list (SSL_R_LENGTH_MISMATCH, SSL_R_CERT_LENGTH_MISMATCH;
 * SSL_R_BAD_LENGTH for a TLS 1.3 entry's extensions), or an entry is not
 * DER X.509 (ERR_R_ASN1_LIB).  The alert stays OpenSSL's decode_error:
 * RFC 8446 section 6 says a message that "cannot be parsed according to
 * the syntax (e.g., have a length extending beyond the message boundary or
 * contain an out-of-range length) MUST terminate the connection with a
 * decode_error alert", and RFC 5246 section 7.2.2 defines decode_error as
 * "the length of the message was incorrect"; bad_certificate (RFC 8446
 * section 6.2, RFC 5246 section 7.2.2) is for a certificate that was read
 * and found corrupt.  tlsfuzzer's test-certificate-malformed.py expects
 * decode_error for every length it mangles.  It expects bad_certificate
 * only for a well-framed entry of zero bytes, where OpenSSL 3 sends
 * decode_error from inside tls_process_client_certificate, with no hook
 * before the alert goes out: that one we can name, not change.
 */
static int malformed_certificate_message(tw_conn *c, int r)
{
    OSSL_HANDSHAKE_STATE peer_certificate =
        c->is_server ? TLS_ST_SR_CERT : TLS_ST_CR_CERT;
    const char *peer = c->is_server ? "client" : "server";

    if (SSL_get_state(c->ssl) != peer_certificate ||
        (r != SSL_R_LENGTH_MISMATCH && r != SSL_R_CERT_LENGTH_MISMATCH &&
         r != SSL_R_BAD_LENGTH && r != ERR_R_ASN1_LIB))
        return 0;
    return twu_err_reason(tw__conn_errbuf(c), TW_ERR_PROTOCOL,
                          TW_REASON_PROTOCOL,
                          "the %s's Certificate message is malformed (%s): "
                          "TLS alert decode_error sent; the %s's TLS software "
                          "built a broken message, or something on the path "
                          "changed it", peer,
                          r == ERR_R_ASN1_LIB
                              ? "an entry of its certificate list is not a "
                                "DER X.509 certificate"
                              : "the lengths in its certificate list "
                                "disagree", peer);
}

int tw__conn_fail(tw_conn *c, int ret, const char *what)
{
    tw_err *out = tw__conn_errbuf(c); /* only failures get here */
    int ssl_err = SSL_get_error(c->ssl, ret);
    unsigned long e;
    int saved_errno = errno;

    /* With TW_CLIENT_CERT_OPTIONAL a failed verification did not end
     * the handshake: what did is further down (a bad signature, ...). */
    if ((c->verify_error != 0 && !c->cert_optional) || c->expectation_failed) {
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
        if (malformed_certificate_message(c, r) < 0) {
            ERR_clear_error();
            return -1;
        }
        switch (r) {
        case SSL_R_BAD_SIGNATURE:
            ERR_clear_error();
            return bad_handshake_signature(c);
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            ERR_clear_error();
            return tw__reject(out, TW_REASON_NO_CERTIFICATE, NULL, NULL,
                              NULL);
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_NO_PROTOCOLS_AVAILABLE:
        case SSL_R_WRONG_VERSION_NUMBER:
        case SSL_R_VERSION_TOO_LOW:
            ERR_clear_error();
            return twu_err_reason(out, TW_ERR_PROTOCOL, TW_REASON_PROTOCOL,
                                  "the peer offered only TLS versions below "
                                  "1.2 (twoway speaks TLS 1.2 and 1.3)");
        case SSL_R_HTTP_REQUEST:
            ERR_clear_error();
            return twu_err_reason(out, TW_ERR_PROTOCOL, TW_REASON_PROTOCOL,
                                  "the peer sent plain HTTP to the TLS port: "
                                  "use https://");
        case SSL_R_NO_SHARED_CIPHER:
            ERR_clear_error();
            return twu_err_reason(out, TW_ERR_PROTOCOL, TW_REASON_PROTOCOL,
                                  "no cipher in common with the peer");
        case SSL_R_NO_RENEGOTIATION:
            ERR_clear_error();
            return twu_err_reason(out, TW_ERR_PROTOCOL, TW_REASON_PROTOCOL,
                                  "the peer asked to renegotiate, which "
                                  "twoway refuses");
        default:
            ERR_clear_error();
            return twu_err_reason(out, TW_ERR_PROTOCOL, TW_REASON_PROTOCOL,
                                  "TLS %s failed: %s", what,
                                  ERR_reason_error_string(e)
                                      ? ERR_reason_error_string(e)
                                      : "protocol error");
        }
    }
    if (ssl_err == SSL_ERROR_ZERO_RETURN ||
        (ssl_err == SSL_ERROR_SYSCALL && saved_errno == 0) ||
        (ssl_err == SSL_ERROR_SSL))
        return twu_err(out, TW_ERR_CLOSED,
                       "the peer closed the connection during the TLS %s",
                       what);
    if (ssl_err == SSL_ERROR_SYSCALL)
        return twu_err(out,
                       saved_errno == ECONNRESET || saved_errno == EPIPE
                           ? TW_ERR_CLOSED : TW_ERR_IO,
                       "TLS %s: %s", what, strerror(saved_errno));
    return twu_err(out, TW_ERR_PROTOCOL, "TLS %s failed", what);
}
