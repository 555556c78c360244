/*
 * queue.c - the completion queues that carry the writer's answers back to
 * the workers: a list under a mutex plus an eventfd the worker's event loop
 * watches.  The worker drains its queue on its own thread and runs the
 * callbacks there, outside the lock.
 *
 * Owns: posted requests until drained (or freed with the queue).
 */
#include "store_internal.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

store_queue *store_queue_new(tw_err *err)
{
    store_queue *q = twu_calloc(1, sizeof(*q));

    if (q == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    q->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->fd < 0) {
        twu_err(err, TW_ERR_INTERNAL, "cannot make an eventfd: %s",
                strerror(errno));
        twu_free(q);
        return NULL;
    }
    if (pthread_mutex_init(&q->mu, NULL) != 0) {
        twu_err(err, TW_ERR_INTERNAL, "cannot make a mutex");
        close(q->fd);
        twu_free(q);
        return NULL;
    }
    return q;
}

int store_queue_fd(const store_queue *q)
{
    return q->fd;
}

void store_queue_drain(store_queue *q)
{
    store_req *r, *next;
    uint64_t count;

    /* Read the counter before taking the list: a post that lands after the
     * swap writes the eventfd again, so the loop will call us again. */
    if (read(q->fd, &count, sizeof(count)) < 0) {
        /* EAGAIN: nothing signalled since the last drain; look anyway */
    }
    pthread_mutex_lock(&q->mu);
    r = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    for (; r != NULL; r = next) {
        next = r->next;
        r->done(r->ctx, &r->result);
        store__req_free(r); /* frees body.data unless the callback took it */
    }
}

void store_queue_free(store_queue *q)
{
    store_req *r, *next;

    if (q == NULL)
        return;
    for (r = q->head; r != NULL; r = next) { /* undelivered: no callback */
        next = r->next;
        store__req_free(r);
    }
    pthread_mutex_destroy(&q->mu);
    close(q->fd);
    twu_free(q);
}

/*
 * Hand the answered requests to their queues: one lock and one eventfd
 * write per run of requests for the same queue.  The eventfd is written
 * under the lock so that a worker that drained everything may free its
 * queue at once: we no longer touch it after unlocking.
 */
void store__queue_post(store_req *r)
{
    while (r != NULL) {
        store_queue *q = r->q;
        store_req *last = r, *rest;
        uint64_t one = 1;

        while (last->next != NULL && last->next->q == q)
            last = last->next;
        rest = last->next;
        last->next = NULL;
        pthread_mutex_lock(&q->mu);
        if (q->tail != NULL)
            q->tail->next = r;
        else
            q->head = r;
        q->tail = last;
        if (write(q->fd, &one, sizeof(one)) < 0) {
            /* EAGAIN only when the counter is full: still readable */
        }
        pthread_mutex_unlock(&q->mu);
        r = rest;
    }
}

