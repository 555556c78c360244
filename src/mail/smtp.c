/*
 * smtp.c - hand a message to the SMTP server with libcurl.
 *
 * smtp://HOST[:PORT] upgrades with STARTTLS when the server offers it
 * (CURLUSESSL_TRY) and requires it with --smtp-require-tls; smtps:// is TLS
 * from the first byte.  Once TLS is on, the SMTP server's certificate is
 * verified against the system's CAs, or --smtp-ca, unless --smtp-insecure.
 *
 * What comes back decides what sync does next:
 *   SENT     250 after the data: the message is the SMTP server's now;
 *   REFUSED  a 4xx/5xx to RCPT or to the data: this message only; it is
 *            tried again next pass;
 *   DOWN     cannot connect, TLS fails, the sender is refused...: no other
 *            message would fare better, so the pass stops (after retries
 *            with backoff for network failures).
 * The server's own words (its first refusal line, seen through the debug
 * callback) go into the sentence.
 */
#include "sync.h"
#include "util.h"

#include <curl/curl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mail_smtp {
    const mail_options *o;
    CURL *curl;
    char from[MAIL_ADDR_MAX + 3];
    char where[300];   /* host:port, never the credentials of the URL */
    char errbuf[CURL_ERROR_SIZE];
    char reply[512];   /* the SMTP server's first refusal, or "" */
    const char *msg;   /* the message being uploaded */
    size_t len, off;
};

int mail_smtp_check_url(const char *url, mail_err *e)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -1;

    if (u == NULL)
        return mail_err_set(e, MAIL_EXIT_OTHER, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "smtp") != 0 && strcmp(scheme, "smtps") != 0))
        mail_err_set(e, MAIL_EXIT_USAGE, "--smtp '%s' must be "
                     "smtp://HOST[:PORT] or smtps://HOST[:PORT]", url);
    else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
             host[0] == '\0')
        mail_err_set(e, MAIL_EXIT_USAGE, "--smtp '%s' names no host", url);
    else
        rc = 0;
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* The user part of the URL, decoded (curl_free it), or NULL; *has_password
 * says whether the URL carries a password too. */
static char *url_user(const char *url, int *has_password)
{
    CURLU *u = curl_url();
    char *user = NULL, *password = NULL;

    *has_password = 0;
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
        if (curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE) !=
            CURLUE_OK)
            user = NULL;
        *has_password = curl_url_get(u, CURLUPART_PASSWORD, &password, 0) ==
                        CURLUE_OK;
    }
    curl_free(password);
    curl_url_cleanup(u);
    return user;
}

char *mail_smtp_read_password(const mail_options *o, mail_err *e)
{
    int has_password;
    char *user = url_user(o->smtp, &has_password), *pass;
    tw_err err;

    if (user == NULL || user[0] == '\0' || has_password) {
        curl_free(user);
        mail_err_set(e, MAIL_EXIT_USAGE, "--smtp-password-file needs the user "
                     "in --smtp and no password there: smtp://USER@HOST[:PORT]");
        return NULL;
    }
    curl_free(user);
    if ((pass = twu_read_passphrase_file(o->smtp_password_file,
                                         "--smtp-password-file", &err)) == NULL)
        mail_err_set(e, MAIL_EXIT_USAGE, "%s", err.msg);
    return pass;
}

static void set_where(mail_smtp *s, const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;

    snprintf(s->where, sizeof(s->where), "the SMTP server");
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ==
            CURLUE_OK)
        snprintf(s->where, sizeof(s->where), "the SMTP server %s:%s", host,
                 port);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
    mail_smtp *s = userdata;
    size_t n = size * nitems;

    if (n > s->len - s->off)
        n = s->len - s->off;
    memcpy(buf, s->msg + s->off, n);
    s->off += n;
    return n;
}

/* Keep the server's first refusal (a 4xx or 5xx reply line) of the
 * transfer, "550 5.1.1 <x@y>: no such user", not the "221 Bye" after it. */
static int on_debug(CURL *curl, curl_infotype type, char *data, size_t size,
                    void *userdata)
{
    mail_smtp *s = userdata;
    size_t n = 0;

    (void)curl;
    if (type != CURLINFO_HEADER_IN || s->reply[0] != '\0' || size < 3 ||
        (data[0] != '4' && data[0] != '5'))
        return 0;
    while (size > 0 && (data[size - 1] == '\n' || data[size - 1] == '\r'))
        size--;
    for (size_t i = 0; i < size && n + 1 < sizeof(s->reply); i++)
        s->reply[n++] = (unsigned char)data[i] < 0x20 ? ' ' : data[i];
    s->reply[n] = '\0';
    return 0;
}

#define SET(opt, val)                                                         \
    do {                                                                      \
        if (curl_easy_setopt(s->curl, opt, val) != CURLE_OK)                  \
            goto setopt_failed;                                               \
    } while (0)

mail_smtp *mail_smtp_new(const mail_options *o, const mail_sender *from,
                         const char *password, mail_err *e)
{
    mail_smtp *s = calloc(1, sizeof(*s));
    int smtps = strncmp(o->smtp, "smtps:", 6) == 0;

    if (s == NULL || (s->curl = curl_easy_init()) == NULL) {
        free(s);
        mail_err_set(e, MAIL_EXIT_OTHER, "out of memory");
        return NULL;
    }
    s->o = o;
    snprintf(s->from, sizeof(s->from), "<%s>", from->addr);
    set_where(s, o->smtp);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_URL, o->smtp);
    SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    SET(CURLOPT_ERRORBUFFER, s->errbuf);
    SET(CURLOPT_MAIL_FROM, s->from);
    SET(CURLOPT_UPLOAD, 1L);
    SET(CURLOPT_READFUNCTION, on_read);
    SET(CURLOPT_READDATA, s);
    SET(CURLOPT_VERBOSE, 1L); /* only to feed on_debug */
    SET(CURLOPT_DEBUGFUNCTION, on_debug);
    SET(CURLOPT_DEBUGDATA, s);
    SET(CURLOPT_CONNECTTIMEOUT_MS, o->tls.connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, o->smtp_timeout_ms);
    SET(CURLOPT_USE_SSL, smtps || o->smtp_require_tls ? (long)CURLUSESSL_ALL
                                                      : (long)CURLUSESSL_TRY);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (o->smtp_insecure) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        if (o->smtp_ca != NULL) {
            SET(CURLOPT_CAINFO, o->smtp_ca);
            SET(CURLOPT_CAPATH, NULL);
        }
    }
    if (password != NULL) {
        /* The options win over the URL: the user again, with the password
         * from the file (libcurl copies both). */
        int has_password;
        char *user = url_user(o->smtp, &has_password);
        int ok = user != NULL &&
                 curl_easy_setopt(s->curl, CURLOPT_USERNAME, user) == CURLE_OK;

        curl_free(user);
        if (!ok)
            goto setopt_failed;
        SET(CURLOPT_PASSWORD, password);
    }
    return s;
setopt_failed:
    mail_err_set(e, MAIL_EXIT_OTHER, "libcurl lacks a feature mail-server "
                 "needs (SMTP, TLS): %s", s->errbuf);
    mail_smtp_free(s);
    return NULL;
}

void mail_smtp_free(mail_smtp *s)
{
    if (s == NULL)
        return;
    curl_easy_cleanup(s->curl);
    free(s);
}

/* One attempt; `network` set when trying again might help. */
static enum mail_smtp_result attempt(mail_smtp *s, const char *rcpt,
                                     mail_err *e, int *network)
{
    struct curl_slist *rcpts = NULL;
    char angle[MAIL_ADDR_MAX + 3];
    long code = 0;
    CURLcode rc;
    const char *why;

    *network = 0;
    snprintf(angle, sizeof(angle), "<%s>", rcpt);
    if ((rcpts = curl_slist_append(NULL, angle)) == NULL) {
        mail_err_set(e, MAIL_EXIT_OTHER, "out of memory");
        return MAIL_SMTP_DOWN;
    }
    s->off = 0;
    s->errbuf[0] = s->reply[0] = '\0';
    curl_easy_setopt(s->curl, CURLOPT_MAIL_RCPT, rcpts);
    curl_easy_setopt(s->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)s->len);
    rc = curl_easy_perform(s->curl);
    curl_easy_setopt(s->curl, CURLOPT_MAIL_RCPT, NULL);
    curl_slist_free_all(rcpts);
    if (rc == CURLE_OK)
        return MAIL_SMTP_SENT;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &code);
    why = s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc);
    if (strncmp(why, "RCPT failed", 11) == 0 ||
        (code >= 400 && strncmp(why, "MAIL failed", 11) != 0 &&
         s->off == s->len && s->len > 0)) {
        /* The recipient, or this message once sent: this mail only. */
        mail_err_set(e, MAIL_EXIT_SMTP, "%s refused %s %s: %s", s->where,
                     strncmp(why, "RCPT failed", 11) == 0 ? "the recipient"
                                                          : "the message to",
                     rcpt, s->reply[0] ? s->reply : why);
        return MAIL_SMTP_REFUSED;
    }
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        *network = 1;
        mail_err_set(e, MAIL_EXIT_SMTP, "cannot reach %s: %s", s->where, why);
        return MAIL_SMTP_DOWN;
    case CURLE_USE_SSL_FAILED:
        mail_err_set(e, MAIL_EXIT_SMTP, "%s does not offer STARTTLS, and "
                     "%s requires TLS", s->where,
                     s->o->smtp_require_tls ? "--smtp-require-tls"
                                            : "smtps://");
        return MAIL_SMTP_DOWN;
    case CURLE_PEER_FAILED_VERIFICATION:
        mail_err_set(e, MAIL_EXIT_SMTP, "we refused the certificate of %s "
                     "(%s): give its CA with --smtp-ca, or, knowing what "
                     "it means, --smtp-insecure", s->where, why);
        return MAIL_SMTP_DOWN;
    case CURLE_LOGIN_DENIED:
        mail_err_set(e, MAIL_EXIT_SMTP, "%s refused our login: %s", s->where,
                     s->reply[0] ? s->reply : why);
        return MAIL_SMTP_DOWN;
    default:
        mail_err_set(e, MAIL_EXIT_SMTP, "%s failed: %s%s%s", s->where, why,
                     s->reply[0] ? "; it said: " : "", s->reply);
        /* A 4xx to MAIL FROM may pass; anything else will not. */
        *network = code >= 400 && code < 500;
        return MAIL_SMTP_DOWN;
    }
}

enum mail_smtp_result mail_smtp_send(mail_smtp *s, const char *rcpt,
                                     const char *msg, size_t len, mail_err *e)
{
    int tries = 1 + (s->o->tls.retries > 0 ? s->o->tls.retries : 0);

    s->msg = msg;
    s->len = len;
    for (int n = 1;; n++) {
        int network;
        enum mail_smtp_result r = attempt(s, rcpt, e, &network);
        long wait;

        if (r != MAIL_SMTP_DOWN || !network || n >= tries || mail_stop)
            return r;
        wait = mail_backoff_ms(n);
        mail_log("%s; retrying in %ld s (attempt %d of %d)", e->msg,
                 wait / 1000, n + 1, tries);
        if (mail_sleep_ms(wait))
            return r;
    }
}
