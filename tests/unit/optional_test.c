/*
 * optional_test.c - a server that asks for a client certificate and lets
 * each request decide (TW_CLIENT_CERT_OPTIONAL): client and server in one
 * process over socketpairs, TLS 1.2 and 1.3, and a client built from
 * OpenSSL alone for the one that signs with another key.
 *
 * What it holds to: no certificate, or one that fails verification, still
 * makes a connection, but the peer is unverified with the reason and
 * sentence a REQUIRED server's handshake gives, and gets no role; a good
 * certificate is verified and gets its roles; a client that cannot prove
 * it holds its key gets no connection; sessions of unverified peers are
 * not resumed; a reload re-decides, without failing the connection.
 */
#include "unit_helpers.h"
#include "tls_internal.h"

#include "tls_pair.h"

static const unsigned char good_serial[] = {0x0b, 0, 0, 0, 0, 0, 0, 0x01};
static const unsigned char revoked_serial[] = {0x0b, 0, 0, 0, 0, 0, 0, 0x02};
static const unsigned char usage_serial[] = {0x0b, 0, 0, 0, 0, 0, 0, 0x03};
static const unsigned char stranger_serial[] = {0x0b, 0, 0, 0, 0, 0, 0, 0x04};

/* The client certificates, each a file pair. */
enum who { GOOD, REVOKED, EXPIRED, UNKNOWN_CA, WRONG_USAGE, NOBODY, WHO_N };

struct fx {
    char *dir;
    char ca_file[4096], crl[4096], empty_crl[4096];
    char server_cert[4096], server_key[4096];
    char cert[WHO_N][4096], key[WHO_N][4096];
    tw_key *ca_key, *good_key, *stranger_key;
    tw_cert *ca, *good, *revoked;
};

/* Rules that match every client certificate here: roles are withheld by
 * verification, not by a rule that does not match. */
static const char *const rules[] = {
    "renew O=MailServer",
    "renew CN=expired",
};

#define NO_CERTIFICATE                                                        \
    "no certificate was presented: the peer must send one (give it a "       \
    "certificate and key issued by the CA)"

static void write_client_pair(struct fx *f, enum who w, const char *name,
                              const tw_cert *cert, const tw_key *key)
{
    char file[64];
    tw_err err;

    snprintf(file, sizeof(file), "%s.pem", name);
    th_path(f->cert[w], f->dir, file);
    snprintf(file, sizeof(file), "%s.key", name);
    th_path(f->key[w], f->dir, file);
    if (tw_cert_write_file(cert, f->cert[w], &err) != 0 ||
        tw_key_write_file(key, f->key[w], NULL, &err) != 0)
        fail_msg("%s: %s", name, err.msg);
}

static int group_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    tw_key *sk = th_key("ec-p256"), *rk = th_key("ec-p256");
    tw_key *ek = th_key("ec-p256"), *uk = th_key("ec-p256");
    tw_key *zk = th_key("ec-p256"), *ok = th_key("ec-p256");
    tw_cert *server, *zxc, *stranger, *usage, *expired;
    tw_identity *id;
    tw_revoked r;
    tw_err err;

    assert_non_null(f);
    f->dir = th_mkdtemp();
    f->ca_key = th_key("ec-p256");
    f->good_key = th_key("ec-p256");
    f->stranger_key = th_key("ec-p256");
    f->ca = th_ca("/O=ABC Inc.", f->ca_key);
    server = th_sign(&(struct th_spec){.subject = "/CN=localhost/O=CA Server",
                                       .purposes = TW_PURPOSE_SERVER,
                                       .sans = {"dns:localhost"}},
                     sk, f->ca, f->ca_key);
    f->good = th_sign(&(struct th_spec){.subject = "/CN=mail/O=MailServer",
                                        .purposes = TW_PURPOSE_CLIENT,
                                        .serial = good_serial,
                                        .serial_len = sizeof(good_serial)},
                      f->good_key, f->ca, f->ca_key);
    f->revoked = th_sign(&(struct th_spec){.subject = "/CN=revoked/O=MailServer",
                                           .purposes = TW_PURPOSE_CLIENT,
                                           .serial = revoked_serial,
                                           .serial_len = sizeof(revoked_serial)},
                         rk, f->ca, f->ca_key);
    usage = th_sign(&(struct th_spec){.subject = "/CN=server-only/O=MailServer",
                                      .purposes = TW_PURPOSE_SERVER,
                                      .serial = usage_serial,
                                      .serial_len = sizeof(usage_serial)},
                    uk, f->ca, f->ca_key);
    zxc = th_ca("/O=ZXC Inc./CN=zxc.com", zk);
    stranger = th_sign(&(struct th_spec){.subject = "/CN=stranger/O=MailServer",
                                         .purposes = TW_PURPOSE_CLIENT,
                                         .serial = stranger_serial,
                                         .serial_len = sizeof(stranger_serial)},
                       ok, zxc, zk);
    expired = th_wrap(th_raw_cert(X509_VERSION_3, "expired", f->ca->x509,
                                  ek->pkey, f->ca_key->pkey, "20200101000000Z",
                                  "20210101000000Z", 0x0b05));
    th_path(f->ca_file, f->dir, "ca.pem");
    assert_int_equal(tw_cert_write_file(f->ca, f->ca_file, &err), 0);
    th_path(f->server_cert, f->dir, "server.pem");
    th_path(f->server_key, f->dir, "server.key");
    assert_int_equal(tw_cert_write_file(server, f->server_cert, &err), 0);
    assert_int_equal(tw_key_write_file(sk, f->server_key, NULL, &err), 0);
    write_client_pair(f, GOOD, "good", f->good, f->good_key);
    write_client_pair(f, REVOKED, "revoked", f->revoked, rk);
    write_client_pair(f, EXPIRED, "expired", expired, ek);
    write_client_pair(f, UNKNOWN_CA, "stranger", stranger, ok);
    write_client_pair(f, WRONG_USAGE, "usage", usage, uk);
    /* The CA's CRL, revoking "revoked"; and one revoking nothing. */
    assert_non_null(id = tw_identity_from_cert(f->revoked, NULL));
    r = (tw_revoked){.serial_hex = tw_identity_serial(id),
                     .revoked_at = time(NULL) - 60, .reason = 1};
    assert_int_equal(tw_crl_write_file(f->ca, f->ca_key, &r, 1, 1, 30,
                                       th_path(f->crl, f->dir, "ca.crl"),
                                       &err), 0);
    assert_int_equal(tw_crl_write_file(f->ca, f->ca_key, NULL, 0, 2, 30,
                                       th_path(f->empty_crl, f->dir,
                                               "empty.crl"), &err), 0);
    tw_identity_free(id);
    tw_cert_free(server);
    tw_cert_free(zxc);
    tw_cert_free(stranger);
    tw_cert_free(usage);
    tw_cert_free(expired);
    tw_key_free(sk);
    tw_key_free(rk);
    tw_key_free(ek);
    tw_key_free(uk);
    tw_key_free(zk);
    tw_key_free(ok);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fx *f = *state;

    tw_cert_free(f->ca);
    tw_cert_free(f->good);
    tw_cert_free(f->revoked);
    tw_key_free(f->ca_key);
    tw_key_free(f->good_key);
    tw_key_free(f->stranger_key);
    th_rmdir(f->dir);
    free(f);
    return 0;
}

/* ------------------------------------------------- servers and clients */

/* A server asking for client certificates in `mode`, with the CRL `crl`
 * and, with_rules, the rules above. */
static tw_config *server_config_in_mode(const struct fx *f, int mode,
                                        const char *crl, int with_rules)
{
    tw_config *cfg = config_with_files(f->ca_file, f->server_cert,
                                       f->server_key);

    assert_int_equal(tw_config_set_crl_file(cfg, crl), 0);
    assert_int_equal(tw_config_set_client_cert(cfg, mode), 0);
    for (size_t i = 0; with_rules && i < sizeof(rules) / sizeof(rules[0]); i++)
        assert_int_equal(tw_config_add_policy_rule(cfg, rules[i]), 0);
    return cfg;
}

static tw_server *server_in_mode(const struct fx *f, int mode, const char *crl,
                                 int with_rules, const char *ticket_keys)
{
    tw_config *cfg = server_config_in_mode(f, mode, crl, with_rules);
    tw_server *srv;

    if (ticket_keys != NULL)
        assert_int_equal(tw_config_set_ticket_keys_file(cfg, ticket_keys), 0);
    srv = server_from(cfg);
    tw_config_free(cfg);
    return srv;
}

/* The client `w`, speaking `version` only. */
static tw_client *client_as(const struct fx *f, enum who w, int version)
{
    tw_config *cfg = client_config(f->ca_file, w == NOBODY ? NULL : f->cert[w],
                                   f->key[w], version, version);
    tw_client *cli = client_from(cfg);

    tw_config_free(cfg);
    return cli;
}

/* One connection of client `w` to a fresh server; the server's result. */
static int connect_once(const struct fx *f, int mode, int with_rules,
                        enum who w, int version, struct pair *pr,
                        tw_server **srv, tw_client **cli)
{
    *srv = server_in_mode(f, mode, f->crl, with_rules, NULL);
    *cli = client_as(f, w, version);
    pair_settle(pr, *srv, *cli, "localhost");
    return pr->s_rc;
}

static void done(struct pair *pr, tw_server *srv, tw_client *cli)
{
    pair_close(pr);
    tw_client_free(cli);
    tw_server_free(srv);
}

/* A peer that must have no role, though the policy's rules match it. */
static void assert_no_role(tw_conn *s)
{
    const char *why = "untouched";
    char roles[64];

    assert_int_equal(tw_conn_allows(s, "renew", &why), 0);
    assert_string_equal(why, "untouched");
    assert_int_equal(tw_conn_allows(s, NULL, NULL), 0);
    assert_int_equal(tw_conn_roles(s, roles, sizeof(roles)), 0);
    assert_string_equal(roles, "");
}

static const int versions[] = {TW_TLS_1_2, TW_TLS_1_3};
static const char *const version_names[] = {"TLSv1.2", "TLSv1.3"};

/* ---------------------------------------------------------- no certificate */

static void no_certificate_connects_unverified_without_roles(void **state)
{
    struct fx *f = *state;

    for (int v = 0; v < 2; v++) {
        for (int with_rules = 0; with_rules < 2; with_rules++) {
            struct pair pr;
            tw_server *srv;
            tw_client *cli;
            tw_err why;

            assert_int_equal(connect_once(f, TW_CLIENT_CERT_OPTIONAL,
                                          with_rules, NOBODY, versions[v],
                                          &pr, &srv, &cli), 0);
            assert_int_equal(pr.c_rc, 0);
            assert_string_equal(tw_conn_version(pr.s), version_names[v]);
            assert_int_equal(tw_conn_peer_verified(pr.s, &why), 0);
            th_assert_rejected(why, TW_REASON_NO_CERTIFICATE, NO_CERTIFICATE);
            assert_int_equal(tw_conn_peer_verified(pr.s, NULL), 0);
            assert_null(tw_conn_peer(pr.s));
            assert_null(tw_conn_refused_identity(pr.s));
            assert_no_role(pr.s);
            /* Not an error of the connection. */
            assert_int_equal(tw_conn_err(pr.s)->cls, TW_ERR_NONE);
            /* The client verified the server, as always. */
            assert_int_equal(tw_conn_peer_verified(pr.c, NULL), 1);
            done(&pr, srv, cli);
        }
    }
}

/* --------------------------------------------------- a good certificate */

static void good_certificate_is_verified_and_gets_its_roles(void **state)
{
    struct fx *f = *state;

    for (int v = 0; v < 2; v++) {
        for (int mode = 0; mode < 2; mode++) {
            struct pair pr;
            tw_server *srv;
            tw_client *cli;
            const char *why = NULL;
            char roles[64];
            tw_err err;

            assert_int_equal(connect_once(f, mode ? TW_CLIENT_CERT_OPTIONAL
                                                  : TW_CLIENT_CERT_REQUIRED,
                                          1, GOOD, versions[v], &pr, &srv,
                                          &cli), 0);
            err.cls = TW_ERR_INTERNAL; /* cleared when verified */
            assert_int_equal(tw_conn_peer_verified(pr.s, &err), 1);
            assert_int_equal(err.cls, TW_ERR_NONE);
            assert_string_equal(tw_identity_subject(tw_conn_peer(pr.s)),
                                "/CN=mail/O=MailServer");
            assert_int_equal(tw_conn_allows(pr.s, "renew", &why), 1);
            assert_string_equal(why, "renew O=MailServer");
            assert_int_equal(tw_conn_allows(pr.s, "admin", NULL), 0);
            assert_int_equal(tw_conn_roles(pr.s, roles, sizeof(roles)), 1);
            assert_string_equal(roles, "renew");
            done(&pr, srv, cli);
            /* No policy: every verified peer has every role. */
            assert_int_equal(connect_once(f, mode ? TW_CLIENT_CERT_OPTIONAL
                                                  : TW_CLIENT_CERT_REQUIRED,
                                          0, GOOD, versions[v], &pr, &srv,
                                          &cli), 0);
            assert_int_equal(tw_conn_allows(pr.s, "admin", NULL), 1);
            assert_int_equal(tw_conn_roles(pr.s, roles, sizeof(roles)), 1);
            assert_string_equal(roles, "*");
            done(&pr, srv, cli);
        }
    }
}

/* --------------------------------------------- certificates that fail */

/* What a REQUIRED server says of the client `w`: its handshake's refusal. */
static tw_err required_refusal(const struct fx *f, enum who w, int version)
{
    struct pair pr;
    tw_server *srv;
    tw_client *cli;
    tw_err err;

    assert_int_equal(connect_once(f, TW_CLIENT_CERT_REQUIRED, 1, w, version,
                                  &pr, &srv, &cli), -1);
    assert_int_equal(pr.c_rc, -1);
    err = *tw_conn_err(pr.s);
    done(&pr, srv, cli);
    return err;
}

static void refused_certificates_connect_unverified_with_the_reason(
    void **state)
{
    struct fx *f = *state;
    char usage[512];
    static const struct {
        enum who w;
        enum tw_reason reason;
        const char *subject, *serial;
        const char *sentence; /* NULL: usage[] */
    } cases[] = {
        {REVOKED, TW_REASON_REVOKED, "/CN=revoked/O=MailServer",
         "0B00000000000002",
         "the client's certificate /CN=revoked/O=MailServer (issuer /O=ABC "
         "Inc., serial 0B00000000000002) was revoked by its CA: issue a new "
         "one"},
        {EXPIRED, TW_REASON_EXPIRED, "/CN=expired", "0B05",
         "the client's certificate /CN=expired (issuer /O=ABC Inc., serial "
         "0B05) expired on 2021-01-01T00:00:00Z: issue a new one"},
        {UNKNOWN_CA, TW_REASON_UNKNOWN_CA, "/CN=stranger/O=MailServer",
         "0B00000000000004",
         "the client's certificate /CN=stranger/O=MailServer (issuer /O=ZXC "
         "Inc./CN=zxc.com, serial 0B00000000000004) was not issued by a "
         "trusted CA (issuer /O=ZXC Inc./CN=zxc.com is not in the CA file): "
         "issue it from the trusted CA, or trust its issuer"},
        {WRONG_USAGE, TW_REASON_WRONG_USAGE, "/CN=server-only/O=MailServer",
         "0B00000000000003", NULL},
    };
    tw_policy *policy = tw_policy_new(NULL);

    assert_non_null(policy);
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
        assert_int_equal(tw_policy_add_rule(policy, rules[i], NULL), 0);
    snprintf(usage, sizeof(usage),
             "the client's certificate /CN=server-only/O=MailServer (issuer "
             "/O=ABC Inc., serial 0B00000000000003) may not be used for this "
             "(%s): issue it with the right purpose (--server or --client)",
             X509_verify_cert_error_string(X509_V_ERR_INVALID_PURPOSE));
    for (int v = 0; v < 2; v++) {
        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
            const char *sentence = cases[k].sentence ? cases[k].sentence
                                                     : usage;
            tw_err required = required_refusal(f, cases[k].w, versions[v]);
            const tw_identity *id;
            tw_identity *refused;
            struct pair pr;
            tw_server *srv;
            tw_client *cli;
            tw_err why;

            /* REQUIRED: the handshake fails, with this reason. */
            th_assert_rejected(required, cases[k].reason, sentence);
            /* OPTIONAL: a connection, an unverified peer, the same words. */
            assert_int_equal(connect_once(f, TW_CLIENT_CERT_OPTIONAL, 1,
                                          cases[k].w, versions[v], &pr, &srv,
                                          &cli), 0);
            assert_int_equal(pr.c_rc, 0);
            assert_int_equal(tw_conn_peer_verified(pr.s, &why), 0);
            th_assert_rejected(why, cases[k].reason, sentence);
            assert_int_equal(tw_conn_err(pr.s)->cls, TW_ERR_NONE);
            /* The route can name the certificate it refuses... */
            assert_non_null(id = tw_conn_peer(pr.s));
            assert_string_equal(tw_identity_subject(id), cases[k].subject);
            assert_string_equal(tw_identity_serial(id), cases[k].serial);
            assert_non_null(refused = tw_conn_refused_identity(pr.s));
            assert_string_equal(tw_identity_serial(refused), cases[k].serial);
            tw_identity_free(refused);
            /* ...which a rule matches, and still it has no role. */
            assert_int_equal(tw_policy_allows(policy, id, "renew", NULL), 1);
            assert_no_role(pr.s);
            done(&pr, srv, cli);
            /* Without a policy (every verified peer has every role) too. */
            assert_int_equal(connect_once(f, TW_CLIENT_CERT_OPTIONAL, 0,
                                          cases[k].w, versions[v], &pr, &srv,
                                          &cli), 0);
            assert_int_equal(tw_conn_peer_verified(pr.s, NULL), 0);
            assert_no_role(pr.s);
            done(&pr, srv, cli);
        }
    }
    tw_policy_free(policy);
}

/* -------------------------------------- a handshake signed with another key */

/* The proof of the key stays a condition of the connection: a client that
 * signs with a key that is not its certificate's (a stolen certificate) is
 * refused in the handshake, whether its certificate verifies or not. */
static void client_signing_with_another_key_gets_no_connection(void **state)
{
    struct fx *f = *state;
    static const int raw_versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    EVP_PKEY *key = mismatched_key(f->good_key, f->stranger_key);
    EVP_PKEY *revoked_key = NULL;
    tw_key *rk = tw_key_load_file(f->key[REVOKED], NULL, NULL);

    assert_non_null(rk);
    revoked_key = mismatched_key(rk, f->stranger_key);
    for (int v = 0; v < 2; v++) {
        for (int k = 0; k < 2; k++) {
            tw_server *srv = server_in_mode(f, TW_CLIENT_CERT_OPTIONAL,
                                            f->crl, 1, NULL);
            const tw_cert *cert = k == 0 ? f->good : f->revoked;
            SSL_CTX *ctx;
            SSL *raw;
            tw_conn *s;
            tw_identity *refused;
            int fds[2], s_rc;
            char expected[512];
            tw_err err;

            pair_sockets(fds);
            assert_non_null(s = tw_server_accept(srv, fds[0], &err));
            raw = raw_peer(&ctx, 0, raw_versions[v], fds[1], cert->x509,
                           k == 0 ? key : revoked_key);
            assert_int_equal(drive(raw, s, &s_rc),
                             SSL_R_TLSV1_ALERT_DECRYPT_ERROR);
            assert_int_equal(s_rc, -1);
            snprintf(expected, sizeof(expected),
                     "the client's handshake signature does not verify with "
                     "the public key of its certificate %s (issuer /O=ABC "
                     "Inc., serial %s): the client is signing with a key that "
                     "does not belong to its certificate",
                     k == 0 ? "/CN=mail/O=MailServer"
                            : "/CN=revoked/O=MailServer",
                     k == 0 ? "0B00000000000001" : "0B00000000000002");
            th_assert_rejected(*tw_conn_err(s), TW_REASON_BAD_CERTIFICATE,
                               expected);
            assert_non_null(refused = tw_conn_refused_identity(s));
            assert_string_equal(tw_identity_serial(refused),
                                k == 0 ? "0B00000000000001"
                                       : "0B00000000000002");
            tw_identity_free(refused);
            assert_int_equal(tw_conn_peer_verified(s, NULL), 0);
            assert_no_role(s);
            SSL_free(raw);
            SSL_CTX_free(ctx);
            tw_conn_free(s);
            close(fds[0]);
            close(fds[1]);
            tw_server_free(srv);
        }
    }
    EVP_PKEY_free(key);
    EVP_PKEY_free(revoked_key);
    tw_key_free(rk);
}

/* ------------------------------------------------------------ resumption */

/*
 * Sessions of unverified peers are not resumed (ticket.c says why), from
 * the session cache or from tickets, TLS 1.2 and 1.3: each connection is a
 * full handshake that verifies again and gives its reason again.  A good
 * certificate's session resumes, and stays verified with its roles.
 */
static void unverified_sessions_are_not_resumed(void **state)
{
    struct fx *f = *state;
    static const struct {
        enum who w;
        enum tw_reason reason;
    } clients[] = {
        {NOBODY, TW_REASON_NO_CERTIFICATE},
        {REVOKED, TW_REASON_REVOKED},
        {UNKNOWN_CA, TW_REASON_UNKNOWN_CA},
        {GOOD, TW_REASON_NONE},
    };
    char keys[4096];

    th_path(keys, f->dir, "ticket.keys");
    th_write(keys, "000102030405060708090a0b0c0d0e0f"
                   "101112131415161718191a1b1c1d1e1f"
                   "202122232425262728292a2b2c2d2e2f"
                   "303132333435363738393a3b3c3d3e3f"
                   "404142434445464748494a4b4c4d4e4f\n", 161);
    for (int tickets = 0; tickets < 2; tickets++) {
        for (int v = 0; v < 2; v++) {
            for (size_t k = 0; k < sizeof(clients) / sizeof(clients[0]); k++) {
                tw_server *srv = server_in_mode(f, TW_CLIENT_CERT_OPTIONAL,
                                                f->crl, 1,
                                                tickets ? keys : NULL);
                tw_client *cli = client_as(f, clients[k].w, versions[v]);
                int good = clients[k].w == GOOD;

                for (int round = 0; round < 2; round++) {
                    struct pair pr;
                    tw_err why;

                    pair_settle(&pr, srv, cli, "localhost");
                    assert_int_equal(pr.s_rc, 0);
                    assert_int_equal(pr.c_rc, 0);
                    if (tw_conn_resumed(pr.s) != (good && round > 0))
                        fail_msg("%s, TLS 1.%d, client %zu, round %d: "
                                 "resumed %d", tickets ? "tickets" : "cache",
                                 2 + v, k, round, tw_conn_resumed(pr.s));
                    assert_int_equal(tw_conn_peer_verified(pr.s, &why), good);
                    if (good) {
                        assert_int_equal(tw_conn_allows(pr.s, "renew", NULL),
                                         1);
                    } else {
                        assert_string_equal(tw_reason_name(why.reason),
                                            tw_reason_name(clients[k].reason));
                        assert_no_role(pr.s);
                    }
                    pair_close(&pr);
                }
                if (!tickets && !good)
                    assert_int_equal(tw_server_session_cache_count(srv), 0);
                tw_client_free(cli);
                tw_server_free(srv);
            }
        }
    }
    unlink(keys);
}

/*
 * A verified session resumed after its certificate expired: from the
 * session cache it resumes (the cache is the generation's) and the
 * resumption check makes the peer unverified, expired, where a REQUIRED
 * server fails the handshake; a ticket is not accepted (ticket.c), and the
 * full handshake says expired.  Either way, the words of a full handshake.
 */
static void resumed_session_of_an_expired_certificate_is_unverified(
    void **state)
{
    struct fx *f = *state;
    char cert[4096], key[4096], keys[4096], not_before[32], not_after[32];
    char expected[512];
    time_t now = time(NULL), end = now + 2;
    tw_key *k = th_key("ec-p256");
    tw_cert *c;
    struct tm tm;
    tw_server *srv[2][2];
    tw_client *cli[2][2];
    tw_err err;

    strftime(not_before, sizeof(not_before), "%Y%m%d%H%M%SZ",
             gmtime_r(&(time_t){now - 60}, &tm));
    strftime(not_after, sizeof(not_after), "%Y%m%d%H%M%SZ",
             gmtime_r(&end, &tm));
    c = th_wrap(th_raw_cert(X509_VERSION_3, "brief", f->ca->x509, k->pkey,
                            f->ca_key->pkey, not_before, not_after, 0x0b06));
    assert_int_equal(tw_cert_write_file(c, th_path(cert, f->dir, "brief.pem"),
                                        &err), 0);
    assert_int_equal(tw_key_write_file(k, th_path(key, f->dir, "brief.key"),
                                       NULL, &err), 0);
    strftime(not_after, sizeof(not_after), "%Y-%m-%dT%H:%M:%SZ",
             gmtime_r(&end, &tm));
    snprintf(expected, sizeof(expected),
             "the client's certificate /CN=brief (issuer /O=ABC Inc., serial "
             "0B06) expired on %s: issue a new one", not_after);
    th_path(keys, f->dir, "ticket.keys");
    th_write(keys, "101112131415161718191a1b1c1d1e1f"
                   "000102030405060708090a0b0c0d0e0f"
                   "202122232425262728292a2b2c2d2e2f"
                   "303132333435363738393a3b3c3d3e3f"
                   "404142434445464748494a4b4c4d4e4f\n", 161);
    /* First connections, verified, while the certificate is valid. */
    for (int tickets = 0; tickets < 2; tickets++) {
        for (int v = 0; v < 2; v++) {
            tw_config *cc = client_config(f->ca_file, cert, key, versions[v],
                                          versions[v]);
            struct pair pr;

            srv[tickets][v] = server_in_mode(f, TW_CLIENT_CERT_OPTIONAL, f->crl,
                                             0, tickets ? keys : NULL);
            assert_non_null(cli[tickets][v] = tw_client_new(cc, &err));
            tw_config_free(cc);
            pair_settle(&pr, srv[tickets][v], cli[tickets][v], "localhost");
            assert_int_equal(pr.s_rc, 0);
            assert_int_equal(tw_conn_peer_verified(pr.s, NULL), 1);
            pair_close(&pr);
        }
    }
    sleep(3);
    for (int tickets = 0; tickets < 2; tickets++) {
        for (int v = 0; v < 2; v++) {
            struct pair pr;
            tw_err why;

            pair_settle(&pr, srv[tickets][v], cli[tickets][v], "localhost");
            assert_int_equal(pr.s_rc, 0);
            assert_int_equal(pr.c_rc, 0);
            assert_int_equal(tw_conn_resumed(pr.s), !tickets);
            assert_int_equal(tw_conn_peer_verified(pr.s, &why), 0);
            th_assert_rejected(why, TW_REASON_EXPIRED, expected);
            assert_string_equal(
                tw_identity_subject(tw_conn_peer(pr.s)), "/CN=brief");
            assert_no_role(pr.s);
            assert_int_equal(tw_conn_err(pr.s)->cls, TW_ERR_NONE);
            pair_close(&pr);
            tw_client_free(cli[tickets][v]);
            tw_server_free(srv[tickets][v]);
        }
    }
    unlink(keys);
    unlink(cert);
    unlink(key);
    tw_cert_free(c);
    tw_key_free(k);
}

/* --------------------------------------------------------------- reload */

/*
 * tw_conn_refresh in OPTIONAL mode: a reload that revokes the peer makes it
 * unverified (revoked), not an error of the connection; one that lifts the
 * revocation makes it verified again.  A peer without a certificate stays
 * as it was.
 */
static void refresh_decides_again_without_failing_the_connection(
    void **state)
{
    struct fx *f = *state;

    for (int v = 0; v < 2; v++) {
        tw_config *revoking = server_config_in_mode(
            f, TW_CLIENT_CERT_OPTIONAL, f->crl, 1);
        tw_config *lifting = server_config_in_mode(
            f, TW_CLIENT_CERT_OPTIONAL, f->empty_crl, 1);
        tw_server *srv = server_in_mode(f, TW_CLIENT_CERT_OPTIONAL,
                                        f->empty_crl, 1, NULL);
        tw_client *cli = client_as(f, REVOKED, versions[v]);
        tw_client *anon = client_as(f, NOBODY, versions[v]);
        struct pair pr, none;
        tw_err why;

        pair_settle(&pr, srv, cli, "localhost");
        pair_settle(&none, srv, anon, "localhost");
        assert_int_equal(pr.s_rc, 0);
        assert_int_equal(none.s_rc, 0);
        assert_int_equal(tw_conn_peer_verified(pr.s, NULL), 1);
        assert_int_equal(tw_conn_allows(pr.s, "renew", NULL), 1);
        assert_int_equal(tw_server_reload(srv, revoking, &why), 0);
        assert_int_equal(tw_conn_refresh(pr.s), 0);
        assert_int_equal(tw_conn_refresh(none.s), 0);
        assert_int_equal(tw_conn_err(pr.s)->cls, TW_ERR_NONE);
        assert_int_equal(tw_conn_peer_verified(pr.s, &why), 0);
        th_assert_rejected(why, TW_REASON_REVOKED,
                           "the client's certificate /CN=revoked/O=MailServer "
                           "(issuer /O=ABC Inc., serial 0B00000000000002) was "
                           "revoked by its CA: issue a new one");
        assert_no_role(pr.s);
        assert_int_equal(tw_conn_peer_verified(none.s, &why), 0);
        th_assert_rejected(why, TW_REASON_NO_CERTIFICATE, NO_CERTIFICATE);
        /* The connection still carries data. */
        assert_int_equal(tw_conn_write(pr.s, "403", 3), 3);
        assert_int_equal(tw_server_reload(srv, lifting, &why), 0);
        assert_int_equal(tw_conn_refresh(pr.s), 0);
        assert_int_equal(tw_conn_refresh(none.s), 0);
        assert_int_equal(tw_conn_peer_verified(pr.s, NULL), 1);
        assert_int_equal(tw_conn_allows(pr.s, "renew", NULL), 1);
        assert_int_equal(tw_conn_peer_verified(none.s, NULL), 0);
        assert_int_equal(tw_conn_generation(pr.s), 3);
        pair_close(&pr);
        pair_close(&none);
        tw_client_free(cli);
        tw_client_free(anon);
        tw_server_free(srv);
        tw_config_free(revoking);
        tw_config_free(lifting);
    }
}

/* REQUIRED mode keeps failing a refresh, and then grants nothing. */
static void required_refresh_still_fails_and_grants_nothing(void **state)
{
    struct fx *f = *state;
    tw_config *revoking = server_config_in_mode(f, TW_CLIENT_CERT_REQUIRED,
                                                f->crl, 1);
    tw_server *srv = server_in_mode(f, TW_CLIENT_CERT_REQUIRED, f->empty_crl,
                                    1, NULL);
    tw_client *cli = client_as(f, REVOKED, TW_TLS_1_3);
    struct pair pr;
    tw_err why;

    pair_settle(&pr, srv, cli, "localhost");
    assert_int_equal(pr.s_rc, 0);
    assert_int_equal(tw_conn_peer_verified(pr.s, NULL), 1);
    assert_int_equal(tw_server_reload(srv, revoking, &why), 0);
    assert_int_equal(tw_conn_refresh(pr.s), -1);
    th_assert_rejected(*tw_conn_err(pr.s), TW_REASON_REVOKED,
                       "the client's certificate /CN=revoked/O=MailServer "
                       "(issuer /O=ABC Inc., serial 0B00000000000002) was "
                       "revoked by its CA: issue a new one");
    assert_int_equal(tw_conn_peer_verified(pr.s, &why), 0);
    th_assert_rejected(why, TW_REASON_REVOKED, tw_conn_err(pr.s)->msg);
    assert_no_role(pr.s);
    pair_close(&pr);
    tw_client_free(cli);
    tw_server_free(srv);
    tw_config_free(revoking);
}

/* ------------------------------------------------------------- the API */

static void client_cert_mode_errors(void **state)
{
    struct fx *f = *state;
    tw_config *cfg = tw_config_new();
    tw_server *srv;
    tw_conn *s;
    int fds[2];
    tw_err err;

    assert_non_null(cfg);
    assert_int_equal(tw_config_set_client_cert(cfg, 2), -1);
    th_assert_err(cfg->err, TW_ERR_USAGE,
                  "client certificate mode 2 is unknown: give "
                  "TW_CLIENT_CERT_REQUIRED or TW_CLIENT_CERT_OPTIONAL (with "
                  "TW_CLIENT_CERT_ANY_PURPOSE or not)");
    assert_int_equal(tw_config_set_client_cert(cfg, -1), -1);
    assert_int_equal(tw_config_set_client_cert(
                         cfg, 2 | TW_CLIENT_CERT_ANY_PURPOSE), -1);
    assert_int_equal(tw_config_set_client_cert(
                         cfg, TW_CLIENT_CERT_OPTIONAL | TW_CLIENT_CERT_ANY_PURPOSE), 0);
    assert_int_equal(cfg->client_cert,
                     TW_CLIENT_CERT_OPTIONAL | TW_CLIENT_CERT_ANY_PURPOSE);
    assert_int_equal(tw_config_set_client_cert(cfg, TW_CLIENT_CERT_REQUIRED), 0);
    assert_int_equal(cfg->client_cert, TW_CLIENT_CERT_REQUIRED);
    assert_int_equal(tw_config_set_client_cert(cfg, TW_CLIENT_CERT_OPTIONAL),
                     0);
    assert_int_equal(cfg->client_cert, TW_CLIENT_CERT_OPTIONAL);
    tw_config_free(cfg);
    /* Before the handshake there is no peer to speak of. */
    srv = server_in_mode(f, TW_CLIENT_CERT_OPTIONAL, NULL, 0, NULL);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    assert_non_null(s = tw_server_accept(srv, fds[0], &err));
    assert_int_equal(tw_conn_peer_verified(s, &err), 0);
    th_assert_err(err, TW_ERR_USAGE, "the TLS handshake is not done: there "
                                     "is no peer to speak of yet");
    assert_no_role(s);
    tw_conn_free(s);
    close(fds[0]);
    close(fds[1]);
    tw_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_certificate_connects_unverified_without_roles),
        cmocka_unit_test(good_certificate_is_verified_and_gets_its_roles),
        cmocka_unit_test(
            refused_certificates_connect_unverified_with_the_reason),
        cmocka_unit_test(client_signing_with_another_key_gets_no_connection),
        cmocka_unit_test(unverified_sessions_are_not_resumed),
        cmocka_unit_test(
            resumed_session_of_an_expired_certificate_is_unverified),
        cmocka_unit_test(refresh_decides_again_without_failing_the_connection),
        cmocka_unit_test(required_refresh_still_fails_and_grants_nothing),
        cmocka_unit_test(client_cert_mode_errors),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
