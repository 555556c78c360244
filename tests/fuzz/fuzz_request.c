/*
 * fuzz_request.c - invoice-server's request path: HTTP head parsing
 * (libhttp-parser and our limits), routing, roles, query strings and JSON
 * bodies, answered from a real SQLite store and writer thread, for a peer
 * whose identity comes from a real in-process mTLS handshake.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "server.h"
#include "tw_internal.h"

#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inv_server srv;
static inv_worker w;
static tw_conn *peer_conn;
/* Kept for the whole run (reachable, not leaked). */
static tw_client *cli;
static tw_conn *client;

__attribute__((noreturn)) static void die(const char *what, const char *why)
{
    fprintf(stderr, "fuzz_request setup: %s: %s\n", what, why);
    abort();
}

static tw_cert *issue(const char *subject, int purposes, tw_key *key,
                      const tw_cert *ca, tw_key *ca_key)
{
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);
    tw_name *name = tw_name_parse(subject, &err);
    tw_cert *cert = NULL;

    if (g == NULL || name == NULL || tw_certgen_set_subject(g, name, &err) < 0 ||
        tw_certgen_set_purposes(g, purposes, &err) < 0 ||
        tw_certgen_set_public_key(g, key, &err) < 0 ||
        (purposes == TW_PURPOSE_SERVER && tw_certgen_add_cn_as_dns(g, &err) < 0) ||
        (cert = tw_certgen_sign(g, ca, ca ? ca_key : key, &err)) == NULL)
        die("certificate", err.msg);
    tw_certgen_free(g);
    tw_name_free(name);
    return cert;
}

static void write_pair(const char *dir, const char *name, tw_cert *cert,
                       tw_key *key, char *cert_path, char *key_path)
{
    tw_err err;

    sprintf(cert_path, "%s/%s.cert.pem", dir, name);
    sprintf(key_path, "%s/%s.key.pem", dir, name);
    if (tw_cert_write_file(cert, cert_path, &err) < 0 ||
        (key != NULL && tw_key_write_file(key, key_path, NULL, &err) < 0))
        die(cert_path, err.msg);
}

/* One mTLS handshake over a socketpair, kept for every input. */
static void handshake(const char *ca, const char *scert, const char *skey,
                      const char *ccert, const char *ckey)
{
    tw_config *sc = tw_config_new(), *cc = tw_config_new();
    tw_err err;
    int fds[2], s = TW_WANT_READ, c = TW_WANT_READ;

    if (tw_config_set_ca_file(sc, ca) < 0 ||
        tw_config_set_keypair_file(sc, scert, skey) < 0 ||
        tw_config_add_policy_rule(sc, "read O=MailServer") < 0 ||
        tw_config_add_policy_rule(sc, "write O=MailServer") < 0 ||
        tw_config_add_policy_rule(sc, "metrics CN=localhost") < 0 ||
        tw_config_set_ca_file(cc, ca) < 0 ||
        tw_config_set_keypair_file(cc, ccert, ckey) < 0)
        die("config", tw_config_error(sc));
    if ((srv.tls = tw_server_new(sc, &err)) == NULL ||
        (cli = tw_client_new(cc, &err)) == NULL)
        die("server/client", err.msg);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
        die("socketpair", "failed");
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    peer_conn = tw_server_accept(srv.tls, fds[0], &err);
    client = tw_client_connect(cli, fds[1], "localhost", &err);
    for (int i = 0; i < 100 && (s != 0 || c != 0); i++) {
        if (c < -1)
            c = tw_conn_handshake(client);
        if (s < -1)
            s = tw_conn_handshake(peer_conn);
    }
    if (s != 0 || c != 0)
        die("handshake", tw_conn_err(peer_conn)->msg);
    srv.cfg = sc;
    tw_config_free(cc);
}

static char scratch[] = "/tmp/twfuzz.XXXXXX";

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The scratch directory (PKI, database) goes when the fuzzer exits. */
static void remove_scratch(void)
{
    nftw(scratch, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    char *dir = scratch, ca[256], cak[256], sc[256], sk[256];
    char cc[256], ck[256], db[300];
    tw_key *ca_key, *skey, *ckey;
    tw_cert *ca_cert, *scert, *ccert;
    tw_err err;

    if (mkdtemp(dir) == NULL)
        die("mkdtemp", "failed");
    atexit(remove_scratch);
    if ((ca_key = tw_key_generate(NULL, &err)) == NULL ||
        (skey = tw_key_generate(NULL, &err)) == NULL ||
        (ckey = tw_key_generate(NULL, &err)) == NULL)
        die("keys", err.msg);
    ca_cert = issue("/O=ABC Inc.", TW_PURPOSE_CA, ca_key, NULL, NULL);
    scert = issue("/CN=localhost/O=InvoiceServer", TW_PURPOSE_SERVER, skey,
                  ca_cert, ca_key);
    ccert = issue("/CN=localhost/O=MailServer", TW_PURPOSE_CLIENT, ckey,
                  ca_cert, ca_key);
    write_pair(dir, "ca", ca_cert, NULL, ca, cak);
    write_pair(dir, "server", scert, skey, sc, sk);
    write_pair(dir, "client", ccert, ckey, cc, ck);
    handshake(ca, sc, sk, cc, ck);
    snprintf(db, sizeof(db), "%s/invoices.db", dir);
    srv.opt.db = strdup(db);
    srv.opt.max_head = 8192;
    srv.opt.max_headers = 64;
    srv.opt.max_body = 65536;
    pthread_mutex_init(&srv.log_lock, NULL);
    if (store_init(db, &err) < 0 || (w.store = store_open(db, &err)) == NULL ||
        (w.queue = store_queue_new(&err)) == NULL ||
        (srv.writer = store_writer_start(db, &err)) == NULL)
        die("store", err.msg);
    w.srv = &srv;
    w.loop = tw_loop_new(64);
    w.cache = calloc(1, sizeof(*w.cache));
    tw_cert_free(ca_cert);
    tw_cert_free(scert);
    tw_cert_free(ccert);
    tw_key_free(ca_key);
    tw_key_free(skey);
    tw_key_free(ckey);
}

static void post_done(void *ctx, store_result *r)
{
    inv_conn *c = ctx;

    c->waiting = 0;
    if (r->status != 201 && r->status != 200 && r->status != 409)
        abort(); /* a valid invoice must be stored or conflict */
    inv_reply(c, r->status, "application/json", r->body.data ? r->body.data : "",
              r->body.len, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    inv_conn c;
    const char *p = (const char *)data;
    size_t left = size;

    if (!ready) {
        setup();
        w.post_done = post_done;
        ready = 1;
    }
    memset(&c, 0, sizeof(c));
    c.w = &w;
    c.fd = -1;
    c.tls = peer_conn;
    snprintf(c.peer, sizeof(c.peer), "127.0.0.1:1");
    inv_request_reset(&w, &c.req);
    for (int n = 0; n < 16 && left > 0; n++) {
        size_t used = inv_request_feed(&c, p, left);

        p += used;
        left -= used;
        if (c.req.error_status != 0) {
            inv_reply_error(&c, c.req.error_status, c.req.error_reason);
            break;
        }
        if (!c.req.complete)
            break;
        c.keep_alive = http_should_keep_alive(&c.req.parser);
        inv_route(&c);
        if (c.waiting) {
            struct pollfd pfd = {.fd = store_queue_fd(w.queue), .events = POLLIN};

            while (c.waiting && poll(&pfd, 1, 5000) > 0)
                store_queue_drain(w.queue);
            if (c.waiting)
                abort(); /* the writer never answered */
        }
        if (c.out.len < 12 || memcmp(c.out.data, "HTTP/1.1 ", 9) != 0)
            abort(); /* every request gets a response */
        twu_buf_free(&c.out);
        inv_request_reset(&w, &c.req);
    }
    inv_request_free(&w, &c.req);
    twu_buf_free(&c.out);
    return 0;
}
