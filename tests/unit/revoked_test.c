/*
 * revoked_test.c - revocations learned before their CRL
 * (tw_config_add_revoked_fingerprint) and ticket keys given from memory
 * (tw_config_set_ticket_keys): what invoice-server --revocations and the
 * ticket keys it shares through PostgreSQL stand on.
 */
#include "unit_helpers.h"
#include "tls_internal.h"

#include "tls_pair.h"

static const int versions[] = {TW_TLS_1_2, TW_TLS_1_3};

/* The client certificate's SHA-256, as the CA index keeps it. */
static void client_fingerprint(const struct pki *p, char *out, size_t len)
{
    tw_identity *id = tw_identity_from_cert(p->client, NULL);

    assert_non_null(id);
    snprintf(out, len, "%s", tw_identity_fingerprint(id));
    tw_identity_free(id);
}

/* Two keys, made of bytes the test chooses (the first makes tickets). */
static void two_keys(unsigned char keys[2 * TW_TICKET_KEY_BYTES], int seed)
{
    for (int i = 0; i < 2 * TW_TICKET_KEY_BYTES; i++)
        keys[i] = (unsigned char)(seed * 31 + i);
}

static void fingerprint_is_checked(void **state)
{
    struct pki *p = *state;
    tw_config *cfg = tw_config_new();
    char fp[65], colons[3 * 32];

    (void)p;
    assert_non_null(cfg);
    assert_int_equal(tw_config_add_revoked_fingerprint(cfg, "abc"), -1);
    th_assert_err(*(const tw_err *)&cfg->err, TW_ERR_USAGE,
                  "'abc' is not a SHA-256 fingerprint: give 64 hex digits "
                  "(colons allowed)");
    memset(fp, 'a', 64);
    fp[64] = '\0';
    fp[10] = 'g';
    assert_int_equal(tw_config_add_revoked_fingerprint(cfg, fp), -1);
    fp[10] = 'F';
    assert_int_equal(tw_config_add_revoked_fingerprint(cfg, fp), 0);
    for (int i = 0; i < 32; i++)
        snprintf(colons + 3 * i, 4, "%.2s%s", fp + 2 * i, i < 31 ? ":" : "");
    assert_int_equal(tw_config_add_revoked_fingerprint(cfg, colons), 0);
    assert_int_equal(cfg->nrevoked, 1); /* the same, given twice */
    assert_int_equal(tw_config_add_revoked_fingerprint(cfg, ":aa"), -1);
    assert_int_equal(tw_config_add_revoked_fingerprint(cfg, NULL), -1);
    fp[63] = '\0';
    assert_int_equal(tw_config_add_revoked_fingerprint(cfg, fp), -1);
    tw_config_free(cfg);
}

/* A full handshake: refused as a CRL would refuse it, with the alert
 * certificate_revoked, which the client reads as "revoked". */
static void revoked_client_is_refused(void **state)
{
    struct pki *p = *state;
    char fp[65];

    client_fingerprint(p, fp, sizeof(fp));
    for (int v = 0; v < 2; v++) {
        tw_config *sc = server_config(p);
        tw_client *cli = client_new(p, versions[v]);
        tw_server *srv;
        struct pair pr;
        tw_err err;

        assert_int_equal(tw_config_add_revoked_fingerprint(sc, fp), 0);
        assert_non_null(srv = tw_server_new(sc, &err));
        pair_try(&pr, srv, cli);
        assert_int_equal(pr.s_rc, -1);
        assert_string_equal(tw_reason_name(tw_conn_err(pr.s)->reason),
                            "revoked");
        /* TLS 1.3: the client finished first, and reads the alert. */
        for (int i = 0; i < 10 && pr.c_rc == 0; i++) {
            char buf[16];

            if (tw_conn_read(pr.c, buf, sizeof(buf)) == -1)
                pr.c_rc = -1;
        }
        assert_int_equal(pr.c_rc, -1);
        assert_string_equal(tw_reason_name(tw_conn_err(pr.c)->reason),
                            "revoked");
        pair_close(&pr);
        tw_client_free(cli);
        tw_server_free(srv);
        tw_config_free(sc);
    }
}

/* With TW_CLIENT_CERT_OPTIONAL the connection is made and the peer is
 * unverified, "revoked". */
static void optional_mode_says_revoked(void **state)
{
    struct pki *p = *state;
    tw_config *sc = server_config(p);
    tw_client *cli = client_new(p, TW_TLS_1_3);
    tw_server *srv;
    struct pair pr;
    char fp[65];
    tw_err err;

    client_fingerprint(p, fp, sizeof(fp));
    assert_int_equal(tw_config_set_client_cert(sc, TW_CLIENT_CERT_OPTIONAL), 0);
    assert_int_equal(tw_config_add_revoked_fingerprint(sc, fp), 0);
    assert_non_null(srv = tw_server_new(sc, &err));
    pair_run(&pr, srv, cli);
    assert_int_equal(tw_conn_peer_verified(pr.s, &err), 0);
    assert_string_equal(tw_reason_name(err.reason), "revoked");
    pair_close(&pr);
    tw_client_free(cli);
    tw_server_free(srv);
    tw_config_free(sc);
}

/*
 * A revocation pushed while the client is connected: the reload that adds
 * it refuses the open connection at its next request (tw_conn_refresh), its
 * ticket is not resumed, and the full handshake it falls back to refuses
 * it.  With ticket keys from memory (stateless tickets) and with the
 * session cache.
 */
static void reload_reaches_open_and_resumed(void **state)
{
    struct pki *p = *state;
    unsigned char keys[2 * TW_TICKET_KEY_BYTES];
    char fp[65];

    client_fingerprint(p, fp, sizeof(fp));
    two_keys(keys, 1);
    for (int t = 0; t < 4; t++) {
        tw_config *sc = server_config(p);
        tw_client *cli = client_new(p, versions[t % 2]);
        struct pair open, again;
        tw_server *srv;
        tw_err err;

        if (t >= 2)
            assert_int_equal(tw_config_set_ticket_keys(sc, keys, 2), 0);
        assert_non_null(srv = tw_server_new(sc, &err));
        pair_run(&open, srv, cli);
        pair_run(&again, srv, cli);
        assert_int_equal(tw_conn_resumed(again.s), 1);
        pair_close(&again);
        assert_int_equal(tw_config_add_revoked_fingerprint(sc, fp), 0);
        assert_int_equal(tw_server_reload(srv, sc, &err), 0);
        assert_int_equal(tw_conn_refresh(open.s), -1);
        assert_string_equal(tw_reason_name(tw_conn_err(open.s)->reason),
                            "revoked");
        pair_try(&again, srv, cli);
        assert_int_equal(again.s_rc, -1);
        assert_int_equal(tw_conn_resumed(again.s), 0);
        assert_string_equal(tw_reason_name(tw_conn_err(again.s)->reason),
                            "revoked");
        pair_close(&again);
        pair_close(&open);
        tw_client_free(cli);
        tw_server_free(srv);
        tw_config_free(sc);
    }
}

/* Two servers given the same keys from memory resume each other's
 * sessions; a server with other keys does not; a keys file given after
 * replaces them.  Counts outside 1..16 are refused. */
static void ticket_keys_from_memory(void **state)
{
    struct pki *p = *state;
    unsigned char keys[2 * TW_TICKET_KEY_BYTES], other[2 * TW_TICKET_KEY_BYTES];
    char path[4096], line[2 * TW_TICKET_KEY_BYTES + 2];
    tw_config *a = server_config(p), *b = server_config(p);
    tw_server *sa, *sb;
    tw_err err;

    two_keys(keys, 1);
    two_keys(other, 2);
    assert_int_equal(tw_config_set_ticket_keys(a, keys, 0), -1);
    th_assert_err(a->err, TW_ERR_USAGE, "give 1 to 16 ticket keys, not 0");
    assert_int_equal(tw_config_set_ticket_keys(a, keys, 17), -1);
    assert_int_equal(tw_config_set_ticket_keys(a, keys, 2), 0);
    /* b accepts a's key as its second one. */
    memcpy(other + TW_TICKET_KEY_BYTES, keys, TW_TICKET_KEY_BYTES);
    assert_int_equal(tw_config_set_ticket_keys(b, other, 2), 0);
    assert_non_null(sa = tw_server_new(a, &err));
    assert_non_null(sb = tw_server_new(b, &err));
    for (int v = 0; v < 2; v++) {
        tw_client *cli = client_new(p, versions[v]);
        struct pair pr;

        pair_run(&pr, sa, cli);
        pair_close(&pr);
        pair_run(&pr, sb, cli);
        assert_int_equal(tw_conn_resumed(pr.s), 1);
        pair_close(&pr);
        tw_client_free(cli);
    }
    /* A file replaces the keys from memory: a's tickets no longer open. */
    th_path(path, p->dir, "ticket.keys");
    twu_hex(other, TW_TICKET_KEY_BYTES, line, 0);
    strcat(line, "\n");
    th_write(path, line, strlen(line));
    assert_int_equal(tw_config_set_ticket_keys_file(b, path), 0);
    assert_null(b->ticket_keys);
    assert_int_equal(tw_server_reload(sb, b, &err), 0);
    {
        tw_client *cli = client_new(p, TW_TLS_1_3);
        struct pair pr;

        pair_run(&pr, sa, cli);
        pair_close(&pr);
        pair_run(&pr, sb, cli);
        assert_int_equal(tw_conn_resumed(pr.s), 0);
        pair_close(&pr);
        tw_client_free(cli);
    }
    tw_server_free(sa);
    tw_server_free(sb);
    tw_config_free(a);
    tw_config_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fingerprint_is_checked, pki_setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(revoked_client_is_refused, pki_setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(optional_mode_says_revoked, pki_setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(reload_reaches_open_and_resumed,
                                        pki_setup, pki_teardown),
        cmocka_unit_test_setup_teardown(ticket_keys_from_memory, pki_setup,
                                        pki_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
