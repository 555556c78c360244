/*
 * server.h - invoice-server's shared structures: options, the process-wide
 * server, workers (one thread and event loop each) and connections.
 */
#ifndef TW_INVOICE_SERVER_H
#define TW_INVOICE_SERVER_H

#include "cache.h"
#include "loop.h"
#include "store.h"
#include "twoway.h"

#include <http_parser.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>

/* ------------------------------------------------------------- options */

#define INV_MAX_RULES 256

typedef struct inv_options {
    const char *cert, *key, *ca, *crl, *listen, *db, *policy;
    const char *access_log, *ticket_keys;
    const char *rules[INV_MAX_RULES];
    int nrules, workers;
    size_t max_head, max_headers, max_body;
    int header_timeout_ms, idle_timeout_ms, handshake_timeout_ms;
    int max_conns, reload_check_ms, tickets;
} inv_options;

/* Parse argv; returns 0, or an exit code (0 after --help). `done` is set
 * when the program should exit with that code. */
int inv_options_parse(inv_options *o, int argc, char **argv, int *done);

/* ------------------------------------------------------------- metrics */

/* Reasons counted for refusals, indexed by enum tw_reason. */
#define INV_REASONS 16

typedef struct inv_metrics {
    atomic_ullong requests[6]; /* by status class: 1xx..5xx, [0] other */
    atomic_ullong handshakes, resumed, refusals[INV_REASONS];
    atomic_ullong reloads, reload_failures, connections, open_connections;
    atomic_ullong bytes_out, over_limit;
} inv_metrics;

/* ------------------------------------------------------------ server */

typedef struct inv_worker inv_worker;

typedef struct inv_server {
    inv_options opt;
    tw_config *cfg;
    tw_server *tls;
    store_writer *writer;
    inv_metrics metrics;
    FILE *access_log;
    pthread_mutex_t log_lock;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    inv_worker *workers;
    int nworkers;
    atomic_int draining;
    time_t started;
    /* Generations already warned about (main thread only; 0: none). */
    unsigned warned_crl_gen, warned_cert_gen;
} inv_server;

/* server.c: run until SIGTERM; the exit code. */
int inv_server_run(const inv_options *o);

/* ------------------------------------------------------------ workers */

typedef struct inv_conn inv_conn;

struct inv_worker {
    inv_server *srv;
    int index;
    pthread_t thread;
    tw_loop *loop;
    int listen_fd, wake_fd;
    tw_store *store;
    store_queue *queue;
    inv_conn *conns; /* doubly linked list of open connections */
    store_done_fn *post_done; /* answers a POST (inv_conn_post_done) */
    /* Request-head buffers of --max-head bytes, lent to connections only
     * while they read a request: idle connections hold none. */
    char *head_pool[64];
    int head_pool_n;
    inv_cache *cache;      /* rendered invoices by number (cache.c) */
    int nconns, max_conns;
    char scratch[16384]; /* TLS reads land here before parsing */
};

/* worker.c */
int inv_worker_start(inv_worker *w);
/* Ask the worker to drain (from another thread). */
void inv_worker_wake(inv_worker *w);

/* --------------------------------------------------------- connections */

/* LINGER: refused in the handshake; the alert is sent and our side shut
 * down, and what the client still sends is read and dropped for a moment,
 * so the close does not become a reset that swallows the alert. */
enum inv_conn_state { CONN_HANDSHAKE, CONN_ACTIVE, CONN_CLOSING, CONN_LINGER };

/* The request being read. */
typedef struct inv_request {
    http_parser parser;
    char *head;          /* url and header bytes, at most max_head */
    size_t head_len;
    size_t url_len;      /* the url is head[0..url_len) */
    size_t nheaders;
    int last_was_value;
    char *field;         /* the header field being read, in head */
    size_t field_len;
    size_t idem_key_off; /* Idempotency-Key: head[off..off+len), len 0 = none */
    size_t idem_key_len;
    int idem_key_bad, expect_continue;
    inv_buf body;
    int complete, error_status;
    const char *error_reason;
    long long started_ms;
} inv_request;

struct inv_conn {
    inv_worker *w;
    int fd;
    tw_conn *tls;
    enum inv_conn_state state;
    char peer[INET6_ADDRSTRLEN + 8];
    inv_request req;
    inv_buf out;
    size_t out_off;      /* bytes of out already written */
    int mask;            /* what the loop watches fd for */
    unsigned roles_gen;  /* generation roles_known/roles were decided in */
    int roles_known, roles; /* bits of routes.c's roles, decided once */
    char *pending_in;    /* pipelined bytes not yet parsed */
    size_t pending_len;
    int keep_alive, waiting; /* waiting: a POST is with the writer */
    int freed_while_waiting;
    long long deadline_ms;
    int timeout_status;  /* what the deadline answers: 408, or 0 = close */
    inv_conn *prev, *next;
};

/* conn.c */
void inv_conn_accept(inv_worker *w, int fd, const struct sockaddr *sa);
void inv_conn_close(inv_conn *c);
/* Check deadlines (called by the worker's periodic timer). */
void inv_conn_sweep(inv_worker *w, long long now_ms);
/* A POST finished on the writer: answer it. */
void inv_conn_post_done(void *ctx, store_result *r);

/* http.c */
/* Ready for the next request; the head buffer goes back to w's pool. */
void inv_request_reset(inv_worker *w, inv_request *r);
void inv_request_free(inv_worker *w, inv_request *r);
/* Free the pool (the worker is done). */
void inv_head_pool_free(inv_worker *w);
/* Feed bytes; returns how many were consumed (stops after a complete
 * request or an error: r->complete / r->error_status). */
size_t inv_request_feed(inv_conn *c, const char *data, size_t len);
/* Append a response to c->out. */
int inv_reply(inv_conn *c, int status, const char *content_type,
              const char *body, size_t len, const char *extra_headers);
/* A JSON error {"error":..., "reason":...}. */
int inv_reply_error(inv_conn *c, int status, const char *reason);
const char *inv_status_text(int status);

/* routes.c: answer the complete request in c->req (may go async: then
 * c->waiting is set and inv_conn_post_done answers later). */
void inv_route(inv_conn *c);

/* log.c */
void inv_log(inv_server *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void inv_log_refusal(inv_server *srv, const char *peer, const tw_conn *tls);
void inv_log_access(inv_conn *c, int status, size_t bytes);

/* metrics.c */
void inv_metrics_render(inv_server *srv, inv_buf *out);
void inv_metrics_status(inv_server *srv, int status);

#endif
