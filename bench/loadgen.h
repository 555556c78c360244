/*
 * loadgen.h - the benchmark's load generator, shared between its files.
 *
 * loadgen is a client of its own, on OpenSSL directly (not libtwoway), so
 * that it measures twoway, nginx and Node.js the same way: one thread, one
 * epoll loop, a fixed number of connection slots.
 *
 *   loadgen.c  options, the run's phases, the JSON report
 *   lg_conn.c  one connection slot: connect, handshake, request, response
 *   lg_hist.c  latency histogram (log-linear buckets, under 1% error)
 *   lg_proc.c  the server's CPU time and RSS, from /proc
 */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <openssl/ssl.h>

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ---- latency histogram (lg_hist.c) -------------------------------------- */

#define LG_HIST_BUCKETS 2560 /* values up to 2^38 us, more than enough */

typedef struct lg_hist {
    uint64_t count[LG_HIST_BUCKETS];
    uint64_t total;
} lg_hist;

void lg_hist_add(lg_hist *h, uint64_t us);
/* The value at quantile q (0..1), in microseconds; 0 when empty. */
uint64_t lg_hist_quantile(const lg_hist *h, double q);

/* ---- the server's resources (lg_proc.c) --------------------------------- */

/* Processes whose trees make up "the server" (--server-pid): invoice-server
 * and, with PostgreSQL, the postmaster whose backends do its queries. */
#define LG_SERVER_PIDS_MAX 8

/*
 * The trees of roots[0..n-1] (each root and all its descendants) are read
 * from one pass over /proc; a process in two trees counts once, in the
 * first root's (a root that descends from another is its own tree).
 * Both return 0, or -1 with *gone set to the index of a root that no
 * longer exists.
 */
/* utime + stime of each tree, in microseconds: each[i] is roots[i]'s. */
int lg_proc_cpu_us(const pid_t *roots, size_t n, uint64_t *each, size_t *gone);
/* Resident set size of all the trees together, in bytes. */
int lg_proc_rss_bytes(const pid_t *roots, size_t n, uint64_t *bytes,
                      size_t *gone);

/* ---- the run and its connections (lg_conn.c) ---------------------------- */

typedef enum lg_mode {
    LG_FULL,
    LG_RESUME,
    LG_KEEPALIVE,
    LG_IDLE,
    LG_SESSIONS /* full handshakes, counted, for the server's session cache */
} lg_mode;

/* Why an operation failed; each kind is counted and its first message is
 * printed to stderr. */
typedef enum lg_error_kind {
    LG_ERR_CONNECT,  /* socket, connect */
    LG_ERR_TLS,      /* handshake, read or write */
    LG_ERR_HTTP,     /* not a 200, wrong or missing Content-Length */
    LG_ERR_CLOSED,   /* the server closed in the middle of a response */
    LG_ERR_TIMEOUT,  /* no progress within --timeout */
    LG_ERR_DROPPED,  /* idle: the server closed a held connection */
    LG_ERR_KINDS
} lg_error_kind;

/* A response over this is an error: ours are a few hundred bytes. */
#define LG_RESPONSE_MAX 16384

/* --body: each "{n}" becomes the request's sequence number in the run, in
 * LG_SEQ_DIGITS digits (so every request has the same length), at most
 * LG_SEQ_MAX times in a body of at most LG_BODY_MAX bytes. */
#define LG_SEQ_MARK "{n}"
#define LG_SEQ_DIGITS 12
#define LG_SEQ_MAX 8
#define LG_BODY_MAX 65536

typedef enum lg_state {
    LG_ST_FREE,       /* no connection */
    LG_ST_CONNECTING, /* TCP connect in progress */
    LG_ST_HANDSHAKE,  /* TLS handshake in progress */
    LG_ST_WRITING,    /* sending the request */
    LG_ST_READING,    /* waiting for the whole response */
    LG_ST_HOLDING     /* idle mode: request done, connection held open */
} lg_state;

struct lg_run;

typedef struct lg_slot {
    struct lg_run *run;
    int fd;
    SSL *ssl;
    lg_state state;
    unsigned interest;     /* epoll events asked for; 0 when not added */
    char *request;         /* run->request, or the slot's own copy of it
                              when requests are numbered (run->nseq > 0) */
    SSL_SESSION *session;  /* resume: the newest session the server gave */
    uint64_t op_start_ns;  /* when the current operation began */
    uint64_t progress_ns;  /* last time it moved (for --timeout) */
    size_t written;        /* bytes of the request written */
    size_t have;           /* bytes of the response read */
    unsigned requests;     /* answered on this connection */
    int server_closes;     /* the response said Connection: close */
    char buf[LG_RESPONSE_MAX];
} lg_slot;

typedef struct lg_counts {
    uint64_t requests;     /* answered 200 with the right length */
    uint64_t handshakes;   /* completed */
    uint64_t resumed;      /* of which resumed */
    uint64_t connects;     /* TCP connections opened */
} lg_counts;

typedef struct lg_run {
    /* what to do (set by loadgen.c) */
    lg_mode mode;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    SSL_CTX *ctx;
    const char *servername;
    char *request;         /* the whole HTTP request */
    size_t request_len;
    size_t seq_at[LG_SEQ_MAX]; /* where in it each request's number goes */
    size_t nseq;
    uint64_t next_seq;     /* the next request's number */
    int expect_status;     /* 200, or --status */
    char status_why[48];   /* the error when the status is another */
    uint64_t timeout_ns;
    long expect_length;    /* -1: learnt from the first 200 */
    size_t nslots;
    lg_slot *slots;
    size_t *free_stack;    /* indexes of the slots in LG_ST_FREE */
    size_t nfree;
    size_t max_inflight;   /* connections being opened or asked at once */
    size_t inflight;
    int epfd;
    uint64_t last_sweep_ns; /* when slots were last checked for --timeout */

    /* what happened */
    int measuring;         /* counts and latencies go to `counts` and `hist` */
    int opening;           /* slots start new connections when free */
    lg_counts counts;
    lg_hist hist;
    uint64_t errors[LG_ERR_KINDS];
    int error_reported[LG_ERR_KINDS];
    uint64_t held;         /* idle: connections done with their request */
    uint64_t idle_target;  /* idle: connections to hold; sessions: handshakes */
    char cipher[64], group[32];
} lg_run;

uint64_t lg_now_ns(void);

/* Sets up the slots for run->request (built first, with run->seq_at). */
int lg_run_init(lg_run *run, size_t nslots);
void lg_run_free(lg_run *run);
/* Start connections in free slots, up to run->max_inflight at a time,
 * while run->opening. */
void lg_run_fill(lg_run *run);
/* Wait up to timeout_ms for events and drive the slots they concern;
 * then fail slots that made no progress within run->timeout_ns. */
int lg_run_poll(lg_run *run, int timeout_ms);
/* Close every slot's connection. */
void lg_run_close_all(lg_run *run);
/* The client-side half of resumption: keep each slot's newest session. */
void lg_run_enable_resumption(lg_run *run);

#endif
