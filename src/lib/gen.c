/*
 * gen.c - generations: an SSL_CTX and everything read with it.
 *
 * The TLS settings are the strict ones of twoway: TLS 1.2 minimum, 1.3
 * preferred, security level 2 (RFC 9325's recommendations), ECDHE with AEAD
 * ciphers only, no renegotiation (RFC 9325 section 3.5), no compression
 * (section 3.3), and a peer certificate required and verified (or, on a
 * server with TW_CLIENT_CERT_OPTIONAL, asked for and verified when given:
 * each request decides, tw_conn_peer_verified).
 */
#include "tls_internal.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* TLS 1.2 suites: forward secrecy and AEAD only. */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"
#define GROUPS "X25519:P-256:P-384"
/*
 * Signature algorithms, offered (ClientHello, CertificateRequest) and
 * accepted: SHA-256 or stronger with ECDSA, Ed25519, RSA-PSS and RSA
 * PKCS#1 v1.5; no SHA-1 (RFC 9155 deprecates it in TLS 1.2), no SHA-224
 * (below 128-bit security for the hash, RFC 9325 section 4.1), no DSA (RFC
 * 8446 section 4.2.3 dropped it).  One list serves both versions: OpenSSL
 * never signs a TLS 1.3 handshake with PKCS#1 v1.5 (RFC 8446 section 4.2.3
 * allows it for certificates only), yet offers it, so that certificates
 * signed sha256WithRSAEncryption (the seed's, X.509 v1) are still accepted.
 */
#define SIGALGS                                                               \
    "ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512:ed25519:"                         \
    "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:"            \
    "rsa_pss_pss_sha256:rsa_pss_pss_sha384:rsa_pss_pss_sha512:"               \
    "RSA+SHA256:RSA+SHA384:RSA+SHA512"
/* Server sessions: lifetime (seconds). */
#define SESSION_TIMEOUT 3600

static pthread_once_t index_once = PTHREAD_ONCE_INIT;
static int ctx_gen_index = -1, ssl_conn_index = -1;

static void make_indexes(void)
{
    ctx_gen_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    ssl_conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

int tw__ctx_gen_index(void)
{
    pthread_once(&index_once, make_indexes);
    return ctx_gen_index;
}

int tw__ssl_conn_index(void)
{
    pthread_once(&index_once, make_indexes);
    return ssl_conn_index;
}

tw__gen *tw__gen_ref(tw__gen *g)
{
    atomic_fetch_add(&g->refs, 1);
    return g;
}

void tw__gen_unref(tw__gen *g)
{
    if (g == NULL || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    SSL_CTX_free(g->ctx);
    tw__sesscache_free(g->sesscache); /* after the SSL_CTX that used it */
    tw_trust_free(g->trust);
    tw_policy_free(g->policy);
    tw_policy_free(g->expect);
    if (g->vcache != NULL) {
        tw__vcache_destroy(g->vcache);
        twu_free(g->vcache);
    }
    OPENSSL_cleanse(g->keys, sizeof(g->keys));
    twu_free(g->revoked);
    twu_free(g);
}

static int load_policy(tw__gen *g, const tw_config *cfg, tw_err *err)
{
    if (cfg->policy_file == NULL && cfg->nrules == 0 &&
        cfg->nexpectations == 0)
        return 0;
    if (cfg->policy_file != NULL || cfg->nrules > 0) {
        if ((g->policy = tw_policy_new(err)) == NULL)
            return -1;
        if (cfg->policy_file != NULL &&
            tw_policy_load_file(g->policy, cfg->policy_file, err) < 0)
            return -1;
        for (size_t i = 0; i < cfg->nrules; i++)
            if (tw_policy_add_rule(g->policy, cfg->rules[i], err) < 0)
                return -1;
    }
    if (cfg->nexpectations > 0) {
        if ((g->expect = tw_policy_new(err)) == NULL)
            return -1;
        for (size_t i = 0; i < cfg->nexpectations; i++)
            if (tw_policy_add_expectation(g->expect, cfg->expectations[i],
                                          err) < 0)
                return -1;
    }
    return 0;
}

/* The trust anchors' identity (for tickets), the CRL, and the CA names
 * sent in CertificateRequest so clients pick the right certificate. */
static int use_trust(tw__gen *g, tw_err *err)
{
    STACK_OF(X509) *cas = tw__trust_cas(g->trust);
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    STACK_OF(X509_OBJECT) *objs;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char digest[EVP_MAX_MD_SIZE];
    int ok = names != NULL && md != NULL &&
             EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;

    for (int i = 0; ok && i < sk_X509_num(cas); i++) {
        X509 *ca = sk_X509_value(cas, i);
        unsigned char *der = NULL;
        int len = i2d_X509(ca, &der);
        X509_NAME *name = X509_NAME_dup(X509_get_subject_name(ca));

        ok = len > 0 && EVP_DigestUpdate(md, der, (size_t)len) == 1 &&
             name != NULL && sk_X509_NAME_push(names, name) > 0;
        if (!ok)
            X509_NAME_free(name);
        OPENSSL_free(der);
    }
    ok = ok && EVP_DigestFinal_ex(md, digest, NULL) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return twu_err_ssl(err, TW_ERR_INTERNAL, "cannot use the CA file");
    }
    memcpy(g->trust_id, digest, sizeof(g->trust_id));
    if (g->is_server)
        SSL_CTX_set_client_CA_list(g->ctx, names);
    else
        sk_X509_NAME_pop_free(names, X509_NAME_free);
    SSL_CTX_set1_cert_store(g->ctx, tw__trust_store(g->trust));
    objs = X509_STORE_get0_objects(tw__trust_store(g->trust));
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));
        const ASN1_TIME *next;
        struct tm tm;
        time_t t;

        if (crl == NULL)
            continue;
        next = X509_CRL_get0_nextUpdate(crl);
        if (next == NULL || ASN1_TIME_to_tm(next, &tm) != 1)
            continue;
        t = timegm(&tm);
        if (g->crl_next_update == 0 || t < g->crl_next_update)
            g->crl_next_update = t; /* the earliest of the CRLs */
    }
    return 0;
}

/* The CRL of cert's issuer in g, or NULL.  The store is complete when the
 * generation is built and never changes after: read without a lock. */
static X509_CRL *issuer_crl(const tw__gen *g, X509 *cert)
{
    STACK_OF(X509_OBJECT) *objs =
        X509_STORE_get0_objects(tw__trust_store(g->trust));

    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));

        if (crl != NULL && X509_NAME_cmp(X509_CRL_get_issuer(crl),
                                         X509_get_issuer_name(cert)) == 0)
            return crl; /* one per CA: tw_trust_load refuses two */
    }
    return NULL;
}

static int fp_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

int tw__gen_revoked_fp(const tw__gen *g, const unsigned char fp[32])
{
    return g->nrevoked > 0 &&
           bsearch(fp, g->revoked, g->nrevoked, 32, fp_cmp) != NULL;
}

int tw__gen_revoked(const tw__gen *g, X509 *cert)
{
    X509_CRL *crl = issuer_crl(g, cert);
    X509_REVOKED *rev = NULL;
    unsigned char fp[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (crl != NULL && X509_CRL_get0_by_cert(crl, &rev, cert) == 1)
        return 1;
    return g->nrevoked > 0 && X509_digest(cert, EVP_sha256(), fp, &len) == 1 &&
           len == 32 && tw__gen_revoked_fp(g, fp);
}

/* The fingerprints revoked beyond the CRL, sorted for bsearch. */
static int copy_revoked(tw__gen *g, const tw_config *cfg, tw_err *err)
{
    if (cfg->nrevoked == 0)
        return 0;
    if ((g->revoked = twu_malloc(cfg->nrevoked * 32)) == NULL)
        return twu_err_nomem(err);
    memcpy(g->revoked, cfg->revoked, cfg->nrevoked * 32);
    g->nrevoked = cfg->nrevoked;
    qsort(g->revoked, g->nrevoked, 32, fp_cmp);
    return 0;
}

int tw__gen_crl_stale(const tw__gen *g, X509 *cert)
{
    X509_CRL *crl = issuer_crl(g, cert);

    return crl != NULL && X509_CRL_get0_nextUpdate(crl) != NULL &&
           X509_cmp_current_time(X509_CRL_get0_nextUpdate(crl)) <= 0;
}

static int use_keypair(tw__gen *g, const tw_config *cfg, tw_err *err)
{
    tw_key *key;
    X509 *leaf;
    struct tm tm;
    int ok;

    if (cfg->cert_file == NULL)
        return g->is_server ? twu_err(err, TW_ERR_USAGE,
                                      "a server needs a certificate and key")
                            : 0;
    if (SSL_CTX_use_certificate_chain_file(g->ctx, cfg->cert_file) != 1) {
        /* Read it again to say why (a private key given as the
         * certificate, a missing file, garbage). */
        tw_cert *cert = tw_cert_load_file(cfg->cert_file, err);

        if (cert == NULL) {
            ERR_clear_error();
            return -1;
        }
        tw_cert_free(cert);
        return twu_err_ssl(err, TW_ERR_INPUT,
                           "cannot use the certificate %s (garbage or "
                           "truncated PEM?)", cfg->cert_file);
    }
    if ((key = tw_key_load_file(cfg->key_file, NULL, err)) == NULL)
        return -1;
    ok = SSL_CTX_use_PrivateKey(g->ctx, key->pkey) == 1 &&
         SSL_CTX_check_private_key(g->ctx) == 1;
    tw_key_free(key);
    if (!ok) {
        ERR_clear_error();
        return twu_err(err, TW_ERR_INPUT,
                       "the key %s does not belong to the certificate %s: "
                       "give the key that was made with it", cfg->key_file,
                       cfg->cert_file);
    }
    leaf = SSL_CTX_get0_certificate(g->ctx);
    if (leaf != NULL && ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm) == 1)
        g->cert_not_after = timegm(&tm);
    return 0;
}

static int set_tls_options(tw__gen *g, const tw_config *cfg, tw_err *err)
{
    SSL_CTX *ctx = g->ctx;
    int mode = SSL_VERIFY_PEER;

    SSL_CTX_set_security_level(ctx, 2);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* NO_AUTO_CHAIN: send the chain from the certificate file as it is,
     * instead of rebuilding it from the trust store on every handshake. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
                              SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_NO_AUTO_CHAIN);
    /* Read whole records (and what follows) in one read(2), not the
     * 5-byte header and then the body: half the system calls per request.
     * Callers read until TW_WANT_READ or ask tw_conn_pending() before
     * waiting on the socket, since a record may sit in our buffer. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_set_min_proto_version(ctx, cfg->min_version) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, cfg->max_version) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set1_groups_list(ctx, GROUPS) != 1 ||
        SSL_CTX_set1_sigalgs_list(ctx, SIGALGS) != 1 ||
        SSL_CTX_set1_client_sigalgs_list(ctx, SIGALGS) != 1)
        return twu_err_ssl(err, TW_ERR_INTERNAL, "cannot set TLS parameters");
    /* OPTIONAL: the server still sends CertificateRequest (VERIFY_PEER)
     * and verifies what comes; a missing certificate is let through here,
     * a failed one by the verification callback (tw__vcache_verify). */
    if (!g->client_cert_optional)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    if (g->is_server) {
        mode |= SSL_VERIFY_CLIENT_ONCE;
        SSL_CTX_set_purpose(ctx, g->client_purpose);
        /* Required when peers are verified and sessions resumed. */
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"twoway", 6);
        int shared_keys = cfg->ticket_keys_file != NULL ||
                          cfg->nticket_keys > 0;

        if (cfg->tickets == 0 || (cfg->session_cache_bytes == 0 &&
                                  !shared_keys)) {
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
            SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
            SSL_CTX_set_num_tickets(ctx, 0);
        } else if (shared_keys) {
            /* Stateless tickets, so that instances sharing the keys resume
             * each other's sessions; the ticket callback checks each one
             * against the current CRL, expiry and trust anchors. */
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
            SSL_CTX_set_num_tickets(ctx, (size_t)cfg->tickets);
            if (tw__ticket_install(ctx, err) < 0)
                return -1;
        } else {
            /* A session cache bounded in bytes (sesscache.c says why it
             * keeps live sessions): resuming finds the session by id (TLS
             * 1.2) or stateful ticket (TLS 1.3) instead of decrypting and
             * parsing a ticket.  The cache belongs to this generation, so
             * a reload starts it empty: no session outlives a CRL or CA
             * change.  Expiry is checked on each resumption, there and in
             * tw_conn_handshake. */
            if ((g->sesscache = tw__sesscache_new(cfg->session_cache_bytes,
                                                  err)) == NULL)
                return -1;
            tw__sesscache_install(ctx);
            /* TLS 1.3 stateful tickets: what makes one checks that the
             * peer is verified (ticket.c, OPTIONAL mode). */
            if (tw__ticket_check_install(ctx, err) < 0)
                return -1;
            /* A client that closes without close_notify (many do) would
             * otherwise count as a fatal error and lose its session.
             * Requests are framed by HTTP, so an early EOF truncates
             * nothing the server acts on. */
            SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
            SSL_CTX_set_timeout(ctx, SESSION_TIMEOUT);
            SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
            SSL_CTX_set_num_tickets(ctx, (size_t)cfg->tickets);
        }
    } else {
        SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                                SSL_SESS_CACHE_NO_INTERNAL_STORE);
    }
    SSL_CTX_set_verify(ctx, mode, tw__verify_cb);
    return 0;
}

tw__gen *tw__gen_new(const tw_config *cfg, int is_server,
                     const tw__ticket_key *keys, size_t nkeys, tw_err *err)
{
    tw__gen *g = twu_calloc(1, sizeof(*g));

    if (g == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    atomic_init(&g->refs, 1);
    g->is_server = is_server;
    g->client_cert_optional =
        is_server && (cfg->client_cert & ~TW_CLIENT_CERT_ANY_PURPOSE) ==
                         TW_CLIENT_CERT_OPTIONAL;
    g->client_purpose = is_server && (cfg->client_cert & TW_CLIENT_CERT_ANY_PURPOSE)
                            ? X509_PURPOSE_ANY : X509_PURPOSE_SSL_CLIENT;
    if (cfg->ca_file == NULL) {
        twu_err(err, TW_ERR_USAGE, "no CA file given: peers cannot be verified");
        goto err;
    }
    g->ctx = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
    if (g->ctx == NULL) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot create a TLS context");
        goto err;
    }
    if (SSL_CTX_set_ex_data(g->ctx, tw__ctx_gen_index(), g) != 1 ||
        set_tls_options(g, cfg, err) < 0 || use_keypair(g, cfg, err) < 0 ||
        (g->trust = tw_trust_load(cfg->ca_file, cfg->crl_file, err)) == NULL ||
        use_trust(g, err) < 0 || load_policy(g, cfg, err) < 0 ||
        copy_revoked(g, cfg, err) < 0)
        goto err;
    if (is_server) {
        /* Verified client chains, remembered for this generation only. */
        if ((g->vcache = twu_malloc(sizeof(*g->vcache))) == NULL) {
            twu_err_nomem(err);
            goto err;
        }
        tw__vcache_init(g->vcache);
        SSL_CTX_set_cert_verify_callback(g->ctx, tw__vcache_verify, g);
    }
    if (is_server && cfg->ticket_keys_file != NULL) {
        if (tw__ticket_keys_load(cfg->ticket_keys_file, g->keys, &g->nkeys,
                                 err) < 0)
            goto err;
    } else if (is_server && cfg->nticket_keys > 0) {
        memcpy(g->keys, cfg->ticket_keys,
               cfg->nticket_keys * sizeof(*cfg->ticket_keys));
        g->nkeys = cfg->nticket_keys;
    } else if (is_server) {
        memcpy(g->keys, keys, nkeys * sizeof(*keys));
        g->nkeys = nkeys;
    }
    ERR_clear_error();
    return g;
err:
    ERR_clear_error();
    tw__gen_unref(g);
    return NULL;
}
