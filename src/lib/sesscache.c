/*
 * sesscache.c - the server's session cache, bounded in bytes.
 *
 * OpenSSL's own cache can only be bounded by count (20,480 sessions by
 * default), and a session there costs about 6 KB of heap with an ECDSA
 * P-256 client certificate (the parsed certificate is most of it), more
 * with RSA-4096: 2,000 clients reconnecting grew invoice-server by 186 MB.
 * This cache holds at most a given number of bytes instead.
 *
 * What it keeps of a session (issue 15): the live SSL_SESSION, so that a
 * resumption costs a reference and no parse, but without the client's
 * certificate, which it keeps once per client (tw__cache_peer, keyed by
 * the certificate's SHA-256) and lends to each connection that resumes.
 * Sessions of one client share it: 1.4 KB per stored session instead of
 * 6.4 KB (heap, glibc; docs/benchmarks.md).
 * OpenSSL 3.0 has no call that takes the certificate out of a session, so
 * the copy is parsed from the session's DER with element [3] (the
 * certificate) cut out; a DER without the certificate parses in about
 * 24,000 instructions.  The copy is made when the connection that made the
 * session closes (tw__sesscache_conn_closed), not at once: until then the
 * entry is that connection's own session, which shares the certificate
 * with it, and an idle connection costs no more than before.
 *
 * Why not the DER itself (0.5 KB a session): parsing it on each
 * resumption cost 5 % more instructions per resumed TLS 1.2 handshake
 * (d2i_SSL_SESSION), and the whole DER with the certificate 2.5 times the
 * CPU (OpenSSL 3.0 decodes the certificate's key through its provider
 * decoders; TLS 1.2: 112 us -> 274 us, client and server together).
 *
 * A session resumed from here has no peer certificate inside OpenSSL:
 * get_cb lends the connection the client's certificate and the chain it
 * sent (tw_conn's `resumed`), and everything that asks
 * for the peer asks tw__conn_peer_cert(), so the resumption checks (verify
 * result, dates, CRL, in tw_conn_handshake), the policy, the identity and
 * tw_conn_refresh see the certificate they would have seen in the session.
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
 * stored, and cannot lengthen a chain.  The certificate table is keyed by
 * SHA-256 hashes of certificates that verified under this generation's CA.
 *
 * The cache belongs to a generation: a reload starts an empty one, so no
 * session outlives a change of CA or CRL.  Worker threads share the
 * generation's SSL_CTX, hence the mutex; it is held for table and list
 * work only, and what is dropped is freed after it is let go.
 */
#include "tls_internal.h"

#include <openssl/x509.h>

#include <string.h>
#include <time.h>

struct tw__cache_entry {
    struct tw__cache_entry *hnext;         /* the hash chain */
    struct tw__cache_entry *older, *newer; /* the list in order of making */
    /* While the connection that made it is open, the entry is that
     * connection's session as OpenSSL made it, certificate included (they
     * share it); tw_conn_free hands it over (tw__sesscache_conn_closed)
     * and it becomes a copy without the certificate. */
    tw_conn *owner;
    struct tw__cache_entry *onext, **oprev; /* the owner's entries */
    SSL_SESSION *sess; /* ours; with a certificate only while owned */
    tw__cache_peer *peer; /* the certificate of a session without one */
    time_t expires;
    size_t cost; /* bytes charged: the entry, its session, its certificate */
    unsigned int id_len;
    unsigned char id[SSL_MAX_SSL_SESSION_ID_LENGTH];
};

struct tw__sesscache {
    pthread_mutex_t lock;
    size_t max_bytes, bytes, count;
    size_t nbuckets; /* a power of two, for entries and peers alike */
    struct tw__cache_entry **buckets;
    tw__cache_peer **peers;
    struct tw__cache_entry *oldest, *newest;
};

/* What is dropped under the lock, to be freed after it. */
struct dropped {
    struct tw__cache_entry *entries; /* by hnext */
    tw__cache_peer *peers;    /* by hnext */
};

/*
 * What a parsed client certificate costs, from the length of its DER:
 * heap growth per cached live session with its own certificate, glibc,
 * OpenSSL 3.0 (DER length of the session in brackets): Ed25519 4.4 KB
 * (526), ECDSA P-256 6.2 KB (571), RSA-2048 6.3 KB (776), RSA-4096 7.9 KB
 * (1032).  4 KiB + 4 x DER is at or above each: the bound errs on the safe
 * side.  Each session is charged it, shared or not (new_cb says why).
 */
#define PEER_COST(der_len) (4096 + 4 * (size_t)(der_len))
/* An entry and its session without a certificate: OpenSSL 3.0's
 * SSL_SESSION is 928 bytes, its lock 56, then the SNI name, and what the
 * allocator adds (1.2 KB in all, measured: docs/benchmarks.md). */
#define ENTRY_COST(host_len)                                                   \
    (sizeof(struct tw__cache_entry) + 1024 + (size_t)(host_len))
/* The longest DER made on the way: a session is about 200 bytes without
 * the certificate (ids, master key, times, SNI and ALPN at most 255 each);
 * a longer one stays as OpenSSL made it. */
#define DER_MAX 2048
/* One bucket per 8 KiB of the bound: chains stay about one entry long. */
#define BYTES_PER_BUCKET 8192
#define BUCKETS_MIN 16
#define BUCKETS_MAX ((size_t)1 << 20)

/* What an empty cache holds: itself and its tables. */
static size_t fixed_bytes(const tw__sesscache *sc)
{
    return sizeof(*sc) + sc->nbuckets * (sizeof(*sc->buckets) +
                                         sizeof(*sc->peers));
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
    sc->buckets = twu_calloc(sc->nbuckets, sizeof(*sc->buckets));
    sc->peers = twu_calloc(sc->nbuckets, sizeof(*sc->peers));
    if (sc->buckets == NULL || sc->peers == NULL)
        goto nomem;
    sc->bytes = fixed_bytes(sc);
    pthread_mutex_init(&sc->lock, NULL);
    return sc;
nomem:
    if (sc != NULL) {
        twu_free(sc->buckets);
        twu_free(sc->peers);
    }
    twu_free(sc);
    twu_err_nomem(err);
    return NULL;
}

static void peer_free(tw__cache_peer *p)
{
    X509_free(p->cert);
    sk_X509_pop_free(p->chain, X509_free);
    twu_free(p);
}

static void entry_free(struct tw__cache_entry *e)
{
    SSL_SESSION_free(e->sess); /* wipes the master secret */
    twu_free(e);
}

static void free_dropped(struct dropped *d)
{
    while (d->entries != NULL) {
        struct tw__cache_entry *next = d->entries->hnext;

        entry_free(d->entries);
        d->entries = next;
    }
    while (d->peers != NULL) {
        tw__cache_peer *next = d->peers->hnext;

        peer_free(d->peers);
        d->peers = next;
    }
}

/* One user fewer for p (lock held); the last takes it out of the table,
 * onto d to be freed. */
static void peer_release(tw__sesscache *sc, tw__cache_peer *p,
                         struct dropped *d)
{
    tw__cache_peer **pp;

    if (p == NULL || --p->refs > 0)
        return;
    pp = &sc->peers[bucket_of(sc, p->fp, sizeof(p->fp))];
    while (*pp != p)
        pp = &(*pp)->hnext;
    *pp = p->hnext;
    p->hnext = d->peers;
    d->peers = p;
}

/* Take e off its owner's list (lock held). */
static void disown(struct tw__cache_entry *e)
{
    if (e->owner == NULL)
        return;
    *e->oprev = e->onext;
    if (e->onext != NULL)
        e->onext->oprev = e->oprev;
    e->owner = NULL;
    e->onext = NULL;
    e->oprev = NULL;
}

/* Take e out of the table and the list, onto d (lock held). */
static void unlink_entry(tw__sesscache *sc, struct tw__cache_entry *e,
                         struct dropped *d)
{
    struct tw__cache_entry **p = &sc->buckets[bucket_of(sc, e->id, e->id_len)];

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
    sc->bytes -= e->cost;
    sc->count--;
    disown(e);
    peer_release(sc, e->peer, d);
    e->hnext = d->entries;
    d->entries = e;
}

static struct tw__cache_entry *find(tw__sesscache *sc, const unsigned char *id,
                          unsigned int id_len)
{
    struct tw__cache_entry *e = sc->buckets[bucket_of(sc, id, id_len)];

    while (e != NULL && (e->id_len != id_len || memcmp(e->id, id, id_len) != 0))
        e = e->hnext;
    return e;
}

/* The table's certificate whose SHA-256 is fp (lock held).  The hash
 * stands for the certificate as it does in the verified-chain cache. */
static tw__cache_peer *find_peer(tw__sesscache *sc, const unsigned char fp[32])
{
    tw__cache_peer *p = sc->peers[bucket_of(sc, fp, 32)];

    while (p != NULL && memcmp(p->fp, fp, 32) != 0)
        p = p->hnext;
    return p;
}

/* Unlink the expired entries, then the oldest until `need` more bytes fit
 * (lock held). */
static void make_room(tw__sesscache *sc, size_t need, time_t now,
                      struct dropped *d)
{
    while (sc->oldest != NULL &&
           (sc->oldest->expires <= now || sc->bytes + need > sc->max_bytes))
        unlink_entry(sc, sc->oldest, d);
}

void tw__sesscache_free(tw__sesscache *sc)
{
    struct dropped d = {NULL, NULL};

    if (sc == NULL)
        return;
    while (sc->oldest != NULL)
        unlink_entry(sc, sc->oldest, &d);
    free_dropped(&d);
    pthread_mutex_destroy(&sc->lock);
    twu_free(sc->peers);
    twu_free(sc->buckets);
    twu_free(sc);
}

static tw__sesscache *cache_of_ctx(SSL_CTX *ctx)
{
    tw__gen *g = SSL_CTX_get_ex_data(ctx, tw__ctx_gen_index());

    return g != NULL ? g->sesscache : NULL;
}

/*
 * A session's DER without element [3], the peer certificate (RFC 5280
 * DER inside OpenSSL's SSL_SESSION_ASN1 sequence), into out (DER_MAX
 * bytes), starting at *start (within the first 4 bytes of out: the header
 * goes right before the elements, which are not moved).  The length, or 0
 * when it does not fit or does not parse.
 */
static size_t der_without_peer(SSL_SESSION *sess, unsigned char *out,
                               const unsigned char **start)
{
    unsigned char *der = NULL, *w;
    const unsigned char *p, *end, *elem;
    long len, inner;
    int tag, xclass, n, der_len;
    size_t total = 0, body = 0;

    if ((der_len = i2d_SSL_SESSION(sess, &der)) <= 0)
        return 0;
    p = der;
    if (ASN1_get_object(&p, &inner, &tag, &xclass, der_len) !=
            V_ASN1_CONSTRUCTED ||
        tag != V_ASN1_SEQUENCE || xclass != V_ASN1_UNIVERSAL)
        goto done;
    end = p + inner;
    /* First the elements kept, after room for the longest header (4). */
    w = out + 4;
    while (p < end) {
        elem = p;
        if (ASN1_get_object(&p, &len, &tag, &xclass, end - p) & 0x80)
            goto done;
        p += len;
        if (tag == 3 && xclass == V_ASN1_CONTEXT_SPECIFIC)
            continue; /* the peer's certificate */
        if ((size_t)(p - elem) > DER_MAX - 4 - body)
            goto done;
        memcpy(w, elem, (size_t)(p - elem));
        w += p - elem;
        body += (size_t)(p - elem);
    }
    /* Then the sequence's header, right before them. */
    n = ASN1_object_size(1, (int)body, V_ASN1_SEQUENCE) - (int)body;
    if (n <= 0 || n > 4)
        goto done;
    w = out + 4 - n;
    ASN1_put_object(&w, 1, (int)body, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    *start = out + 4 - n;
    total = (size_t)n + body;
done:
    OPENSSL_clear_free(der, (size_t)der_len);
    return total;
}

/* A copy of sess without the peer's certificate (parsed from its DER
 * without the certificate), or NULL. */
static SSL_SESSION *without_peer(SSL_SESSION *sess)
{
    unsigned char der[DER_MAX];
    const unsigned char *p = der;
    size_t len = der_without_peer(sess, der, &p);
    SSL_SESSION *copy = len > 0 ? d2i_SSL_SESSION(NULL, &p, (long)len) : NULL;

    OPENSSL_cleanse(der, sizeof(der));
    return copy;
}

/* What the table keeps of a certificate besides it. */
struct facts {
    unsigned char fp[32];
    time_t not_after;
};

static int facts_of(X509 *cert, struct facts *f)
{
    unsigned int len = 0;
    struct tm tm;

    return X509_digest(cert, EVP_sha256(), f->fp, &len) == 1 && len == 32 &&
           ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1 &&
           (f->not_after = timegm(&tm)) != (time_t)-1;
}

/* The table's certificate equal to cert, one user more; made from *fresh
 * (then NULL) when it is not there (lock held). */
static tw__cache_peer *peer_get(tw__sesscache *sc, X509 *cert,
                                STACK_OF(X509) *chain, const struct facts *f,
                                tw__cache_peer **fresh)
{
    tw__cache_peer *p = find_peer(sc, f->fp);
    size_t b;

    if (p != NULL) {
        p->refs++;
        return p;
    }
    p = *fresh;
    *fresh = NULL;
    p->cert = cert;
    X509_up_ref(cert);
    p->chain = chain != NULL ? X509_chain_up_ref(chain) : NULL;
    memcpy(p->fp, f->fp, sizeof(p->fp));
    p->not_after = f->not_after;
    p->refs = 1;
    b = bucket_of(sc, f->fp, sizeof(f->fp));
    p->hnext = sc->peers[b];
    sc->peers[b] = p;
    return p;
}

/*
 * SSL_CTX_sess_set_new_cb: a full handshake (TLS 1.2) or a ticket (TLS
 * 1.3) made a session.  Returns 1: the cache keeps OpenSSL's reference.
 * A full handshake's session is the connection's own (OpenSSL hands the
 * first TLS 1.3 ticket's session over as it is), with the certificate
 * parsed from the client: while the connection is open they share it, and
 * the entry is the connection's (e->owner) until it closes.  A ticket of a
 * resumed TLS 1.3 connection comes from the resumed session, already
 * without a certificate: its certificate is the one this cache lent.
 */
static int new_cb(SSL *ssl, SSL_SESSION *sess)
{
    tw__sesscache *sc = cache_of_ctx(SSL_get_SSL_CTX(ssl));
    tw_conn *c = SSL_get_ex_data(ssl, tw__ssl_conn_index());
    struct dropped d = {NULL, NULL};
    struct tw__cache_entry *e, *old;
    tw__cache_peer *lent = NULL;
    const unsigned char *id;
    const char *host;
    unsigned int id_len;
    X509 *cert = SSL_SESSION_get0_peer(sess);
    size_t need, bucket;

    id = SSL_SESSION_get_id(sess, &id_len);
    if (sc == NULL || c == NULL || id_len == 0 || id_len > sizeof(e->id))
        return 0;
    if (cert == NULL && SSL_session_reused(ssl))
        lent = c->resumed; /* in the table while c holds it */
    host = SSL_SESSION_get0_hostname(sess);
    need = ENTRY_COST(host != NULL ? strlen(host) : 0);
    /* Charged to each session as if the certificate were its own, so the
     * bound holds whatever the mix of clients. */
    if (cert != NULL || lent != NULL)
        need += PEER_COST(i2d_X509(cert != NULL ? cert : lent->cert, NULL));
    if (fixed_bytes(sc) + need > sc->max_bytes ||
        (e = twu_calloc(1, sizeof(*e))) == NULL)
        return 0; /* never fits, or out of memory: not resumable */
    e->sess = sess;
    e->cost = need;
    e->id_len = id_len;
    memcpy(e->id, id, id_len);
    e->expires = (time_t)SSL_SESSION_get_time(sess) +
                 (time_t)SSL_SESSION_get_timeout(sess);
    bucket = bucket_of(sc, id, id_len);
    pthread_mutex_lock(&sc->lock);
    if ((old = find(sc, id, id_len)) != NULL)
        unlink_entry(sc, old, &d); /* the same id made again: the newest */
    if (lent != NULL)
        lent->refs++; /* e's */
    make_room(sc, e->cost, time(NULL), &d);
    e->peer = lent;
    if (cert != NULL) {
        e->owner = c;
        e->onext = c->cache_entries;
        if (e->onext != NULL)
            e->onext->oprev = &e->onext;
        e->oprev = &c->cache_entries;
        c->cache_entries = e;
    }
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
    free_dropped(&d);
    return 1;
}

/* Tickets a handshake makes at most (--tickets is 0 to 8), and one more. */
#define OWNED_MAX 9

/*
 * c is closing: its entries become copies without the certificate, which
 * goes to the table (once per client).  Made outside the lock: 89,000
 * instructions (the certificate's SHA-256, i2d and d2i of the session),
 * 1.8 % of a full handshake; an entry that changed meanwhile (used,
 * dropped) is left as it is.  The certificate c borrowed goes back.
 */
void tw__sesscache_conn_closed(tw_conn *c)
{
    tw__sesscache *sc = cache_of_ctx(SSL_get_SSL_CTX(c->ssl));
    struct {
        SSL_SESSION *live, *copy;
        tw__cache_peer *fresh;
        struct facts f;
        unsigned int id_len;
        unsigned char id[SSL_MAX_SSL_SESSION_ID_LENGTH];
    } pending[OWNED_MAX];
    struct tw__cache_entry *e;
    struct dropped d = {NULL, NULL};
    /* The sessions c made hold OpenSSL's certificate, sent with this. */
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c->ssl);
    size_t n = 0;

    if (sc == NULL)
        return;
    pthread_mutex_lock(&sc->lock);
    peer_release(sc, c->resumed, &d);
    c->resumed = NULL;
    while ((e = c->cache_entries) != NULL) {
        if (n < OWNED_MAX && SSL_SESSION_up_ref(e->sess) == 1) {
            pending[n].live = e->sess;
            pending[n].id_len = e->id_len;
            memcpy(pending[n].id, e->id, e->id_len);
            n++;
        }
        disown(e);
    }
    pthread_mutex_unlock(&sc->lock);
    free_dropped(&d);
    for (size_t i = 0; i < n; i++) {
        X509 *cert = SSL_SESSION_get0_peer(pending[i].live);

        pending[i].fresh = NULL;
        pending[i].copy = NULL;
        if (cert != NULL && facts_of(cert, &pending[i].f) &&
            (pending[i].fresh = twu_calloc(1, sizeof(*pending[i].fresh))) !=
                NULL)
            pending[i].copy = without_peer(pending[i].live);
    }
    pthread_mutex_lock(&sc->lock);
    for (size_t i = 0; i < n; i++) {
        if (pending[i].copy == NULL ||
            (e = find(sc, pending[i].id, pending[i].id_len)) == NULL ||
            e->sess != pending[i].live || e->peer != NULL)
            continue;
        e->peer = peer_get(sc, SSL_SESSION_get0_peer(pending[i].live), chain,
                           &pending[i].f, &pending[i].fresh);
        e->sess = pending[i].copy;
        pending[i].copy = pending[i].live; /* the cache's reference, to drop */
    }
    pthread_mutex_unlock(&sc->lock);
    for (size_t i = 0; i < n; i++) {
        SSL_SESSION_free(pending[i].copy);
        SSL_SESSION_free(pending[i].live);
        twu_free(pending[i].fresh);
    }
}

/* Give c the certificate of the session being resumed (none when the
 * session still holds its own), in place of one lent before (lock held). */
static void lend_peer(tw__sesscache *sc, tw_conn *c, tw__cache_peer *p,
                      struct dropped *d)
{
    peer_release(sc, c->resumed, d);
    c->resumed = p;
    if (p != NULL)
        p->refs++;
}

/* SSL_CTX_sess_set_get_cb: a client offers a session id (TLS 1.2) or a
 * stateful ticket (TLS 1.3).  Expired sessions are dropped first, so one
 * is never handed out. */
static SSL_SESSION *get_cb(SSL *ssl, const unsigned char *id, int id_len,
                           int *copy)
{
    tw__sesscache *sc = cache_of_ctx(SSL_get_SSL_CTX(ssl));
    tw_conn *c = SSL_get_ex_data(ssl, tw__ssl_conn_index());
    struct dropped d = {NULL, NULL};
    struct tw__cache_entry *e;
    SSL_SESSION *sess = NULL;

    *copy = 0; /* the reference we return is the caller's */
    if (sc == NULL || c == NULL || id_len <= 0 ||
        (size_t)id_len > sizeof(e->id))
        return NULL;
    pthread_mutex_lock(&sc->lock);
    make_room(sc, 0, time(NULL), &d); /* expired ones only */
    if ((e = find(sc, id, (unsigned int)id_len)) != NULL &&
        SSL_SESSION_up_ref(e->sess) == 1) {
        sess = e->sess;
        lend_peer(sc, c, e->peer, &d);
    }
    pthread_mutex_unlock(&sc->lock);
    free_dropped(&d);
    return sess;
}

/* SSL_CTX_sess_set_remove_cb: OpenSSL gives a session up (a fatal alert on
 * its connection, a TLS 1.3 ticket used once, or it found it timed out). */
static void remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
    tw__sesscache *sc = cache_of_ctx(ctx);
    struct dropped d = {NULL, NULL};
    const unsigned char *id;
    unsigned int id_len;
    struct tw__cache_entry *e;

    if (sc == NULL)
        return;
    id = SSL_SESSION_get_id(sess, &id_len);
    pthread_mutex_lock(&sc->lock);
    if ((e = find(sc, id, id_len)) != NULL)
        unlink_entry(sc, e, &d);
    pthread_mutex_unlock(&sc->lock);
    free_dropped(&d);
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
    struct dropped d = {NULL, NULL};

    pthread_mutex_lock(&sc->lock);
    make_room(sc, 0, time(NULL), &d);
    *bytes = sc->bytes;
    *count = sc->count;
    pthread_mutex_unlock(&sc->lock);
    free_dropped(&d);
}
