/*
 * cmd_verify.c - `twoway-ca verify`: would a server (or client) accept this
 * certificate?  The answer uses the same words the server logs.
 */
#include "ca.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: twoway-ca verify --ca CAFILE [--crl FILE] [--purpose client|server]\n"
    "                        [--host NAME] CERTFILE\n"
    "\n"
    "Check CERTFILE as a peer would: signed by a CA in CAFILE, within its\n"
    "validity, not revoked by the CRL, keys and signatures at OpenSSL\n"
    "security level 2, allowed for the purpose, and naming the host.\n"
    "Exit 0 and `CERTFILE: OK` when it would be accepted; exit 3 and\n"
    "`CERTFILE: refused (REASON): SENTENCE` when not.\n"
    "\n"
    "  --ca CAFILE        the trusted CA certificate(s), PEM\n"
    "  --crl FILE         the CRLs of those CAs (one per CA) to check\n"
    "                     revocation against\n"
    "  --purpose P        client or server (default: any)\n"
    "  --host NAME        the host name or IP address it must name\n"
    "  --help             show this help\n";

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ca", required_argument, NULL, 'c'},
        {"crl", required_argument, NULL, 'r'},
        {"purpose", required_argument, NULL, 'p'},
        {"host", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *ca = NULL, *crl = NULL, *host = NULL, *path;
    int purpose = 0, c, rc = CA_EXIT_FAIL;
    tw_trust *trust = NULL;
    tw_cert *cert = NULL;
    tw_err err;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c': ca = optarg; break;
        case 'r': crl = optarg; break;
        case 'H': host = optarg; break;
        case 'p':
            if (strcmp(optarg, "client") == 0)
                purpose = TW_PURPOSE_CLIENT;
            else if (strcmp(optarg, "server") == 0)
                purpose = TW_PURPOSE_SERVER;
            else {
                ca_fail("verify", "--purpose '%s': use client or server",
                        optarg);
                return CA_EXIT_USAGE;
            }
            break;
        case 'h': return ca_help(usage);
        default: return ca_bad_option("verify", c, argv);
        }
    }
    if (ca == NULL || optind != argc - 1) {
        ca_fail("verify", "give --ca CAFILE and one CERTFILE");
        return CA_EXIT_USAGE;
    }
    path = argv[optind];
    if ((trust = tw_trust_load(ca, crl, &err)) == NULL) {
        ca_fail("verify", "%s", err.msg);
        goto done;
    }
    if ((cert = tw_cert_load_file(path, &err)) == NULL) {
        ca_fail("verify", "%s", err.msg);
        goto done;
    }
    if (tw_trust_verify(trust, cert, purpose, host, &err) < 0) {
        if (err.cls != TW_ERR_PEER_REJECTED) {
            rc = ca_fail_err("verify", &err);
            goto done;
        }
        fprintf(stderr, "%s: refused (%s): %s\n", path,
                tw_reason_name(err.reason), err.msg);
        rc = CA_EXIT_REFUSED;
        goto done;
    }
    printf("%s: OK\n", path);
    rc = CA_EXIT_OK;
done:
    tw_cert_free(cert);
    tw_trust_free(trust);
    return rc;
}
