/*
 * serve_cert.c - the server's own certificate, when no --cert/--key is
 * given: serve issues one from its CA at start (DNS names localhost and the
 * host name, or --dns) into DIR/serve/, and renews it at two thirds of its
 * lifetime, swapping it in with a reload (open connections go on).
 *
 * The new key and certificate are staged, the index commits, then the key
 * is renamed into place before the certificate, as `twoway-ca issue
 * --force` does: a crash leaves at worst a certificate whose key is newer,
 * which the next start replaces.
 */
#include "serve.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Issue a key and certificate into the files of app->own_*.  0, or -1 with
 * `err`. */
static int issue_own(serve_app *app, tw_err *err)
{
    ca_dir *ca = &app->ca;
    char host[256], subject[320];
    tw_certgen *g = NULL;
    tw_name *name = NULL;
    tw_key *key = NULL;
    tw_cert *cert = NULL;
    tw_identity *id = NULL;
    twu_staged key_stage = {0}, cert_stage = {0};
    char *key_pem = NULL, *cert_pem = NULL;
    size_t key_len = 0;
    int in_tx = 0, rc = -1;

    if (gethostname(host, sizeof(host)) != 0)
        host[0] = '\0';
    host[sizeof(host) - 1] = '\0';
    snprintf(subject, sizeof(subject), "/CN=%s/O=twoway-ca serve",
             app->opt.ndns > 0 ? app->opt.dns[0] : "localhost");
    TWU_GUARD_PTR(g = tw_certgen_new(err));
    TWU_GUARD_PTR(name = tw_name_parse(subject, err));
    TWU_GUARD(tw_certgen_set_subject(g, name, err));
    TWU_GUARD(tw_certgen_set_purposes(g, TW_PURPOSE_SERVER, err));
    if (app->opt.ndns > 0) {
        for (int i = 0; i < app->opt.ndns; i++)
            TWU_GUARD(tw_certgen_add_san(g, TW_SAN_DNS, app->opt.dns[i], err));
    } else {
        TWU_GUARD(tw_certgen_add_san(g, TW_SAN_DNS, "localhost", err));
        if (host[0] != '\0' && strcmp(host, "localhost") != 0)
            TWU_GUARD(tw_certgen_add_san(g, TW_SAN_DNS, host, err));
    }
    TWU_GUARD_PTR(key = tw_key_generate(NULL, err));
    TWU_GUARD(tw_certgen_set_public_key(g, key, err));
    TWU_GUARD_PTR(key_pem = tw_key_pem(key, NULL, &key_len, err));
    TWU_GUARD(twu_stage_file(&key_stage, app->own_key, key_pem, key_len, 0600,
                             0, err));
    TWU_GUARD(cadb_begin(ca->db, ca->db_path, err));
    in_tx = 1;
    TWU_GUARD_PTR(cert = serve_sign(app, ca, g, app->opt.default_lifetime,
                                    NULL, err));
    TWU_GUARD_PTR(cert_pem = tw_cert_to_pem(cert, err));
    TWU_GUARD(twu_stage_file(&cert_stage, app->own_cert, cert_pem,
                             strlen(cert_pem), 0644, 0, err));
    TWU_GUARD(cadb_commit(ca->db, ca->db_path, err));
    in_tx = 0;
    TWU_GUARD(twu_stage_commit(&key_stage, err));
    TWU_GUARD(twu_stage_commit(&cert_stage, err));
    TWU_GUARD_PTR(id = tw_identity_from_cert(cert, err));
    app->own_not_before = tw_identity_not_before(id);
    app->own_not_after = tw_identity_not_after(id);
    TWU_GUARD(serve_audit(app, ca->db, "issue", cert, "serve", NULL, err));
    rc = 0;
err:
    if (in_tx)
        cadb_rollback(ca->db);
    twu_stage_abort(&key_stage);
    twu_stage_abort(&cert_stage);
    tw_identity_free(id);
    twu_free(cert_pem);
    tw_key_pem_free(key_pem, key_len);
    tw_cert_free(cert);
    tw_key_free(key);
    tw_name_free(name);
    tw_certgen_free(g);
    return rc;
}

int serve_cert_init(serve_app *app)
{
    char *dir = NULL;
    tw_err err;

    if (app->opt.cert != NULL) {
        app->own_cert = (char *)app->opt.cert;
        app->own_key = (char *)app->opt.key;
        return 0;
    }
    app->own_issued = 1;
    if ((dir = ca_path_join(app->ca.dir, "serve")) == NULL ||
        (app->own_cert = ca_path_join(dir, "cert.pem")) == NULL ||
        (app->own_key = ca_path_join(dir, "key.pem")) == NULL) {
        twu_free(dir);
        ca_fail("serve", "out of memory");
        return -1;
    }
    if (ca_mkdirs(dir, 0700) < 0) {
        ca_fail("serve", "cannot make %s for the server's certificate: %s",
                dir, strerror(errno));
        twu_free(dir);
        return -1;
    }
    twu_free(dir);
    if (issue_own(app, &err) < 0) {
        ca_fail("serve", "cannot issue the server's own certificate: %s",
                err.msg);
        return -1;
    }
    return 0;
}

void serve_cert_tick(serve_app *app)
{
    time_t now = time(NULL), life = app->own_not_after - app->own_not_before;
    tw_err err;

    if (!app->own_issued || now < app->own_not_before + life * 2 / 3 ||
        now < app->own_retry_at)
        return;
    if (issue_own(app, &err) < 0) {
        /* The current one is still valid: try again in a minute. */
        httpd_log(app->h, "warning: cannot renew the server's certificate "
                  "%s: %s", app->own_cert, err.msg);
        app->own_retry_at = now + 60;
        return;
    }
    (void)httpd_reload(app->h, "server certificate renewed");
}
