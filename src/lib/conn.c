/*
 * conn.c - one TLS connection over a caller's socket, blocking or not.
 * WANT_READ/WANT_WRITE come back to the caller's event loop unchanged.
 */
#include "tls_internal.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <time.h>

/*
 * A server's first read, seen as OpenSSL makes it (a peek of our own would
 * cost a system call per connection): an HTTP/1 request begins with its
 * method, upper-case letters (RFC 9110 section 9), and a space; a TLS record
 * with its content type (RFC 8446 section 5.1: 20 to 24), an SSLv2-style
 * hello with the high bit set.  "GE" alone is enough: no TLS record starts
 * with a letter.  The callback then takes itself off the BIO.
 */
static long first_read_cb(BIO *b, int oper, const char *argp, size_t len,
                          int argi, long argl, int ret, size_t *processed)
{
    tw_conn *c = (tw_conn *)BIO_get_callback_arg(b);
    size_t n, i = 0;

    (void)len;
    (void)argi;
    (void)argl;
    if (oper != (BIO_CB_READ | BIO_CB_RETURN) || ret <= 0 ||
        processed == NULL || *processed == 0)
        return ret;
    n = *processed < 8 ? *processed : 8;
    while (i < n && argp[i] >= 'A' && argp[i] <= 'Z')
        i++;
    c->plain_http = i > 0 && (i == n || argp[i] == ' ');
    BIO_set_callback_ex(b, NULL);
    return ret;
}

int tw_conn_plain_http(const tw_conn *c)
{
    return c->plain_http;
}

tw_conn *tw__conn_new(tw__gen *g, int fd, int is_server, const char *host,
                      tw_err *err)
{
    tw_conn *c = twu_calloc(1, sizeof(*c));
    unsigned char ip[16];

    if (c == NULL) {
        twu_err_nomem(err);
        tw__gen_unref(g);
        return NULL;
    }
    c->gen = g;
    c->is_server = is_server;
    c->cert_optional = is_server && g->client_cert_optional;
    if ((c->ssl = SSL_new(g->ctx)) == NULL ||
        SSL_set_ex_data(c->ssl, tw__ssl_conn_index(), c) != 1 ||
        SSL_set_fd(c->ssl, fd) != 1) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot start a TLS connection");
        goto err;
    }
    if (is_server) {
        BIO *bio = SSL_get_rbio(c->ssl);

        BIO_set_callback_arg(bio, (char *)c);
        BIO_set_callback_ex(bio, first_read_cb);
        SSL_set_accept_state(c->ssl);
        return c;
    }
    SSL_set_connect_state(c->ssl);
    if (host != NULL) {
        int is_ip = inet_pton(AF_INET, host, ip) == 1 ||
                    inet_pton(AF_INET6, host, ip) == 1;

        if ((c->host = twu_strdup(host)) == NULL) {
            twu_err_nomem(err);
            goto err;
        }
        /* SNI carries names, never addresses (RFC 6066 section 3). */
        if ((!is_ip && SSL_set_tlsext_host_name(c->ssl, host) != 1) ||
            (is_ip && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl),
                                                    host) != 1) ||
            (!is_ip && SSL_set1_host(c->ssl, host) != 1)) {
            twu_err_ssl(err, TW_ERR_USAGE, "'%s' is not a usable host name",
                        host);
            goto err;
        }
    }
    return c;
err:
    tw_conn_free(c);
    return NULL;
}

/*
 * The generation whose SSL_CTX made c->ssl.  c->gen starts as this one and
 * moves to the current one on tw_conn_refresh; this one stays referenced
 * until tw_conn_free, because the SSL uses its context, and what hangs off
 * the context (the session cache), until SSL_free.
 */
static tw__gen *ssl_gen(const tw_conn *c)
{
    if (c->ssl == NULL)
        return c->gen;
    return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(c->ssl), tw__ctx_gen_index());
}

void tw_conn_free(tw_conn *c)
{
    tw__gen *own;

    if (c == NULL)
        return;
    own = ssl_gen(c);
    /* Before the SSL, whose session the cache may share. */
    if (c->is_server && c->ssl != NULL)
        tw__sesscache_conn_closed(c);
    SSL_free(c->ssl);
    X509_free(c->verify_cert);
    tw_identity_free(c->peer);
    twu_free(c->host);
    twu_free(c->err);
    if (own != c->gen)
        tw__gen_unref(own);
    tw__gen_unref(c->gen);
    twu_free(c);
}

X509 *tw__conn_peer_cert(const tw_conn *c)
{
    X509 *x = SSL_get0_peer_certificate(c->ssl);

    if (x == NULL && c->resumed != NULL && SSL_session_reused(c->ssl))
        x = c->resumed->cert;
    return x;
}

STACK_OF(X509) *tw__conn_peer_chain(const tw_conn *c)
{
    if (SSL_get0_peer_certificate(c->ssl) != NULL)
        return SSL_get_peer_cert_chain(c->ssl);
    return tw__conn_peer_cert(c) != NULL ? c->resumed->chain : NULL;
}

/*
 * SSL_get_error() needs this thread's error queue empty before each I/O
 * call.  Peeking is a fraction of the cost of clearing (which walks all
 * sixteen slots), and the queue is nearly always empty already.
 */
static void clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

static int want(tw_conn *c, int ret, const char *what)
{
    switch (SSL_get_error(c->ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        return TW_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TW_WANT_WRITE;
    default:
        return tw__conn_fail(c, ret, what);
    }
}

/* Record a failure found after the chain check (a resumption's, a
 * refresh's) as the verification callback records one: on the leaf. */
static void record_failure(tw_conn *c, int code, X509 *peer)
{
    X509_free(c->verify_cert);
    c->verify_cert = peer != NULL && X509_up_ref(peer) == 1 ? peer : NULL;
    c->verify_error = code;
    c->verify_depth = 0;
}

/*
 * A resumed session skipped the chain check.  It must have passed it when
 * it was made (the verify result it carries: ticket.c keeps sessions of
 * unverified peers from being resumed at all, this is the second lock),
 * and the certificate must still be within its dates, its CRL not past
 * nextUpdate (the CRL and CA are those of this generation, whose cache or
 * ticket check the session came through).  X509_V_OK, or what fails.
 */
static int resumption_failure(const tw_conn *c, X509 *peer)
{
    long made = SSL_get_verify_result(c->ssl);

    if (made != X509_V_OK)
        return (int)made;
    /* The cache's certificate comes with its notAfter read once: parsing
     * the ASN1_TIME was 5,400 instructions of every resumption. */
    if (c->resumed != NULL && peer == c->resumed->cert
            ? time(NULL) >= c->resumed->not_after
            : X509_cmp_current_time(X509_get0_notAfter(peer)) <= 0)
        return X509_V_ERR_CERT_HAS_EXPIRED;
    if (tw__gen_crl_stale(c->gen, peer))
        return X509_V_ERR_CRL_HAS_EXPIRED;
    return X509_V_OK;
}

int tw_conn_handshake(tw_conn *c)
{
    X509 *peer;
    int ret, code;

    if (c->done)
        return 0;
    clear_errors();
    errno = 0;
    if ((ret = SSL_do_handshake(c->ssl)) != 1)
        return want(c, ret, "handshake");
    peer = tw__conn_peer_cert(c);
    if (peer == NULL && !c->cert_optional)
        return tw__reject(tw__conn_errbuf(c), TW_REASON_NO_CERTIFICATE, NULL,
                          NULL, NULL);
    if (c->is_server && peer != NULL && SSL_session_reused(c->ssl) &&
        (code = resumption_failure(c, peer)) != X509_V_OK) {
        /* OPTIONAL: the peer is unverified, with the reason a full
         * handshake would give; REQUIRED: the handshake fails. */
        if (c->cert_optional)
            record_failure(c, code, peer);
        else
            return tw__reject(tw__conn_errbuf(c), tw__reason_from_x509(code),
                              peer, "the client's",
                              code == X509_V_ERR_CRL_HAS_EXPIRED
                                  ? "the CRL is past its nextUpdate"
                                  : X509_verify_cert_error_string(code));
    }
    /* A TLS 1.2 session of an unverified peer, made just now, leaves the
     * session cache (ticket.c says why; a session without a certificate
     * has not been through a verification that could mark it). */
    if (c->cert_optional && !SSL_session_reused(c->ssl) &&
        (peer == NULL || c->verify_error != 0))
        SSL_CTX_remove_session(SSL_get_SSL_CTX(c->ssl),
                               SSL_get0_session(c->ssl));
    /* The identity is parsed when first asked for (tw_conn_peer): an idle
     * connection holds the certificate OpenSSL keeps anyway, not a second,
     * parsed copy of it. */
    c->done = 1;
    return 0;
}

long tw_conn_read(tw_conn *c, void *buf, size_t len)
{
    size_t got = 0;
    int ret;

    clear_errors();
    errno = 0;
    if ((ret = SSL_read_ex(c->ssl, buf, len, &got)) == 1)
        return (long)got;
    if (SSL_get_error(c->ssl, ret) == SSL_ERROR_ZERO_RETURN)
        return 0;
    return want(c, ret, "read");
}

long tw_conn_write(tw_conn *c, const void *buf, size_t len)
{
    size_t put = 0;
    int ret;

    clear_errors();
    errno = 0;
    if ((ret = SSL_write_ex(c->ssl, buf, len, &put)) == 1)
        return (long)put;
    return want(c, ret, "write");
}

size_t tw_conn_pending(const tw_conn *c)
{
    int n = SSL_pending(c->ssl);

    /* With read-ahead a whole record can wait undecrypted in our buffer:
     * the socket is then not readable, yet tw_conn_read has data. */
    if (n > 0)
        return (size_t)n;
    return SSL_has_pending(c->ssl) ? 1 : 0;
}

int tw_conn_shutdown(tw_conn *c)
{
    int ret;

    clear_errors();
    ret = SSL_shutdown(c->ssl);
    if (ret >= 0)
        return 0; /* close_notify sent; we don't wait for the peer's */
    return want(c, ret, "shutdown");
}

tw_err *tw__conn_errbuf(tw_conn *c)
{
    static _Thread_local tw_err fallback; /* out of memory: keep going */

    if (c->err == NULL && (c->err = twu_calloc(1, sizeof(*c->err))) == NULL) {
        tw_err_clear(&fallback);
        return &fallback;
    }
    return c->err;
}

const tw_err *tw_conn_err(const tw_conn *c)
{
    static const tw_err none = {TW_ERR_NONE, TW_REASON_NONE, ""};

    return c->err != NULL ? c->err : &none;
}

/* Whether the handshake is done and the peer presented a certificate
 * that passed (c->verify_error: recorded failures of the handshake, a
 * resumption check or a refresh). */
static int peer_verified(const tw_conn *c)
{
    return c->done && c->verify_error == 0 &&
           tw__conn_peer_cert(c) != NULL;
}

int tw_conn_peer_verified(const tw_conn *c, tw_err *err)
{
    if (!c->done)
        twu_err(err, TW_ERR_USAGE, "the TLS handshake is not done: there "
                "is no peer to speak of yet");
    else if (tw__conn_peer_cert(c) == NULL)
        tw__reject(err, TW_REASON_NO_CERTIFICATE, NULL, NULL, NULL);
    else if (c->verify_error != 0)
        tw__conn_explain_failure(c, err);
    else {
        if (err != NULL)
            tw_err_clear(err);
        return 1;
    }
    return 0;
}

const tw_identity *tw_conn_peer(tw_conn *c)
{
    X509 *peer;

    if (c->peer != NULL || !c->done)
        return c->peer;
    if ((peer = tw__conn_peer_cert(c)) != NULL)
        c->peer = tw__identity_from_x509(peer, NULL); /* NULL: no memory */
    return c->peer;
}

/*
 * The peer's identity for one decision: the kept one, else parsed for this
 * call only (*tmp, freed by the caller).  Roles are decided rarely (once
 * per connection and role in invoice-server), identities are kept by few.
 */
static const tw_identity *peer_for_decision(const tw_conn *c,
                                            tw_identity **tmp)
{
    X509 *peer;

    *tmp = NULL;
    if (c->peer != NULL || !c->done)
        return c->peer;
    if ((peer = tw__conn_peer_cert(c)) != NULL)
        *tmp = tw__identity_from_x509(peer, NULL);
    return *tmp;
}

int tw_conn_allows(const tw_conn *c, const char *role, const char **why)
{
    const tw_identity *id;
    tw_identity *tmp;
    int ok;

    if (!peer_verified(c))
        return 0; /* no role without a verified certificate */
    if (c->gen->policy == NULL) {
        if (why != NULL)
            *why = "no policy: every certificate the CA signed";
        return 1;
    }
    if ((id = peer_for_decision(c, &tmp)) == NULL)
        return 0; /* out of memory: refuse, never grant */
    ok = tw_policy_allows(c->gen->policy, id, role, why);
    tw_identity_free(tmp);
    return ok;
}

size_t tw_conn_roles(const tw_conn *c, char *buf, size_t len)
{
    const tw_identity *id;
    tw_identity *tmp;
    size_t n;

    if (len > 0)
        buf[0] = '\0';
    if (!peer_verified(c))
        return 0;
    if (c->gen->policy == NULL) {
        snprintf(buf, len, "*");
        return 1;
    }
    if ((id = peer_for_decision(c, &tmp)) == NULL)
        return 0;
    n = tw_policy_roles(c->gen->policy, id, buf, len);
    tw_identity_free(tmp);
    return n;
}

const char *tw_conn_version(const tw_conn *c)
{
    return SSL_get_version(c->ssl);
}

int tw_conn_resumed(const tw_conn *c)
{
    return SSL_session_reused(c->ssl);
}

unsigned tw_conn_generation(const tw_conn *c)
{
    return c->gen->id;
}

tw_identity *tw_conn_refused_identity(const tw_conn *c)
{
    if (c->verify_cert == NULL)
        return NULL;
    return tw__identity_from_x509(c->verify_cert, NULL);
}

/*
 * A reload must reach connections that are already open: a client revoked
 * by the new CRL is refused at its next request, not at its next
 * handshake.  Nothing changed: one atomic load.  Changed (once per reload
 * per connection): verify the peer's certificate again under the current
 * trust store, CRL and purpose, and adopt the current policy.  The
 * handshake's verify callback sees this check too, so a refusal names the
 * same failure, on the same certificate, in the same words.  With
 * TW_CLIENT_CERT_OPTIONAL the outcome is the peer's verified state from
 * now on, as a handshake now would give it: a failure makes it unverified
 * (the connection itself is fine), a pass verified again; a peer without
 * a certificate has nothing to check.
 */
int tw_conn_refresh(tw_conn *c)
{
    X509_STORE_CTX *ctx;
    X509 *peer;
    tw__gen *g;
    int ok, code;

    if (c->server == NULL || !c->done ||
        c->gen->id == tw__server_current_id(c->server))
        return 0;
    g = tw__server_current(c->server);
    peer = tw__conn_peer_cert(c);
    if ((ctx = X509_STORE_CTX_new()) == NULL) {
        tw__gen_unref(g);
        return twu_err_nomem(tw__conn_errbuf(c));
    }
    /* The callback records the first failure of this check, not an
     * earlier one's. */
    record_failure(c, X509_V_OK, NULL);
    ok = peer != NULL &&
         X509_STORE_CTX_init(ctx, tw__trust_store(g->trust), peer,
                             tw__conn_peer_chain(c)) == 1 &&
         X509_STORE_CTX_set_purpose(ctx, g->client_purpose) == 1 &&
         X509_STORE_CTX_set_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx(),
                                    c->ssl) == 1;
    if (ok) {
        X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(ctx), 2);
        X509_STORE_CTX_set_verify_cb(ctx, tw__verify_cb);
        ok = X509_verify_cert(ctx) == 1;
    }
    if (ok && g->nrevoked > 0 && tw__gen_revoked(g, peer)) {
        /* Revoked beyond the CRL: as its CRL would say it. */
        ok = tw__verify_revoked(ctx, peer);
    }
    code = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    if (c->gen != ssl_gen(c))
        tw__gen_unref(c->gen); /* an earlier refresh's */
    c->gen = g; /* the current policy applies from now on */
    if (ok || (peer == NULL && c->cert_optional))
        return 0;
    if (c->verify_error == 0) /* failed before the callback saw it */
        record_failure(c, code != X509_V_OK ? code : X509_V_ERR_UNSPECIFIED,
                       peer);
    if (c->cert_optional)
        return 0; /* unverified from now on: tw_conn_peer_verified */
    return tw__conn_explain_failure(c, tw__conn_errbuf(c));
}
