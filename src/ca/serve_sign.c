/*
 * serve_sign.c - what every issuance of serve shares: the lifetime, the
 * signature and the index record inside the caller's transaction, and the
 * audit line after the commit.
 */
#include "serve.h"

#include <string.h>

tw_cert *serve_sign(serve_app *app, ca_dir *ca, tw_certgen *g,
                    long long lifetime, const char *replaces, tw_err *err)
{
    tw_identity *id = NULL;
    tw_cert *cert = NULL;

    if (lifetime <= 0)
        lifetime = app->opt.default_lifetime;
    if (lifetime > app->opt.max_lifetime)
        lifetime = app->opt.max_lifetime;
    if (tw_certgen_set_lifetime(g, lifetime, err) < 0 ||
        (cert = ca_sign_record(ca, g, err)) == NULL)
        goto err;
    if (replaces != NULL) {
        if ((id = tw_identity_from_cert(cert, err)) == NULL ||
            cadb_set_replaces(ca->db, tw_identity_serial(id), replaces, err) < 0)
            goto err;
        tw_identity_free(id);
    }
    atomic_fetch_add(&app->issued, 1);
    return cert;
err:
    tw_identity_free(id);
    tw_cert_free(cert);
    return NULL;
}

int serve_audit(serve_app *app, sql_db *db, const char *action,
                const tw_cert *cert, const char *by, const char *peer,
                tw_err *err)
{
    tw_identity *id = tw_identity_from_cert(cert, err);
    ca_audit_entry e;
    int rc;

    if (id == NULL)
        return -1;
    memset(&e, 0, sizeof(e));
    e.action = action;
    e.serial = tw_identity_serial(id);
    e.subject = tw_identity_subject(id);
    e.by = by;
    e.peer = peer;
    rc = ca_audit(app->audit_path, db, &e, err);
    tw_identity_free(id);
    return rc;
}
