/*
 * server.c - tw_server: the current generation, swapped on reload.
 *
 * The lock is held only to take a reference to the current generation
 * (accept) or to swap it (reload): building a generation, handshakes and
 * requests run without it.
 */
#include "tls_internal.h"

#include <openssl/crypto.h>

struct tw_server {
    pthread_mutex_t lock;
    tw__gen *cur;
    atomic_uint cur_id; /* cur->id, readable without the lock */
    tw__ticket_key key; /* random ticket key, used without a keys file */
};

tw_server *tw_server_new(const tw_config *cfg, tw_err *err)
{
    tw_server *srv = twu_calloc(1, sizeof(*srv));

    if (srv == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    pthread_mutex_init(&srv->lock, NULL);
    if (tw__ticket_keys_random(&srv->key, err) < 0 ||
        (srv->cur = tw__gen_new(cfg, 1, &srv->key, 1, err)) == NULL) {
        tw_server_free(srv);
        return NULL;
    }
    srv->cur->id = 1;
    atomic_store(&srv->cur_id, 1);
    return srv;
}

int tw_server_reload(tw_server *srv, const tw_config *cfg, tw_err *err)
{
    tw__gen *g = tw__gen_new(cfg, 1, &srv->key, 1, err), *old;

    if (g == NULL)
        return -1;
    pthread_mutex_lock(&srv->lock);
    old = srv->cur;
    g->id = old->id + 1;
    srv->cur = g;
    atomic_store(&srv->cur_id, g->id);
    pthread_mutex_unlock(&srv->lock);
    tw__gen_unref(old);
    return 0;
}

unsigned tw__server_current_id(const tw_server *srv)
{
    return atomic_load(&srv->cur_id);
}

tw__gen *tw__server_current(tw_server *srv)
{
    tw__gen *g;

    pthread_mutex_lock(&srv->lock);
    g = tw__gen_ref(srv->cur);
    pthread_mutex_unlock(&srv->lock);
    return g;
}

unsigned tw_server_generation(const tw_server *srv)
{
    return tw__server_current_id(srv);
}

int tw_server_has_policy(const tw_server *srv)
{
    tw__gen *g = tw__server_current((tw_server *)srv);
    int has = g->policy != NULL;

    tw__gen_unref(g);
    return has;
}

time_t tw_server_cert_not_after(const tw_server *srv)
{
    tw__gen *g = tw__server_current((tw_server *)srv);
    time_t t = g->cert_not_after;

    tw__gen_unref(g);
    return t;
}

time_t tw_server_crl_next_update(const tw_server *srv)
{
    tw__gen *g = tw__server_current((tw_server *)srv);
    time_t t = g->crl_next_update;

    tw__gen_unref(g);
    return t;
}

/* The current generation's session cache: bytes and sessions held. */
static void session_cache_stats(const tw_server *srv, size_t *bytes,
                                size_t *count)
{
    tw__gen *g = tw__server_current((tw_server *)srv);

    *bytes = *count = 0;
    if (g->sesscache != NULL)
        tw__sesscache_stats(g->sesscache, bytes, count);
    tw__gen_unref(g);
}

size_t tw_server_session_cache_bytes(const tw_server *srv)
{
    size_t bytes, count;

    session_cache_stats(srv, &bytes, &count);
    return bytes;
}

size_t tw_server_session_cache_count(const tw_server *srv)
{
    size_t bytes, count;

    session_cache_stats(srv, &bytes, &count);
    return count;
}

tw_conn *tw_server_accept(tw_server *srv, int fd, tw_err *err)
{
    tw_conn *c = tw__conn_new(tw__server_current(srv), fd, 1, NULL, err);

    if (c != NULL)
        c->server = srv;
    return c;
}

void tw_server_free(tw_server *srv)
{
    if (srv == NULL)
        return;
    tw__gen_unref(srv->cur);
    pthread_mutex_destroy(&srv->lock);
    OPENSSL_cleanse(&srv->key, sizeof(srv->key));
    twu_free(srv);
}
