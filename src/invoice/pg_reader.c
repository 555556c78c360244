/*
 * pg_reader.c - reads from PostgreSQL for every worker: one thread, one
 * connection in libpq's pipeline mode, non-blocking.
 *
 * Workers hand reads over (a list under a mutex and an eventfd); the thread
 * sends each as a prepared statement followed by a sync point, without
 * waiting for the answers of those before it, and posts each answer to the
 * asking worker's store_queue as it arrives.  No worker ever waits for the
 * database: a read costs the worker two eventfd writes, whatever the
 * server's latency, and a hundred reads in flight cost one round trip.
 *
 * The same connection LISTENs on PG_CHANNEL: every commit that adds
 * invoices (on any instance) bumps `gen`, so a worker's copy of "the
 * newest" is trusted only while nothing was notified since it was read.
 *
 * A lost connection (the server stopped, or silent for longer than
 * TWU_PG_STATEMENT_TIMEOUT_MS) answers every read in flight 503 at once;
 * while it is down workers answer 503 without asking (pg_reader_up), and
 * the thread connects again after 0.1, 0.2, ... 2 s.
 *
 * Owns: its connection; requests from submission until posted.
 */
#include "pg.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_IN_FLIGHT 128

struct pg_reader {
    pg_link link;
    pthread_mutex_t mu;
    store_req *head, *tail; /* submitted, not yet taken */
    int stopping;
    int wake;               /* eventfd: something was submitted */
    atomic_int up;          /* the connection takes queries */
    atomic_uint gen;        /* notifications (and reconnections) seen */
    atomic_int listening;
    atomic_ulong unavailable; /* reads answered 503 here */
    pthread_t thread;
    int mutex_ok, running;

    /* The reader thread's own. */
    PGconn *c;
    store_req *sent, *sent_tail;       /* in the pipeline, oldest first */
    int nsent;
    store_req *backlog, *backlog_tail; /* taken, waiting for room */
    store_req *answered;               /* to post */
};

static void push(store_req **head, store_req **tail, store_req *r)
{
    r->next = NULL;
    if (*tail != NULL)
        (*tail)->next = r;
    else
        *head = r;
    *tail = r;
}

static store_req *pop(store_req **head, store_req **tail)
{
    store_req *r = *head;

    if (r != NULL) {
        *head = r->next;
        if (*head == NULL)
            *tail = NULL;
        r->next = NULL;
    }
    return r;
}

static void answer(pg_reader *rd, store_req *r)
{
    r->next = rd->answered;
    rd->answered = r;
}

static void post_answers(pg_reader *rd)
{
    store_req *list = NULL;

    /* Back into submission order, so a worker sees its answers in order. */
    while (rd->answered != NULL) {
        store_req *r = rd->answered;

        rd->answered = r->next;
        r->next = list;
        list = r;
    }
    if (list != NULL)
        store__queue_post(list);
}

/* --------------------------------------------------------- connection */

static void unavailable(pg_reader *rd, store_req *r)
{
    atomic_fetch_add(&rd->unavailable, 1);
    store__answer_text(r, 503, STORE__UNAVAILABLE);
    answer(rd, r);
}

static void lost(pg_reader *rd, const char *why)
{
    store_req *r;

    atomic_store(&rd->up, 0);
    atomic_store(&rd->listening, 0);
    while ((r = pop(&rd->sent, &rd->sent_tail)) != NULL)
        unavailable(rd, r);
    rd->nsent = 0;
    while ((r = pop(&rd->backlog, &rd->backlog_tail)) != NULL)
        unavailable(rd, r);
    pg_link_lost(&rd->link, rd->c, why, 0);
    rd->c = NULL;
}

static int setup(void *arg, PGconn *c, tw_err *err)
{
    pg_reader *rd = arg;
    char line[256];
    PGresult *res;
    int ok;

    if (pg_schema_check(c, rd->link.desc, err) < 0 ||
        pg_prepare(c, "newest",
                   "SELECT " STORE__INVOICE_COLUMNS " FROM twoway_invoices.invoices "
                   "ORDER BY id DESC LIMIT 1",
                   0, rd->link.desc, err) < 0 ||
        pg_prepare(c, "get",
                   "SELECT " STORE__INVOICE_COLUMNS " FROM twoway_invoices.invoices "
                   "WHERE number = $1",
                   1, rd->link.desc, err) < 0 ||
        pg_prepare(c, "page",
                   "SELECT id, " STORE__INVOICE_COLUMNS
                   " FROM twoway_invoices.invoices "
                   "WHERE id > $1 ORDER BY id LIMIT $2",
                   2, rd->link.desc, err) < 0)
        return -1;
    res = PQexec(c, "LISTEN " PG_CHANNEL);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok || PQsetnonblocking(c, 1) != 0 || PQenterPipelineMode(c) != 1)
        return twu_err(err, TW_ERR_IO, "cannot set up the reader's connection "
                       "to %s: %s", rd->link.desc, twu_pg_error_line(c, line, sizeof(line)));
    return 0;
}

/* Connect again (blocking this thread only; workers answer 503 meanwhile). */
static void connect_now(pg_reader *rd)
{
    if ((rd->c = pg_link_retry(&rd->link)) == NULL)
        return;
    atomic_fetch_add(&rd->gen, 1); /* notifications may have been missed */
    atomic_store(&rd->listening, 1);
    atomic_store(&rd->up, 1);
}

/* ------------------------------------------------------------ queries */

static int send_one(pg_reader *rd, store_req *r)
{
    char after[24], limit[16];
    const char *params[2];
    const char *name;
    int n = 0;

    switch (r->kind) {
    case STORE__GET:
        name = "get";
        params[n++] = r->inv.number;
        break;
    case STORE__NEWEST:
        name = "newest";
        break;
    default:
        name = "page";
        snprintf(after, sizeof(after), "%lld", (long long)r->after);
        snprintf(limit, sizeof(limit), "%d", r->limit + 1); /* a next? */
        params[n++] = after;
        params[n++] = limit;
        break;
    }
    if (PQsendQueryPrepared(rd->c, name, n, params, NULL, NULL, 0) != 1 ||
        PQpipelineSync(rd->c) != 1)
        return -1;
    r->sent_ms = pg_now_ms();
    r->phase = 0;
    push(&rd->sent, &rd->sent_tail, r);
    rd->nsent++;
    return 0;
}

static void render_page(store_req *r, const PGresult *res)
{
    twu_buf *out = &r->result.body;
    int rows = PQntuples(res), n = rows > r->limit ? r->limit : rows;

    out->len = 0;
    if (twu_buf_append(out, "{\"invoices\":[", 13) < 0)
        goto nomem;
    for (int i = 0; i < n; i++) {
        store__row row;

        pg_row(res, i, 1, &row);
        if ((i > 0 && twu_buf_append(out, ",", 1) < 0) ||
            store__render_invoice(out, &row) < 0)
            goto nomem;
    }
    if ((rows > r->limit
             ? twu_buf_printf(out, "],\"next\":\"%s\"}",
                              PQgetvalue(res, n - 1, 0))
             : twu_buf_append(out, "],\"next\":null}", 14)) < 0)
        goto nomem;
    r->result.status = 200;
    return;
nomem:
    store__answer_text(r, 500, "the answer is larger than its buffer allows, "
                               "or memory ran out");
}

static void render(store_req *r, const PGresult *res)
{
    store__row row;

    if (r->kind == STORE__PAGE) {
        render_page(r, res);
    } else if (PQntuples(res) == 0) {
        store__answer_text(r, 404, "%s", r->kind == STORE__GET
                                             ? "no such invoice"
                                             : "there are no invoices yet");
    } else {
        pg_row(res, 0, 0, &row);
        store__answer_row(r, 200, &row);
    }
}

/* Take the answers that arrived: each request gets its result, the end
 * of its query (NULL), then its sync point. */
static void take_results(pg_reader *rd)
{
    while (rd->sent != NULL && !PQisBusy(rd->c)) {
        store_req *r = rd->sent;
        PGresult *res = PQgetResult(rd->c);

        if (res == NULL) {
            if (r->phase != 1)
                break;
            r->phase = 2;
            continue;
        }
        switch (PQresultStatus(res)) {
        case PGRES_PIPELINE_SYNC:
            pop(&rd->sent, &rd->sent_tail);
            rd->nsent--;
            if (r->result.status == 0)
                store__answer_text(r, 500, "the database gave no answer");
            answer(rd, r);
            break;
        case PGRES_TUPLES_OK:
            render(r, res);
            r->phase = 1;
            break;
        default: {
            const char *m = PQresultErrorMessage(res);

            store__answer_text(r, 500, "cannot read the invoices: %.*s",
                               (int)strcspn(m, "\n"), m);
            r->phase = 1;
            break;
        }
        }
        PQclear(res);
    }
}

static void take_notifications(pg_reader *rd)
{
    PGnotify *n;

    while ((n = PQnotifies(rd->c)) != NULL) {
        atomic_fetch_add(&rd->gen, 1);
        PQfreemem(n);
    }
}

/* ------------------------------------------------------------- thread */

/* Move what workers submitted to the backlog; 1 when stopping. */
static int take_submitted(pg_reader *rd)
{
    uint64_t count;
    store_req *r;
    int stopping;

    if (read(rd->wake, &count, sizeof(count)) < 0) {
        /* EAGAIN: nothing new */
    }
    pthread_mutex_lock(&rd->mu);
    r = rd->head;
    rd->head = rd->tail = NULL;
    stopping = rd->stopping;
    pthread_mutex_unlock(&rd->mu);
    while (r != NULL) {
        store_req *next = r->next;

        push(&rd->backlog, &rd->backlog_tail, r);
        r = next;
    }
    return stopping;
}

static void *reader_main(void *arg)
{
    pg_reader *rd = arg;

    for (;;) {
        struct pollfd pfd[2] = {{.fd = rd->wake, .events = POLLIN}, {.fd = -1}};
        long long now = pg_now_ms();
        int timeout = -1, stopping = take_submitted(rd);
        store_req *r;

        if (rd->c == NULL && !stopping)
            connect_now(rd);
        if (rd->c == NULL)
            while ((r = pop(&rd->backlog, &rd->backlog_tail)) != NULL)
                unavailable(rd, r);
        while (rd->c != NULL && rd->nsent < MAX_IN_FLIGHT &&
               (r = pop(&rd->backlog, &rd->backlog_tail)) != NULL)
            if (send_one(rd, r) < 0) {
                push(&rd->backlog, &rd->backlog_tail, r); /* answered 503 */
                lost(rd, NULL);
            }
        if (rd->c != NULL) {
            int f = PQflush(rd->c);

            if (f < 0) {
                lost(rd, NULL);
            } else {
                pfd[1].fd = PQsocket(rd->c);
                pfd[1].events = POLLIN | (f == 1 ? POLLOUT : 0);
            }
        }
        post_answers(rd);
        if (stopping && rd->sent == NULL && rd->backlog == NULL)
            break;
        if (rd->c == NULL && !stopping)
            timeout = (int)(rd->link.retry_at > now ? rd->link.retry_at - now
                                                    : 0);
        else if (rd->sent != NULL)
            timeout = (int)(rd->sent->sent_ms + TWU_PG_STATEMENT_TIMEOUT_MS > now
                                ? rd->sent->sent_ms + TWU_PG_STATEMENT_TIMEOUT_MS - now
                                : 0);
        if (poll(pfd, pfd[1].fd >= 0 ? 2 : 1, timeout) < 0 && errno != EINTR)
            break;
        if (rd->c != NULL && pfd[1].revents != 0) {
            if (PQconsumeInput(rd->c) != 1) {
                lost(rd, NULL);
            } else {
                take_results(rd);
                take_notifications(rd);
            }
        }
        if (rd->c != NULL && rd->sent != NULL &&
            pg_now_ms() - rd->sent->sent_ms >= TWU_PG_STATEMENT_TIMEOUT_MS)
            lost(rd, "no answer in " TWU_PG_STATEMENT_TIMEOUT " ms");
        post_answers(rd);
    }
    return NULL;
}

/* --------------------------------------------------------------- API */

static void reader_free(pg_reader *rd)
{
    PQfinish(rd->c);
    if (rd->wake >= 0)
        close(rd->wake);
    if (rd->mutex_ok)
        pthread_mutex_destroy(&rd->mu);
    pg_link_free(&rd->link);
    twu_free(rd);
}

pg_reader *pg_reader_start(const char *url, pg_log_fn *log, void *log_ctx,
                           tw_err *err)
{
    pg_reader *rd = twu_calloc(1, sizeof(*rd));

    if (rd == NULL)
        return twu_err_nomem(err), NULL;
    rd->wake = -1;
    if (pg_link_init(&rd->link, url, "invoice-server reader", "reads", setup,
                     rd, log, log_ctx, err) < 0)
        goto err;
    rd->mutex_ok = pthread_mutex_init(&rd->mu, NULL) == 0;
    rd->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    TWU_ENSURE(rd->mutex_ok && rd->wake >= 0, err, TW_ERR_INTERNAL,
               "cannot make the reader's mutex or eventfd: %s", strerror(errno));
    /* The first connection here, so that a server that cannot read its
     * database says so at start. */
    if ((rd->c = pg_link_first(&rd->link, err)) == NULL)
        goto err;
    atomic_store(&rd->listening, 1);
    atomic_store(&rd->up, 1);
    TWU_ENSURE(pthread_create(&rd->thread, NULL, reader_main, rd) == 0, err,
               TW_ERR_INTERNAL, "cannot start the reader thread");
    rd->running = 1;
    return rd;
err:
    reader_free(rd);
    return NULL;
}

int pg_reader_up(const pg_reader *rd)
{
    return atomic_load(&rd->up);
}

void pg_reader_submit(pg_reader *rd, store_req *r)
{
    uint64_t one = 1;

    pthread_mutex_lock(&rd->mu);
    if (rd->stopping) {
        pthread_mutex_unlock(&rd->mu);
        store__answer_text(r, 503, "the server is shutting down");
        store__queue_post(r);
        return;
    }
    push(&rd->head, &rd->tail, r);
    if (write(rd->wake, &one, sizeof(one)) < 0) {
        /* EAGAIN only when the counter is full: still readable */
    }
    pthread_mutex_unlock(&rd->mu);
}

unsigned long pg_reader_unavailable(pg_reader *rd)
{
    return atomic_load(&rd->unavailable);
}

int pg_reader_generation(pg_reader *rd, unsigned *gen)
{
    *gen = atomic_load(&rd->gen);
    return atomic_load(&rd->listening);
}

void pg_reader_stop(pg_reader *rd)
{
    uint64_t one = 1;

    if (rd == NULL)
        return;
    pthread_mutex_lock(&rd->mu);
    rd->stopping = 1;
    if (write(rd->wake, &one, sizeof(one)) < 0) {
        /* still readable */
    }
    pthread_mutex_unlock(&rd->mu);
    if (rd->running)
        pthread_join(rd->thread, NULL); /* it answers what is in flight */
    reader_free(rd);
}
