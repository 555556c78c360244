/*
 * refusal_test.c - refusals whose reason used to be wrong, each named after
 * its bug: client and server in one process over socketpairs, and, for what
 * a TLS library will not send, a client built from OpenSSL alone or from raw
 * TLS records.
 *
 * 1. A client certificate issued by an intermediate CA that is not in the
 *    server's CA file was logged crl_unusable when the server had a CRL and
 *    the client sent the intermediate: it is unknown_ca.
 * 2. A client that signs the handshake with a key that is not its
 *    certificate's was logged protocol, naming no certificate.
 * 3. A malformed client Certificate message said only "TLS handshake
 *    failed: cert length mismatch"; the alert stays decode_error (RFC 8446
 *    section 6), the sentence says what was malformed.
 */
#include "unit_helpers.h"

#include "tls_pair.h"

#include <errno.h>

struct fx {
    char *dir;
    char root[4096], crl[4096], server_cert[4096], server_key[4096];
    char orphan_cert[4096], orphan_chain[4096], orphan_key[4096];
    char client_cert[4096], client_key[4096];
    tw_key *root_key, *issuing_key, *server_key_pair, *orphan_key_pair;
    tw_key *client_key_pair, *stranger_key;
    tw_cert *root_cert, *issuing, *orphan, *client;
};

static const unsigned char orphan_serial[] = {0x0a, 0, 0, 0, 0, 0, 0, 0x01};
static const unsigned char client_serial[] = {0x0a, 0, 0, 0, 0, 0, 0, 0x02};

#define ORPHAN_REFUSED                                                        \
    "the client's certificate /CN=orphan/O=MailServer (issuer /O=ABC "        \
    "Inc./CN=ABC Issuing CA, serial 0A00000000000001) was not issued by a "   \
    "trusted CA (issuer /O=ABC Inc./CN=ABC Issuing CA is not in the CA "      \
    "file): issue it from the trusted CA, or trust its issuer"

/*
 * A CA certificate made with OpenSSL alone: certgen's CAs say pathlen:0,
 * so none of them can sign an intermediate CA.  These are the root and
 * issuing CA of a PKI made elsewhere.  issuer NULL: self-signed.
 */
static tw_cert *make_ca(const char *cn, const tw_key *key, const tw_cert *issuer,
                        const tw_key *issuer_key)
{
    X509 *x = th_raw_cert(X509_VERSION_3, cn, issuer ? issuer->x509 : NULL,
                          key->pkey, issuer ? issuer_key->pkey : key->pkey,
                          "20200101000000Z", "20991231000000Z", 0);
    X509V3_CTX ctx;
    static const struct { int nid; const char *value; } exts[] = {
        {NID_basic_constraints, "critical,CA:TRUE"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"},
    };
    X509_NAME *name = X509_NAME_new();

    /* th_raw_cert names the subject CN only; give it an O as well. */
    assert_non_null(name);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                                (const unsigned char *)"ABC Inc.",
                                                -1, -1, 0), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                                (const unsigned char *)cn, -1,
                                                -1, 0), 1);
    assert_int_equal(X509_set_subject_name(x, name), 1);
    assert_int_equal(X509_set_issuer_name(x, issuer ? X509_get_subject_name(
                                                          issuer->x509)
                                                    : name), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x),
                                      issuer ? 0x1002 : 0x1001), 1);
    X509V3_set_ctx(&ctx, issuer ? issuer->x509 : x, x, NULL, NULL, 0);
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid,
                                                  exts[i].value);

        assert_non_null(ext);
        assert_int_equal(X509_add_ext(x, ext, -1), 1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, issuer ? issuer_key->pkey : key->pkey,
                          EVP_sha256()) > 0);
    X509_NAME_free(name);
    return th_wrap(x);
}

static void write_key(const tw_key *key, char *path, const char *dir,
                      const char *name)
{
    tw_err err;

    if (tw_key_write_file(key, th_path(path, dir, name), NULL, &err) != 0)
        fail_msg("%s: %s", name, err.msg);
}

static int group_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    tw_cert *server;
    tw_err err;

    assert_non_null(f);
    f->dir = th_mkdtemp();
    f->root_key = th_key("ec-p256");
    f->issuing_key = th_key("ec-p256");
    f->server_key_pair = th_key("ec-p256");
    f->orphan_key_pair = th_key("ec-p256");
    f->client_key_pair = th_key("ec-p256");
    f->stranger_key = th_key("ec-p256");
    f->root_cert = make_ca("ABC Root", f->root_key, NULL, NULL);
    f->issuing = make_ca("ABC Issuing CA", f->issuing_key, f->root_cert,
                         f->root_key);
    server = th_sign(&(struct th_spec){.subject = "/CN=localhost/O=InvoiceServer",
                                       .purposes = TW_PURPOSE_SERVER,
                                       .sans = {"dns:localhost"}},
                     f->server_key_pair, f->root_cert, f->root_key);
    f->orphan = th_sign(&(struct th_spec){.subject = "/CN=orphan/O=MailServer",
                                          .purposes = TW_PURPOSE_CLIENT,
                                          .serial = orphan_serial,
                                          .serial_len = sizeof(orphan_serial)},
                        f->orphan_key_pair, f->issuing, f->issuing_key);
    f->client = th_sign(&(struct th_spec){.subject = "/CN=client/O=MailServer",
                                          .purposes = TW_PURPOSE_CLIENT,
                                          .serial = client_serial,
                                          .serial_len = sizeof(client_serial)},
                        f->client_key_pair, f->root_cert, f->root_key);
    th_write_certs(th_path(f->root, f->dir, "root.pem"),
                   (const tw_cert *const[]){f->root_cert}, 1);
    th_write_certs(th_path(f->server_cert, f->dir, "server.pem"),
                   (const tw_cert *const[]){server}, 1);
    th_write_certs(th_path(f->orphan_cert, f->dir, "orphan.pem"),
                   (const tw_cert *const[]){f->orphan}, 1);
    th_write_certs(th_path(f->orphan_chain, f->dir, "orphan-chain.pem"),
                   (const tw_cert *const[]){f->orphan, f->issuing}, 2);
    th_write_certs(th_path(f->client_cert, f->dir, "client.pem"),
                   (const tw_cert *const[]){f->client}, 1);
    write_key(f->server_key_pair, f->server_key, f->dir, "server.key");
    write_key(f->orphan_key_pair, f->orphan_key, f->dir, "orphan.key");
    write_key(f->client_key_pair, f->client_key, f->dir, "client.key");
    /* The root's CRL, revoking nothing. */
    assert_int_equal(tw_crl_write_file(f->root_cert, f->root_key, NULL, 0, 1,
                                       30, th_path(f->crl, f->dir, "root.crl"),
                                       &err), 0);
    tw_cert_free(server);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fx *f = *state;

    tw_cert_free(f->root_cert);
    tw_cert_free(f->issuing);
    tw_cert_free(f->orphan);
    tw_cert_free(f->client);
    tw_key_free(f->root_key);
    tw_key_free(f->issuing_key);
    tw_key_free(f->server_key_pair);
    tw_key_free(f->orphan_key_pair);
    tw_key_free(f->client_key_pair);
    tw_key_free(f->stranger_key);
    th_rmdir(f->dir);
    free(f);
    return 0;
}

/* ------------------------------------------------- servers and clients */

/* A server that trusts the root alone, with the CRL `crl` (NULL: none). */
static tw_server *server_trusting_root(const struct fx *f, const char *crl)
{
    tw_config *cfg = config_with_files(f->root, f->server_cert, f->server_key);
    tw_server *srv;

    if (crl != NULL)
        assert_int_equal(tw_config_set_crl_file(cfg, crl), 0);
    srv = server_from(cfg);
    tw_config_free(cfg);
    return srv;
}

/* A client presenting `cert` with `key`, TLS 1.2 up to max_version. */
static tw_client *client_presenting(const struct fx *f, const char *cert,
                                    const char *key, int max_version)
{
    tw_config *cfg = client_config(f->root, cert, key, TW_TLS_1_2,
                                   max_version);
    tw_client *cli = client_from(cfg);

    tw_config_free(cfg);
    return cli;
}

/* -------------------------------------- 1. an intermediate we don't have */

/*
 * One handshake of the client certificate `cert` (a file holding the leaf,
 * or the leaf and its issuing CA) against a server that trusts only the
 * root, with or without the root's CRL.  Returns the server's result.
 */
static int orphan_handshake(const struct fx *f, const char *cert,
                            const char *crl, int max_version, tw_err *s_err,
                            tw_err *c_err, tw_identity **refused)
{
    tw_server *srv = server_trusting_root(f, crl);
    tw_client *cli = client_presenting(f, cert, f->orphan_key, max_version);
    struct pair pr;

    pair_try(&pr, srv, cli);
    pair_hear_refusal(&pr);
    *s_err = *tw_conn_err(pr.s);
    *c_err = *tw_conn_err(pr.c);
    *refused = tw_conn_refused_identity(pr.s);
    if (pr.s_rc == -1)
        assert_int_equal(pr.c_rc, -1);
    pair_free(&pr);
    tw_client_free(cli);
    tw_server_free(srv);
    return pr.s_rc;
}

static void assert_orphan_refused(const tw_err *s_err, const tw_err *c_err,
                                  tw_identity *refused)
{
    th_assert_rejected(*s_err, TW_REASON_UNKNOWN_CA, ORPHAN_REFUSED);
    assert_non_null(refused);
    assert_string_equal(tw_identity_subject(refused), "/CN=orphan/O=MailServer");
    assert_string_equal(tw_identity_issuer(refused),
                        "/O=ABC Inc./CN=ABC Issuing CA");
    assert_string_equal(tw_identity_serial(refused), "0A00000000000001");
    tw_identity_free(refused);
    /* Both sides name the same failure: the alert is unknown_ca. */
    assert_string_equal(tw_error_class_name(c_err->cls), "rejected_by_peer");
    assert_string_equal(tw_reason_name(c_err->reason), "unknown_ca");
    assert_string_equal(c_err->msg,
                        "the server rejected our certificate (TLS alert "
                        "unknown_ca): it does not trust the CA that signed "
                        "our certificate (issuer /O=ABC Inc./CN=ABC Issuing "
                        "CA): get a certificate from the CA the server "
                        "trusts, or have it trust /O=ABC Inc./CN=ABC Issuing "
                        "CA");
}

/*
 * The bug: with the root's CRL, a client that sends its issuing CA (which
 * chains to the trusted root) was refused "cannot check ... against the CRL
 * (unable to get certificate CRL): publish a fresh CRL", while the client
 * read unknown_ca.  A CRL is only loaded for a CA of the CA file, so the
 * issuing CA's revocation can never be checked: it is not a CA we trust.
 * Without a chain, or without a CRL, the answers were already right and
 * must stay so: unknown_ca when the issuer is missing, accepted when the
 * chain reaches the root and nothing asks for a CRL.
 */
static void unknown_intermediate_with_root_crl_is_unknown_ca_not_crl_unusable(
    void **state)
{
    struct fx *f = *state;
    static const int versions[] = {TW_TLS_1_2, TW_TLS_1_3};

    for (int v = 0; v < 2; v++) {
        tw_err s_err, c_err;
        tw_identity *refused;

        /* Leaf and issuing CA sent, root CRL: the bug. */
        assert_int_equal(orphan_handshake(f, f->orphan_chain, f->crl,
                                          versions[v], &s_err, &c_err,
                                          &refused), -1);
        assert_orphan_refused(&s_err, &c_err, refused);
        /* Leaf alone, with and without the CRL. */
        assert_int_equal(orphan_handshake(f, f->orphan_cert, f->crl,
                                          versions[v], &s_err, &c_err,
                                          &refused), -1);
        assert_orphan_refused(&s_err, &c_err, refused);
        assert_int_equal(orphan_handshake(f, f->orphan_cert, NULL, versions[v],
                                          &s_err, &c_err, &refused), -1);
        assert_orphan_refused(&s_err, &c_err, refused);
        /* Leaf and issuing CA, no CRL: the chain reaches the root. */
        assert_int_equal(orphan_handshake(f, f->orphan_chain, NULL,
                                          versions[v], &s_err, &c_err,
                                          &refused), 0);
        assert_null(refused);
    }
}

/* A reload that adds the root's CRL re-checks open connections
 * (tw_conn_refresh): the same refusal, in the same words, not
 * crl_unusable. */
static void unknown_intermediate_after_a_reload_adding_a_crl_is_unknown_ca(
    void **state)
{
    struct fx *f = *state;
    tw_server *srv = server_trusting_root(f, NULL);
    tw_client *cli = client_presenting(f, f->orphan_chain, f->orphan_key,
                                       TW_TLS_1_3);
    tw_config *cfg = config_with_files(f->root, f->server_cert, f->server_key);
    tw_identity *refused;
    struct pair pr;
    tw_err err;

    pair_try(&pr, srv, cli);
    assert_int_equal(pr.s_rc, 0);
    assert_int_equal(tw_conn_refresh(pr.s), 0);
    assert_int_equal(tw_config_set_crl_file(cfg, f->crl), 0);
    assert_int_equal(tw_server_reload(srv, cfg, &err), 0);
    assert_int_equal(tw_conn_refresh(pr.s), -1);
    th_assert_rejected(*tw_conn_err(pr.s), TW_REASON_UNKNOWN_CA,
                       ORPHAN_REFUSED);
    refused = tw_conn_refused_identity(pr.s);
    assert_non_null(refused);
    assert_string_equal(tw_identity_serial(refused), "0A00000000000001");
    tw_identity_free(refused);
    tw_config_free(cfg);
    pair_free(&pr);
    tw_client_free(cli);
    tw_server_free(srv);
}

/*
 * Found with the test above: tw_conn_refresh let go of the generation the
 * connection's SSL was made under, and when that was the last reference,
 * its session cache went with it while the SSL still used it (SSL_free
 * removes an unfinished session from its context's cache).  The SSL keeps
 * its generation until tw_conn_free, however many reloads come between.
 */
static void refreshed_connection_keeps_its_generation_until_freed(void **state)
{
    struct fx *f = *state;
    tw_server *srv = server_trusting_root(f, NULL);
    tw_client *cli = client_presenting(f, f->client_cert, f->client_key,
                                       TW_TLS_1_2);
    tw_config *cfg = config_with_files(f->root, f->server_cert, f->server_key);
    struct pair pr;
    tw_err err;

    pair_try(&pr, srv, cli);
    assert_int_equal(pr.s_rc, 0);
    for (unsigned gen = 2; gen <= 3; gen++) {
        assert_int_equal(tw_server_reload(srv, cfg, &err), 0);
        assert_int_equal(tw_conn_refresh(pr.s), 0);
        assert_int_equal(tw_conn_generation(pr.s), gen);
    }
    tw_server_free(srv); /* generations 1 and 3 live on in pr.s alone */
    pair_free(&pr); /* no close_notify: SSL_free drops the session */
    tw_config_free(cfg);
    tw_client_free(cli);
}

/* ------------------------------- 2. a handshake signed with another key */

/*
 * The bug: a client whose handshake signature does not match its
 * certificate was logged "reason=protocol subject=\"-\"" with OpenSSL's
 * "bad signature".  It is bad_certificate, naming the certificate, and
 * decrypt_error on the wire (RFC 8446 section 4.4.3, RFC 5246 section
 * 7.4.8).
 */
static void client_signing_with_another_key_is_named_bad_certificate(
    void **state)
{
    struct fx *f = *state;
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    EVP_PKEY *key = mismatched_key(f->client_key_pair, f->stranger_key);

    for (int v = 0; v < 2; v++) {
        tw_server *srv = server_trusting_root(f, f->crl);
        SSL_CTX *ctx;
        SSL *raw;
        tw_conn *s;
        tw_identity *refused;
        int fds[2], s_rc;
        tw_err err;

        pair_sockets(fds);
        assert_non_null(s = tw_server_accept(srv, fds[0], &err));
        raw = raw_peer(&ctx, 0, versions[v], fds[1], f->client->x509, key);
        assert_int_equal(drive(raw, s, &s_rc),
                         SSL_R_TLSV1_ALERT_DECRYPT_ERROR);
        assert_int_equal(s_rc, -1);
        th_assert_rejected(*tw_conn_err(s), TW_REASON_BAD_CERTIFICATE,
                           "the client's handshake signature does not verify "
                           "with the public key of its certificate "
                           "/CN=client/O=MailServer (issuer /O=ABC Inc./CN=ABC "
                           "Root, serial 0A00000000000002): the client is "
                           "signing with a key that does not belong to its "
                           "certificate");
        refused = tw_conn_refused_identity(s);
        assert_non_null(refused);
        assert_string_equal(tw_identity_subject(refused),
                            "/CN=client/O=MailServer");
        assert_string_equal(tw_identity_issuer(refused),
                            "/O=ABC Inc./CN=ABC Root");
        assert_string_equal(tw_identity_serial(refused), "0A00000000000002");
        tw_identity_free(refused);
        SSL_free(raw);
        SSL_CTX_free(ctx);
        tw_conn_free(s);
        close(fds[0]);
        close(fds[1]);
        tw_server_free(srv);
    }
    EVP_PKEY_free(key);
}

/* The same from the client's side: a server whose CertificateVerify (TLS
 * 1.3) or ServerKeyExchange signature (TLS 1.2) is another key's. */
static void server_signing_with_another_key_is_named_bad_certificate(
    void **state)
{
    struct fx *f = *state;
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    static const int tw_versions[] = {TW_TLS_1_2, TW_TLS_1_3};
    EVP_PKEY *key = mismatched_key(f->server_key_pair, f->stranger_key);
    tw_cert *server = tw_cert_load_file(f->server_cert, NULL);
    tw_identity *id;
    char expected[512];

    assert_non_null(server);
    assert_non_null(id = tw_identity_from_cert(server, NULL));
    snprintf(expected, sizeof(expected),
             "the server's handshake signature does not verify with the "
             "public key of its certificate /CN=localhost/O=InvoiceServer "
             "(issuer /O=ABC Inc./CN=ABC Root, serial %s): the server is "
             "signing with a key that does not belong to its certificate",
             tw_identity_serial(id));
    tw_identity_free(id);
    for (int v = 0; v < 2; v++) {
        tw_client *cli = client_presenting(f, f->client_cert, f->client_key,
                                    tw_versions[v]);
        SSL_CTX *ctx;
        SSL *raw;
        tw_conn *c;
        int fds[2], c_rc;
        tw_err err;

        pair_sockets(fds);
        assert_non_null(c = tw_client_connect(cli, fds[1], "localhost", &err));
        raw = raw_peer(&ctx, 1, versions[v], fds[0], server->x509, key);
        assert_int_equal(drive(raw, c, &c_rc),
                         SSL_R_TLSV1_ALERT_DECRYPT_ERROR);
        assert_int_equal(c_rc, -1);
        th_assert_rejected(*tw_conn_err(c), TW_REASON_BAD_CERTIFICATE,
                           expected);
        SSL_free(raw);
        SSL_CTX_free(ctx);
        tw_conn_free(c);
        close(fds[0]);
        close(fds[1]);
        tw_client_free(cli);
    }
    tw_cert_free(server);
    EVP_PKEY_free(key);
}

/* ------------------------------ 3. a malformed client Certificate message */

static void put24(unsigned char *p, size_t n)
{
    p[0] = (unsigned char)(n >> 16);
    p[1] = (unsigned char)(n >> 8);
    p[2] = (unsigned char)n;
}

static void send_all(int fd, const unsigned char *p, size_t len)
{
    assert_int_equal(write(fd, p, len), (ssize_t)len);
}

/* Everything the server wrote so far. */
static size_t recv_some(int fd, unsigned char *buf, size_t cap)
{
    size_t got = 0;
    ssize_t n = 0;

    while (got < cap && (n = read(fd, buf + got, cap - got)) > 0)
        got += (size_t)n;
    assert_true(n == 0 || errno == EAGAIN || errno == EWOULDBLOCK);
    return got;
}

/*
 * A TLS 1.2 ClientHello (RFC 5246 section 7.4.1.2) that the server takes:
 * ECDHE-ECDSA-AES128-GCM-SHA256, the renegotiation SCSV (RFC 5746), groups
 * x25519 and secp256r1, uncompressed points, ecdsa_secp256r1_sha256.
 */
static const unsigned char client_hello[] = {
    0x16, 0x03, 0x01, 0x00, 0x49,             /* record: handshake, 73 */
    0x01, 0x00, 0x00, 0x45, 0x03, 0x03,       /* ClientHello, 69; TLS 1.2 */
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, /* random */
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    0x00,                                     /* session id: none */
    0x00, 0x04, 0xc0, 0x2b, 0x00, 0xff,       /* cipher suites */
    0x01, 0x00,                               /* compression: null */
    0x00, 0x18,                               /* extensions, 24 */
    0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17,
    0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,
    0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03,
};

/* Whether the handshake messages in the records of buf[0..len) include a
 * ServerHelloDone (RFC 5246 section 7.4.5). */
static int has_server_hello_done(const unsigned char *buf, size_t len)
{
    unsigned char msgs[16384];
    size_t n = 0;

    for (size_t at = 0; at + 5 <= len;) {
        size_t rec = (size_t)buf[at + 3] << 8 | buf[at + 4];

        assert_int_equal(buf[at], 22); /* handshake records only */
        assert_true(at + 5 + rec <= len && n + rec <= sizeof(msgs));
        memcpy(msgs + n, buf + at + 5, rec);
        n += rec;
        at += 5 + rec;
    }
    for (size_t at = 0; at + 4 <= n;) {
        if (msgs[at] == 14)
            return 1;
        at += 4 + ((size_t)msgs[at + 1] << 16 | (size_t)msgs[at + 2] << 8 |
                   msgs[at + 3]);
    }
    return 0;
}

enum malformation { CERT_BEYOND_LIST, LIST_BEYOND_MESSAGE, ZERO_BYTES_ENTRY };

/*
 * Send the ClientHello, read the server's flight up to ServerHelloDone,
 * then a Certificate message malformed as asked; returns the server's
 * answer and leaves the connection's error in *err.
 */
static size_t send_malformed_certificate(const struct fx *f,
                                         enum malformation how,
                                         unsigned char *answer, size_t cap,
                                         tw_err *err)
{
    tw_server *srv = server_trusting_root(f, NULL);
    unsigned char flight[16384], msg[4096], *der = NULL;
    int der_len = i2d_X509(f->client->x509, &der);
    size_t flight_len = 0, entry, list, body, got;
    tw_conn *s;
    int fds[2];

    assert_true(der_len > 0 && (size_t)der_len + 15 <= sizeof(msg));
    pair_sockets(fds);
    assert_non_null(s = tw_server_accept(srv, fds[0], err));
    send_all(fds[1], client_hello, sizeof(client_hello));
    for (int i = 0; i < 20 && !has_server_hello_done(flight, flight_len); i++) {
        assert_int_equal(tw_conn_handshake(s), TW_WANT_READ);
        flight_len += recv_some(fds[1], flight + flight_len,
                                sizeof(flight) - flight_len);
    }
    assert_true(has_server_hello_done(flight, flight_len));
    /* certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1> (section 7.4.2) */
    entry = how == ZERO_BYTES_ENTRY ? 4 : (size_t)der_len;
    list = 3 + entry;
    body = 3 + list;
    msg[0] = 22; /* a handshake record of TLS 1.2 */
    msg[1] = 3;
    msg[2] = 3;
    msg[3] = (unsigned char)((4 + body) >> 8);
    msg[4] = (unsigned char)(4 + body);
    msg[5] = 11; /* Certificate */
    put24(msg + 6, body);
    /* The list's length, then the entry's: one of them may lie. */
    put24(msg + 9, how == LIST_BEYOND_MESSAGE ? list + 7 : list);
    put24(msg + 12, how == CERT_BEYOND_LIST ? entry + 5 : entry);
    if (how == ZERO_BYTES_ENTRY)
        memset(msg + 15, 0, entry);
    else
        memcpy(msg + 15, der, entry);
    send_all(fds[1], msg, 15 + entry);
    assert_int_equal(tw_conn_handshake(s), -1);
    got = recv_some(fds[1], answer, cap);
    *err = *tw_conn_err(s);
    assert_null(tw_conn_refused_identity(s));
    OPENSSL_free(der);
    tw_conn_free(s);
    close(fds[0]);
    close(fds[1]);
    tw_server_free(srv);
    return got;
}

/*
 * The bug: a client Certificate message whose lengths disagree was refused
 * "TLS handshake failed: cert length mismatch".  The alert stays
 * decode_error, the one RFC 8446 section 6 and RFC 5246 section 7.2.2 ask
 * for a message that does not parse (and tlsfuzzer's
 * test-certificate-malformed.py expects for mangled lengths); the sentence
 * now says which message was malformed and how.
 */
static void malformed_client_certificate_message_is_decode_error(void **state)
{
    struct fx *f = *state;
    /* A fatal (2) decode_error (50) alert, in a plaintext TLS 1.2 record. */
    static const unsigned char decode_error[] = {0x15, 0x03, 0x03, 0x00,
                                                 0x02, 0x02, 0x32};
    static const struct {
        enum malformation how;
        const char *what;
    } cases[] = {
        {CERT_BEYOND_LIST, "the lengths in its certificate list disagree"},
        {LIST_BEYOND_MESSAGE, "the lengths in its certificate list disagree"},
        {ZERO_BYTES_ENTRY,
         "an entry of its certificate list is not a DER X.509 certificate"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char answer[64];
        char expected[512];
        tw_err err;
        size_t len = send_malformed_certificate(f, cases[i].how, answer,
                                                sizeof(answer), &err);

        assert_int_equal(len, sizeof(decode_error));
        assert_memory_equal(answer, decode_error, sizeof(decode_error));
        snprintf(expected, sizeof(expected),
                 "the client's Certificate message is malformed (%s): TLS "
                 "alert decode_error sent; the client's TLS software built a "
                 "broken message, or something on the path changed it",
                 cases[i].what);
        assert_string_equal(tw_error_class_name(err.cls), "protocol");
        assert_string_equal(tw_reason_name(err.reason), "protocol");
        assert_string_equal(err.msg, expected);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            unknown_intermediate_with_root_crl_is_unknown_ca_not_crl_unusable),
        cmocka_unit_test(
            unknown_intermediate_after_a_reload_adding_a_crl_is_unknown_ca),
        cmocka_unit_test(refreshed_connection_keeps_its_generation_until_freed),
        cmocka_unit_test(
            client_signing_with_another_key_is_named_bad_certificate),
        cmocka_unit_test(
            server_signing_with_another_key_is_named_bad_certificate),
        cmocka_unit_test(malformed_client_certificate_message_is_decode_error),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
