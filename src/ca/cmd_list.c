/*
 * cmd_list.c - `twoway-ca list`: every certificate the CA issued, with its
 * status and days left.
 */
#include "ca.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: twoway-ca list --ca DIR [--tokens] [--json]\n"
    "\n"
    "List every certificate the CA in DIR issued: serial, subject, names,\n"
    "purpose, not-after, status (valid, expired or revoked) and days left.\n"
    "With --tokens, list the enrolment tokens neither used nor expired: the\n"
    "first 12 hex digits of their SHA-256, subject, names, purpose, lifetime\n"
    "and expiry (never the token itself, which the CA does not keep).\n"
    "\n"
    "  --ca DIR   the CA directory\n"
    "  --tokens   the pending tokens instead of the certificates\n"
    "  --json     a JSON array instead of a table\n"
    "  --help     show this help\n";

/* A lifetime in its largest whole unit ("90s", "15m", "24h", "30d"), or
 * "default" for 0 (the server's --default-lifetime). */
static void lifetime_text(long long s, char *buf, size_t len)
{
    if (s <= 0)
        snprintf(buf, len, "default");
    else if (s % 86400 == 0)
        snprintf(buf, len, "%lldd", s / 86400);
    else if (s % 3600 == 0)
        snprintf(buf, len, "%lldh", s / 3600);
    else if (s % 60 == 0)
        snprintf(buf, len, "%lldm", s / 60);
    else
        snprintf(buf, len, "%llds", s);
}

/* The names text ("DNS:a,IP:b") as a JSON array. */
static json_t *sans_json(const char *text)
{
    json_t *sans = json_array();

    while (text != NULL && *text != '\0') {
        size_t n = strcspn(text, ",");

        json_array_append_new(sans, json_stringn(text, n));
        text += n + (text[n] == ',');
    }
    return sans;
}

/* The pending tokens: neither used nor expired at `now`. */
static int list_tokens(ca_dir *ca, int as_json, time_t now)
{
    sql_stmt *st = NULL;
    json_t *all = NULL;
    tw_err err;
    int rc = CA_EXIT_FAIL, c;

    if (sql_prepare(ca->db, "SELECT substr(hash, 1, 12), subject, sans,"
                           " purposes, lifetime, created_at, expires_at"
                           " FROM tokens WHERE used_at IS NULL AND"
                           " expires_at > ? ORDER BY created_at, rowid", &st) != SQL_OK ||
        sql_bind_int64(st, 1, (int64_t)now) != SQL_OK) {
        cadb_err(ca->db, ca->db_path, "cannot read", &err);
        rc = ca_fail_err("list", &err);
        goto done;
    }
    if (as_json)
        all = json_array();
    else
        printf("%-12s  %-40s  %-24s  %-13s  %-8s  %s\n", "HASH", "SUBJECT",
               "SANS", "PURPOSE", "LIFETIME", "EXPIRES");
    while ((c = sql_step(st)) == SQL_ROW) {
        const char *sans = sql_col_text(st, 2);
        const char *purpose = ca_purpose_text(sql_col_int(st, 3));
        long long lifetime = sql_col_int64(st, 4);
        char life[32], created[32], expires[32];

        lifetime_text(lifetime, life, sizeof(life));
        ca_time_text((time_t)sql_col_int64(st, 5), created,
                     sizeof(created));
        ca_time_text((time_t)sql_col_int64(st, 6), expires,
                     sizeof(expires));
        if (as_json) {
            json_t *row = json_object();

            json_object_set_new(row, "hash", json_string(
                sql_col_text(st, 0)));
            json_object_set_new(row, "subject", json_string(
                sql_col_text(st, 1)));
            json_object_set_new(row, "sans", sans_json(sans));
            json_object_set_new(row, "purpose", json_string(purpose));
            json_object_set_new(row, "lifetime", lifetime > 0
                                    ? json_integer(lifetime) : json_null());
            json_object_set_new(row, "created_at", json_string(created));
            json_object_set_new(row, "expires_at", json_string(expires));
            json_array_append_new(all, row);
            continue;
        }
        printf("%-12s  %-40s  %-24s  %-13s  %-8s  %s\n",
               sql_col_text(st, 0), sql_col_text(st, 1),
               sans && *sans ? sans : "-", purpose, life, expires);
    }
    if (c != SQL_DONE) {
        cadb_err(ca->db, ca->db_path, "cannot read", &err);
        rc = ca_fail_err("list", &err);
        goto done;
    }
    if (as_json) {
        json_dumpf(all, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    }
    rc = CA_EXIT_OK;
done:
    json_decref(all);
    sql_finalize(st);
    return rc;
}

static const char *status_of(sql_stmt *st, time_t now)
{
    if (!sql_col_null(st, 6))
        return "revoked";
    if ((time_t)sql_col_int64(st, 5) < now)
        return "expired";
    return "valid";
}

static json_t *row_json(sql_stmt *st, time_t now, long days_left)
{
    json_t *row = json_object();
    json_t *sans = sans_json(sql_col_text(st, 2));
    char nb[32], na[32], rv[32];
    int reason;

    ca_time_text((time_t)sql_col_int64(st, 4), nb, sizeof(nb));
    ca_time_text((time_t)sql_col_int64(st, 5), na, sizeof(na));
    json_object_set_new(row, "serial",
                        json_string(sql_col_text(st, 0)));
    json_object_set_new(row, "subject",
                        json_string(sql_col_text(st, 1)));
    json_object_set_new(row, "sans", sans);
    json_object_set_new(row, "purpose",
                        json_string(sql_col_text(st, 3)));
    json_object_set_new(row, "not_before", json_string(nb));
    json_object_set_new(row, "not_after", json_string(na));
    json_object_set_new(row, "status", json_string(status_of(st, now)));
    json_object_set_new(row, "days_left", json_integer(days_left));
    if (!sql_col_null(st, 6)) {
        ca_time_text((time_t)sql_col_int64(st, 6), rv, sizeof(rv));
        reason = sql_col_int(st, 7);
        json_object_set_new(row, "revoked_at", json_string(rv));
        json_object_set_new(row, "revoke_reason",
                            json_string(tw_crl_reason_name(reason)
                                            ? tw_crl_reason_name(reason)
                                            : "unspecified"));
    } else {
        json_object_set_new(row, "revoked_at", json_null());
        json_object_set_new(row, "revoke_reason", json_null());
    }
    return row;
}

int cmd_list(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ca", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"tokens", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *dir = NULL;
    int as_json = 0, tokens = 0, c, rc;
    ca_dir ca = {0};
    sql_stmt *st = NULL;
    json_t *all = NULL;
    time_t now = time(NULL);
    tw_err err;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c': dir = optarg; break;
        case 'j': as_json = 1; break;
        case 't': tokens = 1; break;
        case 'h': return ca_help(usage);
        default: return ca_bad_option("list", c, argv);
        }
    }
    if (optind != argc || dir == NULL) {
        ca_fail("list", "give --ca DIR");
        return CA_EXIT_USAGE;
    }
    if ((rc = ca_dir_open(&ca, "list", dir, NULL, 0)) != CA_EXIT_OK)
        return rc;
    if (tokens) {
        rc = list_tokens(&ca, as_json, now);
        goto done;
    }
    rc = CA_EXIT_FAIL;
    if (sql_prepare(ca.db, "SELECT serial, subject, sans, purpose, not_before,"
                           " not_after, revoked_at, revoke_reason FROM certs"
                           " ORDER BY issued_at, rowid", &st) != SQL_OK) {
        cadb_err(ca.db, ca.db_path, "cannot read", &err);
        rc = ca_fail_err("list", &err);
        goto done;
    }
    if (as_json)
        all = json_array();
    else
        printf("%-32s  %-40s  %-24s  %-13s  %-20s  %-7s  %s\n", "SERIAL",
               "SUBJECT", "SANS", "PURPOSE", "NOT-AFTER", "STATUS",
               "DAYS-LEFT");
    while ((c = sql_step(st)) == SQL_ROW) {
        time_t not_after = (time_t)sql_col_int64(st, 5);
        long days_left = not_after > now ? (long)((not_after - now) / 86400) : 0;
        const char *sans = sql_col_text(st, 2);
        char na[32];

        if (as_json) {
            json_array_append_new(all, row_json(st, now, days_left));
            continue;
        }
        ca_time_text(not_after, na, sizeof(na));
        printf("%-32s  %-40s  %-24s  %-13s  %-20s  %-7s  %ld\n",
               sql_col_text(st, 0), sql_col_text(st, 1),
               sans && *sans ? sans : "-", sql_col_text(st, 3), na,
               status_of(st, now), days_left);
    }
    if (c != SQL_DONE) {
        cadb_err(ca.db, ca.db_path, "cannot read", &err);
        rc = ca_fail_err("list", &err);
        goto done;
    }
    if (as_json) {
        json_dumpf(all, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    }
    rc = CA_EXIT_OK;
done:
    json_decref(all);
    sql_finalize(st);
    ca_dir_close(&ca);
    return rc;
}
