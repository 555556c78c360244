/*
 * crlgen.c - making a CRL of every revocation in the index, for
 * `twoway-ca crl` and for serve, which publishes it itself.
 *
 * libtwoway signs a CRL into a file (tw_crl_write_file); the CRL is made
 * in a temporary file of the CA directory, read back and removed, all
 * inside the transaction that draws its number.
 */
#include "ca.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CRL_MAX_BYTES (64u * 1024 * 1024)

/* Read every revocation; the strings live in `names` (one allocation). */
static int read_revoked(sql_db *db, tw_revoked **out, size_t *count,
                        char **names)
{
    sql_stmt *st = NULL;
    tw_revoked *list = NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc;

    if (sql_prepare(db, "SELECT count(*) FROM certs WHERE revoked_at"
                               " IS NOT NULL", &st) != SQL_OK ||
        sql_step(st) != SQL_ROW)
        goto err;
    cap = (size_t)sql_col_int64(st, 0);
    sql_finalize(st);
    st = NULL;
    list = twu_calloc(cap ? cap : 1, sizeof(*list));
    buf = twu_calloc(cap ? cap : 1, 48);
    if (list == NULL || buf == NULL)
        goto err;
    if (sql_prepare(db, "SELECT serial, revoked_at, revoke_reason FROM"
                               " certs WHERE revoked_at IS NOT NULL", &st) != SQL_OK)
        goto err;
    while ((rc = sql_step(st)) == SQL_ROW && n < cap) {
        snprintf(buf + 48 * n, 48, "%s", sql_col_text(st, 0));
        list[n].serial_hex = buf + 48 * n;
        list[n].revoked_at = (time_t)sql_col_int64(st, 1);
        list[n].reason = sql_col_int(st, 2);
        n++;
    }
    if (rc != SQL_DONE && rc != SQL_ROW)
        goto err;
    sql_finalize(st);
    *out = list;
    *count = n;
    *names = buf;
    return 0;
err:
    sql_finalize(st);
    twu_free(list);
    twu_free(buf);
    return -1;
}

/* Sign the CRL into a fresh file of the CA directory and read it back. */
static char *sign_crl(ca_dir *ca, const tw_revoked *list, size_t count,
                      uint64_t number, int days, size_t *len, tw_err *err)
{
    char *tmp = ca_path_join(ca->dir, ".crl.XXXXXX"), *pem = NULL;
    int fd;

    if (tmp == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    /* mkstemp gives a name no other process (a CLI command, a serve
     * worker) uses at the same time; tw_crl_write_file then replaces it. */
    if ((fd = mkstemp(tmp)) < 0) {
        twu_err(err, TW_ERR_IO, "cannot create a temporary file in %s: %s",
                ca->dir, strerror(errno));
        twu_free(tmp);
        return NULL;
    }
    close(fd);
    if (tw_crl_write_file(ca->cert, ca->key, list, count, number, days, tmp,
                          err) == 0)
        pem = twu_read_file(tmp, CRL_MAX_BYTES, len, err);
    unlink(tmp);
    twu_free(tmp);
    return pem;
}

int ca_crl_make_counted(ca_dir *ca, long long validity_seconds, char **pem,
                        size_t *pem_len, uint64_t *number,
                        time_t *next_update, size_t *revoked, tw_err *err)
{
    tw_revoked *list = NULL;
    char *names = NULL, *out = NULL;
    size_t count = 0, len = 0;
    uint64_t n;
    long long days = (validity_seconds + 86399) / 86400;
    time_t now;
    int rc = -1;

    *pem = NULL;
    if (validity_seconds < 1 || days > 3650)
        return twu_err(err, TW_ERR_USAGE, "a CRL validity of %lld seconds is "
                       "out of range: give 1 s to 3650 days",
                       validity_seconds);
    if (ca->key == NULL)
        return twu_err(err, TW_ERR_INTERNAL, "the CA was opened without its "
                       "key: cannot sign a CRL");
    if (cadb_begin(ca->db, ca->db_path, err) < 0)
        return -1;
    if (read_revoked(ca->db, &list, &count, &names) < 0) {
        twu_err(err, TW_ERR_IO, "cannot read %s: %s", ca->db_path,
                sql_errmsg(ca->db));
        goto err;
    }
    /* The number is drawn and the CRL signed before COMMIT: a failure
     * rolls the number back, so a CRL number is never given twice. */
    now = time(NULL);
    if (cadb_next_crl_number(ca->db, &n, err) < 0 ||
        (out = sign_crl(ca, list, count, n, (int)days, &len, err)) == NULL)
        goto err;
    if (cadb_commit(ca->db, ca->db_path, err) < 0) {
        twu_free(out);
        out = NULL;
        goto done; /* cadb_commit rolled back */
    }
    *pem = out;
    if (pem_len != NULL)
        *pem_len = len;
    if (number != NULL)
        *number = n;
    /* tw_crl_write_file took its own "now", a moment after ours: this
     * nextUpdate is at most that moment early, never late. */
    if (next_update != NULL)
        *next_update = now + (time_t)(days * 86400);
    if (revoked != NULL)
        *revoked = count;
    rc = 0;
    goto done;
err:
    cadb_rollback(ca->db);
done:
    twu_free(list);
    twu_free(names);
    return rc;
}

int ca_crl_make(ca_dir *ca, long long validity_seconds, char **pem,
                size_t *pem_len, uint64_t *number, time_t *next_update,
                tw_err *err)
{
    return ca_crl_make_counted(ca, validity_seconds, pem, pem_len, number,
                               next_update, NULL, err);
}
