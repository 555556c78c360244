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
    "                          [--passphrase-file FILE] [--db URL]\n"
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
    "  --db URL                keep the index in PostgreSQL (postgresql://...,\n"
    "                          schema twoway_ca) rather than DIR/ca.db, shared\n"
    "                          by every command and every `serve` process;\n"
    "                          DIR/index.conf (mode 0600) names it\n"
    "  --help                  show this help\n";

#define MIN_PASSPHRASE 8

/* The three files (or index.conf and the tables in PostgreSQL), created by
 * this command; removed again on failure. */
struct created {
    char *cert, *key, *db;
    const char *url; /* the index is in PostgreSQL */
    const char *dir; /* made by this command: removed when empty, once the
                        staged files are gone */
    int have_cert, have_key, have_db, have_tables;
};

static void undo(struct created *c)
{
    if (c->have_tables) {
        tw_err err;
        sql_db *db = sql_open(c->url, 0, &err);

        if (db == NULL || sql_exec(db, "DROP SCHEMA twoway_ca CASCADE") != SQL_OK)
            ca_fail("init", "could not remove the tables it made (schema "
                    "twoway_ca) from %s: drop them by hand",
                    db != NULL ? sql_name(db) : "the database");
        sql_close(db);
    }
    if (c->have_cert)
        unlink(c->cert);
    if (c->have_key)
        unlink(c->key);
    if (c->have_db)
        unlink(c->db);
}

static int make_dir(const char *dir, struct created *made)
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
    made->dir = dir;
    return 0;
}

static int create_index(const char *target, tw_err *err)
{
    sql_db *db = sql_open(target, SQL_OPEN_CREATE, err);
    sql_stmt *st = NULL;
    int rc = -1;

    if (db == NULL)
        return -1;
    /* One CA per database: an index already there is someone's. */
    if (sql_is_pg(db)) {
        if (sql_prepare(db, "SELECT to_regnamespace('twoway_ca') IS NOT NULL",
                        &st) != SQL_OK ||
            sql_step(st) != SQL_ROW) {
            twu_err(err, TW_ERR_IO, "cannot read %s: %s", sql_name(db),
                    sql_errmsg(db));
            goto out;
        }
        if (sql_col_int(st, 0)) {
            twu_err(err, TW_ERR_INPUT, "%s already holds a CA index (schema "
                    "twoway_ca): not overwriting it (give another database, "
                    "or use the CA directory that names it)", sql_name(db));
            goto out;
        }
    }
    rc = cadb_create(db, err);
out:
    sql_finalize(st);
    sql_close(db);
    return rc;
}

/* DIR/index.conf, naming the database (0600: a URL may hold a password). */
static int stage_index_conf(twu_staged *stage, const char *path,
                            const char *url, tw_err *err)
{
    twu_buf b = {0};
    int rc;

    if (twu_buf_printf(&b, "# The index of this CA (twoway-ca init --db).\n"
                           "database = %s\n", url) < 0) {
        twu_buf_free(&b);
        return twu_err_nomem(err);
    }
    rc = twu_stage_file(stage, path, b.data, b.len, 0600, TWU_WRITE_NO_REPLACE,
                        err);
    twu_buf_free(&b);
    return rc;
}

int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {
        {"subject", required_argument, NULL, 's'},
        {"key", required_argument, NULL, 'k'},
        {"days", required_argument, NULL, 'd'},
        {"passphrase-file", required_argument, NULL, 'p'},
        {"db", required_argument, NULL, 'b'},
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
    twu_staged key_stage = {0}, cert_stage = {0}, conf_stage = {0};
    const char *url = NULL;
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
        case 'b': url = optarg; break;
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
    if (url != NULL && !sql_is_url(url)) {
        ca_fail("init", "--db: '%s' is not a postgresql:// URL (without "
                "--db the index is DIR/ca.db)", url);
        return CA_EXIT_USAGE;
    }
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
        (made.db = ca_path_join(dir, url ? CA_INDEX_CONF : "ca.db")) == NULL) {
        ca_fail("init", "out of memory");
        goto done;
    }
    if (access(made.cert, F_OK) == 0 || access(made.key, F_OK) == 0 ||
        access(made.db, F_OK) == 0) {
        ca_fail("init", "%s already holds a CA: not overwriting it (choose "
                "another directory, or remove the old CA deliberately)", dir);
        goto done;
    }
    if (make_dir(dir, &made) < 0)
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
    if (url != NULL) {
        made.url = url;
        if (stage_index_conf(&conf_stage, made.db, url, &err) < 0 ||
            create_index(url, &err) < 0)
            goto fail;
        made.have_tables = 1;
        made.have_db = 1;
        if (twu_stage_commit(&conf_stage, &err) < 0)
            goto fail;
    } else {
        made.have_db = 1;
        if (create_index(made.db, &err) < 0)
            goto fail;
    }
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
    twu_stage_abort(&conf_stage);
    if (rc != CA_EXIT_OK && made.dir != NULL)
        rmdir(made.dir); /* made here: only when nothing else is in it */
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
