/*
 * cmd_token.c - `twoway-ca token`: a one-time token with which a service
 * enrols at `twoway-ca serve` (POST /v1/enroll) for the subject, names,
 * purposes and lifetime given here.  Only the token's SHA-256 is stored.
 */
#include "ca.h"

#include <getopt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: twoway-ca token --ca DIR --subject SUBJECT\n"
    "                       (--server | --client | --server --client)\n"
    "                       [--dns NAME]... [--ip ADDR]... [--uri URI]...\n"
    "                       [--email ADDR]... [--ttl DURATION]\n"
    "                       [--lifetime DURATION]\n"
    "\n"
    "Print a one-time token (256 random bits, base64url, 43 characters) with\n"
    "which a service enrols at `twoway-ca serve` (POST /v1/enroll): its CSR\n"
    "must ask for exactly this subject and these names.  The token works\n"
    "once, until --ttl has passed.  The index keeps only its SHA-256; keep\n"
    "the token secret until it is used.\n"
    "\n"
    "  --ca DIR                the CA directory\n"
    "  --subject SUBJECT       as in openssl -subj: \"/CN=mail/O=MailServer\"\n"
    "  --server, --client      the purpose(s) of the certificate\n"
    "  --dns/--ip/--uri/--email  the names it certifies; repeatable\n"
    "  --ttl DURATION          how long the token may be used: 90s, 15m, 24h,\n"
    "                          30d (default 1h, at most 30d)\n"
    "  --lifetime DURATION     the certificate's lifetime (default: serve's\n"
    "                          --default-lifetime; capped at its maximum)\n"
    "  --help                  show this help\n";

/* Check the subject and names as issue would, by building its template;
 * the subject's -subj text and the names' text go into `t`. */
static int bind_token(ca_token *t, const char *subject, const ca_names *names,
                      int purposes, tw_err *err)
{
    tw_name *name = NULL;
    tw_certgen *g = NULL;
    int rc = -1;

    if ((name = tw_name_parse(subject, err)) == NULL) {
        char why[sizeof(err->msg)];

        snprintf(why, sizeof(why), "%s", err->msg);
        twu_err(err, TW_ERR_USAGE, "--subject: %s", why);
        goto done;
    }
    if ((g = tw_certgen_new(err)) == NULL ||
        tw_certgen_set_purposes(g, purposes, err) < 0)
        goto done;
    for (size_t i = 0; i < names->count; i++)
        if (tw_certgen_add_san(g, names->type[i], names->value[i], err) < 0)
            goto done;
    if ((t->subject = twu_strdup(tw_name_text(name))) == NULL) {
        twu_err_nomem(err);
        goto done;
    }
    if ((t->sans = ca_names_text(names, err)) == NULL)
        goto done;
    t->purposes = purposes;
    rc = 0;
done:
    tw_certgen_free(g);
    tw_name_free(name);
    return rc;
}

int cmd_token(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ca", required_argument, NULL, 'c'},
        {"subject", required_argument, NULL, 's'},
        {"server", no_argument, NULL, 'S'},
        {"client", no_argument, NULL, 'C'},
        {"dns", required_argument, NULL, 'D'},
        {"ip", required_argument, NULL, 'I'},
        {"uri", required_argument, NULL, 'U'},
        {"email", required_argument, NULL, 'E'},
        {"ttl", required_argument, NULL, 't'},
        {"lifetime", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *dir = NULL, *subject = NULL;
    long long ttl = CA_TOKEN_TTL_DEFAULT, lifetime = 0;
    int purposes = 0, c, n = 0, rc;
    char text[CA_TOKEN_LEN + 1];
    ca_names names;
    ca_token t;
    ca_dir ca = {0};
    tw_err err;

    memset(&names, 0, sizeof(names));
    memset(&t, 0, sizeof(t));
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c': dir = optarg; break;
        case 's': subject = optarg; break;
        case 'S': purposes |= TW_PURPOSE_SERVER; break;
        case 'C': purposes |= TW_PURPOSE_CLIENT; break;
        case 'D': n = ca_names_add(&names, TW_SAN_DNS, optarg); break;
        case 'I': n = ca_names_add(&names, TW_SAN_IP, optarg); break;
        case 'U': n = ca_names_add(&names, TW_SAN_URI, optarg); break;
        case 'E': n = ca_names_add(&names, TW_SAN_EMAIL, optarg); break;
        case 't':
            if ((ttl = ca_parse_duration("token", "--ttl", optarg, 60,
                                         CA_TOKEN_TTL_MAX)) < 0)
                return CA_EXIT_USAGE;
            break;
        case 'L':
            if ((lifetime = ca_parse_duration("token", "--lifetime", optarg,
                                              CA_LIFETIME_MIN,
                                              CA_LIFETIME_MAX)) < 0)
                return CA_EXIT_USAGE;
            break;
        case 'h': return ca_help(usage);
        default: return ca_bad_option("token", c, argv);
        }
        if (n < 0) {
            ca_fail("token", "more than %d names given", CA_NAMES_MAX);
            return CA_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        ca_fail("token", "unexpected argument '%s' (see `twoway-ca token "
                "--help`)", argv[optind]);
        return CA_EXIT_USAGE;
    }
    if (dir == NULL || subject == NULL) {
        ca_fail("token", "give --ca DIR and --subject SUBJECT");
        return CA_EXIT_USAGE;
    }
    if (purposes == 0) {
        ca_fail("token", "say what the certificate is for: --server, "
                "--client, or both");
        return CA_EXIT_USAGE;
    }
    /* Everything that can be wrong with the options is said before the
     * CA is touched. */
    if (bind_token(&t, subject, &names, purposes, &err) < 0) {
        rc = ca_fail_err("token", &err);
        goto done;
    }
    t.lifetime = lifetime;
    /* Making a token signs nothing: whoever may write the index may make
     * one, without the CA key's passphrase; serve signs at enrolment. */
    if ((rc = ca_dir_open(&ca, "token", dir, NULL, 0)) != CA_EXIT_OK)
        goto done;
    t.created_at = time(NULL);
    t.expires_at = t.created_at + (time_t)ttl;
    if (ca_token_new(text, t.hash, &err) < 0 ||
        cadb_token_add(ca.db, ca.db_path, &t, &err) < 0) {
        rc = ca_fail_err("token", &err);
        goto done;
    }
    printf("%s\n", text);
    rc = fflush(stdout) == 0 ? CA_EXIT_OK : CA_EXIT_FAIL;
done:
    OPENSSL_cleanse(text, sizeof(text));
    ca_token_clear(&t);
    ca_dir_close(&ca);
    return rc;
}
