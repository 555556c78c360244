/*
 * mail.h - what mail-server's files share: options, exit codes, the error
 * value every step fills, and the small interfaces between the steps.
 *
 * Flow: main.c parses arguments into mail_options and calls mail_fetch or
 * mail_sync.  Both check the operator's files first (inputs.c), talk to the
 * invoice server through https.c, and turn any failure into one sentence and
 * one exit code (errors.c).  sync also reads pages (page.c), renders messages
 * (mime.c), sends them (smtp.c) and remembers what was sent (state.c).
 *
 * Ownership: strings in mail_options point into argv and live as long as
 * the process; every *_new/_open has a matching *_free/_close that accepts
 * NULL.
 */
#ifndef MAIL_H
#define MAIL_H

#include "twoway.h"
#include "util.h"

#include <openssl/x509.h>

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#define MAIL_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Exit codes, documented in --help and mail-server(8). */
enum mail_exit {
    MAIL_EXIT_OK = 0,
    MAIL_EXIT_OTHER = 1,         /* anything else: state file, memory, ... */
    MAIL_EXIT_USAGE = 2,         /* bad option, unusable file or URL */
    MAIL_EXIT_REFUSED_BY_PEER = 3, /* the invoice server refused us */
    MAIL_EXIT_PEER_REFUSED = 4,  /* we refused the invoice server */
    MAIL_EXIT_NETWORK = 5,       /* connection refused, timeout, DNS */
    MAIL_EXIT_HTTP = 6,          /* an HTTP error status (403, 404, 500...) */
    MAIL_EXIT_RESPONSE = 7,      /* garbage or oversized answer */
    MAIL_EXIT_SMTP = 8           /* sync: a mail could not be delivered */
};

/* The most a response body may hold: beyond it the answer is refused. */
#define MAIL_MAX_RESPONSE (16u * 1024 * 1024)
/* The page size sync asks the invoice server for. */
#define MAIL_PAGE_LIMIT 50
/* The most --expect-server rules (alternatives). */
#define MAIL_MAX_EXPECT 16

/* A failure: the exit code it maps to and a sentence for the operator. */
typedef struct mail_err {
    enum mail_exit exit;
    char msg[2048];
} mail_err;

/* Set `e` and return -1, so that callers can `return mail_err_set(...)`. */
int mail_err_set(mail_err *e, enum mail_exit code, const char *fmt, ...)
    MAIL_PRINTF(3, 4);

/* How to reach the invoice server. */
typedef struct mail_tls_options {
    const char *cert, *key, *ca, *crl;
    const char *passphrase_file; /* for an encrypted --key; NULL: none */
    const char *expect[MAIL_MAX_EXPECT]; /* --expect-server, any may match */
    int nexpect;
    long connect_timeout_ms, timeout_ms;
    int retries; /* extra attempts after a network error */
} mail_tls_options;

typedef struct mail_options {
    mail_tls_options tls;
    const char *url;
    /* sync only */
    const char *state, *smtp, *from, *smtp_ca;
    const char *smtp_password_file; /* NULL: none, or in the URL */
    int smtp_insecure, smtp_require_tls;
    long smtp_timeout_ms;
    long interval; /* seconds between passes; 0 with once */
    int once;
    /* Renewal (twoway-ca serve): enrol, renew, fetch the CRL. */
    const char *enroll, *token_file, *renew, *crl_url;
    long crl_refresh; /* seconds */
    twu_conf conf;    /* --config FILE: its strings live here */
} mail_options;

int mail_fetch(const mail_options *o);
int mail_sync(const mail_options *o);

/* --------------------------------------------- inputs.c: before connecting */

/* What we learnt about our own certificate while checking the files. */
typedef struct mail_self {
    tw_identity *id; /* our certificate's identity */
    tw_policy *expect; /* NULL without --expect-server */
    char *host;        /* host of the URL, lower case, for Message-IDs */
    char *key_pass;    /* --passphrase-file's passphrase; wiped by clear */
} mail_self;

/* Check --cert, --key (and that they belong together), --ca, --crl and
 * --expect-server, and that `url` is an https:// URL.  Warns on stderr when
 * our certificate has expired (the server will say so too). */
int mail_inputs_check(const mail_tls_options *o, const char *url,
                      mail_self *self, mail_err *e);
void mail_self_clear(mail_self *self);

/* --------------------------------------------- https.c: the invoice server */

/* A response body, capped at MAIL_MAX_RESPONSE. */
typedef struct mail_body {
    char *data; /* NUL-terminated; mail_body_free */
    size_t len;
} mail_body;

typedef struct mail_https mail_https;

/* A client for the invoice server; `o` and `self` must outlive it. */
mail_https *mail_https_new(const mail_tls_options *o, const mail_self *self,
                           mail_err *e);
/* GET `url` into `out` (2xx only).  Retries network failures with backoff;
 * every other failure is final.  -1 with `e` set. */
int mail_https_get(mail_https *h, const char *url, mail_body *out,
                   mail_err *e);
void mail_https_free(mail_https *h);
void mail_body_free(mail_body *b);

/* --------------------------------------- errors.c: failures into sentences */

/* What the TLS callbacks saw during one transfer. */
typedef struct mail_tls_seen {
    int verify_error;       /* first X509_V_ERR_*, 0 when none */
    int verify_depth;
    X509 *verify_cert;      /* the certificate that failed (a reference) */
    X509 *server_cert;      /* the server's certificate (a reference) */
    int expectation_failed; /* --expect-server did not match */
    int alert_received;     /* fatal alert from the server, -1 when none */
    int handshake_done;
    int version;            /* TLS version of the handshake (0x0304...) */
} mail_tls_seen;

/* Everything known about a failed transfer to the invoice server. */
typedef struct mail_transfer {
    int curl_code;            /* CURLcode */
    const char *curl_message; /* curl's error buffer (may be empty) */
    long verify_result;       /* CURLINFO_SSL_VERIFYRESULT */
    const mail_tls_seen *seen;
    int too_big;              /* the body passed MAIL_MAX_RESPONSE */
    int answered;             /* an HTTP status line came before the end */
    const char *url;
} mail_transfer;

/* Map a failed transfer into `e`: the side that refused, the certificate
 * (file, subject, issuer), the fix, and the exit code. */
int mail_err_transfer(mail_err *e, const mail_transfer *t,
                      const mail_tls_options *o, const mail_self *self);
/* The server refused us with TLS alert `alert` (exit 3). */
int mail_err_refused(mail_err *e, int alert, const mail_tls_options *o,
                     const mail_self *self);
/* An HTTP error status: the server's JSON `reason` when it gave one. */
int mail_err_http(mail_err *e, long status, const char *body, size_t len,
                  const char *url, const mail_tls_options *o,
                  const mail_self *self);
/* The identity of a certificate the TLS callbacks kept (NULL for NULL, or
 * when it cannot be read); the caller frees it. */
tw_identity *mail_identity_of(X509 *cert);
/* Whether `e` is worth retrying (a network failure). */
int mail_err_retriable(const mail_err *e);

/* --------------------------------------------- signals.c: stopping cleanly */

/* Set by SIGTERM/SIGINT once mail_signals_install ran. */
extern volatile sig_atomic_t mail_stop;
int mail_signals_install(void);
/* Sleep `ms`, returning early (1) when a stop was asked for. */
int mail_sleep_ms(long ms);
/* Backoff before retry number `attempt` (1, 2, ...): 1 s, 2 s, 4 s ... 30 s. */
long mail_backoff_ms(int attempt);
/* "2026-11-29T08:10:34Z" into buf (21 bytes). */
void mail_rfc3339(time_t t, char buf[32]);
/* A log line on stderr, prefixed with the time and "mail-server: ". */
void mail_log(const char *fmt, ...) MAIL_PRINTF(1, 2);
/* --log-level (TWU_LOG_*, 0: info) and --log-format json of mail_log. */
extern int mail_log_level, mail_log_json;

/* renewal.c: our certificate and CRL kept current by twoway-ca serve.
 * check: the options go together (-1, said).  prepare: before the files
 * are read, finish a renewal a crash interrupted, enrol, fetch a first CRL;
 * `once` (fetch) also renews when due and fetches the CRL.  start (sync):
 * a thread that renews and fetches; `*changed` is set when new files are in
 * place.  NULL when no renewal was asked for (or on error, said in `e`). */
int mail_renewal_check(const mail_options *o);
int mail_renewal_prepare(const mail_options *o, int once, mail_err *e);
typedef struct tw_renewal tw_renewal;
tw_renewal *mail_renewal_start(const mail_options *o, atomic_int *changed,
                               mail_err *e);
void mail_renewal_stop(tw_renewal *r);

#endif /* MAIL_H */
