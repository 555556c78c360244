/*
 * https.c - GET from the invoice server over mutual TLS, with libcurl.
 *
 * libcurl does the HTTP and drives OpenSSL: our certificate and key,
 * --ca as the only trust anchor (no system store, no CA directory), the
 * optional CRL, TLS 1.2 at least, peer and host name verification on.
 * Through CURLOPT_SSL_CTX_FUNCTION we add what libcurl cannot tell us
 * afterwards: a verify callback that remembers which check failed on which
 * certificate and enforces --expect-server on the server's parsed identity
 * (libtwoway's policy matcher), and an info callback that remembers the TLS
 * alert the server sent when it refused us.  That record is all the
 * callbacks keep: errors.c hands it to libtwoway (tw_reason_from_verify_error,
 * tw_explain_refusal, tw_explain_alert), which words it as for its own
 * clients.
 */
#include "mail.h"

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdlib.h>
#include <string.h>

struct mail_https {
    const mail_tls_options *o;
    const mail_self *self;
    CURL *curl;
    mail_tls_seen seen;
    char errbuf[CURL_ERROR_SIZE];
    twu_buf body; /* the body being received, at most MAIL_MAX_RESPONSE */
    int too_big;
};

/* Where our mail_https hangs on the SSL_CTX libcurl builds per connection. */
static int ctx_index = -1;

static mail_https *from_ssl(const SSL *ssl)
{
    return ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index) : NULL;
}

static void seen_reset(mail_tls_seen *s)
{
    X509_free(s->verify_cert);
    X509_free(s->server_cert);
    memset(s, 0, sizeof(*s));
    s->alert_received = -1;
}

/* Whether the server's certificate matches one --expect-server rule. */
static int expected(const mail_https *h, X509 *cert)
{
    tw_identity *id = mail_identity_of(cert);
    int ok = id != NULL && tw_policy_allows(h->self->expect, id, NULL, NULL);

    tw_identity_free(id);
    return ok;
}

static int on_verify(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store,
                                          SSL_get_ex_data_X509_STORE_CTX_idx());
    mail_https *h = from_ssl(ssl);
    X509 *cert = X509_STORE_CTX_get_current_cert(store);
    X509 *leaf = X509_STORE_CTX_get0_cert(store);

    if (h == NULL)
        return ok;
    if (h->seen.server_cert == NULL && leaf != NULL && X509_up_ref(leaf) == 1)
        h->seen.server_cert = leaf;
    if (!ok) {
        if (h->seen.verify_error == 0) {
            h->seen.verify_error = X509_STORE_CTX_get_error(store);
            h->seen.verify_depth = X509_STORE_CTX_get_error_depth(store);
            if (cert != NULL && X509_up_ref(cert) == 1)
                h->seen.verify_cert = cert;
        }
        return 0;
    }
    if (h->self->expect != NULL && X509_STORE_CTX_get_error_depth(store) == 0 &&
        cert != NULL && !expected(h, cert)) {
        h->seen.expectation_failed = 1;
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED); /* alert bad_certificate */
        return 0;
    }
    return 1;
}

static void on_info(const SSL *ssl, int where, int ret)
{
    mail_https *h = from_ssl(ssl);

    if (h == NULL)
        return;
    if (where & SSL_CB_HANDSHAKE_DONE) {
        h->seen.handshake_done = 1;
        h->seen.version = SSL_version(ssl);
    }
    /* A fatal alert the server sent: it refused something of ours. */
    if ((where & SSL_CB_READ_ALERT) && (ret >> 8) == SSL3_AL_FATAL &&
        h->seen.alert_received < 0)
        h->seen.alert_received = ret & 0xff;
}

/* Called by libcurl with the SSL_CTX of a new connection, before the
 * SSL object is made from it. */
static CURLcode on_ssl_ctx(CURL *curl, void *sslctx, void *userptr)
{
    SSL_CTX *ctx = sslctx;
    mail_https *h = userptr;
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    char host[256];
    size_t n = strlen(h->self->host);
    int set;

    (void)curl;
    if (SSL_CTX_set_ex_data(ctx, ctx_index, h) != 1)
        return CURLE_OUT_OF_MEMORY;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, on_verify);
    SSL_CTX_set_info_callback(ctx, on_info);
    SSL_CTX_set_security_level(ctx, 2); /* as libtwoway: RSA >= 2048 */
    /* Check the name during the handshake too, so a mismatch is recorded
     * with the certificate (libcurl checks it again afterwards).  An IPv6
     * literal comes bracketed from the URL. */
    if (n >= sizeof(host))
        return CURLE_URL_MALFORMAT;
    if (h->self->host[0] == '[' && n > 2 && h->self->host[n - 1] == ']') {
        memcpy(host, h->self->host + 1, n - 2);
        host[n - 2] = '\0';
    } else {
        memcpy(host, h->self->host, n + 1);
    }
    set = X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1 ||
          X509_VERIFY_PARAM_set1_host(param, host, 0) == 1;
    return set ? CURLE_OK : CURLE_OUT_OF_MEMORY;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    mail_https *h = userdata;
    size_t n = size * nmemb;

    if (n > MAIL_MAX_RESPONSE - h->body.len) {
        h->too_big = 1;
        return 0; /* libcurl stops with CURLE_WRITE_ERROR */
    }
    if (twu_buf_append(&h->body, ptr, n) < 0)
        return 0; /* out of memory */
    return n;
}

#define SET(opt, val)                                                         \
    do {                                                                      \
        if (curl_easy_setopt(h->curl, opt, val) != CURLE_OK)                  \
            goto setopt_failed;                                               \
    } while (0)

mail_https *mail_https_new(const mail_tls_options *o, const mail_self *self,
                           mail_err *e)
{
    mail_https *h = calloc(1, sizeof(*h));

    if (h == NULL || (h->curl = curl_easy_init()) == NULL) {
        free(h);
        mail_err_set(e, MAIL_EXIT_OTHER, "out of memory");
        return NULL;
    }
    h->o = o;
    h->body.max = MAIL_MAX_RESPONSE;
    h->self = self;
    h->seen.alert_received = -1;
    if (ctx_index < 0 &&
        (ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL)) < 0)
        goto setopt_failed;
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_USERAGENT, "mail-server (twoway)");
    SET(CURLOPT_ERRORBUFFER, h->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, h);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MAIL_MAX_RESPONSE);
    SET(CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, o->timeout_ms);
    /* Who we are. */
    SET(CURLOPT_SSLCERT, o->cert);
    SET(CURLOPT_SSLCERTTYPE, "PEM");
    SET(CURLOPT_SSLKEY, o->key);
    SET(CURLOPT_SSLKEYTYPE, "PEM");
    if (self->key_pass != NULL)
        SET(CURLOPT_KEYPASSWD, self->key_pass);
    /* Whom we trust: --ca only. */
    SET(CURLOPT_CAINFO, o->ca);
    SET(CURLOPT_CAPATH, NULL);
    if (o->crl != NULL)
        SET(CURLOPT_CRLFILE, o->crl);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SET(CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
    SET(CURLOPT_SSL_CTX_DATA, h);
    return h;
setopt_failed:
    mail_err_set(e, MAIL_EXIT_OTHER, "libcurl lacks a feature mail-server "
                 "needs (OpenSSL TLS backend, HTTPS): %s", h->errbuf);
    mail_https_free(h);
    return NULL;
}

void mail_https_free(mail_https *h)
{
    if (h == NULL)
        return;
    seen_reset(&h->seen);
    curl_easy_cleanup(h->curl);
    twu_buf_free(&h->body);
    free(h);
}

void mail_body_free(mail_body *b)
{
    twu_free(b->data);
    b->data = NULL;
    b->len = 0;
}

/*
 * In TLS 1.3 the server checks our certificate after our side of the
 * handshake is done.  A server that closes the socket at once after its
 * alert, with our request still unread, makes its kernel answer with a
 * reset that destroys the alert on the way: we only see "connection reset".
 * To still say why, shake hands once more, limited to TLS 1.2, where the
 * refusal comes inside the handshake; no request is sent on that
 * connection (CURLOPT_CONNECT_ONLY), it only asks.  Returns the alert about
 * our certificate, or -1: then the server sent none at all (Node.js), and
 * errors.c's sentence for a silent refusal stands.
 */
static int probe_refusal(mail_https *h, const char *url)
{
    CURL *probe = curl_easy_duphandle(h->curl);
    int alert = -1;

    if (probe == NULL)
        return -1;
    seen_reset(&h->seen);
    if (curl_easy_setopt(probe, CURLOPT_URL, url) == CURLE_OK &&
        curl_easy_setopt(probe, CURLOPT_CONNECT_ONLY, 1L) == CURLE_OK &&
        curl_easy_setopt(probe, CURLOPT_SSLVERSION,
                         (long)(CURL_SSLVERSION_TLSv1_2 |
                                CURL_SSLVERSION_MAX_TLSv1_2)) == CURLE_OK &&
        curl_easy_perform(probe) != CURLE_OK &&
        tw_tls_alert_refuses_certificate(h->seen.alert_received))
        alert = h->seen.alert_received;
    curl_easy_cleanup(probe);
    seen_reset(&h->seen);
    return alert;
}

/* One attempt: 0 with the body in h, or -1 with `e`. */
static int attempt(mail_https *h, const char *url, mail_err *e)
{
    CURLcode rc;
    long status = 0, verify = 0;

    seen_reset(&h->seen);
    h->errbuf[0] = '\0';
    twu_buf_reset(&h->body);
    h->too_big = 0;
    if (curl_easy_setopt(h->curl, CURLOPT_URL, url) != CURLE_OK)
        return mail_err_set(e, MAIL_EXIT_USAGE, "'%s' is not a URL", url);
    rc = curl_easy_perform(h->curl);
    if (rc != CURLE_OK) {
        mail_transfer t = {.curl_code = rc, .curl_message = h->errbuf,
                           .seen = &h->seen, .too_big = h->too_big,
                           .url = url};

        int cut_after_tls13 = h->seen.handshake_done &&
                              h->seen.version == TLS1_3_VERSION &&
                              h->seen.alert_received < 0 &&
                              (rc == CURLE_SEND_ERROR ||
                               rc == CURLE_RECV_ERROR ||
                               rc == CURLE_GOT_NOTHING);
        int alert;

        curl_easy_getinfo(h->curl, CURLINFO_SSL_VERIFYRESULT, &verify);
        curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
        t.verify_result = verify;
        t.answered = status != 0;
        mail_err_transfer(e, &t, h->o, h->self);
        if (cut_after_tls13 && (alert = probe_refusal(h, url)) > 0)
            mail_err_refused(e, alert, h->o, h->self);
        return -1;
    }
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299)
        return mail_err_http(e, status, h->body.data ? h->body.data : "",
                             h->body.len, url, h->o, h->self);
    return 0;
}

int mail_https_get(mail_https *h, const char *url, mail_body *out,
                   mail_err *e)
{
    int tries = 1 + (h->o->retries > 0 ? h->o->retries : 0);

    memset(out, 0, sizeof(*out));
    for (int n = 1;; n++) {
        long wait;

        if (attempt(h, url, e) == 0)
            break;
        if (!mail_err_retriable(e) || n >= tries || mail_stop)
            return -1;
        wait = mail_backoff_ms(n);
        mail_log("%s; retrying in %ld s (attempt %d of %d)", e->msg,
                 wait / 1000, n + 1, tries);
        if (mail_sleep_ms(wait))
            return -1;
    }
    /* Hand the buffer over; the next GET starts a new one. */
    if (twu_buf_reserve(&h->body, 0) < 0)
        return mail_err_set(e, MAIL_EXIT_OTHER, "out of memory");
    out->data = h->body.data;
    out->len = h->body.len;
    h->body = (twu_buf){.max = MAIL_MAX_RESPONSE};
    return 0;
}
