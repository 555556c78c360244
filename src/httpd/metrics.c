/*
 * metrics.c - the core's counters and GET /metrics in the Prometheus text
 * format (version 0.0.4); the program adds its own lines after them.
 */
#include "httpd_internal.h"

#include <time.h>

void httpd__metrics_refusal(httpd *srv, enum tw_reason reason)
{
    if ((unsigned)reason < HTTPD_REASONS)
        atomic_fetch_add(&srv->metrics.refusals[reason], 1);
}

void httpd__metrics_status(httpd *srv, int status)
{
    int cls = status / 100;

    atomic_fetch_add(&srv->metrics.requests[cls >= 1 && cls <= 5 ? cls : 0], 1);
}

/* Upper bounds in microseconds: 0.25 ms to 10 s, as Prometheus' defaults
 * start lower for TLS handshakes (hundreds of microseconds). */
static const long long hist_bounds_us[HTTPD_HIST_BUCKETS] = {
    250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
    500000, 1000000, 2500000, 10000000};

long long httpd__now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void httpd__hist_observe(httpd_hist *h, long long us)
{
    int i = 0;

    if (us < 0)
        us = 0;
    while (i < HTTPD_HIST_BUCKETS && us > hist_bounds_us[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (unsigned long long)us,
                              memory_order_relaxed);
}

/* Cumulative buckets, sum and count, in seconds. */
static void render_hist(twu_buf *b, const char *name, const char *help,
                        httpd_hist *h)
{
    unsigned long long cum = 0;

    twu_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i <= HTTPD_HIST_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < HTTPD_HIST_BUCKETS)
            twu_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name,
                           (double)hist_bounds_us[i] / 1e6, cum);
        else
            twu_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
    }
    twu_buf_printf(b, "%s_sum %.6f\n%s_count %llu\n", name,
                   (double)atomic_load(&h->sum_us) / 1e6, name, cum);
}

void httpd__metrics_render(httpd *srv, twu_buf *b)
{
    httpd_metrics *m = &srv->metrics;
    static const char *const classes[] = {"other", "1xx", "2xx", "3xx", "4xx",
                                          "5xx"};

    twu_buf_printf(b, "# HELP twoway_requests_total HTTP requests answered, by status class.\n"
                      "# TYPE twoway_requests_total counter\n");
    for (int i = 0; i < 6; i++)
        twu_buf_printf(b, "twoway_requests_total{code=\"%s\"} %llu\n",
                       classes[i], atomic_load(&m->requests[i]));
    twu_buf_printf(b, "# HELP twoway_handshakes_total TLS handshakes completed.\n"
                      "# TYPE twoway_handshakes_total counter\n"
                      "twoway_handshakes_total %llu\n"
                      "# HELP twoway_handshakes_resumed_total Handshakes that resumed a session.\n"
                      "# TYPE twoway_handshakes_resumed_total counter\n"
                      "twoway_handshakes_resumed_total %llu\n",
                   atomic_load(&m->handshakes), atomic_load(&m->resumed));
    twu_buf_printf(b, "# HELP twoway_refusals_total Peers refused, by reason.\n"
                      "# TYPE twoway_refusals_total counter\n");
    for (int r = TW_REASON_NO_CERTIFICATE; r <= TW_REASON_CRL_UNUSABLE; r++)
        twu_buf_printf(b, "twoway_refusals_total{reason=\"%s\"} %llu\n",
                       tw_reason_name((enum tw_reason)r),
                       atomic_load(&m->refusals[r]));
    twu_buf_printf(b, "# HELP twoway_reloads_total Successful reloads of certificates, CA, CRL and policy.\n"
                      "# TYPE twoway_reloads_total counter\n"
                      "twoway_reloads_total %llu\n"
                      "# HELP twoway_reload_failures_total Reloads refused (the old configuration stayed).\n"
                      "# TYPE twoway_reload_failures_total counter\n"
                      "twoway_reload_failures_total %llu\n"
                      "# HELP twoway_connections_total Connections accepted.\n"
                      "# TYPE twoway_connections_total counter\n"
                      "twoway_connections_total %llu\n"
                      "# HELP twoway_connections_refused_over_limit_total Connections closed at once: --max-connections reached.\n"
                      "# TYPE twoway_connections_refused_over_limit_total counter\n"
                      "twoway_connections_refused_over_limit_total %llu\n"
                      "# HELP twoway_connections_open Connections open now.\n"
                      "# TYPE twoway_connections_open gauge\n"
                      "twoway_connections_open %llu\n"
                      "# HELP twoway_response_bytes_total Bytes of responses written.\n"
                      "# TYPE twoway_response_bytes_total counter\n"
                      "twoway_response_bytes_total %llu\n"
                      "# HELP twoway_tls_generation Configuration generation in use (1 + reloads).\n"
                      "# TYPE twoway_tls_generation gauge\n"
                      "twoway_tls_generation %u\n"
                      "# HELP twoway_certificate_expiry_timestamp_seconds When the server certificate expires.\n"
                      "# TYPE twoway_certificate_expiry_timestamp_seconds gauge\n"
                      "twoway_certificate_expiry_timestamp_seconds %lld\n"
                      "# HELP twoway_crl_next_update_timestamp_seconds When the first of the CRLs must be replaced (0: no CRL).\n"
                      "# TYPE twoway_crl_next_update_timestamp_seconds gauge\n"
                      "twoway_crl_next_update_timestamp_seconds %lld\n",
                   atomic_load(&m->reloads), atomic_load(&m->reload_failures),
                   atomic_load(&m->connections),
                   atomic_load(&m->over_limit),
                   atomic_load(&m->open_connections),
                   atomic_load(&m->bytes_out), tw_server_generation(srv->tls),
                   (long long)tw_server_cert_not_after(srv->tls),
                   (long long)tw_server_crl_next_update(srv->tls));
    twu_buf_printf(b, "# HELP twoway_session_cache_bytes Memory held by the TLS session cache (sessions and bookkeeping).\n"
                      "# TYPE twoway_session_cache_bytes gauge\n"
                      "twoway_session_cache_bytes %zu\n"
                      "# HELP twoway_session_cache_sessions Sessions in the TLS session cache.\n"
                      "# TYPE twoway_session_cache_sessions gauge\n"
                      "twoway_session_cache_sessions %zu\n",
                   tw_server_session_cache_bytes(srv->tls),
                   tw_server_session_cache_count(srv->tls));
    render_hist(b, "twoway_request_duration_seconds",
                "From the first byte of a request to its answer.",
                &m->request_seconds);
    render_hist(b, "twoway_handshake_duration_seconds",
                "From accepting a connection to its completed TLS handshake.",
                &m->handshake_seconds);
    twu_buf_printf(b, "# HELP twoway_plain_http_total Connections that sent plain HTTP to the HTTPS port (answered 400).\n"
                      "# TYPE twoway_plain_http_total counter\n"
                      "twoway_plain_http_total %llu\n",
                   atomic_load(&m->plain_http));
    if (srv->app_metrics != NULL)
        srv->app_metrics(srv->app, b);
}

void httpd_serve_metrics(httpd_req *r)
{
    twu_buf b = {0};

    httpd__metrics_render(r->conn->w->srv, &b);
    httpd_reply(r, 200, "text/plain; version=0.0.4", b.data ? b.data : "",
                b.len, NULL);
    twu_buf_free(&b);
}

/* 200 while the server can be trusted by its clients; 503 once its own
 * certificate has expired (a failing renewal alone is not unhealthy). */
void httpd_serve_health(httpd_req *r)
{
    time_t not_after = tw_server_cert_not_after(r->conn->w->srv->tls);

    if (not_after != 0 && time(NULL) >= not_after) {
        static const char expired[] = "certificate expired\n";

        httpd_reply(r, 503, "text/plain", expired, sizeof(expired) - 1, NULL);
        return;
    }
    httpd_reply(r, 200, "text/plain", "ok", 2, NULL);
}
