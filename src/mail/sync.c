/*
 * sync.c - `mail-server sync`: page through the invoices, mail the new
 * ones, remember them.
 *
 * Per invoice, in this order: skip it when the state file says it was
 * sent; render it with a Message-ID derived from its number; hand it to the
 * SMTP server; record it as sent only after the SMTP server accepted it.
 * A crash between the acceptance and the record repeats that one mail, with
 * the same Message-ID; nothing is ever lost.  A refused recipient is
 * reported, left unsent, and tried again next pass.
 *
 * The cursor stored in the state file moves past a page only when every
 * invoice on it is sent, so a pass re-reads at most the pages from the
 * first unsent invoice on (and the last page, whose end has no cursor).
 */
#include "sync.h"
#include "util.h"

#include <curl/curl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sync_ctx {
    const mail_options *o;
    mail_self self;
    mail_sender from;
    mail_state *state;
    char *smtp_password; /* --smtp-password-file's; wiped at the end */
} sync_ctx;

typedef struct pass {
    int sent, already, refused, bad;
    enum mail_exit exit; /* the pass's outcome */
    int fatal;           /* the state file failed: stop for good */
} pass;

/* URL/invoices?after=CURSOR&limit=50, the cursor URL-encoded. */
static char *page_url(const char *base, const char *cursor, mail_err *e)
{
    CURLU *u = curl_url();
    char *path = NULL, *url = NULL, *copy = NULL, *newpath = NULL;
    char limit[32];
    size_t n;

    if (u == NULL || curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto err;
    n = strlen(path);
    if ((newpath = malloc(n + sizeof("/invoices"))) == NULL)
        goto err;
    snprintf(newpath, n + sizeof("/invoices"), "%s%s", path,
             n > 0 && path[n - 1] == '/' ? "invoices" : "/invoices");
    snprintf(limit, sizeof(limit), "limit=%d", MAIL_PAGE_LIMIT);
    if (curl_url_set(u, CURLUPART_PATH, newpath, 0) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_QUERY, NULL, 0) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) != CURLUE_OK)
        goto err;
    if (cursor[0] != '\0') {
        char *after = malloc(strlen(cursor) + sizeof("after="));

        if (after == NULL)
            goto err;
        snprintf(after, strlen(cursor) + sizeof("after="), "after=%s",
                 cursor);
        if (curl_url_set(u, CURLUPART_QUERY, after,
                         CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK) {
            free(after);
            goto err;
        }
        free(after);
    }
    if (curl_url_set(u, CURLUPART_QUERY, limit, CURLU_APPENDQUERY) !=
            CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
        goto err;
    copy = strdup(url);
err:
    if (copy == NULL)
        mail_err_set(e, MAIL_EXIT_OTHER, "cannot build the page URL from "
                     "--url %s", base);
    curl_free(path);
    curl_free(url);
    free(newpath);
    curl_url_cleanup(u);
    return copy;
}

/* Mail one invoice. 0 go on, -1 stop the pass (p->exit says why). */
static int mail_one(sync_ctx *c, mail_smtp *smtp, const mail_invoice *inv,
                    pass *p)
{
    char message_id[512];
    size_t len;
    char *msg;
    mail_err e;
    int sent = mail_state_is_sent(c->state, inv->number, &e);

    if (sent != 0) {
        if (sent < 0)
            goto fatal;
        p->already++;
        return 0;
    }
    if (mail_message_id(inv->number, c->self.host, message_id,
                        sizeof(message_id)) < 0 ||
        (msg = mail_render(inv, &c->from, message_id, time(NULL), &len)) ==
            NULL) {
        mail_err_set(&e, MAIL_EXIT_OTHER, "cannot render invoice %s: out of "
                     "memory", inv->number);
        goto fatal;
    }
    switch (mail_smtp_send(smtp, inv->email, msg, len, &e)) {
    case MAIL_SMTP_SENT:
        free(msg);
        if (mail_state_mark_sent(c->state, inv->number, message_id,
                                 inv->email, &e) < 0)
            goto fatal;
        mail_log("sent invoice %s to %s (Message-ID %s)", inv->number,
                 inv->email, message_id);
        p->sent++;
        return 0;
    case MAIL_SMTP_REFUSED:
        free(msg);
        mail_log("invoice %s not sent: %s; it stays unsent and is tried "
                 "again next pass", inv->number, e.msg);
        mail_state_note_failure(c->state, inv->number, e.msg);
        p->refused++;
        p->exit = MAIL_EXIT_SMTP;
        return 0;
    case MAIL_SMTP_DOWN:
        free(msg);
        mail_log("invoice %s not sent: %s; stopping this pass", inv->number,
                 e.msg);
        mail_state_note_failure(c->state, inv->number, e.msg);
        p->refused++;
        p->exit = MAIL_EXIT_SMTP;
        return -1;
    }
    return 0;
fatal:
    mail_log("%s", e.msg);
    p->exit = e.exit;
    p->fatal = 1;
    return -1;
}

/* Every invoice of one page; 0 when all of them are sent now. */
static int send_page(sync_ctx *c, mail_smtp *smtp, const mail_page *page,
                     pass *p, int *stop)
{
    int all_sent = 1;

    for (size_t i = 0; i < page->count && !*stop; i++) {
        mail_invoice inv;
        char why[300];
        int before = p->refused;

        if (mail_stop) {
            *stop = 1;
            break;
        }
        if (mail_page_invoice(page, i, &inv, why, sizeof(why)) < 0) {
            mail_log("invoice %s skipped: %s", inv.number ? inv.number : "?",
                     why);
            if (inv.number != NULL)
                mail_state_note_failure(c->state, inv.number, why);
            p->bad++;
            if (p->exit == MAIL_EXIT_OK)
                p->exit = MAIL_EXIT_RESPONSE;
            all_sent = 0;
            continue;
        }
        if (mail_one(c, smtp, &inv, p) < 0)
            *stop = 1;
        if (p->refused != before)
            all_sent = 0;
    }
    return all_sent && !*stop ? 0 : -1;
}

static pass run_pass(sync_ctx *c)
{
    pass p = {0};
    mail_https *https = NULL;
    mail_smtp *smtp = NULL;
    char cursor[256];
    int may_advance = 1, stop = 0;
    mail_err e;

    if (mail_state_cursor(c->state, cursor, sizeof(cursor), &e) < 0 ||
        (https = mail_https_new(&c->o->tls, &c->self, &e)) == NULL ||
        (smtp = mail_smtp_new(c->o, &c->from, c->smtp_password, &e)) == NULL) {
        mail_log("%s", e.msg);
        p.exit = e.exit;
        p.fatal = 1;
        goto done;
    }
    while (!stop) {
        mail_body body;
        mail_page page;
        char *url = page_url(c->o->url, cursor, &e);

        if (url == NULL || mail_https_get(https, url, &body, &e) < 0) {
            mail_log("%s", e.msg);
            p.exit = e.exit;
            free(url);
            break;
        }
        if (mail_page_parse(&page, body.data, body.len, url, &e) < 0) {
            mail_log("%s", e.msg);
            p.exit = e.exit;
            mail_body_free(&body);
            free(url);
            break;
        }
        mail_body_free(&body);
        free(url);
        if (send_page(c, smtp, &page, &p, &stop) < 0)
            may_advance = 0;
        if (!stop && page.next != NULL) {
            if (may_advance &&
                mail_state_set_cursor(c->state, page.next, &e) < 0) {
                mail_log("%s", e.msg);
                p.exit = e.exit;
                p.fatal = 1;
                stop = 1;
            }
            snprintf(cursor, sizeof(cursor), "%s", page.next);
        } else {
            stop = 1;
        }
        mail_page_free(&page);
    }
done:
    mail_smtp_free(smtp);
    mail_https_free(https);
    return p;
}

int mail_sync(const mail_options *o)
{
    sync_ctx c = {.o = o};
    tw_renewal *renewal = NULL;
    atomic_int changed = 0;
    mail_err e;
    int rc = MAIL_EXIT_OK;

    if (mail_renewal_prepare(o, 0, &e) < 0 ||
        mail_inputs_check(&o->tls, o->url, &c.self, &e) < 0 ||
        mail_smtp_check_url(o->smtp, &e) < 0 ||
        (o->smtp_password_file != NULL &&
         (c.smtp_password = mail_smtp_read_password(o, &e)) == NULL) ||
        mail_sender_parse(o->from, &c.from, &e) < 0 ||
        (c.state = mail_state_open(o->state, o->url, &e)) == NULL) {
        fprintf(stderr, "mail-server: %s\n", e.msg);
        mail_self_clear(&c.self);
        twu_free_passphrase(c.smtp_password);
        return (int)e.exit;
    }
    if (mail_signals_install() < 0) {
        fprintf(stderr, "mail-server: cannot install signal handlers\n");
        rc = MAIL_EXIT_OTHER;
        goto done;
    }
    if ((o->renew != NULL || o->crl_url != NULL) &&
        (renewal = mail_renewal_start(o, &changed, &e)) == NULL) {
        fprintf(stderr, "mail-server: %s\n", e.msg);
        rc = (int)e.exit;
        goto done;
    }
    for (;;) {
        pass p;

        /* New files from the renewal: this pass reads them (what we know
         * of our own certificate too, for the hints). */
        if (atomic_exchange(&changed, 0) != 0) {
            mail_self_clear(&c.self);
            if (mail_inputs_check(&o->tls, o->url, &c.self, &e) < 0)
                mail_log("%s", e.msg);
        }
        p = run_pass(&c);

        if (p.sent || p.refused || p.bad || o->once)
            mail_log("pass done: %d sent, %d not accepted by SMTP, %d "
                     "malformed, %d sent before", p.sent, p.refused, p.bad,
                     p.already);
        rc = (int)p.exit;
        if (p.fatal || o->once || mail_stop)
            break;
        if (mail_sleep_ms(o->interval * 1000L))
            break;
    }
    if (mail_stop) {
        mail_log("stopped by signal %d between two mails", (int)mail_stop);
        if (!o->once)
            rc = MAIL_EXIT_OK;
    }
done:
    mail_renewal_stop(renewal);
    mail_state_close(c.state);
    mail_self_clear(&c.self);
    twu_free_passphrase(c.smtp_password);
    return rc;
}
