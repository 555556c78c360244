/*
 * server.c - the server's process: the listening address, workers,
 * signals, reloads and the drain at shutdown.  The main thread only waits
 * for signals and watches the configured files; workers do all the
 * serving.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include "httpd_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_MAX_MS 10000

/*
 * systemd's notification protocol (sd_notify(3)) for Type=notify units:
 * READY=1 once listening, RELOADING=1 and READY=1 around a reload,
 * STOPPING=1 at the drain, and a STATUS= line with the TLS generation and
 * the open connections.  sd_notify does nothing when NOTIFY_SOCKET is
 * unset, so outside such a unit all this costs a getenv.
 *
 * The service manager sees one state per process, so the state is the
 * process's: a reload (from any thread: a renewal, serve's own
 * certificate) is announced only between READY and STOPPING, never
 * before the server listens.
 */
enum { NOTIFY_STARTING, NOTIFY_READY, NOTIFY_STOPPING };
static atomic_int notify_state = NOTIFY_STARTING;

/* `lines` (each ending in \n) followed by the STATUS line. */
static void notify(httpd *srv, const char *lines)
{
    unsigned long long conns = atomic_load(&srv->metrics.open_connections);

    (void)sd_notifyf(0, "%sSTATUS=generation %u, %llu connection%s", lines,
                     tw_server_generation(srv->tls), conns,
                     conns == 1 ? "" : "s");
}

/* RELOADING=1 carries the CLOCK_MONOTONIC time it began (sd_notify(3)),
 * which Type=notify-reload managers require and others ignore. */
static int notify_reloading(void)
{
    struct timespec ts;

    if (atomic_load(&notify_state) != NOTIFY_READY)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    (void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
                     (unsigned long long)ts.tv_sec * 1000000ULL +
                         (unsigned long long)ts.tv_nsec / 1000ULL);
    return 1;
}

static int parse_listen(httpd *srv, const char *text)
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
static int port_in_use(const httpd *srv)
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
static void raise_fd_limit(httpd *srv)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)srv->opt.max_conns + 256;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
        fprintf(stderr, "%s: only %llu file descriptors allowed "
                "(ulimit -n): fewer than --max-connections %d needs\n",
                srv->opt.name, (unsigned long long)rl.rlim_cur,
                srv->opt.max_conns);
}

static void addr_text(const httpd *srv, char *buf, size_t len)
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

/* A signature of the files a reload re-reads: any change of a file's
 * inode, size or modification time (older too, as `cp -p` makes) changes
 * it. */
static long long files_mtime(const httpd_options *o)
{
    const char *const *files = o->watch;
    unsigned long long sig = 1469598103934665603ULL;

    for (size_t i = 0; i < HTTPD_MAX_WATCH; i++) {
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

void httpd_set_reconfigure(httpd *h, httpd_reconfigure_fn *fn)
{
    h->reconfigure = fn;
}

int httpd_reload(httpd *srv, const char *why)
{
    int announced = notify_reloading(), rc = -1;
    tw_config *was = srv->cfg, *next = NULL;
    tw_err err;

    /* A program's config file first: it may name other files. */
    if (srv->reconfigure != NULL &&
        (next = srv->reconfigure(srv->app, &err)) == NULL)
        goto failed;
    if (next != NULL)
        srv->cfg = next;
    /* The policy is read twice, here and by tw_server_reload: a file
     * changed in between is seen by the next reload (its change is).  A
     * role slipping through that way can only refuse, never grant. */
    if (httpd_check_roles(srv, &err) < 0 ||
        tw_server_reload(srv->tls, srv->cfg, &err) < 0) {
        if (next != NULL) {
            srv->cfg = was;
            tw_config_free(next);
        }
failed:
        atomic_fetch_add(&srv->metrics.reload_failures, 1);
        httpd_log(srv, "reload (%s) failed, keeping generation %u: %s", why,
                  tw_server_generation(srv->tls), err.msg);
        goto out;
    }
    if (next != NULL) {
        if (srv->cfg_owned)
            tw_config_free(was);
        srv->cfg_owned = 1;
    }
    atomic_fetch_add(&srv->metrics.reloads, 1);
    httpd_log(srv, "reloaded (%s): generation %u", why,
              tw_server_generation(srv->tls));
    rc = 0;
out:
    /* Ready again either way: a refused reload keeps serving the old
     * generation, which the status line shows.  Not once the drain began. */
    if (announced && atomic_load(&notify_state) == NOTIFY_READY)
        notify(srv, "READY=1\n");
    return rc;
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
static void warn_dates(httpd *srv)
{
    time_t now = time(NULL);
    time_t crl = tw_server_crl_next_update(srv->tls);
    time_t cert = tw_server_cert_not_after(srv->tls);
    unsigned gen = tw_server_generation(srv->tls);
    char when[32];

    if (crl != 0 && now >= crl && srv->warned_crl_gen != gen) {
        srv->warned_crl_gen = gen;
        format_utc(crl, when, sizeof(when));
        httpd_log(srv, "warning: a CRL in %s is past its nextUpdate (%s): the "
                "clients of its CA are refused (crl_unusable) until a new CRL "
                "is in place (twoway-ca crl --ca DIR --out %s, then SIGHUP)",
                srv->opt.crl_file, when, srv->opt.crl_file);
    }
    if (cert != 0 && now >= cert && srv->warned_cert_gen != gen) {
        srv->warned_cert_gen = gen;
        format_utc(cert, when, sizeof(when));
        httpd_log(srv, "warning: the server certificate %s expired on %s: "
                "clients refuse this server until it has a new one "
                "(twoway-ca issue ..., then SIGHUP)", srv->opt.cert_file, when);
    }
}

/* Wait for signals and file changes until SIGTERM/SIGINT; check the CRL
 * and certificate dates at least once a minute. */
static void supervise(httpd *srv)
{
    long long seen = files_mtime(&srv->opt), settling = seen;
    long long next_tick = httpd_loop_now_ms() + srv->tick_ms;
    unsigned long long shown_conns = 0;
    unsigned shown_gen = tw_server_generation(srv->tls);

    for (;;) {
        struct pollfd p = {.fd = srv->sigfd, .events = POLLIN};
        int timeout = srv->opt.reload_check_ms > 0 &&
                              srv->opt.reload_check_ms < 60000
                          ? srv->opt.reload_check_ms : 60000;
        long long now_ms = httpd_loop_now_ms();
        int n;

        if (srv->tick != NULL && next_tick - now_ms < timeout)
            timeout = next_tick > now_ms ? (int)(next_tick - now_ms) : 0;
        if (settling != seen && timeout > 200)
            timeout = 200; /* a change seen: look again soon */
        n = poll(&p, 1, timeout);

        if (n < 0 && errno != EINTR)
            return;
        if (n > 0) {
            struct signalfd_siginfo si;

            if (read(srv->sigfd, &si, sizeof(si)) != sizeof(si))
                continue;
            if (si.ssi_signo == SIGHUP) {
                seen = settling = files_mtime(&srv->opt);
                (void)httpd_reload(srv, "SIGHUP");
            } else {
                httpd_log(srv, "%s: draining connections, then exiting",
                        si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                atomic_store(&notify_state, NOTIFY_STOPPING);
                notify(srv, "STOPPING=1\n");
                return;
            }
        } else if (srv->opt.reload_check_ms > 0) {
            long long now = files_mtime(&srv->opt);

            /* Reloaded once two looks in a row agree: files replaced one
             * after the other (a renewal's key, then its certificate) are
             * taken together, not half-way. */
            if (now != seen && now == settling) {
                seen = now;
                (void)httpd_reload(srv, "files changed");
            }
            settling = now;
        }
        if (srv->tick != NULL && httpd_loop_now_ms() >= next_tick) {
            srv->tick(srv->app);
            next_tick = httpd_loop_now_ms() + srv->tick_ms;
        }
        warn_dates(srv);
        /* The status line follows the connections and generation (a
         * renewal's reload too) at the pace the main thread wakes. */
        if (atomic_load(&srv->metrics.open_connections) != shown_conns ||
            tw_server_generation(srv->tls) != shown_gen) {
            shown_conns = atomic_load(&srv->metrics.open_connections);
            shown_gen = tw_server_generation(srv->tls);
            notify(srv, "");
        }
    }
}

/* Returns 1 when every worker finished (their state may be freed). */
static int drain(httpd *srv)
{
    struct timespec deadline;
    int all = 1;

    atomic_store(&srv->draining, 1);
    for (int i = 0; i < srv->nworkers; i++)
        httpd__worker_wake(&srv->workers[i]);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += DRAIN_MAX_MS / 1000;
    for (int i = 0; i < srv->nworkers; i++) {
        httpd_worker *w = &srv->workers[i];

        if (!w->running)
            continue;
        if (pthread_timedjoin_np(w->thread, NULL, &deadline) != 0) {
            httpd_log(srv, "worker %d did not finish in %d s; exiting anyway",
                      i, DRAIN_MAX_MS / 1000);
            all = 0;
            continue;
        }
        w->running = 0;
    }
    return all;
}

void httpd_options_defaults(httpd_options *o)
{
    memset(o, 0, sizeof(*o));
    o->name = "httpd";
    o->workers = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (o->workers < 1)
        o->workers = 1;
    o->max_head = 8192;
    o->max_headers = 64;
    o->max_body = 1024 * 1024;
    o->header_timeout_ms = 10000;
    o->idle_timeout_ms = 60000;
    o->handshake_timeout_ms = 10000;
    o->max_conns = 10000;
    o->reload_check_ms = 2000;
}

httpd *httpd_new(const httpd_options *o, tw_config *cfg, void *app,
                 tw_err *err)
{
    httpd *h = twu_calloc(1, sizeof(*h));
    sigset_t mask;

    if (h == NULL) {
        tw_err_clear(err);
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        err->cls = TW_ERR_INTERNAL;
        return NULL;
    }
    h->opt = *o;
    h->app = app;
    h->cfg = cfg;
    h->sigfd = -1;
    pthread_mutex_init(&h->log_lock, NULL);
    tw_err_clear(err);
    if (parse_listen(h, o->listen) < 0) {
        err->cls = TW_ERR_USAGE;
        snprintf(err->msg, sizeof(err->msg), "--listen '%s' is not ADDR:PORT "
                 "(e.g. 127.0.0.1:3100 or [::1]:3100)", o->listen);
        goto err;
    }
    if (port_in_use(h)) {
        err->cls = TW_ERR_IO;
        snprintf(err->msg, sizeof(err->msg), "--listen %s: the address is in "
                 "use (is another %s running?)", o->listen, o->name);
        goto err;
    }
    raise_fd_limit(h);
    if ((h->tls = tw_server_new(cfg, err)) == NULL)
        goto err;
    if (o->access_log != NULL) {
        h->access_log = strcmp(o->access_log, "-") == 0
                            ? stdout : fopen(o->access_log, "a");
        if (h->access_log == NULL) {
            err->cls = TW_ERR_IO;
            snprintf(err->msg, sizeof(err->msg), "--access-log %s: %s",
                     o->access_log, strerror(errno));
            goto err;
        }
    }
    /* Threads started from now on (workers, the program's own) inherit
     * this mask: only the main thread takes these signals. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    if ((h->sigfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
        err->cls = TW_ERR_INTERNAL;
        snprintf(err->msg, sizeof(err->msg), "signalfd: %s", strerror(errno));
        goto err;
    }
    return h;
err:
    httpd_free(h);
    return NULL;
}

void httpd_set_worker_hooks(httpd *h, httpd_worker_start_fn *start,
                            httpd_worker_stop_fn *stop)
{
    h->worker_start = start;
    h->worker_stop = stop;
}

void httpd_set_metrics(httpd *h, httpd_metrics_fn *fn)
{
    h->app_metrics = fn;
}

void httpd_set_tick(httpd *h, httpd_tick_fn *fn, int every_ms)
{
    h->tick = fn;
    h->tick_ms = every_ms > 0 ? every_ms : 1000;
}

void httpd_set_banner(httpd *h, const char *extra, const char *no_policy)
{
    h->banner = extra;
    h->no_policy = no_policy;
}

int httpd_run(httpd *h)
{
    char where[80];
    int started = 0;
    tw_err err;

    /* Only now are the routes, and so the roles they need, all known. */
    if (httpd_check_roles(h, &err) < 0) {
        fprintf(stderr, "%s: %s\n", h->opt.name, err.msg);
        return err.cls == TW_ERR_USAGE ? 2 : 1;
    }
    h->nworkers = h->opt.workers;
    if ((h->workers = twu_calloc((size_t)h->nworkers, sizeof(*h->workers))) ==
        NULL) {
        httpd_log(h, "out of memory");
        return 1;
    }
    for (int i = 0; i < h->nworkers; i++) {
        httpd_worker *w = &h->workers[i];

        w->srv = h;
        w->index = i;
        w->listen_fd = w->wake_fd = -1;
    }
    for (int i = 0; i < h->nworkers; i++) {
        if (httpd__worker_start(&h->workers[i]) < 0)
            break;
        started++;
    }
    if (started < h->nworkers) {
        drain(h);
        return 1;
    }
    addr_text(h, where, sizeof(where));
    /* A warning: with no policy, every client the CA signed gets every
     * role, which is rarely what an operator means in production. */
    if (!tw_server_has_policy(h->tls) && h->no_policy != NULL)
        httpd_log(h, "warning: %s", h->no_policy);
    httpd_log(h, "listening on https://%s/ (%d workers, TLS 1.2-1.3%s%s)",
              where, h->nworkers, h->banner ? ", " : "",
              h->banner ? h->banner : "");
    warn_dates(h);
    atomic_store(&notify_state, NOTIFY_READY);
    notify(h, "READY=1\n");
    supervise(h);
    if (!drain(h)) {
        /* A stuck worker still uses its state: leave without running exit
         * handlers under its feet. */
        httpd_log(h, "stopped (forced)");
        _exit(0);
    }
    return 0;
}

void httpd_free(httpd *h)
{
    if (h == NULL)
        return;
    for (int i = 0; h->workers != NULL && i < h->nworkers; i++)
        httpd__worker_free(&h->workers[i]);
    twu_free(h->workers);
    if (h->access_log != NULL && h->access_log != stdout)
        fclose(h->access_log);
    if (h->sigfd >= 0)
        close(h->sigfd);
    tw_server_free(h->tls);
    if (h->cfg_owned)
        tw_config_free(h->cfg);
    pthread_mutex_destroy(&h->log_lock);
    twu_free(h);
}
