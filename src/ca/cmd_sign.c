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
    "                      [--email ADDR]... [--days N | --lifetime DURATION]\n"
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
    "  --dns/--ip/--uri/--email  names to certify besides the CSR's; with\n"
    "                          --server, when neither these nor the CSR name\n"
    "                          anything, the CN becomes the DNS name (as with\n"
    "                          issue) and a note on stderr says so\n"
    "  --days N                validity in days (default 365)\n"
    "  --lifetime DURATION     or a validity of 90s, 15m, 24h, 30d (at least 60s)\n"
    "  --passphrase-file FILE  the CA key's passphrase, when it is encrypted\n"
    "  --force                 replace an existing CERTFILE\n"
    "  --help                  show this help\n";

static const struct option opts[] = {
    CA_CERTOPTS_OPTIONS, CA_CERTOPTS_CSR, {NULL, 0, NULL, 0}};

static const ca_certcmd sign = {
    "sign", usage, opts, "give --ca DIR, --csr FILE and --out CERTFILE"};

int cmd_sign(int argc, char **argv)
{
    ca_certopts a;
    ca_dir ca = {0};
    tw_certgen *g = NULL;
    tw_cert *cert = NULL;
    tw_identity *id = NULL;
    twu_staged stage = {0};
    char *pem = NULL;
    int rc, in_tx = 0;
    tw_err err;

    if ((rc = ca_certopts_parse(&a, &sign, argc, argv)) != CA_EXIT_OK)
        return rc < 0 ? CA_EXIT_OK : rc;
    if (!a.force && access(a.out, F_OK) == 0) {
        ca_fail("sign", "%s already exists: not replacing it (give --force)",
                a.out);
        return CA_EXIT_FAIL;
    }
    if ((g = ca_certopts_template(&a, "sign", &rc)) == NULL)
        return rc;
    if ((rc = ca_dir_open(&ca, "sign", a.ca, a.passfile, CA_OPEN_SIGN)) !=
        CA_EXIT_OK)
        goto done;
    if (cadb_begin(ca.db, ca.db_path, &err) < 0)
        goto fail;
    in_tx = 1;
    if ((cert = ca_sign_record(&ca, g, &err)) == NULL ||
        (pem = tw_cert_to_pem(cert, &err)) == NULL ||
        twu_stage_file(&stage, a.out, pem, strlen(pem), 0644, 0, &err) < 0 ||
        cadb_commit(ca.db, ca.db_path, &err) < 0)
        goto fail;
    in_tx = 0;
    if (twu_stage_commit(&stage, &err) < 0 ||
        (id = tw_identity_from_cert(cert, &err)) == NULL)
        goto fail;
    printf("signed %s %s -> %s\n", tw_identity_serial(id),
           tw_identity_subject(id), a.out);
    fflush(stdout);
    rc = ca_audit_cli(&ca, "sign", "sign", tw_identity_serial(id),
                      tw_identity_subject(id));
    goto done;
fail:
    rc = ca_fail_tx(&ca, "sign", in_tx, &err);
done:
    twu_stage_abort(&stage);
    twu_free(pem);
    tw_identity_free(id);
    tw_cert_free(cert);
    tw_certgen_free(g);
    ca_dir_close(&ca);
    return rc;
}
