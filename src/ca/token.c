/*
 * token.c - one-time enrolment tokens: drawn, hashed, stored, taken.
 *
 * A token is 256 bits from the OpenSSL random generator, written in
 * base64url without padding (RFC 4648 section 5): 43 characters that pass
 * through a shell, a file and JSON unquoted.  The index keeps only the
 * SHA-256 of those characters: whoever reads ca.db learns what a token is
 * for, not the token.  256 random bits need no slow hash: nobody can guess
 * a preimage, so a plain digest is enough.
 */
#include "ca.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <arpa/inet.h>
#include <string.h>

#define TOKEN_BYTES 32

void ca_token_clear(ca_token *t)
{
    twu_free(t->subject);
    twu_free(t->sans);
    memset(t, 0, sizeof(*t));
}

/* base64url without padding of `len` bytes into `out` (4*len/3+2 bytes). */
static void base64url(const unsigned char *in, size_t len, char *out)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i;

    for (i = 0; i + 2 < len; i += 3) {
        unsigned long v = (unsigned long)in[i] << 16 |
                          (unsigned long)in[i + 1] << 8 | in[i + 2];

        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (len - i == 1) {
        out[o++] = abc[in[i] >> 2];
        out[o++] = abc[(in[i] & 3) << 4];
    } else if (len - i == 2) {
        out[o++] = abc[in[i] >> 2];
        out[o++] = abc[((in[i] & 3) << 4) | in[i + 1] >> 4];
        out[o++] = abc[(in[i + 1] & 15) << 2];
    }
    out[o] = '\0';
}

int ca_token_hash(const char *token, char hash[65], tw_err *err)
{
    unsigned char md[32];
    unsigned int len = 0;

    if (EVP_Digest(token, strlen(token), md, &len, EVP_sha256(), NULL) != 1 ||
        len != sizeof(md))
        return twu_err(err, TW_ERR_INTERNAL, "cannot compute SHA-256");
    twu_hex(md, sizeof(md), hash, 0);
    return 0;
}

int ca_token_new(char *text, char hash[65], tw_err *err)
{
    unsigned char raw[TOKEN_BYTES];
    int rc;

    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return twu_err(err, TW_ERR_INTERNAL,
                       "the random number generator failed");
    base64url(raw, sizeof(raw), text);
    OPENSSL_cleanse(raw, sizeof(raw));
    rc = ca_token_hash(text, hash, err);
    if (rc < 0)
        OPENSSL_cleanse(text, CA_TOKEN_LEN + 1);
    return rc;
}

int cadb_token_add(sql_db *db, const char *path, const ca_token *t,
                   tw_err *err)
{
    sql_stmt *st = NULL;
    int rc = -1;

    if (sql_prepare(db, "INSERT INTO tokens (hash, subject, sans, purposes,"
                           " lifetime, created_at, expires_at)"
                           " VALUES (?,?,?,?,?,?,?)", &st) != SQL_OK)
        goto db_err;
    sql_bind_text(st, 1, t->hash);
    sql_bind_text(st, 2, t->subject);
    sql_bind_text(st, 3, t->sans);
    sql_bind_int64(st, 4, t->purposes);
    sql_bind_int64(st, 5, (int64_t)t->lifetime);
    sql_bind_int64(st, 6, (int64_t)t->created_at);
    sql_bind_int64(st, 7, (int64_t)t->expires_at);
    if (sql_step(st) != SQL_DONE)
        goto db_err;
    rc = 0;
    goto done;
db_err:
    cadb_err(db, path, "cannot store the token in", err);
done:
    sql_finalize(st);
    return rc;
}

/* A copy of column `i` ("" for NULL); NULL when out of memory. */
static char *column_dup(sql_stmt *st, int i)
{
    const char *v = sql_col_text(st, i);

    return twu_strdup(v != NULL ? v : "");
}

int cadb_token_take(sql_db *db, const char *path, const char *token,
                    time_t now, ca_token *out, tw_err *err)
{
    sql_stmt *st = NULL;
    int rc = -1, step;

    memset(out, 0, sizeof(*out));
    if (ca_token_hash(token, out->hash, err) < 0)
        return -1;
    if (sql_prepare(db, "SELECT subject, sans, purposes, lifetime,"
                           " created_at, expires_at, used_at IS NOT NULL"
                           " FROM tokens WHERE hash=?", &st) != SQL_OK ||
        sql_bind_text(st, 1, out->hash) != SQL_OK)
        goto db_err;
    step = sql_step(st);
    if (step == SQL_DONE) {
        rc = CA_TOKEN_UNKNOWN;
        goto done;
    }
    if (step != SQL_ROW)
        goto db_err;
    if ((out->subject = column_dup(st, 0)) == NULL ||
        (out->sans = column_dup(st, 1)) == NULL) {
        twu_err_nomem(err);
        goto done;
    }
    out->purposes = sql_col_int(st, 2);
    out->lifetime = sql_col_int64(st, 3);
    out->created_at = (time_t)sql_col_int64(st, 4);
    out->expires_at = (time_t)sql_col_int64(st, 5);
    if (sql_col_int(st, 6)) {
        rc = CA_TOKEN_USED;
        goto done;
    }
    if (out->expires_at <= now) {
        rc = CA_TOKEN_EXPIRED;
        goto done;
    }
    sql_finalize(st);
    /* "AND used_at IS NULL" is what the transaction already guarantees;
     * it keeps a caller that forgot cadb_begin from taking a token twice. */
    if (sql_prepare(db, "UPDATE tokens SET used_at=? WHERE hash=?"
                               " AND used_at IS NULL", &st) != SQL_OK)
        goto db_err;
    sql_bind_int64(st, 1, (int64_t)now);
    sql_bind_text(st, 2, out->hash);
    if (sql_step(st) != SQL_DONE)
        goto db_err;
    rc = sql_changes(db) == 1 ? CA_TOKEN_OK : CA_TOKEN_USED;
    goto done;
db_err:
    cadb_err(db, path, "cannot read the tokens of", err);
done:
    sql_finalize(st);
    return rc;
}

int cadb_token_set_serial(sql_db *db, const char *hash, const char *serial,
                          tw_err *err)
{
    sql_stmt *st = NULL;
    int rc = -1;

    if (sql_prepare(db, "UPDATE tokens SET used_serial=? WHERE hash=?", &st) != SQL_OK ||
        sql_bind_text(st, 1, serial) != SQL_OK ||
        sql_bind_text(st, 2, hash) != SQL_OK ||
        sql_step(st) != SQL_DONE) {
        twu_err(err, TW_ERR_IO, "cannot record the token's certificate: %s",
                sql_errmsg(db));
        goto done;
    }
    if (sql_changes(db) != 1) {
        twu_err(err, TW_ERR_INTERNAL, "token %.12s is not in the index",
                hash);
        goto done;
    }
    rc = 0;
done:
    sql_finalize(st);
    return rc;
}

/* ------------------------------------------------------ the names' text */

static const char *const san_prefix[TW_SAN_TYPES] = {"DNS", "IP", "URI",
                                                     "email"};

/* An IP address in the text inet_ntop gives, which is how a certificate's
 * identity shows it; `in` itself when it does not parse (the template has
 * refused it by then). */
static const char *canonical_ip(const char *in, char *buf, size_t len)
{
    unsigned char addr[16];

    if (inet_pton(AF_INET, in, addr) == 1)
        return inet_ntop(AF_INET, addr, buf, (socklen_t)len) ? buf : in;
    if (inet_pton(AF_INET6, in, addr) == 1)
        return inet_ntop(AF_INET6, addr, buf, (socklen_t)len) ? buf : in;
    return in;
}

char *ca_names_text(const ca_names *n, tw_err *err)
{
    twu_buf b = {0};
    char ip[64];

    if (twu_buf_reserve(&b, 1) < 0)
        goto nomem;
    b.data[0] = '\0';
    for (int t = 0; t < TW_SAN_TYPES; t++)
        for (size_t i = 0; i < n->count; i++) {
            const char *v = n->value[i];

            if (n->type[i] != (enum tw_san_type)t)
                continue;
            if (strchr(v, ',') != NULL) {
                twu_buf_free(&b);
                twu_err(err, TW_ERR_USAGE, "the name '%s' holds a ',', which "
                        "a token cannot carry", v);
                return NULL;
            }
            if (t == TW_SAN_IP)
                v = canonical_ip(v, ip, sizeof(ip));
            if (twu_buf_printf(&b, "%s%s:%s", b.len ? "," : "", san_prefix[t],
                               v) < 0)
                goto nomem;
        }
    return b.data;
nomem:
    twu_buf_free(&b);
    twu_err_nomem(err);
    return NULL;
}

int ca_names_from_sans(ca_names *n, const char *sans, char **storage)
{
    char *p;

    memset(n, 0, sizeof(*n));
    if ((*storage = p = twu_strdup(sans)) == NULL)
        return -1;
    while (*p != '\0') {
        char *end = p + strcspn(p, ","), *colon;
        int type = -1;

        if (*end == ',')
            *end++ = '\0';
        if ((colon = strchr(p, ':')) == NULL)
            return -1;
        *colon = '\0';
        for (int t = 0; t < TW_SAN_TYPES; t++)
            if (strcmp(p, san_prefix[t]) == 0)
                type = t;
        if (type < 0 || colon[1] == '\0' ||
            ca_names_add(n, (enum tw_san_type)type, colon + 1) < 0)
            return -1;
        p = end;
    }
    return 0;
}
