/*
 * tls_loop.c - libtwoway's server side alone, for profiles that do not
 * depend on a busy machine: client and server in one process over
 * socketpairs (as tests/unit/tls_test.c), no event loop, no HTTP.
 *
 *   tls_loop resume   N  ...  one full handshake, then N resumed ones
 *   tls_loop sessions N  ...  N full handshakes by fresh clients, each
 *                             connection closed; prints the heap growth
 *                             (glibc mallinfo2) and RSS growth per
 *                             handshake: what the server keeps per session
 *
 * Every server-side call goes through a function named srv_*, so that
 *   valgrind --tool=callgrind --toggle-collect='srv_*' bench/tls_loop ...
 * counts the server's instructions only (docs/benchmarks.md).
 */
#include "twoway.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

NOINLINE static tw_conn *srv_accept(tw_server *srv, int fd, tw_err *err)
{
    return tw_server_accept(srv, fd, err);
}

NOINLINE static int srv_handshake(tw_conn *c)
{
    return tw_conn_handshake(c);
}

NOINLINE static long srv_read(tw_conn *c, void *buf, size_t len)
{
    return tw_conn_read(c, buf, len);
}

NOINLINE static long srv_write(tw_conn *c, const void *buf, size_t len)
{
    return tw_conn_write(c, buf, len);
}

NOINLINE static void srv_close(tw_conn *c)
{
    (void)tw_conn_shutdown(c);
    tw_conn_free(c);
}

static void die(const char *what, const tw_err *err)
{
    fprintf(stderr, "tls_loop: %s: %s\n", what, err != NULL ? err->msg : "");
    exit(1);
}

/* One connection: handshake, "ping"/"pong", both sides closed with
 * close_notify (so that the sessions stay resumable).  Returns whether
 * the server resumed. */
static int connect_once(tw_server *srv, tw_client *cli)
{
    int fds[2], s_rc = TW_WANT_READ, c_rc = TW_WANT_READ, resumed;
    tw_conn *s, *c;
    char buf[64];
    tw_err err;
    long n = -1;

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        die("socketpair", NULL);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    if ((s = srv_accept(srv, fds[0], &err)) == NULL)
        die("accept", &err);
    if ((c = tw_client_connect(cli, fds[1], "localhost", &err)) == NULL)
        die("connect", &err);
    for (int i = 0; i < 100 && (s_rc != 0 || c_rc != 0); i++) {
        if (c_rc == TW_WANT_READ || c_rc == TW_WANT_WRITE)
            c_rc = tw_conn_handshake(c);
        if (s_rc == TW_WANT_READ || s_rc == TW_WANT_WRITE)
            s_rc = srv_handshake(s);
    }
    if (s_rc != 0 || c_rc != 0)
        die("handshake", s_rc != 0 ? tw_conn_err(s) : tw_conn_err(c));
    if (tw_conn_write(c, "ping", 4) != 4)
        die("client write", tw_conn_err(c));
    for (int i = 0; i < 50 && (n = srv_read(s, buf, sizeof(buf))) < 0; i++)
        ;
    if (n != 4 || srv_write(s, "pong", 4) != 4)
        die("server read/write", tw_conn_err(s));
    for (int i = 0; i < 50 && (n = tw_conn_read(c, buf, sizeof(buf))) < 0; i++)
        ;
    n = tw_conn_read(c, buf, sizeof(buf)); /* TLS 1.3 tickets */
    resumed = tw_conn_resumed(s);
    (void)tw_conn_shutdown(c);
    srv_close(s);
    tw_conn_free(c);
    close(fds[0]);
    close(fds[1]);
    return resumed;
}

static long rss_bytes(void)
{
    long size = 0, pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL || fscanf(f, "%ld %ld", &size, &pages) != 2)
        pages = 0;
    if (f != NULL)
        fclose(f);
    return pages * sysconf(_SC_PAGESIZE);
}

static tw_config *config(const char *ca, const char *cert, const char *key,
                         int version)
{
    tw_config *cfg = tw_config_new();

    if (cfg == NULL || tw_config_set_ca_file(cfg, ca) != 0 ||
        tw_config_set_keypair_file(cfg, cert, key) != 0 ||
        tw_config_set_protocols(cfg, version, version) != 0) {
        fprintf(stderr, "tls_loop: %s\n", cfg ? tw_config_error(cfg) : "");
        exit(1);
    }
    return cfg;
}

int main(int argc, char **argv)
{
    tw_config *scfg, *ccfg;
    tw_server *srv;
    tw_client *cli;
    tw_err err;
    long n, resumed = 0;
    int version;

    if (argc != 9 || (strcmp(argv[1], "resume") != 0 &&
                      strcmp(argv[1], "sessions") != 0)) {
        fprintf(stderr, "usage: tls_loop resume|sessions N 1.2|1.3 CA "
                        "SERVER-CERT SERVER-KEY CLIENT-CERT CLIENT-KEY\n");
        return 2;
    }
    n = atol(argv[2]);
    version = strcmp(argv[3], "1.2") == 0 ? TW_TLS_1_2 : TW_TLS_1_3;
    scfg = config(argv[4], argv[5], argv[6], version);
    ccfg = config(argv[4], argv[7], argv[8], version);
    if ((srv = tw_server_new(scfg, &err)) == NULL)
        die("server", &err);
    if ((cli = tw_client_new(ccfg, &err)) == NULL)
        die("client", &err);
    if (strcmp(argv[1], "resume") == 0) {
        connect_once(srv, cli);
        for (long i = 0; i < n; i++)
            resumed += connect_once(srv, cli);
        printf("{\"mode\":\"resume\",\"tls\":\"%s\",\"handshakes\":%ld,"
               "\"resumed\":%ld}\n", argv[3], n, resumed);
    } else {
        struct mallinfo2 m0, m1;
        long rss0, rss1;

        /* Warm up: the first handshakes fill OpenSSL's own caches. */
        for (int i = 0; i < 20; i++) {
            tw_client *fresh = tw_client_new(ccfg, &err);

            connect_once(srv, fresh);
            tw_client_free(fresh);
        }
        m0 = mallinfo2();
        rss0 = rss_bytes();
        for (long i = 0; i < n; i++) {
            tw_client *fresh = tw_client_new(ccfg, &err);

            if (fresh == NULL)
                die("client", &err);
            resumed += connect_once(srv, fresh);
            tw_client_free(fresh);
        }
        m1 = mallinfo2();
        rss1 = rss_bytes();
        printf("{\"mode\":\"sessions\",\"tls\":\"%s\",\"handshakes\":%ld,"
               "\"resumed\":%ld,\"cached\":%zu,\"cache_bytes\":%zu,"
               "\"heap_per_session\":%.0f,\"rss_per_session\":%.0f}\n",
               argv[3], n, resumed, tw_server_session_cache_count(srv),
               tw_server_session_cache_bytes(srv),
               ((double)m1.uordblks - (double)m0.uordblks) / (double)n,
               ((double)rss1 - (double)rss0) / (double)n);
    }
    tw_client_free(cli);
    tw_server_free(srv);
    tw_config_free(scfg);
    tw_config_free(ccfg);
    return 0;
}
