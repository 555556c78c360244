/*
 * revoke.c - marking a certificate revoked in the index, for
 * `twoway-ca revoke` and serve's POST /v1/revoke.  Publishing it (a new
 * CRL) is the caller's.
 */
#include "ca.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

int ca_serial_normalise(const char *in, char *out, size_t len)
{
    size_t digits = 0, n = 0;

    if (strncmp(in, "0x", 2) == 0 || strncmp(in, "0X", 2) == 0)
        in += 2;
    if (*in == '\0' || strspn(in, "0123456789abcdefABCDEF:") != strlen(in))
        return -1;
    while (*in == '0' || *in == ':')
        in++;
    for (const char *p = in; *p != '\0'; p++)
        digits += *p != ':';
    /* The index holds BN_bn2hex's text (tw_identity_serial): whole bytes,
     * so an odd number of digits gets its leading zero back; zero is "0". */
    if (digits + (digits & 1) + (digits == 0) + 1 > len)
        return -1;
    if (digits == 0 || (digits & 1))
        out[n++] = '0';
    for (; *in != '\0'; in++)
        if (*in != ':')
            out[n++] = (char)toupper((unsigned char)*in);
    out[n] = '\0';
    return 0;
}

/* The reasons a CRL of ours may carry (RFC 5280 5.3.1): not
 * certificateHold (6, which this CA never lifts), removeFromCRL (8, delta
 * CRLs only) or aACompromise (10, attribute certificates). */
static int reason_allowed(int reason)
{
    return reason >= 0 && reason <= 9 && reason != 6 && reason != 7 &&
           reason != 8;
}

int ca_revoke_serial_subject(ca_dir *ca, const char *serial_text, int reason,
                             char *subject, size_t len, tw_err *err)
{
    sql_stmt *st = NULL;
    char serial[80];
    int rc = -1, step;

    if (reason < 0)
        reason = 0; /* unspecified */
    if (!reason_allowed(reason))
        return twu_err(err, TW_ERR_USAGE, "reason %d is not one of "
                       "unspecified, keyCompromise, cACompromise, "
                       "affiliationChanged, superseded, cessationOfOperation, "
                       "privilegeWithdrawn", reason);
    if (ca_serial_normalise(serial_text, serial, sizeof(serial)) < 0)
        return twu_err(err, TW_ERR_USAGE, "'%s' is not a hexadecimal serial "
                       "number", serial_text);
    if (cadb_begin(ca->db, ca->db_path, err) < 0)
        return -1;
    if (sql_prepare(ca->db, "SELECT subject, revoked_at FROM certs WHERE serial=?", &st) != SQL_OK)
        goto db_err;
    sql_bind_text(st, 1, serial);
    if ((step = sql_step(st)) == SQL_DONE) {
        twu_err(err, TW_ERR_INPUT, "serial %s was not issued by the CA in %s "
                "(see `twoway-ca list --ca %s`)", serial, ca->dir, ca->dir);
        rc = CA_REVOKE_NOT_FOUND;
        goto rollback;
    }
    if (step != SQL_ROW)
        goto db_err;
    if (!sql_col_null(st, 1)) {
        char when[32];

        ca_time_text((time_t)sql_col_int64(st, 1), when, sizeof(when));
        twu_err(err, TW_ERR_INPUT, "serial %s (%s) was already revoked on %s",
                serial, sql_col_text(st, 0), when);
        rc = CA_REVOKE_ALREADY;
        goto rollback;
    }
    if (subject != NULL)
        snprintf(subject, len, "%s", sql_col_text(st, 0));
    sql_finalize(st);
    if (sql_prepare(ca->db, "UPDATE certs SET revoked_at=?, revoke_reason=?"
                           " WHERE serial=?", &st) != SQL_OK)
        goto db_err;
    sql_bind_int64(st, 1, (int64_t)time(NULL));
    sql_bind_int64(st, 2, reason);
    sql_bind_text(st, 3, serial);
    if (sql_step(st) != SQL_DONE)
        goto db_err;
    sql_finalize(st);
    st = NULL;
    /* PostgreSQL: every listener learns of it when this commits (the
     * serial as the payload), before any CRL is published. */
    if (sql_is_pg(ca->db)) {
        if (sql_prepare(ca->db, "SELECT pg_notify('" CA_REVOCATION_CHANNEL
                        "', ?)", &st) != SQL_OK)
            goto db_err;
        sql_bind_text(st, 1, serial);
        if (sql_step(st) != SQL_ROW)
            goto db_err;
        sql_finalize(st);
    }
    return cadb_commit(ca->db, ca->db_path, err);
db_err:
    cadb_err(ca->db, ca->db_path, "cannot revoke in", err);
rollback:
    sql_finalize(st);
    cadb_rollback(ca->db);
    return rc;
}

int ca_revoke_serial(ca_dir *ca, const char *serial, int reason, tw_err *err)
{
    return ca_revoke_serial_subject(ca, serial, reason, NULL, 0, err);
}
