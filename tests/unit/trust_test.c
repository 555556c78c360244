/* trust_test.c - chain verification and the sentences of refusal: each
 * refused certificate gets its reason and names subject, issuer, serial. */
#include "tw_internal.h"
#include "unit_helpers.h"

struct fx {
    char *dir;
    char ca1_path[4096], ca2_path[4096], both_path[4096];
    tw_key *ca1_key, *ca2_key, *key;
    tw_cert *ca1, *ca2, *server, *client, *other_server;
};

static const unsigned char server_serial[] = {0x4a, 0, 0, 0, 0, 0, 0, 0x01};
static const unsigned char client_serial[] = {0x4a, 0, 0, 0, 0, 0, 0, 0x02};

#define SERVER_WHO                                                            \
    "the certificate /O=Test/CN=server (issuer /O=Test/CN=CA One, serial "    \
    "4A00000000000001)"
#define CLIENT_WHO                                                            \
    "the certificate /O=Test/CN=client (issuer /O=Test/CN=CA One, serial "    \
    "4A00000000000002)"

static int group_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    f->dir = th_mkdtemp();
    f->ca1_key = th_key("ec-p256");
    f->ca2_key = th_key("ec-p384");
    f->key = th_key("ec-p256");
    f->ca1 = th_ca("/O=Test/CN=CA One", f->ca1_key);
    f->ca2 = th_ca("/O=Test/CN=CA Two", f->ca2_key);
    f->server = th_sign(&(struct th_spec){.subject = "/O=Test/CN=server",
                                          .purposes = TW_PURPOSE_SERVER,
                                          .sans = {"dns:localhost",
                                                   "ip:127.0.0.1", "ip:::1"},
                                          .serial = server_serial,
                                          .serial_len = sizeof(server_serial)},
                        f->key, f->ca1, f->ca1_key);
    f->client = th_sign(&(struct th_spec){.subject = "/O=Test/CN=client",
                                          .purposes = TW_PURPOSE_CLIENT,
                                          .serial = client_serial,
                                          .serial_len = sizeof(client_serial)},
                        f->key, f->ca1, f->ca1_key);
    f->other_server = th_sign(&(struct th_spec){.subject = "/CN=elsewhere",
                                                .purposes = TW_PURPOSE_SERVER,
                                                .sans = {"dns:localhost"}},
                              f->key, f->ca2, f->ca2_key);
    th_write_certs(th_path(f->ca1_path, f->dir, "ca1.pem"),
                   (const tw_cert *const[]){f->ca1}, 1);
    th_write_certs(th_path(f->ca2_path, f->dir, "ca2.pem"),
                   (const tw_cert *const[]){f->ca2}, 1);
    th_write_certs(th_path(f->both_path, f->dir, "both.pem"),
                   (const tw_cert *const[]){f->ca2, f->ca1}, 2);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fx *f = *state;

    tw_cert_free(f->other_server);
    tw_cert_free(f->client);
    tw_cert_free(f->server);
    tw_cert_free(f->ca2);
    tw_cert_free(f->ca1);
    tw_key_free(f->key);
    tw_key_free(f->ca2_key);
    tw_key_free(f->ca1_key);
    th_rmdir(f->dir);
    free(f);
    return 0;
}

static tw_trust *load(const char *ca, const char *crl)
{
    tw_err err;
    tw_trust *t = tw_trust_load(ca, crl, &err);

    if (t == NULL)
        fail_msg("cannot load %s / %s: %s", ca, crl ? crl : "-", err.msg);
    return t;
}

static void accepted(const tw_trust *t, const tw_cert *c, int purpose,
                     const char *host)
{
    tw_err err;

    tw_err_clear(&err);
    if (tw_trust_verify(t, c, purpose, host, &err) != 0)
        fail_msg("refused (host %s): %s", host ? host : "-", err.msg);
    assert_int_equal(ERR_peek_error(), 0);
}

/* Refused with `reason` and exactly the sentence `msg`. */
static void rejected(const tw_trust *t, const tw_cert *c, int purpose,
                     const char *host, enum tw_reason reason, const char *msg)
{
    tw_err err;

    tw_err_clear(&err);
    assert_int_equal(tw_trust_verify(t, c, purpose, host, &err), -1);
    th_assert_rejected(err, reason, msg);
    assert_int_equal(ERR_peek_error(), 0);
}

/* --------------------------------------------------------- accepted */

static void accepts_a_chain(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->ca1_path, NULL);

    accepted(t, f->server, TW_PURPOSE_SERVER, "localhost");
    accepted(t, f->server, TW_PURPOSE_SERVER, NULL);
    accepted(t, f->server, 0, NULL);
    accepted(t, f->client, TW_PURPOSE_CLIENT, NULL);
    accepted(t, f->client, 0, NULL);
    /* A CA is its own trust anchor. */
    accepted(t, f->ca1, 0, NULL);
    tw_trust_free(t);
}

static void several_cas_in_one_file(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->both_path, NULL);

    accepted(t, f->server, TW_PURPOSE_SERVER, "localhost");
    accepted(t, f->other_server, TW_PURPOSE_SERVER, "localhost");
    tw_trust_free(t);
}

static void host_names_and_addresses(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->ca1_path, NULL);

    accepted(t, f->server, TW_PURPOSE_SERVER, "LocalHost"); /* RFC 4343 */
    accepted(t, f->server, TW_PURPOSE_SERVER, "127.0.0.1");
    accepted(t, f->server, TW_PURPOSE_SERVER, "::1");
    accepted(t, f->server, TW_PURPOSE_SERVER, "0:0:0:0:0:0:0:1");
    rejected(t, f->server, TW_PURPOSE_SERVER, "other.example",
             TW_REASON_NAME_MISMATCH,
             SERVER_WHO " does not name the host other.example: issue it with "
                        "--dns (or --ip) for that name, or connect by a name "
                        "it holds");
    rejected(t, f->server, TW_PURPOSE_SERVER, "10.0.0.1",
             TW_REASON_NAME_MISMATCH,
             SERVER_WHO " does not name the host 10.0.0.1: issue it with "
                        "--dns (or --ip) for that name, or connect by a name "
                        "it holds");
    /* An IP SAN is not a DNS name, nor the reverse. */
    rejected(t, f->server, TW_PURPOSE_SERVER, "127.0.0.2",
             TW_REASON_NAME_MISMATCH,
             SERVER_WHO " does not name the host 127.0.0.2: issue it with "
                        "--dns (or --ip) for that name, or connect by a name "
                        "it holds");
    tw_trust_free(t);
}

static void wildcards_match_one_label(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->ca1_path, NULL);
    tw_cert *w = th_sign(&(struct th_spec){.subject = "/CN=wild",
                                           .purposes = TW_PURPOSE_SERVER,
                                           .sans = {"dns:*.abc.example"}},
                         f->key, f->ca1, f->ca1_key);
    tw_err err;

    accepted(t, w, TW_PURPOSE_SERVER, "mail.abc.example");
    assert_int_equal(tw_trust_verify(t, w, TW_PURPOSE_SERVER,
                                     "a.mail.abc.example", &err), -1);
    assert_int_equal(err.reason, TW_REASON_NAME_MISMATCH);
    assert_int_equal(tw_trust_verify(t, w, TW_PURPOSE_SERVER, "abc.example",
                                     &err), -1);
    assert_int_equal(err.reason, TW_REASON_NAME_MISMATCH);
    tw_cert_free(w);
    tw_trust_free(t);
}

/* Bug: OpenSSL matched the CN whenever there was no DNS SAN, so a
 * certificate with only a URI SAN was accepted for the host in its CN,
 * against the header (and RFC 6125 6.4.4): CN only without any SAN. */
static void cn_counts_only_without_any_san(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->ca1_path, NULL);
    /* v1: no extensions at all, so the CN is the only name it has. */
    tw_cert *v1 = th_wrap(th_raw_cert(X509_VERSION_1, "legacy.example",
                                      f->ca1->x509, f->key->pkey,
                                      f->ca1_key->pkey, "20200101000000Z",
                                      "20991231235959Z", 0x77));
    /* A SAN of another type: the CN is no longer a host name to match. */
    tw_cert *uri = th_sign(&(struct th_spec){.subject = "/CN=localhost",
                                             .purposes = TW_PURPOSE_SERVER,
                                             .sans = {"uri:spiffe://t/svc"}},
                           f->key, f->ca1, f->ca1_key);
    tw_err err;

    accepted(t, v1, TW_PURPOSE_SERVER, "legacy.example");
    assert_int_equal(tw_trust_verify(t, v1, TW_PURPOSE_SERVER, "other.example",
                                     &err), -1);
    assert_int_equal(err.reason, TW_REASON_NAME_MISMATCH);
    assert_int_equal(tw_trust_verify(t, uri, TW_PURPOSE_SERVER, "localhost",
                                     &err), -1);
    assert_int_equal(err.reason, TW_REASON_NAME_MISMATCH);
    tw_cert_free(uri);
    tw_cert_free(v1);
    tw_trust_free(t);
}

/* Bug: an empty host turned the name check off (OpenSSL reads "" as "no
 * host") and any certificate of the CA was accepted for it. */
static void an_empty_host_is_a_usage_error_not_no_check(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->ca1_path, NULL);
    tw_err err;

    assert_int_equal(tw_trust_verify(t, f->server, TW_PURPOSE_SERVER, "", &err),
                     -1);
    th_assert_err(err, TW_ERR_USAGE, "'' is not a usable host name");
    tw_trust_free(t);
}

/* ----------------------------------------------------------- refused */

static void unknown_ca(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->ca2_path, NULL);

    rejected(t, f->server, TW_PURPOSE_SERVER, "localhost",
             TW_REASON_UNKNOWN_CA,
             SERVER_WHO " was not issued by a trusted CA (issuer /O=Test/CN=CA "
                        "One is not in the CA file): issue it from the "
                        "trusted CA, or trust its issuer");
    tw_trust_free(t);
}

/* With a CRL the chain is still checked first: a certificate whose issuer
 * is not in the CA file is unknown_ca, never crl_unusable for the CRL its
 * issuer does not have (refusal_test.c has the handshake's side). */
static void unknown_ca_stays_unknown_ca_with_a_crl(void **state)
{
    struct fx *f = *state;
    char crl[4096];
    tw_trust *t;
    tw_err err;

    th_path(crl, f->dir, "ca1-empty.crl");
    assert_int_equal(tw_crl_write_file(f->ca1, f->ca1_key, NULL, 0, 1, 30, crl,
                                       &err), 0);
    t = load(f->ca1_path, crl);
    assert_int_equal(tw_trust_verify(t, f->other_server, TW_PURPOSE_SERVER,
                                     "localhost", &err), -1);
    assert_int_equal(err.cls, TW_ERR_PEER_REJECTED);
    assert_int_equal(err.reason, TW_REASON_UNKNOWN_CA);
    assert_non_null(strstr(err.msg, "(issuer /O=Test/CN=CA Two is not in the "
                                    "CA file): issue it from the trusted CA, "
                                    "or trust its issuer"));
    tw_trust_free(t);
}

static void a_self_signed_stranger_is_unknown_ca(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->ca1_path, NULL);
    tw_cert *self = th_ca("/CN=Impostor", f->key);
    tw_err err;

    assert_int_equal(tw_trust_verify(t, self, 0, NULL, &err), -1);
    assert_int_equal(err.cls, TW_ERR_PEER_REJECTED);
    assert_int_equal(err.reason, TW_REASON_UNKNOWN_CA);
    assert_non_null(strstr(err.msg, "the certificate /CN=Impostor (issuer "
                                    "/CN=Impostor, serial "));
    tw_cert_free(self);
    tw_trust_free(t);
}

static void expired(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->ca1_path, NULL);
    tw_cert *old = th_wrap(th_raw_cert(X509_VERSION_3, "old", f->ca1->x509,
                                       f->key->pkey, f->ca1_key->pkey,
                                       "20190101000000Z", "20200102030405Z",
                                       0x1234));

    rejected(t, old, 0, NULL, TW_REASON_EXPIRED,
             "the certificate /CN=old (issuer /O=Test/CN=CA One, serial 1234) "
             "expired on 2020-01-02T03:04:05Z: issue a new one");
    tw_cert_free(old);
    tw_trust_free(t);
}

static void not_yet_valid(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->ca1_path, NULL);
    tw_cert *future = th_wrap(th_raw_cert(X509_VERSION_3, "future",
                                          f->ca1->x509, f->key->pkey,
                                          f->ca1_key->pkey, "20990101000000Z",
                                          "20991231000000Z", 0x1235));

    rejected(t, future, 0, NULL, TW_REASON_NOT_YET_VALID,
             "the certificate /CN=future (issuer /O=Test/CN=CA One, serial "
             "1235) is not valid before 2099-01-01T00:00:00Z: check both "
             "machines' clocks");
    tw_cert_free(future);
    tw_trust_free(t);
}

static void wrong_purpose(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->ca1_path, NULL);
    /* The words in the parentheses are OpenSSL's, and vary by version. */
    const char *why = X509_verify_cert_error_string(X509_V_ERR_INVALID_PURPOSE);
    char expected[1024];

    snprintf(expected, sizeof(expected),
             CLIENT_WHO " may not be used for this (%s; it was checked for "
                        "server use): issue it with the right purpose "
                        "(--server or --client)", why);
    rejected(t, f->client, TW_PURPOSE_SERVER, NULL, TW_REASON_WRONG_USAGE,
             expected);
    snprintf(expected, sizeof(expected),
             SERVER_WHO " may not be used for this (%s; it was checked for "
                        "client use): issue it with the right purpose "
                        "(--server or --client)", why);
    rejected(t, f->server, TW_PURPOSE_CLIENT, NULL, TW_REASON_WRONG_USAGE,
             expected);
    tw_trust_free(t);
}

static void weak_rsa_leaf_is_bad_certificate(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->ca1_path, NULL);
    EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    tw_err err;
    tw_key *k = tw__key_wrap(weak, &err);
    tw_cert *c;
    char expected[1024];

    assert_non_null(k);
    c = th_sign(&(struct th_spec){.subject = "/CN=weak",
                                  .purposes = TW_PURPOSE_CLIENT,
                                  .serial = server_serial,
                                  .serial_len = sizeof(server_serial)},
                k, f->ca1, f->ca1_key);
    snprintf(expected, sizeof(expected),
             "the certificate /CN=weak (issuer /O=Test/CN=CA One, serial "
             "4A00000000000001) was refused (%s): re-issue it with twoway-ca "
             "(keys of at least 112 bits, SHA-256 signatures)",
             X509_verify_cert_error_string(X509_V_ERR_EE_KEY_TOO_SMALL));
    rejected(t, c, TW_PURPOSE_CLIENT, NULL, TW_REASON_BAD_CERTIFICATE,
             expected);
    tw_cert_free(c);
    tw_key_free(k);
    tw_trust_free(t);
}

static void sha1_signature_is_bad_certificate(void **state)
{
    struct fx *f = *state;
    tw_trust *t = load(f->ca1_path, NULL);
    X509 *x = th_raw_cert(X509_VERSION_3, "sha1", f->ca1->x509, f->key->pkey,
                          f->ca1_key->pkey, "20200101000000Z",
                          "20991231000000Z", 0x51);
    tw_cert *c;
    tw_err err;

    assert_true(X509_sign(x, f->ca1_key->pkey, EVP_sha1()) > 0);
    c = th_wrap(x);
    assert_int_equal(tw_trust_verify(t, c, 0, NULL, &err), -1);
    assert_int_equal(err.cls, TW_ERR_PEER_REJECTED);
    assert_int_equal(err.reason, TW_REASON_BAD_CERTIFICATE);
    tw_cert_free(c);
    tw_trust_free(t);
}

/* ------------------------------------------------------------- CRLs */

static void revoked_by_a_crl(void **state)
{
    struct fx *f = *state;
    char crl[4096];
    tw_revoked r = {.serial_hex = "4a00000000000001", .revoked_at = 1700000000,
                    .reason = 1};
    tw_trust *t;
    tw_err err;

    th_path(crl, f->dir, "revoked.crl");
    assert_int_equal(tw_crl_write_file(f->ca1, f->ca1_key, &r, 1, 1, 30, crl,
                                       &err), 0);
    t = load(f->ca1_path, crl);
    rejected(t, f->server, TW_PURPOSE_SERVER, "localhost", TW_REASON_REVOKED,
             SERVER_WHO " was revoked by its CA: issue a new one");
    accepted(t, f->client, TW_PURPOSE_CLIENT, NULL); /* not listed */
    tw_trust_free(t);
}

static void an_empty_crl_revokes_nothing(void **state)
{
    struct fx *f = *state;
    char crl[4096];
    tw_trust *t;
    tw_err err;

    th_path(crl, f->dir, "empty.crl");
    assert_int_equal(tw_crl_write_file(f->ca1, f->ca1_key, NULL, 0, 2, 1, crl,
                                       &err), 0);
    t = load(f->ca1_path, crl);
    accepted(t, f->server, TW_PURPOSE_SERVER, "localhost");
    tw_trust_free(t);
}

static void crl_of_another_ca_is_refused_at_load(void **state)
{
    struct fx *f = *state;
    char crl[4096], expected[4400];
    tw_key *k = th_key("ec-p256");
    /* Same name as CA One, another key: the name alone proves nothing. */
    tw_cert *twin = th_ca("/O=Test/CN=CA One", k);
    tw_err err;

    th_path(crl, f->dir, "other.crl");
    assert_int_equal(tw_crl_write_file(f->ca2, f->ca2_key, NULL, 0, 1, 30, crl,
                                       &err), 0);
    assert_null(tw_trust_load(f->ca1_path, crl, &err));
    snprintf(expected, sizeof(expected),
             "the CRL %s (issuer /O=Test/CN=CA Two) is not signed by a "
             "trusted CA: give the CRL of the CA in the CA file", crl);
    th_assert_err(err, TW_ERR_INPUT, expected);

    assert_int_equal(tw_crl_write_file(twin, k, NULL, 0, 1, 30, crl, &err), 0);
    assert_null(tw_trust_load(f->ca1_path, crl, &err));
    snprintf(expected, sizeof(expected),
             "the CRL %s (issuer /O=Test/CN=CA One) is not signed by a "
             "trusted CA: give the CRL of the CA in the CA file", crl);
    th_assert_err(err, TW_ERR_INPUT, expected);
    assert_int_equal(ERR_peek_error(), 0);
    tw_cert_free(twin);
    tw_key_free(k);
}

/* Write the files' contents one after the other into `out`. */
static void concat_files(const char *out, const char *a, const char *b)
{
    FILE *o = fopen(out, "w");
    const char *in[] = {a, b};

    assert_non_null(o);
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(in[i], "r");
        char buf[4096];
        size_t n;

        assert_non_null(f);
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            assert_int_equal(fwrite(buf, 1, n, o), n);
        fclose(f);
    }
    assert_int_equal(fclose(o), 0);
}

/* Two CAs, one CRL each in one file: each certificate is checked against
 * its own issuer's CRL; an issuer without a CRL is crl_unusable. */
static void one_crl_per_ca_in_one_file(void **state)
{
    struct fx *f = *state;
    char crl1[4096], crl2[4096], both[4096];
    tw_identity *id = tw_identity_from_cert(f->other_server, NULL);
    tw_revoked r = {.revoked_at = 1700000000, .reason = 1};
    tw_trust *t;
    tw_err err;

    assert_non_null(id);
    r.serial_hex = tw_identity_serial(id);
    th_path(crl1, f->dir, "ca1.crl");
    th_path(crl2, f->dir, "ca2.crl");
    th_path(both, f->dir, "both.crl");
    assert_int_equal(tw_crl_write_file(f->ca1, f->ca1_key, NULL, 0, 1, 30, crl1,
                                       &err), 0);
    assert_int_equal(tw_crl_write_file(f->ca2, f->ca2_key, &r, 1, 1, 30, crl2,
                                       &err), 0);
    concat_files(both, crl1, crl2);
    t = load(f->both_path, both);
    accepted(t, f->server, TW_PURPOSE_SERVER, "localhost");
    tw_err_clear(&err);
    assert_int_equal(tw_trust_verify(t, f->other_server, TW_PURPOSE_SERVER,
                                     "localhost", &err), -1);
    assert_int_equal(err.reason, TW_REASON_REVOKED); /* by CA Two's CRL */
    tw_trust_free(t);

    /* Only CA One's CRL: CA Two's certificates cannot be checked. */
    t = load(f->both_path, crl1);
    accepted(t, f->server, TW_PURPOSE_SERVER, "localhost");
    tw_err_clear(&err);
    assert_int_equal(tw_trust_verify(t, f->other_server, TW_PURPOSE_SERVER,
                                     "localhost", &err), -1);
    assert_int_equal(err.reason, TW_REASON_CRL_UNUSABLE);
    tw_trust_free(t);
    tw_identity_free(id);
    assert_int_equal(ERR_peek_error(), 0);
}

/* Two CRLs of one CA, or a block that cannot be read after a good CRL: a
 * load error that says which, never a CRL silently left out. */
static void crl_files_that_hide_a_crl_are_refused(void **state)
{
    struct fx *f = *state;
    char crl[4096], twice[4096], bad[4096], expected[4400];
    FILE *o;
    tw_err err;

    th_path(crl, f->dir, "one.crl");
    th_path(twice, f->dir, "twice.crl");
    th_path(bad, f->dir, "bad.crl");
    assert_int_equal(tw_crl_write_file(f->ca1, f->ca1_key, NULL, 0, 1, 30, crl,
                                       &err), 0);
    concat_files(twice, crl, crl);
    assert_null(tw_trust_load(f->both_path, twice, &err));
    snprintf(expected, sizeof(expected),
             "%s holds two CRLs from /O=Test/CN=CA One: keep only the newest "
             "(one CRL per CA)", twice);
    th_assert_err(err, TW_ERR_INPUT, expected);

    assert_non_null(o = fopen(bad, "w"));
    fputs("-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n", o);
    assert_int_equal(fclose(o), 0);
    concat_files(twice, crl, bad);
    assert_null(tw_trust_load(f->both_path, twice, &err));
    assert_int_equal(err.cls, TW_ERR_INPUT);
    snprintf(expected, sizeof(expected),
             "%s: CRL 2 of 2 cannot be read (garbage or truncated PEM?)", twice);
    assert_non_null(strstr(err.msg, expected));
    assert_int_equal(ERR_peek_error(), 0);
}

/* A CRL made with OpenSSL, for dates tw_crl_write_file will not write. */
static void write_raw_crl(const char *path, const tw_cert *ca, EVP_PKEY *key,
                          const char *last, const char *next)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *t = ASN1_TIME_new();
    BIO *bio;

    assert_non_null(crl);
    assert_non_null(t);
    assert_int_equal(X509_CRL_set_version(crl, X509_CRL_VERSION_2), 1);
    assert_int_equal(X509_CRL_set_issuer_name(crl,
                                              X509_get_subject_name(ca->x509)),
                     1);
    assert_int_equal(ASN1_TIME_set_string_X509(t, last), 1);
    assert_int_equal(X509_CRL_set1_lastUpdate(crl, t), 1);
    assert_int_equal(ASN1_TIME_set_string_X509(t, next), 1);
    assert_int_equal(X509_CRL_set1_nextUpdate(crl, t), 1);
    assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
    bio = BIO_new_file(path, "w");
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_X509_CRL(bio, crl), 1);
    BIO_free(bio);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
}

static void expired_crl_is_crl_unusable(void **state)
{
    struct fx *f = *state;
    char crl[4096], expected[1024];
    tw_trust *t;

    th_path(crl, f->dir, "stale.crl");
    write_raw_crl(crl, f->ca1, f->ca1_key->pkey, "20200101000000Z",
                  "20200201000000Z");
    t = load(f->ca1_path, crl); /* loads: it is the CA's, only stale */
    snprintf(expected, sizeof(expected),
             "cannot check " SERVER_WHO " against the CRL (%s): publish a "
             "fresh CRL with `twoway-ca crl`",
             X509_verify_cert_error_string(X509_V_ERR_CRL_HAS_EXPIRED));
    rejected(t, f->server, TW_PURPOSE_SERVER, "localhost",
             TW_REASON_CRL_UNUSABLE, expected);
    tw_trust_free(t);
}

static void crl_from_the_future_is_crl_unusable(void **state)
{
    struct fx *f = *state;
    char crl[4096];
    tw_trust *t;
    tw_err err;

    th_path(crl, f->dir, "future.crl");
    write_raw_crl(crl, f->ca1, f->ca1_key->pkey, "20990101000000Z",
                  "20990201000000Z");
    t = load(f->ca1_path, crl);
    assert_int_equal(tw_trust_verify(t, f->server, TW_PURPOSE_SERVER, NULL,
                                     &err), -1);
    assert_int_equal(err.cls, TW_ERR_PEER_REJECTED);
    assert_int_equal(err.reason, TW_REASON_CRL_UNUSABLE);
    tw_trust_free(t);
}

/* ------------------------------------------------------- bad inputs */

static void unreadable_ca_and_crl_files(void **state)
{
    struct fx *f = *state;
    char path[4096], expected[4400];
    tw_err err;

    th_path(path, f->dir, "absent.pem");
    assert_null(tw_trust_load(path, NULL, &err));
    snprintf(expected, sizeof(expected),
             "cannot read %s: No such file or directory", path);
    th_assert_err(err, TW_ERR_IO, expected);

    assert_null(tw_trust_load(f->ca1_path, path, &err));
    th_assert_err(err, TW_ERR_IO, expected);

    th_path(path, f->dir, "garbage.pem");
    th_write(path, "not a certificate\n", 18);
    assert_null(tw_trust_load(path, NULL, &err));
    snprintf(expected, sizeof(expected),
             "%s holds no PEM certificate (garbage or truncated PEM?): give "
             "the CA certificate file, e.g. ca.cert.pem", path);
    th_assert_err_prefix(err, TW_ERR_INPUT, expected);

    assert_null(tw_trust_load(f->ca1_path, path, &err));
    snprintf(expected, sizeof(expected),
             "%s holds no readable CRL (garbage or truncated PEM?)", path);
    th_assert_err_prefix(err, TW_ERR_INPUT, expected);

    /* A certificate where the CRL should be. */
    assert_null(tw_trust_load(f->ca1_path, f->ca2_path, &err));
    snprintf(expected, sizeof(expected),
             "%s holds no readable CRL (garbage or truncated PEM?)",
             f->ca2_path);
    th_assert_err_prefix(err, TW_ERR_INPUT, expected);
    assert_int_equal(ERR_peek_error(), 0);
}

/* ------------------------------------------------- allocation failures */

struct once {
    struct fx *f;
    char crl[4096];
};

static int load_and_verify_once(void *ctx, tw_err *err)
{
    struct once *o = ctx;
    tw_trust *t = tw_trust_load(o->f->ca1_path, o->crl, err);
    tw_err verr;

    if (t == NULL)
        return -1;
    /* Verifying never fails for memory: at worst a name in the sentence
     * becomes "?"; the verdict stays. */
    assert_int_equal(tw_trust_verify(t, o->f->server, TW_PURPOSE_SERVER,
                                     "localhost", &verr), -1);
    assert_int_equal(verr.cls, TW_ERR_PEER_REJECTED);
    assert_int_equal(verr.reason, TW_REASON_REVOKED);
    assert_int_equal(tw_trust_verify(t, o->f->client, TW_PURPOSE_CLIENT, NULL,
                                     &verr), 0);
    tw_trust_free(t);
    return 0;
}

static void allocation_failures_are_internal(void **state)
{
    struct fx *f = *state;
    struct once o = {.f = f};
    tw_revoked r = {.serial_hex = "4A00000000000001", .revoked_at = 1700000000,
                    .reason = -1};
    tw_trust *t;
    tw_err err;

    th_path(o.crl, f->dir, "mem.crl");
    assert_int_equal(tw_crl_write_file(f->ca1, f->ca1_key, &r, 1, 1, 30, o.crl,
                                       &err), 0);
    th_alloc_fail_loop(load_and_verify_once, &o);

    /* Each allocation of the refusal's sentence failing in turn. */
    t = load(f->ca1_path, o.crl);
    for (long i = 0; i < 4; i++) {
        twu_alloc_fail_after(i);
        assert_int_equal(tw_trust_verify(t, f->server, 0, NULL, &err), -1);
        twu_alloc_fail_after(-1);
        assert_int_equal(err.cls, TW_ERR_PEER_REJECTED);
        assert_int_equal(err.reason, TW_REASON_REVOKED);
        assert_int_equal(strncmp(err.msg, "the certificate ", 16), 0);
    }
    tw_trust_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_a_chain),
        cmocka_unit_test(several_cas_in_one_file),
        cmocka_unit_test(host_names_and_addresses),
        cmocka_unit_test(wildcards_match_one_label),
        cmocka_unit_test(cn_counts_only_without_any_san),
        cmocka_unit_test(an_empty_host_is_a_usage_error_not_no_check),
        cmocka_unit_test(unknown_ca),
        cmocka_unit_test(unknown_ca_stays_unknown_ca_with_a_crl),
        cmocka_unit_test(a_self_signed_stranger_is_unknown_ca),
        cmocka_unit_test(expired),
        cmocka_unit_test(not_yet_valid),
        cmocka_unit_test(wrong_purpose),
        cmocka_unit_test(weak_rsa_leaf_is_bad_certificate),
        cmocka_unit_test(sha1_signature_is_bad_certificate),
        cmocka_unit_test(revoked_by_a_crl),
        cmocka_unit_test(an_empty_crl_revokes_nothing),
        cmocka_unit_test(crl_of_another_ca_is_refused_at_load),
        cmocka_unit_test(one_crl_per_ca_in_one_file),
        cmocka_unit_test(crl_files_that_hide_a_crl_are_refused),
        cmocka_unit_test(expired_crl_is_crl_unusable),
        cmocka_unit_test(crl_from_the_future_is_crl_unusable),
        cmocka_unit_test(unreadable_ca_and_crl_files),
        cmocka_unit_test(allocation_failures_are_internal),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
