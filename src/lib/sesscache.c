/*
 * sesscache.c - the server's session cache, bounded in bytes.
 *
 * OpenSSL's own cache can only be bounded by count (20,480 sessions by
 * default), and a session there costs about 6 KB of heap with an ECDSA
 * P-256 client certificate (the parsed certificate is most of it), more
 * with RSA-4096: 2,000 clients reconnecting grew invoice-server by 186 MB.
 * This cache holds at most a given number of bytes instead.
 *
 * What it keeps of a session (issue 15), in three forms:
 *
 *  - owned: while the connection that made it in a full handshake is open,
 *    the session as OpenSSL made it, which shares the client's certificate
 *    with the connection (an idle connection costs nothing more);
 *  - compact: when that connection closes (tw__sesscache_conn_closed), the
 *    session's DER with element [3], the certificate, cut out (about 150
 *    bytes), and the certificate once per client (tw__cache_peer, keyed by
 *    its SHA-256, lent to each connection that resumes one of its
 *    sessions).  A stored session costs about 0.4 KB;
 *  - hot: a live SSL_SESSION without the certificate, so that resuming it
 *    costs a reference and no parse: the TLS 1.3 ticket a resumed
 *    connection makes (the next one that client will offer: a TLS 1.3
 *    ticket is resumed once, then leaves the cache), and a TLS 1.2
 *    session once it has been resumed (d2i, about 24,000 instructions,
 *    then kept parsed).  At most a quarter of the bound is hot; beyond it
 *    the least recently used hot session is made compact again (cool()).
 *
 * So a client that keeps coming back resumes from a live object, as
 * before, and the many sessions that are made and never resumed, or
 * resumed once, cost a compact DER each: 1.3 KB per stored session before
 * (a live copy without the certificate, 928 bytes of SSL_SESSION and its
 * lock), 0.4 KB now (docs/benchmarks.md).  A full handshake pays the DER
 * (i2d, about 34,000 instructions) when its connection closes, and no
 * longer the parse back that the live copy needed.
 *
 * Charges: an owned session as if its certificate were its own (the
 * connection holds one), a compact or hot one for what it holds, and each
 * client's certificate once, while any session or connection uses it.
 * Evicting the oldest sessions frees their certificates, so the bound holds
 * for any mix of clients.
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
 * work only: DER is made and parsed outside it, and what is dropped is
 * freed after it is let go.  A DER holds the master secret: it is wiped
 * when freed.
 */
#include "tls_internal.h"

#include <openssl/x509.h>

#include <string.h>
#include <time.h>

struct tw__cache_entry {
    struct tw__cache_entry *hnext;         /* the hash chain */
    struct tw__cache_entry *older, *newer; /* the list in order of making */
    /* Hot entries, by last use (the cache's hot_oldest ... hot_newest). */
    struct tw__cache_entry *hot_older, *hot_newer;
    /* An owned entry: the connection that made it, which shares the
     * session and its certificate until tw_conn_free hands it over
     * (tw__sesscache_conn_closed). */
    tw_conn *owner;
    struct tw__cache_entry *onext, **oprev; /* the owner's entries */
    SSL_SESSION *sess;  /* owned or hot, else NULL */
    unsigned char *der; /* compact (and a hot one parsed from it), else NULL */
    tw__cache_peer *peer; /* the certificate of a session without one */
    time_t expires;
    size_t cost; /* bytes charged: the entry, its session, its DER */
    unsigned short der_len;
    unsigned char hot;  /* on the hot list */
    unsigned char once; /* a TLS 1.3 ticket: resumed once, then gone */
    unsigned char id_len;
    unsigned char id[SSL_MAX_SSL_SESSION_ID_LENGTH];
};

struct tw__sesscache {
    pthread_mutex_t lock;
    size_t max_bytes, bytes, count;
    size_t hot, hot_max; /* hot entries, and how many may be */
    size_t nbuckets, npeers; /* the tables' sizes, powers of two */
    struct tw__cache_entry **buckets;
    tw__cache_peer **peers;
    struct tw__cache_entry *oldest, *newest;
    struct tw__cache_entry *hot_oldest, *hot_newest;
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
 * side.
 */
#define PEER_COST(der_len) (4096 + 4 * (size_t)(der_len))
/* A live session without a certificate: OpenSSL 3.0's SSL_SESSION is 928
 * bytes, its lock 56, then the SNI name (measured: docs/benchmarks.md). */
#define LIVE_COST(host_len) (1024 + (size_t)(host_len))
/* A block the cache allocates, with what the allocator adds to it. */
#define BLOCK_COST(len) ((size_t)(len) + 16)
/* The longest DER made on the way: without the certificate a session is
 * about 150 bytes with a short SNI name, at most about 600 (ids, master
 * key, times, SNI and ALPN at most 255 each); a longer one stays live. */
#define DER_MAX 2048
/* At most this share of the bound holds hot (live) sessions. */
#define HOT_SHARE 4
/* One bucket per 512 bytes of the bound for sessions (a compact one is
 * charged about 330), per 8 KiB for certificates (about 6 KiB each): the
 * chains stay one or two entries long when the cache is full. */
#define BYTES_PER_BUCKET 512
#define BYTES_PER_PEER_BUCKET 8192
#define BUCKETS_MIN 16
#define BUCKETS_MAX ((size_t)1 << 20)

/* What an empty cache holds: itself and its tables. */
static size_t fixed_bytes(const tw__sesscache *sc)
{
    return sizeof(*sc) + sc->nbuckets * sizeof(*sc->buckets) +
           sc->npeers * sizeof(*sc->peers);
}

static size_t bucket_of(size_t nbuckets, const unsigned char *id,
                        unsigned int id_len)
{
    size_t h = 0;

    memcpy(&h, id, id_len < sizeof(h) ? id_len : sizeof(h));
    return h & (nbuckets - 1);
}

/* A table's size for a bound: a power of two, one bucket per `per` bytes. */
static size_t table_size(size_t max_bytes, size_t per)
{
    size_t n = BUCKETS_MIN;

    while (n < BUCKETS_MAX && n < max_bytes / per)
        n *= 2;
    return n;
}

tw__sesscache *tw__sesscache_new(size_t max_bytes, tw_err *err)
{
    tw__sesscache *sc = twu_calloc(1, sizeof(*sc));

    if (sc == NULL)
        goto nomem;
    sc->max_bytes = max_bytes;
    sc->hot_max = max_bytes / HOT_SHARE /
                  (BLOCK_COST(sizeof(struct tw__cache_entry)) + LIVE_COST(0));
    if (sc->hot_max == 0)
        sc->hot_max = 1;
    sc->nbuckets = table_size(max_bytes, BYTES_PER_BUCKET);
    sc->npeers = table_size(max_bytes, BYTES_PER_PEER_BUCKET);
    sc->buckets = twu_calloc(sc->nbuckets, sizeof(*sc->buckets));
    sc->peers = twu_calloc(sc->npeers, sizeof(*sc->peers));
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
    OPENSSL_clear_free(e->der, e->der_len);
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
    pp = &sc->peers[bucket_of(sc->npeers, p->fp, sizeof(p->fp))];
    while (*pp != p)
        pp = &(*pp)->hnext;
    *pp = p->hnext;
    sc->bytes -= p->cost;
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

/* Take e off the hot list (lock held). */
static void unhot(tw__sesscache *sc, struct tw__cache_entry *e)
{
    if (!e->hot)
        return;
    if (e->hot_older != NULL)
        e->hot_older->hot_newer = e->hot_newer;
    else
        sc->hot_oldest = e->hot_newer;
    if (e->hot_newer != NULL)
        e->hot_newer->hot_older = e->hot_older;
    else
        sc->hot_newest = e->hot_older;
    e->hot_older = e->hot_newer = NULL;
    e->hot = 0;
    sc->hot--;
}

/* Put e at the hot list's newest end, or move it there (lock held). */
static void make_hot(tw__sesscache *sc, struct tw__cache_entry *e)
{
    unhot(sc, e);
    e->hot_older = sc->hot_newest;
    if (sc->hot_newest != NULL)
        sc->hot_newest->hot_newer = e;
    else
        sc->hot_oldest = e;
    sc->hot_newest = e;
    e->hot = 1;
    sc->hot++;
}

/* Charge e `cost` bytes from now on (lock held). */
static void set_cost(tw__sesscache *sc, struct tw__cache_entry *e, size_t cost)
{
    sc->bytes = sc->bytes - e->cost + cost;
    e->cost = cost;
}

/* What an entry costs with what it holds now: a compact one its DER, a live
 * one its session too (an owned one its certificate on top, added by the
 * caller). */
static size_t entry_cost(const struct tw__cache_entry *e)
{
    size_t cost = BLOCK_COST(sizeof(*e));
    const char *host;

    if (e->der != NULL)
        cost += BLOCK_COST(e->der_len);
    if (e->sess != NULL) {
        host = SSL_SESSION_get0_hostname(e->sess);
        cost += LIVE_COST(host != NULL ? strlen(host) : 0);
    }
    return cost;
}

/* Take e out of the table and the lists, onto d (lock held). */
static void unlink_entry(tw__sesscache *sc, struct tw__cache_entry *e,
                         struct dropped *d)
{
    struct tw__cache_entry **p =
        &sc->buckets[bucket_of(sc->nbuckets, e->id, e->id_len)];

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
    unhot(sc, e);
    disown(e);
    peer_release(sc, e->peer, d);
    e->hnext = d->entries;
    d->entries = e;
}

static struct tw__cache_entry *find(tw__sesscache *sc, const unsigned char *id,
                          unsigned int id_len)
{
    struct tw__cache_entry *e =
        sc->buckets[bucket_of(sc->nbuckets, id, id_len)];

    while (e != NULL && (e->id_len != id_len || memcmp(e->id, id, id_len) != 0))
        e = e->hnext;
    return e;
}

/* The table's certificate whose SHA-256 is fp (lock held).  The hash
 * stands for the certificate as it does in the verified-chain cache. */
static tw__cache_peer *find_peer(tw__sesscache *sc, const unsigned char fp[32])
{
    tw__cache_peer *p = sc->peers[bucket_of(sc->npeers, fp, 32)];

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
 * DER inside OpenSSL's SSL_SESSION_ASN1 sequence), in a block of its own
 * length (*len), or NULL when it does not fit DER_MAX or does not parse.
 */
static unsigned char *compact(SSL_SESSION *sess, unsigned short *len)
{
    unsigned char *der = NULL, *w, *out = NULL;
    unsigned char buf[DER_MAX];
    const unsigned char *p, *end, *elem;
    long elem_len, inner;
    int tag, xclass, n, der_len;
    size_t body = 0;

    if ((der_len = i2d_SSL_SESSION(sess, &der)) <= 0)
        return NULL;
    p = der;
    if (ASN1_get_object(&p, &inner, &tag, &xclass, der_len) !=
            V_ASN1_CONSTRUCTED ||
        tag != V_ASN1_SEQUENCE || xclass != V_ASN1_UNIVERSAL)
        goto done;
    end = p + inner;
    /* First the elements kept, after room for the longest header (4). */
    w = buf + 4;
    while (p < end) {
        elem = p;
        if (ASN1_get_object(&p, &elem_len, &tag, &xclass, end - p) & 0x80)
            goto done;
        p += elem_len;
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
    if (n <= 0 || n > 4 || (out = twu_malloc((size_t)n + body)) == NULL)
        goto done;
    w = buf + 4 - n;
    ASN1_put_object(&w, 1, (int)body, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(out, buf + 4 - n, (size_t)n + body);
    *len = (unsigned short)((size_t)n + body);
done:
    OPENSSL_cleanse(buf, sizeof(buf));
    OPENSSL_clear_free(der, (size_t)der_len);
    return out;
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
 * (then NULL) and charged when it is not there (lock held). */
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
    p->cost = BLOCK_COST(sizeof(*p)) + PEER_COST(i2d_X509(cert, NULL));
    b = bucket_of(sc->npeers, f->fp, sizeof(f->fp));
    p->hnext = sc->peers[b];
    sc->peers[b] = p;
    sc->bytes += p->cost;
    return p;
}

/* The hot sessions beyond hot_max become compact again, least recently
 * used first, their DER made outside the lock.  A few per call: each
 * caller added at most one. */
static void cool(tw__sesscache *sc)
{
    for (int round = 0; round < 4; round++) {
        struct dropped d = {NULL, NULL};
        struct tw__cache_entry *e;
        SSL_SESSION *live, *drop = NULL;
        unsigned char *der = NULL, id[SSL_MAX_SSL_SESSION_ID_LENGTH];
        unsigned short der_len = 0;
        unsigned int id_len;

        pthread_mutex_lock(&sc->lock);
        if (sc->hot <= sc->hot_max) {
            pthread_mutex_unlock(&sc->lock);
            return;
        }
        e = sc->hot_oldest;
        unhot(sc, e);
        live = e->sess;
        if (e->der != NULL) { /* parsed from it: dropping it is enough */
            e->sess = NULL;
            set_cost(sc, e, entry_cost(e));
            pthread_mutex_unlock(&sc->lock);
            SSL_SESSION_free(live);
            continue;
        }
        SSL_SESSION_up_ref(live);
        id_len = e->id_len;
        memcpy(id, e->id, id_len);
        pthread_mutex_unlock(&sc->lock);
        der = compact(live, &der_len);
        pthread_mutex_lock(&sc->lock);
        if (der != NULL && (e = find(sc, id, id_len)) != NULL &&
            e->sess == live && e->der == NULL && !e->hot && e->owner == NULL) {
            e->der = der;
            e->der_len = der_len;
            e->sess = NULL;
            der = NULL;
            drop = live; /* the cache's reference */
            set_cost(sc, e, entry_cost(e));
        }
        make_room(sc, 0, time(NULL), &d);
        pthread_mutex_unlock(&sc->lock);
        free_dropped(&d);
        OPENSSL_clear_free(der, der_len);
        SSL_SESSION_free(drop);
        SSL_SESSION_free(live);
    }
}

/*
 * SSL_CTX_sess_set_new_cb: a full handshake (TLS 1.2) or a ticket (TLS
 * 1.3) made a session.  Returns 1: the cache keeps OpenSSL's reference.
 * A full handshake's session is the connection's own (OpenSSL hands the
 * first TLS 1.3 ticket's session over as it is), with the certificate
 * parsed from the client: the entry is owned by the connection until it
 * closes.  A ticket of a resumed TLS 1.3 connection comes from the resumed
 * session, already without a certificate (its certificate is the one this
 * cache lent): hot, since that client is likely to offer it next.
 */
static int new_cb(SSL *ssl, SSL_SESSION *sess)
{
    tw__sesscache *sc = cache_of_ctx(SSL_get_SSL_CTX(ssl));
    tw_conn *c = SSL_get_ex_data(ssl, tw__ssl_conn_index());
    struct dropped d = {NULL, NULL};
    struct tw__cache_entry *e, *old;
    tw__cache_peer *lent = NULL;
    const unsigned char *id;
    unsigned int id_len;
    X509 *cert = SSL_SESSION_get0_peer(sess);
    size_t bucket;

    id = SSL_SESSION_get_id(sess, &id_len);
    if (sc == NULL || c == NULL || id_len == 0 || id_len > sizeof(e->id) ||
        (e = twu_calloc(1, sizeof(*e))) == NULL)
        return 0; /* out of memory: not resumable */
    if (cert == NULL && SSL_session_reused(ssl))
        lent = c->resumed; /* in the table while c holds it */
    e->sess = sess;
    e->once = SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION;
    e->cost = entry_cost(e);
    if (cert != NULL) /* the connection's, charged as if it were e's */
        e->cost += PEER_COST(i2d_X509(cert, NULL));
    if (fixed_bytes(sc) + e->cost > sc->max_bytes) {
        twu_free(e);
        return 0; /* never fits */
    }
    e->id_len = (unsigned char)id_len;
    memcpy(e->id, id, id_len);
    e->expires = (time_t)SSL_SESSION_get_time(sess) +
                 (time_t)SSL_SESSION_get_timeout(sess);
    bucket = bucket_of(sc->nbuckets, id, id_len);
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
    } else {
        make_hot(sc, e);
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
    if (cert == NULL)
        cool(sc);
    return 1;
}

/* Tickets a handshake makes at most (--tickets is 0 to 8), and one more. */
#define OWNED_MAX 9

/*
 * c is closing: its entries become compact (their DER without the
 * certificate), and the certificate goes to the table (once per client).
 * Made outside the lock: about 65,000 instructions (the certificate's
 * SHA-256 and the session's DER); an entry that changed meanwhile (used,
 * dropped) is left as it is.  The certificate c borrowed goes back.
 */
void tw__sesscache_conn_closed(tw_conn *c)
{
    tw__sesscache *sc = cache_of_ctx(SSL_get_SSL_CTX(c->ssl));
    struct {
        SSL_SESSION *live;
        unsigned char *der;
        unsigned short der_len;
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
        pending[i].der = NULL;
        pending[i].der_len = 0;
        if (cert != NULL && facts_of(cert, &pending[i].f) &&
            (pending[i].fresh = twu_calloc(1, sizeof(*pending[i].fresh))) !=
                NULL)
            pending[i].der = compact(pending[i].live, &pending[i].der_len);
    }
    pthread_mutex_lock(&sc->lock);
    for (size_t i = 0; i < n; i++) {
        if (pending[i].der == NULL ||
            (e = find(sc, pending[i].id, pending[i].id_len)) == NULL ||
            e->sess != pending[i].live || e->peer != NULL || e->der != NULL)
            continue;
        e->peer = peer_get(sc, SSL_SESSION_get0_peer(pending[i].live), chain,
                           &pending[i].f, &pending[i].fresh);
        e->der = pending[i].der;
        e->der_len = pending[i].der_len;
        e->sess = NULL;
        pending[i].der = NULL;
        set_cost(sc, e, entry_cost(e));
        SSL_SESSION_free(pending[i].live); /* the cache's reference */
    }
    make_room(sc, 0, time(NULL), &d);
    pthread_mutex_unlock(&sc->lock);
    free_dropped(&d);
    for (size_t i = 0; i < n; i++) {
        OPENSSL_clear_free(pending[i].der, pending[i].der_len);
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

/* A compact entry's session, parsed outside the lock; a TLS 1.2 one is kept
 * parsed (hot) for the next resumption, when the entry is still compact.
 * (A TLS 1.3 ticket is used once: OpenSSL removes it, remove_cb.) */
static SSL_SESSION *parse(tw__sesscache *sc, const unsigned char *der,
                          unsigned short der_len, const unsigned char *id,
                          unsigned int id_len, const unsigned char *was)
{
    const unsigned char *p = der;
    SSL_SESSION *sess = d2i_SSL_SESSION(NULL, &p, der_len);
    struct tw__cache_entry *e;
    struct dropped d = {NULL, NULL};
    int kept = 0;

    if (sess == NULL ||
        SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION)
        return sess;
    pthread_mutex_lock(&sc->lock);
    if ((e = find(sc, id, id_len)) != NULL && e->der == was &&
        e->sess == NULL && SSL_SESSION_up_ref(sess) == 1) {
        e->sess = sess;
        set_cost(sc, e, entry_cost(e));
        make_hot(sc, e);
        make_room(sc, 0, time(NULL), &d);
        kept = 1;
    }
    pthread_mutex_unlock(&sc->lock);
    free_dropped(&d);
    if (kept)
        cool(sc);
    return sess;
}

/* SSL_CTX_sess_set_get_cb: a client offers a session id (TLS 1.2) or a
 * stateful ticket (TLS 1.3).  Expired sessions are dropped first, so one
 * is never handed out; a ticket leaves the cache as it is handed out. */
static SSL_SESSION *get_cb(SSL *ssl, const unsigned char *id, int id_len,
                           int *copy)
{
    tw__sesscache *sc = cache_of_ctx(SSL_get_SSL_CTX(ssl));
    tw_conn *c = SSL_get_ex_data(ssl, tw__ssl_conn_index());
    struct dropped d = {NULL, NULL};
    struct tw__cache_entry *e;
    SSL_SESSION *sess = NULL;
    unsigned char der[DER_MAX];
    const unsigned char *was = NULL;
    unsigned short der_len = 0;

    *copy = 0; /* the reference we return is the caller's */
    if (sc == NULL || c == NULL || id_len <= 0 ||
        (size_t)id_len > sizeof(e->id))
        return NULL;
    pthread_mutex_lock(&sc->lock);
    make_room(sc, 0, time(NULL), &d); /* expired ones only */
    if ((e = find(sc, id, (unsigned int)id_len)) != NULL) {
        if (e->sess != NULL && SSL_SESSION_up_ref(e->sess) == 1) {
            sess = e->sess;
            if (e->hot)
                make_hot(sc, e); /* the most recently used */
            lend_peer(sc, c, e->peer, &d);
        } else if (e->sess == NULL && e->der_len <= sizeof(der)) {
            memcpy(der, e->der, e->der_len);
            der_len = e->der_len;
            was = e->der;
            lend_peer(sc, c, e->peer, &d);
        }
        /* A TLS 1.3 ticket is used once (RFC 8446 section 8.1): the
         * connection that resumes it gets a new one to offer next time. */
        if (e->once && (sess != NULL || was != NULL))
            unlink_entry(sc, e, &d);
    }
    pthread_mutex_unlock(&sc->lock);
    free_dropped(&d);
    if (was != NULL) {
        sess = parse(sc, der, der_len, id, (unsigned int)id_len, was);
        OPENSSL_cleanse(der, der_len);
    }
    return sess;
}

/* SSL_CTX_sess_set_remove_cb: OpenSSL gives a session up (a fatal alert on
 * its connection, or it found it timed out). */
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
