/*
 * sesscache_test.c - the server's session cache after issue 15: sessions
 * kept without the client's certificate once their connection closed, the
 * certificate kept once per client and lent to the connections that
 * resume (src/lib/sesscache.c).  Client and server in one process over
 * socketpairs, as tls_test.c.
 */
#include "unit_helpers.h"
#include "tls_internal.h"

#include "tls_pair.h"

#include <malloc.h>

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
 * each is a compact DER, about 0.4 KB.  (glibc's statistics; under a
 * sanitizer's allocator they may read 0, and then only the counts are
 * checked.)
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
        /* Issue 15's target: at most 1 KiB per stored session. */
        assert_true(m1.uordblks < m0.uordblks + 200 * 1024);
        tw_server_free(srv);
        tw_config_free(sc);
    }
}

/* One connection offering `offer` (NULL: none, a full handshake); 1 when
 * it resumed.  *next: the client's session after it. */
static int offer_session(tw_server *srv, tw_client *cli, SSL_SESSION *offer,
                         SSL_SESSION **next)
{
    return pair_connect(srv, cli, offer == NULL, offer, next);
}

/*
 * Sessions are kept compact, and live ("hot") only while they are likely
 * to be offered next: a TLS 1.2 session once resumed, the ticket a resumed
 * TLS 1.3 connection made.  At most a quarter of the bound is hot (13
 * sessions in 64 KiB); the least recently used beyond it become compact
 * again, not dropped: 40 clients coming back twice all resume, from a live
 * session or from its DER, within the cache's bound.
 */
static void hot_sessions_beyond_their_share_stay_resumable(void **state)
{
    struct pki *p = *state;
    enum { N = 40 };
    const size_t bound = 64 * 1024;

    for (int v = 0; v < 2; v++) {
        tw_config *sc = server_config(p);
        tw_server *srv;
        tw_client *cli = client_new(p, versions[v]);
        SSL_SESSION *kept[N], *next;

        assert_int_equal(tw_config_set_session_cache_size(sc, bound), 0);
        srv = server_from(sc);
        for (int i = 0; i < N; i++)
            assert_int_equal(offer_session(srv, cli, NULL, &kept[i]), 0);
        assert_int_equal(tw_server_session_cache_count(srv), N);
        for (int round = 0; round < 2; round++) {
            for (int i = 0; i < N; i++) {
                assert_int_equal(offer_session(srv, cli, kept[i], &next), 1);
                SSL_SESSION_free(kept[i]);
                kept[i] = next;
            }
            /* TLS 1.2 resumes the same sessions; a resumed TLS 1.3
             * connection uses its ticket up and makes a new one. */
            assert_int_equal(tw_server_session_cache_count(srv), N);
            assert_true(tw_server_session_cache_bytes(srv) <= bound);
        }
        for (int i = 0; i < N; i++)
            SSL_SESSION_free(kept[i]);
        tw_client_free(cli);
        tw_server_free(srv);
        tw_config_free(sc);
    }
}

/* A TLS 1.3 ticket resumes once (RFC 8446 section 8.1): offered again, it
 * gets a full handshake, while the ticket that resumption gave resumes.  A
 * TLS 1.2 session id resumes as often as it is offered. */
static void tls13_tickets_are_used_once(void **state)
{
    struct pki *p = *state;

    for (int v = 0; v < 2; v++) {
        tw_config *sc;
        tw_server *srv = server_new(p, &sc);
        tw_client *cli = client_new(p, versions[v]);
        SSL_SESSION *first, *second, *third;
        int again;

        assert_int_equal(offer_session(srv, cli, NULL, &first), 0);
        assert_int_equal(offer_session(srv, cli, first, &second), 1);
        again = offer_session(srv, cli, first, &third);
        assert_int_equal(again, versions[v] == TW_TLS_1_2);
        SSL_SESSION_free(third);
        assert_int_equal(offer_session(srv, cli, second, &third), 1);
        SSL_SESSION_free(first);
        SSL_SESSION_free(second);
        SSL_SESSION_free(third);
        tw_client_free(cli);
        tw_server_free(srv);
        tw_config_free(sc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(resumed_connection_knows_its_peer,
                                        pki_setup, pki_teardown),
        cmocka_unit_test_setup_teardown(reload_refuses_a_resumed_connection,
                                        pki_setup, pki_teardown),
        cmocka_unit_test_setup_teardown(
            session_cache_kept_a_certificate_per_session, pki_setup,
            pki_teardown),
        cmocka_unit_test_setup_teardown(
            hot_sessions_beyond_their_share_stay_resumable, pki_setup,
            pki_teardown),
        cmocka_unit_test_setup_teardown(tls13_tickets_are_used_once,
                                        pki_setup, pki_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
