/*
 * cadir.c - opening a CA directory (certificate, key, index), signing
 * with it, and failing a command that holds its index's transaction.
 */
#include "ca.h"
#include "pgutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ca_dir_close(ca_dir *ca)
{
    twu_free(ca->dir);
    twu_free(ca->cert_path);
    twu_free(ca->key_path);
    twu_free(ca->db_path);
    twu_free(ca->db_target);
    tw_cert_free(ca->cert);
    tw_key_free(ca->key);
    if (ca->db != NULL)
        sql_close(ca->db);
    memset(ca, 0, sizeof(*ca));
}

static int load_key(ca_dir *ca, const char *cmd, const char *passfile)
{
    char *pass = NULL;
    tw_err err;
    int enc = tw_key_file_is_encrypted(ca->key_path, &err);

    if (enc < 0)
        return ca_fail_err(cmd, &err), CA_EXIT_FAIL;
    if (enc && passfile != NULL) {
        if ((pass = ca_passphrase_read(cmd, passfile)) == NULL)
            return CA_EXIT_FAIL;
    } else if (enc) {
        char prompt[512];

        snprintf(prompt, sizeof(prompt), "Passphrase for %s: ", ca->key_path);
        if ((pass = ca_passphrase_ask(prompt)) == NULL) {
            ca_fail(cmd,
                    "the CA key %s is encrypted: give --passphrase-file FILE "
                    "(or run on a terminal to be asked)", ca->key_path);
            return CA_EXIT_FAIL;
        }
    }
    ca->key = tw_key_load_file(ca->key_path, pass, &err);
    ca_passphrase_free(pass);
    if (ca->key == NULL) {
        ca_fail(cmd, "%s", err.msg);
        return CA_EXIT_FAIL;
    }
    if (!tw_cert_matches_key(ca->cert, ca->key)) {
        ca_fail(cmd, "the CA key %s does not belong to %s", ca->key_path,
                ca->cert_path);
        return CA_EXIT_FAIL;
    }
    return CA_EXIT_OK;
}

int ca_index_url(const char *dir, char **url, tw_err *err)
{
    char *path = ca_path_join(dir, CA_INDEX_CONF), line[4096];
    int lineno = 0, rc = -1;
    FILE *f;

    *url = NULL;
    if (path == NULL)
        return twu_err_nomem(err);
    if ((f = fopen(path, "r")) == NULL) {
        rc = errno == ENOENT ? 0
                             : twu_err(err, TW_ERR_IO, "cannot read %s: %s",
                                       path, strerror(errno));
        twu_free(path);
        return rc;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *p = line, *end;

        lineno++;
        p += strspn(p, " \t");
        end = p + strcspn(p, "\r\n");
        *end = '\0';
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*p == '\0' || *p == '#')
            continue;
        if (strncmp(p, "database", 8) != 0 ||
            p[8 + strspn(p + 8, " \t")] != '=') {
            twu_err(err, TW_ERR_INPUT, "%s:%d: expected 'database = URL'",
                    path, lineno);
            goto out;
        }
        p += 8;
        p += strspn(p, " \t");
        p += 1 + strspn(p + 1, " \t");
        if (!sql_is_url(p)) {
            twu_err(err, TW_ERR_INPUT, "%s:%d: '%s' is not a postgresql:// "
                    "URL", path, lineno, p);
            goto out;
        }
        if ((*url = twu_strdup(p)) == NULL) {
            twu_err_nomem(err);
            goto out;
        }
        rc = 1;
        goto out;
    }
    twu_err(err, TW_ERR_INPUT, "%s names no database: expected a line "
            "'database = postgresql://...'", path);
out:
    fclose(f);
    twu_free(path);
    return rc;
}

int ca_dir_open(ca_dir *ca, const char *cmd, const char *dir,
                const char *passfile, int flags)
{
    struct stat st;
    tw_err err;
    int rc = CA_EXIT_FAIL;

    memset(ca, 0, sizeof(*ca));
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        ca_fail(cmd, "no CA in %s (%s): create one with `twoway-ca init %s`",
                dir, stat(dir, &st) != 0 ? strerror(errno) : "not a directory",
                dir);
        return CA_EXIT_FAIL;
    }
    if ((ca->dir = twu_strdup(dir)) == NULL ||
        (ca->cert_path = ca_path_join(dir, "ca.cert.pem")) == NULL ||
        (ca->key_path = ca_path_join(dir, "ca.key.pem")) == NULL) {
        ca_fail(cmd, "out of memory");
        goto fail;
    }
    switch (ca_index_url(dir, &ca->db_target, &err)) {
    case 1: /* PostgreSQL */
        if ((ca->db_path = twu_pg_describe(ca->db_target)) == NULL) {
            ca_fail(cmd, "out of memory");
            goto fail;
        }
        break;
    case 0:
        if ((ca->db_path = ca_path_join(dir, "ca.db")) == NULL ||
            (ca->db_target = twu_strdup(ca->db_path)) == NULL) {
            ca_fail(cmd, "out of memory");
            goto fail;
        }
        break;
    default:
        ca_fail(cmd, "%s", err.msg);
        goto fail;
    }
    if (access(ca->cert_path, F_OK) != 0 ||
        (!sql_is_url(ca->db_target) && access(ca->db_path, F_OK) != 0)) {
        ca_fail(cmd, "no CA in %s (ca.cert.pem or ca.db missing): create one "
                "with `twoway-ca init %s`", dir, dir);
        goto fail;
    }
    if ((ca->cert = tw_cert_load_file(ca->cert_path, &err)) == NULL) {
        ca_fail(cmd, "%s", err.msg);
        goto fail;
    }
    if ((ca->db = sql_open(ca->db_target, 0, &err)) == NULL) {
        ca_fail(cmd, "%s", err.msg);
        goto fail;
    }
    /* A busy index exits CA_EXIT_BUSY, so that a script can retry it. */
    if (cadb_check(ca->db, ca->db_path, &err) < 0) {
        rc = ca_fail_err(cmd, &err);
        goto fail;
    }
    if ((flags & CA_OPEN_SIGN) &&
        (rc = load_key(ca, cmd, passfile)) != CA_EXIT_OK)
        goto fail;
    return CA_EXIT_OK;
fail:
    ca_dir_close(ca);
    return rc;
}

tw_cert *ca_sign_record(ca_dir *ca, tw_certgen *g, tw_err *err)
{
    unsigned char serial[16];
    char hex[33];

    /* 126 random bits make a collision all but impossible; the index still
     * checks, because "never reused" is a promise. */
    for (int tries = 0; tries < 8; tries++) {
        int seen;
        tw_cert *cert;

        if (tw_serial_random(serial, err) < 0)
            return NULL;
        twu_hex(serial, sizeof(serial), hex, 1);
        if ((seen = cadb_serial_exists(ca->db, hex, err)) < 0)
            return NULL;
        if (seen)
            continue;
        if (tw_certgen_set_serial(g, serial, sizeof(serial), err) < 0 ||
            (cert = tw_certgen_sign(g, ca->cert, ca->key, err)) == NULL)
            return NULL;
        if (cadb_record(ca->db, cert, err) < 0) {
            tw_cert_free(cert);
            return NULL;
        }
        return cert;
    }
    twu_err(err, TW_ERR_INTERNAL, "could not draw an unused serial number");
    return NULL;
}

int ca_fail_tx(ca_dir *ca, const char *cmd, int in_tx, const tw_err *err)
{
    if (in_tx)
        cadb_rollback(ca->db);
    return ca_fail_err(cmd, err);
}
