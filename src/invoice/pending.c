/*
 * pending.c - the list of inserts waiting for a writer thread (writer.c on
 * SQLite, pg_writer.c on PostgreSQL): workers push, the writer takes them
 * in groups, and a stop lets the writer finish the list first.
 *
 * Owns: the requests pushed until a group takes them.
 */
#include "store_internal.h"

int store__pending_init(store__pending *p)
{
    p->head = p->tail = NULL;
    p->stopping = 0;
    p->mutex_ok = pthread_mutex_init(&p->mu, NULL) == 0;
    p->cond_ok = pthread_cond_init(&p->cv, NULL) == 0;
    return p->mutex_ok && p->cond_ok ? 0 : -1;
}

void store__pending_destroy(store__pending *p)
{
    if (p->cond_ok)
        pthread_cond_destroy(&p->cv);
    if (p->mutex_ok)
        pthread_mutex_destroy(&p->mu);
    p->cond_ok = p->mutex_ok = 0;
}

int store__pending_push(store__pending *p, store_req *r)
{
    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    r->next = NULL;
    if (p->tail != NULL)
        p->tail->next = r;
    else
        p->head = r;
    p->tail = r;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

store_req *store__pending_take(store__pending *p, int max)
{
    store_req *group, *last;
    int n = 1;

    pthread_mutex_lock(&p->mu);
    while (p->head == NULL && !p->stopping)
        pthread_cond_wait(&p->cv, &p->mu);
    if (p->head == NULL) { /* stopping, and nothing left */
        pthread_mutex_unlock(&p->mu);
        return NULL;
    }
    group = last = p->head;
    while (last->next != NULL && n < max) {
        last = last->next;
        n++;
    }
    p->head = last->next;
    if (p->head == NULL)
        p->tail = NULL;
    last->next = NULL;
    pthread_mutex_unlock(&p->mu);
    return group;
}

void store__pending_stop(store__pending *p)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
