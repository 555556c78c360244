/*
 * cmd_sign.c - `twoway-ca sign`: certify a CSR's key, after checking it.
 */
#include "ca.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: twoway-ca sign --ca DIR --csr FILE --out CERTFILE\n"
    "                      (--server | --client | --server --client)\n"
    "                      [--dns NAME]... [--ip ADDR]... [--uri URI]...\n"
    "                      [--email ADDR]... [--days N]\n"
    "                      [--passphrase-file FILE] [--force]\n"
    "\n"
    "Sign a certificate signing request (PEM or DER), e.g. one made with\n"
    "`openssl req -newkey rsa:2048 -nodes -subj \"/CN=localhost/O=MailServer\"`.\n"
    "The CSR's self-signature must verify and it may not ask for CA:TRUE; only\n"
    "its subject, key and names (DNS, IP, URI, email) are taken from it.\n"
    "\n"
    "  --ca DIR                the CA directory\n"
    "  --csr FILE              the request\n"
    "  --out CERTFILE          where to write the certificate (PEM)\n"
    "  --server, --client      the purpose(s), as for issue\n"
    "  --dns/--ip/--uri/--email  names to certify besides the CSR's\n"
    "  --days N                validity in days (default 365)\n"
    "  --passphrase-file FILE  the CA key's passphrase, when it is encrypted\n"
    "  --force                 replace an existing CERTFILE\n"
    "  --help                  show this help\n";

int cmd_sign(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ca", required_argument, NULL, 'c'},
        {"csr", required_argument, NULL, 'r'},
        {"out", required_argument, NULL, 'o'},
        {"server", no_argument, NULL, 'S'},
        {"client", no_argument, NULL, 'C'},
        {"dns", required_argument, NULL, 'D'},
        {"ip", required_argument, NULL, 'I'},
        {"uri", required_argument, NULL, 'U'},
        {"email", required_argument, NULL, 'E'},
        {"days", required_argument, NULL, 'd'},
        {"passphrase-file", required_argument, NULL, 'p'},
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *dir = NULL, *csr = NULL, *out = NULL, *passfile = NULL;
    int purposes = 0, days = 365, force = 0, c, n = 0, rc, in_tx = 0;
    ca_names names = {0};
    ca_dir ca = {0};
    tw_certgen *g = NULL;
    tw_cert *cert = NULL;
    tw_identity *id = NULL;
    tw__staged stage = {0};
    char *pem = NULL;
    tw_err err;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c': dir = optarg; break;
        case 'r': csr = optarg; break;
        case 'o': out = optarg; break;
        case 'S': purposes |= TW_PURPOSE_SERVER; break;
        case 'C': purposes |= TW_PURPOSE_CLIENT; break;
        case 'D': n = ca_names_add(&names, TW_SAN_DNS, optarg); break;
        case 'I': n = ca_names_add(&names, TW_SAN_IP, optarg); break;
        case 'U': n = ca_names_add(&names, TW_SAN_URI, optarg); break;
        case 'E': n = ca_names_add(&names, TW_SAN_EMAIL, optarg); break;
        case 'p': passfile = optarg; break;
        case 'f': force = 1; break;
        case 'd':
            if ((days = ca_parse_days("sign", optarg, 36500)) < 0)
                return CA_EXIT_USAGE;
            break;
        case 'h': return ca_help(usage);
        default: return ca_bad_option("sign", c, argv);
        }
        if (n < 0) {
            ca_fail("sign", "more than %d names given", CA_NAMES_MAX);
            return CA_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        ca_fail("sign", "unexpected argument '%s' (see `twoway-ca sign --help`)",
                argv[optind]);
        return CA_EXIT_USAGE;
    }
    if (dir == NULL || csr == NULL || out == NULL) {
        ca_fail("sign", "give --ca DIR, --csr FILE and --out CERTFILE");
        return CA_EXIT_USAGE;
    }
    if (purposes == 0) {
        ca_fail("sign", "say what the certificate is for: --server, --client, "
                "or both");
        return CA_EXIT_USAGE;
    }
    if (!force && access(out, F_OK) == 0) {
        ca_fail("sign", "%s already exists: not replacing it (give --force)",
                out);
        return CA_EXIT_FAIL;
    }
    if ((g = tw_certgen_new(&err)) == NULL ||
        tw_certgen_set_purposes(g, purposes, &err) < 0 ||
        tw_certgen_set_days(g, days, &err) < 0)
        goto fail;
    if (tw_certgen_from_csr_file(g, csr, &err) < 0) {
        ca_fail("sign", "--csr: %s", err.msg);
        rc = CA_EXIT_FAIL;
        goto done;
    }
    if (ca_names_apply(&names, g, purposes, &err) < 0)
        goto fail;
    if ((rc = ca_dir_open(&ca, "sign", dir, passfile, CA_OPEN_SIGN)) !=
        CA_EXIT_OK)
        goto done;
    if (cadb_begin(ca.db, &err) < 0)
        goto fail;
    in_tx = 1;
    if ((cert = ca_sign_record(&ca, g, &err)) == NULL ||
        (pem = tw_cert_to_pem(cert, &err)) == NULL ||
        tw__stage_file(&stage, out, pem, strlen(pem), 0644, 0, &err) < 0 ||
        cadb_commit(ca.db, &err) < 0)
        goto fail;
    in_tx = 0;
    if (tw__stage_commit(&stage, &err) < 0 ||
        (id = tw_identity_from_cert(cert, &err)) == NULL)
        goto fail;
    printf("signed %s %s -> %s\n", tw_identity_serial(id),
           tw_identity_subject(id), out);
    rc = CA_EXIT_OK;
    goto done;
fail:
    if (in_tx)
        cadb_rollback(ca.db);
    rc = ca_fail_err("sign", &err);
done:
    tw__stage_abort(&stage);
    tw__free(pem);
    tw_identity_free(id);
    tw_cert_free(cert);
    tw_certgen_free(g);
    ca_dir_close(&ca);
    return rc;
}
