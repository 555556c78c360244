/*
 * renew_http.c - the HTTP exchanges of tw_renewal with twoway-ca serve,
 * through libcurl: TLS 1.2 at least, the CA file as the only trust anchor,
 * the server's name checked, our pair for /v1/renew, bounded bodies and
 * times, and an exchange abandoned as soon as the renewal is stopped.
 */
#include "renew_internal.h"

#include <curl/curl.h>

#include <pthread.h>
#include <string.h>
#include <strings.h>

#define CONNECT_TIMEOUT_MS 10000L
#define EXCHANGE_TIMEOUT_MS 60000L

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    tw__http_reply *r = arg;

    return twu_buf_append(&r->body, data, size * n) < 0 ? 0 : size * n;
}

/* Keep the ETag (a quoted string; kept as sent, for If-None-Match). */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    tw__http_reply *r = arg;
    size_t len = size * n, vlen;
    const char *v;

    if (len > 5 && strncasecmp(data, "etag:", 5) == 0) {
        for (v = data + 5, vlen = len - 5; vlen > 0 && (*v == ' ' || *v == '\t');
             v++, vlen--)
            ;
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
                            v[vlen - 1] == ' '))
            vlen--;
        if (vlen < sizeof(r->etag)) {
            memcpy(r->etag, v, vlen);
            r->etag[vlen] = '\0';
        }
    }
    return len;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
                       curl_off_t un)
{
    const atomic_int *stop = arg;

    (void)dt, (void)dn, (void)ut, (void)un;
    return stop != NULL && atomic_load(stop) ? 1 : 0;
}

void tw__http_reply_free(tw__http_reply *r)
{
    twu_buf_free(&r->body);
    memset(r, 0, sizeof(*r));
}

#define SET(opt, val)                                                          \
    do {                                                                       \
        if (curl_easy_setopt(c, opt, val) != CURLE_OK)                         \
            goto setopt_failed;                                                \
    } while (0)

int tw__http_exchange(const tw__http *h, const char *url,
                      const char *post_json, const char *if_none_match,
                      tw__http_reply *out, tw_err *err)
{
    struct curl_slist *headers = NULL, *more;
    char errbuf[CURL_ERROR_SIZE] = "", line[300];
    CURL *c = NULL;
    CURLcode rc;
    int result = -1;

    memset(out, 0, sizeof(*out));
    out->body.max = TW__HTTP_MAX_BODY;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK || (c = curl_easy_init()) == NULL)
        return twu_err(err, TW_ERR_INTERNAL, "libcurl cannot start");
    if (post_json != NULL &&
        (headers = curl_slist_append(headers, "Content-Type: application/json")) == NULL)
        goto nomem;
    if (if_none_match != NULL && if_none_match[0] != '\0') {
        snprintf(line, sizeof(line), "If-None-Match: %s", if_none_match);
        if ((more = curl_slist_append(headers, line)) == NULL)
            goto nomem;
        headers = more;
    }
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "https,http");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_USERAGENT, h->user_agent != NULL ? h->user_agent : "libtwoway");
    SET(CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    SET(CURLOPT_TIMEOUT_MS, EXCHANGE_TIMEOUT_MS);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, out);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, out);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, (void *)h->stop);
    SET(CURLOPT_HTTPHEADER, headers);
    if (post_json != NULL)
        SET(CURLOPT_POSTFIELDS, post_json);
    /* Whom we trust: the CA file only; who we are: our pair, if any. */
    SET(CURLOPT_CAINFO, h->ca_file);
    SET(CURLOPT_CAPATH, NULL);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (h->cert_file != NULL) {
        SET(CURLOPT_SSLCERT, h->cert_file);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
        SET(CURLOPT_SSLKEY, h->key_file);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
    rc = curl_easy_perform(c);
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        twu_err(err, TW_ERR_IO, "%s: stopped", url);
        goto done;
    }
    if (rc == CURLE_WRITE_ERROR && out->body.len >= out->body.max) {
        twu_err(err, TW_ERR_PROTOCOL, "%s: the answer is larger than %d bytes",
                url, TW__HTTP_MAX_BODY);
        goto done;
    }
    if (rc != CURLE_OK) {
        twu_err(err, TW_ERR_IO, "%s: %s", url,
                errbuf[0] ? errbuf : curl_easy_strerror(rc));
        goto done;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    result = 0;
    goto done;
setopt_failed:
    twu_err(err, TW_ERR_INTERNAL, "libcurl lacks a feature libtwoway needs "
            "(OpenSSL TLS backend, HTTPS): %s", errbuf);
    goto done;
nomem:
    twu_err_nomem(err);
done:
    if (result < 0)
        tw__http_reply_free(out);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return result;
}

char *tw__url_for(const char *url, const char *path, int https_only,
                  const char *option, tw_err *err)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *have = NULL, *text = NULL, *out = NULL;

    if (u == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
        twu_err(err, TW_ERR_USAGE, "%s '%s' is not a URL: give e.g. "
                "https://ca.example:9443", option, url);
        goto done;
    }
    if (strcmp(scheme, "https") != 0 &&
        (https_only || strcmp(scheme, "http") != 0)) {
        twu_err(err, TW_ERR_USAGE, "%s '%s' must start with https://%s",
                option, url, https_only ? "" : " or http://");
        goto done;
    }
    if (curl_url_get(u, CURLUPART_PATH, &have, 0) != CURLUE_OK ||
        strcmp(have, "/") == 0 || have[0] == '\0') {
        if (curl_url_set(u, CURLUPART_PATH, path, 0) != CURLUE_OK) {
            twu_err_nomem(err);
            goto done;
        }
    }
    if (curl_url_get(u, CURLUPART_URL, &text, 0) != CURLUE_OK ||
        (out = twu_strdup(text)) == NULL)
        twu_err_nomem(err);
done:
    curl_free(scheme);
    curl_free(have);
    curl_free(text);
    curl_url_cleanup(u);
    return out;
}
