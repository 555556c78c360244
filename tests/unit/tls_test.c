/*
 * tls_test.c - servers, clients and connections, in one process over
 * socketpairs (as libtls's tlstest.c does): handshakes, refusals with their
 * reasons on both sides, policy, expectations, reload and resumption.
 */
#include "unit_helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

struct pki {
    char *dir;
    char ca[4096], server_cert[4096], server_key[4096];
    char client_cert[4096], client_key[4096];
    char other_cert[4096], other_key[4096]; /* from another CA */
    char crl[4096];
    tw_cert *ca_cert, *client;
    tw_key *ca_key;
};

static void write_pair(struct pki *p, const char *name, const tw_cert *cert,
                       const tw_key *key, char *cert_path, char *key_path)
{
    tw_err err;
    char file[256];

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
    tw_key *ok = th_key("ec-p256"), *zk = th_key("ec-p256");
    tw_cert *server, *zxc, *other;
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
    zxc = th_ca("/O=ZXC Inc./CN=zxc.com", zk);
    other = th_sign(&(struct th_spec){.subject = "/CN=localhost/O=MailServer",
                                      .purposes = TW_PURPOSE_CLIENT},
                    ok, zxc, zk);
    th_path(p->ca, p->dir, "ca.cert.pem");
    assert_int_equal(tw_cert_write_file(p->ca_cert, p->ca, &err), 0);
    write_pair(p, "server", server, sk, p->server_cert, p->server_key);
    write_pair(p, "client", p->client, ck, p->client_cert, p->client_key);
    write_pair(p, "other", other, ok, p->other_cert, p->other_key);
    th_path(p->crl, p->dir, "crl.pem");
    tw_cert_free(server);
    tw_cert_free(zxc);
    tw_cert_free(other);
    tw_key_free(sk);
    tw_key_free(ck);
    tw_key_free(ok);
    tw_key_free(zk);
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

static tw_config *server_config(const struct pki *p, const char *rule)
{
    tw_config *cfg = tw_config_new();

    assert_non_null(cfg);
    assert_int_equal(tw_config_set_ca_file(cfg, p->ca), 0);
    assert_int_equal(tw_config_set_keypair_file(cfg, p->server_cert,
                                                p->server_key), 0);
    if (rule != NULL && tw_config_add_policy_rule(cfg, rule) != 0)
        fail_msg("rule %s: %s", rule, tw_config_error(cfg));
    return cfg;
}

static tw_config *client_config(const struct pki *p, const char *cert,
                                const char *key, int max_version)
{
    tw_config *cfg = tw_config_new();

    assert_non_null(cfg);
    assert_int_equal(tw_config_set_ca_file(cfg, p->ca), 0);
    if (cert != NULL)
        assert_int_equal(tw_config_set_keypair_file(cfg, cert, key), 0);
    assert_int_equal(tw_config_set_protocols(cfg, TW_TLS_1_2, max_version), 0);
    return cfg;
}

/* A server and a client connection over a socketpair. */
struct pair {
    int fds[2];
    tw_conn *s, *c;
    int s_rc, c_rc;
};

static void pair_open(struct pair *pr, tw_server *srv, tw_client *cli,
                      const char *host)
{
    tw_err err;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pr->fds), 0);
    fcntl(pr->fds[0], F_SETFL, O_NONBLOCK);
    fcntl(pr->fds[1], F_SETFL, O_NONBLOCK);
    pr->s = tw_server_accept(srv, pr->fds[0], &err);
    pr->c = tw_client_connect(cli, pr->fds[1], host, &err);
    assert_non_null(pr->s);
    assert_non_null(pr->c);
}

static void pair_close(struct pair *pr)
{
    tw_conn_free(pr->s);
    tw_conn_free(pr->c);
    close(pr->fds[0]);
    close(pr->fds[1]);
}

/* Drive both handshakes until neither wants more; then, as a TLS 1.3 client
 * learns of a refusal only when it reads, exchange one message. */
static void pump(struct pair *pr)
{
    char buf[64];
    long n;

    pr->s_rc = pr->c_rc = TW_WANT_READ;
    for (int i = 0; i < 100; i++) {
        if (pr->c_rc == TW_WANT_READ || pr->c_rc == TW_WANT_WRITE)
            pr->c_rc = tw_conn_handshake(pr->c);
        if (pr->s_rc == TW_WANT_READ || pr->s_rc == TW_WANT_WRITE)
            pr->s_rc = tw_conn_handshake(pr->s);
    }
    if (pr->c_rc == 0 && pr->s_rc == 0) {
        assert_int_equal(tw_conn_write(pr->c, "ping", 4), 4);
        for (int i = 0; i < 50 && (n = tw_conn_read(pr->s, buf, sizeof(buf))) < 0;)
            i++;
        assert_int_equal(tw_conn_write(pr->s, "pong", 4), 4);
        for (int i = 0; i < 50 && (n = tw_conn_read(pr->c, buf, sizeof(buf))) < 0;)
            i++;
        assert_int_equal(n, 4);
        /* TLS 1.3 tickets arrive behind the data; read them too. */
        n = tw_conn_read(pr->c, buf, sizeof(buf));
        assert_true(n == TW_WANT_READ || n > 0);
    } else if (pr->c_rc == 0) {
        for (int i = 0; i < 50; i++) {
            n = tw_conn_read(pr->c, buf, sizeof(buf));
            if (n != TW_WANT_READ)
                break;
        }
        pr->c_rc = (int)n;
    }
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
    sc = server_config(p, NULL);
    cc = client_config(p, p->client_cert, p->client_key, max_version);
    assert_non_null(srv = tw_server_new(sc, &err));
    assert_non_null(cli = tw_client_new(cc, &err));
    pair_open(&pr, srv, cli, "localhost");
    pump(&pr);
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
    pair_close(&pr);
    tw_client_free(cli);
    tw_server_free(srv);
    tw_config_free(sc);
    tw_config_free(cc);
    teardown((void **)&p);
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

/* Run one handshake with the given client files and server rule. */
static void refused(struct pki *p, const char *cert, const char *key,
                    int max_version, const char *host, const char *expect,
                    struct pair *pr, tw_server **srv, tw_client **cli)
{
    tw_config *sc = server_config(p, NULL);
    tw_config *cc = client_config(p, cert, key, max_version);
    tw_err err;

    if (expect != NULL)
        assert_int_equal(tw_config_add_expectation(cc, expect), 0);
    assert_non_null(*srv = tw_server_new(sc, &err));
    assert_non_null(*cli = tw_client_new(cc, &err));
    pair_open(pr, *srv, *cli, host);
    pump(pr);
    tw_config_free(sc);
    tw_config_free(cc);
}

static void done(struct pair *pr, tw_server *srv, tw_client *cli)
{
    pair_close(pr);
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

        refused(p, p->other_cert, p->other_key, versions[i], "localhost", NULL,
                &pr, &srv, &cli);
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
    tw_config *sc = server_config(p, "read O=MailServer");
    tw_config *cc = client_config(p, p->client_cert, p->client_key, TW_TLS_1_3);
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
    pair_open(&pr, srv, cli, "localhost");
    pump(&pr);
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
    tw_config *sc = server_config(p, NULL);
    tw_config *cc = client_config(p, p->client_cert, p->client_key, TW_TLS_1_3);
    tw_server *srv;
    tw_client *cli;
    struct pair pr;
    struct pollfd pfd;
    char buf[64];
    tw_err err;

    assert_non_null(srv = tw_server_new(sc, &err));
    assert_non_null(cli = tw_client_new(cc, &err));
    pair_open(&pr, srv, cli, "localhost");
    pump(&pr);
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
        tw_config *sc = server_config(p, NULL);
        tw_config *cc = client_config(p, p->client_cert, p->client_key,
                                      versions[v]);
        tw_server *srv;
        tw_client *cli;
        struct pair first, second, third;
        tw_err err;

        if (v >= 2)
            assert_int_equal(tw_config_set_ticket_keys_file(sc, keys), 0);
        assert_non_null(srv = tw_server_new(sc, &err));
        assert_non_null(cli = tw_client_new(cc, &err));
        assert_int_equal(tw_server_generation(srv), 1);
        pair_open(&first, srv, cli, "localhost");
        pump(&first);
        assert_int_equal(first.s_rc, 0);
        assert_int_equal(tw_conn_resumed(first.s), 0);
        pair_open(&second, srv, cli, "localhost");
        pump(&second);
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
        pair_open(&third, srv, cli, "localhost");
        pump(&third);
        assert_int_equal(third.s_rc, -1);
        assert_string_equal(tw_reason_name(tw_conn_err(third.s)->reason),
                            "revoked");
        assert_int_equal(third.c_rc, -1);
        assert_string_equal(tw_reason_name(tw_conn_err(third.c)->reason),
                            "revoked");
        pair_close(&first);
        pair_close(&second);
        pair_close(&third);
        unlink(p->crl);
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
        cmocka_unit_test_setup_teardown(unknown_ca_both_sides, setup, teardown),
        cmocka_unit_test_setup_teardown(no_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(client_refuses_server, setup, teardown),
        cmocka_unit_test_setup_teardown(policy_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(pending_after_read_ahead, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(reload_and_resumption, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
