/*
 * httpd.h - the server core under every twoway server (invoice-server,
 * twoway-ca serve): worker threads with an epoll loop each and their own
 * SO_REUSEPORT listener, the TLS connection state machine over libtwoway,
 * HTTP/1.1 (keep-alive, pipelining, limits that answer 408/411/413/417/431),
 * routes with the role each needs, JSON errors, access and refusal logs,
 * Prometheus metrics, reload on SIGHUP or changed files, and a drain on
 * SIGTERM.
 *
 * A program fills httpd_options, builds its tw_config, calls httpd_new,
 * registers routes (and, if it keeps per-worker state, worker hooks), and
 * calls httpd_run, which returns when the server has drained after SIGTERM
 * or SIGINT.  Handlers run on a worker's thread and answer with
 * httpd_reply / httpd_reply_error, at once or later (httpd_req_suspend).
 *
 * Threads: httpd_new, the httpd_set_* and httpd_route calls, httpd_run and
 * httpd_free belong to the main thread, before and after the run.
 * httpd_log and httpd_reload are safe from any thread.  Everything that takes an httpd_req
 * or an httpd_worker runs on that worker's thread only.
 */
#ifndef TW_HTTPD_H
#define TW_HTTPD_H

#include "twoway.h"
#include "util.h"

#include <http_parser.h> /* HTTP_GET, HTTP_POST, ...: route methods */
#include <stddef.h>

typedef struct httpd httpd;
typedef struct httpd_req httpd_req;       /* a request and its connection */
typedef struct httpd_worker httpd_worker;

#define HTTPD_MAX_WATCH 8 /* files watched for a reload */

typedef struct httpd_options {
    const char *name;        /* the program, at the head of each log line */
    const char *listen;      /* ADDR:PORT, [V6ADDR]:PORT; port 0 picks one */
    const char *access_log;  /* a file, "-" for stdout, NULL for none */
    const char *cert_file;   /* named in the "expired" warning */
    const char *crl_file;    /* named in the "past nextUpdate" warning */
    const char *not_found;   /* the 404 sentence for an unknown path */
    /* Files whose change (inode, size, mtime) triggers a reload. */
    const char *watch[HTTPD_MAX_WATCH];
    int workers, max_conns;
    size_t max_head, max_headers, max_body;
    int handshake_timeout_ms, header_timeout_ms, idle_timeout_ms;
    int reload_check_ms;     /* 0: reload on SIGHUP only */
    /* The operational log: TWU_LOG_ERROR..DEBUG (0: info), text or JSON. */
    int log_level, log_json;
} httpd_options;

/* The defaults every server shares (limits, timeouts, one worker per
 * core); the program sets name, listen and the files. */
void httpd_options_defaults(httpd_options *o);

/*
 * Check the options, make the TLS server from `cfg` (kept, not copied: it
 * must outlive the httpd; a reload re-reads its files), open the access
 * log, and take SIGHUP, SIGTERM and SIGINT away from every thread started
 * afterwards.  Nothing listens yet.  NULL with `err` set (class
 * TW_ERR_USAGE for a malformed --listen: exit 2).
 */
httpd *httpd_new(const httpd_options *o, tw_config *cfg, void *app,
                 tw_err *err);
void httpd_free(httpd *h);

/*
 * An answer to `method` (HTTP_GET, HTTP_POST, ...) on `path`: an exact path
 * ("/invoices"), or a prefix ending in '*' that matches one or more more
 * bytes ("/invoices/" then '*': httpd_req_path_rest gives those bytes).  A peer without
 * `role` (NULL: none needed) is answered 403 with its identity named, and
 * the refusal logged and counted.  A path that matches with another method
 * is answered 405 with an Allow header.  The strings must outlive the
 * httpd.  0, or -1 when the table is full (HTTPD_MAX_ROUTES) or the role is
 * one too many (HTTPD_MAX_ROLES).  The routes' roles are the roles the
 * server knows: a policy that gives any other is refused (httpd_run).
 */
#define HTTPD_MAX_ROUTES 32
#define HTTPD_MAX_ROLES 16
typedef void httpd_handler(httpd_req *r);
int httpd_route(httpd *h, int method, const char *path, const char *role,
                httpd_handler *fn) TWU_MUST_CHECK;

/*
 * Check that every role the policy gives (its file read now) is one that a
 * route needs: a misspelt --allow 'raed O=MailServer' would otherwise start
 * a server that refuses every client.  httpd_run checks at start and
 * httpd_reload before each reload; a program may call it once its routes
 * are registered, to fail before it makes state of its own (a database).
 * 0, or -1 with err: TW_ERR_USAGE (exit 2) naming the rule (FILE:LINE for
 * a rule of a policy file), the role and the roles the server knows, or
 * the error of reading the policy file.
 */
int httpd_check_roles(httpd *h, tw_err *err) TWU_MUST_CHECK;

/* Per-worker state of the program (a database connection, a cache): made
 * (on the main thread) before the worker's thread starts, used only on
 * that thread, freed after it stopped.  `stop` gets the state even when
 * `start` failed half-way, as `start` left it. */
typedef int httpd_worker_start_fn(httpd_worker *w, void *app, void **state,
                                  tw_err *err);
typedef void httpd_worker_stop_fn(void *state);
void httpd_set_worker_hooks(httpd *h, httpd_worker_start_fn *start,
                            httpd_worker_stop_fn *stop);

/* Handlers the core provides: GET /metrics (the core's counters, then the
 * program's lines) and GET /healthz ("ok"). */
void httpd_serve_metrics(httpd_req *r);
void httpd_serve_health(httpd_req *r);

/* The program's own lines of GET /metrics, after the core's. */
typedef void httpd_metrics_fn(void *app, twu_buf *out);
void httpd_set_metrics(httpd *h, httpd_metrics_fn *fn);

/* Call fn(app) on the main thread about every `every_ms` (and not while a
 * signal is being handled): the program's periodic work, such as
 * re-signing a CRL or renewing its own certificate. */
typedef void httpd_tick_fn(void *app);
void httpd_set_tick(httpd *h, httpd_tick_fn *fn, int every_ms);

/* Called on the main thread at each reload (SIGHUP, changed files), before
 * the TLS files are read again: a program with a config file reads it
 * again and returns the TLS configuration it now describes, which the core
 * uses from then on (and frees); NULL with `err` refuses the reload (the old
 * generation stays). */
typedef tw_config *httpd_reconfigure_fn(void *app, tw_err *err);
void httpd_set_reconfigure(httpd *h, httpd_reconfigure_fn *fn);

/* Reload the TLS configuration now (its files again), as SIGHUP does;
 * logged and counted.  Any thread.  0, or -1 when the new configuration
 * was refused and the old one stays. */
int httpd_reload(httpd *h, const char *why);

/* What the start-up line says after the listening address, e.g.
 * "database invoices.db"; and the sentence logged at start, as a warning,
 * when the configuration has no policy. */
void httpd_set_banner(httpd *h, const char *extra, const char *no_policy);

/*
 * Start the workers and serve until SIGTERM or SIGINT, reloading on SIGHUP
 * and when a watched file changes; then stop accepting, finish the requests
 * in flight (at most 10 s) and return 0; 1 when the server could not start
 * (said in the log).  2 (a usage error, said on stderr: exit 2) when the
 * policy gives a role that no route needs, as a misspelt --allow 'raed
 * O=...' does; a reload to such a policy is refused (the old generation
 * stays, and the log says why).
 */
int httpd_run(httpd *h);

/* A line of the operational log on stderr, "TIME NAME: TEXT" (or JSON with
 * log_json), with control characters shown as '?' (escaped in JSON) so a
 * peer cannot forge lines.  A text starting "error: ", "warning: " or
 * "debug: " is at that level, any other at info; lines above log_level are
 * not written.  Any thread. */
void httpd_log(httpd *h, const char *fmt, ...) TWU_PRINTF(2, 3);
/* Whether a line at `level` (TWU_LOG_*) would be written: check it before
 * formatting a debug line on a hot path. */
int httpd_log_enabled(const httpd *h, int level);

/* ------------------------------------------------------------- workers */

int httpd_worker_index(const httpd_worker *w);
/* Call fn(data) on the worker's thread whenever `fd` is readable (an
 * eventfd a background thread writes to). -1 (errno) on failure. */
typedef void httpd_watch_fn(void *data);
int httpd_worker_watch(httpd_worker *w, int fd, httpd_watch_fn *fn,
                       void *data) TWU_MUST_CHECK;

/* ------------------------------------------------------------ requests */

int httpd_req_method(const httpd_req *r);
/* The path of the target (not decoded), and the bytes a '*' route
 * matched. */
const char *httpd_req_path(const httpd_req *r, size_t *len);
const char *httpd_req_path_rest(const httpd_req *r, size_t *len);
/* The value of `name` in the query string, copied into buf: 1 found, 0
 * absent, -1 too long or encoded (%, +: our values are plain). */
int httpd_req_query(const httpd_req *r, const char *name, char *buf,
                    size_t len);
/* The value of a request header (case-insensitive name), not
 * NUL-terminated; NULL when absent (an empty value is "" with len 0). */
const char *httpd_req_header(const httpd_req *r, const char *name,
                             size_t *len);
const char *httpd_req_body(const httpd_req *r, size_t *len);
/* The peer's address, "127.0.0.1:5000" or "[::1]:5000". */
const char *httpd_req_peer_addr(const httpd_req *r);
/* The peer's identity (parsed once per connection), NULL when out of
 * memory. */
const tw_identity *httpd_req_peer(httpd_req *r);
/* The TLS connection (version, resumption, policy decisions). */
tw_conn *httpd_req_tls(httpd_req *r);
void *httpd_req_app(const httpd_req *r);
void *httpd_req_worker_state(const httpd_req *r);
httpd *httpd_req_server(const httpd_req *r);

/*
 * Answer with a status, a content type and a body (copied), plus extra
 * header lines ("Name: value\r\n", or NULL).  Written to the access log
 * and counted.  -1 when out of memory.  After the connection went away
 * (a suspended request), the answer is dropped and 0 returned.
 */
int httpd_reply(httpd_req *r, int status, const char *content_type,
                const void *body, size_t len, const char *extra_headers);
/* A JSON error {"error": STATUS TEXT, "reason": reason}. */
int httpd_reply_error(httpd_req *r, int status, const char *reason);

/*
 * The handler answers later: the connection reads nothing more and keeps
 * no deadline until httpd_req_resume, which the program calls on the same
 * worker thread after its httpd_reply.  The request stays valid until then
 * even if the peer goes away.
 */
void httpd_req_suspend(httpd_req *r);
void httpd_req_resume(httpd_req *r);

#endif /* TW_HTTPD_H */
