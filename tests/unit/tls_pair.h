/*
 * tls_pair.h - what the unit tests of connections share (tls_test.c,
 * optional_test.c, refusal_test.c, sesscache_test.c, revoked_test.c):
 *
 * - a small PKI in a scratch directory: a CA, the Invoice Server's pair, the
 *   Mail Server's (struct pki, pki_setup / pki_teardown, write_pair);
 * - configs, servers and clients: from any CA and pair (config_with_files,
 *   client_config, server_from, client_from), or from the PKI above
 *   (server_config, server_config_with_rule, server_new, client_new);
 * - a client and a server in one process over a socketpair (struct pair):
 *   pair_open, pair_handshake, pair_hear_refusal, pair_exchange as steps;
 *   pair_try, pair_run and pair_settle as the usual runs of them;
 *   pair_close (with close_notify) or pair_free (without);
 * - an OpenSSL peer for what our library will not send (raw_peer,
 *   mismatched_key, drive).
 *
 * Header-only (static inline), like unit_helpers.h; include it after
 * unit_helpers.h (and tls_internal.h where a test reads a connection's SSL).
 */
#ifndef TW_TLS_PAIR_H
#define TW_TLS_PAIR_H

#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/ssl.h>

#include <fcntl.h>
#include <sys/socket.h>

/* ------------------------------------------------------------- the PKI */

struct pki {
    char *dir;
    char ca[4096], server_cert[4096], server_key[4096];
    char client_cert[4096], client_key[4096], crl[4096];
    tw_cert *ca_cert, *client;
    tw_key *ca_key;
};

/* Write cert and key to <name>.cert.pem and <name>.key.pem in p->dir. */
static inline void write_pair(struct pki *p, const char *name,
                              const tw_cert *cert, const tw_key *key,
                              char *cert_path, char *key_path)
{
    char file[256];
    tw_err err;

    snprintf(file, sizeof(file), "%s.cert.pem", name);
    th_path(cert_path, p->dir, file);
    snprintf(file, sizeof(file), "%s.key.pem", name);
    th_path(key_path, p->dir, file);
    assert_int_equal(tw_cert_write_file(cert, cert_path, &err), 0);
    assert_int_equal(tw_key_write_file(key, key_path, NULL, &err), 0);
}

/* CA /O=ABC Inc.; server /CN=localhost/O=InvoiceServer (dns:localhost);
 * client /CN=localhost/O=MailServer; p->crl named, not written. */
static inline int pki_setup(void **state)
{
    struct pki *p = calloc(1, sizeof(*p));
    tw_key *sk = th_key("ec-p256"), *ck = th_key("ec-p256");
    tw_cert *server;
    tw_err err;

    assert_non_null(p);
    p->dir = th_mkdtemp();
    p->ca_key = th_key("ec-p256");
    p->ca_cert = th_ca("/O=ABC Inc.", p->ca_key);
    server = th_sign(&(struct th_spec){.subject = "/CN=localhost/O=InvoiceServer",
                                       .purposes = TW_PURPOSE_SERVER,
                                       .sans = {"dns:localhost"}},
                     sk, p->ca_cert, p->ca_key);
    p->client = th_sign(&(struct th_spec){.subject = "/CN=localhost/O=MailServer",
                                          .purposes = TW_PURPOSE_CLIENT},
                        ck, p->ca_cert, p->ca_key);
    th_path(p->ca, p->dir, "ca.cert.pem");
    assert_int_equal(tw_cert_write_file(p->ca_cert, p->ca, &err), 0);
    write_pair(p, "server", server, sk, p->server_cert, p->server_key);
    write_pair(p, "client", p->client, ck, p->client_cert, p->client_key);
    th_path(p->crl, p->dir, "crl.pem");
    tw_cert_free(server);
    tw_key_free(sk);
    tw_key_free(ck);
    *state = p;
    return 0;
}

static inline int pki_teardown(void **state)
{
    struct pki *p = *state;

    tw_cert_free(p->ca_cert);
    tw_cert_free(p->client);
    tw_key_free(p->ca_key);
    th_rmdir(p->dir);
    free(p);
    return 0;
}

/* --------------------------------------------- configs, servers, clients */

/* A config that trusts the CA file `ca` and presents `cert` with `key`
 * (cert NULL: no certificate); the caller frees it. */
static inline tw_config *config_with_files(const char *ca, const char *cert,
                                           const char *key)
{
    tw_config *cfg = tw_config_new();

    assert_non_null(cfg);
    assert_int_equal(tw_config_set_ca_file(cfg, ca), 0);
    if (cert != NULL)
        assert_int_equal(tw_config_set_keypair_file(cfg, cert, key), 0);
    return cfg;
}

/* A client's config, speaking TLS versions min_version to max_version. */
static inline tw_config *client_config(const char *ca, const char *cert,
                                       const char *key, int min_version,
                                       int max_version)
{
    tw_config *cfg = config_with_files(ca, cert, key);

    assert_int_equal(tw_config_set_protocols(cfg, min_version, max_version),
                     0);
    return cfg;
}

/* A server or a client made from cfg, which the caller still owns; the
 * test fails with the library's sentence if there is none. */
static inline tw_server *server_from(const tw_config *cfg)
{
    tw_server *srv;
    tw_err err;

    if ((srv = tw_server_new(cfg, &err)) == NULL)
        fail_msg("server: %s", err.msg);
    return srv;
}

static inline tw_client *client_from(const tw_config *cfg)
{
    tw_client *cli;
    tw_err err;

    if ((cli = tw_client_new(cfg, &err)) == NULL)
        fail_msg("client: %s", err.msg);
    return cli;
}

/* The PKI's server: CA, its pair, and `rule` (NULL: no policy, so every
 * verified peer has every role). */
static inline tw_config *server_config_with_rule(const struct pki *p,
                                                 const char *rule)
{
    tw_config *cfg = config_with_files(p->ca, p->server_cert, p->server_key);

    if (rule != NULL && tw_config_add_policy_rule(cfg, rule) != 0)
        fail_msg("rule %s: %s", rule, tw_config_error(cfg));
    return cfg;
}

/* The server's config: CA, its pair, "read O=MailServer". */
static inline tw_config *server_config(const struct pki *p)
{
    return server_config_with_rule(p, "read O=MailServer");
}

static inline tw_server *server_new(const struct pki *p, tw_config **cfg)
{
    *cfg = server_config(p);
    return server_from(*cfg);
}

/* The PKI's client, speaking `version` only. */
static inline tw_client *client_new(const struct pki *p, int version)
{
    tw_config *cfg = client_config(p->ca, p->client_cert, p->client_key,
                                   version, version);
    tw_client *cli = client_from(cfg);

    tw_config_free(cfg);
    return cli;
}

/* ------------------------------------------- a client and a server */

/* A socketpair, both ends non-blocking. */
static inline void pair_sockets(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
}

struct pair {
    int fds[2];
    tw_conn *s, *c;
    int s_rc, c_rc;
};

static inline int pair_pending(int rc)
{
    return rc == TW_WANT_READ || rc == TW_WANT_WRITE;
}

/* The server's end accepted, the client's connecting to `host`. */
static inline void pair_open(struct pair *pr, tw_server *srv, tw_client *cli,
                             const char *host)
{
    tw_err err;

    pair_sockets(pr->fds);
    assert_non_null(pr->s = tw_server_accept(srv, pr->fds[0], &err));
    assert_non_null(pr->c = tw_client_connect(cli, pr->fds[1], host, &err));
}

/* Both handshakes until neither wants more; outcomes in s_rc and c_rc
 * (0: done). */
static inline void pair_handshake(struct pair *pr)
{
    pr->s_rc = pr->c_rc = TW_WANT_READ;
    for (int i = 0; i < 100 && (pair_pending(pr->s_rc) ||
                                pair_pending(pr->c_rc)); i++) {
        if (pair_pending(pr->c_rc))
            pr->c_rc = tw_conn_handshake(pr->c);
        if (pair_pending(pr->s_rc))
            pr->s_rc = tw_conn_handshake(pr->s);
    }
}

/* A TLS 1.3 client finishes before the server has read its certificate,
 * and learns of a refusal only when it reads: when the client is done and
 * the server is not, the client reads, and c_rc is what the read said. */
static inline void pair_hear_refusal(struct pair *pr)
{
    char buf[64];
    long n = TW_WANT_READ;

    if (pr->c_rc != 0 || pr->s_rc == 0)
        return;
    for (int i = 0; i < 100 && n == TW_WANT_READ; i++)
        n = tw_conn_read(pr->c, buf, sizeof(buf));
    pr->c_rc = (int)n;
}

/* One message each way (TLS 1.3 tickets arrive behind the server's; they
 * are read too). */
static inline void pair_exchange(struct pair *pr)
{
    char buf[64];
    long n = -1;

    assert_int_equal(tw_conn_write(pr->c, "ping", 4), 4);
    for (int i = 0; i < 50 && (n = tw_conn_read(pr->s, buf, sizeof(buf))) < 0;)
        i++;
    assert_int_equal(n, 4);
    assert_int_equal(tw_conn_write(pr->s, "pong", 4), 4);
    for (int i = 0; i < 50 && (n = tw_conn_read(pr->c, buf, sizeof(buf))) < 0;)
        i++;
    assert_int_equal(n, 4);
    n = tw_conn_read(pr->c, buf, sizeof(buf));
    assert_true(n == TW_WANT_READ || n > 0);
}

/* Open to "localhost" and handshake, leaving the outcome in s_rc and c_rc
 * (0: done). */
static inline void pair_try(struct pair *pr, tw_server *srv, tw_client *cli)
{
    pair_open(pr, srv, cli, "localhost");
    pair_handshake(pr);
}

/* Open and handshake, which must succeed; then one message each way. */
static inline void pair_run(struct pair *pr, tw_server *srv, tw_client *cli)
{
    pair_try(pr, srv, cli);
    assert_int_equal(pr->s_rc, 0);
    assert_int_equal(pr->c_rc, 0);
    pair_exchange(pr);
}

/* Open to `host` and handshake, which may fail: when both succeed, one
 * message each way; when the server refuses, the client hears it. */
static inline void pair_settle(struct pair *pr, tw_server *srv,
                               tw_client *cli, const char *host)
{
    pair_open(pr, srv, cli, host);
    pair_handshake(pr);
    if (pr->s_rc == 0 && pr->c_rc == 0)
        pair_exchange(pr);
    else
        pair_hear_refusal(pr);
}

/* Free both ends without close_notify: OpenSSL then forgets the session. */
static inline void pair_free(struct pair *pr)
{
    tw_conn_free(pr->s);
    tw_conn_free(pr->c);
    close(pr->fds[0]);
    close(pr->fds[1]);
}

/* Close with close_notify both ways, so that OpenSSL keeps the session. */
static inline void pair_close(struct pair *pr)
{
    (void)tw_conn_shutdown(pr->s);
    (void)tw_conn_shutdown(pr->c);
    pair_free(pr);
}

#ifdef TW_TLS_INTERNAL_H /* it sets the client's session on its SSL */
/* One connection, which must succeed and verify the client, closed with
 * close_notify.  The client offers its newest session, or none (`fresh`),
 * or `offer` when not NULL.  1 when the server resumed; *next (when not
 * NULL): the client's session after it, a reference. */
static inline int pair_connect(tw_server *srv, tw_client *cli, int fresh,
                               SSL_SESSION *offer, SSL_SESSION **next)
{
    struct pair pr;
    int resumed;

    pair_open(&pr, srv, cli, "localhost");
    if (fresh || offer != NULL)
        assert_int_equal(SSL_set_session(pr.c->ssl, offer), 1);
    pair_handshake(&pr);
    assert_int_equal(pr.s_rc, 0);
    assert_int_equal(pr.c_rc, 0);
    pair_exchange(&pr);
    resumed = tw_conn_resumed(pr.s);
    assert_int_equal(tw_conn_peer_verified(pr.s, NULL), 1);
    if (next != NULL)
        assert_non_null(*next = SSL_get1_session(pr.c->ssl));
    pair_close(&pr);
    return resumed;
}
#endif

/* ---------------------------------------------------- an OpenSSL peer */

/* An OpenSSL client (or server, asking for a client certificate) speaking
 * `version` only, presenting `cert` with `key`, on fd; *ctx is the
 * caller's to free, after the SSL. */
static inline SSL *raw_peer(SSL_CTX **ctx, int is_server, int version, int fd,
                            X509 *cert, EVP_PKEY *key)
{
    SSL *ssl;

    *ctx = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
    assert_non_null(*ctx);
    assert_int_equal(SSL_CTX_set_min_proto_version(*ctx, version), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(*ctx, version), 1);
    if (is_server)
        SSL_CTX_set_verify(*ctx, SSL_VERIFY_PEER, NULL);
    assert_int_equal(SSL_CTX_use_certificate(*ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(*ctx, key), 1);
    assert_non_null(ssl = SSL_new(*ctx));
    assert_int_equal(SSL_set_fd(ssl, fd), 1);
    if (is_server)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    return ssl;
}

/*
 * A key whose public half is `pub`'s and whose private half is `priv`'s
 * (both EC P-256).  OpenSSL will not pair a certificate with another
 * certificate's key: SSL_CTX_use_PrivateKey and SSL_use_cert_and_key (even
 * with override = 1) refuse it ("private key mismatch").  They compare the
 * public halves only, so this key passes, and every signature made with it
 * is `priv`'s: a CertificateVerify that does not verify with the
 * certificate, as a peer holding a stolen certificate would send.
 */
static inline EVP_PKEY *mismatched_key(const tw_key *pub, const tw_key *priv)
{
    unsigned char point[256];
    size_t len = 0;
    BIGNUM *scalar = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;

    assert_non_null(bld);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_get_octet_string_param(pub->pkey,
                                                     OSSL_PKEY_PARAM_PUB_KEY,
                                                     point, sizeof(point),
                                                     &len), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(priv->pkey, OSSL_PKEY_PARAM_PRIV_KEY,
                                           &scalar), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_utf8_string(
                         bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_octet_string(
                         bld, OSSL_PKEY_PARAM_PUB_KEY, point, len), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY,
                                            scalar), 1);
    assert_non_null(params = OSSL_PARAM_BLD_to_param(bld));
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params), 1);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(scalar);
    EVP_PKEY_CTX_free(ctx);
    return key;
}

/* Drive `raw` and `tw` until neither moves; `raw` reads once more after its
 * handshake, to receive the alert.  Returns the alert `raw` received (the
 * SSL_R_ reason), or 0. */
static inline unsigned long drive(SSL *raw, tw_conn *tw, int *tw_rc)
{
    int raw_rc = -1;
    char buf[16];

    *tw_rc = TW_WANT_READ;
    for (int i = 0; i < 100; i++) {
        if (raw_rc != 1) {
            ERR_clear_error();
            raw_rc = SSL_do_handshake(raw);
            if (raw_rc != 1 && SSL_get_error(raw, raw_rc) == SSL_ERROR_SSL)
                return ERR_GET_REASON(ERR_peek_last_error());
        }
        if (pair_pending(*tw_rc))
            *tw_rc = tw_conn_handshake(tw);
        if (raw_rc == 1 && !pair_pending(*tw_rc)) {
            ERR_clear_error();
            if (SSL_read(raw, buf, sizeof(buf)) <= 0 &&
                ERR_peek_last_error() != 0)
                return ERR_GET_REASON(ERR_peek_last_error());
        }
    }
    return 0;
}

#endif
