/*
 * renew_cert.c - one enrolment or renewal with twoway-ca serve.
 *
 * A new key every time; the CSR names nothing (the CA knows what it
 * certifies: the token's subject and names, or those of the certificate
 * presented over mutual TLS) and only proves possession of the key.  The
 * answer is checked before anything is written: it certifies our new key,
 * one of the CA file's CAs signed it, and a renewal keeps the subject.
 */
#include "renew_internal.h"

#include <jansson.h>

#include <stdlib.h>
#include <string.h>

int tw__cert_dates(const char *cert_file, time_t *not_before,
                   time_t *not_after, tw_err *err)
{
    tw_cert *cert = tw_cert_load_file(cert_file, err);
    tw_identity *id = cert ? tw_identity_from_cert(cert, err) : NULL;

    if (id != NULL) {
        *not_before = tw_identity_not_before(id);
        *not_after = tw_identity_not_after(id);
    }
    tw_identity_free(id);
    tw_cert_free(cert);
    return id != NULL ? 0 : -1;
}

/* A refusal of serve ({"reason","message"}) or any other answer, said. */
static int refused(const tw__http_reply *r, const char *doing, const char *url,
                   tw_err *err)
{
    json_t *o = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0,
                           NULL);
    const char *reason = json_string_value(json_object_get(o, "reason"));
    const char *message = json_string_value(json_object_get(o, "message"));

    if (reason != NULL && message != NULL)
        twu_err(err, TW_ERR_REJECTED_BY_PEER, "the CA refused the %s (HTTP "
                "%ld, reason %s): %s", doing, r->status, reason, message);
    else
        twu_err(err, TW_ERR_PROTOCOL, "the %s got HTTP %ld from %s, not a "
                "certificate: is this URL twoway-ca serve?", doing, r->status,
                url);
    json_decref(o);
    return -1;
}

/* The certificate of a 201 answer, checked against our key and the CA. */
static tw_cert *answer_cert(const tw_renewal_options *o, const tw__http_reply *r,
                            const tw_key *key, const char **pem, json_t **doc,
                            tw_err *err)
{
    tw_cert *cert = NULL;
    tw_trust *trust = NULL;
    const char *text;

    *doc = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
    if ((text = json_string_value(json_object_get(*doc, "certificate"))) == NULL) {
        twu_err(err, TW_ERR_PROTOCOL, "the CA's answer holds no \"certificate\"");
        return NULL;
    }
    if ((cert = tw_cert_parse(text, strlen(text), err)) == NULL)
        return NULL;
    if (!tw_cert_matches_key(cert, key)) {
        twu_err(err, TW_ERR_PROTOCOL, "the CA answered with a certificate for "
                "another key than the one we sent");
        goto err;
    }
    if ((trust = tw_trust_load(o->ca_file, NULL, err)) == NULL ||
        tw_trust_verify(trust, cert, 0, NULL, err) < 0)
        goto err;
    tw_trust_free(trust);
    *pem = text;
    return cert;
err:
    tw_trust_free(trust);
    tw_cert_free(cert);
    return NULL;
}

/* A renewal keeps the subject: anything else means a confused CA. */
static int same_subject(const char *cert_file, const tw_identity *now,
                        tw_err *err)
{
    tw_cert *old = tw_cert_load_file(cert_file, err);
    tw_identity *was = old ? tw_identity_from_cert(old, err) : NULL;
    int ok = was != NULL &&
             strcmp(tw_identity_subject(was), tw_identity_subject(now)) == 0;

    if (was != NULL && !ok)
        twu_err(err, TW_ERR_PROTOCOL, "the CA renewed %s as %s: refusing a "
                "certificate for another subject",
                tw_identity_subject(was), tw_identity_subject(now));
    tw_identity_free(was);
    tw_cert_free(old);
    return ok ? 0 : -1;
}

int tw__renew_cert(const tw_renewal_options *o, const atomic_int *stop,
                   const char *token, char *serial, size_t len, tw_err *err)
{
    const char *doing = token != NULL ? "enrolment" : "renewal";
    tw__http http = {.ca_file = o->ca_file, .user_agent = o->user_agent,
                     .stop = stop};
    tw__http_reply reply = {0};
    tw_key *key = NULL;
    tw_cert *cert = NULL;
    tw_identity *id = NULL;
    json_t *req = NULL, *doc = NULL;
    char *url = NULL, *csr = NULL, *body = NULL, *key_pem = NULL;
    const char *cert_pem;
    size_t key_len = 0;
    int rc = -1;

    if (token == NULL) {
        http.cert_file = o->cert_file;
        http.key_file = o->key_file;
    }
    url = tw__url_for(token ? o->enroll_url : o->renew_url,
                      token ? "/v1/enroll" : "/v1/renew", 1,
                      token ? "--enroll" : "--renew", err);
    if (url == NULL ||
        (key = tw_key_generate(o->key_type, err)) == NULL ||
        (csr = tw_csr_pem(key, NULL, err)) == NULL)
        goto done;
    req = token ? json_pack("{s:s, s:s}", "token", token, "csr", csr)
                : json_pack("{s:s}", "csr", csr);
    if (req == NULL || (body = json_dumps(req, JSON_COMPACT)) == NULL) {
        twu_err_nomem(err);
        goto done;
    }
    if (tw__http_exchange(&http, url, body, NULL, &reply, err) < 0)
        goto done;
    if (reply.status != 201) {
        refused(&reply, doing, url, err);
        goto done;
    }
    if ((cert = answer_cert(o, &reply, key, &cert_pem, &doc, err)) == NULL ||
        (id = tw_identity_from_cert(cert, err)) == NULL ||
        (token == NULL && same_subject(o->cert_file, id, err) < 0) ||
        (key_pem = tw_key_pem(key, NULL, &key_len, err)) == NULL ||
        tw__pair_write(o->cert_file, o->key_file, cert_pem, key_pem, key_len,
                       err) < 0)
        goto done;
    snprintf(serial, len, "%s", tw_identity_serial(id));
    rc = 0;
done:
    if (key_pem != NULL)
        tw_key_pem_free(key_pem, key_len);
    json_decref(doc);
    json_decref(req);
    free(body);
    tw__http_reply_free(&reply);
    tw_identity_free(id);
    tw_cert_free(cert);
    twu_free(csr);
    tw_key_free(key);
    twu_free(url);
    return rc;
}
