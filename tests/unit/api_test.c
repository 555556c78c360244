/*
 * api_test.c - the exported ABI, as a user of libtwoway.so meets it: the
 * public headers only, linked with the shared library (not the static
 * archive the other unit tests use).  A CA, a server and a client made with
 * the public issuance calls; a handshake over a non-blocking socketpair; the
 * peer's identity, a policy decision, and the refusal of a client from
 * another company's CA, with its reason on both sides.
 *
 * Needing an internal symbol here would mean testing the wrong thing: the
 * library exports tw_* only (hidden visibility; the `exports` test).
 */
#include <twoway.h>
#if __has_include(<twoway_pki.h>)
#include <twoway_pki.h> /* keys, certificates, CSRs, CRLs */
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PATH_LEN 4096

struct files {
    char dir[PATH_LEN];
    char ca[PATH_LEN];
    char server_cert[PATH_LEN], server_key[PATH_LEN];
    char client_cert[PATH_LEN], client_key[PATH_LEN];
    char zxc_cert[PATH_LEN], zxc_key[PATH_LEN]; /* a client of ZXC Inc.'s CA */
};

static void path_in(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_LEN, "%s/%s", dir, name);

    assert_true(n > 0 && n < PATH_LEN);
}

/* A key of the default type, or the test fails with the library's words. */
static tw_key *new_key(void)
{
    tw_err err;
    tw_key *key = tw_key_generate(NULL, &err);

    if (key == NULL)
        fail_msg("tw_key_generate: %s", err.msg);
    return key;
}

/* Certify `key` as `subject` for `purposes`, signed by issuer/issuer_key
 * (self-signed when issuer is NULL); `dns` is a DNS SAN or NULL. */
static tw_cert *issue(const char *subject, int purposes, const char *dns,
                      const tw_key *key, const tw_cert *issuer,
                      const tw_key *issuer_key)
{
    tw_err err;
    tw_name *name = tw_name_parse(subject, &err);
    tw_certgen *g = tw_certgen_new(&err);
    tw_cert *cert;

    if (name == NULL || g == NULL)
        fail_msg("%s: %s", subject, err.msg);
    if (tw_certgen_set_subject(g, name, &err) != 0 ||
        tw_certgen_set_purposes(g, purposes, &err) != 0 ||
        tw_certgen_set_days(g, 30, &err) != 0 ||
        tw_certgen_set_public_key(g, key, &err) != 0 ||
        (dns != NULL && tw_certgen_add_san(g, TW_SAN_DNS, dns, &err) != 0))
        fail_msg("%s: %s", subject, err.msg);
    cert = tw_certgen_sign(g, issuer, issuer_key, &err);
    if (cert == NULL)
        fail_msg("signing %s: %s", subject, err.msg);
    tw_certgen_free(g);
    tw_name_free(name);
    return cert;
}

static void write_pair(const char *dir, const char *name, const tw_cert *cert,
                       const tw_key *key, char *cert_path, char *key_path)
{
    char file[256];
    tw_err err;

    snprintf(file, sizeof(file), "%s.cert.pem", name);
    path_in(cert_path, dir, file);
    snprintf(file, sizeof(file), "%s.key.pem", name);
    path_in(key_path, dir, file);
    if (tw_cert_write_file(cert, cert_path, &err) != 0 ||
        tw_key_write_file(key, key_path, NULL, &err) != 0)
        fail_msg("writing %s: %s", name, err.msg);
}

static int setup(void **state)
{
    struct files *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");
    tw_key *ca_key, *server_key, *client_key, *zxc_ca_key, *zxc_key;
    tw_cert *ca, *server, *client, *zxc_ca, *zxc;
    tw_err err;

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s/twapi.XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));

    ca_key = new_key();
    ca = issue("/O=ABC Inc.", TW_PURPOSE_CA, NULL, ca_key, NULL, ca_key);
    server_key = new_key();
    server = issue("/CN=localhost/O=InvoiceServer", TW_PURPOSE_SERVER,
                   "localhost", server_key, ca, ca_key);
    client_key = new_key();
    client = issue("/CN=localhost/O=MailServer", TW_PURPOSE_CLIENT, NULL,
                   client_key, ca, ca_key);
    zxc_ca_key = new_key();
    zxc_ca = issue("/O=ZXC Inc./CN=zxc.com", TW_PURPOSE_CA, NULL, zxc_ca_key,
                   NULL, zxc_ca_key);
    zxc_key = new_key();
    zxc = issue("/CN=localhost/O=MailServer", TW_PURPOSE_CLIENT, NULL, zxc_key,
                zxc_ca, zxc_ca_key);

    path_in(f->ca, f->dir, "ca.cert.pem");
    if (tw_cert_write_file(ca, f->ca, &err) != 0)
        fail_msg("writing the CA: %s", err.msg);
    write_pair(f->dir, "server", server, server_key, f->server_cert,
               f->server_key);
    write_pair(f->dir, "client", client, client_key, f->client_cert,
               f->client_key);
    write_pair(f->dir, "zxc", zxc, zxc_key, f->zxc_cert, f->zxc_key);

    tw_cert_free(ca);
    tw_cert_free(server);
    tw_cert_free(client);
    tw_cert_free(zxc_ca);
    tw_cert_free(zxc);
    tw_key_free(ca_key);
    tw_key_free(server_key);
    tw_key_free(client_key);
    tw_key_free(zxc_ca_key);
    tw_key_free(zxc_key);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct files *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    char path[PATH_LEN];

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        path_in(path, f->dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    assert_int_equal(rmdir(f->dir), 0);
    free(f);
    return 0;
}

static tw_config *config(const struct files *f, const char *cert,
                         const char *key, const char *rule)
{
    tw_config *cfg = tw_config_new();

    assert_non_null(cfg);
    if (tw_config_set_ca_file(cfg, f->ca) != 0 ||
        tw_config_set_keypair_file(cfg, cert, key) != 0 ||
        (rule != NULL && tw_config_add_policy_rule(cfg, rule) != 0))
        fail_msg("config: %s", tw_config_error(cfg));
    return cfg;
}

/* A server and a client connection over a non-blocking socketpair. */
struct pair {
    int fds[2];
    tw_server *srv;
    tw_client *cli;
    tw_conn *s, *c;
    int s_rc, c_rc;
};

static void pair_open(struct pair *pr, const tw_config *server_cfg,
                      const tw_config *client_cfg)
{
    tw_err err;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pr->fds), 0);
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(pr->fds[i], F_GETFL);

        assert_int_equal(fcntl(pr->fds[i], F_SETFL, fl | O_NONBLOCK), 0);
    }
    if ((pr->srv = tw_server_new(server_cfg, &err)) == NULL ||
        (pr->cli = tw_client_new(client_cfg, &err)) == NULL ||
        (pr->s = tw_server_accept(pr->srv, pr->fds[0], &err)) == NULL ||
        (pr->c = tw_client_connect(pr->cli, pr->fds[1], "localhost", &err)) == NULL)
        fail_msg("pair: %s", err.msg);
}

static void pair_close(struct pair *pr)
{
    tw_conn_free(pr->s);
    tw_conn_free(pr->c);
    tw_client_free(pr->cli);
    tw_server_free(pr->srv);
    close(pr->fds[0]);
    close(pr->fds[1]);
}

static int wants(int rc)
{
    return rc == TW_WANT_READ || rc == TW_WANT_WRITE;
}

/* Drive both handshakes in turn until neither wants more.  A TLS 1.3
 * client finishes before the server has judged its certificate: it learns
 * of a refusal when it next reads, so read once on the client then. */
static void handshake(struct pair *pr)
{
    char buf[16];
    long n = TW_WANT_READ;

    pr->s_rc = pr->c_rc = TW_WANT_READ;
    for (int i = 0; i < 100 && (wants(pr->s_rc) || wants(pr->c_rc)); i++) {
        if (wants(pr->c_rc))
            pr->c_rc = tw_conn_handshake(pr->c);
        if (wants(pr->s_rc))
            pr->s_rc = tw_conn_handshake(pr->s);
    }
    if (pr->c_rc == 0 && pr->s_rc == -1) {
        for (int i = 0; i < 10 && n == TW_WANT_READ; i++)
            n = tw_conn_read(pr->c, buf, sizeof(buf));
        pr->c_rc = (int)n;
    }
}

/* Write on one side, read it on the other. */
static void exchange(tw_conn *from, tw_conn *to, const char *msg)
{
    size_t len = strlen(msg);
    char buf[64];
    long n = TW_WANT_READ;

    assert_int_equal(tw_conn_write(from, msg, len), (long)len);
    for (int i = 0; i < 100 && n == TW_WANT_READ; i++)
        n = tw_conn_read(to, buf, sizeof(buf));
    assert_int_equal(n, (long)len);
    assert_memory_equal(buf, msg, len);
}

static void issued_certificates(void **state)
{
    const struct files *f = *state;
    tw_err err;
    tw_cert *cert = tw_cert_load_file(f->client_cert, &err);
    tw_key *key = tw_key_load_file(f->client_key, NULL, &err);
    tw_key *other = tw_key_load_file(f->server_key, NULL, &err);
    tw_trust *trust = tw_trust_load(f->ca, NULL, &err);
    tw_identity *id;

    assert_non_null(cert);
    assert_non_null(key);
    assert_non_null(other);
    assert_non_null(trust);
    assert_string_equal(tw_key_describe(key), "EC P-256");
    assert_int_equal(tw_cert_matches_key(cert, key), 1);
    assert_int_equal(tw_cert_matches_key(cert, other), 0);
    id = tw_identity_from_cert(cert, &err);
    assert_non_null(id);
    assert_string_equal(tw_identity_subject(id), "/CN=localhost/O=MailServer");
    assert_string_equal(tw_identity_issuer(id), "/O=ABC Inc.");
    assert_int_equal(tw_identity_version(id), 3);
    assert_int_equal(tw_identity_purposes(id), TW_PURPOSE_CLIENT);
    assert_int_equal(strlen(tw_identity_fingerprint(id)), 64);
    assert_int_equal(strlen(tw_identity_spki(id)), 64);
    assert_true(tw_identity_not_after(id) > tw_identity_not_before(id));
    assert_int_equal(tw_trust_verify(trust, cert, TW_PURPOSE_CLIENT, NULL, &err), 0);
    /* A client certificate is not a server's. */
    assert_int_equal(tw_trust_verify(trust, cert, TW_PURPOSE_SERVER, NULL, &err), -1);
    assert_string_equal(tw_error_class_name(err.cls), "peer_rejected");
    assert_string_equal(tw_reason_name(err.reason), "wrong_usage");
    tw_identity_free(id);
    tw_trust_free(trust);
    tw_key_free(other);
    tw_key_free(key);
    tw_cert_free(cert);
}

static void handshake_identity_policy(void **state)
{
    const struct files *f = *state;
    tw_config *sc = config(f, f->server_cert, f->server_key, "read O=MailServer");
    tw_config *cc = config(f, f->client_cert, f->client_key, NULL);
    const tw_identity *client_id, *server_id;
    const char *why = NULL;
    struct pair pr;
    char roles[64];

    assert_int_equal(tw_config_add_expectation(cc, "O=InvoiceServer"), 0);
    pair_open(&pr, sc, cc);
    handshake(&pr);
    if (pr.s_rc != 0 || pr.c_rc != 0)
        fail_msg("handshake: server %d (%s), client %d (%s)", pr.s_rc,
                 tw_conn_err(pr.s)->msg, pr.c_rc, tw_conn_err(pr.c)->msg);
    assert_string_equal(tw_conn_version(pr.s), "TLSv1.3");
    assert_int_equal(tw_conn_resumed(pr.s), 0);
    assert_int_equal(tw_conn_generation(pr.s), 1);

    /* Who each side saw. */
    client_id = tw_conn_peer(pr.s);
    assert_non_null(client_id);
    assert_string_equal(tw_identity_subject(client_id), "/CN=localhost/O=MailServer");
    assert_string_equal(tw_identity_issuer(client_id), "/O=ABC Inc.");
    assert_int_equal(tw_identity_field_count(client_id, "O"), 1);
    assert_string_equal(tw_identity_field(client_id, "O", 0), "MailServer");
    server_id = tw_conn_peer(pr.c);
    assert_non_null(server_id);
    assert_string_equal(tw_identity_subject(server_id),
                        "/CN=localhost/O=InvoiceServer");
    assert_int_equal(tw_identity_san_count(server_id, TW_SAN_DNS), 1);
    assert_string_equal(tw_identity_san(server_id, TW_SAN_DNS, 0), "localhost");

    /* What the policy gives the client: read, and nothing else. */
    assert_int_equal(tw_server_has_policy(pr.srv), 1);
    assert_int_equal(tw_conn_allows(pr.s, "read", &why), 1);
    assert_string_equal(why, "read O=MailServer");
    assert_int_equal(tw_conn_allows(pr.s, "write", NULL), 0);
    assert_int_equal(tw_conn_roles(pr.s, roles, sizeof(roles)), 1);
    assert_string_equal(roles, "read");

    /* And the connection carries data both ways. */
    exchange(pr.c, pr.s, "GET / HTTP/1.1");
    exchange(pr.s, pr.c, "HTTP/1.1 200 OK");
    pair_close(&pr);
    tw_config_free(sc);
    tw_config_free(cc);
}

/* The seed's step 5: a Mail Server certificate from ZXC Inc.'s CA. */
static void unknown_ca_refused(void **state)
{
    const struct files *f = *state;
    tw_config *sc = config(f, f->server_cert, f->server_key, NULL);
    tw_config *cc = config(f, f->zxc_cert, f->zxc_key, NULL);
    const char *alert = "the server rejected our certificate (TLS alert "
                        "unknown_ca): ";
    const tw_err *se, *ce;
    tw_identity *refused;
    struct pair pr;
    char want[1024];

    pair_open(&pr, sc, cc);
    handshake(&pr);
    assert_int_equal(pr.s_rc, -1);
    assert_null(tw_conn_peer(pr.s));

    /* The server names the certificate it refused and the fix. */
    refused = tw_conn_refused_identity(pr.s);
    assert_non_null(refused);
    assert_string_equal(tw_identity_issuer(refused), "/O=ZXC Inc./CN=zxc.com");
    se = tw_conn_err(pr.s);
    assert_string_equal(tw_error_class_name(se->cls), "peer_rejected");
    assert_string_equal(tw_reason_name(se->reason), "unknown_ca");
    snprintf(want, sizeof(want),
             "the client's certificate /CN=localhost/O=MailServer (issuer "
             "/O=ZXC Inc./CN=zxc.com, serial %s) was not issued by a trusted "
             "CA (issuer /O=ZXC Inc./CN=zxc.com is not in the CA file): issue "
             "it from the trusted CA, or trust its issuer",
             tw_identity_serial(refused));
    assert_string_equal(se->msg, want);
    tw_identity_free(refused);

    /* The client hears why from the alert: not "socket hang up". */
    assert_int_equal(pr.c_rc, -1);
    ce = tw_conn_err(pr.c);
    assert_string_equal(tw_error_class_name(ce->cls), "rejected_by_peer");
    assert_string_equal(tw_reason_name(ce->reason), "unknown_ca");
    if (strncmp(ce->msg, alert, strlen(alert)) != 0)
        fail_msg("client's message '%s' does not start with '%s'", ce->msg,
                 alert);
    pair_close(&pr);
    tw_config_free(sc);
    tw_config_free(cc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(issued_certificates),
        cmocka_unit_test(handshake_identity_policy),
        cmocka_unit_test(unknown_ca_refused),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
