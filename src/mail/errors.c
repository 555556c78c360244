/*
 * errors.c - what went wrong, said so that the operator can fix it.
 *
 * Every failure to talk to the invoice server becomes one sentence and one
 * exit code.  The sentence names the side that refused, the certificate
 * (our FILE, or the server's subject, issuer and serial) and the fix:
 *
 *   - we refused the server (exit 4): the verify callback recorded the
 *     X509 check and the certificate; libtwoway writes the sentence
 *     (tw_explain_refusal), the same words invoice-server and
 *     `twoway-ca verify` use; we add the option to fix (--ca, --crl);
 *   - the server refused us (exit 3): it sent a TLS alert (RFC 8446 section
 *     6.2), recorded by the info callback; libtwoway explains it in terms
 *     of our --cert file, which only we know (tw_explain_alert).  Two
 *     refusals come without an alert: a server that checks our certificate
 *     after the handshake and hangs up (Node.js), and nginx's HTTP 400
 *     page; we say what our own certificate tells us (expired, not yet
 *     valid, or which CA signed it);
 *   - network (5), HTTP status (6), bad answer (7), our own files (2).
 */
#define _GNU_SOURCE /* memmem */
#include "mail.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/x509_vfy.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int mail_err_set(mail_err *e, enum mail_exit code, const char *fmt, ...)
{
    va_list ap;

    e->exit = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}

int mail_err_retriable(const mail_err *e)
{
    return e->exit == MAIL_EXIT_NETWORK;
}

/* "host:port" of a URL, for network sentences. */
static void host_port(const char *url, char *buf, size_t len)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;

    snprintf(buf, len, "%s", url);
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ==
            CURLUE_OK)
        snprintf(buf, len, "%s:%s", host, port);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

/* Why the server may have refused our certificate when it does not say:
 * what we know of it ourselves.  An expired certificate is the likely
 * cause and needs renewing, not a trust change on the server. */
static void refusal_hint(char *buf, size_t len, const mail_tls_options *o,
                         const mail_self *self)
{
    time_t now = time(NULL);
    char when[32];

    if (tw_identity_not_after(self->id) < now) {
        mail_rfc3339(tw_identity_not_after(self->id), when);
        snprintf(buf, len, "our certificate %s (%s) expired on %s: renew it "
                 "(issue a new certificate and key)", o->cert,
                 tw_identity_subject(self->id), when);
    } else if (tw_identity_not_before(self->id) > now) {
        mail_rfc3339(tw_identity_not_before(self->id), when);
        snprintf(buf, len, "our certificate %s (%s) is not valid before %s: "
                 "check this machine's clock, and the clock of the machine "
                 "that issued it", o->cert, tw_identity_subject(self->id),
                 when);
    } else {
        snprintf(buf, len, "it did not accept our certificate %s (%s, serial "
                 "%s): check that it trusts the CA that signed %s (issuer %s) "
                 "and that the certificate is not revoked, and look in its "
                 "log", o->cert, tw_identity_subject(self->id),
                 tw_identity_serial(self->id), o->cert,
                 tw_identity_issuer(self->id));
    }
}

/* The server refused us: its alert, explained with our --cert file, which
 * only we know (libtwoway writes the sentence, as for its own clients). */
int mail_err_refused(mail_err *e, int alert, const mail_tls_options *o,
                     const mail_self *self)
{
    tw_err err;

    tw_explain_alert(&err, alert, TW_PURPOSE_CLIENT, self->id, o->cert,
                     "the invoice server");
    return mail_err_set(e, MAIL_EXIT_REFUSED_BY_PEER, "%s", err.msg);
}

tw_identity *mail_identity_of(X509 *cert)
{
    unsigned char *der = NULL;
    int len = cert ? i2d_X509(cert, &der) : -1;
    tw_identity *id = len > 0 ? tw_identity_from_der(der, (size_t)len, NULL)
                              : NULL;

    OPENSSL_free(der);
    return id;
}

/* Subject and SANs of a certificate, for "is this the right server?". */
static void describe_identity(X509 *cert, char *buf, size_t len)
{
    static const char *const prefix[TW_SAN_TYPES] = {"DNS", "IP", "URI",
                                                     "email"};
    tw_identity *id = mail_identity_of(cert);
    size_t used;

    if (id == NULL) {
        snprintf(buf, len, "an unreadable certificate");
        return;
    }
    snprintf(buf, len, "%s (issuer %s, serial %s", tw_identity_subject(id),
             tw_identity_issuer(id), tw_identity_serial(id));
    for (int t = 0; t < TW_SAN_TYPES; t++)
        for (size_t i = 0; i < tw_identity_san_count(id, t); i++) {
            used = strlen(buf);
            snprintf(buf + used, len - used, ", %s:%s", prefix[t],
                     tw_identity_san(id, t, i));
        }
    used = strlen(buf);
    snprintf(buf + used, len - used, ")");
    tw_identity_free(id);
}

/* We refused the server: the check the verify callback recorded. */
static int we_refused(mail_err *e, const mail_tls_seen *s, int x509_error,
                      const mail_tls_options *o, const mail_self *self)
{
    enum tw_reason reason = tw_reason_from_verify_error(x509_error);
    tw_identity *cert = mail_identity_of(s->verify_cert ? s->verify_cert
                                                        : s->server_cert);
    const char *whose = s->verify_cert && s->verify_depth > 0
                            ? "the invoice server's issuing CA's"
                            : "the invoice server's";
    tw_err err;

    tw_explain_refusal(&err, reason, cert, whose,
                       reason == TW_REASON_NAME_MISMATCH
                           ? self->host
                           : X509_verify_cert_error_string(x509_error));
    tw_identity_free(cert);
    if (reason == TW_REASON_UNKNOWN_CA)
        return mail_err_set(e, MAIL_EXIT_PEER_REFUSED, "%s (--ca %s)", err.msg,
                            o->ca);
    if (reason == TW_REASON_CRL_UNUSABLE && o->crl != NULL)
        return mail_err_set(e, MAIL_EXIT_PEER_REFUSED, "%s (--crl %s)",
                            err.msg, o->crl);
    return mail_err_set(e, MAIL_EXIT_PEER_REFUSED, "%s", err.msg);
}

static int expectation_failed(mail_err *e, const mail_tls_seen *s,
                              const mail_tls_options *o, const char *url)
{
    char who[1024], rules[512] = "";

    describe_identity(s->server_cert, who, sizeof(who));
    for (int i = 0; i < o->nexpect; i++) {
        size_t used = strlen(rules);

        snprintf(rules + used, sizeof(rules) - used, "%s'%s'",
                 i ? " or " : "", o->expect[i]);
    }
    return mail_err_set(e, MAIL_EXIT_PEER_REFUSED,
                        "the invoice server's certificate %s does not match "
                        "--expect-server %s: is %s the right server? Fix "
                        "--url, or --expect-server if the server's identity "
                        "changed", who, rules, url);
}

/* Whether curl's message says the peer does not speak TLS at all. */
static int not_tls(const char *msg)
{
    return strstr(msg, "wrong version number") != NULL ||
           strstr(msg, "packet length too long") != NULL ||
           strstr(msg, "record layer failure") != NULL ||
           strstr(msg, "http request") != NULL;
}

int mail_err_transfer(mail_err *e, const mail_transfer *t,
                      const mail_tls_options *o, const mail_self *self)
{
    const mail_tls_seen *s = t->seen;
    const char *curl_msg = t->curl_message && t->curl_message[0]
                               ? t->curl_message
                               : curl_easy_strerror(t->curl_code);
    char where[300], hint[1024];

    host_port(t->url, where, sizeof(where));
    if (s->expectation_failed)
        return expectation_failed(e, s, o, t->url);
    if (s->verify_error != 0)
        return we_refused(e, s, s->verify_error, o, self);
    if (s->alert_received > 0)
        return mail_err_refused(e, s->alert_received, o, self);
    if (t->too_big || t->curl_code == CURLE_FILESIZE_EXCEEDED)
        return mail_err_set(e, MAIL_EXIT_RESPONSE, "the answer of %s is "
                            "larger than %u MiB: refused (is --url the "
                            "invoice server?)", t->url,
                            MAIL_MAX_RESPONSE / (1024 * 1024));
    switch (t->curl_code) {
    case CURLE_PEER_FAILED_VERIFICATION:
        /* libcurl's own checks after the handshake (the host name). */
        return we_refused(e, s, t->verify_result != X509_V_OK
                                    ? (int)t->verify_result
                                    : X509_V_ERR_HOSTNAME_MISMATCH,
                          o, self);
    case CURLE_COULDNT_RESOLVE_HOST:
        return mail_err_set(e, MAIL_EXIT_NETWORK, "cannot find the invoice "
                            "server %s (%s): check the host name in --url "
                            "and DNS", where, curl_msg);
    case CURLE_COULDNT_CONNECT:
        return mail_err_set(e, MAIL_EXIT_NETWORK, "cannot connect to the "
                            "invoice server at %s (%s): is it running, and "
                            "is the port in --url right?", where, curl_msg);
    case CURLE_OPERATION_TIMEDOUT:
        return mail_err_set(e, MAIL_EXIT_NETWORK, "the invoice server at %s "
                            "did not answer in time (%s): is it overloaded, "
                            "or is a firewall dropping the connection?",
                            where, curl_msg);
    case CURLE_SSL_CONNECT_ERROR:
        if (not_tls(curl_msg))
            return mail_err_set(e, MAIL_EXIT_RESPONSE, "%s does not speak "
                                "TLS (%s): is --url's port the invoice "
                                "server's HTTPS port?", where, curl_msg);
        return mail_err_set(e, MAIL_EXIT_NETWORK, "the TLS handshake with "
                            "the invoice server at %s failed without a "
                            "reason from either side (%s): the connection "
                            "was cut", where, curl_msg);
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        if (!s->handshake_done || t->answered)
            return mail_err_set(e, MAIL_EXIT_NETWORK, "the invoice server "
                                "at %s closed the connection (%s)", where,
                                curl_msg);
        /* Some servers (Node.js with rejectUnauthorized) check the client
         * certificate after the handshake and just hang up, before any
         * answer.  A refusal, not a network fault: trying again gets the
         * same answer. */
        refusal_hint(hint, sizeof(hint), o, self);
        return mail_err_set(e, MAIL_EXIT_REFUSED_BY_PEER, "the invoice "
                            "server at %s refused our certificate: it "
                            "closed the connection right after the TLS "
                            "handshake, without an answer or a TLS alert "
                            "(%s), as a server that checks client "
                            "certificates after the handshake does when it "
                            "refuses ours; %s", where, curl_msg, hint);
    case CURLE_SSL_CERTPROBLEM:
        return mail_err_set(e, MAIL_EXIT_USAGE, "cannot use --cert %s / --key "
                            "%s: %s", o->cert, o->key, curl_msg);
    case CURLE_SSL_CACERT_BADFILE:
        return mail_err_set(e, MAIL_EXIT_USAGE, "cannot use --ca %s: %s",
                            o->ca, curl_msg);
    case CURLE_SSL_CRL_BADFILE:
        return mail_err_set(e, MAIL_EXIT_USAGE, "cannot use --crl %s: %s",
                            o->crl ? o->crl : "?", curl_msg);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return mail_err_set(e, MAIL_EXIT_USAGE, "cannot use the URL %s: %s",
                            t->url, curl_msg);
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_PARTIAL_FILE:
        return mail_err_set(e, MAIL_EXIT_RESPONSE, "the invoice server at %s "
                            "sent a broken HTTP answer (%s)", where, curl_msg);
    default:
        return mail_err_set(e, MAIL_EXIT_OTHER, "talking to the invoice "
                            "server at %s failed: %s", where, curl_msg);
    }
}

static const char *status_text(long status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status >= 300 && status < 400 ? "a redirect" : "";
    }
}

/* What the server said: its JSON "reason" (or "error"), else the start of
 * the body with anything unprintable replaced. */
static void server_words(const char *body, size_t len, char *buf, size_t n)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *reason = json_object_get(root, "reason");
    size_t j = 0;

    if (!json_is_string(reason))
        reason = json_object_get(root, "error");
    if (json_is_string(reason)) {
        body = json_string_value(reason);
        len = strlen(body);
    }
    for (size_t i = 0; i < len && j + 1 < n && i < 300; i++) {
        unsigned char c = (unsigned char)body[i];

        buf[j++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    buf[j] = '\0';
    json_decref(root);
}

/* The path of a URL ("/" when it has none) into buf. */
static void url_path(const char *url, char *buf, size_t len)
{
    CURLU *u = curl_url();
    char *path = NULL;

    snprintf(buf, len, "/");
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && path[0])
        snprintf(buf, len, "%s", path);
    curl_free(path);
    curl_url_cleanup(u);
}

/* The role invoice-server's route for `method` and `path` needs
 * (src/invoice/routes.c, invoice-server(8)): GET /metrics needs "metrics",
 * POST /invoices "write", reading invoices "read". */
static const char *route_role(const char *method, const char *path)
{
    if (strcmp(method, "POST") == 0 && strcmp(path, "/invoices") == 0)
        return "write";
    if (strcmp(path, "/metrics") == 0)
        return "metrics";
    return "read";
}

/* nginx's own answer when its ssl_verify_client refused our certificate:
 * not an alert but HTTP 400 and a page of HTML (ngx_http_special_response.c,
 * "400 The SSL certificate error" and "400 No required SSL certificate was
 * sent").  NULL when `body` is not that page. */
static const char *nginx_refusal(long status, const char *body, size_t len)
{
    static const char *const pages[] = {"The SSL certificate error",
                                        "No required SSL certificate was sent"};

    if (status != 400)
        return NULL;
    for (size_t i = 0; i < sizeof(pages) / sizeof(*pages); i++)
        if (memmem(body, len, pages[i], strlen(pages[i])) != NULL)
            return pages[i];
    return NULL;
}

int mail_err_http(mail_err *e, long status, const char *body, size_t len,
                  const char *url, const mail_tls_options *o,
                  const mail_self *self)
{
    char words[400], hint[1024] = "", path[256];
    const char *nginx = nginx_refusal(status, body, len);

    if (nginx != NULL) {
        if (strcmp(nginx, "No required SSL certificate was sent") == 0)
            snprintf(hint, sizeof(hint), "it did not get our certificate %s "
                     "(%s), although we sent it: does something between us "
                     "(a proxy or load balancer) end TLS before it?", o->cert,
                     tw_identity_subject(self->id));
        else
            refusal_hint(hint, sizeof(hint), o, self);
        return mail_err_set(e, MAIL_EXIT_REFUSED_BY_PEER, "the invoice "
                            "server at %s refused our certificate (HTTP 400 "
                            "\"%s\", nginx's answer when its "
                            "ssl_verify_client refuses a client): %s", url, nginx,
                            hint);
    }
    server_words(body, len, words, sizeof(words));
    if (status == 403) {
        /* Suggest a rule for our identity: by organisation, else by CN;
         * for the role the route needs (mail-server only GETs). */
        const char *field = "O", *value = tw_identity_field(self->id, "O", 0);
        const char *role;

        url_path(url, path, sizeof(path));
        role = route_role("GET", path);
        if (value == NULL) {
            field = "CN";
            value = tw_identity_field(self->id, "CN", 0);
        }
        snprintf(hint, sizeof(hint), ". GET %s needs the role '%s', which "
                 "our certificate %s (%s) does not have: ask the invoice "
                 "server's operator for a rule such as --allow '%s %s=%s%s%s'",
                 path, role, o->cert, tw_identity_subject(self->id), role,
                 field, value && strchr(value, ' ') ? "\"" : "",
                 value ? value : "...",
                 value && strchr(value, ' ') ? "\"" : "");
    } else if (status == 404) {
        snprintf(hint, sizeof(hint), ": is --url the invoice server's "
                 "address?");
    } else if (status >= 300 && status < 400) {
        snprintf(hint, sizeof(hint), ": mail-server does not follow "
                 "redirects; give the final address in --url");
    }
    return mail_err_set(e, MAIL_EXIT_HTTP, "the invoice server answered %s "
                        "with HTTP %ld %s%s%s%s", url, status,
                        status_text(status), words[0] ? ": " : "", words,
                        hint);
}
