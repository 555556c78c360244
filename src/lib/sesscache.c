/*
 * sesscache.c - the server's session cache, bounded in bytes.
 *
 * OpenSSL's own cache can only be bounded by count (20,480 sessions by
 * default), and a session there costs about 6 KB of heap with an ECDSA
 * P-256 client certificate (the parsed certificate is most of it), more
 * with RSA-4096: 2,000 clients reconnecting grew invoice-server by 186 MB.
 * This cache holds at most a given number of bytes instead.
 *
 * Why live sessions and not their DER: i2d_SSL_SESSION keeps a session in
 * 0.65 KB, but OpenSSL 3.0 parses the certificate's key back through its
 * provider decoders, which made a resumed handshake cost 2.5 times the CPU
 * (TLS 1.2: 112 us -> 274 us, TLS 1.3: 387 us -> 628 us, client and
 * server together, socketpairs, one core).  Resumption exists to be cheap,
 * so sessions are kept as OpenSSL made them (a reference) and each is
 * charged what it costs: an estimate from its DER size (SESSION_COST, fitted
 * on measured heap growth), which also grows with larger certificates.
 *
 * Sessions live for the session timeout from when they were made, and a
 * resumption never extends that (RFC 8446 section 4.6.1: a ticket's
 * lifetime counts from its issue; OpenSSL keeps a TLS 1.2 session's time
 * too).  So the entries are kept in the order they were made, which is
 * also the order they expire in: evicting the oldest first drops the
 * session with the least life left, and the expired ones are always at the
 * old end, dropped before anything else.
 *
 * Only the server makes session ids (32 random bytes: RFC 5246 section
 * 7.4.1.3, and the TLS 1.3 ticket of a stateful cache), so the hash of an
 * id is its first bytes: a client chooses the ids it looks up, never those
 * stored, and cannot lengthen a chain.
 *
 * The cache belongs to a generation: a reload starts an empty one, so no
 * session outlives a change of CA or CRL.  Worker threads share the
 * generation's SSL_CTX, hence the mutex; it is held for table and list
 * work only, and sessions are freed after it is let go.
 */
#include "tls_internal.h"

#include <string.h>

struct entry {
    struct entry *hnext;         /* the hash chain */
    struct entry *older, *newer; /* the list in order of making */
    SSL_SESSION *sess;           /* our reference */
    time_t expires;
    size_t cost; /* bytes charged: the entry and the session */
    unsigned int id_len;
    unsigned char id[SSL_MAX_SSL_SESSION_ID_LENGTH];
};

struct tw__sesscache {
    pthread_mutex_t lock;
    size_t max_bytes, bytes, count;
    size_t nbuckets; /* a power of two */
    struct entry **buckets;
    struct entry *oldest, *newest;
};

/*
 * What a live session costs, from the length of its DER.  Heap growth per
 * cached session, glibc, OpenSSL 3.0, TLS 1.2 and 1.3 alike (DER length in
 * brackets): Ed25519 client certificate 4.4 KB (526), ECDSA P-256 6.2 KB
 * (571), RSA-2048 6.3 KB (776), RSA-4096 7.9 KB (1032).  4 KiB + 4 x DER is
 * at or above each (6.4, 6.2, 7.2, 8.2 KB): the bound errs on the safe side.
 */
#define SESSION_COST(der_len) (4096 + 4 * (size_t)(der_len))
/* One bucket per 8 KiB of the bound: chains stay about one entry long. */
#define BYTES_PER_BUCKET 8192
#define BUCKETS_MIN 16
#define BUCKETS_MAX ((size_t)1 << 20)

static size_t entry_bytes(const struct entry *e)
{
    return e->cost;
}

/* What an empty cache holds: itself and its table. */
static size_t fixed_bytes(const tw__sesscache *sc)
{
    return sizeof(*sc) + sc->nbuckets * sizeof(*sc->buckets);
}

static size_t bucket_of(const tw__sesscache *sc, const unsigned char *id,
                        unsigned int id_len)
{
    size_t h = 0;

    memcpy(&h, id, id_len < sizeof(h) ? id_len : sizeof(h));
    return h & (sc->nbuckets - 1);
}

tw__sesscache *tw__sesscache_new(size_t max_bytes, tw_err *err)
{
    tw__sesscache *sc = twu_calloc(1, sizeof(*sc));

    if (sc == NULL)
        goto nomem;
    sc->max_bytes = max_bytes;
    sc->nbuckets = BUCKETS_MIN;
    while (sc->nbuckets < BUCKETS_MAX &&
           sc->nbuckets < max_bytes / BYTES_PER_BUCKET)
        sc->nbuckets *= 2;
    if ((sc->buckets = twu_calloc(sc->nbuckets, sizeof(*sc->buckets))) == NULL)
        goto nomem;
    sc->bytes = fixed_bytes(sc);
    pthread_mutex_init(&sc->lock, NULL);
    return sc;
nomem:
    twu_free(sc);
    twu_err_nomem(err);
    return NULL;
}

static void entry_free(struct entry *e)
{
    SSL_SESSION_free(e->sess); /* wipes the master secret */
    twu_free(e);
}

/* Take e out of the table and the list (lock held); the caller frees it. */
static void unlink_entry(tw__sesscache *sc, struct entry *e)
{
    struct entry **p = &sc->buckets[bucket_of(sc, e->id, e->id_len)];

    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        sc->oldest = e->newer;
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        sc->newest = e->older;
    sc->bytes -= entry_bytes(e);
    sc->count--;
}

static struct entry *find(tw__sesscache *sc, const unsigned char *id,
                          unsigned int id_len)
{
    struct entry *e = sc->buckets[bucket_of(sc, id, id_len)];

    while (e != NULL && (e->id_len != id_len || memcmp(e->id, id, id_len) != 0))
        e = e->hnext;
    return e;
}

/* Unlink the expired entries, then the oldest until `need` more bytes fit
 * (lock held).  They are chained on *dropped (by hnext) to be freed after
 * the lock is let go. */
static void make_room(tw__sesscache *sc, size_t need, time_t now,
                      struct entry **dropped)
{
    while (sc->oldest != NULL &&
           (sc->oldest->expires <= now || sc->bytes + need > sc->max_bytes)) {
        struct entry *e = sc->oldest;

        unlink_entry(sc, e);
        e->hnext = *dropped;
        *dropped = e;
    }
}

static void free_chain(struct entry *e)
{
    while (e != NULL) {
        struct entry *next = e->hnext;

        entry_free(e);
        e = next;
    }
}

void tw__sesscache_free(tw__sesscache *sc)
{
    if (sc == NULL)
        return;
    while (sc->oldest != NULL) {
        struct entry *e = sc->oldest;

        unlink_entry(sc, e);
        entry_free(e);
    }
    pthread_mutex_destroy(&sc->lock);
    twu_free(sc->buckets);
    twu_free(sc);
}

static tw__sesscache *cache_of_ctx(SSL_CTX *ctx)
{
    tw__gen *g = SSL_CTX_get_ex_data(ctx, tw__ctx_gen_index());

    return g != NULL ? g->sesscache : NULL;
}

/* SSL_CTX_sess_set_new_cb: a full handshake (TLS 1.2) or a ticket (TLS 1.3)
 * made a session.  Returns 1 when the cache keeps OpenSSL's reference. */
static int new_cb(SSL *ssl, SSL_SESSION *sess)
{
    tw__sesscache *sc = cache_of_ctx(SSL_get_SSL_CTX(ssl));
    struct entry *e, *dropped = NULL, *old;
    const unsigned char *id;
    unsigned int id_len;
    size_t bucket;
    int len;

    id = SSL_SESSION_get_id(sess, &id_len);
    if (sc == NULL || id_len == 0 || id_len > sizeof(e->id) ||
        (len = i2d_SSL_SESSION(sess, NULL)) <= 0)
        return 0;
    if (fixed_bytes(sc) + sizeof(*e) + SESSION_COST(len) > sc->max_bytes)
        return 0; /* larger than the whole cache: never fits */
    if ((e = twu_calloc(1, sizeof(*e))) == NULL)
        return 0; /* out of memory: the session just is not resumable */
    e->sess = sess;
    e->cost = sizeof(*e) + SESSION_COST(len);
    e->id_len = id_len;
    memcpy(e->id, id, id_len);
    e->expires = (time_t)SSL_SESSION_get_time(sess) +
                 (time_t)SSL_SESSION_get_timeout(sess);
    bucket = bucket_of(sc, id, id_len);
    pthread_mutex_lock(&sc->lock);
    if ((old = find(sc, id, id_len)) != NULL) {
        unlink_entry(sc, old); /* the same id made again: keep the newest */
        old->hnext = dropped;
        dropped = old;
    }
    make_room(sc, e->cost, time(NULL), &dropped);
    e->hnext = sc->buckets[bucket];
    sc->buckets[bucket] = e;
    e->older = sc->newest;
    if (sc->newest != NULL)
        sc->newest->newer = e;
    else
        sc->oldest = e;
    sc->newest = e;
    sc->bytes += e->cost;
    sc->count++;
    pthread_mutex_unlock(&sc->lock);
    free_chain(dropped);
    return 1;
}

/* SSL_CTX_sess_set_get_cb: a client offers a session id (TLS 1.2) or a
 * stateful ticket (TLS 1.3).  Expired sessions are dropped first, so one
 * is never handed out. */
static SSL_SESSION *get_cb(SSL *ssl, const unsigned char *id, int id_len,
                           int *copy)
{
    tw__sesscache *sc = cache_of_ctx(SSL_get_SSL_CTX(ssl));
    struct entry *e, *dropped = NULL;
    SSL_SESSION *sess = NULL;

    *copy = 0; /* the reference we return is the caller's */
    if (sc == NULL || id_len <= 0 || (size_t)id_len > sizeof(e->id))
        return NULL;
    pthread_mutex_lock(&sc->lock);
    make_room(sc, 0, time(NULL), &dropped); /* expired ones only */
    if ((e = find(sc, id, (unsigned int)id_len)) != NULL &&
        SSL_SESSION_up_ref(e->sess) == 1)
        sess = e->sess;
    pthread_mutex_unlock(&sc->lock);
    free_chain(dropped);
    return sess;
}

/* SSL_CTX_sess_set_remove_cb: OpenSSL gives a session up (a fatal alert on
 * its connection, or it found it timed out). */
static void remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
    tw__sesscache *sc = cache_of_ctx(ctx);
    const unsigned char *id;
    unsigned int id_len;
    struct entry *e;

    if (sc == NULL)
        return;
    id = SSL_SESSION_get_id(sess, &id_len);
    pthread_mutex_lock(&sc->lock);
    if ((e = find(sc, id, id_len)) != NULL)
        unlink_entry(sc, e);
    pthread_mutex_unlock(&sc->lock);
    if (e != NULL)
        entry_free(e);
}

void tw__sesscache_install(SSL_CTX *ctx)
{
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER |
                                            SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, new_cb);
    SSL_CTX_sess_set_get_cb(ctx, get_cb);
    SSL_CTX_sess_set_remove_cb(ctx, remove_cb);
}

void tw__sesscache_stats(tw__sesscache *sc, size_t *bytes, size_t *count)
{
    struct entry *dropped = NULL;

    pthread_mutex_lock(&sc->lock);
    make_room(sc, 0, time(NULL), &dropped);
    *bytes = sc->bytes;
    *count = sc->count;
    pthread_mutex_unlock(&sc->lock);
    free_chain(dropped);
}
