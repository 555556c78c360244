/*
 * sync.h - the parts of `mail-server sync`: pages of invoices (page.c),
 * messages (mime.c), delivery (smtp.c) and the record of what was sent
 * (state.c).  sync.c runs them in order.
 */
#ifndef MAIL_SYNC_H
#define MAIL_SYNC_H

#include "mail.h"

/* ------------------------------------------------------- page.c: /invoices */

/* One invoice as the server sent it, checked: every string is UTF-8 with no
 * control character; number and email are safe in headers.  Pointers are
 * owned by the page. */
typedef struct mail_invoice {
    const char *number;    /* 1-64 printable ASCII characters */
    const char *email;     /* an addr-spec (see mail_addr_valid) */
    const char *firstname, *lastname; /* "" when absent */
    const char *price;     /* "10.50USD", or "" */
    const char *created_at; /* RFC 3339, or "" */
} mail_invoice;

typedef struct mail_page {
    void *root;       /* the parsed JSON (json_t) */
    size_t count;     /* invoices on the page */
    const char *next; /* the cursor of the next page; NULL on the last */
} mail_page;

/* Parse {"invoices":[...],"next":CURSOR-or-null}; exit 7 when it is not. */
int mail_page_parse(mail_page *p, const char *body, size_t len,
                    const char *url, mail_err *e);
/* The idx-th invoice: 0, or -1 with `why` (and inv->number when known). */
int mail_page_invoice(const mail_page *p, size_t idx, mail_invoice *inv,
                      char *why, size_t why_len);
void mail_page_free(mail_page *p);

/* -------------------------------------------------------- mime.c: messages */

#define MAIL_ADDR_MAX 254 /* RFC 5321 section 4.5.3.1.3, path minus <> */

/* Whether `addr` is an addr-spec we put in headers and the envelope as it
 * is: dot-atom@domain, ASCII, nothing to quote (so nothing to smuggle). */
int mail_addr_valid(const char *addr);

typedef struct mail_sender {
    char name[256];               /* display name, "" for none */
    char addr[MAIL_ADDR_MAX + 1];
} mail_sender;

/* "addr@example.com" or "Name <addr@example.com>". */
int mail_sender_parse(const char *text, mail_sender *s, mail_err *e);

/* "<invoice-NUMBER@HOST>": the same for every attempt at one invoice, so a
 * repeated mail is recognisable as the same message.  0, or -1 when it
 * does not fit in `len`. */
int mail_message_id(const char *number, const char *host, char *buf,
                    size_t len);

/* The RFC 5322 / MIME message for an invoice: CRLF line endings, lines of
 * at most 78 characters, non-ASCII names as RFC 2047 encoded-words, a
 * text/plain UTF-8 body (quoted-printable when not plain ASCII).  Returns
 * a malloc'd buffer (free()) and its length, or NULL when out of memory. */
char *mail_render(const mail_invoice *inv, const mail_sender *from,
                  const char *message_id, time_t now, size_t *len);

/* -------------------------------------------------------- smtp.c: delivery */

typedef struct mail_smtp mail_smtp;

enum mail_smtp_result {
    MAIL_SMTP_SENT = 0,  /* the SMTP server accepted the message */
    MAIL_SMTP_REFUSED,   /* it refused this message or recipient */
    MAIL_SMTP_DOWN       /* it cannot be used now (after retries) */
};

/* smtp:// or smtps:// with a host; exit 2 otherwise. */
int mail_smtp_check_url(const char *url, mail_err *e);
/* With `password` (NULL: none, or in the URL) for the user in o->smtp. */
mail_smtp *mail_smtp_new(const mail_options *o, const mail_sender *from,
                         const char *password, mail_err *e);
/* --smtp-password-file's password for the URL's user, or NULL with `e`
 * (exit 2) when the URL names no user or has a password of its own. */
char *mail_smtp_read_password(const mail_options *o, mail_err *e);
/* Send `msg` to `rcpt`; on anything but SENT, `e` says why. */
enum mail_smtp_result mail_smtp_send(mail_smtp *s, const char *rcpt,
                                     const char *msg, size_t len, mail_err *e);
void mail_smtp_free(mail_smtp *s);

/* -------------------------------------------------- state.c: what was sent */

typedef struct mail_state mail_state;

/* Open (create) the state file for the invoice server at `url`; only one
 * sync may use a state file at a time. */
mail_state *mail_state_open(const char *path, const char *url, mail_err *e);
/* 1 when the invoice was accepted by SMTP before, 0 when not, -1. */
int mail_state_is_sent(mail_state *s, const char *number, mail_err *e);
/* Record, durably, that the SMTP server accepted the invoice's message. */
int mail_state_mark_sent(mail_state *s, const char *number,
                         const char *message_id, const char *rcpt,
                         mail_err *e);
/* Remember the last failure of an invoice (for the operator; best effort). */
void mail_state_note_failure(mail_state *s, const char *number,
                             const char *why);
/* The cursor to start the next pass from ("" at the start). */
int mail_state_cursor(mail_state *s, char *buf, size_t len, mail_err *e);
int mail_state_set_cursor(mail_state *s, const char *cursor, mail_err *e);
void mail_state_close(mail_state *s);

#endif /* MAIL_SYNC_H */
