/*
 * fuzz_request.c - invoice-server's request path on the server core
 * (src/httpd): HTTP head parsing (libhttp-parser and httpd's limits),
 * routing, roles, query strings and JSON bodies, answered from a real
 * SQLite store and writer thread (through db.h, as invoice-server does),
 * for a peer whose identity comes from a real in-process mTLS handshake.
 *
 * Made once: an httpd with invoice-server's routes (never run, so it does
 * not listen), one worker built by hand with invoice-server's per-worker
 * state (reader connection, completion queue watched by the worker's loop,
 * cache), the writer thread, and an mTLS session over a socketpair.
 *
 * Each input is a new connection, made by httpd__conn_accept on the
 * server's end of the socketpair, with the handshaken tw_conn swapped in
 * for the one accept made (conn_drive's step after a handshake).  Its
 * bytes are read as conn.c's consume() reads them.  A POST that waits for
 * the writer is finished by the worker's own loop: the queue's watch runs
 * routes.c's completion, whose httpd_req_resume writes the answer through
 * TLS; the client reads it here.  A connection that is still open at the
 * end is closed as one that never finished its handshake (no close_notify)
 * so the session serves the next input.  When a resume closes the
 * connection itself (the POST said Connection: close), the session goes
 * with it and the next input shakes hands again (resumed).
 *
 * Every complete request gets an answer starting "HTTP/1.1 ", and a valid
 * invoice POST gets 201, 200 or 409; anything else aborts.
 */
#define _GNU_SOURCE /* nftw, F_DUPFD_CLOEXEC, SOCK_NONBLOCK */
#include "app.h"
#include "httpd_internal.h"
#include "twoway_pki.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Requests answered per input: each valid POST costs a commit. */
#define MAX_REQUESTS 16

/* Kept for the whole run (reachable, not leaked). */
static httpd *srv;
static httpd_worker w;
static inv_app app;

/* The database's outage lines (PostgreSQL only): none here. */
TWU_PRINTF(2, 3)
static void quiet_log(void *ctx, const char *fmt, ...)
{
    (void)ctx;
    (void)fmt;
}
static inv_options opts;
static tw_config *server_cfg;
static tw_client *cli;
/* The mTLS session: `session` on server_fd (NULL after a connection
 * closed it), `client` on client_fd. */
static tw_conn *session, *client;
static int server_fd = -1, client_fd = -1;
static char answer[65536]; /* what the client read */

__attribute__((noreturn)) static void die(const char *what, const char *why)
{
    fprintf(stderr, "fuzz_request setup: %s: %s\n", what, why);
    abort();
}

/* A broken promise of the server: say which, then crash for libFuzzer. */
__attribute__((noreturn)) static void broken(const char *what,
                                             const char *text, size_t len)
{
    fprintf(stderr, "fuzz_request: %s; the answer (%zu bytes): %.*s\n", what,
            len, (int)(len < 200 ? len : 200), text ? text : "");
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

/* The server's configuration (kept by the httpd) and the client. */
static void configure(const char *ca, const char *scert, const char *skey,
                      const char *ccert, const char *ckey)
{
    tw_config *cc = tw_config_new();
    tw_err err;

    server_cfg = tw_config_new();
    if (server_cfg == NULL || cc == NULL)
        die("config", "out of memory");
    if (tw_config_set_ca_file(server_cfg, ca) < 0 ||
        tw_config_set_keypair_file(server_cfg, scert, skey) < 0 ||
        tw_config_add_policy_rule(server_cfg, "read O=MailServer") < 0 ||
        tw_config_add_policy_rule(server_cfg, "write O=MailServer") < 0 ||
        tw_config_add_policy_rule(server_cfg, "metrics CN=localhost") < 0)
        die("server config", tw_config_error(server_cfg));
    if (tw_config_set_ca_file(cc, ca) < 0 ||
        tw_config_set_keypair_file(cc, ccert, ckey) < 0)
        die("client config", tw_config_error(cc));
    if ((cli = tw_client_new(cc, &err)) == NULL)
        die("client", err.msg);
    tw_config_free(cc);
}

/* One mTLS handshake with the httpd's own TLS server over a socketpair,
 * kept for every input until a connection closes it. */
static void handshake(void)
{
    tw_err err;
    int fds[2], s = TW_WANT_READ, c = TW_WANT_READ;

    tw_conn_free(client);
    if (client_fd >= 0)
        close(client_fd);
    if (server_fd >= 0)
        close(server_fd);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   fds) < 0)
        die("socketpair", "failed");
    server_fd = fds[0];
    client_fd = fds[1];
    if ((session = tw_server_accept(srv->tls, server_fd, &err)) == NULL ||
        (client = tw_client_connect(cli, client_fd, "localhost", &err)) == NULL)
        die("connect", err.msg);
    for (int i = 0; i < 100 && (s != 0 || c != 0); i++) {
        if (c < -1)
            c = tw_conn_handshake(client);
        if (s < -1)
            s = tw_conn_handshake(session);
    }
    if (s != 0 || c != 0)
        die("handshake", tw_conn_err(s != 0 ? session : client)->msg);
}

/* The worker, as httpd__worker_start makes it, minus the listener, the
 * wake-up fd and the thread: this one runs on the fuzzer's. */
static void make_worker(void)
{
    tw_err err;

    w.srv = srv;
    w.index = 0;
    w.listen_fd = w.wake_fd = -1;
    w.max_conns = srv->opt.max_conns;
    w.wait_ms[WAIT_HANDSHAKE] = srv->opt.handshake_timeout_ms;
    w.wait_ms[WAIT_FIRST] = srv->opt.header_timeout_ms;
    w.wait_ms[WAIT_HEAD] = srv->opt.header_timeout_ms;
    w.wait_ms[WAIT_IDLE] = srv->opt.idle_timeout_ms;
    w.wait_ms[WAIT_LINGER] = 1000;
    w.wait_ms[WAIT_CLOSING] = 1000;
    if ((w.loop = httpd_loop_new(64)) == NULL)
        die("loop", "out of memory");
    if (inv_worker_start(&w, &app, &w.state, &err) < 0)
        die("worker", err.msg);
    w.started = 1;
}

static char scratch[64];

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
    char ca[256], cak[256], sc[256], sk[256], cc[256], ck[256];
    static char db[300];
    tw_key *ca_key, *skey, *ckey;
    tw_cert *ca_cert, *scert, *ccert;
    httpd_options o;
    sigset_t mask;
    tw_err err;

    /* tmpfs when there is one: each commit's fsync is then not a disk's. */
    snprintf(scratch, sizeof(scratch), "%s/twfuzz.XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (mkdtemp(scratch) == NULL)
        die("mkdtemp", scratch);
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
    write_pair(scratch, "ca", ca_cert, NULL, ca, cak);
    write_pair(scratch, "server", scert, skey, sc, sk);
    write_pair(scratch, "client", ccert, ckey, cc, ck);
    configure(ca, sc, sk, cc, ck);

    /* invoice-server's options (run.c), with limits an input of
     * -max_len=8192 can reach: 431 and 413 are then answered too. */
    httpd_options_defaults(&o);
    o.name = "fuzz_request";
    o.listen = "127.0.0.1:0";
    o.access_log = "/dev/null"; /* the access log's line is built */
    o.not_found = "no such path: see invoice-server(8) for the routes";
    o.workers = 1;
    o.max_head = 4096;
    o.max_headers = 32;
    o.max_body = 4096;
    if ((srv = httpd_new(&o, server_cfg, &app, &err)) == NULL)
        die("httpd", err.msg);
    if (inv_routes_add(srv) < 0)
        die("routes", "cannot register them");
    httpd_set_worker_hooks(srv, inv_worker_start, inv_worker_stop);

    snprintf(db, sizeof(db), "%s/invoices.db", scratch);
    opts.db = db;
    app.opt = &opts;
    if ((app.db = db_start(db, quiet_log, NULL, &err)) == NULL)
        die("store", err.msg);
    /* httpd_new kept SIGHUP, SIGTERM and SIGINT for its (unstarted)
     * supervisor; the writer thread has inherited that mask, and this
     * thread gives them back to libFuzzer. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &mask, NULL);

    make_worker();
    handshake();
    tw_cert_free(ca_cert);
    tw_cert_free(scert);
    tw_cert_free(ccert);
    tw_key_free(ca_key);
    tw_key_free(skey);
    tw_key_free(ckey);
}

/* ---------------------------------------------------------- per input */

/* A connection accepted on the server's end, with the session swapped in
 * for the tw_conn accept made (`*fresh`, kept to be swapped back). */
static httpd_conn *open_conn(tw_conn **fresh)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(40000)};
    int fd = fcntl(server_fd, F_DUPFD_CLOEXEC, 0);
    httpd_conn *c;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        die("dup", "failed");
    httpd__conn_accept(&w, fd, (const struct sockaddr *)&sa);
    if ((c = w.conns) == NULL || c->fd != fd || c->state != CONN_HANDSHAKE)
        die("accept", "no connection");
    /* What conn_drive does once the handshake is done. */
    *fresh = c->tls;
    c->tls = session;
    c->state = CONN_ACTIVE;
    c->keep_alive = 1;
    httpd__conn_wait(c, WAIT_FIRST);
    return c;
}

/* Close c as a connection still in its handshake: no close_notify, and
 * conn_free frees the unused tw_conn instead of the session. */
static void close_conn(httpd_conn *c, tw_conn *fresh)
{
    c->tls = fresh;
    c->state = CONN_HANDSHAKE;
    httpd__conn_close(c);
}

/* The status of the answer in text, after any "100 Continue"; aborts when
 * there is no answer. */
static int answer_status(const char *text, size_t len)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    size_t skip = 0;

    if (len >= sizeof(cont) - 1 && memcmp(text, cont, sizeof(cont) - 1) == 0)
        skip = sizeof(cont) - 1;
    if (len - skip < 13 || memcmp(text + skip, "HTTP/1.1 ", 9) != 0 ||
        text[skip + 9] < '1' || text[skip + 9] > '5' ||
        text[skip + 10] < '0' || text[skip + 10] > '9' ||
        text[skip + 11] < '0' || text[skip + 11] > '9' || text[skip + 12] != ' ')
        broken("a request got no HTTP/1.1 answer", text, len);
    return (text[skip + 9] - '0') * 100 + (text[skip + 10] - '0') * 10 +
           (text[skip + 11] - '0');
}

/* Everything the client can read now. */
static size_t read_client(void)
{
    size_t len = 0;

    for (;;) {
        long n = tw_conn_read(client, answer + len, sizeof(answer) - len);

        if (n <= 0)
            return len; /* TW_WANT_READ, or the server closed */
        len += (size_t)n;
        if (len == sizeof(answer))
            broken("the answer is too large", answer, len);
    }
}

/*
 * c's handler submitted a POST and suspended it: run the worker's loop
 * until routes.c's completion has answered and resumed it, then check
 * what the client read.  0 when the resume ended the connection (closed,
 * or closing with a lingering close, which we end), which freed c and the
 * session.
 */
static int finish_post(httpd_conn *c)
{
    long long until = httpd_loop_now_ms() + 5000;
    size_t len;
    int status;

    /* A resume that closes c takes it off the worker's list first. */
    while (w.nconns > 0 && c->waiting) {
        if (httpd_loop_now_ms() > until)
            broken("the writer never answered the POST", NULL, 0);
        httpd_loop_process(w.loop, 100);
    }
    len = read_client();
    status = answer_status(answer, len);
    if (status != 201 && status != 200 && status != 409)
        broken("a valid invoice was neither stored nor a conflict", answer,
               len);
    if (w.nconns > 0 && c->state == CONN_LINGER) {
        /* The answer ended the connection (Connection: close): its
         * lingering close waits for the client to close; end it now. */
        httpd__conn_close(c);
    }
    if (w.nconns == 0) {
        session = NULL; /* freed with the connection */
        return 0;
    }
    if (c->out.len != 0 || c->state != CONN_ACTIVE)
        die("resume", "the answer was not written");
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    const char *p = (const char *)data;
    size_t left = size;
    int requests = 0;
    httpd_conn *c;
    tw_conn *fresh;

    if (!ready) {
        setup();
        ready = 1;
    }
    if (session == NULL)
        handshake();
    c = open_conn(&fresh);
    /* conn.c's consume(), answering at once instead of writing. */
    while (left > 0 && c->state == CONN_ACTIVE && requests < MAX_REQUESTS) {
        size_t used;

        if (c->req.started_ms == 0 && c->req.head_len == 0 &&
            c->wait != WAIT_HEAD)
            httpd__conn_wait(c, WAIT_HEAD);
        used = httpd__request_feed(c, p, left);
        p += used;
        left -= used;
        if (c->req.error_status != 0) {
            c->keep_alive = 0;
            httpd__reply_error(c, c->req.error_status, c->req.error_reason);
            c->state = CONN_CLOSING;
            (void)answer_status(c->out.data, c->out.len);
            break;
        }
        if (!c->req.complete) {
            if (used == 0)
                break;
            continue;
        }
        requests++;
        c->keep_alive = http_should_keep_alive(&c->req.parser);
        if (tw_conn_refresh(c->tls) < 0)
            die("refresh", tw_conn_err(c->tls)->msg); /* nothing reloads */
        httpd__route(c);
        if (c->waiting) {
            if (!finish_post(c)) {
                c = NULL;
                break;
            }
            continue; /* resumed: request_done ran, the answer went out */
        }
        (void)answer_status(c->out.data, c->out.len);
        /* flush() then request_done(): written, then the next request. */
        twu_buf_free(&c->out);
        httpd__request_reset(&w, &c->req);
        if (!c->keep_alive) {
            c->state = CONN_CLOSING;
            break;
        }
        httpd__conn_wait(c, WAIT_IDLE);
    }
    if (c != NULL)
        close_conn(c, fresh);
    else
        tw_conn_free(fresh);
    return 0;
}
