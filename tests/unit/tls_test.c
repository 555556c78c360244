/*
 * tls_test.c - servers, clients and connections, in one process over
 * socketpairs (as libtls's tlstest.c does): handshakes, refusals with their
 * reasons on both sides, policy, expectations, reload and resumption.
 */
#include "unit_helpers.h"
#include "tls_internal.h"

#include "tls_pair.h"

#include <poll.h>

/* The PKI of tls_pair.h, and a client of another CA (/O=ZXC Inc./CN=zxc.com)
 * with the same subject, in other.cert.pem and other.key.pem. */
static int setup(void **state)
{
    tw_key *ok = th_key("ec-p256"), *zk = th_key("ec-p256");
    tw_cert *zxc, *other;
    char cert[4096], key[4096];

    pki_setup(state);
    zxc = th_ca("/O=ZXC Inc./CN=zxc.com", zk);
    other = th_sign(&(struct th_spec){.subject = "/CN=localhost/O=MailServer",
                                      .purposes = TW_PURPOSE_CLIENT},
                    ok, zxc, zk);
    write_pair(*state, "other", other, ok, cert, key);
    tw_cert_free(zxc);
    tw_cert_free(other);
    tw_key_free(ok);
    tw_key_free(zk);
    return 0;
}

/* The PKI's client, speaking TLS 1.2 up to max_version. */
static tw_config *client_config_up_to(const struct pki *p, int max_version)
{
    return client_config(p->ca, p->client_cert, p->client_key, TW_TLS_1_2,
                         max_version);
}

static void good_handshake(int max_version, const char *version)
{
    struct pki *p = NULL;
    tw_config *sc, *cc;
    tw_server *srv;
    tw_client *cli;
    struct pair pr;
    char roles[64];
    tw_err err;

    setup((void **)&p);
    sc = server_config_with_rule(p, NULL);
    cc = client_config_up_to(p, max_version);
    assert_non_null(srv = tw_server_new(sc, &err));
    assert_non_null(cli = tw_client_new(cc, &err));
    pair_settle(&pr, srv, cli, "localhost");
    assert_int_equal(pr.s_rc, 0);
    assert_int_equal(pr.c_rc, 0);
    assert_string_equal(tw_conn_version(pr.s), version);
    assert_string_equal(tw_identity_subject(tw_conn_peer(pr.s)),
                        "/CN=localhost/O=MailServer");
    assert_string_equal(tw_identity_subject(tw_conn_peer(pr.c)),
                        "/CN=localhost/O=InvoiceServer");
    assert_int_equal(tw_conn_allows(pr.s, "write", NULL), 1);
    assert_int_equal(tw_conn_roles(pr.s, roles, sizeof(roles)), 1);
    assert_string_equal(roles, "*");
    assert_int_equal(tw_server_has_policy(srv), 0);
    pair_free(&pr);
    tw_client_free(cli);
    tw_server_free(srv);
    tw_config_free(sc);
    tw_config_free(cc);
    pki_teardown((void **)&p);
}

static void handshake_tls13(void **state)
{
    (void)state;
    good_handshake(TW_TLS_1_3, "TLSv1.3");
}

static void handshake_tls12(void **state)
{
    (void)state;
    good_handshake(TW_TLS_1_2, "TLSv1.2");
}

/* Run one handshake with the given client files, host name and
 * expectation. */
static void refused(struct pki *p, const char *cert, const char *key,
                    int max_version, const char *host, const char *expect,
                    struct pair *pr, tw_server **srv, tw_client **cli)
{
    tw_config *sc = server_config_with_rule(p, NULL);
    tw_config *cc = client_config(p->ca, cert, key, TW_TLS_1_2, max_version);
    tw_err err;

    if (expect != NULL)
        assert_int_equal(tw_config_add_expectation(cc, expect), 0);
    assert_non_null(*srv = tw_server_new(sc, &err));
    assert_non_null(*cli = tw_client_new(cc, &err));
    pair_settle(pr, *srv, *cli, host);
    tw_config_free(sc);
    tw_config_free(cc);
}

static void done(struct pair *pr, tw_server *srv, tw_client *cli)
{
    pair_free(pr);
    tw_client_free(cli);
    tw_server_free(srv);
}

static void unknown_ca_both_sides(void **state)
{
    struct pki *p = *state;
    int versions[] = {TW_TLS_1_2, TW_TLS_1_3};

    for (int i = 0; i < 2; i++) {
        struct pair pr;
        tw_server *srv;
        tw_client *cli;
        const tw_err *se, *ce;
        tw_identity *id;
        char cert[4096], key[4096];

        refused(p, th_path(cert, p->dir, "other.cert.pem"),
                th_path(key, p->dir, "other.key.pem"), versions[i],
                "localhost", NULL, &pr, &srv, &cli);
        assert_int_equal(pr.s_rc, -1);
        se = tw_conn_err(pr.s);
        assert_string_equal(tw_error_class_name(se->cls), "peer_rejected");
        assert_string_equal(tw_reason_name(se->reason), "unknown_ca");
        assert_non_null(strstr(se->msg, "the client's certificate "
                                        "/CN=localhost/O=MailServer (issuer "
                                        "/O=ZXC Inc./CN=zxc.com"));
        id = tw_conn_refused_identity(pr.s);
        assert_non_null(id);
        assert_string_equal(tw_identity_issuer(id), "/O=ZXC Inc./CN=zxc.com");
        tw_identity_free(id);
        assert_int_equal(pr.c_rc, -1);
        ce = tw_conn_err(pr.c);
        assert_string_equal(tw_error_class_name(ce->cls), "rejected_by_peer");
        assert_string_equal(tw_reason_name(ce->reason), "unknown_ca");
        assert_non_null(strstr(ce->msg, "the server rejected our certificate "
                                        "(TLS alert unknown_ca)"));
        done(&pr, srv, cli);
    }
}

static void no_certificate(void **state)
{
    struct pki *p = *state;
    struct pair pr;
    tw_server *srv;
    tw_client *cli;

    refused(p, NULL, NULL, TW_TLS_1_3, "localhost", NULL, &pr, &srv, &cli);
    assert_int_equal(pr.s_rc, -1);
    assert_string_equal(tw_reason_name(tw_conn_err(pr.s)->reason),
                        "no_certificate");
    assert_null(tw_conn_refused_identity(pr.s));
    assert_int_equal(pr.c_rc, -1);
    assert_string_equal(tw_error_class_name(tw_conn_err(pr.c)->cls),
                        "rejected_by_peer");
    assert_string_equal(tw_reason_name(tw_conn_err(pr.c)->reason),
                        "no_certificate");
    done(&pr, srv, cli);
}

static void client_refuses_server(void **state)
{
    struct pki *p = *state;
    struct pair pr;
    tw_server *srv;
    tw_client *cli;

    /* Wrong host name. */
    refused(p, p->client_cert, p->client_key, TW_TLS_1_3, "invoice.example",
            NULL, &pr, &srv, &cli);
    assert_int_equal(pr.c_rc, -1);
    assert_string_equal(tw_reason_name(tw_conn_err(pr.c)->reason),
                        "name_mismatch");
    assert_non_null(strstr(tw_conn_err(pr.c)->msg, "invoice.example"));
    done(&pr, srv, cli);
    /* Not the expected identity (parsed, not text). */
    refused(p, p->client_cert, p->client_key, TW_TLS_1_3, "localhost",
            "O=BillingServer", &pr, &srv, &cli);
    assert_int_equal(pr.c_rc, -1);
    assert_string_equal(tw_error_class_name(tw_conn_err(pr.c)->cls),
                        "peer_rejected");
    assert_string_equal(tw_reason_name(tw_conn_err(pr.c)->reason),
                        "policy_denied");
    done(&pr, srv, cli);
    /* The expected identity passes. */
    refused(p, p->client_cert, p->client_key, TW_TLS_1_3, "localhost",
            "O=InvoiceServer", &pr, &srv, &cli);
    assert_int_equal(pr.c_rc, 0);
    done(&pr, srv, cli);
}

static void policy_roles(void **state)
{
    struct pki *p = *state;
    tw_config *sc = server_config(p);
    tw_config *cc = client_config_up_to(p, TW_TLS_1_3);
    tw_server *srv;
    tw_client *cli;
    struct pair pr;
    const char *why = NULL;
    const tw_identity *id;
    char roles[64];
    tw_err err;

    assert_int_equal(tw_config_add_policy_rule(sc, "metrics CN=nobody"), 0);
    assert_non_null(srv = tw_server_new(sc, &err));
    assert_non_null(cli = tw_client_new(cc, &err));
    assert_int_equal(tw_server_has_policy(srv), 1);
    pair_settle(&pr, srv, cli, "localhost");
    assert_int_equal(pr.s_rc, 0);
    assert_int_equal(tw_conn_allows(pr.s, "read", &why), 1);
    assert_string_equal(why, "read O=MailServer");
    assert_int_equal(tw_conn_allows(pr.s, "write", NULL), 0);
    assert_int_equal(tw_conn_allows(pr.s, "metrics", NULL), 0);
    assert_int_equal(tw_conn_roles(pr.s, roles, sizeof(roles)), 1);
    assert_string_equal(roles, "read");
    /* The decisions above parsed the identity for themselves; asking for
     * it parses it once and keeps it, and decisions then use the kept one. */
    id = tw_conn_peer(pr.s);
    assert_non_null(id);
    assert_ptr_equal(tw_conn_peer(pr.s), id);
    assert_string_equal(tw_identity_subject(id), "/CN=localhost/O=MailServer");
    assert_int_equal(tw_conn_allows(pr.s, "read", NULL), 1);
    assert_int_equal(tw_conn_allows(pr.s, "write", NULL), 0);
    done(&pr, srv, cli);
    tw_config_free(sc);
    tw_config_free(cc);
}

/* Records are read ahead: two records arrive in one read(2), the socket is
 * then empty, and tw_conn_pending says the second is still to be read. */
static void pending_after_read_ahead(void **state)
{
    struct pki *p = *state;
    tw_config *sc = server_config_with_rule(p, NULL);
    tw_config *cc = client_config_up_to(p, TW_TLS_1_3);
    tw_server *srv;
    tw_client *cli;
    struct pair pr;
    struct pollfd pfd;
    char buf[64];
    tw_err err;

    assert_non_null(srv = tw_server_new(sc, &err));
    assert_non_null(cli = tw_client_new(cc, &err));
    pair_settle(&pr, srv, cli, "localhost");
    assert_int_equal(pr.s_rc, 0);
    assert_int_equal(tw_conn_pending(pr.s), 0);
    assert_int_equal(tw_conn_write(pr.c, "first", 5), 5);
    assert_int_equal(tw_conn_write(pr.c, "second", 6), 6);
    assert_int_equal(tw_conn_read(pr.s, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "first", 5);
    pfd = (struct pollfd){.fd = pr.fds[0], .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0); /* nothing left in the socket */
    assert_true(tw_conn_pending(pr.s) > 0);
    assert_int_equal(tw_conn_read(pr.s, buf, sizeof(buf)), 6);
    assert_memory_equal(buf, "second", 6);
    assert_int_equal(tw_conn_pending(pr.s), 0);
    assert_int_equal(tw_conn_read(pr.s, buf, sizeof(buf)), TW_WANT_READ);
    done(&pr, srv, cli);
    tw_config_free(sc);
    tw_config_free(cc);
}

static void config_errors(void **state)
{
    struct pki *p = *state;
    tw_config *cfg = tw_config_new();
    tw_server *srv;
    tw_err err;

    assert_int_equal(tw_config_set_ca_file(cfg, "/nonexistent/ca.pem"), -1);
    assert_string_equal(tw_error_class_name(tw_config_error_class(cfg)), "io");
    assert_non_null(strstr(tw_config_error(cfg), "/nonexistent/ca.pem"));
    assert_int_equal(tw_config_set_protocols(cfg, 0x0301, TW_TLS_1_3), -1);
    assert_string_equal(tw_error_class_name(tw_config_error_class(cfg)),
                        "usage");
    assert_int_equal(tw_config_add_policy_rule(cfg, "read X=1"), -1);
    assert_int_equal(tw_config_set_tickets(cfg, 9), -1);
    /* A server without a CA file is refused. */
    assert_int_equal(tw_config_set_keypair_file(cfg, p->server_cert,
                                                p->server_key), 0);
    assert_null(srv = tw_server_new(cfg, &err));
    assert_string_equal(tw_error_class_name(err.cls), "usage");
    /* The key of another certificate. */
    assert_int_equal(tw_config_set_ca_file(cfg, p->ca), 0);
    assert_int_equal(tw_config_set_keypair_file(cfg, p->server_cert,
                                                p->client_key), 0);
    assert_null(srv = tw_server_new(cfg, &err));
    assert_non_null(strstr(err.msg, "does not belong to the certificate"));
    tw_config_free(cfg);
}

static void write_crl(struct pki *p, const tw_cert *revoked)
{
    tw_identity *id = tw_identity_from_cert(revoked, NULL);
    tw_revoked r = {.serial_hex = tw_identity_serial(id),
                    .revoked_at = time(NULL), .reason = 1};
    tw_err err;

    unlink(p->crl);
    assert_int_equal(tw_crl_write_file(p->ca_cert, p->ca_key, &r, 1, 1, 30,
                                       p->crl, &err), 0);
    tw_identity_free(id);
}

/* Resumption from the session cache (default) or from tickets (with a
 * shared ticket keys file), on TLS 1.2 and 1.3; a reload that revokes the
 * client ends resumption for it either way. */
static void reload_and_resumption(void **state)
{
    struct pki *p = *state;
    int versions[] = {TW_TLS_1_2, TW_TLS_1_3, TW_TLS_1_2, TW_TLS_1_3};
    char keys[4096];

    th_path(keys, p->dir, "ticket.keys");
    th_write(keys, "000102030405060708090a0b0c0d0e0f"
                   "101112131415161718191a1b1c1d1e1f"
                   "202122232425262728292a2b2c2d2e2f"
                   "303132333435363738393a3b3c3d3e3f"
                   "404142434445464748494a4b4c4d4e4f\n", 161);
    for (int v = 0; v < 4; v++) {
        tw_config *sc = server_config_with_rule(p, NULL);
        tw_config *cc = client_config_up_to(p, versions[v]);
        tw_server *srv;
        tw_client *cli;
        struct pair first, second, third;
        tw_err err;

        if (v >= 2)
            assert_int_equal(tw_config_set_ticket_keys_file(sc, keys), 0);
        assert_non_null(srv = tw_server_new(sc, &err));
        assert_non_null(cli = tw_client_new(cc, &err));
        assert_int_equal(tw_server_generation(srv), 1);
        pair_settle(&first, srv, cli, "localhost");
        assert_int_equal(first.s_rc, 0);
        assert_int_equal(tw_conn_resumed(first.s), 0);
        pair_settle(&second, srv, cli, "localhost");
        assert_int_equal(second.s_rc, 0);
        assert_int_equal(tw_conn_resumed(second.s), 1);
        /* A reload with a bad CRL is refused and changes nothing. */
        unlink(p->crl);
        th_write(p->crl, "garbage", 7);
        assert_int_equal(tw_config_set_crl_file(sc, p->crl), 0);
        assert_int_equal(tw_server_reload(srv, sc, &err), -1);
        assert_non_null(strstr(err.msg, p->crl));
        assert_int_equal(tw_server_generation(srv), 1);
        assert_int_equal(tw_conn_refresh(first.s), 0);
        /* Revoke the client: its ticket must not resume; the full
         * handshake then refuses it. */
        write_crl(p, p->client);
        assert_int_equal(tw_server_reload(srv, sc, &err), 0);
        assert_int_equal(tw_server_generation(srv), 2);
        assert_int_equal(tw_conn_generation(first.s), 1);
        /* The open connection learns of the revocation at its next
         * request, not only at its next handshake. */
        assert_int_equal(tw_conn_refresh(first.s), -1);
        assert_string_equal(tw_reason_name(tw_conn_err(first.s)->reason),
                            "revoked");
        assert_int_equal(tw_conn_generation(first.s), 2);
        pair_settle(&third, srv, cli, "localhost");
        assert_int_equal(third.s_rc, -1);
        assert_string_equal(tw_reason_name(tw_conn_err(third.s)->reason),
                            "revoked");
        assert_int_equal(third.c_rc, -1);
        assert_string_equal(tw_reason_name(tw_conn_err(third.c)->reason),
                            "revoked");
        pair_free(&first);
        pair_free(&second);
        pair_free(&third);
        unlink(p->crl);
        tw_client_free(cli);
        tw_server_free(srv);
        tw_config_free(sc);
        tw_config_free(cc);
    }
}

/* One handshake and exchange; `fresh`: the client offers no session.  The
 * connection is closed cleanly (close_notify), as invoice-server does:
 * OpenSSL forgets the session of one freed without it.  Returns whether
 * the server resumed a session. */
static int connect_once(tw_server *srv, tw_client *cli, int fresh)
{
    return pair_connect(srv, cli, fresh, NULL, NULL);
}

static void cache_setup(const struct pki *p, int max_version, size_t bytes,
                        tw_server **srv, tw_client **cli)
{
    tw_config *sc = server_config_with_rule(p, NULL);
    tw_config *cc = client_config_up_to(p, max_version);
    tw_err err;

    assert_int_equal(tw_config_set_session_cache_size(sc, bytes), 0);
    assert_non_null(*srv = tw_server_new(sc, &err));
    assert_non_null(*cli = tw_client_new(cc, &err));
    tw_config_free(sc);
    tw_config_free(cc);
}

/* The default cache kept every session (11 KB each, up to 20,480): 2,000
 * reconnecting clients grew invoice-server from 16 MB to 202 MB.  Now it
 * never holds more than its bound, and still resumes the newest sessions. */
static void session_cache_grew_without_bound(void **state)
{
    struct pki *p = *state;
    int versions[] = {TW_TLS_1_2, TW_TLS_1_3};

    for (int v = 0; v < 2; v++) {
        tw_server *srv;
        tw_client *cli;

        cache_setup(p, versions[v], 16384, &srv, &cli);
        for (int i = 0; i < 100; i++) {
            assert_int_equal(connect_once(srv, cli, 1), 0);
            assert_true(tw_server_session_cache_bytes(srv) <= 16384);
            assert_true(tw_server_session_cache_count(srv) >= 1);
        }
        /* A few sessions fit, not a hundred: the certificate (charged
         * once, about 6 KB), room for the next connection's own (7 KB),
         * and the rest in compact sessions (0.4 KB each). */
        assert_in_range(tw_server_session_cache_count(srv), 5, 20);
        /* The newest session is still there, and resumes. */
        assert_int_equal(connect_once(srv, cli, 0), 1);
        tw_client_free(cli);
        tw_server_free(srv);
    }
}

/* A stored session resumes after its first connection is closed (the
 * resumption test above keeps it open), on TLS 1.2 and 1.3. */
static void session_cache_resumes(void **state)
{
    struct pki *p = *state;
    int versions[] = {TW_TLS_1_2, TW_TLS_1_3};

    for (int v = 0; v < 2; v++) {
        tw_server *srv;
        tw_client *cli;

        cache_setup(p, versions[v], 10 * 1024 * 1024, &srv, &cli);
        assert_int_equal(tw_server_session_cache_count(srv), 0);
        assert_int_equal(connect_once(srv, cli, 1), 0);
        assert_int_equal(tw_server_session_cache_count(srv), 1);
        assert_true(tw_server_session_cache_bytes(srv) > 4096);
        assert_int_equal(connect_once(srv, cli, 0), 1);
        assert_int_equal(connect_once(srv, cli, 0), 1);
        tw_client_free(cli);
        tw_server_free(srv);
    }
}

/* Size 0 turns the cache off: nothing is kept, nothing resumes. */
static void session_cache_off_means_no_resumption(void **state)
{
    struct pki *p = *state;
    int versions[] = {TW_TLS_1_2, TW_TLS_1_3};

    for (int v = 0; v < 2; v++) {
        tw_server *srv;
        tw_client *cli;

        cache_setup(p, versions[v], 0, &srv, &cli);
        assert_int_equal(connect_once(srv, cli, 1), 0);
        assert_int_equal(connect_once(srv, cli, 0), 0);
        assert_int_equal(tw_server_session_cache_count(srv), 0);
        assert_int_equal(tw_server_session_cache_bytes(srv), 0);
        tw_client_free(cli);
        tw_server_free(srv);
    }
}

/* A reload starts an empty cache: no session outlives a CA or CRL change. */
static void session_cache_survived_reload(void **state)
{
    struct pki *p = *state;
    tw_config *sc = server_config_with_rule(p, NULL);
    tw_server *srv;
    tw_client *cli;
    size_t empty;
    tw_err err;

    cache_setup(p, TW_TLS_1_3, 10 * 1024 * 1024, &srv, &cli);
    empty = tw_server_session_cache_bytes(srv);
    assert_int_equal(connect_once(srv, cli, 1), 0);
    assert_int_equal(tw_server_session_cache_count(srv), 1);
    assert_int_equal(tw_server_reload(srv, sc, &err), 0);
    assert_int_equal(tw_server_session_cache_count(srv), 0);
    assert_int_equal(tw_server_session_cache_bytes(srv), empty);
    assert_int_equal(connect_once(srv, cli, 0), 0);
    tw_client_free(cli);
    tw_server_free(srv);
    tw_config_free(sc);
}

/* A session past its lifetime is not resumed, and leaves the cache. */
static void session_cache_resumed_expired_session(void **state)
{
    struct pki *p = *state;
    int versions[] = {TW_TLS_1_2, TW_TLS_1_3};

    for (int v = 0; v < 2; v++) {
        tw_server *srv;
        tw_client *cli;
        tw__gen *g;

        cache_setup(p, versions[v], 10 * 1024 * 1024, &srv, &cli);
        g = tw__server_current(srv);
        /* Two seconds, not one hour (one could end at once: time(NULL)
         * counts whole seconds). */
        SSL_CTX_set_timeout(g->ctx, 2);
        tw__gen_unref(g);
        assert_int_equal(connect_once(srv, cli, 1), 0);
        assert_int_equal(tw_server_session_cache_count(srv), 1);
        sleep(3);
        assert_int_equal(tw_server_session_cache_count(srv), 0);
        assert_int_equal(connect_once(srv, cli, 0), 0);
        tw_client_free(cli);
        tw_server_free(srv);
    }
}

static void session_cache_size_errors(void **state)
{
    tw_config *cfg = tw_config_new();

    (void)state;
    assert_int_equal(tw_config_set_session_cache_size(cfg, 100), -1);
    assert_string_equal(tw_error_class_name(tw_config_error_class(cfg)),
                        "usage");
    assert_string_equal(tw_config_error(cfg),
                        "a session cache of 100 bytes holds no session: give "
                        "0 to turn it off, or at least 16384 bytes");
    assert_int_equal(tw_config_set_session_cache_size(cfg, 0), 0);
    assert_int_equal(tw_config_set_session_cache_size(cfg, 16383), -1);
    assert_int_equal(tw_config_set_session_cache_size(cfg, 16384), 0);
    tw_config_free(cfg);
}

/* A raw OpenSSL client (our client would not offer weak algorithms) with
 * the test's client certificate, against our server. */
static SSL *raw_client(const struct pki *p, int version, const char *sigalgs,
                       int fd)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl;

    assert_non_null(ctx);
    SSL_CTX_set_security_level(ctx, 0); /* let it offer SHA-1 and SHA-224 */
    assert_int_equal(SSL_CTX_set_min_proto_version(ctx, version), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(ctx, version), 1);
    assert_int_equal(SSL_CTX_use_certificate_file(ctx, p->client_cert,
                                                  SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, p->client_key,
                                                 SSL_FILETYPE_PEM), 1);
    if (sigalgs != NULL)
        assert_int_equal(SSL_CTX_set1_sigalgs_list(ctx, sigalgs), 1);
    assert_non_null(ssl = SSL_new(ctx));
    SSL_CTX_free(ctx); /* the SSL keeps it */
    assert_int_equal(SSL_set_fd(ssl, fd), 1);
    SSL_set_connect_state(ssl);
    return ssl;
}

/* Run our server against a raw client; the server's result. */
static int raw_handshake(tw_conn *s, SSL *c)
{
    int s_rc = TW_WANT_READ, c_rc = -1;
    char buf[16];

    for (int i = 0; i < 100; i++) {
        if (c_rc != 1)
            c_rc = SSL_do_handshake(c);
        if (s_rc == TW_WANT_READ || s_rc == TW_WANT_WRITE)
            s_rc = tw_conn_handshake(s);
    }
    if (c_rc == 1 && s_rc == 0) /* TLS 1.3: the client reads the tickets */
        (void)SSL_read(c, buf, sizeof(buf));
    return s_rc;
}

/* SHA-224 (TLS 1.2 and 1.3) and SHA-1 and DSA (TLS 1.2) were offered and
 * accepted: a TLS 1.2 client that offers only those now fails the
 * handshake. */
static void weak_signature_algorithms_accepted(void **state)
{
    struct pki *p = *state;
    struct {
        int version;
        const char *sigalgs;
    } cases[] = {
        {TLS1_2_VERSION, "ECDSA+SHA224:RSA+SHA224"},
        {TLS1_2_VERSION, "ECDSA+SHA1:RSA+SHA1:DSA+SHA256:DSA+SHA1"},
    }; /* TLS 1.3: OpenSSL's client will not send a hello with SHA-224
        * only; what our server asks for there is checked below */
    tw_config *sc = server_config_with_rule(p, NULL);
    tw_server *srv;
    tw_err err;

    assert_non_null(srv = tw_server_new(sc, &err));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fds[2];
        tw_conn *s;
        SSL *c;

        pair_sockets(fds);
        assert_non_null(s = tw_server_accept(srv, fds[0], &err));
        c = raw_client(p, cases[i].version, cases[i].sigalgs, fds[1]);
        assert_int_equal(raw_handshake(s, c), -1);
        assert_string_equal(tw_error_class_name(tw_conn_err(s)->cls),
                            "protocol");
        assert_string_equal(tw_conn_err(s)->msg,
                            "TLS handshake failed: no shared signature "
                            "algorithms");
        SSL_free(c);
        tw_conn_free(s);
        close(fds[0]);
        close(fds[1]);
    }
    tw_server_free(srv);
    tw_config_free(sc);
}

static void assert_strong_sigalgs(SSL *ssl, const char *whose)
{
    int n = SSL_get_sigalgs(ssl, -1, NULL, NULL, NULL, NULL, NULL);

    if (n <= 0)
        fail_msg("%s: no signature algorithms", whose);
    for (int i = 0; i < n; i++) {
        int sign = 0, hash = 0;

        SSL_get_sigalgs(ssl, i, &sign, &hash, NULL, NULL, NULL);
        if (hash == NID_sha1 || hash == NID_sha224 || hash == NID_md5 ||
            sign == EVP_PKEY_DSA)
            fail_msg("%s offers %s with %s", whose, OBJ_nid2sn(sign),
                     OBJ_nid2sn(hash));
    }
}

/* What we advertise: the server's CertificateRequest (seen by a client)
 * and our client's ClientHello (seen by the server). */
static void weak_signature_algorithms_advertised(void **state)
{
    struct pki *p = *state;
    int versions[] = {TW_TLS_1_2, TW_TLS_1_3};
    tw_config *sc = server_config_with_rule(p, NULL);
    tw_server *srv;
    tw_err err;

    assert_non_null(srv = tw_server_new(sc, &err));
    for (int v = 0; v < 2; v++) {
        tw_config *cc = client_config_up_to(p, versions[v]);
        tw_client *cli;
        struct pair pr;
        int fds[2];
        tw_conn *s;
        SSL *c;

        pair_sockets(fds);
        assert_non_null(s = tw_server_accept(srv, fds[0], &err));
        c = raw_client(p, versions[v], NULL, fds[1]);
        assert_int_equal(raw_handshake(s, c), 0);
        assert_strong_sigalgs(c, "the server's CertificateRequest");
        SSL_free(c);
        tw_conn_free(s);
        close(fds[0]);
        close(fds[1]);

        assert_non_null(cli = tw_client_new(cc, &err));
        pair_settle(&pr, srv, cli, "localhost");
        assert_int_equal(pr.s_rc, 0);
        assert_strong_sigalgs(pr.s->ssl, "the client's ClientHello");
        pair_free(&pr);
        tw_client_free(cli);
        tw_config_free(cc);
    }
    tw_server_free(srv);
    tw_config_free(sc);
}

/* The seed's certificates: RSA-2048, X.509 v1, signed sha256WithRSA, no
 * extensions; TLS 1.3 offers PKCS#1 v1.5 for certificates only, and they
 * must still be accepted both ways. */
static void seed_rsa_certificates_with_strong_sigalgs(void **state)
{
    struct pki *p = *state;
    tw_key *cak = th_key("rsa-2048"), *sk = th_key("rsa-2048");
    tw_key *ck = th_key("rsa-2048");
    X509 *ca, *sx, *cx;
    tw_cert *certs[1];
    char ca_path[4096], s_cert[4096], s_key[4096], c_cert[4096], c_key[4096];
    int versions[] = {TW_TLS_1_2, TW_TLS_1_3};
    tw_err err;

    ca = th_raw_cert(X509_VERSION_1, "ABC Inc.", NULL, cak->pkey, cak->pkey,
                     "20240101000000Z", "20991231000000Z", 0);
    sx = th_raw_cert(X509_VERSION_1, "localhost", ca, sk->pkey, cak->pkey,
                     "20240101000000Z", "20991231000000Z", 0);
    cx = th_raw_cert(X509_VERSION_1, "localhost", ca, ck->pkey, cak->pkey,
                     "20240101000000Z", "20991231000000Z", 0);
    th_path(ca_path, p->dir, "seed-ca.pem");
    th_path(s_cert, p->dir, "seed-server.pem");
    th_path(s_key, p->dir, "seed-server.key");
    th_path(c_cert, p->dir, "seed-client.pem");
    th_path(c_key, p->dir, "seed-client.key");
    certs[0] = th_wrap(ca);
    th_write_certs(ca_path, (const tw_cert *const *)certs, 1);
    tw_cert_free(certs[0]);
    certs[0] = th_wrap(sx);
    th_write_certs(s_cert, (const tw_cert *const *)certs, 1);
    tw_cert_free(certs[0]);
    certs[0] = th_wrap(cx);
    th_write_certs(c_cert, (const tw_cert *const *)certs, 1);
    tw_cert_free(certs[0]);
    assert_int_equal(tw_key_write_file(sk, s_key, NULL, &err), 0);
    assert_int_equal(tw_key_write_file(ck, c_key, NULL, &err), 0);
    tw_key_free(cak);
    tw_key_free(sk);
    tw_key_free(ck);
    for (int v = 0; v < 2; v++) {
        tw_config *sc = config_with_files(ca_path, s_cert, s_key);
        tw_config *cc = client_config(ca_path, c_cert, c_key, TW_TLS_1_2,
                                      versions[v]);
        tw_server *srv;
        tw_client *cli;
        struct pair pr;

        assert_non_null(srv = tw_server_new(sc, &err));
        assert_non_null(cli = tw_client_new(cc, &err));
        pair_settle(&pr, srv, cli, "localhost");
        if (pr.s_rc != 0 || pr.c_rc != 0)
            fail_msg("TLS 1.%d: server: %s; client: %s", 2 + v,
                     tw_conn_err(pr.s)->msg, tw_conn_err(pr.c)->msg);
        pair_free(&pr);
        tw_client_free(cli);
        tw_server_free(srv);
        tw_config_free(sc);
        tw_config_free(cc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handshake_tls13),
        cmocka_unit_test(handshake_tls12),
        cmocka_unit_test_setup_teardown(unknown_ca_both_sides, setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(no_certificate, setup, pki_teardown),
        cmocka_unit_test_setup_teardown(client_refuses_server, setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(policy_roles, setup, pki_teardown),
        cmocka_unit_test_setup_teardown(pending_after_read_ahead, setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(config_errors, setup, pki_teardown),
        cmocka_unit_test_setup_teardown(reload_and_resumption, setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(session_cache_grew_without_bound,
                                        setup, pki_teardown),
        cmocka_unit_test_setup_teardown(session_cache_resumes, setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(session_cache_off_means_no_resumption,
                                        setup, pki_teardown),
        cmocka_unit_test_setup_teardown(session_cache_survived_reload, setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(session_cache_resumed_expired_session,
                                        setup, pki_teardown),
        cmocka_unit_test(session_cache_size_errors),
        cmocka_unit_test_setup_teardown(weak_signature_algorithms_accepted,
                                        setup, pki_teardown),
        cmocka_unit_test_setup_teardown(weak_signature_algorithms_advertised,
                                        setup, pki_teardown),
        cmocka_unit_test_setup_teardown(
            seed_rsa_certificates_with_strong_sigalgs, setup, pki_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
