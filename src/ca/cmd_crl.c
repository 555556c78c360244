/*
 * cmd_crl.c - `twoway-ca crl`: publish every revocation in a signed CRL.
 */
#include "ca.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: twoway-ca crl --ca DIR --out FILE [--days N]\n"
    "                     [--passphrase-file FILE]\n"
    "\n"
    "Write a certificate revocation list (v2, PEM) of every certificate the CA\n"
    "revoked, for invoice-server --crl, mail-server --crl, nginx ssl_crl or\n"
    "openssl verify -crl_check.  Each run gets the next CRL number.\n"
    "\n"
    "  --ca DIR                the CA directory\n"
    "  --out FILE              where to write the CRL\n"
    "  --days N                until the next update (default 30); publish a\n"
    "                          new CRL before then, or peers will refuse\n"
    "  --passphrase-file FILE  the CA key's passphrase, when it is encrypted\n"
    "  --help                  show this help\n";

/* Read every revocation; the strings live in `names` (one allocation). */
static int read_revoked(sqlite3 *db, tw_revoked **out, size_t *count,
                        char **names)
{
    sqlite3_stmt *st = NULL;
    tw_revoked *list = NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc;

    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM certs WHERE revoked_at"
                               " IS NOT NULL", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        goto err;
    cap = (size_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    list = twu_calloc(cap ? cap : 1, sizeof(*list));
    buf = twu_calloc(cap ? cap : 1, 48);
    if (list == NULL || buf == NULL)
        goto err;
    if (sqlite3_prepare_v2(db, "SELECT serial, revoked_at, revoke_reason FROM"
                               " certs WHERE revoked_at IS NOT NULL", -1, &st,
                           NULL) != SQLITE_OK)
        goto err;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < cap) {
        snprintf(buf + 48 * n, 48, "%s", sqlite3_column_text(st, 0));
        list[n].serial_hex = buf + 48 * n;
        list[n].revoked_at = (time_t)sqlite3_column_int64(st, 1);
        list[n].reason = sqlite3_column_int(st, 2);
        n++;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        goto err;
    sqlite3_finalize(st);
    *out = list;
    *count = n;
    *names = buf;
    return 0;
err:
    sqlite3_finalize(st);
    twu_free(list);
    twu_free(buf);
    return -1;
}

int cmd_crl(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ca", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'o'},
        {"days", required_argument, NULL, 'd'},
        {"passphrase-file", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *dir = NULL, *out = NULL, *passfile = NULL;
    int days = 30, c, rc, in_tx = 0;
    ca_dir ca = {0};
    tw_revoked *list = NULL;
    char *names = NULL, *staged = NULL;
    size_t count = 0;
    uint64_t number;
    tw_err err;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c': dir = optarg; break;
        case 'o': out = optarg; break;
        case 'p': passfile = optarg; break;
        case 'd':
            if ((days = ca_parse_days("crl", optarg, 3650)) < 0)
                return CA_EXIT_USAGE;
            break;
        case 'h': return ca_help(usage);
        default: return ca_bad_option("crl", c, argv);
        }
    }
    if (optind != argc || dir == NULL || out == NULL) {
        ca_fail("crl", "give --ca DIR and --out FILE");
        return CA_EXIT_USAGE;
    }
    if ((rc = ca_dir_open(&ca, "crl", dir, passfile, CA_OPEN_SIGN)) !=
        CA_EXIT_OK)
        return rc;
    if (cadb_begin(ca.db, ca.db_path, &err) < 0)
        goto fail;
    in_tx = 1;
    if (read_revoked(ca.db, &list, &count, &names) < 0) {
        twu_err(&err, TW_ERR_IO, "cannot read %s: %s", ca.db_path,
                sqlite3_errmsg(ca.db));
        goto fail;
    }
    /* The number is drawn and the CRL written beside FILE before COMMIT,
     * and FILE gets it only after COMMIT: a failure anywhere rolls the
     * number back and leaves FILE as it was, so a published CRL number is
     * never used twice. */
    if ((staged = twu_malloc(strlen(out) + sizeof(".new"))) == NULL) {
        twu_err_nomem(&err);
        goto fail;
    }
    sprintf(staged, "%s.new", out);
    unlink(staged);
    if (cadb_next_crl_number(ca.db, &number, &err) < 0 ||
        tw_crl_write_file(ca.cert, ca.key, list, count, number, days, staged,
                          &err) < 0 ||
        cadb_commit(ca.db, ca.db_path, &err) < 0)
        goto fail;
    in_tx = 0;
    if (rename(staged, out) != 0) {
        twu_err(&err, TW_ERR_IO, "CRL #%llu is in %s but cannot be renamed "
                "to %s: %s", (unsigned long long)number, staged, out,
                strerror(errno));
        twu_free(staged);
        staged = NULL; /* keep it: it is the published CRL */
        goto fail;
    }
    printf("wrote CRL #%llu with %zu revoked -> %s\n",
           (unsigned long long)number, count, out);
    rc = CA_EXIT_OK;
    goto done;
fail:
    rc = ca_fail_tx(&ca, "crl", in_tx, &err);
    if (staged != NULL)
        unlink(staged);
done:
    twu_free(staged);
    twu_free(list);
    twu_free(names);
    ca_dir_close(&ca);
    return rc;
}
