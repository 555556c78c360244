/*
 * cmd_issue.c - `twoway-ca issue`: a new key and certificate for a server
 * or client, recorded in the index before its files get their names.
 *
 * With --force the new files replace the old ones only by rename(2), after
 * the index has recorded the certificate: until then the old key.pem,
 * cert.pem and ca.cert.pem are untouched, so a failure (a busy index, a full
 * disk, a wrong passphrase) never leaves a service without its pair.
 */
#include "ca.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: twoway-ca issue --ca DIR --out OUTDIR --subject SUBJECT\n"
    "                       (--server | --client | --server --client)\n"
    "                       [--dns NAME]... [--ip ADDR]... [--uri URI]...\n"
    "                       [--email ADDR]... [--days N | --lifetime DURATION]\n"
    "                       [--key TYPE]\n"
    "                       [--passphrase-file FILE] [--force]\n"
    "\n"
    "Issue a new key and certificate, signed by the CA in DIR, and write\n"
    "OUTDIR/key.pem (mode 0600), OUTDIR/cert.pem and OUTDIR/ca.cert.pem.\n"
    "\n"
    "  --ca DIR                the CA directory (made by twoway-ca init)\n"
    "  --out OUTDIR            where to write the files (created if missing)\n"
    "  --subject SUBJECT       as in openssl -subj: \"/CN=localhost/O=MailServer\"\n"
    "  --server                for TLS servers (extendedKeyUsage serverAuth)\n"
    "  --client                for TLS clients (extendedKeyUsage clientAuth)\n"
    "  --dns NAME              a DNS name (subjectAltName); repeatable.  A server\n"
    "                          certificate with no name gets its CN as DNS name\n"
    "  --ip ADDR               an IPv4 or IPv6 address; repeatable\n"
    "  --uri URI               a URI, e.g. spiffe://abc.example/mail; repeatable\n"
    "  --email ADDR            an email address; repeatable\n"
    "  --days N                validity in days (default 365; never beyond the CA)\n"
    "  --lifetime DURATION     or a validity of 90s, 15m, 24h, 30d (at least 60s)\n"
    "  --key TYPE              ec-p256 (default), ec-p384, ed25519, rsa-2048,\n"
    "                          rsa-3072 or rsa-4096\n"
    "  --passphrase-file FILE  the CA key's passphrase, when it is encrypted\n"
    "  --force                 replace OUTDIR/key.pem and OUTDIR/cert.pem\n"
    "  --help                  show this help\n";

static const struct option opts[] = {
    CA_CERTOPTS_OPTIONS, CA_CERTOPTS_SUBJECT, CA_CERTOPTS_KEY,
    {NULL, 0, NULL, 0}};

static const ca_certcmd issue = {
    "issue", usage, opts, "give --ca DIR, --out OUTDIR and --subject SUBJECT"};

/* Create OUTDIR if needed and refuse existing files without --force.
 * Nothing is removed here: replacing is the renames at the very end. */
/* *created: the directory is new (removed again if issue fails). */
static int prepare_outdir(const ca_certopts *a, const char *key_path,
                          const char *cert_path, int *created)
{
    struct stat st;

    *created = 0;
    if (stat(a->out, &st) != 0) {
        *created = 1;
        if (ca_mkdirs(a->out, 0755) != 0) {
            ca_fail("issue", "cannot create --out %s: %s", a->out,
                    strerror(errno));
            return -1;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        ca_fail("issue", "--out %s is not a directory", a->out);
        return -1;
    }
    if (!a->force &&
        (access(key_path, F_OK) == 0 || access(cert_path, F_OK) == 0)) {
        ca_fail("issue", "%s already holds a key or certificate: not "
                "replacing it (give --force to replace)", a->out);
        return -1;
    }
    return 0;
}

int cmd_issue(int argc, char **argv)
{
    ca_certopts a;
    ca_dir ca = {0};
    tw_certgen *g = NULL;
    tw_key *key = NULL;
    tw_cert *cert = NULL;
    tw_identity *id = NULL;
    char *key_path = NULL, *cert_path = NULL, *anchor_path = NULL, *pem = NULL;
    char *anchor_pem = NULL;
    twu_staged key_stage = {0}, cert_stage = {0}, anchor_stage = {0};
    char *key_pem = NULL;
    size_t key_len = 0;
    int rc, in_tx = 0, replace, created = 0;
    tw_err err;

    if ((rc = ca_certopts_parse(&a, &issue, argc, argv)) != CA_EXIT_OK)
        return rc < 0 ? CA_EXIT_OK : rc;
    if (!tw_key_type_valid(a.keytype)) {
        ca_fail("issue", "--key: unknown key type '%s': use ec-p256, ec-p384, "
                "ed25519, rsa-2048, rsa-3072 or rsa-4096", a.keytype);
        return CA_EXIT_USAGE;
    }
    if ((g = ca_certopts_template(&a, "issue", &rc)) == NULL)
        return rc;
    if ((rc = ca_dir_open(&ca, "issue", a.ca, a.passfile, CA_OPEN_SIGN)) !=
        CA_EXIT_OK)
        goto done;
    rc = CA_EXIT_FAIL;
    if ((key_path = ca_path_join(a.out, "key.pem")) == NULL ||
        (cert_path = ca_path_join(a.out, "cert.pem")) == NULL ||
        (anchor_path = ca_path_join(a.out, "ca.cert.pem")) == NULL) {
        ca_fail("issue", "out of memory");
        goto done;
    }
    if (prepare_outdir(&a, key_path, cert_path, &created) < 0)
        goto done;
    /* Without --force a file that appeared since prepare_outdir is still
     * not replaced: link(2) refuses it (TWU_WRITE_NO_REPLACE). */
    replace = a.force ? 0 : TWU_WRITE_NO_REPLACE;
    if ((key = tw_key_generate(a.keytype, &err)) == NULL ||
        tw_certgen_set_public_key(g, key, &err) < 0 ||
        (key_pem = tw_key_pem(key, NULL, &key_len, &err)) == NULL)
        goto fail;
    /* Staging the key first proves OUTDIR is writable before anything is
     * recorded. */
    if (twu_stage_file(&key_stage, key_path, key_pem, key_len, 0600, replace,
                       &err) < 0)
        goto fail;
    if ((anchor_pem = tw_cert_to_pem(ca.cert, &err)) == NULL ||
        twu_stage_file(&anchor_stage, anchor_path, anchor_pem,
                       strlen(anchor_pem), 0644, 0, &err) < 0)
        goto fail;
    if (cadb_begin(ca.db, ca.db_path, &err) < 0)
        goto fail;
    in_tx = 1;
    if ((cert = ca_sign_record(&ca, g, &err)) == NULL ||
        (pem = tw_cert_to_pem(cert, &err)) == NULL ||
        twu_stage_file(&cert_stage, cert_path, pem, strlen(pem), 0644,
                       replace, &err) < 0 ||
        cadb_commit(ca.db, ca.db_path, &err) < 0)
        goto fail;
    in_tx = 0;
    /* Recorded: now the files get their names, key.pem before cert.pem.
     * A crash between the two leaves the new key beside the old
     * certificate, a pair that does not match: a service refuses to load
     * it and a reload keeps the old one in memory.  The other order would
     * leave the same mismatch, but with the new private key stranded in a
     * temp file, a secret nobody knows to wipe; this one strands only a
     * certificate, which the index holds anyway.  And with cert.pem last,
     * whoever sees the new certificate (a reload watching the files, an
     * expiry check) finds its key already in place.  The anchor goes first:
     * it is not half of the pair, and a renewal from the same CA does not
     * change it. */
    if (twu_stage_commit(&anchor_stage, &err) < 0 ||
        twu_stage_commit(&key_stage, &err) < 0 ||
        twu_stage_commit(&cert_stage, &err) < 0)
        goto fail;
    if ((id = tw_identity_from_cert(cert, &err)) == NULL)
        goto fail;
    printf("issued %s %s -> %s\n", tw_identity_serial(id),
           tw_identity_subject(id), cert_path);
    fflush(stdout);
    rc = ca_audit_cli(&ca, "issue", "issue", tw_identity_serial(id),
                      tw_identity_subject(id));
    goto done;
fail:
    rc = ca_fail_tx(&ca, "issue", in_tx, &err);
done:
    twu_stage_abort(&key_stage);
    twu_stage_abort(&cert_stage);
    twu_stage_abort(&anchor_stage);
    /* A command that fails leaves nothing behind: not even the --out
     * directory it made (rmdir: only when empty). */
    if (rc != CA_EXIT_OK && created)
        rmdir(a.out);
    tw_key_pem_free(key_pem, key_len);
    twu_free(pem);
    twu_free(anchor_pem);
    tw_identity_free(id);
    twu_free(key_path);
    twu_free(cert_path);
    twu_free(anchor_path);
    tw_cert_free(cert);
    tw_key_free(key);
    tw_certgen_free(g);
    ca_dir_close(&ca);
    return rc;
}
