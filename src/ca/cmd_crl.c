/*
 * cmd_crl.c - `twoway-ca crl`: publish every revocation in a signed CRL.
 */
#include "ca.h"

#include <getopt.h>
#include <stdio.h>
#include <time.h>

static const char usage[] =
    "usage: twoway-ca crl --ca DIR --out FILE [--days N]\n"
    "                     [--passphrase-file FILE]\n"
    "\n"
    "Write a certificate revocation list (v2, PEM) of every certificate the CA\n"
    "revoked, for invoice-server --crl, mail-server --crl, nginx ssl_crl or\n"
    "openssl verify -crl_check.  Each run gets the next CRL number, and\n"
    "prints the CRL's nextUpdate (UTC): publish again before then.\n"
    "\n"
    "  --ca DIR                the CA directory\n"
    "  --out FILE              where to write the CRL\n"
    "  --days N                until the next update (default 30); publish a\n"
    "                          new CRL before then, or peers will refuse\n"
    "  --passphrase-file FILE  the CA key's passphrase, when it is encrypted\n"
    "  --help                  show this help\n";

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
    int days = 30, c, rc;
    ca_dir ca = {0};
    char *pem = NULL;
    size_t len = 0, count = 0;
    uint64_t number;
    time_t next_update = 0;
    char when[32];
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
    /* The number is committed before FILE is written: a failure to write
     * leaves a gap in the numbers and FILE as it was, never a number used
     * twice. */
    if (ca_crl_make_counted(&ca, (long long)days * 86400, &pem, &len, &number,
                            &next_update, &count, &err) < 0) {
        rc = ca_fail_err("crl", &err);
        goto done;
    }
    if (twu_write_file_atomic(out, pem, len, 0644, 0, &err) < 0) {
        ca_fail("crl", "CRL #%llu was made but not written: %s",
                (unsigned long long)number, err.msg);
        rc = CA_EXIT_FAIL;
        goto done;
    }
    /* The date matters more than the number: past it, every peer that
     * checks this CRL refuses every certificate of the CA. */
    ca_time_text(next_update, when, sizeof(when));
    printf("wrote CRL #%llu with %zu revoked -> %s\n"
           "next update %s: publish a new CRL before then (run twoway-ca "
           "crl again), or peers that check it refuse every certificate of "
           "this CA\n",
           (unsigned long long)number, count, out, when);
    rc = CA_EXIT_OK;
done:
    twu_free(pem);
    ca_dir_close(&ca);
    return rc;
}
