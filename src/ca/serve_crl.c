/*
 * serve_crl.c - the CRL serve publishes: made at start, re-signed when half
 * its validity has passed and right after every revocation (with the index
 * in PostgreSQL, also one another process made: notified, seen at the next
 * tick), so it is never stale while serve runs.  Kept in memory (PEM and DER) for GET /v1/crl,
 * and in DIR/crl.pem, which the TLS side reads: after a revocation the
 * server reloads, and the revoked certificate can no longer renew.
 */
#include "serve.h"

#include <openssl/evp.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The DER inside a PEM block (base64 between the BEGIN and END lines).
 * NULL when it is not one. */
static char *pem_to_der(const char *pem, size_t len, size_t *der_len)
{
    const char *b = memchr(pem, '\n', len), *e = strstr(pem, "-----END");
    EVP_ENCODE_CTX *ctx = NULL;
    unsigned char *der = NULL;
    int n = 0, m = 0;

    if (b == NULL || e == NULL || e < b ||
        (der = twu_malloc((size_t)(e - b) + 1)) == NULL ||
        (ctx = EVP_ENCODE_CTX_new()) == NULL)
        goto err;
    EVP_DecodeInit(ctx);
    if (EVP_DecodeUpdate(ctx, der, &n, (const unsigned char *)b + 1,
                         (int)(e - b - 1)) < 0 ||
        EVP_DecodeFinal(ctx, der + n, &m) != 1)
        goto err;
    EVP_ENCODE_CTX_free(ctx);
    *der_len = (size_t)(n + m);
    return (char *)der;
err:
    EVP_ENCODE_CTX_free(ctx);
    twu_free(der);
    return NULL;
}

int serve_crl_publish(serve_app *app, ca_dir *ca, const char *why, tw_err *err)
{
    serve_crl *crl = &app->crl;
    char *pem = NULL, *der = NULL;
    size_t pem_len = 0, der_len = 0;
    uint64_t number = 0;
    time_t next = 0;
    int newer;

    if (ca_crl_make(ca, SERVE_CRL_VALIDITY, &pem, &pem_len, &number, &next,
                    err) < 0)
        return -1;
    if ((der = pem_to_der(pem, pem_len, &der_len)) == NULL) {
        twu_free(pem);
        return twu_err(err, TW_ERR_INTERNAL, "cannot decode the CRL just made");
    }
    pthread_mutex_lock(&crl->lock);
    /* Two revocations at once publish two CRLs: keep the higher number,
     * whichever finishes last. */
    newer = number > crl->number;
    if (newer) {
        twu_free(crl->pem);
        twu_free(crl->der);
        crl->pem = pem;
        crl->der = der;
        crl->pem_len = pem_len;
        crl->der_len = der_len;
        crl->number = number;
        crl->this_update = time(NULL);
        crl->next_update = next;
        pem = der = NULL;
        if (twu_write_file_atomic(app->crl_path, crl->pem, crl->pem_len, 0644,
                                  0, err) < 0) {
            pthread_mutex_unlock(&crl->lock);
            return -1;
        }
    }
    pthread_mutex_unlock(&crl->lock);
    twu_free(pem);
    twu_free(der);
    if (newer && app->h != NULL) {
        httpd_log(app->h, "CRL %llu published (%s)", (unsigned long long)number,
                  why);
        (void)httpd_reload(app->h, why);
    }
    return 0;
}

int serve_crl_init(serve_app *app)
{
    tw_err err;

    /* Before the first CRL: a revocation from now on is either in it or
     * notified. */
    if (sql_listen(app->ca.db, CA_REVOCATION_CHANNEL) != SQL_OK) {
        ca_fail("serve", "cannot listen for revocations on %s: %s",
                app->ca.db_path, sql_errmsg(app->ca.db));
        return -1;
    }
    if (serve_crl_publish(app, &app->ca, "start", &err) < 0) {
        ca_fail("serve", "cannot make the CRL: %s", err.msg);
        return -1;
    }
    return 0;
}

void serve_crl_tick(serve_app *app)
{
    serve_crl *crl = &app->crl;
    time_t now = time(NULL), half;
    tw_err err;

    /* An index in PostgreSQL: a revocation by another process (the CLI,
     * another serve) was notified; publish a CRL that has it. */
    if (sql_notifications(app->ca.db) > 0 &&
        serve_crl_publish(app, &app->ca, "a revocation elsewhere", &err) < 0)
        httpd_log(app->h, "warning: cannot re-sign the CRL after a "
                  "revocation elsewhere: %s", err.msg);
    pthread_mutex_lock(&crl->lock);
    half = crl->this_update + (crl->next_update - crl->this_update) / 2;
    pthread_mutex_unlock(&crl->lock);
    if (now < half || now < crl->retry_at)
        return;
    if (serve_crl_publish(app, &app->ca, "half its validity passed", &err) < 0) {
        httpd_log(app->h, "warning: cannot re-sign the CRL: %s (the current "
                  "one is good until its nextUpdate; trying again in a "
                  "minute)", err.msg);
        crl->retry_at = now + 60;
    }
}

void serve_crl_free(serve_crl *crl)
{
    twu_free(crl->pem);
    twu_free(crl->der);
    crl->pem = crl->der = NULL;
    pthread_mutex_destroy(&crl->lock);
}
