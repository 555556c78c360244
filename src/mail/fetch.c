/*
 * fetch.c - `mail-server fetch`: one GET, the body on stdout.
 *
 * The seed's mail_server.js, with its certificate problems explained.  The
 * body is printed as it came (no newline added) once it is known to be
 * JSON: a page of HTML from the wrong server is an error, not output.
 */
#include "mail.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

int mail_fetch(const mail_options *o)
{
    mail_self self;
    mail_https *h = NULL;
    mail_body body = {0};
    json_error_t jerr;
    json_t *root;
    mail_err e;

    if (mail_renewal_prepare(o, 1, &e) < 0 ||
        mail_inputs_check(&o->tls, o->url, &self, &e) < 0)
        goto fail;
    if ((h = mail_https_new(&o->tls, &self, &e)) == NULL ||
        mail_https_get(h, o->url, &body, &e) < 0)
        goto fail;
    if ((root = json_loadb(body.data, body.len, 0, &jerr)) == NULL) {
        mail_err_set(&e, MAIL_EXIT_RESPONSE,
                     "the answer of %s is not JSON (%s, at byte %d): is "
                     "--url the invoice server?", o->url, jerr.text,
                     jerr.position);
        goto fail;
    }
    json_decref(root);
    if (fwrite(body.data, 1, body.len, stdout) != body.len ||
        fflush(stdout) != 0) {
        mail_err_set(&e, MAIL_EXIT_OTHER, "cannot write to standard output: "
                     "%s", strerror(errno));
        goto fail;
    }
    mail_body_free(&body);
    mail_https_free(h);
    mail_self_clear(&self);
    return MAIL_EXIT_OK;
fail:
    fprintf(stderr, "mail-server: %s\n", e.msg);
    mail_body_free(&body);
    mail_https_free(h);
    mail_self_clear(&self);
    return (int)e.exit;
}
