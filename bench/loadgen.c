/*
 * loadgen.c - a load generator for mutual-TLS HTTPS servers.
 *
 * Common load tools (wrk, h2load, httperf) cannot present a client
 * certificate; this one does, and reads the server's CPU time over exactly
 * the measured window from /proc, so that servers are compared by what each
 * operation costs them (a server may be several process trees: invoice-server
 * and the PostgreSQL that stores its invoices).  Requests are GETs, or POSTs
 * of a body numbered request by request.  One line of JSON on stdout says
 * what it measured.  See --help, and docs/benchmarks.md for how
 * bench/compare uses it.
 */
#include "loadgen.h"

#include <openssl/err.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define NS_PER_S 1000000000.0

typedef struct options {
    lg_mode mode;
    const char *host, *port, *cert, *key, *ca, *path, *servername, *groups;
    const char *body;  /* --body: POST it; NULL: GET */
    int tls13, status;
    size_t concurrency, connections;
    double duration, warmup, timeout;
    long expect_length;
    pid_t server_pids[LG_SERVER_PIDS_MAX];
    size_t nserver_pids;
} options;

/* What one run measured, for the report. */
typedef struct result {
    double seconds;
    uint64_t cpu_us;   /* server CPU time over the window, all trees */
    uint64_t cpu_each[LG_SERVER_PIDS_MAX]; /* the same, per --server-pid */
    int have_cpu;
    double rss_per_conn;
    int have_rss;
} result;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f)
{
    fputs(
"usage: loadgen --mode full|resume|keepalive|idle|sessions --port PORT\n"
"               --cert FILE --key FILE --ca FILE [options]\n"
"\n"
"Loads an HTTPS server that asks for a client certificate (mutual TLS) and\n"
"prints one line of JSON: mode, tls, requests, errors, seconds, rps,\n"
"p50_us, p99_us, server_cpu_us_per_op (and server_cpu_us_per_op_each, per\n"
"--server-pid), resumed_share, rss_per_conn_bytes.\n"
"\n"
"modes:\n"
"  full       a new TLS connection (full handshake) per request\n"
"  resume     a new connection per request, resuming the newest session\n"
"             each connection slot was given; resumed_share says how many\n"
"             handshakes were actually resumed\n"
"  keepalive  persistent connections, one request after another\n"
"  idle       open --connections connections, one request each, hold them\n"
"             for --duration; rss_per_conn_bytes is the growth of the\n"
"             server's RSS divided by the connections held\n"
"  sessions   --connections full handshakes (one request each, then\n"
"             closed, no resumption offered); rss_per_conn_bytes is the\n"
"             growth of the server's RSS divided by the handshakes: what\n"
"             a server keeps per session it can resume\n"
"\n"
"  --host ADDR          server address (default 127.0.0.1)\n"
"  --port PORT          server port\n"
"  --servername NAME    SNI and the name the server certificate must carry\n"
"                       (default localhost)\n"
"  --cert FILE          client certificate (PEM)\n"
"  --key FILE           its private key\n"
"  --ca FILE            the CA that signed the server certificate\n"
"  --path PATH          request path (default /invoices/00095234; with\n"
"                       --body, /invoices)\n"
"  --body JSON          send POST with this body (application/json) instead\n"
"                       of GET; each {n} in it becomes the request's number\n"
"                       in this run, 12 digits, e.g. to make every invoice\n"
"                       number new: '{\"invoice_number\":\"r1-{n}\", ...}'\n"
"  --status N           the status every response must have (default 200;\n"
"                       with --body, 201)\n"
"  --tls 1.2|1.3        protocol version (default 1.3)\n"
"  --groups LIST        key exchange groups, e.g. P-256 (default OpenSSL's)\n"
"  --concurrency N      connections in flight at once (default 16)\n"
"  --duration S         measured seconds (default 5); idle: hold time\n"
"  --warmup S           unmeasured seconds first (default 1)\n"
"  --timeout S          an operation with no progress for S seconds is an\n"
"                       error (default 10)\n"
"  --server-pid PID[,PID...]\n"
"                       the server: the utime+stime of each PID's process\n"
"                       tree over the measured window, added up, gives\n"
"                       server_cpu_us_per_op (and RSS is added up the same\n"
"                       way); give more than one, up to 8, comma-separated\n"
"                       or repeating the option, when the server is several\n"
"                       trees, e.g. invoice-server and PostgreSQL's postmaster\n"
"  --connections N      idle: connections to hold; sessions: handshakes\n"
"                       (default 1000)\n"
"  --expect-length N    the response body's length (default: the first\n"
"                       response's Content-Length; any other is an error)\n"
"  --help               show this help\n"
"\n"
"Every response must have the expected status and Content-Length; anything\n"
"else, and any connect, TLS or timeout failure, counts in errors.  Latency\n"
"is from connect to the response's last byte in full, resume and idle\n"
"modes, from the request's first byte in keepalive mode.\n", f);
}

static int parse_number(const char *opt, const char *text, double min,
                        double max, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "loadgen: %s must be a number from %g to %g, not '%s'\n",
                opt, min, max, text);
        return -1;
    }
    *out = v;
    return 0;
}

/* How many times {n} is in the --body text. */
static size_t count_marks(const char *body)
{
    size_t marks = 0;

    for (const char *m = strstr(body, LG_SEQ_MARK); m != NULL;
         m = strstr(m + sizeof(LG_SEQ_MARK) - 1, LG_SEQ_MARK))
        marks++;
    return marks;
}

/* --server-pid PID[,PID...], given once or more. */
static int parse_server_pids(const char *text, options *o)
{
    const char *p = text;

    for (;;) {
        char *end;
        long pid;

        errno = 0;
        pid = strtol(p, &end, 10);
        if (errno != 0 || end == p || pid < 1 || pid > INT_MAX ||
            (*end != ',' && *end != '\0')) {
            fprintf(stderr, "loadgen: --server-pid takes process ids, "
                            "comma-separated (e.g. 1234 or 1234,5678), not "
                            "'%s'\n", text);
            return -1;
        }
        for (size_t i = 0; i < o->nserver_pids; i++) {
            if (o->server_pids[i] == (pid_t)pid) {
                fprintf(stderr, "loadgen: --server-pid %ld is given twice "
                                "(its CPU time would count twice)\n", pid);
                return -1;
            }
        }
        if (o->nserver_pids == LG_SERVER_PIDS_MAX) {
            fprintf(stderr, "loadgen: --server-pid takes at most %d "
                            "processes\n", LG_SERVER_PIDS_MAX);
            return -1;
        }
        o->server_pids[o->nserver_pids++] = (pid_t)pid;
        if (*end == '\0')
            return 0;
        p = end + 1;
    }
}

static int parse_options(int argc, char **argv, options *o)
{
    static const struct option longopts[] = {
        {"mode", required_argument, NULL, 'm'},
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"servername", required_argument, NULL, 'n'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"ca", required_argument, NULL, 'a'},
        {"path", required_argument, NULL, 'P'},
        {"body", required_argument, NULL, 'b'},
        {"status", required_argument, NULL, 'S'},
        {"tls", required_argument, NULL, 't'},
        {"groups", required_argument, NULL, 'g'},
        {"concurrency", required_argument, NULL, 'C'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 'T'},
        {"server-pid", required_argument, NULL, 's'},
        {"connections", required_argument, NULL, 'N'},
        {"expect-length", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch, have_mode = 0;
    double v;

    *o = (options){.host = "127.0.0.1", .servername = "localhost",
                   .tls13 = 1, .concurrency = 16, .connections = 1000,
                   .duration = 5, .warmup = 1, .timeout = 10,
                   .expect_length = -1};
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            have_mode = 1;
            if (strcmp(optarg, "full") == 0)
                o->mode = LG_FULL;
            else if (strcmp(optarg, "resume") == 0)
                o->mode = LG_RESUME;
            else if (strcmp(optarg, "keepalive") == 0)
                o->mode = LG_KEEPALIVE;
            else if (strcmp(optarg, "idle") == 0)
                o->mode = LG_IDLE;
            else if (strcmp(optarg, "sessions") == 0)
                o->mode = LG_SESSIONS;
            else {
                fprintf(stderr, "loadgen: --mode is full, resume, keepalive, "
                                "idle or sessions, not '%s'\n", optarg);
                return -1;
            }
            break;
        case 'H': o->host = optarg; break;
        case 'p': o->port = optarg; break;
        case 'n': o->servername = optarg; break;
        case 'c': o->cert = optarg; break;
        case 'k': o->key = optarg; break;
        case 'a': o->ca = optarg; break;
        case 'P': o->path = optarg; break;
        case 'b': o->body = optarg; break;
        case 'S':
            if (parse_number("--status", optarg, 100, 599, &v) < 0)
                return -1;
            o->status = (int)v;
            break;
        case 'g': o->groups = optarg; break;
        case 't':
            if (strcmp(optarg, "1.2") != 0 && strcmp(optarg, "1.3") != 0) {
                fprintf(stderr, "loadgen: --tls is 1.2 or 1.3, not '%s'\n", optarg);
                return -1;
            }
            o->tls13 = strcmp(optarg, "1.3") == 0;
            break;
        case 'C':
            if (parse_number("--concurrency", optarg, 1, 100000, &v) < 0)
                return -1;
            o->concurrency = (size_t)v;
            break;
        case 'N':
            if (parse_number("--connections", optarg, 1, 1000000, &v) < 0)
                return -1;
            o->connections = (size_t)v;
            break;
        case 'd':
            if (parse_number("--duration", optarg, 0.01, 86400, &o->duration) < 0)
                return -1;
            break;
        case 'w':
            if (parse_number("--warmup", optarg, 0, 86400, &o->warmup) < 0)
                return -1;
            break;
        case 'T':
            if (parse_number("--timeout", optarg, 0.1, 3600, &o->timeout) < 0)
                return -1;
            break;
        case 's':
            if (parse_server_pids(optarg, o) < 0)
                return -1;
            break;
        case 'L':
            if (parse_number("--expect-length", optarg, 0, 1e9, &v) < 0)
                return -1;
            o->expect_length = (long)v;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "loadgen: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!have_mode || !o->port || !o->cert || !o->key || !o->ca) {
        fprintf(stderr, "loadgen: --mode, --port, --cert, --key and --ca are "
                        "required (see --help)\n");
        return -1;
    }
    if (o->body != NULL && strlen(o->body) > LG_BODY_MAX) {
        fprintf(stderr, "loadgen: --body is %zu bytes, more than %d\n",
                strlen(o->body), LG_BODY_MAX);
        return -1;
    }
    if (o->body != NULL && count_marks(o->body) > LG_SEQ_MAX) {
        fprintf(stderr, "loadgen: --body holds %s %zu times, more than %d\n",
                LG_SEQ_MARK, count_marks(o->body), LG_SEQ_MAX);
        return -1;
    }
    if (o->path == NULL)
        o->path = o->body != NULL ? "/invoices" : "/invoices/00095234";
    if (o->status == 0)
        o->status = o->body != NULL ? 201 : 200;
    return 0;
}

/* Enough descriptors for every slot, raising the hard limit if we may. */
static int raise_fd_limit(size_t slots)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)slots + 64;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    if (rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max < need)
        rl.rlim_max = need; /* works as root (up to fs.nr_open) */
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        fprintf(stderr, "loadgen: %zu connections need %lu descriptors and the "
                        "limit cannot be raised: %s (try ulimit -n)\n",
                slots, (unsigned long)need, strerror(errno));
        return -1;
    }
    return 0;
}

static int resolve(const options *o, lg_run *run)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai;
    int rc = getaddrinfo(o->host, o->port, &hints, &ai);

    if (rc != 0) {
        fprintf(stderr, "loadgen: cannot resolve %s port %s: %s\n", o->host,
                o->port, gai_strerror(rc));
        return -1;
    }
    memcpy(&run->addr, ai->ai_addr, ai->ai_addrlen);
    run->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/*
 * The request every connection sends: GET --path, or POST of --body, whose
 * each {n} is left as LG_SEQ_DIGITS zeros for lg_conn.c to number request
 * by request (their places go to run->seq_at).
 */
static int build_request(const options *o, lg_run *run)
{
    static const char head[] = "%s %s HTTP/1.1\r\nHost: %s\r\n"
                               "User-Agent: twoway-loadgen\r\n%s\r\n";
    const size_t mark_len = sizeof(LG_SEQ_MARK) - 1;
    const char *b = o->body != NULL ? o->body : "";
    size_t body_len = strlen(b), cap, at;
    char fields[64] = "";
    int n;

    body_len += count_marks(b) * (LG_SEQ_DIGITS - mark_len);
    if (o->body != NULL)
        snprintf(fields, sizeof(fields), "Content-Type: application/json\r\n"
                                         "Content-Length: %zu\r\n", body_len);
    cap = sizeof(head) + strlen(o->path) + strlen(o->servername) +
          strlen(fields) + body_len + 8;
    if ((run->request = malloc(cap)) == NULL) {
        perror("loadgen: cannot build the request");
        return -1;
    }
    n = snprintf(run->request, cap, head, o->body != NULL ? "POST" : "GET",
                 o->path, o->servername, fields);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    at = (size_t)n;
    /* The body, each {n} as zeros for now. */
    while (*b != '\0') {
        if (strncmp(b, LG_SEQ_MARK, mark_len) == 0) {
            run->seq_at[run->nseq++] = at;
            memset(run->request + at, '0', LG_SEQ_DIGITS);
            at += LG_SEQ_DIGITS;
            b += mark_len;
        } else {
            run->request[at++] = *b++;
        }
    }
    run->request_len = at;
    run->expect_status = o->status;
    snprintf(run->status_why, sizeof(run->status_why),
             "the status is not %d", o->status);
    return 0;
}

static void print_ossl_error(const char *what, const char *file)
{
    char buf[256] = "";

    ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
    fprintf(stderr, "loadgen: %s %s: %s\n", what, file, buf);
}

static SSL_CTX *make_ctx(const options *o)
{
    int version = o->tls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        print_ossl_error("cannot make a TLS context", "");
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, version) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, version) != 1) {
        print_ossl_error("cannot set the TLS version", "");
        goto err;
    }
    if (SSL_CTX_load_verify_file(ctx, o->ca) != 1) {
        print_ossl_error("cannot load the CA file", o->ca);
        goto err;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
        print_ossl_error("cannot load the client certificate", o->cert);
        goto err;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        print_ossl_error("cannot load the key (or it does not match)", o->key);
        goto err;
    }
    if (o->groups != NULL && SSL_CTX_set1_groups_list(ctx, o->groups) != 1) {
        print_ossl_error("unknown groups", o->groups);
        goto err;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ctx;
err:
    SSL_CTX_free(ctx);
    return NULL;
}

static uint64_t errors_total(const lg_run *run)
{
    uint64_t n = 0;

    for (int i = 0; i < LG_ERR_KINDS; i++)
        n += run->errors[i];
    return n;
}

/* Drive the loop until `until_ns`, or until done() says so. */
static int loop_until(lg_run *run, uint64_t until_ns, int (*done)(const lg_run *))
{
    for (;;) {
        uint64_t now = lg_now_ns();
        int wait_ms;

        if (interrupted || now >= until_ns || (done != NULL && done(run)))
            return 0;
        wait_ms = (int)((until_ns - now + 999999) / 1000000);
        if (wait_ms > 50)
            wait_ms = 50;
        lg_run_fill(run);
        if (lg_run_poll(run, wait_ms) < 0)
            return -1;
    }
}

/* The CPU time of each --server-pid tree: 1 when read, 0 when no
 * --server-pid was given, -1 (said on stderr) when a server is gone. */
static int read_cpu(const options *o, uint64_t *each)
{
    size_t gone = 0;

    if (o->nserver_pids == 0)
        return 0;
    if (lg_proc_cpu_us(o->server_pids, o->nserver_pids, each, &gone) < 0) {
        fprintf(stderr, "loadgen: cannot read the CPU time of server pid %d "
                        "(--server-pid): has it exited?\n",
                (int)o->server_pids[gone]);
        return -1;
    }
    return 1;
}

/* The same for the RSS of all the trees together. */
static int read_rss(const options *o, uint64_t *bytes)
{
    size_t gone = 0;

    if (o->nserver_pids == 0)
        return 0;
    if (lg_proc_rss_bytes(o->server_pids, o->nserver_pids, bytes, &gone) < 0) {
        fprintf(stderr, "loadgen: cannot read the RSS of server pid %d "
                        "(--server-pid): has it exited?\n",
                (int)o->server_pids[gone]);
        return -1;
    }
    return 1;
}

/* The window's end (it began at t0, with the CPU times cpu0): measuring
 * stops, the CPU time is read again, per tree and in all, and the seconds. */
static int close_window(const options *o, lg_run *run, uint64_t t0,
                        const uint64_t *cpu0, result *res)
{
    uint64_t cpu1[LG_SERVER_PIDS_MAX] = {0};

    run->measuring = 0;
    res->seconds = (double)(lg_now_ns() - t0) / NS_PER_S;
    if ((res->have_cpu = read_cpu(o, cpu1)) < 0)
        return -1;
    res->cpu_us = 0;
    for (size_t i = 0; i < o->nserver_pids; i++) {
        res->cpu_each[i] = cpu1[i] - cpu0[i];
        res->cpu_us += res->cpu_each[i];
    }
    return 0;
}

/* full, resume, keepalive: warm up, then measure for --duration. */
static int measure_load(const options *o, lg_run *run, result *res)
{
    uint64_t start = lg_now_ns(), t0, cpu0[LG_SERVER_PIDS_MAX] = {0};

    run->opening = 1;
    if (loop_until(run, start + (uint64_t)(o->warmup * NS_PER_S), NULL) < 0)
        return -1;
    if (read_cpu(o, cpu0) < 0)
        return -1;
    t0 = lg_now_ns();
    run->measuring = 1;
    if (loop_until(run, t0 + (uint64_t)(o->duration * NS_PER_S), NULL) < 0)
        return -1;
    run->opening = 0;
    return close_window(o, run, t0, cpu0, res);
}

static int all_held(const lg_run *run)
{
    /* Also give up when failures outnumber the connections asked for. */
    return run->held >= run->idle_target ||
           errors_total(run) >= run->idle_target;
}

static int nothing_in_flight(const lg_run *run)
{
    return run->inflight == 0;
}

/* The measured window of idle and sessions: the server's RSS (*rss0) and
 * CPU at its start, connections opened until `done`, then none in flight
 * (at most `timeout_ns`); the CPU and seconds go into res. */
static int open_window(const options *o, lg_run *run,
                       int (*done)(const lg_run *), uint64_t timeout_ns,
                       uint64_t *rss0, result *res)
{
    uint64_t t0, cpu0[LG_SERVER_PIDS_MAX] = {0};

    if (read_rss(o, rss0) < 0 || read_cpu(o, cpu0) < 0)
        return -1;
    t0 = lg_now_ns();
    run->measuring = 1;
    run->opening = 1;
    if (loop_until(run, UINT64_MAX, done) < 0)
        return -1;
    run->opening = 0;
    if (loop_until(run, lg_now_ns() + timeout_ns, nothing_in_flight) < 0)
        return -1;
    return close_window(o, run, t0, cpu0, res);
}

/* idle: warm the server up with full handshakes, then open and hold. */
static int measure_idle(const options *o, lg_run *run, result *res)
{
    uint64_t rss0 = 0, rss1 = 0;
    uint64_t timeout;
    size_t held;

    run->idle_target = o->connections;
    timeout = (uint64_t)(o->timeout * NS_PER_S);
    if (o->warmup > 0) {
        run->mode = LG_FULL;
        run->opening = 1;
        if (loop_until(run, lg_now_ns() + (uint64_t)(o->warmup * NS_PER_S),
                       NULL) < 0)
            return -1;
        run->opening = 0;
        if (loop_until(run, lg_now_ns() + timeout, nothing_in_flight) < 0)
            return -1;
        lg_run_close_all(run);
        run->mode = LG_IDLE;
        /* Let the server see the closes before the baseline. */
        if (loop_until(run, lg_now_ns() + 200000000u, NULL) < 0)
            return -1;
    }
    if (open_window(o, run, all_held, timeout, &rss0, res) < 0)
        return -1;
    /* Hold: any connection the server drops now is an error. */
    if (loop_until(run, lg_now_ns() + (uint64_t)(o->duration * NS_PER_S), NULL) < 0)
        return -1;
    held = run->held - run->errors[LG_ERR_DROPPED];
    if (held > 0 && read_rss(o, &rss1) == 1) {
        res->have_rss = 1;
        res->rss_per_conn = ((double)rss1 - (double)rss0) / (double)held;
    }
    return 0;
}

static int all_made(const lg_run *run)
{
    return run->counts.requests >= run->idle_target ||
           errors_total(run) >= run->idle_target;
}

/* sessions: warm up as idle does, then --connections full handshakes, each
 * closed after its request; the server keeps a resumable session of each
 * (or, with stateless tickets, none), and RSS growth over them is that. */
static int measure_sessions(const options *o, lg_run *run, result *res)
{
    uint64_t rss0 = 0, rss1 = 0;
    uint64_t timeout;

    run->idle_target = o->connections;
    timeout = (uint64_t)(o->timeout * NS_PER_S);
    run->opening = 1;
    if (loop_until(run, lg_now_ns() + (uint64_t)(o->warmup * NS_PER_S), NULL) < 0)
        return -1;
    run->opening = 0;
    if (loop_until(run, lg_now_ns() + timeout, nothing_in_flight) < 0 ||
        loop_until(run, lg_now_ns() + 200000000u, NULL) < 0)
        return -1;
    if (open_window(o, run, all_made, timeout, &rss0, res) < 0)
        return -1;
    /* Let the server see the closes and free the connections, then wait
     * --duration before reading what stayed. */
    if (loop_until(run, lg_now_ns() + (uint64_t)(o->duration * NS_PER_S), NULL) < 0)
        return -1;
    if (run->counts.requests > 0 && read_rss(o, &rss1) == 1) {
        res->have_rss = 1;
        res->rss_per_conn = ((double)rss1 - (double)rss0) /
                            (double)run->counts.requests;
    }
    return 0;
}

static void print_number(const char *key, double v, int have, int decimals)
{
    printf(",\"%s\":", key);
    if (have)
        printf("%.*f", decimals, v);
    else
        fputs("null", stdout);
}

static void report(const options *o, const lg_run *run, const result *res)
{
    static const char *const modes[] = {"full", "resume", "keepalive", "idle",
                                        "sessions"};
    static const char *const kinds[LG_ERR_KINDS] = {"connect", "tls", "http",
                                                    "closed", "timeout",
                                                    "dropped"};
    const lg_counts *c = &run->counts;
    double secs = res->seconds > 0 ? res->seconds : 1e-9;

    printf("{\"mode\":\"%s\",\"tls\":\"%s\",\"requests\":%llu,\"errors\":%llu",
           modes[o->mode], o->tls13 ? "1.3" : "1.2",
           (unsigned long long)c->requests,
           (unsigned long long)errors_total(run));
    printf(",\"seconds\":%.3f,\"rps\":%.1f,\"p50_us\":%llu,\"p99_us\":%llu",
           res->seconds, (double)c->requests / secs,
           (unsigned long long)lg_hist_quantile(&run->hist, 0.50),
           (unsigned long long)lg_hist_quantile(&run->hist, 0.99));
    print_number("server_cpu_us_per_op",
                 c->requests ? (double)res->cpu_us / (double)c->requests : 0,
                 res->have_cpu > 0 && c->requests > 0, 1);
    fputs(",\"server_cpu_us_per_op_each\":", stdout);
    if (res->have_cpu > 0 && c->requests > 0) {
        for (size_t i = 0; i < o->nserver_pids; i++)
            printf("%s%.1f", i ? "," : "[",
                   (double)res->cpu_each[i] / (double)c->requests);
        putchar(']');
    } else {
        fputs("null", stdout);
    }
    print_number("resumed_share",
                 c->handshakes ? (double)c->resumed / (double)c->handshakes : 0,
                 c->handshakes > 0, 4);
    print_number("rss_per_conn_bytes", res->rss_per_conn, res->have_rss, 0);
    print_number("server_cpu_share", (double)res->cpu_us / 1e6 / secs,
                 res->have_cpu > 0, 3);
    printf(",\"handshakes\":%llu,\"connects\":%llu,\"held\":%llu",
           (unsigned long long)c->handshakes, (unsigned long long)c->connects,
           (unsigned long long)(o->mode == LG_IDLE ? run->held : 0));
    printf(",\"cipher\":\"%s\",\"group\":\"%s\",\"error_kinds\":{", run->cipher,
           run->group);
    for (int i = 0; i < LG_ERR_KINDS; i++)
        printf("%s\"%s\":%llu", i ? "," : "", kinds[i],
               (unsigned long long)run->errors[i]);
    puts("}}");
}

int main(int argc, char **argv)
{
    options o;
    lg_run run = {.epfd = -1};
    result res = {0};
    size_t nslots;
    int rc = 1;

    if (parse_options(argc, argv, &o) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    nslots = o.mode == LG_IDLE ? o.connections : o.concurrency;
    run.mode = o.mode;
    run.servername = o.servername;
    run.timeout_ns = (uint64_t)(o.timeout * NS_PER_S);
    run.expect_length = o.expect_length;
    run.max_inflight = o.concurrency;
    if (raise_fd_limit(nslots) < 0 || resolve(&o, &run) < 0 ||
        (run.ctx = make_ctx(&o)) == NULL)
        goto done;
    if (o.mode == LG_RESUME)
        lg_run_enable_resumption(&run);
    if (build_request(&o, &run) < 0 || lg_run_init(&run, nslots) < 0)
        goto done;
    if ((o.mode == LG_IDLE       ? measure_idle(&o, &run, &res)
         : o.mode == LG_SESSIONS ? measure_sessions(&o, &run, &res)
                                 : measure_load(&o, &run, &res)) < 0)
        goto done;
    report(&o, &run, &res);
    rc = interrupted ? 130 : 0;
done:
    lg_run_free(&run);
    free(run.request);
    SSL_CTX_free(run.ctx);
    return rc;
}
