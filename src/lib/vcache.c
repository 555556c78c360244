/*
 * vcache.c - the server's cache of verified client chains.
 *
 * Verifying a client's chain (signature of each certificate by its issuer,
 * purpose, CRL lookup) costs about as much as a signature check on every
 * full handshake, for the same few client certificates again and again.
 * A generation remembers, by the SHA-256 of the certificate, that its chain
 * verified, until the earliest of: the chain's first notAfter and the CRL's
 * nextUpdate.  What the cache never skips: the CertificateVerify signature
 * (proof of the private key, checked by TLS on every handshake), the
 * validity dates (checked against the clock on every hit), and anything a
 * reload changes (CA, CRL, policy: a reload makes a new generation, with an
 * empty cache).  Failures are never cached: only a chain X509_verify_cert
 * passed with no error left in its context, so a verification a callback
 * let through is not remembered as one that passed.  With
 * TW_CLIENT_CERT_OPTIONAL a failure does not end the handshake (verify.c
 * records it and the peer stays unverified), and the next handshake with
 * the same certificate verifies again.
 */
#include "tls_internal.h"

#include <openssl/x509_vfy.h>

#include <string.h>

static size_t slot_of(const unsigned char fp[32])
{
    size_t h;

    memcpy(&h, fp, sizeof(h));
    return h % TW__VCACHE_SLOTS;
}

static time_t asn1_time_t(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

void tw__vcache_init(tw__vcache *vc)
{
    memset(vc->slots, 0, sizeof(vc->slots));
    for (int i = 0; i < TW__VCACHE_LOCKS; i++)
        pthread_mutex_init(&vc->locks[i], NULL);
}

void tw__vcache_destroy(tw__vcache *vc)
{
    for (int i = 0; i < TW__VCACHE_LOCKS; i++)
        pthread_mutex_destroy(&vc->locks[i]);
}

static int lookup(tw__vcache *vc, const unsigned char fp[32], time_t now)
{
    size_t s = slot_of(fp);
    pthread_mutex_t *lock = &vc->locks[s % TW__VCACHE_LOCKS];
    int hit;

    pthread_mutex_lock(lock);
    hit = vc->slots[s].until != 0 && memcmp(vc->slots[s].fp, fp, 32) == 0 &&
          now >= vc->slots[s].from && now < vc->slots[s].until;
    pthread_mutex_unlock(lock);
    return hit;
}

/* Remember a chain that just verified. */
static void store(tw__vcache *vc, const tw__gen *g, const unsigned char fp[32],
                  X509_STORE_CTX *xs)
{
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(xs);
    time_t from = 0, until = g->crl_next_update; /* 0: no CRL */
    size_t s = slot_of(fp);

    for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        time_t nb = asn1_time_t(X509_get0_notBefore(x));
        time_t na = asn1_time_t(X509_get0_notAfter(x));

        if (nb == 0 || na == 0)
            return; /* dates we cannot read: never cache */
        if (nb > from)
            from = nb;
        if (until == 0 || na < until)
            until = na;
    }
    if (until == 0)
        return;
    pthread_mutex_lock(&vc->locks[s % TW__VCACHE_LOCKS]);
    memcpy(vc->slots[s].fp, fp, 32);
    vc->slots[s].from = from;
    vc->slots[s].until = until;
    pthread_mutex_unlock(&vc->locks[s % TW__VCACHE_LOCKS]);
}

/* The leaf was revoked beyond the CRL (tw_config_add_revoked_fingerprint):
 * refused as a CRL would refuse it, recorded by the verify callback, with
 * the alert certificate_revoked. */
static int refuse_revoked(const tw__gen *g, X509_STORE_CTX *xs, X509 *leaf)
{
    (void)tw__verify_revoked(xs, leaf);
    if (g->client_cert_optional)
        return tw__verify_let_through(xs);
    return 0;
}

/* SSL_CTX_set_cert_verify_callback: in place of X509_verify_cert. */
int tw__vcache_verify(X509_STORE_CTX *xs, void *arg)
{
    tw__gen *g = arg;
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    unsigned char fp[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    int have_fp = leaf != NULL &&
                  X509_digest(leaf, EVP_sha256(), fp, &len) == 1 && len == 32;
    int ok;

    if (have_fp && tw__gen_revoked_fp(g, fp))
        return refuse_revoked(g, xs, leaf);
    if (have_fp && lookup(g->vcache, fp, time(NULL)))
        return 1; /* X509_V_OK stays the verification result */
    ok = X509_verify_cert(xs);
    if (ok == 1 && X509_STORE_CTX_get_error(xs) == X509_V_OK && have_fp)
        store(g->vcache, g, fp, xs);
    if (ok != 1 && g->client_cert_optional)
        return tw__verify_let_through(xs);
    return ok;
}
