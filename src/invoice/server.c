/*
 * server.c - invoice-server's process: configuration, workers, signals,
 * reloads and the drain at shutdown.  The main thread only waits for
 * signals and watches the configured files; workers do all the serving.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_MAX_MS 10000

static int parse_listen(inv_server *srv, const char *text)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    struct sockaddr_in *s4 = (struct sockaddr_in *)&srv->addr;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&srv->addr;
    char *end;
    long port;
    size_t hlen;

    if (colon == NULL || (hlen = (size_t)(colon - text)) >= sizeof(host))
        return -1;
    port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
        return -1;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    memset(&srv->addr, 0, sizeof(srv->addr));
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host[hlen - 1] = '\0';
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
            return -1;
        srv->addrlen = sizeof(*s6);
        return 0;
    }
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
        return -1;
    srv->addrlen = sizeof(*s4);
    return 0;
}

/* SO_REUSEPORT would let a second server share the port and split the
 * connections with it: check first that nobody listens there. */
static int port_in_use(const inv_server *srv)
{
    int fd = socket(srv->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1, busy;

    if (fd < 0)
        return 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    busy = bind(fd, (const struct sockaddr *)&srv->addr, srv->addrlen) != 0 &&
           errno == EADDRINUSE;
    close(fd);
    return busy;
}

/* Enough file descriptors for --max-connections (and the files besides). */
static void raise_fd_limit(inv_server *srv)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)srv->opt.max_conns + 256;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
        fprintf(stderr, "invoice-server: only %llu file descriptors allowed "
                "(ulimit -n): fewer than --max-connections %d needs\n",
                (unsigned long long)rl.rlim_cur, srv->opt.max_conns);
}

static void addr_text(const inv_server *srv, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];

    if (srv->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)&srv->addr;

        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const void *)&srv->addr;

        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(s4->sin_port));
    }
}

static tw_config *build_config(const inv_options *o)
{
    tw_config *cfg = tw_config_new();

    if (cfg == NULL) {
        fprintf(stderr, "invoice-server: out of memory\n");
        return NULL;
    }
    if (tw_config_set_ca_file(cfg, o->ca) < 0 ||
        tw_config_set_keypair_file(cfg, o->cert, o->key) < 0 ||
        (o->crl && tw_config_set_crl_file(cfg, o->crl) < 0) ||
        (o->policy && tw_config_set_policy_file(cfg, o->policy) < 0) ||
        (o->ticket_keys && tw_config_set_ticket_keys_file(cfg, o->ticket_keys) < 0) ||
        tw_config_set_tickets(cfg, o->tickets) < 0)
        goto err;
    for (int i = 0; i < o->nrules; i++)
        if (tw_config_add_policy_rule(cfg, o->rules[i]) < 0) {
            fprintf(stderr, "invoice-server: --allow '%s': %s\n", o->rules[i],
                    tw_config_error(cfg));
            tw_config_free(cfg);
            return NULL;
        }
    return cfg;
err:
    fprintf(stderr, "invoice-server: %s\n", tw_config_error(cfg));
    tw_config_free(cfg);
    return NULL;
}

/* A signature of the files a reload re-reads: any change of a file's
 * inode, size or modification time (older too, as `cp -p` makes) changes
 * it. */
static long long files_mtime(const inv_options *o)
{
    const char *files[] = {o->cert, o->key, o->ca, o->crl, o->policy,
                           o->ticket_keys};
    unsigned long long sig = 1469598103934665603ULL;

    for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
        struct stat st;
        unsigned long long parts[4] = {0, 0, 0, 0};

        if (files[i] != NULL && stat(files[i], &st) == 0) {
            parts[0] = (unsigned long long)st.st_ino;
            parts[1] = (unsigned long long)st.st_size;
            parts[2] = (unsigned long long)st.st_mtim.tv_sec;
            parts[3] = (unsigned long long)st.st_mtim.tv_nsec;
        }
        for (int j = 0; j < 4; j++)
            sig = (sig ^ parts[j]) * 1099511628211ULL; /* FNV-1a style */
    }
    return (long long)sig;
}

static void reload(inv_server *srv, const char *why)
{
    tw_err err;

    if (tw_server_reload(srv->tls, srv->cfg, &err) < 0) {
        atomic_fetch_add(&srv->metrics.reload_failures, 1);
        inv_log(srv, "reload (%s) failed, keeping generation %u: %s", why,
                tw_server_generation(srv->tls), err.msg);
        return;
    }
    atomic_fetch_add(&srv->metrics.reloads, 1);
    inv_log(srv, "reloaded (%s): generation %u", why,
            tw_server_generation(srv->tls));
}

static void format_utc(time_t t, char *buf, size_t len)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * Say once per generation when a CRL is past its nextUpdate or our own
 * certificate has expired: clients are then refused (or refuse us) one by
 * one, and nothing else would tell the operator why before they complain.
 * Checked at start, after each reload and each time the main thread wakes.
 */
static void warn_dates(inv_server *srv)
{
    time_t now = time(NULL);
    time_t crl = tw_server_crl_next_update(srv->tls);
    time_t cert = tw_server_cert_not_after(srv->tls);
    unsigned gen = tw_server_generation(srv->tls);
    char when[32];

    if (crl != 0 && now >= crl && srv->warned_crl_gen != gen) {
        srv->warned_crl_gen = gen;
        format_utc(crl, when, sizeof(when));
        inv_log(srv, "warning: a CRL in %s is past its nextUpdate (%s): the "
                "clients of its CA are refused (crl_unusable) until a new CRL "
                "is in place (twoway-ca crl --ca DIR --out %s, then SIGHUP)",
                srv->opt.crl, when, srv->opt.crl);
    }
    if (cert != 0 && now >= cert && srv->warned_cert_gen != gen) {
        srv->warned_cert_gen = gen;
        format_utc(cert, when, sizeof(when));
        inv_log(srv, "warning: the server certificate %s expired on %s: "
                "clients refuse this server until it has a new one "
                "(twoway-ca issue ..., then SIGHUP)", srv->opt.cert, when);
    }
}

/* Wait for signals and file changes until SIGTERM/SIGINT; check the CRL
 * and certificate dates at least once a minute. */
static void supervise(inv_server *srv, int sigfd)
{
    long long seen = files_mtime(&srv->opt);

    for (;;) {
        struct pollfd p = {.fd = sigfd, .events = POLLIN};
        int timeout = srv->opt.reload_check_ms > 0 &&
                              srv->opt.reload_check_ms < 60000
                          ? srv->opt.reload_check_ms : 60000;
        int n = poll(&p, 1, timeout);

        if (n < 0 && errno != EINTR)
            return;
        if (n > 0) {
            struct signalfd_siginfo si;

            if (read(sigfd, &si, sizeof(si)) != sizeof(si))
                continue;
            if (si.ssi_signo == SIGHUP) {
                seen = files_mtime(&srv->opt);
                reload(srv, "SIGHUP");
            } else {
                inv_log(srv, "%s: draining connections, then exiting",
                        si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                return;
            }
        } else if (srv->opt.reload_check_ms > 0) {
            long long now = files_mtime(&srv->opt);

            if (now != seen) {
                seen = now;
                reload(srv, "files changed");
            }
        }
        warn_dates(srv);
    }
}

/* Returns 1 when every worker finished (their state may be freed). */
static int drain(inv_server *srv)
{
    struct timespec deadline;
    int all = 1;

    atomic_store(&srv->draining, 1);
    for (int i = 0; i < srv->nworkers; i++)
        inv_worker_wake(&srv->workers[i]);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += DRAIN_MAX_MS / 1000;
    for (int i = 0; i < srv->nworkers; i++)
        if (pthread_timedjoin_np(srv->workers[i].thread, NULL, &deadline) != 0) {
            inv_log(srv, "worker %d did not finish in %d s; exiting anyway", i,
                    DRAIN_MAX_MS / 1000);
            all = 0;
        }
    return all;
}

static void server_free(inv_server *srv, int sigfd)
{
    for (int i = 0; srv->workers != NULL && i < srv->nworkers; i++) {
        inv_worker *w = &srv->workers[i];

        if (w->listen_fd >= 0)
            close(w->listen_fd);
        if (w->wake_fd >= 0)
            close(w->wake_fd);
        tw_loop_free(w->loop);
        inv_head_pool_free(w);
        if (w->cache != NULL) {
            inv_cache_free(w->cache);
            free(w->cache);
        }
        store_close(w->store);
        store_queue_free(w->queue);
    }
    free(srv->workers);
    if (srv->access_log != NULL && srv->access_log != stdout)
        fclose(srv->access_log);
    if (sigfd >= 0)
        close(sigfd);
    tw_server_free(srv->tls);
    tw_config_free(srv->cfg);
    pthread_mutex_destroy(&srv->log_lock);
    free(srv);
}

int inv_server_run(const inv_options *o)
{
    inv_server *srv = calloc(1, sizeof(*srv));
    sigset_t mask;
    tw_err err;
    int sigfd, started = 0;
    char where[80];

    if (srv == NULL)
        return 1;
    srv->opt = *o;
    pthread_mutex_init(&srv->log_lock, NULL);
    srv->started = time(NULL);
    if (parse_listen(srv, o->listen) < 0) {
        fprintf(stderr, "invoice-server: --listen '%s' is not ADDR:PORT "
                "(e.g. 127.0.0.1:3100 or [::1]:3100)\n", o->listen);
        return 2;
    }
    if (port_in_use(srv)) {
        fprintf(stderr, "invoice-server: --listen %s: the address is in use "
                "(is another invoice-server running?)\n", o->listen);
        return 1;
    }
    raise_fd_limit(srv);
    if (store_init(o->db, &err) < 0) {
        fprintf(stderr, "invoice-server: --db: %s\n", err.msg);
        return 1;
    }
    if ((srv->cfg = build_config(o)) == NULL)
        return 1;
    if ((srv->tls = tw_server_new(srv->cfg, &err)) == NULL) {
        fprintf(stderr, "invoice-server: %s\n", err.msg);
        return 1;
    }
    if (o->access_log != NULL) {
        srv->access_log = strcmp(o->access_log, "-") == 0
                              ? stdout : fopen(o->access_log, "a");
        if (srv->access_log == NULL) {
            fprintf(stderr, "invoice-server: --access-log %s: %s\n",
                    o->access_log, strerror(errno));
            return 1;
        }
    }
    /* Workers inherit this mask: only the main thread takes signals. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    if ((sigfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
        fprintf(stderr, "invoice-server: signalfd: %s\n", strerror(errno));
        return 1;
    }
    /* Threads start only now, so every one of them has the mask. */
    if ((srv->writer = store_writer_start(o->db, &err)) == NULL) {
        fprintf(stderr, "invoice-server: --db: %s\n", err.msg);
        return 1;
    }
    srv->nworkers = o->workers;
    if ((srv->workers = calloc((size_t)o->workers, sizeof(inv_worker))) == NULL)
        return 1;
    for (int i = 0; i < o->workers; i++) {
        inv_worker *w = &srv->workers[i];

        w->srv = srv;
        w->index = i;
        w->listen_fd = w->wake_fd = -1;
        if (inv_worker_start(w) < 0)
            break;
        started++;
    }
    if (started < o->workers) {
        srv->nworkers = started;
        drain(srv);
        return 1;
    }
    addr_text(srv, where, sizeof(where));
    if (!tw_server_has_policy(srv->tls))
        inv_log(srv, "no policy given: any certificate the CA signed may "
                "read, write and see metrics (add --allow 'read O=...' or "
                "--policy FILE)");
    inv_log(srv, "listening on https://%s/ (%d workers, TLS 1.2-1.3, "
            "database %s)", where, srv->nworkers, o->db);
    warn_dates(srv);
    supervise(srv, sigfd);
    if (!drain(srv)) {
        /* A stuck worker still uses its state: leave without running exit
         * handlers under its feet. */
        inv_log(srv, "stopped (forced)");
        _exit(0);
    }
    store_writer_stop(srv->writer);
    inv_log(srv, "stopped");
    server_free(srv, sigfd);
    return 0;
}
