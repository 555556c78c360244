/*
 * serve_issue.c - the routes that change the CA: POST /v1/enroll (a first
 * certificate for a one-time token), POST /v1/renew (a new certificate,
 * new key, same names, over mTLS with the current one) and POST
 * /v1/revoke (role admin).  Each is one transaction on the worker's own
 * connection to the index: a 201 means the index committed it.
 */
#include "serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A template filled from the CSR of the body (checked: self-signature,
 * no CA:TRUE, key strength, names), and what it asks for; NULL after an
 * answer (400 reason csr, or 500). */
static tw_certgen *read_csr(httpd_req *r, const char *csr, tw_identity **asked)
{
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);

    if (g == NULL) {
        serve_failed(r, &err);
        return NULL;
    }
    if (tw_certgen_from_csr(g, csr, strlen(csr), "the csr field", asked,
                            &err) < 0) {
        serve_refuse(r, 400, REFUSED_BAD_REQUEST, "csr", "%s", err.msg);
        tw_certgen_free(g);
        return NULL;
    }
    return g;
}

/* ------------------------------------------------------------- enroll */

void serve_enroll(httpd_req *r)
{
    static const enum serve_refusal refusal[] = {
        [CA_TOKEN_UNKNOWN] = REFUSED_TOKEN_UNKNOWN,
        [CA_TOKEN_USED] = REFUSED_TOKEN_USED,
        [CA_TOKEN_EXPIRED] = REFUSED_TOKEN_EXPIRED};
    static const char *const sentence[] = {
        [CA_TOKEN_UNKNOWN] = "this token is not one the CA gave out (mistyped, "
                             "or from another CA): ask for a new one",
        [CA_TOKEN_USED] = "this token was already used: a token gives one "
                          "certificate; ask for a new one",
        [CA_TOKEN_EXPIRED] = "this token has expired: ask for a new one"};
    serve_app *app = serve_app_of(r);
    ca_dir *ca = &serve_worker_of(r)->ca;
    json_t *o = serve_body(r);
    const char *token, *csr;
    tw_certgen *g = NULL;
    tw_identity *asked = NULL;
    tw_cert *cert = NULL;
    ca_token t;
    char why[1024], by[32];
    tw_err err;
    int in_tx = 0, result;

    memset(&t, 0, sizeof(t));
    if (o == NULL || (token = serve_member(r, o, "token", 1)) == NULL ||
        (csr = serve_member(r, o, "csr", 1)) == NULL)
        goto done;
    if (!serve_token_well_formed(token)) {
        serve_refuse(r, 400, REFUSED_BAD_REQUEST, "token", "the token must "
                     "be the %d characters twoway-ca token printed",
                     CA_TOKEN_LEN);
        goto done;
    }
    if ((g = read_csr(r, csr, &asked)) == NULL)
        goto done;
    if (cadb_begin(ca->db, ca->db_path, &err) < 0) {
        serve_failed(r, &err);
        goto done;
    }
    in_tx = 1;
    if ((result = cadb_token_take(ca->db, ca->db_path, token, time(NULL), &t,
                                  &err)) < 0) {
        serve_failed(r, &err);
        goto done;
    }
    if (result != CA_TOKEN_OK) {
        httpd_log(httpd_req_server(r), "refused peer=%s reason=%s (enroll)",
                  httpd_req_peer_addr(r), serve_refusal_names[refusal[result]]);
        serve_refuse(r, 403, refusal[result],
                     serve_refusal_names[refusal[result]], "%s",
                     sentence[result]);
        goto done;
    }
    /* Rolled back below: a request that does not fit leaves the token
     * unused.  A CSR without subject and names only proves possession of
     * its key (what libtwoway's services send): it gets what the token is
     * for; any other must ask for exactly that. */
    if (serve_request_is_key_only(asked)) {
        if (serve_apply_token(g, &t, &err) < 0) {
            serve_failed(r, &err);
            goto done;
        }
    } else if (!serve_request_matches_token(asked, &t, why, sizeof(why))) {
        serve_refuse(r, 400, REFUSED_BAD_REQUEST, "csr", "%s", why);
        goto done;
    }
    /* As `issue` does: a server certificate named only by its CN gets the
     * CN as a DNS name too (modern clients ignore the CN). */
    if (tw_certgen_set_purposes(g, t.purposes, &err) < 0 ||
        ((t.purposes & TW_PURPOSE_SERVER) && tw_certgen_san_count(g) == 0 &&
         tw_certgen_add_cn_as_dns(g, &err) < 0) ||
        (cert = serve_sign(app, ca, g, t.lifetime, NULL, &err)) == NULL) {
        serve_failed(r, &err);
        goto done;
    }
    {
        tw_identity *id = tw_identity_from_cert(cert, &err);

        if (id == NULL ||
            cadb_token_set_serial(ca->db, t.hash, tw_identity_serial(id),
                                  &err) < 0 ||
            cadb_commit(ca->db, ca->db_path, &err) < 0) {
            tw_identity_free(id);
            serve_failed(r, &err);
            goto done;
        }
        tw_identity_free(id);
    }
    in_tx = 0;
    atomic_fetch_add(&app->enrolled, 1);
    snprintf(by, sizeof(by), "token:%.12s", t.hash);
    if (serve_audit(app, ca->db, "enroll", cert, by, httpd_req_peer_addr(r), &err) < 0)
        httpd_log(httpd_req_server(r), "error: the certificate was issued "
                  "but not written to the audit log: %s", err.msg);
    serve_issued(r, cert);
done:
    if (in_tx)
        cadb_rollback(ca->db);
    ca_token_clear(&t);
    tw_cert_free(cert);
    tw_identity_free(asked);
    tw_certgen_free(g);
    json_decref(o);
}

/* -------------------------------------------------------------- renew */

/* The refusal a verified-or-not peer gets, as a code of the API. */
static enum serve_refusal refusal_of(enum tw_reason reason)
{
    switch (reason) {
    case TW_REASON_NO_CERTIFICATE: return REFUSED_NO_CERTIFICATE;
    case TW_REASON_REVOKED: return REFUSED_REVOKED;
    case TW_REASON_EXPIRED: return REFUSED_EXPIRED;
    default: return REFUSED_UNKNOWN_CA;
    }
}

/* The template of a renewal: what the presented certificate says (subject,
 * names, purposes), with the key of the CSR already in `g`. */
static int keep_names(tw_certgen *g, const tw_identity *id, tw_err *err)
{
    tw_name *name = tw_name_parse(tw_identity_subject(id), err);
    int purposes = tw_identity_purposes(id) &
                   (TW_PURPOSE_SERVER | TW_PURPOSE_CLIENT);
    int rc = -1;

    if (name == NULL || tw_certgen_set_subject(g, name, err) < 0 ||
        tw_certgen_clear_sans(g, err) < 0 ||
        tw_certgen_set_purposes(g, purposes, err) < 0)
        goto done;
    for (int t = 0; t < TW_SAN_TYPES; t++)
        for (size_t i = 0; i < tw_identity_san_count(id, t); i++)
            if (tw_certgen_add_san(g, t, tw_identity_san(id, t, i), err) < 0)
                goto done;
    rc = 0;
done:
    tw_name_free(name);
    return rc;
}

void serve_renew(httpd_req *r)
{
    serve_app *app = serve_app_of(r);
    ca_dir *ca = &serve_worker_of(r)->ca;
    const tw_identity *id;
    tw_identity *asked = NULL;
    tw_certgen *g = NULL;
    tw_cert *cert = NULL;
    json_t *o = NULL;
    const char *csr, *life;
    long long lifetime = 0;
    time_t not_after;
    char by[64];
    tw_err err, why;
    int in_tx = 0, revoked = 0, found;

    if (!tw_conn_peer_verified(httpd_req_tls(r), &why)) {
        enum serve_refusal k = refusal_of(why.reason);

        httpd_log(httpd_req_server(r), "refused peer=%s reason=%s (renew): %s",
                  httpd_req_peer_addr(r), serve_refusal_names[k], why.msg);
        serve_refuse(r, 403, k, serve_refusal_names[k], "%s", why.msg);
        return;
    }
    if ((id = httpd_req_peer(r)) == NULL) {
        httpd_reply_error(r, 500, "out of memory");
        return;
    }
    if ((o = serve_body(r)) == NULL || (csr = serve_member(r, o, "csr", 1)) == NULL)
        goto done;
    if (json_object_get(o, "lifetime") != NULL) {
        if ((life = serve_member(r, o, "lifetime", 1)) == NULL)
            goto done;
        if (twu_parse_duration(life, 60, 366LL * 86400, &lifetime) < 0) {
            serve_refuse(r, 400, REFUSED_BAD_REQUEST, "lifetime",
                         "\"lifetime\" must be a duration from 60s to 366d, "
                         "e.g. 90s, 15m, 24h, 30d");
            goto done;
        }
    }
    /* By default a renewal keeps the lifetime the certificate was issued
     * for: a service on one-hour certificates stays on them. */
    if (lifetime == 0) {
        lifetime = (long long)(tw_identity_not_after(id) -
                               tw_identity_not_before(id)) -
                   TW_CERTGEN_BACKDATE;
        if (lifetime < 60)
            lifetime = 60;
    }
    if ((g = read_csr(r, csr, &asked)) == NULL)
        goto done;
    /* A renewal that keeps the key would keep whatever exposure the old
     * key had: every renewal makes a new key. */
    if (strcmp(tw_identity_spki(asked), tw_identity_spki(id)) == 0) {
        serve_refuse(r, 400, REFUSED_BAD_REQUEST, "key_reused", "the CSR "
                     "carries the key of the certificate being renewed: make "
                     "a new key");
        goto done;
    }
    if (keep_names(g, id, &err) < 0) {
        serve_failed(r, &err);
        goto done;
    }
    if (cadb_begin(ca->db, ca->db_path, &err) < 0) {
        serve_failed(r, &err);
        goto done;
    }
    in_tx = 1;
    if ((found = cadb_cert_status(ca->db, tw_identity_serial(id), &revoked,
                                  &not_after, &err)) < 0) {
        serve_failed(r, &err);
        goto done;
    }
    /* The CRL the TLS side checked may be a moment older than the index. */
    if (found == 0 || revoked) {
        enum serve_refusal k = found == 0 ? REFUSED_UNKNOWN_CA : REFUSED_REVOKED;

        serve_refuse(r, 403, k, serve_refusal_names[k], found == 0
                     ? "the certificate %s (serial %s) is not in this CA's "
                       "index: it was not issued here"
                     : "the certificate %s (serial %s) is revoked: enrol "
                       "again with a new token",
                     tw_identity_subject(id), tw_identity_serial(id));
        goto done;
    }
    if ((cert = serve_sign(app, ca, g, lifetime, tw_identity_serial(id),
                           &err)) == NULL ||
        cadb_commit(ca->db, ca->db_path, &err) < 0) {
        serve_failed(r, &err);
        goto done;
    }
    in_tx = 0;
    atomic_fetch_add(&app->renewed, 1);
    snprintf(by, sizeof(by), "client:%s", tw_identity_serial(id));
    if (serve_audit(app, ca->db, "renew", cert, by, httpd_req_peer_addr(r), &err) < 0)
        httpd_log(httpd_req_server(r), "error: the certificate was issued "
                  "but not written to the audit log: %s", err.msg);
    serve_issued(r, cert);
done:
    if (in_tx)
        cadb_rollback(ca->db);
    tw_cert_free(cert);
    tw_identity_free(asked);
    tw_certgen_free(g);
    json_decref(o);
}

/* ------------------------------------------------------------- revoke */

/* Roles come from a policy; without one libtwoway grants every verified
 * certificate every role (invoice-server's seed behaviour), which must not
 * make every enrolled service an administrator of the CA. */
int serve_policy_given(httpd_req *r, const char *role)
{
    const serve_options *o = &serve_app_of(r)->opt;

    if (o->nrules > 0 || o->policy != NULL)
        return 1;
    serve_refuse(r, 403, REFUSED_BAD_REQUEST, "policy_denied", "no policy "
                 "gives the '%s' role: start serve with --allow '%s CN=...' "
                 "or --policy FILE", role, role);
    return 0;
}

void serve_revoke(httpd_req *r)
{
    serve_app *app = serve_app_of(r);
    ca_dir *ca = &serve_worker_of(r)->ca;
    const tw_identity *admin = httpd_req_peer(r);
    json_t *o = NULL, *answer = NULL;
    const char *serial, *reason_text = NULL;
    char by[64], subject[512] = "", *text = NULL;
    int reason = -1, rc;
    tw_err err;

    if (!serve_policy_given(r, "admin") || (o = serve_body(r)) == NULL ||
        (serial = serve_member(r, o, "serial", 1)) == NULL)
        goto done;
    if (json_object_get(o, "reason") != NULL) {
        if ((reason_text = serve_member(r, o, "reason", 1)) == NULL)
            goto done;
        if ((reason = tw_crl_reason_code(reason_text)) < 0) {
            serve_refuse(r, 400, REFUSED_BAD_REQUEST, "reason", "\"%s\" is "
                         "not a CRL reason (keyCompromise, superseded, "
                         "cessationOfOperation, affiliationChanged, ...)",
                         reason_text);
            goto done;
        }
    }
    rc = ca_revoke_serial_subject(ca, serial, reason, subject, sizeof(subject),
                                  &err);
    if (rc == CA_REVOKE_NOT_FOUND || rc == CA_REVOKE_ALREADY) {
        serve_refuse(r, rc == CA_REVOKE_NOT_FOUND ? 404 : 409, REFUSED_BAD_REQUEST,
               rc == CA_REVOKE_NOT_FOUND ? "serial" : "already_revoked", "%s",
               err.msg);
        goto done;
    }
    if (rc < 0) {
        serve_refuse(r, err.cls == TW_ERR_USAGE || err.cls == TW_ERR_INPUT ? 400 : 500,
               REFUSED_BAD_REQUEST, "serial", "%s", err.msg);
        goto done;
    }
    atomic_fetch_add(&app->revoked, 1);
    snprintf(by, sizeof(by), "client:%s", admin ? tw_identity_serial(admin) : "-");
    {
        ca_audit_entry e = {.action = "revoke", .serial = serial,
                            .subject = subject[0] ? subject : NULL, .by = by,
                            .peer = httpd_req_peer_addr(r)};

        if (ca_audit(app->audit_path, ca->db, &e, &err) < 0)
            httpd_log(httpd_req_server(r), "error: the revocation was "
                      "recorded but not written to the audit log: %s", err.msg);
    }
    /* At once, not at the next re-signing: who fetches the CRL now must
     * see this serial. */
    if (serve_crl_publish(app, ca, "revocation", &err) < 0)
        httpd_log(httpd_req_server(r), "error: %s revoked, but the CRL could "
                  "not be re-signed: %s", serial, err.msg);
    pthread_mutex_lock(&app->crl.lock);
    answer = json_pack("{s:s, s:s, s:I}", "serial", serial, "reason",
                       reason_text ? reason_text : "unspecified", "crl_number",
                       (json_int_t)app->crl.number);
    pthread_mutex_unlock(&app->crl.lock);
    if (answer == NULL || (text = json_dumps(answer, JSON_COMPACT |
                                                     JSON_PRESERVE_ORDER)) == NULL)
        httpd_reply_error(r, 500, "out of memory");
    else
        httpd_reply(r, 200, "application/json", text, strlen(text), NULL);
done:
    free(text);
    json_decref(answer);
    json_decref(o);
}

