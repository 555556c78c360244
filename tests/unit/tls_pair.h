/*
 * tls_pair.h - what the unit tests of server connections share: a small
 * PKI in a scratch directory (a CA, the Invoice Server's pair, the Mail
 * Server's), servers and clients built from it, and a client and a server
 * in one process over a socketpair.
 *
 * Header-only (static inline), like unit_helpers.h; include it after
 * unit_helpers.h and tls_internal.h.
 */
#ifndef TW_TLS_PAIR_H
#define TW_TLS_PAIR_H

#include <fcntl.h>
#include <sys/socket.h>

struct pki {
    char *dir;
    char ca[4096], server_cert[4096], server_key[4096];
    char client_cert[4096], client_key[4096], crl[4096];
    tw_cert *ca_cert, *client;
    tw_key *ca_key;
};

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

static inline int pki_setup(void **state)
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

/* The server's config: CA, its pair, "read O=MailServer". */
static inline tw_config *server_config(const struct pki *p)
{
    tw_config *cfg = tw_config_new();

    assert_non_null(cfg);
    assert_int_equal(tw_config_set_ca_file(cfg, p->ca), 0);
    assert_int_equal(tw_config_set_keypair_file(cfg, p->server_cert,
                                                p->server_key), 0);
    assert_int_equal(tw_config_add_policy_rule(cfg, "read O=MailServer"), 0);
    return cfg;
}

static inline tw_server *server_new(const struct pki *p, tw_config **cfg)
{
    tw_server *srv;
    tw_err err;

    *cfg = server_config(p);
    assert_non_null(srv = tw_server_new(*cfg, &err));
    return srv;
}

static inline tw_client *client_new(const struct pki *p, int version)
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

/* Open and handshake, leaving the outcome in s_rc and c_rc (0: done). */
static inline void pair_try(struct pair *pr, tw_server *srv, tw_client *cli)
{
    tw_err err;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pr->fds), 0);
    fcntl(pr->fds[0], F_SETFL, O_NONBLOCK);
    fcntl(pr->fds[1], F_SETFL, O_NONBLOCK);
    assert_non_null(pr->s = tw_server_accept(srv, pr->fds[0], &err));
    assert_non_null(pr->c = tw_client_connect(cli, pr->fds[1], "localhost",
                                              &err));
    pr->s_rc = pr->c_rc = TW_WANT_READ;
    for (int i = 0; i < 100 && (pr->s_rc < -1 || pr->c_rc < -1); i++) {
        if (pr->c_rc == TW_WANT_READ || pr->c_rc == TW_WANT_WRITE)
            pr->c_rc = tw_conn_handshake(pr->c);
        if (pr->s_rc == TW_WANT_READ || pr->s_rc == TW_WANT_WRITE)
            pr->s_rc = tw_conn_handshake(pr->s);
    }
}

/* Open and handshake; then one message each way (TLS 1.3 tickets arrive
 * behind the server's). */
static inline void pair_run(struct pair *pr, tw_server *srv, tw_client *cli)
{
    char buf[64];
    long n = -1;

    pair_try(pr, srv, cli);
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
static inline void pair_close(struct pair *pr)
{
    (void)tw_conn_shutdown(pr->s);
    (void)tw_conn_shutdown(pr->c);
    tw_conn_free(pr->s);
    tw_conn_free(pr->c);
    close(pr->fds[0]);
    close(pr->fds[1]);
}

#endif
