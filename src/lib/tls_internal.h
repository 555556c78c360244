/*
 * tls_internal.h - configs, generations, servers, clients and connections.
 *
 * A generation is everything read from a config's files at one moment: the
 * SSL_CTX (own certificate and key, trust store with CRL), the policy and
 * the ticket keys.  Servers hand out the current generation to each new
 * connection (reference counted); a reload builds a new one and swaps it
 * in, so connections keep the generation they started with.
 */
#ifndef TW_TLS_INTERNAL_H
#define TW_TLS_INTERNAL_H

#include "tw_internal.h"

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>

/* The server's session cache: default and smallest size, in bytes. */
#define TW__SESSION_CACHE_DEFAULT ((size_t)10 * 1024 * 1024)
#define TW__SESSION_CACHE_MIN 16384

struct tw_config {
    char *ca_file, *crl_file, *cert_file, *key_file;
    char *policy_file, *ticket_keys_file;
    char **rules, **expectations;
    size_t nrules, nexpectations;
    int min_version, max_version, tickets;
    int client_cert; /* TW_CLIENT_CERT_REQUIRED or _OPTIONAL */
    size_t session_cache_bytes; /* 0: no session cache */
    struct tw__ticket_key *ticket_keys; /* from memory; NULL: none */
    size_t nticket_keys;
    unsigned char (*revoked)[32]; /* SHA-256 fingerprints, as added */
    size_t nrevoked;
    tw_err err;
};

/* A session ticket key (RFC 5077 section 4's recommended layout). */
typedef struct tw__ticket_key {
    unsigned char name[16], aes[32], hmac[32];
} tw__ticket_key;

#define TW__TICKET_KEYS_MAX 16

/* vcache.c: verified client chains, per generation (see there). */
#define TW__VCACHE_SLOTS 4096
#define TW__VCACHE_LOCKS 64
typedef struct tw__vcache {
    struct {
        unsigned char fp[32]; /* SHA-256 of the client certificate */
        time_t from, until;   /* when the verification holds */
    } slots[TW__VCACHE_SLOTS];
    pthread_mutex_t locks[TW__VCACHE_LOCKS];
} tw__vcache;
void tw__vcache_init(tw__vcache *vc);
void tw__vcache_destroy(tw__vcache *vc);
int tw__vcache_verify(X509_STORE_CTX *xs, void *arg);

/* sesscache.c: the server's session cache, bounded in bytes (see there). */
typedef struct tw__sesscache tw__sesscache;
/* A client's certificate, kept once for all its sessions in the cache and
 * lent to the connections that resume one. */
typedef struct tw__cache_peer {
    struct tw__cache_peer *hnext; /* the table's chain, then the list to free */
    X509 *cert;                   /* a reference */
    STACK_OF(X509) *chain;        /* what else the client sent; may be NULL */
    size_t refs;                  /* entries and connections (cache lock) */
    size_t cost;                  /* bytes charged to the cache, once */
    time_t not_after;             /* the certificate's, read once */
    unsigned char fp[32];         /* its SHA-256 */
} tw__cache_peer;
tw__sesscache *tw__sesscache_new(size_t max_bytes, tw_err *err);
void tw__sesscache_free(tw__sesscache *sc);
/* Make ctx keep its sessions in the cache of its generation (ex-data). */
void tw__sesscache_install(SSL_CTX *ctx);
/* A server connection is being freed: the sessions it made, which share
 * its certificate while it is open, are kept without it from now on. */
void tw__sesscache_conn_closed(tw_conn *c);
/* Bytes held (entries, bookkeeping and the table) and sessions held, after
 * dropping the expired ones. */
void tw__sesscache_stats(tw__sesscache *sc, size_t *bytes, size_t *count);

typedef struct tw__gen {
    atomic_int refs;
    unsigned id;
    int is_server;
    int client_cert_optional; /* servers: TW_CLIENT_CERT_OPTIONAL */
    int client_purpose;       /* servers: X509_PURPOSE_SSL_CLIENT, or _ANY */
    SSL_CTX *ctx;
    tw_trust *trust;
    unsigned char trust_id[8]; /* hash of the CA file: sessions made under
                                  other anchors are not resumed */
    tw_policy *policy;      /* NULL: none configured */
    tw_policy *expect;      /* client: expectations; NULL when none */
    tw__ticket_key keys[TW__TICKET_KEYS_MAX];
    size_t nkeys;
    time_t cert_not_after;
    time_t crl_next_update; /* the earliest of the CRLs'; 0: no CRL */
    unsigned char (*revoked)[32]; /* revoked beyond the CRL, sorted */
    size_t nrevoked;
    tw__vcache *vcache;     /* servers only; NULL for clients */
    tw__sesscache *sesscache; /* servers with a session cache, else NULL */
} tw__gen;

/* Build a generation from cfg.  `keys`/`nkeys`: ticket keys to use when the
 * config names no file (a server's random key). */
tw__gen *tw__gen_new(const tw_config *cfg, int is_server,
                     const tw__ticket_key *keys, size_t nkeys, tw_err *err);
tw__gen *tw__gen_ref(tw__gen *g);
void tw__gen_unref(tw__gen *g);
/* For resumptions, which skip the chain check: whether `cert` is on its
 * issuer's CRL in g, and whether its issuer's CRL is past its nextUpdate
 * (a full handshake would refuse it for that: crl_unusable). */
int tw__gen_revoked(const tw__gen *g, X509 *cert);
int tw__gen_crl_stale(const tw__gen *g, X509 *cert);
/* Whether the certificate of SHA-256 `fp` was revoked beyond the CRL
 * (tw_config_add_revoked_fingerprint). */
int tw__gen_revoked_fp(const tw__gen *g, const unsigned char fp[32]);

/* ticket.c */
int tw__ticket_keys_load(const char *path, tw__ticket_key *keys,
                         size_t *nkeys, tw_err *err);
int tw__ticket_keys_random(tw__ticket_key *key, tw_err *err);
/* Install the ticket key callback and the resumption check on ctx. */
int tw__ticket_install(SSL_CTX *ctx, tw_err *err);
/* Install only the check made when a ticket is made (the session cache's
 * TLS 1.3 stateful tickets). */
int tw__ticket_check_install(SSL_CTX *ctx, tw_err *err);

/* Ex-data slots: the generation on an SSL_CTX, the connection on an SSL. */
int tw__ctx_gen_index(void);
int tw__ssl_conn_index(void);

struct tw_conn {
    SSL *ssl;
    tw__gen *gen;
    tw_identity *peer;
    int is_server, done;
    int cert_optional; /* a server connection with TW_CLIENT_CERT_OPTIONAL */
    /* The first verification failure seen in the handshake (or, in
     * OPTIONAL mode, by a resumption check or tw_conn_refresh): with a
     * certificate presented, the peer is verified exactly when this is 0. */
    int verify_error, verify_depth;
    X509 *verify_cert;
    /* A session resumed from the server's cache carries no certificate
     * inside OpenSSL (sesscache.c): the cache lends the one it keeps for
     * the client.  Used only when the handshake did resume
     * (tw__conn_peer_cert).  It and the cache's entries this connection
     * made are under the cache's lock. */
    struct tw__cache_peer *resumed;
    struct tw__cache_entry *cache_entries;
    int expectation_failed;
    int plain_http; /* server: the first bytes read were plain HTTP */
    char *host;
    struct tw_client *client; /* client connections: where sessions go */
    struct tw_server *server; /* server connections: for tw_conn_refresh */
    tw_err *err; /* allocated on the first failure: idle connections are
                    the common case and need no 768-byte sentence */
};

/* server.c: the current generation (a new reference) and its id (no lock). */
tw__gen *tw__server_current(struct tw_server *srv);
unsigned tw__server_current_id(const struct tw_server *srv);

struct tw_client {
    pthread_mutex_t lock;
    tw__gen *gen;
    SSL_SESSION *session; /* the newest session, offered for resumption */
};

/* conn.c: the peer's certificate (OpenSSL's, or the one the session cache
 * lent a resumed connection), not a new reference; NULL when none. */
X509 *tw__conn_peer_cert(const tw_conn *c);
/* The other certificates the peer sent with it (not a new reference). */
STACK_OF(X509) *tw__conn_peer_chain(const tw_conn *c);
/* conn.c: where a connection's failure is written. */
tw_err *tw__conn_errbuf(tw_conn *c);
tw_conn *tw__conn_new(tw__gen *g, int fd, int is_server, const char *host,
                      tw_err *err);

/* verify.c: the SSL verify callback (records the failure on the conn,
 * checks client expectations at depth 0). */
int tw__verify_cb(int preverify_ok, X509_STORE_CTX *store);
/* The leaf was revoked beyond the CRL (tw_config_add_revoked_fingerprint):
 * record it through tw__verify_cb as a CRL entry would be, on the leaf at
 * depth 0 (certificate_revoked).  Returns 0, the verification's outcome. */
int tw__verify_revoked(X509_STORE_CTX *store, X509 *leaf);
/* Fill err (may be NULL) with the refusal of the recorded verification
 * failure (c->verify_error), as a failed handshake states it; -1. */
int tw__conn_explain_failure(const tw_conn *c, tw_err *err);
/* Called by the server's verification (vcache.c) when a client chain
 * failed: 1 to go on with the handshake (TW_CLIENT_CERT_OPTIONAL, failure
 * recorded on the connection), 0 to fail it. */
int tw__verify_let_through(X509_STORE_CTX *store);
/* ticket.c: make the session of ssl's handshake one that is never resumed
 * (OPTIONAL mode, a peer that is not verified: ticket.c says why). */
void tw__session_unresumable(SSL *ssl);
/* Fill c->err from a failed handshake/read/write (`ret` from SSL_*). */
int tw__conn_fail(tw_conn *c, int ret, const char *what);


#endif
