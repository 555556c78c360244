/*
 * sesscache_test.c - the server's session cache after issue 15: sessions
 * kept without the client's certificate once their connection closed, the
 * certificate kept once per client and lent to the connections that
 * resume (src/lib/sesscache.c).  Client and server in one process over
 * socketpairs, as tls_test.c.
 */
#include "unit_helpers.h"
#include "tls_internal.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/socket.h>

struct pki {
    char *dir;
    char ca[4096], server_cert[4096], server_key[4096];
    char client_cert[4096], client_key[4096], crl[4096];
    tw_cert *ca_cert, *client;
    tw_key *ca_key;
};

static void write_pair(struct pki *p, const char *name, const tw_cert *cert,
                       const tw_key *key, char *cert_path, char *key_path)
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

static int setup(void **state)
{
    struct pki *p = calloc(1, sizeof(*p));
    tw_key *sk = th_key("ec-p256"), *ck = th_key("ec-p256");
    tw_cert *server;
    tw_err err;

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

static int teardown(void **state)
{
    struct pki *p = *state;

    tw_cert_free(p->ca_cert);
    tw_cert_free(p->client);
    tw_key_free(p->ca_key);
    th_rmdir(p->dir);
    free(p);
    return 0;
}

static tw_server *server_new(const struct pki *p, tw_config **cfg)
{
    tw_server *srv;
    tw_err err;

    assert_non_null(*cfg = tw_config_new());
    assert_int_equal(tw_config_set_ca_file(*cfg, p->ca), 0);
    assert_int_equal(tw_config_set_keypair_file(*cfg, p->server_cert,
                                                p->server_key), 0);
    assert_int_equal(tw_config_add_policy_rule(*cfg, "read O=MailServer"), 0);
    assert_non_null(srv = tw_server_new(*cfg, &err));
    return srv;
}

static tw_client *client_new(const struct pki *p, int version)
{
    tw_config *cfg = tw_config_new();
    tw_client *cli;
    tw_err err;

    assert_non_null(cfg);
    assert_int_equal(tw_config_set_ca_file(cfg, p->ca), 0);
    assert_int_equal(tw_config_set_keypair_file(cfg, p->client_cert,
                                                p->client_key), 0);
    assert_int_equal(tw_config_set_protocols(cfg, version, version), 0);
    assert_non_null(cli = tw_client_new(cfg, &err));
    tw_config_free(cfg);
    return cli;
}

struct pair {
    int fds[2];
    tw_conn *s, *c;
    int s_rc, c_rc;
};

/* Open and handshake; then one message each way (TLS 1.3 tickets arrive
 * behind the server's). */
static void pair_run(struct pair *pr, tw_server *srv, tw_client *cli)
{
    char buf[64];
    long n = -1;
    tw_err err;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pr->fds), 0);
    fcntl(pr->fds[0], F_SETFL, O_NONBLOCK);
    fcntl(pr->fds[1], F_SETFL, O_NONBLOCK);
    assert_non_null(pr->s = tw_server_accept(srv, pr->fds[0], &err));
    assert_non_null(pr->c = tw_client_connect(cli, pr->fds[1], "localhost",
                                              &err));
    pr->s_rc = pr->c_rc = TW_WANT_READ;
    for (int i = 0; i < 100 && (pr->s_rc != 0 || pr->c_rc != 0); i++) {
        if (pr->c_rc == TW_WANT_READ || pr->c_rc == TW_WANT_WRITE)
            pr->c_rc = tw_conn_handshake(pr->c);
        if (pr->s_rc == TW_WANT_READ || pr->s_rc == TW_WANT_WRITE)
            pr->s_rc = tw_conn_handshake(pr->s);
    }
    assert_int_equal(pr->s_rc, 0);
    assert_int_equal(pr->c_rc, 0);
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

/* Close with close_notify both ways, so that OpenSSL keeps the session. */
static void pair_close(struct pair *pr)
{
    (void)tw_conn_shutdown(pr->s);
    (void)tw_conn_shutdown(pr->c);
    tw_conn_free(pr->s);
    tw_conn_free(pr->c);
    close(pr->fds[0]);
    close(pr->fds[1]);
}

static const int versions[] = {TW_TLS_1_2, TW_TLS_1_3};

/*
 * A session kept after its connection closed no longer holds the client's
 * certificate inside OpenSSL: the connection that resumes it still knows
 * its peer (identity, verified, roles), from the certificate the cache
 * keeps for the client.  Twice in a row: a TLS 1.3 resumption's new ticket
 * is made from a session without a certificate.
 */
static void resumed_connection_knows_its_peer(void **state)
{
    struct pki *p = *state;

    for (int v = 0; v < 2; v++) {
        tw_config *sc;
        tw_server *srv = server_new(p, &sc);
        tw_client *cli = client_new(p, versions[v]);
        struct pair pr;
        const char *why;
        char roles[64];

        pair_run(&pr, srv, cli);
        assert_int_equal(tw_conn_resumed(pr.s), 0);
        pair_close(&pr);
        for (int round = 0; round < 2; round++) {
            tw_err err;

            pair_run(&pr, srv, cli);
            assert_int_equal(tw_conn_resumed(pr.s), 1);
            assert_null(SSL_get0_peer_certificate(pr.s->ssl));
            assert_non_null(tw_conn_peer(pr.s));
            assert_string_equal(tw_identity_subject(tw_conn_peer(pr.s)),
                                "/CN=localhost/O=MailServer");
            assert_int_equal(tw_conn_peer_verified(pr.s, &err), 1);
            assert_int_equal(tw_conn_allows(pr.s, "read", &why), 1);
            assert_int_equal(tw_conn_allows(pr.s, "write", &why), 0);
            assert_int_equal(tw_conn_roles(pr.s, roles, sizeof(roles)), 1);
            assert_string_equal(roles, "read");
            pair_close(&pr);
        }
        tw_client_free(cli);
        tw_server_free(srv);
        tw_config_free(sc);
    }
}

/* A connection resumed from a kept session is checked again at a reload
 * like any other: a CRL that revokes its client refuses it at its next
 * request (tw_conn_refresh verifies the certificate the cache lent). */
static void reload_refuses_a_resumed_connection(void **state)
{
    struct pki *p = *state;

    for (int v = 0; v < 2; v++) {
        tw_identity *id = tw_identity_from_cert(p->client, NULL);
        tw_revoked r = {.serial_hex = tw_identity_serial(id),
                        .revoked_at = time(NULL), .reason = 1};
        tw_config *sc;
        tw_server *srv = server_new(p, &sc);
        tw_client *cli = client_new(p, versions[v]);
        struct pair first, second;
        tw_err err;

        pair_run(&first, srv, cli);
        pair_close(&first);
        pair_run(&second, srv, cli);
        assert_int_equal(tw_conn_resumed(second.s), 1);
        assert_int_equal(tw_conn_refresh(second.s), 0);
        unlink(p->crl);
        assert_int_equal(tw_crl_write_file(p->ca_cert, p->ca_key, &r, 1, 1,
                                           30, p->crl, &err), 0);
        assert_int_equal(tw_config_set_crl_file(sc, p->crl), 0);
        assert_int_equal(tw_server_reload(srv, sc, &err), 0);
        assert_int_equal(tw_conn_refresh(second.s), -1);
        assert_string_equal(tw_reason_name(tw_conn_err(second.s)->reason),
                            "revoked");
        assert_int_equal(tw_conn_peer_verified(second.s, NULL), 0);
        pair_close(&second);
        unlink(p->crl);
        tw_identity_free(id);
        tw_client_free(cli);
        tw_server_free(srv);
        tw_config_free(sc);
    }
}

/*
 * Issue 15: each stored session held a parsed copy of the client's
 * certificate, 6.4 KB of heap per session with ECDSA P-256 (9.6 KB of
 * RSS in invoice-server).  Now 200 sessions of one client share one, and
 * each costs about 1.5 KB.  (glibc's statistics; under a sanitizer's
 * allocator they may read 0, and then only the counts are checked.)
 */
static void session_cache_kept_a_certificate_per_session(void **state)
{
    struct pki *p = *state;

    for (int v = 0; v < 2; v++) {
        tw_config *sc;
        tw_server *srv = server_new(p, &sc);
        struct mallinfo2 m0, m1;
        struct pair pr;

        /* Warm up OpenSSL's own caches first. */
        for (int i = 0; i < 20; i++) {
            tw_client *cli = client_new(p, versions[v]);

            pair_run(&pr, srv, cli);
            pair_close(&pr);
            tw_client_free(cli);
        }
        m0 = mallinfo2();
        for (int i = 0; i < 200; i++) {
            tw_client *cli = client_new(p, versions[v]);

            pair_run(&pr, srv, cli);
            assert_int_equal(tw_conn_resumed(pr.s), 0);
            pair_close(&pr);
            tw_client_free(cli);
        }
        m1 = mallinfo2();
        assert_int_equal(tw_server_session_cache_count(srv), 220);
        assert_true(m1.uordblks < m0.uordblks + 200 * 2048);
        tw_server_free(srv);
        tw_config_free(sc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(resumed_connection_knows_its_peer,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(reload_refuses_a_resumed_connection,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            session_cache_kept_a_certificate_per_session, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
