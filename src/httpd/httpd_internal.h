/*
 * httpd_internal.h - what the files of the server core share: the server,
 * its workers, connections and requests.  Programs see httpd.h only.
 *
 *   server.c   options, start, signals, reload, drain
 *   worker.c   a worker thread: listener, accept, wake-ups, deadlines
 *   conn.c     one connection: handshake, read, parse, answer, close
 *   http.c     HTTP/1.1 requests (libhttp-parser) and responses
 *   route.c    the route table, roles, 403/404/405
 *   log.c      operational, refusal and access logs
 *   metrics.c  the counters and GET /metrics
 *   loop.c     the event loop (loop.h)
 */
#ifndef TW_HTTPD_INTERNAL_H
#define TW_HTTPD_INTERNAL_H

#include "httpd.h"
#include "loop.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* ------------------------------------------------------------- metrics */

/* Reasons counted for refusals, indexed by enum tw_reason. */
#define HTTPD_REASONS 16

/* A Prometheus histogram of durations: counts per upper bound (seconds,
 * metrics.c) and their sum in microseconds. */
#define HTTPD_HIST_BUCKETS 14
typedef struct httpd_hist {
    atomic_ullong bucket[HTTPD_HIST_BUCKETS + 1]; /* the last: +Inf */
    atomic_ullong sum_us; /* the count is the buckets' total */
} httpd_hist;
void httpd__hist_observe(httpd_hist *h, long long us);
/* Monotonic microseconds. */
long long httpd__now_us(void);

typedef struct httpd_metrics {
    atomic_ullong requests[6]; /* by status class: 1xx..5xx, [0] other */
    atomic_ullong handshakes, resumed, refusals[HTTPD_REASONS];
    atomic_ullong reloads, reload_failures, connections, open_connections;
    atomic_ullong bytes_out, over_limit;
    atomic_ullong plain_http; /* plain HTTP sent to the port: answered 400 */
    httpd_hist request_seconds;   /* first byte of a request to its answer */
    httpd_hist handshake_seconds; /* accept to a completed handshake */
} httpd_metrics;

/* ------------------------------------------------------------- routes */

typedef struct httpd_route_entry {
    int method;
    const char *path;
    size_t path_len;   /* without the '*' of a prefix route */
    int prefix;        /* path ended in '*' */
    int role;          /* index into httpd.roles, -1: none needed */
    httpd_handler *fn;
} httpd_route_entry;

/* ------------------------------------------------------------- server */

struct httpd {
    httpd_options opt;
    void *app;
    tw_config *cfg;
    tw_server *tls;
    httpd_metrics metrics;
    FILE *access_log;
    pthread_mutex_t log_lock;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    httpd_worker *workers;
    int nworkers, sigfd;
    atomic_int draining;
    httpd_route_entry routes[HTTPD_MAX_ROUTES];
    int nroutes;
    const char *roles[HTTPD_MAX_ROLES];
    int nroles;
    httpd_worker_start_fn *worker_start;
    httpd_worker_stop_fn *worker_stop;
    httpd_metrics_fn *app_metrics;
    const char *banner, *no_policy;
    httpd_tick_fn *tick;
    int tick_ms;
    httpd_reconfigure_fn *reconfigure;
    int cfg_owned;       /* cfg came from reconfigure: the core frees it */
    /* Generations already warned about (main thread only; 0: none). */
    unsigned warned_crl_gen, warned_cert_gen;
};

/* ------------------------------------------------------------ deadlines */

/*
 * Each connection waits for at most one thing, with a timeout that depends
 * only on what it waits for; a connection's deadline is "now + that
 * timeout".  So the connections waiting for one kind of thing, kept in the
 * order their deadlines were set, are also in deadline order: setting one
 * appends to a list, the earliest is a list's head, and one loop timer
 * armed for the earliest of the heads serves them all (O(1) per change,
 * no heap and no periodic sweep).
 */
enum httpd_wait {
    WAIT_NONE = -1,
    WAIT_HANDSHAKE,  /* the TLS handshake: close */
    WAIT_FIRST,      /* the first request after the handshake: close */
    WAIT_HEAD,       /* the rest of a request that began: 408 */
    WAIT_IDLE,       /* keep-alive between requests: close */
    WAIT_LINGER,     /* a refused peer's last bytes: close */
    WAIT_CLOSING,    /* a 408 being written: close */
    WAIT_KINDS
};

typedef struct httpd_conn httpd_conn;

typedef struct httpd_waitlist {
    httpd_conn *head, *tail;
} httpd_waitlist;

/* ------------------------------------------------------------ workers */

#define HTTPD_MAX_WORKER_WATCHES 4

struct httpd_watch {
    httpd_watch_fn *fn;
    void *data;
};

struct httpd_worker {
    httpd *srv;
    int index;
    pthread_t thread;
    int started, running, draining; /* program state made; thread runs */
    struct httpd_watch watches[HTTPD_MAX_WORKER_WATCHES];
    int nwatches;
    httpd_loop *loop;
    int listen_fd, wake_fd;
    void *state;             /* the program's (worker hooks) */
    httpd_conn *conns;       /* doubly linked list of open connections */
    int nconns, max_conns;
    httpd_waitlist waits[WAIT_KINDS];
    int wait_ms[WAIT_KINDS];
    long long timer_id;      /* armed for the earliest deadline, 0: none */
    long long timer_when;
    /* Request-head buffers, lent to connections only while they read a
     * request: idle connections hold none. */
    char *head_pool[64];
    int head_pool_n;
    char scratch[16384];     /* TLS reads land here before parsing */
};

int httpd__worker_start(httpd_worker *w);
/* Ask the worker to drain (from another thread). */
void httpd__worker_wake(httpd_worker *w);
/* Free what the worker made (its thread has ended). */
void httpd__worker_free(httpd_worker *w);
/* Wait for `kind` from now on (WAIT_NONE: for nothing with a deadline). */
void httpd__conn_wait(httpd_conn *c, enum httpd_wait kind);

/* --------------------------------------------------------- connections */

/* LINGER: refused in the handshake; the alert is sent and our side shut
 * down, and what the client still sends is read and dropped for a moment,
 * so the close does not become a reset that swallows the alert. */
enum httpd_conn_state { CONN_HANDSHAKE, CONN_ACTIVE, CONN_CLOSING, CONN_LINGER };

/* Where a header sits in the request head: name at head[off..], value
 * right after it.  Kept at the end of the pooled head buffer. */
typedef struct httpd_span {
    uint32_t off, name_len, value_len;
} httpd_span;

/* The request being read. */
typedef struct httpd_request {
    http_parser parser;
    char *head;          /* url and header bytes, at most max_head, then
                            the spans of the headers */
    size_t head_len;
    size_t url_len;      /* the url is head[0..url_len) */
    size_t nheaders;
    int last_was_value;
    char *field;         /* the header field being read, in head */
    size_t field_len;
    int expect_continue;
    twu_buf body;
    int complete, error_status;
    const char *error_reason;
    long long started_ms;
    long long started_us; /* its first byte, for the duration histogram */
    /* Set by routing. */
    const char *path, *query, *rest;
    size_t path_len, query_len, rest_len;
} httpd_request;

struct httpd_req {
    httpd_conn *conn;
};

struct httpd_conn {
    httpd_req req_handle;    /* what handlers see: &c->req_handle */
    httpd_worker *w;
    int fd;
    tw_conn *tls;
    enum httpd_conn_state state;
    char peer[INET6_ADDRSTRLEN + 8];
    httpd_request req;
    twu_buf out;
    size_t out_off;      /* bytes of out already written */
    int mask;            /* what the loop watches fd for */
    unsigned roles_gen;  /* generation roles_known/roles were decided in */
    unsigned roles_known, roles; /* bits of httpd.roles, decided once */
    char *pending_in;    /* pipelined bytes not yet parsed */
    size_t pending_len;
    int keep_alive, waiting; /* waiting: suspended by its handler */
    int freed_while_waiting;
    enum httpd_wait wait;
    long long deadline_ms;
    long long accepted_us; /* for the handshake duration histogram */
    httpd_conn *wait_prev, *wait_next;
    httpd_conn *prev, *next;
};

/* conn.c */
void httpd__conn_accept(httpd_worker *w, int fd, const struct sockaddr *sa);
void httpd__conn_close(httpd_conn *c);
/* The deadline of c has passed. */
void httpd__conn_expired(httpd_conn *c);

/* http.c */
/* Ready for the next request; the head buffer goes back to w's pool. */
void httpd__request_reset(httpd_worker *w, httpd_request *r);
void httpd__request_free(httpd_worker *w, httpd_request *r);
void httpd__head_pool_free(httpd_worker *w);
/* Feed bytes; returns how many were consumed (stops after a complete
 * request or an error: r->complete / r->error_status). */
size_t httpd__request_feed(httpd_conn *c, const char *data, size_t len);
const char *httpd__status_text(int status);
int httpd__reply(httpd_conn *c, int status, const char *content_type,
                 const void *body, size_t len, const char *extra_headers);
int httpd__reply_error(httpd_conn *c, int status, const char *reason);

/* route.c: answer the complete request in c->req. */
void httpd__route(httpd_conn *c);

/* log.c */
void httpd__log_refusal(httpd *srv, const char *peer, const tw_conn *tls);
void httpd__log_access(httpd_conn *c, int status, size_t bytes);
void httpd__timestamp(char *buf, size_t len);

/* metrics.c */
void httpd__metrics_render(httpd *srv, twu_buf *out);
void httpd__metrics_status(httpd *srv, int status);
void httpd__metrics_refusal(httpd *srv, enum tw_reason reason);

#endif /* TW_HTTPD_INTERNAL_H */
