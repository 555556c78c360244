/*
 * cmd_init.c - `twoway-ca init DIR`: a new CA, never over an old one.
 */
#include "ca.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: twoway-ca init DIR [--subject SUBJECT] [--key TYPE] [--days N]\n"
    "                          [--passphrase-file FILE]\n"
    "\n"
    "Create a certificate authority in DIR: DIR/ca.cert.pem (the trust anchor\n"
    "to hand to servers and clients), DIR/ca.key.pem (mode 0600) and DIR/ca.db\n"
    "(the index of issued certificates).  Never overwrites an existing CA.\n"
    "\n"
    "  --subject SUBJECT       the CA's name, as in openssl -subj\n"
    "                          (default \"/CN=twoway CA\"), e.g. \"/O=ABC Inc.\"\n"
    "  --key TYPE              ec-p256 (default), ec-p384, ed25519, rsa-2048,\n"
    "                          rsa-3072 or rsa-4096\n"
    "  --days N                validity in days (default 3650)\n"
    "  --passphrase-file FILE  encrypt the CA key (AES-256) with the first line\n"
    "                          of FILE; every signing command then needs it\n"
    "  --help                  show this help\n";

#define MIN_PASSPHRASE 8

/* The three files, created by this command; removed again on failure. */
struct created {
    char *cert, *key, *db;
    int have_cert, have_key, have_db;
};

static void undo(struct created *c)
{
    if (c->have_cert)
        unlink(c->cert);
    if (c->have_key)
        unlink(c->key);
    if (c->have_db)
        unlink(c->db);
}

static int make_dir(const char *dir)
{
    struct stat st;

    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            ca_fail("init", "%s exists and is not a directory", dir);
            return -1;
        }
        return 0;
    }
    if (mkdir(dir, 0700) != 0) {
        ca_fail("init", "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int create_index(const char *path, tw_err *err)
{
    sqlite3 *db = NULL;
    int rc;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        NULL) != SQLITE_OK) {
        twu_err(err, TW_ERR_IO, "cannot create %s: %s", path,
                sqlite3_errmsg(db));
        sqlite3_close(db);
        return -1;
    }
    rc = cadb_create(db, err);
    sqlite3_close(db);
    return rc;
}

int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {
        {"subject", required_argument, NULL, 's'},
        {"key", required_argument, NULL, 'k'},
        {"days", required_argument, NULL, 'd'},
        {"passphrase-file", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *subject = "/CN=twoway CA", *keytype = "ec-p256";
    const char *passfile = NULL, *dir;
    char *pass = NULL;
    int days = 3650, c, rc = CA_EXIT_FAIL;
    struct created made = {0};
    tw_name *name = NULL;
    tw_key *key = NULL;
    tw_certgen *g = NULL;
    tw_cert *cert = NULL;
    twu_staged key_stage = {0}, cert_stage = {0};
    char *key_pem = NULL;
    size_t key_len = 0;
    tw_err err;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 's': subject = optarg; break;
        case 'k': keytype = optarg; break;
        case 'p': passfile = optarg; break;
        case 'd':
            if ((days = ca_parse_days("init", optarg, 36500)) < 0)
                return CA_EXIT_USAGE;
            break;
        case 'h': return ca_help(usage);
        default: return ca_bad_option("init", c, argv);
        }
    }
    if (optind != argc - 1) {
        ca_fail("init", optind >= argc ? "give the CA directory: twoway-ca init DIR"
                                       : "give exactly one CA directory");
        return CA_EXIT_USAGE;
    }
    dir = argv[optind];
    if ((name = tw_name_parse(subject, &err)) == NULL) {
        ca_fail("init", "--subject: %s", err.msg);
        return CA_EXIT_USAGE;
    }
    if (!tw_key_type_valid(keytype)) {
        tw_key_free(tw_key_generate(keytype, &err));
        ca_fail("init", "--key: %s", err.msg);
        tw_name_free(name);
        return CA_EXIT_USAGE;
    }
    if (passfile != NULL) {
        if ((pass = ca_passphrase_read("init", passfile)) == NULL)
            goto done;
        if (strlen(pass) < MIN_PASSPHRASE) {
            ca_fail("init", "the passphrase in %s is shorter than %d characters",
                    passfile, MIN_PASSPHRASE);
            goto done;
        }
    }
    if ((made.cert = ca_path_join(dir, "ca.cert.pem")) == NULL ||
        (made.key = ca_path_join(dir, "ca.key.pem")) == NULL ||
        (made.db = ca_path_join(dir, "ca.db")) == NULL) {
        ca_fail("init", "out of memory");
        goto done;
    }
    if (access(made.cert, F_OK) == 0 || access(made.key, F_OK) == 0 ||
        access(made.db, F_OK) == 0) {
        ca_fail("init", "%s already holds a CA: not overwriting it (choose "
                "another directory, or remove the old CA deliberately)", dir);
        goto done;
    }
    if (make_dir(dir) < 0)
        goto done;

    if ((key = tw_key_generate(keytype, &err)) == NULL ||
        (g = tw_certgen_new(&err)) == NULL ||
        tw_certgen_set_subject(g, name, &err) < 0 ||
        tw_certgen_set_public_key(g, key, &err) < 0 ||
        tw_certgen_set_purposes(g, TW_PURPOSE_CA, &err) < 0 ||
        tw_certgen_set_days(g, days, &err) < 0 ||
        (cert = tw_certgen_sign(g, NULL, key, &err)) == NULL ||
        (key_pem = tw_key_pem(key, pass, &key_len, &err)) == NULL)
        goto fail;
    {
        char *pem;

        if (twu_stage_file(&key_stage, made.key, key_pem, key_len, 0600,
                           TWU_WRITE_NO_REPLACE, &err) < 0)
            goto fail;
        if ((pem = tw_cert_to_pem(cert, &err)) == NULL)
            goto fail;
        rc = twu_stage_file(&cert_stage, made.cert, pem, strlen(pem), 0644,
                            TWU_WRITE_NO_REPLACE, &err);
        twu_free(pem);
        rc = rc < 0 ? CA_EXIT_FAIL : CA_EXIT_OK;
        if (rc != CA_EXIT_OK)
            goto fail;
    }
    made.have_db = 1;
    if (create_index(made.db, &err) < 0)
        goto fail;
    made.have_key = 1;
    if (twu_stage_commit(&key_stage, &err) < 0)
        goto fail;
    made.have_cert = 1;
    if (twu_stage_commit(&cert_stage, &err) < 0)
        goto fail;
    {
        tw_identity *id = tw_identity_from_cert(cert, &err);

        printf("created CA %s (%s, serial %s) in %s\n",
               id ? tw_identity_subject(id) : subject, tw_key_describe(key),
               id ? tw_identity_serial(id) : "?", dir);
        tw_identity_free(id);
    }
    rc = CA_EXIT_OK;
    goto done;
fail:
    rc = CA_EXIT_FAIL;
    ca_fail("init", "%s", err.msg);
    undo(&made);
done:
    twu_stage_abort(&key_stage);
    twu_stage_abort(&cert_stage);
    tw_key_pem_free(key_pem, key_len);
    ca_passphrase_free(pass);
    tw_cert_free(cert);
    tw_certgen_free(g);
    tw_key_free(key);
    tw_name_free(name);
    twu_free(made.cert);
    twu_free(made.key);
    twu_free(made.db);
    return rc;
}
