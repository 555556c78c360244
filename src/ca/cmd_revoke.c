/*
 * cmd_revoke.c - `twoway-ca revoke`: mark a certificate revoked in the
 * index; `twoway-ca crl` then publishes it.
 */
#include "ca.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: twoway-ca revoke --ca DIR (--serial HEX | --cert FILE)\n"
    "                        [--reason REASON] [--passphrase-file FILE]\n"
    "\n"
    "Revoke a certificate the CA issued.  Run `twoway-ca crl` afterwards to\n"
    "publish the revocation to servers and clients.\n"
    "\n"
    "  --ca DIR                the CA directory\n"
    "  --serial HEX            the certificate's serial (as `list` shows it)\n"
    "  --cert FILE             or the certificate itself\n"
    "  --reason REASON         unspecified (default), keyCompromise,\n"
    "                          cACompromise, affiliationChanged, superseded,\n"
    "                          cessationOfOperation, privilegeWithdrawn\n"
    "  --passphrase-file FILE  the CA key's passphrase, when it is encrypted\n"
    "  --help                  show this help\n";

static int serial_of_file(const char *path, char *out, size_t len, tw_err *err)
{
    tw_cert *cert = tw_cert_load_file(path, err);
    tw_identity *id = cert ? tw_identity_from_cert(cert, err) : NULL;

    if (id != NULL)
        snprintf(out, len, "%s", tw_identity_serial(id));
    tw_identity_free(id);
    tw_cert_free(cert);
    return id != NULL ? 0 : -1;
}

int cmd_revoke(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ca", required_argument, NULL, 'c'},
        {"serial", required_argument, NULL, 's'},
        {"cert", required_argument, NULL, 'f'},
        {"reason", required_argument, NULL, 'r'},
        {"passphrase-file", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *dir = NULL, *serial_arg = NULL, *cert_path = NULL;
    const char *reason_arg = "unspecified", *passfile = NULL;
    char serial[80], subject[1024];
    int reason, c, rc;
    ca_dir ca = {0};
    tw_err err;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c': dir = optarg; break;
        case 's': serial_arg = optarg; break;
        case 'f': cert_path = optarg; break;
        case 'r': reason_arg = optarg; break;
        case 'p': passfile = optarg; break;
        case 'h': return ca_help(usage);
        default: return ca_bad_option("revoke", c, argv);
        }
    }
    if (optind != argc || dir == NULL ||
        (serial_arg == NULL) == (cert_path == NULL)) {
        ca_fail("revoke", "give --ca DIR and one of --serial HEX or --cert FILE");
        return CA_EXIT_USAGE;
    }
    reason = tw_crl_reason_code(reason_arg);
    if (reason < 0 || reason == 6 || reason == 8 || reason == 10) {
        ca_fail("revoke", "--reason '%s' is not one of unspecified, "
                "keyCompromise, cACompromise, affiliationChanged, superseded, "
                "cessationOfOperation, privilegeWithdrawn", reason_arg);
        return CA_EXIT_USAGE;
    }
    if (serial_arg != NULL &&
        ca_serial_normalise(serial_arg, serial, sizeof(serial)) < 0) {
        ca_fail("revoke", "--serial '%s' is not a hexadecimal serial number",
                serial_arg);
        return CA_EXIT_USAGE;
    }
    if (cert_path != NULL &&
        serial_of_file(cert_path, serial, sizeof(serial), &err) < 0) {
        ca_fail("revoke", "--cert: %s", err.msg);
        return CA_EXIT_FAIL;
    }
    /* Revoking signs nothing yet, but only the CA's keeper may do it. */
    if ((rc = ca_dir_open(&ca, "revoke", dir, passfile, CA_OPEN_SIGN)) !=
        CA_EXIT_OK)
        return rc;
    rc = ca_revoke_serial_subject(&ca, serial, reason, subject,
                                  sizeof(subject), &err);
    if (rc == CA_REVOKE_NOT_FOUND || rc == CA_REVOKE_ALREADY) {
        ca_fail("revoke", "%s", err.msg);
        rc = CA_EXIT_FAIL;
    } else if (rc < 0) {
        rc = ca_fail_err("revoke", &err);
    } else {
        printf("revoked %s %s\n", serial, subject);
        fflush(stdout);
        rc = ca_audit_cli(&ca, "revoke", "revoke", serial, subject);
    }
    ca_dir_close(&ca);
    return rc;
}
