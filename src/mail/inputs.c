/*
 * inputs.c - check what the operator gave us before connecting anywhere.
 *
 * A missing file, a key that is not the certificate's, a CRL from another
 * CA or a URL that is not https:// are the operator's to fix, and they get
 * a sentence naming the file or option (exit 2) instead of a handshake
 * failure that would blame the network or the peer.
 */
#include "mail.h"
#include "util.h"
#include "twoway_pki.h"

#include <curl/curl.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mail_self_clear(mail_self *self)
{
    tw_identity_free(self->id);
    tw_policy_free(self->expect);
    free(self->host);
    twu_free_passphrase(self->key_pass);
    memset(self, 0, sizeof(*self));
}

/* The host of an https:// URL (lower case, malloc'd), or NULL with `e`. */
static char *https_host(const char *url, mail_err *e)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *copy = NULL;
    CURLUcode rc;

    if (u == NULL) {
        mail_err_set(e, MAIL_EXIT_OTHER, "out of memory");
        return NULL;
    }
    rc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (rc != CURLUE_OK) {
        mail_err_set(e, MAIL_EXIT_USAGE, "--url '%s' is not a URL (%s): "
                     "give one like https://invoices.abc.example:3100/",
                     url, curl_url_strerror(rc));
        goto done;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        strcmp(scheme, "https") != 0) {
        mail_err_set(e, MAIL_EXIT_USAGE, "--url '%s' must start with "
                     "https://: the invoice server only speaks mutual TLS",
                     url);
        goto done;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        host[0] == '\0') {
        mail_err_set(e, MAIL_EXIT_USAGE, "--url '%s' names no host", url);
        goto done;
    }
    if ((copy = strdup(host)) == NULL) {
        mail_err_set(e, MAIL_EXIT_OTHER, "out of memory");
        goto done;
    }
    for (char *p = copy; *p; p++)
        *p = (char)tolower((unsigned char)*p);
done:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return copy;
}

/* Our certificate, its key, and whether they belong together. */
static int check_keypair(const mail_tls_options *o, mail_self *self,
                         mail_err *e)
{
    tw_err err;
    tw_cert *cert = tw_cert_load_file(o->cert, &err);
    tw_key *key = NULL;
    int rc = -1;

    if (cert == NULL) {
        mail_err_set(e, MAIL_EXIT_USAGE, "--cert: %s", err.msg);
        goto done;
    }
    if (o->passphrase_file != NULL &&
        (self->key_pass = twu_read_passphrase_file(
             o->passphrase_file, "--passphrase-file", &err)) == NULL) {
        mail_err_set(e, MAIL_EXIT_USAGE, "%s", err.msg);
        goto done;
    }
    if ((key = tw_key_load_file(o->key, self->key_pass, &err)) == NULL) {
        if (self->key_pass == NULL && tw_key_file_is_encrypted(o->key, NULL) == 1)
            mail_err_set(e, MAIL_EXIT_USAGE, "--key: the private key %s is "
                         "encrypted: give its passphrase with "
                         "--passphrase-file FILE", o->key);
        else
            mail_err_set(e, MAIL_EXIT_USAGE, "--key: %s", err.msg);
        goto done;
    }
    if (!tw_cert_matches_key(cert, key)) {
        mail_err_set(e, MAIL_EXIT_USAGE, "%s and %s do not belong together: "
                     "the key is not the one %s certifies; give the key that "
                     "was made with that certificate", o->cert, o->key,
                     o->cert);
        goto done;
    }
    if ((self->id = tw_identity_from_cert(cert, &err)) == NULL) {
        mail_err_set(e, MAIL_EXIT_USAGE, "--cert: %s", err.msg);
        goto done;
    }
    rc = 0;
done:
    tw_key_free(key);
    tw_cert_free(cert);
    return rc;
}

static void warn_if_expired(const mail_tls_options *o, const mail_self *self)
{
    char when[32];
    time_t now = time(NULL);

    if (tw_identity_not_after(self->id) < now) {
        mail_rfc3339(tw_identity_not_after(self->id), when);
        fprintf(stderr, "mail-server: warning: %s (%s) expired on %s: the "
                "invoice server will refuse it; issue a new one\n", o->cert,
                tw_identity_subject(self->id), when);
    } else if (tw_identity_not_before(self->id) > now) {
        mail_rfc3339(tw_identity_not_before(self->id), when);
        fprintf(stderr, "mail-server: warning: %s (%s) is not valid before "
                "%s: check this machine's clock\n", o->cert,
                tw_identity_subject(self->id), when);
    }
}

int mail_inputs_check(const mail_tls_options *o, const char *url,
                      mail_self *self, mail_err *e)
{
    tw_trust *trust;
    tw_err err;

    memset(self, 0, sizeof(*self));
    if ((self->host = https_host(url, e)) == NULL)
        goto err;
    if (check_keypair(o, self, e) < 0)
        goto err;
    /* The CA file (and CRL) as libtwoway reads them: a CRL from another CA
     * is refused here, not during the handshake. */
    if ((trust = tw_trust_load(o->ca, o->crl, &err)) == NULL) {
        mail_err_set(e, MAIL_EXIT_USAGE, "%s: %s",
                     err.cls == TW_ERR_INPUT && o->crl != NULL &&
                             strstr(err.msg, o->crl) != NULL
                         ? "--crl" : "--ca", err.msg);
        goto err;
    }
    tw_trust_free(trust);
    if (o->nexpect > 0) {
        if ((self->expect = tw_policy_new(&err)) == NULL) {
            mail_err_set(e, MAIL_EXIT_OTHER, "%s", err.msg);
            goto err;
        }
        for (int i = 0; i < o->nexpect; i++)
            if (tw_policy_add_expectation(self->expect, o->expect[i],
                                          &err) < 0) {
                mail_err_set(e, MAIL_EXIT_USAGE, "--expect-server '%s': %s",
                             o->expect[i], err.msg);
                goto err;
            }
    }
    warn_if_expired(o, self);
    return 0;
err:
    mail_self_clear(self);
    return -1;
}
